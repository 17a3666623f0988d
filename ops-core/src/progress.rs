//! A deploy's progress as it is published: the phase, the steps, the warnings and errors, and
//! the callback type that receives each change. Its own module, importing nothing from the
//! crate, because both `deploy` (which publishes) and `approvals` (whose executors pass a sink
//! on for approved runs) name it, and `deploy` already imports `approvals`.

use std::sync::Arc;

use serde::Serialize;

/// Where a deploy is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployPhase {
    Locking,
    Configuring,
    Previewing,
    /// Nothing ran: an approval is needed.
    AwaitingApproval,
    Applying,
    Verifying,
    Succeeded,
    Failed,
    Cancelled,
}

/// Progress of one deploy, published on every change (the receiver throttles).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeployProgress {
    pub layer: String,
    pub deploy_id: Option<String>,
    pub phase: DeployPhase,
    pub steps_done: u32,
    pub steps_planned: u32,
    /// The resource being changed now.
    pub current: Option<String>,
    /// Redacted, colour-free, bounded.
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
}

impl DeployProgress {
    pub fn new(layer: &str) -> DeployProgress {
        DeployProgress {
            layer: layer.to_string(),
            deploy_id: None,
            phase: DeployPhase::Locking,
            steps_done: 0,
            steps_planned: 0,
            current: None,
            warnings: Vec::new(),
            errors: Vec::new(),
        }
    }
}

/// Receives every [`DeployProgress`] change.
pub type ProgressFn = Arc<dyn Fn(&DeployProgress) + Send + Sync>;

/// A progress callback that publishes into a `watch` channel (latest value wins).
pub fn watch_progress(layer: &str) -> (ProgressFn, tokio::sync::watch::Receiver<DeployProgress>) {
    let (tx, rx) = tokio::sync::watch::channel(DeployProgress::new(layer));
    let f: ProgressFn = Arc::new(move |p: &DeployProgress| {
        let _ = tx.send(p.clone());
    });
    (f, rx)
}

/// A progress callback that drops everything.
pub fn no_progress() -> ProgressFn {
    Arc::new(|_: &DeployProgress| {})
}
