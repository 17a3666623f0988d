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

mod replies;
use replies::*;

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
