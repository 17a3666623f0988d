//! Two-person approvals for destructive actions. A request is persisted with the action, its
//! exact parameters and a digest of what will run; approvers are checked at the click; state
//! moves only by conditional store updates, so concurrent or replayed clicks execute at most
//! once. Button ids carry the request id and a MAC, so forged or altered ids are refused.
//!
//! The approval is bound to what runs: [`ActionExecutor::bind`] returns, besides the digest,
//! the facts execution must use exactly (a service's spec version: Docker refuses a stale one)
//! and what approvers are shown (the spec diff, the changed resources, a redacted preview to
//! attach). Execution gets those facts back ([`ActionExecutor::execute_bound`]); a change in
//! between ends the request `void` with the reason, never applied. A request can end only in
//! a state that says what happened: a missing executor fails it; an action that ran but whose
//! result could not be saved is reported as such ([`Executed::Unsaved`]); a request a crash
//! left `approved` or `executing` is failed at start-up with a message naming the case.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::base::{now_ms, OpsError, StoreError};
use crate::custom_id::{ApprovalButton, CustomId, Malformed};
use crate::permissions::{ApprovalRule, Permissions};

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalState {
    Pending,
    Approved,
    Executing,
    Done,
    Failed,
    Denied,
    Expired,
    /// What would run changed after the approval: a new request is needed.
    Void,
}

impl ApprovalState {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Executing => "executing",
            ApprovalState::Done => "done",
            ApprovalState::Failed => "failed",
            ApprovalState::Denied => "denied",
            ApprovalState::Expired => "expired",
            ApprovalState::Void => "void",
        }
    }

    pub fn parse(s: &str) -> Option<ApprovalState> {
        Some(match s {
            "pending" => ApprovalState::Pending,
            "approved" => ApprovalState::Approved,
            "executing" => ApprovalState::Executing,
            "done" => ApprovalState::Done,
            "failed" => ApprovalState::Failed,
            "denied" => ApprovalState::Denied,
            "expired" => ApprovalState::Expired,
            "void" => ApprovalState::Void,
            _ => return None,
        })
    }
}

/// A person as the approval rules see them: one GitHub account, whatever Discord account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonRef {
    pub github_id: u64,
    pub login: String,
    pub discord_id: u64,
}

/// A persisted request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    pub id: String,
    pub action: String,
    pub params: serde_json::Value,
    pub digest: String,
    /// What will run, for people ("scale prod-web to 0 replicas").
    pub summary: String,
    pub requester: PersonRef,
    pub rule: ApprovalRule,
    pub state: ApprovalState,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub channel_id: Option<u64>,
    pub message_id: Option<u64>,
    pub result: Option<String>,
    /// What execution must use exactly (from [`ActionExecutor::bind`]; `null` when nothing).
    #[serde(default)]
    pub bound: serde_json::Value,
    /// What will change, one safe line each, for approvers (values masked or hashed).
    #[serde(default)]
    pub changes: Vec<String>,
    /// A redacted document for approvers (the full preview), attached to the message as `.txt`.
    #[serde(default)]
    pub attachment: Option<String>,
}

/// What a request binds, from [`ActionExecutor::bind`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Binding {
    /// Compared again at execution: a different digest voids the approval.
    pub digest: String,
    /// Facts execution must use exactly (stored with the request, handed to
    /// [`ActionExecutor::execute_bound`]).
    pub bound: serde_json::Value,
    /// What will change, one safe line each (values masked or hashed, never raw).
    pub changes: Vec<String>,
    /// A redacted document for approvers (attached to the approval message as a `.txt` file).
    pub attachment: Option<String>,
}

impl Binding {
    /// A binding by digest only (executors without a version to pin).
    pub fn digest_only(digest: String) -> Binding {
        Binding {
            digest,
            ..Binding::default()
        }
    }
}

/// Why a bound execution did not run.
#[derive(Debug, thiserror::Error)]
pub enum ExecFailure {
    /// What was approved is no longer what would run (safe text: the reason). Nothing ran.
    #[error("{0}")]
    Void(String),
    #[error(transparent)]
    Failed(#[from] OpsError),
}

/// One approver's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Approve,
    Deny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Deny => "deny",
        }
    }
}

/// Where approval requests and their votes live (implemented by `store`).
#[async_trait::async_trait]
pub trait ApprovalStore: Send + Sync {
    async fn create_approval(&self, req: &ApprovalRequest) -> Result<(), StoreError>;
    async fn get_approval(&self, id: &str) -> Result<Option<ApprovalRequest>, StoreError>;
    async fn set_approval_message(
        &self,
        id: &str,
        channel_id: u64,
        message_id: u64,
    ) -> Result<(), StoreError>;
    /// Records a vote; `false` when this person already voted on the request.
    async fn add_vote(
        &self,
        id: &str,
        voter: &PersonRef,
        decision: Decision,
        at_ms: i64,
    ) -> Result<bool, StoreError>;
    async fn count_votes(&self, id: &str, decision: Decision) -> Result<u32, StoreError>;
    /// (login, decision) in the order they were cast.
    async fn list_votes(&self, id: &str) -> Result<Vec<(String, Decision)>, StoreError>;
    /// Moves `id` from `from` to `to` atomically; `false` if it was not in `from` (someone else
    /// moved it first). A move out of `pending` also requires the request not to have expired.
    async fn transition_approval(
        &self,
        id: &str,
        from: ApprovalState,
        to: ApprovalState,
        now_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Ends an `executing` request with its result.
    async fn finish_approval(
        &self,
        id: &str,
        to: ApprovalState,
        now_ms: i64,
        result: &str,
    ) -> Result<(), StoreError>;
    /// Expires every overdue pending request and returns those it expired.
    async fn expire_approvals(&self, now_ms: i64) -> Result<Vec<ApprovalRequest>, StoreError>;
    /// Marks requests a crash left `executing` (result `executing`) or `approved` (result
    /// `approved`) as failed and returns them.
    async fn fail_interrupted_approvals(
        &self,
        now_ms: i64,
        executing: &str,
        approved: &str,
    ) -> Result<Vec<ApprovalRequest>, StoreError>;
}

/// What an action looks like to the approval engine. Executors live with their subsystems
/// (Swarm, Pulumi, Vault); tests use counting fakes.
#[async_trait]
pub trait ActionExecutor: Send + Sync {
    /// A digest of what would run now (for example the service's spec version). If it differs
    /// between request and execution, the approval is void.
    async fn digest(&self, params: &serde_json::Value) -> Result<String, OpsError>;
    /// Runs the action; the summary is safe to show.
    async fn execute(&self, params: &serde_json::Value) -> Result<String, OpsError>;
    /// Runs an approved request; `approvers` are the GitHub logins that approved it (an
    /// executor that records who approved, like layer deploys, overrides this).
    async fn execute_approved(
        &self,
        params: &serde_json::Value,
        approvers: &[String],
    ) -> Result<String, OpsError> {
        let _ = approvers;
        self.execute(params).await
    }
    /// What the request binds: the digest, facts to pin, what approvers see. The default binds
    /// the digest only.
    async fn bind(&self, params: &serde_json::Value) -> Result<Binding, OpsError> {
        Ok(Binding::digest_only(self.digest(params).await?))
    }
    /// Runs an approved request with the facts [`ActionExecutor::bind`] pinned (`bound`). An
    /// executor that pins something overrides this and answers [`ExecFailure::Void`] when the
    /// pinned facts no longer hold (nothing applied).
    async fn execute_bound(
        &self,
        params: &serde_json::Value,
        bound: &serde_json::Value,
        approvers: &[String],
    ) -> Result<String, ExecFailure> {
        let _ = bound;
        Ok(self.execute_approved(params, approvers).await?)
    }
    /// [`ActionExecutor::execute_bound`], publishing live progress through `progress` while it
    /// runs (layer deploys do, so the approval message and the requester follow an approved
    /// deploy as they follow `/deploy`); the default has none to publish.
    async fn execute_observed(
        &self,
        params: &serde_json::Value,
        bound: &serde_json::Value,
        approvers: &[String],
        progress: crate::progress::ProgressFn,
    ) -> Result<String, ExecFailure> {
        let _ = progress;
        self.execute_bound(params, bound, approvers).await
    }
}

/// Why a click or request was refused; the text is safe to show to the person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this button is not valid (forged or altered)")]
    BadButton,
    #[error("unknown approval request")]
    Unknown,
    #[error("already decided: the request is {0}")]
    AlreadyDecided(&'static str),
    #[error("the request expired")]
    Expired,
    #[error("you cannot approve or deny your own request")]
    OwnRequest,
    #[error("you already approved this request")]
    AlreadyVoted,
    #[error("your roles do not allow approving `{0}`")]
    NotAnApprover(String),
    #[error("no approval rule for `{0}`")]
    NoRule(String),
    #[error("nobody other than you could approve `{0}`: refused")]
    NoEligibleApprover(String),
    #[error("the approvals store is unavailable, so destructive actions are refused")]
    Store,
    #[error("{0}")]
    Other(String),
}

/// The refusal for a failed store call. The store's error is not shown (the refusal says the
/// store is unavailable), so it is logged here, where its detail is dropped; a named function,
/// not a `From`, so no `?` logs behind the reader's back.
fn store_refusal(e: StoreError) -> Refusal {
    tracing::error!(error = %e, "approval store error");
    Refusal::Store
}

/// The result of a click that was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    /// More approvals are needed.
    Recorded {
        have: u32,
        need: u32,
    },
    /// This click completed the approvals: the caller executes.
    Approved,
    Denied,
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Executed {
    Done(String),
    Failed(String),
    /// What would run changed since the request (the reason); nothing was applied.
    Void(String),
    /// The action ran (its summary) but its end could not be saved: the request stays
    /// `executing` in the store until start-up recovery marks it.
    Unsaved(String),
    /// Someone else is executing or executed it.
    NotMine,
}

pub use crate::custom_id::ButtonKind;

/// The approval engine.
pub struct Approvals {
    store: Arc<dyn ApprovalStore>,
    perms: Arc<Permissions>,
    mac_key: Vec<u8>,
    executors: HashMap<String, Arc<dyn ActionExecutor>>,
}

type HmacSha256 = Hmac<Sha256>;

/// How much of the HMAC a button id carries.
const MAC_BYTES: usize = 12;

/// Lower-case hex (as [`Approvals::custom_id`] writes it) to bytes; `None` for anything else.
fn unhex(s: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| match p {
            [hi, lo] => Some(digit(*hi)? << 4 | digit(*lo)?),
            _ => None,
        })
        .collect()
}

impl Approvals {
    /// `mac_secret`: a server secret (the bot derives it from its Discord token).
    pub fn new(
        store: Arc<dyn ApprovalStore>,
        perms: Arc<Permissions>,
        mac_secret: &[u8],
    ) -> Approvals {
        let mut h = Sha256::new();
        h.update(b"sprocket-ops approval buttons v1\0");
        h.update(mac_secret);
        Approvals {
            store,
            perms,
            mac_key: h.finalize().to_vec(),
            executors: HashMap::new(),
        }
    }

    pub fn register(&mut self, action: &str, executor: Arc<dyn ActionExecutor>) {
        self.executors.insert(action.to_string(), executor);
    }

    pub fn permissions(&self) -> &Permissions {
        &self.perms
    }

    /// The MAC of button `kind` of request `id`, keyed and fed, not yet finalised.
    fn keyed(&self, id: &str, kind: ButtonKind) -> HmacSha256 {
        let mut m = HmacSha256::new_from_slice(&self.mac_key).expect("HMAC takes any key length");
        m.update(format!("{id}:{}", kind.code()).as_bytes());
        m
    }

    /// The id's MAC: the first 12 bytes of the HMAC, in hex.
    fn mac(&self, id: &str, kind: ButtonKind) -> String {
        let tag = self.keyed(id, kind).finalize().into_bytes();
        tag[..MAC_BYTES]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// `apr:<id>:<kind>:<mac>`, at most 100 characters.
    pub fn custom_id(&self, id: &str, kind: ButtonKind) -> String {
        CustomId::Approval(ApprovalButton {
            request: id.to_string(),
            kind,
            mac: self.mac(id, kind),
        })
        .to_string()
    }

    /// The request and kind of an approval button whose MAC is ours (checked in constant time
    /// by `hmac`); [`Refusal::BadButton`] otherwise.
    pub fn authenticate(&self, button: ApprovalButton) -> Result<(String, ButtonKind), Refusal> {
        let tag = unhex(&button.mac).filter(|t| t.len() == MAC_BYTES);
        match tag {
            Some(tag)
                if self
                    .keyed(&button.request, button.kind)
                    .verify_truncated_left(&tag)
                    .is_ok() =>
            {
                Ok((button.request, button.kind))
            }
            _ => Err(Refusal::BadButton),
        }
    }

    /// Parses and authenticates a button id. `None` for ids that are not approval buttons.
    pub fn parse_custom_id(
        &self,
        custom_id: &str,
    ) -> Option<Result<(String, ButtonKind), Refusal>> {
        match CustomId::parse(custom_id)? {
            Ok(CustomId::Approval(button)) => Some(self.authenticate(button)),
            Err(Malformed::Approval) => Some(Err(Refusal::BadButton)),
            _ => None,
        }
    }

    /// Persists a request. The caller has checked the requester's own permission to ask, and
    /// `eligible_approvers` (people other than the requester who could approve) is known.
    pub async fn request(
        &self,
        requester: &PersonRef,
        action: &str,
        params: serde_json::Value,
        summary: &str,
        eligible_approvers: usize,
    ) -> Result<ApprovalRequest, Refusal> {
        let rule = self
            .perms
            .rule(action)
            .cloned()
            .ok_or_else(|| Refusal::NoRule(action.to_string()))?;
        if eligible_approvers < rule.approvals as usize {
            return Err(Refusal::NoEligibleApprover(action.to_string()));
        }
        let executor = self.executor(action)?;
        let binding = executor
            .bind(&params)
            .await
            .map_err(|e| Refusal::Other(e.to_string()))?;
        let now = now_ms();
        let req = ApprovalRequest {
            id: new_request_id(),
            action: action.to_string(),
            params,
            digest: binding.digest,
            bound: binding.bound,
            changes: binding.changes,
            attachment: binding.attachment,
            summary: summary.to_string(),
            requester: requester.clone(),
            state: ApprovalState::Pending,
            created_at_ms: now,
            expires_at_ms: now + i64::from(rule.expiry_minutes) * 60_000,
            rule,
            channel_id: None,
            message_id: None,
            result: None,
        };
        self.store
            .create_approval(&req)
            .await
            .map_err(store_refusal)?;
        Ok(req)
    }

    fn executor(&self, action: &str) -> Result<&Arc<dyn ActionExecutor>, Refusal> {
        self.executors
            .get(action)
            .ok_or_else(|| Refusal::Other(format!("`{action}` cannot be executed by this build")))
    }

    pub async fn get(&self, id: &str) -> Result<ApprovalRequest, Refusal> {
        self.store
            .get_approval(id)
            .await
            .map_err(store_refusal)?
            .ok_or(Refusal::Unknown)
    }

    pub async fn set_message(
        &self,
        id: &str,
        channel_id: u64,
        message_id: u64,
    ) -> Result<(), Refusal> {
        self.store
            .set_approval_message(id, channel_id, message_id)
            .await
            .map_err(store_refusal)
    }

    /// Checks that `clicker` may decide on `req` now (used before showing the confirmation and
    /// again when the decision is recorded). `clicker_roles` must come from a fresh GitHub check.
    pub fn check_decider(
        &self,
        req: &ApprovalRequest,
        clicker: &PersonRef,
        clicker_roles: &std::collections::BTreeSet<String>,
    ) -> Result<(), Refusal> {
        if req.state != ApprovalState::Pending {
            return Err(Refusal::AlreadyDecided(req.state.as_str()));
        }
        if req.expires_at_ms <= now_ms() {
            return Err(Refusal::Expired);
        }
        if clicker.github_id == req.requester.github_id {
            return Err(Refusal::OwnRequest);
        }
        if !req
            .rule
            .approver_roles
            .iter()
            .any(|r| clicker_roles.contains(r))
        {
            return Err(Refusal::NotAnApprover(req.action.clone()));
        }
        Ok(())
    }

    /// Records a decision. Exactly one click can move a request out of `pending`.
    pub async fn decide(
        &self,
        id: &str,
        clicker: &PersonRef,
        clicker_roles: &std::collections::BTreeSet<String>,
        decision: Decision,
    ) -> Result<Decided, Refusal> {
        let req = self.get(id).await?;
        if req.state == ApprovalState::Pending && req.expires_at_ms <= now_ms() {
            self.store
                .transition_approval(id, ApprovalState::Pending, ApprovalState::Expired, now_ms())
                .await
                .map_err(store_refusal)?;
            return Err(Refusal::Expired);
        }
        self.check_decider(&req, clicker, clicker_roles)?;
        let now = now_ms();
        match decision {
            Decision::Deny => {
                let _ = self
                    .store
                    .add_vote(id, clicker, decision, now)
                    .await
                    .map_err(store_refusal)?;
                if self
                    .store
                    .transition_approval(id, ApprovalState::Pending, ApprovalState::Denied, now)
                    .await
                    .map_err(store_refusal)?
                {
                    Ok(Decided::Denied)
                } else {
                    Err(self.already_decided(id).await)
                }
            }
            Decision::Approve => {
                if !self
                    .store
                    .add_vote(id, clicker, decision, now)
                    .await
                    .map_err(store_refusal)?
                {
                    // Either this person voted already, or the request left `pending` meanwhile.
                    return Err(match self.already_decided(id).await {
                        Refusal::AlreadyDecided("pending") => Refusal::AlreadyVoted,
                        other => other,
                    });
                }
                let have = self
                    .store
                    .count_votes(id, Decision::Approve)
                    .await
                    .map_err(store_refusal)?;
                let need = req.rule.approvals;
                if have < need {
                    return Ok(Decided::Recorded { have, need });
                }
                if self
                    .store
                    .transition_approval(id, ApprovalState::Pending, ApprovalState::Approved, now)
                    .await
                    .map_err(store_refusal)?
                {
                    Ok(Decided::Approved)
                } else {
                    Err(self.already_decided(id).await)
                }
            }
        }
    }

    async fn already_decided(&self, id: &str) -> Refusal {
        match self.store.get_approval(id).await {
            Ok(Some(r)) if r.state == ApprovalState::Expired => Refusal::Expired,
            Ok(Some(r)) => Refusal::AlreadyDecided(r.state.as_str()),
            Ok(None) => Refusal::Unknown,
            Err(e) => store_refusal(e),
        }
    }

    /// Executes an approved request, once: only the caller that moves it to `executing` runs it.
    /// Every outcome after that move is saved as the request's end (a missing executor fails
    /// it); when saving fails, the outcome is still returned as what happened
    /// ([`Executed::Unsaved`] for an action that ran), never as a refusal.
    pub async fn execute(&self, id: &str) -> Result<Executed, Refusal> {
        self.execute_observed(id, None).await
    }

    /// [`Approvals::execute`], the executor publishing its live progress through `progress`
    /// ([`ActionExecutor::execute_observed`]).
    pub async fn execute_observed(
        &self,
        id: &str,
        progress: Option<crate::progress::ProgressFn>,
    ) -> Result<Executed, Refusal> {
        let now = now_ms();
        if !self
            .store
            .transition_approval(id, ApprovalState::Approved, ApprovalState::Executing, now)
            .await
            .map_err(store_refusal)?
        {
            return Ok(Executed::NotMine);
        }
        let req = self.get(id).await?;
        let Some(executor) = self.executors.get(&req.action) else {
            let msg = format!(
                "`{}` cannot be executed by this build: nothing ran",
                req.action
            );
            tracing::error!(request = id, action = %req.action, "no executor for an approved request");
            self.finish_logged(id, ApprovalState::Failed, &msg).await;
            return Ok(Executed::Failed(msg));
        };
        // A request with pinned facts is checked by its executor, atomically where the system
        // allows it (Docker's version check); the others compare a fresh digest here.
        if req.bound.is_null() {
            let digest = match executor.digest(&req.params).await {
                Ok(d) => d,
                Err(e) => {
                    let msg = e.to_string();
                    self.finish_logged(id, ApprovalState::Failed, &msg).await;
                    return Ok(Executed::Failed(msg));
                }
            };
            if digest != req.digest {
                let msg =
                    "what would run changed since the request: nothing was applied; ask again";
                self.finish_logged(id, ApprovalState::Void, msg).await;
                return Ok(Executed::Void(msg.to_string()));
            }
        }
        let approvers: Vec<String> = match self.store.list_votes(id).await {
            Ok(votes) => votes
                .into_iter()
                .filter(|(_, d)| *d == Decision::Approve)
                .map(|(login, _)| login)
                .collect(),
            Err(e) => {
                tracing::error!(request = id, error = %e, "reading the approvers failed");
                let msg = "the approvals store failed before the action ran: nothing ran";
                self.finish_logged(id, ApprovalState::Failed, msg).await;
                return Ok(Executed::Failed(msg.to_string()));
            }
        };
        let ran = match progress {
            Some(p) => {
                executor
                    .execute_observed(&req.params, &req.bound, &approvers, p)
                    .await
            }
            None => {
                executor
                    .execute_bound(&req.params, &req.bound, &approvers)
                    .await
            }
        };
        match ran {
            Ok(summary) => {
                if self.finish_logged(id, ApprovalState::Done, &summary).await {
                    Ok(Executed::Done(summary))
                } else {
                    Ok(Executed::Unsaved(summary))
                }
            }
            Err(ExecFailure::Void(why)) => {
                self.finish_logged(id, ApprovalState::Void, &why).await;
                Ok(Executed::Void(why))
            }
            Err(ExecFailure::Failed(e)) => {
                let msg = e.to_string();
                self.finish_logged(id, ApprovalState::Failed, &msg).await;
                Ok(Executed::Failed(msg))
            }
        }
    }

    /// Saves the end of an `executing` request, trying three times; `false` (logged with the
    /// result) when it could not be saved.
    async fn finish_logged(&self, id: &str, to: ApprovalState, result: &str) -> bool {
        for attempt in 1..=3u64 {
            match self.store.finish_approval(id, to, now_ms(), result).await {
                Ok(()) => return true,
                Err(e) => {
                    tracing::error!(request = id, attempt, state = to.as_str(), error = %e, "saving the end of an approved action failed");
                    if attempt < 3 {
                        tokio::time::sleep(std::time::Duration::from_millis(200 * attempt)).await;
                    }
                }
            }
        }
        tracing::error!(
            request = id,
            state = to.as_str(),
            result,
            "the end of an approved action could not be saved: it stays `executing` until start-up recovery"
        );
        false
    }

    /// Runs a registered action without an approval: the CLI's break-glass path, for when
    /// Discord is down. The caller audits it with the stated reason.
    pub async fn execute_unapproved(
        &self,
        action: &str,
        params: &serde_json::Value,
    ) -> Result<String, OpsError> {
        let executor = self.executor(action).map_err(|r| OpsError {
            summary: r.to_string(),
            error_id: crate::base::new_error_id(),
        })?;
        executor.execute(params).await
    }

    /// Moves every overdue pending request to `expired` and returns them (to disable buttons).
    pub async fn expire_due(&self) -> Result<Vec<ApprovalRequest>, Refusal> {
        self.store
            .expire_approvals(now_ms())
            .await
            .map_err(store_refusal)
    }

    /// Requests a crash left `approved` (nothing ran yet) or `executing` (it may have run, or
    /// ran and its result was not saved) become `failed` at start-up, each with a result that
    /// says which.
    pub async fn recover_interrupted(&self) -> Result<Vec<ApprovalRequest>, Refusal> {
        self.store
            .fail_interrupted_approvals(now_ms(), INTERRUPTED_EXECUTING, INTERRUPTED_APPROVED)
            .await
            .map_err(store_refusal)
    }

    /// Who decided what so far.
    pub async fn votes(&self, id: &str) -> Result<Vec<(String, Decision)>, Refusal> {
        self.store.list_votes(id).await.map_err(store_refusal)
    }
}

/// The result of a request a restart found `executing`.
pub const INTERRUPTED_EXECUTING: &str = "interrupted: sprocket-ops stopped while executing it (or before its result was saved): it may have run, partly or fully; check its effect before requesting it again";
/// The result of a request a restart found `approved` (approved, never started).
pub const INTERRUPTED_APPROVED: &str = "interrupted: sprocket-ops stopped after the approval, before it started executing: nothing ran; request it again";

/// 128 random bits as hex, from the OS.
fn new_request_id() -> String {
    crate::base::random_hex(16)
}
