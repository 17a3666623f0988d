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

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION};
use reqwest::StatusCode;
use serde::Deserialize;

use crate::config::GithubConfig;
use crate::secret::Secret;

mod cache;
pub use cache::{Freshness, MembershipCache, TeamsAnswer};

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
    crate::base::shown(s, crate::base::Shown::Stripped, 60)
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
mod tests;
