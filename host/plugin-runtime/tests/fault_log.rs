//! The log of a faulting plugin names its version and the panic message. Alone in its test
//! binary: tracing caches per call site whether anyone listens, and another test thread
//! hitting the same call site while this test's scoped subscriber is being set up can
//! leave that cache saying no one does.

use std::sync::Arc;
use std::time::Duration;

use gigaspot_market::sample::SampleMarket;
use gigaspot_market::{PricePerWatt, Strategy};
use gigaspot_plugin_runtime::{ArtifactCache, PluginLimits, PluginRegistry, PluginRuntime};
use gigaspot_tests::guest;

fn runtime() -> PluginRuntime {
    let limits = PluginLimits {
        fuel: 50_000_000,
        timeout: Duration::from_secs(5),
        ..PluginLimits::default()
    };
    PluginRuntime::new(limits, ArtifactCache::in_memory()).unwrap()
}

fn input() -> (
    gigaspot_market::MachineContext,
    Vec<gigaspot_market::CandidateBid>,
) {
    let mut sample = SampleMarket::new(21);
    let mut machine = sample.machine(1);
    let bids = sample.bids(&mut machine, 30);
    (machine, bids)
}

fn hostile(rt: &PluginRuntime, mode: &str) -> Arc<dyn Strategy> {
    Arc::new(rt.load_strategy(&guest("hostile-strategy"), mode).unwrap())
}

/// A log sink for one thread's events.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_log_names_the_version_and_the_panic_message() {
    let rt = runtime();
    let (machine, bids) = input();
    let registry = PluginRegistry::new(Arc::new(PricePerWatt::new()), 1);
    let bad = hostile(&rt, "panic");
    registry.activate_strategy(bad.clone());
    let sink = Captured::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || registry.rank(&machine, &bids));
    let log = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    let fault_line = log
        .lines()
        .find(|l| l.contains("plugin fault:"))
        .unwrap_or_else(|| panic!("no fault logged:\n{log}"));
    assert!(fault_line.contains("WARN"), "{fault_line}");
    assert!(
        fault_line.contains(&format!("digest={}", bad.plugin_ref().digest)),
        "{fault_line}"
    );
    assert!(
        fault_line.contains("plugin panicked at hostile-strategy/src/lib.rs:")
            && fault_line.contains("deliberate panic"),
        "{fault_line}"
    );
    assert!(
        log.contains("quarantine") && log.contains("deliberate panic"),
        "the quarantine says why:\n{log}"
    );
}
