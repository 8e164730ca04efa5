//! The faults of issue 13's points 7–9, against the built `billhost serve`: each bad input is
//! an error document that changed nothing, every document and file answer carries its
//! security headers. On SQLite and on PostgreSQL (a database of its own in the binary's
//! cluster).
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
use http1::{Answer, Conn, enc};
use pg::Backend;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

const PASSWORD: &str = "Harden123";

/// A folder for the server and the database on `backend`, with the staff user made.
fn prepared(backend: &Backend) -> (TempDir, PathBuf) {
    let dir = TempDir::new("hardening");
    let db = backend.db(dir.path());
    let engine = Engine::open(EngineConfig::new(&db)).expect("engine");
    engine
        .write(|c| billhost::auth::ensure_staff(c, "admin", Some(PASSWORD)))
        .expect("admin");
    drop(engine);
    std::fs::create_dir_all(dir.path().join("scripts")).expect("scripts dir");
    (dir, db)
}

fn error_of(answer: &Answer) -> (String, String) {
    let attr = |name: &str| {
        let tag = &answer.body[answer.body.find("<error ").unwrap_or(0)..];
        let at = tag.find(&format!(" {name}=\"")).map(|i| i + name.len() + 3);
        at.and_then(|i| tag[i..].find('"').map(|j| tag[i..i + j].to_string()))
            .unwrap_or_default()
    };
    (attr("type"), attr("object"))
}

/// The whole answer, headers included, of one request on a connection of its own.
fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request).expect("request");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

backends! {
fn bad_input_through_the_binary_is_refused_with_a_document(backend) {
    let (dir, db) = prepared(&backend);
    let server = serve_bin::serve_on(&dir, db.as_os_str(), "hardening", &[], &[]);
    let auth = format!("authinfo={}", enc(&format!("admin:{PASSWORD}")));
    let mut conn = Conn::connect(server.addr, Duration::from_secs(30)).expect("connect");
    let mut call = |query: &str| {
        conn.get(&format!("/billmgr?{query}&{auth}"))
            .expect("answer")
    };
    let before = common::dump(&db);

    // Group funcs: empty elements and more than the bound refuse the whole call.
    for elid in ["1,,2", "1,", ",1"] {
        let a = call(&format!("func=account.delete&elid={}", enc(elid)));
        assert_eq!(
            error_of(&a),
            ("value".into(), "elid".into()),
            "{elid}: {}",
            a.body
        );
    }
    let many: Vec<String> = (1..=1001).map(|i| i.to_string()).collect();
    let a = call(&format!(
        "func=account.delete&elid={}",
        enc(&many.join(", "))
    ));
    assert_eq!(error_of(&a), ("value".into(), "elid".into()), "{}", a.body);
    // A stored filter refuses control characters like every other text parameter.
    for field in ["name", "email", "label"] {
        let a = call(&format!("func=account.filter&sok=ok&{field}=a%01b"));
        assert_eq!(error_of(&a).0, "value", "{field}: {}", a.body);
    }
    assert_eq!(
        common::dump(&db),
        before,
        "a refused call changed something"
    );
    // Money: more digits than a Decimal holds, or than the currency has, are not rounded.
    let a = call("func=project.edit&elid=1&sok=ok&currency=840");
    assert!(a.is_ok(), "{}", a.body);
    let reg = call("func=register&sok=ok&email=ann%40example.com&passwd=Secret123");
    assert!(reg.body.contains("<id>"), "{}", reg.body);
    let before_money = common::dump(&db);
    for amount in ["9.9999999999999999999999999999999", "10.015", "1e5", "0x10"] {
        let a = call(&format!(
            "func=subaccount.expense.edit&sok=ok&plid=1&amount={}&name=x",
            enc(amount)
        ));
        assert_eq!(
            error_of(&a),
            ("value".into(), "amount".into()),
            "{amount}: {}",
            a.body
        );
    }
    assert_eq!(
        common::dump(&db),
        before_money,
        "a refused amount changed something"
    );
    // The same call with a good amount goes through: the refusals above are the amounts'.
    let a = call("func=subaccount.expense.edit&sok=ok&plid=1&amount=10.010&name=x&postpaid=on");
    assert!(a.body.contains("<id>"), "{}", a.body);

    // A URI over hyper's 64 KiB and a header section over its buffer: documents, with the
    // security headers.
    let long = raw(
        server.addr,
        format!(
            "GET /billmgr?func=account&x={} HTTP/1.1\r\nHost: x\r\n\r\n",
            "a".repeat(70_000)
        )
        .as_bytes(),
    );
    assert!(
        long.starts_with("HTTP/1.1 414"),
        "{}",
        &long[..200.min(long.len())]
    );
    assert!(
        long.contains("<error type=\"value\" object=\"uri\">"),
        "{long}"
    );
    assert!(
        long.to_ascii_lowercase()
            .contains("x-content-type-options: nosniff")
    );
    let huge = raw(
        server.addr,
        // More headers than hyper takes (100): refused however the bytes arrive.
        format!(
            "GET /billmgr?func=account HTTP/1.1\r\nHost: x\r\n{}\r\n",
            (0..150)
                .map(|i| format!("X-H{i}: 1\r\n"))
                .collect::<String>()
        )
        .as_bytes(),
    );
    assert!(
        huge.starts_with("HTTP/1.1 431"),
        "{}",
        &huge[..2000.min(huge.len())]
    );
    assert!(huge.contains("object=\"headers\""), "{huge}");
    // Every document answers nosniff and a policy that runs nothing.
    let doc = raw(
        server.addr,
        format!("GET /billmgr?func=whoami&{auth} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .to_ascii_lowercase();
    assert!(doc.contains("x-content-type-options: nosniff"), "{doc}");
    assert!(
        doc.contains("content-security-policy: default-src 'none'; frame-ancestors 'none'"),
        "{doc}"
    );
}
}
