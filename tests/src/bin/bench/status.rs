//! Benchmark 3: `status --json` against `docker service ls` on 50 services.

use super::*;

pub(super) async fn bench_status() -> anyhow::Result<Measured> {
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
pub(super) async fn wait_all_running(names: &[String], timeout: Duration) -> anyhow::Result<()> {
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

pub(super) async fn measure_status(
    bin: &Path,
    guards: &[ServiceGuard],
) -> anyhow::Result<Measured> {
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
