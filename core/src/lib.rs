//! billhost: a billing host speaking BILLmanager's func API.
//!
//! The crate is layered: [`store`] owns SQLite (schema, migrations, pragmas); [`engine`] is the
//! one dispatcher every caller goes through; [`funcs`] are the built-in funcs, declared with
//! [`func`]'s types; [`doc`] is the typed result and [`wire`] the only module that renders it
//! as XML, JSON or text. [`money`] and [`clock`] hold the exact arithmetic and the dates;
//! [`ledger`] holds the money rules (payments, expenses, refunds, rates, tax, discounts) and
//! the invariant check behind `billhost check`. [`script`] hosts the Lua business rules and
//! [`repl`] is the interactive session of `billhost repl`.

pub mod auth;
pub mod clock;
pub mod doc;
pub mod engine;
pub mod error;
pub mod func;
pub mod funcs;
pub mod ledger;
pub mod list;
pub mod money;
pub mod params;
pub mod repl;
pub mod script;
pub mod server;
pub mod store;
pub mod wire;

pub use doc::{Doc, Level};
pub use engine::{Engine, EngineConfig};
pub use error::{ErrorType, FuncError};
pub use params::Params;
