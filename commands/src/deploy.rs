//! Layer deploys from Discord: `/deploy <layer> [image]` (one subcommand per configured layer),
//! `/rollback <layer>`, `/cancel`, `/locks`, `/unlock`, `/history`. One message follows a
//! deploy, edited at most every 2 s with a progress bar, the current resource, warnings and
//! errors (redacted by ops-core); a preview that deletes or replaces, or a layer that always
//! needs it, becomes an approval request bound to that preview.

use std::time::Instant;

use ops_core::custom_id::CustomId;
use ops_core::deploy::{watch_progress, DeployOutcome, DeployPhase, DeployProgress, DeployRequest};
use ops_core::ops::Access;
use ops_core::store::DeployRecord;
use poise::serenity_prelude as serenity;
use poise::CreateReply;

use crate::render;
use crate::services::{request_approval, EDIT_INTERVAL};
use crate::{actor, allow, Context, Data, Error, UserError};

/// A layer as the command tree needs it.
#[derive(Debug, Clone)]
pub struct LayerSpec {
    pub name: String,
    /// The layer has an image tag key: its subcommand takes `image`.
    pub tagged: bool,
}

/// Deploy a layer: preview, apply with live progress, verify the Swarm converged.
#[poise::command(slash_command, guild_only)]
pub async fn deploy(_ctx: Context<'_>) -> Result<(), Error> {
    Ok(())
}

/// Deploy this layer with an image tag: set the tag, preview, apply, verify.
#[poise::command(slash_command, guild_only)]
pub async fn deploy_tagged(
    ctx: Context<'_>,
    #[description = "The image tag to deploy (main, v2, ...); default: the configured one"]
    image: Option<String>,
) -> Result<(), Error> {
    let layer = ctx.command().name.to_string();
    run_deploy(ctx, layer, image).await
}

/// Deploy this layer: preview, apply, verify.
#[poise::command(slash_command, guild_only)]
pub async fn deploy_plain(ctx: Context<'_>) -> Result<(), Error> {
    let layer = ctx.command().name.to_string();
    run_deploy(ctx, layer, None).await
}

/// Roll this layer back to the previous successful image tag (after approval).
#[poise::command(slash_command, guild_only)]
pub async fn rollback_layer(ctx: Context<'_>) -> Result<(), Error> {
    let layer = ctx.command().name.to_string();
    let who = allow(ctx, "rollback", Access::Destructive)
        .await?
        .ok_or_else(|| UserError("link your GitHub account first".into()))?;
    ctx.defer().await?;
    let ops = ctx.data().ops.clone();
    let req = ops
        .deployer
        .rollback_request(&layer, &who.person.login, "rollback requested in Discord")
        .await
        .map_err(|e| UserError(e.to_string()))?;
    let summary = format!(
        "roll `{layer}` back to image `{}` (requested by {})",
        req.image_tag.as_deref().unwrap_or("?"),
        who.person.login
    );
    request_approval(
        ctx,
        &who,
        ops_core::deploy::ACTION_ROLLBACK,
        req.to_params(),
        &summary,
    )
    .await
}

/// The `/deploy` tree and the layer subcommands of `/rollback`, from the configured layers.
pub fn deploy_tree(layers: &[LayerSpec]) -> poise::Command<Data, Error> {
    let mut parent = deploy();
    parent.subcommand_required = true;
    parent.subcommands = layers
        .iter()
        .map(|l| {
            let mut c = if l.tagged {
                deploy_tagged()
            } else {
                deploy_plain()
            };
            c.name = l.name.clone().into();
            c.qualified_name = format!("deploy {}", l.name).into();
            c.description = Some(
                format!(
                    "Deploy {}: preview, apply with live progress, verify",
                    l.name
                )
                .into(),
            );
            c
        })
        .collect();
    parent
}

pub fn add_layer_rollbacks(rollback: &mut poise::Command<Data, Error>, layers: &[LayerSpec]) {
    for l in layers {
        let mut c = rollback_layer();
        c.name = l.name.clone().into();
        c.qualified_name = format!("rollback {}", l.name).into();
        c.description = Some(
            format!(
                "Roll {} back to its previous good image tag (approval)",
                l.name
            )
            .into(),
        );
        rollback.subcommands.push(c);
    }
}

/// Waits before each new attempt to post a deploy's final report.
const FINAL_RETRIES: [std::time::Duration; 4] = [
    std::time::Duration::from_secs(1),
    std::time::Duration::from_secs(3),
    std::time::Duration::from_secs(8),
    std::time::Duration::from_secs(20),
];

/// Records the deploy's message (channel, id) with the deploy; a failure only loses the edit
/// after a restart, so it is logged and the deploy goes on.
async fn place_message(ops: &ops_core::ops::Ops, handle: &poise::ReplyHandle<'_>, deploy_id: &str) {
    match handle.message().await {
        Ok(m) => {
            if let Err(e) = ops
                .deployer
                .set_message(deploy_id, m.channel_id.get(), m.id.get())
                .await
            {
                tracing::warn!(deploy_id, error = %e, "recording the deploy's message failed");
            }
        }
        Err(e) => {
            tracing::warn!(deploy_id, error = %e, "reading back the deploy's message failed")
        }
    }
}

/// At start-up: each deploy a restart interrupted is told to the audit channel, and its own
/// message (when /deploy recorded it) is edited to say so. The bot token edits it: the
/// interaction's token may have expired.
pub async fn announce_interrupted(http: &serenity::Http, data: &Data, deploys: &[DeployRecord]) {
    for d in deploys {
        crate::approval_ui::audit_line(
            http,
            data,
            &format!(
                "⚠️ deploy `{}` of `{}` (by {}) was interrupted by a restart; its lock was released",
                d.id, d.layer, d.requester
            ),
        )
        .await;
        let place = match data.ops.deployer.message_of(&d.id).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(deploy_id = %d.id, error = %e, "cannot look up the interrupted deploy's message");
                None
            }
        };
        let Some((channel_id, message_id)) = place else {
            continue;
        };
        let page = render::interrupted_deploy_page(d).redacted(&data.ops.redactor);
        let edit = serenity::EditMessage::new()
            .embed(page.to_embed())
            .components(vec![]);
        if let Err(e) = serenity::ChannelId::new(channel_id)
            .edit_message(http, serenity::MessageId::new(message_id), edit)
            .await
        {
            tracing::warn!(deploy_id = %d.id, error = %e, "editing the interrupted deploy's message failed");
        }
    }
}

async fn run_deploy(ctx: Context<'_>, layer: String, image: Option<String>) -> Result<(), Error> {
    let who = allow(ctx, "deploy", Access::Change)
        .await?
        .ok_or_else(|| UserError("link your GitHub account first".into()))?;
    ctx.defer().await?;
    let ops = ctx.data().ops.clone();
    let started = Instant::now();
    let req = DeployRequest {
        layer: layer.clone(),
        image_tag: image.clone(),
        requester: who.person.login.clone(),
        reason: String::new(),
    };
    let (progress, mut rx) = watch_progress(&layer);
    // The deploy runs in a task of its own and starts at once: neither posting the message
    // nor a slow or failing edit (Discord's latency, a rate-limited bucket, a 5xx) delays
    // pulumi or the verification, and dropping this command never kills a running pulumi.
    let mut run = {
        let deployer = std::sync::Arc::clone(&ops.deployer);
        let req = req.clone();
        tokio::spawn(async move { deployer.deploy(&req, progress).await })
    };
    let first = render::deploy_progress_page(
        &layer,
        image.as_deref(),
        &DeployProgress::new(&layer),
        started.elapsed(),
    );
    let handle = match ctx
        .send(CreateReply::default().embed(first.to_embed()))
        .await
    {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!(layer = %layer, error = %e, "posting the deploy message failed; the deploy goes on");
            None
        }
    };
    let mut last_edit = Instant::now();
    let mut dirty = false;
    let mut watching = true;
    let mut placed = false;
    let joined = loop {
        tokio::select! {
            r = &mut run => break r,
            changed = rx.changed(), if watching => {
                match changed {
                    Ok(()) => dirty = true,
                    Err(_) => watching = false,
                }
            }
            _ = tokio::time::sleep(EDIT_INTERVAL) => {}
        }
        // Once the deploy has its id: remember where its message is, so that a restart in the
        // middle can edit it (start-up's `announce_interrupted`).
        if !placed {
            let id = rx.borrow().deploy_id.clone();
            if let (Some(h), Some(id)) = (&handle, id) {
                placed = true;
                place_message(&ops, h, &id).await;
            }
        }
        if let (Some(h), true) = (&handle, dirty && last_edit.elapsed() >= EDIT_INTERVAL) {
            let p = rx.borrow_and_update().clone();
            dirty = false;
            // The snapshot this page shows may be newer than the one checked above: no page
            // goes out before the message is recorded.
            if let (false, Some(id)) = (placed, &p.deploy_id) {
                placed = true;
                place_message(&ops, h, id).await;
            }
            // An ending phase is the final report's to show (it follows at once), never a
            // progress page's: "succeeded" without the report would mislead.
            if !matches!(
                p.phase,
                DeployPhase::Succeeded
                    | DeployPhase::Failed
                    | DeployPhase::Cancelled
                    | DeployPhase::AwaitingApproval
            ) {
                let page =
                    render::deploy_progress_page(&layer, image.as_deref(), &p, started.elapsed());
                if let Err(e) = h
                    .edit(ctx, CreateReply::default().embed(page.to_embed()))
                    .await
                {
                    tracing::warn!(layer = %layer, error = %e, "a progress edit failed; the deploy goes on");
                }
                last_edit = Instant::now();
            }
        }
    };
    let result = joined.map_err(|e| ops.fail("the deploy stopped unexpectedly", &e))?;
    // The final page: an edit of the message, or a new one when it could not be posted;
    // retried for about half a minute when Discord fails (the interaction token lives 15 min).
    let show = |reply: CreateReply| {
        let handle = handle.as_ref();
        let layer = layer.clone();
        async move {
            let mut attempt = 0;
            loop {
                let sent = match handle {
                    Some(h) => h.edit(ctx, reply.clone()).await,
                    None => ctx.send(reply.clone()).await.map(|_| ()),
                };
                let Err(e) = sent else { return Ok(()) };
                let Some(wait) = FINAL_RETRIES.get(attempt) else {
                    return Err(e);
                };
                tracing::warn!(layer = %layer, error = %e, "posting the deploy's final report failed; retrying in {wait:?}");
                tokio::time::sleep(*wait).await;
                attempt += 1;
            }
        }
    };
    let params = req.to_params();
    match result {
        Ok(DeployOutcome::Succeeded(report)) => {
            let page = render::deploy_succeeded_page(&layer, &report, started.elapsed());
            show(CreateReply::default().embed(page.to_embed())).await?;
            ops.record(
                &actor(ctx),
                "deploy",
                &params,
                ops_core::audit::Outcome::Ok,
                Some(format!("deploy {} succeeded", report.record.id)),
                None,
                started,
            )
            .await;
            Ok(())
        }
        Ok(DeployOutcome::NeedsApproval(plan)) => {
            let action = plan
                .approval_action
                .clone()
                .unwrap_or_else(|| ops_core::deploy::ACTION_DESTRUCTIVE.to_string());
            let mut params = plan.request.to_params();
            params["digest"] = serde_json::Value::String(plan.digest.clone());
            let summary = format!(
                "deploy `{layer}`{}: {} ({}) (requested by {})",
                image
                    .as_deref()
                    .map(|t| format!(" image `{t}`"))
                    .unwrap_or_default(),
                plan.preview.describe().join(", "),
                plan.approval_reasons.join("; "),
                who.person.login
            );
            let page = render::deploy_approval_needed_page(&layer, &summary);
            show(CreateReply::default().embed(page.to_embed())).await?;
            request_approval(ctx, &who, &action, params, &summary).await
        }
        Err(e) => {
            let page = render::deploy_failed_page(&layer, &e, started.elapsed());
            let mut reply = CreateReply::default().embed(page.to_embed());
            if e.rollback_target().is_some() {
                reply = reply.components(vec![serenity::CreateActionRow::Buttons(vec![
                    serenity::CreateButton::new(
                        CustomId::DeployRollback {
                            layer: layer.clone(),
                        }
                        .to_string(),
                    )
                    .label("Request rollback")
                    .style(serenity::ButtonStyle::Danger),
                ])]);
            }
            show(reply).await?;
            ops.record(
                &actor(ctx),
                "deploy",
                &params,
                ops_core::audit::Outcome::Error,
                Some(e.to_string()),
                None,
                started,
            )
            .await;
            Ok(())
        }
    }
}

/// "Request rollback" under a failed deploy: a `layer_rollback` approval request. The click
/// is acknowledged (ephemerally) before anything else: the request previews the rollback, which
/// takes a real Pulumi seconds to minutes, well past Discord's 3 s deadline; the answer follows
/// as an edit of that acknowledgement.
pub async fn handle_rollback_click(
    ctx: &serenity::Context,
    data: &Data,
    mci: &serenity::ComponentInteraction,
    layer: &str,
) {
    let ops = &data.ops;
    let Some(_guard) = data.inflight.enter() else {
        let _ = mci
            .create_response(
                &ctx.http,
                serenity::CreateInteractionResponse::Message(
                    serenity::CreateInteractionResponseMessage::new()
                        .content(crate::SHUTTING_DOWN)
                        .ephemeral(true),
                ),
            )
            .await;
        return;
    };
    if let Err(e) = mci.defer_ephemeral(&ctx.http).await {
        tracing::warn!(layer, error = %e, "could not acknowledge a Request rollback click");
    }
    let actor = ops_core::audit::Actor::discord(mci.user.id.get(), &mci.user.name);
    let text = match ops
        .authorize(&actor, mci.user.id.get(), "rollback", Access::Destructive)
        .await
    {
        Err(d) => format!("Not allowed: {d}"),
        Ok(None) => "link your GitHub account first".to_string(),
        Ok(Some(who)) => match ops
            .deployer
            .rollback_request(layer, &who.person.login, "after a failed deploy")
            .await
        {
            Err(e) => e.to_string(),
            Ok(req) => {
                let summary = format!(
                    "roll `{layer}` back to image `{}` (requested by {})",
                    req.image_tag.as_deref().unwrap_or("?"),
                    who.person.login
                );
                match crate::approval_ui::request(
                    &ctx.http,
                    data,
                    &who,
                    ops_core::deploy::ACTION_ROLLBACK,
                    req.to_params(),
                    &summary,
                    mci.channel_id.get(),
                )
                .await
                {
                    Ok((_, link)) => format!("Rollback requested: {link}"),
                    Err(e) => e.to_string(),
                }
            }
        },
    };
    if let Err(e) = mci
        .edit_response(
            &ctx.http,
            serenity::EditInteractionResponse::new().content(render::clip(&text, 1900)),
        )
        .await
    {
        tracing::warn!(layer, error = %e, "could not answer a Request rollback click");
    }
}

async fn autocomplete_layer(
    ctx: Context<'_>,
    partial: &str,
) -> serenity::CreateAutocompleteResponse {
    let choices = ctx
        .data()
        .ops
        .layers
        .names()
        .filter(|n| n.contains(partial))
        .map(serenity::AutocompleteChoice::from)
        .collect();
    serenity::CreateAutocompleteResponse::new().set_choices(choices)
}

/// Interrupt a running deploy of a layer gracefully (pulumi stops after the step in flight).
#[poise::command(slash_command, guild_only)]
pub async fn cancel(
    ctx: Context<'_>,
    #[description = "The layer"]
    #[autocomplete = "autocomplete_layer"]
    layer: String,
) -> Result<(), Error> {
    ctx.data().ops.check_layer(&layer).map_err(UserError)?;
    allow(ctx, "cancel", Access::Change).await?;
    let ops = ctx.data().ops.clone();
    let cancelled = ops
        .audited(
            &actor(ctx),
            "cancel",
            serde_json::json!({ "layer": layer }),
            || async {
                ops.deployer
                    .cancel(&layer)
                    .await
                    .map_err(|e| ops.fail(&e.to_string(), &e))
            },
        )
        .await?;
    let text = if cancelled {
        format!("Cancelling the deploy of `{layer}`: it stops after the step in flight.")
    } else {
        format!("No deploy of `{layer}` is running.")
    };
    ctx.say(text).await?;
    Ok(())
}

/// Show the layer locks: who holds them and since when.
#[poise::command(slash_command, guild_only)]
pub async fn locks(ctx: Context<'_>) -> Result<(), Error> {
    allow(ctx, "locks", Access::Read).await?;
    let ops = ctx.data().ops.clone();
    let locks = ops
        .deployer
        .locks()
        .await
        .map_err(|e| ops.fail(&e.to_string(), &e))?;
    let lines: Vec<String> = locks
        .iter()
        .map(|l| {
            format!(
                "`{}` held by {} since <t:{}:R> ({}), expires <t:{}:R>",
                l.layer,
                l.owner,
                l.started_at_ms / 1000,
                l.reason,
                l.expires_at_ms / 1000
            )
        })
        .collect();
    let text = if lines.is_empty() {
        "No layer is locked.".to_string()
    } else {
        lines.join("\n")
    };
    ctx.send(
        CreateReply::default()
            .content(render::clip(&text, 1900))
            .ephemeral(true),
    )
    .await?;
    Ok(())
}

/// Release a layer's lock (after approval): for a lock left by a crash or a stuck deploy.
#[poise::command(slash_command, guild_only)]
pub async fn unlock(
    ctx: Context<'_>,
    #[description = "The layer"]
    #[autocomplete = "autocomplete_layer"]
    layer: String,
) -> Result<(), Error> {
    ctx.data().ops.check_layer(&layer).map_err(UserError)?;
    let who = allow(ctx, "unlock", Access::Destructive)
        .await?
        .ok_or_else(|| UserError("link your GitHub account first".into()))?;
    ctx.defer().await?;
    let summary = format!(
        "release the lock of `{layer}` (requested by {})",
        who.person.login
    );
    request_approval(
        ctx,
        &who,
        "unlock",
        serde_json::json!({ "layer": layer }),
        &summary,
    )
    .await
}

/// The deploys of a layer: requester, approver, images, result.
#[poise::command(slash_command, guild_only)]
pub async fn history(
    ctx: Context<'_>,
    #[description = "The layer"]
    #[autocomplete = "autocomplete_layer"]
    layer: String,
) -> Result<(), Error> {
    ctx.data().ops.check_layer(&layer).map_err(UserError)?;
    allow(ctx, "history", Access::Read).await?;
    let ops = ctx.data().ops.clone();
    let rows = ops
        .deployer
        .history(&layer, 15)
        .await
        .map_err(|e| ops.fail(&e.to_string(), &e))?;
    let page = render::deploy_history_page(&layer, &rows);
    ctx.send(CreateReply::default().embed(page.to_embed()))
        .await?;
    Ok(())
}
