//! The web panel in a real browser: the built `billhost serve` on loopback, Debian's Chromium
//! headless driven over WebDriver by `chromedriver` (see `support/webdriver.rs`). The tests
//! click and type as a person would and read what the page shows; screenshots land in
//! `target/panel-screenshots/`.

#[path = "support/build.rs"]
mod build;
mod common;
#[path = "support/seed.rs"]
mod seed;
#[path = "support/webdriver.rs"]
mod webdriver;

use billhost::{Engine, EngineConfig};
use billhost_plugin_sdk::crypto::{hex, hmac_sha256};
use common::TempDir;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use webdriver::{Browser, http};

const STAFF_PASSWORD: &str = "staff-secret-1";
const SECRET: &str = "panel-testpay-secret";

/// `billhost serve` on a free loopback port, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    stderr: PathBuf,
}

impl Server {
    fn start(dir: &TempDir, plugins: Option<&Path>) -> Server {
        let out = dir.path().join("serve.out");
        let err = dir.path().join("serve.err");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_billhost"));
        cmd.arg("--db").arg(dir.db());
        cmd.arg("--scripts").arg(dir.path().join("scripts"));
        if let Some(p) = plugins {
            cmd.arg("--plugins").arg(p);
        }
        let child = cmd
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env_remove("BILLHOST_DB")
            .env_remove("BILLHOST_LISTEN")
            .env_remove("BILLHOST_SCRIPTS")
            .env_remove("BILLHOST_PLUGINS")
            .stdin(Stdio::null())
            .stdout(File::create(&out).expect("stdout file"))
            .stderr(File::create(&err).expect("stderr file"))
            .spawn()
            .expect("spawn billhost serve");
        let mut server = Server {
            child,
            addr: "127.0.0.1:1".parse().expect("placeholder"),
            stderr: err,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            if let Some(line) = text
                .lines()
                .find_map(|l| l.strip_prefix("billhost serve: listening on http://"))
            {
                server.addr = line.trim_end_matches("/billmgr").parse().expect("address");
                return server;
            }
            if let Some(status) = server.child.try_wait().expect("wait") {
                panic!(
                    "serve exited ({status}): {}",
                    std::fs::read_to_string(&server.stderr).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "serve never printed its address");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A database with the staff user, USD for provider 1 and the manual method "Bank".
fn database(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    std::fs::create_dir_all(dir.path().join("scripts")).expect("scripts dir");
    let engine = Engine::open(EngineConfig::new(dir.db())).expect("open");
    seed::usd_bank(&engine, STAFF_PASSWORD);
    dir
}

fn login(b: &Browser, s: &Server, user: &str, password: &str) {
    b.goto(&s.url("/"));
    assert!(b.url().ends_with("/login"), "{}", b.url());
    b.type_into("input[name=username]", user);
    b.type_into("input[name=password]", password);
    b.click_nav("#login");
    b.find("#logout");
}

fn shot(b: &Browser, name: &str) -> PathBuf {
    let path = webdriver::screenshot_dir().join(name);
    b.screenshot(&path);
    path
}

/// The rows of the list on the page: each row's cells.
fn rows(b: &Browser) -> Vec<String> {
    b.all("#list tbody tr").iter().map(|r| b.text(r)).collect()
}

fn total(b: &Browser) -> u64 {
    b.text_of("#total")
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a total")
}

#[test]
fn staff_create_pay_sort_filter_page_delete_and_download() {
    let dir = database("panel-staff");
    {
        let engine = Engine::open(EngineConfig::new(dir.db())).expect("open");
        for i in 1..=250 {
            seed::must(
                &engine,
                "account.edit",
                &[
                    ("sok", "ok"),
                    ("email", &format!("client{i:03}@example.com")),
                    ("name", &format!("Client {i:03}")),
                ],
            );
        }
    }
    let server = Server::start(&dir, None);
    let Some(b) = Browser::start() else { return };
    login(&b, &server, "admin", STAFF_PASSWORD);
    assert_eq!(b.text_of("#count-clients"), "250");

    // A new client through the generated form: a wrong email is answered next to its field.
    b.goto(&server.url("/f/account"));
    b.click_nav("#new");
    b.type_into("#f-email", "not-an-email");
    b.type_into("#f-name", "Zoe Zed");
    b.click_nav("#submit");
    let msg = b.text_of("#error-email");
    assert!(msg.to_lowercase().contains("email"), "{msg}");
    assert!(
        b.attr(&b.find("[data-field=email]"), "class")
            .unwrap_or_default()
            .contains("has-error")
    );
    shot(&b, "form-error.png");
    b.type_into("#f-email", "zoe@example.com");
    b.click_nav("#submit");
    // Back on the list it came from, with the new client in it.
    b.find("#notice");
    b.goto(&server.url("/f/account?filter=on&email=zoe%40example.com"));
    let zoe_row = b.find("#list tbody tr");
    let zoe = b.attr(&zoe_row, "data-id").expect("row id");
    assert!(b.text(&zoe_row).contains("Zoe Zed"));

    // A payment for her, set paid from the list of her payments: her balance shows it.
    b.goto(&server.url(&format!("/f/account.edit?elid={zoe}")));
    b.click_nav(".subs a[href*='account.payment']");
    b.click_nav("#new");
    b.select("#f-paymethod", "Bank");
    b.type_into("#f-paymethodamount", "42.50");
    b.click_nav("#submit");
    b.find("#notice");
    assert_eq!(rows(&b).len(), 1);
    b.click_css("#list tbody input[name=sel]");
    b.click_nav("button[data-func='payment.setpaid']");
    assert!(b.text_of("#notice").contains("Add funds"));
    b.goto(&server.url("/f/account?filter=on&email=zoe%40example.com"));
    assert!(rows(&b)[0].contains("42.50 USD"), "{:?}", rows(&b));
    // The staff dashboard counts her and charts the revenue.
    b.goto(&server.url("/"));
    assert_eq!(b.text_of("#count-clients"), "251");
    b.find("img.chart");
    shot(&b, "staff-dashboard.png");

    // The invoice PDF of that payment, as the browser's session downloads it.
    b.goto(&server.url(&format!("/f/account.payment?plid={zoe}")));
    let payment = b.attr(&b.find("#list tbody tr"), "data-id").expect("id");
    let sid = b.cookie("billmgrses5").expect("session cookie");
    let (status, headers, pdf) = http(
        server.addr,
        "GET",
        &format!("/f/payment.print.pdf?elid={payment}"),
        &[("Cookie", &format!("billmgrses5={sid}"))],
        b"",
    )
    .expect("pdf");
    assert_eq!(status, 200);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "content-type" && v == "application/pdf"),
        "{headers:?}"
    );
    let pdf_path = dir.path().join("invoice.pdf");
    std::fs::write(&pdf_path, &pdf).expect("write pdf");
    let text = Command::new("pdftotext")
        .arg(&pdf_path)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils)");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("42.50"), "{text}");

    // 251 clients: paging, sorting by a header, filtering.
    b.goto(&server.url("/f/account"));
    assert_eq!(total(&b), 251);
    assert_eq!(rows(&b).len(), 20);
    shot(&b, "staff-list.png");
    b.click_nav("a[data-col=email]");
    b.click_nav("a[data-col=email]");
    assert!(b.url().contains("p_order=desc"), "{}", b.url());
    assert!(rows(&b)[0].contains("zoe@example.com"), "{:?}", rows(&b));
    b.click_nav("#pages a[href*='p_num=2']");
    let second = rows(&b);
    assert!(second[0].contains("client231@example.com"), "{second:?}");
    b.goto(&server.url("/f/account"));
    b.click_css(".filter summary");
    b.type_into("#filter-form input[name=name]", "Client 12");
    b.click_nav("#filter-apply");
    assert_eq!(total(&b), 10, "{:?}", rows(&b));

    // A stored filter applies to the list after a reload.
    b.goto(&server.url("/f/account"));
    b.click_css(".filter summary");
    b.type_into("#filter-form input[name=email]", "client00");
    b.click_nav("#filter-store");
    assert_eq!(total(&b), 9);
    b.goto(&server.url("/f/account"));
    assert_eq!(total(&b), 9);
    assert!(b.text_of(".filter summary").contains("active"));

    // A group delete asks first, then removes both.
    let boxes = b.all("#list tbody input[name=sel]");
    b.click(&boxes[0]);
    b.click(&boxes[1]);
    b.click_nav("button[data-func='account.delete']");
    assert!(b.text_of(".warn").contains("2 selected"));
    b.click_nav("#confirm");
    assert!(b.text_of("#notice").contains("Delete"));
    assert_eq!(total(&b), 7);
}

/// The shipped testpay plugin, built once.
fn plugins() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| build::plugins(&["billhost-plugin-testpay"]))
}

fn cli(dir: &TempDir, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_billhost"))
        .arg("--db")
        .arg(dir.db())
        .arg("--plugins")
        .arg(plugins())
        .arg("--scripts")
        .arg(dir.path().join("scripts"))
        .args(args)
        .env_remove("BILLHOST_DB")
        .output()
        .expect("billhost");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{args:?}: {text}");
    text
}

fn xml_id(doc: &str) -> String {
    let start = doc.find("<id>").expect("an id") + 4;
    doc[start..start + doc[start..].find('<').expect("end")].to_string()
}

/// A stand-in for the payment gateway's own site: its pay page has a "Pay" button; paying sends
/// the signed callback to billhost and sends the payer back to the panel.
fn gateway(billhost: SocketAddr, paymethod: String) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind gateway");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut length = 0;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let target = line.split(' ').nth(1).unwrap_or("/").to_string();
            let mut stream = stream;
            // GET /pay/tp-PM-ID?amount=A&currency=C: the pay page.
            let answer = if line.starts_with("GET /pay/") {
                format!(
                    "<!doctype html><title>TestPay</title><h1>TestPay</h1>\
                     <form method=post action=\"{target}\"><button id=pay>Pay</button></form>"
                )
            } else {
                String::new()
            };
            if line.starts_with("POST /pay/") {
                let (path, query) = target.split_once('?').unwrap_or((&target, ""));
                let external = path.trim_start_matches("/pay/").to_string();
                let payment: i64 = external
                    .rsplit('-')
                    .next()
                    .unwrap_or("0")
                    .parse()
                    .unwrap_or(0);
                let amount = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("amount="))
                    .unwrap_or("0")
                    .to_string();
                let body = serde_json::json!({
                    "payment_id": payment, "external_id": external,
                    "amount": amount, "status": "paid",
                })
                .to_string();
                let signature = hex(&hmac_sha256(SECRET.as_bytes(), body.as_bytes()));
                let (status, _, reply) = http(
                    billhost,
                    "POST",
                    &format!("/billmgr/callback/testpay?paymethod={paymethod}"),
                    &[
                        ("Content-Type", "application/json"),
                        ("X-Testpay-Signature", &signature),
                    ],
                    body.as_bytes(),
                )
                .expect("callback");
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply));
                let _ = write!(
                    stream,
                    "HTTP/1.1 303 See Other\r\nLocation: http://{billhost}/\r\n\
                     Content-Length: 0\r\nConnection: close\r\n\r\n"
                );
                continue;
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    addr
}

#[test]
fn client_sees_only_its_own_adds_funds_through_testpay_and_writes_a_ticket() {
    let dir = database("panel-client");
    // Ann (the client under test) and Bob (another client, with a payment of his own).
    let ann = xml_id(&cli(
        &dir,
        &[
            "call",
            "account.edit",
            "sok=ok",
            "email=ann@example.com",
            "name=Ann Example",
            "passwd=ann-password-1",
            "confirm=ann-password-1",
        ],
    ));
    let bob = xml_id(&cli(
        &dir,
        &["call", "account.edit", "sok=ok", "email=bob@example.com"],
    ));
    let bobs_payment = xml_id(&cli(
        &dir,
        &[
            "call",
            "payment.edit",
            &format!("plid={bob}"),
            "sok=ok",
            "paymethod=1",
            "paymethodamount=5.00",
        ],
    ));
    // The testpay method's id is known before the server starts: the next one.
    let pm = "2".to_string();
    // The gateway needs billhost's address and billhost the gateway's: bind the server first.
    let server = Server::start(&dir, Some(plugins()));
    let gw = gateway(server.addr, pm.clone());
    let settings = serde_json::json!({
        "secret": SECRET, "base_url": format!("http://{gw}"),
    })
    .to_string();
    let created = xml_id(&cli(
        &dir,
        &[
            "call",
            "paymethod.edit",
            "sok=ok",
            "name=TestPay",
            "currency=840",
            "module=testpay",
            "active=on",
            &format!("settings={settings}"),
        ],
    ));
    assert_eq!(created, pm);
    let Some(b) = Browser::start() else { return };
    login(&b, &server, "ann@example.com", "ann-password-1");
    assert!(b.source().contains("Balance"));
    // No staff screen, no other client's object, by URL.
    b.goto(&server.url("/f/paymethod"));
    assert!(b.text_of("#error").contains("not available"));
    b.goto(&server.url(&format!("/f/account.edit?elid={bob}")));
    b.find("#error");
    assert!(!b.source().contains("bob@example.com"));
    b.goto(&server.url(&format!("/f/payment.print?elid={bobs_payment}")));
    b.find("#error");
    b.goto(&server.url("/f/account"));
    let mine = rows(&b);
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert!(mine[0].contains("ann@example.com"));
    assert_eq!(
        b.attr(&b.find("#list tbody tr"), "data-id"),
        Some(ann.clone())
    );
    assert!(!b.source().contains("secret"), "gateway settings shown");

    // Add funds: payment.add's form, the gateway's page, the signed callback, back home.
    b.goto(&server.url("/"));
    b.click_nav("#add-funds");
    b.select("#f-paymethod", "TestPay");
    b.type_into("#f-amount", "25.00");
    b.click_nav("#submit");
    b.click_nav("#pay");
    b.find("#balances");
    assert!(
        b.url().ends_with(&format!("{}/", server.addr)),
        "{}",
        b.url()
    );
    let balances = b.text_of("#balances");
    assert!(balances.contains("25.00"), "{balances}");
    shot(&b, "client-dashboard.png");

    // A ticket to support, then a reply in it.
    b.click_nav("#new-ticket");
    b.type_into("#f-subject", "Invoice question");
    b.type_into("#f-message", "Can I get the invoice in EUR?");
    b.click_nav("#submit");
    b.find("#result");
    b.goto(&server.url("/f/ticket"));
    assert!(!rows(&b).is_empty(), "{}", b.source());
    assert!(rows(&b)[0].contains("Invoice question"), "{:?}", rows(&b));
    b.click_nav("#list tbody a");
    assert!(b.source().contains("Can I get the invoice in EUR?"));
    b.click_nav(".subs a[href*='ticket.reply']");
    b.type_into("#f-message", "Thanks!");
    b.click_nav("#submit");
    assert_eq!(rows(&b).len(), 2, "{:?}", rows(&b));
    b.click_nav("#logout");

    // Staff open Ann's view (`account.su`) and come back to the console.
    login(&b, &server, "admin", STAFF_PASSWORD);
    b.goto(&server.url(&format!("/f/account.edit?elid={ann}")));
    b.click_nav("button[data-func='account.su']");
    assert!(
        b.text_of(".who").contains("ann@example.com"),
        "{}",
        b.text_of(".who")
    );
    assert!(b.text_of("#balances").contains("25.00"));
    b.goto(&server.url("/f/paymethod"));
    b.find("#error");
    b.click_nav("#back-to-staff");
    assert!(b.text_of(".who").contains("admin"));
    assert!(b.url().ends_with("/f/account"), "{}", b.url());
    assert!(rows(&b).len() >= 2, "{:?}", rows(&b));
}

#[test]
fn a_new_script_list_shows_up_and_a_post_without_csrf_changes_nothing() {
    let dir = database("panel-script");
    let server = Server::start(&dir, None);
    let Some(b) = Browser::start() else { return };
    login(&b, &server, "admin", STAFF_PASSWORD);
    assert!(b.all("a[href='/f/report.planets']").is_empty());

    // A script registering a list func, written while the server runs.
    let script = "billing.func('report.planets', { access = 'admin', kind = 'list' }, function(req)\n\
                  return { elem = { { id = 1, planet = 'Mercury', moons = 0 },\n\
                                    { id = 2, planet = 'Jupiter', moons = 95 } } }\nend)\n";
    let tmp = dir.path().join("scripts/.planets.tmp");
    std::fs::write(&tmp, script).expect("write script");
    std::fs::rename(&tmp, dir.path().join("scripts/50-planets.lua")).expect("rename");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        b.goto(&server.url("/"));
        if !b.all("a[href='/f/report.planets']").is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the script's func never appeared"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    b.click_nav("a[href='/f/report.planets']");
    let table = rows(&b);
    assert_eq!(table.len(), 2);
    assert!(
        table[1].contains("Jupiter") && table[1].contains("95"),
        "{table:?}"
    );

    // The panel's security headers, and the session cookie's flags.
    let (_, headers, _) = http(
        server.addr,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        format!("username=admin&password={STAFF_PASSWORD}").as_bytes(),
    )
    .expect("login");
    let header = |name: &str| -> Vec<String> {
        headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let csp = header("content-security-policy").join(" ");
    assert!(
        csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(header("x-content-type-options"), ["nosniff"]);
    let cookie = header("set-cookie").join(" ");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite"),
        "{cookie}"
    );

    // A form post without the token, or with another's, changes nothing; with it, it works.
    let sid = b.cookie("billmgrses5").expect("session");
    let post = |body: String| {
        http(
            server.addr,
            "POST",
            "/f/account.edit",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Cookie", &format!("billmgrses5={sid}")),
            ],
            body.as_bytes(),
        )
        .expect("post")
    };
    let (status, _, _) = post("email=mallory%40example.com".into());
    assert_eq!(status, 403);
    let (status, _, _) = post(format!(
        "email=mallory%40example.com&csrf={}",
        "0".repeat(64)
    ));
    assert_eq!(status, 403);
    b.goto(&server.url("/f/account"));
    assert_eq!(total(&b), 0);
    let token = b
        .attr(&b.find("form[action='/logout'] input[name=csrf]"), "value")
        .expect("token");
    let (status, _, _) = post(format!("email=mallory%40example.com&csrf={token}"));
    assert_eq!(status, 303);
    b.goto(&server.url("/f/account"));
    assert_eq!(total(&b), 1);
}
