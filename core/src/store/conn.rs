//! Connections, statements and rows, dispatched over the backends. Every statement is prepared
//! once per connection and kept ([`Connection::prepare_cached`]); values are always bound.

use super::Result;
use super::pg::{self, PgConn};
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
    /// A text value to bind held a NUL character, which no text column holds (PostgreSQL's
    /// text cannot): refused by both backends before the database sees it.
    NulText,
    /// A write deferred by [`Statement::execute_deferred`] failed when it was sent, with a
    /// later statement (which did not run).
    Deferred,
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

    /// The text without the kind's prefix (a database error: the server's message).
    pub(crate) fn message(&self) -> &str {
        &self.msg
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
    /// Release and open again, as one text.
    fn reopen(self) -> &'static str {
        match self {
            Savepoint::Func => "RELEASE func; SAVEPOINT func",
            Savepoint::BatchCall => "RELEASE batch_call; SAVEPOINT batch_call",
            Savepoint::NestedCall => "RELEASE nested_call; SAVEPOINT nested_call",
        }
    }

    /// Roll back to and release, as one text.
    fn undo(self) -> &'static str {
        match self {
            Savepoint::Func => "ROLLBACK TO func; RELEASE func",
            Savepoint::BatchCall => "ROLLBACK TO batch_call; RELEASE batch_call",
            Savepoint::NestedCall => "ROLLBACK TO nested_call; RELEASE nested_call",
        }
    }

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
    Pg(Box<PgConn>),
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

    pub(crate) fn pg(conn: PgConn) -> Connection {
        Connection {
            backend: Backend::Pg(Box::new(conn)),
        }
    }

    /// The SQLite connection underneath, for the SQLite backend's own code.
    pub(crate) fn as_sqlite(&self) -> Option<&rusqlite::Connection> {
        match &self.backend {
            Backend::Sqlite(c) => Some(c),
            Backend::Pg(_) => None,
        }
    }

    pub(crate) fn as_pg(&self) -> Option<&PgConn> {
        match &self.backend {
            Backend::Pg(c) => Some(c),
            Backend::Sqlite(_) => None,
        }
    }

    /// Whether the connection can still be used (a PostgreSQL server may have closed it).
    pub fn is_usable(&self) -> bool {
        match &self.backend {
            Backend::Sqlite(_) => true,
            Backend::Pg(c) => !c.is_closed(),
        }
    }

    /// How many funcs one group-commit batch may hold, each in its own savepoint (PostgreSQL
    /// keeps 64 subtransactions per transaction in its cache; nested calls take some too).
    pub fn max_batch(&self) -> usize {
        match &self.backend {
            Backend::Sqlite(_) => 64,
            Backend::Pg(_) => 32,
        }
    }

    /// A statement, prepared once per connection and SQL text and reused from then on.
    #[inline]
    pub fn prepare_cached(&self, sql: &str) -> Result<Statement<'_>> {
        match &self.backend {
            Backend::Sqlite(c) => Ok(Statement {
                inner: StmtInner::Sqlite(c.prepare_cached(sql)?),
            }),
            Backend::Pg(c) => Ok(Statement {
                inner: StmtInner::Pg {
                    stmt: c.statement(sql)?,
                    conn: c,
                },
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
            Backend::Pg(c) => c.batch(sql),
        }
    }

    /// The id the last insert on this connection gave its row.
    pub fn last_insert_rowid(&self) -> Result<i64> {
        match &self.backend {
            Backend::Sqlite(c) => Ok(c.last_insert_rowid()),
            Backend::Pg(c) => c.last_insert_rowid(),
        }
    }

    /// Whether a transaction is open on this connection.
    pub fn in_transaction(&self) -> bool {
        match &self.backend {
            Backend::Sqlite(c) => !c.is_autocommit(),
            Backend::Pg(c) => c.in_transaction(),
        }
    }

    /// A transaction control statement (cached on SQLite, one round trip on PostgreSQL).
    fn run(&self, sql: &str) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(_) => {
                self.prepare_cached(sql)?.execute([])?;
                Ok(())
            }
            Backend::Pg(c) => c.batch(sql),
        }
    }

    /// Opens a write transaction, taking the write lock now (SQLite: `BEGIN IMMEDIATE`, so
    /// that a read-then-write never fails on a lock taken later; PostgreSQL: the writers'
    /// advisory lock, held by one server's transaction at a time).
    pub fn begin_write(&self) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(_) => self.run("BEGIN IMMEDIATE"),
            Backend::Pg(c) => c.begin_write(),
        }
    }

    /// [`Connection::begin_write`], then the first row of `first` (one integer, a query that
    /// takes no values): one round trip on PostgreSQL.
    pub fn begin_write_with(&self, first: &str) -> Result<i64> {
        match &self.backend {
            Backend::Sqlite(_) => {
                self.begin_write()?;
                self.first_int(first)
            }
            Backend::Pg(c) => c.begin_write_with(first),
        }
    }

    /// Opens `sp` (after releasing the one of that name still open, when `reopen`), then reads
    /// the first row of `first` (one integer, a query that takes no values) inside it: one
    /// round trip on PostgreSQL.
    pub fn savepoint_with(&self, sp: Savepoint, reopen: bool, first: &str) -> Result<i64> {
        match &self.backend {
            Backend::Sqlite(_) => {
                if reopen {
                    self.release_and_reopen(sp)?;
                } else {
                    self.savepoint(sp)?;
                }
                self.first_int(first)
            }
            Backend::Pg(c) => {
                c.control_then_int(if reopen { sp.reopen() } else { sp.sql().0 }, first)
            }
        }
    }

    /// [`Connection::savepoint_with`] with the integer read expected to be `expect`, without a
    /// round trip of its own where the backend pipelines (PostgreSQL): the savepoint and the
    /// read go with the next statement, and statements from there answer only if the read
    /// held `expect`. Answers whether it was queued so; if so, [`Connection::guard_outcome`]
    /// must be read before the transaction goes on. `false` (SQLite): nothing was done.
    pub fn savepoint_expecting(
        &self,
        sp: Savepoint,
        reopen: bool,
        first: &str,
        expect: i64,
    ) -> Result<bool> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(false),
            Backend::Pg(c) => {
                let (open, release, _) = sp.sql();
                let steps: &[&str] = if reopen { &[release, open] } else { &[open] };
                c.savepoint_expecting(steps, first, expect)?;
                Ok(true)
            }
        }
    }

    /// How the savepoint of [`Connection::savepoint_expecting`] went (sent now if nothing
    /// sent it yet). An error: its own statements failed, the transaction's state unknown.
    pub fn guard_outcome(&self) -> Result<super::pg::Guarded> {
        match &self.backend {
            Backend::Sqlite(_) => Err(Error::other("no savepoint was queued to be checked")),
            Backend::Pg(c) => c.guard_outcome(),
        }
    }

    fn first_int(&self, sql: &str) -> Result<i64> {
        self.prepare_cached(sql)?.query_row([], |r| r.get(0))
    }

    /// Opens a read transaction: one snapshot until it ends.
    pub fn begin_read(&self) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(_) => self.run("BEGIN"),
            Backend::Pg(c) => c.begin_read(),
        }
    }

    /// Which database server process the session is on, where that can change under it (a
    /// PostgreSQL connection follows a failover): see [`PgConn::server`]. `None` on SQLite.
    pub fn server(&self) -> Option<i64> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Pg(c) => Some(c.server()),
        }
    }

    pub fn commit(&self) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(_) => self.run("COMMIT"),
            Backend::Pg(c) => c.end("COMMIT"),
        }
    }

    pub fn rollback(&self) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(_) => self.run("ROLLBACK"),
            Backend::Pg(c) => c.end("ROLLBACK"),
        }
    }

    /// Runs `f` inside a read snapshot that the first row of `first` (one integer) opens, and
    /// gives `f` that integer: on SQLite the query's statement holds the read transaction while
    /// it stays on its row (one statement instead of `BEGIN`, the query and `ROLLBACK`); on
    /// PostgreSQL a read transaction does, begun with `first` in one query (`first` takes no
    /// values).
    pub fn with_pinned_read<T>(&self, first: &str, f: impl FnOnce(i64) -> T) -> Result<T> {
        match &self.backend {
            Backend::Sqlite(_) => {
                let mut pin = self.prepare_cached(first)?;
                let mut rows = pin.query([])?;
                let n: i64 = match rows.next()? {
                    Some(row) => row.get(0)?,
                    None => return Err(Error::new(ErrorKind::NoRows, "Query returned no rows")),
                };
                // `rows` stays on its row (never stepped to the end) while `f` runs.
                let out = f(n);
                drop(rows);
                Ok(out)
            }
            Backend::Pg(c) => {
                // `BEGIN` and `first` in one round trip.
                let n = c.begin_read_with(first);
                let out = n.map(f);
                let end = self.rollback();
                let out = out?;
                end?;
                Ok(out)
            }
        }
    }

    /// Sends the writes deferred by [`Statement::execute_deferred`] and waits for them: their
    /// failure is the error. Nothing to do on SQLite, which defers nothing.
    pub fn flush(&self) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Pg(c) => c.flush(),
        }
    }

    /// Whether writes deferred by [`Statement::execute_deferred`] wait to be sent.
    pub fn has_deferred(&self) -> bool {
        match &self.backend {
            Backend::Sqlite(_) => false,
            Backend::Pg(c) => c.has_deferred(),
        }
    }

    /// Undoes what was done since the savepoint `sp`, which stays open (empty).
    pub fn rollback_within(&self, sp: Savepoint) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(_) => self.run(sp.sql().2),
            Backend::Pg(c) => c.rollback_to(sp.sql().2),
        }
    }

    pub fn savepoint(&self, sp: Savepoint) -> Result<()> {
        self.run(sp.sql().0)
    }

    /// Keeps what was done since the savepoint (in the enclosing transaction).
    pub fn release(&self, sp: Savepoint) -> Result<()> {
        self.run(sp.sql().1)
    }

    /// [`Connection::release`] then [`Connection::savepoint`] of the same name: one func of a
    /// batch kept, the next one's begun (one round trip on PostgreSQL).
    pub fn release_and_reopen(&self, sp: Savepoint) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(_) => {
                self.run(sp.sql().1)?;
                self.run(sp.sql().0)
            }
            Backend::Pg(c) => c.batch(sp.reopen()),
        }
    }

    /// Undoes what was done since the savepoint, and closes it.
    pub fn rollback_to(&self, sp: Savepoint) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(_) => {
                self.run(sp.sql().2)?;
                self.run(sp.sql().1)
            }
            Backend::Pg(c) => c.rollback_to(sp.undo()),
        }
    }

    /// The connection's backend as a word, for messages.
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Pg(_) => "postgresql",
        }
    }
}

enum StmtInner<'c> {
    Sqlite(rusqlite::CachedStatement<'c>),
    Pg {
        conn: &'c PgConn,
        stmt: pg::Prepared,
    },
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
            StmtInner::Pg { stmt, .. } => stmt.columns(),
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
            StmtInner::Pg { conn, stmt } => conn.execute(stmt, &params),
        }
    }

    /// [`Statement::execute`] for a write whose row count nobody needs: on PostgreSQL it is
    /// sent with the next statement, in the same round trip (SQLite runs it now). Its values
    /// are checked now; should the statement itself fail, the next statement sent (or
    /// [`Connection::flush`]) answers that error. The dispatcher flushes a func's deferred
    /// writes before it decides the func's outcome.
    #[inline]
    pub fn execute_deferred<P: Params>(&mut self, params: P) -> Result<()> {
        match &mut self.inner {
            StmtInner::Sqlite(s) => {
                sqlite::bind(s, &params)?;
                s.raw_execute()?;
                Ok(())
            }
            StmtInner::Pg { conn, stmt } => conn.execute_deferred(stmt, &params),
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
            StmtInner::Pg { conn, stmt } => Ok(Rows {
                inner: RowsInner::Pg {
                    rows: conn.query(stmt, &params)?.into_iter(),
                    current: None,
                },
            }),
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
    Pg {
        rows: std::vec::IntoIter<tokio_postgres::Row>,
        current: Option<tokio_postgres::Row>,
    },
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
            RowsInner::Pg { rows, current } => {
                *current = rows.next();
                Ok(current.as_ref().map(|r| Row {
                    inner: RowInner::Pg(r),
                }))
            }
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
    Pg(&'r tokio_postgres::Row),
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
            RowInner::Pg(r) => pg::value_ref(r, i),
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
