//! The plugin contracts: each released version is frozen under `wit/since_vX.Y.Z/`, and
//! the SDK carries its own copy of the newest so that it can be used outside this
//! repository.

use sha2::{Digest, Sha256};

/// The newest contract, the one the SDK builds against.
const NEWEST: &str = "wit/since_v0.3.0/plugin.wit";

#[test]
fn the_sdk_s_contract_is_the_host_s_newest_contract() {
    let root = gigaspot_tests::repo_root();
    let host = std::fs::read_to_string(root.join(NEWEST)).unwrap();
    let sdk = std::fs::read_to_string(root.join("sdk/wit/plugin.wit")).unwrap();
    assert!(
        host == sdk,
        "sdk/wit/plugin.wit differs from {NEWEST}: copy the contract into the SDK"
    );
    assert!(host.contains("package gigaspot:plugin@0.3.0;"));
}

#[test]
fn released_contracts_never_change() {
    // Components built against a released contract keep loading only while its text stays
    // exactly as released: a change belongs in a new version's folder.
    let root = gigaspot_tests::repo_root();
    let frozen = [
        (
            "wit/since_v0.1.0/plugin.wit",
            "95fb68fa3bc6cfe28e71f70f660946f8f56042082d16757944a9521bf099dda9",
        ),
        (
            "wit/since_v0.2.0/plugin.wit",
            "dd9b83a4f236da255d1cf37e47ddf6b191c934ea803609af82062a4fcbfd9cf5",
        ),
    ];
    for (path, sha256) in frozen {
        let text = std::fs::read(root.join(path)).unwrap();
        assert_eq!(
            hex::encode(Sha256::digest(&text)),
            sha256,
            "{path} changed after its release"
        );
    }
}
