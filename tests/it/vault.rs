//! Vault against a real OpenBao (`bao`): init 5/3, the unseal ceremony (three people, duplicate
//! refusal, wrong and malformed shares, a reset outside the ceremony, the idle reset), sealing
//! through the `vault_seal` executor, and `/vault secrets` reading KV v2 metadata only (checked
//! through a recording proxy). Every test checks that no share reached a `Debug` output, the
//! tracing output or the server's own log.

use std::io::Write;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use ops_core::approvals::ActionExecutor;
use ops_core::base::SharedClock as Clock;
use ops_core::config::VaultConfig;
use ops_core::secret::SecretSource;
use ops_core::vault::{
    secrets_report, wall_clock, Ceremony, CeremonyError, CeremonyState, CeremonyUpdate, SealStatus,
    SecretMeta, ShareSecret, VaultApi, VaultClient, VaultError, VaultSeal,
};
use serde_json::json;
use sprocket_ops_tests::bao::{
    base64_encode, random_bytes, random_hex, BaoInit, BaoServer, BaoStorage, RecordingProxy,
};

// ---------------------------------------------------------------------------------------------
// Helpers

/// Tracing output captured for one (current-thread) test.
#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl LogBuf {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).to_string()
    }
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures every tracing event (TRACE and up, all crates, vaultrs and reqwest included) on this
/// thread until the guard drops. `#[tokio::test]` runs everything on this thread.
fn capture_tracing() -> (LogBuf, tracing::subscriber::DefaultGuard) {
    let buf = LogBuf::default();
    let sink = buf.0.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || LogWriter(sink.clone()))
        .finish();
    (buf, tracing::subscriber::set_default(subscriber))
}

fn config(address: &str, token_file: Option<&std::path::Path>, paths: &[&str]) -> VaultConfig {
    VaultConfig {
        address: address.to_string(),
        token: match token_file {
            Some(f) => SecretSource {
                env: None,
                file: Some(f.to_path_buf()),
            },
            None => SecretSource::env("SPROCKET_TEST_SURELY_UNSET_VAULT_TOKEN"),
        },
        ca_cert: None,
        secret_paths: paths.iter().map(|p| p.to_string()).collect(),
        ceremony_idle_minutes: 10,
        timeout_secs: 10,
    }
}

/// A client for `bao` with its root token (written to a file in the server's directory).
fn root_client(bao: &BaoServer) -> Arc<VaultClient> {
    let token_file = bao.dir().join("root-token");
    std::fs::write(&token_file, bao.root_token()).expect("write token file");
    Arc::new(VaultClient::new(&config(&bao.url(), Some(&token_file), &[])).expect("client"))
}

fn share(s: &str) -> ShareSecret {
    ShareSecret::new(s.to_string())
}

/// Delegates to the real client and counts calls; the ceremony must never read secrets, so
/// `secret_metadata` panics.
struct Counting {
    inner: Arc<dyn VaultApi>,
    unseals: AtomicUsize,
    resets: AtomicUsize,
}

impl Counting {
    fn new(inner: Arc<dyn VaultApi>) -> Arc<Counting> {
        Arc::new(Counting {
            inner,
            unseals: AtomicUsize::new(0),
            resets: AtomicUsize::new(0),
        })
    }
    fn unseals(&self) -> usize {
        self.unseals.load(Ordering::SeqCst)
    }
    fn resets(&self) -> usize {
        self.resets.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl VaultApi for Counting {
    async fn seal_status(&self) -> Result<SealStatus, VaultError> {
        self.inner.seal_status().await
    }
    async fn unseal(&self, share: &ShareSecret) -> Result<SealStatus, VaultError> {
        self.unseals.fetch_add(1, Ordering::SeqCst);
        self.inner.unseal(share).await
    }
    async fn reset_unseal(&self) -> Result<SealStatus, VaultError> {
        self.resets.fetch_add(1, Ordering::SeqCst);
        self.inner.reset_unseal().await
    }
    async fn seal(&self) -> Result<(), VaultError> {
        panic!("the ceremony must not seal Vault")
    }
    async fn secret_metadata(&self, m: &str, p: &str) -> Result<Option<SecretMeta>, VaultError> {
        panic!("the ceremony must not touch secrets ({m}/{p})")
    }
}

/// Every planted share, in each form it could leak in.
fn planted(init: &BaoInit, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = init
        .keys_base64
        .iter()
        .chain(init.keys_hex.iter())
        .cloned()
        .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn assert_no_share(what: &str, text: &str, shares: &[String]) {
    for s in shares {
        assert!(!text.contains(s.as_str()), "a share leaked into {what}");
    }
}

/// Debug output collected from everything the test touched.
#[derive(Default)]
struct Seen(Vec<String>);

impl Seen {
    fn add(&mut self, v: &dyn std::fmt::Debug) {
        self.0.push(format!("{v:?}"));
        self.0.push(format!("{v:#?}"));
    }
}

fn final_leak_checks(seen: &Seen, logs: &LogBuf, bao: &BaoServer, shares: &[String]) {
    for s in &seen.0 {
        assert_no_share("a Debug output", s, shares);
    }
    let logs = logs.text();
    assert!(
        logs.contains("unseal share"),
        "the tracing capture saw nothing from the ceremony: {logs}"
    );
    assert_no_share("the tracing output", &logs, shares);
    // The capture includes the HTTP stack's own TRACE events, not only ours.
    assert!(
        logs.contains("vaultrs") && logs.contains("TRACE"),
        "dependency trace events were not captured"
    );
    let server_log = bao.server_log();
    assert!(!server_log.is_empty(), "the server log was not captured");
    assert_no_share("the OpenBao server log", &server_log, shares);
    eprintln!(
        "leak checks: {} Debug outputs, {} bytes of tracing, {} bytes of server log",
        seen.0.len(),
        logs.len(),
        server_log.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn vault_ceremony_unseals_a_real_openbao_and_vault_seal_seals_it() {
    let t0 = Instant::now();
    let (logs, _guard) = capture_tracing();
    let mut seen = Seen::default();
    let mut bao = BaoServer::start_sealed(BaoStorage::Raft).await;
    let client = Arc::new(VaultClient::new(&config(&bao.url(), None, &[])).expect("client"));
    let status = client.seal_status().await.expect("status before init");
    assert!(!status.initialized && status.sealed, "{status:?}");

    let init = bao.init(5, 3).await;
    let shares = planted(&init, &[]);
    let t_init = t0.elapsed();
    let client = root_client(&bao);
    seen.add(&client);
    let status = client.seal_status().await.expect("seal status");
    assert!(status.initialized && status.sealed, "{status:?}");
    assert_eq!((status.t, status.n, status.progress), (3, 5, 0));
    assert_eq!(status.storage_type.as_deref(), Some("raft"));

    let api = Counting::new(client.clone());
    let mut c = Ceremony::start(
        api.clone(),
        wall_clock(),
        Ceremony::idle_from_minutes(10),
        "opener",
        &status,
    )
    .expect("ceremony opens");

    let u = c
        .submit(101, "alice", share(&init.keys_base64[0]))
        .await
        .expect("alice's share");
    seen.add(&u);
    assert!(
        matches!(
            u,
            CeremonyUpdate::Progress {
                progress: 1,
                threshold: 3,
                ..
            }
        ),
        "{u:?}"
    );

    // The same person (GitHub id) again, even under another login: refused before any call.
    let calls = api.unseals();
    let e = c
        .submit(101, "alice-renamed", share(&init.keys_base64[1]))
        .await
        .expect_err("second share from alice");
    seen.add(&e);
    assert!(matches!(e, CeremonyError::AlreadySubmitted { .. }), "{e:?}");
    assert_eq!(api.unseals(), calls, "the duplicate reached Vault");
    assert_eq!(client.seal_status().await.unwrap().progress, 1);

    // Shares are accepted in hex too.
    let u = c
        .submit(102, "bob", share(&init.keys_hex[1]))
        .await
        .expect("bob's share");
    seen.add(&u);
    assert!(
        matches!(u, CeremonyUpdate::Progress { progress: 2, .. }),
        "{u:?}"
    );
    let u = c
        .submit(103, "carol", share(&init.keys_base64[2]))
        .await
        .expect("carol's share");
    seen.add(&u);
    assert_eq!(
        u,
        CeremonyUpdate::Unsealed {
            login: "carol".into(),
            submitted_by: vec!["alice".into(), "bob".into(), "carol".into()]
        }
    );
    assert_eq!(c.state(), CeremonyState::Unsealed);
    seen.add(&c);
    seen.add(&c.snapshot());
    let status = client.seal_status().await.unwrap();
    assert!(!status.sealed, "{status:?}");
    let t_unsealed = t0.elapsed();

    // Seal through the approval executor, with the root token.
    let sealer = VaultSeal::new(client.clone());
    let params = json!({});
    let digest = sealer.digest(&params).await.expect("digest");
    let cluster = status.cluster_id.clone().expect("cluster id once unsealed");
    assert_eq!(digest, format!("unsealed:{cluster}"));
    let done = sealer.execute(&params).await.expect("seal");
    assert!(done.starts_with("Vault sealed"), "{done}");
    let status = client.seal_status().await.unwrap();
    assert!(status.sealed && status.initialized, "{status:?}");
    assert_eq!(sealer.digest(&params).await.unwrap(), "sealed");
    seen.add(&status);

    final_leak_checks(&seen, &logs, &bao, &shares);
    eprintln!(
        "vault ceremony (raft): init {:?}, unsealed {:?}, total {:?}",
        t_init,
        t_unsealed,
        t0.elapsed()
    );
}

#[tokio::test]
async fn vault_wrong_and_malformed_shares_are_invalid_and_the_ceremony_follows_vault() {
    let t0 = Instant::now();
    let (logs, _guard) = capture_tracing();
    let mut seen = Seen::default();
    let mut bao = BaoServer::start_sealed(BaoStorage::InMemory).await;
    let init = bao.init(5, 3).await;
    let random_share = base64_encode(&random_bytes(33));
    let malformed = format!("malformed-share-{}!!", random_hex(1));
    let shares = planted(&init, &[&random_share, &malformed]);
    let client = root_client(&bao);
    let api = Counting::new(client.clone());
    let status = client.seal_status().await.unwrap();
    let mut c = Ceremony::start(
        api.clone(),
        wall_clock(),
        Ceremony::idle_from_minutes(10),
        "opener",
        &status,
    )
    .unwrap();

    c.submit(101, "alice", share(&init.keys_base64[0]))
        .await
        .unwrap();
    // Malformed: Vault answers 400 about the key and keeps its progress.
    let e = c
        .submit(104, "mallory", share(&malformed))
        .await
        .expect_err("malformed share");
    seen.add(&e);
    assert_eq!(
        e,
        CeremonyError::InvalidShare {
            login: "mallory".into(),
            progress: 1,
            threshold: 3,
            attempt_reset: false
        }
    );
    assert_eq!(client.seal_status().await.unwrap().progress, 1);
    assert_eq!(c.state(), CeremonyState::Open);

    // Well-formed random bytes: Vault cannot tell until the threshold is reached.
    let u = c
        .submit(102, "bob", share(&random_share))
        .await
        .expect("Vault takes a well-formed share");
    assert!(
        matches!(u, CeremonyUpdate::Progress { progress: 2, .. }),
        "{u:?}"
    );
    let e = c
        .submit(103, "carol", share(&init.keys_base64[1]))
        .await
        .expect_err("the attempt with a wrong share fails");
    seen.add(&e);
    assert_eq!(
        e,
        CeremonyError::InvalidShare {
            login: "carol".into(),
            progress: 0,
            threshold: 3,
            attempt_reset: true
        }
    );
    let status = client.seal_status().await.unwrap();
    assert!(status.sealed && status.progress == 0, "{status:?}");
    assert_eq!(c.state(), CeremonyState::Open);
    assert_eq!(c.snapshot().round, 2);
    assert!(c.submitted_by().is_empty());

    // The new round: everyone gives their share again.
    for (id, login, key) in [
        (101, "alice", &init.keys_base64[0]),
        (102, "bob", &init.keys_base64[1]),
        (103, "carol", &init.keys_base64[2]),
    ] {
        let u = c.submit(id, login, share(key)).await.expect("share");
        seen.add(&u);
    }
    assert_eq!(c.state(), CeremonyState::Unsealed);
    assert!(!client.seal_status().await.unwrap().sealed);
    seen.add(&c);
    seen.add(&c.snapshot());

    final_leak_checks(&seen, &logs, &bao, &shares);
    eprintln!("vault invalid shares: {:?}", t0.elapsed());
}

#[tokio::test]
async fn vault_outside_reset_aborts_the_ceremony_and_idle_reset_resets_progress() {
    let t0 = Instant::now();
    let (logs, _guard) = capture_tracing();
    let mut seen = Seen::default();
    let mut bao = BaoServer::start_sealed(BaoStorage::InMemory).await;
    let init = bao.init(5, 3).await;
    let shares = planted(&init, &[]);
    let client = root_client(&bao);
    let api = Counting::new(client.clone());
    let now = Arc::new(AtomicI64::new(1_000_000));
    let clock: Clock = {
        let now = now.clone();
        Arc::new(move || now.load(Ordering::SeqCst))
    };
    let idle = Ceremony::idle_from_minutes(10);

    // 1. Someone resets the attempt outside the ceremony between two shares.
    let status = client.seal_status().await.unwrap();
    let mut c = Ceremony::start(api.clone(), clock.clone(), idle, "opener", &status).unwrap();
    c.submit(101, "alice", share(&init.keys_base64[0]))
        .await
        .unwrap();
    bao.reset_unseal_outside().await;
    let calls = api.unseals();
    let e = c
        .submit(102, "bob", share(&init.keys_base64[1]))
        .await
        .expect_err("nonce changed");
    seen.add(&e);
    assert_eq!(
        e,
        CeremonyError::NonceChanged {
            progress: 0,
            threshold: 3
        }
    );
    assert!(e.to_string().contains("outside the ceremony"), "{e}");
    assert_eq!(api.unseals(), calls, "bob's share was sent after the abort");
    assert_eq!(c.state(), CeremonyState::Aborted);
    assert!(matches!(
        c.submit(103, "carol", share(&init.keys_base64[2])).await,
        Err(CeremonyError::Closed(CeremonyState::Aborted))
    ));
    seen.add(&c);

    // 2. Someone starts another attempt before the ceremony's first share.
    let status = client.seal_status().await.unwrap();
    let mut c = Ceremony::start(api.clone(), clock.clone(), idle, "opener", &status).unwrap();
    let outside = bao
        .api(
            "PUT",
            "/v1/sys/unseal",
            Some(&json!({"key": init.keys_base64[4]})),
        )
        .await;
    assert_eq!(outside.json()["progress"], 1);
    let calls = api.unseals();
    let e = c
        .submit(101, "alice", share(&init.keys_base64[0]))
        .await
        .expect_err("another attempt started");
    assert!(
        matches!(e, CeremonyError::NonceChanged { progress: 1, .. }),
        "{e:?}"
    );
    assert_eq!(api.unseals(), calls);
    bao.reset_unseal_outside().await;

    // 3. Idle reset: 10 minutes after the last share, progress is reset through the API.
    let status = client.seal_status().await.unwrap();
    assert_eq!(status.progress, 0);
    let mut c = Ceremony::start(api.clone(), clock.clone(), idle, "opener", &status).unwrap();
    now.store(1_060_000, Ordering::SeqCst);
    c.submit(101, "alice", share(&init.keys_base64[0]))
        .await
        .unwrap();
    assert_eq!(c.idle_deadline_ms(), 1_060_000 + 600_000);
    assert_eq!(c.idle_reset(1_060_000 + 599_999).await.unwrap(), None);
    assert_eq!(api.resets(), 0);
    assert_eq!(client.seal_status().await.unwrap().progress, 1);
    let r = c
        .idle_reset(1_060_000 + 600_000)
        .await
        .unwrap()
        .expect("idle reset");
    assert_eq!((r.progress_before, r.threshold, r.idle_minutes), (1, 3, 10));
    assert_eq!(api.resets(), 1);
    let status = client.seal_status().await.unwrap();
    assert!(
        status.sealed && status.progress == 0 && status.nonce.is_empty(),
        "{status:?}"
    );
    assert_eq!(c.state(), CeremonyState::Expired);
    assert_eq!(
        c.submit(102, "bob", share(&init.keys_base64[1])).await,
        Err(CeremonyError::Closed(CeremonyState::Expired))
    );
    seen.add(&c);
    seen.add(&c.snapshot());
    seen.add(&r);

    final_leak_checks(&seen, &logs, &bao, &shares);
    eprintln!("vault abort + idle reset: {:?}", t0.elapsed());
}

#[tokio::test]
async fn vault_secrets_report_reads_only_kv2_metadata() {
    let t0 = Instant::now();
    let (logs, _guard) = capture_tracing();
    let bao = BaoServer::start_dev().await;
    bao.enable_kv2("platform").await;
    let value = format!("planted-secret-value-{}", random_hex(2));
    let written_after = chrono::Utc::now() - chrono::Duration::seconds(5);
    bao.kv2_put(
        "platform",
        "sprocket/manual/oauth/google",
        &json!({"clientId": "id", "clientSecret": value}),
    )
    .await;
    bao.kv2_put("platform", "ballchasing", &json!({ "token": value }))
        .await;
    bao.kv2_put("secret", "app", &json!({ "password": value }))
        .await;
    bao.kv2_put("secret", "gone", &json!({ "password": value }))
        .await;
    bao.kv2_delete("secret", "gone").await;

    let paths = [
        "platform/sprocket/manual/oauth/google",
        "platform/ballchasing",
        "platform/sprocket/chatwoot",
        "secret/app",
        "secret/gone",
        "secret/infrastructure/data/redis",
    ];
    let proxy = RecordingProxy::start(bao.addr()).await;
    let token_file = bao.dir().join("root-token");
    std::fs::write(&token_file, bao.root_token()).unwrap();
    let cfg = config(&proxy.url(), Some(&token_file), &paths);
    let client = VaultClient::new(&cfg).expect("client");
    let report = secrets_report(&client, &cfg.secret_paths)
        .await
        .expect("report");
    let by_path = |p: &str| {
        report
            .iter()
            .find(|r| r.path == p)
            .unwrap_or_else(|| panic!("{p} missing from the report"))
    };
    for p in [
        "platform/sprocket/manual/oauth/google",
        "platform/ballchasing",
        "secret/app",
    ] {
        let r = by_path(p);
        assert!(r.exists, "{r:?}");
        assert!(r.error.is_none(), "{r:?}");
        assert_eq!(r.current_version, Some(1));
        let t = r.updated_time.expect("updated time");
        assert!(t >= written_after && t <= chrono::Utc::now(), "{r:?}");
    }
    for p in [
        "platform/sprocket/chatwoot",
        "secret/infrastructure/data/redis",
    ] {
        let r = by_path(p);
        assert!(
            !r.exists && r.updated_time.is_none() && r.error.is_none(),
            "{r:?}"
        );
    }
    let gone = by_path("secret/gone");
    assert!(!gone.exists && gone.updated_time.is_some(), "{gone:?}");

    // Only metadata endpoints were called, one per configured path, in order.
    let seen: Vec<(String, String)> = proxy
        .requests()
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect();
    let expected: Vec<(String, String)> = paths
        .iter()
        .map(|p| {
            let (mount, rest) = p.split_once('/').unwrap();
            ("GET".to_string(), format!("/v1/{mount}/metadata/{rest}"))
        })
        .collect();
    assert_eq!(seen, expected);

    // A token that may not read metadata: each path reports Forbidden; nothing fails open.
    let weak_file = bao.dir().join("weak-token");
    std::fs::write(&weak_file, bao.create_unprivileged_token().await).unwrap();
    let weak = VaultClient::new(&config(&proxy.url(), Some(&weak_file), &paths)).unwrap();
    let report2 = secrets_report(&weak, &cfg.secret_paths).await.unwrap();
    assert!(
        report2
            .iter()
            .all(|r| !r.exists && r.error == Some(VaultError::Forbidden)),
        "{report2:?}"
    );

    let text = format!("{report:?} {report2:?} {client:?} {weak:?} {}", logs.text());
    assert!(!text.contains(&value), "a secret value leaked");
    assert!(!text.contains(bao.root_token()), "the root token leaked");
    assert!(
        proxy
            .requests()
            .iter()
            .all(|r| r.path.contains("/metadata/")),
        "{:?}",
        proxy.requests()
    );
    eprintln!("vault secrets report: {:?}", t0.elapsed());
}

#[tokio::test]
async fn vault_client_maps_an_unreachable_or_sealed_vault_to_safe_errors() {
    // Nothing listens on a port we bound and released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = VaultClient::new(&config(&format!("http://127.0.0.1:{port}"), None, &[])).unwrap();
    assert_eq!(client.seal_status().await, Err(VaultError::Unreachable));
    assert_eq!(
        client.unseal(&share("c2hhcmU=")).await,
        Err(VaultError::Unreachable)
    );

    // Sealed: metadata is refused as Sealed and the report fails as a whole.
    let mut bao = BaoServer::start_sealed(BaoStorage::InMemory).await;
    bao.init(1, 1).await;
    let client = root_client(&bao);
    let paths = vec!["secret/app".to_string()];
    assert_eq!(
        secrets_report(client.as_ref(), &paths).await,
        Err(VaultError::Sealed)
    );
    // Sealing a sealed OpenBao is a no-op success.
    assert_eq!(client.seal().await, Ok(()));
    assert!(client.seal_status().await.unwrap().sealed);
    let msg = VaultError::Sealed.to_string();
    assert_eq!(msg, "Vault is sealed");
}
