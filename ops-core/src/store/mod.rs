//! Persistence behind one [`Store`] trait: SQLite by default (a file, created on first run),
//! Postgres supported. Runtime queries with `$n` placeholders (both backends accept them) and an
//! embedded migration folder per backend, so nothing needs a database at build time.

mod sql;

use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

use crate::approvals::{ApprovalRequest, ApprovalState, Decision, PersonRef};
use crate::audit::{AuditEntry, AuditFilter, AuditRecord};
use crate::secret::Secret;

pub use sql::{PgStore, SqliteStore};

/// Why the store failed. `detail` is for logs (it never contains the password: URLs are
/// redacted before they are formatted).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database URL is invalid: {0}")]
    BadUrl(String),
    #[error("cannot open the database: {0}")]
    Open(String),
    #[error("database migration failed: {0}")]
    Migrate(String),
    #[error("database error: {0}")]
    Query(String),
}

/// What sprocket-ops persists.
#[async_trait]
pub trait Store: Send + Sync {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// Appends one audit row; returns its id.
    async fn append_audit(&self, entry: &AuditEntry) -> Result<i64, StoreError>;
    /// Audit rows, newest first.
    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError>;
    /// Audit rows whose command starts with `prefix` and whose id is above `after_id`, oldest
    /// first, at most `limit`.
    async fn list_audit_commands(
        &self,
        prefix: &str,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError>;
    /// The newest audit row of exactly `command`.
    async fn last_audit_of(&self, command: &str) -> Result<Option<AuditRecord>, StoreError>;

    /// Links a Discord user to a GitHub account (replacing an earlier link of that user).
    async fn upsert_link(&self, link: &Link) -> Result<(), StoreError>;
    async fn get_link(&self, discord_id: u64) -> Result<Option<Link>, StoreError>;
    async fn list_links(&self) -> Result<Vec<Link>, StoreError>;

    async fn create_approval(&self, req: &ApprovalRequest) -> Result<(), StoreError>;
    async fn get_approval(&self, id: &str) -> Result<Option<ApprovalRequest>, StoreError>;
    async fn set_approval_message(
        &self,
        id: &str,
        channel_id: u64,
        message_id: u64,
    ) -> Result<(), StoreError>;
    /// Records a vote; `false` when this person already voted on the request.
    async fn add_vote(
        &self,
        id: &str,
        voter: &PersonRef,
        decision: Decision,
        at_ms: i64,
    ) -> Result<bool, StoreError>;
    async fn count_votes(&self, id: &str, decision: Decision) -> Result<u32, StoreError>;
    /// (login, decision) in the order they were cast.
    async fn list_votes(&self, id: &str) -> Result<Vec<(String, Decision)>, StoreError>;
    /// Moves `id` from `from` to `to` atomically; `false` if it was not in `from` (someone else
    /// moved it first). A move out of `pending` also requires the request not to have expired.
    async fn transition_approval(
        &self,
        id: &str,
        from: ApprovalState,
        to: ApprovalState,
        now_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Ends an `executing` request with its result.
    async fn finish_approval(
        &self,
        id: &str,
        to: ApprovalState,
        now_ms: i64,
        result: &str,
    ) -> Result<(), StoreError>;
    /// Expires every overdue pending request and returns those it expired.
    async fn expire_approvals(&self, now_ms: i64) -> Result<Vec<ApprovalRequest>, StoreError>;
    /// Marks requests a crash left `executing` (result `executing`) or `approved` (result
    /// `approved`) as failed and returns them.
    async fn fail_interrupted_approvals(
        &self,
        now_ms: i64,
        executing: &str,
        approved: &str,
    ) -> Result<Vec<ApprovalRequest>, StoreError>;

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

/// A Discord user's GitHub account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub discord_id: u64,
    pub github_id: u64,
    pub github_login: String,
    pub linked_at_ms: i64,
}

/// Opens (creating a SQLite file if needed) and migrates the store named by `url`.
pub async fn connect(url: &str, password: Option<&Secret>) -> Result<Arc<dyn Store>, StoreError> {
    Ok(open(url, password).await?.store())
}

/// An opened store with its concrete backend, for the parts that need more than [`Store`]
/// (the alert state store is implemented on the same pools).
#[derive(Clone)]
pub enum Backend {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PgStore>),
}

impl Backend {
    pub fn store(&self) -> Arc<dyn Store> {
        match self {
            Backend::Sqlite(s) => s.clone(),
            Backend::Postgres(p) => p.clone(),
        }
    }

    pub fn alerts(&self) -> Arc<dyn crate::alerts::store::AlertStore> {
        match self {
            Backend::Sqlite(s) => s.clone(),
            Backend::Postgres(p) => p.clone(),
        }
    }
}

/// Opens (creating a SQLite file if needed) and migrates the store named by `url`.
pub async fn open(url: &str, password: Option<&Secret>) -> Result<Backend, StoreError> {
    open_with(url, password, None).await
}

/// [`open`] with at most `max_connections` pooled connections (default 4 for SQLite, 8 for
/// Postgres). A one-shot CLI command passes 1: one connection opened, migrated and used.
pub async fn open_with(
    url: &str,
    password: Option<&Secret>,
    max_connections: Option<u32>,
) -> Result<Backend, StoreError> {
    if url.starts_with("sqlite:") {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::BadUrl(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(std::time::Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.unwrap_or(4).max(1))
            .connect_with(opts)
            .await
            .map_err(|e| StoreError::Open(format!("{}: {e}", redact_url_password(url))))?;
        sqlx::migrate!("migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migrate(e.to_string()))?;
        Ok(Backend::Sqlite(Arc::new(SqliteStore::new(pool))))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let mut opts = PgConnectOptions::from_str(url)
            .map_err(|_| StoreError::BadUrl(redact_url_password(url)))?;
        if let Some(pw) = password {
            opts = opts.password(pw.expose());
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.unwrap_or(8).max(1))
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect_with(opts)
            .await
            .map_err(|e| StoreError::Open(format!("{}: {e}", redact_url_password(url))))?;
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migrate(e.to_string()))?;
        Ok(Backend::Postgres(Arc::new(PgStore::new(pool))))
    } else {
        Err(StoreError::BadUrl(
            "expected sqlite:// or postgres://".to_string(),
        ))
    }
}

/// `postgres://user:pw@host/db` -> `postgres://user:***@host/db`, for messages and logs.
pub fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, tail) = match rest.find('@') {
        Some(i) if !rest[..i].contains('/') => (&rest[..i], &rest[i..]),
        _ => return url.to_string(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***{tail}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_hidden() {
        assert_eq!(
            redact_url_password("postgres://u:pw@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            redact_url_password("postgres://u@h/db"),
            "postgres://u@h/db"
        );
        assert_eq!(redact_url_password("sqlite://x.db"), "sqlite://x.db");
    }
}
