//! `/whoami`: who sprocket-ops thinks the caller is (Discord identity, GitHub account, teams,
//! roles), audited before the answer.

use ops_core::audit::Outcome;
use poise::CreateReply;

use crate::{actor, render, Context, Error};

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
