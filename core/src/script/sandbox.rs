//! Building a generation: a Lua state with only safe libraries, the `billing` API, the memory
//! limit and the instruction budget, then every script file in its own environment.

use super::money::{Money, to_decimal};
use super::{Budget, Generation, Job, ScriptConfig, script_error, script_files, script_func};
use crate::error::{ErrorType, FuncError};
use crate::func::{Access, ActionMode};
use mlua::chunk::ChunkMode;
use mlua::{Function, HookTriggers, Lua, LuaOptions, StdLib, Table, Value, VmState};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// VM instructions between two budget checks.
pub(super) const HOOK_EVERY: u32 = 1000;

/// Instructions `load` charges for each byte of source it compiles.
const LOAD_COST_PER_BYTE: i64 = 8;

#[derive(Default)]
struct Collected {
    before: HashMap<String, Vec<Function>>,
    after: HashMap<String, Vec<Function>>,
    funcs: Vec<(String, Access, ActionMode, Function)>,
    jobs: Vec<Job>,
}

fn lerr(e: mlua::Error) -> String {
    script_error(&e).msg
}

pub fn build(id: u64, config: &ScriptConfig, builtin: &[String]) -> Result<Generation, String> {
    let Some(dir) = config.dir.as_ref().filter(|d| d.exists()) else {
        return Ok(Generation::empty(id));
    };
    let files = script_files(dir)?;
    if files.is_empty() {
        return Ok(Generation::empty(id));
    }
    let budget = Arc::new(Budget::new(config));
    let State {
        lua,
        run,
        file_env: make_env,
    } = new_state(config, &budget).map_err(lerr)?;
    let collected = Arc::new(Mutex::new(Collected::default()));
    install_billing(&lua, &collected, builtin).map_err(lerr)?;

    // Before any script runs: the helpers keep the library functions they use as they are now.
    let (request, copy, changes, edits) = lua
        .load(super::HELPERS)
        .set_name("=billhost")
        .eval::<(Function, Function, Function, Function)>()
        .map_err(lerr)?;

    let mut names = Vec::new();
    for path in &files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let code = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
        budget.reset();
        budget.start(Instant::now());
        let loaded = file_env(&lua, &make_env, &name).and_then(|env| {
            let chunk = lua
                .load(&code)
                .set_name(format!("@{name}"))
                .set_mode(ChunkMode::Text)
                .set_environment(env)
                .into_function()?;
            run.call::<()>(chunk)
        });
        loaded.map_err(|e| {
            let msg = lerr(e);
            if msg.starts_with(&name) {
                msg
            } else {
                format!("{name}: {msg}")
            }
        })?;
        names.push(name);
    }

    let collected = std::mem::take(&mut *collected.lock().unwrap_or_else(|e| e.into_inner()));
    let funcs = collected
        .funcs
        .into_iter()
        .map(|(name, access, mode, f)| Arc::new(script_func(&name, access, mode, f)))
        .collect();
    Ok(Generation {
        id,
        files: names,
        lua: Some(Mutex::new(lua)),
        helpers: Some(super::Helpers {
            run,
            request,
            copy,
            changes,
            edits,
        }),
        before: collected.before,
        after: collected.after,
        funcs,
        jobs: collected.jobs,
        budget,
    })
}

/// A state for the REPL: the libraries, limits and `billing` API of a generation, where the
/// functions that register hooks, funcs and jobs are refused (they belong in script files).
/// Also answers the state's `run` (see [`super::Helpers`]).
pub(super) fn console_state(
    config: &ScriptConfig,
    budget: &Arc<Budget>,
) -> mlua::Result<(Lua, Function)> {
    let State { lua, run, .. } = new_state(config, budget)?;
    install_billing(&lua, &Arc::new(Mutex::new(Collected::default())), &[])?;
    let billing: Table = lua.globals().raw_get("billing")?;
    for name in ["on", "func", "every"] {
        let refuse = lua.create_function(move |_, _: mlua::MultiValue| -> mlua::Result<()> {
            Err(mlua::Error::runtime(format!(
                "billing.{name} works in script files (the scripts folder), not in the REPL"
            )))
        })?;
        billing.raw_set(name, refuse)?;
    }
    Ok((lua, run))
}

/// A fresh state and the two functions of [`GUARDS`] that the host keeps.
struct State {
    lua: Lua,
    /// `run(f, ...)`: calls `f` and passes its error on as a readable message.
    run: Function,
    /// `file_env(name, print, log)`: a new file's environment.
    file_env: Function,
}

/// The environment of the script file `name`: its own globals, read-only views of the shared
/// libraries, and `print`/`billing.log` that name the file in the server log.
fn file_env(lua: &Lua, make: &Function, name: &str) -> mlua::Result<Table> {
    let file = name.to_string();
    let print = lua.create_function(move |lua, args: mlua::MultiValue| {
        let parts: Vec<String> = args.iter().map(|v| shown(lua, v)).collect();
        eprintln!("{}", log_line(&file, None, &parts.join("\t")));
        Ok(())
    })?;
    let file = name.to_string();
    let log = lua.create_function(move |lua, (level, msg): (Value, Value)| {
        let level = shown(lua, &level);
        eprintln!("{}", log_line(&file, Some(&level), &shown(lua, &msg)));
        Ok(())
    })?;
    make.call((name, print, log))
}

/// A value as `print` shows it: strings and numbers as text, anything else by its type.
fn shown(lua: &Lua, v: &Value) -> String {
    lua.coerce_string(v.clone())
        .ok()
        .flatten()
        .map(|s| s.to_string_lossy())
        .unwrap_or_else(|| v.type_name().to_string())
}

/// Bytes of one logged script message kept; the rest is cut.
const LOG_LINE_MAX: usize = 16 * 1024;

/// One server-log line for a script's message: prefixed by the file (and the level), control
/// characters and line separators escaped, so that no script can write a line of its own.
pub(super) fn log_line(file: &str, level: Option<&str>, msg: &str) -> String {
    let mut out = String::with_capacity(msg.len().min(LOG_LINE_MAX) + 32);
    out.push_str("[script ");
    escape_into(&mut out, file, usize::MAX);
    if let Some(level) = level {
        out.push(' ');
        escape_into(&mut out, level, 64);
    }
    out.push_str("] ");
    escape_into(&mut out, msg, LOG_LINE_MAX);
    out
}

/// `text` for a line of the server log: control characters and line separators escaped as
/// in a script's log line, so that text from outside (a login, a func name, a script's error)
/// never starts a line of its own.
pub fn log_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(LOG_LINE_MAX) + 16);
    escape_into(&mut out, text, LOG_LINE_MAX);
    out
}

fn escape_into(out: &mut String, text: &str, max: usize) {
    let start = out.len();
    for (i, c) in text.char_indices() {
        if out.len() - start >= max {
            out.push_str(&format!("... ({} more bytes)", text.len() - i));
            return;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
}

/// Lua run before any script, in the state's own globals: what scripts see in place of the
/// functions that could step outside the budget, and the host's `run` and `file_env`.
///
/// Outside the VM hook run: `__gc` finalizers (Lua switches hooks off for them), an `xpcall`
/// message handler (an error there is "error in error handling", retried by Lua itself), and
/// loops in C (`string.rep` of an empty string, `table.move` over a huge range, `table.insert`
/// and `table.remove` on a table whose `__len` lies). So `setmetatable` refuses any metatable
/// with a `__gc` field (whatever its value: Lua marks the object for finalization when the
/// field is present at `setmetatable` time), `xpcall` calls its handler as ordinary code after
/// the protected call returned, and the C loops are charged to the budget first.
const GUARDS: &str = r#"
local spent, charge, hook_every = ...
local G = _G
local raw_pcall, raw_xpcall, raw_resume = pcall, xpcall, coroutine.resume
local raw_setmetatable, getmetatable, rawget, next, type, error, select, tostring =
  setmetatable, getmetatable, rawget, next, type, error, select, tostring
local tointeger, format, concat = math.tointeger, string.format, table.concat
local pack, unpack = table.pack, table.unpack
local function guard(r)
  if not r[1] and spent() then error(r[2], 0) end
  return unpack(r, 1, r.n)
end
pcall = function(...) return guard(pack(raw_pcall(...))) end
coroutine.resume = function(...) return guard(pack(raw_resume(...))) end
-- The hook counts instructions per Lua thread, and a new coroutine starts counting from zero:
-- it runs up to one hook period before its first check, so a tree of short coroutines would
-- run without any. That period is charged when the coroutine is made.
local raw_create, raw_wrap, raw_close = coroutine.create, coroutine.wrap, coroutine.close
coroutine.create = function(f) charge(hook_every) return raw_create(f) end
coroutine.wrap = function(f) charge(hook_every) return raw_wrap(f) end
-- close runs the coroutine's pending __close handlers and catches their errors.
coroutine.close = function(co) return guard(pack(raw_close(co))) end
xpcall = function(f, handler, ...)
  if type(handler) ~= "function" then
    error(format("bad argument #2 to 'xpcall' (function expected, got %s)", type(handler)), 2)
  end
  local r = pack(raw_pcall(f, ...))
  if r[1] then return unpack(r, 1, r.n) end
  if spent() then error(r[2], 0) end
  -- The handler runs here, under the budget like any other code.
  return false, (handler(r[2]))
end
setmetatable = function(t, mt)
  if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
    error("setmetatable: __gc finalizers are not allowed in scripts (they run outside the limits)", 2)
  end
  return raw_setmetatable(t, mt)
end

local rep, move, insert, remove = string.rep, table.move, table.insert, table.remove
string.rep = function(s, n, sep)
  -- An empty string repeated n times is n turns of a C loop that builds nothing.
  if s == "" and (sep == nil or sep == "") and tointeger(n) then return "" end
  return rep(s, n, sep)
end
table.move = function(a1, f, e, t, a2)
  local from, to = tointeger(f), tointeger(e)
  if from and to and to >= from then charge((to + 0.0) - from) end
  return move(a1, f, e, t, a2)
end
-- Only a table with a metatable can claim a length its memory does not back.
table.insert = function(t, ...)
  if getmetatable(t) ~= nil then charge(#t + 0.0) end
  return insert(t, ...)
end
table.remove = function(t, ...)
  if getmetatable(t) ~= nil then charge(#t + 0.0) end
  return remove(t, ...)
end

-- C functions whose work grows with the size of their input or result run as one VM
-- instruction: each call is charged a unit per 16 bytes it reads or builds (as the pattern
-- functions are), before it starts where the size is known and else as it returns, so that
-- a loop of big calls meets its budget and time limit between two hooks.
local log = math.log
local function bytes(n) if n >= 16 then charge(n / 16) end end
local function built(r, ...)
  if type(r) == "string" then bytes(#r) end
  return r, ...
end
local function counted(...)
  bytes(select('#', ...))
  return ...
end
local function reading(f)
  return function(s, ...)
    if type(s) == "string" then bytes(#s) end
    return f(s, ...)
  end
end
local function building(f)
  return function(...) return built(f(...)) end
end
for _, name in next, { "upper", "lower", "reverse", "format", "char", "pack", "sub" } do
  string[name] = building(string[name])
end
local raw_byte = string.byte
string.byte = function(...) return counted(raw_byte(...)) end
local rep_checked = string.rep
string.rep = function(...) return built(rep_checked(...)) end
utf8.char = building(utf8.char)
for _, name in next, { "len", "codepoint", "offset" } do utf8[name] = reading(utf8[name]) end
tonumber = reading(tonumber)
table.concat = building(table.concat)
local raw_sort, raw_unpack = table.sort, table.unpack
table.sort = function(t, ...)
  -- #t as sort itself takes it (a __len may claim any length): about n log n comparisons.
  local n = #t
  if type(n) == "number" and n > 1 then charge(n * (log(n, 2) + 1)) end
  return raw_sort(t, ...)
end
table.unpack = function(t, i, j)
  return counted(raw_unpack(t, i, j))
end

-- Strings share one metatable, whose __index is the shared string library.
local string_meta = getmetatable("")
-- Arithmetic on strings converts them to numbers in C first.
for _, name in next, { "__add", "__sub", "__mul", "__div", "__mod", "__pow", "__unm", "__idiv" } do
  local f = string_meta[name]
  if f then
    string_meta[name] = function(a, b)
      if type(a) == "string" then bytes(#a) end
      if type(b) == "string" then bytes(#b) end
      return f(a, b)
    end
  end
end
string_meta.__metatable = false

-- An error object that is not a string, as a message: its __tostring, else its contents.
local function shown(v)
  local t = type(v)
  if t == "string" then return format("%q", v) end
  if t == "number" or t == "boolean" or t == "nil" then return tostring(v) end
  if t == "table" then return "{...}" end
  return t
end
local function dump(e)
  local parts, n = {}, 0
  for k, v in next, e do
    n = n + 1
    if n > 8 then parts[n] = "..." break end
    if type(k) == "string" and k:find("^[%a_][%w_]*$") then
      parts[n] = k .. "=" .. shown(v)
    else
      parts[n] = "[" .. shown(k) .. "]=" .. shown(v)
    end
  end
  return "{" .. concat(parts, ", ") .. "}"
end
local function describe(e)
  if type(e) == "table" then
    local mt = getmetatable(e)
    if mt ~= nil and (type(mt) ~= "table" or rawget(mt, "__tostring") ~= nil) then
      local ok, s = raw_pcall(tostring, e)
      if ok and type(s) == "string" then return s end
      if not ok and spent() then error(s, 0) end
    end
    return "error object: " .. dump(e)
  end
  return "error object: " .. shown(e)
end
local function finish(ok, ...)
  if ok then return ... end
  local e = ...
  local t = type(e)
  if t ~= "string" and t ~= "userdata" and t ~= "number" then e = describe(e) end
  error(e, 0)
end
local function run(f, ...)
  return finish(raw_pcall(f, ...))
end

-- A script file's environment: its own globals (assignments, rawset(_G, ...) and load without
-- an environment stay in the file) and, for each shared library, a view of its own that
-- refuses writes, so that nothing one file does reaches what another sees.
local views = raw_setmetatable({}, { __mode = "k" })
local raw_rawset = rawset
rawset = function(t, k, v)
  if views[t] then error("rawset: " .. views[t] .. " is read-only: it is shared by every script", 2) end
  return raw_rawset(t, k, v)
end
local function readonly(lib, name, index)
  local view = {}
  views[view] = name
  raw_setmetatable(view, {
    __index = index or lib,
    __newindex = function() error(name .. " is read-only: it is shared by every script", 2) end,
    __metatable = false,
    __pairs = function() return function(_, k) return next(lib, k) end, view, nil end,
  })
  return view
end
local load = load
local function file_env(name, print, log)
  local env = {}
  for k, v in next, G do
    if type(v) == "table" then env[k] = readonly(v, k) else env[k] = v end
  end
  -- billing.call changes from call to call: the view reads it from the shared table.
  local own = {}
  for k, v in next, G.billing do own[k] = v end
  own.call, own.log = nil, log
  env.billing = readonly(G.billing, "billing", raw_setmetatable(own, { __index = G.billing }))
  env._G = env
  env.print = print
  env.load = function(chunk, chunkname, mode, e)
    if e == nil then e = env end
    return load(chunk, chunkname, mode, e)
  end
  return env
end
return run, file_env
"#;

fn new_state(config: &ScriptConfig, budget: &Arc<Budget>) -> mlua::Result<State> {
    let libs = StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::UTF8 | StdLib::COROUTINE;
    let lua = Lua::new_with(libs, LuaOptions::default())?;
    let g = lua.globals();
    for name in ["dofile", "loadfile", "require", "collectgarbage", "load"] {
        g.raw_set(name, Value::Nil)?;
    }
    // string.dump would hand out bytecode; strings reach it through their metatable too.
    let string: Table = g.raw_get("string")?;
    string.raw_set("dump", Value::Nil)?;
    super::pattern::install(&lua, &string, budget)?;
    let load_budget = budget.clone();
    g.raw_set(
        "load",
        lua.create_function(
            move |lua, (chunk, name, _mode, env): (Value, Option<String>, Value, Option<Table>)| {
                let Value::String(code) = chunk else {
                    return Ok((
                        Value::Nil,
                        Value::String(lua.create_string("load takes source text only")?),
                    ));
                };
                let code = code.as_bytes().to_vec();
                // The compiler runs outside the hook: its work is charged by the byte, at what
                // a byte costs it against a VM instruction (measured: 70 ns against 10 ns).
                let bytes = i64::try_from(code.len()).unwrap_or(i64::MAX);
                load_budget.charge(bytes.saturating_mul(LOAD_COST_PER_BYTE))?;
                // Unnamed, mlua would name the chunk after this Rust source line.
                let mut c = lua.load(code).set_name("=(load)").set_mode(ChunkMode::Text);
                if let Some(n) = name {
                    c = c.set_name(n);
                }
                if let Some(e) = env {
                    c = c.set_environment(e);
                }
                match c.into_function() {
                    Ok(f) => Ok((Value::Function(f), Value::Nil)),
                    Err(e) => Ok((Value::Nil, Value::String(lua.create_string(e.to_string())?))),
                }
            },
        )?,
    )?;
    let os = lua.create_table()?;
    os.raw_set(
        "time",
        lua.create_function(|_, ()| Ok(crate::clock::unix_now()))?,
    )?;
    os.raw_set(
        "date",
        lua.create_function(|_, ()| Ok(crate::clock::now()))?,
    )?;
    let started = std::time::Instant::now();
    os.raw_set(
        "clock",
        lua.create_function(move |_, ()| Ok(started.elapsed().as_secs_f64()))?,
    )?;
    g.raw_set("os", os)?;
    g.raw_set(
        "print",
        lua.create_function(|lua, args: mlua::MultiValue| {
            let parts: Vec<String> = args.iter().map(|v| shown(lua, v)).collect();
            eprintln!("{}", log_line("console", None, &parts.join("\t")));
            Ok(())
        })?,
    )?;
    // Once the budget is spent, pcall, xpcall and coroutine.resume hand the error on instead
    // of catching it, so a script cannot keep itself alive by catching the stop.
    let spent_budget = budget.clone();
    let spent = lua.create_function(move |_, ()| Ok(spent_budget.spent()))?;
    let charge_budget = budget.clone();
    let charge = lua.create_function(move |_, n: f64| {
        // Saturating: a count beyond i64 is as good as spending the whole budget.
        charge_budget.charge(n.clamp(0.0, i64::MAX as f64) as i64)
    })?;
    let (run, file_env) = lua
        .load(GUARDS)
        .set_name("=billhost")
        .call::<(Function, Function)>((spent, charge, f64::from(HOOK_EVERY)))?;
    lua.set_memory_limit(config.memory_limit)?;
    let budget = budget.clone();
    lua.set_global_hook(
        HookTriggers::new().every_nth_instruction(HOOK_EVERY),
        move |_, _| {
            budget.charge(i64::from(HOOK_EVERY))?;
            Ok(VmState::Continue)
        },
    )?;
    Ok(State { lua, run, file_env })
}

fn access_of(s: &str) -> mlua::Result<Access> {
    match s {
        "admin" => Ok(Access::ADMIN),
        "user" => Ok(Access::ADMIN_USER),
        "public" => Ok(Access::PUBLIC),
        other => Err(mlua::Error::runtime(format!(
            "access must be admin, user or public, not '{other}'"
        ))),
    }
}

fn install_billing(
    lua: &Lua,
    collected: &Arc<Mutex<Collected>>,
    builtin: &[String],
) -> mlua::Result<()> {
    let billing = lua.create_table()?;
    let take = |c: &Arc<Mutex<Collected>>| c.clone();

    let c = take(collected);
    billing.raw_set(
        "on",
        lua.create_function(move |_, (func, phase, f): (String, String, Function)| {
            let mut c = c.lock().unwrap_or_else(|e| e.into_inner());
            let map = match phase.as_str() {
                "before" => &mut c.before,
                "after" => &mut c.after,
                other => {
                    return Err(mlua::Error::runtime(format!(
                        "billing.on: phase is before or after, not '{other}'"
                    )));
                }
            };
            map.entry(func).or_default().push(f);
            Ok(())
        })?,
    )?;

    let c = take(collected);
    let builtin: Vec<String> = builtin.to_vec();
    billing.raw_set(
        "func",
        lua.create_function(
            move |_, (name, opts, f): (String, Option<Table>, Function)| {
                if name.is_empty()
                    || name
                        .chars()
                        .any(|ch| !(ch.is_ascii_alphanumeric() || "._-".contains(ch)))
                {
                    return Err(mlua::Error::runtime(format!(
                        "billing.func: '{name}' is not a func name"
                    )));
                }
                if builtin.contains(&name) {
                    return Err(mlua::Error::runtime(format!(
                        "billing.func: '{name}' is a built-in func; hook it with billing.on"
                    )));
                }
                let (access, kind) = match &opts {
                    Some(o) => (
                        o.get::<Option<String>>("access")?,
                        o.get::<Option<String>>("kind")?,
                    ),
                    None => (None, None),
                };
                let access = access_of(access.as_deref().unwrap_or("admin"))?;
                let mode = match kind.as_deref().unwrap_or("action") {
                    "action" => ActionMode::Write,
                    "list" | "view" | "report" => ActionMode::Read,
                    other => {
                        return Err(mlua::Error::runtime(format!(
                            "billing.func: kind is action, list or view, not '{other}'"
                        )));
                    }
                };
                let mut c = c.lock().unwrap_or_else(|e| e.into_inner());
                if c.funcs.iter().any(|(n, ..)| *n == name) {
                    return Err(mlua::Error::runtime(format!(
                        "billing.func: '{name}' is declared twice"
                    )));
                }
                c.funcs.push((name, access, mode, f));
                Ok(())
            },
        )?,
    )?;

    let c = take(collected);
    billing.raw_set(
        "every",
        lua.create_function(move |_, (secs, name, f): (i64, String, Function)| {
            if secs < 1 {
                return Err(mlua::Error::runtime(
                    "billing.every: the period is at least 1 second",
                ));
            }
            c.lock().unwrap_or_else(|e| e.into_inner()).jobs.push(Job {
                name,
                every_secs: secs as u64,
                func: f,
            });
            Ok(())
        })?,
    )?;

    billing.raw_set(
        "reject",
        lua.create_function(
            |_, (kind, object, msg): (String, String, String)| -> mlua::Result<()> {
                let kind = ErrorType::parse(&kind).unwrap_or(ErrorType::Value);
                Err(mlua::Error::external(FuncError::new(kind, object, "", msg)))
            },
        )?,
    )?;
    billing.raw_set(
        "money",
        lua.create_function(|_, v: Value| Ok(Money(to_decimal(&v)?)))?,
    )?;
    billing.raw_set(
        "log",
        lua.create_function(|lua, (level, msg): (Value, Value)| {
            let level = shown(lua, &level);
            eprintln!("{}", log_line("console", Some(&level), &shown(lua, &msg)));
            Ok(())
        })?,
    )?;
    billing.raw_set(
        "call",
        lua.create_function(|_, _: mlua::MultiValue| -> mlua::Result<()> {
            Err(mlua::Error::runtime(
                "billing.call works while a func or job runs, not while scripts load",
            ))
        })?,
    )?;
    lua.globals().raw_set("billing", billing)?;
    Ok(())
}
