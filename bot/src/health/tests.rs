//! Unit tests of the health endpoint, the heartbeat and the probe client.
use super::*;

#[test]
fn probe_urls_parse() {
    let u = ProbeUrl::parse("http://127.0.0.1:9464/healthz").unwrap();
    assert_eq!(
        u,
        ProbeUrl {
            host: "127.0.0.1".into(),
            port: 9464,
            path: "/healthz".into()
        }
    );
    assert_eq!(u.authority(), "127.0.0.1:9464");
    let u = ProbeUrl::parse("http://[::1]:80").unwrap();
    assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("::1", 80, "/"));
    assert_eq!(u.authority(), "[::1]:80");
    let u = ProbeUrl::parse("http://localhost?x=1").unwrap();
    assert_eq!((u.port, u.path.as_str()), (80, "/?x=1"));
    for bad in [
        "https://127.0.0.1/healthz",
        "127.0.0.1:9464",
        "http://:9464/",
        "http://h:99999/",
        "http://u:p@h/",
        "http://[::1/",
        "http://h/a b",
    ] {
        assert!(ProbeUrl::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn answers_parse() {
    assert_eq!(
        parse_answer(b"HTTP/1.1 503 Service Unavailable\r\nA: b\r\n\r\n{\"x\":1}\n").unwrap(),
        (503, "{\"x\":1}\n".to_string())
    );
    assert!(parse_answer(b"SSH-2.0-OpenSSH\r\n").is_err());
    assert!(parse_answer(b"").is_err());
}

fn state(store_ok: Arc<AtomicBool>) -> (HealthState, Arc<AtomicBool>) {
    let ready = Arc::new(AtomicBool::new(false));
    let state =
        HealthState::with_store_probe(Arc::new(Metrics::new()), Arc::clone(&ready), move || {
            let ok = store_ok.load(Ordering::SeqCst);
            async move {
                if ok {
                    Ok(())
                } else {
                    Err("database error: locked".to_string())
                }
            }
        });
    (state, ready)
}

async fn get(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_string())
}

#[tokio::test]
async fn health_endpoint_reports_each_check() {
    let store_ok = Arc::new(AtomicBool::new(true));
    let (state, ready) = state(Arc::clone(&store_ok));
    state.metrics.command("status", "ok");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let addr = serve_http("127.0.0.1:0", state, async {
        let _ = stop_rx.await;
    })
    .await
    .unwrap();
    assert_ne!(addr.port(), 0);
    let url = format!("http://{addr}/healthz");

    // Discord away: the process is alive (no restart), not ready.
    let (status, _, body) = get(addr, "GET", "/healthz").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["checks"]["gateway"], "not connected");
    assert_eq!(v["checks"]["store"], "ok");
    probe(&url).await.unwrap();
    let (status, _, body) = get(addr, "GET", "/readyz").await;
    assert_eq!(status, 503);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "unavailable");
    assert_eq!(v["failed"], serde_json::json!(["gateway"]));
    let e = probe(&format!("http://{addr}/readyz")).await.unwrap_err();
    assert_eq!(e.code, PROBE_FAILED);
    assert!(
        e.message.contains("HTTP 503") && e.message.contains("gateway"),
        "{e}"
    );

    ready.store(true, Ordering::SeqCst);
    let (status, head, body) = get(addr, "GET", "/healthz").await;
    assert_eq!(status, 200, "{body}");
    assert!(head.contains("content-type: application/json"), "{head}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v.get("failed").is_none());
    probe(&url).await.unwrap();

    let (status, _, body) = get(addr, "GET", "/readyz").await;
    assert_eq!(status, 200, "{body}");
    probe(&format!("http://{addr}/readyz")).await.unwrap();

    store_ok.store(false, Ordering::SeqCst);
    let (status, _, body) = get(addr, "GET", "/healthz").await;
    assert_eq!(
        status, 200,
        "a failing store is not a reason to restart: {body}"
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["checks"]["store"], "failing");
    let (status, _, body) = get(addr, "GET", "/readyz").await;
    assert_eq!(status, 503);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["checks"]["store"], "failing");
    assert_eq!(v["failed"], serde_json::json!(["store"]));
    assert!(
        !body.contains("locked"),
        "store errors are logged, not served"
    );

    let (status, head, body) = get(addr, "GET", "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(body.contains("sprocket_ops_commands_total{command=\"status\",outcome=\"ok\"} 1\n"));
    assert!(
        body.ends_with("sprocket_ops_gateway_connected 1\n"),
        "{body}"
    );

    assert_eq!(get(addr, "GET", "/").await.0, 404);
    assert_eq!(get(addr, "GET", "/healthz/x").await.0, 404);
    let (status, head, _) = get(addr, "POST", "/metrics").await;
    assert_eq!(status, 405);
    assert!(head.contains("allow: get"), "{head}");

    stop_tx.send(()).unwrap();
    let mut stopped = false;
    for _ in 0..50 {
        if TcpStream::connect(addr).await.is_err() {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stopped, "the listener closes on shutdown");
    let e = probe(&url).await.unwrap_err();
    assert!(e.message.contains("cannot connect"), "{e}");
}

#[tokio::test]
async fn healthz_stays_200_while_discord_is_away_and_a_deploy_runs_and_fails_only_when_stuck() {
    let (state, ready) = state(Arc::new(AtomicBool::new(true)));
    ready.store(false, Ordering::SeqCst);
    let state = state.with_deploys(Arc::new(|| vec!["platform".to_string()]));
    let (status, body) = healthz(&state).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["checks"]["gateway"], "not connected");
    assert_eq!(body["deploys_running"], serde_json::json!(["platform"]));

    // A heartbeat that last ticked a minute ago: the runtime is stuck.
    let now = Instant::now();
    let started = now.checked_sub(Duration::from_secs(60)).unwrap_or(now);
    let stale = Heartbeat {
        started,
        last_ms: Arc::new(AtomicU64::new(0)),
    };
    let stuck = state.clone().with_heartbeat(stale);
    if started < now {
        let (status, body) = healthz(&stuck).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["status"], "stuck");
    }

    // A ticking heartbeat stays fresh.
    let beat = Heartbeat::new();
    let task = beat.spawn();
    tokio::time::sleep(HEARTBEAT_EVERY + Duration::from_millis(200)).await;
    assert!(beat.age() < STUCK_AFTER);
    let (status, _) = healthz(&state.with_heartbeat(beat)).await;
    assert_eq!(status, StatusCode::OK);
    task.abort();
}

#[tokio::test]
async fn bad_listen_addresses_are_exit_codes() {
    let (state, _) = state(Arc::new(AtomicBool::new(true)));
    let e = serve_http("", state.clone(), std::future::pending())
        .await
        .unwrap_err();
    assert_eq!(e.code, Exit::USAGE);
    let e = serve_http("not an address", state.clone(), std::future::pending())
        .await
        .unwrap_err();
    assert_eq!(e.code, Exit::USAGE, "{e}");
    let held = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let taken = held.local_addr().unwrap().to_string();
    let e = serve_http(&taken, state, std::future::pending())
        .await
        .unwrap_err();
    assert_eq!(e.code, Exit::UNAVAILABLE, "{e}");
    assert!(e.message.contains(&taken), "{e}");
}

#[tokio::test]
async fn probe_times_out_on_a_silent_server() {
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let (_s, _) = silent.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
    });
    let started = std::time::Instant::now();
    let e = probe(&format!("http://{addr}/healthz")).await.unwrap_err();
    assert_eq!(e.code, PROBE_FAILED);
    assert!(e.message.contains("no answer within 3 s"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
    hold.abort();
    let e = probe("ftp://x").await.unwrap_err();
    assert_eq!(e.code, Exit::USAGE);
}
