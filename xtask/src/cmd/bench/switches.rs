//! Context switches under the pause anatomy: the scheduler tracepoints of
//! `ebpf/src/anatomy.rs` run on every context switch of the host, so their
//! cost is paid by every program, traced or not.
//!
//! A ping-pong of two threads pinned to one CPU, handing a byte back and
//! forth through two pipes, makes one context switch per hand-off and
//! nothing else. Its hand-off rate is measured with no agent, with an
//! agent that has the anatomy on, and with one that has it off
//! (`--no-anatomy`), in alternating rounds; the kernel's own BPF run-time
//! statistics (`kernel.bpf_stats_enabled`, read with `bpftool prog show`)
//! give the average cost of one run of each scheduler program, both when
//! no pause is open anywhere (the common case: the programs return after
//! one array lookup) and while a traced JVM pauses a third of the time.

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

/// The scheduler programs whose run-time statistics are reported.
const PROGRAMS: [&str; 2] = ["anatomy_switch", "anatomy_waking"];

/// Runs the context-switch figures.
pub fn switches(plan: &Plan, agent: &Path, report: &mut Report) -> Result<()> {
    let handoffs = plan.pairs;
    step(format!(
        "context switches: {} rounds of {handoffs} hand-offs (no agent, anatomy on, anatomy off)",
        plan.reps
    ));
    // Warm up: page faults, CPU frequency.
    ping_pong(handoffs / 4)?;
    let mut samples: [Vec<f64>; 3] = Default::default();
    let mut loss = Vec::new();
    // The kernel's run-time statistics cost two clock reads per program
    // run, so they are off for the throughput rounds.
    for round in 0..plan.reps {
        let bare = ping_pong(handoffs)?;
        let on = with_agent(agent, &[], || ping_pong(handoffs))?;
        let off = with_agent(agent, &["--no-anatomy"], || ping_pong(handoffs))?;
        samples[0].push(bare);
        samples[1].push(on);
        samples[2].push(off);
        loss.push((on / bare - 1.0) * 100.0);
        eprintln!(
            "    round {}: no agent {bare:.0} ns, anatomy on {on:.0} ns, anatomy off {off:.0} ns per hand-off",
            round + 1
        );
    }
    let mut idle_cost: [Vec<f64>; 2] = Default::default();
    {
        let _stats = BpfStats::enable()?;
        with_agent(agent, &[], || {
            for _ in 0..plan.reps {
                let start = program_stats()?;
                ping_pong(handoffs)?;
                let end = program_stats()?;
                for (i, (s, e)) in start.iter().zip(&end).enumerate() {
                    if e.1 > s.1 {
                        idle_cost[i].push((e.0 - s.0) as f64 / (e.1 - s.1) as f64);
                    }
                }
            }
            Ok(0.0)
        })?;
    }
    let method = format!(
        "two threads pinned to CPU 0 hand one byte back and forth over a socket pair, {handoffs} hand-offs (one context switch each); wall time / hand-offs, in alternating rounds"
    );
    for (name, s, what) in [
        ("handoff_no_agent", &samples[0], "no agent running"),
        (
            "handoff_anatomy_on",
            &samples[1],
            "`agent run --comm` matching nothing: the scheduler tracepoints attached, no pause open",
        ),
        (
            "handoff_anatomy_off",
            &samples[2],
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
    for (i, name) in PROGRAMS.iter().enumerate() {
        if !idle_cost[i].is_empty() {
            report.push(Figure::new(
                format!("{name}_ns_idle"),
                "ns/run",
                idle_cost[i].clone(),
                format!("{name}'s average run time from the kernel's BPF statistics (bpftool prog show: run_time_ns / run_cnt) during the ping-pong, no pause open: the array lookup of the gate and the return, plus the statistics' own two clock reads; measured in runs of their own, as the statistics slow every run"),
            )?);
        }
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
    let mut handoff = Vec::new();
    for _ in 0..plan.reps {
        let start = program_stats()?;
        handoff.push(ping_pong(plan.pairs)?);
        let end = program_stats()?;
        for (i, (s, e)) in start.iter().zip(&end).enumerate() {
            if e.1 > s.1 {
                cost[i].push((e.0 - s.0) as f64 / (e.1 - s.1) as f64);
            }
        }
    }
    tracer.stop()?;
    jvm.stop()?;
    for (i, name) in PROGRAMS.iter().enumerate() {
        if !cost[i].is_empty() {
            report.push(Figure::new(
                format!("{name}_ns_pausing"),
                "ns/run",
                cost[i].clone(),
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

/// Runs `f` while an agent with `extra` arguments runs (selecting no
/// process, so only its tracepoints are live).
fn with_agent(agent: &Path, extra: &[&str], f: impl FnOnce() -> Result<f64>) -> Result<f64> {
    let port = free_port()?;
    let mut args: Vec<String> = [
        "run",
        "--comm",
        "pw-bench-none",
        "--summary",
        "0",
        "--listen",
    ]
    .map(String::from)
    .to_vec();
    args.push(format!("127.0.0.1:{port}"));
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut tracer = Tracer::agent(agent, &args)?;
    tracer.wait_armed(Duration::from_secs(60))?;
    let result = f();
    tracer.stop()?;
    result
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

fn pin_to_cpu0() -> Result<()> {
    set_affinity(&[0])
}

fn set_affinity(cpus: &[usize]) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the macros only
    // write inside it; pid 0 is the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!("sched_setaffinity: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Turns the kernel's BPF run-time statistics on while alive, and back to
/// what they were.
struct BpfStats(String);

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    fn enable() -> Result<BpfStats> {
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
fn program_stats() -> Result<[(u64, u64); 2]> {
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
    let mut stats = [(0, 0); 2];
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
