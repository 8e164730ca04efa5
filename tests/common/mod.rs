//! Shared test support: throwaway database directories, calls through the real engine, golden
//! documents, and dumps of business data to prove that a failed func changed nothing.
#![allow(dead_code)]

use billhost::auth::{self, Caller};
use billhost::wire::{self, Format, Meta};
use billhost::{Doc, Engine, EngineConfig, Params};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("billhost-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn db(&self) -> PathBuf {
        self.0.join("billhost.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct Fixture {
    pub dir: TempDir,
    pub engine: Engine,
}

impl Fixture {
    pub fn new(tag: &str) -> Fixture {
        Fixture::with(tag, |config| config)
    }

    /// A fixture whose engine is opened with `configure`d settings (scripts, durability).
    pub fn with(tag: &str, configure: impl FnOnce(EngineConfig) -> EngineConfig) -> Fixture {
        let dir = TempDir::new(tag);
        let engine = Engine::open(configure(EngineConfig::new(dir.db()))).expect("open engine");
        Fixture { dir, engine }
    }

    /// A fixture whose engine opens `db(folder)`: a file in the fixture's folder, or the URL of
    /// a PostgreSQL database (`pg::Backend::db`; the caller keeps that database alive).
    pub fn at(tag: &str, db: impl FnOnce(&Path) -> PathBuf) -> Fixture {
        let dir = TempDir::new(tag);
        let engine = Engine::open(EngineConfig::new(db(dir.path()))).expect("open engine");
        Fixture { dir, engine }
    }

    /// What the engine was opened on (a SQLite file or a PostgreSQL URL).
    pub fn db(&self) -> &Path {
        &self.engine.config().db_path
    }

    /// Calls as the local superuser, or as `login` when given.
    pub fn call_as(&self, login: Option<&str>, func: &str, params: &[(&str, &str)]) -> Doc {
        let caller = match login {
            None => Caller::superuser(),
            Some(l) => self.caller(l),
        };
        self.engine
            .call(&caller, func, Params::from_pairs(params.iter().copied()))
    }

    pub fn call(&self, func: &str, params: &[(&str, &str)]) -> Doc {
        self.call_as(None, func, params)
    }

    pub fn caller(&self, login: &str) -> Caller {
        self.engine
            .read(|c| auth::switch_user(c, &Caller::superuser(), login))
            .expect("user exists")
    }

    /// Calls and insists on success.
    pub fn ok(&self, func: &str, params: &[(&str, &str)]) -> Doc {
        let doc = self.call(func, params);
        assert!(!doc.is_error(), "{func} {params:?} failed: {doc:?}");
        doc
    }

    pub fn register(&self, email: &str) -> i64 {
        let doc = self.ok(
            "register",
            &[
                ("sok", "ok"),
                ("email", email),
                ("passwd", "Secret123"),
                ("realname", email),
            ],
        );
        doc.field("id").expect("id").parse().expect("numeric id")
    }

    pub fn dump(&self) -> String {
        dump(self.db())
    }
}

/// Every row of the tables that hold business data, in a stable order. `db` is what
/// `EngineConfig::new` takes: a SQLite file or a PostgreSQL URL.
pub fn dump(db: &Path) -> String {
    let conn = billhost::store::connect(db, billhost::store::Durability::Full).expect("open db");
    dump_on(&conn)
}

/// [`dump`] on a connection the caller keeps (a test that dumps after every call).
pub fn dump_on(conn: &billhost::store::Connection) -> String {
    let tables = [
        "project",
        "account",
        "users",
        "account_project",
        "accountgroup",
        "accountgroup_member",
        "subaccount",
        "paymethod",
        "payment",
        "expense",
        "payment_expense",
        "refund",
        "ticket",
        "ticket_message",
        "history",
        "stored_filter",
        "directory_alias",
    ];
    let mut out = String::new();
    for table in tables {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY 1, 2"))
            .expect("prepare dump");
        let cols = stmt.column_count();
        let mut rows = stmt.query([]).expect("query dump");
        while let Some(row) = rows.next().expect("row") {
            out.push_str(table);
            for i in 0..cols {
                let v: billhost::store::Value = row.get(i).expect("value");
                out.push_str(&format!(" {v:?}"));
            }
            out.push('\n');
        }
    }
    out
}

pub fn render(doc: &Doc, format: Format, func: &str) -> String {
    wire::render(doc, format, Meta { func, lang: "en" })
}

/// Replaces what changes from run to run (timestamps, session ids) with placeholders.
pub fn normalize(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let today: String = billhost::clock::now().chars().take(10).collect();
    let is_digit = |k: usize| b.get(k).is_some_and(u8::is_ascii_digit);
    let is_hex = |k: usize| {
        b.get(k)
            .is_some_and(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
    };
    while i < b.len() {
        let stamp = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
            .iter()
            .all(|&k| is_digit(i + k))
            && b.get(i + 4) == Some(&b'-')
            && b.get(i + 7) == Some(&b'-')
            && b.get(i + 10) == Some(&b' ')
            && b.get(i + 13) == Some(&b':')
            && b.get(i + 16) == Some(&b':');
        if stamp {
            out.push_str("<now>");
            i += 19;
            continue;
        }
        // A time column of its own (`create_time`): digits not part of a longer number.
        let time = [0, 1, 3, 4, 6, 7].iter().all(|&k| is_digit(i + k))
            && b.get(i + 2) == Some(&b':')
            && b.get(i + 5) == Some(&b':')
            && !is_digit(i + 8)
            && (i == 0 || !is_digit(i - 1));
        if time {
            out.push_str("<time>");
            i += 8;
            continue;
        }
        if text[i..].starts_with(today.as_str())
            && !is_digit(i + 10)
            && (i == 0 || !is_digit(i - 1))
        {
            out.push_str("<today>");
            i += 10;
            continue;
        }
        if (0..32).all(|k| is_hex(i + k)) && !is_hex(i + 32) && (i == 0 || !is_hex(i - 1)) {
            out.push_str("<sid>");
            i += 32;
            continue;
        }
        let ch = text[i..].chars().next().expect("char boundary");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Compares `actual` with the golden file, or rewrites the file when `BLESS=1`.
pub fn golden(path: &Path, actual: &str) -> Result<(), String> {
    if std::env::var_os("BLESS").is_some() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("golden dir");
        std::fs::write(path, actual).expect("write golden");
        return Ok(());
    }
    let expected = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: {e} (run with BLESS=1 to create)", path.display()))?;
    if expected == actual {
        Ok(())
    } else {
        Err(format!(
            "{} differs\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        ))
    }
}

pub fn id_of(doc: &Doc) -> i64 {
    doc.field("id")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no id in {doc:?}"))
}

pub fn list_len(doc: &Doc) -> usize {
    match doc {
        Doc::List(l) => l.elems.len(),
        other => panic!("not a list: {other:?}"),
    }
}

/// The values of one column of a list document.
pub fn column(doc: &Doc, name: &str) -> Vec<String> {
    match doc {
        Doc::List(l) => l
            .elems
            .iter()
            .map(|e| {
                e.iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            })
            .collect(),
        other => panic!("not a list: {other:?}"),
    }
}

pub fn error_type(doc: &Doc) -> &'static str {
    match doc {
        Doc::Error(e) => e.kind.as_str(),
        other => panic!("expected an error, got {other:?}"),
    }
}
