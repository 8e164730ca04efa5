//! The raw `postgres` crate baseline the benches compare `payment.setpaid` on PostgreSQL
//! with: the statements of `raw_setpaid` in PostgreSQL's dialect, prepared once, one
//! transaction each (the writers' advisory lock included, as every engine write takes it).

use billhost::store;

/// The statements setpaid runs, prepared once on the raw connection (as the engine keeps its
/// own prepared per connection).
pub struct RawPg {
    lock: postgres::Statement,
    payment: postgres::Statement,
    paid: postgres::Statement,
    balance: postgres::Statement,
    credit: postgres::Statement,
    unpaid: postgres::Statement,
    history: postgres::Statement,
}

impl RawPg {
    pub fn prepare(c: &mut postgres::Client) -> Result<RawPg, postgres::Error> {
        Ok(RawPg {
            lock: c.prepare("SELECT pg_advisory_xact_lock($1)")?,
            payment: c.prepare(
                "SELECT status, subaccount_id, subaccountamount FROM payment WHERE id = $1",
            )?,
            paid: c.prepare("UPDATE payment SET status = 4, paydate = $2 WHERE id = $1")?,
            balance: c.prepare("SELECT balance FROM subaccount WHERE id = $1")?,
            credit: c.prepare("UPDATE subaccount SET balance = $2 WHERE id = $1")?,
            unpaid: c.prepare(
                "SELECT id FROM expense WHERE subaccount_id = $1 AND notpayd > 0 AND deleted = 0 ORDER BY id LIMIT 1",
            )?,
            history: c.prepare(
                "INSERT INTO history (changedate, object_type, object_id, description, user_login, ip, action)
                 VALUES ($1, 'payment', $2, $3, 'root', 'local', 'payment.setpaid')",
            )?,
        })
    }
}

/// What setpaid writes, by the raw `postgres` crate: the statements of `raw_setpaid` in
/// PostgreSQL's dialect, in one transaction (the writers' advisory lock included, as every
/// engine write takes it).
pub fn raw_pg_setpaid(
    c: &mut postgres::Client,
    s: &RawPg,
    id: i64,
    now: &str,
) -> Result<(), postgres::Error> {
    let mut t = c.transaction()?;
    t.execute(&s.lock, &[&store::pg::WRITER_LOCK])?;
    let row = t.query_one(&s.payment, &[&id])?;
    let (status, subaccount, amount): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert!(status == 1 || status == 2);
    t.execute(&s.paid, &[&id, &now])?;
    let balance: i64 = t.query_one(&s.balance, &[&subaccount])?.get(0);
    t.execute(&s.credit, &[&subaccount, &(balance + amount)])?;
    assert!(t.query_opt(&s.unpaid, &[&subaccount])?.is_none());
    let description = format!(
        "paid: {}.00 USD credited to subaccount {subaccount}",
        amount / 100
    );
    t.execute(&s.history, &[&now, &id, &description])?;
    t.commit()
}
