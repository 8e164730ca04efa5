//! The web panel's cost: a list page of 100 clients rendered through the panel
//! (`GET /f/account?p_cnt=100`: `whoami`, the list and its stored filter through the dispatcher,
//! then the HTML) against the same func over `/billmgr` as XML (`func=account&p_cnt=100`), with
//! the same session, over HTTP/1.1 keep-alive to the server in-process. Rounds alternate so that
//! noise hits both sides alike; the figure is the ratio of the mean times per page.
//!
//! `cargo bench --bench panel`; `BENCH_SECS` scales the measuring time (default 1.0).

#[path = "../tests/support/http1.rs"]
mod http1;
#[path = "../tests/support/seed.rs"]
mod seed;

use billhost::server::{self, ServerConfig};
use billhost::store::params;
use billhost::{Engine, EngineConfig};
use http1::Conn;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLIENTS: i64 = 1_000;
const PASSWORD: &str = "BenchPass1";
const TIMEOUT: Duration = Duration::from_secs(30);

fn main() {
    let scale: f64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let dir = std::env::temp_dir().join(format!("billhost-bench-panel-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let engine = Engine::open(EngineConfig::new(dir.join("bench.db"))).expect("engine");
    seed::usd_bank(&engine, PASSWORD);
    engine
        .write(|c| {
            let mut stmt = c.prepare(
                "INSERT INTO account (project_id, name, realname, email, registration_date)
                 VALUES (1, ?1, ?1, ?2, '2026-01-01 00:00:00')",
            )?;
            for i in 0..CLIENTS {
                stmt.execute(params![format!("client {i}"), format!("c{i}@example.com")])?;
            }
            Ok(())
        })
        .expect("seed");
    let engine = Arc::new(engine);

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (bound, addr) = std::sync::mpsc::channel::<SocketAddr>();
    let config = ServerConfig::default();
    let workers = config.workers;
    let server = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            bound
                .send(listener.local_addr().expect("addr"))
                .expect("addr");
            server::serve(listener, engine, config, async {
                let _ = stopped.await;
            })
            .await
            .expect("serve");
        });
    });
    let addr = addr.recv_timeout(TIMEOUT).expect("server up");
    let mut conn = Conn::connect(addr, TIMEOUT).expect("connect");
    let login = conn
        .get(&format!(
            "/billmgr?func=auth&username=admin&password={PASSWORD}"
        ))
        .expect("auth");
    // `<auth id="SID" level="28">SID</auth>`
    let sid = login
        .body
        .split_once("<auth ")
        .and_then(|(_, rest)| rest.split_once('>'))
        .and_then(|(_, rest)| rest.split_once("</auth>"))
        .map(|(sid, _)| sid.to_string())
        .expect("a session");
    let cookie = format!("billmgrses5={sid}");

    let panel = |conn: &mut Conn| {
        let a = conn
            .get_with_cookie("/f/account?p_cnt=100", &cookie)
            .expect("panel page");
        assert_eq!(a.status, 200);
        assert_eq!(a.body.matches("<tr data-id=").count(), 100);
    };
    let api = |conn: &mut Conn| {
        let a = conn
            .get_with_cookie("/billmgr?func=account&p_num=1&p_cnt=100&out=xml", &cookie)
            .expect("api page");
        assert_eq!(a.status, 200);
        assert_eq!(a.body.matches("<elem>").count(), 100);
    };
    // Warm both paths (statement caches, templates).
    for _ in 0..20 {
        panel(&mut conn);
        api(&mut conn);
    }
    let rounds = 6;
    let per_round = Duration::from_secs_f64(0.5 * scale);
    let (mut panel_time, mut panel_n, mut api_time, mut api_n) =
        (Duration::ZERO, 0u64, Duration::ZERO, 0u64);
    for _ in 0..rounds {
        let (t, n) = measure(per_round, || panel(&mut conn));
        panel_time += t;
        panel_n += n;
        let (t, n) = measure(per_round, || api(&mut conn));
        api_time += t;
        api_n += n;
    }
    let panel_ms = panel_time.as_secs_f64() * 1e3 / panel_n as f64;
    let api_ms = api_time.as_secs_f64() * 1e3 / api_n as f64;
    println!(
        "billhost panel bench ({CLIENTS} clients, one keep-alive connection, list of 100 rows)"
    );
    println!(
        "  panel  GET /f/account?p_cnt=100              {panel_ms:>8.3} ms/page ({panel_n} pages)"
    );
    println!(
        "  API    GET /billmgr?func=account&p_cnt=100   {api_ms:>8.3} ms/page ({api_n} pages)"
    );
    println!("  panel / API = {:.2}x (target <= 2x)", panel_ms / api_ms);
    drop(conn);
    let _ = stop.send(());
    let _ = server.join();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `f` for about `time`; answers the time taken and the runs.
fn measure(time: Duration, mut f: impl FnMut()) -> (Duration, u64) {
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < time {
        f();
        n += 1;
    }
    (start.elapsed(), n)
}
