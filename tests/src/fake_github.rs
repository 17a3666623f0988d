//! An in-process fake GitHub shaped like the real REST API and OAuth device flow, on one
//! 127.0.0.1 port:
//!
//! - REST under `/api/v3` (the GitHub Enterprise Server layout, so the client's base-URL joining
//!   is exercised): `GET /orgs/{org}/teams/{team}/memberships/{user}`, `GET /users/{user}`,
//!   `GET /user/{id}`, `GET /user`. Responses carry `x-ratelimit-*` headers; requests without a `User-Agent` get
//!   403 like on github.com; bad or missing credentials get 401.
//! - OAuth at the root: `POST /login/device/code`, `POST /login/oauth/access_token` (errors are
//!   200 + `{"error": ...}` when `Accept: application/json`, form-encoded otherwise, as GitHub
//!   does) and the `GET /login/device` page.
//!
//! Users are stored by numeric id, so a rename keeps the id and the team memberships, and the
//! freed login can then be claimed by another account ([`FakeGithub::rename_user`] of another
//! account, or [`FakeGithub::add_user`]), as on GitHub. Every
//! request is recorded ([`FakeGithub::requests`]); faults are injected with
//! [`FakeGithub::set_failure`].
//!
//! ```no_run
//! # async fn demo() {
//! use ops_core::github::{GithubApi, GithubClient, Membership};
//! use ops_core::secret::Secret;
//! use sprocket_ops_tests::fake_github::FakeGithub;
//! let gh = FakeGithub::start().await;
//! gh.add_user("alice", 7);
//! gh.set_membership("acme", "ops", "alice", "active");
//! let client = GithubClient::new(&gh.github_config(), Some(Secret::new(gh.org_token()))).unwrap();
//! let m = client.team_membership(&"acme/ops".parse().unwrap(), "alice").await.unwrap();
//! assert_eq!(m, Membership::Active);
//! # }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use ops_core::config::GithubConfig;
use ops_core::secret::SecretSource;
use serde_json::{json, Value};

mod routes;
use routes::*;

/// The OAuth App client id the fake accepts.
pub const FAKE_CLIENT_ID: &str = "Iv1.fakeclient0001";
/// The REST API prefix (GitHub Enterprise Server style).
pub const API_PREFIX: &str = "/api/v3";
/// The org token the fake accepts for membership calls.
const ORG_TOKEN: &str = "ghs_fakeOrgToken0000000000000000000000";
const RATE_LIMIT: u64 = 5000;
const DOCS: &str = "https://docs.github.com/rest";

/// A fault to inject into every subsequent request (REST and OAuth).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Behave normally.
    None,
    /// Answer 502 Bad Gateway.
    ServerError,
    /// Answer 403 with `x-ratelimit-remaining: 0` (the primary rate limit).
    RateLimited,
    /// Wait this long before answering (normally).
    Hang(Duration),
    /// Answer this status with this body, as is (an error body carrying whatever it carries).
    ErrorBody(u16, &'static str),
}

/// A GitHub account in the fake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeUser {
    pub login: String,
    pub id: u64,
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct GithubRequest {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    pub authorization: Option<String>,
    pub user_agent: Option<String>,
    pub accept: Option<String>,
    pub api_version: Option<String>,
    /// The decoded form body of POSTs (empty otherwise).
    pub form: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeviceStatus {
    Pending,
    Approved(u64),
    Denied,
    Expired,
    /// The token was issued; the device code cannot be used again.
    Consumed,
}

#[derive(Debug)]
struct Device {
    device_code: String,
    user_code: String,
    scope: String,
    interval: u64,
    expires_at: Instant,
    status: DeviceStatus,
}

struct State {
    host: std::net::IpAddr,
    port: u16,
    seed: u64,
    counter: u64,
    /// id -> login.
    users: BTreeMap<u64, String>,
    /// (org lowercase, team lowercase, user id) -> state.
    memberships: HashMap<(String, String, u64), String>,
    devices: Vec<Device>,
    /// user access token -> user id.
    user_tokens: HashMap<String, u64>,
    failure: Failure,
    requests: Vec<GithubRequest>,
    device_interval: u64,
    device_expires_in: u64,
    slow_down_once: bool,
    rate_remaining: u64,
    rate_reset: i64,
}

impl State {
    fn user_id(&self, login: &str) -> Option<u64> {
        self.users
            .iter()
            .find(|(_, l)| l.eq_ignore_ascii_case(login))
            .map(|(id, _)| *id)
    }

    fn device_mut(&mut self, user_code: &str) -> &mut Device {
        self.devices
            .iter_mut()
            .find(|d| d.user_code.eq_ignore_ascii_case(user_code))
            .unwrap_or_else(|| panic!("fake GitHub: no device flow with user code {user_code}"))
    }

    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    fn base_url(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }
}

type Shared = Arc<Mutex<State>>;

/// The fake GitHub server. Dropping it stops the server.
pub struct FakeGithub {
    shared: Shared,
    host: std::net::IpAddr,
    port: u16,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeGithub {
    /// Binds 127.0.0.1:0 and serves. Device codes default to GitHub's `interval` 5 and
    /// `expires_in` 900; tests usually set a small interval ([`FakeGithub::set_device_interval`]).
    pub async fn start() -> FakeGithub {
        Self::start_on(std::net::Ipv4Addr::LOCALHOST.into()).await
    }

    /// As [`FakeGithub::start`], on `host` instead of 127.0.0.1 (the gateway address of a
    /// Docker network a test made, for a containerised bot); its URLs name that address.
    pub async fn start_on(host: std::net::IpAddr) -> FakeGithub {
        let listener = tokio::net::TcpListener::bind((host, 0))
            .await
            .unwrap_or_else(|e| panic!("fake GitHub: cannot bind {host}:0: {e}"));
        let port = listener.local_addr().expect("local addr").port();
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(port).rotate_left(40);
        let shared = Arc::new(Mutex::new(State {
            host,
            port,
            seed,
            counter: 0,
            users: BTreeMap::new(),
            memberships: HashMap::new(),
            devices: Vec::new(),
            user_tokens: HashMap::new(),
            failure: Failure::None,
            requests: Vec::new(),
            device_interval: 5,
            device_expires_in: 900,
            slow_down_once: false,
            rate_remaining: RATE_LIMIT,
            rate_reset: epoch_secs() + 3600,
        }));
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(target: "fake_github", "server stopped: {e}");
            }
        });
        FakeGithub {
            shared,
            host,
            port,
            server,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.shared)
    }

    /// `http://HOST:PORT/api/v3`: the `github.api_base_url` to configure.
    pub fn api_base_url(&self) -> String {
        format!("http://{}:{}{API_PREFIX}", self.host, self.port)
    }

    /// `http://HOST:PORT`: the `github.oauth_base_url` to configure.
    pub fn oauth_base_url(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    /// The org token accepted for membership calls.
    pub fn org_token(&self) -> &'static str {
        ORG_TOKEN
    }

    /// The client id accepted by the device flow.
    pub fn client_id(&self) -> &'static str {
        FAKE_CLIENT_ID
    }

    /// A `[github]` config pointing at this fake, with [`FAKE_CLIENT_ID`], ttl 300 s and max
    /// stale 3600 s. Its `token` source names env `SPROCKET_FAKE_GITHUB_TOKEN`, which is not set:
    /// pass [`FakeGithub::org_token`] to `GithubClient::new` directly.
    pub fn github_config(&self) -> GithubConfig {
        GithubConfig {
            api_base_url: self.api_base_url(),
            oauth_base_url: self.oauth_base_url(),
            client_id: Some(FAKE_CLIENT_ID.to_string()),
            token: SecretSource::env("SPROCKET_FAKE_GITHUB_TOKEN"),
            ..GithubConfig::default()
        }
    }

    /// Adds an account. Panics if the login or the id is taken.
    pub fn add_user(&self, login: &str, id: u64) -> FakeUser {
        let mut st = self.lock();
        assert!(
            st.user_id(login).is_none(),
            "fake GitHub: login {login} is taken"
        );
        assert!(!st.users.contains_key(&id), "fake GitHub: id {id} is taken");
        st.users.insert(id, login.to_string());
        FakeUser {
            login: login.to_string(),
            id,
        }
    }

    /// Renames an account; its id, memberships and tokens stay, and `old` is free for another
    /// account to take. Panics if `old` is unknown or `new` taken.
    pub fn rename_user(&self, old: &str, new: &str) {
        let mut st = self.lock();
        let id = st
            .user_id(old)
            .unwrap_or_else(|| panic!("fake GitHub: no user {old}"));
        assert!(
            st.user_id(new).is_none_or(|other| other == id),
            "fake GitHub: login {new} is taken"
        );
        st.users.insert(id, new.to_string());
    }

    /// Sets `login`'s membership of `org/team` to `"active"` or `"pending"`.
    pub fn set_membership(&self, org: &str, team: &str, login: &str, state: &str) {
        assert!(
            state == "active" || state == "pending",
            "fake GitHub: membership state must be active or pending, not {state}"
        );
        let mut st = self.lock();
        let id = st
            .user_id(login)
            .unwrap_or_else(|| panic!("fake GitHub: no user {login}; add_user first"));
        st.memberships.insert(
            (org.to_ascii_lowercase(), team.to_ascii_lowercase(), id),
            state.to_string(),
        );
    }

    /// Removes `login` from `org/team` (the API then answers 404).
    pub fn remove_membership(&self, org: &str, team: &str, login: &str) {
        let mut st = self.lock();
        if let Some(id) = st.user_id(login) {
            st.memberships
                .remove(&(org.to_ascii_lowercase(), team.to_ascii_lowercase(), id));
        }
    }

    /// The `interval` given to new device codes (GitHub: 5).
    pub fn set_device_interval(&self, secs: u64) {
        self.lock().device_interval = secs;
    }

    /// The `expires_in` given to new device codes (GitHub: 900).
    pub fn set_device_expires_in(&self, secs: u64) {
        self.lock().device_expires_in = secs;
    }

    /// The user codes of device flows still waiting for the user, oldest first.
    pub fn pending_user_codes(&self) -> Vec<String> {
        self.lock()
            .devices
            .iter()
            .filter(|d| d.status == DeviceStatus::Pending)
            .map(|d| d.user_code.clone())
            .collect()
    }

    /// The user enters `user_code` at the verification page, signed in as `login`, and approves.
    pub fn approve_device(&self, user_code: &str, login: &str) {
        let mut st = self.lock();
        let id = st
            .user_id(login)
            .unwrap_or_else(|| panic!("fake GitHub: no user {login}; add_user first"));
        st.device_mut(user_code).status = DeviceStatus::Approved(id);
    }

    /// The user denies the authorization.
    pub fn deny_device(&self, user_code: &str) {
        self.lock().device_mut(user_code).status = DeviceStatus::Denied;
    }

    /// The device code expires now.
    pub fn expire_device(&self, user_code: &str) {
        self.lock().device_mut(user_code).status = DeviceStatus::Expired;
    }

    /// The next access-token poll (of any device flow) answers `slow_down`, adding 5 s to that
    /// flow's interval as GitHub does.
    pub fn slow_down_once(&self) {
        self.lock().slow_down_once = true;
    }

    /// Every user access token issued so far (to check they leak nowhere).
    pub fn user_tokens(&self) -> Vec<String> {
        self.lock().user_tokens.keys().cloned().collect()
    }

    /// Injects a fault into all subsequent requests (`Failure::None` to heal).
    pub fn set_failure(&self, failure: Failure) {
        self.lock().failure = failure;
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<GithubRequest> {
        self.lock().requests.clone()
    }

    /// Requests whose path starts with `prefix`.
    pub fn requests_to(&self, prefix: &str) -> Vec<GithubRequest> {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.path.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

fn epoch_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Decodes `application/x-www-form-urlencoded`.
fn parse_form(body: &[u8]) -> BTreeMap<String, String> {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push(h * 16 + l);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                },
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn encode_form(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            let enc: String = v
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            format!("{k}={enc}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn respond(
    status: StatusCode,
    headers: &[(&str, String)],
    content_type: &str,
    body: String,
) -> Response {
    let mut b = Response::builder()
        .status(status)
        .header("content-type", content_type);
    for (k, v) in headers {
        b = b.header(*k, v.as_str());
    }
    b.body(Body::from(body)).expect("valid response")
}

fn json_response(status: StatusCode, headers: &[(&str, String)], body: Value) -> Response {
    respond(
        status,
        headers,
        "application/json; charset=utf-8",
        body.to_string(),
    )
}

fn not_found(headers: &[(&str, String)]) -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        headers,
        json!({"message": "Not Found", "documentation_url": DOCS, "status": "404"}),
    )
}

/// Who a request authenticates as.
enum Auth {
    Anonymous,
    Org,
    User(u64),
    Bad,
}

fn auth_of(st: &State, authorization: Option<&str>) -> Auth {
    let Some(value) = authorization else {
        return Auth::Anonymous;
    };
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("token "))
        .map(str::trim);
    match token {
        Some(ORG_TOKEN) => Auth::Org,
        Some(t) => match st.user_tokens.get(t) {
            Some(id) => Auth::User(*id),
            None => Auth::Bad,
        },
        None => Auth::Bad,
    }
}

fn user_json(base: &str, id: u64, login: &str) -> Value {
    json!({
        "login": login,
        "id": id,
        "node_id": format!("U_fake{id}"),
        "avatar_url": format!("{base}/avatars/u/{id}"),
        "url": format!("{base}{API_PREFIX}/users/{login}"),
        "html_url": format!("{base}/{login}"),
        "type": "User",
        "site_admin": false,
        "name": null,
    })
}
