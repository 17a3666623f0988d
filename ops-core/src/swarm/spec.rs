//! What approvers see of a service change: [`SpecFacts`] (image, replicas, environment keys
//! with their values hashed at once, mounts, resources) read from a Swarm `ServiceSpec` as
//! the engine returns it (JSON, so the reading does not depend on one client's model), and
//! [`spec_diff`], the lines of a change between two of them. Environment values are never
//! kept or shown: a key is added, removed, or "changed (value masked)".

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// One service spec, reduced to what approvers are shown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecFacts {
    pub image: String,
    /// `None` for global services and jobs.
    pub replicas: Option<u64>,
    /// Environment key -> SHA-256 of its value (the value itself is not kept).
    pub env: BTreeMap<String, String>,
    /// `type source -> target (ro)`, sorted.
    pub mounts: Vec<String>,
    /// `limits cpu=0.5`, `limits memory=256 MiB`, `reservations …`, sorted.
    pub resources: Vec<String>,
}

/// A service as [`super::SwarmApi::inspect_spec`] reads it: the detail (with the version a
/// change must name), the facts of its spec and of its previous spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecView {
    pub detail: super::ServiceDetail,
    pub current: SpecFacts,
    pub previous: Option<SpecFacts>,
}

fn hash(value: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"sprocket-ops env value v1\0");
    h.update(value.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn cpus(nano: i64) -> String {
    let whole = nano / 1_000_000_000;
    let frac = nano % 1_000_000_000;
    if frac == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{}", format!("{frac:09}").trim_end_matches('0'))
    }
}

fn bytes(n: i64) -> String {
    const MIB: i64 = 1024 * 1024;
    if n >= MIB && n % MIB == 0 {
        format!("{} MiB", n / MIB)
    } else {
        format!("{n} B")
    }
}

impl SpecFacts {
    /// Reads a `ServiceSpec` document (`Spec` or `PreviousSpec` of `GET /services/{id}`).
    pub fn from_spec_json(spec: &Value) -> SpecFacts {
        let container = &spec["TaskTemplate"]["ContainerSpec"];
        let env = container["Env"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|kv| match kv.split_once('=') {
                        Some((k, v)) => (k.to_string(), hash(v)),
                        None => (kv.to_string(), hash("")),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut mounts: Vec<String> = container["Mounts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| {
                        let source = m["Source"].as_str().unwrap_or("");
                        format!(
                            "{}{}{source} -> {}{}",
                            m["Type"].as_str().unwrap_or("volume"),
                            if source.is_empty() { "" } else { " " },
                            m["Target"].as_str().unwrap_or(""),
                            if m["ReadOnly"].as_bool().unwrap_or(false) {
                                " (ro)"
                            } else {
                                ""
                            }
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        mounts.sort();
        let mut resources = Vec::new();
        for kind in ["Limits", "Reservations"] {
            let r = &spec["TaskTemplate"]["Resources"][kind];
            let label = kind.to_ascii_lowercase();
            if let Some(n) = r["NanoCPUs"].as_i64().filter(|n| *n > 0) {
                resources.push(format!("{label} cpu={}", cpus(n)));
            }
            if let Some(n) = r["MemoryBytes"].as_i64().filter(|n| *n > 0) {
                resources.push(format!("{label} memory={}", bytes(n)));
            }
            if let Some(n) = r["Pids"].as_i64().filter(|n| *n > 0) {
                resources.push(format!("{label} pids={n}"));
            }
        }
        resources.sort();
        SpecFacts {
            image: container["Image"].as_str().unwrap_or_default().to_string(),
            replicas: spec["Mode"]["Replicated"]["Replicas"].as_u64().or_else(|| {
                spec["Mode"]
                    .get("Replicated")
                    .filter(|r| r.is_object())
                    .map(|_| 1)
            }),
            env,
            mounts,
            resources,
        }
    }
}

/// The lines of the change `from` -> `to`, for approvers; empty when nothing listed differs.
pub fn spec_diff(from: &SpecFacts, to: &SpecFacts) -> Vec<String> {
    let mut lines = Vec::new();
    if from.image != to.image {
        lines.push(format!(
            "image: {} → {}",
            super::display_image(&from.image),
            super::display_image(&to.image)
        ));
    }
    if from.replicas != to.replicas {
        let r = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_else(|| "global".into());
        lines.push(format!(
            "replicas: {} → {}",
            r(from.replicas),
            r(to.replicas)
        ));
    }
    for (k, v) in &to.env {
        match from.env.get(k) {
            None => lines.push(format!("env added: {k} (value masked)")),
            Some(old) if old != v => lines.push(format!("env changed: {k} (value masked)")),
            _ => {}
        }
    }
    for k in from.env.keys().filter(|k| !to.env.contains_key(*k)) {
        lines.push(format!("env removed: {k}"));
    }
    for m in to.mounts.iter().filter(|m| !from.mounts.contains(m)) {
        lines.push(format!("mount added: {m}"));
    }
    for m in from.mounts.iter().filter(|m| !to.mounts.contains(m)) {
        lines.push(format!("mount removed: {m}"));
    }
    if from.resources != to.resources {
        let show = |r: &[String]| {
            if r.is_empty() {
                "none".to_string()
            } else {
                r.join(", ")
            }
        };
        lines.push(format!(
            "resources: {} → {}",
            show(&from.resources),
            show(&to.resources)
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diff_names_every_kind_of_change_and_never_an_env_value() {
        let before = SpecFacts::from_spec_json(&serde_json::json!({
            "Mode": {"Replicated": {"Replicas": 3}},
            "TaskTemplate": {
                "ContainerSpec": {
                    "Image": "registry/web:v1@sha256:abc",
                    "Env": ["KEEP=1", "TOKEN=s3cr3t-old", "GONE=x"],
                    "Mounts": [{"Type": "volume", "Source": "data", "Target": "/data"}]
                },
                "Resources": {"Limits": {"NanoCPUs": 500000000, "MemoryBytes": 268435456}}
            }
        }));
        let after = SpecFacts::from_spec_json(&serde_json::json!({
            "Mode": {"Replicated": {"Replicas": 0}},
            "TaskTemplate": {
                "ContainerSpec": {
                    "Image": "registry/web:v2",
                    "Env": ["KEEP=1", "TOKEN=s3cr3t-new", "NEW=hunter2"],
                    "Mounts": [{"Type": "bind", "Source": "/etc", "Target": "/host", "ReadOnly": true}]
                }
            }
        }));
        let lines = spec_diff(&before, &after);
        assert_eq!(
            lines,
            [
                "image: registry/web:v1 → registry/web:v2",
                "replicas: 3 → 0",
                "env added: NEW (value masked)",
                "env changed: TOKEN (value masked)",
                "env removed: GONE",
                "mount added: bind /etc -> /host (ro)",
                "mount removed: volume data -> /data",
                "resources: limits cpu=0.5, limits memory=256 MiB → none",
            ]
        );
        let all = format!("{lines:?} {before:?} {after:?}");
        for secret in ["s3cr3t-old", "s3cr3t-new", "hunter2"] {
            assert!(!all.contains(secret), "{secret} leaked: {all}");
        }
        assert!(spec_diff(&after, &after).is_empty());
        let global = SpecFacts::from_spec_json(&serde_json::json!({"Mode": {"Global": {}}}));
        assert_eq!(global.replicas, None);
    }
}
