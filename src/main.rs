//! The `dingrelay` binary: parses the command line, sets up logging, and hands over to the library.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use dingrelay::cli::{self, Cli, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter =
        EnvFilter::try_from_env("DINGRELAY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: journald and log files get plain sentences.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    // Not locked for the whole run: dry-run robots print to stdout from the daemon's threads.
    let mut stdout = std::io::stdout();
    ExitCode::from(cli::run(cli, &mut stdout))
}
