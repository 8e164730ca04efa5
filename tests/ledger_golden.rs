//! Golden documents of every func of the ledger, in `xml` and `json`, from one scenario run
//! through the engine: an operator sets up currencies, methods, rates, tax rules and discounts,
//! a client pays, spends, gets refunds. Expected documents live in `tests/golden/ledger/`
//! (timestamps normalised); `BLESS=1 cargo test --test ledger_golden` rewrites them.
//! Access tests check what a client user sees and may do.

use billhost::auth::{self, Caller};
use billhost::wire::{self, Format, Meta};
use billhost::{Doc, Engine, EngineConfig, ErrorType, Params};
use std::path::{Path, PathBuf};

#[path = "support/pg.rs"]
mod pg;

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn engine(name: &str) -> (Engine, TempDir) {
    let dir = std::env::temp_dir().join(format!("billhost-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let engine = Engine::open(EngineConfig::new(dir.join("ledger.db"))).expect("engine");
    (engine, TempDir(dir))
}

/// Replaces today's date-times (and dates) by fixed text.
fn normalise(text: &str) -> String {
    let today: String = billhost::clock::now().chars().take(10).collect();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(&today) {
        out.push_str(&rest[..i]);
        out.push_str("TODAY");
        rest = &rest[i + today.len()..];
        let b = rest.as_bytes();
        let is_time = b.len() >= 9
            && b[0] == b' '
            && b[3] == b':'
            && b[6] == b':'
            && [1, 2, 4, 5, 7, 8].iter().all(|&k| b[k].is_ascii_digit());
        if is_time {
            out.push_str(" hh:mm:ss");
            rest = &rest[9..];
        }
    }
    out.push_str(rest);
    // A time column of its own (`create_time`): digits not part of a longer number.
    let b = out.as_bytes();
    let mut timed = String::with_capacity(out.len());
    let mut i = 0;
    while i < b.len() {
        let digit = |k: usize| b.get(k).is_some_and(u8::is_ascii_digit);
        let time = [0, 1, 3, 4, 6, 7].iter().all(|&k| digit(i + k))
            && b[i + 2] == b':'
            && b[i + 5] == b':'
            && !digit(i + 8)
            && (i == 0 || !digit(i - 1));
        if time {
            timed.push_str("hh:mm:ss");
            i += 8;
        } else {
            let ch = out[i..].chars().next().expect("char boundary");
            timed.push(ch);
            i += ch.len_utf8();
        }
    }
    timed
}

struct Golden {
    dir: PathBuf,
    bless: bool,
    n: usize,
    failures: Vec<String>,
}

impl Golden {
    fn new() -> Golden {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/ledger");
        let bless = std::env::var_os("BLESS").is_some();
        if bless {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("golden dir");
        }
        Golden {
            dir,
            bless,
            n: 0,
            failures: Vec::new(),
        }
    }

    /// Records `doc` as the next golden document of `func`.
    fn record(&mut self, func: &str, doc: &Doc) {
        self.n += 1;
        for (format, ext) in [(Format::Xml, "xml"), (Format::Json, "json")] {
            let text = normalise(&wire::render(doc, format, Meta { func, lang: "en" }));
            let path = self.dir.join(format!("{:03}-{func}.{ext}", self.n));
            if self.bless {
                std::fs::write(&path, &text).expect("write golden");
                continue;
            }
            match std::fs::read_to_string(&path) {
                Ok(expected) if expected == text => {}
                Ok(expected) => self.failures.push(format!(
                    "{}:\n--- expected\n{expected}\n--- got\n{text}",
                    path.display()
                )),
                Err(e) => self
                    .failures
                    .push(format!("{}: {e} (run with BLESS=1)", path.display())),
            }
        }
    }
}

struct Run<'a> {
    engine: &'a Engine,
    golden: Golden,
}

impl Run<'_> {
    fn call_as(&mut self, caller: &Caller, func: &str, params: &[(&str, &str)]) -> Doc {
        let doc = self
            .engine
            .call(caller, func, Params::from_pairs(params.iter().copied()));
        self.golden.record(func, &doc);
        doc
    }

    fn call(&mut self, func: &str, params: &[(&str, &str)]) -> Doc {
        self.call_as(&Caller::superuser(), func, params)
    }

    fn ok(&mut self, func: &str, params: &[(&str, &str)]) -> Doc {
        let doc = self.call(func, params);
        assert!(!doc.is_error(), "{func} {params:?}: {doc:?}");
        doc
    }

    fn err(&mut self, func: &str, params: &[(&str, &str)], kind: ErrorType) {
        let doc = self.call(func, params);
        match doc {
            Doc::Error(e) => assert_eq!(e.kind, kind, "{func} {params:?}: {e}"),
            other => panic!("{func} {params:?} should fail: {other:?}"),
        }
    }
}

fn user(engine: &Engine, login: &str) -> Caller {
    engine
        .read(|c| auth::switch_user(c, &Caller::superuser(), login))
        .expect("switch user")
}

/// An engine on a new database of a throwaway PostgreSQL cluster (kept alive with it).
fn pg_engine(name: &str) -> Option<(Engine, pg::Cluster)> {
    let cluster = pg::Cluster::start(name)?;
    let url = cluster.database(name);
    let engine = Engine::open(EngineConfig::new(&url)).expect("engine on PostgreSQL");
    Some((engine, cluster))
}

#[test]
fn golden_documents_of_the_ledger_funcs() {
    let (engine, _dir) = engine("golden");
    ledger_goldens(&engine);
}

/// The same documents from the same scenario on PostgreSQL.
#[test]
fn golden_documents_of_the_ledger_funcs_on_postgres() {
    if let Some((engine, _cluster)) = pg_engine("ledger_golden") {
        ledger_goldens(&engine);
    }
}

fn ledger_goldens(engine: &Engine) {
    let mut r = Run {
        engine,
        golden: Golden::new(),
    };

    // Currencies and the provider's currency.
    r.ok("currency.edit", &[]);
    r.ok("currency.edit", &[("elid", "840")]);
    r.ok(
        "currency.edit",
        &[
            ("sok", "ok"),
            ("iso", "xts"),
            ("name", "Test currency"),
            ("minor_units", "3"),
            ("code", "963"),
        ],
    );
    r.err(
        "currency.edit",
        &[
            ("sok", "ok"),
            ("iso", "USD"),
            ("name", "Again"),
            ("minor_units", "2"),
        ],
        ErrorType::Exists,
    );
    r.ok(
        "currency.edit",
        &[("elid", "963"), ("sok", "ok"), ("symbol", "T")],
    );
    r.ok(
        "project.edit",
        &[("elid", "1"), ("sok", "ok"), ("currency", "840")],
    );

    // Payment methods.
    r.ok("paymethod.edit", &[]);
    r.ok(
        "paymethod.edit",
        &[
            ("sok", "ok"),
            ("name", "Bank transfer"),
            ("currency", "840"),
            ("minamount", "1"),
            ("maxamount", "10000"),
        ],
    );
    r.ok(
        "paymethod.edit",
        &[
            ("sok", "ok"),
            ("name", "Euro card"),
            ("currency", "978"),
            ("commission", "2"),
        ],
    );
    r.err(
        "paymethod.edit",
        &[
            ("sok", "ok"),
            ("name", "Bad"),
            ("currency", "840"),
            ("commission", "101"),
        ],
        ErrorType::Value,
    );
    r.ok("paymethod.edit", &[("elid", "2")]);
    r.ok(
        "paymethod.edit",
        &[("elid", "1"), ("sok", "ok"), ("name", "Bank")],
    );
    r.ok("paymethod", &[]);

    // Clients.
    r.ok(
        "account.edit",
        &[
            ("sok", "ok"),
            ("email", "ann@example.com"),
            ("name", "Ann"),
            ("country", "276"),
            ("passwd", "secret-pass-1"),
        ],
    );
    r.ok(
        "account.edit",
        &[
            ("sok", "ok"),
            ("email", "bob@example.com"),
            ("name", "Bob"),
            ("passwd", "secret-pass-2"),
        ],
    );

    // Currency rates: provider-wide and Ann's own.
    r.ok("account.currencyrate.edit", &[]);
    r.ok(
        "account.currencyrate.edit",
        &[
            ("sok", "ok"),
            ("currency_base", "840"),
            ("currency_relate", "978"),
            ("rate", "1.1"),
            ("ratedate", "2020-01-01"),
        ],
    );
    r.ok(
        "account.currencyrate.edit",
        &[
            ("sok", "ok"),
            ("plid", "1"),
            ("currency_base", "840"),
            ("currency_relate", "978"),
            ("rate", "1.2000"),
        ],
    );
    r.ok(
        "account.currencyrate.edit",
        &[
            ("sok", "ok"),
            ("currency_base", "840"),
            ("currency_relate", "643"),
            ("rate", "1"),
            ("amount", "90"),
        ],
    );
    r.err(
        "account.currencyrate.edit",
        &[
            ("sok", "ok"),
            ("currency_base", "840"),
            ("currency_relate", "840"),
            ("rate", "1"),
        ],
        ErrorType::Value,
    );
    r.ok("account.currencyrate.edit", &[("elid", "2")]);
    r.ok(
        "account.currencyrate.edit",
        &[("elid", "3"), ("sok", "ok"), ("amount", "95")],
    );
    r.ok("account.currencyrate", &[]);
    r.ok("account.currencyrate", &[("plid", "1")]);
    r.ok("account.currencyrate.delete", &[("elid", "3")]);

    // Tax rules.
    r.ok("account.taxrule.edit", &[]);
    r.ok(
        "account.taxrule.edit",
        &[("sok", "ok"), ("taxrate", "19"), ("country", "276")],
    );
    r.ok(
        "account.taxrule.edit",
        &[
            ("sok", "ok"),
            ("taxrate", "7"),
            ("country", "276"),
            ("specialitemtype", "on"),
            ("itemtype", "domain"),
        ],
    );
    r.ok("account.taxrule.edit", &[("sok", "ok"), ("taxrate", "5")]);
    r.ok("account.taxrule.edit", &[("elid", "2")]);
    r.ok(
        "account.taxrule.edit",
        &[("elid", "2"), ("sok", "ok"), ("company", "Ann GmbH")],
    );
    r.ok("account.taxrule", &[]);
    r.ok("account.taxrule.delete", &[("elid", "3")]);

    // Discounts: Ann's own, a promotion, one to delete.
    r.ok("account.discount.add", &[("plid", "1")]);
    r.ok(
        "account.discount.add",
        &[
            ("plid", "1"),
            ("sok", "ok"),
            ("name", "Loyal"),
            ("percentage", "10"),
            ("priority", "5"),
        ],
    );
    r.ok(
        "account.discount.edit",
        &[
            ("sok", "ok"),
            ("name", "Autumn sale"),
            ("percentage", "5"),
            ("priority", "1"),
            ("fromdate", "2020-01-01"),
        ],
    );
    r.ok(
        "account.discount.edit",
        &[
            ("sok", "ok"),
            ("plid", "2"),
            ("name", "Spare"),
            ("percentage", "50"),
            ("priority", "-1"),
        ],
    );
    r.err(
        "account.discount.edit",
        &[
            ("sok", "ok"),
            ("name", "Bad"),
            ("percentage", "5"),
            ("fromdate", "2021-01-01"),
            ("todate", "2020-01-01"),
        ],
        ErrorType::Value,
    );
    r.ok("account.discount.edit", &[("elid", "1")]);
    r.ok(
        "account.discount.edit",
        &[("elid", "1"), ("sok", "ok"), ("note", "since 2019")],
    );
    r.ok("account.discount", &[("plid", "1")]);
    r.ok("account.discount", &[]);
    r.ok("account.discount.delete", &[("elid", "3")]);

    // Subaccounts.
    r.ok("subaccount", &[("plid", "1")]);
    r.ok("subaccount.edit", &[("plid", "1")]);
    r.ok("subaccount.edit", &[("elid", "1")]);
    r.ok(
        "subaccount.edit",
        &[("elid", "1"), ("sok", "ok"), ("creditlimit", "20")],
    );
    r.ok(
        "subaccount.edit",
        &[
            ("plid", "1"),
            ("sok", "ok"),
            ("subaccount_project", "1"),
            ("subaccount_currency", "978"),
            ("active", "off"),
        ],
    );
    r.err(
        "subaccount.edit",
        &[
            ("plid", "1"),
            ("sok", "ok"),
            ("subaccount_project", "1"),
            ("subaccount_currency", "978"),
        ],
        ErrorType::Exists,
    );
    r.err(
        "subaccount.edit",
        &[("elid", "1"), ("sok", "ok"), ("subaccount_currency", "978")],
        ErrorType::Value,
    );

    // Payments: USD, EUR at Ann's own rate with commission, one to delete.
    r.ok("payment.edit", &[("plid", "1")]);
    r.ok(
        "payment.edit",
        &[
            ("plid", "1"),
            ("sok", "ok"),
            ("paymethod", "1"),
            ("paymethodamount", "100.00"),
            ("sender", "Ann"),
        ],
    );
    r.ok(
        "payment.edit",
        &[
            ("plid", "1"),
            ("sok", "ok"),
            ("paymethod", "2"),
            ("paymethodamount", "50.00"),
        ],
    );
    r.ok(
        "payment.edit",
        &[
            ("plid", "1"),
            ("sok", "ok"),
            ("paymethod", "1"),
            ("subaccountamount", "5"),
            ("restrictrefund", "on"),
        ],
    );
    r.err(
        "payment.edit",
        &[
            ("plid", "1"),
            ("sok", "ok"),
            ("paymethod", "1"),
            ("paymethodamount", "0.50"),
        ],
        ErrorType::Value,
    );
    r.err(
        "payment.edit",
        &[
            ("plid", "1"),
            ("sok", "ok"),
            ("paymethod", "1"),
            ("paymethodamount", "1.001"),
        ],
        ErrorType::Value,
    );
    r.ok("payment.edit", &[("elid", "2")]);
    r.ok(
        "payment.edit",
        &[
            ("elid", "1"),
            ("sok", "ok"),
            ("description", "Top-up"),
            ("note", "by phone"),
        ],
    );
    r.ok("payment.orderinfo.edit", &[("plid", "1")]);
    r.ok(
        "payment.orderinfo.edit",
        &[
            ("plid", "1"),
            ("sok", "ok"),
            ("name", "Hosting, 1 month"),
            ("cost", "100"),
        ],
    );
    r.ok("payment.orderinfo.edit", &[("plid", "1"), ("elid", "1")]);
    r.ok(
        "payment.orderinfo.edit",
        &[
            ("plid", "1"),
            ("elid", "1"),
            ("sok", "ok"),
            ("name", "Hosting, 30 days"),
        ],
    );
    r.ok("payment.orderinfo", &[("plid", "1")]);
    r.ok("payment.setpaid", &[("elid", "1, 2, 3")]);
    r.err("payment.setpaid", &[("elid", "2")], ErrorType::Value);
    r.ok("account.payment", &[("plid", "1")]);

    // Expenses: discount and tax by rule, a domain with its own tax, one beyond the limit.
    r.ok("subaccount.expense.edit", &[("plid", "1")]);
    r.ok(
        "subaccount.expense.edit",
        &[
            ("plid", "1"),
            ("sok", "ok"),
            ("amount", "50.00"),
            ("name", "VPS"),
            ("operation", "open"),
        ],
    );
    r.ok(
        "subaccount.expense.edit",
        &[
            ("plid", "1"),
            ("sok", "ok"),
            ("amount", "12.00"),
            ("name", "example.org"),
            ("itemtype", "domain"),
        ],
    );
    r.err(
        "subaccount.expense.edit",
        &[
            ("plid", "1"),
            ("sok", "ok"),
            ("amount", "200.00"),
            ("name", "Too much"),
        ],
        ErrorType::Value,
    );
    r.ok("subaccount.expense.edit", &[("elid", "2")]);
    r.ok(
        "subaccount.expense.edit",
        &[("elid", "2"), ("sok", "ok"), ("name", "VPS small")],
    );
    r.err(
        "subaccount.expense.edit",
        &[("elid", "2"), ("sok", "ok"), ("amount", "1.00")],
        ErrorType::Value,
    );
    r.ok("subaccount.expense", &[("plid", "1")]);

    // What payments pay.
    r.ok("payment.expense", &[("elid", "1")]);
    r.ok("payment.expense.edit", &[("plid", "1"), ("elid", "2")]);
    r.ok(
        "payment.expense.edit",
        &[
            ("plid", "1"),
            ("elid", "2"),
            ("sok", "ok"),
            ("amount", "40.00"),
        ],
    );
    r.ok(
        "payment.expense.edit",
        &[
            ("plid", "2"),
            ("sok", "ok"),
            ("expense", "2"),
            ("amount", "5.00"),
        ],
    );
    r.err(
        "payment.expense.edit",
        &[
            ("plid", "2"),
            ("sok", "ok"),
            ("expense", "2"),
            ("amount", "1.00"),
        ],
        ErrorType::Value,
    );
    r.ok("payment.expense", &[("elid", "2")]);
    r.ok("payment.expense.delete", &[("plid", "2"), ("elid", "2")]);
    r.err(
        "payment.expense.delete",
        &[("plid", "2"), ("elid", "2")],
        ErrorType::Value,
    );

    // Refunds.
    r.ok("payment.refund", &[("elid", "2")]);
    r.ok(
        "payment.refund",
        &[
            ("elid", "2"),
            ("sok", "ok"),
            ("amount", "10.00"),
            ("description", "partial"),
        ],
    );
    r.err(
        "payment.refund",
        &[("elid", "3"), ("sok", "ok"), ("amount", "1.00")],
        ErrorType::Value,
    );
    r.err(
        "payment.refund",
        &[("elid", "2"), ("sok", "ok"), ("amount", "40.01")],
        ErrorType::Value,
    );
    r.ok("payment.edit", &[("elid", "2")]);
    r.ok("subaccount.refund", &[("elid", "1")]);
    r.ok(
        "subaccount.refund",
        &[
            ("elid", "1"),
            ("sok", "ok"),
            ("amount", "10.00"),
            ("description", "closing"),
        ],
    );
    r.err(
        "subaccount.refund",
        &[("elid", "1"), ("sok", "ok"), ("amount", "1000")],
        ErrorType::Value,
    );
    r.ok("payment.history", &[("elid", "2")]);
    r.ok("subaccount", &[("plid", "1")]);

    // Suspension, deletions, tickets.
    r.ok("subaccount.suspend", &[("elid", "1")]);
    r.err("subaccount.suspend", &[("elid", "1")], ErrorType::Value);
    r.err(
        "subaccount.expense.edit",
        &[
            ("plid", "1"),
            ("sok", "ok"),
            ("amount", "1.00"),
            ("name", "While suspended"),
        ],
        ErrorType::Value,
    );
    r.ok("subaccount.resume", &[("elid", "1")]);
    r.ok("subaccount.expense.delete", &[("elid", "3")]);
    r.err(
        "subaccount.expense.delete",
        &[("elid", "3")],
        ErrorType::Value,
    );
    r.ok(
        "payment.edit",
        &[
            ("plid", "2"),
            ("sok", "ok"),
            ("paymethod", "1"),
            ("paymethodamount", "7"),
        ],
    );
    r.ok("payment.delete", &[("elid", "4")]);
    r.err("payment.delete", &[("elid", "1")], ErrorType::Value);
    r.ok("ticket.write.payment", &[("elid", "1")]);
    r.ok(
        "ticket.write.payment",
        &[
            ("elid", "1"),
            ("sok", "ok"),
            ("subject", "Your refund"),
            ("message", "Sent today."),
        ],
    );

    // Stored filters of the ledger lists.
    r.ok("account.payment.filter", &[]);
    r.ok(
        "account.payment.filter",
        &[("sok", "ok"), ("status", "9"), ("account", "2")],
    );
    r.ok("account.payment", &[]);
    r.ok("account.payment.filter", &[("sok", "ok")]);
    r.ok(
        "subaccount.expense.filter",
        &[("sok", "ok"), ("locale_name", "vps")],
    );
    r.ok("subaccount.expense", &[]);
    r.ok("subaccount.expense.filter", &[]);
    r.ok("subaccount.expense.filter", &[("sok", "ok")]);

    // A client user.
    let ann = user(engine, "ann@example.com");
    r.call_as(&ann, "payment.add", &[]);
    let doc = r.call_as(
        &ann,
        "payment.add",
        &[("sok", "ok"), ("paymethod", "1"), ("amount", "15")],
    );
    assert!(!doc.is_error(), "{doc:?}");
    r.call_as(&ann, "payment.setpaid", &[("elid", "5")]);
    r.call_as(&ann, "account.payment", &[]);
    r.call_as(&ann, "subaccount.expense", &[]);

    // What a payment module calls: the payment, its state changes with the gateway's id (a
    // repeat changes nothing), the staff-wide list with multi-value filters.
    r.call_as(&ann, "payment.info", &[("elid", "5")]);
    r.ok("payment.info", &[("elid", "5")]);
    r.ok(
        "payment.setinpay",
        &[("elid", "5"), ("externalid", "gw-5"), ("info", "started")],
    );
    r.ok("payment.setinpay", &[("elid", "5"), ("externalid", "gw-5")]);
    r.err(
        "payment.setpaid",
        &[("elid", "5"), ("externalid", "gw-other")],
        ErrorType::Value,
    );
    r.ok(
        "payment.setpaid",
        &[
            ("elid", "5"),
            ("externalid", "gw-5"),
            ("info", "paid at the gateway"),
        ],
    );
    let before = r.ok("subaccount", &[("elid", "1")]);
    r.ok("payment.setpaid", &[("elid", "5"), ("externalid", "gw-5")]);
    let after = r.ok("subaccount", &[("elid", "1")]);
    assert_eq!(before, after, "a repeated setpaid credits once");
    r.err("payment.setpaid", &[("elid", "5")], ErrorType::Value);
    r.err("payment.setcanceled", &[("elid", "5")], ErrorType::Value);
    r.ok("payment.info", &[("elid", "5")]);
    for (func, amount) in [
        ("payment.setfraud", "11"),
        ("payment.setcanceled", "12"),
        ("payment.setnopay", "13"),
    ] {
        let doc = r.ok(
            "payment.add",
            &[
                ("sok", "ok"),
                ("plid", "1"),
                ("paymethod", "1"),
                ("amount", amount),
            ],
        );
        let id = match &doc {
            Doc::Ok(f) => f
                .iter()
                .find(|(k, _)| k == "id")
                .map(|(_, v)| v.clone())
                .expect("id"),
            other => panic!("{other:?}"),
        };
        if func == "payment.setnopay" {
            r.ok("payment.setinpay", &[("elid", &id)]);
        }
        r.ok(func, &[("elid", &id)]);
        r.ok(func, &[("elid", &id)]);
    }
    r.ok("payment", &[]);
    r.ok("payment", &[("filter", "on"), ("status", "4, 9")]);
    r.ok(
        "payment",
        &[("filter", "on"), ("paymethod", "1,2"), ("status", "7")],
    );
    r.err(
        "payment",
        &[("filter", "on"), ("status", "4,,9")],
        ErrorType::Value,
    );
    // Amounts in the payment's currencies: 11.50 < 12 and 13 > 12.5.
    r.ok(
        "payment",
        &[
            ("filter", "on"),
            ("subaccountamount_from", "11.50"),
            ("paymethodamount_to", "12.5"),
        ],
    );
    r.err(
        "payment",
        &[("filter", "on"), ("subaccountamount_from", "1e3")],
        ErrorType::Value,
    );
    r.err(
        "payment.filter",
        &[("sok", "ok"), ("paymethod", "1,x")],
        ErrorType::Value,
    );
    r.ok("payment.filter", &[("sok", "ok"), ("status", "1,2")]);
    r.ok("payment.filter", &[]);
    r.ok("payment", &[]);
    r.call_as(&ann, "payment", &[]);
    r.call_as(&ann, "payment.success", &[("elid", "5")]);
    r.call_as(
        &Caller::anonymous("127.0.0.1"),
        "payment.fail",
        &[("elid", "5")],
    );

    let violations = engine.read(billhost::ledger::check).expect("check");
    assert!(violations.is_empty(), "{violations:?}");
    let failures = std::mem::take(&mut r.golden.failures);
    assert!(
        failures.is_empty(),
        "{} golden documents differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn ids(doc: &Doc, column: &str) -> Vec<String> {
    match doc {
        Doc::List(l) => l
            .elems
            .iter()
            .filter_map(|e| e.iter().find(|(k, _)| k == column).map(|(_, v)| v.clone()))
            .collect(),
        other => panic!("not a list: {other:?}"),
    }
}

fn kind(doc: &Doc) -> Option<ErrorType> {
    match doc {
        Doc::Error(e) => Some(e.kind),
        _ => None,
    }
}

#[test]
fn a_client_user_sees_and_does_only_its_own() {
    let (engine, _dir) = engine("access");
    client_access(&engine);
}

#[test]
fn a_client_user_sees_and_does_only_its_own_on_postgres() {
    if let Some((engine, _cluster)) = pg_engine("ledger_access") {
        client_access(&engine);
    }
}

fn client_access(engine: &Engine) {
    let root = Caller::superuser();
    let call = |caller: &Caller, func: &str, params: &[(&str, &str)]| {
        engine.call(caller, func, Params::from_pairs(params.iter().copied()))
    };
    let must = |func: &str, params: &[(&str, &str)]| {
        let doc = call(&root, func, params);
        assert!(!doc.is_error(), "{func}: {doc:?}");
        doc
    };
    must(
        "project.edit",
        &[("elid", "1"), ("sok", "ok"), ("currency", "840")],
    );
    must(
        "paymethod.edit",
        &[("sok", "ok"), ("name", "Bank"), ("currency", "840")],
    );
    for (email, pass) in [
        ("ann@example.com", "secret-pass-1"),
        ("bob@example.com", "secret-pass-2"),
    ] {
        must(
            "account.edit",
            &[("sok", "ok"), ("email", email), ("passwd", pass)],
        );
    }
    for plid in ["1", "2"] {
        must(
            "payment.edit",
            &[
                ("plid", plid),
                ("sok", "ok"),
                ("paymethod", "1"),
                ("paymethodamount", "10"),
            ],
        );
    }
    must("payment.setpaid", &[("elid", "1, 2")]);
    must(
        "subaccount.expense.edit",
        &[
            ("plid", "1"),
            ("sok", "ok"),
            ("amount", "1"),
            ("name", "Ann's"),
        ],
    );
    must(
        "subaccount.expense.edit",
        &[
            ("plid", "2"),
            ("sok", "ok"),
            ("amount", "2"),
            ("name", "Bob's"),
        ],
    );

    let ann = user(engine, "ann@example.com");
    assert_eq!(ids(&call(&ann, "account.payment", &[]), "id"), ["1"]);
    assert_eq!(ids(&call(&ann, "subaccount.expense", &[]), "id"), ["1"]);
    assert_eq!(ids(&call(&ann, "subaccount", &[]), "id"), ["1"]);
    assert_eq!(ids(&call(&root, "account.payment", &[]), "id"), ["2", "1"]);
    // Another client's objects are refused, by list parent and by id.
    assert_eq!(
        kind(&call(&ann, "account.payment", &[("plid", "2")])),
        Some(ErrorType::Access)
    );
    assert_eq!(
        kind(&call(&ann, "subaccount.expense", &[("elid", "2")])),
        Some(ErrorType::Access)
    );

    // payment.add: for its own account only; setpaid and staff funcs are refused.
    let doc = call(
        &ann,
        "payment.add",
        &[("sok", "ok"), ("paymethod", "1"), ("amount", "25")],
    );
    assert_eq!(doc.field("id"), Some("3"), "{doc:?}");
    let owner: i64 = engine
        .read(|c| {
            Ok(
                c.query_row("SELECT account_id FROM payment WHERE id = 3", [], |r| {
                    r.get(0)
                })?,
            )
        })
        .expect("owner");
    assert_eq!(owner, 1);
    assert_eq!(
        kind(&call(
            &ann,
            "payment.add",
            &[
                ("sok", "ok"),
                ("plid", "2"),
                ("paymethod", "1"),
                ("amount", "25")
            ]
        )),
        Some(ErrorType::Access)
    );
    for (func, params) in [
        ("payment.setpaid", vec![("elid", "3")]),
        ("payment.edit", vec![("elid", "3")]),
        (
            "payment.refund",
            vec![("elid", "1"), ("sok", "ok"), ("amount", "1")],
        ),
        ("subaccount.expense.delete", vec![("elid", "1")]),
        ("subaccount.refund", vec![("elid", "1"), ("sok", "ok")]),
        ("payment.expense", vec![("elid", "1")]),
        ("account.currencyrate", vec![]),
        (
            "paymethod.edit",
            vec![("sok", "ok"), ("name", "Mine"), ("currency", "840")],
        ),
    ] {
        assert_eq!(
            kind(&call(&ann, func, &params)),
            Some(ErrorType::Access),
            "{func}"
        );
    }
    let status: i64 = engine
        .read(|c| Ok(c.query_row("SELECT status FROM payment WHERE id = 3", [], |r| r.get(0))?))
        .expect("status");
    assert_eq!(status, 1, "a client cannot set its payment paid");
    assert!(
        engine
            .read(billhost::ledger::check)
            .expect("check")
            .is_empty()
    );
}
