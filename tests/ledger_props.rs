//! Random sequences of ledger operations (payments through a USD and a EUR method with
//! provider-wide and per-client rates, setpaid, expenses, expense deletions, refunds, payment
//! deletions, rate changes) run through the engine and against a small reference model written
//! here with integer arithmetic. After every step each client's balance equals the model's, each
//! operation succeeded exactly when the model says it should, and `ledger::check` is clean.
//! Every case runs on SQLite and on PostgreSQL (a database of its own in the binary's cluster).

#[path = "support/ledger_model.rs"]
mod model;
#[macro_use]
#[path = "support/pg.rs"]
mod pg;

use model::*;
use pg::Backend;
use proptest::prelude::*;

/// The model's world on `backend`: a SQLite file of its own, or a new PostgreSQL database.
fn world_on(backend: &Backend) -> World {
    match backend {
        Backend::Sqlite => world(),
        Backend::Postgres(db) => world_at(Some(&db.url)),
    }
}

/// Runs `ops` from an empty ledger, checking the model after every step.
fn agrees(w: &World, ops: &[Op]) -> Result<(), String> {
    let mut m = Model {
        provider_rate: RATES[0],
        ..Model::default()
    };
    set_rate(w, None, RATES[0]);
    for (n, op) in ops.iter().enumerate() {
        step(w, &mut m, op)
            .and_then(|()| verify(w, &m))
            .map_err(|e| format!("step {n} {op:?}: {e}"))?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn ledger_matches_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        let r = agrees(&world(), &ops);
        prop_assert!(r.is_ok(), "{}", r.err().unwrap_or_default());
    }

    #[test]
    fn ledger_matches_the_model_on_postgres(ops in proptest::collection::vec(op(), 1..60)) {
        if let Some(backend) = Backend::postgres("props") {
            let r = agrees(&world_on(&backend), &ops);
            prop_assert!(r.is_ok(), "{}", r.err().unwrap_or_default());
        }
    }
}

backends! {
fn refunds_beyond_the_free_part_release_allocations(backend) {
    let w = world_on(&backend);
    let mut m = Model {
        provider_rate: RATES[0],
        ..Model::default()
    };
    set_rate(&w, None, RATES[0]);
    let ops = [
        Op::Pay {
            client: 1,
            eur: false,
            cents: 10_000,
        },
        Op::SetPaid(0),
        Op::Pay {
            client: 1,
            eur: true,
            cents: 5_000,
        },
        Op::SetPaid(1),
        Op::Expense {
            client: 1,
            cents: 9_000,
            postpaid: false,
        },
        Op::Refund {
            payment: 0,
            cents: 6_000,
        },
        Op::Refund {
            payment: 0,
            cents: 4_000,
        },
        Op::DeleteExpense(1),
        Op::Refund {
            payment: 1,
            cents: 5_000,
        },
    ];
    for op in &ops {
        step(&w, &mut m, op)
            .and_then(|()| verify(&w, &m))
            .unwrap_or_else(|e| panic!("{op:?}: {e}"));
    }
    assert_eq!(m.payments[0].status, St::Refunded);
    assert_eq!(m.payments[1].status, St::Refunded);
}
}
