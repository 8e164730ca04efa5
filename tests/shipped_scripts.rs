//! The scripts shipped in `scripts/`, loaded from the repository as the server loads them. On
//! SQLite and on PostgreSQL (a database of its own in the binary's cluster).

mod common;
#[macro_use]
#[path = "support/pg.rs"]
mod pg;

use billhost::{Engine, EngineConfig};
use common::{Fixture, TempDir, column, error_type};
use pg::Backend;
use std::path::{Path, PathBuf};

/// An engine with the shipped scripts loaded, and what keeps its database alive.
struct Shipped {
    fx: Fixture,
    _backend: Backend,
}

impl std::ops::Deref for Shipped {
    type Target = Fixture;
    fn deref(&self) -> &Fixture {
        &self.fx
    }
}

/// A fixture on `backend` whose engine runs the scripts of `scripts`.
fn scripted(backend: &Backend, tag: &str, scripts: &Path) -> Fixture {
    let dir = TempDir::new(tag);
    let config = EngineConfig::new(backend.db(dir.path())).with_scripts(scripts);
    let engine = Engine::open(config).expect("open engine");
    Fixture { dir, engine }
}

impl Shipped {
    fn new(backend: &Backend) -> Shipped {
        let scripts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts");
        let fx = scripted(backend, "shipped", &scripts);
        let status = fx.engine.scripts().status();
        assert!(
            status.last_error.is_none(),
            "shipped scripts do not load: {status:?}"
        );
        assert_eq!(status.files.len(), 4, "{status:?}");
        Shipped {
            fx,
            _backend: backend.clone(),
        }
    }

    /// A provider in USD with a bank method (1) and a bonus method (2), and one client (1).
    fn setup(&self) {
        self.ok(
            "project.edit",
            &[("elid", "1"), ("sok", "ok"), ("currency", "840")],
        );
        self.ok(
            "paymethod.edit",
            &[("sok", "ok"), ("name", "Bank"), ("currency", "840")],
        );
        self.ok(
            "paymethod.edit",
            &[("sok", "ok"), ("name", "Bonus"), ("currency", "840")],
        );
        self.ok(
            "register",
            &[
                ("sok", "ok"),
                ("email", "ann@example.com"),
                ("passwd", "Secret123"),
            ],
        );
    }

    fn pay(&self, amount: &str) -> String {
        let doc = self.ok(
            "payment.edit",
            &[
                ("plid", "1"),
                ("sok", "ok"),
                ("paymethod", "1"),
                ("paymethodamount", amount),
            ],
        );
        let id = doc.field("id").expect("id").to_string();
        self.ok("payment.setpaid", &[("elid", &id)]);
        id
    }

    fn balance(&self) -> String {
        column(&self.call("subaccount", &[("plid", "1")]), "balance").remove(0)
    }
}

backends! {
fn registration_guard_refuses_disposable_domains(backend) {
    let s = Shipped::new(&backend);
    let doc = s.call(
        "register",
        &[
            ("sok", "ok"),
            ("email", "Someone@Mailinator.com"),
            ("passwd", "Secret123"),
        ],
    );
    assert_eq!(error_type(&doc), "value");
    assert_eq!(column(&s.call("account", &[]), "id").len(), 0);
    s.ok(
        "register",
        &[
            ("sok", "ok"),
            ("email", "someone@example.com"),
            ("passwd", "Secret123"),
        ],
    );
}
}

backends! {
fn large_payments_earn_a_bonus_in_the_same_transaction(backend) {
    let s = Shipped::new(&backend);
    s.setup();
    s.pay("100.00");
    assert_eq!(s.balance(), "100.00", "below the threshold: no bonus");
    s.pay("600.00");
    assert_eq!(s.balance(), "730.00", "600.00 earns 30.00");
    let payments = s.call("account.payment", &[("plid", "1")]);
    assert_eq!(
        column(&payments, "paymethod_name")
            .iter()
            .filter(|m| *m == "Bonus")
            .count(),
        1
    );
    // Without a bonus method nothing is credited and the payment still goes through.
    s.ok(
        "paymethod.edit",
        &[("elid", "2"), ("sok", "ok"), ("active", "off")],
    );
    s.pay("1000.00");
    assert_eq!(s.balance(), "1730.00");
    assert_eq!(
        billhost::ledger::check(
            &billhost::store::connect(
                &s.engine.config().db_path,
                billhost::store::Durability::Full
            )
            .expect("db")
        )
        .expect("check"),
        vec![]
    );
}
}

backends! {
fn the_hourly_job_suspends_clients_below_their_credit_limit(backend) {
    let s = Shipped::new(&backend);
    s.setup();
    s.ok(
        "register",
        &[
            ("sok", "ok"),
            ("email", "bob@example.com"),
            ("passwd", "Secret123"),
        ],
    );
    s.ok(
        "subaccount.edit",
        &[("elid", "1"), ("sok", "ok"), ("creditlimit", "50.00")],
    );
    s.ok(
        "subaccount.expense.edit",
        &[
            ("plid", "1"),
            ("sok", "ok"),
            ("amount", "40.00"),
            ("name", "within the limit"),
        ],
    );
    s.ok(
        "subaccount.expense.edit",
        &[
            ("plid", "2"),
            ("sok", "ok"),
            ("amount", "10.00"),
            ("postpaid", "on"),
            ("name", "on credit"),
        ],
    );
    let outcomes = s.engine.run_jobs(|j| j.name == "suspend-debtors");
    assert_eq!(outcomes.len(), 1);
    assert!(outcomes[0].1.is_ok(), "{outcomes:?}");
    assert_eq!(
        column(&s.call("subaccount", &[]), "status"),
        vec!["active", "suspended"]
    );
    // Running it again changes nothing.
    assert!(
        s.engine.run_jobs(|j| j.name == "suspend-debtors")[0]
            .1
            .is_ok()
    );
}
}

backends! {
fn the_revenue_report_sums_credited_payments_per_provider_and_month(backend) {
    let s = Shipped::new(&backend);
    s.setup();
    s.pay("100.00");
    s.pay("0.10");
    s.pay("0.20");
    let unpaid = s.ok(
        "payment.edit",
        &[
            ("plid", "1"),
            ("sok", "ok"),
            ("paymethod", "1"),
            ("paymethodamount", "999.00"),
        ],
    );
    assert!(unpaid.field("id").is_some());
    let report = s.call("report.revenue", &[]);
    assert_eq!(column(&report, "total"), vec!["100.30"]);
    assert_eq!(column(&report, "payments"), vec!["3"]);
    assert_eq!(column(&report, "currency"), vec!["USD"]);
    assert_eq!(column(&report, "month")[0].len(), 7);
    // Staff only.
    s.ok(
        "register",
        &[
            ("sok", "ok"),
            ("email", "bob@example.com"),
            ("passwd", "Secret123"),
        ],
    );
    assert_eq!(
        error_type(&s.call_as(Some("bob@example.com"), "report.revenue", &[])),
        "access"
    );
}
}

backends! {
/// What a file does to the libraries, the string metatable, `billing` or its globals stays in
/// that file: a hostile file loaded before the guard and one after it (acting at load time and
/// again from a hook on every registration) leave the shipped guard working.
fn a_hostile_file_cannot_disable_the_shipped_guard(backend) {
    const HOSTILE: &str = r#"
    local function off() return nil end
    local function attack()
      pcall(function() string.match = off end)
      pcall(function() string.lower = off end)
      pcall(function() getmetatable("").__index.match = off end)
      pcall(function() getmetatable("").__index = {} end)
      pcall(rawset, string, "match", off)
      pcall(rawset, _G, "string", { match = off, lower = off })
      pcall(function() _G.billing = { on = off, reject = off } end)
      pcall(function() billing.reject = off end)
      pcall(rawset, billing, "reject", off)
      pcall(function() ipairs = function() return off end end)
    end
    attack()
    billing.on("register", "before", attack)
    "#;
    let dir = TempDir::new("shipped-hostile");
    let scripts = dir.path().join("scripts");
    std::fs::create_dir_all(&scripts).expect("scripts dir");
    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts");
    for entry in std::fs::read_dir(&shipped).expect("shipped scripts") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, scripts.join(path.file_name().expect("name"))).expect("copy");
    }
    std::fs::write(scripts.join("05-hostile.lua"), HOSTILE).expect("hostile");
    std::fs::write(scripts.join("99-hostile.lua"), HOSTILE).expect("hostile");
    let fx = scripted(&backend, "shipped-hostile", &scripts);
    let status = fx.engine.scripts().status();
    assert!(status.last_error.is_none(), "{status:?}");
    assert_eq!(status.files.len(), 6, "{status:?}");
    for _ in 0..2 {
        let doc = fx.call(
            "register",
            &[
                ("sok", "ok"),
                ("email", "someone@mailinator.com"),
                ("passwd", "Secret123"),
            ],
        );
        assert_eq!(error_type(&doc), "value", "{doc:?}");
    }
    assert_eq!(column(&fx.call("account", &[]), "id").len(), 0);
}
}
