//! Converging the machine to the server's desired state, and observing it for the
//! heartbeat.
//!
//! The rules, from the market's agent duties:
//! - at most one workload container exists that is not being stopped; the wanted one
//!   starts only after every other has exited (SIGTERM, SIGKILL after the grace period)
//!   and been removed;
//! - a switch runs: stop the old workload → reset clocks → apply the new settings → read
//!   them back → start the new container. Settings that cannot be applied or verified
//!   leave the workload stopped (fail closed), the GPUs reset and the reason reported;
//! - after an agent restart the wanted bid's running container is adopted once its
//!   settings read back (applied again if the GPUs lost them), every other container of
//!   this machine is removed;
//! - a workload that exits by itself is reported with its exit code and restarted at the
//!   next interval (its interval is not served, so not charged); one killed because the
//!   container runtime went away is restarted as soon as the runtime is back;
//! - while no bid is assigned the host's background job runs under the same rules (its
//!   settings applied and read back, stopped with the grace period when a bid wins, adopted
//!   after a restart, restarted when the host changes it); it is never reported as served.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use gigaspot_market::agent_protocol::{
    BackgroundStatus, ContainerState, DesiredState, Heartbeat, HostInventory, InventoryGpu,
    Unserved, UnservedReason, WorkloadStatus,
};
use gigaspot_market::bid::BidId;
use gigaspot_market::context::GpuOc;

use crate::container_runtime::{ContainerRuntime, ContainerSpec, Job, OwnContainer, job_labels};
use crate::gpu_control::{GpuControl, GpuError, Inventory, apply, check_settings};

/// How many events the reconciler keeps for inspection.
const EVENT_LOG: usize = 64;

/// Something the reconciler did, kept for tests and logged for operators.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A container started after its settings were applied and read back.
    Started {
        /// What it runs.
        job: Job,
    },
    /// A running container of the wanted job was taken over after an agent restart.
    Adopted {
        /// What it runs.
        job: Job,
    },
    /// A container was stopped and removed.
    Stopped {
        /// What it ran.
        job: Job,
        /// Its exit code.
        exit_code: Option<i64>,
        /// How long the stop took (SIGTERM until exit).
        took: Duration,
    },
    /// The container exited by itself.
    Exited {
        /// What it ran.
        job: Job,
        /// Its exit code.
        exit_code: Option<i64>,
    },
    /// A container was not started; the reason is the reported error.
    NotStarted {
        /// What it would have run.
        job: Job,
        /// Why.
        reason: String,
    },
}

/// How the reconciler builds containers.
#[derive(Debug, Clone)]
pub struct ReconcilerOptions {
    /// Label value that marks this machine's containers.
    pub owner: String,
    /// Time between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// Network mode of workload containers.
    pub network: String,
    /// Hand the GPUs to containers by uuid (real GPUs); off for simulated GPUs.
    pub pass_gpus: bool,
}

/// The job this agent runs.
#[derive(Debug, Clone)]
struct Current {
    job: Job,
    container: String,
    oc: Vec<GpuOc>,
}

/// What the server wants run: the assigned bid's workload, else the host's background job.
#[derive(Debug, Clone)]
struct Target {
    job: Job,
    image: String,
    env: BTreeMap<String, String>,
    oc: Vec<GpuOc>,
}

impl Target {
    fn of(desired: &DesiredState) -> Option<Target> {
        if let Some(w) = &desired.workload {
            return Some(Target {
                job: Job::Bid(w.bid),
                image: w.image.clone(),
                env: w.env.clone(),
                oc: w.oc.clone(),
            });
        }
        desired.background.as_ref().map(|b| Target {
            job: Job::Background(b.revision()),
            image: b.image.clone(),
            env: b.env.clone(),
            oc: b.oc.clone(),
        })
    }
}

/// Drives the GPUs and the container runtime towards the desired state.
pub struct Reconciler<R> {
    gpus: Box<dyn GpuControl>,
    runtime: R,
    options: ReconcilerOptions,
    inventory: Option<Inventory>,
    current: Option<Current>,
    /// A job that exited by itself in this interval: not restarted before the next.
    held_back: Option<(Job, Option<u64>)>,
    /// The last interval the server named.
    interval: Option<u64>,
    /// The GPUs may hold a workload's settings and need a reset once none runs.
    gpus_dirty: bool,
    runtime_ok: bool,
    /// `last_error` is the runtime's outage.
    runtime_error: bool,
    /// The runtime was unreachable since the workload was last seen: its exit is not the
    /// workload's fault.
    runtime_lost: bool,
    workload: Option<WorkloadStatus>,
    /// The background job's container as last seen.
    background: Option<BackgroundStatus>,
    last_error: Option<String>,
    cached_images: Vec<String>,
    events: VecDeque<Event>,
    /// The bid the server asked for last.
    desired_bid: Option<BidId>,
    /// Why that bid does not run, when it does not.
    unserved: Option<Unserved>,
    /// The host's CPU, memory and CUDA version, read with the first inventory.
    host_facts: Option<HostInventory>,
}

impl<R: ContainerRuntime> Reconciler<R> {
    /// A reconciler that has not yet looked at the machine.
    pub fn new(gpus: Box<dyn GpuControl>, runtime: R, options: ReconcilerOptions) -> Self {
        Reconciler {
            gpus,
            runtime,
            options,
            inventory: None,
            current: None,
            held_back: None,
            interval: None,
            // Settings left by an earlier run are cleared before anything else runs.
            gpus_dirty: true,
            runtime_ok: false,
            runtime_error: false,
            runtime_lost: false,
            workload: None,
            background: None,
            last_error: None,
            cached_images: Vec::new(),
            events: VecDeque::new(),
            desired_bid: None,
            unserved: None,
            host_facts: None,
        }
    }

    /// Notes why the desired bid `bid` does not run (reported while it does not).
    fn unserved(&mut self, bid: BidId, reason: UnservedReason, detail: String) {
        self.unserved = Some(Unserved {
            bid,
            reason,
            detail: bounded_error(&detail),
        });
    }

    /// What the reconciler did, oldest first (the last [`EVENT_LOG`]).
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.events.iter()
    }

    /// The container runtime.
    pub fn runtime(&self) -> &R {
        &self.runtime
    }

    /// Records a failure that the next heartbeat reports.
    pub fn note_error(&mut self, error: String) {
        tracing::warn!("{error}");
        self.last_error = Some(error);
        self.runtime_error = false;
    }

    fn event(&mut self, event: Event) {
        tracing::info!("{event:?}");
        if self.events.len() == EVENT_LOG {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    fn inventory(&mut self) -> Option<&Inventory> {
        if self.inventory.is_none() {
            match self.gpus.inventory() {
                Ok(inventory) => {
                    self.host_facts = Some(crate::host_facts::read(&inventory.cuda_version));
                    self.inventory = Some(inventory);
                }
                Err(e) => self.note_error(format!("GPU inventory: {e}")),
            }
        }
        self.inventory.as_ref()
    }

    /// Looks at the machine: whether the runtime answers, whether the current workload
    /// still runs, which images are cached. Call before building a heartbeat.
    pub async fn observe(&mut self) {
        self.inventory();
        if let Err(e) = self.runtime.ping().await {
            self.runtime_down(e.to_string());
            return;
        }
        self.runtime_up();
        match self.runtime.images().await {
            Ok(images) => self.cached_images = images,
            Err(e) => self.note_error(format!("listing images: {e}")),
        }
        let Some(current) = self.current.clone() else {
            return;
        };
        match self.runtime.inspect(&current.container).await {
            Ok(c) if c.state == ContainerState::Running => self.seen(&c, None),
            Ok(c) => self.exited(&current, c),
            Err(e) => self.note_error(format!("inspecting {}: {e}", current.job)),
        }
    }

    /// The runtime answered: an outage it reported is over.
    fn runtime_up(&mut self) {
        self.runtime_ok = true;
        if self.runtime_error {
            self.runtime_error = false;
            self.last_error = None;
        }
    }

    fn runtime_down(&mut self, error: String) {
        if let Some(bid) = self.desired_bid {
            self.unserved(bid, UnservedReason::RuntimeError, error.clone());
        }
        if self.runtime_ok || self.last_error.as_deref() != Some(error.as_str()) {
            self.note_error(error);
        }
        self.runtime_error = true;
        self.runtime_ok = false;
        self.runtime_lost = true;
        self.held_back = None;
        // Unknown until the runtime answers again; not reported as running meanwhile.
        if let Some(w) = &mut self.workload {
            w.state = ContainerState::Exited;
        }
        if let Some(b) = &mut self.background {
            b.state = ContainerState::Exited;
            b.applied = false;
        }
    }

    /// Records the observed state of the container `c` (a bid's workload or the
    /// background job); `applied` tells whether the background job's settings read back
    /// (`None`: unchanged).
    fn seen(&mut self, c: &OwnContainer, applied: Option<bool>) {
        match &c.job {
            Job::Bid(bid) => {
                self.workload = Some(WorkloadStatus {
                    bid: *bid,
                    state: c.state,
                    exit_code: c.exit_code,
                });
            }
            Job::Background(revision) => {
                let applied = applied
                    .or_else(|| self.background.as_ref().map(|b| b.applied))
                    .unwrap_or(false);
                self.background = Some(BackgroundStatus {
                    revision: revision.clone(),
                    state: c.state,
                    applied: applied && c.state == ContainerState::Running,
                    exit_code: c.exit_code,
                });
            }
        }
    }

    /// The current job's container is no longer running.
    fn exited(&mut self, current: &Current, container: OwnContainer) {
        let already = match &current.job {
            Job::Bid(bid) => self
                .workload
                .as_ref()
                .is_some_and(|w| w.bid == *bid && w.state == ContainerState::Exited),
            Job::Background(revision) => self
                .background
                .as_ref()
                .is_some_and(|b| &b.revision == revision && b.state == ContainerState::Exited),
        };
        if already {
            return;
        }
        self.seen(&container, Some(false));
        self.event(Event::Exited {
            job: current.job.clone(),
            exit_code: container.exit_code,
        });
        if let Job::Background(_) = &current.job {
            if !self.runtime_lost {
                self.held_back = Some((current.job.clone(), self.interval));
                self.note_error(format!(
                    "{} exited with code {}; it restarts next interval",
                    current.job,
                    container
                        .exit_code
                        .map_or_else(|| "unknown".to_owned(), |c| c.to_string())
                ));
            }
            return;
        }
        let Job::Bid(bid) = current.job else {
            return;
        };
        if !self.runtime_lost {
            // The workload's own doing: it exited before the interval ended.
            let detail = format!(
                "exit code {}{}",
                container
                    .exit_code
                    .map_or_else(|| "unknown".to_owned(), |c| c.to_string()),
                if container.oom_killed {
                    ", killed for running out of memory"
                } else {
                    ""
                }
            );
            self.unserved(bid, UnservedReason::ExitedEarly, detail);
            self.held_back = Some((current.job.clone(), self.interval));
            self.note_error(format!(
                "the workload of bid {} exited with code {}; it restarts next interval",
                bid,
                container
                    .exit_code
                    .map_or_else(|| "unknown".to_owned(), |c| c.to_string())
            ));
        }
    }

    /// Converges to `desired`.
    pub async fn converge(&mut self, desired: &DesiredState) {
        if desired.interval != self.interval {
            self.interval = desired.interval;
        }
        self.desired_bid = desired.workload.as_ref().map(|w| w.bid);
        if self.unserved.as_ref().map(|u| u.bid) != self.desired_bid {
            self.unserved = None;
        }
        if self.inventory().is_none() {
            if let Some(bid) = self.desired_bid {
                self.unserved(
                    bid,
                    UnservedReason::GpuLost,
                    "the GPUs cannot be read".into(),
                );
            }
            // Without the GPUs nothing may run: settings could not be guaranteed.
            self.stop_all(None).await;
            return;
        }
        if let Err(e) = self.runtime.ping().await {
            self.runtime_down(e.to_string());
            return;
        }
        self.runtime_up();
        let target = Target::of(desired);
        let want = target.as_ref();
        let mut image_ready = true;
        if let Some(w) = want {
            // Pulled before the old workload stops, so that a switch waits for no download.
            if let Err(e) = self.ensure_image(&w.image).await {
                image_ready = false;
                let reason = match e {
                    crate::container_runtime::RuntimeError::ImageUnavailable { .. } => {
                        UnservedReason::ImageUnavailable
                    }
                    _ => UnservedReason::RuntimeError,
                };
                if let Job::Bid(bid) = w.job {
                    self.unserved(bid, reason, e.to_string());
                }
                self.not_started(&w.job, e.to_string());
            }
        }
        let kept = self.stop_all(want).await;
        if self.runtime_ok {
            self.runtime_lost = false;
        }
        // Only what runs (or is wanted) is reported.
        if want.is_none_or(|w| w.job.bid().is_none()) {
            self.workload = None;
        }
        if want.is_none_or(|w| w.job.bid().is_some()) {
            self.background = None;
        }
        match (want, kept) {
            (Some(_), true) => {}
            (Some(w), false) => {
                let held = self
                    .held_back
                    .as_ref()
                    .is_some_and(|(job, interval)| *job == w.job && *interval == desired.interval);
                if !held && image_ready && self.runtime_ok {
                    self.start(w).await;
                }
            }
            (None, _) => {
                if self.gpus_dirty {
                    self.reset_gpus();
                }
            }
        }
        for image in &desired.prepull {
            if let Err(e) = self.ensure_image(image).await {
                tracing::warn!("pre-pull of {image}: {e}");
            }
        }
    }

    async fn ensure_image(
        &mut self,
        image: &str,
    ) -> Result<(), crate::container_runtime::RuntimeError> {
        if self.runtime.has_image(image).await? {
            return Ok(());
        }
        self.runtime.pull(image).await?;
        if !self.cached_images.iter().any(|i| i == image) {
            self.cached_images.push(image.to_owned());
        }
        Ok(())
    }

    /// Stops and removes every container of this machine except a running one of the
    /// wanted job whose settings still hold; answers whether such a one was kept.
    async fn stop_all(&mut self, want: Option<&Target>) -> bool {
        let containers = match self.runtime.list(&self.options.owner).await {
            Ok(c) => c,
            Err(e) => {
                self.runtime_down(e.to_string());
                return false;
            }
        };
        let mut kept = false;
        for c in containers {
            if let Some(w) = want
                && !kept
                && c.job == w.job
                && c.state == ContainerState::Running
                && self.keep(w, &c)
            {
                kept = true;
                continue;
            }
            if let Some(current) = self.current.clone()
                && current.container == c.id
                && c.state == ContainerState::Exited
            {
                self.exited(&current, c.clone());
            }
            let started = Instant::now();
            let stopped = match self.runtime.stop(&c.id, self.options.grace).await {
                Ok(()) => self.runtime.inspect(&c.id).await.map(|s| s.exit_code),
                Err(e) => Err(e),
            };
            let exit_code = match stopped {
                Ok(code) => code,
                Err(e) => {
                    // Never start another workload beside one that may still run.
                    self.note_error(format!("stopping {}: {e}", c.job));
                    self.runtime_ok = false;
                    return false;
                }
            };
            if let Err(e) = self.runtime.remove(&c.id).await {
                self.note_error(format!("removing the container of {}: {e}", c.job));
            }
            if c.state != ContainerState::Exited {
                self.event(Event::Stopped {
                    job: c.job.clone(),
                    exit_code,
                    took: started.elapsed(),
                });
            }
            if self
                .current
                .as_ref()
                .is_some_and(|cur| cur.container == c.id)
            {
                self.current = None;
            }
        }
        if !kept {
            self.current = None;
        }
        kept
    }

    /// Whether the running container `c` of the wanted job stays: its settings read back,
    /// or (after an agent restart, or when someone changed them) they are applied again
    /// and read back. A container whose settings cannot be restored is stopped.
    fn keep(&mut self, w: &Target, c: &OwnContainer) -> bool {
        if let Err(drift) = self.verify(&w.oc)
            && let Err(e) = apply(self.gpus.as_mut(), &w.oc)
        {
            self.note_error(format!(
                "{} runs without its settings ({drift}) and they cannot be applied ({e}); stopping it",
                w.job
            ));
            return false;
        }
        let adopted = self
            .current
            .as_ref()
            .is_none_or(|cur| cur.container != c.id);
        self.current = Some(Current {
            job: w.job.clone(),
            container: c.id.clone(),
            oc: w.oc.clone(),
        });
        self.seen(c, Some(true));
        self.gpus_dirty = true;
        if adopted {
            self.last_error = None;
            self.event(Event::Adopted { job: w.job.clone() });
        }
        if w.job.bid().is_some() {
            self.unserved = None;
        }
        true
    }

    /// Reads back every GPU's power limit against `oc`.
    fn verify(&self, oc: &[GpuOc]) -> Result<(), String> {
        for (gpu, settings) in oc.iter().enumerate() {
            let read = self
                .gpus
                .power_limit(gpu as u32)
                .map_err(|e| e.to_string())?;
            if read != settings.power_limit_w {
                return Err(format!(
                    "gpu {gpu}: power limit reads back {read} W, expected {} W",
                    settings.power_limit_w
                ));
            }
        }
        Ok(())
    }

    fn reset_gpus(&mut self) {
        let count = self.inventory.as_ref().map_or(0, |i| i.gpus.len() as u32);
        let mut failed = None;
        for gpu in 0..count {
            if let Err(e) = self.gpus.reset(gpu) {
                failed = Some(e);
            }
        }
        match failed {
            Some(e) => self.note_error(format!("resetting GPUs: {e}")),
            None => self.gpus_dirty = false,
        }
    }

    /// Applies the job's settings and starts its container; fails closed.
    async fn start(&mut self, w: &Target) {
        let bid = w.job.bid();
        // Any earlier settings stay in force until `apply` resets them; mark them dirty
        // first so that a failure below ends with a reset.
        self.gpus_dirty = true;
        if let Err(e) = apply(self.gpus.as_mut(), &w.oc) {
            if let Some(bid) = bid {
                self.unserved(bid, settings_fault(&e), e.to_string());
            }
            self.not_started(&w.job, format!("settings could not be applied: {e}"));
            return;
        }
        let gpu_uuids = self
            .options
            .pass_gpus
            .then(|| {
                self.inventory
                    .as_ref()
                    .map(|i| i.gpus.iter().map(|g| g.uuid.clone()).collect())
            })
            .flatten();
        let name = match &w.job {
            Job::Bid(bid) => format!("gigaspot-{}-bid-{bid}", self.options.owner),
            Job::Background(revision) => {
                format!("gigaspot-{}-background-{revision}", self.options.owner)
            }
        };
        let spec = ContainerSpec {
            name,
            image: w.image.clone(),
            env: w.env.clone(),
            labels: job_labels(&self.options.owner, &w.job),
            gpu_uuids,
            network: self.options.network.clone(),
        };
        let id = match self.runtime.create(&spec).await {
            Ok(id) => id,
            Err(e) => {
                self.reset_gpus();
                if let Some(bid) = bid {
                    self.unserved(bid, UnservedReason::RuntimeError, e.to_string());
                }
                self.not_started(&w.job, format!("creating its container: {e}"));
                return;
            }
        };
        if let Err(e) = self.runtime.start(&id).await {
            let _ = self.runtime.remove(&id).await;
            self.reset_gpus();
            if let Some(bid) = bid {
                self.unserved(bid, UnservedReason::RuntimeError, e.to_string());
            }
            self.not_started(&w.job, format!("starting its container: {e}"));
            return;
        }
        self.current = Some(Current {
            job: w.job.clone(),
            container: id.clone(),
            oc: w.oc.clone(),
        });
        self.held_back = None;
        self.last_error = None;
        if bid.is_some() {
            self.unserved = None;
        }
        self.seen(
            &OwnContainer {
                id,
                job: w.job.clone(),
                state: ContainerState::Running,
                exit_code: None,
                oom_killed: false,
            },
            Some(true),
        );
        self.event(Event::Started { job: w.job.clone() });
    }

    fn not_started(&mut self, job: &Job, reason: String) {
        match job {
            Job::Bid(_) => self.workload = None,
            Job::Background(_) => self.background = None,
        }
        let error = match job {
            Job::Bid(bid) => format!("bid {bid} not started: {reason}"),
            Job::Background(revision) => {
                format!("the background job ({revision}) not started: {reason}")
            }
        };
        // Retried at every heartbeat: the log and the event list record each failure once,
        // not every few seconds.
        if self.last_error.as_deref() == Some(error.as_str()) {
            return;
        }
        self.note_error(error);
        self.event(Event::NotStarted {
            job: job.clone(),
            reason,
        });
    }

    /// The heartbeat describing what [`Reconciler::observe`] and the last convergence saw.
    pub fn heartbeat(&self) -> Heartbeat {
        // The job whose container runs now: a bid's workload or the background job.
        let running =
            self.current
                .as_ref()
                .filter(|_| self.runtime_ok)
                .filter(|c| match &c.job {
                    Job::Bid(bid) => self
                        .workload
                        .as_ref()
                        .is_some_and(|w| w.bid == *bid && w.state == ContainerState::Running),
                    Job::Background(revision) => self.background.as_ref().is_some_and(|b| {
                        &b.revision == revision && b.state == ContainerState::Running
                    }),
                });
        let gpu_count = self.inventory.as_ref().map_or(0, |i| i.gpus.len() as u32);
        let mut applied_settings = Vec::with_capacity(gpu_count as usize);
        let mut measured_power_w = Vec::with_capacity(gpu_count as usize);
        for gpu in 0..gpu_count {
            let read = self.gpus.power_limit(gpu).unwrap_or(0);
            let requested = running.and_then(|c| c.oc.get(gpu as usize).copied());
            applied_settings.push(GpuOc {
                power_limit_w: read,
                ..requested.unwrap_or(GpuOc {
                    power_limit_w: read,
                    core_lock_mhz: None,
                    mem_lock_mhz: None,
                    core_offset_mhz: None,
                    mem_offset_mhz: None,
                })
            });
            measured_power_w.push(self.gpus.power_usage(gpu).unwrap_or(0));
        }
        let settings_hold = running.is_some_and(|c| self.verify(&c.oc).is_ok());
        let background = self.background.clone().map(|mut b| {
            b.applied = settings_hold
                && running.is_some_and(|c| c.job == Job::Background(b.revision.clone()));
            b
        });
        // The rest is about a bid's workload.
        let running = running.filter(|c| c.job.bid().is_some());
        let applied = running.is_some() && settings_hold;
        // Which of the running bid's settings the driver confirms on reading them back.
        let verification = match running.filter(|_| applied) {
            Some(c) => {
                c.oc.iter()
                    .enumerate()
                    .map(|(gpu, wanted)| {
                        let gpu = gpu as u32;
                        let read_pl = self.gpus.power_limit(gpu).unwrap_or(0);
                        let read = self.gpus.read_settings(gpu).unwrap_or_default();
                        check_settings(wanted, read_pl, &read)
                    })
                    .collect()
            }
            None => Vec::new(),
        };
        // Why the desired bid does not run, while it does not.
        let unserved = self
            .unserved
            .clone()
            .filter(|u| Some(u.bid) == self.desired_bid)
            .filter(|u| running.is_none_or(|c| c.job.bid() != Some(u.bid) || !applied));
        Heartbeat {
            working: self.runtime_ok && self.inventory.is_some(),
            running_bid: running.filter(|_| applied).and_then(|c| c.job.bid()),
            applied,
            measured_power_w,
            applied_settings,
            workload: self.workload.clone(),
            last_error: self.last_error.as_deref().map(bounded_error),
            cached_images: self.cached_images.clone(),
            unserved,
            host: self.host_facts.clone(),
            verification,
            background,
            gpus: self.inventory.as_ref().map(|i| {
                i.gpus
                    .iter()
                    .map(|g| InventoryGpu {
                        model: g.model.clone(),
                        uuid: g.uuid.clone(),
                        card_min_w: g.min_power_w,
                        card_max_w: g.max_power_w,
                    })
                    .collect()
            }),
        }
    }
}

/// Whose fault a failure to apply a bid's settings is: the card refusing them (the bid's,
/// as they were inside the published ranges) or the driver failing (the host's).
fn settings_fault(e: &GpuError) -> UnservedReason {
    match e {
        GpuError::OutOfRange { .. }
        | GpuError::Unsupported { .. }
        | GpuError::NotVerified { .. } => UnservedReason::SettingsRefused,
        GpuError::NoSuchGpu(_) => UnservedReason::GpuLost,
        GpuError::Unavailable(_) | GpuError::Driver { .. } => UnservedReason::DriverError,
    }
}

/// An error text cut to what the server accepts in a heartbeat.
fn bounded_error(error: &str) -> String {
    let max = gigaspot_market::agent_protocol::MAX_ERROR_BYTES;
    if error.len() <= max {
        return error.to_string();
    }
    let mut cut = max - 3;
    while !error.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &error[..cut])
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::no_containers::NoContainers;
    use crate::simulated_backend::SimulatedGpus;
    use gigaspot_market::agent_protocol::Workload;

    fn reconciler() -> Reconciler<NoContainers> {
        Reconciler::new(
            Box::new(SimulatedGpus::from_spec("1xRTX4090").unwrap()),
            NoContainers::default(),
            ReconcilerOptions {
                owner: "m".into(),
                grace: Duration::from_secs(1),
                network: "none".into(),
                pass_gpus: false,
            },
        )
    }

    fn workload(bid: BidId, image: &str) -> Workload {
        Workload {
            bid,
            image: image.into(),
            env: BTreeMap::new(),
            oc: vec![GpuOc {
                power_limit_w: 250,
                core_lock_mhz: None,
                mem_lock_mhz: None,
                core_offset_mhz: None,
                mem_offset_mhz: None,
            }],
        }
    }

    #[tokio::test]
    async fn the_winner_runs_and_the_best_losers_images_are_pulled_ahead() {
        let mut r = reconciler();
        let desired = DesiredState {
            interval: Some(7),
            workload: Some(workload(1, "app:1")),
            prepull: vec!["next:1".into(), "later:2".into()],
            background: None,
        };
        r.converge(&desired).await;
        r.observe().await;
        let hb = r.heartbeat();
        assert_eq!(hb.running_bid, Some(1));
        assert_eq!(hb.applied_settings[0].power_limit_w, 250);
        assert_eq!(hb.cached_images, vec!["app:1", "later:2", "next:1"]);
    }

    #[tokio::test]
    async fn a_switch_logs_the_stop_before_the_start() {
        let mut r = reconciler();
        for (interval, bid) in [(1, 1), (2, 2)] {
            let desired = DesiredState {
                interval: Some(interval),
                workload: Some(workload(bid, "app:1")),
                prepull: Vec::new(),
                background: None,
            };
            r.converge(&desired).await;
        }
        let events: Vec<&Event> = r.events().collect();
        assert!(matches!(events[0], Event::Started { job: Job::Bid(1) }));
        assert!(matches!(
            events[1],
            Event::Stopped {
                job: Job::Bid(1),
                ..
            }
        ));
        assert!(matches!(events[2], Event::Started { job: Job::Bid(2) }));
        assert_eq!(r.runtime().list("m").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_lasting_failure_is_retried_every_time_but_recorded_once() {
        let mut gpus = SimulatedGpus::from_spec("1xRTX4090").unwrap();
        gpus.inject(crate::simulated_backend::Injection {
            operation: "set_power_limit",
            gpu: 0,
            times: 3,
        });
        let mut r = Reconciler::new(
            Box::new(gpus),
            NoContainers::default(),
            ReconcilerOptions {
                owner: "m".into(),
                grace: Duration::from_secs(1),
                network: "none".into(),
                pass_gpus: false,
            },
        );
        let desired = DesiredState {
            interval: Some(1),
            workload: Some(workload(1, "app:1")),
            prepull: Vec::new(),
            background: None,
        };
        for _ in 0..3 {
            r.converge(&desired).await;
        }
        let failures = r
            .events()
            .filter(|e| matches!(e, Event::NotStarted { .. }))
            .count();
        assert_eq!(failures, 1);
        assert!(r.heartbeat().last_error.is_some());
        // The driver recovers: the fourth attempt starts the workload and clears the error.
        r.converge(&desired).await;
        r.observe().await;
        let hb = r.heartbeat();
        assert_eq!(hb.running_bid, Some(1));
        assert_eq!(hb.last_error, None);
    }
}
