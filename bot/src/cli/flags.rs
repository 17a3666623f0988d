//! The clap definitions of the command line: the flags, the subcommands and their arguments.

use super::*;

/// sprocket-ops: operate the Sprocket platform (Swarm, Pulumi layers, Vault) from Discord or here.
#[derive(Debug, Parser)]
#[command(name = "sprocket-ops", version)]
pub struct Cli {
    /// The configuration file.
    #[arg(
        long,
        short,
        global = true,
        env = "SPROCKET_OPS_CONFIG",
        default_value = "sprocket-ops.toml"
    )]
    pub config: PathBuf,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Connect to Discord and serve the slash commands (needs DISCORD_TOKEN or discord.token).
    Serve,
    /// Validate the configuration file and exit (0 valid, 64 invalid). Static: reads the
    /// files only, contacts nothing.
    CheckConfig,
    /// Check the live environment: secrets present (never printed), layer directories exist,
    /// `pulumi version` runs, Docker and Vault answer. One line per check; exit 1 on any problem.
    Doctor,
    /// Show the Swarm services by layer.
    Status {
        /// Print JSON: {"services":[{"name","image","running","desired","layer"}]}.
        #[arg(long)]
        json: bool,
        /// Only this layer.
        #[arg(long)]
        layer: Option<String>,
    },
    /// Set one service's image tag (or full reference) and follow the rollout. A full
    /// reference must name a repository of `[images] allowed`. A service of a layer that always
    /// needs approval, or one of sprocket-ops' own services, needs --break-glass (audited).
    Bump {
        service: String,
        /// A tag (v2) or a full image reference.
        tag: String,
        /// Act without a Discord approval, stating why (only when Discord is unavailable).
        #[arg(long, value_name = "REASON")]
        break_glass: Option<String>,
    },
    /// Set a service's replica count. Scaling to 0 (or any scale of a service of a layer that
    /// always needs approval) needs a second engineer: request it in Discord, or pass
    /// --break-glass when Discord is down (audited).
    Scale {
        service: String,
        replicas: u64,
        /// Act without a Discord approval, stating why (only when Discord is unavailable).
        #[arg(long, value_name = "REASON")]
        break_glass: Option<String>,
    },
    /// Force a rolling restart of a service (of a layer that always needs approval, or of
    /// sprocket-ops' own services: --break-glass only).
    Restart {
        service: String,
        /// Act without a Discord approval, stating why (only when Discord is unavailable).
        #[arg(long, value_name = "REASON")]
        break_glass: Option<String>,
    },
    /// Roll a service back to its previous spec (needs --break-glass outside Discord).
    Rollback {
        service: String,
        #[arg(long, value_name = "REASON")]
        break_glass: Option<String>,
    },
    /// Print a service's logs, secrets redacted (stdout to stdout, stderr to stderr).
    Logs {
        service: String,
        /// Only lines newer than this: 10m, 2h, 1d.
        #[arg(long, value_parser = parse_age)]
        since: Option<i64>,
        /// Only the last N lines of each task.
        #[arg(long, default_value_t = 200)]
        tail: u64,
        /// Only lines containing this text.
        #[arg(long)]
        grep: Option<String>,
        /// At most this many bytes per stream are kept (the newest).
        #[arg(long, default_value_t = 64 * 1024 * 1024)]
        max_bytes: usize,
    },
    /// Check the local health endpoint (the image's HEALTHCHECK): exit 0 when it answers 200
    /// within 3 s, 1 otherwise. Reads no configuration.
    Probe {
        /// The URL to GET (plain http).
        #[arg(long, default_value = "http://127.0.0.1:9464/healthz")]
        url: String,
    },
    /// Run the Docker API proxy the stack puts between the bot and the engine socket: it
    /// forwards only the (method, path) pairs of the shipped allow-list (the requests the bot
    /// makes) and answers 403 to everything else. Reads no configuration.
    DockerProxy {
        /// Where to listen (the stack's internal `socket` network).
        #[arg(long, default_value = "0.0.0.0:2375")]
        listen: String,
        /// The engine: unix://PATH, tcp://HOST:PORT or http://HOST:PORT.
        #[arg(long, default_value = "unix:///var/run/docker.sock")]
        upstream: String,
    },
    /// Deploy a Pulumi layer: lock, `pulumi config set` (with --image), preview, apply, verify
    /// on the Swarm. Progress on stderr, the report on stdout. A preview that deletes or
    /// replaces resources (or a layer that always needs approval) is refused: request the
    /// approval in Discord, or pass --break-glass when Discord is down (audited). Ctrl-C cancels
    /// gracefully (pulumi finishes the step in flight). Exit 0 deployed, 1 failed, cancelled or
    /// refused, 64 bad input, 69 Docker unreachable.
    Deploy {
        /// The layer, as configured (`platform`).
        layer: String,
        /// The image tag to deploy (`v2`), for layers with an image tag setting. A value that
        /// looks like an option (`--yes`) is taken as the tag, and refused as one.
        #[arg(long, value_name = "TAG", allow_hyphen_values = true)]
        image: Option<String>,
        /// Apply a preview that needs an approval without one, stating why (only when Discord
        /// is unavailable).
        #[arg(long, value_name = "REASON")]
        break_glass: Option<String>,
    },
    /// Show a layer's deploys, newest first.
    History {
        /// The layer, as configured.
        layer: String,
        /// At most this many deploys (1-100).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100))]
        limit: u32,
        /// Print JSON, one array of deploy records.
        #[arg(long)]
        json: bool,
    },
    /// Show the layer locks held now (who deploys what, since when, until when).
    Locks,
    /// Show the audit log, newest first.
    Audit {
        /// Print JSON, one array of records.
        #[arg(long)]
        json: bool,
        /// Only this actor (Discord id or CLI user).
        #[arg(long)]
        user: Option<String>,
        /// Only entries newer than this: e.g. 30m, 12h, 7d.
        #[arg(long, value_parser = parse_age)]
        since: Option<i64>,
        /// At most this many entries (1-1000).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
    },
}
