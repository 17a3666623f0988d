//! The deploy driver of `sprocket-ops deploy`: the `Deployer` flow with progress lines on stderr,
//! Ctrl-C turned into `Deployer::cancel`, the report on stdout and the exit code.

use super::*;

/// `sprocket-ops deploy`: the Deployer flow with progress on stderr and the report on stdout,
/// audited as `deploy` (plus `break_glass.<action>` when an approval is skipped).
pub(super) async fn deploy_layer(
    ops: &Ops,
    layer: &str,
    image: Option<&str>,
    break_glass: Option<String>,
) -> Result<(), Exit> {
    let actor = Actor::cli_from_env();
    let started = Instant::now();
    let params = serde_json::json!({ "layer": layer, "image": image, "break_glass": break_glass });
    let req = DeployRequest {
        layer: layer.to_string(),
        image_tag: image.map(str::to_string),
        requester: actor.name.clone(),
        reason: break_glass.clone().unwrap_or_default(),
    };
    let progress = progress_printer();
    let mut cancel = CancelOnCtrlC::new(layer);
    let first = cancel
        .run(ops, ops.deployer.deploy(&req, progress.clone()))
        .await;
    let result = match first {
        Ok(DeployOutcome::NeedsApproval(plan)) => match (&break_glass, cancel.requested) {
            (_, true) => Err(DeployError::Cancelled {
                layer: layer.to_string(),
                deploy_id: String::new(),
            }),
            (None, false) => {
                let message = needs_approval_message(&plan);
                ops.record(
                    &actor,
                    "deploy",
                    &params,
                    ops_core::audit::Outcome::Denied,
                    Some(message.clone()),
                    None,
                    started,
                )
                .await;
                return Err(Exit::new(1, message));
            }
            (Some(reason), false) => {
                let action = plan
                    .approval_action
                    .clone()
                    .unwrap_or_else(|| ops_core::deploy::ACTION_DESTRUCTIVE.to_string());
                eprintln!(
                    "break glass: applying without an approval ({}), reason recorded",
                    plan.approval_reasons.join("; ")
                );
                let bg_params = serde_json::json!({
                    "layer": layer,
                    "image": image,
                    "break_glass": reason,
                    "digest": plan.digest,
                });
                // No row, no action: the break-glass row is written before the apply.
                let mut ran = None;
                let (ran_ref, cancel_ref) = (&mut ran, &mut cancel);
                let gate = ops
                    .break_glass(&actor, &action, bg_params, move || async move {
                        let r = cancel_ref
                            .run(
                                ops,
                                ops.deployer.deploy_approved(
                                    &plan.request,
                                    &plan.digest,
                                    progress.clone(),
                                ),
                            )
                            .await;
                        let audit = match &r {
                            Ok(DeployOutcome::Succeeded(_)) => Ok(()),
                            Ok(DeployOutcome::NeedsApproval(_)) => Err(OpsError {
                                summary: "the approved deploy asked for another approval".into(),
                                error_id: ops_core::ops::new_error_id(),
                            }),
                            Err(e) => Err(OpsError {
                                summary: e.to_string(),
                                error_id: ops_core::ops::new_error_id(),
                            }),
                        };
                        *ran_ref = Some(r);
                        audit
                    })
                    .await;
                match (ran, gate) {
                    (Some(result), _) => result,
                    (None, Err(e)) => return Err(Exit::new(1, e.to_string())),
                    (None, Ok(())) => {
                        return Err(Exit::new(1, "the break-glass deploy did not run"))
                    }
                }
            }
        },
        other => other,
    };
    let (outcome, detail) = match &result {
        Ok(DeployOutcome::Succeeded(_)) => (ops_core::audit::Outcome::Ok, None),
        Ok(DeployOutcome::NeedsApproval(_)) => (
            ops_core::audit::Outcome::Error,
            Some("the approved deploy asked for another approval".to_string()),
        ),
        Err(e) => (ops_core::audit::Outcome::Error, Some(e.to_string())),
    };
    ops.record(&actor, "deploy", &params, outcome, detail, None, started)
        .await;
    match result {
        Ok(DeployOutcome::Succeeded(report)) => print_stdout(&deploy_report(&report)),
        Ok(DeployOutcome::NeedsApproval(_)) => Err(Exit::new(
            1,
            "the approved deploy asked for another approval: nothing more was applied".to_string(),
        )),
        Err(DeployError::Cancelled { layer, deploy_id }) => {
            print_stdout(&format!(
                "cancelled: the deploy of {layer}{} was interrupted\n",
                if deploy_id.is_empty() {
                    String::new()
                } else {
                    format!(" (deploy {deploy_id})")
                }
            ))?;
            Err(Exit::new(
                1,
                format!("the deploy of `{layer}` was cancelled"),
            ))
        }
        Err(e) => Err(deploy_exit(e)),
    }
}

/// Cancels the running deploy through [`ops_core::deploy::Deployer::cancel`] on the first
/// SIGINT; later ones only say it is under way (pulumi finishes the step in flight).
pub(super) struct CancelOnCtrlC {
    layer: String,
    requested: bool,
    /// One listener for the whole command, so no SIGINT falls between two waits; `None` when
    /// no handler could be installed (Ctrl-C then keeps its default: terminate).
    sigint: Option<tokio::signal::unix::Signal>,
}

impl CancelOnCtrlC {
    fn new(layer: &str) -> CancelOnCtrlC {
        use tokio::signal::unix::{signal, SignalKind};
        CancelOnCtrlC {
            layer: layer.to_string(),
            requested: false,
            sigint: signal(SignalKind::interrupt()).ok(),
        }
    }

    async fn run<T>(&mut self, ops: &Ops, fut: impl std::future::Future<Output = T>) -> T {
        tokio::pin!(fut);
        let Some(mut sigint) = self.sigint.take() else {
            return fut.await;
        };
        // A Ctrl-C before the deploy registered itself is retried until it lands.
        let mut delivered = false;
        let mut retry = tokio::time::interval(std::time::Duration::from_millis(200));
        let out = loop {
            tokio::select! {
                out = &mut fut => break out,
                _ = sigint.recv() => {
                    if self.requested {
                        eprintln!("cancelling already: waiting for pulumi to finish the step in flight");
                    } else {
                        self.requested = true;
                        eprintln!("cancelling the deploy of {}: pulumi finishes the step in flight", self.layer);
                    }
                }
                _ = retry.tick(), if self.requested && !delivered => {}
            }
            if self.requested && !delivered {
                match ops.deployer.cancel(&self.layer).await {
                    Ok(true) => delivered = true,
                    Ok(false) => {}
                    Err(e) => {
                        eprintln!("cancelling failed: {e}");
                        delivered = true;
                    }
                }
            }
        };
        self.sigint = Some(sigint);
        out
    }
}

/// Refusal text of a deploy whose preview needs an approval.
pub(super) fn needs_approval_message(plan: &DeployPlan) -> String {
    format!(
        "refused: deploying `{}` needs a second engineer's approval ({}; preview: {}). Nothing was applied. Request it in Discord (/deploy {}), or if Discord is down re-run with --break-glass \"<reason>\" (audited)",
        plan.request.layer,
        plan.approval_reasons.join("; "),
        plan.preview.totals().describe(),
        plan.request.layer
    )
}

/// The exit of a failed deploy command: 64 for bad input, 69 when Docker is unreachable, 73
/// when the store is, 1 otherwise; the message with its redacted diagnostics.
pub(super) fn deploy_exit(e: DeployError) -> Exit {
    let code = match &e {
        DeployError::UnknownLayer(_)
        | DeployError::NoImageTag { .. }
        | DeployError::InvalidArgument { .. } => Exit::USAGE,
        DeployError::Swarm(SwarmError::Unreachable { .. } | SwarmError::NotAManager { .. }) => {
            Exit::UNAVAILABLE
        }
        DeployError::Store { .. } => Exit::CANTCREAT,
        _ => 1,
    };
    let mut message = e.to_string();
    for line in e.errors() {
        message.push_str(&format!("\n  error: {line}"));
    }
    if let Some(tag) = e.rollback_target() {
        message.push_str(&format!(
            "\n  the last good tag is `{tag}`: request a rollback in Discord (/rollback)"
        ));
    }
    Exit::new(code, message)
}

/// A progress callback printing what changed as plain lines on stderr.
pub(super) fn progress_printer() -> ProgressFn {
    let last: std::sync::Mutex<Option<DeployProgress>> = std::sync::Mutex::new(None);
    std::sync::Arc::new(move |p: &DeployProgress| {
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        let mut err = std::io::stderr().lock();
        for line in progress_lines(last.as_ref(), p) {
            let _ = writeln!(err, "{line}");
        }
        *last = Some(p.clone());
    })
}

pub(super) fn phase_name(phase: DeployPhase) -> &'static str {
    match phase {
        DeployPhase::Locking => "locking",
        DeployPhase::Configuring => "configuring",
        DeployPhase::Previewing => "previewing",
        DeployPhase::AwaitingApproval => "awaiting approval",
        DeployPhase::Applying => "applying",
        DeployPhase::Verifying => "verifying",
        DeployPhase::Succeeded => "succeeded",
        DeployPhase::Failed => "failed",
        DeployPhase::Cancelled => "cancelled",
    }
}
