//! Alerts: watch the Swarm (Docker events plus a snapshot reconciler) and active probes,
//! decide with a pure [`Engine`] what is firing, persist that state ([`AlertStore`]), and
//! hand notifications to an [`AlertSink`] (the bot posts them to Discord).
//!
//! The [`Watcher`] (`watcher.rs`) ties it together. Every `probe_interval_secs` (a *round*) it drains the
//! Docker events, takes a snapshot, runs the probes, feeds the engine with the clock's `now`,
//! persists the state (notifications stay in the persisted outbox until delivered), and
//! delivers. Between rounds it waits on four things at once (`tokio::select!`):
//!
//! - Docker events (the *fast path*): each event (with whatever else is already queued) is
//!   interpreted and evaluated at once; decisive ones (task exit != 0, OOM, restart loop,
//!   update paused / rolled back) fire after `event_failure_threshold` (default 1), so a
//!   crash is announced after the group wait (`group_wait_ms`, default 300 ms) instead of
//!   after threshold rounds;
//! - a timer to the next due moment: the end of the group wait (the engine's persisted group
//!   deadline) or the moment the channel governor allows the next message;
//! - silence requests from the [`AlertHub`] (applied through the engine, persisted, answered);
//! - shutdown.
//!
//! Delivery is rate limited per channel (governor: one message per 2 s); what arrives for a
//! channel inside that window is coalesced into its next message. After every evaluation the
//! watcher publishes open alerts, probe results and silences to the hub, and it remembers
//! which keys each delivered notification listed (for the silence button).
//! Time comes from a [`Clock`], so tests drive it by hand ([`ManualClock`]); the engine has no
//! clock and no timers of its own: all timing is here.

/// The `[alerts]` configuration (it lives with the rest of the configuration).
pub use crate::config::alerts as config;
pub mod control;
pub mod engine;
pub mod probes;
pub mod sources;
pub mod store;
mod watcher;

use std::time::Duration;

use async_trait::async_trait;

pub use crate::base::{Clock, ManualClock, SystemClock};
pub use config::{AlertsConfig, PgTls, ProbeConfig, ProbeKind, RoutingConfig, Severity};
pub use control::{AlertControl, AlertHub, ControlError, ProbeResult, SilenceRequest};
pub use engine::{
    AlertItem, AlertState, Engine, EngineConfig, EngineState, Notification, NotificationKind,
    Observation, Phase,
};
pub use sources::{LayerResolver, ServiceFilter};
pub use store::{AlertStore, AlertStoreError, MemoryAlertStore};
pub use watcher::{Watcher, WatcherDeps};

/// Minimum time between two messages to one channel.
pub const CHANNEL_PERIOD: Duration = Duration::from_secs(2);
/// Capacity of the Docker event channel.
pub const EVENT_CAPACITY: usize = 1024;
/// How far back a restarted watcher backfills Docker events.
pub const MAX_BACKFILL_SECS: i64 = 600;
/// After a failed delivery, the next attempt waits this long.
pub const DELIVERY_RETRY: Duration = Duration::from_secs(1);

/// Why a delivery failed. `Display` is safe; `detail` is for the log.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the alert message could not be delivered")]
pub struct SinkError {
    pub detail: String,
}

/// Where notifications go. The bot implements it by posting to Discord.
#[async_trait]
pub trait AlertSink: Send + Sync {
    /// One message to `channel` listing one or more notifications (several when they were
    /// coalesced by the rate limit). An error keeps them queued for the next attempt.
    async fn deliver(&self, channel: u64, notifications: &[Notification]) -> Result<(), SinkError>;
}

/// Why the watcher could not proceed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AlertError {
    #[error("invalid alerts configuration: {key}: {message}")]
    Config { key: String, message: String },
    #[error(transparent)]
    Store(#[from] AlertStoreError),
}
