//! The approval is bound to what runs (issue 12), on the REAL Swarm: an approved Swarm action
//! changes the service only at exactly the spec version read when the request was made, so a
//! change made in between (even one racing the execution) voids the approval, nothing is
//! applied and the result says why; approvers are shown the spec diff with env values masked.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ops_core::approvals::{ActionExecutor, ApprovalState, Approvals, Decided, Decision, PersonRef};
use ops_core::permissions::Permissions;
use ops_core::store::{self, Store};
use ops_core::swarm::actions::{ScaleToZero, ServiceRollback};
use ops_core::swarm::docker::DockerSwarm;
use ops_core::swarm::{ServiceDetail, SwarmApi, SwarmError, SwarmSnapshot, UpdateStarted};
use sprocket_ops_tests::env;
use sprocket_ops_tests::swarm::{TestService, TestSwarm};

const CONVERGE: Duration = Duration::from_secs(60);

fn perms() -> Arc<Permissions> {
    let text = std::fs::read_to_string(env::workspace_root().join("permissions.toml")).unwrap();
    Arc::new(Permissions::parse("permissions.toml", &text).unwrap())
}

fn person(github_id: u64) -> PersonRef {
    PersonRef {
        github_id,
        login: format!("user{github_id}"),
        discord_id: github_id + 100,
    }
}

/// `docker service update <args> <name>` (someone else changing the service), detached.
fn docker_update(name: &str, args: &[&str]) {
    let out = std::process::Command::new("docker")
        .args(["service", "update", "--detach"])
        .args(args)
        .arg(name)
        .output()
        .expect("the docker CLI is needed by this test");
    assert!(
        out.status.success(),
        "docker service update: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The real engine, with someone else's change landing at the worst moment: after the last
/// read the approval engine or executor makes at execution time (its second read of the
/// service), or, when there is no such read, right before the update reaches the engine.
struct ChangeAtTheLastMoment {
    inner: DockerSwarm,
    service: String,
    reads: AtomicUsize,
    landed: AtomicBool,
}

impl ChangeAtTheLastMoment {
    fn change_once(&self) {
        if !self.landed.swap(true, Ordering::SeqCst) {
            docker_update(&self.service, &["--env-add", "CHANGED_BY=someone-else"]);
        }
    }
}

#[async_trait]
impl SwarmApi for ChangeAtTheLastMoment {
    async fn snapshot(&self) -> Result<SwarmSnapshot, SwarmError> {
        panic!("unexpected snapshot")
    }
    async fn inspect(&self, name: &str) -> Result<ServiceDetail, SwarmError> {
        let d = self.inner.inspect(name).await?;
        if self.reads.fetch_add(1, Ordering::SeqCst) == 1 {
            // The second read (the first is the request's): the engine's check at execution.
            self.change_once();
        }
        Ok(d)
    }
    async fn scale(
        &self,
        name: &str,
        replicas: u64,
        expected_version: Option<u64>,
    ) -> Result<UpdateStarted, SwarmError> {
        self.change_once();
        self.inner.scale(name, replicas, expected_version).await
    }
    async fn rollback(
        &self,
        name: &str,
        expected_version: Option<u64>,
    ) -> Result<UpdateStarted, SwarmError> {
        self.change_once();
        self.inner.rollback(name, expected_version).await
    }
}

fn real() -> DockerSwarm {
    DockerSwarm::new(ops_core::config::DEFAULT_DOCKER_HOST, 30).expect("valid docker host")
}

async fn sqlite() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("a.db").display());
    let store = store::connect(&url, None).await.unwrap();
    (dir, store)
}

/// Requests `action` on `service`, has a second person approve it and executes it.
async fn request_approve_execute(
    a: &Approvals,
    action: &str,
    service: &str,
    between: impl FnOnce(),
) -> String {
    let req = a
        .request(
            &person(1),
            action,
            serde_json::json!({ "service": service }),
            &format!("{action} {service}"),
            1,
        )
        .await
        .unwrap();
    between();
    let operator = ["everyone", "viewer", "operator"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        a.decide(&req.id, &person(2), &operator, Decision::Approve)
            .await
            .unwrap(),
        Decided::Approved
    );
    let _ = a.execute(&req.id).await.unwrap();
    req.id
}

#[tokio::test]
async fn a_change_racing_an_approved_scale_to_zero_voids_it_instead_of_being_applied() {
    let swarm = TestSwarm::connect().await;
    let guard = swarm
        .create_service(TestService::new("bind-race", "main").replicas(2))
        .await;
    swarm.wait_converged(guard.name(), CONVERGE).await.unwrap();
    let racing = Arc::new(ChangeAtTheLastMoment {
        inner: real(),
        service: guard.name().to_string(),
        reads: AtomicUsize::new(0),
        landed: AtomicBool::new(false),
    });
    let (_dir, store) = sqlite().await;
    let mut a = Approvals::new(store, perms(), b"test-bot-token");
    a.register("scale_to_zero", Arc::new(ScaleToZero::new(racing.clone())));
    let id = request_approve_execute(&a, "scale_to_zero", guard.name(), || {}).await;

    assert!(racing.landed.load(Ordering::SeqCst), "the change landed");
    let req = a.get(&id).await.unwrap();
    assert_eq!(
        req.state,
        ApprovalState::Void,
        "the approval was for another version: {:?}",
        req.result
    );
    let why = req.result.unwrap_or_default();
    assert!(
        why.contains(guard.name()) && why.contains("changed since the request"),
        "{why}"
    );
    assert!(why.contains("nothing was applied"), "{why}");
    assert_eq!(
        swarm.replicas(guard.name()).await.unwrap(),
        Some(2),
        "nothing was applied"
    );
    guard.remove().await.unwrap();
}

#[tokio::test]
async fn a_rollback_whose_service_changed_after_the_request_is_void_and_says_why() {
    let swarm = TestSwarm::connect().await;
    let guard = swarm
        .create_service(TestService::new("bind-rollback", "main"))
        .await;
    swarm.wait_converged(guard.name(), CONVERGE).await.unwrap();
    // A previous spec to roll back to: v2 now, main before.
    docker_update(guard.name(), &["--image", &env::test_image("v2")]);
    swarm.wait_converged(guard.name(), CONVERGE).await.unwrap();
    let api: Arc<DockerSwarm> = Arc::new(real());
    let (_dir, store) = sqlite().await;
    let mut a = Approvals::new(store, perms(), b"test-bot-token");
    a.register(
        "service_rollback",
        Arc::new(ServiceRollback::new(api.clone())),
    );
    let name = guard.name().to_string();
    let id = request_approve_execute(&a, "service_rollback", guard.name(), || {
        // Between the request and the approval, someone changes the service with the CLI.
        docker_update(&name, &["--env-add", "FEATURE_FLAG=on"]);
    })
    .await;
    let req = a.get(&id).await.unwrap();
    assert_eq!(req.state, ApprovalState::Void, "{:?}", req.result);
    let why = req.result.unwrap_or_default();
    assert!(
        why.contains("changed since the request") && why.contains("spec version"),
        "says why: {why}"
    );
    let d = api.inspect(guard.name()).await.unwrap();
    assert_eq!(
        d.image.split('@').next(),
        Some(env::test_image("v2").as_str())
    );
    assert_eq!(
        d.previous_image
            .as_deref()
            .map(|i| i.split('@').next().unwrap()),
        Some(env::test_image("v2").as_str()),
        "the rollback did not run (the previous spec is the env change's)"
    );
    guard.remove().await.unwrap();
}

#[tokio::test]
async fn approvers_see_the_spec_diff_of_a_rollback_with_env_values_masked() {
    let swarm = TestSwarm::connect().await;
    let guard = swarm
        .create_service(
            TestService::new("bind-diff", "main")
                .replicas(1)
                .env("KEEP", "same")
                .env("DB_PASSWORD", "old-pw-7731"),
        )
        .await;
    swarm.wait_converged(guard.name(), CONVERGE).await.unwrap();
    docker_update(
        guard.name(),
        &[
            "--image",
            &env::test_image("v2"),
            "--env-add",
            "DB_PASSWORD=new-pw-9902",
            "--env-add",
            "API_TOKEN=tok-5521",
            "--replicas",
            "2",
            "--limit-memory",
            "64MiB",
            "--mount-add",
            "type=tmpfs,target=/scratch",
        ],
    );
    swarm.wait_converged(guard.name(), CONVERGE).await.unwrap();
    let exec = ServiceRollback::new(Arc::new(real()));
    let binding = exec
        .bind(&serde_json::json!({ "service": guard.name() }))
        .await
        .unwrap();
    let d = real().inspect(guard.name()).await.unwrap();
    assert_eq!(
        binding.bound["version"], d.version,
        "the version read is pinned"
    );
    assert_eq!(binding.bound["service_id"], d.id.as_str());
    let lines = binding.changes.join("\n");
    for want in [
        format!(
            "image: {} → {}",
            env::test_image("v2"),
            env::test_image("main")
        ),
        "replicas: 2 → 1".to_string(),
        "env changed: DB_PASSWORD (value masked)".to_string(),
        "env removed: API_TOKEN".to_string(),
        "mount removed: tmpfs -> /scratch".to_string(),
        "resources: limits memory=64 MiB → none".to_string(),
    ] {
        assert!(lines.contains(&want), "missing `{want}` in:\n{lines}");
    }
    assert!(
        !lines.contains("KEEP"),
        "unchanged keys are not listed: {lines}"
    );
    for secret in ["old-pw-7731", "new-pw-9902", "tok-5521"] {
        assert!(!lines.contains(secret), "{secret} shown: {lines}");
    }
    guard.remove().await.unwrap();
}
