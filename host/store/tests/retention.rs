//! Decision retention: full decision records are kept for a window and compacted after it;
//! history, digests and plugin versions survive compaction, and the ledger is untouched.

mod support;

use std::collections::BTreeMap;

use gigaspot_market::account::Role;
use gigaspot_market::money::Amount;
use gigaspot_market::{PricePerWatt, StrategyOnly};
use gigaspot_store::{IntervalEngine, SledStore, Store};
use support::{bring_online, spec, terms};

const T0: u64 = 1_800_000_000; // a minute boundary
const MACHINES: u64 = 8;
const CLIENTS: u64 = 30;
/// Intervals whose full records are kept.
const KEEP: u64 = 3;
const TICKS: u64 = 16;

/// Records and bytes of one kind of record (the key prefix before `/`).
fn kind(store: &SledStore, name: &str) -> (u64, u64) {
    store
        .space_by_kind()
        .unwrap()
        .get(name)
        .copied()
        .unwrap_or_default()
}

/// The ledger's kinds: transfers, their per-account index and their idempotency ids.
const LEDGER: [&str; 3] = ["xfer", "axfer", "xid"];

/// Bytes of every kind but the ledger's (which is never compacted).
fn total_bytes(store: &SledStore) -> u64 {
    store
        .space_by_kind()
        .unwrap()
        .iter()
        .filter(|(k, _)| !LEDGER.contains(&k.as_str()))
        .map(|(_, (_, b))| b)
        .sum()
}

#[test]
fn with_a_short_retention_full_records_stop_growing_and_history_keeps_every_interval() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let host = store.create_account("host", &[Role::Host]).unwrap().id;
    let machines: Vec<_> = (0..MACHINES)
        .map(|_| {
            let m = store.register_machine(spec(host)).unwrap();
            bring_online(&store, &m);
            m
        })
        .collect();
    for c in 0..CLIENTS {
        let client = store
            .create_account(&format!("client-{c}"), &[Role::Client])
            .unwrap()
            .id;
        store
            .deposit(client, Amount::clore(1_000_000), &format!("dep-{c}"), 0)
            .unwrap();
        for m in &machines {
            store
                .place_bid(client, &terms(m.id, 100 + c * 7, 200 + c as u32), T0, None)
                .unwrap();
        }
    }
    let plugins = StrategyOnly(PricePerWatt::new());
    let (engine, _) = IntervalEngine::start(&store, &plugins).unwrap();

    let mut digests = BTreeMap::new();
    let mut full_bytes_per_tick = 0;
    let mut steady: Option<(u64, u64)> = None;
    let mut totals = Vec::new();
    for i in 0..TICKS {
        let now = T0 + i * 60;
        let k = now / 60;
        engine.tick(now).unwrap();
        for m in &machines {
            let d = store.decision(m.id, k).unwrap().unwrap();
            assert_eq!(d.verdicts.len() as u64, CLIENTS);
            digests.insert((m.id, k), d.input_digest.clone());
            // The agent serves every winner: each interval is charged at the next boundary.
            let winner = store.assignment(m.id).unwrap().unwrap().winner.unwrap();
            store.record_served(m.id, k, winner.bid).unwrap();
        }
        if i == 0 {
            full_bytes_per_tick = kind(&store, "dch").1;
        }
        // What the service does after each boundary: everything older than the window.
        let before = (k + 1).saturating_sub(KEEP);
        loop {
            let done = store.compact_decisions(before, 5).unwrap();
            if done.bytes_before == 0 {
                break;
            }
            assert!(done.bytes_after < done.bytes_before, "{done:?}");
        }
        // And the served marks of settled intervals: only the interval being served keeps
        // its marks (one per machine).
        while store.prune_served_marks(5).unwrap() > 0 {}
        assert!(kind(&store, "srvi").0 <= MACHINES, "tick {i}");
        let full = kind(&store, "dch");
        if i + 1 >= KEEP {
            // The window is full: exactly KEEP intervals of full records (one chunk each:
            // the 8 machines fit one), and their bytes stay where they are.
            assert_eq!(full.0, KEEP, "tick {i}");
            let first = *steady.get_or_insert(full);
            assert!(
                full.1.abs_diff(first.1) * 100 <= first.1,
                "tick {i}: {full:?} vs {first:?}"
            );
            totals.push(total_bytes(&store));
        }
    }

    // After the window the database (the ledger aside, which is never compacted) grows
    // only by the compact records and assignments: far less per interval than one
    // interval of full records.
    let growth = (totals[totals.len() - 1] - totals[0]) / (totals.len() as u64 - 1);
    let compact = kind(&store, "dcc");
    let compact_per_tick = compact.1 / (TICKS - KEEP);
    assert_eq!(compact.0, TICKS - KEEP);
    assert!(
        compact_per_tick * 5 < full_bytes_per_tick,
        "compact {compact_per_tick} B vs full {full_bytes_per_tick} B per interval"
    );
    assert!(
        growth * 3 < full_bytes_per_tick,
        "grew {growth} B per interval vs {full_bytes_per_tick} B of full records"
    );

    // History still has every interval, newest first; the compacted ones keep the winner
    // (the assignment's), the input digest and the plugin version that answered.
    let check = |store: &SledStore| {
        for m in &machines {
            let history = store.decision_summaries(m.id, 100).unwrap();
            assert_eq!(history.len() as u64, TICKS);
            let assignments = store
                .assignments_between(m.id, T0 / 60, T0 / 60 + TICKS)
                .unwrap();
            for (n, s) in history.iter().enumerate() {
                let k = T0 / 60 + TICKS - 1 - n as u64;
                assert_eq!(s.interval, k);
                assert_eq!(s.full, (n as u64) < KEEP, "interval {k}");
                assert_eq!(&s.input_digest, &digests[&(m.id, k)]);
                assert_eq!(s.strategy.as_deref(), Some("native:price-per-watt"));
                assert_eq!(s.candidates as u64, CLIENTS);
                let assigned = assignments.iter().find(|a| a.interval == k).unwrap();
                assert_eq!(s.winner, assigned.winner);
                assert_eq!(s.switched, n as u64 == TICKS - 1);
            }
            // Full records of compacted intervals are gone; the newest ones are whole.
            assert!(store.decision(m.id, T0 / 60).unwrap().is_none());
            let newest = store.decision(m.id, T0 / 60 + TICKS - 1).unwrap().unwrap();
            assert_eq!(newest.verdicts.len() as u64, CLIENTS);
        }
    };
    check(&store);

    // The ledger is untouched: every served interval but the last was charged, and the
    // audit balances.
    let audit = store.audit().unwrap();
    assert_eq!(audit.charged_intervals as u64, MACHINES * (TICKS - 1));

    // After a restart: the same history, and compaction goes on where it stopped.
    store.close().unwrap();
    drop(store);
    let store = SledStore::open(dir.path()).unwrap();
    check(&store);
    assert_eq!(
        store
            .compact_decisions(T0 / 60 + TICKS - KEEP, 100)
            .unwrap(),
        Default::default()
    );
    let done = store.compact_decisions(T0 / 60 + TICKS, 100).unwrap();
    assert_eq!(done.records, MACHINES * KEEP);
    assert_eq!(kind(&store, "dch").0, 0);
    assert_eq!(
        store.audit().unwrap().charged_intervals as u64,
        MACHINES * (TICKS - 1)
    );
}
