//! What a `before` + `after` hook pair costs a func call: the same funcs through two engines in
//! the same run, one without scripts and one whose scripts hook them, on copies of the same
//! data: `cargo bench --bench hooks`. The figures that matter are the ratio and the overhead
//! per call; absolute rates depend on the machine and the disk.
//!
//! Measured on the 2-core development machine (three runs): a view goes from ~200k/s to ~25k/s
//! (ratio 0.12-0.13, ~34 µs per call); a change with `synchronous=NORMAL` from ~28k/s to ~18k/s
//! (ratio 0.62-0.71, ~16-21 µs); a durable change is bound by fsync (ratio 0.84-0.92). A profile
//! put most of the cost in building Lua tables for `req` and `res` and reading `res` back. Since
//! then `req` is built once for both hooks (by a Lua helper, in one call), and `after` reads back
//! only what a hook changed (a Lua helper compares `res` with a copy of the shown fields): the
//! view's pair costs 19-20 µs (from 25), a change's with `synchronous=NORMAL` 13-14 µs (from 18);
//! in an A/B of alternating builds while the machine ran slower, 24-26 µs against 29-33 for the
//! view and 19-22 against 24-26 for the change.

use billhost::auth::Caller;
use billhost::store::Durability;
use billhost::store::params;
use billhost::{Engine, EngineConfig, Params};
use std::path::Path;
use std::time::{Duration, Instant};

const CLIENTS: i64 = 10_000;

/// A realistic pair: the `before` hook reads and rewrites a parameter, the `after` hook adds a
/// field to the result.
const HOOKS: &str = r#"
billing.on("account.edit", "before", function(req)
  if req.params.name then req.params.name = req.params.name .. "" end
end)
billing.on("account.edit", "after", function(req, res)
  res.checked = "yes"
end)
"#;

fn engine(dir: &Path, name: &str, scripts: Option<&str>, durability: Durability) -> Engine {
    let db = dir.join(format!("{name}.db"));
    let mut config = EngineConfig::new(&db);
    config.durability = durability;
    if let Some(code) = scripts {
        let folder = dir.join(format!("{name}-scripts"));
        std::fs::create_dir_all(&folder).expect("scripts dir");
        std::fs::write(folder.join("hooks.lua"), code).expect("write hooks");
        config = config.with_scripts(folder);
    }
    let engine = Engine::open(config).expect("engine");
    assert!(engine.scripts().status().last_error.is_none());
    engine
        .write(|c| {
            let mut stmt = c.prepare(
                "INSERT INTO account (project_id, name, realname, email, registration_date) VALUES (1, ?1, ?1, ?2, '2026-01-01 00:00:00')",
            )?;
            for i in 0..CLIENTS {
                stmt.execute(params![format!("client {i}"), format!("c{i}@example.com")])?;
            }
            Ok(())
        })
        .expect("seed");
    engine
}

fn main() {
    let dir = std::env::temp_dir().join(format!("billhost-bench-hooks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let plain = engine(&dir, "plain", None, Durability::Full);
    let hooked = engine(&dir, "hooked", Some(HOOKS), Durability::Full);
    // Without the fsync per commit, the CPU cost of a write shows.
    let plain_fast = engine(&dir, "plain-normal", None, Durability::Normal);
    let hooked_fast = engine(&dir, "hooked-normal", Some(HOOKS), Durability::Normal);
    let root = Caller::superuser();

    println!(
        "billhost hooks bench: a before + after hook pair on account.edit ({CLIENTS} clients)"
    );

    let view = |e: &Engine, i: u64| {
        let id = (i as i64 % CLIENTS + 1).to_string();
        let doc = e.call(
            &root,
            "account.edit",
            Params::from_pairs([("elid", id.as_str())]),
        );
        assert!(!doc.is_error(), "{doc:?}");
        doc
    };
    assert_eq!(view(&hooked, 0).field("checked"), Some("yes"));
    assert_eq!(view(&plain, 0).field("checked"), None);
    compare(
        "account.edit view",
        Duration::from_secs(2),
        |i| {
            view(&plain, i);
        },
        |i| {
            view(&hooked, i);
        },
    );

    let change = |e: &Engine, i: u64| {
        let id = (i as i64 % CLIENTS + 1).to_string();
        let name = format!("renamed {i}");
        let doc = e.call(
            &root,
            "account.edit",
            Params::from_pairs([
                ("elid", id.as_str()),
                ("sok", "ok"),
                ("name", name.as_str()),
            ]),
        );
        assert!(!doc.is_error(), "{doc:?}");
    };
    compare(
        "account.edit change (durable commit)",
        Duration::from_secs(3),
        |i| change(&plain, i),
        |i| change(&hooked, i),
    );

    compare(
        "account.edit change (synchronous=NORMAL)",
        Duration::from_secs(3),
        |i| change(&plain_fast, i),
        |i| change(&hooked_fast, i),
    );

    drop((plain, hooked, plain_fast, hooked_fast));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs both sides in alternating slices so that drift of the machine hits both alike.
fn compare(what: &str, budget: Duration, mut plain: impl FnMut(u64), mut hooked: impl FnMut(u64)) {
    // Warm up the statement caches and the Lua state.
    for i in 0..200 {
        plain(i);
        hooked(i);
    }
    let (mut n_plain, mut t_plain) = (0u64, Duration::ZERO);
    let (mut n_hooked, mut t_hooked) = (0u64, Duration::ZERO);
    let slice = budget / 20;
    for _ in 0..10 {
        let (n, t) = run_for(slice, &mut plain, n_plain);
        n_plain += n;
        t_plain += t;
        let (n, t) = run_for(slice, &mut hooked, n_hooked);
        n_hooked += n;
        t_hooked += t;
    }
    let rate_plain = n_plain as f64 / t_plain.as_secs_f64();
    let rate_hooked = n_hooked as f64 / t_hooked.as_secs_f64();
    let overhead_us = (1.0 / rate_hooked - 1.0 / rate_plain) * 1e6;
    println!(
        "{what:<38} no scripts {rate_plain:>9.0}/s   hooked {rate_hooked:>9.0}/s   ratio {:.2}   overhead {overhead_us:.1} µs/call",
        rate_hooked / rate_plain
    );
}

fn run_for(slice: Duration, f: &mut impl FnMut(u64), from: u64) -> (u64, Duration) {
    let start = Instant::now();
    let mut i = from;
    while start.elapsed() < slice {
        f(i);
        i += 1;
    }
    (i - from, start.elapsed())
}
