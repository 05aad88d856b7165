//! Several `gigaspot serve` replicas on one PostgreSQL database, as real processes: a
//! simulated agent heartbeats through one replica, clients bid through both, and the
//! replica that clears (the lease holder) is killed with SIGKILL at random moments and
//! started again as a follower. Clearing must resume within the lease's length plus one
//! interval, every acknowledged bid must exist, no (machine, interval) may be charged
//! twice, and the ledger audit must pass on the database. A leader paused past its lease
//! (SIGSTOP … SIGCONT) must not clear after it wakes. A snapshot URL handed out by one
//! replica is served by the other with the same bytes.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gigaspot_tests::postgres::Postgres;
use gigaspot_tests::process::{Collected, Served, workspace_binary};
use serde_json::{Value, json};

const OPERATOR_KEY: &str = "failover-operator-key-0123456789abcdef";
const INTERVAL_S: u64 = 10;
const LEASE_TTL_S: u64 = 3;
const KILLS: usize = 3;

struct Replica {
    data: tempfile::TempDir,
    bind: String,
    served: Option<Served>,
}

impl Replica {
    fn new() -> Replica {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Replica {
            data: tempfile::tempdir().unwrap(),
            bind: format!("127.0.0.1:{port}"),
            served: None,
        }
    }

    fn start(&mut self, url: &str) {
        self.served = Some(Served::start_on(
            env!("CARGO_BIN_EXE_gigaspot"),
            self.data.path(),
            &self.bind,
            &[
                ("GIGASPOT_DATABASE_URL", url),
                ("GIGASPOT_OPERATOR_KEY", OPERATOR_KEY),
                ("GIGASPOT_BILLING_INTERVAL_S", "10"),
                ("GIGASPOT_LEASE_TTL_S", "3"),
                ("GIGASPOT_RATE_LIMIT_PER_MINUTE", "0"),
                ("GIGASPOT_ANONYMOUS_RATE_LIMIT_PER_MINUTE", "0"),
                ("RUST_LOG", "info"),
            ],
        ));
    }

    fn base(&self) -> String {
        format!("http://{}", self.bind)
    }

    fn pid(&self) -> Option<u32> {
        self.served.as_ref().map(|s| s.process.child.id())
    }

    fn signal(&self, name: &str) {
        let pid = self.pid().expect("running").to_string();
        assert!(
            Command::new("kill")
                .args([&format!("-{name}"), &pid])
                .status()
                .unwrap()
                .success()
        );
    }
}

/// The database's view: which process holds the lease, how far clearing went.
struct Db<'a> {
    server: &'a Postgres,
    name: String,
}

impl Db<'_> {
    fn one(&self, sql: &str) -> String {
        self.server.psql(&self.name, sql).unwrap()
    }

    /// The pid in the lease holder's name (`host-pid-random`).
    fn leader_pid(&self) -> Option<u32> {
        let holder = self.one("SELECT holder FROM clearer_lease");
        holder.rsplit('-').nth(1).and_then(|p| p.parse().ok())
    }

    fn cleared(&self) -> i64 {
        self.one("SELECT COALESCE(MAX(interval_no), 0) FROM assignments")
            .parse()
            .unwrap()
    }
}

/// Polls `check` every 100 ms until it holds or `bound` passes; how long it took.
fn within(bound: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < bound, "{what}: not within {bound:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    started.elapsed()
}

async fn post(http: &reqwest::Client, url: &str, key: &str, body: Value) -> (u16, Value) {
    let mut request = http.post(url).json(&body);
    if !key.is_empty() {
        request = request.bearer_auth(key);
    }
    let resp = request.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_fail_over_without_losing_or_double_charging_anything() {
    let server = Postgres::shared();
    let url = server.fresh_database();
    let db = Db {
        server,
        name: url.rsplit('/').next().unwrap().to_owned(),
    };
    let mut replicas = [Replica::new(), Replica::new()];
    for r in &mut replicas {
        r.start(&url);
    }
    let (a, b) = (replicas[0].base(), replicas[1].base());
    let http = reqwest::Client::new();

    // A host's machine (through A) whose agent heartbeats through B; two funded clients.
    let (_, host) = post(
        &http,
        &format!("{a}/api/v1/accounts"),
        "",
        json!({"name": "host", "roles": ["host"]}),
    )
    .await;
    let host_key = host["api_key"].as_str().expect("a host account").to_owned();
    let (status, machine) = post(&http, &format!("{a}/api/v1/machines"), &host_key, json!({"gpus": [{"model": "NVIDIA GeForce RTX 4090", "uuid": "GPU-0", "card_min_w": 150, "card_max_w": 600, "ceiling_w": 600}], "energy_price": 0.0})).await;
    assert_eq!(status, 201, "{machine}");
    let machine_id = machine["machine"]["id"].as_u64().unwrap();
    let mut agent = Collected::spawn(
        Command::new(workspace_binary("gigaspot-agent"))
            .args(["run", "--server", &b, "--gpu", "simulated:1xRTX4090"])
            .args(["--containers", "none", "--heartbeat-s", "1"])
            .env(
                "GIGASPOT_AGENT_TOKEN",
                machine["agent_token"].as_str().unwrap(),
            ),
    );
    let mut clients = Vec::new();
    for (i, base) in [&a, &b].into_iter().enumerate() {
        let (_, c) = post(
            &http,
            &format!("{base}/api/v1/accounts"),
            "",
            json!({"name": format!("client{i}"), "roles": ["client"]}),
        )
        .await;
        let account = c["account"]["id"].as_u64().unwrap();
        let (status, _) = post(
            &http,
            &format!("{base}/api/v1/deposits"),
            OPERATOR_KEY,
            json!({"account": account, "amount": 100000.0, "reference": format!("seed-{i}")}),
        )
        .await;
        assert_eq!(status, 201);
        clients.push(c["api_key"].as_str().unwrap().to_owned());
    }

    // A snapshot URL handed out by one replica is served by the other, byte for byte.
    let reply: Value = http
        .get(format!("{a}/v1/get_gigaspot"))
        .header("auth", &clients[0])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let snapshot = reply["v1_snapshot_url"].as_str().unwrap().to_owned();
    let path = snapshot.strip_prefix(&a).expect("the URL names replica A");
    let mut bodies = Vec::new();
    for base in [&a, &b] {
        let resp = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{base}{path}");
        bodies.push(resp.bytes().await.unwrap());
    }
    assert_eq!(bodies[0], bodies[1]);
    assert!(bodies[0].len() > 2);

    // Clients bid through both replicas until the end; what was acknowledged is kept.
    let bidding = Arc::new(AtomicBool::new(true));
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let bidder = {
        let (bidding, acknowledged, http) = (bidding.clone(), acknowledged.clone(), http.clone());
        let bases = [a.clone(), b.clone()];
        tokio::spawn(async move {
            let mut n = 0u64;
            while bidding.load(Ordering::Relaxed) {
                n += 1;
                let base = &bases[(n % 2) as usize];
                let key = &clients[(n / 2 % 2) as usize];
                let sent = http
                    .post(format!("{base}/api/v1/bids"))
                    .bearer_auth(key)
                    .header("Idempotency-Key", format!("bid-{n}"))
                    .json(&json!({"machine": machine_id, "price": 10.0 + (n % 50) as f64, "image": "registry.example/app:1", "oc": [{"pl": 200}]}))
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                if let Ok(resp) = sent
                    && resp.status().is_success()
                    && let Ok(body) = resp.json::<Value>().await
                {
                    let id = body["bid"]["id"].as_u64().or(body["id"].as_u64()).unwrap();
                    acknowledged.lock().unwrap().insert(id);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    // The lease runs out, the other replica takes it and clears the next boundary; 2 s
    // for the tick itself and the polling.
    let resume = Duration::from_secs(LEASE_TTL_S + INTERVAL_S + 2);
    tokio::task::block_in_place(|| {
        within(
            Duration::from_secs(3 * INTERVAL_S),
            "a first interval cleared",
            || db.cleared() > 0,
        );
        // SIGKILL the replica that clears, at a random moment, several times; it comes
        // back as a follower on its own port.
        for round in 0..KILLS {
            std::thread::sleep(Duration::from_millis(
                rand::random::<u64>() % (INTERVAL_S * 1000),
            ));
            let leader = db.leader_pid().expect("a lease holder");
            let i = replicas
                .iter()
                .position(|r| r.pid() == Some(leader))
                .expect("the holder is one of the replicas");
            let before = db.cleared();
            let log = replicas[i].served.take().unwrap().kill9();
            let took = within(resume, "clearing resumed after the leader died", || {
                db.cleared() > before
            });
            eprintln!("round {round}: killed replica {i}; clearing resumed after {took:?}");
            assert!(!log.contains("panicked"), "{log}");
            replicas[i].start(&url);
        }
        // Pause the leader past its lease: the other takes over and clears; woken up,
        // the paused one must not clear.
        let leader = db.leader_pid().expect("a lease holder");
        let i = replicas
            .iter()
            .position(|r| r.pid() == Some(leader))
            .unwrap();
        replicas[i].signal("STOP");
        within(resume, "the other replica took the lease", || {
            db.leader_pid() != Some(leader)
        });
        let before = db.cleared();
        within(resume, "the new leader cleared", || db.cleared() > before);
        let seen = replicas[i].served.as_ref().unwrap().log().len();
        replicas[i].signal("CONT");
        let woken_at = db.cleared();
        within(resume, "another interval cleared after the wake-up", || {
            db.cleared() > woken_at
        });
        let after_wake = replicas[i].served.as_ref().unwrap().log()[seen..].to_owned();
        assert!(
            !after_wake
                .lines()
                .any(|l| l.contains("interval cleared") && l.contains("interval: Some(")),
            "the paused replica cleared after waking:\n{after_wake}"
        );
    });
    bidding.store(false, Ordering::Relaxed);
    bidder.await.unwrap();
    for r in &mut replicas {
        let (status, log) = r.served.take().unwrap().terminate(Duration::from_secs(30));
        assert!(status.success(), "{log}");
    }
    let _ = agent.child.kill();
    let _ = agent.child.wait();

    // Every acknowledged bid exists.
    let stored: BTreeSet<u64> = db
        .one("SELECT id FROM bids")
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() > 20, "{} bids", acknowledged.len());
    assert!(acknowledged.is_subset(&stored));
    // Served intervals were charged, none twice, each for an interval that was cleared.
    let charges: u64 = db
        .one("SELECT COUNT(*) FROM transfers WHERE id LIKE 'charge:%'")
        .parse()
        .unwrap();
    assert!(charges > 0, "nothing was charged");
    assert_eq!(
        db.one("SELECT COUNT(*) FROM (SELECT id FROM transfers GROUP BY id HAVING COUNT(*) > 1) d"),
        "0"
    );
    // The ledger audit passes on the database.
    let audit = Command::new(env!("CARGO_BIN_EXE_gigaspot"))
        .args(["ledger", "audit", "--database-url", &url])
        .output()
        .unwrap();
    assert!(
        audit.status.success(),
        "{}{}",
        String::from_utf8_lossy(&audit.stdout),
        String::from_utf8_lossy(&audit.stderr)
    );
}
