//! `sprocket-ops docker-proxy`: the bot's only way to the Docker engine in the stack. An HTTP/1
//! proxy in front of the engine socket that forwards a request only when the allow-list
//! ([`ops_core::swarm::allowlist`], the shipped `docker_api_allow.txt`) admits its method and
//! path; everything else gets `403` with a JSON `message` (as the engine words errors), and
//! so does any request asking for a protocol upgrade (attach, exec and the like hijack the
//! connection). Bodies stream both ways (logs, events). Each downstream connection has its own
//! upstream connection, opened on its first admitted request. Reads no configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use ops_core::swarm::allowlist::AllowList;
use tokio::net::{TcpListener, TcpStream, UnixStream};

use crate::exit::Exit;

type Body = UnsyncBoxBody<Bytes, hyper::Error>;

/// Where the engine listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    Unix(PathBuf),
    Tcp(String),
}

impl Upstream {
    /// `unix:///var/run/docker.sock`, `tcp://host:port` or `http://host:port`.
    pub fn parse(s: &str) -> Result<Upstream, String> {
        if let Some(p) = s.strip_prefix("unix://") {
            if p.is_empty() {
                return Err("unix:// needs a socket path".into());
            }
            return Ok(Upstream::Unix(PathBuf::from(p)));
        }
        for prefix in ["tcp://", "http://"] {
            if let Some(a) = s.strip_prefix(prefix) {
                let a = a.trim_end_matches('/');
                if a.is_empty() || a.contains('/') {
                    return Err(format!("{prefix} needs host:port only"));
                }
                return Ok(Upstream::Tcp(a.to_string()));
            }
        }
        Err("expected unix://PATH, tcp://HOST:PORT or http://HOST:PORT".into())
    }
}

/// One request as the proxy saw it (for the tests' record of what the bot sends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    /// Path and query as received.
    pub path: String,
    pub allowed: bool,
}

/// Where decisions go besides the log: `None` in production.
pub type Recorder = Option<Arc<Mutex<Vec<Seen>>>>;

/// The CLI entry point: listens on `listen` until the process is stopped.
pub async fn run(listen: &str, upstream: &str) -> Result<(), Exit> {
    let upstream = Upstream::parse(upstream)
        .map_err(|m| Exit::new(Exit::USAGE, format!("docker-proxy --upstream: {m}")))?;
    let addr: SocketAddr = listen.parse().map_err(|e| {
        Exit::new(
            Exit::USAGE,
            format!("docker-proxy --listen `{listen}`: {e}"),
        )
    })?;
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        Exit::new(
            Exit::UNAVAILABLE,
            format!("docker-proxy: cannot listen on {addr}: {e}"),
        )
    })?;
    let rules = AllowList::shipped();
    tracing::info!(%addr, upstream = ?upstream, rules = rules.rules().len(), "docker-proxy listening");
    serve(listener, upstream, Arc::new(rules), None).await;
    Ok(())
}

/// Accepts connections on `listener` forever, each served on its own task.
pub async fn serve(
    listener: TcpListener,
    upstream: Upstream,
    rules: Arc<AllowList>,
    recorder: Recorder,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "docker-proxy: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let conn = Connection {
            upstream: upstream.clone(),
            rules: rules.clone(),
            recorder: recorder.clone(),
            sender: Arc::new(tokio::sync::Mutex::new(None)),
        };
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let conn = conn.clone();
                async move { Ok::<_, hyper::Error>(conn.handle(req).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "docker-proxy: connection ended");
            }
        });
    }
}

/// One downstream connection and its upstream one.
#[derive(Clone)]
struct Connection {
    upstream: Upstream,
    rules: Arc<AllowList>,
    recorder: Recorder,
    sender: Arc<tokio::sync::Mutex<Option<SendRequest<Incoming>>>>,
}

impl Connection {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let method = req.method().as_str().to_string();
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        let decision = if wants_upgrade(&req) {
            Err("a protocol upgrade (connection hijack) is never forwarded".to_string())
        } else if req.uri().authority().is_some() {
            Err("absolute-form request targets are not forwarded".to_string())
        } else {
            self.rules
                .check(&method, &path)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        if let Some(r) = &self.recorder {
            r.lock().unwrap_or_else(|e| e.into_inner()).push(Seen {
                method: method.clone(),
                path: path.clone(),
                allowed: decision.is_ok(),
            });
        }
        if let Err(why) = decision {
            tracing::warn!(%method, path = %path.chars().take(200).collect::<String>(), "docker-proxy: refused: {why}");
            return answer(
                StatusCode::FORBIDDEN,
                &format!("sprocket-ops docker-proxy refused the request: {why}"),
            );
        }
        tracing::debug!(%method, %path, "docker-proxy: forwarded");
        match self.forward(req).await {
            Ok(resp) => resp.map(|b| b.boxed_unsync()),
            Err(e) => {
                tracing::warn!(error = %e, "docker-proxy: the engine did not answer");
                answer(
                    StatusCode::BAD_GATEWAY,
                    "sprocket-ops docker-proxy: the Docker engine did not answer",
                )
            }
        }
    }

    async fn forward(
        &self,
        req: Request<Incoming>,
    ) -> Result<Response<Incoming>, Box<dyn std::error::Error + Send + Sync>> {
        let mut guard = self.sender.lock().await;
        if guard.as_ref().is_none_or(|s| s.is_closed()) {
            *guard = Some(connect(&self.upstream).await?);
        }
        let sender = guard.as_mut().expect("connected above");
        sender.ready().await?;
        Ok(sender.send_request(req).await?)
    }
}

fn wants_upgrade<B>(req: &Request<B>) -> bool {
    req.headers().contains_key(hyper::header::UPGRADE)
        || req
            .headers()
            .get_all(hyper::header::CONNECTION)
            .iter()
            .any(|v| {
                v.to_str()
                    .map(|s| s.to_ascii_lowercase().contains("upgrade"))
                    .unwrap_or(true)
            })
}

async fn connect(
    upstream: &Upstream,
) -> Result<SendRequest<Incoming>, Box<dyn std::error::Error + Send + Sync>> {
    match upstream {
        Upstream::Unix(path) => {
            let stream = UnixStream::connect(path).await?;
            handshake(TokioIo::new(stream)).await
        }
        Upstream::Tcp(addr) => {
            let stream = TcpStream::connect(addr.as_str()).await?;
            handshake(TokioIo::new(stream)).await
        }
    }
}

async fn handshake<T>(
    io: T,
) -> Result<SendRequest<Incoming>, Box<dyn std::error::Error + Send + Sync>>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "docker-proxy: upstream connection ended");
        }
    });
    Ok(sender)
}

fn answer(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "message": message }).to_string();
    let mut resp = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}
