//! `gigaspot plugin check`, `bench` and `new` run as a user would run them.

use std::path::Path;
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
    // Each import with the sandbox's answer to it.
    assert!(
        stdout
            .lines()
            .any(|l| l.trim_start().starts_with("wasi:cli/environment@")
                && l.ends_with("no variables, no arguments, no working directory")),
        "{stdout}"
    );
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

/// Runs `command` in `dir`, asserting it succeeds; its stdout and stderr.
fn run_in(dir: &Path, command: &mut Command) -> String {
    let out = command
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "{command:?} failed:\n{stdout}\n{stderr}"
    );
    format!("{stdout}{stderr}")
}

/// Checks the built component at `wasm` and asserts it passes with the right world.
fn passes_check(wasm: &Path, world: &str) {
    let out = gigaspot(&["plugin", "check", wasm.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("world:    {world}\n")), "{stdout}");
    assert!(stdout.contains("\nok: "), "{stdout}");
}

#[test]
fn plugin_new_writes_rust_projects_that_build_test_and_pass_check() {
    // The guests' build fetches the SDK's dependencies; the projects then build offline.
    gigaspot_tests::guest_dir();
    let root = gigaspot_tests::repo_root();
    let sdk = root.join("sdk");
    // Shared across runs, so only the generated crates compile again.
    let target = root.join("target").join("plugin-new");
    let dir = tempfile::tempdir().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for (name, kind) in [("my-strategy", "strategy"), ("my-validator", "validator")] {
        let out = gigaspot(&[
            "plugin",
            "new",
            name,
            &format!("--{kind}"),
            "--dir",
            dir.path().to_str().unwrap(),
            "--sdk-path",
            sdk.to_str().unwrap(),
        ]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(
            stdout.contains(&format!("(Rust {kind}, 4 files)")),
            "{stdout}"
        );
        let project = dir.path().join(name);
        let manifest = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains(&format!(
                "gigaspot-sdk = {{ path = {:?} }}",
                sdk.canonicalize().unwrap()
            )),
            "{manifest}"
        );
        let tests = run_in(
            &project,
            Command::new(&cargo)
                .args(["test", "--offline"])
                .env("CARGO_TARGET_DIR", &target),
        );
        // The project's own unit tests ran, and passed.
        assert!(
            tests
                .lines()
                .any(|l| l.starts_with("test result: ok.") && !l.contains("ok. 0 passed")),
            "{tests}"
        );
        run_in(
            &project,
            Command::new(&cargo)
                .args([
                    "build",
                    "--offline",
                    "--release",
                    "--target",
                    "wasm32-wasip2",
                ])
                .env("CARGO_TARGET_DIR", &target),
        );
        let wasm = target
            .join("wasm32-wasip2")
            .join("release")
            .join(format!("{}.wasm", name.replace('-', "_")));
        passes_check(&wasm, kind);
    }
    // Neither an existing project nor a name that is not kebab-case is written over.
    let again = gigaspot(&[
        "plugin",
        "new",
        "my-strategy",
        "--strategy",
        "--dir",
        dir.path().to_str().unwrap(),
        "--sdk-path",
        sdk.to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    assert!(
        text(&again).1.contains("exists and is not empty"),
        "{:?}",
        text(&again)
    );
    let bad = gigaspot(&[
        "plugin",
        "new",
        "My_Plugin",
        "--validator",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(
        text(&bad).1.contains("is not a plugin name"),
        "{:?}",
        text(&bad)
    );
}

#[test]
fn plugin_new_writes_python_projects_that_build_test_and_pass_check() {
    let dir = tempfile::tempdir().unwrap();
    for (name, kind) in [("py-strategy", "strategy"), ("py-validator", "validator")] {
        let out = gigaspot(&[
            "plugin",
            "new",
            name,
            &format!("--{kind}"),
            "--lang",
            "python",
            "--dir",
            dir.path().to_str().unwrap(),
        ]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        let project = dir.path().join(name);
        // Its own tests, after its build (componentize-py, in the venv the tests share).
        let tests = run_in(
            &project,
            Command::new("bash")
                .arg("test.sh")
                .env("GIGASPOT_PY_VENV", gigaspot_tests::python_plugins::venv()),
        );
        assert!(tests.contains("\nOK"), "{tests}");
        passes_check(&project.join("target").join(format!("{name}.wasm")), kind);
    }
}
