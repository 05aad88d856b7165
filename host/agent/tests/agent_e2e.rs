//! The agent end to end with the real server over loopback HTTP: the `gigaspot-agent`
//! binary on a private dockerd (killed with SIGKILL and restarted mid-workload), and the
//! agent loop in-process with simulated GPUs that refuse or fail.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use gigaspot_agent::heartbeat_loop::{self, ServerClient, owner_label};
use gigaspot_agent::no_containers::NoContainers;
use gigaspot_agent::reconciler::{Reconciler, ReconcilerOptions};
use gigaspot_agent::simulated_backend::{Injection, SimulatedGpus};
use gigaspot_tests::dockerd::{Dockerd, WORKLOAD_IMAGE};
use serde_json::{Value, json};
use tokio::sync::watch;

// The server's own test harness: the real server on 127.0.0.1 with a controlled clock.
#[path = "../../server/tests/support/mod.rs"]
mod support;
use support::Market as Server;

impl Server {
    /// A successful call's body.
    async fn ok(&self, method: &str, path: &str, key: Option<&str>, body: Option<Value>) -> Value {
        let (status, body) = self.call(method, path, key, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {body}");
        body
    }

    /// A host's machine with `gpus` RTX 4090s at their full 150–600 W: (machine id,
    /// agent token).
    async fn machine_of(&self, gpus: usize) -> (u64, String) {
        let (_, host) = self.register("host", &["host"]).await;
        let cards: Vec<Value> = (0..gpus)
            .map(|i| json!({"model": "NVIDIA GeForce RTX 4090", "uuid": format!("GPU-{i}"), "card_min_w": 150, "card_max_w": 600, "ceiling_w": 600}))
            .collect();
        let body = self
            .ok(
                "POST",
                "/api/v1/machines",
                Some(&host),
                Some(json!({"gpus": cards, "energy_price": 0.0})),
            )
            .await;
        (
            body["machine"]["id"].as_u64().unwrap(),
            body["agent_token"].as_str().unwrap().to_owned(),
        )
    }

    /// A client with 1,000 CLORE bidding on `machine`: (client key, bid id).
    async fn bid(&self, machine: u64, pl: u32, gpus: usize, env: Value) -> (String, u64) {
        let (_, key) = self.funded_client("client", 1000.0).await;
        let oc: Vec<Value> = (0..gpus).map(|_| json!({"pl": pl})).collect();
        let bid = self
            .ok(
                "POST",
                "/api/v1/bids",
                Some(&key),
                Some(json!({"machine": machine, "price": 100.0, "image": WORKLOAD_IMAGE, "oc": oc, "env": env})),
            )
            .await;
        (key, bid["id"].as_u64().unwrap())
    }

    async fn machine_view(&self, machine: u64) -> Value {
        self.ok("GET", &format!("/api/v1/machines/{machine}"), None, None)
            .await
    }

    /// Polls the machine until `ready` holds (at most 30 s).
    async fn wait_for(&self, machine: u64, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let view = self.machine_view(machine).await;
            if ready(&view) {
                return view;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {view}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn spawn_agent(server: &Server, token: &str, docker: &Dockerd) -> Child {
    Command::new(env!("CARGO_BIN_EXE_gigaspot-agent"))
        .args([
            "run",
            "--server",
            &server.base,
            "--gpu",
            "simulated:2xRTX4090",
        ])
        .args(["--containers", "docker", "--docker-socket", &docker.socket])
        .args(["--network", "none", "--grace-s", "2", "--heartbeat-s", "1"])
        .env("GIGASPOT_AGENT_TOKEN", token)
        .spawn()
        .expect("the agent binary")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_runs_the_winner_survives_sigkill_without_a_duplicate_and_the_interval_is_charged()
 {
    let docker = Dockerd::start();
    let server = Server::start(|_| {}).await;
    let (machine, token) = server.machine_of(2).await;
    let mut agent = spawn_agent(&server, &token, &docker);
    server
        .wait_for(machine, "the agent's first heartbeat", |m| {
            m["online"] == json!(true) && m["working"] == json!(true)
        })
        .await;
    let (client, bid) = server.bid(machine, 300, 2, json!({"MODE": "work"})).await;
    server.tick(60).await;
    let view = server
        .wait_for(machine, "the workload running", |m| {
            m["agent"]["running_bid"] == json!(bid)
        })
        .await;
    assert_eq!(
        view["agent"]["applied_settings"][1]["power_limit_w"],
        json!(300)
    );
    let label = format!("io.gigaspot.owner={}", owner_label(&token));
    let before = docker.running(&label);
    assert_eq!(before.len(), 1);

    // SIGKILL mid-workload: the container runs on; the new agent adopts it.
    agent.kill().unwrap();
    agent.wait().unwrap();
    assert_eq!(docker.running(&label), before);
    let mut agent = spawn_agent(&server, &token, &docker);
    // The restarted agent's simulated GPUs came up at their defaults (450 W): it sets
    // 300 W again, reads it back and adopts the container; a few heartbeats later the
    // same container is still the only one.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let view = server.machine_view(machine).await;
    assert_eq!(view["agent"]["running_bid"], json!(bid), "{view}");
    assert_eq!(
        view["agent"]["applied_settings"][0]["power_limit_w"],
        json!(300)
    );
    assert!(view["agent"]["last_error"].is_null(), "{view}");
    assert_eq!(docker.containers(&label), before, "adopted, not duplicated");

    // The interval was served: it is charged at the next boundary.
    let funded = server.balance(&client).await;
    server.tick(60).await;
    let charged = server.balance(&client).await;
    assert!(charged < funded, "charged {funded} → {charged}");
    agent.kill().unwrap();
    agent.wait().unwrap();
}

/// Runs the agent loop in-process until the returned sender says stop.
fn run_in_process(
    server: &Server,
    token: &str,
    gpus: SimulatedGpus,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let client = ServerClient::new(&server.base, token).unwrap();
    let options = ReconcilerOptions {
        owner: owner_label(token),
        grace: Duration::from_secs(1),
        network: "none".into(),
        pass_gpus: false,
    };
    let (stop_tx, stop) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut reconciler = Reconciler::new(Box::new(gpus), NoContainers::default(), options);
        heartbeat_loop::run(&mut reconciler, &client, Duration::from_millis(200), stop).await;
    });
    (stop_tx, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_injected_nvml_error_starts_nothing_shows_in_the_api_and_is_not_charged() {
    let server = Server::start(|_| {}).await;
    let (machine, token) = server.machine_of(2).await;
    let mut gpus = SimulatedGpus::from_spec("2xRTX4090").unwrap();
    gpus.inject(Injection {
        operation: "set_power_limit",
        gpu: 1,
        times: u32::MAX,
    });
    let (stop, task) = run_in_process(&server, &token, gpus);
    server
        .wait_for(machine, "online", |m| m["working"] == json!(true))
        .await;
    let (client, bid) = server.bid(machine, 300, 2, json!({})).await;
    server.tick(60).await;
    assert_eq!(
        server.machine_view(machine).await["current_bid"],
        json!(bid)
    );
    let view = server
        .wait_for(machine, "the error reported", |m| {
            m["agent"]["last_error"].is_string()
        })
        .await;
    let error = view["agent"]["last_error"].as_str().unwrap();
    assert!(
        error.contains(&format!("bid {bid} not started")) && error.contains("injected error"),
        "{error}"
    );
    assert!(view["agent"]["running_bid"].is_null());
    assert!(view["agent"]["workload"].is_null());
    // The GPU that took its limit was reset with the others.
    assert_eq!(
        view["agent"]["applied_settings"][0]["power_limit_w"],
        json!(450)
    );

    let funded = server.balance(&client).await;
    server.tick(60).await;
    assert_eq!(
        server.balance(&client).await,
        funded,
        "an unserved interval is not charged"
    );
    // The driver's failure is the host's: reported as such, never counted against the
    // bid, which stays in the market (and keeps winning) interval after interval.
    for _ in 0..3 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let decision = server
                .ok(
                    "GET",
                    &format!("/api/v1/bids/{bid}/decision"),
                    Some(&client),
                    None,
                )
                .await;
            if decision["unserved"]["reason"] == json!("driver_error") {
                break;
            }
            assert!(Instant::now() < deadline, "no report: {decision}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server.tick(60).await;
    }
    let shown = server
        .ok("GET", &format!("/api/v1/bids/{bid}"), Some(&client), None)
        .await;
    assert_eq!(shown["state"], json!("active"), "{shown}");
    let view = server.machine_view(machine).await;
    assert_eq!(view["current_bid"], json!(bid));
    assert_eq!(server.balance(&client).await, funded, "never charged");
    // It lowers the machine's reliability instead: nothing it was assigned was served.
    assert_eq!(view["reliability"], json!(0.0), "{view}");
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_limit_outside_the_cards_range_is_refused_before_anything_changes() {
    let server = Server::start(|_| {}).await;
    let (machine, token) = server.machine_of(1).await;
    // The machine first runs RTX 4090s (150–600 W): a 500 W bid is admitted and wins.
    let (stop, task) = run_in_process(
        &server,
        &token,
        SimulatedGpus::from_spec("1xRTX4090").unwrap(),
    );
    server
        .wait_for(machine, "online", |m| m["working"] == json!(true))
        .await;
    let (client, bid) = server.bid(machine, 500, 1, json!({})).await;
    server.tick(60).await;
    server
        .wait_for(machine, "the 500 W workload", |m| {
            m["agent"]["running_bid"] == json!(bid)
        })
        .await;
    stop.send(true).unwrap();
    task.await.unwrap();

    // The host swaps in an RTX 3090 (100–400 W). Within the interval that bid still holds
    // the machine, and the agent refuses its 500 W before touching the card.
    let (stop, task) = run_in_process(
        &server,
        &token,
        SimulatedGpus::from_spec("1xRTX3090").unwrap(),
    );
    let view = server
        .wait_for(machine, "the refusal reported", |m| {
            m["agent"]["last_error"].is_string()
        })
        .await;
    let error = view["agent"]["last_error"].as_str().unwrap();
    assert!(
        error.contains("power limit (W) 500 is outside the card's range [100, 400]"),
        "{error}"
    );
    assert_eq!(
        view["agent"]["applied_settings"][0]["power_limit_w"],
        json!(350),
        "the card kept its default"
    );
    assert!(view["agent"]["running_bid"].is_null());
    assert_eq!(
        view["gpus"][0]["card_max_w"],
        json!(400),
        "the inventory corrected the card"
    );

    // The first interval was served and is charged; from the next one the bid no longer
    // fits the card and the machine idles.
    let funded = server.balance(&client).await;
    server.tick(60).await;
    let after_first = server.balance(&client).await;
    assert!(after_first < funded);
    let decision = server
        .ok(
            "GET",
            &format!("/api/v1/machines/{machine}/decision"),
            Some(&client),
            None,
        )
        .await;
    assert!(decision["winner"].is_null(), "{decision}");
    server.tick(60).await;
    assert_eq!(
        server.balance(&client).await,
        after_first,
        "nothing charged while refused"
    );
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_winner_whose_image_does_not_exist_loses_the_machine_and_is_never_charged() {
    let docker = Dockerd::start();
    let server = Server::start(|c| c.suspend_after_failed_intervals = 2).await;
    let (machine, token) = server.machine_of(2).await;
    let mut agent = spawn_agent(&server, &token, &docker);
    server
        .wait_for(machine, "the agent's first heartbeat", |m| {
            m["online"] == json!(true) && m["working"] == json!(true)
        })
        .await;
    // The better bid names an image no registry has (this machine reaches none).
    let (_, broken_key) = server.funded_client("broken", 1000.0).await;
    let oc = json!([{"pl": 300}, {"pl": 300}]);
    let broken = server
        .ok(
            "POST",
            "/api/v1/bids",
            Some(&broken_key),
            Some(json!({"machine": machine, "price": 200.0, "image": "registry.invalid/no-such-image:1", "oc": oc})),
        )
        .await["id"]
        .as_u64()
        .unwrap();
    let (_, next_best) = server.bid(machine, 300, 2, json!({})).await;
    // Two intervals won and not served by the bid's own fault.
    for round in 1..=2 {
        server.tick(60).await;
        assert_eq!(
            server.machine_view(machine).await["current_bid"],
            json!(broken)
        );
        // The agent reports why at its next heartbeats: the image cannot be pulled.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let decision = server
                .ok(
                    "GET",
                    &format!("/api/v1/bids/{broken}/decision"),
                    Some(&broken_key),
                    None,
                )
                .await;
            if decision["unserved"]["reason"] == json!("image_unavailable") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: no unserved report: {decision}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // The boundary after the second one suspends it: the next-best bid wins and runs.
    server.tick(60).await;
    let view = server
        .wait_for(machine, "the next-best bid running", |m| {
            m["agent"]["running_bid"] == json!(next_best)
        })
        .await;
    assert_eq!(view["current_bid"], json!(next_best));
    let bid = server
        .ok(
            "GET",
            &format!("/api/v1/bids/{broken}"),
            Some(&broken_key),
            None,
        )
        .await;
    assert_eq!(bid["state"], json!("suspended"), "{bid}");
    assert!(
        bid["suspension"].as_str().unwrap().contains("image"),
        "{bid}"
    );
    // Shown as such to its owner on /v1 and in the order book, and never charged.
    let orders = server
        .http
        .get(format!("{}/v1/my_orders", server.base))
        .header("auth", &broken_key)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(
        orders["orders"][0]["status"],
        json!("suspended"),
        "{orders}"
    );
    assert_eq!(orders["orders"][0]["active"], json!(false));
    let book = server
        .ok(
            "GET",
            &format!("/api/v1/machines/{machine}/book"),
            None,
            None,
        )
        .await;
    let entry = book["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["bid"] == json!(broken))
        .unwrap()
        .clone();
    assert_eq!(entry["status"], json!("suspended"), "{book}");
    assert_eq!(server.balance(&broken_key).await, 1000.0);
    // The host did nothing wrong: its reliability is untouched.
    assert_eq!(view["reliability"], json!(1.0));
    agent.kill().unwrap();
    agent.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_reports_its_host_and_which_settings_it_read_back() {
    let server = Server::start(|_| {}).await;
    let (machine, token) = server.machine_of(1).await;
    let (stop, task) = run_in_process(
        &server,
        &token,
        SimulatedGpus::from_spec("1xRTX4090").unwrap(),
    );
    let view = server
        .wait_for(machine, "the host's inventory", |m| {
            m["working"] == json!(true) && m["threads"].as_u64().unwrap_or(0) > 0
        })
        .await;
    // CPU, cores, threads and memory from /proc; CUDA from the (simulated) driver.
    assert!(view["cores"].as_u64().unwrap() >= 1, "{view}");
    assert!(view["ram_gib"].as_u64().unwrap() >= 1, "{view}");
    assert!(!view["cpu"].as_str().unwrap().is_empty(), "{view}");
    assert!(!view["cuda"].as_str().unwrap().is_empty(), "{view}");
    // A bid with a locked core clock and a core offset: both read back and confirmed.
    let (_, key) = server.funded_client("clocks", 1000.0).await;
    let bid = server
        .ok(
            "POST",
            "/api/v1/bids",
            Some(&key),
            Some(
                json!({"machine": machine, "price": 100.0, "image": "registry.example/a:1",
                "oc": [{"pl": 300, "core_lock": 2000, "core_offset": 100}]}),
            ),
        )
        .await["id"]
        .as_u64()
        .unwrap();
    server.tick(60).await;
    let view = server
        .wait_for(machine, "the settings verified", |m| {
            m["agent"]["running_bid"] == json!(bid)
                && m["agent"]["verification"]
                    .as_array()
                    .is_some_and(|v| !v.is_empty())
        })
        .await;
    let check = &view["agent"]["verification"][0];
    assert_eq!(check["power_limit"], json!("verified"), "{view}");
    assert_eq!(check["core_lock"], json!("verified"), "{view}");
    assert_eq!(check["core_offset"], json!("verified"), "{view}");
    assert_eq!(check["mem_lock"], json!("not_requested"), "{view}");
    assert_eq!(check["mem_offset"], json!("not_requested"), "{view}");
    // The snapshot tells what the agent knows.
    let gs = server
        .http
        .get(format!("{}/v1/get_gigaspot", server.base))
        .header("auth", &key)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let snapshot: Value = server
        .http
        .get(gs["v1_snapshot_url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = &snapshot[machine.to_string()];
    assert_eq!(entry["cores"], view["cores"], "{entry}");
    assert_eq!(entry["threads"], view["threads"]);
    assert_eq!(entry["cuda"], view["cuda"]);
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_background_job_runs_while_idle_gives_way_to_a_winner_and_comes_back() {
    let docker = Dockerd::start();
    let server = Server::start(|_| {}).await;
    let (_, host) = server.register("host", &["host"]).await;
    // No explicit ceilings: the bid range follows the background job's 400 W.
    let cards: Vec<Value> = (0..2)
        .map(|i| json!({"model": "NVIDIA GeForce RTX 4090", "uuid": format!("GPU-{i}"), "card_min_w": 150, "card_max_w": 600}))
        .collect();
    let job =
        json!({"image": WORKLOAD_IMAGE, "env": {"MODE": "work"}, "oc": [{"pl": 400}, {"pl": 400}]});
    let body = server
        .ok(
            "POST",
            "/api/v1/machines",
            Some(&host),
            Some(json!({"gpus": cards, "energy_price": 0.0, "background_job": job})),
        )
        .await;
    let machine = body["machine"]["id"].as_u64().unwrap();
    let token = body["agent_token"].as_str().unwrap().to_owned();
    let mut agent = spawn_agent(&server, &token, &docker);
    let label = format!("io.gigaspot.owner={}", owner_label(&token));

    // Idle: the agent runs the host's job with its power limit applied and read back.
    let view = server
        .wait_for(machine, "the background job running", |m| {
            m["activity"] == json!("background")
                && m["agent"]["background"]["applied"] == json!(true)
        })
        .await;
    assert_eq!(view["agent"]["running_bid"], Value::Null);
    assert_eq!(
        view["agent"]["applied_settings"][1]["power_limit_w"],
        json!(400)
    );
    assert_eq!(
        view["agent"]["background"]["revision"],
        view["background_job"]["revision"]
    );
    let background = docker.running(&label);
    assert_eq!(background.len(), 1);

    // A bid wins: the background job stops, the bid runs with its own limits.
    let (client, bid) = server.bid(machine, 300, 2, json!({"MODE": "work"})).await;
    server.tick(60).await;
    let view = server
        .wait_for(machine, "the winner running", |m| {
            m["agent"]["running_bid"] == json!(bid)
        })
        .await;
    assert_eq!(view["activity"], json!("bid"));
    assert_eq!(view["agent"]["background"], Value::Null);
    assert_eq!(
        view["agent"]["applied_settings"][0]["power_limit_w"],
        json!(300)
    );
    let running = docker.running(&label);
    assert_eq!(running.len(), 1);
    assert_ne!(running, background, "the background container was replaced");
    assert_eq!(docker.containers(&label).len(), 1, "and removed");

    // The client cancels; at the next boundary the machine is idle: the job comes back.
    server
        .ok(
            "DELETE",
            &format!("/api/v1/bids/{bid}"),
            Some(&client),
            None,
        )
        .await;
    server.tick(60).await;
    server
        .wait_for(machine, "the background job back", |m| {
            m["activity"] == json!("background")
                && m["agent"]["background"]["applied"] == json!(true)
                && m["agent"]["applied_settings"][0]["power_limit_w"] == json!(400)
        })
        .await;
    let back = docker.running(&label);
    assert_eq!(back.len(), 1);
    assert_eq!(docker.containers(&label).len(), 1);

    // SIGKILL the agent: the job runs on and the new agent adopts it.
    agent.kill().unwrap();
    agent.wait().unwrap();
    let mut agent = spawn_agent(&server, &token, &docker);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let view = server.machine_view(machine).await;
    assert_eq!(view["activity"], json!("background"), "{view}");
    assert_eq!(
        view["agent"]["background"]["applied"],
        json!(true),
        "{view}"
    );
    assert_eq!(docker.containers(&label), back, "adopted, not restarted");

    // Nothing is charged for it.
    let before = server.balance(&client).await;
    server.tick(60).await;
    assert_eq!(server.balance(&client).await, before);
    agent.kill().unwrap();
    agent.wait().unwrap();
}
