//! The dispatcher: the one path every func call takes, whoever makes it (CLI, HTTP, REPL, Lua,
//! plugins). It finds the func's declaration, checks the caller's access, picks a read or write
//! connection, runs the BILLmanager protocol (list / view / blank form / create / change /
//! group / filter) inside one transaction, and turns every failure, panics included, into an
//! error document with nothing changed.

use crate::auth::{self, Caller};
use crate::clock;
use crate::config::Config;
use crate::doc::{Doc, Fields, Level};
use crate::error::{ErrorType, FuncError, FuncResult};
use crate::func::{ActionMode, FuncDecl, Handler, ObjectType, Param, Registry, Ty};
use crate::invoice::Templates;
use crate::list::{self, ListQuery, ListSpec};
use crate::outbox::MailSignal;
use crate::params::{Params, parse_id, parse_id_list, parse_int};
use crate::script::{self, CallScope, Generation, ScriptConfig, ScriptHost};
use crate::store::checkpoint::Checkpointer;
use crate::store::walsync::{Durable, WalSync};
use crate::store::{
    self, Connection, Durability, OptionalExtension, Savepoint, StoreError, params,
};
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

thread_local! {
    /// Whether this thread is inside `Engine::write` (the writer mutex is not reentrant).
    static IN_WRITE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Page size when `p_num` is given without `p_cnt`.
pub const DEFAULT_PAGE_SIZE: u64 = 100;
/// Read connections kept open for reuse (SQLite: more are opened when every pooled one is busy,
/// which costs little).
const READER_POOL: usize = 8;
/// PostgreSQL read connections open at once, all kept for reuse: a new session costs the server
/// a process and a login, so readers beyond these wait for one to come back rather than open
/// more (and two servers stay well inside the default `max_connections` of 100).
const PG_READERS: usize = 16;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub db_path: PathBuf,
    pub durability: Durability,
    pub scripts: ScriptConfig,
    /// The configuration file's settings (SMTP, templates).
    pub settings: Config,
    /// WAL checkpoints on a thread of their own instead of inside the writer's commits
    /// ([`store::checkpoint`]): what a server with many concurrent writers wants (its writes
    /// never wait for a checkpoint); a lone writer is faster without it (the checkpoint's
    /// fsyncs of the database file then never run beside its commits' fsyncs).
    pub background_checkpoints: bool,
    /// With [`Durability::Full`]: the writer commits without syncing and the WAL is synced
    /// separately before a batch is answered ([`store::walsync`]), so that a batch's fsync
    /// overlaps the next batch's work ([`Engine::call_batch_deferred`]); on for `billhost serve`.
    pub deferred_sync: bool,
}

impl EngineConfig {
    pub fn new(db_path: impl Into<PathBuf>) -> Self {
        EngineConfig {
            db_path: db_path.into(),
            durability: Durability::Full,
            scripts: ScriptConfig::default(),
            settings: Config::default(),
            background_checkpoints: false,
            deferred_sync: false,
        }
    }

    /// The operator's templates folder, as invoices look for it.
    pub fn templates(&self) -> Templates {
        Templates {
            dir: self.settings.templates.clone(),
        }
    }

    /// Loads business-rule scripts from `dir`.
    pub fn with_scripts(mut self, dir: impl Into<PathBuf>) -> Self {
        self.scripts.dir = Some(dir.into());
        self
    }
}

pub struct Engine {
    config: EngineConfig,
    registry: Registry,
    scripts: Arc<ScriptHost>,
    writer: Writer,
    /// Idle read connections, each with the thread that used it last.
    readers: Mutex<Readers>,
    /// Signalled when a PostgreSQL read connection comes back or closes.
    reader_back: std::sync::Condvar,
    /// Verified `authinfo` credentials, so that argon2 is not paid on every request.
    credentials: auth::CredentialCache,
    /// Rung when a func queues mail, for the deliverers of this process.
    mail_signal: MailSignal,
    /// Funcs run on a schedule by the server and by `billhost run-jobs`, with their period in
    /// seconds (e.g. gateway status checks).
    periodic: Vec<(String, u64)>,
    /// Funcs per group-commit batch on this backend (at most [`MAX_BATCH`]).
    max_batch: usize,
}

/// Where a network front end runs a request, so that SQLite's blocking calls never stall the
/// async workers for long (see [`Engine::lane`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// A view or blank form without hooks: one short read transaction, run where the request
    /// arrived ([`Engine::handle_inline`]).
    Inline,
    /// A func that writes, without passwords to hash: queued for the writer thread, which runs
    /// the waiting ones as one batch ([`Engine::call_batch`]).
    Writer,
    /// Anything else (lists, call-outs, files, hooked funcs, unknown funcs, writes with
    /// passwords, hashed before the writer is taken): a thread that may block
    /// ([`Engine::handle`]).
    Blocking,
}

/// Most writes committed together.
pub const MAX_BATCH: usize = 64;

/// The single writer connection and the state of its group commit.
struct Writer {
    inner: Mutex<WriterInner>,
    /// Signalled whenever a batch is committed (or failed to).
    committed: Condvar,
    /// Writers waiting for `inner`: while there are any, a finished writer leaves the
    /// transaction open for them instead of committing.
    waiting: AtomicUsize,
}

struct WriterInner {
    conn: Connection,
    open_batch: Option<u64>,
    members: usize,
    /// Members of the open batch that have run (the first runs without a savepoint).
    ran: usize,
    /// The last member's savepoint is still open (its release rides with the next member's
    /// savepoint, or the commit keeps it).
    open_savepoint: bool,
    /// The auth epoch as the open batch reads it now: read with the batch's `BEGIN` or a
    /// member's savepoint, forgotten as soon as a member runs (it may change users).
    epoch: Option<i64>,
    /// The failure of the last member that succeeded, found after it ended: its deferred
    /// writes failed when they were sent (with the next member's savepoint, or before the
    /// commit). Taken by [`Engine::call_batch_pulled`], which answers it instead.
    last_failure: Option<FuncError>,
    next_batch: u64,
    committed_through: u64,
    /// Batches whose commit failed, with the reason (the most recent ones).
    failed: VecDeque<(u64, String)>,
    poisoned: bool,
    /// Checkpoints the WAL off the writer's path, when it could be started.
    checkpointer: Option<Checkpointer>,
    /// Syncs the WAL after commits made without it ([`EngineConfig::deferred_sync`]).
    wal_sync: Option<Arc<WalSync>>,
}

/// What a func runs with: the connection inside the func's transaction, the caller, the time
/// of the call, and the engine for nested calls.
pub struct Ctx<'a, 'g> {
    pub db: &'a Connection,
    pub caller: &'a Caller,
    pub func: &'a str,
    pub now: String,
    engine: &'a Engine,
    scope: &'a CallScope<'g>,
}

impl<'g> Ctx<'_, 'g> {
    /// The scripts generation and Lua lock of this call.
    pub fn scope(&self) -> &CallScope<'g> {
        self.scope
    }

    pub fn is_admin(&self) -> bool {
        self.caller.level == Level::Admin
    }

    pub fn engine(&self) -> &Engine {
        self.engine
    }

    /// Writes a history row for a change, in the func's transaction.
    pub fn history(
        &self,
        object_type: &str,
        object_id: i64,
        description: impl AsRef<str>,
    ) -> FuncResult<()> {
        self.db
            .prepare_cached(
                "INSERT INTO history (changedate, object_type, object_id, description, user_login, ip, action)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            // Sent with the next statement (one round trip fewer on PostgreSQL).
            .execute_deferred(params![
                self.now,
                object_type,
                object_id,
                description.as_ref(),
                self.caller.history_name(),
                self.caller.ip,
                self.func
            ])?;
        Ok(())
    }

    /// Runs `f` in a write transaction of its own, committed when `f` succeeds, as the same
    /// caller and func: how a func declared `ActionMode::CallOut` records an intent, calls a
    /// plugin outside any transaction, then records the outcome. Refused (instead of waiting
    /// forever) when this thread already holds the writer.
    pub fn write<T>(&self, f: impl FnOnce(&Ctx) -> FuncResult<T>) -> FuncResult<T> {
        // A hook of this func may hold the Lua state; the writer may be running a hooked func
        // that waits for it.
        self.scope.release_lua();
        self.engine.write(|conn| {
            let ctx = Ctx {
                db: conn,
                caller: self.caller,
                func: self.func,
                now: clock::now(),
                engine: self.engine,
                scope: self.scope,
            };
            f(&ctx)
        })
    }

    /// Calls another func inside this func's transaction, as the same caller. Its changes are
    /// undone if it fails, whatever the calling func then does.
    pub fn call(&self, func: &str, params: Params) -> FuncResult<Doc> {
        let decl = self.engine.decl(self.scope.generation(), func)?;
        self.scope.nested(|| {
            self.db.savepoint(Savepoint::NestedCall)?;
            let result = self
                .engine
                .dispatch(self.db, self.caller, &decl, &params, self.scope)
                // Its deferred writes are sent before its outcome is decided.
                .and_then(|doc| {
                    self.db.flush()?;
                    Ok(doc)
                });
            match &result {
                Ok(_) => self.db.release(Savepoint::NestedCall)?,
                Err(_) => self.db.rollback_to(Savepoint::NestedCall)?,
            }
            result
        })
    }
}

/// Top-level calls made one after another inside one write transaction, which commits only if
/// the closure given to [`Engine::write_batch`] succeeds (the REPL's `:commit` replays its
/// dry-mode calls this way). Each call runs as it would on its own, in a savepoint.
pub struct Batch<'a> {
    engine: &'a Engine,
    conn: &'a Connection,
    generation: Arc<Generation>,
}

impl Batch<'_> {
    /// The connection inside the batch's transaction.
    pub fn conn(&self) -> &Connection {
        self.conn
    }

    /// Runs one func as `caller`; a failed call leaves nothing of itself behind.
    pub fn call(&self, caller: &Caller, func: &str, params: &Params) -> FuncResult<Doc> {
        self.conn.savepoint(Savepoint::BatchCall)?;
        let result = self
            .engine
            .call_on(self.conn, &self.generation, caller, func, params);
        match &result {
            Ok(_) => self.conn.release(Savepoint::BatchCall)?,
            Err(_) => self.conn.rollback_to(Savepoint::BatchCall)?,
        }
        result
    }
}

/// The pool of read connections: the idle ones, with the thread that used each last, and how
/// many are open (idle or in use; counted for PostgreSQL, whose pool is bounded).
#[derive(Default)]
struct Readers {
    idle: Vec<(std::thread::ThreadId, Connection)>,
    open: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic inside a func is caught before it can poison the lock; recover regardless.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn nested_write() -> FuncError {
    FuncError::internal("a write transaction was asked for inside another one on the same thread")
}

impl Writer {
    /// The writer connection, counted as waiting while it is busy (so that the writer holding
    /// it leaves its batch open for this one).
    fn lock(&self) -> MutexGuard<'_, WriterInner> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let w = lock(&self.inner);
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        w
    }
}

impl WriterInner {
    /// Joins the open batch, or opens one (reading the auth epoch with its `BEGIN` when
    /// `epoch`: the first member is checked against it); answers its number.
    fn join(&mut self, epoch: bool) -> store::Result<u64> {
        let batch = match self.open_batch {
            Some(b) => b,
            None => {
                self.epoch = if epoch {
                    Some(self.conn.begin_write_with(auth::EPOCH_SQL)?)
                } else {
                    self.conn.begin_write()?;
                    None
                };
                self.next_batch += 1;
                self.open_batch = Some(self.next_batch);
                self.members = 0;
                self.ran = 0;
                self.open_savepoint = false;
                self.next_batch
            }
        };
        self.members += 1;
        Ok(batch)
    }

    /// Runs one member of the open batch in a savepoint of its own, rolled back if it fails
    /// (or panics). A savepoint that cannot be closed poisons the batch: it will not commit.
    ///
    /// The batch's first member runs without a savepoint (two statements fewer, each a round
    /// trip on PostgreSQL, for a batch of one): the transaction holds nothing else yet, so when
    /// it fails the whole transaction is rolled back instead and the batch ends there, empty
    /// (the next writer opens another). Members that join later take savepoints. A member's
    /// savepoint that it leaves with success stays open until the next member's opens (one
    /// statement releases the one and opens the other) or the commit, which keeps everything
    /// the transaction holds, savepoints included.
    ///
    /// What `f` deferred is sent before `f`'s outcome is decided: the writer thread that joins
    /// this batch next must not meet it (only [`Engine::call_batch_pulled`] answers a failure
    /// found there).
    fn member<T>(&mut self, f: impl FnOnce(&Connection) -> FuncResult<T>) -> FuncResult<T> {
        let f = |conn: &Connection| {
            let out = f(conn)?;
            conn.flush()?;
            Ok(out)
        };
        match self.member_known_at(None, f) {
            Some(result) => result,
            None => Err(FuncError::internal("the caller's credentials changed")),
        }
    }

    /// [`WriterInner::member`] for a caller known from the credential cache as of auth epoch
    /// `known_at`: it runs only if the batch's transaction still reads that epoch (read with
    /// the member's savepoint, in the same round trip on PostgreSQL), and `None` says it did
    /// not run: who the credentials are may have changed, and the slow way must decide.
    fn member_known_at<T>(
        &mut self,
        known_at: Option<i64>,
        f: impl FnOnce(&Connection) -> FuncResult<T>,
    ) -> Option<FuncResult<T>> {
        let bare = self.ran == 0;
        let conn = &self.conn;
        let wanted = known_at.is_some() && self.epoch.is_none();
        // Where the backend pipelines (PostgreSQL), the savepoint and the epoch's read go with
        // the func's first statement instead of a round trip of their own: the func learns
        // nothing before the epoch is known to be `known_at` (the statement answers only
        // then), and what it did otherwise is undone, unseen ([`WriterInner::settle_guard`]).
        let guarded = match known_at {
            Some(expect) if wanted && !bare => {
                match conn.savepoint_expecting(
                    Savepoint::Func,
                    self.open_savepoint,
                    auth::EPOCH_SQL,
                    expect,
                ) {
                    Ok(queued) => queued,
                    Err(e) => {
                        self.poisoned = true;
                        return Some(Err(e.into()));
                    }
                }
            }
            _ => false,
        };
        if guarded {
            self.open_savepoint = false;
        } else if !bare {
            // (Sends the previous member's deferred writes first, in the same round trip.)
            let opened = match (wanted, self.open_savepoint) {
                (true, reopen) => conn
                    .savepoint_with(Savepoint::Func, reopen, auth::EPOCH_SQL)
                    .map(Some),
                (false, true) => conn.release_and_reopen(Savepoint::Func).map(|()| None),
                (false, false) => conn.savepoint(Savepoint::Func).map(|()| None),
            };
            let opened = match opened {
                Err(e) if e.kind() == store::ErrorKind::Deferred && self.open_savepoint => {
                    // The previous member's deferred writes failed: it fails, undone within
                    // its savepoint, which stays open (empty) as this member's.
                    self.last_failure = Some(e.into());
                    match conn.rollback_within(Savepoint::Func) {
                        Ok(()) if wanted => match auth::auth_epoch(conn) {
                            Ok(epoch) => Ok(Some(epoch)),
                            Err(e) => {
                                self.open_savepoint = false;
                                self.poisoned = true;
                                return Some(Err(e));
                            }
                        },
                        Ok(()) => Ok(None),
                        Err(e) => Err(e),
                    }
                }
                opened => opened,
            };
            self.open_savepoint = false;
            match opened {
                Ok(epoch) => self.epoch = epoch.or(self.epoch),
                Err(e) => {
                    self.poisoned = true;
                    return Some(Err(e.into()));
                }
            }
        } else if wanted {
            // Nothing has run in this transaction yet, and `join` did not read the epoch.
            match auth::auth_epoch(conn) {
                Ok(epoch) => self.epoch = Some(epoch),
                Err(e) => return Some(Err(e)),
            }
        }
        if !guarded
            && let Some(known_at) = known_at
            && self.epoch != Some(known_at)
        {
            // Not run: its savepoint (if any) stays open and empty, released by the next one's.
            self.open_savepoint = !bare;
            return None;
        }
        self.ran += 1;
        self.epoch = None;
        IN_WRITE.with(|w| w.set(true));
        let result =
            catch_unwind(AssertUnwindSafe(|| f(conn))).unwrap_or_else(|p| Err(panic_message(p)));
        IN_WRITE.with(|w| w.set(false));
        if guarded {
            match self.settle_guard() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
        let conn = &self.conn;
        if bare {
            // The batch's first member sends its deferred writes now (it has no savepoint to
            // be undone within, should they fail later).
            let result = result.and_then(|doc| {
                conn.flush()?;
                Ok(doc)
            });
            if result.is_err() {
                match conn.rollback() {
                    Ok(()) => {
                        if let Some(batch) = self.open_batch.take() {
                            self.committed_through = batch;
                        }
                    }
                    // Unknown state: the batch must not commit (its end rolls back again).
                    Err(_) => self.poisoned = true,
                }
            }
            return Some(result);
        }
        let end = match result {
            Ok(_) => {
                // Its deferred writes go with the next member's savepoint, or the commit's
                // flush ([`WriterInner::flush_last`]).
                self.open_savepoint = true;
                Ok(())
            }
            Err(_) => conn.rollback_to(Savepoint::Func),
        };
        Some(match end {
            Ok(_) => result,
            // The transaction is in an unknown state: the batch must not commit.
            Err(e) => {
                self.poisoned = true;
                Err(e.into())
            }
        })
    }

    /// After a member whose savepoint [`Connection::savepoint_expecting`] queued: whether it
    /// ran (its savepoint open, the epoch as its caller was known at). When not, what it did
    /// is undone within its savepoint, which stays open (empty) for the next one; when the
    /// member before failed after all (its deferred writes, sent with the savepoint), that
    /// member is undone so and its failure kept in `last_failure`; when the savepoint itself
    /// failed, the batch is poisoned and the member fails with that error.
    fn settle_guard(&mut self) -> FuncResult<bool> {
        match self.conn.guard_outcome() {
            Ok(store::pg::Guarded::Passed) => Ok(true),
            Ok(outcome) => {
                if let store::pg::Guarded::Broken(e) = outcome {
                    self.last_failure = Some(e.into());
                }
                match self.conn.rollback_within(Savepoint::Func) {
                    Ok(()) => self.open_savepoint = true,
                    Err(_) => self.poisoned = true,
                }
                Ok(false)
            }
            Err(e) => {
                self.poisoned = true;
                Err(e.into())
            }
        }
    }

    /// Before the commit: sends the last member's deferred writes; when they fail, that member
    /// is undone (within its savepoint) and its failure kept in `last_failure`.
    fn flush_last(&mut self) {
        if !self.conn.has_deferred() {
            return;
        }
        if let Err(e) = self.conn.flush() {
            let undone = self.open_savepoint && self.conn.rollback_to(Savepoint::Func).is_ok();
            self.open_savepoint = false;
            if !undone {
                self.poisoned = true;
            }
            self.last_failure = Some(e.into());
        }
    }

    /// Commits (or, when poisoned, rolls back) the open batch and records how it ended. With a
    /// deferred sync, answers what to wait for before the batch is durable when `defer`, and
    /// otherwise waits for it here.
    fn commit(&mut self, batch: u64, defer: bool) -> Option<Durable> {
        let mut durable = None;
        let outcome = if self.poisoned {
            Err("a savepoint could not be closed".to_string())
        } else {
            // Read before the commit: a sync failure from here on fails this batch.
            let generation = self.wal_sync.as_ref().map_or(0, |s| s.generation());
            let server = self.conn.server();
            self.conn
                .commit()
                .map_err(|e| e.to_string())
                .and_then(|()| match &self.wal_sync {
                    Some(sync) => {
                        let pending = sync.committed_in(batch, generation, server);
                        if defer {
                            durable = Some(pending);
                            Ok(())
                        } else {
                            pending.wait().map_err(|e| durability_lost(&e))
                        }
                    }
                    None => Ok(()),
                })
        };
        if outcome.is_err() {
            let _ = self.conn.rollback();
        }
        self.poisoned = false;
        self.open_batch = None;
        self.committed_through = batch;
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.committed();
        }
        if let Err(e) = outcome {
            self.failed.push_back((batch, e));
            if self.failed.len() > 64 {
                self.failed.pop_front();
            }
        }
        durable
    }

    /// Why `batch` did not commit, if it did not.
    fn failure(&self, batch: u64) -> Option<FuncError> {
        self.failed.iter().find(|(b, _)| *b == batch).map(|(_, e)| {
            FuncError::internal(format!("the commit failed ({e}); nothing was changed"))
        })
    }
}

/// A batch member that had succeeded fails after all: its deferred writes failed when they
/// were sent (it was undone within its savepoint).
fn failed_late<J>(
    done: &mut [(J, Option<Doc>)],
    last_ok: &mut Option<usize>,
    e: Option<FuncError>,
) {
    if let (Some(e), Some(i)) = (e, last_ok.take())
        && let Some((_, doc)) = done.get_mut(i)
    {
        *doc = Some(Doc::Error(e));
    }
}

/// Waits until a batch is on disk; if it cannot be made so, every document of the batch that
/// answered a success answers that error instead.
pub fn settle(docs: &mut [Doc], durable: &Durable) {
    if let Err(e) = durable.wait() {
        let e = FuncError::internal(durability_lost(&e));
        for doc in docs.iter_mut().filter(|d| !d.is_error()) {
            *doc = Doc::Error(e.clone());
        }
    }
}

/// Why a batch that committed is not known to be on disk.
fn durability_lost(e: &std::io::Error) -> String {
    format!("syncing the WAL failed ({e}); the changes may not survive a power loss")
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> FuncError {
    let what = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    FuncError::internal(format!(
        "the func failed unexpectedly ({what}); nothing was changed"
    ))
}

impl Engine {
    /// Opens (creating and migrating) the database and registers the built-in funcs.
    pub fn open(config: EngineConfig) -> Result<Engine, StoreError> {
        let store::Writer {
            conn: writer,
            checkpointer,
            wal_sync,
        } = store::open_writer(
            &config.db_path,
            config.durability,
            config.background_checkpoints,
            config.deferred_sync,
        )?;
        let max_batch = writer.max_batch().min(MAX_BATCH);
        let mut registry = Registry::default();
        crate::funcs::register_builtin(&mut registry);
        let builtin = registry.iter().map(|d| d.name.clone()).collect();
        let scripts = Arc::new(ScriptHost::new(config.scripts.clone(), builtin));
        Ok(Engine {
            config,
            registry,
            scripts,
            writer: Writer {
                inner: Mutex::new(WriterInner {
                    conn: writer,
                    open_batch: None,
                    members: 0,
                    ran: 0,
                    open_savepoint: false,
                    epoch: None,
                    last_failure: None,
                    next_batch: 0,
                    committed_through: 0,
                    failed: VecDeque::new(),
                    poisoned: false,
                    checkpointer,
                    wal_sync,
                }),
                committed: Condvar::new(),
                waiting: AtomicUsize::new(0),
            },
            readers: Mutex::new(Readers::default()),
            reader_back: std::sync::Condvar::new(),
            credentials: auth::CredentialCache::default(),
            mail_signal: MailSignal::default(),
            periodic: Vec::new(),
            max_batch,
        })
    }

    pub fn mail_signal(&self) -> &MailSignal {
        &self.mail_signal
    }

    pub fn scripts(&self) -> &Arc<ScriptHost> {
        &self.scripts
    }

    /// Every func callable now: the built-in ones and those of the live scripts.
    pub fn funcs(&self) -> Vec<Arc<FuncDecl>> {
        let generation = self.scripts.current();
        let mut all: Vec<Arc<FuncDecl>> = self.registry.iter().cloned().collect();
        all.extend(generation.funcs.iter().cloned());
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Runs the live scripts' jobs that `pick` selects, each in its own write transaction as
    /// the system; answers each job's name and outcome.
    pub fn run_jobs(&self, pick: impl Fn(&script::Job) -> bool) -> Vec<(String, FuncResult<()>)> {
        self.run_jobs_claiming(|j| pick(j).then_some(None))
            .into_iter()
            .filter_map(|(name, outcome)| outcome.map(|o| (name, o)))
            .collect()
    }

    /// Runs the live scripts' jobs that `due` answers a period for (the unix second it began,
    /// [`store::schedule::period_start`]), each once per period across every server on the
    /// database: the job's run claims its period in its own write transaction
    /// ([`store::schedule::claim`]), so that its writes and its claim commit together, and a
    /// job whose period another run has claimed does not run. Answers each job's name and
    /// outcome, `None` for one left to the run that had its period.
    pub fn run_jobs_once(
        &self,
        due: impl Fn(&script::Job) -> Option<i64>,
    ) -> Vec<(String, Option<FuncResult<()>>)> {
        self.run_jobs_claiming(|j| due(j).map(Some))
    }

    /// `pick` answers whether a job runs and the period it claims, if any.
    fn run_jobs_claiming(
        &self,
        pick: impl Fn(&script::Job) -> Option<Option<i64>>,
    ) -> Vec<(String, Option<FuncResult<()>>)> {
        let generation = self.scripts.current();
        let system = Caller {
            login: "system".into(),
            ..Caller::superuser()
        };
        let mut outcomes = Vec::new();
        for job in generation.jobs.iter() {
            let Some(period) = pick(job) else {
                continue;
            };
            let scope = CallScope::new(&generation);
            let result = self.write(|conn| {
                let now = clock::now();
                if let Some(start) = period {
                    let key = format!("job {}", job.name);
                    if !store::schedule::claim(conn, &key, job.every_secs, start, &now)? {
                        return Ok(false);
                    }
                }
                let ctx = Ctx {
                    db: conn,
                    caller: &system,
                    func: &job.name,
                    now,
                    engine: self,
                    scope: &scope,
                };
                script::run_job(&ctx, job).map(|()| true)
            });
            let outcome = match result {
                Ok(false) => None,
                Ok(true) => Some(Ok(())),
                Err(e) => Some(Err(e)),
            };
            outcomes.push((job.name.clone(), outcome));
        }
        outcomes
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Has `func` run every `every_secs` seconds by the server's scheduler and by
    /// `billhost run-jobs`, as the system.
    pub fn add_periodic(&mut self, func: &str, every_secs: u64) {
        self.periodic.retain(|(f, _)| f != func);
        self.periodic.push((func.to_string(), every_secs.max(1)));
    }

    pub fn periodic(&self) -> &[(String, u64)] {
        &self.periodic
    }

    /// Runs a periodic func as the system.
    pub fn run_periodic(&self, func: &str) -> Doc {
        let system = Caller {
            login: "system".into(),
            ..Caller::superuser()
        };
        self.call(&system, func, Params::new())
    }

    /// Runs periodic `func` for the period of `every_secs` that began at `period_start`, unless
    /// a run on any server on the database has claimed that period ([`store::schedule`]):
    /// `None` then. The claim commits before the func runs, since a periodic func calls out (a
    /// gateway) and writes in transactions of its own: a run that fails midway still had its
    /// period, and the next period runs it again.
    pub fn run_periodic_once(&self, func: &str, every_secs: u64, period_start: i64) -> Option<Doc> {
        let key = format!("func {func}");
        let claimed = self.write(|conn| {
            Ok(store::schedule::claim(
                conn,
                &key,
                every_secs,
                period_start,
                &clock::now(),
            )?)
        });
        match claimed {
            Ok(true) => Some(self.run_periodic(func)),
            Ok(false) => None,
            Err(e) => Some(Doc::Error(e)),
        }
    }

    /// Adds (or replaces) a func before the engine is shared: how extensions declare theirs.
    pub fn add_func(&mut self, decl: FuncDecl) {
        self.registry.add(decl);
    }

    fn decl(&self, generation: &Generation, func: &str) -> FuncResult<Arc<FuncDecl>> {
        // No func has such a name, and echoed back it would not read as what was sent (an XML
        // document drops a NUL, a text line breaks at a newline).
        if func.chars().any(char::is_control) {
            return Err(FuncError::value(
                "func",
                "",
                "Control characters are not allowed in a func name",
            ));
        }
        self.registry
            .get(func)
            .or_else(|| generation.func(func))
            .cloned()
            .ok_or_else(|| {
                FuncError::new(
                    ErrorType::Unknown,
                    "func",
                    func,
                    format!("Unknown function '{func}'"),
                )
            })
    }

    /// Runs `f` as one write on the single writer connection and answers once its changes are
    /// durable (or undone).
    ///
    /// Group commit: `f` runs inside a savepoint of a transaction (`BEGIN IMMEDIATE`) that other
    /// writers waiting at the same moment share. When `f` fails, only its savepoint is rolled
    /// back. The last writer of a batch (the one that finds nobody else waiting, or the one
    /// that fills the batch) commits for everyone, and every writer of the batch answers only
    /// after that commit; if the commit fails, every writer of the batch gets the error and
    /// nothing of the batch is kept.
    ///
    /// A nested call on the same thread is an error, not a deadlock.
    pub fn write<T>(&self, f: impl FnOnce(&Connection) -> FuncResult<T>) -> FuncResult<T> {
        if IN_WRITE.with(|w| w.get()) {
            return Err(nested_write());
        }
        let mut w = self.writer.lock();
        let batch = w.join(false)?;
        let result = w.member(f);
        let others_waiting = self.writer.waiting.load(Ordering::SeqCst) > 0;
        if w.open_batch != Some(batch) {
            // The batch's first member failed and rolled the batch back: nothing to commit.
        } else if others_waiting && w.members < self.max_batch && !w.poisoned {
            // Someone else will commit this batch; wait for it.
            while w.committed_through < batch {
                w = self
                    .writer
                    .committed
                    .wait(w)
                    .unwrap_or_else(|e| e.into_inner());
            }
        } else {
            w.commit(batch, false);
            self.writer.committed.notify_all();
        }
        match w.failure(batch) {
            Some(e) => Err(e),
            None => result,
        }
    }

    /// Runs `calls` on this thread, one after another, as the members of one group-commit
    /// batch, and commits it: what the server's writer thread does with the write requests
    /// queued while it was busy. Each call is what [`Engine::call`] would do (the func's
    /// declaration, `su`, access, the protocol, hooks), in a savepoint of its own, so that a
    /// failing call leaves nothing behind and never touches the others. Answers every call's
    /// document once the batch is durable; if the commit fails, every call that had succeeded
    /// answers that error instead (nothing of the batch is kept).
    ///
    /// Meant for calls that write: a call-out func (a gateway's `payment.add`) must not run
    /// here, as it needs a write transaction of its own after its network call.
    pub fn call_batch(&self, calls: &[(&Caller, &str, &Params)]) -> Vec<Doc> {
        let (mut docs, durable) = self.call_batch_deferred(calls);
        if let Some(durable) = durable {
            settle(&mut docs, &durable);
        }
        docs
    }

    /// [`Engine::call_batch`] that does not wait for the batch to be on disk: with
    /// [`EngineConfig::deferred_sync`] it answers the documents and what to wait for before
    /// any of them may be answered ([`settle`] them), so that the caller can run the next batch
    /// meanwhile (the server's writer thread hands them to its sync thread). Without a deferred
    /// sync the batch is durable on return and there is nothing to wait for.
    pub fn call_batch_deferred(
        &self,
        calls: &[(&Caller, &str, &Params)],
    ) -> (Vec<Doc>, Option<Durable>) {
        if calls.len() > self.max_batch {
            // Smaller batches on this backend: each one committed (and settled) in turn.
            let docs = calls
                .chunks(self.max_batch)
                .flat_map(|chunk| self.call_batch(chunk))
                .collect();
            return (docs, None);
        }
        let mut pending = calls.iter();
        let (done, durable) =
            self.call_batch_pulled(|_| pending.next(), |&&(c, f, p)| (c, f, p, None));
        let docs = done
            .into_iter()
            // Never `None`: no call here is known only as of an epoch.
            .map(|(_, doc)| doc.unwrap_or_else(|| Doc::Error(FuncError::internal("not run"))))
            .collect();
        (docs, durable)
    }

    /// [`Engine::call_batch_deferred`] over calls pulled one at a time into the open batch:
    /// `next(n)` (with `n` calls run so far) answers the next call, or `None` to commit. The
    /// batch takes at most the backend's batch size, then commits whatever `next` would still
    /// give. `args` says what each pulled item calls, and, for a caller known from the
    /// credential cache, the auth epoch it is known at. Answers each item with its document,
    /// or `None` for an item not run because the batch's transaction reads another epoch (its
    /// caller must be authenticated again, the slow way).
    ///
    /// This lets the server's writer thread keep a batch open while the previous batch's
    /// fsync runs: the calls that arrive meanwhile join it instead of waiting for a batch of
    /// their own, since none of them could be answered before that fsync anyway.
    pub fn call_batch_pulled<J>(
        &self,
        mut next: impl FnMut(usize) -> Option<J>,
        args: impl Fn(&J) -> (&Caller, &str, &Params, Option<i64>),
    ) -> (Vec<(J, Option<Doc>)>, Option<Durable>) {
        let Some(first) = next(0) else {
            return (Vec::new(), None);
        };
        let all_fail = |first: J, e: FuncError, next: &mut dyn FnMut(usize) -> Option<J>| {
            let mut done = vec![(first, Some(Doc::Error(e.clone())))];
            while let Some(j) = next(done.len()) {
                done.push((j, Some(Doc::Error(e.clone()))));
            }
            (done, None)
        };
        if IN_WRITE.with(|w| w.get()) {
            return all_fail(first, nested_write(), &mut next);
        }
        let generation = self.scripts.current();
        let mut w = self.writer.lock();
        let mut batch = match w.join(args(&first).3.is_some()) {
            Ok(b) => b,
            Err(e) => return all_fail(first, e.into(), &mut next),
        };
        let mut done: Vec<(J, Option<Doc>)> = Vec::with_capacity(self.max_batch);
        let mut item = Some(first);
        // The members of the batch now open (`join` counted the first).
        let mut members: usize = 0;
        // The last member that succeeded, whose deferred writes may still be unsent.
        let mut last_ok: Option<usize> = None;
        while let Some(j) = item {
            let (caller, func, params, known_at) = args(&j);
            let doc = if w.open_batch.is_none() {
                // A failing first member rolled the batch back: the next call opens another.
                w.join(known_at.is_some()).map(|b| {
                    batch = b;
                    members = 0;
                })
            } else {
                Ok(())
            }
            .map_err(FuncError::from)
            .map(|()| {
                members += 1;
                w.member_known_at(known_at, |conn| {
                    self.call_on_deferring(conn, &generation, caller, func, params)
                })
            })
            .unwrap_or_else(|e| Some(Err(e)))
            .map(|r| r.unwrap_or_else(Doc::Error));
            // The member before may have failed after all (its deferred writes, sent with this
            // member's savepoint).
            failed_late(&mut done, &mut last_ok, w.last_failure.take());
            if doc.as_ref().is_some_and(|d| !d.is_error()) {
                last_ok = Some(done.len());
            }
            done.push((j, doc));
            item = if done.len() < self.max_batch {
                next(done.len())
            } else {
                None
            };
        }
        let durable = if w.open_batch == Some(batch) {
            w.members += members.saturating_sub(1);
            w.flush_last();
            failed_late(&mut done, &mut last_ok, w.last_failure.take());
            let durable = w.commit(batch, true);
            self.writer.committed.notify_all();
            durable
        } else {
            None
        };
        if let Some(e) = w.failure(batch) {
            for (_, doc) in done.iter_mut() {
                if let Some(doc) = doc.as_mut().filter(|d| !d.is_error()) {
                    *doc = Doc::Error(e.clone());
                }
            }
        }
        (done, durable)
    }

    /// Runs `f` with a [`Batch`] in one write transaction, committed only if `f` succeeds.
    pub fn write_batch<T>(&self, f: impl FnOnce(&Batch) -> FuncResult<T>) -> FuncResult<T> {
        let generation = self.scripts.current();
        self.write(|conn| {
            f(&Batch {
                engine: self,
                conn,
                generation,
            })
        })
    }

    /// Whether a call of `func` with `params` changes anything (runs on the writer).
    pub fn writes(&self, func: &str, params: &Params) -> bool {
        self.decl(&self.scripts.current(), func)
            .is_ok_and(|decl| writes(&decl, params))
    }

    /// Runs `f` in a read transaction on a pooled read-only connection (one snapshot for the
    /// whole func, so that a page and its `p_elems` agree).
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> FuncResult<T>) -> FuncResult<T> {
        self.with_reader(|conn| {
            conn.begin_read()?;
            let result = catch_unwind(AssertUnwindSafe(|| f(conn)))
                .unwrap_or_else(|p| Err(panic_message(p)));
            // A connection the rollback failed on is still in a transaction: not pooled.
            let _ = conn.rollback();
            result
        })
    }

    /// [`Engine::read`] for a request's credentials and its func: the read transaction is the
    /// one the auth epoch's query opens and holds until `f` returns (SQLite keeps a read
    /// transaction while a statement is active), and `f` gets that epoch. One statement instead
    /// of `BEGIN`, the epoch's query and `ROLLBACK`.
    fn read_with_epoch<T>(
        &self,
        f: impl FnOnce(&Connection, i64) -> FuncResult<T>,
    ) -> FuncResult<T> {
        self.with_reader(|conn| {
            conn.with_pinned_read(auth::EPOCH_SQL, |epoch| {
                catch_unwind(AssertUnwindSafe(|| f(conn, epoch)))
                    .unwrap_or_else(|p| Err(panic_message(p)))
            })?
        })
    }

    /// Runs `f` on a pooled read-only connection, which goes back to the pool if `f` left it
    /// outside any transaction.
    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> FuncResult<T>) -> FuncResult<T> {
        // The connection this thread used last, if idle: its page cache and statements are
        // still in this CPU's caches.
        let me = std::thread::current().id();
        let bounded = store::is_postgres(&self.config.db_path);
        let pooled = {
            let mut pool = lock(&self.readers);
            loop {
                match pool.idle.iter().rposition(|(t, _)| *t == me) {
                    Some(i) => break Some(pool.idle.swap_remove(i).1),
                    None => match pool.idle.pop() {
                        Some((_, c)) => break Some(c),
                        None if !bounded || pool.open < PG_READERS => {
                            pool.open += 1;
                            break None;
                        }
                        None => {
                            pool = self
                                .reader_back
                                .wait(pool)
                                .unwrap_or_else(|e| e.into_inner());
                        }
                    },
                }
            }
        };
        let conn = match pooled {
            Some(c) => c,
            None => match store::connect_reader(&self.config.db_path, self.config.durability) {
                Ok(c) => c,
                Err(e) => {
                    self.reader_closed();
                    return Err(FuncError::internal(e.to_string()));
                }
            },
        };
        let result = f(&conn);
        let keep = !conn.in_transaction() && conn.is_usable();
        let mut pool = lock(&self.readers);
        if keep && (bounded || pool.idle.len() < READER_POOL) {
            pool.idle.push((me, conn));
            drop(pool);
            self.reader_back.notify_one();
        } else {
            drop(pool);
            drop(conn);
            self.reader_closed();
        }
        result
    }

    /// A read connection was closed (or never opened): one more may be opened.
    fn reader_closed(&self) {
        let mut pool = lock(&self.readers);
        pool.open = pool.open.saturating_sub(1);
        drop(pool);
        self.reader_back.notify_one();
    }

    /// Creates the staff user `login` (with `password`, or a generated one), or resets its
    /// password when it exists and a password is given (`billhost init`, the first `serve`).
    /// The argon2 hash is made before the writer is taken, as for any call that sets a password.
    pub fn ensure_staff(
        &self,
        login: &str,
        password: Option<&str>,
    ) -> FuncResult<auth::AdminSetup> {
        let exists = self.read(|c| auth::user_id(c, login))?.is_some();
        // The password a create would generate, drawn now so that its hash can be made now. If
        // the user appears meanwhile, it is not used (and the hash is made in the write).
        let generated = auth::random_token(9)?;
        let hashed = match (password, exists) {
            (Some(p), _) => Some(p),
            (None, false) => Some(generated.as_str()),
            (None, true) => None,
        };
        auth::with_prehashed(hashed.as_slice(), || {
            self.write(|c| auth::ensure_staff_with(c, login, password, || Ok(generated.clone())))
        })
    }

    /// Resolves the credentials of a request: `authinfo=user:pass`, or a session id from `auth`
    /// (or the `billmgrses5` cookie, passed as `session`). No credentials is the anonymous
    /// caller.
    pub fn authenticate(
        &self,
        params: &Params,
        session: Option<&str>,
        ip: &str,
    ) -> FuncResult<Caller> {
        if let Some(authinfo) = params.get("authinfo") {
            let (user, pass) = authinfo
                .split_once(':')
                .ok_or_else(|| FuncError::auth("authinfo must be user:password"))?;
            return self.read(|c| auth::login_cached(c, &self.credentials, user, pass, ip));
        }
        let Some(sid) = params.get("auth").or(session.filter(|s| !s.is_empty())) else {
            return Ok(Caller::anonymous(ip));
        };
        let (caller, touch) = self
            .read(|c| auth::resolve_session(c, sid, ip))?
            .ok_or_else(|| {
                FuncError::auth("The session has expired or does not exist; log in again")
            })?;
        if touch {
            self.write(|c| auth::touch_session(c, sid))?;
        }
        Ok(caller)
    }

    /// Where a network front end should run a request of `func` with `params` (see [`Lane`]).
    pub fn lane(&self, func: &str, params: &Params) -> Lane {
        let generation = self.scripts.current();
        let Ok(decl) = self.decl(&generation, func) else {
            return Lane::Blocking;
        };
        if writes(&decl, params) {
            // argon2 for a write's passwords must run on a thread that may block, before the
            // writer is taken.
            if passwords(&decl, params).is_empty() {
                Lane::Writer
            } else {
                Lane::Blocking
            }
        } else if self.callable_on_async_worker() && inline(&generation, &decl, params) {
            Lane::Inline
        } else {
            Lane::Blocking
        }
    }

    /// Whether this engine's database may be called on an async worker thread (the inline lane
    /// and the quick admission of writes): not on PostgreSQL, whose client blocks on a runtime
    /// of its own ([`store::callable_on_async_worker`]).
    pub fn callable_on_async_worker(&self) -> bool {
        store::callable_on_async_worker(&self.config.db_path)
    }

    /// The caller of a request when that is quick to tell: cached `authinfo`, a session that
    /// needs no touch, or no credentials (the anonymous caller). `None` means the slow way
    /// ([`Engine::authenticate`]) must decide: argon2, a session touch, or credentials that
    /// fail (so that the failure is counted and answered as usual).
    pub fn authenticate_quick(
        &self,
        params: &Params,
        session: Option<&str>,
        ip: &str,
    ) -> Option<Caller> {
        self.read(|conn| Ok(self.authenticate_in(conn, params, session, ip, None)))
            .ok()
            .flatten()
    }

    /// The caller of a write request when the server can tell without the database: cached
    /// `authinfo`, with the auth epoch it is known at (the writer runs the call only if its
    /// transaction reads that epoch: [`Engine::call_batch_pulled`]), or no credentials at all
    /// (the anonymous caller, no epoch to check). `None`: a session or unknown credentials,
    /// which [`Engine::authenticate_quick`] or the slow way decide.
    pub fn caller_known_at(
        &self,
        params: &Params,
        session: Option<&str>,
        ip: &str,
    ) -> Option<(Caller, Option<i64>)> {
        if let Some(authinfo) = params.get("authinfo") {
            let (user, pass) = authinfo.split_once(':')?;
            let (caller, epoch) = auth::caller_known_at(&self.credentials, user, pass, ip)?;
            return Some((caller, Some(epoch)));
        }
        match params.get("auth").or(session.filter(|s| !s.is_empty())) {
            Some(_) => None,
            None => Some((Caller::anonymous(ip), None)),
        }
    }

    fn authenticate_in(
        &self,
        conn: &Connection,
        params: &Params,
        session: Option<&str>,
        ip: &str,
        // The auth epoch, when the transaction has read it already.
        epoch: Option<i64>,
    ) -> Option<Caller> {
        if let Some(authinfo) = params.get("authinfo") {
            let (user, pass) = authinfo.split_once(':')?;
            return auth::login_if_cached(conn, &self.credentials, epoch, user, pass, ip)
                .ok()
                .flatten();
        }
        let Some(sid) = params.get("auth").or(session.filter(|s| !s.is_empty())) else {
            return Some(Caller::anonymous(ip));
        };
        match auth::resolve_session(conn, sid, ip) {
            Ok(Some((caller, false))) => Some(caller),
            _ => None,
        }
    }

    /// A request in the [`Lane::Inline`] lane (a view or blank form without hooks), answered in
    /// one read transaction for the authentication and the func: its document, or `None` when
    /// it cannot be done quickly after all (see [`Engine::authenticate_quick`]; a reload changed
    /// the func) and must take the slow way. Never writes.
    pub fn handle_inline(
        &self,
        func: &str,
        params: &Params,
        session: Option<&str>,
        ip: &str,
    ) -> Option<Doc> {
        let generation = self.scripts.current();
        let decl = self.decl(&generation, func).ok()?;
        if !inline(&generation, &decl, params) {
            return None;
        }
        let scope = CallScope::new(&generation);
        self.read_with_epoch(|conn, epoch| {
            let Some(caller) = self.authenticate_in(conn, params, session, ip, Some(epoch)) else {
                return Ok(None);
            };
            let result = self.dispatch_as(conn, &caller, &decl, params, &scope);
            Ok(Some(result.unwrap_or_else(Doc::Error)))
        })
        .ok()
        .flatten()
    }

    /// Authenticates and calls: what a network front end does with one request. A request to a
    /// public func with stale credentials runs anonymously.
    pub fn handle(&self, func: &str, params: Params, session: Option<&str>, ip: &str) -> Doc {
        let authenticated = self.authenticate(&params, session, ip);
        match self.caller_for(func, authenticated, ip) {
            Ok(caller) => self.call(&caller, func, params),
            Err(e) => Doc::Error(e),
        }
    }

    /// The caller a network request runs as: the one its credentials name, or, when they
    /// failed and the func is public (built in or a script's), the anonymous caller.
    pub fn caller_for(
        &self,
        func: &str,
        authenticated: FuncResult<Caller>,
        ip: &str,
    ) -> FuncResult<Caller> {
        match authenticated {
            Ok(caller) => Ok(caller),
            Err(_) if self.is_public(func) => Ok(Caller::anonymous(ip)),
            Err(e) => Err(e),
        }
    }

    /// Whether anyone, logged in or not, may call `func`.
    pub fn is_public(&self, func: &str) -> bool {
        match self.registry.get(func) {
            Some(decl) => decl.access.public,
            None => self
                .scripts
                .current()
                .func(func)
                .is_some_and(|d| d.access.public),
        }
    }

    /// Runs one func as `caller` and answers its document. Never panics.
    pub fn call(&self, caller: &Caller, func: &str, params: Params) -> Doc {
        match self.try_call(caller, func, &params) {
            Ok(doc) => doc,
            Err(e) => Doc::Error(e),
        }
    }

    fn try_call(&self, caller: &Caller, func: &str, params: &Params) -> FuncResult<Doc> {
        // The call keeps this generation of scripts even if a reload happens meanwhile.
        let generation = self.scripts.current();
        let scope = CallScope::new(&generation);
        let decl = self.decl(&generation, func)?;
        if writes(&decl, params) {
            // argon2 for the call's passwords runs here, before the writer is taken.
            auth::with_prehashed(&passwords(&decl, params), || {
                self.write(|conn| self.dispatch_as(conn, caller, &decl, params, &scope))
            })
        } else {
            self.read(|conn| self.dispatch_as(conn, caller, &decl, params, &scope))
        }
    }

    /// One top-level call on `conn`, already inside its transaction: the func's declaration in
    /// `generation`, then [`Engine::dispatch_as`].
    fn call_on(
        &self,
        conn: &Connection,
        generation: &Generation,
        caller: &Caller,
        func: &str,
        params: &Params,
    ) -> FuncResult<Doc> {
        let doc = self.call_on_deferring(conn, generation, caller, func, params)?;
        conn.flush()?;
        Ok(doc)
    }

    /// [`Engine::call_on`] that leaves the writes the func deferred unsent: the writer's batch
    /// sends them with the next member's savepoint (or before its commit), and answers their
    /// failure as the func's ([`WriterInner::member_known_at`]).
    fn call_on_deferring(
        &self,
        conn: &Connection,
        generation: &Generation,
        caller: &Caller,
        func: &str,
        params: &Params,
    ) -> FuncResult<Doc> {
        let scope = CallScope::new(generation);
        let decl = self.decl(generation, func)?;
        self.dispatch_as_deferring(conn, caller, &decl, params, &scope)
    }

    /// [`Engine::dispatch`] as `caller`, or as the user `su=LOGIN` names (staff only). The
    /// writes the func deferred (`Statement::execute_deferred`) are sent before its outcome is
    /// decided: their failure is the func's.
    fn dispatch_as(
        &self,
        conn: &Connection,
        caller: &Caller,
        decl: &FuncDecl,
        params: &Params,
        scope: &CallScope<'_>,
    ) -> FuncResult<Doc> {
        let doc = self.dispatch_as_deferring(conn, caller, decl, params, scope)?;
        conn.flush()?;
        Ok(doc)
    }

    /// [`Engine::dispatch_as`] but for the writes the func deferred, which may be unsent.
    fn dispatch_as_deferring(
        &self,
        conn: &Connection,
        caller: &Caller,
        decl: &FuncDecl,
        params: &Params,
        scope: &CallScope<'_>,
    ) -> FuncResult<Doc> {
        params.refuse_nul()?;
        match params.get("su") {
            Some(login) => {
                let switched = auth::switch_user(conn, caller, login)?;
                self.dispatch(conn, &switched, decl, params, scope)
            }
            None => self.dispatch(conn, caller, decl, params, scope),
        }
    }

    /// The protocol, on a connection already inside the func's transaction.
    fn dispatch(
        &self,
        conn: &Connection,
        caller: &Caller,
        decl: &FuncDecl,
        params: &Params,
        scope: &CallScope<'_>,
    ) -> FuncResult<Doc> {
        if !decl.access.allows(caller.level) {
            return Err(if caller.level == Level::Public {
                FuncError::auth("Log in to call this function")
            } else {
                FuncError::access(&decl.name, format!("Access to '{}' is denied", decl.name))
            });
        }
        let ctx = Ctx {
            db: conn,
            caller,
            func: &decl.name,
            now: clock::now(),
            engine: self,
            scope,
        };
        // Countries and currencies given by ISO alpha code or another directory's id become
        // our ids before anything (a script's hook included) sees them.
        let resolved = crate::funcs::directory::resolve(conn, decl, params)?;
        let params = resolved.as_ref().unwrap_or(params);
        if !scope.generation().has_hooks(&decl.name) {
            return self.protocol(&ctx, decl, params);
        }
        let mut params = params.clone();
        let req = script::before(&ctx, &decl.name, &mut params)?;
        let doc = self.protocol(&ctx, decl, &params)?;
        script::after(&ctx, &decl.name, &params, doc, req)
    }

    /// The BILLmanager protocol of the func's kind.
    fn protocol(&self, ctx: &Ctx, decl: &FuncDecl, params: &Params) -> FuncResult<Doc> {
        let (conn, caller) = (ctx.db, ctx.caller);
        // `elid` and `plid` are ids where the func says what they name; an action without an
        // object (or parent) type, such as a script's or a plugin's func, gets them as they
        // came (a domain name, a zone, a code).
        let keyed_by_text = matches!(decl.handler, Handler::Action(_));
        let plid = if keyed_by_text && decl.parent.is_none() {
            None
        } else {
            params
                .get("plid")
                .map(|v| parse_id("plid", v))
                .transpose()?
        };
        if let (Some(parent), Some(id)) = (decl.parent, plid) {
            check_object(conn, caller, parent, id)?;
        }
        let sok = params.has("sok");
        match &decl.handler {
            Handler::List(spec) => {
                let parent = match plid {
                    Some(id) => Some(id),
                    None if decl.parent.is_some() => {
                        let elid = params
                            .get("elid")
                            .map(|v| parse_id("elid", v))
                            .transpose()?;
                        if let (Some(parent), Some(id)) = (decl.parent, elid) {
                            check_object(conn, caller, parent, id)?;
                        }
                        elid
                    }
                    None => None,
                };
                if decl.parent_required && parent.is_none() {
                    return Err(FuncError::missed_param("plid"));
                }
                self.run_list(ctx, decl, spec, params, parent)
                    .map(Doc::List)
            }
            Handler::Edit(ops) => {
                if decl.parent_required && plid.is_none() {
                    return Err(FuncError::missed_param("plid"));
                }
                let checked_by_view = !sok && ops.view_checks_object();
                let elid = single_elid(conn, caller, decl, params, !checked_by_view)?;
                match (sok, elid) {
                    (false, Some(id)) => {
                        let mut form = ops.view(ctx, id, plid)?;
                        form.insert(0, ("elid".into(), id.to_string()));
                        Ok(Doc::Form(form))
                    }
                    (false, None) => Ok(Doc::Form(ops.blank(ctx, plid)?)),
                    (true, None) => {
                        validate(conn, caller, decl, params, true)?;
                        check_refused(decl, params, None)?;
                        ops.create(ctx, plid, params).map(Doc::created)
                    }
                    (true, Some(id)) => {
                        validate(conn, caller, decl, params, false)?;
                        if refused_given(decl, params) {
                            let view = ops.view(ctx, id, plid)?;
                            check_refused(decl, params, Some(&view))?;
                        }
                        ops.change(ctx, id, plid, params).map(|()| Doc::ok())
                    }
                }
            }
            Handler::Group(f) => {
                let ids = parse_id_list("elid", params.get("elid").unwrap_or(""))?;
                validate(conn, caller, decl, params, false)?;
                for id in ids {
                    let one = || -> FuncResult<()> {
                        if let (Some(object), false) = (decl.object, decl.group_checks_object) {
                            check_object(conn, caller, object, id)?;
                        }
                        f(ctx, id, params)
                    };
                    one().map_err(|e| e.in_element(&id.to_string()))?;
                }
                Ok(Doc::ok())
            }
            Handler::Action(f) => {
                let elid = match decl.object {
                    Some(_) => single_elid(conn, caller, decl, params, true)?
                        .map(|id| id.to_string())
                        .ok_or_else(|| FuncError::missed_param("elid"))
                        .map(Some)?,
                    None => params.get("elid").map(str::to_string),
                };
                if decl.action_mode == ActionMode::FormThenWrite && !sok {
                    let mut form: Fields = elid.map(|id| ("elid".into(), id)).into_iter().collect();
                    form.extend(blank_fields(&decl.params));
                    return Ok(Doc::Form(form));
                }
                let creating = decl.action_mode != ActionMode::CallOut || sok;
                validate(conn, caller, decl, params, creating)?;
                check_refused(decl, params, None)?;
                f(ctx, params)
            }
            Handler::Filter { list } => self.filter(ctx, list, params, sok),
        }
    }

    fn list_spec(&self, list: &str) -> FuncResult<&ListSpec> {
        match self.registry.get(list).map(|d| &d.handler) {
            Some(Handler::List(spec)) => Ok(spec),
            _ => Err(FuncError::internal(format!("'{list}' is not a list"))),
        }
    }

    fn run_list(
        &self,
        ctx: &Ctx,
        decl: &FuncDecl,
        spec: &ListSpec,
        params: &Params,
        parent: Option<i64>,
    ) -> FuncResult<crate::doc::ListDoc> {
        let inline = params.flag("filter") == Some(true);
        let values: Vec<(String, String)> = if inline {
            params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        } else {
            stored_filter(ctx.db, ctx.caller, &decl.name)?
        };
        let mut filters = Vec::new();
        for (name, value) in &values {
            if let (Some(field), false) = (spec.filter_field(name), value.is_empty()) {
                let value = crate::funcs::directory::resolve_filter(ctx.db, field.name, value)?;
                filters.push((field, value));
            }
        }
        // A client user sees its own client's rows; public lists have no owner.
        let owner = match ctx.caller.level {
            Level::Admin | Level::Public => None,
            Level::User => Some(
                ctx.caller
                    .account_id
                    .ok_or_else(|| FuncError::access(&decl.name, "No client account"))?,
            ),
        };
        let num = params
            .get("p_num")
            .map(|v| parse_int("p_num", v))
            .transpose()?;
        let cnt = params
            .get("p_cnt")
            .map(|v| parse_int("p_cnt", v))
            .transpose()?;
        let page = match (num, cnt) {
            (None, None) => None,
            (n, c) => {
                let n = n.unwrap_or(1);
                let c = c.unwrap_or(DEFAULT_PAGE_SIZE as i64);
                if n < 1 {
                    return Err(FuncError::value(
                        "p_num",
                        n.to_string(),
                        "Pages are numbered from 1",
                    ));
                }
                if c < 1 {
                    return Err(FuncError::value(
                        "p_cnt",
                        c.to_string(),
                        "The page size must be at least 1",
                    ));
                }
                Some((n as u64, c as u64))
            }
        };
        let desc = match params.get("p_order") {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(other) => {
                return Err(FuncError::value("p_order", other, "p_order is asc or desc"));
            }
        };
        let sort = params.get("p_sort").map(|s| (s, desc)).or(if desc {
            Some((spec.columns[0].name, true))
        } else {
            None
        });
        let q = ListQuery {
            filters,
            parent,
            owner,
            page,
            sort,
        };
        list::run(ctx.db, spec, &q)
    }

    fn filter(&self, ctx: &Ctx, list: &str, params: &Params, sok: bool) -> FuncResult<Doc> {
        let spec = self.list_spec(list)?;
        if !sok {
            let stored = stored_filter(ctx.db, ctx.caller, list)?;
            let form = spec
                .filters
                .iter()
                .map(|f| {
                    let v = stored
                        .iter()
                        .find(|(k, _)| k == f.name)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default();
                    (f.name.into(), v)
                })
                .collect();
            return Ok(Doc::Form(form));
        }
        let mut values = Vec::new();
        for field in &spec.filters {
            if let Some(v) = params.get(field.name) {
                list::filter_values(field, v)?;
                values.push((field.name.to_string(), v.to_string()));
            }
        }
        store_filter(ctx.db, ctx.caller, list, &values)?;
        Ok(Doc::ok())
    }

    /// Stores `values` as the caller's filter of `list`, replacing the fields named.
    pub fn merge_filter(
        &self,
        ctx: &Ctx,
        list: &str,
        values: &[(String, String)],
    ) -> FuncResult<()> {
        let mut stored = stored_filter(ctx.db, ctx.caller, list)?;
        for (k, v) in values {
            stored.retain(|(sk, _)| sk != k);
            stored.push((k.clone(), v.clone()));
        }
        store_filter(ctx.db, ctx.caller, list, &stored)
    }
}

/// Whether a call may run in the [`Lane::Inline`] lane: a view or blank form, no hooks.
fn inline(generation: &Generation, decl: &FuncDecl, params: &Params) -> bool {
    !writes(decl, params)
        && matches!(decl.handler, Handler::Edit(_))
        && !generation.has_hooks(&decl.name)
}

/// The distinct passwords a call passes in its declared password parameters.
fn passwords<'p>(decl: &FuncDecl, params: &'p Params) -> Vec<&'p str> {
    let mut found: Vec<&str> = decl
        .params
        .iter()
        .filter(|p| matches!(p.ty, Ty::Password(_)))
        .filter_map(|p| params.get(&p.name))
        .filter(|v| !v.is_empty())
        .collect();
    found.sort_unstable();
    found.dedup();
    found
}

/// Whether a call changes anything, and so goes to the writer.
fn writes(decl: &FuncDecl, params: &Params) -> bool {
    match decl.handler {
        Handler::List(_) => false,
        Handler::Edit(_) | Handler::Filter { .. } => params.has("sok"),
        Handler::Group(_) => true,
        Handler::Action(_) => match decl.action_mode {
            ActionMode::Write => true,
            ActionMode::Read => false,
            ActionMode::FormThenWrite => params.has("sok"),
            ActionMode::CallOut => false,
        },
    }
}

/// The call's `elid`, parsed and, when `check` and the func names an object type, checked.
fn single_elid(
    conn: &Connection,
    caller: &Caller,
    decl: &FuncDecl,
    params: &Params,
    check: bool,
) -> FuncResult<Option<i64>> {
    let Some(raw) = params.get("elid") else {
        return Ok(None);
    };
    let id = parse_id("elid", raw)?;
    if let (Some(object), true) = (decl.object, check) {
        check_object(conn, caller, object, id)?;
    }
    Ok(Some(id))
}

/// The object exists, and, when it belongs to a client, a client user calling is that client.
/// Objects without an owner (providers, countries, currencies) are shared references.
pub fn check_object(
    conn: &Connection,
    caller: &Caller,
    object: ObjectType,
    id: i64,
) -> FuncResult<()> {
    // Built from the declaration's static names (no formatting machinery: this runs on every
    // call that names an object).
    let owner_column = object.owner.unwrap_or("NULL");
    let mut sql = String::with_capacity(30 + owner_column.len() + object.table.len());
    sql.push_str("SELECT ");
    sql.push_str(owner_column);
    sql.push_str(" FROM ");
    sql.push_str(object.table);
    sql.push_str(" WHERE id = ?1");
    let owner: Option<Option<i64>> = conn
        .prepare_cached(&sql)?
        .query_row([id], |r| r.get(0))
        .optional()?;
    let Some(owner) = owner else {
        return Err(FuncError::missed_object(object.name, id));
    };
    if object.owner.is_some() {
        check_owner(caller, object, id, owner)?;
    }
    Ok(())
}

/// A client user may only reach the objects of its own client (`owner`); staff reach all.
pub fn check_owner(
    caller: &Caller,
    object: ObjectType,
    id: i64,
    owner: Option<i64>,
) -> FuncResult<()> {
    if caller.level == Level::Admin || owner == caller.account_id {
        return Ok(());
    }
    Err(FuncError::new(
        ErrorType::Access,
        object.name,
        id.to_string(),
        format!("The {} {id} is not yours", object.name),
    ))
}

fn blank_fields(params: &[Param]) -> Fields {
    params
        .iter()
        .filter(|p| !matches!(p.ty, Ty::Password(_)))
        .map(|p| (p.name.clone().into(), String::new()))
        .collect()
}

fn refused_given(decl: &FuncDecl, params: &Params) -> bool {
    decl.refused
        .iter()
        .any(|(name, _)| params.raw(name).is_some_and(|v| !v.is_empty()))
}

/// Refuses a spec field the func does not take (`FuncDecl::refused`): given non-empty, and on
/// a change different from the value the object's `view` shows.
fn check_refused(decl: &FuncDecl, params: &Params, view: Option<&Fields>) -> FuncResult<()> {
    for (name, reason) in &decl.refused {
        let Some(value) = params.raw(name).filter(|v| !v.is_empty()) else {
            continue;
        };
        let shown = view.and_then(|fields| {
            fields
                .iter()
                .find(|(k, _)| k.as_ref() == *name)
                .map(|(_, v)| v.as_str())
        });
        if shown == Some(value) {
            continue;
        }
        return Err(FuncError::value(
            name,
            value,
            format!("'{name}' cannot be set: {reason}"),
        ));
    }
    Ok(())
}

/// Checks the declared parameters that are present; on a create, also that the required ones
/// are.
fn validate(
    conn: &Connection,
    caller: &Caller,
    decl: &FuncDecl,
    params: &Params,
    creating: bool,
) -> FuncResult<()> {
    for p in &decl.params {
        let value = match params.raw(&p.name) {
            Some(v) if !v.is_empty() => v,
            Some(_) if p.required => return Err(FuncError::missed_param(&p.name)),
            None if p.required && creating => return Err(FuncError::missed_param(&p.name)),
            _ => continue,
        };
        if p.admin_only && caller.level != Level::Admin {
            return Err(FuncError::access(
                &p.name,
                format!("Only staff may set '{}'", p.name),
            ));
        }
        check_value(conn, caller, p, value)?;
    }
    Ok(())
}

fn check_value(conn: &Connection, caller: &Caller, p: &Param, value: &str) -> FuncResult<()> {
    let name = p.name.as_str();
    let too_long =
        |max: usize| FuncError::value(name, value, format!("At most {max} characters are allowed"));
    match &p.ty {
        Ty::Text(max) => {
            if value.chars().count() > *max {
                return Err(too_long(*max));
            }
            if value.chars().any(char::is_control) {
                return Err(FuncError::value(
                    name,
                    value,
                    "Control characters are not allowed",
                ));
            }
        }
        Ty::LongText(max) => {
            if value.chars().count() > *max {
                return Err(too_long(*max));
            }
            if value
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
            {
                return Err(FuncError::value(
                    name,
                    value,
                    "Control characters are not allowed",
                ));
            }
        }
        Ty::Email => {
            if !valid_email(value) {
                return Err(FuncError::value(
                    name,
                    value,
                    format!("'{value}' is not a valid email address"),
                ));
            }
        }
        Ty::Password(min) => {
            if value.chars().count() < *min {
                return Err(FuncError::value(
                    name,
                    "",
                    format!("The password must have at least {min} characters"),
                ));
            }
            if value.chars().count() > 1024 {
                return Err(too_long(1024));
            }
        }
        Ty::Int { min, max } => {
            let v = parse_int(name, value)?;
            if v < *min || v > *max {
                return Err(FuncError::value(
                    name,
                    value,
                    format!("The value must be between {min} and {max}"),
                ));
            }
        }
        Ty::Flag => {
            if value != "on" && value != "off" {
                return Err(FuncError::value(
                    name,
                    value,
                    "The value must be 'on' or 'off'",
                ));
            }
        }
        Ty::Decimal => {
            crate::money::parse_decimal(value, name)?;
        }
        Ty::Date => {
            clock::parse_datetime(value, name)?;
        }
        Ty::Choice(options) => {
            if !options.contains(&value) {
                return Err(FuncError::value(
                    name,
                    value,
                    format!("The value must be one of: {}", options.join(", ")),
                ));
            }
        }
        Ty::Ref(object) => {
            let id = parse_id(name, value)?;
            check_object(conn, caller, *object, id).map_err(|mut e| {
                e.object = name.to_string();
                e
            })?;
        }
    }
    Ok(())
}

/// A practical email check: one `@`, a non-empty local part of printable ASCII without spaces,
/// and a domain of dot-separated labels with a dot.
pub fn valid_email(s: &str) -> bool {
    if s.len() > 254 {
        return false;
    }
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    local_ok && domain_ok
}

fn stored_filter(
    conn: &Connection,
    caller: &Caller,
    list: &str,
) -> FuncResult<Vec<(String, String)>> {
    let json: Option<String> = conn
        .prepare_cached("SELECT params FROM stored_filter WHERE user_login = ?1 AND list = ?2")?
        .query_row(params![caller.filter_key(), list], |r| r.get(0))
        .optional()?;
    let Some(json) = json else {
        return Ok(Vec::new());
    };
    let pairs: Vec<(String, String)> = serde_json::from_str(&json)
        .map_err(|e| FuncError::internal(format!("stored filter of {list}: {e}")))?;
    Ok(pairs)
}

fn store_filter(
    conn: &Connection,
    caller: &Caller,
    list: &str,
    values: &[(String, String)],
) -> FuncResult<()> {
    if values.is_empty() {
        conn.prepare_cached("DELETE FROM stored_filter WHERE user_login = ?1 AND list = ?2")?
            .execute(params![caller.filter_key(), list])?;
        return Ok(());
    }
    let json = serde_json::to_string(values).map_err(|e| FuncError::internal(e.to_string()))?;
    conn.prepare_cached(
        "INSERT INTO stored_filter (user_login, list, params) VALUES (?1, ?2, ?3)
         ON CONFLICT (user_login, list) DO UPDATE SET params = excluded.params",
    )?
    .execute(params![caller.filter_key(), list, json])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::valid_email;

    #[test]
    fn emails() {
        for ok in ["ann@example.com", "a.b+c@mail.example.org", "x@a-b.io"] {
            assert!(valid_email(ok), "{ok}");
        }
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "ann@example",
            "a b@example.com",
            "ann@-x.com",
            "a..b@x.com",
            "ann@ex ample.com",
        ] {
            assert!(!valid_email(bad), "{bad}");
        }
    }
}
