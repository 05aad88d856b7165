//! Plugins written in Python (`examples/python-strategy` and projects like it): each is
//! built into a component by its own `build.sh`, once per test process; the script itself
//! skips a build whose sources are unchanged. They share one venv with componentize-py,
//! [`venv`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use crate::{guest_target_dir, repo_root};

/// The Python guests [`crate::guest_path`] knows by name, and their project folders.
pub const PYTHON_GUESTS: [(&str, &str); 1] = [("python-strategy", "examples/python-strategy")];

/// Builds the Python project in `project` (its `build.sh OUT`) into `out`, once per process
/// per output; panics with the script's output when the build fails.
pub fn build(project: &Path, out: &Path) -> PathBuf {
    static BUILT: OnceLock<Mutex<BTreeSet<PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|p| p.into_inner());
    if !built.contains(out) {
        let script = project.join("build.sh");
        let output = Command::new("bash")
            .arg(&script)
            .arg(out)
            .env("GIGASPOT_PY_VENV", venv())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            output.status.success(),
            "{} failed (python3 with venv and pip, and PyPI, are needed):\n{}{}",
            script.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        built.insert(out.to_path_buf());
    }
    out.to_path_buf()
}

/// The venv the Python plugins' builds share (`target/py-plugin/venv`; `scripts/test` uses
/// it too).
pub fn venv() -> PathBuf {
    repo_root().join("target").join("py-plugin").join("venv")
}

/// The built component of the Python guest `name` (one of [`PYTHON_GUESTS`]), if it is one.
pub fn guest_path(name: &str) -> Option<PathBuf> {
    let (_, project) = PYTHON_GUESTS.iter().find(|(guest, _)| *guest == name)?;
    let out = guest_target_dir()
        .join("wasm32-wasip2")
        .join("release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    Some(build(&repo_root().join(project), &out))
}
