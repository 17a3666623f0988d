//! JSON shapes the fake Discord hands to serenity: users, members, messages, channels, the
//! guild, READY, and the INTERACTION_CREATE payloads. Every object carries the fields serenity
//! 0.12.5 requires (a missing field makes serenity drop a dispatch silently), which the
//! self-test checks by deserializing each shape into serenity's own model types.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Map, Value};

/// Discord's epoch (2015-01-01T00:00:00Z) in Unix milliseconds.
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// Message flag: only the invoking user sees the message.
pub const FLAG_EPHEMERAL: u64 = 1 << 6;
/// Message flag: a deferred interaction response ("Bot is thinking...").
pub const FLAG_LOADING: u64 = 1 << 7;

/// Permissions the fake gives a guild member by default: view channel, send messages, embed
/// links, attach files, read history, add reactions, use application commands.
pub const DEFAULT_MEMBER_PERMISSIONS: u64 =
    (1 << 6) | (1 << 10) | (1 << 11) | (1 << 14) | (1 << 15) | (1 << 16) | (1 << 31);
/// Permissions the bot has in every channel (`app_permissions`): the member set plus manage
/// messages, manage threads, create public/private threads and send messages in threads.
pub const BOT_PERMISSIONS: u64 =
    DEFAULT_MEMBER_PERMISSIONS | (1 << 13) | (1 << 34) | (1 << 35) | (1 << 36) | (1 << 38);

/// Monotonic snowflake source: real-looking ids (timestamp in the high bits) that never repeat
/// within a process.
static LAST_SNOWFLAKE: AtomicU64 = AtomicU64::new(0);

/// A fresh, strictly increasing snowflake id.
pub fn snowflake() -> u64 {
    let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
    let candidate = now_ms.saturating_sub(DISCORD_EPOCH_MS) << 22;
    let mut last = LAST_SNOWFLAKE.load(Ordering::Relaxed);
    loop {
        let next = candidate.max(last + 1);
        match LAST_SNOWFLAKE.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => return next,
            Err(actual) => last = actual,
        }
    }
}

/// A random token-like string (interaction tokens, session ids). Not cryptographic.
pub fn random_token(prefix: &str) -> String {
    let mut out = String::from(prefix);
    for _ in 0..3 {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(snowflake());
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

/// Current time as Discord formats it (ISO 8601 with microseconds and offset).
pub fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

/// The bot's own user object (id = application id).
pub fn bot_user(app_id: u64) -> Value {
    json!({
        "id": app_id.to_string(),
        "username": "bot",
        "discriminator": "0",
        "global_name": null,
        "avatar": null,
        "bot": true,
        "verified": true,
        "mfa_enabled": false,
        "flags": 0,
        "public_flags": 0,
    })
}

/// A human user object.
pub fn user(id: u64, name: &str) -> Value {
    json!({
        "id": id.to_string(),
        "username": name,
        "discriminator": "0",
        "global_name": name,
        "avatar": null,
        "public_flags": 0,
    })
}

/// A guild member object (interaction `member`).
pub fn member(id: u64, name: &str, roles: &[u64], permissions: u64) -> Value {
    json!({
        "user": user(id, name),
        "roles": roles.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
        "nick": null,
        "avatar": null,
        "premium_since": null,
        "joined_at": "2024-01-01T00:00:00.000000+00:00",
        "deaf": false,
        "mute": false,
        "pending": false,
        "flags": 0,
        "communication_disabled_until": null,
        "permissions": permissions.to_string(),
    })
}

/// A guild text channel (type 0) or thread (type 11/12) object.
pub fn channel(
    id: u64,
    guild_id: u64,
    kind: u8,
    name: &str,
    parent_id: Option<u64>,
    owner_id: Option<u64>,
) -> Value {
    let mut c = json!({
        "id": id.to_string(),
        "type": kind,
        "guild_id": guild_id.to_string(),
        "name": name,
        "position": 0,
        "permission_overwrites": [],
        "nsfw": false,
        "topic": null,
        "last_message_id": null,
        "rate_limit_per_user": 0,
        "parent_id": parent_id.map(|p| p.to_string()),
        "flags": 0,
    });
    if kind == 11 || kind == 12 {
        let m = c.as_object_mut().expect("object");
        m.insert("owner_id".into(), json!(owner_id.map(|o| o.to_string())));
        m.insert("message_count".into(), json!(0));
        m.insert("member_count".into(), json!(1));
        m.insert("total_message_sent".into(), json!(0));
        m.insert(
            "thread_metadata".into(),
            json!({
                "archived": false,
                "auto_archive_duration": 1440,
                "archive_timestamp": now_iso(),
                "locked": false,
                "create_timestamp": now_iso(),
            }),
        );
    }
    c
}

/// The guild as sent in GUILD_CREATE: @everyone role, the given channels and threads.
pub fn guild_create(
    guild_id: u64,
    app_id: u64,
    channels: Vec<Value>,
    threads: Vec<Value>,
) -> Value {
    let everyone = json!({
        "id": guild_id.to_string(),
        "name": "@everyone",
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": null, "tertiary_color": null},
        "hoist": false,
        "icon": null,
        "unicode_emoji": null,
        "position": 0,
        "permissions": DEFAULT_MEMBER_PERMISSIONS.to_string(),
        "managed": false,
        "mentionable": false,
        "flags": 0,
    });
    let bot_member = json!({
        "user": bot_user(app_id),
        "roles": [],
        "nick": null,
        "avatar": null,
        "joined_at": "2024-01-01T00:00:00.000000+00:00",
        "premium_since": null,
        "deaf": false,
        "mute": false,
        "flags": 0,
        "pending": false,
    });
    // Built in parts: one `json!` this large exceeds the macro recursion limit.
    let mut g = Map::new();
    let parts = [
        json!({
            "id": guild_id.to_string(),
            "name": "sprocket-test",
            "icon": null,
            "icon_hash": null,
            "splash": null,
            "discovery_splash": null,
            "owner_id": "1",
            "afk_channel_id": null,
            "afk_timeout": 300,
            "widget_enabled": false,
            "widget_channel_id": null,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": [everyone],
            "emojis": [],
            "features": [],
            "mfa_level": 0,
        }),
        json!({
            "application_id": null,
            "system_channel_id": null,
            "system_channel_flags": 0,
            "rules_channel_id": null,
            "max_presences": null,
            "max_members": 500000,
            "vanity_url_code": null,
            "description": null,
            "banner": null,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "public_updates_channel_id": null,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "nsfw_level": 0,
            "stickers": [],
            "premium_progress_bar_enabled": false,
            "safety_alerts_channel_id": null,
        }),
        json!({
            "joined_at": "2024-01-01T00:00:00.000000+00:00",
            "large": false,
            "unavailable": false,
            "member_count": 2,
            "voice_states": [],
            "members": [bot_member],
            "channels": channels,
            "threads": threads,
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "incidents_data": null,
        }),
    ];
    for part in parts {
        if let Value::Object(m) = part {
            g.extend(m);
        }
    }
    Value::Object(g)
}

/// The READY dispatch's `d`.
pub fn ready(
    app_id: u64,
    guild_id: u64,
    session_id: &str,
    resume_url: &str,
    shard: Option<Value>,
) -> Value {
    let mut d = json!({
        "v": 10,
        "user": bot_user(app_id),
        "guilds": [{"id": guild_id.to_string(), "unavailable": true}],
        "session_id": session_id,
        "resume_gateway_url": resume_url,
        "application": {"id": app_id.to_string(), "flags": 0},
        "private_channels": [],
        "relationships": [],
        "presences": [],
        "guild_join_requests": [],
        "geo_ordered_rtc_regions": [],
        "user_settings": {},
        "_trace": ["fake-discord"],
    });
    if let Some(shard) = shard {
        d["shard"] = shard;
    }
    d
}

/// Everything needed to build one INTERACTION_CREATE `d`.
pub struct InteractionSpec<'a> {
    pub id: u64,
    pub app_id: u64,
    pub kind: u8,
    pub token: &'a str,
    pub guild_id: u64,
    pub channel: Value,
    pub member: Value,
    pub attachment_size_limit: u64,
    pub data: Value,
    pub message: Option<Value>,
}

/// An INTERACTION_CREATE payload with every field serenity 0.12.5 requires.
pub fn interaction(spec: InteractionSpec<'_>) -> Value {
    let channel_id = spec.channel["id"].clone();
    let mut d = json!({
        "id": spec.id.to_string(),
        "application_id": spec.app_id.to_string(),
        "type": spec.kind,
        "token": spec.token,
        "version": 1,
        "channel_id": channel_id,
        "channel": spec.channel,
        "guild_id": spec.guild_id.to_string(),
        "guild": {"id": spec.guild_id.to_string(), "locale": "en-US", "features": []},
        "member": spec.member,
        "locale": "en-US",
        "guild_locale": "en-US",
        "entitlements": [],
        "authorizing_integration_owners": {"0": spec.guild_id.to_string()},
        "context": 0,
        "attachment_size_limit": spec.attachment_size_limit,
        "app_permissions": BOT_PERMISSIONS.to_string(),
        "data": spec.data,
    });
    if let Some(message) = spec.message {
        d["message"] = message;
    }
    d
}

/// Completes a message body sent by the bot into a Discord message object.
pub struct NewMessage<'a> {
    pub id: u64,
    pub channel_id: u64,
    pub app_id: u64,
    /// Message type: 0 default, 19 reply, 20 chat input command.
    pub kind: u8,
    /// Set for interaction responses and follow-ups (the application's webhook).
    pub webhook: bool,
    pub body: &'a Value,
    /// Extra flags forced onto the message (loading, ephemeral).
    pub extra_flags: u64,
    pub attachments: Vec<Value>,
}

/// Builds the full message object serenity deserializes.
pub fn message(m: NewMessage<'_>) -> Value {
    let body = m.body;
    let content = body.get("content").and_then(Value::as_str).unwrap_or("");
    let embeds = body
        .get("embeds")
        .and_then(Value::as_array)
        .map(|e| normalize_embeds(e));
    let components = body
        .get("components")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let flags = body.get("flags").and_then(Value::as_u64).unwrap_or(0) | m.extra_flags;
    let tts = body.get("tts").and_then(Value::as_bool).unwrap_or(false);
    let mut kind = m.kind;
    let mut msg = json!({
        "id": m.id.to_string(),
        "channel_id": m.channel_id.to_string(),
        "author": bot_user(m.app_id),
        "content": content,
        "timestamp": now_iso(),
        "edited_timestamp": null,
        "tts": tts,
        "mention_everyone": false,
        "mentions": [],
        "mention_roles": [],
        "mention_channels": [],
        "attachments": m.attachments,
        "embeds": embeds.unwrap_or_default(),
        "reactions": [],
        "pinned": false,
        "type": 0,
        "flags": flags,
        "components": components,
        "sticker_items": [],
    });
    let obj = msg.as_object_mut().expect("object");
    if let Some(reference) = body.get("message_reference").filter(|r| r.is_object()) {
        let mut r = Map::new();
        for key in ["message_id", "channel_id", "guild_id"] {
            if let Some(v) = reference.get(key).filter(|v| !v.is_null()) {
                r.insert(key.into(), v.clone());
            }
        }
        if !r.contains_key("channel_id") {
            r.insert("channel_id".into(), json!(m.channel_id.to_string()));
        }
        r.insert("type".into(), json!(0));
        obj.insert("message_reference".into(), Value::Object(r));
        if kind == 0 {
            kind = 19;
        }
    }
    obj.insert("type".into(), json!(kind));
    if m.webhook {
        obj.insert("webhook_id".into(), json!(m.app_id.to_string()));
        obj.insert("application_id".into(), json!(m.app_id.to_string()));
    }
    msg
}

/// Adds `type: "rich"` to embeds that lack it (Discord does).
pub fn normalize_embeds(embeds: &[Value]) -> Vec<Value> {
    embeds
        .iter()
        .map(|e| {
            let mut e = e.clone();
            if let Some(obj) = e.as_object_mut() {
                obj.entry("type").or_insert_with(|| json!("rich"));
            }
            e
        })
        .collect()
}

/// An attachment object for a file the bot uploaded.
pub fn attachment(
    id: u64,
    base_url: &str,
    channel_id: u64,
    filename: &str,
    size: usize,
    description: Option<&str>,
    content_type: Option<&str>,
) -> Value {
    let url = format!("{base_url}/attachments/{channel_id}/{id}/{filename}");
    json!({
        "id": id.to_string(),
        "filename": filename,
        "description": description,
        "size": size,
        "url": url,
        "proxy_url": url,
        "content_type": content_type,
        "height": null,
        "width": null,
    })
}
