//! `pulumi preview --json`: the CLI's `PreviewDigest` document (pulumi/pulumi
//! `pkg/display/json.go`: `steps[{op, urn, provider, oldState, newState, diffReasons,
//! replaceReasons, detailedDiff}]`, `diagnostics[{urn, prefix, message, severity}]`, `duration`
//! in nanoseconds, `changeSummary{op: count}`, `maybeCorrupt`) reduced to a [`PreviewSummary`]:
//! the planned steps, counts by resource type, and a stable [`PreviewSummary::digest`] of what
//! would run (an approval is void when it changes).
//!
//! Steps carry no `type` of their own: it is `newState.type` / `oldState.type`, else the type
//! part of the URN. A replacement counts once per resource whichever of `replace`,
//! `create-replacement` and `delete-replaced` the CLI shows (by default only `replace`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::events::{strip_color, urn_name, urn_type};
use crate::redact::Redactor;

/// Counts of steps by operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpCounts {
    pub create: u32,
    pub update: u32,
    pub delete: u32,
    pub replace: u32,
    pub same: u32,
    /// Reads, refreshes, imports and operations of newer CLIs.
    pub other: u32,
}

impl OpCounts {
    fn add(&mut self, op: StepKind) {
        self.add_n(op, 1);
    }

    fn add_n(&mut self, op: StepKind, n: u32) {
        let slot = match op {
            StepKind::Create => &mut self.create,
            StepKind::Update => &mut self.update,
            StepKind::Delete => &mut self.delete,
            StepKind::Replace => &mut self.replace,
            StepKind::Same => &mut self.same,
            StepKind::Other => &mut self.other,
        };
        *slot = slot.saturating_add(n);
    }

    /// Steps that change something.
    pub fn changes(&self) -> u32 {
        self.create + self.update + self.delete + self.replace
    }

    /// `+1 ~2 -1 +-1` style, for people (`no changes` when nothing changes).
    pub fn describe(&self) -> String {
        let parts: Vec<String> = [
            (self.create, "to create"),
            (self.update, "to update"),
            (self.replace, "to replace"),
            (self.delete, "to delete"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        if parts.is_empty() {
            "no changes".to_string()
        } else {
            parts.join(", ")
        }
    }
}

/// What a step does, grouped the way approvals care about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    Create,
    Update,
    Delete,
    Replace,
    Same,
    Other,
}

impl StepKind {
    pub fn from_op(op: &str) -> StepKind {
        match op {
            "create" | "import" => StepKind::Create,
            "update" => StepKind::Update,
            "delete" | "discard" => StepKind::Delete,
            "replace" | "create-replacement" | "delete-replaced" | "import-replacement"
            | "discard-replaced" => StepKind::Replace,
            "same" => StepKind::Same,
            _ => StepKind::Other,
        }
    }
}

/// One planned step (never `same`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedStep {
    pub kind: StepKind,
    /// The operation as the CLI spelled it.
    pub op: String,
    pub urn: String,
    pub resource_type: String,
    pub name: String,
    /// Properties forcing a replacement.
    pub replace_reasons: Vec<String>,
    /// Properties that differ.
    pub diff_reasons: Vec<String>,
}

/// A preview diagnostic, colour-free and redacted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviewDiagnostic {
    pub severity: String,
    pub message: String,
}

/// What `pulumi preview` says would happen.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PreviewSummary {
    /// Non-`same` steps, one per resource, sorted by URN.
    pub steps: Vec<PlannedStep>,
    /// Resource type -> counts (from the steps; `same` from nowhere: the CLI omits them).
    pub by_type: BTreeMap<String, OpCounts>,
    /// The CLI's own `changeSummary` (includes `same`).
    pub change_summary: OpCounts,
    /// Warnings and errors (info and debug are dropped).
    pub diagnostics: Vec<PreviewDiagnostic>,
    pub maybe_corrupt: bool,
}

/// Why a preview document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the preview output is not a Pulumi preview document: {reason}")]
pub struct PreviewParseError {
    pub reason: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DigestJson {
    #[serde(default)]
    steps: Vec<StepJson>,
    #[serde(default)]
    diagnostics: Vec<DiagnosticJson>,
    #[serde(default)]
    change_summary: BTreeMap<String, i64>,
    #[serde(default)]
    maybe_corrupt: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StepJson {
    op: String,
    urn: String,
    #[serde(default)]
    old_state: Option<StateJson>,
    #[serde(default)]
    new_state: Option<StateJson>,
    #[serde(default)]
    diff_reasons: Vec<String>,
    #[serde(default)]
    replace_reasons: Vec<String>,
}

#[derive(Deserialize)]
struct StateJson {
    #[serde(rename = "type", default)]
    kind: String,
}

#[derive(Deserialize)]
struct DiagnosticJson {
    #[serde(default)]
    urn: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    severity: String,
}

impl PreviewSummary {
    /// Parses the CLI's stdout (text before the document, such as a CLI warning, is skipped).
    /// Diagnostic messages are redacted.
    pub fn parse(stdout: &str, redactor: &Redactor) -> Result<PreviewSummary, PreviewParseError> {
        let start = stdout.find('{').ok_or_else(|| PreviewParseError {
            reason: "no JSON object in the output".into(),
        })?;
        let doc: DigestJson =
            serde_json::from_str(stdout[start..].trim_end()).map_err(|e| PreviewParseError {
                reason: e.to_string(),
            })?;
        Ok(PreviewSummary::from_doc(doc, redactor))
    }

    fn from_doc(doc: DigestJson, redactor: &Redactor) -> PreviewSummary {
        let mut by_urn: BTreeMap<String, PlannedStep> = BTreeMap::new();
        for s in doc.steps {
            let kind = StepKind::from_op(&s.op);
            if kind == StepKind::Same {
                continue;
            }
            let resource_type = s
                .new_state
                .as_ref()
                .or(s.old_state.as_ref())
                .map(|st| st.kind.clone())
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| urn_type(&s.urn).to_string());
            let mut replace_reasons = s.replace_reasons;
            replace_reasons.sort();
            replace_reasons.dedup();
            let mut diff_reasons = s.diff_reasons;
            diff_reasons.sort();
            diff_reasons.dedup();
            let step = PlannedStep {
                kind,
                op: s.op,
                name: urn_name(&s.urn).to_string(),
                urn: s.urn,
                resource_type,
                replace_reasons,
                diff_reasons,
            };
            // A replacement shown as several steps counts once, as `replace`.
            match by_urn.get_mut(&step.urn) {
                Some(existing) if step.kind == StepKind::Replace => {
                    existing.kind = StepKind::Replace;
                    existing.op = "replace".into();
                    existing.replace_reasons.extend(step.replace_reasons);
                    existing.replace_reasons.sort();
                    existing.replace_reasons.dedup();
                }
                Some(_) => {}
                None => {
                    by_urn.insert(step.urn.clone(), step);
                }
            }
        }
        let steps: Vec<PlannedStep> = by_urn.into_values().collect();
        let mut by_type: BTreeMap<String, OpCounts> = BTreeMap::new();
        for s in &steps {
            by_type
                .entry(s.resource_type.clone())
                .or_default()
                .add(s.kind);
        }
        let mut change_summary = OpCounts::default();
        for (op, n) in &doc.change_summary {
            change_summary.add_n(StepKind::from_op(op), u32::try_from(*n).unwrap_or(0));
        }
        let diagnostics = doc
            .diagnostics
            .into_iter()
            .filter(|d| matches!(d.severity.as_str(), "warning" | "error"))
            .map(|d| {
                let msg = strip_color(&d.message);
                let msg = msg.split_whitespace().collect::<Vec<_>>().join(" ");
                let msg = if d.urn.is_empty() {
                    msg
                } else {
                    format!("{}: {msg}", urn_name(&d.urn))
                };
                PreviewDiagnostic {
                    severity: d.severity,
                    message: redactor.redact(&msg).into_owned(),
                }
            })
            .collect();
        PreviewSummary {
            steps,
            by_type,
            change_summary,
            diagnostics,
            maybe_corrupt: doc.maybe_corrupt,
        }
    }

    /// Counts over all planned steps.
    pub fn totals(&self) -> OpCounts {
        let mut t = OpCounts::default();
        for s in &self.steps {
            t.add(s.kind);
        }
        t.same = self.change_summary.same;
        t
    }

    /// Deletes or replaces something: an approval is needed.
    pub fn is_destructive(&self) -> bool {
        let t = self.totals();
        t.delete > 0
            || t.replace > 0
            || self.change_summary.delete > 0
            || self.change_summary.replace > 0
    }

    /// Anything to do at all.
    pub fn has_changes(&self) -> bool {
        !self.steps.is_empty() || self.change_summary.changes() > 0
    }

    /// Steps an update will work through (one per changing resource).
    pub fn steps_planned(&self) -> u32 {
        self.steps.len() as u32
    }

    /// Names of the resources that would be deleted or replaced.
    pub fn destructive_resources(&self) -> Vec<String> {
        self.steps
            .iter()
            .filter(|s| matches!(s.kind, StepKind::Delete | StepKind::Replace))
            .map(|s| format!("{} {} ({})", s.op, s.name, s.resource_type))
            .collect()
    }

    /// A stable digest of what would run: the sorted (operation, URN, replace and diff
    /// reasons) of the changing steps. Same plan, same digest, whatever the step order or the
    /// diagnostics.
    pub fn digest(&self) -> String {
        let mut lines: BTreeSet<String> = BTreeSet::new();
        for s in &self.steps {
            lines.insert(format!(
                "{:?}\u{0}{}\u{0}{}\u{0}{}",
                s.kind,
                s.urn,
                s.replace_reasons.join(","),
                s.diff_reasons.join(",")
            ));
        }
        let mut h = Sha256::new();
        h.update(b"sprocket-ops pulumi preview v1\0");
        for l in &lines {
            h.update(l.as_bytes());
            h.update(b"\n");
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// One line per resource type, for people: `docker:index/service:Service: 2 to update`.
    pub fn describe(&self) -> Vec<String> {
        self.by_type
            .iter()
            .map(|(t, c)| format!("{t}: {}", c.describe()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of `pulumi preview --json` (trimmed): a replace, an update, a same (omitted
    /// by the CLI, counted in changeSummary), a delete and a warning carrying a secret.
    const PREVIEW: &str = r#"warning: A new version of Pulumi is available.
{
    "config": {"platform:image-tag": "v2"},
    "steps": [
        {
            "op": "update",
            "urn": "urn:pulumi:prod::platform::docker:index/service:Service::web",
            "provider": "urn:pulumi:prod::platform::pulumi:providers:docker::default::1",
            "oldState": {"urn": "urn:pulumi:prod::platform::docker:index/service:Service::web", "custom": true, "type": "docker:index/service:Service", "id": "abc", "inputs": {}, "outputs": {}},
            "newState": {"urn": "urn:pulumi:prod::platform::docker:index/service:Service::web", "custom": true, "type": "docker:index/service:Service", "inputs": {}},
            "diffReasons": ["taskSpec"],
            "detailedDiff": {"taskSpec.containerSpec.image": {"kind": "update", "inputDiff": true}}
        },
        {
            "op": "replace",
            "urn": "urn:pulumi:prod::platform::docker:index/network:Network::net",
            "newState": {"type": "docker:index/network:Network"},
            "replaceReasons": ["name", "driver", "name"],
            "detailedDiff": null
        },
        {
            "op": "delete",
            "urn": "urn:pulumi:prod::platform::docker:index/service:Service::old-worker",
            "detailedDiff": null
        }
    ],
    "diagnostics": [
        {"urn": "urn:pulumi:prod::platform::docker:index/service:Service::web", "message": "<{%fg 3%}>token=s3cr3tvalue1 <{%reset%}>\n", "severity": "warning"},
        {"message": "debug chatter", "severity": "debug"}
    ],
    "duration": 1500000000,
    "changeSummary": {"update": 1, "replace": 1, "delete": 1, "same": 4}
}
"#;

    #[test]
    fn parses_steps_by_type_and_flags_destructive_plans() {
        let p = PreviewSummary::parse(PREVIEW, &Redactor::default()).unwrap();
        assert_eq!(p.steps.len(), 3);
        assert_eq!(p.steps_planned(), 3);
        let svc = &p.by_type["docker:index/service:Service"];
        assert_eq!((svc.update, svc.delete, svc.replace), (1, 1, 0));
        assert_eq!(p.by_type["docker:index/network:Network"].replace, 1);
        assert_eq!(p.change_summary.same, 4);
        assert_eq!(p.totals().changes(), 3);
        assert!(p.is_destructive() && p.has_changes());
        let net = p.steps.iter().find(|s| s.name == "net").unwrap();
        assert_eq!(
            net.replace_reasons,
            ["driver", "name"],
            "sorted, deduplicated"
        );
        assert_eq!(
            p.destructive_resources(),
            [
                "replace net (docker:index/network:Network)",
                "delete old-worker (docker:index/service:Service)"
            ]
        );
        assert_eq!(p.diagnostics.len(), 1, "debug dropped");
        assert!(p.diagnostics[0].message.starts_with("web: token="));
        assert!(!p.diagnostics[0].message.contains("s3cr3tvalue1"));
        assert_eq!(
            p.describe(),
            [
                "docker:index/network:Network: 1 to replace",
                "docker:index/service:Service: 1 to update, 1 to delete"
            ]
        );
    }

    #[test]
    fn digest_is_stable_and_sensitive_to_the_plan() {
        let p = PreviewSummary::parse(PREVIEW, &Redactor::default()).unwrap();
        let d = p.digest();
        assert_eq!(d.len(), 64);
        // Reordered steps and other diagnostics: same digest.
        let mut q = p.clone();
        q.steps.reverse();
        q.diagnostics.clear();
        assert_eq!(q.digest(), d);
        // One more replace reason: another plan.
        let mut r = p.clone();
        r.steps[0].replace_reasons.push("image".into());
        assert_ne!(r.digest(), d);
        let mut s = p.clone();
        s.steps[1].kind = StepKind::Update;
        assert_ne!(s.digest(), d);
    }

    #[test]
    fn replacement_steps_count_once_and_no_change_plans_are_empty() {
        let doc = r#"{"steps":[
            {"op":"create-replacement","urn":"urn:pulumi:s::p::docker:index/service:Service::a","replaceReasons":["name"]},
            {"op":"replace","urn":"urn:pulumi:s::p::docker:index/service:Service::a"},
            {"op":"delete-replaced","urn":"urn:pulumi:s::p::docker:index/service:Service::a"},
            {"op":"same","urn":"urn:pulumi:s::p::docker:index/service:Service::b"}
        ],"changeSummary":{"replace":1,"same":1}}"#;
        let p = PreviewSummary::parse(doc, &Redactor::default()).unwrap();
        assert_eq!(p.steps.len(), 1);
        assert_eq!(p.steps[0].kind, StepKind::Replace);
        assert_eq!(
            p.steps[0].resource_type, "docker:index/service:Service",
            "from the URN"
        );
        assert_eq!(p.totals().replace, 1);
        let empty =
            PreviewSummary::parse(r#"{"changeSummary":{"same":3}}"#, &Redactor::default()).unwrap();
        assert!(!empty.has_changes() && !empty.is_destructive());
        assert_eq!(empty.totals().describe(), "no changes");
        assert!(PreviewSummary::parse("error: no stack", &Redactor::default()).is_err());
        assert!(PreviewSummary::parse("{\"steps\": [", &Redactor::default()).is_err());
    }
}
