//! Unit tests of the pages' limits, colours and contents.

use super::*;
use ops_core::alerts::{AlertState, Phase, ProbeResult, Severity};
use ops_core::status::{LayerStatus, ServiceStatus, StatusReport};

fn report(n: usize) -> StatusReport {
    let services = (0..n)
        .map(|i| ServiceStatus {
            name: format!("prod-service-with-a-long-name-{i:03}"),
            image: format!("asaxplayinghorse/sprocket-web:main-{i}"),
            running: (i % 3) as u64,
            desired: 2,
            layer: "platform".into(),
            update_state: None,
            failing_tasks: vec![],
        })
        .collect();
    StatusReport {
        layers: vec![LayerStatus {
            name: "platform".into(),
            services,
        }],
        nodes: vec![],
        docker_error: None,
    }
}

#[test]
fn large_swarms_split_into_pages_within_discord_limits() {
    for n in [0, 1, 10, 50, 300] {
        let pages = status_pages(&report(n), &HealthView::default());
        let mut seen = 0;
        for p in &pages {
            assert!(p.fields.len() <= FIELDS_MAX);
            assert!(p.len() <= 6000, "{n}: {}", p.len());
            assert!(p.description.len() <= 4096);
            for (name, v) in &p.fields {
                assert!(name.len() <= 256 && v.len() <= FIELD_VALUE_MAX, "{n}");
                seen += v.matches("prod-service-with").count();
            }
        }
        assert_eq!(seen, n, "every service appears exactly once");
    }
}

#[test]
fn colour_follows_the_worst_service() {
    let none = HealthView::default();
    assert_eq!(status_pages(&report(1), &none)[0].color, RED);
    assert_eq!(status_pages(&report(0), &none)[0].color, GREEN);
    let r = StatusReport::unavailable("the Docker engine is unreachable (error id E1)");
    let p = &status_pages(&r, &none)[0];
    assert_eq!(p.color, RED);
    assert!(p.description.contains("unreachable"));
}

fn probe(name: &str, kind: &str, ok: bool, severity: Severity, summary: &str) -> ProbeResult {
    ProbeResult {
        name: name.into(),
        kind: kind.into(),
        layer: Some("layer_1".into()),
        ok,
        severity,
        summary: summary.into(),
        at_ms: 0,
    }
}

fn alert(key: &str, phase: Phase, severity: Severity) -> AlertState {
    AlertState {
        key: key.into(),
        phase,
        layer: Some("platform".into()),
        severity,
        summary: "0 of 1 tasks running".into(),
        consecutive_failures: 3,
        consecutive_ok: 0,
        first_failure_ms: Some(1_700_000_000_000),
        firing_since_ms: (phase == Phase::Firing).then_some(1_700_000_060_000),
        resolved_at_ms: None,
        notified: phase == Phase::Firing,
        last_notified_ms: None,
        held_under: None,
        updated_ms: 0,
    }
}

fn health(open: Vec<AlertState>, probes: Vec<ProbeResult>) -> HealthView {
    HealthView {
        alerts: Some(AlertsView {
            open,
            probes,
            silences: vec![],
        }),
        vault: None,
        now_ms: 1_700_000_100_000,
    }
}

fn text(pages: &[Page]) -> String {
    pages
        .iter()
        .flat_map(|p| {
            [p.description.clone()]
                .into_iter()
                .chain(p.fields.iter().map(|(n, v)| format!("{n}\n{v}")))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// (case, open alerts, probes, direct vault, expected colour): the colour is the worst
/// state of services, alerts, probes and Vault.
#[test]
fn status_colour_is_the_worst_of_alerts_probes_and_vault() {
    use Severity::*;
    let ok_probe = probe("web", "http", true, Critical, "HTTP 200");
    type Case = (
        &'static str,
        Vec<AlertState>,
        Vec<ProbeResult>,
        Option<VaultView>,
        u32,
    );
    let cases: Vec<Case> = vec![
        ("all fine", vec![], vec![ok_probe.clone()], None, GREEN),
        (
            "pending",
            vec![alert("service:a", Phase::Pending, Critical)],
            vec![],
            None,
            YELLOW,
        ),
        (
            "firing warning",
            vec![alert("service:a", Phase::Firing, Warning)],
            vec![],
            None,
            YELLOW,
        ),
        (
            "firing critical",
            vec![alert("service:a", Phase::Firing, Critical)],
            vec![],
            None,
            RED,
        ),
        (
            "warning probe",
            vec![],
            vec![probe(
                "cert",
                "tls",
                false,
                Warning,
                "certificate expires in 3 days",
            )],
            None,
            YELLOW,
        ),
        (
            "critical probe",
            vec![],
            vec![probe("web", "http", false, Critical, "connection refused")],
            None,
            RED,
        ),
        (
            "vault sealed",
            vec![],
            vec![],
            Some(VaultView {
                ok: false,
                text: "sealed".into(),
            }),
            RED,
        ),
        (
            "vault fine",
            vec![],
            vec![],
            Some(VaultView {
                ok: true,
                text: "unsealed".into(),
            }),
            GREEN,
        ),
    ];
    for (case, open, probes, vault, colour) in cases {
        let mut h = health(open, probes);
        h.vault = vault;
        let pages = status_pages(&report(0), &h);
        assert_eq!(pages[0].color, colour, "{case}: {}", text(&pages));
    }
    // A silenced firing alert is marked, and still red: a silence is not a fix.
    let mut h = health(vec![alert("service:a", Phase::Firing, Critical)], vec![]);
    h.alerts.as_mut().unwrap().silences = vec![("service:*".into(), h.now_ms + 1)];
    let pages = status_pages(&report(0), &h);
    assert_eq!(pages[0].color, RED);
    assert!(
        text(&pages).contains("`service:a` firing"),
        "{}",
        text(&pages)
    );
    assert!(text(&pages).contains("🔕"));
    assert!(
        text(&pages).contains("Silences (1)\n🔕 `service:*` until <t:1700000100:f>"),
        "{}",
        text(&pages)
    );
}

#[test]
fn pages_are_redacted_within_limits() {
    let r = Redactor::new(["hunter2-secret-value"]);
    let page = Page {
        title: "t hunter2-secret-value".into(),
        description: "d".into(),
        color: GREEN,
        fields: vec![("f".into(), "x".repeat(1000) + "hunter2-secret-value")],
        footer: String::new(),
    };
    let p = page.redacted(&r);
    assert!(!format!("{p:?}").contains("hunter2"), "{p:?}");
    assert!(p.fields[0].1.len() <= FIELD_VALUE_MAX);
}

#[test]
fn status_lists_alerts_probes_vault_and_certificates_in_their_fields() {
    use Severity::*;
    let mut held = alert("service:held", Phase::Firing, Warning);
    held.held_under = Some("probe:traefik".into());
    let h = health(
        vec![
            alert("service:pending", Phase::Pending, Critical),
            alert("service:firing", Phase::Firing, Critical),
            held,
        ],
        vec![
            probe("web", "http", false, Critical, "connection refused"),
            probe("bao", "vault_seal", true, Critical, "unsealed"),
            probe(
                "cert",
                "tls",
                false,
                Warning,
                "certificate expires in 3 days",
            ),
        ],
    );
    let pages = status_pages(&report(2), &h);
    let p = &pages[0];
    let field = |name: &str| {
        p.fields
            .iter()
            .find(|(n, _)| n.starts_with(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no field {name}: {p:?}"))
    };
    let open = field("Open alerts (3)");
    assert!(open.contains("`service:held` firing"), "{open}");
    assert!(open.contains("(held under `probe:traefik`)"), "{open}");
    assert!(
        open.find("service:firing").unwrap() < open.find("service:pending").unwrap(),
        "firing first: {open}"
    );
    assert!(open.contains("since <t:1700000060:R>"), "{open}");
    assert!(field("Probes").contains("❌ `web` (http, critical): connection refused"));
    assert!(field("Vault").contains("unsealed"));
    assert!(field("Certificates").contains("expires in 3 days"));
    assert!(p
        .description
        .contains("alerts: 2 firing, 1 pending · probes: 1/3 ok"));
    assert!(
        !field("Probes").contains("cert"),
        "tls probes only under Certificates"
    );

    // No watcher: said so, never an empty "all fine".
    let none = status_pages(&report(0), &HealthView::default());
    assert!(none[0].description.contains("alerts: not running"));
    assert!(none[0]
        .fields
        .iter()
        .all(|(n, _)| !n.starts_with("Open alerts")));

    // Docker down: the alerts are still shown.
    let r = StatusReport::unavailable("the Docker engine is unreachable (error id E1)");
    let pages = status_pages(&r, &h);
    assert_eq!(pages[0].color, RED);
    assert!(text(&pages).contains("service:firing"));
}

#[test]
fn many_alerts_and_probes_paginate_within_discord_limits() {
    use Severity::*;
    for n in [0usize, 1, 30, 400] {
        let open: Vec<AlertState> = (0..n)
            .map(|i| {
                alert(
                    &format!("service:prod-crashing-service-{i:04}"),
                    Phase::Firing,
                    Critical,
                )
            })
            .collect();
        let probes: Vec<ProbeResult> = (0..n)
            .map(|i| {
                probe(
                    &format!("probe-{i:04}"),
                    "http",
                    i % 2 == 0,
                    Critical,
                    &"x".repeat(300),
                )
            })
            .collect();
        let pages = status_pages(&report(n), &health(open, probes));
        let (mut alerts_seen, mut probes_seen) = (0, 0);
        for p in &pages {
            assert!(p.fields.len() <= FIELDS_MAX);
            assert!(p.len() <= 6000, "{n}: {}", p.len());
            for (name, v) in &p.fields {
                assert!(name.len() <= 256 && v.len() <= FIELD_VALUE_MAX, "{n}");
                alerts_seen += v.matches("prod-crashing-service-").count();
                probes_seen += v.matches("`probe-").count();
            }
        }
        assert_eq!(
            (alerts_seen, probes_seen),
            (n, n),
            "every alert and probe appears once"
        );
    }
}

#[test]
fn only_layer_keeps_that_layers_alerts_and_probes() {
    let h = health(
        vec![alert("service:a", Phase::Firing, Severity::Critical)],
        vec![probe("web", "http", true, Severity::Critical, "HTTP 200")],
    );
    let mut with_vault = h.clone();
    with_vault.vault = Some(VaultView {
        ok: true,
        text: "unsealed".into(),
    });
    let p = with_vault.clone().only_layer("platform");
    assert_eq!(p.alerts.as_ref().unwrap().open.len(), 1);
    assert!(p.alerts.as_ref().unwrap().probes.is_empty());
    assert!(p.vault.is_none());
    let l1 = with_vault.only_layer("layer_1");
    assert!(l1.alerts.as_ref().unwrap().open.is_empty());
    assert_eq!(l1.alerts.as_ref().unwrap().probes.len(), 1);
    assert!(l1.vault.is_some());
}

#[test]
fn progress_bar_is_bounded_for_any_counts() {
    for (done, total, filled) in [
        (0, 0, 10),
        (0, 5, 0),
        (1, 2, 5),
        (3, 2, 10),
        (u64::MAX, u64::MAX, 10),
    ] {
        let bar = progress_bar(done, total);
        assert_eq!(bar.matches('#').count(), filled, "{done}/{total}: {bar}");
        assert_eq!(bar.len(), 14, "{bar}");
    }
}

#[test]
fn clip_respects_char_boundaries() {
    assert_eq!(clip("héllo", 3), "h…");
    assert_eq!(clip("ok", 10), "ok");
}

/// Discord's embed limits, checked on what `to_embed` sends (characters, as Discord counts).
fn assert_within_discord_limits(embed: &serenity::CreateEmbed) {
    let v = serde_json::to_value(embed).unwrap();
    let len = |k: &str| v[k].as_str().map_or(0, |s| s.chars().count());
    let mut total = len("title") + len("description");
    assert!(len("title") <= 256, "title {}", len("title"));
    assert!(
        len("description") <= 4096,
        "description {}",
        len("description")
    );
    let footer = v["footer"]["text"]
        .as_str()
        .map_or(0, |s| s.chars().count());
    assert!(footer <= 2048, "footer {footer}");
    total += footer;
    let fields = v["fields"].as_array().cloned().unwrap_or_default();
    assert!(fields.len() <= 25, "{} fields", fields.len());
    for f in &fields {
        let n = f["name"].as_str().unwrap().chars().count();
        let val = f["value"].as_str().unwrap().chars().count();
        assert!(n <= 256 && val <= 1024, "field {n}/{val}");
        total += n + val;
    }
    assert!(total <= 6000, "total {total}");
}

#[test]
fn every_page_is_clipped_to_discords_limits_when_it_becomes_an_embed() {
    let tag = "t".repeat(300);
    let p = ops_core::deploy::DeployProgress::new("platform");
    let page = deploy_progress_page("platform", Some(&tag), &p, std::time::Duration::ZERO);
    assert!(page.title.len() > 256, "the case: a typed tag in the title");
    assert_within_discord_limits(&page.to_embed());
    let huge = Page {
        title: "é".repeat(300),
        description: "d".repeat(5000),
        color: GREEN,
        fields: (0..30)
            .map(|i| (format!("{i}{}", "n".repeat(300)), "v".repeat(2000)))
            .collect(),
        footer: "f".repeat(3000),
    };
    assert_within_discord_limits(&huge.to_embed());
    let summary = format!("deploy `platform` image `{tag}`: {}", "x".repeat(5000));
    assert_within_discord_limits(&deploy_approval_needed_page(&tag, &summary).to_embed());
}
