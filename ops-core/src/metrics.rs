//! A small, dependency-free metrics registry (atomics and a map per family; no I/O), rendered in
//! the Prometheus text exposition format (version 0.0.4) by [`Metrics::render_prometheus`].
//!
//! One [`Metrics`] value lives for the process, shared as `Arc<Metrics>`; the frontends count
//! what happens (commands, approvals, deploys, alerts, gateway reconnects, Discord REST latency)
//! and the bot's HTTP endpoint serves the text on `GET /metrics`.
//!
//! Label values come from the program (command names, outcomes, layer names), never from free
//! text, but each family is still capped at [`MAX_SERIES_PER_FAMILY`] label sets: beyond it,
//! increments are counted under the label set whose every value is `other`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Duration;

/// `Content-Type` of [`Metrics::render_prometheus`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// At most this many label sets per counter family (see the module documentation).
pub const MAX_SERIES_PER_FAMILY: usize = 500;

/// Upper bounds (seconds) of the Discord REST latency histogram buckets; `+Inf` is implied.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The process-wide metrics. Every method takes `&self` and is cheap (an atomic increment; a
/// short write lock only the first time a label set is seen).
pub struct Metrics {
    commands: Family,
    approvals: Family,
    deploys: Family,
    alerts: Family,
    gateway_reconnects: AtomicU64,
    discord_rest: Histogram,
    /// Label values are redacted with it when rendered (see [`Metrics::redact_with`]).
    redactor: std::sync::OnceLock<std::sync::Arc<crate::redact::Redactor>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            commands: Family::new(
                "sprocket_ops_commands_total",
                "Commands handled, by command name and outcome (ok, error, denied).",
                &["command", "outcome"],
            ),
            approvals: Family::new(
                "sprocket_ops_approvals_total",
                "Approval requests that reached a final state, by outcome.",
                &["outcome"],
            ),
            deploys: Family::new(
                "sprocket_ops_deploys_total",
                "Layer deploys that finished, by layer and result.",
                &["layer", "result"],
            ),
            alerts: Family::new(
                "sprocket_ops_alerts_total",
                "Alerts posted, by severity.",
                &["severity"],
            ),
            gateway_reconnects: AtomicU64::new(0),
            discord_rest: Histogram::new(&LATENCY_BUCKETS),
            redactor: std::sync::OnceLock::new(),
        }
    }

    /// Renders every label value through `redactor` (the first one set stays).
    pub fn redact_with(&self, redactor: std::sync::Arc<crate::redact::Redactor>) {
        let _ = self.redactor.set(redactor);
    }

    /// A command finished with `outcome` (`ok`, `error`, `denied`: `audit::Outcome::as_str`).
    pub fn command(&self, name: &str, outcome: &str) {
        self.commands.inc(&[name, outcome]);
    }

    /// An approval request ended: `approved`, `denied`, `expired`, `failed`, ...
    pub fn approval(&self, outcome: &str) {
        self.approvals.inc(&[outcome]);
    }

    /// A deploy of `layer` finished with `result` (`succeeded`, `failed`, `cancelled`, ...).
    pub fn deploy(&self, layer: &str, result: &str) {
        self.deploys.inc(&[layer, result]);
    }

    /// An alert of `severity` (`critical`, `warning`, `info`, ...) was posted.
    pub fn alert(&self, severity: &str) {
        self.alerts.inc(&[severity]);
    }

    /// The Discord gateway connection was lost and is being re-established.
    pub fn gateway_reconnect(&self) {
        self.gateway_reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// One Discord REST request took `elapsed`.
    pub fn discord_rest_latency(&self, elapsed: Duration) {
        self.discord_rest.observe(elapsed);
    }

    /// How often `command` ended with `outcome` so far.
    pub fn command_count(&self, name: &str, outcome: &str) -> u64 {
        self.commands.get(&[name, outcome])
    }

    pub fn approval_count(&self, outcome: &str) -> u64 {
        self.approvals.get(&[outcome])
    }

    pub fn deploy_count(&self, layer: &str, result: &str) -> u64 {
        self.deploys.get(&[layer, result])
    }

    pub fn alert_count(&self, severity: &str) -> u64 {
        self.alerts.get(&[severity])
    }

    pub fn gateway_reconnect_count(&self) -> u64 {
        self.gateway_reconnects.load(Ordering::Relaxed)
    }

    /// Number of Discord REST requests observed.
    pub fn discord_rest_count(&self) -> u64 {
        self.discord_rest.snapshot().1
    }

    /// Every metric in the Prometheus text format (families in a fixed order, label sets sorted).
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        render_header(
            &mut out,
            "sprocket_ops_build_info",
            "The running sprocket-ops version (always 1).",
            "gauge",
        );
        render_sample(
            &mut out,
            "sprocket_ops_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            "1",
        );
        self.commands.render(&mut out);
        self.approvals.render(&mut out);
        self.deploys.render(&mut out);
        self.alerts.render(&mut out);
        render_header(
            &mut out,
            "sprocket_ops_gateway_reconnects_total",
            "Times the Discord gateway connection was lost and re-established.",
            "counter",
        );
        render_sample(
            &mut out,
            "sprocket_ops_gateway_reconnects_total",
            &[],
            &self.gateway_reconnect_count().to_string(),
        );
        self.discord_rest.render(
            &mut out,
            "sprocket_ops_discord_rest_request_duration_seconds",
            "Duration of Discord REST requests.",
        );
        match self.redactor.get() {
            Some(r) => r.redact(&out).into_owned(),
            None => out,
        }
    }
}

/// One gauge in the text format (`# HELP`, `# TYPE`, the sample): for values kept outside
/// [`Metrics`], such as whether the gateway is connected.
pub fn render_gauge(name: &str, help: &str, labels: &[(&str, &str)], value: f64) -> String {
    let mut out = String::new();
    render_header(&mut out, name, help, "gauge");
    render_sample(&mut out, name, labels, &format_float(value));
    out
}

/// A counter family with a fixed list of label names.
struct Family {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    series: RwLock<BTreeMap<Vec<String>, AtomicU64>>,
}

impl Family {
    fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Family {
        Family {
            name,
            help,
            labels,
            series: RwLock::new(BTreeMap::new()),
        }
    }

    fn inc(&self, values: &[&str]) {
        debug_assert_eq!(values.len(), self.labels.len(), "{}", self.name);
        let key: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        {
            let series = self.series.read().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = series.get(&key) {
                c.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let mut series = self.series.write().unwrap_or_else(|e| e.into_inner());
        let key = if series.len() >= MAX_SERIES_PER_FAMILY && !series.contains_key(&key) {
            vec!["other".to_string(); self.labels.len()]
        } else {
            key
        };
        series
            .entry(key)
            .or_insert_with(|| AtomicU64::new(0))
            .fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self, values: &[&str]) -> u64 {
        let key: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        let series = self.series.read().unwrap_or_else(|e| e.into_inner());
        series.get(&key).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    fn render(&self, out: &mut String) {
        render_header(out, self.name, self.help, "counter");
        let series = self.series.read().unwrap_or_else(|e| e.into_inner());
        for (values, count) in series.iter() {
            let labels: Vec<(&str, &str)> = self
                .labels
                .iter()
                .copied()
                .zip(values.iter().map(String::as_str))
                .collect();
            render_sample(
                out,
                self.name,
                &labels,
                &count.load(Ordering::Relaxed).to_string(),
            );
        }
    }
}

/// A histogram with fixed buckets. Counts are kept per bucket (not cumulative) plus one for
/// `+Inf`; the total count is their sum at render time, so `_count` always equals the `+Inf`
/// bucket.
struct Histogram {
    bounds: &'static [f64],
    /// `bounds.len() + 1` counters, the last one for values above every bound.
    buckets: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.bounds.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// (per-bucket counts, total count, sum in seconds).
    fn snapshot(&self) -> (Vec<u64>, u64, f64) {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total = counts.iter().sum();
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        (counts, total, sum)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        render_header(out, name, help, "histogram");
        let (counts, total, sum) = self.snapshot();
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&counts) {
            cumulative += count;
            render_sample(
                out,
                &bucket,
                &[("le", &format_float(*bound))],
                &cumulative.to_string(),
            );
        }
        render_sample(out, &bucket, &[("le", "+Inf")], &total.to_string());
        render_sample(out, &format!("{name}_sum"), &[], &format_float(sum));
        render_sample(out, &format!("{name}_count"), &[], &total.to_string());
    }
}

fn render_header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn render_sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: &str) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape_label_value(v));
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(value);
    out.push('\n');
}

/// Label values: `\` -> `\\`, `"` -> `\"`, newline -> `\n`.
pub fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text: `\` -> `\\`, newline -> `\n` (quotes stay as they are).
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Floats as Prometheus reads them: `+Inf`, `-Inf`, `NaN`, else Rust's shortest form.
fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const EMPTY_HISTOGRAM: &str = "\
# HELP sprocket_ops_discord_rest_request_duration_seconds Duration of Discord REST requests.
# TYPE sprocket_ops_discord_rest_request_duration_seconds histogram
sprocket_ops_discord_rest_request_duration_seconds_bucket{le=\"0.005\"} 0
sprocket_ops_discord_rest_request_duration_seconds_bucket{le=\"0.01\"} 0
sprocket_ops_discord_rest_request_duration_seconds_bucket{le=\"0.025\"} 0
sprocket_ops_discord_rest_request_duration_seconds_bucket{le=\"0.05\"} 0
sprocket_ops_discord_rest_request_duration_seconds_bucket{le=\"0.1\"} 0
sprocket_ops_discord_rest_request_duration_seconds_bucket{le=\"0.25\"} 0
sprocket_ops_discord_rest_request_duration_seconds_bucket{le=\"0.5\"} 0
sprocket_ops_discord_rest_request_duration_seconds_bucket{le=\"1\"} 0
sprocket_ops_discord_rest_request_duration_seconds_bucket{le=\"2.5\"} 0
sprocket_ops_discord_rest_request_duration_seconds_bucket{le=\"5\"} 0
sprocket_ops_discord_rest_request_duration_seconds_bucket{le=\"10\"} 0
sprocket_ops_discord_rest_request_duration_seconds_bucket{le=\"30\"} 0
sprocket_ops_discord_rest_request_duration_seconds_bucket{le=\"+Inf\"} 0
sprocket_ops_discord_rest_request_duration_seconds_sum 0
sprocket_ops_discord_rest_request_duration_seconds_count 0
";

    fn build_info() -> String {
        format!(
            "# HELP sprocket_ops_build_info The running sprocket-ops version (always 1).\n\
             # TYPE sprocket_ops_build_info gauge\n\
             sprocket_ops_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )
    }

    #[test]
    fn metrics_empty_registry_renders_every_family() {
        let expected = build_info()
            + "\
# HELP sprocket_ops_commands_total Commands handled, by command name and outcome (ok, error, denied).
# TYPE sprocket_ops_commands_total counter
# HELP sprocket_ops_approvals_total Approval requests that reached a final state, by outcome.
# TYPE sprocket_ops_approvals_total counter
# HELP sprocket_ops_deploys_total Layer deploys that finished, by layer and result.
# TYPE sprocket_ops_deploys_total counter
# HELP sprocket_ops_alerts_total Alerts posted, by severity.
# TYPE sprocket_ops_alerts_total counter
# HELP sprocket_ops_gateway_reconnects_total Times the Discord gateway connection was lost and re-established.
# TYPE sprocket_ops_gateway_reconnects_total counter
sprocket_ops_gateway_reconnects_total 0
"
            + EMPTY_HISTOGRAM;
        assert_eq!(Metrics::new().render_prometheus(), expected);
    }

    #[test]
    fn metrics_counters_and_histogram_render_exactly() {
        let m = Arc::new(Metrics::new());
        m.command("status", "ok");
        m.command("status", "ok");
        m.command("audit", "denied");
        m.approval("approved");
        m.deploy("layer_2", "succeeded");
        m.deploy("layer_1", "failed");
        m.alert("critical");
        m.gateway_reconnect();
        m.discord_rest_latency(Duration::from_millis(3));
        m.discord_rest_latency(Duration::from_millis(200));
        m.discord_rest_latency(Duration::from_millis(250));
        m.discord_rest_latency(Duration::from_secs(45));
        let text = m.render_prometheus();
        let expected = build_info()
            + "\
# HELP sprocket_ops_commands_total Commands handled, by command name and outcome (ok, error, denied).
# TYPE sprocket_ops_commands_total counter
sprocket_ops_commands_total{command=\"audit\",outcome=\"denied\"} 1
sprocket_ops_commands_total{command=\"status\",outcome=\"ok\"} 2
# HELP sprocket_ops_approvals_total Approval requests that reached a final state, by outcome.
# TYPE sprocket_ops_approvals_total counter
sprocket_ops_approvals_total{outcome=\"approved\"} 1
# HELP sprocket_ops_deploys_total Layer deploys that finished, by layer and result.
# TYPE sprocket_ops_deploys_total counter
sprocket_ops_deploys_total{layer=\"layer_1\",result=\"failed\"} 1
sprocket_ops_deploys_total{layer=\"layer_2\",result=\"succeeded\"} 1
# HELP sprocket_ops_alerts_total Alerts posted, by severity.
# TYPE sprocket_ops_alerts_total counter
sprocket_ops_alerts_total{severity=\"critical\"} 1
# HELP sprocket_ops_gateway_reconnects_total Times the Discord gateway connection was lost and re-established.
# TYPE sprocket_ops_gateway_reconnects_total counter
sprocket_ops_gateway_reconnects_total 1
# HELP sprocket_ops_discord_rest_request_duration_seconds Duration of Discord REST requests.
# TYPE sprocket_ops_discord_rest_request_duration_seconds histogram
sprocket_ops_discord_rest_request_duration_seconds_bucket{le=\"0.005\"} 1
sprocket_ops_discord_rest_request_duration_seconds_bucket{le=\"0.01\"} 1
sprocket_ops_discord_rest_request_duration_seconds_bucket{le=\"0.025\"} 1
sprocket_ops_discord_rest_request_duration_seconds_bucket{le=\"0.05\"} 1
sprocket_ops_discord_rest_request_duration_seconds_bucket{le=\"0.1\"} 1
sprocket_ops_discord_rest_request_duration_seconds_bucket{le=\"0.25\"} 3
sprocket_ops_discord_rest_request_duration_seconds_bucket{le=\"0.5\"} 3
sprocket_ops_discord_rest_request_duration_seconds_bucket{le=\"1\"} 3
sprocket_ops_discord_rest_request_duration_seconds_bucket{le=\"2.5\"} 3
sprocket_ops_discord_rest_request_duration_seconds_bucket{le=\"5\"} 3
sprocket_ops_discord_rest_request_duration_seconds_bucket{le=\"10\"} 3
sprocket_ops_discord_rest_request_duration_seconds_bucket{le=\"30\"} 3
sprocket_ops_discord_rest_request_duration_seconds_bucket{le=\"+Inf\"} 4
sprocket_ops_discord_rest_request_duration_seconds_sum 45.453
sprocket_ops_discord_rest_request_duration_seconds_count 4
";
        assert_eq!(text, expected);
        assert_eq!(m.command_count("status", "ok"), 2);
        assert_eq!(m.command_count("status", "error"), 0);
        assert_eq!(m.approval_count("approved"), 1);
        assert_eq!(m.deploy_count("layer_1", "failed"), 1);
        assert_eq!(m.alert_count("critical"), 1);
        assert_eq!(m.gateway_reconnect_count(), 1);
        assert_eq!(m.discord_rest_count(), 4);
    }

    #[test]
    fn metrics_label_values_are_escaped() {
        let m = Metrics::new();
        m.alert("quote\" backslash\\ newline\nend");
        let text = m.render_prometheus();
        assert!(
            text.contains(
                "sprocket_ops_alerts_total{severity=\"quote\\\" backslash\\\\ newline\\nend\"} 1\n"
            ),
            "{text}"
        );
        // Every sample stays on one line.
        assert!(text.lines().all(|l| l.starts_with('#') || l.contains(' ')));
        assert_eq!(escape_label_value(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label_value("x\ny"), "x\\ny");
        assert_eq!(escape_label_value("plain"), "plain");
    }

    #[test]
    fn metrics_gauge_and_help_escaping() {
        assert_eq!(
            render_gauge("g", "line one\nback\\slash \"q\"", &[("k", "v\"")], 1.0),
            "# HELP g line one\\nback\\\\slash \"q\"\n# TYPE g gauge\ng{k=\"v\\\"\"} 1\n"
        );
        assert_eq!(format_float(0.5), "0.5");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(f64::NAN), "NaN");
    }

    #[test]
    fn metrics_series_are_capped() {
        let m = Metrics::new();
        for i in 0..MAX_SERIES_PER_FAMILY + 10 {
            m.command(&format!("c{i}"), "ok");
        }
        assert_eq!(m.command_count("other", "other"), 10);
        let samples = m
            .render_prometheus()
            .lines()
            .filter(|l| l.starts_with("sprocket_ops_commands_total{"))
            .count();
        assert_eq!(samples, MAX_SERIES_PER_FAMILY + 1);
    }

    #[test]
    fn metrics_are_shared_across_threads() {
        let m = Arc::new(Metrics::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = Arc::clone(&m);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        m.command("status", "ok");
                        m.discord_rest_latency(Duration::from_millis(1));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(m.command_count("status", "ok"), 4000);
        assert_eq!(m.discord_rest_count(), 4000);
    }
}
