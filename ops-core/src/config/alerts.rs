//! The `[alerts]` section of the sprocket-ops configuration: where notifications go, how
//! eagerly an alert fires, and the active probes. Secrets (probe passwords) are named through
//! [`SecretSource`], never written here.
//!
//! ```toml
//! [alerts]
//! failure_threshold = 3        # consecutive failing observations before an alert fires
//! min_duration_secs = 60       # ...and failing for at least this long (0: threshold only)
//! event_failure_threshold = 1  # decisive Docker events (task exit != 0, OOM, restart loop,
//!                              # update paused / rolled back) fire after this many, at once
//! resolve_threshold = 2        # consecutive good observations before it resolves
//! reminder_minutes = 60        # reminder while firing (0: none)
//! heartbeat_minutes = 1440     # digest "still watching" message (0: none)
//! probe_interval_secs = 30
//! probe_timeout_secs = 10
//! group_wait_ms = 300          # new alerts wait this long to be grouped in one message
//!                              # (`group_wait_secs` is still accepted; give one of the two)
//! restart_loop_count = 3       # this many task exits...
//! restart_loop_window_secs = 300  # ...within this window is a restart loop
//! root_layers = ["layer_1"]    # their alerts hold new alerts of the other layers
//! services = ["*"]             # Swarm services watched (globs); `ignore_services` excludes
//!
//! [alerts.routing]
//! default_channel = 111111111111111111
//! routes = [
//!   { layer = "layer_1", channel = 222222222222222222 },
//!   { severity = "critical", channel = 333333333333333333 },
//! ]
//!
//! [[alerts.probes]]
//! name = "traefik-redirect"
//! kind = "https_redirect"
//! url = "http://sprocket.mlesports.gg"
//! layer = "layer_1"
//! severity = "critical"
//!
//! [[alerts.probes]]
//! name = "web-cert"
//! kind = "tls"
//! target = "sprocket.mlesports.gg:443"
//! layer = "layer_1"
//! warn_days = 14
//!
//! [[alerts.probes]]
//! name = "managed-db"
//! kind = "postgres"
//! url = "postgres://doadmin@db-postgresql-nyc1.example.com:25060/defaultdb"
//! password = { env = "DB_PASSWORD" }
//! sslmode = "verify-full"      # disable | prefer (default) | require | verify-ca | verify-full
//! ssl_root_cert = "/run/secrets/db-ca.pem"   # the CA to verify against (default: Mozilla roots)
//! layer = "layer_2"
//!
//! [[alerts.probes]]
//! name = "traefik"
//! kind = "traefik_routers"     # every router of Traefik's API must be `enabled`
//! url = "http://traefik:8080"  # username/password: optional basic auth
//! layer = "layer_1"
//!
//! [[alerts.probes]]
//! name = "gatus"
//! kind = "gatus"               # every Gatus endpoint's newest result must succeed
//! url = "http://gatus:8080"
//! layer = "layer_2"
//!
//! [[alerts.probes]]
//! name = "redis"
//! kind = "redis"
//! target = "redis:6379"
//! layer = "layer_2"
//! password = { env = "REDIS_PASSWORD" }
//! ```

use serde::{Deserialize, Serialize};

use crate::secret::SecretSource;

/// How bad an alert is; ordered (`Info < Warning < Critical`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    #[default]
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
    /// An embed colour (0xRRGGBB) for the frontend.
    pub fn colour(self) -> u32 {
        match self {
            Severity::Info => 0x3498DB,
            Severity::Warning => 0xF1C40F,
            Severity::Critical => 0xE74C3C,
        }
    }
}

/// The whole `[alerts]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    pub routing: RoutingConfig,
    #[serde(default = "d_threshold")]
    pub failure_threshold: u32,
    #[serde(default)]
    pub min_duration_secs: u64,
    #[serde(default = "d_resolve")]
    pub resolve_threshold: u32,
    #[serde(default = "d_reminder")]
    pub reminder_minutes: u64,
    #[serde(default = "d_heartbeat")]
    pub heartbeat_minutes: u64,
    #[serde(default = "d_interval")]
    pub probe_interval_secs: u64,
    #[serde(default = "d_timeout")]
    pub probe_timeout_secs: u64,
    /// Consecutive failing observations from decisive Docker events that fire an alert at
    /// once (no `min_duration_secs`), see [`AlertsConfig::group_wait`].
    #[serde(default = "d_event_threshold")]
    pub event_failure_threshold: u32,
    /// Old spelling of the group wait, in seconds (`group_wait_ms` wins; both is an error).
    #[serde(default)]
    pub group_wait_secs: Option<u64>,
    /// How long new firing alerts wait to be grouped into one message (default 300 ms).
    #[serde(default)]
    pub group_wait_ms: Option<u64>,
    #[serde(default = "d_loop_count")]
    pub restart_loop_count: u32,
    #[serde(default = "d_loop_window")]
    pub restart_loop_window_secs: u64,
    #[serde(default = "d_root_layers")]
    pub root_layers: Vec<String>,
    /// Swarm services watched (globs, `*` = any run of characters). Empty: all.
    #[serde(default)]
    pub services: Vec<String>,
    #[serde(default)]
    pub ignore_services: Vec<String>,
    #[serde(default)]
    pub probes: Vec<ProbeConfig>,
}

fn d_threshold() -> u32 {
    3
}
fn d_resolve() -> u32 {
    2
}
fn d_reminder() -> u64 {
    60
}
fn d_heartbeat() -> u64 {
    1440
}
fn d_interval() -> u64 {
    30
}
fn d_timeout() -> u64 {
    10
}
fn d_event_threshold() -> u32 {
    1
}
/// Default group wait: long enough for a burst of Docker events to arrive together, short
/// enough that one failure is still posted well within a second.
pub const DEFAULT_GROUP_WAIT_MS: u64 = 300;
fn d_loop_count() -> u32 {
    3
}
fn d_loop_window() -> u64 {
    300
}
fn d_root_layers() -> Vec<String> {
    vec!["layer_1".to_string()]
}

/// Where notifications go: the first matching route, else `default_channel`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    pub default_channel: u64,
    #[serde(default)]
    pub routes: Vec<Route>,
}

/// One route: every given field must match (a missing one matches anything).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(default)]
    pub layer: Option<String>,
    #[serde(default)]
    pub severity: Option<Severity>,
    pub channel: u64,
}

impl RoutingConfig {
    /// The channel for an alert of this layer and severity.
    pub fn channel_for(&self, layer: Option<&str>, severity: Severity) -> u64 {
        self.routes
            .iter()
            .find(|r| {
                r.layer.as_deref().is_none_or(|l| Some(l) == layer)
                    && r.severity.is_none_or(|s| s == severity)
            })
            .map(|r| r.channel)
            .unwrap_or(self.default_channel)
    }
}

/// What a probe checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    /// GET `url`, expect `expect_status` (default: any 2xx).
    Http,
    /// GET the `http://` `url`, expect 301/302/307/308 to an `https://` Location.
    HttpsRedirect,
    /// POST `{"query":"{ __typename }"}` to `url`, expect JSON with `data`.
    Graphql,
    /// TLS handshake with `target` (host:port): days to expiry, Traefik default cert.
    Tls,
    /// TCP connect to `target`.
    Tcp,
    /// Connect to `url` (postgres://...) and `SELECT 1`.
    Postgres,
    /// RESP `AUTH` (with `password`) and `PING` to `target`.
    Redis,
    /// GET `url`/v1/sys/seal-status: sealed fails.
    VaultSeal,
    /// GET `url`/api/overview with basic auth (`username`, `password`).
    Rabbitmq,
    /// SigV4-signed HEAD of `bucket` at the `url` endpoint (path style), with the access
    /// key id in `username` and the secret key in `password`.
    S3,
    /// GET `url`/api/http/routers of Traefik's API (basic auth when `username`/`password`
    /// are given): every router must be `enabled`.
    TraefikRouters,
    /// GET `url`/api/v1/endpoints/statuses of Gatus: every endpoint's newest result must be
    /// a success.
    Gatus,
}

impl ProbeKind {
    /// The kind as written in config (`https_redirect`, `vault_seal`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Http => "http",
            ProbeKind::HttpsRedirect => "https_redirect",
            ProbeKind::Graphql => "graphql",
            ProbeKind::Tls => "tls",
            ProbeKind::Tcp => "tcp",
            ProbeKind::Postgres => "postgres",
            ProbeKind::Redis => "redis",
            ProbeKind::VaultSeal => "vault_seal",
            ProbeKind::Rabbitmq => "rabbitmq",
            ProbeKind::S3 => "s3",
            ProbeKind::TraefikRouters => "traefik_routers",
            ProbeKind::Gatus => "gatus",
        }
    }
}

/// The TLS mode of a Postgres probe, as libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PgTls {
    /// Plain TCP only.
    Disable,
    /// TLS when the server offers it, else plain (libpq's default).
    Prefer,
    /// TLS or fail, without verifying the certificate.
    Require,
    /// TLS with the certificate verified against the CA (not the host name).
    VerifyCa,
    /// TLS with the certificate and the host name verified.
    VerifyFull,
}

/// One `[[alerts.probes]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    pub name: String,
    pub kind: ProbeKind,
    /// `host:port` (tls, tcp, redis).
    #[serde(default)]
    pub target: Option<String>,
    /// URL (http, https_redirect, graphql, postgres, vault_seal, rabbitmq).
    #[serde(default)]
    pub url: Option<String>,
    pub layer: String,
    #[serde(default)]
    pub severity: Severity,
    #[serde(default)]
    pub expect_status: Option<u16>,
    /// Overrides `probe_timeout_secs`.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// TLS server name (SNI) when it differs from the target host.
    #[serde(default)]
    pub server_name: Option<String>,
    /// TLS: warn when the certificate expires in fewer days (default 14).
    #[serde(default)]
    pub warn_days: Option<i64>,
    /// HTTP kinds: accept any certificate (self-signed internal endpoints).
    #[serde(default)]
    pub insecure_tls: bool,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<SecretSource>,
    /// Postgres: TLS as libpq's `sslmode` (`disable`, `prefer`, `require`, `verify-ca`,
    /// `verify-full`); overrides the URL's `sslmode`; default `prefer`.
    #[serde(default)]
    pub sslmode: Option<PgTls>,
    /// Postgres: a PEM file with the CA certificate the server is verified against
    /// (`verify-ca`, `verify-full`; managed databases hand one out). Default: the Mozilla
    /// roots built in.
    #[serde(default)]
    pub ssl_root_cert: Option<String>,
    /// S3: the bucket and the region (default `us-east-1`).
    #[serde(default)]
    pub bucket: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
}

impl ProbeConfig {
    pub fn key(&self) -> String {
        format!("probe:{}", self.name)
    }
}

impl AlertsConfig {
    /// Defaults everywhere, alerts to `channel`, no probes (tests and examples).
    pub fn with_channel(channel: u64) -> AlertsConfig {
        AlertsConfig {
            routing: RoutingConfig {
                default_channel: channel,
                routes: Vec::new(),
            },
            failure_threshold: d_threshold(),
            min_duration_secs: 0,
            resolve_threshold: d_resolve(),
            reminder_minutes: d_reminder(),
            heartbeat_minutes: d_heartbeat(),
            probe_interval_secs: d_interval(),
            probe_timeout_secs: d_timeout(),
            event_failure_threshold: d_event_threshold(),
            group_wait_secs: None,
            group_wait_ms: None,
            restart_loop_count: d_loop_count(),
            restart_loop_window_secs: d_loop_window(),
            root_layers: d_root_layers(),
            services: Vec::new(),
            ignore_services: Vec::new(),
            probes: Vec::new(),
        }
    }

    /// The effective group wait in milliseconds: `group_wait_ms`, else `group_wait_secs`,
    /// else [`DEFAULT_GROUP_WAIT_MS`].
    pub fn group_wait(&self) -> u64 {
        match (self.group_wait_ms, self.group_wait_secs) {
            (Some(ms), _) => ms,
            (None, Some(secs)) => secs.saturating_mul(1000),
            (None, None) => DEFAULT_GROUP_WAIT_MS,
        }
    }

    /// Checks what serde cannot; the error is `(key, message)` relative to `alerts`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let e = |k: &str, m: &str| Err((format!("alerts.{k}"), m.to_string()));
        if self.routing.default_channel == 0 {
            return e("routing.default_channel", "must be a Discord channel id");
        }
        for (i, r) in self.routing.routes.iter().enumerate() {
            if r.channel == 0 {
                return e(
                    &format!("routing.routes[{i}].channel"),
                    "must be a channel id",
                );
            }
            if r.layer.is_none() && r.severity.is_none() {
                return e(
                    &format!("routing.routes[{i}]"),
                    "give `layer` or `severity` (or both)",
                );
            }
        }
        if self.failure_threshold == 0 {
            return e("failure_threshold", "must be at least 1");
        }
        if self.event_failure_threshold == 0 {
            return e("event_failure_threshold", "must be at least 1");
        }
        if self.group_wait_ms.is_some() && self.group_wait_secs.is_some() {
            return e(
                "group_wait_secs",
                "give either `group_wait_ms` or `group_wait_secs`, not both",
            );
        }
        if self.group_wait() > 3_600_000 {
            return e("group_wait_ms", "must be at most one hour");
        }
        if self.resolve_threshold == 0 {
            return e("resolve_threshold", "must be at least 1");
        }
        if self.probe_interval_secs == 0 {
            return e("probe_interval_secs", "must be at least 1");
        }
        if self.probe_timeout_secs == 0 {
            return e("probe_timeout_secs", "must be at least 1");
        }
        if self.restart_loop_count < 2 {
            return e("restart_loop_count", "must be at least 2");
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, p) in self.probes.iter().enumerate() {
            let k = |f: &str| format!("probes[{i}].{f}");
            if p.name.is_empty()
                || !p
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return e(&k("name"), "use letters, digits, `-`, `_` or `.`");
            }
            if !names.insert(p.name.as_str()) {
                return e(&k("name"), "is used by another probe");
            }
            if p.layer.is_empty() {
                return e(&k("layer"), "must name a layer");
            }
            if p.timeout_secs == Some(0) {
                return e(&k("timeout_secs"), "must be at least 1");
            }
            if let Some(s) = &p.password {
                if let Err(m) = s.validate() {
                    return e(&k("password"), &m);
                }
            }
            match p.kind {
                ProbeKind::Tls | ProbeKind::Tcp | ProbeKind::Redis => match &p.target {
                    Some(t) if host_port(t).is_some() => {}
                    _ => return e(&k("target"), "give `host:port`"),
                },
                ProbeKind::Http
                | ProbeKind::HttpsRedirect
                | ProbeKind::Graphql
                | ProbeKind::VaultSeal
                | ProbeKind::S3
                | ProbeKind::TraefikRouters
                | ProbeKind::Gatus
                | ProbeKind::Rabbitmq => match p.url.as_deref() {
                    Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
                        if p.kind == ProbeKind::HttpsRedirect && !u.starts_with("http://") {
                            return e(&k("url"), "an https_redirect probe starts at http://");
                        }
                    }
                    _ => return e(&k("url"), "give an http:// or https:// URL"),
                },
                ProbeKind::Postgres => match p.url.as_deref() {
                    Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                        if url_has_password(u) {
                            return e(&k("url"), "no password in the URL: use `password`");
                        }
                    }
                    _ => return e(&k("url"), "give a postgres:// URL"),
                },
            }
            if p.kind == ProbeKind::S3
                && !p.bucket.as_deref().is_some_and(|b| {
                    !b.is_empty()
                        && b.chars().all(|c| {
                            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'
                        })
                })
            {
                return e(&k("bucket"), "an s3 probe needs a valid `bucket`");
            }
            if p.kind != ProbeKind::Postgres && (p.sslmode.is_some() || p.ssl_root_cert.is_some()) {
                return e(
                    &k("sslmode"),
                    "only postgres probes take `sslmode`/`ssl_root_cert`",
                );
            }
            if p.ssl_root_cert
                .as_deref()
                .is_some_and(|c| c.trim().is_empty())
            {
                return e(&k("ssl_root_cert"), "give the path of a PEM file");
            }
            if matches!(p.kind, ProbeKind::Rabbitmq | ProbeKind::S3)
                && (p.username.is_none() || p.password.is_none())
            {
                return e(&k("username"), "this probe needs `username` and `password`");
            }
            if p.kind == ProbeKind::TraefikRouters && p.username.is_some() != p.password.is_some() {
                return e(
                    &k("username"),
                    "basic auth needs both `username` and `password` (or neither)",
                );
            }
        }
        Ok(())
    }
}

fn url_has_password(u: &str) -> bool {
    let rest = u.split_once("://").map(|x| x.1).unwrap_or("");
    let authority = rest.split('/').next().unwrap_or("");
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// `host:port` -> (host, port).
pub fn host_port(target: &str) -> Option<(&str, u16)> {
    let (h, p) = target.rsplit_once(':')?;
    let h = h.trim_start_matches('[').trim_end_matches(']');
    (!h.is_empty()).then_some(())?;
    Some((h, p.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> AlertsConfig {
        #[derive(Deserialize)]
        struct W {
            alerts: AlertsConfig,
        }
        toml::from_str::<W>(s).unwrap().alerts
    }

    #[test]
    fn alerts_config_example_parses_and_validates() {
        let src = include_str!("alerts.rs");
        let toml: String = src
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.trim_start_matches("//!").trim_start_matches(' '))
            .collect::<Vec<_>>()
            .join("\n");
        let c = parse(&toml);
        c.validate().unwrap();
        assert_eq!(c.probes.len(), 6);
        assert_eq!(c.probes[2].sslmode, Some(PgTls::VerifyFull));
        assert_eq!(c.probes[3].kind, ProbeKind::TraefikRouters);
        assert_eq!(c.probes[4].kind, ProbeKind::Gatus);
        assert_eq!(
            c.routing.channel_for(Some("layer_1"), Severity::Info),
            222222222222222222
        );
        assert_eq!(
            c.routing.channel_for(Some("platform"), Severity::Critical),
            333333333333333333
        );
        assert_eq!(
            c.routing.channel_for(None, Severity::Warning),
            111111111111111111
        );
    }

    #[test]
    fn alerts_config_group_wait_accepts_ms_and_the_old_secs() {
        let base = "[alerts]\nrouting = { default_channel = 1 }\n";
        let c = parse(base);
        assert_eq!(c.group_wait(), DEFAULT_GROUP_WAIT_MS);
        assert_eq!(c.event_failure_threshold, 1);
        assert_eq!(
            parse(&format!("{base}group_wait_secs = 10")).group_wait(),
            10_000
        );
        assert_eq!(
            parse(&format!("{base}group_wait_ms = 250")).group_wait(),
            250
        );
        assert_eq!(parse(&format!("{base}group_wait_ms = 0")).group_wait(), 0);
        let both = parse(&format!("{base}group_wait_ms = 250\ngroup_wait_secs = 1"));
        assert_eq!(both.validate().unwrap_err().0, "alerts.group_wait_secs");
        let tls_on_redis = parse(&format!(
            "{base}[[alerts.probes]]\nname = \"r\"\nkind = \"redis\"\ntarget = \"h:1\"\nlayer = \"l\"\nsslmode = \"require\""
        ));
        assert_eq!(
            tls_on_redis.validate().unwrap_err().0,
            "alerts.probes[0].sslmode"
        );
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct W {
            alerts: AlertsConfig,
        }
        let bogus = format!(
            "{base}[[alerts.probes]]\nname = \"p\"\nkind = \"postgres\"\nurl = \"postgres://h/d\"\nlayer = \"l\"\nsslmode = \"sometimes\""
        );
        assert!(toml::from_str::<W>(&bogus).is_err(), "unknown sslmode");
        let zero = parse(&format!("{base}event_failure_threshold = 0"));
        assert_eq!(
            zero.validate().unwrap_err().0,
            "alerts.event_failure_threshold"
        );
        for k in [
            ProbeKind::Http,
            ProbeKind::HttpsRedirect,
            ProbeKind::VaultSeal,
            ProbeKind::S3,
        ] {
            assert_eq!(
                serde_json::to_value(k).unwrap().as_str(),
                Some(k.as_str()),
                "as_str matches the config spelling"
            );
        }
    }

    #[test]
    fn alerts_config_errors_name_the_key() {
        let bad = [
            ("[alerts]\nrouting = { default_channel = 1 }\nfailure_threshold = 0", "alerts.failure_threshold"),
            ("[alerts]\nrouting = { default_channel = 1 }\n[[alerts.probes]]\nname = \"r\"\nkind = \"redis\"\nlayer = \"layer_2\"", "alerts.probes[0].target"),
            ("[alerts]\nrouting = { default_channel = 1 }\n[[alerts.probes]]\nname = \"p\"\nkind = \"postgres\"\nurl = \"postgres://u:pw@h/db\"\nlayer = \"layer_2\"", "alerts.probes[0].url"),
        ];
        for (src, key) in bad {
            assert_eq!(parse(src).validate().unwrap_err().0, key, "{src}");
        }
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct W {
            alerts: AlertsConfig,
        }
        assert!(
            toml::from_str::<W>("[alerts]\nrouting = { default_channel = 1 }\nbogus = 1").is_err()
        );
        assert!(Severity::Info < Severity::Warning && Severity::Warning < Severity::Critical);
    }
}
