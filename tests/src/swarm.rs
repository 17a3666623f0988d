//! Swarm fixtures on the REAL Docker engine (through bollard, like sprocket-ops itself):
//! throwaway services built from the `sprocket-ops-testsvc` images, convergence waits, and
//! the Docker CLI's own view (`docker service ls` / `docker service ps`) so tests can compare
//! what sprocket-ops reports with what an operator would see.
//!
//! Every service created here is named `{prefix}-{run_id}-{n}` and labelled
//! `sprocket-ops.test=<run_id>` plus `sprocket-ops.test.created=<unix seconds>`; it is removed
//! when its [`ServiceGuard`] drops. Leftovers of crashed runs older than
//! [`STALE_AFTER`] are removed by [`TestSwarm::cleanup_stale`] (run once per process by
//! [`TestSwarm::connect`]). Unlabelled services are never touched.
//!
//! No test skips: [`TestSwarm::connect`] panics when Docker is unreachable or this node is not
//! a Swarm manager (run `bash scripts/test.sh`, which initialises the swarm).

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _};
use bollard::models::{
    LocalNodeState, Service, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated,
    ServiceSpecRollbackConfig, ServiceSpecRollbackConfigFailureActionEnum,
    ServiceSpecRollbackConfigOrderEnum, ServiceSpecUpdateConfig,
    ServiceSpecUpdateConfigFailureActionEnum, ServiceSpecUpdateConfigOrderEnum,
    ServiceUpdateStatusStateEnum, Task, TaskSpec, TaskSpecContainerSpec, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum, TaskState,
};
use bollard::query_parameters::{ListServicesOptionsBuilder, ListTasksOptionsBuilder};
use bollard::Docker;
use serde::Deserialize;

use crate::env;

mod cli;
pub use cli::*;

/// Label carried by every test service; its value is the creating process's [`env::run_id`].
pub const TEST_LABEL: &str = "sprocket-ops.test";
/// Label holding the creation time (unix seconds) used by [`TestSwarm::cleanup_stale`].
pub const CREATED_LABEL: &str = "sprocket-ops.test.created";
/// Labelled test services older than this are considered leftovers.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
/// How long [`TestSwarm::wait_converged`] requires the converged state to hold.
pub const CONVERGED_STABLE_FOR: Duration = Duration::from_secs(1);
/// Stop grace period of test services. They run with `Init = true`: the engine's `docker-init`
/// (tini) forwards SIGTERM to testsvc, which is not PID 1 and so dies at once (it installs no
/// handler), well before this grace period would end in a SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(1);

/// A connection to the local engine, checked to be an active Swarm manager.
#[derive(Clone)]
pub struct TestSwarm {
    docker: Docker,
}

/// What to create; build it with [`TestService::new`] and the chained setters.
#[derive(Debug, Clone, PartialEq)]
pub struct TestService {
    /// Start of the service name (sanitised, at most 24 characters are kept).
    pub name_prefix: String,
    /// Test image tag: `main`, `v2` or `broken`.
    pub tag: String,
    pub replicas: u64,
    /// Extra service labels (the test labels are always added).
    pub labels: Vec<(String, String)>,
    /// Container env, `KEY=value` (e.g. `TESTSVC_LOG_LINES=…`).
    pub env: Vec<String>,
    /// Bind mounts (source on the node, target in the container).
    pub binds: Vec<(String, String)>,
    /// Update failure action `rollback` instead of Swarm's default `pause`.
    pub update_failure_action_rollback: bool,
    /// Restart condition: `none`, `on-failure` or `any` (Swarm's default when `None`).
    pub restart_condition: Option<&'static str>,
    /// Restart attempts per slot before Swarm gives up (bounds crash loops). When `None`:
    /// unlimited, except for the `broken` tag where it defaults to 3.
    pub restart_max_attempts: Option<u64>,
    /// Delay between restarts (default 500 ms, Swarm's own default is 5 s).
    pub restart_delay: Duration,
    /// How long updated/rolled-back tasks are monitored for failure (default 2 s).
    pub update_monitor: Duration,
}

impl Default for TestService {
    fn default() -> Self {
        TestService::new("svc", "main")
    }
}

impl TestService {
    /// One replica of `sprocket-ops-testsvc:{tag}`.
    pub fn new(name_prefix: &str, tag: &str) -> Self {
        TestService {
            name_prefix: name_prefix.to_string(),
            tag: tag.to_string(),
            replicas: 1,
            labels: Vec::new(),
            env: Vec::new(),
            binds: Vec::new(),
            update_failure_action_rollback: false,
            restart_condition: None,
            restart_max_attempts: None,
            restart_delay: Duration::from_millis(500),
            update_monitor: Duration::from_secs(2),
        }
    }
    pub fn tag(mut self, tag: &str) -> Self {
        self.tag = tag.to_string();
        self
    }
    pub fn replicas(mut self, replicas: u64) -> Self {
        self.replicas = replicas;
        self
    }
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.push((key.to_string(), value.to_string()));
        self
    }
    /// Adds `KEY=value` to the container environment.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push(format!("{key}={value}"));
        self
    }
    /// Adds a bind mount; a `source` missing on the node makes every task fail with the
    /// engine's "bind source path does not exist: <source>".
    pub fn bind(mut self, source: &str, target: &str) -> Self {
        self.binds.push((source.to_string(), target.to_string()));
        self
    }
    pub fn rollback_on_update_failure(mut self) -> Self {
        self.update_failure_action_rollback = true;
        self
    }
    pub fn restart_condition(mut self, condition: &'static str) -> Self {
        self.restart_condition = Some(condition);
        self
    }
    pub fn restart_max_attempts(mut self, attempts: u64) -> Self {
        self.restart_max_attempts = Some(attempts);
        self
    }
    pub fn restart_delay(mut self, delay: Duration) -> Self {
        self.restart_delay = delay;
        self
    }
    pub fn update_monitor(mut self, monitor: Duration) -> Self {
        self.update_monitor = monitor;
        self
    }

    /// The Swarm spec for this service, named `name`, using image `image`.
    pub fn to_spec(&self, name: &str, image: &str, run_id: &str) -> ServiceSpec {
        let mut labels: HashMap<String, String> = self.labels.iter().cloned().collect();
        labels.insert(TEST_LABEL.to_string(), run_id.to_string());
        labels.insert(CREATED_LABEL.to_string(), unix_now().to_string());
        let condition = match self.restart_condition {
            None => None,
            Some("none") => Some(TaskSpecRestartPolicyConditionEnum::NONE),
            Some("on-failure") => Some(TaskSpecRestartPolicyConditionEnum::ON_FAILURE),
            Some("any") => Some(TaskSpecRestartPolicyConditionEnum::ANY),
            Some(other) => panic!("restart condition {other:?} is not none/on-failure/any"),
        };
        let max_attempts = self
            .restart_max_attempts
            .or((self.tag == "broken").then_some(3));
        let monitor_ns = duration_ns(self.update_monitor);
        ServiceSpec {
            name: Some(name.to_string()),
            labels: Some(labels),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some(image.to_string()),
                    env: Some(self.env.clone()),
                    labels: Some(HashMap::from([(
                        TEST_LABEL.to_string(),
                        run_id.to_string(),
                    )])),
                    stop_grace_period: Some(duration_ns(STOP_GRACE)),
                    // docker-init as PID 1 forwards SIGTERM to testsvc (see STOP_GRACE).
                    init: Some(true),
                    mounts: (!self.binds.is_empty()).then(|| {
                        self.binds
                            .iter()
                            .map(|(source, target)| bollard::models::Mount {
                                source: Some(source.clone()),
                                target: Some(target.clone()),
                                typ: Some(bollard::models::MountType::BIND),
                                ..Default::default()
                            })
                            .collect()
                    }),
                    ..Default::default()
                }),
                restart_policy: Some(TaskSpecRestartPolicy {
                    condition,
                    delay: Some(duration_ns(self.restart_delay)),
                    max_attempts: max_attempts.map(|n| n as i64),
                    window: None,
                }),
                ..Default::default()
            }),
            mode: Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated {
                    replicas: Some(self.replicas as i64),
                }),
                ..Default::default()
            }),
            update_config: Some(ServiceSpecUpdateConfig {
                parallelism: Some(1),
                delay: Some(0),
                failure_action: Some(if self.update_failure_action_rollback {
                    ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK
                } else {
                    ServiceSpecUpdateConfigFailureActionEnum::PAUSE
                }),
                monitor: Some(monitor_ns),
                max_failure_ratio: Some(0.0),
                order: Some(ServiceSpecUpdateConfigOrderEnum::STOP_FIRST),
            }),
            rollback_config: Some(ServiceSpecRollbackConfig {
                parallelism: Some(1),
                delay: Some(0),
                failure_action: Some(ServiceSpecRollbackConfigFailureActionEnum::PAUSE),
                monitor: Some(monitor_ns),
                max_failure_ratio: Some(0.0),
                order: Some(ServiceSpecRollbackConfigOrderEnum::STOP_FIRST),
            }),
            ..Default::default()
        }
    }
}

fn duration_ns(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `{prefix}-{run_id}-{n}`: Docker service names are at most 63 characters of
/// `[a-zA-Z0-9_.-]`, starting with an alphanumeric.
pub fn service_name(prefix: &str, run_id: &str, n: u64) -> String {
    let mut clean: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(24)
        .collect();
    clean = clean.trim_matches('-').to_string();
    if clean.is_empty() {
        clean = "svc".to_string();
    }
    let name = format!("{clean}-{run_id}-{n}");
    debug_assert!(name.len() <= 63, "{name}");
    name
}

static SERVICE_COUNTER: AtomicU64 = AtomicU64::new(1);
static CLEANED_UP: AtomicBool = AtomicBool::new(false);

/// Removes a service by name when dropped: a service that was replaced (by a deploy, by
/// `docker service rm` + create) has a new id its [`ServiceGuard`] does not know.
pub struct RemoveByName(pub String);

impl Drop for RemoveByName {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["service", "rm", &self.0])
            .output();
    }
}

impl TestSwarm {
    /// Connects to the local engine (negotiating the API version: the engine may be as old
    /// as Docker 20.10 / API 1.41) and checks it is an active Swarm manager. Panics otherwise.
    /// The first call in a process also removes stale leftovers ([`Self::cleanup_stale`]).
    pub async fn connect() -> TestSwarm {
        let docker = Docker::connect_with_local_defaults()
            .unwrap_or_else(|e| panic!("cannot create a Docker client: {e}"));
        let docker = docker.negotiate_version().await.unwrap_or_else(|e| {
            panic!(
                "Docker is unreachable ({e}): the Swarm tests need a running Docker engine \
                 on /var/run/docker.sock (see scripts/test.sh)"
            )
        });
        let info = docker
            .info()
            .await
            .unwrap_or_else(|e| panic!("`docker info` through the API failed: {e}"));
        let swarm = info.swarm.unwrap_or_default();
        let state = swarm.local_node_state.unwrap_or(LocalNodeState::EMPTY);
        if state != LocalNodeState::ACTIVE || swarm.control_available != Some(true) {
            panic!(
                "this Docker node is not an active Swarm manager (LocalNodeState={state:?}, \
                 ControlAvailable={:?}): run `docker swarm init --advertise-addr 127.0.0.1` \
                 or `bash scripts/test.sh`",
                swarm.control_available
            );
        }
        let swarm = TestSwarm { docker };
        if !CLEANED_UP.swap(true, Ordering::SeqCst) {
            swarm.cleanup_stale().await;
        }
        swarm
    }

    /// The underlying bollard client (API version already negotiated).
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Creates a labelled service from the test image and returns its guard. It does not wait
    /// for convergence: call [`Self::wait_converged`]. Panics when creation fails.
    pub async fn create_service(&self, spec: TestService) -> ServiceGuard {
        let image = env::test_image(&spec.tag);
        let run_id = env::run_id();
        let name = service_name(
            &spec.name_prefix,
            &run_id,
            SERVICE_COUNTER.fetch_add(1, Ordering::SeqCst),
        );
        let service_spec = spec.to_spec(&name, &image, &run_id);
        let created = self
            .docker
            .create_service(service_spec, None)
            .await
            .unwrap_or_else(|e| panic!("creating test service {name} from {image}: {e}"));
        let id = created
            .id
            .unwrap_or_else(|| panic!("Docker returned no id for service {name}"));
        ServiceGuard {
            docker: self.docker.clone(),
            name,
            id,
            image,
            removed: false,
        }
    }

    /// The service as the engine reports it (spec, version, update status).
    pub async fn inspect(&self, name: &str) -> anyhow::Result<Service> {
        self.docker
            .inspect_service(name, None)
            .await
            .with_context(|| format!("inspecting service {name}"))
    }

    /// `n` services `<prefix>-…` on `:main`, labelled `<label>=platform` (a layer label of the
    /// caller's own, so concurrent tests never see each other's services), once all converged.
    pub async fn platform_services(
        &self,
        label: &str,
        prefix: &str,
        n: usize,
    ) -> Vec<ServiceGuard> {
        let mut guards = Vec::new();
        for _ in 0..n {
            guards.push(
                self.create_service(TestService::new(prefix, "main").label(label, "platform"))
                    .await,
            );
        }
        for g in &guards {
            self.wait_converged(g.name(), Duration::from_secs(90))
                .await
                .unwrap();
        }
        guards
    }

    /// The replicas the service's spec asks for (`None` for a global service).
    pub async fn replicas(&self, name: &str) -> anyhow::Result<Option<u64>> {
        Ok(self
            .inspect(name)
            .await?
            .spec
            .and_then(|s| s.mode)
            .and_then(|m| m.replicated)
            .and_then(|r| r.replicas)
            .map(|r| r as u64))
    }

    /// All tasks of a service (every state, including the failed history).
    pub async fn tasks(&self, name: &str) -> anyhow::Result<Vec<Task>> {
        let filters = HashMap::from([("service", vec![name])]);
        let opts = ListTasksOptionsBuilder::default().filters(&filters).build();
        let mut tasks = self
            .docker
            .list_tasks(Some(opts))
            .await
            .with_context(|| format!("listing tasks of {name}"))?;
        // `service=` also matches by id/name prefix: keep only this service's tasks.
        let service_id = self.inspect(name).await?.id.unwrap_or_default();
        tasks.retain(|t| t.service_id.as_deref() == Some(service_id.as_str()));
        Ok(tasks)
    }

    /// Exit codes of this service's tasks that have exited (failed/complete/shutdown).
    pub async fn task_exit_codes(&self, name: &str) -> anyhow::Result<Vec<i64>> {
        Ok(self
            .tasks(name)
            .await?
            .iter()
            .filter_map(|t| {
                let status = t.status.as_ref()?;
                let exited = matches!(
                    status.state?,
                    TaskState::FAILED | TaskState::COMPLETE | TaskState::SHUTDOWN
                );
                exited.then_some(status.container_status.as_ref()?.exit_code?)
            })
            .collect())
    }

    /// Waits until the number of RUNNING tasks running the service's current image equals
    /// the desired replica count, no task runs another image, and no update/rollback is in
    /// progress, and that has held with the same tasks for [`CONVERGED_STABLE_FOR`] (a
    /// crash-looping task is briefly RUNNING). The error lists every task's state and error.
    pub async fn wait_converged(&self, name: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut stable: Option<(Instant, Vec<String>)> = None;
        loop {
            let (running_ids, report) = self.convergence(name).await?;
            match (running_ids, &stable) {
                (Some(ids), Some((since, prev))) if *prev == ids => {
                    if since.elapsed() >= CONVERGED_STABLE_FOR {
                        return Ok(());
                    }
                }
                (Some(ids), _) => stable = Some((Instant::now(), ids)),
                (None, _) => stable = None,
            }
            if Instant::now() >= deadline {
                bail!(
                    "service {name} did not converge within {:?}: {report}",
                    timeout
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `(Some(sorted running task ids) if converged right now, human-readable report)`.
    async fn convergence(&self, name: &str) -> anyhow::Result<(Option<Vec<String>>, String)> {
        let service = self.inspect(name).await?;
        let spec = service
            .spec
            .as_ref()
            .ok_or_else(|| anyhow!("service {name} has no spec"))?;
        let image = spec
            .task_template
            .as_ref()
            .and_then(|t| t.container_spec.as_ref())
            .and_then(|c| c.image.clone())
            .ok_or_else(|| anyhow!("service {name} has no image"))?;
        let desired = spec
            .mode
            .as_ref()
            .and_then(|m| m.replicated.as_ref())
            .and_then(|r| r.replicas)
            .ok_or_else(|| anyhow!("service {name} is not a replicated service"))?;
        let update_state = service.update_status.as_ref().and_then(|u| u.state);
        let updating = matches!(
            update_state,
            Some(ServiceUpdateStatusStateEnum::UPDATING)
                | Some(ServiceUpdateStatusStateEnum::ROLLBACK_STARTED)
                | Some(ServiceUpdateStatusStateEnum::PAUSED)
                | Some(ServiceUpdateStatusStateEnum::ROLLBACK_PAUSED)
        );
        let tasks = self.tasks(name).await?;
        let mut running_ids = Vec::new();
        let mut running_expected = 0i64;
        let mut running_other = 0i64;
        let mut lines = Vec::new();
        for t in &tasks {
            let state = t.status.as_ref().and_then(|s| s.state);
            let task_image = t
                .spec
                .as_ref()
                .and_then(|s| s.container_spec.as_ref())
                .and_then(|c| c.image.as_deref())
                .unwrap_or("");
            if state == Some(TaskState::RUNNING) {
                if same_image(task_image, &image) {
                    running_expected += 1;
                    running_ids.push(t.id.clone().unwrap_or_default());
                } else {
                    running_other += 1;
                }
            }
            let status = t.status.as_ref();
            lines.push(format!(
                "slot {} {} (desired {}) image {} {}{}",
                t.slot.unwrap_or(0),
                state.map(|s| s.to_string()).unwrap_or_default(),
                t.desired_state.map(|s| s.to_string()).unwrap_or_default(),
                task_image,
                status.and_then(|s| s.message.clone()).unwrap_or_default(),
                status
                    .and_then(|s| s.err.clone())
                    .map(|e| format!(" error: {e}"))
                    .unwrap_or_default(),
            ));
        }
        let done = running_expected == desired && running_other == 0 && !updating;
        let report = format!(
            "want {desired} running task(s) of {image}, have {running_expected} \
             (+{running_other} of other images), update state {update_state:?}; tasks: [{}]",
            lines.join("; ")
        );
        running_ids.sort();
        Ok((done.then_some(running_ids), report))
    }

    /// Removes labelled test services created more than [`STALE_AFTER`] ago (leftovers of
    /// killed test runs). Never touches services without the [`TEST_LABEL`] label. Errors are
    /// printed, not raised.
    pub async fn cleanup_stale(&self) {
        let filters = HashMap::from([("label", vec![TEST_LABEL])]);
        let opts = ListServicesOptionsBuilder::default()
            .filters(&filters)
            .build();
        let services = match self.docker.list_services(Some(opts)).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("swarm fixture: cannot list services for stale cleanup: {e}");
                return;
            }
        };
        let now = unix_now();
        for svc in services {
            let labels = svc
                .spec
                .as_ref()
                .and_then(|s| s.labels.clone())
                .unwrap_or_default();
            if !labels.contains_key(TEST_LABEL) {
                continue;
            }
            let created = labels
                .get(CREATED_LABEL)
                .and_then(|v| v.parse::<u64>().ok())
                .or_else(|| created_at_unix(&svc));
            let Some(created) = created else { continue };
            if now.saturating_sub(created) < STALE_AFTER.as_secs() {
                continue;
            }
            let id = svc.id.clone().unwrap_or_default();
            let name = svc.spec.and_then(|s| s.name).unwrap_or_default();
            match self.docker.delete_service(&id).await {
                Ok(()) => eprintln!("swarm fixture: removed stale test service {name} ({id})"),
                Err(e) => eprintln!("swarm fixture: cannot remove stale service {name}: {e}"),
            }
        }
    }
}

/// `CreatedAt` as unix seconds, whatever type bollard's date feature gives it (it is
/// serialised back to JSON, where it is an RFC 3339 string either way).
fn created_at_unix(svc: &Service) -> Option<u64> {
    let value = serde_json::to_value(&svc.created_at).ok()?;
    let text = value.as_str()?;
    let parsed = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    u64::try_from(parsed.timestamp()).ok()
}

/// Compares image references ignoring a pinned `@sha256:` digest.
fn same_image(a: &str, b: &str) -> bool {
    let strip = |s: &str| s.split('@').next().unwrap_or("").to_string();
    strip(a) == strip(b)
}

/// Owns a test service: removes it when dropped (through the Docker CLI, blocking, errors
/// printed and ignored) or explicitly with [`ServiceGuard::remove`].
pub struct ServiceGuard {
    docker: Docker,
    name: String,
    id: String,
    image: String,
    removed: bool,
}

impl std::fmt::Debug for ServiceGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceGuard")
            .field("name", &self.name)
            .field("id", &self.id)
            .field("image", &self.image)
            .finish()
    }
}

impl ServiceGuard {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The full image reference the service was created with (`repo:tag`).
    pub fn image(&self) -> &str {
        &self.image
    }

    /// Removes the service and waits (up to 30 s) until the engine no longer knows it.
    pub async fn remove(mut self) -> anyhow::Result<()> {
        self.removed = true;
        match self.docker.delete_service(&self.id).await {
            Ok(()) => {}
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("removing service {}", self.name)),
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.docker.inspect_service(&self.id, None).await {
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => return Ok(()),
                Err(e) => return Err(e).context("waiting for service removal"),
                Ok(_) if Instant::now() >= deadline => {
                    bail!("service {} still exists 30 s after removal", self.name)
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

impl Drop for ServiceGuard {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        // The CLI needs no async runtime, so this works in any context (also while a failed
        // test unwinds). `docker service rm` of an already removed service just fails.
        match Command::new("docker")
            .args(["service", "rm", &self.id])
            .output()
        {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                let err = String::from_utf8_lossy(&out.stderr);
                if !err.contains("not found") {
                    eprintln!(
                        "swarm fixture: `docker service rm {}` failed: {}",
                        self.name,
                        err.trim()
                    );
                }
            }
            Err(e) => eprintln!("swarm fixture: cannot run `docker service rm`: {e}"),
        }
    }
}
