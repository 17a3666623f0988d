//! The fake Discord's shared state (channels, messages, interactions, registered commands,
//! recorded requests, violations, gateway connections) behind one mutex, plus a `watch`
//! counter bumped on every change so waits are event-driven.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{mpsc, watch};

/// A REST request as the fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// HTTP method, upper case.
    pub method: String,
    /// Path as received (e.g. `/api/v10/channels/2000/messages`), without the query.
    pub path: String,
    /// The matching OpenAPI path template (e.g. `/channels/{channel_id}/messages`), if any.
    pub route: Option<String>,
    /// Query string without the `?` (Discord clients may send a leading `&`).
    pub query: Option<String>,
    /// JSON body, or the `payload_json` part of a multipart body.
    pub body: Option<Value>,
    /// Uploaded files (`files[n]` parts): file name and bytes.
    pub attachments: Vec<(String, Vec<u8>)>,
    /// Status the fake answered with.
    pub status: u16,
    /// When the request arrived.
    pub at: Instant,
}

/// A message as stored: the Discord object returned to the bot plus attachment bytes.
#[derive(Clone, Debug)]
pub struct StoredMessage {
    pub raw: Value,
    pub files: Vec<(String, Vec<u8>)>,
    pub deleted: bool,
}

/// A channel (the guild's text channel, extra channels, threads).
#[derive(Clone, Debug)]
pub struct Channel {
    pub raw: Value,
    /// Message ids in creation order.
    pub messages: Vec<u64>,
}

/// The interaction callback as received.
#[derive(Clone, Debug)]
pub struct Callback {
    pub kind: u8,
    pub ephemeral: bool,
    pub at: Instant,
    pub data: Value,
}

/// One interaction the fake dispatched.
#[derive(Clone, Debug)]
pub struct InteractionState {
    pub id: u64,
    pub token: String,
    /// Human label for errors, e.g. `/deploy` or `button "approve:1"`.
    pub label: String,
    /// Interaction type (2 command, 3 component, 4 autocomplete, 5 modal submit).
    pub kind: u8,
    pub channel_id: u64,
    /// For component interactions (and modal submits from one): the message clicked.
    pub message_id: Option<u64>,
    pub created: Instant,
    pub sent_at: Option<Instant>,
    /// Set when no gateway connection was available to deliver the dispatch.
    pub undelivered: Option<String>,
    pub callback: Option<Callback>,
    pub original: Option<u64>,
    /// The original response is a deferred "thinking" message not yet filled.
    pub original_loading: bool,
    pub followups: Vec<u64>,
}

/// A frame the gateway task should write.
#[derive(Debug)]
pub enum Outgoing {
    /// A JSON payload; for INTERACTION_CREATE the interaction id whose `sent_at` to stamp.
    Json(Value, Option<u64>),
    /// Send a close frame with this code, then end the connection.
    Close(u16),
    /// Drop the TCP connection without a close frame.
    Abort,
}

/// The current gateway connection.
#[derive(Debug)]
pub struct Connection {
    pub id: u64,
    pub tx: mpsc::UnboundedSender<Outgoing>,
    /// IDENTIFY/RESUME completed on this connection (READY/RESUMED written).
    pub ready: bool,
}

/// Everything mutable.
#[derive(Debug, Default)]
pub struct State {
    pub requests: Vec<RecordedRequest>,
    pub violations: Vec<String>,
    pub channels: BTreeMap<u64, Channel>,
    pub messages: HashMap<u64, StoredMessage>,
    pub interactions: HashMap<u64, InteractionState>,
    pub tokens: HashMap<String, u64>,
    /// Last bulk-overwrite body for guild commands and for global commands.
    pub guild_commands_body: Option<Vec<Value>>,
    pub global_commands_body: Option<Vec<Value>>,
    /// Registered commands as returned (with ids), guild and global.
    pub guild_commands: Vec<Value>,
    pub global_commands: Vec<Value>,
    pub connection: Option<Connection>,
    pub connections_total: usize,
    pub next_connection_id: u64,
    pub identifies: usize,
    pub resumes: usize,
    pub session_id: Option<String>,
    pub seq: u64,
    /// Dispatches of the current session, for replay on RESUME.
    pub dispatch_log: Vec<(u64, Value, Option<u64>)>,
    pub member_roles: HashMap<u64, Vec<u64>>,
    pub member_permissions: HashMap<u64, u64>,
    pub attachment_size_limit: Option<u64>,
    pub callback_deadline: Option<Duration>,
    /// While set, the gateway refuses connections (503 to the upgrade): Discord is away.
    pub gateway_down: bool,
}

/// Shared between the handle, the REST handlers and the gateway tasks.
pub struct Shared {
    /// The address it listens on (127.0.0.1 unless started with [`super::FakeDiscord::start_on`]).
    pub host: std::net::IpAddr,
    pub port: u16,
    pub state: Mutex<State>,
    pub changed: watch::Sender<u64>,
}

impl Shared {
    pub fn new(host: std::net::IpAddr, port: u16) -> Shared {
        let (changed, _) = watch::channel(0);
        Shared {
            host,
            port,
            state: Mutex::new(State::default()),
            changed,
        }
    }

    /// Locks the state (a panic elsewhere does not poison the fake for other assertions).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes every waiter.
    pub fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Records a violation (also logged).
    pub fn violation(&self, msg: String) {
        tracing::warn!(target: "fake_discord", "violation: {msg}");
        self.lock().violations.push(msg);
        self.bump();
    }

    /// `http://HOST:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    /// Waits until `f` returns `Some`, re-checking after every state change, up to `timeout`.
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&mut State) -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.changed.subscribe();
        loop {
            if let Some(v) = f(&mut self.lock()) {
                return Some(v);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                // The sender lives in `self`, so this cannot happen; fall back to polling.
                Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(10)).await,
                Err(_) => return f(&mut self.lock()),
            }
        }
    }
}

impl Shared {
    /// Like [`Shared::wait_for`], but `done` runs without the state lock held (so it may call
    /// back into the fake): `extract` takes a snapshot under the lock, `done` judges it.
    /// Returns the last snapshot as `Err` on timeout.
    pub async fn wait_until<S>(
        &self,
        timeout: Duration,
        mut extract: impl FnMut(&mut State) -> S,
        mut done: impl FnMut(&S) -> bool,
    ) -> Result<S, S> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.changed.subscribe();
        loop {
            let snap = extract(&mut self.lock());
            if done(&snap) {
                return Ok(snap);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(10)).await,
                Err(_) => {
                    let snap = extract(&mut self.lock());
                    return if done(&snap) { Ok(snap) } else { Err(snap) };
                }
            }
        }
    }
}

impl State {
    /// The current (non-deleted) message object.
    pub fn message(&self, id: u64) -> Option<&StoredMessage> {
        self.messages.get(&id).filter(|m| !m.deleted)
    }

    /// Stores a new message and appends it to its channel (ephemeral ones stay out of the
    /// channel listing, as in Discord).
    pub fn insert_message(&mut self, raw: Value, files: Vec<(String, Vec<u8>)>) -> u64 {
        let id = id_of(&raw);
        let channel_id = raw["channel_id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let ephemeral = raw["flags"].as_u64().unwrap_or(0) & super::model::FLAG_EPHEMERAL != 0;
        if !ephemeral {
            if let Some(c) = self.channels.get_mut(&channel_id) {
                c.messages.push(id);
                c.raw["last_message_id"] = Value::String(id.to_string());
            }
        }
        self.messages.insert(
            id,
            StoredMessage {
                raw,
                files,
                deleted: false,
            },
        );
        id
    }
}

/// Parses the `id` string of a Discord object.
pub fn id_of(v: &Value) -> u64 {
    match &v["id"] {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}
