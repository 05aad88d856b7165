//! A private Docker daemon per test: its own data root, exec root and socket in a
//! temporary folder, no bridge and no iptables (the sandbox has neither), started from
//! Debian's `docker.io`, which `scripts/test` installs. Tests can stop and restart it.
//!
//! The workload image is built locally (no registry is reachable): a busybox-static
//! rootfs imported with `docker import`, whose `/workload` script behaves by `MODE`:
//! - `work` (default): runs until SIGTERM, then exits 0;
//! - `stubborn`: ignores SIGTERM (only SIGKILL ends it);
//! - `crash`: exits 3 after a second.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The workload image every test daemon holds.
pub const WORKLOAD_IMAGE: &str = "gigaspot-test/workload:1";

const WORKLOAD_SCRIPT: &str = r#"#!/bin/sh
case "$MODE" in
  crash) sleep 1; echo "crashing"; exit 3 ;;
  stubborn) trap '' TERM; while true; do sleep 1; done ;;
  *) trap 'echo "stopping"; exit 0' TERM; while true; do sleep 1 & wait $!; done ;;
esac
"#;

/// A running private dockerd.
pub struct Dockerd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// `unix://` address of its API socket.
    pub socket: String,
}

impl Dockerd {
    /// Starts a daemon and imports [`WORKLOAD_IMAGE`]. Panics with the reason when dockerd
    /// is missing or does not come up: these tests never pass without a real daemon.
    pub fn start() -> Dockerd {
        // Short paths: unix socket paths are limited to 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("gsd")
            .tempdir_in("/tmp")
            .expect("a temporary folder for dockerd");
        let socket = format!("unix://{}", dir.path().join("d.sock").display());
        let mut daemon = Dockerd {
            dir,
            child: None,
            socket,
        };
        daemon.launch();
        daemon.import_workload_image();
        daemon
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn launch(&mut self) {
        let log = std::fs::File::create(self.path("dockerd.log")).expect("dockerd log");
        let child = Command::new("dockerd")
            .args(["--bridge", "none", "--iptables=false", "--ip6tables=false"])
            .arg("--data-root")
            .arg(self.path("data"))
            .arg("--exec-root")
            .arg(self.path("x"))
            .arg("--pidfile")
            .arg(self.path("dockerd.pid"))
            .args(["-H", &self.socket])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start dockerd ({e}); install Debian's docker.io (scripts/test does)")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.docker(&["version"]).status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let log = std::fs::read_to_string(self.path("dockerd.log")).unwrap_or_default();
        panic!("dockerd did not come up within 60 s:\n{log}");
    }

    /// Runs the docker CLI against this daemon.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(["-H", &self.socket])
            .args(args)
            .output()
            .expect("the docker CLI (Debian's docker.io)")
    }

    /// Runs the docker CLI and answers its trimmed standard output; panics on failure.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn import_workload_image(&self) {
        let busybox = ["/usr/bin/busybox", "/bin/busybox"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.exists())
            .expect("busybox (Debian's busybox-static; scripts/test installs it)");
        let root = self.path("rootfs");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
        for applet in ["sh", "sleep", "echo", "cat", "true"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
        let script = root.join("workload");
        std::fs::write(&script, WORKLOAD_SCRIPT).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let tar = self.path("rootfs.tar");
        let status = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(status.success(), "tar of the workload rootfs");
        self.docker_ok(&[
            "import",
            "--change",
            r#"CMD ["/workload"]"#,
            tar.to_str().unwrap(),
            WORKLOAD_IMAGE,
        ]);
    }

    /// Stops the daemon (SIGTERM, as a service manager would); its containers stop too.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the daemon again on the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Ids of all containers, running or not, whose labels include `label` (`k=v`).
    pub fn containers(&self, label: &str) -> Vec<String> {
        self.ids(&["ps", "-aq"], label)
    }

    /// Ids of the running containers whose labels include `label`.
    pub fn running(&self, label: &str) -> Vec<String> {
        self.ids(&["ps", "-q"], label)
    }

    fn ids(&self, ps: &[&str], label: &str) -> Vec<String> {
        let filter = format!("label={label}");
        let mut args = ps.to_vec();
        args.extend(["--no-trunc", "--filter", &filter]);
        self.docker_ok(&args).lines().map(str::to_owned).collect()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if self.child.is_some() {
            let out = self.docker(&["ps", "-aq"]);
            let ids = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids.lines());
                let _ = self.docker(&args);
            }
        }
        self.stop();
    }
}
