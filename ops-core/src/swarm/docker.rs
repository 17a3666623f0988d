//! The bollard adapter behind [`SwarmApi`]: the local engine socket, or `tcp://`/`http://` for a
//! docker-socket-proxy. The API version is negotiated on first use, not at start-up, so the bot
//! starts (and says so in `/status`) while the engine is unreachable, and recovers when it returns.

use std::collections::BTreeMap;

use async_trait::async_trait;
use bollard::errors::Error as BollardError;
use bollard::models::{Node, Service, Task};
use bollard::query_parameters::{ListNodesOptions, ListServicesOptions, ListTasksOptions};
use bollard::{Docker, API_DEFAULT_VERSION};
use tokio::sync::Mutex;

use super::{NodeInfo, ServiceInfo, SwarmApi, SwarmError, SwarmSnapshot, TaskInfo};

/// The real Swarm, through the Docker Engine API.
pub struct DockerSwarm {
    host: String,
    timeout_secs: u64,
    client: Mutex<Option<Docker>>,
}

impl DockerSwarm {
    /// Validates the address; connects lazily.
    pub fn new(host: &str, timeout_secs: u64) -> Result<DockerSwarm, SwarmError> {
        connect(host, timeout_secs)?;
        Ok(DockerSwarm {
            host: host.to_string(),
            timeout_secs,
            client: Mutex::new(None),
        })
    }

    /// A client with a negotiated API version, created on first use and kept after success.
    pub async fn client(&self) -> Result<Docker, SwarmError> {
        let mut guard = self.client.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let docker = connect(&self.host, self.timeout_secs)?
            .negotiate_version()
            .await
            .map_err(map_err)?;
        *guard = Some(docker.clone());
        Ok(docker)
    }
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
