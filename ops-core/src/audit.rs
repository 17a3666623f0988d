//! The audit log's data: who did what, through which frontend, with which (redacted) parameters,
//! and how it ended. Append-only: the store refuses updates and deletes.

use serde::{Deserialize, Serialize};

use crate::base::StoreError;

/// Who acts. Discord users are identified by their snowflake id; CLI users by their OS login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// `discord` or `cli`.
    pub frontend: Frontend,
    /// Discord user id, or the OS user name for the CLI.
    pub id: String,
    /// Display name (Discord username, or the OS user again).
    pub name: String,
    /// The linked GitHub login, once identity is known.
    pub github_login: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Frontend {
    Discord,
    Cli,
}

impl Frontend {
    pub fn as_str(self) -> &'static str {
        match self {
            Frontend::Discord => "discord",
            Frontend::Cli => "cli",
        }
    }
}

impl Actor {
    pub fn discord(user_id: u64, username: &str) -> Actor {
        Actor {
            frontend: Frontend::Discord,
            id: user_id.to_string(),
            name: username.to_string(),
            github_login: None,
        }
    }

    /// The CLI user, from the environment (`SUDO_USER`, then `USER`), else the numeric uid.
    pub fn cli_from_env() -> Actor {
        let name = ["SUDO_USER", "USER", "LOGNAME"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
            .unwrap_or_else(|| {
                #[cfg(unix)]
                {
                    use std::os::unix::fs::MetadataExt;
                    std::fs::metadata("/proc/self")
                        .map(|m| format!("uid-{}", m.uid()))
                        .unwrap_or_else(|_| "unknown".to_string())
                }
                #[cfg(not(unix))]
                {
                    "unknown".to_string()
                }
            });
        Actor {
            frontend: Frontend::Cli,
            id: name.clone(),
            name,
            github_login: None,
        }
    }
}

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Error,
    Denied,
    /// Written before an action runs (break-glass: no row, no action); its result follows
    /// in a row of its own.
    Started,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Denied => "denied",
            Outcome::Started => "started",
        }
    }
    pub fn parse(s: &str) -> Outcome {
        match s {
            "ok" => Outcome::Ok,
            "denied" => Outcome::Denied,
            "started" => Outcome::Started,
            _ => Outcome::Error,
        }
    }
}

/// One row to append. `params` must already be redacted (see `Ops::audited`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at_ms: i64,
    pub actor: Actor,
    pub command: String,
    pub params: serde_json::Value,
    pub outcome: Outcome,
    /// A safe summary; never raw engine error text.
    pub detail: Option<String>,
    pub error_id: Option<String>,
    pub duration_ms: i64,
}

/// A stored row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub id: i64,
    #[serde(flatten)]
    pub entry: AuditEntry,
}

/// Which rows to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Discord id or CLI user name.
    pub actor_id: Option<String>,
    pub since_ms: Option<i64>,
    pub limit: u32,
}

/// The audit log's repository (implemented by `store`).
#[async_trait::async_trait]
pub trait AuditLog: Send + Sync {
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
}
