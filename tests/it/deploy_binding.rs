//! A layer deploy's approval is bound to what runs (issue 12), through the approval engine, the
//! real `PulumiRunner` and the `pulumi` stand-in applying to REAL Swarm services: the digest
//! covers the preview's property values (hashed, never shown) and the infra checkout's commit
//! and dirty state, so a different value or commit at execution voids the approval and
//! nothing is applied.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ops_core::approvals::{ApprovalState, Approvals, Decided, Decision, PersonRef};
use ops_core::config::Config;
use ops_core::deploy::{DeployRequest, Deployer, LayerDeployExecutor, VerifyPolicy};
use ops_core::permissions::Permissions;
use ops_core::pulumi::PulumiRunner;
use ops_core::redact::Redactor;
use ops_core::store::{self, Store};
use ops_core::swarm::docker::DockerSwarm;
use serde_json::json;
use sprocket_ops_tests::env;
use sprocket_ops_tests::swarm::{ServiceGuard, TestService, TestSwarm};

const CONVERGE: Duration = Duration::from_secs(60);
const ACTION: &str = "layer_1_deploy";

fn pulumi_standin() -> String {
    if let Some(p) = std::env::var_os("SPROCKET_TEST_PULUMI").filter(|p| !p.is_empty()) {
        return p.to_string_lossy().into_owned();
    }
    let p = env::workspace_root().join("target/debug/pulumi");
    assert!(
        p.is_file(),
        "the pulumi stand-in is missing: run `cargo build -p pulumi-standin` (scripts/test.sh does)"
    );
    p.display().to_string()
}

struct Fixture {
    swarm: TestSwarm,
    web: ServiceGuard,
    dir: tempfile::TempDir,
    approvals: Approvals,
    _store: Arc<dyn Store>,
    /// The database, outside the checkout (it would make it dirty).
    _db: tempfile::TempDir,
}

fn write_spec(dir: &Path, web: &ServiceGuard, replicas: u64) {
    let spec = json!({"resources": [{
        "type": "docker:index/service:Service",
        "name": "web",
        "service_name": web.name(),
        "image_repo": env::image_repo(),
        "replicas": replicas,
    }]});
    std::fs::write(dir.join("standin.json"), spec.to_string()).unwrap();
}

fn git(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git is needed by this test");
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

impl Fixture {
    /// `layer_1` (every deploy approved) managing one `web` service at 1 replica; its program
    /// (standin.json) wants 2.
    async fn new(prefix: &str, in_git: bool) -> Fixture {
        let swarm = TestSwarm::connect().await;
        let web = swarm.create_service(TestService::new(prefix, "main")).await;
        swarm.wait_converged(web.name(), CONVERGE).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("Pulumi.yaml"),
            "name: layer_1\nruntime: nodejs\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("Pulumi.prod.yaml"),
            "config:\n  layer_1:image-tag: main\n",
        )
        .unwrap();
        write_spec(dir.path(), &web, 2);
        if in_git {
            git(dir.path(), &["init", "-q"]);
            git(dir.path(), &["config", "user.email", "infra@example.org"]);
            git(dir.path(), &["config", "user.name", "infra"]);
            git(dir.path(), &["add", "."]);
            git(dir.path(), &["commit", "-qm", "layer_1"]);
        }
        let toml = format!(
            r#"
[discord]
guild_id = 1
alerts_channel_id = 2
approvals_channel_id = 3
audit_channel_id = 4

[docker]
layer_label = "sprocket.bind-test.{run}"

[pulumi]
binary = {binary:?}
lock_ttl_secs = 3600

[layers.layer_1]
directory = {dir:?}
stack = "prod"
services = [{web:?}]
always_requires_approval = true
timeout_secs = 120
"#,
            binary = pulumi_standin(),
            run = env::run_id(),
            dir = dir.path().display().to_string(),
            web = web.name(),
        );
        let cfg = Config::parse("bind-test.toml", &toml).unwrap();
        let db = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", db.path().join("ops.db").display());
        let store = store::connect(&url, None).await.unwrap();
        let redactor = Arc::new(Redactor::default());
        let deployer = Deployer::new(
            &cfg,
            Arc::new(PulumiRunner::new(&cfg.pulumi, redactor.clone())),
            store.clone(),
            Arc::new(DockerSwarm::new(ops_core::config::DEFAULT_DOCKER_HOST, 30).unwrap()),
            redactor,
        )
        .with_verify(VerifyPolicy {
            timeout: Duration::from_secs(90),
            poll: Duration::from_millis(250),
        });
        let text = std::fs::read_to_string(env::workspace_root().join("permissions.toml")).unwrap();
        let perms = Arc::new(Permissions::parse("permissions.toml", &text).unwrap());
        let mut approvals = Approvals::new(store.clone(), perms, b"test-bot-token");
        approvals.register(
            ACTION,
            Arc::new(LayerDeployExecutor::new(Arc::new(deployer))),
        );
        Fixture {
            swarm,
            web,
            dir,
            approvals,
            _store: store,
            _db: db,
        }
    }

    /// Requests the deploy, runs `between`, has an admin approve and executes it; returns the
    /// request's end state and result.
    async fn request_approve_execute(&self, between: impl FnOnce()) -> (ApprovalState, String) {
        let params = DeployRequest {
            layer: "layer_1".into(),
            image_tag: None,
            requester: "alice".into(),
            reason: "two web replicas".into(),
        }
        .to_params();
        let alice = PersonRef {
            github_id: 1,
            login: "alice".into(),
            discord_id: 101,
        };
        let req = self
            .approvals
            .request(&alice, ACTION, params, "deploy layer_1", 1)
            .await
            .unwrap();
        between();
        let bob = PersonRef {
            github_id: 2,
            login: "bob".into(),
            discord_id: 102,
        };
        let admin = ["everyone", "admin"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            self.approvals
                .decide(&req.id, &bob, &admin, Decision::Approve)
                .await
                .unwrap(),
            Decided::Approved
        );
        let _ = self.approvals.execute(&req.id).await.unwrap();
        let end = self.approvals.get(&req.id).await.unwrap();
        (end.state, end.result.unwrap_or_default())
    }
}

#[tokio::test]
async fn a_deploy_approved_for_one_value_is_void_when_the_value_changes_before_execution() {
    let f = Fixture::new("bind-value", false).await;
    let (dir, web) = (f.dir.path().to_path_buf(), f.web.name().to_string());
    let guard = &f.web;
    // Approved: 2 replicas. Executed: the program now says 50, the same property changing,
    // the same operation, the same diff reasons: only the value differs.
    let (state, result) = f
        .request_approve_execute(|| write_spec(&dir, guard, 50))
        .await;
    assert_eq!(state, ApprovalState::Void, "{result}");
    assert!(result.contains("nothing was applied"), "{result}");
    assert_eq!(
        f.swarm.replicas(&web).await.unwrap(),
        Some(1),
        "neither 2 nor 50 replicas"
    );
    // The same value as approved runs.
    write_spec(&dir, guard, 2);
    let (state, result) = f.request_approve_execute(|| {}).await;
    assert_eq!(state, ApprovalState::Done, "{result}");
    assert_eq!(f.swarm.replicas(&web).await.unwrap(), Some(2));
}

#[tokio::test]
async fn a_deploy_approved_at_one_commit_is_void_when_the_infra_checkout_moves() {
    let f = Fixture::new("bind-commit", true).await;
    let dir = f.dir.path().to_path_buf();
    let web = f.web.name().to_string();
    // Between the request and the approval, a commit lands in the infra checkout (here a
    // program change the preview of this stand-in does not even show).
    let (state, result) = f
        .request_approve_execute(|| {
            std::fs::write(dir.join("index.ts"), "// new resource\n").unwrap();
            git(&dir, &["add", "index.ts"]);
            git(&dir, &["commit", "-qm", "sneak in a change"]);
        })
        .await;
    assert_eq!(state, ApprovalState::Void, "{result}");
    assert!(result.contains("infra checkout changed"), "{result}");
    assert_eq!(
        f.swarm.replicas(&web).await.unwrap(),
        Some(1),
        "nothing ran"
    );
    // An uncommitted edit voids it too.
    let (state, result) = f
        .request_approve_execute(|| {
            std::fs::write(dir.join("index.ts"), "// edited, not committed\n").unwrap();
        })
        .await;
    assert_eq!(state, ApprovalState::Void, "{result}");
    assert!(result.contains("uncommitted changes"), "{result}");
    assert_eq!(
        f.swarm.replicas(&web).await.unwrap(),
        Some(1),
        "nothing ran"
    );
}
