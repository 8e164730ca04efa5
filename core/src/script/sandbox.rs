//! Building a generation: a Lua state with only safe libraries, the `billing` API, the memory
//! limit and the instruction budget, then every script file in its own environment.

use super::money::{Money, to_decimal};
use super::{Budget, Generation, Job, ScriptConfig, script_error, script_files, script_func};
use crate::error::{ErrorType, FuncError};
use crate::func::{Access, ActionMode};
use mlua::chunk::ChunkMode;
use mlua::{Function, HookTriggers, Lua, LuaOptions, StdLib, Table, Value, VmState};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

/// VM instructions between two budget checks.
const HOOK_EVERY: u32 = 1000;

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
    let budget = Arc::new(Budget {
        remaining: AtomicI64::new(config.instruction_budget),
        limit: config.instruction_budget,
    });
    let lua = new_state(config, &budget).map_err(lerr)?;
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
        let env = lua.create_table().map_err(lerr)?;
        let meta = lua.create_table().map_err(lerr)?;
        meta.raw_set("__index", lua.globals()).map_err(lerr)?;
        env.set_metatable(Some(meta)).map_err(lerr)?;
        lua.load(&code)
            .set_name(format!("@{name}"))
            .set_mode(ChunkMode::Text)
            .set_environment(env)
            .exec()
            .map_err(|e| {
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
pub(super) fn console_state(config: &ScriptConfig, budget: &Arc<Budget>) -> mlua::Result<Lua> {
    let lua = new_state(config, budget)?;
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
    Ok(lua)
}

fn new_state(config: &ScriptConfig, budget: &Arc<Budget>) -> mlua::Result<Lua> {
    let libs = StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::UTF8 | StdLib::COROUTINE;
    let lua = Lua::new_with(libs, LuaOptions::default())?;
    let g = lua.globals();
    for name in ["dofile", "loadfile", "require", "collectgarbage", "load"] {
        g.raw_set(name, Value::Nil)?;
    }
    // string.dump would hand out bytecode; strings reach it through their metatable too.
    let string: Table = g.raw_get("string")?;
    string.raw_set("dump", Value::Nil)?;
    g.raw_set(
        "load",
        lua.create_function(
            |lua, (chunk, name, _mode, env): (Value, Option<String>, Value, Option<Table>)| {
                let Value::String(code) = chunk else {
                    return Ok((
                        Value::Nil,
                        Value::String(lua.create_string("load takes source text only")?),
                    ));
                };
                let mut c = lua.load(code.as_bytes().to_vec()).set_mode(ChunkMode::Text);
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
            let parts: Vec<String> = args
                .iter()
                .map(|v| {
                    lua.coerce_string(v.clone())
                        .ok()
                        .flatten()
                        .map(|s| s.to_string_lossy())
                        .unwrap_or_else(|| v.type_name().to_string())
                })
                .collect();
            eprintln!("[script] {}", parts.join("\t"));
            Ok(())
        })?,
    )?;
    // Once the budget is spent, pcall, xpcall and coroutine.resume hand the error on instead
    // of catching it, so a script cannot keep itself alive by catching the stop.
    let spent_budget = budget.clone();
    let spent =
        lua.create_function(move |_, ()| Ok(spent_budget.remaining.load(Ordering::SeqCst) <= 0))?;
    lua.load(
        r#"
        local spent = ...
        local raw_pcall, raw_xpcall, raw_resume = pcall, xpcall, coroutine.resume
        local pack, unpack = table.pack, table.unpack
        local function guard(r)
          if not r[1] and spent() then error(r[2], 0) end
          return unpack(r, 1, r.n)
        end
        pcall = function(...) return guard(pack(raw_pcall(...))) end
        xpcall = function(...) return guard(pack(raw_xpcall(...))) end
        coroutine.resume = function(...) return guard(pack(raw_resume(...))) end
        "#,
    )
    .set_name("=billhost")
    .call::<()>(spent)?;
    lua.set_memory_limit(config.memory_limit)?;
    let budget = budget.clone();
    lua.set_global_hook(
        HookTriggers::new().every_nth_instruction(HOOK_EVERY),
        move |_, _| {
            let left = budget
                .remaining
                .fetch_sub(HOOK_EVERY as i64, Ordering::SeqCst)
                - HOOK_EVERY as i64;
            if left <= 0 {
                // Sticky: every later check fails too, so pcall cannot swallow the stop.
                budget.remaining.store(i64::MIN / 2, Ordering::SeqCst);
                return Err(mlua::Error::runtime(format!(
                    "instruction budget of {} exhausted",
                    budget.limit
                )));
            }
            Ok(VmState::Continue)
        },
    )?;
    Ok(lua)
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
        lua.create_function(|_, (level, msg): (String, String)| {
            eprintln!("[script {level}] {msg}");
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
