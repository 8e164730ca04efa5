//! Delivery of the outbox through SMTP (lettre): an adapter like `server`, the only other
//! place that talks to the network. Each message is claimed in a short write transaction,
//! sent with no transaction open, and its outcome recorded in another (see `outbox`).
//!
//! Who delivers: the process that queued a message, right after its func committed (the CLI's
//! `call`, best effort), the server's [`Deliverer`] thread (woken when a func queues mail, and
//! every `period` for retries), and `billhost deliver` (for cron).

use crate::clock;
use crate::config::SmtpConfig;
use crate::engine::Engine;
use crate::outbox::{self, Claimed};
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, Message, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{SmtpTransport, Transport};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Most messages one delivery run sends, so that a run always ends.
const MAX_PER_RUN: usize = 1000;

/// What one delivery run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub sent: Vec<i64>,
    /// Messages that failed this time and wait for a retry, with the error.
    pub deferred: Vec<(i64, String)>,
    /// Messages given up (`failed`), with the error.
    pub failed: Vec<(i64, String)>,
    /// Failures of the run itself (the database), not of a message.
    pub errors: Vec<String>,
}

/// Sends every message due at `now` (unix seconds), oldest first. A run stops at the first
/// temporary failure (the server is down or busy: the next messages would only wait for their
/// timeouts); they stay due for the next run.
pub fn deliver_due(engine: &Engine, smtp: &SmtpConfig, now: i64) -> Report {
    deliver_some(engine, smtp, now, MAX_PER_RUN)
}

/// Like [`deliver_due`], at most `max` messages (what the CLI does after a call).
pub fn deliver_some(engine: &Engine, smtp: &SmtpConfig, now: i64, max: usize) -> Report {
    let mut report = Report::default();
    let transport = transport(smtp);
    for _ in 0..max.min(MAX_PER_RUN) {
        let claimed = match engine.write(|c| outbox::claim_next(c, now)) {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(e) => {
                report.errors.push(e.to_string());
                break;
            }
        };
        // No transaction is open here: the claim is committed.
        let outcome = build(smtp, &claimed).and_then(|message| {
            transport
                .send(&message)
                .map(|_| ())
                .map_err(|e| (e.to_string(), e.is_permanent()))
        });
        let recorded = match &outcome {
            Ok(()) => engine
                .write(|c| outbox::record_sent(c, &claimed, clock::unix_now().max(now)))
                .map(|_| "sent"),
            Err((error, permanent)) => {
                engine.write(|c| outbox::record_failure(c, &claimed, now, error, *permanent))
            }
        };
        match (recorded, outcome) {
            (Ok("sent"), _) => report.sent.push(claimed.id),
            (Ok("failed"), Err((e, _))) => report.failed.push((claimed.id, e)),
            (Ok(_), Err((e, _))) => {
                report.deferred.push((claimed.id, e));
                break;
            }
            (Ok(_), Ok(())) => report.sent.push(claimed.id),
            (Err(e), _) => {
                // The lease will give the message back; it may then be sent again.
                report
                    .errors
                    .push(format!("outbox {}: outcome not recorded: {e}", claimed.id));
                break;
            }
        }
    }
    report
}

fn transport(smtp: &SmtpConfig) -> SmtpTransport {
    let mut builder = SmtpTransport::builder_dangerous(smtp.host.as_str())
        .port(smtp.port)
        .timeout(Some(Duration::from_secs(smtp.timeout_secs)));
    if let Some((user, pass)) = &smtp.credentials {
        builder = builder.credentials(Credentials::new(user.clone(), pass.clone()));
    }
    builder.build()
}

/// The MIME message of a claimed outbox row. Its `Message-ID` is derived from the row, the
/// same on every attempt, so that a receiver can drop a duplicate.
fn build(smtp: &SmtpConfig, m: &Claimed) -> Result<Message, (String, bool)> {
    let from: Mailbox = smtp
        .from
        .parse()
        .map_err(|e| (format!("from address '{}': {e}", smtp.from), false))?;
    let to: Mailbox = m
        .recipient
        .parse()
        .map_err(|e| (format!("recipient '{}': {e}", m.recipient), true))?;
    let stamp: String = m.created.chars().filter(char::is_ascii_digit).collect();
    let message_id = format!("<outbox.{}.{stamp}@{}>", m.id, from.email.domain());
    let builder = Message::builder()
        .from(from)
        .to(to)
        .subject(m.subject.as_str())
        .message_id(Some(message_id));
    let text = SinglePart::plain(m.body.clone());
    let built = match &m.attachment {
        None => builder.singlepart(text),
        Some((name, mime, bytes)) => {
            let content_type = ContentType::parse(mime)
                .map_err(|e| (format!("attachment type '{mime}': {e}"), true))?;
            builder.multipart(
                MultiPart::mixed()
                    .singlepart(text)
                    .singlepart(Attachment::new(name.clone()).body(bytes.clone(), content_type)),
            )
        }
    };
    built.map_err(|e| (format!("the message cannot be built: {e}"), true))
}

/// The server's deliverer: a thread that delivers when a func queued mail, and every `period`
/// (retries). Stops when dropped.
pub struct Deliverer {
    stop: Arc<AtomicBool>,
    engine: Arc<Engine>,
    thread: Option<JoinHandle<()>>,
}

impl Deliverer {
    pub fn spawn(engine: Arc<Engine>, smtp: SmtpConfig, period: Duration) -> Deliverer {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (engine, stop) = (engine.clone(), stop.clone());
            std::thread::Builder::new()
                .name("billhost-mail".into())
                .spawn(move || {
                    let signal = engine.mail_signal();
                    let mut seen = signal.count();
                    while !stop.load(Ordering::SeqCst) {
                        let report = deliver_due(&engine, &smtp, clock::unix_now());
                        log(&report);
                        seen = signal.wait_past(seen, period);
                    }
                })
                .ok()
        };
        Deliverer {
            stop,
            engine,
            thread,
        }
    }
}

impl Drop for Deliverer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.engine.mail_signal().notify();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Says on stderr what went wrong in a run (sent messages are in the outbox list).
pub fn log(report: &Report) {
    for (id, e) in &report.deferred {
        eprintln!("billhost mail: outbox {id}: not sent, will retry: {e}");
    }
    for (id, e) in &report.failed {
        eprintln!("billhost mail: outbox {id}: given up: {e}");
    }
    for e in &report.errors {
        eprintln!("billhost mail: {e}");
    }
}
