//! `sprocket-ops doctor`: the live environment, where `check-config` is the static check of the
//! files. After the files themselves (as `check-config`), it checks that every secret the
//! configuration names is present (never printing one), that every layer's directory exists,
//! that `pulumi version` runs, and that Docker and Vault answer. Each problem is one line on
//! stdout (`problem: …`), each passed check one `ok: …` line; any problem makes the exit code 1.
//! Nothing is changed anywhere: no store is opened, nothing is written, no deploy is started.

use std::path::Path;
use std::time::Duration;

use ops_core::config::Config;
use ops_core::secret::SecretSource;
use ops_core::swarm::SwarmApi;
use ops_core::vault::VaultApi;

use crate::exit::Exit;

/// How long `pulumi version`, the Docker and the Vault checks may take each.
const CHECK_TIMEOUT: Duration = Duration::from_secs(20);

/// The outcome of one check: `Ok(what passed)` or `Err(the problem)`, one line each.
type Check = Result<String, String>;

/// Runs every check, prints one line per check and returns exit 1 when any failed.
pub async fn doctor(cfg: &Config, config_path: &Path) -> Result<(), Exit> {
    let mut checks: Vec<Check> = vec![Ok(format!(
        "{} and {} are valid",
        config_path.display(),
        cfg.permissions_file.display()
    ))];
    checks.extend(secrets(cfg));
    checks.extend(layer_directories(cfg));
    checks.push(pulumi_version(cfg).await);
    checks.push(docker(cfg).await);
    if let Some(v) = &cfg.vault {
        checks.push(vault(v).await);
    }
    let mut problems = 0;
    let mut out = String::new();
    for c in &checks {
        match c {
            Ok(m) => out.push_str(&format!("ok: {m}\n")),
            Err(m) => {
                problems += 1;
                out.push_str(&format!("problem: {m}\n"));
            }
        }
    }
    print!("{out}");
    if problems == 0 {
        println!("doctor: no problems");
        Ok(())
    } else {
        Err(Exit::new(
            1,
            format!("doctor: {problems} problem(s), above"),
        ))
    }
}

/// Every secret source of the configuration, by its key.
fn secret_sources(cfg: &Config) -> Vec<(String, &SecretSource)> {
    let mut v: Vec<(String, &SecretSource)> = vec![
        ("discord.token".into(), &cfg.discord.token),
        ("github.token".into(), &cfg.github.token),
    ];
    if let Some(p) = &cfg.database.password {
        v.push(("database.password".into(), p));
    }
    if let Some(p) = &cfg.pulumi.passphrase {
        v.push(("pulumi.passphrase".into(), p));
    }
    if let Some(p) = &cfg.pulumi.access_token {
        v.push(("pulumi.access_token".into(), p));
    }
    if let Some(vault) = &cfg.vault {
        v.push(("vault.token".into(), &vault.token));
    }
    if let Some(alerts) = &cfg.alerts {
        for p in &alerts.probes {
            if let Some(s) = &p.password {
                v.push((format!("alerts.probes[{}].password", p.name), s));
            }
        }
    }
    v
}

/// Present and non-empty; the value is dropped unread (only the source is named).
fn secrets(cfg: &Config) -> Vec<Check> {
    secret_sources(cfg)
        .into_iter()
        .map(|(key, src)| match src.resolve() {
            Ok(_) => Ok(format!("{key} is present")),
            Err(m) => Err(format!("{key}: {m}")),
        })
        .collect()
}

fn layer_directories(cfg: &Config) -> Vec<Check> {
    cfg.layers
        .iter()
        .map(|(name, l)| {
            let d = &l.directory;
            match std::fs::metadata(d) {
                Ok(m) if m.is_dir() => {
                    Ok(format!("layers.{name}.directory {} exists", d.display()))
                }
                Ok(_) => Err(format!(
                    "layers.{name}.directory: {} is not a directory",
                    d.display()
                )),
                Err(e) => Err(format!(
                    "layers.{name}.directory: {}: {} (mount or check out sprocket-infra there)",
                    d.display(),
                    e.kind()
                )),
            }
        })
        .collect()
}

/// `<pulumi.binary> version` (argv only) must exit 0 within [`CHECK_TIMEOUT`].
async fn pulumi_version(cfg: &Config) -> Check {
    let bin = &cfg.pulumi.binary;
    let mut cmd = tokio::process::Command::new(bin);
    // As for layer deploys: never the bot's environment (its tokens), PATH and HOME only.
    cmd.env_clear();
    for keep in ["PATH", "HOME"] {
        if let Some(v) = std::env::var_os(keep) {
            cmd.env(keep, v);
        }
    }
    cmd.arg("version")
        .env("PULUMI_SKIP_UPDATE_CHECK", "true")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    match tokio::time::timeout(CHECK_TIMEOUT, cmd.output()).await {
        Err(_) => Err(format!(
            "pulumi.binary: `{} version` did not finish within {} s",
            bin.display(),
            CHECK_TIMEOUT.as_secs()
        )),
        Ok(Err(e)) => Err(format!(
            "pulumi.binary: cannot run `{} version`: {} (layer deploys need the Pulumi CLI: see deploy/README.md)",
            bin.display(),
            e.kind()
        )),
        Ok(Ok(out)) if out.status.success() => {
            let v = String::from_utf8_lossy(&out.stdout);
            Ok(format!(
                "`{} version` runs: {}",
                bin.display(),
                v.lines().next().unwrap_or("").trim()
            ))
        }
        Ok(Ok(out)) => Err(format!(
            "pulumi.binary: `{} version` exited with {}",
            bin.display(),
            out.status
        )),
    }
}

async fn docker(cfg: &Config) -> Check {
    let host = &cfg.docker.host;
    let swarm = ops_core::swarm::docker::DockerSwarm::new(host, cfg.docker.timeout_secs)
        .map_err(|e| format!("docker.host {host}: {e}"))?;
    match tokio::time::timeout(CHECK_TIMEOUT, swarm.snapshot()).await {
        Err(_) => Err(format!(
            "docker.host {host}: no answer within {} s",
            CHECK_TIMEOUT.as_secs()
        )),
        Ok(Err(e)) => Err(format!("docker.host {host}: {e}")),
        Ok(Ok(snap)) => Ok(format!(
            "Docker answers at {host} ({} services, {} nodes)",
            snap.services.len(),
            snap.nodes.len()
        )),
    }
}

async fn vault(v: &ops_core::config::VaultConfig) -> Check {
    let addr = &v.address;
    let client =
        ops_core::vault::VaultClient::new(v).map_err(|e| format!("vault.address {addr}: {e}"))?;
    match tokio::time::timeout(CHECK_TIMEOUT, client.seal_status()).await {
        Err(_) => Err(format!(
            "vault.address {addr}: no answer within {} s",
            CHECK_TIMEOUT.as_secs()
        )),
        Ok(Err(e)) => Err(format!("vault.address {addr}: {e}")),
        Ok(Ok(s)) => Ok(format!(
            "Vault answers at {addr} ({})",
            if s.sealed { "sealed" } else { "unsealed" }
        )),
    }
}
