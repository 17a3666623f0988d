//! The approval click, whichever frontend shows the buttons: [`Ops::approval_click`] resolves
//! the clicker live, loads the request, checks, decides, executes and audits, and returns a
//! [`ClickOutcome`] the frontend only renders. What must be shown while the call runs (the
//! acknowledgement of a slow check, the confirmation question, "executing" before a long run)
//! goes through the frontend's [`ClickFrontend`], called at those points. An approved run
//! that publishes progress (a layer deploy or rollback) is followed here as `/deploy` follows
//! its own: [`ClickFrontend::progress`] at most every [`PROGRESS_INTERVAL`] while it runs, never
//! with an ending phase (the final report is the outcome's, with its last progress).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::approvals::{
    ApprovalRequest, ApprovalState, ButtonKind, Decided, Decision, Executed, PersonRef, Refusal,
};
use crate::audit::{Actor, Outcome};
use crate::base::now_ms;
use crate::github::Freshness;
use crate::ops::Ops;
use crate::progress::{DeployPhase, DeployProgress, ProgressFn};

/// What a frontend shows while a click is handled.
#[async_trait]
pub trait ClickFrontend: Send + Sync {
    /// The live identity check is still running after the acknowledgement budget:
    /// acknowledge the click now.
    async fn slow(&self);
    /// Approve was clicked by someone who may decide: ask them to confirm (with the Confirm
    /// button). `Err`: the question could not be shown (the click is refused with it).
    async fn ask_confirmation(&self, req: &ApprovalRequest) -> Result<(), String>;
    /// The request is approved and about to run (which can take minutes): say so first.
    async fn executing(&self, req: &ApprovalRequest, approver: &PersonRef);
    /// The approved run's progress changed (throttled to [`PROGRESS_INTERVAL`]; never an
    /// ending phase). `elapsed`: since the run started.
    async fn progress(&self, req: &ApprovalRequest, progress: &DeployProgress, elapsed: Duration) {
        let _ = (req, progress, elapsed);
    }
}

/// The least time between two [`ClickFrontend::progress`] calls (Discord edits, as `/deploy`).
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);

/// How a click ended; its audit row is written before it is returned.
#[derive(Debug, Clone, PartialEq)]
pub enum ClickOutcome {
    /// Nothing was decided: the reason, for the clicker.
    Refused(String),
    /// Approve: the confirmation was asked.
    ConfirmationAsked,
    /// Deny: the request is denied.
    Denied {
        request: Box<ApprovalRequest>,
        by: PersonRef,
    },
    /// Confirm: the approval is recorded, more are needed.
    Recorded { have: u32, need: u32 },
    /// Confirm completed the approvals and the action ran (or did not: `result`).
    Executed {
        request: Box<ApprovalRequest>,
        result: Executed,
        /// The run's last progress, when it published any (layer deploys and rollbacks): the
        /// frontend's final report shows it.
        progress: Option<Box<DeployProgress>>,
        /// How long the run took.
        elapsed: Duration,
    },
}

impl ClickOutcome {
    /// What happened, in a line: the audit row's detail, and the clicker's answer for an
    /// execution.
    pub fn summary(&self) -> String {
        match self {
            ClickOutcome::Refused(r) => r.clone(),
            ClickOutcome::ConfirmationAsked => "asked for confirmation".into(),
            ClickOutcome::Denied { .. } => "denied".into(),
            ClickOutcome::Recorded { have, need } => format!("recorded {have} of {need}"),
            ClickOutcome::Executed { result, .. } => match result {
                Executed::Done(s) => format!("Done: {s}"),
                Executed::Failed(s) => format!("Failed: {s}"),
                Executed::Void(why) => format!("Not executed (void): {why}"),
                Executed::Unsaved(s) => format!(
                    "Done: {s}. Its result could not be saved in the database, so the request may later show as interrupted."
                ),
                Executed::NotMine => "Already executed.".to_string(),
            },
        }
    }
}

/// The audit command of a click of `kind`.
fn command(kind: ButtonKind) -> &'static str {
    match kind {
        ButtonKind::Approve => "approval.approve",
        ButtonKind::Confirm => "approval.confirm",
        ButtonKind::Deny => "approval.deny",
    }
}

/// What can be refused without knowing who clicked (no GitHub call): a decided or expired
/// request, or a click by the Discord account that made the request.
fn precheck(req: &ApprovalRequest, discord_id: u64) -> Result<(), Refusal> {
    if req.state != ApprovalState::Pending {
        return Err(Refusal::AlreadyDecided(req.state.as_str()));
    }
    if req.expires_at_ms <= now_ms() {
        return Err(Refusal::Expired);
    }
    if req.requester.discord_id == discord_id {
        return Err(Refusal::OwnRequest);
    }
    Ok(())
}

impl Ops {
    /// Handles a click of an authenticated approval button (`request`, `kind`) by Discord
    /// account `discord_id` (`actor` in the audit log). `ack_budget`: how long the live
    /// identity check may take before `front.slow()` is called.
    pub async fn approval_click(
        &self,
        actor: &Actor,
        discord_id: u64,
        request: &str,
        kind: ButtonKind,
        ack_budget: Duration,
        front: &dyn ClickFrontend,
    ) -> ClickOutcome {
        let started = Instant::now();
        let outcome = match self
            .click(discord_id, request, kind, ack_budget, front)
            .await
        {
            Ok(o) => o,
            Err(refusal) => ClickOutcome::Refused(refusal),
        };
        let result = match &outcome {
            ClickOutcome::Refused(_) => Outcome::Denied,
            _ => Outcome::Ok,
        };
        self.record(
            actor,
            command(kind),
            &serde_json::json!({ "request": request }),
            result,
            Some(outcome.summary()),
            None,
            started,
        )
        .await;
        outcome
    }

    async fn click(
        &self,
        discord_id: u64,
        id: &str,
        kind: ButtonKind,
        ack_budget: Duration,
        front: &dyn ClickFrontend,
    ) -> Result<ClickOutcome, String> {
        let req = self.approvals.get(id).await.map_err(|r| r.to_string())?;
        precheck(&req, discord_id).map_err(|r| r.to_string())?;
        // The approver's roles are checked now, against GitHub, not when the request was made
        // (a refusal is remembered briefly, so repeated clicks cost no GitHub calls).
        let may_decide = |roles: &std::collections::BTreeSet<String>| {
            req.rule.approver_roles.iter().any(|r| roles.contains(r))
        };
        let clicker = {
            let check = self
                .identity
                .resolve_for(discord_id, Freshness::Live, &may_decide);
            tokio::pin!(check);
            match tokio::time::timeout(ack_budget, &mut check).await {
                Ok(r) => r,
                Err(_) => {
                    front.slow().await;
                    check.await
                }
            }
        }
        .map_err(|e| e.to_string())?;
        match kind {
            ButtonKind::Approve => {
                self.approvals
                    .check_decider(&req, &clicker.person, &clicker.roles)
                    .map_err(|r| r.to_string())?;
                front.ask_confirmation(&req).await?;
                Ok(ClickOutcome::ConfirmationAsked)
            }
            ButtonKind::Deny => {
                self.approvals
                    .decide(id, &clicker.person, &clicker.roles, Decision::Deny)
                    .await
                    .map_err(|r| r.to_string())?;
                Ok(ClickOutcome::Denied {
                    request: Box::new(req),
                    by: clicker.person,
                })
            }
            ButtonKind::Confirm => {
                let decided = self
                    .approvals
                    .decide(id, &clicker.person, &clicker.roles, Decision::Approve)
                    .await
                    .map_err(|r: Refusal| r.to_string())?;
                match decided {
                    Decided::Recorded { have, need } => Ok(ClickOutcome::Recorded { have, need }),
                    Decided::Denied => Err("denied".into()),
                    Decided::Approved => {
                        front.executing(&req, &clicker.person).await;
                        let started = Instant::now();
                        let (result, progress) = self.execute_followed(&req, front).await;
                        Ok(ClickOutcome::Executed {
                            request: Box::new(req),
                            result: result.map_err(|r| r.to_string())?,
                            progress: progress.map(Box::new),
                            elapsed: started.elapsed(),
                        })
                    }
                }
            }
        }
    }

    /// Executes the approved `req`, handing its progress to `front` as it changes (at most
    /// every [`PROGRESS_INTERVAL`], no ending phase); returns the result and the last progress,
    /// if the run published any.
    async fn execute_followed(
        &self,
        req: &ApprovalRequest,
        front: &dyn ClickFrontend,
    ) -> (Result<Executed, Refusal>, Option<DeployProgress>) {
        let layer = req
            .params
            .get("layer")
            .and_then(|l| l.as_str())
            .unwrap_or_default();
        let (tx, mut rx) = tokio::sync::watch::channel(DeployProgress::new(layer));
        let published = Arc::new(AtomicBool::new(false));
        let sink: ProgressFn = {
            let published = Arc::clone(&published);
            Arc::new(move |p: &DeployProgress| {
                published.store(true, Ordering::SeqCst);
                let _ = tx.send(p.clone());
            })
        };
        let started = Instant::now();
        let run = self.approvals.execute_observed(&req.id, Some(sink));
        tokio::pin!(run);
        let mut last_shown: Option<Instant> = None;
        let mut dirty = false;
        let mut watching = true;
        let result = loop {
            tokio::select! {
                r = &mut run => break r,
                changed = rx.changed(), if watching => match changed {
                    Ok(()) => dirty = true,
                    Err(_) => watching = false,
                },
                _ = tokio::time::sleep(PROGRESS_INTERVAL), if dirty => {}
            }
            if dirty && last_shown.is_none_or(|t| t.elapsed() >= PROGRESS_INTERVAL) {
                let p = rx.borrow_and_update().clone();
                dirty = false;
                if !matches!(
                    p.phase,
                    DeployPhase::Succeeded
                        | DeployPhase::Failed
                        | DeployPhase::Cancelled
                        | DeployPhase::AwaitingApproval
                ) {
                    front.progress(req, &p, started.elapsed()).await;
                    last_shown = Some(Instant::now());
                }
            }
        };
        let last = published
            .load(Ordering::SeqCst)
            .then(|| rx.borrow().clone());
        (result, last)
    }
}
