//! The SQLite backend (rusqlite, bundled SQLite): connection pragmas, the migrations of
//! [`MIGRATIONS`](super::MIGRATIONS) recorded in `PRAGMA user_version`, the `money()` SQL
//! function, and the conversions between rusqlite's values and errors and the store's.
//!
//! The `*_raw` functions hand out plain rusqlite connections set up like the engine's: for the
//! benches' raw baselines and the SQLite-only tests, never for the engine's own code.

use super::conn::{Error, ErrorKind};
use super::value::{Params, ValueRef};
use super::{Durability, MIGRATIONS, Result, SCHEMA_VERSION};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::functions::FunctionFlags;
use rusqlite::types::{ToSqlOutput, ValueRef as SqlValueRef};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ffi;
        let kind = match &e {
            rusqlite::Error::QueryReturnedNoRows => ErrorKind::NoRows,
            rusqlite::Error::SqliteFailure(f, _) => match f.code {
                ffi::ErrorCode::ConstraintViolation => match f.extended_code {
                    ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                        ErrorKind::Unique
                    }
                    _ => ErrorKind::Constraint,
                },
                ffi::ErrorCode::DatabaseBusy | ffi::ErrorCode::DatabaseLocked => ErrorKind::Busy,
                _ => ErrorKind::Other,
            },
            rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::IntegralValueOutOfRange(..) => ErrorKind::Type,
            _ => ErrorKind::Other,
        };
        Error::new(kind, e.to_string())
    }
}

/// A bound value as rusqlite takes it, borrowed.
struct Bind<'a>(ValueRef<'a>);

impl rusqlite::ToSql for Bind<'_> {
    #[inline]
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            ValueRef::Null => SqlValueRef::Null,
            ValueRef::Integer(i) => SqlValueRef::Integer(i),
            ValueRef::Text(t) => SqlValueRef::Text(t.as_bytes()),
            ValueRef::Blob(b) => SqlValueRef::Blob(b),
        }))
    }
}

/// Binds every placeholder of `stmt` from `params` (which must have as many values, or at
/// least as many when lenient).
#[inline]
pub(super) fn bind<P: Params>(stmt: &mut rusqlite::Statement<'_>, params: &P) -> Result<()> {
    let n = stmt.parameter_count();
    let given = params.count();
    if given != n && !(params.lenient() && given > n) {
        return Err(Error::other(format!(
            "the statement takes {n} values, {given} were given"
        )));
    }
    for i in 0..n {
        stmt.raw_bind_parameter(i + 1, Bind(super::bindable(params.value(i))?))?;
    }
    Ok(())
}

/// A column value as the store sees it. Text that is not UTF-8 is shown as bytes; a float (no
/// column holds one, and the store has no type for it) is refused.
#[inline]
pub(super) fn value_ref(v: SqlValueRef<'_>) -> Result<ValueRef<'_>> {
    Ok(match v {
        SqlValueRef::Null => ValueRef::Null,
        SqlValueRef::Integer(i) => ValueRef::Integer(i),
        SqlValueRef::Text(t) => match std::str::from_utf8(t) {
            Ok(s) => ValueRef::Text(s),
            Err(_) => ValueRef::Blob(t),
        },
        SqlValueRef::Blob(b) => ValueRef::Blob(b),
        SqlValueRef::Real(f) => {
            return Err(Error::type_mismatch(format!(
                "a query answered the float {f}; floats are never stored or read"
            )));
        }
    })
}

/// Opens a connection with the ledger's pragmas and the SQL functions, without touching the
/// schema.
pub fn connect_raw(path: &Path, durability: Durability) -> Result<Connection> {
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

/// [`connect_raw`] and the schema brought up to date.
pub fn open_raw(path: &Path, durability: Durability) -> Result<Connection> {
    let conn = connect_raw(path, durability)?;
    migrate(&conn, SCHEMA_VERSION)?;
    Ok(conn)
}

/// A read-only connection of the reader pool.
pub(super) fn connect_reader_raw(path: &Path, durability: Durability) -> Result<Connection> {
    /// How much of the database file a read connection maps (read-only) into memory: pages
    /// read through the map skip SQLite's page cache, whose lock every connection of the
    /// process shares, so that concurrent reads stop queueing on it.
    const READER_MMAP_BYTES: i64 = 256 << 20;
    let c = connect_raw(path, durability)?;
    c.pragma_update(None, "query_only", "ON")?;
    c.pragma_update(None, "mmap_size", READER_MMAP_BYTES)?;
    Ok(c)
}

pub(super) fn schema_version(conn: &Connection) -> Result<i64> {
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}

/// Migrations run with foreign keys off (a migration that rebuilds a table drops the old one
/// while other tables still refer to it: SQLite's 12-step procedure), and each is checked with
/// `PRAGMA foreign_key_check` before it commits; the connection's setting is restored after.
pub(super) fn migrate(conn: &Connection, target: i64) -> Result<()> {
    let found = schema_version(conn)?;
    if found > SCHEMA_VERSION {
        return Err(Error::new(
            ErrorKind::TooNew {
                found,
                supported: SCHEMA_VERSION,
            },
            "",
        ));
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

fn migrate_steps(conn: &Connection, found: i64, target: i64) -> Result<()> {
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
    use rusqlite::OptionalExtension;
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

/// Copies the database at `from` into a new file `to` in one backup step: the source is read
/// in one read transaction (a consistent snapshot) and never locked for writing.
/// A read-only connection to an existing file (the source of `billhost migrate`).
pub(super) fn connect_read_only(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(10))?;
    Ok(conn)
}

pub(super) fn backup(from: &Path, to: &Path) -> Result<()> {
    let src = Connection::open_with_flags(
        from,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    src.busy_timeout(Duration::from_secs(10))?;
    // The copy holds password hashes and money: readable by its owner only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(to)
            .map_err(|e| Error::other(e.to_string()))?;
    }
    let mut dst = Connection::open(to)?;
    let backup = Backup::new(&src, &mut dst)?;
    match backup.step(-1)? {
        StepResult::Done => Ok(()),
        _ => Err(Error::new(
            ErrorKind::Busy,
            "the database stayed busy; try again",
        )),
    }
}
