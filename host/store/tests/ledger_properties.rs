//! Random sequences of market activity, restarts included, keep every ledger invariant,
//! on sled and on PostgreSQL.

mod support;

use std::collections::BTreeSet;

use gigaspot_market::ledger::TransferKind;
use gigaspot_market::money::Amount;
use gigaspot_market::{PricePerWatt, StrategyOnly};
use gigaspot_store::IntervalEngine;
use proptest::prelude::*;
use support::{Backend, market, terms};

#[derive(Debug, Clone)]
enum Op {
    Deposit { client: usize, clore: u64 },
    Withdraw { client: usize, clore: u64 },
    Bid { client: usize, clore: u64, pl: u32 },
    Edit { pick: usize, clore: u64, pl: u32 },
    Cancel { pick: usize },
    Tick { intervals: u64, served: bool },
    AgentOnline(bool),
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..2usize, 0..50u64).prop_map(|(client, clore)| Op::Deposit { client, clore }),
        (0..2usize, 0..50u64).prop_map(|(client, clore)| Op::Withdraw { client, clore }),
        (0..2usize, 1..3000u64, 100..450u32).prop_map(|(client, clore, pl)| Op::Bid {
            client,
            clore,
            pl
        }),
        (0..8usize, 1..3000u64, 100..450u32).prop_map(|(pick, clore, pl)| Op::Edit {
            pick,
            clore,
            pl
        }),
        (0..8usize).prop_map(|pick| Op::Cancel { pick }),
        (1..3u64, any::<bool>()).prop_map(|(intervals, served)| Op::Tick { intervals, served }),
        any::<bool>().prop_map(Op::AgentOnline),
        Just(Op::Restart),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn every_sequence_keeps_the_ledger_invariants_on_sled(ops in prop::collection::vec(op(), 1..40)) {
        run(&Backend::Sled(tempfile::tempdir().unwrap()), ops)?;
    }
}

proptest! {
    // Each case is a fresh database on the private server: fewer, as long.
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn every_sequence_keeps_the_ledger_invariants_on_postgresql(ops in prop::collection::vec(op(), 1..40)) {
        let url = gigaspot_tests::postgres::Postgres::shared().fresh_database();
        run(&Backend::Postgres(url), ops)?;
    }
}

fn run(backend: &Backend, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let plugins = StrategyOnly(PricePerWatt::new());
    let mut store = backend.open();
    let m = market(&*store);
    let clients = [m.alice, m.bob];
    let mut bids = Vec::new();
    let mut now = 1_800_000_000u64;
    let mut served_intervals = BTreeSet::new();
    for (i, op) in ops.into_iter().enumerate() {
        match op {
            Op::Deposit { client, clore } => {
                let _ = store.deposit(clients[client], Amount::clore(clore), &format!("d{i}"), now);
            }
            Op::Withdraw { client, clore } => {
                let _ =
                    store.withdraw(clients[client], Amount::clore(clore), &format!("w{i}"), now);
            }
            Op::Bid { client, clore, pl } => {
                if let Ok(b) =
                    store.place_bid(clients[client], &terms(m.machine.id, clore, pl), now, None)
                {
                    bids.push(b);
                }
            }
            Op::Edit { pick, clore, pl } => {
                if let Some(b) = bids.get(pick) {
                    let t = terms(m.machine.id, clore, pl);
                    let _ = store.edit_bid(b.owner, b.id, &support::change(&t), now);
                }
            }
            Op::Cancel { pick } => {
                if let Some(b) = bids.get(pick) {
                    let _ = store.cancel_bid(b.owner, b.id, now);
                }
            }
            Op::Tick { intervals, served } => {
                let (engine, _) = IntervalEngine::start(&*store, &plugins).unwrap();
                engine.tick(now).unwrap();
                // The agent reports the interval it runs as served (or not).
                if served
                    && let Some(a) = store.assignment(m.machine.id).unwrap()
                    && let Some(w) = a.winner
                {
                    store
                        .record_served(m.machine.id, a.interval, w.bid)
                        .unwrap();
                    served_intervals.insert(a.interval);
                }
                now += 60 * intervals;
            }
            Op::AgentOnline(online) => {
                store
                    .modify_machine(m.machine.id, &mut |machine| {
                        machine.live.online = online;
                        Ok(())
                    })
                    .unwrap();
            }
            Op::Restart => {
                drop(store);
                store = backend.open();
            }
        }
        // Sum of balances = deposits − withdrawals, no overdraft, no double charge.
        let audit = store
            .audit()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        // Only served intervals are ever charged.
        for t in store.transfers().unwrap() {
            if t.kind == TransferKind::Charge {
                prop_assert!(
                    served_intervals.contains(&t.interval.unwrap()),
                    "{t:?} was not served"
                );
            }
        }
        prop_assert!(audit.charged_intervals <= served_intervals.len());
    }
    Ok(())
}
