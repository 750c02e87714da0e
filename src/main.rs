//! The `dingrelay` binary: parses the command line, sets up logging, and hands over to the library.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use dingrelay::cli::{self, Cli, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // DINGRELAY_LOG (or RUST_LOG) takes the usual filter syntax: `debug`, `dingrelay=debug,info`.
    let filter = EnvFilter::try_from_env("DINGRELAY_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal; under journald (JOURNAL_STREAM is set for a service's
    // stderr) no timestamp either: the journal has its own.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    match (cli.log_format, journald) {
        (LogFormat::Text, false) => builder.init(),
        (LogFormat::Text, true) => builder.without_time().init(),
        (LogFormat::Json, _) => builder.json().init(),
    }
    // Not locked for the whole run: dry-run robots print to stdout from the daemon's threads.
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    ExitCode::from(cli::run(cli, &mut stdout, &mut stderr))
}
