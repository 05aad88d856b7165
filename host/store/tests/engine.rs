//! The interval engine: clearing, charging exactly what was served, restarts.

#[macro_use]
mod support;

use gigaspot_market::clearing::Verdict;
use gigaspot_market::ledger::charge_id;
use gigaspot_market::money::Amount;
use gigaspot_market::{PricePerWatt, StrategyOnly};
use gigaspot_store::{IntervalEngine, Store};
use support::{Backend, change, market, terms};

conformance!(
    the_better_price_per_watt_wins_and_only_served_intervals_are_charged,
    an_offline_machine_idles_and_is_not_charged,
    an_unfunded_bid_does_not_compete_and_funds_are_committed_across_machines,
    after_a_restart_every_served_interval_is_charged_exactly_once,
    a_failed_audit_stops_billing_and_says_why,
    the_decision_history_reads_newest_first_per_machine,
    a_new_interval_length_starts_at_the_next_boundary_and_charges_each_interval_once,
    bids_past_their_lifetime_become_expired_and_cannot_change,
    a_winner_that_cannot_run_by_its_own_fault_is_suspended_and_the_next_bid_wins,
    a_plugin_that_keeps_state_gives_the_same_answers_in_every_tick,
    marks_of_settled_intervals_are_pruned_and_a_partial_interval_keeps_its_time,
    what_the_plugins_saw_is_recorded_once_per_book_and_pruned_with_the_full_decisions,
    clearing_prices_per_model_and_the_shadow_records_are_kept_across_a_restart,
);

const T0: u64 = 1_800_000_000; // a minute boundary

fn the_better_price_per_watt_wins_and_only_served_intervals_are_charged(backend: &Backend) {
    let store = backend.open();
    let m = market(&*store);
    let plugins = StrategyOnly(PricePerWatt::new());
    let (engine, _) = IntervalEngine::start(&*store, &plugins).unwrap();
    // Alice: 100 CLORE for 1200 W; Bob: 60 CLORE for 600 W (better per watt).
    let alice_bid = store
        .place_bid(m.alice, &terms(m.machine.id, 100, 300), T0, None)
        .unwrap();
    let bob_bid = store
        .place_bid(m.bob, &terms(m.machine.id, 60, 150), T0, None)
        .unwrap();

    let k = T0 / 60;
    let report = engine.tick(T0).unwrap();
    assert_eq!(
        (report.interval, report.machines, report.switches),
        (Some(k), 1, 1)
    );
    let assignment = store.assignment(m.machine.id).unwrap().unwrap();
    assert_eq!(assignment.winner.unwrap().bid, bob_bid.id);
    // The loser can read why.
    let decision = store.decision(m.machine.id, k).unwrap().unwrap();
    let alice_verdict = decision
        .verdicts
        .iter()
        .find(|v| v.bid == alice_bid.id)
        .unwrap();
    assert!(
        matches!(alice_verdict.verdict, Verdict::Scored { score } if score > 0.0 && score < 0.1)
    );
    assert_eq!(decision.strategy.unwrap().digest, "native:price-per-watt");

    // The agent served the interval: the next boundary charges it, exactly.
    store.record_served(m.machine.id, k, bob_bid.id).unwrap();
    let report = engine.tick(T0 + 60).unwrap();
    assert_eq!((report.settled, report.charged), (1, 1));
    let cost = Amount::clore(60).pro_rata(60);
    let fee = cost.share_bps(250);
    assert_eq!(
        store.balance(m.bob).unwrap(),
        Amount::clore(1000).checked_sub(cost).unwrap()
    );
    assert_eq!(
        store.balance(m.host).unwrap(),
        cost.checked_sub(fee).unwrap()
    );
    assert_eq!(store.balance(store.fee_account()).unwrap(), fee);
    assert_eq!(report.revenue, cost);

    // Interval k+1 was not reported served: it is settled without charge.
    let report = engine.tick(T0 + 120).unwrap();
    assert_eq!((report.settled, report.charged), (1, 0));
    assert_eq!(
        store.balance(m.bob).unwrap(),
        Amount::clore(1000).checked_sub(cost).unwrap()
    );
    // A second tick in the same interval does nothing.
    assert_eq!(engine.tick(T0 + 150).unwrap().interval, None);
    let audit = store.audit().unwrap();
    assert_eq!(audit.charged_intervals, 1);
}

fn an_offline_machine_idles_and_is_not_charged(backend: &Backend) {
    let store = backend.open();
    let m = market(&*store);
    let plugins = StrategyOnly(PricePerWatt::new());
    let (engine, _) = IntervalEngine::start(&*store, &plugins).unwrap();
    let bid = store
        .place_bid(m.alice, &terms(m.machine.id, 100, 300), T0, None)
        .unwrap();
    engine.tick(T0).unwrap();
    store
        .modify_machine(m.machine.id, &mut |machine| {
            machine.live.online = false;
            Ok(())
        })
        .unwrap();
    // Served in k; offline from k+1 on.
    store.record_served(m.machine.id, T0 / 60, bid.id).unwrap();
    let report = engine.tick(T0 + 60).unwrap();
    assert_eq!((report.charged, report.idle, report.switches), (1, 1, 1));
    let report = engine.tick(T0 + 120).unwrap();
    assert_eq!(
        (report.settled, report.charged),
        (0, 0),
        "an idle interval has nothing to settle"
    );
    let decision = store.decision(m.machine.id, T0 / 60 + 1).unwrap().unwrap();
    assert_eq!(decision.idle_reason.as_deref(), Some("machine offline"));
}

fn an_unfunded_bid_does_not_compete_and_funds_are_committed_across_machines(backend: &Backend) {
    let store = backend.open();
    let m = market(&*store);
    let second = store.register_machine(support::spec(m.host)).unwrap();
    support::bring_online(&*store, &second);
    let carol = store
        .create_account("carol", &[gigaspot_market::account::Role::Client])
        .unwrap()
        .id;
    // Carol can pay exactly one minute at 1000 CLORE/day.
    let minute = Amount::clore(1000).pro_rata(60);
    store.deposit(carol, minute, "carol-1", T0).unwrap();
    store
        .place_bid(carol, &terms(m.machine.id, 1000, 150), T0, None)
        .unwrap();
    store
        .place_bid(carol, &terms(second.id, 1000, 150), T0, None)
        .unwrap();
    let plugins = StrategyOnly(PricePerWatt::new());
    let (engine, _) = IntervalEngine::start(&*store, &plugins).unwrap();
    let report = engine.tick(T0).unwrap();
    assert_eq!(report.idle, 1, "only one machine can be paid for");
    let second_decision = store.decision(second.id, T0 / 60).unwrap().unwrap();
    assert!(
        matches!(&second_decision.verdicts[0].verdict, Verdict::Ineligible { code, .. } if code == "insufficient-funds")
    );
}

fn after_a_restart_every_served_interval_is_charged_exactly_once(backend: &Backend) {
    let plugins = StrategyOnly(PricePerWatt::new());
    let (m, bid) = {
        let store = backend.open();
        let m = market(&*store);
        let (engine, _) = IntervalEngine::start(&*store, &plugins).unwrap();
        let bid = store
            .place_bid(m.alice, &terms(m.machine.id, 100, 300), T0, None)
            .unwrap();
        engine.tick(T0).unwrap();
        store.record_served(m.machine.id, T0 / 60, bid.id).unwrap();
        (m, bid)
    };
    // Down for five intervals: at restart the served interval is charged once.
    for _ in 0..2 {
        let store = backend.open();
        let (engine, audit) = IntervalEngine::start(&*store, &plugins).unwrap();
        assert_eq!(
            audit.charged_intervals,
            store
                .transfers()
                .unwrap()
                .iter()
                .filter(|t| t.id.starts_with("charge:"))
                .count()
        );
        engine.tick(T0 + 360).unwrap();
        let charges: Vec<_> = store
            .transfers()
            .unwrap()
            .into_iter()
            .filter(|t| t.id == charge_id(m.machine.id, T0 / 60))
            .collect();
        assert_eq!(charges.len(), 1);
        assert_eq!(charges[0].bid, Some(bid.id));
        assert_eq!(store.audit().unwrap().charged_intervals, 1);
    }
}

fn a_failed_audit_stops_billing_and_says_why(backend: &Backend) {
    let alice = {
        let store = backend.open();
        market(&*store).alice
    };
    // Tamper with a stored balance behind the store's back.
    backend.tamper_balance(alice, Amount::clore(5000));
    let store = backend.open();
    let plugins = StrategyOnly(PricePerWatt::new());
    let err = IntervalEngine::start(&*store, &plugins).err().unwrap();
    let text = err.to_string();
    assert!(text.contains("billing is stopped"), "{text}");
    assert!(text.contains(&format!("account {alice}")), "{text}");
}

fn the_decision_history_reads_newest_first_per_machine(backend: &Backend) {
    let store = backend.open();
    let m = market(&*store);
    let plugins = StrategyOnly(PricePerWatt::new());
    let (engine, _) = IntervalEngine::start(&*store, &plugins).unwrap();
    store
        .place_bid(m.alice, &terms(m.machine.id, 100, 300), T0, None)
        .unwrap();
    for i in 0..5 {
        engine.tick(T0 + 60 * i).unwrap();
    }
    let history = store.decisions(m.machine.id, 3).unwrap();
    let intervals: Vec<u64> = history.iter().map(|d| d.interval).collect();
    let k = T0 / 60;
    assert_eq!(intervals, vec![k + 4, k + 3, k + 2]);
    assert!(history.iter().all(|d| d.machine == m.machine.id));
    assert!(store.decisions(m.machine.id + 1000, 3).unwrap().is_empty());
}

fn a_new_interval_length_starts_at_the_next_boundary_and_charges_each_interval_once(
    backend: &Backend,
) {
    let mut store = backend.open();
    let m = market(&*store);
    let plugins = StrategyOnly(PricePerWatt::new());
    // 864 CLORE/day = 0.01 CLORE per second: a charge shows the interval's length.
    let bid = store
        .place_bid(m.alice, &terms(m.machine.id, 864, 300), T0, None)
        .unwrap();
    let mut now = T0;
    let mut expected = Amount::ZERO;
    // (length in force, change asked for during the interval): 60 → 120 → 60.
    for (length, change) in [
        (60, None),
        (60, Some(120)),
        (120, None),
        (120, Some(60)),
        (60, None),
        (60, None),
    ] {
        let engine = IntervalEngine::without_audit(&*store, &plugins);
        let report = engine.tick(now).unwrap();
        let interval = report.interval.expect("a boundary");
        let clock = store.interval_clock().unwrap();
        assert_eq!(clock.start_of(interval), now, "intervals tile time");
        assert_eq!(clock.length_of(interval), length);
        store.record_served(m.machine.id, interval, bid.id).unwrap();
        expected = expected
            .checked_add(Amount::clore(864).pro_rata(length))
            .unwrap();
        if let Some(new) = change {
            let mut params = store.params().unwrap();
            params.billing_interval_s = new;
            store.set_params(&params).unwrap();
            // Nothing moves before the boundary: the interval keeps its length.
            assert_eq!(store.interval_clock().unwrap().length_of(interval), length);
            // A restart in between keeps both the asked-for length and the clock.
            drop(store);
            store = backend.open();
            assert_eq!(store.params().unwrap().billing_interval_s, new);
        }
        // Ticks within the interval change nothing.
        let engine = IntervalEngine::without_audit(&*store, &plugins);
        assert_eq!(engine.tick(now + length - 1).unwrap().interval, None);
        now += length;
    }
    IntervalEngine::without_audit(&*store, &plugins)
        .tick(now)
        .unwrap();
    let paid = Amount::clore(1000)
        .checked_sub(store.balance(m.alice).unwrap())
        .unwrap();
    // Six served intervals of 60 + 60 + 120 + 120 + 60 + 60 s = 480 s: 4.8 CLORE.
    assert_eq!(paid, expected);
    assert_eq!(paid, Amount(480_000_000));
    let charges = store
        .transfers()
        .unwrap()
        .into_iter()
        .filter(|t| t.id.starts_with("charge:"))
        .count();
    assert_eq!(charges, 6, "each served interval charged exactly once");
    store.audit().unwrap();
}

fn bids_past_their_lifetime_become_expired_and_cannot_change(backend: &Backend) {
    let store = backend.open();
    let m = market(&*store);
    let plugins = StrategyOnly(PricePerWatt::new());
    let mut t = terms(m.machine.id, 100, 300);
    t.lifetime = gigaspot_market::bid::Lifetime::Explicit(90);
    let bid = store.place_bid(m.alice, &t, T0, None).unwrap();
    let engine = IntervalEngine::without_audit(&*store, &plugins);
    engine.tick(T0).unwrap();
    assert_eq!(
        store.bid(bid.id).unwrap().unwrap().state,
        gigaspot_market::bid::BidState::Active
    );
    // At T0 + 90 it is past its lifetime: edits and cancels fail before any tick...
    let err = store
        .cancel_bid(m.alice, bid.id, T0 + 90)
        .unwrap_err()
        .to_string();
    assert!(err.contains("expired"), "{err}");
    let err = store
        .edit_bid(
            m.alice,
            bid.id,
            &gigaspot_market::bid::BidChange {
                price_per_day: Amount::clore(200),
                oc: t.oc.clone(),
                image: None,
                env: None,
            },
            T0 + 100,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("expired"), "{err}");
    // ...and the next boundary writes the state, which a restart keeps.
    engine.tick(T0 + 120).unwrap();
    drop(store);
    let store = backend.open();
    assert_eq!(
        store.bid(bid.id).unwrap().unwrap().state,
        gigaspot_market::bid::BidState::Expired
    );
}

fn a_winner_that_cannot_run_by_its_own_fault_is_suspended_and_the_next_bid_wins(backend: &Backend) {
    use gigaspot_market::agent_protocol::{Unserved, UnservedReason};
    use gigaspot_market::bid::{BidChange, BidState};
    let store = backend.open();
    let m = market(&*store);
    let plugins = StrategyOnly(PricePerWatt::new());
    let engine = IntervalEngine::without_audit(&*store, &plugins);
    let broken = store
        .place_bid(m.alice, &terms(m.machine.id, 200, 300), T0, None)
        .unwrap();
    let fallback = store
        .place_bid(m.bob, &terms(m.machine.id, 100, 300), T0, None)
        .unwrap();
    let report = |reason| Unserved {
        bid: broken.id,
        reason,
        detail: "test".into(),
    };
    let winner = |store: &dyn Store| {
        store
            .assignment(m.machine.id)
            .unwrap()
            .unwrap()
            .winner
            .map(|w| w.bid)
    };
    let k = T0 / 60;
    // k: the broken bid wins; a host-side failure (driver) does not count against it.
    engine.tick(T0).unwrap();
    assert_eq!(winner(&*store), Some(broken.id));
    store
        .record_unserved(m.machine.id, k, &report(UnservedReason::DriverError))
        .unwrap();
    // k+1: its image cannot be pulled (its own fault, 1); k+2: it exits early (2).
    engine.tick(T0 + 60).unwrap();
    assert_eq!(store.bid_failures(broken.id).unwrap(), None);
    assert_eq!(winner(&*store), Some(broken.id));
    store
        .record_unserved(
            m.machine.id,
            k + 1,
            &report(UnservedReason::ImageUnavailable),
        )
        .unwrap();
    engine.tick(T0 + 120).unwrap();
    assert_eq!(
        store.bid_failures(broken.id).unwrap().unwrap().consecutive,
        1
    );
    assert_eq!(winner(&*store), Some(broken.id));
    store
        .record_unserved(m.machine.id, k + 2, &report(UnservedReason::ExitedEarly))
        .unwrap();
    // The boundary that counts the second failure suspends it and clears without it.
    engine.tick(T0 + 180).unwrap();
    let suspended = store.bid(broken.id).unwrap().unwrap();
    assert_eq!(suspended.state, BidState::Suspended);
    let run = store.bid_failures(broken.id).unwrap().unwrap();
    assert!(run.explain().contains("exited"), "{}", run.explain());
    assert_eq!(winner(&*store), Some(fallback.id));
    // Never charged for the three unserved intervals.
    assert_eq!(store.balance(m.alice).unwrap(), Amount::clore(1000));
    // The machine's reliability counts only the host's failure: 0 served of 1 assigned.
    assert_eq!(store.reliability(m.machine.id, T0 + 180).unwrap(), 0.0);
    store
        .record_served(m.machine.id, k + 3, fallback.id)
        .unwrap();
    engine.tick(T0 + 240).unwrap();
    assert_eq!(store.reliability(m.machine.id, T0 + 240).unwrap(), 0.5);
    // A restart keeps all of it.
    drop(store);
    let store = backend.open();
    assert_eq!(
        store.bid(broken.id).unwrap().unwrap().state,
        BidState::Suspended
    );
    assert_eq!(store.reliability(m.machine.id, T0 + 240).unwrap(), 0.5);
    // An edit by its owner puts it back in the market; it wins the next interval again.
    let change = BidChange {
        price_per_day: Amount::clore(200),
        oc: terms(m.machine.id, 200, 300).oc,
        image: Some("registry.example/fixed:2".into()),
        env: None,
    };
    let edited = store
        .edit_bid(m.alice, broken.id, &change, T0 + 250)
        .unwrap();
    assert_eq!(edited.state, BidState::Active);
    assert_eq!(edited.image, "registry.example/fixed:2");
    assert_eq!(store.bid_failures(broken.id).unwrap(), None);
    let plugins = StrategyOnly(PricePerWatt::new());
    IntervalEngine::without_audit(&*store, &plugins)
        .tick(T0 + 300)
        .unwrap();
    assert_eq!(winner(&*store), Some(broken.id));
}

fn a_plugin_that_keeps_state_gives_the_same_answers_in_every_tick(backend: &Backend) {
    use gigaspot_market::Strategy;
    use gigaspot_plugin_runtime::{ArtifactCache, PluginLimits, PluginRegistry, PluginRuntime};
    use std::sync::Arc;

    let store = backend.open();
    let m = market(&*store);
    let mut machines = vec![m.machine.clone()];
    for _ in 1..150 {
        let machine = store.register_machine(support::spec(m.host)).unwrap();
        support::bring_online(&*store, &machine);
        machines.push(machine);
    }
    // Carol can pay one minute of one bid: her machines are cleared one after another
    // (coupled), the others in parallel.
    let carol = store
        .create_account("carol", &[gigaspot_market::account::Role::Client])
        .unwrap()
        .id;
    store
        .deposit(carol, Amount::clore(1000).pro_rata(60), "carol-1", T0)
        .unwrap();
    for (i, machine) in machines.iter().enumerate() {
        store
            .place_bid(m.alice, &terms(machine.id, 1, 150), T0, None)
            .unwrap();
        if i % 50 == 7 {
            store
                .place_bid(carol, &terms(machine.id, 1000, 150), T0, None)
                .unwrap();
        }
    }
    // `count` scores every bid with the number of calls its instance has answered.
    let rt = PluginRuntime::new(PluginLimits::default(), ArtifactCache::in_memory()).unwrap();
    let count: Arc<dyn Strategy> = Arc::new(
        rt.load_strategy(&gigaspot_tests::guest("hostile-strategy"), "count")
            .unwrap(),
    );
    let registry = PluginRegistry::new(Arc::new(PricePerWatt::new()), 3);
    registry.activate_strategy(count.clone());
    let (engine, _) = IntervalEngine::start(&*store, &registry).unwrap();

    let mut ticks = Vec::new();
    for t in 0..3 {
        let now = T0 + 60 * t;
        engine.tick(now).unwrap();
        let answers: Vec<(u64, u64, f64)> = machines
            .iter()
            .flat_map(|machine| {
                let decision = store.decision(machine.id, now / 60).unwrap().unwrap();
                assert_eq!(decision.strategy.as_ref(), Some(count.plugin_ref()));
                decision
                    .verdicts
                    .into_iter()
                    .filter_map(|v| match v.verdict {
                        Verdict::Scored { score } => Some((machine.id, v.bid, score)),
                        _ => None,
                    })
            })
            .collect();
        // Every bid is scored: each of Carol's could be paid alone.
        assert_eq!(answers.len(), 153);
        ticks.push(answers);
    }
    assert_eq!(ticks[0], ticks[1], "the second tick answered differently");
    assert_eq!(ticks[0], ticks[2], "the third tick answered differently");
    // Calls share an instance within a decision chunk (64 machines), never beyond one.
    let top = ticks[0].iter().map(|a| a.2).fold(0.0, f64::max);
    assert!(top > 1.0 && top <= 64.0, "largest count {top}");
}

fn marks_of_settled_intervals_are_pruned_and_a_partial_interval_keeps_its_time(backend: &Backend) {
    use gigaspot_market::agent_protocol::{Unserved, UnservedReason};
    use gigaspot_market::billing::ServedTime;

    let store = backend.open();
    let m = market(&*store);
    let bid = store
        .place_bid(m.bob, &terms(m.machine.id, 60, 150), T0, None)
        .unwrap();
    let plugins = StrategyOnly(PricePerWatt::new());
    let (engine, _) = IntervalEngine::start(&*store, &plugins).unwrap();
    let k = T0 / 60;
    let served = |seconds| ServedTime {
        bid: bid.id,
        seconds,
        covered_until: 0,
    };
    let unserved = Unserved {
        bid: bid.id,
        reason: UnservedReason::DriverError,
        detail: "nvml".into(),
    };
    let id = m.machine.id;
    // Interval k: served for half its length; k + 1: served whole, with an unserved report
    // from a moment it was down; k + 2 is being served when the marks are pruned.
    for (i, seconds) in [(0, 30), (1, 60), (2, 10)] {
        engine.tick(T0 + 60 * i).unwrap();
        store.record_served(id, k + i, bid.id).unwrap();
        store
            .record_served_times(&[(id, k + i, served(seconds))])
            .unwrap();
        store.record_unserved(id, k + i, &unserved).unwrap();
    }
    // A heartbeat racing the boundary reports an interval already settled: ignored.
    store.record_served_times(&[(id, k, served(60))]).unwrap();
    assert_eq!(store.served_time(id, k).unwrap(), Some(served(30)));

    // Intervals k and k + 1 are settled: their three marks each go, k + 2's stay.
    assert_eq!(store.prune_served_marks(4).unwrap(), 4);
    assert_eq!(store.prune_served_marks(100).unwrap(), 2);
    assert_eq!(store.prune_served_marks(100).unwrap(), 0);
    // What the ledger shows: the half-served interval keeps its 30 s; the whole one
    // falls back to the interval's length, as it was charged.
    assert_eq!(store.served_time(id, k).unwrap(), Some(served(30)));
    assert_eq!(store.served_time(id, k + 1).unwrap(), None);
    assert_eq!(store.unserved(id, k + 1).unwrap(), None);
    assert_eq!(store.served_time(id, k + 2).unwrap(), Some(served(10)));
    assert_eq!(store.unserved(id, k + 2).unwrap(), Some(unserved.clone()));
    let half = Amount::clore(60).pro_rata(30);
    let whole = Amount::clore(60).pro_rata(60);
    let spent = Amount::clore(1000)
        .checked_sub(store.balance(m.bob).unwrap())
        .unwrap();
    assert_eq!(spent, half.checked_add(whole).unwrap());

    // The next boundary settles k + 2 from its marks (10 s), then they are pruned too.
    engine.tick(T0 + 180).unwrap();
    let spent = Amount::clore(1000)
        .checked_sub(store.balance(m.bob).unwrap())
        .unwrap();
    let tenth = Amount::clore(60).pro_rata(10);
    assert_eq!(
        spent,
        half.checked_add(whole).unwrap().checked_add(tenth).unwrap()
    );
    assert_eq!(store.prune_served_marks(100).unwrap(), 3);
    drop(store);
    let store = backend.open();
    assert_eq!(store.served_time(id, k).unwrap(), Some(served(30)));
    assert_eq!(store.served_time(id, k + 2).unwrap(), Some(served(10)));
    assert_eq!(store.served_time(id, k + 1).unwrap(), None);
    assert_eq!(store.prune_served_marks(100).unwrap(), 0);
}

/// Each clearing's plugin input is kept: a record per interval, the book only when it
/// changed; the input rebuilt from them has the decision's digest, across a restart; and
/// compaction drops the inputs with the full decisions while every later record still
/// finds its book.
fn what_the_plugins_saw_is_recorded_once_per_book_and_pruned_with_the_full_decisions(
    backend: &Backend,
) {
    let plugins = StrategyOnly(PricePerWatt::new());
    let k = T0 / 60;
    let (m, alice) = {
        let store = backend.open();
        let m = market(&*store);
        let (engine, _) = IntervalEngine::start(&*store, &plugins).unwrap();
        let alice = store
            .place_bid(m.alice, &terms(m.machine.id, 100, 300), T0, None)
            .unwrap();
        store
            .place_bid(m.bob, &terms(m.machine.id, 60, 150), T0, None)
            .unwrap();
        engine.tick(T0).unwrap();
        engine.tick(T0 + 60).unwrap();
        (m, alice)
    };
    let id = m.machine.id;
    let recorded = |store: &dyn Store, interval: u64| {
        let decision = store.decision(id, interval).unwrap().unwrap();
        let (record, input) = store.recorded_input(id, interval).unwrap().unwrap();
        assert_eq!(
            input.digests().1,
            decision.input_digest,
            "interval {interval}"
        );
        assert_eq!(input.digests().0, record.book);
        let all = store.recorded_clearings(interval).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].decision, decision);
        assert_eq!(all[0].input.as_ref().map(|(_, i)| i), Some(&input));
        (record, input)
    };
    // After a restart: both intervals read back; the running bid's time differs, the
    // book does not.
    let store = backend.open();
    let (first, input) = recorded(&*store, k);
    let (second, _) = recorded(&*store, k + 1);
    assert_eq!(first.book, second.book);
    assert_ne!(first.running, second.running);
    assert_eq!(input.candidates.len(), 2);
    // The new process knows the machine's last book: its first tick does not write it
    // again; an edit changes it.
    assert_eq!(
        store.tick_snapshot().unwrap().books.get(&id),
        Some(&first.book)
    );
    let (engine, _) = IntervalEngine::start(&*store, &plugins).unwrap();
    engine.tick(T0 + 120).unwrap();
    assert_eq!(recorded(&*store, k + 2).0.book, first.book);
    assert_eq!(
        store.tick_snapshot().unwrap().books.get(&id),
        Some(&first.book)
    );
    store
        .edit_bid(m.alice, alice.id, &change(&terms(id, 120, 300)), T0 + 150)
        .unwrap();
    engine.tick(T0 + 180).unwrap();
    let (edited, input) = recorded(&*store, k + 3);
    assert_ne!(edited.book, first.book);
    assert!(
        input
            .candidates
            .iter()
            .any(|c| c.price_per_day == Amount::clore(120).0)
    );
    // Compacting before k + 2 drops the inputs of k and k + 1; k + 2 still finds its book,
    // written at k.
    while store.compact_decisions(k + 2, 1_000).unwrap().bytes_before > 0 {}
    assert!(store.recorded_input(id, k).unwrap().is_none());
    assert!(store.recorded_input(id, k + 1).unwrap().is_none());
    recorded(&*store, k + 2);
    recorded(&*store, k + 3);
    while store.compact_decisions(k + 3, 1_000).unwrap().bytes_before > 0 {}
    assert!(store.recorded_input(id, k + 2).unwrap().is_none());
    recorded(&*store, k + 3);
}

/// Each tick records the winners' prices per kW per GPU model (min, median, max, volume);
/// the shadow strategy and its per-interval records survive a restart.
fn clearing_prices_per_model_and_the_shadow_records_are_kept_across_a_restart(backend: &Backend) {
    let plugins = StrategyOnly(PricePerWatt::new());
    let k = T0 / 60;
    {
        let store = backend.open();
        let m = market(&*store);
        // A second and a third machine of the same model, each with one bid.
        let host = m.host;
        let others: Vec<_> = (0..2)
            .map(|_| {
                let machine = store.register_machine(support::spec(host)).unwrap();
                support::bring_online(&*store, &machine);
                machine
            })
            .collect();
        let (engine, _) = IntervalEngine::start(&*store, &plugins).unwrap();
        // 100 CLORE for 1200 W = 83.33 CLORE/day/kW; 60 for 600 W = 100; 90 for 900 W = 100.
        store
            .place_bid(m.alice, &terms(m.machine.id, 100, 300), T0, None)
            .unwrap();
        store
            .place_bid(m.bob, &terms(others[0].id, 60, 150), T0, None)
            .unwrap();
        store
            .place_bid(m.alice, &terms(others[1].id, 90, 225), T0, None)
            .unwrap();
        engine.tick(T0).unwrap();
        store
            .set_shadow_strategy(Some("sha256:abc+config:0"))
            .unwrap();
        store
            .record_shadow_diff(&gigaspot_store::ShadowDiff {
                interval: k,
                strategy: gigaspot_market::verdict::PluginRef {
                    name: "shadow".into(),
                    version: "1".into(),
                    digest: "sha256:abc+config:0".into(),
                },
                machines: 3,
                changed: 1,
                switches_live: 3,
                switches_shadow: 3,
                gross_live: 10,
                gross_shadow: -5,
                net_live: 7,
                net_shadow: -9,
                faults: 0,
                micros: 42,
                winners: vec![(1, Some(2), None)],
            })
            .unwrap();
    }
    let store = backend.open();
    let prices = store.market_prices(k - 5, k + 5).unwrap();
    assert_eq!(prices.len(), 1);
    assert_eq!(prices[0].interval, k);
    assert_eq!(prices[0].start, T0);
    let model = &prices[0].models[0];
    assert_eq!(model.model, "NVIDIA GeForce RTX 4090");
    assert!((model.min - 100.0 / 1.2).abs() < 1e-9, "{model:?}");
    assert!((model.median - 100.0).abs() < 1e-9, "{model:?}");
    assert!((model.max - 100.0).abs() < 1e-9, "{model:?}");
    assert_eq!((model.machines, model.gpus), (3, 12));
    assert!((model.kw - 2.7).abs() < 1e-9);
    assert_eq!(
        store.shadow_strategy().unwrap().as_deref(),
        Some("sha256:abc+config:0")
    );
    let diffs = store.shadow_diffs(k, k).unwrap();
    assert_eq!(diffs.len(), 1);
    assert_eq!(
        (diffs[0].gross_shadow, diffs[0].winners.clone()),
        (-5, vec![(1, Some(2), None)])
    );
    store.set_shadow_strategy(None).unwrap();
    assert_eq!(store.shadow_strategy().unwrap(), None);
}
