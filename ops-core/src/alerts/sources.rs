//! Where Swarm observations come from.
//!
//! - [`spawn_event_watcher`]: the Docker event stream (`type=service|container|node`) through
//!   bollard, classified by [`classify`] into [`SwarmEvent`]s on a bounded channel. After a
//!   dropped connection it reconnects with `since=` the last event seen, so what happened in
//!   between is backfilled (events at or before the last one seen are skipped). When the
//!   channel is full events are dropped and counted: the reconciler covers for them.
//! - [`EventInterpreter`]: events -> [`Observation`]s (task exits with a non-zero code, OOM,
//!   restart loops = N exits within a window, update paused / rolled back, node down). All
//!   but node down are *decisive* (a failure by themselves: they fire after
//!   `event_failure_threshold`, not after threshold rounds); a node's state can flap, so
//!   node down counts like any other failing observation.
//! - [`reconcile`]: every probe interval, from [`SwarmSnapshot`]: services with fewer running
//!   than desired tasks or recently failed tasks, paused updates, nodes not ready. A missed
//!   event cannot hide a failure, and a fixed service produces the good observations that
//!   resolve its alert.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bollard::models::{EventMessage, EventMessageTypeEnum};
use bollard::query_parameters::EventsOptions;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::config::Severity;
use super::engine::Observation;
use crate::base::glob_match;
use crate::layers::LayerMap;
use crate::swarm::docker::DockerSwarm;
use crate::swarm::SwarmSnapshot;

/// The label Swarm puts on task containers naming their service.
pub const SERVICE_NAME_LABEL: &str = "com.docker.swarm.service.name";
/// Exit codes of containers stopped by a signal Swarm sends on scale-down, update or removal
/// (SIGINT, SIGKILL, SIGTERM): not crashes. An OOM kill has its own `oom` event.
pub const STOP_EXIT_CODES: [i64; 3] = [130, 137, 143];

/// Alert key of a service's health.
pub fn service_key(name: &str) -> String {
    format!("service:{name}")
}
/// Alert key of a service's update (paused, rolled back).
pub fn update_key(name: &str) -> String {
    format!("service:{name}:update")
}
/// Alert key of a node.
pub fn node_key(hostname: &str) -> String {
    format!("node:{hostname}")
}

/// A Docker event that matters for alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwarmEvent {
    /// A task container of `service` exited with a non-zero code.
    TaskExited {
        service: String,
        exit_code: i64,
    },
    /// A task container of `service` was killed for lack of memory.
    Oom {
        service: String,
    },
    /// `service`'s update is paused or rolling back (`state` as Docker says).
    UpdateTrouble {
        service: String,
        state: String,
    },
    /// A node went down / came back.
    NodeDown {
        node: String,
    },
    NodeReady {
        node: String,
    },
}

/// Classifies one Docker event (pure).
pub fn classify(m: &EventMessage) -> Option<SwarmEvent> {
    let action = m.action.as_deref().unwrap_or("");
    let attrs = m.actor.as_ref().and_then(|a| a.attributes.as_ref());
    let attr = |k: &str| attrs.and_then(|a| a.get(k)).cloned();
    match m.typ? {
        EventMessageTypeEnum::CONTAINER => {
            let service = attr(SERVICE_NAME_LABEL)?;
            match action {
                "die" => {
                    let exit_code = attr("exitCode")?.parse::<i64>().ok()?;
                    (exit_code != 0 && !STOP_EXIT_CODES.contains(&exit_code))
                        .then_some(SwarmEvent::TaskExited { service, exit_code })
                }
                "oom" => Some(SwarmEvent::Oom { service }),
                _ => None,
            }
        }
        EventMessageTypeEnum::SERVICE if action == "update" => {
            let state = attr("updatestate.new")?;
            matches!(
                state.as_str(),
                "paused" | "rollback_started" | "rollback_paused"
            )
            .then(|| SwarmEvent::UpdateTrouble {
                service: attr("name").unwrap_or_default(),
                state,
            })
            .filter(
                |e| !matches!(e, SwarmEvent::UpdateTrouble { service, .. } if service.is_empty()),
            )
        }
        EventMessageTypeEnum::NODE if action == "update" => {
            let node = attr("name")?;
            match attr("state.new").as_deref() {
                Some("down") | Some("disconnected") | Some("unknown") => {
                    Some(SwarmEvent::NodeDown { node })
                }
                Some("ready") => Some(SwarmEvent::NodeReady { node }),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The receiving end of [`spawn_event_watcher`].
pub struct EventFeed {
    pub rx: mpsc::Receiver<SwarmEvent>,
    /// Unix seconds of the newest event seen (persist it to backfill after a restart).
    pub cursor: Arc<AtomicI64>,
    /// Events dropped because the channel was full.
    pub dropped: Arc<AtomicU64>,
    pub handle: JoinHandle<()>,
}

impl Drop for EventFeed {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Watches the engine's events until the receiver is dropped. `since_secs`: backfill from
/// there on the first connection (e.g. the cursor persisted by the previous run).
pub fn spawn_event_watcher(
    swarm: Arc<DockerSwarm>,
    since_secs: Option<i64>,
    capacity: usize,
) -> EventFeed {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let cursor = Arc::new(AtomicI64::new(since_secs.unwrap_or(0)));
    let dropped = Arc::new(AtomicU64::new(0));
    let handle = tokio::spawn(watch_events(swarm, tx, cursor.clone(), dropped.clone()));
    EventFeed {
        rx,
        cursor,
        dropped,
        handle,
    }
}

async fn watch_events(
    swarm: Arc<DockerSwarm>,
    tx: mpsc::Sender<SwarmEvent>,
    cursor: Arc<AtomicI64>,
    dropped: Arc<AtomicU64>,
) {
    let mut backoff = Duration::from_millis(500);
    let mut last_nano: i64 = 0;
    loop {
        if tx.is_closed() {
            return;
        }
        let docker = match swarm.client().await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(detail = e.detail(), "alerts: docker events: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        let since = cursor.load(Ordering::SeqCst);
        let options = EventsOptions {
            since: (since > 0).then(|| since.to_string()),
            until: None,
            filters: Some(HashMap::from([(
                "type".to_string(),
                vec!["service".into(), "container".into(), "node".into()],
            )])),
        };
        let mut stream = docker.events(Some(options));
        while let Some(item) = stream.next().await {
            match item {
                Ok(m) => {
                    backoff = Duration::from_millis(500);
                    let nano = m
                        .time_nano
                        .or(m.time.map(|t| t.saturating_mul(1_000_000_000)))
                        .unwrap_or(0);
                    if nano != 0 && nano <= last_nano {
                        continue; // backfilled twice
                    }
                    last_nano = last_nano.max(nano);
                    if let Some(t) = m.time {
                        cursor.fetch_max(t, Ordering::SeqCst);
                    }
                    if let Some(ev) = classify(&m) {
                        match tx.try_send(ev) {
                            Ok(()) => {}
                            Err(mpsc::error::TrySendError::Full(_)) => {
                                dropped.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(mpsc::error::TrySendError::Closed(_)) => return,
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "alerts: docker event stream ended");
                    break;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Which services are watched: globs to include (none: all) and to exclude.
#[derive(Debug, Clone, Default)]
pub struct ServiceFilter {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

impl ServiceFilter {
    pub fn matches(&self, name: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| glob_match(p, name)))
            && !self.exclude.iter().any(|p| glob_match(p, name))
    }
}

/// Service name + labels -> layer.
pub type LayerResolver =
    Arc<dyn Fn(&str, &BTreeMap<String, String>) -> Option<String> + Send + Sync>;

/// A [`LayerResolver`] from the configured [`LayerMap`].
pub fn layer_resolver(map: LayerMap) -> LayerResolver {
    Arc::new(move |name, labels| {
        map.layer_of(name, |k| labels.get(k).map(String::as_str))
            .map(str::to_string)
    })
}

/// Turns events into observations; remembers recent exits to spot restart loops.
#[derive(Debug, Clone)]
pub struct EventInterpreter {
    pub restart_loop_count: u32,
    pub restart_loop_window_ms: i64,
    exits: HashMap<String, VecDeque<i64>>,
}

impl EventInterpreter {
    pub fn new(restart_loop_count: u32, restart_loop_window_ms: i64) -> EventInterpreter {
        EventInterpreter {
            restart_loop_count,
            restart_loop_window_ms,
            exits: HashMap::new(),
        }
    }

    /// `layer_of`: the layer of a service (from the last snapshot).
    pub fn interpret(
        &mut self,
        now: i64,
        ev: &SwarmEvent,
        filter: &ServiceFilter,
        layer_of: &dyn Fn(&str) -> Option<String>,
    ) -> Option<Observation> {
        match ev {
            SwarmEvent::TaskExited { service, exit_code } => {
                if !filter.matches(service) {
                    return None;
                }
                let q = self.exits.entry(service.clone()).or_default();
                q.push_back(now);
                while q
                    .front()
                    .is_some_and(|t| now - t > self.restart_loop_window_ms)
                {
                    q.pop_front();
                }
                let n = q.len();
                let summary = if n >= self.restart_loop_count as usize {
                    format!(
                        "restart loop: {n} task exits in {}s (last exit code {exit_code})",
                        self.restart_loop_window_ms / 1000
                    )
                } else {
                    format!("a task exited with code {exit_code}")
                };
                let layer = layer_of(service);
                Some(
                    Observation::failing(
                        service_key(service),
                        layer.as_deref(),
                        Severity::Critical,
                        summary,
                    )
                    .decisive(),
                )
            }
            SwarmEvent::Oom { service } => filter.matches(service).then(|| {
                Observation::failing(
                    service_key(service),
                    layer_of(service).as_deref(),
                    Severity::Critical,
                    "a task was killed: out of memory",
                )
                .decisive()
            }),
            SwarmEvent::UpdateTrouble { service, state } => filter.matches(service).then(|| {
                Observation::failing(
                    update_key(service),
                    layer_of(service).as_deref(),
                    Severity::Warning,
                    format!("update {}", state.replace('_', " ")),
                )
                .decisive()
            }),
            SwarmEvent::NodeDown { node } => Some(Observation::failing(
                node_key(node),
                None,
                Severity::Critical,
                "node is down",
            )),
            SwarmEvent::NodeReady { node } => Some(Observation::ok(node_key(node), None, "ready")),
        }
    }
}

/// Observations from one snapshot (pure): every watched service, its update, every node.
/// Failed or rejected tasks newer than `recent_failure_ms` count as failing.
pub fn reconcile(
    snapshot: &SwarmSnapshot,
    now: i64,
    recent_failure_ms: i64,
    filter: &ServiceFilter,
    layers: &LayerResolver,
) -> Vec<Observation> {
    let mut out = Vec::new();
    for s in snapshot.services.iter().filter(|s| filter.matches(&s.name)) {
        let layer = layers(&s.name, &s.labels);
        let tasks: Vec<_> = snapshot
            .tasks
            .iter()
            .filter(|t| t.service_id == s.id)
            .collect();
        let running = s.running_tasks.unwrap_or_else(|| {
            tasks
                .iter()
                .filter(|t| t.state == "running" && t.desired_state == "running")
                .count() as u64
        });
        let desired = s.desired_tasks.or(s.replicas).unwrap_or(0);
        let mut failed: Vec<_> = tasks
            .iter()
            .filter(|t| matches!(t.state.as_str(), "failed" | "rejected"))
            .filter(|t| {
                t.timestamp
                    .as_deref()
                    .and_then(|ts| chrono::DateTime::parse_from_rfc3339(ts).ok())
                    .is_some_and(|ts| now - ts.timestamp_millis() <= recent_failure_ms)
            })
            .collect();
        failed.sort_by(|a, b| a.timestamp.cmp(&b.timestamp));
        let mut reasons = Vec::new();
        if running < desired {
            reasons.push(format!("{running} of {desired} tasks running"));
        }
        if let Some(last) = failed.last() {
            let what = match (last.exit_code, last.err.as_deref()) {
                (Some(c), _) if c != 0 => format!("exit code {c}"),
                (_, Some(e)) => truncate(e, 120),
                _ => last.state.clone(),
            };
            reasons.push(format!(
                "{} failed task(s) in the last {}s (last: {what})",
                failed.len(),
                recent_failure_ms / 1000
            ));
        }
        let key = service_key(&s.name);
        out.push(if reasons.is_empty() {
            Observation::ok(
                key,
                layer.as_deref(),
                format!("{running} of {desired} tasks running"),
            )
        } else {
            Observation::failing(
                key,
                layer.as_deref(),
                Severity::Critical,
                reasons.join("; "),
            )
        });
        let update = update_key(&s.name);
        out.push(match s.update_state.as_deref() {
            Some(st @ ("paused" | "rollback_paused" | "rollback_started")) => Observation::failing(
                update,
                layer.as_deref(),
                Severity::Warning,
                format!("update {}", st.replace('_', " ")),
            ),
            _ => Observation::ok(update, layer.as_deref(), "no update in trouble"),
        });
    }
    for n in &snapshot.nodes {
        let key = node_key(&n.hostname);
        out.push(if n.state == "ready" {
            Observation::ok(key, None, "ready")
        } else {
            Observation::failing(
                key,
                None,
                Severity::Critical,
                format!("node is {}", n.state),
            )
        });
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        s.chars().take(max).chain(std::iter::once('…')).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::{NodeInfo, ServiceInfo, TaskInfo};
    use bollard::models::EventActor;

    fn ev(typ: EventMessageTypeEnum, action: &str, attrs: &[(&str, &str)]) -> EventMessage {
        EventMessage {
            typ: Some(typ),
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some("x".into()),
                attributes: Some(
                    attrs
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn alerts_classify_docker_events() {
        use EventMessageTypeEnum::*;
        let s = SERVICE_NAME_LABEL;
        let cases = [
            (
                ev(CONTAINER, "die", &[(s, "web"), ("exitCode", "1")]),
                Some(SwarmEvent::TaskExited {
                    service: "web".into(),
                    exit_code: 1,
                }),
            ),
            (ev(CONTAINER, "die", &[(s, "web"), ("exitCode", "0")]), None),
            (
                ev(CONTAINER, "die", &[(s, "web"), ("exitCode", "143")]),
                None,
            ),
            (ev(CONTAINER, "die", &[("exitCode", "1")]), None),
            (
                ev(CONTAINER, "oom", &[(s, "web")]),
                Some(SwarmEvent::Oom {
                    service: "web".into(),
                }),
            ),
            (
                ev(
                    SERVICE,
                    "update",
                    &[("name", "api"), ("updatestate.new", "paused")],
                ),
                Some(SwarmEvent::UpdateTrouble {
                    service: "api".into(),
                    state: "paused".into(),
                }),
            ),
            (
                ev(
                    SERVICE,
                    "update",
                    &[("name", "api"), ("updatestate.new", "completed")],
                ),
                None,
            ),
            (
                ev(NODE, "update", &[("name", "n1"), ("state.new", "down")]),
                Some(SwarmEvent::NodeDown { node: "n1".into() }),
            ),
            (
                ev(NODE, "update", &[("name", "n1"), ("state.new", "ready")]),
                Some(SwarmEvent::NodeReady { node: "n1".into() }),
            ),
        ];
        for (m, want) in cases {
            assert_eq!(classify(&m), want, "{m:?}");
        }
    }

    #[test]
    fn alerts_restart_loop_within_window() {
        let mut i = EventInterpreter::new(3, 10_000);
        let f = ServiceFilter::default();
        let e = SwarmEvent::TaskExited {
            service: "web".into(),
            exit_code: 2,
        };
        let no_layer = |_: &str| Some("platform".to_string());
        let s: Vec<String> = [0, 1_000, 2_000, 30_000]
            .iter()
            .map(|t| i.interpret(*t, &e, &f, &no_layer).unwrap().summary)
            .collect();
        assert!(s[1].starts_with("a task exited"), "{s:?}");
        assert!(s[2].starts_with("restart loop: 3 task exits"), "{s:?}");
        assert!(s[3].starts_with("a task exited"), "window passed: {s:?}");
        let other = ServiceFilter {
            include: vec!["api*".into()],
            exclude: vec![],
        };
        assert!(i.interpret(0, &e, &other, &no_layer).is_none());
    }

    #[test]
    fn alerts_reconcile_snapshot() {
        let svc = |id: &str, name: &str, running, desired, update: Option<&str>| ServiceInfo {
            id: id.into(),
            name: name.into(),
            image: "img".into(),
            replicas: Some(desired),
            labels: Default::default(),
            running_tasks: Some(running),
            desired_tasks: Some(desired),
            update_state: update.map(str::to_string),
            update_message: None,
            version: 1,
        };
        let task = |sid: &str, state: &str, ts: &str, code| TaskInfo {
            id: "t".into(),
            service_id: sid.into(),
            slot: Some(1),
            node_id: None,
            desired_state: "shutdown".into(),
            state: state.into(),
            message: None,
            err: None,
            exit_code: Some(code),
            timestamp: Some(ts.into()),
        };
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:10:00Z")
            .unwrap()
            .timestamp_millis();
        let snap = SwarmSnapshot {
            services: vec![
                svc("1", "down", 0, 1, None),
                svc("2", "crashy", 1, 1, Some("paused")),
                svc("3", "fine", 2, 2, None),
                svc("4", "old-crash", 1, 1, None),
            ],
            tasks: vec![
                task("2", "failed", "2026-01-01T00:09:50Z", 2),
                task("4", "failed", "2026-01-01T00:01:00Z", 1),
            ],
            nodes: vec![NodeInfo {
                id: "n".into(),
                hostname: "h1".into(),
                role: "manager".into(),
                availability: "active".into(),
                state: "down".into(),
            }],
        };
        let layers: LayerResolver = Arc::new(|_, _| Some("platform".into()));
        let obs = reconcile(&snap, now, 60_000, &ServiceFilter::default(), &layers);
        let get = |k: &str| obs.iter().find(|o| o.key == k).unwrap();
        assert!(get("service:down").failing && get("service:down").summary.contains("0 of 1"));
        assert!(
            get("service:crashy").failing && get("service:crashy").summary.contains("exit code 2")
        );
        assert!(get("service:crashy:update").failing);
        assert!(!get("service:fine").failing);
        assert!(!get("service:old-crash").failing, "old failures age out");
        assert!(get("node:h1").failing);
        assert_eq!(get("service:down").layer.as_deref(), Some("platform"));
    }
}
