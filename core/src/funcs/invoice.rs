//! Invoices and the outbox: `payment.print` (the printable HTML invoice), `payment.print.pdf`
//! (the PDF, a download), `payment.send` (emails the PDF through the outbox), and the outbox's
//! funcs: `outbox` (every message with its state), `outbox.attempt` (a message's attempts) and
//! `outbox.retry` (queues failed messages again).
//!
//! Choices where the spec is silent: the print funcs and `payment.send` are open to client
//! users for their own payments (a client panel prints and re-sends its invoices); the email
//! goes to the client's email address.

use super::{OUTBOX, PAYMENT};
use crate::doc::{Doc, FileDoc};
use crate::engine::Ctx;
use crate::error::{FuncError, FuncResult};
use crate::func::{Access, ActionMode, FuncDecl, Registry};
use crate::invoice::{self, Invoice};
use crate::list::{FilterField, FilterOp, ListSpec};
use crate::outbox::{self, NewMessage};
use crate::params::{Params, parse_id};

pub fn register(reg: &mut Registry) {
    reg.add(
        FuncDecl::action(
            "payment.print",
            "Show printable information about this payment",
            Access::ADMIN_USER,
            ActionMode::Read,
            |ctx, p| {
                let inv = invoice::load(ctx.db, elid(p)?)?;
                let html = invoice::html::render(&inv, &ctx.engine().config().templates())?;
                Ok(Doc::File(FileDoc {
                    name: inv.file_name("html"),
                    mime: "text/html; charset=UTF-8".into(),
                    bytes: html.into_bytes(),
                    attachment: false,
                }))
            },
        )
        .object(PAYMENT),
    );
    reg.add(
        FuncDecl::action(
            "payment.print.pdf",
            "Download this document in PDF",
            Access::ADMIN_USER,
            ActionMode::Read,
            |ctx, p| {
                let inv = invoice::load(ctx.db, elid(p)?)?;
                Ok(Doc::File(pdf_file(ctx, &inv)?))
            },
        )
        .object(PAYMENT),
    );
    reg.add(FuncDecl::group(
        "payment.send",
        "Send invoice over email",
        Access::ADMIN_USER,
        PAYMENT,
        send,
    ));

    let mut messages = ListSpec::new(
        "outbox o",
        "o.id",
        &[
            ("id", "o.id"),
            ("to", "o.recipient"),
            ("subject", "o.subject"),
            ("status", "o.status"),
            ("attempts", "o.attempts"),
            ("last_error", "o.last_error"),
            ("next_attempt", "o.next_attempt"),
            ("created", "o.created"),
            ("sent", "o.sent"),
            ("account", "o.account_id"),
            ("payment", "o.payment_id"),
            ("ticket", "o.ticket_id"),
            ("attachment", "o.attachment_name"),
        ],
    );
    messages.descending = true;
    messages.filters = vec![
        FilterField::new("status", "o.status", FilterOp::EqText),
        FilterField::new("account", "o.account_id", FilterOp::EqInt),
        FilterField::new("payment", "o.payment_id", FilterOp::EqInt),
        FilterField::new("to", "o.recipient", FilterOp::Like),
    ];
    reg.add(FuncDecl::list(
        "outbox",
        "Outgoing email",
        Access::ADMIN,
        messages,
    ));

    let mut attempts = ListSpec::new(
        "outbox_attempt t",
        "t.id",
        &[
            ("id", "t.id"),
            ("attempted", "t.attempted"),
            ("outcome", "t.outcome"),
            ("error", "t.error"),
        ],
    );
    attempts.parent = Some("t.outbox_id");
    reg.add(
        FuncDecl::list(
            "outbox.attempt",
            "Delivery attempts of a message",
            Access::ADMIN,
            attempts,
        )
        .parent(OUTBOX, true),
    );
    reg.add(FuncDecl::group(
        "outbox.retry",
        "Queue failed messages again",
        Access::ADMIN,
        OUTBOX,
        |ctx, id, _| {
            let n = ctx
                .db
                .prepare_cached(
                    "UPDATE outbox SET status = 'queued', attempts = 0, next_attempt = ?2
                     WHERE id = ?1 AND status = 'failed'",
                )?
                .execute(crate::store::params![id, ctx.now])?;
            if n == 0 {
                return Err(FuncError::value(
                    "elid",
                    id.to_string(),
                    format!("The message {id} has not failed"),
                ));
            }
            ctx.engine().mail_signal().notify();
            ctx.history("outbox", id, "queued again")
        },
    ));
}

fn elid(p: &Params) -> FuncResult<i64> {
    parse_id("elid", p.required("elid")?)
}

fn pdf_file(ctx: &Ctx, inv: &Invoice) -> FuncResult<FileDoc> {
    let bytes = invoice::pdf::render(inv, &ctx.engine().config().templates())?;
    Ok(FileDoc {
        name: inv.file_name("pdf"),
        mime: "application/pdf".into(),
        bytes,
        attachment: true,
    })
}

/// Queues the invoice of payment `id` with its PDF for the client's email address.
fn send(ctx: &Ctx, id: i64, _p: &Params) -> FuncResult<()> {
    ctx.engine()
        .config()
        .settings
        .smtp()
        .map_err(|msg| FuncError::value("smtp", "", format!("Email cannot be sent: {msg}")))?;
    let inv = invoice::load(ctx.db, id)?;
    if inv.payer.email.is_empty() {
        return Err(FuncError::value(
            "email",
            "",
            format!("The client of payment {id} has no email address"),
        ));
    }
    let pdf = pdf_file(ctx, &inv)?;
    let subject = format!("Invoice {} from {}", inv.number, inv.provider.name);
    let body = format!(
        "Hello {},\n\nplease find attached invoice {} of {} for {} {}.\n\n{}\n",
        inv.payer.name, inv.number, inv.date, inv.total, inv.currency, inv.provider.name
    );
    let message = outbox::queue(
        ctx,
        &NewMessage {
            account: Some(inv.account),
            payment: Some(id),
            ticket: None,
            recipient: &inv.payer.email,
            subject: &subject,
            body: &body,
            attachment: Some(outbox::Attachment {
                name: &pdf.name,
                mime: &pdf.mime,
                bytes: &pdf.bytes,
            }),
        },
    )?;
    ctx.history(
        "payment",
        id,
        format!(
            "invoice {} queued for {} (outbox {message})",
            inv.number, inv.payer.email
        ),
    )
}
