//! The store boundary: everything the engine, the ledger and the funcs do with the database
//! goes through the types here ([`Connection`], [`Statement`], [`Row`], [`Value`]), never through
//! a driver. The backend (today the embedded SQLite, [`sqlite`]) is chosen when a connection is
//! opened; the versioned migrations, the `money()` SQL function and every dialect difference
//! live in the backend's module.

mod conn;
pub mod migrate;
pub mod pg;
pub mod schedule;
pub mod sqlite;
mod value;

pub use crate::store_params as params;
pub use conn::{
    Connection, Error, ErrorKind, MappedRows, OptionalExtension, Row, Rows, Savepoint, Statement,
};
use value::bindable;
pub use value::{FromValue, Lenient, Params, ToValue, Value, ValueRef};

pub type Result<T, E = Error> = std::result::Result<T, E>;
/// What opening a database can fail with (a [`ErrorKind::TooNew`] database included).
pub type StoreError = Error;

use std::path::Path;

/// Each entry upgrades the SQLite schema from version `index` to `index + 1`; `PRAGMA
/// user_version` records the version a database is at. Entries are never edited once released:
/// a change is a new entry.
pub const MIGRATIONS: &[&str] = &[
    // The reference data is the same SQL on both backends (`pg::MIGRATIONS` includes it too).
    concat!(
        include_str!("v1_core.sql"),
        include_str!("v1_directories.sql"),
        include_str!("v1_seed.sql")
    ),
    include_str!("v2_ledger.sql"),
    include_str!("v3_outbox.sql"),
    include_str!("v4_auth_epoch.sql"),
    include_str!("v5_refund_retry.sql"),
    include_str!("v6_no_reuse_integer_money.sql"),
    include_str!("v7_session_key.sql"),
    include_str!("v8_directory_alias.sql"),
    include_str!("v9_scheduled_runs.sql"),
    include_str!("v10_payment_indexes.sql"),
];

pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How commits reach the disk. `Full` (the default) survives power loss; `Normal` survives a
/// crash of the process but may lose the last commits on power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    Full,
    Normal,
}

pub mod checkpoint;
pub mod walsync;

/// Which database a `--db` value names: a `postgres://` (or `postgresql://`) URL, else the path
/// of a SQLite file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location<'a> {
    Sqlite(&'a Path),
    Postgres(&'a str),
}

impl<'a> Location<'a> {
    pub fn of(db: &'a Path) -> Location<'a> {
        match db.to_str() {
            Some(url) if pg::is_url(url) => Location::Postgres(url),
            _ => Location::Sqlite(db),
        }
    }
}

/// `db` as it may be shown: a PostgreSQL URL without its password.
pub fn redacted(db: &Path) -> String {
    match Location::of(db) {
        Location::Sqlite(path) => path.display().to_string(),
        Location::Postgres(url) => pg::redacted(url),
    }
}

/// Whether the backend of `db` may be called on an async runtime's worker thread. SQLite's
/// calls are plain function calls; the synchronous PostgreSQL client drives a runtime of its own
/// for each call (`block_on`), which panics on a thread that already runs one (a tokio worker),
/// so that an async front end must make those calls on threads that may block.
pub fn callable_on_async_worker(db: &Path) -> bool {
    !is_postgres(db)
}

/// Whether `db` names a PostgreSQL database.
pub fn is_postgres(db: &Path) -> bool {
    matches!(Location::of(db), Location::Postgres(_))
}

/// Opens (creating if needed) the database and brings its schema up to date.
pub fn open(db: &Path, durability: Durability) -> Result<Connection> {
    let conn = connect(db, durability)?;
    migrate(&conn, SCHEMA_VERSION)?;
    Ok(conn)
}

/// Opens a connection with the backend's settings and functions, without touching the schema.
pub fn connect(db: &Path, durability: Durability) -> Result<Connection> {
    match Location::of(db) {
        Location::Sqlite(path) => Ok(Connection::sqlite(sqlite::connect_raw(path, durability)?)),
        Location::Postgres(url) => Ok(Connection::pg(pg::PgConn::connect(url, durability)?)),
    }
}

/// The writer of an engine.
pub struct Writer {
    pub conn: Connection,
    /// The thread that keeps WAL checkpoints off the writer's commits, when asked for and it
    /// could be started (SQLite).
    pub checkpointer: Option<checkpoint::Checkpointer>,
    /// Syncs the WAL after the writer's commits, made without syncing, when a deferred sync was
    /// asked for with [`Durability::Full`] (SQLite).
    pub wal_sync: Option<std::sync::Arc<walsync::WalSync>>,
}

/// The writer connection of an engine (schema brought up to date) and, on SQLite, its
/// checkpoint thread when `background_checkpoints` asks for one and its WAL sync when
/// `deferred_sync` asks for one (see [`walsync`]). PostgreSQL has neither: the server does both.
pub fn open_writer(
    db: &Path,
    durability: Durability,
    background_checkpoints: bool,
    deferred_sync: bool,
) -> Result<Writer> {
    let deferred = deferred_sync && durability == Durability::Full;
    if let Location::Postgres(url) = Location::of(db) {
        // With a deferred sync the writer commits without waiting for the WAL flush and a
        // sync point on another connection makes each batch durable before it is answered.
        let wal_sync = if deferred {
            Some(walsync::WalSync::postgres(url)?)
        } else {
            None
        };
        return Ok(Writer {
            conn: open(
                db,
                if deferred {
                    Durability::Normal
                } else {
                    durability
                },
            )?,
            checkpointer: None,
            wal_sync,
        });
    }
    let conn = open(
        db,
        if deferred {
            Durability::Normal
        } else {
            durability
        },
    )?;
    let wal_sync = deferred.then(|| walsync::WalSync::new(db));
    let raw = conn
        .as_sqlite()
        .ok_or_else(|| Error::other("a SQLite path opened another backend"))?;
    let checkpointer = if background_checkpoints {
        checkpoint::Checkpointer::start(db, durability)
    } else {
        None
    };
    if checkpointer.is_some() {
        raw.pragma_update(None, "wal_autocheckpoint", checkpoint::BACKSTOP_PAGES)?;
    }
    Ok(Writer {
        conn,
        checkpointer,
        wal_sync,
    })
}

/// A connection for read transactions only (the engine's reader pool).
pub fn connect_reader(db: &Path, durability: Durability) -> Result<Connection> {
    match Location::of(db) {
        Location::Sqlite(path) => Ok(Connection::sqlite(sqlite::connect_reader_raw(
            path, durability,
        )?)),
        Location::Postgres(_) => connect(db, durability),
    }
}

/// The schema version the database is at.
pub fn schema_version(conn: &Connection) -> Result<i64> {
    match (conn.as_sqlite(), conn.as_pg()) {
        (Some(c), _) => sqlite::schema_version(c),
        (_, Some(c)) => c.schema_version(),
        _ => unreachable_backend(),
    }
}

/// Records `version` as the schema's version without migrating (tests of the refusal of a
/// newer database).
pub fn set_schema_version(conn: &Connection, version: i64) -> Result<()> {
    match (conn.as_sqlite(), conn.as_pg()) {
        (Some(c), _) => Ok(c.pragma_update(None, "user_version", version)?),
        (_, Some(c)) => c.set_schema_version(version),
        _ => unreachable_backend(),
    }
}

/// Applies the migrations up to `target`, each in its own transaction. Refuses a database newer
/// than this build.
pub fn migrate(conn: &Connection, target: i64) -> Result<()> {
    match (conn.as_sqlite(), conn.as_pg()) {
        (Some(c), _) => sqlite::migrate(c, target),
        (_, Some(c)) => c.migrate(target),
        _ => unreachable_backend(),
    }
}

fn unreachable_backend<T>() -> Result<T> {
    Err(Error::other("a connection of no known backend"))
}

/// Copies the database at `from` into a new SQLite file `to` as one consistent snapshot, never
/// holding the source's write lock (the REPL's `:dry` copy): SQLite's online backup, or a
/// PostgreSQL read snapshot copied table by table ([`migrate::postgres_to_sqlite`]).
pub fn copy_to_file(from: &Path, to: &Path) -> Result<()> {
    match Location::of(from) {
        Location::Sqlite(path) => sqlite::backup(path, to),
        Location::Postgres(url) => migrate::postgres_to_sqlite(url, to),
    }
}
