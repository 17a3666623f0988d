//! Tests of the engine: thresholds, grouping, root-layer holding, reminders, silences and the
//! outbox, as plain data.

use super::*;
use crate::config::alerts::RoutingConfig;

const MIN: i64 = 60_000;

fn cfg() -> EngineConfig {
    EngineConfig {
        failure_threshold: 3,
        event_failure_threshold: 1,
        min_duration_ms: 0,
        resolve_threshold: 2,
        reminder_ms: 30 * MIN,
        heartbeat_ms: 0,
        group_wait_ms: 0,
        root_layers: vec!["layer_1".into()],
        routing: RoutingConfig {
            default_channel: 1,
            routes: vec![super::super::config::Route {
                layer: Some("layer_1".into()),
                severity: None,
                channel: 2,
            }],
        },
    }
}

fn bad(key: &str, layer: &str) -> Observation {
    Observation::failing(key, Some(layer), Severity::Critical, "down")
}
fn good(key: &str) -> Observation {
    Observation::ok(key, None, "fine")
}

/// (kind, channel, alert keys, held keys) of every notification, with the tick time.
type Seen = Vec<(i64, NotificationKind, u64, Vec<String>, Vec<String>)>;

fn run(engine: &mut Engine, steps: Vec<(i64, Vec<Observation>)>) -> Seen {
    let mut seen = Vec::new();
    for (t, obs) in steps {
        for n in engine.tick(t, obs) {
            seen.push((
                t,
                n.kind,
                n.channel,
                n.alerts.iter().map(|a| a.key.clone()).collect(),
                n.held.iter().map(|a| a.key.clone()).collect(),
            ));
        }
    }
    seen
}

fn kinds(seen: &Seen) -> Vec<(i64, NotificationKind)> {
    seen.iter().map(|s| (s.0, s.1)).collect()
}

use NotificationKind::*;

#[test]
fn alerts_engine_state_machine_table() {
    // (name, config tweak, observation pattern per minute: F failing, O ok, - none,
    //  expected (minute, kind) notifications)
    type Case = (
        &'static str,
        fn(&mut EngineConfig),
        &'static str,
        Vec<(i64, NotificationKind)>,
    );
    let cases: Vec<Case> = vec![
        (
            "threshold: fires on the 3rd failure",
            |_| {},
            "FFFF",
            vec![(2, Firing)],
        ),
        (
            "flapping never reaches the threshold",
            |_| {},
            "FFOFFOFFOFF",
            vec![],
        ),
        (
            "resolved once after two oks",
            |_| {},
            "FFFOOOOO",
            vec![(2, Firing), (4, Resolved)],
        ),
        (
            "one ok while firing does not resolve",
            |_| {},
            "FFFOFOF",
            vec![(2, Firing)],
        ),
        (
            "missing observations keep the state",
            |_| {},
            "F-F-F--",
            vec![(4, Firing)],
        ),
        (
            "min duration: 3 failures but only after 5 minutes",
            |c| c.min_duration_ms = 5 * MIN,
            "FFFFFFFF",
            vec![(5, Firing)],
        ),
        (
            "reminders every 30 minutes while firing",
            |_| {},
            "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF",
            vec![(2, Firing), (32, Reminder), (62, Reminder)],
        ),
        (
            "refiring after resolve announces again",
            |_| {},
            "FFFOOFFF",
            vec![(2, Firing), (4, Resolved), (7, Firing)],
        ),
        (
            "threshold 1 fires at once",
            |c| c.failure_threshold = 1,
            "FO",
            vec![(0, Firing)],
        ),
    ];
    for (name, tweak, pattern, expected) in cases {
        let mut c = cfg();
        tweak(&mut c);
        let mut e = Engine::new(c);
        let steps = pattern
            .chars()
            .enumerate()
            .map(|(i, ch)| {
                let obs = match ch {
                    'F' => vec![bad("svc:a", "platform")],
                    'O' => vec![good("svc:a")],
                    _ => vec![],
                };
                (i as i64 * MIN, obs)
            })
            .collect();
        let seen = run(&mut e, steps);
        let got: Vec<(i64, NotificationKind)> = kinds(&seen)
            .into_iter()
            .map(|(t, k)| (t / MIN, k))
            .collect();
        assert_eq!(got, expected, "{name}");
    }
}

#[test]
fn alerts_engine_decisive_event_fires_without_threshold_rounds() {
    let mut c = cfg();
    c.min_duration_ms = 5 * MIN;
    let mut e = Engine::new(c.clone());
    // An ordinary failure waits for the threshold; a decisive one fires at once.
    assert!(e.tick(0, vec![bad("svc:slow", "platform")]).is_empty());
    let seen = run(
        &mut e,
        vec![(1, vec![bad("svc:crash", "platform").decisive()])],
    );
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        (seen[0].1, seen[0].3.clone()),
        (Firing, vec!["svc:crash".into()])
    );
    assert_eq!(e.state().alerts["svc:slow"].phase, Phase::Pending);
    // Merged with an ordinary failure of the same key in one tick, it stays decisive.
    let mut e = Engine::new(c.clone());
    let seen = run(
        &mut e,
        vec![(
            0,
            vec![
                bad("svc:a", "platform"),
                bad("svc:a", "platform").decisive(),
            ],
        )],
    );
    assert_eq!(seen.len(), 1, "{seen:?}");
    let later = Observation::failing("svc:a", None, Severity::Critical, "newer");
    e.tick(1, vec![bad("svc:a", "platform"), later]);
    assert_eq!(
        e.state().alerts["svc:a"].summary,
        "newer",
        "the later summary wins"
    );
    // A configured event threshold of 2 needs two decisive failures.
    c.event_failure_threshold = 2;
    let mut e = Engine::new(c);
    let d = || vec![bad("svc:b", "platform").decisive()];
    let seen = run(&mut e, vec![(0, d()), (10, d())]);
    assert_eq!(kinds(&seen), vec![(10, Firing)]);
}

#[test]
fn alerts_engine_silence_suppresses_until_it_ends() {
    let mut e = Engine::new(cfg());
    e.silence("svc:*", 5 * MIN);
    let steps = (0..8)
        .map(|i| (i * MIN, vec![bad("svc:a", "platform")]))
        .collect();
    let seen = run(&mut e, steps);
    assert_eq!(
        kinds(&seen),
        vec![(5 * MIN, Firing)],
        "announced when the silence ends"
    );
    // Silenced then resolved without announcement: nothing at all.
    let mut e = Engine::new(cfg());
    e.silence("svc:b", 100 * MIN);
    let mut steps: Vec<(i64, Vec<Observation>)> = (0..4)
        .map(|i| (i * MIN, vec![bad("svc:b", "platform")]))
        .collect();
    steps.extend((4..8).map(|i| (i * MIN, vec![good("svc:b")])));
    assert!(run(&mut e, steps).is_empty());
}

#[test]
fn alerts_engine_groups_a_burst_of_20_into_one_notification() {
    let mut c = cfg();
    c.failure_threshold = 1;
    let mut e = Engine::new(c.clone());
    let burst: Vec<Observation> = (0..20)
        .map(|i| bad(&format!("svc:{i}"), "platform"))
        .collect();
    let seen = run(&mut e, vec![(0, burst.clone())]);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].3.len(), 20);
    // With group_wait, failures spread over 3 ticks still make one notification.
    c.group_wait_ms = 3 * MIN;
    let mut e = Engine::new(c);
    let steps = (0..5)
        .map(|t| (t * MIN, burst[..((t as usize + 1) * 4).min(20)].to_vec()))
        .collect();
    let seen = run(&mut e, steps);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!((seen[0].0, seen[0].3.len()), (3 * MIN, 16));
    let seen = run(&mut e, (5..9).map(|t| (t * MIN, burst.clone())).collect());
    assert_eq!(seen.len(), 1, "the late ones are a second group: {seen:?}");
    assert_eq!(seen[0].3.len(), 4);
    // Resolutions of a burst are grouped too.
    let seen = run(
        &mut e,
        (9..12)
            .map(|t| {
                (
                    t * MIN,
                    (0..20).map(|i| good(&format!("svc:{i}"))).collect(),
                )
            })
            .collect(),
    );
    assert_eq!(seen.len(), 1);
    assert_eq!((seen[0].1, seen[0].3.len()), (Resolved, 20));
}

#[test]
fn alerts_engine_layer1_holds_other_layers() {
    let mut c = cfg();
    c.failure_threshold = 1;
    let mut e = Engine::new(c);
    let seen = run(
        &mut e,
        vec![(
            0,
            vec![
                bad("probe:traefik", "layer_1"),
                bad("svc:redis", "layer_2"),
                bad("svc:web", "platform"),
            ],
        )],
    );
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].2, 2, "routed by the root's layer");
    assert_eq!(seen[0].3, ["probe:traefik"]);
    assert_eq!(seen[0].4, ["svc:redis", "svc:web"]);
    let n = &e.outbox()[0];
    assert_eq!(n.held[0].caused_by.as_deref(), Some("probe:traefik"));
    assert!(n
        .render_text()
        .contains("probably caused by `probe:traefik`"));
    // Later platform alerts while layer_1 still fires are held too.
    let seen = run(
        &mut e,
        vec![(
            MIN,
            vec![bad("probe:traefik", "layer_1"), bad("svc:api", "platform")],
        )],
    );
    assert_eq!(seen.len(), 1);
    assert!(seen[0].3.is_empty());
    assert_eq!(seen[0].4, ["svc:api"]);
    // Reminder of the root lists the held ones.
    let seen = run(&mut e, vec![(31 * MIN, vec![])]);
    assert_eq!(seen[0].1, Reminder);
    assert_eq!(seen[0].3, ["probe:traefik"]);
    assert_eq!(seen[0].4, ["svc:api", "svc:redis", "svc:web"]);
}

#[test]
fn alerts_engine_state_round_trips_and_restart_does_not_refire() {
    let mut e = Engine::new(cfg());
    run(
        &mut e,
        (0..3)
            .map(|i| (i * MIN, vec![bad("svc:a", "platform")]))
            .collect(),
    );
    assert_eq!(e.outbox().len(), 1);
    let ids: Vec<u64> = e.outbox().iter().map(|n| n.id).collect();
    e.ack(&ids);
    let json = serde_json::to_string(&e.snapshot()).unwrap();
    let state: EngineState = serde_json::from_str(&json).unwrap();
    assert_eq!(state, e.snapshot());
    let mut again = Engine::restore(cfg(), state);
    let seen = run(
        &mut again,
        (3..6)
            .map(|i| (i * MIN, vec![bad("svc:a", "platform")]))
            .collect(),
    );
    assert!(seen.is_empty(), "no second firing: {seen:?}");
    let seen = run(
        &mut again,
        (6..8).map(|i| (i * MIN, vec![good("svc:a")])).collect(),
    );
    assert_eq!(kinds(&seen), vec![(7 * MIN, Resolved)]);
    assert!(again.take_dirty().contains(&"svc:a".to_string()));
    // A settled key nobody reports on is forgotten after a day (and deleted by the store).
    again.tick(7 * MIN + PRUNE_AFTER_MS + 1, vec![]);
    assert!(again.state().alerts.is_empty());
    assert_eq!(again.take_dirty(), ["svc:a"]);
}

#[test]
fn alerts_engine_heartbeat_and_severity() {
    let mut c = cfg();
    c.heartbeat_ms = 60 * MIN;
    c.failure_threshold = 1;
    let mut e = Engine::new(c);
    let seen = run(
        &mut e,
        vec![
            (
                0,
                vec![Observation::failing(
                    "svc:w",
                    Some("platform"),
                    Severity::Warning,
                    "slow",
                )],
            ),
            (59 * MIN, vec![]),
            (60 * MIN, vec![]),
        ],
    );
    assert_eq!(
        kinds(&seen),
        vec![(0, Firing), (59 * MIN, Reminder), (60 * MIN, Heartbeat)]
    );
    assert_eq!(e.outbox()[0].severity, Severity::Warning);
    assert_eq!(Severity::Critical.colour(), 0xE74C3C);
}
