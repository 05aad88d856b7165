//! Builders shared by the store's integration tests.

#![allow(dead_code)] // each test binary uses its own subset

use std::collections::BTreeMap;

use gigaspot_market::account::{AccountId, Role};
use gigaspot_market::bid::{BidTerms, Lifetime, OcRequest};
use gigaspot_market::machine::{Gpu, Machine, MachineFacts};
use gigaspot_market::money::Amount;
use std::sync::Arc;

use gigaspot_store::{MachineSpec, PgStore, SledStore, Store};

/// A 4 × RTX 4090 machine spec (150–450 W, ceiling 400 W), free energy.
pub fn spec(host: AccountId) -> MachineSpec {
    MachineSpec {
        host,
        facts: MachineFacts::default(),
        gpus: (0..4)
            .map(|i| Gpu {
                model: "NVIDIA GeForce RTX 4090".into(),
                uuid: format!("GPU-{i}"),
                card_min_w: 150,
                card_max_w: 450,
                ceiling_w: 400,
            })
            .collect(),
        energy_price_usd_per_kwh: 0.0,
        reserve_price: Amount::ZERO,
        max_rental_length_s: 30 * 86_400,
        background: None,
        background_earnings: Amount::ZERO,
        explicit_ceilings: true,
    }
}

/// Terms for `machine` at `clore` CLORE/day with `pl` W on each of 4 GPUs, for a week.
pub fn terms(machine: u64, clore: u64, pl: u32) -> BidTerms {
    BidTerms {
        machine,
        price_per_day: Amount::clore(clore),
        image: "registry.example/app:1".into(),
        env: BTreeMap::from([("MODE".into(), "train".into())]),
        oc: vec![
            OcRequest {
                pl: Some(pl),
                ..OcRequest::default()
            };
            4
        ],
        lifetime: Lifetime::Explicit(7 * 86_400),
    }
}

/// Marks a machine online and working, as its agent would.
pub fn bring_online(store: &dyn Store, machine: &Machine) {
    gigaspot_store::testing::bring_online(store, machine.id).unwrap();
}

/// A market with one host machine (online) and two funded clients.
pub struct Market {
    pub host: AccountId,
    pub machine: Machine,
    pub alice: AccountId,
    pub bob: AccountId,
}

pub fn market(store: &dyn Store) -> Market {
    let host = store.create_account("host", &[Role::Host]).unwrap().id;
    let machine = store.register_machine(spec(host)).unwrap();
    bring_online(store, &machine);
    let alice = store.create_account("alice", &[Role::Client]).unwrap().id;
    let bob = store.create_account("bob", &[Role::Client]).unwrap().id;
    store
        .deposit(alice, Amount::clore(1000), "alice-1", 0)
        .unwrap();
    store.deposit(bob, Amount::clore(1000), "bob-1", 0).unwrap();
    Market {
        host,
        machine,
        alice,
        bob,
    }
}

/// The edit that sets a bid to `terms`' price and settings.
pub fn change(terms: &BidTerms) -> gigaspot_market::bid::BidChange {
    gigaspot_market::bid::BidChange {
        price_per_day: terms.price_per_day,
        oc: terms.oc.clone(),
        image: None,
        env: None,
    }
}

/// Where a test's store lives; [`Backend::open`] opens it (again, after a drop, to
/// check what survives).
pub enum Backend {
    Sled(tempfile::TempDir),
    Postgres(String),
}

impl Backend {
    pub fn is_postgres(&self) -> bool {
        matches!(self, Backend::Postgres(_))
    }

    pub fn open(&self) -> Arc<dyn Store> {
        match self {
            Backend::Sled(dir) => Arc::new(SledStore::open(dir.path()).unwrap()),
            Backend::Postgres(url) => Arc::new(PgStore::open(url).unwrap()),
        }
    }

    /// Sets `account`'s stored balance to `amount` behind the store's back (what a
    /// corrupted or tampered database looks like to the audit).
    pub fn tamper_balance(&self, account: AccountId, amount: Amount) {
        match self {
            Backend::Sled(dir) => {
                let db = gigaspot_store::open_waiting_for_lock(dir.path()).unwrap();
                let mut k = b"bal/".to_vec();
                k.extend_from_slice(&account.to_be_bytes());
                db.insert(k, &amount.0.to_be_bytes()).unwrap();
                db.flush().unwrap();
            }
            Backend::Postgres(url) => {
                let db = url.rsplit('/').next().unwrap();
                gigaspot_tests::postgres::Postgres::shared()
                    .psql(
                        db,
                        &format!(
                            "UPDATE balances SET amount = {} WHERE account = {account}",
                            amount.0
                        ),
                    )
                    .unwrap();
            }
        }
    }
}

/// Each test once per backend: `sled::name` and `postgres::name`.
#[macro_export]
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sled {
            $(#[test]
            fn $name() {
                super::$name(&$crate::support::Backend::Sled(tempfile::tempdir().unwrap()));
            })*
        }
        mod postgres {
            $(#[test]
            fn $name() {
                let url = gigaspot_tests::postgres::Postgres::shared().fresh_database();
                super::$name(&$crate::support::Backend::Postgres(url));
            })*
        }
    };
}
