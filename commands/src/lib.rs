//! sprocket-ops slash commands (poise). Thin: parse, check through ops-core, call ops-core,
//! render. [`all`] is the one explicit command list; each command's doc comment is its help
//! text and every parameter has a `#[description]`.
#![forbid(unsafe_code)]

pub mod alerts;
pub mod approval_ui;
pub mod break_glass;
pub mod deploy;
pub mod inflight;
pub mod render;
pub mod services;
pub mod vault;

use std::sync::Arc;

use ops_core::audit::{Actor, AuditFilter, Outcome};
use ops_core::github::{run_device_flow, GithubApi};
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
        status(),
        whoami(),
        link(),
        audit(),
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

async fn autocomplete_layer(
    ctx: Context<'_>,
    partial: &str,
) -> serenity::CreateAutocompleteResponse {
    let partial = partial.to_ascii_lowercase();
    let choices = ctx
        .data()
        .ops
        .layers
        .names()
        .filter(|n| n.contains(&partial))
        .map(serenity::AutocompleteChoice::from)
        .collect();
    serenity::CreateAutocompleteResponse::new().set_choices(choices)
}

/// Platform status: services and replicas by layer, probes, Vault, certificates, open alerts.
///
/// One embed (more pages when large), coloured by the worst state. Probes, certificates and
/// open alerts come from the alert watcher; without one, it says "alerts: not running".
#[poise::command(slash_command, guild_only)]
pub async fn status(
    ctx: Context<'_>,
    #[description = "Only this layer (layer_1, layer_2, platform)"]
    #[autocomplete = "autocomplete_layer"]
    layer: Option<String>,
) -> Result<(), Error> {
    let ops = ctx.data().ops.clone();
    if let Some(l) = &layer {
        ops.check_layer(l).map_err(UserError)?;
    }
    allow(ctx, "status", Access::Read).await?;
    ctx.defer().await?;
    let me = actor(ctx);
    let (report, vault) = tokio::join!(
        ops.audited(
            &me,
            "status",
            serde_json::json!({ "layer": layer }),
            || async { Ok(ops.status(layer.as_deref()).await) },
        ),
        status_vault(ctx.data()),
    );
    let report = report?;
    let mut health = render::HealthView {
        alerts: ctx.data().alert_control().map(|a| render::AlertsView {
            open: a.open_alerts(),
            probes: a.probe_results(),
            silences: a.silences(),
        }),
        vault,
        now_ms: ops_core::ops::now_ms(),
    };
    if let Some(l) = &layer {
        health = health.only_layer(l);
    }
    // The first page answers the interaction; further pages are follow-ups.
    for page in render::status_pages(&report, &health) {
        let page = page.redacted(&ops.redactor);
        ctx.send(CreateReply::default().embed(page.to_embed()))
            .await?;
    }
    Ok(())
}

/// How long `/status` waits for Vault's seal status (the interaction is already deferred).
const STATUS_VAULT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Vault's seal status for `/status`, asked directly when `[vault]` is configured and no
/// `vault_seal` probe already reports it. Errors are logged; the line is a safe summary.
async fn status_vault(data: &Data) -> Option<render::VaultView> {
    let api = &data.vault.as_ref()?.api;
    if data
        .alert_control()
        .is_some_and(|a| a.probe_results().iter().any(|p| p.kind == "vault_seal"))
    {
        return None;
    }
    Some(
        match tokio::time::timeout(STATUS_VAULT_WAIT, api.seal_status()).await {
            Err(_) => render::VaultView {
                ok: false,
                text: format!("did not answer within {} s", STATUS_VAULT_WAIT.as_secs()),
            },
            Ok(Err(e)) => {
                let id = ops_core::ops::new_error_id();
                let detail = data.ops.redactor.redact(&e.to_string()).into_owned();
                tracing::warn!(error_id = %id, %detail, "/status: vault seal status failed");
                render::VaultView {
                    ok: false,
                    text: format!("unreachable (error id {id})"),
                }
            }
            Ok(Ok(s)) if !s.initialized => render::VaultView {
                ok: false,
                text: "not initialised".into(),
            },
            Ok(Ok(s)) if s.sealed => render::VaultView {
                ok: false,
                text: format!(
                    "sealed: {}/{} unseal shares given (/vault unseal)",
                    s.progress, s.t
                ),
            },
            Ok(Ok(s)) => render::VaultView {
                ok: true,
                text: if s.version.is_empty() {
                    "unsealed".to_string()
                } else {
                    format!("unsealed, version {}", s.version)
                },
            },
        },
    )
}

/// Show who sprocket-ops thinks you are: your Discord identity, GitHub account, teams and roles.
#[poise::command(slash_command)]
pub async fn whoami(ctx: Context<'_>) -> Result<(), Error> {
    let me = actor(ctx);
    let started = std::time::Instant::now();
    let who = ctx
        .data()
        .ops
        .identity
        .resolve(
            ctx.author().id.get(),
            ops_core::github::Freshness::MayBeStale,
        )
        .await;
    let why = who.as_ref().err().map(|e| e.to_string());
    let page = render::whoami_page(&me, who.as_ref().map_err(|_| why.as_deref().unwrap_or("")));
    // Audited before answering, so the row exists once the caller sees the answer.
    ctx.data()
        .ops
        .record(
            &me,
            "whoami",
            &serde_json::json!({}),
            Outcome::Ok,
            None,
            None,
            started,
        )
        .await;
    ctx.send(
        CreateReply::default()
            .embed(page.to_embed())
            .ephemeral(true),
    )
    .await?;
    Ok(())
}

/// Link your Discord account to your GitHub account (GitHub device flow: open the link, enter a code).
#[poise::command(slash_command)]
pub async fn link(ctx: Context<'_>) -> Result<(), Error> {
    let Some(api) = ctx.data().link.clone() else {
        return Err(UserError("Linking is not set up here (github.client_id is not configured); ask an admin to add you to github.static_links.".into()).into());
    };
    allow_with(ctx, "link", Access::Read, true).await?;
    ctx.defer_ephemeral().await?;
    let started = std::time::Instant::now();
    let code = api
        .start_device_flow()
        .await
        .map_err(|e| UserError(format!("GitHub: {e}")))?;
    let handle = ctx
        .send(
            CreateReply::default()
                .content(format!(
                    "Open {} and enter the code **{}** within {} minutes. I will link the account that approves it.",
                    code.verification_uri,
                    code.user_code,
                    code.expires_in / 60
                ))
                .ephemeral(true),
        )
        .await?;
    let result = run_device_flow(api.as_ref(), &code, tokio::time::sleep).await;
    let me = actor(ctx);
    let (text, outcome) = match result {
        Ok(user) => {
            ctx.data()
                .ops
                .identity
                .link(ctx.author().id.get(), &user)
                .await
                .map_err(|e| UserError(e.to_string()))?;
            (
                format!(
                    "Linked to GitHub account `{}`. Run /whoami to see your roles.",
                    user.login
                ),
                Outcome::Ok,
            )
        }
        Err(e) => (format!("Not linked: {e}"), Outcome::Error),
    };
    handle
        .edit(ctx, CreateReply::default().content(&text).ephemeral(true))
        .await?;
    ctx.data()
        .ops
        .record(
            &me,
            "link",
            &serde_json::json!({}),
            outcome,
            Some(text),
            None,
            started,
        )
        .await;
    Ok(())
}

/// Show the audit log: who did what, newest first.
#[poise::command(slash_command, guild_only)]
pub async fn audit(
    ctx: Context<'_>,
    #[description = "Only this Discord user"] user: Option<serenity::User>,
    #[description = "Only entries newer than this, like 30m, 12h or 7d"] since: Option<String>,
) -> Result<(), Error> {
    let since_ms = match &since {
        Some(s) => Some(ops_core::ops::now_ms() - parse_age(s).map_err(UserError)?),
        None => None,
    };
    allow_with(ctx, "audit", Access::Read, true).await?;
    ctx.defer_ephemeral().await?;
    let filter = AuditFilter {
        actor_id: user.as_ref().map(|u| u.id.get().to_string()),
        since_ms,
        limit: 25,
    };
    let ops = ctx.data().ops.clone();
    let rows = ops
        .audited(
            &actor(ctx),
            "audit",
            serde_json::json!({ "user": filter.actor_id, "since": since }),
            || async {
                ops.audit_log(&filter)
                    .await
                    .map_err(|e| ops.fail("the audit log is unavailable", &e))
            },
        )
        .await?;
    let page = render::audit_page(&rows);
    ctx.send(
        CreateReply::default()
            .embed(page.to_embed())
            .ephemeral(true),
    )
    .await?;
    Ok(())
}

/// `30m`, `12h`, `7d`, `90s` -> milliseconds.
pub fn parse_age(s: &str) -> Result<i64, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| format!("`{s}`: expected a number and a unit, like 30m, 12h or 7d"))?;
    let mult = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("`{s}`: the unit must be s, m, h or d")),
    };
    n.checked_mul(mult)
        .filter(|v| *v <= 3_650 * 86_400_000)
        .ok_or_else(|| format!("`{s}` is too long ago"))
}

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
