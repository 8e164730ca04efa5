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
use rusqlite::Connection;
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

/// Each query answers `(id, message)` rows, one per violation.
const CHECKS: &[(&str, &str)] = &[
    (
        "subaccount",
        "SELECT s.id, 'balance ' || s.balance || ' <> credited ' || c.credited || ' - refunds ' || c.refunds
                || ' - expenses ' || c.expenses || ' (minor units)'
         FROM subaccount s JOIN (
             SELECT s2.id AS id,
                 (SELECT coalesce(sum(subaccountamount), 0) FROM payment WHERE subaccount_id = s2.id AND status IN (4, 5, 6)) AS credited,
                 (SELECT coalesce(sum(r.amount), 0) FROM refund r JOIN payment p ON p.id = r.payment_id
                   WHERE p.subaccount_id = s2.id AND r.status IN (5, 6)) AS refunds,
                 (SELECT coalesce(sum(amount), 0) FROM expense WHERE subaccount_id = s2.id AND deleted = 0) AS expenses
             FROM subaccount s2) c ON c.id = s.id
         WHERE s.balance <> c.credited - c.refunds - c.expenses",
    ),
    (
        "payment",
        "SELECT p.id, 'usedamount ' || p.usedamount || ' <> allocations ' || a.total
         FROM payment p JOIN (SELECT p2.id AS id, (SELECT coalesce(sum(amount), 0) FROM payment_expense
                               WHERE payment_id = p2.id AND released = 0) AS total FROM payment p2) a ON a.id = p.id
         WHERE p.usedamount <> a.total",
    ),
    (
        "payment",
        "SELECT p.id, 'refundedamount ' || p.refundedamount || ' <> refunds ' || r.total
         FROM payment p JOIN (SELECT p2.id AS id, (SELECT coalesce(sum(amount), 0) FROM refund
                               WHERE payment_id = p2.id AND status IN (5, 6)) AS total FROM payment p2) r ON r.id = p.id
         WHERE p.refundedamount <> r.total",
    ),
    (
        "payment",
        "SELECT id, 'usedamount ' || usedamount || ' + refundedamount ' || refundedamount
                || ' exceed subaccountamount ' || subaccountamount
         FROM payment WHERE usedamount + refundedamount > subaccountamount",
    ),
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
        "SELECT e.id, 'notpayd ' || e.notpayd || ' <> amount ' || e.amount || ' - allocations ' || a.total
         FROM expense e JOIN (SELECT e2.id AS id, (SELECT coalesce(sum(amount), 0) FROM payment_expense
                               WHERE expense_id = e2.id AND released = 0) AS total FROM expense e2) a ON a.id = e.id
         WHERE e.notpayd <> e.amount - a.total OR e.notpayd < 0",
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
        "payment",
        "SELECT p.id, 'refunds of ' || r.total || ' exceed paymethodamount ' || p.paymethodamount || ' (method currency)'
         FROM payment p JOIN (SELECT payment_id, sum(paymethodamount) AS total FROM refund
                               WHERE status IN (5, 6) GROUP BY payment_id) r ON r.payment_id = p.id
         WHERE r.total > p.paymethodamount",
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
    for (object, sql) in CHECKS {
        let mut stmt = conn.prepare(sql)?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (id, message) = row?;
            found.push(Violation {
                object,
                id,
                message,
            });
        }
    }
    Ok(found)
}
