//! sprocket-ops slash commands (poise). Thin: parse, check through ops-core, call ops-core,
//! render. [`all`] is the one explicit command list; each command's doc comment is its help
//! text and every parameter has a `#[description]`.
#![forbid(unsafe_code)]

pub mod render;

use std::sync::Arc;

use ops_core::audit::Actor;
use ops_core::Ops;
use poise::serenity_prelude as serenity;
use poise::CreateReply;

/// State shared by every command.
pub struct Data {
    pub ops: Arc<Ops>,
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

/// Every command the bot registers, in help order.
pub fn all() -> Vec<poise::Command<Data, Error>> {
    vec![status(), whoami()]
}

fn actor(ctx: Context<'_>) -> Actor {
    Actor::discord(ctx.author().id.get(), &ctx.author().name)
}

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

/// Show the platform's Swarm services by layer: running/desired replicas, image, failing tasks.
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
    ctx.defer().await?;
    let report = ops
        .audited(
            &actor(ctx),
            "status",
            serde_json::json!({ "layer": layer }),
            || async { Ok(ops.status(layer.as_deref()).await) },
        )
        .await?;
    // The first page answers the interaction; further pages are follow-ups.
    for page in render::status_pages(&report) {
        ctx.send(CreateReply::default().embed(page.to_embed()))
            .await?;
    }
    Ok(())
}

/// Show who sprocket-ops thinks you are: your Discord identity and linked GitHub account.
#[poise::command(slash_command)]
pub async fn whoami(ctx: Context<'_>) -> Result<(), Error> {
    let me = actor(ctx);
    let embed = render::whoami_embed(&me);
    ctx.send(CreateReply::default().embed(embed).ephemeral(true))
        .await?;
    ctx.data()
        .ops
        .record(
            &me,
            "whoami",
            &serde_json::json!({}),
            ops_core::audit::Outcome::Ok,
            None,
            None,
            std::time::Instant::now(),
        )
        .await;
    Ok(())
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
