//! `cargo xtask test`: everything CI checks, from a fresh machine.
//!
//! Installs the system packages the tests need, builds the BPF object, the
//! static release agent (`cargo xtask dist`) and its image (`cargo xtask
//! image`), checks formatting and lints (host and BPF crates), and runs
//! every test: unit tests and the privileged end-to-end tests that load BPF
//! into the kernel and compare the agent with the runtimes' own logs.
//!
//! The end-to-end tests run the static agent, the file users deploy (alone
//! or in the image), so CI builds the agent once; `cargo xtask demo` and
//! `bench` build the glibc one (`cargo xtask dist --compare` measures the
//! two against each other).
//! Without a filter it then runs each fuzz target for [`FUZZ_SECONDS`] and
//! ends with `bench --quick` as a smoke test.

use std::process::Command;

use anyhow::{Result, bail};
use clap::Args;

use super::build;
use crate::util::{self, cargo, ensure_debian_packages, is_root, step, workspace_root};

/// Options of `cargo xtask test`.
#[derive(Args)]
pub struct TestArgs {
    /// Skip `cargo fmt --check` and clippy (for quick local iterations).
    #[arg(long)]
    pub no_lint: bool,
    /// Only run tests whose name contains this text (passed to cargo test).
    pub filter: Option<String>,
}

/// System packages the tests use.
const PACKAGES: &[&str] = &[
    "openjdk-17-jdk-headless",
    "bpftool",
    "prometheus",
    "util-linux",
    // /usr/bin/python3.11, with USDT probes (e2e_cpython).
    "python3.11-minimal",
    // `setproctitle` for Python 3.11: a program that renames itself (e2e_exec_names).
    "python3-setproctitle",
    // /usr/bin/node (e2e_v8). Debian 12's is Node 18 with V8 in libnode.so;
    // an installed NodeSource or nodejs.org `nodejs` package satisfies it too.
    "nodejs",
    // /usr/bin/ruby3.1 and libruby-3.1.so, with USDT probes (e2e_ruby).
    "ruby3.1",
    // Go toolchains of the Go end-to-end tests: Debian's default (1.19) and,
    // from bookworm-backports, 1.21 to 1.23 (1.24 to 1.27 come from PyPI,
    // see xtask/src/goworkload.rs); a C toolchain for the cgo builds.
    "golang-go",
    "golang-1.21-go",
    "golang-1.22-go",
    "golang-1.23-go",
    "gcc",
    "libc6-dev",
    // The hardening tests map runtime libraries from a small python3 script.
    "python3",
    // readelf: the independent reading that the probe parsers' tests on
    // installed runtime files are compared with.
    "binutils",
    // The container tests (e2e_containers): podman with runc, as Debian
    // ships them (crun refuses this host's hybrid cgroup layout).
    "podman",
    "runc",
];

/// How long `cargo xtask test` runs each fuzz target.
const FUZZ_SECONDS: u64 = 10;

/// Runs `cargo xtask test`.
pub fn run(args: TestArgs) -> Result<()> {
    if !is_root() {
        bail!(
            "the end-to-end tests load BPF programs into the kernel and need root: \
             run `sudo -E cargo xtask test`"
        );
    }
    step("checking system packages");
    util::ensure_bookworm_backports()?;
    ensure_debian_packages(PACKAGES)?;
    let agent = super::dist::build_static()?;
    let object = build::ebpf_object();
    let engine = super::image::find_engine()?;
    let image = super::image::image_name(None);
    super::image::build_image(engine, &agent, &image)?;
    let root = workspace_root();

    if !args.no_lint {
        step("cargo fmt --check (host crates and BPF crate)");
        util::run(cargo().args(["fmt", "--all", "--check"]))?;
        util::run(
            Command::new("cargo")
                .current_dir(root.join("ebpf"))
                .args(["+nightly", "fmt", "--check"])
                .env_remove("RUSTUP_TOOLCHAIN"),
        )?;
        step("cargo clippy -D warnings (host crates)");
        util::run(
            cargo()
                .args([
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ])
                .env("PAUSEWATCH_EBPF_OBJECT", &object),
        )?;
    }

    step("cargo test (unit, integration and end-to-end tests; the BPF ones run one at a time)");
    let mut test = cargo();
    test.args(["test", "--workspace", "--no-fail-fast"])
        .env("PAUSEWATCH_EBPF_OBJECT", &object)
        .env("PAUSEWATCH_AGENT", &agent)
        .env(super::image::IMAGE_ENV, &image);
    if let Some(f) = &args.filter {
        test.arg(f);
    }
    util::run(&mut test)?;
    // A filtered run is a quick local iteration; the full run also fuzzes
    // and smoke-tests the benchmark machinery.
    if args.filter.is_none() {
        super::fuzz::run_fuzz(super::fuzz::FuzzArgs {
            seconds: FUZZ_SECONDS,
            target: None,
        })?;
        // Every figure must be producible here; the numbers go to
        // target/bench, nothing is asserted.
        step("cargo xtask bench --quick (smoke test, no thresholds)");
        super::bench::run(super::bench::BenchArgs {
            quick: true,
            only: None,
            targets: Vec::new(),
            agent: Some(agent.clone()),
        })?;
    }
    step("all tests passed");
    Ok(())
}
