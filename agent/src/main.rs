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
        Command::Check => check(),
        Command::Rules(cmd) => pausewatch::rules_cmd::run(cmd),
        Command::BenchAttach(args) => pausewatch::bench_attach::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that stopped early (`agent probes --pid N | head`) is
        // not a failure, as for every Unix filter.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes as one line, leaving out a cause whose text the
/// line already holds (many messages include their cause).
fn one_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

/// Prints every check; fails if a required one failed.
fn check() -> anyhow::Result<()> {
    let checks = pausewatch::check::run_checks();
    for c in &checks {
        println!("{c}");
    }
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| c.status == pausewatch::check::Status::Fail)
        .map(|c| c.name)
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "this host cannot run the agent: {} failed (see the FAIL lines above)",
            failed.join(", ")
        )
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
