//! `/vault status|unseal|seal|secrets`. The unseal ceremony: a message with a "Submit my key
//! share" button; each key holder types their share into a modal, the bot passes it straight to
//! Vault's unseal endpoint and drops it (zeroised). The message shows progress and who has
//! submitted, never what. Clicks and modal submits are handled from the global event handler.

use std::sync::Arc;
use std::time::Instant;

use ops_core::audit::{Actor, Outcome};
use ops_core::custom_id::CustomId;
use ops_core::github::Freshness;
use ops_core::ops::Access;
use ops_core::vault::{
    secrets_report, wall_clock, Ceremony, CeremonyError, CeremonyUpdate, ShareSecret, VaultApi,
};
use poise::serenity_prelude as serenity;
use poise::CreateReply;
use tokio::sync::Mutex;

use crate::render::{self, GREEN, RED, YELLOW};
use crate::{actor, allow, approval_ui, Context, Data, Error, UserError};

/// The open ceremony, if any: one at a time.
pub struct OpenCeremony {
    pub id: String,
    pub ceremony: Ceremony,
    pub channel_id: u64,
    pub message_id: u64,
}

/// Vault access for the commands.
pub struct VaultState {
    pub api: Arc<dyn VaultApi>,
    pub idle_minutes: u64,
    pub secret_paths: Vec<String>,
    pub ceremony: Mutex<Option<OpenCeremony>>,
}

fn vault(ctx: Context<'_>) -> Result<Arc<VaultState>, Error> {
    ctx.data().vault.clone().ok_or_else(|| {
        UserError("Vault is not configured here ([vault] in sprocket-ops.toml).".into()).into()
    })
}

/// Vault: status, the unseal ceremony, seal (with approval), and which secrets exist.
#[poise::command(
    slash_command,
    guild_only,
    rename = "vault",
    subcommands("vault_status", "vault_unseal", "vault_seal", "vault_secrets"),
    subcommand_required
)]
pub async fn vault_cmd(_ctx: Context<'_>) -> Result<(), Error> {
    Ok(())
}

/// Is Vault initialised and sealed? Threshold, unseal progress, version, storage and HA mode.
#[poise::command(slash_command, guild_only, rename = "status")]
pub async fn vault_status(ctx: Context<'_>) -> Result<(), Error> {
    allow(ctx, "vault_status", Access::Read).await?;
    let v = vault(ctx)?;
    ctx.defer().await?;
    let ops = ctx.data().ops.clone();
    let s = ops
        .audited(
            &actor(ctx),
            "vault_status",
            serde_json::json!({}),
            || async {
                v.api
                    .seal_status()
                    .await
                    .map_err(|e| ops.fail(&e.to_string(), &e))
            },
        )
        .await?;
    ctx.send(CreateReply::default().embed(render::vault_status_page(&s).to_embed()))
        .await?;
    Ok(())
}

fn share_button(id: &str) -> Vec<serenity::CreateActionRow> {
    vec![serenity::CreateActionRow::Buttons(vec![
        serenity::CreateButton::new(
            CustomId::VaultShare {
                ceremony: id.to_string(),
            }
            .to_string(),
        )
        .label("Submit my key share")
        .style(serenity::ButtonStyle::Primary),
    ])]
}

/// Open an unseal ceremony: key holders submit their shares through a private form.
#[poise::command(slash_command, guild_only, rename = "unseal")]
pub async fn vault_unseal(ctx: Context<'_>) -> Result<(), Error> {
    let who = allow(ctx, "vault_unseal", Access::Change).await?;
    let v = vault(ctx)?;
    ctx.defer().await?;
    let status = v
        .api
        .seal_status()
        .await
        .map_err(|e| UserError(e.to_string()))?;
    let mut slot = v.ceremony.lock().await;
    if let Some(open) = slot.as_ref() {
        if open.ceremony.state() == ops_core::vault::CeremonyState::Open {
            return Err(UserError(format!(
                "An unseal ceremony is already open (ceremony {}).",
                open.id
            ))
            .into());
        }
    }
    let opened_by = who
        .map(|p| p.person.login)
        .unwrap_or_else(|| ctx.author().name.clone());
    let ceremony = Ceremony::start(
        v.api.clone(),
        wall_clock(),
        Ceremony::idle_from_minutes(v.idle_minutes),
        opened_by.clone(),
        &status,
    )
    .map_err(|e| UserError(e.to_string()))?;
    let id = format!("{:x}", ops_core::ops::now_ms());
    let mut open = OpenCeremony {
        id: id.clone(),
        ceremony,
        channel_id: ctx.channel_id().get(),
        message_id: 0,
    };
    let page = render::ceremony_page(&open, "");
    let reply = ctx
        .send(
            CreateReply::default()
                .embed(page.to_embed())
                .components(share_button(&id)),
        )
        .await?;
    let msg = reply.message().await?;
    open.channel_id = msg.channel_id.get();
    open.message_id = msg.id.get();
    *slot = Some(open);
    ctx.data()
        .ops
        .record(
            &actor(ctx),
            "vault_unseal",
            &serde_json::json!({ "ceremony": id }),
            Outcome::Ok,
            Some(format!("opened by {opened_by}")),
            None,
            Instant::now(),
        )
        .await;
    Ok(())
}

/// Seal Vault (destructive: a key holder must approve).
#[poise::command(slash_command, guild_only, rename = "seal")]
pub async fn vault_seal(ctx: Context<'_>) -> Result<(), Error> {
    let who = allow(ctx, "vault_seal", Access::Destructive)
        .await?
        .ok_or_else(|| UserError("link your GitHub account first".into()))?;
    vault(ctx)?;
    ctx.defer().await?;
    let summary = format!("seal Vault (requested by {})", who.person.login);
    crate::services::request_approval(
        ctx,
        &who,
        ops_core::vault::VAULT_SEAL_ACTION,
        serde_json::json!({}),
        &summary,
    )
    .await
}

/// Which of the secrets the platform needs exist in Vault, and when they changed (never values).
#[poise::command(slash_command, guild_only, rename = "secrets")]
pub async fn vault_secrets(ctx: Context<'_>) -> Result<(), Error> {
    allow(ctx, "vault_secrets", Access::Read).await?;
    let v = vault(ctx)?;
    ctx.defer().await?;
    let ops = ctx.data().ops.clone();
    let report = ops
        .audited(
            &actor(ctx),
            "vault_secrets",
            serde_json::json!({}),
            || async {
                secrets_report(v.api.as_ref(), &v.secret_paths)
                    .await
                    .map_err(|e| ops.fail(&e.to_string(), &e))
            },
        )
        .await?;
    let page = render::vault_secrets_page(&report);
    ctx.send(CreateReply::default().embed(page.to_embed()))
        .await?;
    Ok(())
}

async fn ephemeral(http: &serenity::Http, i: &serenity::ComponentInteraction, text: &str) {
    let _ = i
        .create_response(
            http,
            serenity::CreateInteractionResponse::Message(
                serenity::CreateInteractionResponseMessage::new()
                    .content(text)
                    .ephemeral(true),
            ),
        )
        .await;
}

/// "Submit my key share": checks the key holder now (GitHub, live) and opens the modal.
pub async fn handle_share_click(
    ctx: &serenity::Context,
    data: &Data,
    mci: &serenity::ComponentInteraction,
    id: &str,
) {
    let Some(v) = data.vault.clone() else {
        ephemeral(&ctx.http, mci, "Vault is not configured here.").await;
        return;
    };
    let open_id = v.ceremony.lock().await.as_ref().map(|c| c.id.clone());
    if open_id.as_deref() != Some(id) {
        ephemeral(
            &ctx.http,
            mci,
            "This ceremony is over; start a new one with /vault unseal.",
        )
        .await;
        return;
    }
    let perms = data.ops.identity.permissions();
    let is_keyholder =
        |roles: &std::collections::BTreeSet<String>| perms.allows(roles, "vault_unseal");
    match data
        .ops
        .identity
        .resolve_for(mci.user.id.get(), Freshness::Live, &is_keyholder)
        .await
    {
        Ok(p)
            if data
                .ops
                .identity
                .permissions()
                .allows(&p.roles, "vault_unseal") => {}
        Ok(p) => {
            ephemeral(
                &ctx.http,
                mci,
                &format!("⛔ {} is not a key holder.", p.person.login),
            )
            .await;
            return;
        }
        Err(e) => {
            ephemeral(&ctx.http, mci, &format!("⛔ {e}")).await;
            return;
        }
    }
    let input = serenity::CreateInputText::new(
        serenity::InputTextStyle::Short,
        "Your unseal key share",
        "share",
    )
    .placeholder("base64 or hex, as Vault printed it")
    .min_length(8)
    .max_length(200)
    .required(true);
    let modal = serenity::CreateModal::new(
        CustomId::VaultModal {
            ceremony: id.to_string(),
        }
        .to_string(),
        "Vault unseal key share",
    )
    .components(vec![serenity::CreateActionRow::InputText(input)]);
    if let Err(e) = mci
        .create_response(&ctx.http, serenity::CreateInteractionResponse::Modal(modal))
        .await
    {
        tracing::warn!("could not open the share form: {e}");
    }
}

/// Zeroises the typed share in an interaction copy the bot owns (a modal submit's `share`
/// field), so no copy of it is left in freed memory.
pub fn zeroize_shares(i: &mut serenity::Interaction) {
    use zeroize::Zeroize;
    if let serenity::Interaction::Modal(m) = i {
        for row in &mut m.data.components {
            for c in &mut row.components {
                if let serenity::ActionRowComponent::InputText(t) = c {
                    if let Some(v) = t.value.as_mut() {
                        v.zeroize();
                    }
                }
            }
        }
    }
}

/// The modal submit: the share goes straight to Vault and is dropped.
pub async fn handle_share_modal(
    ctx: &serenity::Context,
    data: &Data,
    m: &serenity::ModalInteraction,
    id: &str,
) {
    let started = Instant::now();
    let actor = Actor::discord(m.user.id.get(), &m.user.name);
    let share = m
        .data
        .components
        .iter()
        .flat_map(|row| row.components.iter())
        .find_map(|c| match c {
            serenity::ActionRowComponent::InputText(t) if t.custom_id == "share" => t.value.clone(),
            _ => None,
        })
        .map(ShareSecret::new);
    // Deferred ephemerally first: the key holder check (GitHub, live) and Vault may take
    // longer than Discord's 3 s, and the answer (a refusal too) is for the submitter only.
    if let Err(e) = m
        .create_response(
            &ctx.http,
            serenity::CreateInteractionResponse::Defer(
                serenity::CreateInteractionResponseMessage::new().ephemeral(true),
            ),
        )
        .await
    {
        tracing::warn!("could not acknowledge the share form: {e}");
    }
    let (text, outcome) = submit(data, m.user.id.get(), id, share).await;
    let _ = m
        .edit_response(
            &ctx.http,
            serenity::EditInteractionResponse::new().content(&text),
        )
        .await;
    data.ops
        .record(
            &actor,
            "vault_unseal.share",
            &serde_json::json!({ "ceremony": id }),
            outcome,
            Some(text),
            None,
            started,
        )
        .await;
    refresh(&ctx.http, data).await;
}

async fn submit(
    data: &Data,
    discord_id: u64,
    id: &str,
    share: Option<ShareSecret>,
) -> (String, Outcome) {
    let Some(v) = data.vault.clone() else {
        return ("Vault is not configured here.".into(), Outcome::Error);
    };
    let Some(share) = share else {
        return ("The form came back without a share.".into(), Outcome::Error);
    };
    let perms = data.ops.identity.permissions();
    let is_keyholder =
        |roles: &std::collections::BTreeSet<String>| perms.allows(roles, "vault_unseal");
    let who = match data
        .ops
        .identity
        .resolve_for(discord_id, Freshness::Live, &is_keyholder)
        .await
    {
        Ok(p)
            if data
                .ops
                .identity
                .permissions()
                .allows(&p.roles, "vault_unseal") =>
        {
            p
        }
        Ok(p) => {
            return (
                format!("⛔ {} is not a key holder.", p.person.login),
                Outcome::Denied,
            )
        }
        Err(e) => return (format!("⛔ {e}"), Outcome::Denied),
    };
    let mut slot = v.ceremony.lock().await;
    let Some(open) = slot.as_mut().filter(|c| c.id == id) else {
        return (
            "This ceremony is over; start a new one with /vault unseal.".into(),
            Outcome::Error,
        );
    };
    match open
        .ceremony
        .submit(who.person.github_id, &who.person.login, share)
        .await
    {
        Ok(CeremonyUpdate::Progress {
            progress,
            threshold,
            ..
        }) => (
            format!("Share accepted: {progress} of {threshold}."),
            Outcome::Ok,
        ),
        Ok(CeremonyUpdate::Unsealed { .. }) => {
            ("Share accepted: Vault is unsealed.".into(), Outcome::Ok)
        }
        Err(e @ CeremonyError::AlreadySubmitted { .. }) => (format!("⛔ {e}"), Outcome::Denied),
        Err(e) => (format!("⚠️ {e}"), Outcome::Error),
    }
}

/// Edits the ceremony message to its current state; announces an unseal in the alerts channel.
async fn refresh(http: &serenity::Http, data: &Data) {
    let Some(v) = data.vault.clone() else {
        return;
    };
    let mut slot = v.ceremony.lock().await;
    let Some(open) = slot.as_ref() else {
        return;
    };
    let state = open.ceremony.state();
    let (note, color, buttons) = match state {
        ops_core::vault::CeremonyState::Open => (String::new(), YELLOW, share_button(&open.id)),
        ops_core::vault::CeremonyState::Unsealed => {
            ("✅ **Vault is unsealed.**".to_string(), GREEN, vec![])
        }
        other => (
            format!("Ceremony {other:?}: start a new one with /vault unseal."),
            RED,
            vec![],
        ),
    };
    let mut page = render::ceremony_page(open, &note);
    page.color = color;
    let _ = serenity::ChannelId::new(open.channel_id)
        .edit_message(
            http,
            serenity::MessageId::new(open.message_id),
            serenity::EditMessage::new()
                .embed(page.to_embed())
                .components(buttons),
        )
        .await;
    if state == ops_core::vault::CeremonyState::Unsealed {
        let who = open.ceremony.submitted_by().join(", ");
        let _ = serenity::ChannelId::new(data.channels.alerts)
            .say(
                http,
                format!("🔓 Vault unsealed by key-holder ceremony ({who})."),
            )
            .await;
        approval_ui::audit_line(
            http,
            data,
            &format!("🔓 Vault unsealed by ceremony {} ({who})", open.id),
        )
        .await;
    }
    if state != ops_core::vault::CeremonyState::Open {
        *slot = None;
    }
}

/// Resets an idle ceremony (no share for the configured time) through the API.
pub async fn sweep_idle(http: &serenity::Http, data: &Data) {
    let Some(v) = data.vault.clone() else {
        return;
    };
    let reset = {
        let mut slot = v.ceremony.lock().await;
        let Some(open) = slot.as_mut() else {
            return;
        };
        open.ceremony.idle_reset(ops_core::ops::now_ms()).await
    };
    match reset {
        Ok(Some(r)) => {
            tracing::info!(
                progress_before = r.progress_before,
                "unseal ceremony reset after {} idle minutes",
                r.idle_minutes
            );
            refresh(http, data).await;
        }
        Ok(None) => {}
        Err(e) => tracing::warn!("idle reset of the unseal ceremony failed: {e}"),
    }
}
