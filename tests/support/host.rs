//! A billhost installation for the plugin tests: a temporary folder, a database made by
//! `billhost init` (a SQLite file in the folder, or a PostgreSQL URL), the plugin folders given,
//! and the built binary run on it (`call` with JSON out, `check`), with a few reads of the
//! ledger straight from the database, through the store (either backend).
#![allow(dead_code)]

use crate::common::TempDir;
use crate::pg::Backend;
use billhost::store;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

pub struct Host {
    pub dir: TempDir,
    pub plugins: Vec<PathBuf>,
    /// What `--db` gets: `dir/billhost.db`, or the URL of a PostgreSQL database.
    pub db: PathBuf,
    /// Where the database lives (keeps a PostgreSQL database alive while the host is).
    pub backend: Backend,
}

impl Host {
    /// A new installation on SQLite (`billhost init` with the staff password `secret`).
    pub fn new(tag: &str, plugins: Vec<PathBuf>) -> Host {
        Host::on(&Backend::Sqlite, tag, plugins)
    }

    /// A new installation whose database is on `backend`.
    pub fn on(backend: &Backend, tag: &str, plugins: Vec<PathBuf>) -> Host {
        let dir = TempDir::new(tag);
        let host = Host {
            db: backend.db(dir.path()),
            dir,
            plugins,
            backend: backend.clone(),
        };
        let init = host.run(&["init", "--admin-password", "secret"]);
        assert!(init.status.success(), "{init:?}");
        host
    }

    /// The binary on this installation, the environment's own settings removed.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_billhost"));
        cmd.arg("--db").arg(&self.db);
        for p in &self.plugins {
            cmd.arg("--plugins").arg(p);
        }
        cmd.args(args)
            .current_dir(self.dir.path())
            .env_remove("BILLHOST_DB")
            .env_remove("BILLHOST_PLUGINS")
            .env_remove("BILLHOST_PLUGIN_CONFIG");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run billhost")
    }

    /// `billhost call FUNC params --out json`: the document's `doc` object.
    pub fn call(&self, func: &str, params: &[&str]) -> Value {
        let mut args = vec!["call", func];
        args.extend_from_slice(params);
        args.extend_from_slice(&["--out", "json"]);
        let out = self.run(&args);
        let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{func} {params:?}: not JSON ({e}): {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        json["doc"].clone()
    }

    pub fn ok(&self, func: &str, params: &[&str]) -> Value {
        let doc = self.call(func, params);
        assert!(doc.get("error").is_none(), "{func} {params:?}: {doc}");
        doc
    }

    pub fn error(&self, func: &str, params: &[&str]) -> Value {
        let doc = self.call(func, params);
        assert!(
            doc.get("error").is_some(),
            "{func} {params:?} succeeded: {doc}"
        );
        doc["error"].clone()
    }

    pub fn check_clean(&self) {
        let out = self.run(&["check"]);
        assert!(
            out.status.success(),
            "billhost check: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    /// A connection to the installation's database, through the store (either backend).
    pub fn db(&self) -> store::Connection {
        store::connect(&self.db, store::Durability::Full).expect("open db")
    }

    /// One integer a query without parameters answers.
    pub fn query_i64(&self, sql: &str) -> i64 {
        self.db().query_row(sql, [], |r| r.get(0)).expect(sql)
    }

    /// One integer a query about one object (`?1`) answers.
    pub fn query_id(&self, sql: &str, id: i64) -> i64 {
        self.db().query_row(sql, [id], |r| r.get(0)).expect(sql)
    }

    /// What a client's subaccounts hold, in minor units.
    pub fn balance(&self, account: i64) -> i64 {
        self.query_id(
            "SELECT coalesce(sum(balance), 0) FROM subaccount WHERE account_id = ?1",
            account,
        )
    }

    pub fn payment_status(&self, id: i64) -> i64 {
        self.query_id("SELECT status FROM payment WHERE id = ?1", id)
    }

    /// Makes a gateway refund's next retry due now, as if its delay had passed.
    pub fn refund_due(&self, refund: i64) {
        let past = billhost::clock::format_unix(billhost::clock::unix_now() - 1);
        self.db()
            .execute(
                "UPDATE refund SET next_attempt = ?2 WHERE id = ?1",
                store::params![refund, past],
            )
            .expect("due");
    }

    /// Seconds from now until a gateway refund's next retry is due.
    pub fn refund_wait(&self, refund: i64) -> i64 {
        let next: String = self
            .db()
            .query_row(
                "SELECT next_attempt FROM refund WHERE id = ?1",
                [refund],
                |r| r.get(0),
            )
            .expect("next attempt");
        unix_of(&next) - billhost::clock::unix_now()
    }

    /// A payment's history, oldest first.
    pub fn history(&self, payment: i64) -> Vec<String> {
        let db = self.db();
        let mut stmt = db
            .prepare(
                "SELECT description FROM history WHERE object_type = 'payment' AND object_id = ?1 ORDER BY id",
            )
            .expect("history");
        stmt.query_map([payment], |r| r.get(0))
            .expect("history")
            .collect::<Result<_, _>>()
            .expect("history")
    }

    /// How many of a payment's history rows contain `part`.
    pub fn history_count(&self, payment: i64, part: &str) -> usize {
        self.history(payment)
            .iter()
            .filter(|h| h.contains(part))
            .count()
    }
}

/// A document field's text.
pub fn text(v: &Value) -> String {
    v["$"].as_str().unwrap_or_default().to_string()
}

/// A document's `id`.
pub fn id_of(doc: &Value) -> i64 {
    text(&doc["id"]).parse().expect("an id")
}

/// Seconds since 1970 of a UTC `YYYY-MM-DD HH:MM:SS` (the ledger's times).
fn unix_of(time: &str) -> i64 {
    let n = |range: std::ops::Range<usize>| -> i64 {
        time.get(range)
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("not a time: {time:?}"))
    };
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from 1970-01-01 to the date (the proleptic Gregorian calendar, years from March).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)
}
