//! The agent's NVML backend on this machine, and the simulated backend, from the command
//! line as an operator runs them.

use std::process::Command;

#[test]
fn nvml_without_a_driver_is_a_clear_error_and_a_non_zero_exit() {
    if std::path::Path::new("/dev/nvidiactl").exists() {
        // A machine with an NVIDIA driver lists its GPUs instead (docs/agent.md records
        // such a run).
        return;
    }
    // `run` refuses to start rather than heartbeat without GPU control.
    for args in [
        &["inventory", "--gpu", "nvml"][..],
        &["gpu-check", "--gpu", "nvml"],
        &["run", "--gpu", "nvml", "--containers", "none"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_gigaspot-agent"))
            .args(args)
            .env("GIGASPOT_AGENT_TOKEN", "token")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("cannot load NVML"), "{args:?}: {stderr}");
        assert!(
            stderr.contains("--gpu simulated:"),
            "the error says what to do: {stderr}"
        );
    }
}

#[test]
fn run_refuses_a_missing_token_naming_the_setting() {
    let out = Command::new(env!("CARGO_BIN_EXE_gigaspot-agent"))
        .args([
            "run",
            "--gpu",
            "simulated:1xRTX4090",
            "--containers",
            "none",
        ])
        .env_remove("GIGASPOT_AGENT_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("token: required"));
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
