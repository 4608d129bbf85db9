//! Overhead on real runtimes: a workload's throughput with and without the
//! agent attached, in alternating repetitions.
//!
//! Each runtime is one entry of [`WORKLOADS`]: a name, a target, and a
//! function that starts its workload held at a gate (the Go workload has
//! none: the agent attaches right after it starts). Adding a runtime is
//! adding an entry; nothing else here changes.

use std::{path::Path, time::Duration};

use anyhow::{Context, Result, bail};

use super::{
    Plan,
    procs::{Tracer, free_port, is_zombie, metric_sum, process_cpu_secs, run_args, scrape},
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
    /// Waits for the end of the measured phase; returns the operations done
    /// and the CPU seconds the workload's process spent in that phase
    /// (uprobe traps are charged to the traced threads, so ops per CPU
    /// second shows the tracer's cost even when other load on the machine
    /// makes wall-clock throughput noisy).
    fn wait_ops(&mut self, timeout: Duration) -> Result<(u64, f64)>;
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
pub const WORKLOADS: &[RuntimeWorkload] = &[
    RuntimeWorkload {
        name: "hotspot_gcheavy",
        description: "GcHeavy on JDK 17: one worker allocating as fast as it can (ops = allocations), \
                  G1 with a 16 MB young generation (a young GC every few ms), \
                  Thread.getAllStackTraces() every 5 ms (a ThreadDump safepoint); hundreds of \
                  safepoints per second",
        target: Some(("< 1%", 1.0)),
        start: start_gcheavy,
    },
    RuntimeWorkload {
        name: "go_gcload",
        description: "xtask/workloads/go built with Go 1.23: one goroutine building and checking \
                  linked lists (ops = rounds), a 16 MB live heap, GC tens of times per second \
                  and runtime.ReadMemStats every 100 ms (two kinds of stop-the-world)",
        target: Some(("< 1%", 1.0)),
        start: start_go,
    },
    RuntimeWorkload {
        name: "cpython_gc_cycles",
        description: "xtask/workloads/python/gc_cycles.py on /usr/bin/python3.11: reference cycles \
                  at a steady rate, collections of every generation (ops = rounds)",
        target: Some(("< 2%", 2.0)),
        start: start_python,
    },
    RuntimeWorkload {
        name: "v8_gc_alloc",
        description: "xtask/workloads/node/gc_alloc.js on /usr/bin/node: short-lived objects \
                  (scavenges) and a rolling old generation (mark-compacts) (ops = rounds)",
        target: Some(("< 2%", 2.0)),
        start: start_node,
    },
];

/// The Go workload has no gate: it runs from its start, so the agent is
/// attached right after its `ready` line (armed in tens of ms of a run of
/// several seconds) and ops are its own rounds/s over the whole run.
fn start_go(secs: u64) -> Result<Box<dyn GatedWorkload>> {
    let binary = xtask::goworkload::build_gcload("1.23", false)?;
    let mut child = std::process::Command::new(binary)
        .arg(format!("-duration={secs}s"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting the Go workload")?;
    let stdout = child.stdout.take().context("piped stdout")?;
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    match lines.next() {
        Some(Ok(l)) if l.starts_with("ready") => {}
        other => bail!("the Go workload did not say ready: {other:?}"),
    }
    let pid = child.id();
    Ok(Box::new(GoRun {
        child,
        lines: Box::new(lines),
        cpu_at_gate: process_cpu_secs(pid)?,
    }))
}

struct GoRun {
    child: std::process::Child,
    lines: Box<dyn Iterator<Item = std::io::Result<String>>>,
    cpu_at_gate: f64,
}

impl GatedWorkload for GoRun {
    fn pid(&self) -> u32 {
        self.child.id()
    }
    fn open_gate(&mut self) -> Result<()> {
        Ok(())
    }
    fn wait_ops(&mut self, _timeout: Duration) -> Result<(u64, f64)> {
        let pid = self.child.id();
        let mut rounds = None;
        for line in self.lines.by_ref() {
            let line = line.context("reading the Go workload's output")?;
            if let Some(n) = line.strip_prefix("rounds=") {
                rounds = n.trim().parse().ok();
            }
            if line.starts_with("checksum=") {
                break;
            }
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !is_zombie(pid) {
            if std::time::Instant::now() > deadline {
                bail!("the Go workload {pid} did not exit");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let cpu = process_cpu_secs(pid)? - self.cpu_at_gate;
        let status = self.child.wait()?;
        if !status.success() {
            bail!("the Go workload exited {status}");
        }
        Ok((rounds.context("the Go workload printed no rounds=")?, cpu))
    }
}

fn start_python(secs: u64) -> Result<Box<dyn GatedWorkload>> {
    let script = xtask::scripted::workload_path("python/gc_cycles.py");
    start_script(
        Path::new("/usr/bin/python3.11"),
        vec![script.display().to_string(), secs.to_string()],
    )
}

fn start_node(secs: u64) -> Result<Box<dyn GatedWorkload>> {
    let script = xtask::scripted::workload_path("node/gc_alloc.js");
    start_script(
        Path::new("/usr/bin/node"),
        vec![
            "--expose-gc".to_string(),
            "--no-memory-reducer".to_string(),
            script.display().to_string(),
            secs.to_string(),
        ],
    )
}

/// A script of `xtask/workloads` speaking the gate protocol of
/// `xtask::scripted` (ready, a line on stdin, `done {json}` with `rounds`).
fn start_script(program: &Path, args: Vec<String>) -> Result<Box<dyn GatedWorkload>> {
    let mut w = xtask::scripted::ScriptWorkload::spawn(program, &args)?;
    w.wait_ready(Duration::from_secs(30))?;
    Ok(Box::new(GatedScript {
        w,
        cpu_at_gate: 0.0,
    }))
}

struct GatedScript {
    w: xtask::scripted::ScriptWorkload,
    cpu_at_gate: f64,
}

impl GatedWorkload for GatedScript {
    fn pid(&self) -> u32 {
        self.w.pid()
    }
    fn open_gate(&mut self) -> Result<()> {
        self.cpu_at_gate = process_cpu_secs(self.w.pid())?;
        self.w.go()
    }
    fn wait_ops(&mut self, timeout: Duration) -> Result<(u64, f64)> {
        let json = self.w.wait_done(timeout)?;
        // The script waits for stdin to close after `done`: its CPU time
        // is read while it idles there.
        let cpu = process_cpu_secs(self.w.pid())? - self.cpu_at_gate;
        let v: serde_json::Value =
            serde_json::from_str(&json).with_context(|| format!("bad done line {json:?}"))?;
        let rounds = v["rounds"]
            .as_u64()
            .with_context(|| format!("no rounds in {json:?}"))?;
        self.w.finish(Duration::from_secs(30))?;
        Ok((rounds, cpu))
    }
}

fn start_gcheavy(secs: u64) -> Result<Box<dyn GatedWorkload>> {
    let mut jvm = JavaWorkload::jdk(17)?
        .duration_secs(secs)
        .gate(true)
        .alloc_mb_per_sec(100_000)
        .stack_traces_every_ms(5)
        .spawn()?;
    jvm.wait_ready(Duration::from_secs(60))?;
    Ok(Box::new(GatedJava {
        jvm,
        cpu_at_gate: 0.0,
    }))
}

struct GatedJava {
    jvm: RunningJava,
    cpu_at_gate: f64,
}

impl GatedWorkload for GatedJava {
    fn pid(&self) -> u32 {
        self.jvm.pid()
    }
    fn open_gate(&mut self) -> Result<()> {
        self.cpu_at_gate = process_cpu_secs(self.jvm.pid())?;
        self.jvm.open_gate()?;
        self.jvm.wait_started(Duration::from_secs(30))?;
        Ok(())
    }
    fn wait_ops(&mut self, timeout: Duration) -> Result<(u64, f64)> {
        let pid = self.jvm.pid();
        let (_, line) = self.jvm.wait_for_line("done", timeout)?;
        let ops = line
            .strip_prefix("done ")
            .and_then(|n| n.trim().parse().ok())
            .with_context(|| format!("bad done line {line:?}"))?;
        // Read the total while the JVM is a zombie: after its last thread
        // and before it is reaped.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !is_zombie(pid) {
            if std::time::Instant::now() > deadline {
                bail!("JVM {pid} printed {line:?} but did not exit within 30 s");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let cpu = process_cpu_secs(pid)? - self.cpu_at_gate;
        let status = self.jvm.wait(Duration::from_secs(10))?;
        if !status.success() {
            bail!("JVM {pid} exited {status}: {}", self.jvm.stderr_text());
        }
        Ok((ops, cpu))
    }
}

/// What one measured phase gave.
struct RunResult {
    ops_per_sec: f64,
    ops_per_cpu_sec: f64,
    /// Traced runs: begin/end probe pairs the agent timed (the `_count` of
    /// every histogram family that has probes of its own).
    pairs: Option<f64>,
}

/// The histogram families whose every observation is one begin/end probe
/// pair (time to safepoint is derived from the safepoint's own pair).
const PAIRED_FAMILIES: [&str; 3] = [
    "pausewatch_pause_seconds_count",
    "pausewatch_vm_operation_seconds_count",
    "pausewatch_gc_concurrent_cycle_seconds_count",
];

/// Runs one measured phase.
fn one_run(w: &RuntimeWorkload, secs: u64, agent: Option<&Path>) -> Result<RunResult> {
    let mut load = (w.start)(secs)?;
    let tracer = match agent {
        Some(agent) => {
            let port = free_port()?;
            let mut t = Tracer::agent(agent, &run_args(&[load.pid()], port, &[]))?;
            t.wait_armed(Duration::from_secs(60))?;
            Some((t, format!("127.0.0.1:{port}")))
        }
        None => None,
    };
    load.open_gate()?;
    let (ops, cpu) = load.wait_ops(Duration::from_secs(secs + 60))?;
    let mut pairs = None;
    if let Some((t, addr)) = tracer {
        // The snapshot is at most one --interval old: the last second's
        // pauses may be missing, which only lowers the estimate below.
        let text = scrape(&addr)?;
        pairs = Some(
            PAIRED_FAMILIES
                .iter()
                .map(|name| metric_sum(&text, name, ""))
                .sum(),
        );
        t.stop()?;
    }
    if ops == 0 || cpu <= 0.0 {
        bail!("{} reported {ops} operations in {cpu} CPU seconds", w.name);
    }
    Ok(RunResult {
        ops_per_sec: ops as f64 / secs as f64,
        ops_per_cpu_sec: ops as f64 / cpu,
        pairs,
    })
}

/// Throughput with and without the agent for every workload.
pub fn overhead(plan: &Plan, agent: &Path, report: &mut Report) -> Result<()> {
    // What the per-event stage measured for one timed pair, traps included.
    let pair_cost_ns = report.get("per_event_pausewatch").map(|f| f.median);
    for w in WORKLOADS {
        step(format!(
            "overhead on {}: {} alternating pairs of {} s runs, without and with the agent",
            w.name, plan.overhead_reps, plan.overhead_secs
        ));
        let mut loss = Vec::new();
        let mut cpu_loss = Vec::new();
        let mut trap_share = Vec::new();
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
            let mut per_cpu = [0.0; 2];
            for traced in order {
                let run = one_run(w, plan.overhead_secs, traced.then_some(agent))
                    .with_context(|| format!("{} run {}", w.name, rep + 1))?;
                pair[usize::from(traced)] = run.ops_per_sec;
                per_cpu[usize::from(traced)] = run.ops_per_cpu_sec;
                if let (Some(pairs), Some(ns)) = (run.pairs, pair_cost_ns) {
                    trap_share.push(pairs * ns / (plan.overhead_secs as f64 * 1e9) * 100.0);
                }
            }
            eprintln!(
                "    rep {}: {:.0} ops/s without, {:.0} with; {:.0} ops/CPU-s without, {:.0} with",
                rep + 1,
                pair[0],
                pair[1],
                per_cpu[0],
                per_cpu[1]
            );
            cpu_loss.push((per_cpu[0] - per_cpu[1]) / per_cpu[0] * 100.0);
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
        let mut f = Figure::new(
            format!("overhead_{}_per_cpu", w.name),
            "% ops per CPU-second lost",
            cpu_loss,
            format!(
                "per pair, the same as overhead_{} but on operations per CPU second of the workload's \
                 process (utime+stime from /proc/PID/stat, gate to exit): uprobe traps are charged to \
                 the traced threads, and this ratio is far less sensitive than wall-clock throughput to \
                 other load competing for the cores. The agent's own CPU is not in it (see agent_cpu_*)",
                w.name
            ),
        )?;
        if let Some((text, limit)) = w.target {
            f = f.target(text, limit, true);
        }
        let cpu_median = f.median;
        let cpu_missed = f.met == Some(false);
        report.push(f);
        let estimate = match Figure::new(
            format!("overhead_{}_probe_estimate", w.name),
            "% of wall time",
            trap_share,
            format!(
                "per traced run, the begin/end pairs the agent timed (the _count of every histogram \
                 family with probes of its own, scraped at the end of the run) times \
                 per_event_pausewatch (one pair's cost with its traps, from the per-event stage), \
                 over the run's wall time: the time the probes add to the traced threads (most \
                 of it inside the pauses, where every application thread waits). A \
                 lower bound: probes that only name a cause (Go 1.19 reason strings, V8's \
                 collector) are not counted. {method}"
            ),
        ) {
            Ok(f) => {
                let median = f.median;
                report.push(f);
                Some(median)
            }
            Err(_) => None,
        };
        if missed || cpu_missed {
            let cause = match estimate {
                Some(e) if e < 0.5 * median.max(cpu_median) => format!(
                    "The probes themselves account for about {e:.2}% (overhead_{}_probe_estimate), \
                     so most of the median is run-to-run noise, which the min..max spread of the \
                     pairs shows; on 2 shared cores the agent's own CPU (agent_cpu_*) also \
                     competes with the workload.",
                    w.name
                ),
                Some(e) => format!(
                    "The probes account for about {e:.2}% (overhead_{}_probe_estimate): the \
                     runtime pauses so often that the uprobe traps themselves cost this much.",
                    w.name
                ),
                None => {
                    "The per-event stage did not run, so the probes' share is not known.".to_owned()
                }
            };
            report.note(format!(
                "overhead on {} MISSES its target: median {median:.2}% wall-clock throughput lost, \
                 {cpu_median:.2}% ops per CPU-second lost. {cause}",
                w.name
            ));
        }
    }
    Ok(())
}
