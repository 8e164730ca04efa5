//! The raw rusqlite baseline the benches compare `payment.setpaid` with: the same writes by
//! hand, no engine: one transaction each, or in group-commit batches (a savepoint each).

use rusqlite::{Connection, OptionalExtension, params};

/// What `payment.setpaid` writes, by hand: read the payment, credit it (status, paydate,
/// balance), look for unpaid expenses, write the history row; one transaction.
pub fn raw_setpaid(conn: &Connection, id: i64, now: &str) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    setpaid_writes(conn, id, now)?;
    conn.execute_batch("COMMIT")
}

/// `ids` set paid in one transaction, each in a savepoint of its own: group commit by hand.
#[allow(dead_code)]
pub fn raw_setpaid_batch(conn: &Connection, ids: &[i64], now: &str) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    for &id in ids {
        conn.prepare_cached("SAVEPOINT func")?.execute([])?;
        setpaid_writes(conn, id, now)?;
        conn.prepare_cached("RELEASE func")?.execute([])?;
    }
    conn.execute_batch("COMMIT")
}

fn setpaid_writes(conn: &Connection, id: i64, now: &str) -> rusqlite::Result<()> {
    let (status, subaccount, amount): (i64, i64, i64) = conn
        .prepare_cached(
            "SELECT status, subaccount_id, subaccountamount FROM payment WHERE id = ?1",
        )?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    assert!(status == 1 || status == 2);
    conn.prepare_cached("UPDATE payment SET status = 4, paydate = ?2 WHERE id = ?1")?
        .execute(params![id, now])?;
    conn.prepare_cached("UPDATE subaccount SET balance = balance + ?2 WHERE id = ?1")?
        .execute(params![subaccount, amount])?;
    let unpaid: Option<i64> = conn
        .prepare_cached(
            "SELECT id FROM expense WHERE subaccount_id = ?1 AND notpayd > 0 AND deleted = 0 ORDER BY id LIMIT 1",
        )?
        .query_row([subaccount], |r| r.get(0))
        .optional()?;
    assert!(unpaid.is_none());
    conn.prepare_cached(
        "INSERT INTO history (changedate, object_type, object_id, description, user_login, ip, action)
         VALUES (?1, 'payment', ?2, ?3, 'root', 'local', 'payment.setpaid')",
    )?
    .execute(params![
        now,
        id,
        format!("paid: {}.00 USD credited to subaccount {subaccount}", amount / 100)
    ])?;
    Ok(())
}
