//! The engine's data: observations in, per-key [`AlertState`] and the engine-wide
//! [`EngineMeta`] (persisted together as [`EngineState`]), notifications out, and the
//! [`EngineConfig`] taken from `[alerts]`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::alerts::{AlertsConfig, RoutingConfig, Severity};

/// Settled keys without any observation for this long are forgotten.
pub const PRUNE_AFTER_MS: i64 = 24 * 3_600_000;

/// One check result for an alert key (from a probe, a Docker event or the reconciler).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub key: String,
    pub layer: Option<String>,
    pub severity: Severity,
    pub failing: bool,
    /// Safe, human text ("exit code 1", "certificate expires in 3 days").
    pub summary: String,
    /// A failure by itself (a decisive Docker event): fires after `event_failure_threshold`.
    #[serde(default)]
    pub decisive: bool,
}

impl Observation {
    /// Marks the observation decisive (see the module documentation).
    pub fn decisive(mut self) -> Observation {
        self.decisive = true;
        self
    }

    pub fn failing(
        key: impl Into<String>,
        layer: Option<&str>,
        severity: Severity,
        summary: impl Into<String>,
    ) -> Observation {
        Observation {
            key: key.into(),
            layer: layer.map(str::to_string),
            severity,
            failing: true,
            summary: summary.into(),
            decisive: false,
        }
    }
    pub fn ok(
        key: impl Into<String>,
        layer: Option<&str>,
        summary: impl Into<String>,
    ) -> Observation {
        Observation {
            key: key.into(),
            layer: layer.map(str::to_string),
            severity: Severity::Info,
            failing: false,
            summary: summary.into(),
            decisive: false,
        }
    }
}

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Ok,
    Pending,
    Firing,
    Resolved,
}

/// The persisted state of one alert key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertState {
    pub key: String,
    pub phase: Phase,
    pub layer: Option<String>,
    pub severity: Severity,
    pub summary: String,
    pub consecutive_failures: u32,
    pub consecutive_ok: u32,
    pub first_failure_ms: Option<i64>,
    pub firing_since_ms: Option<i64>,
    pub resolved_at_ms: Option<i64>,
    /// The firing notification was sent (this alert was announced).
    pub notified: bool,
    pub last_notified_ms: Option<i64>,
    /// The root-layer alert this one is held under.
    pub held_under: Option<String>,
    pub updated_ms: i64,
}

/// A silence: keys matching `pattern` (glob) are not announced until `until_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    pub pattern: String,
    pub until_ms: i64,
}

/// What a notification says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    Firing,
    Reminder,
    Resolved,
    Heartbeat,
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Firing => "firing",
            NotificationKind::Reminder => "reminder",
            NotificationKind::Resolved => "resolved",
            NotificationKind::Heartbeat => "heartbeat",
        }
    }
}

/// One alert as a notification lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertItem {
    pub key: String,
    pub layer: Option<String>,
    pub severity: Severity,
    pub summary: String,
    pub since_ms: Option<i64>,
    /// For held items: the root alert this one is probably caused by.
    pub caused_by: Option<String>,
}

/// One message for one channel; the frontend renders it (colour from `severity`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub id: u64,
    pub kind: NotificationKind,
    pub channel: u64,
    /// The highest severity listed.
    pub severity: Severity,
    pub at_ms: i64,
    pub alerts: Vec<AlertItem>,
    /// Alerts of other layers held under a root-layer alert.
    pub held: Vec<AlertItem>,
}

impl Notification {
    /// Every key listed (alerts then held).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.alerts.iter().chain(&self.held).map(|a| a.key.as_str())
    }

    pub fn title(&self) -> String {
        let n = self.alerts.len() + self.held.len();
        match self.kind {
            NotificationKind::Firing if self.alerts.is_empty() => {
                format!("{n} more alert(s), probably caused by a firing layer alert")
            }
            NotificationKind::Firing => format!("{n} alert(s) firing"),
            NotificationKind::Reminder => format!("still firing: {n} alert(s)"),
            NotificationKind::Resolved => format!("resolved: {n} alert(s)"),
            NotificationKind::Heartbeat => format!("heartbeat: {n} alert(s) firing"),
        }
    }

    /// A plain-text rendering (the Discord sink may build an embed instead).
    pub fn render_text(&self) -> String {
        let mut out = format!("**{}** ({})", self.title(), self.severity.as_str());
        for a in &self.alerts {
            out.push_str(&format!(
                "\n- [{}] `{}`{}: {}",
                a.severity.as_str(),
                a.key,
                a.layer
                    .as_deref()
                    .map(|l| format!(" ({l})"))
                    .unwrap_or_default(),
                a.summary
            ));
        }
        for a in &self.held {
            out.push_str(&format!(
                "\n  - `{}`: {} (probably caused by `{}`)",
                a.key,
                a.summary,
                a.caused_by.as_deref().unwrap_or("?")
            ));
        }
        out
    }
}

/// Engine-wide persisted state besides the per-key rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineMeta {
    pub silences: Vec<Silence>,
    /// Notifications not yet delivered.
    pub outbox: Vec<Notification>,
    pub next_id: u64,
    pub group_deadline_ms: Option<i64>,
    pub last_heartbeat_ms: Option<i64>,
    /// Unix seconds of the last Docker event seen (to backfill after a restart).
    pub event_cursor_secs: Option<i64>,
}

/// Everything the engine knows; serialisable for the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineState {
    pub alerts: BTreeMap<String, AlertState>,
    pub meta: EngineMeta,
}

/// The engine's settings (times in milliseconds).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub failure_threshold: u32,
    /// The threshold for decisive observations (no `min_duration` for them).
    pub event_failure_threshold: u32,
    pub min_duration_ms: i64,
    pub resolve_threshold: u32,
    /// 0: no reminders.
    pub reminder_ms: i64,
    /// 0: no heartbeat.
    pub heartbeat_ms: i64,
    pub group_wait_ms: i64,
    pub root_layers: Vec<String>,
    pub routing: RoutingConfig,
}

impl From<&AlertsConfig> for EngineConfig {
    fn from(c: &AlertsConfig) -> EngineConfig {
        let ms = |secs: u64| i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        EngineConfig {
            failure_threshold: c.failure_threshold.max(1),
            event_failure_threshold: c.event_failure_threshold.max(1),
            min_duration_ms: ms(c.min_duration_secs),
            resolve_threshold: c.resolve_threshold.max(1),
            reminder_ms: ms(c.reminder_minutes.saturating_mul(60)),
            heartbeat_ms: ms(c.heartbeat_minutes.saturating_mul(60)),
            group_wait_ms: i64::try_from(c.group_wait()).unwrap_or(i64::MAX),
            root_layers: c.root_layers.clone(),
            routing: c.routing.clone(),
        }
    }
}
