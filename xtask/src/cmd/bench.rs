//! `cargo xtask bench`: measures the agent on this machine and writes a
//! Markdown report and a JSON file (`target/bench/report.{md,json}`) with
//! every figure (min, median, max over repetitions) and how it was measured.
//! Numbers are reported, never asserted: CI runs `--quick` as a smoke test.
//!
//! The parts, in run order: per-event cost against the empty-program floor,
//! bpftrace and BCC ([`usdt`]); ring-buffer capacity ([`usdt`]); the pause
//! anatomy's cost per context switch ([`switches`]); exec to traced in the
//! follow modes ([`exec`]); overhead on real runtimes ([`runtimes`]);
//! start-up and footprint ([`footprint`]); accuracy against HotSpot's log
//! ([`accuracy`]); the memory-pool probes' cost per collection ([`heap`]).

mod accuracy;
mod exec;
mod footprint;
mod heap;
// Shared with `cargo xtask dist --compare`.
pub(crate) mod procs;
mod report;
mod runtimes;
mod switches;
mod tools;
pub(crate) mod usdt;

use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;

use super::build;
use crate::util::{ensure_debian_packages, is_root, step};
use report::Report;

/// Options of `cargo xtask bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Fewer repetitions and shorter runs, without BCC (a few minutes; used
    /// by CI).
    #[arg(long)]
    pub quick: bool,
    /// Run only this part and print its figures, without writing the
    /// report (for iterating on one part): per-event, capacity, switches,
    /// exec, overhead, start-up, footprint, accuracy or heap.
    #[arg(long, value_name = "PART", value_parser = PARTS)]
    pub only: Option<String>,
    /// Numbers of JVMs the footprint part traces, instead of the plan's
    /// (1,10,50,100; quick: 1,5), e.g. `--targets 100` with `--only
    /// footprint` to measure only the 100-JVM node.
    #[arg(long, value_name = "N,N,...", value_delimiter = ',')]
    pub targets: Vec<usize>,
    /// Measure this agent binary instead of building the release agent
    /// (`cargo xtask test` passes the static agent it tested, so that CI
    /// builds the agent once).
    #[arg(long, value_name = "PATH")]
    pub agent: Option<std::path::PathBuf>,
}

/// The parts of a run, in run order, for `--only`.
const PARTS: [&str; 9] = [
    "per-event",
    "capacity",
    "switches",
    "exec",
    "overhead",
    "start-up",
    "footprint",
    "accuracy",
    "heap",
];

/// System packages the bench needs (BCC's are installed by
/// [`tools::Bcc::setup`], whose failure is reported rather than fatal).
pub const PACKAGES: &[&str] = &[
    "gcc",
    "libc6-dev",
    "systemtap-sdt-dev",
    "bpftrace",
    // bpftool: the kernel's run-time statistics of the scheduler programs.
    "bpftool",
    "openjdk-17-jdk-headless",
    // The runtime overhead runs (`runtimes`): Go 1.23 from
    // bookworm-backports, CPython 3.11 and Node.js; a C toolchain for cgo.
    "golang-1.23-go",
    "python3.11-minimal",
    "nodejs",
];

/// Sizes of one run.
pub struct Plan {
    /// Rounds of the per-event comparison and runs of the start-up timing.
    pub reps: usize,
    /// Pairs per per-event batch.
    pub pairs: u64,
    /// Paced rates (pairs/s) of the capacity ladder, ascending.
    pub rates: Vec<u64>,
    /// Seconds per capacity step.
    pub rate_secs: u64,
    /// Pairs of the final, unpaced capacity step.
    pub unpaced_pairs: u64,
    /// Processes of each program for exec to traced (the JVM only from 10).
    pub exec_runs: usize,
    /// Alternating with/without pairs of the runtime overhead runs.
    pub overhead_reps: usize,
    /// Seconds of each overhead run.
    pub overhead_secs: u64,
    /// Numbers of traced JVMs for the footprint.
    pub target_counts: Vec<usize>,
    /// Seconds of each footprint window.
    pub footprint_secs: u64,
    /// Seconds of the accuracy run.
    pub accuracy_secs: u64,
    /// Seconds of GcHeavy's heavy phase in the heap run.
    pub heap_secs: u64,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                reps: 3,
                pairs: 200_000,
                rates: vec![10_000, 50_000, 100_000, 200_000],
                rate_secs: 1,
                unpaced_pairs: 1_000_000,
                exec_runs: 4,
                // A smoke test: one pair per runtime, and two target counts
                // (the second one exercises the multi-target paths).
                overhead_reps: 1,
                overhead_secs: 5,
                target_counts: vec![1, 5],
                footprint_secs: 4,
                accuracy_secs: 6,
                heap_secs: 3,
            }
        } else {
            Plan {
                reps: 10,
                pairs: 1_000_000,
                rates: vec![10_000, 20_000, 50_000, 100_000, 200_000, 300_000],
                rate_secs: 3,
                unpaced_pairs: 3_000_000,
                exec_runs: 20,
                overhead_reps: 6,
                overhead_secs: 15,
                target_counts: vec![1, 10, 50, 100],
                footprint_secs: 45,
                accuracy_secs: 30,
                heap_secs: 15,
            }
        }
    }
}

/// Runs the benchmarks.
pub fn run(args: BenchArgs) -> Result<()> {
    if !is_root() {
        bail!("the benchmarks load BPF programs and need root: run `sudo -E cargo xtask bench`");
    }
    let started = Instant::now();
    let mut plan = Plan::new(args.quick);
    if !args.targets.is_empty() {
        plan.target_counts = args.targets.clone();
    }
    step("checking system packages");
    crate::util::ensure_bookworm_backports()?;
    ensure_debian_packages(PACKAGES)?;
    let mut report = Report::default();
    let agent = match &args.agent {
        Some(given) => {
            if !given.is_file() {
                bail!("--agent {}: no such file", given.display());
            }
            report.note(format!(
                "measured agent: {} (given with --agent), not a fresh release build",
                given.display()
            ));
            given.clone()
        }
        None => build::build_all()?,
    };
    // BCC is a third comparison beside bpftrace, and its set-up installs
    // kernel headers: the quick run (CI's smoke test) leaves it out.
    let bcc = if args.quick {
        report.note("BCC is left out of quick runs; the full bench compares it too");
        None
    } else {
        match tools::Bcc::setup() {
            Ok(b) => Some(b),
            Err(e) => {
                report.note(format!(
                    "BCC does not run on this machine, so it is left out of the comparison: {e:#}"
                ));
                None
            }
        }
    };
    let dir = usdt::build()?;

    let runs = |part: &str| args.only.as_deref().is_none_or(|only| only == part);
    if runs("per-event") {
        usdt::per_event(&plan, &agent, &dir, bcc.as_ref(), &mut report)?;
    }
    if runs("capacity") {
        usdt::capacity(&plan, &agent, &dir, &mut report)?;
    }
    if runs("switches") {
        switches::switches(&plan, &agent, &mut report)?;
    }
    if runs("exec") {
        exec::exec_to_traced(&plan, &agent, &mut report)?;
    }
    if runs("overhead") {
        runtimes::overhead(&plan, &agent, &mut report)?;
    }
    if runs("start-up") {
        footprint::start_up(&plan, &agent, bcc.as_ref(), &mut report)?;
    }
    if runs("footprint") {
        footprint::targets(&plan, &agent, &mut report)?;
    }
    if runs("accuracy") {
        accuracy::accuracy(&plan, &agent, &mut report)?;
    }
    if runs("heap") {
        heap::heap(&plan, &agent, &dir, &mut report)?;
    }
    if args.only.is_some() {
        step("--only: the report files are left as they were");
        return Ok(());
    }
    report.write(args.quick, started.elapsed().as_secs_f64())
}
