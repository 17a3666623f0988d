//! The Swarm as sprocket-ops sees it: plain data types and the [`SwarmApi`] trait. The real
//! adapter ([`docker::DockerSwarm`]) talks to the engine through bollard; tests can swap in fakes.

pub mod docker;

use std::collections::BTreeMap;

use async_trait::async_trait;

/// A Swarm service, reduced to what operations need.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServiceInfo {
    pub id: String,
    pub name: String,
    /// The image reference as in the spec, digest included when Swarm pinned one.
    pub image: String,
    /// `Some(n)` for replicated services; `None` for global ones.
    pub replicas: Option<u64>,
    pub labels: BTreeMap<String, String>,
    /// Running and desired tasks as the engine counts them (`docker service ls`), when reported.
    pub running_tasks: Option<u64>,
    pub desired_tasks: Option<u64>,
    pub update_state: Option<String>,
    pub update_message: Option<String>,
    pub version: u64,
}

/// A Swarm task.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TaskInfo {
    pub id: String,
    pub service_id: String,
    pub slot: Option<u64>,
    pub node_id: Option<String>,
    pub desired_state: String,
    pub state: String,
    pub message: Option<String>,
    pub err: Option<String>,
    pub exit_code: Option<i64>,
    /// RFC 3339, as the engine reports it.
    pub timestamp: Option<String>,
}

/// A Swarm node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeInfo {
    pub id: String,
    pub hostname: String,
    pub role: String,
    pub availability: String,
    pub state: String,
}

/// Everything `/status` needs, fetched with a fixed number of calls (services, tasks, nodes).
#[derive(Debug, Clone, Default)]
pub struct SwarmSnapshot {
    pub services: Vec<ServiceInfo>,
    pub tasks: Vec<TaskInfo>,
    pub nodes: Vec<NodeInfo>,
}

/// Why the engine could not answer. `detail` is for logs only: it may carry internal addresses.
#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    #[error("the Docker engine is unreachable")]
    Unreachable { detail: String },
    #[error("this Docker engine is not a Swarm manager")]
    NotAManager { detail: String },
    #[error("the Docker engine returned an error")]
    Api { detail: String },
}

impl SwarmError {
    /// The full detail, for the log line only.
    pub fn detail(&self) -> &str {
        match self {
            SwarmError::Unreachable { detail }
            | SwarmError::NotAManager { detail }
            | SwarmError::Api { detail } => detail,
        }
    }
}

/// The Swarm operations ops-core needs from an engine.
#[async_trait]
pub trait SwarmApi: Send + Sync {
    /// Services (with task counts), tasks and nodes, in three calls.
    async fn snapshot(&self) -> Result<SwarmSnapshot, SwarmError>;
}

/// Strips a `@sha256:...` digest for display, as `docker service ls` does.
pub fn display_image(image: &str) -> &str {
    image.split('@').next().unwrap_or(image)
}
