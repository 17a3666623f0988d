//! The Swarm operations of ops-core (issue 4) against the REAL engine, on throwaway services
//! from the test images: bump and follow a rollout to completion, a failed deploy that Swarm
//! rolls back, optimistic-concurrency conflicts, references refused before any call, scale,
//! forced restart, rollback, service logs through the redacting bounded collector, and the
//! approval executors. Every service is removed by its guard.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ops_core::approvals::ActionExecutor;
use ops_core::redact::{Redactor, MASK};
use ops_core::swarm::actions::{ScaleToZero, ServiceRollback};
use ops_core::swarm::docker::DockerSwarm;
use ops_core::swarm::rollout::last_report;
use ops_core::swarm::{
    collect_logs, CollectedLogs, ImageRefError, LogQuery, RolloutOutcome, RolloutPoll,
    RolloutProgress, SwarmApi, SwarmError, UpdateStarted,
};
use sprocket_ops_tests::env;
use sprocket_ops_tests::swarm::{
    docker_service_ls, docker_service_ps, ServiceGuard, TestService, TestSwarm,
};

const CONVERGE: Duration = Duration::from_secs(60);

fn api() -> DockerSwarm {
    DockerSwarm::new(ops_core::config::DEFAULT_DOCKER_HOST, 30).expect("valid docker host")
}

fn poll() -> RolloutPoll {
    RolloutPoll {
        interval: Duration::from_millis(250),
        timeout: Duration::from_secs(90),
    }
}

/// Follows the rollout of `started` to its end: every report, the last carrying the outcome.
async fn follow(api: &DockerSwarm, started: &UpdateStarted) -> Vec<RolloutProgress> {
    let stream = api
        .follow_rollout(&started.name, started.from_version, poll())
        .await
        .expect("follow_rollout starts");
    use futures::StreamExt;
    let reports: Vec<_> = stream.collect().await;
    assert!(
        reports.last().is_some_and(|r| r.outcome.is_some()),
        "the last report carries the outcome: {reports:?}"
    );
    reports
}

fn outcome(reports: &[RolloutProgress]) -> &RolloutOutcome {
    reports
        .last()
        .and_then(|r| r.outcome.as_ref())
        .expect("an outcome")
}

async fn converged(swarm: &TestSwarm, guard: &ServiceGuard) {
    swarm
        .wait_converged(guard.name(), CONVERGE)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
}

/// Images of the tasks `docker service ps` shows running.
fn running_images(name: &str) -> Vec<String> {
    docker_service_ps(name)
        .into_iter()
        .filter(|t| t.desired_state == "Running" && t.current_state.starts_with("Running"))
        .map(|t| t.image)
        .collect()
}

fn ls_replicas(name: &str) -> String {
    docker_service_ls()
        .into_iter()
        .find(|r| r.name == name)
        .map(|r| r.replicas)
        .unwrap_or_else(|| panic!("{name} missing from docker service ls"))
}

#[tokio::test]
async fn bump_to_v2_completes_and_the_service_runs_v2() {
    let swarm = TestSwarm::connect().await;
    let guard = swarm
        .create_service(TestService::new("ops-bump", "main").replicas(2))
        .await;
    converged(&swarm, &guard).await;
    let api = api();
    let before = api.inspect(guard.name()).await.unwrap();
    assert_eq!(before.image, env::test_image("main"));
    assert_eq!(
        before.previous_image, None,
        "a new service has no previous spec"
    );
    assert_eq!(
        (before.replicas, before.mode.as_str()),
        (Some(2), "replicated")
    );

    let t = Instant::now();
    let started = api
        .bump(guard.name(), "v2", Some(before.version))
        .await
        .expect("bump accepted");
    assert_eq!(started.from_version, before.version);
    assert_eq!(started.image_before, env::test_image("main"));
    assert_eq!(started.image_after, env::test_image("v2"));
    let reports = follow(&api, &started).await;
    eprintln!(
        "bump main -> v2 completed in {:?} ({} reports)",
        t.elapsed(),
        reports.len()
    );
    assert!(
        matches!(outcome(&reports), RolloutOutcome::Completed),
        "{reports:?}"
    );
    let last = reports.last().unwrap();
    assert_eq!(
        (last.running_updated, last.running_outdated, last.desired),
        (2, 0, 2)
    );
    assert_eq!(last.image, env::test_image("v2"));

    assert_eq!(running_images(guard.name()), vec![env::test_image("v2"); 2]);
    let after = api.inspect(guard.name()).await.unwrap();
    assert!(after.version > before.version);
    assert_eq!(after.image, env::test_image("v2"));
    assert_eq!(after.previous_image, Some(env::test_image("main")));
    assert_eq!(after.update_state.as_deref(), Some("completed"));
    guard.remove().await.unwrap();
}

#[tokio::test]
async fn a_broken_bump_is_rolled_back_by_swarm_and_reported_as_such() {
    let swarm = TestSwarm::connect().await;
    let guard = swarm
        .create_service(
            TestService::new("ops-broken", "main")
                .rollback_on_update_failure()
                .update_monitor(Duration::from_secs(2)),
        )
        .await;
    converged(&swarm, &guard).await;
    let api = api();
    let t = Instant::now();
    let started = api.bump(guard.name(), ":broken", None).await.unwrap();
    assert_eq!(started.image_after, env::test_image("broken"));
    let reports = follow(&api, &started).await;
    eprintln!("bump to :broken rolled back in {:?}", t.elapsed());
    match outcome(&reports) {
        RolloutOutcome::RolledBack { message } => {
            eprintln!("Swarm's reason: {message}");
            assert!(message.contains("roll"), "Swarm's message: {message}")
        }
        other => panic!("a rolled back deploy must not be {other:?}: {reports:?}"),
    }
    assert!(
        reports
            .iter()
            .all(|r| !matches!(r.outcome, Some(RolloutOutcome::Completed))),
        "{reports:?}"
    );
    converged(&swarm, &guard).await;
    let now = api.inspect(guard.name()).await.unwrap();
    assert_eq!(
        now.image,
        env::test_image("main"),
        "back on its previous image"
    );
    assert_eq!(running_images(guard.name()), vec![env::test_image("main")]);
    guard.remove().await.unwrap();
}

#[tokio::test]
async fn stale_versions_conflict_and_bad_input_never_reaches_the_engine() {
    let swarm = TestSwarm::connect().await;
    let guard = swarm
        .create_service(TestService::new("ops-conflict", "main"))
        .await;
    let api = api();
    let first = api.inspect(guard.name()).await.unwrap();
    // Someone else changes the service.
    let scaled = api
        .scale(guard.name(), 2, Some(first.version))
        .await
        .unwrap();
    let current = api.inspect(guard.name()).await.unwrap();
    assert!(current.version > first.version);
    assert_eq!(scaled.replicas_after, Some(2));

    // Every change made on the stale version is refused by the engine.
    let stale = Some(first.version);
    let results = [
        api.bump(guard.name(), "v2", stale).await,
        api.scale(guard.name(), 0, stale).await,
        api.restart(guard.name(), stale).await,
        api.rollback(guard.name(), stale).await,
    ];
    for r in results {
        match r {
            Err(e @ SwarmError::Conflict { .. }) => {
                assert!(e.to_string().contains(guard.name()), "{e}");
                assert!(!e.detail().is_empty());
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    let unchanged = api.inspect(guard.name()).await.unwrap();
    assert_eq!(unchanged.version, current.version, "nothing changed");
    assert_eq!(unchanged.image, env::test_image("main"));
    assert_eq!(unchanged.replicas, Some(2));

    // Invalid references: refused before any call (this adapter's engine does not exist).
    let nowhere = DockerSwarm::new("tcp://127.0.0.1:9", 2).unwrap();
    for bad in ["UPPER:case", "a b", ":", "--yes", ";rm", "$(x)"] {
        for target in [&nowhere, &api] {
            match target.bump(guard.name(), bad, None).await {
                Err(SwarmError::InvalidImage(e)) => {
                    assert_ne!(e, ImageRefError::Empty, "{bad}");
                    eprintln!("{bad:>12} -> {e}");
                }
                other => panic!("{bad:?}: expected InvalidImage, got {other:?}"),
            }
        }
    }
    let after_bad = api.inspect(guard.name()).await.unwrap();
    assert_eq!(after_bad.version, current.version);

    // Unknown services are NotFound with their name; names that are no names never go out.
    let missing = format!("ops-missing-{}", env::run_id());
    let errors = [
        api.inspect(&missing).await.map(|_| ()),
        api.bump(&missing, "v2", None).await.map(|_| ()),
        api.scale(&missing, 1, None).await.map(|_| ()),
        api.restart(&missing, None).await.map(|_| ()),
        api.rollback(&missing, None).await.map(|_| ()),
        api.logs(&missing, LogQuery::default()).await.map(|_| ()),
        api.follow_rollout(&missing, 1, poll()).await.map(|_| ()),
    ];
    for r in errors {
        let e = r.expect_err("unknown service");
        assert!(
            matches!(&e, SwarmError::NotFound { name } if *name == missing),
            "{e:?}"
        );
        assert!(e.to_string().contains(&missing), "{e}");
    }
    // An id prefix resolves in the engine, but is not the name of the service.
    let prefix = &guard.id()[..6];
    assert!(matches!(
        api.inspect(prefix).await,
        Err(SwarmError::NotFound { .. })
    ));
    assert_eq!(api.inspect(guard.id()).await.unwrap().name, guard.name());
    for bad in ["../containers/json", "a/b", "", "-x"] {
        assert!(
            matches!(
                api.inspect(bad).await,
                Err(SwarmError::InvalidServiceName { .. })
            ),
            "{bad}"
        );
    }
    guard.remove().await.unwrap();
}

#[tokio::test]
async fn scale_up_and_down_to_zero() {
    let swarm = TestSwarm::connect().await;
    let guard = swarm
        .create_service(TestService::new("ops-scale", "main"))
        .await;
    converged(&swarm, &guard).await;
    let api = api();
    for (n, want) in [(3u64, "3/3"), (0, "0/0")] {
        let t = Instant::now();
        let started = api.scale(guard.name(), n, None).await.unwrap();
        assert_eq!(started.replicas_after, Some(n));
        let reports = follow(&api, &started).await;
        assert!(
            matches!(outcome(&reports), RolloutOutcome::Completed),
            "{reports:?}"
        );
        eprintln!("scale to {n} completed in {:?}", t.elapsed());
        assert_eq!(reports.last().unwrap().running_updated, n);
        assert_eq!(ls_replicas(guard.name()), want);
        assert_eq!(running_images(guard.name()).len(), n as usize);
    }
    guard.remove().await.unwrap();
}

#[tokio::test]
async fn restart_replaces_every_task_and_sigterm_stops_them_at_once() {
    let swarm = TestSwarm::connect().await;
    let guard = swarm
        .create_service(TestService::new("ops-restart", "main").replicas(2))
        .await;
    converged(&swarm, &guard).await;
    let api = api();
    let before = api.inspect(guard.name()).await.unwrap();
    let old_tasks: Vec<String> = docker_service_ps(guard.name())
        .into_iter()
        .filter(|t| t.desired_state == "Running")
        .map(|t| t.id)
        .collect();
    assert_eq!(old_tasks.len(), 2);

    let t = Instant::now();
    let started = api
        .restart(guard.name(), Some(before.version))
        .await
        .unwrap();
    let reports = follow(&api, &started).await;
    let took = t.elapsed();
    eprintln!("forced restart of 2 tasks completed in {took:?}");
    assert!(
        matches!(outcome(&reports), RolloutOutcome::Completed),
        "{reports:?}"
    );
    let after = api.inspect(guard.name()).await.unwrap();
    assert_eq!(after.force_update, before.force_update + 1);
    assert_eq!(after.image, before.image);
    let new_tasks: Vec<String> = docker_service_ps(guard.name())
        .into_iter()
        .filter(|t| t.desired_state == "Running" && t.current_state.starts_with("Running"))
        .map(|t| t.id)
        .collect();
    assert_eq!(new_tasks.len(), 2);
    assert!(
        new_tasks.iter().all(|t| !old_tasks.contains(t)),
        "{old_tasks:?} {new_tasks:?}"
    );

    // docker-init forwarded SIGTERM (exit 143), no task waited for SIGKILL (137).
    let codes = swarm.task_exit_codes(guard.name()).await.unwrap();
    assert_eq!(codes, vec![143, 143], "exit codes of the replaced tasks");
    guard.remove().await.unwrap();
}

#[tokio::test]
async fn rollback_returns_to_the_previous_image_and_needs_a_previous_spec() {
    let swarm = TestSwarm::connect().await;
    let guard = swarm
        .create_service(TestService::new("ops-rollback", "main"))
        .await;
    converged(&swarm, &guard).await;
    let api = api();
    match api.rollback(guard.name(), None).await {
        Err(e @ SwarmError::NoPreviousSpec { .. }) => {
            assert!(e.to_string().contains(guard.name()), "{e}")
        }
        other => panic!("expected NoPreviousSpec, got {other:?}"),
    }

    let bumped = api.bump(guard.name(), "v2", None).await.unwrap();
    assert!(matches!(
        outcome(&follow(&api, &bumped).await),
        RolloutOutcome::Completed
    ));
    let t = Instant::now();
    let started = api.rollback(guard.name(), None).await.unwrap();
    assert_eq!(
        (started.image_before.as_str(), started.image_after.as_str()),
        (
            env::test_image("v2").as_str(),
            env::test_image("main").as_str()
        )
    );
    let reports = follow(&api, &started).await;
    eprintln!("requested rollback completed in {:?}", t.elapsed());
    assert!(
        matches!(outcome(&reports), RolloutOutcome::RolledBack { .. }),
        "{reports:?}"
    );
    converged(&swarm, &guard).await;
    let now = api.inspect(guard.name()).await.unwrap();
    assert_eq!(now.image, env::test_image("main"));
    assert_eq!(now.previous_image, Some(env::test_image("v2")));
    assert_eq!(running_images(guard.name()), vec![env::test_image("main")]);

    // The next update starts from a reset update status: no stale "rolled back".
    let again = api
        .bump(guard.name(), "v2", Some(now.version))
        .await
        .unwrap();
    assert!(matches!(
        outcome(&follow(&api, &again).await),
        RolloutOutcome::Completed
    ));
    assert_eq!(running_images(guard.name()), vec![env::test_image("v2")]);
    guard.remove().await.unwrap();
}

/// Standard base64 with padding (the tests crate has no base64 dependency).
fn base64(s: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in s.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Collects the service's logs until `until` appears on stdout (the log driver lags a little).
async fn logs_until(
    api: &DockerSwarm,
    name: &str,
    grep: Option<&str>,
    max_bytes: usize,
    redactor: &Redactor,
    until: &str,
) -> CollectedLogs {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lines = api.logs(name, LogQuery::default()).await.expect("logs");
        let c = collect_logs(lines, grep, max_bytes, redactor).await;
        assert!(c.error.is_none(), "{:?}", c.error);
        if c.stdout.contains(until) || Instant::now() >= deadline {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn logs_are_redacted_and_stdout_and_stderr_stay_apart() {
    // A configured secret with characters every encoding changes.
    const CONFIGURED: &str = "Vault\"Pass:planted/42+x";
    let b64 = base64(CONFIGURED);
    let url = "Vault%22Pass%3Aplanted%2F42%2Bx";
    let json = "Vault\\\"Pass:planted/42+x";
    assert_eq!(base64("hunter2"), "aHVudGVyMg==");
    let ghp = "ghp_planted0123456789abcdefghijklmnopqrstuv";
    let planted = [
        "db password=hunter2-planted here".to_string(),
        "-----BEGIN RSA PRIVATE KEY-----".to_string(),
        "MIIEplantedKEYmaterialLINE1".to_string(),
        "plantedKEYmaterialLINE2==".to_string(),
        "-----END RSA PRIVATE KEY-----".to_string(),
        format!("github token {ghp}"),
        format!("raw {CONFIGURED}"),
        format!("b64 {b64}"),
        format!("url {url}"),
        format!("json {{\"v\":\"{json}\"}}"),
        "planted-end-marker".to_string(),
    ];
    let swarm = TestSwarm::connect().await;
    let guard = swarm
        .create_service(
            TestService::new("ops-logs", "main")
                .env("TESTSVC_LOG_INTERVAL_MS", "0")
                .env("TESTSVC_LOG_LINES", &planted.join("\\n")),
        )
        .await;
    converged(&swarm, &guard).await;
    let api = api();
    let redactor = Redactor::new([CONFIGURED]);
    let c = logs_until(
        &api,
        guard.name(),
        None,
        64 << 10,
        &redactor,
        "planted-end-marker",
    )
    .await;
    eprintln!("stdout:\n{}\nstderr:\n{}", c.stdout, c.stderr);
    assert!(c.stdout.contains("planted-end-marker"), "{c:?}");
    for secret in [
        "hunter2-planted",
        "MIIEplanted",
        "plantedKEYmaterialLINE2",
        ghp,
        CONFIGURED,
        &b64,
        url,
        json,
        "Pass:planted",
    ] {
        assert!(
            !c.stdout.contains(secret) && !c.stderr.contains(secret),
            "{secret} leaked"
        );
    }
    for redacted in [
        format!("db password={MASK} here"),
        format!("github token {MASK}"),
        format!("raw {MASK}"),
        format!("b64 {MASK}"),
        format!("url {MASK}"),
    ] {
        assert!(
            c.stdout.lines().any(|l| l == redacted),
            "missing {redacted:?}"
        );
    }
    assert!(c.stdout.contains("testsvc version=main"));
    assert!(!c.stdout.contains("testsvc starting"));
    assert!(c.stderr.contains("testsvc starting version=main"));
    assert!(!c.stderr.contains("testsvc version="));
    assert!(!c.truncated);

    // grep sees redacted text only: no oracle for a secret's characters.
    let g = logs_until(&api, guard.name(), Some("hunter2"), 64 << 10, &redactor, "").await;
    assert_eq!(g.lines, 0, "{g:?}");
    let g = logs_until(
        &api,
        guard.name(),
        Some("token"),
        64 << 10,
        &redactor,
        "token",
    )
    .await;
    assert_eq!(g.stdout, format!("github token {MASK}"));
    guard.remove().await.unwrap();
}

#[tokio::test]
async fn a_log_burst_is_kept_bounded_with_the_last_lines() {
    const MAX: usize = 64 << 10;
    let swarm = TestSwarm::connect().await;
    let guard = swarm
        .create_service(
            TestService::new("ops-burst", "main")
                .env("TESTSVC_LOG_INTERVAL_MS", "0")
                .env("TESTSVC_BURST", "20000"),
        )
        .await;
    converged(&swarm, &guard).await;
    let api = api();
    let redactor = Redactor::default();
    let t = Instant::now();
    let c = logs_until(
        &api,
        guard.name(),
        None,
        MAX,
        &redactor,
        "burst line 20000/20000",
    )
    .await;
    eprintln!(
        "collected {} lines ({} kept bytes) in {:?}",
        c.scanned,
        c.stdout.len(),
        t.elapsed()
    );
    assert!(c.truncated);
    assert!(c.stdout.len() <= MAX, "{}", c.stdout.len());
    assert!(
        c.stdout.len() > MAX - 100,
        "the budget is used: {}",
        c.stdout.len()
    );
    assert!(c
        .stdout
        .ends_with("burst line 19999/20000\nburst line 20000/20000"));
    assert!(!c.stdout.lines().any(|l| l == "burst line 1/20000"));
    assert!(
        c.stdout.lines().next().unwrap().starts_with("burst line "),
        "whole lines"
    );
    assert!(
        c.scanned >= 20_001 && c.lines == c.scanned,
        "{} {}",
        c.scanned,
        c.lines
    );

    let g = logs_until(
        &api,
        guard.name(),
        Some("line 19999/"),
        MAX,
        &redactor,
        "19999",
    )
    .await;
    assert_eq!(
        (g.stdout.as_str(), g.lines, g.truncated),
        ("burst line 19999/20000", 1, false)
    );
    // tail: only the last lines are asked for.
    let lines = api
        .logs(
            guard.name(),
            LogQuery {
                tail: Some(3),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let tail = collect_logs(lines, None, MAX, &redactor).await;
    assert!(tail.stdout.ends_with("burst line 20000/20000"), "{tail:?}");
    assert!(tail.scanned <= 6, "3 per stream: {tail:?}");
    guard.remove().await.unwrap();
}

#[tokio::test]
async fn executors_void_on_change_and_execute_with_the_current_version() {
    let swarm = TestSwarm::connect().await;
    let guard = swarm
        .create_service(TestService::new("ops-exec", "main").replicas(2))
        .await;
    converged(&swarm, &guard).await;
    let api: Arc<DockerSwarm> = Arc::new(api());
    let params = serde_json::json!({ "service": guard.name() });

    let scale = ScaleToZero::new(api.clone());
    let requested = scale.digest(&params).await.unwrap();
    assert_eq!(requested, scale.digest(&params).await.unwrap(), "stable");
    // Someone else scales the service with the Docker CLI.
    let out = std::process::Command::new("docker")
        .args([
            "service",
            "scale",
            "--detach",
            &format!("{}=1", guard.name()),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let now = scale.digest(&params).await.unwrap();
    assert_ne!(requested, now, "a scale by someone else voids the approval");

    let summary = scale.execute(&params).await.unwrap();
    assert_eq!(
        summary,
        format!("scaling `{}` from 1 to 0 replicas", guard.name())
    );
    let detail = api.inspect(guard.name()).await.unwrap();
    assert_eq!(detail.replicas, Some(0));
    let reports = api
        .follow_rollout(guard.name(), detail.version - 1, poll())
        .await
        .unwrap();
    assert!(matches!(
        last_report(reports).await.and_then(|r| r.outcome),
        Some(RolloutOutcome::Completed)
    ));
    assert_eq!(ls_replicas(guard.name()), "0/0");

    // The rollback executor returns to the previous spec (here: 1 replica).
    let rollback = ServiceRollback::new(api.clone());
    let d1 = rollback.digest(&params).await.unwrap();
    assert_ne!(d1, scale.digest(&params).await.unwrap());
    let summary = rollback.execute(&params).await.unwrap();
    let image = env::test_image("main");
    assert_eq!(
        summary,
        format!("rolling `{}` back from {image} to {image}", guard.name())
    );
    assert_eq!(api.inspect(guard.name()).await.unwrap().replicas, Some(1));
    assert_ne!(d1, rollback.digest(&params).await.unwrap());

    // A service without a previous spec: a safe error, nothing run.
    let fresh = swarm
        .create_service(TestService::new("ops-exec-new", "main"))
        .await;
    let e = rollback
        .execute(&serde_json::json!({ "service": fresh.name() }))
        .await
        .unwrap_err();
    assert_eq!(
        e.summary,
        format!("`{}` has no previous spec to roll back to", fresh.name())
    );
    fresh.remove().await.unwrap();
    guard.remove().await.unwrap();
}
