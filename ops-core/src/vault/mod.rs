//! Vault (OpenBao-compatible) for the platform's layer_1 `vault-service`: the [`VaultApi`] port
//! and its vaultrs adapter [`VaultClient`], the unseal [`Ceremony`], the `/vault secrets` report
//! ([`secrets_report`], KV v2 metadata only: values are never read) and the `vault_seal` approval
//! executor ([`VaultSeal`]).
//!
//! Rules kept here:
//! - An unseal share is a [`ShareSecret`]: it never prints, cannot be cloned, and its memory is
//!   zeroised when dropped. The ceremony passes it straight to Vault and drops it; its state holds
//!   logins and counts only.
//! - Errors ([`VaultError`]) carry safe, fixed messages. Raw Vault error text may carry secrets:
//!   it is logged redacted, and never for unseal calls.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::approvals::ActionExecutor;
use crate::base::new_error_id;
use crate::base::OpsError;

mod ceremony;
mod client;

pub use ceremony::{
    wall_clock, Ceremony, CeremonyError, CeremonyEvent, CeremonyEventKind, CeremonySnapshot,
    CeremonyState, CeremonyUpdate, IdleReset,
};
pub use client::VaultClient;

/// The approval action that seals Vault (see `permissions.toml`).
pub const VAULT_SEAL_ACTION: &str = "vault_seal";

/// What went wrong talking to Vault. Every message is safe to show: no Vault error text, no
/// token, no share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "error", content = "detail")]
pub enum VaultError {
    #[error("Vault is unreachable (connection failed or timed out)")]
    Unreachable,
    #[error("Vault is sealed")]
    Sealed,
    #[error("Vault refused the request: the bot's Vault token lacks permission")]
    Forbidden,
    #[error("Vault rejected the unseal share: it is wrong or malformed")]
    InvalidShare,
    /// Why, in safe words (a missing token names its source, never a value).
    #[error("Vault is not configured: {0}")]
    NotConfigured(String),
    #[error("Vault is not initialized")]
    NotInitialized,
    #[error("Vault answered with HTTP status {status}")]
    Api { status: u16 },
    #[error("Vault's answer could not be understood")]
    InvalidResponse,
}

/// `GET /v1/sys/seal-status` (answers while sealed and without a token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealStatus {
    pub initialized: bool,
    pub sealed: bool,
    /// The threshold: shares needed to unseal.
    pub t: u32,
    /// Shares in total.
    pub n: u32,
    /// Shares given so far in the current unseal attempt.
    pub progress: u32,
    /// The current unseal attempt; empty when no attempt is in progress. It changes when the
    /// attempt is reset (by a person or by Vault after a failed attempt) and a new one starts.
    #[serde(default)]
    pub nonce: String,
    #[serde(default)]
    pub version: String,
    /// `file`, `raft`, `s3`, ...
    #[serde(default)]
    pub storage_type: Option<String>,
    #[serde(default)]
    pub ha_enabled: bool,
    /// Vault's `build_date` (OpenBao calls it `commit_date`).
    #[serde(default, alias = "commit_date")]
    pub build_date: Option<String>,
    /// Present once unsealed.
    #[serde(default)]
    pub cluster_name: Option<String>,
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// The seal type (`shamir`, ...).
    #[serde(default, rename = "type")]
    pub seal_type: Option<String>,
}

impl SealStatus {
    /// "sealed (1 of 3 shares)", "unsealed", "not initialized".
    pub fn describe(&self) -> String {
        if !self.initialized {
            "not initialized".to_string()
        } else if self.sealed {
            format!("sealed ({} of {} shares given)", self.progress, self.t)
        } else {
            "unsealed".to_string()
        }
    }
}

/// KV v2 metadata of one secret (never its value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretMeta {
    pub created_time: DateTime<Utc>,
    pub updated_time: DateTime<Utc>,
    pub current_version: u64,
    /// The current version was deleted or destroyed: no value is readable.
    pub current_deleted: bool,
}

/// One line of `/vault secrets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretPresence {
    /// As configured: `mount/path`.
    pub path: String,
    /// A readable current version exists.
    pub exists: bool,
    pub updated_time: Option<DateTime<Utc>>,
    pub current_version: Option<u64>,
    /// Why presence is unknown for this path (for example [`VaultError::Forbidden`]).
    pub error: Option<VaultError>,
}

/// An unseal share from a key holder. It never prints (`Debug`/`Display` show `***`), is not
/// `Clone`, and its bytes are zeroised when it is dropped. Copies made inside the HTTP client
/// while sending it are outside this crate's control.
pub struct ShareSecret(String);

impl ShareSecret {
    /// Takes ownership of the typed text (no copy is kept elsewhere); surrounding whitespace is
    /// removed and the untrimmed buffer zeroised.
    pub fn new(mut value: String) -> ShareSecret {
        let trimmed = value.trim();
        if trimmed.len() == value.len() {
            return ShareSecret(value);
        }
        let kept = trimmed.to_string();
        value.zeroize();
        ShareSecret(kept)
    }

    /// The value, for the one place that sends it to Vault.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for ShareSecret {
    fn from(value: String) -> Self {
        ShareSecret::new(value)
    }
}

impl Drop for ShareSecret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for ShareSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShareSecret(***)")
    }
}

impl fmt::Display for ShareSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The Vault operations sprocket-ops needs. Object-safe: tests swap in fakes.
#[async_trait]
pub trait VaultApi: Send + Sync {
    /// The seal status; works while sealed and needs no token.
    async fn seal_status(&self) -> Result<SealStatus, VaultError>;
    /// Gives one unseal share; returns the seal status afterwards. A wrong or malformed share is
    /// [`VaultError::InvalidShare`] (Vault may then have reset the attempt: ask
    /// [`VaultApi::seal_status`]).
    async fn unseal(&self, share: &ShareSecret) -> Result<SealStatus, VaultError>;
    /// Discards the shares given so far (`PUT sys/unseal` with `reset=true`).
    async fn reset_unseal(&self) -> Result<SealStatus, VaultError>;
    /// Seals Vault (needs the configured token).
    async fn seal(&self) -> Result<(), VaultError>;
    /// KV v2 metadata of `mount/path`; `None` when there is no such secret. Never reads values.
    async fn secret_metadata(
        &self,
        mount: &str,
        path: &str,
    ) -> Result<Option<SecretMeta>, VaultError>;
}

/// Splits a configured `mount/path` at its first `/`.
pub fn split_secret_path(configured: &str) -> Option<(&str, &str)> {
    let trimmed = configured.trim().trim_matches('/');
    let (mount, path) = trimmed.split_once('/')?;
    let path = path.trim_matches('/');
    if mount.is_empty() || path.is_empty() {
        return None;
    }
    Some((mount, path))
}

/// `/vault secrets`: which configured KV v2 secrets exist and when they last changed, from their
/// metadata only. A path Vault refuses to describe is reported with its error; a sealed,
/// unreachable or unconfigured Vault fails the whole report.
pub async fn secrets_report(
    api: &dyn VaultApi,
    secret_paths: &[String],
) -> Result<Vec<SecretPresence>, VaultError> {
    let mut out = Vec::with_capacity(secret_paths.len());
    for configured in secret_paths {
        let Some((mount, path)) = split_secret_path(configured) else {
            out.push(SecretPresence {
                path: configured.clone(),
                exists: false,
                updated_time: None,
                current_version: None,
                error: Some(VaultError::NotConfigured(format!(
                    "`{configured}` is not `mount/path`"
                ))),
            });
            continue;
        };
        let presence = match api.secret_metadata(mount, path).await {
            Ok(Some(meta)) => SecretPresence {
                path: configured.clone(),
                exists: !meta.current_deleted,
                updated_time: Some(meta.updated_time),
                current_version: Some(meta.current_version),
                error: None,
            },
            Ok(None) => SecretPresence {
                path: configured.clone(),
                exists: false,
                updated_time: None,
                current_version: None,
                error: None,
            },
            Err(
                e @ (VaultError::Sealed
                | VaultError::Unreachable
                | VaultError::NotConfigured(_)
                | VaultError::NotInitialized),
            ) => return Err(e),
            Err(e) => SecretPresence {
                path: configured.clone(),
                exists: false,
                updated_time: None,
                current_version: None,
                error: Some(e),
            },
        };
        out.push(presence);
    }
    Ok(out)
}

/// The `vault_seal` action for the approval engine. Its digest is the seal state (and cluster
/// id, else version), so an approval given while Vault was sealed or on another cluster is void.
pub struct VaultSeal {
    api: Arc<dyn VaultApi>,
}

impl VaultSeal {
    pub fn new(api: Arc<dyn VaultApi>) -> VaultSeal {
        VaultSeal { api }
    }

    fn fail(summary: &str, e: &VaultError) -> OpsError {
        let error_id = new_error_id();
        tracing::error!(error_id = %error_id, error = %e, "{summary}");
        OpsError {
            summary: format!("{summary}: {e}"),
            error_id,
        }
    }
}

impl fmt::Debug for VaultSeal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VaultSeal")
    }
}

/// The digest of a seal status: `sealed`, or `unsealed:<cluster id or version>`.
pub fn seal_digest(status: &SealStatus) -> String {
    if !status.initialized {
        "uninitialized".to_string()
    } else if status.sealed {
        "sealed".to_string()
    } else {
        let who = status
            .cluster_id
            .as_deref()
            .filter(|c| !c.is_empty())
            .unwrap_or(&status.version);
        format!("unsealed:{who}")
    }
}

#[async_trait]
impl ActionExecutor for VaultSeal {
    async fn digest(&self, _params: &serde_json::Value) -> Result<String, OpsError> {
        let status = self
            .api
            .seal_status()
            .await
            .map_err(|e| VaultSeal::fail("cannot read Vault's seal status", &e))?;
        Ok(seal_digest(&status))
    }

    async fn execute(&self, _params: &serde_json::Value) -> Result<String, OpsError> {
        let before = self
            .api
            .seal_status()
            .await
            .map_err(|e| VaultSeal::fail("cannot read Vault's seal status", &e))?;
        if before.sealed {
            return Ok("Vault was already sealed: nothing to do".to_string());
        }
        self.api
            .seal()
            .await
            .map_err(|e| VaultSeal::fail("sealing Vault failed", &e))?;
        let after =
            self.api.seal_status().await.map_err(|e| {
                VaultSeal::fail("Vault was asked to seal; its status is unknown", &e)
            })?;
        if !after.sealed {
            let e = VaultError::Api { status: 200 };
            return Err(VaultSeal::fail(
                "Vault accepted the seal but is still unsealed",
                &e,
            ));
        }
        tracing::warn!(cluster = ?before.cluster_name, "Vault sealed through an approved request");
        Ok(match before.cluster_name.as_deref() {
            Some(name) if !name.is_empty() => format!("Vault sealed (cluster {name})"),
            _ => "Vault sealed".to_string(),
        })
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A scripted [`VaultApi`] for unit tests: each call must be the next expected one, else it
    //! panics.

    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;

    #[derive(Debug)]
    pub enum Expect {
        SealStatus(Result<SealStatus, VaultError>),
        /// The share text expected, and the answer.
        Unseal(&'static str, Result<SealStatus, VaultError>),
        Reset(Result<SealStatus, VaultError>),
        Seal(Result<(), VaultError>),
        Metadata(
            &'static str,
            &'static str,
            Result<Option<SecretMeta>, VaultError>,
        ),
    }

    #[derive(Default)]
    pub struct Scripted {
        pub script: Mutex<VecDeque<Expect>>,
    }

    impl Scripted {
        pub fn new(script: Vec<Expect>) -> Arc<Scripted> {
            Arc::new(Scripted {
                script: Mutex::new(script.into()),
            })
        }

        fn next(&self, what: &str) -> Expect {
            self.script
                .lock()
                .expect("script lock")
                .pop_front()
                .unwrap_or_else(|| panic!("unexpected Vault call: {what}"))
        }

        pub fn assert_done(&self) {
            let left = self.script.lock().expect("script lock");
            assert!(left.is_empty(), "expected Vault calls not made: {left:?}");
        }
    }

    #[async_trait]
    impl VaultApi for Scripted {
        async fn seal_status(&self) -> Result<SealStatus, VaultError> {
            match self.next("seal_status") {
                Expect::SealStatus(r) => r,
                other => panic!("seal_status called, expected {other:?}"),
            }
        }
        async fn unseal(&self, share: &ShareSecret) -> Result<SealStatus, VaultError> {
            match self.next("unseal") {
                Expect::Unseal(want, r) => {
                    assert_eq!(share.expose(), want, "unexpected share");
                    r
                }
                other => panic!("unseal called, expected {other:?}"),
            }
        }
        async fn reset_unseal(&self) -> Result<SealStatus, VaultError> {
            match self.next("reset_unseal") {
                Expect::Reset(r) => r,
                other => panic!("reset_unseal called, expected {other:?}"),
            }
        }
        async fn seal(&self) -> Result<(), VaultError> {
            match self.next("seal") {
                Expect::Seal(r) => r,
                other => panic!("seal called, expected {other:?}"),
            }
        }
        async fn secret_metadata(
            &self,
            mount: &str,
            path: &str,
        ) -> Result<Option<SecretMeta>, VaultError> {
            match self.next("secret_metadata") {
                Expect::Metadata(m, p, r) => {
                    assert_eq!((mount, path), (m, p), "unexpected metadata path");
                    r
                }
                other => panic!("secret_metadata({mount}, {path}) called, expected {other:?}"),
            }
        }
    }

    /// A sealed status with `progress` of 3 shares and `nonce`.
    pub fn sealed(progress: u32, nonce: &str) -> SealStatus {
        SealStatus {
            initialized: true,
            sealed: true,
            t: 3,
            n: 5,
            progress,
            nonce: nonce.to_string(),
            version: "2.7.2".into(),
            storage_type: Some("raft".into()),
            ha_enabled: false,
            build_date: None,
            cluster_name: None,
            cluster_id: None,
            seal_type: Some("shamir".into()),
        }
    }

    pub fn unsealed() -> SealStatus {
        SealStatus {
            sealed: false,
            cluster_name: Some("vault-cluster-1".into()),
            cluster_id: Some("c-1".into()),
            ..sealed(0, "")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn vault_share_secret_never_prints_and_trims() {
        let s = ShareSecret::new("  c2hhcmUtdmFsdWU=\n".to_string());
        assert_eq!(s.expose(), "c2hhcmUtdmFsdWU=");
        assert_eq!(format!("{s} {s:?}"), "*** ShareSecret(***)");
        let untouched = ShareSecret::from("abc".to_string());
        assert_eq!(untouched.expose(), "abc");
    }

    #[test]
    fn vault_seal_status_parses_openbao_and_vault_answers() {
        let bao = r#"{"type":"shamir","initialized":true,"sealed":true,"t":3,"n":5,"progress":1,
            "nonce":"24869d23","recovery_seal":false,"version":"2.7.2",
            "commit_date":"2026-10-26T20:32:27Z","migration":false,"storage_type":"raft"}"#;
        let s: SealStatus = serde_json::from_str(bao).unwrap();
        assert_eq!((s.t, s.n, s.progress), (3, 5, 1));
        assert_eq!(s.nonce, "24869d23");
        assert_eq!(s.build_date.as_deref(), Some("2026-10-26T20:32:27Z"));
        assert_eq!(s.describe(), "sealed (1 of 3 shares given)");
        let vault = r#"{"type":"shamir","initialized":true,"sealed":false,"t":3,"n":5,
            "progress":0,"nonce":"","version":"1.15.0","build_date":"2023-09-22T16:53:10Z",
            "migration":false,"cluster_name":"vault-cluster-x","cluster_id":"abc",
            "recovery_seal":false,"storage_type":"s3","ha_enabled":false}"#;
        let s: SealStatus = serde_json::from_str(vault).unwrap();
        assert!(!s.sealed);
        assert_eq!(seal_digest(&s), "unsealed:abc");
        assert_eq!(s.storage_type.as_deref(), Some("s3"));
    }

    #[test]
    fn vault_errors_serialize_with_their_kind() {
        let v = serde_json::to_value(VaultError::NotConfigured("no token".into())).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": "not_configured", "detail": "no token"})
        );
        let v = serde_json::to_value(VaultError::Api { status: 500 }).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": "api", "detail": {"status": 500}})
        );
        assert_eq!(
            serde_json::to_value(VaultError::Sealed).unwrap(),
            serde_json::json!({"error": "sealed"})
        );
    }

    #[test]
    fn vault_secret_paths_split_at_the_mount() {
        assert_eq!(
            split_secret_path("platform/sprocket/manual/oauth/google"),
            Some(("platform", "sprocket/manual/oauth/google"))
        );
        assert_eq!(split_secret_path("/secret/x/"), Some(("secret", "x")));
        assert_eq!(split_secret_path("secret"), None);
        assert_eq!(split_secret_path("secret/"), None);
    }

    #[tokio::test]
    async fn vault_secrets_report_uses_metadata_only() {
        let t = DateTime::parse_from_rfc3339("2025-09-20T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let meta = SecretMeta {
            created_time: t,
            updated_time: t,
            current_version: 2,
            current_deleted: false,
        };
        let api = Scripted::new(vec![
            Expect::Metadata("platform", "ballchasing", Ok(Some(meta))),
            Expect::Metadata("platform", "sprocket/chatwoot", Ok(None)),
            Expect::Metadata("infra", "redis", Err(VaultError::Forbidden)),
        ]);
        let paths = [
            "platform/ballchasing".to_string(),
            "platform/sprocket/chatwoot".to_string(),
            "nomount".to_string(),
            "infra/redis".to_string(),
        ];
        let report = secrets_report(api.as_ref(), &paths).await.unwrap();
        api.assert_done();
        assert!(report[0].exists);
        assert_eq!(report[0].updated_time, Some(t));
        assert_eq!(report[0].current_version, Some(2));
        assert!(!report[1].exists && report[1].error.is_none());
        assert!(matches!(
            report[2].error,
            Some(VaultError::NotConfigured(_))
        ));
        assert_eq!(report[3].error, Some(VaultError::Forbidden));

        let sealed_api = Scripted::new(vec![Expect::Metadata(
            "platform",
            "ballchasing",
            Err(VaultError::Sealed),
        )]);
        assert_eq!(
            secrets_report(sealed_api.as_ref(), &paths[..1]).await,
            Err(VaultError::Sealed)
        );
    }

    #[tokio::test]
    async fn vault_seal_executor_digests_and_seals() {
        let api = Scripted::new(vec![
            Expect::SealStatus(Ok(unsealed())),
            Expect::SealStatus(Ok(unsealed())),
            Expect::Seal(Ok(())),
            Expect::SealStatus(Ok(sealed(0, ""))),
            Expect::SealStatus(Ok(sealed(0, ""))),
        ]);
        let exec = VaultSeal::new(api.clone());
        let params = serde_json::json!({});
        assert_eq!(exec.digest(&params).await.unwrap(), "unsealed:c-1");
        let done = exec.execute(&params).await.unwrap();
        assert_eq!(done, "Vault sealed (cluster vault-cluster-1)");
        assert_eq!(exec.digest(&params).await.unwrap(), "sealed");
        api.assert_done();
    }

    #[tokio::test]
    async fn vault_seal_executor_reports_safe_errors() {
        let api = Scripted::new(vec![
            Expect::SealStatus(Ok(unsealed())),
            Expect::Seal(Err(VaultError::Forbidden)),
        ]);
        let exec = VaultSeal::new(api.clone());
        let e = exec.execute(&serde_json::json!({})).await.unwrap_err();
        assert!(e.summary.contains("lacks permission"), "{e}");
        api.assert_done();
    }
}
