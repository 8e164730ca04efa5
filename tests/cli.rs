//! The `billhost` binary end to end, as an operator uses it: real process, real database file.

mod common;

use common::{TempDir, dump};
use std::path::Path;
use std::process::{Command, Output};

fn billhost(db: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_billhost"))
        .arg("--db")
        .arg(db)
        .args(args)
        .env_remove("BILLHOST_DB")
        // The shipped scripts are tested on their own; these tests run without any.
        .env("BILLHOST_SCRIPTS", db.with_file_name("no-scripts"))
        .output()
        .expect("run billhost")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn init_register_and_list_like_the_issue_says() {
    let dir = TempDir::new("cli");
    let db = dir.db();
    let init = billhost(&db, &["init", "--admin-password", "secret"]);
    assert!(init.status.success(), "{init:?}");

    let reg = billhost(
        &db,
        &[
            "call",
            "register",
            "sok=ok",
            "email=ann@example.com",
            "passwd=Secret123",
            "realname=Ann",
            "conditions_agree=on",
        ],
    );
    assert_eq!(reg.status.code(), Some(0));
    assert!(stdout(&reg).contains("<ok/><id>1</id>"), "{}", stdout(&reg));

    let list = billhost(&db, &["call", "account", "--out", "json"]);
    assert_eq!(list.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&list.stdout).expect("json");
    assert_eq!(json["doc"]["elem"][0]["name"]["$"], "Ann");
    assert_eq!(json["doc"]["elem"][0]["email"]["$"], "ann@example.com");
    assert_eq!(json["doc"]["p_elems"]["$"], "1");

    // The admin created by init logs in with its password.
    let auth = billhost(
        &db,
        &[
            "call",
            "auth",
            "username=admin",
            "password=secret",
            "--out",
            "text",
        ],
    );
    assert!(stdout(&auth).starts_with("auth="), "{}", stdout(&auth));
    assert!(stdout(&auth).contains("level=28"));

    // Every bad input: an error document with type, object and message, exit 1, nothing changed.
    billhost(
        &db,
        &[
            "call",
            "register",
            "sok=ok",
            "email=bob@example.com",
            "passwd=Secret123",
        ],
    );
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "call",
                "register",
                "sok=ok",
                "email=ANN@EXAMPLE.COM",
                "passwd=Secret123",
            ],
            "exists",
        ),
        (
            &["call", "register", "sok=ok", "passwd=Secret123"],
            "missed",
        ),
        (
            &[
                "call",
                "register",
                "sok=ok",
                "email=cat@example.com",
                "passwd=short",
            ],
            "value",
        ),
        (&["call", "account.delete", "elid=1, 2, 77"], "missed"),
        (&["call", "account.nonexistent"], "unknown"),
        (
            &[
                "call",
                "account.delete",
                "elid=2",
                "--as",
                "ann@example.com",
            ],
            "access",
        ),
        (
            &["call", "account.edit", "elid=2", "--as", "ann@example.com"],
            "access",
        ),
        (&["call", "account", "--out", "yaml"], "value"),
    ];
    for (args, kind) in cases {
        let before = dump(&db);
        let o = billhost(&db, args);
        let out = stdout(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {out}");
        assert!(
            out.contains(&format!("<error type=\"{kind}\" object=\"")),
            "{args:?}: {out}"
        );
        assert!(
            out.contains("<param name=\"object\">") && out.contains("<msg>"),
            "{args:?}: {out}"
        );
        assert_eq!(dump(&db), before, "{args:?} changed data");
    }
    // The same error in JSON.
    let o = billhost(
        &db,
        &[
            "call",
            "register",
            "sok=ok",
            "passwd=Secret123",
            "--out",
            "json",
        ],
    );
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(json["doc"]["error"]["$type"], "missed");
    assert_eq!(json["doc"]["error"]["$object"], "email");
    assert!(
        json["doc"]["error"]["msg"]["$"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
}

#[test]
fn cli_details() {
    let dir = TempDir::new("cli-details");
    let db = dir.db();
    // Any command creates the database on first use; init prints a generated password once.
    let funcs = billhost(&db, &["funcs"]);
    assert!(funcs.status.success());
    let text = stdout(&funcs);
    for line in [
        "register",
        "account.delete",
        "account.su",
        "ticket.write.account",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(line)),
            "{line} missing from:\n{text}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("register ") && l.contains("public"))
    );
    let init = billhost(&db, &["init"]);
    let out = stdout(&init);
    let password = out
        .lines()
        .find_map(|l| l.strip_prefix("admin password (shown once): "))
        .expect("generated password");
    let again = billhost(&db, &["init"]);
    assert!(!stdout(&again).contains("shown once"));
    let auth = billhost(
        &db,
        &[
            "call",
            "auth",
            "username=admin",
            &format!("password={password}"),
        ],
    );
    assert_eq!(auth.status.code(), Some(0), "{}", stdout(&auth));

    // Usage errors are not documents: exit 2.
    assert_eq!(
        billhost(&db, &["call", "account", "oops"]).status.code(),
        Some(2)
    );
    // out= as a parameter works like --out.
    let o = billhost(
        &db,
        &["call", "country", "out=text", "filter=on", "iso2=FR"],
    );
    assert_eq!(stdout(&o), "id=250 iso2=FR name=France\n");
    // A newer database is refused with a clear message.
    rusqlite::Connection::open(&db)
        .expect("open")
        .pragma_update(None, "user_version", 99)
        .expect("bump");
    let o = billhost(&db, &["funcs"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("newer"),
        "{o:?}"
    );
}

#[test]
fn a_script_func_is_called_through_billhost_call() {
    let dir = TempDir::new("cli-script");
    let scripts = dir.path().join("scripts");
    std::fs::create_dir_all(&scripts).expect("scripts dir");
    std::fs::write(
        scripts.join("report.lua"),
        r#"billing.func("report.sum", { access = "admin", kind = "view" }, function(req)
             return { total = billing.money(req.params.a) + billing.money(req.params.b) }
           end)"#,
    )
    .expect("script");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_billhost"))
            .arg("--db")
            .arg(dir.db())
            .arg("--scripts")
            .arg(&scripts)
            .args(args)
            .env_remove("BILLHOST_DB")
            .output()
            .expect("run billhost")
    };
    let o = run(&["call", "report.sum", "a=0.1", "b=0.2", "--out", "text"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(stdout(&o), "total=0.3\n");
    let funcs = stdout(&run(&["funcs"]));
    assert!(
        funcs
            .lines()
            .any(|l| l.starts_with("report.sum ") && l.contains("admin")),
        "{funcs}"
    );
    let o = run(&["scripts"]);
    assert!(stdout(&o).contains("files: report.lua"), "{}", stdout(&o));
    // A float where money is expected is refused with a script error naming the file and line.
    std::fs::write(
        scripts.join("report.lua"),
        r#"billing.func("report.sum", { kind = "view" }, function(req)
             return { total = billing.money(0.5) }
           end)"#,
    )
    .expect("script");
    let o = run(&["call", "report.sum"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("type=\"script\""), "{}", stdout(&o));
    assert!(stdout(&o).contains("report.lua:2:"), "{}", stdout(&o));
}

/// The median wall time of `runs` runs of `billhost call auth` with these credentials.
fn auth_time(db: &Path, username: &str, password: &str, runs: usize) -> std::time::Duration {
    let mut times: Vec<std::time::Duration> = (0..runs)
        .map(|_| {
            let started = std::time::Instant::now();
            let out = billhost(
                db,
                &[
                    "call",
                    "auth",
                    &format!("username={username}"),
                    &format!("password={password}"),
                    "--out",
                    "text",
                ],
            );
            let took = started.elapsed();
            assert_eq!(out.status.code(), Some(1), "{out:?}");
            assert!(
                stdout(&out).starts_with("ERROR auth(auth): Wrong login or password"),
                "{}",
                stdout(&out)
            );
            took
        })
        .collect();
    times.sort();
    times[runs / 2]
}

#[test]
fn a_failed_login_takes_as_long_whether_or_not_the_login_exists() {
    let dir = TempDir::new("cli-login-timing");
    let db = dir.db();
    assert!(
        billhost(&db, &["init", "--admin-password", "secret"])
            .status
            .success()
    );
    let reg = billhost(
        &db,
        &[
            "call",
            "register",
            "sok=ok",
            "email=ann@example.com",
            "passwd=Secret123",
        ],
    );
    assert!(reg.status.success(), "{reg:?}");
    // A client without a password and a disabled login are refused at the same cost too.
    let nopw = billhost(
        &db,
        &["call", "account.edit", "sok=ok", "email=nopw@example.com"],
    );
    assert!(nopw.status.success(), "{nopw:?}");

    // One warm-up, then rounds of one of each, alternating so that the machine's phases (other
    // tests, other processes) hit all three alike; the median of each round's ratios.
    auth_time(&db, "ann@example.com", "wrong-one", 1);
    let (mut unknown, mut without) = (Vec::new(), Vec::new());
    for _ in 0..15 {
        let known = auth_time(&db, "ann@example.com", "wrong-one", 1).as_secs_f64();
        unknown.push(auth_time(&db, "nobody@example.com", "wrong-one", 1).as_secs_f64() / known);
        without.push(auth_time(&db, "nopw@example.com", "wrong-one", 1).as_secs_f64() / known);
    }
    // Before the decoy check an unknown login answered in a fifth of the time (no argon2).
    for (what, mut ratios) in [("unknown", unknown), ("no password", without)] {
        ratios.sort_by(f64::total_cmp);
        let median = ratios[ratios.len() / 2];
        assert!(
            (0.6..1.6).contains(&median),
            "{what} login / wrong password for a known login: {median:.2} ({ratios:.2?})"
        );
    }
}

#[test]
fn the_issues_overflow_is_refused_and_check_stays_clean_at_the_largest_sums() {
    let dir = TempDir::new("cli-overflow");
    let db = dir.db();
    let ok = |args: &[&str]| {
        let o = billhost(&db, args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {o:?}");
        stdout(&o)
    };
    ok(&["init", "--admin-password", "secret"]);
    ok(&["call", "project.edit", "elid=1", "sok=ok", "currency=978"]);
    ok(&[
        "call",
        "paymethod.edit",
        "sok=ok",
        "name=Bank",
        "currency=978",
    ]);
    ok(&["call", "account.edit", "sok=ok", "email=ann@example.com"]);
    // The issue's two expenses: each is beyond the largest amount, refused, nothing stored.
    for _ in 0..2 {
        let o = billhost(
            &db,
            &[
                "call",
                "subaccount.expense.edit",
                "plid=1",
                "sok=ok",
                "postpaid=on",
                "amount=92233720368547758.07",
                "--out",
                "text",
            ],
        );
        assert_eq!(o.status.code(), Some(1), "{o:?}");
        assert!(stdout(&o).contains("ERROR value(amount)"), "{}", stdout(&o));
        assert!(stdout(&o).contains("too large"), "{}", stdout(&o));
    }
    // Pay and refund the largest amount (`ledger_rules` goes on until the credits add up past
    // i64), then spend down to near the lowest balance: every list still answers and the check
    // is clean.
    for i in 1..=5 {
        let id = i.to_string();
        ok(&[
            "call",
            "payment.edit",
            "plid=1",
            "sok=ok",
            "paymethod=1",
            "paymethodamount=999999999999999.99",
        ]);
        ok(&["call", "payment.setpaid", &format!("elid={id}")]);
        ok(&[
            "call",
            "payment.refund",
            &format!("elid={id}"),
            "sok=ok",
            "amount=999999999999999.99",
        ]);
    }
    for _ in 0..10 {
        ok(&[
            "call",
            "subaccount.expense.edit",
            "plid=1",
            "sok=ok",
            "postpaid=on",
            "amount=999999999999999.99",
        ]);
    }
    let list = ok(&["call", "subaccount", "--out", "text"]);
    assert!(list.contains("balance=-9999999999999999.90"), "{list}");
    ok(&["call", "account", "--out", "text"]);
    let check = billhost(&db, &["check"]);
    assert_eq!(check.status.code(), Some(0), "{check:?}");
}

#[test]
fn mgrctl_syntax_by_subcommand_and_by_a_link_named_mgrctl() {
    let dir = TempDir::new("cli-mgrctl");
    let db = dir.db();
    assert!(
        billhost(&db, &["init", "--admin-password", "secret"])
            .status
            .success()
    );
    let link = dir.path().join("mgrctl");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_billhost"), &link).unwrap();
    let mgrctl = |args: &[&str]| {
        Command::new(&link)
            .args(args)
            .env("BILLHOST_DB", &db)
            .env("BILLHOST_SCRIPTS", db.with_file_name("no-scripts"))
            .output()
            .expect("run mgrctl")
    };
    let reg = mgrctl(&[
        "-m",
        "billmgr",
        "register",
        "sok=ok",
        "email=ann@example.com",
        "passwd=Secret123",
    ]);
    assert_eq!(reg.status.code(), Some(0), "{reg:?}");
    // mgrctl's default output is text: `OK id=1`.
    assert_eq!(stdout(&reg).trim(), "OK id=1");

    for (format, flag) in [("text", "text"), ("xml", "xml"), ("json", "json")] {
        for (func, params) in [("account", vec![]), ("account.edit", vec!["elid=1"])] {
            let mut args = vec!["-m", "billmgr", func];
            args.extend(params.iter().copied());
            args.extend(["-o", flag]);
            let by_link = mgrctl(&args);
            let mut call = vec!["call", func];
            call.extend(params.iter().copied());
            call.extend(["--out", format]);
            let by_call = billhost(&db, &call);
            assert_eq!(by_link.status.code(), Some(0), "{by_link:?}");
            assert_eq!(stdout(&by_link), stdout(&by_call), "{func} -o {flag}");
            // The subcommand takes the same words.
            let mut sub = vec!["mgrctl"];
            sub.extend(args.iter().copied());
            assert_eq!(stdout(&billhost(&db, &sub)), stdout(&by_call));
        }
    }
    // Options may come before the func too, as scripts write them.
    let early = mgrctl(&["-o", "json", "-m", "billmgr", "account.edit", "elid=1"]);
    assert!(stdout(&early).starts_with("{\"doc\""), "{}", stdout(&early));

    // An error document: printed, exit 1; a usage error (another module): exit 2, nothing run.
    let missing = mgrctl(&["-m", "billmgr", "account.edit", "elid=99"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stdout(&missing).starts_with("ERROR missed(account):"),
        "{}",
        stdout(&missing)
    );
    let other = mgrctl(&["-m", "ispmgr", "account"]);
    assert_eq!(other.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&other.stderr).contains("-m billmgr"));
    let no_module = mgrctl(&["account"]);
    assert_eq!(no_module.status.code(), Some(2), "{no_module:?}");
}

#[test]
fn script_funcs_get_their_keys_as_given() {
    let dir = TempDir::new("cli-keys");
    let db = dir.db();
    let scripts = dir.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::write(
        scripts.join("zones.lua"),
        r#"
billing.func("zone.info", { access = "admin", kind = "view" }, function(req)
  return { zone = req.params.elid, parent = req.params.plid or "" }
end)
billing.func("zone.delete", { access = "admin" }, function(req)
  return { ok = true, deleted = req.params.elid }
end)
"#,
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_billhost"))
            .arg("--db")
            .arg(&db)
            .arg("--scripts")
            .arg(&scripts)
            .args(args)
            .env_remove("BILLHOST_DB")
            .output()
            .expect("run billhost")
    };
    let info = run(&[
        "call",
        "zone.info",
        "elid=example.com",
        "plid=ns1.example.net",
        "--out",
        "text",
    ]);
    assert_eq!(info.status.code(), Some(0), "{info:?}");
    let text = stdout(&info);
    assert!(text.contains("zone=example.com"), "{text}");
    assert!(text.contains("parent=ns1.example.net"), "{text}");
    // A group of names, as a list in one key.
    let del = run(&[
        "call",
        "zone.delete",
        "elid=example.com, example.org",
        "--out",
        "text",
    ]);
    assert_eq!(del.status.code(), Some(0), "{del:?}");
    assert!(
        stdout(&del).contains("deleted=example.com, example.org"),
        "{}",
        stdout(&del)
    );
    // Built-in funcs that name an object still take ids only.
    let bad = run(&["call", "account.edit", "elid=example.com", "--out", "text"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stdout(&bad).starts_with("ERROR value(elid)"),
        "{}",
        stdout(&bad)
    );
}

/// `run-jobs` prints one line a job, for cron: a job's error cannot print lines of its own
/// (a forged `nightly: ok`).
#[test]
fn run_jobs_prints_one_line_a_job() {
    let dir = TempDir::new("cli-jobs");
    let scripts = dir.path().join("scripts");
    std::fs::create_dir_all(&scripts).expect("scripts dir");
    std::fs::write(
        scripts.join("jobs.lua"),
        r#"billing.every(60, "forger", function() error("boom\nnightly: ok") end)"#,
    )
    .expect("script");
    let o = Command::new(env!("CARGO_BIN_EXE_billhost"))
        .arg("--db")
        .arg(dir.db())
        .arg("--scripts")
        .arg(&scripts)
        .arg("run-jobs")
        .env_remove("BILLHOST_DB")
        .output()
        .expect("run billhost");
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let out = stdout(&o);
    assert!(out.lines().all(|l| l != "nightly: ok"), "{out}");
    assert!(
        out.contains("forger: ") && out.contains("boom\\nnightly: ok"),
        "{out}"
    );
}

/// Text output keeps control characters out of the terminal: an error that echoes a parameter
/// (`p_sort`) shows an escape character as `\u{1b}`, not as the byte.
#[test]
fn text_output_escapes_control_characters() {
    let dir = TempDir::new("cli-text");
    let o = billhost(
        &dir.db(),
        &["call", "account", "p_sort=a\u{1b}[2Jb", "--out", "text"],
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(!o.stdout.contains(&0x1b), "{o:?}");
    assert!(stdout(&o).contains("a\\u{1b}[2Jb"), "{}", stdout(&o));
}

#[test]
fn output_piped_into_a_reader_that_leaves_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let dir = TempDir::new("cli-pipe");
    let db = dir.db();
    assert!(
        billhost(&db, &["init", "--admin-password", "secret"])
            .status
            .success()
    );
    // `billhost funcs | head -0`: the reader is gone before the first line is written.
    let mut child = Command::new(env!("CARGO_BIN_EXE_billhost"))
        .arg("--db")
        .arg(&db)
        .arg("funcs")
        .env("BILLHOST_SCRIPTS", db.with_file_name("no-scripts"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(out.status.code(), Some(101), "{stderr}");
    assert!(
        out.status.success() || out.status.signal() == Some(13),
        "{:?} {stderr}",
        out.status
    );
}
