//! Failed deploys: a failed update reports redacted errors and the last good tag; verification
//! fails on services that keep the old tag, not on a third-party image the update did not touch,
//! and a service the update touched must converge.

use super::*;

#[tokio::test]
async fn a_failed_update_reports_redacted_errors_and_the_last_good_tag() {
    let f = fixture(&["hunter2secret"]).await;
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
    f.deployer
        .deploy(&req(Some("v2"), "alice"), no_progress())
        .await
        .unwrap();
    assert_eq!(
        f.deployer
            .rollback_target("platform")
            .await
            .unwrap()
            .as_deref(),
        Some("main"),
        "one deploy: the tag configured before it"
    );

    f.pulumi
        .previews
        .lock()
        .unwrap()
        .push_back(preview(&[("update", "web")]));
    f.pulumi.ups.lock().unwrap().push_back(FakeUp {
        events: step_events(
            "update",
            "web",
            Some("pulling image: password=hunter2secret denied\n"),
        ),
        gate: None,
        set_image: None,
        fail: Some(PulumiError::Failed {
            command: "up",
            code: Some(4),
            errors: vec!["platform-prod: update failed".into()],
            detail: String::new(),
        }),
    });
    let (progress, rx) = watch_progress("platform");
    let e = f
        .deployer
        .deploy(&req(Some("broken"), "alice"), progress)
        .await
        .unwrap_err();
    let DeployError::UpdateFailed {
        errors,
        rollback_target,
        ..
    } = &e
    else {
        panic!("{e}")
    };
    assert_eq!(rollback_target.as_deref(), Some("v2"));
    let all = errors.join("\n");
    assert!(
        all.contains("web: pulling image: password=[REDACTED] denied"),
        "{all}"
    );
    assert!(
        all.contains("update failed") && !all.contains("hunter2secret"),
        "{all}"
    );
    assert_eq!(rx.borrow().phase, DeployPhase::Failed);
    assert!(!format!("{:?}", rx.borrow()).contains("hunter2secret"));
    let h = &f.deployer.history("platform", 5).await.unwrap()[0];
    assert_eq!(
        (h.state, h.image_before.as_deref(), h.image_after.as_deref()),
        (DeployState::Failed, Some("v2"), Some("broken"))
    );
    assert!(h.error.as_deref().unwrap().contains("[REDACTED]"));
    let rb = f
        .deployer
        .rollback_request("platform", "bob", "broken is broken")
        .await
        .unwrap();
    assert_eq!(
        (rb.image_tag.as_deref(), rb.requester.as_str()),
        (Some("v2"), "bob")
    );
    assert_eq!(
        f.deployer
            .rollback_target("platform")
            .await
            .unwrap()
            .as_deref(),
        Some("v2")
    );
    assert!(f.deployer.locks().await.unwrap().is_empty());
}

#[tokio::test]
async fn verification_fails_when_the_services_keep_the_old_tag() {
    let f = fixture(&[]).await;
    f.pulumi
        .previews
        .lock()
        .unwrap()
        .push_back(preview(&[("update", "web")]));
    f.pulumi.ups.lock().unwrap().push_back(FakeUp {
        set_image: None,
        ..ok_up("update", "unused")
    });
    let started = Instant::now();
    let e = f
        .deployer
        .deploy(&req(Some("v2"), "alice"), no_progress())
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(matches!(e, DeployError::VerifyFailed { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("`prod-web` runs repo/web:main instead of tag `v2`"),
        "{e}"
    );
    assert_eq!(
        f.deployer.history("platform", 1).await.unwrap()[0].state,
        DeployState::Failed
    );
}

#[tokio::test]
async fn a_platform_service_on_a_third_party_image_does_not_fail_the_deploy() {
    let f = fixture(&[]).await;
    // Chatwoot runs the vendor's image, not the platform's tag, and is down right now;
    // the deploy does not touch it.
    let mut chatwoot = svc("prod-chatwoot", "chatwoot/chatwoot:v3.1", 7);
    chatwoot.running_tasks = Some(0);
    f.swarm.services.lock().unwrap().push(chatwoot);
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
    let out = f
        .deployer
        .deploy(&req(Some("v2"), "alice"), no_progress())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let DeployOutcome::Succeeded(report) = out else {
        panic!("{out:?}")
    };
    let names: Vec<&str> = report.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["prod-web"], "only what runs the layer's image");
}

#[tokio::test]
async fn a_service_the_update_touched_must_converge_whatever_its_image() {
    let f = fixture(&[]).await;
    f.swarm
        .services
        .lock()
        .unwrap()
        .push(svc("prod-chatwoot", "chatwoot/chatwoot:v3.1", 7));
    f.pulumi
        .previews
        .lock()
        .unwrap()
        .push_back(preview(&[("update", "chatwoot")]));
    f.pulumi.ups.lock().unwrap().push_back(FakeUp {
        set_image: Some(("prod-chatwoot", "chatwoot/chatwoot:v3.2")),
        ..ok_up("update", "unused")
    });
    // The update leaves Chatwoot without a running task.
    f.swarm
        .services
        .lock()
        .unwrap()
        .iter_mut()
        .find(|s| s.name == "prod-chatwoot")
        .unwrap()
        .running_tasks = Some(0);
    let e = f
        .deployer
        .deploy(&req(None, "alice"), no_progress())
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("`prod-chatwoot` runs 0/1 tasks"),
        "{e}"
    );
}
