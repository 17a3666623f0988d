//! The real [`PulumiApi`]: runs the `pulumi` CLI with `tokio::process::Command` (argv only,
//! never a shell) in the layer's project directory.
//!
//! - Arguments are checked before any process starts: stack names and config keys must look
//!   like Pulumi names (and cannot start with `-`), values carry no control characters and go
//!   after `--` when they start with `-`, the directory must exist.
//! - One process per layer at a time; each runs in its own process group, so an interrupt
//!   reaches the language host and plugins as Ctrl-C would. [`PulumiApi::cancel`] and the
//!   per-layer timeout send SIGINT (graceful: the engine finishes the steps in flight and
//!   writes its summary); after a grace period the group gets SIGKILL.
//! - stdout and stderr are read concurrently into bounded buffers; `up` writes its engine
//!   events to a fresh file that is followed while the process runs ([`EventLogTail`]) and
//!   removed afterwards.
//! - Everything kept from the output is stripped of colour codes and redacted (the configured
//!   secrets plus the passphrase and access token given to the process).
//! - The process starts with an EMPTY environment: `PATH`, `HOME`, the variables listed in
//!   `[pulumi] pass_env`, and `PULUMI_BACKEND_URL`, `PULUMI_CONFIG_PASSPHRASE`,
//!   `PULUMI_ACCESS_TOKEN` from [`PulumiConfig`]; `PULUMI_SKIP_UPDATE_CHECK=true`. The bot's own
//!   secrets (Discord, GitHub, Vault tokens, the database password) never reach it or its
//!   plugins; [`PulumiRunner::without_env`] removes names even from `pass_env`.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::Notify;

use super::events::{strip_color, EventLogTail, TailItem, UpdateTracker, DEFAULT_MAX_LINE};
use super::preview::PreviewSummary;
use super::{EventSink, PulumiApi, PulumiError, StackRef, UpOutcome};
use crate::config::PulumiConfig;
use crate::redact::Redactor;
use crate::secret::SecretSource;

/// stdout kept whole up to this size (a preview document of a large stack).
const STDOUT_HEAD: usize = 16 * 1024 * 1024;
/// stderr kept whole up to this size; beyond it, the start and the last [`TAIL`] bytes.
const STDERR_HEAD: usize = 256 * 1024;
const TAIL: usize = 64 * 1024;
/// Longest redacted detail kept for the log.
const DETAIL_CHARS: usize = 4000;
/// How often the event log is read while `up` runs.
const TAIL_EVERY: Duration = Duration::from_millis(100);

/// Runs the Pulumi CLI.
pub struct PulumiRunner {
    binary: PathBuf,
    backend_url: Option<String>,
    passphrase: Option<SecretSource>,
    access_token: Option<SecretSource>,
    redactor: Arc<Redactor>,
    remove_env: Vec<String>,
    pass_env: Vec<String>,
    grace: Duration,
    config_timeout: Duration,
    event_dir: PathBuf,
    running: Mutex<HashMap<String, Arc<Notify>>>,
}

impl PulumiRunner {
    /// `redactor` masks the configured secrets; the passphrase and token are masked too.
    pub fn new(cfg: &PulumiConfig, redactor: Arc<Redactor>) -> PulumiRunner {
        PulumiRunner {
            binary: cfg.binary.clone(),
            backend_url: cfg.backend_url.clone(),
            passphrase: cfg.passphrase.clone(),
            access_token: cfg.access_token.clone(),
            redactor,
            remove_env: Vec::new(),
            pass_env: cfg.pass_env.clone(),
            grace: Duration::from_secs(30),
            config_timeout: Duration::from_secs(60),
            event_dir: std::env::temp_dir(),
            running: Mutex::new(HashMap::new()),
        }
    }

    /// Environment variables not passed to pulumi (the bot's own secrets: Discord, GitHub,
    /// Vault tokens, the database password).
    pub fn without_env<I, S>(mut self, names: I) -> PulumiRunner
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.remove_env.extend(names.into_iter().map(Into::into));
        self
    }

    /// How long an interrupted process may take to stop before it is killed (default 30 s).
    pub fn with_grace(mut self, grace: Duration) -> PulumiRunner {
        self.grace = grace;
        self
    }

    /// Where event logs are written while `up` runs (default: the temp directory).
    pub fn with_event_dir(mut self, dir: impl Into<PathBuf>) -> PulumiRunner {
        self.event_dir = dir.into();
        self
    }

    /// The environment changes for one run; secrets are resolved now (they may rotate).
    fn env(&self) -> Result<(Vec<(String, String)>, Redactor), PulumiError> {
        let mut env = vec![("PULUMI_SKIP_UPDATE_CHECK".to_string(), "true".to_string())];
        let mut secrets = Vec::new();
        if let Some(url) = &self.backend_url {
            env.push(("PULUMI_BACKEND_URL".into(), url.clone()));
        }
        for (var, source) in [
            ("PULUMI_CONFIG_PASSPHRASE", &self.passphrase),
            ("PULUMI_ACCESS_TOKEN", &self.access_token),
        ] {
            if let Some(src) = source {
                let secret = src
                    .resolve()
                    .map_err(|m| PulumiError::Credentials(format!("{var}: {m}")))?;
                env.push((var.into(), secret.expose().to_string()));
                secrets.push(secret.expose().to_string());
            }
        }
        // Known to every output of the process from now on, not only to this run's.
        self.redactor.learn(secrets.iter().map(String::as_str));
        let extra = Redactor::new(secrets.iter().map(String::as_str));
        Ok((env, extra))
    }

    fn register(&self, layer: &str) -> Result<Registration<'_>, PulumiError> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.contains_key(layer) {
            return Err(PulumiError::Busy {
                layer: layer.to_string(),
            });
        }
        let notify = Arc::new(Notify::new());
        running.insert(layer.to_string(), notify.clone());
        Ok(Registration {
            runner: self,
            layer: layer.to_string(),
            cancel: notify,
        })
    }

    /// Runs one command to its end (or interrupt).
    async fn run(
        &self,
        stack: &StackRef,
        command: &'static str,
        args: Vec<String>,
        timeout: Duration,
        events: Option<(PathBuf, EventSink)>,
    ) -> Result<Finished, PulumiError> {
        check_directory(&stack.directory)?;
        let (env, extra) = self.env()?;
        let registration = self.register(&stack.layer)?;
        let mut cmd = tokio::process::Command::new(&self.binary);
        cmd.args(&args)
            .current_dir(&stack.directory)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        cmd.env_clear();
        for name in ["PATH", "HOME"]
            .into_iter()
            .chain(self.pass_env.iter().map(String::as_str))
        {
            if let Some(v) = std::env::var_os(name) {
                cmd.env(name, v);
            }
        }
        for name in &self.remove_env {
            cmd.env_remove(name);
        }
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let started = Instant::now();
        let mut child = cmd.spawn().map_err(|e| PulumiError::Spawn {
            detail: format!("{}: {e}", self.binary.display()),
        })?;
        let pgid = child.id().map(|id| Pid::from_raw(id as i32));
        tracing::info!(layer = %stack.layer, stack = %stack.stack, command, pid = ?pgid, "pulumi started");
        let out = tokio::spawn(read_bounded(child.stdout.take(), STDOUT_HEAD));
        let err = tokio::spawn(read_bounded(child.stderr.take(), STDERR_HEAD));

        let mut tail = events.map(|(path, sink)| (EventLogTail::new(path, DEFAULT_MAX_LINE), sink));
        let mut tracker = UpdateTracker::new();
        let deadline = tokio::time::Instant::now() + timeout;
        let far = deadline + Duration::from_secs(365 * 24 * 3600);
        let mut interrupted: Option<Interrupt> = None;
        let mut kill_at: Option<tokio::time::Instant> = None;
        let mut tick = tokio::time::interval(TAIL_EVERY);
        let status = loop {
            tokio::select! {
                status = child.wait() => break status,
                _ = tokio::time::sleep_until(deadline), if interrupted.is_none() => {
                    tracing::warn!(layer = %stack.layer, command, "pulumi timed out: interrupting");
                    interrupted = Some(Interrupt::Timeout);
                    signal(pgid, Signal::SIGINT);
                    kill_at = Some(tokio::time::Instant::now() + self.grace);
                }
                _ = registration.cancel.notified() => {
                    // One SIGINT only: pulumi treats a second one as "terminate at once",
                    // which would abandon the step in flight. Escalation is the grace timer's.
                    if interrupted.is_none() {
                        tracing::warn!(layer = %stack.layer, command, "pulumi cancel requested: interrupting");
                        interrupted = Some(Interrupt::Cancel);
                        signal(pgid, Signal::SIGINT);
                        kill_at = Some(tokio::time::Instant::now() + self.grace);
                    } else {
                        tracing::info!(layer = %stack.layer, command, "pulumi already interrupted: cancel ignored");
                    }
                }
                _ = tokio::time::sleep_until(kill_at.unwrap_or(far)), if kill_at.is_some() => {
                    tracing::warn!(layer = %stack.layer, command, "pulumi did not stop after the interrupt: killing");
                    signal(pgid, Signal::SIGKILL);
                    let _ = child.start_kill();
                    kill_at = None;
                }
                _ = tick.tick(), if tail.is_some() => {
                    if let Some((t, sink)) = tail.as_mut() {
                        drain(t.read_available().await, &mut tracker, sink, &self.redactor, &extra);
                    }
                }
            }
        };
        if let Some((mut t, sink)) = tail {
            drain(
                t.finish().await,
                &mut tracker,
                &sink,
                &self.redactor,
                &extra,
            );
            let _ = tokio::fs::remove_file(t.path()).await;
        }
        // Reap stray processes of the group (plugins that outlived pulumi).
        if interrupted.is_some() {
            signal(pgid, Signal::SIGKILL);
        }
        let stdout = collect(out).await;
        let stderr = collect(err).await;
        drop(registration);
        let status = status.map_err(|e| PulumiError::Spawn {
            detail: format!("waiting for pulumi: {e}"),
        })?;
        let finished = Finished {
            command,
            code: status.code(),
            success: status.success(),
            stdout: stdout.text(),
            stdout_truncated: stdout.dropped > 0,
            stderr: stderr.text(),
            interrupted,
            timeout,
            tracker,
            duration: started.elapsed(),
            extra,
        };
        tracing::info!(
            layer = %stack.layer,
            command,
            code = ?finished.code,
            ms = finished.duration.as_millis() as u64,
            "pulumi finished"
        );
        Ok(finished)
    }

    /// The error for a run that did not succeed.
    fn failure(&self, stack: &StackRef, f: &Finished, extra_errors: Vec<String>) -> PulumiError {
        let clean = |s: &str| {
            let text = strip_color(s);
            f.extra.redact(&self.redactor.redact(&text)).into_owned()
        };
        let both = format!("{}\n{}", f.stdout, f.stderr);
        let detail = last_chars(&clean(&f.stderr), DETAIL_CHARS);
        let mut errors: Vec<String> = f
            .tracker
            .errors()
            .into_iter()
            .chain(extra_errors)
            .map(|e| f.extra.redact(&e).into_owned())
            .collect();
        if errors.is_empty() {
            errors = f
                .stderr
                .lines()
                .map(str::trim)
                .filter(|l| l.starts_with("error:"))
                .map(|l| bounded(&clean(l)))
                .collect();
        }
        if both.contains("the stack is currently locked")
            || both.contains("Another update is currently in progress")
        {
            return PulumiError::StackLocked {
                stack: stack.stack.clone(),
                detail,
            };
        }
        match f.interrupted {
            Some(Interrupt::Timeout) => PulumiError::Timeout {
                command: f.command,
                secs: f.timeout.as_secs(),
                errors,
                detail,
            },
            Some(Interrupt::Cancel) => PulumiError::Cancelled {
                command: f.command,
                errors,
                detail,
            },
            None => PulumiError::Failed {
                command: f.command,
                code: f.code,
                errors,
                detail,
            },
        }
    }
}

/// Removes the layer from the running set when the run ends (however it ends).
struct Registration<'a> {
    runner: &'a PulumiRunner,
    layer: String,
    cancel: Arc<Notify>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.runner
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.layer);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interrupt {
    Timeout,
    Cancel,
}

struct Finished {
    command: &'static str,
    code: Option<i32>,
    success: bool,
    stdout: String,
    stdout_truncated: bool,
    stderr: String,
    interrupted: Option<Interrupt>,
    timeout: Duration,
    tracker: UpdateTracker,
    duration: Duration,
    /// Masks the passphrase and token given to this run.
    extra: Redactor,
}

impl Finished {
    fn ok(&self) -> bool {
        self.success && self.interrupted.is_none()
    }
}

fn signal(pgid: Option<Pid>, sig: Signal) {
    if let Some(pgid) = pgid {
        // ESRCH (the group is gone) is fine.
        let _ = killpg(pgid, sig);
    }
}

fn drain(
    items: std::io::Result<Vec<TailItem>>,
    tracker: &mut UpdateTracker,
    sink: &EventSink,
    redactor: &Redactor,
    extra: &Redactor,
) {
    match items {
        Ok(items) => {
            for item in items {
                match item {
                    TailItem::Event(ev) => {
                        tracker.observe(&ev, redactor);
                        sink(&ev);
                    }
                    TailItem::Malformed(e) => {
                        tracing::warn!(line = e.line, reason = %extra.redact(&redactor.redact(&e.reason)), "skipped an event log line")
                    }
                    TailItem::Oversized { line, bytes } => {
                        tracing::warn!(line, bytes, "skipped an oversized event log line")
                    }
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "reading the event log failed"),
    }
}

/// Output kept from a stream: the start up to a limit, then only the last [`TAIL`] bytes.
#[derive(Default)]
struct Bounded {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    dropped: usize,
}

impl Bounded {
    fn text(&self) -> String {
        let mut s = String::from_utf8_lossy(&self.head).into_owned();
        if self.dropped > 0 || !self.tail.is_empty() {
            if self.dropped > 0 {
                s.push_str(&format!("\n[… {} bytes not kept …]\n", self.dropped));
            }
            let tail: Vec<u8> = self.tail.iter().copied().collect();
            s.push_str(&String::from_utf8_lossy(&tail));
        }
        s
    }
}

async fn read_bounded<R: AsyncRead + Unpin>(reader: Option<R>, head_limit: usize) -> Bounded {
    let mut b = Bounded::default();
    let Some(mut reader) = reader else {
        return b;
    };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut chunk = &buf[..n];
        if b.head.len() < head_limit {
            let take = (head_limit - b.head.len()).min(chunk.len());
            b.head.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
        }
        for byte in chunk {
            if b.tail.len() == TAIL {
                b.tail.pop_front();
                b.dropped += 1;
            }
            b.tail.push_back(*byte);
        }
    }
    b
}

/// The reader's result; a reader still blocked (a grandchild holds the pipe) is abandoned.
async fn collect(handle: tokio::task::JoinHandle<Bounded>) -> Bounded {
    let abort = handle.abort_handle();
    match tokio::time::timeout(Duration::from_secs(5), handle).await {
        Ok(Ok(b)) => b,
        _ => {
            abort.abort();
            Bounded::default()
        }
    }
}

fn last_chars(s: &str, n: usize) -> String {
    let count = s.chars().count();
    s.chars()
        .skip(count.saturating_sub(n))
        .collect::<String>()
        .trim()
        .to_string()
}

fn bounded(s: &str) -> String {
    s.chars().take(400).collect()
}

/// An argument as it may be shown back: escaped, at most 40 characters.
fn shown(s: &str) -> String {
    crate::base::shown(s, crate::base::Shown::Quoted, 40)
}

fn invalid(what: &'static str, value: &str, reason: &'static str) -> PulumiError {
    PulumiError::InvalidArgument {
        what,
        shown: shown(value),
        reason,
    }
}

/// Stack names and config keys: 1-100 of `A-Za-z0-9_-.:/`, not starting with `-` or `.`.
pub fn check_name(what: &'static str, s: &str) -> Result<(), PulumiError> {
    if s.is_empty() || s.len() > 100 {
        return Err(invalid(what, s, "must be 1 to 100 characters"));
    }
    if s.starts_with('-') {
        return Err(invalid(
            what,
            s,
            "must not start with `-` (it would be read as an option)",
        ));
    }
    if s.starts_with('.') || s.starts_with(':') || s.starts_with('/') {
        return Err(invalid(what, s, "must start with a letter, digit or `_`"));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/'))
    {
        return Err(invalid(
            what,
            s,
            "may only contain letters, digits, `_`, `-`, `.`, `:` and `/`",
        ));
    }
    Ok(())
}

/// Config values: 1-1024 characters, no control characters (newlines included).
pub fn check_value(what: &'static str, s: &str) -> Result<(), PulumiError> {
    if s.is_empty() || s.chars().count() > 1024 {
        return Err(invalid(what, s, "must be 1 to 1024 characters"));
    }
    if s.chars().any(char::is_control) {
        return Err(invalid(
            what,
            s,
            "must not contain control characters or newlines",
        ));
    }
    Ok(())
}

fn check_directory(dir: &Path) -> Result<(), PulumiError> {
    if dir.as_os_str().is_empty() || !dir.is_dir() {
        return Err(PulumiError::InvalidArgument {
            what: "project directory",
            shown: shown(&dir.display().to_string()),
            reason: "is not a directory",
        });
    }
    Ok(())
}

/// `config get` argv.
pub fn config_get_args(stack: &str, key: &str) -> Result<Vec<String>, PulumiError> {
    check_name("config key", key)?;
    check_name("stack", stack)?;
    Ok(vec![
        "config".into(),
        "get".into(),
        key.into(),
        "--stack".into(),
        stack.into(),
    ])
}

/// `config set` argv: `config set <key> <value> --stack <s>`, or with the value after `--`
/// when it starts with `-`.
pub fn config_set_args(stack: &str, key: &str, value: &str) -> Result<Vec<String>, PulumiError> {
    check_name("config key", key)?;
    check_name("stack", stack)?;
    check_value("config value", value)?;
    let mut args: Vec<String> = vec!["config".into(), "set".into(), key.into()];
    if value.starts_with('-') {
        args.extend(["--stack".into(), stack.into(), "--".into(), value.into()]);
    } else {
        args.extend([value.into(), "--stack".into(), stack.into()]);
    }
    Ok(args)
}

/// `preview` argv.
pub fn preview_args(stack: &str) -> Result<Vec<String>, PulumiError> {
    check_name("stack", stack)?;
    Ok(vec![
        "preview".into(),
        "--json".into(),
        "--stack".into(),
        stack.into(),
        "--non-interactive".into(),
    ])
}

/// `up` argv.
pub fn up_args(stack: &str, event_log: &Path) -> Result<Vec<String>, PulumiError> {
    check_name("stack", stack)?;
    let log = event_log
        .to_str()
        .ok_or_else(|| PulumiError::InvalidArgument {
            what: "event log path",
            shown: shown(&event_log.display().to_string()),
            reason: "is not valid UTF-8",
        })?;
    Ok(vec![
        "up".into(),
        "--yes".into(),
        "--skip-preview".into(),
        "--non-interactive".into(),
        "--stack".into(),
        stack.into(),
        "--event-log".into(),
        log.into(),
    ])
}

static EVENT_LOG_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Removes a file when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[async_trait]
impl PulumiApi for PulumiRunner {
    async fn config_get(&self, stack: &StackRef, key: &str) -> Result<Option<String>, PulumiError> {
        let args = config_get_args(&stack.stack, key)?;
        let f = self
            .run(stack, "config get", args, self.config_timeout, None)
            .await?;
        if f.ok() {
            let value = f.stdout.trim_end_matches(['\n', '\r']).to_string();
            return Ok(Some(value));
        }
        if f.interrupted.is_none()
            && f.stderr.contains("configuration key")
            && f.stderr.contains("not found")
        {
            return Ok(None);
        }
        Err(self.failure(stack, &f, Vec::new()))
    }

    async fn config_set(
        &self,
        stack: &StackRef,
        key: &str,
        value: &str,
    ) -> Result<(), PulumiError> {
        let args = config_set_args(&stack.stack, key, value)?;
        let f = self
            .run(stack, "config set", args, self.config_timeout, None)
            .await?;
        if f.ok() {
            Ok(())
        } else {
            Err(self.failure(stack, &f, Vec::new()))
        }
    }

    async fn preview(&self, stack: &StackRef) -> Result<PreviewSummary, PulumiError> {
        let args = preview_args(&stack.stack)?;
        let f = self
            .run(stack, "preview", args, stack.timeout, None)
            .await?;
        let parsed = if f.stdout_truncated {
            None
        } else {
            PreviewSummary::parse(&f.stdout, &self.redactor).ok()
        };
        if !f.ok() {
            let errors = parsed
                .map(|p| {
                    p.diagnostics
                        .into_iter()
                        .filter(|d| d.severity == "error")
                        .map(|d| d.message)
                        .collect()
                })
                .unwrap_or_default();
            return Err(self.failure(stack, &f, errors));
        }
        parsed.ok_or_else(|| PulumiError::BadOutput {
            command: "preview",
            detail: last_chars(
                &f.extra
                    .redact(&self.redactor.redact(&strip_color(&f.stdout))),
                DETAIL_CHARS,
            ),
        })
    }

    async fn up(&self, stack: &StackRef, sink: EventSink) -> Result<UpOutcome, PulumiError> {
        let name = format!(
            "sprocket-ops-events-{}-{}-{}.jsonl",
            std::process::id(),
            EVENT_LOG_COUNTER.fetch_add(1, Ordering::Relaxed),
            chrono::Utc::now().timestamp_micros()
        );
        let path = self.event_dir.join(name);
        let args = up_args(&stack.stack, &path)?;
        let _ = tokio::fs::remove_file(&path).await;
        // Also removed when this future is dropped mid-update.
        let _cleanup = RemoveOnDrop(path.clone());
        let f = self
            .run(stack, "up", args, stack.timeout, Some((path, sink)))
            .await?;
        if !f.ok() {
            return Err(self.failure(stack, &f, Vec::new()));
        }
        Ok(UpOutcome {
            summary: f.tracker.summary().cloned(),
            steps_done: f.tracker.steps_done(),
            warnings: f
                .tracker
                .warnings()
                .into_iter()
                .map(|w| f.extra.redact(&w).into_owned())
                .collect(),
            events: f.tracker.events_seen(),
            duration: f.duration,
        })
    }

    async fn cancel(&self, layer: &str) -> Result<bool, PulumiError> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        match running.get(layer) {
            Some(n) => {
                n.notify_one();
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests;
