//! Who a Discord user is for sprocket-ops: the GitHub account linked to them (by `/link`, or the
//! static mapping in config), the teams it is an active member of, and the roles those grant.
//! One person is one GitHub account, by numeric id: two Discord accounts linked to the same
//! account are the same person for every rule.
//!
//! Logins can be renamed on GitHub and a freed login claimed by another account, while roles
//! are read by login (GitHub's membership API is by login). So every check that is not
//! read-only ([`Freshness::MustBeFresh`], [`Freshness::Live`]) first reads the current login of
//! the linked numeric id (`GET /user/{id}`) and refuses, asking for `/link` again, if it is not
//! the linked one. Every cache is keyed by id: links by Discord id, memberships by GitHub id.
//!
//! Refusals (not linked, login changed, account gone, roles that do not allow what was asked)
//! are remembered for [`NEGATIVE_CACHE_TTL`] per Discord id, so a stream of refused commands or
//! clicks costs no GitHub calls; `/link` forgets them at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::approvals::PersonRef;
use crate::base::StoreError;
use crate::github::{Freshness, GithubError, GithubUser, MembershipCache, TeamRef};
use crate::permissions::Permissions;

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
    #[error("your linked GitHub account (id {id}) is now called `{current}`, not `{stored}`: logins can change hands, so this is refused until you run /link again")]
    LoginChanged {
        id: u64,
        stored: String,
        current: String,
    },
    #[error("your linked GitHub account (id {0}) no longer exists: run /link again")]
    AccountGone(u64),
    #[error("GitHub cannot be checked right now ({0}), so this is refused")]
    Github(GithubError),
    #[error("the sprocket-ops database is unavailable, so this is refused")]
    Store,
}

/// The identity error for a failed store call. The store's error is not shown, so it is
/// logged here, where its detail is dropped; a named function, not a `From`, so no `?` logs
/// behind the reader's back.
fn store_unavailable(e: StoreError) -> IdentityError {
    tracing::error!(error = %e, "identity store error");
    IdentityError::Store
}

/// How long a resolved link is reused by read-only commands ([`Freshness::MayBeStale`]). Links
/// are written only through [`Identity::link`], which updates the cache, so the ttl only bounds
/// how long a row edited behind the bot's back (by hand, on the same database) goes unseen.
/// Change and destructive commands and approvals always read the store: an approval request
/// records its requester, whom the rule "never the requester" is checked against.
pub const LINK_CACHE_TTL: Duration = Duration::from_secs(60);

/// Above this many cached links, expired ones are pruned.
const LINK_CACHE_PRUNE_AT: usize = 1024;

/// How long a refusal is remembered per Discord id ([`Identity::resolve_for`]): not linked,
/// login changed, account gone, or roles that do not allow what was asked. A role granted on
/// GitHub takes effect for that person after at most this long; `/link` clears it at once.
pub const NEGATIVE_CACHE_TTL: Duration = Duration::from_secs(30);

/// A remembered refusal.
#[derive(Debug, Clone)]
enum Negative {
    /// Who could not be resolved, and why.
    Error(IdentityError),
    /// Resolved, with roles that did not allow what was asked.
    Refused(Principal),
}

/// A Discord user's GitHub account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub discord_id: u64,
    pub github_id: u64,
    pub github_login: String,
    pub linked_at_ms: i64,
}

/// Where the Discord -> GitHub links live (implemented by `store`).
#[async_trait::async_trait]
pub trait LinkStore: Send + Sync {
    /// Links a Discord user to a GitHub account (replacing an earlier link of that user).
    async fn upsert_link(&self, link: &Link) -> Result<(), StoreError>;
    async fn get_link(&self, discord_id: u64) -> Result<Option<Link>, StoreError>;
    async fn list_links(&self) -> Result<Vec<Link>, StoreError>;
}

/// Identity resolution over the store's links, the static mapping and GitHub.
pub struct Identity {
    store: Arc<dyn LinkStore>,
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
    /// Discord user id -> a recent refusal ([`NEGATIVE_CACHE_TTL`]).
    refused: Mutex<HashMap<u64, (Negative, Instant)>>,
}

impl Identity {
    /// `static_links`: Discord user id -> GitHub login, from `[github.static_links]`.
    pub fn new(
        store: Arc<dyn LinkStore>,
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
            refused: Mutex::new(HashMap::new()),
        }
    }

    /// Resolves every `static_links` login to its numeric id now (at start-up), so a login
    /// renamed and claimed later is not bound to the new owner; each link is re-checked like a
    /// `/link` at every live check. Returns each login with its id or why it failed (GitHub
    /// unreachable: resolved at first use instead).
    pub async fn resolve_static_links(&self) -> Vec<(String, Result<u64, IdentityError>)> {
        let logins: BTreeSet<String> = self.static_links.values().cloned().collect();
        futures::future::join_all(logins.into_iter().map(|login| async move {
            let r = self.static_user(&login).await.map(|u| u.id);
            (login, r)
        }))
        .await
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
        if let Some(l) = self
            .store
            .get_link(discord_id)
            .await
            .map_err(store_unavailable)?
        {
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

    /// The person behind a Discord user and their roles. `MustBeFresh` and `Live` for changes,
    /// destructive actions and approvals (GitHub down: refused; the linked login must still be
    /// the account's login), `MayBeStale` for read-only commands.
    pub async fn resolve(
        &self,
        discord_id: u64,
        freshness: Freshness,
    ) -> Result<Principal, IdentityError> {
        let person = self.person_for(discord_id, freshness).await?;
        if freshness != Freshness::MayBeStale {
            self.check_login(&person).await?;
        }
        let answer = self
            .cache
            .teams_of(person.github_id, &person.login, &self.teams, freshness)
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

    /// [`Identity::resolve`] behind the negative cache: a refusal remembered for this Discord id
    /// (younger than [`NEGATIVE_CACHE_TTL`]) is answered again without the store or GitHub:
    /// the same error, or the same principal when its roles still do not satisfy `allows`
    /// (the caller then refuses it as before). A new refusal is remembered. GitHub and store
    /// failures are not remembered.
    pub async fn resolve_for(
        &self,
        discord_id: u64,
        freshness: Freshness,
        allows: &(dyn Fn(&BTreeSet<String>) -> bool + Sync),
    ) -> Result<Principal, IdentityError> {
        if let Some(neg) = self.recent_refusal(discord_id) {
            match neg {
                Negative::Error(e) => return Err(e),
                Negative::Refused(p) if !allows(&p.roles) => return Ok(p),
                Negative::Refused(_) => {}
            }
        }
        let writes = self.link_writes.load(Ordering::SeqCst);
        let result = self.resolve(discord_id, freshness).await;
        let negative = match &result {
            Err(
                e @ (IdentityError::NotLinked
                | IdentityError::LoginChanged { .. }
                | IdentityError::AccountGone(_)),
            ) => Some(Negative::Error(e.clone())),
            Ok(p) if !allows(&p.roles) => Some(Negative::Refused(p.clone())),
            _ => None,
        };
        // A /link during the check may have made this refusal obsolete.
        if let Some(neg) = negative {
            if self.link_writes.load(Ordering::SeqCst) == writes {
                let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
                if refused.len() >= LINK_CACHE_PRUNE_AT {
                    refused.retain(|_, (_, at)| at.elapsed() < NEGATIVE_CACHE_TTL);
                }
                refused.insert(discord_id, (neg, Instant::now()));
            }
        }
        result
    }

    fn recent_refusal(&self, discord_id: u64) -> Option<Negative> {
        let refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        refused
            .get(&discord_id)
            .filter(|(_, at)| at.elapsed() < NEGATIVE_CACHE_TTL)
            .map(|(n, _)| n.clone())
    }

    /// The linked login must still be the login of the linked account: asked of GitHub now
    /// (fails closed when GitHub cannot answer).
    async fn check_login(&self, person: &PersonRef) -> Result<(), IdentityError> {
        match self.cache.api().user_by_id(person.github_id).await {
            Ok(u) if u.login.eq_ignore_ascii_case(&person.login) => Ok(()),
            Ok(u) => {
                tracing::warn!(
                    github_id = person.github_id,
                    stored = %person.login,
                    current = %u.login,
                    discord_id = person.discord_id,
                    "the linked GitHub login changed: refused until /link again"
                );
                Err(IdentityError::LoginChanged {
                    id: person.github_id,
                    stored: person.login.clone(),
                    current: u.login,
                })
            }
            Err(GithubError::NotFound(_)) => Err(IdentityError::AccountGone(person.github_id)),
            Err(e) => Err(IdentityError::Github(e)),
        }
    }

    /// Records a `/link` result.
    pub async fn link(&self, discord_id: u64, user: &GithubUser) -> Result<(), IdentityError> {
        self.store
            .upsert_link(&Link {
                discord_id,
                github_id: user.id,
                github_login: user.login.clone(),
                linked_at_ms: crate::base::now_ms(),
            })
            .await
            .map_err(store_unavailable)?;
        self.cache.invalidate(user.id);
        self.link_writes.fetch_add(1, Ordering::SeqCst);
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&discord_id);
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
        discord_ids.extend(
            self.store
                .list_links()
                .await
                .map_err(store_unavailable)?
                .iter()
                .map(|l| l.discord_id),
        );
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
        async fn user_by_id(&self, id: u64) -> Result<GithubUser, GithubError> {
            // The test accounts are never renamed: `octo{id}`.
            Ok(GithubUser {
                id,
                login: format!("octo{id}"),
            })
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

    /// A GitHub whose accounts are `octo{id}` unless renamed; counts calls.
    #[derive(Default)]
    struct Accounts {
        memberships: AtomicUsize,
        user_calls: AtomicUsize,
        renamed: Mutex<HashMap<u64, String>>,
        down: std::sync::atomic::AtomicBool,
    }

    impl Accounts {
        fn login_of(&self, id: u64) -> String {
            self.renamed
                .lock()
                .unwrap()
                .get(&id)
                .cloned()
                .unwrap_or_else(|| format!("octo{id}"))
        }
        fn rename(&self, id: u64, login: &str) {
            self.renamed.lock().unwrap().insert(id, login.to_string());
        }
    }

    #[async_trait]
    impl GithubApi for Accounts {
        async fn team_membership(&self, _: &TeamRef, _: &str) -> Result<Membership, GithubError> {
            self.memberships.fetch_add(1, Ordering::SeqCst);
            Ok(Membership::None)
        }
        async fn user_by_login(&self, login: &str) -> Result<GithubUser, GithubError> {
            let id = login
                .strip_prefix("octo")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unexpected user_by_login({login})"));
            Ok(GithubUser {
                id,
                login: login.to_string(),
            })
        }
        async fn user_by_id(&self, id: u64) -> Result<GithubUser, GithubError> {
            self.user_calls.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(GithubError::Unreachable("HTTP 502".into()));
            }
            Ok(GithubUser {
                id,
                login: self.login_of(id),
            })
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

    async fn identity_over(
        dir: &tempfile::TempDir,
        api: Arc<Accounts>,
        static_links: &[(&str, &str)],
    ) -> (Identity, Backend) {
        let url = format!("sqlite://{}", dir.path().join("id.db").display());
        let backend = crate::store::open(&url, None).await.unwrap();
        let perms =
            Permissions::parse("permissions.toml", include_str!("../../permissions.toml")).unwrap();
        let cache = MembershipCache::new(api, 300, 3600);
        let links: BTreeMap<String, String> = static_links
            .iter()
            .map(|(d, l)| (d.to_string(), l.to_string()))
            .collect();
        let identity = Identity::new(backend.store(), cache, Arc::new(perms), &links);
        (identity, backend)
    }

    #[tokio::test]
    async fn a_renamed_login_is_refused_at_every_live_check_until_linked_again() {
        let dir = tempfile::tempdir().unwrap();
        let api = Arc::new(Accounts::default());
        let (id, _backend) = identity_over(&dir, api.clone(), &[]).await;
        id.link(42, &octo(7)).await.unwrap();
        id.resolve(42, Freshness::Live).await.unwrap();
        api.rename(7, "octo7-renamed");
        for freshness in [Freshness::MustBeFresh, Freshness::Live] {
            let e = id.resolve(42, freshness).await.unwrap_err();
            assert!(
                matches!(&e, IdentityError::LoginChanged { id: 7, stored, current }
                    if stored == "octo7" && current == "octo7-renamed"),
                "{freshness:?}: {e:?}"
            );
            assert!(e.to_string().contains("/link again"), "{e}");
        }
        // Read-only commands do not ask.
        let calls = api.user_calls.load(Ordering::SeqCst);
        id.resolve(42, Freshness::MayBeStale).await.unwrap();
        assert_eq!(api.user_calls.load(Ordering::SeqCst), calls);
        id.link(
            42,
            &GithubUser {
                id: 7,
                login: "octo7-renamed".into(),
            },
        )
        .await
        .unwrap();
        id.resolve(42, Freshness::Live).await.unwrap();
    }

    #[tokio::test]
    async fn the_login_check_fails_closed_when_github_cannot_answer() {
        let dir = tempfile::tempdir().unwrap();
        let api = Arc::new(Accounts::default());
        let (id, _backend) = identity_over(&dir, api.clone(), &[]).await;
        id.link(42, &octo(7)).await.unwrap();
        api.down.store(true, Ordering::SeqCst);
        let e = id.resolve(42, Freshness::Live).await.unwrap_err();
        assert!(matches!(e, IdentityError::Github(_)), "{e:?}");
        // A failure is not remembered as a refusal.
        api.down.store(false, Ordering::SeqCst);
        id.resolve_for(42, Freshness::Live, &|_| true)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn refusals_are_remembered_briefly_and_a_link_forgets_them() {
        let dir = tempfile::tempdir().unwrap();
        let api = Arc::new(Accounts::default());
        let (id, _backend) = identity_over(&dir, api.clone(), &[]).await;
        let e = id
            .resolve_for(42, Freshness::Live, &|_| true)
            .await
            .unwrap_err();
        assert!(matches!(e, IdentityError::NotLinked), "{e:?}");
        id.link(42, &octo(7)).await.unwrap();
        let needs_admin = |r: &BTreeSet<String>| r.contains("admin");
        for _ in 0..50 {
            let p = id
                .resolve_for(42, Freshness::Live, &needs_admin)
                .await
                .unwrap();
            assert!(!p.roles.contains("admin"));
        }
        let teams = id.teams.len();
        assert_eq!(api.user_calls.load(Ordering::SeqCst), 1);
        assert_eq!(api.memberships.load(Ordering::SeqCst), teams);
        // Something the remembered roles would allow is checked again.
        id.resolve_for(42, Freshness::Live, &|r: &BTreeSet<String>| {
            r.contains("everyone")
        })
        .await
        .unwrap();
        assert_eq!(api.user_calls.load(Ordering::SeqCst), 2);
        // A relink forgets the refusal at once.
        id.link(42, &octo(8)).await.unwrap();
        id.resolve_for(42, Freshness::Live, &needs_admin)
            .await
            .unwrap();
        assert_eq!(api.user_calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn static_links_are_bound_to_ids_at_start_up_and_rechecked_live() {
        let dir = tempfile::tempdir().unwrap();
        let api = Arc::new(Accounts::default());
        let (id, _backend) = identity_over(&dir, api.clone(), &[("42", "octo7")]).await;
        let resolved = id.resolve_static_links().await;
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].0, "octo7");
        assert_eq!(resolved[0].1.as_ref().unwrap(), &7);
        id.resolve(42, Freshness::Live).await.unwrap();
        api.rename(7, "someone-else");
        let e = id.resolve(42, Freshness::Live).await.unwrap_err();
        assert!(matches!(e, IdentityError::LoginChanged { .. }), "{e:?}");
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
