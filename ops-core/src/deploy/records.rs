//! What a deploy persists: the layer lock ([`LayerLock`], with its heartbeat timing), the
//! history ([`DeployRecord`]), and the repository trait [`DeployStore`] the `store` implements.

use crate::base::StoreError;

/// A lock whose heartbeat is older than this belongs to a process that is gone (when its
/// process cannot be checked directly, see `deploy::Deployer::recover_interrupted`): recovery
/// frees it. The holder renews it every [`LOCK_HEARTBEAT_MS`].
pub const LOCK_STALE_MS: i64 = 30_000;
/// How often the process holding a layer lock renews its heartbeat.
pub const LOCK_HEARTBEAT_MS: i64 = 5_000;

/// Who holds a layer, since when, until when (a crashed holder's lock expires), and which
/// process holds it, alive as of its last heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LayerLock {
    pub layer: String,
    /// The person (GitHub login) or process holding it.
    pub owner: String,
    pub reason: String,
    pub started_at_ms: i64,
    pub expires_at_ms: i64,
    pub deploy_id: Option<String>,
    /// The process holding it (`host:pid:nonce`); empty for a lock of an older version.
    pub process: String,
    /// When that process last renewed it (0: never, so stale).
    pub heartbeat_at_ms: i64,
}

impl LayerLock {
    /// Its process renewed it within [`LOCK_STALE_MS`] of `now_ms`.
    pub fn is_alive(&self, now_ms: i64) -> bool {
        self.heartbeat_at_ms > now_ms - LOCK_STALE_MS
    }
}

/// Where a deploy stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeployState {
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// sprocket-ops stopped while it ran.
    Interrupted,
}

impl DeployState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeployState::Running => "running",
            DeployState::Succeeded => "succeeded",
            DeployState::Failed => "failed",
            DeployState::Cancelled => "cancelled",
            DeployState::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<DeployState> {
        Some(match s {
            "running" => DeployState::Running,
            "succeeded" => DeployState::Succeeded,
            "failed" => DeployState::Failed,
            "cancelled" => DeployState::Cancelled,
            "interrupted" => DeployState::Interrupted,
            _ => return None,
        })
    }
}

/// One layer deploy in the history.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeployRecord {
    pub id: String,
    pub layer: String,
    pub requester: String,
    pub approver: Option<String>,
    pub reason: String,
    /// The image tag configured before and requested by the deploy (layers with a tag key).
    pub image_before: Option<String>,
    pub image_after: Option<String>,
    pub state: DeployState,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    /// Preview and update counts, steps, warnings (redacted), as JSON.
    pub summary: serde_json::Value,
    /// Why it failed (redacted, safe to show).
    pub error: Option<String>,
}

impl DeployRecord {
    pub fn duration_ms(&self) -> Option<i64> {
        self.finished_at_ms.map(|f| f - self.started_at_ms)
    }
}

/// Where layer locks and the deploy history live (implemented by `store`).
#[async_trait::async_trait]
pub trait DeployStore: Send + Sync {
    /// Takes the lock of `lock.layer` in one conditional statement: inserted when the layer is
    /// free, taken over when the holder's lock expired (`expires_at_ms <= lock.started_at_ms`).
    /// `Ok(Err(holder))` when someone else holds it.
    async fn take_layer_lock(&self, lock: &LayerLock) -> Result<Result<(), LayerLock>, StoreError>;
    /// Renews the heartbeat of the lock of `layer` held for `deploy_id`; `false` when that
    /// lock is no longer held (released, or taken over).
    async fn heartbeat_layer_lock(
        &self,
        layer: &str,
        deploy_id: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError>;
    async fn get_layer_lock(&self, layer: &str) -> Result<Option<LayerLock>, StoreError>;
    /// Every held lock (expired ones included), by layer.
    async fn list_layer_locks(&self) -> Result<Vec<LayerLock>, StoreError>;
    /// Releases the lock of `layer` if it is held for `deploy_id` (`None`: whoever holds it);
    /// `true` when a lock was released.
    async fn release_layer_lock(
        &self,
        layer: &str,
        deploy_id: Option<&str>,
    ) -> Result<bool, StoreError>;
    /// Records a deploy as it starts.
    async fn create_deploy(&self, deploy: &DeployRecord) -> Result<(), StoreError>;
    /// Ends a `running` deploy with the record's state, end, summary, error and tag before;
    /// `false` when it was not running.
    async fn finish_deploy(&self, deploy: &DeployRecord) -> Result<bool, StoreError>;
    /// Records who approved a deploy (known after the approval executed it).
    async fn set_deploy_approver(&self, id: &str, approver: &str) -> Result<(), StoreError>;
    async fn get_deploy(&self, id: &str) -> Result<Option<DeployRecord>, StoreError>;
    /// Records where the deploy's own Discord message is (channel id, message id).
    async fn set_deploy_message(
        &self,
        id: &str,
        channel_id: u64,
        message_id: u64,
    ) -> Result<(), StoreError>;
    /// Where the deploy's own Discord message is, if one was recorded.
    async fn get_deploy_message(&self, id: &str) -> Result<Option<(u64, u64)>, StoreError>;
    /// Deploys, newest first; of one layer or of all.
    async fn list_deploys(
        &self,
        layer: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeployRecord>, StoreError>;
    /// Marks deploys left `running` without a layer lock as `interrupted` and returns them (a
    /// running deploy always holds its lock: recovery releases the locks of dead processes
    /// first). A deploy whose lock is held (a CLI deploy, another bot) is left alone.
    async fn interrupt_running_deploys(
        &self,
        now_ms: i64,
        error: &str,
    ) -> Result<Vec<DeployRecord>, StoreError>;
}
