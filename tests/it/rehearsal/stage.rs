//! The rehearsal's stage: the Sprocket-shaped platform's services, the networks, the infra
//! checkout, the bot's configuration and stack override, `docker stack deploy`, and the small
//! Discord and Docker reads the rehearsal asserts on.

use super::*;

pub(super) fn deploy_image() -> String {
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

pub(super) fn image_must_exist(image: &str, how: &str) {
    let out = docker(&["image", "inspect", "--format", "{{.Id}}", image]);
    assert!(out.status.success(), "the image {image} is missing: {how}");
}

pub(super) fn deploy_opts(tag: &str) -> Value {
    json!([{ "name": "platform", "type": 1, "options": [{ "name": "image", "value": tag }] }])
}

pub(super) fn sub(name: &str) -> Value {
    json!([{ "name": name, "type": 1, "options": [] }])
}

/// The networks the test makes: layer_2's (as its program creates it), the stand-in
/// "internet" the stack's `egress` becomes, and the bridge to this host's fakes.
pub(super) struct Networks {
    pub(super) layer2: String,
    pub(super) egress: String,
    pub(super) fakes: String,
}

pub(super) fn create_networks(cleanup: &mut Cleanup, run: &str) -> Networks {
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
pub(super) async fn bridge_gateway(network: &str) -> Ipv4Addr {
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
pub(super) fn create_service(
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
pub(super) struct Made {
    pub(super) cleanup: Cleanup,
    pub(super) run: String,
}

/// The id of the running container of a service's task.
pub(super) async fn container_of(swarm: &TestSwarm, service: &str, timeout: Duration) -> String {
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
pub(super) async fn bot_tasks(swarm: &TestSwarm) -> Vec<(String, String)> {
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
pub(super) async fn init_vault(swarm: &TestSwarm) -> Vec<String> {
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

pub(super) async fn vault_sealed(swarm: &TestSwarm) -> bool {
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
pub(super) fn write_infra(dir: &Path, step_delay_ms: u64) {
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
pub(super) fn write_platform_spec(dir: &Path, step_delay_ms: u64) {
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

pub(super) fn chown_tree(dir: &Path) {
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
pub(super) fn bot_config(
    discord: &FakeDiscord,
    github: &FakeGithub,
    people: &[(&TestUser, &str)],
) -> String {
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
pub(super) fn stack_override(image: &str, nets: &Networks, config_file: &Path) -> String {
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
pub(super) fn stack_deploy(override_file: &Path, infra: &Path, nets: &Networks, version: &str) {
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
pub(super) fn remove_leftovers() {
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

pub(super) async fn click(
    discord: &FakeDiscord,
    who: &TestUser,
    m: &Message,
    custom_id: &str,
) -> Response {
    discord
        .click(who, m, custom_id)
        .await
        .response(T)
        .await
        .unwrap()
}

pub(super) async fn submit_share(
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
pub(super) fn tag_of(service: &str) -> String {
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
pub(super) fn peak_memory(container: &str) -> u64 {
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
pub(super) async fn healthz(swarm: &TestSwarm, fakes: &str) -> (u16, Value) {
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
