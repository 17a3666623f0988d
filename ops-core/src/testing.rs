//! Fakes shared by ops-core's unit tests (test builds only): one Swarm, [`FakeSwarm`], and a
//! Pulumi that must not run, [`NoPulumi`]. The integration tests have their own in `tests/`.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, StreamExt as _};

use crate::pulumi::preview::PreviewSummary;
use crate::pulumi::{EventSink, PulumiApi, PulumiError, StackRef, UpOutcome};
use crate::swarm::rollout::RolloutPoll;
use crate::swarm::{
    RolloutOutcome, RolloutProgress, RolloutStream, ServiceDetail, ServiceInfo, SwarmApi,
    SwarmError, SwarmSnapshot, UpdateStarted,
};

/// The Swarm of a unit test: `snapshot` lists `services`; rollouts complete at once (each
/// follow is recorded in `followed`); `inspect`, `bump` and `scale` work on the one service
/// `detail` (its name, else `NotFound`) and record each change in `calls`. Without a
/// `detail` they panic: the test did not expect them. `rollback` and `restart` keep the
/// trait's default (unsupported), so nothing pretends to succeed.
#[derive(Default)]
pub(crate) struct FakeSwarm {
    pub services: Mutex<Vec<ServiceInfo>>,
    pub followed: Mutex<Vec<(String, u64)>>,
    pub detail: Mutex<Option<ServiceDetail>>,
    pub calls: Mutex<Vec<String>>,
}

impl FakeSwarm {
    /// A Swarm with the one service `detail`.
    pub fn with_detail(detail: ServiceDetail) -> FakeSwarm {
        FakeSwarm {
            detail: Mutex::new(Some(detail)),
            ..FakeSwarm::default()
        }
    }

    /// Changes the service `detail` (as someone else would).
    pub fn edit(&self, f: impl FnOnce(&mut ServiceDetail)) {
        f(self
            .detail
            .lock()
            .unwrap()
            .as_mut()
            .expect("a fake with a detail"))
    }

    /// Sets the image of one of `services` (a new spec version).
    pub fn set_image(&self, name: &str, image: &str) {
        let mut s = self.services.lock().unwrap();
        let svc = s
            .iter_mut()
            .find(|s| s.name == name)
            .expect("known service");
        svc.image = image.to_string();
        svc.version += 1;
    }

    fn detail_for(&self, op: &str, name: &str) -> ServiceDetail {
        match self.detail.lock().unwrap().clone() {
            Some(d) => d,
            None => panic!("unexpected {op}({name})"),
        }
    }

    fn started(d: &ServiceDetail, image_after: String, replicas: Option<u64>) -> UpdateStarted {
        UpdateStarted {
            service_id: d.id.clone(),
            name: d.name.clone(),
            from_version: d.version,
            image_before: d.image.clone(),
            image_after,
            replicas_before: d.replicas,
            replicas_after: replicas,
            warnings: vec![],
        }
    }
}

#[async_trait]
impl SwarmApi for FakeSwarm {
    async fn snapshot(&self) -> Result<SwarmSnapshot, SwarmError> {
        Ok(SwarmSnapshot {
            services: self.services.lock().unwrap().clone(),
            ..Default::default()
        })
    }
    async fn follow_rollout(
        &self,
        name: &str,
        since: u64,
        _poll: RolloutPoll,
    ) -> Result<RolloutStream, SwarmError> {
        self.followed
            .lock()
            .unwrap()
            .push((name.to_string(), since));
        let last = RolloutProgress {
            service: name.to_string(),
            version: since + 1,
            image: String::new(),
            running_updated: 1,
            running_outdated: 0,
            desired: 1,
            update_state: Some("completed".into()),
            update_message: None,
            elapsed: Duration::ZERO,
            outcome: Some(RolloutOutcome::Completed),
        };
        Ok(stream::iter(vec![last]).boxed())
    }
    async fn inspect(&self, name: &str) -> Result<ServiceDetail, SwarmError> {
        let d = self.detail_for("inspect", name);
        if d.name == name {
            Ok(d)
        } else {
            Err(SwarmError::NotFound { name: name.into() })
        }
    }
    async fn bump(
        &self,
        name: &str,
        image: &str,
        expected: Option<u64>,
    ) -> Result<UpdateStarted, SwarmError> {
        let d = self.detail_for("bump", name);
        self.calls
            .lock()
            .unwrap()
            .push(format!("bump {name} {image} {expected:?}"));
        // A tag (`:v2`) stays in the service's repository.
        let after = match image.strip_prefix(':') {
            Some(tag) => {
                let repo = d
                    .image
                    .rsplit_once(':')
                    .map_or(d.image.as_str(), |(r, _)| r);
                format!("{repo}:{tag}")
            }
            None => image.to_string(),
        };
        Ok(FakeSwarm::started(&d, after, d.replicas))
    }
    async fn scale(
        &self,
        name: &str,
        replicas: u64,
        expected: Option<u64>,
    ) -> Result<UpdateStarted, SwarmError> {
        let d = self.detail_for("scale", name);
        self.calls
            .lock()
            .unwrap()
            .push(format!("scale {name} {replicas} {expected:?}"));
        Ok(FakeSwarm::started(&d, d.image.clone(), Some(replicas)))
    }
}

/// Every call panics: for requests that must be refused before anything runs.
pub(crate) struct NoPulumi;

#[async_trait]
impl PulumiApi for NoPulumi {
    async fn config_get(&self, _: &StackRef, key: &str) -> Result<Option<String>, PulumiError> {
        panic!("config get {key} must not run")
    }
    async fn config_set(&self, _: &StackRef, key: &str, value: &str) -> Result<(), PulumiError> {
        panic!("config set {key} {value:?} must not run")
    }
    async fn preview(&self, _: &StackRef) -> Result<PreviewSummary, PulumiError> {
        panic!("preview must not run")
    }
    async fn up(&self, _: &StackRef, _: EventSink) -> Result<UpOutcome, PulumiError> {
        panic!("up must not run")
    }
    async fn cancel(&self, _: &str) -> Result<bool, PulumiError> {
        panic!("cancel must not run")
    }
}
