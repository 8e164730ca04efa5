//! `billhost repl`: an interactive session on the engine, as the local admin. A line that starts
//! with a func name followed by `name=value` pairs is a func call; anything else is Lua with
//! the `billing` API; lines starting with `:` are the REPL's commands. It can run against the
//! database a server is using: between commands it holds no transaction, and `:dry` works on a
//! private copy (see [`dry`]).

mod complete;
pub mod dry;

use crate::auth::{self, Caller};
use crate::doc::Doc;
use crate::engine::Engine;
use crate::func::{FuncDecl, Handler};
use crate::params::Params;
use crate::script::Console;
use crate::script::console::Shown;
use crate::wire::{self, Format, Meta};
use complete::{FuncNames, ReplHelper};
use dry::Dry;
use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::{CompletionType, Config, Editor};
use std::io::Write;
use std::path::PathBuf;

/// The history file used when none is given: `~/.billhost_history`, or next to the database
/// when there is no home directory.
pub fn default_history(db: &std::path::Path) -> PathBuf {
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(".billhost_history"),
        None => {
            let mut p = db.as_os_str().to_owned();
            p.push(".history");
            PathBuf::from(p)
        }
    }
}

/// Parameters the protocol knows for every func, offered by completion.
const COMMON_PARAMS: &[&str] = &["elid", "plid", "sok", "su", "out"];
const LIST_PARAMS: &[&str] = &["filter", "p_num", "p_cnt", "p_sort", "p_order"];

const HELP: &str = "\
A line is a func call, Lua, or a command.
  FUNC name=value ...    call a func (values with spaces in quotes: name=\"a b\")
  any other line         Lua 5.4 with the billing API (billing.call, billing.money, billing.log);
                         an expression shows its value; an unfinished chunk continues on ..>
Commands:
  :help                  this text
  :funcs                 every func with its access level and kind
  :scripts               the live scripts generation, its files, funcs, jobs, last reload error
  :reload                reload the scripts folder now
  :out FMT               show documents as xml, json, sjson or text; :out table (default)
  :as LOGIN              act as that user; :as alone returns to the local admin
  :dry                   work on a private copy of the database from now on
  :commit                apply the changes made in dry mode to the live database, in one go
  :rollback              throw the copy and its changes away
  :quit                  leave (Ctrl-D too); a dry copy is thrown away
Tab completes func names, parameter names after a func, billing. members and commands.";

struct Session {
    live: Engine,
    dry: Option<Dry>,
    /// `:as LOGIN`; `None` is the local admin.
    login: Option<String>,
    caller: Caller,
    /// `:out FMT`; `None` shows tables.
    out: Option<Format>,
}

enum Flow {
    Continue,
    Quit,
}

impl Session {
    fn engine(&self) -> &Engine {
        match &self.dry {
            Some(d) => d.engine(),
            None => &self.live,
        }
    }

    fn is_func(&self, name: &str) -> bool {
        let engine = self.engine();
        engine.registry().get(name).is_some() || engine.scripts().current().func(name).is_some()
    }

    fn prompt(&self) -> String {
        let mut tags = Vec::new();
        if self.dry.is_some() {
            tags.push("dry".to_string());
        }
        if let Some(login) = &self.login {
            tags.push(format!("as {login}"));
        }
        if tags.is_empty() {
            "billhost> ".into()
        } else {
            format!("billhost[{}]> ", tags.join(" "))
        }
    }

    /// One top-level func call, recorded when it changed the dry copy.
    fn call(&mut self, func: &str, params: Params) -> Doc {
        let doc = self.engine().call(&self.caller, func, params.clone());
        if let Some(dry) = &mut self.dry
            && !doc.is_error()
            && dry.engine().writes(func, &params)
        {
            dry.record(self.login.as_deref(), func, &params, &doc);
        }
        doc
    }

    fn show(&self, func: &str, doc: &Doc, out: Option<Format>) {
        let text = match out.or(self.out) {
            None => wire::render_console(doc),
            Some(format) => wire::render(doc, format, Meta { func, lang: "en" }),
        };
        print!("{text}");
        let _ = std::io::stdout().flush();
    }

    fn completion(&self, console: &Console) -> ReplHelper {
        ReplHelper {
            funcs: self.engine().funcs().iter().map(|d| names(d)).collect(),
            billing: console.billing_members(),
        }
    }

    fn command(&mut self, line: &str) -> Flow {
        let (cmd, arg) = match line.split_once(char::is_whitespace) {
            Some((c, a)) => (c, a.trim()),
            None => (line, ""),
        };
        match cmd {
            "help" | "h" | "?" => println!("{HELP}"),
            "quit" | "q" | "exit" => return Flow::Quit,
            "funcs" => {
                let rows: Vec<Vec<String>> = self
                    .engine()
                    .funcs()
                    .iter()
                    .map(|d| {
                        vec![
                            d.name.clone(),
                            d.access.to_string(),
                            d.handler.kind().to_string(),
                            d.title.clone(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    wire::table(&["func", "access", "kind", "title"], &rows)
                );
            }
            "scripts" => {
                let s = self.live.scripts().status();
                let folder = self.live.config().scripts.dir.as_ref();
                println!("generation: {}", s.generation);
                println!(
                    "folder: {}",
                    folder.map(|d| d.display().to_string()).unwrap_or_default()
                );
                println!("files: {}", s.files.join(", "));
                println!("funcs: {}", s.funcs.join(", "));
                println!("jobs: {}", s.jobs.join(", "));
                println!(
                    "last reload error: {}",
                    s.last_error.as_deref().unwrap_or("none")
                );
            }
            "reload" => {
                if let Some(dry) = &self.dry {
                    let _ = dry.engine().scripts().reload();
                }
                match self.live.scripts().reload() {
                    Ok(id) => println!("scripts generation {id} is live"),
                    Err(e) => println!(
                        "not reloaded, generation {} stays live: {e}",
                        self.live.scripts().status().generation
                    ),
                }
            }
            "out" => match arg {
                "" | "table" => {
                    self.out = None;
                    println!("documents show as tables and fields");
                }
                f => match Format::parse(f) {
                    Ok(format) => {
                        self.out = Some(format);
                        println!("documents show as {f}");
                    }
                    Err(_) => println!("formats: table, xml, json, sjson, text"),
                },
            },
            "as" => self.act_as(arg),
            "dry" => self.start_dry(),
            "commit" => self.commit(),
            "rollback" => match self.dry.take() {
                Some(dry) => {
                    println!(
                        "dry mode ended; {} recorded change(s) discarded, the live database is as it was",
                        dry.calls().len()
                    );
                    self.recheck_identity();
                }
                None => println!("not in dry mode"),
            },
            other => println!("unknown command :{other}; :help lists them"),
        }
        Flow::Continue
    }

    fn act_as(&mut self, login: &str) {
        if login.is_empty() {
            self.login = None;
            self.caller = Caller::superuser();
            println!("acting as the local admin");
            return;
        }
        match self
            .engine()
            .read(|c| auth::switch_user(c, &Caller::superuser(), login))
        {
            Ok(caller) => {
                println!("acting as {login} ({})", caller.level.as_str());
                self.caller = dry::local(caller);
                self.login = Some(login.to_string());
            }
            Err(e) => print!("{}", wire::render_console(&Doc::Error(e))),
        }
    }

    /// After dry mode, `:as` must name a user of the live database (it may have been created
    /// on the copy only); otherwise the REPL returns to the local admin.
    fn recheck_identity(&mut self) {
        let Some(login) = self.login.clone() else {
            return;
        };
        match self
            .live
            .read(|c| auth::switch_user(c, &Caller::superuser(), &login))
        {
            Ok(caller) => self.caller = dry::local(caller),
            Err(_) => {
                println!("{login} is not a user of the live database; acting as the local admin");
                self.login = None;
                self.caller = Caller::superuser();
            }
        }
    }

    fn start_dry(&mut self) {
        if let Some(dry) = &self.dry {
            println!(
                "already in dry mode ({} recorded change(s)); :commit or :rollback",
                dry.calls().len()
            );
            return;
        }
        match Dry::start(&self.live) {
            Ok(dry) => {
                println!(
                    "dry mode: working on a copy ({}); :commit applies the changes, :rollback drops them",
                    dry.path().display()
                );
                self.dry = Some(dry);
            }
            Err(e) => println!("dry mode not started: {e}"),
        }
    }

    fn commit(&mut self) {
        let Some(dry) = &self.dry else {
            println!("not in dry mode");
            return;
        };
        match dry.commit(&self.live) {
            Ok(n) => {
                println!("committed: {n} change(s) applied to the live database; dry mode ended");
                self.dry = None;
                self.recheck_identity();
            }
            Err(e) => {
                println!("nothing applied, still in dry mode (:rollback drops the changes): {e}")
            }
        }
    }
}

/// The names completion offers after a func.
fn names(d: &FuncDecl) -> FuncNames {
    let mut params: Vec<String> = d.params.iter().map(|p| p.name.clone()).collect();
    params.extend(COMMON_PARAMS.iter().map(|s| s.to_string()));
    if let Handler::List(spec) = &d.handler {
        params.extend(spec.filters.iter().map(|f| f.name.to_string()));
        params.extend(spec.columns.iter().map(|c| c.name.to_string()));
        params.extend(LIST_PARAMS.iter().map(|s| s.to_string()));
    }
    params.sort();
    params.dedup();
    FuncNames {
        name: d.name.clone(),
        params,
    }
}

/// A func call line: a known func name, then nothing or `name=value` pairs (a value may be
/// quoted with `"` or `'`). Anything else is not a call (and so is Lua).
pub fn parse_call(line: &str, is_func: impl Fn(&str) -> bool) -> Option<(String, Params)> {
    let words = split_words(line)?;
    let (func, rest) = words.split_first()?;
    if !is_func(func) {
        return None;
    }
    let mut params = Params::new();
    for w in rest {
        let (k, v) = w.split_once('=')?;
        if k.is_empty()
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            return None;
        }
        params.set(k, v);
    }
    Some((func.clone(), params))
}

/// Splits on whitespace; quotes group (and are removed). `None` for an unclosed quote.
fn split_words(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => word.get_or_insert_default().push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                word.get_or_insert_default();
            }
            None if c.is_whitespace() => words.extend(word.take()),
            None => word.get_or_insert_default().push(c),
        }
    }
    if quote.is_some() {
        return None;
    }
    words.extend(word);
    Some(words)
}

#[cfg(unix)]
extern "C" fn on_sigint(_: nix::libc::c_int) {
    crate::script::console::interrupt();
}

#[cfg(unix)]
/// While the line editor reads, the terminal is raw and Ctrl-C is a key; while a chunk or a
/// call runs, it is SIGINT, which then stops the chunk rather than the REPL (and its dry copy).
fn catch_ctrl_c() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let action = SigAction::new(
        SigHandler::Handler(on_sigint),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler only does atomic loads and stores.
    if let Err(e) = unsafe { sigaction(Signal::SIGINT, &action) } {
        eprintln!("billhost repl: Ctrl-C will end the REPL: {e}");
    }
}

/// Runs the REPL on the terminal until `:quit` or end of input, on the live engine's database,
/// keeping the history in `history` (none when `None`).
pub fn run(live: Engine, history: Option<PathBuf>) -> Result<(), String> {
    let db = live.config().db_path.clone();
    let console = Console::new(&live.config().scripts)?;
    #[cfg(unix)]
    catch_ctrl_c();
    let mut session = Session {
        live,
        dry: None,
        login: None,
        caller: Caller::superuser(),
        out: None,
    };
    let rl_config = Config::builder()
        .auto_add_history(false)
        .completion_type(CompletionType::List)
        .build();
    let mut editor: Editor<ReplHelper, FileHistory> =
        Editor::with_config(rl_config).map_err(|e| format!("terminal: {e}"))?;
    editor.set_helper(Some(session.completion(&console)));
    if let Some(path) = &history
        && path.exists()
        && let Err(e) = editor.load_history(path)
    {
        eprintln!("billhost repl: history {}: {e}", path.display());
    }
    println!(
        "billhost repl on {} as the local admin; :help lists commands, Ctrl-D leaves",
        db.display()
    );
    if let Some(e) = session.live.scripts().status().last_error {
        println!("scripts not loaded: {e}");
    }

    let mut pending = String::new();
    loop {
        let prompt = if pending.is_empty() {
            session.prompt()
        } else {
            "..> ".to_string()
        };
        let line = match editor.readline(&prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                if pending.is_empty() {
                    println!("(:quit or Ctrl-D leaves)");
                } else {
                    pending.clear();
                    println!("(chunk dropped)");
                }
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(format!("terminal: {e}")),
        };
        let entry = if pending.is_empty() {
            let trimmed = line.trim();
            if trimmed.is_empty() {
                continue;
            }
            if let Some(cmd) = trimmed.strip_prefix(':') {
                remember(&mut editor, &history, trimmed);
                let flow = session.command(cmd);
                if matches!(
                    cmd.split_whitespace().next(),
                    Some("reload" | "dry" | "commit" | "rollback")
                ) {
                    editor.set_helper(Some(session.completion(&console)));
                }
                match flow {
                    Flow::Quit => break,
                    Flow::Continue => continue,
                }
            }
            let call = parse_call(trimmed, |name| session.is_func(name));
            if let Some((func, params)) = call {
                remember(&mut editor, &history, trimmed);
                let out = params.get("out").and_then(|f| Format::parse(f).ok());
                let doc = session.call(&func, params);
                session.show(&func, &doc, out);
                continue;
            }
            line
        } else {
            format!("{pending}\n{line}")
        };
        if console.incomplete(&entry) {
            pending = entry;
            continue;
        }
        pending.clear();
        remember(&mut editor, &history, &entry);
        match console.eval(&entry, &mut |func, params| session.call(func, params)) {
            Ok(values) => {
                let mut texts = Vec::new();
                for v in values {
                    match v {
                        Shown::Text(t) => texts.push(t),
                        Shown::Doc(doc) => session.show("lua", &doc, None),
                    }
                }
                if !texts.is_empty() {
                    println!("{}", texts.join("\t"));
                }
            }
            Err(e) => {
                print!("{}", wire::render_console(&Doc::Error(e)));
                // `account.edit elid=1 name=Ann Lee` reads as Lua because of the bare `Lee`.
                let first = entry.split_whitespace().next().unwrap_or("");
                if session.is_func(first) {
                    println!(
                        "(a func call is FUNC name=value ...; quote values with spaces: name=\"a b\")"
                    );
                }
            }
        }
    }
    if let Some(dry) = session.dry.take() {
        println!(
            "dry mode ended; {} recorded change(s) discarded",
            dry.calls().len()
        );
    }
    Ok(())
}

/// Adds an entry to the history and its file; entries that carry a password are not kept.
fn remember(editor: &mut Editor<ReplHelper, FileHistory>, path: &Option<PathBuf>, entry: &str) {
    let secret = ["passwd", "password", "confirm", "authinfo"]
        .iter()
        .any(|p| entry.contains(p));
    if !secret
        && editor.add_history_entry(entry).unwrap_or(false)
        && let Some(path) = path
        && let Err(e) = editor.append_history(path)
    {
        eprintln!("billhost repl: history {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::parse_call;

    fn call(line: &str) -> Option<(String, Vec<(String, String)>)> {
        parse_call(line, |f| f == "account" || f == "payment.setpaid").map(|(f, p)| {
            (
                f,
                p.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        })
    }

    #[test]
    fn call_lines_and_lua_lines() {
        assert_eq!(call("account"), Some(("account".into(), vec![])));
        assert_eq!(
            call(r#"payment.setpaid elid=3 note="two words" x='' "#),
            Some((
                "payment.setpaid".into(),
                vec![
                    ("elid".into(), "3".into()),
                    ("note".into(), "two words".into()),
                    ("x".into(), "".into())
                ]
            ))
        );
        assert_eq!(call("account = 5"), None);
        assert_eq!(call("account.x"), None);
        assert_eq!(call("print(account)"), None);
        assert_eq!(call("account elid=\"3"), None);
        assert_eq!(call("x = 1"), None);
    }
}
