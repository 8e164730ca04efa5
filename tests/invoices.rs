//! Invoices and their email, against real components: the PDF is read back with poppler's
//! `pdftotext` (Debian package `poppler-utils`), the HTML invoice with its tags stripped, and
//! email goes to a real SMTP server on 127.0.0.1 that these tests run themselves (a minimal one
//! written here over `TcpListener`). Also: numbering under 50 concurrent payments, the outbox's
//! retries and exactly-once delivery, tickets' notifications and owner checks, the PDF as an
//! HTTP download and as the CLI's `--output`. The CLI's test (`call` mailing after its
//! commit, `billhost deliver` sending what the engine queued) runs on SQLite and on PostgreSQL.

mod common;
#[macro_use]
#[path = "support/pg.rs"]
mod pg;
#[path = "support/serving.rs"]
mod serving;
#[path = "support/smtp.rs"]
mod smtp;

use base64::Engine as _;
use billhost::config::{Config, SmtpFile};
use billhost::{Doc, Engine, EngineConfig, mail};
use common::{Fixture, TempDir, column, error_type, id_of};
use pg::Backend;
use serving::Serving;
use smtp::SmtpServer;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// A loopback port with nothing listening (bound once, then released).
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
}

// ------------------------------------------------------------------ fixtures

fn smtp_settings(addr: SocketAddr) -> Config {
    Config {
        templates: None,
        smtp: Some(SmtpFile {
            host: Some(addr.ip().to_string()),
            port: Some(addr.port()),
            from: Some("Billing <billing@example.com>".into()),
            timeout_secs: Some(5),
            ..SmtpFile::default()
        }),
    }
}

fn fixture(tag: &str, settings: Config) -> Fixture {
    fixture_on(&Backend::Sqlite, tag, settings)
}

/// A fixture whose database is on `backend` (the caller keeps a PostgreSQL database alive).
fn fixture_on(backend: &Backend, tag: &str, settings: Config) -> Fixture {
    let dir = TempDir::new(tag);
    let mut config = EngineConfig::new(backend.db(dir.path()));
    config.settings = settings;
    let engine = Engine::open(config).expect("open engine");
    Fixture { dir, engine }
}

const LINES: [(&str, &str); 3] = [
    ("Хостинг VPS-2 (месяц)", "1000.00"),
    ("Domain example.ru & <renewal>", "300.00"),
    ("SSL certificate", "200.00"),
];

/// Provider 1 in RUB with company details, a payment method, the client "Иван Петров" (id 1)
/// and its payment 1 of 1500.00 with three invoice lines.
fn invoice_setup(fx: &Fixture) {
    fx.ok(
        "project.edit",
        &[
            ("elid", "1"),
            ("sok", "ok"),
            ("currency", "643"),
            ("company", "ООО «Ромашка»"),
            ("company_address", "Москва, ул. Ленина, 1"),
            ("company_taxid", "7701234567"),
            ("invoice_format", "INV-{year}-{seq:06}"),
        ],
    );
    fx.ok(
        "paymethod.edit",
        &[
            ("sok", "ok"),
            ("name", "Bank"),
            ("currency", "643"),
            ("project", "1"),
        ],
    );
    let client = fx.ok(
        "account.edit",
        &[
            ("sok", "ok"),
            ("email", "ivan@example.com"),
            ("name", "Иван Петров"),
            ("passwd", "Secret123"),
            ("confirm", "Secret123"),
        ],
    );
    assert_eq!(id_of(&client), 1);
    let payment = fx.ok(
        "payment.edit",
        &[
            ("plid", "1"),
            ("sok", "ok"),
            ("paymethod", "1"),
            ("paymethodamount", "1500.00"),
        ],
    );
    assert_eq!(id_of(&payment), 1);
    for (name, cost) in LINES {
        fx.ok(
            "payment.orderinfo.edit",
            &[("plid", "1"), ("sok", "ok"), ("name", name), ("cost", cost)],
        );
    }
}

fn file(doc: Doc) -> billhost::doc::FileDoc {
    match doc {
        Doc::File(f) => f,
        other => panic!("not a file: {other:?}"),
    }
}

/// Messages in the outbox of `db` (a SQLite file or a PostgreSQL URL).
fn outbox_count(db: &Path) -> i64 {
    billhost::store::connect(db, billhost::store::Durability::Full)
        .expect("open")
        .query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))
        .expect("count")
}

/// poppler's `pdftotext` on `bytes`.
fn pdf_text(dir: &Path, bytes: &[u8]) -> String {
    let path = dir.join("invoice.pdf");
    std::fs::write(&path, bytes).expect("write pdf");
    let out = Command::new("pdftotext")
        .arg("-enc")
        .arg("UTF-8")
        .arg(&path)
        .arg("-")
        .output()
        .expect("pdftotext runs (install Debian's poppler-utils)");
    assert!(out.status.success(), "pdftotext failed: {out:?}");
    String::from_utf8(out.stdout).expect("utf-8 text")
}

/// The text of an HTML page: tags dropped, the entities minijinja writes decoded, blanks
/// collapsed.
fn html_text(html: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#x2f;", "/")
        .replace("&amp;", "&");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn assert_invoice_text(text: &str) {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for want in [
        "Иван Петров",
        "ООО «Ромашка»",
        "7701234567",
        "INV-",
        "1500.00 RUB",
    ] {
        assert!(flat.contains(want), "'{want}' not in:\n{text}");
    }
    for (name, cost) in LINES {
        assert!(flat.contains(name), "line '{name}' not in:\n{text}");
        assert!(flat.contains(cost), "amount {cost} not in:\n{text}");
    }
}

// ------------------------------------------------------------------ rendering

#[test]
fn the_pdf_invoice_prints_a_cyrillic_name_every_line_and_the_total() {
    let fx = fixture("inv-pdf", Config::default());
    invoice_setup(&fx);
    let pdf = file(fx.ok("payment.print.pdf", &[("elid", "1")]));
    assert_eq!(pdf.mime, "application/pdf");
    assert!(pdf.attachment);
    assert!(pdf.name.starts_with("invoice-INV-") && pdf.name.ends_with(".pdf"));
    assert!(pdf.bytes.starts_with(b"%PDF-"));
    // A subset of the font, not the whole 750 kB file.
    assert!(pdf.bytes.len() < 200_000, "{} bytes", pdf.bytes.len());
    assert_invoice_text(&pdf_text(fx.dir.path(), &pdf.bytes));
}

#[test]
fn a_long_invoice_goes_on_to_more_pages() {
    let fx = fixture("inv-pages", Config::default());
    invoice_setup(&fx);
    for i in 4..=90 {
        let name = format!(
            "Услуга номер {i} with a description long enough to wrap onto a second line of the table"
        );
        fx.ok(
            "payment.orderinfo.edit",
            &[
                ("plid", "1"),
                ("sok", "ok"),
                ("name", &name),
                ("cost", "1.00"),
            ],
        );
    }
    let pdf = file(fx.ok("payment.print.pdf", &[("elid", "1")]));
    let pages = pdf
        .bytes
        .windows(11)
        .filter(|w| *w == b"/Type /Page")
        .count();
    assert!(pages >= 3, "{pages} pages");
    let text = pdf_text(fx.dir.path(), &pdf.bytes);
    assert!(text.contains("Услуга номер 90"), "{text}");
    assert!(text.contains("1500.00 RUB"));
}

#[test]
fn the_html_invoice_shows_the_same_and_escapes_what_it_shows() {
    let fx = fixture("inv-html", Config::default());
    invoice_setup(&fx);
    let page = file(fx.ok("payment.print", &[("elid", "1")]));
    assert_eq!(page.mime, "text/html; charset=UTF-8");
    assert!(!page.attachment);
    let html = String::from_utf8(page.bytes).expect("utf-8");
    assert!(html.contains("&lt;renewal&gt;"), "not escaped:\n{html}");
    assert!(!html.contains("<renewal>"));
    assert_invoice_text(&html_text(&html));
}

#[test]
fn a_payment_without_invoice_lines_is_its_own_line() {
    let fx = fixture("inv-one-line", Config::default());
    invoice_setup(&fx);
    let p = fx.ok(
        "payment.edit",
        &[
            ("plid", "1"),
            ("sok", "ok"),
            ("paymethod", "1"),
            ("paymethodamount", "250.50"),
        ],
    );
    let id = id_of(&p).to_string();
    let html = file(fx.ok("payment.print", &[("elid", &id)]));
    let text = html_text(&String::from_utf8(html.bytes).expect("utf-8"));
    assert!(text.contains("Payment INV-"), "{text}");
    assert!(text.contains("Total 250.50 RUB"), "{text}");
}

#[test]
fn the_operators_template_replaces_the_shipped_one() {
    let templates = TempDir::new("inv-templates");
    std::fs::write(
        templates.path().join("invoice.html"),
        "{{ number }}|{{ payer.name }}|{% for l in lines %}{{ l.amount }};{% endfor %}|{{ total }} {{ currency }}",
    )
    .expect("template");
    let fx = fixture(
        "inv-custom",
        Config {
            templates: Some(templates.path().to_path_buf()),
            smtp: None,
        },
    );
    invoice_setup(&fx);
    let page = file(fx.ok("payment.print", &[("elid", "1")]));
    let year = &billhost::clock::now()[..4];
    assert_eq!(
        String::from_utf8(page.bytes).expect("utf-8"),
        format!("INV-{year}-000001|Иван Петров|1000.00;300.00;200.00;|1500.00 RUB")
    );
    // A broken template is an error document, not a panic.
    std::fs::write(templates.path().join("invoice.html"), "{% for %}").expect("template");
    let doc = fx.call("payment.print", &[("elid", "1")]);
    assert_eq!(error_type(&doc), "internal");
}

#[test]
fn invoice_formats_are_checked() {
    let fx = fixture("inv-format", Config::default());
    let doc = fx.call(
        "project.edit",
        &[("elid", "1"), ("sok", "ok"), ("invoice_format", "A-{nope}")],
    );
    assert_eq!(error_type(&doc), "value");
    fx.ok(
        "project.edit",
        &[
            ("elid", "1"),
            ("sok", "ok"),
            ("invoice_format", "{year}/{month}-{seq:04}"),
        ],
    );
}

// ------------------------------------------------------------------ numbering

#[test]
fn fifty_concurrent_payments_get_fifty_consecutive_numbers() {
    let fx = Arc::new(fixture("inv-concurrent", Config::default()));
    invoice_setup(&fx);
    let threads: Vec<_> = (0..50)
        .map(|_| {
            let fx = fx.clone();
            std::thread::spawn(move || {
                let doc = fx.ok(
                    "payment.add",
                    &[
                        ("plid", "1"),
                        ("sok", "ok"),
                        ("paymethod", "1"),
                        ("amount", "10.00"),
                    ],
                );
                id_of(&doc)
            })
        })
        .collect();
    let ids: Vec<i64> = threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    let year = &billhost::clock::now()[..4];
    let mut seqs: Vec<i64> = ids
        .iter()
        .map(|id| {
            let view = fx.ok("payment.edit", &[("elid", &id.to_string())]);
            let number = view.field("number").expect("number").to_string();
            let seq = number
                .strip_prefix(&format!("INV-{year}-"))
                .unwrap_or_else(|| panic!("format: {number}"));
            assert_eq!(seq.len(), 6, "{number}");
            seq.parse().expect("seq")
        })
        .collect();
    seqs.sort();
    // Payment 1 of the setup took number 1.
    assert_eq!(seqs, (2..=51).collect::<Vec<i64>>());
}

#[test]
fn a_payment_rolled_back_after_its_number_leaves_no_gap() {
    let dir = TempDir::new("inv-gap");
    let scripts = dir.path().join("scripts");
    std::fs::create_dir_all(&scripts).expect("scripts dir");
    // Vetoes a payment after it was created and numbered: the whole func is undone.
    std::fs::write(
        scripts.join("veto.lua"),
        r#"billing.on("payment.add", "after", function(req, res)
             if req.params.amount == "13.00" then billing.reject("value", "amount", "unlucky") end
           end)"#,
    )
    .expect("script");
    let engine = Engine::open(EngineConfig::new(dir.db()).with_scripts(&scripts)).expect("engine");
    let fx = Fixture { dir, engine };
    invoice_setup(&fx);
    let add = |amount: &str| {
        fx.call(
            "payment.add",
            &[
                ("plid", "1"),
                ("sok", "ok"),
                ("paymethod", "1"),
                ("amount", amount),
            ],
        )
    };
    assert_eq!(error_type(&add("13.00")), "value");
    let id = id_of(&add("14.00")).to_string();
    let year = &billhost::clock::now()[..4];
    let view = fx.ok("payment.edit", &[("elid", &id)]);
    assert_eq!(
        view.field("number"),
        Some(format!("INV-{year}-000002").as_str())
    );
}

// ------------------------------------------------------------------ email

/// The PDF attached to a multipart message: the part whose headers say `application/pdf`.
fn attachment_of(message: &str) -> Vec<u8> {
    let part = message
        .split("\r\n--")
        .filter_map(|p| p.split_once("\r\n\r\n"))
        .find(|(headers, _)| {
            headers
                .to_ascii_lowercase()
                .contains("content-type: application/pdf")
        })
        .unwrap_or_else(|| panic!("no PDF part in:\n{message}"));
    let headers = part.0.to_ascii_lowercase();
    assert!(
        headers.contains("content-disposition: attachment"),
        "{headers}"
    );
    assert!(headers.contains("filename=\"invoice-inv-"), "{headers}");
    assert!(headers.contains("base64"), "{headers}");
    let b64: String = part.1.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64 attachment")
}

fn header(message: &str, name: &str) -> String {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    message
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
        .map(|l| l[prefix.len()..].trim().to_string())
        .unwrap_or_default()
}

fn smtp_of(fx: &Fixture) -> billhost::config::SmtpConfig {
    fx.engine.config().settings.smtp().expect("smtp configured")
}

#[test]
fn payment_send_mails_the_pdf_through_the_outbox() {
    let server = SmtpServer::start();
    let fx = fixture("inv-send", smtp_settings(server.addr));
    invoice_setup(&fx);
    fx.ok("payment.send", &[("elid", "1")]);
    // Queued in the func's transaction, not sent by it.
    assert!(server.received().is_empty());
    let queued = fx.ok("outbox", &[]);
    assert_eq!(column(&queued, "status"), ["queued"]);
    assert_eq!(column(&queued, "to"), ["ivan@example.com"]);

    let report = mail::deliver_due(&fx.engine, &smtp_of(&fx), billhost::clock::unix_now());
    assert_eq!(report.sent, [1], "{report:?}");
    let got = server.received();
    assert_eq!(got.len(), 1);
    let message = &got[0];
    assert!(!header(message, "Subject").is_empty(), "{message}");
    assert!(
        header(message, "To").contains("ivan@example.com"),
        "{message}"
    );
    let pdf = attachment_of(message);
    assert!(pdf.starts_with(b"%PDF-"));
    assert_invoice_text(&pdf_text(fx.dir.path(), &pdf));

    let sent = fx.ok("outbox", &[]);
    assert_eq!(column(&sent, "status"), ["sent"]);
    assert_eq!(column(&sent, "attempts"), ["1"]);
    assert!(column(&sent, "attachment")[0].starts_with("invoice-INV-"));
    let attempts = fx.ok("outbox.attempt", &[("plid", "1")]);
    assert_eq!(column(&attempts, "outcome"), ["sent"]);
    // Nothing is due any more.
    let again = mail::deliver_due(
        &fx.engine,
        &smtp_of(&fx),
        billhost::clock::unix_now() + 86_400,
    );
    assert!(again.sent.is_empty());
    assert_eq!(server.received().len(), 1);
}

#[test]
fn with_the_server_down_the_message_waits_and_goes_once_it_is_back() {
    let addr = free_port();
    let fx = fixture("inv-retry", smtp_settings(addr));
    invoice_setup(&fx);
    fx.ok("payment.send", &[("elid", "1")]);
    let smtp = smtp_of(&fx);
    let now = billhost::clock::unix_now();

    let down = mail::deliver_due(&fx.engine, &smtp, now);
    assert!(down.sent.is_empty());
    assert_eq!(down.deferred.len(), 1, "{down:?}");
    let list = fx.ok("outbox", &[]);
    assert_eq!(column(&list, "status"), ["queued"]);
    assert_eq!(column(&list, "attempts"), ["1"]);
    assert!(!column(&list, "last_error")[0].is_empty());
    assert_eq!(
        column(&list, "next_attempt"),
        [billhost::clock::format_unix(
            now + billhost::outbox::RETRY_SCHEDULE[0]
        )]
    );
    assert_eq!(column(&list, "sent"), [""]);
    let attempts = fx.ok("outbox.attempt", &[("plid", "1")]);
    assert_eq!(column(&attempts, "outcome"), ["error"]);

    let server = SmtpServer::on(addr);
    // Not due yet: the backoff holds it.
    let early = mail::deliver_due(&fx.engine, &smtp, now + 10);
    assert!(
        early.sent.is_empty() && early.deferred.is_empty(),
        "{early:?}"
    );
    assert!(server.received().is_empty());
    // Due: delivered, once.
    let later = mail::deliver_due(&fx.engine, &smtp, now + 61);
    assert_eq!(later.sent, [1], "{later:?}");
    let again = mail::deliver_due(&fx.engine, &smtp, now + 100_000);
    assert!(again.sent.is_empty());
    assert_eq!(server.received().len(), 1);
    let list = fx.ok("outbox", &[]);
    assert_eq!(column(&list, "status"), ["sent"]);
    assert_eq!(column(&list, "attempts"), ["2"]);
    let attempts = fx.ok("outbox.attempt", &[("plid", "1")]);
    assert_eq!(column(&attempts, "outcome"), ["error", "sent"]);
}

#[test]
fn a_run_stops_at_the_first_temporary_failure() {
    let addr = free_port();
    let fx = fixture("inv-stop-run", smtp_settings(addr));
    invoice_setup(&fx);
    for _ in 0..3 {
        fx.ok("payment.send", &[("elid", "1")]);
    }
    let now = billhost::clock::unix_now();
    let report = mail::deliver_due(&fx.engine, &smtp_of(&fx), now);
    assert_eq!(report.deferred.len(), 1, "{report:?}");
    let list = fx.ok("outbox", &[]);
    // Newest first: the oldest was tried, the others wait untouched.
    assert_eq!(column(&list, "attempts"), ["0", "0", "1"]);
    assert_eq!(column(&list, "status"), ["queued", "queued", "queued"]);
    let server = SmtpServer::on(addr);
    let report = mail::deliver_due(&fx.engine, &smtp_of(&fx), now + 61);
    assert_eq!(report.sent, [1, 2, 3], "{report:?}");
    assert_eq!(server.received().len(), 3);
}

#[test]
fn a_message_is_given_up_after_the_last_attempt_and_can_be_retried() {
    let addr = free_port();
    let fx = fixture("inv-give-up", smtp_settings(addr));
    invoice_setup(&fx);
    fx.ok("payment.send", &[("elid", "1")]);
    let smtp = smtp_of(&fx);
    let mut now = billhost::clock::unix_now();
    for _ in 0..billhost::outbox::MAX_ATTEMPTS {
        mail::deliver_due(&fx.engine, &smtp, now);
        now += 7 * 86_400;
    }
    let list = fx.ok("outbox", &[]);
    assert_eq!(column(&list, "status"), ["failed"]);
    assert_eq!(
        column(&list, "attempts"),
        [billhost::outbox::MAX_ATTEMPTS.to_string()]
    );
    let server = SmtpServer::on(addr);
    fx.ok("outbox.retry", &[("elid", "1")]);
    let report = mail::deliver_due(&fx.engine, &smtp, billhost::clock::unix_now());
    assert_eq!(report.sent, [1], "{report:?}");
    assert_eq!(server.received().len(), 1);
}

#[test]
fn two_deliverers_never_send_the_same_message() {
    let server = SmtpServer::start();
    let fx = fixture("inv-two", smtp_settings(server.addr));
    invoice_setup(&fx);
    for _ in 0..12 {
        fx.ok("payment.send", &[("elid", "1")]);
    }
    // A second engine on the same database: another process delivering.
    let mut config = EngineConfig::new(fx.dir.db());
    config.settings = smtp_settings(server.addr);
    let other = Arc::new(Engine::open(config).expect("second engine"));
    let smtp = smtp_of(&fx);
    let now = billhost::clock::unix_now();
    let fx = Arc::new(fx);
    let a = {
        let (fx, smtp) = (fx.clone(), smtp.clone());
        std::thread::spawn(move || mail::deliver_due(&fx.engine, &smtp, now))
    };
    let b = {
        let (other, smtp) = (other.clone(), smtp.clone());
        std::thread::spawn(move || mail::deliver_due(&other, &smtp, now))
    };
    let (a, b) = (a.join().expect("a"), b.join().expect("b"));
    assert_eq!(a.sent.len() + b.sent.len(), 12, "{a:?} {b:?}");
    let got = server.received();
    assert_eq!(got.len(), 12);
    let mut ids: Vec<String> = got.iter().map(|m| header(m, "Message-ID")).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 12, "duplicate Message-IDs: {ids:?}");
}

#[test]
fn the_servers_deliverer_sends_right_after_the_commit() {
    let server = SmtpServer::start();
    let fx = fixture("inv-deliverer", smtp_settings(server.addr));
    invoice_setup(&fx);
    let smtp = smtp_of(&fx);
    let Fixture { dir, engine } = fx;
    let engine = Arc::new(engine);
    // A long period: only the signal of the queuing func can wake it in time.
    let deliverer = mail::Deliverer::spawn(engine.clone(), smtp, Duration::from_secs(3600));
    let doc = engine.call(
        &billhost::auth::Caller::superuser(),
        "payment.send",
        billhost::Params::from_pairs([("elid", "1")]),
    );
    assert!(!doc.is_error(), "{doc:?}");
    assert_eq!(server.wait_for(1).len(), 1);
    drop(deliverer);
    drop(dir);
}

#[test]
fn bad_input_answers_an_error_and_queues_nothing() {
    let server = SmtpServer::start();
    let fx = fixture("inv-bad", smtp_settings(server.addr));
    invoice_setup(&fx);
    fx.register("bob@example.com");
    let before = fx.dump();

    // Unknown payment.
    for func in ["payment.send", "payment.print", "payment.print.pdf"] {
        assert_eq!(
            error_type(&fx.call(func, &[("elid", "999")])),
            "missed",
            "{func}"
        );
    }
    // Another client's payment.
    for func in ["payment.send", "payment.print", "payment.print.pdf"] {
        let doc = fx.call_as(Some("bob@example.com"), func, &[("elid", "1")]);
        assert_eq!(error_type(&doc), "access", "{func}");
    }
    // Its own payment is fine for the client.
    let own = fx.call_as(
        Some("ivan@example.com"),
        "payment.print.pdf",
        &[("elid", "1")],
    );
    assert!(matches!(own, Doc::File(_)), "{own:?}");
    // A group where one element is bad queues nothing at all.
    let doc = fx.call("payment.send", &[("elid", "1, 999")]);
    assert_eq!(error_type(&doc), "missed");
    assert_eq!(fx.dump(), before);
    assert_eq!(outbox_count(&fx.dir.db()), 0);

    // Missing SMTP settings.
    let mut config = EngineConfig::new(fx.dir.db());
    config.settings = Config::default();
    let unconfigured = Engine::open(config).expect("engine");
    let doc = unconfigured.call(
        &billhost::auth::Caller::superuser(),
        "payment.send",
        billhost::Params::from_pairs([("elid", "1")]),
    );
    assert_eq!(error_type(&doc), "value");
    let Doc::Error(e) = &doc else { unreachable!() };
    assert!(e.msg.contains("SMTP"), "{}", e.msg);
    assert_eq!(fx.dump(), before);
    assert_eq!(outbox_count(&fx.dir.db()), 0);
    assert!(server.received().is_empty());
}

// ------------------------------------------------------------------ tickets

#[test]
fn tickets_notify_the_client_and_stay_with_their_client() {
    let server = SmtpServer::start();
    let fx = fixture("inv-tickets", smtp_settings(server.addr));
    invoice_setup(&fx);
    let bob = fx.register("bob@example.com");

    let t1 = id_of(&fx.ok(
        "ticket.write.account",
        &[
            ("elid", "1"),
            ("sok", "ok"),
            ("subject", "Welcome"),
            ("message", "Привет, Иван!"),
        ],
    ));
    let t2 = id_of(&fx.ok(
        "ticket.write.payment",
        &[
            ("elid", "1"),
            ("sok", "ok"),
            ("subject", "Your invoice"),
            ("message", "Paid?"),
        ],
    ));
    let t3 = id_of(&fx.ok(
        "ticket.write.account",
        &[
            ("elid", &bob.to_string()),
            ("sok", "ok"),
            ("subject", "Hi Bob"),
            ("message", "Hello"),
        ],
    ));

    // Each is stored with its link.
    let all = fx.ok("ticket", &[]);
    let ids = column(&all, "id");
    let payments = column(&all, "payment");
    let accounts = column(&all, "account");
    let row = |t: i64| {
        ids.iter()
            .position(|i| *i == t.to_string())
            .expect("ticket listed")
    };
    assert_eq!(accounts[row(t1)], "1");
    assert_eq!(payments[row(t2)], "1");
    assert_eq!(accounts[row(t3)], bob.to_string());

    // And notified through the outbox.
    let outbox = fx.ok("outbox", &[]);
    let mut to = column(&outbox, "to");
    to.sort();
    assert_eq!(
        to,
        ["bob@example.com", "ivan@example.com", "ivan@example.com"]
    );
    let report = mail::deliver_due(&fx.engine, &smtp_of(&fx), billhost::clock::unix_now());
    assert_eq!(report.sent.len(), 3, "{report:?}");
    let got = server.received();
    assert_eq!(got.len(), 3);
    assert!(
        got.iter()
            .any(|m| header(m, "To").contains("bob@example.com")
                && header(m, "Subject").contains(&format!("[Ticket #{t3}] Hi Bob"))),
        "{got:?}"
    );

    // A client user lists and reads its own tickets, and no other client's.
    let ivan = Some("ivan@example.com");
    let own = fx.call_as(ivan, "ticket", &[]);
    let mut own_ids = column(&own, "id");
    own_ids.sort();
    let mut want = vec![t1.to_string(), t2.to_string()];
    want.sort();
    assert_eq!(own_ids, want);
    let filtered = fx.call_as(
        ivan,
        "ticket",
        &[("filter", "on"), ("account", &bob.to_string())],
    );
    assert!(column(&filtered, "id").is_empty());
    let messages = fx.call_as(ivan, "ticket.message", &[("plid", &t1.to_string())]);
    assert_eq!(column(&messages, "message"), ["Привет, Иван!"]);
    let other = fx.call_as(ivan, "ticket.message", &[("plid", &t3.to_string())]);
    assert_eq!(error_type(&other), "access");
    let other = fx.call_as(ivan, "ticket.message", &[("elid", &t3.to_string())]);
    assert_eq!(error_type(&other), "access");
    let other = fx.call_as(ivan, "ticket", &[("plid", &bob.to_string())]);
    assert_eq!(error_type(&other), "access");
    // Writing tickets and reading the outbox is staff's.
    let write = fx.call_as(
        ivan,
        "ticket.write.account",
        &[
            ("elid", "1"),
            ("sok", "ok"),
            ("subject", "x"),
            ("message", "y"),
        ],
    );
    assert_eq!(error_type(&write), "access");
    assert_eq!(error_type(&fx.call_as(ivan, "outbox", &[])), "access");
}

// ------------------------------------------------------------------ front ends

#[test]
fn file_documents_in_the_document_formats() {
    use billhost::wire::Format;
    let doc = Doc::File(billhost::doc::FileDoc {
        name: "invoice-7.pdf".into(),
        mime: "application/pdf".into(),
        bytes: b"%PDF-1.7".to_vec(),
        attachment: true,
    });
    assert_eq!(
        common::render(&doc, Format::Xml, "payment.print.pdf"),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<doc func=\"payment.print.pdf\" lang=\"en\">\
         <file name=\"invoice-7.pdf\" mime=\"application/pdf\" size=\"8\">JVBERi0xLjc=</file></doc>\n"
    );
    assert_eq!(
        common::render(&doc, Format::Sjson, "payment.print.pdf"),
        "{\"doc\":{\"file\":{\"$name\":\"invoice-7.pdf\",\"$mime\":\"application/pdf\",\"$size\":\"8\",\"$\":\"JVBERi0xLjc=\"}}}\n"
    );
    assert_eq!(
        common::render(&doc, Format::Text, "payment.print.pdf"),
        "file=invoice-7.pdf mime=application/pdf size=8\n"
    );
}

#[test]
fn over_http_the_pdf_is_a_download() {
    let fx = fixture("inv-http", Config::default());
    invoice_setup(&fx);
    let Fixture { dir, engine } = fx;
    let server = Serving::start(Arc::new(engine), Default::default(), 512);
    let addr = server.addr;
    let get = |query: &str| -> (String, Vec<u8>) {
        let mut s = TcpStream::connect(addr).expect("connect");
        write!(
            s,
            "GET /billmgr?{query} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .expect("request");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("response");
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("headers");
        (
            String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase(),
            raw[split + 4..].to_vec(),
        )
    };
    // The local superuser is not an HTTP caller: log in as the client.
    let (head, body) = get("func=payment.print.pdf&elid=1&authinfo=ivan@example.com:Secret123");
    let pdf_head = head.clone();
    assert!(head.contains("content-type: application/pdf"), "{head}");
    assert!(
        head.contains("content-disposition: attachment; filename=\"invoice-inv-"),
        "{head}"
    );
    assert!(
        body.starts_with(b"%PDF-"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_invoice_text(&pdf_text(dir.path(), &body));
    let (head, body) = get("func=payment.print&elid=1&authinfo=ivan@example.com:Secret123");
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(head.contains("content-disposition: inline"), "{head}");
    for h in [&head, &pdf_head] {
        assert!(h.contains("x-content-type-options: nosniff"), "{h}");
        let csp = h
            .lines()
            .find_map(|l| l.strip_prefix("content-security-policy: "))
            .unwrap_or_else(|| panic!("no policy: {h}"));
        for part in ["default-src 'none'", "frame-ancestors 'none'", "sandbox"] {
            assert!(csp.contains(part), "{csp}");
        }
        assert!(!csp.contains("script-src"), "{csp}");
    }
    assert_invoice_text(&html_text(&String::from_utf8_lossy(&body)));
    // An error is still a document.
    let (head, body) = get("func=payment.print.pdf&elid=999&authinfo=ivan@example.com:Secret123");
    assert!(head.contains("text/xml"), "{head}");
    assert!(String::from_utf8_lossy(&body).contains("<error"));
}

/// The binary on `db` (a SQLite file or a PostgreSQL URL), with no scripts (`dir/no-scripts`)
/// and the configuration file, if any, of the environment given.
fn billhost(db: &Path, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_billhost"))
        .arg("--db")
        .arg(db)
        .args(args)
        .env("BILLHOST_SCRIPTS", dir.join("no-scripts"))
        .env_remove("BILLHOST_CONFIG")
        .env_remove("BILLHOST_DB")
        .envs(env.iter().copied())
        .output()
        .expect("run billhost");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

backends! {
fn the_cli_writes_the_pdf_and_mails_after_the_commit(backend) {
    let server = SmtpServer::start();
    let fx = fixture_on(&backend, "inv-cli", Config::default());
    invoice_setup(&fx);
    let db = fx.db().to_path_buf();
    let dir = fx.dir.path();
    drop(fx.engine);

    let out = dir.join("out.pdf");
    let (code, _, err) = billhost(
        &db,
        dir,
        &[
            "call",
            "payment.print.pdf",
            "elid=1",
            "--output",
            out.to_str().expect("path"),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let bytes = std::fs::read(&out).expect("pdf written");
    assert_invoice_text(&pdf_text(dir, &bytes));
    // Without --output the document describes the file.
    let (code, text, _) = billhost(
        &db,
        dir,
        &["call", "payment.print.pdf", "elid=1", "--out", "text"],
        &[],
    );
    assert_eq!(code, 0);
    assert!(
        text.starts_with("file=invoice-INV-") && text.contains("mime=application/pdf"),
        "{text}"
    );

    // No SMTP settings: an error, nothing queued.
    let (code, _, _) = billhost(&db, dir, &["call", "payment.send", "elid=1"], &[]);
    assert_eq!(code, 1);
    assert_eq!(outbox_count(&db), 0);

    // billhost.toml beside a SQLite database (a URL has no folder: `--config` names it), the
    // port from the environment.
    let toml = dir.join("billhost.toml");
    std::fs::write(
        &toml,
        "[smtp]\nhost = \"127.0.0.1\"\nport = 1\nfrom = \"billing@example.com\"\n",
    )
    .expect("config");
    let port = server.addr.port().to_string();
    let mut env = vec![("BILLHOST_SMTP_PORT", port.as_str())];
    if backend.is_postgres() {
        env.push(("BILLHOST_CONFIG", toml.to_str().expect("utf-8 path")));
    }
    let (code, _, err) = billhost(&db, dir, &["call", "payment.send", "elid=1"], &env);
    assert_eq!(code, 0, "{err}");
    // Sent by the same process right after its commit.
    assert_eq!(server.received().len(), 1, "{err}");
    let (code, out, _) = billhost(&db, dir, &["deliver"], &env);
    assert_eq!((code, out.as_str()), (0, ""));
    assert_eq!(server.received().len(), 1);

    // What another process queued (an engine that only queues) goes out with `billhost deliver`,
    // once.
    {
        let mut config = EngineConfig::new(&db);
        config.settings = smtp_settings(server.addr);
        let engine = Engine::open(config).expect("engine");
        let queued = engine.call(
            &billhost::auth::Caller::superuser(),
            "payment.send",
            billhost::Params::from_pairs([("elid", "1")]),
        );
        assert!(!queued.is_error(), "{queued:?}");
    }
    assert_eq!(server.received().len(), 1);
    let (code, out, err) = billhost(&db, dir, &["deliver"], &env);
    assert_eq!((code, out.as_str()), (0, "outbox 2: sent\n"), "{err}");
    let got = server.received();
    assert_eq!(got.len(), 2);
    assert_invoice_text(&pdf_text(dir, &attachment_of(&got[1])));
    let (code, out, _) = billhost(&db, dir, &["deliver"], &env);
    assert_eq!((code, out.as_str()), (0, ""));
    assert_eq!(server.received().len(), 2);
}
}
