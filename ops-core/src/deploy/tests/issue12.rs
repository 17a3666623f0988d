//! Issue 12 regressions of the deployer: a failed restore of the image tag is reported, never
//! only logged; start-up recovery never frees the lock of a live process (elsewhere: by its
//! heartbeat, which the holder renews), and frees the locks of processes that are gone; the
//! periodic recovery never frees the lock of a plan (the preview of an approval request) that
//! this very process is running.

use super::*;

#[tokio::test]
async fn a_failed_tag_restore_after_a_refused_deploy_is_reported_not_only_logged() {
    let f = fixture(&[]).await;
    f.pulumi
        .previews
        .lock()
        .unwrap()
        .push_back(preview(&[("replace", "web")]));
    // Putting `main` back fails (an unwritable stack file).
    *f.pulumi.fail_set_to.lock().unwrap() = Some("main".into());
    let out = f
        .deployer
        .deploy(&req(Some("v2"), "alice"), no_progress())
        .await;
    let e = match out {
        Err(e) => e,
        Ok(o) => panic!("a refused deploy whose tag stays changed is not a plain refusal: {o:?}"),
    };
    let shown = e.to_string();
    for want in [
        "could not be put back",
        "image-tag",
        "`v2`",
        "`main`",
        "error id",
    ] {
        assert!(shown.contains(want), "{want:?} in {shown}");
    }
    assert_eq!(
        f.pulumi.tag().as_deref(),
        Some("v2"),
        "the stack kept the tag"
    );
    // The history says so too, and the lock is not left behind.
    let h = f.deployer.history("platform", 1).await.unwrap();
    assert_eq!(h[0].state, DeployState::Failed);
    assert!(
        h[0].error
            .as_deref()
            .unwrap_or("")
            .contains("could not be put back"),
        "{:?}",
        h[0].error
    );
    assert!(f.deployer.locks().await.unwrap().is_empty());

    // The approval's digest (a plan) reports it as well.
    f.pulumi
        .config
        .lock()
        .unwrap()
        .insert("image-tag".into(), "main".into());
    f.pulumi
        .previews
        .lock()
        .unwrap()
        .push_back(preview(&[("replace", "web")]));
    let exec = LayerDeployExecutor::new(f.deployer.clone());
    let e = exec
        .digest(&req(Some("v2"), "alice").to_params())
        .await
        .unwrap_err();
    assert!(e.summary.contains("could not be put back"), "{e}");
}

#[tokio::test]
async fn start_up_recovery_keeps_the_lock_and_deploy_of_a_live_process() {
    let f = fixture(&[]).await;
    f.pulumi
        .previews
        .lock()
        .unwrap()
        .push_back(preview(&[("update", "web")]));
    let gate = Arc::new(Notify::new());
    f.pulumi.ups.lock().unwrap().push_back(FakeUp {
        events: step_events("update", "web", None),
        gate: Some(gate.clone()),
        set_image: Some(("prod-web", "repo/web:v2")),
        fail: None,
    });
    // The deploying process runs on another machine: only its heartbeat tells it is alive.
    let cfg = Config::parse("test.toml", CONFIG).unwrap();
    let d = Arc::new(
        Deployer::new(
            &cfg,
            f.pulumi.clone(),
            f.store.clone(),
            f.swarm.clone(),
            Arc::new(Redactor::default()),
        )
        .with_process_name("cli-host:0123456789ab-4026531836:4242:777:abcd"),
    );
    let running =
        tokio::spawn(async move { d.deploy(&req(Some("v2"), "alice"), no_progress()).await });
    while f.pulumi.ups_started.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The bot starting while it deploys, on the same store.
    let other = Deployer::new(
        &cfg,
        Arc::new(NoPulumi),
        f.store.clone(),
        f.swarm.clone(),
        Arc::new(Redactor::default()),
    );
    let interrupted = other.recover_interrupted().await.unwrap();
    assert!(interrupted.is_empty(), "{interrupted:?}");
    let locks = other.locks().await.unwrap();
    assert_eq!(locks.len(), 1, "the live lock is kept");
    assert!(locks[0].process.starts_with("cli-host:"), "{locks:?}");
    assert_eq!(
        f.deployer.history("platform", 1).await.unwrap()[0].state,
        DeployState::Running
    );
    gate.notify_one();
    let out = running.await.unwrap().unwrap();
    assert!(matches!(out, DeployOutcome::Succeeded(_)), "{out:?}");
    assert_eq!(
        f.deployer.history("platform", 1).await.unwrap()[0].state,
        DeployState::Succeeded
    );
}

#[tokio::test]
async fn the_deployer_renews_its_locks_heartbeat_and_recovery_frees_a_stale_one() {
    let mut f = fixture(&[]).await;
    let cfg = Config::parse("test.toml", CONFIG).unwrap();
    f.deployer = Arc::new(
        Deployer::new(
            &cfg,
            f.pulumi.clone(),
            f.store.clone(),
            f.swarm.clone(),
            Arc::new(Redactor::default()),
        )
        .with_lock_heartbeat(Duration::from_millis(20)),
    );
    f.pulumi
        .previews
        .lock()
        .unwrap()
        .push_back(preview(&[("update", "web")]));
    let gate = Arc::new(Notify::new());
    f.pulumi.ups.lock().unwrap().push_back(FakeUp {
        events: step_events("update", "web", None),
        gate: Some(gate.clone()),
        set_image: Some(("prod-web", "repo/web:v2")),
        fail: None,
    });
    let d = f.deployer.clone();
    let running =
        tokio::spawn(async move { d.deploy(&req(Some("v2"), "alice"), no_progress()).await });
    while f.pulumi.ups_started.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let first = f.store.get_layer_lock("platform").await.unwrap().unwrap();
    assert!(first.process.contains(&format!(":{}:", std::process::id())));
    assert!(first.is_alive(now_ms()));
    // Renewed while the deploy runs.
    let renewed = loop {
        let l = f.store.get_layer_lock("platform").await.unwrap().unwrap();
        if l.heartbeat_at_ms > first.heartbeat_at_ms {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(renewed.deploy_id, first.deploy_id);
    gate.notify_one();
    running.await.unwrap().unwrap();

    // A lock whose process stopped renewing it is freed at start-up, its deploy interrupted.
    let now = now_ms();
    let rec = DeployRecord {
        id: "d-dead".into(),
        layer: "platform".into(),
        requester: "bob".into(),
        approver: None,
        reason: String::new(),
        image_before: None,
        image_after: None,
        state: DeployState::Running,
        started_at_ms: now - 60_000,
        finished_at_ms: None,
        summary: serde_json::json!({}),
        error: None,
    };
    f.store.create_deploy(&rec).await.unwrap();
    f.store
        .take_layer_lock(&LayerLock {
            layer: "platform".into(),
            owner: "bob".into(),
            reason: String::new(),
            started_at_ms: now - 60_000,
            expires_at_ms: now + 3_600_000,
            deploy_id: Some("d-dead".into()),
            process: "elsewhere:7:dead".into(),
            heartbeat_at_ms: now - crate::deploy::LOCK_STALE_MS - 1,
        })
        .await
        .unwrap()
        .unwrap();
    let back = f.deployer.recover_interrupted().await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].id, "d-dead");
    assert!(f.deployer.locks().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_lock_of_a_local_process_that_is_gone_is_freed_and_one_that_runs_is_kept() {
    let f = fixture(&[]).await;
    let now = now_ms();
    let me = std::process::id();
    let start = proc_start_time(me).unwrap();
    let machine = process_name().split(':').nth(1).unwrap().to_string();
    // A live local process (this one's parent... any running pid of this namespace: pid 1)
    // and a dead one (a pid that runs, with another start time: a reused pid).
    let init_start = proc_start_time(1).unwrap();
    for (layer, id, process) in [
        (
            "platform",
            "d-live",
            format!("h:{machine}:1:{init_start}:n"),
        ),
        (
            "layer_1",
            "d-gone",
            format!("h:{machine}:{me}:{}:n", start + 1),
        ),
    ] {
        f.store
            .create_deploy(&DeployRecord {
                id: id.into(),
                layer: layer.into(),
                requester: "carol".into(),
                approver: None,
                reason: String::new(),
                image_before: None,
                image_after: None,
                state: DeployState::Running,
                started_at_ms: now,
                finished_at_ms: None,
                summary: serde_json::json!({}),
                error: None,
            })
            .await
            .unwrap();
        f.store
            .take_layer_lock(&LayerLock {
                layer: layer.into(),
                owner: "carol".into(),
                reason: String::new(),
                started_at_ms: now,
                expires_at_ms: now + 3_600_000,
                deploy_id: Some(id.into()),
                process,
                // Fresh heartbeats: the pid check decides, not the clock.
                heartbeat_at_ms: now,
            })
            .await
            .unwrap()
            .unwrap();
    }
    let back = f.deployer.recover_interrupted().await.unwrap();
    assert_eq!(
        back.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["d-gone"]
    );
    let locks = f.deployer.locks().await.unwrap();
    assert_eq!(
        locks.iter().map(|l| l.layer.as_str()).collect::<Vec<_>>(),
        ["platform"]
    );
}

#[tokio::test]
async fn recovery_in_the_same_process_never_frees_the_lock_of_a_running_plan() {
    let f = fixture(&[]).await;
    f.pulumi
        .previews
        .lock()
        .unwrap()
        .push_back(preview(&[("update", "web")]));
    let gate = Arc::new(Notify::new());
    *f.pulumi.preview_gate.lock().unwrap() = Some(gate.clone());
    let d = f.deployer.clone();
    let planning = tokio::spawn(async move { d.plan(&req(Some("v2"), "alice")).await });
    while f.pulumi.previews_started.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The bot's 10 s sweep runs recovery while the (slow) preview of the plan is in flight.
    let back = f.deployer.recover_interrupted().await.unwrap();
    assert!(back.is_empty(), "{back:?}");
    let locks = f.deployer.locks().await.unwrap();
    assert_eq!(locks.len(), 1, "the plan's lock is kept while it runs");
    // So a second deploy of the layer is refused, naming the holder.
    let e = f
        .deployer
        .deploy(&req(Some("v3"), "bob"), no_progress())
        .await
        .unwrap_err();
    assert!(matches!(e, DeployError::Locked { .. }), "{e}");
    gate.notify_one();
    planning.await.unwrap().unwrap();
    assert!(
        f.deployer.locks().await.unwrap().is_empty(),
        "released after"
    );
    // And once released, nothing of it is left to recover.
    assert!(f.deployer.recover_interrupted().await.unwrap().is_empty());
}
