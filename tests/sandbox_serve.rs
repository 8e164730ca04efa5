//! Hostile scripts against the built `billhost serve`: a call that holds the writer past the
//! script time limit is abandoned and the next write goes through; SIGTERM stops the server
//! within seconds whatever a script is doing; scripts cannot write lines of their own into the
//! server log. On SQLite and on PostgreSQL (a database of its own in the binary's cluster).
#![cfg(unix)]

mod common;
#[macro_use]
#[path = "support/pg.rs"]
mod pg;
#[path = "support/http1.rs"]
mod http1;
#[path = "support/serve_bin.rs"]
mod serve_bin;

use billhost::{Engine, EngineConfig};
use common::TempDir;
use http1::{Conn, enc};
use pg::Backend;
use serve_bin::Server;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const PASSWORD: &str = "Sandbox1";

const HOSTILE: &str = r#"
billing.func("groups", { kind = "action" }, function()
  for i = 1, 1e9 do billing.call("accountgroup.edit", { sok = "ok", name = "g" .. i }) end
end)
billing.func("recurse", { kind = "action" }, function(req)
  if req.params.how == "call" then return billing.call("recurse", { how = "call" }) end
  if req.params.how == "view" then return billing.call("recurse_view", {}) end
  local function f(s) return (s:gsub(".", f)) end
  return { r = f("a") }
end)
billing.func("recurse_view", { kind = "view" }, function()
  local function f() return tostring(setmetatable({}, { __tostring = f })) end
  return { r = f() }
end)
billing.func("forge", { kind = "view" }, function()
  print("one\nbillhost serve: forged by print", "\27[2J")
  billing.log("info\nbillhost serve: forged level", "two\r\nbillhost serve: forged by log")
  return { ok = true }
end)
"#;

/// A folder with the hostile scripts, and the database made ready for them on a backend.
struct Prepared {
    dir: TempDir,
    db: PathBuf,
}

fn serve(prepared: &Prepared, run: &str, timeout_secs: u64) -> Server {
    serve_bin::serve_on(
        &prepared.dir,
        prepared.db.as_os_str(),
        run,
        &["--script-instructions", "1000000000000"],
        &[("BILLHOST_SCRIPT_TIMEOUT", &timeout_secs.to_string())],
    )
}

fn get(addr: SocketAddr, query: &str) -> http1::Answer {
    let auth = enc(&format!("admin:{PASSWORD}"));
    let mut conn = Conn::connect(addr, Duration::from_secs(60)).expect("connect");
    conn.get(&format!("/billmgr?{query}&authinfo={auth}"))
        .expect("answer")
}

fn prepared(backend: &Backend) -> Prepared {
    let dir = TempDir::new("sandbox-serve");
    let db = backend.db(dir.path());
    let engine = Engine::open(EngineConfig::new(&db)).expect("engine");
    engine
        .write(|c| billhost::auth::ensure_staff(c, "admin", Some(PASSWORD)))
        .expect("admin");
    drop(engine);
    let scripts = dir.path().join("scripts");
    std::fs::create_dir_all(&scripts).expect("scripts dir");
    std::fs::write(scripts.join("hostile.lua"), HOSTILE).expect("script");
    Prepared { dir, db }
}

backends! {
fn a_runaway_call_is_abandoned_and_the_writer_serves_on(backend) {
    let prepared = prepared(&backend);
    let server = serve(&prepared, "abandon", 2);
    let started = Instant::now();
    let answer = get(server.addr, "func=groups");
    assert!(
        answer.body.contains("script") && answer.body.contains("longer than 2 s"),
        "{}",
        answer.body
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    // Rolled back, and the writer is free for the next write.
    let groups = get(server.addr, "func=accountgroup");
    assert!(!groups.body.contains("<name>g1</name>"), "{}", groups.body);
    let answer = get(server.addr, "func=accountgroup.edit&sok=ok&name=After");
    assert!(answer.body.contains("<id>"), "{}", answer.body);

    // Scripts' messages are one escaped line each, named after their file.
    assert!(get(server.addr, "func=forge").body.contains("<ok"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = std::fs::read_to_string(&server.stderr).unwrap_or_default();
        if log.contains("forged by log") || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        log.lines()
            .all(|l| !l.contains("forged") || l.starts_with("[script hostile.lua")),
        "{log}"
    );
    assert!(
        log.contains("[script hostile.lua] one\\nbillhost serve: forged by print\\t\\u{1b}[2J"),
        "{log}"
    );
    assert!(
        log.contains(
            "[script hostile.lua info\\nbillhost serve: forged level] two\\r\\nbillhost serve: forged by log"
        ),
        "{log}"
    );
}
}

backends! {
fn sigterm_stops_the_server_whatever_a_script_does(backend) {
    let prepared = prepared(&backend);
    let mut server = serve(&prepared, "sigterm", 3600);
    let addr = server.addr;
    let caller = std::thread::spawn(move || {
        let auth = enc(&format!("admin:{PASSWORD}"));
        let mut conn = Conn::connect(addr, Duration::from_secs(120)).expect("connect");
        conn.get(&format!("/billmgr?func=groups&authinfo={auth}"))
            .map(|a| a.body)
    });
    // The runaway call is running (holding the writer) when the signal comes.
    std::thread::sleep(Duration::from_millis(1500));
    let pid = nix::unistd::Pid::from_raw(server.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let signalled = Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(15),
            "serve still running {:?} after SIGTERM: {}",
            signalled.elapsed(),
            std::fs::read_to_string(&server.stderr).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("serve stopped {:?} after SIGTERM", signalled.elapsed());
    assert!(status.success(), "{status}");
    let answer = caller.join().expect("caller");
    if let Ok(body) = answer {
        assert!(body.contains("stopping"), "{body}");
    }
}
}

backends! {
/// A script recursing as deep as Lua lets it, through `billing.call` or through C functions
/// (`gsub` callbacks, `__tostring`), gets a `script` error: it overflowed the stack of the
/// writer or of an HTTP thread and aborted the server.
fn deep_recursion_is_an_error_not_a_crash(backend) {
    let prepared = prepared(&backend);
    let server = serve(&prepared, "recursion", 10);
    for (how, says) in [
        ("call", "more than 32 deep"),
        ("gsub", "stack overflow"),
        ("view", "stack overflow"),
    ] {
        let answer = get(server.addr, &format!("func=recurse&how={how}"));
        assert!(
            answer.body.contains("type=\"script\"") && answer.body.contains(says),
            "{how}: {}",
            answer.body
        );
    }
    let answer = get(server.addr, "func=recurse_view");
    assert!(answer.body.contains("stack overflow"), "{}", answer.body);
    let answer = get(server.addr, "func=accountgroup.edit&sok=ok&name=After");
    assert!(answer.body.contains("<id>"), "{}", answer.body);
}
}

backends! {
/// Text from outside that the server logs (a login that failed, a job's error raised by a
/// script) cannot write a line of its own: its newlines are escaped like a script's messages.
fn outside_text_cannot_write_server_log_lines(backend) {
    let prepared = prepared(&backend);
    std::fs::write(
        prepared.dir.path().join("scripts").join("job.lua"),
        r#"billing.every(1, "forger", function() error("job\nbillhost serve: forged by a job") end)"#,
    )
    .expect("job script");
    let server = serve(&prepared, "logforge", 10);
    let mut conn = Conn::connect(server.addr, Duration::from_secs(60)).expect("connect");
    // The login ends at the first colon.
    let login = enc("x\nbillhost serve forged by a login:pw");
    let answer = conn
        .get(&format!("/billmgr?func=whoami&authinfo={login}"))
        .expect("answer");
    assert!(answer.body.contains("auth"), "{}", answer.body);
    let deadline = Instant::now() + Duration::from_secs(20);
    let log = loop {
        let log = std::fs::read_to_string(&server.stderr).unwrap_or_default();
        if (log.contains("forged by a job") && log.contains("forged by a login"))
            || Instant::now() > deadline
        {
            break log;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(log.contains("forged by a job"), "{log}");
    assert!(log.contains("forged by a login"), "{log}");
    assert!(
        log.lines()
            .all(|l| !l.starts_with("billhost serve: forged")),
        "{log}"
    );
}
}
