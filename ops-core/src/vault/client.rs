//! [`VaultClient`]: the [`VaultApi`] adapter over vaultrs 0.8. vaultrs has no seal-status call,
//! so `GET /v1/sys/seal-status` goes through vaultrs's own HTTP client (same TLS settings and
//! timeout). Vault error text is logged redacted (never for unseal calls, whose errors are
//! classified without their text) and mapped to the fixed messages of [`VaultError`].

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vaultrs::client::{VaultClient as RawClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use super::{SealStatus, SecretMeta, ShareSecret, VaultApi, VaultError};
use crate::config::VaultConfig;
use crate::redact::Redactor;

/// Which call an error came from: unseal errors are classified differently and never logged
/// with Vault's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    SealStatus,
    Unseal,
    ResetUnseal,
    Seal,
    Metadata,
}

impl Call {
    fn name(self) -> &'static str {
        match self {
            Call::SealStatus => "seal-status",
            Call::Unseal => "unseal",
            Call::ResetUnseal => "unseal-reset",
            Call::Seal => "seal",
            Call::Metadata => "kv2-metadata",
        }
    }
}

/// An unseal request body: zeroised when the last reference to it is dropped.
struct ZeroizedBody(zeroize::Zeroizing<Vec<u8>>);

impl AsRef<[u8]> for ZeroizedBody {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// The vaultrs-backed client.
pub struct VaultClient {
    inner: RawClient,
    /// `https://vault.example` without a trailing `/`.
    base: String,
    has_token: bool,
    /// Masks the token (and token-shaped strings) in logged Vault error text.
    redactor: Redactor,
}

impl fmt::Debug for VaultClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultClient")
            .field("address", &self.base)
            .field("token", &if self.has_token { "***" } else { "(none)" })
            .finish()
    }
}

impl VaultClient {
    /// Builds the client from `[vault]`. The token is resolved now; when it cannot be, the client
    /// still serves seal status and unseal (which need none) and [`VaultApi::seal`] and
    /// [`VaultApi::secret_metadata`] answer [`VaultError::NotConfigured`].
    pub fn new(config: &VaultConfig) -> Result<VaultClient, VaultError> {
        let url = reqwest::Url::parse(config.address.trim())
            .map_err(|_| VaultError::NotConfigured(format!("`{}` is not a URL", config.address)))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(VaultError::NotConfigured(format!(
                "`{}` is not an http(s) URL",
                config.address
            )));
        }
        let base = url.as_str().trim_end_matches('/').to_string();

        let token = match config.token.resolve() {
            Ok(t) if t.expose().bytes().all(|b| b.is_ascii_graphic()) => Some(t),
            Ok(_) => {
                tracing::warn!(
                    "the Vault token contains characters a header cannot carry: ignored"
                );
                None
            }
            Err(why) => {
                tracing::warn!(reason = %why, "no Vault token: seal and secret metadata are unavailable");
                None
            }
        };
        // The process's redactor (what the bot knows and learned), plus the token.
        let redactor = crate::redact::global().clone();
        redactor.learn(token.as_ref().map(|t| t.expose()));

        // vaultrs is built without a bundled rustls crypto provider; use ring (already in the
        // build for reqwest 0.12). Installing fails harmlessly when a provider is already set.
        let _ = rustls::crypto::ring::default_provider().install_default();

        let mut settings = VaultClientSettingsBuilder::default();
        settings
            .address(&base)
            .token(token.as_ref().map(|t| t.expose()).unwrap_or_default())
            .ca_certs(
                config
                    .ca_cert
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>(),
            )
            .identity(None)
            .verify(true)
            .timeout(Some(Duration::from_secs(config.timeout_secs.max(1))));
        let settings = settings.build().map_err(|e| {
            tracing::warn!(error = %e, "invalid Vault client settings");
            VaultError::NotConfigured("invalid Vault client settings".into())
        })?;
        let inner = RawClient::new(settings).map_err(|e| {
            let why = match &e {
                ClientError::FileReadError { path, .. }
                | ClientError::ParseCertificateError { path, .. } => {
                    format!("cannot use the CA certificate {path}")
                }
                _ => "cannot build the HTTP client".to_string(),
            };
            tracing::warn!(error = %e, "{why}");
            VaultError::NotConfigured(why)
        })?;
        Ok(VaultClient {
            inner,
            base,
            has_token: token.is_some(),
            redactor,
        })
    }

    /// The configured address (no secret).
    pub fn address(&self) -> &str {
        &self.base
    }

    /// Whether a token was configured (seal and secret metadata need one).
    pub fn has_token(&self) -> bool {
        self.has_token
    }

    fn need_token(&self) -> Result<(), VaultError> {
        if self.has_token {
            Ok(())
        } else {
            Err(VaultError::NotConfigured(
                "no Vault token is configured (`[vault] token`)".into(),
            ))
        }
    }

    /// Maps a vaultrs error to a safe [`VaultError`], logging the redacted detail (never the
    /// text of unseal errors).
    fn map_err(&self, call: Call, e: ClientError) -> VaultError {
        use rustify::errors::ClientError as Http;
        let (status, errors): (Option<u16>, Vec<String>) = match &e {
            ClientError::APIError { code, errors } => (Some(*code), errors.clone()),
            ClientError::RestClientError { source } => match source {
                Http::ServerResponseError { code, .. } => (Some(*code), Vec::new()),
                Http::RequestError { .. } | Http::ResponseError { .. } => {
                    tracing::warn!(call = call.name(), "Vault unreachable");
                    return VaultError::Unreachable;
                }
                _ => (None, Vec::new()),
            },
            _ => (None, Vec::new()),
        };
        let mapped = classify(call, status, &errors);
        if call == Call::Unseal {
            tracing::warn!(call = call.name(), status = ?status, outcome = %mapped, "Vault refused an unseal call");
        } else {
            let detail = format!("{e}: {}", errors.join("; "));
            tracing::warn!(
                call = call.name(),
                status = ?status,
                detail = %self.redactor.redact(&detail),
                "Vault call failed"
            );
        }
        mapped
    }
}

/// The safe error for a Vault answer.
fn classify(call: Call, status: Option<u16>, errors: &[String]) -> VaultError {
    let text = errors.join(" ").to_ascii_lowercase();
    match status {
        Some(400) if call == Call::Unseal && text.contains("not initialized") => {
            VaultError::NotInitialized
        }
        Some(400) if call == Call::Unseal => VaultError::InvalidShare,
        Some(400) if text.contains("not initialized") => VaultError::NotInitialized,
        Some(401 | 403) => VaultError::Forbidden,
        Some(501) => VaultError::NotInitialized,
        Some(503) if text.is_empty() || text.contains("sealed") => VaultError::Sealed,
        Some(status) => VaultError::Api { status },
        None => VaultError::InvalidResponse,
    }
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, VaultError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            tracing::warn!(value = %s, "Vault returned an unparseable time");
            VaultError::InvalidResponse
        })
}

#[async_trait]
impl VaultApi for VaultClient {
    async fn seal_status(&self) -> Result<SealStatus, VaultError> {
        let url = format!("{}/v1/sys/seal-status", self.base);
        let resp = self
            .inner
            .http
            .http
            .get(url)
            .header("X-Vault-Request", "true")
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(
                    call = Call::SealStatus.name(),
                    timeout = e.is_timeout(),
                    "Vault unreachable"
                );
                VaultError::Unreachable
            })?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|_| {
            tracing::warn!(
                call = Call::SealStatus.name(),
                "Vault's answer was cut short"
            );
            VaultError::Unreachable
        })?;
        if status != 200 {
            let errors = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| {
                    v.get("errors")?.as_array().map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect::<Vec<_>>()
                    })
                })
                .unwrap_or_default();
            tracing::warn!(
                call = Call::SealStatus.name(),
                status,
                detail = %self.redactor.redact(&errors.join("; ")),
                "Vault call failed"
            );
            return Err(classify(Call::SealStatus, Some(status), &errors));
        }
        serde_json::from_slice::<SealStatus>(&body).map_err(|e| {
            tracing::warn!(call = Call::SealStatus.name(), error = %e, "unexpected seal-status answer");
            VaultError::InvalidResponse
        })
    }

    async fn unseal(&self, share: &ShareSecret) -> Result<SealStatus, VaultError> {
        if share.is_empty() {
            return Err(VaultError::InvalidShare);
        }
        // The request body is the only copy of the share this client makes: written once into
        // a buffer sized for it (no reallocation leaves a stray copy) and zeroised when the HTTP
        // stack drops the body. (vaultrs would take an owned String it never zeroises.)
        let mut body = zeroize::Zeroizing::new(Vec::with_capacity(share.expose().len() * 6 + 16));
        serde_json::to_writer(&mut *body, &serde_json::json!({ "key": share.expose() }))
            .map_err(|_| VaultError::InvalidShare)?;
        let body = bytes::Bytes::from_owner(ZeroizedBody(body));
        let resp = self
            .inner
            .http
            .http
            .put(format!("{}/v1/sys/unseal", self.base))
            .header("X-Vault-Request", "true")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(
                    call = Call::Unseal.name(),
                    timeout = e.is_timeout(),
                    "Vault unreachable"
                );
                VaultError::Unreachable
            })?;
        let status = resp.status().as_u16();
        if status != 200 {
            let text = resp.bytes().await.unwrap_or_default();
            let errors = serde_json::from_slice::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| {
                    v.get("errors")?.as_array().map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect::<Vec<_>>()
                    })
                })
                .unwrap_or_default();
            let mapped = classify(Call::Unseal, Some(status), &errors);
            tracing::warn!(call = Call::Unseal.name(), status, outcome = %mapped, "Vault refused an unseal call");
            return Err(mapped);
        }
        self.seal_status().await
    }

    async fn reset_unseal(&self) -> Result<SealStatus, VaultError> {
        vaultrs::sys::unseal(&self.inner, None, Some(true), None)
            .await
            .map_err(|e| self.map_err(Call::ResetUnseal, e))?;
        self.seal_status().await
    }

    async fn seal(&self) -> Result<(), VaultError> {
        self.need_token()?;
        vaultrs::sys::seal(&self.inner)
            .await
            .map_err(|e| self.map_err(Call::Seal, e))
    }

    async fn secret_metadata(
        &self,
        mount: &str,
        path: &str,
    ) -> Result<Option<SecretMeta>, VaultError> {
        self.need_token()?;
        let meta = match vaultrs::kv2::read_metadata(&self.inner, mount, path).await {
            Ok(m) => m,
            Err(ClientError::APIError { code: 404, .. }) => return Ok(None),
            Err(e) => return Err(self.map_err(Call::Metadata, e)),
        };
        let current = meta.versions.get(&meta.current_version.to_string());
        let current_deleted = match current {
            Some(v) => v.destroyed || !v.deletion_time.is_empty(),
            None => true,
        };
        Ok(Some(SecretMeta {
            created_time: parse_time(&meta.created_time)?,
            updated_time: parse_time(&meta.updated_time)?,
            current_version: meta.current_version,
            current_deleted,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_errors_are_classified_safely() {
        let key = vec!["'key' must be a valid hex or base64 string".to_string()];
        assert_eq!(
            classify(Call::Unseal, Some(400), &key),
            VaultError::InvalidShare
        );
        let combine = vec!["unable to retrieve stored keys: invalid key".to_string()];
        assert_eq!(
            classify(Call::Unseal, Some(400), &combine),
            VaultError::InvalidShare
        );
        let uninit = vec!["Vault is not initialized".to_string()];
        assert_eq!(
            classify(Call::Unseal, Some(400), &uninit),
            VaultError::NotInitialized
        );
        assert_eq!(classify(Call::Seal, Some(403), &[]), VaultError::Forbidden);
        let sealed = vec!["Vault is sealed".to_string()];
        assert_eq!(
            classify(Call::Metadata, Some(503), &sealed),
            VaultError::Sealed
        );
        assert_eq!(
            classify(Call::Metadata, Some(500), &[]),
            VaultError::Api { status: 500 }
        );
        assert_eq!(classify(Call::Seal, None, &[]), VaultError::InvalidResponse);
    }

    #[test]
    fn vault_client_rejects_bad_addresses_and_hides_its_token() {
        let cfg = |address: &str| VaultConfig {
            address: address.to_string(),
            token: crate::secret::SecretSource::env("SPROCKET_OPS_SURELY_UNSET_VAULT_TOKEN"),
            ca_cert: None,
            secret_paths: vec![],
            ceremony_idle_minutes: 10,
            timeout_secs: 5,
        };
        assert!(matches!(
            VaultClient::new(&cfg("not a url")),
            Err(VaultError::NotConfigured(_))
        ));
        assert!(matches!(
            VaultClient::new(&cfg("ftp://vault")),
            Err(VaultError::NotConfigured(_))
        ));
        let c = VaultClient::new(&cfg("http://127.0.0.1:8200/")).unwrap();
        assert_eq!(c.address(), "http://127.0.0.1:8200");
        assert!(!c.has_token());
        assert_eq!(
            format!("{c:?}"),
            "VaultClient { address: \"http://127.0.0.1:8200\", token: \"(none)\" }"
        );
    }

    #[tokio::test]
    async fn vault_client_without_token_refuses_seal_and_metadata_without_calling() {
        // Nothing listens on a port that was bound and released: a call fails as Unreachable.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let cfg = VaultConfig {
            address: format!("http://127.0.0.1:{port}"),
            token: crate::secret::SecretSource::env("SPROCKET_OPS_SURELY_UNSET_VAULT_TOKEN"),
            ca_cert: None,
            secret_paths: vec![],
            ceremony_idle_minutes: 10,
            timeout_secs: 2,
        };
        let c = VaultClient::new(&cfg).unwrap();
        assert!(matches!(c.seal().await, Err(VaultError::NotConfigured(_))));
        assert!(matches!(
            c.secret_metadata("secret", "x").await,
            Err(VaultError::NotConfigured(_))
        ));
        assert_eq!(c.seal_status().await, Err(VaultError::Unreachable));
    }
}
