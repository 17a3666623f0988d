//! Who a Discord user is for sprocket-ops: the GitHub account linked to them (by `/link`, or the
//! static mapping in config), the teams it is an active member of, and the roles those grant.
//! One person is one GitHub account, by numeric id: two Discord accounts linked to the same
//! account are the same person for every rule.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::approvals::PersonRef;
use crate::github::{Freshness, GithubError, GithubUser, MembershipCache, TeamRef};
use crate::permissions::Permissions;
use crate::store::{Link, Store, StoreError};

/// A resolved person with their roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub person: PersonRef,
    /// Active team memberships, `org/team`.
    pub teams: BTreeSet<String>,
    pub roles: BTreeSet<String>,
    /// The answer came from the cache past its ttl (GitHub unreachable; read-only use only).
    pub stale: bool,
}

/// Why a person could not be resolved; messages are safe to show.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IdentityError {
    #[error("your Discord account is not linked to a GitHub account: run /link first")]
    NotLinked,
    #[error("GitHub cannot be checked right now ({0}), so this is refused")]
    Github(GithubError),
    #[error("the sprocket-ops database is unavailable, so this is refused")]
    Store,
}

impl From<StoreError> for IdentityError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "identity store error");
        IdentityError::Store
    }
}

/// How long a resolved link is reused by read-only commands ([`Freshness::MayBeStale`]). Links
/// are written only through [`Identity::link`], which updates the cache, so the ttl only bounds
/// how long a row edited behind the bot's back (by hand, on the same database) goes unseen.
/// Change and destructive commands and approvals always read the store: an approval request
/// records its requester, whom the rule "never the requester" is checked against.
pub const LINK_CACHE_TTL: Duration = Duration::from_secs(60);

/// Above this many cached links, expired ones are pruned.
const LINK_CACHE_PRUNE_AT: usize = 1024;

/// Identity resolution over the store's links, the static mapping and GitHub.
pub struct Identity {
    store: Arc<dyn Store>,
    cache: MembershipCache,
    perms: Arc<Permissions>,
    teams: Vec<TeamRef>,
    static_links: BTreeMap<u64, String>,
    /// Static links' logins -> GitHub user (numeric id), learned once.
    static_ids: Mutex<HashMap<String, GithubUser>>,
    /// Discord user id -> person, as last read from the store (or the static mapping). Keeps
    /// the store off the acknowledgement path of every interaction: under load its pool is busy
    /// with audit writes, and an interaction must be acknowledged within Discord's deadline.
    links: Mutex<HashMap<u64, (PersonRef, Instant)>>,
    /// Counts [`Identity::link`] calls: a store read that a link overtook is not cached.
    link_writes: AtomicU64,
}

impl Identity {
    /// `static_links`: Discord user id -> GitHub login, from `[github.static_links]`.
    pub fn new(
        store: Arc<dyn Store>,
        cache: MembershipCache,
        perms: Arc<Permissions>,
        static_links: &BTreeMap<String, String>,
    ) -> Identity {
        let teams = perms
            .all_teams()
            .iter()
            .filter_map(|t| t.parse::<TeamRef>().ok())
            .collect();
        Identity {
            store,
            cache,
            perms,
            teams,
            static_links: static_links
                .iter()
                .filter_map(|(k, v)| Some((k.parse().ok()?, v.clone())))
                .collect(),
            static_ids: Mutex::new(HashMap::new()),
            links: Mutex::new(HashMap::new()),
            link_writes: AtomicU64::new(0),
        }
    }

    pub fn permissions(&self) -> &Arc<Permissions> {
        &self.perms
    }

    pub fn github(&self) -> &MembershipCache {
        &self.cache
    }

    /// The GitHub account of a Discord user: a `/link` wins over the static mapping. Always
    /// reads the store (and refreshes the cache [`Identity::resolve`] uses).
    pub async fn person(&self, discord_id: u64) -> Result<PersonRef, IdentityError> {
        let writes = self.link_writes.load(Ordering::SeqCst);
        let person = self.person_uncached(discord_id).await?;
        // A /link that landed while the store was read may have been overtaken by this read:
        // caching it could put the old account back over the new one.
        if self.link_writes.load(Ordering::SeqCst) == writes {
            self.remember(&person);
        }
        Ok(person)
    }

    /// [`Identity::person`], answered from the cache for [`Freshness::MayBeStale`] when the entry
    /// is younger than [`LINK_CACHE_TTL`]; any other freshness reads the store.
    async fn person_for(
        &self,
        discord_id: u64,
        freshness: Freshness,
    ) -> Result<PersonRef, IdentityError> {
        if freshness == Freshness::MayBeStale {
            let links = self.links.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((p, at)) = links.get(&discord_id) {
                if at.elapsed() < LINK_CACHE_TTL {
                    return Ok(p.clone());
                }
            }
        }
        self.person(discord_id).await
    }

    fn remember(&self, person: &PersonRef) {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        if links.len() >= LINK_CACHE_PRUNE_AT {
            links.retain(|_, (_, at)| at.elapsed() < LINK_CACHE_TTL);
        }
        links.insert(person.discord_id, (person.clone(), Instant::now()));
    }

    async fn person_uncached(&self, discord_id: u64) -> Result<PersonRef, IdentityError> {
        if let Some(l) = self.store.get_link(discord_id).await? {
            return Ok(PersonRef {
                github_id: l.github_id,
                login: l.github_login,
                discord_id,
            });
        }
        let login = self
            .static_links
            .get(&discord_id)
            .ok_or(IdentityError::NotLinked)?;
        let user = self.static_user(login).await?;
        Ok(PersonRef {
            github_id: user.id,
            login: user.login,
            discord_id,
        })
    }

    async fn static_user(&self, login: &str) -> Result<GithubUser, IdentityError> {
        let key = login.to_ascii_lowercase();
        if let Some(u) = self
            .static_ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(u.clone());
        }
        let user = self
            .cache
            .api()
            .user_by_login(login)
            .await
            .map_err(IdentityError::Github)?;
        self.static_ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, user.clone());
        Ok(user)
    }

    /// The person behind a Discord user and their roles. `MustBeFresh` for destructive actions
    /// and approvals (GitHub down: refused), `MayBeStale` for read-only commands.
    pub async fn resolve(
        &self,
        discord_id: u64,
        freshness: Freshness,
    ) -> Result<Principal, IdentityError> {
        let person = self.person_for(discord_id, freshness).await?;
        let answer = self
            .cache
            .teams_of(&person.login, &self.teams, freshness)
            .await
            .map_err(IdentityError::Github)?;
        let roles = self.perms.roles_for(&answer.active);
        Ok(Principal {
            person,
            teams: answer.active,
            roles,
            stale: answer.stale,
        })
    }

    /// Records a `/link` result.
    pub async fn link(&self, discord_id: u64, user: &GithubUser) -> Result<(), IdentityError> {
        self.store
            .upsert_link(&Link {
                discord_id,
                github_id: user.id,
                github_login: user.login.clone(),
                linked_at_ms: crate::ops::now_ms(),
            })
            .await?;
        self.cache.invalidate(&user.login);
        self.link_writes.fetch_add(1, Ordering::SeqCst);
        self.remember(&PersonRef {
            github_id: user.id,
            login: user.login.clone(),
            discord_id,
        });
        Ok(())
    }

    /// How many distinct people other than `exclude_github_id` could approve `action` now: linked
    /// people (either way of linking) holding one of the rule's approver roles. People GitHub
    /// cannot answer for are not counted.
    pub async fn eligible_approvers(
        &self,
        action: &str,
        exclude_github_id: u64,
    ) -> Result<usize, IdentityError> {
        let mut discord_ids: BTreeSet<u64> = self.static_links.keys().copied().collect();
        discord_ids.extend(self.store.list_links().await?.iter().map(|l| l.discord_id));
        let mut counted = BTreeSet::new();
        for d in discord_ids {
            let Ok(p) = self.resolve(d, Freshness::MayBeStale).await else {
                continue;
            };
            if p.person.github_id != exclude_github_id && self.perms.may_approve(&p.roles, action) {
                counted.insert(p.person.github_id);
            }
        }
        Ok(counted.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::{DeviceCode, DevicePoll, GithubApi, Membership};
    use crate::secret::Secret;
    use crate::store::Backend;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Every team answers "active"; anything but a membership check is a bug in the test.
    #[derive(Default)]
    struct MemberOfAll(AtomicUsize);

    #[async_trait]
    impl GithubApi for MemberOfAll {
        async fn team_membership(&self, _: &TeamRef, _: &str) -> Result<Membership, GithubError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(Membership::Active)
        }
        async fn user_by_login(&self, login: &str) -> Result<GithubUser, GithubError> {
            panic!("unexpected user_by_login({login})")
        }
        async fn user_by_token(&self, _: &Secret) -> Result<GithubUser, GithubError> {
            panic!("unexpected user_by_token")
        }
        async fn start_device_flow(&self) -> Result<DeviceCode, GithubError> {
            panic!("unexpected start_device_flow")
        }
        async fn poll_device_flow(&self, _: &Secret) -> Result<DevicePoll, GithubError> {
            panic!("unexpected poll_device_flow")
        }
    }

    /// An identity over a fresh SQLite file; the backend is returned so a test can close it.
    async fn identity(dir: &tempfile::TempDir) -> (Identity, Backend) {
        let url = format!("sqlite://{}", dir.path().join("id.db").display());
        let backend = crate::store::open(&url, None).await.unwrap();
        let perms =
            Permissions::parse("permissions.toml", include_str!("../../permissions.toml")).unwrap();
        let cache = MembershipCache::new(Arc::new(MemberOfAll::default()), 300, 3600);
        let identity = Identity::new(backend.store(), cache, Arc::new(perms), &BTreeMap::new());
        (identity, backend)
    }

    fn octo(id: u64) -> GithubUser {
        GithubUser {
            id,
            login: format!("octo{id}"),
        }
    }

    async fn close(backend: &Backend) {
        match backend {
            Backend::Sqlite(s) => s.pool().close().await,
            Backend::Postgres(p) => p.pool().close().await,
        }
    }

    #[tokio::test]
    async fn reads_keep_resolving_from_the_link_cache_when_the_store_is_down() {
        let dir = tempfile::tempdir().unwrap();
        let (id, backend) = identity(&dir).await;
        id.link(42, &octo(7)).await.unwrap();
        close(&backend).await;
        let p = id.resolve(42, Freshness::MayBeStale).await.unwrap();
        assert_eq!((p.person.github_id, p.person.login.as_str()), (7, "octo7"));
    }

    /// Change commands record their requester in approval requests, and the requester may
    /// never approve: only a store read says who that is.
    #[tokio::test]
    async fn change_and_destructive_resolution_read_the_store_and_fail_closed_without_it() {
        let dir = tempfile::tempdir().unwrap();
        let (id, backend) = identity(&dir).await;
        id.link(42, &octo(7)).await.unwrap();
        id.resolve(42, Freshness::MayBeStale).await.unwrap();
        close(&backend).await;
        for freshness in [Freshness::MustBeFresh, Freshness::Live] {
            let e = id.resolve(42, freshness).await.unwrap_err();
            assert!(matches!(e, IdentityError::Store), "{freshness:?}: {e:?}");
        }
    }

    #[tokio::test]
    async fn relinking_takes_effect_at_once_for_cached_reads() {
        let dir = tempfile::tempdir().unwrap();
        let (id, _backend) = identity(&dir).await;
        id.link(42, &octo(7)).await.unwrap();
        assert_eq!(
            id.resolve(42, Freshness::MayBeStale)
                .await
                .unwrap()
                .person
                .github_id,
            7
        );
        id.link(42, &octo(8)).await.unwrap();
        let p = id.resolve(42, Freshness::MayBeStale).await.unwrap();
        assert_eq!((p.person.github_id, p.person.login.as_str()), (8, "octo8"));
    }

    #[tokio::test]
    async fn an_unlinked_user_is_not_remembered_as_anyone() {
        let dir = tempfile::tempdir().unwrap();
        let (id, _backend) = identity(&dir).await;
        let e = id.resolve(42, Freshness::MayBeStale).await.unwrap_err();
        assert!(matches!(e, IdentityError::NotLinked), "{e:?}");
        id.link(42, &octo(7)).await.unwrap();
        assert_eq!(
            id.resolve(42, Freshness::MayBeStale)
                .await
                .unwrap()
                .person
                .github_id,
            7
        );
    }
}
