//! Benchmark 2: idle resident memory of `sprocket-ops serve` after READY.

use super::*;

pub(super) fn proc_status_kib(pid: u32) -> anyhow::Result<(u64, u64, u64)> {
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
pub(super) async fn fake_discord() -> FakeDiscord {
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
pub(super) struct Serve {
    pub(super) child: tokio::process::Child,
    pub(super) pid: u32,
    pub(super) log_path: PathBuf,
    /// From spawn until the slash commands were registered (after READY).
    pub(super) ready_after: Duration,
    pub(super) _dir: tempfile::TempDir,
}

impl Serve {
    /// Spawns it and waits until it has registered its commands.
    pub(super) async fn start(
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
    pub(super) fn log(&self) -> String {
        clip(
            &std::fs::read_to_string(&self.log_path).unwrap_or_default(),
            800,
        )
    }

    /// An error naming `when` if the process has exited.
    pub(super) fn check_running(&mut self, when: &str) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            Some(status) => bail!("serve exited {when} ({status}): {}", self.log()),
            None => Ok(()),
        }
    }

    /// (VmRSS, VmHWM, threads) now.
    pub(super) fn memory(&self) -> anyhow::Result<(u64, u64, u64)> {
        proc_status_kib(self.pid)
    }

    pub(super) async fn stop(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        let _ = self.child.wait().await;
        Ok(())
    }
}

pub(super) async fn bench_idle_rss() -> anyhow::Result<Measured> {
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
