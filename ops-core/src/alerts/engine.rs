//! The alert engine: pure state machines, no I/O and no clock of its own (every call is
//! given `now` in unix milliseconds), so it is tested with plain data.
//!
//! Per alert key: `ok -> pending -> firing -> resolved`. An alert fires after
//! `failure_threshold` consecutive failing observations AND at least `min_duration` of
//! failing (set one of them to its minimum to use only the other); it resolves after
//! `resolve_threshold` consecutive good observations, so a flapping check neither fires nor
//! resolves on one sample. A key without an observation in a tick keeps its state.
//! A *decisive* failing observation (from a Docker event that is a failure by itself: a task
//! exit with a non-zero code, an OOM kill, a restart loop, an update paused or rolled back)
//! fires after `event_failure_threshold` consecutive failures (default 1: at once) and does
//! not wait for `min_duration`.
//!
//! Notifications: new firing alerts wait `group_wait` so a burst becomes ONE notification
//! per channel; while an alert of a root layer (`layer_1`: Traefik, Vault) fires, new alerts
//! of the other layers are held under it ("probably caused by ..."). Reminders repeat while
//! an alert fires; a resolved notification is sent once, only for alerts that were announced.
//! Silences (key glob, until) suppress announcements and reminders. Every notification also
//! goes to the outbox (part of the persisted [`EngineState`]) until [`Engine::ack`], so a
//! restart neither loses a resolved message nor announces a firing alert twice.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::config::{AlertsConfig, RoutingConfig, Severity};
use crate::base::glob_match;

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

/// The alert engine.
#[derive(Debug, Clone)]
pub struct Engine {
    cfg: EngineConfig,
    state: EngineState,
    dirty: BTreeSet<String>,
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Engine {
        Engine::restore(cfg, EngineState::default())
    }

    /// Continues from a persisted state.
    pub fn restore(cfg: EngineConfig, state: EngineState) -> Engine {
        Engine {
            cfg,
            state,
            dirty: BTreeSet::new(),
        }
    }

    pub fn state(&self) -> &EngineState {
        &self.state
    }

    pub fn snapshot(&self) -> EngineState {
        self.state.clone()
    }

    /// Keys changed since the last call (for per-key upserts).
    pub fn take_dirty(&mut self) -> Vec<String> {
        std::mem::take(&mut self.dirty).into_iter().collect()
    }

    pub fn outbox(&self) -> &[Notification] {
        &self.state.meta.outbox
    }

    /// Removes delivered notifications from the outbox.
    pub fn ack(&mut self, ids: &[u64]) {
        self.state.meta.outbox.retain(|n| !ids.contains(&n.id));
    }

    pub fn set_event_cursor(&mut self, secs: i64) {
        self.state.meta.event_cursor_secs = Some(secs);
    }

    /// Silences keys matching `pattern` until `until_ms`.
    pub fn silence(&mut self, pattern: &str, until_ms: i64) {
        self.state.meta.silences.retain(|s| s.pattern != pattern);
        self.state.meta.silences.push(Silence {
            pattern: pattern.to_string(),
            until_ms,
        });
    }

    /// Alerts currently firing.
    pub fn firing(&self) -> impl Iterator<Item = &AlertState> {
        self.state
            .alerts
            .values()
            .filter(|a| a.phase == Phase::Firing)
    }

    fn silenced(&self, key: &str) -> bool {
        self.state
            .meta
            .silences
            .iter()
            .any(|s| glob_match(&s.pattern, key))
    }

    fn is_root(&self, a: &AlertState) -> bool {
        a.layer
            .as_deref()
            .is_some_and(|l| self.cfg.root_layers.iter().any(|r| r == l))
    }

    fn channel(&self, a: &AlertState) -> u64 {
        self.cfg.routing.channel_for(a.layer.as_deref(), a.severity)
    }

    fn item(a: &AlertState) -> AlertItem {
        AlertItem {
            key: a.key.clone(),
            layer: a.layer.clone(),
            severity: a.severity,
            summary: a.summary.clone(),
            since_ms: a.firing_since_ms.or(a.first_failure_ms),
            caused_by: a.held_under.clone(),
        }
    }

    /// Feeds one round of observations; returns the notifications to send (also queued in
    /// the outbox until acked).
    pub fn tick(&mut self, now: i64, observations: Vec<Observation>) -> Vec<Notification> {
        self.state.meta.silences.retain(|s| s.until_ms > now);
        let mut merged: BTreeMap<String, Observation> = BTreeMap::new();
        for o in observations {
            match merged.get_mut(&o.key) {
                None => {
                    merged.insert(o.key.clone(), o);
                }
                Some(m) => {
                    // Failing beats ok, then severity; of two equal ones the later wins (its
                    // summary is newer: "restart loop: 10 task exits" after "... 9 ...").
                    let replace = (o.failing && !m.failing)
                        || (o.failing == m.failing && o.severity >= m.severity);
                    let decisive = (o.failing && o.decisive) || (m.failing && m.decisive);
                    if replace {
                        let layer = o.layer.clone().or(m.layer.take());
                        *m = o;
                        m.layer = layer;
                    } else if m.layer.is_none() {
                        m.layer = o.layer;
                    }
                    m.decisive = decisive;
                }
            }
        }
        let mut resolved: Vec<String> = Vec::new();
        for (key, o) in merged {
            if let Some(r) = self.observe(now, &key, o) {
                resolved.push(r);
            }
        }
        // Forget settled keys nobody has reported on for a day (removed services, probes).
        let stale: Vec<String> = self
            .state
            .alerts
            .values()
            .filter(|a| {
                matches!(a.phase, Phase::Ok | Phase::Resolved)
                    && !a.notified
                    && now - a.updated_ms > PRUNE_AFTER_MS
            })
            .map(|a| a.key.clone())
            .collect();
        for key in stale {
            self.state.alerts.remove(&key);
            self.dirty.insert(key);
        }
        let mut out = Vec::new();
        self.resolutions(now, &resolved, &mut out);
        self.announcements(now, &mut out);
        self.reminders(now, &mut out);
        self.heartbeat(now, &mut out);
        for n in &mut out {
            n.id = self.state.meta.next_id;
            self.state.meta.next_id += 1;
            n.at_ms = now;
            n.severity = n
                .alerts
                .iter()
                .chain(&n.held)
                .map(|a| a.severity)
                .max()
                .unwrap_or(Severity::Info);
        }
        self.state.meta.outbox.extend(out.iter().cloned());
        out
    }

    /// One key's state machine; returns the key when it resolved now.
    fn observe(&mut self, now: i64, key: &str, o: Observation) -> Option<String> {
        let cfg = &self.cfg;
        if !o.failing && !self.state.alerts.contains_key(key) {
            return None;
        }
        let a = self
            .state
            .alerts
            .entry(key.to_string())
            .or_insert_with(|| AlertState {
                key: key.to_string(),
                phase: Phase::Ok,
                layer: o.layer.clone(),
                severity: o.severity,
                summary: o.summary.clone(),
                consecutive_failures: 0,
                consecutive_ok: 0,
                first_failure_ms: None,
                firing_since_ms: None,
                resolved_at_ms: None,
                notified: false,
                last_notified_ms: None,
                held_under: None,
                updated_ms: now,
            });
        self.dirty.insert(key.to_string());
        a.updated_ms = now;
        if o.layer.is_some() {
            a.layer = o.layer;
        }
        if o.failing {
            a.severity = o.severity;
            a.summary = o.summary;
            a.consecutive_failures = a.consecutive_failures.saturating_add(1);
            a.consecutive_ok = 0;
            let first = *a.first_failure_ms.get_or_insert(now);
            if matches!(a.phase, Phase::Ok | Phase::Resolved) {
                a.phase = Phase::Pending;
                a.resolved_at_ms = None;
            }
            let fires = if o.decisive {
                a.consecutive_failures >= cfg.event_failure_threshold
            } else {
                a.consecutive_failures >= cfg.failure_threshold
                    && now - first >= cfg.min_duration_ms
            };
            if a.phase == Phase::Pending && fires {
                a.phase = Phase::Firing;
                a.firing_since_ms = Some(now);
            }
            None
        } else {
            a.consecutive_ok = a.consecutive_ok.saturating_add(1);
            a.consecutive_failures = 0;
            match a.phase {
                Phase::Pending => {
                    a.phase = Phase::Ok;
                    a.first_failure_ms = None;
                    None
                }
                Phase::Firing if a.consecutive_ok >= cfg.resolve_threshold => {
                    a.phase = Phase::Resolved;
                    a.resolved_at_ms = Some(now);
                    a.first_failure_ms = None;
                    a.summary = o.summary;
                    Some(key.to_string())
                }
                _ => None,
            }
        }
    }

    fn group(
        &self,
        kind: NotificationKind,
        items: Vec<(u64, AlertItem, bool)>,
        out: &mut Vec<Notification>,
    ) {
        let mut by_channel: BTreeMap<u64, (Vec<AlertItem>, Vec<AlertItem>)> = BTreeMap::new();
        for (ch, item, held) in items {
            let e = by_channel.entry(ch).or_default();
            if held {
                e.1.push(item);
            } else {
                e.0.push(item);
            }
        }
        for (channel, (alerts, held)) in by_channel {
            out.push(Notification {
                id: 0,
                kind,
                channel,
                severity: Severity::Info,
                at_ms: 0,
                alerts,
                held,
            });
        }
    }

    fn resolutions(&mut self, _now: i64, resolved: &[String], out: &mut Vec<Notification>) {
        let mut items = Vec::new();
        for key in resolved {
            let a = &self.state.alerts[key];
            if !a.notified {
                continue;
            }
            let root = a.held_under.as_ref().and_then(|r| self.state.alerts.get(r));
            let channel = root
                .map(|r| self.channel(r))
                .unwrap_or_else(|| self.channel(a));
            items.push((channel, Self::item(a), a.held_under.is_some()));
        }
        for key in resolved {
            let a = self.state.alerts.get_mut(key).expect("resolved key exists");
            a.notified = false;
            a.last_notified_ms = None;
            a.held_under = None;
            a.firing_since_ms = None;
        }
        // Alerts held under a root that no longer fires stand on their own again.
        let roots_firing: BTreeSet<String> = self
            .state
            .alerts
            .values()
            .filter(|a| a.phase == Phase::Firing)
            .map(|a| a.key.clone())
            .collect();
        for a in self.state.alerts.values_mut() {
            if a.held_under
                .as_ref()
                .is_some_and(|r| !roots_firing.contains(r))
            {
                a.held_under = None;
                self.dirty.insert(a.key.clone());
            }
        }
        self.group(NotificationKind::Resolved, items, out);
    }

    fn announcements(&mut self, now: i64, out: &mut Vec<Notification>) {
        let new: Vec<String> = self
            .state
            .alerts
            .values()
            .filter(|a| a.phase == Phase::Firing && !a.notified && !self.silenced(&a.key))
            .map(|a| a.key.clone())
            .collect();
        if new.is_empty() {
            self.state.meta.group_deadline_ms = None;
            return;
        }
        let deadline = *self
            .state
            .meta
            .group_deadline_ms
            .get_or_insert(now + self.cfg.group_wait_ms);
        if now < deadline {
            return;
        }
        self.state.meta.group_deadline_ms = None;
        // The primary root: the most severe firing root-layer alert, new ones first.
        let primary = self
            .state
            .alerts
            .values()
            .filter(|a| a.phase == Phase::Firing && self.is_root(a))
            .max_by_key(|a| (a.severity, !a.notified, std::cmp::Reverse(a.key.clone())))
            .map(|a| a.key.clone());
        let mut items = Vec::new();
        for key in &new {
            let a = &self.state.alerts[key];
            let hold = match &primary {
                Some(p) if !self.is_root(a) => Some(p.clone()),
                _ => None,
            };
            let channel = match &hold {
                Some(p) => self.channel(&self.state.alerts[p]),
                None => self.channel(a),
            };
            let mut item = Self::item(a);
            item.caused_by = hold.clone();
            items.push((channel, item, hold.is_some()));
            let a = self.state.alerts.get_mut(key).expect("new key exists");
            a.notified = true;
            a.last_notified_ms = Some(now);
            a.held_under = hold;
            self.dirty.insert(key.clone());
        }
        self.group(NotificationKind::Firing, items, out);
    }

    fn reminders(&mut self, now: i64, out: &mut Vec<Notification>) {
        if self.cfg.reminder_ms <= 0 {
            return;
        }
        let due: Vec<String> = self
            .state
            .alerts
            .values()
            .filter(|a| {
                a.phase == Phase::Firing
                    && a.notified
                    && a.held_under.is_none()
                    && !self.silenced(&a.key)
                    && a.last_notified_ms
                        .is_some_and(|t| now - t >= self.cfg.reminder_ms)
            })
            .map(|a| a.key.clone())
            .collect();
        let mut items = Vec::new();
        for key in &due {
            let a = &self.state.alerts[key];
            let channel = self.channel(a);
            items.push((channel, Self::item(a), false));
            for h in self
                .state
                .alerts
                .values()
                .filter(|h| h.phase == Phase::Firing && h.held_under.as_deref() == Some(key))
            {
                items.push((channel, Self::item(h), true));
            }
        }
        for key in &due {
            let a = self.state.alerts.get_mut(key).expect("due key exists");
            a.last_notified_ms = Some(now);
            self.dirty.insert(key.clone());
        }
        self.group(NotificationKind::Reminder, items, out);
    }

    fn heartbeat(&mut self, now: i64, out: &mut Vec<Notification>) {
        if self.cfg.heartbeat_ms <= 0 {
            return;
        }
        let last = *self.state.meta.last_heartbeat_ms.get_or_insert(now);
        if now - last < self.cfg.heartbeat_ms {
            return;
        }
        self.state.meta.last_heartbeat_ms = Some(now);
        let alerts = self
            .firing()
            .filter(|a| a.notified)
            .map(Self::item)
            .collect();
        out.push(Notification {
            id: 0,
            kind: NotificationKind::Heartbeat,
            channel: self.cfg.routing.default_channel,
            severity: Severity::Info,
            at_ms: 0,
            alerts,
            held: Vec::new(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn cfg() -> EngineConfig {
        EngineConfig {
            failure_threshold: 3,
            event_failure_threshold: 1,
            min_duration_ms: 0,
            resolve_threshold: 2,
            reminder_ms: 30 * MIN,
            heartbeat_ms: 0,
            group_wait_ms: 0,
            root_layers: vec!["layer_1".into()],
            routing: RoutingConfig {
                default_channel: 1,
                routes: vec![super::super::config::Route {
                    layer: Some("layer_1".into()),
                    severity: None,
                    channel: 2,
                }],
            },
        }
    }

    fn bad(key: &str, layer: &str) -> Observation {
        Observation::failing(key, Some(layer), Severity::Critical, "down")
    }
    fn good(key: &str) -> Observation {
        Observation::ok(key, None, "fine")
    }

    /// (kind, channel, alert keys, held keys) of every notification, with the tick time.
    type Seen = Vec<(i64, NotificationKind, u64, Vec<String>, Vec<String>)>;

    fn run(engine: &mut Engine, steps: Vec<(i64, Vec<Observation>)>) -> Seen {
        let mut seen = Vec::new();
        for (t, obs) in steps {
            for n in engine.tick(t, obs) {
                seen.push((
                    t,
                    n.kind,
                    n.channel,
                    n.alerts.iter().map(|a| a.key.clone()).collect(),
                    n.held.iter().map(|a| a.key.clone()).collect(),
                ));
            }
        }
        seen
    }

    fn kinds(seen: &Seen) -> Vec<(i64, NotificationKind)> {
        seen.iter().map(|s| (s.0, s.1)).collect()
    }

    use NotificationKind::*;

    #[test]
    fn alerts_engine_state_machine_table() {
        // (name, config tweak, observation pattern per minute: F failing, O ok, - none,
        //  expected (minute, kind) notifications)
        type Case = (
            &'static str,
            fn(&mut EngineConfig),
            &'static str,
            Vec<(i64, NotificationKind)>,
        );
        let cases: Vec<Case> = vec![
            (
                "threshold: fires on the 3rd failure",
                |_| {},
                "FFFF",
                vec![(2, Firing)],
            ),
            (
                "flapping never reaches the threshold",
                |_| {},
                "FFOFFOFFOFF",
                vec![],
            ),
            (
                "resolved once after two oks",
                |_| {},
                "FFFOOOOO",
                vec![(2, Firing), (4, Resolved)],
            ),
            (
                "one ok while firing does not resolve",
                |_| {},
                "FFFOFOF",
                vec![(2, Firing)],
            ),
            (
                "missing observations keep the state",
                |_| {},
                "F-F-F--",
                vec![(4, Firing)],
            ),
            (
                "min duration: 3 failures but only after 5 minutes",
                |c| c.min_duration_ms = 5 * MIN,
                "FFFFFFFF",
                vec![(5, Firing)],
            ),
            (
                "reminders every 30 minutes while firing",
                |_| {},
                "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF",
                vec![(2, Firing), (32, Reminder), (62, Reminder)],
            ),
            (
                "refiring after resolve announces again",
                |_| {},
                "FFFOOFFF",
                vec![(2, Firing), (4, Resolved), (7, Firing)],
            ),
            (
                "threshold 1 fires at once",
                |c| c.failure_threshold = 1,
                "FO",
                vec![(0, Firing)],
            ),
        ];
        for (name, tweak, pattern, expected) in cases {
            let mut c = cfg();
            tweak(&mut c);
            let mut e = Engine::new(c);
            let steps = pattern
                .chars()
                .enumerate()
                .map(|(i, ch)| {
                    let obs = match ch {
                        'F' => vec![bad("svc:a", "platform")],
                        'O' => vec![good("svc:a")],
                        _ => vec![],
                    };
                    (i as i64 * MIN, obs)
                })
                .collect();
            let seen = run(&mut e, steps);
            let got: Vec<(i64, NotificationKind)> = kinds(&seen)
                .into_iter()
                .map(|(t, k)| (t / MIN, k))
                .collect();
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn alerts_engine_decisive_event_fires_without_threshold_rounds() {
        let mut c = cfg();
        c.min_duration_ms = 5 * MIN;
        let mut e = Engine::new(c.clone());
        // An ordinary failure waits for the threshold; a decisive one fires at once.
        assert!(e.tick(0, vec![bad("svc:slow", "platform")]).is_empty());
        let seen = run(
            &mut e,
            vec![(1, vec![bad("svc:crash", "platform").decisive()])],
        );
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(
            (seen[0].1, seen[0].3.clone()),
            (Firing, vec!["svc:crash".into()])
        );
        assert_eq!(e.state().alerts["svc:slow"].phase, Phase::Pending);
        // Merged with an ordinary failure of the same key in one tick, it stays decisive.
        let mut e = Engine::new(c.clone());
        let seen = run(
            &mut e,
            vec![(
                0,
                vec![
                    bad("svc:a", "platform"),
                    bad("svc:a", "platform").decisive(),
                ],
            )],
        );
        assert_eq!(seen.len(), 1, "{seen:?}");
        let later = Observation::failing("svc:a", None, Severity::Critical, "newer");
        e.tick(1, vec![bad("svc:a", "platform"), later]);
        assert_eq!(
            e.state().alerts["svc:a"].summary,
            "newer",
            "the later summary wins"
        );
        // A configured event threshold of 2 needs two decisive failures.
        c.event_failure_threshold = 2;
        let mut e = Engine::new(c);
        let d = || vec![bad("svc:b", "platform").decisive()];
        let seen = run(&mut e, vec![(0, d()), (10, d())]);
        assert_eq!(kinds(&seen), vec![(10, Firing)]);
    }

    #[test]
    fn alerts_engine_silence_suppresses_until_it_ends() {
        let mut e = Engine::new(cfg());
        e.silence("svc:*", 5 * MIN);
        let steps = (0..8)
            .map(|i| (i * MIN, vec![bad("svc:a", "platform")]))
            .collect();
        let seen = run(&mut e, steps);
        assert_eq!(
            kinds(&seen),
            vec![(5 * MIN, Firing)],
            "announced when the silence ends"
        );
        // Silenced then resolved without announcement: nothing at all.
        let mut e = Engine::new(cfg());
        e.silence("svc:b", 100 * MIN);
        let mut steps: Vec<(i64, Vec<Observation>)> = (0..4)
            .map(|i| (i * MIN, vec![bad("svc:b", "platform")]))
            .collect();
        steps.extend((4..8).map(|i| (i * MIN, vec![good("svc:b")])));
        assert!(run(&mut e, steps).is_empty());
    }

    #[test]
    fn alerts_engine_groups_a_burst_of_20_into_one_notification() {
        let mut c = cfg();
        c.failure_threshold = 1;
        let mut e = Engine::new(c.clone());
        let burst: Vec<Observation> = (0..20)
            .map(|i| bad(&format!("svc:{i}"), "platform"))
            .collect();
        let seen = run(&mut e, vec![(0, burst.clone())]);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].3.len(), 20);
        // With group_wait, failures spread over 3 ticks still make one notification.
        c.group_wait_ms = 3 * MIN;
        let mut e = Engine::new(c);
        let steps = (0..5)
            .map(|t| (t * MIN, burst[..((t as usize + 1) * 4).min(20)].to_vec()))
            .collect();
        let seen = run(&mut e, steps);
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!((seen[0].0, seen[0].3.len()), (3 * MIN, 16));
        let seen = run(&mut e, (5..9).map(|t| (t * MIN, burst.clone())).collect());
        assert_eq!(seen.len(), 1, "the late ones are a second group: {seen:?}");
        assert_eq!(seen[0].3.len(), 4);
        // Resolutions of a burst are grouped too.
        let seen = run(
            &mut e,
            (9..12)
                .map(|t| {
                    (
                        t * MIN,
                        (0..20).map(|i| good(&format!("svc:{i}"))).collect(),
                    )
                })
                .collect(),
        );
        assert_eq!(seen.len(), 1);
        assert_eq!((seen[0].1, seen[0].3.len()), (Resolved, 20));
    }

    #[test]
    fn alerts_engine_layer1_holds_other_layers() {
        let mut c = cfg();
        c.failure_threshold = 1;
        let mut e = Engine::new(c);
        let seen = run(
            &mut e,
            vec![(
                0,
                vec![
                    bad("probe:traefik", "layer_1"),
                    bad("svc:redis", "layer_2"),
                    bad("svc:web", "platform"),
                ],
            )],
        );
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].2, 2, "routed by the root's layer");
        assert_eq!(seen[0].3, ["probe:traefik"]);
        assert_eq!(seen[0].4, ["svc:redis", "svc:web"]);
        let n = &e.outbox()[0];
        assert_eq!(n.held[0].caused_by.as_deref(), Some("probe:traefik"));
        assert!(n
            .render_text()
            .contains("probably caused by `probe:traefik`"));
        // Later platform alerts while layer_1 still fires are held too.
        let seen = run(
            &mut e,
            vec![(
                MIN,
                vec![bad("probe:traefik", "layer_1"), bad("svc:api", "platform")],
            )],
        );
        assert_eq!(seen.len(), 1);
        assert!(seen[0].3.is_empty());
        assert_eq!(seen[0].4, ["svc:api"]);
        // Reminder of the root lists the held ones.
        let seen = run(&mut e, vec![(31 * MIN, vec![])]);
        assert_eq!(seen[0].1, Reminder);
        assert_eq!(seen[0].3, ["probe:traefik"]);
        assert_eq!(seen[0].4, ["svc:api", "svc:redis", "svc:web"]);
    }

    #[test]
    fn alerts_engine_state_round_trips_and_restart_does_not_refire() {
        let mut e = Engine::new(cfg());
        run(
            &mut e,
            (0..3)
                .map(|i| (i * MIN, vec![bad("svc:a", "platform")]))
                .collect(),
        );
        assert_eq!(e.outbox().len(), 1);
        let ids: Vec<u64> = e.outbox().iter().map(|n| n.id).collect();
        e.ack(&ids);
        let json = serde_json::to_string(&e.snapshot()).unwrap();
        let state: EngineState = serde_json::from_str(&json).unwrap();
        assert_eq!(state, e.snapshot());
        let mut again = Engine::restore(cfg(), state);
        let seen = run(
            &mut again,
            (3..6)
                .map(|i| (i * MIN, vec![bad("svc:a", "platform")]))
                .collect(),
        );
        assert!(seen.is_empty(), "no second firing: {seen:?}");
        let seen = run(
            &mut again,
            (6..8).map(|i| (i * MIN, vec![good("svc:a")])).collect(),
        );
        assert_eq!(kinds(&seen), vec![(7 * MIN, Resolved)]);
        assert!(again.take_dirty().contains(&"svc:a".to_string()));
        // A settled key nobody reports on is forgotten after a day (and deleted by the store).
        again.tick(7 * MIN + PRUNE_AFTER_MS + 1, vec![]);
        assert!(again.state().alerts.is_empty());
        assert_eq!(again.take_dirty(), ["svc:a"]);
    }

    #[test]
    fn alerts_engine_heartbeat_and_severity() {
        let mut c = cfg();
        c.heartbeat_ms = 60 * MIN;
        c.failure_threshold = 1;
        let mut e = Engine::new(c);
        let seen = run(
            &mut e,
            vec![
                (
                    0,
                    vec![Observation::failing(
                        "svc:w",
                        Some("platform"),
                        Severity::Warning,
                        "slow",
                    )],
                ),
                (59 * MIN, vec![]),
                (60 * MIN, vec![]),
            ],
        );
        assert_eq!(
            kinds(&seen),
            vec![(0, Firing), (59 * MIN, Reminder), (60 * MIN, Heartbeat)]
        );
        assert_eq!(e.outbox()[0].severity, Severity::Warning);
        assert_eq!(Severity::Critical.colour(), 0xE74C3C);
    }
}
