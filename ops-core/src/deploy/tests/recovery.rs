//! Recovery and history: running deploys are marked interrupted and their locks released, an
//! expired lock is taken over, `/unlock` releases one; the rollback target and image tags.

use super::*;

#[tokio::test]
async fn recovery_marks_running_deploys_interrupted_and_releases_their_locks() {
    let f = fixture(&[]).await;
    let now = now_ms();
    let rec = DeployRecord {
        id: "d-crashed".into(),
        layer: "platform".into(),
        requester: "alice".into(),
        approver: None,
        reason: String::new(),
        image_before: Some("main".into()),
        image_after: Some("v2".into()),
        state: DeployState::Running,
        started_at_ms: now - 5_000,
        finished_at_ms: None,
        summary: serde_json::json!({}),
        error: None,
    };
    f.store.create_deploy(&rec).await.unwrap();
    let lock = |layer: &str, id: &str| LayerLock {
        layer: layer.into(),
        owner: "alice".into(),
        reason: String::new(),
        started_at_ms: now - 5_000,
        expires_at_ms: now + 3_600_000,
        deploy_id: Some(id.into()),
        // The process that held them crashed: no heartbeat since.
        process: "host:1:dead".into(),
        heartbeat_at_ms: now - crate::deploy::LOCK_STALE_MS - 1,
    };
    f.store
        .take_layer_lock(&lock("platform", "d-crashed"))
        .await
        .unwrap()
        .unwrap();
    f.store
        .take_layer_lock(&lock("layer_1", "plan-x"))
        .await
        .unwrap()
        .unwrap();
    let e = f
        .deployer
        .deploy(&req(Some("v2"), "bob"), no_progress())
        .await
        .unwrap_err();
    assert!(matches!(e, DeployError::Locked { .. }), "{e}");

    let back = f.deployer.recover_interrupted().await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(
        (back[0].id.as_str(), back[0].state),
        ("d-crashed", DeployState::Interrupted)
    );
    assert!(
        f.deployer.locks().await.unwrap().is_empty(),
        "both released"
    );
    assert!(
        f.deployer.recover_interrupted().await.unwrap().is_empty(),
        "idempotent"
    );
    let h = f.deployer.history("platform", 1).await.unwrap();
    assert!(h[0].error.as_deref().unwrap().starts_with("interrupted"));
}

#[tokio::test]
async fn an_expired_lock_is_taken_over_and_unlock_releases_a_lock() {
    let f = fixture(&[]).await;
    let now = now_ms();
    let stale = LayerLock {
        layer: "platform".into(),
        owner: "carol".into(),
        reason: String::new(),
        started_at_ms: now - 10_000,
        expires_at_ms: now - 1,
        deploy_id: Some("d-old".into()),
        process: "host:1:old".into(),
        heartbeat_at_ms: now - 10_000,
    };
    f.store.take_layer_lock(&stale).await.unwrap().unwrap();
    assert!(stale.is_expired(now));
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

    let held = LayerLock {
        expires_at_ms: now + 60_000,
        ..stale
    };
    f.store.take_layer_lock(&held).await.unwrap().unwrap();
    assert!(matches!(
        f.deployer.rollback_request("layer_1", "bob", "").await,
        Err(DeployError::NoRollbackTarget(_))
    ));
    let released = f.deployer.unlock("platform").await.unwrap().unwrap();
    assert_eq!(released.owner, "carol");
    assert!(f.deployer.unlock("platform").await.unwrap().is_none());
}

fn record(id: &str, state: DeployState, tag: &str, applied: bool) -> DeployRecord {
    DeployRecord {
        id: id.into(),
        layer: "platform".into(),
        requester: "a".into(),
        approver: None,
        reason: String::new(),
        image_before: tag.strip_prefix("after-").map(|_| "before".to_string()),
        image_after: Some(tag.into()),
        state,
        started_at_ms: 0,
        finished_at_ms: None,
        summary: serde_json::json!({ "applied": applied }),
        error: None,
    }
}

#[test]
fn rollback_target_is_the_last_good_tag_before_the_current_one() {
    use DeployState::*;
    // Newest first.
    type History<'a> = &'a [(DeployState, &'a str, bool)];
    let cases: &[(History, Option<&str>)] = &[
        (&[], None),
        (&[(Succeeded, "main", true)], None),
        (
            &[(Succeeded, "v2", true), (Succeeded, "main", true)],
            Some("main"),
        ),
        (
            &[
                (Failed, "broken", true),
                (Succeeded, "v2", true),
                (Succeeded, "main", true),
            ],
            Some("v2"),
        ),
        // An approval request that never ran does not change what runs.
        (
            &[
                (Cancelled, "v3", false),
                (Succeeded, "v2", true),
                (Succeeded, "main", true),
            ],
            Some("main"),
        ),
        (
            &[
                (Interrupted, "v3", true),
                (Failed, "v2", true),
                (Succeeded, "main", true),
            ],
            Some("main"),
        ),
        (
            &[
                (Succeeded, "v2", true),
                (Succeeded, "v2", true),
                (Succeeded, "main", true),
            ],
            Some("main"),
        ),
        // Without an earlier good deploy: the tag configured before the current one.
        (&[(Failed, "after-x", true)], Some("before")),
        (&[(Succeeded, "after-x", true)], Some("before")),
    ];
    for (history, want) in cases {
        let recs: Vec<DeployRecord> = history
            .iter()
            .enumerate()
            .map(|(i, (s, t, a))| record(&i.to_string(), *s, t, *a))
            .collect();
        assert_eq!(rollback_from(&recs).as_deref(), *want, "{history:?}");
    }
}

#[test]
fn image_tags_and_service_problems() {
    assert_eq!(image_tag("registry:5000/org/web:v2@sha256:abc"), Some("v2"));
    assert_eq!(image_tag("web"), None);
    let mut s = svc("prod-web", "repo/web:v2", 1);
    assert_eq!(service_problem(&s, Some("v2")), None);
    s.running_tasks = Some(0);
    assert_eq!(
        service_problem(&s, None).unwrap(),
        "`prod-web` runs 0/1 tasks"
    );
    s.update_state = Some("updating".into());
    assert!(service_problem(&s, None)
        .unwrap()
        .contains("still updating"));
    assert!(matches!(EventKind::Cancel, EventKind::Cancel));
}
