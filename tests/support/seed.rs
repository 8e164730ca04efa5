//! The paying clients of the kill test and the load bench: an admin, a USD provider with a
//! payment method, clients with one payment each made through the engine (so priced and
//! numbered by the ledger), and many new payments in one statement: copies of those, each with
//! a history row of its creation. New payments do not touch balances, so the ledger stays
//! consistent.
#![allow(dead_code)]

use billhost::auth::{self, Caller};
use billhost::store::{self, Connection, params};
use billhost::{Doc, Engine, Params};

/// Calls `func` as the superuser; an error document fails the caller.
pub fn must(engine: &Engine, func: &str, params: &[(&str, &str)]) -> Doc {
    let doc = engine.call(
        &Caller::superuser(),
        func,
        Params::from_pairs(params.iter().copied()),
    );
    assert!(!doc.is_error(), "{func} {params:?}: {doc:?}");
    doc
}

/// The staff user `admin` with `password`, USD for provider 1 and payment method 1 ("Bank",
/// USD).
pub fn usd_bank(engine: &Engine, password: &str) {
    engine
        .write(|c| auth::ensure_staff(c, "admin", Some(password)))
        .expect("admin");
    must(
        engine,
        "project.edit",
        &[("elid", "1"), ("sok", "ok"), ("currency", "840")],
    );
    must(
        engine,
        "paymethod.edit",
        &[("sok", "ok"), ("name", "Bank"), ("currency", "840")],
    );
}

/// A new client `email` with one new 10.00 USD payment by method 1: its account and payment ids.
pub fn payer(engine: &Engine, email: &str) -> (i64, i64) {
    let id = |doc: Doc| -> i64 { doc.field("id").expect("id").parse().expect("numeric id") };
    let account = id(must(
        engine,
        "account.edit",
        &[("sok", "ok"), ("email", email)],
    ));
    let payment = id(must(
        engine,
        "payment.edit",
        &[
            ("plid", &account.to_string()),
            ("sok", "ok"),
            ("paymethod", "1"),
            ("paymethodamount", "10.00"),
        ],
    ));
    (account, payment)
}

/// The new payments (status 1) of client `account`, oldest first.
pub fn new_payments(conn: &Connection, account: i64) -> store::Result<Vec<i64>> {
    conn.prepare_cached("SELECT id FROM payment WHERE account_id = ?1 AND status = 1 ORDER BY id")?
        .query_map([account], |r| r.get(0))?
        .collect()
}

/// Adds `copies` new payments (status 1) like payment `template`: same client, subaccount,
/// method and amounts, numbered `NUMBER-K`. Runs in the caller's transaction.
pub fn copy_payment(conn: &Connection, template: i64, copies: i64) -> store::Result<()> {
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

/// [`payer`] for `n` clients (`{prefix}{i}@example.com`): each one's client id and the
/// subaccount its payment credits.
pub fn payers(engine: &Engine, prefix: &str, n: usize) -> Vec<(i64, i64)> {
    (0..n)
        .map(|i| {
            let (account, payment) = payer(engine, &format!("{prefix}{i}@example.com"));
            let subaccount = engine
                .read(|c| {
                    Ok(c.query_row(
                        "SELECT subaccount_id FROM payment WHERE id = ?1",
                        [payment],
                        |r| r.get::<i64>(0),
                    )?)
                })
                .expect("subaccount");
            (account, subaccount)
        })
        .collect()
}
