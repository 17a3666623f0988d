//! The unseal ceremony: key holders give their shares one by one (through Discord modals in the
//! bot) until Vault reaches its threshold. A pure-ish state machine over [`VaultApi`]:
//!
//! - one share per person (by GitHub id) per unseal attempt; a duplicate is refused without
//!   calling Vault;
//! - Vault's unseal nonce is checked before and after each share: if the attempt changed outside
//!   the ceremony (someone reset it or started another), the ceremony is aborted;
//! - a share goes straight to [`VaultApi::unseal`] and is dropped (zeroised) right after;
//! - Vault decides progress: a malformed share changes nothing, a wrong share is only detected
//!   when the threshold is reached, and then Vault discards the attempt, so the ceremony starts a
//!   new round (everyone may give their share again);
//! - after the configured idle time without a share, [`Ceremony::idle_reset`] resets Vault's
//!   progress and ends the ceremony.
//!
//! The state holds logins, counts and times only; nothing here ever holds a share beyond the
//! one call that sends it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::{SealStatus, ShareSecret, VaultApi, VaultError};
use crate::base::{SharedClock, SystemClock};

/// The wall clock in milliseconds since the epoch.
pub fn wall_clock() -> SharedClock {
    SystemClock::shared()
}

/// Where a ceremony stands. Only [`CeremonyState::Open`] accepts shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CeremonyState {
    Open,
    /// Vault reported `sealed=false`.
    Unsealed,
    /// The unseal attempt changed outside the ceremony.
    Aborted,
    /// Reset after the idle time without a share.
    Expired,
    /// Ended by a person.
    Cancelled,
}

impl fmt::Display for CeremonyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CeremonyState::Open => "open",
            CeremonyState::Unsealed => "unsealed",
            CeremonyState::Aborted => "aborted",
            CeremonyState::Expired => "expired",
            CeremonyState::Cancelled => "cancelled",
        })
    }
}

/// What happened in a ceremony, for its message and the audit log: who, never what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CeremonyEvent {
    pub at_ms: i64,
    pub login: String,
    pub kind: CeremonyEventKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum CeremonyEventKind {
    /// `progress`: shares Vault already had when the ceremony opened.
    Opened {
        progress: u32,
        threshold: u32,
    },
    ShareAccepted {
        progress: u32,
        threshold: u32,
    },
    /// Vault rejected the share; `attempt_reset` when Vault discarded the attempt.
    ShareRejected {
        progress: u32,
        threshold: u32,
        attempt_reset: bool,
    },
    DuplicateRefused,
    Unsealed,
    Aborted,
    IdleReset {
        progress_before: u32,
    },
    Cancelled,
}

/// A share that was accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum CeremonyUpdate {
    /// `progress` of `threshold` shares given in this attempt.
    Progress {
        login: String,
        progress: u32,
        threshold: u32,
        submitted_by: Vec<String>,
    },
    /// This share completed the threshold: Vault says `sealed=false`.
    Unsealed {
        login: String,
        submitted_by: Vec<String>,
    },
}

/// Why a share was not accepted; safe to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CeremonyError {
    #[error("{login} already gave a share in this unseal attempt")]
    AlreadySubmitted { login: String },
    #[error("the unseal ceremony is {0}; start a new one")]
    Closed(CeremonyState),
    /// Vault rejected a share. With `attempt_reset`, the threshold was reached but the shares
    /// given did not unseal (at least one was wrong: Vault cannot tell which) and Vault
    /// discarded the attempt; otherwise this share was malformed and nothing changed.
    #[error("{}", invalid_share_message(login, *progress, *threshold, *attempt_reset))]
    InvalidShare {
        login: String,
        progress: u32,
        threshold: u32,
        /// Vault discarded the attempt (a wrong share reached the threshold).
        attempt_reset: bool,
    },
    #[error(
        "ceremony aborted: the unseal attempt changed outside the ceremony (someone reset it or \
         started another unseal); Vault's progress is {progress} of {threshold}"
    )]
    NonceChanged { progress: u32, threshold: u32 },
    #[error("Vault was unsealed outside the ceremony")]
    UnsealedElsewhere,
    #[error("Vault is not initialized: there is nothing to unseal")]
    NotInitialized,
    #[error("Vault is already unsealed")]
    AlreadyUnsealed,
    #[error(transparent)]
    Vault(#[from] VaultError),
}

fn invalid_share_message(
    login: &str,
    progress: u32,
    threshold: u32,
    attempt_reset: bool,
) -> String {
    if attempt_reset {
        format!(
            "the shares given did not unseal Vault (at least one is wrong; the last came from \
             {login}): Vault discarded the attempt, everyone gives their share again; progress is \
             {progress} of {threshold}"
        )
    } else {
        format!(
            "Vault rejected the share from {login} as malformed; progress is still {progress} of \
             {threshold}"
        )
    }
}

/// The result of an idle reset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdleReset {
    pub idle_minutes: u64,
    /// Shares given in the attempt that was discarded.
    pub progress_before: u32,
    pub threshold: u32,
    /// Vault's status after the reset.
    pub status: SealStatus,
}

/// A serialisable view of a ceremony: logins, counts and times only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CeremonySnapshot {
    pub opened_by: String,
    pub opened_at_ms: i64,
    pub last_activity_ms: i64,
    pub state: CeremonyState,
    pub progress: u32,
    pub threshold: u32,
    pub shares: u32,
    /// 1 for the first unseal attempt, +1 each time Vault discarded one.
    pub round: u32,
    pub submitted_by: Vec<String>,
    pub events: Vec<CeremonyEvent>,
}

/// One unseal ceremony.
pub struct Ceremony {
    api: Arc<dyn VaultApi>,
    clock: SharedClock,
    idle_ms: i64,
    opened_by: String,
    opened_at_ms: i64,
    last_activity_ms: i64,
    state: CeremonyState,
    /// Vault's nonce for the attempt the ceremony follows ("" when none is in progress).
    nonce: String,
    progress: u32,
    threshold: u32,
    shares: u32,
    round: u32,
    /// (GitHub id, login) of those who gave a share in the current attempt.
    submitted: Vec<(u64, String)>,
    events: Vec<CeremonyEvent>,
}

impl fmt::Debug for Ceremony {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ceremony")
            .field("opened_by", &self.opened_by)
            .field("state", &self.state)
            .field("progress", &self.progress)
            .field("threshold", &self.threshold)
            .field("round", &self.round)
            .field("submitted_by", &self.submitted_by())
            .field("last_activity_ms", &self.last_activity_ms)
            .finish_non_exhaustive()
    }
}

impl Ceremony {
    /// The idle time from `[vault] ceremony_idle_minutes`.
    pub fn idle_from_minutes(minutes: u64) -> Duration {
        Duration::from_secs(minutes.max(1) * 60)
    }

    /// Opens a ceremony on `vault_status` (read just before). Vault must be initialized and
    /// sealed. Shares Vault already holds (an attempt started elsewhere) are counted and their
    /// attempt is followed.
    pub fn start(
        api: Arc<dyn VaultApi>,
        clock: SharedClock,
        idle: Duration,
        opened_by: impl Into<String>,
        vault_status: &SealStatus,
    ) -> Result<Ceremony, CeremonyError> {
        if !vault_status.initialized {
            return Err(CeremonyError::NotInitialized);
        }
        if !vault_status.sealed {
            return Err(CeremonyError::AlreadyUnsealed);
        }
        let now = clock.now_ms();
        let opened_by = opened_by.into();
        tracing::info!(opened_by = %opened_by, progress = vault_status.progress, threshold = vault_status.t, "unseal ceremony opened");
        Ok(Ceremony {
            api,
            clock,
            idle_ms: i64::try_from(idle.as_millis()).unwrap_or(i64::MAX),
            events: vec![CeremonyEvent {
                at_ms: now,
                login: opened_by.clone(),
                kind: CeremonyEventKind::Opened {
                    progress: vault_status.progress,
                    threshold: vault_status.t,
                },
            }],
            opened_by,
            opened_at_ms: now,
            last_activity_ms: now,
            state: CeremonyState::Open,
            nonce: vault_status.nonce.clone(),
            progress: vault_status.progress,
            threshold: vault_status.t,
            shares: vault_status.n,
            round: 1,
            submitted: Vec::new(),
        })
    }

    pub fn state(&self) -> CeremonyState {
        self.state
    }

    pub fn progress(&self) -> u32 {
        self.progress
    }

    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    pub fn opened_by(&self) -> &str {
        &self.opened_by
    }

    /// Logins that gave a share in the current attempt, in order.
    pub fn submitted_by(&self) -> Vec<String> {
        self.submitted.iter().map(|(_, l)| l.clone()).collect()
    }

    pub fn events(&self) -> &[CeremonyEvent] {
        &self.events
    }

    /// When [`Ceremony::idle_reset`] will reset an open ceremony (ms since the epoch).
    pub fn idle_deadline_ms(&self) -> i64 {
        self.last_activity_ms.saturating_add(self.idle_ms)
    }

    pub fn snapshot(&self) -> CeremonySnapshot {
        CeremonySnapshot {
            opened_by: self.opened_by.clone(),
            opened_at_ms: self.opened_at_ms,
            last_activity_ms: self.last_activity_ms,
            state: self.state,
            progress: self.progress,
            threshold: self.threshold,
            shares: self.shares,
            round: self.round,
            submitted_by: self.submitted_by(),
            events: self.events.clone(),
        }
    }

    fn event(&mut self, login: &str, kind: CeremonyEventKind) {
        self.events.push(CeremonyEvent {
            at_ms: self.clock.now_ms(),
            login: login.to_string(),
            kind,
        });
    }

    fn follow(&mut self, status: &SealStatus) {
        self.nonce = status.nonce.clone();
        self.progress = status.progress;
        self.threshold = status.t;
        self.shares = status.n;
    }

    fn abort(&mut self, login: &str, status: &SealStatus) -> CeremonyError {
        self.state = CeremonyState::Aborted;
        self.follow(status);
        self.event(login, CeremonyEventKind::Aborted);
        tracing::warn!(
            login,
            progress = status.progress,
            threshold = status.t,
            "unseal ceremony aborted: the attempt changed outside the ceremony"
        );
        CeremonyError::NonceChanged {
            progress: status.progress,
            threshold: status.t,
        }
    }

    fn unsealed_elsewhere(&mut self, login: &str, status: &SealStatus) -> CeremonyError {
        self.state = CeremonyState::Unsealed;
        self.follow(status);
        self.event(login, CeremonyEventKind::Unsealed);
        CeremonyError::UnsealedElsewhere
    }

    /// Gives `share` from the person with GitHub id `github_id` to Vault. The share is dropped
    /// (zeroised) as soon as Vault has answered, whatever the outcome.
    pub async fn submit(
        &mut self,
        github_id: u64,
        login: &str,
        share: ShareSecret,
    ) -> Result<CeremonyUpdate, CeremonyError> {
        if self.state != CeremonyState::Open {
            return Err(CeremonyError::Closed(self.state));
        }
        if self.submitted.iter().any(|(id, _)| *id == github_id) {
            drop(share);
            self.event(login, CeremonyEventKind::DuplicateRefused);
            tracing::warn!(login, "unseal share refused: this person already gave one");
            return Err(CeremonyError::AlreadySubmitted {
                login: login.to_string(),
            });
        }

        let before = self.api.seal_status().await?;
        if !before.initialized {
            return Err(CeremonyError::NotInitialized);
        }
        if !before.sealed {
            return Err(self.unsealed_elsewhere(login, &before));
        }
        if before.nonce != self.nonce {
            return Err(self.abort(login, &before));
        }

        let result = self.api.unseal(&share).await;
        drop(share);
        let now = self.clock.now_ms();

        match result {
            Ok(after) => {
                self.last_activity_ms = now;
                if !after.sealed {
                    self.submitted.push((github_id, login.to_string()));
                    self.state = CeremonyState::Unsealed;
                    self.follow(&after);
                    self.event(login, CeremonyEventKind::Unsealed);
                    tracing::info!(login, "unseal share accepted: Vault is unsealed");
                    return Ok(CeremonyUpdate::Unsealed {
                        login: login.to_string(),
                        submitted_by: self.submitted_by(),
                    });
                }
                let same_attempt = if before.nonce.is_empty() {
                    !after.nonce.is_empty()
                } else {
                    after.nonce == before.nonce
                };
                if !same_attempt {
                    return Err(self.abort(login, &after));
                }
                self.submitted.push((github_id, login.to_string()));
                self.follow(&after);
                self.event(
                    login,
                    CeremonyEventKind::ShareAccepted {
                        progress: after.progress,
                        threshold: after.t,
                    },
                );
                tracing::info!(
                    login,
                    progress = after.progress,
                    threshold = after.t,
                    "unseal share accepted"
                );
                Ok(CeremonyUpdate::Progress {
                    login: login.to_string(),
                    progress: after.progress,
                    threshold: after.t,
                    submitted_by: self.submitted_by(),
                })
            }
            Err(VaultError::InvalidShare) => {
                self.last_activity_ms = now;
                let after = self.api.seal_status().await?;
                if !after.sealed {
                    return Err(self.unsealed_elsewhere(login, &after));
                }
                let attempt_reset = if after.nonce == before.nonce {
                    false
                } else if after.nonce.is_empty() && after.progress == 0 {
                    true
                } else {
                    return Err(self.abort(login, &after));
                };
                if attempt_reset {
                    self.round += 1;
                    self.submitted.clear();
                }
                self.follow(&after);
                self.event(
                    login,
                    CeremonyEventKind::ShareRejected {
                        progress: after.progress,
                        threshold: after.t,
                        attempt_reset,
                    },
                );
                tracing::warn!(
                    login,
                    progress = after.progress,
                    threshold = after.t,
                    attempt_reset,
                    "unseal share rejected by Vault"
                );
                Err(CeremonyError::InvalidShare {
                    login: login.to_string(),
                    progress: after.progress,
                    threshold: after.t,
                    attempt_reset,
                })
            }
            Err(e) => Err(CeremonyError::Vault(e)),
        }
    }

    /// If the ceremony is open and no share came for the idle time before `now_ms`, resets
    /// Vault's unseal progress and ends the ceremony. `Ok(None)`: nothing to do.
    pub async fn idle_reset(&mut self, now_ms: i64) -> Result<Option<IdleReset>, CeremonyError> {
        if self.state != CeremonyState::Open
            || now_ms.saturating_sub(self.last_activity_ms) < self.idle_ms
        {
            return Ok(None);
        }
        let progress_before = self.progress;
        let status = self.api.reset_unseal().await?;
        self.state = CeremonyState::Expired;
        self.follow(&status);
        let opened_by = self.opened_by.clone();
        self.event(&opened_by, CeremonyEventKind::IdleReset { progress_before });
        tracing::info!(progress_before, "unseal ceremony reset after its idle time");
        Ok(Some(IdleReset {
            idle_minutes: u64::try_from(self.idle_ms / 60_000).unwrap_or(0),
            progress_before,
            threshold: self.threshold,
            status,
        }))
    }

    /// Ends an open ceremony on a person's request, resetting Vault's unseal progress.
    pub async fn cancel(&mut self, login: &str) -> Result<SealStatus, CeremonyError> {
        if self.state != CeremonyState::Open {
            return Err(CeremonyError::Closed(self.state));
        }
        let status = self.api.reset_unseal().await?;
        self.state = CeremonyState::Cancelled;
        self.follow(&status);
        self.event(login, CeremonyEventKind::Cancelled);
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::super::testing::*;
    use super::*;

    fn clock_at(ms: &Arc<AtomicI64>) -> SharedClock {
        let ms = ms.clone();
        Arc::new(move || ms.load(Ordering::SeqCst))
    }

    fn share(s: &str) -> ShareSecret {
        ShareSecret::new(s.to_string())
    }

    fn open(api: Arc<Scripted>, now: &Arc<AtomicI64>, status: &SealStatus) -> Ceremony {
        Ceremony::start(
            api,
            clock_at(now),
            Ceremony::idle_from_minutes(10),
            "opener",
            status,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn vault_ceremony_three_people_unseal_and_duplicates_never_reach_vault() {
        let now = Arc::new(AtomicI64::new(1_000));
        let api = Scripted::new(vec![
            Expect::SealStatus(Ok(sealed(0, ""))),
            Expect::Unseal("k1", Ok(sealed(1, "n1"))),
            Expect::SealStatus(Ok(sealed(1, "n1"))),
            Expect::Unseal("k2", Ok(sealed(2, "n1"))),
            Expect::SealStatus(Ok(sealed(2, "n1"))),
            Expect::Unseal("k3", Ok(unsealed())),
        ]);
        let mut c = open(api.clone(), &now, &sealed(0, ""));
        let u = c.submit(1, "alice", share("k1")).await.unwrap();
        assert_eq!(
            u,
            CeremonyUpdate::Progress {
                login: "alice".into(),
                progress: 1,
                threshold: 3,
                submitted_by: vec!["alice".into()]
            }
        );
        // Same GitHub id under another login: refused, no Vault call (the script would panic).
        let e = c.submit(1, "alice-renamed", share("k9")).await.unwrap_err();
        assert!(matches!(e, CeremonyError::AlreadySubmitted { .. }));
        c.submit(2, "bob", share("k2")).await.unwrap();
        let u = c.submit(3, "carol", share("k3")).await.unwrap();
        assert!(matches!(u, CeremonyUpdate::Unsealed { .. }));
        assert_eq!(c.state(), CeremonyState::Unsealed);
        assert_eq!(c.submitted_by(), vec!["alice", "bob", "carol"]);
        let e = c.submit(4, "dave", share("k4")).await.unwrap_err();
        assert_eq!(e, CeremonyError::Closed(CeremonyState::Unsealed));
        api.assert_done();
        let debug = format!("{c:?} {:?}", c.snapshot());
        for s in ["k1", "k2", "k3", "k9"] {
            assert!(!debug.contains(&format!("\"{s}\"")), "{debug}");
        }
    }

    #[tokio::test]
    async fn vault_ceremony_invalid_shares_follow_vault() {
        let now = Arc::new(AtomicI64::new(0));
        let api = Scripted::new(vec![
            // Malformed: Vault keeps its progress, the person may try again.
            Expect::SealStatus(Ok(sealed(1, "n1"))),
            Expect::Unseal("garbage", Err(VaultError::InvalidShare)),
            Expect::SealStatus(Ok(sealed(1, "n1"))),
            Expect::SealStatus(Ok(sealed(1, "n1"))),
            Expect::Unseal("k2", Ok(sealed(2, "n1"))),
            // A wrong share completes the threshold: Vault discards the attempt.
            Expect::SealStatus(Ok(sealed(2, "n1"))),
            Expect::Unseal("wrong", Err(VaultError::InvalidShare)),
            Expect::SealStatus(Ok(sealed(0, ""))),
            // New round: bob may give his share again.
            Expect::SealStatus(Ok(sealed(0, ""))),
            Expect::Unseal("k2", Ok(sealed(1, "n2"))),
        ]);
        let mut c = open(api.clone(), &now, &sealed(1, "n1"));
        let e = c.submit(2, "bob", share("garbage")).await.unwrap_err();
        assert_eq!(
            e,
            CeremonyError::InvalidShare {
                login: "bob".into(),
                progress: 1,
                threshold: 3,
                attempt_reset: false
            }
        );
        c.submit(2, "bob", share("k2")).await.unwrap();
        let e = c.submit(3, "carol", share("wrong")).await.unwrap_err();
        assert!(
            e.to_string().contains("everyone gives their share again"),
            "{e}"
        );
        assert_eq!(c.snapshot().round, 2);
        assert_eq!(c.state(), CeremonyState::Open);
        let u = c.submit(2, "bob", share("k2")).await.unwrap();
        assert!(matches!(u, CeremonyUpdate::Progress { progress: 1, .. }));
        api.assert_done();
    }

    #[tokio::test]
    async fn vault_ceremony_aborts_when_the_attempt_changes_outside() {
        let now = Arc::new(AtomicI64::new(0));
        // Reset by someone else between two shares.
        let api = Scripted::new(vec![Expect::SealStatus(Ok(sealed(0, "")))]);
        let mut c = open(api.clone(), &now, &sealed(1, "n1"));
        let e = c.submit(2, "bob", share("k2")).await.unwrap_err();
        assert!(matches!(e, CeremonyError::NonceChanged { progress: 0, .. }));
        assert_eq!(c.state(), CeremonyState::Aborted);
        api.assert_done();

        // Reset and restarted by someone else while our share was in flight.
        let api = Scripted::new(vec![
            Expect::SealStatus(Ok(sealed(1, "n1"))),
            Expect::Unseal("k2", Ok(sealed(1, "other"))),
        ]);
        let mut c = open(api.clone(), &now, &sealed(1, "n1"));
        assert!(matches!(
            c.submit(2, "bob", share("k2")).await,
            Err(CeremonyError::NonceChanged { .. })
        ));
        api.assert_done();

        // Someone started an attempt before the first share of the ceremony.
        let api = Scripted::new(vec![Expect::SealStatus(Ok(sealed(1, "n9")))]);
        let mut c = open(api.clone(), &now, &sealed(0, ""));
        assert!(matches!(
            c.submit(2, "bob", share("k2")).await,
            Err(CeremonyError::NonceChanged { .. })
        ));
        api.assert_done();
    }

    #[tokio::test]
    async fn vault_ceremony_idle_reset_uses_the_clock_and_the_api() {
        let now = Arc::new(AtomicI64::new(0));
        let api = Scripted::new(vec![
            Expect::SealStatus(Ok(sealed(0, ""))),
            Expect::Unseal("k1", Ok(sealed(1, "n1"))),
            Expect::Reset(Ok(sealed(0, ""))),
        ]);
        let mut c = open(api.clone(), &now, &sealed(0, ""));
        now.store(60_000, Ordering::SeqCst);
        c.submit(1, "alice", share("k1")).await.unwrap();
        assert_eq!(c.idle_deadline_ms(), 60_000 + 600_000);
        assert_eq!(c.idle_reset(659_999).await.unwrap(), None);
        let r = c.idle_reset(660_000).await.unwrap().unwrap();
        assert_eq!((r.progress_before, r.threshold, r.idle_minutes), (1, 3, 10));
        assert_eq!(r.status.progress, 0);
        assert_eq!(c.state(), CeremonyState::Expired);
        assert_eq!(c.idle_reset(10_000_000).await.unwrap(), None);
        api.assert_done();
    }

    #[tokio::test]
    async fn vault_ceremony_refuses_to_start_on_unsealed_or_uninitialized_vault() {
        let api = Scripted::new(vec![]);
        let now = Arc::new(AtomicI64::new(0));
        let e = Ceremony::start(
            api.clone(),
            clock_at(&now),
            Duration::from_secs(60),
            "x",
            &unsealed(),
        )
        .unwrap_err();
        assert_eq!(e, CeremonyError::AlreadyUnsealed);
        let uninit = SealStatus {
            initialized: false,
            ..sealed(0, "")
        };
        let e = Ceremony::start(api, clock_at(&now), Duration::from_secs(60), "x", &uninit)
            .unwrap_err();
        assert_eq!(e, CeremonyError::NotInitialized);
    }
}
