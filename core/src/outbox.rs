//! The outbox: email a func wants sent. A func queues a message in its own transaction
//! ([`queue`]); nothing is sent inside a transaction. After the commit a deliverer (`mail`)
//! claims due messages one at a time in a short write transaction ([`claim_next`]), sends
//! through SMTP with no transaction open, then records the outcome in another
//! ([`record_sent`], [`record_failure`]). Every attempt is a row of `outbox_attempt`.
//!
//! A claim is a random token with a lease: two deliverers never hold the same message, and a
//! deliverer that died mid-send gives its messages back when the lease ends. A message is
//! marked sent only after the SMTP server accepted it.
//!
//! This module only reads and writes the database; `mail` does the network part.

use crate::clock;
use crate::engine::Ctx;
use crate::error::{FuncError, FuncResult};
use crate::store::{Connection, OptionalExtension, params};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Seconds to wait after the n-th failed attempt before the next (1 min, 5 min, 15 min, 1 h,
/// 4 h, 12 h, 24 h); after one attempt more than this schedule has entries, the message is
/// `failed`.
pub const RETRY_SCHEDULE: &[i64] = &[60, 300, 900, 3600, 4 * 3600, 12 * 3600, 24 * 3600];
/// Attempts before a message is given up.
pub const MAX_ATTEMPTS: i64 = RETRY_SCHEDULE.len() as i64 + 1;
/// How long a claim holds a message: longer than any SMTP exchange may take.
pub const CLAIM_LEASE_SECS: i64 = 15 * 60;

/// A message a func queues.
#[derive(Debug, Clone, Default)]
pub struct NewMessage<'a> {
    pub account: Option<i64>,
    pub payment: Option<i64>,
    pub ticket: Option<i64>,
    pub recipient: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
    pub attachment: Option<Attachment<'a>>,
}

#[derive(Debug, Clone)]
pub struct Attachment<'a> {
    pub name: &'a str,
    pub mime: &'a str,
    pub bytes: &'a [u8],
}

/// Queues a message in the func's transaction: it is sent only if the func commits.
pub fn queue(ctx: &Ctx, m: &NewMessage) -> FuncResult<i64> {
    if !crate::engine::valid_email(m.recipient) {
        return Err(FuncError::value(
            "email",
            m.recipient,
            format!("'{}' is not an email address mail can go to", m.recipient),
        ));
    }
    ctx.db
        .prepare_cached(
            "INSERT INTO outbox (account_id, payment_id, ticket_id, recipient, subject, body,
                                 attachment_name, attachment_mime, attachment, next_attempt, created)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
        )?
        .execute(params![
            m.account,
            m.payment,
            m.ticket,
            m.recipient,
            m.subject,
            m.body,
            m.attachment.as_ref().map(|a| a.name),
            m.attachment.as_ref().map(|a| a.mime),
            m.attachment.as_ref().map(|a| a.bytes),
            ctx.now,
        ])?;
    let id = ctx.db.last_insert_rowid()?;
    ctx.history(
        "outbox",
        id,
        format!("email '{}' to {} queued", m.subject, m.recipient),
    )?;
    ctx.engine().mail_signal().notify();
    Ok(id)
}

/// A message claimed for one delivery attempt.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    pub claim: String,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    pub attachment: Option<(String, String, Vec<u8>)>,
    pub created: String,
    /// Attempts before this one.
    pub attempts: i64,
}

/// Claims the oldest due message (queued and due, or claimed by a deliverer whose lease ran
/// out) for `CLAIM_LEASE_SECS`. Run it in its own write transaction and commit before sending.
///
/// Deliverers on every server of one database claim through this statement. Writers take turns
/// (SQLite's one writer; PostgreSQL's writers' lock), and the row's due condition is checked
/// again on the row being updated, so that even two claims running at once in PostgreSQL's
/// `READ COMMITTED` (where the second re-reads the row the first changed) cannot both take it.
pub fn claim_next(conn: &Connection, now: i64) -> FuncResult<Option<Claimed>> {
    let now_text = clock::format_unix(now);
    let until = clock::format_unix(now + CLAIM_LEASE_SECS);
    let claim = random_token()?;
    let row = conn
        .prepare_cached(
            "UPDATE outbox SET status = 'sending', claim = ?3, claimed_until = ?2
             WHERE id = (SELECT id FROM outbox
                         WHERE (status = 'queued' AND next_attempt <= ?1)
                            OR (status = 'sending' AND claimed_until <= ?1)
                         ORDER BY id LIMIT 1)
               AND ((status = 'queued' AND next_attempt <= ?1)
                    OR (status = 'sending' AND claimed_until <= ?1))
             RETURNING id, recipient, subject, body, attachment_name, attachment_mime, attachment,
                       created, attempts",
        )?
        .query_row(params![now_text, until, claim], |r| {
            let attachment = match (
                r.get::<Option<String>>(4)?,
                r.get::<Option<String>>(5)?,
                r.get::<Option<Vec<u8>>>(6)?,
            ) {
                (Some(n), Some(m), Some(b)) => Some((n, m, b)),
                _ => None,
            };
            Ok(Claimed {
                id: r.get(0)?,
                claim: claim.clone(),
                recipient: r.get(1)?,
                subject: r.get(2)?,
                body: r.get(3)?,
                attachment,
                created: r.get(7)?,
                attempts: r.get(8)?,
            })
        })
        .optional()?;
    Ok(row)
}

/// Records that the SMTP server accepted the claimed message. Answers false when the claim was
/// no longer held (the lease ran out and another deliverer took the message).
pub fn record_sent(conn: &Connection, m: &Claimed, now: i64) -> FuncResult<bool> {
    let now_text = clock::format_unix(now);
    let n = conn
        .prepare_cached(
            "UPDATE outbox SET status = 'sent', sent = ?3, attempts = attempts + 1, last_error = '',
                    claim = NULL, claimed_until = NULL
             WHERE id = ?1 AND claim = ?2 AND status = 'sending'",
        )?
        .execute(params![m.id, m.claim, now_text])?;
    attempt(conn, m.id, &now_text, "sent", "")?;
    Ok(n > 0)
}

/// Records a failed attempt: the message waits for its next attempt by the retry schedule, or
/// is `failed` after the last one (`permanent` gives up at once). Answers the new status.
pub fn record_failure(
    conn: &Connection,
    m: &Claimed,
    now: i64,
    error: &str,
    permanent: bool,
) -> FuncResult<&'static str> {
    let now_text = clock::format_unix(now);
    let attempts = m.attempts + 1;
    let (status, next) = match RETRY_SCHEDULE.get(attempts as usize - 1) {
        Some(wait) if !permanent => ("queued", clock::format_unix(now + wait)),
        _ => ("failed", now_text.clone()),
    };
    conn.prepare_cached(
        "UPDATE outbox SET status = ?3, attempts = ?4, last_error = ?5, next_attempt = ?6,
                claim = NULL, claimed_until = NULL
         WHERE id = ?1 AND claim = ?2 AND status = 'sending'",
    )?
    .execute(params![m.id, m.claim, status, attempts, error, next])?;
    attempt(conn, m.id, &now_text, "error", error)?;
    Ok(status)
}

fn attempt(conn: &Connection, id: i64, now: &str, outcome: &str, error: &str) -> FuncResult<()> {
    conn.prepare_cached(
        "INSERT INTO outbox_attempt (outbox_id, attempted, outcome, error) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![id, now, outcome, error])?;
    Ok(())
}

fn random_token() -> FuncResult<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| FuncError::internal(format!("randomness: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Tells deliverers in this process that a func queued mail. A count rather than a flag, so
/// that a front end can tell whether a call queued anything.
#[derive(Debug, Default)]
pub struct MailSignal {
    queued: Mutex<u64>,
    changed: Condvar,
}

impl MailSignal {
    pub fn notify(&self) {
        let mut n = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        self.changed.notify_all();
    }

    /// Messages queued in this process so far (including ones whose func was rolled back).
    pub fn count(&self) -> u64 {
        *self.queued.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until the count passes `seen` or `timeout` elapses; answers the count.
    pub fn wait_past(&self, seen: u64, timeout: Duration) -> u64 {
        let n = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        let (n, _) = self
            .changed
            .wait_timeout_while(n, timeout, |n| *n <= seen)
            .unwrap_or_else(|e| e.into_inner());
        *n
    }
}
