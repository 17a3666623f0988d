//! The alert store (state, silences, notifications) on SQLite and Postgres.

use super::*;

async fn persistence_suite(store: &dyn AlertStore) {
    assert_eq!(store.load_state().await.unwrap(), Default::default());
    let cfg = EngineConfig::from(&{
        let mut c = AlertsConfig::with_channel(CHANNEL);
        c.failure_threshold = 2;
        c.group_wait_secs = Some(0);
        c
    });
    let bad = |k: &str| Observation::failing(k, Some("platform"), Severity::Critical, "down");
    let mut e = Engine::new(cfg.clone());
    e.tick(1_000, vec![bad("service:a"), bad("service:b")]);
    let fired = e.tick(2_000, vec![bad("service:a"), bad("service:b")]);
    assert_eq!(fired.len(), 1);
    let dirty = e.take_dirty();
    store.save_state(e.state(), &dirty).await.unwrap();
    // Crash before delivery: the outbox is persisted.
    let loaded = store.load_state().await.unwrap();
    assert_eq!(loaded, e.snapshot());
    assert_eq!(loaded.meta.outbox.len(), 1);
    // Delivered: recorded and acked.
    store.record_notification(&fired[0]).await.unwrap();
    e.ack(&[fired[0].id]);
    store.save_state(e.state(), &[]).await.unwrap();
    // Restart: no second firing; the resolution is still announced.
    let mut again = Engine::restore(cfg, store.load_state().await.unwrap());
    assert!(again.outbox().is_empty());
    assert!(again
        .tick(3_000, vec![bad("service:a"), bad("service:b")])
        .is_empty());
    again.tick(4_000, vec![Observation::ok("service:a", None, "ok")]);
    let resolved = again.tick(5_000, vec![Observation::ok("service:a", None, "ok")]);
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].kind, NotificationKind::Resolved);
    assert_eq!(resolved[0].keys().collect::<Vec<_>>(), ["service:a"]);
    let dirty = again.take_dirty();
    store.save_state(again.state(), &dirty).await.unwrap();
    store.record_notification(&resolved[0]).await.unwrap();
    let loaded = store.load_state().await.unwrap();
    assert_eq!(
        loaded.alerts["service:a"].phase,
        ops_core::alerts::Phase::Resolved
    );
    assert!(!loaded.alerts["service:a"].notified);
    assert!(loaded.alerts["service:b"].notified);
    // Per-key upsert: deleting a key the state dropped.
    let mut without_b = loaded.clone();
    without_b.alerts.remove("service:b");
    store
        .save_state(&without_b, &["service:b".to_string()])
        .await
        .unwrap();
    assert!(!store
        .load_state()
        .await
        .unwrap()
        .alerts
        .contains_key("service:b"));
    let recorded = store.notifications().await.unwrap();
    assert_eq!(
        recorded.iter().map(|n| n.kind).collect::<Vec<_>>(),
        [NotificationKind::Firing, NotificationKind::Resolved]
    );
    assert_eq!(recorded[0], fired[0]);
}

#[tokio::test]
async fn alerts_store_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("alerts.db").display());
    store::connect(&url, None).await.unwrap(); // migrates
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    persistence_suite(&SqliteStore::new(pool)).await;
}

#[tokio::test]
async fn alerts_store_on_postgres() {
    let schema = env::PgSchema::create("alerts").await;
    let url = schema.url.clone();
    store::connect(&url, None).await.unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    persistence_suite(&PgStore::new(pool.clone())).await;
    pool.close().await;
    schema.drop().await;
}
