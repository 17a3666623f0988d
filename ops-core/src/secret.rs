//! Secrets and where they come from. A [`Secret`] never prints its value (Debug and Display show
//! `***`); a [`SecretSource`] names an env var or a file, never the value itself, so secrets cannot
//! be committed in the config file.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// A secret value. Its value is only reachable through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    /// The value, for the one place that must send it (an Authorization header, a connect call).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}
impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a secret comes from: `{ env = "NAME" }` or `{ file = "/run/secrets/name" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    #[serde(default)]
    pub env: Option<String>,
    #[serde(default)]
    pub file: Option<PathBuf>,
}

impl SecretSource {
    pub fn env(name: &str) -> SecretSource {
        SecretSource {
            env: Some(name.to_string()),
            file: None,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        match (&self.env, &self.file) {
            (Some(_), Some(_)) => Err("give either `env` or `file`, not both".into()),
            (None, None) => Err("give `env = \"NAME\"` or `file = \"/path\"`".into()),
            (Some(e), None) if e.is_empty() || e.contains('=') => {
                Err(format!("`{e}` is not an environment variable name"))
            }
            _ => Ok(()),
        }
    }

    /// Reads the secret. The error names the source, never a value.
    pub fn resolve(&self) -> Result<Secret, String> {
        if let Some(name) = &self.env {
            return match std::env::var(name) {
                Ok(v) if !v.trim().is_empty() => Ok(Secret(v.trim().to_string())),
                Ok(_) => Err(format!("environment variable {name} is empty")),
                Err(_) => Err(format!("environment variable {name} is not set")),
            };
        }
        if let Some(path) = &self.file {
            return match std::fs::read_to_string(path) {
                Ok(v) if !v.trim().is_empty() => Ok(Secret(v.trim().to_string())),
                Ok(_) => Err(format!("secret file {} is empty", path.display())),
                Err(e) => Err(format!(
                    "cannot read secret file {}: {}",
                    path.display(),
                    e.kind()
                )),
            };
        }
        Err("no source configured".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints_its_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
    }

    #[test]
    fn file_source_reads_and_trims() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tok");
        std::fs::write(&p, "abc\n").unwrap();
        let src = SecretSource {
            env: None,
            file: Some(p),
        };
        assert_eq!(src.resolve().unwrap().expose(), "abc");
    }

    #[test]
    fn missing_env_names_the_variable() {
        let e = SecretSource::env("SPROCKET_OPS_SURELY_UNSET_VAR")
            .resolve()
            .unwrap_err();
        assert!(e.contains("SPROCKET_OPS_SURELY_UNSET_VAR"));
    }
}
