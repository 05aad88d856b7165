//! The sled store: admission at intake, idempotency, money moves, persistence and the
//! refusal of databases it must not touch.

mod support;

use gigaspot_store::{SledStore, Store, StoreError};
use support::{market, terms};

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
