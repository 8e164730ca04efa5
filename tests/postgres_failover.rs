//! Failover: `billhost serve` on a primary with a synchronous streaming standby (two local
//! clusters, `support/pg.rs`), through libpq's multi-host URL with
//! `target_session_attrs=read-write`. The primary is killed with SIGKILL under write load and
//! the standby promoted: billhost reconnects by itself to the new primary, every operation it
//! answered ok (before the kill and after) is there, and `billhost check` is clean.
#![cfg(unix)]

mod common;
#[path = "support/http1.rs"]
mod http1;
#[path = "support/pg.rs"]
mod pg;
#[path = "support/seed.rs"]
mod seed;
#[path = "support/serve_bin.rs"]
mod serve_bin;

use billhost::{Engine, EngineConfig};
use common::TempDir;
use http1::{Conn, enc};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const ADMIN_PASSWORD: &str = "FailoverTest1";
const CLIENTS: usize = 16;
const TIMEOUT: Duration = Duration::from_secs(30);

struct Client {
    account: i64,
    subaccount: i64,
}

/// What one HTTP client got answered ok.
#[derive(Default)]
struct Done {
    created: Vec<i64>,
    paid: Vec<i64>,
    expenses: Vec<i64>,
    /// Operations answered with an error or not at all (around the failover).
    failed: usize,
}

/// Creates payments, sets them paid and spends 1.00 until `stop`; what fails (the database
/// gone, a connection cut) is counted and tried again with the next operation on a new
/// connection. `after` counts the operations answered ok once `promoted` is set.
fn traffic(
    addr: SocketAddr,
    client: &Client,
    stop: &AtomicBool,
    answered: &AtomicUsize,
    promoted: &AtomicBool,
    after: &AtomicUsize,
) -> Done {
    let auth = format!("authinfo={}", enc(&format!("admin:{ADMIN_PASSWORD}")));
    let mut done = Done::default();
    let mut conn: Option<Conn> = None;
    let mut pending: Option<i64> = None;
    let mut round = 0u64;
    while !stop.load(Ordering::SeqCst) {
        round += 1;
        if conn.is_none() {
            match Conn::connect(addr, TIMEOUT) {
                Ok(c) => conn = Some(c),
                Err(_) => {
                    done.failed += 1;
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else {
            continue;
        };
        // A payment made but not yet answered paid is set paid first.
        let (request, kind) = match pending {
            Some(p) => (
                c.get(&format!("/billmgr?func=payment.setpaid&elid={p}&{auth}")),
                "setpaid",
            ),
            None if round.is_multiple_of(2) => (
                c.post(
                    "/billmgr",
                    &format!(
                        "func=subaccount.expense.edit&sok=ok&plid={}&subaccount={}&amount=1.00&name=Load&{auth}",
                        client.account, client.subaccount
                    ),
                ),
                "expense",
            ),
            None => (
                c.post(
                    "/billmgr",
                    &format!(
                        "func=payment.edit&sok=ok&plid={}&paymethod=1&paymethodamount=10.00&{auth}",
                        client.account
                    ),
                ),
                "payment",
            ),
        };
        let answer = match request {
            Ok(a) if a.status == 200 && !a.body.contains("<error") => a,
            Ok(_) => {
                done.failed += 1;
                // A setpaid answered with an error may still have been applied (a batch
                // committed on the new primary before the sync connection's failure was
                // found is answered "syncing the WAL failed"): tried again it would be
                // refused for ever as already paid, so the client goes on with a new payment.
                if kind == "setpaid" {
                    pending = None;
                }
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(_) => {
                done.failed += 1;
                conn = None;
                continue;
            }
        };
        let id = answer.xml_field("id").and_then(|v| v.parse::<i64>().ok());
        match (kind, pending, id) {
            ("setpaid", Some(p), _) => {
                done.paid.push(p);
                pending = None;
            }
            ("expense", _, Some(id)) => done.expenses.push(id),
            ("payment", _, Some(id)) => {
                done.created.push(id);
                pending = Some(id);
            }
            _ => panic!("{kind} answered ok without an id: {}", answer.body),
        }
        answered.fetch_add(1, Ordering::Relaxed);
        if promoted.load(Ordering::SeqCst) {
            after.fetch_add(1, Ordering::Relaxed);
        }
    }
    done
}

fn ids(engine: &Engine, sql: &str, id: i64) -> BTreeSet<i64> {
    engine
        .read(|c| {
            Ok(c.prepare_cached(sql)?
                .query_map([id], |r| r.get::<i64>(0))?
                .collect::<Result<BTreeSet<i64>, _>>()?)
        })
        .expect(sql)
}

#[test]
fn a_synchronous_standby_takes_over_a_killed_primary_with_nothing_answered_lost() {
    let Some(primary) = pg::Cluster::start_primary("primary") else {
        return;
    };
    primary.database("billing");
    let standby = primary.standby_of("standby");
    let url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/billing?target_session_attrs=read-write",
        primary.port, standby.port
    );
    let clients: Vec<Client> = {
        let engine = Engine::open(EngineConfig::new(&url)).expect("open");
        seed::usd_bank(&engine, ADMIN_PASSWORD);
        seed::payers(&engine, "ha", CLIENTS)
            .into_iter()
            .map(|(account, subaccount)| Client {
                account,
                subaccount,
            })
            .collect()
    };
    let clients = Arc::new(clients);
    let dir = TempDir::new("failover");
    let server = serve_bin::serve_on(&dir, std::ffi::OsStr::new(&url), "serve", &[], &[]);
    let addr = server.addr;

    let stop = Arc::new(AtomicBool::new(false));
    let promoted = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let after = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..CLIENTS)
        .map(|k| {
            let (clients, stop, answered, promoted, after) = (
                clients.clone(),
                stop.clone(),
                answered.clone(),
                promoted.clone(),
                after.clone(),
            );
            std::thread::spawn(move || {
                traffic(addr, &clients[k], &stop, &answered, &promoted, &after)
            })
        })
        .collect();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) || answered.load(Ordering::Relaxed) < 200
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "too little traffic"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let before_kill = answered.load(Ordering::Relaxed);
    primary.kill_9();
    // The server answers errors meanwhile: no host of the URL takes writes.
    std::thread::sleep(Duration::from_millis(500));
    standby.promote();
    promoted.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(60);
    while after.load(Ordering::Relaxed) < 100 {
        assert!(
            Instant::now() < deadline,
            "billhost did not come back after the promotion ({} answered ok after it); the \
             new primary's sessions:\n{}\nthe server's stderr: {}",
            after.load(Ordering::Relaxed),
            standby.activity(),
            std::fs::read_to_string(&server.stderr).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::SeqCst);
    let done: Vec<Done> = workers
        .into_iter()
        .map(|w| w.join().expect("worker"))
        .collect();
    drop(server);
    let failed: usize = done.iter().map(|d| d.failed).sum();
    eprintln!(
        "failover: {before_kill} answered ok before the kill, {} in all, {failed} failed around it, {} after the promotion",
        answered.load(Ordering::Relaxed),
        after.load(Ordering::Relaxed)
    );

    // On the new primary alone: everything answered ok is there, and the ledger is consistent.
    let promoted_url = format!("postgres://postgres@127.0.0.1:{}/billing", standby.port);
    let check = Command::new(env!("CARGO_BIN_EXE_billhost"))
        .args(["--db", &promoted_url, "--scripts", "/nonexistent", "check"])
        .env_remove("BILLHOST_DB")
        .env_remove("BILLHOST_SCRIPTS")
        .output()
        .expect("billhost check");
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success() && out.contains("ledger consistent"),
        "billhost check: {out}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let engine = Engine::open(EngineConfig::new(&promoted_url)).expect("open the new primary");
    for (client, d) in clients.iter().zip(&done) {
        let payments = ids(
            &engine,
            "SELECT id FROM payment WHERE account_id = ?1",
            client.account,
        );
        let created: BTreeSet<i64> = d.created.iter().copied().collect();
        assert!(
            payments.is_superset(&created),
            "client {}: answered payments lost: {:?}",
            client.account,
            created.difference(&payments).collect::<Vec<_>>()
        );
        let credited = ids(
            &engine,
            "SELECT id FROM payment WHERE account_id = ?1 AND status = 4 AND paydate IS NOT NULL",
            client.account,
        );
        let paid: BTreeSet<i64> = d.paid.iter().copied().collect();
        assert!(
            credited.is_superset(&paid),
            "client {}: answered setpaid lost: {:?}",
            client.account,
            paid.difference(&credited).collect::<Vec<_>>()
        );
        let expenses = ids(
            &engine,
            "SELECT id FROM expense WHERE subaccount_id = ?1 AND deleted = 0 AND amount = 100",
            client.subaccount,
        );
        let spent: BTreeSet<i64> = d.expenses.iter().copied().collect();
        assert!(
            expenses.is_superset(&spent),
            "client {}: answered expenses lost: {:?}",
            client.account,
            spent.difference(&expenses).collect::<Vec<_>>()
        );
    }
    // Invoice numbers stay unique and gapless through the failover.
    let mut numbers: Vec<i64> = engine
        .read(|c| {
            Ok(
                c.prepare_cached("SELECT number FROM payment WHERE project_id = 1")?
                    .query_map([], |r| r.get::<String>(0))?
                    .collect::<Result<Vec<String>, _>>()?,
            )
        })
        .expect("numbers")
        .iter()
        .map(|n| n.parse().unwrap_or_else(|_| panic!("invoice number {n}")))
        .collect();
    numbers.sort_unstable();
    let expected: Vec<i64> = (1..=numbers.len() as i64).collect();
    assert_eq!(numbers, expected);
}

/// A sync point vouches only for commits on its own server. Two primaries that both take
/// writes (a split brain, which the failover tool fences, but not at once), in one URL: the
/// writer stays on the first while the sync connection is cut and the first refuses new
/// sessions, so that the sync connection comes back on the second. A write committed on the
/// first is then not answered as durable (a sync point on the second proves nothing of it),
/// and once the writer too is on the second, writes are answered again.
#[test]
fn a_sync_point_on_another_server_does_not_vouch_for_a_commit() {
    let Some(first) = pg::Cluster::start("split-first") else {
        return;
    };
    let second = pg::Cluster::start("split-second").expect("a second cluster");
    first.database("billing");
    second.database("billing");
    let url_of = |c: &pg::Cluster| format!("postgres://postgres@127.0.0.1:{}/billing", c.port);
    drop(Engine::open(EngineConfig::new(url_of(&second))).expect("migrate the second"));
    let both = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/billing?target_session_attrs=read-write",
        first.port, second.port
    );
    let engine = Engine::open(EngineConfig {
        deferred_sync: true,
        ..EngineConfig::new(&both)
    })
    .expect("open");
    seed::usd_bank(&engine, ADMIN_PASSWORD);
    let client = |email: &str| {
        engine.call(
            &billhost::auth::Caller::superuser(),
            "account.edit",
            billhost::Params::from_pairs([("sok", "ok"), ("email", email)]),
        )
    };
    assert!(!client("before@split.test").is_error());

    let mut admin = first.socket_admin();
    let hba: String = admin
        .query_one("SHOW hba_file", &[])
        .expect("hba_file")
        .get(0);
    let rules = std::fs::read_to_string(&hba).expect("pg_hba.conf");
    std::fs::write(&hba, format!("host all all 127.0.0.1/32 reject\n{rules}")).expect("hba");
    admin
        .batch_execute("SELECT pg_reload_conf()")
        .expect("reload");
    let cut: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE query LIKE 'UPDATE billhost_schema SET version = version%'",
            &[],
        )
        .expect("terminate the sync session")
        .get(0);
    assert_eq!(cut, 1, "the sync session");

    // The cut is found by the next sync point: that write is not known durable either.
    let _ = client("cut@split.test");
    let doc = client("split@split.test");
    assert!(
        doc.is_error(),
        "answered ok from a sync point on the other server"
    );
    assert!(
        format!("{doc:?}").contains("committed on another server"),
        "{doc:?}"
    );
    drop(admin);
    let mut billing = first.socket_client("billing");
    let on_first: i64 = billing
        .query_one(
            "SELECT count(*) FROM account WHERE email = 'split@split.test'",
            &[],
        )
        .expect("count")
        .get(0);
    assert_eq!(on_first, 1, "the write was committed on the first");

    // The writer's session cut too: it comes back on the second, and so does durability.
    billing
        .batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = 'billing' AND pid <> pg_backend_pid()",
        )
        .expect("terminate the writer's session");
    let answered = (0..3).any(|k| !client(&format!("after{k}@split.test")).is_error());
    assert!(answered, "no write answered once both are on the second");
}
