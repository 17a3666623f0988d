//! Benchmark 5: Swarm `UpdateStatus.CompletedAt` to the "completed" message.

use super::*;

pub(super) fn rollout_finished(r: &Response) -> bool {
    let t = r.text();
    t.contains("completed")
        || t.contains("failed")
        || t.contains("paused")
        || t.contains("still in progress")
}

/// A bollard date field (whatever type its date feature gives it) as a wall-clock time.
pub(super) fn bollard_time<T: serde::Serialize>(v: &T) -> Option<SystemTime> {
    let value = serde_json::to_value(v).ok()?;
    let parsed = chrono::DateTime::parse_from_rfc3339(value.as_str()?).ok()?;
    Some(SystemTime::from(parsed.with_timezone(&chrono::Utc)))
}

pub(super) fn signed_ms(later: SystemTime, earlier: SystemTime) -> f64 {
    match later.duration_since(earlier) {
        Ok(d) => d.as_secs_f64() * 1000.0,
        Err(e) => -(e.duration().as_secs_f64() * 1000.0),
    }
}

pub(super) async fn bench_bump() -> anyhow::Result<Measured> {
    let swarm = TestSwarm::connect().await;
    let guard = swarm
        .create_service(bench_service("prod-bbump", "main"))
        .await;
    let result = measure_bump(&swarm, &guard).await;
    remove_services(vec![guard]).await;
    result
}

pub(super) async fn measure_bump(
    swarm: &TestSwarm,
    guard: &ServiceGuard,
) -> anyhow::Result<Measured> {
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
