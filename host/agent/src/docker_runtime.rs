//! The Docker backend on bollard: images, containers with GPU device requests, stop with
//! a grace period, labels for finding the agent's own containers after a restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, ContainerStateStatusEnum, ContainerSummaryStateEnum, DeviceRequest,
    HostConfig,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ListContainersOptions, ListImagesOptions,
    RemoveContainerOptions, StopContainerOptions,
};
use bollard::{API_DEFAULT_VERSION, Docker};
use futures_util::StreamExt;
use gigaspot_market::agent_protocol::ContainerState;

use crate::container_runtime::{
    ContainerRuntime, ContainerSpec, Job, OWNER_LABEL, OwnContainer, RuntimeError,
};

/// A Docker daemon reached over its unix socket.
pub struct DockerRuntime {
    socket: String,
    /// Seconds an API call may take; a stop waits up to the grace period, so this must
    /// exceed it.
    timeout_s: u64,
    /// Connected and version-negotiated lazily, and again after the daemon went away: the
    /// socket may not exist while dockerd is down.
    client: Mutex<Option<Docker>>,
}

impl DockerRuntime {
    /// A runtime on `socket` (`unix:///var/run/docker.sock` or a path) whose calls may take
    /// up to `grace` plus a minute.
    pub fn new(socket: &str, grace: Duration) -> DockerRuntime {
        DockerRuntime {
            socket: socket.to_owned(),
            timeout_s: grace.as_secs() + 60,
            client: Mutex::new(None),
        }
    }

    async fn client(&self) -> Result<Docker, RuntimeError> {
        if let Some(client) = self.lock().clone() {
            return Ok(client);
        }
        let unavailable = |e: DockerError| RuntimeError::Unavailable(e.to_string());
        let client = Docker::connect_with_unix(&self.socket, self.timeout_s, API_DEFAULT_VERSION)
            .map_err(unavailable)?
            // The daemon may be older than bollard's default API version (Debian's 20.10
            // speaks 1.41); negotiating keeps requests within what it understands.
            .negotiate_version()
            .await
            .map_err(unavailable)?;
        *self.lock() = Some(client.clone());
        Ok(client)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Docker>> {
        self.client.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Maps a failure: an answer from the daemon is a failed operation; anything else
    /// (connection refused, socket gone, timeout) means the daemon is unavailable, and the
    /// connection is forgotten so that the next call connects afresh.
    fn failed(&self, operation: &'static str, e: DockerError) -> RuntimeError {
        match e {
            DockerError::DockerResponseServerError { .. }
            | DockerError::DockerStreamError { .. } => RuntimeError::Failed {
                operation,
                message: e.to_string(),
            },
            other => {
                *self.lock() = None;
                RuntimeError::Unavailable(format!("{operation}: {other}"))
            }
        }
    }
}

/// The device request that hands the GPUs with these uuids to a container through the
/// NVIDIA container runtime.
pub fn gpu_device_request(uuids: &[String]) -> DeviceRequest {
    DeviceRequest {
        driver: Some("nvidia".into()),
        count: None,
        device_ids: Some(uuids.to_vec()),
        capabilities: Some(vec![vec!["gpu".into()]]),
        options: None,
    }
}

/// The create request for `spec`.
pub fn create_body(spec: &ContainerSpec) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(spec.labels.clone().into_iter().collect()),
        host_config: Some(HostConfig {
            network_mode: Some(spec.network.clone()),
            device_requests: spec
                .gpu_uuids
                .as_deref()
                .map(|uuids| vec![gpu_device_request(uuids)]),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    }
}

/// Splits `repo[:tag]` for the pull API, which pulls every tag when none is given.
fn repo_and_tag(image: &str) -> (&str, &str) {
    if image.contains('@') {
        return (image, "");
    }
    let name_start = image.rfind('/').map_or(0, |i| i + 1);
    match image[name_start..].rfind(':') {
        Some(i) => (&image[..name_start + i], &image[name_start + i + 1..]),
        None => (image, "latest"),
    }
}

fn not_found(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

impl ContainerRuntime for DockerRuntime {
    async fn ping(&self) -> Result<(), RuntimeError> {
        let client = self.client().await?;
        client
            .ping()
            .await
            .map(|_| ())
            .map_err(|e| self.failed("ping", e))
    }

    async fn images(&self) -> Result<Vec<String>, RuntimeError> {
        let client = self.client().await?;
        let images = client
            .list_images(None::<ListImagesOptions>)
            .await
            .map_err(|e| self.failed("list images", e))?;
        let mut tags: Vec<String> = images
            .into_iter()
            .flat_map(|i| i.repo_tags)
            .filter(|t| t != "<none>:<none>")
            .collect();
        tags.sort();
        Ok(tags)
    }

    async fn has_image(&self, image: &str) -> Result<bool, RuntimeError> {
        let client = self.client().await?;
        match client.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(self.failed("inspect image", e)),
        }
    }

    async fn pull(&self, image: &str) -> Result<(), RuntimeError> {
        let client = self.client().await?;
        let (repo, tag) = repo_and_tag(image);
        let options = CreateImageOptions {
            from_image: Some(repo.to_owned()),
            tag: (!tag.is_empty()).then(|| tag.to_owned()),
            ..CreateImageOptions::default()
        };
        let mut progress = client.create_image(Some(options), None, None);
        while let Some(step) = progress.next().await {
            step.map_err(|e| RuntimeError::ImageUnavailable {
                image: image.to_owned(),
                message: e.to_string(),
            })?;
        }
        Ok(())
    }

    async fn list(&self, owner: &str) -> Result<Vec<OwnContainer>, RuntimeError> {
        let client = self.client().await?;
        let filters = HashMap::from([("label".to_owned(), vec![format!("{OWNER_LABEL}={owner}")])]);
        let summaries = client
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..ListContainersOptions::default()
            }))
            .await
            .map_err(|e| self.failed("list containers", e))?;
        let mut own = Vec::with_capacity(summaries.len());
        for s in summaries {
            let (Some(id), Some(labels)) = (s.id, s.labels) else {
                continue;
            };
            let labels: BTreeMap<String, String> = labels.into_iter().collect();
            let Some(job) = crate::container_runtime::job_of(&labels, owner) else {
                // Labelled by us but without a readable job: treat as a stray to remove.
                own.push(OwnContainer {
                    id,
                    job: Job::Bid(0),
                    state: ContainerState::Exited,
                    exit_code: None,
                    oom_killed: false,
                });
                continue;
            };
            let state = match s.state {
                Some(ContainerSummaryStateEnum::RUNNING) => ContainerState::Running,
                Some(ContainerSummaryStateEnum::CREATED) => ContainerState::Created,
                _ => ContainerState::Exited,
            };
            let exit_code = if state == ContainerState::Exited {
                self.inspect(&id).await?.exit_code
            } else {
                None
            };
            own.push(OwnContainer {
                id,
                job,
                state,
                exit_code,
                oom_killed: false,
            });
        }
        Ok(own)
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        let client = self.client().await?;
        let options = CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..CreateContainerOptions::default()
        };
        client
            .create_container(Some(options), create_body(spec))
            .await
            .map(|r| r.id)
            .map_err(|e| self.failed("create container", e))
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let client = self.client().await?;
        client
            .start_container(id, None)
            .await
            .map_err(|e| self.failed("start container", e))
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let client = self.client().await?;
        let options = StopContainerOptions {
            signal: None,
            t: Some(i32::try_from(grace.as_secs()).unwrap_or(i32::MAX)),
        };
        match client.stop_container(id, Some(options)).await {
            // 304: it had already stopped.
            Ok(())
            | Err(DockerError::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(self.failed("stop container", e)),
        }
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let client = self.client().await?;
        let options = RemoveContainerOptions {
            force: true,
            ..RemoveContainerOptions::default()
        };
        match client.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(self.failed("remove container", e)),
        }
    }

    async fn inspect(&self, id: &str) -> Result<OwnContainer, RuntimeError> {
        let client = self.client().await?;
        let info = client
            .inspect_container(id, None)
            .await
            .map_err(|e| self.failed("inspect container", e))?;
        let labels: BTreeMap<String, String> = info
            .config
            .and_then(|c| c.labels)
            .unwrap_or_default()
            .into_iter()
            .collect();
        let job = crate::container_runtime::job_in(&labels).unwrap_or(Job::Bid(0));
        let state = info.state.unwrap_or_default();
        let oom_killed = state.oom_killed.unwrap_or(false);
        let (state, exit_code) = match state.status {
            Some(ContainerStateStatusEnum::RUNNING) => (ContainerState::Running, None),
            Some(ContainerStateStatusEnum::CREATED) => (ContainerState::Created, None),
            _ => (ContainerState::Exited, state.exit_code),
        };
        Ok(OwnContainer {
            id: info.id.unwrap_or_else(|| id.to_owned()),
            job,
            state,
            exit_code,
            oom_killed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container_runtime::workload_labels;

    #[test]
    fn gpus_are_requested_by_uuid_from_the_nvidia_driver() {
        let spec = ContainerSpec {
            name: "gigaspot-bid-7".into(),
            image: "trainer:1".into(),
            env: BTreeMap::from([("EPOCHS".into(), "3".into())]),
            labels: workload_labels("m-1", 7),
            gpu_uuids: Some(vec!["GPU-a".into(), "GPU-b".into()]),
            network: "bridge".into(),
        };
        let body = create_body(&spec);
        let host = body.host_config.unwrap();
        let request = &host.device_requests.unwrap()[0];
        assert_eq!(request.driver.as_deref(), Some("nvidia"));
        assert_eq!(
            request.device_ids.as_deref(),
            Some(&["GPU-a".to_owned(), "GPU-b".to_owned()][..])
        );
        assert_eq!(request.capabilities, Some(vec![vec!["gpu".to_owned()]]));
        assert_eq!(body.env, Some(vec!["EPOCHS=3".to_owned()]));
        assert_eq!(
            body.labels.unwrap()[crate::container_runtime::BID_LABEL],
            "7"
        );
        assert_eq!(host.network_mode.as_deref(), Some("bridge"));
    }

    #[test]
    fn simulated_gpus_request_no_devices() {
        let spec = ContainerSpec {
            name: "n".into(),
            image: "i".into(),
            env: BTreeMap::new(),
            labels: BTreeMap::new(),
            gpu_uuids: None,
            network: "none".into(),
        };
        assert!(
            create_body(&spec)
                .host_config
                .unwrap()
                .device_requests
                .is_none()
        );
    }

    #[test]
    fn pulls_name_one_tag() {
        assert_eq!(repo_and_tag("busybox"), ("busybox", "latest"));
        assert_eq!(repo_and_tag("busybox:1.36"), ("busybox", "1.36"));
        assert_eq!(
            repo_and_tag("registry:5000/team/app:v2"),
            ("registry:5000/team/app", "v2")
        );
        assert_eq!(
            repo_and_tag("registry:5000/team/app"),
            ("registry:5000/team/app", "latest")
        );
        assert_eq!(repo_and_tag("app@sha256:abcd"), ("app@sha256:abcd", ""));
    }
}
