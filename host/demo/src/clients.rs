//! Simulated clients: each places, raises, re-tunes and cancels bids at random every few
//! seconds, so that switches, interruptions and billing happen within the first minute.
//! One of them ([`ORDER_CLIENT`]) instead buys through a standing order and lets the market
//! bid for it.

use std::time::Duration;

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::api::Api;
use crate::keys::Participant;

/// Images the clients run; the last one is on the demo's deny list, so its bids show a
/// validator's rejection.
const IMAGES: [&str; 4] = [
    "registry.example/llm-train:3",
    "registry.example/render:2024",
    "registry.example/sd-batch:1",
    "registry.example/miner/xmr:latest",
];

/// Active bids a client keeps at most.
const MAX_BIDS: usize = 4;

/// Runs one client until `stop` turns true. Failures (a bid below the minimum, a machine
/// that went away) are logged and the client carries on, as a real bot would.
pub async fn run(api: Api, client: Participant, seed: u64, mut stop: watch::Receiver<bool>) {
    let mut rng = StdRng::seed_from_u64(seed);
    loop {
        let pause = Duration::from_millis(rng.random_range(500..3000));
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        if let Err(e) = act(&api, &client, &mut rng).await {
            tracing::debug!("{}: {e:#}", client.name);
        }
    }
}

async fn act(api: &Api, client: &Participant, rng: &mut StdRng) -> Result<()> {
    let key = Some(client.key.as_str());
    let mine: Vec<Value> = api
        .get("/api/v1/bids", key)
        .await?
        .as_array()
        .context("bids")?
        .iter()
        .filter(|b| b["state"] == "active")
        .cloned()
        .collect();
    if mine.len() < MAX_BIDS && rng.random_bool(0.7) || mine.is_empty() {
        return place(api, client, rng).await;
    }
    let bid = &mine[rng.random_range(0..mine.len())];
    let id = bid["id"].as_u64().context("bid id")?;
    let path = format!("/api/v1/bids/{id}");
    let price = bid["price"].as_f64().context("price")?;
    let limits: Vec<u64> = bid["oc"]
        .as_array()
        .context("oc")?
        .iter()
        .map(|o| o["pl"].as_u64().unwrap_or(0))
        .collect();
    // An edit states the whole new price and settings.
    let edit = |price: f64, limits: &[u64]| {
        let oc: Vec<Value> = limits.iter().map(|pl| json!({"pl": pl})).collect();
        json!({"price": (price * 100.0).round() / 100.0, "oc": oc})
    };
    match rng.random_range(0..10) {
        // Outbid: raise the price by 5–30 %.
        0..=4 => {
            let raised = price * rng.random_range(1.05..1.30);
            let body = edit(raised, &limits);
            api.call(reqwest::Method::PATCH, &path, key, Some(&body))
                .await?;
            tracing::info!("{} raises bid {id} to {raised:.2} CLORE/day", client.name);
        }
        // Better price per watt: every power limit 10 % lower (admission refuses a limit
        // below the card's minimum, and the client tries something else next time).
        5..=7 => {
            let lowered: Vec<u64> = limits.iter().map(|pl| pl * 9 / 10).collect();
            let body = edit(price, &lowered);
            api.call(reqwest::Method::PATCH, &path, key, Some(&body))
                .await?;
            tracing::info!("{} lowers the power limits of bid {id}", client.name);
        }
        _ => {
            api.call(reqwest::Method::DELETE, &path, key, None).await?;
            tracing::info!("{} cancels bid {id}", client.name);
        }
    }
    Ok(())
}

async fn place(api: &Api, client: &Participant, rng: &mut StdRng) -> Result<()> {
    let machines = api.get("/api/v1/machines", None).await?;
    let machines = machines.as_array().context("machines")?;
    if machines.is_empty() {
        return Ok(());
    }
    let m = &machines[rng.random_range(0..machines.len())];
    let gpus = m["gpus"].as_array().context("gpus")?;
    let mut min_power = 0;
    let mut power = 0;
    let oc: Vec<Value> = gpus
        .iter()
        .map(|g| {
            let min = g["card_min_w"].as_u64().unwrap_or(100);
            let max = g["ceiling_w"].as_u64().unwrap_or(min).max(min);
            let pl = rng.random_range(min..=max);
            min_power += min;
            power += pl;
            json!({"pl": pl})
        })
        .collect();
    // The minimum bid covers the energy at the cards' minimum limits; a strategy that nets
    // out energy only accepts bids that cover the energy at their own limits.
    let energy_floor =
        m["min_bid"].as_f64().unwrap_or(1.0) * power as f64 / min_power.max(1) as f64;
    let price = (energy_floor * rng.random_range(1.1..2.5) * 100.0).round() / 100.0;
    let image = IMAGES[rng.random_range(0..IMAGES.len())];
    let created = api
        .post(
            "/api/v1/bids",
            Some(&client.key),
            &json!({"machine": m["id"], "price": price, "image": image, "oc": oc,
                   "env": {"DEMO_CLIENT": client.name}}),
        )
        .await?;
    tracing::info!(
        "{} bids {price:.2} CLORE/day on machine {} (bid {})",
        client.name,
        m["id"],
        created["id"]
    );
    Ok(())
}

/// The client that buys through a standing order instead of bidding by hand.
pub const ORDER_CLIENT: &str = "carol";

/// The GPU model its order asks for, as the simulated agents report it.
pub const ORDER_MODEL: &str = "NVIDIA GeForce RTX 4090";

/// Its order's cap, CLORE/day per kW of a bid's power limit. The manual clients pay 1.1–2.5×
/// the energy cost at their limits (about 150–500 CLORE/day per kW on the RTX 4090
/// machines) and raise from there, so the order outbids them at first and competes with
/// their raises afterwards.
pub const ORDER_MAX_PRICE_PER_KW: f64 = 800.0;

/// The standing order: two RTX 4090 machines at 60 % of each card's power range, paid at
/// most [`ORDER_MAX_PRICE_PER_KW`], 1,500 CLORE in all, for the longest lifetime (20 days).
pub fn standing_order() -> Value {
    json!({
        "count": 2,
        "models": [ORDER_MODEL],
        "pl_fraction": 0.6,
        "image": IMAGES[0],
        "env": {"DEMO_CLIENT": ORDER_CLIENT},
        "max_price_per_kw": ORDER_MAX_PRICE_PER_KW,
        "budget": 1500,
        "lifetime_s": 20 * 86_400,
    })
}

/// The client's standing order: the one it placed on an earlier start (an active or paused
/// one first; one the user cancelled stays cancelled), else a new one on the first start.
/// Answers the order's id.
pub async fn ensure_order(api: &Api, client: &Participant) -> Result<u64> {
    let key = Some(client.key.as_str());
    let orders = api.get("/api/v1/orders", key).await?;
    let live = orders
        .as_array()
        .context("orders")?
        .iter()
        .find(|o| o["state"] == "active" || o["state"] == "paused");
    if let Some(order) = live {
        let id = order["id"].as_u64().context("order id")?;
        tracing::info!("{} keeps standing order {id}", client.name);
        return Ok(id);
    }
    // One the user cancelled (or that expired) stays so: a restart does not override it.
    if let Some(id) = orders
        .as_array()
        .context("orders")?
        .iter()
        .filter_map(|o| o["id"].as_u64())
        .max()
    {
        tracing::info!("{} keeps its ended standing order {id}", client.name);
        return Ok(id);
    }
    let created = api.post("/api/v1/orders", key, &standing_order()).await?;
    let id = created["id"].as_u64().context("order id")?;
    tracing::info!(
        "{} places standing order {id}: 2 × {ORDER_MODEL} at ≤ {ORDER_MAX_PRICE_PER_KW} CLORE/day per kW",
        client.name
    );
    Ok(id)
}

/// Runs the order client until `stop` turns true: the market bids for it at every
/// boundary; the client only watches and logs what its order holds.
pub async fn watch_order(api: Api, client: Participant, id: u64, mut stop: watch::Receiver<bool>) {
    let mut last = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let order = match api
            .get(&format!("/api/v1/orders/{id}"), Some(&client.key))
            .await
        {
            Ok(order) => order,
            Err(e) => {
                tracing::debug!("{}: {e:#}", client.name);
                continue;
            }
        };
        let summary = (order["state"].clone(), order["machines"].clone());
        if last.as_ref() != Some(&summary) {
            let held: Vec<String> = order["machines"]
                .as_array()
                .map(|m| {
                    m.iter()
                        .map(|h| format!("machine {} at {}", h["machine"], h["price"]))
                        .collect()
                })
                .unwrap_or_default();
            tracing::info!(
                "{}'s standing order {id} is {}, holds [{}]{}",
                client.name,
                order["state"],
                held.join(", "),
                order["note"]
                    .as_str()
                    .map(|n| format!(": {n}"))
                    .unwrap_or_default()
            );
            last = Some(summary);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The order's model is the simulated RTX 4090's name.
    #[test]
    fn the_order_asks_for_the_simulated_rtx_4090() {
        use gigaspot_agent::gpu_control::GpuControl;
        let sim = gigaspot_agent::simulated_backend::SimulatedGpus::from_spec("1xRTX4090").unwrap();
        assert_eq!(sim.inventory().unwrap().gpus[0].model, ORDER_MODEL);
    }
}
