//! Issue #16 through the real binary: a client written the way published BILLmanager wrappers
//! are (a form POST with `authinfo`; a GET with `auth=SID` and `out=sjson`; the `billmgrses5`
//! cookie; a JSON body) against `billhost serve`, `billhost mgrctl -m billmgr` for the same
//! calls in every output format, and a BILLmanager-style payment module (a Python script under
//! `tests/payment_module/`) driving `payment.info`, `payment.setinpay` and `payment.setpaid`
//! through a link named `mgrctl`.

#[path = "support/build.rs"]
mod build;
mod common;
#[path = "support/serve_bin.rs"]
mod serve_bin;

use common::TempDir;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

const ADMIN_PASSWORD: &str = "AdminPass1";
const PASSWORD: &str = "Secret123";

struct Reply {
    status: u16,
    headers: String,
    body: String,
}

impl Reply {
    fn field(&self, name: &str) -> Option<String> {
        let open = format!("<{name}>");
        let start = self.body.find(&open)? + open.len();
        let end = start + self.body[start..].find(&format!("</{name}>"))?;
        Some(self.body[start..end].to_string())
    }

    fn ok(&self) -> &Reply {
        assert!(
            self.status == 200 && self.body.contains("<ok/>"),
            "not ok: {}",
            self.body
        );
        self
    }

    fn error_type(&self) -> Option<String> {
        let start = self.body.find("<error type=\"")? + 13;
        let end = start + self.body[start..].find('"')?;
        Some(self.body[start..end].to_string())
    }

    /// The session of an `auth` document.
    fn session(&self) -> String {
        let start = self
            .body
            .find("<auth id=\"")
            .unwrap_or_else(|| panic!("no session: {}", self.body))
            + 10;
        let end = start + self.body[start..].find('"').expect("quote");
        self.body[start..end].to_string()
    }
}

/// One request on its own connection (`Connection: close`), the answer read to its end.
fn http(
    addr: SocketAddr,
    method: &str,
    query: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let target = if query.is_empty() {
        "/billmgr".to_string()
    } else {
        format!("/billmgr?{query}")
    };
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8(raw).expect("utf-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    Reply {
        status,
        headers: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

fn form(addr: SocketAddr, body: &str) -> Reply {
    http(
        addr,
        "POST",
        "",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body,
    )
}

fn enc(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn staff() -> String {
    format!("authinfo={}", enc(&format!("admin:{ADMIN_PASSWORD}")))
}

/// The folder with the shipped `manual` gateway, built once: the tests' payment methods use it.
fn plugins() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| build::plugins(&["billhost-plugin-manual"]))
}

fn billhost(db: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_billhost"))
        .arg("--db")
        .arg(db)
        .arg("--scripts")
        .arg(db.with_file_name("no-scripts"))
        .arg("--plugins")
        .arg(plugins())
        .args(args)
        .output()
        .expect("run billhost")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn must(db: &Path, args: &[&str]) -> String {
    let out = billhost(db, args);
    assert!(out.status.success(), "{args:?}: {out:?}");
    stdout(&out)
}

/// A database with staff, a provider whose panel is at a known URL and a manual method.
fn setup(dir: &TempDir) {
    let db = dir.db();
    must(&db, &["init", "--admin-password", ADMIN_PASSWORD]);
    must(
        &db,
        &[
            "call",
            "project.edit",
            "elid=1",
            "sok=ok",
            "billurl=https://billing.example.com/",
        ],
    );
    must(
        &db,
        &[
            "call",
            "paymethod.edit",
            "sok=ok",
            "name=Bank transfer",
            "module=manual",
            "currency=643",
            "project=1",
        ],
    );
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The ids of a list document in `sjson` (`{"doc": {"elem": [{"id": "1"}, ...]}}`).
fn sjson_ids(body: &str) -> Vec<String> {
    let doc = json(body);
    let elems = match &doc["doc"]["elem"] {
        serde_json::Value::Array(a) => a.clone(),
        serde_json::Value::Null => Vec::new(),
        one => vec![one.clone()],
    };
    elems.iter().map(|e| text(&e["id"])).collect()
}

/// A field's text in either JSON form (`"1"` or `{"$": "1"}`).
fn text(v: &serde_json::Value) -> String {
    v.as_str()
        .or_else(|| v["$"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_wrapper_client_pays_and_a_one_time_key_logs_in_once() {
    let dir = TempDir::new("clients16");
    setup(&dir);
    let server = serve_bin::serve(&dir, "clients16", &[], &[]);
    let a = server.addr;

    // register and auth as form POSTs, as the Python and PHP wrappers send them.
    let reg = form(
        a,
        &format!(
            "func=register&sok=ok&email=ann%40example.com&passwd={PASSWORD}&realname=Ann&out=xml"
        ),
    );
    let account = reg.ok().field("id").expect("id");
    let auth = form(
        a,
        &format!("func=auth&username=ann%40example.com&password={PASSWORD}"),
    );
    let sid = auth.session();
    assert!(
        auth.headers.contains(&format!("billmgrses5={sid}")),
        "{}",
        auth.headers
    );

    // The account list by GET with auth=SID and out=sjson.
    let list = http(
        a,
        "GET",
        &format!("func=account&auth={sid}&out=sjson"),
        &[],
        "",
    );
    assert_eq!(
        sjson_ids(&list.body),
        vec![account.clone()],
        "{}",
        list.body
    );

    // account.edit with the session cookie.
    let cookie = format!("billmgrses5={sid}");
    http(
        a,
        "POST",
        "",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", &cookie),
        ],
        &format!("func=account.edit&elid={account}&sok=ok&realname=Ann+Smith"),
    )
    .ok();
    let view = http(
        a,
        "GET",
        &format!("func=account.edit&elid={account}"),
        &[("Cookie", &cookie)],
        "",
    );
    assert_eq!(
        view.field("realname").as_deref(),
        Some("Ann Smith"),
        "{}",
        view.body
    );

    // payment.add as a JSON body.
    let add = http(
        a,
        "POST",
        "",
        &[("Content-Type", "application/json")],
        &format!(
            r#"{{"func": "payment.add", "sok": "ok", "paymethod": 1, "amount": "100", "auth": "{sid}"}}"#
        ),
    );
    let payment = add.ok().field("id").expect("payment id");

    // What a payment module reads, as staff with authinfo.
    let info = form(a, &format!("func=payment.info&elid={payment}&{}", staff()));
    for (field, want) in [
        ("paymethodamount", "100.00"),
        ("subaccountamount", "100.00"),
        ("currency_iso", "RUB"),
        ("paymethod_name", "Bank transfer"),
        ("project_name", "Provider"),
        ("panel_url", "https://billing.example.com/"),
        ("account_email", "ann@example.com"),
        ("account_realname", "Ann Smith"),
        ("status", "1"),
    ] {
        assert_eq!(
            info.field(field).as_deref(),
            Some(want),
            "{field}: {}",
            info.body
        );
    }
    assert!(info.field("number").is_some_and(|n| !n.is_empty()));
    // A client may not read it.
    let refused = http(
        a,
        "GET",
        &format!("func=payment.info&elid={payment}&auth={sid}"),
        &[],
        "",
    );
    assert_eq!(
        refused.error_type().as_deref(),
        Some("access"),
        "{}",
        refused.body
    );

    form(
        a,
        &format!(
            "func=payment.setinpay&elid={payment}&externalid=gw-777&info=started&{}",
            staff()
        ),
    )
    .ok();
    // setpaid with the gateway's id, twice: credited once.
    for _ in 0..2 {
        form(
            a,
            &format!(
                "func=payment.setpaid&elid={payment}&externalid=gw-777&{}",
                staff()
            ),
        )
        .ok();
    }
    let subs = http(
        a,
        "GET",
        &format!("func=subaccount&auth={sid}&out=sjson"),
        &[],
        "",
    );
    assert_eq!(
        text(&json(&subs.body)["doc"]["elem"][0]["balance"]),
        "100.00",
        "{}",
        subs.body
    );
    // Another id for the same payment is refused and changes nothing.
    let other = form(
        a,
        &format!(
            "func=payment.setpaid&elid={payment}&externalid=gw-888&{}",
            staff()
        ),
    );
    assert_eq!(
        other.error_type().as_deref(),
        Some("value"),
        "{}",
        other.body
    );

    // Two more payments: one left new, one canceled; the staff list filtered by two statuses.
    let add = |amount: &str| {
        form(
            a,
            &format!("func=payment.add&sok=ok&paymethod=1&amount={amount}&auth={sid}"),
        )
        .ok()
        .field("id")
        .expect("id")
    };
    let open = add("5");
    let canceled = add("6");
    form(
        a,
        &format!("func=payment.setcanceled&elid={canceled}&{}", staff()),
    )
    .ok();
    let filtered = http(
        a,
        "GET",
        &format!("func=payment&filter=on&status=1%2C4&out=sjson&{}", staff()),
        &[],
        "",
    );
    assert_eq!(
        sjson_ids(&filtered.body),
        vec![open.clone(), payment.clone()],
        "{}",
        filtered.body
    );
    let bad = http(
        a,
        "GET",
        &format!("func=payment&filter=on&status=1%2C%2C4&{}", staff()),
        &[],
        "",
    );
    assert_eq!(bad.error_type().as_deref(), Some("value"), "{}", bad.body);

    // A one-time key: staff makes it, the website sends the client to func=auth&key=KEY.
    form(
        a,
        &format!(
            "func=session.newkey&username=ann%40example.com&key=website-key-0123456789&{}",
            staff()
        ),
    )
    .ok();
    let first = http(a, "GET", "func=auth&key=website-key-0123456789", &[], "");
    let key_sid = first.session();
    let who = http(a, "GET", &format!("func=whoami&auth={key_sid}"), &[], "");
    assert_eq!(
        who.field("login").as_deref(),
        Some("ann@example.com"),
        "{}",
        who.body
    );
    http(a, "GET", &format!("func=keepalive&auth={key_sid}"), &[], "").ok();
    let second = http(a, "GET", "func=auth&key=website-key-0123456789", &[], "");
    assert_eq!(
        second.error_type().as_deref(),
        Some("auth"),
        "{}",
        second.body
    );
    // A key past its lifetime is refused too (its expiry moved back, as time would move it).
    form(
        a,
        &format!(
            "func=session.newkey&username=ann%40example.com&key=expiring-key-0123456789&{}",
            staff()
        ),
    )
    .ok();
    rusqlite::Connection::open(dir.db())
        .expect("open the database")
        .execute(
            "UPDATE session_key SET expires = expires - 3600 WHERE token = 'expiring-key-0123456789'",
            [],
        )
        .expect("age the key");
    let expired = http(a, "GET", "func=auth&key=expiring-key-0123456789", &[], "");
    assert_eq!(
        expired.error_type().as_deref(),
        Some("auth"),
        "{}",
        expired.body
    );

    // The gateway sends the payer back: an ok document naming the panel.
    let back = http(
        a,
        "GET",
        &format!("func=payment.success&elid={payment}"),
        &[],
        "",
    );
    assert_eq!(
        back.ok().field("redirect").as_deref(),
        Some("https://billing.example.com/")
    );

    // mgrctl prints, for each format, the document HTTP answers for the same call.
    let db = dir.db();
    let calls: [(&str, Vec<String>); 3] = [
        ("payment.info", vec![format!("elid={payment}")]),
        ("payment", vec!["filter=on".into(), "status=1,4".into()]),
        ("account", vec![]),
    ];
    for (func, params) in &calls {
        for out in ["xml", "json", "text"] {
            let mut args: Vec<&str> = vec!["mgrctl", "-m", "billmgr", func];
            args.extend(params.iter().map(String::as_str));
            args.extend(["-o", out]);
            let cli = must(&db, &args);
            let query: Vec<String> = params
                .iter()
                .map(|p| {
                    let (k, v) = p.split_once('=').expect("name=value");
                    format!("{k}={}", enc(v))
                })
                .collect();
            let over_http = http(
                a,
                "GET",
                &format!("func={func}&{}&out={out}&{}", query.join("&"), staff()),
                &[],
                "",
            );
            assert_eq!(cli.trim_end(), over_http.body.trim_end(), "{func} -o {out}");
        }
    }
    drop(server);
    let check = billhost(&db, &["check"]);
    assert_eq!(check.status.code(), Some(0), "{check:?}");
}

#[test]
fn a_python_payment_module_credits_through_mgrctl() {
    let dir = TempDir::new("pymodule16");
    setup(&dir);
    let db = dir.db();
    must(
        &db,
        &[
            "call",
            "register",
            "sok=ok",
            "email=bob@example.com",
            &format!("passwd={PASSWORD}"),
        ],
    );
    let added = must(
        &db,
        &[
            "mgrctl",
            "-m",
            "billmgr",
            "payment.add",
            "sok=ok",
            "plid=1",
            "paymethod=1",
            "amount=250.50",
        ],
    );
    assert!(added.starts_with("OK id=1 "), "{added}");
    let link = dir.path().join("mgrctl");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_billhost"), &link).expect("link");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/payment_module/pmtestpay.py");
    let run = |elid: &str, notifications: &str| {
        Command::new("python3")
            .arg(&script)
            .arg(&link)
            .args([elid, "gw-pay-1", notifications])
            .env("BILLHOST_DB", &db)
            .env("BILLHOST_SCRIPTS", db.with_file_name("no-scripts"))
            .env("BILLHOST_PLUGINS", plugins())
            .output()
            .expect("python3 runs (it is part of the test machine)")
    };
    // The gateway notifies three times: the module calls setpaid three times.
    let out = run("1", "3");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stdout(&out).contains("paying 250.50 RUB for invoice"),
        "{}",
        stdout(&out)
    );
    let subs = must(
        &db,
        &["mgrctl", "-m", "billmgr", "subaccount", "-o", "json"],
    );
    assert_eq!(
        json(&subs)["doc"]["elem"][0]["balance"]["$"].as_str(),
        Some("250.50"),
        "{subs}"
    );
    // Run again on the paid payment: the module refuses, nothing changes.
    let again = run("1", "1");
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    assert_eq!(
        must(
            &db,
            &["mgrctl", "-m", "billmgr", "subaccount", "-o", "json"]
        ),
        subs
    );
    let check = billhost(&db, &["check"]);
    assert_eq!(check.status.code(), Some(0), "{check:?}");
    assert!(stdout(&check).contains("consistent"), "{}", stdout(&check));
}
