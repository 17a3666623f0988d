//! The local HTTP endpoint of `serve` (`[http] listen`, default `127.0.0.1:9464`):
//! `GET /healthz` (200 when the Discord gateway is connected and the store answers, 503 naming
//! the failed check otherwise) and `GET /metrics` (Prometheus text). Everything else is 404
//! (405 for another method on those two paths). hyper 1, HTTP/1.1, one request per connection.
//!
//! Also [`probe`], the client half used by the image's `HEALTHCHECK` (the image has no shell and
//! no curl): a plain HTTP GET over a TCP stream, 3 s in all, exit 1 unless the answer is 200.
//! And the gateway side: [`watch_gateway`] keeps the "gateway ready" flag in step with the shard
//! manager, [`GatewayHealth`] counts reconnects.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

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
        }
    }
}

/// Binds `listen` (`host:port`; port 0 picks a free one), then serves in a spawned task until
/// `shutdown` resolves. Returns the bound address. Callers skip this when `listen` is empty
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
    tokio::spawn(accept_loop(listener, state, shutdown));
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
    if path != "/healthz" && path != "/metrics" {
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
    let (status, body) = healthz(state).await;
    text(status, "application/json", body.to_string() + "\n")
}

/// The `/healthz` status and JSON body.
pub async fn healthz(state: &HealthState) -> (StatusCode, serde_json::Value) {
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
mod tests {
    use super::*;

    #[test]
    fn probe_urls_parse() {
        let u = ProbeUrl::parse("http://127.0.0.1:9464/healthz").unwrap();
        assert_eq!(
            u,
            ProbeUrl {
                host: "127.0.0.1".into(),
                port: 9464,
                path: "/healthz".into()
            }
        );
        assert_eq!(u.authority(), "127.0.0.1:9464");
        let u = ProbeUrl::parse("http://[::1]:80").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("::1", 80, "/"));
        assert_eq!(u.authority(), "[::1]:80");
        let u = ProbeUrl::parse("http://localhost?x=1").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/?x=1"));
        for bad in [
            "https://127.0.0.1/healthz",
            "127.0.0.1:9464",
            "http://:9464/",
            "http://h:99999/",
            "http://u:p@h/",
            "http://[::1/",
            "http://h/a b",
        ] {
            assert!(ProbeUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn answers_parse() {
        assert_eq!(
            parse_answer(b"HTTP/1.1 503 Service Unavailable\r\nA: b\r\n\r\n{\"x\":1}\n").unwrap(),
            (503, "{\"x\":1}\n".to_string())
        );
        assert!(parse_answer(b"SSH-2.0-OpenSSH\r\n").is_err());
        assert!(parse_answer(b"").is_err());
    }

    fn state(store_ok: Arc<AtomicBool>) -> (HealthState, Arc<AtomicBool>) {
        let ready = Arc::new(AtomicBool::new(false));
        let state = HealthState::with_store_probe(
            Arc::new(Metrics::new()),
            Arc::clone(&ready),
            move || {
                let ok = store_ok.load(Ordering::SeqCst);
                async move {
                    if ok {
                        Ok(())
                    } else {
                        Err("database error: locked".to_string())
                    }
                }
            },
        );
        (state, ready)
    }

    async fn get(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, head.to_ascii_lowercase(), body.to_string())
    }

    #[tokio::test]
    async fn health_endpoint_reports_each_check() {
        let store_ok = Arc::new(AtomicBool::new(true));
        let (state, ready) = state(Arc::clone(&store_ok));
        state.metrics.command("status", "ok");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let addr = serve_http("127.0.0.1:0", state, async {
            let _ = stop_rx.await;
        })
        .await
        .unwrap();
        assert_ne!(addr.port(), 0);
        let url = format!("http://{addr}/healthz");

        let (status, _, body) = get(addr, "GET", "/healthz").await;
        assert_eq!(status, 503);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "unavailable");
        assert_eq!(v["checks"]["gateway"], "not connected");
        assert_eq!(v["checks"]["store"], "ok");
        assert_eq!(v["failed"], serde_json::json!(["gateway"]));
        let e = probe(&url).await.unwrap_err();
        assert_eq!(e.code, PROBE_FAILED);
        assert!(
            e.message.contains("HTTP 503") && e.message.contains("gateway"),
            "{e}"
        );

        ready.store(true, Ordering::SeqCst);
        let (status, head, body) = get(addr, "GET", "/healthz").await;
        assert_eq!(status, 200, "{body}");
        assert!(head.contains("content-type: application/json"), "{head}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "ok");
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        assert!(v.get("failed").is_none());
        probe(&url).await.unwrap();

        store_ok.store(false, Ordering::SeqCst);
        let (status, _, body) = get(addr, "GET", "/healthz").await;
        assert_eq!(status, 503);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["checks"]["store"], "failing");
        assert_eq!(v["failed"], serde_json::json!(["store"]));
        assert!(
            !body.contains("locked"),
            "store errors are logged, not served"
        );

        let (status, head, body) = get(addr, "GET", "/metrics").await;
        assert_eq!(status, 200);
        assert!(
            head.contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        assert!(body.contains("sprocket_ops_commands_total{command=\"status\",outcome=\"ok\"} 1\n"));
        assert!(
            body.ends_with("sprocket_ops_gateway_connected 1\n"),
            "{body}"
        );

        assert_eq!(get(addr, "GET", "/").await.0, 404);
        assert_eq!(get(addr, "GET", "/healthz/x").await.0, 404);
        let (status, head, _) = get(addr, "POST", "/metrics").await;
        assert_eq!(status, 405);
        assert!(head.contains("allow: get"), "{head}");

        stop_tx.send(()).unwrap();
        let mut stopped = false;
        for _ in 0..50 {
            if TcpStream::connect(addr).await.is_err() {
                stopped = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(stopped, "the listener closes on shutdown");
        let e = probe(&url).await.unwrap_err();
        assert!(e.message.contains("cannot connect"), "{e}");
    }

    #[tokio::test]
    async fn bad_listen_addresses_are_exit_codes() {
        let (state, _) = state(Arc::new(AtomicBool::new(true)));
        let e = serve_http("", state.clone(), std::future::pending())
            .await
            .unwrap_err();
        assert_eq!(e.code, Exit::USAGE);
        let e = serve_http("not an address", state.clone(), std::future::pending())
            .await
            .unwrap_err();
        assert_eq!(e.code, Exit::USAGE, "{e}");
        let held = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let taken = held.local_addr().unwrap().to_string();
        let e = serve_http(&taken, state, std::future::pending())
            .await
            .unwrap_err();
        assert_eq!(e.code, Exit::UNAVAILABLE, "{e}");
        assert!(e.message.contains(&taken), "{e}");
    }

    #[tokio::test]
    async fn probe_times_out_on_a_silent_server() {
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let hold = tokio::spawn(async move {
            let (_s, _) = silent.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
        });
        let started = std::time::Instant::now();
        let e = probe(&format!("http://{addr}/healthz")).await.unwrap_err();
        assert_eq!(e.code, PROBE_FAILED);
        assert!(e.message.contains("no answer within 3 s"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        hold.abort();
        let e = probe("ftp://x").await.unwrap_err();
        assert_eq!(e.code, Exit::USAGE);
    }
}
