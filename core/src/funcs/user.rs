//! A client's logins: `user` (the list; `filter=on&email=...` finds one by email), `user.edit`
//! (create, change, suspend with `enabled=off`), `user.suspend` and `user.resume`. Staff work on
//! any client's logins (`plid` names the client on a create); a client user on its own client's.
//!
//! Choices where the spec is silent:
//! - The client's first login is the one its email logs in with (`register`, `account.edit`
//!   keep them equal): its `name` and `email` change through `account.edit`, not here.
//! - A caller cannot suspend the login it is calling with (it would lock itself out).
//! - A new password or a suspension ends the login's sessions; staff logins are not listed here.

use super::{ACCOUNT, MIN_PASSWORD_LEN, USER, on_off};
use crate::auth;
use crate::doc::Fields;
use crate::engine::Ctx;
use crate::error::{FuncError, FuncResult};
use crate::func::{Access, EditOps, FuncDecl, Param, Registry, Ty};
use crate::list::{FilterField, FilterOp, ListSpec};
use crate::params::Params;
use crate::store::{OptionalExtension, params};

pub fn register(reg: &mut Registry) {
    let mut spec = ListSpec::new(
        "users u",
        "u.id",
        &[
            ("id", "u.id"),
            ("name", "u.login"),
            ("realname", "u.realname"),
            ("email", "u.email"),
            ("account", "u.account_id"),
            (
                "account_name",
                "(SELECT name FROM account WHERE id = u.account_id)",
            ),
            ("enabled", "CASE u.enabled WHEN 1 THEN 'on' ELSE 'off' END"),
            ("createdate", "u.created"),
        ],
    );
    spec.base_where = Some("u.account_id IS NOT NULL");
    spec.owner = Some("u.account_id");
    spec.parent = Some("u.account_id");
    spec.filters = vec![
        FilterField::new("account", "u.account_id", FilterOp::EqInt),
        FilterField::new("name", "u.login", FilterOp::Like),
        FilterField::new("email", "u.email", FilterOp::Like),
        FilterField::new("enabled", "u.enabled", FilterOp::EqInt),
    ];
    reg.add(
        FuncDecl::list("user", "Users", Access::ADMIN_USER, spec)
            .parent(ACCOUNT, false)
            .panel(crate::func::PanelHints {
                row_func: Some("user.edit"),
                ..Default::default()
            }),
    );
    reg.add(
        FuncDecl::edit("user.edit", "User", Access::ADMIN_USER, UserEdit)
            .object(USER)
            .parent(ACCOUNT, false)
            .params(vec![
                Param::new("name", Ty::Email).required().label("Login"),
                Param::new("realname", Ty::Text(255)),
                Param::new("email", Ty::Email),
                Param::new("passwd", Ty::Password(MIN_PASSWORD_LEN))
                    .required()
                    .label("Password"),
                Param::new("enabled", Ty::Flag),
            ]),
    );
    for (name, title, enabled) in [
        ("user.suspend", "Suspend", false),
        ("user.resume", "Resume", true),
    ] {
        reg.add(FuncDecl::group(
            name,
            title,
            Access::ADMIN_USER,
            USER,
            move |ctx, id, _| set_enabled(ctx, id, enabled),
        ));
    }
}

/// The user's client and whether it is that client's first login.
fn user_client(ctx: &Ctx, id: i64) -> FuncResult<(i64, bool)> {
    let row: Option<(Option<i64>, bool)> = ctx
        .db
        .prepare_cached(
            "SELECT account_id, id = (SELECT min(id) FROM users o WHERE o.account_id = u.account_id)
             FROM users u WHERE id = ?1",
        )?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match row {
        Some((Some(account), first)) => Ok((account, first)),
        // Staff logins are not a client's.
        _ => Err(FuncError::missed_object("user", id)),
    }
}

fn ensure_login_free(ctx: &Ctx, login: &str, except: i64) -> FuncResult<()> {
    match auth::user_id(ctx.db, login)? {
        Some(other) if other != except => Err(FuncError::exists(
            "name",
            login,
            format!("A user with the login '{login}' already exists"),
        )),
        _ => Ok(()),
    }
}

fn set_enabled(ctx: &Ctx, id: i64, enabled: bool) -> FuncResult<()> {
    user_client(ctx, id)?;
    if !enabled && auth::user_id(ctx.db, &ctx.caller.login)? == Some(id) {
        return Err(FuncError::value(
            "elid",
            id.to_string(),
            "A login cannot suspend itself",
        ));
    }
    if super::set_column(ctx, "users", "enabled", id, &enabled)? {
        if !enabled {
            auth::end_user_sessions(ctx.db, id)?;
        }
        ctx.history("users", id, if enabled { "resumed" } else { "suspended" })?;
    }
    Ok(())
}

struct UserEdit;

impl EditOps for UserEdit {
    fn view(&self, ctx: &Ctx, elid: i64, _plid: Option<i64>) -> FuncResult<Fields> {
        user_client(ctx, elid)?;
        let mut f = super::row_fields(
            ctx,
            "SELECT login, realname, email, account_id FROM users WHERE id = ?1",
            elid,
            &["name", "realname", "email", "account"],
        )?;
        let enabled: bool = ctx
            .db
            .prepare_cached("SELECT enabled FROM users WHERE id = ?1")?
            .query_row([elid], |r| r.get(0))?;
        f.push(("enabled".into(), on_off(enabled)));
        Ok(f)
    }

    fn blank(&self, _ctx: &Ctx, _plid: Option<i64>) -> FuncResult<Fields> {
        Ok(vec![
            ("name".into(), String::new()),
            ("realname".into(), String::new()),
            ("email".into(), String::new()),
            ("passwd".into(), String::new()),
            ("enabled".into(), on_off(true)),
        ])
    }

    fn create(&self, ctx: &Ctx, plid: Option<i64>, p: &Params) -> FuncResult<i64> {
        let account = match (ctx.is_admin(), plid) {
            (_, Some(a)) => a,
            (false, None) => ctx
                .caller
                .account_id
                .ok_or_else(|| FuncError::access("user.edit", "No client account"))?,
            (true, None) => return Err(FuncError::missed_param("plid")),
        };
        crate::funcs::account::refuse_deleted(ctx, account, "plid")?;
        let login = p.required("name")?;
        ensure_login_free(ctx, login, 0)?;
        let hash = auth::hash_password(p.required("passwd")?)?;
        let email = p.get("email").unwrap_or(login);
        let enabled = p.flag("enabled").unwrap_or(true);
        ctx.db
            .prepare_cached(
                "INSERT INTO users (login, password_hash, level, account_id, realname, email, enabled, created)
                 VALUES (?1, ?2, 'user', ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                login,
                hash,
                account,
                p.get("realname").unwrap_or(""),
                email,
                enabled,
                ctx.now
            ])?;
        let id = ctx.db.last_insert_rowid()?;
        ctx.history(
            "users",
            id,
            format!("login '{login}' created for client {account}"),
        )?;
        Ok(id)
    }

    fn change(&self, ctx: &Ctx, elid: i64, plid: Option<i64>, p: &Params) -> FuncResult<()> {
        let (account, first) = user_client(ctx, elid)?;
        if let Some(parent) = plid.filter(|&a| a != account) {
            return Err(FuncError::value(
                "plid",
                parent.to_string(),
                format!("The user {elid} belongs to client {account}"),
            ));
        }
        let mut changed: Vec<&str> = Vec::new();
        for (param, col) in [("name", "login"), ("email", "email")] {
            let Some(v) = p.get(param) else { continue };
            let current: String = ctx
                .db
                .prepare_cached(&format!("SELECT {col} FROM users WHERE id = ?1"))?
                .query_row([elid], |r| r.get(0))?;
            if current == v {
                continue;
            }
            if first {
                return Err(FuncError::value(
                    param,
                    v,
                    "The client's first login follows the client's email: change it with account.edit",
                ));
            }
            if param == "name" {
                ensure_login_free(ctx, v, elid)?;
            }
            super::set_column(ctx, "users", col, elid, &v)?;
            changed.push(param);
        }
        if let Some(v) = p.raw("realname")
            && super::set_column(ctx, "users", "realname", elid, &v)?
        {
            changed.push("realname");
        }
        if let Some(pw) = p.get("passwd") {
            let hash = auth::hash_password(pw)?;
            super::set_column(ctx, "users", "password_hash", elid, &hash)?;
            auth::end_user_sessions(ctx.db, elid)?;
            changed.push("password");
        }
        if !changed.is_empty() {
            ctx.history("users", elid, format!("changed: {}", changed.join(", ")))?;
        }
        if let Some(enabled) = p.flag("enabled") {
            set_enabled(ctx, elid, enabled)?;
        }
        Ok(())
    }
}
