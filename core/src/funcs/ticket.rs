//! Tickets to clients: `ticket.write.account` stores one with its first message and emails the
//! client about it through the outbox; `ticket.add` is a client's own new ticket and
//! `ticket.reply` adds a message to a ticket (a client only to its own); `ticket` lists them (a client user sees its own) and
//! `ticket.message` lists a ticket's messages (a client user only those of its own tickets).

use super::{ACCOUNT, TICKET};
use crate::doc::Doc;
use crate::error::FuncResult;
use crate::func::{Access, ActionMode, FuncDecl, Param, Registry, Ty};
use crate::list::{FilterField, FilterOp, ListSpec};
use crate::params::parse_id;
use crate::store::params;

pub fn register(reg: &mut Registry) {
    reg.add(
        FuncDecl::action(
            "ticket.write.account",
            "Send a ticket to this client",
            Access::ADMIN,
            ActionMode::FormThenWrite,
            |ctx, p| {
                let account = parse_id("elid", p.required("elid")?)?;
                let id = write_ticket(
                    ctx,
                    account,
                    None,
                    p.required("subject")?,
                    p.required("message")?,
                )?;
                Ok(Doc::created(id))
            },
        )
        .object(ACCOUNT)
        .params(ticket_params()),
    );

    reg.add(
        FuncDecl::action(
            "ticket.add",
            "Write to support",
            Access {
                admin: false,
                user: true,
                public: false,
            },
            ActionMode::FormThenWrite,
            |ctx, p| {
                let account = ctx.caller.account_id.ok_or_else(|| {
                    crate::error::FuncError::access("ticket.add", "No client account")
                })?;
                let id = write_ticket(
                    ctx,
                    account,
                    None,
                    p.required("subject")?,
                    p.required("message")?,
                )?;
                Ok(Doc::created(id))
            },
        )
        .params(ticket_params()),
    );
    reg.add(
        FuncDecl::action(
            "ticket.reply",
            "Reply",
            Access::ADMIN_USER,
            ActionMode::FormThenWrite,
            |ctx, p| {
                let ticket = parse_id("elid", p.required("elid")?)?;
                let message = p.required("message")?;
                ctx.db
                    .prepare_cached(
                        "INSERT INTO ticket_message (ticket_id, author, body, created)
                         VALUES (?1, ?2, ?3, ?4)",
                    )?
                    .execute(params![ticket, ctx.caller.history_name(), message, ctx.now])?;
                let id = ctx.db.last_insert_rowid()?;
                ctx.history("ticket", ticket, "reply")?;
                Ok(Doc::created(id))
            },
        )
        .object(TICKET)
        .params(vec![Param::new("message", Ty::LongText(65_536)).required()]),
    );

    let mut tickets = ListSpec::new(
        "ticket t",
        "t.id",
        &[
            ("id", "t.id"),
            ("subject", "t.subject"),
            ("account", "t.account_id"),
            (
                "account_name",
                "(SELECT name FROM account WHERE id = t.account_id)",
            ),
            ("payment", "t.payment_id"),
            ("status", "t.status"),
            ("created", "t.created"),
            (
                "messages",
                "(SELECT count(*) FROM ticket_message m WHERE m.ticket_id = t.id)",
            ),
        ],
    );
    tickets.owner = Some("t.account_id");
    tickets.parent = Some("t.account_id");
    tickets.descending = true;
    tickets.filters = vec![
        FilterField::new("account", "t.account_id", FilterOp::EqInt),
        FilterField::new("payment", "t.payment_id", FilterOp::EqInt),
        FilterField::new("subject", "t.subject", FilterOp::Like),
        FilterField::new("status", "t.status", FilterOp::EqText),
    ];
    reg.add(
        FuncDecl::list("ticket", "Tickets", Access::ADMIN_USER, tickets)
            .parent(ACCOUNT, false)
            .panel(crate::func::PanelHints {
                row_func: Some("ticket.message"),
                columns_first: &[
                    "id",
                    "subject",
                    "account_name",
                    "status",
                    "created",
                    "messages",
                ],
                hidden: &["account", "payment"],
                ..Default::default()
            }),
    );

    let mut messages = ListSpec::new(
        "ticket_message m",
        "m.id",
        &[
            ("id", "m.id"),
            ("author", "m.author"),
            ("created", "m.created"),
            ("message", "m.body"),
        ],
    );
    messages.owner = Some("(SELECT account_id FROM ticket WHERE id = m.ticket_id)");
    messages.parent = Some("m.ticket_id");
    reg.add(
        FuncDecl::list(
            "ticket.message",
            "Ticket messages",
            Access::ADMIN_USER,
            messages,
        )
        .parent(TICKET, true),
    );
}

pub fn ticket_params() -> Vec<Param> {
    vec![
        Param::new("subject", Ty::Text(255)).required(),
        Param::new("message", Ty::LongText(65_536)).required(),
    ]
}

/// Stores a ticket with its first message, written by the caller, and its history; queues an
/// email to the client (when it has an email address) in the same transaction. The email waits
/// in the outbox until an SMTP server is configured.
pub fn write_ticket(
    ctx: &crate::engine::Ctx,
    account: i64,
    payment: Option<i64>,
    subject: &str,
    message: &str,
) -> FuncResult<i64> {
    ctx.db
        .prepare_cached(
            "INSERT INTO ticket (account_id, payment_id, subject, created) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![account, payment, subject, ctx.now])?;
    let id = ctx.db.last_insert_rowid()?;
    ctx.db
        .prepare_cached(
            "INSERT INTO ticket_message (ticket_id, author, body, created) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![id, ctx.caller.history_name(), message, ctx.now])?;
    ctx.history(
        "ticket",
        id,
        format!("ticket '{subject}' to client {account}"),
    )?;
    if let Some(payment) = payment {
        ctx.history(
            "payment",
            payment,
            format!("ticket {id} '{subject}' sent to the client"),
        )?;
    }
    let email: String = ctx
        .db
        .prepare_cached("SELECT email FROM account WHERE id = ?1")?
        .query_row([account], |r| r.get(0))?;
    if crate::engine::valid_email(&email) {
        let body = format!(
            "{message}\n\n-- \nTicket #{id}. Log in to your account to read and answer it.\n"
        );
        crate::outbox::queue(
            ctx,
            &crate::outbox::NewMessage {
                account: Some(account),
                payment,
                ticket: Some(id),
                recipient: &email,
                subject: &format!("[Ticket #{id}] {subject}"),
                body: &body,
                attachment: None,
            },
        )?;
    }
    Ok(id)
}
