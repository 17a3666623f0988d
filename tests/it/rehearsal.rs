//! The rehearsal: what ships in `deploy/`, deployed as deploy/README.md says, on a
//! Sprocket-shaped Swarm, doing what the bot exists for (issue 14).
//!
//! - **The platform**: the seed documents' services under their names, as Pulumi creates them
//!   (plain Swarm services labelled `sprocket.layer`): layer_1 `traefik`, `vault-service` (the
//!   real OpenBao server with raft storage, sealed) and `socket-proxy`; layer_2
//!   `layer2redis-redis-primary` (the real redis-server, with a password) and `rabbitmq`,
//!   `influxdb`, `grafana`, `n8n`, `neo4j`, `gatus-internal`, `loki`, `telegraf` on layer_2's
//!   attachable overlay network; platform `prod-sprocket-web`, `prod-sprocket-core`,
//!   `prod-discord-bot`, `prod-image-generation`, `prod-notification-service` (the test
//!   service, the layer's image) and `prod-chatwoot` (a third-party image: verification of
//!   `/deploy platform` must not trip over it). Images from `scripts/build-test-images.sh`.
//! - **The bot**: `docker stack deploy -c deploy/sprocket-ops.stack.yml -c <override>
//!   sprocket-ops`, deploy/README.md's step 3, with the external secrets and config of its
//!   step 2. The override changes only what a test must: the image (the deploy-capable one the
//!   suite builds with the Pulumi stand-in, `SPROCKET_OPS_DEPLOY_IMAGE`), the configuration
//!   (deploy/sprocket-ops.toml with the fakes' URLs, the test's identities, probes pointed at
//!   the rehearsal's servers instead of production addresses, and short alert and shutdown
//!   timings), the healthcheck's timing (2 s instead of 30 s, so an outage outlasts its window
//!   in seconds), `egress` as an overlay the test made (the "internet": Vault and the web app
//!   are public there), and one more network: a swarm-scoped bridge the test made, whose
//!   gateway address on this host is where the fake Discord and fake GitHub listen. Nothing
//!   listens on another address of the host; every network is the test's.
//! - **Through the fake Discord**, against the containerised bot: `/status` shows the three
//!   layers and the probes; two key holders unseal the vault; `/deploy platform image:main`
//!   applies (the stand-in, through the stack's filtering socket proxy) and is verified; a
//!   crash-looping platform service is alerted, rolled back by one engineer with a second's
//!   approval, and resolved; a gateway outage longer than the healthcheck window during a
//!   deploy replaces nothing and kills nothing; a configuration change mid-deploy restarts the
//!   bot through Swarm, and the new bot reports the interrupted deploy.
//!
//! The test engine's kernel has no IPVS, so a Swarm service's virtual IP does not route: the
//! rehearsal's services, and the stack's socket proxy (in the override), resolve by DNS
//! round robin (`endpoint_mode: dnsrr`) to their tasks' addresses instead. On a real node
//! the shipped default (a virtual IP) works and nothing else changes.
//!
//! One rehearsal at a time per engine: the stack, its secrets and the platform's services have
//! their production names. Everything is removed when the test ends, passed or failed.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sprocket_ops_tests::bot::{ALERTS, APPROVALS, AUDIT};
use sprocket_ops_tests::docker_cli::{docker, docker_env_ok, docker_ok, Cleanup};
use sprocket_ops_tests::env;
use sprocket_ops_tests::fake_discord::{FakeDiscord, Message, Response, TestUser};
use sprocket_ops_tests::fake_github::FakeGithub;
use sprocket_ops_tests::swarm::{TestSwarm, TEST_LABEL};

const T: Duration = Duration::from_secs(180);
/// deploy/README.md's stack name, hence the bot's service name.
const STACK: &str = "sprocket-ops";
const BOT: &str = "sprocket-ops_bot";
/// The external secrets of deploy/sprocket-ops.stack.yml (README step 2).
const SECRETS: [&str; 9] = [
    "sprocket-ops-discord-token",
    "sprocket-ops-github-token",
    "sprocket-ops-vault-token",
    "sprocket-ops-pulumi-passphrase",
    "sprocket-ops-traefik-api-password",
    "sprocket-ops-redis-password",
    "sprocket-ops-rabbitmq-password",
    "sprocket-ops-postgres-password",
    "sprocket-ops-spaces-secret-key",
];
const POSTGRES_CA: &str = "sprocket-ops-postgres-ca";
const REDIS_PASSWORD: &str = "rehearsal-redis-password";
/// The platform's services the `platform` program declares (the stand-in's resources).
const PLATFORM: [&str; 5] = [
    "prod-sprocket-web",
    "prod-sprocket-core",
    "prod-discord-bot",
    "prod-image-generation",
    "prod-notification-service",
];
const LAYER_2: [&str; 8] = [
    "rabbitmq",
    "influxdb",
    "grafana",
    "n8n",
    "neo4j",
    "gatus-internal",
    "loki",
    "telegraf",
];

fn deploy_image() -> String {
    let image = std::env::var("SPROCKET_OPS_DEPLOY_IMAGE")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "sprocket-ops-deploy:latest".into());
    image_must_exist(
        &image,
        "bash scripts/test.sh builds it (build-image.sh --pulumi)",
    );
    image
}

fn image_must_exist(image: &str, how: &str) {
    let out = docker(&["image", "inspect", "--format", "{{.Id}}", image]);
    assert!(out.status.success(), "the image {image} is missing: {how}");
}

fn deploy_opts(tag: &str) -> Value {
    json!([{ "name": "platform", "type": 1, "options": [{ "name": "image", "value": tag }] }])
}

fn sub(name: &str) -> Value {
    json!([{ "name": name, "type": 1, "options": [] }])
}

/// The networks the test makes: layer_2's (as its program creates it), the stand-in
/// "internet" the stack's `egress` becomes, and the bridge to this host's fakes.
struct Networks {
    layer2: String,
    egress: String,
    fakes: String,
}

fn create_networks(cleanup: &mut Cleanup, run: &str) -> Networks {
    let label = format!("{TEST_LABEL}={run}");
    let layer2 = format!("rehearsal-layer_2-{run}");
    let egress = format!("rehearsal-egress-{run}");
    let fakes = format!("rehearsal-fakes-{run}");
    for name in [&layer2, &egress] {
        docker_ok(&[
            "network",
            "create",
            "--driver",
            "overlay",
            "--attachable",
            "--label",
            &label,
            name,
        ]);
        cleanup.push(&["network", "rm", name]);
    }
    // A swarm-scoped bridge: services attach to it, and this host has its gateway address
    // (the engine picks the subnet when the first container of this node attaches: see
    // [`bridge_gateway`]).
    docker_ok(&[
        "network", "create", "--scope", "swarm", "--driver", "bridge", "--label", &label, &fakes,
    ]);
    cleanup.push(&["network", "rm", &fakes]);
    Networks {
        layer2,
        egress,
        fakes,
    }
}

/// The host's address on a swarm-scoped bridge network, once a container of this node is
/// attached to it (before that the network has no subnet here), and bindable.
async fn bridge_gateway(network: &str) -> Ipv4Addr {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = docker_ok(&[
            "network",
            "inspect",
            "--format",
            "{{range .IPAM.Config}}{{.Gateway}} {{end}}",
            network,
        ]);
        let gateway = out
            .split_whitespace()
            .find_map(|g| g.parse::<Ipv4Addr>().ok());
        if let Some(g) = gateway {
            if std::net::TcpListener::bind((g, 0)).is_ok() {
                return g;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the bridge {network} has no address on this host: {out:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One platform service, as `docker service create` makes it (the shape Pulumi's docker
/// provider gives them: a name, the layer label, networks, a restart policy).
fn create_service(
    made: &mut Made,
    name: &str,
    layer: &str,
    image: &str,
    networks: &[&str],
    extra: &[&str],
    args: &[&str],
) {
    let layer_label = format!("sprocket.layer={layer}");
    let test_label = format!("{TEST_LABEL}={}", made.run);
    let mut argv: Vec<&str> = vec![
        "service",
        "create",
        "--detach",
        "--quiet",
        "--name",
        name,
        "--label",
        &layer_label,
        "--label",
        &test_label,
        "--restart-condition",
        "any",
        "--restart-delay",
        "1s",
        "--update-monitor",
        "2s",
        "--stop-grace-period",
        "2s",
        // Names resolve to the tasks' addresses: this engine's kernel has no IPVS, so a
        // service's virtual IP does not route here (see the module documentation).
        "--endpoint-mode",
        "dnsrr",
        "--env",
        "TESTSVC_LOG_INTERVAL_MS=0",
    ];
    for n in networks {
        argv.extend(["--network", n]);
    }
    argv.extend(extra);
    argv.push(image);
    argv.extend(args);
    docker_ok(&argv);
    made.cleanup.push(&["service", "rm", name]);
}

/// What the rehearsal made (removed when dropped, see [`Cleanup`]) and its run id.
struct Made {
    cleanup: Cleanup,
    run: String,
}

/// The id of the running container of a service's task.
async fn container_of(swarm: &TestSwarm, service: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let tasks = swarm.tasks(service).await.unwrap_or_default();
        if let Some(id) = tasks.iter().find_map(|t| {
            let running = t
                .status
                .as_ref()
                .and_then(|s| s.state)
                .is_some_and(|s| s == bollard::models::TaskState::RUNNING);
            running
                .then(|| {
                    t.status
                        .as_ref()
                        .and_then(|s| s.container_status.as_ref())
                        .and_then(|c| c.container_id.clone())
                })
                .flatten()
        }) {
            return id;
        }
        assert!(
            Instant::now() < deadline,
            "{service} has no running task: {}",
            String::from_utf8_lossy(&docker(&["service", "ps", "--no-trunc", service]).stdout)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The ids of every task the bot's service has had.
async fn bot_tasks(swarm: &TestSwarm) -> Vec<(String, String)> {
    swarm
        .tasks(BOT)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            let state = t
                .status
                .and_then(|s| s.state)
                .map(|s| s.to_string())
                .unwrap_or_default();
            (t.id.unwrap_or_default(), state)
        })
        .collect()
}

/// `bao operator init` inside the vault's container (3 shares, 2 to unseal).
async fn init_vault(swarm: &TestSwarm) -> Vec<String> {
    let container = container_of(swarm, "vault-service", T).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = docker(&[
            "exec",
            &container,
            "/bin/bao",
            "operator",
            "init",
            "-address=http://127.0.0.1:8200",
            "-key-shares=3",
            "-key-threshold=2",
            "-format=json",
        ]);
        if out.status.success() {
            let v: Value = serde_json::from_slice(&out.stdout).expect("init JSON");
            return v["unseal_keys_b64"]
                .as_array()
                .expect("unseal_keys_b64")
                .iter()
                .map(|k| k.as_str().expect("a key").to_string())
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "bao operator init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn vault_sealed(swarm: &TestSwarm) -> bool {
    let container = container_of(swarm, "vault-service", T).await;
    // `bao status` exits 2 while sealed; its JSON says so either way.
    let out = docker(&[
        "exec",
        &container,
        "/bin/bao",
        "status",
        "-address=http://127.0.0.1:8200",
        "-format=json",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    v["sealed"].as_bool().expect("sealed")
}

/// The infra checkout the stack mounts (`SPROCKET_INFRA_DIR`): the three layers' projects for
/// the Pulumi stand-in, owned by the bot's uid (it writes `Pulumi.<stack>.yaml` and its lock).
fn write_infra(dir: &Path, step_delay_ms: u64) {
    for (layer, stack) in [
        ("layer_1", "layer_1"),
        ("layer_2", "layer_2"),
        ("platform", "prod"),
    ] {
        let d = dir.join(layer);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("Pulumi.yaml"),
            format!("name: {layer}\nruntime: nodejs\n"),
        )
        .unwrap();
        let config = if layer == "platform" {
            "config:\n  platform:image-tag: v2\n"
        } else {
            "config: {}\n"
        };
        std::fs::write(d.join(format!("Pulumi.{stack}.yaml")), config).unwrap();
    }
    write_platform_spec(dir, step_delay_ms);
    std::fs::write(dir.join("layer_1/standin.json"), "{}").unwrap();
    std::fs::write(dir.join("layer_2/standin.json"), "{}").unwrap();
    chown_tree(dir);
}

/// The platform program's resources (`standin.json`), each step taking `step_delay_ms`.
fn write_platform_spec(dir: &Path, step_delay_ms: u64) {
    let resources: Vec<Value> = PLATFORM
        .iter()
        .map(|s| {
            json!({
                "type": "docker:index/service:Service",
                "name": s,
                "service_name": s,
                "image_repo": env::image_repo(),
            })
        })
        .collect();
    let spec = json!({ "resources": resources, "step_delay_ms": step_delay_ms });
    let path = dir.join("platform/standin.json");
    std::fs::write(&path, spec.to_string()).unwrap();
    std::os::unix::fs::chown(&path, Some(10001), Some(10001)).unwrap();
}

fn chown_tree(dir: &Path) {
    std::os::unix::fs::chown(dir, Some(10001), Some(10001)).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            chown_tree(&p);
        } else {
            std::os::unix::fs::chown(&p, Some(10001), Some(10001)).unwrap();
        }
    }
}

/// deploy/sprocket-ops.toml with what a test must change, and nothing else.
fn bot_config(discord: &FakeDiscord, github: &FakeGithub, people: &[(&TestUser, &str)]) -> String {
    let root = env::workspace_root();
    let shipped = std::fs::read_to_string(root.join("deploy/sprocket-ops.toml"))
        .expect("deploy/sprocket-ops.toml");
    let mut cfg: toml::Table = toml::from_str(&shipped).expect("the shipped config is TOML");
    let table = |cfg: &toml::Table, key: &str| -> toml::Table {
        cfg.get(key)
            .and_then(toml::Value::as_table)
            .cloned()
            .unwrap_or_else(|| panic!("deploy/sprocket-ops.toml has no [{key}]"))
    };
    let mut d = table(&cfg, "discord");
    d.insert("api_base_url".into(), discord.api_base_url().into());
    assert_eq!(
        d["guild_id"].as_integer(),
        Some(FakeDiscord::GUILD_ID as i64),
        "the shipped guild id is the fake's"
    );
    // On SIGTERM the bot waits this long for running work; 5 s instead of 60 keeps the
    // restart in the rehearsal short (the stop grace of the stack stays longer).
    d.insert("shutdown_grace_secs".into(), 5.into());
    cfg.insert("discord".into(), d.into());

    let mut g = table(&cfg, "github");
    g.insert("api_base_url".into(), github.api_base_url().into());
    g.insert("oauth_base_url".into(), github.oauth_base_url().into());
    let mut links = toml::Table::new();
    for (user, login) in people {
        links.insert(user.id.to_string(), login.to_string().into());
    }
    g.insert("static_links".into(), links.into());
    cfg.insert("github".into(), g.into());

    let mut v = table(&cfg, "vault");
    v.insert("address".into(), "http://vault-service:8200".into());
    cfg.insert("vault".into(), v.into());

    let mut a = table(&cfg, "alerts");
    for (k, n) in [
        ("failure_threshold", 1),
        ("resolve_threshold", 1),
        ("probe_interval_secs", 2),
        ("probe_timeout_secs", 2),
        ("group_wait_secs", 0),
        ("restart_loop_window_secs", 10),
        ("reminder_minutes", 0),
        ("heartbeat_minutes", 0),
    ] {
        a.insert(k.into(), toml::Value::Integer(n));
    }
    // The probes of systems the rehearsal runs, at the rehearsal's addresses: Vault's seal and
    // the web app at their "public" ones (the test's egress network), Redis as shipped. The
    // rest name production hosts (tests/it/shipped.rs checks them; alerts.rs runs each kind
    // against a real server), or servers with no FROM-scratch image here (RabbitMQ, Gatus).
    let probes: Vec<toml::Value> = a["probes"]
        .as_array()
        .expect("[[alerts.probes]]")
        .iter()
        .filter_map(|p| {
            let mut p = p.as_table().expect("a probe").clone();
            match p["name"].as_str()? {
                "vault-seal" => {
                    p.insert("url".into(), "http://vault-service:8200".into());
                }
                "redis" => {}
                "web" => {
                    p.insert("url".into(), "http://prod-sprocket-web:8080/health".into());
                }
                _ => return None,
            }
            Some(p.into())
        })
        .collect();
    assert_eq!(probes.len(), 3, "vault-seal, redis and web ship");
    a.insert("probes".into(), probes.into());
    cfg.insert("alerts".into(), a.into());
    toml::to_string(&cfg).expect("config TOML")
}

/// The override file of `docker stack deploy -c deploy/sprocket-ops.stack.yml -c <this>`.
fn stack_override(image: &str, nets: &Networks, config_file: &Path) -> String {
    format!(
        r#"version: "3.8"
services:
  bot:
    image: {image}
    networks:
      fakes: {{}}
    healthcheck:
      interval: 2s
      timeout: 2s
      retries: 3
      start_period: 10s
  socket-proxy:
    image: {image}
    deploy:
      endpoint_mode: dnsrr
networks:
  egress:
    external: true
    name: {egress}
  fakes:
    external: true
    name: {fakes}
configs:
  sprocket_ops_toml:
    name: sprocket-ops-toml-${{SPROCKET_OPS_CONFIG_VERSION:-v1}}
    file: {config}
"#,
        egress = nets.egress,
        fakes = nets.fakes,
        config = config_file.display()
    )
}

/// README step 3 (and step 5 with a new config version).
fn stack_deploy(override_file: &Path, infra: &Path, nets: &Networks, version: &str) {
    let root = env::workspace_root();
    let stack_file = root.join("deploy/sprocket-ops.stack.yml");
    docker_env_ok(
        &[
            "stack",
            "deploy",
            "-c",
            &stack_file.display().to_string(),
            "-c",
            &override_file.display().to_string(),
            STACK,
        ],
        &[
            ("SPROCKET_INFRA_DIR", &infra.display().to_string()),
            ("SPROCKET_OPS_LAYER2_NETWORK", &nets.layer2),
            ("SPROCKET_OPS_CONFIG_VERSION", version),
        ],
    );
}

/// Removes a previous rehearsal's stack, secrets and volume (a run killed before its cleanup).
fn remove_leftovers() {
    let _ = docker(&["stack", "rm", STACK]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let out = docker_ok(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.stack.namespace={STACK}"),
        ]);
        if out.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    for s in SECRETS {
        let _ = docker(&["secret", "rm", s]);
    }
    let _ = docker(&["config", "rm", POSTGRES_CA]);
    let _ = docker(&["volume", "rm", "sprocket-ops_sprocket-ops-data"]);
    for name in PLATFORM.iter().chain(LAYER_2.iter()).chain(
        [
            "traefik",
            "vault-service",
            "socket-proxy",
            "layer2redis-redis-primary",
            "prod-chatwoot",
        ]
        .iter(),
    ) {
        let _ = docker(&["service", "rm", name]);
    }
}

async fn click(discord: &FakeDiscord, who: &TestUser, m: &Message, custom_id: &str) -> Response {
    discord
        .click(who, m, custom_id)
        .await
        .response(T)
        .await
        .unwrap()
}

async fn submit_share(
    discord: &FakeDiscord,
    who: &TestUser,
    ceremony: &Message,
    share: &str,
) -> Response {
    let id = ceremony
        .custom_ids()
        .into_iter()
        .find(|c| c.starts_with("vault:share:"))
        .expect("share button");
    let opened = click(discord, who, ceremony, &id).await;
    let modal = opened
        .modal
        .clone()
        .unwrap_or_else(|| panic!("no modal for {}: {}", who.name, opened.text()));
    let modal_id = modal["custom_id"].as_str().unwrap().to_string();
    discord
        .submit_modal(who, &modal_id, &[("share", share)])
        .await
        .wait_final(T, |r| !r.text().trim().is_empty())
        .await
        .unwrap()
}

/// The image tag a service's spec names.
fn tag_of(service: &str) -> String {
    let image = docker_ok(&[
        "service",
        "inspect",
        "--format",
        "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
        service,
    ]);
    let image = image.split('@').next().unwrap_or(&image).to_string();
    image.rsplit(':').next().unwrap_or_default().to_string()
}

/// The peak memory use of a running container, from its cgroup on this host (v1 or v2).
fn peak_memory(container: &str) -> u64 {
    let candidates = [
        format!("/sys/fs/cgroup/memory/docker/{container}/memory.max_usage_in_bytes"),
        format!("/sys/fs/cgroup/system.slice/docker-{container}.scope/memory.peak"),
        format!("/sys/fs/cgroup/docker/{container}/memory.peak"),
    ];
    candidates
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("no cgroup memory figure for {container} at {candidates:?}"))
}

/// `GET /healthz` of the containerised bot, on its address on the fakes' bridge.
async fn healthz(swarm: &TestSwarm, fakes: &str) -> (u16, Value) {
    let container = container_of(swarm, BOT, T).await;
    let ip = docker_ok(&[
        "inspect",
        "--format",
        &format!("{{{{(index .NetworkSettings.Networks \"{fakes}\").IPAddress}}}}"),
        &container,
    ]);
    let r = reqwest::Client::new()
        .get(format!("http://{ip}:9464/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("/healthz answers");
    let status = r.status().as_u16();
    (status, r.json().await.expect("a JSON body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rehearsal_the_shipped_stack_runs_the_mission_on_a_sprocket_shaped_swarm() {
    let image = deploy_image();
    for (img, how) in [
        (
            "sprocket-ops-bao:test",
            "scripts/build-test-images.sh builds it",
        ),
        (
            "sprocket-ops-redis:test",
            "scripts/build-test-images.sh builds it",
        ),
    ] {
        image_must_exist(img, how);
    }
    let swarm = TestSwarm::connect().await;
    let run = env::run_id();
    remove_leftovers();
    let mut made = Made {
        cleanup: Cleanup::default(),
        run: run.clone(),
    };
    let nets = create_networks(&mut made.cleanup, &run);

    // --- the Sprocket-shaped platform ---------------------------------------------------------
    let testsvc = |tag: &str| env::test_image(tag);
    create_service(
        &mut made,
        "traefik",
        "layer_1",
        &testsvc("main"),
        &[nets.egress.as_str()],
        &["--init"],
        &[],
    );
    create_service(
        &mut made,
        "vault-service",
        "layer_1",
        "sprocket-ops-bao:test",
        &[nets.egress.as_str()],
        &[],
        &[],
    );
    create_service(
        &mut made,
        "socket-proxy",
        "layer_1",
        &testsvc("main"),
        &[],
        &["--init"],
        &[],
    );
    create_service(
        &mut made,
        "layer2redis-redis-primary",
        "layer_2",
        "sprocket-ops-redis:test",
        &[nets.layer2.as_str()],
        &[],
        &[
            "--bind",
            "0.0.0.0",
            "--protected-mode",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            REDIS_PASSWORD,
        ],
    );
    for name in LAYER_2 {
        create_service(
            &mut made,
            name,
            "layer_2",
            &testsvc("main"),
            &[nets.layer2.as_str()],
            &["--init"],
            &[],
        );
    }
    for name in PLATFORM {
        let nets_of: Vec<&str> = if name == "prod-sprocket-web" {
            vec![nets.egress.as_str()]
        } else {
            vec![]
        };
        create_service(
            &mut made,
            name,
            "platform",
            &testsvc("v2"),
            &nets_of,
            &["--init"],
            &[],
        );
    }
    create_service(
        &mut made,
        "prod-chatwoot",
        "platform",
        "sprocket-ops-redis:test",
        &[],
        &[],
        &["--bind", "0.0.0.0", "--save", ""],
    );
    let keys = init_vault(&swarm).await;
    assert!(vault_sealed(&swarm).await, "the vault starts sealed");

    // --- the fakes, on this host's address on the test's bridge -------------------------------
    // The bridge's host side (its gateway address) exists once a container of this node is
    // attached to it: a placeholder service attaches first, then the fakes bind there.
    let attach = format!("rehearsal-attach-{run}");
    create_service(
        &mut made,
        &attach,
        "none",
        &testsvc("main"),
        &[nets.fakes.as_str()],
        &["--init"],
        &[],
    );
    let gateway = IpAddr::V4(bridge_gateway(&nets.fakes).await);
    let discord = FakeDiscord::start_on(gateway).await;
    for (id, name) in [
        (ALERTS, "alerts"),
        (APPROVALS, "approvals"),
        (AUDIT, "audit"),
    ] {
        discord.add_channel(id, name);
    }
    let github = FakeGithub::start_on(gateway).await;
    let person = |id: u64, login: &'static str, teams: &[&str]| {
        let _ = github.add_user(login, 7_100 + id);
        for team in teams {
            github.set_membership("sprocketbot", team, login, "active");
        }
        (TestUser::new(910_000 + id, login), login)
    };
    let dana = person(1, "dana", &["deployers", "engineering"]);
    let pat = person(2, "pat", &["deployers", "oncall", "engineering"]);
    let kim = person(3, "kim", &["vault-keyholders", "engineering"]);
    let lee = person(4, "lee", &["vault-keyholders"]);
    let people = [
        (&dana.0, dana.1),
        (&pat.0, pat.1),
        (&kim.0, kim.1),
        (&lee.0, lee.1),
    ];
    let (dana, pat, kim, lee) = (&dana.0, &pat.0, &kim.0, &lee.0);

    // --- deploy/README.md steps 2 and 3 -------------------------------------------------------
    let work = tempfile::tempdir().expect("temp dir");
    let label = format!("{TEST_LABEL}={run}");
    let write = |name: &str, text: &str| {
        let p = work.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    for s in SECRETS {
        let value = match s {
            "sprocket-ops-discord-token" => "rehearsal-discord-token",
            "sprocket-ops-github-token" => github.org_token(),
            "sprocket-ops-redis-password" => REDIS_PASSWORD,
            _ => "rehearsal-unused-value",
        };
        let f = write(s, value);
        docker_ok(&[
            "secret",
            "create",
            "--label",
            &label,
            s,
            &f.display().to_string(),
        ]);
        made.cleanup.push(&["secret", "rm", s]);
    }
    let ca = write(
        "ca-certificate.crt",
        "not used: the rehearsal has no managed Postgres\n",
    );
    docker_ok(&[
        "config",
        "create",
        "--label",
        &label,
        POSTGRES_CA,
        &ca.display().to_string(),
    ]);
    made.cleanup.push(&["config", "rm", POSTGRES_CA]);
    let infra = work.path().join("sprocket-infra");
    write_infra(&infra, 0);
    let config_file = write("sprocket-ops.toml", &bot_config(&discord, &github, &people));
    let override_file = write("override.yml", &stack_override(&image, &nets, &config_file));
    made.cleanup
        .push(&["volume", "rm", "sprocket-ops_sprocket-ops-data"]);
    made.cleanup.push(&["stack", "rm", STACK]);
    stack_deploy(&override_file, &infra, &nets, &format!("{run}-1"));
    if discord.wait_commands_registered(T).await.is_err() {
        panic!(
            "the containerised bot did not register its commands:\n{}\n{}",
            String::from_utf8_lossy(&docker(&["service", "ps", "--no-trunc", BOT]).stdout),
            String::from_utf8_lossy(
                &docker(&["service", "logs", "--raw", "--tail", "80", BOT]).stdout
            )
        );
    }
    let first_task = bot_tasks(&swarm).await;
    assert_eq!(first_task.len(), 1, "{first_task:?}");
    let first_container = container_of(&swarm, BOT, T).await;

    // README step 4: `doctor` inside the container finds nothing wrong (secrets present,
    // layer directories, `pulumi version`, Docker through the proxy, Vault).
    // The socket proxy starts beside the bot: doctor is asked again until it answers.
    let deadline = Instant::now() + Duration::from_secs(90);
    let said = loop {
        let out = docker(&[
            "exec",
            &first_container,
            "/sprocket-ops",
            "doctor",
            "--config",
            "/etc/sprocket-ops/sprocket-ops.toml",
        ]);
        let said = String::from_utf8_lossy(&out.stdout).to_string();
        if out.status.success() && !said.contains("problem:") {
            break said;
        }
        assert!(
            Instant::now() < deadline,
            "doctor in the deployed bot ({}): {said}{}\n--- socket proxy ---\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(
                &docker(&["service", "ps", "--no-trunc", "sprocket-ops_socket-proxy"]).stdout
            ),
            String::from_utf8_lossy(
                &docker(&[
                    "service",
                    "logs",
                    "--raw",
                    "--tail",
                    "40",
                    "sprocket-ops_socket-proxy"
                ])
                .stdout
            ),
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    assert!(said.contains("ok: "), "{said}");

    // --- /status: the three layers and the probes ---------------------------------------------
    let deadline = Instant::now() + T;
    let status = loop {
        let r = discord
            .invoke(dana, "status", json!([]))
            .await
            .wait_final(T, |r| r.text().contains("platform"))
            .await
            .unwrap();
        // The first probe round may still be running just after start-up.
        if r.text().contains("probes: ") || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let text = status.text();
    eprintln!("/status in the rehearsal:\n{text}");
    for want in [
        "layer_1",
        "layer_2",
        "platform",
        "probes: ",
        "prod-sprocket-web",
        "layer2redis-redis-primary",
        "vault-service",
    ] {
        assert!(text.contains(want), "/status shows {want}: {text}");
    }

    // --- two key holders unseal the vault -----------------------------------------------------
    let r = discord
        .invoke(kim, "vault", sub("unseal"))
        .await
        .wait_final(T, |r| r.text().contains("ceremony"))
        .await
        .unwrap();
    let ceremony = r.messages()[0].clone();
    let r = submit_share(&discord, kim, &ceremony, &keys[0]).await;
    assert!(r.text().contains("1 of 2"), "{}", r.text());
    let r = submit_share(&discord, lee, &ceremony, &keys[1]).await;
    assert!(r.text().contains("unsealed"), "{}", r.text());
    assert!(!vault_sealed(&swarm).await, "the vault service is unsealed");
    discord
        .wait_channel_message(ALERTS, |m| m.text().contains("Vault unsealed"), T)
        .await
        .expect("the unseal is announced in the alerts channel");

    // --- /deploy platform image:main, applied through the socket proxy and verified ------------
    let r = discord
        .invoke(dana, "deploy", deploy_opts("main"))
        .await
        .wait_final(T, |r| {
            r.text().contains(": succeeded") || r.text().contains(": failed")
        })
        .await
        .unwrap();
    assert!(
        r.text().contains("Deploy platform: succeeded"),
        "{}",
        r.text()
    );
    for s in PLATFORM {
        assert_eq!(tag_of(s), "main", "{s} runs the deployed tag");
    }
    assert_eq!(
        tag_of("prod-chatwoot"),
        "test",
        "a third-party image is left alone"
    );
    let yaml = std::fs::read_to_string(infra.join("platform/Pulumi.prod.yaml")).unwrap();
    assert!(yaml.contains("image-tag: main"), "{yaml}");

    // --- a crash-looping service: alerted, rolled back with a second engineer, resolved --------
    let crashing = "prod-image-generation";
    docker_ok(&[
        "service",
        "update",
        "--detach",
        "--quiet",
        "--env-add",
        "TESTSVC_MODE=crash",
        crashing,
    ]);
    let alert = discord
        .wait_channel_message(
            ALERTS,
            |m| m.text().contains(crashing) && !m.text().to_lowercase().contains("resolved"),
            T,
        )
        .await
        .expect("the crash loop is alerted in the alerts channel");
    eprintln!("alert: {}", alert.text());
    // The update ends (paused: its task failed within the monitor) before anyone acts on it.
    let deadline = Instant::now() + T;
    loop {
        let state = docker_ok(&[
            "service",
            "inspect",
            "--format",
            "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}",
            crashing,
        ]);
        if state == "paused" || state == "completed" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the update of {crashing} never ended: {state}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let rollback = json!([{ "name": "service", "type": 1, "options": [{ "name": "name", "value": crashing }] }]);
    let r = discord
        .invoke(dana, "rollback", rollback)
        .await
        .wait_final(T, |r| !r.text().trim().is_empty())
        .await
        .unwrap();
    eprintln!("rollback request: {}", r.text());
    let request = discord
        .wait_channel_message(
            APPROVALS,
            |m| m.text().contains(crashing) && !m.custom_ids().is_empty(),
            T,
        )
        .await
        .expect("the rollback request is posted for approval");
    let approve = request.approval_button("a");
    let r = click(&discord, dana, &request, &approve).await;
    assert!(
        r.ephemeral && r.text().contains("own request"),
        "{}",
        r.text()
    );
    let r = click(&discord, pat, &request, &approve).await;
    let confirm_msg = r
        .original
        .clone()
        .unwrap_or_else(|| panic!("a confirmation: {}", r.text()));
    let confirm = confirm_msg.approval_button("c");
    let done = discord
        .click(pat, &confirm_msg, &confirm)
        .await
        .wait_final(T, |r| {
            r.text().contains("Done")
                || r.text().contains("Failed")
                || r.text().contains("Not executed")
        })
        .await
        .unwrap();
    assert!(done.text().contains("Done"), "{}", done.text());
    discord
        .wait_channel_message(
            ALERTS,
            |m| m.text().contains(crashing) && m.text().to_lowercase().contains("resolved"),
            T,
        )
        .await
        .expect("the alert resolves after the rollback");

    // --- a gateway outage longer than the healthcheck window, during a deploy -----------------
    write_platform_spec(&infra, 3_000);
    let deploy = discord.invoke(dana, "deploy", deploy_opts("v2")).await;
    deploy
        .wait_final(T, |r| r.text().contains("applying"))
        .await
        .expect("the deploy applies");
    discord.set_gateway_down(true).await;
    // The healthcheck: every 2 s, 3 failures replace the task; the outage lasts 14 s.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let (code, body) = healthz(&swarm, &nets.fakes).await;
    assert_eq!(
        code, 200,
        "liveness while Discord is away and a deploy runs: {body}"
    );
    assert_eq!(body["checks"]["gateway"], "not connected", "{body}");
    tokio::time::sleep(Duration::from_secs(7)).await;
    discord.set_gateway_down(false).await;
    let r = deploy
        .wait_final(T, |r| {
            r.text().contains(": succeeded") || r.text().contains(": failed")
        })
        .await
        .unwrap();
    assert!(
        r.text().contains("Deploy platform: succeeded"),
        "{}",
        r.text()
    );
    let ids = |tasks: &[(String, String)]| tasks.iter().map(|t| t.0.clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(&bot_tasks(&swarm).await),
        ids(&first_task),
        "no healthcheck replaced the bot during the outage"
    );
    for s in PLATFORM {
        assert_eq!(tag_of(s), "v2", "{s}");
    }
    // The stack's memory limit (256M) against what the bot used through three deploys, an
    // unseal, alerts and a rollback (the page cache of its container included).
    let peak = peak_memory(&first_container);
    eprintln!(
        "rehearsal: the bot's container peaked at {:.1} MiB",
        peak as f64 / (1024.0 * 1024.0)
    );
    assert!(
        peak < 256 * 1024 * 1024,
        "the bot's peak memory ({peak} bytes) reaches the stack's 256M limit"
    );

    // --- a configuration change mid-deploy: Swarm restarts the bot, the deploy is reported ---
    write_platform_spec(&infra, 20_000);
    let deploy = discord.invoke(dana, "deploy", deploy_opts("main")).await;
    deploy
        .wait_final(T, |r| r.text().contains("applying"))
        .await
        .expect("the deploy applies");
    stack_deploy(&override_file, &infra, &nets, &format!("{run}-2"));
    let r = deploy
        .wait_final(T, |r| r.text().contains("interrupted"))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the restarted bot reports the interrupted deploy: {e}\n{}",
                String::from_utf8_lossy(
                    &docker(&["service", "logs", "--raw", "--tail", "80", BOT]).stdout
                )
            )
        });
    assert!(
        r.text().contains("Deploy platform: interrupted"),
        "{}",
        r.text()
    );
    let tasks = bot_tasks(&swarm).await;
    assert_eq!(
        tasks.len(),
        2,
        "one restart, by the configuration change: {tasks:?}"
    );
    let old = tasks
        .iter()
        .find(|t| t.0 == first_task[0].0)
        .unwrap_or_else(|| panic!("the first task is in the history: {tasks:?}"));
    assert!(
        old.1 == "shutdown" || old.1 == "complete",
        "the first bot was stopped by the update, not failed: {tasks:?}"
    );
    discord.assert_no_violations();
    drop(made);
}
