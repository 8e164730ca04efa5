//! `billhost migrate --from FILE.db --to postgres://...` through the binary: a SQLite database
//! built by the ledger property test's operations (payments, setpaid, expenses, refunds,
//! deletions, rate changes) plus tax rules and discounts is copied into a new PostgreSQL
//! database; every table is equal row by row, ids go on past the highest SQLite handed out,
//! `billhost check` is clean there, and a non-empty target or a source of another schema
//! version is refused without writing anything.

#[path = "support/ledger_model.rs"]
mod model;
#[path = "support/pg.rs"]
mod pg;

use billhost::store::{self, Durability, Value};
use model::*;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use std::path::Path;
use std::process::{Command, Output};

fn billhost(db: &str, scripts: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_billhost"))
        .args(args)
        .env("BILLHOST_DB", db)
        .env("BILLHOST_SCRIPTS", scripts)
        .output()
        .expect("run billhost")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every row of every table (`tables`: name and column list, as SQLite has them), each row as
/// its values' text, sorted: what the source and the target must both hold.
fn contents(conn: &store::Connection, tables: &[(String, String)]) -> Vec<(String, Vec<String>)> {
    tables
        .iter()
        .map(|(t, columns)| (t.clone(), rows(conn, &format!("SELECT {columns} FROM {t}"))))
        .collect()
}

fn rows(conn: &store::Connection, select: &str) -> Vec<String> {
    let mut stmt = conn.prepare(select).expect("select");
    let n = stmt.column_count();
    let mut out: Vec<String> = stmt
        .query_map([], |r| {
            let mut row = Vec::new();
            for i in 0..n {
                row.push(match r.get_ref(i)? {
                    store::ValueRef::Null => Value::Null,
                    store::ValueRef::Integer(v) => Value::Integer(v),
                    store::ValueRef::Text(t) => Value::Text(t.to_owned()),
                    store::ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                });
            }
            Ok(format!("{row:?}"))
        })
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("row");
    out.sort();
    out
}

#[test]
fn a_sqlite_installation_moves_to_postgres_whole() {
    let Some(cluster) = pg::Cluster::start("migrate") else {
        return;
    };
    let scripts = Path::new("/nonexistent-scripts");

    // The source: the property test's operations, from a fixed seed, then rules of every kind.
    let w = world();
    let mut m = Model {
        provider_rate: RATES[0],
        ..Model::default()
    };
    set_rate(&w, None, RATES[0]);
    let mut runner = TestRunner::deterministic();
    for n in 0..80 {
        let op = op().new_tree(&mut runner).expect("an op").current();
        step(&w, &mut m, &op)
            .and_then(|()| verify(&w, &m))
            .unwrap_or_else(|e| panic!("step {n} {op:?}: {e}"));
    }
    let client = w.accounts[0].to_string();
    must(
        &w.engine,
        "account.taxrule.edit",
        &[("sok", "ok"), ("taxrate", "19"), ("country", "276")],
    );
    must(
        &w.engine,
        "account.discount.add",
        &[
            ("plid", &client),
            ("sok", "ok"),
            ("name", "Loyal"),
            ("percentage", "10"),
            ("priority", "5"),
        ],
    );
    // A tax rule made and deleted: SQLite's sequence is past the highest id left.
    let gone = created_id(&must(
        &w.engine,
        "account.taxrule.edit",
        &[("sok", "ok"), ("taxrate", "5")],
    ));
    must(
        &w.engine,
        "account.taxrule.delete",
        &[("elid", &gone.to_string())],
    );
    let file = w._dir.0.join("ledger.db");
    let World { engine, _dir, .. } = w;
    drop(engine);
    let from = file.to_str().expect("utf-8 path");

    let source = store::connect(&file, Durability::Normal).expect("source");
    let tables: Vec<(String, String)> = source
        .prepare(
            "SELECT m.name, group_concat(c.name, ', ') FROM sqlite_master m, pragma_table_info(m.name) c
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite%' GROUP BY m.name ORDER BY m.name",
        )
        .expect("tables")
        .query_map([], |r| r.try_into())
        .expect("tables")
        .collect::<Result<_, _>>()
        .expect("tables");
    assert!(tables.len() > 20, "{tables:?}");
    for t in [
        "payment",
        "expense",
        "refund",
        "currencyrate",
        "taxrule",
        "discount",
        "history",
    ] {
        let n: i64 = source
            .query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
            .expect("count");
        assert!(n > 0, "the source has no {t} rows");
    }
    let max_rule: i64 = source
        .query_row("SELECT max(id) FROM taxrule", [], |r| r.get(0))
        .expect("max");
    assert!(max_rule < gone, "the deleted tax rule was the last one");
    let expected = contents(&source, &tables);

    // The copy.
    let url = cluster.database("moved");
    let out = billhost(&url, scripts, &["migrate", "--from", from, "--to", &url]);
    assert!(out.status.success(), "{}", text(&out));
    let printed = text(&out);
    assert!(printed.contains("ledger consistent"), "{printed}");
    assert!(
        printed.lines().any(|l| l.starts_with("payment")),
        "no per-table line: {printed}"
    );

    let target = store::connect(Path::new(&url), Durability::Normal).expect("target");
    assert_eq!(
        store::schema_version(&target).expect("version"),
        store::SCHEMA_VERSION
    );
    let copied = contents(&target, &tables);
    for ((table, want), (_, got)) in expected.iter().zip(&copied) {
        assert_eq!(want.len(), got.len(), "{table}: row counts");
        assert_eq!(want, got, "{table}: rows");
    }

    let check = billhost(&url, scripts, &["check"]);
    assert!(check.status.success(), "{}", text(&check));
    assert!(text(&check).contains("ledger consistent"));

    // Ids go on past every id SQLite handed out, the deleted tax rule's included.
    let again = billhost(
        &url,
        scripts,
        &["call", "account.taxrule.edit", "sok=ok", "taxrate=6"],
    );
    assert!(again.status.success(), "{}", text(&again));
    let newest: i64 = target
        .query_row("SELECT max(id) FROM taxrule", [], |r| r.get(0))
        .expect("max");
    assert_eq!(newest, gone + 1);
    let payments_before: i64 = target
        .query_row("SELECT max(id) FROM payment", [], |r| r.get(0))
        .expect("max");
    let pay = billhost(
        &url,
        scripts,
        &[
            "call",
            "payment.edit",
            &format!("plid={client}"),
            "sok=ok",
            "paymethod=1",
            "paymethodamount=2.00",
        ],
    );
    assert!(pay.status.success(), "{}", text(&pay));
    let payments_after: i64 = target
        .query_row("SELECT max(id) FROM payment", [], |r| r.get(0))
        .expect("max");
    assert!(payments_after > payments_before);

    // A target that holds anything is refused, and left as it was.
    let before = contents(&target, &tables);
    let twice = billhost(&url, scripts, &["migrate", "--from", from, "--to", &url]);
    assert_eq!(twice.status.code(), Some(1), "{}", text(&twice));
    assert!(text(&twice).contains("not empty"), "{}", text(&twice));
    assert_eq!(contents(&target, &tables), before);

    // A source at another schema version is refused, and the target stays empty.
    store::set_schema_version(&source, store::SCHEMA_VERSION + 1).expect("set version");
    drop(source);
    let fresh = cluster.database("untouched");
    let newer = billhost(
        &fresh,
        scripts,
        &["migrate", "--from", from, "--to", &fresh],
    );
    assert_eq!(newer.status.code(), Some(1), "{}", text(&newer));
    assert!(text(&newer).contains("schema version"), "{}", text(&newer));
    let untouched = store::connect(Path::new(&fresh), Durability::Normal).expect("fresh");
    let tables_there: i64 = untouched
        .query_row(
            "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema()",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(tables_there, 0);
}
