//! Clients: `register`, the `account` list, `account.edit`, `account.delete`, `account.su`,
//! `account.filter` and `account.setfilter`.

use super::{
    ACCOUNT, ACCOUNT_STATUS_SQL, COUNTRY, MIN_PASSWORD_LEN, PROJECT, USER, on_off, opt_id,
    set_column,
};
use crate::auth;
use crate::doc::{Doc, Fields, Level};
use crate::engine::{Ctx, check_owner};
use crate::error::{FuncError, FuncResult};
use crate::func::{Access, ActionMode, EditOps, FuncDecl, Param, Registry, Ty};
use crate::list::{FilterField, FilterOp, ListSpec, value_text};
use crate::params::Params;
use crate::store::{OptionalExtension, params};

/// The lists `account.setfilter` narrows to one client.
pub const SETFILTER_LISTS: &[&str] = &["account.payment", "subaccount.expense"];

pub fn register(reg: &mut Registry) {
    reg.add(
        FuncDecl::list("account", "Clients", Access::ADMIN_USER, account_list()).panel(
            crate::func::PanelHints {
                columns_first: &["id", "name", "email", "balance", "status"],
                hidden: &["account_status"],
                ..Default::default()
            },
        ),
    );
    reg.add(FuncDecl::filter("account.filter", "account", Access::ADMIN));
    reg.add(
        FuncDecl::edit(
            "account.edit",
            "Edit client information",
            Access::ADMIN_USER,
            AccountEdit,
        )
        .object(ACCOUNT)
        .params(edit_params()),
    );
    reg.add(FuncDecl::group(
        "account.delete",
        "Delete",
        Access::ADMIN,
        ACCOUNT,
        delete,
    ));
    reg.add(
        FuncDecl::action(
            "register",
            "Client registration",
            Access::PUBLIC,
            ActionMode::FormThenWrite,
            register_client,
        )
        .params(register_params()),
    );
    reg.add(
        FuncDecl::action(
            "account.su",
            "Drill down to User panel",
            Access::ADMIN,
            ActionMode::Write,
            su,
        )
        .object(ACCOUNT),
    );
    reg.add(
        FuncDecl::action(
            "account.setfilter",
            "Set a filter by the selected client",
            Access::ADMIN,
            ActionMode::Write,
            setfilter,
        )
        .object(ACCOUNT),
    );
}

fn account_list() -> ListSpec {
    let mut spec = ListSpec::new(
        "account a",
        "a.id",
        &[
            ("id", "a.id"),
            ("elid", "a.id"),
            ("name", "a.name"),
            ("email", "a.email"),
            (
                "project",
                "(SELECT name FROM project WHERE id = a.project_id)",
            ),
            (
                "balance",
                "(SELECT group_concat(money(s.balance, c.minor_units) || ' ' || c.iso, ', ')
                  FROM subaccount s JOIN currency c ON c.id = s.currency_id
                  WHERE s.account_id = a.id AND s.active = 1)",
            ),
            ("account_status", "a.status"),
            ("tz_registration_date", "substr(a.registration_date, 1, 10)"),
            ("tz_registration_time", "substr(a.registration_date, 12, 8)"),
            ("status", ACCOUNT_STATUS_SQL),
        ],
    );
    // `<> 3` (not `IN (1, 2)`) lets a page walk the primary key in order instead of sorting.
    spec.base_where = Some("a.status <> 3");
    spec.owner = Some("a.id");
    spec.filters = vec![
        FilterField::new("id", "a.id", FilterOp::EqInt),
        FilterField::new("name", "a.name", FilterOp::Like),
        FilterField::new("email", "a.email", FilterOp::Like),
        FilterField::new("project", "a.project_id", FilterOp::EqInt),
        FilterField::new("country", "a.country_id", FilterOp::EqInt),
        FilterField::new("label", "a.label", FilterOp::Like),
        FilterField {
            replaces_base: true,
            ..FilterField::new("account_status", "a.status", FilterOp::EqInt)
        },
        FilterField::new(
            "registration_date_from",
            "a.registration_date",
            FilterOp::From,
        ),
        FilterField::new("registration_date_to", "a.registration_date", FilterOp::To),
    ];
    spec
}

fn edit_params() -> Vec<Param> {
    vec![
        Param::new("email", Ty::Email).required().admin_only(),
        Param::new("verify_email", Ty::Flag).admin_only(),
        Param::new("project", Ty::Ref(PROJECT)).admin_only(),
        Param::new("country", Ty::Ref(COUNTRY)),
        Param::new("state", Ty::Text(100)),
        Param::new("realname", Ty::Text(255)).label("Contact person"),
        Param::new("name", Ty::Text(255)).label("Client name"),
        Param::new("settingurl", Ty::Text(1024))
            .admin_only()
            .label("Settings URL"),
        Param::new("valid_phone", Ty::Text(32))
            .admin_only()
            .label("Verified phone"),
        Param::new("try_phone", Ty::Text(32)).label("Phone"),
        Param::new("label", Ty::Text(255)).admin_only(),
        Param::new("selfview", Ty::Text(255)).admin_only(),
        Param::new("products_page", Ty::Text(255)).admin_only(),
        Param::new("passwd", Ty::Password(MIN_PASSWORD_LEN)).label("Password"),
        Param::new("confirm", Ty::Password(0)).label("Confirm password"),
        Param::new("attitude", Ty::Int { min: -1, max: 1 }).admin_only(),
        Param::new("employee", Ty::Ref(USER)).admin_only(),
        Param::new("nocalcstat", Ty::Flag).admin_only(),
        Param::new("note", Ty::LongText(4000)).admin_only(),
        Param::new("registration_date", Ty::Date).admin_only(),
        Param::new("registration_ip", Ty::Text(64)).admin_only(),
        Param::new("notify", Ty::Flag).admin_only(),
        Param::new("recovery", Ty::Flag).admin_only(),
    ]
}

fn register_params() -> Vec<Param> {
    vec![
        Param::new("email", Ty::Email).required(),
        Param::new("passwd", Ty::Password(MIN_PASSWORD_LEN)).required(),
        Param::new("realname", Ty::Text(255)),
        Param::new("phone", Ty::Text(32)),
        Param::new("conditions_agree", Ty::Flag),
        Param::new("country", Ty::Ref(COUNTRY)),
        Param::new("state", Ty::Text(100)),
        Param::new("project", Ty::Ref(PROJECT)),
        Param::new("recovery", Ty::Flag),
        Param::new("_ga", Ty::Text(255)),
        Param::new(
            "partner",
            Ty::Int {
                min: 1,
                max: i64::MAX,
            },
        ),
        Param::new("sesid", Ty::Text(255)),
        Param::new(
            "tzoffset",
            Ty::Int {
                min: -720,
                max: 840,
            },
        ),
    ]
}

/// Text columns `account.edit` copies as given, by parameter name.
const TEXT_COLUMNS: &[&str] = &[
    "state",
    "realname",
    "name",
    "settingurl",
    "valid_phone",
    "try_phone",
    "label",
    "selfview",
    "products_page",
    "note",
];

fn flag_int(p: &Params, name: &str) -> Option<i64> {
    p.flag(name).map(i64::from)
}

fn ensure_login_free(ctx: &Ctx, email: &str, except_user: Option<i64>) -> FuncResult<()> {
    match crate::auth::user_id(ctx.db, email)? {
        Some(id) if Some(id) != except_user => Err(FuncError::exists(
            "email",
            email,
            format!("A user with the email '{email}' already exists"),
        )),
        _ => Ok(()),
    }
}

/// The client's owner user: the first user it got (its registering email is the login).
fn owner_user(ctx: &Ctx, account: i64) -> FuncResult<Option<i64>> {
    Ok(ctx
        .db
        .prepare_cached("SELECT id FROM users WHERE account_id = ?1 ORDER BY id LIMIT 1")?
        .query_row([account], |r| r.get(0))
        .optional()?)
}

/// What a new client starts with, however it is created.
struct NewClient<'a> {
    email: &'a str,
    password: Option<&'a str>,
    name: &'a str,
    realname: &'a str,
    project: i64,
    country: Option<i64>,
    state: &'a str,
    phone: &'a str,
    partner: Option<i64>,
    ga: &'a str,
    sesid: &'a str,
    tzoffset: Option<i64>,
}

/// Creates the client, its owner user, its assignment to the provider and, when the provider
/// has a currency, its subaccount; writes the history.
fn create_client(ctx: &Ctx, c: &NewClient) -> FuncResult<i64> {
    ensure_login_free(ctx, c.email, None)?;
    let name = if c.name.is_empty() {
        if c.realname.is_empty() {
            c.email
        } else {
            c.realname
        }
    } else {
        c.name
    };
    ctx.db
        .prepare_cached(
            "INSERT INTO account (project_id, name, realname, email, country_id, state, try_phone, registration_date,
                                  registration_ip, partner_id, ga, sesid, tzoffset)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?
        .execute(params![
            c.project, name, c.realname, c.email, c.country, c.state, c.phone, ctx.now, ctx.caller.ip, c.partner, c.ga,
            c.sesid, c.tzoffset
        ])?;
    let account = ctx.db.last_insert_rowid()?;
    let hash = match c.password {
        Some(p) => auth::hash_password(p)?,
        None => auth::NO_PASSWORD.to_string(),
    };
    ctx.db
        .prepare_cached(
            "INSERT INTO users (login, password_hash, level, account_id, realname, email, created)
             VALUES (?1, ?2, 'user', ?3, ?4, ?1, ?5)",
        )?
        .execute(params![c.email, hash, account, c.realname, ctx.now])?;
    ctx.db
        .prepare_cached(
            "INSERT INTO account_project (account_id, project_id, status) VALUES (?1, ?2, 1)",
        )?
        .execute(params![account, c.project])?;
    ctx.db
        .prepare_cached(
            "INSERT INTO subaccount (account_id, project_id, currency_id, created)
             SELECT ?1, id, currency_id, ?2 FROM project WHERE id = ?3 AND currency_id IS NOT NULL",
        )?
        .execute(params![account, ctx.now, c.project])?;
    ctx.history(
        "account",
        account,
        format!(
            "client '{name}' <{}> created in provider {}",
            c.email, c.project
        ),
    )?;
    Ok(account)
}

fn register_client(ctx: &Ctx, p: &Params) -> FuncResult<Doc> {
    refuse_notifications(p, true)?;
    let project = opt_id(p, "project")?.unwrap_or(1);
    let conditions_required: bool = ctx
        .db
        .prepare_cached("SELECT conditions_required FROM project WHERE id = ?1")?
        .query_row([project], |r| r.get(0))?;
    if conditions_required {
        match p.raw("conditions_agree") {
            Some("on") => {}
            None | Some("") => return Err(FuncError::missed_param("conditions_agree")),
            Some(v) => {
                return Err(FuncError::value(
                    "conditions_agree",
                    v,
                    "You must agree to the terms of service",
                ));
            }
        }
    }
    // A referral that no longer resolves must not block a registration.
    let partner = match p.int("partner")? {
        Some(id) => ctx
            .db
            .prepare_cached("SELECT id FROM account WHERE id = ?1 AND status <> 3")?
            .query_row([id], |r| r.get(0))
            .optional()?,
        None => None,
    };
    let client = NewClient {
        email: p.required("email")?,
        password: Some(p.required("passwd")?),
        name: "",
        realname: p.get("realname").unwrap_or(""),
        project,
        country: opt_id(p, "country")?,
        state: p.get("state").unwrap_or(""),
        phone: p.get("phone").unwrap_or(""),
        partner,
        ga: p.get("_ga").unwrap_or(""),
        sesid: p.get("sesid").unwrap_or(""),
        tzoffset: p.int("tzoffset")?,
    };
    create_client(ctx, &client).map(Doc::created)
}

struct AccountEdit;

impl EditOps for AccountEdit {
    fn view(&self, ctx: &Ctx, elid: i64, _plid: Option<i64>) -> FuncResult<Fields> {
        const ADMIN_ONLY: [&str; 10] = [
            "label",
            "attitude",
            "employee",
            "nocalcstat",
            "note",
            "registration_ip",
            "partner",
            "_ga",
            "sesid",
            "tzoffset",
        ];
        /// The columns of `VIEW_SQL`, in order.
        const NAMES: [&str; 24] = [
            "email",
            "verify_email",
            "project",
            "country",
            "state",
            "realname",
            "name",
            "settingurl",
            "valid_phone",
            "try_phone",
            "label",
            "selfview",
            "products_page",
            "registration_date",
            "registration_ip",
            "attitude",
            "employee",
            "nocalcstat",
            "note",
            "account_status",
            "partner",
            "_ga",
            "sesid",
            "tzoffset",
        ];
        const VIEW_SQL: &str = "SELECT email, verify_email, project_id, country_id, state, realname, \
            name, settingurl, valid_phone, try_phone, label, selfview, products_page, \
            registration_date, registration_ip, attitude, employee_id, nocalcstat, note, status, \
            partner_id, ga, sesid, tzoffset FROM account WHERE id = ?1";
        let admin = ctx.is_admin();
        let fields = ctx
            .db
            .prepare_cached(VIEW_SQL)?
            .query_row([elid], |r| {
                // One spare slot: the form gets `elid` in front.
                let mut fields = Vec::with_capacity(NAMES.len() + 1);
                for (i, name) in NAMES.into_iter().enumerate() {
                    if !admin && ADMIN_ONLY.contains(&name) {
                        continue;
                    }
                    let value = value_text(r.get_ref(i)?).unwrap_or_default();
                    let value = match name {
                        "verify_email" | "nocalcstat" => on_off(value == "1"),
                        _ => value,
                    };
                    fields.push((name.into(), value));
                }
                Ok(fields)
            })
            .optional()?
            .ok_or_else(|| FuncError::missed_object(ACCOUNT.name, elid))?;
        // A client is its own owner.
        check_owner(ctx.caller, ACCOUNT, elid, Some(elid))?;
        Ok(fields)
    }

    fn view_checks_object(&self) -> bool {
        true
    }

    fn blank(&self, _ctx: &Ctx, _plid: Option<i64>) -> FuncResult<Fields> {
        Ok(edit_params()
            .into_iter()
            .filter(|p| !matches!(p.ty, Ty::Password(_)))
            .map(|p| {
                let default = if p.name == "project" { "1" } else { "" };
                (p.name.into(), default.to_string())
            })
            .collect())
    }

    fn create(&self, ctx: &Ctx, _plid: Option<i64>, p: &Params) -> FuncResult<i64> {
        if ctx.caller.level != Level::Admin {
            return Err(FuncError::access(
                "account.edit",
                "Only staff may create clients",
            ));
        }
        check_confirm(p)?;
        let client = NewClient {
            email: p.required("email")?,
            password: p.get("passwd"),
            name: p.get("name").unwrap_or(""),
            realname: p.get("realname").unwrap_or(""),
            project: opt_id(p, "project")?.unwrap_or(1),
            country: opt_id(p, "country")?,
            state: p.get("state").unwrap_or(""),
            phone: p.get("try_phone").unwrap_or(""),
            partner: None,
            ga: "",
            sesid: "",
            tzoffset: None,
        };
        let account = create_client(ctx, &client)?;
        // The remaining staff fields go through the same path as a change.
        change_fields(ctx, account, p, true)?;
        if p.flag("notify") == Some(true) {
            queue_registration_email(ctx, account)?;
        }
        Ok(account)
    }

    fn change(&self, ctx: &Ctx, elid: i64, _plid: Option<i64>, p: &Params) -> FuncResult<()> {
        check_confirm(p)?;
        refuse_deleted(ctx, elid, "elid")?;
        change_fields(ctx, elid, p, false)
    }
}

/// billhost has no password-reset links and no formal offers to agree to: asking for one
/// (`recovery`, `offer_N` set to `on`) is refused rather than answered ok and not done; `off`
/// asks for nothing. `notify=on` (the registration email) is for a new client only.
fn refuse_notifications(p: &Params, creating: bool) -> FuncResult<()> {
    if p.flag("recovery") == Some(true) {
        return Err(FuncError::value(
            "recovery",
            "on",
            "billhost sends no password-reset information",
        ));
    }
    if !creating && p.flag("notify") == Some(true) {
        return Err(FuncError::value(
            "notify",
            "on",
            "The registration notification is sent when the client is created",
        ));
    }
    if let Some((name, value)) = p
        .iter()
        .find(|(k, v)| k.starts_with("offer_") && !v.is_empty() && *v != "off")
    {
        return Err(FuncError::value(
            name,
            value,
            "billhost has no formal offers to agree to",
        ));
    }
    Ok(())
}

/// The client registration notification (`account.edit notify=on`): the login and where to
/// log in, queued in the outbox with the client's creation.
fn queue_registration_email(ctx: &Ctx, account: i64) -> FuncResult<()> {
    let (email, provider, billurl): (String, String, String) = ctx
        .db
        .prepare_cached(
            "SELECT a.email, p.name, p.billurl FROM account a JOIN project p ON p.id = a.project_id WHERE a.id = ?1",
        )?
        .query_row([account], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    let mut body = format!("An account at {provider} was opened for you.\n\nLogin: {email}\n");
    if !billurl.is_empty() {
        body.push_str(&format!("Log in at {billurl}\n"));
    }
    crate::outbox::queue(
        ctx,
        &crate::outbox::NewMessage {
            account: Some(account),
            recipient: &email,
            subject: &format!("Your account at {provider}"),
            body: &body,
            ..Default::default()
        },
    )?;
    ctx.history("account", account, "registration notification queued")
}

fn check_confirm(p: &Params) -> FuncResult<()> {
    match (p.get("passwd"), p.get("confirm")) {
        (Some(a), Some(b)) if a != b => Err(FuncError::value(
            "confirm",
            "",
            "The passwords do not match",
        )),
        (None, Some(_)) => Err(FuncError::missed_param("passwd")),
        _ => Ok(()),
    }
}

/// Applies the parameters given to a client and writes one history row naming what changed.
/// Right after `create_client` (`creating`), what it already set is skipped.
fn change_fields(ctx: &Ctx, account: i64, p: &Params, creating: bool) -> FuncResult<()> {
    let mut changed: Vec<&str> = Vec::new();
    for &col in TEXT_COLUMNS {
        if let Some(v) = p.raw(col)
            && set_column(ctx, "account", col, account, &v)?
        {
            changed.push(col);
        }
    }
    let ints: [(&str, &str, Option<i64>); 6] = [
        ("country", "country_id", opt_id(p, "country")?),
        ("attitude", "attitude", p.int("attitude")?),
        ("employee", "employee_id", opt_id(p, "employee")?),
        ("verify_email", "verify_email", flag_int(p, "verify_email")),
        ("nocalcstat", "nocalcstat", flag_int(p, "nocalcstat")),
        ("project", "project_id", opt_id(p, "project")?),
    ];
    for (param, col, value) in ints {
        let Some(v) = value else { continue };
        if creating && matches!(param, "country" | "project") {
            continue;
        }
        if param == "employee" {
            let level: String = ctx
                .db
                .prepare_cached("SELECT level FROM users WHERE id = ?1")?
                .query_row([v], |r| r.get(0))?;
            if level != "admin" {
                return Err(FuncError::value(
                    "employee",
                    v.to_string(),
                    "The employee must be a staff user",
                ));
            }
        }
        if set_column(ctx, "account", col, account, &v)? {
            changed.push(param);
            if param == "project" {
                ctx.db
                    .prepare_cached("INSERT OR IGNORE INTO account_project (account_id, project_id, status) VALUES (?1, ?2, 1)")?
                    .execute(params![account, v])?;
            }
        }
    }
    if let Some(d) = p.get("registration_date") {
        let d = if d.len() == 10 {
            format!("{d} 00:00:00")
        } else {
            d.to_string()
        };
        if set_column(ctx, "account", "registration_date", account, &d)? {
            changed.push("registration_date");
        }
    }
    if let Some(ip) = p.get("registration_ip") {
        // The view's value sent back unchanged passes (a client created from the command line
        // was registered from `local`).
        let current: String = ctx
            .db
            .prepare_cached("SELECT registration_ip FROM account WHERE id = ?1")?
            .query_row([account], |r| r.get(0))?;
        if ip != current && ip.parse::<std::net::IpAddr>().is_err() {
            return Err(FuncError::value(
                "registration_ip",
                ip,
                format!("'{ip}' is not an IP address"),
            ));
        }
        if set_column(ctx, "account", "registration_ip", account, &ip)? {
            changed.push("registration_ip");
        }
    }
    refuse_notifications(p, creating)?;
    if creating {
        return Ok(());
    }
    // Only an email or password change touches the owner user.
    let owner = if p.get("email").is_some() || p.get("passwd").is_some() {
        owner_user(ctx, account)?
    } else {
        None
    };
    if let Some(email) = p.get("email") {
        let current: String = ctx
            .db
            .prepare_cached("SELECT email FROM account WHERE id = ?1")?
            .query_row([account], |r| r.get(0))?;
        if current != email {
            ensure_login_free(ctx, email, owner)?;
            ctx.db
                .prepare_cached("UPDATE account SET email = ?2 WHERE id = ?1")?
                .execute(params![account, email])?;
            if let Some(user) = owner {
                ctx.db
                    .prepare_cached("UPDATE users SET login = ?2, email = ?2 WHERE id = ?1")?
                    .execute(params![user, email])?;
            }
            changed.push("email");
        }
    }
    if let (Some(password), Some(user)) = (p.get("passwd"), owner) {
        let hash = auth::hash_password(password)?;
        ctx.db
            .prepare_cached("UPDATE users SET password_hash = ?2 WHERE id = ?1")?
            .execute(params![user, hash])?;
        auth::end_user_sessions(ctx.db, user)?;
        changed.push("password");
    }
    if !changed.is_empty() {
        ctx.history(
            "account",
            account,
            format!("changed: {}", changed.join(", ")),
        )?;
    }
    Ok(())
}

fn delete(ctx: &Ctx, account: i64, _p: &Params) -> FuncResult<()> {
    let n = ctx
        .db
        .prepare_cached("UPDATE account SET status = 3 WHERE id = ?1 AND status <> 3")?
        .execute([account])?;
    if n == 0 {
        return Err(FuncError::value(
            "elid",
            account.to_string(),
            "The client is already deleted",
        ));
    }
    let users: Vec<i64> = ctx
        .db
        .prepare_cached("SELECT id FROM users WHERE account_id = ?1")?
        .query_map([account], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for user in users {
        auth::end_user_sessions(ctx.db, user)?;
    }
    ctx.history("account", account, "client deleted (records kept)")
}

/// Refuses (a `value` error on `object`) to act for a deleted client (status 3).
pub(crate) fn refuse_deleted(ctx: &Ctx, account: i64, object: &str) -> FuncResult<()> {
    let status: i64 = ctx
        .db
        .prepare_cached("SELECT status FROM account WHERE id = ?1")?
        .query_row([account], |r| r.get(0))?;
    if status == 3 {
        return Err(FuncError::value(
            object,
            account.to_string(),
            "The client is deleted",
        ));
    }
    Ok(())
}

fn su(ctx: &Ctx, p: &Params) -> FuncResult<Doc> {
    let account = crate::params::parse_id("elid", p.required("elid")?)?;
    refuse_deleted(ctx, account, "elid")?;
    let user = owner_user(ctx, account)?
        .ok_or_else(|| FuncError::missed_object("user", format!("of client {account}")))?;
    let sid = auth::create_session(ctx.db, user, ctx.caller.user_id, &ctx.caller.ip)?;
    ctx.history(
        "account",
        account,
        format!("{} opened the client's panel", ctx.caller.history_name()),
    )?;
    Ok(Doc::Auth {
        id: sid,
        level: Level::User,
    })
}

fn setfilter(ctx: &Ctx, p: &Params) -> FuncResult<Doc> {
    let account = p.required("elid")?.trim().to_string();
    for list in SETFILTER_LISTS {
        ctx.engine()
            .merge_filter(ctx, list, &[("account".to_string(), account.clone())])?;
    }
    Ok(Doc::ok())
}
