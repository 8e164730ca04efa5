//! Many new payments in one statement, for the kill test and the load bench: copies of a
//! payment made through the engine (so priced and numbered by the ledger), each with a history
//! row of its creation. New payments do not touch balances, so the ledger stays consistent.

use rusqlite::{Connection, params};

/// Adds `copies` new payments (status 1) like payment `template`: same client, subaccount,
/// method and amounts, numbered `NUMBER-K`. Runs in the caller's transaction.
pub fn copy_payment(conn: &Connection, template: i64, copies: i64) -> rusqlite::Result<()> {
    let first_new: i64 =
        conn.query_row("SELECT coalesce(max(id), 0) + 1 FROM payment", [], |r| {
            r.get(0)
        })?;
    conn.execute(
        "WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM k WHERE n < ?2)
         INSERT INTO payment (number, project_id, account_id, subaccount_id, paymethod_id, currency_id, status,
                              createdate, description, subaccountamount, paymethodamount, commissionamount,
                              taxamount, rate, restrictrefund)
         SELECT p.number || '-' || k.n, p.project_id, p.account_id, p.subaccount_id, p.paymethod_id,
                p.currency_id, 1, p.createdate, p.description, p.subaccountamount, p.paymethodamount,
                p.commissionamount, p.taxamount, p.rate, p.restrictrefund
         FROM payment p, k WHERE p.id = ?1 AND p.status = 1 ORDER BY k.n",
        params![template, copies],
    )?;
    conn.execute(
        "INSERT INTO history (changedate, object_type, object_id, description, user_login, ip, action)
         SELECT createdate, 'payment', id, 'created (a copy of payment ' || ?1 || ')', 'root', 'local',
                'payment.edit'
         FROM payment WHERE id >= ?2",
        params![template, first_new],
    )?;
    Ok(())
}
