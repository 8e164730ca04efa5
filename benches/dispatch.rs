//! Func dispatch throughput against raw rusqlite doing the same reads and writes, in the same
//! run on the same machine: `cargo bench --bench dispatch`. The figures that matter are the
//! ratios (engine rate / raw rate); absolute rates depend on the disk.

use billhost::auth::Caller;
use billhost::store::{self, Durability};
use billhost::{Engine, EngineConfig, Params};
use rusqlite::params;
use std::time::{Duration, Instant};

const CLIENTS: i64 = 100_000;

fn main() {
    let dir = std::env::temp_dir().join(format!("billhost-bench-dispatch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let db = dir.join("bench.db");
    let engine = Engine::open(EngineConfig::new(&db)).expect("engine");
    engine
        .write(|c| {
            let mut stmt = c.prepare(
                "INSERT INTO account (project_id, name, realname, email, registration_date) VALUES (1, ?1, ?1, ?2, '2026-01-01 00:00:00')",
            )?;
            for i in 0..CLIENTS {
                stmt.execute(billhost::store::params![format!("client {i}"), format!("c{i}@example.com")])?;
            }
            Ok(())
        })
        .expect("seed");
    let root = Caller::superuser();
    let raw = store::sqlite::open_raw(&db, Durability::Full).expect("raw connection");

    println!("billhost dispatch bench ({CLIENTS} clients, WAL, synchronous=FULL)");

    // account.edit view by elid vs the same row read directly.
    let view_engine = rate(Duration::from_secs(2), |i| {
        let id = (i as i64 % CLIENTS + 1).to_string();
        let doc = engine.call(
            &root,
            "account.edit",
            Params::from_pairs([("elid", id.as_str())]),
        );
        assert!(!doc.is_error());
    });
    let view_raw = rate(Duration::from_secs(2), |i| {
        let id = i as i64 % CLIENTS + 1;
        raw.execute_batch("BEGIN").expect("begin");
        let mut stmt = raw
            .prepare_cached(
                "SELECT email, verify_email, project_id, country_id, state, realname, name, settingurl, valid_phone,
                        try_phone, label, selfview, products_page, registration_date, registration_ip, attitude,
                        employee_id, nocalcstat, note, status FROM account WHERE id = ?1",
            )
            .expect("prepare");
        let row: Vec<String> = stmt
            .query_row([id], |r| {
                (0..20)
                    .map(|k| Ok(raw_text(r.get_ref(k)?).unwrap_or_default()))
                    .collect()
            })
            .expect("row");
        assert_eq!(row.len(), 20);
        drop(stmt);
        raw.execute_batch("ROLLBACK").expect("end");
    });
    report("account.edit view", view_engine, view_raw);

    // account.edit change (one durable commit with its history row) vs the same writes.
    let change_engine = rate(Duration::from_secs(3), |i| {
        let id = (i as i64 % CLIENTS + 1).to_string();
        let name = format!("renamed {i}");
        let doc = engine.call(
            &root,
            "account.edit",
            Params::from_pairs([
                ("elid", id.as_str()),
                ("sok", "ok"),
                ("name", name.as_str()),
            ]),
        );
        assert!(!doc.is_error(), "{doc:?}");
    });
    let change_raw = rate(Duration::from_secs(3), |i| {
        let id = i as i64 % CLIENTS + 1;
        raw.execute_batch("BEGIN IMMEDIATE").expect("begin");
        raw.prepare_cached("UPDATE account SET name = ?2 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![id, format!("raw {i}")]))
            .expect("update");
        raw.prepare_cached(
            "INSERT INTO history (changedate, object_type, object_id, description, user_login, ip, action)
             VALUES (datetime('now'), 'account', ?1, 'changed: name', 'root', 'local', 'account.edit')",
        )
        .and_then(|mut s| s.execute([id]))
        .expect("history");
        raw.execute_batch("COMMIT").expect("commit");
    });
    report("account.edit change", change_engine, change_raw);

    // A page of the client list (with its p_elems total), near the start and deep in the list,
    // against the raw page query and count.
    for p_num in [1u64, 1_000] {
        let num = p_num.to_string();
        let list_engine = rate(Duration::from_secs(2), |_| {
            let doc = engine.call(
                &root,
                "account",
                Params::from_pairs([("p_num", num.as_str()), ("p_cnt", "50")]),
            );
            assert!(!doc.is_error(), "{doc:?}");
        });
        let list_raw = rate(Duration::from_secs(2), |_| {
            raw.execute_batch("BEGIN").expect("begin");
            let total: i64 = raw
                .prepare_cached("SELECT count(*) FROM account WHERE status <> 3")
                .and_then(|mut s| s.query_row([], |r| r.get(0)))
                .expect("count");
            let mut stmt = raw
                .prepare_cached(
                    "SELECT id, name, email, registration_date, status FROM account WHERE status <> 3
                     ORDER BY id LIMIT 50 OFFSET ?1",
                )
                .expect("page");
            let rows = stmt
                .query_map([(p_num as i64 - 1) * 50], |r| r.get::<_, i64>(0))
                .expect("rows")
                .count();
            assert!(total > 0 && rows == 50);
            drop(stmt);
            raw.execute_batch("ROLLBACK").expect("end");
        });
        report(&format!("account list page {p_num}"), list_engine, list_raw);
    }

    drop(engine);
    drop(raw);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Calls per second of `f` over about `budget`.
fn rate(budget: Duration, mut f: impl FnMut(u64)) -> f64 {
    for i in 0..50 {
        f(i);
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..16 {
            f(n);
            n += 1;
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn report(what: &str, engine: f64, raw: f64) {
    println!(
        "{what:<22} engine {engine:>10.0}/s   raw rusqlite {raw:>10.0}/s   ratio {:.2}",
        engine / raw
    );
}

/// A column as wire text, as the engine's lists render it (`list::value_text`), for rusqlite's
/// values.
fn raw_text(v: rusqlite::types::ValueRef<'_>) -> Option<String> {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
    }
}
