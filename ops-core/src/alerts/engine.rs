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

use super::config::Severity;
use crate::base::glob_match;

mod state;
pub use state::*;

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
mod tests;
