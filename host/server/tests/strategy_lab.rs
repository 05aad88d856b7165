//! The strategy lab: what would win (quotes and the price to win of a losing bid), the
//! replay of recorded decisions.

mod support;

use std::str::FromStr;

use gigaspot_market::money::Amount;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Market, OPERATOR_KEY};

/// An exact CLORE amount read from a JSON number's text.
fn amount(v: &Value) -> Amount {
    Amount::parse_clore(&v.to_string()).unwrap_or_else(|e| panic!("{v}: {e}"))
}

/// An amount as a JSON number with its exact decimal text.
fn number(a: Amount) -> Value {
    Value::Number(serde_json::Number::from_str(&a.to_string()).unwrap())
}

fn oc(pl: u32) -> Value {
    json!([{"pl": pl}, {"pl": pl}, {"pl": pl}, {"pl": pl}])
}

async fn bid(m: &Market, key: &str, machine: u64, price: Value, pl: u32) -> u64 {
    let (status, body) = m
        .call(
            "POST",
            "/api/v1/bids",
            Some(key),
            Some(json!({"machine": machine, "price": price, "image": "app:1", "oc": oc(pl)})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_u64().unwrap()
}

async fn winner(m: &Market, machine: u64) -> Option<u64> {
    let (status, body) = m
        .call(
            "GET",
            &format!("/api/v1/machines/{machine}/decision"),
            Some(OPERATOR_KEY),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["winner"]["bid"].as_u64()
}

/// With `guest` as the active strategy: the quoted price for a new bid wins the next
/// interval and one base unit less does not (the running bid keeps a tie), and the bid
/// that lost at one unit less is told the same price to win.
async fn quotes_hold_under(guest: &str) {
    let m = Market::start(|_| {}).await;
    let digest = m.install_and_activate(guest, "").await;
    let (_, machine, agent) = m.machine().await;
    let (_, alice) = m.funded_client("alice", 10_000.0).await;
    let (_, bob) = m.funded_client("bob", 10_000.0).await;
    let (_, carol) = m.funded_client("carol", 10_000.0).await;
    let running = bid(&m, &alice, machine, json!(100), 300).await;
    bid(&m, &bob, machine, json!(80), 250).await;
    m.tick(0).await;
    assert_eq!(winner(&m, machine).await, Some(running));
    m.serve(&agent, running).await;

    // Carol asks what 4 × 200 W would need to pay.
    let path = format!(
        "/api/v1/machines/{machine}/quote?oc={}&image=app:1",
        urlencode(&oc(200).to_string())
    );
    let (status, quote) = m.call("GET", &path, Some(&carol), None).await;
    assert_eq!(status, StatusCode::OK, "{quote}");
    assert_eq!(quote["strategy"]["digest"], digest, "{quote}");
    assert_eq!(quote["total_power_limit_w"], 800);
    let price = amount(&quote["price_to_win"]);
    assert!(price >= amount(&quote["floor"]), "{quote}");

    // One base unit less loses: the running bid keeps the machine.
    let less = bid(&m, &carol, machine, number(Amount(price.0 - 1)), 200).await;
    m.tick(60).await;
    assert_eq!(
        winner(&m, machine).await,
        Some(running),
        "at {price} − 1 unit"
    );
    m.serve(&agent, running).await;
    let (_, decision) = m
        .call(
            "GET",
            &format!("/api/v1/bids/{less}/decision"),
            Some(&carol),
            None,
        )
        .await;
    assert_eq!(decision["won"], false, "{decision}");
    assert_eq!(
        amount(&decision["what_would_win"]["price_to_win"]),
        price,
        "the losing bid is told the quoted price: {decision}"
    );
    let calls = decision["what_would_win"]["calls"].as_u64().unwrap();
    assert!(calls > 0 && calls <= 160, "{decision}");
    // The public order book says the same for every losing bid.
    let (_, book) = m
        .call(
            "GET",
            &format!("/api/v1/machines/{machine}/book"),
            None,
            None,
        )
        .await;
    let entries = book["entries"].as_array().unwrap();
    let entry = |id: u64| entries.iter().find(|e| e["bid"] == id).unwrap();
    assert_eq!(
        amount(&entry(less)["what_would_win"]["price_to_win"]),
        price,
        "{book}"
    );
    assert!(
        entry(running)["what_would_win"].is_null(),
        "the winner: {book}"
    );
    assert!(
        entries
            .iter()
            .all(|e| e["status"] == "winner" || !e["what_would_win"].is_null())
    );
    let (status, _) = m
        .call(
            "DELETE",
            &format!("/api/v1/bids/{less}"),
            Some(&carol),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // The quoted price wins.
    let at = bid(&m, &carol, machine, number(price), 200).await;
    m.tick(60).await;
    assert_eq!(winner(&m, machine).await, Some(at), "at the quoted {price}");
    let (_, decision) = m
        .call(
            "GET",
            &format!("/api/v1/bids/{at}/decision"),
            Some(&carol),
            None,
        )
        .await;
    assert_eq!(decision["won"], true);
    assert!(decision["what_would_win"].is_null(), "{decision}");
    m.stop().await;
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quote_wins_under_the_webassembly_price_per_watt_and_one_unit_less_does_not() {
    quotes_hold_under("price-per-watt").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quote_wins_under_the_webassembly_net_profit_and_one_unit_less_does_not() {
    quotes_hold_under("net-profit").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quote_refuses_bad_settings_naming_the_field_and_says_why_nothing_wins() {
    let m = Market::start(|_| {}).await;
    let (_, machine, _) = m.machine().await;
    let (_, carol) = m.funded_client("carol", 100.0).await;
    let ask = |q: String| {
        let m = &m;
        let carol = carol.clone();
        async move {
            m.call(
                "GET",
                &format!("/api/v1/machines/{machine}/quote?{q}"),
                Some(&carol),
                None,
            )
            .await
        }
    };
    let (status, body) = ask("oc=300".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "oc", "{body}");
    let (status, body) = ask(format!("oc={}", urlencode(r#"[{"pl":300}]"#))).await;
    assert!(status.is_client_error(), "{body}");
    assert_eq!(body["error"]["field"], "oc", "{body}");
    let (status, body) = ask(format!("oc={}", urlencode(&oc(900).to_string()))).await;
    assert!(status.is_client_error(), "{body}");
    assert!(
        body["error"]["field"]
            .as_str()
            .unwrap()
            .starts_with("oc[0]"),
        "{body}"
    );
    let (status, body) = m
        .call(
            "GET",
            &format!(
                "/api/v1/machines/999/quote?oc={}",
                urlencode(&oc(300).to_string())
            ),
            Some(&carol),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = m
        .call(
            "GET",
            &format!(
                "/api/v1/machines/{machine}/quote?oc={}",
                urlencode(&oc(300).to_string())
            ),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A validator that rejects the image: no price wins, and the quote says why.
    m.install_and_activate("policy-validator", "image-deny = *:latest")
        .await;
    let (status, body) = ask(format!(
        "oc={}&image=app:latest",
        urlencode(&oc(300).to_string())
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["price_to_win"].is_null(), "{body}");
    let why = body["cannot_win"].as_str().unwrap();
    assert!(
        why.contains("policy") && why.contains("image-denied"),
        "{why}"
    );
    // An idle machine with no other bid: the floor wins.
    let (status, body) = ask(format!(
        "oc={}&image=app:1",
        urlencode(&oc(300).to_string())
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        amount(&body["price_to_win"]),
        amount(&body["floor"]),
        "{body}"
    );
    m.stop().await;
}

/// `gigaspot replay` on a stopped market: every recorded decision replays bit for bit; a
/// tampered one is reported and the exit status says so; a bad time is refused.
#[tokio::test(flavor = "multi_thread")]
async fn gigaspot_replay_checks_every_recorded_decision_and_reports_a_difference() {
    let m = Market::start(|_| {}).await;
    m.install_and_activate("price-per-watt", "").await;
    m.install_and_activate("policy-validator", "image-deny = *:latest")
        .await;
    let (_, machine, agent) = m.machine().await;
    let (_, alice) = m.funded_client("alice", 10_000.0).await;
    let (_, bob) = m.funded_client("bob", 10_000.0).await;
    let first = bid(&m, &alice, machine, json!(100), 300).await;
    bid(&m, &bob, machine, json!(80), 200).await;
    m.tick(0).await;
    m.serve(&agent, first).await;
    bid(&m, &bob, machine, json!(95), 250).await;
    m.tick(60).await;
    m.tick(60).await;
    let interval = m
        .state
        .interval_clock()
        .unwrap()
        .interval_at(m.clock.load(std::sync::atomic::Ordering::SeqCst));
    let dir = m.stop_keeping_data().await;
    let data = dir.path().join("data");
    let replay = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gigaspot"))
            .arg("replay")
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (code, out) = replay(&[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("clearings re-run: 3"), "{out}");
    assert!(out.contains("bit for bit"), "{out}");
    let (code, out) = replay(&["--json"]);
    assert_eq!(code, Some(0), "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["replayed"], 3);

    // A recorded score changed after the fact is found.
    {
        let db = gigaspot_store::open_waiting_for_lock(&data).unwrap();
        let changed = gigaspot_store::testing::tamper_decision(&db, machine, interval, |d| {
            for v in &mut d.verdicts {
                if let gigaspot_market::clearing::Verdict::Scored { score } = &mut v.verdict {
                    *score += 1e-9;
                }
            }
        })
        .unwrap();
        assert!(changed);
    }
    let (code, out) = replay(&[]);
    println!("{out}");
    assert_eq!(code, Some(3), "{out}");
    assert!(
        out.contains(&format!("DIFFERS interval {interval} machine {machine}")),
        "{out}"
    );
    // Up to the interval before, nothing differs.
    let (code, out) = replay(&["--to", &(support::T0 + 119).to_string()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("clearings re-run: 2"), "{out}");
    let (code, out) = replay(&["--from", "yesterday"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("--from"), "{out}");
}

/// A market on which price-per-watt and net-profit disagree: one machine with paid
/// electricity (0.05 USD/kWh at 0.02 USD per CLORE), Alice at 100 CLORE for 1200 W and
/// Bob at 60 CLORE for 600 W. Price-per-watt (live) picks Bob; net-profit picks Alice
/// (0.56 USD/day of profit against 0.48). Three intervals cleared, Bob served.
async fn disputed_market() -> (Market, u64, u64, u64) {
    let m = Market::start(|_| {}).await;
    m.install_and_activate("price-per-watt", "").await;
    let (_, machine, agent) = m.machine_with(4, 0.05).await;
    let (alice_id, alice) = m.funded_client("alice", 10_000.0).await;
    let (bob_id, bob) = m.funded_client("bob", 10_000.0).await;
    bid(&m, &alice, machine, json!(100), 300).await;
    let bobs = bid(&m, &bob, machine, json!(60), 150).await;
    m.tick(0).await;
    for _ in 0..2 {
        assert_eq!(winner(&m, machine).await, Some(bobs));
        m.serve(&agent, bobs).await;
        m.tick(60).await;
    }
    (m, machine, alice_id, bob_id)
}

/// Base units → the decimal CLORE text a report shows.
fn clore(units: i128) -> String {
    format!("{}.{:08}", units / 100_000_000, units % 100_000_000)
}

/// `gigaspot backtest` of net-profit over the disputed market, checked against the
/// numbers worked out by hand: per interval, a host payout of 60 CLORE/day for 60 s is
/// 4,166,666 units less the 2.5 % fee (104,166) = 4,062,500, and 100 CLORE/day gives
/// 6,944,444 − 173,611 = 6,770,833; the energy of 600 W for 60 s is 2,500,000 units and
/// of 1200 W 5,000,000.
#[tokio::test(flavor = "multi_thread")]
async fn gigaspot_backtest_reports_what_a_candidate_would_have_done_to_the_unit() {
    let (m, _, alice, bob) = disputed_market().await;
    let dir = m.stop_keeping_data().await;
    let data = dir.path().join("data");
    let candidate = gigaspot_tests::guest_path("net-profit");
    let backtest = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gigaspot"))
            .arg("backtest")
            .arg("--data-dir")
            .arg(&data)
            .arg("--strategy")
            .arg(&candidate)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let report: Value = serde_json::from_str(&backtest(&["--format", "json"])).unwrap();
    let total = &report["total"];
    assert_eq!(total["machines"], 3, "{report:#}");
    assert_eq!(total["changed"], 3);
    assert_eq!(total["switches_live"], 1);
    assert_eq!(total["switches_candidate"], 3);
    let revenue = &total["revenue"];
    assert_eq!(revenue["live_gross"].to_string(), clore(3 * 4_062_500));
    assert_eq!(revenue["candidate_gross"].to_string(), clore(3 * 6_770_833));
    assert_eq!(
        revenue["live_net"].to_string(),
        clore(3 * (4_062_500 - 2_500_000))
    );
    assert_eq!(
        revenue["candidate_net"].to_string(),
        clore(3 * (6_770_833 - 5_000_000))
    );
    assert_eq!(report["intervals"].as_array().unwrap().len(), 3);
    assert_eq!(report["strategy"]["name"], "net-profit");
    assert_eq!(report["hosts"].as_array().unwrap().len(), 1);
    let clients = report["clients"].as_array().unwrap();
    let wins = |id: u64| {
        let c = clients.iter().find(|c| c["client"] == id).unwrap();
        (
            c["wins_live"].as_u64().unwrap(),
            c["wins_candidate"].as_u64().unwrap(),
        )
    };
    assert_eq!(wins(alice), (0, 3));
    assert_eq!(wins(bob), (3, 0));
    assert!(report["fuel"].as_u64().unwrap() > 0, "{report:#}");

    let csv = backtest(&["--format", "csv"]);
    let mut lines = csv.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("interval,start,machines,changed")
    );
    let total_row = csv.lines().last().unwrap();
    assert!(
        total_row.starts_with("total,") && total_row.contains(&clore(3 * 6_770_833)),
        "{csv}"
    );
    let table = backtest(&[]);
    assert!(table.contains("backtest of net-profit"), "{table}");
    assert!(
        table.contains(&format!("client {alice:>6}: 0 → 3")),
        "{table}"
    );
    // The market itself is untouched: its own replay still holds bit for bit.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gigaspot"))
        .args(["replay", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The backtest of the disputed market through the API: one at a time, the same numbers
/// as the command line, operators only, bad input named.
#[tokio::test(flavor = "multi_thread")]
async fn a_backtest_through_the_api_runs_one_at_a_time_and_reports_the_same_numbers() {
    let (m, _, alice, _) = disputed_market().await;
    let (status, plugin) = m.upload_plugin(OPERATOR_KEY, "net-profit", "").await;
    assert_eq!(status, StatusCode::CREATED, "{plugin}");
    let candidate = plugin["digest"].as_str().unwrap().to_owned();
    let (status, plugin) = m
        .upload_plugin(OPERATOR_KEY, "hostile-strategy", "spin")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{plugin}");
    let spinner = plugin["digest"].as_str().unwrap().to_owned();
    let (_, client) = m.funded_client("nosy", 1.0).await;
    let post = |key: &str, body: Value| {
        let key = key.to_owned();
        let m = &m;
        async move {
            m.call("POST", "/api/v1/backtests", Some(&key), Some(body))
                .await
        }
    };
    let (status, _) = post(&client, json!({"strategy": candidate})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = post(OPERATOR_KEY, json!({"strategy": "sha256:nope"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "strategy");
    let (status, body) = post(
        OPERATOR_KEY,
        json!({"strategy": candidate, "validators": ["x"]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "validators");
    let (status, body) = post(
        OPERATOR_KEY,
        json!({"strategy": candidate, "from": 4_000_000_000u64}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // A strategy that spins until its fuel runs out takes a while: a second backtest waits.
    let (status, slow) = post(OPERATOR_KEY, json!({"strategy": spinner})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{slow}");
    let (status, body) = post(OPERATOR_KEY, json!({"strategy": candidate})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let done = |id: u64| {
        let m = &m;
        async move {
            loop {
                let (status, job) = m
                    .call(
                        "GET",
                        &format!("/api/v1/backtests/{id}"),
                        Some(OPERATOR_KEY),
                        None,
                    )
                    .await;
                assert_eq!(status, StatusCode::OK, "{job}");
                if job["status"] != "running" {
                    return job;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    let slow = done(slow["id"].as_u64().unwrap()).await;
    assert_eq!(slow["status"], "done", "{slow}");
    assert_eq!(
        slow["report"]["total"]["faults"], 3,
        "every call ran out of fuel: {slow}"
    );
    assert_eq!(
        slow["report"]["total"]["changed"], 3,
        "a faulting strategy idles: {slow}"
    );

    let (status, job) = post(OPERATOR_KEY, json!({"strategy": candidate})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let job = done(job["id"].as_u64().unwrap()).await;
    let total = &job["report"]["total"];
    assert_eq!(total["changed"], 3, "{job}");
    assert_eq!(
        total["revenue"]["candidate_gross"].to_string(),
        clore(3 * 6_770_833)
    );
    assert_eq!(
        total["revenue"]["live_net"].to_string(),
        clore(3 * 1_562_500)
    );
    let intervals = job["report"]["intervals"].as_array().unwrap();
    assert_eq!(intervals.len(), 3);
    assert_eq!(intervals[0]["differing"].as_array().unwrap().len(), 1);
    assert!(
        job["report"]["clients"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["client"] == alice)
    );
    let (_, list) = m
        .call("GET", "/api/v1/backtests", Some(OPERATOR_KEY), None)
        .await;
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    assert!(list[0]["report"].is_null());

    // The replay of the live market's history, through the API: bit for bit.
    let (status, job) = m
        .call(
            "POST",
            "/api/v1/replays",
            Some(OPERATOR_KEY),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["kind"], "replay");
    let job = done(job["id"].as_u64().unwrap()).await;
    assert_eq!(job["replay"]["replayed"], 3, "{job}");
    assert_eq!(job["replay"]["differences"], json!([]), "{job}");
    let (status, _) = m
        .call("POST", "/api/v1/replays", Some(&client), Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    m.stop().await;
}

/// Shadow mode: a stored strategy runs beside the live one at every boundary without
/// touching the market, its differences are recorded per interval and kept across a
/// restart, and one call promotes it (the old one kept for roll-back).
#[tokio::test(flavor = "multi_thread")]
async fn a_shadow_strategy_is_recorded_beside_the_live_one_and_promoted_in_one_call() {
    let (m, machine, _, _) = disputed_market().await;
    let (status, plugin) = m.upload_plugin(OPERATOR_KEY, "net-profit", "").await;
    assert_eq!(status, StatusCode::CREATED, "{plugin}");
    let shadow = plugin["digest"].as_str().unwrap().to_owned();
    let (_, client) = m.funded_client("nosy", 1.0).await;
    let (status, _) = m
        .call(
            "POST",
            &format!("/api/v1/plugins/{shadow}/shadow"),
            Some(&client),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = m
        .call(
            "POST",
            "/api/v1/plugins/sha256:nope/shadow",
            Some(OPERATOR_KEY),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "digest");
    let (status, body) = m
        .call(
            "POST",
            "/api/v1/plugins/shadow/promote",
            Some(OPERATOR_KEY),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = m
        .call(
            "POST",
            &format!("/api/v1/plugins/{shadow}/shadow"),
            Some(OPERATOR_KEY),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["shadow"], shadow);
    let live_winner = winner(&m, machine).await;
    m.tick(60).await;
    // The market still follows the live strategy.
    assert_eq!(winner(&m, machine).await, live_winner);
    let (_, view) = m
        .call("GET", "/api/v1/plugins/shadow", Some(OPERATOR_KEY), None)
        .await;
    let record = view["intervals"].as_array().unwrap();
    assert_eq!(record.len(), 1, "{view}");
    assert_eq!(record[0]["changed"], 1);
    assert_eq!(record[0]["switches_shadow"], 1);
    assert_eq!(record[0]["switches_live"], 0);
    assert_eq!(record[0]["gross_shadow"].to_string(), clore(6_770_833));
    assert_eq!(
        record[0]["revenue_delta"].to_string(),
        clore(6_770_833 - 4_062_500)
    );
    assert_eq!(record[0]["winners"][0][0], machine);
    assert!(
        m.scrape()
            .await
            .contains("gigaspot_shadow_duration_seconds_count 1")
    );

    // A restart keeps the shadow and its record.
    let dir = m.stop_keeping_data().await;
    let m = Market::start_in(dir, |_| {}).await;
    m.clock
        .store(support::T0 + 180, std::sync::atomic::Ordering::SeqCst);
    m.tick(60).await;
    let (_, view) = m
        .call("GET", "/api/v1/plugins/shadow", Some(OPERATOR_KEY), None)
        .await;
    assert_eq!(view["shadow"], shadow, "{view}");
    assert_eq!(view["intervals"].as_array().unwrap().len(), 2, "{view}");

    // Promote: active now, the old active the previous, no shadow.
    let (status, body) = m
        .call(
            "POST",
            "/api/v1/plugins/shadow/promote",
            Some(OPERATOR_KEY),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["active_strategy"]["digest"], shadow);
    let (_, view) = m
        .call("GET", "/api/v1/plugins/shadow", Some(OPERATOR_KEY), None)
        .await;
    assert!(view["shadow"].is_null(), "{view}");
    assert_eq!(view["active"]["digest"], shadow);
    let (status, body) = m
        .call(
            "POST",
            "/api/v1/plugins/strategy/rollback",
            Some(OPERATOR_KEY),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "roll-back to the old strategy: {body}"
    );
    m.stop().await;
}

/// Market prices per GPU model: JSON, filtered by model, as CSV; a bad format is named.
#[tokio::test(flavor = "multi_thread")]
async fn market_prices_per_model_read_as_json_and_csv() {
    let (m, _, _, _) = disputed_market().await;
    let (status, body) = m.call("GET", "/api/v1/market/prices", None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["models"], json!(["NVIDIA GeForce RTX 4090"]));
    let points = body["points"].as_array().unwrap();
    assert_eq!(points.len(), 3, "{body}");
    // Bob's 60 CLORE/day for 600 W: 100 CLORE/day per kW, on 4 GPUs.
    assert_eq!(points[0]["median"], 100.0);
    assert_eq!(points[0]["gpus"], 4);
    assert_eq!(points[0]["kw"], 0.6);
    let (_, body) = m
        .call("GET", "/api/v1/market/prices?model=Tesla%20T4", None, None)
        .await;
    assert!(body["points"].as_array().unwrap().is_empty());
    let resp = m
        .http
        .get(format!(
            "{}/api/v1/market/prices?format=csv&limit=2",
            m.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = resp.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "interval,at,model,min,median,max,machines,gpus,kw"
    );
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(
        lines[1].contains(",\"NVIDIA GeForce RTX 4090\",100,100,100,1,4,0.6"),
        "{csv}"
    );
    let (status, body) = m
        .call("GET", "/api/v1/market/prices?format=xml", None, None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "format");
    m.stop().await;
}
