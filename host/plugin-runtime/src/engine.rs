//! The wasmtime engine configuration shared by every plugin, and the epoch ticker that
//! drives wall-clock deadlines.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::limits::PluginLimits;

/// How often the engine's epoch advances; deadlines are whole multiples of it.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Plugin instances alive at once, all versions and calls together (each call holds one
/// for its duration; more concurrent calls than this fail as a plugin fault).
const MAX_LIVE_INSTANCES: u32 = 256;

/// Freed instance slots whose memory is returned to the kernel together. A slot's memory
/// stays resident until its batch is returned, so this bounds what plugins that grow to
/// the memory cap can hold at once (8 × `memory_bytes`).
const DECOMMIT_BATCH: usize = 8;

/// Bytes of each memory slot kept resident after its instance is dropped: the pages a
/// call dirtied are reset with `memset` (found with Linux's `PAGEMAP_SCAN`, 6.7+) instead
/// of being returned to the kernel and faulted in again by the next instance. Covers a
/// Rust guest's 1 MiB stack, its data and a 1,000-bid call's heap.
const KEEP_RESIDENT: usize = 4 << 20;

/// Unused slots that keep their resident pages; others are returned to the kernel. With
/// [`KEEP_RESIDENT`] this bounds what idle slots hold to 64 MiB.
const WARM_SLOTS: u32 = 16;

/// An engine configured for deterministic, bounded plugin calls.
pub(crate) fn build_engine(limits: &PluginLimits) -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(limits.max_wasm_stack)
        // Replayable decisions: identical results on every host for the same input.
        .cranelift_nan_canonicalization(true)
        .relaxed_simd_deterministic(true)
        // Synchronous calls only; cheaper entry into components.
        .concurrency_support(false);
    // Every call gets a fresh instance (no state survives between calls): the pooling
    // allocator makes that cheap by reusing pre-reserved slots and resetting memory from
    // its copy-on-write image instead of mapping it anew; where the kernel has
    // `PAGEMAP_SCAN`, only the pages a call dirtied are reset, and they stay mapped.
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(MAX_LIVE_INSTANCES)
        .total_core_instances(MAX_LIVE_INSTANCES * 4)
        .total_memories(MAX_LIVE_INSTANCES * 2)
        .total_tables(MAX_LIVE_INSTANCES * 4)
        .max_memories_per_component(2)
        .max_memory_size(usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX))
        // Return freed slots' memory to the kernel in batches: one madvise for many
        // instances instead of one each (which also serialises parallel ticks).
        .decommit_batch_size(DECOMMIT_BATCH)
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .pagemap_scan(Enabled::Auto)
        .max_unused_warm_slots(WARM_SLOTS);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config)
}

/// Number of epoch ticks that covers `timeout`, at least one.
pub(crate) fn deadline_ticks(timeout: Duration) -> u64 {
    let ticks = timeout.as_nanos().div_ceil(EPOCH_TICK.as_nanos());
    u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
}

/// A background thread that advances the engine's epoch every [`EPOCH_TICK`]; it stops
/// when dropped.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts ticking `engine`.
    pub(crate) fn start(engine: Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("gigaspot-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_round_up_to_whole_ticks() {
        assert_eq!(deadline_ticks(Duration::ZERO), 1);
        assert_eq!(deadline_ticks(EPOCH_TICK), 1);
        assert_eq!(deadline_ticks(EPOCH_TICK + Duration::from_nanos(1)), 2);
        assert_eq!(deadline_ticks(Duration::from_secs(1)), 200);
    }
}
