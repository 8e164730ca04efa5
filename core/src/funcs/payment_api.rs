//! The funcs BILLmanager payment modules and panels call: `payment.info` (one payment with what
//! a module needs to build its page), the state changes `payment.setpaid`, `payment.setinpay`,
//! `payment.setnopay`, `payment.setfraud`, `payment.setcanceled` (each with `externalid` and
//! `info`), and `payment.success` / `payment.fail`, where a gateway sends the payer back.
//!
//! Choices where the spec is silent:
//! - The state changes go through the same rules as gateway callbacks: a new or in-progress
//!   payment moves on; a repeat (the payment is already where the call would put it, with the
//!   same `externalid` if one is given) answers ok and changes nothing, so a module retrying a
//!   notification credits once. `payment.setpaid` without `externalid` on a paid payment stays
//!   the spec's error ("already paid"): only a call naming the gateway's id is recognised as a
//!   repeat. Any other move (a paid payment set canceled, a canceled one set paid) is refused.
//! - `payment.setnopay` returns an in-progress payment to new (BILLmanager's "not paid").
//! - `externalid` is recorded on the first applied call; a different one later is refused, and
//!   so is one that already names another payment of the same method.
//! - `info` is stored in the payment's `info` field (what `payment.edit` shows).
//! - `payment.info` is staff-only and shows the method's settings unmasked: a payment module
//!   needs its keys to sign requests, and staff may read them anyway (`paymethod.edit` masks
//!   them only in the panel's form).

use super::PAYMENT;
use crate::doc::{Doc, Fields};
use crate::engine::{Ctx, check_owner};
use crate::error::{FuncError, FuncResult};
use crate::func::{Access, ActionMode, FuncDecl, Param, Registry, Ty};
use crate::ledger::{self, status};
use crate::money;
use crate::params::{Params, parse_id};
use crate::store::{OptionalExtension, params};

/// Where a state-change func puts a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Paid,
    InPay,
    NoPay,
    Fraud,
    Canceled,
}

impl Target {
    fn status(self) -> i64 {
        match self {
            Target::Paid => status::PAID,
            Target::InPay => status::IN_PROGRESS,
            Target::NoPay => status::NEW,
            Target::Fraud => status::FRAUD,
            Target::Canceled => status::CANCELED,
        }
    }
}

fn state_params() -> Vec<Param> {
    vec![
        Param::new("externalid", Ty::Text(255)),
        Param::new("info", Ty::LongText(4000)),
    ]
}

pub fn register(reg: &mut Registry) {
    let funcs: [(&str, &str, Target); 5] = [
        (
            "payment.setpaid",
            "Add funds to the client's account",
            Target::Paid,
        ),
        ("payment.setinpay", "Set in progress", Target::InPay),
        ("payment.setnopay", "Set not paid", Target::NoPay),
        ("payment.setfraud", "Set fraudulent", Target::Fraud),
        ("payment.setcanceled", "Cancel", Target::Canceled),
    ];
    for (name, title, target) in funcs {
        reg.add(
            FuncDecl::group(name, title, Access::ADMIN, PAYMENT, move |ctx, id, p| {
                set_state(ctx, id, target, p)
            })
            .checks_object()
            .params(state_params()),
        );
    }
    reg.add(
        FuncDecl::action(
            "payment.info",
            "Payment for a payment module",
            Access::ADMIN,
            ActionMode::Read,
            |ctx, p| info(ctx, parse_id("elid", p.required("elid")?)?).map(Doc::Form),
        )
        .object(PAYMENT),
    );
    for (name, title, outcome) in [
        ("payment.success", "Payment made", "success"),
        ("payment.fail", "Payment not made", "fail"),
    ] {
        reg.add(FuncDecl::action(
            name,
            title,
            Access::PUBLIC,
            ActionMode::Read,
            move |ctx, p| payer_back(ctx, p, outcome),
        ));
    }
}

/// Moves a payment to `target` as the module says, or recognises a repeat.
fn set_state(ctx: &Ctx, id: i64, target: Target, p: &Params) -> FuncResult<()> {
    // The dispatcher's object check, folded into the payment's own read (`checks_object`).
    let (current, sub) = ledger::payment_and_subaccount(ctx.db, id)?;
    check_owner(ctx.caller, PAYMENT, id, Some(current.account))?;
    let (paymethod, stored_ext) = (current.paymethod, current.external_id.clone());
    let ext = p.get("externalid").filter(|e| !e.is_empty());
    if let Some(ext) = ext {
        if let Some(stored) = &stored_ext
            && stored != ext
        {
            return Err(FuncError::value(
                "externalid",
                ext,
                format!("The payment {id} has the external id '{stored}'"),
            ));
        }
        let other: Option<i64> = ctx
            .db
            .prepare_cached(
                "SELECT id FROM payment WHERE paymethod_id IS ?1 AND external_id = ?2 AND id <> ?3",
            )?
            .query_row(params![paymethod, ext, id], |r| r.get(0))
            .optional()?;
        if let Some(other) = other {
            return Err(FuncError::value(
                "externalid",
                ext,
                format!("The external id '{ext}' belongs to payment {other}"),
            ));
        }
    }
    let paid_like = matches!(
        current.status,
        status::PAID | status::REFUND_PENDING | status::REFUNDED
    );
    let movable = current.status == status::NEW || current.status == status::IN_PROGRESS;
    let repeat = match target {
        // A paid payment is a repeat only for a call naming the same gateway id.
        Target::Paid => paid_like && ext.is_some() && stored_ext.as_deref() == ext,
        t => current.status == t.status(),
    };
    if repeat {
        return Ok(());
    }
    if !movable || (target == Target::NoPay && current.status != status::IN_PROGRESS) {
        let msg = if target == Target::Paid && paid_like {
            format!("The payment {id} is already paid")
        } else {
            format!(
                "The payment {id} is {} and cannot be set {}",
                status::name(current.status),
                status::name(target.status())
            )
        };
        return Err(FuncError::value("elid", id.to_string(), msg));
    }
    match target {
        Target::Paid => ledger::set_paid_read(ctx, &current, sub)?,
        t => {
            ctx.db
                .prepare_cached("UPDATE payment SET status = ?2 WHERE id = ?1")?
                .execute(params![id, t.status()])?;
            ctx.history(
                "payment",
                id,
                format!(
                    "{} by {}: was {}",
                    status::name(t.status()),
                    ctx.func,
                    status::name(current.status)
                ),
            )?;
        }
    }
    if let (Some(ext), None) = (ext, &stored_ext) {
        ctx.db
            .prepare_cached("UPDATE payment SET external_id = ?2 WHERE id = ?1")?
            .execute(params![id, ext])?;
        ctx.history("payment", id, format!("external id {ext}"))?;
    }
    if let Some(info) = p.raw("info")
        && super::set_column(ctx, "payment", "info", id, &info)?
    {
        ctx.history("payment", id, "info changed")?;
    }
    Ok(())
}

/// One payment as a payment module needs it.
fn info(ctx: &Ctx, id: i64) -> FuncResult<Fields> {
    let p = ledger::payment(ctx.db, id)?;
    let sub_cur = ledger::subaccount_currency(ctx.db, p.subaccount)?;
    let pm_cur = ledger::currency(ctx.db, p.currency)?;
    type Row = (
        String,
        Option<String>,
        Option<i64>,
        Option<String>,
        String,
        i64,
        String,
        String,
    );
    let (createdate, paydate, paymethod, external_id, info, project, description, sender): Row =
        ctx.db
            .prepare_cached(
                "SELECT createdate, paydate, paymethod_id, external_id, info, project_id, description, sender
                 FROM payment WHERE id = ?1",
            )?
            .query_row([id], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            })?;
    let mut f: Fields = vec![
        ("id".into(), id.to_string()),
        ("number".into(), p.number.clone()),
        ("status".into(), p.status.to_string()),
        ("createdate".into(), createdate),
        ("paydate".into(), paydate.unwrap_or_default()),
        (
            "subaccountamount".into(),
            money::format_minor(p.subaccountamount, sub_cur.scale),
        ),
        ("subaccount_currency_iso".into(), sub_cur.iso),
        (
            "paymethodamount".into(),
            money::format_minor(p.paymethodamount, pm_cur.scale),
        ),
        ("currency_iso".into(), pm_cur.iso),
        (
            "commissionamount".into(),
            money::format_minor(p.commissionamount, sub_cur.scale),
        ),
        ("externalid".into(), external_id.unwrap_or_default()),
        ("description".into(), description),
        ("sender".into(), sender),
        ("info".into(), info),
    ];
    if let Some(pm) = paymethod {
        let (name, module, settings): (String, String, String) = ctx
            .db
            .prepare_cached("SELECT name, module, settings FROM paymethod WHERE id = ?1")?
            .query_row([pm], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        f.push(("paymethod".into(), pm.to_string()));
        f.push(("paymethod_name".into(), name));
        f.push(("paymethod_module".into(), module));
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(&settings) {
            for (k, v) in map {
                let text = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                f.push((format!("paymethod_{k}").into(), text));
            }
        }
    }
    let (pname, billurl): (String, String) = ctx
        .db
        .prepare_cached("SELECT name, billurl FROM project WHERE id = ?1")?
        .query_row([project], |r| Ok((r.get(0)?, r.get(1)?)))?;
    f.push(("project".into(), project.to_string()));
    f.push(("project_name".into(), pname));
    f.push(("panel_url".into(), billurl));
    let (aname, realname, email, phone, country): (String, String, String, String, Option<String>) =
        ctx.db
            .prepare_cached(
                "SELECT a.name, a.realname, a.email, a.valid_phone, (SELECT iso2 FROM country WHERE id = a.country_id)
                 FROM account a WHERE a.id = ?1",
            )?
            .query_row([p.account], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?;
    f.push(("account".into(), p.account.to_string()));
    f.push(("account_name".into(), aname));
    f.push(("account_realname".into(), realname));
    f.push(("account_email".into(), email));
    f.push(("account_phone".into(), phone));
    f.push(("account_country".into(), country.unwrap_or_default()));
    Ok(f)
}

/// Where a gateway sends the payer back: an ok document naming the panel to go on to (the
/// provider's `billurl`, else the panel's root), and, for the payment's own client or staff,
/// the payment's status. Nothing changes: only the module's notification moves a payment.
fn payer_back(ctx: &Ctx, p: &Params, outcome: &str) -> FuncResult<Doc> {
    let mut f: Fields = vec![("result".into(), outcome.to_string())];
    let id = match p.get("elid").or_else(|| p.get("payment")) {
        Some(raw) => Some(parse_id("elid", raw)?),
        None => None,
    };
    let mut redirect = String::from("/billmgr");
    if let Some(id) = id {
        let row: Option<(i64, i64, String)> = ctx
            .db
            .prepare_cached(
                "SELECT y.account_id, y.status, (SELECT billurl FROM project WHERE id = y.project_id)
                 FROM payment y WHERE y.id = ?1",
            )?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        if let Some((account, st, billurl)) = row {
            if !billurl.is_empty() {
                redirect = billurl;
            }
            if ctx.is_admin() || ctx.caller.account_id == Some(account) {
                f.push(("payment".into(), id.to_string()));
                f.push(("status".into(), st.to_string()));
            }
        }
    }
    f.push(("redirect".into(), redirect));
    Ok(Doc::Ok(f))
}
