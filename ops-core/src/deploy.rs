//! Layer deploys as a domain service, without Discord: [`Deployer`] runs the flow an operator
//! runs by hand (`cd platform && pulumi config set image-tag v2 && pulumi up`), with the guard
//! rails around it:
//!
//! 1. Everything a person typed is checked first (the layer, the tag: a bare image tag by the
//!    `distribution/reference` grammar), before any lock or process.
//! 2. The layer lock, persisted (owner, reason, since, expiry, holding process, heartbeat): a
//!    second deploy of the same layer is refused at once, naming the holder and since when.
//!    The holding process renews the heartbeat while it deploys. [`Deployer::recover_interrupted`]
//!    (at start-up, then periodically) releases the locks of holders that are gone: a process
//!    of this machine that no longer runs (its pid and start time), any other whose heartbeat
//!    is older than [`crate::store::LOCK_STALE_MS`]. A lock whose process is alive (a CLI
//!    deploy while the bot starts) is never released by recovery.
//! 3. `pulumi config set <image_tag_key> <tag>` (layers with a tag key only), then
//!    `pulumi preview`: a [`PreviewSummary`] by resource type. Deletes or replaces, or a layer
//!    that `always_requires_approval`, stop here ([`DeployOutcome::NeedsApproval`]): the config
//!    is put back and nothing else runs until an approval executes [`LayerDeployExecutor`].
//! 4. `pulumi up`, publishing [`DeployProgress`] (steps done of planned, the resource in
//!    flight, redacted warnings and errors) through a callback; the Discord layer throttles.
//! 5. Verification on the Swarm: the layer's services whose spec changed are followed to the
//!    end of their rollout, then the services the update touched, and (layers with a tag) those
//!    that ran the layer's previous tag, must run their desired tasks, the latter with the
//!    requested tag; the wait is bounded. A service of the layer on a third-party image that
//!    the update left alone is not the deploy's business.
//! 6. History: layer, requester, approver, tags before and after, result, duration, counts;
//!    then the lock is released. [`Deployer::rollback_target`] reads the last good tag back.
//!
//! [`Deployer::cancel`] interrupts the running `pulumi` gracefully (SIGINT, as Ctrl-C does).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::approvals::{ActionExecutor, Binding, ExecFailure};
use crate::checkout::{CheckoutError, CheckoutState};
use crate::config::{Config, LayerConfig};
use crate::layers::LayerMap;
use crate::ops::{new_error_id, now_ms};
use crate::pulumi::events::UpdateTracker;
use crate::pulumi::{
    EngineEvent, EventSink, PreviewSummary, PulumiApi, PulumiError, StackRef, UpOutcome,
};
use crate::redact::Redactor;
use crate::store::{Store, StoreError, LOCK_HEARTBEAT_MS};
use crate::swarm::{
    display_image, ImageTarget, RolloutOutcome, RolloutPoll, ServiceInfo, SwarmApi, SwarmError,
};
use crate::OpsError;

mod liveness;
use liveness::{proc_start_time, process_name, Heartbeat, ProcessId};

pub use crate::store::{DeployRecord, DeployState, LayerLock};

/// Approval action for a deploy that deletes or replaces resources.
pub const ACTION_DESTRUCTIVE: &str = "layer_deploy_destructive";
/// Approval action for rolling a layer back to its last good tag.
pub const ACTION_ROLLBACK: &str = "layer_rollback";

/// What a person asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployRequest {
    pub layer: String,
    /// A bare image tag (`v2`), only for layers with an `image_tag_key`.
    #[serde(default)]
    pub image_tag: Option<String>,
    /// Who asked (GitHub login).
    pub requester: String,
    #[serde(default)]
    pub reason: String,
}

impl DeployRequest {
    /// The approval parameters for this request.
    pub fn to_params(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// Where a deploy is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployPhase {
    Locking,
    Configuring,
    Previewing,
    /// Nothing ran: an approval is needed.
    AwaitingApproval,
    Applying,
    Verifying,
    Succeeded,
    Failed,
    Cancelled,
}

/// Progress of one deploy, published on every change (the receiver throttles).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeployProgress {
    pub layer: String,
    pub deploy_id: Option<String>,
    pub phase: DeployPhase,
    pub steps_done: u32,
    pub steps_planned: u32,
    /// The resource being changed now.
    pub current: Option<String>,
    /// Redacted, colour-free, bounded.
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
}

impl DeployProgress {
    pub fn new(layer: &str) -> DeployProgress {
        DeployProgress {
            layer: layer.to_string(),
            deploy_id: None,
            phase: DeployPhase::Locking,
            steps_done: 0,
            steps_planned: 0,
            current: None,
            warnings: Vec::new(),
            errors: Vec::new(),
        }
    }
}

/// Receives every [`DeployProgress`] change.
pub type ProgressFn = Arc<dyn Fn(&DeployProgress) + Send + Sync>;

/// A progress callback that publishes into a `watch` channel (latest value wins).
pub fn watch_progress(layer: &str) -> (ProgressFn, tokio::sync::watch::Receiver<DeployProgress>) {
    let (tx, rx) = tokio::sync::watch::channel(DeployProgress::new(layer));
    let f: ProgressFn = Arc::new(move |p: &DeployProgress| {
        let _ = tx.send(p.clone());
    });
    (f, rx)
}

/// A progress callback that drops everything.
pub fn no_progress() -> ProgressFn {
    Arc::new(|_: &DeployProgress| {})
}

/// What a preview means for a request; nothing has changed when one is returned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeployPlan {
    pub request: DeployRequest,
    /// The tag configured before (layers with a tag key).
    pub image_before: Option<String>,
    pub preview: PreviewSummary,
    /// The approval action needed, if any (`layer_deploy_destructive`, `layer_1_deploy`).
    pub approval_action: Option<String>,
    /// Why an approval is needed, for people.
    pub approval_reasons: Vec<String>,
    /// What an approval approves: the preview digest (operations, properties, hashed input
    /// values), the layer, the tag and the infra checkout (commit and dirty state).
    pub digest: String,
    /// The infra checkout the preview ran from.
    pub checkout: CheckoutState,
}

/// How a deploy ended when it did not fail.
#[derive(Debug, Clone)]
pub enum DeployOutcome {
    /// Applied, verified, recorded.
    Succeeded(Box<DeployReport>),
    /// Nothing ran (the config was put back): request an approval for `plan.approval_action`
    /// with `plan.request.to_params()`.
    NeedsApproval(Box<DeployPlan>),
}

/// A successful deploy.
#[derive(Debug, Clone)]
pub struct DeployReport {
    pub record: DeployRecord,
    pub preview: PreviewSummary,
    pub up: UpOutcome,
    pub services: Vec<ServiceState>,
}

/// A layer service as verification left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceState {
    pub name: String,
    pub image: String,
    pub running: Option<u64>,
    pub desired: Option<u64>,
}

/// Why a deploy did not happen or failed. The text is safe to show.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeployError {
    #[error("{0}")]
    UnknownLayer(String),
    #[error("layer `{layer}` has no image tag setting: deploy it without a tag")]
    NoImageTag { layer: String },
    #[error("refused {what} {shown}: {reason}")]
    InvalidArgument {
        what: &'static str,
        shown: String,
        reason: String,
    },
    #[error("layer `{}` is locked: {} has been deploying it since {} ({}){}", .holder.layer, .holder.owner, since(.holder.started_at_ms), describe_age(.holder.started_at_ms), reason_suffix(&.holder.reason))]
    Locked { holder: Box<LayerLock> },
    #[error("the deploy store is unavailable, so deploys are refused (error id {error_id})")]
    Store { error_id: String },
    #[error("{0}")]
    Swarm(SwarmError),
    #[error("{0}")]
    Pulumi(PulumiError),
    #[error("the update of `{layer}` failed: {message}")]
    UpdateFailed {
        layer: String,
        deploy_id: String,
        message: String,
        /// Redacted diagnostics.
        errors: Vec<String>,
        rollback_target: Option<String>,
    },
    #[error("the deploy of `{layer}` was cancelled")]
    Cancelled { layer: String, deploy_id: String },
    #[error("`{layer}` was updated but did not converge: {message}")]
    VerifyFailed {
        layer: String,
        deploy_id: String,
        message: String,
        rollback_target: Option<String>,
    },
    #[error("void: the preview changed since the approval (approved {expected}, now {actual}): request a new approval")]
    PreviewChanged { expected: String, actual: String },
    #[error("layer `{0}` has no earlier good image tag to roll back to")]
    NoRollbackTarget(String),
    #[error("{0}")]
    Checkout(CheckoutError),
    #[error(
        "layer `{0}` is being deployed by this process: cancel the deploy instead of unlocking"
    )]
    UnlockRunning(String),
    /// Nothing was applied, but the image tag set for the preview could not be put back: the
    /// stack's config still names the requested tag, which the next `pulumi up` of the layer
    /// (by anyone) would deploy.
    #[error("{0}")]
    RestoreFailed(Box<RestoreFailure>),
}

/// What [`DeployError::RestoreFailed`] reports.
#[derive(Debug, Clone, thiserror::Error)]
#[error("nothing was applied ({after}), but the image tag of `{layer}` could not be put back: `{key}` may still be `{requested}` instead of `{before}`. Set it back before anyone deploys the layer (`pulumi config set {key} {before}` in its directory) (error id {error_id})")]
pub struct RestoreFailure {
    pub layer: String,
    pub key: String,
    pub before: String,
    pub requested: String,
    /// Why the deploy stopped before applying.
    pub after: String,
    pub error_id: String,
}

impl DeployError {
    /// Redacted diagnostics worth showing under the message.
    pub fn errors(&self) -> &[String] {
        match self {
            DeployError::UpdateFailed { errors, .. } => errors,
            DeployError::Pulumi(e) => e.errors(),
            _ => &[],
        }
    }

    /// The last good tag, for failures after the update started.
    pub fn rollback_target(&self) -> Option<&str> {
        match self {
            DeployError::UpdateFailed {
                rollback_target, ..
            }
            | DeployError::VerifyFailed {
                rollback_target, ..
            } => rollback_target.as_deref(),
            _ => None,
        }
    }
}

fn since(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| ms.to_string())
}

fn describe_age(ms: i64) -> String {
    let secs = ((now_ms() - ms) / 1000).max(0);
    match secs {
        0..=59 => format!("{secs} s ago"),
        60..=3599 => format!("{} min ago", secs / 60),
        _ => format!("{} h {} min ago", secs / 3600, (secs % 3600) / 60),
    }
}

fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    }
}

impl LayerLock {
    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.expires_at_ms <= now_ms
    }
}

/// How long verification waits for the Swarm, and how often it looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyPolicy {
    pub timeout: Duration,
    pub poll: Duration,
}

impl Default for VerifyPolicy {
    fn default() -> Self {
        VerifyPolicy {
            timeout: Duration::from_secs(300),
            poll: Duration::from_secs(1),
        }
    }
}

/// The layer deploy service.
pub struct Deployer {
    pulumi: Arc<dyn PulumiApi>,
    store: Arc<dyn Store>,
    swarm: Arc<dyn SwarmApi>,
    layers: BTreeMap<String, LayerConfig>,
    layer_map: LayerMap,
    lock_ttl: Duration,
    verify: VerifyPolicy,
    redactor: Arc<Redactor>,
    /// Deploys running in this process: layer -> cancel signal.
    active: Mutex<HashMap<String, Arc<CancelSignal>>>,
    /// Counts finished deploys (`sprocket_ops_deploys_total{layer,result}`).
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// This process, as named in the locks it holds (`host:pid:nonce`).
    process: String,
    /// How often a held lock's heartbeat is renewed.
    heartbeat: Duration,
}

/// A cancel request for one running deploy.
#[derive(Default)]
struct CancelSignal {
    requested: AtomicBool,
    notify: Notify,
}

impl CancelSignal {
    fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
        self.notify.notify_one();
    }
    fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }
    async fn wait(&self) {
        while !self.is_requested() {
            self.notify.notified().await;
        }
    }
}

/// The lock of one deploy; released explicitly (a crash leaves it for recovery). Its
/// heartbeat task renews it until this is dropped.
struct Held {
    layer: String,
    deploy_id: String,
    _heartbeat: Heartbeat,
    _mark: HeldMark,
}

/// The deploy ids of every layer lock this process holds (runs and plans alike, whichever
/// [`Deployer`] took them), from just before the lock is taken until its [`Held`] drops:
/// recovery in this process never frees these ([`Deployer::holder_alive`]).
static HELD_IDS: std::sync::LazyLock<Mutex<HashSet<String>>> =
    std::sync::LazyLock::new(Default::default);

fn held_here(deploy_id: &str) -> bool {
    HELD_IDS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(deploy_id)
}

/// Marks a deploy id as held by this process until dropped.
struct HeldMark {
    id: String,
}

impl HeldMark {
    fn new(id: &str) -> HeldMark {
        HELD_IDS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string());
        HeldMark { id: id.to_string() }
    }
}

impl Drop for HeldMark {
    fn drop(&mut self) {
        HELD_IDS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

/// The config change and preview of one attempt.
struct Prepared {
    stack: StackRef,
    image_before: Option<String>,
    /// The tag key, when the config was changed (to put it back).
    changed_key: Option<String>,
    /// The tag it was changed to.
    requested_tag: Option<String>,
    preview: PreviewSummary,
    /// The infra checkout, read before the config was changed.
    checkout: CheckoutState,
}

impl Deployer {
    pub fn new(
        cfg: &Config,
        pulumi: Arc<dyn PulumiApi>,
        store: Arc<dyn Store>,
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

    async fn run(
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
    async fn run_locked(
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
    fn check_request(&self, req: &DeployRequest) -> Result<&LayerConfig, DeployError> {
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

    fn layer(&self, layer: &str) -> Result<&LayerConfig, DeployError> {
        self.layers.get(layer).ok_or_else(|| {
            let near = crate::layers::closest(layer, self.layers.keys().map(String::as_str));
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

    fn store_error(&self, e: StoreError) -> DeployError {
        let error_id = new_error_id();
        tracing::error!(error_id = %error_id, error = %self.redactor.redact(&e.to_string()), "deploy store error");
        DeployError::Store { error_id }
    }

    async fn take_lock(
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
    fn start_heartbeat(&self, layer: &str, deploy_id: &str) -> Heartbeat {
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

    async fn release(&self, held: &Held) {
        if let Err(e) = self
            .store
            .release_layer_lock(&held.layer, Some(&held.deploy_id))
            .await
        {
            tracing::error!(layer = %held.layer, error = %e, "releasing the layer lock failed: it stays until it expires or is unlocked");
        }
    }

    /// `config get` + `config set` (tag layers) + `preview`.
    async fn prepare(
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
    async fn restore(&self, prepared: &Prepared, after: &str) -> Result<(), DeployError> {
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

    fn plan_of(&self, req: &DeployRequest, cfg: &LayerConfig, p: &Prepared) -> DeployPlan {
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
    async fn layer_services(
        &self,
        layer: &str,
    ) -> Result<BTreeMap<String, ServiceInfo>, DeployError> {
        let snap = self.swarm.snapshot().await.map_err(|e| {
            tracing::error!(detail = %self.redactor.redact(e.detail()), "swarm snapshot failed");
            DeployError::Swarm(e)
        })?;
        Ok(self.of_layer(layer, snap.services))
    }

    fn of_layer(&self, layer: &str, services: Vec<ServiceInfo>) -> BTreeMap<String, ServiceInfo> {
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
    async fn verify(
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
    /// (`/proc`); any other by its heartbeat (renewed within [`crate::store::LOCK_STALE_MS`]).
    fn holder_alive(&self, lock: &LayerLock, now: i64) -> bool {
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
    async fn interrupt(&self, id: &str, why: &str) -> Result<(), StoreError> {
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

    /// The last `n` deploys of `layer`, newest first.
    pub async fn history(&self, layer: &str, n: u32) -> Result<Vec<DeployRecord>, DeployError> {
        self.layer(layer)?;
        self.store
            .list_deploys(Some(layer), n)
            .await
            .map_err(|e| self.store_error(e))
    }

    /// A deploy of the layer's [`Deployer::rollback_target`] (the `layer_rollback` approval's
    /// parameters are its [`DeployRequest::to_params`]).
    pub async fn rollback_request(
        &self,
        layer: &str,
        requester: &str,
        reason: &str,
    ) -> Result<DeployRequest, DeployError> {
        let tag = self
            .rollback_target(layer)
            .await?
            .ok_or_else(|| DeployError::NoRollbackTarget(layer.to_string()))?;
        let req = DeployRequest {
            layer: layer.to_string(),
            image_tag: Some(tag),
            requester: requester.to_string(),
            reason: reason.to_string(),
        };
        self.check_request(&req)?;
        Ok(req)
    }

    /// Records who approved a deploy (the approval engine knows; the executor does not).
    pub async fn set_approver(&self, deploy_id: &str, approver: &str) -> Result<(), DeployError> {
        self.store
            .set_deploy_approver(deploy_id, approver)
            .await
            .map_err(|e| self.store_error(e))
    }

    /// Records where the deploy's own Discord message is, so that a restart in the middle of
    /// the deploy can have that message say so ([`Deployer::message_of`]).
    pub async fn set_message(
        &self,
        deploy_id: &str,
        channel_id: u64,
        message_id: u64,
    ) -> Result<(), DeployError> {
        self.store
            .set_deploy_message(deploy_id, channel_id, message_id)
            .await
            .map_err(|e| self.store_error(e))
    }

    /// Where the deploy's own Discord message is (channel id, message id), if recorded.
    pub async fn message_of(&self, deploy_id: &str) -> Result<Option<(u64, u64)>, DeployError> {
        self.store
            .get_deploy_message(deploy_id)
            .await
            .map_err(|e| self.store_error(e))
    }

    /// The tag to roll `layer` back to: the newest successful deploy's tag that differs from
    /// the tag of the newest deploy that ran (succeeded, failed, interrupted, or cancelled
    /// after it started applying); without one, the tag configured before that deploy. `None`
    /// without history (or for layers without tags).
    pub async fn rollback_target(&self, layer: &str) -> Result<Option<String>, DeployError> {
        self.layer(layer)?;
        let history = self
            .store
            .list_deploys(Some(layer), 500)
            .await
            .map_err(|e| self.store_error(e))?;
        Ok(rollback_from(&history))
    }

    async fn rollback_target_excluding(&self, layer: &str, _deploy_id: &str) -> Option<String> {
        // The failing deploy is still `running` in the store; it ran, so it is the current one.
        match self.store.list_deploys(Some(layer), 500).await {
            Ok(history) => rollback_from(&history),
            Err(e) => {
                tracing::warn!(error = %e, "reading the deploy history failed");
                None
            }
        }
    }
}

/// See [`Deployer::rollback_target`]; `history` is newest first.
fn rollback_from(history: &[DeployRecord]) -> Option<String> {
    let ran = |d: &DeployRecord| match d.state {
        DeployState::Cancelled => d.summary.get("applied").and_then(|v| v.as_bool()) == Some(true),
        _ => true,
    };
    let current = history.iter().find(|d| ran(d))?;
    let current_tag = current.image_after.as_deref();
    history
        .iter()
        .filter(|d| d.state == DeployState::Succeeded)
        .filter_map(|d| d.image_after.as_deref())
        .find(|t| Some(*t) != current_tag)
        // No earlier good deploy recorded: what ran before the current one.
        .or(current
            .image_before
            .as_deref()
            .filter(|t| Some(*t) != current_tag))
        .map(str::to_string)
}

enum VerifyError {
    Cancelled,
    Swarm(SwarmError),
    NotConverged(String),
}

/// What is wrong with one service, if anything.
/// Which services of the layer a deploy's verification looks at, and for which the tag.
struct Scope<'a> {
    /// The tag requested (layers with an image tag).
    expected_tag: Option<&'a str>,
    /// The layer's tag before the deploy (`pulumi config get`).
    tag_before: Option<&'a str>,
    /// The layer's services before the update.
    before: &'a BTreeMap<String, ServiceInfo>,
}

impl Scope<'_> {
    /// The update changed its spec (or created it).
    fn touched(&self, s: &ServiceInfo) -> bool {
        self.before
            .get(&s.name)
            .is_none_or(|b| s.version > b.version)
    }

    /// It runs the layer's image: it ran the layer's previous tag, or runs the requested one.
    /// Without a previous tag (a first deploy), the touched services are taken to.
    fn runs_layer_image(&self, s: &ServiceInfo) -> bool {
        let Some(expected) = self.expected_tag else {
            return false;
        };
        let was = self.before.get(&s.name).and_then(|b| image_tag(&b.image));
        match self.tag_before {
            Some(prev) => was == Some(prev) || image_tag(&s.image) == Some(expected),
            None => self.touched(s),
        }
    }

    fn checks(&self, s: &ServiceInfo) -> bool {
        self.touched(s) || self.runs_layer_image(s)
    }

    /// The tag `s` must run, if any.
    fn tag_for(&self, s: &ServiceInfo) -> Option<&str> {
        if self.runs_layer_image(s) {
            self.expected_tag
        } else {
            None
        }
    }
}

fn service_problem(s: &ServiceInfo, expected_tag: Option<&str>) -> Option<String> {
    if let Some(state) = s.update_state.as_deref() {
        if matches!(state, "updating" | "rollback_started") {
            return Some(format!("`{}` is still updating", s.name));
        }
    }
    if let (Some(running), Some(desired)) = (s.running_tasks, s.desired_tasks) {
        if running != desired {
            return Some(format!("`{}` runs {running}/{desired} tasks", s.name));
        }
    }
    if let Some(tag) = expected_tag {
        let current = image_tag(&s.image);
        if current != Some(tag) {
            return Some(format!(
                "`{}` runs {} instead of tag `{tag}`",
                s.name,
                display_image(&s.image)
            ));
        }
    }
    None
}

/// The tag of an image reference (`registry:5000/repo:v2@sha256:…` -> `v2`).
fn image_tag(image: &str) -> Option<&str> {
    let without_digest = image.split('@').next()?;
    let last = without_digest.rsplit('/').next()?;
    last.split_once(':').map(|(_, t)| t)
}

/// What an approval of a deploy approves: the layer, the tag, the preview (with its hashed
/// input values) and the infra checkout (commit and dirty state).
pub fn approval_digest(
    layer: &str,
    tag: Option<&str>,
    preview: &PreviewSummary,
    checkout: &CheckoutState,
) -> String {
    let mut h = Sha256::new();
    for part in [
        "sprocket-ops layer deploy v2",
        layer,
        tag.unwrap_or(""),
        &preview.digest(),
        checkout.commit.as_deref().unwrap_or("-"),
        &checkout.fingerprint,
    ] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn preview_json(p: &PreviewSummary) -> serde_json::Value {
    serde_json::json!({
        "by_type": p.by_type,
        "totals": p.totals(),
        "digest": p.digest(),
    })
}

fn short(digest: &str) -> String {
    digest.chars().take(12).collect()
}

/// The error text kept in the history (safe to show: redacted at the source).
fn error_text(e: &DeployError) -> String {
    let errors = e.errors();
    if errors.is_empty() {
        e.to_string()
    } else {
        format!("{e}: {}", errors.join("; "))
    }
}

/// A fresh deploy id: time plus 64 random bits.
fn new_deploy_id() -> String {
    use std::io::Read;
    let mut buf = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_err()
    {
        let t = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64;
        buf = (t ^ u64::from(std::process::id()).rotate_left(32)).to_le_bytes();
    }
    format!(
        "d{}-{}",
        chrono::Utc::now().format("%Y%m%d%H%M%S"),
        buf.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

fn shown(s: &str) -> String {
    let escaped = format!("{s:?}");
    if escaped.chars().count() > 40 {
        format!("{}…\"", escaped.chars().take(38).collect::<String>())
    } else {
        escaped
    }
}

/// A deploy tag: a bare image tag (`v2`, `:v2`), by the reference grammar.
fn check_tag(tag: &str) -> Result<String, DeployError> {
    match ImageTarget::parse(tag) {
        Ok(ImageTarget::Tag(t)) => Ok(t),
        Ok(ImageTarget::Reference(_)) => Err(DeployError::InvalidArgument {
            what: "image tag",
            shown: shown(tag),
            reason: "give a tag (`v2`), not a full image reference".into(),
        }),
        Err(e) => Err(DeployError::InvalidArgument {
            what: "image tag",
            shown: shown(tag),
            reason: e.to_string(),
        }),
    }
}

fn check_text(what: &'static str, s: &str, min: usize, max: usize) -> Result<(), DeployError> {
    let n = s.chars().count();
    if n < min || n > max {
        return Err(DeployError::InvalidArgument {
            what,
            shown: shown(s),
            reason: format!("must be {min} to {max} characters"),
        });
    }
    if s.chars().any(char::is_control) {
        return Err(DeployError::InvalidArgument {
            what,
            shown: shown(s),
            reason: "must not contain control characters or newlines".into(),
        });
    }
    Ok(())
}

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

    /// Where approved deploys publish their progress.
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

fn strip_digest(params: &serde_json::Value) -> serde_json::Value {
    let mut p = params.clone();
    if let Some(o) = p.as_object_mut() {
        o.remove("digest");
    }
    p
}

fn ops_error(e: &DeployError) -> OpsError {
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
        let expected = params
            .get("digest")
            .and_then(|d| d.as_str())
            .map(str::to_string)
            .or_else(|| {
                self.checked
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&key)
            })
            .ok_or_else(|| OpsError {
                summary: "void: no approved preview to compare with".into(),
                error_id: new_error_id(),
            })?;
        match self
            .run_approved(&req, &expected, &serde_json::Value::Null, approvers)
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
        let Some(expected) = bound.get("digest").and_then(|d| d.as_str()) else {
            return Ok(self.execute_approved(params, approvers).await?);
        };
        let (req, _) = Self::request(params)?;
        self.run_approved(&req, expected, bound, approvers).await
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
    ) -> Result<String, ExecFailure> {
        let result = self
            .deployer
            .deploy_approved(req, expected, self.progress.clone())
            .await;
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
                error_id: crate::ops::new_error_id(),
            })
    }
}

#[async_trait::async_trait]
impl ActionExecutor for UnlockExecutor {
    async fn digest(&self, params: &serde_json::Value) -> Result<String, OpsError> {
        let layer = Self::layer(params)?;
        let locks = self.deployer.locks().await.map_err(|e| OpsError {
            summary: e.to_string(),
            error_id: crate::ops::new_error_id(),
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
                error_id: crate::ops::new_error_id(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::atomic::AtomicU64;

    use futures::stream::{self, StreamExt as _};

    use super::*;
    use crate::pulumi::events::{parse_event_line, EventKind};
    use crate::swarm::{RolloutProgress, RolloutStream, SwarmSnapshot};

    const CONFIG: &str = r#"
[discord]
guild_id = 1
alerts_channel_id = 2
approvals_channel_id = 3
audit_channel_id = 4

[layers.layer_1]
directory = "/tmp"
stack = "layer_1"
services = ["traefik*"]
always_requires_approval = true

[layers.platform]
directory = "/tmp"
stack = "prod"
image_tag_key = "image-tag"
services = ["prod-*"]
"#;

    fn preview(steps: &[(&str, &str)]) -> PreviewSummary {
        let steps: Vec<serde_json::Value> = steps
            .iter()
            .map(|(op, name)| {
                serde_json::json!({
                    "op": op,
                    "urn": format!("urn:pulumi:prod::platform::docker:index/service:Service::{name}"),
                })
            })
            .collect();
        let doc = serde_json::json!({"steps": steps, "changeSummary": {"same": 1}});
        PreviewSummary::parse(&doc.to_string(), &Redactor::default()).unwrap()
    }

    fn event(seq: i64, payload: serde_json::Value) -> EngineEvent {
        let mut v = serde_json::json!({"sequence": seq, "timestamp": 1_700_000_000 + seq});
        for (k, x) in payload.as_object().unwrap() {
            v[k] = x.clone();
        }
        parse_event_line(&v.to_string(), seq as u64).unwrap()
    }

    fn step_events(op: &str, name: &str, fail: Option<&str>) -> Vec<EngineEvent> {
        let meta = serde_json::json!({
            "op": op,
            "urn": format!("urn:pulumi:prod::platform::docker:index/service:Service::{name}"),
            "type": "docker:index/service:Service",
            "old": null, "new": null, "detailedDiff": null, "provider": ""
        });
        let mut evs = vec![
            event(0, serde_json::json!({"preludeEvent": {"config": {}}})),
            event(
                1,
                serde_json::json!({"resourcePreEvent": {"metadata": meta}}),
            ),
        ];
        match fail {
            None => evs.push(event(
                2,
                serde_json::json!({"resOutputsEvent": {"metadata": meta}}),
            )),
            Some(msg) => {
                evs.push(event(
                    2,
                    serde_json::json!({"diagnosticEvent": {"urn": meta["urn"], "message": msg, "color": "never", "severity": "error"}}),
                ));
                evs.push(event(3, serde_json::json!({"resOpFailedEvent": {"metadata": meta, "status": 1, "steps": 1}})));
            }
        }
        evs.push(event(
            4,
            serde_json::json!({"summaryEvent": {"maybeCorrupt": false, "durationSeconds": 1, "resourceChanges": {op: 1}, "PolicyPacks": {}, "isPreview": false}}),
        ));
        evs.push(event(5, serde_json::json!({"cancelEvent": {}})));
        evs
    }

    fn svc(name: &str, image: &str, version: u64) -> ServiceInfo {
        ServiceInfo {
            id: format!("id-{name}"),
            name: name.into(),
            image: image.into(),
            replicas: Some(1),
            labels: Default::default(),
            running_tasks: Some(1),
            desired_tasks: Some(1),
            update_state: Some("completed".into()),
            update_message: None,
            version,
        }
    }

    /// The Swarm: a list of services; rollouts complete at once. Anything else panics.
    #[derive(Default)]
    struct FakeSwarm {
        services: Mutex<Vec<ServiceInfo>>,
        followed: Mutex<Vec<(String, u64)>>,
    }

    impl FakeSwarm {
        fn set_image(&self, name: &str, image: &str) {
            let mut s = self.services.lock().unwrap();
            let svc = s
                .iter_mut()
                .find(|s| s.name == name)
                .expect("known service");
            svc.image = image.to_string();
            svc.version += 1;
        }
    }

    #[async_trait]
    impl SwarmApi for FakeSwarm {
        async fn snapshot(&self) -> Result<SwarmSnapshot, SwarmError> {
            Ok(SwarmSnapshot {
                services: self.services.lock().unwrap().clone(),
                ..Default::default()
            })
        }
        async fn follow_rollout(
            &self,
            name: &str,
            since: u64,
            _poll: RolloutPoll,
        ) -> Result<RolloutStream, SwarmError> {
            self.followed
                .lock()
                .unwrap()
                .push((name.to_string(), since));
            let last = RolloutProgress {
                service: name.to_string(),
                version: since + 1,
                image: String::new(),
                running_updated: 1,
                running_outdated: 0,
                desired: 1,
                update_state: Some("completed".into()),
                update_message: None,
                elapsed: Duration::ZERO,
                outcome: Some(RolloutOutcome::Completed),
            };
            Ok(stream::iter(vec![last]).boxed())
        }
        async fn inspect(&self, name: &str) -> Result<crate::swarm::ServiceDetail, SwarmError> {
            panic!("unexpected inspect({name})")
        }
        async fn bump(
            &self,
            name: &str,
            _: &str,
            _: Option<u64>,
        ) -> Result<crate::swarm::UpdateStarted, SwarmError> {
            panic!("unexpected bump({name})")
        }
        async fn scale(
            &self,
            name: &str,
            _: u64,
            _: Option<u64>,
        ) -> Result<crate::swarm::UpdateStarted, SwarmError> {
            panic!("unexpected scale({name})")
        }
        async fn rollback(
            &self,
            name: &str,
            _: Option<u64>,
        ) -> Result<crate::swarm::UpdateStarted, SwarmError> {
            panic!("unexpected rollback({name})")
        }
        async fn restart(
            &self,
            name: &str,
            _: Option<u64>,
        ) -> Result<crate::swarm::UpdateStarted, SwarmError> {
            panic!("unexpected restart({name})")
        }
    }

    /// A scripted `pulumi up`.
    struct FakeUp {
        events: Vec<EngineEvent>,
        /// Blocks after the first events until released (or cancelled).
        gate: Option<Arc<Notify>>,
        /// What the update does to the Swarm.
        set_image: Option<(&'static str, &'static str)>,
        fail: Option<PulumiError>,
    }

    /// Pulumi as scripted: config in a map, previews and updates from queues. A call without
    /// a script panics.
    #[derive(Default)]
    struct FakePulumi {
        config: Mutex<HashMap<String, String>>,
        previews: Mutex<VecDeque<PreviewSummary>>,
        ups: Mutex<VecDeque<FakeUp>>,
        calls: Mutex<Vec<String>>,
        swarm: Option<Arc<FakeSwarm>>,
        running: AtomicBool,
        cancel: Notify,
        ups_started: AtomicU64,
        /// `config set` to this value fails (a restore that cannot be written).
        fail_set_to: Mutex<Option<String>>,
        /// The next preview waits for this (a slow `pulumi preview`); counted when it starts.
        preview_gate: Mutex<Option<Arc<Notify>>>,
        previews_started: AtomicU64,
    }

    impl FakePulumi {
        fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
        fn tag(&self) -> Option<String> {
            self.config.lock().unwrap().get("image-tag").cloned()
        }
    }

    #[async_trait]
    impl PulumiApi for FakePulumi {
        async fn config_get(
            &self,
            stack: &StackRef,
            key: &str,
        ) -> Result<Option<String>, PulumiError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("config get {key} --stack {}", stack.stack));
            Ok(self.config.lock().unwrap().get(key).cloned())
        }
        async fn config_set(
            &self,
            stack: &StackRef,
            key: &str,
            value: &str,
        ) -> Result<(), PulumiError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("config set {key} {value} --stack {}", stack.stack));
            if self.fail_set_to.lock().unwrap().as_deref() == Some(value) {
                return Err(PulumiError::Failed {
                    command: "config set",
                    code: Some(255),
                    errors: vec!["error: could not write Pulumi.prod.yaml".into()],
                    detail: "EACCES Pulumi.prod.yaml".into(),
                });
            }
            self.config.lock().unwrap().insert(key.into(), value.into());
            Ok(())
        }
        async fn preview(&self, stack: &StackRef) -> Result<PreviewSummary, PulumiError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("preview --stack {}", stack.stack));
            self.previews_started.fetch_add(1, Ordering::SeqCst);
            let gate = self.preview_gate.lock().unwrap().take();
            if let Some(gate) = gate {
                gate.notified().await;
            }
            Ok(self
                .previews
                .lock()
                .unwrap()
                .pop_front()
                .expect("an unexpected preview"))
        }
        async fn up(&self, stack: &StackRef, sink: EventSink) -> Result<UpOutcome, PulumiError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("up --stack {}", stack.stack));
            let script = self
                .ups
                .lock()
                .unwrap()
                .pop_front()
                .expect("an unexpected up");
            self.running.store(true, Ordering::SeqCst);
            self.ups_started.fetch_add(1, Ordering::SeqCst);
            let mut tracker = UpdateTracker::new();
            let split = script.events.len().min(2);
            for e in &script.events[..split] {
                tracker.observe(e, &Redactor::default());
                sink(e);
            }
            if let Some(gate) = &script.gate {
                tokio::select! {
                    _ = gate.notified() => {}
                    _ = self.cancel.notified() => {
                        self.running.store(false, Ordering::SeqCst);
                        return Err(PulumiError::Cancelled { command: "up", errors: vec![], detail: String::new() });
                    }
                }
            }
            for e in &script.events[split..] {
                tracker.observe(e, &Redactor::default());
                sink(e);
            }
            if let (Some(swarm), Some((name, image))) = (&self.swarm, script.set_image) {
                swarm.set_image(name, image);
            }
            self.running.store(false, Ordering::SeqCst);
            if let Some(e) = script.fail {
                return Err(e);
            }
            Ok(UpOutcome {
                summary: tracker.summary().cloned(),
                steps_done: tracker.steps_done(),
                warnings: tracker.warnings(),
                events: tracker.events_seen(),
                duration: Duration::from_millis(5),
            })
        }
        async fn cancel(&self, _layer: &str) -> Result<bool, PulumiError> {
            if self.running.load(Ordering::SeqCst) {
                self.cancel.notify_one();
                Ok(true)
            } else {
                Ok(false)
            }
        }
    }

    /// Every call panics: for requests that must be refused before anything runs.
    struct NoPulumi;

    #[async_trait]
    impl PulumiApi for NoPulumi {
        async fn config_get(&self, _: &StackRef, key: &str) -> Result<Option<String>, PulumiError> {
            panic!("config get {key} must not run")
        }
        async fn config_set(
            &self,
            _: &StackRef,
            key: &str,
            value: &str,
        ) -> Result<(), PulumiError> {
            panic!("config set {key} {value:?} must not run")
        }
        async fn preview(&self, _: &StackRef) -> Result<PreviewSummary, PulumiError> {
            panic!("preview must not run")
        }
        async fn up(&self, _: &StackRef, _: EventSink) -> Result<UpOutcome, PulumiError> {
            panic!("up must not run")
        }
        async fn cancel(&self, _: &str) -> Result<bool, PulumiError> {
            panic!("cancel must not run")
        }
    }

    struct Fixture {
        deployer: Arc<Deployer>,
        pulumi: Arc<FakePulumi>,
        swarm: Arc<FakeSwarm>,
        store: Arc<dyn Store>,
        _dir: tempfile::TempDir,
    }

    async fn store() -> (Arc<dyn Store>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("ops.db").display());
        (crate::store::connect(&url, None).await.unwrap(), dir)
    }

    async fn fixture(secrets: &[&str]) -> Fixture {
        let cfg = Config::parse("test.toml", CONFIG).unwrap();
        let (store, dir) = store().await;
        let swarm = Arc::new(FakeSwarm::default());
        swarm.services.lock().unwrap().extend([
            svc("prod-web", "repo/web:main", 10),
            svc("traefik-1", "traefik:v2", 3),
        ]);
        let pulumi = Arc::new(FakePulumi {
            swarm: Some(swarm.clone()),
            ..Default::default()
        });
        pulumi
            .config
            .lock()
            .unwrap()
            .insert("image-tag".into(), "main".into());
        let redactor = Arc::new(Redactor::new(secrets.iter().copied()));
        let deployer = Deployer::new(&cfg, pulumi.clone(), store.clone(), swarm.clone(), redactor)
            .with_verify(VerifyPolicy {
                timeout: Duration::from_millis(400),
                poll: Duration::from_millis(20),
            });
        Fixture {
            deployer: Arc::new(deployer),
            pulumi,
            swarm,
            store,
            _dir: dir,
        }
    }

    fn req(tag: Option<&str>, who: &str) -> DeployRequest {
        DeployRequest {
            layer: "platform".into(),
            image_tag: tag.map(str::to_string),
            requester: who.into(),
            reason: "release".into(),
        }
    }

    fn ok_up(op: &str, image: &'static str) -> FakeUp {
        FakeUp {
            events: step_events(op, "web", None),
            gate: None,
            set_image: Some(("prod-web", image)),
            fail: None,
        }
    }

    #[tokio::test]
    async fn deploy_sets_the_tag_previews_applies_verifies_and_records() {
        let f = fixture(&[]).await;
        f.pulumi
            .previews
            .lock()
            .unwrap()
            .push_back(preview(&[("update", "web")]));
        f.pulumi
            .ups
            .lock()
            .unwrap()
            .push_back(ok_up("update", "repo/web:v2"));
        let (progress, rx) = watch_progress("platform");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let progress: ProgressFn = Arc::new(move |p: &DeployProgress| {
            seen2.lock().unwrap().push(p.phase);
            progress(p)
        });
        let out = f
            .deployer
            .deploy(&req(Some("v2"), "alice"), progress)
            .await
            .unwrap();
        let DeployOutcome::Succeeded(report) = out else {
            panic!("{out:?}")
        };
        assert_eq!(
            f.pulumi.calls(),
            [
                "config get image-tag --stack prod",
                "config set image-tag v2 --stack prod",
                "preview --stack prod",
                "up --stack prod"
            ]
        );
        assert_eq!(f.pulumi.tag().as_deref(), Some("v2"));
        assert_eq!(report.record.image_before.as_deref(), Some("main"));
        assert_eq!(report.record.image_after.as_deref(), Some("v2"));
        assert_eq!(report.record.state, DeployState::Succeeded);
        assert_eq!(report.services.len(), 1, "only the layer's services");
        assert_eq!(report.services[0].image, "repo/web:v2");
        assert_eq!(
            *f.swarm.followed.lock().unwrap(),
            [("prod-web".to_string(), 10)]
        );
        let last = rx.borrow().clone();
        assert_eq!(
            (last.phase, last.steps_done, last.steps_planned),
            (DeployPhase::Succeeded, 1, 1)
        );
        let phases = seen.lock().unwrap().clone();
        for want in [
            DeployPhase::Previewing,
            DeployPhase::Applying,
            DeployPhase::Verifying,
        ] {
            assert!(phases.contains(&want), "{phases:?}");
        }
        let history = f.deployer.history("platform", 10).await.unwrap();
        assert_eq!(history.len(), 1);
        let h = &history[0];
        assert_eq!(
            (h.state, h.requester.as_str(), h.approver.as_deref()),
            (DeployState::Succeeded, "alice", None)
        );
        assert_eq!(h.summary["steps_done"], 1);
        assert_eq!(h.summary["preview"]["totals"]["update"], 1);
        assert_eq!(h.summary["resource_changes"]["update"], 1);
        assert!(h.duration_ms().unwrap() >= 0);
        assert!(f.deployer.locks().await.unwrap().is_empty(), "released");
        f.deployer.set_approver(&h.id, "bob").await.unwrap();
        assert_eq!(
            f.deployer.history("platform", 1).await.unwrap()[0]
                .approver
                .as_deref(),
            Some("bob")
        );
    }

    #[tokio::test]
    async fn destructive_previews_need_an_approval_and_only_the_approved_plan_runs() {
        let f = fixture(&[]).await;
        for _ in 0..4 {
            f.pulumi
                .previews
                .lock()
                .unwrap()
                .push_back(preview(&[("replace", "web")]));
        }
        let r = req(Some("v2"), "alice");
        let out = f.deployer.deploy(&r, no_progress()).await.unwrap();
        let DeployOutcome::NeedsApproval(plan) = out else {
            panic!("{out:?}")
        };
        assert_eq!(plan.approval_action.as_deref(), Some(ACTION_DESTRUCTIVE));
        assert!(
            plan.approval_reasons[0].contains("replace web"),
            "{:?}",
            plan.approval_reasons
        );
        assert_eq!(
            f.pulumi.tag().as_deref(),
            Some("main"),
            "the tag is put back"
        );
        assert_eq!(
            f.pulumi.calls().last().unwrap(),
            "config set image-tag main --stack prod"
        );
        let h = f.deployer.history("platform", 5).await.unwrap();
        assert_eq!(h[0].state, DeployState::Cancelled);
        assert!(
            h[0].error.as_deref().unwrap().contains("approval"),
            "{:?}",
            h[0].error
        );
        assert!(f.deployer.locks().await.unwrap().is_empty());

        // The approval engine's digest is the same plan, computed without recording.
        let exec = LayerDeployExecutor::new(f.deployer.clone());
        let digest = exec.digest(&r.to_params()).await.unwrap();
        assert_eq!(digest, plan.digest);
        assert_eq!(
            f.deployer.history("platform", 5).await.unwrap().len(),
            1,
            "plans are not recorded"
        );

        let e = f
            .deployer
            .deploy_approved(&r, "0123456789abcdef", no_progress())
            .await
            .unwrap_err();
        assert!(
            e.to_string().starts_with("void: the preview changed"),
            "{e}"
        );
        assert_eq!(f.pulumi.tag().as_deref(), Some("main"));

        f.pulumi
            .ups
            .lock()
            .unwrap()
            .push_back(ok_up("replace", "repo/web:v2"));
        let done = exec.execute(&r.to_params()).await.unwrap();
        assert!(done.starts_with("deployed `platform` tag `v2`"), "{done}");
        assert_eq!(
            f.deployer.history("platform", 1).await.unwrap()[0].state,
            DeployState::Succeeded
        );
    }

    #[tokio::test]
    async fn layer_1_always_needs_an_approval() {
        let f = fixture(&[]).await;
        f.pulumi
            .previews
            .lock()
            .unwrap()
            .push_back(preview(&[("update", "traefik")]));
        let r = DeployRequest {
            layer: "layer_1".into(),
            image_tag: None,
            requester: "alice".into(),
            reason: String::new(),
        };
        let DeployOutcome::NeedsApproval(plan) =
            f.deployer.deploy(&r, no_progress()).await.unwrap()
        else {
            panic!("layer_1 deploys are approved")
        };
        assert_eq!(plan.approval_action.as_deref(), Some("layer_1_deploy"));
        assert_eq!(
            f.pulumi.calls(),
            ["preview --stack layer_1"],
            "no tag key: no config calls"
        );
    }

    #[tokio::test]
    async fn a_second_deploy_of_a_locked_layer_is_refused_at_once_naming_the_holder() {
        let f = fixture(&[]).await;
        f.pulumi
            .previews
            .lock()
            .unwrap()
            .push_back(preview(&[("update", "web")]));
        let gate = Arc::new(Notify::new());
        f.pulumi.ups.lock().unwrap().push_back(FakeUp {
            events: step_events("update", "web", None),
            gate: Some(gate.clone()),
            set_image: None,
            fail: None,
        });
        let (progress, mut rx) = watch_progress("platform");
        let d = f.deployer.clone();
        let first =
            tokio::spawn(async move { d.deploy(&req(Some("v2"), "alice"), progress).await });
        while f.pulumi.ups_started.load(Ordering::SeqCst) == 0 {
            rx.changed().await.unwrap();
        }
        assert_eq!(
            rx.borrow().current.as_deref(),
            Some("web"),
            "the resource in flight"
        );
        let started = Instant::now();
        let e = f
            .deployer
            .deploy(&req(Some("v3"), "bob"), no_progress())
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        let DeployError::Locked { holder } = &e else {
            panic!("{e}")
        };
        assert_eq!(holder.owner, "alice");
        let text = e.to_string();
        assert!(
            text.contains("alice has been deploying it since") && text.contains("UTC"),
            "{text}"
        );
        assert_eq!(f.deployer.locks().await.unwrap().len(), 1);
        assert!(matches!(
            f.deployer.unlock("platform").await,
            Err(DeployError::UnlockRunning(_))
        ));

        assert!(f.deployer.cancel("platform").await.unwrap());
        let e = first.await.unwrap().unwrap_err();
        assert!(matches!(e, DeployError::Cancelled { .. }), "{e}");
        assert_eq!(
            f.deployer.history("platform", 1).await.unwrap()[0].state,
            DeployState::Cancelled
        );
        assert!(f.deployer.locks().await.unwrap().is_empty());
        assert!(
            !f.deployer.cancel("platform").await.unwrap(),
            "nothing runs now"
        );
    }

    #[tokio::test]
    async fn bad_requests_are_refused_before_anything_runs() {
        let cfg = Config::parse("test.toml", CONFIG).unwrap();
        let (store, _dir) = store().await;
        let swarm = Arc::new(FakeSwarm::default());
        let d = Deployer::new(
            &cfg,
            Arc::new(NoPulumi),
            store.clone(),
            swarm,
            Arc::new(Redactor::default()),
        );
        for tag in [
            "--yes",
            "-x",
            ";rm",
            "$(id)",
            "`id`",
            "a b",
            "v2\n",
            "v2;rm -rf /",
            "repo/web:v2",
            "",
            ".hidden",
        ] {
            let e = d
                .deploy(&req(Some(tag), "alice"), no_progress())
                .await
                .unwrap_err();
            assert!(
                matches!(
                    e,
                    DeployError::InvalidArgument {
                        what: "image tag",
                        ..
                    }
                ),
                "{tag:?}: {e}"
            );
        }
        for layer in [";rm", "--yes", "platfrom", "", "platform\n"] {
            let r = DeployRequest {
                layer: layer.into(),
                ..req(Some("v2"), "alice")
            };
            let e = d.deploy(&r, no_progress()).await.unwrap_err();
            assert!(matches!(e, DeployError::UnknownLayer(_)), "{layer:?}: {e}");
        }
        let e = d
            .deploy(
                &DeployRequest {
                    layer: "platfrom".into(),
                    ..req(None, "a")
                },
                no_progress(),
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("did you mean platform"), "{e}");
        let r = DeployRequest {
            layer: "layer_1".into(),
            ..req(Some("v2"), "alice")
        };
        assert!(matches!(
            d.deploy(&r, no_progress()).await,
            Err(DeployError::NoImageTag { .. })
        ));
        assert!(matches!(
            d.deploy(&req(Some("v2"), ""), no_progress()).await,
            Err(DeployError::InvalidArgument {
                what: "requester",
                ..
            })
        ));
        assert!(store.list_deploys(None, 10).await.unwrap().is_empty());
        assert!(store.list_layer_locks().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_failed_update_reports_redacted_errors_and_the_last_good_tag() {
        let f = fixture(&["hunter2secret"]).await;
        f.pulumi
            .previews
            .lock()
            .unwrap()
            .push_back(preview(&[("update", "web")]));
        f.pulumi
            .ups
            .lock()
            .unwrap()
            .push_back(ok_up("update", "repo/web:v2"));
        f.deployer
            .deploy(&req(Some("v2"), "alice"), no_progress())
            .await
            .unwrap();
        assert_eq!(
            f.deployer
                .rollback_target("platform")
                .await
                .unwrap()
                .as_deref(),
            Some("main"),
            "one deploy: the tag configured before it"
        );

        f.pulumi
            .previews
            .lock()
            .unwrap()
            .push_back(preview(&[("update", "web")]));
        f.pulumi.ups.lock().unwrap().push_back(FakeUp {
            events: step_events(
                "update",
                "web",
                Some("pulling image: password=hunter2secret denied\n"),
            ),
            gate: None,
            set_image: None,
            fail: Some(PulumiError::Failed {
                command: "up",
                code: Some(4),
                errors: vec!["platform-prod: update failed".into()],
                detail: String::new(),
            }),
        });
        let (progress, rx) = watch_progress("platform");
        let e = f
            .deployer
            .deploy(&req(Some("broken"), "alice"), progress)
            .await
            .unwrap_err();
        let DeployError::UpdateFailed {
            errors,
            rollback_target,
            ..
        } = &e
        else {
            panic!("{e}")
        };
        assert_eq!(rollback_target.as_deref(), Some("v2"));
        let all = errors.join("\n");
        assert!(
            all.contains("web: pulling image: password=[REDACTED] denied"),
            "{all}"
        );
        assert!(
            all.contains("update failed") && !all.contains("hunter2secret"),
            "{all}"
        );
        assert_eq!(rx.borrow().phase, DeployPhase::Failed);
        assert!(!format!("{:?}", rx.borrow()).contains("hunter2secret"));
        let h = &f.deployer.history("platform", 5).await.unwrap()[0];
        assert_eq!(
            (h.state, h.image_before.as_deref(), h.image_after.as_deref()),
            (DeployState::Failed, Some("v2"), Some("broken"))
        );
        assert!(h.error.as_deref().unwrap().contains("[REDACTED]"));
        let rb = f
            .deployer
            .rollback_request("platform", "bob", "broken is broken")
            .await
            .unwrap();
        assert_eq!(
            (rb.image_tag.as_deref(), rb.requester.as_str()),
            (Some("v2"), "bob")
        );
        assert_eq!(
            f.deployer
                .rollback_target("platform")
                .await
                .unwrap()
                .as_deref(),
            Some("v2")
        );
        assert!(f.deployer.locks().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn verification_fails_when_the_services_keep_the_old_tag() {
        let f = fixture(&[]).await;
        f.pulumi
            .previews
            .lock()
            .unwrap()
            .push_back(preview(&[("update", "web")]));
        f.pulumi.ups.lock().unwrap().push_back(FakeUp {
            set_image: None,
            ..ok_up("update", "unused")
        });
        let started = Instant::now();
        let e = f
            .deployer
            .deploy(&req(Some("v2"), "alice"), no_progress())
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(matches!(e, DeployError::VerifyFailed { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("`prod-web` runs repo/web:main instead of tag `v2`"),
            "{e}"
        );
        assert_eq!(
            f.deployer.history("platform", 1).await.unwrap()[0].state,
            DeployState::Failed
        );
    }

    #[tokio::test]
    async fn a_platform_service_on_a_third_party_image_does_not_fail_the_deploy() {
        let f = fixture(&[]).await;
        // Chatwoot runs the vendor's image, not the platform's tag, and is down right now;
        // the deploy does not touch it.
        let mut chatwoot = svc("prod-chatwoot", "chatwoot/chatwoot:v3.1", 7);
        chatwoot.running_tasks = Some(0);
        f.swarm.services.lock().unwrap().push(chatwoot);
        f.pulumi
            .previews
            .lock()
            .unwrap()
            .push_back(preview(&[("update", "web")]));
        f.pulumi
            .ups
            .lock()
            .unwrap()
            .push_back(ok_up("update", "repo/web:v2"));
        let out = f
            .deployer
            .deploy(&req(Some("v2"), "alice"), no_progress())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let DeployOutcome::Succeeded(report) = out else {
            panic!("{out:?}")
        };
        let names: Vec<&str> = report.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["prod-web"], "only what runs the layer's image");
    }

    #[tokio::test]
    async fn a_service_the_update_touched_must_converge_whatever_its_image() {
        let f = fixture(&[]).await;
        f.swarm
            .services
            .lock()
            .unwrap()
            .push(svc("prod-chatwoot", "chatwoot/chatwoot:v3.1", 7));
        f.pulumi
            .previews
            .lock()
            .unwrap()
            .push_back(preview(&[("update", "chatwoot")]));
        f.pulumi.ups.lock().unwrap().push_back(FakeUp {
            set_image: Some(("prod-chatwoot", "chatwoot/chatwoot:v3.2")),
            ..ok_up("update", "unused")
        });
        // The update leaves Chatwoot without a running task.
        f.swarm
            .services
            .lock()
            .unwrap()
            .iter_mut()
            .find(|s| s.name == "prod-chatwoot")
            .unwrap()
            .running_tasks = Some(0);
        let e = f
            .deployer
            .deploy(&req(None, "alice"), no_progress())
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("`prod-chatwoot` runs 0/1 tasks"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn recovery_marks_running_deploys_interrupted_and_releases_their_locks() {
        let f = fixture(&[]).await;
        let now = now_ms();
        let rec = DeployRecord {
            id: "d-crashed".into(),
            layer: "platform".into(),
            requester: "alice".into(),
            approver: None,
            reason: String::new(),
            image_before: Some("main".into()),
            image_after: Some("v2".into()),
            state: DeployState::Running,
            started_at_ms: now - 5_000,
            finished_at_ms: None,
            summary: serde_json::json!({}),
            error: None,
        };
        f.store.create_deploy(&rec).await.unwrap();
        let lock = |layer: &str, id: &str| LayerLock {
            layer: layer.into(),
            owner: "alice".into(),
            reason: String::new(),
            started_at_ms: now - 5_000,
            expires_at_ms: now + 3_600_000,
            deploy_id: Some(id.into()),
            // The process that held them crashed: no heartbeat since.
            process: "host:1:dead".into(),
            heartbeat_at_ms: now - crate::store::LOCK_STALE_MS - 1,
        };
        f.store
            .take_layer_lock(&lock("platform", "d-crashed"))
            .await
            .unwrap()
            .unwrap();
        f.store
            .take_layer_lock(&lock("layer_1", "plan-x"))
            .await
            .unwrap()
            .unwrap();
        let e = f
            .deployer
            .deploy(&req(Some("v2"), "bob"), no_progress())
            .await
            .unwrap_err();
        assert!(matches!(e, DeployError::Locked { .. }), "{e}");

        let back = f.deployer.recover_interrupted().await.unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(
            (back[0].id.as_str(), back[0].state),
            ("d-crashed", DeployState::Interrupted)
        );
        assert!(
            f.deployer.locks().await.unwrap().is_empty(),
            "both released"
        );
        assert!(
            f.deployer.recover_interrupted().await.unwrap().is_empty(),
            "idempotent"
        );
        let h = f.deployer.history("platform", 1).await.unwrap();
        assert!(h[0].error.as_deref().unwrap().starts_with("interrupted"));
    }

    #[tokio::test]
    async fn an_expired_lock_is_taken_over_and_unlock_releases_a_lock() {
        let f = fixture(&[]).await;
        let now = now_ms();
        let stale = LayerLock {
            layer: "platform".into(),
            owner: "carol".into(),
            reason: String::new(),
            started_at_ms: now - 10_000,
            expires_at_ms: now - 1,
            deploy_id: Some("d-old".into()),
            process: "host:1:old".into(),
            heartbeat_at_ms: now - 10_000,
        };
        f.store.take_layer_lock(&stale).await.unwrap().unwrap();
        assert!(stale.is_expired(now));
        f.pulumi
            .previews
            .lock()
            .unwrap()
            .push_back(preview(&[("update", "web")]));
        f.pulumi
            .ups
            .lock()
            .unwrap()
            .push_back(ok_up("update", "repo/web:v2"));
        f.deployer
            .deploy(&req(Some("v2"), "alice"), no_progress())
            .await
            .unwrap();

        let held = LayerLock {
            expires_at_ms: now + 60_000,
            ..stale
        };
        f.store.take_layer_lock(&held).await.unwrap().unwrap();
        assert!(matches!(
            f.deployer.rollback_request("layer_1", "bob", "").await,
            Err(DeployError::NoRollbackTarget(_))
        ));
        let released = f.deployer.unlock("platform").await.unwrap().unwrap();
        assert_eq!(released.owner, "carol");
        assert!(f.deployer.unlock("platform").await.unwrap().is_none());
    }

    fn record(id: &str, state: DeployState, tag: &str, applied: bool) -> DeployRecord {
        DeployRecord {
            id: id.into(),
            layer: "platform".into(),
            requester: "a".into(),
            approver: None,
            reason: String::new(),
            image_before: tag.strip_prefix("after-").map(|_| "before".to_string()),
            image_after: Some(tag.into()),
            state,
            started_at_ms: 0,
            finished_at_ms: None,
            summary: serde_json::json!({ "applied": applied }),
            error: None,
        }
    }

    #[test]
    fn rollback_target_is_the_last_good_tag_before_the_current_one() {
        use DeployState::*;
        // Newest first.
        type History<'a> = &'a [(DeployState, &'a str, bool)];
        let cases: &[(History, Option<&str>)] = &[
            (&[], None),
            (&[(Succeeded, "main", true)], None),
            (
                &[(Succeeded, "v2", true), (Succeeded, "main", true)],
                Some("main"),
            ),
            (
                &[
                    (Failed, "broken", true),
                    (Succeeded, "v2", true),
                    (Succeeded, "main", true),
                ],
                Some("v2"),
            ),
            // An approval request that never ran does not change what runs.
            (
                &[
                    (Cancelled, "v3", false),
                    (Succeeded, "v2", true),
                    (Succeeded, "main", true),
                ],
                Some("main"),
            ),
            (
                &[
                    (Interrupted, "v3", true),
                    (Failed, "v2", true),
                    (Succeeded, "main", true),
                ],
                Some("main"),
            ),
            (
                &[
                    (Succeeded, "v2", true),
                    (Succeeded, "v2", true),
                    (Succeeded, "main", true),
                ],
                Some("main"),
            ),
            // Without an earlier good deploy: the tag configured before the current one.
            (&[(Failed, "after-x", true)], Some("before")),
            (&[(Succeeded, "after-x", true)], Some("before")),
        ];
        for (history, want) in cases {
            let recs: Vec<DeployRecord> = history
                .iter()
                .enumerate()
                .map(|(i, (s, t, a))| record(&i.to_string(), *s, t, *a))
                .collect();
            assert_eq!(rollback_from(&recs).as_deref(), *want, "{history:?}");
        }
    }

    #[test]
    fn image_tags_and_service_problems() {
        assert_eq!(image_tag("registry:5000/org/web:v2@sha256:abc"), Some("v2"));
        assert_eq!(image_tag("web"), None);
        let mut s = svc("prod-web", "repo/web:v2", 1);
        assert_eq!(service_problem(&s, Some("v2")), None);
        s.running_tasks = Some(0);
        assert_eq!(
            service_problem(&s, None).unwrap(),
            "`prod-web` runs 0/1 tasks"
        );
        s.update_state = Some("updating".into());
        assert!(service_problem(&s, None)
            .unwrap()
            .contains("still updating"));
        assert!(matches!(EventKind::Cancel, EventKind::Cancel));
    }

    mod issue12;
}
