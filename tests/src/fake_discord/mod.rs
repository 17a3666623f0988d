//! An in-process fake Discord for end-to-end tests: REST (`/api/v10/...`) and the WebSocket
//! gateway (`/gw`) on one 127.0.0.1 port. A real serenity/poise client connects to it with
//! `HttpBuilder::new(token).proxy(fake.api_base_url()).ratelimiter_disabled(true)`; the test
//! then plays the users (slash commands, button clicks, modal submits, autocomplete) and
//! observes what the bot does (interaction callbacks, edits, follow-ups, channel messages).
//!
//! Every REST request is recorded ([`FakeDiscord::requests`]) and its body validated against
//! Discord's OpenAPI spec ([`openapi`]); violations, and protocol misuse such as acknowledging
//! an interaction twice, are collected in [`FakeDiscord::violations`]. Waits are event-driven
//! (a `watch` counter bumped on every state change) and always bounded: an interaction the bot
//! never answers is an error, never a pass (serenity silently drops dispatches it cannot
//! deserialize).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use sprocket_ops_tests::fake_discord::{FakeDiscord, TestUser};
//! let fake = FakeDiscord::start().await;
//! // ... start the bot with HttpBuilder::proxy(fake.api_base_url()) ...
//! fake.wait_ready(Duration::from_secs(10)).await?;
//! fake.wait_commands_registered(Duration::from_secs(10)).await?;
//! let alice = TestUser::new(7, "alice");
//! let i = fake.invoke(&alice, "ping", serde_json::json!([])).await;
//! let r = i.response(Duration::from_secs(5)).await?;
//! assert_eq!(r.original.unwrap().content, "pong");
//! fake.assert_no_violations();
//! # Ok(()) }
//! ```

pub mod gateway;
mod interaction;
mod message;
pub mod model;
pub mod openapi;
pub mod rest;
pub mod state;

pub use interaction::Interaction;
pub use message::{Message, Response};

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::serve::ListenerExt as _;
use axum::Router;
use serde_json::{json, Map, Value};

pub use state::RecordedRequest;
use state::{Channel, InteractionState, Shared, State, StoredMessage};

/// How long `invoke` & co. wait for a ready gateway connection before giving up.
const CONNECTION_WAIT: Duration = Duration::from_secs(10);
/// How long `submit_modal` waits for the bot to have shown the modal.
const MODAL_WAIT: Duration = Duration::from_secs(5);
/// Grace period after the modal callback before the submit is sent: poise's `execute_modal`
/// registers its collector only after the callback request returns.
const MODAL_GRACE: Duration = Duration::from_millis(100);
/// Default `attachment_size_limit` of interactions (10 MiB).
pub const DEFAULT_ATTACHMENT_SIZE_LIMIT: u64 = 10 * 1024 * 1024;

/// A user of the fake guild who invokes commands and clicks buttons.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestUser {
    pub id: u64,
    pub name: String,
}

impl TestUser {
    pub fn new(id: u64, name: impl Into<String>) -> TestUser {
        TestUser {
            id,
            name: name.into(),
        }
    }
}

/// Handle to a running fake Discord (cheap to clone). The server runs on the test's tokio
/// runtime and stops with it.
#[derive(Clone)]
pub struct FakeDiscord {
    shared: Arc<Shared>,
}

impl FakeDiscord {
    /// The application (and bot user) id.
    pub const APPLICATION_ID: u64 = 42;
    /// The one guild.
    pub const GUILD_ID: u64 = 1000;
    /// The text channel commands are invoked in.
    pub const CHANNEL_ID: u64 = 2000;

    /// Binds 127.0.0.1:0 and serves REST and the gateway on that port. Loads the OpenAPI spec
    /// (panics if it is missing: validation is mandatory).
    pub async fn start() -> FakeDiscord {
        Self::start_on(std::net::Ipv4Addr::LOCALHOST.into()).await
    }

    /// As [`FakeDiscord::start`], on `host` instead of 127.0.0.1 (for example the gateway
    /// address of a Docker network a test made, so a containerised bot reaches it); the URLs
    /// it gives (REST base, the gateway URL of `GET /gateway/bot`) name that address.
    pub async fn start_on(host: std::net::IpAddr) -> FakeDiscord {
        // Fail fast (and clearly) if the spec is missing.
        let _ = openapi::spec();
        let listener = tokio::net::TcpListener::bind((host, 0))
            .await
            .unwrap_or_else(|e| panic!("fake Discord: cannot bind {host}:0: {e}"));
        let port = listener.local_addr().expect("local addr").port();
        let shared = Arc::new(Shared::new(host, port));
        {
            let mut st = shared.lock();
            let raw = model::channel(Self::CHANNEL_ID, Self::GUILD_ID, 0, "ops", None, None);
            st.channels.insert(
                Self::CHANNEL_ID,
                Channel {
                    raw,
                    messages: vec![],
                },
            );
        }
        let app = Router::new()
            .route("/gw", get(gateway::ws_handler))
            .route("/attachments/{channel}/{id}/{name}", get(rest::attachment))
            .fallback(rest::handle)
            .layer(DefaultBodyLimit::max(rest::BODY_LIMIT))
            .with_state(shared.clone());
        // TCP_NODELAY on every accepted socket, as production HTTP and WebSocket servers set
        // it. Without it, Nagle's algorithm holds a gateway frame written right after another
        // until the bot's delayed ACK (40 ms on Linux): a harness delay, not the bot's.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::warn!(target: "fake_discord", "cannot set TCP_NODELAY: {e}");
            }
        });
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(target: "fake_discord", "server stopped: {e}");
            }
        });
        FakeDiscord { shared }
    }

    /// `http://HOST:PORT`: what the bot passes to `HttpBuilder::proxy`.
    pub fn api_base_url(&self) -> String {
        self.shared.base_url()
    }

    /// `ws://HOST:PORT/gw`
    pub fn gateway_url(&self) -> String {
        format!("ws://{}:{}/gw", self.shared.host, self.shared.port)
    }

    /// Adds a text channel to the guild (posting to an unknown channel is a 404 + violation).
    pub fn add_channel(&self, id: u64, name: &str) {
        let raw = model::channel(id, Self::GUILD_ID, 0, name, None, None);
        self.shared.lock().channels.entry(id).or_insert(Channel {
            raw,
            messages: vec![],
        });
        self.shared.bump();
    }

    /// Role ids the user's `member` carries in interactions.
    pub fn set_member_roles(&self, user_id: u64, roles: &[u64]) {
        self.shared
            .lock()
            .member_roles
            .insert(user_id, roles.to_vec());
    }

    /// The user's `member.permissions` (default [`model::DEFAULT_MEMBER_PERMISSIONS`]).
    pub fn set_member_permissions(&self, user_id: u64, permissions: u64) {
        self.shared
            .lock()
            .member_permissions
            .insert(user_id, permissions);
    }

    /// `attachment_size_limit` of subsequent interactions (default 10 MiB).
    pub fn set_attachment_size_limit(&self, bytes: u64) {
        self.shared.lock().attachment_size_limit = Some(bytes);
    }

    /// Enforce Discord's initial-response deadline: a callback later than `deadline` after the
    /// dispatch gets 404 "Unknown interaction" and a violation. Off by default.
    pub fn set_callback_deadline(&self, deadline: Option<Duration>) {
        self.shared.lock().callback_deadline = deadline;
    }

    /// Waits until a gateway connection completed IDENTIFY (READY sent) or RESUME.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        self.shared
            .wait_for(timeout, |st| {
                st.connection.as_ref().filter(|c| c.ready).map(|_| ())
            })
            .await
            .ok_or_else(|| {
                let st = self.shared.lock();
                anyhow!(
                    "fake Discord: no gateway session ready within {timeout:?} (connections: {}, \
                     identifies: {}, REST requests so far: {:?})",
                    st.connections_total,
                    st.identifies,
                    st.requests
                        .iter()
                        .map(|r| format!("{} {}", r.method, r.path))
                        .collect::<Vec<_>>()
                )
            })
    }

    /// Waits for a bulk overwrite of the commands (guild, else global) and returns its body.
    pub async fn wait_commands_registered(&self, timeout: Duration) -> anyhow::Result<Vec<Value>> {
        self.shared
            .wait_for(timeout, |st| {
                st.guild_commands_body
                    .clone()
                    .or_else(|| st.global_commands_body.clone())
            })
            .await
            .ok_or_else(|| {
                anyhow!(
                    "fake Discord: no command registration (PUT .../commands) within {timeout:?}"
                )
            })
    }

    /// The registered commands as returned to the bot (with ids), guild ones first.
    pub fn registered_commands(&self) -> Vec<Value> {
        let st = self.shared.lock();
        st.guild_commands
            .iter()
            .chain(&st.global_commands)
            .cloned()
            .collect()
    }

    /// A slash command in [`Self::CHANNEL_ID`]. `command` is the command name, optionally
    /// followed by subcommand (group) names (`"deploy status"`), which wrap `options`;
    /// `options` is Discord's `data.options` array. Options without `type` get it from the
    /// registered command (or from the JSON value).
    pub async fn invoke(&self, user: &TestUser, command: &str, options: Value) -> Interaction {
        self.invoke_in(Self::CHANNEL_ID, user, command, options)
            .await
    }

    /// [`Self::invoke`] in another channel (created in the fake guild if unknown).
    pub async fn invoke_in(
        &self,
        channel_id: u64,
        user: &TestUser,
        command: &str,
        options: Value,
    ) -> Interaction {
        let data = self.command_data(command, options);
        self.send_interaction(user, 2, channel_id, format!("/{command}"), data, None)
            .await
    }

    /// An autocomplete request (type 4); one option should carry `"focused": true`.
    pub async fn autocomplete(
        &self,
        user: &TestUser,
        command: &str,
        options: Value,
    ) -> Interaction {
        let data = self.command_data(command, options);
        let label = format!("autocomplete /{command}");
        self.send_interaction(user, 4, Self::CHANNEL_ID, label, data, None)
            .await
    }

    /// A button click (type 3) on `message` (the message the bot posted; its current state is
    /// sent). Any `custom_id` can be sent, as a modified client could.
    pub async fn click(&self, user: &TestUser, message: &Message, custom_id: &str) -> Interaction {
        let component_type = message
            .component(custom_id)
            .and_then(|c| c["type"].as_u64())
            .unwrap_or(2);
        let mut data = json!({"custom_id": custom_id, "component_type": component_type});
        if component_type != 2 {
            data["values"] = json!([]);
        }
        let label = format!("button {custom_id:?}");
        self.component_interaction(user, message, data, label).await
    }

    /// A button click on `message` reported from `channel_id` (the message's channel as a
    /// forged interaction, or a message the bot posted before that channel left the
    /// allow-list, would be).
    pub async fn click_in(
        &self,
        channel_id: u64,
        user: &TestUser,
        message: &Message,
        custom_id: &str,
    ) -> Interaction {
        let current = {
            let st = self.shared.lock();
            st.message(message.id)
                .map(|m| m.raw.clone())
                .unwrap_or_else(|| message.raw.clone())
        };
        let data = json!({"custom_id": custom_id, "component_type": 2});
        let label = format!("button {custom_id:?} in channel {channel_id}");
        self.send_interaction(user, 3, channel_id, label, data, Some(current))
            .await
    }

    /// A select-menu choice (type 3, string select) on `message`.
    pub async fn select(
        &self,
        user: &TestUser,
        message: &Message,
        custom_id: &str,
        values: &[&str],
    ) -> Interaction {
        let component_type = message
            .component(custom_id)
            .and_then(|c| c["type"].as_u64())
            .unwrap_or(3);
        let data =
            json!({"custom_id": custom_id, "component_type": component_type, "values": values});
        let label = format!("select {custom_id:?}");
        self.component_interaction(user, message, data, label).await
    }

    async fn component_interaction(
        &self,
        user: &TestUser,
        message: &Message,
        data: Value,
        label: String,
    ) -> Interaction {
        let current = {
            let st = self.shared.lock();
            st.message(message.id)
                .map(|m| m.raw.clone())
                .unwrap_or_else(|| message.raw.clone())
        };
        let channel_id = current["channel_id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(message.channel_id);
        self.send_interaction(user, 3, channel_id, label, data, Some(current))
            .await
    }

    /// A modal submit (type 5). Waits (bounded) until the bot has shown a modal with this
    /// `custom_id`, plus a short grace period for collectors to register.
    pub async fn submit_modal(
        &self,
        user: &TestUser,
        custom_id: &str,
        fields: &[(&str, &str)],
    ) -> Interaction {
        let shown = self
            .shared
            .wait_for(MODAL_WAIT, |st| {
                st.interactions
                    .values()
                    .filter(|i| {
                        i.callback.as_ref().is_some_and(|c| {
                            c.kind == 9 && c.data["custom_id"].as_str() == Some(custom_id)
                        })
                    })
                    .max_by_key(|i| i.created)
                    .map(|i| {
                        (
                            i.callback.as_ref().map(|c| c.at),
                            i.channel_id,
                            i.message_id,
                        )
                    })
            })
            .await;
        let (channel_id, message_id) = match shown {
            Some((at, channel_id, message_id)) => {
                if let Some(at) = at {
                    let since = at.elapsed();
                    if since < MODAL_GRACE {
                        tokio::time::sleep(MODAL_GRACE - since).await;
                    }
                }
                (channel_id, message_id)
            }
            None => (Self::CHANNEL_ID, None),
        };
        let rows: Vec<Value> = fields
            .iter()
            .map(|(id, value)| {
                json!({"type": 1, "components": [{"type": 4, "custom_id": id, "value": value}]})
            })
            .collect();
        let data = json!({"custom_id": custom_id, "components": rows});
        let message = {
            let st = self.shared.lock();
            message_id
                .and_then(|m| st.message(m))
                .map(|m| m.raw.clone())
        };
        let label = format!("modal {custom_id:?}");
        self.send_interaction(user, 5, channel_id, label, data, message)
            .await
    }

    /// Builds `data` for a command/autocomplete interaction.
    fn command_data(&self, command: &str, options: Value) -> Value {
        let mut words = command.split_whitespace();
        let name = words.next().unwrap_or("").to_string();
        let path: Vec<&str> = words.collect();
        let st = self.shared.lock();
        let registered = st
            .guild_commands
            .iter()
            .chain(&st.global_commands)
            .find(|c| c["name"] == json!(name) && c["type"].as_u64().unwrap_or(1) == 1)
            .cloned();
        drop(st);
        // Wrap the options in the subcommand (group) path, innermost first.
        let mut options = match options {
            Value::Array(a) => a,
            Value::Null => vec![],
            other => vec![other],
        };
        let defs = registered
            .as_ref()
            .and_then(|c| c["options"].as_array().cloned())
            .unwrap_or_default();
        let mut def_chain = vec![defs];
        for sub in &path {
            let next = def_chain
                .last()
                .and_then(|d| d.iter().find(|o| o["name"] == json!(sub)))
                .and_then(|o| o["options"].as_array().cloned())
                .unwrap_or_default();
            def_chain.push(next);
        }
        fill_option_types(
            &mut options,
            def_chain.last().map(Vec::as_slice).unwrap_or(&[]),
        );
        for (depth, sub) in path.iter().enumerate().rev() {
            let kind = if depth + 1 < path.len() { 2 } else { 1 };
            options = vec![json!({"type": kind, "name": sub, "options": options})];
        }
        let mut data = json!({
            "id": registered.as_ref().map(state::id_of).unwrap_or_else(model::snowflake).to_string(),
            "name": name,
            "type": 1,
            "options": options,
        });
        if let Some(g) = registered
            .as_ref()
            .and_then(|c| c.get("guild_id"))
            .filter(|g| !g.is_null())
        {
            data["guild_id"] = g.clone();
        }
        let resolved = resolve_options(&data["options"]);
        if !resolved.is_empty() {
            data["resolved"] = Value::Object(resolved);
        }
        data
    }

    async fn send_interaction(
        &self,
        user: &TestUser,
        kind: u8,
        channel_id: u64,
        label: String,
        data: Value,
        message: Option<Value>,
    ) -> Interaction {
        let id = model::snowflake();
        let token = model::random_token("itok-");
        let payload = {
            let mut st = self.shared.lock();
            st.channels.entry(channel_id).or_insert_with(|| {
                let name = format!("channel-{channel_id}");
                let raw = model::channel(channel_id, Self::GUILD_ID, 0, &name, None, None);
                Channel {
                    raw,
                    messages: vec![],
                }
            });
            let channel = &st.channels[&channel_id].raw;
            let partial_channel = json!({
                "id": channel["id"],
                "type": channel["type"],
                "name": channel["name"],
                "guild_id": channel["guild_id"],
                "parent_id": channel["parent_id"],
                "flags": 0,
                "permissions": model::BOT_PERMISSIONS.to_string(),
            });
            let roles = st.member_roles.get(&user.id).cloned().unwrap_or_default();
            let perms = st
                .member_permissions
                .get(&user.id)
                .copied()
                .unwrap_or(model::DEFAULT_MEMBER_PERMISSIONS);
            let message_id = message.as_ref().map(state::id_of);
            let payload = model::interaction(model::InteractionSpec {
                id,
                app_id: Self::APPLICATION_ID,
                kind,
                token: &token,
                guild_id: Self::GUILD_ID,
                channel: partial_channel,
                member: model::member(user.id, &user.name, &roles, perms),
                attachment_size_limit: st
                    .attachment_size_limit
                    .unwrap_or(DEFAULT_ATTACHMENT_SIZE_LIMIT),
                data,
                message,
            });
            st.interactions.insert(
                id,
                InteractionState {
                    id,
                    token: token.clone(),
                    label: label.clone(),
                    kind,
                    channel_id,
                    message_id,
                    created: Instant::now(),
                    sent_at: None,
                    undelivered: None,
                    callback: None,
                    original: None,
                    original_loading: false,
                    followups: vec![],
                },
            );
            st.tokens.insert(token.clone(), id);
            payload
        };
        if let Err(e) = gateway::dispatch(
            &self.shared,
            "INTERACTION_CREATE",
            payload,
            Some(id),
            CONNECTION_WAIT,
        )
        .await
        {
            tracing::warn!(target: "fake_discord", "{label}: {e}");
            if let Some(i) = self.shared.lock().interactions.get_mut(&id) {
                i.undelivered = Some(e);
            }
            self.shared.bump();
        }
        Interaction {
            shared: self.shared.clone(),
            id,
            token,
            label,
        }
    }

    /// Sends any dispatch (e.g. `MESSAGE_CREATE`) to the bot's current gateway session.
    pub async fn send_dispatch(&self, event: &str, d: Value) -> anyhow::Result<()> {
        gateway::dispatch(&self.shared, event, d, None, CONNECTION_WAIT)
            .await
            .map_err(|e| anyhow!(e))
    }

    /// The channel's visible messages in posting order, after edits (no ephemeral, no deleted).
    pub async fn channel_messages(&self, channel_id: u64) -> Vec<Message> {
        channel_messages(&self.shared.lock(), channel_id)
    }

    /// Waits for the first message in the channel (current state) satisfying `pred`.
    pub async fn wait_channel_message(
        &self,
        channel_id: u64,
        pred: impl Fn(&Message) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<Message> {
        // `pred` runs without the lock held, so it may call back into the fake.
        match self
            .shared
            .wait_until(
                timeout,
                |st| channel_messages(st, channel_id),
                |msgs| msgs.iter().any(&pred),
            )
            .await
        {
            Ok(msgs) => Ok(msgs
                .into_iter()
                .find(|m| pred(m))
                .expect("a message matched")),
            Err(msgs) => {
                let seen: Vec<String> = msgs.iter().map(Message::text).collect();
                Err(anyhow!(
                    "fake Discord: no matching message in channel {channel_id} within {timeout:?}; \
                     messages: {seen:?}"
                ))
            }
        }
    }

    /// A message by id (any channel, ephemeral included), current state.
    pub fn message(&self, id: u64) -> Option<Message> {
        self.shared.lock().message(id).map(Message::from_stored)
    }

    /// Every REST request so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// OpenAPI and protocol violations so far (each also logged at WARN).
    pub fn violations(&self) -> Vec<String> {
        self.shared.lock().violations.clone()
    }

    /// Panics listing every violation.
    pub fn assert_no_violations(&self) {
        let v = self.violations();
        if !v.is_empty() {
            panic!(
                "fake Discord recorded {} violation(s):\n  - {}",
                v.len(),
                v.join("\n  - ")
            );
        }
    }

    /// Closes the gateway connection with close code 4000 (serenity then resumes).
    pub async fn drop_gateway(&self) {
        gateway::drop_connection(&self.shared, Some(4000));
    }

    /// Takes the gateway down (the connection dropped, new ones refused with 503) or brings
    /// it back: a Discord outage as long as the test wants.
    pub async fn set_gateway_down(&self, down: bool) {
        self.shared.lock().gateway_down = down;
        if down {
            gateway::drop_connection(&self.shared, None);
        }
    }

    /// Drops the gateway TCP connection without a close frame.
    pub async fn drop_gateway_abrupt(&self) {
        gateway::drop_connection(&self.shared, None);
    }

    /// Gateway connections accepted so far.
    pub fn gateway_connections(&self) -> usize {
        self.shared.lock().connections_total
    }

    /// IDENTIFYs and successful RESUMEs so far.
    pub fn gateway_sessions(&self) -> (usize, usize) {
        let st = self.shared.lock();
        (st.identifies, st.resumes)
    }

    /// Waits until at least `n` gateway connections were accepted and one is ready.
    pub async fn wait_gateway_connections(
        &self,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        self.shared
            .wait_for(timeout, |st| {
                (st.connections_total >= n && st.connection.as_ref().is_some_and(|c| c.ready)).then_some(())
            })
            .await
            .ok_or_else(|| {
                anyhow!(
                    "fake Discord: fewer than {n} ready gateway connections within {timeout:?} (have {})",
                    self.gateway_connections()
                )
            })
    }
}

fn channel_messages(st: &State, channel_id: u64) -> Vec<Message> {
    st.channels
        .get(&channel_id)
        .map(|c| {
            c.messages
                .iter()
                .filter_map(|id| st.message(*id))
                .map(Message::from_stored)
                .collect()
        })
        .unwrap_or_default()
}

/// Gives options without `type` one: from the registered definition, else from the value.
fn fill_option_types(options: &mut [Value], defs: &[Value]) {
    for o in options.iter_mut() {
        let Some(obj) = o.as_object_mut() else {
            continue;
        };
        let name = obj.get("name").cloned().unwrap_or(Value::Null);
        let def = defs.iter().find(|d| d["name"] == name);
        if !obj.contains_key("type") {
            let kind = def
                .and_then(|d| d["type"].as_u64())
                .unwrap_or(match obj.get("value") {
                    Some(Value::Bool(_)) => 5,
                    Some(Value::Number(n)) if n.is_i64() || n.is_u64() => 4,
                    Some(Value::Number(_)) => 10,
                    _ => 3,
                });
            obj.insert("type".into(), json!(kind));
        }
        if let Some(Value::Array(inner)) = obj.get_mut("options") {
            let sub_defs = def
                .and_then(|d| d["options"].as_array().cloned())
                .unwrap_or_default();
            fill_option_types(inner, &sub_defs);
        }
    }
}

/// `data.resolved` for user (6) and channel (7) options.
fn resolve_options(options: &Value) -> Map<String, Value> {
    fn walk(
        options: &Value,
        users: &mut Map<String, Value>,
        members: &mut Map<String, Value>,
        channels: &mut Map<String, Value>,
    ) {
        for o in options.as_array().into_iter().flatten() {
            let id = match &o["value"] {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => String::new(),
            };
            match o["type"].as_u64() {
                Some(6) if !id.is_empty() => {
                    let uid: u64 = id.parse().unwrap_or(0);
                    users.insert(id.clone(), model::user(uid, &format!("user{uid}")));
                    let mut m = model::member(uid, "", &[], model::DEFAULT_MEMBER_PERMISSIONS);
                    if let Some(obj) = m.as_object_mut() {
                        obj.remove("user");
                    }
                    members.insert(id, m);
                }
                Some(7) if !id.is_empty() => {
                    channels.insert(
                        id.clone(),
                        json!({"id": id, "name": format!("channel-{id}"), "type": 0, "permissions": model::BOT_PERMISSIONS.to_string()}),
                    );
                }
                Some(1 | 2) => walk(&o["options"], users, members, channels),
                _ => {}
            }
        }
    }
    let (mut users, mut members, mut channels) = (Map::new(), Map::new(), Map::new());
    walk(options, &mut users, &mut members, &mut channels);
    let mut out = Map::new();
    if !users.is_empty() {
        out.insert("users".into(), Value::Object(users));
        out.insert("members".into(), Value::Object(members));
    }
    if !channels.is_empty() {
        out.insert("channels".into(), Value::Object(channels));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_types_are_filled_and_subcommands_wrapped() {
        let mut opts = vec![
            json!({"name": "n", "value": 3}),
            json!({"name": "u", "value": "7"}),
        ];
        fill_option_types(&mut opts, &[json!({"name": "u", "type": 6})]);
        assert_eq!(opts[0]["type"], json!(4));
        assert_eq!(opts[1]["type"], json!(6));
        let r = resolve_options(&json!(opts));
        assert_eq!(r["users"]["7"]["id"], json!("7"));
    }
}
