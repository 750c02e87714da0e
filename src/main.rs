//! The `dingrelay` binary: parses the command line, sets up logging, and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use dingrelay::cli::{self, Cli, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter =
        EnvFilter::try_from_env("DINGRELAY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    let mut stdout = std::io::stdout().lock();
    ExitCode::from(cli::run(cli, &mut stdout))
}
