//! The demo's hosts, machines and clients, created through the API on the first start.

use anyhow::{Context, Result};
use gigaspot_agent::simulated_backend::SimulatedGpus;
use serde_json::{Value, json};

use crate::api::Api;
use crate::keys::{DemoKeys, DemoMachine, Participant};

/// (host, simulated GPUs, electricity price in USD per kWh): mixed models on two hosts.
const MACHINES: [(&str, &str, f64); 5] = [
    ("north-gpu-farm", "4xRTX4090", 0.12),
    ("north-gpu-farm", "2xRTX3090", 0.10),
    ("south-datacentre", "1xH100", 0.15),
    ("south-datacentre", "2xA100", 0.15),
    ("south-datacentre", "1xRTX4090", 0.09),
];

/// The clients and what each deposits, CLORE.
const CLIENTS: [(&str, f64); 5] = [
    ("alice", 5000.0),
    ("bob", 5000.0),
    ("carol", 3000.0),
    ("dave", 2000.0),
    ("erin", 1000.0),
];

async fn account(api: &Api, name: &str, role: &str) -> Result<Participant> {
    let created = api
        .post(
            "/api/v1/accounts",
            None,
            &json!({"name": name, "roles": [role]}),
        )
        .await?;
    Ok(Participant {
        name: name.to_owned(),
        id: created["account"]["id"].as_u64().context("account id")?,
        key: created["api_key"].as_str().context("api key")?.to_owned(),
    })
}

/// Registers every host, machine and client and funds the clients.
pub async fn create(api: &Api, operator: &str) -> Result<DemoKeys> {
    let mut keys = DemoKeys {
        operator: operator.to_owned(),
        ..DemoKeys::default()
    };
    for (host, gpus, energy_price) in MACHINES {
        if !keys.hosts.iter().any(|h| h.name == host) {
            keys.hosts.push(account(api, host, "host").await?);
        }
        let host_key = &keys
            .hosts
            .iter()
            .find(|h| h.name == host)
            .context("host")?
            .key;
        let cards = SimulatedGpus::from_spec(gpus)
            .and_then(|s| {
                use gigaspot_agent::gpu_control::GpuControl;
                s.inventory().map_err(|e| e.to_string())
            })
            .map_err(anyhow::Error::msg)?;
        let gpus_json: Vec<Value> = cards
            .gpus
            .iter()
            .map(|g| {
                json!({"model": g.model, "uuid": g.uuid, "card_min_w": g.min_power_w,
                       "card_max_w": g.max_power_w, "ceiling_w": g.max_power_w})
            })
            .collect();
        let created = api
            .post(
                "/api/v1/machines",
                Some(host_key),
                &json!({"gpus": gpus_json, "energy_price": energy_price, "country": "EU"}),
            )
            .await?;
        keys.machines.push(DemoMachine {
            id: created["machine"]["id"].as_u64().context("machine id")?,
            host: host.to_owned(),
            gpus: gpus.to_owned(),
            token: created["agent_token"]
                .as_str()
                .context("agent token")?
                .to_owned(),
        });
    }
    for (name, amount) in CLIENTS {
        let client = account(api, name, "client").await?;
        api.post(
            "/api/v1/deposits",
            Some(operator),
            &json!({"account": client.id, "amount": amount, "reference": format!("demo-{name}")}),
        )
        .await?;
        keys.clients.push(client);
    }
    Ok(keys)
}
