//! Context switches under the pause anatomy: the scheduler tracepoints of
//! `ebpf/src/anatomy.rs` run on every context switch of the host, so their
//! cost is paid by every program, traced or not.
//!
//! A ping-pong of two threads pinned to one CPU, handing a byte back and
//! forth through a socket pair, makes one context switch and one wake-up
//! per hand-off and little else. Its hand-off rate is measured with no
//! agent, with empty programs on the same tracepoints (`agent bench-attach
//! --sched`, the floor of any tool there), with an agent that has the
//! anatomy on, and with one that has it off (`--no-anatomy`), alternating
//! within each round, the tracer kept off the ping-pong's CPU. The kernel's
//! own BPF run-time statistics (`kernel.bpf_stats_enabled`, read with
//! `bpftool prog show`) give the average cost of one run of each program,
//! the anatomy's and the empty ones, both when no pause is open anywhere
//! (the common case: the programs return after one array lookup) and
//! while a traced JVM pauses a third of the time.

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::{
    Plan,
    procs::{Tracer, free_port, run_args},
    report::{Figure, Report},
};
use crate::util::step;
use xtask::workloads::{JavaWorkload, RunningJava};

/// The scheduler programs whose run-time statistics are reported: the
/// anatomy's, then the empty ones of `agent bench-attach --sched`.
const PROGRAMS: [&str; 4] = [
    "anatomy_switch",
    "anatomy_waking",
    "bench_switch",
    "bench_waking",
];

/// What runs during a ping-pong batch.
#[derive(Clone, Copy)]
enum Case {
    /// Nothing attached.
    Bare,
    /// Empty programs on both scheduler tracepoints: the kernel's own
    /// dispatch cost, which any tool there pays.
    Empty,
    /// `agent run` with the anatomy on, no pause open.
    On,
    /// `agent run --no-anatomy`.
    Off,
}

impl Case {
    const ALL: [Case; 4] = [Case::Bare, Case::Empty, Case::On, Case::Off];

    fn label(self) -> &'static str {
        match self {
            Case::Bare => "no agent",
            Case::Empty => "empty programs",
            Case::On => "anatomy on",
            Case::Off => "anatomy off",
        }
    }

    /// Runs `f` with this case's tracer attached (on CPUs other than the
    /// ping-pong's).
    fn with<T>(self, agent: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let mut cmd = Command::new(agent);
        match self {
            Case::Bare => return f(),
            Case::Empty => {
                cmd.args(["bench-attach", "--sched"]);
            }
            Case::On | Case::Off => {
                let port = free_port()?;
                cmd.args([
                    "run",
                    "--comm",
                    "pw-bench-none",
                    "--summary",
                    "0",
                    "--listen",
                ])
                .arg(format!("127.0.0.1:{port}"));
                if matches!(self, Case::Off) {
                    cmd.arg("--no-anatomy");
                }
            }
        }
        // The tracer inherits this thread's CPUs: kept off the ping-pong's
        // CPU, its own threads (scans, timers) cannot take turns there, and
        // the rounds measure only the scheduler programs, which run on the
        // CPU that switches.
        let mut tracer = {
            let _off_cpu0 = Affinity::all_but_cpu0()?;
            Tracer::spawn("agent", cmd, "armed in")?
        };
        tracer.wait_armed(Duration::from_secs(60))?;
        let result = f();
        tracer.stop()?;
        result
    }
}

/// Runs the context-switch figures.
pub fn switches(plan: &Plan, agent: &Path, report: &mut Report) -> Result<()> {
    let handoffs = plan.pairs;
    step(format!(
        "context switches: {} rounds of {BATCHES} batches of {} hand-offs (no agent, empty programs, anatomy on, anatomy off)",
        plan.reps,
        handoffs / BATCHES
    ));
    // Warm up: page faults, CPU frequency.
    ping_pong(handoffs / 4)?;
    let mut samples: [Vec<f64>; 4] = Default::default();
    let mut loss = Vec::new();
    let mut over_empty = Vec::new();
    // The kernel's run-time statistics cost two clock reads per program
    // run, so they are off for the throughput rounds.
    for round in 0..plan.reps {
        let mut ns = [0.0; 4];
        for (i, case) in Case::ALL.into_iter().enumerate() {
            ns[i] = case.with(agent, || fastest(handoffs))?;
            samples[i].push(ns[i]);
        }
        loss.push((ns[2] / ns[0] - 1.0) * 100.0);
        over_empty.push((ns[2] / ns[1] - 1.0) * 100.0);
        let shown: Vec<String> = Case::ALL
            .iter()
            .zip(ns)
            .map(|(c, v)| format!("{} {v:.0} ns", c.label()))
            .collect();
        eprintln!("    round {}: {} per hand-off", round + 1, shown.join(", "));
    }
    // Per-run cost from the kernel's statistics, anatomy and empty
    // programs each in runs of their own.
    let mut idle_cost: [Vec<f64>; 4] = Default::default();
    {
        let _stats = BpfStats::enable()?;
        // Each case counts only its own programs: a tracer that has just
        // exited may still have its programs attached for a moment.
        for (case, programs) in [(Case::On, 0..2), (Case::Empty, 2..4)] {
            case.with(agent, || {
                for _ in 0..plan.reps {
                    let start = program_stats()?;
                    ping_pong(handoffs)?;
                    let end = program_stats()?;
                    for i in programs.clone() {
                        let (s, e) = (start[i], end[i]);
                        if e.1 > s.1 {
                            idle_cost[i].push((e.0 - s.0) as f64 / (e.1 - s.1) as f64);
                        }
                    }
                }
                Ok(())
            })?;
        }
    }
    let method = format!(
        "two threads pinned to CPU 0 hand one byte back and forth over a socket pair (one context switch and one wake-up each); per round, the fastest of {BATCHES} batches of {} hand-offs (wall time / hand-offs; interference only adds time), the tracer pinned to the other CPUs; the four cases alternate within each round",
        handoffs / BATCHES
    );
    for (name, s, what) in [
        ("handoff_no_agent", &samples[0], "no agent running"),
        (
            "handoff_empty_programs",
            &samples[1],
            "`agent bench-attach --sched`: empty programs on sched_switch and sched_waking, the floor of any tool there",
        ),
        (
            "handoff_anatomy_on",
            &samples[2],
            "`agent run --comm` matching nothing: the scheduler tracepoints attached, no pause open",
        ),
        (
            "handoff_anatomy_off",
            &samples[3],
            "the same agent with --no-anatomy",
        ),
    ] {
        report.push(Figure::new(
            name,
            "ns",
            s.clone(),
            format!("{what}; {method}"),
        )?);
    }
    report.push(
        Figure::new(
            "context_switch_throughput_loss",
            "%",
            loss,
            "per round, handoff_anatomy_on / handoff_no_agent - 1: hand-off throughput lost to the anatomy's scheduler programs",
        )?
        .target("< 2%", 2.0, true),
    );
    report.push(Figure::new(
        "context_switch_loss_over_empty",
        "%",
        over_empty,
        "per round, handoff_anatomy_on / handoff_empty_programs - 1: what the anatomy's programs cost over empty ones at the same tracepoints",
    )?);
    for (i, name) in PROGRAMS.iter().enumerate() {
        if !idle_cost[i].is_empty() {
            report.push(Figure::new(
                format!("{name}_ns_idle"),
                "ns/run",
                idle_cost[i].clone(),
                format!("{name}'s average run time from the kernel's BPF statistics (bpftool prog show: run_time_ns / run_cnt) during the ping-pong, no pause open, including the statistics' own two clock reads; measured in runs of their own, as the statistics slow every run"),
            )?);
        }
    }
    let mut own_ns = Vec::new();
    for tracepoint in ["switch", "waking"] {
        let median = |name: String| report.get(&name).map(|f| f.median);
        let (Some(anatomy), Some(empty)) = (
            median(format!("anatomy_{tracepoint}_ns_idle")),
            median(format!("bench_{tracepoint}_ns_idle")),
        ) else {
            continue;
        };
        report.push(Figure::new(
            format!("anatomy_{tracepoint}_ns_over_empty"),
            "ns/run",
            vec![anatomy - empty],
            format!("median anatomy_{tracepoint}_ns_idle - median bench_{tracepoint}_ns_idle: the anatomy program's own work per run with no pause open (the gate's array lookup), the statistics' clock reads cancelled out"),
        )?);
        own_ns.push(anatomy - empty);
    }
    // The throughput rounds cannot resolve a fraction of a percent on a
    // machine whose bare rounds spread by several: this is the same loss
    // computed from the programs' own cost, one switch and one wake-up per
    // hand-off.
    if let (2, Some(bare)) = (own_ns.len(), report.get("handoff_no_agent")) {
        let share = own_ns.iter().sum::<f64>() / bare.median * 100.0;
        report.push(Figure::new(
            "anatomy_share_of_handoff",
            "%",
            vec![share],
            "(anatomy_switch_ns_over_empty + anatomy_waking_ns_over_empty) / median handoff_no_agent: what the anatomy's own work, beyond the kernel's dispatch of any program at those tracepoints, takes from a hand-off",
        )?);
    }
    let _stats = BpfStats::enable()?;
    pausing(plan, agent, report)
}

/// The scheduler programs' cost per run while a traced JVM pauses often:
/// for the open pauses' duration every switch of the host looks up both
/// threads in the tracked-threads map.
fn pausing(plan: &Plan, agent: &Path, report: &mut Report) -> Result<()> {
    let mut jvm: RunningJava = JavaWorkload::jdk(17)?
        .gc_flags(["-XX:+UseSerialGC"])
        .heap_mb(160)
        .live_mb(48)
        .alloc_mb_per_sec(16)
        .system_gc_every_ms(100)
        .duration_secs(0)
        .gate(true)
        .spawn()?;
    jvm.wait_ready(Duration::from_secs(120))?;
    let port = free_port()?;
    let mut tracer = Tracer::agent(agent, &run_args(&[jvm.pid()], port, &[]))?;
    tracer.wait_armed(Duration::from_secs(60))?;
    jvm.open_gate()?;
    thread::sleep(Duration::from_secs(1));
    let mut cost: [Vec<f64>; 2] = Default::default();
    // Only the anatomy's programs run here.
    let mut handoff = Vec::new();
    for _ in 0..plan.reps {
        let start = program_stats()?;
        handoff.push(ping_pong(plan.pairs)?);
        let end = program_stats()?;
        for (i, (s, e)) in start.iter().zip(&end).take(2).enumerate() {
            if e.1 > s.1 {
                cost[i].push((e.0 - s.0) as f64 / (e.1 - s.1) as f64);
            }
        }
    }
    tracer.stop()?;
    jvm.stop()?;
    for (name, cost) in PROGRAMS.iter().zip(&cost) {
        if !cost.is_empty() {
            report.push(Figure::new(
                format!("{name}_ns_pausing"),
                "ns/run",
                cost.clone(),
                format!("{name}'s average run time (bpftool run_time_ns / run_cnt) during the ping-pong while `agent run --pid` traces a Serial-GC JVM calling System.gc() every 100 ms (a pause open about a third of the time)"),
            )?);
        }
    }
    report.push(Figure::new(
        "handoff_while_pausing",
        "ns",
        handoff,
        "ns per ping-pong hand-off during those runs (the JVM also takes CPU, so compare with care)",
    )?);
    Ok(())
}

/// Nanoseconds per hand-off of `n` hand-offs between two threads pinned
/// to CPU 0.
fn ping_pong(n: u64) -> Result<f64> {
    let (mut a, mut b) = UnixStream::pair().context("socketpair")?;
    let echo = thread::spawn(move || -> Result<()> {
        pin_to_cpu0()?;
        let mut byte = [0u8; 1];
        while b.read(&mut byte)? != 0 {
            b.write_all(&byte)?;
        }
        Ok(())
    });
    let round_trips = n / 2;
    let driver = thread::spawn(move || -> Result<Duration> {
        pin_to_cpu0()?;
        let mut byte = [1u8; 1];
        let start = Instant::now();
        for _ in 0..round_trips {
            a.write_all(&byte)?;
            a.read_exact(&mut byte)?;
        }
        // Dropping `a` ends the echo thread.
        Ok(start.elapsed())
    });
    let elapsed = driver
        .join()
        .map_err(|_| anyhow::anyhow!("ping-pong thread panicked"))??;
    echo.join()
        .map_err(|_| anyhow::anyhow!("ping-pong echo thread panicked"))??;
    Ok(elapsed.as_nanos() as f64 / (round_trips * 2).max(1) as f64)
}

/// Batches per round; the fastest one counts.
const BATCHES: u64 = 5;

/// Nanoseconds per hand-off of the fastest of [`BATCHES`] batches that
/// make `n` hand-offs together. On a shared or virtual machine a batch
/// can only be slowed by others (a host preemption, an interrupt storm),
/// never sped up, so the fastest is the closest to the programs' own cost.
fn fastest(n: u64) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..BATCHES {
        best = best.min(ping_pong(n / BATCHES)?);
    }
    Ok(best)
}

fn pin_to_cpu0() -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the macro only
    // writes inside it.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        set
    };
    set_affinity(&set)
}

/// Sets the calling thread's CPUs.
fn set_affinity(set: &libc::cpu_set_t) -> Result<()> {
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the
    // calling thread.
    if unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), set) } != 0 {
        bail!("sched_setaffinity: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread's CPUs narrowed to all but CPU 0 while alive, then
/// put back; unchanged on a one-CPU machine.
struct Affinity(Option<libc::cpu_set_t>);

impl Affinity {
    fn all_but_cpu0() -> Result<Affinity> {
        // SAFETY: a zeroed cpu_set_t is valid; the kernel fills it for the
        // calling thread (pid 0).
        let was = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) != 0 {
                bail!("sched_getaffinity: {}", std::io::Error::last_os_error());
            }
            set
        };
        let mut rest = was;
        // SAFETY: CPU 0 is inside the set's bounds.
        unsafe { libc::CPU_CLR(0, &mut rest) };
        // SAFETY: reads a valid set.
        if unsafe { libc::CPU_COUNT(&rest) } == 0 {
            return Ok(Affinity(None));
        }
        set_affinity(&rest)?;
        Ok(Affinity(Some(was)))
    }
}

impl Drop for Affinity {
    fn drop(&mut self) {
        if let Some(was) = &self.0 {
            let _ = set_affinity(was);
        }
    }
}

/// Turns the kernel's BPF run-time statistics on while alive, and back to
/// what they were (also used by [`super::heap`]).
pub(super) struct BpfStats(String);

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    /// Turns them on.
    pub(super) fn enable() -> Result<BpfStats> {
        let was =
            std::fs::read_to_string(BPF_STATS).with_context(|| format!("reading {BPF_STATS}"))?;
        std::fs::write(BPF_STATS, "1").with_context(|| format!("writing {BPF_STATS}"))?;
        Ok(BpfStats(was.trim().to_string()))
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write(BPF_STATS, &self.0);
    }
}

/// (run_time_ns, run_cnt) of each of [`PROGRAMS`], summed over every
/// loaded program of that name (only the running agent's, here).
fn program_stats() -> Result<[(u64, u64); 4]> {
    let out = Command::new("bpftool")
        .args(["-j", "prog", "show"])
        .output()
        .context("running bpftool prog show")?;
    if !out.status.success() {
        bail!(
            "bpftool prog show: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let progs: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).context("bpftool's JSON")?;
    let mut stats = [(0, 0); 4];
    for p in &progs {
        let Some(name) = p.get("name").and_then(|n| n.as_str()) else {
            continue;
        };
        if let Some(i) = PROGRAMS.iter().position(|&n| n == name) {
            let field = |k: &str| p.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
            stats[i].0 += field("run_time_ns");
            stats[i].1 += field("run_cnt");
        }
    }
    Ok(stats)
}
