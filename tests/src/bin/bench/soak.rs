//! Benchmark 8: a soak of 10,000 interactions against the release `sprocket-ops serve`
//! process: every one must be answered, and the bot's resident memory must not grow by more
//! than 5% between the end of the warm-up and the end of the run.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use futures::StreamExt;
use serde_json::json;
use sprocket_ops_tests::fake_discord::{Interaction, TestUser};
use sprocket_ops_tests::fake_github::FakeGithub;

use super::{fake_discord, log, ms, ops_binary, percentile, Measured, Serve};

const INTERACTIONS: usize = 10_000;
const WARMUP: usize = 1_000;
const IN_FLIGHT: usize = 16;
const USERS: u64 = 8;
const SAMPLE_EVERY: usize = 1_000;
const ANSWER_WAIT: Duration = Duration::from_secs(30);
const TARGET_GROWTH: f64 = 0.05;

pub const METHOD: &str = "\
The release `sprocket-ops serve` binary is spawned (as in benchmark 2) against a fake Discord \
and a fake GitHub run by the benchmark; 8 Discord users are linked by `[github.static_links]` \
to GitHub accounts holding the `viewer` role (the per-person rate limit is not what is measured). The benchmark sends 10,000 interactions, \
alternately `/whoami` and `/status` (the real Swarm snapshot), 16 in flight, and waits for each \
to be answered (the acknowledgement, then the deferred message filled) within 30 s; an \
interaction without an answer counts as unanswered. The bot's VmRSS is read from \
`/proc/<pid>/status` after the 1,000-interaction warm-up and after every further 1,000; growth \
is (RSS at the end − RSS after the warm-up) / RSS after the warm-up. Caveats: RSS includes \
allocator arenas that grow with concurrency and are not returned to the OS, so a flat line \
after the warm-up is what matters; the swarm is shared with whatever else runs, so `/status` \
reports a varying number of services.";

/// An answer is there when the acknowledgement came and the message is no longer "thinking".
async fn answered(i: &Interaction) -> Option<Duration> {
    let deadline = Instant::now() + ANSWER_WAIT;
    let r = i.response(ANSWER_WAIT).await.ok()?;
    let latency = r.latency();
    loop {
        if let Some(r) = i.current() {
            let done = r
                .original
                .as_ref()
                .is_some_and(|m| m.flags & super::FLAG_LOADING == 0)
                || (r.original.is_none() && !r.text().is_empty());
            if done {
                return Some(latency);
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn bench_soak() -> anyhow::Result<Measured> {
    let bin = ops_binary()?;
    let discord = fake_discord().await;
    let github = FakeGithub::start().await;
    let perms_text = std::fs::read_to_string(
        sprocket_ops_tests::env::workspace_root().join("permissions.toml"),
    )?;
    let perms = ops_core::permissions::Permissions::parse("permissions.toml", &perms_text)
        .map_err(|e| anyhow!("permissions.toml: {e}"))?;
    let team = perms
        .teams_of_role("viewer")
        .first()
        .cloned()
        .ok_or_else(|| anyhow!("permissions.toml: the viewer role has no team"))?;
    let (org, slug) = team
        .split_once('/')
        .ok_or_else(|| anyhow!("team {team} is not org/slug"))?;
    // Several people, so the per-person rate limit (at most 10,000 a minute) is not what is
    // measured.
    let mut users = Vec::new();
    let mut links = String::new();
    for n in 0..USERS {
        let login = format!("soak-viewer-{n}");
        github.add_user(&login, 7_001 + n);
        github.set_membership(org, slug, &login, "active");
        let user = TestUser::new(990_001 + n, &login);
        links.push_str(&format!("\"{}\" = \"{login}\"\n", user.id));
        users.push(user);
    }
    let extra =
        format!("\n[limits]\ncommands_per_minute = 10000\n\n[github.static_links]\n{links}");
    let mut serve = Serve::start(&bin, &discord, &github, &extra).await?;
    let pid = serve.pid;
    let (rss_start, _, _) = serve.memory()?;
    log(format!(
        "{} serve (pid {pid}) ready, VmRSS {rss_start} kB; {INTERACTIONS} interactions, {IN_FLIGHT} in flight",
        bin.display()
    ));

    let started = Instant::now();
    let mut unanswered = Vec::new();
    let mut latencies = Vec::with_capacity(INTERACTIONS);
    let mut samples: Vec<(usize, u64)> = Vec::new();
    let mut done = 0usize;
    let mut results = futures::stream::iter(0..INTERACTIONS)
        .map(|k| {
            let (discord, user) = (&discord, &users[k % users.len()]);
            async move {
                let command = if k % 2 == 0 { "whoami" } else { "status" };
                let i = discord.invoke(user, command, json!([])).await;
                (k, command, answered(&i).await)
            }
        })
        .buffer_unordered(IN_FLIGHT);
    while let Some((k, command, r)) = results.next().await {
        match r {
            Some(l) => latencies.push(l),
            None => unanswered.push(format!("#{k} /{command}")),
        }
        done += 1;
        if done.is_multiple_of(SAMPLE_EVERY) {
            serve.check_running("during the soak")?;
            let (rss, _, _) = serve.memory()?;
            samples.push((done, rss));
            log(format!("{done} answered or timed out; VmRSS {rss} kB"));
        }
    }
    drop(results);
    let took = started.elapsed();
    let (_, hwm, threads) = serve.memory()?;
    serve.stop().await?;
    let violations = discord.violations();

    let after_warmup = samples
        .iter()
        .find(|(n, _)| *n >= WARMUP)
        .map(|(_, r)| *r)
        .ok_or_else(|| anyhow!("no sample after the warm-up"))?;
    let end = samples.last().map(|(_, r)| *r).unwrap_or(after_warmup);
    let growth = (end as f64 - after_warmup as f64) / after_warmup as f64;
    latencies.sort();
    let pass = unanswered.is_empty() && growth < TARGET_GROWTH && violations.is_empty();
    let series: Vec<String> = samples
        .iter()
        .map(|(n, r)| format!("{n}: {:.1}", *r as f64 / 1024.0))
        .collect();
    Ok(Measured {
        result: format!(
            "{} unanswered of {INTERACTIONS}; VmRSS {:.1} → {:.1} MiB after the warm-up ({:+.1}%)",
            unanswered.len(),
            after_warmup as f64 / 1024.0,
            end as f64 / 1024.0,
            growth * 100.0
        ),
        pass,
        details: vec![
            format!(
                "{INTERACTIONS} interactions in {:.1} s ({:.0}/s); acknowledgement p50 {}, p99 {}",
                took.as_secs_f64(),
                INTERACTIONS as f64 / took.as_secs_f64(),
                ms(percentile(&latencies, 50.0)),
                ms(percentile(&latencies, 99.0))
            ),
            format!(
                "VmRSS (MiB) after N interactions: {}; at READY {:.1} MiB; VmHWM {:.1} MiB; {threads} threads",
                series.join(", "),
                rss_start as f64 / 1024.0,
                hwm as f64 / 1024.0
            ),
            if unanswered.is_empty() {
                "every interaction was answered".to_string()
            } else {
                format!(
                    "unanswered: {}",
                    unanswered.iter().take(20).cloned().collect::<Vec<_>>().join(", ")
                )
            },
            format!(
                "request bodies rejected by the OpenAPI check: {}",
                violations.len()
            ),
        ],
    })
}
