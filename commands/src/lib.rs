//! sprocket-ops slash commands (poise). Thin: parse, check through ops-core, call ops-core,
//! render. [`all`] is the one explicit command list; each command's doc comment is its help
//! text and every parameter has a `#[description]`.
#![forbid(unsafe_code)]

pub mod alerts;
pub mod approval_ui;
pub mod audit;
pub mod break_glass;
pub mod deploy;
pub mod inflight;
pub mod link;
pub mod render;
pub mod services;
pub mod status;
pub mod vault;
pub mod whoami;

use std::sync::Arc;

use ops_core::audit::{Actor, Outcome};
use ops_core::github::GithubApi;
use ops_core::identity::Principal;
use ops_core::ops::Access;
use ops_core::Ops;
use poise::serenity_prelude as serenity;
use poise::CreateReply;

/// The channels the bot posts to.
#[derive(Debug, Clone, Copy)]
pub struct Channels {
    pub alerts: u64,
    pub approvals: u64,
    pub audit: u64,
}

/// State shared by every command (cheap to clone: handles only).
#[derive(Clone)]
pub struct Data {
    pub ops: Arc<Ops>,
    pub guild_id: u64,
    pub channels: Channels,
    /// The GitHub API for `/link` (device flow), when a client id is configured.
    pub link: Option<Arc<dyn GithubApi>>,
    /// Running commands and clicks, for graceful shutdown.
    pub inflight: Arc<inflight::InFlight>,
    /// How long `/logs follow:true` streams before stopping by itself.
    pub logs_follow: std::time::Duration,
    /// Vault, when `[vault]` is configured.
    pub vault: Option<Arc<vault::VaultState>>,
    /// The alert watcher (open alerts, probe results, silences), when `[alerts]` is configured
    /// and the watcher started.
    pub alerts: Option<Arc<dyn ops_core::alerts::AlertControl>>,
    /// Set when the watcher's task has ended (shutdown, or a crash): from then on commands
    /// treat the watcher as not running rather than show its last state.
    pub alerts_ended: Arc<std::sync::atomic::AtomicBool>,
    /// Where each approval request of this process was made (request id -> channel id): an
    /// approved deploy's live progress and final report are posted there for the requester,
    /// besides the approvals channel. Not persisted: after a restart only the approvals
    /// channel follows the run. An entry is taken when its run starts, and entries older than
    /// [`approval_ui::ORIGIN_TTL`] are dropped whenever one is added (requests that were
    /// denied or expired), so the map stays small in a long-running bot.
    pub request_origins:
        Arc<std::sync::Mutex<std::collections::HashMap<String, (u64, std::time::Instant)>>>,
}

impl Data {
    /// The alert watcher's handle while its task runs.
    pub fn alert_control(&self) -> Option<Arc<dyn ops_core::alerts::AlertControl>> {
        if self.alerts_ended.load(std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        self.alerts.clone()
    }
}

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Context<'a> = poise::Context<'a, Data, Error>;

/// A mistake in what the user typed: shown to them (ephemeral) as is, nothing was executed.
#[derive(Debug)]
pub struct UserError(pub String);

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for UserError {}

/// Every command the bot registers, in help order. Layer commands (`/deploy <layer>`,
/// `/rollback <layer>`) come from the configured layers.
pub fn all(layers: &[deploy::LayerSpec]) -> Vec<poise::Command<Data, Error>> {
    let mut rollback = services::rollback();
    deploy::add_layer_rollbacks(&mut rollback, layers);
    vec![
        status::status(),
        whoami::whoami(),
        link::link(),
        audit::audit(),
        services::logs(),
        services::bump(),
        services::scale(),
        services::restart(),
        rollback,
        deploy::deploy_tree(layers),
        deploy::cancel(),
        deploy::locks(),
        deploy::unlock(),
        deploy::history(),
        vault::vault_cmd(),
        alerts::silence(),
    ]
}

pub(crate) fn actor(ctx: Context<'_>) -> Actor {
    Actor::discord(ctx.author().id.get(), &ctx.author().name)
}

/// Checks the caller's role for `command` (permissions.toml) and rate limits; a refusal is an
/// ephemeral message and nothing runs.
async fn allow(
    ctx: Context<'_>,
    command: &str,
    access: Access,
) -> Result<Option<Principal>, Error> {
    allow_with(ctx, command, access, false).await
}

/// Discord wants an answer within 3 s: a role check that takes longer than this (a cold cache
/// and a slow GitHub) defers the interaction first, then finishes.
pub(crate) const ACK_BUDGET: std::time::Duration = std::time::Duration::from_millis(1500);

/// As [`allow`]; `private` defers ephemerally when the check is slow (commands whose answer is
/// for the caller only). A refusal is always ephemeral: after a public defer, the public
/// "thinking" message is deleted and the refusal is sent as an ephemeral follow-up.
async fn allow_with(
    ctx: Context<'_>,
    command: &str,
    access: Access,
    private: bool,
) -> Result<Option<Principal>, Error> {
    let actor = actor(ctx);
    let check = ctx
        .data()
        .ops
        .authorize(&actor, ctx.author().id.get(), command, access);
    tokio::pin!(check);
    let mut deferred_publicly = false;
    let result = match tokio::time::timeout(ACK_BUDGET, &mut check).await {
        Ok(r) => r,
        Err(_) => {
            if private {
                ctx.defer_ephemeral().await?;
            } else {
                ctx.defer().await?;
                deferred_publicly = true;
            }
            check.await
        }
    };
    if result.is_err() && deferred_publicly {
        if let Context::Application(a) = ctx {
            // Without this, the refusal would replace the public "thinking" message.
            if let Err(e) = a.interaction.delete_response(ctx.http()).await {
                tracing::warn!("could not delete the deferred response before a refusal: {e}");
            }
        }
    }
    result.map_err(|d| UserError(format!("Not allowed: {d}")).into())
}

/// Where and how often button clicks and modal submits are accepted, before their handlers
/// run (and before anyone asks who the clicker is): the guild/channel allow-list of
/// permissions.toml, where the bot's own channels (alerts, approvals, audit) count as allowed
/// in an allowed guild because the bot posts its buttons there, and the Discord id's rate
/// limit. `Err` is the refusal to show (ephemerally).
pub async fn gate(
    data: &Data,
    user: &serenity::User,
    guild: Option<serenity::GuildId>,
    channel: serenity::ChannelId,
    what: &str,
) -> Result<(), String> {
    let perms = data.ops.identity.permissions();
    let guild = guild.map(|g| g.get());
    let own = [
        data.channels.alerts,
        data.channels.approvals,
        data.channels.audit,
    ];
    let allowed = perms.channel_allowed(data.guild_id, guild, channel.get())
        || (own.contains(&channel.get()) && perms.guild_allowed(data.guild_id, guild));
    let refusal = if !allowed {
        "Buttons and forms are not accepted in this channel: nothing was run.".to_string()
    } else {
        match data.ops.admit(user.id.get()) {
            Ok(()) => return Ok(()),
            Err(d) => format!("Not allowed: {d}"),
        }
    };
    if !first_refusal_in_window(user.id.get()) {
        return Err(refusal);
    }
    data.ops
        .record(
            &Actor::discord(user.id.get(), &user.name),
            what,
            &serde_json::json!({ "channel": channel.get().to_string() }),
            Outcome::Denied,
            Some(refusal.clone()),
            None,
            std::time::Instant::now(),
        )
        .await;
    Err(refusal)
}

/// How long the gate's refusals of one Discord account are audited once: a flood of refused
/// commands or clicks writes one audit row per account per window, not one per attempt (the
/// audit table is append-only).
pub const REFUSAL_AUDIT_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// Whether this refusal of `discord_id` is the first within [`REFUSAL_AUDIT_WINDOW`] (and so
/// audited). Bounded: entries older than the window are dropped when the map grows.
fn first_refusal_in_window(discord_id: u64) -> bool {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex};
    use std::time::Instant;
    static LAST: LazyLock<Mutex<HashMap<u64, Instant>>> = LazyLock::new(Default::default);
    let now = Instant::now();
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if last.len() > 10_000 {
        last.retain(|_, at| now.duration_since(*at) < REFUSAL_AUDIT_WINDOW);
    }
    match last.get(&discord_id) {
        Some(at) if now.duration_since(*at) < REFUSAL_AUDIT_WINDOW => false,
        _ => {
            last.insert(discord_id, now);
            true
        }
    }
}

/// [`gate`] for a button click or select; a refusal is answered ephemerally. `false`: refused.
pub async fn gate_component(
    ctx: &serenity::Context,
    data: &Data,
    mci: &serenity::ComponentInteraction,
) -> bool {
    let Err(refusal) = gate(
        data,
        &mci.user,
        mci.guild_id,
        mci.channel_id,
        "interaction.click",
    )
    .await
    else {
        return true;
    };
    let reply = serenity::CreateInteractionResponse::Message(
        serenity::CreateInteractionResponseMessage::new()
            .content(format!("⛔ {refusal}"))
            .ephemeral(true),
    );
    if let Err(e) = mci.create_response(&ctx.http, reply).await {
        tracing::warn!("could not answer a refused click: {e}");
    }
    false
}

/// [`gate`] for a modal submit; a refusal is answered ephemerally. `false`: refused.
pub async fn gate_modal(
    ctx: &serenity::Context,
    data: &Data,
    m: &serenity::ModalInteraction,
) -> bool {
    let Err(refusal) = gate(data, &m.user, m.guild_id, m.channel_id, "interaction.modal").await
    else {
        return true;
    };
    let reply = serenity::CreateInteractionResponse::Message(
        serenity::CreateInteractionResponseMessage::new()
            .content(format!("⛔ {refusal}"))
            .ephemeral(true),
    );
    if let Err(e) = m.create_response(&ctx.http, reply).await {
        tracing::warn!("could not answer a refused form: {e}");
    }
    false
}

/// The global check: interactions are only accepted from allowed guilds and channels, and not
/// once shutdown has begun, and they spend the Discord id's rate limit before anything asks
/// who the person is. Accepted invocations hold an in-flight guard until they end.
pub async fn channel_check(ctx: Context<'_>) -> Result<bool, Error> {
    let perms = ctx.data().ops.identity.permissions();
    if !perms.channel_allowed(
        ctx.data().guild_id,
        ctx.guild_id().map(|g| g.get()),
        ctx.channel_id().get(),
    ) {
        return Ok(false);
    }
    if let Err(d) = ctx.data().ops.admit(ctx.author().id.get()) {
        if !first_refusal_in_window(ctx.author().id.get()) {
            return Err(UserError(format!("Not allowed: {d}")).into());
        }
        ctx.data()
            .ops
            .record(
                &actor(ctx),
                &ctx.command().qualified_name,
                &serde_json::json!({}),
                Outcome::Denied,
                Some(d.0.clone()),
                None,
                std::time::Instant::now(),
            )
            .await;
        return Err(UserError(format!("Not allowed: {d}")).into());
    }
    let Some(guard) = ctx.data().inflight.enter() else {
        return Err(UserError(SHUTTING_DOWN.into()).into());
    };
    // Dropped with the invocation, whether it succeeds or fails.
    ctx.set_invocation_data(guard).await;
    Ok(true)
}

pub(crate) const SHUTTING_DOWN: &str =
    "sprocket-ops is restarting: nothing was run; try again in a minute.";

/// The framework's error handler: user mistakes are shown to the user; anything else is logged
/// with an error id and the user sees only a safe summary with that id.
pub async fn on_error(err: poise::FrameworkError<'_, Data, Error>) {
    let (ctx, text) = match err {
        poise::FrameworkError::Command { error, ctx, .. } => {
            let text = if let Some(u) = error.downcast_ref::<UserError>() {
                u.0.clone()
            } else if let Some(o) = error.downcast_ref::<ops_core::OpsError>() {
                o.to_string()
            } else {
                let id = ops_core::ops::new_error_id();
                let detail = ctx
                    .data()
                    .ops
                    .redactor
                    .redact(&error.to_string())
                    .into_owned();
                tracing::error!(error_id = %id, command = %ctx.command().name, %detail, "command failed");
                format!("Something went wrong (error id {id}).")
            };
            (ctx, text)
        }
        poise::FrameworkError::ArgumentParse {
            error, input, ctx, ..
        } => {
            let text = match input {
                Some(i) => format!("Invalid option `{i}`: {error}"),
                None => format!("Invalid options: {error}"),
            };
            (ctx, text)
        }
        poise::FrameworkError::GuildOnly { ctx, .. } => (
            ctx,
            "This command works in the operations server only.".to_string(),
        ),
        poise::FrameworkError::PermissionFetchFailed { ctx, .. } => (
            ctx,
            "Discord did not tell me this channel's permissions; try again in a moment."
                .to_string(),
        ),
        poise::FrameworkError::CommandCheckFailed { ctx, error, .. } => match error {
            Some(e) => (ctx, e.to_string()),
            None => (
                ctx,
                "Commands are not accepted in this channel.".to_string(),
            ),
        },
        poise::FrameworkError::CommandStructureMismatch {
            ctx, description, ..
        } => {
            tracing::warn!(command = %ctx.command().name, "options do not match the registered command: {description}");
            (
                poise::Context::Application(ctx),
                "The options sent do not match this command (it may have just been updated): try again.".to_string(),
            )
        }
        other => {
            tracing::warn!("framework error: {other}");
            return;
        }
    };
    let reply = CreateReply::default()
        .content(format!("⚠️ {}", render::clip(&text, 1900)))
        .ephemeral(true);
    if let Err(e) = ctx.send(reply).await {
        tracing::warn!("could not send the error reply: {e}");
    }
}

#[cfg(test)]
mod refusal_audit_tests {
    use super::first_refusal_in_window;

    #[test]
    fn a_flood_of_refusals_from_one_account_is_audited_once_per_window() {
        // Ids no other test uses (the window is process-wide).
        let (flooder, other) = (u64::MAX - 17, u64::MAX - 18);
        assert!(first_refusal_in_window(flooder), "the first is audited");
        for _ in 0..200 {
            assert!(
                !first_refusal_in_window(flooder),
                "the rest of the flood is not"
            );
        }
        assert!(
            first_refusal_in_window(other),
            "another account's first still is"
        );
    }
}
