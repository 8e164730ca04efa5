//! Func dispatch throughput against raw rusqlite doing the same reads and writes, in the same
//! run on the same machine: `cargo bench --bench dispatch`. The figures that matter are the
//! ratios (engine rate / raw rate); absolute rates depend on the disk.
//!
//! Then the same on PostgreSQL (a throwaway cluster of PostgreSQL 15 the bench starts, as the
//! tests do; `fsync=on`, `synchronous_commit=on`): the engine on a `postgres://` URL against
//! the raw `postgres` crate with prepared statements doing the same reads and writes, rounds
//! alternating between the two. Skipped, saying so, where PostgreSQL is not installed
//! (`BENCH_PG=0` skips it, `BENCH_PG=only` runs only it).

#[path = "../tests/support/pg.rs"]
mod pg;

use billhost::auth::Caller;
use billhost::store::{self, Durability};
use billhost::{Engine, EngineConfig, Params};
use rusqlite::params;
use std::path::Path;
use std::time::{Duration, Instant};

const CLIENTS: i64 = 100_000;

fn main() {
    let pg_mode = std::env::var("BENCH_PG").unwrap_or_default();
    if pg_mode != "only" {
        sqlite_side();
    }
    if pg_mode != "0" {
        postgres_side();
    }
}

fn sqlite_side() {
    let dir = std::env::temp_dir().join(format!("billhost-bench-dispatch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let db = dir.join("bench.db");
    let engine = Engine::open(EngineConfig::new(&db)).expect("engine");
    seed(&engine);
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
        rename(&engine, &root, i);
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

/// Seeds [`CLIENTS`] clients through the engine's writer connection.
fn seed(engine: &Engine) {
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
}

/// Rounds of each side alternating (engine, then raw, [`PG_ROUNDS`] times, `budget` in all
/// per side), so that the noise of a shared machine hits both alike; answers both rates.
fn alternate(
    budget: Duration,
    mut engine: impl FnMut(u64),
    mut raw: impl FnMut(u64),
) -> (f64, f64) {
    for i in 0..50 {
        engine(i);
        raw(i);
    }
    let slice = budget / PG_ROUNDS;
    let (mut n_engine, mut t_engine, mut n_raw, mut t_raw) =
        (0u64, Duration::ZERO, 0u64, Duration::ZERO);
    for _ in 0..PG_ROUNDS {
        for (f, n, t) in [
            (
                &mut engine as &mut dyn FnMut(u64),
                &mut n_engine,
                &mut t_engine,
            ),
            (&mut raw as &mut dyn FnMut(u64), &mut n_raw, &mut t_raw),
        ] {
            let start = Instant::now();
            while start.elapsed() < slice {
                for _ in 0..16 {
                    f(*n);
                    *n += 1;
                }
            }
            *t += start.elapsed();
        }
    }
    (
        n_engine as f64 / t_engine.as_secs_f64(),
        n_raw as f64 / t_raw.as_secs_f64(),
    )
}

const PG_ROUNDS: u32 = 10;

/// The same funcs on PostgreSQL, against the raw `postgres` crate.
fn postgres_side() {
    let Some(cluster) = pg::Cluster::start("bench-dispatch") else {
        return;
    };
    let url = cluster.database("dispatch");
    let engine = Engine::open(EngineConfig::new(Path::new(&url))).expect("engine");
    seed(&engine);
    let root = Caller::superuser();
    let mut raw = postgres::Client::connect(&url, postgres::NoTls).expect("raw connection");
    raw.batch_execute("SET TIME ZONE 'UTC'; SET synchronous_commit = on")
        .expect("session");
    let s = RawPg::prepare(&mut raw).expect("prepare");
    let raw = std::cell::RefCell::new(raw);

    println!(
        "billhost dispatch bench on PostgreSQL 15 ({CLIENTS} clients, fsync=on, synchronous_commit=on; rounds alternate)"
    );
    let (e, r) = alternate(
        Duration::from_secs(4),
        |i| {
            let id = (i as i64 % CLIENTS + 1).to_string();
            let doc = engine.call(
                &root,
                "account.edit",
                Params::from_pairs([("elid", id.as_str())]),
            );
            assert!(!doc.is_error());
        },
        |i| {
            let id = i as i64 % CLIENTS + 1;
            let mut c = raw.borrow_mut();
            let mut t = c
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .expect("begin");
            let row = t.query_one(&s.view, &[&id]).expect("row");
            let fields: Vec<String> = (0..row.len())
                .map(|k| pg_text(&row, k).unwrap_or_default())
                .collect();
            assert_eq!(fields.len(), 24);
            t.rollback().expect("end");
        },
    );
    report_pg("account.edit view", e, r, 0.70);

    let (e, r) = alternate(
        Duration::from_secs(6),
        |i| {
            rename(&engine, &root, i);
        },
        |i| {
            // What a correct change needs: the writers' lock (as every engine write takes it),
            // the name set only on a live client and only when it differs, its history row.
            let id = i as i64 % CLIENTS + 1;
            let now = billhost::clock::now();
            let mut c = raw.borrow_mut();
            let mut t = c.transaction().expect("begin");
            t.execute(&s.lock, &[&store::pg::WRITER_LOCK])
                .expect("lock");
            let changed = t
                .execute(&s.rename, &[&id, &format!("raw {i}")])
                .expect("update");
            assert_eq!(changed, 1);
            t.execute(&s.history, &[&now, &id]).expect("history");
            t.commit().expect("commit");
        },
    );
    report_pg("account.edit change", e, r, 0.70);

    for p_num in [1i64, 1_000] {
        let num = p_num.to_string();
        let (e, r) = alternate(
            Duration::from_secs(4),
            |_| {
                let doc = engine.call(
                    &root,
                    "account",
                    Params::from_pairs([("p_num", num.as_str()), ("p_cnt", "50")]),
                );
                assert!(!doc.is_error(), "{doc:?}");
            },
            |_| {
                let mut c = raw.borrow_mut();
                let mut t = c
                    .build_transaction()
                    .isolation_level(postgres::IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()
                    .expect("begin");
                let total: i64 = t.query_one(&s.count, &[]).expect("count").get(0);
                let rows = t
                    .query(&s.page, &[&50i64, &((p_num - 1) * 50)])
                    .expect("page");
                let cells: usize = rows
                    .iter()
                    .map(|row| (0..row.len()).filter_map(|k| pg_text(row, k)).count())
                    .sum();
                assert!(total > 0 && rows.len() == 50 && cells > 0);
                t.rollback().expect("end");
            },
        );
        report_pg(&format!("account list page {p_num}"), e, r, 0.70);
    }
    drop(engine);
}

/// The raw side's statements, prepared once (as the engine keeps its own per connection). The
/// view and the page read what the engine's `account.edit` view and `account` list read.
struct RawPg {
    view: postgres::Statement,
    lock: postgres::Statement,
    rename: postgres::Statement,
    history: postgres::Statement,
    count: postgres::Statement,
    page: postgres::Statement,
}

impl RawPg {
    fn prepare(c: &mut postgres::Client) -> Result<RawPg, postgres::Error> {
        Ok(RawPg {
            view: c.prepare(
                "SELECT email, verify_email, project_id, country_id, state, realname, name, settingurl, valid_phone,
                        try_phone, label, selfview, products_page, registration_date, registration_ip, attitude,
                        employee_id, nocalcstat, note, status, partner_id, ga, sesid, tzoffset
                 FROM account WHERE id = $1",
            )?,
            lock: c.prepare("SELECT pg_advisory_xact_lock($1)")?,
            rename: c.prepare(
                "UPDATE account SET name = $2 WHERE id = $1 AND status <> 3 AND name IS DISTINCT FROM $2",
            )?,
            history: c.prepare(
                "INSERT INTO history (changedate, object_type, object_id, description, user_login, ip, action)
                 VALUES ($1, 'account', $2, 'changed: name', 'root', 'local', 'account.edit')",
            )?,
            count: c.prepare("SELECT count(*) FROM account WHERE status <> 3")?,
            page: c.prepare(
                "SELECT a.id, a.name, a.email, (SELECT name FROM project WHERE id = a.project_id),
                        (SELECT group_concat(billhost_money(s.balance, c.minor_units) || ' ' || c.iso, ', ')
                         FROM subaccount s JOIN currency c ON c.id = s.currency_id
                         WHERE s.account_id = a.id AND s.active = 1),
                        a.status, substr(a.registration_date, 1, 10), substr(a.registration_date, 12, 8)
                 FROM account a WHERE a.status <> 3 ORDER BY a.id LIMIT $1 OFFSET $2",
            )?,
        })
    }
}

/// A column as wire text (integers and text; NULL as `None`), as the engine renders it.
fn pg_text(row: &postgres::Row, i: usize) -> Option<String> {
    use postgres::types::Type;
    match *row.columns()[i].type_() {
        Type::INT8 => row.get::<_, Option<i64>>(i).map(|v| v.to_string()),
        Type::INT4 => row.get::<_, Option<i32>>(i).map(|v| v.to_string()),
        Type::INT2 => row.get::<_, Option<i16>>(i).map(|v| v.to_string()),
        Type::BOOL => row
            .get::<_, Option<bool>>(i)
            .map(|v| (v as i64).to_string()),
        _ => row.get::<_, Option<String>>(i),
    }
}

fn report_pg(what: &str, engine: f64, raw: f64, target: f64) {
    println!(
        "{what:<22} engine {engine:>10.0}/s   raw postgres {raw:>10.0}/s   ratio {:.2} (target >= {target:.2})",
        engine / raw
    );
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

/// The engine side of `account.edit change`: the `i`th rename, one durable commit with its
/// history row.
fn rename(engine: &Engine, root: &Caller, i: u64) {
    let id = (i as i64 % CLIENTS + 1).to_string();
    let name = format!("renamed {i}");
    let doc = engine.call(
        root,
        "account.edit",
        Params::from_pairs([
            ("elid", id.as_str()),
            ("sok", "ok"),
            ("name", name.as_str()),
        ]),
    );
    assert!(!doc.is_error(), "{doc:?}");
}
