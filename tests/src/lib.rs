//! Test support shared by the crates' integration tests: building the guest components
//! (first-party plugins, examples and hostile test guests) from source, and a private
//! Docker daemon for the agent's tests ([`dockerd`]).
//!
//! Components are built with the stable toolchain's `wasm32-wasip2` target into
//! `target/guests`, once per test process. A build failure panics with cargo's output:
//! a test that needs a component never runs without it.

pub mod dockerd;
pub mod postgres;
pub mod process;
pub mod python;
pub mod python_plugins;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The guest workspaces, relative to the repository root.
const GUEST_WORKSPACES: [&str; 3] = ["plugins", "examples", "tests/guests"];

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives one level below the repository root")
        .to_path_buf()
}

/// Where the guest builds put their components.
pub(crate) fn guest_target_dir() -> PathBuf {
    repo_root().join("target").join("guests")
}

/// Builds every guest workspace once per process and returns the folder of the `.wasm`
/// files.
pub fn guest_dir() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        for workspace in GUEST_WORKSPACES {
            let manifest = repo_root().join(workspace).join("Cargo.toml");
            let output = Command::new(&cargo)
                .args([
                    "build",
                    "--release",
                    "--target",
                    "wasm32-wasip2",
                    "--manifest-path",
                ])
                .arg(&manifest)
                .env("CARGO_TARGET_DIR", guest_target_dir())
                .output()
                .unwrap_or_else(|e| panic!("cannot run {cargo}: {e}"));
            assert!(
                output.status.success(),
                "building the guest workspace {workspace} failed (is the target installed? \
                 `rustup target add wasm32-wasip2`):\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        guest_target_dir().join("wasm32-wasip2").join("release")
    })
}

/// The path of the built component of crate `name` (e.g. `price-per-watt`), or of the
/// Python guest `name` (see [`python_plugins::PYTHON_GUESTS`]).
pub fn guest_path(name: &str) -> PathBuf {
    if let Some(path) = python_plugins::guest_path(name) {
        return path;
    }
    let path = guest_dir().join(format!("{}.wasm", name.replace('-', "_")));
    assert!(
        path.is_file(),
        "guest component {} was not built",
        path.display()
    );
    path
}

/// The bytes of the built component of crate `name`.
pub fn guest(name: &str) -> Vec<u8> {
    let path = guest_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}
