//! A Python virtual environment under `target/py-venv` with the project's test tools from
//! PyPI (`tests/python-requirements.txt`, pinned): Prometheus's text parser and
//! Schemathesis. Made once and reused; a lock file keeps concurrent test processes from
//! building it twice.

use std::fs::File;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::repo_root;

/// The venv's `python`, with every requirement installed.
pub fn python() -> &'static PathBuf {
    static READY: OnceLock<PathBuf> = OnceLock::new();
    READY.get_or_init(|| {
        let root = repo_root();
        let venv = root.join("target").join("py-venv");
        let python = venv.join("bin").join("python");
        let requirements = root.join("tests").join("python-requirements.txt");
        let wanted = std::fs::read_to_string(&requirements)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", requirements.display()));
        let stamp = venv.join("installed-requirements.txt");
        std::fs::create_dir_all(root.join("target")).expect("the target folder can be made");
        let lock = File::create(root.join("target").join("py-venv.lock"))
            .expect("the venv lock file can be made");
        lock.lock().expect("the venv lock can be taken");
        if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
            run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
            run(Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--disable-pip-version-check",
                    "-r",
                ])
                .arg(&requirements));
            std::fs::write(&stamp, &wanted).expect("the venv stamp can be written");
        }
        python
    })
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
