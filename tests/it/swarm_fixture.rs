//! Integration tests of the Swarm fixtures themselves (tests/src/swarm.rs) on the real
//! engine: services converge from the `:main` image and match the Docker CLI's view, the
//! `:broken` image crash-loops with exit code 1 and never converges, guards clean up, and
//! stale-service cleanup only touches old labelled services.

use std::time::Duration;

use sprocket_ops_tests::env;
use sprocket_ops_tests::swarm::{
    docker_service_ls, docker_service_ps, TestService, TestSwarm, CREATED_LABEL, TEST_LABEL,
};

async fn service_exists(swarm: &TestSwarm, id: &str) -> bool {
    swarm.docker().inspect_service(id, None).await.is_ok()
}

#[tokio::test]
async fn two_replica_main_service_converges_and_matches_the_cli() {
    let swarm = TestSwarm::connect().await;
    let guard = swarm
        .create_service(TestService::new("fx-main", "main").replicas(2))
        .await;
    assert_eq!(guard.image(), env::test_image("main"));
    swarm
        .wait_converged(guard.name(), Duration::from_secs(60))
        .await
        .expect("2 replicas of :main converge");

    let rows = docker_service_ls();
    let row = rows
        .iter()
        .find(|r| r.name == guard.name())
        .unwrap_or_else(|| panic!("{} missing from docker service ls: {rows:?}", guard.name()));
    assert_eq!(row.replicas, "2/2");
    assert_eq!(row.replica_counts(), Some((2, 2)));
    assert_eq!(row.image, guard.image());
    assert_eq!(row.mode, "replicated");
    assert!(
        guard.id().starts_with(&row.id),
        "{} vs {}",
        guard.id(),
        row.id
    );

    let ps = docker_service_ps(guard.name());
    let running: Vec<_> = ps
        .iter()
        .filter(|t| t.desired_state == "Running" && t.current_state.starts_with("Running"))
        .collect();
    assert_eq!(running.len(), 2, "{ps:?}");
    assert!(running.iter().all(|t| t.image == guard.image()), "{ps:?}");

    let service = swarm.inspect(guard.name()).await.unwrap();
    let labels = service.spec.unwrap().labels.unwrap();
    assert_eq!(labels[TEST_LABEL], env::run_id());

    let (name, id) = (guard.name().to_string(), guard.id().to_string());
    guard.remove().await.expect("explicit removal");
    assert!(!service_exists(&swarm, &id).await);
    assert!(docker_service_ls().iter().all(|r| r.name != name));
}

#[tokio::test]
async fn broken_image_crash_loops_with_exit_code_1_and_never_converges() {
    let swarm = TestSwarm::connect().await;
    let guard = swarm
        .create_service(TestService::new("fx-broken", "broken"))
        .await;
    let err = swarm
        .wait_converged(guard.name(), Duration::from_secs(6))
        .await
        .expect_err(":broken must not converge");
    assert!(err.to_string().contains("did not converge"), "{err:#}");

    let codes = swarm.task_exit_codes(guard.name()).await.unwrap();
    assert!(!codes.is_empty(), "no exited task after 6 s: {err:#}");
    assert!(codes.iter().all(|&c| c == 1), "exit codes {codes:?}");

    let ps = docker_service_ps(guard.name());
    assert!(
        ps.iter().any(|t| t.error == "task: non-zero exit (1)"),
        "docker service ps: {ps:?}"
    );
    let row = docker_service_ls()
        .into_iter()
        .find(|r| r.name == guard.name())
        .expect("listed by the CLI");
    assert_eq!(row.replica_counts().map(|(_, desired)| desired), Some(1));
    assert_ne!(row.replicas, "1/1");
}

#[tokio::test]
async fn dropping_the_guard_removes_the_service() {
    let swarm = TestSwarm::connect().await;
    let guard = swarm
        .create_service(TestService::new("fx-drop", "v2").env("TESTSVC_LOG_INTERVAL_MS", "0"))
        .await;
    let (name, id) = (guard.name().to_string(), guard.id().to_string());
    assert!(service_exists(&swarm, &id).await);
    assert!(docker_service_ls().iter().any(|r| r.name == name));
    drop(guard);
    assert!(
        !service_exists(&swarm, &id).await,
        "{name} survived its guard"
    );
    assert!(docker_service_ls().iter().all(|r| r.name != name));
}

#[tokio::test]
async fn cleanup_stale_removes_only_old_labelled_services() {
    let swarm = TestSwarm::connect().await;
    let image = env::test_image("main");
    let run_id = env::run_id();

    // An "old" labelled leftover and a fresh labelled service, created directly so the
    // creation label can be back-dated.
    let mut old = TestService::new("fx-stale", "main").to_spec(
        &format!("fx-stale-{run_id}-old"),
        &image,
        &run_id,
    );
    let one_hour_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 3600;
    old.labels
        .as_mut()
        .unwrap()
        .insert(CREATED_LABEL.to_string(), one_hour_ago.to_string());
    let old_id = swarm
        .docker()
        .create_service(old, None)
        .await
        .unwrap()
        .id
        .unwrap();
    let fresh = swarm
        .create_service(TestService::new("fx-fresh", "main"))
        .await;

    swarm.cleanup_stale().await;

    let old_survived = service_exists(&swarm, &old_id).await;
    if old_survived {
        let _ = swarm.docker().delete_service(&old_id).await;
    }
    assert!(!old_survived, "the back-dated service was not cleaned up");
    assert!(
        service_exists(&swarm, fresh.id()).await,
        "a fresh test service was removed"
    );
}

#[test]
#[should_panic(expected = "scripts/build-test-images.sh")]
fn missing_test_image_panics_with_the_build_command() {
    env::test_image("no-such-tag-for-sprocket-tests");
}
