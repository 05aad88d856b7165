//! Running workloads: the container-runtime trait the reconciler drives, and what every
//! backend shares (labels, the container specification).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use gigaspot_market::agent_protocol::ContainerState;
use gigaspot_market::bid::BidId;
use thiserror::Error;

/// Label naming the machine a container belongs to, so that an agent finds its own
/// containers after a restart and leaves everyone else's alone.
pub const OWNER_LABEL: &str = "io.gigaspot.owner";
/// Label holding the bid a container runs for.
pub const BID_LABEL: &str = "io.gigaspot.bid";
/// Label marking the host's background job, holding its revision.
pub const BACKGROUND_LABEL: &str = "io.gigaspot.background";

/// What a container runs: a bid's workload or the host's background job.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Job {
    /// A bid's workload.
    Bid(BidId),
    /// The host's background job at a revision (`BackgroundJob::revision`).
    Background(String),
}

impl Job {
    /// The bid, for a bid's workload.
    pub fn bid(&self) -> Option<BidId> {
        match self {
            Job::Bid(bid) => Some(*bid),
            Job::Background(_) => None,
        }
    }
}

impl std::fmt::Display for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Bid(bid) => write!(f, "the workload of bid {bid}"),
            Job::Background(revision) => write!(f, "the background job ({revision})"),
        }
    }
}

/// What to create for a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// Container name, for operators reading `docker ps`.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Environment.
    pub env: BTreeMap<String, String>,
    /// Labels, [`OWNER_LABEL`] and [`BID_LABEL`] or [`BACKGROUND_LABEL`] among them.
    pub labels: BTreeMap<String, String>,
    /// GPUs to hand to the container by uuid; `None` hands none (simulated GPUs).
    pub gpu_uuids: Option<Vec<String>>,
    /// Network mode, e.g. `bridge` or `none`.
    pub network: String,
}

/// One of the agent's containers as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnContainer {
    /// Runtime id.
    pub id: String,
    /// What it runs; a container labelled by us with an unreadable job reads as bid 0, a
    /// stray to remove.
    pub job: Job,
    /// Created, running or exited.
    pub state: ContainerState,
    /// Exit code once exited.
    pub exit_code: Option<i64>,
    /// The kernel killed it for running out of memory (as far as the runtime knows).
    pub oom_killed: bool,
}

/// Why a runtime operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RuntimeError {
    /// The runtime cannot be reached (daemon down, socket missing).
    #[error("container runtime unavailable: {0}")]
    Unavailable(String),
    /// The image is neither present nor pullable.
    #[error("image {image} unavailable: {message}")]
    ImageUnavailable {
        /// The image.
        image: String,
        /// The runtime's message.
        message: String,
    },
    /// An operation on a container failed.
    #[error("{operation} failed: {message}")]
    Failed {
        /// The operation.
        operation: &'static str,
        /// The runtime's message.
        message: String,
    },
}

/// Operations on the machine's containers. Implemented on Docker
/// ([`crate::docker_runtime`]) and by the `none` backend ([`crate::no_containers`]).
pub trait ContainerRuntime: Send + Sync {
    /// Whether the runtime answers.
    fn ping(&self) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Tagged images present on the machine.
    fn images(&self) -> impl Future<Output = Result<Vec<String>, RuntimeError>> + Send;
    /// Whether `image` is present.
    fn has_image(&self, image: &str) -> impl Future<Output = Result<bool, RuntimeError>> + Send;
    /// Pulls `image`.
    fn pull(&self, image: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// The containers labelled with `owner`, in any state.
    fn list(
        &self,
        owner: &str,
    ) -> impl Future<Output = Result<Vec<OwnContainer>, RuntimeError>> + Send;
    /// Creates a container; answers its id.
    fn create(
        &self,
        spec: &ContainerSpec,
    ) -> impl Future<Output = Result<String, RuntimeError>> + Send;
    /// Starts a created container.
    fn start(&self, id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Sends SIGTERM, and SIGKILL once `grace` has passed without the container exiting.
    fn stop(
        &self,
        id: &str,
        grace: Duration,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Removes a stopped container.
    fn remove(&self, id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// The container's current state.
    fn inspect(&self, id: &str) -> impl Future<Output = Result<OwnContainer, RuntimeError>> + Send;
}

/// The labels of a workload container.
pub fn workload_labels(owner: &str, bid: BidId) -> BTreeMap<String, String> {
    job_labels(owner, &Job::Bid(bid))
}

/// The labels of a container running `job` for `owner`.
pub fn job_labels(owner: &str, job: &Job) -> BTreeMap<String, String> {
    let (label, value) = match job {
        Job::Bid(bid) => (BID_LABEL, bid.to_string()),
        Job::Background(revision) => (BACKGROUND_LABEL, revision.clone()),
    };
    BTreeMap::from([
        (OWNER_LABEL.to_owned(), owner.to_owned()),
        (label.to_owned(), value),
    ])
}

/// The bid of a container from its labels, if it is a bid's workload container of `owner`.
pub fn bid_of(labels: &BTreeMap<String, String>, owner: &str) -> Option<BidId> {
    job_of(labels, owner)?.bid()
}

/// What a container of `owner` runs, from its labels; `None` for another owner's or an
/// unreadable one.
pub fn job_of(labels: &BTreeMap<String, String>, owner: &str) -> Option<Job> {
    if labels.get(OWNER_LABEL).map(String::as_str) != Some(owner) {
        return None;
    }
    job_in(labels)
}

/// What a container runs, from its labels alone.
pub fn job_in(labels: &BTreeMap<String, String>) -> Option<Job> {
    if let Some(revision) = labels.get(BACKGROUND_LABEL) {
        return Some(Job::Background(revision.clone()));
    }
    labels.get(BID_LABEL)?.parse().ok().map(Job::Bid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_and_other_owners_are_ignored() {
        let labels = workload_labels("m-1", 42);
        assert_eq!(bid_of(&labels, "m-1"), Some(42));
        assert_eq!(bid_of(&labels, "m-2"), None);
        let mut broken = labels.clone();
        broken.insert(BID_LABEL.into(), "x".into());
        assert_eq!(bid_of(&broken, "m-1"), None);
        let background = job_labels("m-1", &Job::Background("abc".into()));
        assert_eq!(
            job_of(&background, "m-1"),
            Some(Job::Background("abc".into()))
        );
        assert_eq!(bid_of(&background, "m-1"), None);
        assert_eq!(job_of(&background, "m-2"), None);
    }
}
