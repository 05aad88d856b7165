//! Swapping strategies while the market is ranking.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gigaspot_market::sample::SampleMarket;
use gigaspot_market::{PricePerWatt, Strategy};
use gigaspot_plugin_runtime::{ArtifactCache, PluginLimits, PluginRegistry, PluginRuntime};
use gigaspot_tests::guest;

#[test]
fn one_hundred_swaps_under_four_ranking_threads_never_mix_or_fail_a_call() {
    let rt = PluginRuntime::new(PluginLimits::default(), ArtifactCache::in_memory()).unwrap();
    let versions: Vec<Arc<dyn Strategy>> = [
        ("price-per-watt", ""),
        ("net-profit", ""),
        ("sticky-price-per-watt", "bonus = 0.5"),
    ]
    .into_iter()
    .map(|(name, config)| Arc::new(rt.load_strategy(&guest(name), config).unwrap()) as _)
    .collect();

    let mut sample = SampleMarket::new(99);
    let mut machine = sample.machine(1);
    let bids = sample.bids(&mut machine, 40);
    // Free energy: every bid is acceptable, so the sticky bonus shows on the running bid.
    machine.energy_price_usd_per_kwh = 0.0;
    // Each version's own answer, keyed by digest; the three must differ.
    let expected: HashMap<String, Vec<u64>> = versions
        .iter()
        .map(|v| {
            let scores = v.rank(&machine, &bids).unwrap();
            let bits = scores.iter().map(|s| s.score.to_bits()).collect();
            (v.plugin_ref().digest.clone(), bits)
        })
        .collect();
    assert_eq!(expected.len(), 3);
    assert_eq!(
        expected
            .values()
            .collect::<std::collections::HashSet<_>>()
            .len(),
        3
    );

    let registry = Arc::new(PluginRegistry::new(Arc::new(PricePerWatt::new()), 0));
    registry.activate_strategy(versions[0].clone());
    let swapping = Arc::new(AtomicBool::new(true));
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let (registry, swapping) = (registry.clone(), swapping.clone());
            let (machine, bids, expected) = (machine.clone(), bids.clone(), expected.clone());
            std::thread::spawn(move || {
                let mut answered: HashMap<String, u64> = HashMap::new();
                while swapping.load(Ordering::Relaxed) {
                    let outcome = registry.rank(&machine, &bids);
                    assert!(outcome.faults.is_empty(), "{:?}", outcome.faults);
                    let by = outcome.answered_by.expect("every call is answered").digest;
                    let bits: Vec<u64> = outcome.scores.iter().map(|s| s.score.to_bits()).collect();
                    // The whole answer comes from the version that claims it.
                    assert_eq!(Some(&bits), expected.get(&by), "answer mixed versions");
                    *answered.entry(by).or_default() += 1;
                }
                answered
            })
        })
        .collect();

    for swap in 1..=100 {
        registry.activate_strategy(versions[swap % versions.len()].clone());
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    swapping.store(false, Ordering::Relaxed);

    let mut per_version: HashMap<String, u64> = HashMap::new();
    for caller in callers {
        for (digest, calls) in caller.join().expect("no ranking thread failed") {
            *per_version.entry(digest).or_default() += calls;
        }
    }
    assert_eq!(
        per_version.len(),
        3,
        "every version answered some calls: {per_version:?}"
    );
    let stats = registry.stats();
    assert!(stats.iter().all(|s| s.faults.total() == 0));
    // The last swap (100 % 3 = 1) left net-profit active.
    assert_eq!(registry.active_strategy(), *versions[1].plugin_ref());
}
