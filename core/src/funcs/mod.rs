//! The built-in funcs, one module per area. Each module adds its declarations to the registry;
//! the protocol around them lives in `engine`.

mod account;
pub(crate) mod directory;
mod group;
mod invoice;
mod ledger_lists;
mod payment;
mod payment_api;
mod paymethod;
mod pricing;
mod project;
mod session;
mod subaccount;
mod ticket;
mod user;

use crate::func::{ObjectType, Registry};

pub const ACCOUNT: ObjectType = ObjectType {
    name: "account",
    table: "account",
    owner: Some("id"),
};
pub const PROJECT: ObjectType = ObjectType {
    name: "project",
    table: "project",
    owner: None,
};
pub const COUNTRY: ObjectType = ObjectType {
    name: "country",
    table: "country",
    owner: None,
};
pub const CURRENCY: ObjectType = ObjectType {
    name: "currency",
    table: "currency",
    owner: None,
};
pub const USER: ObjectType = ObjectType {
    name: "user",
    table: "users",
    owner: Some("account_id"),
};
pub const ACCOUNTGROUP: ObjectType = ObjectType {
    name: "accountgroup",
    table: "accountgroup",
    owner: None,
};
pub const TICKET: ObjectType = ObjectType {
    name: "ticket",
    table: "ticket",
    owner: Some("account_id"),
};
pub const PAYMENT: ObjectType = ObjectType {
    name: "payment",
    table: "payment",
    owner: Some("account_id"),
};
pub const SUBACCOUNT: ObjectType = ObjectType {
    name: "subaccount",
    table: "subaccount",
    owner: Some("account_id"),
};

pub const EXPENSE: ObjectType = ObjectType {
    name: "expense",
    table: "expense",
    owner: Some("account_id"),
};
pub const PAYMETHOD: ObjectType = ObjectType {
    name: "paymethod",
    table: "paymethod",
    owner: None,
};
pub const ORDERINFO: ObjectType = ObjectType {
    name: "orderinfo",
    table: "orderinfo",
    owner: Some("(SELECT account_id FROM payment WHERE payment.id = orderinfo.payment_id)"),
};
pub const OUTBOX: ObjectType = ObjectType {
    name: "outbox",
    table: "outbox",
    owner: Some("account_id"),
};
pub const DISCOUNT: ObjectType = ObjectType {
    name: "discount",
    table: "discount",
    owner: None,
};
pub const CURRENCYRATE: ObjectType = ObjectType {
    name: "currencyrate",
    table: "currencyrate",
    owner: None,
};
pub const TAXRULE: ObjectType = ObjectType {
    name: "taxrule",
    table: "taxrule",
    owner: None,
};

/// `on`/`off` as forms show checkboxes.
pub fn on_off(b: bool) -> String {
    if b { "on" } else { "off" }.to_string()
}

/// Sets `column` of row `id` in `table` when the value differs; answers whether it changed.
/// `table` and `column` are always literals of the caller, never input.
pub fn set_column(
    ctx: &crate::engine::Ctx,
    table: &str,
    column: &str,
    id: i64,
    value: &dyn crate::store::ToValue,
) -> crate::error::FuncResult<bool> {
    let sql = format!("UPDATE {table} SET {column} = ?2 WHERE id = ?1 AND {column} IS NOT ?2");
    Ok(ctx
        .db
        .prepare_cached(&sql)?
        .execute(crate::store::params![id, value])?
        > 0)
}

/// An optional id parameter.
pub fn opt_id(p: &crate::params::Params, name: &str) -> crate::error::FuncResult<Option<i64>> {
    p.get(name)
        .map(|v| crate::params::parse_id(name, v))
        .transpose()
}

/// The columns of one row as a form: `names[i]` is the i-th column of `sql`, which selects by
/// `id = ?1`; NULL shows as an empty field.
pub fn row_fields(
    ctx: &crate::engine::Ctx,
    sql: &str,
    id: i64,
    names: &[&'static str],
) -> crate::error::FuncResult<crate::doc::Fields> {
    Ok(ctx.db.prepare_cached(sql)?.query_row([id], |r| {
        // One spare slot: a view's form gets `elid` in front.
        let mut fields = Vec::with_capacity(names.len() + 1);
        for (i, n) in names.iter().enumerate() {
            fields.push((
                (*n).into(),
                crate::list::value_text(r.get_ref(i)?).unwrap_or_default(),
            ));
        }
        Ok(fields)
    })?)
}

/// The shortest password `register` and `account.edit` accept.
pub const MIN_PASSWORD_LEN: usize = 8;

pub fn register_builtin(reg: &mut Registry) {
    account::register(reg);
    directory::register(reg);
    group::register(reg);
    invoice::register(reg);
    ledger_lists::register(reg);
    paymethod::register(reg);
    payment::register(reg);
    payment_api::register(reg);
    pricing::register(reg);
    subaccount::register(reg);
    project::register(reg);
    session::register(reg);
    ticket::register(reg);
    user::register(reg);
}

/// Words for the status codes of accounts (1 active, 2 suspended, 3 deleted).
pub const ACCOUNT_STATUS_SQL: &str =
    "CASE a.status WHEN 1 THEN 'active' WHEN 2 THEN 'suspended' ELSE 'deleted' END";
