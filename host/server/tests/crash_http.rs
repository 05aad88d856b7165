//! kill -9 under HTTP load loses nothing. The real `gigaspot serve` binary runs a market
//! with 10-second intervals, a machine and its real agent (`gigaspot-agent`, simulated GPU,
//! no containers) that gets the winners served and charged. Four clients place bids (with
//! Idempotency-Keys), edit and cancel them, request withdrawals (with Idempotency-Keys),
//! and the operator credits deposits (idempotent by reference), all at once, while the
//! server is SIGKILLed again and again: at random moments, and just after a clearing has
//! begun. Each time it restarts on the same folder and port, and a client whose request
//! died retries it with the same key. At the end:
//!
//! - every acknowledged write is there with the acknowledged values (an edit whose answer
//!   was lost may or may not have applied; nothing else is uncertain);
//! - nothing is there that no request asked for;
//! - every Idempotency-Key and deposit reference, sent again, returns the original result;
//! - `gigaspot ledger audit` passes: balances equal their transfers, deposits minus
//!   withdrawals equal the balances, and no (machine, interval) is charged twice.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gigaspot_tests::process::{Collected, Served, workspace_binary};
use reqwest::{Client, Method};
use serde_json::{Value, json};

const OPERATOR_KEY: &str = "gs_operator_key_for_crash_tests_0123456789ab";
const KILLS: usize = 12;
/// Of which this many are aimed just after a clearing has begun.
const KILLS_IN_TICKS: usize = 4;
const CLIENTS: usize = 4;

fn serve(data: &Path, bind: &str) -> Served {
    Served::start_on(
        env!("CARGO_BIN_EXE_gigaspot"),
        data,
        bind,
        &[
            ("GIGASPOT_OPERATOR_KEY", OPERATOR_KEY),
            ("GIGASPOT_BILLING_INTERVAL_S", "10"),
            ("GIGASPOT_RATE_LIMIT_PER_MINUTE", "0"),
            ("GIGASPOT_ANONYMOUS_RATE_LIMIT_PER_MINUTE", "0"),
            ("GIGASPOT_LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
        ],
    )
}

/// A small deterministic generator (xorshift), seeded and printed for reruns.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One request as a client sends it: what it is, for the record.
#[derive(Clone, Debug)]
enum Op {
    CreateBid {
        key: String,
        price: u64,
    },
    EditBid {
        bid: u64,
        price: u64,
    },
    CancelBid {
        bid: u64,
    },
    Withdraw {
        key: String,
        amount: u64,
    },
    Deposit {
        reference: String,
        account: u64,
        amount: u64,
    },
}

/// What the clients were told, and what they asked without being told.
#[derive(Default, Debug)]
struct Record {
    /// Idempotency-Key → (bid id, price), acknowledged.
    bids: BTreeMap<String, (u64, u64)>,
    /// Bid → the price of its last acknowledged edit (or creation), and the prices of
    /// edits sent after it whose answer was lost.
    prices: BTreeMap<u64, (u64, BTreeSet<u64>)>,
    /// Bids whose cancellation was acknowledged.
    cancelled: BTreeSet<u64>,
    /// Bids whose cancellation was sent but not answered.
    maybe_cancelled: BTreeSet<u64>,
    /// Idempotency-Key → (withdrawal id, amount in CLORE), acknowledged.
    withdrawals: BTreeMap<String, (u64, u64)>,
    /// Deposit reference → (account, amount), acknowledged.
    deposits: BTreeMap<String, (u64, u64)>,
    /// Requests retried after their first attempt died with the server.
    retried: u64,
    /// Requests answered.
    answered: u64,
}

/// The service as the clients see it: one address, up or not.
struct Service {
    base: String,
    http: Client,
}

impl Service {
    async fn send(
        &self,
        method: Method,
        path: &str,
        key: &str,
        idem: Option<&str>,
        body: Option<Value>,
    ) -> Result<(u16, Value), reqwest::Error> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(Duration::from_secs(10));
        if !key.is_empty() {
            req = req.bearer_auth(key);
        }
        if let Some(idem) = idem {
            req = req.header("Idempotency-Key", idem);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// Waits until the service answers its health route (it is restarted by the test).
    async fn back(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(resp) = self
                .http
                .get(format!("{}/api/v1/health", self.base))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                && resp.status().is_success()
            {
                return;
            }
            assert!(Instant::now() < deadline, "the service did not come back");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Sends `op` until it is answered (retrying the same request, same key, after a crash),
/// and records what the answer acknowledged.
async fn perform(service: &Service, key: &str, op: &Op, record: &Mutex<Record>, machine: u64) {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let sent = match op {
            Op::CreateBid { key: idem, price } => {
                service.send(Method::POST, "/api/v1/bids", key, Some(idem), Some(json!({"machine": machine, "price": price, "image": "registry.example/app:1", "oc": [{"pl": 200}]}))).await
            }
            Op::EditBid { bid, price } => {
                service.send(Method::PATCH, &format!("/api/v1/bids/{bid}"), key, None, Some(json!({"price": price, "oc": [{"pl": 200}]}))).await
            }
            Op::CancelBid { bid } => service.send(Method::DELETE, &format!("/api/v1/bids/{bid}"), key, None, None).await,
            Op::Withdraw { key: idem, amount } => {
                service.send(Method::POST, "/api/v1/withdrawals", key, Some(idem), Some(json!({"amount": amount, "destination": "clore1-crash-test"}))).await
            }
            Op::Deposit { reference, account, amount } => {
                service.send(Method::POST, "/api/v1/deposits", OPERATOR_KEY, None, Some(json!({"account": account, "amount": amount, "reference": reference}))).await
            }
        };
        let (status, body) = match sent {
            Ok(answer) if answer.0 != 503 => answer,
            // The server died with the request in flight (or was stopping): the request
            // may or may not have been applied.
            _ => {
                // Edits and cancels are not retried: their fate stays open.
                let retry = {
                    let mut r = record.lock().unwrap();
                    match op {
                        Op::EditBid { bid, price } => {
                            if let Some(p) = r.prices.get_mut(bid) {
                                p.1.insert(*price);
                            }
                            false
                        }
                        Op::CancelBid { bid } => {
                            r.maybe_cancelled.insert(*bid);
                            false
                        }
                        _ => {
                            r.retried += 1;
                            true
                        }
                    }
                };
                service.back().await;
                if retry {
                    continue;
                }
                return;
            }
        };
        let mut r = record.lock().unwrap();
        r.answered += 1;
        match op {
            Op::CreateBid { key: idem, price } => {
                if status == 422 {
                    // Refused (the balance no longer covers it): nothing was placed.
                    return;
                }
                assert!(
                    status == 201 || (status == 200 && attempts > 1),
                    "{status} {body}"
                );
                let id = body["id"].as_u64().unwrap();
                assert_eq!(body["price"].as_f64(), Some(*price as f64), "{body}");
                r.bids.insert(idem.clone(), (id, *price));
                r.prices.insert(id, (*price, BTreeSet::new()));
            }
            Op::EditBid { bid, price } => {
                if status == 200 {
                    r.prices.insert(*bid, (*price, BTreeSet::new()));
                } else {
                    // Refused (a bid no longer active, a balance short of the price):
                    // nothing changed.
                    assert!((400..500).contains(&status), "{status} {body}");
                }
            }
            Op::CancelBid { bid } => {
                if status == 200 {
                    r.cancelled.insert(*bid);
                } else {
                    assert!((400..500).contains(&status), "{status} {body}");
                }
            }
            Op::Withdraw { key: idem, amount } => {
                if status == 201 || status == 200 {
                    r.withdrawals
                        .insert(idem.clone(), (body["id"].as_u64().unwrap(), *amount));
                } else {
                    assert_eq!(status, 422, "only a short balance refuses: {body}");
                }
            }
            Op::Deposit {
                reference,
                account,
                amount,
            } => {
                assert_eq!(status, 201, "{body}");
                r.deposits.insert(reference.clone(), (*account, *amount));
            }
        }
        return;
    }
}

/// One client's load until `running` turns false.
/// One client: its index, API key and account.
struct Bidder {
    index: usize,
    key: String,
    account: u64,
}

async fn client(
    service: Arc<Service>,
    bidder: Bidder,
    machine: u64,
    record: Arc<Mutex<Record>>,
    running: Arc<AtomicBool>,
    seed: u64,
) {
    let Bidder {
        index,
        key,
        account,
    } = bidder;
    let mut rng = Rng(seed);
    let mut n = 0;
    let mut mine: Vec<u64> = Vec::new();
    while running.load(Ordering::SeqCst) {
        n += 1;
        let op = match rng.below(10) {
            0..=3 => Op::CreateBid {
                key: format!("c{index}-bid-{n}"),
                price: 10 + rng.below(90),
            },
            4 | 5 if !mine.is_empty() => Op::EditBid {
                bid: mine[rng.below(mine.len() as u64) as usize],
                price: 10 + rng.below(90),
            },
            6 if !mine.is_empty() => Op::CancelBid {
                bid: mine.swap_remove(rng.below(mine.len() as u64) as usize),
            },
            7 => Op::Withdraw {
                key: format!("c{index}-wd-{n}"),
                amount: 1 + rng.below(3),
            },
            _ => Op::Deposit {
                reference: format!("c{index}-dep-{n}"),
                account,
                amount: 1 + rng.below(20),
            },
        };
        perform(&service, &key, &op, &record, machine).await;
        if let Op::CreateBid { key: idem, .. } = &op
            && let Some((id, _)) = record.lock().unwrap().bids.get(idem)
        {
            mine.push(*id);
        }
    }
}

/// Whether the log shows a clearing begun and not yet finished.
fn clearings(log: &str) -> (usize, usize) {
    let begun = log.matches("boundary reached, clearing").count();
    let done = log.matches("interval cleared").count() + log.matches("clearing failed").count();
    (begun, done)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_http_load_loses_no_acknowledged_write() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("seed {seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bind = format!("127.0.0.1:{port}");
    let mut served = serve(&data, &bind);
    let service = Arc::new(Service {
        base: served.base.clone(),
        http: Client::new(),
    });

    // A host's machine with its real agent, and funded clients.
    let (_, host) = service
        .send(
            Method::POST,
            "/api/v1/accounts",
            "",
            None,
            Some(json!({"name": "host", "roles": ["host"]})),
        )
        .await
        .unwrap();
    let host = host["api_key"].as_str().unwrap().to_owned();
    let (status, body) = service.send(Method::POST, "/api/v1/machines", &host, None, Some(json!({"gpus": [{"model": "NVIDIA GeForce RTX 4090", "uuid": "GPU-0", "card_min_w": 150, "card_max_w": 600, "ceiling_w": 600}], "energy_price": 0.0}))).await.unwrap();
    assert_eq!(status, 201, "{body}");
    let machine = body["machine"]["id"].as_u64().unwrap();
    let token = body["agent_token"].as_str().unwrap().to_owned();
    let mut agent = Collected::spawn(
        Command::new(workspace_binary("gigaspot-agent"))
            .args([
                "run",
                "--server",
                &service.base,
                "--gpu",
                "simulated:1xRTX4090",
            ])
            .args(["--containers", "none", "--heartbeat-s", "1"])
            .env("GIGASPOT_AGENT_TOKEN", &token),
    );
    let record = Arc::new(Mutex::new(Record::default()));
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let (_, c) = service
            .send(
                Method::POST,
                "/api/v1/accounts",
                "",
                None,
                Some(json!({"name": format!("client{i}"), "roles": ["client"]})),
            )
            .await
            .unwrap();
        let key = c["api_key"].as_str().unwrap().to_owned();
        let account = c["account"]["id"].as_u64().unwrap();
        perform(
            &service,
            &key,
            &Op::Deposit {
                reference: format!("seed-{i}"),
                account,
                amount: 1000,
            },
            &record,
            machine,
        )
        .await;
        clients.push((key, account));
    }

    let running = Arc::new(AtomicBool::new(true));
    let mut tasks = Vec::new();
    for (i, (key, account)) in clients.iter().enumerate() {
        tasks.push(tokio::spawn(client(
            service.clone(),
            Bidder {
                index: i,
                key: key.clone(),
                account: *account,
            },
            machine,
            record.clone(),
            running.clone(),
            seed.wrapping_add(i as u64 * 7919),
        )));
    }

    // The kills: random moments, and some just after a clearing began.
    let mut in_tick = 0;
    let mut aimed = 0;
    for kill in 0..KILLS {
        let aim_at_tick = kill % (KILLS / KILLS_IN_TICKS) == 1;
        if aim_at_tick {
            aimed += 1;
            let (begun, _) = clearings(&served.log());
            let deadline = Instant::now() + Duration::from_secs(25);
            while clearings(&served.log()).0 == begun {
                assert!(
                    Instant::now() < deadline,
                    "no clearing began:\n{}",
                    served.log()
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(300 + rng.below(1700))).await;
        }
        let log = served.kill9();
        let (begun, done) = clearings(&log);
        if begun > done {
            in_tick += 1;
        }
        served = serve(&data, &bind);
    }
    // Load goes on briefly on the last start, then stops.
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.store(false, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let record = std::mem::take(&mut *record.lock().unwrap());
    eprintln!(
        "{KILLS} kills ({aimed} aimed just after a clearing began, {in_tick} landed inside one); {} requests answered, {} retried after a kill; {} bids, {} withdrawals, {} deposits acknowledged",
        record.answered,
        record.retried,
        record.bids.len(),
        record.withdrawals.len(),
        record.deposits.len()
    );
    assert!(record.retried > 0, "no request was cut off by a kill");
    assert!(in_tick > 0, "no kill landed inside a clearing");

    // Every acknowledged bid is there with its acknowledged terms, and nothing else is.
    let mut all_bids = BTreeMap::new();
    for (key, _) in &clients {
        let (status, bids) = service
            .send(Method::GET, "/api/v1/bids", key, None, None)
            .await
            .unwrap();
        assert_eq!(status, 200);
        for b in bids.as_array().unwrap() {
            all_bids.insert(b["id"].as_u64().unwrap(), b.clone());
        }
    }
    let acknowledged: BTreeSet<u64> = record.bids.values().map(|(id, _)| *id).collect();
    let present: BTreeSet<u64> = all_bids.keys().copied().collect();
    let missing: Vec<_> = acknowledged.difference(&present).collect();
    let unasked: Vec<_> = present.difference(&acknowledged).collect();
    assert!(
        missing.is_empty() && unasked.is_empty(),
        "bids acknowledged but missing {missing:?}; bids never acknowledged {unasked:?}"
    );
    for (id, bid) in &all_bids {
        let (acked, maybe) = &record.prices[id];
        let price = bid["price"].as_f64().unwrap() as u64;
        assert!(
            price == *acked || maybe.contains(&price),
            "bid {id}: price {price}, acknowledged {acked}, unanswered edits {maybe:?}"
        );
        let cancelled = bid["state"] == "cancelled";
        if record.cancelled.contains(id) {
            assert!(cancelled, "bid {id} was cancelled: {bid}");
        } else if !record.maybe_cancelled.contains(id) {
            assert!(!cancelled, "bid {id} was never cancelled: {bid}");
        }
    }
    // Every key sent again returns the original result.
    for (key, account) in &clients {
        let prefix = format!("c{}-", clients.iter().position(|(k, _)| k == key).unwrap());
        for (idem, (id, price)) in record.bids.iter().filter(|(k, _)| k.starts_with(&prefix)) {
            let (status, body) = service.send(Method::POST, "/api/v1/bids", key, Some(idem), Some(json!({"machine": machine, "price": price, "image": "registry.example/app:1", "oc": [{"pl": 200}]}))).await.unwrap();
            assert_eq!(
                (status, body["id"].as_u64()),
                (200, Some(*id)),
                "{idem}: {body}"
            );
        }
        let (_, withdrawals) = service
            .send(Method::GET, "/api/v1/withdrawals", key, None, None)
            .await
            .unwrap();
        let listed: BTreeMap<u64, f64> = withdrawals
            .as_array()
            .unwrap()
            .iter()
            .map(|w| (w["id"].as_u64().unwrap(), w["amount"].as_f64().unwrap()))
            .collect();
        let mine: Vec<_> = record
            .withdrawals
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .collect();
        assert_eq!(
            listed.len(),
            mine.len(),
            "withdrawals listed vs acknowledged"
        );
        for (idem, (id, amount)) in mine {
            assert_eq!(listed.get(id), Some(&(*amount as f64)), "withdrawal {id}");
            let (status, body) = service
                .send(
                    Method::POST,
                    "/api/v1/withdrawals",
                    key,
                    Some(idem),
                    Some(json!({"amount": amount, "destination": "clore1-crash-test"})),
                )
                .await
                .unwrap();
            assert_eq!(
                (status, body["id"].as_u64()),
                (200, Some(*id)),
                "{idem}: {body}"
            );
        }
        let _ = account;
    }
    for (reference, (account, amount)) in &record.deposits {
        let (status, body) = service
            .send(
                Method::POST,
                "/api/v1/deposits",
                OPERATOR_KEY,
                None,
                Some(json!({"account": account, "amount": amount, "reference": reference})),
            )
            .await
            .unwrap();
        assert_eq!(status, 201, "{reference}: {body}");
        assert_eq!(
            body["amount"].as_f64(),
            Some(*amount as f64),
            "{reference}: {body}"
        );
    }
    // The deposits in each ledger are exactly the acknowledged ones.
    for (key, account) in &clients {
        let mut deposits = BTreeSet::new();
        let mut before: Option<u64> = None;
        loop {
            let path = match before {
                Some(seq) => format!("/api/v1/ledger?limit=1000&before={seq}"),
                None => "/api/v1/ledger?limit=1000".to_owned(),
            };
            let (status, page) = service
                .send(Method::GET, &path, key, None, None)
                .await
                .unwrap();
            assert_eq!(status, 200, "{page}");
            let page = page.as_array().unwrap();
            for t in page {
                if let Some(reference) = t["id"].as_str().and_then(|id| id.strip_prefix("deposit:"))
                {
                    assert!(
                        deposits.insert(reference.to_owned()),
                        "deposit {reference} booked twice"
                    );
                }
            }
            match page.last() {
                Some(last) => before = last["seq"].as_u64(),
                None => break,
            }
        }
        let acked: BTreeSet<String> = record
            .deposits
            .iter()
            .filter(|(_, (a, _))| a == account)
            .map(|(r, _)| r.clone())
            .collect();
        let missing: Vec<_> = acked.difference(&deposits).collect();
        let unasked: Vec<_> = deposits.difference(&acked).collect();
        assert!(
            missing.is_empty() && unasked.is_empty(),
            "account {account}: acknowledged but missing {missing:?}; never acknowledged {unasked:?}"
        );
    }

    let _ = agent.child.kill();
    let _ = agent.child.wait();
    let (status, log) = served.terminate(Duration::from_secs(20));
    assert!(status.success(), "{log}");
    let audit = Command::new(env!("CARGO_BIN_EXE_gigaspot"))
        .args(["ledger", "audit", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&audit.stdout).into_owned()
        + &String::from_utf8_lossy(&audit.stderr);
    assert!(audit.status.success(), "{text}");
    eprintln!("{text}");
    let charged: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("charged intervals:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        charged > 0,
        "the agent's served intervals were charged: {text}"
    );
}
