//! `/billmgr` under load, with its own load generator (threads with std `TcpStream`, HTTP/1.1
//! keep-alive), the server in-process on 127.0.0.1 on a tokio runtime built as `billhost serve`
//! builds it. Printed as ratios measured in the same run, rounds alternating so that noise hits
//! both sides alike:
//!
//! - (a) the server's own CPU time per request (the process's CPU clock less the load
//!   generator threads' own clocks): an `account.edit elid=N` view (the client view) over HTTP
//!   against a bare axum endpoint on the same runtime whose handler calls the same func
//!   in-process (`Engine::handle_inline`, the XML) with none of the server's request handling;
//!   target view <= 1.25 x (bare + func). Also, by parts, a bare endpoint answering a fixed
//!   body of the same size plus the func on threads of its own (a sum that leaves out what a
//!   slower answer costs the kernel and the runtime), and the old throughput ratio view/bare,
//!   with two load generators (a thread per connection; event loops as wrk);
//! - (b) durable `payment.setpaid` from 64 concurrent HTTP clients (group commit) against the
//!   same run with `synchronous=NORMAL` (target >= 0.9: group commit hides the fsync) and
//!   against raw rusqlite doing the same writes in group-commit batches in-process (64 a
//!   transaction, a savepoint each, `synchronous=FULL`; target >= 0.5: what HTTP, dispatch and
//!   our batching cost on top of the bare SQL); also, as before, raw rusqlite one transaction
//!   at a time in WAL and with a rollback journal;
//! - (c) p50/p99 latencies of each;
//! - (p) (b) on PostgreSQL 15, on a throwaway cluster the bench starts (`fsync=on`): durable
//!   `payment.setpaid` (`synchronous_commit=on`) from 64 HTTP clients against a PG-backed
//!   server, against the same with `synchronous_commit=off` (target >= 0.8: group commit hides
//!   the WAL flush) and against the raw `postgres` crate doing the same writes one transaction
//!   at a time with `synchronous_commit=on`, one client (target >= 2); and two servers on one
//!   database (32 clients each) against one server (on 2 CPUs no gain is expected: the figure
//!   shows what the writers' cross-server lock costs). Skipped, saying so, without PostgreSQL.
//!
//! `cargo bench --bench http_load`; `BENCH_SECS` scales the measuring time (default 1.0, about
//! 20 s in all), `BENCH_READERS` sets the connections of (a) (default 16), `BENCH_WORKERS` the
//! async workers (as `serve --workers N`; default as `serve`), `BENCH_PARTS` the parts to run
//! (letters of `abp`, default all), `BENCH_PROFILE=view` or `=bare` one side of (a) alone (for
//! `perf`).

#[path = "../tests/support/http1.rs"]
mod http1;
#[path = "../tests/support/pg.rs"]
mod pg;
#[path = "../tests/support/seed.rs"]
mod seed;

#[path = "support/cpu.rs"]
mod cpu;
#[path = "support/load.rs"]
mod load;
#[path = "support/raw.rs"]
mod raw;
#[path = "support/raw_pg.rs"]
mod raw_pg;
use axum::Router;
use axum::http::header;
use axum::routing::get;
use billhost::server::{self, ServerConfig};
use billhost::store::checkpoint::BACKSTOP_PAGES;
use billhost::store::{self, Durability};
use billhost::{Engine, EngineConfig, Params, wire};
use http1::{Conn, enc};
use raw::{raw_setpaid, raw_setpaid_batch};
use rusqlite::Connection;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Clients whose views (a) reads.
const ACCOUNTS: i64 = 10_000;
/// Concurrent `payment.setpaid` clients of (b), each paying its own client's payments.
const WRITERS: usize = 64;
/// New payments per writer: more than one can set paid in the time (b) runs.
const PAYMENTS_EACH: i64 = 4_000;
const ADMIN_PASSWORD: &str = "BenchPass1";
const TIMEOUT: Duration = Duration::from_secs(30);

/// What every part measures with.
struct Bench {
    runtime: Runtime,
    scale: f64,
    authinfo: String,
    dir: std::path::PathBuf,
    base: std::path::PathBuf,
    /// Each writer's new payments.
    writers: Vec<Vec<i64>>,
}

impl Bench {
    fn secs(&self, s: f64) -> Duration {
        Duration::from_secs_f64(s * self.scale)
    }

    /// A fresh copy of the prepared database.
    fn copy(&self, name: &str) -> std::path::PathBuf {
        let path = self.dir.join(name);
        std::fs::copy(&self.base, &path).expect("copy database");
        path
    }

    /// A server over a copy of the prepared database, with the credential verified (argon2
    /// once, then cached: as for any client that repeats it).
    fn serve(&self, name: &str, durability: Durability) -> Serving {
        self.serve_db(&self.copy(name), durability)
    }

    /// A server over the database `db` (a SQLite file or a PostgreSQL URL), the credential
    /// verified as [`Bench::serve`] does.
    fn serve_db(&self, db: &Path, durability: Durability) -> Serving {
        let serving = self.runtime.serve(open(db, durability));
        let answer = Conn::connect(serving.addr, TIMEOUT)
            .and_then(|mut c| c.get(&format!("/billmgr?func=whoami&{}", self.authinfo)))
            .expect("whoami");
        assert!(
            answer.body.contains("<login>admin</login>"),
            "{}",
            answer.body
        );
        serving
    }

    /// Stops a server; the ledger it wrote is consistent.
    fn stop(&self, serving: Serving) {
        let engine = self.runtime.stop(serving);
        let violations = engine.read(billhost::ledger::check).expect("check");
        assert!(violations.is_empty(), "{violations:?}");
    }
}

fn main() {
    let scale: f64 = env_or("BENCH_SECS", 1.0);
    let readers: usize = env_or("BENCH_READERS", 16);
    let parts: String = env_or("BENCH_PARTS", "abp".to_string());
    let dir = std::env::temp_dir().join(format!("billhost-bench-http-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");

    let started = Instant::now();
    let base = dir.join("base.db");
    let writers = prepare(&base);
    eprintln!("prepared in {:.1} s", started.elapsed().as_secs_f64());
    let bench = Bench {
        runtime: Runtime::start(),
        scale,
        authinfo: format!("authinfo={}", enc(&format!("admin:{ADMIN_PASSWORD}"))),
        dir: dir.clone(),
        base,
        writers,
    };
    println!(
        "billhost HTTP load bench: server and load generator on one machine ({} CPUs)",
        cpus()
    );
    println!();
    if parts.contains('a') {
        read_func_against_bare_endpoint(&bench, readers);
    }
    if parts.contains('b') {
        durable_setpaid_against_raw(&bench);
    }
    if parts.contains('p') {
        postgres_setpaid(&bench);
    }
    println!(
        "(c) latencies: in the rows above (p50/p99 per request, as the load generator saw them)"
    );
    drop(bench);
    eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(&dir);
}

/// (a) `account.edit elid=N` over HTTP against a bare endpoint answering the same bytes.
fn read_func_against_bare_endpoint(bench: &Bench, readers: usize) {
    let server = bench.serve("read.db", Durability::Full);
    let authinfo = &bench.authinfo;
    let view = Conn::connect(server.addr, TIMEOUT)
        .and_then(|mut c| c.get(&format!("/billmgr?func=account.edit&elid=1&{authinfo}")))
        .expect("account view");
    assert!(view.body.contains("<email>"), "{}", view.body);
    let bare = bench.runtime.bare(
        view.body.clone(),
        server.engine.clone(),
        format!("admin:{ADMIN_PASSWORD}"),
    );

    println!(
        "(a) account.edit view by elid vs a bare endpoint answering {} bytes, {readers} keep-alive connections",
        view.body.len()
    );
    if let Ok(side) = std::env::var("BENCH_PROFILE") {
        profile_one_side(bench, &side, server.addr, bare.addr, readers);
    }
    let mut rates = Vec::new();
    let (mut func_all, mut bare_all, mut both_all) =
        (Stats::default(), Stats::default(), Stats::default());
    for (client, what) in [
        (Client::Threads, "a thread per connection"),
        (Client::Events, "event loops, one per CPU (as wrk)"),
    ] {
        let (mut func_a, mut bare_a, mut both_a) =
            (Stats::default(), Stats::default(), Stats::default());
        for _ in 0..2 {
            bare_a.add(load(client, bare.addr, readers, bench.secs(1.5), |_, _| {
                Some("/bare".to_string())
            }));
            func_a.add(load(
                client,
                server.addr,
                readers,
                bench.secs(1.5),
                view_target(authinfo),
            ));
            both_a.add(load(
                client,
                bare.addr,
                readers,
                bench.secs(1.5),
                bare_func_target,
            ));
        }
        println!("    load generator: {what}");
        bare_a.print("bare axum endpoint");
        both_a.print("bare endpoint + the func");
        func_a.print("account.edit view");
        println!(
            "    throughput ratio view/bare: {:.2} (the old target >= 0.5)",
            func_a.rate() / bare_a.rate()
        );
        rates.push((bare_a.rate(), func_a.rate()));
        func_all.server_cpu += func_a.server_cpu;
        func_all.requests += func_a.requests;
        bare_all.server_cpu += bare_a.server_cpu;
        bare_all.requests += bare_a.requests;
        both_all.server_cpu += both_a.server_cpu;
        both_all.requests += both_a.requests;
    }

    // Where the time goes: the same call in-process as the server makes it (authentication and
    // the func in one read transaction, the XML), on as many threads as there are CPUs,
    // without HTTP.
    let engine = server.engine.clone();
    let password = format!("admin:{ADMIN_PASSWORD}");
    let threads = cpus();
    let deadline = Instant::now() + bench.secs(1.0);
    let start = Instant::now();
    let (calls, func_cpu): (u64, Duration) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (engine, password) = (&engine, &password);
                s.spawn(move || {
                    let cpu_start = cpu::thread();
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        let body = view_in_process(engine, &view_elid(t, n).to_string(), password);
                        assert!(!body.contains("<error"), "{body}");
                        n += 1;
                    }
                    (n, cpu::thread().saturating_sub(cpu_start))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .fold((0, Duration::ZERO), |(n, t), (m, u)| (n + m, t + u))
    });
    let in_process = calls as f64 / start.elapsed().as_secs_f64();
    let cpu_us = |rate: f64| 1e6 * threads as f64 / rate;
    println!(
        "    where the time goes: the same call in-process on {threads} threads (no HTTP) {in_process:.0} /s"
    );
    println!(
        "    CPU per request, all {threads} CPUs busy: the func alone {:.1} µs; bare HTTP {:.1} / {:.1} µs \
         and the func over HTTP {:.1} / {:.1} µs (thread / event-loop generator)",
        cpu_us(in_process),
        cpu_us(rates[0].0),
        cpu_us(rates[1].0),
        cpu_us(rates[0].1),
        cpu_us(rates[1].1)
    );
    let func_us = 1e6 * func_cpu.as_secs_f64() / calls.max(1) as f64;
    let (view_us, bare_us) = (func_all.cpu_us(), bare_all.cpu_us());
    let both_us = both_all.cpu_us();
    println!(
        "    server CPU per request, by parts: the view over HTTP {view_us:.1} µs; a bare request \
         {bare_us:.1} µs + the func in-process {func_us:.1} µs = {:.1} µs; ratio {:.2} (the \
         sum leaves out what a slower answer costs the kernel and the runtime: see docs/bench.md)",
        bare_us + func_us,
        view_us / (bare_us + func_us)
    );
    println!(
        "    (a) server CPU per request: the view over HTTP {view_us:.1} µs; a bare request \
         whose handler calls the same func in-process {both_us:.1} µs"
    );
    println!(
        "    (a) ratio view/(bare + func): {:.2} (target <= 1.25)",
        view_us / both_us
    );
    println!();
    drop(bare);
    bench.stop(server);
}

/// The bare endpoint's func requests: the same clients in the same order as [`view_target`].
fn bare_func_target(t: usize, i: u64) -> Option<String> {
    Some(format!("/bare-func?elid={}", view_elid(t, i)))
}

/// The client that connection (or thread) `t` views `i`th: spread over all of them.
fn view_elid(t: usize, i: u64) -> i64 {
    (t as i64 * 7919 + i as i64 * 104_729) % ACCOUNTS + 1
}

/// `account.edit elid` as the server answers it inline (credentials and func in one read
/// transaction, `Engine::handle_inline`), rendered as XML: the func's own cost in (a).
fn view_in_process(engine: &Engine, elid: &str, authinfo: &str) -> String {
    let params = Params::from_pairs([
        ("func", "account.edit"),
        ("elid", elid),
        ("authinfo", authinfo),
    ]);
    let doc = engine
        .handle_inline("account.edit", &params, None, "127.0.0.1")
        .expect("a cached credential: the inline lane");
    let meta = wire::Meta {
        func: "account.edit",
        lang: "en",
    };
    wire::render(&doc, wire::Format::Xml, meta)
}

/// (a)'s requests: connection `t`'s `i`th views a client spread over all of them.
fn view_target(authinfo: &str) -> impl Fn(usize, u64) -> Option<String> + Sync + '_ {
    move |t, i| {
        Some(format!(
            "/billmgr?func=account.edit&elid={}&{authinfo}",
            view_elid(t, i)
        ))
    }
}

/// `BENCH_PROFILE=view` (or `=bare`): after a 2 s pause (for `perf record -D 3000`), one side
/// of (a) alone for 4 s with the event-loop generator; prints its rate and ends the process.
fn profile_one_side(
    bench: &Bench,
    side: &str,
    server: SocketAddr,
    bare: SocketAddr,
    readers: usize,
) -> ! {
    std::thread::sleep(Duration::from_secs(2));
    eprintln!("profiling the {side} side");
    let stats = if side == "bare" {
        load(Client::Events, bare, readers, bench.secs(4.0), |_, _| {
            Some("/bare".to_string())
        })
    } else {
        load(
            Client::Events,
            server,
            readers,
            bench.secs(4.0),
            view_target(&bench.authinfo),
        )
    };
    eprintln!("rate {:.0} /s", stats.rate());
    std::process::exit(0)
}

/// Rounds of each HTTP side of (b), alternating (4 s in all per side at `BENCH_SECS=1`).
const HTTP_ROUNDS: usize = 8;

/// (b) Durable `payment.setpaid` from 64 HTTP clients against raw rusqlite one transaction at
/// a time; then both without an fsync per commit, to show where the time goes.
fn durable_setpaid_against_raw(bench: &Bench) {
    // The HTTP sides first, FULL and NORMAL alternating round by round on two servers, so that
    // what moves the machine (the disk's fsync, other tenants) hits both alike: the
    // FULL / NORMAL target is their ratio.
    let [full, normal] = [("full", Durability::Full), ("normal", Durability::Normal)]
        .map(|(name, durability)| bench.serve(&format!("{name}.db"), durability));
    let mut cursors = [vec![0usize; WRITERS], vec![0usize; WRITERS]];
    let mut https = [Stats::default(), Stats::default()];
    for _ in 0..HTTP_ROUNDS {
        for (i, server) in [&full, &normal].into_iter().enumerate() {
            https[i].add(setpaid_load(
                &[server.addr],
                &bench.writers,
                &mut cursors[i],
                &bench.authinfo,
                bench.secs(4.0 / HTTP_ROUNDS as f64),
            ));
        }
    }
    let [cursors_full, cursors_normal] = cursors;
    let side = |server: Serving,
                mut cursors: Vec<usize>,
                durability: Durability,
                name: &str,
                rounds: usize,
                raw_s: f64| {
        let raw_path = bench.copy(&format!("{name}-raw.db"));
        let raw = store::sqlite::connect_raw(&raw_path, durability).expect("raw connection");
        // The batches' own connection, checkpointing as the server's writer does when its
        // checkpoint thread falls behind (a batch of 64 clients' payments writes about 500
        // WAL frames, so SQLite's default threshold of 1 000 would checkpoint, with two
        // fsyncs, every other commit).
        let raw_batches =
            store::sqlite::connect_raw(&raw_path, durability).expect("raw connection");
        raw_batches
            .pragma_update(None, "wal_autocheckpoint", BACKSTOP_PAGES)
            .expect("wal_autocheckpoint");
        // Raw rusqlite pays what the HTTP clients pay: the next payment of each of the 64
        // paying clients in turn, so that a batch of 64 touches 64 clients' rows, as the
        // server's batches do (each client's payments are contiguous in the table).
        let mut raw_payments = round_robin(&bench.writers);
        let (mut direct, mut group) = (Stats::default(), Stats::default());
        for _ in 0..rounds {
            direct.add(raw_load(&raw, &mut raw_payments, bench.secs(raw_s)));
            group.add(raw_group_load(
                &raw_batches,
                &mut raw_payments,
                bench.secs(raw_s),
            ));
        }
        // The same calls in-process, as many at once: the engine and its group commit
        // without HTTP, the hop to the blocking pool or the load generator's sockets.
        let in_process = engine_setpaid_load(
            &server.engine,
            &bench.writers,
            &mut cursors,
            bench.secs(1.0),
        );
        bench.stop(server);
        let checked = store::connect(&raw_path, durability).expect("check connection");
        let violations = billhost::ledger::check(&checked).expect("check");
        assert!(violations.is_empty(), "raw: {violations:?}");
        // The baseline of the fifth session, for comparison: batches of 64 consecutive
        // payments of one client, which share nearly every page they write (the payment
        // rows, their index entries, the history's), so a commit writes a few WAL frames for
        // the whole batch where 64 clients' payments need about eight each.
        let same_path = bench.copy(&format!("{name}-raw-same.db"));
        let same = store::sqlite::connect_raw(&same_path, durability).expect("raw connection");
        same.pragma_update(None, "wal_autocheckpoint", BACKSTOP_PAGES)
            .expect("wal_autocheckpoint");
        let mut same_payments = bench.writers.iter().flatten().copied();
        let mut same_client = Stats::default();
        for _ in 0..rounds {
            same_client.add(raw_group_load(&same, &mut same_payments, bench.secs(raw_s)));
        }
        (direct, group, in_process, same_client)
    };
    let [mut http, mut http_n] = https;
    let (mut raw, mut group, mut in_process, mut same_client) =
        side(full, cursors_full, Durability::Full, "full", 2, 1.5);
    println!(
        "(b) payment.setpaid, synchronous=FULL (WAL): {WRITERS} HTTP clients vs raw rusqlite one transaction at a time"
    );
    http.print("HTTP, group commit");
    raw.print("raw rusqlite");
    println!(
        "    ratio HTTP/raw one at a time: {:.2} (the old target >= 10)",
        http.rate() / raw.rate()
    );
    // The same writes by rusqlite as it comes (`Connection::open`: a rollback journal, whose
    // commit syncs the journal, the database and the journal's removal), for scale.
    let mut journal = {
        let path = bench.copy("journal-raw.db");
        let conn = Connection::open(&path).expect("raw connection");
        conn.pragma_update(None, "journal_mode", "DELETE")
            .expect("journal_mode");
        conn.pragma_update(None, "synchronous", "FULL")
            .expect("synchronous");
        let mut payments = bench.writers.iter().flatten().copied();
        let stats = raw_load(&conn, &mut payments, bench.secs(1.5));
        let checked = store::connect(&path, Durability::Full).expect("check connection");
        let violations = billhost::ledger::check(&checked).expect("check");
        assert!(violations.is_empty(), "raw (journal): {violations:?}");
        stats
    };
    journal.print("raw, rollback journal");
    println!(
        "    ratio HTTP/raw with rusqlite's default rollback journal instead of WAL: {:.2}",
        http.rate() / journal.rate()
    );
    let (mut raw_n, mut group_n, mut in_process_n, _) =
        side(normal, cursors_normal, Durability::Normal, "normal", 2, 1.0);
    println!("    (b) the targets:");
    http.print("HTTP, FULL");
    http_n.print("HTTP, NORMAL");
    group.print("raw group commit, FULL");
    println!(
        "    (b) ratio HTTP FULL / HTTP NORMAL: {:.2} (target >= 0.9)",
        http.rate() / http_n.rate()
    );
    println!(
        "    (b) ratio HTTP FULL / raw rusqlite in group-commit batches of {WRITERS}, FULL: {:.2} (target >= 0.5)",
        http.rate() / group.rate()
    );
    same_client.print("raw group, one client a batch");
    println!(
        "    ratio HTTP FULL / raw batches of {WRITERS} payments of one client (the fifth session's baseline): {:.2}",
        http.rate() / same_client.rate()
    );
    println!("    where the time goes:");
    in_process.print("in-process, 64 threads");
    println!("    with synchronous=NORMAL (no fsync per commit):");
    http_n.print("HTTP, no fsync");
    in_process_n.print("in-process, no fsync");
    raw_n.print("raw, no fsync");
    group_n.print("raw group, no fsync");
    let fsync_us = 1e6 / raw.rate() - 1e6 / raw_n.rate();
    println!(
        "    a durable commit costs {fsync_us:.0} µs more than a non-durable one (the fsync); \
         durable HTTP reaches {:.0}% of its no-fsync rate",
        100.0 * http.rate() / http_n.rate()
    );
    println!();
}

/// (p) (b) on PostgreSQL: a throwaway cluster, one database prepared as (b)'s and copied (as a
/// template) for each side, rounds alternating between the sides.
fn postgres_setpaid(bench: &Bench) {
    let Some(cluster) = pg::Cluster::start("bench-http") else {
        return;
    };
    let started = Instant::now();
    let base = cluster.database("base");
    let writers = prepare(Path::new(&base));
    let mut admin =
        postgres::Client::connect(&cluster.url("postgres"), postgres::NoTls).expect("admin");
    let mut copy = |name: &str| {
        admin
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE base"))
            .expect("copy database");
        cluster.url(name)
    };
    let (on_url, off_url, raw_url, two_url) = (
        copy("sync_on"),
        copy("sync_off"),
        copy("raw_one"),
        copy("two_servers"),
    );
    eprintln!(
        "PostgreSQL prepared in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let on = bench.serve_db(Path::new(&on_url), Durability::Full);
    // `Durability::Normal` is `synchronous_commit=off` on every connection of the server.
    let off = bench.serve_db(Path::new(&off_url), Durability::Normal);
    let two = [
        bench.serve_db(Path::new(&two_url), Durability::Full),
        bench.serve_db(Path::new(&two_url), Durability::Full),
    ];
    let mut raw = postgres::Client::connect(&raw_url, postgres::NoTls).expect("raw connection");
    raw.batch_execute("SET TIME ZONE 'UTC'; SET synchronous_commit = on")
        .expect("session");
    let statements = raw_pg::RawPg::prepare(&mut raw).expect("prepare");
    let mut raw_payments = round_robin(&writers);
    let (mut c_on, mut c_off, mut c_two) = (
        vec![0usize; WRITERS],
        vec![0usize; WRITERS],
        vec![0usize; WRITERS],
    );
    let (mut s_on, mut s_off, mut s_raw, mut s_two) = (
        Stats::default(),
        Stats::default(),
        Stats::default(),
        Stats::default(),
    );
    let now = billhost::clock::now();
    for _ in 0..2 {
        let budget = bench.secs(2.0);
        s_on.add(setpaid_load(
            &[on.addr],
            &writers,
            &mut c_on,
            &bench.authinfo,
            budget,
        ));
        s_off.add(setpaid_load(
            &[off.addr],
            &writers,
            &mut c_off,
            &bench.authinfo,
            budget,
        ));
        let start = Instant::now();
        let mut latencies = Vec::new();
        while start.elapsed() < bench.secs(1.5) {
            let Some(id) = raw_payments.next() else { break };
            let sent = Instant::now();
            raw_pg::raw_pg_setpaid(&mut raw, &statements, id, &now).expect("raw setpaid");
            latencies.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
        }
        s_raw.add(Stats {
            requests: latencies.len() as u64,
            elapsed: start.elapsed(),
            latencies_us: latencies,
            ..Stats::default()
        });
        s_two.add(setpaid_load(
            &[two[0].addr, two[1].addr],
            &writers,
            &mut c_two,
            &bench.authinfo,
            budget,
        ));
    }
    for serving in [on, off] {
        bench.stop(serving);
    }
    let [first, second] = two;
    bench.stop(first);
    bench.stop(second);
    drop(raw);
    let checked = store::connect(Path::new(&raw_url), Durability::Full).expect("check connection");
    let violations = billhost::ledger::check(&checked).expect("check");
    assert!(violations.is_empty(), "raw: {violations:?}");
    println!(
        "(p) payment.setpaid on PostgreSQL 15 (fsync=on): {WRITERS} HTTP clients, group commit"
    );
    s_on.print("HTTP, sync_commit=on");
    s_off.print("HTTP, sync_commit=off");
    s_raw.print("raw postgres, 1 at a time");
    s_two.print("HTTP, two servers");
    println!(
        "    (p) ratio HTTP on / HTTP off: {:.2} (target >= 0.8)",
        s_on.rate() / s_off.rate()
    );
    println!(
        "    (p) ratio HTTP on / raw postgres one transaction at a time, synchronous_commit=on: {:.2} (target >= 2)",
        s_on.rate() / s_raw.rate()
    );
    println!(
        "    (p) ratio two servers on one database / one server: {:.2} (no gain expected on {} CPUs: the writers' lock is cluster-wide)",
        s_two.rate() / s_on.rate(),
        cpus()
    );
    println!();
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn open(path: &Path, durability: Durability) -> Engine {
    // As `billhost serve` opens it.
    let config = EngineConfig {
        durability,
        background_checkpoints: true,
        deferred_sync: true,
        ..EngineConfig::new(path)
    };
    Engine::open(config).expect("engine")
}

/// The database every side starts from: the admin, a provider currency and payment method,
/// `ACCOUNTS` clients to read, and `WRITERS` clients with `PAYMENTS_EACH` new payments each.
/// Answers each writer's payments.
fn prepare(path: &Path) -> Vec<Vec<i64>> {
    let engine = open(path, Durability::Full);
    seed::usd_bank(&engine, ADMIN_PASSWORD);
    let templates: Vec<(i64, i64)> = (0..WRITERS)
        .map(|w| seed::payer(&engine, &format!("payer{w}@example.com")))
        .collect();
    engine
        .write(|c| {
            let mut stmt = c.prepare(
                "INSERT INTO account (project_id, name, realname, email, registration_date)
                 VALUES (1, ?1, ?1, ?2, '2026-01-01 00:00:00')",
            )?;
            for i in WRITERS as i64..ACCOUNTS {
                stmt.execute(store::params![
                    format!("client {i}"),
                    format!("c{i}@example.com")
                ])?;
            }
            for &(_, payment) in &templates {
                seed::copy_payment(c, payment, PAYMENTS_EACH - 1)?;
            }
            Ok(())
        })
        .expect("seed");
    engine
        .read(|c| {
            templates
                .iter()
                .map(|&(account, _)| Ok(seed::new_payments(c, account)?))
                .collect()
        })
        .expect("payments")
}

// ------------------------------------------------------------------ the servers

/// A tokio runtime built as `server::run` builds it (multi-thread, `server::default_workers`,
/// every driver), on which the servers run.
struct Runtime(tokio::runtime::Runtime);

struct Serving {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    done: tokio::task::JoinHandle<std::io::Result<()>>,
    engine: Arc<Engine>,
}

struct Bare {
    addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Runtime {
    fn start() -> Runtime {
        Runtime(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(env_or("BENCH_WORKERS", server::default_workers()))
                .enable_all()
                .thread_name("billhost-http")
                .build()
                .expect("runtime"),
        )
    }

    fn listen(&self) -> tokio::net::TcpListener {
        self.0
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind")
    }

    /// `/billmgr` over `engine`, as `billhost serve` serves it.
    fn serve(&self, engine: Engine) -> Serving {
        let listener = self.listen();
        let addr = listener.local_addr().expect("addr");
        let engine = Arc::new(engine);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async {
            let _ = stopped.await;
        };
        let done = self.0.spawn(server::serve(
            listener,
            engine.clone(),
            ServerConfig::default(),
            shutdown,
        ));
        Serving {
            addr,
            stop,
            done,
            engine,
        }
    }

    /// A bare endpoint on the same stack: `/bare` answers `body`, with the headers `/billmgr`
    /// sends; `/bare-func?elid=N` answers the same func as the server would, called in the
    /// handler as the in-process side calls it (`Engine::handle_inline` with `authinfo`, the
    /// XML), with none of the server's own request handling around it.
    fn bare(&self, body: String, engine: Arc<Engine>, authinfo: String) -> Bare {
        let listener = self.listen();
        let addr = listener.local_addr().expect("addr");
        let body = axum::body::Bytes::from(body);
        // The headers every document carries, as `server::render` sets them.
        const HEADERS: [(header::HeaderName, &str); 4] = [
            (header::CONTENT_TYPE, "text/xml; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; frame-ancestors 'none'",
            ),
        ];
        let app = Router::new()
            .route(
                "/bare",
                get(move || {
                    let body = body.clone();
                    async move { (HEADERS, body) }
                }),
            )
            .route(
                "/bare-func",
                get(
                    move |axum::extract::RawQuery(query): axum::extract::RawQuery| {
                        let (engine, authinfo) = (engine.clone(), authinfo.clone());
                        async move {
                            let query = query.unwrap_or_default();
                            let elid = query.strip_prefix("elid=").unwrap_or("1");
                            (HEADERS, view_in_process(&engine, elid, &authinfo))
                        }
                    },
                ),
            );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        self.0.spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Bare { addr, _stop: stop }
    }

    /// Stops a server, waits for it, and answers its engine.
    fn stop(&self, serving: Serving) -> Arc<Engine> {
        let _ = serving.stop.send(());
        self.0
            .block_on(serving.done)
            .expect("server task")
            .expect("serve");
        serving.engine
    }
}

// ------------------------------------------------------------------ the load generator

/// Requests answered, in how long, and each one's latency.
#[derive(Default)]
struct Stats {
    requests: u64,
    elapsed: Duration,
    latencies_us: Vec<u32>,
    /// The server's CPU time meanwhile (HTTP loads only).
    server_cpu: Duration,
}

impl Stats {
    fn add(&mut self, other: Stats) {
        self.requests += other.requests;
        self.elapsed += other.elapsed;
        self.server_cpu += other.server_cpu;
        self.latencies_us.extend(other.latencies_us);
    }

    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// The server's CPU time per request, in µs.
    fn cpu_us(&self) -> f64 {
        1e6 * self.server_cpu.as_secs_f64() / self.requests.max(1) as f64
    }

    fn percentile(&mut self, p: usize) -> f64 {
        self.latencies_us.sort_unstable();
        let n = self.latencies_us.len();
        if n == 0 {
            return 0.0;
        }
        f64::from(self.latencies_us[(n * p / 100).min(n - 1)]) / 1000.0
    }

    fn print(&mut self, what: &str) {
        let (p50, p99) = (self.percentile(50), self.percentile(99));
        let cpu = if self.server_cpu.is_zero() {
            String::new()
        } else {
            format!("   server CPU {:>6.1} µs/request", self.cpu_us())
        };
        println!(
            "    {what:<22} {:>9.0} /s   p50 {p50:>7.2} ms   p99 {p99:>7.2} ms{cpu}   ({} requests)",
            self.rate(),
            self.requests
        );
    }
}

/// Which load generator drives the connections.
#[derive(Clone, Copy)]
enum Client {
    /// A thread per connection, blocking on its socket (`tests/support/http1.rs`): each request
    /// costs the client a thread switch.
    Threads,
    /// wrk's design: one thread per CPU, each an event loop over its share of the connections
    /// (`support/load.rs`).
    Events,
}

/// `connections` keep-alive connections driven by `client`, each sending
/// `target(connection, i)` and waiting for the answer, for `budget` (or until every
/// connection's `target` answers `None`). An error document stops the bench.
fn load(
    client: Client,
    addr: SocketAddr,
    connections: usize,
    budget: Duration,
    target: impl Fn(usize, u64) -> Option<String> + Sync,
) -> Stats {
    let ((per_connection, elapsed), server_cpu) = cpu::server_time(|| match client {
        Client::Threads => load_threads(&[addr], connections, budget, target),
        Client::Events => load::run(&[addr], connections, cpus(), budget, &target),
    });
    let mut stats = Stats {
        elapsed,
        server_cpu,
        ..Stats::default()
    };
    for (n, latencies) in per_connection {
        stats.requests += n;
        stats.latencies_us.extend(latencies);
    }
    stats
}

/// `threads` keep-alive connections, each on a thread of its own (std `TcpStream`, blocking),
/// sending `target(thread, i)` and waiting for the answer, for `budget` (or until every
/// thread's `target` answers `None`). An error document stops the bench. Answers each
/// connection's requests and latencies, and the time it all took. Connection `t` goes to
/// `addrs[t % addrs.len()]` (several servers share the load).
fn load_threads(
    addrs: &[SocketAddr],
    threads: usize,
    budget: Duration,
    target: impl Fn(usize, u64) -> Option<String> + Sync,
) -> (Vec<load::Done>, Duration) {
    let start = Instant::now();
    let deadline = start + budget;
    let per_thread: Vec<load::Done> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let target = &target;
                let addr = addrs[t % addrs.len()];
                s.spawn(move || {
                    cpu::as_generator(|| {
                        let mut conn = Conn::connect(addr, TIMEOUT).expect("connect");
                        let mut latencies = Vec::with_capacity(1 << 16);
                        let mut n = 0u64;
                        while Instant::now() < deadline {
                            let Some(path) = target(t, n) else { break };
                            let sent = Instant::now();
                            let answer = conn.get(&path).expect("answer");
                            latencies.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                            assert!(
                                answer.status == 200 && !answer.body.contains("<error"),
                                "{path}: {}",
                                answer.body
                            );
                            n += 1;
                        }
                        (n, latencies)
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("load thread"))
            .collect()
    });
    (per_thread, start.elapsed())
}

/// `payment.setpaid` of each writer's next payments, one writer per connection (connection
/// `t` to server `t % addrs.len()`).
fn setpaid_load(
    addrs: &[SocketAddr],
    writers: &[Vec<i64>],
    cursors: &mut [usize],
    authinfo: &str,
    budget: Duration,
) -> Stats {
    let next: Vec<std::sync::atomic::AtomicUsize> = cursors
        .iter()
        .map(|&c| std::sync::atomic::AtomicUsize::new(c))
        .collect();
    let target = |t: usize, _| {
        let k = next[t].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let payment = writers[t].get(k)?;
        Some(format!(
            "/billmgr?func=payment.setpaid&elid={payment}&{authinfo}"
        ))
    };
    // The event-loop generator (as (a)'s): what a client costs is not what (b) and (p) are
    // about, and a thread per connection would take the CPUs the server's stages share.
    // `BENCH_WRITE_CLIENT=threads` measures with a thread per connection, as until the
    // eighth session.
    let ((per_connection, elapsed), server_cpu) = cpu::server_time(|| {
        if std::env::var("BENCH_WRITE_CLIENT").as_deref() == Ok("threads") {
            load_threads(addrs, writers.len(), budget, target)
        } else {
            load::run(addrs, writers.len(), cpus(), budget, &target)
        }
    });
    let mut stats = Stats {
        elapsed,
        server_cpu,
        ..Stats::default()
    };
    for (n, latencies) in per_connection {
        stats.requests += n;
        stats.latencies_us.extend(latencies);
    }
    // A payment is taken only to be sent at once, so the next round starts after the last one.
    for (cursor, n) in cursors.iter_mut().zip(&next) {
        *cursor = n.load(std::sync::atomic::Ordering::Relaxed);
    }
    // A writer that ran out of payments stopped early: the round's rate would not be one.
    for (cursor, payments) in cursors.iter().zip(writers) {
        assert!(
            *cursor <= payments.len(),
            "the bench ran out of payments to pay (raise PAYMENTS_EACH)"
        );
    }
    stats
}

/// `payment.setpaid` through `Engine::handle` (what the server runs for a request), one
/// thread per writer, without HTTP.
fn engine_setpaid_load(
    engine: &Engine,
    writers: &[Vec<i64>],
    cursors: &mut [usize],
    budget: Duration,
) -> Stats {
    let password = format!("admin:{ADMIN_PASSWORD}");
    let start = Instant::now();
    let deadline = start + budget;
    let per_thread: Vec<(usize, Vec<u32>)> = std::thread::scope(|s| {
        let handles: Vec<_> = writers
            .iter()
            .zip(cursors.iter())
            .map(|(payments, &from)| {
                let password = &password;
                s.spawn(move || {
                    let mut latencies = Vec::new();
                    let mut k = from;
                    while Instant::now() < deadline {
                        let Some(payment) = payments.get(k) else {
                            break;
                        };
                        let elid = payment.to_string();
                        let params = Params::from_pairs([
                            ("func", "payment.setpaid"),
                            ("elid", elid.as_str()),
                            ("authinfo", password.as_str()),
                        ]);
                        let sent = Instant::now();
                        let doc = engine.handle("payment.setpaid", params, None, "127.0.0.1");
                        latencies.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        assert!(!doc.is_error(), "{doc:?}");
                        k += 1;
                    }
                    (k, latencies)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let mut stats = Stats {
        elapsed: start.elapsed(),
        ..Stats::default()
    };
    for (cursor, (k, latencies)) in cursors.iter_mut().zip(per_thread) {
        stats.requests += (k - *cursor) as u64;
        *cursor = k;
        stats.latencies_us.extend(latencies);
    }
    stats
}

/// Every writer's first payment, then every writer's second, and so on.
fn round_robin(writers: &[Vec<i64>]) -> impl Iterator<Item = i64> + '_ {
    let longest = writers.iter().map(Vec::len).max().unwrap_or(0);
    (0..longest).flat_map(move |k| writers.iter().filter_map(move |w| w.get(k).copied()))
}

/// Raw rusqlite setting the next payments paid in group-commit batches of [`WRITERS`] (one
/// transaction, a savepoint each), for `budget`; each payment's latency is its batch's.
fn raw_group_load(
    conn: &Connection,
    payments: &mut impl Iterator<Item = i64>,
    budget: Duration,
) -> Stats {
    let now = billhost::clock::now();
    let start = Instant::now();
    let mut latencies = Vec::new();
    while start.elapsed() < budget {
        let batch: Vec<i64> = payments.by_ref().take(WRITERS).collect();
        if batch.is_empty() {
            break;
        }
        let sent = Instant::now();
        raw_setpaid_batch(conn, &batch, &now).expect("raw setpaid batch");
        let us = sent.elapsed().as_micros().min(u32::MAX as u128) as u32;
        latencies.extend(std::iter::repeat_n(us, batch.len()));
    }
    Stats {
        requests: latencies.len() as u64,
        elapsed: start.elapsed(),
        latencies_us: latencies,
        ..Stats::default()
    }
}

/// Raw rusqlite setting the next payments paid, one transaction each, for `budget`.
fn raw_load(
    conn: &Connection,
    payments: &mut impl Iterator<Item = i64>,
    budget: Duration,
) -> Stats {
    let now = billhost::clock::now();
    let start = Instant::now();
    let mut latencies = Vec::new();
    while start.elapsed() < budget {
        let Some(id) = payments.next() else { break };
        let sent = Instant::now();
        raw_setpaid(conn, id, &now).expect("raw setpaid");
        latencies.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
    }
    Stats {
        requests: latencies.len() as u64,
        elapsed: start.elapsed(),
        latencies_us: latencies,
        ..Stats::default()
    }
}
