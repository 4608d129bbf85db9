//! The `agent` binary: parses the command line and reports errors as one
//! readable sentence with a non-zero exit.

use std::process::ExitCode;

use clap::Parser;
use pausewatch::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Run(args) => pausewatch::run::run(args),
        Command::Probes(args) => pausewatch::run::probes(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Quiet by default: warnings only, unless -v or RUST_LOG asks for more.
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
        .format_target(false)
        .init();
}
