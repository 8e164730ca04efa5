//! No spec field is dropped silently: every field the spec (the API reference the project
//! starts from, copied in `tests/spec/billmanager-account-api.txt`) lists for a form
//! is sent through the engine, and is either stored (read back in the object's view, or the
//! list that shows it) or refused with an error document. A field the spec lists that the
//! table below does not cover fails the test, so does a field answered ok and not stored.
//! On SQLite and on PostgreSQL.

mod common;
#[path = "support/pg.rs"]
mod pg;

use billhost::wire::Format;
use billhost::{Doc, Engine, EngineConfig};
use common::{Fixture, TempDir, id_of, render};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// The spec's form fields, by func: the fields after "The list object's parameters" of each
/// `.edit`-like func, and the parameters of the `register` function.
fn spec_fields() -> BTreeMap<String, BTreeSet<String>> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/spec/billmanager-account-api.txt");
    let text = std::fs::read_to_string(&path).expect("read the spec");
    let mut forms: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut func = String::new();
    let mut in_fields = false;
    for line in text.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("Function: ") {
            func = name.trim().to_string();
            in_fields = false;
        } else if t.contains("use the register function") {
            func = "register".into();
            in_fields = true;
        } else if t.starts_with("Send a ticket") {
            in_fields = false;
        } else if t.starts_with("The list object's parameters or additional query parameters") {
            in_fields = true;
        } else if in_fields && let Some(rest) = t.strip_prefix("- ") {
            let name = rest.split_whitespace().next().unwrap_or("");
            if !name.is_empty() && name != "sok" {
                forms
                    .entry(func.clone())
                    .or_default()
                    .insert(name.to_string());
            }
        }
    }
    forms
}

/// What must become of a field sent alone (with the form's base parameters).
#[derive(Clone, Copy)]
enum Want {
    /// Answered ok, and the read-back (rendered as `key=value` text) contains this.
    Stored(&'static str),
    /// An error document naming the field.
    Refused,
    /// Answered ok with this value, and refused without it where the provider requires it
    /// (`conditions_agree`).
    Gate,
    /// A func that exists only with a notifier plugin loaded (`account.sms`): walked by
    /// `tests/plugins.rs` (`sms_goes_through_the_notifier_and_is_recorded`), which stores
    /// each field; here, without plugins, it is refused (an unknown func).
    Plugin,
}

/// One field of one form: the value sent and what must become of it.
struct Case {
    func: &'static str,
    field: &'static str,
    value: &'static str,
    want: Want,
}

const fn case(func: &'static str, field: &'static str, value: &'static str, want: Want) -> Case {
    Case {
        func,
        field,
        value,
        want,
    }
}

use Want::{Gate, Plugin, Refused, Stored};

/// Every spec field. Values that the read-back shows differently say so in `Stored`.
const CASES: &[Case] = &[
    // register: read back in account.edit of the new client.
    case(
        "register",
        "email",
        "reg-email@example.com",
        Stored("email=reg-email@example.com"),
    ),
    case("register", "passwd", "Another456", Stored("")),
    case(
        "register",
        "realname",
        "Reg Name",
        Stored("realname=Reg Name"),
    ),
    case(
        "register",
        "phone",
        "+1 555 0100",
        Stored("try_phone=+1 555 0100"),
    ),
    case("register", "conditions_agree", "on", Gate),
    case("register", "offer_xxx", "on", Refused),
    case("register", "country", "276", Stored("country=276")),
    case("register", "state", "Bavaria", Stored("state=Bavaria")),
    case("register", "project", "1", Stored("project=1")),
    case("register", "recovery", "on", Refused),
    case("register", "_ga", "GA1.2.3.4", Stored("_ga=GA1.2.3.4")),
    case("register", "partner", "{acc}", Stored("partner={acc}")),
    case("register", "sesid", "click-77", Stored("sesid=click-77")),
    case("register", "tzoffset", "180", Stored("tzoffset=180")),
    // payment.edit: a change of the new payment P (the paid payment Q for paydate).
    case(
        "payment.edit",
        "number",
        "INV-SPEC-1",
        Stored("number=INV-SPEC-1"),
    ),
    case(
        "payment.edit",
        "createdate",
        "2020-01-02 03:04:05",
        Stored("createdate=2020-01-02 03:04:05"),
    ),
    case("payment.edit", "paydate", "2021-02-03", Refused),
    case(
        "payment.edit",
        "paydate",
        "2021-02-04",
        Stored("paydate=2021-02-04 00:00:00"),
    ),
    case(
        "payment.edit",
        "documentnumber",
        "DOC-9",
        Stored("documentnumber=DOC-9"),
    ),
    case(
        "payment.edit",
        "documentdate",
        "2020-01-03",
        Stored("documentdate=2020-01-03"),
    ),
    case(
        "payment.edit",
        "description",
        "For hosting",
        Stored("description=For hosting"),
    ),
    case(
        "payment.edit",
        "sender",
        "ACME Ltd",
        Stored("sender=ACME Ltd"),
    ),
    case(
        "payment.edit",
        "subaccountamount",
        "40.00",
        Stored("subaccountamount=40.00"),
    ),
    case("payment.edit", "usedamount", "5.00", Refused),
    case(
        "payment.edit",
        "paymethodamount",
        "50.00",
        Stored("paymethodamount=50.00"),
    ),
    case(
        "payment.edit",
        "commissionamount",
        "1.50",
        Stored("commissionamount=1.50"),
    ),
    case("payment.edit", "taxamount_readonly", "3.00", Refused),
    case("payment.edit", "status", "4", Refused),
    case(
        "payment.edit",
        "paymethod",
        "{pm2}",
        Stored("paymethod={pm2}"),
    ),
    case(
        "payment.edit",
        "restrictrefund",
        "on",
        Stored("restrictrefund=on"),
    ),
    case(
        "payment.edit",
        "info",
        "gateway says hi",
        Stored("info=gateway says hi"),
    ),
    case(
        "payment.edit",
        "note",
        "call back",
        Stored("note=call back"),
    ),
    // payment.refund of the paid payment Q: read back in its history.
    case(
        "payment.refund",
        "amount",
        "1.00",
        Stored("1.00 EUR returned"),
    ),
    case(
        "payment.refund",
        "description",
        "Goodwill",
        Stored("(Goodwill)"),
    ),
    // payment.expense.edit: a new allocation of Q to expense E2, read in payment.expense.
    case(
        "payment.expense.edit",
        "expense",
        "{e2}",
        Stored("expense={e2}"),
    ),
    case(
        "payment.expense.edit",
        "amount",
        "2.00",
        Stored("amount_iso=2.00 EUR"),
    ),
    // payment.orderinfo.edit: a line of P, read in payment.orderinfo.
    case(
        "payment.orderinfo.edit",
        "name",
        "Hosting for May",
        Stored("info=Hosting for May"),
    ),
    // subaccount.edit: a change of the client's subaccount S.
    case(
        "subaccount.edit",
        "subaccount_project",
        "1",
        Stored("subaccount_project=1"),
    ),
    case(
        "subaccount.edit",
        "subaccount_currency",
        "978",
        Stored("subaccount_currency=978"),
    ),
    case(
        "subaccount.edit",
        "allowpostpaid",
        "on",
        Stored("allowpostpaid=on"),
    ),
    case(
        "subaccount.edit",
        "creditlimit",
        "25.00",
        Stored("creditlimit=25.00"),
    ),
    case(
        "subaccount.edit",
        "referer",
        "{acc2}",
        Stored("referer={acc2}"),
    ),
    case("subaccount.edit", "active", "on", Stored("active=on")),
    case(
        "subaccount.edit",
        "incident_limit",
        "7",
        Stored("incident_limit=7"),
    ),
    // account.discount.edit: a change of discount D.
    case(
        "account.discount.edit",
        "fromdate",
        "2024-01-01",
        Stored("fromdate=2024-01-01"),
    ),
    case(
        "account.discount.edit",
        "todate",
        "2024-12-31",
        Stored("todate=2024-12-31"),
    ),
    case(
        "account.discount.edit",
        "type",
        "percent",
        Stored("type=percent"),
    ),
    case(
        "account.discount.edit",
        "percentage",
        "12.5",
        Stored("percentage=12.5"),
    ),
    case(
        "account.discount.edit",
        "priority",
        "3",
        Stored("priority=3"),
    ),
    case(
        "account.discount.edit",
        "actiontype",
        "any",
        Stored("actiontype=any"),
    ),
    case("account.discount.edit", "period", "12", Stored("period=12")),
    case(
        "account.discount.edit",
        "note",
        "loyal",
        Stored("note=loyal"),
    ),
    // account.sms: a notifier plugin's func (see `Want::Plugin`).
    case("account.sms", "type", "valid_phone", Plugin),
    case("account.sms", "phone", "+1 555 0100", Plugin),
    case("account.sms", "message", "hello", Plugin),
    // account.currencyrate.edit: a change of rate R.
    case(
        "account.currencyrate.edit",
        "currency_base",
        "643",
        Stored("currency_base=643"),
    ),
    case(
        "account.currencyrate.edit",
        "currency_relate",
        "826",
        Stored("currency_relate=826"),
    ),
    case(
        "account.currencyrate.edit",
        "rate",
        "0.91",
        Stored("rate=0.91"),
    ),
    case(
        "account.currencyrate.edit",
        "amount",
        "10",
        Stored("amount=10"),
    ),
    case(
        "account.currencyrate.edit",
        "ratedate",
        "2024-05-01",
        Stored("ratedate=2024-05-01"),
    ),
    // subaccount.expense.edit: a new expense of the client, read in its view.
    case(
        "subaccount.expense.edit",
        "subaccount",
        "{sub}",
        Stored("subaccount={sub}"),
    ),
    case(
        "subaccount.expense.edit",
        "item",
        "vps-1",
        Stored("item=vps-1"),
    ),
    case(
        "subaccount.expense.edit",
        "operation",
        "renew",
        Stored("operation=renew"),
    ),
    case(
        "subaccount.expense.edit",
        "amount",
        "3.00",
        Stored("amount=3.00"),
    ),
    case(
        "subaccount.expense.edit",
        "taxrate",
        "19",
        Stored("taxrate=19"),
    ),
    case(
        "subaccount.expense.edit",
        "postpaid",
        "on",
        Stored("postpaid=on"),
    ),
    case(
        "subaccount.expense.edit",
        "name",
        "VPS renewal",
        Stored("name=VPS renewal"),
    ),
    case(
        "subaccount.expense.edit",
        "realdate",
        "2024-03-04",
        Stored("realdate=2024-03-04"),
    ),
    case(
        "subaccount.expense.edit",
        "cdate",
        "2024-03-01",
        Stored("cdate=2024-03-01"),
    ),
    // account.taxrule.edit: a change of rule T.
    case("account.taxrule.edit", "project", "1", Stored("project=1")),
    case("account.taxrule.edit", "taxrate", "7", Stored("taxrate=7")),
    case(
        "account.taxrule.edit",
        "specialitemtype",
        "on",
        Stored("specialitemtype=on"),
    ),
    case(
        "account.taxrule.edit",
        "itemtype",
        "domain",
        Stored("itemtype=domain"),
    ),
    // account.edit: a change of the client (notify and recovery: on a create).
    case(
        "account.edit",
        "email",
        "changed@example.com",
        Stored("email=changed@example.com"),
    ),
    case(
        "account.edit",
        "verify_email",
        "on",
        Stored("verify_email=on"),
    ),
    case("account.edit", "project", "1", Stored("project=1")),
    case("account.edit", "country", "250", Stored("country=250")),
    case(
        "account.edit",
        "state",
        "Ile-de-France",
        Stored("state=Ile-de-France"),
    ),
    case(
        "account.edit",
        "realname",
        "Ann Smith",
        Stored("realname=Ann Smith"),
    ),
    case("account.edit", "name", "Ann Ltd", Stored("name=Ann Ltd")),
    case(
        "account.edit",
        "settingurl",
        "https://panel.example.com/",
        Stored("settingurl=https://panel.example.com/"),
    ),
    case(
        "account.edit",
        "valid_phone",
        "+33 1 0000",
        Stored("valid_phone=+33 1 0000"),
    ),
    case(
        "account.edit",
        "try_phone",
        "+33 1 0001",
        Stored("try_phone=+33 1 0001"),
    ),
    case("account.edit", "label", "vip", Stored("label=vip")),
    case(
        "account.edit",
        "selfview",
        "ns.example.com",
        Stored("selfview=ns.example.com"),
    ),
    case("account.edit", "passwd", "Changed789", Stored("")),
    case("account.edit", "confirm", "Changed000", Refused),
    case(
        "account.edit",
        "products_page",
        "vds",
        Stored("products_page=vds"),
    ),
    case(
        "account.edit",
        "registration_date",
        "2019-05-06 07:08:09",
        Stored("registration_date=2019-05-06 07:08:09"),
    ),
    case(
        "account.edit",
        "registration_ip",
        "192.0.2.7",
        Stored("registration_ip=192.0.2.7"),
    ),
    case("account.edit", "registration_ip", "somewhere", Refused),
    case("account.edit", "attitude", "1", Stored("attitude=1")),
    case(
        "account.edit",
        "employee",
        "{staff}",
        Stored("employee={staff}"),
    ),
    case("account.edit", "nocalcstat", "on", Stored("nocalcstat=on")),
    case(
        "account.edit",
        "note",
        "pays late",
        Stored("note=pays late"),
    ),
    case(
        "account.edit",
        "notify",
        "on",
        Stored("subject=Your account at Provider"),
    ),
    case("account.edit", "notify", "on", Refused),
    case("account.edit", "recovery", "on", Refused),
];

/// The ids the cases refer to (`{name}` in a value or an expectation).
struct Objects(BTreeMap<&'static str, String>);

impl Objects {
    fn fill(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (k, v) in &self.0 {
            out = out.replace(&format!("{{{k}}}"), v);
        }
        out
    }
    fn get(&self, k: &str) -> &str {
        &self.0[k]
    }
}

fn setup(fx: &Fixture) -> Objects {
    fx.ok(
        "project.edit",
        &[("elid", "1"), ("sok", "ok"), ("currency", "978")],
    );
    let pm = |name: &str| {
        id_of(&fx.ok(
            "paymethod.edit",
            &[
                ("sok", "ok"),
                ("name", name),
                ("currency", "978"),
                ("project", "1"),
            ],
        ))
    };
    let (pm1, pm2) = (pm("Bank"), pm("Card"));
    let acc = fx.register("ann@example.com");
    let acc2 = fx.register("bob@example.com");
    let (acc_s, pm1_s) = (acc.to_string(), pm1.to_string());
    let payment = |amount: &str| {
        id_of(&fx.ok(
            "payment.edit",
            &[
                ("sok", "ok"),
                ("plid", &acc_s),
                ("paymethod", &pm1_s),
                ("paymethodamount", amount),
            ],
        ))
    };
    let p = payment("100.00");
    let q = payment("100.00");
    fx.ok("payment.setpaid", &[("elid", &q.to_string())]);
    let e2 = id_of(&fx.ok(
        "subaccount.expense.edit",
        &[("sok", "ok"), ("plid", &acc_s), ("amount", "5.00")],
    ));
    fx.ok(
        "payment.expense.delete",
        &[("plid", &q.to_string()), ("elid", &e2.to_string())],
    );
    let sub = fx
        .ok("subaccount.expense.edit", &[("elid", &e2.to_string())])
        .field("subaccount")
        .expect("subaccount")
        .to_string();
    let d = id_of(&fx.ok(
        "account.discount.edit",
        &[("sok", "ok"), ("name", "Spring"), ("percentage", "5")],
    ));
    let r = id_of(&fx.ok(
        "account.currencyrate.edit",
        &[
            ("sok", "ok"),
            ("currency_base", "840"),
            ("currency_relate", "978"),
            ("rate", "1.1"),
        ],
    ));
    let t = id_of(&fx.ok("account.taxrule.edit", &[("sok", "ok"), ("taxrate", "20")]));
    fx.engine
        .ensure_staff("clerk", Some("Secret123"))
        .expect("staff user");
    let staff: i64 = fx
        .engine
        .read(|c| billhost::auth::user_id(c, "clerk"))
        .expect("read")
        .expect("clerk exists");
    let mut m = BTreeMap::new();
    for (k, v) in [
        ("acc", acc),
        ("acc2", acc2),
        ("pm2", pm2),
        ("p", p),
        ("q", q),
        ("e2", e2),
        ("d", d),
        ("r", r),
        ("t", t),
        ("staff", staff),
    ] {
        m.insert(k, v.to_string());
    }
    m.insert("sub", sub);
    Objects(m)
}

/// The base parameters of a form's call and how to read what it stored, for one case.
fn send_and_read(fx: &Fixture, o: &Objects, c: &Case, n: usize) -> (Doc, Option<Doc>) {
    let value = o.fill(c.value);
    let s = |v: &str| v.to_string();
    let (func, mut params): (&str, Vec<(String, String)>) = match c.func {
        "register" => {
            let email = format!("reg{n}@example.com");
            (
                "register",
                vec![
                    (s("sok"), s("ok")),
                    (s("email"), email),
                    (s("passwd"), s("Secret123")),
                ],
            )
        }
        // A pay date is refused on the new payment P and stored on the paid payment Q.
        "payment.edit" if c.field == "paydate" && matches!(c.want, Stored(_)) => (
            c.func,
            vec![(s("sok"), s("ok")), (s("elid"), s(o.get("q")))],
        ),
        "payment.edit" => (
            c.func,
            vec![(s("sok"), s("ok")), (s("elid"), s(o.get("p")))],
        ),
        "payment.refund" => (
            c.func,
            vec![
                (s("sok"), s("ok")),
                (s("elid"), s(o.get("q"))),
                (s("amount"), s("1.00")),
            ],
        ),
        "payment.expense.edit" => (
            c.func,
            vec![
                (s("sok"), s("ok")),
                (s("plid"), s(o.get("q"))),
                (s("expense"), s(o.get("e2"))),
                (s("amount"), s("2.00")),
            ],
        ),
        "payment.orderinfo.edit" => (
            c.func,
            vec![(s("sok"), s("ok")), (s("plid"), s(o.get("p")))],
        ),
        "subaccount.edit" => (
            c.func,
            vec![(s("sok"), s("ok")), (s("elid"), s(o.get("sub")))],
        ),
        "account.discount.edit" => (
            c.func,
            vec![(s("sok"), s("ok")), (s("elid"), s(o.get("d")))],
        ),
        "account.currencyrate.edit" => (
            c.func,
            vec![(s("sok"), s("ok")), (s("elid"), s(o.get("r")))],
        ),
        "account.taxrule.edit" => (
            c.func,
            vec![(s("sok"), s("ok")), (s("elid"), s(o.get("t")))],
        ),
        "subaccount.expense.edit" => (
            c.func,
            vec![
                (s("sok"), s("ok")),
                (s("plid"), s(o.get("acc"))),
                (s("amount"), s("1.00")),
            ],
        ),
        "account.sms" => (
            c.func,
            vec![(s("sok"), s("ok")), (s("elid"), s(o.get("acc")))],
        ),
        // notify=on on a change is refused; on a create it queues the registration email.
        "account.edit" if c.field == "notify" && matches!(c.want, Refused) => (
            c.func,
            vec![(s("sok"), s("ok")), (s("elid"), s(o.get("acc")))],
        ),
        "account.edit" if matches!(c.field, "notify" | "recovery") => (
            c.func,
            vec![
                (s("sok"), s("ok")),
                (s("email"), format!("new{n}@example.com")),
            ],
        ),
        "account.edit" => (
            c.func,
            vec![(s("sok"), s("ok")), (s("elid"), s(o.get("acc")))],
        ),
        other => panic!("no base for {other}"),
    };
    if c.func == "payment.expense.edit" {
        // Each case allocates anew what the refund before may have allocated again.
        let _ = fx.call(
            "payment.expense.delete",
            &[("plid", o.get("q")), ("elid", o.get("e2"))],
        );
    }
    params.retain(|(k, _)| k != c.field);
    params.push((c.field.to_string(), value.clone()));
    if c.field == "confirm" {
        params.push((s("passwd"), s("Changed789")));
    }
    let pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let doc = fx.call(func, &pairs);
    if doc.is_error() {
        return (doc, None);
    }
    let read = match (c.func, c.field) {
        ("register", "passwd") => {
            let email = &params.iter().find(|(k, _)| k == "email").expect("email").1;
            fx.call("auth", &[("username", email), ("password", &value)])
        }
        ("account.edit", "passwd") => fx.call(
            "auth",
            &[("username", "changed@example.com"), ("password", &value)],
        ),
        ("register", _) => fx.call("account.edit", &[("elid", &id_of(&doc).to_string())]),
        ("payment.refund", _) => fx.call("payment.history", &[("elid", o.get("q"))]),
        ("payment.expense.edit", _) => fx.call("payment.expense", &[("plid", o.get("q"))]),
        ("payment.orderinfo.edit", _) => fx.call("payment.orderinfo", &[("plid", o.get("p"))]),
        ("account.edit", "notify") => fx.call(
            "outbox",
            &[("filter", "on"), ("account", &id_of(&doc).to_string())],
        ),
        ("subaccount.expense.edit", _) => fx.call(c.func, &[("elid", &id_of(&doc).to_string())]),
        (f, _) => {
            let elid = params
                .iter()
                .find(|(k, _)| k == "elid")
                .expect("elid")
                .1
                .clone();
            fx.call(f, &[("elid", &elid)])
        }
    };
    (doc, Some(read))
}

fn walk(fx: &Fixture) {
    let spec = spec_fields();
    // The table covers every spec field, and names no field the spec does not list.
    let covered: BTreeSet<(String, String)> = CASES
        .iter()
        .map(|c| (c.func.to_string(), c.field.to_string()))
        .collect();
    let listed: BTreeSet<(String, String)> = spec
        .iter()
        .flat_map(|(f, names)| names.iter().map(move |n| (f.clone(), n.clone())))
        .collect();
    let missing: Vec<_> = listed.difference(&covered).collect();
    let extra: Vec<_> = covered.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "spec fields without a case: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "cases for fields the spec does not list: {extra:?}"
    );
    assert!(
        listed.len() > 90,
        "the spec parser found only {} fields",
        listed.len()
    );

    let o = setup(fx);
    let mut failures = Vec::new();
    for (n, c) in CASES.iter().enumerate() {
        let what = format!("{} {}={}", c.func, c.field, c.value);
        let (doc, read) = send_and_read(fx, &o, c, n);
        match c.want {
            Refused | Plugin => {
                let text = render(&doc, Format::Text, c.func);
                if !doc.is_error() {
                    failures.push(format!("{what}: answered ok, expected an error: {text}"));
                }
            }
            Stored(_) | Gate if doc.is_error() => {
                failures.push(format!(
                    "{what}: refused: {}",
                    render(&doc, Format::Text, c.func)
                ));
            }
            Stored(shows) => {
                let read = read.expect("read");
                let text = render(&read, Format::Text, c.func);
                let shows = o.fill(shows);
                if read.is_error() || !text.contains(&shows) {
                    failures.push(format!("{what}: not stored: expected '{shows}' in {text}"));
                }
            }
            Gate => {
                // The provider requires the conditions: without them a registration is refused.
                fx.ok(
                    "project.edit",
                    &[("elid", "1"), ("sok", "ok"), ("conditions_required", "on")],
                );
                let email = format!("gate{n}@example.com");
                let without = fx.call(
                    "register",
                    &[("sok", "ok"), ("email", &email), ("passwd", "Secret123")],
                );
                let with = fx.call(
                    "register",
                    &[
                        ("sok", "ok"),
                        ("email", &email),
                        ("passwd", "Secret123"),
                        (c.field, c.value),
                    ],
                );
                fx.ok(
                    "project.edit",
                    &[("elid", "1"), ("sok", "ok"), ("conditions_required", "off")],
                );
                if !without.is_error() || with.is_error() {
                    failures.push(format!(
                        "{what}: not checked (without: {without:?}, with: {with:?})"
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} spec fields dropped or refused:\n{}",
        failures.len(),
        failures.join("\n")
    );
    list_dates(fx, &o);
}

/// The spec's lists with a date column show it as `YYYY-MM-DD`, the time in a column of its
/// own; the payments backdated above show their stored dates and times.
fn list_dates(fx: &Fixture, o: &Objects) {
    let shaped = |v: &str, len: usize, sep: u8, at: [usize; 2]| {
        v.len() == len
            && v.bytes().enumerate().all(|(i, b)| {
                if at.contains(&i) {
                    b == sep
                } else {
                    b.is_ascii_digit()
                }
            })
    };
    /// A list func, its parameters and its date columns.
    type DateList<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);
    let lists: &[DateList] = &[
        ("account", &[], &["tz_registration_date"]),
        ("account.payment", &[], &["create_date", "pay_date"]),
        ("payment.history", &[("elid", o.get("q"))], &["changedate"]),
        ("account.currencyrate", &[], &["ratedate"]),
        ("subaccount.expense", &[], &["realdate", "cdate"]),
    ];
    for (func, params, dates) in lists {
        let Doc::List(list) = fx.ok(func, params) else {
            panic!("{func} is not a list");
        };
        assert!(!list.elems.is_empty(), "{func} is empty");
        for elem in &list.elems {
            let get = |k: &str| elem.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
            for date in *dates {
                // A NULL date (a payment not paid) is left out of the element.
                let v = get(date).unwrap_or_default();
                assert!(
                    v.is_empty() || shaped(v, 10, b'-', [4, 7]),
                    "{func} {date}={v}"
                );
                let time = date.replace("date", "time");
                if let Some(t) = get(&time) {
                    assert!(
                        t.is_empty() || shaped(t, 8, b':', [2, 5]),
                        "{func} {time}={t}"
                    );
                }
            }
        }
    }
    let text = render(
        &fx.ok("account.payment", &[]),
        Format::Text,
        "account.payment",
    );
    let line = |id: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("id={id} ")))
            .unwrap_or_else(|| panic!("payment {id} not listed: {text}"))
            .to_string()
    };
    let p = line(o.get("p"));
    assert!(
        p.contains("create_date=2020-01-02 create_time=03:04:05"),
        "{p}"
    );
    let q = line(o.get("q"));
    assert!(q.contains("pay_date=2021-02-04 pay_time=00:00:00"), "{q}");
}

#[test]
fn every_spec_field_is_stored_or_refused() {
    walk(&Fixture::new("spec-fields"));
}

#[test]
fn every_spec_field_is_stored_or_refused_on_postgres() {
    let Some(cluster) = pg::Cluster::start("specfields") else {
        return;
    };
    let url = cluster.database("specfields");
    let fx = Fixture {
        dir: TempDir::new("spec-fields-pg"),
        engine: Engine::open(EngineConfig::new(&url)).expect("open on PostgreSQL"),
    };
    walk(&fx);
}
