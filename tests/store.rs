//! The store boundary as the engine's code sees it: statements with bound values, rows, optional
//! rows, ids of inserts, savepoints, and the error kinds the engine maps to error documents.

mod common;

use billhost::store::{self, ErrorKind, OptionalExtension, Savepoint, Value, params};
use common::TempDir;

fn db(dir: &TempDir) -> store::Connection {
    store::open(&dir.db(), store::Durability::Full).expect("open")
}

#[test]
fn values_are_bound_and_read_back_as_typed_columns() {
    let dir = TempDir::new("store-values");
    let c = db(&dir);
    c.begin_write().expect("begin");
    c.execute(
        "INSERT INTO project (name, created) VALUES (?1, ?2)",
        params!["Second", "2026-01-01 00:00:00"],
    )
    .expect("insert");
    let id = c.last_insert_rowid().expect("id");
    let (name, created): (String, String) = c
        .query_row(
            "SELECT name, created FROM project WHERE id = ?1",
            [id],
            |r| r.try_into(),
        )
        .expect("row");
    assert_eq!(
        (name.as_str(), created.as_str()),
        ("Second", "2026-01-01 00:00:00")
    );
    // A missing row is `None` through `optional`, an error otherwise.
    let none: Option<i64> = c
        .query_row("SELECT id FROM project WHERE id = ?1", [id + 100], |r| {
            r.get(0)
        })
        .optional()
        .expect("optional");
    assert_eq!(none, None);
    let err = c
        .query_row("SELECT id FROM project WHERE id = ?1", [id + 100], |r| {
            r.get::<i64>(0)
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoRows);
    // NULL reads as `None`, and an `Option` binds NULL.
    let null: Option<String> = c
        .query_row("SELECT ?1", [None::<&str>], |r| r.get(0))
        .expect("null");
    assert_eq!(null, None);
    // Every row of a query, and a whole row as owned values.
    let names: Vec<String> = c
        .prepare_cached("SELECT name FROM project ORDER BY id")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(names.len(), 2);
    let v: Value = c
        .query_row("SELECT money(-1234, 2)", [], |r| r.get(0))
        .expect("money");
    assert_eq!(v, Value::Text("-12.34".into()));
    c.rollback().expect("rollback");
}

#[test]
fn a_savepoint_undoes_only_its_own_changes() {
    let dir = TempDir::new("store-savepoint");
    let c = db(&dir);
    let count = |c: &store::Connection| -> i64 {
        c.query_row("SELECT count(*) FROM project", [], |r| r.get(0))
            .expect("count")
    };
    let before = count(&c);
    c.begin_write().expect("begin");
    c.execute(
        "INSERT INTO project (name, created) VALUES ('kept', '2026-01-01')",
        [],
    )
    .expect("kept");
    c.savepoint(Savepoint::Func).expect("savepoint");
    c.execute(
        "INSERT INTO project (name, created) VALUES ('undone', '2026-01-01')",
        [],
    )
    .expect("undone");
    c.rollback_to(Savepoint::Func).expect("rollback to");
    assert!(c.in_transaction());
    c.commit().expect("commit");
    assert!(!c.in_transaction());
    assert_eq!(count(&c), before + 1);
}

#[test]
fn failures_come_back_as_kinds_the_engine_can_map() {
    let dir = TempDir::new("store-errors");
    let c = db(&dir);
    // The currency 840 exists in the seed: a second one breaks the primary key.
    let err = c
        .execute(
            "INSERT INTO currency (id, iso, name, minor_units) SELECT id, iso || 'x', name, minor_units FROM currency WHERE id = 840",
            [],
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unique, "{err}");
    // Too few or too many values for the placeholders is refused, not bound as NULL.
    let err = c
        .execute("UPDATE project SET name = ?1 WHERE id = ?2", ["x"])
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Other);
    assert!(
        err.to_string().contains("takes 2 values, 1 were given"),
        "{err}"
    );
    // No float ever crosses the boundary.
    let err = c
        .query_row("SELECT 1.5", [], |r| r.get::<Value>(0))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Type, "{err}");
    // Text is not read as a number.
    let err = c
        .query_row("SELECT 'ten'", [], |r| r.get::<i64>(0))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Type, "{err}");
}

#[test]
fn postgres_tls_settings_that_cannot_be_used_are_refused_before_connecting() {
    // Port 1 has no server: each of these is refused for what the URL says, naming it.
    let refused = |query: &str| -> String {
        let url = format!("postgres://billhost@127.0.0.1:1/billing?{query}");
        match store::connect(std::path::Path::new(&url), store::Durability::Full) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{url} connected"),
        }
    };
    let err = refused("sslmode=verify");
    assert!(
        err.contains("sslmode=verify is not one of disable, allow, prefer, require, verify-ca"),
        "{err}"
    );
    // The public roots prove nothing about whom a name belongs to without the name check.
    let err = refused("sslmode=verify-ca&sslrootcert=system");
    assert!(
        err.contains("sslrootcert=system takes sslmode=verify-full"),
        "{err}"
    );
    let dir = TempDir::new("store-tls-files");
    let err = refused(&format!(
        "sslmode=verify-full&sslrootcert={}",
        dir.path().display()
    ));
    assert!(
        err.contains(&format!(
            "sslrootcert {}: cannot be read",
            dir.path().display()
        )),
        "{err}"
    );
    let not_pem = dir.path().join("root.crt");
    std::fs::write(&not_pem, "not a certificate\n").expect("write");
    let err = refused(&format!(
        "sslmode=verify-ca&sslrootcert={}",
        not_pem.display()
    ));
    assert!(err.contains("no certificate"), "{err}");
    assert!(err.contains(&not_pem.display().to_string()), "{err}");
    // A key=value string is a PostgreSQL location too, refused for the same reasons.
    let kv = "host=127.0.0.1 port=1 dbname=billing sslmode=verify-everything";
    assert!(store::is_postgres(std::path::Path::new(kv)));
    let err = match store::connect(std::path::Path::new(kv), store::Durability::Full) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("connected"),
    };
    assert!(
        err.contains("sslmode=verify-everything is not one of"),
        "{err}"
    );
}
