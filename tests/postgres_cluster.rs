//! Several billhost servers on one PostgreSQL database (`docs/postgres.md`, "Several servers"):
//! scheduled script jobs, periodic funcs and the outbox run once across engines on one database;
//! two `billhost serve` processes under 32 HTTP clients on shared clients keep every answered
//! operation, a clean ledger, gapless invoice numbers, sessions that work on either server, one
//! credit for a callback sent to both, and one job run per period. Each test starts its own
//! cluster (`support/pg.rs`).
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
#[path = "support/smtp.rs"]
mod smtp;

use billhost::config::{Config, SmtpFile};
use billhost::func::{Access, ActionMode, FuncDecl};
use billhost::store::{Connection, params};
use billhost::{Doc, Engine, EngineConfig, clock, mail};
use billhost_plugin_sdk::crypto::{hex, hmac_sha256};
use common::TempDir;
use http1::{Answer, Conn, enc};
use serve_bin::Server;
use smtp::SmtpServer;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

const ADMIN_PASSWORD: &str = "ClusterTest1";
const SECRET: &str = "cluster-testpay-secret";
const TIMEOUT: Duration = Duration::from_secs(30);

/// Waits (at most a minute) until `done` holds.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn count(engine: &Engine, sql: &str) -> i64 {
    engine
        .read(|c| Ok(c.query_row(sql, [], |r| r.get::<i64>(0))?))
        .expect(sql)
}

/// A job of `every` seconds named `name` that adds a group named `label N` at its N-th run.
fn job_script(dir: &Path, name: &str, every: u64, label: &str) {
    let scripts = dir.join("scripts");
    std::fs::create_dir_all(&scripts).expect("scripts folder");
    std::fs::write(
        scripts.join("job.lua"),
        format!(
            r#"
local n = 0
billing.every({every}, "{name}", function()
  n = n + 1
  billing.call("accountgroup.edit", {{ sok = "ok", name = "{label} " .. n }})
end)
"#
        ),
    )
    .expect("job script");
}

// ------------------------------------------------------------------ engines on one database

/// Two engines on one database, as two servers would be: each runs a scheduler with the same
/// job and the same periodic func every second, and both deliver the outbox at once. Every
/// period's job and periodic func run once between them, every message is sent once.
#[test]
fn jobs_periodic_funcs_and_mail_run_once_across_engines_on_one_database() {
    let Some(cluster) = pg::Cluster::start("once") else {
        return;
    };
    let url = cluster.database("once");
    let smtp = SmtpServer::start();
    let dirs: Vec<TempDir> = ["A", "B"]
        .iter()
        .map(|tag| {
            let dir = TempDir::new(&format!("once-{tag}"));
            job_script(dir.path(), "tick", 1, &format!("tick {tag}"));
            dir
        })
        .collect();
    let engines: Vec<Arc<Engine>> = dirs
        .iter()
        .zip(["A", "B"])
        .map(|(dir, tag)| {
            let mut config = EngineConfig::new(&url).with_scripts(dir.path().join("scripts"));
            config.settings = Config {
                templates: None,
                smtp: Some(SmtpFile {
                    host: Some(smtp.addr.ip().to_string()),
                    port: Some(smtp.addr.port()),
                    from: Some("Billing <billing@example.com>".into()),
                    timeout_secs: Some(10),
                    ..SmtpFile::default()
                }),
            };
            let mut engine = Engine::open(config).expect("open on PostgreSQL");
            // A periodic func that calls out (as a gateway check does) and writes a group.
            let runs = AtomicU64::new(0);
            engine.add_func(FuncDecl::action(
                "test.periodic",
                "a periodic func of the test",
                Access::ADMIN,
                ActionMode::CallOut,
                move |ctx, _| {
                    let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
                    ctx.write(|w| {
                        w.db.execute(
                            "INSERT INTO accountgroup (name, created) VALUES (?1, ?2)",
                            params![format!("periodic {tag} {n}"), w.now],
                        )?;
                        Ok(Doc::ok())
                    })
                },
            ));
            engine.add_periodic("test.periodic", 1);
            Arc::new(engine)
        })
        .collect();
    let groups = |like: &str| {
        count(
            &engines[0],
            &format!("SELECT count(*) FROM accountgroup WHERE name LIKE '{like} %'"),
        )
    };
    let schedulers: Vec<_> = engines
        .iter()
        .map(|e| billhost::script::Scheduler::spawn(e.clone()))
        .collect();
    wait_for("five periods of the job and the func", || {
        groups("tick") >= 5 && groups("periodic") >= 5
    });
    drop(schedulers);
    let runs = |job: &str| {
        count(
            &engines[0],
            &format!("SELECT count(DISTINCT period_start) FROM scheduled_run WHERE job = '{job}'"),
        )
    };
    // One group per period claimed: run once per server, there would be two.
    assert_eq!(groups("tick"), runs("job tick"));
    assert_eq!(groups("periodic"), runs("func test.periodic"));
    assert_eq!(
        count(&engines[0], "SELECT count(*) FROM scheduled_run"),
        runs("job tick") + runs("func test.periodic"),
        "one claim per job and period"
    );

    // 40 messages queued; four deliverers, two on each engine, at once.
    const MESSAGES: i64 = 40;
    engines[0]
        .write(|c: &Connection| {
            let now = clock::now();
            for i in 0..MESSAGES {
                c.execute(
                    "INSERT INTO outbox (recipient, subject, body, next_attempt, created)
                     VALUES (?1, ?2, 'hello', ?3, ?3)",
                    params![
                        format!("client{i}@example.com"),
                        format!("message {i}"),
                        now
                    ],
                )?;
            }
            Ok(())
        })
        .expect("queue");
    let deliverers: Vec<_> = (0..4)
        .map(|k| {
            let engine = engines[k % 2].clone();
            std::thread::spawn(move || {
                let smtp = engine.config().settings.smtp().expect("smtp");
                mail::deliver_due(&engine, &smtp, clock::unix_now())
            })
        })
        .collect();
    let reports: Vec<mail::Report> = deliverers
        .into_iter()
        .map(|d| d.join().expect("deliverer"))
        .collect();
    for r in &reports {
        assert!(
            r.errors.is_empty() && r.deferred.is_empty() && r.failed.is_empty(),
            "{r:?}"
        );
    }
    let sent: Vec<i64> = reports.iter().flat_map(|r| r.sent.clone()).collect();
    let distinct: BTreeSet<i64> = sent.iter().copied().collect();
    assert_eq!(sent.len() as i64, MESSAGES, "{sent:?}");
    assert_eq!(distinct.len() as i64, MESSAGES);
    let received = smtp.wait_for(MESSAGES as usize);
    assert_eq!(
        received.len() as i64,
        MESSAGES,
        "each message reached SMTP once"
    );
    let ids: BTreeSet<String> = received
        .iter()
        .filter_map(|m| {
            m.lines()
                .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
                .map(str::to_string)
        })
        .collect();
    assert_eq!(ids.len() as i64, MESSAGES, "distinct Message-IDs");
    assert_eq!(
        count(
            &engines[0],
            "SELECT count(*) FROM outbox WHERE status = 'sent' AND attempts = 1"
        ),
        MESSAGES
    );
    assert_eq!(
        count(&engines[0], "SELECT count(*) FROM outbox_attempt"),
        MESSAGES
    );
}

// ------------------------------------------------------------------ two servers, one database

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The folder of this test build's profile, where the testpay plugin is built once (`cargo
/// test` does not build other members' libraries).
fn plugin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = PathBuf::from(env!("CARGO_BIN_EXE_billhost"));
        let profile = exe.parent().expect("profile dir").to_path_buf();
        let target = profile.parent().expect("target dir").to_path_buf();
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args(["build", "--offline", "-p", "billhost-plugin-testpay"])
            .arg("--target-dir")
            .arg(&target)
            .current_dir(workspace());
        if profile.file_name().and_then(|n| n.to_str()) == Some("release") {
            cmd.arg("--release");
        }
        let out = cmd.output().expect("cargo build");
        assert!(
            out.status.success(),
            "building testpay: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        profile
    })
}

fn authinfo() -> String {
    format!("authinfo={}", enc(&format!("admin:{ADMIN_PASSWORD}")))
}

fn connect(addr: SocketAddr) -> Conn {
    Conn::connect(addr, TIMEOUT).expect("connect")
}

/// The session id of an `auth` answer (`<auth id="SID" ...>`).
fn session_of(answer: &Answer) -> Option<String> {
    let at = answer.body.find("<auth ")?;
    let rest = &answer.body[at..];
    let start = rest.find("id=\"")? + 4;
    let end = start + rest[start..].find('"')?;
    Some(rest[start..end].to_string())
}

fn ok_or(answer: std::io::Result<Answer>, what: &str) -> Result<Answer, String> {
    match answer {
        Ok(a) if a.status == 200 && !a.body.contains("<error") => Ok(a),
        Ok(a) => Err(format!("{what} answered {}: {}", a.status, a.body)),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

fn id_in(answer: &Answer, what: &str) -> Result<i64, String> {
    answer
        .xml_field("id")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{what} without an id: {}", answer.body))
}

/// A shared client: two HTTP clients, one on each server, work on it.
struct Shared {
    account: i64,
    subaccount: i64,
}

/// What one HTTP client got answered ok.
#[derive(Default)]
struct Done {
    created: Vec<i64>,
    paid: Vec<i64>,
    expenses: Vec<i64>,
    refunded: Vec<i64>,
}

/// Logs in on `peer`, then for `secs` works on `own` with that session: creates a payment, sets
/// it paid, spends 1.00 (every third postpaid) and, every other round, refunds 1.00 of it.
fn traffic(
    own: SocketAddr,
    peer: SocketAddr,
    client: &Shared,
    until: Instant,
) -> Result<Done, String> {
    let login = ok_or(
        connect(peer).post(
            "/billmgr",
            &format!("func=auth&username=admin&password={ADMIN_PASSWORD}"),
        ),
        "auth",
    )?;
    let sid = session_of(&login).ok_or_else(|| format!("no session: {}", login.body))?;
    let mut conn = connect(own);
    let who = ok_or(
        conn.get(&format!("/billmgr?func=whoami&auth={sid}")),
        "whoami",
    )?;
    if who.xml_field("login") != Some("admin") {
        return Err(format!("a session of the other server: {}", who.body));
    }
    let auth = format!("auth={sid}");
    let mut done = Done::default();
    let mut round = 0u64;
    while Instant::now() < until {
        round += 1;
        let created = ok_or(
            conn.post(
                "/billmgr",
                &format!(
                    "func=payment.edit&sok=ok&plid={}&paymethod=1&paymethodamount=10.00&{auth}",
                    client.account
                ),
            ),
            "payment.edit",
        )?;
        let payment = id_in(&created, "payment.edit")?;
        done.created.push(payment);
        ok_or(
            conn.get(&format!(
                "/billmgr?func=payment.setpaid&elid={payment}&{auth}"
            )),
            "payment.setpaid",
        )?;
        done.paid.push(payment);
        let postpaid = if round.is_multiple_of(3) {
            "&postpaid=on"
        } else {
            ""
        };
        let expense = ok_or(
            conn.post(
                "/billmgr",
                &format!(
                    "func=subaccount.expense.edit&sok=ok&plid={}&subaccount={}&amount=1.00&name=Load{postpaid}&{auth}",
                    client.account, client.subaccount
                ),
            ),
            "subaccount.expense.edit",
        )?;
        done.expenses.push(id_in(&expense, "expense")?);
        if round.is_multiple_of(2) {
            ok_or(
                conn.post(
                    "/billmgr",
                    &format!("func=payment.refund&elid={payment}&sok=ok&amount=1.00&{auth}"),
                ),
                "payment.refund",
            )?;
            done.refunded.push(payment);
        }
    }
    Ok(done)
}

fn testpay_callback(addr: SocketAddr, paymethod: i64, payment: i64, external: &str) -> Answer {
    let body = serde_json::json!({
        "payment_id": payment,
        "external_id": external,
        "amount": "7.00",
        "status": "paid",
    })
    .to_string();
    let signature = hex(&hmac_sha256(SECRET.as_bytes(), body.as_bytes()));
    connect(addr)
        .post(
            "/billmgr",
            &format!(
                "func=payment.callback&module=testpay&paymethod={paymethod}&body={}&signature={signature}",
                enc(&body)
            ),
        )
        .expect("callback")
}

/// `billhost check` through the binary on `db`.
fn check_clean(db: &str) {
    let check = Command::new(env!("CARGO_BIN_EXE_billhost"))
        .args(["--db", db, "--scripts", "/nonexistent", "check"])
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
}

/// Stops a server with SIGTERM and waits for it to exit cleanly.
fn stop(mut server: Server) {
    let killed = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(killed.success());
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
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
        std::fs::read_to_string(&server.stderr).unwrap_or_default()
    );
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
fn two_servers_on_one_database_keep_the_ledger_and_run_jobs_once() {
    let Some(cluster) = pg::Cluster::start("two") else {
        return;
    };
    let url = cluster.database("two");
    const SHARED: usize = 16;
    const SECS: u64 = 10;
    let clients: Vec<Shared> = {
        let engine = Engine::open(EngineConfig::new(&url)).expect("open");
        seed::usd_bank(&engine, ADMIN_PASSWORD);
        seed::payers(&engine, "shared", SHARED)
            .into_iter()
            .map(|(account, subaccount)| Shared {
                account,
                subaccount,
            })
            .collect()
    };
    let clients = Arc::new(clients);
    let plugins = plugin_dir().to_str().expect("utf-8").to_string();
    let dirs: Vec<TempDir> = ["A", "B"]
        .iter()
        .map(|tag| {
            let dir = TempDir::new(&format!("two-{tag}"));
            job_script(dir.path(), "tick", 2, &format!("tick {tag}"));
            dir
        })
        .collect();
    let servers: Vec<Server> = dirs
        .iter()
        .zip(["a", "b"])
        .map(|(dir, run)| {
            serve_bin::serve_on(
                dir,
                std::ffi::OsStr::new(&url),
                run,
                &["--plugins", &plugins],
                &[],
            )
        })
        .collect();
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    for &addr in &addrs {
        // One login per server first, so that the traffic finds the credential verified.
        let who = ok_or(
            connect(addr).get(&format!("/billmgr?func=whoami&{}", authinfo())),
            "whoami",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(who.xml_field("login"), Some("admin"), "{}", who.body);
    }

    // A testpay method and a client of its own for the callbacks.
    let mut admin = connect(addrs[0]);
    let settings = serde_json::json!({ "secret": SECRET }).to_string();
    let pm = id_in(
        &ok_or(
            admin.post(
                "/billmgr",
                &format!(
                    "func=paymethod.edit&sok=ok&name=TestPay&currency=840&module=testpay&settings={}&{}",
                    enc(&settings),
                    authinfo()
                ),
            ),
            "paymethod.edit",
        )
        .unwrap_or_else(|e| {
            panic!(
                "{e}: {}",
                std::fs::read_to_string(&servers[0].stderr).unwrap_or_default()
            )
        }),
        "paymethod",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let payer = id_in(
        &ok_or(
            admin.post(
                "/billmgr",
                &format!(
                    "func=account.edit&sok=ok&email=payer%40example.com&{}",
                    authinfo()
                ),
            ),
            "account.edit",
        )
        .unwrap_or_else(|e| panic!("{e}")),
        "account",
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let until = Instant::now() + Duration::from_secs(SECS);
    let workers: Vec<_> = (0..2 * SHARED)
        .map(|k| {
            let clients = clients.clone();
            let (own, peer) = (addrs[k % 2], addrs[(k + 1) % 2]);
            std::thread::spawn(move || traffic(own, peer, &clients[k / 2], until))
        })
        .collect();

    // Meanwhile: testpay payments whose signed callback comes 4 times to each server at once.
    let mut callbacks = Vec::new();
    while Instant::now() + Duration::from_secs(2) < until {
        let added = ok_or(
            admin.post(
                "/billmgr",
                &format!(
                    "func=payment.add&plid={payer}&sok=ok&paymethod={pm}&amount=7.00&{}",
                    authinfo()
                ),
            ),
            "payment.add",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let payment = id_in(&added, "payment.add").unwrap_or_else(|e| panic!("{e}"));
        let external = added
            .xml_field("external_id")
            .expect("external id")
            .to_string();
        let senders: Vec<_> = (0..8)
            .map(|k| {
                let (addr, external) = (addrs[k % 2], external.clone());
                std::thread::spawn(move || testpay_callback(addr, pm, payment, &external))
            })
            .collect();
        for s in senders {
            let answer = s.join().expect("callback sender");
            assert!(
                answer.status == 200 && !answer.body.contains("<error"),
                "callback: {}",
                answer.body
            );
        }
        callbacks.push(payment);
    }
    let done: Vec<Done> = workers
        .into_iter()
        .map(|w| w.join().expect("worker").unwrap_or_else(|e| panic!("{e}")))
        .collect();
    drop(admin);
    let stderr: Vec<String> = servers
        .iter()
        .map(|s| std::fs::read_to_string(&s.stderr).unwrap_or_default())
        .collect();
    for server in servers {
        stop(server);
    }
    let (paid, spent, refunded) = done.iter().fold((0, 0, 0), |(p, e, r), d| {
        (p + d.paid.len(), e + d.expenses.len(), r + d.refunded.len())
    });
    eprintln!(
        "two servers, {SECS} s: {paid} payments made and paid, {spent} expenses, {refunded} refunds, {} callbacks",
        callbacks.len()
    );
    assert!(paid > 0 && spent > 0 && refunded > 0, "no traffic");
    assert!(!callbacks.is_empty(), "no callback was sent");

    check_clean(&url);
    let engine = Engine::open(EngineConfig::new(&url)).expect("reopen");

    // Every answered operation is there, and nothing else.
    for (i, client) in clients.iter().enumerate() {
        let mine: Vec<&Done> = vec![&done[2 * i], &done[2 * i + 1]];
        let created: BTreeSet<i64> = mine.iter().flat_map(|d| d.created.clone()).collect();
        let paid: BTreeSet<i64> = mine.iter().flat_map(|d| d.paid.clone()).collect();
        let all = ids(
            &engine,
            "SELECT id FROM payment WHERE account_id = ?1",
            client.account,
        );
        assert_eq!(all.len(), created.len() + 1, "client {}", client.account);
        assert!(all.is_superset(&created));
        let credited = ids(
            &engine,
            "SELECT id FROM payment WHERE account_id = ?1 AND status = 4 AND paydate IS NOT NULL",
            client.account,
        );
        assert_eq!(
            credited, paid,
            "client {}: credited payments",
            client.account
        );
        let expenses: BTreeSet<i64> = mine.iter().flat_map(|d| d.expenses.clone()).collect();
        let stored = ids(
            &engine,
            "SELECT id FROM expense WHERE subaccount_id = ?1 AND deleted = 0 AND amount = 100",
            client.subaccount,
        );
        assert_eq!(stored, expenses, "client {}: expenses", client.account);
        for d in &mine {
            for &p in &d.refunded {
                assert_eq!(
                    ids(
                        &engine,
                        "SELECT id FROM refund WHERE payment_id = ?1 AND paymethodamount = 100",
                        p
                    )
                    .len(),
                    1,
                    "payment {p}: one refund"
                );
            }
        }
        let refunds: usize = mine.iter().map(|d| d.refunded.len()).sum();
        assert_eq!(
            count(
                &engine,
                &format!(
                    "SELECT count(*) FROM refund r JOIN payment p ON p.id = r.payment_id WHERE p.account_id = {}",
                    client.account
                )
            ) as usize,
            refunds
        );
    }

    // Invoice numbers: unique and gapless across both servers' payments.
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
    assert_eq!(numbers, expected, "invoice numbers 1..{}", numbers.len());

    // Each callback credited once, however many came to each server.
    for &p in &callbacks {
        assert_eq!(
            count(
                &engine,
                &format!("SELECT status FROM payment WHERE id = {p}")
            ),
            4
        );
        assert_eq!(
            count(
                &engine,
                &format!(
                    "SELECT count(*) FROM history WHERE object_type = 'payment' AND object_id = {p} AND description LIKE 'paid:%'"
                )
            ),
            1,
            "payment {p}: one credit"
        );
    }
    assert_eq!(
        count(
            &engine,
            &format!("SELECT coalesce(sum(balance), 0) FROM subaccount WHERE account_id = {payer}")
        ),
        700 * callbacks.len() as i64
    );

    // The job ran once per period between the two servers, and at least twice.
    let ticks = count(
        &engine,
        "SELECT count(*) FROM accountgroup WHERE name LIKE 'tick %'",
    );
    let periods = count(
        &engine,
        "SELECT count(DISTINCT period_start) FROM scheduled_run WHERE job = 'job tick'",
    );
    assert!(ticks >= 2, "the job ran {ticks} times: {stderr:?}");
    assert_eq!(ticks, periods, "one run per period: {stderr:?}");
}
