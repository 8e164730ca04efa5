//! Random sequences of ledger operations (payments through a USD and a EUR method with
//! provider-wide and per-client rates, setpaid, expenses, expense deletions, refunds, payment
//! deletions, rate changes) run through the engine and against a small reference model written
//! here with integer arithmetic. After every step each client's balance equals the model's, each
//! operation succeeded exactly when the model says it should, and `ledger::check` is clean.

#[path = "support/ledger_model.rs"]
mod model;

use model::*;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn ledger_matches_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        let w = world();
        let mut m = Model { provider_rate: RATES[0], ..Model::default() };
        set_rate(&w, None, RATES[0]);
        for (n, op) in ops.iter().enumerate() {
            let r = step(&w, &mut m, op).and_then(|()| verify(&w, &m));
            prop_assert!(r.is_ok(), "step {n} {op:?}: {}", r.err().unwrap_or_default());
        }
    }
}

#[test]
fn refunds_beyond_the_free_part_release_allocations() {
    let w = world();
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
