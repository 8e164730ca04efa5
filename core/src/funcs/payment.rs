//! Payments: `payment.edit`, `payment.add`, `payment.setpaid`, `payment.delete`,
//! `payment.refund`, what a payment pays (`payment.expense` with `.edit` and `.delete`), its
//! invoice lines (`payment.orderinfo` with `.edit`) and `ticket.write.payment`. The money rules
//! are `ledger`'s; these funcs parse, check ownership and write the descriptive fields.
//!
//! Choices where the spec is silent: `payment.delete` cancels (status 9) a new payment instead
//! of destroying the row; money fields of a payment (method, amounts, commission) change only
//! while it is new or in progress; `payment.expense.delete` frees the allocation without paying
//! the expense again from other funds (the next payment or expense does).

use super::ticket::{ticket_params, write_ticket};
use super::{ACCOUNT, EXPENSE, ORDERINFO, PAYMENT, PAYMETHOD, on_off, opt_id, set_column};
use crate::doc::{Doc, Fields};
use crate::engine::Ctx;
use crate::error::{FuncError, FuncResult};
use crate::func::{Access, ActionMode, EditOps, FuncDecl, Param, Registry, Ty};
use crate::invoice;
use crate::ledger::{self, GivenAmount, status};
use crate::list::{FilterField, FilterOp, ListSpec};
use crate::money;
use crate::params::{Params, parse_id};
use crate::store::{OptionalExtension, params};

pub fn register(reg: &mut Registry) {
    reg.add(
        FuncDecl::edit(
            "payment.edit",
            "Payment properties",
            Access::ADMIN,
            PaymentEdit,
        )
        .object(PAYMENT)
        .parent(ACCOUNT, false)
        .params(payment_params())
        .refuses(&[
            (
                "usedamount",
                "it is what the expenses the payment pays take of it (payment.expense)",
            ),
            (
                "taxamount_readonly",
                "the tax is computed from the amount and the provider's tax rules",
            ),
            (
                "status",
                "a payment's status changes through payment.setpaid, payment.delete and payment.refund",
            ),
        ]),
    );
    reg.add(
        FuncDecl::action(
            "payment.add",
            "Add",
            Access::ADMIN_USER,
            ActionMode::FormThenWrite,
            add,
        )
        .parent(ACCOUNT, false)
        .params(vec![
            Param::new("paymethod", Ty::Ref(PAYMETHOD))
                .required()
                .label("Payment method")
                .source("payment.add.methods", "name"),
            Param::new("amount", Ty::Decimal).required(),
        ]),
    );
    // `payment.setpaid` is with the other state changes in `payment_api`.
    reg.add(FuncDecl::group(
        "payment.delete",
        "Delete the selected payments. Only \"Unpaid\" payments can be deleted",
        Access::ADMIN,
        PAYMENT,
        delete,
    ));
    reg.add(
        FuncDecl::edit("payment.refund", "Refund", Access::ADMIN, RefundEdit)
            .object(PAYMENT)
            .parent(ACCOUNT, false)
            .params(vec![
                Param::new("amount", Ty::Decimal).required(),
                Param::new("description", Ty::Text(1000)),
            ]),
    );

    let mut allocations = ListSpec::new(
        "(SELECT min(id) AS id, payment_id, expense_id, sum(amount) AS amount FROM payment_expense
          WHERE released = 0 GROUP BY payment_id, expense_id) pe",
        "pe.id",
        &[
            ("id", "pe.expense_id"),
            ("expense", "pe.expense_id"),
            (
                "expense_locale_name",
                "(SELECT name FROM expense WHERE id = pe.expense_id)",
            ),
            (
                "amount_iso",
                "(SELECT money(pe.amount, c.minor_units) || ' ' || c.iso FROM payment y
                  JOIN subaccount s ON s.id = y.subaccount_id JOIN currency c ON c.id = s.currency_id
                  WHERE y.id = pe.payment_id)",
            ),
            ("invoice", "pe.payment_id"),
            (
                "invoice_number",
                "(SELECT number FROM payment WHERE id = pe.payment_id)",
            ),
        ],
    );
    allocations.parent = Some("pe.payment_id");
    allocations.owner = Some("(SELECT account_id FROM payment WHERE id = pe.payment_id)");
    reg.add(
        FuncDecl::list(
            "payment.expense",
            "Payments associated with the expense",
            Access::ADMIN,
            allocations,
        )
        .parent(PAYMENT, true),
    );
    reg.add(
        FuncDecl::edit(
            "payment.expense.edit",
            "Edit",
            Access::ADMIN,
            AllocationEdit,
        )
        .object(EXPENSE)
        .parent(PAYMENT, true)
        .params(vec![
            Param::new("expense", Ty::Ref(EXPENSE)).required(),
            Param::new("amount", Ty::Decimal).required(),
        ]),
    );
    reg.add(
        FuncDecl::group(
            "payment.expense.delete",
            "Delete",
            Access::ADMIN,
            EXPENSE,
            |ctx, expense, p| {
                let payment = parse_id("plid", p.required("plid")?)?;
                let released = ledger::release_allocation(ctx, payment, expense, None)?;
                if released == 0 {
                    return Err(FuncError::value(
                        "elid",
                        expense.to_string(),
                        format!("The payment {payment} does not pay expense {expense}"),
                    ));
                }
                let cur = payment_currency(ctx, payment)?;
                ctx.history(
                    "payment",
                    payment,
                    format!(
                        "no longer pays expense {expense} ({} {} freed)",
                        money::format_minor(released, cur.scale),
                        cur.iso
                    ),
                )
            },
        )
        .parent(PAYMENT, true),
    );

    let mut lines = ListSpec::new(
        "orderinfo o",
        "o.id",
        &[
            ("id", "o.id"),
            ("info", "o.name"),
            (
                "cost",
                "(SELECT money(o.cost, c.minor_units) FROM payment y JOIN subaccount s ON s.id = y.subaccount_id
                  JOIN currency c ON c.id = s.currency_id WHERE y.id = o.payment_id)",
            ),
        ],
    );
    lines.parent = Some("o.payment_id");
    lines.owner = Some("(SELECT account_id FROM payment WHERE id = o.payment_id)");
    lines.filters = vec![FilterField::new("info", "o.name", FilterOp::Like)];
    reg.add(
        FuncDecl::list("payment.orderinfo", "Invoice details", Access::ADMIN, lines)
            .parent(PAYMENT, true),
    );
    reg.add(
        FuncDecl::edit(
            "payment.orderinfo.edit",
            "Edit the invoice",
            Access::ADMIN,
            OrderinfoEdit,
        )
        .object(ORDERINFO)
        .parent(PAYMENT, true)
        .params(vec![
            Param::new("name", Ty::Text(1000)).required(),
            Param::new("cost", Ty::Decimal),
        ]),
    );

    reg.add(
        FuncDecl::action(
            "ticket.write.payment",
            "Send a ticket to the selected client",
            Access::ADMIN,
            ActionMode::FormThenWrite,
            |ctx, p| {
                let payment = parse_id("elid", p.required("elid")?)?;
                let account = ledger::payment(ctx.db, payment)?.account;
                let id = write_ticket(
                    ctx,
                    account,
                    Some(payment),
                    p.required("subject")?,
                    p.required("message")?,
                )?;
                Ok(Doc::created(id))
            },
        )
        .object(PAYMENT)
        .params(ticket_params()),
    );
}

fn payment_params() -> Vec<Param> {
    vec![
        Param::new("paymethod", Ty::Ref(PAYMETHOD)).required(),
        Param::new("paymethodamount", Ty::Decimal),
        Param::new("subaccountamount", Ty::Decimal),
        Param::new("commissionamount", Ty::Decimal),
        Param::new("number", Ty::Text(64)),
        Param::new("documentnumber", Ty::Text(64)),
        Param::new("createdate", Ty::Date).label("Created"),
        Param::new("paydate", Ty::Date).label("Paid"),
        Param::new("documentdate", Ty::Date),
        Param::new("description", Ty::LongText(1000)),
        Param::new("sender", Ty::Text(255)),
        Param::new("restrictrefund", Ty::Flag),
        Param::new("info", Ty::LongText(4000)),
        Param::new("note", Ty::LongText(4000)),
    ]
}

/// Text columns `payment.edit` copies as given, by parameter name.
const TEXT_COLUMNS: &[&str] = &["documentnumber", "description", "sender", "info", "note"];

fn payment_currency(ctx: &Ctx, payment: i64) -> FuncResult<ledger::Currency> {
    let p = ledger::payment(ctx.db, payment)?;
    ledger::subaccount_currency(ctx.db, p.subaccount)
}

fn ensure_number_free(ctx: &Ctx, project: i64, number: &str, except: i64) -> FuncResult<()> {
    let taken: Option<i64> = ctx
        .db
        .prepare_cached(
            "SELECT id FROM payment WHERE project_id = ?1 AND number = ?2 AND id <> ?3",
        )?
        .query_row(params![project, number, except], |r| r.get(0))
        .optional()?;
    match taken {
        Some(id) => Err(FuncError::exists(
            "number",
            number,
            format!("Payment {id} already has the number '{number}'"),
        )),
        None => Ok(()),
    }
}

/// The provider's next invoice number: its `invoice_format` (see `invoice::format_number`)
/// with the next value of `invoice_seq`, taken in the payment's own transaction, so that
/// concurrent payments get distinct consecutive numbers and a rolled-back payment leaves no
/// gap. A number already given by hand is skipped.
fn next_number(ctx: &Ctx, project: i64) -> FuncResult<String> {
    loop {
        let (seq, format): (i64, String) = ctx
            .db
            .prepare_cached(
                "UPDATE project SET invoice_seq = invoice_seq + 1 WHERE id = ?1 RETURNING invoice_seq, invoice_format",
            )?
            .query_row([project], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let number = invoice::format_number(&format, seq, &ctx.now)?;
        let taken: bool = ctx
            .db
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM payment WHERE project_id = ?1 AND number = ?2)",
            )?
            .query_row(params![project, number], |r| r.get(0))?;
        if !taken {
            return Ok(number);
        }
    }
}

/// Creates a new payment (status 1) of the client through the method, priced by the ledger.
fn create_payment(
    ctx: &Ctx,
    account: i64,
    paymethod: i64,
    given: GivenAmount,
    p: Option<&Params>,
) -> FuncResult<i64> {
    crate::funcs::account::refuse_deleted(ctx, account, "plid")?;
    let pm = ledger::paymethod(ctx.db, paymethod)?;
    let sub_id = ledger::active_subaccount(ctx, account, pm.project, pm.currency.id)?;
    let sub = ledger::subaccount(ctx.db, sub_id)?;
    if let Some(p) = p {
        ensure_unused_amount_valid(p, &sub)?;
    }
    let mut amounts = ledger::price_payment(ctx, &sub, &pm, given)?;
    if let Some(c) = p.and_then(|p| p.get("commissionamount")) {
        amounts.commission = parse_commission(c, sub.currency.scale)?;
    }
    let number = match p.and_then(|p| p.get("number")) {
        Some(n) => {
            ensure_number_free(ctx, pm.project, n, 0)?;
            n.to_string()
        }
        None => next_number(ctx, pm.project)?,
    };
    ctx.db
        .prepare_cached(
            "INSERT INTO payment (number, project_id, account_id, subaccount_id, paymethod_id, currency_id, status,
                                  createdate, subaccountamount, paymethodamount, commissionamount, taxamount, rate)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?
        .execute(params![
            number,
            pm.project,
            account,
            sub_id,
            pm.id,
            amounts.currency,
            ctx.now,
            amounts.subaccount,
            amounts.paymethod,
            amounts.commission,
            amounts.tax,
            amounts.rate
        ])?;
    let id = ctx.db.last_insert_rowid()?;
    if let Some(p) = p {
        apply_text(ctx, id, p)?;
    }
    ctx.history(
        "payment",
        id,
        format!(
            "payment {number} created: {} {} through method {} ({} {} to subaccount {sub_id})",
            money::format_minor(amounts.paymethod, pm.currency.scale),
            pm.currency.iso,
            pm.id,
            money::format_minor(amounts.subaccount, sub.currency.scale),
            sub.currency.iso
        ),
    )?;
    Ok(id)
}

fn parse_commission(text: &str, scale: u32) -> FuncResult<i64> {
    let c = money::parse_minor(text, scale, "commissionamount")?;
    if c < 0 {
        return Err(FuncError::value(
            "commissionamount",
            text,
            "The commission cannot be negative",
        ));
    }
    Ok(c)
}

/// The descriptive fields, changeable in any status.
fn apply_text(ctx: &Ctx, id: i64, p: &Params) -> FuncResult<Vec<&'static str>> {
    let mut changed = Vec::new();
    for &col in TEXT_COLUMNS {
        if let Some(v) = p.raw(col)
            && set_column(ctx, "payment", col, id, &v)?
        {
            changed.push(col);
        }
    }
    if let Some(d) = p.raw("documentdate") {
        let v: Option<&str> = if d.is_empty() { None } else { Some(d) };
        if set_column(ctx, "payment", "documentdate", id, &v)? {
            changed.push("documentdate");
        }
    }
    if let Some(d) = p.get("createdate")
        && set_column(ctx, "payment", "createdate", id, &datetime(d))?
    {
        changed.push("createdate");
    }
    if let Some(d) = p.get("paydate") {
        let status: i64 = ctx
            .db
            .prepare_cached("SELECT status FROM payment WHERE id = ?1")?
            .query_row([id], |r| r.get(0))?;
        if !matches!(
            status,
            status::PAID | status::REFUND_PENDING | status::REFUNDED
        ) {
            return Err(FuncError::value(
                "paydate",
                d,
                format!(
                    "The payment {id} is {}: payment.setpaid gives it its pay date",
                    status::name(status)
                ),
            ));
        }
        if set_column(ctx, "payment", "paydate", id, &datetime(d))? {
            changed.push("paydate");
        }
    }
    if let Some(f) = p.flag("restrictrefund")
        && set_column(ctx, "payment", "restrictrefund", id, &f)?
    {
        changed.push("restrictrefund");
    }
    Ok(changed)
}

/// A date given without its time is the start of that day (the columns hold date and time).
fn datetime(d: &str) -> String {
    if d.len() == 10 {
        format!("{d} 00:00:00")
    } else {
        d.to_string()
    }
}

/// `paymethodamount` wins when both amounts are given; the `subaccountamount` given with it
/// must still be a valid amount of the subaccount's currency (it is never ignored silently).
fn ensure_unused_amount_valid(p: &Params, sub: &ledger::Subaccount) -> FuncResult<()> {
    if p.has("paymethodamount")
        && let Some(v) = p.get("subaccountamount")
    {
        money::parse_minor(v, sub.currency.scale, "subaccountamount")?;
    }
    Ok(())
}

fn given_amount(p: &Params) -> Option<GivenAmount<'_>> {
    p.get("paymethodamount")
        .map(GivenAmount::Paymethod)
        .or_else(|| p.get("subaccountamount").map(GivenAmount::Subaccount))
}

struct PaymentEdit;

impl EditOps for PaymentEdit {
    fn view(&self, ctx: &Ctx, elid: i64, _plid: Option<i64>) -> FuncResult<Fields> {
        let p = ledger::payment(ctx.db, elid)?;
        let sub = ledger::subaccount_currency(ctx.db, p.subaccount)?;
        let pm = ledger::currency(ctx.db, p.currency)?;
        let mut stmt = ctx.db.prepare_cached(
            "SELECT createdate, paydate, documentnumber, documentdate, description, sender, taxamount, paymethod_id,
                    info, note, rate, account_id
             FROM payment WHERE id = ?1",
        )?;
        let row = stmt.query_row([elid], |r| {
            Ok((
                r.get::<String>(0)?,
                r.get::<Option<String>>(1)?,
                r.get::<String>(2)?,
                r.get::<Option<String>>(3)?,
                r.get::<String>(4)?,
                r.get::<String>(5)?,
                r.get::<i64>(6)?,
                r.get::<Option<i64>>(7)?,
                r.get::<String>(8)?,
                r.get::<String>(9)?,
                r.get::<String>(10)?,
                r.get::<i64>(11)?,
            ))
        })?;
        let s = |m: i64| money::format_minor(m, sub.scale);
        let f = |k: &'static str, v: String| (k.into(), v);
        Ok(vec![
            f("account", row.11.to_string()),
            f("number", p.number.clone()),
            f("createdate", row.0),
            f("paydate", row.1.unwrap_or_default()),
            f("documentnumber", row.2),
            f("documentdate", row.3.unwrap_or_default()),
            f("description", row.4),
            f("sender", row.5),
            f("subaccountamount", s(p.subaccountamount)),
            f("subaccount_currency", sub.iso.clone()),
            f("usedamount", s(p.usedamount)),
            f("refundedamount", s(p.refundedamount)),
            f(
                "paymethodamount",
                money::format_minor(p.paymethodamount, pm.scale),
            ),
            f("paymethod_currency", pm.iso.clone()),
            f("rate", row.10),
            f("commissionamount", s(p.commissionamount)),
            f("taxamount_readonly", s(row.6)),
            f("status", p.status.to_string()),
            f(
                "paymethod",
                row.7.map(|v| v.to_string()).unwrap_or_default(),
            ),
            f("restrictrefund", on_off(p.restrictrefund)),
            f("info", row.8),
            f("note", row.9),
        ])
    }

    fn blank(&self, _ctx: &Ctx, plid: Option<i64>) -> FuncResult<Fields> {
        let mut form: Fields = vec![(
            "account".into(),
            plid.map(|v| v.to_string()).unwrap_or_default(),
        )];
        form.extend(payment_params().into_iter().map(|p| {
            let default = if p.name == "restrictrefund" {
                "off"
            } else {
                ""
            };
            (p.name.into(), default.to_string())
        }));
        Ok(form)
    }

    fn create(&self, ctx: &Ctx, plid: Option<i64>, p: &Params) -> FuncResult<i64> {
        let account = plid.ok_or_else(|| FuncError::missed_param("plid"))?;
        let paymethod = parse_id("paymethod", p.required("paymethod")?)?;
        let given = given_amount(p).ok_or_else(|| FuncError::missed_param("paymethodamount"))?;
        create_payment(ctx, account, paymethod, given, Some(p))
    }

    fn change(&self, ctx: &Ctx, elid: i64, _plid: Option<i64>, p: &Params) -> FuncResult<()> {
        let current = ledger::payment(ctx.db, elid)?;
        let money_given = [
            "paymethod",
            "paymethodamount",
            "subaccountamount",
            "commissionamount",
        ]
        .iter()
        .find(|k| p.has(k));
        let mut changed: Vec<&str> = Vec::new();
        if let Some(k) = money_given {
            if current.status != status::NEW && current.status != status::IN_PROGRESS {
                return Err(FuncError::value(
                    k,
                    p.get(k).unwrap_or_default(),
                    format!(
                        "The payment {elid} is {}: its amounts can no longer change",
                        status::name(current.status)
                    ),
                ));
            }
            let pm_id: i64 = match opt_id(p, "paymethod")? {
                Some(v) => v,
                None => ctx
                    .db
                    .prepare_cached("SELECT paymethod_id FROM payment WHERE id = ?1")?
                    .query_row([elid], |r| r.get::<Option<i64>>(0))?
                    .ok_or_else(|| FuncError::missed_param("paymethod"))?,
            };
            let pm = ledger::paymethod(ctx.db, pm_id)?;
            let sub = ledger::subaccount(ctx.db, current.subaccount)?;
            if pm.project != sub.project {
                return Err(FuncError::value(
                    "paymethod",
                    pm_id.to_string(),
                    "The payment method belongs to another provider",
                ));
            }
            let pm_cur = ledger::currency(ctx.db, current.currency)?;
            let old_pm = money::format_minor(current.paymethodamount, pm_cur.scale);
            ensure_unused_amount_valid(p, &sub)?;
            let given = given_amount(p).unwrap_or(GivenAmount::Paymethod(&old_pm));
            let mut amounts = ledger::price_payment(ctx, &sub, &pm, given)?;
            if let Some(c) = p.get("commissionamount") {
                amounts.commission = parse_commission(c, sub.currency.scale)?;
            }
            let n = ctx
                .db
                .prepare_cached(
                    "UPDATE payment SET paymethod_id = ?2, currency_id = ?3, subaccountamount = ?4, paymethodamount = ?5,
                            commissionamount = ?6, taxamount = ?7, rate = ?8
                     WHERE id = ?1 AND (paymethod_id IS NOT ?2 OR currency_id <> ?3 OR subaccountamount <> ?4
                            OR paymethodamount <> ?5 OR commissionamount <> ?6 OR taxamount <> ?7 OR rate <> ?8)",
                )?
                .execute(params![
                    elid,
                    pm.id,
                    amounts.currency,
                    amounts.subaccount,
                    amounts.paymethod,
                    amounts.commission,
                    amounts.tax,
                    amounts.rate
                ])?;
            if n > 0 {
                changed.push("amounts");
            }
        }
        if let Some(number) = p.get("number") {
            let project: i64 = ctx
                .db
                .prepare_cached("SELECT project_id FROM payment WHERE id = ?1")?
                .query_row([elid], |r| r.get(0))?;
            ensure_number_free(ctx, project, number, elid)?;
            if set_column(ctx, "payment", "number", elid, &number)? {
                changed.push("number");
            }
        }
        changed.extend(apply_text(ctx, elid, p)?);
        if !changed.is_empty() {
            ctx.history("payment", elid, format!("changed: {}", changed.join(", ")))?;
        }
        Ok(())
    }
}

fn add(ctx: &Ctx, p: &Params) -> FuncResult<Doc> {
    let account = if ctx.is_admin() {
        parse_id("plid", p.required("plid")?)?
    } else {
        ctx.caller
            .account_id
            .ok_or_else(|| FuncError::access("payment.add", "No client account"))?
    };
    let paymethod = parse_id("paymethod", p.required("paymethod")?)?;
    if !ctx.is_admin() {
        let pm = ledger::paymethod(ctx.db, paymethod)?;
        let assigned: bool = ctx
            .db
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM account_project WHERE account_id = ?1 AND project_id = ?2 AND status = 1)",
            )?
            .query_row(params![account, pm.project], |r| r.get(0))?;
        if !pm.active || !assigned {
            return Err(FuncError::value(
                "paymethod",
                paymethod.to_string(),
                "The payment method is not available",
            ));
        }
    }
    let amount = p.required("amount")?;
    create_payment(
        ctx,
        account,
        paymethod,
        GivenAmount::Paymethod(amount),
        None,
    )
    .map(Doc::created)
}

fn delete(ctx: &Ctx, id: i64, _p: &Params) -> FuncResult<()> {
    let p = ledger::payment(ctx.db, id)?;
    if p.status != status::NEW {
        return Err(FuncError::value(
            "elid",
            id.to_string(),
            format!(
                "The payment {id} is {}; only new (unpaid) payments can be deleted",
                status::name(p.status)
            ),
        ));
    }
    ctx.db
        .prepare_cached("UPDATE payment SET status = 9 WHERE id = ?1")?
        .execute([id])?;
    ctx.history("payment", id, "deleted (canceled, status 9)")
}

struct RefundEdit;

impl EditOps for RefundEdit {
    fn view(&self, ctx: &Ctx, elid: i64, _plid: Option<i64>) -> FuncResult<Fields> {
        let p = ledger::payment(ctx.db, elid)?;
        let cur = ledger::currency(ctx.db, p.currency)?;
        let (_, left_pm) = ledger::refundable(ctx.db, &p)?;
        let refundable = p.status == status::PAID || p.status == status::REFUND_PENDING;
        let left = if refundable && !p.restrictrefund {
            left_pm
        } else {
            0
        };
        Ok(vec![
            ("amount".into(), money::format_minor(left, cur.scale)),
            ("currency".into(), cur.iso),
            ("description".into(), String::new()),
        ])
    }

    fn blank(&self, _ctx: &Ctx, _plid: Option<i64>) -> FuncResult<Fields> {
        Err(FuncError::missed_param("elid"))
    }

    fn create(&self, _ctx: &Ctx, _plid: Option<i64>, _p: &Params) -> FuncResult<i64> {
        Err(FuncError::missed_param("elid"))
    }

    fn change(&self, ctx: &Ctx, elid: i64, _plid: Option<i64>, p: &Params) -> FuncResult<()> {
        let payment = ledger::payment(ctx.db, elid)?;
        let cur = ledger::currency(ctx.db, payment.currency)?;
        let amount = money::parse_minor(p.required("amount")?, cur.scale, "amount")?;
        ledger::refund_payment(ctx, elid, amount, p.get("description").unwrap_or(""))?;
        Ok(())
    }
}

/// What `payment` pays of `expense` now.
fn allocated(ctx: &Ctx, payment: i64, expense: i64) -> FuncResult<i64> {
    Ok(ctx
        .db
        .prepare_cached(
            "SELECT coalesce(sum(amount), 0) FROM payment_expense WHERE payment_id = ?1 AND expense_id = ?2 AND released = 0",
        )?
        .query_row(params![payment, expense], |r| r.get(0))?)
}

/// Pays `amount` more of the expense from the payment, within both's limits.
fn allocate_more(ctx: &Ctx, payment: i64, expense: i64, amount: i64, text: &str) -> FuncResult<()> {
    let p = ledger::payment(ctx.db, payment)?;
    let (e_sub, notpayd, deleted): (i64, i64, bool) = ctx
        .db
        .prepare_cached("SELECT subaccount_id, notpayd, deleted FROM expense WHERE id = ?1")?
        .query_row([expense], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    if e_sub != p.subaccount {
        return Err(FuncError::value(
            "expense",
            expense.to_string(),
            "The expense belongs to another subaccount",
        ));
    }
    if deleted {
        return Err(FuncError::value(
            "expense",
            expense.to_string(),
            "The expense is deleted",
        ));
    }
    if p.status != status::PAID && p.status != status::REFUND_PENDING {
        return Err(FuncError::value(
            "plid",
            payment.to_string(),
            format!("The payment {payment} is {}", status::name(p.status)),
        ));
    }
    if amount > p.free() || amount > notpayd {
        let cur = ledger::subaccount_currency(ctx.db, p.subaccount)?;
        let f = |m: i64| money::format_minor(m, cur.scale);
        return Err(FuncError::value(
            "amount",
            text,
            format!(
                "At most {} {} can be added: the payment has {} free and the expense {} unpaid",
                f(p.free().min(notpayd)),
                cur.iso,
                f(p.free()),
                f(notpayd)
            ),
        ));
    }
    ledger::allocate_one(ctx, payment, expense, amount)
}

/// Sets what a payment pays of an expense to `amount`.
fn set_allocation(ctx: &Ctx, payment: i64, expense: i64, text: &str) -> FuncResult<()> {
    let cur = payment_currency(ctx, payment)?;
    let amount = money::parse_minor(text, cur.scale, "amount")?;
    if amount < 0 {
        return Err(FuncError::value(
            "amount",
            text,
            "The amount cannot be negative",
        ));
    }
    let now = allocated(ctx, payment, expense)?;
    if amount > now {
        allocate_more(ctx, payment, expense, amount - now, text)?;
    } else if amount < now {
        ledger::release_allocation(ctx, payment, expense, Some(now - amount))?;
    } else {
        return Ok(());
    }
    ctx.history(
        "payment",
        payment,
        format!(
            "pays {} {} of expense {expense}",
            money::format_minor(amount, cur.scale),
            cur.iso
        ),
    )
}

struct AllocationEdit;

impl EditOps for AllocationEdit {
    fn view(&self, ctx: &Ctx, elid: i64, plid: Option<i64>) -> FuncResult<Fields> {
        let payment = plid.ok_or_else(|| FuncError::missed_param("plid"))?;
        let cur = payment_currency(ctx, payment)?;
        Ok(vec![
            ("expense".into(), elid.to_string()),
            (
                "amount".into(),
                money::format_minor(allocated(ctx, payment, elid)?, cur.scale),
            ),
        ])
    }

    fn blank(&self, _ctx: &Ctx, _plid: Option<i64>) -> FuncResult<Fields> {
        Ok(vec![
            ("expense".into(), String::new()),
            ("amount".into(), String::new()),
        ])
    }

    fn create(&self, ctx: &Ctx, plid: Option<i64>, p: &Params) -> FuncResult<i64> {
        let payment = plid.ok_or_else(|| FuncError::missed_param("plid"))?;
        let expense = parse_id("expense", p.required("expense")?)?;
        let text = p.required("amount")?;
        let cur = payment_currency(ctx, payment)?;
        let amount = money::parse_minor(text, cur.scale, "amount")?;
        if amount <= 0 {
            return Err(FuncError::value(
                "amount",
                text,
                "The amount must be positive",
            ));
        }
        allocate_more(ctx, payment, expense, amount, text)?;
        ctx.history(
            "payment",
            payment,
            format!("pays {text} {} more of expense {expense}", cur.iso),
        )?;
        Ok(expense)
    }

    fn change(&self, ctx: &Ctx, elid: i64, plid: Option<i64>, p: &Params) -> FuncResult<()> {
        let payment = plid.ok_or_else(|| FuncError::missed_param("plid"))?;
        if let Some(other) = opt_id(p, "expense")?
            && other != elid
        {
            return Err(FuncError::value(
                "expense",
                other.to_string(),
                "The expense of an allocation cannot change",
            ));
        }
        set_allocation(ctx, payment, elid, p.required("amount")?)
    }
}

struct OrderinfoEdit;

impl EditOps for OrderinfoEdit {
    fn view(&self, ctx: &Ctx, elid: i64, _plid: Option<i64>) -> FuncResult<Fields> {
        let (payment, name, cost): (i64, String, i64) = ctx
            .db
            .prepare_cached("SELECT payment_id, name, cost FROM orderinfo WHERE id = ?1")?
            .query_row([elid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        let cur = payment_currency(ctx, payment)?;
        Ok(vec![
            ("name".into(), name),
            ("cost".into(), money::format_minor(cost, cur.scale)),
        ])
    }

    fn blank(&self, _ctx: &Ctx, _plid: Option<i64>) -> FuncResult<Fields> {
        Ok(vec![
            ("name".into(), String::new()),
            ("cost".into(), String::new()),
        ])
    }

    fn create(&self, ctx: &Ctx, plid: Option<i64>, p: &Params) -> FuncResult<i64> {
        let payment = plid.ok_or_else(|| FuncError::missed_param("plid"))?;
        let cur = payment_currency(ctx, payment)?;
        let name = p.required("name")?;
        let cost = match p.get("cost") {
            Some(c) => money::parse_minor(c, cur.scale, "cost")?,
            None => 0,
        };
        ctx.db
            .prepare_cached("INSERT INTO orderinfo (payment_id, name, cost) VALUES (?1, ?2, ?3)")?
            .execute(params![payment, name, cost])?;
        let id = ctx.db.last_insert_rowid()?;
        ctx.history(
            "payment",
            payment,
            format!("invoice line {id} '{name}' added"),
        )?;
        Ok(id)
    }

    fn change(&self, ctx: &Ctx, elid: i64, plid: Option<i64>, p: &Params) -> FuncResult<()> {
        let payment: i64 = ctx
            .db
            .prepare_cached("SELECT payment_id FROM orderinfo WHERE id = ?1")?
            .query_row([elid], |r| r.get(0))?;
        if let Some(parent) = plid.filter(|&v| v != payment) {
            return Err(FuncError::value(
                "plid",
                parent.to_string(),
                format!("The invoice line {elid} belongs to payment {payment}"),
            ));
        }
        let cur = payment_currency(ctx, payment)?;
        let mut changed = Vec::new();
        if let Some(name) = p.get("name")
            && set_column(ctx, "orderinfo", "name", elid, &name)?
        {
            changed.push("name");
        }
        if let Some(c) = p.get("cost") {
            let cost = money::parse_minor(c, cur.scale, "cost")?;
            if set_column(ctx, "orderinfo", "cost", elid, &cost)? {
                changed.push("cost");
            }
        }
        if !changed.is_empty() {
            ctx.history(
                "payment",
                payment,
                format!("invoice line {elid} changed: {}", changed.join(", ")),
            )?;
        }
        Ok(())
    }
}
