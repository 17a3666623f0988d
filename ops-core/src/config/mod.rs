//! The sprocket-ops configuration: one TOML document, parsed and validated once, before anything
//! connects. Every error names the file, the key and what is wrong, so start-up can print one line
//! and exit 64. Secrets never live in this file: only the names of the env vars or files that hold
//! them (see [`SecretSource`]). The larger sections have files of their own: [`alerts`] and
//! [`images`] (`[images]`, `[self_services]`); this module imports no domain module, so every
//! domain may read its section.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::secret::{Secret, SecretSource};

pub mod alerts;
pub mod images;

/// Default SQLite database, created on first run.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://sprocket-ops.db";
/// Default Docker endpoint: the local engine socket.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// A configuration error: which file, which key, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {key}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub message: String,
}

/// The whole validated configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub discord: DiscordConfig,
    #[serde(default)]
    pub docker: DockerConfig,
    #[serde(default)]
    pub database: DatabaseConfig,
    /// The Pulumi layers, in dependency order (`layer_1`, `layer_2`, `platform`).
    pub layers: BTreeMap<String, LayerConfig>,
    /// Order in which layers are shown and deployed; defaults to the keys' order.
    #[serde(default)]
    pub layer_order: Vec<String>,
    #[serde(default)]
    pub github: GithubConfig,
    /// The roles and approval rules; relative paths are relative to this config file.
    #[serde(default = "default_permissions_file")]
    pub permissions_file: PathBuf,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub pulumi: PulumiConfig,
    /// Vault (OpenBao-compatible); without it the `/vault` commands say it is not configured.
    #[serde(default)]
    pub vault: Option<VaultConfig>,
    #[serde(default)]
    pub http: HttpConfig,
    /// Health alerts (Swarm events, probes) posted to channels; off without this section.
    #[serde(default)]
    pub alerts: Option<alerts::AlertsConfig>,
    /// `[images]`: the repositories a full image reference may name (globs; empty: tags only).
    #[serde(default)]
    pub images: images::ImagesConfig,
    /// `[self_services]`: sprocket-ops' own services, changed by break-glass only.
    #[serde(default)]
    pub self_services: images::SelfServicesConfig,
}

/// How layer deploys run the Pulumi CLI (argv only, never a shell).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PulumiConfig {
    /// The `pulumi` executable: a path, or a name looked up on PATH.
    #[serde(default = "default_pulumi_binary")]
    pub binary: PathBuf,
    /// `PULUMI_BACKEND_URL` for the process (for example `s3://bucket`), if not the default.
    #[serde(default)]
    pub backend_url: Option<String>,
    /// `PULUMI_CONFIG_PASSPHRASE` for stacks with passphrase secrets.
    #[serde(default)]
    pub passphrase: Option<SecretSource>,
    /// `PULUMI_ACCESS_TOKEN` for the Pulumi Cloud backend.
    #[serde(default)]
    pub access_token: Option<SecretSource>,
    /// How long a layer lock lives without its deploy finishing, in seconds.
    #[serde(default = "default_lock_ttl")]
    pub lock_ttl_secs: u64,
    /// Environment variables passed on to `pulumi` and its plugins besides `PATH`, `HOME` and
    /// the `PULUMI_*` set from this section (for example cloud credentials a provider reads).
    /// Nothing else of the bot's environment reaches them.
    #[serde(default)]
    pub pass_env: Vec<String>,
}

fn default_pulumi_binary() -> PathBuf {
    PathBuf::from("pulumi")
}
fn default_lock_ttl() -> u64 {
    3600
}

impl Default for PulumiConfig {
    fn default() -> Self {
        PulumiConfig {
            binary: default_pulumi_binary(),
            backend_url: None,
            passphrase: None,
            access_token: None,
            lock_ttl_secs: default_lock_ttl(),
            pass_env: Vec::new(),
        }
    }
}

/// The Vault the platform uses (layer_1's `vault-service`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// `https://vault.example` (or `http://127.0.0.1:8200`).
    pub address: String,
    /// A token for status-adjacent calls that need one (seal, secret metadata); default env
    /// `VAULT_TOKEN`. Unseal needs none: key holders bring their shares.
    #[serde(default = "default_vault_token")]
    pub token: SecretSource,
    /// A CA certificate (PEM) to trust for `address`.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// KV v2 secrets the platform needs, as `mount/path` (`platform/sprocket/manual/oauth/google`).
    #[serde(default)]
    pub secret_paths: Vec<String>,
    /// An unseal ceremony with no share for this long is reset.
    #[serde(default = "default_ceremony_idle")]
    pub ceremony_idle_minutes: u64,
    #[serde(default = "default_vault_timeout")]
    pub timeout_secs: u64,
}

fn default_vault_token() -> SecretSource {
    SecretSource::env("VAULT_TOKEN")
}
fn default_ceremony_idle() -> u64 {
    10
}
fn default_vault_timeout() -> u64 {
    10
}

/// The local HTTP endpoint for `/healthz` and `/metrics`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// `127.0.0.1:9464`; empty to disable.
    #[serde(default = "default_http_listen")]
    pub listen: String,
}

fn default_http_listen() -> String {
    "127.0.0.1:9464".into()
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_http_listen(),
        }
    }
}

fn default_permissions_file() -> PathBuf {
    PathBuf::from("permissions.toml")
}

/// Per-person rate limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    #[serde(default = "default_commands_per_minute")]
    pub commands_per_minute: u32,
    #[serde(default = "default_destructive_per_hour")]
    pub destructive_per_hour: u32,
}

fn default_commands_per_minute() -> u32 {
    30
}
fn default_destructive_per_hour() -> u32 {
    10
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            commands_per_minute: default_commands_per_minute(),
            destructive_per_hour: default_destructive_per_hour(),
        }
    }
}

/// GitHub: identity (OAuth device flow) and team membership, which grants roles.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubConfig {
    /// REST API base (GitHub Enterprise Server: `https://HOST/api/v3`).
    #[serde(default = "default_github_api")]
    pub api_base_url: String,
    /// Web base for the OAuth device flow (`/login/device/code`, `/login/oauth/access_token`).
    #[serde(default = "default_github_oauth")]
    pub oauth_base_url: String,
    /// The OAuth App's client id (public; the device flow needs no client secret). Without it,
    /// `/link` is unavailable and only the static mapping identifies people.
    #[serde(default)]
    pub client_id: Option<String>,
    /// An org-scoped token that can read team membership; default env `GITHUB_TOKEN`.
    #[serde(default = "default_github_token")]
    pub token: SecretSource,
    /// How long a membership answer is trusted, in seconds.
    #[serde(default = "default_membership_ttl")]
    pub membership_ttl_secs: u64,
    /// While GitHub is unreachable, read-only commands may use an answer up to this old.
    /// Destructive actions and approvals never use a stale answer.
    #[serde(default = "default_membership_max_stale")]
    pub membership_max_stale_secs: u64,
    /// Static fallback mapping: Discord user id -> GitHub login.
    #[serde(default)]
    pub static_links: BTreeMap<String, String>,
}

fn default_github_api() -> String {
    "https://api.github.com".into()
}
fn default_github_oauth() -> String {
    "https://github.com".into()
}
fn default_github_token() -> SecretSource {
    SecretSource::env("GITHUB_TOKEN")
}
fn default_membership_ttl() -> u64 {
    300
}
fn default_membership_max_stale() -> u64 {
    3600
}

impl Default for GithubConfig {
    fn default() -> Self {
        GithubConfig {
            api_base_url: default_github_api(),
            oauth_base_url: default_github_oauth(),
            client_id: None,
            token: default_github_token(),
            membership_ttl_secs: default_membership_ttl(),
            membership_max_stale_secs: default_membership_max_stale(),
            static_links: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordConfig {
    /// The guild the slash commands are registered in.
    pub guild_id: u64,
    pub alerts_channel_id: u64,
    pub approvals_channel_id: u64,
    pub audit_channel_id: u64,
    /// A REST proxy (for example a rate-limiting proxy). When set, all REST traffic goes there
    /// and the Discord client's own rate limiter is off, because the proxy owns rate limits.
    #[serde(default)]
    pub api_base_url: Option<String>,
    /// Where the bot token comes from; default env `DISCORD_TOKEN`.
    #[serde(default = "default_discord_token")]
    pub token: SecretSource,
    /// On SIGTERM: how long running commands and deploys may finish before the gateway closes.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_secs: u64,
    /// `/logs follow:true` stops by itself after this long.
    #[serde(default = "default_logs_follow")]
    pub logs_follow_secs: u64,
}

fn default_logs_follow() -> u64 {
    300
}

fn default_shutdown_grace() -> u64 {
    60
}

fn default_discord_token() -> SecretSource {
    SecretSource::env("DISCORD_TOKEN")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerConfig {
    /// `unix:///path/docker.sock`, or `tcp://host:port` / `http://host:port` for a
    /// docker-socket-proxy.
    #[serde(default = "default_docker_host")]
    pub host: String,
    /// Per-request timeout in seconds.
    #[serde(default = "default_docker_timeout")]
    pub timeout_secs: u64,
    /// A service label whose value names the service's layer; checked before the patterns.
    #[serde(default = "default_layer_label")]
    pub layer_label: String,
}

fn default_docker_host() -> String {
    DEFAULT_DOCKER_HOST.to_string()
}
fn default_docker_timeout() -> u64 {
    10
}
fn default_layer_label() -> String {
    "sprocket.layer".to_string()
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            host: default_docker_host(),
            timeout_secs: default_docker_timeout(),
            layer_label: default_layer_label(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://path.db` (created on first run) or `postgres://user@host/db`.
    #[serde(default = "default_database_url")]
    pub url: String,
    /// The database password, when the URL carries none.
    #[serde(default)]
    pub password: Option<SecretSource>,
}

fn default_database_url() -> String {
    DEFAULT_DATABASE_URL.to_string()
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: default_database_url(),
            password: None,
        }
    }
}

/// One Pulumi layer: where its program lives and which Swarm services belong to it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerConfig {
    /// The Pulumi project directory (`layer_1`, `layer_2`, `platform`).
    pub directory: PathBuf,
    /// The Pulumi stack (`layer_1`, `layer_2`, `prod`).
    pub stack: String,
    /// The stack config key holding the image tag (`image-tag` for platform), if any.
    #[serde(default)]
    pub image_tag_key: Option<String>,
    /// Service name patterns (`*` matches any run of characters) that belong to this layer.
    #[serde(default)]
    pub services: Vec<String>,
    /// Every deploy of this layer needs an approval (layer_1: Traefik and Vault).
    #[serde(default)]
    pub always_requires_approval: bool,
    /// A deploy running longer than this is cancelled, in seconds.
    #[serde(default = "default_layer_timeout")]
    pub timeout_secs: u64,
}

fn default_layer_timeout() -> u64 {
    1800
}

impl Config {
    /// Parses and validates a configuration document. `file` is only used in error messages.
    pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
        let err = |key: String, message: String| ConfigError {
            file: file.to_string(),
            key,
            message,
        };
        let de = toml::Deserializer::new(text);
        let mut cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let key = match (path.as_str(), inner.span()) {
                (".", Some(span)) => {
                    format!("line {}", text[..span.start].matches('\n').count() + 1)
                }
                (".", None) => "(document)".to_string(),
                _ => path,
            };
            err(key, one_line(inner.message()))
        })?;
        cfg.validate().map_err(|(key, message)| err(key, message))?;
        if cfg.layer_order.is_empty() {
            cfg.layer_order = cfg.layers.keys().cloned().collect();
        }
        Ok(cfg)
    }

    /// Reads and parses a configuration file; a relative `permissions_file` is resolved
    /// against the config file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            key: "(file)".into(),
            message: format!("cannot read: {}", e.kind()),
        })?;
        let mut cfg = Config::parse(&file, &text)?;
        if cfg.permissions_file.is_relative() {
            if let Some(dir) = path.parent() {
                cfg.permissions_file = dir.join(&cfg.permissions_file);
            }
        }
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let d = &self.discord;
        for (key, v) in [
            ("discord.guild_id", d.guild_id),
            ("discord.alerts_channel_id", d.alerts_channel_id),
            ("discord.approvals_channel_id", d.approvals_channel_id),
            ("discord.audit_channel_id", d.audit_channel_id),
        ] {
            if v == 0 {
                return Err((key.into(), "must be a Discord snowflake id, not 0".into()));
            }
        }
        if let Some(url) = &d.api_base_url {
            validate_http_url(url)
                .map_err(|m| ("discord.api_base_url".to_string(), m.to_string()))?;
        }
        d.token
            .validate()
            .map_err(|m| ("discord.token".to_string(), m))?;
        let host = &self.docker.host;
        if !(host.starts_with("unix://")
            || host.starts_with("tcp://")
            || host.starts_with("http://"))
        {
            return Err((
                "docker.host".into(),
                format!("`{host}` must start with unix://, tcp:// or http://"),
            ));
        }
        if self.docker.timeout_secs == 0 || self.docker.timeout_secs > 600 {
            return Err((
                "docker.timeout_secs".into(),
                "must be between 1 and 600".into(),
            ));
        }
        let db = &self.database.url;
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            return Err((
                "database.url".into(),
                "must start with sqlite:// or postgres://".into(),
            ));
        }
        if let Some(p) = &self.database.password {
            p.validate()
                .map_err(|m| ("database.password".to_string(), m))?;
        }
        let gh = &self.github;
        validate_http_url(&gh.api_base_url)
            .map_err(|m| ("github.api_base_url".to_string(), m.to_string()))?;
        validate_http_url(&gh.oauth_base_url)
            .map_err(|m| ("github.oauth_base_url".to_string(), m.to_string()))?;
        gh.token
            .validate()
            .map_err(|m| ("github.token".to_string(), m))?;
        if gh.membership_ttl_secs == 0 || gh.membership_ttl_secs > 86_400 {
            return Err((
                "github.membership_ttl_secs".into(),
                "must be between 1 and 86400".into(),
            ));
        }
        if gh.membership_max_stale_secs < gh.membership_ttl_secs {
            return Err((
                "github.membership_max_stale_secs".into(),
                "must be at least membership_ttl_secs".into(),
            ));
        }
        for (discord_id, login) in &gh.static_links {
            if discord_id.parse::<u64>().map_or(true, |v| v == 0) {
                return Err((
                    format!("github.static_links.{discord_id}"),
                    "the key must be a Discord user id".into(),
                ));
            }
            if !is_github_login(login) {
                return Err((
                    format!("github.static_links.{discord_id}"),
                    format!("`{login}` is not a GitHub login"),
                ));
            }
        }
        if let Some(v) = &self.vault {
            validate_http_url(&v.address)
                .map_err(|m| ("vault.address".to_string(), m.to_string()))?;
            v.token
                .validate()
                .map_err(|m| ("vault.token".to_string(), m))?;
            for (i, p) in v.secret_paths.iter().enumerate() {
                let ok = p.split('/').count() >= 2
                    && p.split('/').all(|seg| {
                        !seg.is_empty()
                            && seg != ".."
                            && seg
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                    });
                if !ok {
                    return Err((
                        format!("vault.secret_paths[{i}]"),
                        format!("`{p}` must be `mount/path` of letters, digits, - _ ."),
                    ));
                }
            }
            if v.ceremony_idle_minutes == 0 || v.ceremony_idle_minutes > 120 {
                return Err((
                    "vault.ceremony_idle_minutes".into(),
                    "must be between 1 and 120".into(),
                ));
            }
        }
        if let Some(p) = &self.pulumi.passphrase {
            p.validate()
                .map_err(|m| ("pulumi.passphrase".to_string(), m))?;
        }
        if let Some(p) = &self.pulumi.access_token {
            p.validate()
                .map_err(|m| ("pulumi.access_token".to_string(), m))?;
        }
        if let Some(bad) = self
            .pulumi
            .pass_env
            .iter()
            .find(|n| n.is_empty() || n.contains('=') || n.contains('\0'))
        {
            return Err((
                "pulumi.pass_env".into(),
                format!(
                    "`{}` is not an environment variable name",
                    bad.escape_debug()
                ),
            ));
        }
        // pulumi never gets the bot's own secrets, whatever pass_env says.
        let own: Vec<&str> = [
            Some(&self.discord.token),
            Some(&self.github.token),
            self.vault.as_ref().map(|v| &v.token),
            self.database.password.as_ref(),
        ]
        .into_iter()
        .flatten()
        .filter_map(|s| s.env.as_deref())
        .chain(["DISCORD_TOKEN", "GITHUB_TOKEN", "VAULT_TOKEN"])
        .collect();
        if let Some(bad) = self
            .pulumi
            .pass_env
            .iter()
            .find(|n| own.contains(&n.as_str()))
        {
            return Err((
                "pulumi.pass_env".into(),
                format!("`{bad}` holds one of sprocket-ops' own secrets: it is never passed on to pulumi"),
            ));
        }
        if self.pulumi.binary.as_os_str().is_empty() {
            return Err(("pulumi.binary".into(), "must not be empty".into()));
        }
        if !self.http.listen.is_empty() && self.http.listen.parse::<std::net::SocketAddr>().is_err()
        {
            return Err((
                "http.listen".into(),
                format!(
                    "`{}` is not host:port (like 127.0.0.1:9464)",
                    self.http.listen
                ),
            ));
        }
        if let Some(a) = &self.alerts {
            a.validate()?;
        }
        self.images.validate()?;
        self.self_services.validate()?;
        for (key, v) in [
            (
                "limits.commands_per_minute",
                self.limits.commands_per_minute,
            ),
            (
                "limits.destructive_per_hour",
                self.limits.destructive_per_hour,
            ),
        ] {
            if v == 0 || v > 10_000 {
                return Err((key.into(), "must be between 1 and 10000".into()));
            }
        }
        if self.layers.is_empty() {
            return Err((
                "layers".into(),
                "at least one layer must be configured".into(),
            ));
        }
        for (name, layer) in &self.layers {
            let key = |k: &str| format!("layers.{name}.{k}");
            if !is_command_name(name) {
                return Err((
                    format!("layers.{name}"),
                    "a layer name must be 1-32 characters of a-z, 0-9, _ or - (it becomes a slash subcommand)".into(),
                ));
            }
            if layer.timeout_secs == 0 || layer.timeout_secs > 6 * 3600 {
                return Err((key("timeout_secs"), "must be between 1 and 21600".into()));
            }
            if layer.directory.as_os_str().is_empty() {
                return Err((key("directory"), "must not be empty".into()));
            }
            if !is_pulumi_name(&layer.stack) {
                return Err((
                    key("stack"),
                    format!("`{}` is not a valid Pulumi stack name", layer.stack),
                ));
            }
            if let Some(k) = &layer.image_tag_key {
                if !is_pulumi_name(k) {
                    return Err((
                        key("image_tag_key"),
                        format!("`{k}` is not a valid Pulumi config key"),
                    ));
                }
            }
            for (i, p) in layer.services.iter().enumerate() {
                if p.is_empty() || p.chars().any(|c| c.is_whitespace()) {
                    return Err((
                        format!("layers.{name}.services[{i}]"),
                        "a pattern must be non-empty and contain no spaces".into(),
                    ));
                }
            }
        }
        for (i, l) in self.layer_order.iter().enumerate() {
            if !self.layers.contains_key(l) {
                return Err((format!("layer_order[{i}]"), format!("unknown layer `{l}`")));
            }
        }
        if !self.layer_order.is_empty() && self.layer_order.len() != self.layers.len() {
            return Err((
                "layer_order".into(),
                "must list every configured layer exactly once".into(),
            ));
        }
        Ok(())
    }

    /// The Discord bot token, resolved from its source.
    pub fn discord_token(&self) -> Result<Secret, ConfigError> {
        self.discord.token.resolve().map_err(|message| ConfigError {
            file: "(environment)".into(),
            key: "discord.token".into(),
            message,
        })
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn validate_http_url(url: &str) -> Result<(), &'static str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or("must start with http:// or https://")?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err("has no host");
    }
    if url.ends_with('/') {
        return Err("must not end with `/`");
    }
    Ok(())
}

/// Discord command and option names: 1-32 of lowercase letters, digits, `_` and `-`.
pub fn is_command_name(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// GitHub logins: 1-39 alphanumerics or single hyphens, not starting or ending with a hyphen.
pub fn is_github_login(s: &str) -> bool {
    (1..=39).contains(&s.len())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn is_pulumi_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/'))
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "guild {}, {} layer(s) [{}], docker {}, database {}",
            self.discord.guild_id,
            self.layers.len(),
            self.layer_order.join(", "),
            self.docker.host,
            crate::redact::redact_url_password(&self.database.url),
        )
    }
}

#[cfg(test)]
mod tests;
