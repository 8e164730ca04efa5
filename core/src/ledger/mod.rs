//! The ledger's money rules, independent of the func protocol: payments and their statuses,
//! crediting (`set_paid`), expenses and their payment from free funds (`allocate`), expense
//! deletion, refunds, currency conversion, included tax and discounts. The funcs in
//! `funcs::payment`, `funcs::subaccount` and `funcs::pricing` call these; [`check()`] verifies the
//! invariants they keep over a whole database.
//!
//! # Amounts and rounding
//! Every amount is integer minor units of its currency (`payment.paymethodamount` in the
//! payment method's currency, everything else in the subaccount's). Computations run on
//! `Decimal` and are rounded with [`money::round`] (half away from zero) to the target currency's
//! minor units at exactly these points, each on one line, never on a sum:
//! 1. conversion at payment creation: `subaccountamount = round(paymethodamount * rate / amount)`
//!    (or the other way round when the subaccount amount is the one given), with the rate in
//!    force (see [`rate_in_force`]);
//! 2. commission: `round(paymethodamount * percent / 100) + fixed` in the payment method's
//!    currency, then converted proportionally: `round(c * subaccountamount / paymethodamount)`;
//! 3. discount: `discountamount = round(price * percentage / 100)`, the expense's `amount` is
//!    `price - discountamount`;
//! 4. included tax: `taxamount = round(amount * rate / (100 + rate))` on the discounted amount
//!    (and on a payment's `subaccountamount`);
//! 5. refunds given in the payment method's currency: the subaccount amount is
//!    `round(r * subaccountamount / paymethodamount)`, capped at what is left, and exactly what is
//!    left when the rest of the payment is refunded (so a payment refunds to zero in both
//!    currencies); `subaccount.refund` goes the other way for each payment it uses.
//!
//! # Rules kept here
//! - A payment is *credited* in statuses 4 (paid), 5 (refund pending) and 6 (refunded); its
//!   *free* part is `subaccountamount - usedamount - refundedamount`.
//! - `balance = credited - refunds (status 5, 6) - expenses (not deleted)`, per subaccount.
//! - Allocations (`payment_expense`) pay expenses from free parts: unpaid expenses oldest first
//!   (by id), from credited payments oldest first (by `paydate`, then id). [`allocate`] runs after
//!   every change that creates unpaid expenses or frees funds (setpaid, a new expense, an expense
//!   deleted, a refund). `usedamount` and `notpayd` always equal the live allocations.
//! - Allocations are never deleted: releasing one marks it `released`; a partial release adds a
//!   live row for the part that stays.
//! - A refund first takes the payment's free part; when it takes more, the payment's newest
//!   allocations are released for the rest, so `usedamount + refundedamount <= subaccountamount`
//!   holds, and the expenses they paid become unpaid and are paid again from other payments'
//!   free funds if there are any. A partial refund leaves the payment in status 4 with
//!   `refundedamount` showing what went back; status 6 is set when `refundedamount` reaches
//!   `subaccountamount`. Manual refunds are done at once (refund row status 6). Gateway refunds
//!   ([`start_gateway_refund`]) debit at once too but stay pending (refund and payment status 5)
//!   until [`complete_refund`] confirms them, once.
//! - A deleted expense keeps its row (`deleted = 1`), gives its amount back to the balance, has
//!   its allocations released and `notpayd = amount` (nothing of it is paid).
//! - Stored sums never come from SQL arithmetic: a new balance ([`money::add_to_balance`], within
//!   [`money::MAX_BALANCE`], else the "too large" `value` error naming the parameter), `usedamount`
//!   with `notpayd`, and `refundedamount` are computed and checked in Rust and bound; every single
//!   amount is within [`money::MAX_AMOUNT`] (`money::to_minor`).

pub mod check;

pub use check::{Violation, check};

use crate::engine::Ctx;
use crate::error::{FuncError, FuncResult};
use crate::money;
use crate::store::{Connection, OptionalExtension, params};
use rust_decimal::Decimal;

/// Payment statuses.
pub mod status {
    pub const NEW: i64 = 1;
    pub const IN_PROGRESS: i64 = 2;
    pub const PLEDGED: i64 = 3;
    pub const PAID: i64 = 4;
    pub const REFUND_PENDING: i64 = 5;
    pub const REFUNDED: i64 = 6;
    pub const FRAUD: i64 = 7;
    pub const CANCELED: i64 = 9;

    pub fn name(s: i64) -> &'static str {
        match s {
            NEW => "new",
            IN_PROGRESS => "in progress",
            PLEDGED => "pledged",
            PAID => "paid",
            REFUND_PENDING => "refund pending",
            REFUNDED => "refunded",
            FRAUD => "fraud",
            CANCELED => "canceled",
            _ => "unknown",
        }
    }
}

/// A currency as amounts need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Currency {
    pub id: i64,
    pub iso: String,
    pub scale: u32,
}

pub fn currency(conn: &Connection, id: i64) -> FuncResult<Currency> {
    conn.prepare_cached("SELECT id, iso, minor_units FROM currency WHERE id = ?1")?
        .query_row([id], |r| {
            Ok(Currency {
                id: r.get(0)?,
                iso: r.get(1)?,
                scale: r.get::<i64>(2)?.clamp(0, 12) as u32,
            })
        })
        .optional()?
        .ok_or_else(|| FuncError::missed_object("currency", id))
}

/// `to = from * num / den`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub num: Decimal,
    pub den: Decimal,
}

impl Rate {
    pub const ONE: Rate = Rate {
        num: Decimal::ONE,
        den: Decimal::ONE,
    };

    /// Units of the target currency per unit of the source, as stored on a payment.
    pub fn factor_text(&self) -> String {
        match self.num.checked_div(self.den) {
            Some(f) => f.normalize().to_string(),
            None => "0".into(),
        }
    }
}

/// The rate converting `from` into `to` in force at `at` (`YYYY-MM-DD[ HH:MM:SS]`): the rate
/// with the latest `ratedate` not after `at` (the newest row on a tie), the client's own rates
/// winning over provider-wide ones. A row for either direction serves.
pub fn rate_in_force(
    conn: &Connection,
    from: i64,
    to: i64,
    account: Option<i64>,
    at: &str,
) -> FuncResult<Option<Rate>> {
    if from == to {
        return Ok(Some(Rate::ONE));
    }
    let owners: Vec<Option<i64>> = match account {
        Some(a) => vec![Some(a), None],
        None => vec![None],
    };
    for owner in owners {
        let row: Option<(i64, String, String)> = conn
            .prepare_cached(
                "SELECT currency_base, rate, amount FROM currencyrate
                 WHERE ((currency_base = ?1 AND currency_relate = ?2) OR (currency_base = ?2 AND currency_relate = ?1))
                   AND account_id IS ?3 AND ratedate <= ?4
                 ORDER BY ratedate DESC, id DESC LIMIT 1",
            )?
            .query_row(params![to, from, owner, at], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        if let Some((base, rate, amount)) = row {
            let rate = money::parse_decimal(&rate, "rate")?;
            let amount = money::parse_decimal(&amount, "amount")?;
            return Ok(Some(if base == to {
                Rate {
                    num: rate,
                    den: amount,
                }
            } else {
                Rate {
                    num: amount,
                    den: rate,
                }
            }));
        }
    }
    Ok(None)
}

fn too_large(object: &str) -> FuncError {
    money::too_large(object, "")
}

/// Moves a subaccount's balance by `delta`, computed in Rust and checked: a balance beyond
/// [`money::MAX_BALANCE`] is the "too large" `value` error naming `object` (the parameter
/// that asked for the change) and `value`. Answers the new balance.
fn move_balance(
    ctx: &Ctx,
    subaccount: i64,
    delta: i64,
    object: &str,
    value: &str,
) -> FuncResult<i64> {
    let balance: i64 = ctx
        .db
        .prepare_cached("SELECT balance FROM subaccount WHERE id = ?1")?
        .query_row([subaccount], |r| r.get(0))
        .optional()?
        .ok_or_else(|| FuncError::missed_object("subaccount", subaccount))?;
    let new = money::add_to_balance(balance, delta, object, value)?;
    ctx.db
        .prepare_cached("UPDATE subaccount SET balance = ?2 WHERE id = ?1")?
        .execute(params![subaccount, new])?;
    Ok(new)
}

/// Moves what a payment pays (`usedamount`) and what an expense owes (`notpayd`) by `delta` in
/// opposite directions, computed in Rust; refused as an internal fault when either would leave
/// its bounds (`usedamount + refundedamount <= subaccountamount`, `0 <= notpayd <= amount`).
fn move_allocation(ctx: &Ctx, payment: i64, expense: i64, delta: i64) -> FuncResult<()> {
    let (used, refunded, total): (i64, i64, i64) = ctx
        .db
        .prepare_cached(
            "SELECT usedamount, refundedamount, subaccountamount FROM payment WHERE id = ?1",
        )?
        .query_row([payment], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    let (notpayd, amount): (i64, i64) = ctx
        .db
        .prepare_cached("SELECT notpayd, amount FROM expense WHERE id = ?1")?
        .query_row([expense], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let new_used = used
        .checked_add(delta)
        .filter(|&u| u >= 0 && u.checked_add(refunded).is_some_and(|s| s <= total));
    let new_notpayd = notpayd
        .checked_sub(delta)
        .filter(|&n| (0..=amount).contains(&n));
    let (Some(new_used), Some(new_notpayd)) = (new_used, new_notpayd) else {
        return Err(FuncError::internal(format!(
            "allocation of {delta} between payment {payment} and expense {expense} is out of bounds"
        )));
    };
    ctx.db
        .prepare_cached("UPDATE payment SET usedamount = ?2 WHERE id = ?1")?
        .execute(params![payment, new_used])?;
    ctx.db
        .prepare_cached("UPDATE expense SET notpayd = ?2 WHERE id = ?1")?
        .execute(params![expense, new_notpayd])?;
    Ok(())
}

/// `round(minor * num / den)` from one scale to another: the one way amounts are converted.
pub fn scale_amount(
    minor: i64,
    from_scale: u32,
    num: Decimal,
    den: Decimal,
    to_scale: u32,
    object: &str,
) -> FuncResult<i64> {
    if den.is_zero() {
        return Err(FuncError::value(object, "0", "Division by zero"));
    }
    let v = money::from_minor(minor, from_scale)
        .checked_mul(num)
        .and_then(|v| v.checked_div(den))
        .ok_or_else(|| too_large(object))?;
    money::to_minor(money::round(v, to_scale), to_scale, object)
}

/// Included tax: `round(amount * rate / (100 + rate))` in the amount's currency.
pub fn included_tax(amount: i64, scale: u32, rate: Decimal) -> FuncResult<i64> {
    if rate.is_zero() {
        return Ok(0);
    }
    scale_amount(
        amount,
        scale,
        rate,
        Decimal::ONE_HUNDRED + rate,
        scale,
        "taxamount",
    )
}

/// The tax rate a rule gives for a payer of `account` buying `itemtype` from `project`: a rule
/// for the payer's country wins over a rule for any country, a rule for particular item types
/// over a general one, a newer rule over an older. No rule: 0.
pub fn tax_rate(
    conn: &Connection,
    project: i64,
    account: i64,
    itemtype: &str,
) -> FuncResult<Decimal> {
    let country: Option<i64> = conn
        .prepare_cached("SELECT country_id FROM account WHERE id = ?1")?
        .query_row([account], |r| r.get(0))
        .optional()?
        .flatten();
    let mut stmt = conn.prepare_cached(
        "SELECT taxrate, specialitemtype, itemtype FROM taxrule
         WHERE project_id = ?1 AND (country_id IS NULL OR country_id IS ?2)
         ORDER BY (country_id IS NOT NULL) DESC, specialitemtype DESC, id DESC",
    )?;
    let rows = stmt.query_map(params![project, country], |r| {
        Ok((r.get::<String>(0)?, r.get::<bool>(1)?, r.get::<String>(2)?))
    })?;
    for row in rows {
        let (rate, special, types) = row?;
        if special && !types.split(',').any(|t| t.trim() == itemtype) {
            continue;
        }
        return money::parse_decimal(&rate, "taxrate");
    }
    Ok(Decimal::ZERO)
}

/// The discount chosen for an expense: its id and percentage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChosenDiscount {
    pub id: i64,
    pub percentage: Decimal,
}

/// The discount that applies: of the client's own discounts and the provider's promotions
/// (`account_id` NULL) in force on `date`, for the operation (`actiontype` `any` or equal) and
/// the item type (empty or equal), the one with the highest priority; on a tie a personal one
/// before a promotion, then the older. A discount with a negative priority is considered only
/// when no promotion with a non-negative priority applies.
pub fn choose_discount(
    conn: &Connection,
    project: i64,
    account: i64,
    date: &str,
    operation: &str,
    itemtype: &str,
) -> FuncResult<Option<ChosenDiscount>> {
    let day: String = date.chars().take(10).collect();
    let mut stmt = conn.prepare_cached(
        "SELECT id, percentage, priority, account_id IS NULL FROM discount
         WHERE project_id = ?1 AND (account_id IS NULL OR account_id = ?2) AND deleted = 0
           AND (fromdate IS NULL OR substr(fromdate, 1, 10) <= ?3)
           AND (todate IS NULL OR substr(todate, 1, 10) >= ?3)
           AND (actiontype = 'any' OR actiontype = ?4)
           AND (itemtype = '' OR itemtype = ?5)",
    )?;
    let rows: Vec<(i64, String, i64, bool)> = stmt
        .query_map(params![project, account, day, operation, itemtype], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<Result<_, _>>()?;
    let promotion_applies = rows.iter().any(|(_, _, prio, promo)| *promo && *prio >= 0);
    let best = rows
        .into_iter()
        .filter(|(_, _, prio, _)| *prio >= 0 || !promotion_applies)
        .max_by_key(|(id, _, prio, promo)| (*prio, !*promo, -*id));
    match best {
        None => Ok(None),
        Some((id, pct, _, _)) => Ok(Some(ChosenDiscount {
            id,
            percentage: money::parse_decimal(&pct, "percentage")?,
        })),
    }
}

/// A subaccount's facts that the rules need.
#[derive(Debug, Clone)]
pub struct Subaccount {
    pub id: i64,
    pub account: i64,
    pub project: i64,
    pub currency: Currency,
    pub balance: i64,
    pub creditlimit: i64,
    pub allowpostpaid: bool,
    pub suspended: bool,
}

pub fn subaccount(conn: &Connection, id: i64) -> FuncResult<Subaccount> {
    // With its currency in the same statement (one round trip on a networked database).
    let row: Option<SubRow> = conn
        .prepare_cached(&format!(
            "SELECT {SUBACCOUNT_COLUMNS} FROM subaccount s {SUBACCOUNT_CURRENCY} WHERE s.id = ?1"
        ))?
        .query_row([id], |r| sub_row(r, 0))
        .optional()?;
    subaccount_of(id, row)
}

/// A subaccount's columns with its currency's (`s` and `c`), in [`SubRow`]'s order.
const SUBACCOUNT_COLUMNS: &str = "s.account_id, s.project_id, s.currency_id, s.balance, \
    s.creditlimit, s.allowpostpaid, s.status, c.iso, c.minor_units";
const SUBACCOUNT_CURRENCY: &str = "LEFT JOIN currency c ON c.id = s.currency_id";

type SubRow = (
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<bool>,
    Option<i64>,
    Option<String>,
    Option<i64>,
);

/// [`SUBACCOUNT_COLUMNS`] from column `at` on (all NULL when a left join found no subaccount).
fn sub_row(r: &crate::store::Row<'_>, at: usize) -> crate::store::Result<SubRow> {
    Ok((
        r.get(at)?,
        r.get(at + 1)?,
        r.get(at + 2)?,
        r.get(at + 3)?,
        r.get(at + 4)?,
        r.get(at + 5)?,
        r.get(at + 6)?,
        r.get(at + 7)?,
        r.get(at + 8)?,
    ))
}

/// The subaccount `id` from its [`SubRow`], or why there is none.
fn subaccount_of(id: i64, row: Option<SubRow>) -> FuncResult<Subaccount> {
    let missed = || FuncError::missed_object("subaccount", id);
    let (account, project, cur, balance, creditlimit, allowpostpaid, st, iso, scale) =
        row.ok_or_else(missed)?;
    let (
        Some(account),
        Some(project),
        Some(cur),
        Some(balance),
        Some(creditlimit),
        Some(allowpostpaid),
        Some(st),
    ) = (
        account,
        project,
        cur,
        balance,
        creditlimit,
        allowpostpaid,
        st,
    )
    else {
        return Err(missed());
    };
    let (Some(iso), Some(scale)) = (iso, scale) else {
        return Err(FuncError::missed_object("currency", cur));
    };
    Ok(Subaccount {
        id,
        account,
        project,
        currency: Currency {
            id: cur,
            iso,
            scale: scale.clamp(0, 12) as u32,
        },
        balance,
        creditlimit,
        allowpostpaid,
        suspended: st == 2,
    })
}

/// The client's active subaccount with the provider; when it has none, one is opened in the
/// provider's currency (or `fallback_currency` when the provider has none).
pub fn active_subaccount(
    ctx: &Ctx,
    account: i64,
    project: i64,
    fallback_currency: i64,
) -> FuncResult<i64> {
    let found: Option<i64> = ctx
        .db
        .prepare_cached(
            "SELECT id FROM subaccount WHERE account_id = ?1 AND project_id = ?2 AND active = 1",
        )?
        .query_row(params![account, project], |r| r.get(0))
        .optional()?;
    if let Some(id) = found {
        return Ok(id);
    }
    let currency: i64 = ctx
        .db
        .prepare_cached("SELECT coalesce(currency_id, ?2) FROM project WHERE id = ?1")?
        .query_row(params![project, fallback_currency], |r| r.get(0))?;
    let inactive: Option<i64> = ctx
        .db
        .prepare_cached(
            "SELECT id FROM subaccount WHERE account_id = ?1 AND project_id = ?2 AND currency_id = ?3",
        )?
        .query_row(params![account, project, currency], |r| r.get(0))
        .optional()?;
    let id = match inactive {
        Some(id) => {
            ctx.db
                .prepare_cached("UPDATE subaccount SET active = 1 WHERE id = ?1")?
                .execute([id])?;
            ctx.history("subaccount", id, "made active for a new payment")?;
            id
        }
        None => {
            ctx.db
                .prepare_cached(
                    "INSERT INTO subaccount (account_id, project_id, currency_id, created) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![account, project, currency, ctx.now])?;
            let id = ctx.db.last_insert_rowid()?;
            ctx.history(
                "subaccount",
                id,
                format!("opened for client {account} with provider {project}"),
            )?;
            id
        }
    };
    Ok(id)
}

/// Which of a payment's two amounts the caller gave.
#[derive(Debug, Clone, Copy)]
pub enum GivenAmount<'a> {
    /// In the payment method's currency.
    Paymethod(&'a str),
    /// In the subaccount's currency.
    Subaccount(&'a str),
}

/// A payment's computed amounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentAmounts {
    pub subaccount: i64,
    pub paymethod: i64,
    pub rate: String,
    pub commission: i64,
    pub tax: i64,
    pub currency: i64,
}

/// A payment method's facts.
#[derive(Debug, Clone)]
pub struct Paymethod {
    pub id: i64,
    pub project: i64,
    pub currency: Currency,
    pub minamount: Option<i64>,
    pub maxamount: Option<i64>,
    pub commission_percent: Decimal,
    pub commission_fixed: i64,
    pub active: bool,
}

pub fn paymethod(conn: &Connection, id: i64) -> FuncResult<Paymethod> {
    type Row = (i64, i64, Option<i64>, Option<i64>, String, i64, bool);
    let row: Option<Row> = conn
        .prepare_cached(
            "SELECT project_id, currency_id, minamount, maxamount, commission_percent, commission_fixed, active
             FROM paymethod WHERE id = ?1",
        )?
        .query_row([id], |r| r.try_into())
        .optional()?;
    let (project, cur, minamount, maxamount, pct, fixed, active) =
        row.ok_or_else(|| FuncError::missed_object("paymethod", id))?;
    Ok(Paymethod {
        id,
        project,
        currency: currency(conn, cur)?,
        minamount,
        maxamount,
        commission_percent: money::parse_decimal(&pct, "commission")?,
        commission_fixed: fixed,
        active,
    })
}

/// Prices a payment of `given` through `pm` onto subaccount `sub` at `ctx.now`: converts with
/// the rate in force, checks the method's limits, computes commission and included tax.
pub fn price_payment(
    ctx: &Ctx,
    sub: &Subaccount,
    pm: &Paymethod,
    given: GivenAmount,
) -> FuncResult<PaymentAmounts> {
    let rate = rate_in_force(
        ctx.db,
        pm.currency.id,
        sub.currency.id,
        Some(sub.account),
        &ctx.now,
    )?
    .ok_or_else(|| {
        FuncError::value(
            "paymethod",
            pm.id.to_string(),
            format!(
                "No rate from {} to {} is in force; add one with account.currencyrate.edit",
                pm.currency.iso, sub.currency.iso
            ),
        )
    })?;
    let (paymethod, subaccount) = match given {
        GivenAmount::Paymethod(text) => {
            let pmv = money::parse_minor(text, pm.currency.scale, "paymethodamount")?;
            let subv = scale_amount(
                pmv,
                pm.currency.scale,
                rate.num,
                rate.den,
                sub.currency.scale,
                "paymethodamount",
            )?;
            (pmv, subv)
        }
        GivenAmount::Subaccount(text) => {
            let subv = money::parse_minor(text, sub.currency.scale, "subaccountamount")?;
            let pmv = scale_amount(
                subv,
                sub.currency.scale,
                rate.den,
                rate.num,
                pm.currency.scale,
                "subaccountamount",
            )?;
            (pmv, subv)
        }
    };
    let (object, text) = match given {
        GivenAmount::Paymethod(t) => ("paymethodamount", t),
        GivenAmount::Subaccount(t) => ("subaccountamount", t),
    };
    if paymethod <= 0 || subaccount <= 0 {
        return Err(FuncError::value(
            object,
            text,
            "The amount must be positive (in both currencies)",
        ));
    }
    let fmt = |m: i64| money::format_minor(m, pm.currency.scale);
    if let Some(min) = pm.minamount.filter(|&m| paymethod < m) {
        return Err(FuncError::value(
            object,
            text,
            format!(
                "The payment method accepts at least {} {}",
                fmt(min),
                pm.currency.iso
            ),
        ));
    }
    if let Some(max) = pm.maxamount.filter(|&m| paymethod > m) {
        return Err(FuncError::value(
            object,
            text,
            format!(
                "The payment method accepts at most {} {}",
                fmt(max),
                pm.currency.iso
            ),
        ));
    }
    let commission = commission(pm, paymethod, subaccount)?;
    let tax_rate = tax_rate(ctx.db, sub.project, sub.account, "")?;
    Ok(PaymentAmounts {
        subaccount,
        paymethod,
        rate: rate.factor_text(),
        commission,
        tax: included_tax(subaccount, sub.currency.scale, tax_rate)?,
        currency: pm.currency.id,
    })
}

/// The method's commission on a payment, in the subaccount's currency.
fn commission(pm: &Paymethod, paymethod: i64, subaccount: i64) -> FuncResult<i64> {
    let pct = scale_amount(
        paymethod,
        pm.currency.scale,
        pm.commission_percent,
        Decimal::ONE_HUNDRED,
        pm.currency.scale,
        "commission",
    )?;
    let in_pm = pct
        .checked_add(pm.commission_fixed)
        .ok_or_else(|| too_large("commission"))?;
    if in_pm == 0 {
        return Ok(0);
    }
    proportional(in_pm, subaccount, paymethod)
}

/// A payment's money facts.
#[derive(Debug, Clone)]
pub struct Payment {
    pub id: i64,
    pub number: String,
    pub status: i64,
    pub account: i64,
    pub subaccount: i64,
    pub subaccountamount: i64,
    pub paymethodamount: i64,
    pub usedamount: i64,
    pub refundedamount: i64,
    pub commissionamount: i64,
    pub restrictrefund: bool,
    pub currency: i64,
    pub paymethod: Option<i64>,
    /// The gateway's id of the payment, once one is known.
    pub external_id: Option<String>,
}

impl Payment {
    pub fn free(&self) -> i64 {
        self.subaccountamount - self.usedamount - self.refundedamount
    }
}

pub fn payment(conn: &Connection, id: i64) -> FuncResult<Payment> {
    conn.prepare_cached(&format!(
        "SELECT {PAYMENT_COLUMNS} FROM payment p WHERE p.id = ?1"
    ))?
    .query_row([id], |r| payment_row(id, r))
    .optional()?
    .ok_or_else(|| FuncError::missed_object("payment", id))
}

/// [`payment`] and its subaccount (or why that cannot be read), in one statement: one round
/// trip on a networked database.
pub fn payment_and_subaccount(
    conn: &Connection,
    id: i64,
) -> FuncResult<(Payment, FuncResult<Subaccount>)> {
    let (p, sub) = conn
        .prepare_cached(&format!(
            "SELECT {PAYMENT_COLUMNS}, {SUBACCOUNT_COLUMNS} FROM payment p
             LEFT JOIN subaccount s ON s.id = p.subaccount_id {SUBACCOUNT_CURRENCY} WHERE p.id = ?1"
        ))?
        .query_row([id], |r| Ok((payment_row(id, r)?, sub_row(r, 13)?)))
        .optional()?
        .ok_or_else(|| FuncError::missed_object("payment", id))?;
    let sub = subaccount_of(p.subaccount, Some(sub));
    Ok((p, sub))
}

/// A payment's 13 columns (`p`), as [`payment_row`] reads them.
const PAYMENT_COLUMNS: &str = "p.number, p.status, p.account_id, p.subaccount_id, \
    p.subaccountamount, p.paymethodamount, p.usedamount, p.refundedamount, p.commissionamount, \
    p.restrictrefund, p.currency_id, p.paymethod_id, p.external_id";

fn payment_row(id: i64, r: &crate::store::Row<'_>) -> crate::store::Result<Payment> {
    Ok(Payment {
        id,
        number: r.get(0)?,
        status: r.get(1)?,
        account: r.get(2)?,
        subaccount: r.get(3)?,
        subaccountamount: r.get(4)?,
        paymethodamount: r.get(5)?,
        usedamount: r.get(6)?,
        refundedamount: r.get(7)?,
        commissionamount: r.get(8)?,
        restrictrefund: r.get(9)?,
        currency: r.get(10)?,
        paymethod: r.get(11)?,
        external_id: r.get(12)?,
    })
}

/// Credits a new or in-progress payment: status 4, `paydate`, the balance raised by
/// `subaccountamount`; its commission becomes an expense of its own; then unpaid expenses are
/// paid. Any other status is an error that changes nothing.
pub fn set_paid(ctx: &Ctx, id: i64) -> FuncResult<()> {
    let (p, sub) = payment_and_subaccount(ctx.db, id)?;
    set_paid_read(ctx, &p, sub)
}

/// [`set_paid`] of a payment its caller has just read with its subaccount
/// ([`payment_and_subaccount`], in this transaction).
pub fn set_paid_read(ctx: &Ctx, p: &Payment, sub: FuncResult<Subaccount>) -> FuncResult<()> {
    let id = p.id;
    if p.status != status::NEW && p.status != status::IN_PROGRESS {
        let msg = match p.status {
            status::PAID | status::REFUND_PENDING | status::REFUNDED => {
                format!("The payment {id} is already paid")
            }
            s => format!(
                "The payment {id} is {} and cannot be set paid",
                status::name(s)
            ),
        };
        return Err(FuncError::value("elid", id.to_string(), msg));
    }
    // The subaccount is read once, with the payment: its balance for the credit, its facts for
    // what follows.
    let mut sub = sub?;
    let credited = money::add_to_balance(sub.balance, p.subaccountamount, "elid", &id.to_string())?;
    // Both sent with the next statement (one round trip on PostgreSQL).
    ctx.db
        .prepare_cached("UPDATE payment SET status = 4, paydate = ?2 WHERE id = ?1")?
        .execute_deferred(params![id, ctx.now])?;
    ctx.db
        .prepare_cached("UPDATE subaccount SET balance = ?2 WHERE id = ?1")?
        .execute_deferred(params![p.subaccount, credited])?;
    sub.balance = credited;
    if p.commissionamount > 0 {
        // Named after the payment (its id, as `payment_id` on the expense links it), with the
        // invoice number the client knows when that differs.
        let label = if p.number.is_empty() || p.number == id.to_string() {
            id.to_string()
        } else {
            format!("{id} (invoice {})", p.number)
        };
        insert_expense(
            ctx,
            &sub,
            &ExpenseRow {
                name: format!("Commission on payment {label}"),
                operation: "commission".into(),
                amount: p.commissionamount,
                payment: Some(id),
                ..ExpenseRow::default()
            },
            "elid",
        )?;
    }
    allocate(ctx, p.subaccount)?;
    ctx.history(
        "payment",
        id,
        format!(
            "paid: {} {} credited to subaccount {}",
            money::format_minor(p.subaccountamount, sub.currency.scale),
            sub.currency.iso,
            p.subaccount
        ),
    )
}

/// What a new expense is made of, before discount and tax.
#[derive(Debug, Clone, Default)]
pub struct NewExpense {
    pub subaccount: i64,
    pub name: String,
    pub item: String,
    pub itemtype: String,
    pub operation: String,
    /// The price in the subaccount's currency, minor units, before the discount.
    pub price: i64,
    /// An explicit tax rate; `None` takes the rate from `account.taxrule`.
    pub taxrate: Option<Decimal>,
    pub postpaid: bool,
    pub realdate: String,
    pub cdate: Option<String>,
}

/// An expense row as stored.
#[derive(Debug, Clone, Default)]
struct ExpenseRow {
    name: String,
    item: String,
    itemtype: String,
    operation: String,
    amount: i64,
    taxrate: String,
    taxamount: i64,
    discountamount: i64,
    discount: Option<i64>,
    payment: Option<i64>,
    realdate: Option<String>,
    cdate: Option<String>,
    postpaid: bool,
}

/// Stores an expense and debits it; `object` names the parameter a "too large" balance blames.
fn insert_expense(ctx: &Ctx, sub: &Subaccount, e: &ExpenseRow, object: &str) -> FuncResult<i64> {
    let taxrate = if e.taxrate.is_empty() {
        "0"
    } else {
        &e.taxrate
    };
    ctx.db
        .prepare_cached(
            "INSERT INTO expense (subaccount_id, account_id, name, item, itemtype, operation, amount, notpayd, taxrate,
                                  taxamount, discountamount, discount_id, payment_id, realdate, cdate, postpaid, created)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        )?
        .execute(params![
            sub.id,
            sub.account,
            e.name,
            e.item,
            e.itemtype,
            e.operation,
            e.amount,
            taxrate,
            e.taxamount,
            e.discountamount,
            e.discount,
            e.payment,
            e.realdate.as_deref().unwrap_or(&ctx.now),
            e.cdate,
            e.postpaid,
            ctx.now
        ])?;
    let id = ctx.db.last_insert_rowid()?;
    let value = money::format_minor(e.amount, sub.currency.scale);
    move_balance(ctx, sub.id, -e.amount, object, &value)?;
    ctx.history(
        "expense",
        id,
        format!(
            "expense '{}' of {} {} charged to subaccount {}",
            e.name,
            money::format_minor(e.amount, sub.currency.scale),
            sub.currency.iso,
            sub.id
        ),
    )?;
    Ok(id)
}

/// Charges an expense: discount, included tax, the credit check, the debit, then payment from
/// free funds. Refused, changing nothing, when `balance + creditlimit < amount` unless the
/// expense is postpaid or the subaccount allows postpaid services.
pub fn add_expense(ctx: &Ctx, e: &NewExpense) -> FuncResult<i64> {
    let sub = subaccount(ctx.db, e.subaccount)?;
    if sub.suspended {
        return Err(FuncError::value(
            "subaccount",
            sub.id.to_string(),
            format!("The subaccount {} is suspended", sub.id),
        ));
    }
    if e.price <= 0 {
        return Err(FuncError::value(
            "amount",
            money::format_minor(e.price, sub.currency.scale),
            "The amount must be positive",
        ));
    }
    let discount = choose_discount(
        ctx.db,
        sub.project,
        sub.account,
        &e.realdate,
        &e.operation,
        &e.itemtype,
    )?;
    let discountamount = match discount {
        Some(d) => scale_amount(
            e.price,
            sub.currency.scale,
            d.percentage,
            Decimal::ONE_HUNDRED,
            sub.currency.scale,
            "amount",
        )?
        .clamp(0, e.price),
        None => 0,
    };
    let amount = e.price - discountamount;
    let taxrate = match e.taxrate {
        Some(r) => r,
        None => tax_rate(ctx.db, sub.project, sub.account, &e.itemtype)?,
    };
    let taxamount = included_tax(amount, sub.currency.scale, taxrate)?;
    let available = sub.balance.saturating_add(sub.creditlimit);
    if !(e.postpaid || sub.allowpostpaid) && available < amount {
        let f = |m: i64| money::format_minor(m, sub.currency.scale);
        return Err(FuncError::value(
            "amount",
            f(amount),
            format!(
                "Insufficient funds: the balance {} {iso} plus the credit limit {} {iso} is less than {} {iso}",
                f(sub.balance),
                f(sub.creditlimit),
                f(amount),
                iso = sub.currency.iso
            ),
        ));
    }
    let id = insert_expense(
        ctx,
        &sub,
        &ExpenseRow {
            name: e.name.clone(),
            item: e.item.clone(),
            itemtype: e.itemtype.clone(),
            operation: e.operation.clone(),
            amount,
            taxrate: taxrate.normalize().to_string(),
            taxamount,
            discountamount,
            discount: discount.map(|d| d.id),
            payment: None,
            realdate: Some(e.realdate.clone()),
            cdate: e.cdate.clone(),
            postpaid: e.postpaid,
        },
        "amount",
    )?;
    allocate(ctx, sub.id)?;
    Ok(id)
}

/// Records that `amount` of payment `payment` pays expense `expense`.
pub fn allocate_one(ctx: &Ctx, payment: i64, expense: i64, amount: i64) -> FuncResult<()> {
    ctx.db
        .prepare_cached(
            "INSERT INTO payment_expense (payment_id, expense_id, amount, created) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![payment, expense, amount, ctx.now])?;
    move_allocation(ctx, payment, expense, amount)
}

/// Pays the subaccount's unpaid expenses, oldest first, from the free parts of its credited
/// payments, oldest first.
pub fn allocate(ctx: &Ctx, subaccount: i64) -> FuncResult<()> {
    loop {
        let expense: Option<(i64, i64)> = ctx
            .db
            .prepare_cached(
                "SELECT id, notpayd FROM expense WHERE subaccount_id = ?1 AND notpayd > 0 AND deleted = 0
                 ORDER BY id LIMIT 1",
            )?
            .query_row([subaccount], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((expense, notpayd)) = expense else {
            return Ok(());
        };
        let payment: Option<(i64, i64)> = ctx
            .db
            .prepare_cached(
                "SELECT id, subaccountamount - usedamount - refundedamount FROM payment
                 WHERE subaccount_id = ?1 AND status IN (4, 5) AND subaccountamount - usedamount - refundedamount > 0
                 ORDER BY paydate, id LIMIT 1",
            )?
            .query_row([subaccount], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((payment, free)) = payment else {
            return Ok(());
        };
        allocate_one(ctx, payment, expense, notpayd.min(free))?;
    }
}

/// Releases up to `amount` of the live allocations matching `filter` (`payment_id = ?1` or
/// `expense_id = ?1`, optionally narrowed by `?2`), newest first. Answers what was released.
fn release(
    ctx: &Ctx,
    column: &str,
    id: i64,
    other: Option<i64>,
    amount: Option<i64>,
) -> FuncResult<i64> {
    let other_col = if column == "payment_id" {
        "expense_id"
    } else {
        "payment_id"
    };
    let sql = format!(
        "SELECT id, payment_id, expense_id, amount FROM payment_expense
         WHERE {column} = ?1 AND (?2 IS NULL OR {other_col} = ?2) AND released = 0 ORDER BY id DESC"
    );
    let rows: Vec<(i64, i64, i64, i64)> = ctx
        .db
        .prepare_cached(&sql)?
        .query_map(params![id, other], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut left = amount.unwrap_or(i64::MAX);
    let mut released = 0;
    for (row, payment, expense, value) in rows {
        if left == 0 {
            break;
        }
        let take = value.min(left);
        ctx.db
            .prepare_cached(
                "UPDATE payment_expense SET released = 1, released_at = ?2 WHERE id = ?1",
            )?
            .execute(params![row, ctx.now])?;
        if take < value {
            ctx.db
                .prepare_cached(
                    "INSERT INTO payment_expense (payment_id, expense_id, amount, created) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![payment, expense, value - take, ctx.now])?;
        }
        move_allocation(ctx, payment, expense, -take)?;
        left -= take;
        released += take;
    }
    Ok(released)
}

/// Releases what payment `payment` pays of expense `expense` (all of it, or `amount`); the
/// expense becomes unpaid by that much and the payment's funds free. Answers what was released.
pub fn release_allocation(
    ctx: &Ctx,
    payment: i64,
    expense: i64,
    amount: Option<i64>,
) -> FuncResult<i64> {
    release(ctx, "payment_id", payment, Some(expense), amount)
}

/// Deletes an expense: marks it deleted, releases its allocations, returns its amount to the
/// balance, and lets the freed funds pay other unpaid expenses.
pub fn delete_expense(ctx: &Ctx, id: i64) -> FuncResult<()> {
    let row: Option<(i64, i64, bool)> = ctx
        .db
        .prepare_cached("SELECT subaccount_id, amount, deleted FROM expense WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let (subaccount, amount, deleted) =
        row.ok_or_else(|| FuncError::missed_object("expense", id))?;
    if deleted {
        return Err(FuncError::value(
            "elid",
            id.to_string(),
            format!("The expense {id} is already deleted"),
        ));
    }
    release(ctx, "expense_id", id, None, None)?;
    ctx.db
        .prepare_cached("UPDATE expense SET deleted = 1, deleted_at = ?2 WHERE id = ?1")?
        .execute(params![id, ctx.now])?;
    move_balance(ctx, subaccount, amount, "elid", &id.to_string())?;
    let sub = subaccount_currency(ctx.db, subaccount)?;
    ctx.history(
        "expense",
        id,
        format!(
            "deleted; {} {} returned to subaccount {subaccount}",
            money::format_minor(amount, sub.scale),
            sub.iso
        ),
    )?;
    allocate(ctx, subaccount)
}

pub fn subaccount_currency(conn: &Connection, subaccount: i64) -> FuncResult<Currency> {
    let cur: i64 = conn
        .prepare_cached("SELECT currency_id FROM subaccount WHERE id = ?1")?
        .query_row([subaccount], |r| r.get(0))
        .optional()?
        .ok_or_else(|| FuncError::missed_object("subaccount", subaccount))?;
    currency(conn, cur)
}

/// What is left to refund of a payment: (subaccount currency, payment method currency).
pub fn refundable(conn: &Connection, p: &Payment) -> FuncResult<(i64, i64)> {
    let refunded_pm: i64 = conn
        .prepare_cached(
            "SELECT coalesce(sum(paymethodamount), 0) FROM refund WHERE payment_id = ?1 AND status IN (5, 6)",
        )?
        .query_row([p.id], |r| r.get(0))?;
    Ok((
        p.subaccountamount - p.refundedamount,
        p.paymethodamount - refunded_pm,
    ))
}

fn ensure_refundable(p: &Payment) -> FuncResult<()> {
    if p.restrictrefund {
        return Err(FuncError::value(
            "restrictrefund",
            "on",
            format!("Refunds of payment {} are prohibited", p.id),
        ));
    }
    match p.status {
        status::PAID | status::REFUND_PENDING => Ok(()),
        status::REFUNDED => Err(FuncError::value(
            "elid",
            p.id.to_string(),
            format!("The payment {} is already refunded in full", p.id),
        )),
        s => Err(FuncError::value(
            "elid",
            p.id.to_string(),
            format!(
                "The payment {} is {} and has nothing to refund",
                p.id,
                status::name(s)
            ),
        )),
    }
}

/// Refunds `amount` (minor units of the payment method's currency) of a payment manually.
pub fn refund_payment(ctx: &Ctx, id: i64, amount: i64, description: &str) -> FuncResult<i64> {
    refund_payment_as(ctx, id, amount, description, false)
}

/// Records a refund a gateway has yet to confirm: the refund row in status 5, the payment in
/// status 5, the balance debited at once (as for a done refund) so that the money cannot be
/// spent or refunded twice meanwhile. [`complete_refund`] finishes it.
pub fn start_gateway_refund(ctx: &Ctx, id: i64, amount: i64, description: &str) -> FuncResult<i64> {
    refund_payment_as(ctx, id, amount, description, true)
}

/// Marks a pending refund (status 5) done, once: answers false, changing nothing, when it is
/// not pending. The payment leaves status 5 when no other refund of it is pending: to 6 when
/// refunded in full, else back to 4.
pub fn complete_refund(ctx: &Ctx, refund: i64, external_id: Option<&str>) -> FuncResult<bool> {
    let n = ctx
        .db
        .prepare_cached(
            "UPDATE refund SET status = 6, completed = ?2, error = '', external_id = coalesce(?3, external_id)
             WHERE id = ?1 AND status = 5",
        )?
        .execute(params![refund, ctx.now, external_id])?;
    if n == 0 {
        return Ok(false);
    }
    let payment: i64 = ctx
        .db
        .prepare_cached("SELECT payment_id FROM refund WHERE id = ?1")?
        .query_row([refund], |r| r.get(0))?;
    ctx.db
        .prepare_cached(
            "UPDATE payment SET status = CASE WHEN refundedamount >= subaccountamount THEN 6 ELSE 4 END
             WHERE id = ?1 AND status = 5
               AND NOT EXISTS (SELECT 1 FROM refund WHERE payment_id = ?1 AND status = 5)",
        )?
        .execute([payment])?;
    ctx.history(
        "payment",
        payment,
        format!("refund {refund} confirmed by the gateway"),
    )?;
    Ok(true)
}

fn refund_payment_as(
    ctx: &Ctx,
    id: i64,
    amount: i64,
    description: &str,
    pending: bool,
) -> FuncResult<i64> {
    let p = payment(ctx.db, id)?;
    ensure_refundable(&p)?;
    let pm_cur = currency(ctx.db, p.currency)?;
    let sub_cur = subaccount_currency(ctx.db, p.subaccount)?;
    let (left_sub, left_pm) = refundable(ctx.db, &p)?;
    let f = |m: i64| money::format_minor(m, pm_cur.scale);
    if amount <= 0 {
        return Err(FuncError::value(
            "amount",
            f(amount),
            "The refund must be positive",
        ));
    }
    if amount > left_pm {
        return Err(FuncError::value(
            "amount",
            f(amount),
            format!(
                "At most {} {} of payment {id} can be refunded",
                f(left_pm),
                pm_cur.iso
            ),
        ));
    }
    let sub_amount = if amount == left_pm {
        left_sub
    } else {
        proportional(amount, p.subaccountamount, p.paymethodamount)?
    };
    if amount < left_pm && sub_amount >= left_sub {
        // Taking what is left in the subaccount's currency would mark the payment refunded
        // (status 6) while part of it is still owed in the method's currency.
        let s = |m: i64| money::format_minor(m, sub_cur.scale);
        return Err(FuncError::value(
            "amount",
            f(amount),
            format!(
                "Refunding {} {} would return all that is left of payment {id} in {} ({} {}): refund the rest, {} {}, instead",
                f(amount),
                pm_cur.iso,
                sub_cur.iso,
                s(left_sub),
                sub_cur.iso,
                f(left_pm),
                pm_cur.iso
            ),
        ));
    }
    if sub_amount <= 0 {
        return Err(FuncError::value(
            "amount",
            f(amount),
            format!("The refund is less than one minor unit of {}", sub_cur.iso),
        ));
    }
    refund_exact(ctx, &p, sub_amount, amount, description, pending)
}

/// `round(x * num / den)` over integers of minor units (the currencies' scales cancel out when
/// `num` and `den` are amounts of the same two currencies).
fn proportional(x: i64, num: i64, den: i64) -> FuncResult<i64> {
    if den == 0 {
        return Err(FuncError::value("amount", "0", "Division by zero"));
    }
    let v = Decimal::from(x)
        .checked_mul(Decimal::from(num))
        .and_then(|v| v.checked_div(Decimal::from(den)))
        .ok_or_else(|| too_large("amount"))?;
    i64::try_from(money::round(v, 0).mantissa())
        .ok()
        .and_then(|v| money::bounded(v, "amount").ok())
        .ok_or_else(|| too_large("amount"))
}

/// Records a done refund of `sub_amount` (subaccount currency) and `pm_amount` (method
/// currency), releasing the payment's allocations beyond its free part.
fn refund_exact(
    ctx: &Ctx,
    p: &Payment,
    sub_amount: i64,
    pm_amount: i64,
    description: &str,
    pending: bool,
) -> FuncResult<i64> {
    let free = p.free();
    if sub_amount > free {
        release(ctx, "payment_id", p.id, None, Some(sub_amount - free))?;
    }
    let (status, completed) = if pending {
        (status::REFUND_PENDING, None)
    } else {
        (status::REFUNDED, Some(ctx.now.as_str()))
    };
    ctx.db
        .prepare_cached(
            "INSERT INTO refund (payment_id, amount, paymethodamount, description, status, created, completed)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![p.id, sub_amount, pm_amount, description, status, ctx.now, completed])?;
    let refund = ctx.db.last_insert_rowid()?;
    let now = payment(ctx.db, p.id)?;
    let refunded = now
        .refundedamount
        .checked_add(sub_amount)
        .filter(|&r| {
            r <= now.subaccountamount
                && r.checked_add(now.usedamount)
                    .is_some_and(|s| s <= now.subaccountamount)
        })
        .ok_or_else(|| {
            FuncError::internal(format!(
                "refund {refund} exceeds what payment {} can refund",
                p.id
            ))
        })?;
    // A payment with a refund pending stays in status 5 until that one completes.
    let new_status = if pending || now.status == status::REFUND_PENDING {
        status::REFUND_PENDING
    } else if refunded >= now.subaccountamount {
        status::REFUNDED
    } else {
        now.status
    };
    ctx.db
        .prepare_cached("UPDATE payment SET refundedamount = ?2, status = ?3 WHERE id = ?1")?
        .execute(params![p.id, refunded, new_status])?;
    let pm_cur = currency(ctx.db, p.currency)?;
    move_balance(
        ctx,
        p.subaccount,
        -sub_amount,
        "amount",
        &money::format_minor(pm_amount, pm_cur.scale),
    )?;
    let mut text = format!(
        "refund {refund}: {} {} {}",
        money::format_minor(pm_amount, pm_cur.scale),
        pm_cur.iso,
        if pending {
            "asked of the gateway (pending)"
        } else {
            "returned"
        }
    );
    if !description.is_empty() {
        text.push_str(&format!(" ({description})"));
    }
    ctx.history("payment", p.id, text)?;
    allocate(ctx, p.subaccount)?;
    Ok(refund)
}

/// Returns `amount` (default: all) of a positive balance through refunds of the newest
/// refundable payments' free parts. Refused, changing nothing, when the balance or the free
/// funds of refundable payments do not cover it.
pub fn refund_subaccount(
    ctx: &Ctx,
    subaccount_id: i64,
    amount: Option<i64>,
    description: &str,
) -> FuncResult<Vec<i64>> {
    let sub = subaccount(ctx.db, subaccount_id)?;
    let f = |m: i64| money::format_minor(m, sub.currency.scale);
    let target = amount.unwrap_or(sub.balance);
    if target <= 0 {
        return Err(FuncError::value(
            "amount",
            f(target),
            "There is no positive balance to refund",
        ));
    }
    if target > sub.balance {
        return Err(FuncError::value(
            "amount",
            f(target),
            format!(
                "At most the balance, {} {}, can be refunded",
                f(sub.balance),
                sub.currency.iso
            ),
        ));
    }
    let ids: Vec<i64> = ctx
        .db
        .prepare_cached(
            "SELECT id FROM payment WHERE subaccount_id = ?1 AND status IN (4, 5) AND restrictrefund = 0
               AND subaccountamount - usedamount - refundedamount > 0
             ORDER BY paydate DESC, id DESC",
        )?
        .query_map([subaccount_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut left = target;
    let mut refunds = Vec::new();
    // Free funds of payments passed over because their share does not convert into the
    // method's currency: less than one minor unit of it, or all that is left of it while some
    // stays in the subaccount's currency (which would leave the payment unrefundable).
    let mut passed_over = 0i64;
    for id in ids {
        if left == 0 {
            break;
        }
        let p = payment(ctx.db, id)?;
        let part = p.free().min(left);
        let (left_sub, left_pm) = refundable(ctx.db, &p)?;
        let pm_part = if part == left_sub {
            left_pm
        } else {
            proportional(part, p.paymethodamount, p.subaccountamount)?
        };
        if pm_part <= 0 || (part < left_sub && pm_part >= left_pm) {
            passed_over = passed_over.saturating_add(part);
            continue;
        }
        refunds.push(refund_exact(ctx, &p, part, pm_part, description, false)?);
        left -= part;
    }
    if left > 0 {
        let done = target - left;
        let mut why = Vec::new();
        if passed_over > 0 {
            why.push(format!(
                "{} {} of the free funds are in payments where that share would round to nothing, or to all that is left, in the payment method's currency",
                f(passed_over.min(left)),
                sub.currency.iso
            ));
        }
        if left > passed_over {
            why.push("the rest was not paid by refundable payments".to_string());
        }
        let head = if done == 0 {
            format!(
                "Nothing of {} {} can be refunded",
                f(target),
                sub.currency.iso
            )
        } else {
            format!(
                "Only {} of {} {} can be refunded",
                f(done),
                f(target),
                sub.currency.iso
            )
        };
        return Err(FuncError::value(
            "amount",
            f(target),
            format!("{head}: {}", why.join("; ")),
        ));
    }
    ctx.history(
        "subaccount",
        subaccount_id,
        format!("{} {} refunded", f(target), sub.currency.iso),
    )?;
    Ok(refunds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        money::parse_decimal(s, "x").expect("decimal")
    }

    #[test]
    fn included_tax_rounds_half_away_from_zero_per_line() {
        assert_eq!(included_tax(12_000, 2, d("20")), Ok(2_000));
        assert_eq!(included_tax(1_200, 2, d("7")), Ok(79)); // 0.78504..
        assert_eq!(included_tax(1_070, 2, d("7")), Ok(70));
        assert_eq!(included_tax(105, 2, d("5")), Ok(5)); // 0.05
        assert_eq!(included_tax(999, 0, d("19")), Ok(160)); // 159.504.. -> 160
        assert_eq!(included_tax(1_000, 2, d("0")), Ok(0));
    }

    #[test]
    fn conversions_round_once_to_the_target_scale() {
        // 10.00 EUR at 1.0837 USD = 10.837 -> 10.84
        assert_eq!(
            scale_amount(1_000, 2, d("1.0837"), d("1"), 2, "a"),
            Ok(1_084)
        );
        // 1001 JPY at 0.67 USD per 100 JPY = 6.7067 -> 6.71
        assert_eq!(scale_amount(1_001, 0, d("0.67"), d("100"), 2, "a"), Ok(671));
        // 0.005 -> 0.01 (half away from zero)
        assert_eq!(scale_amount(1, 2, d("0.5"), d("1"), 2, "a"), Ok(1));
        assert!(scale_amount(1, 2, d("1"), d("0"), 2, "a").is_err());
        assert!(scale_amount(i64::MAX, 2, d("1000000"), d("1"), 2, "a").is_err());
    }

    #[test]
    fn proportional_shares_round_half_away_from_zero() {
        assert_eq!(proportional(500, 671, 1_001), Ok(335));
        assert_eq!(proportional(1, 1, 2), Ok(1));
        assert_eq!(proportional(1, 1, 3), Ok(0));
        assert!(proportional(1, 1, 0).is_err());
    }

    #[test]
    fn rates_give_their_factor() {
        let r = Rate {
            num: d("95"),
            den: d("100"),
        };
        assert_eq!(r.factor_text(), "0.95");
        assert_eq!(Rate::ONE.factor_text(), "1");
    }
}
