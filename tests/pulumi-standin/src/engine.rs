//! The "engine": plans steps by comparing the program's resources (`standin.json`) with the
//! REAL Swarm, applies them through the Docker API, and writes what the real CLI writes: the
//! `PreviewDigest` of `preview --json` and the engine events of `up --event-log` (the schema of
//! pulumi/pulumi `sdk/go/common/apitype/events.go`, one JSON object a line, flushed per event).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use bollard::models::{
    Service, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec,
    TaskSpecContainerSpec,
};
use bollard::query_parameters::UpdateServiceOptions;
use bollard::Docker;
use serde_json::{json, Value};

use crate::project::{Project, ResourceSpec};

/// The provider reference steps carry.
pub const PROVIDER: &str = "pulumi:providers:docker::default_3_6_1";

/// The service as the Swarm has it.
pub struct Current {
    pub id: String,
    pub version: u64,
    pub image: String,
    pub replicas: Option<u64>,
    pub spec: ServiceSpec,
}

/// One planned step.
pub struct Step {
    /// `same`, `create`, `update`, `replace`, `delete`.
    pub op: &'static str,
    pub res: ResourceSpec,
    pub urn: String,
    pub current: Option<Current>,
    pub desired_image: String,
    pub diff_reasons: Vec<&'static str>,
    pub replace_reasons: Vec<&'static str>,
    pub detailed_diff: BTreeMap<&'static str, &'static str>,
}

pub fn urn(stack: &str, project: &str, kind: &str, name: &str) -> String {
    format!("urn:pulumi:{stack}::{project}::{kind}::{name}")
}

pub fn stack_urn(stack: &str, project: &str) -> String {
    urn(
        stack,
        project,
        "pulumi:pulumi:Stack",
        &format!("{project}-{stack}"),
    )
}

pub async fn docker() -> Result<Docker, String> {
    // DOCKER_HOST (unix://, tcp:// or http://, e.g. a socket proxy) as the real Pulumi docker
    // provider reads it; the local socket without it.
    let d =
        Docker::connect_with_defaults().map_err(|e| format!("creating the Docker client: {e}"))?;
    d.negotiate_version()
        .await
        .map_err(|e| format!("the Docker engine is unreachable: {e}"))
}

fn image_without_digest(image: &str) -> &str {
    image.split('@').next().unwrap_or(image)
}

async fn current(docker: &Docker, name: &str) -> Result<Option<Current>, String> {
    match docker.inspect_service(name, None).await {
        Ok(s) => Ok(Some(to_current(s))),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(e) => Err(format!("reading service {name}: {e}")),
    }
}

fn to_current(s: Service) -> Current {
    let spec = s.spec.unwrap_or_default();
    let image = spec
        .task_template
        .as_ref()
        .and_then(|t| t.container_spec.as_ref())
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let replicas = spec
        .mode
        .as_ref()
        .and_then(|m| m.replicated.as_ref())
        .and_then(|r| r.replicas)
        .map(|r| r.max(0) as u64);
    Current {
        id: s.id.unwrap_or_default(),
        version: s.version.and_then(|v| v.index).unwrap_or(0),
        image,
        replicas,
        spec,
    }
}

/// The steps of an update, in program order.
pub async fn plan(
    docker: &Docker,
    project: &Project,
    stack: &str,
    resources: &[ResourceSpec],
    tag: &str,
) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    for res in resources {
        let cur = current(docker, &res.service_name).await?;
        let desired_image = format!("{}:{tag}", res.image_repo);
        let mut step = Step {
            op: "same",
            urn: urn(stack, &project.name, &res.kind, &res.name),
            res: res.clone(),
            current: None,
            desired_image: desired_image.clone(),
            diff_reasons: Vec::new(),
            replace_reasons: Vec::new(),
            detailed_diff: BTreeMap::new(),
        };
        match cur {
            None if res.delete => continue,
            None => step.op = "create",
            Some(c) => {
                if res.delete {
                    step.op = "delete";
                } else {
                    if image_without_digest(&c.image) != desired_image {
                        step.diff_reasons.push("taskSpec");
                        step.detailed_diff
                            .insert("taskSpec.containerSpec.image", "update");
                    }
                    if c.replicas != Some(res.replicas) {
                        step.diff_reasons.push("mode");
                        step.detailed_diff
                            .insert("mode.replicated.replicas", "update");
                    }
                    if res.force_replace {
                        step.op = "replace";
                        step.replace_reasons.push("name");
                        step.detailed_diff.insert("name", "update-replace");
                    } else if !step.diff_reasons.is_empty() {
                        step.op = "update";
                    }
                }
                step.current = Some(c);
            }
        }
        steps.push(step);
    }
    Ok(steps)
}

fn inputs(res: &ResourceSpec, image: &str) -> Value {
    json!({
        "name": res.service_name,
        "taskSpec": {"containerSpec": {"image": image}},
        "mode": {"replicated": {"replicas": res.replicas}},
    })
}

/// `StepEventStateMetadata` / `ResourceV3` of the resource before or after the step.
pub fn state(step: &Step, stack: &str, project: &str, after: bool) -> Value {
    let (image, id) = match (&step.current, after) {
        (Some(c), false) => (image_without_digest(&c.image).to_string(), c.id.clone()),
        (Some(c), true) if step.op != "replace" => (step.desired_image.clone(), c.id.clone()),
        _ => (step.desired_image.clone(), String::new()),
    };
    json!({
        "type": step.res.kind,
        "urn": step.urn,
        "custom": true,
        "id": id,
        "parent": stack_urn(stack, project),
        "inputs": inputs(&step.res, &image),
        "outputs": if id.is_empty() { Value::Null } else { inputs(&step.res, &image) },
        "provider": format!("urn:pulumi:{stack}::{project}::{PROVIDER}::04da6b54-80e4-46f7-96ec-b56ff0331ba9"),
    })
}

/// `StepEventMetadata` of a step.
pub fn metadata(step: &Step, stack: &str, project: &str) -> Value {
    let old = step
        .current
        .as_ref()
        .map(|_| state(step, stack, project, false));
    let new = (step.op != "delete").then(|| state(step, stack, project, true));
    let detailed: serde_json::Map<String, Value> = step
        .detailed_diff
        .iter()
        .map(|(k, kind)| (k.to_string(), json!({"diffKind": kind, "inputDiff": true})))
        .collect();
    let mut m = json!({
        "op": step.op,
        "urn": step.urn,
        "type": step.res.kind,
        "old": old,
        "new": new,
        "detailedDiff": if step.op == "same" { Value::Null } else { Value::Object(detailed) },
        "provider": format!("urn:pulumi:{stack}::{project}::{PROVIDER}::04da6b54-80e4-46f7-96ec-b56ff0331ba9"),
    });
    if !step.diff_reasons.is_empty() {
        m["diffs"] = json!(step.diff_reasons);
    }
    if !step.replace_reasons.is_empty() {
        m["keys"] = json!(step.replace_reasons);
    }
    m
}

/// `metadata` of the stack resource (always `same` here).
pub fn stack_metadata(stack: &str, project: &str) -> Value {
    json!({
        "op": "same",
        "urn": stack_urn(stack, project),
        "type": "pulumi:pulumi:Stack",
        "old": null,
        "new": null,
        "detailedDiff": null,
        "provider": "",
    })
}

/// One `PreviewStep` of `preview --json` (`pkg/display/json.go`).
pub fn preview_step(step: &Step, stack: &str, project: &str) -> Value {
    let mut s = json!({
        "op": step.op,
        "urn": step.urn,
        "provider": format!("urn:pulumi:{stack}::{project}::{PROVIDER}::04da6b54-80e4-46f7-96ec-b56ff0331ba9"),
    });
    if step.current.is_some() {
        s["oldState"] = state(step, stack, project, false);
    }
    if step.op != "delete" {
        s["newState"] = state(step, stack, project, true);
    }
    if !step.diff_reasons.is_empty() {
        s["diffReasons"] = json!(step.diff_reasons);
    }
    if !step.replace_reasons.is_empty() {
        s["replaceReasons"] = json!(step.replace_reasons);
    }
    let detailed: serde_json::Map<String, Value> = step
        .detailed_diff
        .iter()
        .map(|(k, kind)| (k.to_string(), json!({"kind": kind, "inputDiff": true})))
        .collect();
    s["detailedDiff"] = if detailed.is_empty() {
        Value::Null
    } else {
        Value::Object(detailed)
    };
    s
}

/// Applies one step to the Swarm.
pub async fn apply(docker: &Docker, step: &Step) -> Result<(), String> {
    let name = &step.res.service_name;
    match step.op {
        "same" => Ok(()),
        "update" => {
            // As the docker provider's Update does: the service is read again right before the
            // update, for the version the engine expects (Swarm bumps it on its own, e.g. when
            // a rollout or a rollback ends while the plan's steps run).
            let c = current(docker, name)
                .await?
                .ok_or_else(|| format!("updating service {name}: it no longer exists"))?;
            let mut spec = c.spec.clone();
            set_image_and_replicas(&mut spec, &step.desired_image, step.res.replicas);
            let options = UpdateServiceOptions {
                version: i32::try_from(c.version).unwrap_or(i32::MAX),
                ..Default::default()
            };
            docker
                .update_service(&c.id, spec, options, None)
                .await
                .map(|_| ())
                .map_err(|e| format!("updating service {name}: {e}"))
        }
        "delete" => {
            let c = step
                .current
                .as_ref()
                .expect("a delete has a current service");
            docker
                .delete_service(&c.id)
                .await
                .map_err(|e| format!("deleting service {name}: {e}"))
        }
        "replace" => {
            let c = step
                .current
                .as_ref()
                .expect("a replace has a current service");
            let mut spec = c.spec.clone();
            set_image_and_replicas(&mut spec, &step.desired_image, step.res.replicas);
            docker
                .delete_service(&c.id)
                .await
                .map_err(|e| format!("deleting service {name} for its replacement: {e}"))?;
            create(docker, name, spec).await
        }
        "create" => {
            let mut spec = ServiceSpec {
                name: Some(name.clone()),
                labels: Some(step.res.labels.clone().into_iter().collect()),
                task_template: Some(TaskSpec {
                    container_spec: Some(TaskSpecContainerSpec::default()),
                    ..Default::default()
                }),
                ..Default::default()
            };
            set_image_and_replicas(&mut spec, &step.desired_image, step.res.replicas);
            create(docker, name, spec).await
        }
        other => Err(format!("the stand-in cannot apply `{other}`")),
    }
}

async fn create(docker: &Docker, name: &str, spec: ServiceSpec) -> Result<(), String> {
    // The engine frees a removed service's name asynchronously: retry briefly.
    let mut last = String::new();
    for _ in 0..20 {
        match docker.create_service(spec.clone(), None).await {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    Err(format!("creating service {name}: {last}"))
}

fn set_image_and_replicas(spec: &mut ServiceSpec, image: &str, replicas: u64) {
    let task = spec.task_template.get_or_insert_with(Default::default);
    let container = task.container_spec.get_or_insert_with(Default::default);
    container.image = Some(image.to_string());
    spec.mode = Some(ServiceSpecMode {
        replicated: Some(ServiceSpecModeReplicated {
            replicas: Some(replicas as i64),
        }),
        ..Default::default()
    });
}

/// The event log: one JSON object a line, `sequence` and `timestamp` first, flushed per event.
pub struct EventLog {
    file: Option<std::fs::File>,
    sequence: u64,
    /// Write the shape of an older CLI (`standin.json`'s `event_log_shape: "v3.100"`).
    older: bool,
}

/// Fields an older CLI (the v3.100 era) did not write, by payload.
const NOT_IN_OLDER: &[(&str, &[&str])] = &[
    (
        "summaryEvent",
        &["isPreview", "PolicyPacks", "maybeCorrupt"],
    ),
    ("diagnosticEvent", &["color"]),
    ("resOpFailedEvent", &["steps"]),
];

impl EventLog {
    pub fn open(path: Option<&Path>) -> Result<EventLog, String> {
        let file = match path {
            Some(p) => Some(
                std::fs::File::create(p)
                    .map_err(|e| format!("opening the event log {}: {e}", p.display()))?,
            ),
            None => None,
        };
        Ok(EventLog {
            file,
            sequence: 0,
            older: false,
        })
    }

    /// From now on, write the shape of an older CLI (see [`NOT_IN_OLDER`]).
    pub fn older_shape(mut self, older: bool) -> EventLog {
        self.older = older;
        self
    }

    /// Writes `{"sequence":n,"timestamp":t,"<kind>":payload}` (older shape: no `sequence`,
    /// and the payload without the fields of [`NOT_IN_OLDER`]).
    pub fn emit(&mut self, kind: &str, mut payload: Value) {
        let line = if self.older {
            for (k, fields) in NOT_IN_OLDER {
                if *k == kind {
                    if let Some(o) = payload.as_object_mut() {
                        for f in *fields {
                            o.remove(*f);
                        }
                    }
                }
            }
            format!("{{\"timestamp\":{},\"{kind}\":{}}}\n", unix_secs(), payload)
        } else {
            format!(
                "{{\"sequence\":{},\"timestamp\":{},\"{kind}\":{}}}\n",
                self.sequence,
                unix_secs(),
                payload
            )
        };
        self.sequence += 1;
        if let Some(f) = self.file.as_mut() {
            let _ = f.write_all(line.as_bytes());
            let _ = f.flush();
        }
    }
}

pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
