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

mod ack;
mod alerts;
mod bump;
mod deploy;
mod idle;
mod logs;
mod report;
mod soak;
mod status;

use ack::*;
use bump::*;
use idle::*;
use logs::*;
use report::*;
use status::*;

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
