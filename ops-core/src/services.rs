//! Service operations both frontends call (`/bump`, `/scale`, `/restart`, `/logs` and their CLI
//! twins): names checked, unknown names answered with the closest matches, engine errors turned
//! into safe summaries with an error id (the redacted detail goes to the log only).

use std::time::Duration;

use crate::layers::closest;
use crate::ops::{new_error_id, Ops, OpsError};
use crate::swarm::logs::{collect_logs, CollectedLogs, LogQuery};
use crate::swarm::rollout::RolloutPoll;
use crate::swarm::{valid_service_name, RolloutStream, ServiceDetail, SwarmError, UpdateStarted};

/// Autocomplete must answer within Discord's 3 s: the engine gets this long.
pub const AUTOCOMPLETE_BUDGET: Duration = Duration::from_millis(1500);

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
    pub async fn bump(&self, name: &str, image: &str) -> Result<UpdateStarted, OpsError> {
        crate::swarm::imageref::ImageTarget::parse(image)
            .map_err(|e| self.swarm_error(SwarmError::InvalidImage(e)))?;
        let d = self.service(name).await?;
        self.swarm
            .bump(name, image, Some(d.version))
            .await
            .map_err(|e| self.swarm_error(e))
    }

    /// Scales to a non-zero count (zero needs an approval: see the `scale_to_zero` action).
    pub async fn scale(&self, name: &str, replicas: u64) -> Result<UpdateStarted, OpsError> {
        let d = self.service(name).await?;
        self.swarm
            .scale(name, replicas, Some(d.version))
            .await
            .map_err(|e| self.swarm_error(e))
    }

    /// A forced rolling restart.
    pub async fn restart(&self, name: &str) -> Result<UpdateStarted, OpsError> {
        let d = self.service(name).await?;
        self.swarm
            .restart(name, Some(d.version))
            .await
            .map_err(|e| self.swarm_error(e))
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
