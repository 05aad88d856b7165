//! Hostile guests: every fault is typed, counted, and the market keeps answering with the
//! previous version or the fallback.

use std::sync::Arc;
use std::time::Duration;

use gigaspot_market::sample::SampleMarket;
use gigaspot_market::{
    CandidateBid, MachineContext, PluginFault, PricePerWatt, RankOutcome, Strategy, Validator,
};
use gigaspot_plugin_runtime::{
    ArtifactCache, FIXED_WALL_CLOCK_S, LoadError, OUTPUT_CAP_BYTES, PluginLimits, PluginRegistry,
    PluginRuntime, in_group, rule_for,
};
use gigaspot_tests::guest;

/// Small budgets keep the hostile calls short.
fn limits() -> PluginLimits {
    PluginLimits {
        fuel: 50_000_000,
        timeout: Duration::from_secs(5),
        memory_bytes: 64 << 20,
        ..PluginLimits::default()
    }
}

fn runtime() -> PluginRuntime {
    PluginRuntime::new(limits(), ArtifactCache::in_memory()).unwrap()
}

fn input() -> (MachineContext, Vec<CandidateBid>) {
    let mut sample = SampleMarket::new(21);
    let mut machine = sample.machine(1);
    let bids = sample.bids(&mut machine, 30);
    (machine, bids)
}

fn hostile(rt: &PluginRuntime, mode: &str) -> Arc<dyn Strategy> {
    Arc::new(rt.load_strategy(&guest("hostile-strategy"), mode).unwrap())
}

/// Activates `mode` over a working price-per-watt component and checks that each call
/// faults with `expect`, is answered by the working version, and is counted.
fn assert_fails_over_to_previous(mode: &str, expect: fn(&PluginFault) -> bool) {
    let rt = runtime();
    let (machine, bids) = input();
    let good: Arc<dyn Strategy> = Arc::new(rt.load_strategy(&guest("price-per-watt"), "").unwrap());
    let registry = PluginRegistry::new(Arc::new(PricePerWatt::new()), 0);
    registry.activate_strategy(good.clone());
    let bad = hostile(&rt, mode);
    registry.activate_strategy(bad.clone());
    let reference = PricePerWatt::new().rank(&machine, &bids).unwrap();
    for round in 1..=3u64 {
        let RankOutcome {
            scores,
            answered_by,
            faults,
        } = registry.rank(&machine, &bids);
        assert_eq!(answered_by.as_ref(), Some(good.plugin_ref()), "{mode}");
        assert_eq!(
            scores, reference,
            "{mode}: answered by the previous version"
        );
        assert_eq!(faults.len(), 1, "{mode}: {faults:?}");
        assert_eq!(&faults[0].0, bad.plugin_ref());
        assert!(
            expect(&faults[0].1),
            "{mode}: unexpected fault {:?}",
            faults[0].1
        );
        let stats = registry.stats();
        let bad_stats = stats.iter().find(|s| s.role == "strategy").unwrap();
        assert_eq!(bad_stats.faults.total(), round, "{mode}: faults counted");
    }
}

#[test]
fn an_infinite_loop_runs_out_of_fuel() {
    assert_fails_over_to_previous("spin", |f| {
        matches!(f, PluginFault::OutOfFuel { budget: 50_000_000 })
    });
}

#[test]
fn an_infinite_loop_with_unlimited_fuel_hits_the_deadline() {
    let rt = PluginRuntime::new(
        PluginLimits {
            fuel: u64::MAX / 2,
            timeout: Duration::from_millis(50),
            ..limits()
        },
        ArtifactCache::in_memory(),
    )
    .unwrap();
    let (machine, bids) = input();
    let registry = PluginRegistry::new(Arc::new(PricePerWatt::new()), 0);
    let spinner = hostile(&rt, "spin");
    registry.activate_strategy(spinner.clone());
    let started = std::time::Instant::now();
    let outcome = registry.rank(&machine, &bids);
    // A loose bound: the point is that the call ended, not how fast.
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        outcome.faults,
        vec![(
            spinner.plugin_ref().clone(),
            PluginFault::Timeout { timeout_ms: 50 }
        )]
    );
    assert_eq!(outcome.answered_by.unwrap().digest, "native:price-per-watt");
    assert_eq!(
        outcome.scores,
        PricePerWatt::new().rank(&machine, &bids).unwrap()
    );
    assert_eq!(registry.stats()[0].faults.timeout, 1);
}

#[test]
fn a_memory_grower_is_stopped_at_the_cap() {
    assert_fails_over_to_previous(
        "grow-memory",
        |f| matches!(f, PluginFault::Memory { limit_bytes } if *limit_bytes == 64 << 20),
    );
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn host_memory_stays_bounded_while_growers_are_stopped() {
    let rt = runtime();
    let (machine, bids) = input();
    let grower = hostile(&rt, "grow-memory");
    // Warm up once, then measure many more attempts.
    assert!(matches!(
        grower.rank(&machine, &bids),
        Err(PluginFault::Memory { .. })
    ));
    let before = resident_bytes();
    for _ in 0..30 {
        assert!(matches!(
            grower.rank(&machine, &bids),
            Err(PluginFault::Memory { .. })
        ));
    }
    let grown = resident_bytes().saturating_sub(before);
    // 30 attempts of 64 MiB each would be ~2 GiB if instances leaked.
    assert!(
        grown < 256 << 20,
        "resident memory grew by {} MiB",
        grown >> 20
    );
}

#[test]
fn deep_recursion_traps_on_the_stack_cap() {
    assert_fails_over_to_previous(
        "recurse",
        |f| matches!(f, PluginFault::Trap(m) if m.contains("stack")),
    );
}

#[test]
fn a_panic_says_why() {
    assert_fails_over_to_previous("panic", |f| {
        matches!(f, PluginFault::Panic(m)
            if m.starts_with("panicked at hostile-strategy/src/lib.rs:") && m.ends_with(": deliberate panic"))
    });
    // The author's view: the guest's own report and the wasm backtrace down to `rank`.
    let rt = runtime();
    let (machine, bids) = input();
    let plugin = rt
        .load_strategy(&guest("hostile-strategy"), "panic")
        .unwrap();
    let fault = plugin.rank(&machine, &bids).unwrap_err();
    assert_eq!(fault.kind(), "panic");
    let detail = plugin.last_fault().expect("the fault is remembered");
    assert_eq!(detail.fault, fault);
    assert!(
        detail.output.contains("deliberate panic"),
        "{}",
        detail.output
    );
    let backtrace = detail.backtrace.expect("a wasm backtrace");
    assert!(backtrace.contains("!rank"), "{backtrace}");
    assert!(!fault.to_string().contains("wasm backtrace"), "{fault}");
}

#[test]
fn a_panic_after_much_output_keeps_its_message_and_the_output_stays_bounded() {
    let rt = runtime();
    let (machine, bids) = input();
    let plugin = rt
        .load_strategy(&guest("hostile-strategy"), "chatty-panic")
        .unwrap();
    for _ in 0..3 {
        let fault = plugin.rank(&machine, &bids).unwrap_err();
        assert!(
            matches!(&fault, PluginFault::Panic(m) if m.ends_with(": deliberate panic after 30 bids of chatter")),
            "{fault:?}"
        );
        let output = plugin.last_fault().unwrap().output;
        // 160 lines of 64 bytes were written; the last 4 KiB are kept, the rest counted.
        assert!(output.starts_with("[6"), "{}", &output[..80]);
        assert!(
            output.len() < OUTPUT_CAP_BYTES + 100,
            "output not bounded: {} bytes",
            output.len()
        );
        assert!(!output.contains("debug line 000"));
        assert!(output.contains("debug line 159"));
    }
}

#[test]
fn exit_is_a_trap_that_says_so() {
    assert_fails_over_to_previous(
        "exit",
        |f| matches!(f, PluginFault::Trap(m) if m.contains("the plugin called exit (failure)")),
    );
}

#[test]
fn the_environment_is_empty_and_reading_it_is_not_a_fault() {
    // `env` reads HOME and counts the variables in `configure`; it scores 1 + what it saw.
    let rt = runtime();
    let (machine, bids) = input();
    let plugin = rt.load_strategy(&guest("hostile-strategy"), "env").unwrap();
    let scores = plugin.rank(&machine, &bids).unwrap();
    assert_eq!(scores.len(), bids.len());
    assert!(scores.iter().all(|s| s.score == 1.0), "{scores:?}");
}

#[test]
fn malformed_scores_are_rejected() {
    for mode in ["duplicate-ids", "unknown-id", "nan", "drop-one"] {
        assert_fails_over_to_previous(mode, |f| matches!(f, PluginFault::BadOutput(_)));
    }
}

#[test]
fn without_a_previous_version_the_native_fallback_answers() {
    let rt = runtime();
    let (machine, bids) = input();
    let fallback = PricePerWatt::new();
    let registry = PluginRegistry::new(Arc::new(fallback.clone()), 0);
    registry.activate_strategy(hostile(&rt, "nan"));
    let outcome = registry.rank(&machine, &bids);
    assert_eq!(outcome.answered_by.as_ref(), Some(fallback.plugin_ref()));
    assert_eq!(outcome.scores, fallback.rank(&machine, &bids).unwrap());
    assert_eq!(outcome.faults.len(), 1);
}

#[test]
fn a_faulting_instance_is_discarded_and_the_plugin_keeps_working() {
    // The hostile guest traps on every call; a well-behaved call afterwards must get a
    // clean instance. `tag=` guests behave, so alternate two versions of the same bytes.
    let rt = runtime();
    let (machine, bids) = input();
    let panicky = hostile(&rt, "panic");
    let fine = hostile(&rt, "tag=3");
    for _ in 0..5 {
        assert!(panicky.rank(&machine, &bids).is_err());
        let scores = fine.rank(&machine, &bids).unwrap();
        assert!(scores.iter().all(|s| s.score == 3.0));
    }
}

#[test]
fn socket_imports_are_refused_at_load_with_their_names() {
    let rt = runtime();
    let err = rt.load_strategy(&guest("wants-sockets"), "").err().unwrap();
    match &err {
        LoadError::ForbiddenImports(imports) => assert!(
            imports.iter().all(|i| i.starts_with("wasi:sockets/")) && !imports.is_empty(),
            "{imports:?}"
        ),
        other => panic!("expected a refused import, got {other}"),
    }
    assert!(err.to_string().contains("wasi:sockets/"), "{err}");
    assert_eq!(rt.refused_loads(), 1, "the refusal is counted");
    // The runtime still loads and runs good plugins afterwards.
    let (machine, bids) = input();
    let good = rt.load_strategy(&guest("price-per-watt"), "").unwrap();
    assert_eq!(good.rank(&machine, &bids).unwrap().len(), bids.len());
}

#[test]
fn clocks_randomness_environment_and_files_are_fixed_and_empty() {
    let (machine, bids) = input();
    let seen = |rt: &PluginRuntime, reading: &str| -> f64 {
        let plugin = rt.load_strategy(&guest("reads-ambient"), reading).unwrap();
        let scores = plugin.rank(&machine, &bids).unwrap();
        assert!(scores.iter().all(|s| s.score == scores[0].score));
        scores[0].score
    };
    let (one, two) = (runtime(), runtime());
    assert_eq!(seen(&one, "wall-clock"), FIXED_WALL_CLOCK_S as f64);
    assert_eq!(seen(&one, "monotonic"), 0.0, "no time passes in a plugin");
    assert_eq!(seen(&one, "environment"), 0.0, "no variables, no arguments");
    assert_eq!(seen(&one, "files"), 0.0, "no file can be listed or read");
    // An hour's sleep ends at once: the test runtime's deadline is 5 s.
    assert_eq!(seen(&one, "sleep"), 1.0);
    // HashMap's seed comes from the fixed-seed generator: every instance, every runtime
    // (every machine) hashes alike, so the decision replays.
    let random = seen(&one, "random");
    assert_eq!(random, seen(&one, "random"));
    assert_eq!(random, seen(&two, "random"));
    // Reading the clock twice in one instance group sees the same time too.
    let clock = one
        .load_strategy(&guest("reads-ambient"), "wall-clock")
        .unwrap();
    in_group(|| {
        for _ in 0..3 {
            assert_eq!(clock.rank(&machine, &bids).unwrap()[0].score, 0.0);
        }
    });
    // The imports are there, and each is answered, not refused.
    let imports = one.imports(&guest("reads-ambient")).unwrap();
    for interface in [
        "wasi:clocks/wall-clock@",
        "wasi:clocks/monotonic-clock@",
        "wasi:random/",
    ] {
        assert!(
            imports.iter().any(|i| i.starts_with(interface)),
            "{interface}: {imports:?}"
        );
    }
    for import in &imports {
        assert!(rule_for(import).is_some_and(|r| r.allows()), "{import}");
    }
}

#[test]
fn a_plugin_that_reads_a_file_finds_none() {
    let rt = runtime();
    let (machine, bids) = input();
    let snoop = rt.load_strategy(&guest("wants-filesystem"), "").unwrap();
    let scores = snoop.rank(&machine, &bids).unwrap();
    assert!(
        scores.iter().all(|s| s.score == 0.0),
        "it read something: {scores:?}"
    );
    assert_eq!(rt.refused_loads(), 0);
}

#[test]
fn a_faulting_validator_fails_closed() {
    let rt = runtime();
    let (machine, bids) = input();
    let registry = PluginRegistry::new(Arc::new(PricePerWatt::new()), 0);
    let load = |mode: &str| -> Arc<dyn Validator> {
        Arc::new(
            rt.load_validator(&guest("hostile-validator"), mode)
                .unwrap(),
        )
    };
    // The first working version rejects everything; then a broken one replaces it.
    let working = load("reject-all");
    registry.install_validator(working.clone());
    for mode in ["spin", "trap", "unknown-id", "duplicate-ids"] {
        registry.install_validator(load(mode));
        // Re-installing keeps only one previous: make it the working one again.
        let outcome = registry.validate(&machine, &bids);
        assert_eq!(outcome.faults.len(), 1, "{mode}");
        assert_eq!(outcome.rejections.len(), bids.len(), "{mode}");
        let now = registry.rollback_validator("hostile-validator").unwrap();
        assert_eq!(&now, working.plugin_ref());
    }
    // With no working version at all every bid waits, with the reason.
    let lonely = PluginRegistry::new(Arc::new(PricePerWatt::new()), 0);
    lonely.install_validator(load("trap"));
    let outcome = lonely.validate(&machine, &bids);
    assert_eq!(outcome.rejections.len(), bids.len());
    assert!(
        outcome
            .rejections
            .iter()
            .all(|(_, r)| r.code == "validator-unavailable")
    );
    assert_eq!(lonely.stats()[1].faults.trap, 1);
}

#[test]
fn a_plugin_that_keeps_state_keeps_it_for_its_instance_group_only() {
    // In a group (the clearing's run of one decision chunk) the calls share one fresh
    // instance: `count` climbs 1, 2, 3 and starts again in the next group, on any thread.
    let rt = runtime();
    let plugin = hostile(&rt, "count");
    let faulty = hostile(&rt, "panic");
    let (machine, bids) = input();
    let score = |plugin: &Arc<dyn Strategy>| plugin.rank(&machine, &bids).unwrap()[0].score;
    let group = || {
        gigaspot_plugin_runtime::in_group(|| {
            let mut seen: Vec<f64> = (0..3).map(|_| score(&plugin)).collect();
            // A fault drops only the faulting version's instance.
            assert!(faulty.rank(&machine, &bids).is_err());
            seen.push(score(&plugin));
            seen
        })
    };
    assert_eq!(group(), [1.0, 2.0, 3.0, 4.0]);
    assert_eq!(group(), [1.0, 2.0, 3.0, 4.0], "a new group starts afresh");
    let other_thread = std::thread::scope(|s| s.spawn(group).join().unwrap());
    assert_eq!(other_thread, [1.0, 2.0, 3.0, 4.0]);
    assert_eq!(score(&plugin), 1.0, "outside a group every call is fresh");
}

#[test]
fn a_plugin_that_keeps_state_answers_the_same_in_every_call() {
    // `count` scores with the number of calls its instance has answered: with state
    // carried between calls (or ticks) the answers would climb 1, 2, 3...
    let rt = runtime();
    let plugin = hostile(&rt, "count");
    let (machine, bids) = input();
    for call in 0..5 {
        let scores = plugin.rank(&machine, &bids).unwrap();
        assert!(
            scores.iter().all(|s| s.score == 1.0),
            "call {call} saw state from earlier calls: {scores:?}"
        );
    }
}
