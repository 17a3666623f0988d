//! Local servers on 127.0.0.1 for the alert probe tests: an HTTP server redirecting to HTTPS,
//! an HTTPS server with a self-signed certificate (rcgen) expiring when the test says, a
//! server that accepts connections and then never answers, a GraphQL-ish POST endpoint,
//! a real `redis-server` on a free port (the test fails when redis-server is not installed:
//! scripts/test.sh installs it), and moto's real S3-compatible server (`moto_server`, PyPI
//! `moto[server]`, installed by scripts/test.sh; missing fails the test) with IAM
//! authentication on, so SigV4 signatures are really verified. Every server stops when its
//! handle drops.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{header, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A running local server; stopped on drop.
pub struct ProbeServer {
    pub addr: SocketAddr,
    handle: JoinHandle<()>,
}

impl ProbeServer {
    /// `http://127.0.0.1:port{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
    /// `127.0.0.1:port`.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for ProbeServer {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding a local port")
}

async fn serve(app: Router) -> ProbeServer {
    let l = listener().await;
    let addr = l.local_addr().expect("local addr");
    let handle = tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    ProbeServer { addr, handle }
}

/// Every request: `301` to `https://localhost{path}`.
pub async fn redirect_server() -> ProbeServer {
    let app = Router::new().fallback(|uri: axum::http::Uri| async move {
        (
            StatusCode::MOVED_PERMANENTLY,
            [(header::LOCATION, format!("https://localhost{}", uri.path()))],
        )
    });
    serve(app).await
}

/// `POST /graphql`: `{"data":{"__typename":"Query"}}` when the body has a `query`.
pub async fn graphql_server() -> ProbeServer {
    let app = Router::new().route(
        "/graphql",
        post(|Json(body): Json<serde_json::Value>| async move {
            if body.get("query").and_then(|q| q.as_str()).is_some() {
                (
                    StatusCode::OK,
                    Json(serde_json::json!({ "data": { "__typename": "Query" } })),
                )
            } else {
                (
                    StatusCode::BAD_REQUEST,
                    Json(serde_json::json!({ "errors": [{ "message": "no query" }] })),
                )
            }
        }),
    );
    serve(app).await
}

/// Traefik's API: `GET /api/http/routers` answers the routers (the fields Traefik v3 returns)
/// with the given `(name, status)` pairs; with `auth`, only to that basic-auth user.
pub async fn traefik_api(
    routers: Vec<(&'static str, &'static str)>,
    auth: Option<(&'static str, &'static str)>,
) -> ProbeServer {
    let body: Vec<serde_json::Value> = routers
        .into_iter()
        .map(|(name, status)| {
            let service = name.split('@').next().unwrap_or(name);
            serde_json::json!({
                "entryPoints": ["websecure"],
                "service": service,
                "rule": format!("Host(`{service}.sprocket.test`)"),
                "priority": 40,
                "tls": { "certResolver": "letsencrypt" },
                "status": status,
                "using": ["websecure"],
                "name": name,
                "provider": "docker"
            })
        })
        .collect();
    let expected = auth.map(|(u, p)| {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    });
    let app = Router::new().route(
        "/api/http/routers",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let body = body.clone();
            let expected = expected.clone();
            async move {
                let given = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                if expected.is_some() && given != expected {
                    return (
                        StatusCode::UNAUTHORIZED,
                        Json(serde_json::json!("401 Unauthorized")),
                    );
                }
                (StatusCode::OK, Json(serde_json::Value::Array(body)))
            }
        }),
    );
    serve(app).await
}

/// Gatus: `GET /api/v1/endpoints/statuses` answers the endpoints (the fields Gatus returns)
/// with the given `(group, name, results oldest first)`.
pub async fn gatus_api(endpoints: Vec<(&'static str, &'static str, Vec<bool>)>) -> ProbeServer {
    let body: Vec<serde_json::Value> = endpoints
        .into_iter()
        .map(|(group, name, results)| {
            serde_json::json!({
                "name": name,
                "group": group,
                "key": format!("{group}_{name}"),
                "results": results.iter().map(|ok| serde_json::json!({
                    "status": if *ok { 200 } else { 502 },
                    "hostname": format!("{name}.sprocket.test"),
                    "duration": 41_000_000,
                    "conditionResults": [{ "condition": "[STATUS] == 200", "success": ok }],
                    "success": ok,
                    "timestamp": "2026-11-25T18:00:00Z"
                })).collect::<Vec<_>>(),
                "events": [{ "type": "START", "timestamp": "2026-11-25T17:00:00Z" }]
            })
        })
        .collect();
    let app = Router::new().route(
        "/api/v1/endpoints/statuses",
        axum::routing::get(move || {
            let body = body.clone();
            async move { Json(serde_json::Value::Array(body)) }
        }),
    );
    serve(app).await
}

/// Accepts connections, keeps them open, never sends a byte.
pub async fn silent_server() -> ProbeServer {
    let l = listener().await;
    let addr = l.local_addr().expect("local addr");
    let handle = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    ProbeServer { addr, handle }
}

/// TLS on 127.0.0.1 with a fresh self-signed certificate for `localhost` (common name
/// `common_name`) valid until now + `valid_for`; answers `HTTP/1.1 200` after the handshake.
pub async fn tls_server(common_name: &str, valid_for: Duration) -> ProbeServer {
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("cert params");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::try_from(valid_for).expect("duration");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    let key = rcgen::KeyPair::generate().expect("key pair");
    let cert = params.self_signed(&key).expect("self-signed certificate");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .expect("server certificate");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = listener().await;
    let addr = l.local_addr().expect("local addr");
    let handle = tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(s).await {
                    let _ = tls
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    ProbeServer { addr, handle }
}

/// A `redis-server` child on a free 127.0.0.1 port with `requirepass`; killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Child,
}

impl RedisServer {
    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `redis-server` (panics, failing the test, when it is not installed).
pub fn start_redis(password: &str) -> RedisServer {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--requirepass",
            password,
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start redis-server ({e}): install it (`apt-get install redis-server`; \
                 scripts/test.sh does)"
            )
        });
    let server = RedisServer { port, child };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "redis-server did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// moto's S3-compatible server (`moto_server` from PyPI `moto[server]`) on a free 127.0.0.1
/// port with IAM authentication ON: an IAM user `probe` allowed `s3:*`, one access key of it
/// and the bucket exist, and every later request must carry a valid SigV4 signature (a wrong
/// secret key gets 403 SignatureDoesNotMatch, an unknown key 403 InvalidAccessKeyId).
/// The process group is killed on drop; its log and working directory live in a temp dir.
pub struct MotoS3 {
    pub port: u16,
    /// The access key id moto issued for the IAM user.
    pub access_key: String,
    /// The secret access key moto issued (random, never written anywhere but here).
    pub secret_key: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl MotoS3 {
    /// `http://127.0.0.1:port` (path-style endpoint).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The last lines of moto's log (for failure messages).
    pub fn log_tail(&self) -> String {
        log_tail(&self.dir.path().join("moto.log"))
    }
}

impl Drop for MotoS3 {
    fn drop(&mut self) {
        // moto_server may be a launcher (pyenv shim, pip entry point) exec'ing python: kill the
        // whole process group it leads.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let len = text[start..].find(close)?;
    Some(&text[start..start + len])
}

/// Starts `moto_server` (panics, failing the test, when it is not installed or does not come
/// up within 60 s: scripts/test.sh installs it with `pip install 'moto[server]'`), creates the
/// IAM user, its access key and `bucket` while authentication is still off, then switches
/// authentication on for every following request (`POST /moto-api/reset-auth` with `0`).
pub async fn start_moto_s3(bucket: &str) -> MotoS3 {
    use std::os::unix::process::CommandExt;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let dir = tempfile::tempdir().expect("a temp dir for moto");
    let log = std::fs::File::create(dir.path().join("moto.log")).expect("moto log file");
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .current_dir(dir.path())
        .env("TMPDIR", dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("moto log file"))
        .stderr(log)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start moto_server ({e}): install it (`python3 -m pip install \
                 'moto[server]'`; scripts/test.sh does)"
            )
        });
    let mut server = MotoS3 {
        port,
        access_key: String::new(),
        secret_key: String::new(),
        child,
        dir,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!(
                "moto_server exited ({status}) before listening on {port} (is `moto[server]` \
                 installed? scripts/test.sh installs it); its log:\n{}",
                server.log_tail()
            );
        }
        assert!(
            Instant::now() < deadline,
            "moto_server did not listen on {port} within 60 s (scripts/test.sh installs \
             it); its log:\n{}",
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Authentication is off until reset-auth below; the Authorization header only tells moto
    // which service a request is for (it routes on the credential scope).
    let client = reqwest::Client::new();
    let base = server.url();
    let scope = |service: &str| {
        format!(
            "AWS4-HMAC-SHA256 Credential=SETUP/20260101/us-east-1/{service}/aws4_request, \
             SignedHeaders=host, Signature=00"
        )
    };
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
    let iam_calls: [&[(&str, &str)]; 3] = [
        &[("Action", "CreateUser"), ("UserName", "probe")],
        &[
            ("Action", "PutUserPolicy"),
            ("UserName", "probe"),
            ("PolicyName", "s3-all"),
            ("PolicyDocument", policy),
        ],
        &[("Action", "CreateAccessKey"), ("UserName", "probe")],
    ];
    let mut last = String::new();
    for form in iam_calls {
        let mut form = form.to_vec();
        form.push(("Version", "2010-05-08"));
        let r = client
            .post(format!("{base}/"))
            .header(reqwest::header::AUTHORIZATION, scope("iam"))
            .form(&form)
            .send()
            .await
            .expect("moto IAM request");
        let status = r.status();
        last = r.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "moto IAM {form:?}: HTTP {status}: {last}\nlog:\n{}",
            server.log_tail()
        );
    }
    server.access_key = between(&last, "<AccessKeyId>", "</AccessKeyId>")
        .expect("AccessKeyId in moto's CreateAccessKey answer")
        .to_string();
    server.secret_key = between(&last, "<SecretAccessKey>", "</SecretAccessKey>")
        .expect("SecretAccessKey in moto's CreateAccessKey answer")
        .to_string();
    let r = client
        .put(format!("{base}/{bucket}"))
        .header(reqwest::header::AUTHORIZATION, scope("s3"))
        .send()
        .await
        .expect("moto CreateBucket");
    assert!(r.status().is_success(), "moto CreateBucket: {r:?}");
    let r = client
        .post(format!("{base}/moto-api/reset-auth"))
        .header(reqwest::header::CONTENT_TYPE, "text/plain")
        .body("0")
        .send()
        .await
        .expect("moto reset-auth");
    assert!(r.status().is_success(), "moto reset-auth: {r:?}");
    server
}
