//! The PostgreSQL backend (tokio-postgres driven synchronously, [`client`]): connecting from a `postgres://`
//! URL (libpq's multi-host form with `target_session_attrs=read-write` follows a failover), the
//! migrations of [`MIGRATIONS`] recorded in `billhost_schema`, and the dialect: the engine's
//! SQL is SQLite's, rewritten here once per statement text and kept with its prepared
//! statement (placeholders `?N` → `$N`, `money(` → `billhost_money(`, `LIKE` → `COLLATE "C"
//! ILIKE` since SQLite's `LIKE` ignores ASCII case, and ASCII's only, `INSERT OR IGNORE` → `ON CONFLICT DO NOTHING`; SQLite's
//! `group_concat` is an aggregate of the migration). Values cross in binary with the types the
//! server inferred for each placeholder; columns come back as the store's values (integers of
//! every width, booleans as 0/1, integral `numeric` sums as integers, text, bytes).
//!
//! Writes from every server take one transaction-level advisory lock ([`WRITER_LOCK`]) when
//! they begin: writers are serialised across the cluster as SQLite serialises them in one
//! file, so the ledger's read-modify-write rules and gapless invoice numbers hold with several
//! servers, without row locks in the ledger's code (`docs/postgres.md`).
//!
//! TLS (libpq's `sslmode` and certificate parameters, with rustls) is [`tls`].

pub mod client;
mod env;
pub mod tls;

use super::conn::{Error, ErrorKind};
use super::value::{FromValue, Params, Value, ValueRef};
use super::{Durability, Result};
use bytes::BytesMut;
use client::{Answer, Client, Last};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::str::FromStr;
use tls::SslMode;
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::{Config, NoTls, Statement};

/// Each entry upgrades the PostgreSQL schema from version `index` to `index + 1`, with the same
/// numbers as SQLite's [`super::MIGRATIONS`].
pub const MIGRATIONS: &[&str] = &[
    concat!(
        include_str!("pg/v1_core.sql"),
        include_str!("pg/v1_functions.sql"),
        include_str!("v1_directories.sql"),
        include_str!("pg/v1_seed.sql")
    ),
    include_str!("pg/v2_ledger.sql"),
    include_str!("pg/v3_outbox.sql"),
    include_str!("pg/v4_auth_epoch.sql"),
    include_str!("pg/v5_refund_retry.sql"),
    include_str!("pg/v6_no_reuse_integer_money.sql"),
    include_str!("pg/v7_session_key.sql"),
    include_str!("pg/v8_directory_alias.sql"),
    include_str!("pg/v9_scheduled_runs.sql"),
    include_str!("pg/v10_payment_indexes.sql"),
];

const _: () = assert!(MIGRATIONS.len() == super::MIGRATIONS.len());

/// The advisory lock every write transaction holds (and migrations): "billhost" in ASCII.
pub const WRITER_LOCK: i64 = 0x6269_6c6c_686f_7374;

/// What opens a write transaction: `BEGIN` and [`WRITER_LOCK`] in one simple query.
const BEGIN_WRITE: &str = "BEGIN; SELECT pg_advisory_xact_lock(7091318301135958900)";

/// Prepared statements kept per connection before the cache starts over (lists build their SQL
/// from filters, so texts are many but bounded).
const STATEMENT_CACHE: usize = 512;

/// Whether `location` names a PostgreSQL database rather than a SQLite file: a `postgres://`
/// URL, or libpq's `key=value` form starting with one of its connection keywords
/// (`host=db1 dbname=billing sslmode=verify-full`).
pub fn is_url(location: &str) -> bool {
    const KEYWORDS: &[&str] = &["host", "hostaddr", "port", "dbname", "user"];
    is_uri(location)
        || location
            .split_once('=')
            .is_some_and(|(k, _)| !k.contains(['/', '.']) && KEYWORDS.contains(&k.trim()))
}

/// Whether `location` is in the URL form (rather than `key=value`).
fn is_uri(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// The URL without the password of its user part (`postgres://user:secret@host` shows as
/// `postgres://user:***@host`), and without a `password=` parameter's value (in either form).
pub fn redacted(url: &str) -> String {
    if !is_uri(url) {
        return match tls::keyword_pairs(url) {
            Ok(pairs) => pairs
                .iter()
                .map(|(k, v)| match k.as_str() {
                    "password" => "password=***".to_string(),
                    _ if v.is_empty() || v.contains(|c: char| c.is_whitespace() || c == '\'') => {
                        format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
                    }
                    _ => format!("{k}={v}"),
                })
                .collect::<Vec<_>>()
                .join(" "),
            Err(_) => "(a connection string that does not parse)".to_string(),
        };
    }
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (auth_end, _) = rest
        .char_indices()
        .find(|&(_, c)| c == '/' || c == '?')
        .unwrap_or((rest.len(), ' '));
    let mut out = format!("{scheme}://");
    match rest[..auth_end].rsplit_once('@') {
        Some((user, hosts)) => match user.split_once(':') {
            Some((name, _)) => out.push_str(&format!("{name}:***@{hosts}")),
            None => out.push_str(&format!("{user}@{hosts}")),
        },
        None => out.push_str(&rest[..auth_end]),
    }
    let tail = &rest[auth_end..];
    match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some(("password", _)) => "password=***".to_string(),
                    _ => kv.to_string(),
                })
                .collect();
            out.push_str(&format!("{path}?{}", query.join("&")));
        }
        None => out.push_str(tail),
    }
    out
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        let kind = match e.code() {
            Some(c) if *c == SqlState::UNIQUE_VIOLATION => ErrorKind::Unique,
            Some(c)
                if *c == SqlState::CHECK_VIOLATION
                    || *c == SqlState::FOREIGN_KEY_VIOLATION
                    || *c == SqlState::NOT_NULL_VIOLATION =>
            {
                ErrorKind::Constraint
            }
            Some(c)
                if *c == SqlState::T_R_SERIALIZATION_FAILURE
                    || *c == SqlState::T_R_DEADLOCK_DETECTED
                    || *c == SqlState::LOCK_NOT_AVAILABLE =>
            {
                ErrorKind::Busy
            }
            _ => ErrorKind::Other,
        };
        // The crate's own text names only the kind ("error connecting to server"): the causes
        // say what happened (refused, the certificate, a timeout).
        let msg = match e.as_db_error() {
            Some(db) => db.message().to_string(),
            None => {
                let mut msg = e.to_string();
                let mut cause = std::error::Error::source(&e);
                while let Some(c) = cause {
                    msg.push_str(&format!(": {c}"));
                    cause = c.source();
                }
                msg
            }
        };
        Error::new(kind, msg)
    }
}

/// A statement prepared on the server, with where each of its placeholders takes its value
/// from: every occurrence of SQLite's `?N` is a placeholder of its own here (PostgreSQL wants
/// one type per placeholder, and `?1` may be a login and an email in one statement).
#[derive(Clone)]
pub struct Prepared {
    stmt: Statement,
    sources: std::sync::Arc<[u32]>,
    /// The highest `?N` of the text: the values the statement takes.
    takes: u32,
}

impl Prepared {
    pub fn columns(&self) -> usize {
        self.stmt.columns().len()
    }
}

/// One PostgreSQL connection with its statement cache. The engine's connections are used from
/// one thread at a time (`&Connection` everywhere), so interior mutability is enough.
pub struct PgConn {
    target: Target,
    durability: Durability,
    client: RefCell<Client>,
    statements: RefCell<HashMap<String, Prepared>>,
    in_transaction: Cell<bool>,
    /// Which server process the session is on ([`PgConn::server`]).
    server: Cell<i64>,
    /// Writes deferred by [`PgConn::execute_deferred`] and savepoints opened by
    /// [`PgConn::savepoint_expecting`], sent with the next statement.
    deferred: RefCell<Vec<Deferred>>,
    /// Where the savepoint that [`PgConn::savepoint_expecting`] queued stands.
    guard: RefCell<GuardState>,
}

/// What waits to be sent with the next statement.
enum Deferred {
    Write(Prepared, Vec<Value>),
    /// A savepoint (its statements, e.g. `RELEASE` and `SAVEPOINT`) and then a check that
    /// `check` reads `expect`.
    Guard {
        steps: Vec<Prepared>,
        check: Prepared,
        expect: i64,
    },
}

/// How the savepoint queued by [`PgConn::savepoint_expecting`] went.
enum GuardState {
    Idle,
    /// Queued, not yet sent.
    Pending,
    Passed,
    /// The check read another value: what followed it must be undone, unseen.
    Stale,
    /// A write deferred before the savepoint failed (so the savepoint was never opened).
    Broken(Error),
    /// The savepoint's own statements failed.
    Failed(Error),
}

/// The error of a statement not run because the savepoint queued before it did not hold.
fn not_run() -> Error {
    Error::other("not run: the savepoint it follows did not hold what was expected")
}

/// How a savepoint opened by [`PgConn::savepoint_expecting`] went, once sent.
pub enum Guarded {
    /// Opened, and the check read the value expected.
    Passed,
    /// Opened, but the check read another value: everything after it (what the statements sent
    /// with it did) is to be undone within the savepoint, unseen by whoever issued them.
    Stale,
    /// Not opened: a write deferred before it failed (that error), and the transaction is
    /// aborted back to the savepoint open before.
    Broken(Error),
}

impl PgConn {
    pub fn connect(url: &str, durability: Durability) -> Result<PgConn> {
        let invalid = |e: String| Error::other(format!("the PostgreSQL URL is not valid: {e}"));
        let (rest, tls) = tls::split(url).map_err(invalid)?;
        let mut config = Config::from_str(&rest).map_err(|e| invalid(e.to_string()))?;
        env::fill(&mut config, &env::process).map_err(invalid)?;
        tls.network_defaults(&mut config);
        config.ssl_mode(tls.mode.negotiated());
        // Only addresses (`hostaddr`): the certificate is checked against the address, and the
        // handshake has a name to give.
        if config.get_hosts().is_empty() {
            for addr in config.get_hostaddrs().to_vec() {
                config.host(addr.to_string());
            }
        }
        // As in libpq, sslmode does not apply to Unix sockets (the server has no TLS there).
        #[cfg(unix)]
        let sockets_only = !config.get_hosts().is_empty()
            && config
                .get_hosts()
                .iter()
                .all(|h| matches!(h, tokio_postgres::config::Host::Unix(_)));
        #[cfg(not(unix))]
        let sockets_only = false;
        if sockets_only {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
        }
        let target = Target {
            config,
            tls,
            sockets_only,
        };
        let (client, server) = target.open(durability)?;
        Ok(PgConn {
            target,
            durability,
            client: RefCell::new(client),
            statements: RefCell::new(HashMap::new()),
            in_transaction: Cell::new(false),
            server: Cell::new(server),
            deferred: RefCell::new(Vec::new()),
            guard: RefCell::new(GuardState::Idle),
        })
    }

    /// Before a transaction: a connection the server dropped (a failover, a restart) is opened
    /// again, on whichever host of the URL now takes writes.
    fn ensure_open(&self) -> Result<()> {
        if self.client.borrow().is_closed() {
            let (client, server) = self.target.open(self.durability)?;
            *self.client.borrow_mut() = client;
            self.server.set(server);
            self.statements.borrow_mut().clear();
            self.in_transaction.set(false);
            self.forget_deferred();
        }
        Ok(())
    }

    pub fn is_closed(&self) -> bool {
        self.client.borrow().is_closed()
    }

    /// The server process this session is on: when its postmaster started, in microseconds
    /// since 1970. A standby promoted to primary keeps its own; a restarted server gets a new
    /// one. A sync point proves a commit durable only on the server the commit was made on
    /// ([`crate::store::walsync`]).
    pub fn server(&self) -> i64 {
        self.server.get()
    }

    /// Runs `sql` (static text, no values) as one simple query, after the deferred writes, in
    /// the same round trip.
    pub fn batch(&self, sql: &str) -> Result<()> {
        self.with_deferred(Last::Batch(sql)).map(drop)
    }

    /// Runs `last` after the deferred writes, sent together (one round trip), and forgets them.
    /// With a savepoint of [`PgConn::savepoint_expecting`] among them, `last` answers only if
    /// the savepoint's check read the value expected; otherwise (and from then on, until
    /// [`PgConn::guard_outcome`] is read) statements fail unanswered.
    fn with_deferred(&self, last: Last<'_>) -> Result<Answer> {
        match &*self.guard.borrow() {
            GuardState::Idle | GuardState::Pending | GuardState::Passed => {}
            GuardState::Stale | GuardState::Broken(_) | GuardState::Failed(_) => {
                return Err(not_run());
            }
        }
        let deferred = std::mem::take(&mut *self.deferred.borrow_mut());
        // The statements to send before `last`, with their values (checked when deferred),
        // and where the guarded savepoint's are: (its first, its check, the value expected).
        let mut sent: Vec<(&Prepared, Vec<Bind<'_>>, bool)> = Vec::new();
        let mut guard = None;
        for d in &deferred {
            match d {
                Deferred::Write(p, values) => sent.push((
                    p,
                    p.sources
                        .iter()
                        .map(|&k| Bind(values[k as usize - 1].as_ref()))
                        .collect(),
                    false,
                )),
                Deferred::Guard {
                    steps,
                    check,
                    expect,
                } => {
                    let start = sent.len();
                    sent.extend(steps.iter().map(|p| (p, Vec::new(), false)));
                    guard = Some((start, sent.len(), *expect));
                    sent.push((check, Vec::new(), true));
                }
            }
        }
        let queued: Vec<client::Queued<'_>> = sent
            .iter()
            .map(|(p, b, reads)| client::Queued {
                stmt: &p.stmt,
                params: b.iter().map(|b| b as &(dyn ToSql + Sync)).collect(),
                reads: *reads,
            })
            .collect();
        let answer = self.client.borrow_mut().pipelined(&queued, last)?;
        let Some((start, check, expect)) = guard else {
            return answer.into_last();
        };
        let mut before = answer.before;
        let failed = before.iter().position(Result::is_err);
        let state = match failed {
            Some(i) if i < start => match before.swap_remove(i) {
                Err(e) => GuardState::Broken(client::deferred_failed(&e)),
                Ok(_) => GuardState::Failed(Error::other("a deferred write failed")),
            },
            Some(i) if i <= check => match before.swap_remove(i) {
                Err(e) => GuardState::Failed(e),
                Ok(_) => GuardState::Failed(Error::other("the savepoint failed")),
            },
            _ => match before.get(check) {
                Some(Ok(Some(n))) if *n == expect => GuardState::Passed,
                _ => GuardState::Stale,
            },
        };
        let passed = matches!(state, GuardState::Passed);
        *self.guard.borrow_mut() = state;
        if !passed {
            return Err(not_run());
        }
        // What followed the savepoint is the caller's own.
        client::Pipelined {
            before: before.split_off(check + 1),
            last: answer.last,
        }
        .into_last()
    }

    /// Forgets the deferred writes unsent: what a rollback to a savepoint opened before them
    /// undoes. Every savepoint open was opened by a statement sent, which sent what was
    /// deferred before it, except one queued by [`PgConn::savepoint_expecting`]: that one, and
    /// what was deferred before it, stay queued.
    fn drop_deferred(&self) {
        let mut deferred = self.deferred.borrow_mut();
        let keep = deferred
            .iter()
            .rposition(|d| matches!(d, Deferred::Guard { .. }))
            .map_or(0, |g| g + 1);
        deferred.truncate(keep);
    }

    /// Forgets everything deferred, a queued savepoint too: what ending the transaction undoes.
    fn forget_deferred(&self) {
        self.deferred.borrow_mut().clear();
        *self.guard.borrow_mut() = GuardState::Idle;
    }

    /// Queues, to be sent with the next statement (no round trip now): `steps` (static texts:
    /// a savepoint's `RELEASE` and `SAVEPOINT`), then `check` (a query without values that
    /// reads one integer). Once sent, statements answer only if `check` read `expect`;
    /// [`PgConn::guard_outcome`] says how it went.
    pub fn savepoint_expecting(&self, steps: &[&str], check: &str, expect: i64) -> Result<()> {
        let steps = steps
            .iter()
            .map(|sql| self.fixed_statement(sql))
            .collect::<Result<Vec<_>>>()?;
        let check = self.fixed_statement(check)?;
        self.deferred.borrow_mut().push(Deferred::Guard {
            steps,
            check,
            expect,
        });
        *self.guard.borrow_mut() = GuardState::Pending;
        Ok(())
    }

    /// How the savepoint of [`PgConn::savepoint_expecting`] went, sending it now if it is still
    /// queued (with what was deferred before and after it); statements answer again after
    /// this. An error: the savepoint's own statements failed (the transaction's state is not
    /// known).
    pub fn guard_outcome(&self) -> Result<Guarded> {
        if matches!(*self.guard.borrow(), GuardState::Pending)
            && let Err(e) = self.with_deferred(Last::Nothing)
            && matches!(*self.guard.borrow(), GuardState::Pending)
        {
            *self.guard.borrow_mut() = GuardState::Failed(e);
        }
        match std::mem::replace(&mut *self.guard.borrow_mut(), GuardState::Idle) {
            GuardState::Passed => Ok(Guarded::Passed),
            GuardState::Stale => Ok(Guarded::Stale),
            GuardState::Broken(e) => Ok(Guarded::Broken(e)),
            GuardState::Failed(e) => Err(e),
            GuardState::Idle | GuardState::Pending => {
                Err(Error::other("no savepoint was queued to be checked"))
            }
        }
    }

    /// Runs `p` with `params` later: with the next statement sent, in the same round trip.
    /// The values are checked now; a failure of the statement itself is the next statement's
    /// error (the engine sends what a func deferred before it decides the func's outcome).
    pub fn execute_deferred<P: Params>(&self, p: &Prepared, params: &P) -> Result<()> {
        Self::binds(p, params)?;
        let values = (0..p.takes as usize)
            .map(|i| Value::from_value(params.value(i)))
            .collect::<Result<_>>()?;
        self.deferred
            .borrow_mut()
            .push(Deferred::Write(p.clone(), values));
        Ok(())
    }

    /// Whether writes wait to be sent ([`PgConn::execute_deferred`]).
    pub fn has_deferred(&self) -> bool {
        !self.deferred.borrow().is_empty()
    }

    /// The prepared statement of `sql` (SQLite's dialect), prepared on first use.
    pub fn statement(&self, sql: &str) -> Result<Prepared> {
        if let Some(s) = self.statements.borrow().get(sql) {
            return Ok(s.clone());
        }
        let t = translate(sql);
        // A placeholder whose type the text does not settle (`?1 IS NULL`) is declared text,
        // the others left for the server to infer.
        let mut types: Vec<Type> = Vec::new();
        let stmt = loop {
            // Inside a transaction a refused text would abort it: the first prepare of a text
            // runs in a savepoint of its own (which writes nothing, so takes no subtransaction).
            let guarded = self.in_transaction.get();
            if guarded {
                // (Sends the deferred writes first: they run before what follows.)
                self.batch("SAVEPOINT billhost_prepare")?;
            } else {
                self.flush()?;
            }
            let prepared = if types.is_empty() {
                self.client.borrow_mut().prepare(&t.sql)
            } else {
                self.client.borrow_mut().prepare_typed(&t.sql, &types)
            };
            if guarded {
                self.batch(if prepared.is_ok() {
                    "RELEASE billhost_prepare"
                } else {
                    "ROLLBACK TO billhost_prepare; RELEASE billhost_prepare"
                })?;
            }
            match prepared {
                Ok(stmt) => break stmt,
                Err(e) => {
                    let undetermined = e
                        .message()
                        .strip_prefix("could not determine data type of parameter $")
                        .and_then(|n| n.parse::<usize>().ok());
                    match undetermined {
                        Some(n)
                            if n >= 1
                                && n <= t.sources.len()
                                && types.get(n - 1) != Some(&Type::TEXT) =>
                        {
                            if types.len() < n {
                                types.resize(n, unspecified());
                            }
                            types[n - 1] = Type::TEXT;
                        }
                        _ => {
                            // For whoever ports a statement: which text PostgreSQL refused.
                            if std::env::var_os("BILLHOST_SQL_DEBUG").is_some() {
                                eprintln!("billhost: PostgreSQL refused: {}: {e}", t.sql);
                            }
                            return Err(e);
                        }
                    }
                }
            }
        };
        self.keep(sql, t, stmt)
    }

    /// [`PgConn::statement`] for a text of the engine's own that the server always prepares
    /// (no values, no placeholder to infer): prepared without the guarding savepoint, so that
    /// nothing deferred is sent first.
    fn fixed_statement(&self, sql: &str) -> Result<Prepared> {
        if let Some(s) = self.statements.borrow().get(sql) {
            return Ok(s.clone());
        }
        let t = translate(sql);
        let stmt = self.client.borrow_mut().prepare(&t.sql)?;
        self.keep(sql, t, stmt)
    }

    /// Keeps `stmt`, prepared from `t`, in the statement cache under its SQLite text.
    fn keep(&self, sql: &str, t: Translated, stmt: Statement) -> Result<Prepared> {
        let prepared = Prepared {
            stmt,
            sources: t.sources.into(),
            takes: t.max,
        };
        let mut cache = self.statements.borrow_mut();
        if cache.len() >= STATEMENT_CACHE {
            cache.clear();
        }
        cache.insert(sql.to_owned(), prepared.clone());
        Ok(prepared)
    }

    fn binds<'p, P: Params>(p: &Prepared, params: &'p P) -> Result<Vec<Bind<'p>>> {
        let n = p.takes as usize;
        let given = params.count();
        if given != n && !(params.lenient() && given > n) {
            return Err(Error::other(format!(
                "the statement takes {n} values, {given} were given"
            )));
        }
        p.sources
            .iter()
            .map(|&k| super::bindable(params.value(k as usize - 1)).map(Bind))
            .collect()
    }

    pub fn execute<P: Params>(&self, p: &Prepared, params: &P) -> Result<usize> {
        let binds = Self::binds(p, params)?;
        let refs: Vec<&(dyn ToSql + Sync)> =
            binds.iter().map(|b| b as &(dyn ToSql + Sync)).collect();
        match self.with_deferred(Last::Execute(&p.stmt, &refs))? {
            Answer::Count(n) => Ok(n as usize),
            _ => Err(Error::other("the server's answer was not a row count")),
        }
    }

    pub fn query<P: Params>(&self, p: &Prepared, params: &P) -> Result<Vec<tokio_postgres::Row>> {
        let binds = Self::binds(p, params)?;
        let refs: Vec<&(dyn ToSql + Sync)> =
            binds.iter().map(|b| b as &(dyn ToSql + Sync)).collect();
        match self.with_deferred(Last::Query(&p.stmt, &refs))? {
            Answer::Rows(rows) => Ok(rows),
            _ => Err(Error::other("the server's answer was not rows")),
        }
    }

    /// Sends the deferred writes now and waits for them: their failure is the error.
    pub fn flush(&self) -> Result<()> {
        if self.has_deferred() {
            self.with_deferred(Last::Nothing)?;
        }
        Ok(())
    }

    pub fn last_insert_rowid(&self) -> Result<i64> {
        let stmt = self.statement("SELECT lastval()")?;
        let rows = self.query(&stmt, &())?;
        match rows.first() {
            Some(r) => Ok(r.try_get::<_, i64>(0)?),
            None => Err(Error::new(ErrorKind::NoRows, "no id was made")),
        }
    }

    pub fn in_transaction(&self) -> bool {
        self.in_transaction.get()
    }

    /// `BEGIN` and the writers' lock in one round trip.
    pub fn begin_write(&self) -> Result<()> {
        self.ensure_open()?;
        self.in_transaction.set(true);
        if let Err(e) = self.batch(BEGIN_WRITE) {
            let _ = self.end("ROLLBACK");
            return Err(e);
        }
        Ok(())
    }

    /// `ROLLBACK TO` a savepoint and its `RELEASE`, given as one text: one round trip. The
    /// deferred writes, all made since that savepoint, are dropped unsent.
    pub fn rollback_to(&self, both: &str) -> Result<()> {
        self.drop_deferred();
        self.batch(both)
    }

    pub fn begin_read(&self) -> Result<()> {
        self.ensure_open()?;
        self.batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
        self.in_transaction.set(true);
        Ok(())
    }

    /// [`PgConn::begin_read`] and the first column of `first`'s first row (an integer; `first`
    /// takes no values), in one round trip. The transaction is open when this answers, even
    /// with an error (end it).
    pub fn begin_read_with(&self, first: &str) -> Result<i64> {
        self.ensure_open()?;
        self.in_transaction.set(true);
        self.control_then_int("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", first)
    }

    /// [`PgConn::begin_write`] and the first column of `first`'s first row, in one round trip.
    pub fn begin_write_with(&self, first: &str) -> Result<i64> {
        self.ensure_open()?;
        self.in_transaction.set(true);
        let n = self.control_then_int(BEGIN_WRITE, first);
        if n.is_err() {
            let _ = self.end("ROLLBACK");
        }
        n
    }

    /// Runs `control` (transaction control, static text) and then `first` (a query without
    /// values answering one integer) as one simple query: one round trip. Answers the integer.
    pub fn control_then_int(&self, control: &str, first: &str) -> Result<i64> {
        let sql = format!("{control}; {}", translate(first).sql);
        let messages = match self.with_deferred(Last::Simple(&sql))? {
            Answer::Simple(messages) => messages,
            _ => return Err(Error::other("the server's answer was not a simple query's")),
        };
        // `control` may answer rows of its own: the writers' lock does.
        last_int(&messages)
    }

    pub fn end(&self, sql: &str) -> Result<()> {
        if sql == "ROLLBACK" {
            self.forget_deferred();
        }
        let r = self.batch(sql);
        // COMMIT or ROLLBACK ends the transaction even when it fails.
        self.in_transaction.set(false);
        r
    }

    /// The version the schema is at (0 for an empty database). Writes nothing, so that it also
    /// answers inside a read-only transaction and on a standby.
    pub fn schema_version(&self) -> Result<i64> {
        let exists = self.statement("SELECT to_regclass('billhost_schema') IS NOT NULL")?;
        let made = self
            .query(&exists, &())?
            .first()
            .map(|r| r.try_get::<_, bool>(0))
            .transpose()?
            .unwrap_or(false);
        if !made {
            return Ok(0);
        }
        let stmt = self.statement("SELECT version FROM billhost_schema WHERE id = 1")?;
        let rows = self.query(&stmt, &())?;
        Ok(rows.first().map(|r| r.get::<_, i64>(0)).unwrap_or(0))
    }

    /// Makes the table that records the schema's version, at version 0, if it is missing.
    fn ensure_schema_table(&self) -> Result<()> {
        self.batch(
            "CREATE TABLE IF NOT EXISTS billhost_schema (id BIGINT PRIMARY KEY CHECK (id = 1), version BIGINT NOT NULL);
             INSERT INTO billhost_schema (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
        )
    }

    pub fn set_schema_version(&self, version: i64) -> Result<()> {
        self.ensure_schema_table()?;
        let stmt = self.statement("UPDATE billhost_schema SET version = ?1 WHERE id = 1")?;
        self.execute(&stmt, &[version])?;
        Ok(())
    }

    /// Applies the migrations up to `target`, each in its own transaction under the writers'
    /// lock (two servers starting at once migrate once). Refuses a database newer than this
    /// build.
    pub fn migrate(&self, target: i64) -> Result<()> {
        let supported = MIGRATIONS.len() as i64;
        self.ensure_schema_table()?;
        let found = self.schema_version()?;
        if found > supported {
            return Err(Error::new(ErrorKind::TooNew { found, supported }, ""));
        }
        for version in found..target.min(supported) {
            self.begin_write()?;
            let step = self.schema_version().and_then(|now| {
                if now > version {
                    return Ok(());
                }
                self.batch(MIGRATIONS[version as usize])?;
                self.set_schema_version(version + 1)
            });
            match step {
                Ok(()) => self.end("COMMIT")?,
                Err(e) => {
                    let _ = self.end("ROLLBACK");
                    return Err(e);
                }
            }
        }
        // The schema changed under any statement prepared before.
        self.statements.borrow_mut().clear();
        Ok(())
    }
}

/// Where a connection goes: the postgres crate's settings and ours for TLS.
struct Target {
    config: Config,
    tls: tls::Settings,
    sockets_only: bool,
}

impl Target {
    /// A new session; with `sslmode=allow` a plain one, else (the server wants TLS) one under
    /// TLS; with `prefer`, one under TLS if the server offers it and the handshake succeeds,
    /// else a plain one, as libpq does.
    fn open(&self, durability: Durability) -> Result<(Client, i64)> {
        let client = match self.tls.mode {
            _ if self.sockets_only => Client::connect(&self.config, NoTls)?,
            SslMode::Disable => Client::connect(&self.config, NoTls)?,
            SslMode::Allow => match Client::connect(&self.config, NoTls) {
                Ok(client) => client,
                Err(plain) => {
                    let mut config = self.config.clone();
                    config.ssl_mode(tokio_postgres::config::SslMode::Require);
                    Client::connect(&config, self.connector()?)
                        .map_err(|e| Error::other(format!("without TLS: {plain}; with TLS: {e}")))?
                }
            },
            // libpq's `prefer`: a handshake that fails is tried again without TLS.
            SslMode::Prefer => {
                let connector = self.connector()?;
                match Client::connect(&self.config, connector.clone()) {
                    Ok(client) => client,
                    Err(tls) if connector.handshake_failed() => {
                        let mut config = self.config.clone();
                        config.ssl_mode(tokio_postgres::config::SslMode::Disable);
                        Client::connect(&config, NoTls).map_err(|plain| {
                            Error::other(format!("with TLS: {tls}; without TLS: {plain}"))
                        })?
                    }
                    Err(e) => return Err(e),
                }
            }
            _ => Client::connect(&self.config, self.connector()?)?,
        };
        session(client, durability)
    }

    fn connector(&self) -> Result<tls::Connector> {
        self.tls.connector().map_err(Error::other)
    }
}

fn session(mut client: Client, durability: Durability) -> Result<(Client, i64)> {
    // Times and ids are handled by the engine; the session only needs UTC and its durability.
    let sync = match durability {
        Durability::Full => "on",
        Durability::Normal => "off",
    };
    let answer = client
        .pipelined(
            &[],
            Last::Simple(&format!(
                "SET TIME ZONE 'UTC'; SET synchronous_commit = {sync}; \
                 SELECT (extract(epoch FROM pg_postmaster_start_time()) * 1000000)::bigint"
            )),
        )?
        .into_last()?;
    let server = match answer {
        Answer::Simple(messages) => last_int(&messages)?,
        _ => return Err(Error::other("the server's answer was not a simple query's")),
    };
    Ok((client, server))
}

/// The integer in the first row of a simple query's last statement.
fn last_int(messages: &[tokio_postgres::SimpleQueryMessage]) -> Result<i64> {
    let (mut value, mut first_row) = (None, None);
    for m in messages {
        match m {
            tokio_postgres::SimpleQueryMessage::Row(row) if first_row.is_none() => {
                first_row = Some(row.get(0));
            }
            tokio_postgres::SimpleQueryMessage::CommandComplete(_) => value = first_row.take(),
            _ => {}
        }
    }
    match value {
        Some(Some(text)) => text
            .parse::<i64>()
            .map_err(|_| Error::type_mismatch(format!("'{text}' is not an integer"))),
        Some(None) => Err(Error::type_mismatch("NULL read as an integer".into())),
        None => Err(Error::new(ErrorKind::NoRows, "Query returned no rows")),
    }
}

/// A placeholder type the server infers (OID 0 in the protocol).
fn unspecified() -> Type {
    Type::new(
        "unspecified".into(),
        0,
        tokio_postgres::types::Kind::Simple,
        "pg_catalog".into(),
    )
}

/// SQLite's dialect as PostgreSQL's.
struct Translated {
    sql: String,
    /// The highest `?N`.
    max: u32,
    /// For each `$k` (from 1), the `?N` it stands for.
    sources: Vec<u32>,
}

fn translate(sql: &str) -> Translated {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 16);
    let mut sources: Vec<u32> = Vec::new();
    let mut max = 0u32;
    let mut or_ignore = false;
    let mut i = 0;
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    while i < b.len() {
        let c = b[i];
        match c {
            b'\'' | b'"' => {
                // A quoted string or name, copied as it is ('' and "" escape themselves).
                let start = i;
                i += 1;
                while i < b.len() {
                    if b[i] == c {
                        if i + 1 < b.len() && b[i + 1] == c {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i = (i + 1).min(b.len());
                out.push_str(&sql[start..i]);
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                let start = i;
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                out.push_str(&sql[start..i]);
            }
            b'?' => {
                i += 1;
                let start = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                let n = if start == i {
                    max + 1
                } else {
                    sql[start..i].parse().unwrap_or(max + 1)
                };
                max = max.max(n);
                sources.push(n);
                out.push('$');
                out.push_str(&sources.len().to_string());
            }
            c if ident(c) && (i == 0 || !ident(b[i - 1])) => {
                let start = i;
                while i < b.len() && ident(b[i]) {
                    i += 1;
                }
                let word = &sql[start..i];
                let prev_dot = start > 0 && b[start - 1] == b'.';
                let next = sql[i..].trim_start();
                let next_word = |text: &str| -> String {
                    text.chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect::<String>()
                        .to_ascii_uppercase()
                };
                let keeps_is = |w: &str| matches!(w, "NULL" | "TRUE" | "FALSE" | "DISTINCT");
                if word.eq_ignore_ascii_case("LIKE") {
                    // SQLite's LIKE folds ASCII letters only; ILIKE folds by the collation's
                    // character type, which in most databases (not C) folds `Ä` to `ä` too. The
                    // operand before it is taken in the C collation, whose ILIKE folds ASCII
                    // only, whatever the database's locale (before `NOT` in `NOT LIKE`).
                    let kept = out.trim_end().len();
                    let not = kept >= 3
                        && out.as_bytes()[kept - 3..kept].eq_ignore_ascii_case(b"NOT")
                        && (kept == 3 || !ident(out.as_bytes()[kept - 4]));
                    if not {
                        out.truncate(kept - 3);
                        out.push_str("COLLATE \"C\" NOT ILIKE");
                    } else {
                        out.push_str("COLLATE \"C\" ILIKE");
                    }
                } else if word.eq_ignore_ascii_case("IS") && !keeps_is(&next_word(next)) {
                    // SQLite's `IS` and `IS NOT` compare NULLs as values.
                    let w = next_word(next);
                    if w == "NOT" {
                        let after = next[3..].trim_start();
                        if keeps_is(&next_word(after)) {
                            out.push_str(word);
                        } else {
                            out.push_str("IS DISTINCT FROM");
                            i += sql[i..].len() - after.len();
                            out.push(' ');
                        }
                    } else {
                        out.push_str("IS NOT DISTINCT FROM");
                    }
                } else if word.eq_ignore_ascii_case("money") && !prev_dot && next.starts_with('(') {
                    out.push_str("billhost_money");
                } else if word.eq_ignore_ascii_case("INSERT")
                    && next.len() >= 9
                    && next.as_bytes()[..9].eq_ignore_ascii_case(b"OR IGNORE")
                {
                    out.push_str("INSERT");
                    let skip = sql[i..].len() - next.len() + 9;
                    i += skip;
                    or_ignore = true;
                } else {
                    out.push_str(word);
                }
            }
            _ => {
                let ch = sql[i..].chars().next().unwrap_or(' ');
                out.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    if or_ignore {
        let trimmed = out.trim_end().trim_end_matches(';').trim_end().len();
        out.truncate(trimmed);
        out.push_str(" ON CONFLICT DO NOTHING");
    }
    Translated {
        sql: out,
        max,
        sources,
    }
}

/// A store value bound to a placeholder of whatever type the server inferred for it.
#[derive(Debug)]
struct Bind<'a>(ValueRef<'a>);

type BoxError = Box<dyn std::error::Error + Sync + Send>;

fn is_text(ty: &Type) -> bool {
    matches!(
        *ty,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN
    ) || ty.name() == "citext"
}

impl ToSql for Bind<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> std::result::Result<IsNull, BoxError> {
        use bytes::BufMut;
        let int = |v: &ValueRef<'_>| -> std::result::Result<i64, BoxError> {
            match v {
                ValueRef::Integer(i) => Ok(*i),
                ValueRef::Text(t) => t
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| format!("'{t}' is not an integer").into()),
                _ => Err("bytes given for an integer".into()),
            }
        };
        match self.0 {
            ValueRef::Null => return Ok(IsNull::Yes),
            ref v if *ty == Type::INT8 => out.put_i64(int(v)?),
            ref v if *ty == Type::INT4 => out.put_i32(i32::try_from(int(v)?)?),
            ref v if *ty == Type::INT2 => out.put_i16(i16::try_from(int(v)?)?),
            ref v if *ty == Type::BOOL => out.put_u8((int(v)? != 0) as u8),
            ref v if *ty == Type::NUMERIC => encode_numeric(int(v)?, out),
            ValueRef::Integer(i) if is_text(ty) => out.put_slice(i.to_string().as_bytes()),
            ValueRef::Text(t) if is_text(ty) || *ty == Type::BYTEA => out.put_slice(t.as_bytes()),
            ValueRef::Blob(b) if *ty == Type::BYTEA || is_text(ty) => out.put_slice(b),
            ref v => return Err(format!("cannot bind {v:?} as {ty}").into()),
        }
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// An integer as PostgreSQL's binary `numeric`.
fn encode_numeric(v: i64, out: &mut BytesMut) {
    use bytes::BufMut;
    let mut digits = Vec::new();
    let mut n = v.unsigned_abs();
    while n > 0 {
        digits.push((n % 10_000) as i16);
        n /= 10_000;
    }
    digits.reverse();
    out.put_i16(digits.len() as i16);
    out.put_i16(digits.len() as i16 - 1);
    out.put_u16(if v < 0 { 0x4000 } else { 0 });
    out.put_u16(0);
    for d in digits {
        out.put_i16(d);
    }
}

/// An integral binary `numeric` (a `sum` of BIGINTs) as an integer.
fn decode_numeric(raw: &[u8]) -> std::result::Result<i64, String> {
    let be16 = |i: usize| -> std::result::Result<i16, String> {
        raw.get(i..i + 2)
            .map(|s| i16::from_be_bytes([s[0], s[1]]))
            .ok_or_else(|| "a short numeric".to_string())
    };
    let ndigits = be16(0)? as usize;
    let weight = be16(2)? as i32;
    let sign = be16(4)? as u16;
    if sign == 0xC000 {
        return Err("NaN".into());
    }
    let mut v: i128 = 0;
    for k in 0..ndigits {
        let d = be16(8 + 2 * k)? as i128;
        let exp = weight - k as i32;
        if exp < 0 {
            if d != 0 {
                return Err("a number with a fraction".into());
            }
            continue;
        }
        v = v
            .checked_add(d * 10_000i128.checked_pow(exp as u32).ok_or("too large")?)
            .ok_or("too large")?;
    }
    if sign == 0x4000 {
        v = -v;
    }
    i64::try_from(v).map_err(|_| "too large for an integer".to_string())
}

/// Column `i` of a PostgreSQL row as a store value.
pub fn value_ref(row: &tokio_postgres::Row, i: usize) -> Result<ValueRef<'_>> {
    let ty = row
        .columns()
        .get(i)
        .ok_or_else(|| Error::other(format!("no column {i}")))?
        .type_()
        .clone();
    let raw: Option<Raw<'_>> = row.try_get(i)?;
    let Some(Raw(raw)) = raw else {
        return Ok(ValueRef::Null);
    };
    let be = |n: usize| -> Result<&[u8]> {
        raw.get(..n)
            .ok_or_else(|| Error::type_mismatch(format!("a short {ty} value")))
    };
    Ok(match ty {
        Type::INT8 => ValueRef::Integer(i64::from_be_bytes(be(8)?.try_into().unwrap_or([0; 8]))),
        Type::INT4 => {
            ValueRef::Integer(i32::from_be_bytes(be(4)?.try_into().unwrap_or([0; 4])) as i64)
        }
        Type::INT2 => {
            ValueRef::Integer(i16::from_be_bytes(be(2)?.try_into().unwrap_or([0; 2])) as i64)
        }
        Type::OID => {
            ValueRef::Integer(u32::from_be_bytes(be(4)?.try_into().unwrap_or([0; 4])) as i64)
        }
        Type::BOOL => ValueRef::Integer((be(1)?[0] != 0) as i64),
        Type::NUMERIC => ValueRef::Integer(
            decode_numeric(raw).map_err(|e| Error::type_mismatch(format!("numeric: {e}")))?,
        ),
        Type::BYTEA => ValueRef::Blob(raw),
        ref t if is_text(t) || *t == Type::VOID => match std::str::from_utf8(raw) {
            Ok(s) => ValueRef::Text(s),
            Err(_) => ValueRef::Blob(raw),
        },
        Type::FLOAT4 | Type::FLOAT8 => {
            return Err(Error::type_mismatch(
                "a query answered a float; floats are never stored or read".into(),
            ));
        }
        t => return Err(Error::type_mismatch(format!("a column of type {t}"))),
    })
}

/// A column's bytes, whatever its type.
struct Raw<'a>(&'a [u8]);

impl<'a> tokio_postgres::types::FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> std::result::Result<Self, BoxError> {
        Ok(Raw(raw))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::translate;

    #[test]
    fn sqlite_sql_is_rewritten_outside_quotes() {
        let t = translate(
            "SELECT money(x, 2), 'it''s ?1 money(' FROM a WHERE n LIKE ?3 AND b = ? -- ?9\n",
        );
        assert_eq!(
            t.sql,
            "SELECT billhost_money(x, 2), 'it''s ?1 money(' FROM a WHERE n COLLATE \"C\" ILIKE $1 AND b = $2 -- ?9\n"
        );
        assert_eq!(
            translate("SELECT 1 WHERE a.b NOT LIKE ?1 ESCAPE '\\' OR c like 'x'").sql,
            "SELECT 1 WHERE a.b COLLATE \"C\" NOT ILIKE $1 ESCAPE '\\' OR c COLLATE \"C\" ILIKE 'x'"
        );
        assert_eq!((t.max, t.sources), (4, vec![3, 4]));
        let t = translate(
            "UPDATE p SET c = ?2 WHERE id = ?1 AND c IS NOT ?2 AND d IS NOT NULL AND e IS ?1",
        );
        assert_eq!(
            t.sql,
            "UPDATE p SET c = $1 WHERE id = $2 AND c IS DISTINCT FROM $3 AND d IS NOT NULL AND e IS NOT DISTINCT FROM $4"
        );
        assert_eq!(t.sources, vec![2, 1, 2, 1]);
        let t = translate("INSERT OR IGNORE INTO m (a, b) VALUES (?1, ?2)");
        assert_eq!(
            t.sql,
            "INSERT INTO m (a, b) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        );
    }

    #[test]
    fn the_write_transaction_takes_the_writers_lock() {
        assert!(super::BEGIN_WRITE.ends_with(&format!("({})", super::WRITER_LOCK)));
    }

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            super::redacted(
                "postgres://bill:s3cret@h1:5432,h2/db?password=x&target_session_attrs=read-write"
            ),
            "postgres://bill:***@h1:5432,h2/db?password=***&target_session_attrs=read-write"
        );
        assert_eq!(
            super::redacted("postgres://bill@h/db"),
            "postgres://bill@h/db"
        );
        assert_eq!(
            super::redacted("host=h1,h2 user=bill password='s3 cret' sslrootcert=/a/b.pem"),
            "host=h1,h2 user=bill password=*** sslrootcert=/a/b.pem"
        );
        assert!(super::is_url("host=h1 dbname=billing"));
        assert!(super::is_url("dbname = billing"));
        assert!(!super::is_url("billhost.db"));
        assert!(!super::is_url("./host=x.db"));
    }

    #[test]
    fn numerics_round_trip_as_integers() {
        for v in [
            0i64,
            1,
            -1,
            9_999,
            10_000,
            -123_456_789,
            i64::MAX,
            i64::MIN + 1,
        ] {
            let mut out = bytes::BytesMut::new();
            super::encode_numeric(v, &mut out);
            assert_eq!(super::decode_numeric(&out), Ok(v), "{v}");
        }
    }
}
