//! The deploy flow of [`Deployer`]: construction, the entry points (`deploy`,
//! `deploy_approved`, `plan`) and the run itself (checks, lock, config and preview, approval
//! gate, `pulumi up` with progress, verification, history).

use super::*;

impl Deployer {
    pub fn new(
        cfg: &Config,
        pulumi: Arc<dyn PulumiApi>,
        store: Arc<dyn DeployStore>,
        swarm: Arc<dyn SwarmApi>,
        redactor: Arc<Redactor>,
    ) -> Deployer {
        Deployer {
            pulumi,
            store,
            swarm,
            layers: cfg.layers.clone(),
            layer_map: LayerMap::from_config(cfg),
            lock_ttl: Duration::from_secs(cfg.pulumi.lock_ttl_secs),
            verify: VerifyPolicy::default(),
            redactor,
            active: Mutex::new(HashMap::new()),
            metrics: None,
            process: process_name(),
            heartbeat: Duration::from_millis(LOCK_HEARTBEAT_MS as u64),
        }
    }

    /// Renews held locks this often instead of every [`LOCK_HEARTBEAT_MS`] (tests).
    pub fn with_lock_heartbeat(mut self, every: Duration) -> Deployer {
        self.heartbeat = every;
        self
    }

    /// Names this process differently in its locks (tests: a process of another machine).
    pub fn with_process_name(mut self, name: &str) -> Deployer {
        self.process = name.to_string();
        self
    }

    /// Counts every deploy that ends (succeeded, failed, cancelled, awaiting approval).
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Deployer {
        self.metrics = Some(metrics);
        self
    }

    pub fn with_verify(mut self, verify: VerifyPolicy) -> Deployer {
        self.verify = verify;
        self
    }

    /// Deploys a layer: lock, config, preview, and (unless an approval is needed) apply,
    /// verify, record.
    pub async fn deploy(
        &self,
        req: &DeployRequest,
        progress: ProgressFn,
    ) -> Result<DeployOutcome, DeployError> {
        self.run(req, None, progress).await
    }

    /// Deploys a request an approval allowed: as [`Deployer::deploy`], but a plan needing an
    /// approval runs, provided a fresh preview still has the approved `digest`.
    pub async fn deploy_approved(
        &self,
        req: &DeployRequest,
        approved_digest: &str,
        progress: ProgressFn,
    ) -> Result<DeployOutcome, DeployError> {
        self.run(req, Some(approved_digest), progress).await
    }

    /// The infra checkout of `layer` as it is now (commit and dirty state).
    pub async fn checkout(&self, layer: &str) -> Result<CheckoutState, DeployError> {
        let cfg = self.layer(layer)?;
        crate::checkout::read(&cfg.directory)
            .await
            .map_err(DeployError::Checkout)
    }

    /// What a deploy would do, without doing it: lock, config, preview, then the config is put
    /// back and the lock released. Nothing is recorded.
    pub async fn plan(&self, req: &DeployRequest) -> Result<DeployPlan, DeployError> {
        let cfg = self.check_request(req)?;
        let lock_id = format!("plan-{}", new_deploy_id());
        let held = self.take_lock(req, cfg, &lock_id).await?;
        let result = self.prepare(req, cfg).await;
        let result = match result {
            Ok(p) => match self.restore(&p, "a plan").await {
                Ok(()) => Ok(self.plan_of(req, cfg, &p)),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        self.release(&held).await;
        result
    }

    pub(super) async fn run(
        &self,
        req: &DeployRequest,
        approved: Option<&str>,
        progress: ProgressFn,
    ) -> Result<DeployOutcome, DeployError> {
        let cfg = self.check_request(req)?;
        let mut p = DeployProgress::new(&req.layer);
        progress(&p);
        let deploy_id = new_deploy_id();
        let held = self.take_lock(req, cfg, &deploy_id).await?;
        p.deploy_id = Some(deploy_id.clone());
        let started = now_ms();
        let mut record = DeployRecord {
            id: deploy_id.clone(),
            layer: req.layer.clone(),
            requester: req.requester.clone(),
            approver: None,
            reason: req.reason.clone(),
            image_before: None,
            image_after: req.image_tag.clone(),
            state: DeployState::Running,
            started_at_ms: started,
            finished_at_ms: None,
            summary: serde_json::json!({}),
            error: None,
        };
        if let Err(e) = self.store.create_deploy(&record).await {
            self.release(&held).await;
            return Err(self.store_error(e));
        }
        let cancel = Arc::new(CancelSignal::default());
        self.active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(req.layer.clone(), cancel.clone());
        let result = self
            .run_locked(req, cfg, approved, &mut record, &mut p, &progress, &cancel)
            .await;
        self.active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&req.layer);
        // Record the end, then release: a crash in between leaves a lock recovery releases.
        let (state, error) = match &result {
            Ok(DeployOutcome::Succeeded(_)) => (DeployState::Succeeded, None),
            Ok(DeployOutcome::NeedsApproval(plan)) => (
                DeployState::Cancelled,
                Some(format!(
                    "not run: an approval is needed ({})",
                    plan.approval_reasons.join("; ")
                )),
            ),
            Err(DeployError::Cancelled { .. }) => {
                (DeployState::Cancelled, Some("cancelled".to_string()))
            }
            Err(e) => (DeployState::Failed, Some(error_text(e))),
        };
        let finished = now_ms();
        record.state = state;
        record.finished_at_ms = Some(finished);
        record.error = error.clone();
        if let Err(e) = self.store.finish_deploy(&record).await {
            tracing::error!(deploy_id, error = %e, "recording the end of a deploy failed");
        }
        self.release(&held).await;
        if let Some(m) = &self.metrics {
            let outcome = match (state, result.is_ok()) {
                (DeployState::Cancelled, true) => "awaiting_approval",
                _ => state.as_str(),
            };
            m.deploy(&req.layer, outcome);
        }
        p.phase = match state {
            DeployState::Succeeded => DeployPhase::Succeeded,
            DeployState::Cancelled if result.is_ok() => DeployPhase::AwaitingApproval,
            DeployState::Cancelled => DeployPhase::Cancelled,
            _ => DeployPhase::Failed,
        };
        p.current = None;
        if let Some(e) = &error {
            if state == DeployState::Failed && !p.errors.iter().any(|x| x == e) {
                p.errors.push(e.clone());
            }
        }
        progress(&p);
        tracing::info!(
            deploy_id,
            layer = %req.layer,
            state = state.as_str(),
            ms = finished - started,
            "deploy finished"
        );
        match result {
            Ok(DeployOutcome::Succeeded(mut report)) => {
                report.record = record;
                Ok(DeployOutcome::Succeeded(report))
            }
            other => other,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn run_locked(
        &self,
        req: &DeployRequest,
        cfg: &LayerConfig,
        approved: Option<&str>,
        record: &mut DeployRecord,
        p: &mut DeployProgress,
        progress: &ProgressFn,
        cancel: &Arc<CancelSignal>,
    ) -> Result<DeployOutcome, DeployError> {
        // The Swarm first: without it nothing can be verified, so nothing changes.
        let before = self.layer_services(&req.layer).await?;
        p.phase = DeployPhase::Configuring;
        progress(p);
        let prepared = self.prepare(req, cfg).await?;
        record.image_before = prepared.image_before.clone();
        p.phase = DeployPhase::Previewing;
        p.steps_planned = prepared.preview.steps_planned();
        p.warnings = prepared
            .preview
            .diagnostics
            .iter()
            .filter(|d| d.severity == "warning")
            .map(|d| d.message.clone())
            .collect();
        progress(p);
        let plan = self.plan_of(req, cfg, &prepared);
        record.summary = serde_json::json!({
            "image_before": prepared.image_before,
            "preview": preview_json(&prepared.preview),
            "approval_required": plan.approval_action.is_some(),
            "applied": false,
        });
        match approved {
            None if plan.approval_action.is_some() => {
                self.restore(&prepared, "the preview needs an approval")
                    .await?;
                return Ok(DeployOutcome::NeedsApproval(Box::new(plan)));
            }
            Some(expected) if expected != plan.digest => {
                self.restore(&prepared, "the preview changed since the approval")
                    .await?;
                return Err(DeployError::PreviewChanged {
                    expected: short(expected),
                    actual: short(&plan.digest),
                });
            }
            _ => {}
        }
        if cancel.is_requested() {
            self.restore(&prepared, "the deploy was cancelled").await?;
            return Err(DeployError::Cancelled {
                layer: req.layer.clone(),
                deploy_id: record.id.clone(),
            });
        }

        // Apply.
        p.phase = DeployPhase::Applying;
        progress(p);
        record.summary["applied"] = serde_json::json!(true);
        let shared = Arc::new(Mutex::new((UpdateTracker::new(), p.clone())));
        let sink: EventSink = {
            let shared = shared.clone();
            let progress = progress.clone();
            let redactor = self.redactor.clone();
            Arc::new(move |ev: &EngineEvent| {
                let mut guard = shared.lock().unwrap_or_else(|e| e.into_inner());
                let (tracker, prog) = &mut *guard;
                if tracker.observe(ev, &redactor) {
                    prog.steps_done = tracker.steps_done();
                    prog.current = tracker.current().map(str::to_string);
                    let mut warnings = prog.warnings.clone();
                    for w in tracker.warnings() {
                        if !warnings.contains(&w) {
                            warnings.push(w);
                        }
                    }
                    prog.warnings = warnings;
                    prog.errors = tracker.errors();
                    progress(prog);
                }
            })
        };
        let up = {
            let up = self.pulumi.up(&prepared.stack, sink);
            tokio::pin!(up);
            let mut retry = tokio::time::interval(Duration::from_millis(200));
            let mut signalled = false;
            loop {
                tokio::select! {
                    r = &mut up => break r,
                    _ = retry.tick(), if cancel.is_requested() && !signalled => {
                        // A cancel that came before pulumi started: interrupt it once it runs.
                        signalled = self.pulumi.cancel(&req.layer).await.unwrap_or(false);
                    }
                    _ = cancel.wait(), if !cancel.is_requested() => {}
                }
            }
        };
        {
            let guard = shared.lock().unwrap_or_else(|e| e.into_inner());
            *p = guard.1.clone();
            record.summary["steps_done"] = serde_json::json!(guard.0.steps_done());
            record.summary["warnings"] = serde_json::json!(guard.0.warnings());
        }
        record.summary["steps_planned"] = serde_json::json!(p.steps_planned);
        let up = match up {
            Ok(up) => up,
            Err(PulumiError::Cancelled { .. }) => {
                return Err(DeployError::Cancelled {
                    layer: req.layer.clone(),
                    deploy_id: record.id.clone(),
                })
            }
            Err(e) => {
                let mut errors = p.errors.clone();
                for x in e.errors() {
                    if !errors.contains(x) {
                        errors.push(x.clone());
                    }
                }
                tracing::error!(deploy_id = %record.id, detail = %e.detail(), "pulumi up failed: {e}");
                p.errors = errors.clone();
                record.summary["errors"] = serde_json::json!(errors);
                return Err(DeployError::UpdateFailed {
                    layer: req.layer.clone(),
                    deploy_id: record.id.clone(),
                    message: e.to_string(),
                    errors,
                    rollback_target: self.rollback_target_excluding(&req.layer, &record.id).await,
                });
            }
        };
        if let Some(s) = &up.summary {
            record.summary["resource_changes"] = serde_json::json!(s.resource_changes);
            record.summary["duration_seconds"] = serde_json::json!(s.duration_seconds);
        }

        // Verify.
        p.phase = DeployPhase::Verifying;
        p.current = None;
        progress(p);
        let expected_tag = req.image_tag.as_deref();
        let verify_started = Instant::now();
        let verified = tokio::select! {
            v = self.verify(&req.layer, expected_tag, prepared.image_before.as_deref(), &before) => v,
            _ = cancel.wait() => Err(VerifyError::Cancelled),
        };
        tracing::info!(
            deploy_id = %record.id,
            layer = %req.layer,
            ok = verified.is_ok(),
            ms = verify_started.elapsed().as_millis() as u64,
            "swarm verification finished"
        );
        match verified {
            Ok(services) => {
                record.summary["services"] = serde_json::json!(services);
                let mut rec = record.clone();
                rec.state = DeployState::Succeeded;
                Ok(DeployOutcome::Succeeded(Box::new(DeployReport {
                    record: rec,
                    preview: prepared.preview,
                    up,
                    services,
                })))
            }
            Err(VerifyError::Cancelled) => Err(DeployError::Cancelled {
                layer: req.layer.clone(),
                deploy_id: record.id.clone(),
            }),
            Err(VerifyError::Swarm(e)) => Err(DeployError::Swarm(e)),
            Err(VerifyError::NotConverged(message)) => Err(DeployError::VerifyFailed {
                layer: req.layer.clone(),
                deploy_id: record.id.clone(),
                message: self.redactor.redact(&message).into_owned(),
                rollback_target: self.rollback_target_excluding(&req.layer, &record.id).await,
            }),
        }
    }

    /// Everything a person typed, checked before anything runs.
    pub(super) fn check_request(&self, req: &DeployRequest) -> Result<&LayerConfig, DeployError> {
        let cfg = self.layer(&req.layer)?;
        if let Some(tag) = &req.image_tag {
            if cfg.image_tag_key.is_none() {
                return Err(DeployError::NoImageTag {
                    layer: req.layer.clone(),
                });
            }
            check_tag(tag)?;
        }
        check_text("requester", &req.requester, 1, 100)?;
        check_text("reason", &req.reason, 0, 500)?;
        Ok(cfg)
    }

    pub(super) fn layer(&self, layer: &str) -> Result<&LayerConfig, DeployError> {
        self.layers.get(layer).ok_or_else(|| {
            let near = crate::base::closest(layer, self.layers.keys().map(String::as_str));
            let shown = shown(layer);
            DeployError::UnknownLayer(if near.is_empty() {
                format!(
                    "unknown layer {shown}; layers are: {}",
                    self.layers.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            } else {
                format!("unknown layer {shown}; did you mean {}?", near.join(", "))
            })
        })
    }

    pub(super) fn store_error(&self, e: StoreError) -> DeployError {
        let error_id = new_error_id();
        tracing::error!(error_id = %error_id, error = %self.redactor.redact(&e.to_string()), "deploy store error");
        DeployError::Store { error_id }
    }
}
