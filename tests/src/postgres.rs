//! A private PostgreSQL server per test process: its own `initdb` folder under a temporary
//! directory, listening on a free loopback port (and a Unix socket in that folder), trust
//! authentication for the `gigaspot` superuser it creates. Started from Debian's
//! `postgresql` package, which `scripts/test` installs.
//!
//! PostgreSQL refuses to run as root. As root (CI), the server runs as the `postgres`
//! user the Debian package creates; as anyone else, as that user. Either way it starts
//! through `setpriv`, which asks the kernel to stop it when the test process ends. Each test takes a fresh
//! database of its own with [`Postgres::fresh_database`].

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A running private PostgreSQL server.
pub struct Postgres {
    dir: tempfile::TempDir,
    /// Its loopback port.
    pub port: u16,
    bin: PathBuf,
    pid: Option<u32>,
}

/// The superuser the server is created with.
pub const USER: &str = "gigaspot";

impl Postgres {
    /// The server of this test process, started on first use. Panics with the reason
    /// when PostgreSQL is missing or does not come up: these tests never pass without a
    /// real server.
    pub fn shared() -> &'static Postgres {
        static SERVER: OnceLock<Postgres> = OnceLock::new();
        SERVER.get_or_init(Postgres::start)
    }

    /// Starts a server of its own (stopped when dropped, or when the process ends).
    pub fn start() -> Postgres {
        let bin = bin_dir();
        remove_abandoned();
        let dir = tempfile::Builder::new()
            .prefix("gspg")
            .tempdir_in("/tmp")
            .expect("a temporary folder for PostgreSQL");
        std::fs::write(dir.path().join("owner.pid"), std::process::id().to_string())
            .expect("the owner file");
        let mut server = Postgres {
            dir,
            port: free_port(),
            bin,
            pid: None,
        };
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(server.dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown of the PostgreSQL folder");
        }
        let out = server
            .as_server_user(&server.bin.join("initdb"))
            .args(["-D", &server.data(), "-U", USER, "--auth=trust"])
            .args(["-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run initdb ({e})"));
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        server.launch();
        server
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// `program` as the server's user, stopped (fast shutdown) when the thread that
    /// started it ends.
    fn as_server_user(&self, program: &Path) -> Command {
        let mut c = Command::new("setpriv");
        if is_root() {
            c.args(["--reuid=postgres", "--regid=postgres", "--clear-groups"]);
        }
        c.args(["--pdeathsig", "SIGINT"]).arg(program);
        c
    }

    fn launch(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("postgres.log")).expect("log");
        if is_root() {
            let _ = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(self.dir.path().join("postgres.log"))
                .status();
        }
        let mut command = self.as_server_user(&self.bin.join("postgres"));
        command
            .args(["-D", &self.data(), "-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            .args(["-c", "max_connections=200", "-c", "shared_buffers=64MB"])
            .stdout(Stdio::null())
            .stderr(log);
        // The server lives as long as the process: started from a thread that never
        // ends, since the kernel's parent-death signal follows the starting thread.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let child = command.spawn();
            let ok = child.is_ok();
            let _ = tx.send(child.map(|c| c.id()).map_err(|e| e.to_string()));
            if ok {
                loop {
                    std::thread::park();
                }
            }
        });
        match rx.recv().expect("the starter thread answers") {
            Ok(pid) => self.pid = Some(pid),
            Err(e) => panic!(
                "cannot start postgres ({e}); install Debian's postgresql (scripts/test does)"
            ),
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.psql("postgres", "SELECT 1").is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default();
        panic!("postgres did not come up within 60 s:\n{log}");
    }

    /// Runs one SQL command with `psql` in `database`; its output, or the error text.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER])
            .args([
                "-d",
                database,
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// The URL of a new, empty database on this server.
    pub fn fresh_database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        self.url(&name)
    }

    /// The URL of `database` on this server.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            // SIGINT: PostgreSQL's fast shutdown (ends sessions, then exits).
            let _ = Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline && Path::new(&format!("/proc/{pid}")).exists() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Removes the folders of servers whose test process has ended. The shared server lives
/// in a static, which is never dropped: its server stops with the process (the kernel's
/// parent-death signal), its folder is removed here by the next test process.
fn remove_abandoned() {
    for entry in std::fs::read_dir("/tmp").into_iter().flatten().flatten() {
        let path = entry.path();
        let is_ours = entry.file_name().to_string_lossy().starts_with("gspg");
        let owner = std::fs::read_to_string(path.join("owner.pid")).unwrap_or_default();
        let ended = !owner.is_empty() && !Path::new(&format!("/proc/{}", owner.trim())).exists();
        if is_ours && ended && !path.join("data/postmaster.pid").exists() {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Debian installs the server under `/usr/lib/postgresql/<major>/bin` (the newest wins).
fn bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((major, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).expect(
        "PostgreSQL under /usr/lib/postgresql (Debian's postgresql; scripts/test installs it)",
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
