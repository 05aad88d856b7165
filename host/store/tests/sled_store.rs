//! The sled store: admission at intake, idempotency, money moves, persistence and the
//! refusal of databases it must not touch.

mod support;

use gigaspot_market::account::Role;
use gigaspot_market::ledger::Party;
use gigaspot_market::money::Amount;
use gigaspot_store::{SledStore, Store, StoreError};
use support::{market, terms};

#[test]
fn each_account_pages_through_its_own_ledger_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let m = market(&store);
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
    let paged = |store: &SledStore, account: u64| -> Vec<String> {
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
    assert_eq!(paged(&store, m.alice), alice);
    assert_eq!(paged(&store, m.bob), bob);
    assert!(
        store
            .account_transfers(m.alice, None, 0)
            .unwrap()
            .is_empty()
    );
    drop(store);

    // A store written before the index existed gets it built when opened.
    {
        let db = gigaspot_store::open_waiting_for_lock(dir.path()).unwrap();
        for item in db.scan_prefix(b"axfer/") {
            db.remove(item.unwrap().0).unwrap();
        }
        db.remove(b"meta/account_transfer_index").unwrap();
        db.flush().unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(paged(&store, m.alice), alice);
    store.audit().unwrap();
    drop(store);

    // A missing index entry fails the audit, naming the transfer.
    {
        let db = gigaspot_store::open_waiting_for_lock(dir.path()).unwrap();
        let entry = db.scan_prefix(b"axfer/").next().unwrap().unwrap().0;
        db.remove(entry).unwrap();
        db.flush().unwrap();
    }
    let err = SledStore::open(dir.path()).unwrap().audit().unwrap_err();
    assert!(err.to_string().contains("ledger index"), "{err}");
}

#[test]
fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (m, bid) = {
        let store = SledStore::open(dir.path()).unwrap();
        let m = market(&store);
        store.add_api_key(m.alice, [7; 32]).unwrap();
        let bid = store
            .place_bid(m.alice, &terms(m.machine.id, 100, 300), 1, Some("k"))
            .unwrap();
        (m, bid)
    };
    let store = SledStore::open(dir.path()).unwrap();
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

#[test]
fn a_newer_schema_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    drop(SledStore::open(dir.path()).unwrap());
    {
        let db = gigaspot_store::open_waiting_for_lock(dir.path()).unwrap();
        db.insert(b"meta/schema", &99u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let err = SledStore::open(dir.path()).err().unwrap();
    assert!(
        matches!(
            err,
            StoreError::NewerSchema {
                found: 99,
                supported: gigaspot_store::SCHEMA_VERSION,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("run a newer gigaspot"));
    let db = gigaspot_store::open_waiting_for_lock(dir.path()).unwrap();
    assert_eq!(
        db.get(b"meta/schema").unwrap().unwrap().as_ref(),
        &99u32.to_be_bytes()
    );
}

#[test]
fn a_database_in_use_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let first = SledStore::open(dir.path()).unwrap();
    let err = SledStore::open(dir.path()).err().unwrap();
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
    drop(first);
    // Once closed, it opens again (waiting for sled's threads to let go of the lock).
    SledStore::open(dir.path()).unwrap();
}

#[test]
fn a_foreign_or_corrupt_database_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = gigaspot_store::open_waiting_for_lock(dir.path()).unwrap();
        db.insert(b"something", b"else").unwrap();
        db.flush().unwrap();
    }
    let err = SledStore::open(dir.path()).err().unwrap();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    let db = gigaspot_store::open_waiting_for_lock(dir.path()).unwrap();
    assert_eq!(db.len(), 1, "nothing was written");
    drop(db);

    // Garbage in place of sled's files.
    let garbage = tempfile::tempdir().unwrap();
    std::fs::write(garbage.path().join("conf"), b"\xff\x00not sled").unwrap();
    std::fs::write(garbage.path().join("db"), vec![0xAB; 4096]).unwrap();
    let err = SledStore::open(garbage.path()).err().unwrap();
    assert!(
        matches!(err, StoreError::Corrupt { .. } | StoreError::Backend(_)),
        "{err}"
    );
    assert_eq!(
        std::fs::read(garbage.path().join("db")).unwrap(),
        vec![0xAB; 4096]
    );
}

#[test]
fn plugin_versions_params_and_the_gpu_table_are_stored() {
    use gigaspot_market::gpu_ranges::GpuRangeTable;
    use gigaspot_market::params::MarketParams;
    use gigaspot_store::PluginVersionRecord;
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path()).unwrap();
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
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.plugin_versions().unwrap()[0].name, "price-per-watt");
    assert_eq!(store.params().unwrap().billing_interval_s, 120);
    assert_eq!(store.gpu_table().unwrap().models.len(), 1);
}

#[test]
fn pending_withdrawals_survive_a_restart_and_cannot_be_spent_twice() {
    use gigaspot_market::withdrawal::{Settlement, WithdrawalState};
    let dir = tempfile::tempdir().unwrap();
    let (m, id) = {
        let store = std::sync::Arc::new(SledStore::open(dir.path()).unwrap());
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
    let store = SledStore::open(dir.path()).unwrap();
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

#[test]
fn concurrent_bids_are_written_in_batches_each_decided_as_if_alone() {
    // 16 threads place bids at once: each key twice (the second is a retry, from another
    // thread), every fifth bid out of range. Batched intake must give each key exactly
    // one bid, refuse exactly the bad ones, hand out distinct consecutive ids, and keep
    // every acknowledged bid across a reopen.
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(SledStore::open(dir.path()).unwrap());
    let m = market(&*store);
    let (threads, per_thread) = (16u64, 60u64);
    let results: Vec<(String, u32, Result<gigaspot_market::bid::Bid, String>)> =
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let store = &store;
                    scope.spawn(move || {
                        (0..per_thread)
                            .map(|n| {
                                // Threads t and t ^ 1 use the same keys: one of each pair
                                // is the retry.
                                let k = (t / 2) * per_thread + n;
                                let pl = if k % 5 == 0 {
                                    999
                                } else {
                                    150 + (k % 200) as u32
                                };
                                let key = format!("key-{k}");
                                let owner = if k % 2 == 0 { m.alice } else { m.bob };
                                let placed = store
                                    .place_bid(owner, &terms(m.machine.id, 10, pl), 1, Some(&key))
                                    .map_err(|e| e.to_string());
                                (key, pl, placed)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
    let mut by_key: std::collections::BTreeMap<String, Vec<_>> = Default::default();
    for (key, pl, placed) in &results {
        by_key
            .entry(key.clone())
            .or_default()
            .push((*pl, placed.clone()));
    }
    let mut ids = Vec::new();
    for (key, answers) in &by_key {
        assert_eq!(answers.len(), 2, "{key}");
        match (&answers[0].1, &answers[1].1) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a, b, "{key}: the retry replays the first bid");
                assert_eq!(a.oc[0].power_limit_w, answers[0].0);
                ids.push(a.id);
            }
            (Err(a), Err(b)) => {
                assert_eq!(answers[0].0, 999, "{key} refused: {a}");
                assert!(
                    a.contains("oc[0].pl") && b.contains("oc[0].pl"),
                    "{a} / {b}"
                );
            }
            other => panic!("{key}: the two answers differ: {other:?}"),
        }
    }
    let accepted = (threads / 2 * per_thread) as usize * 4 / 5;
    assert_eq!(ids.len(), accepted);
    ids.sort();
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "ids are consecutive"
    );
    let stats = store.bid_intake_stats();
    assert_eq!(stats.requests, threads * per_thread);
    assert!(stats.batches < stats.requests, "{stats:?}");
    // Every acknowledged bid is there after a reopen, nothing else.
    store.close().unwrap();
    drop(store);
    let store = SledStore::open(dir.path()).unwrap();
    let mut stored: Vec<u64> = store
        .bids_on(m.machine.id)
        .unwrap()
        .iter()
        .map(|b| b.id)
        .collect();
    stored.sort();
    assert_eq!(stored, ids);
}

/// The audit reads the transfers, the ledger index and the balances in separate scans:
/// it takes the writer lock so that a deposit landing between two scans cannot make a
/// healthy ledger look broken (which would stop billing).
#[test]
fn an_audit_while_deposits_are_written_sees_a_consistent_ledger() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(SledStore::open(dir.path()).unwrap());
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
