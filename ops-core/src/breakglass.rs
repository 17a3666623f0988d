//! Break-glass: a destructive action from the node's CLI without a Discord approval, for when
//! Discord is down. No row, no action: the audit row (`break_glass.<action>`, outcome
//! `started`, the reason, the real uid and `SUDO_USER`) is written BEFORE the action runs, and
//! when it cannot be written nothing runs; the result follows in a second row. The next
//! `serve` start posts every break-glass row since the last such post to the audit channel
//! ([`Ops::unannounced_break_glass`], then [`Ops::mark_break_glass_announced`]).

use std::future::Future;
use std::time::Instant;

use crate::audit::{Actor, AuditEntry, AuditRecord, Outcome};
use crate::base::OpsError;
use crate::base::{new_error_id, now_ms};
use crate::ops::Ops;
use crate::store::StoreError;

/// The audit command prefix of break-glass rows.
pub const PREFIX: &str = "break_glass.";
/// The audit command of the row `serve` appends after posting the break-glass rows up to
/// `params.through_id` to the audit channel.
pub const ANNOUNCED: &str = "startup.break_glass_announced";
/// At most this many rows are posted at one start (the rest are counted).
pub const ANNOUNCE_MAX: u32 = 50;

/// Who ran the CLI, as the kernel and sudo say: the real uid (from `/proc/self/status`, not
/// the environment), `SUDO_USER` and `SUDO_UID` when run through sudo, and `USER`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Operator {
    pub uid: Option<u32>,
    pub sudo_user: Option<String>,
    pub sudo_uid: Option<String>,
    pub user: Option<String>,
}

impl Operator {
    pub fn from_os() -> Operator {
        let var = |k: &str| {
            std::env::var(k)
                .ok()
                .filter(|v| !v.is_empty())
                .map(|v| v.chars().take(64).collect())
        };
        Operator {
            uid: real_uid(),
            sudo_user: var("SUDO_USER"),
            sudo_uid: var("SUDO_UID"),
            user: var("USER"),
        }
    }
}

/// The first field of `Uid:` in `/proc/self/status`: the real uid.
fn real_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl Ops {
    /// Runs `op` as break-glass action `action`: first appends the `started` row (with the
    /// reason in `params` and the [`Operator`]); if that append fails, `op` never runs and
    /// the error says so. Then runs `op` and appends its result (`ok`/`error`).
    pub async fn break_glass<T, F, Fut>(
        &self,
        actor: &Actor,
        action: &str,
        params: serde_json::Value,
        op: F,
    ) -> Result<T, OpsError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, OpsError>>,
    {
        let command = format!("{PREFIX}{action}");
        let mut params = params;
        if let Some(o) = params.as_object_mut() {
            o.insert(
                "operator".into(),
                serde_json::to_value(Operator::from_os()).unwrap_or_default(),
            );
        }
        let started = Instant::now();
        let entry = AuditEntry {
            at_ms: now_ms(),
            actor: actor.clone(),
            command: command.clone(),
            params: self.redactor.redact_json_untrusted(&params),
            outcome: Outcome::Started,
            detail: Some("break-glass: about to run without an approval".into()),
            error_id: None,
            duration_ms: 0,
        };
        if let Err(e) = self.store.append_audit(&entry).await {
            let error_id = new_error_id();
            tracing::error!(error_id = %error_id, command, error = %self.redactor.redact(&e.to_string()), "break-glass refused: the audit row cannot be written");
            return Err(OpsError {
                summary: "refused: the break-glass audit row could not be written, so nothing ran (no row, no action)".into(),
                error_id,
            });
        }
        let result = op().await;
        let (outcome, detail, error_id) = match &result {
            Ok(_) => (Outcome::Ok, None, None),
            Err(e) => (
                Outcome::Error,
                Some(e.summary.clone()),
                Some(e.error_id.clone()),
            ),
        };
        self.record(actor, &command, &params, outcome, detail, error_id, started)
            .await;
        result
    }

    /// The break-glass rows not yet posted to the audit channel: at most [`ANNOUNCE_MAX`],
    /// oldest first, the count of those left out, and the id the post covers.
    pub async fn unannounced_break_glass(&self) -> Result<Unannounced, StoreError> {
        let after = match self.store.last_audit_of(ANNOUNCED).await? {
            Some(r) => r.entry.params["through_id"].as_i64().unwrap_or(0),
            None => 0,
        };
        let mut rows = self
            .store
            .list_audit_commands(PREFIX, after, ANNOUNCE_MAX * 20)
            .await?;
        let through_id = rows.last().map(|r| r.id).unwrap_or(after);
        let more = rows.len().saturating_sub(ANNOUNCE_MAX as usize) as u64;
        rows.truncate(ANNOUNCE_MAX as usize);
        Ok(Unannounced {
            rows,
            more,
            through_id,
        })
    }

    /// Records that the break-glass rows up to `through_id` were posted.
    pub async fn mark_break_glass_announced(&self, through_id: i64) -> Result<(), StoreError> {
        let entry = AuditEntry {
            at_ms: now_ms(),
            actor: Actor {
                frontend: crate::audit::Frontend::Discord,
                id: "sprocket-ops".into(),
                name: "sprocket-ops".into(),
                github_login: None,
            },
            command: ANNOUNCED.into(),
            params: serde_json::json!({ "through_id": through_id }),
            outcome: Outcome::Ok,
            detail: None,
            error_id: None,
            duration_ms: 0,
        };
        self.store.append_audit(&entry).await.map(|_| ())
    }
}

/// What [`Ops::unannounced_break_glass`] found.
#[derive(Debug, Clone)]
pub struct Unannounced {
    pub rows: Vec<AuditRecord>,
    /// Rows after the first [`ANNOUNCE_MAX`], counted, not listed.
    pub more: u64,
    /// The newest row covered (for [`Ops::mark_break_glass_announced`]).
    pub through_id: i64,
}

/// One line for the audit channel about a break-glass row.
pub fn describe(r: &AuditRecord) -> String {
    let p = &r.entry.params;
    let op = &p["operator"];
    let mut who = r.entry.actor.name.clone();
    let mut real = Vec::new();
    if let Some(uid) = op["uid"].as_u64() {
        real.push(format!("uid {uid}"));
    }
    if let Some(s) = op["sudo_user"].as_str() {
        real.push(format!("sudo by {s}"));
    }
    if !real.is_empty() {
        who = format!("{who} ({})", real.join(", "));
    }
    let at = chrono::DateTime::from_timestamp_millis(r.entry.at_ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default();
    let target = ["service", "layer"]
        .iter()
        .find_map(|k| p[*k].as_str().map(|v| format!(" `{v}`")))
        .unwrap_or_default();
    let reason = p["break_glass"].as_str().unwrap_or("");
    let action = r
        .entry
        .command
        .strip_prefix(PREFIX)
        .unwrap_or(&r.entry.command);
    let mut line = format!(
        "#{} {at} {who}: {action}{target} {}: \"{}\"",
        r.id,
        r.entry.outcome.as_str(),
        reason.chars().take(200).collect::<String>()
    );
    if let Some(d) = &r.entry.detail {
        if r.entry.outcome == Outcome::Error {
            line.push_str(&format!(" ({})", d.chars().take(200).collect::<String>()));
        }
    }
    line
}
