//! Benchmark 6: what `/deploy platform image:<tag>` adds over Pulumi's own run time for a
//! 30-resource update, and how often the deploy message is edited while pulumi applies.
//!
//! Both sides run the same `pulumi` stand-in (tests/pulumi-standin) on the same 30 real Swarm
//! services, alternately: the stand-in alone (the commands the runbook and the bot run:
//! `config set`, `preview --json`, `up --yes --skip-preview --event-log`, timed here from
//! spawn to exit), then the full `/deploy` through the real bot (in-process `TestBot`) and the
//! fake Discord, from the interaction to the final report. The bot's own timeline comes from
//! its tracing events (`pulumi started` / `pulumi finished` / `swarm verification finished`), captured by a
//! layer installed here, on the same clock as the fake Discord's request log.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use serde_json::json;
use sprocket_ops_tests::bot::{BotOptions, TestBot};
use sprocket_ops_tests::env;
use sprocket_ops_tests::fake_discord::RecordedRequest;
use sprocket_ops_tests::swarm::{ServiceGuard, TestService, TestSwarm};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::Layer as _;

use crate::{bench_id, clip, log, median, ms, remove_services, Measured, BENCH_LABEL};

/// Resources (Swarm services) in the project.
pub const SERVICES: usize = 30;
/// `step_delay_ms` of each run: the stand-in's work per resource step. 0 shows any fixed
/// cost of sprocket-ops at its plainest; 1000 is closer to a real provider and gives an apply
/// long enough to count message edits.
const RUNS: [u64; 6] = [0, 0, 0, 0, 0, 1000];
/// [`RUNS`], or `SPROCKET_BENCH_DEPLOY_RUNS` (comma-separated delays, for investigating).
fn runs() -> Vec<u64> {
    std::env::var("SPROCKET_BENCH_DEPLOY_RUNS")
        .ok()
        .map(|v| {
            v.split(',')
                .filter_map(|x| x.trim().parse().ok())
                .collect::<Vec<u64>>()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| RUNS.to_vec())
}

/// The absolute floor of the target.
const TARGET_FLOOR: Duration = Duration::from_millis(200);
/// The relative target: this share of pulumi's own run time.
const TARGET_SHARE: f64 = 0.05;
/// Discord's limit for edits of one interaction's messages: 5 requests per 5 s per webhook.
const DISCORD_EDITS_PER_5S: usize = 5;
const CONVERGE: Duration = Duration::from_secs(240);
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(600);

pub const METHOD: &str = "\
30 Swarm services (1 replica, stop-first updates) form the `platform` layer of a Pulumi \
project run by the `pulumi` stand-in (`tests/pulumi-standin`; it applies each image change \
to the real service through the Docker API; `step_delay_ms` adds work per resource step). \
Each run has two halves on the same project, each changing all 30 services (tags alternate \
`v2`/`main`): (1) **Pulumi alone**: the three commands a person (and the bot) runs, spawned \
here with the bot's exact argv and timed from spawn to exit: `pulumi config set image-tag <t> \
--stack prod`, `pulumi preview --json --stack prod --non-interactive`, `pulumi up --yes \
--skip-preview --non-interactive --stack prod --event-log <file>`; then the Swarm is left to \
converge. (2) **sprocket-ops**: `/deploy platform image:<t>` through the fake Discord to the \
real bot (in-process `TestBot`, SQLite store), from the moment the interaction is dispatched \
to the fake's receipt of the edit saying \"Deploy platform: succeeded\". The bot's timeline \
comes from its own tracing events (`pulumi started`/`pulumi finished` per process, `swarm \
verification finished`), captured in this process on the same monotonic clock as the fake's request log. \
**Overhead** = (request → final report) − (verification: `pulumi up` exit → the deployer's \
`swarm verification finished` event, i.e. waiting for the Swarm to converge, which is the \
Swarm's time, not pulumi's, and reported apart) − (Pulumi alone: config set + preview + up). It therefore includes the \
acknowledgement, authorisation, the lock, the Swarm snapshot, the extra `pulumi config get`, \
event-log tailing, the store writes and the final Discord edit. Target: overhead < max(5% of \
Pulumi alone, 200 ms) in every run. **Edits**: PATCH requests to the deploy message (the interaction's response, edited \
through its webhook token) seen by the fake Discord between `pulumi up` starting and exiting, per \
minute of apply; also the most edits in any 5 s window of the whole deploy, against \
Discord's limit of 5 per 5 s per webhook. Caveats: one machine with 2 cores shared by the \
bot, the fake Discord, the stand-in and the Docker engine; process start-up of the stand-in \
(a debug or release build, whichever was found) is part of both halves. How late the \
verification notices the Swarm's end is reported per run: its end against the latest \
`UpdateStatus.CompletedAt` of the 30 services (engine clock; this process's monotonic clock \
converted with one (Instant, SystemTime) pair; the deployer polls every second).";

// ------------------------------------------------------------------------------------------
// The bot's timeline, from its tracing events
// ------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Ev {
    at: Instant,
    message: String,
    command: String,
}

#[derive(Default)]
struct Fields {
    message: String,
    command: String,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_string(),
            "command" => self.command = value.to_string(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "command" => self.command = format!("{value:?}").trim_matches('"').to_string(),
            _ => {}
        }
    }
}

/// Records the runner's and the deployer's INFO events (a per-layer filter: [`wanted`]).
struct Capture(Arc<Mutex<Vec<Ev>>>);

fn wanted(m: &tracing::Metadata<'_>) -> bool {
    let t = m.target();
    m.is_event()
        && *m.level() <= tracing::Level::INFO
        && (t.starts_with("ops_core::pulumi") || t.starts_with("ops_core::deploy"))
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let at = Instant::now();
        let mut f = Fields::default();
        event.record(&mut f);
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(Ev {
            at,
            message: f.message,
            command: f.command,
        });
    }
}

/// The captured events, once the global subscriber is ours; `None` if another one was set
/// first (then only end-to-end times are reported).
fn capture() -> Option<Arc<Mutex<Vec<Ev>>>> {
    static CAPTURE: OnceLock<Option<Arc<Mutex<Vec<Ev>>>>> = OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let events = Arc::new(Mutex::new(Vec::new()));
            let capture =
                Capture(events.clone()).with_filter(tracing_subscriber::filter::filter_fn(wanted));
            // For investigating a result: `SPROCKET_BENCH_TRACE=ops_core=debug,commands=debug`
            // prints those events (with timestamps) on stderr too.
            let trace = std::env::var("SPROCKET_BENCH_TRACE")
                .ok()
                .filter(|f| !f.is_empty())
                .map(|f| {
                    tracing_subscriber::fmt::layer()
                        .with_writer(std::io::stderr)
                        .with_filter(tracing_subscriber::EnvFilter::new(f))
                });
            let subscriber = tracing_subscriber::registry().with(capture).with(trace);
            tracing::subscriber::set_global_default(subscriber)
                .ok()
                .map(|_| events)
        })
        .clone()
}

// ------------------------------------------------------------------------------------------
// The project and the stand-in
// ------------------------------------------------------------------------------------------

/// The stand-in: `SPROCKET_TEST_PULUMI`, else `pulumi` beside this program, else the debug one.
fn standin() -> anyhow::Result<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("SPROCKET_TEST_PULUMI").filter(|p| !p.is_empty()) {
        return Ok(p.into());
    }
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::current_exe()?.parent() {
        candidates.push(dir.join("pulumi"));
    }
    candidates.push(env::workspace_root().join("target/release/pulumi"));
    candidates.push(env::workspace_root().join("target/debug/pulumi"));
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            anyhow!(
                "the pulumi stand-in was not found ({candidates:?}): build it with \
                 `cargo build --release -p pulumi-standin` or set SPROCKET_TEST_PULUMI"
            )
        })
}

fn write_project(
    dir: &std::path::Path,
    guards: &[ServiceGuard],
    step_delay_ms: u64,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("Pulumi.yaml"), "name: platform\nruntime: nodejs\n")?;
    if !dir.join("Pulumi.prod.yaml").exists() {
        std::fs::write(
            dir.join("Pulumi.prod.yaml"),
            "config:\n  platform:image-tag: main\n",
        )?;
    }
    let resources: Vec<_> = guards
        .iter()
        .enumerate()
        .map(|(i, g)| {
            json!({ "type": "docker:index/service:Service", "name": format!("svc{i}"),
                    "service_name": g.name(), "image_repo": env::image_repo() })
        })
        .collect();
    let spec = json!({ "resources": resources, "step_delay_ms": step_delay_ms });
    std::fs::write(dir.join("standin.json"), spec.to_string())?;
    Ok(())
}

/// One stand-in command, as the bot's runner spawns it (argv, the project as working
/// directory, no stdin); its wall time from spawn to exit.
async fn pulumi(
    bin: &std::path::Path,
    dir: &std::path::Path,
    args: &[&str],
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let out = tokio::process::Command::new(bin)
        .args(args)
        .current_dir(dir)
        .env("PULUMI_SKIP_UPDATE_CHECK", "true")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .with_context(|| format!("spawning {}", bin.display()))?;
    let took = started.elapsed();
    if !out.status.success() {
        bail!(
            "`pulumi {}` failed ({}): {}",
            args.join(" "),
            out.status,
            clip(&String::from_utf8_lossy(&out.stderr), 600)
        );
    }
    Ok(took)
}

/// The latest `UpdateStatus.CompletedAt` of the services (None if one has none).
async fn last_completed(
    swarm: &TestSwarm,
    guards: &[ServiceGuard],
) -> Option<std::time::SystemTime> {
    let mut last = None;
    for g in guards {
        let s = swarm.inspect(g.name()).await.ok()?;
        let done = crate::bollard_time(&s.update_status?.completed_at)?;
        last = last.max(Some(done));
    }
    last
}

async fn converge(swarm: &TestSwarm, guards: &[ServiceGuard]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let waits = guards
        .iter()
        .map(|g| swarm.wait_converged(g.name(), CONVERGE));
    for r in futures::future::join_all(waits).await {
        r?;
    }
    Ok(started.elapsed())
}

// ------------------------------------------------------------------------------------------
// The benchmark
// ------------------------------------------------------------------------------------------

struct Alone {
    set: Duration,
    preview: Duration,
    up: Duration,
    converge: Duration,
}

impl Alone {
    fn total(&self) -> Duration {
        self.set + self.preview + self.up
    }
}

struct Bot {
    total: Duration,
    /// Request → the deferral (interaction callback) at the fake.
    ack: Duration,
    /// Request → the deploy message posted (the first follow-up).
    first_message: Option<Duration>,
    /// Request → first pulumi process started.
    before_pulumi: Option<Duration>,
    /// First pulumi process started → `preview` exited (config get, config set, preview).
    preview_phase: Option<Duration>,
    /// Sum of the bot's pulumi processes before `up` (config get/set, preview), each spawn → exit.
    pre_processes: Option<Duration>,
    /// Sum of all the bot's pulumi processes (config get/set, preview, up), spawn → exit.
    all_processes: Option<Duration>,
    /// `preview` exited → `up` started.
    gap: Option<Duration>,
    /// `up` started → exited, as the runner saw it.
    apply: Option<Duration>,
    /// `up` exited → `swarm verification finished`: the Swarm converging (not pulumi's time).
    verify: Option<Duration>,
    /// When the verification finished.
    verified_at: Option<Instant>,
    /// Verification finished → the final edit received by the fake Discord (store writes, lock
    /// release, the report).
    report: Option<Duration>,
    /// PATCHes of `@original` between `up` start and exit, and the apply's length.
    apply_edits: Option<(usize, Duration)>,
    /// Most PATCHes of `@original` in any 5 s window of the whole deploy.
    max_edits_5s: usize,
    edits_total: usize,
}

pub async fn bench_deploy() -> anyhow::Result<Measured> {
    let events = capture();
    if events.is_none() {
        log("another tracing subscriber is installed: no per-phase breakdown");
    }
    let bin = standin()?;
    log(format!("stand-in: {}", bin.display()));
    let swarm = TestSwarm::connect().await;
    let label = format!("sprocket.bench-deploy.{}", bench_id());
    log(format!("creating {SERVICES} services (1 replica each)"));
    let mut guards = Vec::new();
    for _ in 0..SERVICES {
        guards.push(
            swarm
                .create_service(
                    TestService::new("prod-bdep", "main")
                        .label(&label, "platform")
                        .label(BENCH_LABEL, &bench_id()),
                )
                .await,
        );
    }
    let result = measure(&swarm, &guards, &bin, &label, events).await;
    remove_services(guards).await;
    result
}

async fn measure(
    swarm: &TestSwarm,
    guards: &[ServiceGuard],
    bin: &std::path::Path,
    label: &str,
    events: Option<Arc<Mutex<Vec<Ev>>>>,
) -> anyhow::Result<Measured> {
    let took = converge(swarm, guards).await?;
    log(format!(
        "{SERVICES} services converged in {:.1} s",
        took.as_secs_f64()
    ));
    let bot = TestBot::start_with(BotOptions {
        pulumi_binary: Some(bin.to_path_buf()),
        layer_label: Some(label.to_string()),
        platform_services: Some(guards.iter().map(|g| g.name().to_string()).collect()),
        extra_config: "\n[limits]\ncommands_per_minute = 1000\ndestructive_per_hour = 1000\n"
            .into(),
        ..Default::default()
    })
    .await;
    let dir = bot.dir.path().join("platform");
    let dev = bot.person("dora", &["deployer"]).await;
    let mut details: Vec<String> = Vec::new();
    // (step_delay_ms, overhead in s, Pulumi alone) of every measured run.
    let mut results: Vec<(u64, f64, Duration)> = Vec::new();
    // Warm-up, not counted: a deploy that changes nothing (the project and the services are
    // at `main`) pays the one-time costs of this process: the fake Discord compiling its
    // validators for the webhook routes, the bot's first identity check and Docker connection.
    write_project(&dir, guards, 0)?;
    let warm = one_deploy(&bot, &dev, "main", events.as_ref()).await?;
    details.push(format!(
        "warm-up (not counted): a deploy changing nothing took {} from request to report \
         (request → deferred {}, → first pulumi {})",
        ms(warm.total),
        ms(warm.ack),
        warm.before_pulumi.map(ms).unwrap_or_else(|| "?".into())
    ));
    log(details.last().unwrap());
    // This process's monotonic clock to wall-clock time (the engine's, same machine).
    let (i0, s0) = (Instant::now(), std::time::SystemTime::now());
    let wall = |at: Instant| s0 + at.saturating_duration_since(i0);
    let mut edit_rates = Vec::new();
    let mut max_window = 0;
    for (run, &delay) in runs().iter().enumerate() {
        write_project(&dir, guards, delay)?;
        // 1. Pulumi alone, to `v2`.
        let event_log = dir.join("bench-events.jsonl");
        let event_log_s = event_log.display().to_string();
        let set = pulumi(
            bin,
            &dir,
            &["config", "set", "image-tag", "v2", "--stack", "prod"],
        )
        .await?;
        let preview = pulumi(
            bin,
            &dir,
            &["preview", "--json", "--stack", "prod", "--non-interactive"],
        )
        .await?;
        let up = pulumi(
            bin,
            &dir,
            &[
                "up",
                "--yes",
                "--skip-preview",
                "--non-interactive",
                "--stack",
                "prod",
                "--event-log",
                &event_log_s,
            ],
        )
        .await?;
        let _ = std::fs::remove_file(&event_log);
        let conv = converge(swarm, guards).await?;
        let alone = Alone {
            set,
            preview,
            up,
            converge: conv,
        };
        tokio::time::sleep(Duration::from_secs(1)).await;

        // 2. sprocket-ops, back to `main`.
        let b = one_deploy(&bot, &dev, "main", events.as_ref()).await?;
        // The Swarm's own end of the rollouts (the latest `UpdateStatus.CompletedAt`, the
        // engine's clock) against the end of the bot's verification (this process's clock).
        let swarm_done = last_completed(swarm, guards).await;
        let verify_lag = match (swarm_done, b.verified_at) {
            (Some(done), Some(v)) => format!(
                "; verification ended {:+.0} ms after the last Swarm rollout completed",
                crate::signed_ms(wall(v), done)
            ),
            _ => String::new(),
        };
        converge(swarm, guards).await?;

        let pulumi_alone = alone.total();
        let target = TARGET_FLOOR.max(pulumi_alone.mul_f64(TARGET_SHARE));
        let line = match b.verify {
            Some(verify) => {
                let overhead =
                    b.total.as_secs_f64() - verify.as_secs_f64() - pulumi_alone.as_secs_f64();
                results.push((delay, overhead, pulumi_alone));
                let outside = b
                    .all_processes
                    .map(|p| {
                        format!(
                            "; time outside any pulumi process (request → report − verify − \
                             the bot's own pulumi processes) {:.0} ms",
                            (b.total.as_secs_f64() - verify.as_secs_f64() - p.as_secs_f64())
                                * 1000.0
                        )
                    })
                    .unwrap_or_default();
                format!(
                    "overhead over Pulumi alone **{:+.0} ms** (target < {}){outside}",
                    overhead * 1000.0,
                    ms(target),
                )
            }
            None => "overhead not computable (no tracing breakdown)".to_string(),
        };
        let opt = |d: Option<Duration>| d.map(ms).unwrap_or_else(|| "?".into());
        details.push(format!(
            "run {} (step_delay_ms {delay}): Pulumi alone {} (config set {}, preview {}, up {}; \
             then the Swarm converged in {:.1} s) | /deploy {}: request → deferred {}, → deploy \
             message posted {}, → first pulumi {}, \
             config get/set + preview {} (processes {}), → up {}, up {} (runner), verify {}, \
             → final edit {}{verify_lag} | {line}",
            run + 1,
            ms(pulumi_alone),
            ms(alone.set),
            ms(alone.preview),
            ms(alone.up),
            alone.converge.as_secs_f64(),
            ms(b.total),
            ms(b.ack),
            opt(b.first_message),
            opt(b.before_pulumi),
            opt(b.preview_phase),
            opt(b.pre_processes),
            opt(b.gap),
            opt(b.apply),
            opt(b.verify),
            opt(b.report),
        ));
        let edits = match b.apply_edits {
            Some((n, apply)) if apply >= Duration::from_secs(5) => {
                let per_min = n as f64 * 60.0 / apply.as_secs_f64();
                edit_rates.push(per_min);
                format!(
                    "{n} edit(s) in a {:.1} s apply = {per_min:.1}/min",
                    apply.as_secs_f64()
                )
            }
            Some((n, apply)) => format!(
                "{n} edit(s) in a {:.1} s apply (too short for a rate)",
                apply.as_secs_f64()
            ),
            None => "apply window unknown".into(),
        };
        max_window = max_window.max(b.max_edits_5s);
        details.push(format!(
            "run {} edits of the deploy message: {edits}; {} in the whole deploy, at most {} in \
             any 5 s window (Discord allows {DISCORD_EDITS_PER_5S})",
            run + 1,
            b.edits_total,
            b.max_edits_5s
        ));
        log(details[details.len() - 2].clone());
        log(details[details.len() - 1].clone());
    }
    let violations = bot.discord.violations();
    if !violations.is_empty() {
        details.push(format!(
            "fake Discord recorded {} violation(s), e.g. {}",
            violations.len(),
            clip(&violations[0], 300)
        ));
    }
    drop(bot);
    // Per step delay: the median overhead against the target from the median Pulumi alone.
    let mut pass = !results.is_empty();
    let mut summary = Vec::new();
    let mut delays: Vec<u64> = results.iter().map(|r| r.0).collect();
    delays.dedup();
    for d in delays {
        let group: Vec<&(u64, f64, Duration)> = results.iter().filter(|r| r.0 == d).collect();
        let mut o: Vec<f64> = group.iter().map(|r| r.1).collect();
        o.sort_by(|a, b| a.total_cmp(b));
        let med_o = if !o.len().is_multiple_of(2) {
            o[o.len() / 2]
        } else {
            (o[o.len() / 2 - 1] + o[o.len() / 2]) / 2.0
        };
        let alone = median(&group.iter().map(|r| r.2).collect::<Vec<_>>());
        let target = TARGET_FLOOR.max(alone.mul_f64(TARGET_SHARE));
        let ok = med_o < target.as_secs_f64();
        pass &= ok;
        summary.push(format!(
            "{:+.0} ms over Pulumi alone's {} (target < {:.0} ms, step_delay_ms {d}, {} run(s))",
            med_o * 1000.0,
            ms(alone),
            target.as_secs_f64() * 1000.0,
            group.len()
        ));
        details.push(format!(
            "step_delay_ms {d}: median overhead {:+.0} ms over a median Pulumi alone of {}: {}",
            med_o * 1000.0,
            ms(alone),
            if ok { "PASS" } else { "MISS" }
        ));
    }
    let rate = edit_rates.iter().cloned().fold(0.0, f64::max);
    pass &= max_window <= DISCORD_EDITS_PER_5S;
    Ok(Measured {
        result: format!(
            "median overhead {}; {rate:.1} edits/min during apply (max {max_window} per 5 s, \
             Discord allows {DISCORD_EDITS_PER_5S})",
            summary.join(", ")
        ),
        pass,
        details,
    })
}

fn edits_of(requests: &[RecordedRequest], token: &str) -> Vec<Instant> {
    // The deploy message is the first follow-up of the deferred interaction (which Discord
    // shows in place of the original response): its edits are PATCHes of
    // `/webhooks/<app>/<token>/messages/<id>` (or `@original`).
    requests
        .iter()
        .filter(|q| q.method == "PATCH" && q.path.contains(&format!("/{token}/messages/")))
        .map(|q| q.at)
        .collect()
}

async fn one_deploy(
    bot: &TestBot,
    who: &sprocket_ops_tests::fake_discord::TestUser,
    tag: &str,
    events: Option<&Arc<Mutex<Vec<Ev>>>>,
) -> anyhow::Result<Bot> {
    let mark = events.map(|e| e.lock().unwrap_or_else(|x| x.into_inner()).len());
    let t0 = Instant::now();
    let i = bot
        .discord
        .invoke(
            who,
            "deploy",
            json!([{ "name": "platform", "type": 1, "options": [{ "name": "image", "value": tag }] }]),
        )
        .await;
    let r = i
        .wait_final(DEPLOY_TIMEOUT, |r| {
            r.text().contains("Deploy platform: succeeded")
                || r.text().contains("Deploy platform: failed")
        })
        .await?;
    if !r.text().contains("succeeded") {
        bail!("the deploy failed: {}", clip(&r.text(), 600));
    }
    let requests = bot.discord.requests();
    // The dispatch of the interaction to the bot (t0 if the fake never wrote it).
    let start = r.sent_at.max(t0);
    let final_at = requests
        .iter()
        .filter(|q| q.path.contains(i.token()))
        .filter(|q| {
            q.body
                .as_ref()
                .is_some_and(|b| b.to_string().contains("Deploy platform: succeeded"))
        })
        .map(|q| q.at)
        .min()
        .ok_or_else(|| anyhow!("no request carried the final report"))?;
    let edits = edits_of(&requests, i.token());
    let max_edits_5s = edits
        .iter()
        .map(|a| {
            edits
                .iter()
                .filter(|b| **b >= *a && **b < *a + Duration::from_secs(5))
                .count()
        })
        .max()
        .unwrap_or(0);
    let first_message = requests
        .iter()
        .filter(|q| {
            q.method == "POST" && q.path.contains("/webhooks/") && q.path.contains(i.token())
        })
        .map(|q| q.at)
        .min();
    let mut b = Bot {
        total: final_at.saturating_duration_since(start),
        ack: r.callback_at.saturating_duration_since(start),
        first_message: first_message.map(|f| f.saturating_duration_since(start)),
        before_pulumi: None,
        preview_phase: None,
        pre_processes: None,
        all_processes: None,
        gap: None,
        apply: None,
        verify: None,
        verified_at: None,
        report: None,
        apply_edits: None,
        max_edits_5s,
        edits_total: edits.len(),
    };
    let (Some(events), Some(mark)) = (events, mark) else {
        return Ok(b);
    };
    let evs: Vec<Ev> = events.lock().unwrap_or_else(|x| x.into_inner())[mark..].to_vec();
    let find = |msg: &str, cmd: Option<&str>| {
        evs.iter()
            .filter(|e| e.message == msg && cmd.is_none_or(|c| e.command == c))
            .map(|e| e.at)
            .collect::<Vec<_>>()
    };
    let started = find("pulumi started", None);
    let finished = find("pulumi finished", None);
    let preview_done = find("pulumi finished", Some("preview")).first().copied();
    let up_started = find("pulumi started", Some("up")).first().copied();
    let up_done = find("pulumi finished", Some("up")).first().copied();
    let verified = find("swarm verification finished", None).first().copied();
    let first = started.first().copied();
    b.before_pulumi = first.map(|f| f.saturating_duration_since(start));
    if let (Some(f), Some(p)) = (first, preview_done) {
        b.preview_phase = Some(p.saturating_duration_since(f));
        b.pre_processes = Some(
            started
                .iter()
                .zip(&finished)
                .filter(|(s, _)| **s < p)
                .map(|(s, e)| e.saturating_duration_since(*s))
                .sum(),
        );
    }
    if started.len() == finished.len() && !started.is_empty() {
        b.all_processes = Some(
            started
                .iter()
                .zip(&finished)
                .map(|(s, e)| e.saturating_duration_since(*s))
                .sum(),
        );
    }
    if let (Some(p), Some(u)) = (preview_done, up_started) {
        b.gap = Some(u.saturating_duration_since(p));
    }
    if let (Some(u), Some(d)) = (up_started, up_done) {
        b.apply = Some(d.saturating_duration_since(u));
        let n = edits.iter().filter(|a| **a >= u && **a <= d).count();
        b.apply_edits = Some((n, d.saturating_duration_since(u)));
    }
    if let (Some(u), Some(v)) = (up_done, verified) {
        b.verify = Some(v.saturating_duration_since(u));
        b.verified_at = Some(v);
        b.report = Some(final_at.saturating_duration_since(v));
    }
    Ok(b)
}
