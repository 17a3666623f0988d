//! The fake's WebSocket gateway on `/gw`: HELLO, IDENTIFY -> READY (+ GUILD_CREATE),
//! heartbeat ACKs, RESUME -> replay of missed dispatches + RESUMED, and dispatches
//! (INTERACTION_CREATE) to the most recent ready connection. JSON Text frames only; every
//! dispatch carries an increasing `s`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::State as AxState;
use axum::response::Response as AxResponse;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::model;
use super::state::{Connection, Outgoing, Shared, State};
use super::FakeDiscord;

/// Heartbeat interval announced in HELLO (ms). Heartbeats are ACKed immediately anyway.
pub const HEARTBEAT_INTERVAL_MS: u64 = 41_250;

/// Upgrade handler for `/gw` (the `?v=10&encoding=json` query is ignored).
pub async fn ws_handler(ws: WebSocketUpgrade, AxState(shared): AxState<Arc<Shared>>) -> AxResponse {
    if shared.lock().gateway_down {
        let mut r = AxResponse::new(axum::body::Body::from("gateway down (test)"));
        *r.status_mut() = axum::http::StatusCode::SERVICE_UNAVAILABLE;
        return r;
    }
    ws.on_upgrade(move |socket| run(socket, shared))
}

fn frame(op: u8, d: Value) -> Value {
    json!({"op": op, "d": d, "s": null, "t": null})
}

/// Assigns the next sequence number, logs the dispatch for replay, and returns the frame.
fn next_dispatch(st: &mut State, event: &str, d: Value, interaction: Option<u64>) -> Value {
    st.seq += 1;
    let f = json!({"op": 0, "t": event, "s": st.seq, "d": d});
    st.dispatch_log.push((st.seq, f.clone(), interaction));
    if st.dispatch_log.len() > 10_000 {
        st.dispatch_log.remove(0);
    }
    f
}

async fn send_json(socket: &mut WebSocket, v: &Value) -> bool {
    socket
        .send(WsMessage::Text(v.to_string().into()))
        .await
        .is_ok()
}

fn stamp_sent(shared: &Shared, interaction: Option<u64>) {
    if let Some(id) = interaction {
        let mut st = shared.lock();
        if let Some(i) = st.interactions.get_mut(&id) {
            i.sent_at = Some(Instant::now());
        }
        drop(st);
        shared.bump();
    }
}

fn mark_ready(shared: &Shared, conn_id: u64) {
    let mut st = shared.lock();
    if let Some(c) = st.connection.as_mut().filter(|c| c.id == conn_id) {
        c.ready = true;
    }
    drop(st);
    shared.bump();
}

async fn run(mut socket: WebSocket, shared: Arc<Shared>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let conn_id = {
        let mut st = shared.lock();
        st.connections_total += 1;
        st.next_connection_id += 1;
        let id = st.next_connection_id;
        st.connection = Some(Connection {
            id,
            tx,
            ready: false,
        });
        id
    };
    shared.bump();
    tracing::debug!(target: "fake_discord", "gateway connection {conn_id} opened");

    let hello = frame(
        10,
        json!({"heartbeat_interval": HEARTBEAT_INTERVAL_MS, "_trace": ["fake"]}),
    );
    if !send_json(&mut socket, &hello).await {
        cleanup(&shared, conn_id);
        return;
    }
    loop {
        tokio::select! {
            incoming = socket.recv() => {
                let text = match incoming {
                    Some(Ok(WsMessage::Text(t))) => t.to_string(),
                    Some(Ok(WsMessage::Binary(_))) => {
                        shared.violation("gateway: client sent a binary frame".into());
                        continue;
                    }
                    Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                let Ok(payload) = serde_json::from_str::<Value>(&text) else {
                    shared.violation(format!("gateway: client sent non-JSON text: {text:.200}"));
                    continue;
                };
                if !handle_client_frame(&mut socket, &shared, conn_id, &payload).await {
                    break;
                }
            }
            out = rx.recv() => match out {
                Some(Outgoing::Json(v, interaction)) => {
                    if !send_json(&mut socket, &v).await {
                        break;
                    }
                    stamp_sent(&shared, interaction);
                }
                Some(Outgoing::Close(code)) => {
                    let close = CloseFrame { code, reason: "fake Discord: dropped by test".into() };
                    let _ = socket.send(WsMessage::Close(Some(close))).await;
                    break;
                }
                Some(Outgoing::Abort) | None => break,
            }
        }
    }
    cleanup(&shared, conn_id);
}

fn cleanup(shared: &Shared, conn_id: u64) {
    let mut st = shared.lock();
    if st.connection.as_ref().is_some_and(|c| c.id == conn_id) {
        st.connection = None;
    }
    drop(st);
    shared.bump();
    tracing::debug!(target: "fake_discord", "gateway connection {conn_id} closed");
}

/// Handles one client frame; false ends the connection.
async fn handle_client_frame(
    socket: &mut WebSocket,
    shared: &Shared,
    conn_id: u64,
    payload: &Value,
) -> bool {
    let op = payload["op"].as_u64().unwrap_or(u64::MAX);
    let d = &payload["d"];
    match op {
        // Heartbeat -> ACK.
        1 => send_json(socket, &frame(11, Value::Null)).await,
        // IDENTIFY -> READY + GUILD_CREATE, new session.
        2 => {
            if d["token"].as_str().unwrap_or("").is_empty() {
                shared.violation("gateway: IDENTIFY without a token".into());
            }
            let frames = {
                let mut st = shared.lock();
                st.identifies += 1;
                let session = model::random_token("session-");
                st.session_id = Some(session.clone());
                st.seq = 0;
                st.dispatch_log.clear();
                let resume_url = format!("ws://{}:{}/gw", shared.host, shared.port);
                let ready = model::ready(
                    FakeDiscord::APPLICATION_ID,
                    FakeDiscord::GUILD_ID,
                    &session,
                    &resume_url,
                    d.get("shard").cloned(),
                );
                let ready = next_dispatch(&mut st, "READY", ready, None);
                let (channels, threads): (Vec<Value>, Vec<Value>) = st
                    .channels
                    .values()
                    .map(|c| c.raw.clone())
                    .partition(|c| !matches!(c["type"].as_u64(), Some(10..=12)));
                let guild = model::guild_create(
                    FakeDiscord::GUILD_ID,
                    FakeDiscord::APPLICATION_ID,
                    channels,
                    threads,
                );
                let guild = next_dispatch(&mut st, "GUILD_CREATE", guild, None);
                [ready, guild]
            };
            for f in &frames {
                if !send_json(socket, f).await {
                    return false;
                }
            }
            mark_ready(shared, conn_id);
            true
        }
        // RESUME -> replay + RESUMED, or INVALID_SESSION for an unknown session.
        6 => {
            let session = d["session_id"].as_str().unwrap_or("");
            let from = d["seq"].as_u64().unwrap_or(0);
            let replay = {
                let mut st = shared.lock();
                if st.session_id.as_deref() != Some(session) {
                    None
                } else {
                    st.resumes += 1;
                    let mut frames: Vec<(Value, Option<u64>)> = st
                        .dispatch_log
                        .iter()
                        .filter(|(s, _, _)| *s > from)
                        .map(|(_, f, i)| (f.clone(), *i))
                        .collect();
                    let resumed =
                        next_dispatch(&mut st, "RESUMED", json!({"_trace": ["fake"]}), None);
                    frames.push((resumed, None));
                    Some(frames)
                }
            };
            match replay {
                None => {
                    // Not resumable: the client must IDENTIFY again.
                    send_json(socket, &frame(9, json!(false))).await
                }
                Some(frames) => {
                    for (f, interaction) in &frames {
                        if !send_json(socket, f).await {
                            return false;
                        }
                        stamp_sent(shared, *interaction);
                    }
                    mark_ready(shared, conn_id);
                    true
                }
            }
        }
        // Presence update, voice state, request guild members, ...: accepted and ignored.
        3 | 4 | 8 | 31 => true,
        other => {
            shared.violation(format!("gateway: unexpected op {other} from the client"));
            true
        }
    }
}

/// Sends a dispatch to the most recent ready connection, waiting up to `wait` for one.
/// `interaction` gets its `sent_at` stamped when the frame is written.
pub async fn dispatch(
    shared: &Shared,
    event: &str,
    d: Value,
    interaction: Option<u64>,
    wait: Duration,
) -> Result<(), String> {
    let mut payload = Some(d);
    let sent = shared
        .wait_for(wait, |st| {
            let conn = st.connection.as_ref().filter(|c| c.ready)?;
            let tx = conn.tx.clone();
            let f = next_dispatch(st, event, payload.take()?, interaction);
            match tx.send(Outgoing::Json(f, interaction)) {
                Ok(()) => Some(()),
                Err(mpsc::error::SendError(Outgoing::Json(f, _))) => {
                    // The connection is gone: undo, and wait for the next one.
                    st.dispatch_log.pop();
                    st.seq -= 1;
                    st.connection = None;
                    payload = Some(f["d"].clone());
                    None
                }
                Err(_) => None,
            }
        })
        .await;
    sent.ok_or_else(|| {
        format!(
            "no ready gateway connection within {wait:?} (has the bot connected and identified?)"
        )
    })
}

/// Closes the current gateway connection with `code`, or drops it abruptly when `None`.
pub fn drop_connection(shared: &Shared, code: Option<u16>) -> bool {
    let conn = shared.lock().connection.take();
    shared.bump();
    match conn {
        Some(c) => {
            let _ = c.tx.send(match code {
                Some(code) => Outgoing::Close(code),
                None => Outgoing::Abort,
            });
            true
        }
        None => false,
    }
}
