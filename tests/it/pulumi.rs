//! Layer deploys end to end, through ops-core's `Deployer` (not Discord): the real
//! `PulumiRunner` runs the `pulumi` stand-in (tests/pulumi-standin, built by
//! `cargo build -p pulumi-standin`) in a throwaway project directory, and the stand-in applies
//! the image tag to REAL Swarm services made from the test images. Covered: a platform deploy
//! of `:v2` (config file, preview, apply, services, history), a concurrent deploy refused at
//! once naming the holder, a replace that needs an approval (and runs once approved), a failed
//! apply with redacted diagnostics and the rollback target, a crash mid-deploy that start-up
//! recovery cleans up, a graceful cancel (SIGINT), arguments refused before any process
//! starts, redaction of the CLI's stderr, and the deploy tables on SQLite and Postgres.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ops_core::approvals::ActionExecutor;
use ops_core::config::Config;
use ops_core::deploy::{
    watch_progress, DeployError, DeployOutcome, DeployPhase, DeployProgress, DeployRecord,
    DeployRequest, DeployState, Deployer, LayerDeployExecutor, LayerLock, VerifyPolicy,
    ACTION_DESTRUCTIVE,
};
use ops_core::pulumi::{PulumiApi, PulumiError, PulumiRunner, StackRef};
use ops_core::redact::{Redactor, MASK};
use ops_core::store::{self, Store};
use ops_core::swarm::docker::DockerSwarm;
use serde_json::json;
use sprocket_ops_tests::env;
use sprocket_ops_tests::swarm::{RemoveByName, ServiceGuard, TestService, TestSwarm};
use tokio::sync::watch;

const CONVERGE: Duration = Duration::from_secs(60);
/// A secret the redactor knows; planted in the CLI's output by the tests.
const PLANTED: &str = "hunter2-planted-7d3f";

/// The built stand-in: `SPROCKET_TEST_PULUMI`, else `pulumi` beside this test executable's
/// profile directory, else `<workspace>/target/debug/pulumi`.
fn pulumi_standin() -> PathBuf {
    if let Some(p) = std::env::var_os("SPROCKET_TEST_PULUMI").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "SPROCKET_TEST_PULUMI={} does not exist: run `cargo build -p pulumi-standin`",
            p.display()
        );
        return p;
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(profile) = exe.parent().and_then(|d| d.parent()) {
            candidates.push(profile.join("pulumi"));
        }
    }
    candidates.push(env::workspace_root().join("target/debug/pulumi"));
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "the pulumi stand-in was not found (looked at {candidates:?}): run \
                 `cargo build -p pulumi-standin` (scripts/test.sh does) or set SPROCKET_TEST_PULUMI"
            )
        })
}

enum Backend {
    Sqlite,
    Postgres,
}

use sprocket_ops_tests::env::PgSchema;

async fn open_store(backend: Backend, dir: &std::path::Path) -> (Arc<dyn Store>, Option<PgSchema>) {
    match backend {
        Backend::Sqlite => {
            let url = format!("sqlite://{}", dir.join("ops.db").display());
            (store::connect(&url, None).await.unwrap(), None)
        }
        Backend::Postgres => {
            let schema = env::PgSchema::create("deploy").await;
            let url = schema.url.clone();
            let store = store::connect(&url, None).await.unwrap();
            assert_eq!(store.backend(), "postgres");
            (store, Some(schema))
        }
    }
}

/// Two test services (`web`, `api`) of one platform layer, its Pulumi project and a Deployer.
struct Fixture {
    swarm: TestSwarm,
    web: ServiceGuard,
    api: ServiceGuard,
    dir: tempfile::TempDir,
    cfg: Config,
    store: Arc<dyn Store>,
    redactor: Arc<Redactor>,
    deployer: Arc<Deployer>,
    pg: Option<PgSchema>,
}

impl Fixture {
    async fn new(backend: Backend, knobs: serde_json::Value) -> Fixture {
        let swarm = TestSwarm::connect().await;
        let web = swarm
            .create_service(TestService::new("pulumi-web", "main"))
            .await;
        let api = swarm
            .create_service(TestService::new("pulumi-api", "main"))
            .await;
        for s in [&web, &api] {
            swarm.wait_converged(s.name(), CONVERGE).await.unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("Pulumi.yaml"),
            "name: platform\nruntime: nodejs\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("Pulumi.prod.yaml"),
            "config:\n  platform:hostname: sprocket.example\n  platform:image-tag: main\n",
        )
        .unwrap();
        let toml = format!(
            r#"
[discord]
guild_id = 1
alerts_channel_id = 2
approvals_channel_id = 3
audit_channel_id = 4

[docker]
# A label no other test or process uses: only this fixture's named services are the layer.
layer_label = "sprocket.pulumi-test.{run}"

[pulumi]
binary = {binary:?}
lock_ttl_secs = 3600

[layers.platform]
directory = {dir:?}
stack = "prod"
image_tag_key = "image-tag"
services = [{web:?}, {api:?}]
timeout_secs = 120
"#,
            binary = pulumi_standin().display().to_string(),
            run = env::run_id(),
            dir = dir.path().display().to_string(),
            web = web.name(),
            api = api.name(),
        );
        let cfg = Config::parse("pulumi-test.toml", &toml).unwrap();
        let (store, pg) = open_store(backend, dir.path()).await;
        let redactor = Arc::new(Redactor::new([PLANTED]));
        let f = Fixture {
            deployer: Arc::new(make_deployer(&cfg, &store, &redactor)),
            swarm,
            web,
            api,
            dir,
            cfg,
            store,
            redactor,
            pg,
        };
        f.write_spec(knobs);
        f
    }

    /// A deployer on the same store, runner and Swarm (as after a restart).
    fn new_deployer(&self) -> Deployer {
        make_deployer(&self.cfg, &self.store, &self.redactor)
    }

    fn runner(&self) -> PulumiRunner {
        runner(&self.cfg, &self.redactor)
    }

    fn stack(&self) -> StackRef {
        StackRef::from_layer("platform", &self.cfg.layers["platform"])
    }

    /// `standin.json`: the two services plus the knobs (per-resource ones under `web`).
    fn write_spec(&self, knobs: serde_json::Value) {
        let mut web = json!({
            "type": "docker:index/service:Service",
            "name": "web",
            "service_name": self.web.name(),
            "image_repo": env::image_repo(),
        });
        if let Some(extra) = knobs.get("web").and_then(|w| w.as_object()) {
            for (k, v) in extra {
                web[k] = v.clone();
            }
        }
        let api = json!({
            "type": "docker:index/service:Service",
            "name": "api",
            "service_name": self.api.name(),
            "image_repo": env::image_repo(),
        });
        let mut spec = json!({ "resources": [web, api] });
        for (k, v) in knobs.as_object().into_iter().flatten() {
            if k != "web" {
                spec[k] = v.clone();
            }
        }
        std::fs::write(self.dir.path().join("standin.json"), spec.to_string()).unwrap();
    }

    fn stack_yaml(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("Pulumi.prod.yaml")).unwrap()
    }

    async fn image_of(&self, name: &str) -> String {
        let s = self.swarm.inspect(name).await.unwrap();
        s.spec
            .and_then(|s| s.task_template)
            .and_then(|t| t.container_spec)
            .and_then(|c| c.image)
            .unwrap_or_default()
    }

    async fn finish(self) {
        if let Some(pg) = self.pg {
            pg.drop().await;
        }
    }
}

fn runner(cfg: &Config, redactor: &Arc<Redactor>) -> PulumiRunner {
    PulumiRunner::new(&cfg.pulumi, redactor.clone()).with_grace(Duration::from_secs(10))
}

fn make_deployer(cfg: &Config, store: &Arc<dyn Store>, redactor: &Arc<Redactor>) -> Deployer {
    Deployer::new(
        cfg,
        Arc::new(runner(cfg, redactor)),
        store.clone(),
        Arc::new(DockerSwarm::new(ops_core::config::DEFAULT_DOCKER_HOST, 30).unwrap()),
        redactor.clone(),
    )
    .with_verify(VerifyPolicy {
        timeout: Duration::from_secs(90),
        poll: Duration::from_millis(250),
    })
}

fn req(tag: &str, who: &str) -> DeployRequest {
    DeployRequest {
        layer: "platform".into(),
        image_tag: Some(tag.into()),
        requester: who.into(),
        reason: format!("release {tag}"),
    }
}

async fn wait_for(
    rx: &mut watch::Receiver<DeployProgress>,
    what: &str,
    f: impl FnMut(&DeployProgress) -> bool,
) {
    let waited = tokio::time::timeout(Duration::from_secs(60), rx.wait_for(f))
        .await
        .map(|r| r.map(|_| ()));
    match waited {
        Ok(Ok(())) => {}
        Ok(Err(_)) => panic!(
            "the deploy stopped publishing before `{what}`: {:?}",
            *rx.borrow()
        ),
        Err(_) => panic!("no progress `{what}` within 60 s: {:?}", *rx.borrow()),
    }
}

#[tokio::test]
async fn deploy_platform_v2_sets_config_previews_applies_verifies_and_records() {
    let f = Fixture::new(Backend::Postgres, json!({})).await;
    let started = Instant::now();
    let (progress, rx) = watch_progress("platform");
    let out = f
        .deployer
        .deploy(&req("v2", "alice"), progress)
        .await
        .unwrap();
    let elapsed = started.elapsed();
    let DeployOutcome::Succeeded(report) = out else {
        panic!("{out:?}")
    };
    eprintln!("deploy of :v2 (2 services) took {elapsed:?}");

    // `pulumi config set image-tag v2 --stack prod` changed the stack file like the real CLI.
    let yaml = f.stack_yaml();
    assert!(yaml.contains("  platform:image-tag: v2\n"), "{yaml}");
    assert!(
        yaml.contains("  platform:hostname: sprocket.example\n"),
        "{yaml}"
    );
    // The preview planned two updates; the real services run :v2 and converged.
    assert_eq!(report.preview.totals().update, 2);
    assert_eq!(
        report.preview.by_type["docker:index/service:Service"].update,
        2
    );
    for s in [&f.web, &f.api] {
        assert_eq!(f.image_of(s.name()).await, env::test_image("v2"));
        f.swarm.wait_converged(s.name(), CONVERGE).await.unwrap();
    }
    assert_eq!(report.services.len(), 2, "{:?}", report.services);
    assert!(
        report
            .services
            .iter()
            .all(|s| s.running == Some(1) && s.desired == Some(1)),
        "{:?}",
        report.services
    );
    let last = rx.borrow().clone();
    assert_eq!(
        (last.phase, last.steps_done, last.steps_planned),
        (DeployPhase::Succeeded, 2, 2)
    );
    assert_eq!(
        report.up.summary.as_ref().unwrap().resource_changes["update"],
        2
    );

    let history = f.deployer.history("platform", 10).await.unwrap();
    assert_eq!(history.len(), 1);
    let h = &history[0];
    assert_eq!(h.state, DeployState::Succeeded);
    assert_eq!(
        (h.image_before.as_deref(), h.image_after.as_deref()),
        (Some("main"), Some("v2"))
    );
    assert_eq!(
        (h.requester.as_str(), h.reason.as_str()),
        ("alice", "release v2")
    );
    assert_eq!(h.summary["steps_done"], 2);
    assert_eq!(h.summary["resource_changes"]["update"], 2);
    assert!(h.duration_ms().unwrap() > 0);
    assert!(f.deployer.locks().await.unwrap().is_empty());
    assert_eq!(
        f.deployer
            .rollback_target("platform")
            .await
            .unwrap()
            .as_deref(),
        Some("main")
    );
    f.finish().await;
}

#[tokio::test]
async fn a_concurrent_deploy_of_the_same_layer_is_refused_within_a_second() {
    let f = Fixture::new(Backend::Sqlite, json!({ "step_delay_ms": 1500 })).await;
    let (progress, mut rx) = watch_progress("platform");
    let d = f.deployer.clone();
    let first = tokio::spawn(async move { d.deploy(&req("v2", "alice"), progress).await });
    wait_for(&mut rx, "applying", |p| p.phase == DeployPhase::Applying).await;

    let started = Instant::now();
    let e = f
        .deployer
        .deploy(&req("v2", "bob"), watch_progress("platform").0)
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "refused after {took:?}");
    let DeployError::Locked { holder } = &e else {
        panic!("{e}")
    };
    assert_eq!(holder.owner, "alice");
    let text = e.to_string();
    assert!(
        text.contains("alice has been deploying it since") && text.contains("release v2"),
        "{text}"
    );
    eprintln!("second deploy refused in {took:?}: {text}");

    let out = first.await.unwrap().unwrap();
    assert!(matches!(out, DeployOutcome::Succeeded(_)), "{out:?}");
    let h = f.deployer.history("platform", 10).await.unwrap();
    assert_eq!(h.len(), 1, "the refused deploy left no history: {h:?}");
    f.finish().await;
}

#[tokio::test]
async fn a_replace_in_the_preview_needs_an_approval_and_runs_once_approved() {
    let f = Fixture::new(Backend::Sqlite, json!({ "web": { "force_replace": true } })).await;
    let _cleanup = RemoveByName(f.web.name().to_string());
    let r = req("v2", "alice");
    let out = f
        .deployer
        .deploy(&r, watch_progress("platform").0)
        .await
        .unwrap();
    let DeployOutcome::NeedsApproval(plan) = out else {
        panic!("{out:?}")
    };
    assert_eq!(plan.approval_action.as_deref(), Some(ACTION_DESTRUCTIVE));
    assert_eq!(plan.preview.totals().replace, 1);
    assert!(
        plan.approval_reasons
            .iter()
            .any(|r| r.contains("replace web")),
        "{:?}",
        plan.approval_reasons
    );
    assert!(
        f.stack_yaml().contains("platform:image-tag: main"),
        "the tag was put back"
    );
    for s in [&f.web, &f.api] {
        assert_eq!(
            f.image_of(s.name()).await,
            env::test_image("main"),
            "nothing ran"
        );
    }
    assert_eq!(
        f.deployer.history("platform", 5).await.unwrap()[0].state,
        DeployState::Cancelled
    );

    // What the approval engine does: digest at request time, digest again and execute.
    let exec = LayerDeployExecutor::new(f.deployer.clone());
    let params = r.to_params();
    assert_eq!(exec.digest(&params).await.unwrap(), plan.digest);
    assert_eq!(exec.digest(&params).await.unwrap(), plan.digest, "stable");
    let summary = exec.execute(&params).await.unwrap();
    assert!(
        summary.starts_with("deployed `platform` tag `v2`"),
        "{summary}"
    );
    assert_eq!(f.image_of(f.web.name()).await, env::test_image("v2"));
    let replaced = f.swarm.inspect(f.web.name()).await.unwrap();
    assert_ne!(replaced.id.as_deref(), Some(f.web.id()), "web was replaced");
    f.finish().await;
}

#[tokio::test]
async fn a_failing_apply_is_reported_redacted_with_the_rollback_target() {
    let f = Fixture::new(Backend::Sqlite, json!({})).await;
    assert!(matches!(
        f.deployer
            .deploy(&req("v2", "alice"), watch_progress("platform").0)
            .await
            .unwrap(),
        DeployOutcome::Succeeded(_)
    ));
    f.write_spec(json!({
        "fail_resource": "web",
        "fail_message": format!("pulling {}:broken: unauthorized: password={PLANTED} rejected", env::image_repo()),
    }));
    let (progress, rx) = watch_progress("platform");
    let e = f
        .deployer
        .deploy(&req("broken", "alice"), progress)
        .await
        .unwrap_err();
    let DeployError::UpdateFailed {
        errors,
        rollback_target,
        message,
        ..
    } = &e
    else {
        panic!("{e}")
    };
    let all = format!("{e}\n{}", errors.join("\n"));
    eprintln!("failed deploy reported as:\n{all}");
    assert!(message.contains("failed (exit code 4)"), "{message}");
    assert!(
        all.contains(&format!(
            "web: pulling {}:broken: unauthorized: password={MASK}",
            env::image_repo()
        )),
        "{all}"
    );
    assert!(all.contains("update failed"), "{all}");
    assert!(!all.contains(PLANTED), "{all}");
    assert!(!format!("{:?}", rx.borrow()).contains(PLANTED));
    assert_eq!(rollback_target.as_deref(), Some("v2"));
    assert_eq!(
        f.deployer
            .rollback_target("platform")
            .await
            .unwrap()
            .as_deref(),
        Some("v2")
    );
    let h = &f.deployer.history("platform", 5).await.unwrap()[0];
    assert_eq!(
        (h.state, h.image_before.as_deref(), h.image_after.as_deref()),
        (DeployState::Failed, Some("v2"), Some("broken"))
    );
    assert!(!h.error.as_deref().unwrap().contains(PLANTED));
    assert_eq!(
        f.image_of(f.web.name()).await,
        env::test_image("v2"),
        "the failed step changed nothing"
    );

    // Another process holding the stack lock is reported as such.
    f.write_spec(json!({ "locked": true }));
    let e = f
        .deployer
        .deploy(&req("v2", "alice"), watch_progress("platform").0)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("stack `prod` is locked by another update"),
        "{e}"
    );
    f.finish().await;
}

#[tokio::test]
async fn a_crash_mid_deploy_leaves_a_lock_that_start_up_recovery_releases() {
    let f = Fixture::new(Backend::Sqlite, json!({ "step_delay_ms": 5000 })).await;
    let (progress, mut rx) = watch_progress("platform");
    let d = f.deployer.clone();
    let task = tokio::spawn(async move { d.deploy(&req("v2", "alice"), progress).await });
    wait_for(&mut rx, "web in flight", |p| {
        p.current.as_deref() == Some("web")
    })
    .await;
    // The process "crashes": the task is dropped mid-update (its pulumi child is killed).
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());

    // "Restart": a new deployer on the same store.
    let restarted = f.new_deployer();
    let e = restarted
        .deploy(&req("v3", "bob"), watch_progress("platform").0)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, DeployError::Locked { holder } if holder.owner == "alice"),
        "{e}"
    );
    let interrupted = restarted.recover_interrupted().await.unwrap();
    assert_eq!(interrupted.len(), 1);
    assert_eq!(
        (interrupted[0].state, interrupted[0].requester.as_str()),
        (DeployState::Interrupted, "alice")
    );
    assert!(restarted.locks().await.unwrap().is_empty());
    assert_eq!(
        restarted.history("platform", 1).await.unwrap()[0].state,
        DeployState::Interrupted
    );
    // The killed pulumi left its own backend lock, as a real crash does: reported, not hidden.
    let e = restarted
        .deploy(&req("v3", "bob"), watch_progress("platform").0)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("stack `prod` is locked by another update"),
        "{e}"
    );
    assert!(
        restarted.locks().await.unwrap().is_empty(),
        "released after the failure"
    );
    f.finish().await;
}

#[tokio::test]
async fn cancel_interrupts_pulumi_gracefully_after_the_step_in_flight() {
    let f = Fixture::new(Backend::Sqlite, json!({ "step_delay_ms": 1500 })).await;
    let (progress, mut rx) = watch_progress("platform");
    let d = f.deployer.clone();
    let task = tokio::spawn(async move { d.deploy(&req("v2", "alice"), progress).await });
    wait_for(&mut rx, "web in flight", |p| {
        p.current.as_deref() == Some("web")
    })
    .await;
    let started = Instant::now();
    assert!(f.deployer.cancel("platform").await.unwrap());
    // A second cancel (an impatient click) must not become pulumi's "terminate at once".
    assert!(f.deployer.cancel("platform").await.unwrap());
    let e = task.await.unwrap().unwrap_err();
    eprintln!(
        "cancelled deploy ended {:?} after the cancel",
        started.elapsed()
    );
    assert!(matches!(e, DeployError::Cancelled { .. }), "{e}");
    assert_eq!(
        f.image_of(f.web.name()).await,
        env::test_image("v2"),
        "the step in flight finished"
    );
    assert_eq!(
        f.image_of(f.api.name()).await,
        env::test_image("main"),
        "the next step did not start"
    );
    let h = &f.deployer.history("platform", 1).await.unwrap()[0];
    assert_eq!(h.state, DeployState::Cancelled);
    assert_eq!(h.summary["steps_done"], 1);
    assert!(f.deployer.locks().await.unwrap().is_empty());
    assert!(
        !f.deployer.cancel("platform").await.unwrap(),
        "nothing runs now"
    );
    f.finish().await;
}

#[tokio::test]
async fn the_runner_interrupts_an_update_that_runs_past_the_layer_timeout() {
    let f = Fixture::new(Backend::Sqlite, json!({ "step_delay_ms": 2500 })).await;
    let stack = StackRef {
        timeout: Duration::from_secs(1),
        ..f.stack()
    };
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink: ops_core::pulumi::EventSink = {
        let seen = seen.clone();
        Arc::new(move |e: &ops_core::pulumi::EngineEvent| seen.lock().unwrap().push(e.clone()))
    };
    f.runner()
        .config_set(&stack, "image-tag", "v2")
        .await
        .unwrap();
    let started = Instant::now();
    let e = f.runner().up(&stack, sink).await.unwrap_err();
    let took = started.elapsed();
    eprintln!("timed-out update ended after {took:?}: {e}");
    // No assertion on `took` (timing is the benchmark's business): the error kind, the
    // complete event stream and the Swarm below show that the timeout interrupted the update.
    assert!(matches!(e, PulumiError::Timeout { secs: 1, .. }), "{e}");
    let events = seen.lock().unwrap().clone();
    assert!(
        events.windows(2).all(|w| w[0].sequence < w[1].sequence),
        "in order"
    );
    assert!(matches!(
        events.first().map(|e| e.kind()),
        Some(ops_core::pulumi::EventKind::Prelude(_))
    ));
    assert!(
        matches!(
            events.last().map(|e| e.kind()),
            Some(ops_core::pulumi::EventKind::Cancel)
        ),
        "the stream was complete"
    );
    assert!(
        e.errors().iter().any(|x| x.contains("update canceled")),
        "{:?}",
        e.errors()
    );
    // Graceful: the step in flight finished, the next one never started.
    assert_eq!(f.image_of(f.web.name()).await, env::test_image("v2"));
    assert_eq!(f.image_of(f.api.name()).await, env::test_image("main"));
    f.finish().await;
}

mod runner;
mod tables;
