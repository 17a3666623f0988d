//! The real sprocket-ops bot, in-process, against the fake Discord and the fake GitHub: a
//! config and permissions file in a temp dir, a SQLite store there, serve() on a task. Tests
//! create people with roles (a GitHub user in the teams that grant them, linked to a Discord
//! user) and restart the bot on the same store.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ops_core::permissions::Permissions;
use ops_core::store::{self, Link};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::env;
use crate::fake_discord::{FakeDiscord, TestUser};
use crate::fake_github::FakeGithub;

pub const ALERTS: u64 = 2001;
pub const APPROVALS: u64 = 2002;
pub const AUDIT: u64 = 2003;
/// A channel of the guild that is not an operations channel.
pub const OFFTOPIC: u64 = 2999;

/// A running bot with its fakes. Dropping it stops the bot.
pub struct TestBot {
    pub discord: FakeDiscord,
    pub github: FakeGithub,
    pub dir: tempfile::TempDir,
    pub permissions: Permissions,
    running: Option<(Option<oneshot::Sender<()>>, JoinHandle<()>)>,
    next_id: AtomicU64,
    /// `[http] listen`: a port picked free at start (kept across restarts).
    http_addr: std::net::SocketAddr,
    /// See [`BotOptions::binary_log`].
    binary: Option<(PathBuf, Vec<(String, String)>)>,
}

/// How to start a bot.
#[derive(Default, Clone)]
pub struct BotOptions {
    /// permissions.toml text; the repository's file when `None`.
    pub permissions: Option<String>,
    /// Extra TOML appended to the config (for example `[limits]`).
    pub extra_config: String,
    /// Extra keys inside `[discord]` (for example `logs_follow_secs = 3`).
    pub discord_extra: String,
    /// The platform layer's service patterns (default `["prod-*"]`).
    pub platform_services: Option<Vec<String>>,
    /// `[docker] layer_label` (default `sprocket.layer`); a unique one isolates a test's layers.
    pub layer_label: Option<String>,
    /// `[pulumi] binary`.
    pub pulumi_binary: Option<PathBuf>,
    /// `[docker] host` (default the local socket).
    pub docker_host: Option<String>,
    /// Run the real `sprocket-ops serve` binary ([`env::bot_binary`]) instead of in-process,
    /// with `RUST_LOG=trace` and its stderr (the bot's whole log) appended to this file.
    pub binary_log: Option<PathBuf>,
    /// Extra environment for that binary.
    pub binary_env: Vec<(String, String)>,
}

impl TestBot {
    pub async fn start() -> TestBot {
        TestBot::start_with(BotOptions::default()).await
    }

    pub async fn start_with(opts: BotOptions) -> TestBot {
        // `RUST_LOG=debug cargo test …` shows the bot's logs (captured per test by libtest).
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
        let discord = FakeDiscord::start().await;
        for (id, name) in [
            (ALERTS, "alerts"),
            (APPROVALS, "approvals"),
            (AUDIT, "audit"),
            (OFFTOPIC, "offtopic"),
        ] {
            discord.add_channel(id, name);
        }
        let github = FakeGithub::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let perms_text = opts.permissions.clone().unwrap_or_else(|| {
            std::fs::read_to_string(env::workspace_root().join("permissions.toml"))
                .expect("permissions.toml")
        });
        std::fs::write(dir.path().join("permissions.toml"), &perms_text).unwrap();
        std::fs::write(dir.path().join("discord-token"), "test-discord-token").unwrap();
        std::fs::write(dir.path().join("github-token"), github.org_token()).unwrap();
        let http_addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port for [http] listen");
        let config = format!(
            r#"permissions_file = "permissions.toml"
layer_order = ["layer_1", "layer_2", "platform"]

[discord]
guild_id = {guild}
alerts_channel_id = {ALERTS}
approvals_channel_id = {APPROVALS}
audit_channel_id = {AUDIT}
api_base_url = "{discord_url}"
token = {{ file = "{dir}/discord-token" }}
{discord_extra}

[database]
url = "sqlite://{dir}/ops.db"

[http]
listen = "{http_addr}"

[docker]
layer_label = "{layer_label}"
host = "{docker_host}"

[pulumi]
binary = {pulumi:?}

[github]
api_base_url = "{gh_api}"
oauth_base_url = "{gh_oauth}"
client_id = "{client_id}"
token = {{ file = "{dir}/github-token" }}

[layers.layer_1]
directory = "{dir}/layer_1"
stack = "layer_1"
services = ["traefik*", "vault*", "socket-proxy*"]
always_requires_approval = true

[layers.layer_2]
directory = "{dir}/layer_2"
stack = "layer_2"
services = ["layer2redis*", "rabbitmq*", "grafana*"]

[layers.platform]
directory = "{dir}/platform"
stack = "prod"
image_tag_key = "image-tag"
services = {platform_services}
timeout_secs = 300
{extra}"#,
            guild = FakeDiscord::GUILD_ID,
            http_addr = http_addr,
            discord_url = discord.api_base_url(),
            dir = dir.path().display(),
            gh_api = github.api_base_url(),
            gh_oauth = github.oauth_base_url(),
            client_id = crate::fake_github::FAKE_CLIENT_ID,
            extra = opts.extra_config,
            discord_extra = opts.discord_extra,
            docker_host = opts
                .docker_host
                .clone()
                .unwrap_or_else(|| "unix:///var/run/docker.sock".into()),
            layer_label = opts
                .layer_label
                .clone()
                .unwrap_or_else(|| "sprocket.layer".into()),
            pulumi = opts
                .pulumi_binary
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "pulumi".into()),
            platform_services = serde_json::to_string(
                &opts
                    .platform_services
                    .clone()
                    .unwrap_or_else(|| vec!["prod-*".into()])
            )
            .unwrap(),
        );
        std::fs::write(dir.path().join("sprocket-ops.toml"), config).unwrap();
        let permissions =
            Permissions::parse("permissions.toml", &perms_text).expect("valid permissions");
        let mut bot = TestBot {
            discord,
            github,
            dir,
            permissions,
            running: None,
            next_id: AtomicU64::new(1),
            http_addr,
            binary: opts
                .binary_log
                .clone()
                .map(|l| (l, opts.binary_env.clone())),
        };
        bot.launch().await;
        bot
    }

    /// `GET /metrics` of the running bot (Prometheus text).
    pub async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.http_addr);
        reqwest::get(&url)
            .await
            .and_then(|r| r.error_for_status())
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
            .text()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    /// The value of one sample of `/metrics` (`name{labels}` exactly as rendered), 0 if absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find_map(|l| {
                l.strip_prefix(sample)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("sprocket-ops.toml")
    }

    pub fn database_url(&self) -> String {
        format!("sqlite://{}/ops.db", self.dir.path().display())
    }

    async fn launch(&mut self) {
        let (cfg, perms) =
            sprocket_ops::app::load_config(&self.config_path()).expect("test config is valid");
        let (tx, rx) = oneshot::channel::<()>();
        if let Some((log, vars)) = &self.binary {
            let stderr = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .expect("the bot's log file");
            let mut child = tokio::process::Command::new(env::bot_binary())
                .arg("--config")
                .arg(self.config_path())
                .arg("serve")
                .env("RUST_LOG", "trace")
                .envs(vars.iter().map(|(k, v)| (k, v)))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(stderr)
                .kill_on_drop(true)
                .spawn()
                .expect("sprocket-ops serve starts");
            let handle = tokio::spawn(async move {
                tokio::select! {
                    _ = rx => {
                        let _ = child.start_kill();
                        let _ = child.wait().await;
                    }
                    status = child.wait() => panic!("sprocket-ops serve exited: {status:?}"),
                }
            });
            self.running = Some((Some(tx), handle));
            drop((cfg, perms));
            self.discord
                .wait_commands_registered(Duration::from_secs(60))
                .await
                .unwrap_or_else(|e| panic!("the bot binary did not register its commands: {e}"));
            return;
        }
        let handle = tokio::spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            if let Err(e) = sprocket_ops::serve::serve(cfg, perms, shutdown).await {
                panic!("serve failed: {e}");
            }
        });
        self.running = Some((Some(tx), handle));
        let registered = self.discord.gateway_connections();
        self.discord
            .wait_commands_registered(Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| {
                panic!("the bot did not register its commands (connections {registered}): {e}")
            });
    }

    /// Stops the bot (as a crash would leave it: the store keeps its state) and starts it again
    /// against the same fakes and the same database.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.launch().await;
    }

    pub async fn stop(&mut self) {
        self.signal_shutdown();
        self.wait_stopped(Duration::from_secs(10)).await;
    }

    /// Sends the shutdown signal (SIGTERM in production) without waiting.
    pub fn signal_shutdown(&mut self) {
        if let Some((tx, _)) = self.running.as_mut() {
            if let Some(tx) = tx.take() {
                let _ = tx.send(());
            }
        }
    }

    /// Waits for `serve` to return; `true` if it did within `timeout`.
    pub async fn wait_stopped(&mut self, timeout: Duration) -> bool {
        let Some((_, handle)) = self.running.as_mut() else {
            return true;
        };
        if tokio::time::timeout(timeout, handle).await.is_ok() {
            self.running = None;
            true
        } else {
            false
        }
    }

    /// A person holding exactly `roles` (through the teams that grant them directly), linked to
    /// a new Discord user.
    pub async fn person(&self, login: &str, roles: &[&str]) -> TestUser {
        let n = self.next_id.fetch_add(1, Ordering::SeqCst);
        let github_id = 7_000 + n;
        self.github.add_user(login, github_id);
        for role in roles {
            let team = self
                .permissions
                .teams_of_role(role)
                .first()
                .unwrap_or_else(|| panic!("role {role} has no team"));
            let (org, slug) = team.split_once('/').expect("org/team");
            self.github.set_membership(org, slug, login, "active");
        }
        let user = TestUser::new(900_000 + n, login);
        self.link(&user, login, github_id).await;
        user
    }

    /// Links a Discord user to a GitHub account, as `/link` does.
    pub async fn link(&self, user: &TestUser, login: &str, github_id: u64) {
        let store = store::connect(&self.database_url(), None)
            .await
            .expect("test store");
        store
            .upsert_link(&Link {
                discord_id: user.id,
                github_id,
                github_login: login.to_string(),
                linked_at_ms: 1,
            })
            .await
            .expect("link");
    }

    /// The audit log as stored, newest first (up to 500 rows).
    pub async fn audit_rows(&self) -> Vec<ops_core::audit::AuditRecord> {
        let store = store::connect(&self.database_url(), None)
            .await
            .expect("test store");
        store
            .list_audit(&ops_core::audit::AuditFilter {
                actor_id: None,
                since_ms: None,
                limit: 500,
            })
            .await
            .expect("audit rows")
    }

    /// A new Discord user linked to an existing GitHub account (a second account of a person).
    pub async fn second_account(&self, login: &str, github_id: u64) -> TestUser {
        let n = self.next_id.fetch_add(1, Ordering::SeqCst);
        let user = TestUser::new(900_000 + n, format!("{login}-alt"));
        self.link(&user, login, github_id).await;
        user
    }
}

impl Drop for TestBot {
    fn drop(&mut self) {
        if let Some((tx, handle)) = self.running.take() {
            if let Some(tx) = tx {
                let _ = tx.send(());
            }
            handle.abort();
        }
    }
}
