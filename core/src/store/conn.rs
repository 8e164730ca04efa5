//! Connections, statements and rows, dispatched over the backends. Every statement is prepared
//! once per connection and kept ([`Connection::prepare_cached`]); values are always bound.

use super::Result;
use super::sqlite;
use super::value::{FromValue, Params, ValueRef};
use std::fmt;

/// What went wrong, as far as the engine cares: it maps them to error documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A query that must answer a row answered none.
    NoRows,
    /// A unique (or primary key) constraint refused the write.
    Unique,
    /// Another constraint (foreign key, check, not null) refused the write.
    Constraint,
    /// The database stayed locked by another writer.
    Busy,
    /// A column did not hold what it was read as.
    Type,
    /// The database was written by a newer billhost.
    TooNew {
        found: i64,
        supported: i64,
    },
    Other,
}

#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    msg: String,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, msg: impl Into<String>) -> Self {
        Error {
            kind,
            msg: msg.into(),
        }
    }

    pub(crate) fn type_mismatch(msg: String) -> Self {
        Error::new(ErrorKind::Type, msg)
    }

    pub(crate) fn other(msg: impl Into<String>) -> Self {
        Error::new(ErrorKind::Other, msg)
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ErrorKind::TooNew { found, supported } => write!(
                f,
                "the database is at schema version {found}, newer than the {supported} this billhost \
                 supports; upgrade billhost or use another database"
            ),
            _ => write!(f, "database: {}", self.msg),
        }
    }
}

impl std::error::Error for Error {}

/// `.optional()` on a query that may answer no row.
pub trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    #[inline]
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind == ErrorKind::NoRows => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The savepoints the engine uses: a func in a group commit, a call replayed in a batch, a
/// nested call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Savepoint {
    Func,
    BatchCall,
    NestedCall,
}

impl Savepoint {
    /// (open, release, roll back to)
    fn sql(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Savepoint::Func => ("SAVEPOINT func", "RELEASE func", "ROLLBACK TO func"),
            Savepoint::BatchCall => (
                "SAVEPOINT batch_call",
                "RELEASE batch_call",
                "ROLLBACK TO batch_call",
            ),
            Savepoint::NestedCall => (
                "SAVEPOINT nested_call",
                "RELEASE nested_call",
                "ROLLBACK TO nested_call",
            ),
        }
    }
}

enum Backend {
    Sqlite(rusqlite::Connection),
}

/// A connection to the database, whichever backend holds it.
pub struct Connection {
    backend: Backend,
}

impl Connection {
    pub(crate) fn sqlite(conn: rusqlite::Connection) -> Connection {
        Connection {
            backend: Backend::Sqlite(conn),
        }
    }

    /// The SQLite connection underneath, for the SQLite backend's own code.
    pub(crate) fn sqlite_raw(&self) -> &rusqlite::Connection {
        match &self.backend {
            Backend::Sqlite(c) => c,
        }
    }

    /// A statement, prepared once per connection and SQL text and reused from then on.
    #[inline]
    pub fn prepare_cached(&self, sql: &str) -> Result<Statement<'_>> {
        match &self.backend {
            Backend::Sqlite(c) => Ok(Statement {
                inner: StmtInner::Sqlite(c.prepare_cached(sql)?),
            }),
        }
    }

    /// The same as [`Connection::prepare_cached`]: every statement is kept.
    pub fn prepare(&self, sql: &str) -> Result<Statement<'_>> {
        self.prepare_cached(sql)
    }

    /// Runs one statement; answers how many rows it changed.
    pub fn execute<P: Params>(&self, sql: &str, params: P) -> Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    /// The first row of a query, through `f`; [`ErrorKind::NoRows`] if there is none.
    pub fn query_row<T, P: Params, F: FnOnce(&Row<'_>) -> Result<T>>(
        &self,
        sql: &str,
        params: P,
        f: F,
    ) -> Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }

    /// Runs statements without values (schema, maintenance), not cached.
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(c) => Ok(c.execute_batch(sql)?),
        }
    }

    /// The id the last insert on this connection gave its row.
    pub fn last_insert_rowid(&self) -> Result<i64> {
        match &self.backend {
            Backend::Sqlite(c) => Ok(c.last_insert_rowid()),
        }
    }

    /// Whether a transaction is open on this connection.
    pub fn in_transaction(&self) -> bool {
        match &self.backend {
            Backend::Sqlite(c) => !c.is_autocommit(),
        }
    }

    fn run(&self, sql: &str) -> Result<()> {
        self.prepare_cached(sql)?.execute([])?;
        Ok(())
    }

    /// Opens a write transaction, taking the write lock now (SQLite: `BEGIN IMMEDIATE`, so
    /// that a read-then-write never fails on a lock taken later).
    pub fn begin_write(&self) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(_) => self.run("BEGIN IMMEDIATE"),
        }
    }

    /// Opens a read transaction: one snapshot until it ends.
    pub fn begin_read(&self) -> Result<()> {
        self.run("BEGIN")
    }

    pub fn commit(&self) -> Result<()> {
        self.run("COMMIT")
    }

    pub fn rollback(&self) -> Result<()> {
        self.run("ROLLBACK")
    }

    pub fn savepoint(&self, sp: Savepoint) -> Result<()> {
        self.run(sp.sql().0)
    }

    /// Keeps what was done since the savepoint (in the enclosing transaction).
    pub fn release(&self, sp: Savepoint) -> Result<()> {
        self.run(sp.sql().1)
    }

    /// Undoes what was done since the savepoint, and closes it.
    pub fn rollback_to(&self, sp: Savepoint) -> Result<()> {
        self.run(sp.sql().2)?;
        self.run(sp.sql().1)
    }

    /// The connection's backend as a word, for messages.
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Sqlite(_) => "sqlite",
        }
    }
}

enum StmtInner<'c> {
    Sqlite(rusqlite::CachedStatement<'c>),
}

/// A prepared statement of a connection.
pub struct Statement<'c> {
    inner: StmtInner<'c>,
}

impl Statement<'_> {
    /// How many columns the statement's rows have.
    pub fn column_count(&self) -> usize {
        match &self.inner {
            StmtInner::Sqlite(s) => s.column_count(),
        }
    }

    /// Runs the statement with `params`; answers how many rows it changed.
    #[inline]
    pub fn execute<P: Params>(&mut self, params: P) -> Result<usize> {
        match &mut self.inner {
            StmtInner::Sqlite(s) => {
                sqlite::bind(s, &params)?;
                Ok(s.raw_execute()?)
            }
        }
    }

    /// The rows of the query with `params`, read one at a time.
    #[inline]
    pub fn query<P: Params>(&mut self, params: P) -> Result<Rows<'_>> {
        match &mut self.inner {
            StmtInner::Sqlite(s) => {
                sqlite::bind(s, &params)?;
                Ok(Rows {
                    inner: RowsInner::Sqlite(s.raw_query()),
                })
            }
        }
    }

    /// The first row, through `f`; [`ErrorKind::NoRows`] if there is none.
    #[inline]
    pub fn query_row<T, P: Params, F: FnOnce(&Row<'_>) -> Result<T>>(
        &mut self,
        params: P,
        f: F,
    ) -> Result<T> {
        let mut rows = self.query(params)?;
        match rows.next()? {
            Some(row) => f(&row),
            None => Err(Error::new(ErrorKind::NoRows, "Query returned no rows")),
        }
    }

    /// Every row, each through `f`.
    #[inline]
    pub fn query_map<T, P: Params, F: FnMut(&Row<'_>) -> Result<T>>(
        &mut self,
        params: P,
        f: F,
    ) -> Result<MappedRows<'_, F>> {
        Ok(MappedRows {
            rows: self.query(params)?,
            f,
        })
    }
}

enum RowsInner<'s> {
    Sqlite(rusqlite::Rows<'s>),
}

/// The rows of a running query.
pub struct Rows<'s> {
    inner: RowsInner<'s>,
}

impl Rows<'_> {
    /// The next row, `None` after the last.
    #[inline]
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Row<'_>>> {
        match &mut self.inner {
            RowsInner::Sqlite(r) => Ok(r.next()?.map(|r| Row {
                inner: RowInner::Sqlite(r),
            })),
        }
    }
}

/// The rows of a query mapped through a function, as an iterator.
pub struct MappedRows<'s, F> {
    rows: Rows<'s>,
    f: F,
}

impl<T, F: FnMut(&Row<'_>) -> Result<T>> Iterator for MappedRows<'_, F> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        match self.rows.next() {
            Ok(Some(row)) => Some((self.f)(&row)),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

enum RowInner<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
}

/// One row of a query.
pub struct Row<'r> {
    inner: RowInner<'r>,
}

impl Row<'_> {
    /// Column `i` (from 0) as a `T`.
    #[inline]
    pub fn get<T: FromValue>(&self, i: usize) -> Result<T> {
        T::from_value(self.get_ref(i)?)
    }

    /// Column `i` (from 0) as it is stored.
    #[inline]
    pub fn get_ref(&self, i: usize) -> Result<ValueRef<'_>> {
        match &self.inner {
            RowInner::Sqlite(r) => sqlite::value_ref(r.get_ref(i)?),
        }
    }
}

/// A whole row as a tuple of its columns: `.query_row([id], |r| r.try_into())`.
macro_rules! row_tuple {
    ($($name:ident $i:tt),+) => {
        impl<$($name: FromValue),+> TryFrom<&Row<'_>> for ($($name,)+) {
            type Error = Error;
            #[inline]
            fn try_from(row: &Row<'_>) -> Result<Self> {
                Ok(($(row.get::<$name>($i)?,)+))
            }
        }
    };
}

row_tuple!(A 0);
row_tuple!(A 0, B 1);
row_tuple!(A 0, B 1, C 2);
row_tuple!(A 0, B 1, C 2, D 3);
row_tuple!(A 0, B 1, C 2, D 3, E 4);
row_tuple!(A 0, B 1, C 2, D 3, E 4, F 5);
row_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
row_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
row_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8);
row_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9);
row_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10);
row_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11);
row_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12);
row_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13);
row_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13, O 14);
row_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13, O 14, P 15);
