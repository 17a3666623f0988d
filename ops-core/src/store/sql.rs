//! The SQL behind [`Store`] (every domain's repository trait), written once and instantiated for SQLite and Postgres: both accept
//! `$n` placeholders and the same DDL types through their own migration folders.

use async_trait::async_trait;
use sqlx::{Pool, Postgres, Row, Sqlite};

use super::{
    ApprovalStore, AuditLog, DeployRecord, DeployState, DeployStore, LayerLock, Link, LinkStore,
    Store, StoreError,
};
use crate::approvals::{ApprovalRequest, ApprovalState, Decision, PersonRef};
use crate::audit::{Actor, AuditEntry, AuditFilter, AuditRecord, Frontend, Outcome};

fn query_err(e: sqlx::Error) -> StoreError {
    StoreError::Query(e.to_string())
}

const INSERT_AUDIT: &str = "INSERT INTO audit_log (at_ms, frontend, actor_id, actor_name, github_login, command, params, outcome, detail, error_id, duration_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id";

const LIST_AUDIT: &str = "SELECT id, at_ms, frontend, actor_id, actor_name, github_login, command, params, outcome, detail, error_id, duration_ms \
     FROM audit_log WHERE ($1 IS NULL OR actor_id = $1) AND at_ms >= $2 ORDER BY id DESC LIMIT $3";

/// `substr` rather than `LIKE`: `_` in a command name is no wildcard.
const LIST_AUDIT_COMMANDS: &str = "SELECT id, at_ms, frontend, actor_id, actor_name, github_login, command, params, outcome, detail, error_id, duration_ms \
     FROM audit_log WHERE substr(command, 1, length($1)) = $1 AND id > $2 ORDER BY id ASC LIMIT $3";

const LAST_AUDIT_OF: &str = "SELECT id, at_ms, frontend, actor_id, actor_name, github_login, command, params, outcome, detail, error_id, duration_ms \
     FROM audit_log WHERE command = $1 ORDER BY id DESC LIMIT 1";

fn audit_from_row<R: Row>(row: &R) -> Result<AuditRecord, sqlx::Error>
where
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    let frontend = match row.try_get::<String, _>("frontend")?.as_str() {
        "cli" => Frontend::Cli,
        _ => Frontend::Discord,
    };
    let params: String = row.try_get("params")?;
    Ok(AuditRecord {
        id: row.try_get("id")?,
        entry: AuditEntry {
            at_ms: row.try_get("at_ms")?,
            actor: Actor {
                frontend,
                id: row.try_get("actor_id")?,
                name: row.try_get("actor_name")?,
                github_login: row.try_get("github_login")?,
            },
            command: row.try_get("command")?,
            params: serde_json::from_str(&params).unwrap_or(serde_json::Value::Null),
            outcome: Outcome::parse(&row.try_get::<String, _>("outcome")?),
            detail: row.try_get("detail")?,
            error_id: row.try_get("error_id")?,
            duration_ms: row.try_get("duration_ms")?,
        },
    })
}

const APPROVAL_COLUMNS: &str = "id, action, params, digest, summary, requester_github_id, requester_login, requester_discord_id, rule, state, created_at_ms, expires_at_ms, channel_id, message_id, result, bound, changes, attachment";

fn approval_from_row<R: Row>(row: &R) -> Result<ApprovalRequest, sqlx::Error>
where
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    let decode = |col: &str, e: String| sqlx::Error::ColumnDecode {
        index: col.to_string(),
        source: e.into(),
    };
    let params: String = row.try_get("params")?;
    let rule: String = row.try_get("rule")?;
    let state: String = row.try_get("state")?;
    let id_col = |col: &str| -> Result<Option<u64>, sqlx::Error> {
        let v: Option<String> = row.try_get(col)?;
        Ok(v.and_then(|v| v.parse().ok()))
    };
    Ok(ApprovalRequest {
        id: row.try_get("id")?,
        action: row.try_get("action")?,
        params: serde_json::from_str(&params).map_err(|e| decode("params", e.to_string()))?,
        digest: row.try_get("digest")?,
        summary: row.try_get("summary")?,
        requester: PersonRef {
            github_id: row.try_get::<i64, _>("requester_github_id")? as u64,
            login: row.try_get("requester_login")?,
            discord_id: row
                .try_get::<String, _>("requester_discord_id")?
                .parse()
                .map_err(|_| decode("requester_discord_id", "not a snowflake".into()))?,
        },
        rule: serde_json::from_str(&rule).map_err(|e| decode("rule", e.to_string()))?,
        state: ApprovalState::parse(&state).ok_or_else(|| decode("state", state.clone()))?,
        created_at_ms: row.try_get("created_at_ms")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        channel_id: id_col("channel_id")?,
        message_id: id_col("message_id")?,
        result: row.try_get("result")?,
        bound: row
            .try_get::<Option<String>, _>("bound")?
            .map(|b| serde_json::from_str(&b).map_err(|e| decode("bound", e.to_string())))
            .transpose()?
            .unwrap_or(serde_json::Value::Null),
        changes: row
            .try_get::<Option<String>, _>("changes")?
            .map(|c| serde_json::from_str(&c).map_err(|e| decode("changes", e.to_string())))
            .transpose()?
            .unwrap_or_default(),
        attachment: row.try_get("attachment")?,
    })
}

fn link_from_row<R: Row>(row: &R) -> Result<Link, sqlx::Error>
where
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    Ok(Link {
        discord_id: row.try_get::<String, _>("discord_id")?.parse().unwrap_or(0),
        github_id: row.try_get::<i64, _>("github_id")? as u64,
        github_login: row.try_get("github_login")?,
        linked_at_ms: row.try_get("linked_at_ms")?,
    })
}

const LOCK_COLUMNS: &str =
    "layer, owner, reason, started_at_ms, expires_at_ms, deploy_id, process, heartbeat_at_ms";

fn lock_from_row<R: Row>(row: &R) -> Result<LayerLock, sqlx::Error>
where
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    Ok(LayerLock {
        layer: row.try_get("layer")?,
        owner: row.try_get("owner")?,
        reason: row.try_get("reason")?,
        started_at_ms: row.try_get("started_at_ms")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        deploy_id: row.try_get("deploy_id")?,
        process: row.try_get("process")?,
        heartbeat_at_ms: row.try_get("heartbeat_at_ms")?,
    })
}

/// Inserts the lock, or takes over an expired one, in one statement.
const TAKE_LOCK: &str = "INSERT INTO layer_locks (layer, owner, reason, started_at_ms, expires_at_ms, deploy_id, process, heartbeat_at_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
     ON CONFLICT (layer) DO UPDATE SET owner = excluded.owner, reason = excluded.reason, \
     started_at_ms = excluded.started_at_ms, expires_at_ms = excluded.expires_at_ms, deploy_id = excluded.deploy_id, \
     process = excluded.process, heartbeat_at_ms = excluded.heartbeat_at_ms \
     WHERE layer_locks.expires_at_ms <= $4";

const DEPLOY_COLUMNS: &str = "id, layer, requester, approver, reason, image_before, image_after, state, started_at_ms, finished_at_ms, summary, error";

fn deploy_from_row<R: Row>(row: &R) -> Result<DeployRecord, sqlx::Error>
where
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    let state: String = row.try_get("state")?;
    let summary: String = row.try_get("summary")?;
    Ok(DeployRecord {
        id: row.try_get("id")?,
        layer: row.try_get("layer")?,
        requester: row.try_get("requester")?,
        approver: row.try_get("approver")?,
        reason: row.try_get("reason")?,
        image_before: row.try_get("image_before")?,
        image_after: row.try_get("image_after")?,
        state: DeployState::parse(&state).ok_or_else(|| sqlx::Error::ColumnDecode {
            index: "state".into(),
            source: format!("unknown deploy state `{state}`").into(),
        })?,
        started_at_ms: row.try_get("started_at_ms")?,
        finished_at_ms: row.try_get("finished_at_ms")?,
        summary: serde_json::from_str(&summary).unwrap_or(serde_json::Value::Null),
        error: row.try_get("error")?,
    })
}

macro_rules! sql_store {
    ($name:ident, $db:ty, $backend:literal) => {
        #[doc = concat!("The store on ", $backend, ".")]
        pub struct $name {
            pool: Pool<$db>,
        }

        impl $name {
            pub fn new(pool: Pool<$db>) -> Self {
                Self { pool }
            }
            /// The pool, for test assertions on raw rows.
            pub fn pool(&self) -> &Pool<$db> {
                &self.pool
            }
        }

        impl Store for $name {
            fn backend(&self) -> &'static str {
                $backend
            }
        }

        #[async_trait]
        impl AuditLog for $name {
            async fn append_audit(&self, e: &AuditEntry) -> Result<i64, StoreError> {
                let row = sqlx::query(INSERT_AUDIT)
                    .bind(e.at_ms)
                    .bind(e.actor.frontend.as_str())
                    .bind(&e.actor.id)
                    .bind(&e.actor.name)
                    .bind(&e.actor.github_login)
                    .bind(&e.command)
                    .bind(e.params.to_string())
                    .bind(e.outcome.as_str())
                    .bind(&e.detail)
                    .bind(&e.error_id)
                    .bind(e.duration_ms)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(query_err)?;
                row.try_get::<i64, _>("id").map_err(query_err)
            }

            async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
                let limit = if f.limit == 0 { 50 } else { f.limit.min(1000) };
                let rows = sqlx::query(LIST_AUDIT)
                    .bind(&f.actor_id)
                    .bind(f.since_ms.unwrap_or(0))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(query_err)?;
                rows.iter()
                    .map(|r| audit_from_row(r).map_err(query_err))
                    .collect()
            }

            async fn list_audit_commands(&self, prefix: &str, after_id: i64, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
                let rows = sqlx::query(LIST_AUDIT_COMMANDS)
                    .bind(prefix)
                    .bind(after_id)
                    .bind(i64::from(limit.clamp(1, 10_000)))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(query_err)?;
                rows.iter()
                    .map(|r| audit_from_row(r).map_err(query_err))
                    .collect()
            }

            async fn last_audit_of(&self, command: &str) -> Result<Option<AuditRecord>, StoreError> {
                let row = sqlx::query(LAST_AUDIT_OF)
                    .bind(command)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(query_err)?;
                row.map(|r| audit_from_row(&r).map_err(query_err)).transpose()
            }

        }

        #[async_trait]
        impl LinkStore for $name {
            async fn upsert_link(&self, l: &Link) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO links (discord_id, github_id, github_login, linked_at_ms) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (discord_id) DO UPDATE SET github_id = excluded.github_id, \
                     github_login = excluded.github_login, linked_at_ms = excluded.linked_at_ms",
                )
                .bind(l.discord_id.to_string())
                .bind(l.github_id as i64)
                .bind(&l.github_login)
                .bind(l.linked_at_ms)
                .execute(&self.pool)
                .await
                .map_err(query_err)?;
                Ok(())
            }

            async fn get_link(&self, discord_id: u64) -> Result<Option<Link>, StoreError> {
                let row = sqlx::query("SELECT discord_id, github_id, github_login, linked_at_ms FROM links WHERE discord_id = $1")
                    .bind(discord_id.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(query_err)?;
                row.map(|r| link_from_row(&r).map_err(query_err)).transpose()
            }

            async fn list_links(&self) -> Result<Vec<Link>, StoreError> {
                let rows = sqlx::query("SELECT discord_id, github_id, github_login, linked_at_ms FROM links ORDER BY discord_id")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(query_err)?;
                rows.iter().map(|r| link_from_row(r).map_err(query_err)).collect()
            }

        }

        #[async_trait]
        impl ApprovalStore for $name {
            async fn create_approval(&self, r: &ApprovalRequest) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO approvals (id, action, params, digest, summary, requester_github_id, requester_login, \
                     requester_discord_id, rule, state, created_at_ms, expires_at_ms, updated_at_ms, bound, changes, attachment) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $11, $13, $14, $15)",
                )
                .bind(&r.id)
                .bind(&r.action)
                .bind(r.params.to_string())
                .bind(&r.digest)
                .bind(&r.summary)
                .bind(r.requester.github_id as i64)
                .bind(&r.requester.login)
                .bind(r.requester.discord_id.to_string())
                .bind(serde_json::to_string(&r.rule).unwrap_or_default())
                .bind(r.state.as_str())
                .bind(r.created_at_ms)
                .bind(r.expires_at_ms)
                .bind(r.bound.to_string())
                .bind(serde_json::to_string(&r.changes).unwrap_or_default())
                .bind(r.attachment.as_deref())
                .execute(&self.pool)
                .await
                .map_err(query_err)?;
                Ok(())
            }

            async fn get_approval(&self, id: &str) -> Result<Option<ApprovalRequest>, StoreError> {
                let row = sqlx::query(&format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(query_err)?;
                row.map(|r| approval_from_row(&r).map_err(query_err)).transpose()
            }

            async fn set_approval_message(&self, id: &str, channel_id: u64, message_id: u64) -> Result<(), StoreError> {
                sqlx::query("UPDATE approvals SET channel_id = $2, message_id = $3 WHERE id = $1")
                    .bind(id)
                    .bind(channel_id.to_string())
                    .bind(message_id.to_string())
                    .execute(&self.pool)
                    .await
                    .map_err(query_err)?;
                Ok(())
            }

            async fn add_vote(&self, id: &str, v: &PersonRef, d: Decision, at_ms: i64) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "INSERT INTO approval_votes (approval_id, voter_github_id, voter_login, voter_discord_id, decision, at_ms) \
                     SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM approvals WHERE id = $1 AND state = 'pending') \
                     ON CONFLICT (approval_id, voter_github_id) DO NOTHING",
                )
                .bind(id)
                .bind(v.github_id as i64)
                .bind(&v.login)
                .bind(v.discord_id.to_string())
                .bind(d.as_str())
                .bind(at_ms)
                .execute(&self.pool)
                .await
                .map_err(query_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn count_votes(&self, id: &str, d: Decision) -> Result<u32, StoreError> {
                let row = sqlx::query("SELECT COUNT(*) AS n FROM approval_votes WHERE approval_id = $1 AND decision = $2")
                    .bind(id)
                    .bind(d.as_str())
                    .fetch_one(&self.pool)
                    .await
                    .map_err(query_err)?;
                Ok(row.try_get::<i64, _>("n").map_err(query_err)? as u32)
            }

            async fn list_votes(&self, id: &str) -> Result<Vec<(String, Decision)>, StoreError> {
                let rows = sqlx::query("SELECT voter_login, decision FROM approval_votes WHERE approval_id = $1 ORDER BY at_ms, voter_login")
                    .bind(id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(query_err)?;
                rows.iter()
                    .map(|r| {
                        let d: String = r.try_get("decision").map_err(query_err)?;
                        let d = if d == "deny" { Decision::Deny } else { Decision::Approve };
                        Ok((r.try_get("voter_login").map_err(query_err)?, d))
                    })
                    .collect()
            }

            async fn transition_approval(&self, id: &str, from: ApprovalState, to: ApprovalState, now_ms: i64) -> Result<bool, StoreError> {
                let expiry_guard = if from == ApprovalState::Pending && to != ApprovalState::Expired {
                    " AND expires_at_ms > $4"
                } else {
                    " AND $4 = $4"
                };
                let done = sqlx::query(&format!(
                    "UPDATE approvals SET state = $3, updated_at_ms = $4 WHERE id = $1 AND state = $2{expiry_guard}"
                ))
                .bind(id)
                .bind(from.as_str())
                .bind(to.as_str())
                .bind(now_ms)
                .execute(&self.pool)
                .await
                .map_err(query_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn finish_approval(&self, id: &str, to: ApprovalState, now_ms: i64, result: &str) -> Result<(), StoreError> {
                sqlx::query("UPDATE approvals SET state = $2, updated_at_ms = $3, result = $4 WHERE id = $1 AND state = 'executing'")
                    .bind(id)
                    .bind(to.as_str())
                    .bind(now_ms)
                    .bind(result)
                    .execute(&self.pool)
                    .await
                    .map_err(query_err)?;
                Ok(())
            }

            async fn expire_approvals(&self, now_ms: i64) -> Result<Vec<ApprovalRequest>, StoreError> {
                let rows = sqlx::query(&format!(
                    "UPDATE approvals SET state = 'expired', updated_at_ms = $1 \
                     WHERE state = 'pending' AND expires_at_ms <= $1 RETURNING {APPROVAL_COLUMNS}"
                ))
                .bind(now_ms)
                .fetch_all(&self.pool)
                .await
                .map_err(query_err)?;
                rows.iter().map(|r| approval_from_row(r).map_err(query_err)).collect()
            }

            async fn fail_interrupted_approvals(&self, now_ms: i64, executing: &str, approved: &str) -> Result<Vec<ApprovalRequest>, StoreError> {
                let rows = sqlx::query(&format!(
                    "UPDATE approvals SET state = 'failed', updated_at_ms = $1, \
                     result = CASE WHEN state = 'approved' THEN $3 ELSE $2 END \
                     WHERE state IN ('executing', 'approved') RETURNING {APPROVAL_COLUMNS}"
                ))
                .bind(now_ms)
                .bind(executing)
                .bind(approved)
                .fetch_all(&self.pool)
                .await
                .map_err(query_err)?;
                rows.iter().map(|r| approval_from_row(r).map_err(query_err)).collect()
            }

        }

        #[async_trait]
        impl DeployStore for $name {
            async fn take_layer_lock(&self, l: &LayerLock) -> Result<Result<(), LayerLock>, StoreError> {
                // A lock released between the refused upsert and the read is taken on the next
                // round; a lock that keeps changing hands is reported as held.
                let mut holder = None;
                for _ in 0..3 {
                    let done = sqlx::query(TAKE_LOCK)
                        .bind(&l.layer)
                        .bind(&l.owner)
                        .bind(&l.reason)
                        .bind(l.started_at_ms)
                        .bind(l.expires_at_ms)
                        .bind(&l.deploy_id)
                        .bind(&l.process)
                        .bind(l.heartbeat_at_ms)
                        .execute(&self.pool)
                        .await
                        .map_err(query_err)?;
                    if done.rows_affected() == 1 {
                        return Ok(Ok(()));
                    }
                    holder = self.get_layer_lock(&l.layer).await?;
                    if let Some(h) = holder {
                        return Ok(Err(h));
                    }
                }
                Ok(Err(holder.unwrap_or_else(|| LayerLock {
                    owner: "(changing hands)".into(),
                    reason: String::new(),
                    deploy_id: None,
                    process: String::new(),
                    ..l.clone()
                })))
            }

            async fn heartbeat_layer_lock(&self, layer: &str, deploy_id: &str, now_ms: i64) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE layer_locks SET heartbeat_at_ms = $3 WHERE layer = $1 AND deploy_id = $2",
                )
                .bind(layer)
                .bind(deploy_id)
                .bind(now_ms)
                .execute(&self.pool)
                .await
                .map_err(query_err)?;
                Ok(done.rows_affected() > 0)
            }

            async fn get_layer_lock(&self, layer: &str) -> Result<Option<LayerLock>, StoreError> {
                let row = sqlx::query(&format!("SELECT {LOCK_COLUMNS} FROM layer_locks WHERE layer = $1"))
                    .bind(layer)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(query_err)?;
                row.map(|r| lock_from_row(&r).map_err(query_err)).transpose()
            }

            async fn list_layer_locks(&self) -> Result<Vec<LayerLock>, StoreError> {
                let rows = sqlx::query(&format!("SELECT {LOCK_COLUMNS} FROM layer_locks ORDER BY layer"))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(query_err)?;
                rows.iter().map(|r| lock_from_row(r).map_err(query_err)).collect()
            }

            async fn release_layer_lock(&self, layer: &str, deploy_id: Option<&str>) -> Result<bool, StoreError> {
                let done = match deploy_id {
                    Some(id) => sqlx::query("DELETE FROM layer_locks WHERE layer = $1 AND deploy_id = $2")
                        .bind(layer)
                        .bind(id)
                        .execute(&self.pool)
                        .await,
                    None => sqlx::query("DELETE FROM layer_locks WHERE layer = $1")
                        .bind(layer)
                        .execute(&self.pool)
                        .await,
                }
                .map_err(query_err)?;
                Ok(done.rows_affected() > 0)
            }

            async fn create_deploy(&self, d: &DeployRecord) -> Result<(), StoreError> {
                sqlx::query(&format!(
                    "INSERT INTO deploys ({DEPLOY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
                ))
                .bind(&d.id)
                .bind(&d.layer)
                .bind(&d.requester)
                .bind(&d.approver)
                .bind(&d.reason)
                .bind(&d.image_before)
                .bind(&d.image_after)
                .bind(d.state.as_str())
                .bind(d.started_at_ms)
                .bind(d.finished_at_ms)
                .bind(d.summary.to_string())
                .bind(&d.error)
                .execute(&self.pool)
                .await
                .map_err(query_err)?;
                Ok(())
            }

            async fn finish_deploy(&self, d: &DeployRecord) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE deploys SET state = $2, finished_at_ms = $3, summary = $4, error = $5, image_before = $6 \
                     WHERE id = $1 AND state = 'running'",
                )
                .bind(&d.id)
                .bind(d.state.as_str())
                .bind(d.finished_at_ms)
                .bind(d.summary.to_string())
                .bind(&d.error)
                .bind(&d.image_before)
                .execute(&self.pool)
                .await
                .map_err(query_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn set_deploy_approver(&self, id: &str, approver: &str) -> Result<(), StoreError> {
                sqlx::query("UPDATE deploys SET approver = $2 WHERE id = $1")
                    .bind(id)
                    .bind(approver)
                    .execute(&self.pool)
                    .await
                    .map_err(query_err)?;
                Ok(())
            }

            async fn set_deploy_message(&self, id: &str, channel_id: u64, message_id: u64) -> Result<(), StoreError> {
                sqlx::query("UPDATE deploys SET channel_id = $2, message_id = $3 WHERE id = $1")
                    .bind(id)
                    .bind(channel_id.to_string())
                    .bind(message_id.to_string())
                    .execute(&self.pool)
                    .await
                    .map_err(query_err)?;
                Ok(())
            }

            async fn get_deploy_message(&self, id: &str) -> Result<Option<(u64, u64)>, StoreError> {
                let row: Option<(Option<String>, Option<String>)> =
                    sqlx::query_as("SELECT channel_id, message_id FROM deploys WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(query_err)?;
                Ok(row.and_then(|(c, m)| Some((c?.parse().ok()?, m?.parse().ok()?))))
            }

            async fn get_deploy(&self, id: &str) -> Result<Option<DeployRecord>, StoreError> {
                let row = sqlx::query(&format!("SELECT {DEPLOY_COLUMNS} FROM deploys WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(query_err)?;
                row.map(|r| deploy_from_row(&r).map_err(query_err)).transpose()
            }

            async fn list_deploys(&self, layer: Option<&str>, limit: u32) -> Result<Vec<DeployRecord>, StoreError> {
                let limit = if limit == 0 { 20 } else { limit.min(1000) };
                let rows = sqlx::query(&format!(
                    "SELECT {DEPLOY_COLUMNS} FROM deploys WHERE ($1 IS NULL OR layer = $1) \
                     ORDER BY started_at_ms DESC, id DESC LIMIT $2"
                ))
                .bind(layer)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(query_err)?;
                rows.iter().map(|r| deploy_from_row(r).map_err(query_err)).collect()
            }

            async fn interrupt_running_deploys(&self, now_ms: i64, error: &str) -> Result<Vec<DeployRecord>, StoreError> {
                let rows = sqlx::query(&format!(
                    "UPDATE deploys SET state = 'interrupted', finished_at_ms = $1, error = $2 \
                     WHERE state = 'running' AND NOT EXISTS (SELECT 1 FROM layer_locks \
                     WHERE layer_locks.deploy_id = deploys.id) \
                     RETURNING {DEPLOY_COLUMNS}"
                ))
                .bind(now_ms)
                .bind(error)
                .fetch_all(&self.pool)
                .await
                .map_err(query_err)?;
                rows.iter().map(|r| deploy_from_row(r).map_err(query_err)).collect()
            }
        }
    };
}

sql_store!(SqliteStore, Sqlite, "sqlite");
sql_store!(PgStore, Postgres, "postgres");
