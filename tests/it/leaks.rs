//! The leak suite: secrets are planted in every source the bot reads — a service's spec env
//! and its logs (in every encoding, labelled once, across lines, across Docker's 16 KiB cut),
//! task errors, Pulumi diagnostics and engine events, Vault and GitHub error bodies, probe
//! answers, an unparsable gateway payload carrying an unseal share — and every byte that leaves
//! is scanned: each request to the fake Discord (bodies, queries, attachments), the bot's own
//! log at TRACE (the real binary, `RUST_LOG=trace`), the database file, `audit --json`, the
//! CLI's `logs` and `status`, and `/metrics`. Zero leaks, in any encoding.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine;
use ops_core::redact::MASK;
use serde_json::json;
use sprocket_ops_tests::bot::{BotOptions, TestBot, ALERTS};
use sprocket_ops_tests::env;
use sprocket_ops_tests::fake_github::Failure;
use sprocket_ops_tests::swarm::{TestService, TestSwarm};

const T: Duration = Duration::from_secs(90);

/// A fresh tag per test run, so planted values are unique.
fn tag() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}", (n as u64) & 0xff_ffff_ffff)
}

/// The characters of `v`'s base64 that depend on `v` alone, at each of the three alignments.
fn b64_cores(engine: &impl Engine, v: &str) -> Vec<String> {
    (0..3usize)
        .filter_map(|k| {
            let mut buf = vec![0u8; k];
            buf.extend_from_slice(v.as_bytes());
            let enc = engine.encode(&buf);
            let (start, end) = ((8 * k).div_ceil(6), (8 * (k + v.len())) / 6);
            enc.get(start..end).map(str::to_string)
        })
        .collect()
}

fn hex(v: &str) -> String {
    v.bytes().map(|b| format!("{b:02x}")).collect()
}

fn url_encode(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn json_escape(v: &str) -> String {
    let q = serde_json::to_string(v).unwrap();
    q[1..q.len() - 1].to_string()
}

fn shell_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "'\\''"))
}

/// Every form of a planted value the scan looks for.
fn forms(v: &str) -> Vec<(&'static str, String)> {
    let mut out = vec![("raw", v.to_string())];
    for c in b64_cores(&STANDARD, v) {
        out.push(("base64", c));
    }
    for c in b64_cores(&URL_SAFE, v) {
        out.push(("base64url", c));
    }
    out.push(("hex", hex(v)));
    out.push(("hex upper", hex(v).to_ascii_uppercase()));
    out.push(("url", url_encode(v)));
    out.push(("json", json_escape(v)));
    out.retain(|(_, f)| f.len() >= 6);
    out.dedup_by(|a, b| a.1 == b.1);
    out
}

/// What left the process, by source.
struct Outputs(Vec<(String, String)>);

impl Outputs {
    async fn collect(bot: &TestBot, log: &Path, svc: Option<&str>) -> Outputs {
        let mut out = Vec::new();
        for (i, q) in bot.discord.requests().into_iter().enumerate() {
            let where_ = format!("Discord request {i} {} {}", q.method, q.path);
            if let Some(b) = &q.body {
                out.push((format!("{where_} body"), b.to_string()));
            }
            if let Some(query) = &q.query {
                out.push((format!("{where_} query"), query.clone()));
            }
            for (name, bytes) in &q.attachments {
                out.push((
                    format!("{where_} attachment {name}"),
                    String::from_utf8_lossy(bytes).into_owned(),
                ));
            }
        }
        let log_text = std::fs::read(log).expect("the bot's log");
        assert!(
            log_text.len() > 10_000,
            "the bot logged at TRACE ({} bytes)",
            log_text.len()
        );
        out.push((
            "the bot's log".into(),
            String::from_utf8_lossy(&log_text).into_owned(),
        ));
        for entry in std::fs::read_dir(bot.dir.path()).unwrap() {
            let p = entry.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with("ops.db") {
                let bytes = std::fs::read(&p).unwrap();
                out.push((
                    format!("database file {name}"),
                    String::from_utf8_lossy(&bytes).into_owned(),
                ));
            }
        }
        let mut cli: Vec<Vec<String>> = vec![
            vec![
                "audit".into(),
                "--json".into(),
                "--limit".into(),
                "1000".into(),
            ],
            vec!["status".into(), "--json".into()],
        ];
        if let Some(s) = svc {
            cli.push(vec![
                "logs".into(),
                s.into(),
                "--tail".into(),
                "10000".into(),
            ]);
        }
        for args in cli {
            let o = tokio::process::Command::new(env::bot_binary())
                .arg("--config")
                .arg(bot.config_path())
                .args(&args)
                .output()
                .await
                .expect("the CLI runs");
            out.push((
                format!("`sprocket-ops {}` stdout", args.join(" ")),
                String::from_utf8_lossy(&o.stdout).into_owned(),
            ));
            out.push((
                format!("`sprocket-ops {}` stderr", args.join(" ")),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            ));
            if args[0] == "audit" {
                assert!(o.status.success(), "audit --json: {o:?}");
                assert!(
                    String::from_utf8_lossy(&o.stdout).contains("\"command\""),
                    "audit rows were printed"
                );
            }
        }
        out.push(("/metrics".into(), bot.metrics().await));
        Outputs(out)
    }

    /// Panics listing every planted value (and form) found, with where and its context.
    fn assert_no_leaks(&self, planted: &[(&str, String)]) {
        let mut leaks = Vec::new();
        for (what, value) in planted {
            for (form, f) in forms(value) {
                for (source, text) in &self.0 {
                    if let Some(at) = text.find(&f) {
                        // From the start of the line (at most 240 back): says who wrote it.
                        let line_start = text[..at].rfind('\n').map(|i| i + 1).unwrap_or(0);
                        let mut from = line_start.max(at.saturating_sub(240));
                        while !text.is_char_boundary(from) {
                            from -= 1;
                        }
                        let mut to = (at + f.len() + 80).min(text.len());
                        while !text.is_char_boundary(to) {
                            to += 1;
                        }
                        leaks.push(format!(
                            "{what} ({form}) in {source}: …{}…",
                            text[from..to].escape_debug()
                        ));
                    }
                }
            }
        }
        assert!(
            leaks.is_empty(),
            "{} leak(s):\n  - {}",
            leaks.len(),
            leaks.join("\n  - ")
        );
    }

    fn all_text(&self) -> String {
        self.0
            .iter()
            .map(|(_, t)| t.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A local HTTP server answering `(path, status, body)` as given (404 otherwise): Vault and
/// Traefik whose error answers carry secrets.
async fn leaky_server(routes: Vec<(&'static str, u16, String)>) -> String {
    use axum::response::IntoResponse;
    let routes = std::sync::Arc::new(routes);
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let routes = routes.clone();
        async move {
            for (path, status, body) in routes.iter() {
                if uri.path() == *path {
                    return (
                        axum::http::StatusCode::from_u16(*status).unwrap(),
                        [("content-type", "application/json")],
                        body.clone(),
                    )
                        .into_response();
                }
            }
            axum::http::StatusCode::NOT_FOUND.into_response()
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    url
}

fn log_file(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("bot-trace.log")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_secrets_leave_by_no_path_in_no_encoding() {
    let t = tag();
    // The service's own secrets, in its spec.
    let spec_pw = format!("Sp3c\"P'w/{t}+z=");
    let api_token = format!("apitok-{t}-0123");
    let url_pw = format!("urlpw{t}Q");
    // Unknown to the bot until seen labelled once.
    let labelled = format!("lbl{t}seenonce");
    let jwt = format!("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ{t}In0.c2lnbmF0dXJl{t}X2J5dGVz");
    let pem_body = format!("MIIpem{t}BodyLine");
    // In a task error (a bind source that does not exist) and that service's spec.
    let task_pw = format!("TaskPw{t}k");
    // The bot's own secrets and what other systems answer.
    let vault_token = format!("vault-tok-{t}-abcdef");
    let vault_body = format!("vaultbody{t}");
    let probe_pw = format!("probe-pw-{t}");
    let probe_session = format!("probesess{t}");
    const GITHUB_BODY_SECRET: &str = "ghbody-leak-0a1b2c3d4e5f";
    let share = format!("c2hhcmUt{t}bGVha2VkLXNoYXJl");

    let x = "x".repeat(16 * 1024 - 8);
    let lines = [
        format!("inl raw {spec_pw}"),
        format!("inl tok {api_token}"),
        format!("inl url {url_pw}"),
        format!("inl password={labelled} (first sight)"),
        format!("inl again {labelled}"),
        format!(
            "b64 blob={}",
            STANDARD.encode(format!("xy{spec_pw}trailer-bytes"))
        ),
        format!(
            "b64url blob={}",
            URL_SAFE.encode(format!("x{labelled}tail"))
        ),
        format!("url={}", url_encode(&spec_pw)),
        format!("json={{\"k\":\"{}\"}}", json_escape(&spec_pw)),
        format!("shell=PGPASSWORD={}", shell_quote(&spec_pw)),
        format!("hex={}", hex(&spec_pw)),
        format!("jwt {jwt}"),
        "-----BEGIN PRIVATE KEY-----".to_string(),
        pem_body.clone(),
        "-----END PRIVATE KEY-----".to_string(),
        // Docker cuts this line at 16 KiB, in the middle of the secret.
        format!("{x}{spec_pw} end"),
        "ordinary line id=7f3a9c1e sha256:9f86d081884c7d65 took 12ms".to_string(),
    ];
    let swarm = TestSwarm::connect().await;
    let svc = swarm
        .create_service(
            TestService::new("prod-leak", "main")
                .label("sprocket.layer", "platform")
                .env("DB_PASSWORD", &spec_pw)
                .env("API_TOKEN", &api_token)
                .env(
                    "DATABASE_URL",
                    &format!("postgres://app:{url_pw}@db:5432/app"),
                )
                .env("TESTSVC_LOG_INTERVAL_MS", "0")
                .env("TESTSVC_LOG_LINES", &lines.join("\\n")),
        )
        .await;
    let failing = swarm
        .create_service(
            TestService::new("prod-leaktask", "main")
                .label("sprocket.layer", "platform")
                .env("DB_PASSWORD", &task_pw)
                .restart_delay(Duration::from_millis(200))
                .bind(&format!("/nx/{task_pw}"), "/data"),
        )
        .await;
    swarm
        .wait_converged(svc.name(), Duration::from_secs(60))
        .await
        .unwrap();

    let vault = leaky_server(vec![
        (
            "/v1/sys/seal-status",
            500,
            json!({ "errors": [format!("internal error: token {vault_token} rejected; password={vault_body}")] }).to_string(),
        ),
        (
            "/api/http/routers",
            200,
            json!([
                { "name": format!("r-{probe_pw}@docker"), "status": "disabled" },
                { "name": format!("session={probe_session}"), "status": "disabled" },
            ])
            .to_string(),
        ),
    ])
    .await;
    let secrets = tempfile::tempdir().unwrap();
    let vault_token_file = secrets.path().join("vault-token");
    let probe_pw_file = secrets.path().join("probe-pw");
    std::fs::write(&vault_token_file, &vault_token).unwrap();
    std::fs::write(&probe_pw_file, &probe_pw).unwrap();
    let logdir = tempfile::tempdir().unwrap();
    let log = log_file(&logdir);
    let bot = TestBot::start_with(BotOptions {
        discord_extra: "logs_follow_secs = 3".into(),
        extra_config: format!(
            "\n[vault]\naddress = \"{vault}\"\ntoken = {{ file = \"{}\" }}\n\
             \n[alerts]\nfailure_threshold = 1\nmin_duration_secs = 0\nresolve_threshold = 1\n\
             probe_interval_secs = 1\ngroup_wait_secs = 0\nrestart_loop_window_secs = 5\n\
             reminder_minutes = 0\nheartbeat_minutes = 0\nroot_layers = []\nservices = [\"{}\"]\n\
             \n[alerts.routing]\ndefault_channel = {ALERTS}\n\
             \n[[alerts.probes]]\nname = \"leakprobe\"\nkind = \"traefik_routers\"\nurl = \"{vault}\"\n\
             layer = \"platform\"\nseverity = \"critical\"\ntimeout_secs = 2\nusername = \"admin\"\n\
             password = {{ file = \"{}\" }}\n",
            vault_token_file.display(),
            failing.name(),
            probe_pw_file.display(),
        ),
        binary_log: Some(log.clone()),
        ..Default::default()
    })
    .await;
    let op = bot.person("olive", &["operator"]).await;

    // /logs inline (grep keeps it small), as an attachment, and followed into a thread.
    let r = bot
        .discord
        .invoke(
            &op,
            "logs",
            json!([{ "name": "service", "value": svc.name() }, { "name": "grep", "value": "inl" }]),
        )
        .await
        .wait_final(T, |r| r.text().contains("logs:"))
        .await
        .unwrap();
    let inline = r.text();
    assert!(
        inline.contains("inl raw") && inline.contains(MASK) && inline.contains("inl again"),
        "inline logs: {inline}"
    );
    let r = bot
        .discord
        .invoke(
            &op,
            "logs",
            json!([{ "name": "service", "value": svc.name() }]),
        )
        .await
        .wait_final(T, |r| r.text().contains("logs:"))
        .await
        .unwrap();
    assert!(
        !r.messages()[0].attachments.is_empty(),
        "the 16 KiB line sends the logs as an attachment: {}",
        r.text()
    );
    let r = bot
        .discord
        .invoke(
            &op,
            "logs",
            // public:true streams into a thread (the private answer is `/logs`' default).
            json!([
                { "name": "service", "value": svc.name() },
                { "name": "follow", "value": true },
                { "name": "public", "value": true }
            ]),
        )
        .await
        .wait_final(T, |r| r.text().contains("Following"))
        .await
        .unwrap();
    bot.discord
        .wait_channel_message(
            r.messages()[0].id,
            |m| m.text().contains("stopped after"),
            T,
        )
        .await
        .unwrap();

    // Task errors: in /status and in the alert.
    bot.discord
        .wait_channel_message(ALERTS, |m| m.text().contains(failing.name()), T)
        .await
        .unwrap();
    bot.discord
        .wait_channel_message(ALERTS, |m| m.text().contains("leakprobe"), T)
        .await
        .unwrap();
    let r = bot
        .discord
        .invoke(&op, "status", json!([]))
        .await
        .wait_final(T, |r| r.text().contains(failing.name()))
        .await
        .unwrap();
    assert!(r.text().contains("bind source path"), "{}", r.text());

    // Vault's error body.
    bot.discord
        .invoke(
            &op,
            "vault",
            json!([{ "name": "status", "type": 1, "options": [] }]),
        )
        .await
        .wait_final(T, |r| {
            r.text().contains("error id") || r.text().contains("Vault")
        })
        .await
        .unwrap();

    // An unparsable gateway payload carrying a share (serenity logs these whole at WARN).
    bot.discord
        .send_dispatch(
            "INTERACTION_CREATE",
            json!({
                "id": "not-a-snowflake", "application_id": "1", "type": 5, "token": "x",
                "version": 1,
                "data": { "custom_id": "vault:modal:1", "components": [
                    { "type": 1, "components": [{ "type": 4, "custom_id": "share", "value": share }] }
                ] }
            }),
        )
        .await
        .unwrap();

    // GitHub answering an error body, for a person whose roles are not cached yet.
    let gina = bot.person("gina", &["viewer"]).await;
    bot.github.set_failure(Failure::ErrorBody(
        500,
        r#"{"message":"boom","client_secret":"ghbody-leak-0a1b2c3d4e5f"}"#,
    ));
    bot.discord
        .invoke(&gina, "status", json!([]))
        .await
        .response(T)
        .await
        .unwrap();
    bot.github.set_failure(Failure::None);
    // Gateway events are handled in order: this answer comes after the payload above.
    bot.discord
        .invoke(&op, "status", json!([]))
        .await
        .wait_final(T, |r| r.text().contains(svc.name()))
        .await
        .unwrap();

    let out = Outputs::collect(&bot, &log, Some(svc.name())).await;
    let all = out.all_text();
    assert!(all.contains("ordinary line id=7f3a9c1e sha256:9f86d081884c7d65 took 12ms"));
    out.assert_no_leaks(&[
        ("the spec's DB_PASSWORD", spec_pw.clone()),
        ("the spec's API_TOKEN", api_token),
        ("the spec's DATABASE_URL password", url_pw),
        ("a value labelled once", labelled),
        ("a JWT", jwt),
        ("a PEM body", pem_body),
        ("a task error's secret", task_pw),
        ("the Vault token", vault_token),
        ("Vault's error body", vault_body),
        ("the probe password", probe_pw),
        ("the probe answer's session", probe_session),
        ("GitHub's error body", GITHUB_BODY_SECRET.to_string()),
        ("the GitHub token", bot.github.org_token().to_string()),
        ("the Discord token", "test-discord-token".to_string()),
        ("an unseal share", share),
    ]);
    // The piece of the secret after the 16 KiB cut is not left either.
    assert!(!all.contains(&format!("{} end", &spec_pw[spec_pw.len() - 8..])));
    drop(bot);
}

fn standin() -> PathBuf {
    if let Some(p) = std::env::var_os("SPROCKET_TEST_PULUMI").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let p = env::workspace_root().join("target/debug/pulumi");
    assert!(
        p.is_file(),
        "the pulumi stand-in is missing: run `cargo build -p pulumi-standin`"
    );
    p
}

/// Pulumi gets only what it needs, and what it prints (diagnostics, engine events, stderr)
/// leaves redacted: the passphrase it was given, values it labels, by no path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulumi_gets_only_its_environment_and_its_output_leaks_nothing() {
    let t = tag();
    let passphrase = format!("pass-{t}-phrase");
    let labelled = format!("plugin{t}key");
    let swarm = TestSwarm::connect().await;
    let label = format!("sprocket.leaks.{}.pulumi", env::run_id());
    let guards = swarm.platform_services(&label, "leakdep", 1).await;
    let names: Vec<String> = guards.iter().map(|g| g.name().to_string()).collect();
    let secrets = tempfile::tempdir().unwrap();
    let pass_file = secrets.path().join("passphrase");
    std::fs::write(&pass_file, &passphrase).unwrap();
    let logdir = tempfile::tempdir().unwrap();
    let log = log_file(&logdir);
    let env_dump = secrets.path().join("pulumi-env");
    let bot = TestBot::start_with(BotOptions {
        pulumi_binary: Some(standin()),
        layer_label: Some(label),
        platform_services: Some(names),
        extra_config: String::new(),
        binary_log: Some(log.clone()),
        binary_env: vec![
            ("DISCORD_TOKEN".into(), "env-discord-token-leak".into()),
            ("GITHUB_TOKEN".into(), "env-github-token-leak".into()),
            ("VAULT_TOKEN".into(), "env-vault-token-leak".into()),
            ("SPROCKET_LEAK_UNLISTED".into(), "unlisted-value".into()),
            ("SPROCKET_LEAK_LISTED".into(), "listed-value".into()),
        ],
        ..Default::default()
    })
    .await;
    // The passphrase and the pass-through list go into `[pulumi]` (the test bot writes it).
    let cfg = std::fs::read_to_string(bot.config_path()).unwrap();
    let cfg = cfg.replacen(
        "[pulumi]\n",
        &format!(
            "[pulumi]\npassphrase = {{ file = \"{}\" }}\npass_env = [\"SPROCKET_LEAK_LISTED\"]\n",
            pass_file.display()
        ),
        1,
    );
    std::fs::write(bot.config_path(), cfg).unwrap();
    let mut bot = bot;
    bot.restart().await;
    let dir = bot.dir.path().join("platform");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Pulumi.yaml"), "name: platform\nruntime: nodejs\n").unwrap();
    std::fs::write(
        dir.join("Pulumi.prod.yaml"),
        "config:\n  platform:image-tag: main\n",
    )
    .unwrap();
    let resources: Vec<_> = guards
        .iter()
        .enumerate()
        .map(|(i, s)| json!({ "type": "docker:index/service:Service", "name": format!("svc{i}"), "service_name": s.name(), "image_repo": env::image_repo() }))
        .collect();
    std::fs::write(
        dir.join("standin.json"),
        json!({
            "resources": resources,
            "warning": format!("plugin: using passphrase {passphrase} and api_key={labelled}"),
            "stderr_message": format!("plugin stderr: passphrase={passphrase}"),
            "fail_resource": "svc0",
            "fail_message": format!("provider failed: {labelled} / {passphrase}"),
            "env_dump": env_dump,
        })
        .to_string(),
    )
    .unwrap();
    let dev = bot.person("dana", &["deployer"]).await;
    let r = bot
        .discord
        .invoke(
            &dev,
            "deploy",
            json!([{ "name": "platform", "type": 1, "options": [{ "name": "image", "value": "v2" }] }]),
        )
        .await
        .wait_final(Duration::from_secs(180), |r| {
            r.text().contains("succeeded") || r.text().contains("failed")
        })
        .await
        .unwrap();
    assert!(
        r.text().contains("failed") && r.text().contains(MASK),
        "the failure is shown, redacted: {}",
        r.text()
    );
    let envs = std::fs::read_to_string(&env_dump).expect("pulumi wrote its environment");
    let names: Vec<&str> = envs
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, _)| k)
        .collect();
    for must_not in [
        "DISCORD_TOKEN",
        "GITHUB_TOKEN",
        "VAULT_TOKEN",
        "SPROCKET_LEAK_UNLISTED",
        "RUST_LOG",
    ] {
        assert!(
            !names.contains(&must_not),
            "{must_not} reached pulumi: {names:?}"
        );
    }
    for must in ["PATH", "PULUMI_CONFIG_PASSPHRASE", "SPROCKET_LEAK_LISTED"] {
        assert!(
            names.contains(&must),
            "{must} missing for pulumi: {names:?}"
        );
    }
    assert!(
        names
            .iter()
            .all(|n| ["PATH", "HOME", "SPROCKET_LEAK_LISTED"].contains(n)
                || n.starts_with("PULUMI_")),
        "only PATH, HOME, PULUMI_* and the listed variables: {names:?}"
    );
    let out = Outputs::collect(&bot, &log, None).await;
    out.assert_no_leaks(&[
        ("the Pulumi passphrase", passphrase),
        ("a value a plugin labelled", labelled),
        (
            "the Discord token from the environment",
            "env-discord-token-leak".into(),
        ),
    ]);
}
