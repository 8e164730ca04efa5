//! Logging in and out: `auth` opens a session (with a login and password, or once with a key
//! from `session.newkey`), `logout` ends the caller's, `keepalive` keeps it open.

use crate::auth;
use crate::doc::Doc;
use crate::error::FuncError;
use crate::func::{Access, ActionMode, FuncDecl, Param, Registry, Ty};

pub fn register(reg: &mut Registry) {
    reg.add(
        FuncDecl::action(
            "auth",
            "Log in",
            Access::PUBLIC,
            // argon2 takes tens of milliseconds: the password is checked on a read snapshot,
            // outside the writer, and only the session is written (if the user is still
            // enabled with the same password by then).
            ActionMode::CallOut,
            |ctx, p| {
                if let Some(key) = p.get("key") {
                    let login = p.get("username");
                    let (id, level) = ctx.write(|w| {
                        let (user, level) = auth::use_login_key(w.db, key, login)?;
                        Ok((auth::create_session(w.db, user, None, &w.caller.ip)?, level))
                    })?;
                    return Ok(Doc::Auth { id, level });
                }
                let verified = auth::verify_login(
                    ctx.db,
                    p.required("username")?,
                    p.required("password")?,
                    &ctx.caller.ip,
                )?;
                let id = ctx.write(|w| {
                    if !auth::still_valid(w.db, &verified)? {
                        return Err(auth::wrong_login());
                    }
                    auth::create_session(w.db, verified.user_id, None, &w.caller.ip)
                })?;
                Ok(Doc::Auth {
                    id,
                    level: verified.caller.level,
                })
            },
        )
        .params(vec![
            Param::new("username", Ty::Text(255)).required(),
            Param::new("password", Ty::Password(1)).required(),
            Param::new("key", Ty::Text(255)).label("One-time key"),
        ]),
    );
    reg.add(
        FuncDecl::action(
            "session.newkey",
            "Make a one-time login key",
            Access::ADMIN,
            ActionMode::Write,
            |ctx, p| {
                let key = auth::new_login_key(ctx.db, p.required("username")?, p.get("key"))?;
                Ok(Doc::Ok(vec![("key".into(), key)]))
            },
        )
        .params(vec![
            Param::new("username", Ty::Text(255)).required(),
            Param::new("key", Ty::Text(255)),
        ]),
    );
    reg.add(FuncDecl::action(
        "keepalive",
        "Keep the session open",
        Access::ADMIN_USER,
        ActionMode::Write,
        |ctx, _| {
            if let Some(sid) = ctx.caller.session.as_deref() {
                auth::touch_session(ctx.db, sid)?;
            }
            Ok(Doc::ok())
        },
    ));
    reg.add(FuncDecl::action(
        "logout",
        "Log out",
        Access::ADMIN_USER,
        ActionMode::Write,
        |ctx, _| {
            let sid = ctx.caller.session.as_deref().ok_or_else(|| {
                FuncError::value("auth", "", "The call was not made with a session")
            })?;
            auth::end_session(ctx.db, sid)?;
            Ok(Doc::ok())
        },
    ));
    reg.add(FuncDecl::action(
        "whoami",
        "The caller's identity",
        Access::ADMIN_USER,
        ActionMode::Read,
        |ctx, _| {
            let c = ctx.caller;
            let mut f = vec![
                ("login".into(), c.login.clone()),
                ("level".into(), c.level.as_str().to_string()),
            ];
            if let Some(a) = c.account_id {
                f.push(("account".into(), a.to_string()));
            }
            if let Some(s) = &c.su_from {
                f.push(("su_from".into(), s.clone()));
            }
            Ok(Doc::Form(f))
        },
    ));
}
