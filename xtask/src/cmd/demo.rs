//! `cargo xtask demo`: the main job on a bundled workload. Builds the agent,
//! starts a GC-heavy JVM and traces it live until Ctrl-C or `--duration`.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use clap::Args;

use super::build;
use crate::util::{is_root, step};
use xtask::workloads::JavaWorkload;

/// Options of `cargo xtask demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// JDK major version to run the workload on (17 or 25 here).
    #[arg(long, default_value_t = 17)]
    pub jdk: u32,
    /// Address the agent serves /metrics on.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub listen: String,
    /// Also print one JSON line per pause.
    #[arg(long)]
    pub events: bool,
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> Result<()> {
    if !is_root() {
        bail!(
            "the demo loads BPF programs into the kernel and needs root: run `sudo -E cargo xtask demo`"
        );
    }
    let agent = build::build_all()?;

    step(format!(
        "starting the demo JVM (JDK {}, G1, 256 MB heap, ~200 MB/s allocation, a thread dump every 500 ms, System.gc() every 10 s)",
        args.jdk
    ));
    let mut java = JavaWorkload::jdk(args.jdk)?
        .duration_secs(0)
        .stack_traces_every_ms(500)
        .system_gc_every_ms(10_000)
        .spawn()
        .context("cannot start the demo JVM")?;
    java.wait_ready(Duration::from_secs(30))?;
    let pid = java.pid();

    step(format!(
        "tracing pid {pid} with `{} run --pid {pid}`; scrape http://{}/metrics while it runs; Ctrl-C stops it",
        agent.display(),
        args.listen
    ));
    let mut cmd = Command::new(&agent);
    cmd.args([
        "run",
        "--pid",
        &pid.to_string(),
        "--listen",
        &args.listen,
        "--summary",
        "5",
    ])
    .stdin(Stdio::null());
    if let Some(d) = args.duration {
        cmd.args(["--duration", &d.to_string()]);
    }
    if args.events {
        cmd.arg("--events");
    }
    // Ctrl-C reaches the agent too (same process group); xtask itself must
    // survive it to stop the JVM afterwards.
    ignore_sigint();
    let status = cmd.status().context("cannot start the agent")?;
    step("stopping the demo JVM");
    java.stop()?;
    if java.wait(Duration::from_secs(10)).is_err() {
        java.kill()?;
    }
    if !status.success() {
        bail!("the agent exited with {status}");
    }
    Ok(())
}

fn ignore_sigint() {
    // SAFETY: installing SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
}
