//! The SDK carries its own copy of the plugin contract so that it can be used outside this
//! repository; the copy must stay equal to the contract the host implements.

#[test]
fn the_sdk_s_contract_is_the_host_s_contract() {
    let root = gigaspot_tests::repo_root();
    let host = std::fs::read_to_string(root.join("wit/plugin.wit")).unwrap();
    let sdk = std::fs::read_to_string(root.join("sdk/wit/plugin.wit")).unwrap();
    assert!(
        host == sdk,
        "sdk/wit/plugin.wit differs from wit/plugin.wit: copy the contract into the SDK"
    );
}
