//! The `sprocket-ops` binary: parse arguments, set up logging, run, map failures to exit codes.
#![forbid(unsafe_code)]

use clap::Parser;
use sprocket_ops::cli::{Cli, LogFormat};
use sprocket_ops::rest_latency::RestLatencyLayer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

fn main() {
    let cli = Cli::parse();
    // `serve` runs the bot on the multi-threaded runtime. The one-shot CLI commands run on
    // a current-thread runtime: no worker threads to start, and no cross-thread hand-off
    // for each chunk of a Docker response (what made `logs` slower than `docker service logs`).
    let runtime = if matches!(
        cli.command,
        sprocket_ops::cli::Command::Serve | sprocket_ops::cli::Command::DockerProxy { .. }
    ) {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sprocket-ops: cannot start the async runtime: {e}");
            std::process::exit(sprocket_ops::exit::Exit::OSERR);
        }
    };
    runtime.block_on(run(cli));
}

async fn run(cli: Cli) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,serenity=warn,tracing::span=warn,vaultrs=off")
    });
    // Every record is redacted before it is written (sprocket_ops::logging); no colour codes,
    // which would stand between a field's name and its value.
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(sprocket_ops::logging::Redacting::new(std::io::stderr));
    let fmt = match cli.log_format {
        LogFormat::Json => fmt.json().boxed(),
        LogFormat::Text => fmt.boxed(),
    };
    // Logs follow the filter; the Discord REST timing sees serenity's request spans whatever
    // the log filter says.
    tracing_subscriber::registry()
        .with(
            fmt.with_filter(filter)
                .with_filter(sprocket_ops::logging::payload_filter()),
        )
        .with(RestLatencyLayer.with_filter(sprocket_ops::rest_latency::filter()))
        .init();
    if let Err(e) = sprocket_ops::cli::run(&cli).await {
        eprintln!("sprocket-ops: {e}");
        std::process::exit(e.code);
    }
}
