//! The ledger tried as a new operator would, through the built `billhost` binary only: set up a
//! provider currency, a payment method and a client; pay, spend, refund; every refused
//! operation answers an error document, exits 1 and changes nothing; `billhost check` is clean.
//! The same on SQLite (a file) and on PostgreSQL (a URL, on a cluster the test starts).

#[path = "support/pg.rs"]
mod pg;

use billhost::store::{self, Durability};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("billhost-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `billhost --db DB ARGS...`; answers the exit code and stdout.
fn run(db: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_billhost"))
        .arg("--db")
        .arg(db)
        .args(args)
        // The shipped scripts are tested on their own; these tests run without any.
        .env("BILLHOST_SCRIPTS", db.with_file_name("no-scripts"))
        .output()
        .expect("run billhost");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `billhost call FUNC PARAMS --out sjson`, parsed.
fn call(db: &Path, func: &str, params: &[&str]) -> (i32, Value) {
    let mut args = vec!["call", func];
    args.extend_from_slice(params);
    args.extend_from_slice(&["--out", "sjson"]);
    let (code, out) = run(db, &args);
    let doc: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{func}: {e}: {out}"));
    (code, doc["doc"].clone())
}

/// Calls a func that must succeed.
fn ok(db: &Path, func: &str, params: &[&str]) -> Value {
    let (code, doc) = call(db, func, params);
    assert_eq!(code, 0, "{func} {params:?} failed: {doc}");
    assert!(doc.get("error").is_none(), "{func}: {doc}");
    doc
}

/// Calls a func that must fail with an error document of `kind`, exit 1, and change nothing.
fn refused(db: &Path, func: &str, params: &[&str], kind: &str) {
    let before = dump(db);
    let (code, doc) = call(db, func, params);
    assert_eq!(code, 1, "{func} {params:?} should fail: {doc}");
    assert_eq!(doc["error"]["$type"], kind, "{func}: {doc}");
    assert_eq!(dump(db), before, "{func} {params:?} changed the ledger");
}

fn text(v: &Value, field: &str) -> String {
    v[field]["$"].as_str().unwrap_or_default().to_string()
}

/// Every row of the ledger's tables and the history, as text.
fn dump(db: &Path) -> Vec<String> {
    let conn = store::connect(db, Durability::Full).expect("open");
    let mut rows = Vec::new();
    for table in [
        "subaccount",
        "payment",
        "expense",
        "payment_expense",
        "refund",
        "history",
    ] {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY id"))
            .expect("prepare");
        let n = stmt.column_count();
        let mut q = stmt.query([]).expect("query");
        while let Some(r) = q.next().expect("row") {
            let cells: Vec<String> = (0..n)
                .map(|i| format!("{:?}", r.get_ref(i).expect("cell")))
                .collect();
            rows.push(format!("{table}: {}", cells.join(" | ")));
        }
    }
    rows
}

fn balance(db: &Path) -> String {
    let doc = ok(db, "subaccount", &["elid=1"]);
    text(&doc["elem"][0], "balance")
}

#[test]
fn a_new_operator_pays_spends_and_refunds() {
    let dir = TempDir::new("flow");
    pays_spends_and_refunds(&dir.0.join("ledger.db"));
}

#[test]
fn a_new_operator_pays_spends_and_refunds_on_postgres() {
    if let Some(cluster) = pg::Cluster::start("flow") {
        pays_spends_and_refunds(&PathBuf::from(cluster.database("flow")));
    }
}

fn pays_spends_and_refunds(db: &Path) {
    // Set up: the provider's currency, a payment method, a client.
    ok(db, "project.edit", &["elid=1", "sok=ok", "currency=840"]);
    let pm = ok(
        db,
        "paymethod.edit",
        &["sok=ok", "name=Bank transfer", "currency=840", "project=1"],
    );
    assert_eq!(text(&pm, "id"), "1");
    let client = ok(
        db,
        "account.edit",
        &["sok=ok", "email=ann@example.com", "name=Ann"],
    );
    assert_eq!(text(&client, "id"), "1");
    assert_eq!(balance(db), "0.00");

    // A 100.00 payment, set paid.
    let payment = ok(
        db,
        "payment.edit",
        &["plid=1", "sok=ok", "paymethod=1", "paymethodamount=100.00"],
    );
    assert_eq!(text(&payment, "id"), "1");
    assert_eq!(balance(db), "0.00");
    ok(db, "payment.setpaid", &["elid=1"]);
    assert_eq!(balance(db), "100.00");

    // A 30.00 expense is paid from it.
    ok(
        db,
        "subaccount.expense.edit",
        &["plid=1", "sok=ok", "amount=30.00", "name=Hosting"],
    );
    assert_eq!(balance(db), "70.00");
    let view = ok(db, "payment.edit", &["elid=1"]);
    assert_eq!(text(&view, "usedamount"), "30.00");
    let paid = ok(db, "payment.expense", &["elid=1"]);
    let elems = paid["elem"].as_array().expect("payment.expense rows");
    assert_eq!(elems.len(), 1);
    assert_eq!(text(&elems[0], "expense"), "1");
    assert_eq!(text(&elems[0], "amount_iso"), "30.00 USD");
    let expenses = ok(db, "subaccount.expense", &["elid=1"]);
    assert_eq!(text(&expenses["elem"][0], "notpayd"), "0.00");

    // A partial refund.
    ok(
        db,
        "payment.refund",
        &["elid=1", "sok=ok", "amount=50.00", "description=asked"],
    );
    assert_eq!(balance(db), "20.00");
    let view = ok(db, "payment.edit", &["elid=1"]);
    assert_eq!(text(&view, "refundedamount"), "50.00");
    assert_eq!(text(&view, "status"), "4");

    // What must be refused, changing nothing.
    refused(
        db,
        "payment.refund",
        &["elid=1", "sok=ok", "amount=60.00"],
        "value",
    );
    refused(db, "payment.delete", &["elid=1"], "value");
    refused(db, "payment.setpaid", &["elid=1"], "value");
    refused(
        db,
        "subaccount.expense.edit",
        &["plid=1", "sok=ok", "amount=20.01", "name=Too much"],
        "value",
    );
    refused(
        db,
        "payment.refund",
        &["elid=1", "sok=ok", "amount=1e3"],
        "value",
    );
    refused(db, "payment.setpaid", &["elid=1, 99"], "value");
    assert_eq!(balance(db), "20.00");

    // The credit limit widens what may be spent; a group setpaid is atomic.
    ok(
        db,
        "subaccount.edit",
        &["elid=1", "sok=ok", "creditlimit=10"],
    );
    ok(
        db,
        "subaccount.expense.edit",
        &["plid=1", "sok=ok", "amount=25.00", "name=Backup"],
    );
    assert_eq!(balance(db), "-5.00");
    ok(
        db,
        "payment.edit",
        &["plid=1", "sok=ok", "paymethod=1", "paymethodamount=10.00"],
    );
    refused(db, "payment.setpaid", &["elid=2, 1"], "value");
    ok(db, "payment.setpaid", &["elid=2"]);
    assert_eq!(balance(db), "5.00");
    let expenses = ok(db, "subaccount.expense", &["elid=1"]);
    assert_eq!(text(&expenses["elem"][0], "notpayd"), "0.00");

    let (code, out) = run(db, &["check"]);
    assert_eq!(code, 0, "check: {out}");
}

#[test]
fn check_reports_a_broken_ledger() {
    let dir = TempDir::new("check");
    check_reports(&dir.0.join("ledger.db"));
}

#[test]
fn check_reports_a_broken_ledger_on_postgres() {
    if let Some(cluster) = pg::Cluster::start("check") {
        check_reports(&PathBuf::from(cluster.database("checked")));
    }
}

fn check_reports(db: &Path) {
    ok(db, "project.edit", &["elid=1", "sok=ok", "currency=840"]);
    ok(
        db,
        "paymethod.edit",
        &["sok=ok", "name=Bank", "currency=840"],
    );
    ok(db, "account.edit", &["sok=ok", "email=bob@example.com"]);
    ok(
        db,
        "payment.edit",
        &["plid=1", "sok=ok", "paymethod=1", "paymethodamount=5"],
    );
    ok(db, "payment.setpaid", &["elid=1"]);
    assert_eq!(run(db, &["check"]).0, 0);
    let conn = store::connect(db, Durability::Full).expect("open");
    conn.execute("UPDATE subaccount SET balance = balance + 1", [])
        .expect("tamper");
    conn.execute("UPDATE payment SET usedamount = 3", [])
        .expect("tamper");
    drop(conn);
    let (code, out) = run(db, &["check"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("subaccount 1: balance 501"), "{out}");
    assert!(
        out.contains("payment 1: usedamount 3 <> allocations 0"),
        "{out}"
    );
}
