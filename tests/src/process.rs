//! Real binaries started by the tests: a child process whose stderr is collected as it
//! runs, and `gigaspot serve` started on a data folder and found at the address it prints.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A child process with its stderr collected into a string by a thread.
pub struct Collected {
    /// The process.
    pub child: Child,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Collected {
    /// Spawns `command` with stderr piped into the collected log (stdout is left as the
    /// command set it).
    pub fn spawn(command: &mut Command) -> Collected {
        let mut child = command
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        let stderr = child.stderr.take().expect("stderr is piped");
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap_or_else(|p| p.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        Collected {
            child,
            log,
            reader: Some(reader),
        }
    }

    /// Once the process has exited: waits until the log holds everything it wrote.
    fn drain(&mut self) {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }

    /// What the process wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits at most `bound` for the exit (killing the process after it), then lets the log
    /// reader drain what the process wrote last.
    pub fn wait_exit(&mut self, bound: Duration) -> ExitStatus {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.child.try_wait().expect("the child can be waited on") {
                self.drain();
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("no exit within {bound:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A running `gigaspot serve`.
pub struct Served {
    /// The process and its log.
    pub process: Collected,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Served {
    /// Starts the `gigaspot` binary at `bin` serving `data` on a free loopback port, with
    /// `env` added to its environment; returns once it prints its address.
    pub fn start(bin: &str, data: &Path, env: &[(&str, &str)]) -> Served {
        Served::start_on(bin, data, "127.0.0.1:0", env)
    }

    /// As [`Served::start`], listening on `bind` (a restart on the port clients know).
    pub fn start_on(bin: &str, data: &Path, bind: &str, env: &[(&str, &str)]) -> Served {
        let mut command = Command::new(bin);
        command
            .args(["serve", "--bind", bind, "--data-dir"])
            .arg(data)
            .envs(env.iter().copied())
            .stdout(Stdio::piped());
        let mut process = Collected::spawn(&mut command);
        let (tx, rx) = mpsc::channel();
        let stdout = process.child.stdout.take().expect("stdout is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let base = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(base) => base,
            Err(_) => panic!("the server did not start:\n{}", process.log()),
        };
        Served { process, base }
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Sends SIGTERM and waits for the exit, at most `bound`: the status and the whole log.
    pub fn terminate(mut self, bound: Duration) -> (ExitStatus, String) {
        self.signal("TERM");
        let status = self.process.wait_exit(bound);
        (status, self.process.log())
    }

    /// Kills the server with SIGKILL (no chance to flush or close anything) and reaps it.
    pub fn kill9(mut self) -> String {
        self.signal("KILL");
        let _ = self.process.child.wait();
        self.process.drain();
        self.process.log()
    }

    fn signal(&mut self, name: &str) {
        let pid = self.process.child.id().to_string();
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .expect("kill can run");
        assert!(sent.success(), "kill -{name} {pid} failed");
    }
}

/// The path of the workspace binary `name` (e.g. `gigaspot-agent`) beside the running test
/// executable, built first when it is not there (`cargo test --workspace` builds every
/// binary before it runs a test).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executables live in <target>/<profile>/deps");
    let path = dir.join(name);
    if !path.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(&cargo)
            .args(["build", "--bin", name])
            .current_dir(crate::repo_root())
            .status()
            .unwrap_or_else(|e| panic!("cannot run {cargo}: {e}"));
        assert!(status.success(), "building {name} failed");
    }
    path
}
