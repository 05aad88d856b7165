//! The clearing prices per GPU model of one interval, from its decisions: what clients
//! look at before bidding (`GET /api/v1/market/prices`).

use std::collections::BTreeMap;

use gigaspot_market::clearing::Decision;
use gigaspot_market::economics::{clore_per_day, price_per_kw};

use crate::records::{ModelPrice, TickSnapshot};

/// The prices of the winners of `decisions` (sorted by machine), per GPU model of their
/// machines in `snapshot`.
pub(crate) fn of_interval(snapshot: &TickSnapshot, decisions: &[Decision]) -> Vec<ModelPrice> {
    // Per model: every winner's price per kW, GPUs of the model, kW sold.
    let mut samples: BTreeMap<&str, (Vec<f64>, u32, f64)> = BTreeMap::new();
    for d in decisions {
        let Some(winner) = d.winner else {
            continue;
        };
        let Ok(at) = snapshot.machines.binary_search_by_key(&d.machine, |m| m.id) else {
            continue;
        };
        let machine = &snapshot.machines[at];
        let Some(bid) = snapshot.bids.get(&d.machine).and_then(|bids| {
            bids.binary_search_by_key(&winner.bid, |b| b.id)
                .ok()
                .map(|i| &bids[i])
        }) else {
            continue;
        };
        let power_w = bid.total_power_limit_w();
        let per_kw = price_per_kw(clore_per_day(winner.price_per_day.0), power_w);
        let mut gpus: BTreeMap<&str, u32> = BTreeMap::new();
        for g in &machine.gpus {
            *gpus.entry(g.model.as_str()).or_default() += 1;
        }
        for (model, count) in gpus {
            let entry = samples.entry(model).or_default();
            entry.0.push(per_kw);
            entry.1 += count;
            entry.2 += f64::from(power_w) / 1000.0;
        }
    }
    samples
        .into_iter()
        .map(|(model, (mut prices, gpus, kw))| {
            prices.sort_by(f64::total_cmp);
            let n = prices.len();
            let median = if n % 2 == 1 {
                prices[n / 2]
            } else {
                (prices[n / 2 - 1] + prices[n / 2]) / 2.0
            };
            ModelPrice {
                model: model.to_owned(),
                min: prices[0],
                median,
                max: prices[n - 1],
                machines: n as u32,
                gpus,
                kw,
            }
        })
        .collect()
}
