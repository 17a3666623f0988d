//! Active probes: each returns an [`Observation`] for `probe:{name}`, within its timeout
//! (a server that accepts and then stops answering is a failure "no answer within Ns").
//! Summaries are safe to post: no URLs with credentials, no secret values, no raw errors.
//!
//! Kinds: `http` (expected status), `https_redirect` (301/302/307/308 to `https://`),
//! `graphql` (`{ __typename }` answers JSON with `data`), `tls` (peer certificate read by
//! `x509-parser` without trusting it: days to expiry, warning under `warn_days`, failure once
//! expired or when it is Traefik's default certificate), `tcp`, `postgres` (connect +
//! `SELECT 1`; TLS (rustls) by the probe's `sslmode`, else the URL's, else `prefer`;
//! `ssl_root_cert`), `redis` (RESP `AUTH` + `PING` -> `+PONG`), `vault_seal`
//! (`/v1/sys/seal-status`: sealed fails), `rabbitmq` (`/api/overview` with basic auth), `s3`
//! (HEAD of the bucket, signed with AWS SigV4 by hand: [`sigv4_authorization`]),
//! `traefik_routers` (Traefik's API: every HTTP router `enabled`), `gatus` (every Gatus
//! endpoint's newest result a success).
//!
//! This module runs them (timeout, dispatch, `tcp`); each kind or family has a file: `http`
//! (`http`, `https_redirect`, `graphql`, `vault_seal`, `rabbitmq`), `apis` (the verdicts of
//! `traefik_routers` and `gatus`), `postgres`, `redis`, `s3` (SigV4), `tls`.

use std::time::Duration;

use tokio::net::TcpStream;

use super::config::{ProbeConfig, ProbeKind, Severity};
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

mod apis;
mod http;
mod postgres;
mod redis;
mod s3;
mod tls;

pub use apis::{gatus_verdict, traefik_routers_verdict};
use http::{graphql, http, https_redirect, json_check, vault_seal};
use postgres::postgres;
use redis::redis;
pub use redis::resp_command;
use s3::s3;
pub use s3::{sigv4_authorization, SigV4, EMPTY_SHA256};
use tls::tls;
pub use tls::{parse_certificate, tls_verdict, CertInfo};

#[cfg(test)]
mod tests;
