//! Contract versions: components built against the frozen `gigaspot:plugin@0.1.0` and
//! `@0.2.0` keep loading, are called through their own bindings and rank exactly as the
//! same plugins built against the newest (0.3.0); a 0.3.0 component receives every field
//! of the book intact.

use std::path::PathBuf;

use gigaspot_market::sample::SampleMarket;
use gigaspot_market::{CandidateBid, MachineContext, RunningBid, Score, Strategy, Validator};
use gigaspot_plugin_runtime::{ArtifactCache, ContractVersion, PluginLimits, PluginRuntime};
use gigaspot_tests::{guest, repo_root};
use sha2::{Digest, Sha256};

fn runtime() -> PluginRuntime {
    PluginRuntime::new(PluginLimits::default(), ArtifactCache::in_memory()).unwrap()
}

/// The frozen versions whose builds are kept as fixtures (`tests/fixtures/contract-vX.Y.Z`).
const FROZEN: [ContractVersion; 2] = [ContractVersion::V0_1_0, ContractVersion::V0_2_0];

/// The build of plugin `name` released with contract `version`, checked against the
/// digest it was released with.
fn fixture(version: ContractVersion, name: &str) -> Vec<u8> {
    let folder: PathBuf = repo_root()
        .join("tests/fixtures")
        .join(format!("contract-v{}", version.as_str()));
    let file = format!("{}.wasm", name.replace('-', "_"));
    let wasm = std::fs::read(folder.join(&file)).unwrap();
    let sums = std::fs::read_to_string(folder.join("SHA256SUMS")).unwrap();
    let listed = sums
        .lines()
        .find_map(|l| l.strip_suffix(&format!("  {file}")))
        .unwrap_or_else(|| panic!("{file} is not in SHA256SUMS of {version}"));
    assert_eq!(hex::encode(Sha256::digest(&wasm)), listed, "{file} changed");
    wasm
}

/// Random books of 1 to 60 bids, half with the running bid among the candidates.
fn books(seed: u64, machines: u64) -> Vec<(MachineContext, Vec<CandidateBid>)> {
    let mut sample = SampleMarket::new(seed);
    (0..machines)
        .map(|id| {
            let mut machine = sample.machine(id);
            let bids = sample.bids(&mut machine, 1 + (id % 60) as usize);
            (machine, bids)
        })
        .collect()
}

fn bits(scores: &[Score]) -> Vec<(u64, u64)> {
    scores
        .iter()
        .map(|s| (s.bid_id, s.score.to_bits()))
        .collect()
}

#[test]
fn the_first_party_strategies_of_older_contracts_rank_exactly_as_their_newest_builds() {
    let rt = runtime();
    for (name, config) in [
        ("price-per-watt", ""),
        ("net-profit", ""),
        ("sticky-price-per-watt", "bonus = 0.1"),
    ] {
        let new = rt.load_strategy(&guest(name), config).unwrap();
        assert_eq!(new.contract(), ContractVersion::NEWEST, "{name}");
        for version in FROZEN {
            let old = rt.load_strategy(&fixture(version, name), config).unwrap();
            assert_eq!(old.contract(), version, "{name}");
            assert_eq!(old.info().name, new.info().name);
            assert_ne!(old.plugin_ref().digest, new.plugin_ref().digest);
            let mut positive = 0;
            for (machine, bids) in books(5, 300) {
                let a = old.rank(&machine, &bids).unwrap();
                let b = new.rank(&machine, &bids).unwrap();
                assert_eq!(
                    bits(&a),
                    bits(&b),
                    "{name} {version} on machine {}",
                    machine.id
                );
                positive += a.iter().filter(|s| s.score > 0.0).count();
            }
            assert!(
                positive > 100,
                "{name}: too few acceptable bids ({positive})"
            );
        }
    }
}

#[test]
fn the_policy_validator_of_older_contracts_rejects_exactly_as_its_newest_build() {
    let rt = runtime();
    let config = "image-allow = registry.example/team1/*, registry.example/team2/*\n\
                  image-deny = *:v0\nowner-deny = 3, 17\nmin-price-per-watt = 0.5";
    let new = rt
        .load_validator(&guest("policy-validator"), config)
        .unwrap();
    assert_eq!(new.contract(), ContractVersion::NEWEST);
    for version in FROZEN {
        let old = rt
            .load_validator(&fixture(version, "policy-validator"), config)
            .unwrap();
        assert_eq!(old.contract(), version);
        let mut rejected = 0;
        for (machine, bids) in books(9, 300) {
            let a = old.validate(&machine, &bids).unwrap();
            let b = new.validate(&machine, &bids).unwrap();
            assert_eq!(a, b, "{version} on machine {}", machine.id);
            rejected += a.len();
        }
        assert!(rejected > 1000, "too few rejections: {rejected}");
    }
}

/// The `fingerprint` test guest's hash, computed natively over what the market holds.
fn fingerprint(machine: &MachineContext, bid: &CandidateBid) -> f64 {
    struct Fnv(u64);
    impl Fnv {
        fn bytes(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
            }
        }
        fn u64(&mut self, v: u64) {
            self.bytes(&v.to_le_bytes());
        }
        fn opt(&mut self, v: Option<i64>) {
            match v {
                None => self.u64(u64::MAX),
                Some(v) => self.u64(v as u64),
            }
        }
    }
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    h.u64(machine.id);
    h.u64(machine.host_id);
    h.u64(machine.energy_price_usd_per_kwh.to_bits());
    h.u64(machine.clore_usd.to_bits());
    h.u64(machine.min_bid);
    h.u64(machine.billing_interval_s.into());
    for g in &machine.gpus {
        h.u64(g.index.into());
        h.bytes(g.model.as_bytes());
        h.u64(g.power_limit_w.min.into());
        h.u64(g.power_limit_w.max.into());
        for r in [g.core_lock_mhz, g.mem_lock_mhz] {
            h.opt(r.map(|r| i64::from(r.min)));
            h.opt(r.map(|r| i64::from(r.max)));
        }
        for r in [g.core_offset_mhz, g.mem_offset_mhz] {
            h.opt(r.map(|r| i64::from(r.min)));
            h.opt(r.map(|r| i64::from(r.max)));
        }
    }
    h.u64(machine.reliability.to_bits());
    if let Some(r) = &machine.running {
        h.u64(r.bid_id);
        h.u64(r.owner_id);
        h.u64(r.price_per_day);
        h.opt(r.total_power_limit_w.map(i64::from));
        h.u64(r.running_for_s);
    }
    h.u64(bid.id);
    h.u64(bid.owner_id);
    h.u64(bid.price_per_day);
    h.u64(bid.total_power_limit_w.into());
    h.u64(bid.created_at);
    for o in &bid.oc {
        h.u64(o.power_limit_w.into());
        h.opt(o.core_lock_mhz.map(i64::from));
        h.opt(o.mem_lock_mhz.map(i64::from));
        h.opt(o.core_offset_mhz.map(i64::from));
        h.opt(o.mem_offset_mhz.map(i64::from));
    }
    h.bytes(bid.image.as_bytes());
    for k in &bid.env_keys {
        h.bytes(k.as_bytes());
        h.u64(0);
    }
    ((h.0 >> 12) + 1) as f64
}

#[test]
fn a_0_3_0_plugin_receives_every_field_of_the_book_and_the_machine() {
    let rt = runtime();
    let plugin = rt
        .load_strategy(&guest("hostile-strategy"), "fingerprint")
        .unwrap();
    assert_eq!(plugin.contract(), ContractVersion::V0_3_0);
    for (i, (mut machine, mut bids)) in books(13, 120).into_iter().enumerate() {
        // Shared and distinct images and keys, empty key lists, and every clock setting.
        for (j, bid) in bids.iter_mut().enumerate() {
            match (i + j) % 4 {
                0 => {
                    bid.env_keys.clear();
                    // An offset of zero is set, not absent.
                    bid.oc[0].core_offset_mhz = Some(0);
                    bid.oc[0].core_lock_mhz = Some(2100);
                }
                1 => bid.env_keys = vec![format!("K{j}"), "MODEL".into(), format!("K{j}")],
                2 => bid.image = format!("registry.example/unique-{i}-{j}@sha256:{:064x}", j),
                _ => bid.oc.iter_mut().for_each(|o| {
                    o.mem_lock_mhz = Some(5001);
                    o.mem_offset_mhz = Some(-1000);
                }),
            }
        }
        machine.reliability = (i as f64) / 120.0;
        // GPUs with and without each range, negative offsets, other model names.
        for (j, g) in machine.gpus.iter_mut().enumerate() {
            match (i + j) % 3 {
                0 => {
                    g.core_lock_mhz = None;
                    g.mem_offset_mhz = Some(gigaspot_market::RangeS32 {
                        min: -2000,
                        max: -5,
                    });
                }
                1 => {
                    g.model = format!("NVIDIA H100 80GB HBM3 #{j}");
                    g.core_offset_mhz = None;
                }
                _ => {}
            }
        }
        if i % 3 == 0 {
            // A running bid that is no longer a candidate: terms without a power limit.
            machine.running = Some(RunningBid {
                bid_id: 9_999_999,
                owner_id: 4,
                price_per_day: 123,
                total_power_limit_w: None,
                running_for_s: 42,
            });
        }
        let scores = plugin.rank(&machine, &bids).unwrap();
        let want: Vec<Score> = bids
            .iter()
            .map(|b| Score {
                bid_id: b.id,
                score: fingerprint(&machine, b),
            })
            .collect();
        assert_eq!(bits(&scores), bits(&want), "machine {i}");
    }
}

#[test]
fn a_component_of_no_supported_contract_is_refused_with_the_versions_named() {
    let rt = runtime();
    let err = rt
        .load_strategy(&guest("future-contract"), "")
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("none of the supported contract versions (0.3.0, 0.2.0, 0.1.0)")
            && err.contains("gigaspot:plugin@0.3.0"),
        "{err}"
    );
    assert_eq!(
        ContractVersion::ALL.map(ContractVersion::as_str),
        ["0.3.0", "0.2.0", "0.1.0"]
    );
}
