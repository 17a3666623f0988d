//! The Watcher on the real Swarm with a recording sink.

use super::*;

#[derive(Default)]
pub(super) struct RecordingSink {
    messages: Mutex<Vec<(u64, Vec<Notification>)>>,
}

impl RecordingSink {
    pub(super) fn notifications(&self) -> Vec<Notification> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, n)| n.clone())
            .collect()
    }
    /// Notifications of `kind` listing `key`.
    pub(super) fn count(&self, kind: NotificationKind, key: &str) -> usize {
        self.notifications()
            .iter()
            .filter(|n| n.kind == kind && n.keys().any(|k| k == key))
            .count()
    }
}

#[async_trait]
impl AlertSink for RecordingSink {
    async fn deliver(&self, channel: u64, n: &[Notification]) -> Result<(), SinkError> {
        self.messages.lock().unwrap().push((channel, n.to_vec()));
        Ok(())
    }
}

pub(super) fn swarm_config(prefix: &str) -> AlertsConfig {
    let mut c = AlertsConfig::with_channel(CHANNEL);
    c.failure_threshold = 2;
    c.resolve_threshold = 2;
    c.reminder_minutes = 0;
    c.heartbeat_minutes = 0;
    c.group_wait_secs = Some(3);
    c.probe_interval_secs = 1;
    c.restart_loop_window_secs = 5;
    c.services = vec![format!("{prefix}-{}-*", env::run_id())];
    c
}

pub(super) struct Running {
    stop: watch::Sender<bool>,
    handle: tokio::task::JoinHandle<()>,
}

impl Running {
    pub(super) async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("watcher stops")
            .expect("watcher task");
    }
}

pub(super) async fn start_watcher(
    cfg: AlertsConfig,
    store: Arc<dyn AlertStore>,
    sink: Arc<RecordingSink>,
) -> Running {
    start_watcher_rounds(cfg, store, sink, Some(Duration::from_secs(1))).await
}

/// `rounds`: the round period, or `None` for the production loop (`probe_interval_secs`).
pub(super) async fn start_watcher_rounds(
    cfg: AlertsConfig,
    store: Arc<dyn AlertStore>,
    sink: Arc<RecordingSink>,
    rounds: Option<Duration>,
) -> Running {
    let docker = Arc::new(DockerSwarm::new("unix:///var/run/docker.sock", 30).unwrap());
    let deps = WatcherDeps {
        store,
        sink,
        clock: Arc::new(SystemClock),
        swarm: Some(docker.clone() as Arc<dyn SwarmApi>),
        docker_events: Some(docker),
        layers: Arc::new(|_, _| Some("platform".to_string())),
        hub: None,
    };
    let w = Watcher::new(cfg, deps).await.unwrap();
    let (stop, rx) = watch::channel(false);
    let handle = match rounds {
        Some(every) => tokio::spawn(w.run_every(every, rx)),
        None => tokio::spawn(w.run(rx)),
    };
    Running { stop, handle }
}

pub(super) async fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub(super) async fn fix(name: &str) {
    let docker = DockerSwarm::new("unix:///var/run/docker.sock", 30).unwrap();
    docker.bump(name, "main", None).await.unwrap();
}

#[tokio::test]
pub(super) async fn alerts_crashing_service_fires_once_and_resolves_once() {
    let swarm = TestSwarm::connect().await;
    let sink = Arc::new(RecordingSink::default());
    let w = start_watcher(
        swarm_config("alrt-crash"),
        Arc::new(ops_core::alerts::MemoryAlertStore::default()),
        sink.clone(),
    )
    .await;
    let svc = swarm
        .create_service(TestService::new("alrt-crash", "broken"))
        .await;
    let key = format!("service:{}", svc.name());
    wait_for("the firing notification", Duration::from_secs(120), || {
        sink.count(NotificationKind::Firing, &key) >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        sink.count(NotificationKind::Firing, &key),
        1,
        "{:?}",
        sink.notifications()
    );
    fix(svc.name()).await;
    wait_for(
        "the resolved notification",
        Duration::from_secs(180),
        || sink.count(NotificationKind::Resolved, &key) >= 1,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(sink.count(NotificationKind::Firing, &key), 1);
    assert_eq!(sink.count(NotificationKind::Resolved, &key), 1);
    let firing = sink
        .notifications()
        .into_iter()
        .find(|n| n.kind == NotificationKind::Firing)
        .unwrap();
    assert_eq!(firing.channel, CHANNEL);
    assert_eq!(firing.severity, Severity::Critical);
    w.stop().await;
    svc.remove().await.unwrap();
}

/// Regression (issue 7, event-driven alerts): a task failure is announced by the Docker event
/// fast path, not by threshold rounds. Rounds alone could never fire here: one round runs at
/// start, before the service exists, the next would be an hour later, and the round threshold
/// is 1000.
#[tokio::test]
pub(super) async fn alerts_task_failure_is_alerted_by_the_event_path_without_a_second_round() {
    let swarm = TestSwarm::connect().await;
    let sink = Arc::new(RecordingSink::default());
    let mut cfg = swarm_config("alrt-evpath");
    cfg.failure_threshold = 1000;
    cfg.probe_interval_secs = 3600;
    cfg.group_wait_secs = None; // the default group wait
    let w = start_watcher_rounds(
        cfg,
        Arc::new(ops_core::alerts::MemoryAlertStore::default()),
        sink.clone(),
        None,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await; // the round at start has run
    let svc = swarm
        .create_service(TestService::new("alrt-evpath", "broken"))
        .await;
    let key = format!("service:{}", svc.name());
    wait_for("the firing notification", Duration::from_secs(120), || {
        sink.count(NotificationKind::Firing, &key) >= 1
    })
    .await;
    let firing = sink
        .notifications()
        .into_iter()
        .find(|n| n.kind == NotificationKind::Firing)
        .unwrap();
    let item = firing.alerts.iter().find(|a| a.key == key).unwrap();
    assert!(
        item.summary.contains("exited with code") || item.summary.contains("restart loop"),
        "from a task exit event: {item:?}"
    );
    assert_eq!(firing.channel, CHANNEL);
    w.stop().await;
    svc.remove().await.unwrap();
}

#[tokio::test]
pub(super) async fn alerts_burst_of_20_crashing_services_is_one_notification() {
    let swarm = TestSwarm::connect().await;
    let sink = Arc::new(RecordingSink::default());
    let mut cfg = swarm_config("alrt-burst");
    cfg.group_wait_secs = Some(30);
    let w = start_watcher(
        cfg,
        Arc::new(ops_core::alerts::MemoryAlertStore::default()),
        sink.clone(),
    )
    .await;
    let services = futures::future::join_all(
        (0..20).map(|_| swarm.create_service(TestService::new("alrt-burst", "broken"))),
    )
    .await;
    let keys: Vec<String> = services
        .iter()
        .map(|s| format!("service:{}", s.name()))
        .collect();
    wait_for("the grouped notification", Duration::from_secs(180), || {
        !sink.notifications().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let all = sink.notifications();
    let firing: Vec<&Notification> = all
        .iter()
        .filter(|n| n.kind == NotificationKind::Firing)
        .collect();
    assert_eq!(firing.len(), 1, "one grouped notification: {all:?}");
    let listed: Vec<&str> = firing[0].keys().collect();
    for k in &keys {
        assert!(listed.contains(&k.as_str()), "{k} missing from {listed:?}");
    }
    w.stop().await;
    for s in services {
        s.remove().await.unwrap();
    }
}

#[tokio::test]
pub(super) async fn alerts_watcher_restart_mid_incident_on_sqlite() {
    let swarm = TestSwarm::connect().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("alerts.db").display());
    store::connect(&url, None).await.unwrap();
    let open = || async {
        Arc::new(SqliteStore::new(
            sqlx::SqlitePool::connect(&url).await.unwrap(),
        )) as Arc<dyn AlertStore>
    };
    let cfg = swarm_config("alrt-restart");
    let first = Arc::new(RecordingSink::default());
    let w = start_watcher(cfg.clone(), open().await, first.clone()).await;
    let svc = swarm
        .create_service(TestService::new("alrt-restart", "broken"))
        .await;
    let key = format!("service:{}", svc.name());
    wait_for("the firing notification", Duration::from_secs(120), || {
        first.count(NotificationKind::Firing, &key) == 1
    })
    .await;
    w.stop().await;

    let second = Arc::new(RecordingSink::default());
    let w = start_watcher(cfg, open().await, second.clone()).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        second.count(NotificationKind::Firing, &key),
        0,
        "no duplicate after the restart: {:?}",
        second.notifications()
    );
    fix(svc.name()).await;
    wait_for(
        "the resolved notification",
        Duration::from_secs(180),
        || second.count(NotificationKind::Resolved, &key) == 1,
    )
    .await;
    assert_eq!(second.count(NotificationKind::Firing, &key), 0);
    assert_eq!(first.count(NotificationKind::Firing, &key), 1);
    w.stop().await;
    svc.remove().await.unwrap();
}

#[tokio::test]
pub(super) async fn alerts_docker_events_report_task_exits_and_backfill() {
    use ops_core::alerts::sources::{spawn_event_watcher, SwarmEvent};
    let swarm = TestSwarm::connect().await;
    let docker = Arc::new(DockerSwarm::new("unix:///var/run/docker.sock", 30).unwrap());
    let start = chrono::Utc::now().timestamp() - 1;
    let mut live = spawn_event_watcher(docker.clone(), None, 256);
    let svc = swarm
        .create_service(TestService::new("alrt-events", "broken"))
        .await;
    let name = svc.name().to_string();
    let exit_of = |ev: &SwarmEvent| match ev {
        SwarmEvent::TaskExited { service, exit_code } if *service == name => Some(*exit_code),
        _ => None,
    };
    let code = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let ev = live.rx.recv().await.expect("event stream open");
            if let Some(c) = exit_of(&ev) {
                return c;
            }
        }
    })
    .await
    .expect("a task exit event for the crashing service");
    assert_ne!(code, 0);
    assert!(live.cursor.load(std::sync::atomic::Ordering::SeqCst) >= start);
    // A watcher started later with `since` backfills the exit it missed.
    let mut late = spawn_event_watcher(docker, Some(start), 256);
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let ev = late.rx.recv().await.expect("event stream open");
            if exit_of(&ev).is_some() {
                return;
            }
        }
    })
    .await
    .expect("the missed exit is backfilled");
    drop(live);
    drop(late);
    svc.remove().await.unwrap();
}

#[tokio::test]
pub(super) async fn alerts_s3_probe_against_moto_verifies_sigv4() {
    let moto = probe_servers::start_moto_s3("vault-secrets").await;
    let runner = ProbeRunner::new(Duration::from_secs(5));
    let var = format!("ALERTS_TEST_S3_SECRET_{}", std::process::id());
    std::env::set_var(&var, &moto.secret_key);
    let mut p = probe("s3", ProbeKind::S3);
    p.timeout_secs = Some(10);
    p.url = Some(moto.url());
    p.bucket = Some("vault-secrets".into());
    p.username = Some(moto.access_key.clone());
    p.password = Some(SecretSource::env(&var));
    let o = runner.run(&p, now_ms()).await;
    assert!(!o.failing, "{o:?}\nmoto log:\n{}", moto.log_tail());

    // A bucket that does not exist, with valid credentials: 404.
    p.bucket = Some("no-such-bucket".into());
    let o = runner.run(&p, now_ms()).await;
    assert!(o.failing && o.summary.contains("404"), "{o:?}");

    // The right access key with a wrong secret: moto recomputes the signature and refuses.
    let wrong = format!("{var}_WRONG");
    std::env::set_var(&wrong, "not-the-key-0123456789");
    p.bucket = Some("vault-secrets".into());
    p.password = Some(SecretSource::env(&wrong));
    let o = runner.run(&p, now_ms()).await;
    assert!(o.failing && o.summary.contains("403"), "{o:?}");
    assert!(
        !o.summary.contains("not-the-key-0123456789") && !o.summary.contains(&moto.secret_key),
        "{o:?}"
    );

    // An access key moto never issued: refused too.
    p.password = Some(SecretSource::env(&var));
    p.username = Some("AKIAUNKNOWN000000000".into());
    let o = runner.run(&p, now_ms()).await;
    assert!(o.failing && o.summary.contains("403"), "{o:?}");
    assert!(!o.summary.contains(&moto.secret_key), "{o:?}");

    // The 403 above is signature verification, not a blanket refusal: a GET (which has an
    // error body, unlike HEAD) signed by ops-core's signer with the wrong secret is answered
    // SignatureDoesNotMatch, and with the right secret 200.
    use ops_core::alerts::probes::{sigv4_authorization, SigV4};
    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let host = format!("127.0.0.1:{}", moto.port);
    let client = reqwest::Client::new();
    for (secret, want) in [
        ("not-the-key-0123456789", "SignatureDoesNotMatch"),
        (moto.secret_key.as_str(), "ListBucketResult"),
    ] {
        let amz_date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let auth = sigv4_authorization(&SigV4 {
            method: "GET",
            path: "/vault-secrets",
            query: "",
            headers: &[
                ("host", &host),
                ("x-amz-content-sha256", EMPTY),
                ("x-amz-date", &amz_date),
            ],
            payload_sha256: EMPTY,
            amz_date: &amz_date,
            region: "us-east-1",
            service: "s3",
            access_key: &moto.access_key,
            secret_key: secret,
        });
        let r = client
            .get(format!("{}/vault-secrets", moto.url()))
            .header("x-amz-content-sha256", EMPTY)
            .header("x-amz-date", &amz_date)
            .header("authorization", auth)
            .send()
            .await
            .expect("GET bucket from moto");
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        assert!(body.contains(want), "HTTP {status}: {body}");
        assert_eq!(status == 200, want == "ListBucketResult", "{body}");
    }
}

#[tokio::test]
pub(super) async fn alerts_vault_seal_probe_and_rabbitmq_probe_against_real_rabbitmq() {
    use axum::routing::get;
    let sealed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = sealed.clone();
    let app = axum::Router::new().route(
        "/v1/sys/seal-status",
        get(move || {
            let sealed = s.load(std::sync::atomic::Ordering::SeqCst);
            async move { axum::Json(serde_json::json!({ "sealed": sealed, "t": 1 })) }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let runner = ProbeRunner::new(Duration::from_secs(5));

    let mut p = probe("vault", ProbeKind::VaultSeal);
    p.url = Some(base.clone());
    assert!(!runner.run(&p, now_ms()).await.failing);
    sealed.store(true, std::sync::atomic::Ordering::SeqCst);
    let o = runner.run(&p, now_ms()).await;
    assert!(o.failing && o.summary.contains("sealed"), "{o:?}");
    server.abort();

    // A real RabbitMQ node with the management plugin (scripts/test.sh installs it).
    let rabbit = probe_servers::start_rabbitmq("ops", "rabbit-pw-7f3c").await;
    let var = format!("ALERTS_TEST_RABBIT_PW_{}", std::process::id());
    std::env::set_var(&var, "rabbit-pw-7f3c");
    let mut p = probe("rabbit", ProbeKind::Rabbitmq);
    p.url = Some(rabbit.management_url());
    p.username = Some("ops".into());
    p.password = Some(SecretSource::env(&var));
    p.timeout_secs = Some(10);
    let o = runner.run(&p, now_ms()).await;
    assert!(!o.failing, "{o:?}");
    // A trailing slash in the configured URL reaches the same endpoint.
    p.url = Some(format!("{}/", rabbit.management_url()));
    let o = runner.run(&p, now_ms()).await;
    assert!(!o.failing, "{o:?}");
    p.url = Some(rabbit.management_url());

    // Unknown user: RabbitMQ answers 401.
    p.username = Some("intruder".into());
    let o = runner.run(&p, now_ms()).await;
    assert!(o.failing && o.summary.contains("401"), "{o:?}");

    // Right user, wrong password: 401, and the secret never reaches the summary.
    let wrong = format!("{var}_WRONG");
    std::env::set_var(&wrong, "not-the-rabbit-pw-91b2");
    p.username = Some("ops".into());
    p.password = Some(SecretSource::env(&wrong));
    let o = runner.run(&p, now_ms()).await;
    assert!(
        o.failing
            && o.summary.contains("401")
            && !o.summary.contains("not-the-rabbit-pw-91b2")
            && !o.summary.contains("rabbit-pw-7f3c"),
        "{o:?}"
    );

    // The node gone: the probe fails (connection refused), without the secret either.
    p.password = Some(SecretSource::env(&var));
    drop(rabbit);
    let o = runner.run(&p, now_ms()).await;
    assert!(o.failing && !o.summary.contains("rabbit-pw-7f3c"), "{o:?}");
}
