//! `kill -9` of the built `billhost serve` while 32 clients pay and spend over HTTP: every
//! operation answered ok survives, nothing is half-applied, and `billhost check` is clean.
//!
//! The database is prepared with the library (a provider currency, a payment method, 32 clients
//! with many new payments each); the server is the binary, talked to on 127.0.0.1 only, with a
//! timeout on every read.
#![cfg(unix)]

mod common;
#[path = "support/http1.rs"]
mod http1;
#[path = "support/seed.rs"]
mod seed;

use billhost::{Engine, EngineConfig};
use common::TempDir;
use http1::{Conn, enc};
use rusqlite::{Connection, OptionalExtension};
use std::collections::BTreeSet;
use std::fs::File;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const CLIENTS: usize = 32;
/// New payments per client: more than a client can set paid in the traffic's time.
const PAYMENTS_EACH: i64 = 400;
const ADMIN_PASSWORD: &str = "KillTest1";
const TIMEOUT: Duration = Duration::from_secs(30);

/// A client of the ledger and what the traffic may use of it.
struct Client {
    account: i64,
    subaccount: i64,
    payments: Vec<i64>,
}

/// The provider's currency, a payment method, the admin, and the clients with their payments;
/// the engine is dropped (the database closed) before the server starts.
fn prepare(db: &Path) -> Vec<Client> {
    let engine = Engine::open(EngineConfig::new(db)).expect("open engine");
    seed::usd_bank(&engine, ADMIN_PASSWORD);
    let templates: Vec<(i64, i64)> = (0..CLIENTS)
        .map(|i| seed::payer(&engine, &format!("kill{i}@example.com")))
        .collect();
    engine
        .write(|c| {
            for &(_, payment) in &templates {
                seed::copy_payment(c, payment, PAYMENTS_EACH - 1)?;
            }
            Ok(())
        })
        .expect("payments");
    let clients = engine
        .read(|c| {
            let mut clients = Vec::new();
            for &(account, _) in &templates {
                let payments = seed::new_payments(c, account)?;
                let subaccount = c.query_row(
                    "SELECT subaccount_id FROM payment WHERE account_id = ?1 LIMIT 1",
                    [account],
                    |r| r.get(0),
                )?;
                clients.push(Client {
                    account,
                    subaccount,
                    payments,
                });
            }
            Ok(clients)
        })
        .expect("clients");
    let violations = engine.read(billhost::ledger::check).expect("check");
    assert!(violations.is_empty(), "prepared ledger: {violations:?}");
    clients
}

struct Spawned {
    child: Child,
    addr: SocketAddr,
    stderr: std::path::PathBuf,
}

impl Drop for Spawned {
    /// A test that fails midway leaves no server behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `billhost serve` on `db` and waits for the address it prints (stdout and stderr go to
/// files, so that a full pipe can never stall it).
fn spawn(dir: &TempDir, run: usize) -> Spawned {
    let out_path = dir.path().join(format!("serve-{run}.out"));
    let err_path = dir.path().join(format!("serve-{run}.err"));
    let child = Command::new(env!("CARGO_BIN_EXE_billhost"))
        .arg("--db")
        .arg(dir.db())
        .arg("--scripts")
        .arg(dir.path().join("no-scripts"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("BILLHOST_DB")
        .env_remove("BILLHOST_LISTEN")
        .env_remove("BILLHOST_SCRIPTS")
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("stdout file"))
        .stderr(File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("spawn billhost serve");
    let mut spawned = Spawned {
        child,
        addr: "127.0.0.1:1".parse().expect("placeholder"),
        stderr: err_path,
    };
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let out = std::fs::read_to_string(&out_path).unwrap_or_default();
        if let Some(line) = out
            .lines()
            .find_map(|l| l.strip_prefix("billhost serve: listening on http://"))
        {
            spawned.addr = line.trim_end_matches("/billmgr").parse().expect("address");
            return spawned;
        }
        if let Some(status) = spawned.child.try_wait().expect("wait") {
            panic!(
                "serve exited ({status}) before listening: {}",
                std::fs::read_to_string(&spawned.stderr).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "serve never printed its address");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    SetPaid(i64),
    Expense,
}

/// What one client's traffic got answered ok, and the operation it had sent when the server
/// died (which may or may not have been applied).
#[derive(Default)]
struct Traffic {
    paid: Vec<i64>,
    expenses: Vec<i64>,
    in_flight: Option<Op>,
}

/// Pays and spends until the server stops answering after `killing` is set. Alternates
/// `payment.setpaid` of the client's next payment with a 1.00 expense (every third postpaid).
fn traffic(
    addr: SocketAddr,
    client: &Client,
    killing: &AtomicBool,
    answered: &AtomicUsize,
) -> Result<Traffic, String> {
    let authinfo = format!("authinfo={}", enc(&format!("admin:{ADMIN_PASSWORD}")));
    let mut conn = Conn::connect(addr, TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    let mut done = Traffic::default();
    let mut payments = client.payments.iter();
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0.. {
        let next = if i % 2 == 0 { payments.next() } else { None };
        let op = match next {
            Some(&p) => Op::SetPaid(p),
            None => Op::Expense,
        };
        done.in_flight = Some(op);
        let reply = match op {
            Op::SetPaid(p) => conn.get(&format!(
                "/billmgr?func=payment.setpaid&elid={p}&{authinfo}"
            )),
            Op::Expense => {
                let postpaid = if i % 3 == 0 { "&postpaid=on" } else { "" };
                conn.post(
                    "/billmgr",
                    &format!(
                        "func=subaccount.expense.edit&sok=ok&plid={}&subaccount={}&amount=1.00&name=Load{postpaid}&{authinfo}",
                        client.account, client.subaccount
                    ),
                )
            }
        };
        let reply = match reply {
            Ok(r) => r,
            // The server is gone: expected once it is being killed, a failure before.
            Err(_) if killing.load(Ordering::SeqCst) => return Ok(done),
            Err(e) => return Err(format!("{op:?} failed before the kill: {e}")),
        };
        if !reply.is_ok() {
            return Err(format!("{op:?} answered {}: {}", reply.status, reply.body));
        }
        match op {
            Op::SetPaid(p) => done.paid.push(p),
            Op::Expense => {
                let id = reply
                    .xml_field("id")
                    .and_then(|id| id.parse().ok())
                    .ok_or_else(|| format!("expense without id: {}", reply.body))?;
                done.expenses.push(id);
            }
        }
        done.in_flight = None;
        answered.fetch_add(1, Ordering::Relaxed);
        if Instant::now() > deadline {
            return Err("the server was never killed".into());
        }
    }
    unreachable!()
}

fn ids(db: &Connection, sql: &str, id: i64) -> BTreeSet<i64> {
    db.prepare(sql)
        .expect("prepare")
        .query_map([id], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[test]
fn kill_9_under_payment_traffic_loses_nothing_answered_and_half_applies_nothing() {
    let dir = TempDir::new("kill");
    let clients = Arc::new(prepare(&dir.db()));
    let mut server = spawn(&dir, 1);
    let addr = server.addr;
    // One login first, so that the traffic finds the credential verified (argon2 once).
    let whoami = Conn::connect(addr, TIMEOUT)
        .and_then(|mut c| {
            c.get(&format!(
                "/billmgr?func=whoami&authinfo={}",
                enc(&format!("admin:{ADMIN_PASSWORD}"))
            ))
        })
        .expect("whoami");
    assert_eq!(whoami.xml_field("login"), Some("admin"), "{}", whoami.body);

    let killing = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..CLIENTS)
        .map(|k| {
            let (clients, killing, answered) = (clients.clone(), killing.clone(), answered.clone());
            std::thread::spawn(move || traffic(addr, &clients[k], &killing, &answered))
        })
        .collect();

    // At least 1.5 s of traffic, and enough answered operations to make the test mean something.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) || answered.load(Ordering::Relaxed) < 200
    {
        assert!(
            started.elapsed() < TIMEOUT,
            "too little traffic: {} answered",
            answered.load(Ordering::Relaxed)
        );
        if workers.iter().any(|w| w.is_finished()) {
            break; // a worker failed; its error is reported below
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    killing.store(true, Ordering::SeqCst);
    server.child.kill().expect("kill -9");
    let status = server.child.wait().expect("wait");
    let stderr = std::fs::read_to_string(&server.stderr).unwrap_or_default();
    let traffic: Vec<Traffic> = workers
        .into_iter()
        .map(|w| {
            w.join()
                .expect("worker")
                .unwrap_or_else(|e| panic!("{e}\n{stderr}"))
        })
        .collect();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "{status}: {stderr}");
    let (paid, spent): (usize, usize) = traffic
        .iter()
        .fold((0, 0), |(p, e), t| (p + t.paid.len(), e + t.expenses.len()));
    let in_flight = traffic.iter().filter(|t| t.in_flight.is_some()).count();
    eprintln!(
        "kill -9 after {:?}: {paid} setpaid and {spent} expenses answered ok, {in_flight} requests in flight",
        started.elapsed()
    );
    assert!(paid > 0 && spent > 0, "no traffic was answered");
    assert!(in_flight > 0, "no request was in flight at the kill");

    // `billhost check` on the killed database (its WAL as the kill left it) is clean.
    let check = Command::new(env!("CARGO_BIN_EXE_billhost"))
        .arg("--db")
        .arg(dir.db())
        .arg("--scripts")
        .arg(dir.path().join("no-scripts"))
        .arg("check")
        .env_remove("BILLHOST_DB")
        .env_remove("BILLHOST_SCRIPTS")
        .output()
        .expect("billhost check");
    let check_out = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "billhost check: {check_out}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(check_out.contains("ledger consistent"), "{check_out}");

    // Every answered operation is there; of the rest, only the request in flight may be.
    let db = Connection::open(dir.db()).expect("open db");
    let (mut applied_unanswered, mut expenses_total) = (0, 0);
    for (client, t) in clients.iter().zip(&traffic) {
        let credited = ids(
            &db,
            "SELECT id FROM payment WHERE account_id = ?1 AND status = 4",
            client.account,
        );
        let answered: BTreeSet<i64> = t.paid.iter().copied().collect();
        assert!(
            credited.is_superset(&answered),
            "client {}: answered setpaid lost: {:?}",
            client.account,
            answered.difference(&credited).collect::<Vec<_>>()
        );
        let extra: Vec<i64> = credited.difference(&answered).copied().collect();
        match (extra.as_slice(), t.in_flight) {
            ([], _) => {}
            ([p], Some(Op::SetPaid(q))) if *p == q => applied_unanswered += 1,
            _ => panic!(
                "client {}: payments credited that were never sent: {extra:?}",
                client.account
            ),
        }
        for &p in &credited {
            let amount: i64 = db
                .query_row(
                    "SELECT subaccountamount FROM payment WHERE id = ?1 AND paydate IS NOT NULL",
                    [p],
                    |r| r.get(0),
                )
                .expect("a credited payment has its paydate");
            assert_eq!(amount, 1000);
        }

        let expenses = ids(
            &db,
            "SELECT id FROM expense WHERE subaccount_id = ?1",
            client.subaccount,
        );
        expenses_total += expenses.len();
        for &e in &t.expenses {
            let amount: Option<i64> = db
                .query_row(
                    "SELECT amount FROM expense WHERE id = ?1 AND subaccount_id = ?2 AND deleted = 0",
                    [e, client.subaccount],
                    |r| r.get(0),
                )
                .optional()
                .expect("expense");
            assert_eq!(amount, Some(100), "answered expense {e} lost");
        }
        let unanswered = expenses.len() - t.expenses.len();
        match (unanswered, t.in_flight) {
            (0, _) => {}
            (1, Some(Op::Expense)) => applied_unanswered += 1,
            _ => panic!(
                "client {}: {unanswered} expenses that were never answered",
                client.account
            ),
        }
    }
    eprintln!("{applied_unanswered} of the requests in flight were applied without an answer");

    // Nothing half-applied: each credited payment has exactly one setpaid history row and each
    // new one none; each expense has its history row.
    let half: i64 = db
        .query_row(
            "SELECT count(*) FROM payment p
             WHERE (SELECT count(*) FROM history h
                    WHERE h.object_type = 'payment' AND h.object_id = p.id AND h.action = 'payment.setpaid')
                   <> (CASE WHEN p.status = 4 THEN 1 ELSE 0 END)",
            [],
            |r| r.get(0),
        )
        .expect("setpaid history");
    assert_eq!(half, 0, "payments whose setpaid history does not match");
    let bare: i64 = db
        .query_row(
            "SELECT count(*) FROM expense e
             WHERE NOT EXISTS (SELECT 1 FROM history h WHERE h.object_type = 'expense' AND h.object_id = e.id)",
            [],
            |r| r.get(0),
        )
        .expect("expense history");
    assert_eq!(bare, 0, "expenses without their history row");
    let all_expenses: i64 = db
        .query_row("SELECT count(*) FROM expense", [], |r| r.get(0))
        .expect("expenses");
    assert_eq!(all_expenses as usize, expenses_total);
    drop(db);

    // The server starts again on the same database and answers.
    let mut again = spawn(&dir, 2);
    let (client, t) = clients
        .iter()
        .zip(&traffic)
        .find(|(_, t)| !t.paid.is_empty())
        .expect("a client with an answered setpaid");
    let mut conn = Conn::connect(again.addr, TIMEOUT).expect("connect again");
    let authinfo = format!("authinfo={}", enc(&format!("admin:{ADMIN_PASSWORD}")));
    let view = conn
        .get(&format!(
            "/billmgr?func=payment.edit&elid={}&{authinfo}",
            t.paid[0]
        ))
        .expect("payment view");
    assert_eq!(view.xml_field("status"), Some("4"), "{}", view.body);
    // The payment after the one that may have been in flight was never sent.
    let next = *client
        .payments
        .get(t.paid.len() + 1)
        .expect("a payment left unsent");
    let reply = conn
        .get(&format!(
            "/billmgr?func=payment.setpaid&elid={next}&{authinfo}"
        ))
        .expect("setpaid again");
    assert!(reply.is_ok(), "{}", reply.body);
    drop(conn);
    let killed = Command::new("kill")
        .args(["-TERM", &again.child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(killed.success());
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = again.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&again.stderr).unwrap_or_default()
    );
    let engine = Engine::open(EngineConfig::new(dir.db())).expect("reopen");
    let violations = engine.read(billhost::ledger::check).expect("check");
    assert!(violations.is_empty(), "{violations:?}");
}
