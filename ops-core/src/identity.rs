//! Who a Discord user is for sprocket-ops: the GitHub account linked to them (by `/link`, or the
//! static mapping in config), the teams it is an active member of, and the roles those grant.
//! One person is one GitHub account, by numeric id: two Discord accounts linked to the same
//! account are the same person for every rule.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

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

/// Identity resolution over the store's links, the static mapping and GitHub.
pub struct Identity {
    store: Arc<dyn Store>,
    cache: MembershipCache,
    perms: Arc<Permissions>,
    teams: Vec<TeamRef>,
    static_links: BTreeMap<u64, String>,
    /// Static links' logins -> GitHub user (numeric id), learned once.
    static_ids: Mutex<HashMap<String, GithubUser>>,
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
        }
    }

    pub fn permissions(&self) -> &Arc<Permissions> {
        &self.perms
    }

    pub fn github(&self) -> &MembershipCache {
        &self.cache
    }

    /// The GitHub account of a Discord user: a `/link` wins over the static mapping.
    pub async fn person(&self, discord_id: u64) -> Result<PersonRef, IdentityError> {
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
        let person = self.person(discord_id).await?;
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
