//! Unit tests of the GitHub adapter, the membership cache and the device-flow driver, against
//! a scripted [`GithubApi`] that panics on any call a test did not set up.

use super::*;
use std::collections::VecDeque;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

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
async fn drive(api: &ScriptedApi, code: &DeviceCode) -> (Result<GithubUser, LinkError>, Vec<u64>) {
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
