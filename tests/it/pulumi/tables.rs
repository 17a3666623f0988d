//! The deploy tables (history, locks, messages) on SQLite and Postgres.

use super::*;

pub(super) fn record(id: &str, layer: &str, started: i64, state: DeployState) -> DeployRecord {
    DeployRecord {
        id: id.into(),
        layer: layer.into(),
        requester: "alice".into(),
        approver: None,
        reason: "r".into(),
        image_before: Some("main".into()),
        image_after: Some("v2".into()),
        state,
        started_at_ms: started,
        finished_at_ms: None,
        summary: json!({ "preview": { "totals": { "update": 2 } } }),
        error: None,
    }
}

pub(super) async fn deploy_store_suite(s: Arc<dyn Store>) {
    let lock = |owner: &str, started: i64, expires: i64, id: &str| LayerLock {
        layer: "platform".into(),
        owner: owner.into(),
        reason: "release".into(),
        started_at_ms: started,
        expires_at_ms: expires,
        deploy_id: Some(id.into()),
        process: "host:1:ab".into(),
        heartbeat_at_ms: started,
    };
    assert!(s
        .take_layer_lock(&lock("alice", 1_000, 5_000, "d1"))
        .await
        .unwrap()
        .is_ok());
    // Held: refused, naming the holder; an expired lock is taken over.
    let held = s
        .take_layer_lock(&lock("bob", 2_000, 9_000, "d2"))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!((held.owner.as_str(), held.started_at_ms), ("alice", 1_000));
    assert!(s
        .take_layer_lock(&lock("bob", 5_000, 9_000, "d2"))
        .await
        .unwrap()
        .is_ok());
    assert_eq!(
        s.get_layer_lock("platform").await.unwrap().unwrap().owner,
        "bob"
    );
    assert!(
        !s.release_layer_lock("platform", Some("d1")).await.unwrap(),
        "only the holder's id releases"
    );
    assert_eq!(s.list_layer_locks().await.unwrap().len(), 1);
    assert!(s.release_layer_lock("platform", Some("d2")).await.unwrap());
    assert!(s.get_layer_lock("platform").await.unwrap().is_none());
    assert!(s
        .take_layer_lock(&lock("carol", 6_000, 9_000, "d3"))
        .await
        .unwrap()
        .is_ok());
    assert!(
        s.release_layer_lock("platform", None).await.unwrap(),
        "forced"
    );

    for (i, (layer, state)) in [
        ("platform", DeployState::Succeeded),
        ("layer_1", DeployState::Running),
        ("platform", DeployState::Running),
    ]
    .into_iter()
    .enumerate()
    {
        s.create_deploy(&record(&format!("d{i}"), layer, 100 + i as i64, state))
            .await
            .unwrap();
    }
    let mut d0 = s.get_deploy("d0").await.unwrap().unwrap();
    assert_eq!(
        d0.summary["preview"]["totals"]["update"], 2,
        "JSON round trip"
    );
    d0.state = DeployState::Failed;
    assert!(
        !s.finish_deploy(&d0).await.unwrap(),
        "only running deploys end"
    );
    let mut d2 = s.get_deploy("d2").await.unwrap().unwrap();
    d2.state = DeployState::Succeeded;
    d2.finished_at_ms = Some(500);
    d2.image_before = Some("v1".into());
    d2.error = None;
    assert!(s.finish_deploy(&d2).await.unwrap());
    s.set_deploy_approver("d2", "bob").await.unwrap();
    let got = s.get_deploy("d2").await.unwrap().unwrap();
    assert_eq!(
        (
            got.state,
            got.finished_at_ms,
            got.image_before.as_deref(),
            got.approver.as_deref()
        ),
        (DeployState::Succeeded, Some(500), Some("v1"), Some("bob"))
    );
    let platform: Vec<String> = s
        .list_deploys(Some("platform"), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(platform, ["d2", "d0"], "newest first, one layer");
    assert_eq!(s.list_deploys(None, 2).await.unwrap().len(), 2, "limit");
    // Snowflakes above i64::MAX survive the round trip; a deploy without a message has none.
    assert_eq!(s.get_deploy_message("d1").await.unwrap(), None);
    s.set_deploy_message("d1", u64::MAX - 1, 1_234_567_890_123_456_789)
        .await
        .unwrap();
    assert_eq!(
        s.get_deploy_message("d1").await.unwrap(),
        Some((u64::MAX - 1, 1_234_567_890_123_456_789))
    );
    assert_eq!(s.get_deploy_message("no-such-deploy").await.unwrap(), None);
    let interrupted = s
        .interrupt_running_deploys(900, "interrupted: restart")
        .await
        .unwrap();
    assert_eq!(
        interrupted
            .iter()
            .map(|d| d.id.as_str())
            .collect::<Vec<_>>(),
        ["d1"]
    );
    assert_eq!(interrupted[0].state, DeployState::Interrupted);
    assert!(s
        .interrupt_running_deploys(901, "again")
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
pub(super) async fn deploy_tables_on_sqlite_and_postgres() {
    let dir = tempfile::tempdir().unwrap();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let (s, pg) = open_store(backend, dir.path()).await;
        deploy_store_suite(s).await;
        if let Some(pg) = pg {
            pg.drop().await;
        }
    }
}
