//! `pulumi preview --json`: the CLI's `PreviewDigest` document (pulumi/pulumi
//! `pkg/display/json.go`: `steps[{op, urn, provider, oldState, newState, diffReasons,
//! replaceReasons, detailedDiff}]`, `diagnostics[{urn, prefix, message, severity}]`, `duration`
//! in nanoseconds, `changeSummary{op: count}`, `maybeCorrupt`) reduced to a [`PreviewSummary`]:
//! the planned steps, counts by resource type, and a stable [`PreviewSummary::digest`] of what
//! would run (an approval is void when it changes).
//!
//! Values are bound, never shown: each step's `oldState.inputs` and `newState.inputs` are
//! hashed (canonical JSON, keys sorted) into [`PlannedStep::inputs_hash`], and the property
//! paths of `detailedDiff` (with their diff kind, no value) are kept as
//! [`PlannedStep::changed_properties`]; both are part of the digest, so a different value at
//! execution voids an approval even when the operation and the reasons are the same. The CLI
//! prints secret values as `[secret]` unless `--show-secrets` (never passed): a changed secret
//! value is bound only through the checkout ([`crate::checkout`]) or the config it comes from.
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
    /// `detailedDiff` property paths with their kind (`taskSpec.containerSpec.image (update)`),
    /// sorted; names only, never values.
    #[serde(default)]
    pub changed_properties: Vec<String>,
    /// SHA-256 of the step's old and new inputs (canonical JSON): the values, never shown.
    #[serde(default)]
    pub inputs_hash: String,
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
    #[serde(default)]
    detailed_diff: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Deserialize)]
struct StateJson {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    inputs: serde_json::Value,
}

/// Canonical JSON: object keys sorted at every level, no whitespace.
fn canonical(v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String((*k).clone()).to_string());
                out.push(':');
                canonical(&m[*k], out);
            }
            out.push('}');
        }
        serde_json::Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn inputs_hash(old: Option<&StateJson>, new: Option<&StateJson>) -> String {
    let mut h = Sha256::new();
    h.update(b"sprocket-ops step inputs v1\0");
    for st in [old, new] {
        let mut text = String::new();
        canonical(
            st.map(|s| &s.inputs).unwrap_or(&serde_json::Value::Null),
            &mut text,
        );
        h.update(text.as_bytes());
        h.update(b"\0");
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn changed_properties(d: Option<&BTreeMap<String, serde_json::Value>>) -> Vec<String> {
    let mut props: Vec<String> = d
        .into_iter()
        .flatten()
        .map(|(path, diff)| {
            let kind = diff["kind"]
                .as_str()
                .or_else(|| diff["diffKind"].as_str())
                .unwrap_or("update");
            let path: String = path.chars().filter(|c| !c.is_control()).take(200).collect();
            format!("{path} ({kind})")
        })
        .collect();
    props.sort();
    props.dedup();
    props
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
                changed_properties: changed_properties(s.detailed_diff.as_ref()),
                inputs_hash: inputs_hash(s.old_state.as_ref(), s.new_state.as_ref()),
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
                    existing.changed_properties.extend(step.changed_properties);
                    existing.changed_properties.sort();
                    existing.changed_properties.dedup();
                    let mut h = Sha256::new();
                    h.update(existing.inputs_hash.as_bytes());
                    h.update(step.inputs_hash.as_bytes());
                    existing.inputs_hash =
                        h.finalize().iter().map(|b| format!("{b:02x}")).collect();
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
    /// reasons, changed properties, hash of the input values) of the changing steps. Same
    /// plan, same digest, whatever the step order or the diagnostics; another value, another
    /// digest.
    pub fn digest(&self) -> String {
        let mut lines: BTreeSet<String> = BTreeSet::new();
        for s in &self.steps {
            lines.insert(format!(
                "{:?}\u{0}{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}",
                s.kind,
                s.urn,
                s.replace_reasons.join(","),
                s.diff_reasons.join(","),
                s.changed_properties.join(","),
                s.inputs_hash
            ));
        }
        let mut h = Sha256::new();
        h.update(b"sprocket-ops pulumi preview v2\0");
        for l in &lines {
            h.update(l.as_bytes());
            h.update(b"\n");
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// One line per changing resource, for approvers: `update web (docker:index/service:Service):
    /// taskSpec.containerSpec.image (update)`. Property names only, never values.
    pub fn change_lines(&self) -> Vec<String> {
        self.steps
            .iter()
            .map(|s| {
                let props = if s.changed_properties.is_empty() {
                    let mut r: Vec<String> = s.diff_reasons.clone();
                    r.extend(s.replace_reasons.iter().map(|x| format!("{x} (replace)")));
                    r.join(", ")
                } else {
                    s.changed_properties.join(", ")
                };
                if props.is_empty() {
                    format!("{} {} ({})", s.op, s.name, s.resource_type)
                } else {
                    format!("{} {} ({}): {props}", s.op, s.name, s.resource_type)
                }
            })
            .collect()
    }

    /// The whole preview as a text document for approvers (attached to the request): every
    /// step with its URN, changed properties and input hash, the counts and the (redacted)
    /// diagnostics. No property value is in it.
    pub fn document(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("Pulumi preview: {}\n", self.totals().describe()));
        if self.maybe_corrupt {
            out.push_str("WARNING: the CLI reported the preview may be corrupt\n");
        }
        out.push_str("\nBy resource type:\n");
        for line in self.describe() {
            out.push_str(&format!("  {line}\n"));
        }
        out.push_str("\nSteps:\n");
        for s in &self.steps {
            out.push_str(&format!("- {} {} ({})\n", s.op, s.name, s.resource_type));
            out.push_str(&format!("    urn: {}\n", s.urn));
            if !s.replace_reasons.is_empty() {
                out.push_str(&format!(
                    "    replace reasons: {}\n",
                    s.replace_reasons.join(", ")
                ));
            }
            if !s.diff_reasons.is_empty() {
                out.push_str(&format!(
                    "    diff reasons: {}\n",
                    s.diff_reasons.join(", ")
                ));
            }
            for p in &s.changed_properties {
                out.push_str(&format!("    changed: {p}\n"));
            }
            out.push_str(&format!(
                "    input values: sha256 {} (values are not shown)\n",
                &s.inputs_hash[..s.inputs_hash.len().min(16)]
            ));
        }
        if !self.diagnostics.is_empty() {
            out.push_str("\nDiagnostics:\n");
            for d in &self.diagnostics {
                out.push_str(&format!("  {}: {}\n", d.severity, d.message));
            }
        }
        out.push_str(&format!("\nPreview digest: {}\n", self.digest()));
        out
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

    /// The attack: a value changes between the request and the execution, the operation and
    /// the reasons stay the same (replicas 2 -> 50, image tag v2 -> a rogue one). The old digest
    /// covered names only, so the approval of one value applied another.
    #[test]
    fn approval_digest_covers_property_values_not_only_names() {
        let doc = |image: &str, replicas: u64, token: &str| {
            format!(
                r#"{{"steps":[{{"op":"update","urn":"urn:pulumi:prod::platform::docker:index/service:Service::web",
                "oldState":{{"type":"docker:index/service:Service","inputs":{{"taskSpec":{{"containerSpec":{{"image":"web:v1"}}}},"mode":{{"replicated":{{"replicas":1}}}}}}}},
                "newState":{{"type":"docker:index/service:Service","inputs":{{"mode":{{"replicated":{{"replicas":{replicas}}}}},"taskSpec":{{"containerSpec":{{"image":"{image}","env":["TOKEN={token}"]}}}}}}}},
                "diffReasons":["taskSpec","mode"],
                "detailedDiff":{{"taskSpec.containerSpec.image":{{"kind":"update","inputDiff":true}},"mode.replicated.replicas":{{"kind":"update","inputDiff":true}}}}}}],
                "changeSummary":{{"update":1}}}}"#
            )
        };
        let r = Redactor::default();
        let approved = PreviewSummary::parse(&doc("web:v2", 2, "tok-aaaa-1111"), &r).unwrap();
        let same = PreviewSummary::parse(&doc("web:v2", 2, "tok-aaaa-1111"), &r).unwrap();
        assert_eq!(approved.digest(), same.digest(), "same values, same digest");
        for other in [
            doc("web:v2", 50, "tok-aaaa-1111"),
            doc("evil.example/web:v2", 2, "tok-aaaa-1111"),
            doc("web:v2", 2, "tok-bbbb-2222"),
        ] {
            let p = PreviewSummary::parse(&other, &r).unwrap();
            assert_eq!(p.steps[0].diff_reasons, approved.steps[0].diff_reasons);
            assert_ne!(
                p.digest(),
                approved.digest(),
                "another value voids: {other}"
            );
        }
        assert_eq!(
            approved.change_lines(),
            ["update web (docker:index/service:Service): mode.replicated.replicas (update), taskSpec.containerSpec.image (update)"]
        );
        let text = format!("{}{:?}", approved.document(), approved.change_lines());
        assert!(
            text.contains("changed: taskSpec.containerSpec.image (update)"),
            "{text}"
        );
        for value in ["tok-aaaa-1111", "web:v2", "web:v1"] {
            assert!(!text.contains(value), "{value} shown raw: {text}");
        }
    }
}
