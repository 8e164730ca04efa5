//! Business-rule scripts: Lua 5.4 files from the scripts folder, loaded into one sandboxed
//! state per *generation*. A generation is built from all files in name order and goes live
//! only if every file loaded; calls in flight keep the generation they started with. Scripts
//! hook funcs (`billing.on`), add funcs (`billing.func`), call funcs (`billing.call`), schedule
//! jobs (`billing.every`) and compute with exact money (`billing.money`).
//!
//! The Lua state of a generation is behind a mutex: a func call takes it the first time a hook
//! or script func needs it and keeps it until the call ends, so that nested calls
//! (`billing.call` inside a hook) re-enter the same state. Locks are always taken in the order
//! database connection, then Lua.

pub mod console;
mod convert;
mod money;
mod pattern;
mod sandbox;
mod scheduler;

pub use scheduler::Scheduler;

pub use console::Console;
pub use money::Money;
pub use sandbox::log_escaped;

use crate::doc::Doc;
use crate::engine::Ctx;
use crate::error::{ErrorType, FuncError, FuncResult};
use crate::func::{Access, ActionMode, FuncDecl};
use crate::params::Params;
use mlua::{Function, Lua, Table, Value};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

/// Limits of every script call.
#[derive(Debug, Clone)]
pub struct ScriptConfig {
    /// The scripts folder; `None` runs without scripts.
    pub dir: Option<PathBuf>,
    /// Bytes the Lua state of a generation may allocate.
    pub memory_limit: usize,
    /// VM instructions one func call (all its hooks and nested calls together) may run.
    pub instruction_budget: i64,
    /// Wall-clock time one top-level call's scripts may take, from the first script that runs
    /// to the last: past it the call is abandoned (rolled back, a `script` error).
    pub timeout: Duration,
}

impl Default for ScriptConfig {
    fn default() -> Self {
        ScriptConfig {
            dir: None,
            memory_limit: 64 << 20,
            instruction_budget: 50_000_000,
            timeout: Duration::from_secs(5),
        }
    }
}

/// The limits of the running call, checked by the VM hook every [`sandbox::HOOK_EVERY`]
/// instructions, by the pattern functions as they match and by `billing.call`: the
/// instruction budget, counted down; the wall-clock deadline; the process-wide stop. Once the
/// call is stopped it stays stopped until the next call starts, so that `pcall` cannot swallow
/// the stop.
#[derive(Debug)]
pub(crate) struct Budget {
    remaining: AtomicI64,
    limit: i64,
    /// Bytes a generation may allocate: also the bound of a string the pattern functions build.
    memory: usize,
    timeout: Duration,
    epoch: Instant,
    /// When the running call must end, in nanoseconds after `epoch`; 0 for no deadline.
    deadline: AtomicU64,
    /// Why the call was stopped: one of the `STOPPED_*` values, 0 while it runs.
    stopped: AtomicU8,
}

const STOPPED_BUDGET: u8 = 1;
const STOPPED_TIMEOUT: u8 = 2;
const STOPPED_SERVER: u8 = 3;

/// Set once the process is stopping: every script still running stops at its next check.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Stops every script of the process at its next budget check (within a thousand VM
/// instructions or matching steps), and every script that starts later. For a server that
/// is stopping. Only an atomic store, so a signal handler may call it.
pub fn stop_all() {
    STOPPING.store(true, Ordering::SeqCst);
}

impl Budget {
    pub(crate) fn new(config: &ScriptConfig) -> Budget {
        Budget {
            remaining: AtomicI64::new(config.instruction_budget),
            limit: config.instruction_budget,
            memory: config.memory_limit,
            timeout: config.timeout,
            epoch: Instant::now(),
            deadline: AtomicU64::new(0),
            stopped: AtomicU8::new(0),
        }
    }

    /// A fresh instruction budget (the deadline stays as it is).
    fn reset(&self) {
        self.stopped.store(0, Ordering::SeqCst);
        self.remaining.store(self.limit, Ordering::SeqCst);
    }

    /// The call's deadline: its timeout after `started`.
    fn start(&self, started: Instant) {
        let at = (started + self.timeout).saturating_duration_since(self.epoch);
        let nanos = u64::try_from(at.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.deadline.store(nanos, Ordering::SeqCst);
    }

    fn spent(&self) -> bool {
        self.remaining.load(Ordering::SeqCst) <= 0
    }

    /// Counts `n` instructions (or matching steps) against the call, and fails once any
    /// limit is reached, and at every later check of the same call.
    pub(crate) fn charge(&self, n: i64) -> mlua::Result<()> {
        // More than any budget, and never enough to wrap the counter around.
        let n = n.clamp(0, i64::MAX / 4);
        let left = self
            .remaining
            .fetch_sub(n, Ordering::SeqCst)
            .saturating_sub(n);
        if left <= 0 {
            return self.stop(STOPPED_BUDGET);
        }
        self.check()
    }

    /// Fails once the call is past its deadline or the process is stopping.
    pub(crate) fn check(&self) -> mlua::Result<()> {
        if self.remaining.load(Ordering::SeqCst) <= 0 {
            return self.stop(STOPPED_BUDGET);
        }
        if STOPPING.load(Ordering::Relaxed) {
            return self.stop(STOPPED_SERVER);
        }
        let deadline = self.deadline.load(Ordering::Relaxed);
        if deadline != 0 && self.epoch.elapsed().as_nanos() > u128::from(deadline) {
            return self.stop(STOPPED_TIMEOUT);
        }
        Ok(())
    }

    /// Stops the call (sticky: the budget stays spent) and says why, the first reason winning.
    fn stop(&self, why: u8) -> mlua::Result<()> {
        self.remaining.store(i64::MIN / 2, Ordering::SeqCst);
        let _ = self
            .stopped
            .compare_exchange(0, why, Ordering::SeqCst, Ordering::SeqCst);
        let msg = match self.stopped.load(Ordering::SeqCst) {
            STOPPED_TIMEOUT => format!(
                "the script ran longer than {} s (--script-timeout-secs) and was stopped",
                self.timeout.as_secs_f64()
            ),
            STOPPED_SERVER => "the server is stopping: the script was stopped".to_string(),
            _ => format!("instruction budget of {} exhausted", self.limit),
        };
        Err(mlua::Error::runtime(msg))
    }
}

/// A scheduled job from `billing.every`.
pub struct Job {
    pub name: String,
    pub every_secs: u64,
    pub(crate) func: Function,
}

/// Lua functions of every generation's state, out of the scripts' reach, that cut the
/// crossings between Rust and Lua around hooks (each crossing of a value costs more than the
/// same work inside Lua): `request` builds `req` from its parts in one call; `copy(t)` answers
/// a shallow copy of `t`; `changes(now, was, skip)` answers `{k1, v1, k2, v2, ...}` for each
/// string key of `now` but `skip` whose value is not the one `was` has; `edits(now, was)`
/// answers `changes(now, was)` and the keys of `was` that `now` no longer has.
struct Helpers {
    /// `run(f, ...)`: every script function the host calls goes through it, so that an error
    /// raised with a table arrives as a message (its `__tostring`, else its contents).
    run: Function,
    request: Function,
    copy: Function,
    changes: Function,
    edits: Function,
}

const HELPERS: &str = r#"
local next, type, rawget = next, type, rawget
local function request(func, params, login, level, account)
  return { func = func, params = params, user = { login = login, level = level, account = account } }
end
local function copy(t)
  local c = {}
  for k, v in next, t do c[k] = v end
  return c
end
local function changes(now, was, skip)
  local out, n = {}, 0
  for k, v in next, now do
    if type(k) == "string" and k ~= skip and was[k] ~= v then
      out[n + 1], out[n + 2] = k, v
      n = n + 2
    end
  end
  return out
end
local function edits(now, was)
  local gone, m = {}, 0
  for k in next, was do
    if rawget(now, k) == nil then
      m = m + 1
      gone[m] = k
    end
  end
  return changes(now, was), gone
end
return request, copy, changes, edits
"#;

/// One loaded set of scripts.
pub struct Generation {
    pub id: u64,
    pub files: Vec<String>,
    lua: Option<Mutex<Lua>>,
    helpers: Option<Helpers>,
    before: HashMap<String, Vec<Function>>,
    after: HashMap<String, Vec<Function>>,
    pub funcs: Vec<Arc<FuncDecl>>,
    pub jobs: Vec<Job>,
    budget: Arc<Budget>,
}

impl Generation {
    fn empty(id: u64) -> Generation {
        Generation {
            id,
            files: Vec::new(),
            lua: None,
            helpers: None,
            before: HashMap::new(),
            after: HashMap::new(),
            funcs: Vec::new(),
            jobs: Vec::new(),
            budget: Arc::new(Budget::new(&ScriptConfig {
                instruction_budget: 0,
                ..ScriptConfig::default()
            })),
        }
    }

    pub fn func(&self, name: &str) -> Option<&Arc<FuncDecl>> {
        self.funcs.iter().find(|d| d.name == name)
    }

    pub fn has_hooks(&self, func: &str) -> bool {
        self.before.contains_key(func) || self.after.contains_key(func)
    }
}

/// What the scripts folder looks like now: the live generation and the last reload error.
#[derive(Debug, Clone)]
pub struct ScriptStatus {
    pub generation: u64,
    pub files: Vec<String>,
    pub funcs: Vec<String>,
    pub jobs: Vec<String>,
    pub last_error: Option<String>,
}

pub struct ScriptHost {
    config: ScriptConfig,
    current: RwLock<Arc<Generation>>,
    last_error: Mutex<Option<String>>,
    next_id: AtomicU64,
    builtin: Vec<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ScriptHost {
    /// Loads the folder once. A folder that fails to load starts with no scripts and the error
    /// reported (a running server keeps its last good set instead; see [`ScriptHost::reload`]).
    pub fn new(config: ScriptConfig, builtin: Vec<String>) -> ScriptHost {
        let host = ScriptHost {
            config,
            current: RwLock::new(Arc::new(Generation::empty(0))),
            last_error: Mutex::new(None),
            next_id: AtomicU64::new(1),
            builtin,
        };
        // A failure is recorded in `last_error` and reported by `status`.
        let _ = host.reload();
        host
    }

    pub fn config(&self) -> &ScriptConfig {
        &self.config
    }

    /// The live generation.
    pub fn current(&self) -> Arc<Generation> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Builds a fresh generation from the folder and swaps it in if every file loaded;
    /// otherwise keeps the live one and records the error. Returns the live generation id.
    pub fn reload(&self) -> Result<u64, String> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        match sandbox::build(id, &self.config, &self.builtin) {
            Ok(generation) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(generation);
                *lock(&self.last_error) = None;
                Ok(id)
            }
            Err(e) => {
                eprintln!(
                    "billhost: scripts not reloaded, the last good set stays live: {}",
                    log_escaped(&e)
                );
                *lock(&self.last_error) = Some(e.clone());
                Err(e)
            }
        }
    }

    pub fn status(&self) -> ScriptStatus {
        let g = self.current();
        ScriptStatus {
            generation: g.id,
            files: g.files.clone(),
            funcs: g.funcs.iter().map(|d| d.name.clone()).collect(),
            jobs: g
                .jobs
                .iter()
                .map(|j| format!("{} every {}s", j.name, j.every_secs))
                .collect(),
            last_error: lock(&self.last_error).clone(),
        }
    }

    /// Watches the folder (the directory, not its files: editors save by renaming over) and
    /// reloads after changes settle. Keep the returned watcher alive for as long as reloading
    /// should happen.
    pub fn watch(self: &Arc<Self>) -> Result<Watcher, String> {
        use notify_debouncer_mini::{new_debouncer, notify::RecursiveMode};
        let dir = self
            .config
            .dir
            .clone()
            .ok_or("no scripts folder configured")?;
        let host = Arc::downgrade(self);
        let mut debouncer = new_debouncer(
            std::time::Duration::from_millis(150),
            move |res: notify_debouncer_mini::DebounceEventResult| {
                if res.is_ok()
                    && let Some(host) = host.upgrade()
                {
                    // The events' details are not trusted: any change rescans the whole folder.
                    let _ = host.reload();
                }
            },
        )
        .map_err(|e| format!("watching {}: {e}", dir.display()))?;
        debouncer
            .watcher()
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|e| format!("watching {}: {e}", dir.display()))?;
        Ok(Watcher { _inner: debouncer })
    }
}

/// Keeps the scripts folder watched while alive.
pub struct Watcher {
    _inner: notify_debouncer_mini::Debouncer<notify_debouncer_mini::notify::RecommendedWatcher>,
}

/// The scripts side of one top-level func call: the generation it started with and, while a
/// script of the call may run, the lock on that generation's Lua state.
pub struct CallScope<'g> {
    generation: &'g Generation,
    lua: RefCell<Option<MutexGuard<'g, Lua>>>,
    /// When the call's first script started: its deadline counts from here.
    started: Cell<Option<Instant>>,
    /// Nested func calls (`billing.call`) running now, inside one another.
    depth: Cell<u32>,
}

/// Stack of a thread that runs scripts. Lua lets a script recurse through C functions up to 200
/// levels (a `gsub` whose replacement calls `gsub`, `tostring` of a `__tostring` that calls
/// `tostring`), each with Rust frames of the host under it; on a thread's default 2 MiB that
/// overflowed and aborted the server. Measured: 200 such levels fit in 8 MiB in a debug build.
pub const THREAD_STACK: usize = 16 << 20;

/// How deep `billing.call` may nest funcs in one another: each level is a dispatch and a Lua
/// call on the thread's stack, and a recursion as deep as Lua's own limit (200 C levels)
/// overflowed a server thread's stack and aborted the process.
pub const MAX_NESTED_CALLS: u32 = 32;

impl<'g> CallScope<'g> {
    pub fn new(generation: &'g Generation) -> Self {
        CallScope {
            generation,
            lua: RefCell::new(None),
            started: Cell::new(None),
            depth: Cell::new(0),
        }
    }

    /// Runs `f` as a func nested in this call, refused past [`MAX_NESTED_CALLS`] levels.
    pub fn nested<R>(&self, f: impl FnOnce() -> FuncResult<R>) -> FuncResult<R> {
        let depth = self.depth.get();
        if depth >= MAX_NESTED_CALLS {
            return Err(FuncError::new(
                ErrorType::Script,
                "script",
                "",
                format!("billing.call nests funcs more than {MAX_NESTED_CALLS} deep"),
            ));
        }
        self.depth.set(depth + 1);
        let result = f();
        self.depth.set(depth);
        result
    }

    pub fn generation(&self) -> &'g Generation {
        self.generation
    }

    /// Runs `f` with the generation's Lua state, locked on first use (which starts the call's
    /// instruction budget) and kept until the call ends or [`CallScope::release_lua`].
    fn with_lua<R>(&self, f: impl FnOnce(&Lua) -> FuncResult<R>) -> FuncResult<R> {
        let mutex = self
            .generation
            .lua
            .as_ref()
            .ok_or_else(|| FuncError::internal("no scripts are loaded"))?;
        if let Ok(mut held) = self.lua.try_borrow_mut()
            && held.is_none()
        {
            *held = Some(lock(mutex));
            let started = self.started.get().unwrap_or_else(Instant::now);
            self.started.set(Some(started));
            self.generation.budget.reset();
            self.generation.budget.start(started);
        }
        let held = self.lua.borrow();
        let lua = held
            .as_deref()
            .ok_or_else(|| FuncError::internal("the scripts' state is not held"))?;
        f(lua)
    }

    /// Lets go of the Lua state, unless a script of this call is running further up the stack:
    /// what a call-out func does before it waits for the writer, so that locks are only ever
    /// taken database first, then Lua (the writer may be running a hooked func that waits for
    /// Lua). The next script of the call locks it again, with a fresh budget.
    pub fn release_lua(&self) {
        if let Ok(mut held) = self.lua.try_borrow_mut() {
            *held = None;
        }
    }
}

/// Runs `f` with the call's Lua state and `billing.call` bound to this func's transaction.
fn enter<R>(ctx: &Ctx, f: impl FnOnce(&Lua) -> mlua::Result<R>) -> FuncResult<R> {
    ctx.scope().with_lua(|lua| {
        let billing: Table = lua
            .globals()
            .raw_get("billing")
            .map_err(|e| script_error(&e))?;
        let previous: Value = billing.raw_get("call").map_err(|e| script_error(&e))?;
        let result = lua.scope(|scope| {
            let budget = &ctx.scope().generation.budget;
            let call = scope.create_function(|lua, (func, params): (String, Option<Table>)| {
                // A loop of calls runs few instructions: the deadline is checked here too.
                budget.check()?;
                let params = convert::table_to_params(params)?;
                let result = ctx.call(&func, params);
                budget.check()?;
                match result {
                    Ok(doc) => convert::doc_to_lua(lua, &doc),
                    Err(e) => Err(mlua::Error::external(e)),
                }
            })?;
            billing.raw_set("call", call)?;
            f(lua)
        });
        let restored = billing.raw_set("call", previous);
        let value = result.map_err(|e| script_error(&e))?;
        restored.map_err(|e| script_error(&e))?;
        Ok(value)
    })
}

/// The `req` table of one call's hooks: built for its `before` hooks and handed on to its
/// `after` hooks, which see the parameters as the `before` hooks left them and anything else
/// they put in `req`.
#[derive(Default)]
pub struct HookReq(Option<Table>);

/// Runs the `before` hooks of the func: each sees `req` and may rewrite `req.params` or veto.
pub fn before(ctx: &Ctx, func: &str, params: &mut Params) -> FuncResult<HookReq> {
    let generation = &ctx.scope().generation;
    let (Some(hooks), Some(helpers)) = (generation.before.get(func), &generation.helpers) else {
        return Ok(HookReq::default());
    };
    let req = enter(ctx, |lua| {
        let given = lua.create_table_from(params.iter())?;
        let was: Table = helpers.copy.call(&given)?;
        let req = request(helpers, ctx, func, given)?;
        for hook in hooks {
            helpers.run.call::<()>((hook, &req))?;
        }
        // Only what the hooks changed crosses back.
        let now: Table = req.raw_get("params")?;
        let (set, gone): (Table, Table) = helpers.edits.call((now, was))?;
        convert::edit_params(params, &set, &gone)?;
        Ok(req)
    })?;
    Ok(HookReq(Some(req)))
}

/// Runs the `after` hooks: each sees `(req, res)`; fields they add to a form or ok result, or
/// change in it, are kept.
pub fn after(ctx: &Ctx, func: &str, params: &Params, doc: Doc, req: HookReq) -> FuncResult<Doc> {
    let generation = &ctx.scope().generation;
    let (Some(hooks), Some(helpers)) = (generation.after.get(func), &generation.helpers) else {
        return Ok(doc);
    };
    enter(ctx, |lua| {
        let req = match req.0 {
            Some(req) => req,
            None => request(helpers, ctx, func, lua.create_table_from(params.iter())?)?,
        };
        let shown = convert::doc_to_lua(lua, &doc)?;
        if !matches!(doc, Doc::Form(_) | Doc::Ok(_)) {
            // Nothing of other documents is read back.
            for hook in hooks {
                helpers.run.call::<()>((hook, &req, &shown))?;
            }
            return Ok(doc);
        }
        let res: Table = helpers.copy.call(&shown)?;
        for hook in hooks {
            helpers.run.call::<()>((hook, &req, &res))?;
        }
        let changes: Table = helpers.changes.call((res, shown, "ok"))?;
        convert::merge_changes(doc, &changes)
    })
}

/// `req`: `func`, `params` (a table of strings), `user` (`login`, `level`, `account`).
fn request(helpers: &Helpers, ctx: &Ctx, func: &str, params: Table) -> mlua::Result<Table> {
    let caller = ctx.caller;
    helpers.request.call((
        func,
        params,
        caller.login.as_str(),
        caller.level.as_str(),
        caller.account_id,
    ))
}

/// Runs a script func and turns what it returned into a document.
fn run_func(ctx: &Ctx, func: &Function, name: &str, params: &Params) -> FuncResult<Doc> {
    let helpers = ctx
        .scope()
        .generation
        .helpers
        .as_ref()
        .ok_or_else(|| FuncError::internal("no scripts are loaded"))?;
    enter(ctx, |lua| {
        let req = request(helpers, ctx, name, lua.create_table_from(params.iter())?)?;
        let ret: Value = helpers.run.call((func, req))?;
        convert::lua_to_doc(lua, ret)
    })
}

/// Runs a scheduled job (as the system, in its own transaction).
pub fn run_job(ctx: &Ctx, job: &Job) -> FuncResult<()> {
    let helpers = ctx
        .scope()
        .generation
        .helpers
        .as_ref()
        .ok_or_else(|| FuncError::internal("no scripts are loaded"))?;
    enter(ctx, |_| helpers.run.call::<()>(&job.func))
}

/// A script func's declaration: the Lua function behind a plain action handler.
fn script_func(name: &str, access: Access, mode: ActionMode, func: Function) -> FuncDecl {
    let fname = name.to_string();
    FuncDecl::action(
        name,
        &format!("script func {name}"),
        access,
        mode,
        move |ctx, params| run_func(ctx, &func, &fname, params),
    )
}

/// A Lua failure as a func error: a `billing.reject` or a failed `billing.call` keeps its own
/// type; anything else is a `script` error whose message names the file and line.
pub fn script_error(e: &mlua::Error) -> FuncError {
    if let Some(fe) = e.downcast_ref::<FuncError>() {
        return fe.clone();
    }
    let mut msg = innermost(e);
    if let Some(i) = msg.find("\nstack traceback:") {
        msg.truncate(i);
    }
    let mut msg = msg.trim().to_string();
    // An error raised by the `billing` API (a float passed as money, say) carries no position
    // of its own: take the script's line from the traceback.
    if script_location(&msg).is_none()
        && let Some(loc) = traceback_of(e).and_then(|t| t.lines().find_map(script_location))
    {
        msg = format!("{loc}: {msg}");
    }
    FuncError::new(ErrorType::Script, "script", "", msg)
}

fn traceback_of(e: &mlua::Error) -> Option<&str> {
    match e {
        mlua::Error::CallbackError { traceback, cause } => {
            traceback_of(cause).or(Some(traceback.as_str()))
        }
        mlua::Error::WithContext { cause, .. } => traceback_of(cause),
        _ => None,
    }
}

/// `file.lua:12` at the start of a message or traceback line.
fn script_location(line: &str) -> Option<&str> {
    let line = line.trim_start();
    let end = line.find(".lua:")? + 5;
    let digits = line[end..].bytes().take_while(u8::is_ascii_digit).count();
    (digits > 0 && !line[..end].contains(char::is_whitespace)).then(|| &line[..end + digits])
}

fn innermost(e: &mlua::Error) -> String {
    match e {
        mlua::Error::CallbackError { cause, .. } | mlua::Error::WithContext { cause, .. } => {
            innermost(cause)
        }
        mlua::Error::RuntimeError(m) => m.clone(),
        mlua::Error::MemoryError(m) => format!("memory limit reached: {m}"),
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// The script files of a folder, in the order they load.
pub fn script_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "lua"))
        .collect();
    files.sort();
    Ok(files)
}
