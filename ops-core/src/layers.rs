//! Which Pulumi layer a Swarm service belongs to: a service label naming the layer wins, then the
//! layers' name patterns in layer order. Pure: no I/O.

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

/// `*` matches any run of characters (including none); everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_cases() {
        let cases = [
            ("prod-*", "prod-sprocket-web-service", true),
            ("prod-*", "prod-", true),
            ("prod-*", "production", false),
            ("traefik*", "traefik-d3127fd", true),
            ("vault-service", "vault-service", true),
            ("vault-service", "vault-service-2", false),
            ("*-bot-*", "prod-discord-bot-service", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "acb", false),
            ("ab*ba", "aba", false),
        ];
        for (p, t, want) in cases {
            assert_eq!(glob_match(p, t), want, "{p} ~ {t}");
        }
    }

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

/// Up to three candidates closest to `input` (by Jaro-Winkler similarity), for "did you mean"
/// errors on unknown names.
pub fn closest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut scored: Vec<(f64, &str)> = candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(input, c), c))
        .filter(|(s, _)| *s >= 0.8)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    scored.into_iter().take(3).map(|(_, c)| c).collect()
}

#[cfg(test)]
mod closest_tests {
    #[test]
    fn suggests_near_names_only() {
        let names = ["layer_1", "layer_2", "platform"];
        assert_eq!(super::closest("platfrom", names), ["platform"]);
        assert_eq!(
            super::closest("layer_3", names)[..2],
            ["layer_1", "layer_2"]
        );
        assert!(super::closest("zzz", names).is_empty());
    }
}
