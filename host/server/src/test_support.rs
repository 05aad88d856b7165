//! Helpers shared by the unit tests of this crate.

use gigaspot_market::account::AccountId;
use gigaspot_market::machine::{Gpu, MachineId};
use gigaspot_market::money::Amount;
use gigaspot_store::{MachineSpec, SledStore, Store};

/// Registers an online, working machine of `host` with one RTX 4090 (150–450 W), no
/// energy price and no reserve.
pub(crate) fn online_machine(store: &SledStore, host: AccountId) -> MachineId {
    let m = store
        .register_machine(MachineSpec {
            host,
            facts: Default::default(),
            gpus: vec![Gpu {
                model: "NVIDIA GeForce RTX 4090".into(),
                uuid: "GPU-0".into(),
                card_min_w: 150,
                card_max_w: 450,
                ceiling_w: 450,
            }],
            energy_price_usd_per_kwh: 0.0,
            reserve_price: Amount::ZERO,
            max_rental_length_s: 30 * 86_400,
            background: None,
            background_earnings: Amount::ZERO,
            explicit_ceilings: true,
        })
        .unwrap();
    gigaspot_store::testing::bring_online(store, m.id).unwrap();
    m.id
}
