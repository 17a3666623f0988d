//! Service operations both frontends call (`/bump`, `/scale`, `/restart`, `/logs` and their CLI
//! twins): names checked, unknown names answered with the closest matches, engine errors turned
//! into safe summaries with an error id (the redacted detail goes to the log only).

use std::time::Duration;

use crate::base::closest;
use crate::base::{new_error_id, OpsError};
use crate::ops::Ops;
use crate::swarm::logs::{collect_logs, CollectedLogs, LogQuery};
use crate::swarm::rollout::RolloutPoll;
use crate::swarm::{
    display_image, valid_service_name, ImageTarget, RolloutStream, ServiceDetail, SwarmError,
    UpdateStarted,
};

/// Autocomplete must answer within Discord's 3 s: the engine gets this long.
pub const AUTOCOMPLETE_BUDGET: Duration = Duration::from_millis(1500);

/// A change to a service, as a person asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceChange {
    /// A tag or a full image reference, as typed.
    Bump(String),
    Scale(u64),
    Restart,
    Rollback,
}

impl ServiceChange {
    /// The command key (permissions.toml) and CLI subcommand.
    pub fn command(&self) -> &'static str {
        match self {
            ServiceChange::Bump(_) => "bump",
            ServiceChange::Scale(_) => "scale",
            ServiceChange::Restart => "restart",
            ServiceChange::Rollback => "rollback",
        }
    }

    /// The approval action of this change on a service of a protected layer.
    pub fn protected_action(&self) -> &'static str {
        match self {
            ServiceChange::Bump(_) => crate::protect::PROTECTED_BUMP,
            ServiceChange::Scale(_) => crate::protect::PROTECTED_SCALE,
            ServiceChange::Restart => crate::protect::PROTECTED_RESTART,
            ServiceChange::Rollback => crate::protect::PROTECTED_ROLLBACK,
        }
    }
}

/// An approval request to make (or, for break-glass, the action to run without one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalPlan {
    pub action: String,
    /// The executor's parameters; `service` is the resolved name.
    pub params: serde_json::Value,
    /// What will run, naming the resolved service ("scale `prod-web` from 2 to 0 replicas").
    pub summary: String,
}

/// How a change may run.
#[derive(Debug)]
pub enum Route {
    /// Now, by the person who asked (through [`Ops::bump`], [`Ops::scale`], [`Ops::restart`]).
    Direct(ServiceDetail),
    /// After a second engineer approves the plan.
    Approval(ApprovalPlan),
    /// Never from Discord or the CLI's normal path (one of sprocket-ops' own services): only
    /// the CLI's break-glass runs the plan (an error when the change could not run anyway,
    /// like a rollback without a previous spec). `reason` is the refusal, safe to show.
    BreakGlassOnly {
        reason: String,
        plan: Result<ApprovalPlan, OpsError>,
    },
}

/// Why a change was not routed.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// Refused by policy (audit it as denied); the text is safe to show.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Failed(#[from] OpsError),
}

impl Ops {
    /// A safe summary for people; the redacted detail is logged under the same error id.
    pub fn swarm_error(&self, e: SwarmError) -> OpsError {
        let error_id = new_error_id();
        tracing::warn!(
            error_id = %error_id,
            detail = %self.redactor.redact(e.detail()),
            "swarm: {e}"
        );
        OpsError {
            summary: e.to_string(),
            error_id,
        }
    }

    /// Service names matching `partial`, for autocomplete (at most 25, within the budget).
    pub async fn service_names(&self, partial: &str) -> Vec<String> {
        let Ok(Ok(snap)) = tokio::time::timeout(AUTOCOMPLETE_BUDGET, self.swarm.snapshot()).await
        else {
            return Vec::new();
        };
        let partial = partial.to_ascii_lowercase();
        let mut names: Vec<String> = snap
            .services
            .into_iter()
            .map(|s| s.name)
            .filter(|n| n.to_ascii_lowercase().contains(&partial))
            .collect();
        names.sort();
        names.truncate(25);
        names
    }

    /// The service, or an error naming the closest existing services.
    pub async fn service(&self, name: &str) -> Result<ServiceDetail, OpsError> {
        if !valid_service_name(name) {
            return Err(OpsError {
                summary: format!("`{}` is not a valid service name", name.escape_debug()),
                error_id: new_error_id(),
            });
        }
        match self.swarm.inspect(name).await {
            Ok(d) => Ok(d),
            Err(SwarmError::NotFound { .. }) => {
                let known = match self.swarm.snapshot().await {
                    Ok(s) => s.services.into_iter().map(|s| s.name).collect::<Vec<_>>(),
                    Err(_) => Vec::new(),
                };
                let near = closest(name, known.iter().map(String::as_str));
                let hint = if near.is_empty() {
                    String::new()
                } else {
                    format!("; did you mean {}?", near.join(", "))
                };
                Err(OpsError {
                    summary: format!("there is no service named `{name}`{hint}"),
                    error_id: new_error_id(),
                })
            }
            Err(e) => Err(self.swarm_error(e)),
        }
    }

    /// Sets one service's image (a tag or a full reference), on the version just inspected.
    /// Only changes [`Ops::route_change`] lets run directly: anything else is refused.
    pub async fn bump(&self, name: &str, image: &str) -> Result<UpdateStarted, OpsError> {
        let d = self
            .direct(name, &ServiceChange::Bump(image.to_string()))
            .await?;
        self.swarm
            .bump(&d.name, image, Some(d.version))
            .await
            .map_err(|e| self.swarm_error(e))
    }

    /// Scales to a non-zero count (zero needs an approval: see the `scale_to_zero` action).
    pub async fn scale(&self, name: &str, replicas: u64) -> Result<UpdateStarted, OpsError> {
        let d = self.direct(name, &ServiceChange::Scale(replicas)).await?;
        self.swarm
            .scale(&d.name, replicas, Some(d.version))
            .await
            .map_err(|e| self.swarm_error(e))
    }

    /// A forced rolling restart.
    pub async fn restart(&self, name: &str) -> Result<UpdateStarted, OpsError> {
        let d = self.direct(name, &ServiceChange::Restart).await?;
        self.swarm
            .restart(&d.name, Some(d.version))
            .await
            .map_err(|e| self.swarm_error(e))
    }

    /// The service, when `change` may run without an approval; else the refusal as an error.
    async fn direct(&self, name: &str, change: &ServiceChange) -> Result<ServiceDetail, OpsError> {
        let refused = |summary: String| OpsError {
            summary,
            error_id: new_error_id(),
        };
        match self.route_change(name, change).await {
            Ok(Route::Direct(d)) => Ok(d),
            Ok(Route::Approval(plan)) => Err(refused(format!(
                "refused: {} needs a second engineer's approval (`{}`)",
                plan.summary, plan.action
            ))),
            Ok(Route::BreakGlassOnly { reason, .. }) => Err(refused(reason)),
            Err(ChangeError::Refused(m)) => Err(refused(m)),
            Err(ChangeError::Failed(e)) => Err(e),
        }
    }

    /// Decides how `change` of the service `name` may run, before anything runs: the image is
    /// checked against `[images] allowed`, the service is resolved (summaries and parameters
    /// name it as the engine does, never as typed), sprocket-ops' own services are refused
    /// (break-glass only), every change to a service of an `always_requires_approval` layer
    /// becomes a `protected_*` approval, scaling to 0 and rollbacks become approvals.
    pub async fn route_change(
        &self,
        name: &str,
        change: &ServiceChange,
    ) -> Result<Route, ChangeError> {
        let target = match change {
            ServiceChange::Bump(image) => {
                let t = ImageTarget::parse(image)
                    .map_err(|e| self.swarm_error(SwarmError::InvalidImage(e)))?;
                self.protection
                    .images
                    .check(&t)
                    .map_err(ChangeError::Refused)?;
                Some(t)
            }
            _ => None,
        };
        let d = self.service(name).await?;
        let described = self.describe(change, &d, target.as_ref());
        let name = d.name.clone();
        if self.protection.is_self(&d) {
            // Refused whatever the change would be (even one that could not run).
            return Ok(Route::BreakGlassOnly {
                reason: format!(
                    "refused: `{name}` is one of sprocket-ops' own services (the bot or its socket proxy): it is never changed from Discord or the CLI's normal path, approved or not, because a mistake would cut sprocket-ops off. On a manager node, run `sprocket-ops {} {name} … --break-glass \"<reason>\"` (audited).",
                    change.command()
                ),
                plan: described.map(|(summary, params)| ApprovalPlan {
                    action: change.protected_action().to_string(),
                    params,
                    summary,
                }),
            });
        }
        let (what, params) = described?;
        if let Some(layer) = self.protection.protected_layer(&d) {
            return Ok(Route::Approval(ApprovalPlan {
                action: change.protected_action().to_string(),
                params,
                summary: format!("{what}; every change to `{layer}` is approved"),
            }));
        }
        let service = serde_json::json!({ "service": name });
        Ok(match change {
            ServiceChange::Scale(0) => Route::Approval(ApprovalPlan {
                action: "scale_to_zero".into(),
                params: service,
                summary: what,
            }),
            ServiceChange::Rollback => Route::Approval(ApprovalPlan {
                action: "service_rollback".into(),
                params: service,
                summary: what,
            }),
            _ => Route::Direct(d),
        })
    }

    /// What `change` of `d` would do, for people (naming the resolved service), and the
    /// parameters of its approval action.
    fn describe(
        &self,
        change: &ServiceChange,
        d: &ServiceDetail,
        target: Option<&ImageTarget>,
    ) -> Result<(String, serde_json::Value), OpsError> {
        let name = d.name.clone();
        let service = serde_json::json!({ "service": name });
        Ok(match change {
            ServiceChange::Bump(image) => {
                let to = target
                    .map(|t| t.resolve(&d.image))
                    .transpose()
                    .map_err(|e| self.swarm_error(SwarmError::InvalidImage(e)))?
                    .unwrap_or_default();
                (
                    format!("bump `{name}` from `{}` to `{to}`", display_image(&d.image)),
                    serde_json::json!({ "service": name, "image": image }),
                )
            }
            ServiceChange::Scale(n) => {
                let Some(from) = d.replicas else {
                    return Err(self.swarm_error(SwarmError::NotReplicated {
                        name,
                        mode: d.mode.clone(),
                    }));
                };
                (
                    format!("scale `{name}` from {from} to {n} replicas"),
                    serde_json::json!({ "service": name, "replicas": n }),
                )
            }
            ServiceChange::Restart => (
                format!("restart `{name}` (a forced rolling restart)"),
                service.clone(),
            ),
            ServiceChange::Rollback => {
                let Some(previous) = d.previous_image.as_deref() else {
                    return Err(self.swarm_error(SwarmError::NoPreviousSpec { name }));
                };
                (
                    format!(
                        "roll back `{name}` from `{}` to `{}`",
                        display_image(&d.image),
                        display_image(previous)
                    ),
                    service.clone(),
                )
            }
        })
    }

    /// Follows the rollout of a change until it completes, pauses or rolls back.
    pub async fn follow(
        &self,
        started: &UpdateStarted,
        timeout: Duration,
    ) -> Result<RolloutStream, OpsError> {
        self.swarm
            .follow_rollout(
                &started.name,
                started.from_version,
                RolloutPoll {
                    interval: Duration::from_millis(250),
                    timeout,
                },
            )
            .await
            .map_err(|e| self.swarm_error(e))
    }

    /// The service's logs, redacted and bounded to `max_bytes` per stream.
    pub async fn logs(
        &self,
        name: &str,
        query: LogQuery,
        grep: Option<&str>,
        max_bytes: usize,
    ) -> Result<CollectedLogs, OpsError> {
        self.service(name).await?;
        let lines = self
            .swarm
            .logs(name, query)
            .await
            .map_err(|e| self.swarm_error(e))?;
        Ok(collect_logs(lines, grep, max_bytes, &self.redactor).await)
    }
}
