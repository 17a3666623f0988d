//! Alerts: watch the Swarm (Docker events plus a snapshot reconciler) and active probes,
//! decide with a pure [`Engine`] what is firing, persist that state ([`AlertStore`]), and
//! hand notifications to an [`AlertSink`] (the bot posts them to Discord).
//!
//! The [`Watcher`] ties it together: every `probe_interval_secs` it drains the Docker
//! events, takes a snapshot, runs the probes, feeds the engine with the clock's `now`,
//! persists the state (notifications stay in the persisted outbox until delivered), and
//! delivers. Delivery is rate limited per channel (governor: one message per 2 s); what
//! arrives for a channel inside that window is coalesced into its next message.
//! Time comes from a [`Clock`], so tests drive it by hand ([`ManualClock`]).

pub mod config;
pub mod control;
pub mod engine;
pub mod probes;
pub mod sources;
pub mod store;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use governor::{Quota, RateLimiter};
use tokio::sync::watch;

pub use config::{AlertsConfig, ProbeConfig, ProbeKind, RoutingConfig, Severity};
pub use control::{AlertControl, AlertHub, ControlError, ProbeResult};
pub use engine::{
    AlertItem, AlertState, Engine, EngineConfig, EngineState, Notification, NotificationKind,
    Observation, Phase,
};
pub use sources::{LayerResolver, ServiceFilter};
pub use store::{AlertStore, AlertStoreError, MemoryAlertStore};

use crate::swarm::docker::DockerSwarm;
use crate::swarm::SwarmApi;

/// Minimum time between two messages to one channel.
pub const CHANNEL_PERIOD: Duration = Duration::from_secs(2);
/// Capacity of the Docker event channel.
pub const EVENT_CAPACITY: usize = 1024;
/// How far back a restarted watcher backfills Docker events.
pub const MAX_BACKFILL_SECS: i64 = 600;

/// Wall-clock time in unix milliseconds, injectable.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

/// A clock moved by hand (tests).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(ms: i64) -> ManualClock {
        ManualClock(AtomicI64::new(ms))
    }
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_millis() as i64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

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

/// What the watcher works with.
pub struct WatcherDeps {
    pub store: Arc<dyn AlertStore>,
    pub sink: Arc<dyn AlertSink>,
    pub clock: Arc<dyn Clock>,
    /// Snapshots for the reconciler (`None`: probes only).
    pub swarm: Option<Arc<dyn SwarmApi>>,
    /// The engine whose event stream is watched (`None`: no events).
    pub docker_events: Option<Arc<DockerSwarm>>,
    pub layers: LayerResolver,
    /// Where the watcher publishes its state and takes silences from (`None`: nobody asks).
    pub hub: Option<Arc<AlertHub>>,
}

#[derive(Clone)]
struct GovClock(Arc<dyn Clock>);

impl governor::clock::Clock for GovClock {
    type Instant = Duration;
    fn now(&self) -> Duration {
        Duration::from_millis(self.0.now_ms().max(0) as u64)
    }
}

type ChannelLimiter = RateLimiter<
    u64,
    governor::state::keyed::DashMapStateStore<u64>,
    GovClock,
    governor::middleware::NoOpMiddleware<Duration>,
>;

/// Sources + probes + engine + store + sink.
pub struct Watcher {
    cfg: AlertsConfig,
    engine: Engine,
    deps: WatcherDeps,
    probes: probes::ProbeRunner,
    interpreter: sources::EventInterpreter,
    filter: ServiceFilter,
    events: Option<sources::EventFeed>,
    limiter: ChannelLimiter,
    service_layers: HashMap<String, Option<String>>,
}

impl Watcher {
    /// Validates `cfg`, loads the persisted state and starts the event watcher (backfilling
    /// from the persisted cursor, at most [`MAX_BACKFILL_SECS`] back).
    pub async fn new(cfg: AlertsConfig, deps: WatcherDeps) -> Result<Watcher, AlertError> {
        cfg.validate()
            .map_err(|(key, message)| AlertError::Config { key, message })?;
        let state = deps.store.load_state().await?;
        let now_secs = deps.clock.now_ms() / 1000;
        let since = state
            .meta
            .event_cursor_secs
            .map(|c| c.max(now_secs - MAX_BACKFILL_SECS));
        let events = deps
            .docker_events
            .clone()
            .map(|d| sources::spawn_event_watcher(d, since, EVENT_CAPACITY));
        let engine = Engine::restore(EngineConfig::from(&cfg), state);
        let limiter = RateLimiter::dashmap_with_clock(
            Quota::with_period(CHANNEL_PERIOD).expect("non-zero period"),
            GovClock(deps.clock.clone()),
        );
        Ok(Watcher {
            probes: probes::ProbeRunner::new(Duration::from_secs(cfg.probe_timeout_secs)),
            interpreter: sources::EventInterpreter::new(
                cfg.restart_loop_count,
                (cfg.restart_loop_window_secs * 1000) as i64,
            ),
            filter: ServiceFilter {
                include: cfg.services.clone(),
                exclude: cfg.ignore_services.clone(),
            },
            cfg,
            engine,
            deps,
            events,
            limiter,
            service_layers: HashMap::new(),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Silences keys matching `pattern` until `until_ms`, persisted.
    pub async fn silence(&mut self, pattern: &str, until_ms: i64) -> Result<(), AlertError> {
        self.engine.silence(pattern, until_ms);
        self.deps.store.save_state(self.engine.state(), &[]).await?;
        Ok(())
    }

    /// Gathers observations from events, the snapshot and the probes.
    pub async fn collect(&mut self) -> Vec<Observation> {
        let now = self.deps.clock.now_ms();
        let mut obs = Vec::new();
        if let Some(swarm) = &self.deps.swarm {
            match swarm.snapshot().await {
                Ok(snap) => {
                    for s in &snap.services {
                        self.service_layers
                            .insert(s.name.clone(), (self.deps.layers)(&s.name, &s.labels));
                    }
                    obs.extend(sources::reconcile(
                        &snap,
                        now,
                        (self.cfg.restart_loop_window_secs * 1000) as i64,
                        &self.filter,
                        &self.deps.layers,
                    ));
                    // Alerts of watched services that no longer exist resolve.
                    let names: std::collections::HashSet<&str> =
                        snap.services.iter().map(|s| s.name.as_str()).collect();
                    for (key, a) in &self.engine.state().alerts {
                        if matches!(a.phase, Phase::Ok | Phase::Resolved) {
                            continue;
                        }
                        let Some(rest) = key.strip_prefix("service:") else {
                            continue;
                        };
                        let name = rest.strip_suffix(":update").unwrap_or(rest);
                        if !names.contains(name) && self.filter.matches(name) {
                            obs.push(Observation::ok(key.clone(), None, "service removed"));
                        }
                    }
                    obs.push(Observation::ok("swarm:engine", None, "reachable"));
                }
                Err(e) => {
                    tracing::warn!(detail = e.detail(), "alerts: snapshot failed: {e}");
                    obs.push(Observation::failing(
                        "swarm:engine",
                        None,
                        Severity::Critical,
                        e.to_string(),
                    ));
                }
            }
        }
        if let Some(feed) = &mut self.events {
            let layers = &self.service_layers;
            let resolver = &self.deps.layers;
            let layer_of = |name: &str| match layers.get(name) {
                Some(l) => l.clone(),
                None => resolver(name, &BTreeMap::new()),
            };
            while let Ok(ev) = feed.rx.try_recv() {
                if let Some(o) = self
                    .interpreter
                    .interpret(now, &ev, &self.filter, &layer_of)
                {
                    obs.push(o);
                }
            }
            let cursor = feed.cursor.load(Ordering::SeqCst);
            if cursor > 0 {
                self.engine.set_event_cursor(cursor);
            }
        }
        let runner = &self.probes;
        let results =
            futures::future::join_all(self.cfg.probes.iter().map(|p| runner.run(p, now))).await;
        obs.extend(results);
        obs
    }

    /// Feeds observations to the engine at the clock's `now` and persists the result.
    pub async fn evaluate(
        &mut self,
        observations: Vec<Observation>,
    ) -> Result<Vec<Notification>, AlertError> {
        let now = self.deps.clock.now_ms();
        let out = self.engine.tick(now, observations);
        let dirty = self.engine.take_dirty();
        self.deps
            .store
            .save_state(self.engine.state(), &dirty)
            .await?;
        Ok(out)
    }

    /// Delivers the outbox: per channel, one message with everything queued for it, when
    /// the channel's rate limit allows; else it waits (and grows) for the next call.
    /// Returns the number of messages sent.
    pub async fn deliver(&mut self) -> Result<usize, AlertError> {
        let mut by_channel: BTreeMap<u64, Vec<Notification>> = BTreeMap::new();
        for n in self.engine.outbox() {
            by_channel.entry(n.channel).or_default().push(n.clone());
        }
        let mut sent = 0;
        let mut acked = Vec::new();
        for (channel, batch) in by_channel {
            if self.limiter.check_key(&channel).is_err() {
                continue;
            }
            match self.deps.sink.deliver(channel, &batch).await {
                Ok(()) => {
                    sent += 1;
                    for n in &batch {
                        if let Err(e) = self.deps.store.record_notification(n).await {
                            tracing::warn!(detail = e.detail(), "alerts: {e}");
                        }
                        acked.push(n.id);
                    }
                }
                Err(e) => tracing::warn!(channel, detail = %e.detail, "alerts: {e}"),
            }
        }
        if !acked.is_empty() {
            self.engine.ack(&acked);
            self.deps.store.save_state(self.engine.state(), &[]).await?;
        }
        Ok(sent)
    }

    /// One full round: collect, evaluate, deliver.
    pub async fn run_once(&mut self) -> Result<Vec<Notification>, AlertError> {
        let obs = self.collect().await;
        let out = self.evaluate(obs).await?;
        self.deliver().await?;
        Ok(out)
    }

    /// Runs until `shutdown` turns true: a round every `probe_interval_secs`, delivery
    /// retries every second in between (rate-limited messages go out as soon as allowed).
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut rounds =
            tokio::time::interval(Duration::from_secs(self.cfg.probe_interval_secs.max(1)));
        rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut retries = tokio::time::interval(Duration::from_millis(1000));
        retries.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = rounds.tick() => {
                    if let Err(e) = self.run_once().await {
                        tracing::warn!("alerts: round failed: {e}");
                    }
                }
                _ = retries.tick() => {
                    if !self.engine.outbox().is_empty() {
                        if let Err(e) = self.deliver().await {
                            tracing::warn!("alerts: delivery failed: {e}");
                        }
                    }
                }
                r = shutdown.changed() => {
                    if r.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
            }
        }
    }

    /// Like [`Watcher::run`] with the round period given directly (tests), and delivery
    /// attempted on rounds only.
    pub async fn run_every(mut self, every: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut rounds = tokio::time::interval(every);
        rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = rounds.tick() => {
                    if let Err(e) = self.run_once().await {
                        tracing::warn!("alerts: round failed: {e}");
                    }
                }
                r = shutdown.changed() => {
                    if r.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records deliveries; fails the first `fail` calls.
    #[derive(Default)]
    struct Recorder {
        got: Mutex<Vec<(u64, Vec<Notification>)>>,
    }

    #[async_trait]
    impl AlertSink for Recorder {
        async fn deliver(&self, channel: u64, n: &[Notification]) -> Result<(), SinkError> {
            self.got.lock().unwrap().push((channel, n.to_vec()));
            Ok(())
        }
    }

    #[tokio::test]
    async fn alerts_watcher_rate_limits_and_coalesces_per_channel() {
        let mut cfg = AlertsConfig::with_channel(7);
        cfg.failure_threshold = 1;
        cfg.group_wait_secs = 0;
        let clock = Arc::new(ManualClock::new(1_000_000));
        let sink = Arc::new(Recorder::default());
        let store = Arc::new(MemoryAlertStore::default());
        let deps = || WatcherDeps {
            store: store.clone(),
            sink: sink.clone(),
            clock: clock.clone(),
            swarm: None,
            docker_events: None,
            layers: Arc::new(|_, _| None),
            hub: None,
        };
        let mut w = Watcher::new(cfg.clone(), deps()).await.unwrap();
        let bad = |k: &str| Observation::failing(k, Some("platform"), Severity::Critical, "x");
        w.evaluate(vec![bad("a")]).await.unwrap();
        assert_eq!(w.deliver().await.unwrap(), 1);
        clock.advance(Duration::from_millis(500));
        w.evaluate(vec![bad("a"), bad("b")]).await.unwrap();
        assert_eq!(w.deliver().await.unwrap(), 0, "inside the 2 s window");
        clock.advance(Duration::from_millis(500));
        w.evaluate(vec![bad("a"), bad("b"), bad("c")])
            .await
            .unwrap();
        assert_eq!(w.deliver().await.unwrap(), 0);
        clock.advance(Duration::from_millis(1_000));
        assert_eq!(w.deliver().await.unwrap(), 1, "coalesced");
        let got = sink.got.lock().unwrap().clone();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].1.len(), 2, "two notifications in one message");
        assert!(w.engine().outbox().is_empty());
        assert_eq!(store.notifications().await.unwrap().len(), 3);
        // A restart on the same store: nothing re-announced.
        drop(w);
        let mut again = Watcher::new(cfg, deps()).await.unwrap();
        clock.advance(Duration::from_secs(10));
        assert!(again
            .evaluate(vec![bad("a"), bad("b"), bad("c")])
            .await
            .unwrap()
            .is_empty());
    }
}
