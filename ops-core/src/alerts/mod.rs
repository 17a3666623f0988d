//! Alerts: watch the Swarm (Docker events plus a snapshot reconciler) and active probes,
//! decide with a pure [`Engine`] what is firing, persist that state ([`AlertStore`]), and
//! hand notifications to an [`AlertSink`] (the bot posts them to Discord).
//!
//! The [`Watcher`] ties it together. Every `probe_interval_secs` (a *round*) it drains the
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

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use governor::{Quota, RateLimiter};
use tokio::sync::{mpsc, watch};

pub use crate::base::{Clock, ManualClock, SystemClock};
pub use config::{AlertsConfig, PgTls, ProbeConfig, ProbeKind, RoutingConfig, Severity};
pub use control::{AlertControl, AlertHub, ControlError, ProbeResult, SilenceRequest};
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
    /// The last round's probe results, in config order (`None` before the first round).
    last_probes: Option<Vec<ProbeResult>>,
    /// When delivery should be tried again (clock ms): a channel was rate limited or failed.
    retry_at_ms: Option<i64>,
    /// Docker events interpreted since start (all paths).
    events_seen: u64,
    /// Every summary is redacted before the engine, the store or a channel sees it.
    redactor: Option<Arc<crate::redact::Redactor>>,
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
            last_probes: None,
            retry_at_ms: None,
            events_seen: 0,
            redactor: None,
        })
    }

    /// Redacts every observation summary (task errors, probe errors) with `redactor` before it
    /// is evaluated, persisted, published to `/status` or posted.
    pub fn with_redactor(mut self, redactor: Arc<crate::redact::Redactor>) -> Watcher {
        self.redactor = Some(redactor);
        self
    }

    fn redact_summary(&self, summary: &mut String) {
        if let Some(r) = &self.redactor {
            if let std::borrow::Cow::Owned(s) = r.redact(summary) {
                *summary = s;
            }
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Replaces the Docker event feed (tests and benchmarks feed events of their own).
    pub fn attach_events(&mut self, feed: sources::EventFeed) {
        self.events = Some(feed);
    }

    /// Docker events interpreted since start (rounds and fast path).
    pub fn events_seen(&self) -> u64 {
        self.events_seen
    }

    /// Interprets `first` (if any) and every event already queued (at most
    /// [`EVENT_CAPACITY`]), and moves the persisted event cursor.
    fn drain_events(&mut self, now: i64, first: Option<sources::SwarmEvent>) -> Vec<Observation> {
        let mut obs = Vec::new();
        let Some(feed) = &mut self.events else {
            return obs;
        };
        let layers = &self.service_layers;
        let resolver = &self.deps.layers;
        let layer_of = |name: &str| match layers.get(name) {
            Some(l) => l.clone(),
            None => resolver(name, &BTreeMap::new()),
        };
        let mut next = first;
        let mut n = 0;
        if next.is_none() {
            next = feed.rx.try_recv().ok();
        }
        while let Some(ev) = next {
            n += 1;
            if let Some(o) = self
                .interpreter
                .interpret(now, &ev, &self.filter, &layer_of)
            {
                obs.push(o);
            }
            next = if n < EVENT_CAPACITY {
                feed.rx.try_recv().ok()
            } else {
                None
            };
        }
        self.events_seen += n as u64;
        let cursor = feed.cursor.load(Ordering::SeqCst);
        if cursor > 0 {
            self.engine.set_event_cursor(cursor);
        }
        obs
    }

    /// The fast path: evaluates `first` and the events queued behind it now, then delivers
    /// what is due.
    pub async fn on_events(
        &mut self,
        first: Option<sources::SwarmEvent>,
    ) -> Result<Vec<Notification>, AlertError> {
        let now = self.deps.clock.now_ms();
        let obs = self.drain_events(now, first);
        if obs.is_empty() {
            // Only events of unwatched services: nothing to evaluate (the moved event cursor
            // is saved with the next evaluation).
            return Ok(Vec::new());
        }
        let out = self.evaluate(obs).await?;
        self.deliver_due().await?;
        Ok(out)
    }

    /// The timer: evaluates when the group wait has ended, delivers when the outbox is due.
    pub async fn on_timer(&mut self) -> Result<(), AlertError> {
        let now = self.deps.clock.now_ms();
        if self
            .engine
            .state()
            .meta
            .group_deadline_ms
            .is_some_and(|d| d <= now)
        {
            self.evaluate(Vec::new()).await?;
        }
        self.deliver_due().await?;
        Ok(())
    }

    async fn deliver_due(&mut self) -> Result<usize, AlertError> {
        if self.engine.outbox().is_empty() {
            self.retry_at_ms = None;
            return Ok(0);
        }
        let now = self.deps.clock.now_ms();
        if self.retry_at_ms.is_some_and(|t| t > now) {
            return Ok(0);
        }
        self.deliver().await
    }

    /// The next moment (clock ms) something is due without new input: the end of the group
    /// wait, or the next delivery attempt while the outbox is not empty.
    pub fn next_due_ms(&self) -> Option<i64> {
        let deadline = self.engine.state().meta.group_deadline_ms;
        let retry = if self.engine.outbox().is_empty() {
            None
        } else {
            Some(self.retry_at_ms.unwrap_or(self.deps.clock.now_ms()))
        };
        match (deadline, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Applies a silence from the hub: checked, applied through the engine, persisted,
    /// published, answered.
    pub async fn apply_silence(&mut self, req: SilenceRequest) {
        let now = self.deps.clock.now_ms();
        let max_ms = i64::try_from(control::MAX_SILENCE.as_millis()).unwrap_or(i64::MAX);
        let result = if req.pattern.trim().is_empty() {
            Err(ControlError::Invalid("the alert key is empty".into()))
        } else if req.until_ms <= now {
            Err(ControlError::Invalid(
                "the silence would end in the past".into(),
            ))
        } else if req.until_ms - now > max_ms {
            Err(ControlError::Invalid(
                "a silence lasts at most 7 days".into(),
            ))
        } else {
            match self.silence(&req.pattern, req.until_ms).await {
                Ok(()) => {
                    tracing::info!(pattern = %req.pattern, until_ms = req.until_ms, "alerts: silenced");
                    Ok(())
                }
                Err(e) => {
                    let detail = match &e {
                        AlertError::Store(s) => s.detail().to_string(),
                        other => other.to_string(),
                    };
                    tracing::warn!(%detail, "alerts: silence not saved: {e}");
                    Err(ControlError::Store { detail })
                }
            }
        };
        self.publish();
        let _ = req.reply.send(result);
    }

    /// Publishes open alerts, the last probe results and active silences to the hub.
    fn publish(&self) {
        let Some(hub) = &self.deps.hub else {
            return;
        };
        let now = self.deps.clock.now_ms();
        let state = self.engine.state();
        let open = state
            .alerts
            .values()
            .filter(|a| matches!(a.phase, Phase::Pending | Phase::Firing))
            .cloned()
            .collect();
        let silences = state
            .meta
            .silences
            .iter()
            .filter(|s| s.until_ms > now)
            .map(|s| (s.pattern.clone(), s.until_ms))
            .collect();
        hub.publish(open, self.last_probes.clone(), silences);
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
        loop {
            let batch = self.drain_events(now, None);
            if batch.is_empty() {
                break;
            }
            obs.extend(batch);
        }
        let runner = &self.probes;
        let mut results =
            futures::future::join_all(self.cfg.probes.iter().map(|p| runner.run(p, now))).await;
        for o in &mut results {
            self.redact_summary(&mut o.summary);
        }
        self.last_probes = Some(
            self.cfg
                .probes
                .iter()
                .zip(&results)
                .map(|(p, o)| ProbeResult {
                    name: p.name.clone(),
                    kind: p.kind.as_str().to_string(),
                    layer: Some(p.layer.clone()),
                    ok: !o.failing,
                    severity: o.severity,
                    summary: o.summary.clone(),
                    at_ms: now,
                })
                .collect(),
        );
        obs.extend(results);
        obs
    }

    /// Feeds observations to the engine at the clock's `now` and persists the result.
    pub async fn evaluate(
        &mut self,
        observations: Vec<Observation>,
    ) -> Result<Vec<Notification>, AlertError> {
        let now = self.deps.clock.now_ms();
        let mut observations = observations;
        for o in &mut observations {
            self.redact_summary(&mut o.summary);
        }
        let out = self.engine.tick(now, observations);
        let dirty = self.engine.take_dirty();
        self.deps
            .store
            .save_state(self.engine.state(), &dirty)
            .await?;
        self.publish();
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
        let mut retry: Option<i64> = None;
        let mut later = |t: i64| retry = Some(retry.map_or(t, |r: i64| r.min(t)));
        for (channel, batch) in by_channel {
            if let Err(not_until) = self.limiter.check_key(&channel) {
                // +1: the governor's clock has millisecond steps.
                later(not_until.earliest_possible().as_millis() as i64 + 1);
                continue;
            }
            match self.deps.sink.deliver(channel, &batch).await {
                Ok(()) => {
                    sent += 1;
                    for n in &batch {
                        if let Err(e) = self.deps.store.record_notification(n).await {
                            tracing::warn!(detail = e.detail(), "alerts: {e}");
                        }
                        if let Some(hub) = &self.deps.hub {
                            hub.remember_notification(n.id, n.keys().map(str::to_string).collect());
                        }
                        acked.push(n.id);
                    }
                }
                Err(e) => {
                    tracing::warn!(channel, detail = %e.detail, "alerts: {e}");
                    later(self.deps.clock.now_ms() + DELIVERY_RETRY.as_millis() as i64);
                }
            }
        }
        self.retry_at_ms = retry;
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

    /// Runs until `shutdown` turns true: a round every `probe_interval_secs`, Docker events
    /// evaluated as they arrive, delivery at the end of the group wait or as soon as the
    /// channel governor allows, silence requests from the hub applied in between.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let every = Duration::from_secs(self.cfg.probe_interval_secs.max(1));
        self.run_every(every, shutdown).await
    }

    /// Like [`Watcher::run`] with the round period given directly (tests).
    pub async fn run_every(mut self, every: Duration, mut shutdown: watch::Receiver<bool>) {
        let hub = self.deps.hub.clone();
        let mut requests = hub.as_ref().and_then(|h| h.take_requests());
        // Marks the hub stopped when this returns or unwinds.
        let _running = hub.clone().map(|h| {
            h.set_running(true);
            StopsHub(h)
        });
        self.publish();
        let mut rounds = tokio::time::interval(every);
        rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut events_open = self.events.is_some();
        loop {
            let wake = self.next_due_ms().map(|due| {
                let wait = (due - self.deps.clock.now_ms()).max(0) as u64;
                tokio::time::Instant::now() + Duration::from_millis(wait)
            });
            let far = tokio::time::Instant::now() + Duration::from_secs(24 * 3600);
            tokio::select! {
                _ = rounds.tick() => {
                    if let Err(e) = self.run_once().await {
                        tracing::warn!("alerts: round failed: {e}");
                    }
                }
                ev = next_event(&mut self.events), if events_open => match ev {
                    Some(ev) => {
                        if let Err(e) = self.on_events(Some(ev)).await {
                            tracing::warn!("alerts: event evaluation failed: {e}");
                        }
                    }
                    None => events_open = false,
                },
                req = next_request(&mut requests), if requests.is_some() => match req {
                    Some(req) => self.apply_silence(req).await,
                    None => requests = None,
                },
                _ = tokio::time::sleep_until(wake.unwrap_or(far)), if wake.is_some() => {
                    if let Err(e) = self.on_timer().await {
                        tracing::warn!("alerts: delivery failed: {e}");
                    }
                }
                r = shutdown.changed() => {
                    if r.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
            }
        }
    }
}

/// Marks the hub stopped when dropped (the watcher returned, or its task panicked).
struct StopsHub(Arc<AlertHub>);

impl Drop for StopsHub {
    fn drop(&mut self) {
        self.0.set_running(false);
    }
}

async fn next_event(feed: &mut Option<sources::EventFeed>) -> Option<sources::SwarmEvent> {
    match feed {
        Some(f) => f.rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn next_request(rx: &mut Option<mpsc::Receiver<SilenceRequest>>) -> Option<SilenceRequest> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicI64;
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

    /// An event feed the test writes to.
    fn test_feed() -> (mpsc::Sender<sources::SwarmEvent>, sources::EventFeed) {
        let (tx, rx) = mpsc::channel(EVENT_CAPACITY);
        let feed = sources::EventFeed {
            rx,
            cursor: Arc::new(AtomicI64::new(0)),
            dropped: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            handle: tokio::spawn(async {}),
        };
        (tx, feed)
    }

    fn exited(service: &str) -> sources::SwarmEvent {
        sources::SwarmEvent::TaskExited {
            service: service.into(),
            exit_code: 1,
        }
    }

    async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
        for _ in 0..600 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out (30 s) waiting for {what}");
    }

    fn closed_port() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    }

    #[tokio::test]
    async fn alerts_hub_silence_suppresses_the_announcement_and_state_is_published() {
        let mut cfg = AlertsConfig::with_channel(7);
        cfg.failure_threshold = 100; // the probe stays pending
        cfg.group_wait_ms = Some(1_000);
        cfg.probes = vec![ProbeConfig {
            name: "closed".into(),
            kind: ProbeKind::Tcp,
            target: Some(closed_port()),
            url: None,
            layer: "layer_1".into(),
            severity: Severity::Warning,
            expect_status: None,
            timeout_secs: Some(2),
            server_name: None,
            warn_days: None,
            insecure_tls: false,
            username: None,
            password: None,
            sslmode: None,
            ssl_root_cert: None,
            bucket: None,
            region: None,
        }];
        let t0 = 1_700_000_000_000;
        let clock = Arc::new(ManualClock::new(t0));
        let sink = Arc::new(Recorder::default());
        let store = Arc::new(MemoryAlertStore::default());
        let hub = AlertHub::new();
        assert_eq!(
            hub.silence("service:a", t0 + 60_000).await,
            Err(ControlError::NotRunning)
        );
        let deps = WatcherDeps {
            store: store.clone(),
            sink: sink.clone(),
            clock: clock.clone(),
            swarm: None,
            docker_events: None,
            layers: Arc::new(|_, _| Some("platform".into())),
            hub: Some(hub.clone()),
        };
        let mut w = Watcher::new(cfg, deps).await.unwrap();
        let (tx, feed) = test_feed();
        w.attach_events(feed);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(w.run_every(Duration::from_millis(100), stop_rx));

        eventually("the first round's probe result", || {
            !hub.probe_results().is_empty()
        })
        .await;
        let p = &hub.probe_results()[0];
        assert_eq!(
            (p.name.as_str(), p.kind.as_str(), p.layer.as_deref(), p.ok),
            ("closed", "tcp", Some("layer_1"), false),
            "{p:?}"
        );
        assert_eq!(p.severity, Severity::Warning);
        assert_eq!(p.at_ms, t0);

        tx.send(exited("a")).await.unwrap();
        tx.send(exited("b")).await.unwrap();
        eventually("both services firing", || {
            hub.open_alerts()
                .iter()
                .filter(|a| a.phase == Phase::Firing)
                .count()
                == 2
        })
        .await;
        let open = hub.open_alerts();
        let probe = open.iter().find(|a| a.key == "probe:closed").unwrap();
        assert_eq!(probe.phase, Phase::Pending, "pending alerts are open too");
        assert!(sink.got.lock().unwrap().is_empty(), "inside the group wait");

        let until = t0 + 3_600_000;
        hub.silence("service:a", until).await.unwrap();
        assert_eq!(hub.silences(), vec![("service:a".to_string(), until)]);
        let saved = store.load_state().await.unwrap();
        assert_eq!(saved.meta.silences.len(), 1, "persisted before the answer");
        assert_eq!(saved.meta.silences[0].pattern, "service:a");
        assert!(matches!(
            hub.silence("service:a", t0 - 1).await,
            Err(ControlError::Invalid(_))
        ));

        clock.advance(Duration::from_secs(2)); // past the group wait
        eventually("the announcement", || !sink.got.lock().unwrap().is_empty()).await;
        let got = sink.got.lock().unwrap().clone();
        assert_eq!(got.len(), 1, "{got:?}");
        let n = &got[0].1[0];
        assert_eq!(n.kind, NotificationKind::Firing);
        assert_eq!(n.keys().collect::<Vec<_>>(), ["service:b"], "a is silenced");
        assert_eq!(
            hub.notification_keys(n.id),
            Some(vec!["service:b".to_string()])
        );
        assert_eq!(hub.notification_keys(n.id + 1000), None);

        // More exits of the silenced service: still nothing for it.
        tx.send(exited("a")).await.unwrap();
        clock.advance(Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(sink
            .got
            .lock()
            .unwrap()
            .iter()
            .all(|(_, ns)| ns.iter().all(|n| n.keys().all(|k| k != "service:a"))));

        stop.send(true).unwrap();
        task.await.unwrap();
        assert!(hub.open_alerts().is_empty(), "stopped: nothing published");
        assert_eq!(
            hub.silence("service:b", until).await,
            Err(ControlError::NotRunning)
        );
    }

    #[tokio::test]
    async fn alerts_event_fast_path_fires_a_burst_in_one_message_without_a_round() {
        let mut cfg = AlertsConfig::with_channel(9);
        cfg.probe_interval_secs = 3_600; // one round at start, no second one
        let sink = Arc::new(Recorder::default());
        let deps = WatcherDeps {
            store: Arc::new(MemoryAlertStore::default()),
            sink: sink.clone(),
            clock: Arc::new(SystemClock),
            swarm: None,
            docker_events: None,
            layers: Arc::new(|_, _| Some("platform".into())),
            hub: None,
        };
        let mut w = Watcher::new(cfg, deps).await.unwrap();
        let (tx, feed) = test_feed();
        w.attach_events(feed);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(w.run(stop_rx));
        tokio::time::sleep(Duration::from_millis(100)).await; // the first round has run
        for i in 0..20 {
            tx.send(exited(&format!("svc-{i}"))).await.unwrap();
        }
        eventually("the firing message", || {
            !sink.got.lock().unwrap().is_empty()
        })
        .await;
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        let got = sink.got.lock().unwrap().clone();
        assert_eq!(got.len(), 1, "one message for the burst: {got:?}");
        let keys: Vec<&str> = got[0].1.iter().flat_map(|n| n.keys()).collect();
        assert_eq!(keys.len(), 20, "{keys:?}");
        assert!(got[0].1.iter().all(|n| n.kind == NotificationKind::Firing));
        stop.send(true).unwrap();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn alerts_watcher_rate_limits_and_coalesces_per_channel() {
        let mut cfg = AlertsConfig::with_channel(7);
        cfg.failure_threshold = 1;
        cfg.group_wait_ms = Some(0);
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
