//! The ledger property test's generator, reference model and driver (`tests/ledger_props.rs`),
//! shared with the tests that want a database those operations built (`tests/migrate.rs`).
#![allow(dead_code)]
use billhost::auth::Caller;
use billhost::store::Durability;
use billhost::{Doc, Engine, EngineConfig, Params};
use proptest::prelude::*;
use std::path::PathBuf;

/// Percent commission of the EUR method.
pub const EUR_COMMISSION_PCT: i64 = 2;
/// Rates EUR -> USD, in units of 1/10000.
pub const RATES: &[i64] = &[9000, 10837, 11000, 5000, 12345];
/// Client credit limits in cents.
pub const CREDIT: [i64; 2] = [5000, 0];

#[derive(Debug, Clone)]
pub enum Op {
    Pay {
        client: usize,
        eur: bool,
        cents: i64,
    },
    SetPaid(usize),
    Delete(usize),
    Expense {
        client: usize,
        cents: i64,
        postpaid: bool,
    },
    DeleteExpense(usize),
    Refund {
        payment: usize,
        cents: i64,
    },
    Rate {
        client: Option<usize>,
        rate: usize,
    },
}

pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..2usize, any::<bool>(), 1..20_000i64).prop_map(|(client, eur, cents)| Op::Pay { client, eur, cents }),
        3 => (0..64usize).prop_map(Op::SetPaid),
        1 => (0..64usize).prop_map(Op::Delete),
        3 => (0..2usize, 1..15_000i64, proptest::bool::weighted(0.2))
            .prop_map(|(client, cents, postpaid)| Op::Expense { client, cents, postpaid }),
        1 => (0..64usize).prop_map(Op::DeleteExpense),
        2 => (0..64usize, 1..12_000i64).prop_map(|(payment, cents)| Op::Refund { payment, cents }),
        1 => (proptest::option::of(0..2usize), 0..RATES.len()).prop_map(|(client, rate)| Op::Rate { client, rate }),
    ]
}

/// `round(a * b / c)`, half away from zero, for non-negative operands.
pub fn round_div(a: i64, b: i64, c: i64) -> i64 {
    let (a, b, c) = (a as i128, b as i128, c as i128);
    ((2 * a * b + c) / (2 * c)) as i64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum St {
    New,
    Paid,
    Refunded,
    Canceled,
}

#[derive(Debug, Clone)]
pub struct MPayment {
    pub id: i64,
    pub client: usize,
    pub pm: i64,
    pub sub: i64,
    pub commission: i64,
    pub status: St,
    pub refunded_pm: i64,
    pub refunded_sub: i64,
}

#[derive(Debug, Clone)]
pub struct MExpense {
    pub id: i64,
    pub client: usize,
    pub amount: i64,
    pub deleted: bool,
}

#[derive(Debug, Default)]
pub struct Model {
    pub balance: [i64; 2],
    pub provider_rate: i64,
    pub client_rate: [Option<i64>; 2],
    pub payments: Vec<MPayment>,
    pub expenses: Vec<MExpense>,
}

pub struct World {
    pub engine: Engine,
    pub accounts: [i64; 2],
    pub _dir: TempDir,
}

pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn call(engine: &Engine, func: &str, params: &[(&str, &str)]) -> Doc {
    engine.call(
        &Caller::superuser(),
        func,
        Params::from_pairs(params.iter().copied()),
    )
}

pub fn must(engine: &Engine, func: &str, params: &[(&str, &str)]) -> Doc {
    let doc = call(engine, func, params);
    assert!(!doc.is_error(), "{func} {params:?}: {doc:?}");
    doc
}

pub fn cents(v: i64) -> String {
    format!("{}.{:02}", v / 100, v % 100)
}

pub fn world() -> World {
    world_at(None)
}

/// The world on a SQLite file of its own, or on the database `db` names (a PostgreSQL URL).
pub fn world_at(db: Option<&str>) -> World {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("billhost-props-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut config = match db {
        Some(url) => EngineConfig::new(url),
        None => EngineConfig::new(dir.join("ledger.db")),
    };
    config.durability = Durability::Normal;
    let engine = Engine::open(config).expect("engine");
    must(
        &engine,
        "project.edit",
        &[("elid", "1"), ("sok", "ok"), ("currency", "840")],
    );
    must(
        &engine,
        "paymethod.edit",
        &[("sok", "ok"), ("name", "Dollars"), ("currency", "840")],
    );
    must(
        &engine,
        "paymethod.edit",
        &[
            ("sok", "ok"),
            ("name", "Euros"),
            ("currency", "978"),
            ("commission", "2"),
        ],
    );
    let mut accounts = [0; 2];
    for (i, email) in ["a@example.com", "b@example.com"].iter().enumerate() {
        let doc = must(&engine, "account.edit", &[("sok", "ok"), ("email", email)]);
        accounts[i] = doc.field("id").and_then(|v| v.parse().ok()).expect("id");
        let sub = engine
            .read(|c| {
                Ok(c.query_row(
                    "SELECT id FROM subaccount WHERE account_id = ?1",
                    [accounts[i]],
                    |r| r.get::<i64>(0),
                )?)
            })
            .expect("subaccount");
        must(
            &engine,
            "subaccount.edit",
            &[
                ("elid", &sub.to_string()),
                ("sok", "ok"),
                ("creditlimit", &cents(CREDIT[i])),
            ],
        );
    }
    World {
        engine,
        accounts,
        _dir: TempDir(dir),
    }
}

pub fn set_rate(w: &World, client: Option<usize>, rate: i64) {
    let rate = format!("{}.{:04}", rate / 10_000, rate % 10_000);
    let plid = client.map(|c| w.accounts[c].to_string());
    let mut params = vec![
        ("sok", "ok"),
        ("currency_base", "840"),
        ("currency_relate", "978"),
        ("rate", rate.as_str()),
    ];
    if let Some(p) = &plid {
        params.push(("plid", p));
    }
    must(&w.engine, "account.currencyrate.edit", &params);
}

pub fn created_id(doc: &Doc) -> i64 {
    doc.field("id").and_then(|v| v.parse().ok()).expect("id")
}

/// Runs one operation on both sides; answers a description of any disagreement.
pub fn step(w: &World, m: &mut Model, op: &Op) -> Result<(), String> {
    let e = &w.engine;
    match *op {
        Op::Pay {
            client,
            eur,
            cents: c,
        } => {
            let (pm_id, rate) = if eur {
                ("2", m.client_rate[client].unwrap_or(m.provider_rate))
            } else {
                ("1", 10_000)
            };
            let sub = round_div(c, rate, 10_000);
            let doc = call(
                e,
                "payment.edit",
                &[
                    ("plid", &w.accounts[client].to_string()),
                    ("sok", "ok"),
                    ("paymethod", pm_id),
                    ("paymethodamount", &cents(c)),
                ],
            );
            if sub <= 0 {
                return if doc.is_error() {
                    Ok(())
                } else {
                    Err(format!("payment of {c} converting to 0 accepted"))
                };
            }
            if doc.is_error() {
                return Err(format!("payment refused: {doc:?}"));
            }
            let commission = if eur {
                round_div(round_div(c, EUR_COMMISSION_PCT, 100), sub, c)
            } else {
                0
            };
            m.payments.push(MPayment {
                id: created_id(&doc),
                client,
                pm: c,
                sub,
                commission,
                status: St::New,
                refunded_pm: 0,
                refunded_sub: 0,
            });
        }
        Op::SetPaid(i) => {
            if m.payments.is_empty() {
                return Ok(());
            }
            let i = i % m.payments.len();
            let p = m.payments[i].clone();
            let doc = call(e, "payment.setpaid", &[("elid", &p.id.to_string())]);
            let expect_ok = p.status == St::New;
            if doc.is_error() == expect_ok {
                return Err(format!("setpaid of {p:?}: {doc:?}"));
            }
            if expect_ok {
                m.payments[i].status = St::Paid;
                m.balance[p.client] += p.sub;
                if p.commission > 0 {
                    m.balance[p.client] -= p.commission;
                    let id = e
                        .read(|c| {
                            Ok(c.query_row(
                                "SELECT id FROM expense WHERE payment_id = ?1",
                                [p.id],
                                |r| r.get::<i64>(0),
                            )?)
                        })
                        .map_err(|e| format!("commission expense of {}: {e}", p.id))?;
                    m.expenses.push(MExpense {
                        id,
                        client: p.client,
                        amount: p.commission,
                        deleted: false,
                    });
                }
            }
        }
        Op::Delete(i) => {
            if m.payments.is_empty() {
                return Ok(());
            }
            let i = i % m.payments.len();
            let p = m.payments[i].clone();
            let doc = call(e, "payment.delete", &[("elid", &p.id.to_string())]);
            let expect_ok = p.status == St::New;
            if doc.is_error() == expect_ok {
                return Err(format!("delete of {p:?}: {doc:?}"));
            }
            if expect_ok {
                m.payments[i].status = St::Canceled;
            }
        }
        Op::Expense {
            client,
            cents: c,
            postpaid,
        } => {
            let mut params = vec![
                ("plid", w.accounts[client].to_string()),
                ("sok", "ok".into()),
                ("amount", cents(c)),
                ("name", "Service".into()),
            ];
            if postpaid {
                params.push(("postpaid", "on".into()));
            }
            let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let doc = call(e, "subaccount.expense.edit", &params);
            let expect_ok = postpaid || m.balance[client] + CREDIT[client] >= c;
            if doc.is_error() == expect_ok {
                return Err(format!(
                    "expense of {c} at balance {}: {doc:?}",
                    m.balance[client]
                ));
            }
            if expect_ok {
                m.balance[client] -= c;
                m.expenses.push(MExpense {
                    id: created_id(&doc),
                    client,
                    amount: c,
                    deleted: false,
                });
            }
        }
        Op::DeleteExpense(i) => {
            if m.expenses.is_empty() {
                return Ok(());
            }
            let i = i % m.expenses.len();
            let x = m.expenses[i].clone();
            let doc = call(
                e,
                "subaccount.expense.delete",
                &[("elid", &x.id.to_string())],
            );
            if doc.is_error() != x.deleted {
                return Err(format!("delete of {x:?}: {doc:?}"));
            }
            if !x.deleted {
                m.expenses[i].deleted = true;
                m.balance[x.client] += x.amount;
            }
        }
        Op::Refund { payment, cents: c } => {
            if m.payments.is_empty() {
                return Ok(());
            }
            let i = payment % m.payments.len();
            let p = m.payments[i].clone();
            let doc = call(
                e,
                "payment.refund",
                &[
                    ("elid", &p.id.to_string()),
                    ("sok", "ok"),
                    ("amount", &cents(c)),
                ],
            );
            let left_pm = p.pm - p.refunded_pm;
            let left_sub = p.sub - p.refunded_sub;
            let sub = if c == left_pm {
                left_sub
            } else {
                round_div(c, p.sub, p.pm).min(left_sub)
            };
            let expect_ok = p.status == St::Paid && c <= left_pm && sub > 0;
            if doc.is_error() == expect_ok {
                return Err(format!("refund of {c} from {p:?}: {doc:?}"));
            }
            if expect_ok {
                let q = &mut m.payments[i];
                q.refunded_pm += c;
                q.refunded_sub += sub;
                if q.refunded_sub >= q.sub {
                    q.status = St::Refunded;
                }
                m.balance[p.client] -= sub;
            }
        }
        Op::Rate { client, rate } => {
            set_rate(w, client, RATES[rate]);
            match client {
                Some(c) => m.client_rate[c] = Some(RATES[rate]),
                None => m.provider_rate = RATES[rate],
            }
        }
    }
    Ok(())
}

pub fn verify(w: &World, m: &Model) -> Result<(), String> {
    for (i, account) in w.accounts.iter().enumerate() {
        let balance: i64 = w
            .engine
            .read(|c| {
                Ok(c.query_row(
                    "SELECT balance FROM subaccount WHERE account_id = ?1",
                    [account],
                    |r| r.get(0),
                )?)
            })
            .map_err(|e| e.to_string())?;
        if balance != m.balance[i] {
            return Err(format!(
                "client {i}: balance {balance}, model {}",
                m.balance[i]
            ));
        }
    }
    let violations = w
        .engine
        .read(billhost::ledger::check)
        .map_err(|e| e.to_string())?;
    if !violations.is_empty() {
        let text: Vec<String> = violations.iter().map(ToString::to_string).collect();
        return Err(text.join("; "));
    }
    Ok(())
}
