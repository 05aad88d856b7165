//! Host bindings of the contract `gigaspot:plugin@0.2.0` (`wit/since_v0.2.0/`): flat bid
//! records without strings or lists, their per-GPU settings, images and environment keys
//! in per-call tables (each distinct string once), the machine's reliability and the
//! running bid's terms.

use std::collections::HashMap;

super::contract_version!("../../wit/since_v0.2.0");
super::gpu_oc_record!();
super::gpu_records!();

/// A table of distinct strings, each referenced by its index.
#[derive(Default)]
struct Interned<'a> {
    index: HashMap<&'a str, u32>,
    table: Vec<String>,
}

impl<'a> Interned<'a> {
    fn get(&mut self, text: &'a str) -> u32 {
        let next = self.table.len() as u32;
        *self.index.entry(text).or_insert_with(|| {
            self.table.push(text.to_owned());
            next
        })
    }
}

super::machine_record_since_0_2_0!();

/// The machine record and the book of this version.
fn input(m: &market::MachineContext, bids: &[market::CandidateBid]) -> (wit::Machine, wit::Book) {
    (machine(m), book(bids))
}

/// The candidates as flat records with their tables.
pub(crate) fn book(bids: &[market::CandidateBid]) -> wit::Book {
    let gpus = bids.first().map_or(0, |b| b.oc.len());
    let mut rows = Vec::with_capacity(bids.len());
    let mut oc = Vec::with_capacity(bids.len() * gpus);
    let mut images = Interned::default();
    let mut env_keys = Interned::default();
    let mut env = Vec::new();
    for b in bids {
        let oc_start = oc.len() as u32;
        oc.extend(b.oc.iter().map(gpu_oc));
        let env_start = env.len() as u32;
        env.extend(b.env_keys.iter().map(|k| env_keys.get(k)));
        rows.push(wit::Bid {
            id: b.id,
            owner_id: b.owner_id,
            price_per_day: b.price_per_day,
            total_power_limit_w: b.total_power_limit_w,
            created_at: b.created_at,
            oc_start,
            oc_count: b.oc.len() as u32,
            image: images.get(&b.image),
            env_start,
            env_count: b.env_keys.len() as u32,
        });
    }
    wit::Book {
        bids: rows,
        oc,
        images: images.table,
        env_keys: env_keys.table,
        env,
    }
}
