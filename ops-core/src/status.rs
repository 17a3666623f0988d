//! `/status` as data: the Swarm snapshot grouped by layer, with running/desired replicas, update
//! state, failing tasks and nodes. Pure: built from a [`SwarmSnapshot`], no I/O.

use std::collections::HashMap;

use serde::Serialize;

use crate::layers::LayerMap;
use crate::swarm::{display_image, NodeInfo, SwarmSnapshot, TaskInfo};

/// Name of the group for services that match no layer.
pub const UNASSIGNED: &str = "unassigned";

/// One service line of `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceStatus {
    pub name: String,
    /// Image as `docker service ls` shows it (no digest).
    pub image: String,
    pub running: u64,
    pub desired: u64,
    pub layer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_state: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failing_tasks: Vec<FailingTask>,
}

impl ServiceStatus {
    pub fn healthy(&self) -> bool {
        self.running >= self.desired
            && self.failing_tasks.is_empty()
            && !matches!(
                self.update_state.as_deref(),
                Some("paused" | "rollback_started" | "rollback_paused" | "rollback_completed")
            )
    }
}

/// The latest failure of one task slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailingTask {
    pub task_id: String,
    pub state: String,
    pub error: Option<String>,
    pub exit_code: Option<i64>,
    pub at: Option<String>,
}

/// Services of one layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerStatus {
    pub name: String,
    pub services: Vec<ServiceStatus>,
}

/// The whole report. When the engine could not be asked, `docker_error` says so and the lists
/// are empty: the report is honest rather than stale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct StatusReport {
    pub layers: Vec<LayerStatus>,
    pub nodes: Vec<NodeInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker_error: Option<String>,
}

impl StatusReport {
    /// Groups the snapshot by layer (in layer order, unassigned last), services by name.
    /// `only_layer` keeps one layer.
    pub fn build(
        snap: &SwarmSnapshot,
        layers: &LayerMap,
        only_layer: Option<&str>,
    ) -> StatusReport {
        let mut tasks_by_service: HashMap<&str, Vec<&TaskInfo>> = HashMap::new();
        for t in &snap.tasks {
            tasks_by_service
                .entry(t.service_id.as_str())
                .or_default()
                .push(t);
        }
        let mut groups: Vec<LayerStatus> = layers
            .names()
            .chain(std::iter::once(UNASSIGNED))
            .map(|n| LayerStatus {
                name: n.to_string(),
                services: Vec::new(),
            })
            .collect();
        for s in &snap.services {
            let layer = layers
                .layer_of(&s.name, |k| s.labels.get(k).map(String::as_str))
                .unwrap_or(UNASSIGNED);
            let tasks = tasks_by_service
                .get(s.id.as_str())
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let counted_running = tasks
                .iter()
                .filter(|t| t.state == "running" && t.desired_state == "running")
                .count() as u64;
            let status = ServiceStatus {
                name: s.name.clone(),
                image: display_image(&s.image).to_string(),
                running: s.running_tasks.unwrap_or(counted_running),
                desired: s.desired_tasks.or(s.replicas).unwrap_or(0),
                layer: layer.to_string(),
                update_state: s.update_state.clone(),
                failing_tasks: failing_tasks(tasks),
            };
            if let Some(g) = groups.iter_mut().find(|g| g.name == layer) {
                g.services.push(status);
            }
        }
        for g in &mut groups {
            g.services.sort_by(|a, b| a.name.cmp(&b.name));
        }
        groups.retain(|g| match only_layer {
            Some(l) => g.name == l,
            None => g.name != UNASSIGNED || !g.services.is_empty(),
        });
        StatusReport {
            layers: groups,
            nodes: snap.nodes.clone(),
            docker_error: None,
        }
    }

    pub fn unavailable(reason: &str) -> StatusReport {
        StatusReport {
            docker_error: Some(reason.to_string()),
            ..Default::default()
        }
    }

    pub fn services(&self) -> impl Iterator<Item = &ServiceStatus> {
        self.layers.iter().flat_map(|l| l.services.iter())
    }
}

/// For each task slot whose newest task failed or was rejected, that task: a slot that has since
/// recovered (its newest task runs) is not failing.
fn failing_tasks(tasks: &[&TaskInfo]) -> Vec<FailingTask> {
    let mut newest: HashMap<u64, &TaskInfo> = HashMap::new();
    let mut unslotted = Vec::new();
    for t in tasks {
        match t.slot {
            Some(slot) => {
                let e = newest.entry(slot).or_insert(t);
                if task_time(t) > task_time(e) {
                    *e = t;
                }
            }
            None => unslotted.push(*t),
        }
    }
    let mut out: Vec<FailingTask> = newest
        .into_values()
        .chain(unslotted)
        .filter(|t| matches!(t.state.as_str(), "failed" | "rejected"))
        .map(|t| FailingTask {
            task_id: t.id.clone(),
            state: t.state.clone(),
            error: t.err.clone().or_else(|| t.message.clone()),
            exit_code: t.exit_code,
            at: t.timestamp.clone(),
        })
        .collect();
    out.sort_by(|a, b| a.task_id.cmp(&b.task_id));
    out
}

fn task_time(t: &TaskInfo) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    t.timestamp
        .as_deref()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::ServiceInfo;

    fn svc(id: &str, name: &str, replicas: u64, running: Option<u64>) -> ServiceInfo {
        ServiceInfo {
            id: id.into(),
            name: name.into(),
            image: format!("img/{name}:main@sha256:abc"),
            replicas: Some(replicas),
            labels: Default::default(),
            running_tasks: running,
            desired_tasks: running.map(|_| replicas),
            update_state: None,
            update_message: None,
            version: 1,
        }
    }

    fn task(id: &str, service: &str, slot: u64, state: &str, ts: &str) -> TaskInfo {
        TaskInfo {
            id: id.into(),
            service_id: service.into(),
            slot: Some(slot),
            node_id: None,
            desired_state: if state == "running" {
                "running"
            } else {
                "shutdown"
            }
            .into(),
            state: state.into(),
            message: None,
            err: (state == "failed").then(|| "task: non-zero exit (1)".to_string()),
            exit_code: (state == "failed").then_some(1),
            timestamp: Some(ts.into()),
        }
    }

    fn map() -> LayerMap {
        let cfg =
            crate::config::Config::parse("t", include_str!("../../sprocket-ops.example.toml"))
                .unwrap();
        LayerMap::from_config(&cfg)
    }

    #[test]
    fn groups_by_layer_in_order_and_strips_digests() {
        let snap = SwarmSnapshot {
            services: vec![
                svc("1", "prod-web", 2, Some(2)),
                svc("2", "traefik-1", 1, Some(1)),
                svc("3", "mystery", 1, Some(0)),
                svc("4", "grafana-x", 1, None),
            ],
            tasks: vec![task("t4", "4", 1, "running", "2026-01-01T00:00:00Z")],
            nodes: vec![],
        };
        let r = StatusReport::build(&snap, &map(), None);
        let names: Vec<_> = r.layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["layer_1", "layer_2", "platform", UNASSIGNED]);
        assert_eq!(r.layers[2].services[0].image, "img/prod-web:main");
        // Without ServiceStatus counts, running tasks are counted from the task list.
        assert_eq!(
            (
                r.layers[1].services[0].running,
                r.layers[1].services[0].desired
            ),
            (1, 1)
        );
        let only = StatusReport::build(&snap, &map(), Some("platform"));
        assert_eq!(only.layers.len(), 1);
        assert_eq!(only.services().count(), 1);
    }

    #[test]
    fn a_recovered_slot_is_not_failing_but_a_crash_looping_one_is() {
        let snap = SwarmSnapshot {
            services: vec![svc("1", "prod-web", 2, Some(1))],
            tasks: vec![
                task("a1", "1", 1, "failed", "2026-01-01T00:00:01Z"),
                task("a2", "1", 1, "running", "2026-01-01T00:00:02Z"),
                task("b1", "1", 2, "failed", "2026-01-01T00:00:03Z"),
                task("b0", "1", 2, "shutdown", "2026-01-01T00:00:00Z"),
            ],
            nodes: vec![],
        };
        let r = StatusReport::build(&snap, &map(), None);
        let s = r.services().next().unwrap();
        assert_eq!(s.failing_tasks.len(), 1);
        assert_eq!(s.failing_tasks[0].task_id, "b1");
        assert_eq!(s.failing_tasks[0].exit_code, Some(1));
        assert!(!s.healthy());
    }
}
