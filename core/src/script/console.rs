//! The REPL's Lua: one long-lived sandboxed state with the same libraries, limits and `billing`
//! API as a generation's, fed a chunk at a time. `billing.call` is bound, for each evaluation,
//! to whatever the REPL makes a top-level func call with, so that every call is its own engine
//! call (its own transaction), not a nested one.

use super::convert;
use super::money::Money;
use super::{Budget, ScriptConfig, script_error};
use crate::doc::Doc;
use crate::error::FuncError;
use crate::params::Params;
use mlua::chunk::ChunkMode;
use mlua::{Function, Lua, MultiValue, Table, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// What an evaluation answers: plain values as text, documents (lists, results of
/// `billing.call`) for the REPL to render.
#[derive(Debug, Clone, PartialEq)]
pub enum Shown {
    Text(String),
    Doc(Doc),
}

pub struct Console {
    lua: Lua,
    /// Runs a chunk so that an error raised with a table arrives as a message.
    run: Function,
    /// The environment of every chunk typed: globals defined in one chunk are seen by the next.
    env: Table,
    budget: Arc<Budget>,
}

/// The budget of the process's first console, for [`interrupt`].
static RUNNING: OnceLock<Arc<Budget>> = OnceLock::new();
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Stops the chunk the console is running at its next budget check (within a thousand VM
/// instructions; a func call in progress finishes first). Only atomic loads and stores, so a
/// SIGINT handler may call it.
pub fn interrupt() {
    INTERRUPTED.store(true, Ordering::SeqCst);
    if let Some(budget) = RUNNING.get() {
        budget.remaining.store(0, Ordering::SeqCst);
    }
}

/// How deep nested tables are shown.
const SHOW_DEPTH: usize = 3;

impl Console {
    pub fn new(config: &ScriptConfig) -> Result<Console, String> {
        let budget = Arc::new(Budget::new(config));
        let lerr = |e: mlua::Error| script_error(&e).msg;
        let (lua, run) = super::sandbox::console_state(config, &budget).map_err(lerr)?;
        // The REPL's print goes to the terminal, not to the server log.
        let print = lua
            .create_function(|lua, args: MultiValue| {
                let parts: Vec<String> = args.iter().map(|v| plain(lua, v)).collect();
                println!("{}", parts.join("\t"));
                Ok(())
            })
            .map_err(lerr)?;
        lua.globals().raw_set("print", print).map_err(lerr)?;
        let env = lua.create_table().map_err(lerr)?;
        let meta = lua.create_table().map_err(lerr)?;
        meta.raw_set("__index", lua.globals()).map_err(lerr)?;
        env.set_metatable(Some(meta)).map_err(lerr)?;
        let _ = RUNNING.set(budget.clone());
        Ok(Console {
            lua,
            run,
            env,
            budget,
        })
    }

    /// The members of the `billing` table, for completion.
    pub fn billing_members(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .lua
            .globals()
            .raw_get::<Table>("billing")
            .map(|t| {
                t.pairs::<String, Value>()
                    .filter_map(|p| p.ok().map(|(k, _)| k))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    fn compile(&self, code: &str) -> mlua::Result<Function> {
        self.lua
            .load(code)
            .set_name("=stdin")
            .set_mode(ChunkMode::Text)
            .set_environment(self.env.clone())
            .into_function()
    }

    /// Whether `code` is the start of a chunk that goes on (an open `function`, `do`, bracket
    /// or string), so that the REPL reads another line instead of reporting an error.
    pub fn incomplete(&self, code: &str) -> bool {
        let open = |r: mlua::Result<Function>| match r {
            Ok(_) => Some(false),
            Err(mlua::Error::SyntaxError {
                incomplete_input, ..
            }) => incomplete_input.then_some(true),
            Err(_) => None,
        };
        match (
            open(self.compile(&format!("return {code}"))),
            open(self.compile(code)),
        ) {
            (Some(false), _) | (_, Some(false)) => false,
            (Some(true), _) | (_, Some(true)) => true,
            (None, None) => false,
        }
    }

    /// Runs a chunk: an expression shows its values, a statement runs. `call` makes the
    /// top-level func calls of `billing.call`.
    pub fn eval(
        &self,
        code: &str,
        call: &mut dyn FnMut(&str, Params) -> Doc,
    ) -> Result<Vec<Shown>, FuncError> {
        let chunk = self
            .compile(&format!("return {code}"))
            .or_else(|_| self.compile(code))
            .map_err(|e| script_error(&e))?;
        INTERRUPTED.store(false, Ordering::SeqCst);
        self.budget.reset();
        let billing: Table = self
            .lua
            .globals()
            .raw_get("billing")
            .map_err(|e| script_error(&e))?;
        let previous: Value = billing.raw_get("call").map_err(|e| script_error(&e))?;
        let result = self.lua.scope(|scope| {
            let bound =
                scope.create_function_mut(|lua, (func, params): (String, Option<Table>)| {
                    let params = convert::table_to_params(params)?;
                    convert::doc_to_lua(lua, &call(&func, params))
                })?;
            billing.raw_set("call", bound)?;
            let values: MultiValue = self.run.call(&chunk)?;
            values.into_iter().map(|v| self.show(v)).collect()
        });
        let restored = billing.raw_set("call", previous);
        let shown = result.map_err(|e| {
            if INTERRUPTED.swap(false, Ordering::SeqCst) {
                FuncError::new(crate::error::ErrorType::Script, "script", "", "interrupted")
            } else {
                script_error(&e)
            }
        })?;
        restored.map_err(|e| script_error(&e))?;
        Ok(shown)
    }

    fn show(&self, v: Value) -> mlua::Result<Shown> {
        if let Value::Table(t) = &v
            && is_list(t)
        {
            return convert::lua_to_doc(&self.lua, v).map(Shown::Doc);
        }
        Ok(Shown::Text(match &v {
            Value::String(s) => s.to_string_lossy(),
            _ => shown(&self.lua, &v, 0),
        }))
    }
}

/// A table shaped like a list document: `elem` is a sequence of tables.
fn is_list(t: &Table) -> bool {
    match t.raw_get::<Value>("elem") {
        Ok(Value::Table(elems)) => {
            elems.raw_len() > 0
                && elems
                    .sequence_values::<Value>()
                    .all(|e| matches!(e, Ok(Value::Table(_))))
        }
        _ => false,
    }
}

/// A value as `tostring` shows it (money as its exact decimal).
fn plain(lua: &Lua, v: &Value) -> String {
    if let Value::UserData(ud) = v
        && let Ok(m) = ud.borrow::<Money>()
    {
        return m.0.to_string();
    }
    lua.globals()
        .raw_get::<Function>("tostring")
        .and_then(|f| f.call::<String>(v.clone()))
        .unwrap_or_else(|_| v.type_name().to_string())
}

/// A value as Lua source would write it; tables with their sequence first, then sorted keys.
fn shown(lua: &Lua, v: &Value, depth: usize) -> String {
    match v {
        Value::String(s) => format!("{:?}", s.to_string_lossy()),
        Value::Table(t) if depth < SHOW_DEPTH => {
            let n = t.raw_len();
            let mut items: Vec<String> = (1..=n)
                .map(|i| shown(lua, &t.raw_get(i).unwrap_or(Value::Nil), depth + 1))
                .collect();
            let mut keyed: Vec<(String, String)> = t
                .pairs::<Value, Value>()
                .filter_map(Result::ok)
                .filter(|(k, _)| !matches!(k, Value::Integer(i) if *i >= 1 && (*i as usize) <= n))
                .map(|(k, val)| {
                    let key = match &k {
                        Value::String(s) => {
                            let s = s.to_string_lossy();
                            if is_name(&s) { s } else { format!("[{s:?}]") }
                        }
                        other => format!("[{}]", shown(lua, other, SHOW_DEPTH)),
                    };
                    (key, shown(lua, &val, depth + 1))
                })
                .collect();
            keyed.sort();
            items.extend(keyed.into_iter().map(|(k, v)| format!("{k} = {v}")));
            if items.is_empty() {
                "{}".into()
            } else {
                format!("{{ {} }}", items.join(", "))
            }
        }
        _ => plain(lua, v),
    }
}

fn is_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console() -> Console {
        Console::new(&ScriptConfig::default()).expect("console")
    }

    fn eval(c: &Console, code: &str) -> Result<Vec<Shown>, FuncError> {
        c.eval(code, &mut |_, _| Doc::ok())
    }

    fn text(s: &str) -> Vec<Shown> {
        vec![Shown::Text(s.into())]
    }

    #[test]
    fn expressions_statements_and_globals() {
        let c = console();
        assert_eq!(
            eval(&c, r#"billing.money("0.1") + billing.money("0.2")"#).unwrap(),
            text("0.3")
        );
        assert_eq!(eval(&c, "x = 40").unwrap(), vec![]);
        assert_eq!(eval(&c, "x + 2").unwrap(), text("42"));
        assert_eq!(
            eval(&c, r#"{1, "a", k = true}"#).unwrap(),
            text(r#"{ 1, "a", k = true }"#)
        );
        assert_eq!(eval(&c, "'hi'").unwrap(), text("hi"));
    }

    #[test]
    fn incomplete_chunks_continue() {
        let c = console();
        assert!(c.incomplete("function f(x)"));
        assert!(c.incomplete("function f(x)\n  return x * 2"));
        assert!(!c.incomplete("function f(x)\n  return x * 2\nend"));
        assert!(c.incomplete("t = {"));
        assert!(!c.incomplete("1 +* 2"));
        assert!(!c.incomplete("x"));
    }

    #[test]
    fn calls_go_through_the_given_function() {
        let c = console();
        let mut seen = Vec::new();
        let shown = c
            .eval(
                r#"billing.call("account.edit", {elid = 3}).id"#,
                &mut |f, p| {
                    seen.push(format!("{f} {:?}", p.get("elid")));
                    Doc::created(7)
                },
            )
            .unwrap();
        assert_eq!(shown, text("7"));
        assert_eq!(seen, ["account.edit Some(\"3\")"]);
    }

    #[test]
    fn registering_is_for_script_files_and_the_sandbox_holds() {
        let c = console();
        let e = eval(&c, r#"billing.on("x", "before", function() end)"#).unwrap_err();
        assert!(e.msg.contains("not in the REPL"), "{e:?}");
        assert!(eval(&c, "io.open('/etc/passwd')").is_err());
        let e = eval(&c, "while true do end").unwrap_err();
        assert!(e.msg.contains("instruction budget"), "{e:?}");
        // The budget starts afresh with the next chunk.
        assert_eq!(eval(&c, "1").unwrap(), text("1"));
        let e = eval(&c, "error({code = 1})").unwrap_err();
        assert!(e.msg.contains("error object: {code=1}"), "{e:?}");
        let e = eval(&c, "setmetatable({}, {__gc = function() end})").unwrap_err();
        assert!(e.msg.contains("__gc"), "{e:?}");
    }
}
