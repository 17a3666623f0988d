//! [`LayerDeployExecutor`]: layer deploys as approval actions (digest = a plan; execution
//! runs only when a fresh plan has the approved digest).

use super::*;

/// The approval executor of layer deploys (`layer_deploy_destructive`, `layer_1_deploy`,
/// `layer_rollback`); parameters are [`DeployRequest::to_params`], optionally with the approved
/// `digest`. `digest()` previews (config put back, nothing recorded); `execute()` takes the lock,
/// previews again and runs only when the fresh digest equals the approved one (the `digest`
/// parameter, else the one the approval engine just checked through `digest()`).
pub struct LayerDeployExecutor {
    deployer: Arc<Deployer>,
    progress: ProgressFn,
    checked: Mutex<HashMap<String, String>>,
}

impl LayerDeployExecutor {
    pub fn new(deployer: Arc<Deployer>) -> LayerDeployExecutor {
        LayerDeployExecutor {
            deployer,
            progress: no_progress(),
            checked: Mutex::new(HashMap::new()),
        }
    }

    /// Where approved deploys publish their progress when the execution hands no sink of its
    /// own ([`ActionExecutor::execute_observed`] does: an approval click follows its run).
    pub fn with_progress(mut self, progress: ProgressFn) -> LayerDeployExecutor {
        self.progress = progress;
        self
    }

    fn request(params: &serde_json::Value) -> Result<(DeployRequest, String), OpsError> {
        let mut req: DeployRequest =
            serde_json::from_value(strip_digest(params)).map_err(|e| OpsError {
                summary: format!("invalid deploy parameters: {e}"),
                error_id: new_error_id(),
            })?;
        if let Some(t) = req.image_tag.take() {
            req.image_tag = Some(t.strip_prefix(':').unwrap_or(&t).to_string());
        }
        let key = serde_json::to_string(&req).unwrap_or_default();
        Ok((req, key))
    }
}

pub(super) fn strip_digest(params: &serde_json::Value) -> serde_json::Value {
    let mut p = params.clone();
    if let Some(o) = p.as_object_mut() {
        o.remove("digest");
    }
    p
}

pub(super) fn ops_error(e: &DeployError) -> OpsError {
    let error_id = new_error_id();
    tracing::error!(error_id = %error_id, "layer deploy: {}", error_text(e));
    OpsError {
        summary: error_text(e),
        error_id,
    }
}

#[async_trait]
impl ActionExecutor for LayerDeployExecutor {
    async fn digest(&self, params: &serde_json::Value) -> Result<String, OpsError> {
        let (req, key) = Self::request(params)?;
        let plan = self.deployer.plan(&req).await.map_err(|e| ops_error(&e))?;
        self.checked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, plan.digest.clone());
        Ok(plan.digest)
    }

    async fn execute(&self, params: &serde_json::Value) -> Result<String, OpsError> {
        self.execute_approved(params, &[]).await
    }

    async fn execute_approved(
        &self,
        params: &serde_json::Value,
        approvers: &[String],
    ) -> Result<String, OpsError> {
        let (req, key) = Self::request(params)?;
        let expected = self.expected_digest(params, &key)?;
        self.approved_unbound(&req, &expected, approvers, self.progress.clone())
            .await
    }

    async fn bind(&self, params: &serde_json::Value) -> Result<Binding, OpsError> {
        let (req, key) = Self::request(params)?;
        let plan = self.deployer.plan(&req).await.map_err(|e| ops_error(&e))?;
        self.checked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, plan.digest.clone());
        let mut changes = vec![format!("infra checkout: {}", plan.checkout.describe())];
        if let Some(tag) = &req.image_tag {
            changes.push(format!(
                "image tag: {} → {tag}",
                plan.image_before.as_deref().unwrap_or("(unset)")
            ));
        }
        let lines = plan.preview.change_lines();
        if lines.is_empty() {
            changes.push("no resource changes".into());
        }
        changes.extend(lines);
        let attachment = format!(
            "sprocket-ops: approval request for a deploy of layer `{}`{}\nReason: {}\nInfra checkout: {}\nWhy approval is needed: {}\nApproval digest: {}\n\n{}",
            req.layer,
            req.image_tag
                .as_deref()
                .map(|t| format!(" with image tag `{t}`"))
                .unwrap_or_default(),
            req.reason,
            plan.checkout.describe(),
            plan.approval_reasons.join("; "),
            plan.digest,
            plan.preview.document()
        );
        Ok(Binding {
            digest: plan.digest.clone(),
            bound: serde_json::json!({
                "digest": plan.digest,
                "commit": plan.checkout.commit,
                "checkout": plan.checkout.fingerprint,
            }),
            changes,
            attachment: Some(attachment),
        })
    }

    async fn execute_bound(
        &self,
        params: &serde_json::Value,
        bound: &serde_json::Value,
        approvers: &[String],
    ) -> Result<String, ExecFailure> {
        self.execute_observed(params, bound, approvers, self.progress.clone())
            .await
    }

    async fn execute_observed(
        &self,
        params: &serde_json::Value,
        bound: &serde_json::Value,
        approvers: &[String],
        progress: ProgressFn,
    ) -> Result<String, ExecFailure> {
        let (req, key) = Self::request(params)?;
        let Some(expected) = bound.get("digest").and_then(|d| d.as_str()) else {
            let expected = self.expected_digest(params, &key)?;
            return Ok(self
                .approved_unbound(&req, &expected, approvers, progress)
                .await?);
        };
        self.run_approved(&req, expected, bound, approvers, progress)
            .await
    }
}

impl LayerDeployExecutor {
    /// The digest an unbound request was approved with: its `digest` parameter, else the one
    /// the approval engine just checked through `digest()`.
    fn expected_digest(&self, params: &serde_json::Value, key: &str) -> Result<String, OpsError> {
        params
            .get("digest")
            .and_then(|d| d.as_str())
            .map(str::to_string)
            .or_else(|| {
                self.checked
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(key)
            })
            .ok_or_else(|| OpsError {
                summary: "void: no approved preview to compare with".into(),
                error_id: new_error_id(),
            })
    }

    async fn approved_unbound(
        &self,
        req: &DeployRequest,
        expected: &str,
        approvers: &[String],
        progress: ProgressFn,
    ) -> Result<String, OpsError> {
        match self
            .run_approved(req, expected, &serde_json::Value::Null, approvers, progress)
            .await
        {
            Ok(s) => Ok(s),
            Err(ExecFailure::Failed(e)) => Err(e),
            Err(ExecFailure::Void(why)) => Err(OpsError {
                summary: format!("void: {why}"),
                error_id: new_error_id(),
            }),
        }
    }
}

impl LayerDeployExecutor {
    /// Runs the deploy if a fresh preview still has the `expected` digest; a different one is
    /// [`ExecFailure::Void`] with the reason (the checkout moved, or the plan or its values).
    async fn run_approved(
        &self,
        req: &DeployRequest,
        expected: &str,
        bound: &serde_json::Value,
        approvers: &[String],
        progress: ProgressFn,
    ) -> Result<String, ExecFailure> {
        let result = self.deployer.deploy_approved(req, expected, progress).await;
        // `/history` names who approved (the break-glass CLI path has no approver).
        let ran = match &result {
            Ok(DeployOutcome::Succeeded(r)) => Some(r.record.id.clone()),
            Err(DeployError::UpdateFailed { deploy_id, .. })
            | Err(DeployError::Cancelled { deploy_id, .. })
            | Err(DeployError::VerifyFailed { deploy_id, .. }) => Some(deploy_id.clone()),
            _ => None,
        };
        if let (Some(id), false) = (ran, approvers.is_empty()) {
            if let Err(e) = self.deployer.set_approver(&id, &approvers.join(", ")).await {
                tracing::warn!(deploy_id = %id, "recording the approver failed: {e}");
            }
        }
        match result {
            Ok(DeployOutcome::Succeeded(r)) => Ok(format!(
                "deployed `{}`{} (deploy {}): {}; {} service(s) converged",
                req.layer,
                req.image_tag
                    .as_deref()
                    .map(|t| format!(" tag `{t}`"))
                    .unwrap_or_default(),
                r.record.id,
                r.preview.totals().describe(),
                r.services.len()
            )),
            Ok(DeployOutcome::NeedsApproval(_)) => Err(ExecFailure::Failed(OpsError {
                summary: "the approved deploy asked for another approval".into(),
                error_id: new_error_id(),
            })),
            Err(DeployError::PreviewChanged { .. }) => {
                Err(ExecFailure::Void(self.why_changed(&req.layer, bound).await))
            }
            Err(e) => Err(ExecFailure::Failed(ops_error(&e))),
        }
    }

    /// Why a fresh preview no longer has the approved digest, for people.
    async fn why_changed(&self, layer: &str, bound: &serde_json::Value) -> String {
        let now = self.deployer.checkout(layer).await.ok();
        let approved_fp = bound.get("checkout").and_then(|v| v.as_str());
        match (now, approved_fp) {
            (Some(now), Some(fp)) if now.fingerprint != fp => {
                let approved = bound
                    .get("commit")
                    .and_then(|v| v.as_str())
                    .map(|c| format!("commit {}", &c[..c.len().min(12)]))
                    .unwrap_or_else(|| "no commit".into());
                format!(
                    "the infra checkout changed since the approval (approved {approved}, now {}): nothing was applied; request a new approval",
                    now.describe()
                )
            }
            _ => "the preview changed since the approval (another planned change, property or value): nothing was applied; request a new approval".to_string(),
        }
    }
}

/// The approval executor of `unlock`: releases a layer's lock (params `{"layer": name}`). The
/// digest is the lock as it is now, so a lock taken over meanwhile voids the approval.
pub struct UnlockExecutor {
    deployer: Arc<Deployer>,
}

impl UnlockExecutor {
    pub fn new(deployer: Arc<Deployer>) -> UnlockExecutor {
        UnlockExecutor { deployer }
    }

    fn layer(params: &serde_json::Value) -> Result<String, OpsError> {
        params["layer"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| OpsError {
                summary: "unlock needs a layer".into(),
                error_id: crate::base::new_error_id(),
            })
    }
}

#[async_trait::async_trait]
impl ActionExecutor for UnlockExecutor {
    async fn digest(&self, params: &serde_json::Value) -> Result<String, OpsError> {
        let layer = Self::layer(params)?;
        let locks = self.deployer.locks().await.map_err(|e| OpsError {
            summary: e.to_string(),
            error_id: crate::base::new_error_id(),
        })?;
        Ok(match locks.iter().find(|l| l.layer == layer) {
            Some(l) => format!("{}:{}:{}", l.layer, l.owner, l.started_at_ms),
            None => format!("{layer}:unlocked"),
        })
    }

    async fn execute(&self, params: &serde_json::Value) -> Result<String, OpsError> {
        let layer = Self::layer(params)?;
        match self.deployer.unlock(&layer).await {
            Ok(Some(l)) => Ok(format!(
                "released the lock of `{layer}` held by {}",
                l.owner
            )),
            Ok(None) => Ok(format!("`{layer}` was not locked")),
            Err(e) => Err(OpsError {
                summary: e.to_string(),
                error_id: crate::base::new_error_id(),
            }),
        }
    }
}
