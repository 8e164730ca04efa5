//! billhost: a billing host speaking BILLmanager's func API.
//!
//! The crate is layered: [`store`] is the database boundary (connections, statements, rows,
//! values; the SQLite backend with its schema, migrations and pragmas); [`engine`] is the
//! one dispatcher every caller goes through; [`funcs`] are the built-in funcs, declared with
//! [`func`]'s types; [`doc`] is the typed result and [`wire`] the only module that renders it
//! as XML, JSON or text. [`money`] and [`clock`] hold the exact arithmetic and the dates;
//! [`ledger`] holds the money rules (payments, expenses, refunds, rates, tax, discounts) and
//! the invariant check behind `billhost check`. [`invoice`] numbers and renders invoices (HTML
//! template, PDF); [`outbox`] queues email in a func's transaction and [`mail`] delivers it
//! through SMTP after the commit; [`config`] reads `billhost.toml`. [`plugin`] loads
//! shared-library plugins and adds the funcs that use them (payment gateways, notifiers, func
//! handlers). [`script`] hosts the Lua business rules and [`repl`] is the interactive
//! session of `billhost repl`.

pub mod auth;
pub mod clock;
pub mod config;
pub mod doc;
pub mod engine;
pub mod error;
pub mod func;
pub mod funcs;
pub mod invoice;
pub mod ledger;
pub mod list;
pub mod mail;
pub mod money;
pub mod outbox;
pub mod panel;
pub mod params;
pub mod plugin;
pub mod repl;
pub mod script;
pub mod server;
pub mod store;
pub mod wire;

pub use doc::{Doc, Level};
pub use engine::{Engine, EngineConfig};
pub use error::{ErrorType, FuncError};
pub use params::Params;
