//! What may change which service, decided from the configuration before anything runs (issue
//! 12, "one person must not change a protected layer by another command"). Pure: no I/O.
//!
//! - A service of a layer with `always_requires_approval` changes only through an approval:
//!   bump, restart, scale and rollback become the actions `protected_bump`,
//!   `protected_restart`, `protected_scale` and `protected_rollback` (permissions.toml).
//! - sprocket-ops' own services (the bot and its socket proxy) are never changed from chat or
//!   the CLI's normal path, approved or not: only the CLI's `--break-glass`. They are the
//!   services named in `[self_services] names` (default: the names `docker stack deploy -c
//!   deploy/sprocket-ops.stack.yml sprocket-ops` gives them) and every service carrying the
//!   label `[self_services] label` (default `sprocket-ops.self`) with the value `true` (the
//!   shipped stack file sets it, so a stack deployed under another name is covered too).
//! - `[images] allowed`: the repositories a full image reference may name, as globs over the
//!   normalised repository (`registry/path`, Docker Hub as `docker.io/library/…`). A bare tag
//!   keeps the service's current repository and is always allowed; an empty list allows tags
//!   only.

use std::collections::BTreeSet;
use std::str::FromStr;

use oci_spec::distribution::Reference;

pub use crate::config::images::{
    ImagesConfig, RepoPattern, SelfServicesConfig, DEFAULT_SELF_LABEL, DEFAULT_SELF_SERVICES,
};
use crate::layers::LayerMap;
use crate::swarm::{ImageTarget, ServiceInfo};

/// The approval action of each change to a service of a protected layer.
pub const PROTECTED_BUMP: &str = "protected_bump";
pub const PROTECTED_RESTART: &str = "protected_restart";
pub const PROTECTED_SCALE: &str = "protected_scale";
pub const PROTECTED_ROLLBACK: &str = "protected_rollback";

/// `registry/path` of a reference, normalised as the engine does (`web` is
/// `docker.io/library/web`, registry hosts lowercase); `None` when it is not a reference.
pub fn repository_of(reference: &str) -> Option<String> {
    let r = Reference::from_str(reference).ok()?;
    Some(format!(
        "{}/{}",
        r.registry().to_ascii_lowercase(),
        r.repository()
    ))
}

/// The image allow-list.
#[derive(Debug, Clone, Default)]
pub struct ImagePolicy {
    allowed: Vec<RepoPattern>,
}

impl ImagePolicy {
    /// From validated patterns (an invalid one is dropped: the policy only gets stricter).
    pub fn new(patterns: &[String]) -> ImagePolicy {
        ImagePolicy {
            allowed: patterns
                .iter()
                .filter_map(|p| RepoPattern::parse(p).ok())
                .collect(),
        }
    }

    /// `Ok` for a tag (it stays in the service's repository) and for a reference whose
    /// repository matches a pattern; else the refusal, safe to show.
    pub fn check(&self, target: &ImageTarget) -> Result<(), String> {
        let ImageTarget::Reference(r) = target else {
            return Ok(());
        };
        let Some(repo) = repository_of(r) else {
            return Err(format!("`{r}` is not an image reference"));
        };
        if self.allowed.iter().any(|p| p.matches(&repo)) {
            return Ok(());
        }
        Err(if self.allowed.is_empty() {
            format!(
                "refused: `{r}` is a full image reference and only tags are allowed here (`[images] allowed` is empty); give a tag like `v2`, which keeps the service's repository"
            )
        } else {
            format!(
                "refused: `{repo}` is not an allowed repository (`[images] allowed`: {}); give a tag like `v2`, which keeps the service's repository",
                self.allowed
                    .iter()
                    .map(|p| format!("`{}`", p.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }
}

/// The policy as configured.
#[derive(Debug, Clone)]
pub struct Protection {
    layers: LayerMap,
    protected_layers: BTreeSet<String>,
    self_names: BTreeSet<String>,
    self_label: String,
    pub images: ImagePolicy,
}

impl Protection {
    pub fn from_config(cfg: &crate::config::Config) -> Protection {
        Protection {
            layers: LayerMap::from_config(cfg),
            protected_layers: cfg
                .layers
                .iter()
                .filter(|(_, l)| l.always_requires_approval)
                .map(|(n, _)| n.clone())
                .collect(),
            self_names: cfg.self_services.names.iter().cloned().collect(),
            self_label: cfg.self_services.label.clone(),
            images: ImagePolicy::new(&cfg.images.allowed),
        }
    }

    /// Whether `s` is one of sprocket-ops' own services (by name or by label).
    pub fn is_self(&self, s: &ServiceInfo) -> bool {
        self.self_names.contains(&s.name)
            || s.labels.get(&self.self_label).is_some_and(|v| v == "true")
    }

    /// The layer of `s` when that layer has `always_requires_approval`.
    pub fn protected_layer(&self, s: &ServiceInfo) -> Option<String> {
        let layer = self
            .layers
            .layer_of(&s.name, |k| s.labels.get(k).map(String::as_str))?;
        self.protected_layers
            .contains(layer)
            .then(|| layer.to_string())
    }
}

pub mod executors;

#[cfg(test)]
mod tests;
