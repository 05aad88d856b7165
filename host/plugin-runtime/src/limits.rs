//! The sandbox limits every plugin call runs under.

use std::time::Duration;

/// Limits applied to every plugin call. The defaults suit ranking a machine's whole
/// order book (thousands of bids) with plenty of headroom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginLimits {
    /// Fuel per call: the deterministic CPU budget (about one unit per WebAssembly
    /// instruction). Running out is the verdict-relevant limit. Default 200 million.
    pub fuel: u64,
    /// Wall-clock deadline per call, enforced through epoch interruption as a backstop
    /// behind fuel. Default 1 s.
    pub timeout: Duration,
    /// Cap on the total linear memory of one instance, in bytes. Default 64 MiB.
    pub memory_bytes: u64,
    /// Cap on the WebAssembly stack, in bytes. Default 512 KiB.
    pub max_wasm_stack: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            fuel: 200_000_000,
            timeout: Duration::from_secs(1),
            memory_bytes: 64 << 20,
            max_wasm_stack: 512 << 10,
        }
    }
}
