//! Kill -9 at random moments: every acknowledged write survives, the ledger audit passes
//! and no interval is charged twice.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use gigaspot_market::ledger::TransferKind;
use gigaspot_store::{SledStore, Store};
use rand::{Rng, SeedableRng};

#[test]
fn twenty_sigkills_lose_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(20);
    let mut total_bids = 0;
    let mut total_ticks = 0;
    for round in 0..20 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_store-crash-writer"))
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (first, acked_once) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.is_empty() {
                    let _ = first.send(());
                }
                lines.push(line);
            }
            lines
        });
        // The kill lands at a random moment of the writing, not during the opening of a
        // store that grows every round (slow on a loaded machine): wait for the first
        // acknowledgement, then for a random while.
        acked_once
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("round {round}: the writer acknowledged nothing in 120 s"));
        std::thread::sleep(Duration::from_millis(rng.random_range(0..450)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let acked = reader.join().unwrap();
        assert!(
            !acked.is_empty(),
            "round {round}: the writer acknowledged nothing"
        );

        let store = SledStore::open(dir.path()).unwrap();
        let transfers = store.transfers().unwrap();
        for line in &acked {
            let parts: Vec<&str> = line.split_whitespace().collect();
            match parts.as_slice() {
                ["bid", id] => {
                    assert!(
                        store.bid(id.parse().unwrap()).unwrap().is_some(),
                        "round {round}: lost {line}"
                    );
                    total_bids += 1;
                }
                ["deposit", reference] => assert!(
                    transfers
                        .iter()
                        .any(|t| t.id == format!("deposit:{reference}")),
                    "round {round}: lost {line}"
                ),
                ["tick", interval] => {
                    let snapshot = store.tick_snapshot().unwrap();
                    assert!(
                        snapshot.cleared_through.unwrap() >= interval.parse().unwrap(),
                        "round {round}: lost {line}"
                    );
                    total_ticks += 1;
                }
                ["served", _, _] => {}
                _ => panic!("unexpected line {line:?}"),
            }
        }
        let audit = store
            .audit()
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        let charges = transfers
            .iter()
            .filter(|t| t.kind == TransferKind::Charge)
            .count();
        assert_eq!(
            audit.charged_intervals, charges,
            "no interval charged twice"
        );
    }
    assert!(
        total_bids > 100 && total_ticks > 20,
        "the writer did real work: {total_bids} bids, {total_ticks} ticks"
    );
    let store = SledStore::open(dir.path()).unwrap();
    assert!(
        store.audit().unwrap().charged_intervals > 0,
        "served intervals were charged"
    );
}
