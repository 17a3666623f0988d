//! Event log parsing, the tracker and the tail, on event logs as several CLI versions write them.

use super::*;

/// Recorded from a `pulumi up --event-log` of a Docker service image change (URNs and ids
/// shortened), plus a failed one.
const SAMPLE: &[&str] = &[
    r#"{"sequence":0,"timestamp":1731000000,"preludeEvent":{"config":{"platform:image-tag":"v2","platform:hostname":"sprocket.mlesports.gg"}}}"#,
    r#"{"sequence":1,"timestamp":1731000000,"resourcePreEvent":{"metadata":{"op":"same","urn":"urn:pulumi:prod::platform::pulumi:pulumi:Stack::platform-prod","type":"pulumi:pulumi:Stack","old":null,"new":null,"detailedDiff":null,"provider":""}}}"#,
    r#"{"sequence":2,"timestamp":1731000001,"resourcePreEvent":{"metadata":{"op":"update","urn":"urn:pulumi:prod::platform::docker:index/service:Service::web","type":"docker:index/service:Service","old":{"type":"docker:index/service:Service","urn":"urn:pulumi:prod::platform::docker:index/service:Service::web","custom":true,"id":"x1","parent":"urn:pulumi:prod::platform::pulumi:pulumi:Stack::platform-prod","inputs":{"name":"prod-web"},"outputs":{},"provider":"urn:pulumi:prod::platform::pulumi:providers:docker::default::1"},"new":{"type":"docker:index/service:Service","urn":"urn:pulumi:prod::platform::docker:index/service:Service::web","custom":true,"id":"x1","parent":"","inputs":{"name":"prod-web"},"outputs":null,"provider":""},"diffs":["taskSpec"],"detailedDiff":{"taskSpec.containerSpec.image":{"diffKind":"update","inputDiff":true}},"provider":"urn:pulumi:prod::platform::pulumi:providers:docker::default::1"}}}"#,
    r#"{"sequence":3,"timestamp":1731000002,"diagnosticEvent":{"urn":"urn:pulumi:prod::platform::docker:index/service:Service::web","prefix":"<{%fg 3%}>warning: <{%reset%}>","message":"<{%reset%}>image has no digest; DB_PASSWORD=hunter22 <{%reset%}>\n","color":"raw","severity":"warning"}}"#,
    r#"{"sequence":4,"timestamp":1731000003,"resOutputsEvent":{"metadata":{"op":"update","urn":"urn:pulumi:prod::platform::docker:index/service:Service::web","type":"docker:index/service:Service","old":null,"new":null,"detailedDiff":{},"provider":""}}}"#,
    r#"{"sequence":5,"timestamp":1731000003,"resourcePreEvent":{"metadata":{"op":"update","urn":"urn:pulumi:prod::platform::docker:index/service:Service::api","type":"docker:index/service:Service","old":null,"new":null,"detailedDiff":null,"provider":""}}}"#,
    r#"{"sequence":6,"timestamp":1731000004,"diagnosticEvent":{"urn":"urn:pulumi:prod::platform::docker:index/service:Service::api","prefix":"<{%fg 1%}>error: <{%reset%}>","message":"<{%reset%}>updating service: image not found<{%reset%}>\n","color":"raw","severity":"error"}}"#,
    r#"{"sequence":7,"timestamp":1731000004,"resOpFailedEvent":{"metadata":{"op":"update","urn":"urn:pulumi:prod::platform::docker:index/service:Service::api","type":"docker:index/service:Service","old":null,"new":null,"detailedDiff":null,"provider":""},"status":1,"steps":2}}"#,
    r#"{"sequence":8,"timestamp":1731000004,"diagnosticEvent":{"urn":"urn:pulumi:prod::platform::pulumi:pulumi:Stack::platform-prod","message":"update failed\n","color":"never","severity":"error"}}"#,
    r#"{"sequence":9,"timestamp":1731000004,"summaryEvent":{"maybeCorrupt":false,"durationSeconds":4,"resourceChanges":{"same":1,"update":1},"PolicyPacks":{},"isPreview":false}}"#,
    r#"{"sequence":10,"timestamp":1731000004,"cancelEvent":{}}"#,
];

#[test]
fn recorded_lines_parse_to_their_payloads() {
    let events: Vec<EngineEvent> = SAMPLE
        .iter()
        .enumerate()
        .map(|(i, l)| parse_event_line(l, i as u64 + 1).unwrap())
        .collect();
    assert!(
        matches!(events[0].kind(), EventKind::Prelude(p) if p.config["platform:image-tag"] == "v2")
    );
    match events[2].kind() {
        EventKind::ResourcePre(p) => {
            assert_eq!(p.metadata.op, "update");
            assert_eq!(p.metadata.kind, "docker:index/service:Service");
            assert_eq!(p.metadata.diffs, ["taskSpec"]);
            let old = p.metadata.old.as_ref().unwrap();
            assert!(old.custom);
            assert_eq!(old.id, "x1");
            let dd = p.metadata.detailed_diff.as_ref().unwrap();
            assert_eq!(dd["taskSpec.containerSpec.image"].diff_kind, "update");
            assert!(!p.planning);
        }
        other => panic!("{other:?}"),
    }
    match events[7].kind() {
        EventKind::ResOpFailed(f) => assert_eq!((f.status, f.steps), (1, 2)),
        other => panic!("{other:?}"),
    }
    match events[9].kind() {
        EventKind::Summary(s) => {
            assert_eq!(s.resource_changes["update"], 1);
            assert_eq!(s.duration_seconds, 4);
            assert!(!s.is_preview && !s.maybe_corrupt);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(events[10].kind(), EventKind::Cancel);
    assert_eq!(events[10].sequence, 10);
    // Round trip keeps upstream's names (PascalCase PolicyPacks, streamID).
    let again = serde_json::to_string(&events[9]).unwrap();
    assert!(again.contains("\"PolicyPacks\":{}"), "{again}");
    assert!(again.contains("\"summaryEvent\""), "{again}");
    assert!(!again.contains("cancelEvent"), "{again}");
}

#[test]
fn unknown_payloads_and_fields_are_tolerated_bad_lines_are_errors() {
    let e = parse_event_line(
        r#"{"sequence":3,"timestamp":1,"policyRemediationEvent":{"color":"never","before":{}},"futureField":1}"#,
        1,
    )
    .unwrap();
    assert_eq!(e.kind(), EventKind::Other);
    assert!(parse_event_line("{\"sequence\":", 7).is_err());
    assert_eq!(parse_event_line("not json", 7).unwrap_err().line, 7);
}

#[test]
fn tracker_counts_steps_and_keeps_redacted_messages() {
    let redactor = Redactor::new(["hunter22"]);
    let mut t = UpdateTracker::new();
    let mut currents = Vec::new();
    for (i, l) in SAMPLE.iter().enumerate() {
        t.observe(&parse_event_line(l, i as u64).unwrap(), &redactor);
        currents.push(t.current().map(str::to_string));
    }
    assert_eq!(currents[2].as_deref(), Some("web"));
    assert_eq!(currents[4], None, "web finished");
    assert_eq!(currents[5].as_deref(), Some("api"));
    assert_eq!(
        t.steps_done(),
        2,
        "web updated, api failed; the stack's same step is no work"
    );
    assert_eq!(t.failed_resources(), ["api"]);
    let w = t.warnings();
    assert_eq!(w.len(), 1);
    assert!(w[0].starts_with("web: image has no digest"), "{w:?}");
    assert!(!w[0].contains("hunter22") && !w[0].contains("<{%"), "{w:?}");
    assert_eq!(
        t.errors(),
        [
            "api: updating service: image not found",
            "platform-prod: update failed"
        ]
    );
    assert!(t.ended());
    assert_eq!(t.summary().unwrap().resource_changes["same"], 1);
    assert_eq!(t.last_sequence(), Some(10));
}

#[test]
fn urn_parts_and_colors() {
    let urn = "urn:pulumi:prod::platform::pkg:Comp$docker:index/service:Service::web::x";
    assert_eq!(urn_name(urn), "web::x");
    assert_eq!(urn_type(urn), "docker:index/service:Service");
    assert_eq!(urn_name("plain"), "plain");
    assert_eq!(
        strip_color("<{%fg 1%}>error<{%reset%}>: \u{1b}[31mred\u{1b}[0m done"),
        "error: red done"
    );
    assert_eq!(strip_color("a <{% unterminated"), "a <{% unterminated");
}

#[test]
fn tail_splits_lines_across_reads_and_bounds_long_lines() {
    let mut t = EventLogTail::new("/nonexistent", 200);
    let mut items = Vec::new();
    let line = SAMPLE[10];
    let (a, b) = line.split_at(10);
    t.push_bytes(a.as_bytes(), &mut items);
    assert!(items.is_empty(), "half a line waits");
    t.push_bytes(format!("{b}\n").as_bytes(), &mut items);
    assert!(matches!(&items[0], TailItem::Event(e) if e.kind() == EventKind::Cancel));
    // An oversized line, in pieces, is dropped without being kept.
    let long = "x".repeat(150);
    t.push_bytes(long.as_bytes(), &mut items);
    t.push_bytes(long.as_bytes(), &mut items);
    assert!(t.partial.is_empty() && t.discarding == Some(300));
    t.push_bytes(b"yy\n{\"bad\n", &mut items);
    assert_eq!(
        items[1],
        TailItem::Oversized {
            line: 2,
            bytes: 302
        }
    );
    t.push_bytes(b"\n\n", &mut items);
    assert!(matches!(&items[2], TailItem::Malformed(e) if e.line == 3));
    assert_eq!(items.len(), 3, "blank lines are skipped");
}

#[tokio::test]
async fn tail_follows_a_file_being_written() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let mut tail = EventLogTail::new(&path, DEFAULT_MAX_LINE);
    assert!(
        tail.read_available().await.unwrap().is_empty(),
        "no file yet"
    );
    let mut f = std::fs::File::create(&path).unwrap();
    write!(f, "{}\n{}", SAMPLE[0], &SAMPLE[1][..20]).unwrap();
    f.flush().unwrap();
    let first = tail.read_available().await.unwrap();
    assert_eq!(first.len(), 1);
    writeln!(f, "{}", &SAMPLE[1][20..]).unwrap();
    write!(f, "{}", SAMPLE[10]).unwrap();
    f.flush().unwrap();
    let second = tail.read_available().await.unwrap();
    assert_eq!(second.len(), 1, "the cancel line has no newline yet");
    let last = tail.finish().await.unwrap();
    assert!(matches!(&last[..], [TailItem::Event(e)] if e.kind() == EventKind::Cancel));
}

/// The same kind of update in the shape of an older CLI (v3.100-era): no `sequence`, no
/// `isPreview`, no `PolicyPacks` or `maybeCorrupt` in the summary, diagnostics without `color`,
/// a failed step without `steps`. Hand-written after that shape, not a recording.
const OLDER: &[&str] = &[
    r#"{"timestamp":1700000000,"preludeEvent":{"config":{"platform:image-tag":"v2"}}}"#,
    r#"{"timestamp":1700000001,"resourcePreEvent":{"metadata":{"op":"update","urn":"urn:pulumi:prod::platform::docker:index/service:Service::web","type":"docker:index/service:Service","old":null,"new":null,"provider":""}}}"#,
    r#"{"timestamp":1700000002,"diagnosticEvent":{"urn":"urn:pulumi:prod::platform::docker:index/service:Service::web","message":"image has no digest\n","severity":"warning"}}"#,
    r#"{"timestamp":1700000003,"resOutputsEvent":{"metadata":{"op":"update","urn":"urn:pulumi:prod::platform::docker:index/service:Service::web","type":"docker:index/service:Service"}}}"#,
    r#"{"timestamp":1700000003,"resourcePreEvent":{"metadata":{"op":"update","urn":"urn:pulumi:prod::platform::docker:index/service:Service::api","type":"docker:index/service:Service"}}}"#,
    r#"{"timestamp":1700000004,"resOpFailedEvent":{"metadata":{"op":"update","urn":"urn:pulumi:prod::platform::docker:index/service:Service::api","type":"docker:index/service:Service"},"status":1}}"#,
    r#"{"timestamp":1700000004,"summaryEvent":{"durationSeconds":4,"resourceChanges":{"same":1,"update":1}}}"#,
    r#"{"timestamp":1700000004,"cancelEvent":{}}"#,
];

/// The shape of a newer CLI: fields and event kinds this crate does not know, at every level
/// (hand-written).
const NEWER: &[&str] = &[
    r#"{"sequence":0,"timestamp":1800000000,"preludeEvent":{"config":{"platform:image-tag":"v2"},"configSecretKeys":[]},"origin":"cli"}"#,
    r#"{"sequence":1,"timestamp":1800000000,"startDebuggingEvent":{"config":{}}}"#,
    r#"{"sequence":2,"timestamp":1800000001,"resourcePreEvent":{"metadata":{"op":"update","urn":"urn:pulumi:prod::platform::docker:index/service:Service::web","type":"docker:index/service:Service","old":null,"new":{"type":"docker:index/service:Service","urn":"urn:pulumi:prod::platform::docker:index/service:Service::web","custom":true,"hideDiffs":["secret"],"replaceWith":[]},"detailedDiff":null,"provider":"","refreshBeforeUpdate":true},"planning":false,"futureFlag":1}}"#,
    r#"{"sequence":3,"timestamp":1800000003,"resOutputsEvent":{"metadata":{"op":"update","urn":"urn:pulumi:prod::platform::docker:index/service:Service::web","type":"docker:index/service:Service","detailedDiff":{"x":{"diffKind":"update","inputDiff":true,"note":"new"}}}}}"#,
    r#"{"sequence":4,"timestamp":1800000003,"summaryEvent":{"maybeCorrupt":false,"durationSeconds":3,"resourceChanges":{"same":1,"update":1},"PolicyPacks":{},"isPreview":false,"policyRemediations":0,"errorCount":0}}"#,
    r#"{"sequence":5,"timestamp":1800000003,"cancelEvent":{"reason":"done"}}"#,
];

fn parse_all(lines: &[&str]) -> Vec<EngineEvent> {
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| parse_event_line(l, i as u64 + 1).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

#[test]
fn an_older_cli_without_sequence_or_is_preview_still_reports_its_summary() {
    let events = parse_all(OLDER);
    let mut t = UpdateTracker::new();
    for e in &events {
        t.observe(e, &Redactor::new(Vec::<&str>::new()));
    }
    let s = t.summary().expect("the summary without isPreview is kept");
    assert!(!s.is_preview && !s.maybe_corrupt);
    assert_eq!(s.resource_changes["update"], 1);
    assert_eq!(s.duration_seconds, 4);
    assert!(s.policy_packs.is_empty());
    assert_eq!(t.steps_done(), 2, "web updated, api failed");
    assert_eq!(t.failed_resources(), ["api"]);
    assert_eq!(t.warnings(), ["web: image has no digest"]);
    assert!(t.ended());
    assert_eq!(events[0].sequence, 0, "absent: 0");
    match events[5].kind() {
        EventKind::ResOpFailed(f) => assert_eq!((f.status, f.steps), (1, 0)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_newer_cli_with_unknown_fields_and_kinds_parses() {
    let events = parse_all(NEWER);
    assert_eq!(events[1].kind(), EventKind::Other);
    let mut t = UpdateTracker::new();
    for e in &events {
        t.observe(e, &Redactor::new(Vec::<&str>::new()));
    }
    assert_eq!(t.steps_done(), 1);
    assert_eq!(t.summary().unwrap().resource_changes["update"], 1);
    assert!(t.ended());
    assert_eq!(t.last_sequence(), Some(5));
}

/// Every payload parses from an empty object: no field Pulumi may leave out is required.
#[test]
fn every_payload_field_has_a_default() {
    type IsKind = fn(&EventKind) -> bool;
    let cases: &[(&str, IsKind)] = &[
        ("cancelEvent", |k| matches!(k, EventKind::Cancel)),
        ("stdoutEvent", |k| matches!(k, EventKind::Stdout(_))),
        ("diagnosticEvent", |k| matches!(k, EventKind::Diagnostic(_))),
        ("preludeEvent", |k| matches!(k, EventKind::Prelude(_))),
        ("summaryEvent", |k| matches!(k, EventKind::Summary(_))),
        ("resourcePreEvent", |k| {
            matches!(k, EventKind::ResourcePre(_))
        }),
        ("resOutputsEvent", |k| matches!(k, EventKind::ResOutputs(_))),
        ("resOpFailedEvent", |k| {
            matches!(k, EventKind::ResOpFailed(_))
        }),
        ("policyEvent", |k| matches!(k, EventKind::Policy(_))),
        ("progressEvent", |k| matches!(k, EventKind::Progress(_))),
        ("errorEvent", |k| matches!(k, EventKind::Error(_))),
    ];
    for (name, is) in cases {
        let e = parse_event_line(&format!("{{\"{name}\":{{}}}}"), 1)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(is(&e.kind()), "{name}: {:?}", e.kind());
        let e = parse_event_line(
            &format!("{{\"{name}\":{{\"metadata\":{{}},\"detailedDiff\":{{\"a\":{{}}}}}}}}"),
            1,
        )
        .unwrap_or_else(|e| panic!("{name} with an empty metadata: {e}"));
        assert!(is(&e.kind()), "{name}");
    }
}
