//! The deploy flow: a deploy sets the tag, previews, applies, verifies and records; destructive
//! previews and `layer_1` need an approval and only the approved plan runs; a locked layer and
//! bad requests are refused before anything runs.

use super::*;

#[tokio::test]
async fn deploy_sets_the_tag_previews_applies_verifies_and_records() {
    let f = fixture(&[]).await;
    f.pulumi
        .previews
        .lock()
        .unwrap()
        .push_back(preview(&[("update", "web")]));
    f.pulumi
        .ups
        .lock()
        .unwrap()
        .push_back(ok_up("update", "repo/web:v2"));
    let (progress, rx) = watch_progress("platform");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let progress: ProgressFn = Arc::new(move |p: &DeployProgress| {
        seen2.lock().unwrap().push(p.phase);
        progress(p)
    });
    let out = f
        .deployer
        .deploy(&req(Some("v2"), "alice"), progress)
        .await
        .unwrap();
    let DeployOutcome::Succeeded(report) = out else {
        panic!("{out:?}")
    };
    assert_eq!(
        f.pulumi.calls(),
        [
            "config get image-tag --stack prod",
            "config set image-tag v2 --stack prod",
            "preview --stack prod",
            "up --stack prod"
        ]
    );
    assert_eq!(f.pulumi.tag().as_deref(), Some("v2"));
    assert_eq!(report.record.image_before.as_deref(), Some("main"));
    assert_eq!(report.record.image_after.as_deref(), Some("v2"));
    assert_eq!(report.record.state, DeployState::Succeeded);
    assert_eq!(report.services.len(), 1, "only the layer's services");
    assert_eq!(report.services[0].image, "repo/web:v2");
    assert_eq!(
        *f.swarm.followed.lock().unwrap(),
        [("prod-web".to_string(), 10)]
    );
    let last = rx.borrow().clone();
    assert_eq!(
        (last.phase, last.steps_done, last.steps_planned),
        (DeployPhase::Succeeded, 1, 1)
    );
    let phases = seen.lock().unwrap().clone();
    for want in [
        DeployPhase::Previewing,
        DeployPhase::Applying,
        DeployPhase::Verifying,
    ] {
        assert!(phases.contains(&want), "{phases:?}");
    }
    let history = f.deployer.history("platform", 10).await.unwrap();
    assert_eq!(history.len(), 1);
    let h = &history[0];
    assert_eq!(
        (h.state, h.requester.as_str(), h.approver.as_deref()),
        (DeployState::Succeeded, "alice", None)
    );
    assert_eq!(h.summary["steps_done"], 1);
    assert_eq!(h.summary["preview"]["totals"]["update"], 1);
    assert_eq!(h.summary["resource_changes"]["update"], 1);
    assert!(h.duration_ms().unwrap() >= 0);
    assert!(f.deployer.locks().await.unwrap().is_empty(), "released");
    f.deployer.set_approver(&h.id, "bob").await.unwrap();
    assert_eq!(
        f.deployer.history("platform", 1).await.unwrap()[0]
            .approver
            .as_deref(),
        Some("bob")
    );
}

#[tokio::test]
async fn destructive_previews_need_an_approval_and_only_the_approved_plan_runs() {
    let f = fixture(&[]).await;
    for _ in 0..4 {
        f.pulumi
            .previews
            .lock()
            .unwrap()
            .push_back(preview(&[("replace", "web")]));
    }
    let r = req(Some("v2"), "alice");
    let out = f.deployer.deploy(&r, no_progress()).await.unwrap();
    let DeployOutcome::NeedsApproval(plan) = out else {
        panic!("{out:?}")
    };
    assert_eq!(plan.approval_action.as_deref(), Some(ACTION_DESTRUCTIVE));
    assert!(
        plan.approval_reasons[0].contains("replace web"),
        "{:?}",
        plan.approval_reasons
    );
    assert_eq!(
        f.pulumi.tag().as_deref(),
        Some("main"),
        "the tag is put back"
    );
    assert_eq!(
        f.pulumi.calls().last().unwrap(),
        "config set image-tag main --stack prod"
    );
    let h = f.deployer.history("platform", 5).await.unwrap();
    assert_eq!(h[0].state, DeployState::Cancelled);
    assert!(
        h[0].error.as_deref().unwrap().contains("approval"),
        "{:?}",
        h[0].error
    );
    assert!(f.deployer.locks().await.unwrap().is_empty());

    // The approval engine's digest is the same plan, computed without recording.
    let exec = LayerDeployExecutor::new(f.deployer.clone());
    let digest = exec.digest(&r.to_params()).await.unwrap();
    assert_eq!(digest, plan.digest);
    assert_eq!(
        f.deployer.history("platform", 5).await.unwrap().len(),
        1,
        "plans are not recorded"
    );

    let e = f
        .deployer
        .deploy_approved(&r, "0123456789abcdef", no_progress())
        .await
        .unwrap_err();
    assert!(
        e.to_string().starts_with("void: the preview changed"),
        "{e}"
    );
    assert_eq!(f.pulumi.tag().as_deref(), Some("main"));

    f.pulumi
        .ups
        .lock()
        .unwrap()
        .push_back(ok_up("replace", "repo/web:v2"));
    let done = exec.execute(&r.to_params()).await.unwrap();
    assert!(done.starts_with("deployed `platform` tag `v2`"), "{done}");
    assert_eq!(
        f.deployer.history("platform", 1).await.unwrap()[0].state,
        DeployState::Succeeded
    );
}

#[tokio::test]
async fn layer_1_always_needs_an_approval() {
    let f = fixture(&[]).await;
    f.pulumi
        .previews
        .lock()
        .unwrap()
        .push_back(preview(&[("update", "traefik")]));
    let r = DeployRequest {
        layer: "layer_1".into(),
        image_tag: None,
        requester: "alice".into(),
        reason: String::new(),
    };
    let DeployOutcome::NeedsApproval(plan) = f.deployer.deploy(&r, no_progress()).await.unwrap()
    else {
        panic!("layer_1 deploys are approved")
    };
    assert_eq!(plan.approval_action.as_deref(), Some("layer_1_deploy"));
    assert_eq!(
        f.pulumi.calls(),
        ["preview --stack layer_1"],
        "no tag key: no config calls"
    );
}

#[tokio::test]
async fn a_second_deploy_of_a_locked_layer_is_refused_at_once_naming_the_holder() {
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
        set_image: None,
        fail: None,
    });
    let (progress, mut rx) = watch_progress("platform");
    let d = f.deployer.clone();
    let first = tokio::spawn(async move { d.deploy(&req(Some("v2"), "alice"), progress).await });
    while f.pulumi.ups_started.load(Ordering::SeqCst) == 0 {
        rx.changed().await.unwrap();
    }
    assert_eq!(
        rx.borrow().current.as_deref(),
        Some("web"),
        "the resource in flight"
    );
    let started = Instant::now();
    let e = f
        .deployer
        .deploy(&req(Some("v3"), "bob"), no_progress())
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    let DeployError::Locked { holder } = &e else {
        panic!("{e}")
    };
    assert_eq!(holder.owner, "alice");
    let text = e.to_string();
    assert!(
        text.contains("alice has been deploying it since") && text.contains("UTC"),
        "{text}"
    );
    assert_eq!(f.deployer.locks().await.unwrap().len(), 1);
    assert!(matches!(
        f.deployer.unlock("platform").await,
        Err(DeployError::UnlockRunning(_))
    ));

    assert!(f.deployer.cancel("platform").await.unwrap());
    let e = first.await.unwrap().unwrap_err();
    assert!(matches!(e, DeployError::Cancelled { .. }), "{e}");
    assert_eq!(
        f.deployer.history("platform", 1).await.unwrap()[0].state,
        DeployState::Cancelled
    );
    assert!(f.deployer.locks().await.unwrap().is_empty());
    assert!(
        !f.deployer.cancel("platform").await.unwrap(),
        "nothing runs now"
    );
}

#[tokio::test]
async fn bad_requests_are_refused_before_anything_runs() {
    let cfg = Config::parse("test.toml", CONFIG).unwrap();
    let (store, _dir) = store().await;
    let swarm = Arc::new(FakeSwarm::default());
    let d = Deployer::new(
        &cfg,
        Arc::new(NoPulumi),
        store.clone(),
        swarm,
        Arc::new(Redactor::default()),
    );
    for tag in [
        "--yes",
        "-x",
        ";rm",
        "$(id)",
        "`id`",
        "a b",
        "v2\n",
        "v2;rm -rf /",
        "repo/web:v2",
        "",
        ".hidden",
    ] {
        let e = d
            .deploy(&req(Some(tag), "alice"), no_progress())
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                DeployError::InvalidArgument {
                    what: "image tag",
                    ..
                }
            ),
            "{tag:?}: {e}"
        );
    }
    for layer in [";rm", "--yes", "platfrom", "", "platform\n"] {
        let r = DeployRequest {
            layer: layer.into(),
            ..req(Some("v2"), "alice")
        };
        let e = d.deploy(&r, no_progress()).await.unwrap_err();
        assert!(matches!(e, DeployError::UnknownLayer(_)), "{layer:?}: {e}");
    }
    let e = d
        .deploy(
            &DeployRequest {
                layer: "platfrom".into(),
                ..req(None, "a")
            },
            no_progress(),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("did you mean platform"), "{e}");
    let r = DeployRequest {
        layer: "layer_1".into(),
        ..req(Some("v2"), "alice")
    };
    assert!(matches!(
        d.deploy(&r, no_progress()).await,
        Err(DeployError::NoImageTag { .. })
    ));
    assert!(matches!(
        d.deploy(&req(Some("v2"), ""), no_progress()).await,
        Err(DeployError::InvalidArgument {
            what: "requester",
            ..
        })
    ));
    assert!(store.list_deploys(None, 10).await.unwrap().is_empty());
    assert!(store.list_layer_locks().await.unwrap().is_empty());
}
