//! Approval executors for the changes to a service of a protected layer (a layer with
//! `always_requires_approval`, see [`crate::protect`]): [`ProtectedBump`] (`protected_bump`,
//! parameters `{"service", "image"}`), [`ProtectedScale`] (`protected_scale`, `{"service",
//! "replicas"}`) and [`ProtectedRestart`] (`protected_restart`, `{"service"}`);
//! `protected_rollback` is [`crate::swarm::actions::ServiceRollback`] registered under that name.
//!
//! They are built like the other Swarm executors ([`crate::swarm::actions`]): the digest covers the
//! service as read (id, version, image, replicas) plus what the action adds (the resolved
//! image, the replica count, the restart counter); the request pins the service id and spec
//! version read when it was made (`bind`), and execution changes exactly that version
//! (`execute_bound`), so a change made in between voids the approval instead of being applied. The CLI's break-glass runs them without an approval,
//! which is also the only way to change sprocket-ops' own services.

use std::sync::Arc;

use async_trait::async_trait;

use super::{ImagePolicy, PROTECTED_BUMP, PROTECTED_RESTART, PROTECTED_SCALE};
use crate::approvals::{ActionExecutor, Binding, ExecFailure};
use crate::base::{new_error_id, OpsError};
use crate::redact::Redactor;
use crate::swarm::actions::{
    bound_failure, bound_version, ops_error, pin, read, service_digest, service_param,
};
use crate::swarm::imageref::ImageTarget;
use crate::swarm::{display_image, SwarmApi, SwarmError, UpdateStarted};

/// The most replicas a protected scale may ask for (as for `/scale`).
pub const MAX_REPLICAS: u64 = 100;

fn invalid(what: String) -> OpsError {
    OpsError {
        summary: format!("invalid parameters: {what}"),
        error_id: new_error_id(),
    }
}

/// The `image` parameter, checked against the grammar and the allow-list.
fn image_param(params: &serde_json::Value, images: &ImagePolicy) -> Result<ImageTarget, OpsError> {
    let Some(text) = params.get("image").and_then(|v| v.as_str()) else {
        return Err(invalid(
            "`image` must be a tag or an image reference".into(),
        ));
    };
    let target = ImageTarget::parse(text).map_err(|e| invalid(format!("`image`: {e}")))?;
    images.check(&target).map_err(|m| OpsError {
        summary: m,
        error_id: new_error_id(),
    })?;
    Ok(target)
}

fn replicas_param(params: &serde_json::Value) -> Result<u64, OpsError> {
    match params.get("replicas").and_then(|v| v.as_u64()) {
        Some(n) if n <= MAX_REPLICAS => Ok(n),
        _ => Err(invalid(format!(
            "`replicas` must be a number from 0 to {MAX_REPLICAS}"
        ))),
    }
}

/// The common parts: the engine and the redactor for logged details.
struct Base {
    swarm: Arc<dyn SwarmApi>,
    redactor: Arc<Redactor>,
}

impl Base {
    fn new(swarm: Arc<dyn SwarmApi>) -> Base {
        Base {
            swarm,
            redactor: Arc::new(Redactor::default()),
        }
    }
}

fn started_replicas(s: &UpdateStarted) -> String {
    s.replicas_before
        .map(|r| r.to_string())
        .unwrap_or_else(|| "?".into())
}

/// `protected_bump`: sets the image (a tag stays in the current repository).
pub struct ProtectedBump {
    base: Base,
    images: Arc<ImagePolicy>,
}

impl ProtectedBump {
    /// With an empty allow-list (tags only) until [`ProtectedBump::with_images`].
    pub fn new(swarm: Arc<dyn SwarmApi>) -> ProtectedBump {
        ProtectedBump {
            base: Base::new(swarm),
            images: Arc::new(ImagePolicy::default()),
        }
    }

    pub fn with_redactor(mut self, redactor: Arc<Redactor>) -> ProtectedBump {
        self.base.redactor = redactor;
        self
    }

    /// The configured `[images] allowed`, checked again at execution.
    pub fn with_images(mut self, images: Arc<ImagePolicy>) -> ProtectedBump {
        self.images = images;
        self
    }
}

#[async_trait]
impl ActionExecutor for ProtectedBump {
    async fn digest(&self, params: &serde_json::Value) -> Result<String, OpsError> {
        let name = service_param(params)?;
        let target = image_param(params, &self.images)?;
        let fail = |e| ops_error(&self.base.redactor, PROTECTED_BUMP, e);
        let d = self.base.swarm.inspect(name).await.map_err(fail)?;
        let to = target
            .resolve(&d.image)
            .map_err(|e| fail(SwarmError::InvalidImage(e)))?;
        Ok(service_digest(PROTECTED_BUMP, &d, &to))
    }

    async fn bind(&self, params: &serde_json::Value) -> Result<Binding, OpsError> {
        let name = service_param(params)?;
        let target = image_param(params, &self.images)?;
        let fail = |e| ops_error(&self.base.redactor, PROTECTED_BUMP, e);
        let (d, _) = read(self.base.swarm.as_ref(), name).await.map_err(fail)?;
        let to = target
            .resolve(&d.image)
            .map_err(|e| fail(SwarmError::InvalidImage(e)))?;
        let (bound, header) = pin(&d);
        Ok(Binding {
            digest: service_digest(PROTECTED_BUMP, &d, &to),
            bound,
            changes: vec![
                header,
                format!(
                    "image: {} → {}",
                    display_image(&d.image),
                    display_image(&to)
                ),
            ],
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
        let target = image_param(params, &self.images)?;
        let Some((id, version)) = bound_version(bound)? else {
            return Ok(self.execute(params).await?);
        };
        let s = self
            .base
            .swarm
            .bump(id, &target.to_string(), Some(version))
            .await
            .map_err(|e| bound_failure(&self.base.redactor, PROTECTED_BUMP, name, version, e))?;
        Ok(format!(
            "bumping `{}` from `{}` to `{}`",
            s.name,
            display_image(&s.image_before),
            display_image(&s.image_after)
        ))
    }

    async fn execute(&self, params: &serde_json::Value) -> Result<String, OpsError> {
        let name = service_param(params)?;
        let target = image_param(params, &self.images)?;
        let fail = |e| ops_error(&self.base.redactor, PROTECTED_BUMP, e);
        let d = self.base.swarm.inspect(name).await.map_err(fail)?;
        let s = self
            .base
            .swarm
            .bump(name, &target.to_string(), Some(d.version))
            .await
            .map_err(fail)?;
        Ok(format!(
            "bumping `{}` from `{}` to `{}`",
            s.name,
            display_image(&s.image_before),
            display_image(&s.image_after)
        ))
    }
}

/// `protected_scale`: sets the replica count (0 included).
pub struct ProtectedScale {
    base: Base,
}

impl ProtectedScale {
    pub fn new(swarm: Arc<dyn SwarmApi>) -> ProtectedScale {
        ProtectedScale {
            base: Base::new(swarm),
        }
    }

    pub fn with_redactor(mut self, redactor: Arc<Redactor>) -> ProtectedScale {
        self.base.redactor = redactor;
        self
    }
}

#[async_trait]
impl ActionExecutor for ProtectedScale {
    async fn digest(&self, params: &serde_json::Value) -> Result<String, OpsError> {
        let name = service_param(params)?;
        let replicas = replicas_param(params)?;
        let d = self
            .base
            .swarm
            .inspect(name)
            .await
            .map_err(|e| ops_error(&self.base.redactor, PROTECTED_SCALE, e))?;
        Ok(service_digest(PROTECTED_SCALE, &d, &replicas.to_string()))
    }

    async fn bind(&self, params: &serde_json::Value) -> Result<Binding, OpsError> {
        let name = service_param(params)?;
        let replicas = replicas_param(params)?;
        let (d, _) = read(self.base.swarm.as_ref(), name)
            .await
            .map_err(|e| ops_error(&self.base.redactor, PROTECTED_SCALE, e))?;
        let (bound, header) = pin(&d);
        let before = d
            .replicas
            .map(|r| r.to_string())
            .unwrap_or_else(|| "global".into());
        Ok(Binding {
            digest: service_digest(PROTECTED_SCALE, &d, &replicas.to_string()),
            bound,
            changes: vec![header, format!("replicas: {before} → {replicas}")],
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
        let replicas = replicas_param(params)?;
        let Some((id, version)) = bound_version(bound)? else {
            return Ok(self.execute(params).await?);
        };
        let s = self
            .base
            .swarm
            .scale(id, replicas, Some(version))
            .await
            .map_err(|e| bound_failure(&self.base.redactor, PROTECTED_SCALE, name, version, e))?;
        Ok(format!(
            "scaling `{}` from {} to {replicas} replicas",
            s.name,
            started_replicas(&s)
        ))
    }

    async fn execute(&self, params: &serde_json::Value) -> Result<String, OpsError> {
        let name = service_param(params)?;
        let replicas = replicas_param(params)?;
        let fail = |e| ops_error(&self.base.redactor, PROTECTED_SCALE, e);
        let d = self.base.swarm.inspect(name).await.map_err(fail)?;
        let s = self
            .base
            .swarm
            .scale(name, replicas, Some(d.version))
            .await
            .map_err(fail)?;
        Ok(format!(
            "scaling `{}` from {} to {replicas} replicas",
            s.name,
            started_replicas(&s)
        ))
    }
}

/// `protected_restart`: a forced rolling restart.
pub struct ProtectedRestart {
    base: Base,
}

impl ProtectedRestart {
    pub fn new(swarm: Arc<dyn SwarmApi>) -> ProtectedRestart {
        ProtectedRestart {
            base: Base::new(swarm),
        }
    }

    pub fn with_redactor(mut self, redactor: Arc<Redactor>) -> ProtectedRestart {
        self.base.redactor = redactor;
        self
    }
}

#[async_trait]
impl ActionExecutor for ProtectedRestart {
    async fn digest(&self, params: &serde_json::Value) -> Result<String, OpsError> {
        let name = service_param(params)?;
        let d = self
            .base
            .swarm
            .inspect(name)
            .await
            .map_err(|e| ops_error(&self.base.redactor, PROTECTED_RESTART, e))?;
        Ok(service_digest(
            PROTECTED_RESTART,
            &d,
            &d.force_update.to_string(),
        ))
    }

    async fn bind(&self, params: &serde_json::Value) -> Result<Binding, OpsError> {
        let name = service_param(params)?;
        let (d, _) = read(self.base.swarm.as_ref(), name)
            .await
            .map_err(|e| ops_error(&self.base.redactor, PROTECTED_RESTART, e))?;
        let (bound, header) = pin(&d);
        Ok(Binding {
            digest: service_digest(PROTECTED_RESTART, &d, &d.force_update.to_string()),
            bound,
            changes: vec![header, "a forced rolling restart of every task".into()],
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
        let s = self
            .base
            .swarm
            .restart(id, Some(version))
            .await
            .map_err(|e| bound_failure(&self.base.redactor, PROTECTED_RESTART, name, version, e))?;
        Ok(format!("restarting `{}` (forced rolling restart)", s.name))
    }

    async fn execute(&self, params: &serde_json::Value) -> Result<String, OpsError> {
        let name = service_param(params)?;
        let fail = |e| ops_error(&self.base.redactor, PROTECTED_RESTART, e);
        let d = self.base.swarm.inspect(name).await.map_err(fail)?;
        let s = self
            .base
            .swarm
            .restart(name, Some(d.version))
            .await
            .map_err(fail)?;
        Ok(format!("restarting `{}` (forced rolling restart)", s.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::{ServiceDetail, ServiceInfo};
    use crate::testing::FakeSwarm;

    fn fake() -> Arc<FakeSwarm> {
        Arc::new(FakeSwarm::with_detail(ServiceDetail {
            info: ServiceInfo {
                id: "id1".into(),
                name: "vault-service".into(),
                image: "vault:main".into(),
                replicas: Some(1),
                labels: Default::default(),
                running_tasks: None,
                desired_tasks: None,
                update_state: None,
                update_message: None,
                version: 4,
            },
            mode: "replicated".into(),
            previous_image: None,
            previous_replicas: None,
            force_update: 0,
        }))
    }

    #[tokio::test]
    async fn a_protected_bump_is_bound_to_its_target_and_to_the_allow_list() {
        let f = fake();
        let exec = ProtectedBump::new(f.clone());
        let v2 = serde_json::json!({"service": "vault-service", "image": "v2"});
        let v3 = serde_json::json!({"service": "vault-service", "image": "v3"});
        let d2 = exec.digest(&v2).await.unwrap();
        assert_eq!(d2, exec.digest(&v2).await.unwrap(), "stable");
        assert_ne!(
            d2,
            exec.digest(&v3).await.unwrap(),
            "the target is in the digest"
        );
        // Default policy: tags only, at request and at execution.
        let full = serde_json::json!({"service": "vault-service", "image": "evil.io/x:1"});
        for e in [
            exec.digest(&full).await.unwrap_err(),
            exec.execute(&full).await.unwrap_err(),
        ] {
            assert!(e.summary.starts_with("refused"), "{e}");
        }
        let allowed = ProtectedBump::new(f.clone())
            .with_images(Arc::new(ImagePolicy::new(&["evil.io/*".to_string()])));
        assert!(allowed.digest(&full).await.is_ok());
        assert_eq!(
            exec.execute(&v2).await.unwrap(),
            "bumping `vault-service` from `vault:main` to `vault:v2`"
        );
        assert_eq!(
            *f.calls.lock().unwrap(),
            vec!["bump vault-service :v2 Some(4)".to_string()]
        );
    }

    #[tokio::test]
    async fn a_protected_scale_checks_its_count_and_runs_on_the_version_read() {
        let f = fake();
        let exec = ProtectedScale::new(f.clone());
        for bad in [
            serde_json::json!({"service": "vault-service"}),
            serde_json::json!({"service": "vault-service", "replicas": -1}),
            serde_json::json!({"service": "vault-service", "replicas": 101}),
            serde_json::json!({"service": "../x", "replicas": 1}),
        ] {
            assert!(exec.digest(&bad).await.is_err(), "{bad}");
        }
        let zero = serde_json::json!({"service": "vault-service", "replicas": 0});
        let two = serde_json::json!({"service": "vault-service", "replicas": 2});
        assert_ne!(
            exec.digest(&zero).await.unwrap(),
            exec.digest(&two).await.unwrap()
        );
        assert_eq!(
            exec.execute(&zero).await.unwrap(),
            "scaling `vault-service` from 1 to 0 replicas"
        );
        assert_eq!(
            *f.calls.lock().unwrap(),
            vec!["scale vault-service 0 Some(4)".to_string()]
        );
        // The fake cannot restart: the executor fails, it never pretends.
        let e = ProtectedRestart::new(f)
            .execute(&serde_json::json!({"service": "vault-service"}))
            .await
            .unwrap_err();
        assert!(e.summary.contains("does not support `restart`"), "{e}");
    }
}
