//! The reconciler on a real Docker daemon (started per test) with simulated GPUs: start,
//! switch with the grace period, crash, fail-closed refusals, daemon outage, adoption.

use std::collections::BTreeMap;
use std::time::Duration;

use gigaspot_agent::container_runtime::{Job, OWNER_LABEL};
use gigaspot_agent::docker_runtime::DockerRuntime;
use gigaspot_agent::reconciler::{Event, Reconciler, ReconcilerOptions};
use gigaspot_agent::simulated_backend::{Injection, SimulatedGpus};
use gigaspot_market::agent_protocol::{ContainerState, DesiredState, Workload};
use gigaspot_market::context::GpuOc;
use gigaspot_tests::dockerd::{Dockerd, WORKLOAD_IMAGE};

const OWNER: &str = "test-machine";
const GRACE: Duration = Duration::from_secs(2);

fn label() -> String {
    format!("{OWNER_LABEL}={OWNER}")
}

fn oc(pl: u32) -> GpuOc {
    GpuOc {
        power_limit_w: pl,
        core_lock_mhz: Some(2100),
        mem_lock_mhz: None,
        core_offset_mhz: None,
        mem_offset_mhz: None,
    }
}

fn workload(bid: u64, mode: &str, pl: u32) -> Workload {
    Workload {
        bid,
        image: WORKLOAD_IMAGE.into(),
        env: BTreeMap::from([
            ("MODE".into(), mode.into()),
            ("BID".into(), bid.to_string()),
        ]),
        oc: vec![oc(pl), oc(pl)],
    }
}

fn desired(interval: u64, workload: Option<Workload>) -> DesiredState {
    DesiredState {
        interval: Some(interval),
        workload,
        prepull: Vec::new(),
        background: None,
    }
}

fn reconciler(d: &Dockerd, gpus: SimulatedGpus) -> Reconciler<DockerRuntime> {
    Reconciler::new(
        Box::new(gpus),
        DockerRuntime::new(&d.socket, GRACE),
        ReconcilerOptions {
            owner: OWNER.into(),
            grace: GRACE,
            network: "none".into(),
            pass_gpus: false,
        },
    )
}

fn gpus() -> SimulatedGpus {
    SimulatedGpus::from_spec("2xRTX4090").unwrap()
}

fn started(r: &Reconciler<DockerRuntime>) -> usize {
    r.events()
        .filter(|e| matches!(e, Event::Started { .. }))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workload_starts_with_its_env_and_settings_and_stops_when_no_longer_wanted() {
    let d = Dockerd::start();
    let mut r = reconciler(&d, gpus());
    let want = desired(1, Some(workload(1, "work", 300)));
    r.converge(&want).await;
    let running = d.running(&label());
    assert_eq!(running.len(), 1, "one workload container");
    let env = d.docker_ok(&["inspect", "-f", "{{json .Config.Env}}", &running[0]]);
    assert!(env.contains("MODE=work") && env.contains("BID=1"), "{env}");
    let bid_label = d.docker_ok(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"io.gigaspot.bid\"}}",
        &running[0],
    ]);
    assert_eq!(bid_label, "1");

    r.observe().await;
    let hb = r.heartbeat();
    assert!(hb.working);
    assert_eq!(hb.running_bid, Some(1));
    assert!(hb.applied);
    assert_eq!(hb.applied_settings.len(), 2);
    assert!(
        hb.applied_settings
            .iter()
            .all(|s| s.power_limit_w == 300 && s.core_lock_mhz == Some(2100))
    );
    assert_eq!(hb.workload.as_ref().unwrap().state, ContainerState::Running);
    assert!(hb.cached_images.iter().any(|i| i == WORKLOAD_IMAGE));
    assert_eq!(hb.gpus.as_ref().unwrap()[0].card_max_w, 600);
    assert_eq!(hb.last_error, None);

    // Level-triggered: the same desired state changes nothing.
    r.converge(&want).await;
    assert_eq!(d.running(&label()), running);
    assert_eq!(started(&r), 1);

    // Nothing wanted: the container goes, the GPUs return to their defaults.
    r.converge(&desired(2, None)).await;
    assert!(d.containers(&label()).is_empty());
    r.observe().await;
    let hb = r.heartbeat();
    assert_eq!(hb.running_bid, None);
    assert!(
        hb.applied_settings
            .iter()
            .all(|s| s.power_limit_w == 450 && s.core_lock_mhz.is_none())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_switch_stops_the_old_workload_with_the_grace_period_before_the_new_one_starts() {
    let d = Dockerd::start();
    let mut r = reconciler(&d, gpus());
    r.converge(&desired(1, Some(workload(1, "stubborn", 300))))
        .await;
    r.converge(&desired(2, Some(workload(2, "work", 350))))
        .await;
    let events: Vec<Event> = r.events().cloned().collect();
    let stop = events
        .iter()
        .position(|e| {
            matches!(
                e,
                Event::Stopped {
                    job: Job::Bid(1),
                    ..
                }
            )
        })
        .expect("bid 1 stopped");
    let Event::Stopped {
        exit_code, took, ..
    } = &events[stop]
    else {
        unreachable!()
    };
    // It ignored SIGTERM: killed once the grace period had passed.
    assert_eq!(*exit_code, Some(137));
    assert!(
        *took >= GRACE,
        "killed after {took:?}, before the grace period"
    );
    let start = events
        .iter()
        .position(|e| *e == Event::Started { job: Job::Bid(2) })
        .expect("bid 2 started");
    assert!(stop < start, "never two workloads at once: {events:?}");
    let running = d.running(&label());
    assert_eq!(running.len(), 1);
    assert_eq!(
        d.docker_ok(&[
            "inspect",
            "-f",
            "{{index .Config.Labels \"io.gigaspot.bid\"}}",
            &running[0]
        ]),
        "2"
    );
    assert_eq!(
        d.containers(&label()).len(),
        1,
        "the old container is removed"
    );

    // A workload that honours SIGTERM ends at once with its own exit code.
    r.converge(&desired(3, Some(workload(3, "work", 400))))
        .await;
    let last_stop = r
        .events()
        .filter_map(|e| match e {
            Event::Stopped {
                job: Job::Bid(2),
                exit_code,
                took,
            } => Some((*exit_code, *took)),
            _ => None,
        })
        .next()
        .expect("bid 2 stopped");
    assert_eq!(last_stop.0, Some(0));
    assert!(last_stop.1 < GRACE, "stopped in {:?}", last_stop.1);
    r.observe().await;
    assert_eq!(r.heartbeat().running_bid, Some(3));
    assert!(
        r.heartbeat()
            .applied_settings
            .iter()
            .all(|s| s.power_limit_w == 400)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crashing_workload_is_reported_and_restarted_next_interval() {
    let d = Dockerd::start();
    let mut r = reconciler(&d, gpus());
    let crash = || Some(workload(1, "crash", 300));
    r.converge(&desired(1, crash())).await;
    // It exits a second after starting; observed as the agent's heartbeats would.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let hb = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        r.observe().await;
        let hb = r.heartbeat();
        if hb
            .workload
            .as_ref()
            .is_some_and(|w| w.state == ContainerState::Exited)
            || std::time::Instant::now() > deadline
        {
            break hb;
        }
    };
    let w = hb.workload.as_ref().expect("the workload is reported");
    assert_eq!(
        (w.bid, w.state, w.exit_code),
        (1, ContainerState::Exited, Some(3))
    );
    assert_eq!(hb.running_bid, None, "an exited workload is not served");
    assert!(
        hb.last_error
            .as_deref()
            .unwrap()
            .contains("exited with code 3"),
        "{hb:?}"
    );

    // Same interval: not restarted, and its container is cleaned up.
    r.converge(&desired(1, crash())).await;
    assert_eq!(started(&r), 1);
    assert!(d.containers(&label()).is_empty());
    // Next interval: it gets another chance.
    r.converge(&desired(2, crash())).await;
    assert_eq!(started(&r), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_that_cannot_be_applied_or_an_absent_image_start_nothing() {
    let d = Dockerd::start();
    let mut failing = gpus();
    failing.inject(Injection {
        operation: "set_power_limit",
        gpu: 1,
        times: 100,
    });
    let mut r = reconciler(&d, failing);
    r.converge(&desired(1, Some(workload(1, "work", 300))))
        .await;
    assert!(
        d.containers(&label()).is_empty(),
        "no container without verified settings"
    );
    r.observe().await;
    let hb = r.heartbeat();
    assert_eq!(hb.running_bid, None);
    assert!(!hb.applied);
    assert!(
        hb.last_error.as_deref().unwrap().contains("injected error"),
        "{hb:?}"
    );
    // Every GPU was reset, the one that took its new limit included.
    assert!(hb.applied_settings.iter().all(|s| s.power_limit_w == 450));

    // Out of the card's range: refused before anything changes.
    let mut r = reconciler(&d, gpus());
    r.converge(&desired(1, Some(workload(2, "work", 601))))
        .await;
    assert!(d.containers(&label()).is_empty());
    let hb = r.heartbeat();
    assert!(
        hb.last_error
            .as_deref()
            .unwrap()
            .contains("outside the card's range"),
        "{hb:?}"
    );

    // An image that is neither present nor pullable.
    let mut absent = workload(3, "work", 300);
    absent.image = "gigaspot-test/absent:1".into();
    r.converge(&desired(1, Some(absent))).await;
    assert!(d.containers(&label()).is_empty());
    assert!(
        r.heartbeat()
            .last_error
            .as_deref()
            .unwrap()
            .contains("gigaspot-test/absent:1")
    );
    assert!(r.events().any(|e| matches!(
        e,
        Event::NotStarted {
            job: Job::Bid(3),
            ..
        }
    )));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_machine_is_not_working_while_dockerd_is_down_and_reconciles_after() {
    let mut d = Dockerd::start();
    let mut r = reconciler(&d, gpus());
    let want = desired(1, Some(workload(1, "work", 300)));
    r.converge(&want).await;
    assert_eq!(d.running(&label()).len(), 1);

    d.stop();
    r.observe().await;
    let hb = r.heartbeat();
    assert!(!hb.working);
    assert_eq!(hb.running_bid, None);
    assert!(
        hb.last_error.as_deref().unwrap().contains("unavailable"),
        "{hb:?}"
    );
    r.converge(&want).await;
    assert!(!r.heartbeat().working);

    d.restart();
    r.converge(&want).await;
    r.observe().await;
    let hb = r.heartbeat();
    assert!(hb.working, "{hb:?}");
    assert_eq!(hb.running_bid, Some(1));
    assert_eq!(hb.last_error, None);
    assert_eq!(d.running(&label()).len(), 1);
    assert_eq!(
        d.containers(&label()).len(),
        1,
        "the workload killed by the outage is replaced"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_agent_adopts_the_running_workload_and_removes_strays() {
    let d = Dockerd::start();
    let want = desired(1, Some(workload(1, "work", 300)));
    let mut first = reconciler(&d, gpus());
    first.converge(&want).await;
    let running = d.running(&label());
    drop(first);
    // A container left behind by a switch the old agent never finished.
    d.docker_ok(&[
        "create",
        "--network",
        "none",
        "--label",
        &label(),
        "--label",
        "io.gigaspot.bid=9",
        WORKLOAD_IMAGE,
    ]);
    // Someone else's container on the same daemon is none of the agent's business.
    d.docker_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--label",
        "owner=other",
        WORKLOAD_IMAGE,
    ]);

    // The new agent's simulated GPUs start at their defaults: it applies the settings
    // again, reads them back and adopts the container instead of restarting it.
    let mut second = reconciler(&d, gpus());
    second.converge(&want).await;
    assert_eq!(d.running(&label()), running, "the same container runs on");
    assert_eq!(d.containers(&label()), running, "the stray is removed");
    assert_eq!(d.running("owner=other").len(), 1);
    assert!(
        second
            .events()
            .any(|e| *e == Event::Adopted { job: Job::Bid(1) })
    );
    second.observe().await;
    let hb = second.heartbeat();
    assert_eq!(hb.running_bid, Some(1));
    assert!(hb.applied_settings.iter().all(|s| s.power_limit_w == 300));
}

fn background(mode: &str, pl: u32) -> gigaspot_market::background::BackgroundJob {
    gigaspot_market::background::BackgroundJob {
        image: WORKLOAD_IMAGE.into(),
        env: BTreeMap::from([("MODE".into(), mode.into())]),
        oc: vec![oc(pl), oc(pl)],
    }
}

fn idle(interval: u64, job: &gigaspot_market::background::BackgroundJob) -> DesiredState {
    DesiredState {
        background: Some(job.clone()),
        ..desired(interval, None)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_background_job_runs_while_idle_yields_to_a_bid_with_the_grace_period_and_comes_back() {
    let d = Dockerd::start();
    let mut r = reconciler(&d, gpus());
    // It ignores SIGTERM, as a miner busy with a share might.
    let job = background("stubborn", 400);
    let revision = job.revision();
    let background_job = Job::Background(revision.clone());

    // Idle: the background job runs with its power limit applied and read back.
    r.converge(&idle(1, &job)).await;
    let running = d.running(&label());
    assert_eq!(running.len(), 1);
    assert_eq!(
        d.docker_ok(&[
            "inspect",
            "-f",
            "{{index .Config.Labels \"io.gigaspot.background\"}}",
            &running[0]
        ]),
        revision
    );
    r.observe().await;
    let hb = r.heartbeat();
    assert_eq!(hb.running_bid, None, "the background job is never served");
    assert!(!hb.applied);
    let status = hb.background.clone().expect("background reported");
    assert_eq!(status.state, ContainerState::Running);
    assert!(status.applied, "{hb:?}");
    assert_eq!(status.revision, revision);
    assert!(
        hb.applied_settings
            .iter()
            .all(|s| s.power_limit_w == 400 && s.core_lock_mhz == Some(2100)),
        "{hb:?}"
    );
    // Level-triggered: nothing restarts.
    r.converge(&idle(2, &job)).await;
    assert_eq!(d.running(&label()), running);

    // A bid wins: SIGTERM, the grace period, SIGKILL; the GPUs reset; the bid starts.
    r.converge(&desired(3, Some(workload(7, "work", 300))))
        .await;
    let events: Vec<Event> = r.events().cloned().collect();
    let stop = events
        .iter()
        .position(|e| matches!(e, Event::Stopped { job, .. } if *job == background_job))
        .expect("the background job stopped");
    let Event::Stopped {
        exit_code, took, ..
    } = &events[stop]
    else {
        unreachable!()
    };
    assert_eq!(*exit_code, Some(137), "killed after ignoring SIGTERM");
    assert!(*took >= GRACE, "killed after {took:?}");
    let start = events
        .iter()
        .position(|e| *e == Event::Started { job: Job::Bid(7) })
        .expect("bid 7 started");
    assert!(stop < start, "{events:?}");
    assert_eq!(
        d.containers(&label()).len(),
        1,
        "the background container is gone"
    );
    r.observe().await;
    let hb = r.heartbeat();
    assert_eq!(hb.running_bid, Some(7));
    assert_eq!(hb.background, None);
    assert!(hb.applied_settings.iter().all(|s| s.power_limit_w == 300));

    // The bid ends: the background job comes back with its own settings.
    r.converge(&idle(4, &job)).await;
    r.observe().await;
    let hb = r.heartbeat();
    assert_eq!(hb.running_bid, None);
    assert!(hb.background.as_ref().is_some_and(|b| b.applied));
    assert!(hb.applied_settings.iter().all(|s| s.power_limit_w == 400));
    let running = d.running(&label());
    assert_eq!(running.len(), 1);

    // A restarted agent adopts the running background job instead of restarting it.
    drop(r);
    let mut second = reconciler(&d, gpus());
    second.converge(&idle(4, &job)).await;
    assert_eq!(d.running(&label()), running, "the same container runs on");
    assert!(second.events().any(|e| *e
        == Event::Adopted {
            job: background_job.clone()
        }));
    second.observe().await;
    let hb = second.heartbeat();
    assert!(hb.background.as_ref().is_some_and(|b| b.applied), "{hb:?}");
    assert!(hb.applied_settings.iter().all(|s| s.power_limit_w == 400));

    // The host changes its job: the new revision replaces the old container.
    let changed = background("work", 350);
    second.converge(&idle(5, &changed)).await;
    let now = d.running(&label());
    assert_eq!(now.len(), 1);
    assert_ne!(now, running);
    second.observe().await;
    let hb = second.heartbeat();
    assert_eq!(
        hb.background.as_ref().map(|b| b.revision.clone()),
        Some(changed.revision())
    );
    assert!(hb.applied_settings.iter().all(|s| s.power_limit_w == 350));

    // The host removes it: the machine idles with its GPUs at their defaults.
    second.converge(&desired(6, None)).await;
    assert!(d.containers(&label()).is_empty());
    second.observe().await;
    let hb = second.heartbeat();
    assert_eq!(hb.background, None);
    assert!(hb.applied_settings.iter().all(|s| s.power_limit_w == 450));
}
