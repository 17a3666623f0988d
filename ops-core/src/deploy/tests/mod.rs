//! Unit tests of the deployer against hand-written Pulumi, Swarm and store fakes.

use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;

use futures::stream::{self, StreamExt as _};

use super::*;
use crate::pulumi::events::{parse_event_line, EventKind};
use crate::store::Store;
use crate::swarm::{RolloutProgress, RolloutStream, SwarmSnapshot};

const CONFIG: &str = r#"
[discord]
guild_id = 1
alerts_channel_id = 2
approvals_channel_id = 3
audit_channel_id = 4

[layers.layer_1]
directory = "/tmp"
stack = "layer_1"
services = ["traefik*"]
always_requires_approval = true

[layers.platform]
directory = "/tmp"
stack = "prod"
image_tag_key = "image-tag"
services = ["prod-*"]
"#;

fn preview(steps: &[(&str, &str)]) -> PreviewSummary {
    let steps: Vec<serde_json::Value> = steps
        .iter()
        .map(|(op, name)| {
            serde_json::json!({
                "op": op,
                "urn": format!("urn:pulumi:prod::platform::docker:index/service:Service::{name}"),
            })
        })
        .collect();
    let doc = serde_json::json!({"steps": steps, "changeSummary": {"same": 1}});
    PreviewSummary::parse(&doc.to_string(), &Redactor::default()).unwrap()
}

fn event(seq: i64, payload: serde_json::Value) -> EngineEvent {
    let mut v = serde_json::json!({"sequence": seq, "timestamp": 1_700_000_000 + seq});
    for (k, x) in payload.as_object().unwrap() {
        v[k] = x.clone();
    }
    parse_event_line(&v.to_string(), seq as u64).unwrap()
}

fn step_events(op: &str, name: &str, fail: Option<&str>) -> Vec<EngineEvent> {
    let meta = serde_json::json!({
        "op": op,
        "urn": format!("urn:pulumi:prod::platform::docker:index/service:Service::{name}"),
        "type": "docker:index/service:Service",
        "old": null, "new": null, "detailedDiff": null, "provider": ""
    });
    let mut evs = vec![
        event(0, serde_json::json!({"preludeEvent": {"config": {}}})),
        event(
            1,
            serde_json::json!({"resourcePreEvent": {"metadata": meta}}),
        ),
    ];
    match fail {
        None => evs.push(event(
            2,
            serde_json::json!({"resOutputsEvent": {"metadata": meta}}),
        )),
        Some(msg) => {
            evs.push(event(
                2,
                serde_json::json!({"diagnosticEvent": {"urn": meta["urn"], "message": msg, "color": "never", "severity": "error"}}),
            ));
            evs.push(event(3, serde_json::json!({"resOpFailedEvent": {"metadata": meta, "status": 1, "steps": 1}})));
        }
    }
    evs.push(event(
        4,
        serde_json::json!({"summaryEvent": {"maybeCorrupt": false, "durationSeconds": 1, "resourceChanges": {op: 1}, "PolicyPacks": {}, "isPreview": false}}),
    ));
    evs.push(event(5, serde_json::json!({"cancelEvent": {}})));
    evs
}

fn svc(name: &str, image: &str, version: u64) -> ServiceInfo {
    ServiceInfo {
        id: format!("id-{name}"),
        name: name.into(),
        image: image.into(),
        replicas: Some(1),
        labels: Default::default(),
        running_tasks: Some(1),
        desired_tasks: Some(1),
        update_state: Some("completed".into()),
        update_message: None,
        version,
    }
}

/// The Swarm: a list of services; rollouts complete at once. Anything else panics.
#[derive(Default)]
struct FakeSwarm {
    services: Mutex<Vec<ServiceInfo>>,
    followed: Mutex<Vec<(String, u64)>>,
}

impl FakeSwarm {
    fn set_image(&self, name: &str, image: &str) {
        let mut s = self.services.lock().unwrap();
        let svc = s
            .iter_mut()
            .find(|s| s.name == name)
            .expect("known service");
        svc.image = image.to_string();
        svc.version += 1;
    }
}

#[async_trait]
impl SwarmApi for FakeSwarm {
    async fn snapshot(&self) -> Result<SwarmSnapshot, SwarmError> {
        Ok(SwarmSnapshot {
            services: self.services.lock().unwrap().clone(),
            ..Default::default()
        })
    }
    async fn follow_rollout(
        &self,
        name: &str,
        since: u64,
        _poll: RolloutPoll,
    ) -> Result<RolloutStream, SwarmError> {
        self.followed
            .lock()
            .unwrap()
            .push((name.to_string(), since));
        let last = RolloutProgress {
            service: name.to_string(),
            version: since + 1,
            image: String::new(),
            running_updated: 1,
            running_outdated: 0,
            desired: 1,
            update_state: Some("completed".into()),
            update_message: None,
            elapsed: Duration::ZERO,
            outcome: Some(RolloutOutcome::Completed),
        };
        Ok(stream::iter(vec![last]).boxed())
    }
    async fn inspect(&self, name: &str) -> Result<crate::swarm::ServiceDetail, SwarmError> {
        panic!("unexpected inspect({name})")
    }
    async fn bump(
        &self,
        name: &str,
        _: &str,
        _: Option<u64>,
    ) -> Result<crate::swarm::UpdateStarted, SwarmError> {
        panic!("unexpected bump({name})")
    }
    async fn scale(
        &self,
        name: &str,
        _: u64,
        _: Option<u64>,
    ) -> Result<crate::swarm::UpdateStarted, SwarmError> {
        panic!("unexpected scale({name})")
    }
    async fn rollback(
        &self,
        name: &str,
        _: Option<u64>,
    ) -> Result<crate::swarm::UpdateStarted, SwarmError> {
        panic!("unexpected rollback({name})")
    }
    async fn restart(
        &self,
        name: &str,
        _: Option<u64>,
    ) -> Result<crate::swarm::UpdateStarted, SwarmError> {
        panic!("unexpected restart({name})")
    }
}

/// A scripted `pulumi up`.
struct FakeUp {
    events: Vec<EngineEvent>,
    /// Blocks after the first events until released (or cancelled).
    gate: Option<Arc<Notify>>,
    /// What the update does to the Swarm.
    set_image: Option<(&'static str, &'static str)>,
    fail: Option<PulumiError>,
}

/// Pulumi as scripted: config in a map, previews and updates from queues. A call without
/// a script panics.
#[derive(Default)]
struct FakePulumi {
    config: Mutex<HashMap<String, String>>,
    previews: Mutex<VecDeque<PreviewSummary>>,
    ups: Mutex<VecDeque<FakeUp>>,
    calls: Mutex<Vec<String>>,
    swarm: Option<Arc<FakeSwarm>>,
    running: AtomicBool,
    cancel: Notify,
    ups_started: AtomicU64,
    /// `config set` to this value fails (a restore that cannot be written).
    fail_set_to: Mutex<Option<String>>,
    /// The next preview waits for this (a slow `pulumi preview`); counted when it starts.
    preview_gate: Mutex<Option<Arc<Notify>>>,
    previews_started: AtomicU64,
}

impl FakePulumi {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    fn tag(&self) -> Option<String> {
        self.config.lock().unwrap().get("image-tag").cloned()
    }
}

#[async_trait]
impl PulumiApi for FakePulumi {
    async fn config_get(&self, stack: &StackRef, key: &str) -> Result<Option<String>, PulumiError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("config get {key} --stack {}", stack.stack));
        Ok(self.config.lock().unwrap().get(key).cloned())
    }
    async fn config_set(
        &self,
        stack: &StackRef,
        key: &str,
        value: &str,
    ) -> Result<(), PulumiError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("config set {key} {value} --stack {}", stack.stack));
        if self.fail_set_to.lock().unwrap().as_deref() == Some(value) {
            return Err(PulumiError::Failed {
                command: "config set",
                code: Some(255),
                errors: vec!["error: could not write Pulumi.prod.yaml".into()],
                detail: "EACCES Pulumi.prod.yaml".into(),
            });
        }
        self.config.lock().unwrap().insert(key.into(), value.into());
        Ok(())
    }
    async fn preview(&self, stack: &StackRef) -> Result<PreviewSummary, PulumiError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("preview --stack {}", stack.stack));
        self.previews_started.fetch_add(1, Ordering::SeqCst);
        let gate = self.preview_gate.lock().unwrap().take();
        if let Some(gate) = gate {
            gate.notified().await;
        }
        Ok(self
            .previews
            .lock()
            .unwrap()
            .pop_front()
            .expect("an unexpected preview"))
    }
    async fn up(&self, stack: &StackRef, sink: EventSink) -> Result<UpOutcome, PulumiError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("up --stack {}", stack.stack));
        let script = self
            .ups
            .lock()
            .unwrap()
            .pop_front()
            .expect("an unexpected up");
        self.running.store(true, Ordering::SeqCst);
        self.ups_started.fetch_add(1, Ordering::SeqCst);
        let mut tracker = UpdateTracker::new();
        let split = script.events.len().min(2);
        for e in &script.events[..split] {
            tracker.observe(e, &Redactor::default());
            sink(e);
        }
        if let Some(gate) = &script.gate {
            tokio::select! {
                _ = gate.notified() => {}
                _ = self.cancel.notified() => {
                    self.running.store(false, Ordering::SeqCst);
                    return Err(PulumiError::Cancelled { command: "up", errors: vec![], detail: String::new() });
                }
            }
        }
        for e in &script.events[split..] {
            tracker.observe(e, &Redactor::default());
            sink(e);
        }
        if let (Some(swarm), Some((name, image))) = (&self.swarm, script.set_image) {
            swarm.set_image(name, image);
        }
        self.running.store(false, Ordering::SeqCst);
        if let Some(e) = script.fail {
            return Err(e);
        }
        Ok(UpOutcome {
            summary: tracker.summary().cloned(),
            steps_done: tracker.steps_done(),
            warnings: tracker.warnings(),
            events: tracker.events_seen(),
            duration: Duration::from_millis(5),
        })
    }
    async fn cancel(&self, _layer: &str) -> Result<bool, PulumiError> {
        if self.running.load(Ordering::SeqCst) {
            self.cancel.notify_one();
            Ok(true)
        } else {
            Ok(false)
        }
    }
}

/// Every call panics: for requests that must be refused before anything runs.
struct NoPulumi;

#[async_trait]
impl PulumiApi for NoPulumi {
    async fn config_get(&self, _: &StackRef, key: &str) -> Result<Option<String>, PulumiError> {
        panic!("config get {key} must not run")
    }
    async fn config_set(&self, _: &StackRef, key: &str, value: &str) -> Result<(), PulumiError> {
        panic!("config set {key} {value:?} must not run")
    }
    async fn preview(&self, _: &StackRef) -> Result<PreviewSummary, PulumiError> {
        panic!("preview must not run")
    }
    async fn up(&self, _: &StackRef, _: EventSink) -> Result<UpOutcome, PulumiError> {
        panic!("up must not run")
    }
    async fn cancel(&self, _: &str) -> Result<bool, PulumiError> {
        panic!("cancel must not run")
    }
}

struct Fixture {
    deployer: Arc<Deployer>,
    pulumi: Arc<FakePulumi>,
    swarm: Arc<FakeSwarm>,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

async fn store() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ops.db").display());
    (crate::store::connect(&url, None).await.unwrap(), dir)
}

async fn fixture(secrets: &[&str]) -> Fixture {
    let cfg = Config::parse("test.toml", CONFIG).unwrap();
    let (store, dir) = store().await;
    let swarm = Arc::new(FakeSwarm::default());
    swarm.services.lock().unwrap().extend([
        svc("prod-web", "repo/web:main", 10),
        svc("traefik-1", "traefik:v2", 3),
    ]);
    let pulumi = Arc::new(FakePulumi {
        swarm: Some(swarm.clone()),
        ..Default::default()
    });
    pulumi
        .config
        .lock()
        .unwrap()
        .insert("image-tag".into(), "main".into());
    let redactor = Arc::new(Redactor::new(secrets.iter().copied()));
    let deployer = Deployer::new(&cfg, pulumi.clone(), store.clone(), swarm.clone(), redactor)
        .with_verify(VerifyPolicy {
            timeout: Duration::from_millis(400),
            poll: Duration::from_millis(20),
        });
    Fixture {
        deployer: Arc::new(deployer),
        pulumi,
        swarm,
        store,
        _dir: dir,
    }
}

fn req(tag: Option<&str>, who: &str) -> DeployRequest {
    DeployRequest {
        layer: "platform".into(),
        image_tag: tag.map(str::to_string),
        requester: who.into(),
        reason: "release".into(),
    }
}

fn ok_up(op: &str, image: &'static str) -> FakeUp {
    FakeUp {
        events: step_events(op, "web", None),
        gate: None,
        set_image: Some(("prod-web", image)),
        fail: None,
    }
}

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

mod issue12;
