//! Benchmark 7 (issue 7, event-driven alerts): (a) time from a task failing in Swarm to the
//! alert request reaching the fake Discord, through the real bot; (b) a burst of 1000 Docker
//! events through `classify` and the watcher's event fast path, counting that none is lost;
//! (c) resident memory of `sprocket-ops serve` with the alert watcher (events, reconciler and
//! probes) running, next to the same bot without `[alerts]`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use async_trait::async_trait;
use bollard::models::{EventActor, EventMessage, EventMessageTypeEnum};
use ops_core::alerts::sources::{classify, EventFeed, SERVICE_NAME_LABEL};
use ops_core::alerts::{
    AlertControl, AlertHub, AlertSink, AlertStore, AlertsConfig, Notification, NotificationKind,
    SinkError, SystemClock, Watcher, WatcherDeps, EVENT_CAPACITY,
};
use sprocket_ops_tests::probe_servers;

use super::*;

// 7a.
const LATENCY_FAILURES: usize = 50;
const LATENCY_WARMUP: usize = 2;
/// Spacing between two alerts: longer than the per-channel governor period (2 s), so each
/// failure's alert is its own message, never coalesced or held back by the governor.
const LATENCY_SPACING: Duration = Duration::from_millis(2_300);
const LATENCY_TARGET_P50: Duration = Duration::from_millis(500);
const LATENCY_TARGET_P95: Duration = Duration::from_secs(2);
// 7b.
const BURST_EVENTS: usize = 1000;
const BURST_SERVICES: usize = 100;
// 7c.
const RSS_ROUNDS_WAIT: Duration = Duration::from_secs(10);
const RSS_TARGET_KIB: u64 = 30 * 1024;

pub(super) const METHOD_LATENCY: &str = "\
The real bot in-process (`TestBot`: serenity/poise against the fake Discord, SQLite, the real \
Docker engine) with an `[alerts]` section at the defaults (`event_failure_threshold = 1`, \
`group_wait_ms = 300`, `probe_interval_secs = 30`, governor one message per 2 s per channel) \
except `services` (only this benchmark's services), `reminder_minutes = 0` and \
`heartbeat_minutes = 0`, routed to the alerts channel. The benchmark subscribes to the \
engine's Docker events itself (`type=container`, `event=die`). Then, one after another, it \
creates a 1-replica platform service of `sprocket-ops-testsvc:broken` with restart condition \
`none` (so each service fails exactly once), waits for the alert message naming it, and \
waits until 2.3 s after that message before the next service (longer than the governor \
period, so every failure is its own message). The failure time is the container's `die` \
event `timeNano` (the engine's clock); the alert time is when the fake Discord received the \
`POST /channels/{alerts}/messages` naming the service (its `Instant`, converted to wall-clock \
time with an (Instant, SystemTime) pair taken at the start). 2 warm-up failures are not \
counted, then 50 are. p50/p95 are nearest-rank. Caveats: both clocks are this machine's; \
the 300 ms group wait is part of the measured time by design (it is what turns a burst into \
one message); the fake Discord runs on the same two cores.";

pub(super) const METHOD_BURST: &str = "\
Synthetic, in-process: 1000 Docker `container die` event messages (bollard `EventMessage`s \
as the engine's `/events` stream delivers them: `com.docker.swarm.service.name` = one of 100 \
service names, `exitCode` = 1, 10 per service, interleaved) are run through the production \
`classify` and pushed with `try_send` into a channel of the production capacity \
(`EVENT_CAPACITY` = 1024), exactly what the Docker event task does (a full channel drops and \
counts). A `Watcher` (production `run` loop, SQLite alert store, `AlertHub`, a counting sink; \
`probe_interval_secs = 3600` so only the event fast path runs after the first round; \
`restart_loop_count = 2`, `restart_loop_window_secs = 3600`) consumes them. No event is lost \
when: nothing was dropped, and every service's open alert says `restart loop: 10 task exits` \
(the interpreter counted all 10 exits of each of the 100 services: 1000 in total), and the \
firing message(s) list all 100 services. Times are from the first `try_send`. Caveat: the \
events do not come from a real engine (1000 real task failures would take the 2-core test \
swarm many minutes); the Docker connection and bollard's JSON decoding are not measured.";

pub(super) const METHOD_RSS: &str = "\
As benchmark 2 (release `sprocket-ops serve`, fake Discord and fake GitHub, read \
`/proc/<pid>/status` and kill), twice: once without `[alerts]` (the baseline) and once with \
`[alerts]` watching everything: the Docker events stream, the snapshot reconciler and four \
probes every second (`probe_interval_secs = 1`: `tcp` and `tls` against a local TLS server \
started by the benchmark, `http` against the fake GitHub, `postgres` `SELECT 1` against the \
test Postgres), routed to the alerts channel. In both runs VmRSS is read 10 s after the \
slash commands were registered (with the watcher: about 10 rounds). The target is the idle target of benchmark 2. Caveat: one \
sample each; the shared swarm's other services are visible to the reconciler (their count is \
not controlled).";

/// True when `text` names `name` as a whole service name (not as a prefix of a longer one).
fn mentions(text: &str, name: &str) -> bool {
    text.match_indices(name).any(|(i, _)| {
        !text[i + name.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    })
}

pub(super) async fn bench_alert_latency() -> anyhow::Result<Measured> {
    let swarm = TestSwarm::connect().await;
    let prefix = "prod-balrt";
    let watched = format!("{prefix}-{}-*", env::run_id());
    let bot = TestBot::start_with(BotOptions {
        extra_config: format!(
            "\n[alerts]\nreminder_minutes = 0\nheartbeat_minutes = 0\nservices = [\"{watched}\"]\n\n\
             [alerts.routing]\ndefault_channel = {ALERTS}\n"
        ),
        ..Default::default()
    })
    .await;
    // The die events of this benchmark's services: name -> first timeNano.
    let dies: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
    let name_prefix = format!("{prefix}-{}-", env::run_id());
    let events = {
        let dies = dies.clone();
        let docker = swarm.docker().clone();
        tokio::spawn(async move {
            let options = bollard::query_parameters::EventsOptions {
                since: None,
                until: None,
                filters: Some(HashMap::from([
                    ("type".to_string(), vec!["container".to_string()]),
                    ("event".to_string(), vec!["die".to_string()]),
                ])),
            };
            let mut stream = docker.events(Some(options));
            while let Some(Ok(m)) = stream.next().await {
                let service = m
                    .actor
                    .as_ref()
                    .and_then(|a| a.attributes.as_ref())
                    .and_then(|a| a.get(SERVICE_NAME_LABEL))
                    .cloned();
                let nano = m
                    .time_nano
                    .or(m.time.map(|t| t.saturating_mul(1_000_000_000)));
                if let (Some(s), Some(n)) = (service, nano) {
                    if s.starts_with(&name_prefix) {
                        dies.lock().unwrap().entry(s).or_insert(n);
                    }
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await; // the subscription is open
    let result = measure_latency(&swarm, &bot, &dies, prefix).await;
    events.abort();
    let violations = bot.discord.violations();
    drop(bot);
    let (guards, result) = result;
    remove_services(guards).await;
    let mut m = result?;
    if !violations.is_empty() {
        m.details.push(format!(
            "fake Discord recorded {} violation(s), e.g. {}",
            violations.len(),
            clip(&violations[0], 300)
        ));
        m.pass = false;
    }
    Ok(m)
}

async fn measure_latency(
    swarm: &TestSwarm,
    bot: &TestBot,
    dies: &Mutex<HashMap<String, i64>>,
    prefix: &str,
) -> (Vec<ServiceGuard>, anyhow::Result<Measured>) {
    let mut guards = Vec::new();
    let (i0, s0) = (Instant::now(), SystemTime::now());
    let wall = |at: Instant| s0 + at.saturating_duration_since(i0);
    let post_path = format!("/channels/{ALERTS}/messages");
    let mut latencies = Vec::new();
    let mut details = Vec::new();
    let mut shared_messages = 0;
    for i in 0..LATENCY_WARMUP + LATENCY_FAILURES {
        let guard = swarm
            .create_service(bench_service(prefix, "broken").restart_condition("none"))
            .await;
        let name = guard.name().to_string();
        guards.push(guard);
        let names: Vec<String> = guards.iter().map(|g| g.name().to_string()).collect();
        let outcome: anyhow::Result<(f64, usize)> = async {
            bot.discord
                .wait_channel_message(
                    ALERTS,
                    |m| mentions(&m.text(), &name),
                    Duration::from_secs(60),
                )
                .await
                .with_context(|| format!("no alert for {name} within 60 s"))?;
            let (at, listed) = bot
                .discord
                .requests()
                .into_iter()
                .filter(|q| q.method == "POST" && q.path.ends_with(&post_path))
                .filter_map(|q| {
                    let body = q.body.as_ref()?.to_string();
                    let named = names.iter().filter(|n| mentions(&body, n)).count();
                    mentions(&body, &name).then_some((q.at, named))
                })
                .min_by_key(|(at, _)| *at)
                .ok_or_else(|| anyhow!("no POST to the alerts channel names {name}"))?;
            let mut die = None;
            for _ in 0..100 {
                die = dies.lock().unwrap().get(&name).copied();
                if die.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let die = die.ok_or_else(|| anyhow!("no die event seen for {name}"))?;
            let died = UNIX_EPOCH + Duration::from_nanos(die.max(0) as u64);
            let delay = signed_ms(wall(at), died);
            // Keep the governor out of the next measurement.
            let next = at + LATENCY_SPACING;
            tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
            Ok((delay, listed))
        }
        .await;
        let (delay, listed) = match outcome {
            Ok(x) => x,
            Err(e) => return (guards, Err(e)),
        };
        if listed > 1 {
            shared_messages += 1;
        }
        if i < LATENCY_WARMUP {
            details.push(format!("warm-up {}: {delay:.0} ms (not counted)", i + 1));
            continue;
        }
        latencies.push(Duration::from_secs_f64(delay.max(0.0) / 1000.0));
        if (i - LATENCY_WARMUP) % 10 == 9 {
            log(format!("7a: {} failures measured", i + 1 - LATENCY_WARMUP));
        }
        details.push(format!("failure {}: {delay:.0} ms", i + 1 - LATENCY_WARMUP));
    }
    let mut sorted = latencies.clone();
    sorted.sort();
    let p50 = percentile(&sorted, 50.0);
    let p95 = percentile(&sorted, 95.0);
    let max = *sorted.last().unwrap_or(&Duration::ZERO);
    let min = *sorted.first().unwrap_or(&Duration::ZERO);
    let mut out = vec![format!(
        "{} failures: min {}, p50 {}, p95 {}, max {}; messages naming more than one \
         benchmark service: {shared_messages}",
        sorted.len(),
        ms(min),
        ms(p50),
        ms(p95),
        ms(max)
    )];
    out.extend(details);
    (
        guards,
        Ok(Measured {
            result: format!("p50 {}, p95 {}, max {}", ms(p50), ms(p95), ms(max)),
            pass: p50 < LATENCY_TARGET_P50 && p95 < LATENCY_TARGET_P95,
            details: out,
        }),
    )
}

/// Counts what the watcher delivers.
#[derive(Default)]
struct CountingSink {
    got: Mutex<Vec<(Instant, Vec<Notification>)>>,
}

#[async_trait]
impl AlertSink for CountingSink {
    async fn deliver(&self, _channel: u64, n: &[Notification]) -> Result<(), SinkError> {
        self.got.lock().unwrap().push((Instant::now(), n.to_vec()));
        Ok(())
    }
}

fn die_event(service: &str, nano: i64) -> EventMessage {
    EventMessage {
        typ: Some(EventMessageTypeEnum::CONTAINER),
        action: Some("die".into()),
        actor: Some(EventActor {
            id: Some(format!("c{nano}")),
            attributes: Some(HashMap::from([
                (SERVICE_NAME_LABEL.to_string(), service.to_string()),
                ("exitCode".to_string(), "1".to_string()),
            ])),
        }),
        time: Some(nano / 1_000_000_000),
        time_nano: Some(nano),
        ..Default::default()
    }
}

/// `restart loop: N task exits ...` -> N.
fn loop_count(summary: &str) -> Option<u64> {
    summary
        .strip_prefix("restart loop: ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub(super) async fn bench_alert_burst() -> anyhow::Result<Measured> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("alerts.db").display());
    ops_core::store::connect(&url, None)
        .await
        .map_err(|e| anyhow!("sqlite: {e}"))?;
    let pool = sqlx::SqlitePool::connect(&url).await?;
    let store: Arc<dyn AlertStore> = Arc::new(ops_core::store::SqliteStore::new(pool));
    let mut cfg = AlertsConfig::with_channel(ALERTS);
    cfg.probe_interval_secs = 3600;
    cfg.restart_loop_count = 2;
    cfg.restart_loop_window_secs = 3600;
    cfg.reminder_minutes = 0;
    cfg.heartbeat_minutes = 0;
    let sink = Arc::new(CountingSink::default());
    let hub = AlertHub::new();
    let deps = WatcherDeps {
        store,
        sink: sink.clone(),
        clock: Arc::new(SystemClock),
        swarm: None,
        docker_events: None,
        layers: Arc::new(|_, _| Some("platform".to_string())),
        hub: Some(hub.clone()),
    };
    let mut w = Watcher::new(cfg, deps)
        .await
        .map_err(|e| anyhow!("watcher: {e}"))?;
    let (tx, rx) = tokio::sync::mpsc::channel(EVENT_CAPACITY);
    let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
    w.attach_events(EventFeed {
        rx,
        cursor: Arc::new(std::sync::atomic::AtomicI64::new(0)),
        dropped: dropped.clone(),
        handle: tokio::spawn(async {}),
    });
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(w.run(stop_rx));
    tokio::time::sleep(Duration::from_millis(300)).await; // the round at start has run
    let base = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    let services: Vec<String> = (0..BURST_SERVICES)
        .map(|i| format!("burst-{i:03}"))
        .collect();
    let messages: Vec<EventMessage> = (0..BURST_EVENTS)
        .map(|i| die_event(&services[i % BURST_SERVICES], base + i as i64))
        .collect();
    let t0 = Instant::now();
    let (mut sent, mut unclassified) = (0u64, 0u64);
    for m in &messages {
        match classify(m) {
            Some(ev) => match tx.try_send(ev) {
                Ok(()) => sent += 1,
                Err(_) => {
                    dropped.fetch_add(1, Ordering::SeqCst);
                }
            },
            None => unclassified += 1,
        }
    }
    let pushed = t0.elapsed();
    let counted = |hub: &AlertHub| -> u64 {
        hub.open_alerts()
            .iter()
            .filter_map(|a| loop_count(&a.summary))
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut all_counted = None;
    let mut first_message = None;
    while Instant::now() < deadline && (all_counted.is_none() || first_message.is_none()) {
        if all_counted.is_none() && counted(&hub) >= BURST_EVENTS as u64 {
            all_counted = Some(t0.elapsed());
        }
        if first_message.is_none() {
            first_message = sink.got.lock().unwrap().first().map(|(at, _)| *at - t0);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await; // anything coalesced behind the governor
                                                      // Read before stopping: a stopped watcher's hub publishes nothing.
    let total = counted(&hub);
    let open = hub.open_alerts();
    let _ = stop.send(true);
    let _ = task.await;
    let per_service: Vec<u64> = open.iter().filter_map(|a| loop_count(&a.summary)).collect();
    let got = sink.got.lock().unwrap().clone();
    let firing: Vec<&Notification> = got
        .iter()
        .flat_map(|(_, ns)| ns)
        .filter(|n| n.kind == NotificationKind::Firing)
        .collect();
    let mut listed: Vec<&str> = firing.iter().flat_map(|n| n.keys()).collect();
    listed.sort();
    listed.dedup();
    let dropped = dropped.load(Ordering::SeqCst);
    let lost = BURST_EVENTS as u64 - total.min(BURST_EVENTS as u64);
    let pass = dropped == 0
        && unclassified == 0
        && total == BURST_EVENTS as u64
        && per_service.len() == BURST_SERVICES
        && per_service
            .iter()
            .all(|n| *n == (BURST_EVENTS / BURST_SERVICES) as u64)
        && listed.len() == BURST_SERVICES;
    let t = |d: Option<Duration>| d.map(ms).unwrap_or_else(|| "never (60 s)".into());
    Ok(Measured {
        result: format!(
            "{total} of {BURST_EVENTS} events counted, {dropped} dropped, {lost} lost; \
             {} service(s) in {} firing message(s); all counted after {}",
            listed.len(),
            got.len(),
            t(all_counted)
        ),
        pass,
        details: vec![
            format!(
                "{BURST_EVENTS} die events for {BURST_SERVICES} services classified and pushed \
                 in {} ({sent} pushed, {unclassified} not classified, {dropped} dropped: channel \
                 full)",
                ms(pushed)
            ),
            format!(
                "interpreter counts per service: min {}, max {} over {} open alerts (sum {total})",
                per_service.iter().min().copied().unwrap_or(0),
                per_service.iter().max().copied().unwrap_or(0),
                per_service.len()
            ),
            format!(
                "first firing message delivered after {} (group wait 300 ms included); {} \
                 message(s) in total listing {} distinct service(s)",
                t(first_message),
                got.len(),
                listed.len()
            ),
        ],
    })
}

async fn serve_rss(extra: &str, wait: Duration) -> anyhow::Result<(u64, u64, u64, usize)> {
    let bin = ops_binary()?;
    let discord = fake_discord().await;
    let github = FakeGithub::start().await;
    let extra = extra.replace("{github}", &github.api_base_url());
    let mut serve = Serve::start(&bin, &discord, &github, &extra).await?;
    tokio::time::sleep(wait).await;
    serve.check_running("before its memory was read")?;
    let (rss, hwm, threads) = serve.memory()?;
    serve.stop().await?;
    let alerts_posted = discord.channel_messages(ALERTS).await.len();
    Ok((rss, hwm, threads, alerts_posted))
}

pub(super) async fn bench_alert_rss() -> anyhow::Result<Measured> {
    let tls = probe_servers::tls_server("bench-alerts", Duration::from_secs(30 * 86_400)).await;
    let pg = env::postgres_url();
    // The probe refuses a password in the URL: it goes to a file.
    let (pg_url, pg_password) = match pg.split_once("://").and_then(|(scheme, rest)| {
        let (auth, host) = rest.split_once('@')?;
        let (user, pw) = auth.split_once(':')?;
        Some((format!("{scheme}://{user}@{host}"), pw.to_string()))
    }) {
        Some(x) => x,
        None => (pg.clone(), String::new()),
    };
    let secrets = tempfile::tempdir()?;
    let pw_path = secrets.path().join("pg-password");
    std::fs::write(&pw_path, &pg_password)?;
    let extra = format!(
        r#"
[alerts]
probe_interval_secs = 1
reminder_minutes = 0
heartbeat_minutes = 0

[alerts.routing]
default_channel = {ALERTS}

[[alerts.probes]]
name = "tcp"
kind = "tcp"
target = "{target}"
layer = "layer_1"

[[alerts.probes]]
name = "tls"
kind = "tls"
target = "{target}"
server_name = "localhost"
layer = "layer_1"

[[alerts.probes]]
name = "github"
kind = "http"
url = "{{github}}"
layer = "layer_2"
severity = "warning"

[[alerts.probes]]
name = "postgres"
kind = "postgres"
url = "{pg_url}"
password = {{ file = "{pw}" }}
layer = "layer_2"
"#,
        target = tls.target(),
        pw = pw_path.display(),
    );
    let baseline = serve_rss("", RSS_ROUNDS_WAIT)
        .await
        .context("without [alerts]")?;
    let with = serve_rss(&extra, RSS_ROUNDS_WAIT)
        .await
        .context("with [alerts]")?;
    let mib = |k: u64| k as f64 / 1024.0;
    Ok(Measured {
        result: format!(
            "VmRSS {:.1} MiB with the watcher (VmHWM {:.1} MiB); {:.1} MiB without",
            mib(with.0),
            mib(with.1),
            mib(baseline.0)
        ),
        pass: with.0 < RSS_TARGET_KIB,
        details: vec![
            format!(
                "without [alerts], {} s after registration: VmRSS {} kB, VmHWM {} kB, {} threads",
                RSS_ROUNDS_WAIT.as_secs(),
                baseline.0,
                baseline.1,
                baseline.2
            ),
            format!(
                "with [alerts] (events, reconciler, 4 probes every second), {} s after \
                 registration: VmRSS {} kB, VmHWM {} kB, {} threads; {} message(s) in the alerts \
                 channel by then",
                RSS_ROUNDS_WAIT.as_secs(),
                with.0,
                with.1,
                with.2,
                with.3
            ),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_whole_service_names_only() {
        assert!(mentions("`prod-balrt-r-1`: exited", "prod-balrt-r-1"));
        assert!(!mentions("`prod-balrt-r-10`: exited", "prod-balrt-r-1"));
        assert!(mentions("a prod-balrt-r-1", "prod-balrt-r-1"));
        assert_eq!(loop_count("restart loop: 10 task exits in 3600s"), Some(10));
        assert_eq!(loop_count("a task exited with code 1"), None);
    }
}
