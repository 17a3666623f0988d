//! What ships in `deploy/`, read as a new operator reads it: the stack's configuration passes
//! `check-config` as step 1 of deploy/README.md says, it alerts (a probe for every system of the
//! runbook the bot can reach, all in the alerts channel), the stack attaches the bot to the
//! networks those probes need and no more, and Swarm waits longer than the bot's shutdown grace
//! before it kills the bot.
//!
//! The deploy-capable image (`scripts/build-image.sh --pulumi FILE`, built by `scripts/test.sh`
//! with the Pulumi stand-in as `SPROCKET_OPS_DEPLOY_IMAGE`) has `pulumi` on its PATH: `doctor`
//! inside it runs `pulumi version` as `/deploy` would run `pulumi`.
//!
//! The stack file is YAML, read here with [`yaml_value`], a reader for the block-style subset
//! the file is written in (`key: value` by indentation, `- item` lists); `docker stack config`
//! checks that the whole file is valid compose.

use std::collections::BTreeSet;
use std::process::Command;

use ops_core::alerts::config::ProbeKind;
use ops_core::config::Config;
use sprocket_ops_tests::env;

fn shipped_config() -> Config {
    Config::load(&env::workspace_root().join("deploy/sprocket-ops.toml"))
        .unwrap_or_else(|e| panic!("deploy/sprocket-ops.toml: {e}"))
}

fn stack_text() -> String {
    std::fs::read_to_string(env::workspace_root().join("deploy/sprocket-ops.stack.yml"))
        .expect("deploy/sprocket-ops.stack.yml")
}

/// The lines under `path` (nested block keys) of a block-style YAML document, without their
/// indentation; a scalar `key: value` gives one line with the value. Comments are dropped.
fn yaml_value(text: &str, path: &[&str]) -> Vec<String> {
    let lines: Vec<(usize, &str)> = text
        .lines()
        .map(|l| match l.find(" #") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| (l.len() - l.trim_start().len(), l.trim_end()))
        .collect();
    let mut from = 0;
    let mut indent: Option<usize> = None;
    let mut depth = 0;
    while depth < path.len() {
        let key = format!("{}:", path[depth]);
        // Direct children only: the indentation of the block's first line.
        let child = match indent {
            None => 0,
            Some(p) => match lines.get(from) {
                Some((j, _)) if *j > p => *j,
                _ => return Vec::new(),
            },
        };
        let found = lines[from..].iter().position(|(i, l)| {
            *i == child && (l.trim_start() == key || l.trim_start().starts_with(&format!("{key} ")))
        });
        let Some(at) = found else {
            return Vec::new();
        };
        let (i, l) = lines[from + at];
        // A sibling or parent between `from` and the match ends the search.
        if lines[from..from + at]
            .iter()
            .any(|(j, _)| indent.is_some_and(|p| *j <= p))
        {
            return Vec::new();
        }
        if depth == path.len() - 1 {
            let rest = l.trim_start()[key.len()..].trim();
            if !rest.is_empty() {
                return vec![rest.trim_matches('"').to_string()];
            }
            return lines[from + at + 1..]
                .iter()
                .take_while(|(j, _)| *j > i)
                .map(|(_, l)| l.trim().to_string())
                .collect();
        }
        indent = Some(i);
        from += at + 1;
        depth += 1;
    }
    Vec::new()
}

/// `1m15s`, `75s`, `2m` -> seconds.
fn duration_secs(s: &str) -> u64 {
    let mut total = 0;
    let mut n = String::new();
    for c in s.chars() {
        match c {
            '0'..='9' => n.push(c),
            'h' | 'm' | 's' => {
                let v: u64 = n.parse().unwrap_or_else(|_| panic!("duration {s}"));
                total += v * match c {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                n.clear();
            }
            _ => panic!("duration {s}"),
        }
    }
    assert!(n.is_empty(), "duration {s} ends without a unit");
    total
}

#[test]
fn yaml_reader_reads_the_subset_the_stack_is_written_in() {
    let doc = "a:\n  b:\n    c: 1 # x\n    d:\n      - one\n      - two\n  e: \"q\"\nb:\n  c: 2\n";
    assert_eq!(yaml_value(doc, &["a", "b", "c"]), ["1"]);
    assert_eq!(yaml_value(doc, &["a", "b", "d"]), ["- one", "- two"]);
    assert_eq!(yaml_value(doc, &["a", "e"]), ["q"]);
    assert_eq!(yaml_value(doc, &["b", "c"]), ["2"]);
    assert!(yaml_value(doc, &["a", "c"]).is_empty(), "not a child of a");
    assert_eq!(duration_secs("1m15s"), 75);
    assert_eq!(duration_secs("75s"), 75);
}

#[test]
fn the_shipped_deploy_config_passes_check_config() {
    let root = env::workspace_root();
    let out = Command::new(env::bot_binary())
        .current_dir(&root)
        .args(["--config", "deploy/sprocket-ops.toml", "check-config"])
        .env_remove("SPROCKET_OPS_CONFIG")
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "step 1 of deploy/README.md fails ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // It reads the repository's one permissions.toml, not a copy that could drift.
    let linked = std::fs::canonicalize(root.join("deploy/permissions.toml")).expect("link");
    assert_eq!(
        linked,
        std::fs::canonicalize(root.join("permissions.toml")).unwrap()
    );
}

#[test]
fn the_shipped_config_probes_every_reachable_seed_system_into_the_alerts_channel() {
    let cfg = shipped_config();
    let alerts = cfg
        .alerts
        .as_ref()
        .expect("deploy/sprocket-ops.toml has an [alerts] section");
    let channel = cfg.discord.alerts_channel_id;
    assert_eq!(alerts.routing.default_channel, channel);
    for r in &alerts.routing.routes {
        assert_eq!(r.channel, channel, "route {r:?} leaves the alerts channel");
    }
    let kinds: BTreeSet<&str> = alerts.probes.iter().map(|p| p.kind.as_str()).collect();
    for (kind, what) in [
        (ProbeKind::VaultSeal, "Vault's seal"),
        (ProbeKind::TraefikRouters, "Traefik's routers"),
        (ProbeKind::HttpsRedirect, "the HTTP->HTTPS redirect"),
        (ProbeKind::Tls, "certificate expiry"),
        (ProbeKind::Redis, "Redis"),
        (ProbeKind::Rabbitmq, "RabbitMQ"),
        (ProbeKind::Postgres, "the managed Postgres"),
        (ProbeKind::S3, "Spaces"),
        (ProbeKind::Graphql, "the API's GraphQL"),
        (ProbeKind::Http, "the web app"),
    ] {
        assert!(
            kinds.contains(kind.as_str()),
            "no probe of {what}: {kinds:?}"
        );
    }
    let pg = alerts
        .probes
        .iter()
        .find(|p| p.kind == ProbeKind::Postgres)
        .unwrap();
    assert_eq!(
        pg.sslmode,
        Some(ops_core::alerts::config::PgTls::VerifyFull),
        "the managed database is checked with TLS verify-full"
    );
    for p in &alerts.probes {
        assert!(
            cfg.layers.contains_key(&p.layer),
            "probe {} names the unknown layer {}",
            p.name,
            p.layer
        );
        // Every credential is a Docker secret the stack mounts.
        if let Some(src) = &p.password {
            let file = src
                .file
                .as_ref()
                .unwrap_or_else(|| panic!("probe {}: its password is not a file", p.name));
            let target = file
                .strip_prefix("/run/secrets")
                .unwrap_or_else(|_| {
                    panic!(
                        "probe {}: {} is not a Docker secret",
                        p.name,
                        file.display()
                    )
                })
                .display()
                .to_string();
            assert!(
                stack_text().contains(&format!("target: {target}\n")),
                "the stack mounts no secret {target} for probe {}",
                p.name
            );
        }
        if let Some(ca) = &p.ssl_root_cert {
            assert!(
                stack_text().contains(&format!("target: {ca}\n")),
                "the stack mounts no {ca}"
            );
        }
    }
}

#[test]
fn the_stack_attaches_the_bot_to_the_networks_its_probes_need_and_no_more() {
    let stack = stack_text();
    let cfg = shipped_config();
    let alerts = cfg.alerts.expect("[alerts]");
    let nets: BTreeSet<String> = yaml_value(&stack, &["services", "bot", "networks"])
        .into_iter()
        .map(|l| l.trim_start_matches("- ").to_string())
        .collect();
    // The probes that have no public address: they need layer_2's network.
    let internal: Vec<&str> = alerts
        .probes
        .iter()
        .filter(|p| {
            let addr = p.url.as_deref().or(p.target.as_deref()).unwrap_or("");
            let host = addr
                .split("://")
                .last()
                .unwrap_or("")
                .split(['/', ':', '@'])
                .find(|h| !h.is_empty() && !h.contains("doadmin"))
                .unwrap_or("");
            !host.contains('.')
        })
        .map(|p| p.name.as_str())
        .collect();
    assert!(!internal.is_empty(), "some probes are internal");
    let mut want = BTreeSet::from(["socket".to_string(), "egress".to_string()]);
    want.insert("layer2".to_string());
    assert_eq!(
        nets, want,
        "the bot's networks (internal probes: {internal:?})"
    );
    assert_eq!(
        yaml_value(&stack, &["networks", "layer2", "external"]),
        ["true"],
        "layer_2's network is layer_2's, not the stack's"
    );
    let out = Command::new("docker")
        .current_dir(env::workspace_root())
        .args(["stack", "config", "-c", "deploy/sprocket-ops.stack.yml"])
        .output()
        .expect("docker runs");
    assert!(
        out.status.success(),
        "docker stack config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn swarm_waits_longer_than_the_shutdown_grace_before_killing_the_bot() {
    let cfg = shipped_config();
    let stop = yaml_value(&stack_text(), &["services", "bot", "stop_grace_period"]);
    let [stop] = stop.as_slice() else {
        panic!("the bot has no stop_grace_period: {stop:?}");
    };
    let stop = duration_secs(stop);
    assert!(
        stop >= cfg.discord.shutdown_grace_secs + 10,
        "stop_grace_period {stop} s does not cover discord.shutdown_grace_secs {} s and closing the gateway",
        cfg.discord.shutdown_grace_secs
    );
}

/// Set by `scripts/test.sh`: the image built with `--pulumi <the stand-in>`.
const DEPLOY_IMAGE_VAR: &str = "SPROCKET_OPS_DEPLOY_IMAGE";

#[test]
fn the_deploy_capable_image_runs_pulumi_from_its_path() {
    let image = std::env::var(DEPLOY_IMAGE_VAR)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "sprocket-ops-deploy:latest".to_string());
    let inspect = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", &image])
        .output()
        .expect("docker runs");
    assert!(
        inspect.status.success(),
        "image {image} does not exist: build it with `bash scripts/build-image.sh --pulumi \
         target/debug/pulumi` (scripts/test.sh does, as {DEPLOY_IMAGE_VAR})"
    );
    // The example config, as the container sees it: `pulumi.binary = "pulumi"`, looked up on
    // the image's PATH; nothing else is reachable (no engine socket, no Vault), which doctor
    // reports as problems without stopping.
    let dir = tempfile::tempdir().expect("temp dir");
    let root = env::workspace_root();
    std::fs::copy(
        root.join("permissions.toml"),
        dir.path().join("permissions.toml"),
    )
    .unwrap();
    let example = std::fs::read_to_string(root.join("sprocket-ops.example.toml")).unwrap();
    assert!(
        example.contains("binary = \"pulumi\""),
        "the example runs pulumi from PATH"
    );
    std::fs::write(dir.path().join("sprocket-ops.toml"), example).unwrap();
    // Readable by the image's user (uid 10001).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in ["sprocket-ops.toml", "permissions.toml"] {
        std::fs::set_permissions(dir.path().join(f), std::fs::Permissions::from_mode(0o644))
            .unwrap();
    }
    let mount = format!("{}:/etc/sprocket-ops:ro", dir.path().display());
    let out = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--label",
            &format!("sprocket-ops.test={}", env::run_id()),
            "-v",
            &mount,
            &image,
            "--config",
            "/etc/sprocket-ops/sprocket-ops.toml",
            "doctor",
        ])
        .output()
        .expect("docker runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let pulumi = stdout
        .lines()
        .find(|l| l.contains("pulumi"))
        .unwrap_or_else(|| panic!("doctor said nothing about pulumi: {all}"));
    assert!(
        pulumi.starts_with("ok: `pulumi version` runs: "),
        "pulumi in the image: {pulumi}\n{all}"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "the rest is unreachable here: {all}"
    );
}
