//! One plugin version's sandbox: its stores, limits, instance pool and the mapping of
//! wasmtime errors to [`PluginFault`]s.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use gigaspot_market::{CandidateBid, MachineContext, PluginFault, PluginInfo, Rejection, Score};
use wasmtime::{Engine, ResourceLimiter, Store, Trap, WasmBacktrace};

use crate::ambient::FixedRandom;
use crate::contract::{StrategyWorld, ValidatorWorld};
use crate::engine::deadline_ticks;
use crate::guest_io::GuestOutput;
use crate::limits::PluginLimits;

/// Most table elements an instance may have; tables hold function references only.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Per-store host state: the memory accounting, the call's captured output and the
/// instance's fixed-seed randomness. Plugins get no WASI context (see [`crate::guest_io`]).
pub(crate) struct HostState {
    memory: MemoryCap,
    /// What the guest wrote to stdout and stderr during the current call.
    pub(crate) output: GuestOutput,
    /// The instance's fixed-seed randomness (see [`crate::ambient`]).
    pub(crate) random: FixedRandom,
}

/// A fault with what an author needs to find its cause: the guest's output during the
/// call and the wasm backtrace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultDetail {
    /// The fault as the market records it.
    pub fault: PluginFault,
    /// The guest's stdout and stderr during the failed call (at most
    /// [`crate::OUTPUT_CAP_BYTES`], with a note when more was dropped).
    pub output: String,
    /// The wasm backtrace of the trap, when there is one.
    pub backtrace: Option<String>,
}

/// Caps the total linear memory of an instance and remembers when the cap was hit, so
/// that the allocation failure (a trap inside the guest) is reported as a memory fault.
struct MemoryCap {
    cap: u64,
    used: u64,
    exceeded: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Called at creation too (current = 0), so `used` covers every memory of the store.
        let delta = desired.saturating_sub(current) as u64;
        match self.used.checked_add(delta) {
            Some(total) if total <= self.cap => {
                self.used = total;
                Ok(true)
            }
            _ => {
                self.exceeded = true;
                Ok(false)
            }
        }
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// A plugin world (of one contract version) the sandbox can instantiate, configure and
/// describe.
pub(crate) trait World: Send + Sync + 'static {
    /// The instantiated bindings.
    type Instance: Send + 'static;
    /// Instantiates the pre-linked component in `store`.
    fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Self::Instance>;
    /// Calls the plugin's `configure`.
    fn configure(
        instance: &Self::Instance,
        store: &mut Store<HostState>,
        config: &str,
    ) -> wasmtime::Result<Result<(), String>>;
    /// Calls the plugin's `info`.
    fn info(
        instance: &Self::Instance,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<PluginInfo>;
}

/// An instance with its own store, configured and ready for calls.
struct Warm<I> {
    store: Store<HostState>,
    instance: I,
}

/// Why a fresh instance could not be made ready.
pub(crate) enum StartError {
    /// The plugin's `configure` refused the configuration.
    Refused(String),
    /// Instantiation or `configure` faulted.
    Fault(PluginFault),
}

/// Runs calls into one plugin version under its limits, each in a fresh instance, or in
/// one fresh instance per [instance group](crate::instance_group): nothing a plugin keeps
/// in its memory survives into a call outside its group (or into the next tick), so every
/// decision replays exactly from its input and its group's earlier calls.
pub(crate) struct Sandbox<W: World> {
    /// Tells this sandbox's instances apart in an instance group.
    id: u64,
    engine: Engine,
    world: W,
    limits: PluginLimits,
    config: String,
    calls: AtomicU64,
    fuel_consumed: AtomicU64,
    last_fault: Mutex<Option<FaultDetail>>,
}

impl<W: World> Sandbox<W> {
    /// A sandbox for `world`, whose instances are configured with `config`.
    pub(crate) fn new(engine: Engine, world: W, limits: PluginLimits, config: String) -> Self {
        Sandbox {
            id: crate::instance_group::next_id(),
            engine,
            world,
            limits,
            config,
            calls: AtomicU64::new(0),
            fuel_consumed: AtomicU64::new(0),
            last_fault: Mutex::new(None),
        }
    }

    /// Makes a first instance, which proves that instantiation and configuration work,
    /// and reads the plugin's metadata with it.
    pub(crate) fn start(&self) -> Result<PluginInfo, StartError> {
        let mut warm = self.fresh()?;
        self.arm(&mut warm.store);
        W::info(&warm.instance, &mut warm.store)
            .map_err(|e| StartError::Fault(self.classify(e, &warm.store)))
    }

    /// Calls `f` with a full fuel budget and deadline on a configured instance: the open
    /// instance group's, or a fresh one. After the call the instance is kept for the
    /// group's next call, or dropped (outside a group, or after a fault).
    pub(crate) fn call<R>(
        &self,
        f: impl FnOnce(&W::Instance, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginFault> {
        let mut warm = match crate::instance_group::take::<Warm<W::Instance>>(self.id) {
            Some(warm) => warm,
            None => self.fresh().map_err(|e| match e {
                StartError::Fault(fault) => fault,
                StartError::Refused(msg) => {
                    PluginFault::Trap(format!("configuration refused on a new instance: {msg}"))
                }
            })?,
        };
        self.arm(&mut warm.store);
        let result = f(&warm.instance, &mut warm.store);
        self.calls.fetch_add(1, Ordering::Relaxed);
        let left = warm.store.get_fuel().unwrap_or(0);
        self.fuel_consumed
            .fetch_add(self.limits.fuel.saturating_sub(left), Ordering::Relaxed);
        match result {
            Ok(answer) => {
                crate::instance_group::keep(self.id, warm);
                Ok(answer)
            }
            // A faulted instance may be in any state: the group's next call gets a new one.
            Err(e) => Err(self.classify(e, &warm.store)),
        }
    }

    /// Calls made so far, successful or not.
    pub(crate) fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Fuel consumed by all calls so far.
    pub(crate) fn fuel_consumed(&self) -> u64 {
        self.fuel_consumed.load(Ordering::Relaxed)
    }

    /// The latest fault with the guest's output and the backtrace.
    pub(crate) fn last_fault(&self) -> Option<FaultDetail> {
        self.last_fault
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn fresh(&self) -> Result<Warm<W::Instance>, StartError> {
        let mut store = Store::new(
            &self.engine,
            HostState {
                memory: MemoryCap {
                    cap: self.limits.memory_bytes,
                    used: 0,
                    exceeded: false,
                },
                output: GuestOutput::default(),
                random: FixedRandom::default(),
            },
        );
        store.limiter(|state| &mut state.memory);
        self.arm(&mut store);
        let fault = |e, store: &Store<HostState>| StartError::Fault(self.classify(e, store));
        let instance = match self.world.instantiate(&mut store) {
            Ok(instance) => instance,
            Err(e) => return Err(fault(e, &store)),
        };
        match W::configure(&instance, &mut store, &self.config) {
            Ok(Ok(())) => Ok(Warm { store, instance }),
            Ok(Err(refusal)) => Err(StartError::Refused(refusal)),
            Err(e) => Err(fault(e, &store)),
        }
    }

    /// Gives the store a full fuel budget, a new wall-clock deadline and an empty output.
    fn arm(&self, store: &mut Store<HostState>) {
        store.data_mut().output.clear();
        // Fuel is enabled on the engine, so setting it cannot fail.
        let _ = store.set_fuel(self.limits.fuel);
        store.set_epoch_deadline(deadline_ticks(self.limits.timeout));
    }

    /// The fault `error` stands for, remembered with the guest's output and backtrace.
    fn classify(&self, error: wasmtime::Error, store: &Store<HostState>) -> PluginFault {
        let output = &store.data().output;
        let fault = if store.data().memory.exceeded {
            PluginFault::Memory {
                limit_bytes: self.limits.memory_bytes,
            }
        } else {
            match error.downcast_ref::<Trap>() {
                Some(Trap::OutOfFuel) => PluginFault::OutOfFuel {
                    budget: self.limits.fuel,
                },
                Some(Trap::Interrupt) => PluginFault::Timeout {
                    timeout_ms: u64::try_from(self.limits.timeout.as_millis()).unwrap_or(u64::MAX),
                },
                _ => match output.panic_message() {
                    Some(message) => PluginFault::Panic(message),
                    None => PluginFault::Trap(trap_message(&error, &output.text())),
                },
            }
        };
        *self.last_fault.lock().unwrap_or_else(|p| p.into_inner()) = Some(FaultDetail {
            fault: fault.clone(),
            output: output.text(),
            backtrace: error.downcast_ref::<WasmBacktrace>().map(|b| b.to_string()),
        });
        fault
    }
}

/// Most characters of guest output quoted in a trap's message.
const QUOTED_OUTPUT_CHARS: usize = 300;

/// The trap in one line (its cause, without the backtrace), and the end of what the guest
/// wrote before it, if anything.
fn trap_message(error: &wasmtime::Error, output: &str) -> String {
    let cause = error.root_cause().to_string();
    let output = output.trim();
    if output.is_empty() {
        return cause;
    }
    let start = output
        .char_indices()
        .rev()
        .nth(QUOTED_OUTPUT_CHARS - 1)
        .map_or(0, |(i, _)| i);
    let ellipsis = if start > 0 { "…" } else { "" };
    format!("{cause} (guest output: {ellipsis}{})", &output[start..])
}

/// A sandbox's call statistics, whatever world and contract version it calls.
pub(crate) trait Calls: Send + Sync {
    /// Makes a first instance, which proves that instantiation and configuration work,
    /// and reads the plugin's metadata with it.
    fn start(&self) -> Result<PluginInfo, StartError>;
    /// Calls made so far, successful or not.
    fn calls(&self) -> u64;
    /// Fuel consumed by all calls so far.
    fn fuel_consumed(&self) -> u64;
    /// The latest fault with the guest's output and the backtrace.
    fn last_fault(&self) -> Option<FaultDetail>;
}

/// A strategy sandbox of any contract version.
pub(crate) trait RankCalls: Calls {
    /// Ranks `bids` in a fresh instance.
    fn rank(
        &self,
        machine: &MachineContext,
        bids: &[CandidateBid],
    ) -> Result<Vec<Score>, PluginFault>;
}

/// A validator sandbox of any contract version.
pub(crate) trait ValidateCalls: Calls {
    /// Validates `bids` in a fresh instance.
    fn validate(
        &self,
        machine: &MachineContext,
        bids: &[CandidateBid],
    ) -> Result<Vec<Rejection>, PluginFault>;
}

impl<W: World> Calls for Sandbox<W> {
    fn start(&self) -> Result<PluginInfo, StartError> {
        Sandbox::start(self)
    }
    fn calls(&self) -> u64 {
        Sandbox::calls(self)
    }
    fn fuel_consumed(&self) -> u64 {
        Sandbox::fuel_consumed(self)
    }
    fn last_fault(&self) -> Option<FaultDetail> {
        Sandbox::last_fault(self)
    }
}

impl<W: StrategyWorld> RankCalls for Sandbox<W> {
    fn rank(
        &self,
        machine: &MachineContext,
        bids: &[CandidateBid],
    ) -> Result<Vec<Score>, PluginFault> {
        self.call(|instance, store| W::rank(instance, store, machine, bids))
    }
}

impl<W: ValidatorWorld> ValidateCalls for Sandbox<W> {
    fn validate(
        &self,
        machine: &MachineContext,
        bids: &[CandidateBid],
    ) -> Result<Vec<Rejection>, PluginFault> {
        self.call(|instance, store| W::validate(instance, store, machine, bids))
    }
}
