//! Unit tests of the deployer against hand-written Pulumi, Swarm and store fakes: the fakes and
//! the fixture are here, the tests in `flow`, `failures`, `recovery` and `issue12`.

use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;

use super::*;
use crate::pulumi::events::{parse_event_line, EventKind};
use crate::store::Store;
pub(super) use crate::testing::{FakeSwarm, NoPulumi};

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

mod failures;
mod flow;
mod issue12;
mod recovery;
