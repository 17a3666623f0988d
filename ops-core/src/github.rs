//! GitHub as the source of identity and roles: the REST/OAuth adapter ([`GithubClient`] behind the
//! [`GithubApi`] trait), the team-membership cache ([`MembershipCache`]) with its freshness rules,
//! and the OAuth device-flow driver ([`run_device_flow`]) used to link a Discord user to a GitHub
//! account.
//!
//! Rules kept here:
//! - Only an `active` team membership counts; `pending` and 404 are "not a member".
//! - A rate-limited or failing GitHub is never read as "not a member": it is an error, and the
//!   caller fails closed (destructive actions and approvals need [`Freshness::MustBeFresh`]).
//! - Tokens (org token, user tokens, device codes) are [`Secret`]s: they never appear in errors,
//!   logs or `Debug` output. A user's access token is used once, to learn who they are, and
//!   dropped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION};
use reqwest::StatusCode;
use serde::Deserialize;

use crate::config::GithubConfig;
use crate::secret::Secret;

/// The `User-Agent` sent on every request (GitHub rejects requests without one).
pub const USER_AGENT: &str = concat!("sprocket-ops/", env!("CARGO_PKG_VERSION"));
/// The REST API version this adapter is written against.
pub const API_VERSION: &str = "2022-11-28";
/// Default per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// RFC 8628: on `slow_down` the polling interval grows by (at least) 5 seconds.
const SLOW_DOWN_STEP_SECS: u64 = 5;
/// The device flow never polls faster than this, whatever the server says.
const MIN_POLL_INTERVAL_SECS: u64 = 1;
/// Consecutive transport failures tolerated while polling the device flow.
const MAX_POLL_TRANSPORT_FAILURES: u32 = 3;
/// Above this many cached logins, entries older than `max_stale` are pruned.
const CACHE_PRUNE_THRESHOLD: usize = 1024;

/// A GitHub account: the login (may change on rename) and the numeric id (stable).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GithubUser {
    pub login: String,
    pub id: u64,
}

/// A user's membership of a team. Only [`Membership::Active`] grants anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// A member (or maintainer) who accepted the invitation.
    Active,
    /// Invited, not yet accepted: not a member.
    Pending,
    /// Not a member (GitHub answered 404, also when the token cannot see the team).
    None,
}

impl Membership {
    /// Whether this membership counts.
    pub fn is_active(self) -> bool {
        self == Membership::Active
    }
}

/// A team, written `org/team-slug`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct TeamRef {
    pub org: String,
    pub team: String,
}

impl TeamRef {
    /// Builds a validated team reference.
    pub fn new(org: &str, team: &str) -> Result<TeamRef, GithubError> {
        if !is_login_like(org) {
            return Err(GithubError::Invalid(format!(
                "`{}` is not a GitHub organization name",
                printable(org)
            )));
        }
        if !is_team_slug(team) {
            return Err(GithubError::Invalid(format!(
                "`{}` is not a GitHub team slug",
                printable(team)
            )));
        }
        Ok(TeamRef {
            org: org.to_string(),
            team: team.to_string(),
        })
    }

    /// The cache key: GitHub names are case-insensitive.
    fn key(&self) -> String {
        self.to_string().to_ascii_lowercase()
    }
}

impl FromStr for TeamRef {
    type Err = GithubError;
    fn from_str(s: &str) -> Result<TeamRef, GithubError> {
        let s = s.trim();
        match s.split_once('/') {
            Some((org, team)) if !team.contains('/') => TeamRef::new(org, team),
            _ => Err(GithubError::Invalid(format!(
                "`{}` is not of the form `org/team-slug`",
                printable(s)
            ))),
        }
    }
}

impl TryFrom<String> for TeamRef {
    type Error = GithubError;
    fn try_from(s: String) -> Result<TeamRef, GithubError> {
        s.parse()
    }
}

impl fmt::Display for TeamRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.org, self.team)
    }
}

/// What `POST /login/device/code` answers. The `device_code` is a secret: with the (public)
/// client id it can be exchanged for the user's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCode {
    pub device_code: Secret,
    /// The code the user types at `verification_uri`.
    pub user_code: String,
    pub verification_uri: String,
    /// Seconds until the codes expire.
    pub expires_in: u64,
    /// Minimum seconds between polls.
    pub interval: u64,
}

/// One answer of `POST /login/oauth/access_token` in the device flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevicePoll {
    /// The user has not approved yet.
    Pending,
    /// Polling too fast. `interval` is the new interval GitHub sent (0 if it sent none).
    SlowDown { interval: u64 },
    /// The device code expired (final).
    Expired,
    /// The user denied the authorization (final).
    Denied,
    /// Approved: the user's access token.
    Authorized(Secret),
}

/// A GitHub failure. Messages are safe to show to users: they name no token and no response
/// body; details go to the tracing logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GithubError {
    #[error("GitHub is unreachable ({0})")]
    Unreachable(String),
    #[error("GitHub rate limit reached{}", match .reset_at { Some(t) => format!(" (resets at {})", fmt_epoch(*t)), None => String::new() })]
    RateLimited {
        /// When the limit resets, in Unix seconds, if GitHub said.
        reset_at: Option<i64>,
    },
    #[error("GitHub rejected the credentials")]
    Unauthorized,
    #[error("GitHub answered HTTP {status}")]
    Api { status: u16 },
    #[error("GitHub user `{0}` not found")]
    NotFound(String),
    #[error("GitHub integration is not set up: {0}")]
    NotConfigured(&'static str),
    #[error("invalid GitHub data: {0}")]
    Invalid(String),
}

fn fmt_epoch(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%H:%M:%S UTC").to_string())
        .unwrap_or_else(|| secs.to_string())
}

/// The GitHub operations sprocket-ops needs. Held as `Arc<dyn GithubApi>` so tests can swap in
/// fakes.
#[async_trait]
pub trait GithubApi: Send + Sync {
    /// `GET {api}/orgs/{org}/teams/{team}/memberships/{login}` with the org token.
    async fn team_membership(&self, team: &TeamRef, login: &str)
        -> Result<Membership, GithubError>;
    /// `GET {api}/users/{login}`: the numeric id behind a login.
    async fn user_by_login(&self, login: &str) -> Result<GithubUser, GithubError>;
    /// `GET {api}/user/{id}`: the current login of an account (logins can be renamed, and a
    /// freed login claimed by another account; the numeric id never changes).
    /// [`GithubError::NotFound`] when the account no longer exists.
    async fn user_by_id(&self, id: u64) -> Result<GithubUser, GithubError>;
    /// `GET {api}/user` with the user's own token.
    async fn user_by_token(&self, user_token: &Secret) -> Result<GithubUser, GithubError>;
    /// `POST {oauth}/login/device/code`.
    async fn start_device_flow(&self) -> Result<DeviceCode, GithubError>;
    /// `POST {oauth}/login/oauth/access_token` with the device-code grant.
    async fn poll_device_flow(&self, device_code: &Secret) -> Result<DevicePoll, GithubError>;
}

/// The reqwest implementation of [`GithubApi`].
pub struct GithubClient {
    http: reqwest::Client,
    api_base: String,
    oauth_base: String,
    client_id: Option<String>,
    org_token: Option<Secret>,
    timeout: Duration,
}

impl fmt::Debug for GithubClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubClient")
            .field("api_base", &self.api_base)
            .field("oauth_base", &self.oauth_base)
            .field("client_id", &self.client_id)
            .field("org_token", &self.org_token.as_ref().map(|_| "***"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A response read in full.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl GithubClient {
    /// Builds the client. `org_token` reads team membership; without it membership checks answer
    /// [`GithubError::NotConfigured`]. Without `cfg.client_id` the device flow is unavailable.
    pub fn new(cfg: &GithubConfig, org_token: Option<Secret>) -> Result<GithubClient, GithubError> {
        let api_base = base_url(&cfg.api_base_url, "github.api_base_url")?;
        let oauth_base = base_url(&cfg.oauth_base_url, "github.oauth_base_url")?;
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/vnd.github+json"),
        );
        headers.insert(
            "x-github-api-version",
            HeaderValue::from_static(API_VERSION),
        );
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .default_headers(headers)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| {
                tracing::error!(target: "github", error = %e, "cannot build the HTTP client");
                GithubError::Invalid("cannot build the HTTP client".into())
            })?;
        let client_id = cfg
            .client_id
            .as_ref()
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty());
        Ok(GithubClient {
            http,
            api_base,
            oauth_base,
            client_id,
            org_token,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Overrides the per-request timeout (default [`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> GithubClient {
        self.timeout = timeout;
        self
    }

    /// Whether `/link` (the device flow) can work: a client id is configured.
    pub fn device_flow_enabled(&self) -> bool {
        self.client_id.is_some()
    }

    fn client_id(&self) -> Result<&str, GithubError> {
        self.client_id.as_deref().ok_or(GithubError::NotConfigured(
            "no github.client_id, so /link is unavailable",
        ))
    }

    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> Result<Reply, GithubError> {
        let resp = req
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| transport_error(&e, what))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .map_err(|e| transport_error(&e, what))?
            .to_vec();
        tracing::debug!(target: "github", %status, what, "GitHub answered");
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// A REST GET. `Ok(None)` is a 404; every other non-2xx status is an error.
    async fn api_get(
        &self,
        path: &str,
        token: Option<&Secret>,
        what: &str,
    ) -> Result<Option<Vec<u8>>, GithubError> {
        let mut req = self.http.get(format!("{}{}", self.api_base, path));
        if let Some(t) = token {
            req = req.header(AUTHORIZATION, bearer(t)?);
        }
        let reply = self.send(req, what).await?;
        if reply.status.is_success() {
            return Ok(Some(reply.body));
        }
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Err(status_error(&reply, what))
    }

    async fn oauth_post(
        &self,
        path: &str,
        form: &[(&str, &str)],
        what: &str,
    ) -> Result<(StatusCode, serde_json::Map<String, serde_json::Value>), GithubError> {
        let req = self
            .http
            .post(format!("{}{}", self.oauth_base, path))
            .header(ACCEPT, "application/json")
            .form(form);
        let reply = self.send(req, what).await?;
        if reply.status.is_server_error() || is_rate_limited(&reply) {
            return Err(status_error(&reply, what));
        }
        // Never echo a serde error or the body: the body may hold a token.
        match serde_json::from_slice::<serde_json::Value>(&reply.body) {
            Ok(serde_json::Value::Object(map)) => Ok((reply.status, map)),
            _ if !reply.status.is_success() => Err(status_error(&reply, what)),
            _ => {
                tracing::warn!(target: "github", what, status = %reply.status, "answer is not a JSON object");
                Err(GithubError::Invalid(format!(
                    "unreadable answer from GitHub ({what})"
                )))
            }
        }
    }
}

#[async_trait]
impl GithubApi for GithubClient {
    async fn team_membership(
        &self,
        team: &TeamRef,
        login: &str,
    ) -> Result<Membership, GithubError> {
        check_login(login)?;
        let token = self.org_token.as_ref().ok_or(GithubError::NotConfigured(
            "no org token (github.token), so team membership cannot be read",
        ))?;
        let path = format!(
            "/orgs/{}/teams/{}/memberships/{}",
            team.org, team.team, login
        );
        let Some(body) = self.api_get(&path, Some(token), "team membership").await? else {
            return Ok(Membership::None);
        };
        #[derive(Deserialize)]
        struct Body {
            state: String,
        }
        let b: Body = parse(&body, "team membership")?;
        Ok(match b.state.as_str() {
            "active" => Membership::Active,
            "pending" => Membership::Pending,
            other => {
                tracing::warn!(target: "github", state = %printable(other), %team, "unknown membership state, treated as not a member");
                Membership::None
            }
        })
    }

    async fn user_by_login(&self, login: &str) -> Result<GithubUser, GithubError> {
        check_login(login)?;
        // Public endpoint: the org token only raises the rate limit.
        let path = format!("/users/{login}");
        match self
            .api_get(&path, self.org_token.as_ref(), "user by login")
            .await?
        {
            Some(body) => parse_user(&body, "user by login"),
            None => Err(GithubError::NotFound(login.to_string())),
        }
    }

    async fn user_by_id(&self, id: u64) -> Result<GithubUser, GithubError> {
        // Public endpoint: the org token only raises the rate limit.
        let path = format!("/user/{id}");
        match self
            .api_get(&path, self.org_token.as_ref(), "user by id")
            .await?
        {
            Some(body) => {
                let user = parse_user(&body, "user by id")?;
                if user.id != id {
                    tracing::warn!(target: "github", asked = id, answered = user.id, "GitHub answered another account");
                    return Err(GithubError::Invalid(
                        "GitHub answered for another account".into(),
                    ));
                }
                Ok(user)
            }
            None => Err(GithubError::NotFound(format!("#{id}"))),
        }
    }

    async fn user_by_token(&self, user_token: &Secret) -> Result<GithubUser, GithubError> {
        match self.api_get("/user", Some(user_token), "user").await? {
            Some(body) => parse_user(&body, "user"),
            None => Err(GithubError::Api { status: 404 }),
        }
    }

    /// Requests no scope: `/user` (login and numeric id) needs none, and team membership is
    /// read with the org token, so the user's token grants nothing beyond public profile data.
    async fn start_device_flow(&self) -> Result<DeviceCode, GithubError> {
        let client_id = self.client_id()?;
        let (status, map) = self
            .oauth_post(
                "/login/device/code",
                &[("client_id", client_id), ("scope", "")],
                "device code",
            )
            .await?;
        if let Some(code) = map.get("error").and_then(|v| v.as_str()) {
            return Err(match oauth_error(code) {
                Some(e) => e,
                None => GithubError::Invalid(format!(
                    "GitHub refused to start the device flow ({})",
                    printable(code)
                )),
            });
        }
        if !status.is_success() {
            return Err(GithubError::Api {
                status: status.as_u16(),
            });
        }
        let str_field = |k: &str| map.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let (Some(device_code), Some(user_code), Some(verification_uri)) = (
            str_field("device_code"),
            str_field("user_code"),
            str_field("verification_uri"),
        ) else {
            return Err(GithubError::Invalid(
                "the device code answer lacks fields".into(),
            ));
        };
        Ok(DeviceCode {
            device_code: Secret::new(device_code),
            user_code,
            verification_uri,
            expires_in: map
                .get("expires_in")
                .and_then(|v| v.as_u64())
                .unwrap_or(900),
            interval: map.get("interval").and_then(|v| v.as_u64()).unwrap_or(5),
        })
    }

    async fn poll_device_flow(&self, device_code: &Secret) -> Result<DevicePoll, GithubError> {
        let client_id = self.client_id()?;
        let (status, map) = self
            .oauth_post(
                "/login/oauth/access_token",
                &[
                    ("client_id", client_id),
                    ("device_code", device_code.expose()),
                    ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ],
                "device flow poll",
            )
            .await?;
        if let Some(code) = map.get("error").and_then(|v| v.as_str()) {
            return match code {
                "authorization_pending" => Ok(DevicePoll::Pending),
                "slow_down" => Ok(DevicePoll::SlowDown {
                    interval: map.get("interval").and_then(|v| v.as_u64()).unwrap_or(0),
                }),
                "expired_token" => Ok(DevicePoll::Expired),
                "access_denied" => Ok(DevicePoll::Denied),
                other => Err(oauth_error(other).unwrap_or_else(|| {
                    GithubError::Invalid(format!(
                        "unexpected device flow answer ({})",
                        printable(other)
                    ))
                })),
            };
        }
        if !status.is_success() {
            return Err(GithubError::Api {
                status: status.as_u16(),
            });
        }
        match map.get("access_token").and_then(|v| v.as_str()) {
            Some(t) if !t.is_empty() => Ok(DevicePoll::Authorized(Secret::new(t))),
            _ => Err(GithubError::Invalid(
                "the access token answer lacks the token".into(),
            )),
        }
    }
}

/// Maps the OAuth error codes that are neither progress nor a final user decision.
fn oauth_error(code: &str) -> Option<GithubError> {
    Some(match code {
        "device_flow_disabled" => {
            GithubError::NotConfigured("the device flow is disabled for the GitHub OAuth App")
        }
        "incorrect_client_credentials" | "unauthorized_client" => {
            GithubError::NotConfigured("GitHub does not accept the configured github.client_id")
        }
        "incorrect_device_code" | "bad_verification_code" => {
            GithubError::Invalid("GitHub does not recognise the device code".into())
        }
        "unsupported_grant_type" => {
            GithubError::Invalid("GitHub does not support the device-code grant here".into())
        }
        _ => return None,
    })
}

fn base_url(url: &str, key: &'static str) -> Result<String, GithubError> {
    let url = url.trim().trim_end_matches('/');
    let ok = ["http://", "https://"]
        .iter()
        .any(|p| url.strip_prefix(p).is_some_and(|rest| !rest.is_empty()));
    if !ok {
        return Err(GithubError::Invalid(format!(
            "{key} must be an http:// or https:// URL"
        )));
    }
    Ok(url.to_string())
}

fn bearer(token: &Secret) -> Result<HeaderValue, GithubError> {
    let mut v = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        .map_err(|_| GithubError::Invalid("the token contains invalid characters".into()))?;
    v.set_sensitive(true);
    Ok(v)
}

/// A description of a transport failure, without URLs or bodies.
fn transport_error(e: &reqwest::Error, what: &str) -> GithubError {
    tracing::warn!(target: "github", what, error = %e, "GitHub request failed");
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    GithubError::Unreachable(kind.to_string())
}

fn header_i64(headers: &HeaderMap, name: &str) -> Option<i64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn is_rate_limited(reply: &Reply) -> bool {
    match reply.status {
        StatusCode::TOO_MANY_REQUESTS => true,
        StatusCode::FORBIDDEN => {
            header_i64(&reply.headers, "x-ratelimit-remaining") == Some(0)
                || reply.headers.contains_key("retry-after")
        }
        _ => false,
    }
}

/// The error for a non-success, non-404 status.
fn status_error(reply: &Reply, what: &str) -> GithubError {
    let status = reply.status;
    tracing::warn!(target: "github", what, %status, "GitHub answered an error");
    if is_rate_limited(reply) {
        let reset_at = header_i64(&reply.headers, "x-ratelimit-reset").or_else(|| {
            header_i64(&reply.headers, "retry-after").map(|s| chrono::Utc::now().timestamp() + s)
        });
        return GithubError::RateLimited { reset_at };
    }
    if status == StatusCode::UNAUTHORIZED {
        return GithubError::Unauthorized;
    }
    if status.is_server_error() {
        return GithubError::Unreachable(format!("HTTP {}", status.as_u16()));
    }
    GithubError::Api {
        status: status.as_u16(),
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, GithubError> {
    serde_json::from_slice(body).map_err(|e| {
        tracing::warn!(target: "github", what, error = %e, "unexpected answer shape");
        GithubError::Invalid(format!("unexpected answer from GitHub ({what})"))
    })
}

fn parse_user(body: &[u8], what: &str) -> Result<GithubUser, GithubError> {
    #[derive(Deserialize)]
    struct Body {
        login: String,
        id: u64,
    }
    let b: Body = parse(body, what)?;
    Ok(GithubUser {
        login: b.login,
        id: b.id,
    })
}

/// Logins and org names as far as URL safety goes: 1-39 ASCII alphanumerics or hyphens (legacy
/// accounts may break the stricter rules of [`crate::config::is_github_login`]).
fn is_login_like(s: &str) -> bool {
    (1..=39).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn is_team_slug(s: &str) -> bool {
    (1..=100).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn check_login(login: &str) -> Result<(), GithubError> {
    if is_login_like(login) {
        Ok(())
    } else {
        Err(GithubError::Invalid(format!(
            "`{}` is not a GitHub login",
            printable(login)
        )))
    }
}

/// A short, printable rendering of untrusted input for messages.
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(60).collect()
}

/// How fresh a membership answer must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Destructive actions and approvals: a cached answer younger than the ttl, or a live call.
    /// Never stale: if GitHub fails, the check fails.
    MustBeFresh,
    /// Read-only commands: if GitHub fails, a cached answer up to `max_stale` old is acceptable.
    MayBeStale,
    /// Destructive requests and approval clicks: always asked of GitHub now, whatever is
    /// cached; if GitHub fails, the check fails.
    Live,
}

/// Which of the asked teams a login is an active member of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamsAnswer {
    /// `org/team` of each team the login is an active member of (as the caller spelled it).
    pub active: BTreeSet<String>,
    /// When the oldest answer used was obtained (ms since the epoch, by the cache's clock).
    pub checked_at_ms: i64,
    /// Whether any answer used is older than the ttl (only with [`Freshness::MayBeStale`]).
    pub stale: bool,
}

#[derive(Debug, Clone, Copy)]
struct Cached {
    active: bool,
    at_ms: i64,
}

/// A clock in milliseconds since the epoch.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The cached answers about one account: the login they were asked by, and per team.
#[derive(Debug, Default)]
struct PerAccount {
    /// Lowercase login the answers were asked by; asking by another login starts afresh.
    login: String,
    /// Team key (lowercase `org/team`) -> answer.
    teams: HashMap<String, Cached>,
}

/// Team membership answers, cached per (account id, team) with the time they were obtained.
/// Keyed by the numeric id, never by the login: a login can be renamed and claimed by another
/// account, whose answers must never be served for the first one (or the reverse).
pub struct MembershipCache {
    api: Arc<dyn GithubApi>,
    ttl_ms: i64,
    max_stale_ms: i64,
    clock: Clock,
    /// Account id -> answers.
    entries: Mutex<HashMap<u64, PerAccount>>,
}

impl fmt::Debug for MembershipCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MembershipCache")
            .field("ttl_ms", &self.ttl_ms)
            .field("max_stale_ms", &self.max_stale_ms)
            .finish_non_exhaustive()
    }
}

fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

impl MembershipCache {
    /// A cache over `api` with the wall clock.
    pub fn new(api: Arc<dyn GithubApi>, ttl_secs: u64, max_stale_secs: u64) -> MembershipCache {
        MembershipCache {
            api,
            ttl_ms: secs_to_ms(ttl_secs),
            max_stale_ms: secs_to_ms(max_stale_secs.max(ttl_secs)),
            clock: Arc::new(|| chrono::Utc::now().timestamp_millis()),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// A cache configured from `[github]`.
    pub fn from_config(api: Arc<dyn GithubApi>, cfg: &GithubConfig) -> MembershipCache {
        MembershipCache::new(api, cfg.membership_ttl_secs, cfg.membership_max_stale_secs)
    }

    /// Replaces the clock (ms since the epoch), for tests.
    pub fn with_clock(mut self, clock: Clock) -> MembershipCache {
        self.clock = clock;
        self
    }

    /// The API this cache asks.
    pub fn api(&self) -> &Arc<dyn GithubApi> {
        &self.api
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, PerAccount>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Which of `teams` the account `account` (whose login is `login`: GitHub's membership API
    /// is by login) is an active member of. Answers are cached by the account id, and only
    /// serve the same login. Teams with a cached answer younger than the ttl are not asked
    /// again; the others are asked concurrently, one call per team. If a call fails: with
    /// [`Freshness::MustBeFresh`] the whole answer is an error (fail closed); with
    /// [`Freshness::MayBeStale`] a cached answer up to `max_stale` old stands in, else error.
    pub async fn teams_of(
        &self,
        account: u64,
        login: &str,
        teams: &[TeamRef],
        freshness: Freshness,
    ) -> Result<TeamsAnswer, GithubError> {
        let now = (self.clock)();
        let login_key = login.to_ascii_lowercase();
        // Deduplicated by key, keeping the caller's spelling.
        let wanted: BTreeMap<String, &TeamRef> = teams.iter().map(|t| (t.key(), t)).collect();
        let cached: BTreeMap<&str, Cached> = {
            let entries = self.lock();
            let per_account = entries.get(&account).filter(|a| a.login == login_key);
            wanted
                .keys()
                .filter_map(|k| Some((k.as_str(), *per_account?.teams.get(k)?)))
                .collect()
        };
        let is_fresh = |c: &Cached| (0..self.ttl_ms).contains(&(now - c.at_ms));
        let to_fetch: Vec<(&str, &TeamRef)> = wanted
            .iter()
            .filter(|(k, _)| {
                freshness == Freshness::Live || !cached.get(k.as_str()).is_some_and(is_fresh)
            })
            .map(|(k, t)| (k.as_str(), *t))
            .collect();
        let results = futures::future::join_all(
            to_fetch
                .iter()
                .map(|(_, t)| self.api.team_membership(t, login)),
        )
        .await;

        let mut answer = TeamsAnswer {
            active: BTreeSet::new(),
            checked_at_ms: now,
            stale: false,
        };
        let mut first_error = None;
        let mut fetched: HashMap<&str, Cached> = HashMap::new();
        for ((key, team), result) in to_fetch.iter().zip(results) {
            match result {
                Ok(m) => {
                    fetched.insert(
                        key,
                        Cached {
                            active: m.is_active(),
                            at_ms: now,
                        },
                    );
                }
                Err(e) => {
                    let stale_ok = freshness == Freshness::MayBeStale
                        && cached
                            .get(key)
                            .is_some_and(|c| (0..=self.max_stale_ms).contains(&(now - c.at_ms)));
                    if stale_ok {
                        tracing::warn!(target: "github", %team, error = %e, "GitHub failed; using a stale membership answer");
                    } else {
                        tracing::warn!(target: "github", %team, error = %e, ?freshness, "GitHub failed; membership unknown");
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        if !fetched.is_empty() {
            let mut entries = self.lock();
            if entries.len() > CACHE_PRUNE_THRESHOLD {
                let max = self.max_stale_ms;
                entries.retain(|_, a| {
                    a.teams.retain(|_, c| now - c.at_ms <= max);
                    !a.teams.is_empty()
                });
            }
            let per_account = entries.entry(account).or_default();
            if per_account.login != login_key {
                *per_account = PerAccount {
                    login: login_key,
                    teams: HashMap::new(),
                };
            }
            for (k, c) in &fetched {
                per_account.teams.insert(k.to_string(), *c);
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        for (key, team) in &wanted {
            let c = fetched
                .get(key.as_str())
                .or_else(|| cached.get(key.as_str()))
                .copied()
                .ok_or_else(|| GithubError::Invalid("membership answer missing".into()))?;
            if c.active {
                answer.active.insert(team.to_string());
            }
            answer.checked_at_ms = answer.checked_at_ms.min(c.at_ms);
            if !is_fresh(&c) {
                answer.stale = true;
            }
        }
        Ok(answer)
    }

    /// Forgets every answer about the account `account` (after a link change or a role change).
    pub fn invalidate(&self, account: u64) {
        self.lock().remove(&account);
    }
}

/// Why linking a GitHub account failed. Messages are safe to show to users.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error(
        "the code expired before it was approved on GitHub; run the command again for a new code"
    )]
    Expired,
    #[error("the authorization was denied on GitHub")]
    Denied,
    #[error("could not link the GitHub account: {0}")]
    Github(#[from] GithubError),
}

/// Drives the device flow after [`GithubApi::start_device_flow`]: waits `interval` (through
/// `sleep`, so tests control time) and polls, honouring `slow_down` (the interval grows to the
/// one GitHub sends, and by at least 5 s), until the user approves, denies, or `expires_in`
/// seconds of waiting have passed. On approval it asks who the user is and drops their token:
/// the token is never returned or stored. Up to 3 consecutive transport failures while polling
/// are tolerated.
pub async fn run_device_flow<S, Fut>(
    api: &dyn GithubApi,
    code: &DeviceCode,
    sleep: S,
) -> Result<GithubUser, LinkError>
where
    S: Fn(Duration) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut interval = code.interval.max(MIN_POLL_INTERVAL_SECS);
    let mut waited: u64 = 0;
    let mut transport_failures = 0;
    loop {
        if waited.saturating_add(interval) > code.expires_in {
            return Err(LinkError::Expired);
        }
        sleep(Duration::from_secs(interval)).await;
        waited += interval;
        match api.poll_device_flow(&code.device_code).await {
            Ok(DevicePoll::Pending) => transport_failures = 0,
            Ok(DevicePoll::SlowDown { interval: new }) => {
                transport_failures = 0;
                interval = new.max(interval + SLOW_DOWN_STEP_SECS);
                tracing::debug!(target: "github", interval, "device flow: slowing down");
            }
            Ok(DevicePoll::Expired) => return Err(LinkError::Expired),
            Ok(DevicePoll::Denied) => return Err(LinkError::Denied),
            Ok(DevicePoll::Authorized(token)) => {
                let user = api.user_by_token(&token).await;
                drop(token);
                return Ok(user?);
            }
            Err(GithubError::Unreachable(why))
                if transport_failures < MAX_POLL_TRANSPORT_FAILURES =>
            {
                transport_failures += 1;
                tracing::warn!(target: "github", %why, transport_failures, "device flow: poll failed, retrying");
            }
            Err(e) => return Err(LinkError::Github(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicI64, Ordering};

    /// A scripted GitHub: answers only what the test set up, panics on anything else.
    #[derive(Default)]
    struct ScriptedApi {
        /// ("org/team", login) -> answer.
        memberships: Mutex<HashMap<(String, String), Result<Membership, GithubError>>>,
        membership_calls: Mutex<Vec<(String, String)>>,
        polls: Mutex<VecDeque<Result<DevicePoll, GithubError>>>,
        /// (expected user token, user).
        token_user: Mutex<Option<(String, GithubUser)>>,
    }

    impl ScriptedApi {
        fn set(&self, team: &str, login: &str, answer: Result<Membership, GithubError>) {
            self.memberships
                .lock()
                .unwrap()
                .insert((team.to_string(), login.to_string()), answer);
        }
        fn clear(&self) {
            self.memberships.lock().unwrap().clear();
        }
        fn calls(&self) -> usize {
            self.membership_calls.lock().unwrap().len()
        }
    }

    #[async_trait]
    impl GithubApi for ScriptedApi {
        async fn team_membership(
            &self,
            team: &TeamRef,
            login: &str,
        ) -> Result<Membership, GithubError> {
            let key = (team.to_string(), login.to_string());
            self.membership_calls.lock().unwrap().push(key.clone());
            self.memberships
                .lock()
                .unwrap()
                .get(&key)
                .cloned()
                .unwrap_or_else(|| panic!("unexpected team_membership call {key:?}"))
        }
        async fn user_by_login(&self, login: &str) -> Result<GithubUser, GithubError> {
            panic!("unexpected user_by_login({login})")
        }
        async fn user_by_id(&self, id: u64) -> Result<GithubUser, GithubError> {
            panic!("unexpected user_by_id({id})")
        }
        async fn user_by_token(&self, user_token: &Secret) -> Result<GithubUser, GithubError> {
            let (expected, user) = self
                .token_user
                .lock()
                .unwrap()
                .clone()
                .expect("unexpected user_by_token call");
            assert_eq!(user_token.expose(), expected);
            Ok(user)
        }
        async fn start_device_flow(&self) -> Result<DeviceCode, GithubError> {
            panic!("unexpected start_device_flow")
        }
        async fn poll_device_flow(&self, device_code: &Secret) -> Result<DevicePoll, GithubError> {
            assert_eq!(device_code.expose(), "dc-secret");
            self.polls
                .lock()
                .unwrap()
                .pop_front()
                .expect("unexpected poll_device_flow call")
        }
    }

    fn team(s: &str) -> TeamRef {
        s.parse().unwrap()
    }

    struct Fixture {
        api: Arc<ScriptedApi>,
        now: Arc<AtomicI64>,
        cache: MembershipCache,
    }

    /// ttl 60 s, max stale 600 s, clock at 1_000_000 ms.
    fn fixture() -> Fixture {
        let api = Arc::new(ScriptedApi::default());
        let now = Arc::new(AtomicI64::new(1_000_000));
        let clock_now = now.clone();
        let cache = MembershipCache::new(api.clone(), 60, 600)
            .with_clock(Arc::new(move || clock_now.load(Ordering::SeqCst)));
        Fixture { api, now, cache }
    }

    impl Fixture {
        fn advance_secs(&self, s: i64) {
            self.now.fetch_add(s * 1000, Ordering::SeqCst);
        }
    }

    fn down() -> Result<Membership, GithubError> {
        Err(GithubError::Unreachable("HTTP 502".into()))
    }

    #[test]
    fn team_ref_parsing() {
        let t: TeamRef = "acme/ops-admins".parse().unwrap();
        assert_eq!((t.org.as_str(), t.team.as_str()), ("acme", "ops-admins"));
        assert_eq!(t.to_string(), "acme/ops-admins");
        assert_eq!(team(" Acme-Inc/release_managers ").org, "Acme-Inc");
        for bad in [
            "",
            "acme",
            "acme/",
            "/ops",
            "acme/ops/x",
            "ac me/ops",
            "acme/o ps",
            "acme/../x",
            "acme/ops?x=1",
            "acme/..",
            "a_b/ops",
        ] {
            let e = bad.parse::<TeamRef>().expect_err(bad);
            assert!(matches!(e, GithubError::Invalid(_)), "{bad}: {e}");
        }
        let from_toml: BTreeMap<String, TeamRef> = toml::from_str("admins = \"acme/ops\"").unwrap();
        assert_eq!(from_toml["admins"], team("acme/ops"));
        assert!(toml::from_str::<BTreeMap<String, TeamRef>>("admins = \"acme\"").is_err());
    }

    #[tokio::test]
    async fn pending_is_not_a_member_and_fresh_answers_are_cached() {
        let f = fixture();
        f.api.set("acme/ops", "alice", Ok(Membership::Active));
        f.api.set("acme/admins", "alice", Ok(Membership::Pending));
        f.api.set("acme/viewers", "alice", Ok(Membership::None));
        let teams = [team("acme/ops"), team("acme/admins"), team("acme/viewers")];
        let a = f
            .cache
            .teams_of(1, "alice", &teams, Freshness::MustBeFresh)
            .await
            .unwrap();
        assert_eq!(a.active, BTreeSet::from(["acme/ops".to_string()]));
        assert!(!a.stale);
        assert_eq!(a.checked_at_ms, 1_000_000);
        assert_eq!(f.api.calls(), 3);

        // A fresh hit makes no call (the scripted API would panic).
        f.api.clear();
        f.advance_secs(59);
        let b = f
            .cache
            .teams_of(1, "ALICE", &teams, Freshness::MustBeFresh)
            .await
            .unwrap();
        assert_eq!(b, a);
        assert_eq!(f.api.calls(), 3);
    }

    #[tokio::test]
    async fn answers_are_per_account_never_for_another_account_with_the_same_login() {
        let f = fixture();
        f.api.set("acme/ops", "alice", Ok(Membership::Active));
        let teams = [team("acme/ops")];
        f.cache
            .teams_of(1, "alice", &teams, Freshness::MustBeFresh)
            .await
            .unwrap();
        // Account 9 took the login "alice" (account 1 was renamed): asked anew.
        f.api.set("acme/ops", "alice", Ok(Membership::None));
        let a = f
            .cache
            .teams_of(9, "alice", &teams, Freshness::MustBeFresh)
            .await
            .unwrap();
        assert!(a.active.is_empty());
        // Account 1 under its new login is asked anew too.
        f.api.set("acme/ops", "alice2", Ok(Membership::Active));
        let b = f
            .cache
            .teams_of(1, "alice2", &teams, Freshness::MayBeStale)
            .await
            .unwrap();
        assert!(b.active.contains("acme/ops"));
        assert_eq!(f.api.calls(), 3);
    }

    #[tokio::test]
    async fn ttl_expiry_refetches() {
        let f = fixture();
        f.api.set("acme/ops", "bob", Ok(Membership::Active));
        let teams = [team("acme/ops")];
        let a = f
            .cache
            .teams_of(2, "bob", &teams, Freshness::MustBeFresh)
            .await;
        assert!(a.unwrap().active.contains("acme/ops"));
        f.advance_secs(60);
        f.api.set("acme/ops", "bob", Ok(Membership::None));
        let b = f
            .cache
            .teams_of(2, "bob", &teams, Freshness::MustBeFresh)
            .await
            .unwrap();
        assert!(b.active.is_empty());
        assert_eq!(b.checked_at_ms, 1_060_000);
        assert_eq!(f.api.calls(), 2);
    }

    #[tokio::test]
    async fn invalidate_forces_a_live_call() {
        let f = fixture();
        f.api.set("acme/ops", "bob", Ok(Membership::Active));
        let teams = [team("acme/ops")];
        f.cache
            .teams_of(2, "bob", &teams, Freshness::MustBeFresh)
            .await
            .unwrap();
        f.cache.invalidate(2);
        f.api.set("acme/ops", "bob", Ok(Membership::Pending));
        let b = f
            .cache
            .teams_of(2, "bob", &teams, Freshness::MayBeStale)
            .await
            .unwrap();
        assert!(b.active.is_empty());
        assert_eq!(f.api.calls(), 2);
    }

    #[tokio::test]
    async fn must_be_fresh_fails_closed_even_with_a_cached_answer() {
        let f = fixture();
        f.api.set("acme/ops", "carol", Ok(Membership::Active));
        let teams = [team("acme/ops")];
        f.cache
            .teams_of(3, "carol", &teams, Freshness::MustBeFresh)
            .await
            .unwrap();
        f.advance_secs(61);
        f.api.set("acme/ops", "carol", down());
        let e = f
            .cache
            .teams_of(3, "carol", &teams, Freshness::MustBeFresh)
            .await
            .unwrap_err();
        assert_eq!(e, GithubError::Unreachable("HTTP 502".into()));
        f.api.set(
            "acme/ops",
            "carol",
            Err(GithubError::RateLimited { reset_at: None }),
        );
        let e = f
            .cache
            .teams_of(3, "carol", &teams, Freshness::MustBeFresh)
            .await
            .unwrap_err();
        assert!(matches!(e, GithubError::RateLimited { .. }));
    }

    #[tokio::test]
    async fn must_be_fresh_fails_if_any_team_fails() {
        let f = fixture();
        f.api.set("acme/ops", "carol", Ok(Membership::Active));
        f.api.set("acme/admins", "carol", down());
        let teams = [team("acme/ops"), team("acme/admins")];
        assert!(f
            .cache
            .teams_of(3, "carol", &teams, Freshness::MustBeFresh)
            .await
            .is_err());
        // The answer that did arrive is cached: only the failed team is asked again.
        f.api.clear();
        f.api.set("acme/admins", "carol", Ok(Membership::None));
        let a = f
            .cache
            .teams_of(3, "carol", &teams, Freshness::MustBeFresh)
            .await
            .unwrap();
        assert_eq!(a.active, BTreeSet::from(["acme/ops".to_string()]));
        assert_eq!(f.api.calls(), 3);
    }

    #[tokio::test]
    async fn may_be_stale_serves_stale_within_max_stale_and_errors_beyond() {
        let f = fixture();
        f.api.set("acme/ops", "dave", Ok(Membership::Active));
        let teams = [team("acme/ops")];
        f.cache
            .teams_of(4, "dave", &teams, Freshness::MayBeStale)
            .await
            .unwrap();
        f.api.set("acme/ops", "dave", down());
        f.advance_secs(600);
        let a = f
            .cache
            .teams_of(4, "dave", &teams, Freshness::MayBeStale)
            .await
            .unwrap();
        assert!(a.stale);
        assert!(a.active.contains("acme/ops"));
        assert_eq!(a.checked_at_ms, 1_000_000);
        f.advance_secs(1);
        let e = f
            .cache
            .teams_of(4, "dave", &teams, Freshness::MayBeStale)
            .await
            .unwrap_err();
        assert!(matches!(e, GithubError::Unreachable(_)));
        // Nothing cached at all: an error too.
        f.api.set("acme/ops", "erin", down());
        assert!(f
            .cache
            .teams_of(5, "erin", &teams, Freshness::MayBeStale)
            .await
            .is_err());
    }

    #[tokio::test]
    async fn no_teams_means_no_calls() {
        let f = fixture();
        let a = f
            .cache
            .teams_of(1, "alice", &[], Freshness::MustBeFresh)
            .await
            .unwrap();
        assert!(a.active.is_empty() && !a.stale);
        assert_eq!(f.api.calls(), 0);
    }

    fn code(interval: u64, expires_in: u64) -> DeviceCode {
        DeviceCode {
            device_code: Secret::new("dc-secret"),
            user_code: "ABCD-1234".into(),
            verification_uri: "https://github.com/login/device".into(),
            expires_in,
            interval,
        }
    }

    /// Runs the driver with a recording, instant sleep; returns the result and the sleeps.
    async fn drive(
        api: &ScriptedApi,
        code: &DeviceCode,
    ) -> (Result<GithubUser, LinkError>, Vec<u64>) {
        let slept = Mutex::new(Vec::new());
        let r = run_device_flow(api, code, |d| {
            slept.lock().unwrap().push(d.as_secs());
            async {}
        })
        .await;
        (r, slept.into_inner().unwrap())
    }

    #[tokio::test]
    async fn device_flow_polls_honours_slow_down_and_drops_the_token() {
        let api = ScriptedApi::default();
        let alice = GithubUser {
            login: "alice".into(),
            id: 7,
        };
        *api.token_user.lock().unwrap() = Some(("gho_usertoken".into(), alice.clone()));
        api.polls.lock().unwrap().extend([
            Ok(DevicePoll::Pending),
            Ok(DevicePoll::SlowDown { interval: 10 }),
            Ok(DevicePoll::Pending),
            Err(GithubError::Unreachable("timed out".into())),
            Ok(DevicePoll::SlowDown { interval: 0 }),
            Ok(DevicePoll::Authorized(Secret::new("gho_usertoken"))),
        ]);
        let (r, slept) = drive(&api, &code(5, 900)).await;
        assert_eq!(r.unwrap(), alice);
        assert_eq!(slept, [5, 5, 10, 10, 10, 15]);
        assert!(api.polls.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn device_flow_stops_on_denied_expired_and_expires_in() {
        let api = ScriptedApi::default();
        api.polls
            .lock()
            .unwrap()
            .extend([Ok(DevicePoll::Pending), Ok(DevicePoll::Denied)]);
        assert_eq!(drive(&api, &code(5, 900)).await.0, Err(LinkError::Denied));

        api.polls.lock().unwrap().push_back(Ok(DevicePoll::Expired));
        assert_eq!(drive(&api, &code(5, 900)).await.0, Err(LinkError::Expired));

        // Pending forever: stops after expires_in seconds of waiting, without another poll.
        api.polls
            .lock()
            .unwrap()
            .extend((0..3).map(|_| Ok(DevicePoll::Pending)));
        let (r, slept) = drive(&api, &code(5, 15)).await;
        assert_eq!(r, Err(LinkError::Expired));
        assert_eq!(slept, [5, 5, 5]);

        // A zero interval is clamped, never a busy loop.
        api.polls.lock().unwrap().push_back(Ok(DevicePoll::Denied));
        assert_eq!(drive(&api, &code(0, 900)).await.1, [1]);
    }

    #[tokio::test]
    async fn device_flow_gives_up_after_repeated_failures_and_on_other_errors() {
        let api = ScriptedApi::default();
        api.polls
            .lock()
            .unwrap()
            .extend((0..4).map(|_| Err(GithubError::Unreachable("cannot connect".into()))));
        let (r, slept) = drive(&api, &code(5, 900)).await;
        assert_eq!(
            r,
            Err(LinkError::Github(GithubError::Unreachable(
                "cannot connect".into()
            )))
        );
        assert_eq!(slept.len(), 4);

        api.polls
            .lock()
            .unwrap()
            .push_back(Err(GithubError::NotConfigured("x")));
        assert!(matches!(
            drive(&api, &code(5, 900)).await.0,
            Err(LinkError::Github(GithubError::NotConfigured(_)))
        ));
    }

    #[test]
    fn secrets_stay_out_of_debug_and_messages() {
        let c = code(5, 900);
        assert!(!format!("{c:?}").contains("dc-secret"));
        let p = DevicePoll::Authorized(Secret::new("gho_usertoken"));
        assert!(!format!("{p:?}").contains("gho_usertoken"));
        let cfg = GithubConfig::default();
        let client = GithubClient::new(&cfg, Some(Secret::new("ghs_orgtoken"))).unwrap();
        assert!(!format!("{client:?}").contains("ghs_orgtoken"));
        let e = GithubError::RateLimited {
            reset_at: Some(1_700_000_000),
        };
        assert_eq!(
            e.to_string(),
            "GitHub rate limit reached (resets at 22:13:20 UTC)"
        );
    }

    #[test]
    fn client_config_is_validated() {
        let cfg = GithubConfig {
            api_base_url: "ftp://x".into(),
            ..GithubConfig::default()
        };
        assert!(matches!(
            GithubClient::new(&cfg, None),
            Err(GithubError::Invalid(_))
        ));
        let cfg = GithubConfig {
            api_base_url: "http://127.0.0.1:1/api/v3/".into(),
            ..GithubConfig::default()
        };
        let c = GithubClient::new(&cfg, None).unwrap();
        assert_eq!(c.api_base, "http://127.0.0.1:1/api/v3");
        assert!(!c.device_flow_enabled());
    }

    #[tokio::test]
    async fn client_refuses_without_credentials_or_with_bad_logins() {
        // Port 1 is never contacted: these fail before any request.
        let cfg = GithubConfig {
            api_base_url: "http://127.0.0.1:1".into(),
            oauth_base_url: "http://127.0.0.1:1".into(),
            ..GithubConfig::default()
        };
        let c = GithubClient::new(&cfg, None).unwrap();
        let t = team("acme/ops");
        assert!(matches!(
            c.team_membership(&t, "alice").await,
            Err(GithubError::NotConfigured(_))
        ));
        assert!(matches!(
            c.start_device_flow().await,
            Err(GithubError::NotConfigured(_))
        ));
        let c = GithubClient::new(&cfg, Some(Secret::new("t"))).unwrap();
        assert!(matches!(
            c.team_membership(&t, "../admin").await,
            Err(GithubError::Invalid(_))
        ));
        assert!(matches!(
            c.user_by_login("a/b").await,
            Err(GithubError::Invalid(_))
        ));
    }
}
