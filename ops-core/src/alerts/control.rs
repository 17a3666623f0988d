//! The live handle on the alert watcher, for commands: what `/status` shows (open alerts, the
//! last probe results) and silences from `/silence` or an alert message's button.
//!
//! Commands hold an `Arc<dyn AlertControl>` (tests swap in a fake). The bot's implementation
//! is [`AlertHub`]: created before the gateway starts, handed to the [`super::Watcher`]
//! (through [`super::WatcherDeps::hub`]), which publishes its state after every round and
//! applies the silences the hub queues (so the engine stays owned by one task). When no
//! watcher runs, reads are empty and silences fail with [`ControlError::NotRunning`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use super::config::Severity;
use super::engine::AlertState;

/// How long a silence request waits for the watcher to apply it.
pub const APPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Notifications remembered for the silence button (id -> keys), newest kept.
pub const REMEMBERED_NOTIFICATIONS: usize = 1000;
/// The longest silence accepted.
pub const MAX_SILENCE: Duration = Duration::from_secs(7 * 24 * 3600);

/// The last result of one configured probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    /// The probe's `name` from config.
    pub name: String,
    /// Its kind as written in config (`https`, `tls`, `vault_seal`, ...).
    pub kind: String,
    pub layer: Option<String>,
    pub ok: bool,
    pub severity: Severity,
    /// Safe, human text ("HTTP 200", "certificate expires in 3 days").
    pub summary: String,
    pub at_ms: i64,
}

/// Why a control request failed. `Display` is safe to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("the alert watcher is not running (no [alerts] configured, or it failed to start)")]
    NotRunning,
    #[error("the alert watcher did not answer in time; the silence may not be applied")]
    Timeout,
    #[error("the alert store failed; the silence is not saved")]
    Store { detail: String },
    #[error("{0}")]
    Invalid(String),
}

/// What commands may ask of the alert watcher.
#[async_trait]
pub trait AlertControl: Send + Sync {
    /// Alerts pending or firing (and their silence state), as of the watcher's last round.
    fn open_alerts(&self) -> Vec<AlertState>;
    /// The probes' last results, in config order.
    fn probe_results(&self) -> Vec<ProbeResult>;
    /// Active silences: (pattern, until unix ms).
    fn silences(&self) -> Vec<(String, i64)>;
    /// The keys a delivered notification listed (for its silence button); `None` when unknown.
    fn notification_keys(&self, notification_id: u64) -> Option<Vec<String>>;
    /// Silences keys matching `pattern` (glob) until `until_ms`; persisted before it returns.
    async fn silence(&self, pattern: &str, until_ms: i64) -> Result<(), ControlError>;
}

/// A silence queued for the watcher, answered once persisted.
#[derive(Debug)]
pub struct SilenceRequest {
    pub pattern: String,
    pub until_ms: i64,
    pub reply: oneshot::Sender<Result<(), ControlError>>,
}

#[derive(Default)]
struct Published {
    running: bool,
    open: Vec<AlertState>,
    probes: Vec<ProbeResult>,
    silences: Vec<(String, i64)>,
    notifications: VecDeque<(u64, Vec<String>)>,
}

/// The bot's [`AlertControl`]: state published by the watcher, silences queued to it.
pub struct AlertHub {
    published: Mutex<Published>,
    tx: mpsc::Sender<SilenceRequest>,
    rx: Mutex<Option<mpsc::Receiver<SilenceRequest>>>,
}

impl AlertHub {
    pub fn new() -> Arc<AlertHub> {
        let (tx, rx) = mpsc::channel(64);
        Arc::new(AlertHub {
            published: Mutex::new(Published::default()),
            tx,
            rx: Mutex::new(Some(rx)),
        })
    }

    /// The watcher takes the request queue once (a second watcher gets `None`).
    pub fn take_requests(&self) -> Option<mpsc::Receiver<SilenceRequest>> {
        self.rx.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn with<R>(&self, f: impl FnOnce(&mut Published) -> R) -> R {
        f(&mut self.published.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Marks the watcher running (or stopped: reads become empty, silences fail).
    pub fn set_running(&self, running: bool) {
        self.with(|p| {
            p.running = running;
            if !running {
                p.open.clear();
                p.probes.clear();
            }
        });
    }

    /// Publishes the watcher's state after a round.
    pub fn publish(
        &self,
        open: Vec<AlertState>,
        probes: Option<Vec<ProbeResult>>,
        silences: Vec<(String, i64)>,
    ) {
        self.with(|p| {
            p.open = open;
            if let Some(probes) = probes {
                p.probes = probes;
            }
            p.silences = silences;
        });
    }

    /// Remembers what a delivered notification listed.
    pub fn remember_notification(&self, id: u64, keys: Vec<String>) {
        self.with(|p| {
            p.notifications.push_back((id, keys));
            while p.notifications.len() > REMEMBERED_NOTIFICATIONS {
                p.notifications.pop_front();
            }
        });
    }
}

#[async_trait]
impl AlertControl for AlertHub {
    fn open_alerts(&self) -> Vec<AlertState> {
        self.with(|p| p.open.clone())
    }
    fn probe_results(&self) -> Vec<ProbeResult> {
        self.with(|p| p.probes.clone())
    }
    fn silences(&self) -> Vec<(String, i64)> {
        self.with(|p| p.silences.clone())
    }
    fn notification_keys(&self, notification_id: u64) -> Option<Vec<String>> {
        self.with(|p| {
            p.notifications
                .iter()
                .find(|(id, _)| *id == notification_id)
                .map(|(_, keys)| keys.clone())
        })
    }
    async fn silence(&self, pattern: &str, until_ms: i64) -> Result<(), ControlError> {
        if pattern.trim().is_empty() {
            return Err(ControlError::Invalid("the alert key is empty".into()));
        }
        if !self.with(|p| p.running) {
            return Err(ControlError::NotRunning);
        }
        let (reply, answer) = oneshot::channel();
        let req = SilenceRequest {
            pattern: pattern.to_string(),
            until_ms,
            reply,
        };
        if self.tx.try_send(req).is_err() {
            return Err(ControlError::Timeout);
        }
        match tokio::time::timeout(APPLY_TIMEOUT, answer).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ControlError::NotRunning),
            Err(_) => Err(ControlError::Timeout),
        }
    }
}
