//! Pulumi engine events: the one-JSON-object-a-line stream `pulumi up --event-log FILE` writes.
//!
//! The types follow `sdk/go/common/apitype/events.go` of pulumi/pulumi field for field (the
//! JSON names, `sequence`, `timestamp`, exactly one payload per event). Payloads this crate does
//! not use (policy remediation, debugging, …) are tolerated and ignored, so a newer CLI that adds
//! event kinds still parses. Notable quirk kept from upstream: `summaryEvent.PolicyPacks` is
//! spelled in PascalCase (the Go struct tag was forgotten and is now frozen). No field is
//! required: CLI versions differ in what they write (older ones omit `sequence` and
//! `summaryEvent.isPreview`), so every field has a default; `tests.rs` parses logs in the shapes
//! of an older, the current and a newer CLI.
//!
//! [`EventLogTail`] follows the file while the CLI is still writing it: it reads what was
//! appended, splits complete lines, keeps an unfinished last line for the next read, and bounds
//! memory (a line longer than the limit is skipped and reported, never buffered whole).
//! [`UpdateTracker`] folds events into progress: steps done, the resource in flight, and the
//! warnings and errors (colour codes stripped, redacted, bounded).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use crate::redact::Redactor;

/// One engine event. Exactly one payload field is set (a `CancelEvent` is an empty object).
///
/// Every field of every payload has a default (`#[serde(default)]` on each struct): CLI
/// versions differ in what they write (an older one has no `sequence` and no
/// `summaryEvent.isPreview`, a newer one adds fields), and a missing field must never cost the
/// event. A missing `sequence` or `timestamp` reads as 0.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(default)]
pub struct EngineEvent {
    /// Unique and increasing within one operation.
    pub sequence: i64,
    /// Unix seconds.
    pub timestamp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_event: Option<CancelEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_event: Option<StdoutEngineEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostic_event: Option<DiagnosticEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prelude_event: Option<PreludeEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary_event: Option<SummaryEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_pre_event: Option<ResourcePreEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub res_outputs_event: Option<ResOutputsEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub res_op_failed_event: Option<ResOpFailedEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_event: Option<PolicyEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_event: Option<ProgressEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_event: Option<ErrorEvent>,
}

/// The user cancelled, or the operation completed: the last event of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CancelEvent {}

/// A generic message (for example a warning of the CLI itself).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StdoutEngineEvent {
    pub message: String,
    #[serde(default)]
    pub color: String,
}

/// A diagnostic: an error of a provider, a warning, program output on stderr.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(default)]
pub struct DiagnosticEvent {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub urn: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    pub message: String,
    #[serde(default)]
    pub color: String,
    /// `info`, `info#err`, `warning`, `error` (and `debug`).
    pub severity: String,
    #[serde(rename = "streamID", default, skip_serializing_if = "is_zero")]
    pub stream_id: i64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ephemeral: bool,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// A policy violation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(default)]
pub struct PolicyEvent {
    #[serde(default)]
    pub resource_urn: String,
    pub message: String,
    #[serde(default)]
    pub color: String,
    #[serde(default)]
    pub policy_name: String,
    #[serde(default)]
    pub policy_pack_name: String,
    #[serde(default)]
    pub policy_pack_version: String,
    #[serde(default)]
    pub policy_pack_version_tag: String,
    /// `warning`, `mandatory`, `remediate` or `none`.
    #[serde(default)]
    pub enforcement_level: String,
}

/// The start of an update: the configuration (secrets blinded).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PreludeEvent {
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// The end of an update: counts by operation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(default)]
pub struct SummaryEvent {
    pub maybe_corrupt: bool,
    pub duration_seconds: i64,
    /// Operation (`same`, `create`, `update`, `delete`, `replace`, …) -> count.
    #[serde(default)]
    pub resource_changes: BTreeMap<String, i64>,
    /// Upstream's JSON name really is PascalCase.
    #[serde(rename = "PolicyPacks", default)]
    pub policy_packs: BTreeMap<String, String>,
    pub is_preview: bool,
}

/// An internal engine error (not a user error: those are diagnostics).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorEvent {
    pub error: String,
}

/// A long-running engine process (plugin download, …).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ProgressEvent {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub message: String,
    /// Upstream names the field `Completed` in Go and `received` in JSON.
    #[serde(default)]
    pub received: i64,
    #[serde(default)]
    pub total: i64,
    #[serde(default)]
    pub done: bool,
}

/// The kind of a property difference.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(default)]
pub struct PropertyDiff {
    /// `add`, `add-replace`, `delete`, `delete-replace`, `update`, `update-replace`.
    pub diff_kind: String,
    #[serde(default)]
    pub input_diff: bool,
}

/// A step of the engine: what happens to one resource.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(default)]
pub struct StepEventMetadata {
    /// `same`, `create`, `update`, `delete`, `replace`, `create-replacement`, `delete-replaced`,
    /// `read`, `refresh`, `import`, …
    pub op: String,
    pub urn: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub old: Option<StepEventStateMetadata>,
    #[serde(default)]
    pub new: Option<StepEventStateMetadata>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diffs: Vec<String>,
    /// Upstream keeps `null` and `{}` apart, so this is not skipped when empty.
    #[serde(default)]
    pub detailed_diff: Option<BTreeMap<String, PropertyDiff>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub logical: bool,
    #[serde(default)]
    pub provider: String,
}

/// The state of a resource before or after a step.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(default)]
pub struct StepEventStateMetadata {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub urn: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub custom: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete: bool,
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub parent: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protect: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub taint: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retain_on_delete: bool,
    /// Inputs as the program gave them (secrets filtered by the engine). Never shown.
    #[serde(default)]
    pub inputs: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub outputs: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub provider: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub init_errors: Vec<String>,
}

/// Before a resource is changed.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcePreEvent {
    pub metadata: StepEventMetadata,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub planning: bool,
}

/// A resource is done.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ResOutputsEvent {
    pub metadata: StepEventMetadata,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub planning: bool,
}

/// A resource operation failed (a diagnostic with the cause usually comes first).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ResOpFailedEvent {
    pub metadata: StepEventMetadata,
    pub status: i64,
    pub steps: i64,
}

/// The payload of an event, borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EventKind<'a> {
    Cancel,
    Stdout(&'a StdoutEngineEvent),
    Diagnostic(&'a DiagnosticEvent),
    Prelude(&'a PreludeEvent),
    Summary(&'a SummaryEvent),
    ResourcePre(&'a ResourcePreEvent),
    ResOutputs(&'a ResOutputsEvent),
    ResOpFailed(&'a ResOpFailedEvent),
    Policy(&'a PolicyEvent),
    Progress(&'a ProgressEvent),
    Error(&'a ErrorEvent),
    /// A payload this crate does not model.
    Other,
}

impl EngineEvent {
    pub fn kind(&self) -> EventKind<'_> {
        if self.cancel_event.is_some() {
            EventKind::Cancel
        } else if let Some(e) = &self.stdout_event {
            EventKind::Stdout(e)
        } else if let Some(e) = &self.diagnostic_event {
            EventKind::Diagnostic(e)
        } else if let Some(e) = &self.prelude_event {
            EventKind::Prelude(e)
        } else if let Some(e) = &self.summary_event {
            EventKind::Summary(e)
        } else if let Some(e) = &self.resource_pre_event {
            EventKind::ResourcePre(e)
        } else if let Some(e) = &self.res_outputs_event {
            EventKind::ResOutputs(e)
        } else if let Some(e) = &self.res_op_failed_event {
            EventKind::ResOpFailed(e)
        } else if let Some(e) = &self.policy_event {
            EventKind::Policy(e)
        } else if let Some(e) = &self.progress_event {
            EventKind::Progress(e)
        } else if let Some(e) = &self.error_event {
            EventKind::Error(e)
        } else {
            EventKind::Other
        }
    }
}

/// Why a line is not an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line} of the event log is not an engine event: {reason}")]
pub struct EventParseError {
    pub line: u64,
    pub reason: String,
}

/// Parses one line of an event log.
pub fn parse_event_line(line: &str, line_no: u64) -> Result<EngineEvent, EventParseError> {
    serde_json::from_str(line.trim()).map_err(|e| EventParseError {
        line: line_no,
        reason: e.to_string(),
    })
}

/// The resource name of a URN (`urn:pulumi:prod::platform::docker:index/service:Service::web`
/// -> `web`); the input when it is not a URN.
pub fn urn_name(urn: &str) -> &str {
    if !urn.starts_with("urn:pulumi:") {
        return urn;
    }
    urn.splitn(4, "::").nth(3).unwrap_or(urn)
}

/// The resource type of a URN (the last of the `$`-separated parent types).
pub fn urn_type(urn: &str) -> &str {
    urn.split("::")
        .nth(2)
        .and_then(|t| t.rsplit('$').next())
        .unwrap_or("")
}

/// Removes Pulumi colour tags (`<{%fg 1%}>`, `<{%reset%}>`) and ANSI escape sequences.
pub fn strip_color(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("<{%") {
            if let Some(end) = after.find("%}>") {
                rest = &after[end + 3..];
                continue;
            }
        }
        if let Some(after) = rest.strip_prefix('\u{1b}') {
            // CSI: ESC [ parameters final-byte
            if let Some(csi) = after.strip_prefix('[') {
                let end = csi
                    .char_indices()
                    .find(|(_, c)| ('@'..='~').contains(c))
                    .map(|(i, c)| i + c.len_utf8())
                    .unwrap_or(csi.len());
                rest = &csi[end..];
            } else {
                rest = after;
            }
            continue;
        }
        let c = rest.chars().next().expect("non-empty");
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// One item read from an event log.
#[derive(Debug, Clone, PartialEq)]
pub enum TailItem {
    Event(Box<EngineEvent>),
    /// A complete line that is not an event (logged, then ignored).
    Malformed(EventParseError),
    /// A line longer than the limit: skipped without being buffered.
    Oversized {
        line: u64,
        bytes: usize,
    },
}

/// Follows an event log while it is written. Memory is bounded by `max_line` plus one read
/// chunk, whatever the file's size.
pub struct EventLogTail {
    path: PathBuf,
    file: Option<tokio::fs::File>,
    partial: Vec<u8>,
    /// Inside an oversized line: bytes dropped so far.
    discarding: Option<usize>,
    max_line: usize,
    line_no: u64,
}

/// Bytes read per call to the file.
const CHUNK: usize = 64 * 1024;
/// The default longest line kept (an event with large inputs/outputs is still far below).
pub const DEFAULT_MAX_LINE: usize = 4 * 1024 * 1024;

impl EventLogTail {
    pub fn new(path: impl Into<PathBuf>, max_line: usize) -> EventLogTail {
        EventLogTail {
            path: path.into(),
            file: None,
            partial: Vec::new(),
            discarding: None,
            max_line: max_line.max(1),
            line_no: 0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Everything appended since the last call, as items. Nothing while the file does not
    /// exist yet. An unfinished last line stays buffered.
    pub async fn read_available(&mut self) -> std::io::Result<Vec<TailItem>> {
        if self.file.is_none() {
            match tokio::fs::File::open(&self.path).await {
                Ok(f) => self.file = Some(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(e),
            }
        }
        let mut items = Vec::new();
        let mut chunk = vec![0u8; CHUNK];
        loop {
            let file = self.file.as_mut().expect("opened above");
            let n = file.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            self.push_bytes(&chunk[..n], &mut items);
        }
        Ok(items)
    }

    /// Reads the rest and parses a last line that has no newline (the writer is gone).
    pub async fn finish(&mut self) -> std::io::Result<Vec<TailItem>> {
        let mut items = self.read_available().await?;
        if let Some(bytes) = self.discarding.take() {
            self.line_no += 1;
            items.push(TailItem::Oversized {
                line: self.line_no,
                bytes,
            });
        } else if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.complete_line(&line, &mut items);
        }
        Ok(items)
    }

    /// Feeds bytes (from the file, or from a test).
    fn push_bytes(&mut self, mut bytes: &[u8], items: &mut Vec<TailItem>) {
        while !bytes.is_empty() {
            let newline = bytes.iter().position(|b| *b == b'\n');
            let (piece, rest, ends) = match newline {
                Some(i) => (&bytes[..i], &bytes[i + 1..], true),
                None => (bytes, &bytes[bytes.len()..], false),
            };
            bytes = rest;
            if let Some(dropped) = self.discarding.as_mut() {
                *dropped += piece.len();
                if ends {
                    let dropped = *dropped;
                    self.discarding = None;
                    self.line_no += 1;
                    items.push(TailItem::Oversized {
                        line: self.line_no,
                        bytes: dropped,
                    });
                }
                continue;
            }
            if self.partial.len() + piece.len() > self.max_line {
                let dropped = self.partial.len() + piece.len();
                self.partial.clear();
                if ends {
                    self.line_no += 1;
                    items.push(TailItem::Oversized {
                        line: self.line_no,
                        bytes: dropped,
                    });
                } else {
                    self.discarding = Some(dropped);
                }
                continue;
            }
            self.partial.extend_from_slice(piece);
            if ends {
                let line = std::mem::take(&mut self.partial);
                self.complete_line(&line, items);
            }
        }
    }

    fn complete_line(&mut self, line: &[u8], items: &mut Vec<TailItem>) {
        self.line_no += 1;
        let text = String::from_utf8_lossy(line);
        if text.trim().is_empty() {
            return;
        }
        items.push(match parse_event_line(&text, self.line_no) {
            Ok(e) => TailItem::Event(Box::new(e)),
            Err(e) => TailItem::Malformed(e),
        });
    }
}

/// Longest warning or error kept, in characters.
pub const MAX_MESSAGE_CHARS: usize = 400;
/// Warnings (and errors) kept: the most recent ones.
pub const MAX_MESSAGES: usize = 20;

/// Progress of an update, folded from its events.
#[derive(Debug, Clone, Default)]
pub struct UpdateTracker {
    /// Resources with a finished (or failed) non-`same` step.
    done: BTreeSet<String>,
    /// URN -> name of steps started and not finished, in start order.
    in_flight: Vec<(String, String)>,
    warnings: VecDeque<String>,
    errors: VecDeque<String>,
    failed: Vec<String>,
    summary: Option<SummaryEvent>,
    cancelled: bool,
    events: u64,
    last_sequence: Option<i64>,
}

impl UpdateTracker {
    pub fn new() -> UpdateTracker {
        UpdateTracker::default()
    }

    /// Folds one event in; `true` when what a person would see changed.
    pub fn observe(&mut self, ev: &EngineEvent, redactor: &Redactor) -> bool {
        self.events += 1;
        self.last_sequence = Some(ev.sequence);
        match ev.kind() {
            EventKind::ResourcePre(p) if !p.planning && counts(&p.metadata.op) => {
                let urn = p.metadata.urn.clone();
                if !self.in_flight.iter().any(|(u, _)| *u == urn) {
                    let name = urn_name(&urn).to_string();
                    self.in_flight.push((urn, name));
                }
                true
            }
            EventKind::ResOutputs(p) if !p.planning && counts(&p.metadata.op) => {
                self.finish_step(&p.metadata.urn);
                true
            }
            EventKind::ResOpFailed(p) => {
                self.finish_step(&p.metadata.urn);
                self.failed.push(urn_name(&p.metadata.urn).to_string());
                true
            }
            EventKind::Diagnostic(d) if !d.ephemeral => {
                let bucket = match d.severity.as_str() {
                    "warning" => &mut self.warnings,
                    "error" => &mut self.errors,
                    _ => return false,
                };
                let text = diagnostic_text(d, redactor);
                if text.is_empty() {
                    return false;
                }
                if bucket.len() == MAX_MESSAGES {
                    bucket.pop_front();
                }
                bucket.push_back(text);
                true
            }
            EventKind::Policy(p) => {
                let text = bounded(&redactor.redact(&strip_color(&p.message)));
                let bucket = if p.enforcement_level == "mandatory" {
                    &mut self.errors
                } else {
                    &mut self.warnings
                };
                if bucket.len() == MAX_MESSAGES {
                    bucket.pop_front();
                }
                bucket.push_back(format!("policy {}: {text}", p.policy_name));
                true
            }
            EventKind::Error(e) => {
                if self.errors.len() == MAX_MESSAGES {
                    self.errors.pop_front();
                }
                self.errors
                    .push_back(bounded(&redactor.redact(&strip_color(&e.error))));
                true
            }
            EventKind::Summary(s) => {
                self.summary = Some(s.clone());
                true
            }
            EventKind::Cancel => {
                self.cancelled = true;
                false
            }
            _ => false,
        }
    }

    fn finish_step(&mut self, urn: &str) {
        self.in_flight.retain(|(u, _)| u != urn);
        self.done.insert(urn.to_string());
    }

    /// Resources whose step finished (or failed).
    pub fn steps_done(&self) -> u32 {
        self.done.len() as u32
    }
    /// The resource being changed now (the most recently started one still in flight).
    pub fn current(&self) -> Option<&str> {
        self.in_flight.last().map(|(_, n)| n.as_str())
    }
    /// Redacted warnings, oldest first (at most [`MAX_MESSAGES`]).
    pub fn warnings(&self) -> Vec<String> {
        self.warnings.iter().cloned().collect()
    }
    /// Redacted errors, oldest first (at most [`MAX_MESSAGES`]).
    pub fn errors(&self) -> Vec<String> {
        self.errors.iter().cloned().collect()
    }
    /// Names of resources whose operation failed.
    pub fn failed_resources(&self) -> &[String] {
        &self.failed
    }
    pub fn summary(&self) -> Option<&SummaryEvent> {
        self.summary.as_ref()
    }
    /// A `cancelEvent` was seen: the stream is complete.
    pub fn ended(&self) -> bool {
        self.cancelled
    }
    pub fn events_seen(&self) -> u64 {
        self.events
    }
    pub fn last_sequence(&self) -> Option<i64> {
        self.last_sequence
    }
}

/// Steps that change something (`same` and reads do not count as work).
fn counts(op: &str) -> bool {
    !matches!(op, "same" | "read" | "read-replacement" | "refresh")
}

/// `name: message`, colour-free, one line, redacted, bounded.
pub fn diagnostic_text(d: &DiagnosticEvent, redactor: &Redactor) -> String {
    let msg = strip_color(&d.message);
    let msg = msg.split_whitespace().collect::<Vec<_>>().join(" ");
    if msg.is_empty() {
        return String::new();
    }
    let text = if d.urn.is_empty() {
        msg
    } else {
        format!("{}: {msg}", urn_name(&d.urn))
    };
    bounded(&redactor.redact(&text))
}

fn bounded(s: &str) -> String {
    if s.chars().count() <= MAX_MESSAGE_CHARS {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(MAX_MESSAGE_CHARS - 1).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests;
