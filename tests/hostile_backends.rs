//! Hostile input on both backends. A small world (a provider, a payment method, two clients
//! with their subaccounts, paid and new payments, expenses, groups, discounts, rates, tax rules,
//! a ticket) is seeded, then every func of the registry is called with hostile values (NUL
//! bytes, LIKE metacharacters, numbers at and past the edges of i64, the largest amounts, dates
//! that do not exist, 1 MB strings, a thousand ids, duplicate ids, SQL) in its declared
//! parameters, its list filters and the protocol's parameters, as the superuser and as a client
//! user; then credentials (`authinfo`, `auth`, the session cookie) and func names.
//!
//! Every answer is a document, never `internal` and never a panic; a call answered with an
//! error changed no business data; and on PostgreSQL the same sequence runs on a SQLite twin
//! side by side, call by call, and both backends must answer alike (ok, or the same error type
//! and object; a list the same number of rows). Lists filtered by LIKE values match the same
//! rows on both, in a database of the C locale and in one whose character type is not C.

mod common;
#[macro_use]
#[path = "support/pg.rs"]
mod pg;

use billhost::auth::{self, Caller};
use billhost::func::{FuncDecl, Handler, Ty};
use billhost::list::{FilterOp, ListSpec};
use billhost::store::{self, Connection, Durability};
use billhost::{Doc, Engine, EngineConfig, ErrorType, Params};
use common::TempDir;
use pg::Backend;
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// A class of hostile values: made from the value the parameter would otherwise get.
struct Class {
    name: &'static str,
    make: fn(&str) -> String,
}

const CLASSES: &[Class] = &[
    Class {
        name: "nul-after",
        make: |b| format!("{b}\0"),
    },
    Class {
        name: "nul-only",
        make: |_| "\0".into(),
    },
    Class {
        name: "nul-inside",
        make: |b| format!("a\0{b}"),
    },
    Class {
        name: "backslash-end",
        make: |b| format!("{b}\\"),
    },
    Class {
        name: "like-meta",
        make: |_| "%_\\%a_".into(),
    },
    Class {
        name: "i64-max",
        make: |_| i64::MAX.to_string(),
    },
    Class {
        name: "i64-min",
        make: |_| i64::MIN.to_string(),
    },
    Class {
        name: "i64-past-max",
        make: |_| "9223372036854775808".into(),
    },
    Class {
        name: "minus-zero",
        make: |_| "-0".into(),
    },
    Class {
        name: "18-digits",
        make: |_| "999999999999999999".into(),
    },
    Class {
        name: "largest-amount",
        make: |_| "999999999999999.99".into(),
    },
    Class {
        name: "past-largest-amount",
        make: |_| "-99999999999999999999999999.99".into(),
    },
    Class {
        name: "date-zero",
        make: |_| "0000-00-00".into(),
    },
    Class {
        name: "leap-second",
        make: |_| "9999-12-31 23:59:60".into(),
    },
    Class {
        name: "date-far",
        make: |_| "99999-12-31".into(),
    },
    Class {
        name: "one-megabyte",
        make: |_| "a".repeat(1 << 20),
    },
    Class {
        name: "thousand-ids",
        make: |_| {
            (1..=1000)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        },
    },
    Class {
        name: "duplicate-ids",
        make: |b| format!("{b},{b}"),
    },
    Class {
        name: "unicode",
        make: |b| format!("Äß\u{202e}😀{b}"),
    },
    Class {
        name: "sql",
        make: |b| format!("{b}' OR '1'='1'; --"),
    },
];

/// Who calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Admin,
    Client,
}

/// The ids of the seeded objects by table: the client Ann's (`keep`), and the client Bob's
/// (`victim`, what group funcs called by staff act on, so that the objects most calls name
/// survive).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Ids(BTreeMap<&'static str, (String, String)>);

impl Ids {
    fn keep(&self, table: &str) -> String {
        self.0
            .get(table)
            .map_or_else(|| "1".into(), |v| v.0.clone())
    }
    fn victim(&self, table: &str) -> String {
        self.0
            .get(table)
            .map_or_else(|| "1".into(), |v| v.1.clone())
    }
}

const ANN: &str = "ann@example.com";
const BOB: &str = "bob@example.com";
const PASSWORD: &str = "Secret123";

/// One backend's engine with its seeded world.
struct Side {
    engine: Engine,
    dump_conn: Connection,
    ids: Ids,
    ann: Caller,
    /// A session of Ann's.
    sid: String,
    /// The dump of business data as it is now, when known.
    dumped: Option<String>,
    _dir: TempDir,
}

/// What a call answered, as the backends must agree on it.
fn outcome(doc: &Doc) -> String {
    match doc {
        Doc::Error(e) => format!("{}({})", e.kind.as_str(), e.object),
        Doc::List(l) => format!("ok list {}/{}", l.elems.len(), l.p_elems),
        _ => "ok".into(),
    }
}

/// The value of a long hostile value as a failure message shows it.
fn shown(v: &str) -> String {
    let cut: String = v.chars().take(40).collect();
    let cut = format!("{cut:?}");
    if v.chars().count() > 40 {
        format!("{cut}... ({} bytes)", v.len())
    } else {
        cut
    }
}

impl Side {
    fn open(backend: &Backend, tag: &str) -> Side {
        let dir = TempDir::new(tag);
        let db = backend.db(dir.path());
        let engine = Engine::open(EngineConfig::new(&db)).expect("open engine");
        let dump_conn = store::connect(&db, Durability::Full).expect("dump connection");
        let mut side = Side {
            engine,
            dump_conn,
            ids: Ids::default(),
            ann: Caller::superuser(),
            sid: String::new(),
            dumped: None,
            _dir: dir,
        };
        side.seed();
        side
    }

    fn ok(&self, func: &str, params: &[(&str, &str)]) -> Doc {
        self.ok_as(&Caller::superuser(), func, params)
    }

    fn ok_as(&self, caller: &Caller, func: &str, params: &[(&str, &str)]) -> Doc {
        let doc = self
            .engine
            .call(caller, func, Params::from_pairs(params.iter().copied()));
        assert!(!doc.is_error(), "seeding: {func} {params:?}: {doc:?}");
        doc
    }

    fn id(&self, func: &str, params: &[(&str, &str)]) -> String {
        self.ok(func, params)
            .field("id")
            .unwrap_or_else(|| panic!("seeding: {func} made no id"))
            .to_string()
    }

    /// The world: everything twice, Ann's and Bob's.
    fn seed(&mut self) {
        self.engine
            .ensure_staff("clerk", Some(PASSWORD))
            .expect("staff user");
        self.ok(
            "project.edit",
            &[("elid", "1"), ("sok", "ok"), ("currency", "840")],
        );
        let pm = |s: &Side, name: &str| {
            s.id(
                "paymethod.edit",
                &[("sok", "ok"), ("name", name), ("currency", "840")],
            )
        };
        let pms = (pm(self, "Bank"), pm(self, "Card"));
        let one = |email: &str| -> BTreeMap<&'static str, String> {
            let acc = self.id(
                "register",
                &[
                    ("sok", "ok"),
                    ("email", email),
                    ("passwd", PASSWORD),
                    ("realname", email),
                ],
            );
            let pay = |s: &Side| {
                s.id(
                    "payment.edit",
                    &[
                        ("sok", "ok"),
                        ("plid", &acc),
                        ("paymethod", &pms.0),
                        ("paymethodamount", "100.00"),
                    ],
                )
            };
            let paid = pay(self);
            self.ok("payment.setpaid", &[("elid", &paid)]);
            let fresh = pay(self);
            let expense = self.id(
                "subaccount.expense.edit",
                &[("sok", "ok"), ("plid", &acc), ("amount", "5.00")],
            );
            let subaccount = self
                .ok("subaccount.expense.edit", &[("elid", &expense)])
                .field("subaccount")
                .expect("subaccount")
                .to_string();
            let user = self
                .engine
                .read(|c| auth::user_id(c, email))
                .expect("read")
                .expect("user exists")
                .to_string();
            let caller = self
                .engine
                .read(|c| auth::switch_user(c, &Caller::superuser(), email))
                .expect("client user");
            let ticket = self
                .ok_as(
                    &caller,
                    "ticket.add",
                    &[("sok", "ok"), ("subject", "Help"), ("message", "Hello")],
                )
                .field("id")
                .expect("ticket id")
                .to_string();
            let group = self.id("accountgroup.edit", &[("sok", "ok"), ("name", email)]);
            let discount = self.id(
                "account.discount.edit",
                &[("sok", "ok"), ("name", email), ("percentage", "5")],
            );
            let taxrule = self.id("account.taxrule.edit", &[("sok", "ok"), ("taxrate", "20")]);
            BTreeMap::from([
                ("account", acc),
                ("payment", fresh),
                ("paid", paid),
                ("expense", expense),
                ("subaccount", subaccount),
                ("users", user),
                ("ticket", ticket),
                ("accountgroup", group),
                ("discount", discount),
                ("taxrule", taxrule),
            ])
        };
        let ann = one(ANN);
        let bob = one(BOB);
        let rate = |s: &Side, relate: &str| {
            s.id(
                "account.currencyrate.edit",
                &[
                    ("sok", "ok"),
                    ("currency_base", "840"),
                    ("currency_relate", relate),
                    ("rate", "1.1"),
                ],
            )
        };
        let rates = (rate(self, "978"), rate(self, "643"));
        // A registration email in the outbox.
        self.ok(
            "account.edit",
            &[
                ("sok", "ok"),
                ("email", "carol@example.com"),
                ("notify", "on"),
            ],
        );
        let mut ids = BTreeMap::new();
        for (table, keep) in &ann {
            ids.insert(*table, (keep.clone(), bob[table].clone()));
        }
        ids.insert("paymethod", pms);
        ids.insert("currencyrate", rates);
        ids.insert("project", ("1".into(), "1".into()));
        ids.insert("country", ("276".into(), "250".into()));
        ids.insert("currency", ("840".into(), "978".into()));
        ids.insert("outbox", ("1".into(), "1".into()));
        let clerk = self
            .engine
            .read(|c| auth::user_id(c, "clerk"))
            .expect("read")
            .expect("clerk")
            .to_string();
        ids.insert("staff", (clerk.clone(), clerk));
        self.ids = Ids(ids);
        self.ann = self
            .engine
            .read(|c| auth::switch_user(c, &Caller::superuser(), ANN))
            .expect("Ann's caller");
        match self.engine.call(
            &Caller::anonymous("127.0.0.1"),
            "auth",
            Params::from_pairs([("username", ANN), ("password", PASSWORD)]),
        ) {
            Doc::Auth { id, .. } => self.sid = id,
            other => panic!("seeding: auth answered {other:?}"),
        }
        let v = self.engine.read(billhost::ledger::check).expect("check");
        assert!(v.is_empty(), "seeded ledger: {v:?}");
    }

    fn dump(&mut self) -> String {
        if self.dumped.is_none() {
            self.dumped = Some(common::dump_on(&self.dump_conn));
        }
        self.dumped.clone().unwrap_or_default()
    }

    /// Runs `call` and checks what every answer must be: a document (no panic), never
    /// `internal`, and, when an error, nothing changed. Answers its outcome; failures are
    /// added to `failures`.
    fn check(
        &mut self,
        what: &str,
        failures: &mut Vec<String>,
        call: impl FnOnce(&Side) -> Doc,
    ) -> String {
        let before = self.dump();
        let doc = match std::panic::catch_unwind(AssertUnwindSafe(|| call(self))) {
            Ok(doc) => doc,
            Err(_) => {
                failures.push(format!("{what}: panicked"));
                self.dumped = None;
                return "panic".into();
            }
        };
        if let Doc::Error(e) = &doc {
            if e.kind == ErrorType::Internal {
                failures.push(format!("{what}: internal error: {}", e.msg));
            }
            self.dumped = None;
            let after = self.dump();
            if after != before {
                failures.push(format!("{what}: answered {e} but changed business data"));
            }
        } else {
            self.dumped = None;
        }
        outcome(&doc)
    }
}

/// One call of the sweep.
struct Step {
    who: Who,
    func: String,
    params: Vec<(String, String)>,
    /// The parameter that holds the hostile value, and its class.
    param: String,
    class: &'static str,
}

impl Step {
    fn label(&self) -> String {
        let value = self
            .params
            .iter()
            .find(|(k, _)| *k == self.param)
            .map_or_else(String::new, |(_, v)| shown(v));
        format!(
            "{:?} {} {}={value} [{}]",
            self.who, self.func, self.param, self.class
        )
    }

    fn run(&self, side: &Side) -> Doc {
        let caller = match self.who {
            Who::Admin => Caller::superuser(),
            Who::Client => side.ann.clone(),
        };
        let params = Params::from_pairs(self.params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        side.engine.call(&caller, &self.func, params)
    }
}

/// Parameters as `(name, value)` pairs.
type Pairs = Vec<(String, String)>;

/// A valid value of a declared parameter's type.
fn typed_value(ty: &Ty, ids: &Ids, n: usize) -> String {
    match ty {
        Ty::Text(_) | Ty::LongText(_) => format!("text {n}"),
        Ty::Email => format!("u{n}@example.com"),
        Ty::Password(_) => PASSWORD.into(),
        Ty::Int { min, max } => 1.clamp(*min, *max).to_string(),
        // `on` would ask for what some forms refuse on a change (`notify`).
        Ty::Flag => "off".into(),
        Ty::Decimal => "1.00".into(),
        Ty::Date => "2024-01-02".into(),
        Ty::Choice(options) => options.first().copied().unwrap_or("").into(),
        Ty::Ref(object) if object.table == "users" => ids.keep("staff"),
        Ty::Ref(object) => ids.keep(object.table),
    }
}

/// A valid value of a list filter.
fn filter_value(op: FilterOp) -> &'static str {
    match op {
        FilterOp::EqInt => "1",
        FilterOp::EqText => "x",
        FilterOp::Like => "a",
        FilterOp::From | FilterOp::To => "2024-01-01",
        FilterOp::AmountFrom(_) | FilterOp::AmountTo(_) => "1.00",
    }
}

/// The list spec a list or filter func works on.
fn list_of<'a>(decl: &'a FuncDecl, funcs: &'a [Arc<FuncDecl>]) -> Option<&'a ListSpec> {
    let name = match &decl.handler {
        Handler::List(spec) => return Some(spec),
        Handler::Filter { list } => list.as_str(),
        _ => return None,
    };
    funcs
        .iter()
        .find(|d| d.name == name)
        .and_then(|d| match &d.handler {
            Handler::List(spec) => Some(spec),
            _ => None,
        })
}

/// The parameters of a call that the func would take as valid, and the default of each other
/// parameter that is attacked.
fn base(decl: &FuncDecl, funcs: &[Arc<FuncDecl>], who: Who, ids: &Ids, n: usize) -> (Pairs, Pairs) {
    let s = |v: &str| v.to_string();
    let mut params: Vec<(String, String)> = Vec::new();
    let mut others: Vec<(String, String)> = Vec::new();
    let group = matches!(decl.handler, Handler::Group(_));
    let object_id = |table: &str| {
        if group && who == Who::Admin {
            ids.victim(table)
        } else {
            ids.keep(table)
        }
    };
    if let Some(object) = decl.object {
        params.push((s("elid"), object_id(object.table)));
    }
    if let Some(parent) = decl.parent {
        params.push((s("plid"), ids.keep(parent.table)));
    }
    if matches!(
        decl.handler,
        Handler::Edit(_) | Handler::Action(_) | Handler::Filter { .. }
    ) {
        params.push((s("sok"), s("ok")));
    }
    for p in &decl.params {
        let value = typed_value(&p.ty, ids, n);
        // A password costs an argon2 hash per call: sent only when it is attacked.
        if matches!(p.ty, Ty::Password(_)) {
            others.push((p.name.clone(), value));
        } else {
            params.push((p.name.clone(), value));
        }
    }
    others.extend(
        [
            ("elid", ids.keep("account")),
            ("plid", ids.keep("account")),
            ("sok", s("ok")),
            ("su", s(ANN)),
            ("lang", s("en")),
            ("out", s("xml")),
        ]
        .into_iter()
        .map(|(k, v)| (s(k), v)),
    );
    if let Some(spec) = list_of(decl, funcs) {
        if matches!(decl.handler, Handler::List(_)) {
            params.push((s("filter"), s("on")));
            others.extend([
                (s("p_num"), s("1")),
                (s("p_cnt"), s("10")),
                (s("p_sort"), s(spec.columns[0].name)),
                (s("p_order"), s("desc")),
                (s("filter"), s("on")),
            ]);
        }
        for f in &spec.filters {
            others.push((s(f.name), s(filter_value(f.op))));
        }
    }
    (params, others)
}

/// How sparse the sweep is: a (parameter, class) pair is called when `(i + j + func) %
/// STRIDE == 0` (twice as sparse for the client user), besides NUL in every parameter and every
/// class at least once per func and caller.
const STRIDE: usize = 30;

/// Every func, every attacked parameter and every class, sampled (see [`STRIDE`]); group
/// funcs that delete come last, so that what they delete is gone only for the calls after.
fn plan(funcs: &[Arc<FuncDecl>], ids: &Ids) -> Vec<Step> {
    let mut order: Vec<&Arc<FuncDecl>> = funcs.iter().collect();
    order.sort_by_key(|d| (d.name.ends_with(".delete"), d.name.clone()));
    let mut steps = Vec::new();
    for (f, decl) in order.into_iter().enumerate() {
        for who in [Who::Admin, Who::Client] {
            let (params, others) = base(decl, funcs, who, ids, steps.len());
            let mut names: Vec<(String, String)> = params.clone();
            for (k, v) in others {
                if !names.iter().any(|(n, _)| *n == k) {
                    names.push((k, v));
                }
            }
            let stride = if who == Who::Admin {
                STRIDE
            } else {
                STRIDE * 2
            };
            // A client calling a staff func is refused before anything runs: every other
            // class, alternating from func to func, is enough there.
            let refused = who == Who::Client && !decl.access.user;
            for (i, (name, value)) in names.iter().enumerate() {
                for (j, class) in CLASSES.iter().enumerate() {
                    let every_class = i == (j + f) % names.len();
                    let pick = if refused {
                        every_class && (j + f) % 2 == 0
                    } else {
                        j == 0 || every_class || (i + j + f) % stride == 0
                    };
                    if !pick {
                        continue;
                    }
                    let mut params = params.clone();
                    let hostile = (class.make)(value);
                    match params.iter_mut().find(|(k, _)| k == name) {
                        Some(slot) => slot.1 = hostile,
                        None => params.push((name.clone(), hostile)),
                    }
                    steps.push(Step {
                        who,
                        func: decl.name.clone(),
                        params,
                        param: name.clone(),
                        class: class.name,
                    });
                }
            }
        }
    }
    steps
}

/// A call through the network entry (`Engine::handle`): credentials in the parameters or a
/// session cookie.
struct NetCall {
    func: &'static str,
    params: Vec<(String, String)>,
    session: Option<String>,
    what: String,
}

impl NetCall {
    fn run(&self, side: &Side) -> Doc {
        let params = Params::from_pairs(self.params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        side.engine
            .handle(self.func, params, self.session.as_deref(), "127.0.0.1")
    }
}

/// Credentials with hostile values, on a func of staff and clients and on the public `auth`.
fn net_plan(sid: &str) -> Vec<NetCall> {
    let s = |v: &str| v.to_string();
    let mut calls = Vec::new();
    for class in CLASSES {
        let v = |base: &str| (class.make)(base);
        for func in ["whoami", "auth"] {
            // (what is attacked, the parameters, the session cookie)
            let forms: Vec<(String, Pairs, Option<String>)> = vec![
                (
                    s("authinfo login"),
                    vec![(s("authinfo"), format!("{}:{PASSWORD}", v(ANN)))],
                    None,
                ),
                (
                    s("authinfo password"),
                    vec![(s("authinfo"), format!("{ANN}:{}", v(PASSWORD)))],
                    None,
                ),
                (s("authinfo"), vec![(s("authinfo"), v(ANN))], None),
                (s("auth"), vec![(s("auth"), v(sid))], None),
                (s("cookie"), Vec::new(), Some(v(sid))),
                (
                    s("username"),
                    vec![(s("username"), v(ANN)), (s("password"), s(PASSWORD))],
                    None,
                ),
                (
                    s("password"),
                    vec![(s("username"), s(ANN)), (s("password"), v(PASSWORD))],
                    None,
                ),
                (
                    s("key"),
                    vec![(s("username"), s(ANN)), (s("key"), v("0123456789abcdef"))],
                    None,
                ),
            ];
            for (form, params, session) in forms {
                if func != "auth" && matches!(form.as_str(), "username" | "password" | "key") {
                    continue;
                }
                calls.push(NetCall {
                    func,
                    what: format!("handle {func} {form} [{}]", class.name),
                    params,
                    session,
                });
            }
        }
    }
    calls
}

/// Hostile func names, as the superuser.
fn func_names() -> Vec<String> {
    CLASSES
        .iter()
        .flat_map(|c| [(c.make)("account"), (c.make)("")])
        .collect()
}

/// Runs the whole sweep on `sides` (one, or the backend under test and its SQLite twin),
/// call by call; answers the failures.
fn sweep(sides: &mut [Side]) -> Vec<String> {
    let funcs = sides[0].engine.funcs();
    assert!(funcs.len() > 60, "only {} funcs", funcs.len());
    for side in sides.iter() {
        assert_eq!(side.ids, sides[0].ids, "the seeded ids differ");
    }
    let steps = plan(&funcs, &sides[0].ids);
    let net = net_plan(&sides[0].sid);
    let names = func_names();
    let started = Instant::now();
    let mut failures = Vec::new();
    let agree = |what: &str, outcomes: &[String], failures: &mut Vec<String>| {
        if outcomes.iter().any(|o| *o != outcomes[0]) {
            failures.push(format!("{what}: the backends disagree: {outcomes:?}"));
        }
    };
    // Every func of the registry is called (and so every class: see `plan`).
    for decl in &funcs {
        assert!(
            steps.iter().any(|s| s.func == decl.name),
            "{} is not called",
            decl.name
        );
    }
    // Credentials first: the sweep's writes may change Ann's login.
    for call in &net {
        let outcomes: Vec<String> = sides
            .iter_mut()
            .map(|side| side.check(&call.what, &mut failures, |s| call.run(s)))
            .collect();
        agree(&call.what, &outcomes, &mut failures);
    }
    for name in &names {
        let what = format!("func {}", shown(name));
        let outcomes: Vec<String> = sides
            .iter_mut()
            .map(|side| {
                side.check(&what, &mut failures, |s| {
                    s.engine.call(&Caller::superuser(), name, Params::new())
                })
            })
            .collect();
        agree(&what, &outcomes, &mut failures);
    }
    // What each class was answered on the first backend: the sweep reaches past the first
    // refusal (the summary is printed with `--nocapture`).
    let mut summary: BTreeMap<&str, BTreeMap<String, usize>> = BTreeMap::new();
    for step in &steps {
        let what = step.label();
        let outcomes: Vec<String> = sides
            .iter_mut()
            .map(|side| side.check(&what, &mut failures, |s| step.run(s)))
            .collect();
        agree(&what, &outcomes, &mut failures);
        let kind = outcomes[0]
            .split(['(', ' '])
            .next()
            .unwrap_or_default()
            .to_string();
        *summary
            .entry(step.class)
            .or_default()
            .entry(kind)
            .or_default() += 1;
    }
    for (class, kinds) in &summary {
        eprintln!("hostile sweep: {class}: {kinds:?}");
    }
    for side in sides.iter() {
        let v = side.engine.read(billhost::ledger::check).expect("check");
        assert!(v.is_empty(), "the ledger after the sweep: {v:?}");
    }
    eprintln!(
        "hostile sweep: {} func calls over {} funcs, {} network calls, {} func names on {} backend(s) in {:.1}s",
        steps.len(),
        funcs.len(),
        net.len(),
        names.len(),
        sides.len(),
        started.elapsed().as_secs_f64()
    );
    failures
}

fn report(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures
            .iter()
            .take(1000)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

backends! {
fn every_func_answers_hostile_input_with_a_document(backend) {
    let mut sides = vec![Side::open(&backend, "hostile")];
    if backend.is_postgres() {
        // The SQLite twin: the same calls, answered alike.
        sides.push(Side::open(&Backend::Sqlite, "hostile-twin"));
    }
    report(&sweep(&mut sides));
}
}

/// Clients named with LIKE's metacharacters and with letters in both cases, in and out of
/// ASCII: `account` filtered by `name` (a LIKE filter) finds them by what they contain.
fn like_names() -> &'static [&'static str] {
    &[
        "100% sure",
        "under_score",
        "back\\slash",
        "end\\",
        "Ärger",
        "ärger",
        "PLAIN",
        "plain",
        "a%b",
        "ab",
        "axb",
    ]
}

/// The names each pattern must find: a LIKE filter is "contains", ASCII case-insensitively,
/// with `%`, `_` and `\` taken as themselves.
fn like_expected(pattern: &str) -> Vec<&'static str> {
    let lower = |s: &str| s.to_ascii_lowercase();
    like_names()
        .iter()
        .copied()
        .filter(|n| lower(n).contains(&lower(pattern)))
        .collect()
}

const PATTERNS: &[&str] = &[
    "%", "_", "\\", "\\\\", "end\\", "a%b", "a_b", "100%", "ärger", "ÄRGER", "Ärger", "plain",
    "PLAIN", "r_s", "%%", "\\%", "\\_", "x",
];

/// The names `account` lists for each pattern, on the engine over `db`.
fn like_results(db: &Path) -> Vec<(String, Vec<String>)> {
    let engine = Engine::open(EngineConfig::new(db)).expect("engine");
    let admin = Caller::superuser();
    for (n, name) in like_names().iter().enumerate() {
        let doc = engine.call(
            &admin,
            "account.edit",
            Params::from_pairs([
                ("sok", "ok"),
                ("email", format!("like{n}@example.com").as_str()),
                ("name", name),
            ]),
        );
        assert!(!doc.is_error(), "{name}: {doc:?}");
    }
    PATTERNS
        .iter()
        .map(|p| {
            let doc = engine.call(
                &admin,
                "account",
                Params::from_pairs([("filter", "on"), ("name", p)]),
            );
            let mut names = match &doc {
                Doc::List(_) => common::column(&doc, "name"),
                other => panic!("{p}: {other:?}"),
            };
            names.sort();
            (p.to_string(), names)
        })
        .collect()
}

fn check_like(results: &[(String, Vec<String>)], on: &str) {
    let mut failures = Vec::new();
    for (pattern, found) in results {
        let mut want: Vec<String> = like_expected(pattern)
            .into_iter()
            .map(str::to_string)
            .collect();
        want.sort();
        if *found != want {
            failures.push(format!(
                "{on}: {pattern:?} found {found:?}, expected {want:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

backends! {
fn like_filters_match_the_same_rows(backend) {
    let dir = TempDir::new("hostile-like");
    let results = like_results(&backend.db(dir.path()));
    check_like(&results, if backend.is_postgres() { "postgresql" } else { "sqlite" });
}
}

/// The same on a PostgreSQL database whose character type is not C (as most servers' are):
/// case-insensitive matching stays ASCII's in LIKE filters, as on SQLite.
#[test]
fn like_filters_ignore_the_database_locale() {
    let Some(cluster) = pg::shared() else {
        return;
    };
    let mut admin = postgres::Client::connect(
        &format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            cluster.port
        ),
        postgres::NoTls,
    )
    .expect("connect");
    let _ = admin.batch_execute("DROP DATABASE IF EXISTS hostile_like_utf8 WITH (FORCE)");
    admin
        .batch_execute(
            "CREATE DATABASE hostile_like_utf8 TEMPLATE template0 ENCODING 'UTF8'
                 LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'",
        )
        .expect("a database of the C.UTF-8 locale");
    let url = cluster.url("hostile_like_utf8");
    let results = like_results(Path::new(&url));
    let engine = Engine::open(EngineConfig::new(&url)).expect("engine");
    let groups: Vec<String> = ["Ärger", "ärger"]
        .iter()
        .map(|name| {
            outcome(&engine.call(
                &Caller::superuser(),
                "accountgroup.edit",
                Params::from_pairs([("sok", "ok"), ("name", *name)]),
            ))
        })
        .collect();
    drop(engine);
    let _ = admin.batch_execute("DROP DATABASE IF EXISTS hostile_like_utf8 WITH (FORCE)");
    check_like(&results, "postgresql (C.UTF-8)");
    // Not yet the same: CITEXT (SQLite's NOCASE names) folds case by the database's default
    // locale whatever the column's collation, so that two group names differing in the case of
    // `Ä` are one name here and two on SQLite (docs/postgres.md). Pinned, so that a fix shows.
    assert_eq!(groups, ["ok", "exists(name)"], "Ärger and ärger");
}

#[path = "support/http1.rs"]
mod http1;
#[path = "support/serve_bin.rs"]
mod serve_bin;

/// The type and object of an XML error document.
fn error_of(body: &str) -> (String, String) {
    let tag = &body[body.find("<error ").unwrap_or(0)..];
    let attr = |name: &str| {
        let at = tag.find(&format!(" {name}=\"")).map(|i| i + name.len() + 3);
        at.and_then(|i| tag[i..].find('"').map(|j| tag[i..i + j].to_string()))
            .unwrap_or_default()
    };
    (attr("type"), attr("object"))
}

backends! {
fn the_worst_inputs_through_the_binary(backend) {
    use http1::{Conn, enc};
    use std::io::{Read, Write};
    use std::time::Duration;
    let dir = TempDir::new("hostile-http");
    let db = backend.db(dir.path());
    {
        let engine = Engine::open(EngineConfig::new(&db)).expect("engine");
        engine.ensure_staff("admin", Some(PASSWORD)).expect("admin");
        let doc = engine.call(
            &Caller::superuser(),
            "register",
            Params::from_pairs([("sok", "ok"), ("email", ANN), ("passwd", PASSWORD)]),
        );
        assert!(!doc.is_error(), "{doc:?}");
    }
    std::fs::create_dir_all(dir.path().join("scripts")).expect("scripts dir");
    let server = serve_bin::serve_on(&dir, db.as_os_str(), "hostile", &[], &[]);
    let mut conn = Conn::connect(server.addr, Duration::from_secs(30)).expect("connect");
    let admin = format!("authinfo={}", enc(&format!("admin:{PASSWORD}")));
    let before = common::dump(&db);
    // (query, cookie, the error's type and object)
    let refused: &[(&str, Option<&str>, (&str, &str))] = &[
        ("func=whoami&authinfo=admin%00:x", None, ("auth", "auth")),
        ("func=whoami&authinfo=%00:%00", None, ("auth", "auth")),
        ("func=whoami&auth=0123456789abcdef%00", None, ("auth", "auth")),
        ("func=whoami", Some("billmgrses5=0123%00abcdef"), ("auth", "auth")),
        ("func=account&filter=on&name=a%00b&{admin}", None, ("value", "name")),
        ("func=account&filter=on&id=1%00&{admin}", None, ("value", "id")),
        ("func=account&su=ann%40example.com%00&{admin}", None, ("value", "su")),
        ("func=account.delete&elid=1%00&{admin}", None, ("value", "elid")),
        ("func=account&lang=en%00&{admin}", None, ("value", "lang")),
        ("func=auth&username=admin%00&password=x", None, ("value", "username")),
        ("func=account&p_num=99999999999999999999&{admin}", None, ("value", "p_num")),
        ("func=account&p_sort=nosuch&{admin}", None, ("value", "p_sort")),
    ];
    for (query, cookie, want) in refused {
        let query = query.replace("{admin}", &admin);
        let target = format!("/billmgr?{query}");
        let answer = match cookie {
            Some(c) => conn.get_with_cookie(&target, c),
            None => conn.get(&target),
        }
        .expect("answer");
        assert_eq!(
            error_of(&answer.body),
            (want.0.to_string(), want.1.to_string()),
            "{query}: {}",
            answer.body
        );
    }
    // A LIKE value ending in a backslash, or made of LIKE's metacharacters, is a value like any
    // other: it finds what contains it (nothing here), on both backends.
    for name in ["x\\", "\\", "%", "_", "%\\_"] {
        let answer = conn
            .get(&format!("/billmgr?func=account&filter=on&name={}&{admin}", enc(name)))
            .expect("answer");
        assert!(
            answer.status == 200 && !answer.body.contains("<error"),
            "{name}: {}",
            answer.body
        );
        assert!(!answer.body.contains("<elem>"), "{name}: {}", answer.body);
    }
    // A raw NUL in the cookie header: refused by HTTP itself, and the server goes on.
    let mut raw = std::net::TcpStream::connect(server.addr).expect("connect");
    raw.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    raw.write_all(
        b"GET /billmgr?func=whoami HTTP/1.1\r\nHost: x\r\nCookie: billmgrses5=ab\0cd\r\nConnection: close\r\n\r\n",
    )
    .expect("request");
    let mut out = Vec::new();
    let _ = raw.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out);
    assert!(out.is_empty() || out.starts_with("HTTP/1.1 4"), "{out}");
    let answer = conn.get(&format!("/billmgr?func=whoami&{admin}")).expect("answer");
    assert!(answer.body.contains("admin"), "{}", answer.body);
    assert_eq!(common::dump(&db), before, "a refused call changed something");
}
}
