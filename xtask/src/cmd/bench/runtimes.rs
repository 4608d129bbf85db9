//! Overhead on real runtimes: a workload's throughput with and without the
//! agent attached, in alternating repetitions.
//!
//! Each runtime is one entry of [`WORKLOADS`]: a name, a target, and a
//! function that starts its workload held at a gate. Adding a runtime (Go,
//! CPython, Node) is adding an entry; nothing else here changes.

use std::{path::Path, time::Duration};

use anyhow::{Context, Result, bail};

use super::{
    Plan,
    procs::{Tracer, free_port, run_args},
    report::{Figure, Report},
};
use crate::util::step;
use xtask::workloads::{JavaWorkload, RunningJava};

/// A workload started at its gate: the bench attaches (or not), opens the
/// gate and waits for the result.
pub trait GatedWorkload {
    /// The process to trace.
    fn pid(&self) -> u32;
    /// Starts the measured phase.
    fn open_gate(&mut self) -> Result<()>;
    /// Waits for the end of the measured phase; returns the operations done.
    fn wait_ops(&mut self, timeout: Duration) -> Result<u64>;
}

/// One runtime's overhead benchmark.
pub struct RuntimeWorkload {
    /// Figure name suffix, e.g. `hotspot_gcheavy`.
    pub name: &'static str,
    /// What runs, for the report.
    pub description: &'static str,
    /// Target on the throughput loss in percent (text, limit), if any.
    pub target: Option<(&'static str, f64)>,
    /// Starts the workload for a measured phase of `secs` seconds.
    pub start: fn(secs: u64) -> Result<Box<dyn GatedWorkload>>,
}

/// The workloads measured, one per runtime.
pub const WORKLOADS: &[RuntimeWorkload] = &[RuntimeWorkload {
    name: "hotspot_gcheavy",
    description: "GcHeavy on JDK 17: one worker allocating as fast as it can (ops = allocations), \
                  G1 with a 16 MB young generation (a young GC every few ms), \
                  Thread.getAllStackTraces() every 5 ms (a ThreadDump safepoint); hundreds of \
                  safepoints per second",
    target: Some(("< 1%", 1.0)),
    start: start_gcheavy,
}];

fn start_gcheavy(secs: u64) -> Result<Box<dyn GatedWorkload>> {
    let mut jvm = JavaWorkload::jdk(17)?
        .duration_secs(secs)
        .gate(true)
        .alloc_mb_per_sec(100_000)
        .stack_traces_every_ms(5)
        .spawn()?;
    jvm.wait_ready(Duration::from_secs(60))?;
    Ok(Box::new(GatedJava(jvm)))
}

struct GatedJava(RunningJava);

impl GatedWorkload for GatedJava {
    fn pid(&self) -> u32 {
        self.0.pid()
    }
    fn open_gate(&mut self) -> Result<()> {
        self.0.open_gate()?;
        self.0.wait_started(Duration::from_secs(30))?;
        Ok(())
    }
    fn wait_ops(&mut self, timeout: Duration) -> Result<u64> {
        self.0.wait_done(timeout)
    }
}

/// Runs one measured phase; returns ops per second.
fn one_run(w: &RuntimeWorkload, secs: u64, agent: Option<&Path>) -> Result<f64> {
    let mut load = (w.start)(secs)?;
    let tracer = match agent {
        Some(agent) => {
            let port = free_port()?;
            let mut t = Tracer::agent(agent, &run_args(&[load.pid()], port, &[]))?;
            t.wait_armed(Duration::from_secs(60))?;
            Some(t)
        }
        None => None,
    };
    load.open_gate()?;
    let ops = load.wait_ops(Duration::from_secs(secs + 60))?;
    if let Some(t) = tracer {
        t.stop()?;
    }
    if ops == 0 {
        bail!("{} reported 0 operations", w.name);
    }
    Ok(ops as f64 / secs as f64)
}

/// Throughput with and without the agent for every workload.
pub fn overhead(plan: &Plan, agent: &Path, report: &mut Report) -> Result<()> {
    for w in WORKLOADS {
        step(format!(
            "overhead on {}: {} alternating pairs of {} s runs, without and with the agent",
            w.name, plan.overhead_reps, plan.overhead_secs
        ));
        let mut loss = Vec::new();
        let mut without = Vec::new();
        let mut with = Vec::new();
        for rep in 0..plan.overhead_reps {
            // Alternate which run goes first, so drift (thermal, other load)
            // does not always favour one side.
            let order = if rep % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            let mut pair = [0.0; 2];
            for traced in order {
                let ops = one_run(w, plan.overhead_secs, traced.then_some(agent))
                    .with_context(|| format!("{} run {}", w.name, rep + 1))?;
                pair[usize::from(traced)] = ops;
            }
            eprintln!(
                "    rep {}: {:.0} ops/s without, {:.0} with",
                rep + 1,
                pair[0],
                pair[1]
            );
            without.push(pair[0]);
            with.push(pair[1]);
            loss.push((pair[0] - pair[1]) / pair[0] * 100.0);
        }
        let method = format!(
            "{}. {} pairs of {} s runs, each pair one run without and one with `agent run --pid` \
             (attached at the gate, before the measured phase), the order alternating between pairs",
            w.description, plan.overhead_reps, plan.overhead_secs
        );
        report.push(Figure::new(
            format!("throughput_{}_without_agent", w.name),
            "ops/s",
            without,
            method.clone(),
        )?);
        report.push(Figure::new(
            format!("throughput_{}_with_agent", w.name),
            "ops/s",
            with,
            method.clone(),
        )?);
        let mut f = Figure::new(
            format!("overhead_{}", w.name),
            "% throughput lost",
            loss,
            format!(
                "per pair, (without - with) / without; negative means the traced run was faster (noise). {method}"
            ),
        )?;
        if let Some((text, limit)) = w.target {
            f = f.target(text, limit, true);
        }
        let missed = f.met == Some(false);
        let median = f.median;
        report.push(f);
        if missed {
            report.note(format!(
                "overhead on {} MISSES its target: median {median:.2}% throughput lost. \
                 On 2 shared cores the agent's own CPU time competes with the workload, and \
                 each safepoint costs 4-6 uprobe hits (2-10 µs each here) on the VM thread.",
                w.name
            ));
        }
    }
    Ok(())
}
