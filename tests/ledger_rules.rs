//! The ledger's pricing rules one by one through the engine: the rate in force, client rates,
//! currencies with other minor units, commissions, method limits, discounts by priority, tax
//! rules by specificity, payment changes, refunds across allocations, `subaccount.refund`.

use billhost::auth::Caller;
use billhost::{Doc, Engine, EngineConfig, ErrorType, Params};
use std::path::PathBuf;

struct World {
    engine: Engine,
    dir: PathBuf,
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl World {
    fn new(name: &str) -> World {
        let dir =
            std::env::temp_dir().join(format!("billhost-rules-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let engine = Engine::open(EngineConfig::new(dir.join("ledger.db"))).expect("engine");
        let w = World { engine, dir };
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

    fn clean(&self) {
        let v = self.engine.read(billhost::ledger::check).expect("check");
        assert!(v.is_empty(), "{v:?}");
    }
}

#[test]
fn the_rate_in_force_and_a_clients_own_rate() {
    let w = World::new("rates");
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

#[test]
fn currencies_with_other_minor_units() {
    let w = World::new("jpy");
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

#[test]
fn commissions_and_method_limits() {
    let w = World::new("commission");
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

#[test]
fn discounts_by_priority_and_tax_by_rule() {
    let w = World::new("pricing");
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

#[test]
fn refunds_release_allocations_and_subaccount_refund_takes_the_newest() {
    let w = World::new("refunds");
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
    assert_eq!(doc.field("refunds"), Some("2"));
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

#[test]
fn subaccounts_one_active_per_provider() {
    let w = World::new("subaccounts");
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
