//! The `none` container backend: the agent applies and verifies each bid's GPU settings
//! and reports the workload as running, but starts no process. For the demo, for CI
//! without Docker, and for hosts that run workloads by other means. Stop, switch and
//! adoption follow the same rules as on Docker; the "containers" live in memory, so an
//! agent restart starts from none.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use gigaspot_market::agent_protocol::ContainerState;

use crate::container_runtime::{ContainerRuntime, ContainerSpec, OwnContainer, RuntimeError};

/// Workloads recorded, never run.
#[derive(Default)]
pub struct NoContainers {
    state: Mutex<Records>,
}

#[derive(Default)]
struct Records {
    next_id: u64,
    images: BTreeSet<String>,
    containers: Vec<(OwnContainer, String)>,
}

impl NoContainers {
    fn records(&self) -> std::sync::MutexGuard<'_, Records> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(
        &self,
        id: &str,
        operation: &'static str,
        f: impl FnOnce(&mut OwnContainer),
    ) -> Result<(), RuntimeError> {
        let mut records = self.records();
        let (container, _) = records
            .containers
            .iter_mut()
            .find(|(c, _)| c.id == id)
            .ok_or_else(|| RuntimeError::Failed {
                operation,
                message: format!("no container {id}"),
            })?;
        f(container);
        Ok(())
    }
}

impl ContainerRuntime for NoContainers {
    async fn ping(&self) -> Result<(), RuntimeError> {
        Ok(())
    }

    async fn images(&self) -> Result<Vec<String>, RuntimeError> {
        Ok(self.records().images.iter().cloned().collect())
    }

    async fn has_image(&self, image: &str) -> Result<bool, RuntimeError> {
        Ok(self.records().images.contains(image))
    }

    async fn pull(&self, image: &str) -> Result<(), RuntimeError> {
        self.records().images.insert(image.to_owned());
        Ok(())
    }

    async fn list(&self, owner: &str) -> Result<Vec<OwnContainer>, RuntimeError> {
        Ok(self
            .records()
            .containers
            .iter()
            .filter(|(_, o)| o == owner)
            .map(|(c, _)| c.clone())
            .collect())
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        let owner = spec
            .labels
            .get(crate::container_runtime::OWNER_LABEL)
            .cloned()
            .unwrap_or_default();
        let job = crate::container_runtime::job_of(&spec.labels, &owner)
            .unwrap_or(crate::container_runtime::Job::Bid(0));
        let mut records = self.records();
        records.next_id += 1;
        let id = format!("none-{}", records.next_id);
        records.containers.push((
            OwnContainer {
                id: id.clone(),
                job,
                state: ContainerState::Created,
                exit_code: None,
                oom_killed: false,
            },
            owner,
        ));
        Ok(id)
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.update(id, "start container", |c| c.state = ContainerState::Running)
    }

    async fn stop(&self, id: &str, _grace: Duration) -> Result<(), RuntimeError> {
        // Nothing runs, so nothing needs the grace period: it stops as if on SIGTERM.
        self.update(id, "stop container", |c| {
            c.state = ContainerState::Exited;
            c.exit_code = Some(0);
        })
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        self.records().containers.retain(|(c, _)| c.id != id);
        Ok(())
    }

    async fn inspect(&self, id: &str) -> Result<OwnContainer, RuntimeError> {
        self.records()
            .containers
            .iter()
            .find(|(c, _)| c.id == id)
            .map(|(c, _)| c.clone())
            .ok_or_else(|| RuntimeError::Failed {
                operation: "inspect container",
                message: format!("no container {id}"),
            })
    }
}
