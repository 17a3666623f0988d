//! Following a rollout: poll the service and its tasks until the change made on top of a known
//! version index completes, pauses or is rolled back. The decision is pure ([`assess`], unit
//! tested); [`follow`] turns any observer (the Docker adapter, or a fake) into a stream of
//! progress reports whose last item carries the [`RolloutOutcome`].
//!
//! How the engine behaves (swarmkit): an update resets `UpdateStatus`; the updater sets it to
//! `updating` when tasks must be replaced, then `completed`, or `paused` on failure (failure
//! action `pause`), or `rollback_started` → `rollback_completed` / `rollback_paused` (failure
//! action `rollback`, or a requested rollback). A change that replaces no task (a scale) leaves
//! it empty: then the rollout is complete when the desired number of up-to-date tasks runs.
//! A rollback is always reported as [`RolloutOutcome::RolledBack`] (a failed deploy), never as
//! completed.

use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::{RolloutStream, SwarmError};

/// How to poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutPoll {
    pub interval: Duration,
    /// Overall limit: then the outcome is [`RolloutOutcome::TimedOut`].
    pub timeout: Duration,
}

impl Default for RolloutPoll {
    fn default() -> Self {
        RolloutPoll {
            interval: Duration::from_millis(250),
            timeout: Duration::from_secs(600),
        }
    }
}

/// How a rollout ended.
#[derive(Debug, Clone)]
pub enum RolloutOutcome {
    /// Every desired task runs the new spec.
    Completed,
    /// Swarm paused the update (or the rollback); someone has to look. `message` is Swarm's.
    Paused { message: String },
    /// Swarm rolled the service back to its previous spec: the deploy failed (or a rollback
    /// was requested). `message` is Swarm's reason (from `rollback_started`, e.g. "update
    /// rolled back due to failure or early termination of task …") when it was seen.
    RolledBack { message: String },
    /// Still in progress when the overall timeout ran out.
    TimedOut,
    /// The engine could not be asked (three times in a row), or the service disappeared.
    Failed(SwarmError),
}

/// One progress report.
#[derive(Debug, Clone)]
pub struct RolloutProgress {
    pub service: String,
    /// The version index observed.
    pub version: u64,
    /// The image of the current spec (the rolled-back one during a rollback).
    pub image: String,
    /// Running tasks of the current spec (image and `ForceUpdate`), and of older specs.
    pub running_updated: u64,
    pub running_outdated: u64,
    pub desired: u64,
    pub update_state: Option<String>,
    pub update_message: Option<String>,
    pub elapsed: Duration,
    /// Set on the last item only.
    pub outcome: Option<RolloutOutcome>,
}

impl RolloutProgress {
    fn empty(service: &str) -> RolloutProgress {
        RolloutProgress {
            service: service.to_string(),
            version: 0,
            image: String::new(),
            running_updated: 0,
            running_outdated: 0,
            desired: 0,
            update_state: None,
            update_message: None,
            elapsed: Duration::ZERO,
            outcome: None,
        }
    }

    /// Same counts and state (what a person would see change).
    fn same_view(&self, other: &RolloutProgress) -> bool {
        (
            self.version,
            &self.image,
            self.running_updated,
            self.running_outdated,
            self.desired,
            &self.update_state,
            &self.update_message,
        ) == (
            other.version,
            &other.image,
            other.running_updated,
            other.running_outdated,
            other.desired,
            &other.update_state,
            &other.update_message,
        )
    }
}

/// One look at a service and its tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    pub version: u64,
    pub image: String,
    pub force_update: u64,
    pub desired: u64,
    /// `UpdateStatus.State` as the engine spells it (`updating`, `rollback_completed`, …).
    pub update_state: Option<String>,
    pub update_message: Option<String>,
    pub tasks: Vec<ObservedTask>,
}

/// One task of the service (any state).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedTask {
    pub image: String,
    pub force_update: u64,
    /// `running`, `failed`, `shutdown`, …
    pub state: String,
}

/// The progress an observation shows, and the outcome if the rollout is over.
pub fn assess(
    service: &str,
    obs: &Observation,
    since_version: u64,
) -> (RolloutProgress, Option<RolloutOutcome>) {
    let mut updated = 0;
    let mut outdated = 0;
    for t in obs.tasks.iter().filter(|t| t.state == "running") {
        if t.image == obs.image && t.force_update == obs.force_update {
            updated += 1;
        } else {
            outdated += 1;
        }
    }
    let progress = RolloutProgress {
        service: service.to_string(),
        version: obs.version,
        image: obs.image.clone(),
        running_updated: updated,
        running_outdated: outdated,
        desired: obs.desired,
        update_state: obs.update_state.clone(),
        update_message: obs.update_message.clone(),
        elapsed: Duration::ZERO,
        outcome: None,
    };
    if obs.version <= since_version {
        // The change is not visible yet.
        return (progress, None);
    }
    let converged = updated == obs.desired && outdated == 0;
    let message = || obs.update_message.clone().unwrap_or_default();
    let outcome = match obs.update_state.as_deref() {
        Some("paused" | "rollback_paused") => Some(RolloutOutcome::Paused { message: message() }),
        Some("rollback_completed") => Some(RolloutOutcome::RolledBack { message: message() }),
        Some("completed") | None | Some("") if converged => Some(RolloutOutcome::Completed),
        _ => None,
    };
    (progress, outcome)
}

/// Consecutive failed polls before giving up.
const MAX_POLL_ERRORS: u32 = 3;

struct State<F> {
    observe: F,
    service: String,
    since_version: u64,
    poll: RolloutPoll,
    started: Instant,
    last: Option<RolloutProgress>,
    errors: u32,
    first: bool,
    done: bool,
    /// Swarm's message when the rollback started: why it rolled back.
    rollback_reason: Option<String>,
}

impl<F> State<F> {
    fn finish(&mut self, mut p: RolloutProgress, outcome: RolloutOutcome) -> RolloutProgress {
        self.done = true;
        p.elapsed = self.started.elapsed();
        p.outcome = Some(outcome);
        p
    }

    fn last_or_empty(&self) -> RolloutProgress {
        self.last
            .clone()
            .unwrap_or_else(|| RolloutProgress::empty(&self.service))
    }
}

/// Polls `observe` every `poll.interval` and yields a report whenever what a person would see
/// changes, then a last report with the outcome.
pub fn follow<F, Fut>(
    service: &str,
    since_version: u64,
    poll: RolloutPoll,
    observe: F,
) -> RolloutStream
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<Observation, SwarmError>> + Send + 'static,
{
    let state = State {
        observe,
        service: service.to_string(),
        since_version,
        poll,
        started: Instant::now(),
        last: None,
        errors: 0,
        first: true,
        done: false,
        rollback_reason: None,
    };
    futures::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            if !st.first {
                tokio::time::sleep(st.poll.interval).await;
            }
            st.first = false;
            let timed_out = st.started.elapsed() >= st.poll.timeout;
            match (st.observe)().await {
                Ok(obs) => {
                    st.errors = 0;
                    let (mut p, mut outcome) = assess(&st.service, &obs, st.since_version);
                    if obs.version > st.since_version
                        && obs.update_state.as_deref() == Some("rollback_started")
                    {
                        st.rollback_reason = obs.update_message.clone().filter(|m| !m.is_empty());
                    }
                    if let (Some(RolloutOutcome::RolledBack { message }), Some(reason)) =
                        (&mut outcome, &st.rollback_reason)
                    {
                        *message = reason.clone();
                    }
                    if let Some(outcome) = outcome {
                        let p = st.finish(p, outcome);
                        return Some((p, st));
                    }
                    if timed_out {
                        let p = st.finish(p, RolloutOutcome::TimedOut);
                        return Some((p, st));
                    }
                    p.elapsed = st.started.elapsed();
                    let changed = st.last.as_ref().is_none_or(|l| !l.same_view(&p));
                    st.last = Some(p.clone());
                    if changed {
                        return Some((p, st));
                    }
                }
                Err(e) => {
                    st.errors += 1;
                    let gone = matches!(e, SwarmError::NotFound { .. });
                    if gone || st.errors >= MAX_POLL_ERRORS || timed_out {
                        let p = st.last_or_empty();
                        let p = st.finish(p, RolloutOutcome::Failed(e));
                        return Some((p, st));
                    }
                    tracing::debug!(service = %st.service, error = %e, "rollout poll failed, retrying");
                }
            }
        }
    })
    .boxed()
}

/// Drains a rollout stream: the last report (which carries the outcome).
pub async fn last_report(mut stream: RolloutStream) -> Option<RolloutProgress> {
    let mut last = None;
    while let Some(p) = stream.next().await {
        last = Some(p);
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn task(image: &str, force: u64, state: &str) -> ObservedTask {
        ObservedTask {
            image: image.into(),
            force_update: force,
            state: state.into(),
        }
    }

    fn obs(version: u64, state: Option<&str>, tasks: Vec<ObservedTask>) -> Observation {
        Observation {
            version,
            image: "web:v2".into(),
            force_update: 0,
            desired: 2,
            update_state: state.map(str::to_string),
            update_message: state.map(|s| format!("msg {s}")),
            tasks,
        }
    }

    #[test]
    fn completion_needs_the_new_version_and_converged_tasks() {
        let done = vec![task("web:v2", 0, "running"), task("web:v2", 0, "running")];
        // The change is not visible yet: nothing decided, even if it looks converged.
        assert!(assess("web", &obs(10, Some("completed"), done.clone()), 10)
            .1
            .is_none());
        let (p, o) = assess("web", &obs(11, Some("completed"), done.clone()), 10);
        assert!(matches!(o, Some(RolloutOutcome::Completed)));
        assert_eq!((p.running_updated, p.desired), (2, 2));
        // No update status (a scale, or before the updater started): tasks decide.
        assert!(matches!(
            assess("web", &obs(11, None, done), 10).1,
            Some(RolloutOutcome::Completed)
        ));
        let half = vec![task("web:v2", 0, "running"), task("web:main", 0, "running")];
        let (p, o) = assess("web", &obs(11, Some("updating"), half.clone()), 10);
        assert!(o.is_none());
        assert_eq!((p.running_updated, p.running_outdated), (1, 1));
        assert!(assess("web", &obs(11, None, half), 10).1.is_none());
        // "completed" with a task still missing waits for the task.
        let one = vec![task("web:v2", 0, "running"), task("web:v2", 0, "failed")];
        assert!(assess("web", &obs(11, Some("completed"), one), 10)
            .1
            .is_none());
    }

    #[test]
    fn a_restart_is_only_done_when_tasks_carry_the_new_force_update() {
        let mut o = obs(
            11,
            None,
            vec![task("web:v2", 0, "running"), task("web:v2", 0, "running")],
        );
        o.force_update = 1;
        assert!(assess("web", &o, 10).1.is_none());
        o.tasks = vec![task("web:v2", 1, "running"), task("web:v2", 1, "running")];
        assert!(matches!(
            assess("web", &o, 10).1,
            Some(RolloutOutcome::Completed)
        ));
    }

    #[test]
    fn rollbacks_and_pauses_are_never_completed() {
        let tasks = vec![task("web:v2", 0, "running"), task("web:v2", 0, "running")];
        for (state, want) in [
            ("rollback_completed", "rolled back"),
            ("rollback_paused", "paused"),
            ("paused", "paused"),
        ] {
            let (_, o) = assess("web", &obs(12, Some(state), tasks.clone()), 10);
            let kind = match o {
                Some(RolloutOutcome::RolledBack { message }) => {
                    assert_eq!(message, format!("msg {state}"));
                    "rolled back"
                }
                Some(RolloutOutcome::Paused { message }) => {
                    assert_eq!(message, format!("msg {state}"));
                    "paused"
                }
                other => panic!("{state}: {other:?}"),
            };
            assert_eq!(kind, want);
        }
        assert!(assess("web", &obs(12, Some("rollback_started"), tasks), 10)
            .1
            .is_none());
    }

    fn scripted(
        script: Vec<Result<Observation, SwarmError>>,
    ) -> impl FnMut() -> futures::future::Ready<Result<Observation, SwarmError>> + Send + 'static
    {
        let script = Arc::new(Mutex::new(script.into_iter()));
        move || {
            let next = script.lock().unwrap().next();
            futures::future::ready(next.unwrap_or_else(|| {
                Err(SwarmError::Api {
                    detail: "script ended".into(),
                })
            }))
        }
    }

    const FAST: RolloutPoll = RolloutPoll {
        interval: Duration::from_millis(1),
        timeout: Duration::from_secs(5),
    };

    #[tokio::test]
    async fn the_stream_reports_changes_then_the_outcome() {
        let running = |img: &str| task(img, 0, "running");
        let script = vec![
            Ok(obs(
                11,
                Some("updating"),
                vec![running("web:main"), running("web:main")],
            )),
            Ok(obs(
                11,
                Some("updating"),
                vec![running("web:main"), running("web:main")],
            )),
            Ok(obs(
                11,
                Some("updating"),
                vec![running("web:v2"), running("web:main")],
            )),
            Ok(obs(
                11,
                Some("completed"),
                vec![running("web:v2"), running("web:v2")],
            )),
        ];
        let items: Vec<_> = follow("web", 10, FAST, scripted(script)).collect().await;
        assert_eq!(
            items.len(),
            3,
            "the repeated observation is not reported: {items:?}"
        );
        assert_eq!(items[1].running_updated, 1);
        assert!(items[..2].iter().all(|p| p.outcome.is_none()));
        assert!(matches!(items[2].outcome, Some(RolloutOutcome::Completed)));
    }

    #[tokio::test]
    async fn a_rollback_reports_why_it_started() {
        let mut started = obs(11, Some("rollback_started"), vec![]);
        started.update_message = Some("update rolled back due to failure".into());
        let mut done = obs(12, Some("rollback_completed"), vec![]);
        done.update_message = Some("rollback completed".into());
        let last = last_report(follow(
            "web",
            10,
            FAST,
            scripted(vec![Ok(started), Ok(done.clone())]),
        ))
        .await
        .unwrap();
        match last.outcome {
            Some(RolloutOutcome::RolledBack { message }) => {
                assert_eq!(message, "update rolled back due to failure")
            }
            other => panic!("{other:?}"),
        }
        // Not seen: Swarm's last message.
        let last = last_report(follow("web", 10, FAST, scripted(vec![Ok(done)])))
            .await
            .unwrap();
        assert!(
            matches!(last.outcome, Some(RolloutOutcome::RolledBack { message }) if message == "rollback completed")
        );
    }

    #[tokio::test]
    async fn errors_are_retried_then_fail_and_a_lost_service_fails_at_once() {
        let api = || {
            Err(SwarmError::Api {
                detail: "boom".into(),
            })
        };
        let ok = obs(11, Some("updating"), vec![]);
        let script = vec![
            Ok(ok.clone()),
            api(),
            api(),
            Ok(ok.clone()),
            api(),
            api(),
            api(),
        ];
        let last = last_report(follow("web", 10, FAST, scripted(script)))
            .await
            .unwrap();
        assert!(matches!(
            last.outcome,
            Some(RolloutOutcome::Failed(SwarmError::Api { .. }))
        ));
        assert_eq!(last.version, 11, "the last good observation is kept");

        let script = vec![Ok(ok), Err(SwarmError::NotFound { name: "web".into() })];
        let last = last_report(follow("web", 10, FAST, scripted(script)))
            .await
            .unwrap();
        assert!(matches!(
            last.outcome,
            Some(RolloutOutcome::Failed(SwarmError::NotFound { .. }))
        ));
    }

    #[tokio::test]
    async fn an_endless_update_times_out() {
        let observe = || futures::future::ready(Ok(obs(11, Some("updating"), vec![])));
        let poll = RolloutPoll {
            interval: Duration::from_millis(5),
            timeout: Duration::from_millis(40),
        };
        let started = Instant::now();
        let last = last_report(follow("web", 10, poll, observe)).await.unwrap();
        assert!(matches!(last.outcome, Some(RolloutOutcome::TimedOut)));
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
