//! Benchmark 4: `logs --tail 10000` against `docker service logs --tail 10000` (4b: with learned secret values).

use super::*;

pub(super) async fn bench_logs() -> anyhow::Result<Measured> {
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
pub(super) async fn bench_logs_learned() -> anyhow::Result<Measured> {
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

pub(super) async fn measure_logs(
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
