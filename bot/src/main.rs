//! The `sprocket-ops` binary: parse arguments, set up logging, run, map failures to exit codes.
#![forbid(unsafe_code)]

use clap::Parser;
use sprocket_ops::cli::{Cli, LogFormat};

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,serenity=warn,tracing::span=warn,vaultrs=off")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    if let Err(e) = sprocket_ops::cli::run(&cli).await {
        eprintln!("sprocket-ops: {e}");
        std::process::exit(e.code);
    }
}
