//! Approval requests in Discord: posting a request with Approve/Deny buttons in the approvals
//! channel, and handling the clicks from the framework's global event handler (not from
//! in-memory collectors), so requests and their buttons survive a restart. Every click is
//! authorised by sprocket-ops against a fresh GitHub check, never by who can see the message.

use std::time::Instant;

use ops_core::approvals::{ApprovalRequest, ButtonKind, Decided, Decision, Executed, Refusal};
use ops_core::audit::{Actor, Outcome};
use ops_core::github::Freshness;
use ops_core::identity::Principal;
use poise::serenity_prelude as serenity;

use crate::render::{self, Page};
use crate::{Data, Error, UserError};

/// The buttons of a pending request (none once decided).
pub fn buttons(data: &Data, req: &ApprovalRequest) -> Vec<serenity::CreateActionRow> {
    if req.state != ops_core::approvals::ApprovalState::Pending {
        return vec![];
    }
    let a = &data.ops.approvals;
    vec![serenity::CreateActionRow::Buttons(vec![
        serenity::CreateButton::new(a.custom_id(&req.id, ButtonKind::Approve))
            .label("Approve")
            .style(serenity::ButtonStyle::Success),
        serenity::CreateButton::new(a.custom_id(&req.id, ButtonKind::Deny))
            .label("Deny")
            .style(serenity::ButtonStyle::Danger),
    ])]
}

async fn approval_page(data: &Data, req: &ApprovalRequest) -> Page {
    let votes = data.ops.approvals.votes(&req.id).await.unwrap_or_default();
    render::approval_page(req, &votes).redacted_untrusted(&data.ops.redactor)
}

/// Persists an approval request, posts it in the approvals channel and a line in the audit
/// channel. Returns the request and a link to the posted message.
pub async fn request(
    http: &serenity::Http,
    data: &Data,
    who: &Principal,
    action: &str,
    params: serde_json::Value,
    summary: &str,
) -> Result<(ApprovalRequest, String), Error> {
    let ops = &data.ops;
    let eligible = ops
        .identity
        .eligible_approvers(action, who.person.github_id)
        .await
        .map_err(|e| UserError(e.to_string()))?;
    let req = ops
        .approvals
        .request(&who.person, action, params, summary, eligible)
        .await
        .map_err(|r| UserError(r.to_string()))?;
    let page = approval_page(data, &req).await;
    let channel = serenity::ChannelId::new(data.channels.approvals);
    let mut create = serenity::CreateMessage::new()
        .embed(page.to_embed())
        .components(buttons(data, &req))
        .allowed_mentions(serenity::CreateAllowedMentions::new());
    if let Some(text) = &req.attachment {
        // The full redacted preview, for approvers (redacted again: it goes to a channel).
        let text = ops.redactor.redact(text).into_owned();
        create = create.add_file(serenity::CreateAttachment::bytes(
            text.into_bytes(),
            attachment_name(&req),
        ));
    }
    let msg = channel.send_message(http, create).await?;
    ops.approvals
        .set_message(&req.id, channel.get(), msg.id.get())
        .await
        .map_err(|r| UserError(r.to_string()))?;
    audit_line(
        http,
        data,
        &format!(
            "🔐 {} requested approval for {} (request `{}`)",
            who.person.login,
            req.summary,
            short(&req.id)
        ),
    )
    .await;
    let link = format!(
        "https://discord.com/channels/{}/{}/{}",
        data.guild_id,
        channel.get(),
        msg.id.get()
    );
    Ok((req, link))
}

/// A line in the audit channel; failures are logged, not fatal.
pub async fn audit_line(http: &serenity::Http, data: &Data, text: &str) {
    let text = data.ops.redactor.redact(text);
    let res = serenity::ChannelId::new(data.channels.audit)
        .send_message(
            http,
            serenity::CreateMessage::new()
                .content(render::clip(&text, 1900))
                .allowed_mentions(serenity::CreateAllowedMentions::new()),
        )
        .await;
    if let Err(e) = res {
        tracing::warn!("could not post to the audit channel: {e}");
    }
}

/// The name of the file attached to an approval message (`preview-<action>-<id>.txt`).
pub fn attachment_name(req: &ApprovalRequest) -> String {
    let action: String = req
        .action
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(40)
        .collect();
    format!("preview-{action}-{}.txt", short(&req.id))
}

fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}

/// At start-up: each approved action a restart interrupted (marked failed by
/// `Approvals::recover_interrupted`, whether it was `approved` or `executing`) is told to the
/// audit channel with what happened, and its approvals-channel message is edited to its failed
/// state (the result says the case), so no message keeps saying "executing".
pub async fn announce_interrupted(http: &serenity::Http, data: &Data, failed: &[ApprovalRequest]) {
    for req in failed {
        refresh_message(http, data, &req.id).await;
        audit_line(
            http,
            data,
            &format!(
                "⚠️ approved action {} (request `{}`, by {}) was interrupted by a restart and marked failed; check its effect before requesting it again",
                req.action,
                short(&req.id),
                req.requester.login
            ),
        )
        .await;
    }
}

/// Edits the request's message in the approvals channel to its current state (bot token: works
/// after the interaction tokens expire).
pub async fn refresh_message(http: &serenity::Http, data: &Data, id: &str) {
    let req = match data.ops.approvals.get(id).await {
        Ok(req) => req,
        Err(e) => {
            tracing::warn!(
                request = id,
                "cannot read the request to edit its message: {e}"
            );
            return;
        }
    };
    let (Some(ch), Some(mid)) = (req.channel_id, req.message_id) else {
        return;
    };
    let page = approval_page(data, &req).await;
    let res = serenity::ChannelId::new(ch)
        .edit_message(
            http,
            serenity::MessageId::new(mid),
            serenity::EditMessage::new()
                .embed(page.to_embed())
                .components(buttons(data, &req)),
        )
        .await;
    if let Err(e) = res {
        tracing::warn!(request = id, "could not edit the approval message: {e}");
    }
}

async fn reply_ephemeral(http: &serenity::Http, mci: &serenity::ComponentInteraction, text: &str) {
    let _ = Answer::new(mci).ephemeral(http, text, vec![]).await;
}

/// How a click is answered: at once, or, after a slow identity check deferred it (Discord
/// wants an answer within 3 s), by follow-ups; either way refusals and confirmations stay
/// ephemeral.
struct Answer<'a> {
    mci: &'a serenity::ComponentInteraction,
    deferred: std::sync::atomic::AtomicBool,
}

impl<'a> Answer<'a> {
    fn new(mci: &'a serenity::ComponentInteraction) -> Answer<'a> {
        Answer {
            mci,
            deferred: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn is_deferred(&self) -> bool {
        self.deferred.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Acknowledges without changing the clicked message (type 6).
    async fn defer(&self, http: &serenity::Http) {
        match self
            .mci
            .create_response(http, serenity::CreateInteractionResponse::Acknowledge)
            .await
        {
            Ok(()) => self
                .deferred
                .store(true, std::sync::atomic::Ordering::SeqCst),
            Err(e) => tracing::warn!("could not defer a button click: {e}"),
        }
    }

    /// An ephemeral message to the clicker (with `components`, if any).
    async fn ephemeral(
        &self,
        http: &serenity::Http,
        text: &str,
        components: Vec<serenity::CreateActionRow>,
    ) -> Result<(), serenity::Error> {
        let text = render::clip(text, 1900);
        let res = if self.is_deferred() {
            self.mci
                .create_followup(
                    http,
                    serenity::CreateInteractionResponseFollowup::new()
                        .content(text)
                        .components(components)
                        .ephemeral(true),
                )
                .await
                .map(|_| ())
        } else {
            self.mci
                .create_response(
                    http,
                    serenity::CreateInteractionResponse::Message(
                        serenity::CreateInteractionResponseMessage::new()
                            .content(text)
                            .components(components)
                            .ephemeral(true),
                    ),
                )
                .await
        };
        if let Err(e) = &res {
            tracing::warn!("could not answer a button click: {e}");
        }
        res
    }

    /// Replaces the clicked message's text and removes its buttons.
    async fn update(&self, http: &serenity::Http, text: &str) {
        let res = if self.is_deferred() {
            self.mci
                .edit_response(
                    http,
                    serenity::EditInteractionResponse::new()
                        .content(text)
                        .components(vec![]),
                )
                .await
                .map(|_| ())
        } else {
            self.mci
                .create_response(
                    http,
                    serenity::CreateInteractionResponse::UpdateMessage(
                        serenity::CreateInteractionResponseMessage::new()
                            .content(text)
                            .components(vec![]),
                    ),
                )
                .await
        };
        if let Err(e) = res {
            tracing::warn!("could not answer a button click: {e}");
        }
    }
}

/// Handles a button click. Clicks on other components are left to their owners.
pub async fn handle_component(
    ctx: &serenity::Context,
    data: &Data,
    mci: &serenity::ComponentInteraction,
) {
    let Some(parsed) = data.ops.approvals.parse_custom_id(&mci.data.custom_id) else {
        return;
    };
    let Some(_guard) = data.inflight.enter() else {
        reply_ephemeral(&ctx.http, mci, crate::SHUTTING_DOWN).await;
        return;
    };
    let started = Instant::now();
    let actor = Actor::discord(mci.user.id.get(), &mci.user.name);
    let (id, kind) = match parsed {
        Ok(v) => v,
        Err(refusal) => {
            data.ops
                .record(
                    &actor,
                    "approval.click",
                    &serde_json::json!({ "custom_id": mci.data.custom_id }),
                    Outcome::Denied,
                    Some(refusal.to_string()),
                    None,
                    started,
                )
                .await;
            reply_ephemeral(&ctx.http, mci, &format!("⛔ {refusal}")).await;
            return;
        }
    };
    let command = match kind {
        ButtonKind::Approve => "approval.approve",
        ButtonKind::Confirm => "approval.confirm",
        ButtonKind::Deny => "approval.deny",
    };
    let params = serde_json::json!({ "request": id });
    let answer = Answer::new(mci);
    match click(ctx, data, &answer, &id, kind).await {
        Ok(outcome) => {
            data.ops
                .record(
                    &actor,
                    command,
                    &params,
                    Outcome::Ok,
                    Some(outcome),
                    None,
                    started,
                )
                .await;
        }
        Err(refusal) => {
            data.ops
                .record(
                    &actor,
                    command,
                    &params,
                    Outcome::Denied,
                    Some(refusal.clone()),
                    None,
                    started,
                )
                .await;
            let _ = answer
                .ephemeral(&ctx.http, &format!("⛔ {refusal}"), vec![])
                .await;
        }
    }
}

/// What can be refused without knowing who clicked (no GitHub call): a decided or expired
/// request, or a click by the Discord account that made the request.
fn precheck(req: &ApprovalRequest, discord_id: u64) -> Result<(), Refusal> {
    if req.state != ops_core::approvals::ApprovalState::Pending {
        return Err(Refusal::AlreadyDecided(req.state.as_str()));
    }
    if req.expires_at_ms <= ops_core::ops::now_ms() {
        return Err(Refusal::Expired);
    }
    if req.requester.discord_id == discord_id {
        return Err(Refusal::OwnRequest);
    }
    Ok(())
}

/// Returns a short description of what happened, or the refusal to show.
async fn click(
    ctx: &serenity::Context,
    data: &Data,
    answer: &Answer<'_>,
    id: &str,
    kind: ButtonKind,
) -> Result<String, String> {
    let ops = &data.ops;
    let mci = answer.mci;
    let req = ops.approvals.get(id).await.map_err(|r| r.to_string())?;
    precheck(&req, mci.user.id.get()).map_err(|r| r.to_string())?;
    // The approver's roles are checked now, against GitHub, not when the request was made
    // (a refusal is remembered briefly, so repeated clicks cost no GitHub calls).
    let may_decide = |roles: &std::collections::BTreeSet<String>| {
        req.rule.approver_roles.iter().any(|r| roles.contains(r))
    };
    let check = ops
        .identity
        .resolve_for(mci.user.id.get(), Freshness::Live, &may_decide);
    tokio::pin!(check);
    let clicker = match tokio::time::timeout(crate::ACK_BUDGET, &mut check).await {
        Ok(r) => r,
        Err(_) => {
            answer.defer(&ctx.http).await;
            check.await
        }
    }
    .map_err(|e| e.to_string())?;
    match kind {
        ButtonKind::Approve => {
            ops.approvals
                .check_decider(&req, &clicker.person, &clicker.roles)
                .map_err(|r| r.to_string())?;
            let confirm =
                serenity::CreateButton::new(ops.approvals.custom_id(id, ButtonKind::Confirm))
                    .label("Yes, approve")
                    .style(serenity::ButtonStyle::Danger);
            answer
                .ephemeral(
                    &ctx.http,
                    &render::clip(
                        &data.ops.redactor.redact_untrusted(&confirm_text(&req)),
                        1900,
                    ),
                    vec![serenity::CreateActionRow::Buttons(vec![confirm])],
                )
                .await
                .map_err(|e| format!("could not answer: {e}"))?;
            Ok("asked for confirmation".into())
        }
        ButtonKind::Deny => {
            ops.approvals
                .decide(id, &clicker.person, &clicker.roles, Decision::Deny)
                .await
                .map_err(|r| r.to_string())?;
            let _ = answer.ephemeral(&ctx.http, "Denied.", vec![]).await;
            refresh_message(&ctx.http, data, id).await;
            audit_line(
                &ctx.http,
                data,
                &format!(
                    "🚫 {} denied {} (request `{}`)",
                    clicker.person.login,
                    req.summary,
                    short(id)
                ),
            )
            .await;
            Ok("denied".into())
        }
        ButtonKind::Confirm => {
            let decided = ops
                .approvals
                .decide(id, &clicker.person, &clicker.roles, Decision::Approve)
                .await
                .map_err(|r: Refusal| r.to_string())?;
            match decided {
                Decided::Recorded { have, need } => {
                    answer
                        .update(&ctx.http, &format!("Approval recorded ({have} of {need})."))
                        .await;
                    refresh_message(&ctx.http, data, id).await;
                    Ok(format!("recorded {have} of {need}"))
                }
                Decided::Denied => Err("denied".into()),
                Decided::Approved => {
                    answer.update(&ctx.http, "Approved: executing…").await;
                    refresh_message(&ctx.http, data, id).await;
                    audit_line(
                        &ctx.http,
                        data,
                        &format!(
                            "✅ {} approved {} (request `{}`)",
                            clicker.person.login,
                            req.summary,
                            short(id)
                        ),
                    )
                    .await;
                    let result = ops.approvals.execute(id).await.map_err(|r| r.to_string())?;
                    let (line, text) = match &result {
                        Executed::Done(s) => (
                            format!("▶️ executed {}: {s}", req.summary),
                            format!("Done: {s}"),
                        ),
                        Executed::Failed(s) => (
                            format!("❌ {} failed: {s}", req.summary),
                            format!("Failed: {s}"),
                        ),
                        Executed::Void(why) => (
                            format!("⚠️ {} was not executed (void): {why}", req.summary),
                            format!("Not executed (void): {why}"),
                        ),
                        Executed::Unsaved(s) => (
                            format!(
                                "⚠️ executed {}: {s}; but its result could not be saved (the request will show as interrupted after a restart)",
                                req.summary
                            ),
                            format!(
                                "Done: {s}. Its result could not be saved in the database, so the request may later show as interrupted."
                            ),
                        ),
                        Executed::NotMine => (String::new(), "Already executed.".to_string()),
                    };
                    let _ = mci
                        .edit_response(
                            &ctx.http,
                            serenity::EditInteractionResponse::new().content(render::clip(
                                &data.ops.redactor.redact_untrusted(&text),
                                1900,
                            )),
                        )
                        .await;
                    refresh_message(&ctx.http, data, id).await;
                    if !line.is_empty() {
                        audit_line(&ctx.http, data, &line).await;
                    }
                    Ok(text)
                }
            }
        }
    }
}

/// The confirmation an approver answers: the summary and what will change.
fn confirm_text(req: &ApprovalRequest) -> String {
    let mut text = format!("Approve: {}?", render::clip(&req.summary, 800));
    if !req.changes.is_empty() {
        text.push_str("\nWhat will change:");
        for line in req.changes.iter().take(12) {
            text.push_str("\n• ");
            text.push_str(&render::clip(line, 150));
        }
        if req.changes.len() > 12 {
            text.push_str(&format!(
                "\n… and {} more (see the request)",
                req.changes.len() - 12
            ));
        }
    }
    text
}

/// Disables the buttons of every request that expired, and says so in the audit channel.
pub async fn sweep_expired(http: &serenity::Http, data: &Data) {
    match data.ops.approvals.expire_due().await {
        Ok(expired) => {
            for req in expired {
                refresh_message(http, data, &req.id).await;
                audit_line(
                    http,
                    data,
                    &format!(
                        "⌛ request `{}` for {} expired",
                        short(&req.id),
                        req.summary
                    ),
                )
                .await;
            }
        }
        Err(e) => tracing::warn!("approval expiry sweep failed: {e}"),
    }
}
