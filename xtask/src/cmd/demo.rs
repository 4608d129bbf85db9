//! `cargo xtask demo`: placeholder until the workload helper lands.

use anyhow::Result;
use clap::Args;

/// Options of `cargo xtask demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(long)]
    pub duration: Option<f64>,
}

/// Runs the demo.
pub fn run(_args: DemoArgs) -> Result<()> {
    super::build::build_all().map(|_| ())
}
