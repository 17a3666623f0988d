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

mod stage;
use stage::*;
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
