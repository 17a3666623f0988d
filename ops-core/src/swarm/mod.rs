//! The Swarm as sprocket-ops sees it: plain data types and the [`SwarmApi`] trait. The real
//! adapter ([`docker::DockerSwarm`]) talks to the engine through bollard; tests can swap in fakes.
//!
//! Operations (issue 4): inspect, bump an image ([`imageref`] parses the reference), follow a
//! rollout ([`rollout`]), Swarm's own rollback, scale, forced restart, service logs with a
//! bounded, redacting collector ([`logs`]), and the approval executors ([`actions`]; those of
//! protected layers are `protect::executors`). Every change is an optimistic update on the service's version index, so a concurrent change is a
//! [`SwarmError::Conflict`], never a silent overwrite.

pub use crate::base::valid_service_name;

pub mod actions;
pub mod allowlist;
pub mod docker;
pub mod imageref;
pub mod logs;
mod rawapi;
pub mod rollout;
pub mod spec;

use std::collections::BTreeMap;

use async_trait::async_trait;
use futures::stream::BoxStream;

pub use imageref::{ImageRefError, ImageTarget};
pub use logs::{collect_logs, CollectedLogs, LogLine, LogQuery, LogStream};
pub use rollout::{RolloutOutcome, RolloutPoll, RolloutProgress};
pub use spec::{spec_diff, SpecFacts, SpecView};

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

/// One service as [`SwarmApi::inspect`] sees it: the [`ServiceInfo`] (with the version index
/// every change must name) plus what operations need beyond `/status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServiceDetail {
    pub info: ServiceInfo,
    /// `replicated`, `global`, `replicated-job` or `global-job`.
    pub mode: String,
    /// The image of Swarm's `PreviousSpec` (what a rollback returns to), if there is one.
    pub previous_image: Option<String>,
    /// The replica count of the previous spec (replicated services with a previous spec).
    pub previous_replicas: Option<u64>,
    /// `TaskTemplate.ForceUpdate`: incremented by every forced restart.
    pub force_update: u64,
}

impl std::ops::Deref for ServiceDetail {
    type Target = ServiceInfo;
    fn deref(&self) -> &ServiceInfo {
        &self.info
    }
}

/// A change the engine accepted; Swarm rolls it out in the background (follow it with
/// [`SwarmApi::follow_rollout`] from [`UpdateStarted::from_version`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UpdateStarted {
    pub service_id: String,
    pub name: String,
    /// The version index the change was applied to (the version before it).
    pub from_version: u64,
    pub image_before: String,
    pub image_after: String,
    /// Replica counts before and after (`None` for global services).
    pub replicas_before: Option<u64>,
    pub replicas_after: Option<u64>,
    /// Warnings of the engine. For the log (after redaction): they may name registries.
    pub warnings: Vec<String>,
}

/// Why an operation failed. The `Display` text is a safe summary for people; `detail` (where
/// present) is for the log only: it may carry internal addresses or spec values.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SwarmError {
    #[error("the Docker engine is unreachable")]
    Unreachable { detail: String },
    #[error("this Docker engine is not a Swarm manager")]
    NotAManager { detail: String },
    #[error("the Docker engine returned an error")]
    Api { detail: String },
    #[error("there is no service named `{name}`")]
    NotFound { name: String },
    #[error("`{name}` is not a valid service name")]
    InvalidServiceName { name: String },
    #[error("`{name}` changed since version {expected} was read: look at it again and retry")]
    Conflict {
        name: String,
        expected: u64,
        detail: String,
    },
    #[error("invalid image reference: {0}")]
    InvalidImage(#[from] ImageRefError),
    #[error("`{name}` has no previous spec to roll back to")]
    NoPreviousSpec { name: String },
    #[error("`{name}` is a {mode} service: only replicated services can be scaled")]
    NotReplicated { name: String, mode: String },
    #[error("this Swarm adapter does not support `{operation}`")]
    Unsupported { operation: &'static str },
}

impl SwarmError {
    /// The full detail, for the log line only (empty where the summary says it all).
    pub fn detail(&self) -> &str {
        match self {
            SwarmError::Unreachable { detail }
            | SwarmError::NotAManager { detail }
            | SwarmError::Api { detail }
            | SwarmError::Conflict { detail, .. } => detail,
            SwarmError::NotFound { .. }
            | SwarmError::InvalidServiceName { .. }
            | SwarmError::InvalidImage(_)
            | SwarmError::NoPreviousSpec { .. }
            | SwarmError::NotReplicated { .. }
            | SwarmError::Unsupported { .. } => "",
        }
    }

    fn unsupported(operation: &'static str) -> SwarmError {
        SwarmError::Unsupported { operation }
    }
}

/// Log lines of a service, as they arrive.
pub type LogLines = BoxStream<'static, Result<LogLine, SwarmError>>;
/// Progress of a rollout; the last item carries the outcome.
pub type RolloutStream = BoxStream<'static, RolloutProgress>;

/// The Swarm operations ops-core needs from an engine. Object safe (`Arc<dyn SwarmApi>`).
///
/// Every method except [`SwarmApi::snapshot`] has a default body that FAILS with
/// [`SwarmError::Unsupported`]: a hand-written fake implements only what its test uses, and
/// an unexpected call is an error, never a silent success. Changes take `expected_version`
/// (the version index the caller looked at): `None` uses the version read just before the
/// update; either way a concurrent change makes the engine refuse ([`SwarmError::Conflict`]).
#[async_trait]
pub trait SwarmApi: Send + Sync {
    /// Services (with task counts), tasks and nodes, in three calls.
    async fn snapshot(&self) -> Result<SwarmSnapshot, SwarmError>;

    /// One service by exact name (or full id). Unknown: [`SwarmError::NotFound`].
    async fn inspect(&self, _name: &str) -> Result<ServiceDetail, SwarmError> {
        Err(SwarmError::unsupported("inspect"))
    }

    /// As [`SwarmApi::inspect`], with the facts of the current and previous spec (what
    /// approvers are shown of a change), from the same read.
    async fn inspect_spec(&self, _name: &str) -> Result<SpecView, SwarmError> {
        Err(SwarmError::unsupported("inspect_spec"))
    }

    /// Sets the image of one service. `image` is a bare tag (`v2` or `:v2`: the current
    /// repository with that tag) or a full reference (taken as written). The current digest
    /// pin is dropped. The reference is checked before any call to the engine.
    async fn bump(
        &self,
        _name: &str,
        _image: &str,
        _expected_version: Option<u64>,
    ) -> Result<UpdateStarted, SwarmError> {
        Err(SwarmError::unsupported("bump"))
    }

    /// Polls the service until the change made on top of `since_version` completes, pauses,
    /// rolls back or times out. Each item is a progress report; the last one carries
    /// [`RolloutProgress::outcome`]. Fails at once for unknown services.
    async fn follow_rollout(
        &self,
        _name: &str,
        _since_version: u64,
        _poll: RolloutPoll,
    ) -> Result<RolloutStream, SwarmError> {
        Err(SwarmError::unsupported("follow_rollout"))
    }

    /// Swarm's own rollback to the previous spec. None: [`SwarmError::NoPreviousSpec`].
    async fn rollback(
        &self,
        _name: &str,
        _expected_version: Option<u64>,
    ) -> Result<UpdateStarted, SwarmError> {
        Err(SwarmError::unsupported("rollback"))
    }

    /// Sets the replica count of a replicated service ([`SwarmError::NotReplicated`] else).
    async fn scale(
        &self,
        _name: &str,
        _replicas: u64,
        _expected_version: Option<u64>,
    ) -> Result<UpdateStarted, SwarmError> {
        Err(SwarmError::unsupported("scale"))
    }

    /// A forced rolling restart: increments `TaskTemplate.ForceUpdate`.
    async fn restart(
        &self,
        _name: &str,
        _expected_version: Option<u64>,
    ) -> Result<UpdateStarted, SwarmError> {
        Err(SwarmError::unsupported("restart"))
    }

    /// The service's logs (`GET /services/{id}/logs`, stdout and stderr told apart). The
    /// lines are raw: pass them through [`collect_logs`] (which redacts) before showing them.
    async fn logs(&self, _name: &str, _query: LogQuery) -> Result<LogLines, SwarmError> {
        Err(SwarmError::unsupported("logs"))
    }
}

/// Strips a `@sha256:...` digest for display, as `docker service ls` does.
pub fn display_image(image: &str) -> &str {
    image.split('@').next().unwrap_or(image)
}
