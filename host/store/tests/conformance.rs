//! The conformance suite: every behaviour the [`Store`] trait promises, run against each
//! implementation from the same code — the embedded sled store and PostgreSQL (a private
//! server started by the test support, one fresh database per test).

#[macro_use]
mod support;

use gigaspot_market::account::Role;
use gigaspot_market::admission::RefusalReason;
use gigaspot_market::bid::BidState;
use gigaspot_market::ledger::{LedgerError, Party};
use gigaspot_market::money::Amount;
use gigaspot_store::StoreError;
use support::{Backend, change, market, terms};

conformance!(
    bids_are_admitted_by_the_market_rules_and_refusals_change_nothing,
    an_idempotency_key_returns_the_first_bid,
    edits_rerun_admission_and_only_owners_change_bids,
    deposits_are_idempotent_and_withdrawals_never_overdraw,
    concurrent_machine_changes_never_lose_an_update,
    a_bid_needs_an_available_machine_and_one_interval_of_funds,
    each_account_pages_through_its_own_ledger_newest_first,
    accounts_machines_bids_and_money_survive_a_reopen,
    plugin_versions_params_and_the_gpu_table_are_stored,
    concurrent_keyed_bids_create_each_bid_once,
    everything_survives_a_reopen,
    pending_withdrawals_survive_a_restart_and_cannot_be_spent_twice,
    an_audit_while_deposits_are_written_sees_a_consistent_ledger,
    a_background_job_and_the_ceilings_it_sets_survive_a_reopen,
    standing_orders_are_checked_changed_under_the_lock_and_survive_a_reopen,
);

fn standing_orders_are_checked_changed_under_the_lock_and_survive_a_reopen(backend: &Backend) {
    use gigaspot_market::standing_order::{Held, OrderPower, OrderSpec, OrderState};
    let spec = OrderSpec {
        count: 2,
        unit: gigaspot_market::standing_order::OrderUnit::Machines,
        models: vec!["NVIDIA GeForce RTX 4090".into()],
        min_gpus: 1,
        power: OrderPower::Fraction(0.5),
        oc: Default::default(),
        image: "registry.example/train:1".into(),
        env: Default::default(),
        max_price_per_kw: Some(Amount::clore(80)),
        max_price_per_day: None,
        budget: Some(Amount::clore(500)),
        lifetime_s: 86_400,
    };
    let (m, order) = {
        let store = backend.open();
        let m = market(&*store);
        // Only clients place orders; a bad spec names its field; neither is stored.
        assert!(matches!(
            store.create_order(m.host, &spec, 10),
            Err(StoreError::Forbidden { .. })
        ));
        let mut bad = spec.clone();
        bad.count = 0;
        match store.create_order(m.alice, &bad, 10) {
            Err(StoreError::InvalidField { field, .. }) => assert_eq!(field, "count"),
            other => panic!("expected a refusal of count, got {other:?}"),
        }
        assert!(store.orders(None).unwrap().is_empty());
        let order = store.create_order(m.alice, &spec, 10).unwrap();
        assert_eq!(order.expires_at, 10 + 86_400);
        assert_eq!(order.state, OrderState::Active);
        // Concurrent changes are serialised: none is lost.
        std::thread::scope(|scope| {
            for t in 0..4u64 {
                let store = store.clone();
                scope.spawn(move || {
                    for i in 0..10u64 {
                        store
                            .modify_order(order.id, &mut |o| {
                                o.placed.push(t * 100 + i);
                                Ok(())
                            })
                            .unwrap();
                    }
                });
            }
        });
        let changed = store
            .modify_order(order.id, &mut |o| {
                o.held = vec![Held {
                    machine: m.machine.id,
                    bid: 7,
                }];
                o.note = Some("holds 1 of 2".into());
                Ok(())
            })
            .unwrap();
        assert_eq!(changed.placed.len(), 40);
        // A refused change writes nothing.
        let refused = store.modify_order(order.id, &mut |o| {
            o.state = OrderState::Cancelled;
            Err(StoreError::Invalid {
                field: "state",
                reason: "no".into(),
            })
        });
        assert!(refused.is_err());
        (m, changed)
    };
    let store = backend.open();
    assert_eq!(store.order(order.id).unwrap(), Some(order.clone()));
    assert_eq!(store.orders(Some(m.alice)).unwrap(), vec![order.clone()]);
    assert!(store.orders(Some(m.bob)).unwrap().is_empty());
    assert_eq!(store.order(order.id + 1_000).unwrap(), None);
    // Orders take ids from the market's one sequence: the next id is never reused.
    let bid = store
        .place_bid(m.bob, &terms(m.machine.id, 100, 300), 20, None)
        .unwrap();
    assert!(bid.id > order.id);
}

fn a_background_job_and_the_ceilings_it_sets_survive_a_reopen(backend: &Backend) {
    use gigaspot_market::background::BackgroundRequest;
    use gigaspot_market::bid::OcRequest;
    use gigaspot_market::gpu_ranges::GpuRangeTable;
    use gigaspot_market::machine::HostChange;
    let changed = {
        let store = backend.open();
        let m = market(&*store);
        let job = BackgroundRequest {
            image: "miner:1".into(),
            env: [("WALLET".to_owned(), "w".to_owned())].into(),
            oc: vec![
                OcRequest {
                    pl: Some(330),
                    core_offset: Some(50),
                    ..OcRequest::default()
                };
                4
            ],
        };
        let change = HostChange {
            ceilings_w: Some(None),
            background: Some(Some(job)),
            background_earnings: Some(Amount(123_456_789)),
            ..HostChange::default()
        };
        let table = GpuRangeTable::defaults();
        let changed = store
            .modify_machine(m.machine.id, &mut |machine| {
                change
                    .apply(machine, &table)
                    .map_err(|e| StoreError::Invalid {
                        field: "change",
                        reason: format!("{e:?}"),
                    })
            })
            .unwrap();
        assert_eq!(changed.gpus[0].ceiling_w, 330);
        assert!(!changed.explicit_ceilings);
        changed
    };
    let store = backend.open();
    assert_eq!(store.machine(changed.id).unwrap(), Some(changed.clone()));
    assert_eq!(store.machines().unwrap(), vec![changed]);
}

fn bids_are_admitted_by_the_market_rules_and_refusals_change_nothing(backend: &Backend) {
    let store = backend.open();
    let m = market(&*store);
    let bid = store
        .place_bid(m.alice, &terms(m.machine.id, 100, 300), 1000, None)
        .unwrap();
    assert_eq!(bid.expires_at, 1000 + 7 * 86_400);
    assert_eq!(bid.oc[0].power_limit_w, 300);

    let err = store
        .place_bid(m.alice, &terms(m.machine.id, 100, 999), 1000, None)
        .unwrap_err();
    match err {
        StoreError::Refused(r) => {
            assert_eq!(r.field, "oc[0].pl");
            assert_eq!(r.reason, RefusalReason::OutOfRange { min: 150, max: 400 });
        }
        other => panic!("expected a refusal, got {other}"),
    }
    // A host cannot bid on its own machine, and must hold the client role anyway.
    assert!(matches!(
        store.place_bid(m.host, &terms(m.machine.id, 100, 300), 1000, None),
        Err(StoreError::Forbidden { .. })
    ));
    assert_eq!(store.bids_on(m.machine.id).unwrap(), vec![bid]);
}

fn an_idempotency_key_returns_the_first_bid(backend: &Backend) {
    let store = backend.open();
    let m = market(&*store);
    let first = store
        .place_bid(m.alice, &terms(m.machine.id, 100, 300), 1, Some("k1"))
        .unwrap();
    let again = store
        .place_bid(m.alice, &terms(m.machine.id, 100, 300), 2, Some("k1"))
        .unwrap();
    assert_eq!(first, again);
    // Keys are per account.
    let bobs = store
        .place_bid(m.bob, &terms(m.machine.id, 100, 300), 3, Some("k1"))
        .unwrap();
    assert_ne!(bobs.id, first.id);
    assert_eq!(store.bids_on(m.machine.id).unwrap().len(), 2);
}

fn edits_rerun_admission_and_only_owners_change_bids(backend: &Backend) {
    let store = backend.open();
    let m = market(&*store);
    let bid = store
        .place_bid(m.alice, &terms(m.machine.id, 100, 300), 1, None)
        .unwrap();
    let edit = terms(m.machine.id, 150, 350);
    let edited = store
        .edit_bid(m.alice, bid.id, &change(&edit), 1000)
        .unwrap();
    assert_eq!(
        (edited.price_per_day, edited.oc[3].power_limit_w),
        (Amount::clore(150), 350)
    );
    let bad = terms(m.machine.id, 150, 401);
    assert!(matches!(
        store.edit_bid(m.alice, bid.id, &change(&bad), 1000),
        Err(StoreError::Refused(_))
    ));
    assert!(matches!(
        store.cancel_bid(m.bob, bid.id, 1000),
        Err(StoreError::Forbidden { .. })
    ));
    assert_eq!(store.bid(bid.id).unwrap().unwrap(), edited);
    assert_eq!(
        store.cancel_bid(m.alice, bid.id, 1000).unwrap().state,
        BidState::Cancelled
    );
    assert!(matches!(
        store.cancel_bid(m.alice, bid.id, 1000),
        Err(StoreError::Invalid { .. })
    ));
}

fn deposits_are_idempotent_and_withdrawals_never_overdraw(backend: &Backend) {
    let store = backend.open();
    let m = market(&*store);
    let again = store
        .deposit(m.alice, Amount::clore(1000), "alice-1", 5)
        .unwrap();
    assert_eq!(again.at, 0, "the first booking is returned");
    assert_eq!(store.balance(m.alice).unwrap(), Amount::clore(1000));
    assert!(matches!(
        store.deposit(m.alice, Amount::clore(1), "alice-1", 5),
        Err(StoreError::Invalid {
            field: "reference",
            ..
        })
    ));
    let err = store
        .withdraw(m.alice, Amount::clore(1001), "w1", 6)
        .unwrap_err();
    assert!(matches!(
        err,
        StoreError::Ledger(LedgerError::InsufficientFunds { .. })
    ));
    store
        .withdraw(m.alice, Amount::clore(400), "w1", 6)
        .unwrap();
    assert_eq!(store.balance(m.alice).unwrap(), Amount::clore(600));
    let report = store.audit().unwrap();
    assert_eq!(report.deposits, Amount::clore(2000));
    assert_eq!(report.withdrawals, Amount::clore(400));
    assert_eq!(report.total_balance, Amount::clore(1600));
}

fn concurrent_machine_changes_never_lose_an_update(backend: &Backend) {
    // A "heartbeat" thread and a "host" thread change different parts of the same record
    // thousands of times; every change of each survives.
    let store = backend.open();
    let m = market(&*store);
    let id = m.machine.id;
    // Each change is a transaction on PostgreSQL, where the two writers conflict and retry.
    let rounds: u64 = if backend.is_postgres() { 300 } else { 2_000 };
    let host = {
        let store = store.clone();
        std::thread::spawn(move || {
            for i in 1..=rounds {
                store
                    .modify_machine(id, &mut |machine| {
                        machine.reserve_price = Amount(i);
                        Ok(())
                    })
                    .unwrap();
            }
        })
    };
    let agent = {
        let store = store.clone();
        std::thread::spawn(move || {
            for i in 1..=rounds {
                store
                    .modify_machine(id, &mut |machine| {
                        machine.live.cached_images = vec![format!("img:{i}")];
                        machine.live.working = i % 2 == 0;
                        Ok(())
                    })
                    .unwrap();
            }
        })
    };
    host.join().unwrap();
    agent.join().unwrap();
    let machine = store.machine(id).unwrap().unwrap();
    assert_eq!(machine.reserve_price, Amount(rounds));
    assert_eq!(machine.live.cached_images, vec![format!("img:{rounds}")]);
    // A refused change writes nothing, and the host never changes.
    let err = store
        .modify_machine(id, &mut |machine| {
            machine.reserve_price = Amount(1);
            Err(gigaspot_store::StoreError::Invalid {
                field: "x",
                reason: "refused".into(),
            })
        })
        .unwrap_err();
    assert!(err.to_string().contains("refused"));
    assert!(
        store
            .modify_machine(id, &mut |machine| {
                machine.host += 1;
                Ok(())
            })
            .is_err()
    );
    assert_eq!(store.machine(id).unwrap().unwrap(), machine);
}

fn a_bid_needs_an_available_machine_and_one_interval_of_funds(backend: &Backend) {
    let store = backend.open();
    let m = market(&*store);
    let poor = store.create_account("poor", &[Role::Client]).unwrap().id;
    let err = store
        .place_bid(poor, &terms(m.machine.id, 100, 300), 1, None)
        .unwrap_err();
    assert!(
        matches!(&err, gigaspot_store::StoreError::Refused(r) if r.field == "price"),
        "{err}"
    );
    store
        .modify_machine(m.machine.id, &mut |machine| {
            machine.live.online = false;
            Ok(())
        })
        .unwrap();
    let err = store
        .place_bid(m.alice, &terms(m.machine.id, 100, 300), 1, None)
        .unwrap_err();
    assert!(
        matches!(&err, gigaspot_store::StoreError::Refused(r) if r.field == "machine"),
        "{err}"
    );
}

fn each_account_pages_through_its_own_ledger_newest_first(backend: &Backend) {
    let store = backend.open();
    let m = market(&*store);
    for n in 0..5 {
        store
            .deposit(m.alice, Amount::clore(1), &format!("a-{n}"), 10 + n)
            .unwrap();
        store
            .deposit(m.bob, Amount::clore(2), &format!("b-{n}"), 10 + n)
            .unwrap();
    }
    store
        .withdraw(m.alice, Amount::clore(3), "a-out", 20)
        .unwrap();
    let touching = |account: u64| -> Vec<String> {
        let me = Party::Account(account);
        let mut ids: Vec<String> = store
            .transfers()
            .unwrap()
            .into_iter()
            .filter(|t| t.from == me || t.to == me)
            .map(|t| t.id)
            .collect();
        ids.reverse();
        ids
    };
    let paged = |account: u64| -> Vec<String> {
        let mut ids = Vec::new();
        let mut before = None;
        loop {
            let page = store.account_transfers(account, before, 3).unwrap();
            assert!(page.len() <= 3);
            assert!(page.windows(2).all(|w| w[0].0 > w[1].0), "newest first");
            let Some(last) = page.last() else { break };
            before = Some(last.0);
            ids.extend(page.into_iter().map(|(_, t)| t.id));
        }
        ids
    };
    let (alice, bob) = (touching(m.alice), touching(m.bob));
    assert_eq!(alice.len(), 7, "{alice:?}");
    assert_eq!(paged(m.alice), alice);
    assert_eq!(paged(m.bob), bob);
    assert!(
        store
            .account_transfers(m.alice, None, 0)
            .unwrap()
            .is_empty()
    );
    store.audit().unwrap();
    // sled keeps a per-account index of the ledger: a store written before it existed
    // gets it built when opened, and a missing entry fails the audit naming the transfer.
    if let Backend::Sled(dir) = backend {
        drop(store);
        {
            let db = gigaspot_store::open_waiting_for_lock(dir.path()).unwrap();
            for item in db.scan_prefix(b"axfer/") {
                db.remove(item.unwrap().0).unwrap();
            }
            db.remove(b"meta/account_transfer_index").unwrap();
            db.flush().unwrap();
        }
        let store = backend.open();
        let mut ids = Vec::new();
        let mut before = None;
        while let Some(last) = {
            let page = store.account_transfers(m.alice, before, 3).unwrap();
            let last = page.last().map(|p| p.0);
            ids.extend(page.into_iter().map(|(_, t)| t.id));
            last
        } {
            before = Some(last);
        }
        assert_eq!(ids, alice);
        store.audit().unwrap();
        drop(store);
        {
            let db = gigaspot_store::open_waiting_for_lock(dir.path()).unwrap();
            let entry = db.scan_prefix(b"axfer/").next().unwrap().unwrap().0;
            db.remove(entry).unwrap();
            db.flush().unwrap();
        }
        let err = backend.open().audit().unwrap_err();
        assert!(err.to_string().contains("ledger index"), "{err}");
    }
}

fn accounts_machines_bids_and_money_survive_a_reopen(backend: &Backend) {
    let (m, bid, cancelled) = {
        let store = backend.open();
        let m = market(&*store);
        store.add_api_key(m.alice, [7; 32]).unwrap();
        store.set_agent_token(m.machine.id, [9; 32]).unwrap();
        let bid = store
            .place_bid(m.alice, &terms(m.machine.id, 100, 300), 1, Some("k"))
            .unwrap();
        let other = store
            .place_bid(m.bob, &terms(m.machine.id, 90, 300), 1, None)
            .unwrap();
        let cancelled = store.cancel_bid(m.bob, other.id, 2).unwrap();
        store
            .withdraw(m.bob, Amount::clore(10), "out-1", 3)
            .unwrap();
        (m, bid, cancelled)
    };
    // A new process (a new store on the same data) sees exactly what was acknowledged.
    let store = backend.open();
    assert_eq!(store.bid(bid.id).unwrap(), Some(bid.clone()));
    assert_eq!(store.bid(cancelled.id).unwrap(), Some(cancelled.clone()));
    assert_eq!(
        store.bids_on(m.machine.id).unwrap(),
        vec![bid.clone(), cancelled.clone()]
    );
    assert_eq!(store.bids_of(m.alice).unwrap(), vec![bid.clone()]);
    assert_eq!(store.account_by_key(&[7; 32]).unwrap(), Some(m.alice));
    assert_eq!(store.account_by_key(&[8; 32]).unwrap(), None);
    assert!(store.has_api_key(m.alice).unwrap());
    assert!(!store.has_api_key(m.bob).unwrap());
    assert_eq!(
        store.machine_by_agent_token(&[9; 32]).unwrap(),
        Some(m.machine.id)
    );
    assert_eq!(store.balance(m.bob).unwrap(), Amount::clore(990));
    assert!(store.machine(m.machine.id).unwrap().unwrap().live.online);
    assert_eq!(store.machines().unwrap().len(), 1);
    assert_eq!(
        store.account(m.alice).unwrap().unwrap().roles,
        vec![Role::Client]
    );
    assert_eq!(
        store.account(store.fee_account()).unwrap().unwrap().roles,
        vec![Role::Operator]
    );
    // The replayed key answers the first bid; the id counter survived: no id is reused.
    let again = store
        .place_bid_keyed(m.alice, &terms(m.machine.id, 100, 300), 5, Some("k"))
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.bid, bid);
    let next = store
        .place_bid(m.bob, &terms(m.machine.id, 100, 300), 2, None)
        .unwrap();
    assert!(next.id > cancelled.id);
    assert!(store.remove_api_key(&[7; 32]).unwrap());
    assert!(!store.remove_api_key(&[7; 32]).unwrap());
    let report = store.audit().unwrap();
    assert_eq!(report.total_balance, Amount::clore(1990));
}

fn plugin_versions_params_and_the_gpu_table_are_stored(backend: &Backend) {
    use gigaspot_market::gpu_ranges::GpuRangeTable;
    use gigaspot_market::params::MarketParams;
    use gigaspot_store::PluginVersionRecord;
    {
        let store = backend.open();
        assert_eq!(store.params().unwrap(), MarketParams::default());
        assert_eq!(store.gpu_table().unwrap(), GpuRangeTable::defaults());
        let record = PluginVersionRecord {
            digest: "sha256:ab".into(),
            name: "price-per-watt".into(),
            version: "0.1.0".into(),
            kind: "strategy".into(),
            config: String::new(),
            installed_at: 5,
            wasm: vec![0, 97, 115, 109],
        };
        store.put_plugin_version(&record).unwrap();
        let params = MarketParams {
            billing_interval_s: 120,
            fee_bps: 300,
            clore_usd: 0.05,
        };
        store.set_params(&params).unwrap();
        for bad in [
            MarketParams {
                billing_interval_s: 5,
                ..params.clone()
            },
            MarketParams {
                fee_bps: 5001,
                ..params.clone()
            },
            MarketParams {
                clore_usd: f64::NAN,
                ..params.clone()
            },
            MarketParams {
                clore_usd: 0.0,
                ..params.clone()
            },
        ] {
            assert!(
                matches!(store.set_params(&bad), Err(StoreError::Invalid { .. })),
                "{bad:?}"
            );
        }
        let mut table = GpuRangeTable::default();
        table.models.insert(
            "X".into(),
            GpuRangeTable::defaults()
                .models
                .values()
                .next()
                .copied()
                .unwrap(),
        );
        store.set_gpu_table(&table).unwrap();
    }
    let store = backend.open();
    assert_eq!(store.plugin_versions().unwrap()[0].name, "price-per-watt");
    assert_eq!(store.params().unwrap().billing_interval_s, 120);
    // Nothing was cleared yet: the new length numbers the intervals from the start.
    assert_eq!(
        store.interval_clock().unwrap(),
        gigaspot_market::interval_clock::IntervalClock::uniform(120)
    );
    assert_eq!(store.gpu_table().unwrap().models.len(), 1);
    assert!(store.remove_plugin_version("sha256:ab").unwrap());
    assert!(!store.remove_plugin_version("sha256:ab").unwrap());
    assert!(store.plugin_versions().unwrap().is_empty());
}

fn concurrent_keyed_bids_create_each_bid_once(backend: &Backend) {
    // Eight clients retry the same twenty keyed requests at once: each key makes one bid,
    // every answer for a key is that bid, and the rest are marked as replays.
    let store = backend.open();
    let m = market(&*store);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                (0..20)
                    .map(|k| {
                        let placed = store
                            .place_bid_keyed(
                                m.alice,
                                &terms(m.machine.id, 100 + k, 300),
                                1,
                                Some(&format!("key-{k}")),
                            )
                            .unwrap();
                        (k, placed)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let answers: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let bids = store.bids_of(m.alice).unwrap();
    assert_eq!(bids.len(), 20);
    for (k, placed) in &answers {
        let bid = bids
            .iter()
            .find(|b| b.price_per_day == Amount::clore(100 + k))
            .unwrap();
        assert_eq!(&placed.bid, bid);
    }
    assert_eq!(answers.iter().filter(|(_, p)| !p.replayed).count(), 20);
}

fn everything_survives_a_reopen(backend: &Backend) {
    let (m, bid) = {
        let store = backend.open();
        let m = market(&*store);
        store.add_api_key(m.alice, [7; 32]).unwrap();
        let bid = store
            .place_bid(m.alice, &terms(m.machine.id, 100, 300), 1, Some("k"))
            .unwrap();
        (m, bid)
    };
    let store = backend.open();
    assert_eq!(store.bid(bid.id).unwrap(), Some(bid.clone()));
    // The books a tick clears from are rebuilt by the new process: the machine's active
    // bid, and its owner's sum of active prices.
    let market_now = store.tick_snapshot().unwrap();
    let book: Vec<_> = market_now.bids[&m.machine.id]
        .iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(book, vec![bid.id]);
    assert_eq!(
        market_now.active_price_sums.get(&m.alice).copied(),
        Some(u128::from(bid.price_per_day.0))
    );
    assert_eq!(store.account_by_key(&[7; 32]).unwrap(), Some(m.alice));
    assert_eq!(store.account_by_key(&[8; 32]).unwrap(), None);
    assert_eq!(store.balance(m.bob).unwrap(), Amount::clore(1000));
    assert!(store.machine(m.machine.id).unwrap().unwrap().live.online);
    assert_eq!(
        store.account(m.alice).unwrap().unwrap().roles,
        vec![Role::Client]
    );
    // The id counter survived too: new objects never reuse ids.
    let next = store
        .place_bid(m.bob, &terms(m.machine.id, 100, 300), 2, None)
        .unwrap();
    assert!(next.id > bid.id);
    store.audit().unwrap();
}

fn pending_withdrawals_survive_a_restart_and_cannot_be_spent_twice(backend: &Backend) {
    use gigaspot_market::withdrawal::{Settlement, WithdrawalState};
    let (m, id) = {
        let store = backend.open();
        let m = market(&*store);
        // Two racing requests for the whole balance: exactly one is accepted.
        let racers: Vec<_> = (0..2)
            .map(|i| {
                let store = store.clone();
                std::thread::spawn(move || {
                    store.request_withdrawal(
                        m.alice,
                        Amount::clore(1000),
                        "wallet",
                        Some(&format!("race-{i}")),
                        5,
                    )
                })
            })
            .collect();
        let results: Vec<_> = racers.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "{results:?}"
        );
        let (w, _) = results.into_iter().find_map(Result::ok).unwrap();
        // Nothing left to bid with.
        assert!(
            store
                .place_bid(m.alice, &terms(m.machine.id, 100, 300), 6, None)
                .is_err()
        );
        (m, w.id)
    };
    // A new process sees the same pending withdrawal, balances and audit.
    let store = backend.open();
    let pending = store.withdrawal(id).unwrap().unwrap();
    assert_eq!(pending.state, WithdrawalState::Pending);
    assert_eq!(store.balance(m.alice).unwrap(), Amount::ZERO);
    assert_eq!(
        store.balance(store.pending_withdrawals_account()).unwrap(),
        Amount::clore(1000)
    );
    store.audit().unwrap();
    // A client retrying after a timeout gets the same request back; the key cannot be
    // reused for another amount.
    let (again, replayed) = store
        .request_withdrawal(m.alice, Amount::clore(1000), "wallet", Some("race-0"), 7)
        .or_else(|_| {
            store.request_withdrawal(m.alice, Amount::clore(1000), "wallet", Some("race-1"), 7)
        })
        .unwrap();
    assert!(replayed);
    assert_eq!(again.id, id);
    let key = if store
        .request_withdrawal(m.alice, Amount::clore(1000), "wallet", Some("race-0"), 8)
        .is_ok()
    {
        "race-0"
    } else {
        "race-1"
    };
    assert!(
        store
            .request_withdrawal(m.alice, Amount::clore(1), "wallet", Some(key), 8)
            .is_err()
    );
    // The operator settles it after the restart; it cannot be settled twice.
    let rejected = store
        .settle_withdrawal(
            id,
            Settlement::Rejected {
                reason: "test".into(),
            },
            9,
        )
        .unwrap();
    assert!(matches!(rejected.state, WithdrawalState::Rejected { .. }));
    assert_eq!(store.balance(m.alice).unwrap(), Amount::clore(1000));
    assert!(
        store
            .settle_withdrawal(
                id,
                Settlement::Paid {
                    reference: "x".into()
                },
                10
            )
            .is_err()
    );
    store.audit().unwrap();
}

/// The audit reads the transfers and the balances separately: it must see one state,
/// or a deposit landing between the reads makes a healthy ledger look broken (which would
/// stop billing).
fn an_audit_while_deposits_are_written_sees_a_consistent_ledger(backend: &Backend) {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let store = backend.open();
    let m = market(&*store);
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let written = std::sync::Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = [m.alice, m.bob]
        .into_iter()
        .enumerate()
        .map(|(w, account)| {
            let (store, stop, written) = (store.clone(), stop.clone(), written.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) && n < 2_000 {
                    store
                        .deposit(account, Amount::clore(1), &format!("w{w}-{n}"), 10)
                        .unwrap();
                    written.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
            })
        })
        .collect();
    // Audits while the deposits go on (wait until they have started).
    while written.load(Ordering::Relaxed) == 0 {
        std::thread::yield_now();
    }
    let before = written.load(Ordering::Relaxed);
    for _ in 0..40 {
        store.audit().unwrap();
        std::thread::yield_now();
    }
    let during = written.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    writers.into_iter().for_each(|w| w.join().unwrap());
    assert!(during > 0, "no deposit was written while the audits ran");
    let report = store.audit().unwrap();
    assert_eq!(
        report.transfers,
        written.load(Ordering::Relaxed) + 2,
        "every deposit, and the market's two initial ones"
    );
}
