//! `gigaspot ledger audit` as an operator runs it.

use std::process::Command;

use gigaspot_market::account::Role;
use gigaspot_market::money::Amount;
use gigaspot_store::{SledStore, Store};

fn audit(dir: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gigaspot"))
        .args(["ledger", "audit", "--data"])
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn audit_reports_a_sound_ledger_and_names_a_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    let client = {
        let store = SledStore::open(dir.path()).unwrap();
        let client = store.create_account("c", &[Role::Client]).unwrap().id;
        store.deposit(client, Amount::clore(12), "d1", 0).unwrap();
        client
    };
    let (ok, stdout, stderr) = audit(dir.path());
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("deposits:           12.00000000 CLORE"),
        "{stdout}"
    );

    {
        let db = gigaspot_store::open_waiting_for_lock(dir.path()).unwrap();
        let mut k = b"bal/".to_vec();
        k.extend_from_slice(&client.to_be_bytes());
        db.insert(k, &1u64.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let (ok, _, stderr) = audit(dir.path());
    assert!(!ok);
    assert!(
        stderr.contains(&format!("account {client}: stored balance")),
        "{stderr}"
    );

    let (ok, _, stderr) = audit(std::path::Path::new("/nonexistent/data"));
    assert!(!ok);
    assert!(stderr.contains("is not a data directory"), "{stderr}");
}

fn gigaspot(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gigaspot"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn migrate_copies_a_stopped_market_into_postgresql_once_and_audits_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path()).unwrap();
        let client = store.create_account("c", &[Role::Client]).unwrap().id;
        store.deposit(client, Amount::clore(12), "d1", 0).unwrap();
    }
    let url = gigaspot_tests::postgres::Postgres::shared().fresh_database();
    let data = dir.path().to_str().unwrap();
    let (ok, out) = gigaspot(&["migrate", "--from-sled", data, "--to", &url]);
    assert!(ok, "{out}");
    assert!(
        out.contains("transfers:          1 (audit passed)"),
        "{out}"
    );
    let (ok, out) = gigaspot(&["ledger", "audit", "--database-url", &url]);
    assert!(ok && out.contains("12"), "{out}");
    // A database that holds a market is never written over; a missing folder is named.
    let (ok, out) = gigaspot(&["migrate", "--from-sled", data, "--to", &url]);
    assert!(!ok && out.contains("already holds a market"), "{out}");
    let (ok, out) = gigaspot(&["migrate", "--from-sled", "/nonexistent/x", "--to", &url]);
    assert!(!ok && out.contains("is not a data directory"), "{out}");
}
