//! Local servers on 127.0.0.1 for the alert probe tests: an HTTP server redirecting to HTTPS,
//! an HTTPS server with a self-signed certificate (rcgen) expiring when the test says, a
//! server that accepts connections and then never answers, a GraphQL-ish POST endpoint,
//! a real `redis-server` on a free port (the test fails when redis-server is not installed:
//! scripts/test.sh installs it), and moto's real S3-compatible server (`moto_server`, PyPI
//! `moto[server]`, installed by scripts/test.sh; missing fails the test) with IAM
//! authentication on, so SigV4 signatures are really verified. Every server stops when its
//! handle drops.
//! Also a real RabbitMQ node (`rabbitmq-server` + management plugin, Debian's package,
//! installed by scripts/test.sh; missing fails the test) on free ports with a private node
//! name, data dir and Erlang cookie in a temp dir.

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

/// A real RabbitMQ node (`rabbitmq-server` with the management plugin) on free 127.0.0.1
/// ports, its data, logs, config and Erlang cookie in a temp dir; its process group is
/// killed on drop.
pub struct RabbitServer {
    /// The management API port (`http://127.0.0.1:{port}` is what a `rabbitmq` probe takes).
    pub management_port: u16,
    /// The AMQP port.
    pub amqp_port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl RabbitServer {
    /// `http://127.0.0.1:{management_port}`.
    pub fn management_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.management_port)
    }
}

impl Drop for RabbitServer {
    fn drop(&mut self) {
        // The node runs in its own process group (the start script, beam.smp and its
        // helpers): kill the whole group, argv only. epmd daemonizes into its own session
        // and is shared by every node, so it stays (as it would with the system service).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's start script; `/usr/sbin/rabbitmq-server` is a wrapper that `su`s to the
/// `rabbitmq` user and writes to /var/log/rabbitmq, which a private node must not do.
const RABBITMQ_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/// The last `lines` lines of every file in `dir` (recursively), for a failure message.
fn rabbit_log_tail(dir: &std::path::Path, lines: usize) -> String {
    let mut out = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(text) = std::fs::read_to_string(&p) {
                let all: Vec<&str> = text.lines().collect();
                let tail = &all[all.len().saturating_sub(lines)..];
                out.push_str(&format!("--- {} ---\n{}\n", p.display(), tail.join("\n")));
            }
        }
    }
    out
}

/// Starts a private RabbitMQ node whose only user is `user`/`pass` (administrator, allowed
/// from anywhere: `loopback_users = none`) and waits (90 s at most) until its management API
/// answers `GET /api/overview` with 200 to that user. Panics, failing the test, when
/// rabbitmq-server is not installed (scripts/test.sh installs it) or does not come up, with
/// the tail of the node's logs.
pub async fn start_rabbitmq(user: &str, pass: &str) -> RabbitServer {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    assert!(
        std::path::Path::new(RABBITMQ_SERVER).exists(),
        "{RABBITMQ_SERVER} is missing: install rabbitmq-server (`apt-get install \
         rabbitmq-server`; scripts/test.sh does)"
    );
    // Hold three listeners at once so the ports differ, then free them for the node.
    let ports: Vec<u16> = {
        let held: Vec<std::net::TcpListener> = (0..3)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
            .collect();
        held.iter()
            .map(|l| l.local_addr().expect("local addr").port())
            .collect()
    };
    let (amqp_port, dist_port, management_port) = (ports[0], ports[1], ports[2]);
    let dir = tempfile::tempdir().expect("temp dir");
    let base = dir.path();
    for d in ["mnesia", "log"] {
        std::fs::create_dir_all(base.join(d)).expect("rabbitmq dirs");
    }
    let config = base.join("rabbitmq.conf");
    std::fs::write(
        &config,
        format!(
            "listeners.tcp.1 = 127.0.0.1:{amqp_port}\n\
             management.tcp.ip = 127.0.0.1\n\
             management.tcp.port = {management_port}\n\
             default_user = {user}\n\
             default_pass = {pass}\n\
             default_user_tags.administrator = true\n\
             loopback_users = none\n"
        ),
    )
    .expect("rabbitmq.conf");
    let plugins = base.join("enabled_plugins");
    std::fs::write(&plugins, "[rabbitmq_management].\n").expect("enabled_plugins");
    let node = format!(
        "rabbit-test-{}-{}@localhost",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    let out = std::fs::File::create(base.join("log/stdout.log")).expect("stdout log");
    let err = out.try_clone().expect("stdout log");
    let child = {
        use std::os::unix::process::CommandExt;
        Command::new(RABBITMQ_SERVER)
            .env("HOME", base)
            .env("RABBITMQ_NODENAME", &node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", amqp_port.to_string())
            .env("RABBITMQ_DIST_PORT", dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", base.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", base.join("log"))
            .env("RABBITMQ_CONFIG_FILE", &config)
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", &plugins)
            .env("RABBITMQ_PID_FILE", base.join("rabbit.pid"))
            .current_dir(base)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {RABBITMQ_SERVER} ({e}): install rabbitmq-server \
                     (`apt-get install rabbitmq-server`; scripts/test.sh does)"
                )
            })
    };
    let mut server = RabbitServer {
        management_port,
        amqp_port,
        child,
        _dir: dir,
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client");
    let url = format!("{}/api/overview", server.management_url());
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let status = http
            .get(&url)
            .basic_auth(user, Some(pass))
            .send()
            .await
            .map(|r| r.status().as_u16());
        if matches!(status, Ok(200)) {
            return server;
        }
        let exited = server.child.try_wait().ok().flatten();
        if exited.is_some() || Instant::now() >= deadline {
            panic!(
                "rabbitmq-server node {node} did not answer GET {url} with 200 within 90 s \
                 (last: {status:?}, exited: {exited:?}); is it installed (scripts/test.sh \
                 installs it)? log tail:\n{}",
                rabbit_log_tail(&server._dir.path().join("log"), 30)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
