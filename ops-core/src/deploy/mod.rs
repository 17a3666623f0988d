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
//!    is older than [`LOCK_STALE_MS`]. A lock whose process is alive (a CLI
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
use crate::base::OpsError;
use crate::base::StoreError;
use crate::base::{new_error_id, now_ms};
use crate::checkout::{CheckoutError, CheckoutState};
use crate::config::{Config, LayerConfig};
use crate::layers::LayerMap;
use crate::pulumi::events::UpdateTracker;
use crate::pulumi::{
    EngineEvent, EventSink, PreviewSummary, PulumiApi, PulumiError, StackRef, UpOutcome,
};
use crate::redact::Redactor;
use crate::swarm::{
    display_image, ImageTarget, RolloutOutcome, RolloutPoll, ServiceInfo, SwarmApi, SwarmError,
};

mod liveness;
use liveness::{proc_start_time, process_name, Heartbeat, ProcessId};

pub use records::{
    DeployRecord, DeployState, DeployStore, LayerLock, LOCK_HEARTBEAT_MS, LOCK_STALE_MS,
};

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

pub use crate::progress::{no_progress, watch_progress, DeployPhase, DeployProgress, ProgressFn};

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
    store: Arc<dyn DeployStore>,
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
    format!(
        "d{}-{}",
        chrono::Utc::now().format("%Y%m%d%H%M%S"),
        crate::base::random_hex(8)
    )
}

/// An argument as it may be shown back: quoted and escaped, at most 40 characters.
fn shown(s: &str) -> String {
    crate::base::shown(s, crate::base::Shown::Quoted, 40)
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

mod executor;
mod flow;
mod history;
mod locks;
mod records;
mod steps;
pub use executor::{LayerDeployExecutor, UnlockExecutor};

#[cfg(test)]
mod tests;
