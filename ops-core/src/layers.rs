//! Which Pulumi layer a Swarm service belongs to: a service label naming the layer wins, then the
//! layers' name patterns in layer order. Pure: no I/O.

pub use crate::base::{closest, glob_match};
use crate::config::Config;

/// The layer map derived from the configuration.
#[derive(Debug, Clone)]
pub struct LayerMap {
    label: String,
    /// (layer name, patterns), in layer order.
    layers: Vec<(String, Vec<String>)>,
}

impl LayerMap {
    pub fn from_config(cfg: &Config) -> LayerMap {
        LayerMap {
            label: cfg.docker.layer_label.clone(),
            layers: cfg
                .layer_order
                .iter()
                .map(|name| (name.clone(), cfg.layers[name].services.clone()))
                .collect(),
        }
    }

    /// Layer names in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.layers.iter().map(|(n, _)| n.as_str())
    }

    pub fn contains(&self, layer: &str) -> bool {
        self.layers.iter().any(|(n, _)| n == layer)
    }

    /// The layer of a service, from its labels or its name.
    pub fn layer_of<'a>(
        &'a self,
        service_name: &str,
        label_value: impl FnOnce(&str) -> Option<&'a str>,
    ) -> Option<&'a str> {
        if let Some(v) = label_value(&self.label) {
            if let Some((n, _)) = self.layers.iter().find(|(n, _)| n == v) {
                return Some(n);
            }
        }
        self.layers
            .iter()
            .find(|(_, pats)| pats.iter().any(|p| glob_match(p, service_name)))
            .map(|(n, _)| n.as_str())
    }

    pub fn label_key(&self) -> &str {
        &self.label
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_wins_over_patterns() {
        let cfg =
            crate::config::Config::parse("t", include_str!("../../sprocket-ops.example.toml"))
                .unwrap();
        let m = LayerMap::from_config(&cfg);
        assert_eq!(m.layer_of("prod-web", |_| None), Some("platform"));
        assert_eq!(m.layer_of("prod-web", |_| Some("layer_2")), Some("layer_2"));
        assert_eq!(m.layer_of("prod-web", |_| Some("nope")), Some("platform"));
        assert_eq!(m.layer_of("grafana-x", |_| None), Some("layer_2"));
        assert_eq!(m.layer_of("random", |_| None), None);
    }
}
