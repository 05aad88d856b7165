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
