//! Active probes: each returns an [`Observation`] for `probe:{name}`, within its timeout
//! (a server that accepts and then stops answering is a failure "no answer within Ns").
//! Summaries are safe to post: no URLs with credentials, no secret values, no raw errors.
//!
//! Kinds: `http` (expected status), `https_redirect` (301/302/307/308 to `https://`),
//! `graphql` (`{ __typename }` answers JSON with `data`), `tls` (peer certificate read
//! without trusting it: days to expiry, warning under `warn_days`, failure once expired or
//! when it is Traefik's default certificate), `tcp`, `postgres` (connect + `SELECT 1`; TLS
//! (rustls) by the probe's `sslmode`, else the URL's, else `prefer`; `ssl_root_cert`), `redis` (RESP `AUTH` + `PING` -> `+PONG`), `vault_seal`
//! (`/v1/sys/seal-status`: sealed fails), `rabbitmq` (`/api/overview` with basic auth), `s3`
//! (HEAD of the bucket, signed with AWS SigV4 by hand: [`sigv4_authorization`]),
//! `traefik_routers` (Traefik's API: every HTTP router `enabled`), `gatus` (every Gatus
//! endpoint's newest result a success).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::config::{host_port, PgTls, ProbeConfig, ProbeKind, Severity};
use super::engine::Observation;

/// Issuer / subject common name of the certificate Traefik serves when it has no other.
pub const TRAEFIK_DEFAULT_CERT: &str = "TRAEFIK DEFAULT CERT";
/// Default `warn_days` of TLS probes.
pub const DEFAULT_WARN_DAYS: i64 = 14;

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    Ok(String),
    Warn(String),
    Fail(String),
}

/// Runs probes; holds the HTTP clients (strict and `insecure_tls`).
#[derive(Clone)]
pub struct ProbeRunner {
    http: reqwest::Client,
    http_insecure: reqwest::Client,
    default_timeout: Duration,
}

impl ProbeRunner {
    pub fn new(default_timeout: Duration) -> ProbeRunner {
        let build = |insecure: bool| {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .danger_accept_invalid_certs(insecure)
                .user_agent("sprocket-ops-alerts")
                .build()
                .unwrap_or_default()
        };
        ProbeRunner {
            http: build(false),
            http_insecure: build(true),
            default_timeout,
        }
    }

    /// Runs one probe; `now_ms` is the clock for certificate expiry.
    pub async fn run(&self, p: &ProbeConfig, now_ms: i64) -> Observation {
        let timeout = p
            .timeout_secs
            .map(Duration::from_secs)
            .unwrap_or(self.default_timeout);
        let outcome = match tokio::time::timeout(timeout, self.check(p, now_ms)).await {
            Ok(o) => o,
            Err(_) => ProbeOutcome::Fail(format!("no answer within {}s", timeout.as_secs_f64())),
        };
        let key = p.key();
        let layer = Some(p.layer.as_str());
        match outcome {
            ProbeOutcome::Ok(s) => Observation::ok(key, layer, s),
            ProbeOutcome::Warn(s) => {
                Observation::failing(key, layer, p.severity.min(Severity::Warning), s)
            }
            ProbeOutcome::Fail(s) => Observation::failing(key, layer, p.severity, s),
        }
    }

    /// The check itself, without the timeout.
    pub async fn check(&self, p: &ProbeConfig, now_ms: i64) -> ProbeOutcome {
        let client = if p.insecure_tls {
            &self.http_insecure
        } else {
            &self.http
        };
        let url = p.url.as_deref().unwrap_or("");
        let target = p.target.as_deref().unwrap_or("");
        match p.kind {
            ProbeKind::Http => http(client.get(url), p.expect_status).await,
            ProbeKind::HttpsRedirect => https_redirect(client, url).await,
            ProbeKind::Graphql => graphql(client, url).await,
            ProbeKind::VaultSeal => vault_seal(client, url).await,
            ProbeKind::Rabbitmq => {
                let pw = match p.password.as_ref().map(|s| s.resolve()) {
                    Some(Ok(pw)) => pw,
                    Some(Err(m)) => return ProbeOutcome::Fail(m),
                    None => return ProbeOutcome::Fail("no password configured".into()),
                };
                let u = format!("{}/api/overview", url.trim_end_matches('/'));
                let req = client
                    .get(u)
                    .basic_auth(p.username.as_deref().unwrap_or(""), Some(pw.expose()));
                http(req, Some(200)).await
            }
            ProbeKind::Tls => {
                let warn = p.warn_days.unwrap_or(DEFAULT_WARN_DAYS);
                tls(target, p.server_name.as_deref(), warn, now_ms).await
            }
            ProbeKind::Tcp => match TcpStream::connect(target).await {
                Ok(_) => ProbeOutcome::Ok("connected".into()),
                Err(e) => ProbeOutcome::Fail(format!("cannot connect: {}", io_kind(&e))),
            },
            ProbeKind::Postgres => postgres(p, url).await,
            ProbeKind::Redis => redis(p, target).await,
            ProbeKind::S3 => s3(client, p, url, now_ms).await,
            ProbeKind::TraefikRouters => {
                let u = format!("{}/api/http/routers", url.trim_end_matches('/'));
                let mut req = client.get(u);
                if let (Some(user), Some(src)) = (p.username.as_deref(), p.password.as_ref()) {
                    match src.resolve() {
                        Ok(pw) => req = req.basic_auth(user, Some(pw.expose())),
                        Err(m) => return ProbeOutcome::Fail(m),
                    }
                }
                json_check(req, traefik_routers_verdict).await
            }
            ProbeKind::Gatus => {
                let u = format!("{}/api/v1/endpoints/statuses", url.trim_end_matches('/'));
                json_check(client.get(u), gatus_verdict).await
            }
        }
    }
}

fn io_kind(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::ConnectionReset => "connection reset".into(),
        std::io::ErrorKind::TimedOut => "timed out".into(),
        std::io::ErrorKind::UnexpectedEof => "connection closed".into(),
        std::io::ErrorKind::NotFound => "host not found".into(),
        k => k.to_string(),
    }
}

fn reqwest_kind(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "cannot connect (refused, unreachable or TLS failure)".into()
    } else if e.is_decode() || e.is_body() {
        "unreadable answer".into()
    } else {
        "request failed".into()
    }
}

async fn http(req: reqwest::RequestBuilder, expect: Option<u16>) -> ProbeOutcome {
    match req.send().await {
        Ok(r) => {
            let s = r.status();
            let ok = match expect {
                Some(e) => s.as_u16() == e,
                None => s.is_success(),
            };
            if ok {
                ProbeOutcome::Ok(format!("HTTP {}", s.as_u16()))
            } else {
                ProbeOutcome::Fail(format!(
                    "HTTP {} (expected {})",
                    s.as_u16(),
                    expect.map_or("2xx".to_string(), |e| e.to_string())
                ))
            }
        }
        Err(e) => ProbeOutcome::Fail(reqwest_kind(&e)),
    }
}

async fn https_redirect(client: &reqwest::Client, url: &str) -> ProbeOutcome {
    match client.get(url).send().await {
        Ok(r) => {
            let s = r.status().as_u16();
            let loc = r
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if matches!(s, 301 | 302 | 307 | 308) && loc.starts_with("https://") {
                ProbeOutcome::Ok(format!("HTTP {s} to https"))
            } else if matches!(s, 301 | 302 | 307 | 308) {
                ProbeOutcome::Fail(format!("HTTP {s} redirects, but not to https://"))
            } else {
                ProbeOutcome::Fail(format!("HTTP {s}: no redirect to https"))
            }
        }
        Err(e) => ProbeOutcome::Fail(reqwest_kind(&e)),
    }
}

async fn graphql(client: &reqwest::Client, url: &str) -> ProbeOutcome {
    let req = client
        .post(url)
        .json(&serde_json::json!({ "query": "{ __typename }" }));
    match req.send().await {
        Ok(r) if r.status().is_success() => match r.json::<serde_json::Value>().await {
            Ok(v) if v.get("data").is_some_and(|d| !d.is_null()) => {
                ProbeOutcome::Ok("GraphQL answers".into())
            }
            Ok(_) => ProbeOutcome::Fail("GraphQL answer has no `data`".into()),
            Err(_) => ProbeOutcome::Fail("GraphQL answer is not JSON".into()),
        },
        Ok(r) => ProbeOutcome::Fail(format!("HTTP {}", r.status().as_u16())),
        Err(e) => ProbeOutcome::Fail(reqwest_kind(&e)),
    }
}

/// GETs JSON and judges it with `verdict`.
async fn json_check(
    req: reqwest::RequestBuilder,
    verdict: fn(&serde_json::Value) -> ProbeOutcome,
) -> ProbeOutcome {
    match req.send().await {
        Ok(r) if r.status().is_success() => match r.json::<serde_json::Value>().await {
            Ok(v) => verdict(&v),
            Err(_) => ProbeOutcome::Fail("the answer is not JSON".into()),
        },
        Ok(r) => ProbeOutcome::Fail(format!("HTTP {}", r.status().as_u16())),
        Err(e) => ProbeOutcome::Fail(reqwest_kind(&e)),
    }
}

/// At most this many names in a summary; the rest are counted.
const MAX_NAMED: usize = 5;

fn name_some(names: &[String]) -> String {
    let mut out = names
        .iter()
        .take(MAX_NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > MAX_NAMED {
        out.push_str(&format!(" and {} more", names.len() - MAX_NAMED));
    }
    out
}

/// Traefik's `/api/http/routers`: an array of routers with `name` and `status`
/// (`enabled`, `disabled`, `warning`).
pub fn traefik_routers_verdict(v: &serde_json::Value) -> ProbeOutcome {
    let Some(routers) = v.as_array() else {
        return ProbeOutcome::Fail("Traefik's router list is not an array".into());
    };
    if routers.is_empty() {
        return ProbeOutcome::Fail("Traefik has no HTTP routers".into());
    }
    let bad: Vec<String> = routers
        .iter()
        .filter_map(|r| {
            let status = r
                .get("status")
                .and_then(|s| s.as_str())
                .unwrap_or("unknown");
            (status != "enabled").then(|| {
                let name = r.get("name").and_then(|n| n.as_str()).unwrap_or("?");
                format!("{name} ({status})")
            })
        })
        .collect();
    if bad.is_empty() {
        ProbeOutcome::Ok(format!("{} routers enabled", routers.len()))
    } else {
        ProbeOutcome::Fail(format!(
            "{} of {} routers not enabled: {}",
            bad.len(),
            routers.len(),
            name_some(&bad)
        ))
    }
}

/// Gatus's `/api/v1/endpoints/statuses`: an array of endpoints with `name`, `group` and
/// `results` (oldest first, each with `success`).
pub fn gatus_verdict(v: &serde_json::Value) -> ProbeOutcome {
    let Some(endpoints) = v.as_array() else {
        return ProbeOutcome::Fail("Gatus's status list is not an array".into());
    };
    if endpoints.is_empty() {
        return ProbeOutcome::Fail("Gatus reports no endpoints".into());
    }
    let mut failing = Vec::new();
    let mut unknown = 0;
    for e in endpoints {
        let name = e.get("name").and_then(|n| n.as_str()).unwrap_or("?");
        let name = match e.get("group").and_then(|g| g.as_str()) {
            Some(g) if !g.is_empty() => format!("{g}/{name}"),
            _ => name.to_string(),
        };
        let newest = e
            .get("results")
            .and_then(|r| r.as_array())
            .and_then(|r| r.last())
            .and_then(|r| r.get("success"))
            .and_then(|s| s.as_bool());
        match newest {
            Some(true) => {}
            Some(false) => failing.push(name),
            None => unknown += 1,
        }
    }
    if failing.is_empty() {
        let note = if unknown > 0 {
            format!(" ({unknown} without results yet)")
        } else {
            String::new()
        };
        ProbeOutcome::Ok(format!(
            "{} endpoints healthy{note}",
            endpoints.len() - unknown
        ))
    } else {
        ProbeOutcome::Fail(format!(
            "{} of {} endpoints failing: {}",
            failing.len(),
            endpoints.len(),
            name_some(&failing)
        ))
    }
}

async fn vault_seal(client: &reqwest::Client, url: &str) -> ProbeOutcome {
    let u = format!("{}/v1/sys/seal-status", url.trim_end_matches('/'));
    match client.get(u).send().await {
        Ok(r) if r.status().is_success() => match r.json::<serde_json::Value>().await {
            Ok(v) => match v.get("sealed").and_then(|s| s.as_bool()) {
                Some(false) => ProbeOutcome::Ok("unsealed".into()),
                Some(true) => ProbeOutcome::Fail("Vault is sealed".into()),
                None => ProbeOutcome::Fail("seal status has no `sealed`".into()),
            },
            Err(_) => ProbeOutcome::Fail("seal status is not JSON".into()),
        },
        Ok(r) => ProbeOutcome::Fail(format!("HTTP {}", r.status().as_u16())),
        Err(e) => ProbeOutcome::Fail(reqwest_kind(&e)),
    }
}

async fn postgres(p: &ProbeConfig, url: &str) -> ProbeOutcome {
    let mut opts = match sqlx::postgres::PgConnectOptions::from_str(url) {
        Ok(o) => o,
        Err(_) => return ProbeOutcome::Fail("invalid postgres URL".into()),
    };
    if let Some(src) = &p.password {
        match src.resolve() {
            Ok(pw) => opts = opts.password(pw.expose()),
            Err(m) => return ProbeOutcome::Fail(m),
        }
    }
    if let Some(mode) = p.sslmode {
        use sqlx::postgres::PgSslMode;
        opts = opts.ssl_mode(match mode {
            PgTls::Disable => PgSslMode::Disable,
            PgTls::Prefer => PgSslMode::Prefer,
            PgTls::Require => PgSslMode::Require,
            PgTls::VerifyCa => PgSslMode::VerifyCa,
            PgTls::VerifyFull => PgSslMode::VerifyFull,
        });
    }
    if let Some(ca) = &p.ssl_root_cert {
        opts = opts.ssl_root_cert(ca.as_str());
    }
    let mut conn = match sqlx::PgConnection::connect_with(&opts).await {
        Ok(c) => c,
        Err(e) => return ProbeOutcome::Fail(format!("cannot connect: {}", sqlx_kind(&e))),
    };
    let r = sqlx::query_scalar::<_, i32>("SELECT 1")
        .fetch_one(&mut conn)
        .await;
    let _ = conn.close().await;
    match r {
        Ok(1) => ProbeOutcome::Ok("SELECT 1 answered".into()),
        Ok(_) => ProbeOutcome::Fail("SELECT 1 answered something else".into()),
        Err(e) => ProbeOutcome::Fail(format!("query failed: {}", sqlx_kind(&e))),
    }
}

fn sqlx_kind(e: &sqlx::Error) -> String {
    match e {
        // rustls' verdicts reach sqlx as I/O errors of kind InvalidData.
        sqlx::Error::Io(io)
            if io.kind() == std::io::ErrorKind::InvalidData
                && io.to_string().contains("certificate") =>
        {
            "TLS failure: the server's certificate is not trusted".into()
        }
        sqlx::Error::Io(io) => io_kind(io),
        sqlx::Error::Tls(_) => "TLS failure".into(),
        sqlx::Error::Database(d) => match d.code() {
            Some(c) if c == "28P01" || c == "28000" => "authentication failed".into(),
            Some(c) => format!("database error {c}"),
            None => "database error".into(),
        },
        sqlx::Error::PoolTimedOut => "timed out".into(),
        sqlx::Error::Configuration(_) => "bad configuration".into(),
        _ => "protocol error".into(),
    }
}

async fn redis(p: &ProbeConfig, target: &str) -> ProbeOutcome {
    let stream = match TcpStream::connect(target).await {
        Ok(s) => s,
        Err(e) => return ProbeOutcome::Fail(format!("cannot connect: {}", io_kind(&e))),
    };
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    if let Some(src) = &p.password {
        let pw = match src.resolve() {
            Ok(pw) => pw,
            Err(m) => return ProbeOutcome::Fail(m),
        };
        let mut parts = vec!["AUTH".to_string()];
        if let Some(u) = &p.username {
            parts.push(u.clone());
        }
        parts.push(pw.expose().to_string());
        if let Err(e) = stream.get_mut().write_all(&resp_command(&parts)).await {
            return ProbeOutcome::Fail(format!("write failed: {}", io_kind(&e)));
        }
        match read_line(&mut stream, &mut line).await {
            Ok(()) if line == "+OK" => {}
            Ok(()) => return ProbeOutcome::Fail(format!("AUTH refused: {}", resp_error(&line))),
            Err(m) => return ProbeOutcome::Fail(m),
        }
    }
    if let Err(e) = stream
        .get_mut()
        .write_all(&resp_command(&["PING".to_string()]))
        .await
    {
        return ProbeOutcome::Fail(format!("write failed: {}", io_kind(&e)));
    }
    match read_line(&mut stream, &mut line).await {
        Ok(()) if line == "+PONG" => ProbeOutcome::Ok("PONG".into()),
        Ok(()) => ProbeOutcome::Fail(format!("PING answered {}", resp_error(&line))),
        Err(m) => ProbeOutcome::Fail(m),
    }
}

/// A RESP array of bulk strings.
pub fn resp_command(parts: &[String]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", parts.len()).into_bytes();
    for p in parts {
        out.extend_from_slice(format!("${}\r\n", p.len()).as_bytes());
        out.extend_from_slice(p.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The error word of a RESP error line (`-WRONGPASS ...` -> `WRONGPASS`), never more.
fn resp_error(line: &str) -> String {
    match line.strip_prefix('-') {
        Some(e) => e.split_whitespace().next().unwrap_or("error").to_string(),
        None => "an unexpected reply".into(),
    }
}

async fn read_line(r: &mut BufReader<TcpStream>, line: &mut String) -> Result<(), String> {
    line.clear();
    match r.read_line(line).await {
        Ok(0) => Err("connection closed".into()),
        Ok(_) => {
            let t = line.trim_end().to_string();
            *line = t;
            Ok(())
        }
        Err(e) => Err(format!("read failed: {}", io_kind(&e))),
    }
}

/// SHA-256 of the empty payload.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// What a SigV4 signature covers.
#[derive(Debug, Clone)]
pub struct SigV4<'a> {
    pub method: &'a str,
    /// The canonical (already URI-encoded) path.
    pub path: &'a str,
    /// The canonical query string (may be empty).
    pub query: &'a str,
    /// Headers to sign, `host` and `x-amz-date` included (any case; sorted here).
    pub headers: &'a [(&'a str, &'a str)],
    pub payload_sha256: &'a str,
    /// `YYYYMMDDTHHMMSSZ`.
    pub amz_date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    pub access_key: &'a str,
    pub secret_key: &'a str,
}

/// The `Authorization` header value of AWS Signature Version 4.
pub fn sigv4_authorization(r: &SigV4<'_>) -> String {
    let mut headers: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    let signed = signed.join(";");
    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        r.method, r.path, r.query, canonical_headers, signed, r.payload_sha256
    );
    let date = r.amz_date.get(..8).unwrap_or("");
    let scope = format!("{date}/{}/{}/aws4_request", r.region, r.service);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
        r.amz_date,
        hex(&<sha2::Sha256 as sha2::Digest>::digest(
            canonical.as_bytes()
        ))
    );
    let k = hmac_sha256(format!("AWS4{}", r.secret_key).as_bytes(), date.as_bytes());
    let k = hmac_sha256(&k, r.region.as_bytes());
    let k = hmac_sha256(&k, r.service.as_bytes());
    let k = hmac_sha256(&k, b"aws4_request");
    let signature = hex(&hmac_sha256(&k, to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope},SignedHeaders={signed},Signature={signature}",
        r.access_key
    )
}

async fn s3(client: &reqwest::Client, p: &ProbeConfig, url: &str, now_ms: i64) -> ProbeOutcome {
    let secret = match p.password.as_ref().map(|s| s.resolve()) {
        Some(Ok(s)) => s,
        Some(Err(m)) => return ProbeOutcome::Fail(m),
        None => return ProbeOutcome::Fail("no secret key configured".into()),
    };
    let bucket = p.bucket.as_deref().unwrap_or("");
    let endpoint = match reqwest::Url::parse(url) {
        Ok(u) => u,
        Err(_) => return ProbeOutcome::Fail("invalid endpoint URL".into()),
    };
    let host = match (endpoint.host_str(), endpoint.port()) {
        (Some(h), Some(port)) => format!("{h}:{port}"),
        (Some(h), None) => h.to_string(),
        (None, _) => return ProbeOutcome::Fail("invalid endpoint URL".into()),
    };
    let amz_date = chrono::DateTime::from_timestamp_millis(now_ms)
        .unwrap_or_default()
        .format("%Y%m%dT%H%M%SZ")
        .to_string();
    let path = format!("/{bucket}");
    let auth = sigv4_authorization(&SigV4 {
        method: "HEAD",
        path: &path,
        query: "",
        headers: &[
            ("host", &host),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-date", &amz_date),
        ],
        payload_sha256: EMPTY_SHA256,
        amz_date: &amz_date,
        region: p.region.as_deref().unwrap_or("us-east-1"),
        service: "s3",
        access_key: p.username.as_deref().unwrap_or(""),
        secret_key: secret.expose(),
    });
    let req = client
        .head(format!("{}{path}", url.trim_end_matches('/')))
        .header("x-amz-content-sha256", EMPTY_SHA256)
        .header("x-amz-date", &amz_date)
        .header(reqwest::header::AUTHORIZATION, auth);
    match req.send().await {
        Ok(r) => match r.status().as_u16() {
            200 => ProbeOutcome::Ok("bucket reachable".into()),
            403 => ProbeOutcome::Fail("HTTP 403: access denied (credentials or clock)".into()),
            404 => ProbeOutcome::Fail("HTTP 404: no such bucket".into()),
            s => ProbeOutcome::Fail(format!("HTTP {s}")),
        },
        Err(e) => ProbeOutcome::Fail(reqwest_kind(&e)),
    }
}

/// What the TLS probe learnt from the peer certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub issuer_cn: Option<String>,
    pub subject_cn: Option<String>,
    pub not_after_ms: i64,
}

async fn tls(target: &str, server_name: Option<&str>, warn_days: i64, now_ms: i64) -> ProbeOutcome {
    let Some((host, _)) = host_port(target) else {
        return ProbeOutcome::Fail("bad target".into());
    };
    let name = server_name.unwrap_or(host).to_string();
    let cert = match peer_certificate(target, &name).await {
        Ok(c) => c,
        Err(m) => return ProbeOutcome::Fail(m),
    };
    let info = match parse_certificate(&cert) {
        Some(i) => i,
        None => return ProbeOutcome::Fail("unreadable certificate".into()),
    };
    tls_verdict(&info, &name, warn_days, now_ms)
}

/// The verdict on a certificate (pure).
pub fn tls_verdict(info: &CertInfo, name: &str, warn_days: i64, now_ms: i64) -> ProbeOutcome {
    if [&info.issuer_cn, &info.subject_cn]
        .iter()
        .any(|cn| cn.as_deref() == Some(TRAEFIK_DEFAULT_CERT))
    {
        return ProbeOutcome::Fail(format!(
            "{name} serves Traefik's default certificate (no certificate for this host)"
        ));
    }
    let left_ms = info.not_after_ms - now_ms;
    let days = left_ms.div_euclid(86_400_000);
    if left_ms < 0 {
        ProbeOutcome::Fail(format!(
            "the certificate of {name} expired {} day(s) ago",
            (-left_ms) / 86_400_000
        ))
    } else if days < warn_days {
        ProbeOutcome::Warn(format!("the certificate of {name} expires in {days} days"))
    } else {
        ProbeOutcome::Ok(format!("certificate valid for {days} days"))
    }
}

async fn peer_certificate(target: &str, name: &str) -> Result<Vec<u8>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|_| "TLS setup failed".to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    let server_name = rustls::pki_types::ServerName::try_from(name.to_string())
        .map_err(|_| "bad server name".to_string())?;
    let tcp = TcpStream::connect(target)
        .await
        .map_err(|e| format!("cannot connect: {}", io_kind(&e)))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .map_err(|e| format!("TLS handshake failed: {}", io_kind(&e)))?;
    let (_, conn) = stream.get_ref();
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .ok_or_else(|| "no certificate presented".to_string())
}

/// Accepts any certificate: the probe reads it, it does not trust it.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One DER element: (tag, content, rest).
fn der(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = buf.split_first()?;
    let (&l, rest) = rest.split_first()?;
    let (len, rest) = if l < 0x80 {
        (l as usize, rest)
    } else {
        let n = (l & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, b| (a << 8) | *b as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// Reads issuer and subject common names and `notAfter` from a DER certificate.
pub fn parse_certificate(cert: &[u8]) -> Option<CertInfo> {
    let (0x30, cert, _) = der(cert)? else {
        return None;
    };
    let (0x30, tbs, _) = der(cert)? else {
        return None;
    };
    let mut rest = tbs;
    let (tag, _, r) = der(rest)?;
    if tag == 0xA0 {
        rest = r; // version
    }
    let (_, _, r) = der(rest)?; // serial
    let (_, _, r) = der(r)?; // signature algorithm
    let (_, issuer, r) = der(r)?;
    let (_, validity, r) = der(r)?;
    let (_, subject, _) = der(r)?;
    let (_, _, v) = der(validity)?; // notBefore
    let (ttag, not_after, _) = der(v)?;
    Some(CertInfo {
        issuer_cn: common_name(issuer),
        subject_cn: common_name(subject),
        not_after_ms: der_time(ttag, not_after)?,
    })
}

fn common_name(mut name: &[u8]) -> Option<String> {
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    while let Some((_, set, r)) = der(name) {
        name = r;
        let mut set = set;
        while let Some((_, atv, r2)) = der(set) {
            set = r2;
            let (0x06, oid, v) = der(atv)? else {
                continue;
            };
            if oid == CN {
                let (_, value, _) = der(v)?;
                return Some(String::from_utf8_lossy(value).into_owned());
            }
        }
    }
    None
}

fn der_time(tag: u8, t: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(t).ok()?;
    let s = s.strip_suffix('Z')?;
    let full = match tag {
        0x17 => {
            let yy: i32 = s.get(..2)?.parse().ok()?;
            format!(
                "{}{}",
                if yy < 50 { 2000 + yy } else { 1900 + yy },
                s.get(2..)?
            )
        }
        0x18 => s.to_string(),
        _ => return None,
    };
    let dt = chrono::NaiveDateTime::parse_from_str(full.get(..14)?, "%Y%m%d%H%M%S").ok()?;
    Some(dt.and_utc().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_traefik_and_gatus_verdicts() {
        use serde_json::json;
        let ok = |o: &ProbeOutcome| matches!(o, ProbeOutcome::Ok(_));
        let fail = |o: &ProbeOutcome, needle: &str| matches!(o, ProbeOutcome::Fail(s) if s.contains(needle));
        let routers = |statuses: &[&str]| {
            json!(statuses
                .iter()
                .enumerate()
                .map(|(i, s)| json!({"name": format!("r{i}@docker"), "status": s}))
                .collect::<Vec<_>>())
        };
        assert!(ok(&traefik_routers_verdict(&routers(&[
            "enabled", "enabled"
        ]))));
        let o = traefik_routers_verdict(&routers(&["enabled", "disabled", "warning"]));
        assert!(
            fail(
                &o,
                "2 of 3 routers not enabled: r1@docker (disabled), r2@docker (warning)"
            ),
            "{o:?}"
        );
        assert!(fail(
            &traefik_routers_verdict(&json!([])),
            "no HTTP routers"
        ));
        assert!(fail(
            &traefik_routers_verdict(&json!({"x": 1})),
            "not an array"
        ));
        let many = routers(&["disabled"; 8]);
        assert!(fail(&traefik_routers_verdict(&many), "and 3 more"));

        let ep = |group: &str, name: &str, results: &[bool]| json!({"name": name, "group": group, "results": results.iter().map(|s| json!({"success": s})).collect::<Vec<_>>()});
        assert!(ok(&gatus_verdict(&json!([ep(
            "core",
            "web",
            &[false, true]
        )]))));
        let o = gatus_verdict(&json!([
            ep("core", "web", &[true, false]),
            ep("", "api", &[true])
        ]));
        assert!(fail(&o, "1 of 2 endpoints failing: core/web"), "{o:?}");
        let o = gatus_verdict(&json!([ep("core", "web", &[true]), ep("core", "new", &[])]));
        assert!(
            matches!(&o, ProbeOutcome::Ok(s) if s.contains("1 without results yet")),
            "{o:?}"
        );
        assert!(fail(&gatus_verdict(&json!([])), "no endpoints"));
        assert!(fail(&gatus_verdict(&json!("x")), "not an array"));
    }

    #[test]
    fn alerts_tls_verdicts() {
        let day = 86_400_000;
        let info = |cn: &str, days: i64| CertInfo {
            issuer_cn: Some(cn.into()),
            subject_cn: Some("x".into()),
            not_after_ms: days * day + 3_600_000,
        };
        assert_eq!(
            tls_verdict(&info("R3", 3), "h", 14, 0),
            ProbeOutcome::Warn("the certificate of h expires in 3 days".into())
        );
        assert!(matches!(
            tls_verdict(&info("R3", 30), "h", 14, 0),
            ProbeOutcome::Ok(_)
        ));
        assert!(matches!(
            tls_verdict(&info("R3", -2), "h", 14, 0),
            ProbeOutcome::Fail(_)
        ));
        assert!(matches!(
            tls_verdict(&info(TRAEFIK_DEFAULT_CERT, 300), "h", 14, 0),
            ProbeOutcome::Fail(m) if m.contains("default certificate")
        ));
        assert_eq!(der_time(0x17, b"260101000000Z"), Some(1_767_225_600_000));
        assert_eq!(der_time(0x18, b"20260101000000Z"), Some(1_767_225_600_000));
        assert_eq!(
            resp_command(&["PING".into()]),
            b"*1\r\n$4\r\nPING\r\n".to_vec()
        );
        assert_eq!(
            resp_error("-WRONGPASS invalid username-password pair"),
            "WRONGPASS"
        );
    }
}
