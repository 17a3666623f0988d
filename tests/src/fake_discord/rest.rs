//! The fake's REST API under `/api/v10`: records every request, validates its body against the
//! OpenAPI spec, and serves the routes a serenity/poise bot uses (gateway discovery, command
//! registration, interaction callbacks, webhook edits and follow-ups, channel messages,
//! threads). Errors mimic Discord's (`{"message", "code"}` with Discord's error codes), and
//! protocol misuse (double acknowledgement, unknown token, unknown channel) is recorded as a
//! violation as well.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Path, Request, State as AxState};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response as AxResponse};
use serde_json::{json, Value};

use super::model::{self, FLAG_EPHEMERAL, FLAG_LOADING};
use super::openapi;
use super::state::{id_of, Callback, RecordedRequest, Shared, State};
use super::FakeDiscord;

/// Largest request body read (attachments included).
pub const BODY_LIMIT: usize = 64 << 20;

/// An uploaded multipart file part.
struct FilePart {
    /// Part name, e.g. `files[0]`.
    name: String,
    filename: String,
    content_type: Option<String>,
    bytes: Vec<u8>,
}

/// A parsed request body.
#[derive(Default)]
struct ParsedBody {
    json: Option<Value>,
    files: Vec<FilePart>,
    multipart: bool,
    error: Option<String>,
}

/// The handler's answer: status and optional JSON body.
struct Reply {
    status: u16,
    body: Option<Value>,
}

impl Reply {
    fn ok(v: Value) -> Reply {
        Reply {
            status: 200,
            body: Some(v),
        }
    }
    fn no_content() -> Reply {
        Reply {
            status: 204,
            body: None,
        }
    }
    fn error(status: u16, code: u64, message: &str) -> Reply {
        Reply {
            status,
            body: Some(json!({"message": message, "code": code})),
        }
    }
}

async fn read_body(req: Request) -> ParsedBody {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut out = ParsedBody::default();
    if content_type.starts_with("multipart/form-data") {
        out.multipart = true;
        let mut mp = match Multipart::from_request(req, &()).await {
            Ok(mp) => mp,
            Err(e) => {
                out.error = Some(format!("unreadable multipart body: {e}"));
                return out;
            }
        };
        loop {
            match mp.next_field().await {
                Ok(Some(field)) => {
                    let name = field.name().unwrap_or("").to_string();
                    let filename = field.file_name().map(str::to_string);
                    let ct = field.content_type().map(str::to_string);
                    let bytes = match field.bytes().await {
                        Ok(b) => b.to_vec(),
                        Err(e) => {
                            out.error = Some(format!("unreadable multipart part {name}: {e}"));
                            return out;
                        }
                    };
                    if name == "payload_json" {
                        match serde_json::from_slice(&bytes) {
                            Ok(v) => out.json = Some(v),
                            Err(e) => out.error = Some(format!("payload_json is not JSON: {e}")),
                        }
                    } else {
                        out.files.push(FilePart {
                            filename: filename.unwrap_or_else(|| name.clone()),
                            name,
                            content_type: ct,
                            bytes,
                        });
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    out.error = Some(format!("unreadable multipart body: {e}"));
                    break;
                }
            }
        }
        return out;
    }
    let bytes = match axum::body::to_bytes(req.into_body(), BODY_LIMIT).await {
        Ok(b) => b,
        Err(e) => {
            out.error = Some(format!("unreadable body: {e}"));
            return out;
        }
    };
    if !bytes.is_empty() {
        match serde_json::from_slice(&bytes) {
            Ok(v) => out.json = Some(v),
            Err(e) => out.error = Some(format!("body is not JSON ({content_type}): {e}")),
        }
    }
    out
}

/// Fallback handler: every request that is not the gateway or an attachment download.
pub async fn handle(AxState(shared): AxState<Arc<Shared>>, req: Request) -> AxResponse {
    let at = Instant::now();
    let method = req.method().as_str().to_ascii_uppercase();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let body = read_body(req).await;

    let mut violations = Vec::new();
    if let Some(e) = &body.error {
        violations.push(format!("{method} {path}: {e}"));
    }
    let api_path = path.strip_prefix("/api/v10").filter(|p| p.starts_with('/'));
    let route = api_path.and_then(|p| {
        openapi::spec()
            .match_route(&method, p)
            .filter(|(_, same)| *same)
            .map(|(t, _)| t)
    });
    if let Some(p) = api_path {
        violations.extend(openapi::validate_request(
            &method,
            p,
            body.json.as_ref(),
            body.multipart,
        ));
    }

    let reply = match api_path {
        Some(p) => {
            let params = Query::parse(query.as_deref());
            dispatch(&shared, &method, p, &params, &body, &mut violations)
        }
        None => {
            violations.push(format!("{method} {path}: not under /api/v10"));
            Reply::error(404, 0, "Unknown route")
        }
    };

    let attachments = body
        .files
        .iter()
        .map(|f| (f.filename.clone(), f.bytes.clone()))
        .collect();
    {
        let mut st = shared.lock();
        st.requests.push(RecordedRequest {
            method: method.clone(),
            path: path.clone(),
            route,
            query,
            body: body.json.clone(),
            attachments,
            status: reply.status,
            at,
        });
    }
    for v in violations {
        shared.violation(v);
    }
    shared.bump();

    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match reply.body {
        Some(v) => (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            v.to_string(),
        )
            .into_response(),
        None => status.into_response(),
    }
}

/// Serves uploaded attachment bytes at the `url` given in attachment objects.
pub async fn attachment(
    AxState(shared): AxState<Arc<Shared>>,
    Path((_channel, attachment_id, _name)): Path<(u64, u64, String)>,
) -> AxResponse {
    let st = shared.lock();
    for m in st.messages.values() {
        if let Some(list) = m.raw["attachments"].as_array() {
            if let Some(i) = list.iter().position(|a| id_of(a) == attachment_id) {
                if let Some((_, bytes)) = m.files.get(i) {
                    return (StatusCode::OK, Body::from(bytes.clone())).into_response();
                }
            }
        }
    }
    StatusCode::NOT_FOUND.into_response()
}

/// Parsed query string (tolerates `?&k=v`).
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Query {
        let pairs = q
            .unwrap_or("")
            .split('&')
            .filter(|s| !s.is_empty())
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.to_string(), String::new()),
            })
            .collect();
        Query(pairs)
    }
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn parse_id(s: &str) -> Option<u64> {
    s.parse().ok()
}

fn dispatch(
    shared: &Shared,
    method: &str,
    path: &str,
    query: &Query,
    body: &ParsedBody,
    violations: &mut Vec<String>,
) -> Reply {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let app = FakeDiscord::APPLICATION_ID.to_string();
    let base = shared.base_url();
    let empty = json!({});
    let json_body = body.json.as_ref().unwrap_or(&empty);
    let mut st = shared.lock();
    match (method, segs.as_slice()) {
        ("GET", ["gateway"]) => Reply::ok(json!({"url": gateway_url(shared)})),
        ("GET", ["gateway", "bot"]) => Reply::ok(json!({
            "url": gateway_url(shared),
            "shards": 1,
            "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1},
        })),
        ("GET", ["users", "@me"]) => Reply::ok(model::bot_user(FakeDiscord::APPLICATION_ID)),
        ("GET", ["oauth2", "applications", "@me"]) | ("GET", ["applications", "@me"]) => {
            Reply::ok(application_info())
        }
        ("PUT", ["applications", a, "guilds", g, "commands"]) => {
            if *a != app {
                violations.push(format!("PUT commands for unknown application {a}"));
                return Reply::error(404, 10002, "Unknown Application");
            }
            let Some(list) = body.json.as_ref().and_then(Value::as_array) else {
                return Reply::error(400, 50035, "Invalid Form Body");
            };
            let guild_id = parse_id(g).unwrap_or(0);
            let previous = std::mem::take(&mut st.guild_commands);
            let out: Vec<Value> = list
                .iter()
                .map(|c| registered_command(c, Some(guild_id), &previous))
                .collect();
            st.guild_commands = out.clone();
            st.guild_commands_body = Some(list.clone());
            Reply::ok(Value::Array(out))
        }
        ("PUT", ["applications", a, "commands"]) => {
            if *a != app {
                violations.push(format!("PUT commands for unknown application {a}"));
                return Reply::error(404, 10002, "Unknown Application");
            }
            let Some(list) = body.json.as_ref().and_then(Value::as_array) else {
                return Reply::error(400, 50035, "Invalid Form Body");
            };
            let previous = std::mem::take(&mut st.global_commands);
            let out: Vec<Value> = list
                .iter()
                .map(|c| registered_command(c, None, &previous))
                .collect();
            st.global_commands = out.clone();
            st.global_commands_body = Some(list.clone());
            Reply::ok(Value::Array(out))
        }
        ("GET", ["applications", _, "guilds", _, "commands"]) => {
            Reply::ok(Value::Array(st.guild_commands.clone()))
        }
        ("GET", ["applications", _, "commands"]) => {
            Reply::ok(Value::Array(st.global_commands.clone()))
        }
        ("POST", ["interactions", id, token, "callback"]) => {
            let with_response = query.get("with_response") == Some("true");
            callback(
                &mut st,
                &base,
                id,
                token,
                json_body,
                &body.files,
                with_response,
                violations,
            )
        }
        ("POST", ["webhooks", a, token]) => {
            if *a != app {
                violations.push(format!("webhook for unknown application {a}"));
                return Reply::error(404, 10015, "Unknown Webhook");
            }
            followup(&mut st, &base, token, json_body, &body.files, violations)
        }
        (m @ ("GET" | "PATCH" | "DELETE"), ["webhooks", a, token, "messages", mid]) => {
            if *a != app {
                violations.push(format!("webhook for unknown application {a}"));
                return Reply::error(404, 10015, "Unknown Webhook");
            }
            webhook_message(
                &mut st,
                &base,
                m,
                token,
                mid,
                json_body,
                &body.files,
                violations,
            )
        }
        ("GET", ["channels", cid]) => match parse_id(cid).and_then(|c| st.channels.get(&c)) {
            Some(c) => Reply::ok(c.raw.clone()),
            None => unknown_channel(cid, violations),
        },
        ("POST", ["channels", cid, "messages"]) => {
            let Some(channel_id) = parse_id(cid).filter(|c| st.channels.contains_key(c)) else {
                return unknown_channel(cid, violations);
            };
            let id = model::snowflake();
            let (attachments, files) =
                build_attachments(&base, channel_id, json_body, &body.files, &[], &[]);
            let raw = model::message(model::NewMessage {
                id,
                channel_id,
                app_id: FakeDiscord::APPLICATION_ID,
                kind: 0,
                webhook: false,
                body: json_body,
                extra_flags: 0,
                attachments,
            });
            st.insert_message(raw.clone(), files);
            Reply::ok(raw)
        }
        ("GET", ["channels", cid, "messages"]) => {
            let Some(c) = parse_id(cid).and_then(|c| st.channels.get(&c)) else {
                return unknown_channel(cid, violations);
            };
            let limit = query
                .get("limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(50usize);
            let list: Vec<Value> = c
                .messages
                .iter()
                .rev()
                .filter_map(|id| st.message(*id).map(|m| m.raw.clone()))
                .take(limit)
                .collect();
            Reply::ok(Value::Array(list))
        }
        (m @ ("GET" | "PATCH" | "DELETE"), ["channels", cid, "messages", mid]) => {
            let Some(channel_id) = parse_id(cid).filter(|c| st.channels.contains_key(c)) else {
                return unknown_channel(cid, violations);
            };
            let Some(message_id) = parse_id(mid).filter(|m| {
                st.message(*m)
                    .is_some_and(|msg| msg.raw["channel_id"] == json!(channel_id.to_string()))
            }) else {
                violations.push(format!(
                    "{m} /channels/{cid}/messages/{mid}: unknown message"
                ));
                return Reply::error(404, 10008, "Unknown Message");
            };
            match m {
                "GET" => Reply::ok(st.messages[&message_id].raw.clone()),
                "DELETE" => {
                    delete_message(&mut st, message_id);
                    Reply::no_content()
                }
                _ => Reply::ok(edit_message(
                    &mut st,
                    &base,
                    message_id,
                    json_body,
                    &body.files,
                )),
            }
        }
        ("POST", ["channels", cid, "messages", mid, "threads"]) => {
            let Some(channel_id) = parse_id(cid).filter(|c| st.channels.contains_key(c)) else {
                return unknown_channel(cid, violations);
            };
            let Some(message_id) = parse_id(mid).filter(|m| st.message(*m).is_some()) else {
                violations.push(format!("POST thread from unknown message {mid}"));
                return Reply::error(404, 10008, "Unknown Message");
            };
            if st.channels.contains_key(&message_id) {
                violations.push(format!("thread already created for message {mid}"));
                return Reply::error(
                    400,
                    160004,
                    "A thread has already been created for this message",
                );
            }
            let name = json_body["name"].as_str().unwrap_or("thread");
            let raw = model::channel(
                message_id,
                FakeDiscord::GUILD_ID,
                11,
                name,
                Some(channel_id),
                Some(FakeDiscord::APPLICATION_ID),
            );
            st.channels.insert(
                message_id,
                super::state::Channel {
                    raw: raw.clone(),
                    messages: vec![],
                },
            );
            if let Some(msg) = st.messages.get_mut(&message_id) {
                msg.raw["thread"] = raw.clone();
            }
            Reply::ok(raw)
        }
        ("POST", ["channels", cid, "threads"]) => {
            let Some(channel_id) = parse_id(cid).filter(|c| st.channels.contains_key(c)) else {
                return unknown_channel(cid, violations);
            };
            let id = model::snowflake();
            let kind = json_body["type"].as_u64().unwrap_or(12) as u8;
            let name = json_body["name"].as_str().unwrap_or("thread");
            let mut raw = model::channel(
                id,
                FakeDiscord::GUILD_ID,
                kind,
                name,
                Some(channel_id),
                Some(FakeDiscord::APPLICATION_ID),
            );
            st.channels.insert(
                id,
                super::state::Channel {
                    raw: raw.clone(),
                    messages: vec![],
                },
            );
            // Forum-style "thread with a starter message".
            if let Some(first) = json_body.get("message").filter(|m| m.is_object()) {
                let mid = model::snowflake();
                let (attachments, files) =
                    build_attachments(&base, id, first, &body.files, &[], &[]);
                let msg = model::message(model::NewMessage {
                    id: mid,
                    channel_id: id,
                    app_id: FakeDiscord::APPLICATION_ID,
                    kind: 0,
                    webhook: false,
                    body: first,
                    extra_flags: 0,
                    attachments,
                });
                st.insert_message(msg.clone(), files);
                raw["message"] = msg;
            }
            Reply::ok(raw)
        }
        ("POST", ["channels", cid, "typing"]) => {
            match parse_id(cid).filter(|c| st.channels.contains_key(c)) {
                Some(_) => Reply::no_content(),
                None => unknown_channel(cid, violations),
            }
        }
        ("PUT" | "DELETE", ["channels", cid, "messages", mid, "reactions", _, "@me"]) => {
            if parse_id(cid)
                .filter(|c| st.channels.contains_key(c))
                .is_none()
            {
                return unknown_channel(cid, violations);
            }
            if parse_id(mid).and_then(|m| st.message(m)).is_none() {
                violations.push(format!("reaction on unknown message {mid}"));
                return Reply::error(404, 10008, "Unknown Message");
            }
            Reply::no_content()
        }
        _ => {
            violations.push(format!(
                "{method} /api/v10{path}: route not implemented by the fake Discord"
            ));
            Reply::error(404, 0, "Unknown route")
        }
    }
}

fn gateway_url(shared: &Shared) -> String {
    format!("ws://{}:{}/gw", shared.host, shared.port)
}

fn unknown_channel(cid: &str, violations: &mut Vec<String>) -> Reply {
    violations.push(format!(
        "channel {cid} does not exist in the fake guild (create it with FakeDiscord::add_channel)"
    ));
    Reply::error(404, 10003, "Unknown Channel")
}

fn application_info() -> Value {
    json!({
        "id": FakeDiscord::APPLICATION_ID.to_string(),
        "name": "sprocket-test",
        "icon": null,
        "description": "",
        "rpc_origins": [],
        "bot_public": false,
        "bot_require_code_grant": false,
        "owner": model::user(1, "owner"),
        "verify_key": "0000",
        "team": null,
        "flags": 0,
        "bot": model::bot_user(FakeDiscord::APPLICATION_ID),
        "redirect_uris": [],
        "interactions_endpoint_url": null,
        "role_connections_verification_url": null,
        "approximate_guild_count": 1,
    })
}

/// The command object Discord returns for one registered command. Ids are kept across
/// re-registration of the same name, as Discord does.
fn registered_command(c: &Value, guild_id: Option<u64>, previous: &[Value]) -> Value {
    let name = c["name"].as_str().unwrap_or("");
    let kind = c["type"].as_u64().unwrap_or(1);
    let id = previous
        .iter()
        .find(|p| p["name"] == json!(name) && p["type"].as_u64() == Some(kind))
        .map(id_of)
        .unwrap_or_else(model::snowflake);
    let mut out = c.clone();
    let obj = match out.as_object_mut() {
        Some(o) => o,
        None => return out,
    };
    obj.insert("id".into(), json!(id.to_string()));
    obj.insert(
        "application_id".into(),
        json!(FakeDiscord::APPLICATION_ID.to_string()),
    );
    obj.insert("version".into(), json!(model::snowflake().to_string()));
    obj.insert("type".into(), json!(kind));
    if let Some(g) = guild_id {
        obj.insert("guild_id".into(), json!(g.to_string()));
    }
    obj.entry("description").or_insert_with(|| json!(""));
    obj.entry("default_member_permissions")
        .or_insert(Value::Null);
    obj.entry("nsfw").or_insert(json!(false));
    obj.entry("integration_types").or_insert(json!([0]));
    obj.entry("contexts").or_insert(Value::Null);
    out
}

/// Attachment objects + bytes for a message create/edit. `existing` are the message's current
/// attachment objects (with `existing_files` their bytes) for edits.
fn build_attachments(
    base: &str,
    channel_id: u64,
    body: &Value,
    parts: &[FilePart],
    existing: &[Value],
    existing_files: &[(String, Vec<u8>)],
) -> (Vec<Value>, Vec<(String, Vec<u8>)>) {
    let mut objects = Vec::new();
    let mut files = Vec::new();
    let mut used = vec![false; parts.len()];
    let new_attachment = |part: &FilePart, filename: Option<&str>, description: Option<&str>| {
        let name = filename.unwrap_or(&part.filename).to_string();
        let obj = model::attachment(
            model::snowflake(),
            base,
            channel_id,
            &name,
            part.bytes.len(),
            description,
            part.content_type.as_deref(),
        );
        (obj, (name, part.bytes.clone()))
    };
    match body.get("attachments").and_then(Value::as_array) {
        Some(list) => {
            for entry in list {
                let id = match &entry["id"] {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => continue,
                };
                let part_name = format!("files[{id}]");
                if let Some(i) = parts.iter().position(|p| p.name == part_name) {
                    used[i] = true;
                    let (o, f) = new_attachment(
                        &parts[i],
                        entry["filename"].as_str(),
                        entry["description"].as_str(),
                    );
                    objects.push(o);
                    files.push(f);
                } else if let Some(i) = existing.iter().position(|e| e["id"] == json!(id)) {
                    objects.push(existing[i].clone());
                    files.push(existing_files.get(i).cloned().unwrap_or_default());
                }
            }
        }
        None => {
            objects.extend(existing.iter().cloned());
            files.extend(existing_files.iter().cloned());
        }
    }
    for (i, part) in parts.iter().enumerate() {
        if !used[i] {
            let (o, f) = new_attachment(part, None, None);
            objects.push(o);
            files.push(f);
        }
    }
    (objects, files)
}

/// Applies an edit body to a stored message; returns the new object.
fn edit_message(st: &mut State, base: &str, id: u64, body: &Value, parts: &[FilePart]) -> Value {
    let Some(msg) = st.messages.get_mut(&id) else {
        return Value::Null;
    };
    let channel_id = msg.raw["channel_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let existing: Vec<Value> = msg.raw["attachments"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let (attachments, files) =
        build_attachments(base, channel_id, body, parts, &existing, &msg.files);
    let raw = &mut msg.raw;
    if let Some(c) = body.get("content") {
        raw["content"] = json!(c.as_str().unwrap_or(""));
    }
    if let Some(e) = body.get("embeds") {
        raw["embeds"] = json!(model::normalize_embeds(
            e.as_array().map(Vec::as_slice).unwrap_or(&[])
        ));
    }
    if let Some(c) = body.get("components") {
        raw["components"] = if c.is_array() { c.clone() } else { json!([]) };
    }
    let mut flags = raw["flags"].as_u64().unwrap_or(0) & !FLAG_LOADING;
    if let Some(f) = body.get("flags").and_then(Value::as_u64) {
        // Only SUPPRESS_EMBEDS (and the components-v2 marker) can be changed by an edit.
        const EDITABLE: u64 = (1 << 2) | (1 << 15);
        flags = (flags & !EDITABLE) | (f & EDITABLE);
    }
    raw["flags"] = json!(flags);
    raw["attachments"] = json!(attachments);
    raw["edited_timestamp"] = json!(model::now_iso());
    msg.files = files;
    msg.raw.clone()
}

fn delete_message(st: &mut State, id: u64) {
    if let Some(m) = st.messages.get_mut(&id) {
        m.deleted = true;
    }
    for c in st.channels.values_mut() {
        c.messages.retain(|m| *m != id);
    }
}

/// Creates an interaction response / follow-up message.
fn new_webhook_message(
    st: &mut State,
    base: &str,
    channel_id: u64,
    body: &Value,
    parts: &[FilePart],
    extra_flags: u64,
) -> (u64, Value) {
    let id = model::snowflake();
    let (attachments, files) = build_attachments(base, channel_id, body, parts, &[], &[]);
    let raw = model::message(model::NewMessage {
        id,
        channel_id,
        app_id: FakeDiscord::APPLICATION_ID,
        kind: 20,
        webhook: true,
        body,
        extra_flags,
        attachments,
    });
    st.insert_message(raw.clone(), files);
    (id, raw)
}

#[allow(clippy::too_many_arguments)]
fn callback(
    st: &mut State,
    base: &str,
    id: &str,
    token: &str,
    body: &Value,
    parts: &[FilePart],
    with_response: bool,
    violations: &mut Vec<String>,
) -> Reply {
    let interaction_id = parse_id(id).unwrap_or(0);
    let Some(inter) = st
        .interactions
        .get(&interaction_id)
        .filter(|i| i.token == token)
        .cloned()
    else {
        violations.push(format!(
            "callback for unknown interaction {id} (or wrong token)"
        ));
        return Reply::error(404, 10062, "Unknown interaction");
    };
    let label = &inter.label;
    if inter.callback.is_some() {
        violations.push(format!("{label}: interaction {id} acknowledged twice"));
        return Reply::error(400, 40060, "Interaction has already been acknowledged.");
    }
    if let (Some(deadline), Some(sent)) = (st.callback_deadline, inter.sent_at) {
        let elapsed = sent.elapsed();
        if elapsed > deadline {
            violations.push(format!(
                "{label}: callback {} ms after the dispatch (limit {} ms)",
                elapsed.as_millis(),
                deadline.as_millis()
            ));
            return Reply::error(404, 10062, "Unknown interaction");
        }
    }
    let kind = body["type"].as_u64().unwrap_or(0) as u8;
    let data = body.get("data").cloned().unwrap_or(Value::Null);
    let flags = data["flags"].as_u64().unwrap_or(0);
    let ephemeral = flags & FLAG_EPHEMERAL != 0;
    let allowed = match (inter.kind, kind) {
        (4, 8) => true,
        (4, _) | (_, 8) => false,
        (_, 4 | 5) => true,
        (3, 6 | 7) => true,
        (5, 6) => true,
        (5, 7) => inter.message_id.is_some(),
        (2 | 3, 9) => true,
        _ => false,
    };
    if !allowed {
        violations.push(format!(
            "{label}: callback type {kind} is not valid for interaction type {}",
            inter.kind
        ));
        return Reply::error(400, 50035, "Invalid Form Body (interaction callback type)");
    }
    let mut original = None;
    let mut loading = false;
    let mut message = None;
    match kind {
        4 => {
            let (mid, raw) = new_webhook_message(
                st,
                base,
                inter.channel_id,
                &data,
                parts,
                flags & FLAG_EPHEMERAL,
            );
            original = Some(mid);
            message = Some(raw);
        }
        5 => {
            let empty = json!({});
            let (mid, raw) = new_webhook_message(
                st,
                base,
                inter.channel_id,
                &empty,
                &[],
                FLAG_LOADING | (flags & FLAG_EPHEMERAL),
            );
            original = Some(mid);
            loading = true;
            message = Some(raw);
        }
        6 => {
            original = inter.message_id;
            message = inter
                .message_id
                .and_then(|m| st.message(m))
                .map(|m| m.raw.clone());
        }
        7 => {
            if let Some(mid) = inter.message_id {
                if st.message(mid).is_some() {
                    message = Some(edit_message(st, base, mid, &data, parts));
                } else {
                    violations.push(format!(
                        "{label}: update of a message the fake does not know"
                    ));
                }
                original = Some(mid);
            }
        }
        _ => {}
    }
    let at = Instant::now();
    let entry = st
        .interactions
        .get_mut(&interaction_id)
        .expect("interaction exists");
    entry.callback = Some(Callback {
        kind,
        ephemeral,
        at,
        data,
    });
    entry.original = original;
    entry.original_loading = loading;
    if with_response {
        let mut resource = json!({"type": kind});
        if let Some(m) = message {
            resource["message"] = m;
        }
        Reply::ok(json!({
            "interaction": {
                "id": interaction_id.to_string(),
                "type": inter.kind,
                "response_message_id": original.map(|m| m.to_string()),
                "response_message_loading": loading,
                "response_message_ephemeral": ephemeral,
            },
            "resource": resource,
        }))
    } else {
        Reply::no_content()
    }
}

fn interaction_for_token(
    st: &State,
    token: &str,
    violations: &mut Vec<String>,
) -> Result<u64, Reply> {
    match st.tokens.get(token) {
        Some(id) => Ok(*id),
        None => {
            violations.push("webhook call with an unknown interaction token".to_string());
            Err(Reply::error(404, 10015, "Unknown Webhook"))
        }
    }
}

fn followup(
    st: &mut State,
    base: &str,
    token: &str,
    body: &Value,
    parts: &[FilePart],
    violations: &mut Vec<String>,
) -> Reply {
    let iid = match interaction_for_token(st, token, violations) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let inter = st.interactions[&iid].clone();
    if inter.callback.is_none() {
        violations.push(format!(
            "{}: follow-up sent before the interaction was acknowledged",
            inter.label
        ));
        return Reply::error(404, 10015, "Unknown Webhook");
    }
    // The first follow-up after a deferred response replaces the "thinking" message.
    if inter.original_loading {
        if let Some(mid) = inter.original.filter(|m| st.message(*m).is_some()) {
            let raw = edit_message(st, base, mid, body, parts);
            st.interactions
                .get_mut(&iid)
                .expect("exists")
                .original_loading = false;
            return Reply::ok(raw);
        }
    }
    let flags = body["flags"].as_u64().unwrap_or(0) & FLAG_EPHEMERAL;
    let (mid, raw) = new_webhook_message(st, base, inter.channel_id, body, parts, flags);
    st.interactions
        .get_mut(&iid)
        .expect("exists")
        .followups
        .push(mid);
    Reply::ok(raw)
}

#[allow(clippy::too_many_arguments)]
fn webhook_message(
    st: &mut State,
    base: &str,
    method: &str,
    token: &str,
    mid: &str,
    body: &Value,
    parts: &[FilePart],
    violations: &mut Vec<String>,
) -> Reply {
    let iid = match interaction_for_token(st, token, violations) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let inter = st.interactions[&iid].clone();
    let target = if mid == "@original" {
        inter.original
    } else {
        parse_id(mid).filter(|m| inter.followups.contains(m) || inter.original == Some(*m))
    };
    let Some(target) = target.filter(|m| st.message(*m).is_some()) else {
        violations.push(format!(
            "{}: {method} webhook message {mid} that does not exist (callback: {:?})",
            inter.label,
            inter.callback.as_ref().map(|c| c.kind)
        ));
        return Reply::error(404, 10008, "Unknown Message");
    };
    match method {
        "GET" => Reply::ok(st.messages[&target].raw.clone()),
        "DELETE" => {
            delete_message(st, target);
            Reply::no_content()
        }
        _ => {
            let raw = edit_message(st, base, target, body, parts);
            if Some(target) == inter.original {
                st.interactions
                    .get_mut(&iid)
                    .expect("exists")
                    .original_loading = false;
            }
            Reply::ok(raw)
        }
    }
}
