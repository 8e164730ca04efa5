//! The embedded SQLite store: opening connections with the ledger's pragmas, the versioned
//! migrations, and the SQL functions every connection carries.

use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::path::Path;
use std::time::Duration;

/// Each entry upgrades the schema from version `index` to `index + 1`; `PRAGMA user_version`
/// records the version a database is at. Entries are never edited once released: a change is a
/// new entry.
pub const MIGRATIONS: &[&str] = &[
    concat!(include_str!("v1_core.sql"), include_str!("v1_seed.sql")),
    include_str!("v2_ledger.sql"),
    include_str!("v3_outbox.sql"),
    include_str!("v4_auth_epoch.sql"),
    include_str!("v5_refund_retry.sql"),
    include_str!("v6_no_reuse_integer_money.sql"),
];

pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How commits reach the disk. `Full` (the default) survives power loss; `Normal` survives a
/// crash of the process but may lose the last commits on power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    Full,
    Normal,
}

#[derive(Debug)]
pub enum StoreError {
    Sqlite(rusqlite::Error),
    /// The database was written by a newer billhost.
    TooNew {
        found: i64,
        supported: i64,
    },
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Sqlite(e) => write!(f, "database: {e}"),
            StoreError::TooNew { found, supported } => write!(
                f,
                "the database is at schema version {found}, newer than the {supported} this billhost \
                 supports; upgrade billhost or use another database"
            ),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e)
    }
}

pub mod checkpoint;
pub mod walsync;

/// Opens (creating if needed) the database and brings its schema up to date.
pub fn open(path: &Path, durability: Durability) -> Result<Connection, StoreError> {
    let conn = connect(path, durability)?;
    migrate(&conn, SCHEMA_VERSION)?;
    Ok(conn)
}

/// Opens a connection with the pragmas and functions, without touching the schema.
pub fn connect(path: &Path, durability: Durability) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let sync = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(256);
    register_functions(&conn)?;
    Ok(conn)
}

pub fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

/// Applies the migrations up to `target`, each in its own transaction. Refuses a database newer
/// than this build.
///
/// Migrations run with foreign keys off (a migration that rebuilds a table drops the old one
/// while other tables still refer to it: SQLite's 12-step procedure), and each is checked with
/// `PRAGMA foreign_key_check` before it commits; the connection's setting is restored after.
pub fn migrate(conn: &Connection, target: i64) -> Result<(), StoreError> {
    let found = schema_version(conn)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found >= target.min(SCHEMA_VERSION) {
        return Ok(());
    }
    let foreign_keys: bool = conn.pragma_query_value(None, "foreign_keys", |r| r.get(0))?;
    conn.pragma_update(None, "foreign_keys", false)?;
    let result = migrate_steps(conn, found, target);
    conn.pragma_update(None, "foreign_keys", foreign_keys)?;
    result
}

fn migrate_steps(conn: &Connection, found: i64, target: i64) -> Result<(), StoreError> {
    for version in found..target.min(SCHEMA_VERSION) {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        // Another process may have migrated while we waited for the lock.
        let now = schema_version(conn)?;
        if now > version {
            conn.execute_batch("COMMIT")?;
            continue;
        }
        let step = conn
            .execute_batch(MIGRATIONS[version as usize])
            .and_then(|()| foreign_keys_hold(conn))
            .and_then(|()| conn.pragma_update(None, "user_version", version + 1));
        match step {
            Ok(()) => conn.execute_batch("COMMIT")?,
            Err(e) => {
                conn.execute_batch("ROLLBACK")?;
                return Err(e.into());
            }
        }
    }
    Ok(())
}

/// Fails when any row refers to a row that does not exist.
fn foreign_keys_hold(conn: &Connection) -> rusqlite::Result<()> {
    let broken: Option<String> = conn
        .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
        .optional()?;
    match broken {
        None => Ok(()),
        Some(table) => Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY),
            Some(format!(
                "migration left a broken foreign key in table {table}"
            )),
        )),
    }
}

/// `money(minor, scale)` renders integer minor units as an exact decimal string
/// (`money(-1234, 2)` is `-12.34`), so that list queries can show amounts without ever going
/// through a float.
fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        "money",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let minor: Option<i64> = ctx.get(0)?;
            let scale: i64 = ctx.get(1)?;
            Ok(minor.map(|m| crate::money::format_minor(m, scale.clamp(0, 12) as u32)))
        },
    )
}
