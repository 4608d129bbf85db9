//! `cargo xtask`: one entry point for building, demoing, testing and
//! benchmarking pausewatch on a fresh machine, with nothing done by hand.

mod cmd;
use xtask::util;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Build, run, test and bench automation for pausewatch.
#[derive(Parser)]
#[command(name = "cargo xtask", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what the BPF build needs (nightly rust-src, bpf-linker built
    /// against the nightly toolchain's own LLVM, into ./.tools) and build the
    /// BPF object.
    BuildEbpf,
    /// Build the BPF object and the release agent at target/release/agent.
    Build,
    /// Build the release artifact: a statically linked agent
    /// (x86_64-unknown-linux-musl) at target/dist/agent, with its sha256.
    Dist(cmd::dist::DistArgs),
    /// Build the static agent and an OCI image with it (podman, buildah or
    /// a running docker); the name comes from --name or PAUSEWATCH_IMAGE.
    Image(cmd::image::ImageArgs),
    /// Build everything, start the bundled JVM workload and trace it live.
    Demo(cmd::demo::DemoArgs),
    /// Install test prerequisites, build, lint and run every test.
    Test(cmd::test::TestArgs),
    /// Run every fuzz target (fuzz/, cargo-fuzz installed into ./.tools)
    /// for a bounded time.
    Fuzz(cmd::fuzz::FuzzArgs),
    /// Measure per-event cost (vs bpftrace, BCC), capacity, overhead,
    /// footprint and accuracy; writes target/bench/report.{md,json}.
    Bench(cmd::bench::BenchArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::BuildEbpf => cmd::build::build_ebpf().map(|_| ()),
        Command::Build => cmd::build::build_all().map(|_| ()),
        Command::Dist(args) => cmd::dist::run_dist(args),
        Command::Image(args) => cmd::image::run_image(args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Test(args) => cmd::test::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Fuzz(args) => cmd::fuzz::run_fuzz(args),
    }
}
