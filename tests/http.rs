//! `/billmgr` over real TCP on 127.0.0.1, with a minimal HTTP/1.1 client written here: the
//! server runs in-process on its own tokio runtime (or, for the graceful-stop test, as the
//! built binary), and every test stops it by itself. Every test runs on SQLite and on
//! PostgreSQL (`backends!`: the engine, or `billhost serve --db URL`, on a database of its own
//! in the binary's cluster); what is SQLite's alone (the WAL left behind) is checked there only.

mod common;
#[path = "support/http1.rs"]
mod http1;
#[macro_use]
#[path = "support/pg.rs"]
mod pg;
#[path = "support/serving.rs"]
mod serving;

use billhost::auth;
use billhost::server::ServerConfig;
use billhost::server::throttle::ThrottleConfig;
use billhost::store;
use billhost::{Engine, EngineConfig};
use common::TempDir;
use http1::enc;
use pg::Backend;
use serving::Serving;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const ADMIN_PASSWORD: &str = "AdminPass1";
const PASSWORD: &str = "Secret123";

// ------------------------------------------------------------------ the server under test

struct Server {
    addr: SocketAddr,
    dir: TempDir,
    backend: Backend,
    _serving: Serving,
}

impl Server {
    fn start(tag: &str, backend: &Backend) -> Server {
        Server::with(tag, backend, ServerConfig::default())
    }

    fn with(tag: &str, backend: &Backend, config: ServerConfig) -> Server {
        Server::with_blocking_threads(tag, backend, config, 512)
    }

    /// `blocking_threads` bounds tokio's blocking pool, where calls run.
    fn with_blocking_threads(
        tag: &str,
        backend: &Backend,
        config: ServerConfig,
        blocking_threads: usize,
    ) -> Server {
        let dir = TempDir::new(tag);
        // As `billhost serve` opens it: the writer's batches synced by the sync thread.
        let engine_config = EngineConfig {
            deferred_sync: true,
            background_checkpoints: true,
            ..EngineConfig::new(backend.db(dir.path()))
        };
        let engine = Engine::open(engine_config).expect("open engine");
        engine
            .write(|c| auth::ensure_staff(c, "admin", Some(ADMIN_PASSWORD)))
            .expect("admin");
        let serving = Serving::start(Arc::new(engine), config, blocking_threads);
        Server {
            addr: serving.addr,
            dir,
            backend: backend.clone(),
            _serving: serving,
        }
    }

    /// What the engine was opened on: a SQLite file or a PostgreSQL URL.
    fn db(&self) -> PathBuf {
        self.backend.db(self.dir.path())
    }

    /// A connection of its own to the server's database, through the store.
    fn conn(&self) -> store::Connection {
        store::connect(&self.db(), store::Durability::Full).expect("open db")
    }

    /// Holds what every writer of the server's database waits for until released: SQLite's
    /// write lock (`BEGIN IMMEDIATE`), or the writers' advisory lock of PostgreSQL.
    fn hold_writers(&self) -> WritersHeld {
        match &self.backend {
            Backend::Sqlite => {
                let db = rusqlite::Connection::open(self.db()).expect("open db");
                db.execute_batch("BEGIN IMMEDIATE")
                    .expect("hold the write lock");
                WritersHeld::Sqlite(db)
            }
            Backend::Postgres(db) => {
                let mut c = postgres::Client::connect(&db.url, postgres::NoTls).expect("connect");
                c.batch_execute("BEGIN").expect("begin");
                c.execute(
                    "SELECT pg_advisory_xact_lock($1)",
                    &[&store::pg::WRITER_LOCK],
                )
                .expect("hold the writers' lock");
                WritersHeld::Postgres(c)
            }
        }
    }
}

/// The writers' lock of [`Server::hold_writers`], held until [`WritersHeld::release`].
enum WritersHeld {
    Sqlite(rusqlite::Connection),
    Postgres(postgres::Client),
}

impl WritersHeld {
    fn release(self) {
        match self {
            WritersHeld::Sqlite(db) => db.execute_batch("ROLLBACK").expect("release"),
            WritersHeld::Postgres(mut c) => c.batch_execute("ROLLBACK").expect("release"),
        }
    }
}

impl Server {
    fn get(&self, query: &str) -> Reply {
        get(self.addr, query, &[])
    }

    fn post(&self, query: &str, body: &str) -> Reply {
        post(self.addr, query, body, &[])
    }

    /// Registers a client (`email` is its login) and answers its id.
    fn register(&self, email: &str) -> String {
        let reply = self.post(
            "",
            &format!(
                "func=register&sok=ok&email={}&passwd={PASSWORD}&realname=Client",
                enc(email)
            ),
        );
        reply.ok();
        reply.xml_field("id").expect("id")
    }

    fn login(&self, email: &str) -> String {
        let reply = self.get(&format!(
            "func=auth&username={}&password={PASSWORD}",
            enc(email)
        ));
        reply
            .xml_attr("auth", "id")
            .unwrap_or_else(|| panic!("no session: {}", reply.body))
    }
}

fn admin() -> String {
    format!("authinfo=admin:{ADMIN_PASSWORD}")
}

// ------------------------------------------------------------------ a minimal HTTP/1.1 client

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn content_type(&self) -> &str {
        self.header("content-type").unwrap_or("")
    }

    /// The `type` of an XML error document (and insists on HTTP 200 and XML).
    fn error(&self) -> String {
        assert_eq!(self.status, 200, "{self:?}");
        assert!(self.content_type().starts_with("text/xml"), "{self:?}");
        self.xml_attr("error", "type")
            .unwrap_or_else(|| panic!("not an error document: {}", self.body))
    }

    fn msg(&self) -> String {
        self.xml_field("msg").unwrap_or_default()
    }

    fn ok(&self) {
        assert_eq!(self.status, 200, "{self:?}");
        assert!(self.body.contains("<ok/>"), "not ok: {}", self.body);
    }

    fn xml_attr(&self, element: &str, attr: &str) -> Option<String> {
        let start = self.body.find(&format!("<{element} "))?;
        let tag = &self.body[start..start + self.body[start..].find('>')?];
        let at = tag.find(&format!(" {attr}=\""))? + attr.len() + 3;
        Some(tag[at..at + tag[at..].find('"')?].to_string())
    }

    fn xml_field(&self, name: &str) -> Option<String> {
        let open = format!("<{name}>");
        let start = self.body.find(&open)? + open.len();
        let end = start + self.body[start..].find(&format!("</{name}>"))?;
        Some(self.body[start..end].to_string())
    }
}

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    Ok(stream)
}

/// A connection from another loopback address (Linux answers for all of 127.0.0.0/8), so that
/// per-address limits can be told apart.
fn connect_from(addr: SocketAddr, source: IpAddr) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::new(source, 0))
            .expect("bind source");
        socket.connect(addr).await.expect("connect")
    });
    let stream = stream.into_std().expect("std stream");
    stream.set_nonblocking(false).expect("blocking");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    stream
}

/// Sends `request` and reads the whole answer (`Connection: close`).
fn exchange(mut stream: TcpStream, request: &[u8]) -> std::io::Result<Reply> {
    stream.write_all(request)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> std::io::Result<Reply> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    if raw.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "no answer",
        ));
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("incomplete head"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let length = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .ok_or_else(|| bad("no content-length"))?;
    if body.len() != length {
        return Err(bad(&format!(
            "body of {} bytes, content-length {length}",
            body.len()
        )));
    }
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(body).into_owned(),
    })
}

fn request_bytes(method: &str, query: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head =
        format!("{method} /billmgr?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" {
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            head.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn get(addr: SocketAddr, query: &str, headers: &[(&str, &str)]) -> Reply {
    let stream = connect(addr).expect("connect");
    exchange(stream, &request_bytes("GET", query, headers, b"")).expect("answer")
}

fn post(addr: SocketAddr, query: &str, body: &str, headers: &[(&str, &str)]) -> Reply {
    let stream = connect(addr).expect("connect");
    exchange(
        stream,
        &request_bytes("POST", query, headers, body.as_bytes()),
    )
    .expect("answer")
}

// ------------------------------------------------------------------ sessions and identities

backends! {
fn register_auth_and_the_session_by_param_and_by_cookie(backend) {
    let s = Server::start("http-session", &backend);
    let ann = s.register("ann@example.com");
    s.register("bob@example.com");

    let reply = s.get(&format!(
        "func=auth&username=ann%40example.com&password={PASSWORD}"
    ));
    assert_eq!(reply.status, 200);
    let sid = reply.xml_attr("auth", "id").expect("session id");
    assert_eq!(reply.xml_attr("auth", "level").as_deref(), Some("16"));
    assert!(
        reply.body.contains(&format!(">{sid}</auth>")),
        "{}",
        reply.body
    );
    let cookie = reply.header("set-cookie").expect("cookie set");
    assert!(
        cookie.starts_with(&format!("billmgrses5={sid};")),
        "{cookie}"
    );
    assert!(cookie.contains("HttpOnly"), "{cookie}");

    // The session by parameter and by cookie: the same caller, who sees only its own client.
    let by_param = s.get(&format!("func=whoami&auth={sid}"));
    assert_eq!(
        by_param.xml_field("login").as_deref(),
        Some("ann@example.com")
    );
    assert_eq!(by_param.xml_field("account"), Some(ann.clone()));
    let cookie_header = format!("billmgrses5={sid}");
    let by_cookie = get(s.addr, "func=account", &[("Cookie", &cookie_header)]);
    assert_eq!(by_cookie.xml_field("p_elems").as_deref(), Some("1"));
    assert_eq!(
        by_cookie.xml_field("email").as_deref(),
        Some("ann@example.com")
    );
    let with_others = get(
        s.addr,
        "func=whoami",
        &[("Cookie", &format!("lang=en; {cookie_header}; x=y"))],
    );
    assert_eq!(
        with_others.xml_field("login").as_deref(),
        Some("ann@example.com")
    );

    // logout ends the session and clears the cookie.
    let out = get(s.addr, "func=logout", &[("Cookie", &cookie_header)]);
    out.ok();
    assert!(
        out.header("set-cookie")
            .is_some_and(|c| c.contains("Max-Age=0")),
        "{out:?}"
    );
    assert_eq!(s.get(&format!("func=whoami&auth={sid}")).error(), "auth");

    // Without credentials: public funcs answer, the others ask to log in.
    assert_eq!(s.get("func=account").error(), "auth");
    assert!(!s.get("func=register").body.contains("<error"));
}
}

backends! {
fn a_session_expires_after_an_hour_idle(backend) {
    let s = Server::start("http-expiry", &backend);
    s.register("ann@example.com");
    let sid = s.login("ann@example.com");
    assert_eq!(
        s.get(&format!("func=whoami&auth={sid}"))
            .xml_field("login")
            .as_deref(),
        Some("ann@example.com")
    );

    let aged = s
        .conn()
        .execute(
            "UPDATE session SET last_seen = last_seen - ?2 WHERE id = ?1",
            store::params![sid, auth::SESSION_IDLE_SECS + 1],
        )
        .expect("age session");
    assert_eq!(aged, 1);

    let reply = s.get(&format!("func=whoami&auth={sid}"));
    assert_eq!(reply.error(), "auth");
    assert!(reply.msg().contains("expired"), "{}", reply.msg());
    let cookie = format!("billmgrses5={sid}");
    assert_eq!(
        get(s.addr, "func=account", &[("Cookie", &cookie)]).error(),
        "auth"
    );
    // A stale cookie does not stand in the way of logging in again.
    let again = get(
        s.addr,
        &format!("func=auth&username=ann%40example.com&password={PASSWORD}"),
        &[("Cookie", &cookie)],
    );
    assert!(again.xml_attr("auth", "id").is_some(), "{}", again.body);
}
}

backends! {
fn authinfo_su_and_a_client_refused_another_clients_object(backend) {
    let s = Server::start("http-authinfo", &backend);
    let ann = s.register("ann@example.com");
    let bob = s.register("bob@example.com");

    // authinfo: staff sees every client; a client sees its own.
    let all = s.get(&format!("func=account&{}", admin()));
    assert_eq!(all.xml_field("p_elems").as_deref(), Some("2"));
    let ann_auth = format!("authinfo=ann%40example.com:{PASSWORD}");
    let own = s.get(&format!("func=account&{ann_auth}"));
    assert_eq!(own.xml_field("p_elems").as_deref(), Some("1"));
    assert_eq!(s.get("func=account&authinfo=admin:wrong").error(), "auth");
    assert_eq!(
        s.get("func=account&authinfo=nobody%40example.com:x")
            .error(),
        "auth"
    );
    assert_eq!(s.get("func=account&authinfo=no-colon").error(), "auth");

    // su: staff acts as the client; a client may not.
    let su = s.get(&format!("func=whoami&{}&su=ann%40example.com", admin()));
    assert_eq!(su.xml_field("login").as_deref(), Some("ann@example.com"));
    assert_eq!(su.xml_field("su_from").as_deref(), Some("admin"));
    let as_ann = s.get(&format!(
        "func=account.edit&elid={bob}&{}&su=ann%40example.com",
        admin()
    ));
    assert_eq!(as_ann.error(), "access");
    assert_eq!(
        s.get(&format!("func=whoami&{ann_auth}&su=admin")).error(),
        "access"
    );

    // A client user is refused another client's object, and may view its own.
    let other = s.get(&format!("func=account.edit&elid={bob}&{ann_auth}"));
    assert_eq!(other.error(), "access");
    assert_eq!(
        other.xml_attr("error", "object").as_deref(),
        Some("account")
    );
    let mine = s.get(&format!("func=account.edit&elid={ann}&{ann_auth}"));
    assert_eq!(mine.xml_field("elid"), Some(ann.clone()));
    let change = s.post(
        "",
        &format!("func=account.edit&elid={bob}&sok=ok&name=Mallory&{ann_auth}"),
    );
    assert_eq!(change.error(), "access");

    // A write with cached credentials runs on the writer, which checks the auth epoch in the
    // write's own transaction; when an unrelated change moved the epoch, the write takes the
    // slow way and still runs.
    let rename = |name: &str, auth: &str| {
        s.post("", &format!("func=account.edit&elid={ann}&sok=ok&name={name}&{auth}"))
    };
    let name = || {
        s.get(&format!("func=account.edit&elid={ann}&{}", admin()))
            .xml_field("name")
    };
    rename("Ann1", &ann_auth).ok();
    assert_eq!(name().as_deref(), Some("Ann1"));
    s.post(
        "",
        &format!("func=account.edit&elid={bob}&sok=ok&passwd=BobSecret789&{}", admin()),
    )
    .ok();
    rename("Ann2", &ann_auth).ok();
    assert_eq!(name().as_deref(), Some("Ann2"));

    // A password change is honoured at once, although the old credentials were just cached:
    // by reads and by writes, which change nothing.
    s.post(
        "",
        &format!(
            "func=account.edit&elid={ann}&sok=ok&passwd=NewSecret456&{}",
            admin()
        ),
    )
    .ok();
    assert_eq!(s.get(&format!("func=whoami&{ann_auth}")).error(), "auth");
    assert_eq!(rename("Ann3", &ann_auth).error(), "auth");
    assert_eq!(name().as_deref(), Some("Ann2"));
    let new_auth = "authinfo=ann%40example.com:NewSecret456";
    assert_eq!(
        s.get(&format!("func=whoami&{new_auth}"))
            .xml_field("login")
            .as_deref(),
        Some("ann@example.com")
    );
}
}

// ------------------------------------------------------------------ formats, GET and POST

backends! {
fn every_out_format_with_its_content_type(backend) {
    let s = Server::start("http-formats", &backend);
    s.register("ann@example.com");
    let q = |out: &str| s.get(&format!("func=account&{}&out={out}", admin()));

    let xml = q("xml");
    assert_eq!(xml.status, 200);
    assert_eq!(xml.content_type(), "text/xml; charset=UTF-8");
    assert!(xml.body.starts_with("<?xml"), "{}", xml.body);
    assert!(xml.body.contains("<elem><id>1</id>"), "{}", xml.body);
    assert_eq!(s.get(&format!("func=account&{}", admin())).body, xml.body);

    let json = q("json");
    assert_eq!(json.content_type(), "application/json; charset=UTF-8");
    let v: serde_json::Value = serde_json::from_str(&json.body).expect("json");
    assert_eq!(v["doc"]["elem"][0]["email"]["$"], "ann@example.com");
    assert_eq!(v["doc"]["$func"], "account");

    let sjson = q("sjson");
    assert_eq!(sjson.content_type(), "application/json; charset=UTF-8");
    let v: serde_json::Value = serde_json::from_str(&sjson.body).expect("sjson");
    assert_eq!(v["doc"]["elem"][0]["email"]["$"], "ann@example.com");
    assert!(v["doc"].get("$func").is_none(), "{}", sjson.body);

    let text = q("text");
    assert_eq!(text.content_type(), "text/plain; charset=UTF-8");
    assert!(text.body.starts_with("id=1 "), "{}", text.body);
    assert!(text.body.contains("email=ann@example.com"), "{}", text.body);

    // Errors come in the format asked for, with HTTP 200 too.
    let err = s.get("func=account&out=json");
    assert_eq!(err.status, 200);
    let v: serde_json::Value = serde_json::from_str(&err.body).expect("json error");
    assert_eq!(v["doc"]["error"]["$type"], "auth");
    let err = s.get("func=account&out=text");
    assert_eq!(err.content_type(), "text/plain; charset=UTF-8");
}
}

backends! {
fn post_bodies_and_query_strings_merge_with_the_body_winning(backend) {
    let s = Server::start("http-post", &backend);
    let ann = s.register("ann@example.com");
    // Everything in the body.
    let r = s.post(
        "",
        &format!("func=account.edit&elid={ann}&{}&out=json", admin()),
    );
    assert_eq!(r.content_type(), "application/json; charset=UTF-8");
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(v["doc"]["email"]["$"], "ann@example.com");
    // Split between both; the body's `out` and `name` win over the query's.
    let r = s.post(
        &format!("func=account.edit&elid={ann}&sok=ok&name=Query&out=json"),
        &format!("name=Body%20%2B%20Co&out=xml&{}", admin()),
    );
    r.ok();
    assert!(r.content_type().starts_with("text/xml"));
    let view = s.get(&format!("func=account.edit&elid={ann}&{}", admin()));
    assert_eq!(view.xml_field("name").as_deref(), Some("Body + Co"));
    // The peer address reaches the history row.
    let (user, ip): (String, String) = s
        .conn()
        .query_row(
            "SELECT user_login, ip FROM history ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("history row");
    assert_eq!((user.as_str(), ip.as_str()), ("admin", "127.0.0.1"));
    // A charset parameter on the content type is fine.
    let r = post(
        s.addr,
        "",
        &format!("func=whoami&{}", admin()),
        &[(
            "Content-Type",
            "application/x-www-form-urlencoded; charset=UTF-8",
        )],
    );
    assert_eq!(r.xml_field("login").as_deref(), Some("admin"));
}
}

// ------------------------------------------------------------------ it stays up

backends! {
fn bad_input_is_answered_with_an_error_document_and_changes_nothing(backend) {
    let config = ServerConfig {
        body_limit: 4096,
        max_params: 50,
        ..ServerConfig::default()
    };
    let s = Server::with("http-bad", &backend, config);
    s.register("ann@example.com");
    let before = common::dump(&s.db());
    let reg = "func=register&sok=ok&email=cat%40example.com&passwd=Secret123";

    let cases: Vec<(&str, Reply, &str, &str)> = vec![
        (
            "malformed escape",
            s.get(&format!("{reg}&realname=%zz")),
            "value",
            "query",
        ),
        (
            "truncated escape",
            s.get(&format!("{reg}&realname=%4")),
            "value",
            "query",
        ),
        (
            "invalid UTF-8 in the query",
            s.get(&format!("{reg}&realname=%ff%fe")),
            "value",
            "query",
        ),
        (
            "invalid UTF-8 in the body",
            s.post("", &format!("{reg}&realname=%C3%28")),
            "value",
            "body",
        ),
        (
            "unknown func",
            s.get("func=account.nonexistent"),
            "unknown",
            "func",
        ),
        ("missing func", s.get("out=xml&elid=1"), "missed", "func"),
        ("empty request", s.get(""), "missed", "func"),
        (
            "unknown format",
            s.get("func=account&out=yaml"),
            "value",
            "out",
        ),
        (
            "unknown format in the body",
            s.post("", "func=account&out=yaml"),
            "value",
            "out",
        ),
        (
            "bad credentials",
            s.get("func=account.edit&elid=1&authinfo=admin:nope"),
            "auth",
            "auth",
        ),
        (
            "unknown session",
            s.get("func=account&auth=0123456789abcdef"),
            "auth",
            "auth",
        ),
        (
            "bad elid",
            s.get(&format!("func=account.edit&elid=x&{}", admin())),
            "value",
            "elid",
        ),
        (
            "body too large",
            s.post("", &format!("{reg}&realname={}", "a".repeat(5000))),
            "value",
            "body",
        ),
        (
            "too many parameters",
            s.get(
                &(0..51)
                    .map(|i| format!("p{i}=1"))
                    .collect::<Vec<_>>()
                    .join("&"),
            ),
            "value",
            "params",
        ),
        (
            "too many parameters, query and body together",
            s.post(
                &(0..30)
                    .map(|i| format!("q{i}=1"))
                    .collect::<Vec<_>>()
                    .join("&"),
                &(0..30)
                    .map(|i| format!("b{i}=1"))
                    .collect::<Vec<_>>()
                    .join("&"),
            ),
            "value",
            "params",
        ),
        (
            "another content type",
            post(s.addr, "", reg, &[("Content-Type", "text/plain")]),
            "value",
            "content-type",
        ),
        (
            "a JSON body that is not JSON",
            post(s.addr, "", reg, &[("Content-Type", "application/json")]),
            "value",
            "body",
        ),
        (
            "a JSON body that is not an object",
            post(
                s.addr,
                "",
                "[1, 2]",
                &[("Content-Type", "application/json")],
            ),
            "value",
            "body",
        ),
        (
            "a float in a JSON body",
            post(
                s.addr,
                "",
                r#"{"func": "register", "sok": "ok", "amount": 10.5}"#,
                &[("Content-Type", "application/json")],
            ),
            "value",
            "amount",
        ),
        (
            "another method",
            exchange(
                connect(s.addr).expect("connect"),
                &request_bytes("PUT", reg, &[("Content-Length", "0")], b""),
            )
            .expect("answer"),
            "value",
            "method",
        ),
    ];
    let split = &cases
        .iter()
        .find(|c| c.0.ends_with("query and body together"))
        .expect("case")
        .1;
    assert!(
        split.msg().contains("At most 50 parameters"),
        "{}",
        split.msg()
    );
    for (what, reply, kind, object) in &cases {
        assert_eq!(&reply.error(), kind, "{what}: {}", reply.body);
        assert_eq!(
            reply.xml_attr("error", "object").as_deref(),
            Some(*object),
            "{what}: {}",
            reply.body
        );
        assert!(!reply.msg().is_empty(), "{what}");
    }

    // A body too large that declares no length (chunked) is cut off too.
    let mut chunked = b"POST /billmgr HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
        Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    for _ in 0..10 {
        chunked.extend_from_slice(b"400\r\n");
        chunked.extend_from_slice(&[b'a'; 0x400]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let reply = exchange(connect(s.addr).expect("connect"), &chunked).expect("answer");
    assert_eq!(reply.error(), "value");
    assert!(reply.msg().contains("larger than 4096"), "{}", reply.msg());

    // Paths other than /billmgr: a document too, with 404.
    let stream = connect(s.addr).expect("connect");
    let other = exchange(
        stream,
        b"GET /other HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .expect("answer");
    assert_eq!(other.status, 404);
    assert!(
        other.body.contains("<error type=\"missed\""),
        "{}",
        other.body
    );

    // What hyper refuses before any handler runs is a document too: a request line over its
    // 64 KiB, and a header section over its buffer.
    let long = s.get(&format!(
        "func=account&{}&x={}",
        admin(),
        "a".repeat(70_000)
    ));
    assert_eq!(long.status, 414, "{long:?}");
    assert!(long.content_type().starts_with("text/xml"), "{long:?}");
    assert_eq!(long.xml_attr("error", "type").as_deref(), Some("value"));
    assert_eq!(long.xml_attr("error", "object").as_deref(), Some("uri"));
    assert!(long.msg().contains("POST"), "{}", long.msg());
    // More headers than hyper takes (100): refused however the bytes arrive (a 500 KB header
    // may be read whole in one go, and then passes).
    let names: Vec<String> = (0..150).map(|i| format!("X-H{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    let huge = get(s.addr, "func=account", &many);
    assert_eq!(huge.status, 431, "{huge:?}");
    assert_eq!(huge.xml_attr("error", "object").as_deref(), Some("headers"));
    let raw = exchange(
        connect(s.addr).expect("connect"),
        b"GET /billmgr?func=account&x=\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .expect("answer");
    assert_eq!(raw.status, 400, "{raw:?}");
    assert_eq!(raw.xml_attr("error", "object").as_deref(), Some("request"));
    for r in [&long, &huge, &other, &raw] {
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{r:?}");
    }

    assert_eq!(
        common::dump(&s.db()),
        before,
        "a bad request changed something"
    );
    // And the server is still there.
    s.register("dan@example.com");
}
}

backends! {
fn a_request_that_takes_too_long_is_answered_with_a_timeout_document(backend) {
    let config = ServerConfig {
        request_timeout: Duration::from_millis(800),
        ..ServerConfig::default()
    };
    let s = Server::with("http-timeout", &backend, config);

    // A client that never finishes its body.
    let mut stream = connect(s.addr).expect("connect");
    let head = "POST /billmgr?func=register HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nsok=ok";
    stream.write_all(head.as_bytes()).expect("send");
    let started = Instant::now();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    let reply = parse_reply(&raw).expect("complete answer");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(reply.error(), "value");
    assert!(
        reply.msg().contains("not received within"),
        "{}",
        reply.msg()
    );

    // A func held up by another writer: the answer says it may still complete, and it does.
    let held = s.hold_writers();
    let reply = s.post(
        "",
        "func=register&sok=ok&email=slow%40example.com&passwd=Secret123&realname=Slow",
    );
    assert_eq!(reply.error(), "internal");
    assert!(reply.msg().contains("may complete"), "{}", reply.msg());
    held.release();
    let db = s.conn();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if accounts_with_email(&db, "slow@example.com") == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the held-up func never completed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
}

fn accounts_with_email(db: &store::Connection, email: &str) -> i64 {
    db.query_row(
        "SELECT count(*) FROM account WHERE email = ?1",
        [email],
        |r| r.get(0),
    )
    .expect("count")
}

backends! {
fn a_func_that_cannot_start_in_time_is_never_run(backend) {
    let config = ServerConfig {
        request_timeout: Duration::from_millis(800),
        ..ServerConfig::default()
    };
    // One blocking thread: while one call is held up, the next waits for its turn.
    let s = Server::with_blocking_threads("http-notrun", &backend, config, 1);
    let addr = s.addr;
    let writers = s.hold_writers();
    let held = std::thread::spawn(move || {
        post(
            addr,
            "",
            "func=register&sok=ok&email=held%40example.com&passwd=Secret123&realname=Held",
            &[],
        )
    });
    std::thread::sleep(Duration::from_millis(200));
    let queued = s.post(
        "",
        "func=register&sok=ok&email=queued%40example.com&passwd=Secret123&realname=Queued",
    );
    assert_eq!(queued.error(), "internal");
    assert!(queued.msg().contains("was not run"), "{}", queued.msg());
    let held = held.join().expect("held request");
    assert!(held.msg().contains("may complete"), "{}", held.msg());

    writers.release();
    let db = s.conn();
    let deadline = Instant::now() + Duration::from_secs(10);
    while accounts_with_email(&db, "held@example.com") == 0 {
        assert!(
            Instant::now() < deadline,
            "the held-up func never completed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The pool is free again: a later call runs, and the abandoned one never did.
    s.register("later@example.com");
    assert_eq!(accounts_with_email(&db, "queued@example.com"), 0);
}
}

/// Reads one answer off a kept-alive connection (by its Content-Length).
fn read_one(stream: &mut TcpStream) -> Reply {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).expect("head"), 1, "closed early");
        raw.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&raw).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("content-length");
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).expect("body");
    raw.extend_from_slice(&body);
    parse_reply(&raw).expect("answer")
}

backends! {
fn keep_alive_works_and_quiet_connections_are_closed(backend) {
    let config = ServerConfig {
        request_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_millis(1500),
        ..ServerConfig::default()
    };
    let s = Server::with("http-idle", &backend, config);

    // Two requests on one connection, then silence: the server hangs up by itself.
    let mut stream = connect(s.addr).expect("connect");
    let request = format!(
        "GET /billmgr?func=whoami&{} HTTP/1.1\r\nHost: x\r\n\r\n",
        admin()
    );
    for _ in 0..2 {
        stream.write_all(request.as_bytes()).expect("send");
        assert_eq!(
            read_one(&mut stream).xml_field("login").as_deref(),
            Some("admin")
        );
    }
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(rest.is_empty());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1000),
        "closed too soon: {waited:?}"
    );
    assert!(waited < Duration::from_secs(10), "never closed: {waited:?}");

    // A client that connects and sends nothing, or half a request line, is dropped too.
    for sent in [&b""[..], b"GET /billm"] {
        let mut stream = connect(s.addr).expect("connect");
        stream.write_all(sent).expect("send");
        let started = Instant::now();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(1000),
            "closed too soon: {waited:?}"
        );
        assert!(waited < Duration::from_secs(10), "never closed: {waited:?}");
    }
    // And the server still answers.
    assert!(s.get("func=register").body.contains("<doc"));
}
}

backends! {
fn repeated_failed_logins_are_refused_for_a_while(backend) {
    let config = ServerConfig {
        throttle: ThrottleConfig {
            max_failures: 3,
            window: Duration::from_secs(60),
        },
        ..ServerConfig::default()
    };
    let s = Server::with("http-throttle", &backend, config);
    s.register("ann@example.com");
    s.register("bob@example.com");
    let from = |last: u8, query: &str| -> Reply {
        let stream = connect_from(s.addr, IpAddr::from([127, 0, 0, last]));
        exchange(stream, &request_bytes("GET", query, &[], b"")).expect("answer")
    };
    let ann_ok = format!("func=auth&username=ann%40example.com&password={PASSWORD}");
    let ann_bad = "func=auth&username=ann%40example.com&password=wrong";

    // One login, failing from three addresses: that login is refused everywhere, even with its
    // right password, by func=auth and by authinfo; other logins are not.
    for last in [2, 3, 4] {
        assert_eq!(from(last, ann_bad).error(), "auth");
    }
    let refused = from(5, &ann_ok);
    assert_eq!(refused.error(), "auth");
    assert!(
        refused.msg().contains("Too many failed logins"),
        "{}",
        refused.msg()
    );
    let refused = from(
        5,
        &format!("func=whoami&authinfo=ann%40example.com:{PASSWORD}"),
    );
    assert!(
        refused.msg().contains("Too many failed logins"),
        "{}",
        refused.msg()
    );
    let bob = from(
        5,
        &format!("func=auth&username=bob%40example.com&password={PASSWORD}"),
    );
    assert!(bob.xml_attr("auth", "id").is_some(), "{}", bob.body);

    // One address, failing for three logins (authinfo counts too): every login from it is
    // refused; the same login from elsewhere is not.
    assert_eq!(
        from(6, "func=auth&username=x1%40example.com&password=x").error(),
        "auth"
    );
    assert_eq!(
        from(6, "func=account&authinfo=x2%40example.com:x").error(),
        "auth"
    );
    assert_eq!(
        from(6, "func=account&authinfo=bob%40example.com:wrong").error(),
        "auth"
    );
    let refused = from(
        6,
        &format!("func=auth&username=bob%40example.com&password={PASSWORD}"),
    );
    assert!(
        refused.msg().contains("Too many failed logins"),
        "{}",
        refused.msg()
    );
    let bob = from(
        7,
        &format!("func=auth&username=bob%40example.com&password={PASSWORD}"),
    );
    assert!(bob.xml_attr("auth", "id").is_some(), "{}", bob.body);
}
}

// ------------------------------------------------------------------ graceful stop of the binary

struct Spawned {
    child: Child,
    addr: SocketAddr,
    admin_password: String,
}

/// Starts `billhost serve` on a fresh database, as the README's run command does, and reads
/// the generated admin password and the bound address from its stdout.
fn spawn_binary(db: &std::path::Path, scripts: &std::path::Path) -> Spawned {
    let mut child = Command::new(env!("CARGO_BIN_EXE_billhost"))
        .arg("--db")
        .arg(db)
        .arg("--scripts")
        .arg(scripts)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("BILLHOST_DB")
        .env_remove("BILLHOST_LISTEN")
        .env_remove("BILLHOST_SCRIPTS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn billhost serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut admin_password = None;
    let addr = loop {
        let line = lines
            .next()
            .expect("serve printed its address")
            .expect("line");
        if let Some(pw) = line.strip_prefix("admin password (shown once): ") {
            admin_password = Some(pw.to_string());
        }
        if let Some(rest) = line.strip_prefix("billhost serve: listening on http://") {
            break rest.trim_end_matches("/billmgr").parse().expect("address");
        }
    };
    Spawned {
        child,
        addr,
        admin_password: admin_password.expect("a fresh database gets an admin password"),
    }
}

/// What one request of the burst got.
enum Outcome {
    Answered(Reply),
    /// The connection was refused, or closed before the request was read.
    Refused,
}

fn attempt(addr: SocketAddr, body: &str) -> Result<Outcome, String> {
    let stream = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Ok(s) => s,
        Err(_) => return Ok(Outcome::Refused),
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut stream = stream;
    if stream
        .write_all(&request_bytes("POST", "", &[], body.as_bytes()))
        .is_err()
    {
        return Ok(Outcome::Refused);
    }
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Ok(_) if raw.is_empty() => Ok(Outcome::Refused),
        Err(e) if raw.is_empty() && e.kind() == std::io::ErrorKind::ConnectionReset => {
            Ok(Outcome::Refused)
        }
        Ok(_) => parse_reply(&raw).map(Outcome::Answered).map_err(|e| {
            format!(
                "incomplete answer ({e}): {:?}",
                String::from_utf8_lossy(&raw)
            )
        }),
        Err(e) => Err(format!("read failed after {} bytes: {e}", raw.len())),
    }
}

#[cfg(unix)]
backends! {
fn sigterm_during_a_burst_answers_every_request_and_exits_cleanly(backend) {
    let dir = TempDir::new("http-stop");
    let db = backend.db(dir.path());
    let mut server = spawn_binary(&db, &dir.path().join("no-scripts"));
    let addr = server.addr;
    let authinfo = format!("authinfo=admin:{}", enc(&server.admin_password));
    get(addr, &format!("func=whoami&{authinfo}"), &[])
        .xml_field("login")
        .filter(|l| l == "admin")
        .expect("the generated admin password works");

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    type Burst = (Vec<(String, Instant, Instant)>, Vec<String>);
    let workers: Vec<JoinHandle<Result<Burst, String>>> = (0..8)
        .map(|w| {
            let stop = stop.clone();
            let answered = answered.clone();
            std::thread::spawn(move || {
                let (mut created, mut refused) = (Vec::new(), Vec::new());
                let deadline = Instant::now() + Duration::from_secs(60);
                for i in 0.. {
                    let email = format!("w{w}n{i}@example.com");
                    let body = format!(
                        "func=register&sok=ok&email={}&passwd=Secret123&realname=Burst",
                        enc(&email)
                    );
                    let sent = Instant::now();
                    match attempt(addr, &body)? {
                        Outcome::Answered(reply) => {
                            if reply.status != 200 || !reply.body.contains("<ok/>") {
                                return Err(format!("{email}: {reply:?}"));
                            }
                            created.push((email, sent, Instant::now()));
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        Outcome::Refused => {
                            refused.push(email);
                            // Once the server is going away, a refusal ends this worker.
                            if stop.load(Ordering::Relaxed) {
                                break;
                            }
                        }
                    }
                    if Instant::now() > deadline {
                        return Err("the server never stopped accepting".into());
                    }
                }
                Ok((created, refused))
            })
        })
        .collect();

    // Signal once the burst is well under way, however fast this machine is.
    let started = Instant::now();
    while answered.load(Ordering::Relaxed) < 24 && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    let killed = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(killed.success());
    let signalled = Instant::now();

    let (mut created, mut refused) = (Vec::new(), Vec::new());
    for w in workers {
        let (c, r) = w.join().expect("worker").unwrap_or_else(|e| panic!("{e}"));
        created.extend(c);
        refused.extend(r);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    server
        .child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr");
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("SIGTERM"), "{stderr}");
    assert!(stderr.contains("closed"), "{stderr}");
    // Requests sent before the signal and answered after it: those the stop waited for.
    let in_flight = created
        .iter()
        .filter(|(_, sent, answered)| *sent < signalled && *answered > signalled)
        .count();
    eprintln!(
        "burst: {} created ({in_flight} in flight at SIGTERM), {} refused",
        created.len(),
        refused.len()
    );
    assert!(in_flight > 0, "no request was in flight at SIGTERM");
    assert!(
        created.len() > 8,
        "too few requests in the burst: {}",
        created.len()
    );

    // Every answered create is there, whole; nothing refused was applied; a SQLite database was
    // closed cleanly (its WAL checkpointed away).
    if !backend.is_postgres() {
        assert!(
            !dir.path().join("billhost.db-wal").exists(),
            "WAL left behind"
        );
    }
    let db = store::connect(&db, store::Durability::Full).expect("open db");
    let count = |email: &str| -> i64 {
        db.query_row(
            "SELECT (SELECT count(*) FROM account WHERE email = ?1) + (SELECT count(*) FROM users WHERE login = ?1)",
            [email],
            |r| r.get(0),
        )
        .expect("count")
    };
    for (email, _, _) in &created {
        assert_eq!(count(email), 2, "{email} answered ok but is not whole");
    }
    for email in &refused {
        assert_eq!(count(email), 0, "{email} was refused but applied");
    }
    let total: i64 = db
        .query_row("SELECT count(*) FROM account", [], |r| r.get(0))
        .expect("total");
    assert_eq!(total as usize, created.len());
}
}

fn stop_binary(server: &mut Spawned) -> (Option<i32>, String) {
    let killed = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = server.child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    (status.code(), stderr)
}

#[cfg(unix)]
backends! {
fn scripts_reload_while_serving(backend) {
    let dir = TempDir::new("http-scripts");
    let scripts = dir.path().join("scripts");
    std::fs::create_dir_all(&scripts).expect("scripts dir");
    let script = |version: &str| {
        format!(
            "billing.func('hello', {{access = 'public', kind = 'view'}}, function(req)\n  \
             return {{greeting = '{version}'}}\nend)\n"
        )
    };
    std::fs::write(scripts.join("hello.lua"), script("v1")).expect("write script");
    let mut server = spawn_binary(&backend.db(dir.path()), &scripts);
    let greeting = |query: &str| get(server.addr, query, &[]).xml_field("greeting");

    assert_eq!(greeting("func=hello").as_deref(), Some("v1"));
    // A public script func runs anonymously despite a stale session, like a built-in one.
    assert_eq!(
        greeting("func=hello&auth=0123456789abcdef").as_deref(),
        Some("v1")
    );

    // Saved the way editors save (a new file renamed over the old one).
    let tmp = scripts.join(".hello.lua.tmp");
    std::fs::write(&tmp, script("v2")).expect("write new version");
    std::fs::rename(&tmp, scripts.join("hello.lua")).expect("rename over");
    let deadline = Instant::now() + Duration::from_secs(15);
    while greeting("func=hello").as_deref() != Some("v2") {
        assert!(Instant::now() < deadline, "the new script never went live");
        std::thread::sleep(Duration::from_millis(100));
    }

    let (code, stderr) = stop_binary(&mut server);
    assert_eq!(code, Some(0), "{stderr}");
}
}

backends! {
fn json_bodies_and_credentials_without_a_func(backend) {
    let s = Server::start("http-json", &backend);
    let json = |body: &str| post(s.addr, "", body, &[("Content-Type", "application/json")]);
    // A JSON object of parameters is read like a form: strings, integers, flags, lists.
    let reg = json(&format!(
        r#"{{"func": "register", "sok": "ok", "email": "ann@example.com", "passwd": "{PASSWORD}", "realname": "Ann", "conditions_agree": true, "note": null}}"#
    ));
    reg.ok();
    let id = reg.xml_field("id").expect("id");
    let view = json(&format!(
        r#"{{"func": "account.edit", "elid": {id}, "authinfo": "admin:{ADMIN_PASSWORD}"}}"#
    ));
    assert_eq!(
        view.xml_field("email").as_deref(),
        Some("ann@example.com"),
        "{}",
        view.body
    );
    let bob = s.register("bob@example.com");
    let deleted = json(&format!(
        r#"{{"func": "account.delete", "elid": [{id}, "{bob}"], "authinfo": "admin:{ADMIN_PASSWORD}"}}"#
    ));
    deleted.ok();

    // Credentials and no func: a login test. authinfo answers a new session document (and
    // its cookie), a session answers its own, by parameter or by cookie.
    let cid = s.register("cid@example.com");
    let probe = s.get(&format!(
        "authinfo={}",
        enc(&format!("cid@example.com:{PASSWORD}"))
    ));
    let sid = probe
        .xml_attr("auth", "id")
        .unwrap_or_else(|| panic!("no session: {}", probe.body));
    assert_eq!(probe.xml_attr("auth", "level").as_deref(), Some("16"));
    assert!(probe.header("set-cookie").is_some_and(|c| c.contains(&sid)));
    let by_param = s.get(&format!("auth={sid}&out=json"));
    let doc: serde_json::Value = serde_json::from_str(&by_param.body).expect("json");
    assert_eq!(doc["doc"]["auth"]["$id"], sid.as_str(), "{}", by_param.body);
    let by_cookie = get(s.addr, "", &[("Cookie", &format!("billmgrses5={sid}"))]);
    assert_eq!(
        by_cookie.xml_attr("auth", "id").as_deref(),
        Some(sid.as_str()),
        "{}",
        by_cookie.body
    );
    // The session is the client's: it lists only its own client.
    let own = s.get(&format!("func=account&auth={sid}"));
    assert!(
        own.body.contains(&format!("<id>{cid}</id>")),
        "{}",
        own.body
    );
    // Wrong credentials are the usual auth error; nothing at all still misses the func.
    let wrong = s.get("authinfo=cid%40example.com:nope");
    assert_eq!(wrong.error(), "auth");
    let stale = s.get("auth=0123456789abcdef");
    assert_eq!(stale.error(), "auth");
    assert_eq!(s.get("out=xml").error(), "missed");
}
}
