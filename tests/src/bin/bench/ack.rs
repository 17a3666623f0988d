//! Benchmark 1: `/status` acknowledgement latency, with a normal and a stalled Docker engine.

use super::*;

pub(super) struct AckSample {
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
pub(super) async fn wait_answered(i: &Interaction, limit: Duration) -> Option<Response> {
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

pub(super) fn answered(r: &Response) -> bool {
    r.original
        .as_ref()
        .is_some_and(|m| m.flags & FLAG_LOADING == 0)
}

/// One `/status`: waits for the acknowledgement, then (when `final_wait` is set) up to that
/// long for the deferred message to be filled, so the caller's in-flight slot stays busy while
/// the bot works on the command.
pub(super) async fn one_status(
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

pub(super) async fn bench_ack(stall: bool) -> anyhow::Result<Measured> {
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

pub(super) fn clip(s: &str, n: usize) -> String {
    let one_line = s.replace('\n', " ⏎ ");
    if one_line.chars().count() <= n {
        one_line
    } else {
        one_line.chars().take(n).collect::<String>() + "…"
    }
}
