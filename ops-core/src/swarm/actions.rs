//! Approval executors for the destructive Swarm actions: [`ScaleToZero`] and
//! [`ServiceRollback`], both with parameters `{"service": "<name>"}`.
//!
//! `digest()` hashes what would run: the service id, its current version index, image and
//! replica count (and, for a rollback, the image it would return to). `bind()` (at the
//! request) also pins the service id and spec version it read (`bound`) and lists the spec
//! diff approvers see (image, replicas, env keys with values masked, mounts, resources).
//! An approved execution ([`ActionExecutor::execute_bound`]) changes exactly that service at
//! exactly that version: Docker refuses a stale version, so any change made after the request,
//! even one racing the execution, voids the approval ([`ExecFailure::Void`], nothing applied)
//! instead of being applied. `execute()` (the CLI's break-glass path, without a binding) reads
//! the service and changes it with the version it just read. Results are safe one-line
//! summaries.

use std::sync::Arc;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::{display_image, spec_diff, ServiceDetail, SpecView, SwarmApi, SwarmError};
use crate::approvals::{ActionExecutor, Binding, ExecFailure};
use crate::base::new_error_id;
use crate::base::OpsError;
use crate::redact::Redactor;

/// The `service` parameter, checked.
pub(crate) fn service_param(params: &serde_json::Value) -> Result<&str, OpsError> {
    match params.get("service").and_then(|v| v.as_str()) {
        Some(s) if super::valid_service_name(s) => Ok(s),
        _ => Err(OpsError {
            summary: "invalid parameters: `service` must name a service".to_string(),
            error_id: new_error_id(),
        }),
    }
}

/// A stable digest of the service as it is now, plus `extra` (what the action adds).
pub(crate) fn service_digest(action: &str, d: &ServiceDetail, extra: &str) -> String {
    let mut h = Sha256::new();
    for part in [
        "sprocket-ops swarm action v1",
        action,
        &d.id,
        &d.version.to_string(),
        &d.image,
        &d.replicas
            .map(|r| r.to_string())
            .unwrap_or_else(|| "global".into()),
        extra,
    ] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The error for people (the summary) with the detail logged, redacted, under its id.
pub(crate) fn ops_error(redactor: &Redactor, action: &str, e: SwarmError) -> OpsError {
    let error_id = new_error_id();
    tracing::error!(
        error_id = %error_id,
        action,
        detail = %redactor.redact(e.detail()),
        "{e}"
    );
    OpsError {
        summary: e.to_string(),
        error_id,
    }
}

/// The service id and spec version an approval pinned: `None` when it pinned nothing (a request
/// made before pins existed); a pin that cannot be read voids the request (nothing applied),
/// never runs it unpinned.
pub(crate) fn bound_version(bound: &serde_json::Value) -> Result<Option<(&str, u64)>, ExecFailure> {
    if bound.is_null() {
        return Ok(None);
    }
    let pin = (|| {
        Some((
            bound.get("service_id")?.as_str()?,
            bound.get("version")?.as_u64()?,
        ))
    })();
    match pin {
        Some(p) => Ok(Some(p)),
        None => Err(ExecFailure::Void(
            "the approval's pinned service version cannot be read: nothing was applied; ask for a new approval".into(),
        )),
    }
}

/// Reads the service with its spec facts; an adapter without them (a test fake) gives the
/// detail alone, so approvers see the summary only.
pub(crate) async fn read(
    swarm: &dyn SwarmApi,
    name: &str,
) -> Result<(ServiceDetail, Option<SpecView>), SwarmError> {
    match swarm.inspect_spec(name).await {
        Ok(view) => Ok((view.detail.clone(), Some(view))),
        Err(SwarmError::Unsupported { .. }) => Ok((swarm.inspect(name).await?, None)),
        Err(e) => Err(e),
    }
}

/// The pin of `d`, and the header line approvers see.
pub(crate) fn pin(d: &ServiceDetail) -> (serde_json::Value, String) {
    (
        serde_json::json!({ "service_id": d.id, "version": d.version }),
        format!(
            "service `{}` (id {}), spec version {}: executes only on exactly this version",
            d.name,
            d.id.chars().take(12).collect::<String>(),
            d.version
        ),
    )
}

/// An approved change the engine refused, as the request's end: a stale version or a
/// service gone or recreated under the same name voids it (nothing applied).
pub(crate) fn bound_failure(
    redactor: &Redactor,
    action: &str,
    name: &str,
    version: u64,
    e: SwarmError,
) -> ExecFailure {
    match e {
        SwarmError::Conflict { .. } => {
            tracing::warn!(action, service = name, version, detail = %redactor.redact(e.detail()), "approved change refused: the service changed since the request");
            ExecFailure::Void(format!(
                "`{name}` changed since the request (the approval was for spec version {version}): nothing was applied; look at it again and ask for a new approval"
            ))
        }
        SwarmError::NotFound { .. } => ExecFailure::Void(format!(
            "`{name}` was removed or recreated since the request: nothing was applied"
        )),
        e => ExecFailure::Failed(ops_error(redactor, action, e)),
    }
}

/// `scale_to_zero`: scales a replicated service to 0 replicas.
pub struct ScaleToZero {
    swarm: Arc<dyn SwarmApi>,
    redactor: Arc<Redactor>,
}

impl ScaleToZero {
    pub fn new(swarm: Arc<dyn SwarmApi>) -> ScaleToZero {
        ScaleToZero {
            swarm,
            redactor: Arc::new(Redactor::default()),
        }
    }

    /// Redacts logged error details with the configured secrets too.
    pub fn with_redactor(mut self, redactor: Arc<Redactor>) -> ScaleToZero {
        self.redactor = redactor;
        self
    }
}

#[async_trait]
impl ActionExecutor for ScaleToZero {
    async fn digest(&self, params: &serde_json::Value) -> Result<String, OpsError> {
        let name = service_param(params)?;
        let d = self
            .swarm
            .inspect(name)
            .await
            .map_err(|e| ops_error(&self.redactor, "scale_to_zero", e))?;
        Ok(service_digest("scale_to_zero", &d, ""))
    }

    async fn bind(&self, params: &serde_json::Value) -> Result<Binding, OpsError> {
        let name = service_param(params)?;
        let (d, _) = read(self.swarm.as_ref(), name)
            .await
            .map_err(|e| ops_error(&self.redactor, "scale_to_zero", e))?;
        let (bound, header) = pin(&d);
        let replicas = d
            .replicas
            .map(|r| r.to_string())
            .unwrap_or_else(|| "global".into());
        Ok(Binding {
            digest: service_digest("scale_to_zero", &d, ""),
            bound,
            changes: vec![header, format!("replicas: {replicas} → 0")],
            attachment: None,
        })
    }

    async fn execute_bound(
        &self,
        params: &serde_json::Value,
        bound: &serde_json::Value,
        _approvers: &[String],
    ) -> Result<String, ExecFailure> {
        let name = service_param(params)?;
        let Some((id, version)) = bound_version(bound)? else {
            return Ok(self.execute(params).await?);
        };
        let started = self
            .swarm
            .scale(id, 0, Some(version))
            .await
            .map_err(|e| bound_failure(&self.redactor, "scale_to_zero", name, version, e))?;
        Ok(format!(
            "scaling `{}` from {} to 0 replicas",
            started.name,
            started
                .replicas_before
                .map(|r| r.to_string())
                .unwrap_or_else(|| "?".into())
        ))
    }

    async fn execute(&self, params: &serde_json::Value) -> Result<String, OpsError> {
        let name = service_param(params)?;
        let fail = |e| ops_error(&self.redactor, "scale_to_zero", e);
        let d = self.swarm.inspect(name).await.map_err(fail)?;
        let started = self
            .swarm
            .scale(name, 0, Some(d.version))
            .await
            .map_err(fail)?;
        Ok(format!(
            "scaling `{}` from {} to 0 replicas",
            started.name,
            started
                .replicas_before
                .map(|r| r.to_string())
                .unwrap_or_else(|| "?".into())
        ))
    }
}

/// `service_rollback`: Swarm's rollback of a service to its previous spec.
pub struct ServiceRollback {
    swarm: Arc<dyn SwarmApi>,
    redactor: Arc<Redactor>,
}

impl ServiceRollback {
    pub fn new(swarm: Arc<dyn SwarmApi>) -> ServiceRollback {
        ServiceRollback {
            swarm,
            redactor: Arc::new(Redactor::default()),
        }
    }

    /// Redacts logged error details with the configured secrets too.
    pub fn with_redactor(mut self, redactor: Arc<Redactor>) -> ServiceRollback {
        self.redactor = redactor;
        self
    }
}

#[async_trait]
impl ActionExecutor for ServiceRollback {
    async fn digest(&self, params: &serde_json::Value) -> Result<String, OpsError> {
        let name = service_param(params)?;
        let d = self
            .swarm
            .inspect(name)
            .await
            .map_err(|e| ops_error(&self.redactor, "service_rollback", e))?;
        let previous = format!(
            "{}\0{:?}",
            d.previous_image.as_deref().unwrap_or(""),
            d.previous_replicas
        );
        Ok(service_digest("service_rollback", &d, &previous))
    }

    async fn bind(&self, params: &serde_json::Value) -> Result<Binding, OpsError> {
        let name = service_param(params)?;
        let (d, view) = read(self.swarm.as_ref(), name)
            .await
            .map_err(|e| ops_error(&self.redactor, "service_rollback", e))?;
        let (bound, header) = pin(&d);
        let mut changes = vec![header];
        match view
            .as_ref()
            .and_then(|v| v.previous.as_ref().map(|p| (&v.current, p)))
        {
            Some((current, previous)) => {
                let diff = spec_diff(current, previous);
                if diff.is_empty() {
                    changes
                        .push("no difference in image, replicas, env, mounts or resources".into());
                }
                changes.extend(diff);
            }
            None => changes.push(format!(
                "image: {} → {}",
                display_image(&d.image),
                d.previous_image
                    .as_deref()
                    .map(display_image)
                    .unwrap_or("(no previous spec)")
            )),
        }
        let previous = format!(
            "{}\0{:?}",
            d.previous_image.as_deref().unwrap_or(""),
            d.previous_replicas
        );
        Ok(Binding {
            digest: service_digest("service_rollback", &d, &previous),
            bound,
            changes,
            attachment: None,
        })
    }

    async fn execute_bound(
        &self,
        params: &serde_json::Value,
        bound: &serde_json::Value,
        _approvers: &[String],
    ) -> Result<String, ExecFailure> {
        let name = service_param(params)?;
        let Some((id, version)) = bound_version(bound)? else {
            return Ok(self.execute(params).await?);
        };
        let started = self
            .swarm
            .rollback(id, Some(version))
            .await
            .map_err(|e| bound_failure(&self.redactor, "service_rollback", name, version, e))?;
        Ok(format!(
            "rolling `{}` back from {} to {}",
            started.name,
            display_image(&started.image_before),
            display_image(&started.image_after)
        ))
    }

    async fn execute(&self, params: &serde_json::Value) -> Result<String, OpsError> {
        let name = service_param(params)?;
        let fail = |e| ops_error(&self.redactor, "service_rollback", e);
        let d = self.swarm.inspect(name).await.map_err(fail)?;
        let started = self
            .swarm
            .rollback(name, Some(d.version))
            .await
            .map_err(fail)?;
        Ok(format!(
            "rolling `{}` back from {} to {}",
            started.name,
            display_image(&started.image_before),
            display_image(&started.image_after)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::ServiceInfo;
    use crate::testing::FakeSwarm;

    fn fake() -> Arc<FakeSwarm> {
        Arc::new(FakeSwarm::with_detail(ServiceDetail {
            info: ServiceInfo {
                id: "id1".into(),
                name: "web".into(),
                image: "web:main".into(),
                replicas: Some(3),
                labels: Default::default(),
                running_tasks: None,
                desired_tasks: None,
                update_state: None,
                update_message: None,
                version: 7,
            },
            mode: "replicated".into(),
            previous_image: Some("web:old".into()),
            previous_replicas: Some(3),
            force_update: 0,
        }))
    }

    #[tokio::test]
    async fn digest_follows_the_service_and_execute_uses_the_current_version() {
        let f = fake();
        let exec = ScaleToZero::new(f.clone());
        let params = serde_json::json!({"service": "web"});
        let d1 = exec.digest(&params).await.unwrap();
        assert_eq!(d1, exec.digest(&params).await.unwrap(), "stable");
        assert_eq!(d1.len(), 64);
        f.edit(|d| d.info.version = 8);
        let d2 = exec.digest(&params).await.unwrap();
        assert_ne!(d1, d2);
        f.edit(|d| d.info.replicas = Some(1));
        assert_ne!(d2, exec.digest(&params).await.unwrap());
        let summary = exec.execute(&params).await.unwrap();
        assert_eq!(summary, "scaling `web` from 1 to 0 replicas");
        assert_eq!(
            *f.calls.lock().unwrap(),
            vec!["scale web 0 Some(8)".to_string()]
        );
        // Same service, another action: another digest.
        let rb = ServiceRollback::new(f.clone())
            .digest(&params)
            .await
            .unwrap();
        assert_ne!(rb, exec.digest(&params).await.unwrap());
    }

    #[tokio::test]
    async fn bad_params_and_unsupported_calls_fail_safely() {
        let f = fake();
        let exec = ScaleToZero::new(f.clone());
        for p in [
            serde_json::json!({}),
            serde_json::json!({"service": 3}),
            serde_json::json!({"service": "../containers"}),
        ] {
            let e = exec.digest(&p).await.unwrap_err();
            assert!(e.summary.contains("`service`"), "{e}");
        }
        let e = exec
            .digest(&serde_json::json!({"service": "nope"}))
            .await
            .unwrap_err();
        assert_eq!(e.summary, "there is no service named `nope`");
        // The fake has no rollback: the default body fails, it never pretends to succeed.
        let e = ServiceRollback::new(f)
            .execute(&serde_json::json!({"service": "web"}))
            .await
            .unwrap_err();
        assert!(e.summary.contains("does not support `rollback`"), "{e}");
    }
}

#[cfg(test)]
mod pin_tests {
    use super::*;

    #[test]
    fn an_unreadable_pin_voids_the_request_instead_of_running_it_unpinned() {
        assert!(matches!(bound_version(&serde_json::Value::Null), Ok(None)));
        let ok = serde_json::json!({"service_id": "abc", "version": 7});
        assert!(matches!(bound_version(&ok), Ok(Some(("abc", 7)))));
        for bad in [
            serde_json::json!({"service_id": "abc"}),
            serde_json::json!({"version": "7"}),
            serde_json::json!("junk"),
        ] {
            assert!(
                matches!(bound_version(&bad), Err(ExecFailure::Void(_))),
                "{bad}"
            );
        }
    }
}
