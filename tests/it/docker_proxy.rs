//! The Docker API the bot may reach (issue 12): `sprocket-ops docker-proxy` in front of the
//! REAL engine. Every Docker request of a run of all the bot's Docker operations (version
//! negotiation, snapshot, inspect, bump, scale, restart, rollback, rollout following, logs,
//! the alert watcher's events) is recorded by the proxy and must pass the shipped allow-list;
//! the attacks a compromised bot would send (service create, node update, swarm leave,
//! secrets, exec, plugin install, path tricks, connection upgrades) get 403 and change
//! nothing on the engine. The stack file must run this proxy, not a per-section one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use ops_core::alerts::sources::{spawn_event_watcher, SwarmEvent};
use ops_core::swarm::allowlist::AllowList;
use ops_core::swarm::docker::DockerSwarm;
use ops_core::swarm::{LogQuery, RolloutOutcome, RolloutPoll, SwarmApi, UpdateStarted};
use sprocket_ops::docker_proxy::{serve, Seen, Upstream};
use sprocket_ops_tests::env::{self, workspace_root};
use sprocket_ops_tests::swarm::{TestService, TestSwarm};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A proxy on 127.0.0.1 (random port) with the shipped rules, in front of the local engine.
struct Proxy {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let upstream = Upstream::parse(ops_core::config::DEFAULT_DOCKER_HOST).unwrap();
        let task = tokio::spawn(serve(
            listener,
            upstream,
            Arc::new(AllowList::shipped()),
            Some(seen.clone()),
        ));
        Proxy { port, seen, task }
    }

    fn host(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// One raw HTTP/1.1 request (the path exactly as given, no client-side normalisation):
    /// the status and the body.
    async fn raw(&self, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: docker\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await.unwrap();
        let text = String::from_utf8_lossy(&answer).to_string();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"));
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }
}

fn poll() -> RolloutPoll {
    RolloutPoll {
        interval: Duration::from_millis(250),
        timeout: Duration::from_secs(90),
    }
}

/// Follows the rollout to its end: `Completed`, or for a requested rollback `RolledBack`.
async fn completes(api: &DockerSwarm, started: &UpdateStarted) {
    let stream = api
        .follow_rollout(&started.name, started.from_version, poll())
        .await
        .expect("follow_rollout through the proxy");
    let reports: Vec<_> = stream.collect().await;
    assert!(
        matches!(
            reports.last().and_then(|r| r.outcome.as_ref()),
            Some(RolloutOutcome::Completed | RolloutOutcome::RolledBack { .. })
        ),
        "{reports:?}"
    );
}

/// The API path without its version prefix and query, ids and names replaced by `{x}`.
fn shape(path: &str, names: &[&str]) -> String {
    let path = path.split('?').next().unwrap_or(path);
    let mut parts: Vec<String> = path.split('/').map(str::to_string).collect();
    if parts
        .get(1)
        .is_some_and(|p| p.starts_with('v') && p.contains('.'))
    {
        parts.remove(1);
    }
    for p in parts.iter_mut().skip(2) {
        if names.contains(&p.as_str()) {
            *p = "{x}".into();
        }
    }
    parts.join("/")
}

#[tokio::test]
async fn every_docker_request_of_the_bot_operations_passes_the_shipped_allow_list() {
    let swarm = TestSwarm::connect().await;
    let proxy = Proxy::start().await;
    let api = DockerSwarm::new(&proxy.host(), 30).unwrap();
    let svc = swarm
        .create_service(TestService::new("proxy-ops", "main"))
        .await;
    swarm
        .wait_converged(svc.name(), Duration::from_secs(60))
        .await
        .unwrap();

    // status / alerts rounds / deploy verification
    let snap = api.snapshot().await.expect("snapshot through the proxy");
    assert!(snap.services.iter().any(|s| s.name == svc.name()));
    assert!(!snap.nodes.is_empty() && !snap.tasks.is_empty());
    // inspect, bump (+ rollout), scale, restart, rollback
    let before = api.inspect(svc.name()).await.expect("inspect");
    let bumped = api
        .bump(svc.name(), "v2", Some(before.version))
        .await
        .expect("bump");
    completes(&api, &bumped).await;
    let scaled = api.scale(svc.name(), 2, None).await.expect("scale");
    completes(&api, &scaled).await;
    let restarted = api.restart(svc.name(), None).await.expect("restart");
    completes(&api, &restarted).await;
    let rolled = api.rollback(svc.name(), None).await.expect("rollback");
    completes(&api, &rolled).await;
    // logs
    let lines: Vec<_> = api
        .logs(
            svc.name(),
            LogQuery {
                tail: Some(20),
                ..Default::default()
            },
        )
        .await
        .expect("logs")
        .collect()
        .await;
    assert!(
        !lines.is_empty() && lines.iter().all(|l| l.is_ok()),
        "{lines:?}"
    );
    // the alert watcher's events: a crashing service's exit comes through the proxy
    let events = Arc::new(DockerSwarm::new(&proxy.host(), 30).unwrap());
    let mut feed = spawn_event_watcher(events, None, 256);
    let crashing = swarm
        .create_service(TestService::new("proxy-crash", "broken"))
        .await;
    let crash_name = crashing.name().to_string();
    tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            match feed.rx.recv().await.expect("event stream open") {
                SwarmEvent::TaskExited { service, .. } if service == crash_name => return,
                _ => {}
            }
        }
    })
    .await
    .expect("a task exit event through the proxy");
    drop(feed);

    let seen = proxy.seen();
    let refused: Vec<_> = seen.iter().filter(|s| !s.allowed).collect();
    assert!(
        refused.is_empty(),
        "the shipped allow-list refused requests the bot makes: {refused:?}"
    );
    let rules = AllowList::shipped();
    for s in &seen {
        assert!(rules.check(&s.method, &s.path).is_ok(), "{s:?}");
    }
    let id = before.id.clone();
    let shapes: std::collections::BTreeSet<String> = seen
        .iter()
        .map(|s| format!("{} {}", s.method, shape(&s.path, &[svc.name(), &id])))
        .collect();
    eprintln!("the bot's Docker requests: {shapes:#?}");
    for want in [
        "GET /version",
        "GET /services",
        "GET /tasks",
        "GET /nodes",
        "GET /services/{x}",
        "POST /services/{x}/update",
        "GET /services/{x}/logs",
        "GET /events",
    ] {
        assert!(shapes.contains(want), "{want} was not seen: {shapes:#?}");
    }
    assert!(
        seen.iter()
            .any(|s| s.method == "POST" && s.path.contains("rollback=previous")),
        "the rollback went through the proxy: {seen:?}"
    );
    // Every shipped rule is used by some operation of the bot (`/_ping` is the proxy's own
    // health check): the list allows nothing more than the bot needs.
    for rule in rules.rules() {
        if rule.pattern == "/_ping" {
            continue;
        }
        let one = AllowList::parse(&format!("{} {}", rule.method, rule.pattern)).unwrap();
        assert!(
            seen.iter().any(|s| one.check(&s.method, &s.path).is_ok()),
            "rule `{} {}` is used by no bot operation",
            rule.method,
            rule.pattern
        );
    }
    crashing.remove().await.unwrap();
    svc.remove().await.unwrap();
}

#[tokio::test]
async fn a_compromised_bot_gets_403_for_service_create_node_update_swarm_leave_secrets_exec() {
    let swarm = TestSwarm::connect().await;
    let proxy = Proxy::start().await;
    let docker = swarm.docker();
    let svc = swarm
        .create_service(TestService::new("proxy-attack", "main"))
        .await;
    swarm
        .wait_converged(svc.name(), Duration::from_secs(60))
        .await
        .unwrap();

    // Allowed requests are forwarded to the engine and answered by it.
    let (status, body) = proxy
        .raw("GET", &format!("/v1.41/services/{}", svc.name()), "", "")
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(svc.id()), "{body}");
    let (status, body) = proxy.raw("GET", "/_ping", "", "").await;
    assert_eq!((status, body.as_str()), (200, "OK"));

    // A privileged service with the engine socket mounted, as an attacker would create it.
    let evil = format!("{}-evil", svc.name());
    let spec = serde_json::json!({
        "Name": evil,
        "TaskTemplate": { "ContainerSpec": {
            "Image": env::test_image("main"),
            "Mounts": [{ "Type": "bind", "Source": "/var/run/docker.sock", "Target": "/var/run/docker.sock" }]
        }}
    })
    .to_string();
    let node = docker
        .list_nodes(None::<bollard::query_parameters::ListNodesOptions>)
        .await
        .unwrap()
        .remove(0);
    let node_id = node.id.clone().unwrap();
    let node_version = node.version.as_ref().and_then(|v| v.index).unwrap();
    let task = swarm.tasks(svc.name()).await.unwrap().remove(0);
    let container = task
        .status
        .and_then(|s| s.container_status)
        .and_then(|c| c.container_id)
        .unwrap_or_else(|| "0".repeat(64));
    let exec = r#"{"Cmd":["/testsvc","--version"],"AttachStdout":true}"#;
    let node_update = r#"{"Role":"worker","Availability":"drain"}"#;
    let attacks: Vec<(&str, String, &str)> = vec![
        ("POST", "/v1.41/services/create".into(), spec.as_str()),
        ("POST", "/services/create".into(), spec.as_str()),
        (
            "POST",
            format!("/v1.41/nodes/{node_id}/update?version={node_version}"),
            node_update,
        ),
        ("POST", "/v1.41/swarm/leave?force=true".into(), ""),
        ("GET", "/v1.41/swarm/unlockkey".into(), ""),
        ("GET", "/v1.41/secrets".into(), ""),
        (
            "POST",
            "/v1.41/secrets/create".into(),
            r#"{"Name":"evil","Data":"ZXZpbA=="}"#,
        ),
        ("POST", format!("/v1.41/containers/{container}/exec"), exec),
        (
            "POST",
            "/v1.41/plugins/pull?remote=evil/plugin".into(),
            "[]",
        ),
        (
            "POST",
            "/v1.41/containers/create".into(),
            r#"{"Image":"x"}"#,
        ),
        ("DELETE", format!("/v1.41/services/{}", svc.name()), ""),
        ("GET", "/v1.41/info".into(), ""),
        // The engine's router cleans these into /services/create.
        ("POST", "/v1.41/services/x/../create".into(), spec.as_str()),
        ("POST", "/v1.41//services/create".into(), spec.as_str()),
        ("POST", "/v1.41/services/%63reate".into(), spec.as_str()),
        (
            "POST",
            format!("/v1.41/services/{}/update/../../create", svc.id()),
            spec.as_str(),
        ),
        // An absolute-form target is not a path.
        (
            "POST",
            "http://docker/v1.41/services/create".into(),
            spec.as_str(),
        ),
    ];
    for (method, path, body) in &attacks {
        let (status, answer) = proxy.raw(method, path, "", body).await;
        assert_eq!(status, 403, "{method} {path}: {answer}");
        assert!(answer.contains("refused"), "{answer}");
    }
    // An allowed path asking for a connection upgrade (how attach/exec hijack) is refused.
    let (status, _) = proxy
        .raw(
            "GET",
            "/v1.41/events",
            "Connection: Upgrade\r\nUpgrade: tcp\r\n",
            "",
        )
        .await;
    assert_eq!(status, 403);

    // Nothing happened on the engine.
    let services = docker
        .list_services(None::<bollard::query_parameters::ListServicesOptions>)
        .await
        .unwrap();
    assert!(services
        .iter()
        .all(|s| s.spec.as_ref().and_then(|x| x.name.as_deref()) != Some(evil.as_str())));
    assert!(services.iter().any(|s| s.id.as_deref() == Some(svc.id())));
    let node_after = docker.inspect_node(&node_id).await.unwrap();
    assert_eq!(
        node_after.version.and_then(|v| v.index),
        Some(node_version),
        "the node was not updated"
    );
    TestSwarm::connect().await; // still an active manager
    let secrets = docker
        .list_secrets(None::<bollard::query_parameters::ListSecretsOptions>)
        .await
        .unwrap();
    assert!(secrets
        .iter()
        .all(|s| s.spec.as_ref().and_then(|x| x.name.as_deref()) != Some("evil")));
    let refused = proxy.seen().iter().filter(|s| !s.allowed).count();
    assert_eq!(refused, attacks.len() + 1);
    svc.remove().await.unwrap();
}

/// The block of service `name` in the stack file: its line and the lines indented deeper.
fn stack_service(stack: &str, name: &str) -> String {
    let head = format!("  {name}:");
    let mut lines = stack.lines().skip_while(|l| *l != head);
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("no service `{name}` in the stack file"));
    let body: Vec<&str> = lines
        .take_while(|l| l.trim().is_empty() || l.starts_with("   "))
        .collect();
    format!("{first}\n{}", body.join("\n"))
}

#[test]
fn a_compromised_bot_cannot_create_a_service_through_the_stacks_proxy() {
    let root = workspace_root();
    let stack = std::fs::read_to_string(root.join("deploy/sprocket-ops.stack.yml")).unwrap();
    let proxy = stack_service(&stack, "socket-proxy");
    // The old proxy allowed whole sections (SERVICES=1 with POST=1: POST /services/create).
    assert!(
        !proxy.contains("docker-socket-proxy") && !proxy.contains("SERVICES:"),
        "the stack still runs a per-section proxy:\n{proxy}"
    );
    assert!(
        proxy.contains("\"docker-proxy\""),
        "the stack's proxy is `sprocket-ops docker-proxy` (the shipped allow-list):\n{proxy}"
    );
    assert!(proxy.contains("/var/run/docker.sock"), "{proxy}");
    let bot = stack_service(&stack, "bot");
    assert!(
        !bot.contains("docker.sock"),
        "the bot never mounts the engine socket:\n{bot}"
    );
    let toml = std::fs::read_to_string(root.join("deploy/sprocket-ops.toml")).unwrap();
    assert!(
        toml.contains("host = \"tcp://socket-proxy:2375\""),
        "the bot reaches Docker only through the proxy"
    );
    // And what that proxy admits: none of the attacks.
    let rules = AllowList::shipped();
    for (method, path) in [
        ("POST", "/v1.41/services/create"),
        ("POST", "/v1.41/nodes/n/update"),
        ("POST", "/v1.41/swarm/leave"),
        ("GET", "/v1.41/secrets"),
        ("POST", "/v1.41/containers/c/exec"),
        ("POST", "/v1.41/plugins/pull"),
    ] {
        assert!(rules.check(method, path).is_err(), "{method} {path}");
    }
}
