//! The built-in funcs, one module per area. Each module adds its declarations to the registry;
//! the protocol around them lives in `engine`.

mod account;
mod directory;
mod group;
mod ledger_lists;
mod project;
mod session;
mod ticket;

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

/// The shortest password `register` and `account.edit` accept.
pub const MIN_PASSWORD_LEN: usize = 8;

pub fn register_builtin(reg: &mut Registry) {
    account::register(reg);
    directory::register(reg);
    group::register(reg);
    ledger_lists::register(reg);
    project::register(reg);
    session::register(reg);
    ticket::register(reg);
}

/// Words for the status codes of accounts (1 active, 2 suspended, 3 deleted).
pub const ACCOUNT_STATUS_SQL: &str =
    "CASE a.status WHEN 1 THEN 'active' WHEN 2 THEN 'suspended' ELSE 'deleted' END";
