//! `billhost check`: the ledger's invariants verified over a whole database, read-only.
//!
//! - per subaccount: `balance = credited payments - refunds - expenses (not deleted)`;
//! - per payment: `usedamount` = its live allocations, `refundedamount` = its refunds,
//!   `usedamount + refundedamount <= subaccountamount`, refunds in the method's currency within
//!   `paymethodamount`, only credited payments pay expenses;
//! - per expense: `notpayd = amount - live allocations >= 0`, a deleted expense has none;
//! - per allocation: payment and expense belong to the same subaccount;
//! - a payment is in status 5 exactly while one of its refunds is pending at a gateway.

use crate::error::FuncResult;
use crate::store::Connection;
use crate::store::ValueRef;
use std::collections::HashMap;
use std::fmt;

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub object: &'static str,
    pub id: i64,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.object, self.id, self.message)
    }
}

/// The money columns, each of which must hold an integer (migration 6 makes the schema refuse
/// anything else; a database written before it may still hold an overflowed REAL).
const MONEY_COLUMNS: &[(&str, &str)] = &[
    ("subaccount", "balance"),
    ("subaccount", "creditlimit"),
    ("payment", "subaccountamount"),
    ("payment", "paymethodamount"),
    ("payment", "usedamount"),
    ("payment", "refundedamount"),
    ("payment", "commissionamount"),
    ("payment", "taxamount"),
    ("expense", "amount"),
    ("expense", "notpayd"),
    ("expense", "taxamount"),
    ("expense", "discountamount"),
    ("payment_expense", "amount"),
    ("refund", "amount"),
    ("refund", "paymethodamount"),
    ("orderinfo", "cost"),
];

/// Each query answers `(id, message)` rows, one per violation. None of them does arithmetic on
/// amounts: sums and differences are computed in Rust, in `i128` ([`sums`]), so that no ledger the
/// engine accepted can make the check itself overflow.
const CHECKS: &[(&str, &str)] = &[
    (
        "payment",
        "SELECT id, 'status ' || status || ' is not credited but it has used or refunded funds'
         FROM payment WHERE status NOT IN (4, 5, 6) AND (usedamount <> 0 OR refundedamount <> 0)",
    ),
    (
        "payment",
        "SELECT id, 'status 6 (refunded) but refundedamount ' || refundedamount || ' <> subaccountamount ' || subaccountamount
         FROM payment WHERE status = 6 AND refundedamount <> subaccountamount",
    ),
    (
        "expense",
        "SELECT e.id, 'deleted but still paid by allocation ' || pe.id
         FROM expense e JOIN payment_expense pe ON pe.expense_id = e.id AND pe.released = 0
         WHERE e.deleted = 1",
    ),
    (
        "payment_expense",
        "SELECT pe.id, 'payment ' || p.id || ' and expense ' || e.id || ' belong to different subaccounts'
         FROM payment_expense pe JOIN payment p ON p.id = pe.payment_id JOIN expense e ON e.id = pe.expense_id
         WHERE p.subaccount_id <> e.subaccount_id",
    ),
    (
        "refund",
        "SELECT r.id, 'refund of payment ' || r.payment_id || ' in status ' || p.status
         FROM refund r JOIN payment p ON p.id = r.payment_id
         WHERE r.status IN (5, 6) AND p.status NOT IN (4, 5, 6)",
    ),
    (
        "refund",
        "SELECT r.id, 'pending at the gateway but its payment ' || r.payment_id || ' is in status ' || p.status
         FROM refund r JOIN payment p ON p.id = r.payment_id
         WHERE r.status = 5 AND p.status <> 5",
    ),
    (
        "payment",
        "SELECT p.id, 'status 5 (refund pending) without a pending refund'
         FROM payment p WHERE p.status = 5
           AND NOT EXISTS (SELECT 1 FROM refund r WHERE r.payment_id = p.id AND r.status = 5)",
    ),
];

/// Every violation of the ledger's invariants in the database; empty when it is consistent.
pub fn check(conn: &Connection) -> FuncResult<Vec<Violation>> {
    let mut found = Vec::new();
    for (table, column) in MONEY_COLUMNS {
        let object = table_object(table);
        let sql = format!(
            "SELECT id, '{column} is ' || typeof({column}) || ' ' || quote({column}) || ', not integer minor units'
             FROM {table} WHERE typeof({column}) <> 'integer'"
        );
        collect(conn, object, &sql, &mut found)?;
    }
    for (object, sql) in CHECKS {
        collect(conn, object, sql, &mut found)?;
    }
    sums(conn, &mut found)?;
    Ok(found)
}

fn table_object(table: &str) -> &'static str {
    match table {
        "subaccount" => "subaccount",
        "payment" => "payment",
        "expense" => "expense",
        "payment_expense" => "payment_expense",
        "refund" => "refund",
        _ => "orderinfo",
    }
}

fn collect(
    conn: &Connection,
    object: &'static str,
    sql: &str,
    found: &mut Vec<Violation>,
) -> FuncResult<()> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([], |r| Ok((r.get::<i64>(0)?, r.get::<String>(1)?)))?;
    for row in rows {
        let (id, message) = row?;
        found.push(Violation {
            object,
            id,
            message,
        });
    }
    Ok(())
}

/// Reads `(id, key, amount...)` rows whose amounts are integers (the others are reported by the
/// type checks) and hands each to `f`.
fn each_row<const N: usize>(
    conn: &Connection,
    sql: &str,
    mut f: impl FnMut(i64, [i128; N]),
) -> FuncResult<()> {
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let mut values = [0i128; N];
        let mut all_integers = true;
        for (i, v) in values.iter_mut().enumerate() {
            match r.get_ref(i + 1)? {
                ValueRef::Integer(n) => *v = i128::from(n),
                _ => all_integers = false,
            }
        }
        if all_integers {
            f(id, values);
        }
    }
    Ok(())
}

/// The invariants that add amounts up, summed in `i128`.
fn sums(conn: &Connection, found: &mut Vec<Violation>) -> FuncResult<()> {
    #[derive(Default)]
    struct Sub {
        credited: i128,
        refunds: i128,
        expenses: i128,
    }
    #[derive(Default)]
    struct Pay {
        allocated: i128,
        refunded: i128,
        refunded_pm: i128,
    }
    let mut subs: HashMap<i64, Sub> = HashMap::new();
    let mut pays: HashMap<i64, Pay> = HashMap::new();
    let mut expense_allocated: HashMap<i64, i128> = HashMap::new();
    let mut payment_sub: HashMap<i64, i64> = HashMap::new();
    each_row(
        conn,
        "SELECT id, subaccount_id, status, subaccountamount FROM payment",
        |id, [sub, status, amount]| {
            payment_sub.insert(id, sub as i64);
            if matches!(status, 4..=6) {
                subs.entry(sub as i64).or_default().credited += amount;
            }
        },
    )?;
    each_row(
        conn,
        "SELECT id, payment_id, amount, paymethodamount FROM refund WHERE status IN (5, 6)",
        |_, [payment, amount, pm]| {
            let pay = pays.entry(payment as i64).or_default();
            pay.refunded += amount;
            pay.refunded_pm += pm;
            if let Some(sub) = payment_sub.get(&(payment as i64)) {
                subs.entry(*sub).or_default().refunds += amount;
            }
        },
    )?;
    each_row(
        conn,
        "SELECT id, subaccount_id, amount FROM expense WHERE deleted = 0",
        |_, [sub, amount]| subs.entry(sub as i64).or_default().expenses += amount,
    )?;
    each_row(
        conn,
        "SELECT id, payment_id, expense_id, amount FROM payment_expense WHERE released = 0",
        |_, [payment, expense, amount]| {
            pays.entry(payment as i64).or_default().allocated += amount;
            *expense_allocated.entry(expense as i64).or_default() += amount;
        },
    )?;
    let mut push = |object: &'static str, id: i64, message: String| {
        found.push(Violation {
            object,
            id,
            message,
        })
    };
    each_row(
        conn,
        "SELECT id, balance FROM subaccount",
        |id, [balance]| {
            let s = subs.remove(&id).unwrap_or_default();
            if balance != s.credited - s.refunds - s.expenses {
                push(
                    "subaccount",
                    id,
                    format!(
                        "balance {balance} <> credited {} - refunds {} - expenses {} (minor units)",
                        s.credited, s.refunds, s.expenses
                    ),
                );
            }
        },
    )?;
    each_row(
        conn,
        "SELECT id, subaccountamount, paymethodamount, usedamount, refundedamount FROM payment",
        |id, [total, pm_total, used, refunded]| {
            let p = pays.remove(&id).unwrap_or_default();
            if used != p.allocated {
                push(
                    "payment",
                    id,
                    format!("usedamount {used} <> allocations {}", p.allocated),
                );
            }
            if refunded != p.refunded {
                push(
                    "payment",
                    id,
                    format!("refundedamount {refunded} <> refunds {}", p.refunded),
                );
            }
            if used + refunded > total {
                push(
                    "payment",
                    id,
                    format!(
                        "usedamount {used} + refundedamount {refunded} exceed subaccountamount {total}"
                    ),
                );
            }
            if p.refunded_pm > pm_total {
                push(
                    "payment",
                    id,
                    format!(
                        "refunds of {} exceed paymethodamount {pm_total} (method currency)",
                        p.refunded_pm
                    ),
                );
            }
        },
    )?;
    each_row(
        conn,
        "SELECT id, amount, notpayd FROM expense",
        |id, [amount, notpayd]| {
            let allocated = expense_allocated.remove(&id).unwrap_or_default();
            if notpayd != amount - allocated || notpayd < 0 {
                push(
                    "expense",
                    id,
                    format!("notpayd {notpayd} <> amount {amount} - allocations {allocated}"),
                );
            }
        },
    )?;
    Ok(())
}
