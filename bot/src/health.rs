//! The local HTTP endpoint of `serve` (`[http] listen`, default `127.0.0.1:9464`):
//! `GET /healthz` is liveness, what the image's `HEALTHCHECK` and Swarm act on: 200 while the
//! process answers and its runtime is not stuck ([`Heartbeat`]), whatever Discord, the store or
//! a running deploy do (a restart would kill the deploy and fix none of them), 503 only when the
//! heartbeat is stale; its JSON body reports the gateway, the store and the running deploys.
//! `GET /readyz` is readiness, for observers: 200 when the gateway is connected and the store
//! answers, 503 naming the failed check otherwise. `GET /metrics` is Prometheus text (the
//! gateway state as `sprocket_ops_gateway_connected`). Everything else is 404 (405 for another
//! method on those paths). hyper 1, HTTP/1.1, one request per connection.
//!
//! Also [`probe`], the client half used by the image's `HEALTHCHECK` (the image has no shell and
//! no curl): a plain HTTP GET over a TCP stream, 3 s in all, exit 1 unless the answer is 200.
//! And the gateway side: [`watch_gateway`] keeps the "gateway ready" flag in step with the shard
//! manager, [`GatewayHealth`] counts reconnects.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use ops_core::metrics::{self, Metrics};
use ops_core::store::Store;
use poise::serenity_prelude as serenity;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::exit::Exit;

/// How long `/healthz` waits for the store before reporting it failed.
pub const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// [`probe`]'s whole budget: connect, send, read the answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Exit code of a failed [`probe`]: Docker reads 1 as "unhealthy".
pub const PROBE_FAILED: i32 = 1;
/// Connections served at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 32;
/// A client has this long to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection is closed after this long, whatever it is doing.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// [`probe`] reads at most this much of the answer.
const PROBE_MAX_ANSWER: u64 = 64 * 1024;

/// The heartbeat ticks this often.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// A heartbeat older than this means the runtime is stuck: `/healthz` answers 503.
pub const STUCK_AFTER: Duration = Duration::from_secs(30);

/// Proof that the async runtime still schedules tasks: [`Heartbeat::spawn`] ticks it every
/// [`HEARTBEAT_EVERY`] from a task of its own; `/healthz` reads how old the last tick is. A
/// handler can answer while a worker is blocked (another worker runs it), so answering alone
/// is not enough; a stale tick is the one thing a restart fixes.
#[derive(Clone)]
pub struct Heartbeat {
    started: Instant,
    /// Milliseconds after `started` of the last tick.
    last_ms: Arc<AtomicU64>,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat::new()
    }
}

impl Heartbeat {
    /// A heartbeat that just ticked (and does not tick by itself: see [`Heartbeat::spawn`]).
    pub fn new() -> Heartbeat {
        Heartbeat {
            started: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Records a tick now.
    pub fn tick(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::SeqCst);
    }

    /// How long ago the last tick was.
    pub fn age(&self) -> Duration {
        let now = self.started.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::SeqCst)))
    }

    /// Ticks every [`HEARTBEAT_EVERY`] in a spawned task, for the life of the runtime.
    pub fn spawn(&self) -> tokio::task::JoinHandle<()> {
        let beat = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(HEARTBEAT_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                beat.tick();
            }
        })
    }
}

/// The layers being deployed by this process now (for `/healthz`'s body).
pub type DeploysProbe = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

/// The future a [`StoreProbe`] returns: `Err` carries the reason (logged, not served).
pub type ProbeFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
/// Checks that the store answers.
pub type StoreProbe = Arc<dyn Fn() -> ProbeFuture + Send + Sync>;

/// What the endpoint reports on.
#[derive(Clone)]
pub struct HealthState {
    pub metrics: Arc<Metrics>,
    /// True while the Discord gateway is connected (see [`watch_gateway`]).
    pub gateway_ready: Arc<AtomicBool>,
    pub store_probe: StoreProbe,
    /// Liveness: `/healthz` fails only when this is stale.
    pub heartbeat: Heartbeat,
    /// The deploys running now (reported, never a reason to fail).
    pub deploys: DeploysProbe,
}

impl HealthState {
    /// Probes the store with a primary-key read (`get_link(0)`: no such row, one index lookup).
    pub fn new(
        metrics: Arc<Metrics>,
        gateway_ready: Arc<AtomicBool>,
        store: Arc<dyn Store>,
    ) -> HealthState {
        HealthState::with_store_probe(metrics, gateway_ready, move || {
            let store = Arc::clone(&store);
            async move {
                store
                    .get_link(0)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        })
    }

    /// With any store check (tests use a switchable one).
    pub fn with_store_probe<F, Fut>(
        metrics: Arc<Metrics>,
        gateway_ready: Arc<AtomicBool>,
        probe: F,
    ) -> HealthState
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        HealthState {
            metrics,
            gateway_ready,
            store_probe: Arc::new(move || Box::pin(probe()) as ProbeFuture),
            heartbeat: Heartbeat::new(),
            deploys: Arc::new(Vec::new),
        }
    }

    /// With this heartbeat (ticked by the caller, usually through [`Heartbeat::spawn`]).
    pub fn with_heartbeat(mut self, heartbeat: Heartbeat) -> HealthState {
        self.heartbeat = heartbeat;
        self
    }

    /// With a view of the running deploys.
    pub fn with_deploys(mut self, deploys: DeploysProbe) -> HealthState {
        self.deploys = deploys;
        self
    }
}

/// Binds `listen` (`host:port`; port 0 picks a free one), then serves in a spawned task until
/// `shutdown` resolves, ticking `state.heartbeat` meanwhile. Returns the bound address. Callers skip this when `listen` is empty
/// (the endpoint is disabled).
pub async fn serve_http(
    listen: &str,
    state: HealthState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<SocketAddr, Exit> {
    if listen.trim().is_empty() {
        return Err(Exit::new(
            Exit::USAGE,
            "http.listen: empty (the endpoint is disabled; do not start it)",
        ));
    }
    let listener = TcpListener::bind(listen).await.map_err(|e| {
        let code = match e.kind() {
            std::io::ErrorKind::InvalidInput => Exit::USAGE,
            _ => Exit::UNAVAILABLE,
        };
        Exit::new(
            code,
            format!("http.listen: cannot listen on `{listen}`: {e}"),
        )
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Exit::new(Exit::UNAVAILABLE, format!("http.listen `{listen}`: {e}")))?;
    // The heartbeat ticks for as long as the endpoint serves.
    let beat = state.heartbeat.spawn();
    tokio::spawn(async move {
        accept_loop(listener, state, shutdown).await;
        beat.abort();
    });
    Ok(addr)
}

async fn accept_loop(
    listener: TcpListener,
    state: HealthState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("http: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            continue; // dropping the stream closes it
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, req).await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            if let Ok(Err(e)) = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                tracing::debug!("http: connection error: {e}");
            }
            drop(slot);
        });
    }
    tracing::debug!("http: endpoint stopped");
}

async fn handle(state: &HealthState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if path != "/healthz" && path != "/readyz" && path != "/metrics" {
        return text(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found\n",
        );
    }
    if req.method() != Method::GET {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "method not allowed\n",
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        return r;
    }
    if path == "/metrics" {
        let ready = state.gateway_ready.load(Ordering::SeqCst);
        let mut body = state.metrics.render_prometheus();
        body.push_str(&metrics::render_gauge(
            "sprocket_ops_gateway_connected",
            "Whether the Discord gateway is connected (1) or not (0).",
            &[],
            if ready { 1.0 } else { 0.0 },
        ));
        return text(StatusCode::OK, metrics::CONTENT_TYPE, body);
    }
    let (status, body) = if path == "/readyz" {
        readyz(state).await
    } else {
        healthz(state).await
    };
    text(status, "application/json", body.to_string() + "\n")
}

/// The `/healthz` (liveness) status and JSON body: 503 only when the heartbeat is stale.
pub async fn healthz(state: &HealthState) -> (StatusCode, serde_json::Value) {
    let age = state.heartbeat.age();
    let stuck = age > STUCK_AFTER;
    let (gateway, store) = checks(state).await;
    let body = serde_json::json!({
        "status": if stuck { "stuck" } else { "ok" },
        "version": env!("CARGO_PKG_VERSION"),
        "heartbeat_age_ms": age.as_millis() as u64,
        "checks": { "gateway": gateway, "store": store },
        "deploys_running": (state.deploys)(),
    });
    if stuck {
        tracing::error!(
            age_ms = age.as_millis() as u64,
            "healthz: the runtime heartbeat is stale: reporting the process stuck"
        );
        (StatusCode::SERVICE_UNAVAILABLE, body)
    } else {
        (StatusCode::OK, body)
    }
}

/// The gateway and store checks, as reported.
async fn checks(state: &HealthState) -> (&'static str, &'static str) {
    let gateway = if state.gateway_ready.load(Ordering::SeqCst) {
        "ok"
    } else {
        "not connected"
    };
    let store = match tokio::time::timeout(STORE_PROBE_TIMEOUT, (state.store_probe)()).await {
        Ok(Ok(())) => "ok",
        Ok(Err(e)) => {
            tracing::warn!("healthz: the store does not answer: {e}");
            "failing"
        }
        Err(_) => {
            tracing::warn!(
                "healthz: the store did not answer within {} s",
                STORE_PROBE_TIMEOUT.as_secs()
            );
            "timeout"
        }
    };
    (gateway, store)
}

/// The `/readyz` (readiness) status and JSON body: 200 when the gateway is connected and the
/// store answers, 503 naming the failed checks otherwise.
pub async fn readyz(state: &HealthState) -> (StatusCode, serde_json::Value) {
    let (gateway, store) = checks(state).await;
    let failed: Vec<&str> = [("gateway", gateway), ("store", store)]
        .iter()
        .filter(|(_, v)| *v != "ok")
        .map(|(k, _)| *k)
        .collect();
    let mut body = serde_json::json!({
        "status": if failed.is_empty() { "ok" } else { "unavailable" },
        "version": env!("CARGO_PKG_VERSION"),
        "checks": { "gateway": gateway, "store": store },
    });
    if failed.is_empty() {
        (StatusCode::OK, body)
    } else {
        body["failed"] = serde_json::json!(failed);
        (StatusCode::SERVICE_UNAVAILABLE, body)
    }
}

fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `sprocket-ops probe --url URL`: GET `url` (plain `http://` only) and succeed on a 200
/// answer within [`PROBE_TIMEOUT`]. Any other outcome is an [`Exit`] with code
/// [`PROBE_FAILED`] (1, "unhealthy" for Docker) and one line saying why (with the answer's body,
/// which for `/healthz` names the failed check); a malformed URL is exit 64.
pub async fn probe(url: &str) -> Result<(), Exit> {
    let target = ProbeUrl::parse(url)
        .map_err(|m| Exit::new(Exit::USAGE, format!("probe --url `{url}`: {m}")))?;
    match tokio::time::timeout(PROBE_TIMEOUT, probe_get(&target)).await {
        Ok(Ok((200, _))) => Ok(()),
        Ok(Ok((status, body))) => Err(Exit::new(
            PROBE_FAILED,
            format!("probe {url}: HTTP {status}: {}", one_line(&body, 300)),
        )),
        Ok(Err(e)) => Err(Exit::new(PROBE_FAILED, format!("probe {url}: {e}"))),
        Err(_) => Err(Exit::new(
            PROBE_FAILED,
            format!(
                "probe {url}: no answer within {} s",
                PROBE_TIMEOUT.as_secs()
            ),
        )),
    }
}

/// The parts of an `http://host[:port][/path]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProbeUrl {
    /// Without brackets for IPv6.
    host: String,
    port: u16,
    /// Path and query, at least `/`.
    path: String,
}

impl ProbeUrl {
    fn parse(url: &str) -> Result<ProbeUrl, &'static str> {
        if url.starts_with("https://") {
            return Err("https is not supported (the probe speaks plain HTTP to a local port)");
        }
        let rest = url
            .strip_prefix("http://")
            .ok_or("must start with http://")?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        if authority.contains('@') {
            return Err("credentials in the URL are not supported");
        }
        if path.contains(|c: char| c.is_whitespace() || c.is_control()) || path.contains('#') {
            return Err("the path must not contain spaces, control characters or `#`");
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or("unclosed `[` in the host")?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or("junk after `]`")?),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err("has no host");
        }
        let port = match port {
            None => 80,
            Some(p) => p.parse().map_err(|_| "the port is not a number 0-65535")?,
        };
        Ok(ProbeUrl {
            host: host.to_string(),
            port,
            path,
        })
    }

    /// The `Host` header value.
    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// One GET; returns the status code and the body (headers dropped).
async fn probe_get(target: &ProbeUrl) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: sprocket-ops-probe/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        target.path,
        target.authority(),
        env!("CARGO_PKG_VERSION"),
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut answer = Vec::new();
    stream
        .take(PROBE_MAX_ANSWER)
        .read_to_end(&mut answer)
        .await
        .map_err(|e| format!("cannot read the answer: {e}"))?;
    parse_answer(&answer)
}

fn parse_answer(answer: &[u8]) -> Result<(u16, String), String> {
    let text = String::from_utf8_lossy(answer);
    let status_line = text.lines().next().unwrap_or("");
    let mut parts = status_line.split_whitespace();
    let status = match (parts.next(), parts.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => code.parse::<u16>().ok(),
        _ => None,
    }
    .ok_or_else(|| format!("not an HTTP answer: {:?}", one_line(&text, 80)))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

fn one_line(s: &str, max_chars: usize) -> String {
    let joined = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.chars().count() > max_chars {
        joined.chars().take(max_chars).collect::<String>() + "…"
    } else {
        joined
    }
}

/// Keeps `ready` equal to "every shard of `shard_manager` is connected", checking every second,
/// until the shard manager is dropped. The shard manager is the authority (an event can be
/// missed while a shard restarts; its recorded stage cannot).
pub fn watch_gateway(
    shard_manager: &Arc<serenity::ShardManager>,
    ready: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let manager: Weak<serenity::ShardManager> = Arc::downgrade(shard_manager);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(manager) = manager.upgrade() else {
                break;
            };
            let connected = {
                let runners = manager.runners.lock().await;
                !runners.is_empty()
                    && runners
                        .values()
                        .all(|r| r.stage == serenity::ConnectionStage::Connected)
            };
            ready.store(connected, Ordering::SeqCst);
        }
        ready.store(false, Ordering::SeqCst);
    })
}

/// A serenity event handler (add it with `ClientBuilder::event_handler`) that counts gateway
/// reconnects: every READY after the first, and every RESUMED.
pub struct GatewayHealth {
    metrics: Arc<Metrics>,
    seen_ready: AtomicBool,
}

impl GatewayHealth {
    pub fn new(metrics: Arc<Metrics>) -> GatewayHealth {
        GatewayHealth {
            metrics,
            seen_ready: AtomicBool::new(false),
        }
    }
}

#[poise::async_trait]
impl serenity::EventHandler for GatewayHealth {
    async fn ready(&self, _ctx: serenity::Context, _ready: serenity::Ready) {
        if self.seen_ready.swap(true, Ordering::SeqCst) {
            self.metrics.gateway_reconnect();
        }
    }

    async fn resume(&self, _ctx: serenity::Context, _event: serenity::ResumedEvent) {
        self.metrics.gateway_reconnect();
    }

    /// serenity hands every event handler its own copy of the interaction: this one's unseal
    /// share (if any) is zeroised instead of dropped as it is.
    async fn interaction_create(&self, _ctx: serenity::Context, mut i: serenity::Interaction) {
        commands::vault::zeroize_shares(&mut i);
    }
}

#[cfg(test)]
mod tests;
