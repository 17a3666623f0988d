//! The steps of a run on the real systems: `pulumi config set` and `preview` (and putting
//! the config back), the plan approvers see, and verification on the Swarm.

use super::*;

impl Deployer {
    /// `config get` + `config set` (tag layers) + `preview`.
    pub(super) async fn prepare(
        &self,
        req: &DeployRequest,
        cfg: &LayerConfig,
    ) -> Result<Prepared, DeployError> {
        let stack = StackRef::from_layer(&req.layer, cfg);
        // Before `config set`, which edits the stack file in the checkout.
        let checkout = crate::checkout::read(&cfg.directory).await.map_err(|e| {
            tracing::error!(layer = %req.layer, detail = %e.detail, "{e}");
            DeployError::Checkout(e)
        })?;
        let mut prepared = Prepared {
            stack,
            image_before: None,
            changed_key: None,
            requested_tag: None,
            preview: PreviewSummary::default(),
            checkout,
        };
        if let Some(key) = &cfg.image_tag_key {
            prepared.image_before = self
                .pulumi
                .config_get(&prepared.stack, key)
                .await
                .map_err(DeployError::Pulumi)?;
            if let Some(tag) = &req.image_tag {
                if prepared.image_before.as_deref() != Some(tag.as_str()) {
                    self.pulumi
                        .config_set(&prepared.stack, key, tag)
                        .await
                        .map_err(DeployError::Pulumi)?;
                    prepared.changed_key = Some(key.clone());
                    prepared.requested_tag = Some(tag.clone());
                }
            }
        }
        match self.pulumi.preview(&prepared.stack).await {
            Ok(preview) => {
                prepared.preview = preview;
                Ok(prepared)
            }
            Err(e) => {
                self.restore(&prepared, "the preview failed").await?;
                Err(DeployError::Pulumi(e))
            }
        }
    }

    /// Puts the image tag back after a preview that does not go on (`after`: why it does
    /// not). A failure is an error the caller reports (to the person and the audit log, and
    /// in the deploy's history), never only a log line: the stack would keep the tag.
    pub(super) async fn restore(
        &self,
        prepared: &Prepared,
        after: &str,
    ) -> Result<(), DeployError> {
        let (Some(key), Some(before)) = (&prepared.changed_key, &prepared.image_before) else {
            return Ok(());
        };
        match self.pulumi.config_set(&prepared.stack, key, before).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let error_id = new_error_id();
                tracing::error!(error_id = %error_id, layer = %prepared.stack.layer, error = %e, detail = %self.redactor.redact(e.detail()), "putting the image tag back failed");
                Err(DeployError::RestoreFailed(Box::new(RestoreFailure {
                    layer: prepared.stack.layer.clone(),
                    key: key.clone(),
                    before: before.clone(),
                    requested: prepared.requested_tag.clone().unwrap_or_default(),
                    after: after.to_string(),
                    error_id,
                })))
            }
        }
    }

    pub(super) fn plan_of(
        &self,
        req: &DeployRequest,
        cfg: &LayerConfig,
        p: &Prepared,
    ) -> DeployPlan {
        let mut reasons = Vec::new();
        let mut action = None;
        if cfg.always_requires_approval {
            reasons.push(format!("every deploy of `{}` is approved", req.layer));
            action = Some(format!("{}_deploy", req.layer));
        }
        if p.preview.is_destructive() {
            reasons.push(format!(
                "the preview deletes or replaces: {}",
                p.preview.destructive_resources().join(", ")
            ));
            action.get_or_insert_with(|| ACTION_DESTRUCTIVE.to_string());
        }
        DeployPlan {
            request: req.clone(),
            image_before: p.image_before.clone(),
            digest: approval_digest(
                &req.layer,
                req.image_tag.as_deref(),
                &p.preview,
                &p.checkout,
            ),
            checkout: p.checkout.clone(),
            preview: p.preview.clone(),
            approval_action: action,
            approval_reasons: reasons,
        }
    }

    /// The layer's services as the Swarm reports them now (name -> service).
    pub(super) async fn layer_services(
        &self,
        layer: &str,
    ) -> Result<BTreeMap<String, ServiceInfo>, DeployError> {
        let snap = self.swarm.snapshot().await.map_err(|e| {
            tracing::error!(detail = %self.redactor.redact(e.detail()), "swarm snapshot failed");
            DeployError::Swarm(e)
        })?;
        Ok(self.of_layer(layer, snap.services))
    }

    pub(super) fn of_layer(
        &self,
        layer: &str,
        services: Vec<ServiceInfo>,
    ) -> BTreeMap<String, ServiceInfo> {
        services
            .into_iter()
            .filter(|s| {
                self.layer_map
                    .layer_of(&s.name, |k| s.labels.get(k).map(String::as_str))
                    == Some(layer)
            })
            .map(|s| (s.name.clone(), s))
            .collect()
    }

    /// Follows changed services to the end of their rollout, then waits (bounded) until every
    /// service the update touched or that runs the layer's image (see [`Scope`]) runs its
    /// desired tasks, the latter with the expected tag.
    pub(super) async fn verify(
        &self,
        layer: &str,
        expected_tag: Option<&str>,
        tag_before: Option<&str>,
        before: &BTreeMap<String, ServiceInfo>,
    ) -> Result<Vec<ServiceState>, VerifyError> {
        let scope = Scope {
            expected_tag,
            tag_before,
            before,
        };
        let started = Instant::now();
        let deadline = started + self.verify.timeout;
        let remaining = || deadline.saturating_duration_since(Instant::now());
        let snap = self.swarm.snapshot().await.map_err(VerifyError::Swarm)?;
        let now = self.of_layer(layer, snap.services);
        for (name, svc) in &now {
            let since = before.get(name).map(|b| b.version).unwrap_or(0);
            if svc.version <= since {
                continue;
            }
            let poll = RolloutPoll {
                interval: self.verify.poll,
                timeout: remaining().max(Duration::from_millis(1)),
            };
            let stream = self
                .swarm
                .follow_rollout(name, since, poll)
                .await
                .map_err(VerifyError::Swarm)?;
            let last = stream.fold(None, |_, p| async move { Some(p) }).await;
            match last.and_then(|p| p.outcome) {
                Some(RolloutOutcome::Completed) => {}
                Some(RolloutOutcome::Paused { message }) => {
                    return Err(VerifyError::NotConverged(format!(
                        "the update of `{name}` paused: {message}"
                    )))
                }
                Some(RolloutOutcome::RolledBack { message }) => {
                    return Err(VerifyError::NotConverged(format!(
                        "Swarm rolled `{name}` back: {message}"
                    )))
                }
                Some(RolloutOutcome::TimedOut) | None => {
                    return Err(VerifyError::NotConverged(format!(
                        "the rollout of `{name}` did not finish within {} s",
                        self.verify.timeout.as_secs()
                    )))
                }
                Some(RolloutOutcome::Failed(e)) => return Err(VerifyError::Swarm(e)),
            }
        }
        loop {
            let snap = self.swarm.snapshot().await.map_err(VerifyError::Swarm)?;
            let services: BTreeMap<String, ServiceInfo> = self
                .of_layer(layer, snap.services)
                .into_iter()
                .filter(|(_, s)| scope.checks(s))
                .collect();
            let problems: Vec<String> = services
                .values()
                .filter_map(|s| service_problem(s, scope.tag_for(s)))
                .collect();
            if problems.is_empty() {
                return Ok(services
                    .values()
                    .map(|s| ServiceState {
                        name: s.name.clone(),
                        image: display_image(&s.image).to_string(),
                        running: s.running_tasks,
                        desired: s.desired_tasks,
                    })
                    .collect());
            }
            if Instant::now() >= deadline {
                return Err(VerifyError::NotConverged(format!(
                    "after {} s: {}",
                    started.elapsed().as_secs(),
                    problems.join("; ")
                )));
            }
            tokio::time::sleep(self.verify.poll.min(remaining())).await;
        }
    }
}
