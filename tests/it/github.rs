//! ops-core's GitHub adapter ([`GithubClient`], [`MembershipCache`], [`run_device_flow`])
//! against the fake GitHub: membership states, renames, credentials, faults, the device flow
//! end to end, and the cache's fail-closed rules with a real client.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ops_core::github::{
    run_device_flow, DevicePoll, Freshness, GithubApi, GithubClient, GithubError, GithubUser,
    LinkError, Membership, MembershipCache, TeamRef,
};
use ops_core::secret::Secret;
use sprocket_ops_tests::fake_github::{Failure, FakeGithub};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn client(gh: &FakeGithub) -> GithubClient {
    GithubClient::new(&gh.github_config(), Some(Secret::new(gh.org_token()))).unwrap()
}

fn team(s: &str) -> TeamRef {
    s.parse().unwrap()
}

/// A sleep that records the requested duration and waits only a few milliseconds.
fn quick_sleep(
    log: Arc<Mutex<Vec<Duration>>>,
) -> impl Fn(Duration) -> tokio::time::Sleep + Send + Sync {
    move |d| {
        log.lock().unwrap().push(d);
        tokio::time::sleep(Duration::from_millis(5))
    }
}

/// A raw HTTP/1.1 GET, for what `GithubClient` never does (no User-Agent, no token).
async fn raw_get(gh: &FakeGithub, path: &str, extra_headers: &str) -> (u16, String) {
    let addr = gh
        .oauth_base_url()
        .trim_start_matches("http://")
        .to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra_headers}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, out)
}

#[tokio::test]
async fn only_active_membership_counts() {
    let gh = FakeGithub::start().await;
    gh.add_user("alice", 101);
    gh.add_user("bob", 102);
    gh.add_user("carol", 103);
    gh.set_membership("acme", "ops", "alice", "active");
    gh.set_membership("acme", "ops", "bob", "pending");
    let c = client(&gh);
    let ops = team("acme/ops");
    assert_eq!(
        c.team_membership(&ops, "alice").await.unwrap(),
        Membership::Active
    );
    assert_eq!(
        c.team_membership(&ops, "bob").await.unwrap(),
        Membership::Pending
    );
    assert_eq!(
        c.team_membership(&ops, "carol").await.unwrap(),
        Membership::None
    );
    assert_eq!(
        c.team_membership(&ops, "nobody").await.unwrap(),
        Membership::None
    );
    gh.remove_membership("acme", "ops", "alice");
    assert_eq!(
        c.team_membership(&ops, "alice").await.unwrap(),
        Membership::None
    );

    // The REST headers GitHub asks for.
    let reqs = gh.requests();
    let r = &reqs[0];
    assert_eq!(r.method, "GET");
    assert_eq!(r.path, "/api/v3/orgs/acme/teams/ops/memberships/alice");
    assert_eq!(
        r.authorization.as_deref(),
        Some(format!("Bearer {}", gh.org_token()).as_str())
    );
    assert!(r
        .user_agent
        .as_deref()
        .is_some_and(|ua| ua.starts_with("sprocket-ops/")));
    assert_eq!(r.accept.as_deref(), Some("application/vnd.github+json"));
    assert_eq!(r.api_version.as_deref(), Some("2022-11-28"));
}

#[tokio::test]
async fn renamed_login_keeps_the_numeric_id_and_memberships() {
    let gh = FakeGithub::start().await;
    gh.add_user("dave", 4242);
    gh.set_membership("acme", "ops", "dave", "active");
    let c = client(&gh);
    let before = c.user_by_login("dave").await.unwrap();
    assert_eq!(
        before,
        GithubUser {
            login: "dave".into(),
            id: 4242
        }
    );
    gh.rename_user("dave", "david");
    let after = c.user_by_login("david").await.unwrap();
    assert_eq!(after.id, before.id);
    assert_eq!(after.login, "david");
    assert_eq!(
        c.user_by_login("dave").await.unwrap_err(),
        GithubError::NotFound("dave".into())
    );
    assert_eq!(
        c.team_membership(&team("acme/ops"), "david").await.unwrap(),
        Membership::Active
    );
    assert_eq!(
        c.team_membership(&team("acme/ops"), "dave").await.unwrap(),
        Membership::None
    );
}

#[tokio::test]
async fn bad_or_missing_credentials() {
    let gh = FakeGithub::start().await;
    gh.add_user("alice", 101);
    gh.set_membership("acme", "ops", "alice", "active");
    let wrong = "ghs_wrongTokenValue123";
    let c = GithubClient::new(&gh.github_config(), Some(Secret::new(wrong))).unwrap();
    let e = c
        .team_membership(&team("acme/ops"), "alice")
        .await
        .unwrap_err();
    assert_eq!(e, GithubError::Unauthorized);
    assert!(!format!("{e} {e:?} {c:?}").contains(wrong));
    let e = c
        .user_by_token(&Secret::new("gho_notIssued"))
        .await
        .unwrap_err();
    assert_eq!(e, GithubError::Unauthorized);

    // No org token: refused before any request is made.
    let c = GithubClient::new(&gh.github_config(), None).unwrap();
    gh.clear_requests();
    let e = c
        .team_membership(&team("acme/ops"), "alice")
        .await
        .unwrap_err();
    assert!(matches!(e, GithubError::NotConfigured(_)), "{e}");
    assert!(gh.requests().is_empty());
    // Public profiles still work anonymously.
    assert_eq!(c.user_by_login("alice").await.unwrap().id, 101);

    // The fake itself behaves like GitHub for requests the client never sends.
    let (status, body) = raw_get(
        &gh,
        "/api/v3/orgs/acme/teams/ops/memberships/alice",
        "User-Agent: raw\r\n",
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("Requires authentication"));
    let (status, body) = raw_get(
        &gh,
        "/api/v3/users/alice",
        "User-Agent: raw\r\nAuthorization: Bearer nope\r\n",
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("Bad credentials"));
    let (status, body) = raw_get(&gh, "/api/v3/users/alice", "").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("User-Agent"));
    let (status, body) = raw_get(&gh, "/api/v3/users/alice", "User-Agent: raw\r\n").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("x-ratelimit-remaining"));
}

#[tokio::test]
async fn server_errors_and_hangs_are_unreachable() {
    let gh = FakeGithub::start().await;
    gh.add_user("alice", 101);
    let c = client(&gh).with_timeout(Duration::from_millis(300));
    gh.set_failure(Failure::ServerError);
    assert_eq!(
        c.team_membership(&team("acme/ops"), "alice")
            .await
            .unwrap_err(),
        GithubError::Unreachable("HTTP 502".into())
    );
    assert!(matches!(
        c.user_by_login("alice").await,
        Err(GithubError::Unreachable(_))
    ));
    assert!(matches!(
        c.start_device_flow().await,
        Err(GithubError::Unreachable(_))
    ));
    gh.set_failure(Failure::Hang(Duration::from_secs(3)));
    let started = Instant::now();
    assert_eq!(
        c.team_membership(&team("acme/ops"), "alice")
            .await
            .unwrap_err(),
        GithubError::Unreachable("timed out".into())
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    gh.set_failure(Failure::None);
    assert_eq!(
        c.team_membership(&team("acme/ops"), "alice").await.unwrap(),
        Membership::None
    );
}

#[tokio::test]
async fn rate_limited_is_never_not_a_member() {
    let gh = FakeGithub::start().await;
    gh.add_user("alice", 101);
    gh.set_membership("acme", "ops", "alice", "active");
    let c = client(&gh);
    gh.set_failure(Failure::RateLimited);
    let e = c
        .team_membership(&team("acme/ops"), "alice")
        .await
        .unwrap_err();
    let GithubError::RateLimited {
        reset_at: Some(reset),
    } = e
    else {
        panic!("expected RateLimited with a reset time, got {e:?}");
    };
    assert!(reset > chrono::Utc::now().timestamp());
    assert!(e.to_string().contains("rate limit"), "{e}");
    assert!(matches!(
        c.user_by_login("alice").await,
        Err(GithubError::RateLimited { .. })
    ));
}

#[tokio::test]
async fn device_flow_end_to_end() {
    let gh = FakeGithub::start().await;
    gh.add_user("alice", 1001);
    gh.set_membership("acme", "ops", "alice", "active");
    gh.set_device_interval(1);
    let c = Arc::new(client(&gh));
    assert!(c.device_flow_enabled());
    let code = c.start_device_flow().await.unwrap();
    assert_eq!(code.interval, 1);
    assert_eq!(code.expires_in, 900);
    assert_eq!(
        code.verification_uri,
        format!("{}/login/device", gh.oauth_base_url())
    );
    assert_eq!(gh.pending_user_codes(), vec![code.user_code.clone()]);
    let start = &gh.requests_to("/login/device/code")[0];
    assert_eq!(start.accept.as_deref(), Some("application/json"));
    assert_eq!(start.form["client_id"], gh.client_id());
    assert_eq!(start.form["scope"], "");

    // Polled by hand: pending, then slow_down with GitHub's new interval.
    assert_eq!(
        c.poll_device_flow(&code.device_code).await.unwrap(),
        DevicePoll::Pending
    );
    gh.slow_down_once();
    assert_eq!(
        c.poll_device_flow(&code.device_code).await.unwrap(),
        DevicePoll::SlowDown { interval: 6 }
    );
    let poll = &gh.requests_to("/login/oauth/access_token")[0];
    assert_eq!(
        poll.form["grant_type"],
        "urn:ietf:params:oauth:grant-type:device_code"
    );
    assert_eq!(poll.form["device_code"], code.device_code.expose());

    // The driver keeps polling (through a slow_down) until the user approves.
    let slept = Arc::new(Mutex::new(Vec::new()));
    let task = tokio::spawn({
        let (c, code, sleep) = (c.clone(), code.clone(), quick_sleep(slept.clone()));
        async move { run_device_flow(&*c, &code, sleep).await }
    });
    let polls = || gh.requests_to("/login/oauth/access_token").len();
    let deadline = Instant::now() + Duration::from_secs(10);
    while polls() < 3 {
        assert!(Instant::now() < deadline, "the driver does not poll");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    gh.slow_down_once();
    while polls() < 5 {
        assert!(Instant::now() < deadline, "the driver stopped polling");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    gh.approve_device(&code.user_code, "alice");
    let user = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the driver finishes")
        .unwrap()
        .unwrap();
    assert_eq!(
        user,
        GithubUser {
            login: "alice".into(),
            id: 1001
        }
    );
    let slept = slept.lock().unwrap().clone();
    assert_eq!(slept[0], Duration::from_secs(1));
    assert!(
        slept.iter().any(|d| *d >= Duration::from_secs(6)),
        "slow_down honoured: {slept:?}"
    );

    // The token was used once, for /user, and leaks nowhere.
    let tokens = gh.user_tokens();
    assert_eq!(tokens.len(), 1);
    let token = &tokens[0];
    let user_reqs = gh.requests_to("/api/v3/user");
    assert_eq!(user_reqs.len(), 1);
    assert_eq!(
        user_reqs[0].authorization.as_deref(),
        Some(format!("Bearer {token}").as_str())
    );
    let reused = c.poll_device_flow(&code.device_code).await.unwrap_err();
    let authorized = DevicePoll::Authorized(Secret::new(token.clone()));
    let shown = format!("{user:?} {code:?} {reused} {reused:?} {authorized:?} {c:?}");
    assert!(!shown.contains(token.as_str()), "{shown}");
    assert!(!shown.contains(code.device_code.expose()), "{shown}");
    assert!(gh.pending_user_codes().is_empty());
}

#[tokio::test]
async fn device_flow_denied_or_expired() {
    let gh = FakeGithub::start().await;
    gh.add_user("mallory", 666);
    gh.set_device_interval(0);
    let c = client(&gh);

    let code = c.start_device_flow().await.unwrap();
    gh.deny_device(&code.user_code);
    let log = Arc::new(Mutex::new(Vec::new()));
    let e = run_device_flow(&c, &code, quick_sleep(log.clone()))
        .await
        .unwrap_err();
    assert_eq!(e, LinkError::Denied);
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains(code.device_code.expose()), "{shown}");
    assert!(e.to_string().contains("denied"));

    let code = c.start_device_flow().await.unwrap();
    gh.expire_device(&code.user_code);
    let e = run_device_flow(&c, &code, quick_sleep(log.clone()))
        .await
        .unwrap_err();
    assert_eq!(e, LinkError::Expired);
    assert!(gh.user_tokens().is_empty());
    assert!(gh.requests_to("/api/v3/user").is_empty());

    // An unknown client id is a configuration problem, not a user error.
    let mut cfg = gh.github_config();
    cfg.client_id = Some("Iv1.unknown".into());
    let other = GithubClient::new(&cfg, None).unwrap();
    assert!(matches!(
        other.start_device_flow().await,
        Err(GithubError::NotConfigured(_))
    ));
    cfg.client_id = None;
    let none = GithubClient::new(&cfg, None).unwrap();
    assert!(!none.device_flow_enabled());
    assert!(matches!(
        none.start_device_flow().await,
        Err(GithubError::NotConfigured(_))
    ));
}

#[tokio::test]
async fn cache_with_the_real_client_fails_closed_or_serves_stale() {
    let gh = FakeGithub::start().await;
    gh.add_user("alice", 101);
    gh.set_membership("acme", "ops", "alice", "active");
    gh.set_membership("acme", "admins", "alice", "pending");
    let api: Arc<dyn GithubApi> = Arc::new(client(&gh));
    let now = Arc::new(AtomicI64::new(1_700_000_000_000));
    let clock = now.clone();
    let cache = MembershipCache::new(api, 60, 600)
        .with_clock(Arc::new(move || clock.load(Ordering::SeqCst)));
    let teams = [team("acme/ops"), team("acme/admins"), team("acme/viewers")];

    let a = cache
        .teams_of(101, "alice", &teams, Freshness::MustBeFresh)
        .await
        .unwrap();
    assert_eq!(a.active.iter().collect::<Vec<_>>(), ["acme/ops"]);
    assert!(!a.stale);
    assert_eq!(gh.requests().len(), 3, "one call per team");

    // Within the ttl: no call, even while GitHub is down.
    gh.set_failure(Failure::ServerError);
    now.fetch_add(30_000, Ordering::SeqCst);
    let b = cache
        .teams_of(101, "alice", &teams, Freshness::MustBeFresh)
        .await
        .unwrap();
    assert_eq!(b, a);
    assert_eq!(gh.requests().len(), 3);

    // Past the ttl, GitHub failing: destructive checks are refused, read-only ones served stale.
    now.fetch_add(60_000, Ordering::SeqCst);
    let e = cache
        .teams_of(101, "alice", &teams, Freshness::MustBeFresh)
        .await
        .unwrap_err();
    assert!(matches!(e, GithubError::Unreachable(_)), "{e}");
    let s = cache
        .teams_of(101, "alice", &teams, Freshness::MayBeStale)
        .await
        .unwrap();
    assert!(s.stale);
    assert_eq!(s.active, a.active);
    assert_eq!(s.checked_at_ms, a.checked_at_ms);

    gh.set_failure(Failure::RateLimited);
    let e = cache
        .teams_of(101, "alice", &teams, Freshness::MustBeFresh)
        .await
        .unwrap_err();
    assert!(matches!(e, GithubError::RateLimited { .. }), "{e}");

    // Beyond max_stale: refused too.
    now.fetch_add(600_000, Ordering::SeqCst);
    assert!(cache
        .teams_of(101, "alice", &teams, Freshness::MayBeStale)
        .await
        .is_err());

    // GitHub back: a fresh answer, and membership changes are seen.
    gh.set_failure(Failure::None);
    gh.set_membership("acme", "admins", "alice", "active");
    let f = cache
        .teams_of(101, "alice", &teams, Freshness::MustBeFresh)
        .await
        .unwrap();
    assert!(!f.stale);
    assert_eq!(
        f.active.iter().collect::<Vec<_>>(),
        ["acme/admins", "acme/ops"]
    );
}

/// The fake hands a freed login to another account; `GET /user/{id}` names each account's
/// current login, which is how the bot notices that a linked login changed hands.
#[tokio::test]
async fn user_by_id_follows_renames_and_a_freed_login_can_be_claimed() {
    let gh = FakeGithub::start().await;
    gh.add_user("erin", 5151);
    gh.set_membership("acme", "ops", "erin", "active");
    let c = client(&gh);
    assert_eq!(c.user_by_id(5151).await.unwrap().login, "erin");
    gh.rename_user("erin", "erin-old");
    gh.add_user("erin", 6262);
    assert_eq!(c.user_by_id(5151).await.unwrap().login, "erin-old");
    assert_eq!(c.user_by_login("erin").await.unwrap().id, 6262);
    // Roles follow the account: the new owner of the login is not a member.
    assert_eq!(
        c.team_membership(&team("acme/ops"), "erin").await.unwrap(),
        Membership::None
    );
    assert_eq!(
        c.user_by_id(999_999).await.unwrap_err(),
        GithubError::NotFound("#999999".into())
    );
    let paths: Vec<String> = gh
        .requests_to("/api/v3/user/")
        .into_iter()
        .map(|r| r.path)
        .collect();
    assert_eq!(paths[0], "/api/v3/user/5151");
}
