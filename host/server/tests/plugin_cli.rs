//! `gigaspot plugin check` and `gigaspot plugin bench` run as a user would run them.

use std::process::{Command, Output};

use gigaspot_tests::guest_path;

fn gigaspot(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gigaspot"))
        .args(args)
        .output()
        .expect("gigaspot runs")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn check_describes_a_strategy_and_ranks_sample_bids() {
    let path = guest_path("price-per-watt");
    let out = gigaspot(&["plugin", "check", path.to_str().unwrap(), "--bids", "5"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("world:    strategy"), "{stdout}");
    assert!(
        stdout.contains("contract: gigaspot:plugin@0.3.0\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("name:     price-per-watt 0.1.0"),
        "{stdout}"
    );
    assert!(stdout.contains("digest:   sha256:"), "{stdout}");
    assert!(stdout.contains("winner: bid "), "{stdout}");
    assert!(stdout.contains("wasi:cli/"), "imports are listed: {stdout}");
}

#[test]
fn check_names_an_older_contract_and_runs_it() {
    let path = gigaspot_tests::repo_root().join("tests/fixtures/contract-v0.1.0/net_profit.wasm");
    let out = gigaspot(&["plugin", "check", path.to_str().unwrap(), "--bids", "5"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(
            "contract: gigaspot:plugin@0.1.0 (still loads and runs; rebuild with the SDK for \
             gigaspot:plugin@0.3.0)"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("winner: bid "), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn check_runs_a_validator_with_its_configuration() {
    let path = guest_path("policy-validator");
    let out = gigaspot(&[
        "plugin",
        "check",
        path.to_str().unwrap(),
        "--config",
        "image-deny = *",
        "--bids",
        "4",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("world:    validator"), "{stdout}");
    assert!(stdout.contains("4 bids, 4 rejected"), "{stdout}");
}

#[test]
fn check_fails_with_the_reason_for_bad_plugins() {
    let sockets = guest_path("wants-sockets");
    let out = gigaspot(&["plugin", "check", sockets.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("wasi:sockets/tcp"), "{stderr}");

    let validator = guest_path("policy-validator");
    let out = gigaspot(&[
        "plugin",
        "check",
        validator.to_str().unwrap(),
        "--config",
        "x",
    ]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("refused its configuration"), "{stderr}");

    let out = gigaspot(&["plugin", "check", "/nonexistent/plugin.wasm"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot read /nonexistent/plugin.wasm"),
        "{stderr}"
    );

    let spinner = guest_path("hostile-strategy");
    let out = gigaspot(&[
        "plugin",
        "check",
        spinner.to_str().unwrap(),
        "--config",
        "spin",
    ]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("ran out of fuel"), "{stderr}");
}

#[test]
fn bench_reports_every_size_for_wasm_and_native() {
    let path = guest_path("price-per-watt");
    let out = gigaspot(&[
        "plugin",
        "bench",
        path.to_str().unwrap(),
        "--iterations",
        "20",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for size in ["10", "100", "1000"] {
        for implementation in [
            "wasm price-per-watt",
            "wasm price-per-watt (in a group)",
            "native price-per-watt",
            "in a group ÷ native",
        ] {
            assert!(
                stdout.lines().any(|l| {
                    l.split_whitespace().next() == Some(size) && l.contains(implementation)
                }),
                "no {implementation} row for {size} bids:\n{stdout}"
            );
        }
    }
    assert!(stdout.contains("per bid in a group"), "{stdout}");
}

#[test]
fn check_fails_a_plugin_that_breaks_on_an_edge_case_and_prints_the_input() {
    // This strategy ranks the tidy sample book, but assumes every image has a tag.
    let path = guest_path("hostile-strategy");
    let out = gigaspot(&[
        "plugin",
        "check",
        path.to_str().unwrap(),
        "--config",
        "tag-blind",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("winner: bid "),
        "the sample passes: {stdout}"
    );
    assert!(stdout.contains("ok    a single bid"), "{stdout}");
    assert!(stdout.contains("ok    1,000 bids"), "{stdout}");
    assert!(
        stdout.contains("FAIL  untagged, port-qualified and digest-pinned images"),
        "{stdout}"
    );
    assert!(stdout.contains("first failing input"), "{stdout}");
    assert!(stdout.contains("\"image\": \"ubuntu\""), "{stdout}");
    assert!(stderr.contains("untagged"), "{stderr}");
}

#[test]
fn bench_shows_a_validator_s_fuel_per_call() {
    let path = guest_path("policy-validator");
    let out = gigaspot(&[
        "plugin",
        "bench",
        path.to_str().unwrap(),
        "--config",
        "image-deny = bad/*",
        "--iterations",
        "5",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let row = stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some("100") && l.contains("wasm"))
        .unwrap_or_else(|| panic!("no 100-bid row:\n{stdout}"));
    let fuel = row.split_whitespace().last().unwrap();
    assert!(
        fuel.parse::<u64>().is_ok_and(|f| f > 0),
        "fuel per call in {row:?}"
    );
}

#[test]
fn check_explains_a_panic_once_with_its_message_output_and_backtrace() {
    let path = guest_path("hostile-strategy");
    let out = gigaspot(&[
        "plugin",
        "check",
        path.to_str().unwrap(),
        "--config",
        "panic",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success());
    // The one-line cause is the plugin's own panic message, not an undefined import.
    assert!(
        stderr.contains("plugin panicked at hostile-strategy/src/lib.rs:")
            && stderr.contains(": deliberate panic"),
        "{stderr}"
    );
    assert!(!stderr.contains("wasi:cli/environment"), "{stderr}");
    assert!(
        !stderr.contains("backtrace"),
        "the error line stays one line: {stderr}"
    );
    // The guest's report and the wasm backtrace are printed exactly once.
    assert_eq!(stdout.matches("wasm backtrace:").count(), 1, "{stdout}");
    assert_eq!(stdout.matches("!rank").count(), 1, "{stdout}");
    assert_eq!(stdout.matches("| deliberate panic").count(), 1, "{stdout}");
    assert!(!stdout.contains("RUST_BACKTRACE"), "{stdout}");

    // A plugin reading its environment in `configure` is not a fault: it sees none.
    let out = gigaspot(&["plugin", "check", path.to_str().unwrap(), "--config", "env"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
}
