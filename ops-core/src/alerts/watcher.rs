//! The [`Watcher`]: rounds (events drained, snapshot, probes, engine, persist, deliver) and,
//! between them, the Docker event fast path, the group-wait and rate-limit timers, silence
//! requests and shutdown (see the module header of `alerts`). All timing lives here; the engine
//! stays pure.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use governor::{Quota, RateLimiter};
use tokio::sync::{mpsc, watch};

use super::*;
use crate::swarm::docker::DockerSwarm;
use crate::swarm::SwarmApi;

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
mod tests;
