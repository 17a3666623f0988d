//! Tests of the pure probe verdicts: Traefik and Gatus answers, certificates (read from real
//! DER, UTCTime and GeneralizedTime), RESP.

use super::redis::resp_error;
use super::*;

#[test]
fn alerts_traefik_and_gatus_verdicts() {
    use serde_json::json;
    let ok = |o: &ProbeOutcome| matches!(o, ProbeOutcome::Ok(_));
    let fail =
        |o: &ProbeOutcome, needle: &str| matches!(o, ProbeOutcome::Fail(s) if s.contains(needle));
    let routers = |statuses: &[&str]| {
        json!(statuses
            .iter()
            .enumerate()
            .map(|(i, s)| json!({"name": format!("r{i}@docker"), "status": s}))
            .collect::<Vec<_>>())
    };
    assert!(ok(&traefik_routers_verdict(&routers(&[
        "enabled", "enabled"
    ]))));
    let o = traefik_routers_verdict(&routers(&["enabled", "disabled", "warning"]));
    assert!(
        fail(
            &o,
            "2 of 3 routers not enabled: r1@docker (disabled), r2@docker (warning)"
        ),
        "{o:?}"
    );
    assert!(fail(
        &traefik_routers_verdict(&json!([])),
        "no HTTP routers"
    ));
    assert!(fail(
        &traefik_routers_verdict(&json!({"x": 1})),
        "not an array"
    ));
    let many = routers(&["disabled"; 8]);
    assert!(fail(&traefik_routers_verdict(&many), "and 3 more"));

    let ep = |group: &str, name: &str, results: &[bool]| json!({"name": name, "group": group, "results": results.iter().map(|s| json!({"success": s})).collect::<Vec<_>>()});
    assert!(ok(&gatus_verdict(&json!([ep(
        "core",
        "web",
        &[false, true]
    )]))));
    let o = gatus_verdict(&json!([
        ep("core", "web", &[true, false]),
        ep("", "api", &[true])
    ]));
    assert!(fail(&o, "1 of 2 endpoints failing: core/web"), "{o:?}");
    let o = gatus_verdict(&json!([ep("core", "web", &[true]), ep("core", "new", &[])]));
    assert!(
        matches!(&o, ProbeOutcome::Ok(s) if s.contains("1 without results yet")),
        "{o:?}"
    );
    assert!(fail(&gatus_verdict(&json!([])), "no endpoints"));
    assert!(fail(&gatus_verdict(&json!("x")), "not an array"));
}

#[test]
fn alerts_tls_verdicts() {
    let day = 86_400_000;
    let info = |cn: &str, days: i64| CertInfo {
        issuer_cn: Some(cn.into()),
        subject_cn: Some("x".into()),
        not_after_ms: days * day + 3_600_000,
    };
    assert_eq!(
        tls_verdict(&info("R3", 3), "h", 14, 0),
        ProbeOutcome::Warn("the certificate of h expires in 3 days".into())
    );
    assert!(matches!(
        tls_verdict(&info("R3", 30), "h", 14, 0),
        ProbeOutcome::Ok(_)
    ));
    assert!(matches!(
        tls_verdict(&info("R3", -2), "h", 14, 0),
        ProbeOutcome::Fail(_)
    ));
    assert!(matches!(
        tls_verdict(&info(TRAEFIK_DEFAULT_CERT, 300), "h", 14, 0),
        ProbeOutcome::Fail(m) if m.contains("default certificate")
    ));
    assert_eq!(
        resp_command(&["PING".into()]),
        b"*1\r\n$4\r\nPING\r\n".to_vec()
    );
    assert_eq!(
        resp_error("-WRONGPASS invalid username-password pair"),
        "WRONGPASS"
    );
}

/// A self-signed certificate for `cn`, valid until `year`-01-01, as DER.
fn certificate(cn: &str, year: i32) -> Vec<u8> {
    let mut params = rcgen::CertificateParams::new(vec!["h.example".into()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "sprocket");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.not_after = rcgen::date_time_ymd(year, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().der().to_vec()
}

#[test]
fn alerts_certificates_are_read_by_x509_parser() {
    // 2026 is written as UTCTime, 2051 as GeneralizedTime.
    for (year, not_after_ms) in [(2026, 1_767_225_600_000), (2051, 2_556_144_000_000)] {
        let info = parse_certificate(&certificate(TRAEFIK_DEFAULT_CERT, year)).unwrap();
        assert_eq!(
            info,
            CertInfo {
                issuer_cn: Some(TRAEFIK_DEFAULT_CERT.into()),
                subject_cn: Some(TRAEFIK_DEFAULT_CERT.into()),
                not_after_ms,
            }
        );
    }
    let der = certificate("R3", 2026);
    assert_eq!(parse_certificate(&der[..der.len() / 2]), None, "truncated");
    assert_eq!(parse_certificate(b"not a certificate"), None);
    assert_eq!(parse_certificate(&[]), None);
}
