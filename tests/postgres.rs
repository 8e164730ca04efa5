//! The engine and the `billhost` binary on PostgreSQL, on a cluster each test starts itself
//! (`support/pg.rs`): the same funcs, money rules and checks as on SQLite.

mod common;
#[path = "support/pg.rs"]
mod pg;

use billhost::auth::Caller;
use billhost::store::{self, Durability, ErrorKind, SCHEMA_VERSION};
use billhost::{Engine, EngineConfig, Params};
use common::{TempDir, column, error_type, id_of};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn call(engine: &Engine, func: &str, params: &[(&str, &str)]) -> billhost::Doc {
    engine.call(
        &Caller::superuser(),
        func,
        Params::from_pairs(params.iter().copied()),
    )
}

fn ok(engine: &Engine, func: &str, params: &[(&str, &str)]) -> billhost::Doc {
    let doc = call(engine, func, params);
    assert!(!doc.is_error(), "{func} {params:?}: {doc:?}");
    doc
}

#[test]
fn the_ledger_runs_on_postgres_as_on_sqlite() {
    let Some(cluster) = pg::Cluster::start("engine") else {
        return;
    };
    let url = cluster.database("ledger");
    let engine = Engine::open(EngineConfig::new(&url)).expect("open on PostgreSQL");
    ok(
        &engine,
        "project.edit",
        &[("elid", "1"), ("sok", "ok"), ("currency", "840")],
    );
    ok(
        &engine,
        "paymethod.edit",
        &[("sok", "ok"), ("name", "Bank"), ("currency", "840")],
    );
    let account = id_of(&ok(
        &engine,
        "account.edit",
        &[
            ("sok", "ok"),
            ("email", "Ann@Example.com"),
            ("realname", "Ann"),
        ],
    ));
    let payment = id_of(&ok(
        &engine,
        "payment.edit",
        &[
            ("plid", &account.to_string()),
            ("sok", "ok"),
            ("paymethod", "1"),
            ("paymethodamount", "10.50"),
        ],
    ));
    ok(
        &engine,
        "payment.setpaid",
        &[("elid", &payment.to_string())],
    );
    let expense = ok(
        &engine,
        "subaccount.expense.edit",
        &[
            ("plid", "1"),
            ("sok", "ok"),
            ("amount", "3.25"),
            ("name", "hosting"),
        ],
    );
    assert!(id_of(&expense) > 0);
    // Lists render money exactly (`money()` on PostgreSQL) and filter like SQLite (`LIKE`
    // ignores ASCII case).
    let balances = column(&ok(&engine, "subaccount", &[]), "balance");
    assert_eq!(balances, vec!["7.25".to_string()]);
    ok(
        &engine,
        "account.filter",
        &[("sok", "ok"), ("email", "ann@EXAMPLE")],
    );
    let found = ok(&engine, "account", &[]);
    assert_eq!(column(&found, "email"), vec!["Ann@Example.com".to_string()]);
    // Bad input: an error document, nothing changed.
    let bad = call(
        &engine,
        "payment.edit",
        &[
            ("plid", &account.to_string()),
            ("sok", "ok"),
            ("paymethod", "1"),
            ("paymethodamount", "1.001"),
        ],
    );
    assert_eq!(error_type(&bad), "value");
    let payments = column(
        &ok(
            &engine,
            "account.payment",
            &[("elid", &account.to_string())],
        ),
        "id",
    );
    assert_eq!(payments.len(), 1);
    let violations = engine.read(billhost::ledger::check).expect("check");
    assert!(violations.is_empty(), "{violations:?}");
}

#[test]
fn a_newer_postgres_database_is_refused_and_ids_are_never_reused() {
    let Some(cluster) = pg::Cluster::start("versions") else {
        return;
    };
    let url = cluster.database("versions");
    {
        let engine = Engine::open(EngineConfig::new(&url)).expect("open");
        let first = id_of(&ok(
            &engine,
            "accountgroup.edit",
            &[("sok", "ok"), ("name", "a")],
        ));
        ok(
            &engine,
            "accountgroup.delete",
            &[("elid", &first.to_string())],
        );
        let second = id_of(&ok(
            &engine,
            "accountgroup.edit",
            &[("sok", "ok"), ("name", "b")],
        ));
        assert!(second > first, "{second} after {first}");
    }
    let conn = store::connect(Path::new(&url), Durability::Full).expect("connect");
    assert_eq!(
        store::schema_version(&conn).expect("version"),
        SCHEMA_VERSION
    );
    store::set_schema_version(&conn, SCHEMA_VERSION + 1).expect("bump");
    match Engine::open(EngineConfig::new(&url)) {
        Err(e) => assert_eq!(
            e.kind(),
            ErrorKind::TooNew {
                found: SCHEMA_VERSION + 1,
                supported: SCHEMA_VERSION
            }
        ),
        Ok(_) => panic!("a newer database was opened"),
    }
}

fn billhost(db: &str, scripts: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_billhost"))
        .args(args)
        .env("BILLHOST_DB", db)
        .env("BILLHOST_SCRIPTS", scripts)
        .output()
        .expect("run billhost")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn init_call_check_and_serve_work_on_postgres_through_the_binary() {
    let Some(cluster) = pg::Cluster::start("binary") else {
        return;
    };
    let url = cluster.database("billing");
    let dir = TempDir::new("pg-binary");
    let scripts = dir.path().join("no-scripts");

    let init = billhost(&url, &scripts, &["init", "--admin-password", "secret"]);
    assert!(init.status.success(), "{init:?}");
    assert!(stdout(&init).contains("ready"), "{}", stdout(&init));

    let reg = billhost(
        &url,
        &scripts,
        &[
            "call",
            "register",
            "sok=ok",
            "email=ann@example.com",
            "passwd=Secret123",
            "realname=Ann",
            "conditions_agree=on",
        ],
    );
    assert!(stdout(&reg).contains("<ok/><id>1</id>"), "{reg:?}");
    let list = billhost(&url, &scripts, &["call", "account", "--out", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&list.stdout).expect("json");
    assert_eq!(json["doc"]["elem"][0]["name"]["$"], "Ann");

    let check = billhost(&url, &scripts, &["check"]);
    assert!(check.status.success(), "{check:?}");
    assert!(stdout(&check).contains("ledger consistent"));

    // The shipped scripts' jobs (suspending debtors: a list, billing calls) run on PostgreSQL.
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
    let jobs = billhost(&url, &shipped, &["run-jobs"]);
    assert!(jobs.status.success(), "{jobs:?}");
    assert!(stdout(&jobs).contains(": ok"), "{}", stdout(&jobs));
    // `--once` (cron on several machines): the first run of a period claims it, the next one
    // in the same period skips every job. Should a period end between the two, a third run
    // right after is in the same period as the second.
    let first = billhost(&url, &shipped, &["run-jobs", "--once"]);
    assert!(first.status.success(), "{first:?}");
    assert!(!stdout(&first).is_empty());
    let skipped = |o: &Output| {
        let text = stdout(o);
        !text.is_empty()
            && text
                .lines()
                .all(|l| l.ends_with(": skipped: this period has already run"))
    };
    let again = billhost(&url, &shipped, &["run-jobs", "--once"]);
    assert!(again.status.success(), "{again:?}");
    if !skipped(&again) {
        let third = billhost(&url, &shipped, &["run-jobs", "--once"]);
        assert!(skipped(&third), "{}", stdout(&third));
    }

    // `serve` on the same database: the client registered by `call` logs in over HTTP.
    let mut child = Command::new(env!("CARGO_BIN_EXE_billhost"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("BILLHOST_DB", &url)
        .env("BILLHOST_SCRIPTS", &scripts)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let out = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(out).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        assert!(Instant::now() < deadline, "serve never printed its address");
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(a) = line.strip_prefix("billhost serve: listening on http://") {
                    break a.trim().trim_end_matches("/billmgr").to_string();
                }
            }
            _ => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("serve stopped before listening: {err}");
            }
        }
    };
    let answer = http_get(
        &addr,
        "/billmgr?func=auth&username=ann@example.com&password=Secret123",
    );
    let _ = child.kill();
    let _ = child.wait();
    assert!(answer.contains("<auth"), "{answer}");
    assert!(!redacts_nothing(&url), "the URL has no password to hide");
}

/// Whether the URL carries a password (the tests' cluster trusts loopback: it does not).
fn redacts_nothing(url: &str) -> bool {
    store::redacted(&PathBuf::from(url)) != url
}

fn http_get(addr: &str, target: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}
