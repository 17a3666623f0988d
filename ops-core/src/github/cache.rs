//! The team-membership cache: answers per (account id, team) with the time they were obtained,
//! and the freshness rules for using them ([`Freshness`]). Keyed by the numeric account id, never
//! by the login, and an answer serves only the login it was asked by.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use super::{GithubApi, GithubError, TeamRef};
use crate::base::{SharedClock, SystemClock};
use crate::config::GithubConfig;

/// Above this many cached accounts, entries older than `max_stale` are pruned.
const CACHE_PRUNE_THRESHOLD: usize = 1024;

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
    clock: SharedClock,
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
            clock: SystemClock::shared(),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// A cache configured from `[github]`.
    pub fn from_config(api: Arc<dyn GithubApi>, cfg: &GithubConfig) -> MembershipCache {
        MembershipCache::new(api, cfg.membership_ttl_secs, cfg.membership_max_stale_secs)
    }

    /// Replaces the clock (ms since the epoch), for tests.
    pub fn with_clock(mut self, clock: SharedClock) -> MembershipCache {
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
        let now = self.clock.now_ms();
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
