//! The demo's hosts, machines and clients, created through the API on the first start.

use anyhow::{Context, Result};
use gigaspot_agent::simulated_backend::SimulatedGpus;
use serde_json::{Value, json};

use crate::api::Api;
use crate::keys::{DemoKeys, DemoMachine, Participant};

/// One demo machine as its host registers it.
struct MachineSpec {
    host: &'static str,
    /// Simulated GPUs.
    gpus: &'static str,
    /// Electricity price, USD per kWh.
    energy_price: f64,
    /// The background job's image: what the machine runs while no bid wins (the demo's
    /// agents run no containers, so nothing is pulled).
    background_image: &'static str,
    /// Extra settings of the background job on every GPU, beside its power limit.
    background_clocks: Value,
    /// What the background job earns, CLORE per day, where the host declares it: then a
    /// floor of the machine's minimum bid.
    background_earnings: Option<f64>,
    /// The host sets its own power ceilings (the cards' maxima); otherwise a bid's power
    /// limits may reach the background job's, no higher.
    explicit_ceilings: bool,
}

/// Mixed models on two hosts, each machine with a background job.
fn machines() -> [MachineSpec; 5] {
    let spec =
        |host, gpus, energy_price, background_image, background_clocks, earnings| MachineSpec {
            host,
            gpus,
            energy_price,
            background_image,
            background_clocks,
            background_earnings: earnings,
            explicit_ceilings: false,
        };
    // The energy floors at clore_usd 0.02: 86.4, 24, 36, 36 and 16.2 CLORE per day; the
    // declared earnings above them set the minimum bid instead.
    [
        spec(
            "north-gpu-farm",
            "4xRTX4090",
            0.12,
            "registry.example/folding-at-home:8",
            json!({"mem_offset": 500}),
            Some(120.0),
        ),
        spec(
            "north-gpu-farm",
            "2xRTX3090",
            0.10,
            "registry.example/folding-at-home:8",
            json!({"mem_offset": 500}),
            Some(30.0),
        ),
        MachineSpec {
            explicit_ceilings: true,
            ..spec(
                "south-datacentre",
                "1xH100",
                0.15,
                "registry.example/batch-inference:2",
                json!({}),
                None,
            )
        },
        spec(
            "south-datacentre",
            "2xA100",
            0.15,
            "registry.example/batch-inference:2",
            json!({"core_lock": 1200}),
            None,
        ),
        spec(
            "south-datacentre",
            "1xRTX4090",
            0.09,
            "registry.example/render-farm:5",
            json!({}),
            Some(20.0),
        ),
    ]
}

/// The background job's power limit on a card: 80 % of its maximum.
pub fn background_power_limit(card_min_w: u32, card_max_w: u32) -> u32 {
    (card_max_w * 4 / 5).max(card_min_w)
}

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
    for spec in machines() {
        let host = spec.host;
        if !keys.hosts.iter().any(|h| h.name == host) {
            keys.hosts.push(account(api, host, "host").await?);
        }
        let host_key = &keys
            .hosts
            .iter()
            .find(|h| h.name == host)
            .context("host")?
            .key;
        let cards = SimulatedGpus::from_spec(spec.gpus)
            .and_then(|s| {
                use gigaspot_agent::gpu_control::GpuControl;
                s.inventory().map_err(|e| e.to_string())
            })
            .map_err(anyhow::Error::msg)?;
        let gpus_json: Vec<Value> = cards
            .gpus
            .iter()
            .map(|g| {
                let mut gpu = json!({"model": g.model, "uuid": g.uuid,
                    "card_min_w": g.min_power_w, "card_max_w": g.max_power_w});
                if spec.explicit_ceilings {
                    gpu["ceiling_w"] = json!(g.max_power_w);
                }
                gpu
            })
            .collect();
        let oc: Vec<Value> = cards
            .gpus
            .iter()
            .map(|g| {
                let mut oc = spec.background_clocks.clone();
                oc["pl"] = json!(background_power_limit(g.min_power_w, g.max_power_w));
                oc
            })
            .collect();
        let mut machine = json!({
            "gpus": gpus_json,
            "energy_price": spec.energy_price,
            "country": "EU",
            "background_job": {
                "image": spec.background_image,
                "env": {"WORKER_NAME": format!("{host}-{}", keys.machines.len() + 1),
                        "PAYOUT_WALLET": format!("demo-wallet-{host}")},
                "oc": oc,
            },
        });
        if let Some(earnings) = spec.background_earnings {
            machine["background_earnings"] = json!(earnings);
        }
        let created = api
            .post("/api/v1/machines", Some(host_key), &machine)
            .await?;
        keys.machines.push(DemoMachine {
            id: created["machine"]["id"].as_u64().context("machine id")?,
            host: host.to_owned(),
            gpus: spec.gpus.to_owned(),
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
