//! The agent's NVML backend on this machine, and the simulated backend, from the command
//! line as an operator runs them.

use std::process::Command;

#[test]
fn nvml_without_a_driver_is_a_clear_error_and_a_non_zero_exit() {
    let out = Command::new(env!("CARGO_BIN_EXE_gigaspot-agent"))
        .args(["inventory", "--gpu", "nvml"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if std::path::Path::new("/dev/nvidiactl").exists() {
        // A machine with an NVIDIA driver lists its GPUs instead.
        assert!(out.status.success(), "{stderr}");
        return;
    }
    assert!(!out.status.success());
    assert!(stderr.contains("cannot load NVML"), "{stderr}");
    assert!(
        stderr.contains("--gpu simulated:"),
        "the error says what to do: {stderr}"
    );
}

#[test]
fn the_simulated_backend_lists_its_cards_and_bad_specs_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_gigaspot-agent"))
        .args(["inventory", "--gpu", "simulated:4xRTX4090"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let inventory: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inventory["gpus"].as_array().unwrap().len(), 4);
    assert_eq!(inventory["gpus"][0]["max_power_w"], 600);
    let out = Command::new(env!("CARGO_BIN_EXE_gigaspot-agent"))
        .args(["inventory", "--gpu", "simulated:4xGTX480"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown model"));
}
