//! Layer locks of [`Deployer`]: taking one (with its heartbeat and the process-wide
//! held mark), releasing it, cancelling the running deploy, and recovery, which frees only
//! the locks of holders that are gone.

use super::*;

impl Deployer {
    pub(super) async fn take_lock(
        &self,
        req: &DeployRequest,
        cfg: &LayerConfig,
        deploy_id: &str,
    ) -> Result<Held, DeployError> {
        let now = now_ms();
        // The lock outlives the longest run, whatever the configured TTL.
        let ttl = self.lock_ttl.max(
            Duration::from_secs(cfg.timeout_secs) * 2
                + self.verify.timeout
                + Duration::from_secs(120),
        );
        let lock = LayerLock {
            layer: req.layer.clone(),
            owner: req.requester.clone(),
            reason: req.reason.clone(),
            started_at_ms: now,
            expires_at_ms: now + ttl.as_millis() as i64,
            deploy_id: Some(deploy_id.to_string()),
            process: self.process.clone(),
            heartbeat_at_ms: now,
        };
        let previous = self
            .store
            .get_layer_lock(&req.layer)
            .await
            .map_err(|e| self.store_error(e))?;
        // Marked before the lock exists, so no sweep can see it unmarked; a refusal drops it.
        let mark = HeldMark::new(deploy_id);
        match self.store.take_layer_lock(&lock).await {
            Ok(Ok(())) => {
                // An expired lock was taken over: its deploy did not end cleanly.
                if let Some(prev) = previous.filter(|p| p.deploy_id.as_deref() != Some(deploy_id)) {
                    if let Some(id) = prev.deploy_id {
                        tracing::warn!(layer = %req.layer, previous = %id, owner = %prev.owner, "took over an expired layer lock");
                        if let Err(e) = self
                            .interrupt(&id, "interrupted: its layer lock expired")
                            .await
                        {
                            tracing::warn!(error = %e, "marking the previous deploy interrupted failed");
                        }
                    }
                }
                Ok(Held {
                    layer: req.layer.clone(),
                    deploy_id: deploy_id.to_string(),
                    _heartbeat: self.start_heartbeat(&req.layer, deploy_id),
                    _mark: mark,
                })
            }
            Ok(Err(holder)) => Err(DeployError::Locked {
                holder: Box::new(holder),
            }),
            Err(e) => Err(self.store_error(e)),
        }
    }

    /// Renews the lock's heartbeat every `self.heartbeat` until the returned guard drops. A
    /// failed renewal is logged and retried; a lock no longer held stops it.
    pub(super) fn start_heartbeat(&self, layer: &str, deploy_id: &str) -> Heartbeat {
        let (store, every) = (
            self.store.clone(),
            self.heartbeat.max(Duration::from_millis(1)),
        );
        let (layer, deploy_id) = (layer.to_string(), deploy_id.to_string());
        Heartbeat(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await; // the first tick is now: the lock was just taken
            loop {
                tick.tick().await;
                match store
                    .heartbeat_layer_lock(&layer, &deploy_id, now_ms())
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(%layer, %deploy_id, "the layer lock is no longer held: heartbeat stopped");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(%layer, error = %e, "renewing the layer lock's heartbeat failed")
                    }
                }
            }
        }))
    }

    pub(super) async fn release(&self, held: &Held) {
        if let Err(e) = self
            .store
            .release_layer_lock(&held.layer, Some(&held.deploy_id))
            .await
        {
            tracing::error!(layer = %held.layer, error = %e, "releasing the layer lock failed: it stays until it expires or is unlocked");
        }
    }

    /// The layers whose deploy runs in this process now, sorted (`/healthz` reports them).
    pub fn running_layers(&self) -> Vec<String> {
        let mut layers: Vec<String> = self
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        layers.sort();
        layers
    }

    /// Interrupts the deploy of `layer` running in this process: the pulumi process gets
    /// SIGINT (it finishes the steps in flight), a verification stops waiting. `false` when no
    /// deploy of the layer runs here.
    pub async fn cancel(&self, layer: &str) -> Result<bool, DeployError> {
        self.layer(layer)?;
        let active = self
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(layer)
            .cloned();
        let Some(signal) = active else {
            return Ok(false);
        };
        signal.request();
        // Interrupts pulumi if it runs now; otherwise the deploy stops at its next step (or
        // interrupts pulumi as soon as it starts).
        self.pulumi
            .cancel(layer)
            .await
            .map_err(DeployError::Pulumi)?;
        Ok(true)
    }

    /// At start-up (and periodically): the locks of holders that are gone are released and
    /// their deploys become `interrupted`; a lock whose holder is alive (see
    /// `holder_alive`: a CLI deploy, another process) is kept with its deploy. Returns the
    /// interrupted ones, for the channel.
    pub async fn recover_interrupted(&self) -> Result<Vec<DeployRecord>, DeployError> {
        let now = now_ms();
        // First the locks of holders that are gone (deploys, plans); a running deploy always
        // holds its lock, so those left without one are then interrupted.
        let locks = self
            .store
            .list_layer_locks()
            .await
            .map_err(|e| self.store_error(e))?;
        for lock in locks {
            if self.holder_alive(&lock, now) {
                tracing::info!(layer = %lock.layer, owner = %lock.owner, process = %lock.process, "layer lock held by a live process: kept");
                continue;
            }
            tracing::warn!(layer = %lock.layer, owner = %lock.owner, process = %lock.process, "released the layer lock of a process that is gone");
            self.store
                .release_layer_lock(&lock.layer, lock.deploy_id.as_deref())
                .await
                .map_err(|e| self.store_error(e))?;
        }
        let interrupted = self
            .store
            .interrupt_running_deploys(now, "interrupted: sprocket-ops stopped while it ran")
            .await
            .map_err(|e| self.store_error(e))?;
        for d in &interrupted {
            tracing::warn!(deploy_id = %d.id, layer = %d.layer, "deploy interrupted by a restart");
        }
        Ok(interrupted)
    }

    /// Whether the process holding `lock` is alive: this process only for a deploy running
    /// here; another process of this machine and pid namespace by its pid and start time
    /// (`/proc`); any other by its heartbeat (renewed within [`LOCK_STALE_MS`]).
    pub(super) fn holder_alive(&self, lock: &LayerLock, now: i64) -> bool {
        let held = || lock.deploy_id.as_deref().is_some_and(held_here);
        if lock.process == self.process {
            // Held (a run or a plan, from before the lock was taken) until its guard drops.
            return held();
        }
        match (
            ProcessId::parse(&self.process),
            ProcessId::parse(&lock.process),
        ) {
            (Some(me), Some(them)) if me.machine == them.machine => {
                if (me.pid, me.start) == (them.pid, them.start) {
                    // This very process, through another deployer: held while its guard lives.
                    return held();
                }
                proc_start_time(them.pid) == Some(them.start)
            }
            _ => lock.is_alive(now),
        }
    }

    /// Every layer lock held (expired ones included: see [`LayerLock::is_expired`]).
    pub async fn locks(&self) -> Result<Vec<LayerLock>, DeployError> {
        self.store
            .list_layer_locks()
            .await
            .map_err(|e| self.store_error(e))
    }

    /// Releases the lock of `layer` whoever holds it (after the `unlock` approval); its deploy,
    /// if recorded as running, becomes `interrupted`. Refused while the deploy runs here.
    pub async fn unlock(&self, layer: &str) -> Result<Option<LayerLock>, DeployError> {
        self.layer(layer)?;
        if self
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(layer)
        {
            return Err(DeployError::UnlockRunning(layer.to_string()));
        }
        let lock = self
            .store
            .get_layer_lock(layer)
            .await
            .map_err(|e| self.store_error(e))?;
        let Some(lock) = lock else {
            return Ok(None);
        };
        if let Some(id) = &lock.deploy_id {
            self.interrupt(id, "interrupted: the layer was unlocked")
                .await
                .map_err(|e| self.store_error(e))?;
        }
        self.store
            .release_layer_lock(layer, lock.deploy_id.as_deref())
            .await
            .map_err(|e| self.store_error(e))?;
        Ok(Some(lock))
    }

    /// Marks a running deploy `interrupted` (its lock was taken over or released).
    pub(super) async fn interrupt(&self, id: &str, why: &str) -> Result<(), StoreError> {
        if let Some(mut d) = self.store.get_deploy(id).await? {
            if d.state == DeployState::Running {
                d.state = DeployState::Interrupted;
                d.finished_at_ms = Some(now_ms());
                d.error = Some(why.to_string());
                self.store.finish_deploy(&d).await?;
            }
        }
        Ok(())
    }
}
