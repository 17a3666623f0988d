//! The operations both frontends call: one [`Ops`] value holding the adapters as trait objects
//! (so tests swap in fakes), the layer map and the redactor. Every operation is audited the same
//! way whether it came from Discord or the CLI.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

// The shared kinds live in the leaf; re-exported here so the frontends keep their paths.
pub use crate::base::{new_error_id, now_ms, Denied, OpsError};

use crate::approvals::Approvals;
use crate::audit::{Actor, AuditEntry, AuditFilter, AuditRecord, Outcome};
use crate::github::Freshness;
use crate::identity::{Identity, Principal};
use crate::layers::LayerMap;
use crate::limits::{Budget, RateLimits};
use crate::permissions::EVERYONE;
use crate::redact::Redactor;
use crate::status::StatusReport;
use crate::store::{Store, StoreError};
use crate::swarm::SwarmApi;

/// The shared operations state.
pub struct Ops {
    pub swarm: Arc<dyn SwarmApi>,
    pub store: Arc<dyn Store>,
    pub layers: LayerMap,
    pub redactor: Arc<Redactor>,
    pub identity: Arc<Identity>,
    pub approvals: Arc<Approvals>,
    pub limits: Arc<RateLimits>,
    /// Vault, when `[vault]` is configured.
    pub vault: Option<Arc<dyn crate::vault::VaultApi>>,
    /// Layer deploys through the Pulumi CLI.
    pub deployer: Arc<crate::deploy::Deployer>,
    /// The alert engine's state, on the same database.
    pub alert_store: Arc<dyn crate::alerts::store::AlertStore>,
    /// Counters for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Which services change only by approval or break-glass, and which images are allowed.
    pub protection: Arc<crate::protect::Protection>,
}

/// What a command is about to do, which decides how fresh the identity check must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read-only: a cached GitHub answer up to the configured maximum age is acceptable.
    Read,
    /// Changes something (bump, scale, restart): checked against GitHub now, refused if
    /// GitHub, identity or the store cannot be checked.
    Change,
    /// Asks for a destructive action (an approval request): as `Change`, and it spends the
    /// per-hour destructive budget.
    Destructive,
}

impl Ops {
    /// Checks that the Discord user may run `command` (its role from permissions.toml) and is
    /// within their rate limits. Denials are audited. Commands open to `everyone` pass without
    /// GitHub (`Ok(None)` when the person is not linked).
    ///
    /// The caller has already spent the Discord id's rate limit ([`Ops::admit`]: the Discord
    /// front end does it for every slash command, click and form before anything else).
    /// Refusals are remembered briefly ([`crate::identity::NEGATIVE_CACHE_TTL`]), so a stream of
    /// refused invocations costs no GitHub calls. The person's (GitHub id's) limits are spent
    /// after the role check.
    pub async fn authorize(
        &self,
        actor: &Actor,
        discord_id: u64,
        command: &str,
        access: Access,
    ) -> Result<Option<Principal>, Denied> {
        let started = Instant::now();
        let perms = self.identity.permissions();
        let needed = perms.required_role(command).unwrap_or("(none)").to_string();
        let freshness = match access {
            Access::Read => Freshness::MayBeStale,
            Access::Change => Freshness::MustBeFresh,
            Access::Destructive => Freshness::Live,
        };
        let result: Result<Option<Principal>, Denied> = async {
            let allows = |roles: &std::collections::BTreeSet<String>| perms.allows(roles, command);
            let principal = if needed == EVERYONE {
                self.identity.resolve(discord_id, freshness).await.ok()
            } else {
                let p = self
                    .identity
                    .resolve_for(discord_id, freshness, &allows)
                    .await
                    .map_err(|e| Denied(e.to_string()))?;
                if !perms.allows(&p.roles, command) {
                    return Err(Denied(format!(
                        "`{command}` needs the `{needed}` role; {} holds {}",
                        p.person.login,
                        describe_roles(&p.roles)
                    )));
                }
                Some(p)
            };
            // One person with two Discord accounts shares one budget.
            if let Some(p) = &principal {
                let key = format!("gh:{}", p.person.github_id);
                self.limits
                    .check(&key, Budget::Command)
                    .and_then(|()| match access {
                        Access::Destructive => self.limits.check(&key, Budget::Destructive),
                        Access::Read | Access::Change => Ok(()),
                    })
                    .map_err(rate_limited)?;
            }
            Ok(principal)
        }
        .await;
        if let Err(d) = &result {
            let mut actor = actor.clone();
            // The store is not asked again for a rate-limited Discord id.
            if !d.0.starts_with(RATE_LIMITED) {
                if let Ok(p) = self.identity.person(discord_id).await {
                    actor.github_login = Some(p.login);
                }
            }
            self.record(
                &actor,
                command,
                &serde_json::json!({}),
                Outcome::Denied,
                Some(d.0.clone()),
                None,
                started,
            )
            .await;
        }
        result
    }

    /// Spends one unit of the Discord id's command budget, before anything asks who the person
    /// is: slash commands (through [`Ops::authorize`]), button clicks and modal submits. Nothing
    /// else is read, so a flood from one Discord account reaches neither the store nor GitHub.
    pub fn admit(&self, discord_id: u64) -> Result<(), Denied> {
        self.limits
            .check(&format!("discord:{discord_id}"), Budget::Command)
            .map_err(rate_limited)
    }

    /// Checks a layer name from a user; the error names the closest configured layers.
    pub fn check_layer(&self, layer: &str) -> Result<(), String> {
        check_layer(&self.layers, layer)
    }

    /// `/status` and `sprocket-ops status`: the Swarm by layer. An unreachable engine is part of
    /// the answer, not an error, so the bot keeps answering while Docker is down.
    pub async fn status(&self, layer: Option<&str>) -> StatusReport {
        self.status_from(self.swarm.snapshot().await, layer)
    }

    /// [`Ops::status`] from a snapshot taken elsewhere (the CLI takes it while the store
    /// opens).
    pub fn status_from(
        &self,
        snapshot: Result<crate::swarm::SwarmSnapshot, crate::swarm::SwarmError>,
        layer: Option<&str>,
    ) -> StatusReport {
        match snapshot {
            Ok(snap) => {
                let mut report = StatusReport::build(&snap, &self.layers, layer);
                // Task errors are the engine's (and the service's) text: redacted like logs.
                for t in report
                    .layers
                    .iter_mut()
                    .flat_map(|l| l.services.iter_mut())
                    .flat_map(|s| s.failing_tasks.iter_mut())
                {
                    if let Some(e) = t.error.as_mut() {
                        *e = self.redactor.redact(e).into_owned();
                    }
                }
                report
            }
            Err(e) => {
                let id = new_error_id();
                tracing::warn!(error_id = %id, detail = %self.redactor.redact(e.detail()), "swarm snapshot failed");
                StatusReport::unavailable(&format!("{e} (error id {id})"))
            }
        }
    }

    /// Runs `op`, then appends one audit row with the redacted parameters, the outcome and the
    /// duration. If the audit row cannot be written the result is still returned, and the
    /// failure is logged: read-only commands must not fail because of the audit log, and
    /// destructive actions check the store before they start (fail closed).
    pub async fn audited<T, F, Fut>(
        &self,
        actor: &Actor,
        command: &str,
        params: serde_json::Value,
        op: F,
    ) -> Result<T, OpsError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, OpsError>>,
    {
        let started = Instant::now();
        let result = op().await;
        let (outcome, detail, error_id) = match &result {
            Ok(_) => (Outcome::Ok, None, None),
            Err(e) => (
                Outcome::Error,
                Some(e.summary.clone()),
                Some(e.error_id.clone()),
            ),
        };
        self.record(actor, command, &params, outcome, detail, error_id, started)
            .await;
        result
    }

    /// Appends one audit row (used by [`Ops::audited`] and for denials).
    #[allow(clippy::too_many_arguments)]
    pub async fn record(
        &self,
        actor: &Actor,
        command: &str,
        params: &serde_json::Value,
        outcome: Outcome,
        detail: Option<String>,
        error_id: Option<String>,
        started: Instant,
    ) {
        let entry = AuditEntry {
            at_ms: now_ms(),
            actor: actor.clone(),
            command: command.to_string(),
            // What a person typed: masked, never learned from (see `redact_untrusted`).
            params: self.redactor.redact_json_untrusted(params),
            outcome,
            detail: detail.map(|d| self.redactor.redact(&d).into_owned()),
            error_id,
            duration_ms: started.elapsed().as_millis() as i64,
        };
        self.metrics.command(command, outcome.as_str());
        if command.starts_with("approval.") {
            self.metrics.approval(outcome.as_str());
        }
        if let Err(e) = self.store.append_audit(&entry).await {
            tracing::error!(command, error = %self.redactor.redact(&e.to_string()), "audit append failed");
        }
    }

    /// The audit log, newest first.
    pub async fn audit_log(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        self.store.list_audit(filter).await
    }

    /// Logs `detail` (redacted) with a fresh error id and returns the safe summary.
    pub fn fail(&self, summary: &str, detail: &dyn std::fmt::Display) -> OpsError {
        let error_id = new_error_id();
        tracing::error!(error_id = %error_id, detail = %self.redactor.redact(&detail.to_string()), "{summary}");
        OpsError {
            summary: summary.to_string(),
            error_id,
        }
    }
}

const RATE_LIMITED: &str = "rate limited: retry in";

fn rate_limited(wait: std::time::Duration) -> Denied {
    Denied(format!("{RATE_LIMITED} {} s", wait.as_secs().max(1)))
}

fn describe_roles(roles: &std::collections::BTreeSet<String>) -> String {
    let named: Vec<&str> = roles
        .iter()
        .map(String::as_str)
        .filter(|r| *r != EVERYONE)
        .collect();
    if named.is_empty() {
        "no roles".to_string()
    } else {
        format!("roles {}", named.join(", "))
    }
}

/// `Ok` when `layer` is configured; else a message naming the closest layers.
pub fn check_layer(layers: &LayerMap, layer: &str) -> Result<(), String> {
    if layers.contains(layer) {
        return Ok(());
    }
    let near = crate::base::closest(layer, layers.names());
    let all: Vec<&str> = layers.names().collect();
    Err(if near.is_empty() {
        format!("unknown layer `{layer}`; layers are: {}", all.join(", "))
    } else {
        format!("unknown layer `{layer}`; did you mean {}?", near.join(", "))
    })
}
