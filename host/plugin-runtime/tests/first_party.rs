//! The first-party plugins and the third-party example, built from source, loaded and run.

use gigaspot_market::sample::SampleMarket;
use gigaspot_market::{PricePerWatt, Strategy, Validator};
use gigaspot_plugin_runtime::{ArtifactCache, LoadError, PluginKind, PluginLimits, PluginRuntime};
use gigaspot_tests::guest;

fn runtime() -> PluginRuntime {
    PluginRuntime::new(PluginLimits::default(), ArtifactCache::in_memory()).unwrap()
}

#[test]
fn price_per_watt_ranks_1000_random_machines_exactly_as_the_native_reference() {
    let rt = runtime();
    let wasm = rt.load_strategy(&guest("price-per-watt"), "").unwrap();
    assert_eq!(wasm.info().name, "price-per-watt");
    assert!(wasm.plugin_ref().digest.starts_with("sha256:"));
    let native = PricePerWatt::new();
    let mut sample = SampleMarket::new(7);
    let mut acceptable = 0;
    for id in 0..1000 {
        let mut machine = sample.machine(id);
        let count = (id % 60) as usize;
        let bids = sample.bids(&mut machine, count);
        let got = wasm.rank(&machine, &bids).unwrap();
        let want = native.rank(&machine, &bids).unwrap();
        // Bit-for-bit equality, not approximate: decisions must replay identically.
        let bits = |s: &[gigaspot_market::Score]| {
            s.iter()
                .map(|s| (s.bid_id, s.score.to_bits()))
                .collect::<Vec<_>>()
        };
        assert_eq!(bits(&got), bits(&want), "machine {id}");
        acceptable += got.iter().filter(|s| s.score > 0.0).count();
    }
    // The sample must exercise both branches of the rule.
    assert!(acceptable > 1000, "too few acceptable bids: {acceptable}");
}

#[test]
fn the_python_strategy_ranks_exactly_as_the_rust_price_per_watt() {
    let rt = runtime();
    let python = rt.load_strategy(&guest("python-strategy"), "").unwrap();
    assert_eq!(python.info().name, "python-price-per-watt");
    let rust = rt.load_strategy(&guest("price-per-watt"), "").unwrap();
    let native = PricePerWatt::new();
    let mut sample = SampleMarket::new(16);
    let mut acceptable = 0;
    for id in 0..100 {
        let mut machine = sample.machine(id);
        let bids = sample.bids(&mut machine, 1 + (id % 40) as usize);
        let bits = |s: Vec<gigaspot_market::Score>| {
            s.into_iter()
                .map(|s| (s.bid_id, s.score.to_bits()))
                .collect::<Vec<_>>()
        };
        let got = bits(python.rank(&machine, &bids).unwrap());
        assert_eq!(
            got,
            bits(rust.rank(&machine, &bids).unwrap()),
            "machine {id}"
        );
        assert_eq!(
            got,
            bits(native.rank(&machine, &bids).unwrap()),
            "machine {id}"
        );
        acceptable += got.iter().filter(|(_, s)| f64::from_bits(*s) > 0.0).count();
    }
    assert!(acceptable > 100, "too few acceptable bids: {acceptable}");
    // Like the Rust plugin it takes no configuration, and says so in its own words.
    match rt.load_strategy(&guest("python-strategy"), "bonus = 1") {
        Err(LoadError::Configure(reason)) => {
            assert!(reason.contains("takes no configuration"), "{reason}")
        }
        Err(other) => panic!("expected a refused configuration, got {other}"),
        Ok(_) => panic!("expected a refused configuration"),
    }
    // It imports no WASI interface at all (built with componentize-py --stub-wasi).
    let imports = rt.imports(&guest("python-strategy")).unwrap();
    assert!(
        imports.iter().all(|i| i.starts_with("gigaspot:plugin/")),
        "{imports:?}"
    );
}

#[test]
fn net_profit_and_the_third_party_example_load_and_rank() {
    let rt = runtime();
    let mut sample = SampleMarket::new(3);
    let mut machine = sample.machine(1);
    let bids = sample.bids(&mut machine, 20);
    for (name, config) in [("net-profit", ""), ("sticky-price-per-watt", "bonus = 0.1")] {
        let plugin = rt.load_strategy(&guest(name), config).unwrap();
        assert_eq!(plugin.info().name, name);
        let scores = plugin.rank(&machine, &bids).unwrap();
        assert_eq!(scores.len(), bids.len());
    }
    // net-profit is price in USD minus energy in USD.
    let plugin = rt.load_strategy(&guest("net-profit"), "").unwrap();
    let scores = plugin.rank(&machine, &bids).unwrap();
    for (bid, score) in bids.iter().zip(&scores) {
        let price_usd = bid.price_per_day as f64 / 1e8 * machine.clore_usd;
        let energy_usd =
            bid.total_power_limit_w as f64 * 24.0 / 1000.0 * machine.energy_price_usd_per_kwh;
        assert!((score.score - (price_usd - energy_usd)).abs() < 1e-9);
    }
}

#[test]
fn the_policy_validator_rejects_by_its_configuration() {
    let rt = runtime();
    let config = "image-allow = registry.example/team1/*\nowner-deny = 3";
    let validator = rt
        .load_validator(&guest("policy-validator"), config)
        .unwrap();
    let mut sample = SampleMarket::new(11);
    let mut machine = sample.machine(1);
    let bids = sample.bids(&mut machine, 50);
    let rejections = validator.validate(&machine, &bids).unwrap();
    for bid in &bids {
        let expected = if bid.owner_id == 3 {
            Some("owner-denied")
        } else if !bid.image.starts_with("registry.example/team1/") {
            Some("image-not-allowed")
        } else {
            None
        };
        let got = rejections
            .iter()
            .find(|r| r.bid_id == bid.id)
            .map(|r| r.code.as_str());
        assert_eq!(got, expected, "bid {} image {}", bid.id, bid.image);
    }
    assert!(!rejections.is_empty() && rejections.len() < bids.len());
}

#[test]
fn a_refused_configuration_refuses_the_plugin() {
    let rt = runtime();
    let err = rt
        .load_validator(&guest("policy-validator"), "colour = blue")
        .err()
        .unwrap();
    assert!(
        matches!(&err, LoadError::Configure(m) if m.contains("unknown key \"colour\"")),
        "{err}"
    );
    let err = rt
        .load_strategy(&guest("price-per-watt"), "x = 1")
        .err()
        .unwrap();
    assert!(matches!(err, LoadError::Configure(_)), "{err}");
}

#[test]
fn kinds_are_detected_and_the_wrong_world_is_refused() {
    let rt = runtime();
    assert_eq!(
        rt.kind_of(&guest("price-per-watt")).unwrap(),
        PluginKind::Strategy
    );
    assert_eq!(
        rt.kind_of(&guest("policy-validator")).unwrap(),
        PluginKind::Validator
    );
    let err = rt
        .load_validator(&guest("price-per-watt"), "")
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            LoadError::WrongWorld {
                expected: "validator",
                ..
            }
        ),
        "{err}"
    );
    let err = rt.load_strategy(b"not wasm at all", "").err().unwrap();
    assert!(matches!(err, LoadError::Compile(_)), "{err}");
}

#[test]
fn the_same_input_gives_the_same_output_1000_times() {
    let rt = runtime();
    let mut sample = SampleMarket::new(5);
    let mut machine = sample.machine(9);
    let bids = sample.bids(&mut machine, 200);
    let strategy = rt.load_strategy(&guest("price-per-watt"), "").unwrap();
    let validator = rt
        .load_validator(&guest("policy-validator"), "image-deny = *:v1")
        .unwrap();
    let first_scores = strategy.rank(&machine, &bids).unwrap();
    let first_rejections = validator.validate(&machine, &bids).unwrap();
    assert!(!first_rejections.is_empty());
    for _ in 0..1000 {
        let scores = strategy.rank(&machine, &bids).unwrap();
        assert!(
            scores
                .iter()
                .zip(&first_scores)
                .all(|(a, b)| a.bid_id == b.bid_id && a.score.to_bits() == b.score.to_bits())
        );
        assert_eq!(
            validator.validate(&machine, &bids).unwrap(),
            first_rejections
        );
    }
}

#[test]
fn each_version_is_compiled_once_and_the_artefact_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = guest("price-per-watt");
    {
        let rt = PluginRuntime::new(PluginLimits::default(), ArtifactCache::on_disk(dir.path()))
            .unwrap();
        rt.load_strategy(&wasm, "").unwrap();
        rt.load_strategy(&wasm, "").unwrap();
        let stats = rt.cache().stats();
        assert_eq!(
            (stats.compiles, stats.memory_hits, stats.disk_hits),
            (1, 1, 0)
        );
    }
    let rt =
        PluginRuntime::new(PluginLimits::default(), ArtifactCache::on_disk(dir.path())).unwrap();
    let plugin = rt.load_strategy(&wasm, "").unwrap();
    let stats = rt.cache().stats();
    assert_eq!(
        (stats.compiles, stats.memory_hits, stats.disk_hits),
        (0, 0, 1)
    );
    let mut sample = SampleMarket::new(1);
    let mut machine = sample.machine(1);
    let bids = sample.bids(&mut machine, 10);
    assert_eq!(plugin.rank(&machine, &bids).unwrap().len(), 10);
}

#[test]
fn the_toml_configured_strategy_weights_price_per_watt_and_refuses_bad_settings() {
    let rt = runtime();
    let mut sample = SampleMarket::new(5);
    let mut machine = sample.machine(1);
    let bids = sample.bids(&mut machine, 20);
    let native = PricePerWatt::new().rank(&machine, &bids).unwrap();
    // Unweighted it is price per watt.
    let plain = rt.load_strategy(&guest("toml-weighted"), "").unwrap();
    let scores = plain.rank(&machine, &bids).unwrap();
    assert_eq!(scores, native);
    // Weighted for a fully reliable machine: every score scaled by 1.5.
    machine.reliability = 1.0;
    let weighted = rt
        .load_strategy(&guest("toml-weighted"), "reliability_weight = 0.5\n")
        .unwrap();
    for (got, want) in weighted.rank(&machine, &bids).unwrap().iter().zip(&native) {
        assert_eq!(got.score, want.score * 1.5);
    }
    for bad in [
        "reliability_weight = -1",
        "running_bonus = \"x\"",
        "unknown = 1",
    ] {
        let err = rt
            .load_strategy(&guest("toml-weighted"), bad)
            .err()
            .unwrap_or_else(|| panic!("{bad:?} was accepted"));
        assert!(matches!(err, LoadError::Configure(_)), "{bad:?}: {err}");
    }
}
