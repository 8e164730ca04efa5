//! `billhost repl` end to end through a pseudo-terminal: the built binary runs on the slave side
//! of a pty, the test types on the master side and reads what the terminal would show (escape
//! sequences stripped). It answers the cursor-position queries a line editor sends, as a
//! terminal does. Every read has a timeout, and the child is killed if it outlives the test.

#![cfg(unix)]

mod common;
#[path = "support/pg.rs"]
mod pg;

use common::{TempDir, dump};
use nix::libc;
use nix::pty::{Winsize, openpty};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(30);
const PROMPT: &str = "billhost> ";
const DRY: &str = "billhost[dry]> ";
const MORE: &str = "..> ";

struct Repl {
    dir: TempDir,
    child: Child,
    keys: File,
    screen: Receiver<Vec<u8>>,
    /// Everything shown so far, without escape sequences and carriage returns.
    seen: String,
    /// How far `expect` has read into `seen`.
    pos: usize,
}

/// Drops escape sequences (CSI, OSC, two-byte escapes) and carriage returns.
fn strip(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('\x40'..='\x7e').contains(&c) {
                            break;
                        }
                    }
                }
                Some(']') => {
                    for c in chars.by_ref() {
                        if c == '\x07' {
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\r' | '\x07' => {}
            c => out.push(c),
        }
    }
    out
}

impl Repl {
    fn start() -> Repl {
        Repl::start_with(&[])
    }

    /// Starts with extra global options (before `repl`).
    fn start_with(options: &[&str]) -> Repl {
        Repl::start_full(options, None)
    }

    /// Starts on the database `db` names (a PostgreSQL URL) instead of a file of its own.
    fn start_on(db: &str) -> Repl {
        Repl::start_full(&[], Some(db))
    }

    fn start_full(options: &[&str], db: Option<&str>) -> Repl {
        let dir = TempDir::new("repl");
        let scripts = dir.path().join("scripts");
        std::fs::create_dir_all(&scripts).expect("scripts dir");
        let size = Winsize {
            ws_row: 50,
            ws_col: 250,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = openpty(&size, None).expect("openpty");
        let stdio = || Stdio::from(pty.slave.try_clone().expect("slave fd"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_billhost"));
        // SAFETY: only async-signal-safe calls between fork and exec. The REPL gets its own
        // session with the pty as controlling terminal, so that Ctrl-C typed while a chunk runs
        // (the terminal then cooked) is a SIGINT to it, as in a real terminal.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .args(options)
            .arg("--db")
            .arg(db.map(std::path::PathBuf::from).unwrap_or_else(|| dir.db()))
            .arg("--scripts")
            .arg(&scripts)
            .arg("repl")
            .arg("--history")
            .arg(dir.path().join("history"))
            .env("TERM", "xterm")
            .env("HOME", dir.path())
            .stdin(stdio())
            .stdout(stdio())
            .stderr(stdio())
            .spawn()
            .expect("spawn billhost repl");
        drop(pty.slave);
        let keys = File::from(pty.master);
        let mut reader = keys.try_clone().expect("master fd");
        let mut answer = keys.try_clone().expect("master fd");
        let (tx, screen) = channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends when the child has gone (EIO on the master) or the test has.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let chunk = buf[..n].to_vec();
                // A terminal answers "where is the cursor?" (ESC [ 6 n); the line editor waits
                // for it before showing its prompt.
                if chunk.windows(4).any(|w| w == b"\x1b[6n") {
                    let _ = answer.write_all(b"\x1b[1;1R");
                }
                if tx.send(chunk).is_err() {
                    break;
                }
            }
        });
        let mut repl = Repl {
            dir,
            child,
            keys,
            screen,
            seen: String::new(),
            pos: 0,
        };
        repl.expect(PROMPT);
        repl
    }

    fn send(&mut self, keys: &str) {
        self.keys.write_all(keys.as_bytes()).expect("type");
        self.keys.flush().expect("flush");
    }

    /// Waits until `needle` shows after what was already read; answers the text up to it.
    fn expect(&mut self, needle: &str) -> String {
        self.expect_within(needle, TIMEOUT).unwrap_or_else(|| {
            panic!(
                "timed out waiting for {needle:?}; the screen after the last match:\n{}",
                &self.seen[self.pos..]
            )
        })
    }

    fn expect_within(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut raw = Vec::new();
        loop {
            if let Some(i) = self.seen[self.pos..].find(needle) {
                let start = self.pos;
                self.pos += i + needle.len();
                return Some(self.seen[start..self.pos - needle.len()].to_string());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.screen.recv_timeout(left) {
                Ok(chunk) => {
                    raw.extend(chunk);
                    // Keep an incomplete UTF-8 tail for the next chunk.
                    let valid = match std::str::from_utf8(&raw) {
                        Ok(_) => raw.len(),
                        Err(e) => e.valid_up_to(),
                    };
                    let text = String::from_utf8_lossy(&raw[..valid]).into_owned();
                    raw.drain(..valid);
                    self.seen.push_str(&strip(&text));
                }
                Err(_) => return None,
            }
        }
    }

    /// Types a line and answers what it printed, up to the next prompt.
    fn line(&mut self, line: &str, prompt: &str) -> String {
        self.send(line);
        self.send("\r");
        // The line editor ends the typed line with a newline; the output follows it.
        self.expect("\n");
        self.expect(prompt)
    }

    fn quit(mut self) -> TempDir {
        self.send("\x04");
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match self.child.try_wait().expect("wait") {
                Some(status) => {
                    assert!(status.success(), "billhost repl exited with {status}");
                    break;
                }
                None if Instant::now() > deadline => panic!("billhost repl did not exit"),
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        std::mem::replace(&mut self.dir, TempDir::new("repl-done"))
    }
}

impl Drop for Repl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Registers a client through the REPL and answers its id.
fn register(repl: &mut Repl, email: &str, prompt: &str) -> String {
    let out = repl.line(
        &format!("register sok=ok email={email} passwd=Secret123 realname=\"Ann Lee\""),
        prompt,
    );
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap_or_else(|| panic!("no id in {out:?}"));
    id.trim().to_string()
}

#[test]
fn a_func_call_prints_an_aligned_table() {
    let mut repl = Repl::start();
    register(&mut repl, "ann@example.com", PROMPT);
    register(&mut repl, "bob.longer.name@example.com", PROMPT);
    let out = repl.line("account", PROMPT);
    let lines: Vec<&str> = out.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.starts_with("id "))
        .unwrap_or_else(|| panic!("no header in {out:?}"));
    let (head, ann, bob) = (lines[header], lines[header + 1], lines[header + 2]);
    // Every column starts at the same place in the header and in each row.
    let col = |line: &str, text: &str| {
        line.find(text)
            .unwrap_or_else(|| panic!("{text:?} in {line:?}"))
    };
    assert_eq!(col(head, "email"), col(ann, "ann@example.com"), "{out}");
    assert_eq!(
        col(head, "email"),
        col(bob, "bob.longer.name@example.com"),
        "{out}"
    );
    assert_eq!(col(head, "project"), col(ann, "Provider"), "{out}");
    assert_eq!(col(head, "project"), col(bob, "Provider"), "{out}");
    assert_eq!(lines[header + 3], "(2 elements)", "{out}");
    // A form shows as name: value lines, an error as type, object and message.
    let out = repl.line("account.edit elid=1", PROMPT);
    assert!(out.contains("email: ann@example.com\n"), "{out}");
    let out = repl.line("payment.setpaid elid=99", PROMPT);
    assert!(out.contains("error missed(payment):"), "{out}");
    repl.quit();
}

#[test]
fn lua_expressions_and_multi_line_functions() {
    let mut repl = Repl::start();
    let out = repl.line(r#"billing.money("0.1") + billing.money("0.2")"#, PROMPT);
    assert_eq!(out, "0.3\n");
    repl.line("function double(x)", MORE);
    repl.line("  return x * 2", MORE);
    repl.line("end", PROMPT);
    assert_eq!(repl.line("double(21)", PROMPT), "42\n");
    // billing.call is an engine call; its result is a Lua table.
    assert_eq!(
        repl.line(r#"billing.call("whoami").login"#, PROMPT),
        "root\n"
    );
    let out = repl.line("1 +* 2", PROMPT);
    assert!(out.starts_with("error script(script): "), "{out}");
    let dir = repl.quit();
    // The history file keeps the multi-line chunk as one entry.
    let history = std::fs::read_to_string(dir.path().join("history")).expect("history");
    assert!(
        history.contains("function double(x)\\n  return x * 2\\nend"),
        "{history}"
    );
}

#[test]
fn tab_completes_func_and_parameter_names() {
    let mut repl = Repl::start();
    register(&mut repl, "ann@example.com", PROMPT);
    repl.send("whoa\t");
    repl.expect("whoami");
    repl.send("\r");
    repl.expect("\n");
    let out = repl.expect(PROMPT);
    assert!(out.contains("login: root"), "{out}");
    // After a func name, its parameters.
    repl.send("account.edit el\t");
    repl.expect("elid=");
    let out = repl.line("1", PROMPT);
    assert!(out.contains("realname: Ann Lee"), "{out}");
    // billing. members in Lua.
    repl.send("billing.mon\t");
    repl.expect("billing.money");
    assert_eq!(repl.line(r#"("7.5")"#, PROMPT), "7.5\n");
    repl.quit();
}

#[test]
fn dry_then_rollback_leaves_the_database_unchanged() {
    let mut repl = Repl::start();
    register(&mut repl, "ann@example.com", PROMPT);
    let before = dump(&repl.dir.db());
    repl.line(":dry", DRY);
    let out = repl.line("account.edit elid=1 sok=ok name=Changed", DRY);
    assert!(out.starts_with("ok"), "{out}");
    repl.line(
        r#"billing.call("register", {sok = "ok", email = "bob@example.com", passwd = "Secret123"})"#,
        DRY,
    );
    // The copy shows the changes; the live database has none of them.
    let out = repl.line("account", DRY);
    assert!(
        out.contains("Changed") && out.contains("bob@example.com"),
        "{out}"
    );
    assert_eq!(dump(&repl.dir.db()), before);
    // :as a user who exists on the copy only: a client user sees its own client.
    const AS_BOB: &str = "billhost[dry as bob@example.com]> ";
    let out = repl.line(":as bob@example.com", AS_BOB);
    assert!(out.contains("acting as bob@example.com (user)"), "{out}");
    let out = repl.line("account", AS_BOB);
    assert!(
        out.contains("bob@example.com") && !out.contains("Changed"),
        "{out}"
    );
    assert!(out.contains("(1 element)"), "{out}");
    let out = repl.line(":rollback", PROMPT);
    assert!(out.contains("2 recorded change(s) discarded"), "{out}");
    assert!(
        out.contains("bob@example.com is not a user of the live database"),
        "{out}"
    );
    let out = repl.line("account", PROMPT);
    assert!(!out.contains("Changed") && !out.contains("bob@"), "{out}");
    let dir = repl.quit();
    assert_eq!(dump(&dir.db()), before);
}

#[test]
fn dry_then_commit_applies_the_changes() {
    let mut repl = Repl::start();
    register(&mut repl, "ann@example.com", PROMPT);
    let before = dump(&repl.dir.db());
    repl.line(":dry", DRY);
    repl.line("account.edit elid=1 sok=ok name=Changed", DRY);
    // A read is not replayed; a failed call changed nothing and is not either.
    repl.line("account", DRY);
    repl.line("payment.setpaid elid=99", DRY);
    assert_eq!(register(&mut repl, "bob@example.com", DRY), "2");
    assert_eq!(dump(&repl.dir.db()), before);
    let out = repl.line(":commit", PROMPT);
    assert!(out.contains("2 change(s) applied"), "{out}");
    let out = repl.line("account", PROMPT);
    assert!(
        out.contains("Changed") && out.contains("bob@example.com"),
        "{out}"
    );
    repl.quit();
}

#[test]
fn commit_applies_nothing_when_the_live_database_moved_on() {
    let mut repl = Repl::start();
    repl.line(":dry", DRY);
    assert_eq!(register(&mut repl, "ann@example.com", DRY), "1");
    // Meanwhile another writer (a server, here `billhost call`) takes id 1: the REPL holds no
    // lock that would stop it.
    let status = Command::new(env!("CARGO_BIN_EXE_billhost"))
        .arg("--db")
        .arg(repl.dir.db())
        .arg("--scripts")
        .arg(repl.dir.path().join("scripts"))
        .args([
            "call",
            "register",
            "sok=ok",
            "email=carol@example.com",
            "passwd=Secret123",
        ])
        .stdout(Stdio::null())
        .status()
        .expect("billhost call");
    assert!(status.success());
    let before = dump(&repl.dir.db());
    let out = repl.line(":commit", DRY);
    assert!(out.contains("nothing applied"), "{out}");
    assert!(out.contains("call 1 of 1, register"), "{out}");
    assert_eq!(dump(&repl.dir.db()), before);
    repl.line(":rollback", PROMPT);
    repl.quit();
}

/// The accounts of a PostgreSQL database, as "id name email" lines.
fn pg_accounts(url: &str) -> Vec<String> {
    let conn = billhost::store::connect(
        std::path::Path::new(url),
        billhost::store::Durability::Normal,
    )
    .expect("connect");
    conn.prepare("SELECT id, name, coalesce(email, '') FROM account ORDER BY id")
        .expect("select")
        .query_map([], |r| {
            let (id, name, email): (i64, String, String) = r.try_into()?;
            Ok(format!("{id} {name} {email}"))
        })
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[test]
fn dry_works_on_postgres_on_a_private_copy() {
    let Some(cluster) = pg::Cluster::start("repl") else {
        return;
    };
    let url = cluster.database("repl");
    let mut repl = Repl::start_on(&url);
    register(&mut repl, "ann@example.com", PROMPT);
    let before = pg_accounts(&url);

    // :rollback: the copy showed the changes, the live database never had them.
    repl.line(":dry", DRY);
    let out = repl.line("account.edit elid=1 sok=ok name=Changed", DRY);
    assert!(out.starts_with("ok"), "{out}");
    assert_eq!(register(&mut repl, "bob@example.com", DRY), "2");
    let out = repl.line("account", DRY);
    assert!(
        out.contains("Changed") && out.contains("bob@example.com"),
        "{out}"
    );
    assert_eq!(pg_accounts(&url), before);
    let out = repl.line(":rollback", PROMPT);
    assert!(out.contains("2 recorded change(s) discarded"), "{out}");
    assert_eq!(pg_accounts(&url), before);

    // :commit replays the changes on PostgreSQL, with the ids the copy answered.
    repl.line(":dry", DRY);
    repl.line("account.edit elid=1 sok=ok name=Changed", DRY);
    repl.line("payment.setpaid elid=99", DRY);
    let bob = register(&mut repl, "bob@example.com", DRY);
    assert_eq!(pg_accounts(&url), before);
    let out = repl.line(":commit", PROMPT);
    assert!(out.contains("2 change(s) applied"), "{out}");
    let after = pg_accounts(&url);
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(after[0].contains("Changed"), "{after:?}");
    assert!(after[1].starts_with(&format!("{bob} ")), "{after:?}");

    // The dry session holds no lock: another writer goes on meanwhile, and then the replay,
    // whose create would answer another id, applies nothing.
    repl.line(":dry", DRY);
    register(&mut repl, "carol@example.com", DRY);
    let status = Command::new(env!("CARGO_BIN_EXE_billhost"))
        .arg("--db")
        .arg(&url)
        .arg("--scripts")
        .arg(repl.dir.path().join("scripts"))
        .args([
            "call",
            "register",
            "sok=ok",
            "email=dan@example.com",
            "passwd=Secret123",
        ])
        .stdout(Stdio::null())
        .status()
        .expect("billhost call");
    assert!(status.success());
    let moved = pg_accounts(&url);
    let out = repl.line(":commit", DRY);
    assert!(out.contains("nothing applied"), "{out}");
    assert_eq!(pg_accounts(&url), moved);
    repl.line(":rollback", PROMPT);
    repl.quit();
}

#[test]
fn ctrl_c_stops_a_running_chunk_not_the_repl() {
    let mut repl = Repl::start_with(&["--script-instructions", "1000000000000"]);
    repl.send("while true do end\r");
    repl.expect("\n");
    // The chunk may not have started when the first Ctrl-C arrives: type it until it lands.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = repl.child.try_wait().expect("wait") {
            panic!("Ctrl-C ended the REPL ({status}) instead of the chunk");
        }
        repl.send("\x03");
        if repl
            .expect_within(
                "error script(script): interrupted",
                Duration::from_millis(200),
            )
            .is_some()
        {
            break;
        }
        assert!(Instant::now() < deadline, "Ctrl-C did not stop the chunk");
    }
    repl.expect(PROMPT);
    repl.send("\"after\" .. \"-ctrl-c\"\r");
    repl.expect("after-ctrl-c\n");
    // Ctrl-D ends the input only once the line editor reads again (the terminal raw).
    repl.expect(PROMPT);
    repl.quit();
}

#[test]
fn commands_funcs_out_scripts_reload_as() {
    let mut repl = Repl::start();
    let out = repl.line(":funcs", PROMPT);
    assert!(
        out.lines().any(|l| l.starts_with("payment.setpaid ")),
        "{out}"
    );
    repl.line(":out json", PROMPT);
    let out = repl.line("whoami", PROMPT);
    assert!(out.starts_with(r#"{"doc":{"$func":"whoami""#), "{out}");
    repl.line(":out", PROMPT);
    // One answer in another format.
    let out = repl.line("whoami out=text", PROMPT);
    assert!(out.contains("login=root"), "{out}");
    let out = repl.line(":scripts", PROMPT);
    assert!(
        out.contains("generation: 1\n") && out.contains("last reload error: none"),
        "{out}"
    );

    // A script func goes live on :reload, is a call line and completes.
    let scripts = repl.dir.path().join("scripts");
    std::fs::write(
        scripts.join("hello.lua"),
        r#"billing.func("report.hello", { kind = "view" }, function(req)
             return { greeting = "hello " .. (req.params.name or "nobody") }
           end)"#,
    )
    .expect("write script");
    let out = repl.line(":reload", PROMPT);
    assert!(out.contains("generation 2 is live"), "{out}");
    repl.send("report.hel\t");
    repl.expect("report.hello");
    assert_eq!(repl.line(" name=Ann", PROMPT), "greeting: hello Ann\n");
    // A broken file leaves the last good set live and says so.
    std::fs::write(scripts.join("hello.lua"), "billing.func(").expect("write script");
    let out = repl.line(":reload", PROMPT);
    assert!(
        out.contains("not reloaded, generation 2 stays live"),
        "{out}"
    );
    assert_eq!(
        repl.line("report.hello", PROMPT),
        "greeting: hello nobody\n"
    );

    let out = repl.line(":as nobody@example.com", PROMPT);
    assert!(out.starts_with("error missed(user)"), "{out}");
    let out = repl.line(":nonsense", PROMPT);
    assert!(out.contains("unknown command"), "{out}");
    repl.quit();
}

#[test]
fn type_ahead_at_continuation_prompts_is_never_lost() {
    let mut repl = Repl::start();
    // Pasted (no bracketed paste) or typed faster than the REPL answers: all in one write.
    repl.send("function twice(x)\r  return 2*x\rend\rreturn twice(21)\r");
    let out = repl.expect("42\n");
    assert!(!out.contains("expected"), "{out}");
    repl.expect(PROMPT);
    // And a func call right behind a chunk's end.
    repl.send("t = {}\rfor i = 1, 3 do\rt[i] = i * i\rend\rreturn t[3]\rwhoami\r");
    repl.expect("9\n");
    let out = repl.expect(PROMPT);
    let out = out + &repl.expect(PROMPT);
    assert!(out.contains("root"), "{out}");
    repl.quit();
}
