//! `agent bench-attach` (hidden, for `cargo xtask bench` only): attaches the
//! object's empty program `bench_empty` at every probe point `agent run`
//! would attach to in a process (and, with `--sched`, empty programs on the
//! anatomy's scheduler tracepoints), and holds them until SIGINT or SIGTERM.
//!
//! The per-event cost benchmark compares `agent run` against this: same
//! attach points, same uprobe machinery, no work in the program, so the
//! difference is what pausewatch's own programs cost per probe hit.

use std::time::Instant;

use anyhow::{Context, Result};
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    bpf::{Tracer, loader::LoadOptions},
    cli::BenchAttachArgs,
    discovery::{self, ProgramArg},
    preflight,
};

/// The empty program of `ebpf/src/bench.rs`.
const EMPTY_PROGRAM: &str = "bench_empty";

/// Runs `agent bench-attach`.
pub fn run(args: BenchAttachArgs) -> Result<()> {
    let started = Instant::now();
    preflight::require_privileges()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut sigint =
            signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
        let mut sigterm =
            signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
        let (mut tracer, _maps) = Tracer::load(LoadOptions::default())?;
        let mut armed = Vec::new();
        if args.sched {
            tracer
                .attach_sched_floor()
                .context("cannot attach the empty scheduler programs")?;
            armed.push("empty programs on sched_switch and sched_waking".to_string());
        }
        if let Some(pid) = args.pid {
            let mut target = discovery::detect(pid)?;
            for probe in &mut target.probes {
                probe.program = EMPTY_PROGRAM;
                probe.arg = ProgramArg::None;
            }
            let attached = tracer.attach(&target)?;
            armed.push(format!("{} empty probes on pid {pid}", attached.len()));
        }
        eprintln!(
            "pausewatch bench-attach: {}, armed in {:.0} ms",
            armed.join(", "),
            started.elapsed().as_secs_f64() * 1e3
        );
        tokio::select! {
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
        }
        Ok(())
    })
}
