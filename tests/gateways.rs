//! The real gateways end to end: the built `billhost` binary and `billhost serve` with the built
//! `stripe` and `yookassa` plugins, each against a loopback fake of its provider's API written
//! here from the provider's public API reference. The fakes check what a provider checks (the
//! auth header, the idempotency key on every POST and what a repeated key means, the request's
//! fields) and keep the provider's records; the tests play the payer (the fake marks a payment
//! paid) and the provider's notifications (signed Stripe webhooks, YooKassa notifications),
//! posted to `/billmgr/callback/MODULE` as the providers do.

mod common;
#[path = "support/host.rs"]
mod host;
#[path = "support/pg.rs"]
mod pg;
#[path = "support/webdriver.rs"]
mod webdriver;

use base64::Engine as _;
use billhost_plugin_sdk::crypto::{hex, hmac_sha256};
use host::{Host, id_of, text};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------------------------
// billhost: the binary, the plugins built once, a served instance.

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn profile_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_billhost"))
        .parent()
        .expect("profile dir")
        .to_path_buf()
}

/// The folder holding the gateway plugins, built once (`cargo test` does not build other
/// members' cdylibs).
fn plugins() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let profile = profile_dir();
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args([
            "build",
            "--offline",
            "-p",
            "billhost-plugin-stripe",
            "-p",
            "billhost-plugin-yookassa",
        ]);
        cmd.arg("--target-dir")
            .arg(profile.parent().expect("target dir"));
        if profile.file_name().and_then(|n| n.to_str()) == Some("release") {
            cmd.arg("--release");
        }
        let out = cmd.current_dir(workspace()).output().expect("run cargo");
        assert!(
            out.status.success(),
            "cargo build failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Only these two: the folder must not offer other gateways.
        let dir = profile.parent().unwrap().join("gateway-tests");
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["billhost_plugin_stripe", "billhost_plugin_yookassa"] {
            let file = format!(
                "{}{name}.{}",
                std::env::consts::DLL_PREFIX,
                std::env::consts::DLL_EXTENSION
            );
            // Copy to a new name, then rename over: a running process keeps its mapped copy.
            let tmp = dir.join(format!("{file}.tmp"));
            std::fs::copy(profile.join(&file), &tmp).unwrap();
            std::fs::rename(&tmp, dir.join(&file)).unwrap();
        }
        dir
    })
}

/// An installation whose provider 1 bills in `currency`, with the two gateways.
fn gateway_host(tag: &str, currency: &str) -> Host {
    let host = Host::new(tag, vec![plugins().to_path_buf()]);
    host.ok(
        "project.edit",
        &["elid=1", "sok=ok", &format!("currency={currency}")],
    );
    host
}

/// What these tests do on an installation beyond the shared harness.
trait Gateways {
    fn method(&self, module: &str, currency: &str, settings: &Value) -> (i64, i64);
    fn add_payment(&self, account: i64, pm: i64, amount: &str) -> Value;
}

impl Gateways for Host {
    /// A payment method of `module` in `currency` with these settings, and a client.
    fn method(&self, module: &str, currency: &str, settings: &Value) -> (i64, i64) {
        let pm = id_of(&self.ok(
            "paymethod.edit",
            &[
                "sok=ok",
                &format!("name={module}"),
                &format!("currency={currency}"),
                &format!("module={module}"),
                &format!("settings={settings}"),
            ],
        ));
        let account = id_of(&self.ok("account.edit", &["sok=ok", "email=ann@example.com"]));
        (pm, account)
    }

    fn add_payment(&self, account: i64, pm: i64, amount: &str) -> Value {
        self.call(
            "payment.add",
            &[
                &format!("plid={account}"),
                "sok=ok",
                &format!("paymethod={pm}"),
                &format!("amount={amount}"),
            ],
        )
    }
}

/// A running `billhost serve`, stopped when dropped.
struct Server {
    child: std::process::Child,
    addr: String,
}

impl Server {
    fn start(host: &Host) -> Server {
        let mut child = host
            .command(&["serve", "--listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("serve");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines.next().expect("serve announces its address").unwrap();
            if let Some(rest) = line.strip_prefix("billhost serve: listening on http://") {
                break rest.trim_end_matches("/billmgr").to_string();
            }
        };
        Server { child, addr }
    }

    /// Posts a notification to `/billmgr/callback/MODULE` as the provider does; answers the HTTP
    /// status and the body.
    fn notify(&self, module: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
        post_callback(&self.addr, module, headers, body)
    }
}

/// Posts a notification to billhost at `addr` as a provider does: the HTTP status and the body.
fn post_callback(addr: &str, module: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut head = format!(
        "POST /billmgr/callback/{module} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    write!(s, "{head}\r\n{body}").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// Sends the same notification `n` times at once from `n` threads; answers the statuses.
fn at_once(
    server: &Arc<Server>,
    module: &'static str,
    headers: Vec<(String, String)>,
    body: String,
    n: usize,
) -> Vec<u16> {
    let barrier = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (server, barrier) = (server.clone(), barrier.clone());
            let (headers, body) = (headers.clone(), body.clone());
            std::thread::spawn(move || {
                let headers: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                barrier.wait();
                server.notify(module, &headers, &body).0
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

// ---------------------------------------------------------------------------------------------
// A loopback HTTP server for the fakes: one thread per connection, one request per connection
// (`Connection: close`), and the faults a provider has: answering 500, or too late.

struct Request {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    headers: BTreeMap<String, String>,
    body: String,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

#[derive(Default)]
struct Faults {
    /// Answer HTTP 500 to this many requests.
    fail: usize,
    /// Answer this many requests (of those starting with `slow_only`, `METHOD /path`) only
    /// after this delay, having acted on them: the answer is what is lost.
    slow: usize,
    slow_only: String,
    delay: Duration,
}

/// A request as received: method, path and query, headers, body.
type Logged = (String, String, BTreeMap<String, String>, String);

type Handler = dyn Fn(&Request) -> (u16, Value) + Send + Sync;

struct Fake {
    addr: String,
    faults: Arc<Mutex<Faults>>,
    /// Every request received: method, path and query, headers, body.
    log: Arc<Mutex<Vec<Logged>>>,
}

fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hexpair = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hexpair, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_form(s: &str) -> BTreeMap<String, String> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (url_decode(k), url_decode(v))
        })
        .collect()
}

impl Fake {
    fn start(handler: Arc<Handler>) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let faults: Arc<Mutex<Faults>> = Arc::default();
        let log: Arc<Mutex<Vec<_>>> = Arc::default();
        let (f, l) = (faults.clone(), log.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (handler, faults, log) = (handler.clone(), f.clone(), l.clone());
                std::thread::spawn(move || serve_one(stream, &*handler, &faults, &log));
            }
        });
        Fake { addr, faults, log }
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn fail(&self, n: usize) {
        self.faults.lock().unwrap().fail = n;
    }

    fn slow(&self, n: usize, delay: Duration, only: &str) {
        let mut f = self.faults.lock().unwrap();
        f.slow = n;
        f.delay = delay;
        f.slow_only = only.to_string();
    }

    fn requests(&self, method: &str, path_prefix: &str) -> Vec<(BTreeMap<String, String>, String)> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, p, _, _)| m == method && p.starts_with(path_prefix))
            .map(|(_, _, h, b)| (h.clone(), b.clone()))
            .collect()
    }
}

fn serve_one(
    stream: TcpStream,
    handler: &Handler,
    faults: &Mutex<Faults>,
    log: &Mutex<Vec<Logged>>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    let body = String::from_utf8(body).unwrap();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let req = Request {
        method: method.clone(),
        path: path.to_string(),
        query: parse_form(query),
        headers: headers.clone(),
        body: body.clone(),
    };
    log.lock()
        .unwrap()
        .push((method, target.clone(), headers, body));
    let (fail, delay) = {
        let mut f = faults.lock().unwrap();
        if f.fail > 0 {
            f.fail -= 1;
            (true, None)
        } else if f.slow > 0 && format!("{} {}", req.method, req.path).starts_with(&f.slow_only) {
            f.slow -= 1;
            (false, Some(f.delay))
        } else {
            (false, None)
        }
    };
    let (status, answer) = if fail {
        (
            500,
            json!({"error": {"type": "api_error", "message": "Something went wrong on the provider's end"},
                   "type": "error", "code": "internal_server_error", "description": "Internal server error"}),
        )
    } else {
        let answer = handler(&req);
        if let Some(d) = delay {
            std::thread::sleep(d);
        }
        answer
    };
    // A checkout page (HTML) or a redirect (its location) for a browser; JSON otherwise.
    let (kind, text, location) = match (status, answer) {
        (200, Value::String(html)) => ("text/html", html, String::new()),
        (303, Value::String(to)) => ("text/plain", String::new(), format!("Location: {to}\r\n")),
        (_, answer) => ("application/json", answer.to_string(), String::new()),
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\n{location}Content-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
}

/// What a provider does with idempotency keys: the same key and the same request answer the
/// first answer again without acting; the same key with another request is refused.
#[derive(Default)]
struct Idempotency {
    seen: BTreeMap<String, (String, u16, Value)>,
}

impl Idempotency {
    fn run(
        &mut self,
        key: &str,
        fingerprint: &str,
        act: impl FnOnce() -> (u16, Value),
    ) -> (u16, Value) {
        if let Some((first, status, answer)) = self.seen.get(key) {
            if first == fingerprint {
                return (*status, answer.clone());
            }
            return (
                400,
                json!({"error": {"type": "idempotency_error", "message": "Keys for idempotent requests can only be used with the same parameters they were first used with."},
                       "type": "error", "code": "invalid_request", "description": "Idempotence key reused with another request"}),
            );
        }
        let (status, answer) = act();
        self.seen.insert(
            key.to_string(),
            (fingerprint.to_string(), status, answer.clone()),
        );
        (status, answer)
    }
}

// ---------------------------------------------------------------------------------------------
// Stripe, as its API reference describes Checkout Sessions, Refunds and webhooks.

const STRIPE_KEY: &str = "sk_test_billhost_fake";
const WHSEC: &str = "whsec_billhost_fake";

#[derive(Default)]
struct StripeState {
    sessions: Vec<Value>,
    refunds: Vec<Value>,
    idempotency: Idempotency,
    /// Refunds start `pending` (confirmed later by `settle_refunds`).
    pending_refunds: bool,
    /// Where a session's payment page is (its id appended); Stripe's own host when unset.
    page_base: Option<String>,
}

fn stripe_error(status: u16, message: &str, param: &str) -> (u16, Value) {
    (
        status,
        json!({"error": {"type": "invalid_request_error", "code": "parameter_invalid", "message": message, "param": param}}),
    )
}

fn stripe_handle(state: &Mutex<StripeState>, req: &Request) -> (u16, Value) {
    if req.header("authorization") != Some(&format!("Bearer {STRIPE_KEY}")) {
        return (
            401,
            json!({"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}}),
        );
    }
    // The plugin pins the API version it was written against.
    if req.header("stripe-version") != Some("2024-06-20") {
        return stripe_error(400, "this fake wants Stripe-Version: 2024-06-20", "");
    }
    let mut st = state.lock().unwrap();
    let st = &mut *st;
    if req.method == "POST" {
        if req.header("content-type") != Some("application/x-www-form-urlencoded") {
            return stripe_error(400, "form-encoded bodies only", "");
        }
        let Some(key) = req.header("idempotency-key").map(str::to_string) else {
            return stripe_error(400, "this fake wants an Idempotency-Key on every POST", "");
        };
        let form = parse_form(&req.body);
        let fingerprint = format!("{} {}", req.path, req.body);
        let (sessions, refunds, pending) = (&mut st.sessions, &mut st.refunds, st.pending_refunds);
        let page_base = st.page_base.as_deref();
        return st
            .idempotency
            .run(&key, &fingerprint, || match req.path.as_str() {
                "/v1/checkout/sessions" => stripe_create_session(sessions, &form, page_base),
                "/v1/refunds" => stripe_create_refund(sessions, refunds, &form, pending),
                _ => stripe_error(404, "Unrecognized request URL", ""),
            });
    }
    if let Some(id) = req.path.strip_prefix("/v1/checkout/sessions/") {
        return match st.sessions.iter().find(|s| s["id"] == id) {
            Some(s) => (200, s.clone()),
            None => stripe_error(404, &format!("No such checkout.session: '{id}'"), "id"),
        };
    }
    if req.path == "/v1/checkout/sessions" {
        let pi = req.query.get("payment_intent").cloned().unwrap_or_default();
        let data: Vec<Value> = st
            .sessions
            .iter()
            .filter(|s| s["payment_intent"] == pi.as_str())
            .cloned()
            .collect();
        return (
            200,
            json!({"object": "list", "data": data, "has_more": false}),
        );
    }
    if req.path == "/v1/refunds" {
        let pi = req.query.get("payment_intent").cloned().unwrap_or_default();
        let data: Vec<Value> = st
            .refunds
            .iter()
            .filter(|r| r["payment_intent"] == pi.as_str())
            .cloned()
            .collect();
        return (
            200,
            json!({"object": "list", "data": data, "has_more": false}),
        );
    }
    stripe_error(404, "Unrecognized request URL", "")
}

fn stripe_create_session(
    sessions: &mut Vec<Value>,
    f: &BTreeMap<String, String>,
    page_base: Option<&str>,
) -> (u16, Value) {
    for required in [
        "mode",
        "success_url",
        "cancel_url",
        "client_reference_id",
        "line_items[0][price_data][currency]",
        "line_items[0][price_data][unit_amount]",
        "line_items[0][price_data][product_data][name]",
        "line_items[0][quantity]",
        "metadata[billhost_payment]",
    ] {
        if f.get(required).is_none_or(|v| v.is_empty()) {
            return stripe_error(
                400,
                &format!("Missing required param: {required}."),
                required,
            );
        }
    }
    if f["mode"] != "payment" {
        return stripe_error(400, "mode must be payment here", "mode");
    }
    let Ok(unit) = f["line_items[0][price_data][unit_amount]"].parse::<i64>() else {
        return stripe_error(
            400,
            "Invalid integer",
            "line_items[0][price_data][unit_amount]",
        );
    };
    let currency = f["line_items[0][price_data][currency]"].clone();
    if currency != currency.to_ascii_lowercase() {
        return stripe_error(400, "currency codes are lowercase", "currency");
    }
    let id = format!("cs_test_{}", sessions.len() + 1);
    let session = json!({
        "id": id,
        "object": "checkout.session",
        "mode": "payment",
        "url": format!("{}{id}", page_base.unwrap_or("https://checkout.stripe.test/c/pay/")),
        "status": "open",
        "payment_status": "unpaid",
        "amount_total": unit,
        "currency": currency,
        "client_reference_id": f["client_reference_id"],
        "metadata": {"billhost_payment": f["metadata[billhost_payment]"]},
        "payment_intent": null,
        "success_url": f["success_url"],
        "cancel_url": f["cancel_url"],
    });
    sessions.push(session.clone());
    (200, session)
}

fn stripe_create_refund(
    sessions: &[Value],
    refunds: &mut Vec<Value>,
    f: &BTreeMap<String, String>,
    pending: bool,
) -> (u16, Value) {
    let pi = f.get("payment_intent").cloned().unwrap_or_default();
    let Some(session) = sessions.iter().find(|s| s["payment_intent"] == pi.as_str()) else {
        return stripe_error(
            404,
            &format!("No such payment_intent: '{pi}'"),
            "payment_intent",
        );
    };
    let paid = session["amount_total"].as_i64().unwrap();
    let amount = match f.get("amount") {
        Some(a) => match a.parse::<i64>() {
            Ok(a) if a > 0 => a,
            _ => return stripe_error(400, "Invalid positive integer", "amount"),
        },
        None => paid,
    };
    let refunded: i64 = refunds
        .iter()
        .filter(|r| r["payment_intent"] == pi.as_str() && r["status"] != "failed")
        .map(|r| r["amount"].as_i64().unwrap())
        .sum();
    if refunded + amount > paid {
        return stripe_error(
            400,
            &format!(
                "Refund amount ({amount}) is greater than unrefunded amount on charge ({})",
                paid - refunded
            ),
            "amount",
        );
    }
    let refund = json!({
        "id": format!("re_test_{}", refunds.len() + 1),
        "object": "refund",
        "amount": amount,
        "currency": session["currency"],
        "payment_intent": pi,
        "status": if pending { "pending" } else { "succeeded" },
        "metadata": {
            "billhost_refund": f.get("metadata[billhost_refund]").cloned().unwrap_or_default(),
            "billhost_payment": f.get("metadata[billhost_payment]").cloned().unwrap_or_default(),
        },
    });
    refunds.push(refund.clone());
    (200, refund)
}

struct StripeFake {
    fake: Fake,
    state: Arc<Mutex<StripeState>>,
}

impl StripeFake {
    fn start() -> StripeFake {
        let state: Arc<Mutex<StripeState>> = Arc::default();
        let s = state.clone();
        let fake = Fake::start(Arc::new(move |req: &Request| stripe_handle(&s, req)));
        StripeFake { fake, state }
    }

    fn settings(&self) -> Value {
        json!({
            "secret_key": STRIPE_KEY,
            "webhook_secret": ["whsec_the_old_one", WHSEC],
            "panel_url": "https://billing.example.com/",
            "base_url": self.fake.base(),
            "timeout": 1,
            "attempts": 2,
        })
    }

    fn session(&self, id: &str) -> Value {
        let st = self.state.lock().unwrap();
        st.sessions
            .iter()
            .find(|s| s["id"] == id)
            .cloned()
            .expect("a session")
    }

    /// The payer pays on Stripe's page: the session completes, with a payment intent.
    fn pay(&self, id: &str) -> Value {
        stripe_pay(&self.state, id)
    }

    fn expire(&self, id: &str) -> Value {
        let mut st = self.state.lock().unwrap();
        let s = st
            .sessions
            .iter_mut()
            .find(|s| s["id"] == id)
            .expect("a session");
        s["status"] = json!("expired");
        s.clone()
    }

    fn settle_refunds(&self) {
        let mut st = self.state.lock().unwrap();
        for r in st.refunds.iter_mut() {
            r["status"] = json!("succeeded");
        }
    }

    /// Refunded amounts of a payment intent, in Stripe's minor units.
    fn refunded(&self, pi: &str) -> Vec<i64> {
        let st = self.state.lock().unwrap();
        st.refunds
            .iter()
            .filter(|r| r["payment_intent"] == pi)
            .map(|r| r["amount"].as_i64().unwrap())
            .collect()
    }
}

/// A checkout session paid: complete, with a payment intent.
fn stripe_pay(state: &Mutex<StripeState>, id: &str) -> Value {
    let mut st = state.lock().unwrap();
    let n = st.sessions.len();
    let s = st
        .sessions
        .iter_mut()
        .find(|s| s["id"] == id)
        .expect("a session");
    s["status"] = json!("complete");
    s["payment_status"] = json!("paid");
    s["payment_intent"] = json!(format!("pi_test_{n}_{id}"));
    s.clone()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn stripe_event(kind: &str, object: &Value) -> String {
    json!({
        "id": format!("evt_{}", unix_now()),
        "object": "event",
        "type": kind,
        "data": {"object": object},
    })
    .to_string()
}

/// A `Stripe-Signature` header for `payload` signed at `t` with `secret`, after a signature
/// under another secret (as during a rotation).
fn stripe_signature(payload: &str, secret: &str, t: i64) -> String {
    let sig = hex(&hmac_sha256(
        secret.as_bytes(),
        format!("{t}.{payload}").as_bytes(),
    ));
    let other = hex(&hmac_sha256(
        b"whsec_some_other_endpoint",
        format!("{t}.{payload}").as_bytes(),
    ));
    format!("t={t},v1={other},v1={sig}")
}

fn stripe_post(server: &Server, payload: &str, signature: &str) -> (u16, String) {
    server.notify("stripe", &[("Stripe-Signature", signature)], payload)
}

#[test]
fn stripe_checkout_credits_once_and_refunds_in_parts() {
    let stripe = StripeFake::start();
    let host = gateway_host("gw-stripe", "840");
    let (pm, account) = host.method("stripe", "840", &stripe.settings());

    let doc = host.add_payment(account, pm, "10.00");
    assert!(doc.get("error").is_none(), "{doc}");
    let payment = id_of(&doc);
    let session_id = text(&doc["external_id"]);
    assert_eq!(text(&doc["status"]), "2", "{doc}");
    assert_eq!(
        text(&doc["redirect_url"]),
        format!("https://checkout.stripe.test/c/pay/{session_id}")
    );
    // What went to Stripe: the amount in cents, our id, the way back to the panel, a key.
    let session = stripe.session(&session_id);
    assert_eq!(session["amount_total"], 1000);
    assert_eq!(session["currency"], "usd");
    assert_eq!(session["client_reference_id"], payment.to_string());
    assert_eq!(
        session["success_url"],
        format!("https://billing.example.com/?payment={payment}&stripe=success")
    );
    let posts = stripe.fake.requests("POST", "/v1/checkout/sessions");
    assert_eq!(posts.len(), 1);
    assert!(posts[0].0["idempotency-key"].starts_with("billhost-session-"));

    let server = Arc::new(Server::start(&host));
    let paid = stripe.pay(&session_id);
    let event = stripe_event("checkout.session.completed", &paid);

    // Forged (signed with a secret that is not ours) and stale (ours, 10 minutes old): no money.
    let forged = stripe_signature(&event, "whsec_attacker", unix_now());
    let (status, body) = stripe_post(&server, &event, &forged);
    assert_eq!(status, 400, "{body}");
    let stale = stripe_signature(&event, WHSEC, unix_now() - 600);
    let (status, body) = stripe_post(&server, &event, &stale);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("tolerated"), "{body}");
    let (status, _) = stripe_post(&server, &event, "");
    assert_eq!(status, 400);
    assert_eq!(host.payment_status(payment), 2);
    assert_eq!(host.balance(account), 0);
    assert_eq!(host.history_count(payment, "signature does not verify"), 1);
    assert_eq!(host.history_count(payment, "tolerated"), 1);
    host.check_clean();

    // The genuine webhook credits, once: replayed 10 times, then from 4 threads at once.
    let good = stripe_signature(&event, WHSEC, unix_now());
    for _ in 0..10 {
        let (status, body) = stripe_post(&server, &event, &good);
        assert_eq!(status, 200, "{body}");
    }
    let statuses = at_once(
        &server,
        "stripe",
        vec![("Stripe-Signature".into(), good.clone())],
        event.clone(),
        4,
    );
    assert_eq!(statuses, vec![200; 4]);
    assert_eq!(host.payment_status(payment), 4);
    assert_eq!(host.balance(account), 1000);
    assert_eq!(host.history_count(payment, "callback: paid"), 1);
    assert_eq!(host.history_count(payment, "already paid"), 13);
    host.check_clean();

    // Signed events about nothing of ours (another integration's session; a type not handled)
    // are acknowledged so that Stripe stops sending them, and change nothing.
    let foreign = json!({"id": "cs_live_other", "object": "checkout.session", "status": "complete",
                         "payment_status": "paid", "amount_total": 999, "currency": "usd",
                         "client_reference_id": null, "metadata": {}});
    for (kind, object) in [
        ("checkout.session.completed", foreign),
        (
            "payment_intent.succeeded",
            json!({"id": "pi_other", "object": "payment_intent"}),
        ),
    ] {
        let other = stripe_event(kind, &object);
        let (status, body) = stripe_post(
            &server,
            &other,
            &stripe_signature(&other, WHSEC, unix_now()),
        );
        assert_eq!(status, 200, "{kind}: {body}");
        let (status, _) = stripe_post(&server, &other, &forged);
        assert_eq!(status, 400, "{kind} unsigned");
    }
    assert_eq!(host.balance(account), 1000);
    host.check_clean();

    // Partial, then the rest: through the Refunds API, each with its key.
    let pi = paid["payment_intent"].as_str().unwrap().to_string();
    let doc = host.ok(
        "payment.refund",
        &[&format!("elid={payment}"), "sok=ok", "amount=4.00"],
    );
    assert_eq!(text(&doc["status"]), "6", "{doc}");
    assert_eq!(host.payment_status(payment), 4);
    assert_eq!(host.balance(account), 600);
    let doc = host.ok(
        "payment.refund",
        &[&format!("elid={payment}"), "sok=ok", "amount=6.00"],
    );
    assert_eq!(text(&doc["status"]), "6", "{doc}");
    assert_eq!(host.payment_status(payment), 6);
    assert_eq!(host.balance(account), 0);
    assert_eq!(stripe.refunded(&pi), vec![400, 600]);
    let keys: Vec<String> = stripe
        .fake
        .requests("POST", "/v1/refunds")
        .iter()
        .map(|(h, _)| h["idempotency-key"].clone())
        .collect();
    assert_eq!(keys.len(), 2);
    assert!(
        keys.iter().all(|k| k.starts_with("billhost-refund-")),
        "{keys:?}"
    );
    assert_ne!(keys[0], keys[1]);
    // More than is left: refused by billhost before Stripe is asked.
    host.error(
        "payment.refund",
        &[&format!("elid={payment}"), "sok=ok", "amount=0.01"],
    );

    // Stripe's charge.refunded afterwards changes nothing: both refunds are complete.
    let charge = json!({"id": "ch_1", "object": "charge", "payment_intent": pi, "currency": "usd",
                        "amount": 1000, "amount_refunded": 1000, "refunded": true});
    let refunded = stripe_event("charge.refunded", &charge);
    let (status, body) = stripe_post(
        &server,
        &refunded,
        &stripe_signature(&refunded, WHSEC, unix_now()),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(host.history_count(payment, "is already refunded"), 2);
    assert_eq!(host.balance(account), 0);
    drop(server);
    host.check_clean();
}

#[test]
fn stripe_in_yen_with_pending_refunds_expiry_and_an_api_that_fails() {
    let stripe = StripeFake::start();
    let host = gateway_host("gw-stripe-jpy", "392");
    let (pm, account) = host.method("stripe", "392", &stripe.settings());

    // ¥1500 is 1500 at Stripe (a zero-decimal currency), and a fraction of a yen is refused.
    let doc = host.add_payment(account, pm, "1500");
    let payment = id_of(&doc);
    let session_id = text(&doc["external_id"]);
    assert_eq!(stripe.session(&session_id)["amount_total"], 1500);
    assert_eq!(stripe.session(&session_id)["currency"], "jpy");

    // The webhook never comes; the API fails (500, then too slow) when billhost asks.
    let paid = stripe.pay(&session_id);
    stripe.fake.fail(2);
    let doc = host.ok("payment.checkpay", &[&format!("elid={payment}")]);
    assert_eq!(text(&doc["errors"]), "1", "{doc}");
    assert_eq!(host.payment_status(payment), 2);
    assert!(
        host.history(payment)
            .iter()
            .any(|h| h.contains("HTTP 500") && h.contains("Something went wrong")),
        "{:?}",
        host.history(payment)
    );
    stripe.fake.slow(2, Duration::from_secs(3), "");
    let doc = host.ok("payment.checkpay", &[&format!("elid={payment}")]);
    assert_eq!(text(&doc["errors"]), "1", "{doc}");
    assert_eq!(host.payment_status(payment), 2);
    assert_eq!(host.balance(account), 0);
    assert_eq!(host.history_count(payment, "Stripe did not answer"), 1);
    // Later the API answers: the check credits the payment, to the yen.
    let doc = host.ok("payment.checkpay", &[]);
    assert_eq!(text(&doc["paid"]), "1", "{doc}");
    assert_eq!(host.payment_status(payment), 4);
    assert_eq!(host.balance(account), 1500);
    host.check_clean();

    // A refund Stripe confirms later: pending until charge.refunded says it succeeded.
    stripe.state.lock().unwrap().pending_refunds = true;
    let doc = host.ok(
        "payment.refund",
        &[&format!("elid={payment}"), "sok=ok", "amount=500"],
    );
    assert_eq!(text(&doc["status"]), "5", "{doc}");
    assert_eq!(host.balance(account), 1000);
    let pi = paid["payment_intent"].as_str().unwrap().to_string();
    assert_eq!(stripe.refunded(&pi), vec![500]);
    stripe.settle_refunds();
    let server = Server::start(&host);
    let charge = json!({"id": "ch_2", "object": "charge", "payment_intent": pi, "currency": "jpy",
                        "amount": 1500, "amount_refunded": 500, "refunded": false});
    let event = stripe_event("charge.refunded", &charge);
    for _ in 0..3 {
        let (status, body) = stripe_post(
            &server,
            &event,
            &stripe_signature(&event, WHSEC, unix_now()),
        );
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(host.history_count(payment, "stripe callback: refund"), 1);
    assert_eq!(host.history_count(payment, "confirmed by the gateway"), 1);
    assert_eq!(host.history_count(payment, "is already refunded"), 2);
    assert_eq!(
        host.query_id(
            "SELECT count(*) FROM refund WHERE payment_id = ?1 AND status = 6",
            payment
        ),
        1
    );
    assert_eq!(host.payment_status(payment), 4);
    assert_eq!(host.balance(account), 1000);
    host.check_clean();

    // An abandoned checkout expires: the payment is canceled, no money moves.
    let doc = host.add_payment(account, pm, "700");
    let second = id_of(&doc);
    let expired = stripe.expire(&text(&doc["external_id"]));
    let event = stripe_event("checkout.session.expired", &expired);
    let (status, body) = stripe_post(
        &server,
        &event,
        &stripe_signature(&event, WHSEC, unix_now()),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(host.payment_status(second), 9);
    assert_eq!(host.balance(account), 1000);

    // Stripe down when the payment starts: the payment stays new, the error says what Stripe said.
    stripe.fake.fail(2);
    let doc = host.add_payment(account, pm, "300");
    let e = &doc["error"];
    assert!(
        text(&e["msg"]).contains("Stripe refused (HTTP 500"),
        "{doc}"
    );
    let e = host.error(
        "payment.add",
        &[
            &format!("plid={account}"),
            "sok=ok",
            &format!("paymethod={pm}"),
            "amount=1.5",
        ],
    );
    assert!(!text(&e["msg"]).is_empty(), "{e}");
    drop(server);
    host.check_clean();
}

#[test]
fn stripe_settings_are_validated_and_masked() {
    let stripe = StripeFake::start();
    let host = gateway_host("gw-stripe-settings", "840");
    let mut settings = stripe.settings();
    settings.as_object_mut().unwrap().remove("webhook_secret");
    let e = host.error(
        "paymethod.edit",
        &[
            "sok=ok",
            "name=S",
            "currency=840",
            "module=stripe",
            &format!("settings={settings}"),
        ],
    );
    assert!(text(&e["msg"]).contains("webhook_secret"), "{e}");
    let mut settings = stripe.settings();
    settings["secret_key"] = json!("pk_test_publishable");
    let e = host.error(
        "paymethod.edit",
        &[
            "sok=ok",
            "name=S",
            "currency=840",
            "module=stripe",
            &format!("settings={settings}"),
        ],
    );
    assert!(text(&e["msg"]).contains("publishable"), "{e}");
    // RUB is not a Stripe currency: refused when the method is saved.
    let e = host.error(
        "paymethod.edit",
        &[
            "sok=ok",
            "name=S",
            "currency=643",
            "module=stripe",
            &format!("settings={}", stripe.settings()),
        ],
    );
    assert!(text(&e["msg"]).contains("RUB"), "{e}");
    let (pm, _) = host.method("stripe", "840", &stripe.settings());
    let view = host.ok("paymethod.edit", &[&format!("elid={pm}")]);
    let shown: Value = serde_json::from_str(&text(&view["settings"])).unwrap();
    assert_eq!(shown["secret_key"], "********");
    assert_eq!(shown["webhook_secret"], "********");
    assert_eq!(shown["panel_url"], "https://billing.example.com/");
    // Changing the currency to one Stripe does not take is refused too.
    host.error(
        "paymethod.edit",
        &[&format!("elid={pm}"), "sok=ok", "currency=643"],
    );
}

// ---------------------------------------------------------------------------------------------
// YooKassa, as its API reference (v3) describes payments, refunds and notifications.

const SHOP_ID: &str = "506751";
const SHOP_KEY: &str = "test_billhost_fake_secret";

#[derive(Default)]
struct YooState {
    payments: Vec<Value>,
    refunds: Vec<Value>,
    idempotency: Idempotency,
    /// Where a payment's confirmation page is (its id appended); YooMoney's own when unset.
    page_base: Option<String>,
}

fn yoo_error(status: u16, code: &str, description: &str, parameter: &str) -> (u16, Value) {
    (
        status,
        json!({"type": "error", "id": "fake-error", "code": code, "description": description, "parameter": parameter}),
    )
}

/// `ddd.dd`: YooKassa's amounts, in a currency with two decimals.
fn two_decimals(v: &Value) -> Option<i64> {
    let s = v.as_str()?;
    let (int, frac) = s.split_once('.')?;
    if frac.len() != 2
        || int.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Some(int.parse::<i64>().ok()? * 100 + frac.parse::<i64>().ok()?)
}

fn yoo_handle(state: &Mutex<YooState>, req: &Request) -> (u16, Value) {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{SHOP_ID}:{SHOP_KEY}"))
    );
    if req.header("authorization") != Some(expected.as_str()) {
        return yoo_error(
            401,
            "invalid_credentials",
            "Login or password is incorrect",
            "",
        );
    }
    let mut st = state.lock().unwrap();
    let st = &mut *st;
    if req.method == "POST" {
        let Some(key) = req.header("idempotence-key").map(str::to_string) else {
            return yoo_error(
                400,
                "invalid_request",
                "Idempotence key is missing",
                "Idempotence-Key",
            );
        };
        if key.len() > 64 {
            return yoo_error(
                400,
                "invalid_request",
                "Idempotence key is too long",
                "Idempotence-Key",
            );
        }
        let Ok(body) = serde_json::from_str::<Value>(&req.body) else {
            return yoo_error(400, "invalid_request", "Request body is not JSON", "");
        };
        let fingerprint = format!("{} {}", req.path, req.body);
        let (payments, refunds) = (&mut st.payments, &mut st.refunds);
        let page_base = st.page_base.as_deref();
        return st
            .idempotency
            .run(&key, &fingerprint, || match req.path.as_str() {
                "/v3/payments" => yoo_create_payment(payments, &body, page_base),
                "/v3/refunds" => yoo_create_refund(payments, refunds, &body),
                _ => yoo_error(404, "not_found", "Unknown path", ""),
            });
    }
    if let Some(id) = req.path.strip_prefix("/v3/payments/") {
        return match st.payments.iter().find(|p| p["id"] == id) {
            Some(p) => (200, p.clone()),
            None => yoo_error(404, "not_found", "Payment not found", "payment_id"),
        };
    }
    if let Some(id) = req.path.strip_prefix("/v3/refunds/") {
        return match st.refunds.iter().find(|r| r["id"] == id) {
            Some(r) => (200, r.clone()),
            None => yoo_error(404, "not_found", "Refund not found", "refund_id"),
        };
    }
    if req.path == "/v3/refunds" {
        let payment = req.query.get("payment_id").cloned().unwrap_or_default();
        let items: Vec<Value> = st
            .refunds
            .iter()
            .filter(|r| r["payment_id"] == payment.as_str())
            .cloned()
            .collect();
        return (200, json!({"type": "list", "items": items}));
    }
    yoo_error(404, "not_found", "Unknown path", "")
}

fn yoo_create_payment(
    payments: &mut Vec<Value>,
    b: &Value,
    page_base: Option<&str>,
) -> (u16, Value) {
    if two_decimals(&b["amount"]["value"]).is_none_or(|v| v <= 0) {
        return yoo_error(
            400,
            "invalid_request",
            "Invalid amount value",
            "amount.value",
        );
    }
    if b["amount"]["currency"]
        .as_str()
        .is_none_or(|c| c.len() != 3)
    {
        return yoo_error(
            400,
            "invalid_request",
            "Invalid currency",
            "amount.currency",
        );
    }
    if b["capture"] != true {
        return yoo_error(
            400,
            "invalid_request",
            "This shop captures at once",
            "capture",
        );
    }
    if b["confirmation"]["type"] != "redirect" || !b["confirmation"]["return_url"].is_string() {
        return yoo_error(
            400,
            "invalid_request",
            "Redirect confirmation with a return_url expected",
            "confirmation",
        );
    }
    if b["description"]
        .as_str()
        .is_some_and(|d| d.chars().count() > 128)
    {
        return yoo_error(
            400,
            "invalid_request",
            "Description too long",
            "description",
        );
    }
    if !b["metadata"]["billhost_payment"].is_string() {
        return yoo_error(
            400,
            "invalid_request",
            "this fake wants metadata.billhost_payment",
            "metadata",
        );
    }
    let id = format!("2d{:06}-000f-5000-9000-1b68e7b15f3f", payments.len() + 1);
    let payment = json!({
        "id": id,
        "status": "pending",
        "paid": false,
        "amount": b["amount"],
        "confirmation": {
            "type": "redirect",
            "return_url": b["confirmation"]["return_url"],
            "confirmation_url": format!(
                "{}{id}",
                page_base.unwrap_or("https://yoomoney.test/checkout/payments/v2/contract?orderId=")
            ),
        },
        "created_at": "2026-12-02T06:00:00.000Z",
        "description": b["description"],
        "metadata": b["metadata"],
        "recipient": {"account_id": SHOP_ID, "gateway_id": "1"},
        "refundable": false,
        "test": true,
    });
    payments.push(payment.clone());
    (200, payment)
}

fn yoo_create_refund(payments: &mut [Value], refunds: &mut Vec<Value>, b: &Value) -> (u16, Value) {
    let pid = b["payment_id"].as_str().unwrap_or("");
    let Some(payment) = payments.iter().find(|p| p["id"] == pid) else {
        return yoo_error(404, "not_found", "Payment not found", "payment_id");
    };
    if payment["status"] != "succeeded" {
        return yoo_error(
            400,
            "invalid_request",
            "The payment cannot be refunded",
            "payment_id",
        );
    }
    let Some(amount) = two_decimals(&b["amount"]["value"]).filter(|v| *v > 0) else {
        return yoo_error(
            400,
            "invalid_request",
            "Invalid amount value",
            "amount.value",
        );
    };
    let paid = two_decimals(&payment["amount"]["value"]).unwrap();
    let refunded: i64 = refunds
        .iter()
        .filter(|r| r["payment_id"] == pid)
        .map(|r| two_decimals(&r["amount"]["value"]).unwrap())
        .sum();
    if refunded + amount > paid {
        return yoo_error(
            400,
            "invalid_request",
            "The refund amount exceeds what is left of the payment",
            "amount.value",
        );
    }
    let refund = json!({
        "id": format!("2e{:06}-0015-5000-8000-1b68e7b15f3f", refunds.len() + 1),
        "payment_id": pid,
        "status": "succeeded",
        "amount": b["amount"],
        "description": b["description"],
        "created_at": "2026-12-02T06:10:00.000Z",
    });
    refunds.push(refund.clone());
    (200, refund)
}

struct YooFake {
    fake: Fake,
    state: Arc<Mutex<YooState>>,
}

impl YooFake {
    fn start() -> YooFake {
        let state: Arc<Mutex<YooState>> = Arc::default();
        let s = state.clone();
        let fake = Fake::start(Arc::new(move |req: &Request| yoo_handle(&s, req)));
        YooFake { fake, state }
    }

    fn settings(&self) -> Value {
        json!({
            "shop_id": SHOP_ID,
            "secret_key": SHOP_KEY,
            "return_url": "https://billing.example.com/",
            "base_url": format!("{}/v3", self.fake.base()),
            "timeout": 1,
            "attempts": 2,
        })
    }

    fn payment(&self, id: &str) -> Value {
        let st = self.state.lock().unwrap();
        st.payments
            .iter()
            .find(|p| p["id"] == id)
            .cloned()
            .expect("a payment")
    }

    /// The payer pays on YooKassa's page.
    fn pay(&self, id: &str) -> Value {
        yoo_pay(&self.state, id)
    }

    fn refunds(&self) -> Vec<Value> {
        self.state.lock().unwrap().refunds.clone()
    }
}

/// A payment paid: succeeded, refundable.
fn yoo_pay(state: &Mutex<YooState>, id: &str) -> Value {
    let mut st = state.lock().unwrap();
    let p = st
        .payments
        .iter_mut()
        .find(|p| p["id"] == id)
        .expect("a payment");
    p["status"] = json!("succeeded");
    p["paid"] = json!(true);
    p["refundable"] = json!(true);
    p.clone()
}

fn yoo_notification(event: &str, object: &Value) -> String {
    json!({"type": "notification", "event": event, "object": object}).to_string()
}

#[test]
fn yookassa_notifications_are_trusted_only_as_the_api_confirms_them() {
    let yoo = YooFake::start();
    let host = gateway_host("gw-yoo", "643");
    let (pm, account) = host.method("yookassa", "643", &yoo.settings());

    let doc = host.add_payment(account, pm, "1234.56");
    assert!(doc.get("error").is_none(), "{doc}");
    let payment = id_of(&doc);
    let external = text(&doc["external_id"]);
    assert_eq!(text(&doc["status"]), "2");
    assert_eq!(
        text(&doc["redirect_url"]),
        format!("https://yoomoney.test/checkout/payments/v2/contract?orderId={external}")
    );
    let at_yoo = yoo.payment(&external);
    assert_eq!(
        at_yoo["amount"],
        json!({"value": "1234.56", "currency": "RUB"})
    );
    assert_eq!(at_yoo["metadata"]["billhost_payment"], payment.to_string());
    let posts = yoo.fake.requests("POST", "/v3/payments");
    assert!(posts[0].0["idempotence-key"].starts_with("billhost-payment-"));

    let server = Arc::new(Server::start(&host));
    // "Succeeded", says a notification, before the payer paid: the API says pending. No money.
    let early = yoo_notification(
        "payment.succeeded",
        &json!({"id": external, "status": "succeeded",
        "amount": {"value": "1234.56", "currency": "RUB"}, "metadata": {"billhost_payment": payment.to_string()}}),
    );
    let (status, body) = server.notify("yookassa", &[], &early);
    assert_eq!(status, 400, "{body}");
    assert_eq!(host.payment_status(payment), 2);
    assert_eq!(host.balance(account), 0);
    assert_eq!(
        host.history_count(payment, "YooKassa's API says the payment"),
        1
    );
    host.check_clean();

    // Paid; the API is down when the notification comes: nothing changes, YooKassa will retry.
    let paid = yoo.pay(&external);
    let note = yoo_notification("payment.succeeded", &paid);
    yoo.fake.fail(2);
    let (status, _) = server.notify("yookassa", &[], &note);
    assert!(status >= 400, "{status}");
    assert_eq!(host.payment_status(payment), 2);
    // It comes again, 10 times, then from 4 threads at once: credited once, to the kopeck.
    for _ in 0..10 {
        let (status, body) = server.notify("yookassa", &[], &note);
        assert_eq!(status, 200, "{body}");
    }
    let statuses = at_once(&server, "yookassa", vec![], note.clone(), 4);
    assert_eq!(statuses, vec![200; 4]);
    assert_eq!(host.payment_status(payment), 4);
    assert_eq!(host.balance(account), 123_456);
    assert_eq!(host.history_count(payment, "callback: paid"), 1);
    host.check_clean();

    // Partial, then the rest.
    let doc = host.ok(
        "payment.refund",
        &[&format!("elid={payment}"), "sok=ok", "amount=234.56"],
    );
    assert_eq!(text(&doc["status"]), "6", "{doc}");
    assert_eq!(host.balance(account), 100_000);
    let doc = host.ok(
        "payment.refund",
        &[&format!("elid={payment}"), "sok=ok", "amount=1000"],
    );
    assert_eq!(text(&doc["status"]), "6", "{doc}");
    assert_eq!(host.payment_status(payment), 6);
    assert_eq!(host.balance(account), 0);
    let refunds = yoo.refunds();
    let values: Vec<&Value> = refunds.iter().map(|r| &r["amount"]["value"]).collect();
    assert_eq!(values, vec!["234.56", "1000.00"]);
    let keys: Vec<String> = yoo
        .fake
        .requests("POST", "/v3/refunds")
        .iter()
        .map(|(h, _)| h["idempotence-key"].clone())
        .collect();
    assert_eq!(keys.len(), 2);
    assert_ne!(keys[0], keys[1]);
    // YooKassa's refund.succeeded afterwards: fetched, found complete, nothing changes.
    let note = yoo_notification("refund.succeeded", &refunds[1]);
    let (status, body) = server.notify("yookassa", &[], &note);
    assert_eq!(status, 200, "{body}");
    assert_eq!(host.history_count(payment, "is already refunded"), 1);
    assert_eq!(host.balance(account), 0);
    drop(server);
    host.check_clean();
}

#[test]
fn yookassa_status_checks_sender_ranges_and_settings() {
    let yoo = YooFake::start();
    let host = gateway_host("gw-yoo-check", "643");
    // Settings: keys required, currency one YooKassa takes.
    let mut settings = yoo.settings();
    settings.as_object_mut().unwrap().remove("secret_key");
    let e = host.error(
        "paymethod.edit",
        &[
            "sok=ok",
            "name=Y",
            "currency=643",
            "module=yookassa",
            &format!("settings={settings}"),
        ],
    );
    assert!(text(&e["msg"]).contains("secret_key"), "{e}");
    let e = host.error(
        "paymethod.edit",
        &[
            "sok=ok",
            "name=Y",
            "currency=392",
            "module=yookassa",
            &format!("settings={}", yoo.settings()),
        ],
    );
    assert!(text(&e["msg"]).contains("JPY"), "{e}");
    let mut settings = yoo.settings();
    settings["check_ip"] = json!(true);
    let (pm, account) = host.method("yookassa", "643", &settings);
    let view = host.ok("paymethod.edit", &[&format!("elid={pm}")]);
    let shown: Value = serde_json::from_str(&text(&view["settings"])).unwrap();
    assert_eq!(shown["secret_key"], "********");
    assert_eq!(shown["shop_id"], SHOP_ID);

    let doc = host.add_payment(account, pm, "99.90");
    let payment = id_of(&doc);
    let external = text(&doc["external_id"]);
    let paid = yoo.pay(&external);
    // From the loopback, not from YooKassa's ranges: refused without asking the API.
    let server = Server::start(&host);
    let gets_before = yoo.fake.requests("GET", "/v3/payments/").len();
    let (status, _) = server.notify(
        "yookassa",
        &[],
        &yoo_notification("payment.succeeded", &paid),
    );
    assert_eq!(status, 400);
    assert_eq!(yoo.fake.requests("GET", "/v3/payments/").len(), gets_before);
    assert_eq!(
        host.history_count(payment, "not from YooKassa's published addresses"),
        1
    );
    assert_eq!(host.payment_status(payment), 2);
    drop(server);

    // The status check: too slow first (the payment stays in progress), then it credits.
    yoo.fake
        .slow(2, Duration::from_secs(3), "GET /v3/payments/");
    let doc = host.ok("payment.checkpay", &[]);
    assert_eq!(text(&doc["errors"]), "1", "{doc}");
    assert_eq!(host.payment_status(payment), 2);
    assert_eq!(host.history_count(payment, "YooKassa did not answer"), 1);
    let doc = host.ok("payment.checkpay", &[]);
    assert_eq!(text(&doc["paid"]), "1", "{doc}");
    assert_eq!(host.payment_status(payment), 4);
    assert_eq!(host.balance(account), 9_990);

    // A refund whose answer was lost (too slow): retried, found at YooKassa, not made twice.
    yoo.fake.slow(2, Duration::from_secs(3), "POST /v3/refunds");
    let doc = host.ok(
        "payment.refund",
        &[&format!("elid={payment}"), "sok=ok", "amount=9.90"],
    );
    assert_eq!(text(&doc["status"]), "5", "{doc}");
    let refund: i64 = text(&doc["refund"]).parse().unwrap();
    assert_eq!(host.payment_status(payment), 5);
    // YooKassa's refund.succeeded comes first: the refund, found by our mark, is complete.
    let server = Server::start(&host);
    let note = yoo_notification("refund.succeeded", &yoo.refunds()[0]);
    let (status, body) = server.notify("yookassa", &[("X-Real-IP", "185.71.76.10")], &note);
    assert_eq!(status, 400, "{body}");
    drop(server);
    let mut behind_proxy = settings.clone();
    behind_proxy["ip_header"] = json!("x-real-ip");
    host.ok(
        "paymethod.edit",
        &[
            &format!("elid={pm}"),
            "sok=ok",
            &format!("settings={behind_proxy}"),
        ],
    );
    let server = Server::start(&host);
    let (status, body) = server.notify("yookassa", &[("X-Real-IP", "185.71.76.10")], &note);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        host.history_count(
            payment,
            &format!("yookassa callback: refund {refund} confirmed")
        ),
        1
    );
    assert_eq!(host.payment_status(payment), 4);
    drop(server);
    let doc = host.ok("payment.refund.retry", &[&format!("elid={refund}")]);
    assert_eq!(text(&doc["done"]), "1", "{doc}");
    assert_eq!(yoo.refunds().len(), 1);
    assert_eq!(yoo.refunds()[0]["amount"]["value"], "9.90");
    assert_eq!(host.balance(account), 9_000);
    host.check_clean();
}

// ---------------------------------------------------------------------------------------------
// Through the web panel, in a real browser: the providers' payment pages are the fakes' too.

/// The providers' payment pages, for a browser: `/stripe/ID` and `/yookassa/ID` show a Pay
/// button. Paying marks the payment paid at the fake, sends the provider's notification to
/// billhost at `billhost` (signed for Stripe; YooKassa's carries no signature and the plugin
/// fetches the payment back from the fake's API), then sends the payer back where the payment
/// said to (Stripe's `success_url`, YooKassa's `return_url`).
fn checkout_site(
    billhost: String,
    stripe: Arc<Mutex<StripeState>>,
    yoo: Arc<Mutex<YooState>>,
) -> Fake {
    Fake::start(Arc::new(move |req: &Request| {
        let (provider, id) = req
            .path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or(("", ""));
        if req.method == "GET" {
            let page = format!(
                "<!doctype html><title>{provider}</title><h1>Pay at {provider}</h1>\
                 <form method=post action=\"{}\"><button id=pay>Pay</button></form>",
                req.path
            );
            return (200, Value::String(page));
        }
        let (callback, back) = match provider {
            "stripe" => {
                let paid = stripe_pay(&stripe, id);
                let event = stripe_event("checkout.session.completed", &paid);
                let signature = stripe_signature(&event, WHSEC, unix_now());
                let answer = post_callback(
                    &billhost,
                    "stripe",
                    &[("Stripe-Signature", &signature)],
                    &event,
                );
                (answer, paid["success_url"].clone())
            }
            "yookassa" => {
                let paid = yoo_pay(&yoo, id);
                let note = yoo_notification("payment.succeeded", &paid);
                let answer = post_callback(&billhost, "yookassa", &[], &note);
                (answer, paid["confirmation"]["return_url"].clone())
            }
            _ => return (404, json!({"error": "no such page"})),
        };
        match callback {
            (200, _) => (303, back),
            // Shown to the browser, so that the test's next look at the page tells why.
            (status, body) => (
                200,
                Value::String(format!(
                    "<p id=error>billhost answered {status}: {body}</p>"
                )),
            ),
        }
    }))
}

#[test]
fn a_client_adds_funds_in_the_panel_with_stripe_and_with_yookassa() {
    let (stripe, yoo) = (StripeFake::start(), YooFake::start());
    let host = gateway_host("gw-panel", "978");
    let server = Server::start(&host);
    let site = checkout_site(server.addr.clone(), stripe.state.clone(), yoo.state.clone());
    stripe.state.lock().unwrap().page_base = Some(format!("{}/stripe/", site.base()));
    yoo.state.lock().unwrap().page_base = Some(format!("{}/yookassa/", site.base()));
    let panel = format!("http://{}/", server.addr);
    let mut stripe_settings = stripe.settings();
    stripe_settings["panel_url"] = json!(panel);
    let mut yoo_settings = yoo.settings();
    yoo_settings["return_url"] = json!(panel);
    for (name, module, settings) in [
        ("Card", "stripe", &stripe_settings),
        ("YooMoney", "yookassa", &yoo_settings),
    ] {
        host.ok(
            "paymethod.edit",
            &[
                "sok=ok",
                &format!("name={name}"),
                "currency=978",
                &format!("module={module}"),
                "active=on",
                &format!("settings={settings}"),
            ],
        );
    }
    let account = id_of(&host.ok(
        "account.edit",
        &[
            "sok=ok",
            "email=ann@example.com",
            "name=Ann Example",
            "passwd=ann-password-1",
            "confirm=ann-password-1",
        ],
    ));
    let Some(b) = webdriver::Browser::start() else {
        return;
    };
    b.goto(&panel);
    assert!(b.url().ends_with("/login"), "{}", b.url());
    b.type_into("input[name=username]", "ann@example.com");
    b.type_into("input[name=password]", "ann-password-1");
    b.click_nav("#login");
    b.find("#logout");

    // Each method in turn: payment.add's form, the provider's page, its notification, home.
    for (method, amount, page, total) in [
        ("Card", "25.00", "/stripe/", "25.00"),
        ("YooMoney", "100.50", "/yookassa/", "125.50"),
    ] {
        b.goto(&panel);
        b.click_nav("#add-funds");
        b.select("#f-paymethod", method);
        b.type_into("#f-amount", amount);
        b.click_nav("#submit");
        assert!(
            b.url().starts_with(&format!("{}{page}", site.base())),
            "{method}: {} {}",
            b.url(),
            b.source()
        );
        b.click_nav("#pay");
        assert!(
            b.url().starts_with(&panel),
            "{method}: {} {}",
            b.url(),
            b.source()
        );
        let balances = b.text_of("#balances");
        assert!(balances.contains(total), "{method}: {balances}");
    }
    assert_eq!(host.balance(account), 12_550);
    // Each payment credited once, from its notification.
    for payment in [1, 2] {
        assert_eq!(host.payment_status(payment), 4);
        assert_eq!(
            host.history_count(payment, "callback: paid"),
            1,
            "{:?}",
            host.history(payment)
        );
    }
    drop(server);
    host.check_clean();
}
