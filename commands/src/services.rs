//! The Swarm service commands: `/bump`, `/scale`, `/restart`, `/rollback service`, `/logs`.
//! Changes follow the rollout and edit one message at most every 2 s until it completes, pauses
//! or rolls back; a rollback done by Swarm is reported as a failed deploy. Scaling to zero and
//! rollbacks become approval requests.

use std::time::{Duration, Instant};

use futures::StreamExt;
use ops_core::ops::Access;
use ops_core::services::{ChangeError, Route, ServiceChange};
use std::collections::VecDeque;

use ops_core::swarm::logs::{LogQuery, LogStream};
use ops_core::swarm::rollout::RolloutOutcome;
use ops_core::swarm::UpdateStarted;
use poise::serenity_prelude as serenity;
use poise::CreateReply;

use crate::render::{self, Page};
use crate::{actor, allow, approval_ui, Context, Error, UserError};

/// Edits of a progress message are at most this frequent.
pub const EDIT_INTERVAL: Duration = Duration::from_secs(2);
/// How long a rollout is followed before the report says "still in progress".
const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(600);

pub(crate) async fn autocomplete_service(
    ctx: Context<'_>,
    partial: &str,
) -> serenity::CreateAutocompleteResponse {
    let choices = ctx
        .data()
        .ops
        .service_names(partial)
        .await
        .into_iter()
        .map(serenity::AutocompleteChoice::from)
        .collect();
    serenity::CreateAutocompleteResponse::new().set_choices(choices)
}

/// Follows a change, editing the reply at most every [`EDIT_INTERVAL`]; returns the outcome.
async fn follow_and_report(
    ctx: Context<'_>,
    what: &str,
    started: &UpdateStarted,
) -> Result<(), Error> {
    let ops = ctx.data().ops.clone();
    let begun = Instant::now();
    let first = render::rollout_page(what, started, None, begun.elapsed());
    let handle = ctx
        .send(CreateReply::default().embed(first.to_embed()))
        .await?;
    let mut stream = ops.follow(started, ROLLOUT_TIMEOUT).await?;
    let mut last_edit = Instant::now();
    let mut pending: Option<Page> = None;
    let mut outcome = None;
    while let Some(p) = stream.next().await {
        let done = p.outcome.is_some();
        let page = render::rollout_page(what, started, Some(&p), begun.elapsed());
        outcome = p.outcome.clone();
        if done || last_edit.elapsed() >= EDIT_INTERVAL {
            handle
                .edit(ctx, CreateReply::default().embed(page.to_embed()))
                .await?;
            last_edit = Instant::now();
            pending = None;
        } else {
            pending = Some(page);
        }
        if done {
            break;
        }
    }
    if let Some(page) = pending {
        handle
            .edit(ctx, CreateReply::default().embed(page.to_embed()))
            .await?;
    }
    match outcome {
        Some(RolloutOutcome::Completed) => Ok(()),
        Some(RolloutOutcome::RolledBack { .. }) => {
            Err(UserError(format!("{what}: failed, Swarm rolled it back")).into())
        }
        Some(RolloutOutcome::Paused { .. }) => {
            Err(UserError(format!("{what}: paused by Swarm")).into())
        }
        Some(RolloutOutcome::TimedOut) | None => Err(UserError(format!(
            "{what}: still in progress after {} s",
            ROLLOUT_TIMEOUT.as_secs()
        ))
        .into()),
        Some(RolloutOutcome::Failed(e)) => Err(ops.swarm_error(e).into()),
    }
}

/// How a change requested in Discord goes on, as ops-core routed it.
enum Routed {
    /// It runs now, on this service (the resolved name).
    Now(Box<ops_core::swarm::ServiceDetail>),
    /// An approval request was made (or the refusal shown): nothing more to do.
    Handled,
}

/// Routes `change` of `service` through ops-core ([`ops_core::Ops::route_change`]) within
/// the acknowledgement budget (so a refusal is the ephemeral first answer), then: an
/// approval request is made and announced; a refusal is audited as denied and shown to the
/// caller only; a change that may run now is returned. `begun`: when the command started.
async fn route(
    ctx: Context<'_>,
    who: Option<&ops_core::identity::Principal>,
    service: &str,
    change: &ServiceChange,
    begun: Instant,
) -> Result<Routed, Error> {
    let ops = ctx.data().ops.clone();
    let started = Instant::now();
    let routing = ops.route_change(service, change);
    tokio::pin!(routing);
    let budget = crate::ACK_BUDGET.saturating_sub(begun.elapsed());
    let routed = match tokio::time::timeout(budget, &mut routing).await {
        Ok(r) => r,
        Err(_) => {
            // Not yet known whether this is a refusal: defer privately, so a refusal is never
            // public (a change that may run then reports to the caller only).
            ctx.defer_ephemeral().await?;
            routing.await
        }
    };
    let refusal = match routed {
        Ok(Route::Direct(d)) => return Ok(Routed::Now(Box::new(d))),
        Ok(Route::Approval(plan)) => {
            let who = who.ok_or_else(|| UserError("link your GitHub account first".into()))?;
            ctx.defer().await?;
            let summary = format!("{} (requested by {})", plan.summary, who.person.login);
            request_approval(ctx, who, &plan.action, plan.params, &summary).await?;
            return Ok(Routed::Handled);
        }
        Ok(Route::BreakGlassOnly { reason, .. }) => reason,
        Err(ChangeError::Refused(reason)) => reason,
        Err(ChangeError::Failed(e)) => return Err(e.into()),
    };
    ops.record(
        &actor(ctx),
        change.command(),
        &serde_json::json!({ "service": service }),
        ops_core::audit::Outcome::Denied,
        Some(refusal.clone()),
        None,
        started,
    )
    .await;
    Err(UserError(refusal).into())
}

/// Set one service's image tag (or a full reference) and follow the rollout.
///
/// A full reference must name a repository of `[images] allowed`; a service of a layer that
/// always needs approval gets an approval request instead.
#[poise::command(slash_command, guild_only)]
pub async fn bump(
    ctx: Context<'_>,
    #[description = "The Swarm service"]
    #[autocomplete = "autocomplete_service"]
    service: String,
    #[description = "A tag (v2) or a full image reference"] tag: String,
) -> Result<(), Error> {
    let begun = Instant::now();
    ops_core::swarm::imageref::ImageTarget::parse(&tag)
        .map_err(|e| UserError(format!("Invalid image: {e}")))?;
    let who = allow(ctx, "bump", Access::Change).await?;
    let change = ServiceChange::Bump(tag.clone());
    let Routed::Now(d) = route(ctx, who.as_ref(), &service, &change, begun).await? else {
        return Ok(());
    };
    ctx.defer().await?;
    let ops = ctx.data().ops.clone();
    let service = d.name.clone();
    let params = serde_json::json!({ "service": service, "tag": tag });
    ops.audited(&actor(ctx), "bump", params, || async {
        let started = ops.bump(&service, &tag).await?;
        follow_and_report(
            ctx,
            &format!("bump {service} to {}", started.image_after),
            &started,
        )
        .await
        .map_err(|e| as_ops_error(&ops, e))
    })
    .await?;
    Ok(())
}

/// Set a service's replica count (scaling to 0 needs a second engineer's approval).
#[poise::command(slash_command, guild_only)]
pub async fn scale(
    ctx: Context<'_>,
    #[description = "The Swarm service"]
    #[autocomplete = "autocomplete_service"]
    service: String,
    #[description = "Replicas (0 asks for an approval)"]
    #[max = 100]
    replicas: u32,
) -> Result<(), Error> {
    let begun = Instant::now();
    let ops = ctx.data().ops.clone();
    let access = if replicas == 0 {
        Access::Destructive
    } else {
        Access::Change
    };
    let who = allow(ctx, "scale", access).await?;
    let change = ServiceChange::Scale(u64::from(replicas));
    let Routed::Now(d) = route(ctx, who.as_ref(), &service, &change, begun).await? else {
        return Ok(());
    };
    ctx.defer().await?;
    let service = d.name.clone();
    let params = serde_json::json!({ "service": service, "replicas": replicas });
    ops.audited(&actor(ctx), "scale", params, || async {
        let started = ops.scale(&service, u64::from(replicas)).await?;
        follow_and_report(ctx, &format!("scale {service} to {replicas}"), &started)
            .await
            .map_err(|e| as_ops_error(&ops, e))
    })
    .await?;
    Ok(())
}

/// Restart a service: a forced rolling restart of its tasks.
#[poise::command(slash_command, guild_only)]
pub async fn restart(
    ctx: Context<'_>,
    #[description = "The Swarm service"]
    #[autocomplete = "autocomplete_service"]
    service: String,
) -> Result<(), Error> {
    let begun = Instant::now();
    let who = allow(ctx, "restart", Access::Change).await?;
    let Routed::Now(d) = route(ctx, who.as_ref(), &service, &ServiceChange::Restart, begun).await?
    else {
        return Ok(());
    };
    ctx.defer().await?;
    let ops = ctx.data().ops.clone();
    let service = d.name.clone();
    ops.audited(
        &actor(ctx),
        "restart",
        serde_json::json!({ "service": service }),
        || async {
            let started = ops.restart(&service).await?;
            follow_and_report(ctx, &format!("restart {service}"), &started)
                .await
                .map_err(|e| as_ops_error(&ops, e))
        },
    )
    .await?;
    Ok(())
}

/// Roll back a service or a layer (needs a second engineer's approval).
#[poise::command(
    slash_command,
    guild_only,
    subcommands("rollback_service"),
    subcommand_required
)]
pub async fn rollback(_ctx: Context<'_>) -> Result<(), Error> {
    Ok(())
}

/// Roll a service back to its previous spec (Swarm's own rollback), after approval.
#[poise::command(slash_command, guild_only, rename = "service")]
pub async fn rollback_service(
    ctx: Context<'_>,
    #[description = "The Swarm service"]
    #[autocomplete = "autocomplete_service"]
    name: String,
) -> Result<(), Error> {
    let begun = Instant::now();
    let who = allow(ctx, "rollback", Access::Destructive)
        .await?
        .ok_or_else(|| UserError("link your GitHub account first".into()))?;
    match route(ctx, Some(&who), &name, &ServiceChange::Rollback, begun).await? {
        Routed::Handled => Ok(()),
        // ops-core routes every rollback to an approval; running one directly would be a bug.
        Routed::Now(d) => Err(UserError(format!(
            "refused: a rollback of `{}` needs an approval, and none was requested",
            d.name
        ))
        .into()),
    }
}

pub(crate) async fn request_approval(
    ctx: Context<'_>,
    who: &ops_core::identity::Principal,
    action: &str,
    params: serde_json::Value,
    summary: &str,
) -> Result<(), Error> {
    let ops = ctx.data().ops.clone();
    let started = Instant::now();
    let result = approval_ui::request(
        ctx.http(),
        ctx.data(),
        who,
        action,
        params.clone(),
        summary,
        ctx.channel_id().get(),
    )
    .await;
    let (outcome, detail) = match &result {
        Ok((req, _)) => (
            ops_core::audit::Outcome::Ok,
            format!("approval requested: {}", req.id),
        ),
        Err(e) => (ops_core::audit::Outcome::Denied, e.to_string()),
    };
    ops.record(
        &actor(ctx),
        &format!("request.{action}"),
        &params,
        outcome,
        Some(detail),
        None,
        started,
    )
    .await;
    let (req, link) = result?;
    ctx.send(CreateReply::default().content(format!(
        "Approval requested from {}: {} — {link}",
        req.rule.approver_roles.join(" or "),
        req.summary
    )))
    .await?;
    Ok(())
}

fn as_ops_error(ops: &ops_core::Ops, e: Error) -> ops_core::OpsError {
    match e.downcast::<ops_core::OpsError>() {
        Ok(o) => *o,
        Err(e) => match e.downcast::<UserError>() {
            Ok(u) => ops_core::OpsError {
                summary: u.0,
                error_id: ops_core::ops::new_error_id(),
            },
            Err(e) => ops.fail("Discord request failed", &e),
        },
    }
}

/// Show a service's recent logs, secrets redacted (stdout and stderr apart), to you only.
///
/// `public:true` posts them in the channel instead (and `follow:true` then streams into a
/// thread; without it, the private answer itself is edited with the newest lines).
#[poise::command(slash_command, guild_only)]
pub async fn logs(
    ctx: Context<'_>,
    #[description = "The Swarm service"]
    #[autocomplete = "autocomplete_service"]
    service: String,
    #[description = "Only lines newer than this, like 10m, 2h or 1d"] since: Option<String>,
    #[description = "Only the last N lines of each task (default 200)"]
    #[max = 100000]
    tail: Option<u32>,
    #[description = "Only lines containing this text"] grep: Option<String>,
    #[description = "Keep streaming new lines for a few minutes"] follow: Option<bool>,
    #[description = "Post in the channel for everyone (default: only you see the logs)"]
    public: Option<bool>,
) -> Result<(), Error> {
    let public = public == Some(true);
    let since_secs = match &since {
        Some(s) => Some(
            (ops_core::ops::now_ms() - ops_core::duration::parse_age(s).map_err(UserError)?) / 1000,
        ),
        None => None,
    };
    crate::allow_with(ctx, "logs", Access::Read, !public).await?;
    if public {
        ctx.defer().await?;
    } else {
        ctx.defer_ephemeral().await?;
    }
    if follow == Some(true) {
        return follow_logs(ctx, &service, since_secs, grep, public).await;
    }
    let limit = match ctx {
        poise::Context::Application(a) => a.interaction.attachment_size_limit as usize,
        poise::Context::Prefix(_) => 8 * 1024 * 1024,
    };
    // Two attachments (stdout, stderr) must fit the interaction's limit together.
    let max_bytes = (limit / 2).clamp(1024, 8 * 1024 * 1024);
    let query = LogQuery {
        since: since_secs,
        tail: Some(u64::from(tail.unwrap_or(200))),
        follow: false,
        timestamps: false,
    };
    let ops = ctx.data().ops.clone();
    let params = serde_json::json!({ "service": service, "since": since, "tail": tail, "grep": grep, "public": public });
    let logs = ops
        .audited(&actor(ctx), "logs", params, || async {
            ops.logs(&service, query, grep.as_deref(), max_bytes).await
        })
        .await?;
    let header = format!(
        "**{service}** logs: {} line(s){}{}",
        logs.lines,
        if logs.truncated {
            ", oldest cut to fit"
        } else {
            ""
        },
        if logs.error.is_some() {
            ", the stream ended with an error"
        } else {
            ""
        },
    );
    let inline = 1900usize.saturating_sub(header.len() + 40);
    let mut reply = CreateReply::default().ephemeral(!public);
    if logs.stdout.len() + logs.stderr.len() <= inline {
        let mut text = header;
        for (name, body) in [("stdout", &logs.stdout), ("stderr", &logs.stderr)] {
            if !body.is_empty() {
                text.push_str(&format!(
                    "\n{name}:\n```\n{}\n```",
                    body.replace("```", "'''")
                ));
            }
        }
        if logs.stdout.is_empty() && logs.stderr.is_empty() {
            text.push_str("\n(no lines)");
        }
        reply = reply.content(text);
    } else {
        reply = reply.content(header);
        for (name, body) in [("stdout", &logs.stdout), ("stderr", &logs.stderr)] {
            if !body.is_empty() {
                reply = reply.attachment(serenity::CreateAttachment::bytes(
                    body.as_bytes().to_vec(),
                    format!("{service}-{name}.txt"),
                ));
            }
        }
    }
    ctx.send(reply).await?;
    Ok(())
}

/// Lines kept for the live message: the newest that fit one Discord message.
const FOLLOW_WINDOW: usize = 1800;
/// A private `/logs follow:true` stops after this long at most: it edits the answer through
/// the interaction token, which Discord honours for 15 minutes.
const PRIVATE_FOLLOW_MAX: Duration = Duration::from_secs(14 * 60);

/// Where `/logs follow:true` shows the newest lines.
enum Live<'a> {
    /// A message in a thread made from the public answer.
    Thread(Box<serenity::Message>),
    /// The private answer itself, under its header.
    Reply {
        handle: poise::ReplyHandle<'a>,
        header: String,
    },
}

impl Live<'_> {
    async fn show(&mut self, ctx: Context<'_>, text: &str) -> Result<(), Error> {
        match self {
            Live::Thread(m) => {
                m.edit(
                    ctx.http(),
                    serenity::EditMessage::new().content(render::clip(text, 1990)),
                )
                .await?
            }
            Live::Reply { handle, header } => {
                let text = render::clip(&format!("{header}\n{text}"), 1990);
                handle
                    .edit(ctx, CreateReply::default().content(text).ephemeral(true))
                    .await?
            }
        }
        Ok(())
    }
}

/// `/logs follow:true`: one message in a thread, edited at most every 2 s with the newest
/// redacted lines, until the configured time is up. Memory stays bounded: only the window of
/// lines that fit one message is kept.
async fn follow_logs(
    ctx: Context<'_>,
    service: &str,
    since: Option<i64>,
    grep: Option<String>,
    public: bool,
) -> Result<(), Error> {
    let ops = ctx.data().ops.clone();
    ops.service(service).await?;
    // A private answer is edited through the interaction token, which lasts 15 minutes.
    let limit = if public {
        ctx.data().logs_follow
    } else {
        ctx.data().logs_follow.min(PRIVATE_FOLLOW_MAX)
    };
    let params =
        serde_json::json!({ "service": service, "follow": true, "grep": grep, "public": public });
    let started = Instant::now();
    let mut live = if public {
        let handle = ctx
            .send(CreateReply::default().content(format!(
                "Following **{service}** logs for {} s in the thread below (secrets redacted).",
                limit.as_secs()
            )))
            .await?;
        let anchor = handle.message().await?;
        let thread = anchor
            .channel_id
            .create_thread_from_message(
                ctx.http(),
                anchor.id,
                serenity::CreateThread::new(render::clip(&format!("logs {service}"), 100)),
            )
            .await?;
        Live::Thread(Box::new(
            thread.id.say(ctx.http(), "(waiting for lines)").await?,
        ))
    } else {
        let header = format!(
            "Following **{service}** logs for {} s, for you only (secrets redacted; `public:true` streams into a thread).",
            limit.as_secs()
        );
        let handle = ctx
            .send(
                CreateReply::default()
                    .content(format!("{header}\n(waiting for lines)"))
                    .ephemeral(true),
            )
            .await?;
        Live::Reply { handle, header }
    };
    let query = LogQuery {
        since,
        tail: Some(20),
        follow: true,
        timestamps: false,
    };
    let mut lines = ops
        .swarm
        .logs(service, query)
        .await
        .map_err(|e| ops.swarm_error(e))?;
    // One line redactor for the stream: PEM blocks across lines, lines cut at 16 KiB.
    let mut redactor = ops.redactor.lines();
    let mut window: VecDeque<String> = VecDeque::new();
    let mut window_len = 0usize;
    let mut dirty = false;
    let mut seen = 0usize;
    let mut last_edit = Instant::now();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let wake = deadline.min(tokio::time::Instant::now() + EDIT_INTERVAL);
        match tokio::time::timeout_at(wake, lines.next()).await {
            Ok(Some(Ok(line))) => {
                let Some(text) = redactor.line(&line.text, line.partial) else {
                    continue;
                };
                if grep.as_deref().is_some_and(|g| !text.contains(g)) {
                    continue;
                }
                seen += 1;
                let tag = if line.stream == LogStream::Stderr {
                    "! "
                } else {
                    ""
                };
                let text = format!("{tag}{}", render::clip(&text, 300).replace("```", "'''"));
                window_len += text.len() + 1;
                window.push_back(text);
                while window_len > FOLLOW_WINDOW {
                    match window.pop_front() {
                        Some(old) => window_len -= old.len() + 1,
                        None => break,
                    }
                }
                dirty = true;
            }
            Ok(Some(Err(e))) => {
                tracing::warn!(error = %e, "log stream ended with an error");
                break;
            }
            Ok(None) => break,
            Err(_) => {}
        }
        if dirty && last_edit.elapsed() >= EDIT_INTERVAL {
            let body = window.iter().cloned().collect::<Vec<_>>().join("\n");
            live.show(ctx, &format!("```\n{body}\n```")).await?;
            last_edit = Instant::now();
            dirty = false;
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
    }
    let body = window.iter().cloned().collect::<Vec<_>>().join("\n");
    let last = format!(
        "```\n{body}\n```\nstopped after {} s ({seen} line(s))",
        started.elapsed().as_secs()
    );
    live.show(ctx, &last).await?;
    ops.record(
        &actor(ctx),
        "logs",
        &params,
        ops_core::audit::Outcome::Ok,
        Some(format!("followed {seen} line(s)")),
        None,
        started,
    )
    .await;
    Ok(())
}
