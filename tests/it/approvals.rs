//! The approval engine on both real stores (SQLite file, Postgres): never the requester (by
//! GitHub id, whatever Discord account), approver roles checked at the decision, deny vetoes,
//! expiry, void on a changed digest, forged buttons refused, and exactly-once execution under
//! 100 concurrent approvals. Executors are hand-written counting fakes.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ops_core::approvals::{
    ActionExecutor, ApprovalState, Approvals, ButtonKind, Decided, Decision, Executed, PersonRef,
    Refusal,
};
use ops_core::permissions::Permissions;
use ops_core::store::{self, Store};
use ops_core::OpsError;
use sprocket_ops_tests::env;

/// Counts executions; its digest is whatever the test sets.
#[derive(Default)]
struct Counting {
    runs: AtomicUsize,
    digest: Mutex<String>,
}

#[async_trait]
impl ActionExecutor for Counting {
    async fn digest(&self, _params: &serde_json::Value) -> Result<String, OpsError> {
        Ok(self.digest.lock().unwrap().clone())
    }
    async fn execute(&self, params: &serde_json::Value) -> Result<String, OpsError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Ok(format!("scaled {} to 0", params["service"]))
    }
}

fn perms() -> Arc<Permissions> {
    let text = std::fs::read_to_string(env::workspace_root().join("permissions.toml")).unwrap();
    Arc::new(Permissions::parse("permissions.toml", &text).unwrap())
}

fn person(github_id: u64, discord_id: u64) -> PersonRef {
    PersonRef {
        github_id,
        login: format!("user{github_id}"),
        discord_id,
    }
}

fn roles(r: &[&str]) -> BTreeSet<String> {
    r.iter().map(|s| s.to_string()).collect()
}

struct Fixture {
    store: Arc<dyn Store>,
    approvals: Arc<Approvals>,
    exec: Arc<Counting>,
}

fn engine(store: &Arc<dyn Store>, exec: &Arc<Counting>) -> Arc<Approvals> {
    let mut a = Approvals::new(store.clone(), perms(), b"test-bot-token");
    a.register("scale_to_zero", exec.clone());
    Arc::new(a)
}

fn fixture(store: Arc<dyn Store>) -> Fixture {
    let exec = Arc::new(Counting::default());
    *exec.digest.lock().unwrap() = "v1".into();
    Fixture {
        approvals: engine(&store, &exec),
        store,
        exec,
    }
}

async fn suite(f: Fixture, expire: impl AsyncFn(&str)) {
    let a = &f.approvals;
    let alice = person(1, 101);
    let alice_second_account = person(1, 102);
    let operator = roles(&["everyone", "viewer", "operator"]);
    let params = serde_json::json!({ "service": "prod-web" });

    // Nobody else could approve: refused at once.
    let e = a
        .request(
            &alice,
            "scale_to_zero",
            params.clone(),
            "scale prod-web to 0",
            0,
        )
        .await
        .unwrap_err();
    assert_eq!(e, Refusal::NoEligibleApprover("scale_to_zero".into()));

    let req = a
        .request(
            &alice,
            "scale_to_zero",
            params.clone(),
            "scale prod-web to 0",
            1,
        )
        .await
        .unwrap();
    assert_eq!(req.state, ApprovalState::Pending);
    assert_eq!(req.digest, "v1");
    assert!(
        req.expires_at_ms - req.created_at_ms == 15 * 60_000,
        "default expiry 15 minutes"
    );

    // Buttons: authentic ids parse; any change is refused.
    let approve_id = a.custom_id(&req.id, ButtonKind::Approve);
    assert!(approve_id.len() <= 100);
    assert_eq!(
        a.parse_custom_id(&approve_id),
        Some(Ok((req.id.clone(), ButtonKind::Approve)))
    );
    let forged = [
        approve_id.replace(":a:", ":c:"),
        format!("{}0", approve_id),
        approve_id.replacen(&req.id[..4], "ffff", 1),
        format!("apr:{}:a:{}", req.id, "0".repeat(24)),
        "apr:garbage".to_string(),
    ];
    for f in forged {
        assert_eq!(a.parse_custom_id(&f), Some(Err(Refusal::BadButton)), "{f}");
    }
    assert_eq!(a.parse_custom_id("other:button"), None);

    // Never the requester, whichever Discord account they click with.
    for me in [&alice, &alice_second_account] {
        let e = a
            .decide(&req.id, me, &operator, Decision::Approve)
            .await
            .unwrap_err();
        assert_eq!(e, Refusal::OwnRequest);
    }
    // The approver's roles matter.
    let e = a
        .decide(
            &req.id,
            &person(2, 201),
            &roles(&["everyone", "viewer"]),
            Decision::Approve,
        )
        .await
        .unwrap_err();
    assert_eq!(e, Refusal::NotAnApprover("scale_to_zero".into()));

    // A restart between request and approval: a new engine over the same store and secret.
    let restarted = engine(&f.store, &f.exec);
    assert_eq!(
        restarted.parse_custom_id(&approve_id),
        Some(Ok((req.id.clone(), ButtonKind::Approve)))
    );

    // 100 concurrent approvals by 100 different approvers: exactly one execution.
    let mut tasks = Vec::new();
    for i in 0..100u64 {
        let a = if i % 2 == 0 {
            restarted.clone()
        } else {
            a.clone()
        };
        let id = req.id.clone();
        let who = person(1000 + i, 5000 + i);
        let r = operator.clone();
        tasks.push(tokio::spawn(async move {
            match a.decide(&id, &who, &r, Decision::Approve).await {
                Ok(Decided::Approved) => Some(a.execute(&id).await.unwrap()),
                Ok(other) => panic!("unexpected {other:?}"),
                Err(Refusal::AlreadyDecided(_)) => None,
                Err(e) => panic!("unexpected refusal {e}"),
            }
        }));
    }
    let mut executed = Vec::new();
    for t in tasks {
        if let Some(r) = t.await.unwrap() {
            executed.push(r);
        }
    }
    assert_eq!(executed.len(), 1, "{executed:?}");
    assert_eq!(
        executed[0],
        Executed::Done("scaled \"prod-web\" to 0".into())
    );
    assert_eq!(f.exec.runs.load(Ordering::SeqCst), 1);
    // The same click replayed (a gateway reconnect) changes nothing.
    let e = a
        .decide(&req.id, &person(1000, 5000), &operator, Decision::Approve)
        .await
        .unwrap_err();
    assert!(
        matches!(e, Refusal::AlreadyDecided("done") | Refusal::AlreadyVoted),
        "{e:?}"
    );
    assert_eq!(a.execute(&req.id).await.unwrap(), Executed::NotMine);
    assert_eq!(f.exec.runs.load(Ordering::SeqCst), 1);
    assert_eq!(a.get(&req.id).await.unwrap().state, ApprovalState::Done);

    // Deny by any eligible approver vetoes.
    let req2 = a
        .request(&alice, "scale_to_zero", params.clone(), "again", 1)
        .await
        .unwrap();
    assert_eq!(
        a.decide(&req2.id, &person(3, 301), &operator, Decision::Deny)
            .await
            .unwrap(),
        Decided::Denied
    );
    let e = a
        .decide(&req2.id, &person(4, 401), &operator, Decision::Approve)
        .await
        .unwrap_err();
    assert_eq!(e, Refusal::AlreadyDecided("denied"));

    // Expired requests refuse decisions and the sweeper reports them once.
    let req3 = a
        .request(&alice, "scale_to_zero", params.clone(), "late", 1)
        .await
        .unwrap();
    expire(&req3.id).await;
    let swept = a.expire_due().await.unwrap();
    assert_eq!(
        swept.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [req3.id.as_str()]
    );
    assert!(a.expire_due().await.unwrap().is_empty());
    let e = a
        .decide(&req3.id, &person(3, 301), &operator, Decision::Approve)
        .await
        .unwrap_err();
    assert!(
        matches!(e, Refusal::AlreadyDecided("expired") | Refusal::Expired),
        "{e:?}"
    );

    // What would run changed between request and execution: void, not executed.
    let req4 = a
        .request(&alice, "scale_to_zero", params.clone(), "changed", 1)
        .await
        .unwrap();
    *f.exec.digest.lock().unwrap() = "v2".into();
    assert_eq!(
        a.decide(&req4.id, &person(3, 301), &operator, Decision::Approve)
            .await
            .unwrap(),
        Decided::Approved
    );
    assert!(matches!(
        a.execute(&req4.id).await.unwrap(),
        Executed::Void(_)
    ));
    assert_eq!(a.get(&req4.id).await.unwrap().state, ApprovalState::Void);
    assert_eq!(f.exec.runs.load(Ordering::SeqCst), 1);

    // Two approvals needed: the same person twice does not count twice.
    let text = std::fs::read_to_string(env::workspace_root().join("permissions.toml"))
        .unwrap()
        .replacen(
            "[actions.scale_to_zero]\napprovals = 1",
            "[actions.scale_to_zero]\napprovals = 2",
            1,
        );
    let two = Arc::new(Permissions::parse("p", &text).unwrap());
    assert_eq!(two.rule("scale_to_zero").unwrap().approvals, 2);
    let mut a2 = Approvals::new(f.store.clone(), two, b"test-bot-token");
    a2.register("scale_to_zero", f.exec.clone());
    let e = a2
        .request(&alice, "scale_to_zero", params.clone(), "two", 1)
        .await
        .unwrap_err();
    assert_eq!(
        e,
        Refusal::NoEligibleApprover("scale_to_zero".into()),
        "one other approver is not enough"
    );
    let req5 = a2
        .request(&alice, "scale_to_zero", params.clone(), "two", 2)
        .await
        .unwrap();
    let bob = person(5, 501);
    let bob_again = person(5, 502);
    assert_eq!(
        a2.decide(&req5.id, &bob, &operator, Decision::Approve)
            .await
            .unwrap(),
        Decided::Recorded { have: 1, need: 2 }
    );
    assert_eq!(
        a2.decide(&req5.id, &bob_again, &operator, Decision::Approve)
            .await
            .unwrap_err(),
        Refusal::AlreadyVoted
    );
    assert_eq!(
        a2.decide(&req5.id, &person(6, 601), &operator, Decision::Approve)
            .await
            .unwrap(),
        Decided::Approved
    );
    assert_eq!(a2.votes(&req5.id).await.unwrap().len(), 2);
    assert_eq!(
        a2.execute(&req5.id).await.unwrap(),
        Executed::Done("scaled \"prod-web\" to 0".into())
    );
    assert_eq!(f.exec.runs.load(Ordering::SeqCst), 2);

    // Requests left executing by a crash are failed at start-up, not re-run.
    let req6 = a
        .request(&alice, "scale_to_zero", params.clone(), "crash", 1)
        .await
        .unwrap();
    *f.exec.digest.lock().unwrap() = "v1".into();
    assert_eq!(
        a.decide(&req6.id, &person(3, 301), &operator, Decision::Approve)
            .await
            .unwrap(),
        Decided::Approved
    );
    assert!(f
        .store
        .transition_approval(
            &req6.id,
            ApprovalState::Approved,
            ApprovalState::Executing,
            1
        )
        .await
        .unwrap());
    let recovered = restarted.recover_interrupted().await.unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!(a.get(&req6.id).await.unwrap().state, ApprovalState::Failed);
}

#[tokio::test]
async fn approvals_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("a.db").display());
    let store = store::connect(&url, None).await.unwrap();
    let raw = url.clone();
    suite(fixture(store), async move |id: &str| {
        let pool = sqlx::SqlitePool::connect(&raw).await.unwrap();
        sqlx::query("UPDATE approvals SET expires_at_ms = 0 WHERE id = $1")
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn approvals_on_postgres() {
    let schema = env::PgSchema::create("a").await;
    let url = schema.url.clone();
    let store = store::connect(&url, None).await.unwrap();
    let raw = url.clone();
    suite(fixture(store), async move |id: &str| {
        let pool = sqlx::PgPool::connect(&raw).await.unwrap();
        sqlx::query("UPDATE approvals SET expires_at_ms = 0 WHERE id = $1")
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
    })
    .await;
    schema.drop().await;
}

/// Publishes two progress steps when handed a sink; without one it runs silently.
#[derive(Default)]
struct Publishing {
    silent_runs: AtomicUsize,
}

#[async_trait]
impl ActionExecutor for Publishing {
    async fn digest(&self, _params: &serde_json::Value) -> Result<String, OpsError> {
        Ok("v1".into())
    }
    async fn execute(&self, _params: &serde_json::Value) -> Result<String, OpsError> {
        self.silent_runs.fetch_add(1, Ordering::SeqCst);
        Ok("ran silently".into())
    }
    async fn execute_observed(
        &self,
        _params: &serde_json::Value,
        _bound: &serde_json::Value,
        _approvers: &[String],
        progress: ops_core::deploy::ProgressFn,
    ) -> Result<String, ops_core::approvals::ExecFailure> {
        let mut p = ops_core::deploy::DeployProgress::new("platform");
        for phase in [
            ops_core::deploy::DeployPhase::Applying,
            ops_core::deploy::DeployPhase::Verifying,
        ] {
            p.phase = phase;
            progress(&p);
        }
        Ok("ran with progress".into())
    }
}

/// `Approvals::execute_observed` hands the executor the sink (an approval click follows an
/// approved deploy through it); `execute` keeps running it without one.
#[tokio::test]
async fn an_observed_execution_hands_its_progress_sink_to_the_executor() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("a.db").display());
    let store = store::connect(&url, None).await.unwrap();
    let exec = Arc::new(Publishing::default());
    let mut a = Approvals::new(store, perms(), b"test-bot-token");
    a.register("scale_to_zero", exec.clone());
    let alice = person(1, 101);
    let bob = person(2, 201);
    let operator = roles(&["everyone", "viewer", "operator"]);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let req = a
            .request(&alice, "scale_to_zero", serde_json::json!({}), "scale", 1)
            .await
            .unwrap();
        let d = a
            .decide(&req.id, &bob, &operator, Decision::Approve)
            .await
            .unwrap();
        assert_eq!(d, Decided::Approved);
        ids.push(req.id);
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink: ops_core::deploy::ProgressFn = {
        let seen = seen.clone();
        Arc::new(move |p: &ops_core::deploy::DeployProgress| seen.lock().unwrap().push(p.phase))
    };
    assert_eq!(
        a.execute_observed(&ids[0], Some(sink)).await.unwrap(),
        Executed::Done("ran with progress".into())
    );
    assert_eq!(
        *seen.lock().unwrap(),
        [
            ops_core::deploy::DeployPhase::Applying,
            ops_core::deploy::DeployPhase::Verifying
        ]
    );
    assert_eq!(
        a.execute(&ids[1]).await.unwrap(),
        Executed::Done("ran silently".into())
    );
    assert_eq!(exec.silent_runs.load(Ordering::SeqCst), 1);
}
