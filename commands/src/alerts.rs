//! The Discord side of health alerts: the sink that posts the alert engine's notifications
//! (grouped, rate limited and coalesced by ops-core) as embeds coloured by severity, with a
//! "Silence 1 h" button on firing and reminder messages; that button's handler; and
//! `/silence` (silence a key or glob for a while, or list the active silences).
//!
//! Silences go through [`AlertControl`] (the watcher owns the engine); every silence is
//! audited with who, which pattern and until when. Errors from the watcher are shown by their
//! safe `Display` only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ops_core::alerts::control::MAX_SILENCE;
use ops_core::alerts::engine::{Notification, NotificationKind};
use ops_core::alerts::{AlertSink, AlertState, SinkError};
use ops_core::audit::{Actor, Outcome};
use ops_core::custom_id::{CustomId, Malformed, MAX_LEN as CUSTOM_ID_MAX, SILENCE_PREFIX};
use ops_core::layers::glob_match;
use ops_core::ops::Access;
use ops_core::redact::Redactor;
use poise::serenity_prelude as serenity;
use poise::CreateReply;

use crate::render::{clip, silenced_page, silences_page, GREEN};
use crate::{actor, allow_with, Context, Data, Error, UserError};

/// How long the button silences.
pub const BUTTON_SILENCE: Duration = Duration::from_secs(3600);
/// The longest key or glob `/silence` accepts.
pub const PATTERN_MAX: usize = 200;

pub(crate) const NOT_RUNNING: &str = "The alert watcher is not running here (no [alerts] configured, or it failed to start): nothing was silenced.";
const UNKNOWN_ALERT: &str = "This alert is no longer known (it is too old, or the bot restarted since): nothing was silenced. Use `/silence key:<key> duration:1h` with the key shown in the message.";

/// Posts notifications with the bot token.
pub struct DiscordSink {
    pub http: Arc<serenity::Http>,
    pub redactor: Arc<Redactor>,
    /// Counts every alert announced (`sprocket_ops_alerts_total{severity}`).
    pub metrics: Arc<ops_core::metrics::Metrics>,
}

/// The silence button's custom id for the firing/reminder notifications of one message: as
/// many ids as fit in Discord's 100 characters; `None` when there is nothing to silence.
pub fn silence_button_id(notifications: &[Notification]) -> Option<String> {
    let mut id = SILENCE_PREFIX.to_string();
    let mut any = false;
    for n in notifications.iter().filter(|n| {
        matches!(
            n.kind,
            NotificationKind::Firing | NotificationKind::Reminder
        )
    }) {
        let part = if any {
            format!(".{}", n.id)
        } else {
            n.id.to_string()
        };
        if id.len() + part.len() > CUSTOM_ID_MAX {
            break;
        }
        id.push_str(&part);
        any = true;
    }
    any.then_some(id)
}

/// The notification ids in a silence button's custom id. `None`: not a silence button;
/// `Some(Err)`: ours but malformed (a modified client).
pub fn parse_silence_button_id(custom_id: &str) -> Option<Result<Vec<u64>, ()>> {
    match CustomId::parse(custom_id)? {
        Ok(CustomId::Silence { notifications }) => Some(Ok(notifications)),
        Err(Malformed::Silence) => Some(Err(())),
        _ => None,
    }
}

#[async_trait]
impl AlertSink for DiscordSink {
    async fn deliver(&self, channel: u64, notifications: &[Notification]) -> Result<(), SinkError> {
        let Some(first) = notifications.first() else {
            return Ok(());
        };
        let text: Vec<String> = notifications.iter().map(|n| n.render_text()).collect();
        let body = self.redactor.redact(&text.join("\n\n")).into_owned();
        let all_resolved = notifications
            .iter()
            .all(|n| n.kind == NotificationKind::Resolved);
        let colour = if all_resolved {
            GREEN
        } else {
            first.severity.colour()
        };
        let embed = serenity::CreateEmbed::new()
            .title(clip(&self.redactor.redact(&first.title()), 256))
            .description(clip(&body, 4000))
            .color(colour);
        let mut message = serenity::CreateMessage::new()
            .embed(embed)
            .allowed_mentions(serenity::CreateAllowedMentions::new());
        if let Some(id) = silence_button_id(notifications) {
            message = message.components(vec![serenity::CreateActionRow::Buttons(vec![
                serenity::CreateButton::new(id)
                    .label("Silence 1 h")
                    .emoji('🔕')
                    .style(serenity::ButtonStyle::Secondary),
            ])]);
        }
        serenity::ChannelId::new(channel)
            .send_message(&self.http, message)
            .await
            .map_err(|e| SinkError {
                detail: e.to_string(),
            })?;
        // Counted once posted: a failed post is retried by the watcher and counted then.
        for n in notifications
            .iter()
            .filter(|n| n.kind == NotificationKind::Firing)
        {
            for a in n.alerts.iter().chain(&n.held) {
                self.metrics.alert(a.severity.as_str());
            }
        }
        Ok(())
    }
}

/// `30m`, `2h`, `1d`, `90s`, or a sum like `1h30m` -> a duration, strictly
/// ([`ops_core::duration`]'s grammar): the total is more than zero and at most
/// [`MAX_SILENCE`]. The error says what is wrong, for the user.
pub fn parse_silence_duration(input: &str) -> Result<Duration, String> {
    use ops_core::duration::{parse_duration, DurationError};
    const HINT: &str = "a number and a unit (s, m, h or d), like 30m, 2h or 1d";
    let shown = clip(input.trim(), 40);
    let total = parse_duration(input).map_err(|e| match e {
        DurationError::Empty => format!("The duration is empty: give {HINT}."),
        DurationError::NotADuration => format!("`{shown}` is not a duration: give {HINT}."),
        DurationError::NoUnit => format!("`{shown}` has no unit: give {HINT}."),
        DurationError::BadUnit => format!("`{shown}`: the unit must be s, m, h or d ({HINT})."),
        DurationError::TooLong => format!("`{shown}` is longer than the longest silence, 7d."),
    })?;
    if total.is_zero() {
        return Err(format!(
            "`{shown}` is zero: a silence must last at least 1s."
        ));
    }
    if total > MAX_SILENCE {
        return Err(format!(
            "`{shown}` is longer than the longest silence, 7d: silence again when it ends."
        ));
    }
    Ok(total)
}

/// Checks a key or glob typed into `/silence`: not empty, at most [`PATTERN_MAX`] characters,
/// printable without whitespace, backticks or mention brackets. Returns it trimmed.
pub fn validate_pattern(input: &str) -> Result<String, String> {
    let p = input.trim();
    if p.is_empty() {
        return Err("The alert key is empty: give a key as shown in the alert (`service:prod-web`) or a glob (`probe:*`).".into());
    }
    if p.chars().count() > PATTERN_MAX {
        return Err(format!(
            "The alert key is longer than {PATTERN_MAX} characters: no alert key is that long."
        ));
    }
    if let Some(c) = p
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '`' | '<' | '>' | '@'))
    {
        return Err(format!(
            "The alert key may not contain {:?}: give a key as shown in the alert (`service:prod-web`) or a glob (`probe:*`).",
            c
        ));
    }
    Ok(p.to_string())
}

/// The open alerts a pattern matches, by key.
pub fn matching<'a>(pattern: &str, open: &'a [AlertState]) -> Vec<&'a AlertState> {
    let mut v: Vec<&AlertState> = open
        .iter()
        .filter(|a| glob_match(pattern, &a.key))
        .collect();
    v.sort_by(|a, b| a.key.cmp(&b.key));
    v
}

async fn autocomplete_alert_key(
    ctx: Context<'_>,
    partial: &str,
) -> serenity::CreateAutocompleteResponse {
    let mut keys: Vec<String> = ctx
        .data()
        .alert_control()
        .map(|a| a.open_alerts().into_iter().map(|s| s.key).collect())
        .unwrap_or_default();
    keys.sort();
    keys.dedup();
    let choices = keys
        .into_iter()
        .filter(|k| k.contains(partial) && k.len() <= 100)
        .take(25)
        .map(serenity::AutocompleteChoice::from)
        .collect();
    serenity::CreateAutocompleteResponse::new().set_choices(choices)
}

/// Silence alerts whose key matches a glob for a while; without options, list the silences.
///
/// `/silence key:service:prod-web duration:2h` holds back every announcement (firing,
/// reminders) of matching alerts until the silence ends; `key:probe:*` silences all probes.
/// Durations are a number and a unit (s, m, h, d), at most 7d. Audited.
#[poise::command(slash_command, guild_only)]
pub async fn silence(
    ctx: Context<'_>,
    #[description = "Alert key or glob as shown in the alert, like service:prod-web or probe:*"]
    #[autocomplete = "autocomplete_alert_key"]
    key: Option<String>,
    #[description = "How long: a number and a unit (s, m, h, d), like 30m, 2h or 1d; at most 7d"]
    duration: Option<String>,
) -> Result<(), Error> {
    let (pattern, length) = match (key, duration) {
        (None, None) => return list_silences(ctx).await,
        (Some(_), None) => {
            return Err(UserError(
                "Give a duration too, like `duration:2h` (s, m, h or d; at most 7d): nothing was silenced.".into(),
            )
            .into())
        }
        (None, Some(_)) => {
            return Err(UserError(
                "Give the alert key (or a glob like `service:prod-*`) to silence: nothing was silenced.".into(),
            )
            .into())
        }
        (Some(k), Some(d)) => (
            validate_pattern(&k).map_err(UserError)?,
            parse_silence_duration(&d).map_err(UserError)?,
        ),
    };
    allow_with(ctx, "silence", Access::Change, false).await?;
    let Some(control) = ctx.data().alert_control() else {
        return Err(UserError(NOT_RUNNING.into()).into());
    };
    ctx.defer().await?;
    let until_ms = ops_core::ops::now_ms() + length.as_millis() as i64;
    let ops = ctx.data().ops.clone();
    let me = actor(ctx);
    let applied = ops
        .audited(
            &me,
            "silence",
            serde_json::json!({ "pattern": pattern, "until_ms": until_ms, "via": "command" }),
            || async {
                control
                    .silence(&pattern, until_ms)
                    .await
                    .map_err(|e| ops.fail(&format!("Not silenced: {e}"), &e))
            },
        )
        .await;
    if let Err(e) = applied {
        ctx.send(CreateReply::default().content(format!("⚠️ {e}")))
            .await?;
        return Ok(());
    }
    let open = control.open_alerts();
    let page = silenced_page(
        &pattern,
        until_ms,
        &ctx.author().name,
        &matching(&pattern, &open),
    )
    .redacted(&ops.redactor);
    ctx.send(
        CreateReply::default()
            .embed(page.to_embed())
            .allowed_mentions(serenity::CreateAllowedMentions::new()),
    )
    .await?;
    Ok(())
}

async fn list_silences(ctx: Context<'_>) -> Result<(), Error> {
    allow_with(ctx, "silence", Access::Read, true).await?;
    let started = Instant::now();
    let Some(control) = ctx.data().alert_control() else {
        return Err(UserError(
            "The alert watcher is not running here (no [alerts] configured, or it failed to start): there are no silences.".into(),
        )
        .into());
    };
    let page = silences_page(
        &control.silences(),
        &control.open_alerts(),
        ops_core::ops::now_ms(),
    )
    .redacted(&ctx.data().ops.redactor);
    ctx.send(
        CreateReply::default()
            .embed(page.to_embed())
            .ephemeral(true),
    )
    .await?;
    ctx.data()
        .ops
        .record(
            &actor(ctx),
            "silence",
            &serde_json::json!({ "list": true }),
            Outcome::Ok,
            None,
            None,
            started,
        )
        .await;
    Ok(())
}

/// Handles the "Silence 1 h" button of an alert message (`parsed`: its notification ids, or
/// `Err` for a malformed id).
/// Defers at once (ephemeral): the live role check and the watcher may take longer than
/// Discord's 3 s.
pub async fn handle_silence_click(
    ctx: &serenity::Context,
    data: &Data,
    mci: &serenity::ComponentInteraction,
    parsed: Result<Vec<u64>, ()>,
) {
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
        tracing::warn!("could not acknowledge a silence click: {e}");
        return;
    }
    let text = silence_click(ctx, data, mci, parsed).await;
    let text = data.ops.redactor.redact(&text).into_owned();
    if let Err(e) = mci
        .edit_response(
            &ctx.http,
            serenity::EditInteractionResponse::new()
                .content(clip(&text, 1900))
                .allowed_mentions(serenity::CreateAllowedMentions::new()),
        )
        .await
    {
        tracing::warn!("could not answer a silence click: {e}");
    }
}

async fn silence_click(
    ctx: &serenity::Context,
    data: &Data,
    mci: &serenity::ComponentInteraction,
    parsed: Result<Vec<u64>, ()>,
) -> String {
    let ops = &data.ops;
    let started = Instant::now();
    let me = Actor::discord(mci.user.id.get(), &mci.user.name);
    match ops
        .authorize(&me, mci.user.id.get(), "silence", Access::Change)
        .await
    {
        Err(d) => return format!("Not allowed: {d}"),
        Ok(None) => return "Link your GitHub account first (/link).".into(),
        Ok(Some(_)) => {}
    }
    let Some(control) = data.alert_control() else {
        return NOT_RUNNING.into();
    };
    let ids = parsed.unwrap_or_default();
    let mut keys: Vec<String> = ids
        .iter()
        .filter_map(|id| control.notification_keys(*id))
        .flatten()
        .collect();
    keys.sort();
    keys.dedup();
    let until_ms = ops_core::ops::now_ms() + BUTTON_SILENCE.as_millis() as i64;
    let params = serde_json::json!({ "notifications": ids, "keys": keys, "until_ms": until_ms, "via": "button" });
    if keys.is_empty() {
        ops.record(
            &me,
            "silence",
            &params,
            Outcome::Error,
            Some("unknown notification".into()),
            None,
            started,
        )
        .await;
        return UNKNOWN_ALERT.into();
    }
    let mut done = Vec::new();
    let mut failure = None;
    for k in &keys {
        match control.silence(k, until_ms).await {
            Ok(()) => done.push(k.clone()),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let secs = until_ms.div_euclid(1000);
    let listed = clip(
        &done
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", "),
        1200,
    );
    if let Some(e) = failure {
        let error_id = ops_core::ops::new_error_id();
        tracing::warn!(error_id = %error_id, detail = ?e, "silence from a button failed");
        ops.record(
            &me,
            "silence",
            &params,
            Outcome::Error,
            Some(e.to_string()),
            Some(error_id.clone()),
            started,
        )
        .await;
        return if done.is_empty() {
            format!("⚠️ Not silenced: {e} (error id {error_id})")
        } else {
            format!("⚠️ Silenced only {listed} until <t:{secs}:R>; the rest failed: {e} (error id {error_id})")
        };
    }
    ops.record(&me, "silence", &params, Outcome::Ok, None, None, started)
        .await;
    // Everyone in the channel sees who silenced it; the embed and the button stay.
    let note = format!(
        "🔕 Silenced by <@{}> until <t:{secs}:f> (<t:{secs}:R>).",
        mci.user.id.get()
    );
    if let Err(e) = mci
        .channel_id
        .edit_message(
            &ctx.http,
            mci.message.id,
            serenity::EditMessage::new()
                .content(note)
                .allowed_mentions(serenity::CreateAllowedMentions::new()),
        )
        .await
    {
        tracing::warn!("could not mark the alert message as silenced: {e}");
    }
    format!("🔕 Silenced for 1 h (until <t:{secs}:f>, <t:{secs}:R>): {listed}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ops_core::alerts::{Phase, Severity};

    fn notification(id: u64, kind: NotificationKind) -> Notification {
        Notification {
            id,
            kind,
            channel: 1,
            severity: Severity::Critical,
            at_ms: 0,
            alerts: vec![],
            held: vec![],
        }
    }

    #[test]
    fn durations_parse_strictly() {
        let ok = [
            ("30m", 1800),
            ("2h", 7200),
            ("1d", 86_400),
            ("90s", 90),
            ("1h30m", 5400),
            (" 7d ", 7 * 86_400),
            ("2H", 7200),
        ];
        for (input, secs) in ok {
            assert_eq!(
                parse_silence_duration(input),
                Ok(Duration::from_secs(secs)),
                "{input}"
            );
        }
        let bad = [
            ("", "empty"),
            ("30", "no unit"),
            ("h", "not a duration"),
            ("-5m", "not a duration"),
            ("5 m", "unit must be"),
            ("5w", "unit must be"),
            ("1.5h", "unit must be"),
            ("0m", "zero"),
            ("0s0m", "zero"),
            ("8d", "longest"),
            ("7d1s", "longest"),
            ("99999999999999999999999d", "longest"),
            ("18446744073709551615s", "longest"),
            ("2h;", "not a duration"),
        ];
        for (input, why) in bad {
            let e = parse_silence_duration(input).expect_err(input);
            assert!(e.contains(why), "{input}: {e}");
        }
    }

    #[test]
    fn patterns_are_checked() {
        assert_eq!(
            validate_pattern(" service:prod-web "),
            Ok("service:prod-web".into())
        );
        assert_eq!(validate_pattern("probe:*"), Ok("probe:*".into()));
        let long = "k".repeat(201);
        for bad in ["", "  ", "a b", "svc`x", "<@123>", "x\u{7}", long.as_str()] {
            assert!(validate_pattern(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn silence_button_ids_fit_discord_and_round_trip() {
        let ns: Vec<Notification> = (0..40)
            .map(|i| notification(1_000_000_000 + i, NotificationKind::Firing))
            .collect();
        let id = silence_button_id(&ns).unwrap();
        assert!(id.len() <= CUSTOM_ID_MAX, "{}", id.len());
        let ids = parse_silence_button_id(&id).unwrap().unwrap();
        assert_eq!(
            ids,
            (0..ids.len() as u64)
                .map(|i| 1_000_000_000 + i)
                .collect::<Vec<_>>()
        );
        assert!(ids.len() >= 8);

        let mixed = [
            notification(5, NotificationKind::Resolved),
            notification(6, NotificationKind::Reminder),
            notification(7, NotificationKind::Firing),
        ];
        assert_eq!(silence_button_id(&mixed).as_deref(), Some("alsil:6.7"));
        assert_eq!(
            silence_button_id(&[
                notification(1, NotificationKind::Resolved),
                notification(2, NotificationKind::Heartbeat)
            ]),
            None
        );
        assert_eq!(parse_silence_button_id("apr:1"), None);
        for bad in ["alsil:", "alsil:x", "alsil:1..2", "alsil:-1"] {
            assert_eq!(parse_silence_button_id(bad), Some(Err(())), "{bad}");
        }
    }

    fn open(key: &str, phase: Phase) -> AlertState {
        AlertState {
            key: key.into(),
            phase,
            layer: Some("platform".into()),
            severity: Severity::Critical,
            summary: "0 of 1 tasks running".into(),
            consecutive_failures: 3,
            consecutive_ok: 0,
            first_failure_ms: Some(0),
            firing_since_ms: Some(0),
            resolved_at_ms: None,
            notified: true,
            last_notified_ms: None,
            held_under: None,
            updated_ms: 0,
        }
    }

    #[test]
    fn answers_name_matches_and_stay_within_limits() {
        let alerts: Vec<AlertState> = (0..300)
            .map(|i| open(&format!("service:prod-{i:03}"), Phase::Firing))
            .chain([open("probe:web", Phase::Pending)])
            .collect();
        let m = matching("service:prod-00*", &alerts);
        assert_eq!(m.len(), 10);
        let p = silenced_page("service:prod-00*", 1_700_000_000_000, "ann", &m);
        assert!(p.description.contains("<t:1700000000:R>"));
        assert!(p.fields[0].1.contains("service:prod-009"));
        let all = matching("*", &alerts);
        let p = silenced_page("*", 1_700_000_000_000, "ann", &all);
        assert!(p.fields[0].1.len() <= 1024);
        assert!(p.fields[0].1.contains("more"), "{}", p.fields[0].1);

        let silences: Vec<(String, i64)> = (0..100)
            .map(|i| (format!("service:prod-{i:03}"), 2_000 + i))
            .chain([("expired".to_string(), 10)])
            .collect();
        let p = silences_page(&silences, &alerts, 1_000);
        assert!(p.fields.iter().all(|(_, v)| v.len() <= 1024));
        assert!(p.fields[0].0.contains("(100)"));
        assert!(!p.fields[0].1.contains("expired"));
        let empty = silences_page(&[], &[], 0);
        assert_eq!(empty.fields[0].1, "None.");
        assert_eq!(empty.color, GREEN);
    }
}
