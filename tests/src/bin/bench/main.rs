//! Every sprocket-ops benchmark in one program: runs them one after another, prints progress to
//! stderr and writes `BENCHMARKS.md` at the repository root (overwritten). Run it through
//! `bash scripts/bench.sh`, which prepares the swarm and the test images, builds this program
//! and the `sprocket-ops` binary in release mode and points `SPROCKET_OPS_BIN` at the latter.
//!
//! | # | what                                                        | target          |
//! |---|-------------------------------------------------------------|-----------------|
//! | 1 | `/status` acknowledgement latency (normal / stalled Docker) | p99 < 50 ms     |
//! | 2 | idle resident memory of `sprocket-ops serve` after READY    | < 30 MiB        |
//! | 3 | `status --json` vs `docker service ls`, 50 services         | ratio <= 1.0    |
//! | 4 | `logs --tail 10000` vs `docker service logs --tail 10000`   | ratio <= 1.2    |
//! | 5 | Swarm `UpdateStatus.CompletedAt` -> "completed" message      | max < 1 s       |
//! | 6 | `/deploy` (30 resources) over Pulumi alone (`bench/deploy.rs`) | < max(5%, 200 ms) |
//! | 7 | task failure -> alert; 1000-event burst; RSS with alerts (`bench/alerts.rs`) | p50 < 0.5 s, p95 < 2 s; none lost; < 30 MiB |
//! | 8 | soak: 10,000 interactions against `serve` (`bench/soak.rs`) | 0 unanswered; RSS growth < 5% |
//!
//! Targets are checked here and reported PASS/MISS; nothing is asserted by a timed test. Every
//! loop is bounded, every network target is 127.0.0.1 (plus the local Docker socket), and every
//! Swarm service created here carries the test labels plus `sprocket-ops.bench=<id>` so
//! `scripts/bench.sh` can remove leftovers even if this process is killed.
#![forbid(unsafe_code)]

mod alerts;
mod deploy;
mod soak;

use std::fmt::Write as _;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context as _};
use futures::StreamExt;
use serde_json::{json, Value};
use sprocket_ops_tests::bot::{BotOptions, TestBot, ALERTS, APPROVALS, AUDIT, OFFTOPIC};
use sprocket_ops_tests::env;
use sprocket_ops_tests::fake_discord::model::FLAG_LOADING;
use sprocket_ops_tests::fake_discord::{FakeDiscord, Interaction, Response, TestUser};
use sprocket_ops_tests::fake_github::FakeGithub;
use sprocket_ops_tests::swarm::{docker_service_ls, ServiceGuard, TestService, TestSwarm};

/// Label on every service this program creates; its value is [`bench_id`].
const BENCH_LABEL: &str = "sprocket-ops.bench";
/// The layer label the bot reads (default `docker.layer_label`).
const LAYER_LABEL: &str = "sprocket.layer";
/// Upper bound for one whole benchmark (then it is reported as ERROR).
const BENCH_TIMEOUT: Duration = Duration::from_secs(20 * 60);
const GNU_TIME: &str = "/usr/bin/time";

// Benchmark 1.
const ACK_INTERACTIONS: usize = 200;
const ACK_IN_FLIGHT: usize = 50;
const ACK_WARMUP: usize = 5;
const ACK_TARGET_P99: Duration = Duration::from_millis(50);
const STALL_FINAL_WAIT: Duration = Duration::from_secs(15);
// Benchmark 2.
const IDLE_SETTLE: Duration = Duration::from_secs(3);
const IDLE_TARGET_KIB: u64 = 30 * 1024;
// Benchmark 3.
const STATUS_SERVICES: usize = 50;
const STATUS_RUNS: usize = 10;
const STATUS_WARMUP: usize = 2;
const STATUS_TARGET_RATIO: f64 = 1.0;
// Benchmark 4.
const LOGS_BURST: u64 = 20_000;
const LOGS_TAIL: u64 = 10_000;
const LOGS_RUNS: usize = 5;
const LOGS_WARMUP: usize = 1;
const LOGS_TARGET_RATIO: f64 = 1.2;
/// Benchmark 4b: secret-like env values in the service's spec, each learned by the redactor.
const LOGS_LEARNED: usize = 50;
const LOGS_LEARNED_TARGET_RATIO: f64 = 1.0;
// Benchmark 5.
const BUMP_RUNS: usize = 5;
const BUMP_TARGET: Duration = Duration::from_secs(1);

fn log(msg: impl AsRef<str>) {
    let t = chrono::Local::now().format("%H:%M:%S%.3f");
    eprintln!("[bench {t}] {}", msg.as_ref());
}

/// The id shared with `scripts/bench.sh` (its cleanup trap filters on it).
fn bench_id() -> String {
    std::env::var("SPROCKET_BENCH_ID")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(env::run_id)
}

/// The `sprocket-ops` binary: `SPROCKET_OPS_BIN`, else the one next to this program.
fn ops_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os(env::BOT_BIN_VAR).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("{}={} does not exist", env::BOT_BIN_VAR, p.display());
        }
        return Ok(p);
    }
    let exe = std::env::current_exe()?;
    let sibling = exe
        .parent()
        .map(|d| d.join("sprocket-ops"))
        .ok_or_else(|| anyhow!("no parent directory of {}", exe.display()))?;
    if sibling.is_file() {
        return Ok(sibling);
    }
    bail!(
        "{} is not set and {} does not exist: run `bash scripts/bench.sh`",
        env::BOT_BIN_VAR,
        sibling.display()
    )
}

// ------------------------------------------------------------------------------------------
// Machine facts
// ------------------------------------------------------------------------------------------

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| format!("unreadable ({e})"))
}

/// `/proc/loadavg`: the 1, 5 and 15 minute averages.
fn loadavg() -> String {
    let raw = read_trimmed("/proc/loadavg");
    raw.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn load1() -> String {
    loadavg()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string()
}

/// stdout of an argv command, trimmed, or a short note why not.
fn command_line(program: &str, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        Ok(o) => format!(
            "unavailable ({}: {})",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => format!("unavailable ({e})"),
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn mem_total() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|kib| format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown".into())
}

fn git_commit(root: &Path) -> String {
    let root = root.display().to_string();
    let head = command_line("git", &["-C", &root, "rev-parse", "HEAD"]);
    let subject = command_line("git", &["-C", &root, "log", "-1", "--format=%s"]);
    let dirty = Command::new("git")
        .args(["-C", &root, "status", "--porcelain"])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    let subject: String = subject.chars().take(100).collect();
    format!(
        "`{head}` ({subject}){}",
        if dirty {
            "; the working tree had uncommitted changes, which were measured"
        } else {
            ""
        }
    )
}

// ------------------------------------------------------------------------------------------
// Results
// ------------------------------------------------------------------------------------------

/// What a benchmark measured.
struct Measured {
    /// One line for the results table.
    result: String,
    pass: bool,
    /// Per-run values and checks, listed under the method paragraph.
    details: Vec<String>,
}

enum Verdict {
    Pass,
    Miss,
    Error(String),
    /// Not selected by `SPROCKET_BENCH_ONLY` (a comma-separated list of ids, for development).
    Skipped,
}

fn selected(id: &str) -> bool {
    match std::env::var("SPROCKET_BENCH_ONLY") {
        Ok(list) if !list.trim().is_empty() => list.split(',').any(|x| x.trim() == id),
        _ => true,
    }
}

struct Report {
    id: &'static str,
    title: &'static str,
    target: &'static str,
    method: &'static str,
    result: String,
    verdict: Verdict,
    details: Vec<String>,
    load_start: String,
    load_end: String,
    took: Duration,
}

async fn run_bench<F, Fut>(
    id: &'static str,
    title: &'static str,
    target: &'static str,
    method: &'static str,
    f: F,
) -> Report
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<Measured>> + Send + 'static,
{
    let load_start = loadavg();
    if !selected(id) {
        return Report {
            id,
            title,
            target,
            method,
            result: "not run".into(),
            verdict: Verdict::Skipped,
            details: vec![],
            load_end: load_start.clone(),
            load_start,
            took: Duration::ZERO,
        };
    }
    log(format!("=== {id}. {title} (load {load_start}) ==="));
    let started = Instant::now();
    // A task of its own: a panic (the test support panics on broken prerequisites) is
    // reported as an error of this benchmark, and the others still run.
    let handle = tokio::spawn(tokio::time::timeout(BENCH_TIMEOUT, f()));
    let outcome = match handle.await {
        Ok(Ok(Ok(m))) => Ok(m),
        Ok(Ok(Err(e))) => Err(format!("{e:#}")),
        Ok(Err(_)) => Err(format!("did not finish within {BENCH_TIMEOUT:?}")),
        Err(e) if e.is_panic() => {
            let p = e.into_panic();
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            Err(format!("panicked: {msg}"))
        }
        Err(e) => Err(format!("task failed: {e}")),
    };
    let took = started.elapsed();
    let load_end = loadavg();
    let (result, verdict, details) = match outcome {
        Ok(m) => {
            let v = if m.pass { Verdict::Pass } else { Verdict::Miss };
            (m.result, v, m.details)
        }
        Err(e) => ("—".to_string(), Verdict::Error(e), vec![]),
    };
    let word = match &verdict {
        Verdict::Pass => "PASS".to_string(),
        Verdict::Miss => "MISS".to_string(),
        Verdict::Error(e) => format!("ERROR: {e}"),
        Verdict::Skipped => "skipped".to_string(),
    };
    log(format!(
        "{id}: {result} -> {word} ({:.1} s)",
        took.as_secs_f64()
    ));
    Report {
        id,
        title,
        target,
        method,
        result,
        verdict,
        details,
        load_start,
        load_end,
        took,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Nearest-rank percentile of sorted values (`p` in 0..=100).
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn median(values: &[Duration]) -> Duration {
    let mut v = values.to_vec();
    v.sort();
    match v.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2,
    }
}

// ------------------------------------------------------------------------------------------
// Processes
// ------------------------------------------------------------------------------------------

/// One finished command: wall time measured here (spawn to exit), output, and GNU time's peak
/// RSS / CPU times when it wrapped the command.
struct Run {
    wall: Duration,
    ok: bool,
    status: String,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    max_rss_kib: Option<u64>,
    cpu_user_sys: Option<(f64, f64)>,
}

fn gnu_time_available() -> bool {
    Path::new(GNU_TIME).is_file()
}

/// Runs `program args` (argv, no shell), optionally under `/usr/bin/time -f '%M %U %S'`.
fn run_command(program: &Path, args: &[String], gnu_time: bool) -> anyhow::Result<Run> {
    let stats = if gnu_time {
        Some(tempfile::NamedTempFile::new()?)
    } else {
        None
    };
    let mut cmd = match &stats {
        Some(f) => {
            let mut c = Command::new(GNU_TIME);
            c.arg("-f")
                .arg("%M %U %S")
                .arg("-o")
                .arg(f.path())
                .arg(program);
            c
        }
        None => Command::new(program),
    };
    cmd.args(args)
        .env_remove("DISCORD_TOKEN")
        .env_remove("GITHUB_TOKEN")
        .env("USER", "bench")
        .stdin(Stdio::null());
    let started = Instant::now();
    let out = cmd
        .output()
        .with_context(|| format!("running {} {}", program.display(), args.join(" ")))?;
    let wall = started.elapsed();
    let (mut max_rss_kib, mut cpu_user_sys) = (None, None);
    if let Some(f) = &stats {
        // GNU time prints "Command exited with non-zero status N" before the format line.
        let text = std::fs::read_to_string(f.path()).unwrap_or_default();
        if let Some(line) = text.lines().rev().find(|l| !l.trim().is_empty()) {
            let parts: Vec<&str> = line.split_whitespace().collect();
            if parts.len() == 3 {
                max_rss_kib = parts[0].parse().ok();
                cpu_user_sys = parts[1].parse().ok().zip(parts[2].parse().ok());
            }
        }
    }
    Ok(Run {
        wall,
        ok: out.status.success(),
        status: out.status.to_string(),
        stdout: out.stdout,
        stderr: out.stderr,
        max_rss_kib,
        cpu_user_sys,
    })
}

async fn run_blocking(program: PathBuf, args: Vec<String>, gnu_time: bool) -> anyhow::Result<Run> {
    tokio::task::spawn_blocking(move || run_command(&program, &args, gnu_time))
        .await
        .context("blocking task")?
}

fn require_ok(what: &str, r: &Run) -> anyhow::Result<()> {
    if r.ok {
        return Ok(());
    }
    let err: String = String::from_utf8_lossy(&r.stderr)
        .chars()
        .take(600)
        .collect();
    bail!("{what} failed ({}): {}", r.status, err.trim())
}

fn docker_path() -> PathBuf {
    PathBuf::from("docker")
}

/// A config in `dir` shaped like the test bot's (tokens from files, SQLite in `dir`). With
/// fakes, Discord and GitHub point at them; without, their URLs are left at the defaults (the
/// CLI commands measured here contact neither).
fn write_config(
    dir: &Path,
    fakes: Option<(&FakeDiscord, &FakeGithub)>,
    extra: &str,
) -> anyhow::Result<PathBuf> {
    let perms = std::fs::read_to_string(env::workspace_root().join("permissions.toml"))
        .context("reading permissions.toml")?;
    std::fs::write(dir.join("permissions.toml"), perms)?;
    std::fs::write(dir.join("discord-token"), "bench-discord-token")?;
    let gh_token = fakes
        .map(|(_, g)| g.org_token())
        .unwrap_or("bench-github-token");
    std::fs::write(dir.join("github-token"), gh_token)?;
    let d = dir.display();
    let discord_url = fakes
        .map(|(f, _)| format!("api_base_url = \"{}\"\n", f.api_base_url()))
        .unwrap_or_default();
    let github_urls = fakes
        .map(|(_, g)| {
            format!(
                "api_base_url = \"{}\"\noauth_base_url = \"{}\"\nclient_id = \"{}\"\n",
                g.api_base_url(),
                g.oauth_base_url(),
                sprocket_ops_tests::fake_github::FAKE_CLIENT_ID
            )
        })
        .unwrap_or_default();
    let config = format!(
        r#"permissions_file = "permissions.toml"
layer_order = ["layer_1", "layer_2", "platform"]

[discord]
guild_id = {guild}
alerts_channel_id = {ALERTS}
approvals_channel_id = {APPROVALS}
audit_channel_id = {AUDIT}
{discord_url}token = {{ file = "{d}/discord-token" }}

[database]
url = "sqlite://{d}/ops.db"

[http]
listen = "127.0.0.1:0"

[github]
{github_urls}token = {{ file = "{d}/github-token" }}

[layers.layer_1]
directory = "{d}/layer_1"
stack = "layer_1"
services = ["traefik*", "vault*", "socket-proxy*"]

[layers.layer_2]
directory = "{d}/layer_2"
stack = "layer_2"
services = ["layer2redis*", "rabbitmq*", "grafana*"]

[layers.platform]
directory = "{d}/platform"
stack = "prod"
image_tag_key = "image-tag"
services = ["prod-*"]
{extra}"#,
        guild = FakeDiscord::GUILD_ID,
    );
    let path = dir.join("sprocket-ops.toml");
    std::fs::write(&path, config)?;
    Ok(path)
}

/// A labelled benchmark service on the platform layer.
fn bench_service(prefix: &str, tag: &str) -> TestService {
    TestService::new(prefix, tag)
        .label(LAYER_LABEL, "platform")
        .label(BENCH_LABEL, &bench_id())
}

/// Removes services off the async workers (their `Drop` runs `docker service rm`), then waits
/// (bounded) until their containers are gone, so the next benchmark starts on a quiet engine.
async fn remove_services(guards: Vec<ServiceGuard>) {
    if guards.is_empty() {
        return;
    }
    let n = guards.len();
    log(format!("removing {n} service(s)"));
    let _ = tokio::task::spawn_blocking(move || drop(guards)).await;
    let filter = format!(
        "label={}={}",
        sprocket_ops_tests::swarm::TEST_LABEL,
        env::run_id()
    );
    for _ in 0..120 {
        let left = command_line("docker", &["ps", "-q", "--filter", &filter]);
        if left.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    log("some benchmark containers were still stopping after 60 s");
}

// ------------------------------------------------------------------------------------------
// 1. Acknowledgement latency
// ------------------------------------------------------------------------------------------

struct AckSample {
    latency: Duration,
    kind: u8,
    finished: bool,
    text: String,
}

/// Polls (every 20 ms, bounded by `limit`) until the deferred message is filled. Polling
/// instead of the fake's event-driven `wait_final`: with 50 waiters, every state change of the
/// fake would wake all of them to snapshot their message under the fake's lock, and a timed-out
/// `wait_final` formats a state dump under that lock; both would compete with the fake's REST
/// handler (which stamps `callback_at`) on the same two cores, inflating what is measured.
async fn wait_answered(i: &Interaction, limit: Duration) -> Option<Response> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(r) = i.current().filter(answered) {
            return Some(r);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn answered(r: &Response) -> bool {
    r.original
        .as_ref()
        .is_some_and(|m| m.flags & FLAG_LOADING == 0)
}

/// One `/status`: waits for the acknowledgement, then (when `final_wait` is set) up to that
/// long for the deferred message to be filled, so the caller's in-flight slot stays busy while
/// the bot works on the command.
async fn one_status(
    bot: &TestBot,
    user: &TestUser,
    final_wait: Option<Duration>,
) -> anyhow::Result<AckSample> {
    let i = bot.discord.invoke(user, "status", json!([])).await;
    let r = i.response(Duration::from_secs(30)).await?;
    let latency = r.latency();
    let kind = r.kind;
    let (finished, text) = match final_wait {
        None => (false, String::new()),
        Some(t) => match wait_answered(&i, t).await {
            Some(r) => (true, r.text()),
            None => (false, String::new()),
        },
    };
    Ok(AckSample {
        latency,
        kind,
        finished,
        text,
    })
}

async fn bench_ack(stall: bool) -> anyhow::Result<Measured> {
    let extra = "\n[limits]\ncommands_per_minute = 10000\n".to_string();
    let mut docker_host = None;
    let accepted = Arc::new(AtomicUsize::new(0));
    let mut staller = None;
    if stall {
        // Accepts every connection and never answers: the Docker calls behind /status hang
        // until the bot's per-request timeout.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let count = Arc::clone(&accepted);
        staller = Some(tokio::spawn(async move {
            let mut held = Vec::new();
            while held.len() < 10_000 {
                match listener.accept().await {
                    Ok((s, _)) => {
                        held.push(s);
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => break,
                }
            }
            std::future::pending::<()>().await;
        }));
        docker_host = Some(format!("tcp://127.0.0.1:{port}"));
        log(format!("stalling Docker endpoint on 127.0.0.1:{port}"));
    }
    let bot = TestBot::start_with(BotOptions {
        extra_config: extra,
        docker_host,
        ..Default::default()
    })
    .await;
    let viewer = bot.person("vera", &["viewer"]).await;
    // Normal Docker: a slot is held until the answer (at most 60 s). Stalled Docker: at most
    // docker.timeout_secs (10 s) + 5 s, the time a single stalled command needs to answer.
    let final_wait = if stall {
        STALL_FINAL_WAIT
    } else {
        Duration::from_secs(60)
    };
    log(format!("{ACK_WARMUP} warm-up /status (not counted)"));
    for _ in 0..ACK_WARMUP {
        one_status(&bot, &viewer, (!stall).then_some(final_wait)).await?;
    }
    log(format!(
        "{ACK_INTERACTIONS} /status, {ACK_IN_FLIGHT} in flight"
    ));
    let started = Instant::now();
    let samples: Vec<(usize, anyhow::Result<AckSample>)> =
        futures::stream::iter(0..ACK_INTERACTIONS)
            .map(|k| {
                let (bot, viewer) = (&bot, &viewer);
                async move { (k, one_status(bot, viewer, Some(final_wait)).await) }
            })
            .buffer_unordered(ACK_IN_FLIGHT)
            .collect()
            .await;
    let total = started.elapsed();
    let violations = bot.discord.violations();
    drop(bot);
    if let Some(s) = staller {
        // Closing the listener makes the commands still queued in the bot fail fast.
        s.abort();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut samples: Vec<(usize, AckSample)> = samples
        .into_iter()
        .map(|(k, r)| r.map(|s| (k, s)))
        .collect::<anyhow::Result<_>>()?;
    samples.sort_by_key(|(k, _)| *k);
    // The first ACK_IN_FLIGHT interactions are dispatched at once (a burst); later ones
    // arrive as slots free up.
    let wave = |first: bool| {
        let mut v: Vec<Duration> = samples
            .iter()
            .filter(|(k, _)| (*k < ACK_IN_FLIGHT) == first)
            .map(|(_, s)| s.latency)
            .collect();
        v.sort();
        v
    };
    let (burst, steady) = (wave(true), wave(false));
    let groups: Vec<String> = samples
        .chunks(ACK_IN_FLIGHT)
        .enumerate()
        .map(|(g, chunk)| {
            let mut v: Vec<Duration> = chunk.iter().map(|(_, s)| s.latency).collect();
            v.sort();
            format!(
                "#{}-{}: p50 {}, max {}",
                g * ACK_IN_FLIGHT + 1,
                g * ACK_IN_FLIGHT + chunk.len(),
                ms(percentile(&v, 50.0)),
                ms(*v.last().unwrap_or(&Duration::ZERO))
            )
        })
        .collect();
    let samples: Vec<AckSample> = samples.into_iter().map(|(_, s)| s).collect();
    let mut lat: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
    lat.sort();
    let (p50, p99, max) = (
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        *lat.last().unwrap_or(&Duration::ZERO),
    );
    let mean = lat.iter().sum::<Duration>() / lat.len().max(1) as u32;
    let deferred = samples.iter().filter(|s| s.kind == 5).count();
    let finished = samples.iter().filter(|s| s.finished).count();
    let mut details = vec![
        format!(
            "{} interactions: p50 {}, p99 {}, mean {}, max {}, min {}",
            lat.len(),
            ms(p50),
            ms(p99),
            ms(mean),
            ms(max),
            ms(*lat.first().unwrap_or(&Duration::ZERO))
        ),
        format!(
            "by dispatch order: the first {} (sent together): p50 {}, max {}; the other {} \
             (sent as slots free up): p50 {}, p99 {}, max {}",
            burst.len(),
            ms(percentile(&burst, 50.0)),
            ms(*burst.last().unwrap_or(&Duration::ZERO)),
            steady.len(),
            ms(percentile(&steady, 50.0)),
            ms(percentile(&steady, 99.0)),
            ms(*steady.last().unwrap_or(&Duration::ZERO))
        ),
        format!(
            "by groups of {ACK_IN_FLIGHT} in dispatch order: {}",
            groups.join("; ")
        ),
        format!(
            "{deferred}/{} acknowledged with a deferred response (type 5); {finished}/{} \
             answered in full within {} s of their acknowledgement; run took {:.1} s",
            samples.len(),
            samples.len(),
            final_wait.as_secs(),
            total.as_secs_f64()
        ),
    ];
    if stall {
        let unreachable = samples
            .iter()
            .filter(|s| s.text.contains("unreachable") || s.text.contains("timed out"))
            .count();
        details.push(format!(
            "the stalled endpoint accepted {} connection(s) and answered none; {unreachable} \
             final answers reported Docker as unreachable / timed out",
            accepted.load(Ordering::SeqCst)
        ));
    }
    let unfinished = samples.iter().filter(|s| !s.finished).count();
    if unfinished > 0 {
        details.push(format!(
            "{unfinished} interaction(s) still showed the deferred \"thinking\" message when \
             the wait ended"
        ));
    }
    if !violations.is_empty() {
        details.push(format!(
            "fake Discord recorded {} protocol/OpenAPI violation(s), e.g. {}",
            violations.len(),
            clip(&violations[0], 300)
        ));
    }
    Ok(Measured {
        result: format!("p50 {}, p99 {} (max {})", ms(p50), ms(p99), ms(max)),
        pass: p99 < ACK_TARGET_P99 && deferred == samples.len(),
        details,
    })
}

fn clip(s: &str, n: usize) -> String {
    let one_line = s.replace('\n', " ⏎ ");
    if one_line.chars().count() <= n {
        one_line
    } else {
        one_line.chars().take(n).collect::<String>() + "…"
    }
}

// ------------------------------------------------------------------------------------------
// 2. Idle resident memory
// ------------------------------------------------------------------------------------------

fn proc_status_kib(pid: u32) -> anyhow::Result<(u64, u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Ok((
        field("VmRSS:").ok_or_else(|| anyhow!("no VmRSS"))?,
        field("VmHWM:").ok_or_else(|| anyhow!("no VmHWM"))?,
        field("Threads:").unwrap_or(0),
    ))
}

/// A fake Discord with the channels the bot's config names.
async fn fake_discord() -> FakeDiscord {
    let discord = FakeDiscord::start().await;
    for (id, name) in [
        (ALERTS, "alerts"),
        (APPROVALS, "approvals"),
        (AUDIT, "audit"),
        (OFFTOPIC, "offtopic"),
    ] {
        discord.add_channel(id, name);
    }
    discord
}

/// `sprocket-ops serve` (the binary under test) spawned against the fakes with a config from
/// [`write_config`] plus `extra`, its stderr in `serve.log` of its own temp dir; killed when
/// dropped.
struct Serve {
    child: tokio::process::Child,
    pid: u32,
    log_path: PathBuf,
    /// From spawn until the slash commands were registered (after READY).
    ready_after: Duration,
    _dir: tempfile::TempDir,
}

impl Serve {
    /// Spawns it and waits until it has registered its commands.
    async fn start(
        bin: &Path,
        discord: &FakeDiscord,
        github: &FakeGithub,
        extra: &str,
    ) -> anyhow::Result<Serve> {
        let dir = tempfile::tempdir()?;
        let cfg = write_config(dir.path(), Some((discord, github)), extra)?;
        let log_path = dir.path().join("serve.log");
        let started = Instant::now();
        let child = tokio::process::Command::new(bin)
            .arg("--config")
            .arg(&cfg)
            .arg("serve")
            .env_remove("DISCORD_TOKEN")
            .env_remove("GITHUB_TOKEN")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path)?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {} serve", bin.display()))?;
        let pid = child.id().ok_or_else(|| anyhow!("no pid"))?;
        let mut serve = Serve {
            child,
            pid,
            log_path,
            ready_after: Duration::ZERO,
            _dir: dir,
        };
        tokio::select! {
            r = discord.wait_commands_registered(Duration::from_secs(60)) => {
                r.with_context(|| format!("serve log: {}", serve.log()))?;
            }
            status = serve.child.wait() => bail!("serve exited early ({:?}): {}", status, serve.log()),
        }
        serve.ready_after = started.elapsed();
        Ok(serve)
    }

    /// The end of its log, for error messages.
    fn log(&self) -> String {
        clip(
            &std::fs::read_to_string(&self.log_path).unwrap_or_default(),
            800,
        )
    }

    /// An error naming `when` if the process has exited.
    fn check_running(&mut self, when: &str) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            Some(status) => bail!("serve exited {when} ({status}): {}", self.log()),
            None => Ok(()),
        }
    }

    /// (VmRSS, VmHWM, threads) now.
    fn memory(&self) -> anyhow::Result<(u64, u64, u64)> {
        proc_status_kib(self.pid)
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        let _ = self.child.wait().await;
        Ok(())
    }
}

async fn bench_idle_rss() -> anyhow::Result<Measured> {
    let bin = ops_binary()?;
    let discord = fake_discord().await;
    let github = FakeGithub::start().await;
    let mut serve = Serve::start(&bin, &discord, &github, "").await?;
    log(format!(
        "{} serve started (pid {})",
        bin.display(),
        serve.pid
    ));
    let ready_after = serve.ready_after;
    tokio::time::sleep(IDLE_SETTLE).await;
    serve.check_running("while idle")?;
    let (rss, hwm, threads) = serve.memory()?;
    serve.stop().await?;
    let mib = |k: u64| k as f64 / 1024.0;
    Ok(Measured {
        result: format!("VmRSS {:.1} MiB (VmHWM {:.1} MiB)", mib(rss), mib(hwm)),
        pass: rss < IDLE_TARGET_KIB,
        details: vec![
            format!(
                "commands registered {:.2} s after spawn; read {} s later: VmRSS {rss} kB, \
                 VmHWM {hwm} kB, {threads} threads",
                ready_after.as_secs_f64(),
                IDLE_SETTLE.as_secs()
            ),
            format!("binary: {}", bin.display()),
        ],
    })
}

// ------------------------------------------------------------------------------------------
// 3. status on 50 services
// ------------------------------------------------------------------------------------------

async fn bench_status() -> anyhow::Result<Measured> {
    let bin = ops_binary()?;
    let swarm = TestSwarm::connect().await;
    let mut guards = Vec::new();
    log(format!(
        "creating {STATUS_SERVICES} services (1 replica each)"
    ));
    for _ in 0..STATUS_SERVICES {
        guards.push(
            swarm
                .create_service(bench_service("prod-bst", "main"))
                .await,
        );
    }
    let result = measure_status(&bin, &guards).await;
    remove_services(guards).await;
    result
}

/// Waits (bounded) until `docker service ls` shows every service at 1/1 on two polls 1 s apart.
async fn wait_all_running(names: &[String], timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut good_polls = 0;
    loop {
        let rows = tokio::task::spawn_blocking(docker_service_ls)
            .await
            .map_err(|e| anyhow!("docker service ls: {e}"))?;
        let running = rows
            .iter()
            .filter(|r| names.contains(&r.name) && r.replica_counts() == Some((1, 1)))
            .count();
        let last = format!("{running}/{} services at 1/1", names.len());
        if running == names.len() {
            good_polls += 1;
            if good_polls >= 2 {
                return Ok(());
            }
        } else {
            good_polls = 0;
        }
        if Instant::now() >= deadline {
            bail!("not converged within {timeout:?}: {last}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn measure_status(bin: &Path, guards: &[ServiceGuard]) -> anyhow::Result<Measured> {
    let names: Vec<String> = guards.iter().map(|g| g.name().to_string()).collect();
    let converge_start = Instant::now();
    wait_all_running(&names, Duration::from_secs(300)).await?;
    log(format!(
        "{} services converged in {:.1} s",
        names.len(),
        converge_start.elapsed().as_secs_f64()
    ));
    // Container start-up work of the engine settles before anything is timed.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let dir = tempfile::tempdir()?;
    let cfg = write_config(dir.path(), None, "")?;
    let ours_args: Vec<String> = vec![
        "--config".into(),
        cfg.display().to_string(),
        "status".into(),
        "--json".into(),
    ];
    let theirs_args: Vec<String> = ["service", "ls"].iter().map(|s| s.to_string()).collect();
    // Floors of ours, for the diagnosis: start-up + config (no Docker, no database), and
    // start-up + config + database open + one audit read and one audit write (no Docker).
    let floor_args = |cmd: &[&str]| -> Vec<String> {
        ["--config", &cfg.display().to_string()]
            .iter()
            .chain(cmd)
            .map(|s| s.to_string())
            .collect()
    };
    let floors = [
        ("check-config", floor_args(&["check-config"])),
        ("audit --limit 1", floor_args(&["audit", "--limit", "1"])),
    ];
    let mut floor_times: Vec<Vec<Duration>> = vec![Vec::new(); floors.len()];
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let mut last_ours = None;
    let mut last_theirs = None;
    // Interleaved (ours, theirs, ours, …) so load changes on the shared machine hit both.
    for i in 0..STATUS_WARMUP + STATUS_RUNS {
        let a = run_blocking(bin.to_path_buf(), ours_args.clone(), false).await?;
        require_ok("sprocket-ops status --json", &a)?;
        let b = run_blocking(docker_path(), theirs_args.clone(), false).await?;
        require_ok("docker service ls", &b)?;
        for (n, (what, args)) in floors.iter().enumerate() {
            let f = run_blocking(bin.to_path_buf(), args.clone(), false).await?;
            require_ok(&format!("sprocket-ops {what}"), &f)?;
            if i >= STATUS_WARMUP {
                floor_times[n].push(f.wall);
            }
        }
        if i >= STATUS_WARMUP {
            ours.push(a.wall);
            theirs.push(b.wall);
        }
        last_ours = Some(a);
        last_theirs = Some(b);
    }
    let (a, b) = (last_ours.unwrap(), last_theirs.unwrap());
    let v: Value = serde_json::from_slice(&a.stdout).context("status --json is not JSON")?;
    let services = v["services"].as_array().cloned().unwrap_or_default();
    let ours_listed = services
        .iter()
        .filter(|s| {
            s["name"]
                .as_str()
                .is_some_and(|n| names.iter().any(|x| x == n))
                && s["running"] == json!(1)
                && s["desired"] == json!(1)
        })
        .count();
    let theirs_rows = String::from_utf8_lossy(&b.stdout)
        .lines()
        .count()
        .saturating_sub(1);
    let (mo, mt) = (median(&ours), median(&theirs));
    let ratio = mo.as_secs_f64() / mt.as_secs_f64().max(1e-9);
    let fmt_runs = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{:.0}", d.as_secs_f64() * 1000.0))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let floor_text = floors
        .iter()
        .zip(&floor_times)
        .map(|((what, _), t)| format!("`sprocket-ops {what}` median {}", ms(median(t))))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(Measured {
        result: format!(
            "ours median {} (min {}), docker median {} (min {}): ratio {:.2}",
            ms(mo),
            ms(*ours.iter().min().unwrap()),
            ms(mt),
            ms(*theirs.iter().min().unwrap()),
            ratio
        ),
        pass: ratio <= STATUS_TARGET_RATIO,
        details: vec![
            format!("sprocket-ops status --json, ms: {}", fmt_runs(&ours)),
            format!("docker service ls, ms: {}", fmt_runs(&theirs)),
            format!(
                "floors of ours, timed in the same rounds (diagnosis, not part of the target): \
                 {floor_text}"
            ),
            format!(
                "swarm during the runs: {} services in `docker service ls` ({} of them the \
                 benchmark's); ours listed {} services, {ours_listed}/{} benchmark services \
                 at 1/1",
                theirs_rows,
                names.len(),
                services.len(),
                names.len()
            ),
        ],
    })
}

// ------------------------------------------------------------------------------------------
// 4. logs --tail 10000
// ------------------------------------------------------------------------------------------

async fn bench_logs() -> anyhow::Result<Measured> {
    let bin = ops_binary()?;
    let swarm = TestSwarm::connect().await;
    let guard = swarm
        .create_service(
            bench_service("prod-blogs", "main")
                .env("TESTSVC_LOG_INTERVAL_MS", "0")
                // Two secret-shaped lines before the burst: a redaction sanity check.
                .env(
                    "TESTSVC_LOG_LINES",
                    "DB_PASSWORD=hunter2-bench\\ngh ghp_benchBenchBenchBench0123456789",
                )
                .env("TESTSVC_BURST", &LOGS_BURST.to_string()),
        )
        .await;
    let result = measure_logs(&bin, &swarm, &guard, LOGS_TARGET_RATIO).await;
    remove_services(vec![guard]).await;
    result
}

/// 4b: the same with [`LOGS_LEARNED`] secret-like env values in the spec (every one learned,
/// in every encoding, by the redactor); a few of them are printed before the burst.
async fn bench_logs_learned() -> anyhow::Result<Measured> {
    let bin = ops_binary()?;
    let swarm = TestSwarm::connect().await;
    let values: Vec<String> = (0..LOGS_LEARNED)
        .map(|i| {
            format!(
                "learned-bench-{i:02}-{:08x}",
                (i as u64 + 1) * 2_654_435_761
            )
        })
        .collect();
    let mut svc = bench_service("prod-blogsl", "main")
        .env("TESTSVC_LOG_INTERVAL_MS", "0")
        .env(
            "TESTSVC_LOG_LINES",
            &format!(
                "DB_PASSWORD=hunter2-bench\\nfirst {}\\nlast {}",
                values[0],
                values[LOGS_LEARNED - 1]
            ),
        )
        .env("TESTSVC_BURST", &LOGS_BURST.to_string());
    for (i, v) in values.iter().enumerate() {
        svc = svc.env(&format!("APP_SECRET_{i:02}"), v);
    }
    let guard = swarm.create_service(svc).await;
    let result = measure_logs(&bin, &swarm, &guard, LOGS_LEARNED_TARGET_RATIO).await;
    remove_services(vec![guard]).await;
    result
}

async fn measure_logs(
    bin: &Path,
    swarm: &TestSwarm,
    guard: &ServiceGuard,
    target_ratio: f64,
) -> anyhow::Result<Measured> {
    let name = guard.name().to_string();
    swarm
        .wait_converged(&name, Duration::from_secs(120))
        .await?;
    let all_args: Vec<String> = ["service", "logs", "--tail", "all", name.as_str()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut burst_lines = 0;
    for _ in 0..120 {
        let r = run_blocking(docker_path(), all_args.clone(), false).await?;
        burst_lines = String::from_utf8_lossy(&r.stdout)
            .lines()
            .filter(|l| l.contains("burst line"))
            .count();
        if burst_lines as u64 >= LOGS_BURST {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if (burst_lines as u64) < LOGS_BURST {
        bail!("the service logged only {burst_lines}/{LOGS_BURST} burst lines within 60 s");
    }
    log(format!("{name} holds {burst_lines} burst lines"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let dir = tempfile::tempdir()?;
    let cfg = write_config(dir.path(), None, "")?;
    let tail = LOGS_TAIL.to_string();
    let ours_args: Vec<String> = vec![
        "--config".into(),
        cfg.display().to_string(),
        "logs".into(),
        name.clone(),
        "--tail".into(),
        tail.clone(),
    ];
    let theirs_args: Vec<String> = vec![
        "service".into(),
        "logs".into(),
        "--tail".into(),
        tail,
        name.clone(),
    ];
    let gnu = gnu_time_available();
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let (mut ours_rss, mut theirs_rss) = (Vec::new(), Vec::new());
    let (mut ours_cpu, mut theirs_cpu) = (Vec::new(), Vec::new());
    let (mut ours_lines, mut theirs_lines) = (0, 0);
    for i in 0..LOGS_WARMUP + LOGS_RUNS {
        let a = run_blocking(bin.to_path_buf(), ours_args.clone(), gnu).await?;
        require_ok("sprocket-ops logs", &a)?;
        let b = run_blocking(docker_path(), theirs_args.clone(), gnu).await?;
        require_ok("docker service logs", &b)?;
        ours_lines = String::from_utf8_lossy(&a.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .count();
        theirs_lines = String::from_utf8_lossy(&b.stdout).lines().count();
        if i >= LOGS_WARMUP {
            ours.push(a.wall);
            theirs.push(b.wall);
            ours_rss.extend(a.max_rss_kib);
            theirs_rss.extend(b.max_rss_kib);
            ours_cpu.extend(a.cpu_user_sys);
            theirs_cpu.extend(b.cpu_user_sys);
        }
    }
    // Redaction sanity check over the whole log (the tail window holds no planted secret).
    let check_args: Vec<String> = vec![
        "--config".into(),
        cfg.display().to_string(),
        "logs".into(),
        name.clone(),
        "--tail".into(),
        "100000".into(),
        "--grep".into(),
        "DB_PASSWORD".into(),
    ];
    let check = run_blocking(bin.to_path_buf(), check_args, false).await?;
    require_ok("sprocket-ops logs --grep", &check)?;
    let check_out = String::from_utf8_lossy(&check.stdout).to_string();
    let redacted = !check_out.contains("hunter2-bench") && check_out.contains("DB_PASSWORD");

    let (mo, mt) = (median(&ours), median(&theirs));
    let ratio = mo.as_secs_f64() / mt.as_secs_f64().max(1e-9);
    let peak = ours_rss.iter().max().copied();
    let peak_theirs = theirs_rss.iter().max().copied();
    let mib = |k: Option<u64>| {
        k.map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
            .unwrap_or_else(|| "n/a (GNU time missing)".into())
    };
    let fmt_runs = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{:.0}", d.as_secs_f64() * 1000.0))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let cpu = |v: &[(f64, f64)]| {
        v.iter()
            .map(|(u, s)| format!("{:.2}+{:.2}", u, s))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut details = vec![
        format!(
            "sprocket-ops logs --tail {LOGS_TAIL}, ms: {}",
            fmt_runs(&ours)
        ),
        format!(
            "docker service logs --tail {LOGS_TAIL}, ms: {}",
            fmt_runs(&theirs)
        ),
        format!(
            "peak RSS (GNU time %M, max over the runs): sprocket-ops {}, docker CLI {}",
            mib(peak),
            mib(peak_theirs)
        ),
        format!(
            "lines printed: sprocket-ops {ours_lines}, docker {theirs_lines}; the service held \
             {burst_lines} burst lines"
        ),
        format!(
            "redaction check (`logs --tail 100000 --grep DB_PASSWORD`): the planted password \
             was {}",
            if redacted {
                "redacted"
            } else {
                "NOT redacted (or the line was not found)"
            }
        ),
    ];
    if !ours_cpu.is_empty() {
        details.push(format!(
            "CPU user+sys s per run: sprocket-ops {}; docker CLI {}",
            cpu(&ours_cpu),
            cpu(&theirs_cpu)
        ));
    }
    Ok(Measured {
        result: format!(
            "ours median {}, docker median {}: ratio {:.2}; peak RSS {}",
            ms(mo),
            ms(mt),
            ratio,
            mib(peak)
        ),
        pass: ratio <= target_ratio && ours_lines as u64 >= LOGS_TAIL,
        details,
    })
}

// ------------------------------------------------------------------------------------------
// 5. Swarm completion -> "completed" message
// ------------------------------------------------------------------------------------------

fn rollout_finished(r: &Response) -> bool {
    let t = r.text();
    t.contains("completed")
        || t.contains("failed")
        || t.contains("paused")
        || t.contains("still in progress")
}

/// A bollard date field (whatever type its date feature gives it) as a wall-clock time.
fn bollard_time<T: serde::Serialize>(v: &T) -> Option<SystemTime> {
    let value = serde_json::to_value(v).ok()?;
    let parsed = chrono::DateTime::parse_from_rfc3339(value.as_str()?).ok()?;
    Some(SystemTime::from(parsed.with_timezone(&chrono::Utc)))
}

fn signed_ms(later: SystemTime, earlier: SystemTime) -> f64 {
    match later.duration_since(earlier) {
        Ok(d) => d.as_secs_f64() * 1000.0,
        Err(e) => -(e.duration().as_secs_f64() * 1000.0),
    }
}

async fn bench_bump() -> anyhow::Result<Measured> {
    let swarm = TestSwarm::connect().await;
    let guard = swarm
        .create_service(bench_service("prod-bbump", "main"))
        .await;
    let result = measure_bump(&swarm, &guard).await;
    remove_services(vec![guard]).await;
    result
}

async fn measure_bump(swarm: &TestSwarm, guard: &ServiceGuard) -> anyhow::Result<Measured> {
    let name = guard.name().to_string();
    swarm
        .wait_converged(&name, Duration::from_secs(120))
        .await?;
    let bot = TestBot::start_with(BotOptions {
        extra_config: "\n[limits]\ncommands_per_minute = 1000\ndestructive_per_hour = 1000\n"
            .into(),
        ..Default::default()
    })
    .await;
    let dev = bot.person("dora", &["deployer"]).await;
    // Instants (the fake's clock) to wall-clock time (Docker's clock, same machine).
    let (i0, s0) = (Instant::now(), SystemTime::now());
    let wall = |at: Instant| s0 + at.saturating_duration_since(i0);
    let mut delays = Vec::new();
    let mut details = Vec::new();
    for run in 0..BUMP_RUNS {
        let tag = if run % 2 == 0 { "v2" } else { "main" };
        let i = bot
            .discord
            .invoke(
                &dev,
                "bump",
                json!([{ "name": "service", "value": name }, { "name": "tag", "value": tag }]),
            )
            .await;
        let r = i
            .wait_final(Duration::from_secs(180), rollout_finished)
            .await?;
        let text = r.text();
        if !text.contains("✅ completed") {
            bail!(
                "bump #{} to {tag} did not complete: {}",
                run + 1,
                clip(&text, 400)
            );
        }
        let first_completed = bot
            .discord
            .requests()
            .into_iter()
            .filter(|q| q.path.contains(i.token()))
            .filter(|q| {
                q.body
                    .as_ref()
                    .is_some_and(|b| b.to_string().contains("✅ completed"))
            })
            .map(|q| q.at)
            .min()
            .ok_or_else(|| anyhow!("no request carried \"✅ completed\""))?;
        let service = swarm.inspect(&name).await?;
        let status = service
            .update_status
            .ok_or_else(|| anyhow!("{name} has no UpdateStatus after the bump"))?;
        let state = status.state.map(|s| s.to_string()).unwrap_or_default();
        let completed_at = bollard_time(&status.completed_at)
            .ok_or_else(|| anyhow!("{name}: no UpdateStatus.CompletedAt (state {state})"))?;
        let started_at = bollard_time(&status.started_at);
        let msg_at = wall(first_completed);
        let delay = signed_ms(msg_at, completed_at);
        delays.push(delay);
        details.push(format!(
            "run {} (→ {tag}): Swarm update {} took {}, CompletedAt {} → message {:+.0} ms",
            run + 1,
            state,
            started_at
                .map(|s| format!("{:.1} s", signed_ms(completed_at, s) / 1000.0))
                .unwrap_or_else(|| "?".into()),
            chrono::DateTime::<chrono::Utc>::from(completed_at).format("%H:%M:%S%.3f"),
            delay
        ));
        log(details.last().unwrap());
        swarm
            .wait_converged(&name, Duration::from_secs(120))
            .await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
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
    let max = delays.iter().cloned().fold(f64::MIN, f64::max);
    let list = delays
        .iter()
        .map(|d| format!("{d:.0}"))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(Measured {
        result: format!("max {max:.0} ms (runs: {list} ms)"),
        pass: max < BUMP_TARGET.as_secs_f64() * 1000.0,
        details,
    })
}

// ------------------------------------------------------------------------------------------
// BENCHMARKS.md
// ------------------------------------------------------------------------------------------

const GENERAL_CAVEATS: &str = "\
All numbers come from one run on the machine described above: a 2-core virtual machine shared \
with other builds and test runs (see the load averages, taken before and after each \
benchmark), so absolute times are noisy and comparisons are the meaningful part. Comparisons \
against the Docker CLI interleave the two commands run by run so that load changes hit both. \
The benchmark program and `sprocket-ops` are release builds (`cargo build --release`); the \
Docker engine, the fake Discord and the fake GitHub run on the same two cores as the code \
under test. Targets are checked by this program and reported, never asserted by a timed test.";

const METHOD_ACK_NORMAL: &str = "\
The real bot runs in-process (the `TestBot` harness: serenity/poise against the fake Discord \
and fake GitHub on 127.0.0.1, a SQLite store, the real Docker engine) with \
`[limits] commands_per_minute = 10000` so rate limits never answer. One viewer sends 5 \
warm-up `/status` (not counted: the first fills the GitHub membership cache), then 200 \
`/status` with at most 50 in flight; an interaction leaves the in-flight set only when its \
deferred message has been filled, so the bot is busy with Docker calls while new \
interactions arrive (the harness polls each in-flight interaction every 20 ms rather than using \
the fake's event-driven waits, whose wake-ups of 50 waiters on every state change would load \
the same cores and the fake's lock). The first 50 interactions are dispatched together; the \
split between them and the other 150 is listed below. The latency is the fake's `Response::latency()`: from the moment the \
INTERACTION_CREATE frame was written to the gateway socket to the moment the interaction \
callback request arrived. p50/p99 are nearest-rank. Caveat: the fake Discord (including its \
OpenAPI validation of every request) shares the process and the two cores with the bot, so \
its work is inside the measured time; a real Discord adds network round trips that are not. \
The fake sets TCP_NODELAY on its sockets, as production servers do: without it (up to commit \
969f38c) Nagle's algorithm held gateway frames written in a burst behind the bot's 40 ms \
delayed ACK, which put the p99 of both 1a and 1b at about 45 ms whatever the bot did.";

const METHOD_ACK_STALL: &str = "\
As 1a, but the bot's `[docker] host` is `tcp://127.0.0.1:<port>` of a listener in the \
benchmark that accepts connections and never answers, so every Docker call behind `/status` \
hangs until the bot's `docker.timeout_secs` (default 10 s). The bot defers before calling \
Docker, so the acknowledgement should not depend on Docker at all. Each of the 50 in-flight \
slots is held until its deferred message reports the failure or for at most 15 s (what one \
stalled command needs: the 10 s timeout plus margin), so about 50 commands are stuck in \
Docker calls while new interactions arrive; the warm-up commands are not waited for. The \
number of commands that answered within those 15 s is reported as an observation (it is not \
part of the target).";

const METHOD_IDLE: &str = "\
The release `sprocket-ops serve` binary is spawned with a config like the test bot's \
(tokens from `{ file = … }`, SQLite in a temp dir, `[http] listen = \"127.0.0.1:0\"`, Docker \
on the local socket) pointing at a fake Discord and a fake GitHub run by the benchmark. Once \
the bot has registered its slash commands (after READY), the benchmark waits 3 s and reads \
`VmRSS` (the target) and `VmHWM` (peak so far) from `/proc/<pid>/status`, then kills it. \
Caveat: one sample; RSS depends on the allocator's arenas and thread count, which depend on \
the number of cores (tokio starts one worker per core).";

const METHOD_STATUS: &str = "\
50 services of `sprocket-ops-testsvc:main` with 1 replica each (labelled for the platform \
layer and for cleanup) are created and waited for until `docker service ls` shows all at \
1/1 twice in a row, plus 5 s to settle. Then `sprocket-ops status --json` (release binary, config with a temp \
SQLite database: each run also writes its audit row) and `docker service ls` are run \
alternately, 2 warm-ups each then 10 timed runs each (each round also times two floors of \
ours for the diagnosis: `check-config`, which starts and reads the config only, and `audit \
--limit 1`, which also opens the database and writes an audit row); wall time from spawn to exit is \
measured by the benchmark. The ratio is median(ours) / median(docker). `status` reports more \
than `docker service ls`: failing tasks with their errors and the nodes, so it makes more \
Docker API calls. Caveat: the swarm is shared, so services of concurrent test runs are \
listed by both commands too (the count is given below); both pay process start-up.";

const METHOD_LOGS: &str = "\
One service with `TESTSVC_BURST=20000` and `TESTSVC_LOG_INTERVAL_MS=0` prints 20,000 numbered \
lines at start (after two secret-shaped lines); the benchmark waits until `docker service \
logs` shows all of them. `sprocket-ops logs <service> --tail 10000` (which demultiplexes the \
stream and runs every line through the redactor) and `docker service logs --tail 10000 \
<service>` are run alternately, 1 warm-up each then 5 timed runs each, both under GNU \
`/usr/bin/time -f %M` (peak RSS of the measured process; the same small wrapper cost on both \
sides); stdout is read by the benchmark. The ratio is median(ours) / median(docker). The \
10,000-line tail window holds no secret, so a separate `--tail 100000 --grep DB_PASSWORD` run \
checks that redaction really applies.";

const METHOD_LOGS_LEARNED: &str = "\
As benchmark 4, with 50 secret-like env values (`APP_SECRET_00` … `APP_SECRET_49`) in the \
service's spec: `logs` reads the spec first, so the redactor knows all 50 (each in every form: \
raw, base64/base64url at three alignments, URL, JSON, shell, hex: about a thousand patterns in \
one Aho-Corasick automaton) and runs every line of the tail through it; two of the values are \
printed before the burst.";

const METHOD_BUMP: &str = "\
The real bot in-process (`TestBot`), a deployer `/bump`s a 1-replica platform service \
alternately to `v2` and back to `main`, 5 times (update config: stop-first, parallelism 1, \
monitor 2 s). For each run the Swarm completion time is the service's \
`UpdateStatus.CompletedAt` (RFC 3339, the engine's wall clock, read with bollard after the \
rollout) and the message time is when the fake Discord received the first request for that \
interaction whose body says \"✅ completed\" (its `Instant`, converted to wall-clock time with \
an (Instant, SystemTime) pair taken before the first bump). The delay is message − \
CompletedAt; the target is on the maximum. Caveat: both clocks are this machine's; the bot \
polls the service every 250 ms, which bounds the expected delay from below.";

fn render(reports: &[Report], facts: &[(String, String)], load_end: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Generated by `bash scripts/bench.sh` (program: `tests/src/bin/bench/main.rs`); \
         overwritten on every run. Do not edit by hand.\n"
    );
    let _ = writeln!(md, "## Machine and build\n");
    let _ = writeln!(md, "| | |\n|---|---|");
    for (k, v) in facts {
        let _ = writeln!(md, "| {k} | {} |", v.replace('|', "\\|"));
    }
    let _ = writeln!(md, "| load average at end (1, 5, 15 min) | {load_end} |");
    let _ = writeln!(md, "\n## Results\n");
    let _ = writeln!(
        md,
        "| # | benchmark | result | target | verdict | load (1 min) start → end |\n\
         |---|---|---|---|---|---|"
    );
    for r in reports {
        let verdict = match &r.verdict {
            Verdict::Pass => "**PASS**".to_string(),
            Verdict::Miss => "**MISS**".to_string(),
            Verdict::Error(_) => "**ERROR**".to_string(),
            Verdict::Skipped => "skipped".to_string(),
        };
        let l = |s: &str| s.split_whitespace().next().unwrap_or("?").to_string();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} → {} |",
            r.id,
            r.title,
            r.result,
            r.target,
            verdict,
            l(&r.load_start),
            l(&r.load_end)
        );
    }
    let _ = writeln!(md, "\n## Method and caveats\n");
    let _ = writeln!(md, "{GENERAL_CAVEATS}\n");
    for r in reports {
        let _ = writeln!(md, "### {}. {}\n", r.id, r.title);
        let _ = writeln!(md, "{}\n", r.method);
        let _ = writeln!(
            md,
            "- target: {}; took {:.1} s; load average {} → {}",
            r.target,
            r.took.as_secs_f64(),
            r.load_start,
            r.load_end
        );
        if let Verdict::Error(e) = &r.verdict {
            let _ = writeln!(md, "- ERROR: {}", clip(e, 1500));
        }
        for d in &r.details {
            let _ = writeln!(md, "- {d}");
        }
        let _ = writeln!(md);
    }
    md
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let root = env::workspace_root();
    let out_path = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("BENCHMARKS.md"));
    let started_at = chrono::Utc::now();
    let load_start = loadavg();
    let bin = ops_binary()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| format!("not found: {e}"));
    let bin_profile = if bin.contains("/release/") {
        "release"
    } else {
        "NOT a release build"
    };
    let facts: Vec<(String, String)> = vec![
        (
            "date (UTC, start)".into(),
            started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
        ),
        ("git commit".into(), git_commit(&root)),
        (
            "kernel".into(),
            format!(
                "{} {}",
                read_trimmed("/proc/sys/kernel/ostype"),
                read_trimmed("/proc/sys/kernel/osrelease")
            ),
        ),
        ("CPU".into(), cpu_model()),
        (
            "nproc".into(),
            std::thread::available_parallelism()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "?".into()),
        ),
        ("memory".into(), mem_total()),
        ("load average at start (1, 5, 15 min)".into(), load_start),
        (
            "Docker engine".into(),
            command_line("docker", &["version", "--format", "{{.Server.Version}}"]),
        ),
        ("rustc".into(), command_line("rustc", &["--version"])),
        (
            "benchmark program".into(),
            if cfg!(debug_assertions) {
                "debug build (numbers are NOT representative)".into()
            } else {
                "release build".into()
            },
        ),
        (
            "sprocket-ops binary".into(),
            format!("`{bin}` ({bin_profile})"),
        ),
        (
            "GNU time".into(),
            if gnu_time_available() {
                GNU_TIME.into()
            } else {
                "missing (peak RSS not measured)".into()
            },
        ),
    ];
    log(format!("writing {} when done", out_path.display()));
    let mut reports = Vec::new();
    reports.push(
        run_bench(
            "1a",
            "`/status` acknowledgement latency, normal Docker (200, 50 in flight)",
            "p99 < 50 ms",
            METHOD_ACK_NORMAL,
            || bench_ack(false),
        )
        .await,
    );
    reports.push(
        run_bench(
            "1b",
            "`/status` acknowledgement latency, Docker stalled (200, 50 in flight)",
            "p99 < 50 ms",
            METHOD_ACK_STALL,
            || bench_ack(true),
        )
        .await,
    );
    reports.push(
        run_bench(
            "2",
            "idle resident memory of `sprocket-ops serve` after READY",
            "VmRSS < 30 MiB",
            METHOD_IDLE,
            bench_idle_rss,
        )
        .await,
    );
    reports.push(
        run_bench(
            "3",
            "`status --json` vs `docker service ls`, 50 services",
            "ratio <= 1.0 (reporting more)",
            METHOD_STATUS,
            bench_status,
        )
        .await,
    );
    reports.push(
        run_bench(
            "4",
            "`logs --tail 10000` (redacted) vs `docker service logs --tail 10000`",
            "ratio <= 1.2; peak RSS reported",
            METHOD_LOGS,
            bench_logs,
        )
        .await,
    );
    reports.push(
        run_bench(
            "4b",
            "`logs --tail 10000` with 50 learned values vs `docker service logs --tail 10000`",
            "ratio <= 1.0; peak RSS reported",
            METHOD_LOGS_LEARNED,
            bench_logs_learned,
        )
        .await,
    );
    reports.push(
        run_bench(
            "5",
            "Swarm update completed → \"completed\" message (5 bumps)",
            "max < 1 s",
            METHOD_BUMP,
            bench_bump,
        )
        .await,
    );
    reports.push(
        run_bench(
            "6",
            "`/deploy platform` (30 resources) overhead over Pulumi alone; message edits during apply",
            "overhead < max(5%, 200 ms); <= 5 edits per 5 s",
            deploy::METHOD,
            deploy::bench_deploy,
        )
        .await,
    );
    reports.push(
        run_bench(
            "7a",
            "task failure in Swarm → alert request at the fake Discord (50 failures)",
            "p50 < 0.5 s, p95 < 2 s",
            alerts::METHOD_LATENCY,
            alerts::bench_alert_latency,
        )
        .await,
    );
    reports.push(
        run_bench(
            "7b",
            "burst of 1000 Docker events through the alert event path",
            "no event lost",
            alerts::METHOD_BURST,
            alerts::bench_alert_burst,
        )
        .await,
    );
    reports.push(
        run_bench(
            "7c",
            "resident memory of `sprocket-ops serve` with the alert watcher on",
            "VmRSS < 30 MiB",
            alerts::METHOD_RSS,
            alerts::bench_alert_rss,
        )
        .await,
    );
    reports.push(
        run_bench(
            "8",
            "soak: 10,000 interactions against `sprocket-ops serve`",
            "0 unanswered; VmRSS growth < 5% after the warm-up",
            soak::METHOD,
            soak::bench_soak,
        )
        .await,
    );
    let load_end = loadavg();
    let md = render(&reports, &facts, &load_end);
    if let Err(e) = std::fs::write(&out_path, md) {
        log(format!("cannot write {}: {e}", out_path.display()));
        std::process::exit(1);
    }
    log(format!("wrote {}", out_path.display()));
    for r in &reports {
        let v = match &r.verdict {
            Verdict::Pass => "PASS",
            Verdict::Miss => "MISS",
            Verdict::Error(_) => "ERROR",
            Verdict::Skipped => "skipped",
        };
        eprintln!("  {:>2}  {:<5}  {}", r.id, v, r.result);
    }
    let errors = reports
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::Error(_)))
        .count();
    log(format!(
        "load average now {}; {} benchmark(s) errored",
        load1(),
        errors
    ));
    // Misses are results, not failures; an error means a benchmark could not measure.
    std::process::exit(if errors > 0 { 1 } else { 0 });
}
