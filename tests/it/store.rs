//! The store suite, run unchanged on SQLite (a file) and on a real Postgres (the server
//! scripts/test.sh starts; the test fails when it is missing). Each Postgres run gets its own
//! schema so runs never see each other's rows.

use std::sync::Arc;

use ops_core::audit::{Actor, AuditEntry, AuditFilter, Outcome};
use ops_core::store::{self, Store};
use sprocket_ops_tests::env;

fn entry(actor: &Actor, command: &str, at_ms: i64, outcome: Outcome) -> AuditEntry {
    AuditEntry {
        at_ms,
        actor: actor.clone(),
        command: command.into(),
        params: serde_json::json!({ "layer": "platform", "n": at_ms }),
        outcome,
        detail: (outcome != Outcome::Ok).then(|| "refused".to_string()),
        error_id: None,
        duration_ms: 3,
    }
}

async fn suite(store: Arc<dyn Store>, raw_update: impl AsyncFn(&str) -> Result<(), String>) {
    let alice = Actor::discord(111, "alice");
    let bob = Actor {
        github_login: Some("bob-gh".into()),
        ..Actor::discord(222, "bob")
    };
    let cli = Actor::cli_from_env();
    let mut ids = Vec::new();
    for (i, (a, c, o)) in [
        (&alice, "status", Outcome::Ok),
        (&bob, "deploy", Outcome::Denied),
        (&alice, "whoami", Outcome::Ok),
        (&cli, "status", Outcome::Error),
    ]
    .into_iter()
    .enumerate()
    {
        ids.push(
            store
                .append_audit(&entry(a, c, 1_000 + i as i64, o))
                .await
                .unwrap(),
        );
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");

    let all = store.list_audit(&AuditFilter::default()).await.unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[0].entry.command, "status", "newest first");
    assert_eq!(all[0].entry.actor, cli);
    assert_eq!(all[2].entry.actor.github_login.as_deref(), Some("bob-gh"));
    assert_eq!(all[2].entry.outcome, Outcome::Denied);
    assert_eq!(all[2].entry.params["layer"], "platform");
    assert_eq!(
        all[3].entry,
        entry(&alice, "status", 1_000, Outcome::Ok),
        "round trip"
    );

    let alice_rows = store
        .list_audit(&AuditFilter {
            actor_id: Some("111".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        alice_rows
            .iter()
            .map(|r| r.entry.command.as_str())
            .collect::<Vec<_>>(),
        ["whoami", "status"]
    );
    let recent = store
        .list_audit(&AuditFilter {
            since_ms: Some(1_002),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(recent.len(), 2);
    let limited = store
        .list_audit(&AuditFilter {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(limited.len(), 1);

    // Append-only: the database itself refuses changes.
    for sql in [
        "UPDATE audit_log SET outcome = 'ok'",
        "DELETE FROM audit_log",
    ] {
        let err = raw_update(sql).await.expect_err(sql);
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(
        store
            .list_audit(&AuditFilter::default())
            .await
            .unwrap()
            .len(),
        4
    );
}

#[tokio::test]
async fn store_suite_on_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("ops.db");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let url = format!("sqlite://{}", path.display());
    let store = store::connect(&url, None).await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    assert!(path.exists(), "created on first run");
    let raw_url = url.clone();
    suite(store, async move |sql: &str| {
        let pool = sqlx::SqlitePool::connect(&raw_url)
            .await
            .map_err(|e| e.to_string())?;
        sqlx::query(sql)
            .execute(&pool)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;
    // Reopening migrates nothing twice and keeps the rows.
    let again = store::connect(&url, None).await.unwrap();
    assert_eq!(
        again
            .list_audit(&AuditFilter::default())
            .await
            .unwrap()
            .len(),
        4
    );
}

#[tokio::test]
async fn store_suite_on_postgres() {
    let schema = env::PgSchema::create("t").await;
    let url = schema.url.clone();
    let store = store::connect(&url, None).await.unwrap();
    assert_eq!(store.backend(), "postgres");
    let raw_url = url.clone();
    suite(store, async move |sql: &str| {
        let pool = sqlx::PgPool::connect(&raw_url)
            .await
            .map_err(|e| e.to_string())?;
        sqlx::query(sql)
            .execute(&pool)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;
    schema.drop().await;
}

#[tokio::test]
async fn unwritable_sqlite_path_is_a_clear_error() {
    let e = match store::connect("sqlite:///proc/no-such-dir/ops.db", None).await {
        Ok(_) => panic!("opened a database under /proc"),
        Err(e) => e,
    };
    assert!(matches!(e, store::StoreError::Open(_)), "{e}");
}

#[tokio::test]
async fn truncating_the_audit_log_on_postgres_is_refused() {
    let schema = env::PgSchema::create("trunc").await;
    let store = store::connect(&schema.url, None).await.unwrap();
    let actor = Actor::discord(42, "mallory");
    store
        .append_audit(&entry(&actor, "restart", 1, Outcome::Ok))
        .await
        .unwrap();
    let pool = sqlx::PgPool::connect(&schema.url).await.unwrap();
    for sql in [
        "TRUNCATE audit_log",
        "TRUNCATE TABLE audit_log RESTART IDENTITY",
    ] {
        let err = sqlx::query(sql)
            .execute(&pool)
            .await
            .map(|_| ())
            .expect_err(sql)
            .to_string();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    let rows = store.list_audit(&AuditFilter::default()).await.unwrap();
    assert_eq!(rows.len(), 1, "the row survived");
    pool.close().await;
    schema.drop().await;
}
