//! The bollard adapter behind [`SwarmApi`]: the local engine socket, or `tcp://`/`http://` for a
//! docker-socket-proxy. The API version is negotiated on first use, not at start-up, so the bot
//! starts (and says so in `/status`) while the engine is unreachable, and recovers when it returns.
//!
//! Changes are read-modify-write on the typed spec, sent with the version index that was read
//! (or the caller's `expected_version`): the engine refuses a stale one ("update out of
//! sequence", 500 on API 1.41, 409 on newer engines), which becomes [`SwarmError::Conflict`].
//! `inspect` is one raw `GET /services/{name}` ([`super::rawapi`]) because bollard's `Service`
//! model has no `PreviousSpec`. Names are checked before they go into a request path, and only
//! an exact name or full id is accepted (the engine also resolves id prefixes).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::models::{Node, Service, ServiceSpec, Task};
use bollard::query_parameters::{
    ListNodesOptions, ListServicesOptions, ListTasksOptions, LogsOptions, UpdateServiceOptions,
};
use bollard::{Docker, API_DEFAULT_VERSION};
use futures::StreamExt;
use tokio::sync::Mutex;

use super::imageref::ImageTarget;
use super::rollout::{self, Observation, ObservedTask, RolloutPoll};
use super::{
    rawapi, valid_service_name, LogLine, LogLines, LogQuery, LogStream, NodeInfo, RolloutStream,
    ServiceDetail, ServiceInfo, SpecFacts, SpecView, SwarmApi, SwarmError, SwarmSnapshot, TaskInfo,
    UpdateStarted,
};

/// The real Swarm, through the Docker Engine API.
pub struct DockerSwarm {
    host: String,
    timeout_secs: u64,
    client: Mutex<Option<Docker>>,
    /// Taught the secret-like env values of every spec read (see [`DockerSwarm::with_redactor`]).
    redactor: Option<std::sync::Arc<crate::redact::Redactor>>,
}

impl DockerSwarm {
    /// Checks the address form only; connects lazily, so a missing socket or a stopped engine
    /// at start-up is reported by the first operation (and `/status`), not fatal.
    pub fn new(host: &str, timeout_secs: u64) -> Result<DockerSwarm, SwarmError> {
        if !["unix://", "tcp://", "http://"]
            .iter()
            .any(|p| host.starts_with(p))
        {
            return Err(SwarmError::Unreachable {
                detail: format!("{host}: expected unix://, tcp:// or http://"),
            });
        }
        Ok(DockerSwarm {
            host: host.to_string(),
            timeout_secs,
            client: Mutex::new(None),
            redactor: None,
        })
    }

    /// Every service spec (current and previous) and task spec this adapter reads teaches
    /// `redactor` its secret-like env values ([`crate::redact::secret_env_values`]): whatever
    /// the service then prints, in whatever encoding, is masked in logs, task errors and alerts.
    pub fn with_redactor(mut self, redactor: std::sync::Arc<crate::redact::Redactor>) -> Self {
        self.redactor = Some(redactor);
        self
    }

    fn learn_env(&self, env: Option<&Vec<String>>) {
        if let (Some(r), Some(env)) = (&self.redactor, env) {
            let values = crate::redact::secret_env_values(env);
            r.learn(values.iter().map(String::as_str));
        }
    }

    fn learn_spec(&self, spec: Option<&ServiceSpec>) {
        let env = spec
            .and_then(|s| s.task_template.as_ref())
            .and_then(|t| t.container_spec.as_ref())
            .and_then(|c| c.env.as_ref());
        self.learn_env(env);
    }

    /// A client with a negotiated API version, created on first use and kept after success.
    pub async fn client(&self) -> Result<Docker, SwarmError> {
        if let Some(c) = self.client.lock().await.as_ref() {
            return Ok(c.clone());
        }
        // Negotiate without holding the lock: while the engine stalls, concurrent callers each
        // wait for their own timeout instead of queueing behind one another.
        let docker = connect(&self.host, self.timeout_secs)?
            .negotiate_version()
            .await
            .map_err(map_err)?;
        *self.client.lock().await = Some(docker.clone());
        Ok(docker)
    }

    /// Forgets the negotiated client after an `Unreachable`: the engine may have been replaced.
    async fn settle<T>(&self, result: Result<T, SwarmError>) -> Result<T, SwarmError> {
        if let Err(SwarmError::Unreachable { .. }) = &result {
            *self.client.lock().await = None;
        }
        result
    }

    /// The service named exactly `name` (or with that full id), with its previous spec.
    async fn fetch(&self, docker: &Docker, name: &str) -> Result<Fetched, SwarmError> {
        if !valid_service_name(name) {
            return Err(SwarmError::InvalidServiceName {
                name: name.chars().take(80).collect(),
            });
        }
        let v = docker.client_version();
        let path = format!("/v{}.{}/services/{name}", v.major_version, v.minor_version);
        let timeout = Duration::from_secs(self.timeout_secs.max(1));
        let (status, body) = rawapi::get(&self.host, &path, timeout).await?;
        let text = String::from_utf8_lossy(&body);
        match status {
            200 => {}
            404 => {
                return Err(SwarmError::NotFound {
                    name: name.to_string(),
                })
            }
            503 if text.contains("swarm") => {
                return Err(SwarmError::NotAManager {
                    detail: format!("GET {path}: {status} {text}"),
                })
            }
            _ => {
                return Err(SwarmError::Api {
                    detail: format!(
                        "GET {path}: {status} {}",
                        text.chars().take(2000).collect::<String>()
                    ),
                })
            }
        }
        let mut value: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| SwarmError::Api {
                detail: format!("GET {path}: unparsable service: {e}"),
            })?;
        let previous = value
            .as_object_mut()
            .and_then(|o| o.remove("PreviousSpec"))
            .filter(|p| !p.is_null());
        let facts = (
            SpecFacts::from_spec_json(&value["Spec"]),
            previous.as_ref().map(SpecFacts::from_spec_json),
        );
        let service: Service = serde_json::from_value(value).map_err(|e| SwarmError::Api {
            detail: format!("GET {path}: unparsable service: {e}"),
        })?;
        let previous: Option<ServiceSpec> = previous
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| SwarmError::Api {
                detail: format!("GET {path}: unparsable previous spec: {e}"),
            })?;
        let id = service.id.clone().unwrap_or_default();
        let spec_name = service
            .spec
            .as_ref()
            .and_then(|s| s.name.clone())
            .unwrap_or_default();
        if spec_name != name && id != name {
            // The engine resolved an id prefix: not what was named.
            return Err(SwarmError::NotFound {
                name: name.to_string(),
            });
        }
        self.learn_spec(service.spec.as_ref());
        self.learn_spec(previous.as_ref());
        let detail = service_detail(&service, previous.as_ref());
        Ok(Fetched {
            service,
            detail,
            facts,
        })
    }

    /// Reads the service, lets `edit` change its spec, and sends it with the version read (or
    /// `expected_version`). `rollback`: Swarm's rollback to the previous spec instead.
    async fn change(
        &self,
        name: &str,
        expected_version: Option<u64>,
        rollback: bool,
        edit: impl FnOnce(&ServiceDetail, &mut ServiceSpec) -> Result<(), SwarmError> + Send,
    ) -> Result<UpdateStarted, SwarmError> {
        let docker = self.client().await?;
        let Fetched {
            service, detail, ..
        } = self.fetch(&docker, name).await?;
        let mut spec = service.spec.clone().unwrap_or_default();
        edit(&detail, &mut spec)?;
        let version = expected_version.unwrap_or(detail.version);
        let options = UpdateServiceOptions {
            version: i32::try_from(version).map_err(|_| SwarmError::Api {
                detail: format!("version index {version} does not fit the API's int32"),
            })?,
            rollback: rollback.then(|| "previous".to_string()),
            ..Default::default()
        };
        let (image_after, replicas_after) = if rollback {
            (
                detail.previous_image.clone().unwrap_or_default(),
                detail.previous_replicas.or(detail.replicas),
            )
        } else {
            let after = service_info(Service {
                spec: Some(spec.clone()),
                ..Default::default()
            });
            (after.image, after.replicas)
        };
        let answer = docker
            .update_service(&detail.id, spec, options, None)
            .await
            .map_err(|e| map_update_err(name, version, e))?;
        Ok(UpdateStarted {
            service_id: detail.id.clone(),
            name: detail.name.clone(),
            from_version: version,
            image_before: detail.image.clone(),
            image_after,
            replicas_before: detail.replicas,
            replicas_after,
            warnings: answer.warnings.unwrap_or_default(),
        })
    }
}

/// A service as read by [`DockerSwarm::fetch`].
struct Fetched {
    service: Service,
    detail: ServiceDetail,
    /// The facts of its spec and previous spec.
    facts: (SpecFacts, Option<SpecFacts>),
}

fn connect(host: &str, timeout: u64) -> Result<Docker, SwarmError> {
    let res = if let Some(path) = host.strip_prefix("unix://") {
        Docker::connect_with_unix(path, timeout, API_DEFAULT_VERSION)
    } else {
        Docker::connect_with_http(host, timeout, API_DEFAULT_VERSION)
    };
    res.map_err(|e| SwarmError::Unreachable {
        detail: format!("{host}: {e}"),
    })
}

/// Errors of `POST /services/{id}/update`: a stale version is a conflict.
fn map_update_err(name: &str, expected: u64, e: BollardError) -> SwarmError {
    if let BollardError::DockerResponseServerError {
        status_code,
        message,
    } = &e
    {
        if *status_code == 409 || message.contains("out of sequence") {
            return SwarmError::Conflict {
                name: name.to_string(),
                expected,
                detail: e.to_string(),
            };
        }
        if *status_code == 404 {
            return SwarmError::NotFound {
                name: name.to_string(),
            };
        }
        if message.contains("does not have a previous spec") {
            return SwarmError::NoPreviousSpec {
                name: name.to_string(),
            };
        }
    }
    map_err(e)
}

fn map_err(e: BollardError) -> SwarmError {
    let detail = e.to_string();
    match e {
        BollardError::DockerResponseServerError {
            status_code: 503, ..
        } if detail.contains("swarm") => SwarmError::NotAManager { detail },
        BollardError::DockerResponseServerError { .. }
        | BollardError::JsonDataError { .. }
        | BollardError::JsonSerdeError { .. } => SwarmError::Api { detail },
        _ => SwarmError::Unreachable { detail },
    }
}

#[async_trait]
impl SwarmApi for DockerSwarm {
    async fn snapshot(&self) -> Result<SwarmSnapshot, SwarmError> {
        let docker = self.client().await?;
        let (services, tasks, nodes) = tokio::join!(
            docker.list_services(Some(ListServicesOptions {
                filters: None,
                status: Some(true),
            })),
            docker.list_tasks(None::<ListTasksOptions>),
            docker.list_nodes(None::<ListNodesOptions>),
        );
        if self.redactor.is_some() {
            for s in services.iter().flatten() {
                self.learn_spec(s.spec.as_ref());
            }
            for t in tasks.iter().flatten() {
                self.learn_env(
                    t.spec
                        .as_ref()
                        .and_then(|s| s.container_spec.as_ref())
                        .and_then(|c| c.env.as_ref()),
                );
            }
        }
        let result = (|| {
            Ok(SwarmSnapshot {
                services: services
                    .map_err(map_err)?
                    .into_iter()
                    .map(service_info)
                    .collect(),
                tasks: tasks.map_err(map_err)?.into_iter().map(task_info).collect(),
                nodes: nodes.map_err(map_err)?.into_iter().map(node_info).collect(),
            })
        })();
        if let Err(SwarmError::Unreachable { .. }) = &result {
            // Negotiate again next time: the engine may have been replaced.
            *self.client.lock().await = None;
        }
        result
    }

    async fn inspect(&self, name: &str) -> Result<ServiceDetail, SwarmError> {
        let result = async {
            let docker = self.client().await?;
            Ok(self.fetch(&docker, name).await?.detail)
        }
        .await;
        self.settle(result).await
    }

    async fn inspect_spec(&self, name: &str) -> Result<SpecView, SwarmError> {
        let result = async {
            let docker = self.client().await?;
            let f = self.fetch(&docker, name).await?;
            Ok(SpecView {
                detail: f.detail,
                current: f.facts.0,
                previous: f.facts.1,
            })
        }
        .await;
        self.settle(result).await
    }

    async fn bump(
        &self,
        name: &str,
        image: &str,
        expected_version: Option<u64>,
    ) -> Result<UpdateStarted, SwarmError> {
        // Checked before any call to the engine.
        let target = ImageTarget::parse(image)?;
        let result = self
            .change(name, expected_version, false, |detail, spec| {
                let new_image = target.resolve(&detail.image)?;
                let container = spec
                    .task_template
                    .get_or_insert_with(Default::default)
                    .container_spec
                    .get_or_insert_with(Default::default);
                container.image = Some(new_image);
                Ok(())
            })
            .await;
        self.settle(result).await
    }

    async fn follow_rollout(
        &self,
        name: &str,
        since_version: u64,
        poll: RolloutPoll,
    ) -> Result<RolloutStream, SwarmError> {
        let result = async {
            let docker = self.client().await?;
            let fetched = self.fetch(&docker, name).await?;
            let (id, name) = (fetched.detail.id.clone(), name.to_string());
            let label = name.clone();
            Ok(rollout::follow(&label, since_version, poll, move || {
                observe(docker.clone(), id.clone(), name.clone())
            }))
        }
        .await;
        self.settle(result).await
    }

    async fn rollback(
        &self,
        name: &str,
        expected_version: Option<u64>,
    ) -> Result<UpdateStarted, SwarmError> {
        let result = self
            .change(name, expected_version, true, |detail, _spec| {
                if detail.previous_image.is_none() {
                    return Err(SwarmError::NoPreviousSpec {
                        name: detail.name.clone(),
                    });
                }
                Ok(())
            })
            .await;
        self.settle(result).await
    }

    async fn scale(
        &self,
        name: &str,
        replicas: u64,
        expected_version: Option<u64>,
    ) -> Result<UpdateStarted, SwarmError> {
        let result = self
            .change(name, expected_version, false, |detail, spec| {
                if detail.mode != "replicated" {
                    return Err(SwarmError::NotReplicated {
                        name: detail.name.clone(),
                        mode: detail.mode.clone(),
                    });
                }
                let n = i64::try_from(replicas).map_err(|_| SwarmError::Api {
                    detail: format!("{replicas} replicas do not fit the API's int64"),
                })?;
                let mode = spec.mode.get_or_insert_with(Default::default);
                mode.replicated
                    .get_or_insert_with(Default::default)
                    .replicas = Some(n);
                Ok(())
            })
            .await;
        self.settle(result).await
    }

    async fn restart(
        &self,
        name: &str,
        expected_version: Option<u64>,
    ) -> Result<UpdateStarted, SwarmError> {
        let result = self
            .change(name, expected_version, false, |detail, spec| {
                let template = spec.task_template.get_or_insert_with(Default::default);
                template.force_update = Some(detail.force_update.wrapping_add(1));
                Ok(())
            })
            .await;
        self.settle(result).await
    }

    async fn logs(&self, name: &str, query: LogQuery) -> Result<LogLines, SwarmError> {
        let result = async {
            let docker = self.client().await?;
            let id = self.fetch(&docker, name).await?.detail.id.clone();
            let options = LogsOptions {
                follow: query.follow,
                stdout: true,
                stderr: true,
                since: query
                    .since
                    .map(|s| s.clamp(0, i64::from(i32::MAX)) as i32)
                    .unwrap_or(0),
                until: 0,
                timestamps: query.timestamps,
                tail: query
                    .tail
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "all".to_string()),
            };
            let lines = docker
                .service_logs(&id, Some(options))
                .filter_map(|item| async move {
                    match item {
                        Ok(output) => log_line(output).map(Ok),
                        Err(e) => Some(Err(map_err(e))),
                    }
                })
                .boxed();
            Ok(lines)
        }
        .await;
        self.settle(result).await
    }
}

/// One log frame as a line: stdout (and a TTY's console) or stderr, newline removed.
fn log_line(output: LogOutput) -> Option<LogLine> {
    let (stream, message) = match output {
        LogOutput::StdOut { message } | LogOutput::Console { message } => {
            (LogStream::Stdout, message)
        }
        LogOutput::StdErr { message } => (LogStream::Stderr, message),
        LogOutput::StdIn { .. } => return None,
    };
    // A frame without its newline that fills Docker's buffer is a piece of a longer line.
    let partial = !message.ends_with(b"\n") && message.len() >= crate::redact::DOCKER_LINE_CUT;
    let text = String::from_utf8_lossy(&message);
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    Some(LogLine {
        stream,
        text: text.to_string(),
        partial,
    })
}

/// One poll of a rollout: the service (with task counts) and its tasks, two calls.
async fn observe(docker: Docker, id: String, name: String) -> Result<Observation, SwarmError> {
    let service_filter = HashMap::from([("id".to_string(), vec![id.clone()])]);
    let task_filter = HashMap::from([("service".to_string(), vec![id.clone()])]);
    let (services, tasks) = tokio::join!(
        docker.list_services(Some(ListServicesOptions {
            filters: Some(service_filter),
            status: Some(true),
        })),
        docker.list_tasks(Some(ListTasksOptions {
            filters: Some(task_filter),
        })),
    );
    let service = services
        .map_err(map_err)?
        .into_iter()
        .find(|s| s.id.as_deref() == Some(id.as_str()))
        .ok_or(SwarmError::NotFound { name })?;
    let desired_from_status = service
        .service_status
        .as_ref()
        .and_then(|s| s.desired_tasks);
    let detail = service_detail(&service, None);
    Ok(Observation {
        version: detail.version,
        image: detail.image.clone(),
        force_update: detail.force_update,
        desired: detail.replicas.or(desired_from_status).unwrap_or(0),
        update_state: detail.update_state.clone(),
        update_message: detail.update_message.clone(),
        tasks: tasks
            .map_err(map_err)?
            .into_iter()
            .filter(|t| t.service_id.as_deref() == Some(id.as_str()))
            .map(|t| {
                let spec = t.spec.unwrap_or_default();
                ObservedTask {
                    image: spec
                        .container_spec
                        .and_then(|c| c.image)
                        .unwrap_or_default(),
                    force_update: spec.force_update.unwrap_or(0),
                    state: enum_str(&t.status.and_then(|s| s.state)),
                }
            })
            .collect(),
    })
}

/// [`ServiceDetail`] of a service and its previous spec.
fn service_detail(service: &Service, previous: Option<&ServiceSpec>) -> ServiceDetail {
    let spec = service.spec.clone().unwrap_or_default();
    let mode = spec.mode.clone().unwrap_or_default();
    let mode_name = if mode.global.is_some() {
        "global"
    } else if mode.replicated_job.is_some() {
        "replicated-job"
    } else if mode.global_job.is_some() {
        "global-job"
    } else {
        "replicated"
    };
    let force_update = spec
        .task_template
        .as_ref()
        .and_then(|t| t.force_update)
        .unwrap_or(0);
    let previous_info = previous.map(|p| {
        service_info(Service {
            spec: Some(p.clone()),
            ..Default::default()
        })
    });
    ServiceDetail {
        info: service_info(service.clone()),
        mode: mode_name.to_string(),
        previous_image: previous_info
            .as_ref()
            .map(|p| p.image.clone())
            .filter(|i| !i.is_empty()),
        previous_replicas: previous_info.and_then(|p| p.replicas),
        force_update,
    }
}

fn enum_str<T: serde::Serialize>(v: &Option<T>) -> String {
    v.as_ref()
        .and_then(|v| serde_json::to_value(v).ok())
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

pub(crate) fn service_info(s: Service) -> ServiceInfo {
    let spec = s.spec.unwrap_or_default();
    let mode = spec.mode.unwrap_or_default();
    let replicas = match (&mode.replicated, &mode.global) {
        (_, Some(_)) => None,
        (Some(r), _) => Some(r.replicas.unwrap_or(1).max(0) as u64),
        _ => Some(1),
    };
    let image = spec
        .task_template
        .and_then(|t| t.container_spec)
        .and_then(|c| c.image)
        .unwrap_or_default();
    let status = s.service_status.unwrap_or_default();
    let update = s.update_status;
    ServiceInfo {
        id: s.id.unwrap_or_default(),
        name: spec.name.unwrap_or_default(),
        image,
        replicas,
        labels: spec
            .labels
            .unwrap_or_default()
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        running_tasks: status.running_tasks,
        desired_tasks: status.desired_tasks,
        update_state: update
            .as_ref()
            .map(|u| enum_str(&u.state))
            .filter(|s| !s.is_empty()),
        update_message: update.and_then(|u| u.message),
        version: s.version.and_then(|v| v.index).unwrap_or(0),
    }
}

pub(crate) fn task_info(t: Task) -> TaskInfo {
    let status = t.status.unwrap_or_default();
    TaskInfo {
        id: t.id.unwrap_or_default(),
        service_id: t.service_id.unwrap_or_default(),
        slot: t.slot.map(|s| s.max(0) as u64),
        node_id: t.node_id,
        desired_state: enum_str(&t.desired_state),
        state: enum_str(&status.state),
        message: status.message,
        err: status.err,
        exit_code: status.container_status.and_then(|c| c.exit_code),
        timestamp: status.timestamp.map(|t| t.to_string()),
    }
}

pub(crate) fn node_info(n: Node) -> NodeInfo {
    let spec = n.spec.unwrap_or_default();
    let status = n.status.unwrap_or_default();
    NodeInfo {
        id: n.id.unwrap_or_default(),
        hostname: n.description.and_then(|d| d.hostname).unwrap_or_default(),
        role: enum_str(&spec.role),
        availability: enum_str(&spec.availability),
        state: enum_str(&status.state),
    }
}
