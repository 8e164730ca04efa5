//! The ledger's pricing rules one by one through the engine: the rate in force, client rates,
//! currencies with other minor units, commissions, method limits, discounts by priority, tax
//! rules by specificity, payment changes, refunds across allocations, `subaccount.refund`.
//! Every test runs on SQLite and on PostgreSQL (`backends!`, a database of its own in the
//! binary's cluster); the schema's own guarantees are checked on each backend with its raw SQL.

#[macro_use]
#[path = "support/pg.rs"]
mod pg;

use billhost::auth::Caller;
use billhost::{Doc, Engine, EngineConfig, ErrorType, Params};
use pg::Backend;
use std::path::PathBuf;

/// A new empty folder of the test's own, apart for each backend (the two run at once).
fn temp_dir(name: &str, backend: &Backend) -> PathBuf {
    let on = if backend.is_postgres() {
        "pg"
    } else {
        "sqlite"
    };
    let dir =
        std::env::temp_dir().join(format!("billhost-rules-{name}-{on}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

struct World {
    engine: Engine,
    dir: PathBuf,
    backend: Backend,
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl World {
    fn new(name: &str, backend: &Backend) -> World {
        let dir = temp_dir(name, backend);
        let engine = Engine::open(EngineConfig::new(backend.db(&dir))).expect("engine");
        let w = World {
            engine,
            dir,
            backend: backend.clone(),
        };
        w.ok(
            "project.edit",
            &[("elid", "1"), ("sok", "ok"), ("currency", "840")],
        );
        w.ok(
            "paymethod.edit",
            &[("sok", "ok"), ("name", "USD"), ("currency", "840")],
        );
        w.ok(
            "account.edit",
            &[
                ("sok", "ok"),
                ("email", "ann@example.com"),
                ("country", "276"),
            ],
        );
        w
    }

    fn call(&self, func: &str, params: &[(&str, &str)]) -> Doc {
        self.engine.call(
            &Caller::superuser(),
            func,
            Params::from_pairs(params.iter().copied()),
        )
    }

    fn ok(&self, func: &str, params: &[(&str, &str)]) -> Doc {
        let doc = self.call(func, params);
        assert!(!doc.is_error(), "{func} {params:?}: {doc:?}");
        doc
    }

    fn err(&self, func: &str, params: &[(&str, &str)]) -> ErrorType {
        match self.call(func, params) {
            Doc::Error(e) => e.kind,
            other => panic!("{func} {params:?} should fail: {other:?}"),
        }
    }

    fn id(&self, func: &str, params: &[(&str, &str)]) -> String {
        self.ok(func, params).field("id").expect("id").to_string()
    }

    fn field(&self, func: &str, params: &[(&str, &str)], name: &str) -> String {
        self.ok(func, params)
            .field(name)
            .unwrap_or_default()
            .to_string()
    }

    fn pay(&self, paymethod: &str, amount: &str) -> String {
        self.id(
            "payment.edit",
            &[
                ("plid", "1"),
                ("sok", "ok"),
                ("paymethod", paymethod),
                ("paymethodamount", amount),
            ],
        )
    }

    fn payment(&self, id: &str, name: &str) -> String {
        self.field("payment.edit", &[("elid", id)], name)
    }

    fn expense(&self, amount: &str, extra: &[(&str, &str)]) -> String {
        let mut p = vec![("plid", "1"), ("sok", "ok"), ("amount", amount)];
        p.extend_from_slice(extra);
        self.id("subaccount.expense.edit", &p)
    }

    fn balance(&self) -> String {
        self.field("subaccount.edit", &[("elid", "1")], "balance")
    }

    /// Runs `sql` on the database directly, past the engine: the SQLite file, or a connection
    /// of its own to the PostgreSQL database.
    fn raw(&self, sql: &str) -> Result<u64, String> {
        match &self.backend {
            Backend::Sqlite => rusqlite::Connection::open(self.backend.db(&self.dir))
                .and_then(|c| c.execute(sql, []))
                .map(|n| n as u64)
                .map_err(|e| e.to_string()),
            Backend::Postgres(db) => postgres::Client::connect(&db.url, postgres::NoTls)
                .and_then(|mut c| c.execute(sql, &[]))
                .map_err(|e| match e.as_db_error() {
                    Some(db) => db.message().to_string(),
                    None => e.to_string(),
                }),
        }
    }

    fn clean(&self) {
        let v = self.engine.read(billhost::ledger::check).expect("check");
        assert!(v.is_empty(), "{v:?}");
    }
}

backends! {
fn the_rate_in_force_and_a_clients_own_rate(backend) {
    let w = World::new("rates", &backend);
    w.ok(
        "paymethod.edit",
        &[("sok", "ok"), ("name", "EUR"), ("currency", "978")],
    );
    assert_eq!(
        w.err(
            "payment.edit",
            &[
                ("plid", "1"),
                ("sok", "ok"),
                ("paymethod", "2"),
                ("paymethodamount", "10")
            ]
        ),
        ErrorType::Value
    );
    let rate = |r: &str, date: &str, plid: Option<&str>| {
        let mut p = vec![
            ("sok", "ok"),
            ("currency_base", "840"),
            ("currency_relate", "978"),
            ("rate", r),
            ("ratedate", date),
        ];
        if let Some(plid) = plid {
            p.push(("plid", plid));
        }
        w.ok("account.currencyrate.edit", &p);
    };
    rate("1.1", "2020-01-01", None);
    rate("2", "2999-01-01", None); // not yet in force
    let p = w.pay("2", "10.00");
    assert_eq!(w.payment(&p, "subaccountamount"), "11.00");
    assert_eq!(w.payment(&p, "rate"), "1.1");
    rate("1.05", "2021-01-01", None);
    assert_eq!(w.payment(&w.pay("2", "10.00"), "subaccountamount"), "10.50");
    rate("1.2", "2020-06-01", Some("1")); // the client's own, older, still wins
    assert_eq!(w.payment(&w.pay("2", "10.00"), "subaccountamount"), "12.00");
    // The earlier payments keep their amounts.
    assert_eq!(w.payment(&p, "subaccountamount"), "11.00");
    // A rate written the other way round serves too: 100 USD cost 95 EUR.
    w.ok(
        "account.currencyrate.edit",
        &[
            ("sok", "ok"),
            ("currency_base", "978"),
            ("currency_relate", "840"),
            ("rate", "95"),
            ("amount", "100"),
            ("plid", "1"),
        ],
    );
    assert_eq!(w.payment(&w.pay("2", "9.50"), "subaccountamount"), "10.00");
    // Half away from zero: 0.05 EUR * 1.1 = 0.055 -> 0.06.
    w.ok("account.currencyrate.delete", &[("elid", "3, 4, 5")]);
    assert_eq!(w.payment(&w.pay("2", "0.05"), "subaccountamount"), "0.06");
    w.clean();
}
}

backends! {
fn currencies_with_other_minor_units(backend) {
    let w = World::new("jpy", &backend);
    w.ok(
        "currency.edit",
        &[("elid", "392"), ("sok", "ok"), ("active", "on")],
    );
    w.ok(
        "paymethod.edit",
        &[("sok", "ok"), ("name", "Yen"), ("currency", "392")],
    );
    w.ok(
        "account.currencyrate.edit",
        &[
            ("sok", "ok"),
            ("currency_base", "840"),
            ("currency_relate", "392"),
            ("rate", "0.67"),
            ("amount", "100"),
        ],
    );
    assert_eq!(
        w.err(
            "payment.edit",
            &[
                ("plid", "1"),
                ("sok", "ok"),
                ("paymethod", "2"),
                ("paymethodamount", "1000.5")
            ]
        ),
        ErrorType::Value
    );
    let p = w.pay("2", "1001");
    assert_eq!(w.payment(&p, "paymethodamount"), "1001");
    assert_eq!(w.payment(&p, "subaccountamount"), "6.71"); // 6.7067
    assert_eq!(
        w.err(
            "currency.edit",
            &[("elid", "392"), ("sok", "ok"), ("minor_units", "2")]
        ),
        ErrorType::Value
    );
    w.ok("payment.setpaid", &[("elid", &p)]);
    // A partial refund in yen converts proportionally; the rest refunds exactly.
    w.ok(
        "payment.refund",
        &[("elid", &p), ("sok", "ok"), ("amount", "500")],
    );
    assert_eq!(w.payment(&p, "refundedamount"), "3.35"); // 500 * 671 / 1001 = 335.16
    w.ok(
        "payment.refund",
        &[("elid", &p), ("sok", "ok"), ("amount", "501")],
    );
    assert_eq!(w.payment(&p, "refundedamount"), "6.71");
    assert_eq!(w.payment(&p, "status"), "6");
    assert_eq!(w.balance(), "0.00");
    w.clean();
}
}

backends! {
fn commissions_and_method_limits(backend) {
    let w = World::new("commission", &backend);
    w.ok(
        "paymethod.edit",
        &[
            ("elid", "1"),
            ("sok", "ok"),
            ("commission", "2.5"),
            ("commission_fixed", "0.30"),
            ("minamount", "5"),
            ("maxamount", "500"),
        ],
    );
    assert_eq!(
        w.err(
            "payment.edit",
            &[
                ("plid", "1"),
                ("sok", "ok"),
                ("paymethod", "1"),
                ("paymethodamount", "4.99")
            ]
        ),
        ErrorType::Value
    );
    assert_eq!(
        w.err(
            "payment.edit",
            &[
                ("plid", "1"),
                ("sok", "ok"),
                ("paymethod", "1"),
                ("paymethodamount", "500.01")
            ]
        ),
        ErrorType::Value
    );
    let p = w.pay("1", "10.10");
    // 10.10 * 2.5 % = 0.2525 -> 0.25, plus 0.30.
    assert_eq!(w.payment(&p, "commissionamount"), "0.55");
    w.ok("payment.setpaid", &[("elid", &p)]);
    assert_eq!(w.balance(), "9.55");
    let used = w.payment(&p, "usedamount");
    assert_eq!(
        used, "0.55",
        "the commission is paid from the payment itself"
    );
    // An explicit commission replaces the computed one while the payment is new.
    let q = w.pay("1", "20");
    w.ok(
        "payment.edit",
        &[("elid", &q), ("sok", "ok"), ("commissionamount", "0")],
    );
    w.ok(
        "payment.edit",
        &[("elid", &q), ("sok", "ok"), ("paymethodamount", "30")],
    );
    assert_eq!(w.payment(&q, "subaccountamount"), "30.00");
    assert_eq!(
        w.payment(&q, "commissionamount"),
        "1.05",
        "a new amount is priced again"
    );
    w.ok("payment.setpaid", &[("elid", &q)]);
    assert_eq!(
        w.err(
            "payment.edit",
            &[("elid", &q), ("sok", "ok"), ("paymethodamount", "31")]
        ),
        ErrorType::Value
    );
    w.ok(
        "payment.edit",
        &[("elid", &q), ("sok", "ok"), ("note", "fine after payment")],
    );
    w.clean();
}
}

backends! {
fn discounts_by_priority_and_tax_by_rule(backend) {
    let w = World::new("pricing", &backend);
    w.ok("payment.setpaid", &[("elid", &w.pay("1", "1000"))]);
    // A personal discount with a negative priority applies only where no promotion does.
    w.ok(
        "account.discount.add",
        &[
            ("plid", "1"),
            ("sok", "ok"),
            ("name", "Fallback"),
            ("percentage", "50"),
            ("priority", "-1"),
        ],
    );
    let e = w.expense("10.00", &[("name", "a")]);
    assert_eq!(
        w.field("subaccount.expense.edit", &[("elid", &e)], "discountamount"),
        "5.00"
    );
    w.ok(
        "account.discount.edit",
        &[
            ("sok", "ok"),
            ("name", "Promo"),
            ("percentage", "5"),
            ("actiontype", "open"),
        ],
    );
    let e = w.expense("10.00", &[("operation", "open")]);
    assert_eq!(
        w.field("subaccount.expense.edit", &[("elid", &e)], "discountamount"),
        "0.50"
    );
    assert_eq!(
        w.field("subaccount.expense.edit", &[("elid", &e)], "discount"),
        "2"
    );
    let e = w.expense("10.00", &[("operation", "prolong")]);
    assert_eq!(
        w.field("subaccount.expense.edit", &[("elid", &e)], "discount"),
        "1",
        "the promotion is for orders only"
    );
    // A higher-priority personal discount beats the promotion; an expired one does not count.
    w.ok(
        "account.discount.add",
        &[
            ("plid", "1"),
            ("sok", "ok"),
            ("name", "Old"),
            ("percentage", "90"),
            ("priority", "9"),
            ("todate", "2020-12-31"),
        ],
    );
    w.ok(
        "account.discount.add",
        &[
            ("plid", "1"),
            ("sok", "ok"),
            ("name", "Loyal"),
            ("percentage", "12.5"),
            ("priority", "3"),
        ],
    );
    let e = w.expense("9.99", &[("operation", "open")]);
    // 9.99 * 12.5 % = 1.24875 -> 1.25
    assert_eq!(
        w.field("subaccount.expense.edit", &[("elid", &e)], "discountamount"),
        "1.25"
    );
    assert_eq!(
        w.field("subaccount.expense.edit", &[("elid", &e)], "amount"),
        "8.74"
    );

    // Tax: the payer's country wins over any country, an item type rule over a general one.
    w.ok("account.taxrule.edit", &[("sok", "ok"), ("taxrate", "10")]);
    w.ok(
        "account.taxrule.edit",
        &[("sok", "ok"), ("taxrate", "20"), ("country", "276")],
    );
    w.ok(
        "account.taxrule.edit",
        &[
            ("sok", "ok"),
            ("taxrate", "7"),
            ("country", "276"),
            ("specialitemtype", "on"),
            ("itemtype", "book, domain"),
        ],
    );
    w.ok(
        "account.taxrule.edit",
        &[("sok", "ok"), ("taxrate", "3"), ("country", "250")],
    );
    w.ok("account.discount.delete", &[("elid", "1, 2, 3, 4")]);
    assert_eq!(
        w.err("account.discount.delete", &[("elid", "1")]),
        ErrorType::Value
    );
    let tax = |extra: &[(&str, &str)]| {
        let e = w.expense("12.00", extra);
        w.field("subaccount.expense.edit", &[("elid", &e)], "taxamount")
    };
    assert_eq!(tax(&[]), "2.00"); // 12 * 20 / 120
    assert_eq!(tax(&[("itemtype", "domain")]), "0.79"); // 0.785 -> 0.79
    assert_eq!(tax(&[("taxrate", "0")]), "0.00");
    w.ok(
        "account.edit",
        &[("elid", "1"), ("sok", "ok"), ("country", "840")],
    );
    assert_eq!(tax(&[]), "1.09"); // 12 * 10 / 110 = 1.0909
    w.clean();
}
}

backends! {
fn refunds_release_allocations_and_subaccount_refund_takes_the_newest(backend) {
    let w = World::new("refunds", &backend);
    let a = w.pay("1", "30");
    let b = w.pay("1", "20");
    let c = w.pay("1", "10");
    w.ok(
        "payment.edit",
        &[("elid", &c), ("sok", "ok"), ("restrictrefund", "on")],
    );
    w.ok("payment.setpaid", &[("elid", &format!("{a}, {b}, {c}"))]);
    let e = w.expense("25", &[]);
    assert_eq!(w.payment(&a, "usedamount"), "25.00");
    // Refunding 10 of A takes its 5 free and releases 5 of the expense, paid again from B.
    w.ok(
        "payment.refund",
        &[("elid", &a), ("sok", "ok"), ("amount", "10")],
    );
    assert_eq!(w.payment(&a, "usedamount"), "20.00");
    assert_eq!(w.payment(&b, "usedamount"), "5.00");
    assert_eq!(
        w.field("subaccount.expense.edit", &[("elid", &e)], "notpayd"),
        "0.00"
    );
    assert_eq!(w.balance(), "25.00");
    // subaccount.refund: C refuses refunds, so B's free 15 then A's free 0 ... not enough for 25.
    assert_eq!(
        w.err("subaccount.refund", &[("elid", "1"), ("sok", "ok")]),
        ErrorType::Value
    );
    assert_eq!(w.balance(), "25.00");
    let doc = w.ok(
        "subaccount.refund",
        &[("elid", "1"), ("sok", "ok"), ("amount", "15")],
    );
    // One refund, of B, after A's refund 1: on SQLite id 2 (the refused call's rolled back
    // with it); on PostgreSQL the refused call's insert took a sequence value, so a later one.
    let refund: i64 = doc.field("refunds").expect("refunds").parse().expect("one refund id");
    if w.backend.is_postgres() {
        assert!(refund > 1, "refund {refund}");
    } else {
        assert_eq!(refund, 2);
    }
    assert_eq!(w.payment(&b, "refundedamount"), "15.00");
    assert_eq!(w.balance(), "10.00");
    // Deleting the expense frees 25 and the balance returns; all of A can now go back.
    w.ok("subaccount.expense.delete", &[("elid", &e)]);
    assert_eq!(w.balance(), "35.00");
    w.ok(
        "payment.refund",
        &[("elid", &a), ("sok", "ok"), ("amount", "20")],
    );
    assert_eq!(w.payment(&a, "status"), "6");
    assert_eq!(
        w.err(
            "payment.refund",
            &[("elid", &a), ("sok", "ok"), ("amount", "0.01")]
        ),
        ErrorType::Value
    );
    assert_eq!(w.field("payment.refund", &[("elid", &a)], "amount"), "0.00");
    assert_eq!(w.field("payment.refund", &[("elid", &b)], "amount"), "5.00");
    w.clean();
}
}

backends! {
fn subaccounts_one_active_per_provider(backend) {
    let w = World::new("subaccounts", &backend);
    let eur = w.id(
        "subaccount.edit",
        &[
            ("plid", "1"),
            ("sok", "ok"),
            ("subaccount_project", "1"),
            ("subaccount_currency", "978"),
        ],
    );
    assert_eq!(
        w.field("subaccount.edit", &[("elid", &eur)], "active"),
        "on"
    );
    assert_eq!(
        w.field("subaccount.edit", &[("elid", "1")], "active"),
        "off"
    );
    w.ok(
        "subaccount.edit",
        &[("elid", "1"), ("sok", "ok"), ("active", "on")],
    );
    assert_eq!(
        w.field("subaccount.edit", &[("elid", &eur)], "active"),
        "off"
    );
    assert_eq!(
        w.err(
            "subaccount.edit",
            &[("elid", "1"), ("sok", "ok"), ("creditlimit", "-1")]
        ),
        ErrorType::Value
    );
    w.ok(
        "subaccount.edit",
        &[("elid", "1"), ("sok", "ok"), ("allowpostpaid", "on")],
    );
    w.expense("50", &[]);
    assert_eq!(w.balance(), "-50.00");
    w.clean();
}
}

impl World {
    /// The error document of a call that must fail.
    fn error(&self, func: &str, params: &[(&str, &str)]) -> billhost::FuncError {
        match self.call(func, params) {
            Doc::Error(e) => e,
            other => panic!("{func} {params:?} should fail: {other:?}"),
        }
    }

    /// A refusal as "too large", naming `object`, that changed nothing the ledger shows.
    fn too_large(&self, func: &str, params: &[(&str, &str)], object: &str) {
        let before = self.snapshot();
        let e = self.error(func, params);
        assert_eq!(e.kind, ErrorType::Value, "{func} {params:?}: {e:?}");
        assert_eq!(e.object, object, "{func} {params:?}: {e:?}");
        assert!(e.msg.contains("too large"), "{func} {params:?}: {e:?}");
        assert_eq!(
            self.snapshot(),
            before,
            "{func} {params:?} changed something"
        );
    }

    /// Every row of the ledger's tables, as text.
    fn snapshot(&self) -> Vec<String> {
        self.engine
            .read(|c| {
                let mut out = Vec::new();
                for table in [
                    "subaccount",
                    "payment",
                    "expense",
                    "payment_expense",
                    "refund",
                    "history",
                ] {
                    let mut stmt = c.prepare(&format!("SELECT * FROM {table} ORDER BY id"))?;
                    let n = stmt.column_count();
                    let mut rows = stmt.query([])?;
                    while let Some(r) = rows.next()? {
                        let cells: Vec<String> = (0..n)
                            .map(|i| format!("{:?}", r.get_ref(i).map(|v| v.to_owned()).ok()))
                            .collect();
                        out.push(format!("{table}: {}", cells.join("|")));
                    }
                }
                Ok(out)
            })
            .expect("snapshot")
    }
}

/// The largest amount accepted in a currency with 2 minor digits, and the largest balance.
const MAX_USD: &str = "999999999999999.99";
const MAX_BALANCE_USD: &str = "9999999999999999.99";

backends! {
fn sums_never_overflow_amounts_and_balances_stay_within_their_bounds(backend) {
    let w = World::new("bounds", &backend);
    // The issue's amounts: beyond what any single amount may be.
    w.too_large(
        "subaccount.expense.edit",
        &[
            ("plid", "1"),
            ("sok", "ok"),
            ("amount", "92233720368547758.07"),
            ("postpaid", "on"),
        ],
        "amount",
    );
    w.too_large(
        "payment.edit",
        &[
            ("plid", "1"),
            ("sok", "ok"),
            ("paymethod", "1"),
            ("paymethodamount", "1000000000000000.00"),
        ],
        "paymethodamount",
    );
    w.too_large(
        "payment.edit",
        &[
            ("plid", "1"),
            ("sok", "ok"),
            ("paymethod", "1"),
            ("subaccountamount", "1000000000000000"),
        ],
        "subaccountamount",
    );
    // Ten payments of the largest amount, then the balance at its limit exactly.
    let mut paid = Vec::new();
    for _ in 0..10 {
        let p = w.pay("1", MAX_USD);
        w.ok("payment.setpaid", &[("elid", &p)]);
        paid.push(p);
    }
    assert_eq!(w.balance(), "9999999999999999.90");
    let over = w.pay("1", "0.10");
    w.too_large("payment.setpaid", &[("elid", &over)], "elid");
    assert_eq!(w.payment(&over, "status"), "1");
    let last = w.pay("1", "0.09");
    w.ok("payment.setpaid", &[("elid", &last)]);
    assert_eq!(w.balance(), MAX_BALANCE_USD);
    w.clean();
    // Expenses down to the lowest balance: 20 of the largest amount and 0.18, paid from the
    // payments as far as they go, the rest owed.
    let mut expenses = Vec::new();
    for _ in 0..20 {
        expenses.push(w.expense(MAX_USD, &[("postpaid", "on")]));
    }
    w.expense("0.18", &[("postpaid", "on")]);
    assert_eq!(w.balance(), format!("-{MAX_BALANCE_USD}"));
    assert_eq!(w.payment(&paid[0], "usedamount"), MAX_USD);
    w.clean();
    w.too_large(
        "subaccount.expense.edit",
        &[
            ("plid", "1"),
            ("sok", "ok"),
            ("amount", "0.01"),
            ("postpaid", "on"),
        ],
        "amount",
    );
    // A refund would debit beyond the lowest balance too.
    w.too_large(
        "payment.refund",
        &[("elid", &paid[0]), ("sok", "ok"), ("amount", "0.01")],
        "amount",
    );
    // Deleting an expense gives its amount back; then refunds work again, down to the bound.
    w.ok("subaccount.expense.delete", &[("elid", &expenses[19])]);
    assert_eq!(w.balance(), "-9000000000000000.00");
    w.ok(
        "payment.refund",
        &[("elid", &paid[9]), ("sok", "ok"), ("amount", MAX_USD)],
    );
    assert_eq!(w.payment(&paid[9], "status"), "6");
    assert_eq!(w.balance(), "-9999999999999999.99");
    w.too_large(
        "payment.refund",
        &[("elid", &paid[8]), ("sok", "ok"), ("amount", "0.01")],
        "amount",
    );
    w.clean();
    let cli_check = w.engine.read(billhost::ledger::check).expect("check");
    assert!(cli_check.is_empty(), "{cli_check:?}");
}
}

backends! {
fn the_schema_refuses_anything_but_integers_in_money_columns(backend) {
    let w = World::new("schema-money", &backend);
    let p = w.pay("1", "10.00");
    w.ok("payment.setpaid", &[("elid", &p)]);
    w.expense("4.00", &[]);
    // Text that is not an integer, and integers beyond 64 bits, on either backend: SQLite's
    // CHECKs (`typeof`) refuse them, PostgreSQL's BIGINT by type.
    for sql in [
        "UPDATE subaccount SET balance = '6.01' WHERE id = 1",
        "UPDATE subaccount SET balance = 'six' WHERE id = 1",
        "UPDATE subaccount SET balance = -1.8446744073709552e19 WHERE id = 1",
        // SQLite turns an overflowing integer sum into a REAL
        "UPDATE subaccount SET balance = balance + 9223372036854775807 WHERE id = 1",
        "UPDATE payment SET usedamount = 'x' WHERE id = 1",
    ] {
        let e = w.raw(sql).expect_err(sql);
        let refused = match w.backend {
            Backend::Sqlite => e.contains("CHECK constraint failed"),
            Backend::Postgres(_) => {
                e.contains("invalid input syntax for type bigint") || e == "bigint out of range"
            }
        };
        assert!(refused, "{sql}: {e}");
    }
    // Numbers with a fraction. SQLite would keep them as REALs: its CHECKs refuse them.
    // PostgreSQL cannot hold one in a BIGINT column: its assignment cast rounds the number to
    // an integer (a trigger or CHECK sees only the rounded value), so the column still holds
    // integer minor units (a numeric's half away from zero, a float's half to even), and
    // `billhost check` finds the sums that no longer add up.
    let fractions: [(&str, &str, i64); 11] = [
        (
            "UPDATE subaccount SET balance = 1.5 WHERE id = 1",
            "SELECT balance FROM subaccount WHERE id = 1",
            2,
        ),
        (
            "UPDATE subaccount SET balance = 1.5::float8 WHERE id = 1",
            "SELECT balance FROM subaccount WHERE id = 1",
            2,
        ),
        (
            "UPDATE payment SET subaccountamount = 10.5 WHERE id = 1",
            "SELECT subaccountamount FROM payment WHERE id = 1",
            11,
        ),
        (
            "UPDATE expense SET amount = 4.25 WHERE id = 1",
            "SELECT amount FROM expense WHERE id = 1",
            4,
        ),
        (
            "UPDATE expense SET notpayd = 0.5 WHERE id = 1",
            "SELECT notpayd FROM expense WHERE id = 1",
            1,
        ),
        (
            "UPDATE payment_expense SET amount = 1.5 WHERE id = 1",
            "SELECT amount FROM payment_expense WHERE id = 1",
            2,
        ),
        (
            "UPDATE paymethod SET minamount = 0.5 WHERE id = 1",
            "SELECT minamount FROM paymethod WHERE id = 1",
            1,
        ),
        (
            "UPDATE paymethod SET maxamount = 0.5e0 WHERE id = 1",
            "SELECT maxamount FROM paymethod WHERE id = 1",
            1,
        ),
        (
            "INSERT INTO orderinfo (payment_id, name, cost) VALUES (1, 'line', 1.25)",
            "SELECT cost FROM orderinfo WHERE name = 'line'",
            1,
        ),
        (
            "INSERT INTO refund (payment_id, amount, paymethodamount, status, created)
             VALUES (1, 1.5, 1, 6, '2020-01-01')",
            "SELECT amount FROM refund WHERE created = '2020-01-01'",
            2,
        ),
        (
            "INSERT INTO refund (payment_id, amount, paymethodamount, status, created)
             VALUES (1, 1, 2.5::real, 6, '2020-01-02')",
            "SELECT paymethodamount FROM refund WHERE created = '2020-01-02'",
            2,
        ),
    ];
    for (sql, select, rounded) in fractions {
        match &w.backend {
            Backend::Sqlite => {
                let sql = sql.replace("::float8", "").replace("::real", "");
                let e = w.raw(&sql).expect_err(&sql);
                assert!(e.contains("CHECK constraint failed"), "{sql}: {e}");
            }
            Backend::Postgres(db) => {
                let mut c = postgres::Client::connect(&db.url, postgres::NoTls).expect("connect");
                let mut tx = c.transaction().expect("begin");
                tx.execute(sql, &[]).expect(sql);
                let stored: i64 = tx.query_one(select, &[]).expect(select).get(0);
                assert_eq!(stored, rounded, "{sql}");
                tx.rollback().expect("rollback");
            }
        }
    }
    if w.backend.is_postgres() {
        w.raw("UPDATE subaccount SET balance = 1.5 WHERE id = 1").expect("rounded balance");
        let found = w.engine.read(billhost::ledger::check).expect("check");
        assert!(!found.is_empty(), "the rounded balance went unnoticed");
        w.raw("UPDATE subaccount SET balance = 600 WHERE id = 1").expect("balance back");
    }
    // A value that is an integer however it is written is stored as one.
    w.raw("UPDATE paymethod SET minamount = NULL WHERE id = 1")
        .expect("null minamount");
    w.raw("UPDATE subaccount SET creditlimit = 100.0 WHERE id = 1")
        .expect("integral real");
    assert_eq!(w.balance(), "6.00");
    w.clean();
}
}

backends! {
fn ids_are_never_reused_after_the_newest_object_is_deleted(backend) {
    let w = World::new("ids", &backend);
    let history = |object: &str, id: &str| -> Vec<String> {
        w.engine
            .read(|c| {
                let mut stmt = c.prepare(
                    "SELECT description FROM history WHERE object_type = ?1 AND object_id = ?2 ORDER BY id",
                )?;
                let rows = stmt.query_map(billhost::store::params![object, id], |r| r.get(0))?;
                Ok(rows.collect::<Result<Vec<String>, _>>()?)
            })
            .expect("history")
    };
    type Make<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);
    let kinds: Vec<Make> = vec![
        (
            "discount",
            "account.discount",
            vec![("sok", "ok"), ("name", "Autumn"), ("percentage", "5")],
        ),
        (
            "taxrule",
            "account.taxrule",
            vec![("sok", "ok"), ("taxrate", "19")],
        ),
        (
            "currencyrate",
            "account.currencyrate",
            vec![
                ("sok", "ok"),
                ("currency_base", "840"),
                ("currency_relate", "978"),
                ("rate", "1.1"),
            ],
        ),
        (
            "accountgroup",
            "accountgroup",
            vec![("sok", "ok"), ("name", "First")],
        ),
    ];
    for (object, func, params) in &kinds {
        let edit = format!("{func}.edit");
        let first = w.id(&edit, params);
        w.ok(&format!("{func}.delete"), &[("elid", &first)]);
        let mut again = params.clone();
        if *object == "accountgroup" {
            again[1] = ("name", "Second");
        }
        let second = w.id(&edit, &again);
        assert!(
            second.parse::<i64>().expect("id") > first.parse::<i64>().expect("id"),
            "{object}: {second} after the deleted {first}"
        );
        // The deleted object's history still reads as its own, and the new one's as the new one's.
        let old = history(object, &first);
        assert!(
            old.last().is_some_and(|d| d.contains("deleted")),
            "{object}: {old:?}"
        );
        let new = history(object, &second);
        assert!(
            new.iter().all(|d| !d.contains("deleted")),
            "{object}: {new:?}"
        );
    }
    // The newest payment canceled, expense deleted: their ids stay theirs too.
    let p = w.pay("1", "5");
    w.ok("payment.delete", &[("elid", &p)]);
    assert!(w.pay("1", "5").parse::<i64>().expect("id") > p.parse::<i64>().expect("id"));
    w.clean();
}
}

backends! {
fn check_adds_up_credits_past_the_range_of_i64(backend) {
    // Paying and refunding the largest amount over and over credits more than i64 holds in all
    // (93 * 0.99e17 > 9.22e18): every step is accepted, and the check must still add it up.
    let w = World::new("check-sums", &backend);
    for _ in 0..95 {
        let p = w.pay("1", MAX_USD);
        w.ok("payment.setpaid", &[("elid", &p)]);
        w.ok(
            "payment.refund",
            &[("elid", &p), ("sok", "ok"), ("amount", MAX_USD)],
        );
    }
    assert_eq!(w.balance(), "0.00");
    w.clean();
}
}

backends! {
fn amounts_are_never_rounded_on_input_and_zeros_past_the_minor_units_are_exact(backend) {
    let w = World::new("input", &backend);
    let make = |amount: &str| {
        w.call(
            "payment.edit",
            &[
                ("plid", "1"),
                ("sok", "ok"),
                ("paymethod", "1"),
                ("paymethodamount", amount),
            ],
        )
    };
    for bad in [
        "9.9999999999999999999999999999999",
        "10.0000000000000000000000000000001",
        "10.011",
        "10.001",
    ] {
        let before = w.snapshot();
        match make(bad) {
            Doc::Error(e) => {
                assert_eq!(
                    (e.kind, e.object.as_str()),
                    (ErrorType::Value, "paymethodamount"),
                    "{bad}"
                )
            }
            other => panic!("{bad} accepted: {other:?}"),
        }
        assert_eq!(w.snapshot(), before, "{bad}");
    }
    // Zeros past the currency's digits change nothing: the amount is exact.
    for (text, shown) in [
        ("10.010", "10.01"),
        ("10.0000000000000000000000000000000", "10.00"),
    ] {
        let id = make(text).field("id").expect("id").to_string();
        assert_eq!(w.payment(&id, "paymethodamount"), shown, "{text}");
    }
    // The subaccount amount given with the method's amount is checked, never ignored.
    let e = w.error(
        "payment.edit",
        &[
            ("plid", "1"),
            ("sok", "ok"),
            ("paymethod", "1"),
            ("paymethodamount", "10"),
            ("subaccountamount", "0.001"),
        ],
    );
    assert_eq!(
        (e.kind, e.object.as_str()),
        (ErrorType::Value, "subaccountamount")
    );
    let e = w.error(
        "payment.edit",
        &[
            ("elid", "1"),
            ("sok", "ok"),
            ("paymethodamount", "10"),
            ("subaccountamount", "x"),
        ],
    );
    assert_eq!(
        (e.kind, e.object.as_str()),
        (ErrorType::Value, "subaccountamount")
    );
    w.clean();
}
}

/// A world whose payment method takes yen onto the provider's dollars: `amount` JPY cost `rate`
/// USD.
fn yen_world(name: &str, backend: &Backend, rate: &str, amount: &str) -> World {
    let w = World::new(name, backend);
    w.ok(
        "currency.edit",
        &[("elid", "392"), ("sok", "ok"), ("active", "on")],
    );
    w.ok(
        "paymethod.edit",
        &[("sok", "ok"), ("name", "Yen"), ("currency", "392")],
    );
    w.ok(
        "account.currencyrate.edit",
        &[
            ("sok", "ok"),
            ("currency_base", "840"),
            ("currency_relate", "392"),
            ("rate", rate),
            ("amount", amount),
        ],
    );
    w
}

backends! {
fn a_partial_refund_never_marks_a_payment_refunded_while_money_is_owed(backend) {
    let w = yen_world("refund-cap", &backend, "0.67", "100");
    // 3 JPY = 0.0201 USD -> 0.02
    let p = w.pay("2", "3");
    assert_eq!(w.payment(&p, "subaccountamount"), "0.02");
    w.ok("payment.setpaid", &[("elid", &p)]);
    // 1 JPY of 3 is 0.0067 USD -> 0.01: one of the two cents.
    w.ok(
        "payment.refund",
        &[("elid", &p), ("sok", "ok"), ("amount", "1")],
    );
    assert_eq!(w.payment(&p, "refundedamount"), "0.01");
    // One more yen would take the last cent too and leave 1 JPY owed: refused, the rest asked for.
    let before = w.snapshot();
    let e = w.error(
        "payment.refund",
        &[("elid", &p), ("sok", "ok"), ("amount", "1")],
    );
    assert_eq!((e.kind, e.object.as_str()), (ErrorType::Value, "amount"));
    assert!(e.msg.contains("refund the rest, 2 JPY"), "{}", e.msg);
    assert_eq!(w.snapshot(), before);
    w.ok(
        "payment.refund",
        &[("elid", &p), ("sok", "ok"), ("amount", "2")],
    );
    assert_eq!(w.payment(&p, "status"), "6");
    assert_eq!(w.field("payment.refund", &[("elid", &p)], "amount"), "0");
    // A refund worth less than a cent is refused.
    let q = w.pay("2", "300");
    w.ok("payment.setpaid", &[("elid", &q)]);
    let e = w.error(
        "payment.refund",
        &[("elid", &q), ("sok", "ok"), ("amount", "0")],
    );
    assert_eq!(e.kind, ErrorType::Value);
    w.clean();
}
}

backends! {
fn subaccount_refund_says_why_payments_were_passed_over(backend) {
    let w = yen_world("refund-skip", &backend, "0.67", "1");
    let sub_refund = |amount: &str| {
        w.error(
            "subaccount.refund",
            &[("elid", "1"), ("sok", "ok"), ("amount", amount)],
        )
    };
    let p = w.pay("2", "3"); // 2.01 USD
    assert_eq!(w.payment(&p, "subaccountamount"), "2.01");
    w.ok("payment.setpaid", &[("elid", &p)]);
    let before = w.snapshot();
    // 0.30 USD would be 0.45 -> 0 JPY; 1.70 USD would be 2.54 -> 3 JPY, all the yen while
    // 0.31 USD stayed: both are passed over, and the message says so.
    for amount in ["0.30", "1.70"] {
        let e = sub_refund(amount);
        assert_eq!((e.kind, e.object.as_str()), (ErrorType::Value, "amount"));
        assert!(!e.msg.starts_with("Only 0"), "{}", e.msg);
        assert!(
            e.msg
                .starts_with(&format!("Nothing of {amount} USD can be refunded")),
            "{}",
            e.msg
        );
        assert!(e.msg.contains("round to nothing"), "{}", e.msg);
        assert_eq!(w.snapshot(), before);
    }
    // All of it refunds both currencies exactly.
    w.ok("subaccount.refund", &[("elid", "1"), ("sok", "ok")]);
    assert_eq!(w.payment(&p, "status"), "6");
    assert_eq!(w.balance(), "0.00");
    w.clean();
}
}

backends! {
fn invoice_lines_that_do_not_add_up_show_the_difference(backend) {
    let w = World::new("orderinfo", &backend);
    let p = w.pay("1", "100.00");
    let line = |name: &str, cost: &str| {
        w.ok(
            "payment.orderinfo.edit",
            &[("plid", &p), ("sok", "ok"), ("name", name), ("cost", cost)],
        );
    };
    let html = |w: &World| match w.call("payment.print", &[("elid", &p)]) {
        Doc::File(f) => String::from_utf8(f.bytes).expect("utf-8"),
        other => panic!("payment.print: {other:?}"),
    };
    line("Hosting", "60.00");
    let page = html(&w);
    assert!(page.contains("Not itemised"), "{page}");
    assert!(page.contains("40.00"), "{page}");
    line("Domain", "50.00");
    let page = html(&w);
    assert!(page.contains("Correction"), "{page}");
    assert!(page.contains("-10.00"), "{page}");
    w.ok(
        "payment.orderinfo.edit",
        &[
            ("plid", &p),
            ("elid", "2"),
            ("sok", "ok"),
            ("cost", "40.00"),
        ],
    );
    let page = html(&w);
    assert!(
        !page.contains("Not itemised") && !page.contains("Correction"),
        "{page}"
    );
}
}

backends! {
fn the_commission_expense_is_named_after_its_payment(backend) {
    let w = World::new("commission-name", &backend);
    w.ok(
        "paymethod.edit",
        &[("elid", "1"), ("sok", "ok"), ("commission_fixed", "0.50")],
    );
    let p = w.id(
        "payment.edit",
        &[
            ("plid", "1"),
            ("sok", "ok"),
            ("paymethod", "1"),
            ("paymethodamount", "10"),
            ("number", "INV-7"),
        ],
    );
    w.ok("payment.setpaid", &[("elid", &p)]);
    let names = w
        .engine
        .read(|c| {
            let mut stmt =
                c.prepare("SELECT name, payment_id, discountamount, taxamount FROM expense")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<String>(0)?,
                    r.get::<i64>(1)?,
                    r.get::<i64>(2)?,
                    r.get::<i64>(3)?,
                ))
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .expect("expenses");
    let id: i64 = p.parse().expect("id");
    assert_eq!(
        names,
        vec![(
            format!("Commission on payment {p} (invoice INV-7)"),
            id,
            0,
            0
        )]
    );
    w.clean();
}
}

backends! {
fn scripts_parse_money_as_the_funcs_do(backend) {
    let dir = temp_dir("lua", &backend);
    std::fs::create_dir_all(dir.join("scripts")).expect("dir");
    std::fs::write(
        dir.join("scripts/money.lua"),
        r#"billing.func("money.parse", { access = "admin", kind = "view" }, function(req)
             return { value = billing.money(req.params.text) }
           end)"#,
    )
    .expect("script");
    let engine =
        Engine::open(EngineConfig::new(backend.db(&dir)).with_scripts(dir.join("scripts")))
            .expect("engine");
    let parse = |text: &str| {
        engine.call(
            &Caller::superuser(),
            "money.parse",
            Params::from_pairs([("text", text)]),
        )
    };
    for bad in [
        "9.9999999999999999999999999999999",
        "1e3",
        "99999999999999999999999999999999",
    ] {
        assert!(parse(bad).is_error(), "{bad} accepted by billing.money");
    }
    assert_eq!(parse("10.010").field("value"), Some("10.010"));
    assert_eq!(
        parse("10.0000000000000000000000000000000").field("value"),
        Some("10")
    );
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
}
}
