//! Pulumi, as the layer deploys use it: the [`PulumiApi`] trait (so tests swap in fakes) and the
//! real adapter [`runner::PulumiRunner`], which runs the `pulumi` CLI with argv only, never a
//! shell. The subset used, and its contract:
//!
//! - `pulumi config get <key> --stack <s>`: the value and a newline; a missing key is exit code
//!   non-zero with `error: configuration key '<k>' not found for stack '<s>'`.
//! - `pulumi config set <key> <value> --stack <s>` (a value starting with `-` goes after `--`);
//!   stored in `Pulumi.<s>.yaml` under `config:` as `<project>:<key>`.
//! - `pulumi preview --json --stack <s> --non-interactive`: a `PreviewDigest` document on stdout
//!   ([`preview`]).
//! - `pulumi up --yes --skip-preview --non-interactive --stack <s> --event-log <file>`: progress
//!   text on stdout and engine events, one JSON object a line, in the file ([`events`]).
//! - Exit code 0 is success, anything else a failure; a stack locked by another update says
//!   `the stack is currently locked by N lock(s)` (self-managed backends) or `[409] Conflict:
//!   Another update is currently in progress` (Pulumi Cloud). A graceful interrupt is SIGINT to
//!   the process group (what Ctrl-C does); `pulumi cancel` is not used.
//!
//! Everything the CLI prints may carry secrets: it passes through the [`Redactor`] before it
//! is shown or logged, and only redacted text is kept in errors.
//!
//! [`Redactor`]: crate::redact::Redactor

pub mod events;
pub mod preview;
pub mod runner;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::LayerConfig;

pub use events::{EngineEvent, EventKind, SummaryEvent, UpdateTracker};
pub use preview::{OpCounts, PlannedStep, PreviewSummary, StepKind};
pub use runner::PulumiRunner;

/// The stack of one layer, from its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackRef {
    /// The layer name (one pulumi process per layer at a time).
    pub layer: String,
    /// The Pulumi project directory: the process's working directory.
    pub directory: PathBuf,
    pub stack: String,
    /// Longest run of `preview` and `up`; then the process is interrupted.
    pub timeout: Duration,
}

impl StackRef {
    pub fn from_layer(layer: &str, cfg: &LayerConfig) -> StackRef {
        StackRef {
            layer: layer.to_string(),
            directory: cfg.directory.clone(),
            stack: cfg.stack.clone(),
            timeout: Duration::from_secs(cfg.timeout_secs.max(1)),
        }
    }
}

/// Receives every engine event of an update as it is read from the event log.
pub type EventSink = Arc<dyn Fn(&EngineEvent) + Send + Sync>;

/// How a successful `pulumi up` went.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpOutcome {
    /// The engine's summary event (counts by operation, duration), when one was written.
    pub summary: Option<SummaryEvent>,
    /// Resources whose step finished.
    pub steps_done: u32,
    /// Redacted warnings.
    pub warnings: Vec<String>,
    /// Engine events read.
    pub events: u64,
    pub duration: Duration,
}

/// Why a Pulumi operation failed. `Display` is safe to show; [`PulumiError::errors`] are the
/// redacted diagnostics (showable); [`PulumiError::detail`] is redacted output for the log.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PulumiError {
    #[error("refused {what} {shown}: {reason}")]
    InvalidArgument {
        what: &'static str,
        /// The argument, escaped and shortened.
        shown: String,
        reason: &'static str,
    },
    #[error("the Pulumi CLI could not be started")]
    Spawn { detail: String },
    #[error("the Pulumi credentials are not available: {0}")]
    Credentials(String),
    #[error("another `pulumi` command is already running for layer `{layer}`")]
    Busy { layer: String },
    #[error("stack `{stack}` is locked by another update")]
    StackLocked { stack: String, detail: String },
    #[error("`pulumi {command}` failed ({})", exit_text(.code))]
    Failed {
        command: &'static str,
        code: Option<i32>,
        errors: Vec<String>,
        detail: String,
    },
    #[error("`pulumi {command}` ran longer than {secs} s and was interrupted")]
    Timeout {
        command: &'static str,
        secs: u64,
        errors: Vec<String>,
        detail: String,
    },
    #[error("`pulumi {command}` was cancelled")]
    Cancelled {
        command: &'static str,
        errors: Vec<String>,
        detail: String,
    },
    #[error("the output of `pulumi {command}` could not be read")]
    BadOutput {
        command: &'static str,
        detail: String,
    },
}

fn exit_text(code: &Option<i32>) -> String {
    match code {
        Some(c) => format!("exit code {c}"),
        None => "killed by a signal".to_string(),
    }
}

impl PulumiError {
    /// Redacted diagnostics of the failed run (errors first reported by the engine).
    pub fn errors(&self) -> &[String] {
        match self {
            PulumiError::Failed { errors, .. }
            | PulumiError::Timeout { errors, .. }
            | PulumiError::Cancelled { errors, .. } => errors,
            _ => &[],
        }
    }

    /// Redacted output for the log line.
    pub fn detail(&self) -> &str {
        match self {
            PulumiError::Spawn { detail }
            | PulumiError::StackLocked { detail, .. }
            | PulumiError::Failed { detail, .. }
            | PulumiError::Timeout { detail, .. }
            | PulumiError::Cancelled { detail, .. }
            | PulumiError::BadOutput { detail, .. } => detail,
            _ => "",
        }
    }
}

/// The Pulumi operations layer deploys need. Object safe (`Arc<dyn PulumiApi>`).
#[async_trait]
pub trait PulumiApi: Send + Sync {
    /// A stack config value; `None` when the key is not set.
    async fn config_get(&self, stack: &StackRef, key: &str) -> Result<Option<String>, PulumiError>;
    /// Sets a (plain-text) stack config value.
    async fn config_set(&self, stack: &StackRef, key: &str, value: &str)
        -> Result<(), PulumiError>;
    /// What an update would do.
    async fn preview(&self, stack: &StackRef) -> Result<PreviewSummary, PulumiError>;
    /// Runs the update; every engine event goes to `sink` as it is written.
    async fn up(&self, stack: &StackRef, sink: EventSink) -> Result<UpOutcome, PulumiError>;
    /// Interrupts the pulumi process running for `layer` gracefully (SIGINT, as Ctrl-C does);
    /// `false` when none runs.
    async fn cancel(&self, layer: &str) -> Result<bool, PulumiError>;
}
