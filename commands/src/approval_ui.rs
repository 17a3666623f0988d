//! Approval requests in Discord: posting a request with Approve/Deny buttons in the approvals
//! channel, and handling the clicks from the framework's global event handler (not from
//! in-memory collectors), so requests and their buttons survive a restart. Every click is
//! authorised by sprocket-ops against a fresh GitHub check, never by who can see the message.
//! An approved deploy or rollback is followed live, as `/deploy` is: a reply to the approval
//! message and a message for the requester where they asked, edited with its progress and
//! its final report (`Ops::approval_click` drives it; this only renders).

use std::time::Instant;

use ops_core::approval_click::{ClickFrontend, ClickOutcome};
use ops_core::approvals::{ApprovalRequest, ButtonKind, Executed, PersonRef, Refusal};
use ops_core::audit::{Actor, Outcome};
use ops_core::custom_id::{ApprovalButton, Malformed};
use ops_core::identity::Principal;
use poise::serenity_prelude as serenity;

use crate::render::{self, Page};
use crate::{Data, Error, UserError};

/// How long this process remembers where an approval request was made (see
/// [`Data::request_origins`]): a request expires within `expiry_minutes`, at most 1440.
pub const ORIGIN_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

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
/// channel. Returns the request and a link to the posted message. `origin`: the channel the
/// request was made in (an approved deploy's progress is posted there too).
pub async fn request(
    http: &serenity::Http,
    data: &Data,
    who: &Principal,
    action: &str,
    params: serde_json::Value,
    summary: &str,
    origin: u64,
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
    {
        let mut origins = data
            .request_origins
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        origins.retain(|_, (_, at)| at.elapsed() < ORIGIN_TTL);
        origins.insert(req.id.clone(), (origin, Instant::now()));
    }
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

/// Handles a click on an approval button (`button`: its id as parsed, `Err` when malformed);
/// the MAC is checked here, before anything else. The click itself is
/// [`ops_core::Ops::approval_click`]'s; this renders what it did.
pub async fn handle_component(
    ctx: &serenity::Context,
    data: &Data,
    mci: &serenity::ComponentInteraction,
    button: Result<ApprovalButton, Malformed>,
) {
    let parsed = button
        .map_err(|_| Refusal::BadButton)
        .and_then(|b| data.ops.approvals.authenticate(b));
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
    let answer = Answer::new(mci);
    let front = DiscordClick {
        ctx,
        data,
        answer: &answer,
        runs: tokio::sync::Mutex::new(Vec::new()),
    };
    let outcome = data
        .ops
        .approval_click(
            &actor,
            mci.user.id.get(),
            &id,
            kind,
            crate::ACK_BUDGET,
            &front,
        )
        .await;
    let http = &ctx.http;
    match &outcome {
        ClickOutcome::Refused(refusal) => {
            let _ = answer
                .ephemeral(http, &format!("⛔ {refusal}"), vec![])
                .await;
        }
        ClickOutcome::ConfirmationAsked => {}
        ClickOutcome::Denied { request, by } => {
            let _ = answer.ephemeral(http, "Denied.", vec![]).await;
            refresh_message(http, data, &id).await;
            audit_line(
                http,
                data,
                &format!(
                    "🚫 {} denied {} (request `{}`)",
                    by.login,
                    request.summary,
                    short(&id)
                ),
            )
            .await;
        }
        ClickOutcome::Recorded { have, need } => {
            answer
                .update(http, &format!("Approval recorded ({have} of {need})."))
                .await;
            refresh_message(http, data, &id).await;
        }
        ClickOutcome::Executed {
            request,
            result,
            progress,
            elapsed,
        } => {
            if let Some(p) = progress {
                let page = render::approved_run_page(request, p, Some(result), *elapsed);
                front.show_run(request, &page).await;
            }
            let summary = &request.summary;
            let line = match result {
                Executed::Done(s) => format!("▶️ executed {summary}: {s}"),
                Executed::Failed(s) => format!("❌ {summary} failed: {s}"),
                Executed::Void(why) => format!("⚠️ {summary} was not executed (void): {why}"),
                Executed::Unsaved(s) => format!(
                    "⚠️ executed {summary}: {s}; but its result could not be saved (the request will show as interrupted after a restart)"
                ),
                Executed::NotMine => String::new(),
            };
            let _ = mci
                .edit_response(
                    http,
                    serenity::EditInteractionResponse::new().content(render::clip(
                        &data.ops.redactor.redact_untrusted(&outcome.summary()),
                        1900,
                    )),
                )
                .await;
            refresh_message(http, data, &id).await;
            if !line.is_empty() {
                audit_line(http, data, &line).await;
            }
        }
    }
}

/// What Discord shows while [`ops_core::Ops::approval_click`] runs.
struct DiscordClick<'a> {
    ctx: &'a serenity::Context,
    data: &'a Data,
    answer: &'a Answer<'a>,
    /// The messages that follow an approved deploy's run (channel, message): a reply to the
    /// approval message, and one in the channel the request was made in, for the requester.
    runs: tokio::sync::Mutex<Vec<(u64, u64)>>,
}

impl DiscordClick<'_> {
    /// Shows `page` on the run's messages: posts them the first time (a reply to the approval
    /// message; a message mentioning the requester where the request was made, when this
    /// process knows it), edits them after. Failures are logged: the run goes on.
    async fn show_run(&self, req: &ApprovalRequest, page: &Page) {
        let http = &self.ctx.http;
        let page = page.redacted_untrusted(&self.data.ops.redactor);
        let mut runs = self.runs.lock().await;
        if runs.is_empty() {
            let approvals = self.data.channels.approvals;
            let origin = self
                .data
                .request_origins
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&req.id)
                .map(|(channel, _)| channel);
            let mut places = vec![(approvals, req.message_id, None)];
            if let Some(o) = origin.filter(|o| *o != approvals) {
                places.push((o, None, Some(req.requester.discord_id)));
            }
            for (channel, reply_to, mention) in places {
                let mut create = serenity::CreateMessage::new().embed(page.to_embed());
                let mut allowed = serenity::CreateAllowedMentions::new();
                if let Some(user) = mention {
                    create = create.content(format!("<@{user}> your approved request runs:"));
                    allowed = allowed.users(vec![serenity::UserId::new(user)]);
                }
                if let Some(m) = reply_to {
                    create = create.reference_message((
                        serenity::ChannelId::new(channel),
                        serenity::MessageId::new(m),
                    ));
                }
                match serenity::ChannelId::new(channel)
                    .send_message(http, create.allowed_mentions(allowed))
                    .await
                {
                    Ok(m) => runs.push((channel, m.id.get())),
                    Err(e) => {
                        tracing::warn!(request = %req.id, channel, error = %e, "posting an approved run's progress failed")
                    }
                }
            }
            return;
        }
        for (channel, message) in runs.iter() {
            let edit = serenity::EditMessage::new().embed(page.to_embed());
            if let Err(e) = serenity::ChannelId::new(*channel)
                .edit_message(http, serenity::MessageId::new(*message), edit)
                .await
            {
                tracing::warn!(request = %req.id, channel, error = %e, "editing an approved run's progress failed");
            }
        }
    }
}

#[async_trait::async_trait]
impl ClickFrontend for DiscordClick<'_> {
    async fn slow(&self) {
        self.answer.defer(&self.ctx.http).await;
    }

    async fn ask_confirmation(&self, req: &ApprovalRequest) -> Result<(), String> {
        let confirm = serenity::CreateButton::new(
            self.data
                .ops
                .approvals
                .custom_id(&req.id, ButtonKind::Confirm),
        )
        .label("Yes, approve")
        .style(serenity::ButtonStyle::Danger);
        self.answer
            .ephemeral(
                &self.ctx.http,
                &render::clip(
                    &self
                        .data
                        .ops
                        .redactor
                        .redact_untrusted(&render::confirm_text(req)),
                    1900,
                ),
                vec![serenity::CreateActionRow::Buttons(vec![confirm])],
            )
            .await
            .map_err(|e| format!("could not answer: {e}"))
    }

    async fn progress(
        &self,
        req: &ApprovalRequest,
        progress: &ops_core::deploy::DeployProgress,
        elapsed: std::time::Duration,
    ) {
        let page = render::approved_run_page(req, progress, None, elapsed);
        self.show_run(req, &page).await;
    }

    async fn executing(&self, req: &ApprovalRequest, approver: &PersonRef) {
        let http = &self.ctx.http;
        self.answer.update(http, "Approved: executing…").await;
        refresh_message(http, self.data, &req.id).await;
        audit_line(
            http,
            self.data,
            &format!(
                "✅ {} approved {} (request `{}`)",
                approver.login,
                req.summary,
                short(&req.id)
            ),
        )
        .await;
    }
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
