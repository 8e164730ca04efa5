//! `payment.setpaid` throughput through the engine (access check, validation, the ledger rules,
//! history, one `BEGIN IMMEDIATE` transaction per call, `synchronous=FULL`) against raw
//! rusqlite doing the same writes with the same durability, one transaction each, in the same
//! run. Rounds alternate between the two so that disk noise hits both alike.
//!
//! `cargo bench --bench ledger` (`BENCH_N` sets the payments per side, default 400).
//!
//! Then the same on PostgreSQL (a throwaway cluster of PostgreSQL 15, as the tests start one,
//! `fsync=on`, `synchronous_commit=on`): the engine on a `postgres://` URL against the raw
//! `postgres` crate doing the same reads and writes, one transaction each. Skipped, saying so,
//! where PostgreSQL is not installed (`BENCH_PG=0` skips it too).

#[path = "../tests/support/pg.rs"]
mod pg;
#[path = "support/raw.rs"]
mod raw;
#[path = "support/raw_pg.rs"]
mod raw_pg;
use billhost::auth::Caller;
use billhost::store::{self, Durability};
use billhost::{Engine, EngineConfig, Params};
use raw::raw_setpaid;
use raw_pg::{RawPg, raw_pg_setpaid};
use std::path::Path;
use std::time::{Duration, Instant};

/// Rounds of the SQLite comparison, and of the PostgreSQL one (finer: on a shared machine
/// each round trip waits for a CPU, so load that shifts during the run must hit both sides).
const ROUNDS: usize = 4;
const PG_ROUNDS: usize = 20;

fn must(engine: &Engine, func: &str, params: &[(&str, &str)]) {
    let doc = engine.call(
        &Caller::superuser(),
        func,
        Params::from_pairs(params.iter().copied()),
    );
    assert!(!doc.is_error(), "{func}: {doc:?}");
}

/// A database with one client and `n` new payments of 10.00 USD.
fn prepare(path: &Path, n: usize) -> Engine {
    let engine = Engine::open(EngineConfig::new(path)).expect("engine");
    must(
        &engine,
        "project.edit",
        &[("elid", "1"), ("sok", "ok"), ("currency", "840")],
    );
    must(
        &engine,
        "paymethod.edit",
        &[("sok", "ok"), ("name", "Bank"), ("currency", "840")],
    );
    must(
        &engine,
        "account.edit",
        &[("sok", "ok"), ("email", "bench@example.com")],
    );
    engine
        .write(|c| {
            let mut stmt = c.prepare(
                "INSERT INTO payment (number, project_id, account_id, subaccount_id, paymethod_id, currency_id, status,
                                      createdate, subaccountamount, paymethodamount)
                 VALUES (?1, 1, 1, 1, 1, 840, 1, '2026-01-01 00:00:00', 1000, 1000)",
            )?;
            for i in 0..n {
                stmt.execute([format!("B{i}")])?;
            }
            Ok(())
        })
        .expect("payments");
    engine
}

fn main() {
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let dir = std::env::temp_dir().join(format!("billhost-bench-ledger-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");

    let engine = prepare(&dir.join("engine.db"), n);
    let raw_path = dir.join("raw.db");
    drop(prepare(&raw_path, n));
    let raw = store::sqlite::open_raw(&raw_path, Durability::Full).expect("raw connection");
    let now = billhost::clock::now();

    let (t_engine, t_raw) = alternate(&engine, n, ROUNDS, |id| {
        raw_setpaid(&raw, id, &now).expect("raw setpaid");
    });

    let rate = |t: Duration| n as f64 / t.as_secs_f64();
    let (e, r) = (rate(t_engine), rate(t_raw));
    println!("payment.setpaid, {n} payments, one transaction each, synchronous=FULL");
    println!("  engine (history, rules): {e:>9.0} /s");
    println!("  raw rusqlite:            {r:>9.0} /s");
    println!("  ratio engine/raw:        {:>9.2} (target >= 0.70)", e / r);
    drop(engine);
    drop(raw);
    let _ = std::fs::remove_dir_all(&dir);
    if std::env::var("BENCH_PG").is_ok_and(|v| v == "0") {
        return;
    }
    postgres_side(n);
}

/// Sets payments 1..=n paid in `rounds` rounds, each round first through the engine, then the
/// same ids through `raw`, so that disk noise hits both alike; checks the engine's ledger and
/// answers the time each side took.
fn alternate(
    engine: &Engine,
    n: usize,
    rounds: usize,
    mut raw: impl FnMut(i64),
) -> (Duration, Duration) {
    let per_round = n.div_ceil(rounds);
    let (mut t_engine, mut t_raw) = (Duration::ZERO, Duration::ZERO);
    let root = Caller::superuser();
    for round in 0..rounds {
        let ids = (round * per_round + 1)..=((round + 1) * per_round).min(n);
        let start = Instant::now();
        for id in ids.clone() {
            let doc = engine.call(
                &root,
                "payment.setpaid",
                Params::from_pairs([("elid", id.to_string())]),
            );
            assert!(!doc.is_error(), "{doc:?}");
        }
        t_engine += start.elapsed();
        let start = Instant::now();
        for id in ids {
            raw(id as i64);
        }
        t_raw += start.elapsed();
    }
    let violations = engine.read(billhost::ledger::check).expect("check");
    assert!(violations.is_empty(), "{violations:?}");
    (t_engine, t_raw)
}

/// The same comparison on PostgreSQL: the engine against the raw `postgres` crate.
fn postgres_side(n: usize) {
    let Some(cluster) = pg::Cluster::start("bench-ledger") else {
        return;
    };
    let engine = prepare_url(&cluster.database("engine"), n);
    let raw_url = cluster.database("raw");
    drop(prepare_url(&raw_url, n));
    let mut raw = postgres::Client::connect(&raw_url, postgres::NoTls).expect("raw connection");
    let statements = RawPg::prepare(&mut raw).expect("prepare");
    let now = billhost::clock::now();
    let (t_engine, t_raw) = alternate(&engine, n, PG_ROUNDS, |id| {
        raw_pg_setpaid(&mut raw, &statements, id, &now).expect("raw setpaid");
    });
    drop(engine);
    let checked = store::connect(Path::new(&raw_url), Durability::Full).expect("check connection");
    let violations = billhost::ledger::check(&checked).expect("check");
    assert!(violations.is_empty(), "raw: {violations:?}");
    let rate = |t: Duration| n as f64 / t.as_secs_f64();
    let (e, r) = (rate(t_engine), rate(t_raw));
    println!(
        "payment.setpaid on PostgreSQL 15, {n} payments, one transaction each, synchronous_commit=on"
    );
    println!("  engine (history, rules): {e:>9.0} /s");
    println!("  raw postgres crate:      {r:>9.0} /s");
    println!("  ratio engine/raw:        {:>9.2} (target >= 0.70)", e / r);
}

/// [`prepare`] on a database given by path or URL.
fn prepare_url(url: &str, n: usize) -> Engine {
    prepare(Path::new(url), n)
}
