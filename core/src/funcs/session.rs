//! Logging in and out: `auth` opens a session, `logout` ends the caller's.

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
        ]),
    );
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
