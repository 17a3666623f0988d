//! States that cannot get stuck or lie (issue 12), on the real SQLite store: a request a crash
//! left `approved` is failed at start-up saying nothing ran; an action that ran but whose end
//! could not be saved is reported as having run (never as a refusal); an approved request
//! whose action has no executor in this build fails visibly instead of staying `executing`.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use ops_core::approvals::{
    ActionExecutor, ApprovalState, Approvals, Decided, Decision, Executed, PersonRef,
    INTERRUPTED_APPROVED, INTERRUPTED_EXECUTING,
};
use ops_core::permissions::Permissions;
use ops_core::store::{self, Store};
use ops_core::OpsError;
use sprocket_ops_tests::env;

#[derive(Default)]
struct Counting {
    runs: AtomicUsize,
}

#[async_trait]
impl ActionExecutor for Counting {
    async fn digest(&self, _params: &serde_json::Value) -> Result<String, OpsError> {
        Ok("d1".into())
    }
    async fn execute(&self, _params: &serde_json::Value) -> Result<String, OpsError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Ok("scaled prod-web to 0".into())
    }
}

fn perms() -> Arc<Permissions> {
    let text = std::fs::read_to_string(env::workspace_root().join("permissions.toml")).unwrap();
    Arc::new(Permissions::parse("permissions.toml", &text).unwrap())
}

fn person(github_id: u64) -> PersonRef {
    PersonRef {
        github_id,
        login: format!("user{github_id}"),
        discord_id: github_id + 100,
    }
}

fn operator() -> BTreeSet<String> {
    ["everyone", "viewer", "operator"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

struct Fixture {
    _dir: tempfile::TempDir,
    url: String,
    store: Arc<dyn Store>,
    exec: Arc<Counting>,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("a.db").display());
    let store = store::connect(&url, None).await.unwrap();
    Fixture {
        _dir: dir,
        url,
        store,
        exec: Arc::new(Counting::default()),
    }
}

fn engine(f: &Fixture, with_executor: bool) -> Approvals {
    let mut a = Approvals::new(f.store.clone(), perms(), b"test-bot-token");
    if with_executor {
        a.register("scale_to_zero", f.exec.clone());
    }
    a
}

/// A pending request approved by a second person: `approved`, not yet executed.
async fn approved(a: &Approvals) -> String {
    let req = a
        .request(
            &person(1),
            "scale_to_zero",
            serde_json::json!({"service": "prod-web"}),
            "scale prod-web to 0",
            1,
        )
        .await
        .unwrap();
    assert_eq!(
        a.decide(&req.id, &person(2), &operator(), Decision::Approve)
            .await
            .unwrap(),
        Decided::Approved
    );
    req.id
}

#[tokio::test]
async fn a_request_left_approved_by_a_crash_is_recovered_at_start_up_saying_nothing_ran() {
    let f = fixture().await;
    let a = engine(&f, true);
    // Crash 1: after the approval, before `executing`.
    let left_approved = approved(&a).await;
    // Crash 2: while executing.
    let left_executing = approved(&a).await;
    assert!(f
        .store
        .transition_approval(
            &left_executing,
            ApprovalState::Approved,
            ApprovalState::Executing,
            1
        )
        .await
        .unwrap());

    let restarted = engine(&f, true);
    let recovered = restarted.recover_interrupted().await.unwrap();
    let mut ids: Vec<&str> = recovered.iter().map(|r| r.id.as_str()).collect();
    ids.sort();
    let mut want = vec![left_approved.as_str(), left_executing.as_str()];
    want.sort();
    assert_eq!(ids, want, "both are recovered, not only `executing`");
    let a1 = restarted.get(&left_approved).await.unwrap();
    assert_eq!(a1.state, ApprovalState::Failed);
    assert_eq!(a1.result.as_deref(), Some(INTERRUPTED_APPROVED));
    assert!(INTERRUPTED_APPROVED.contains("nothing ran"));
    let a2 = restarted.get(&left_executing).await.unwrap();
    assert_eq!(a2.state, ApprovalState::Failed);
    assert_eq!(a2.result.as_deref(), Some(INTERRUPTED_EXECUTING));
    assert!(INTERRUPTED_EXECUTING.contains("may have run"));
    // Not re-run, and a late click cannot start it any more.
    assert_eq!(
        restarted.execute(&left_approved).await.unwrap(),
        Executed::NotMine
    );
    assert_eq!(f.exec.runs.load(Ordering::SeqCst), 0);
    assert!(restarted.recover_interrupted().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_action_that_ran_but_whose_result_could_not_be_saved_is_shown_as_ran_not_as_a_refusal() {
    let f = fixture().await;
    let a = engine(&f, true);
    let id = approved(&a).await;
    // The database refuses to record the end (as a full disk or a lost connection would).
    let pool = sqlx::SqlitePool::connect(&f.url).await.unwrap();
    sqlx::query(
        "CREATE TRIGGER no_finish BEFORE UPDATE OF result ON approvals \
         BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END",
    )
    .execute(&pool)
    .await
    .unwrap();
    let outcome = a.execute(&id).await;
    assert_eq!(
        outcome,
        Ok(Executed::Unsaved("scaled prod-web to 0".into())),
        "it ran: reported with its summary, never as `the store is unavailable, refused`"
    );
    assert_eq!(f.exec.runs.load(Ordering::SeqCst), 1);
    // The request stays `executing`; start-up recovery says it may have run.
    assert_eq!(a.get(&id).await.unwrap().state, ApprovalState::Executing);
    sqlx::query("DROP TRIGGER no_finish")
        .execute(&pool)
        .await
        .unwrap();
    let recovered = engine(&f, true).recover_interrupted().await.unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].result.as_deref(), Some(INTERRUPTED_EXECUTING));
}

#[tokio::test]
async fn a_missing_executor_fails_the_request_visibly_instead_of_leaving_it_executing() {
    let f = fixture().await;
    let id = approved(&engine(&f, true)).await;
    // Another build (or a misconfigured one) executes it without the action's executor.
    let without = engine(&f, false);
    match without.execute(&id).await {
        Ok(Executed::Failed(msg)) => {
            assert!(msg.contains("cannot be executed by this build"), "{msg}");
            assert!(msg.contains("nothing ran"), "{msg}");
        }
        other => panic!("expected a visible failure, got {other:?}"),
    }
    let req = without.get(&id).await.unwrap();
    assert_eq!(req.state, ApprovalState::Failed, "not stuck in `executing`");
    assert!(req.result.unwrap().contains("cannot be executed"));
    assert_eq!(f.exec.runs.load(Ordering::SeqCst), 0);
}
