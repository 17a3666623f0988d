//! Tests of the watcher: rounds, the event fast path, delivery retries and the rate limit,
//! silences through the hub, all on a manual clock.

use super::*;
use std::sync::atomic::AtomicI64;
use std::sync::Mutex;

/// Records deliveries; fails the first `fail` calls.
#[derive(Default)]
struct Recorder {
    got: Mutex<Vec<(u64, Vec<Notification>)>>,
}

#[async_trait]
impl AlertSink for Recorder {
    async fn deliver(&self, channel: u64, n: &[Notification]) -> Result<(), SinkError> {
        self.got.lock().unwrap().push((channel, n.to_vec()));
        Ok(())
    }
}

/// An event feed the test writes to.
fn test_feed() -> (mpsc::Sender<sources::SwarmEvent>, sources::EventFeed) {
    let (tx, rx) = mpsc::channel(EVENT_CAPACITY);
    let feed = sources::EventFeed {
        rx,
        cursor: Arc::new(AtomicI64::new(0)),
        dropped: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        handle: tokio::spawn(async {}),
    };
    (tx, feed)
}

fn exited(service: &str) -> sources::SwarmEvent {
    sources::SwarmEvent::TaskExited {
        service: service.into(),
        exit_code: 1,
    }
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..600 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out (30 s) waiting for {what}");
}

fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

#[tokio::test]
async fn alerts_hub_silence_suppresses_the_announcement_and_state_is_published() {
    let mut cfg = AlertsConfig::with_channel(7);
    cfg.failure_threshold = 100; // the probe stays pending
    cfg.group_wait_ms = Some(1_000);
    cfg.probes = vec![ProbeConfig {
        name: "closed".into(),
        kind: ProbeKind::Tcp,
        target: Some(closed_port()),
        url: None,
        layer: "layer_1".into(),
        severity: Severity::Warning,
        expect_status: None,
        timeout_secs: Some(2),
        server_name: None,
        warn_days: None,
        insecure_tls: false,
        username: None,
        password: None,
        sslmode: None,
        ssl_root_cert: None,
        bucket: None,
        region: None,
    }];
    let t0 = 1_700_000_000_000;
    let clock = Arc::new(ManualClock::new(t0));
    let sink = Arc::new(Recorder::default());
    let store = Arc::new(MemoryAlertStore::default());
    let hub = AlertHub::new();
    assert_eq!(
        hub.silence("service:a", t0 + 60_000).await,
        Err(ControlError::NotRunning)
    );
    let deps = WatcherDeps {
        store: store.clone(),
        sink: sink.clone(),
        clock: clock.clone(),
        swarm: None,
        docker_events: None,
        layers: Arc::new(|_, _| Some("platform".into())),
        hub: Some(hub.clone()),
    };
    let mut w = Watcher::new(cfg, deps).await.unwrap();
    let (tx, feed) = test_feed();
    w.attach_events(feed);
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(w.run_every(Duration::from_millis(100), stop_rx));

    eventually("the first round's probe result", || {
        !hub.probe_results().is_empty()
    })
    .await;
    let p = &hub.probe_results()[0];
    assert_eq!(
        (p.name.as_str(), p.kind.as_str(), p.layer.as_deref(), p.ok),
        ("closed", "tcp", Some("layer_1"), false),
        "{p:?}"
    );
    assert_eq!(p.severity, Severity::Warning);
    assert_eq!(p.at_ms, t0);

    tx.send(exited("a")).await.unwrap();
    tx.send(exited("b")).await.unwrap();
    eventually("both services firing", || {
        hub.open_alerts()
            .iter()
            .filter(|a| a.phase == Phase::Firing)
            .count()
            == 2
    })
    .await;
    let open = hub.open_alerts();
    let probe = open.iter().find(|a| a.key == "probe:closed").unwrap();
    assert_eq!(probe.phase, Phase::Pending, "pending alerts are open too");
    assert!(sink.got.lock().unwrap().is_empty(), "inside the group wait");

    let until = t0 + 3_600_000;
    hub.silence("service:a", until).await.unwrap();
    assert_eq!(hub.silences(), vec![("service:a".to_string(), until)]);
    let saved = store.load_state().await.unwrap();
    assert_eq!(saved.meta.silences.len(), 1, "persisted before the answer");
    assert_eq!(saved.meta.silences[0].pattern, "service:a");
    assert!(matches!(
        hub.silence("service:a", t0 - 1).await,
        Err(ControlError::Invalid(_))
    ));

    clock.advance(Duration::from_secs(2)); // past the group wait
    eventually("the announcement", || !sink.got.lock().unwrap().is_empty()).await;
    let got = sink.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    let n = &got[0].1[0];
    assert_eq!(n.kind, NotificationKind::Firing);
    assert_eq!(n.keys().collect::<Vec<_>>(), ["service:b"], "a is silenced");
    assert_eq!(
        hub.notification_keys(n.id),
        Some(vec!["service:b".to_string()])
    );
    assert_eq!(hub.notification_keys(n.id + 1000), None);

    // More exits of the silenced service: still nothing for it.
    tx.send(exited("a")).await.unwrap();
    clock.advance(Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(sink
        .got
        .lock()
        .unwrap()
        .iter()
        .all(|(_, ns)| ns.iter().all(|n| n.keys().all(|k| k != "service:a"))));

    stop.send(true).unwrap();
    task.await.unwrap();
    assert!(hub.open_alerts().is_empty(), "stopped: nothing published");
    assert_eq!(
        hub.silence("service:b", until).await,
        Err(ControlError::NotRunning)
    );
}

#[tokio::test]
async fn alerts_event_fast_path_fires_a_burst_in_one_message_without_a_round() {
    let mut cfg = AlertsConfig::with_channel(9);
    cfg.probe_interval_secs = 3_600; // one round at start, no second one
    let sink = Arc::new(Recorder::default());
    let deps = WatcherDeps {
        store: Arc::new(MemoryAlertStore::default()),
        sink: sink.clone(),
        clock: Arc::new(SystemClock),
        swarm: None,
        docker_events: None,
        layers: Arc::new(|_, _| Some("platform".into())),
        hub: None,
    };
    let mut w = Watcher::new(cfg, deps).await.unwrap();
    let (tx, feed) = test_feed();
    w.attach_events(feed);
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(w.run(stop_rx));
    tokio::time::sleep(Duration::from_millis(100)).await; // the first round has run
    for i in 0..20 {
        tx.send(exited(&format!("svc-{i}"))).await.unwrap();
    }
    eventually("the firing message", || {
        !sink.got.lock().unwrap().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let got = sink.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "one message for the burst: {got:?}");
    let keys: Vec<&str> = got[0].1.iter().flat_map(|n| n.keys()).collect();
    assert_eq!(keys.len(), 20, "{keys:?}");
    assert!(got[0].1.iter().all(|n| n.kind == NotificationKind::Firing));
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn alerts_watcher_rate_limits_and_coalesces_per_channel() {
    let mut cfg = AlertsConfig::with_channel(7);
    cfg.failure_threshold = 1;
    cfg.group_wait_ms = Some(0);
    let clock = Arc::new(ManualClock::new(1_000_000));
    let sink = Arc::new(Recorder::default());
    let store = Arc::new(MemoryAlertStore::default());
    let deps = || WatcherDeps {
        store: store.clone(),
        sink: sink.clone(),
        clock: clock.clone(),
        swarm: None,
        docker_events: None,
        layers: Arc::new(|_, _| None),
        hub: None,
    };
    let mut w = Watcher::new(cfg.clone(), deps()).await.unwrap();
    let bad = |k: &str| Observation::failing(k, Some("platform"), Severity::Critical, "x");
    w.evaluate(vec![bad("a")]).await.unwrap();
    assert_eq!(w.deliver().await.unwrap(), 1);
    clock.advance(Duration::from_millis(500));
    w.evaluate(vec![bad("a"), bad("b")]).await.unwrap();
    assert_eq!(w.deliver().await.unwrap(), 0, "inside the 2 s window");
    clock.advance(Duration::from_millis(500));
    w.evaluate(vec![bad("a"), bad("b"), bad("c")])
        .await
        .unwrap();
    assert_eq!(w.deliver().await.unwrap(), 0);
    clock.advance(Duration::from_millis(1_000));
    assert_eq!(w.deliver().await.unwrap(), 1, "coalesced");
    let got = sink.got.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].1.len(), 2, "two notifications in one message");
    assert!(w.engine().outbox().is_empty());
    assert_eq!(store.notifications().await.unwrap().len(), 3);
    // A restart on the same store: nothing re-announced.
    drop(w);
    let mut again = Watcher::new(cfg, deps()).await.unwrap();
    clock.advance(Duration::from_secs(10));
    assert!(again
        .evaluate(vec![bad("a"), bad("b"), bad("c")])
        .await
        .unwrap()
        .is_empty());
}
