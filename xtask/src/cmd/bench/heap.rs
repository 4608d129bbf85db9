//! The memory-pool probes' own cost (`ebpf/src/heap.rs`): HotSpot fires
//! `mem__pool__gc__begin` and `_end` once per memory pool around every
//! collection, on the VM thread, inside the pause.
//!
//! A G1 JVM (JDK 17, GcHeavy at 150 MB/s with a 16 MB young generation) is
//! traced by `agent run --pid`; the kernel's BPF run-time statistics
//! (`kernel.bpf_stats_enabled`, `bpftool prog show`: run_time_ns and
//! run_cnt) give each program's average run time, and the agent's
//! `pausewatch_heap_collections_total` the collections they served.
//!
//! BPF names are cut to 15 bytes, so both programs show as
//! `hotspot_mem_poo`, and other agents may run on the host: the programs are
//! the ones whose ids the agent itself holds (`/proc/<agent>/fdinfo`), and
//! the end program is the one that uses the `POOL_LAST` map.
//!
//! It also checks that the safepoint per-event benchmark's `usdt_loop`
//! gets no pool probe: `agent probes` on it must list none.

use std::{collections::BTreeSet, path::Path, process::Command, thread, time::Duration};

use anyhow::{Context, Result, bail};

use super::{
    Plan,
    procs::{Tracer, free_port, metric_sum, run_args, scrape},
    report::{Figure, Report},
    switches::BpfStats,
    usdt::Loop,
};
use crate::util::step;
use xtask::workloads::JavaWorkload;

/// What `bpftool prog show` calls both pool programs (15 bytes of
/// `hotspot_mem_pool_gc_begin` / `_end`).
const POOL_PROGRAM_NAME: &str = "hotspot_mem_poo";
/// The map only the end program uses.
const END_ONLY_MAP: &str = "POOL_LAST";

/// Runs the heap figures.
pub fn heap(plan: &Plan, agent: &Path, usdt_dir: &Path, report: &mut Report) -> Result<()> {
    step(format!(
        "heap: memory-pool probes' BPF run time on a G1 JVM, {} s",
        plan.heap_secs
    ));
    no_pool_probes_on_usdt_loop(agent, usdt_dir)?;
    let _stats = BpfStats::enable()?;
    let mut jvm = JavaWorkload::jdk(17)?
        .gc_flags(["-XX:+UseG1GC"])
        .heap_mb(128)
        .young_mb(Some(16))
        .live_mb(16)
        .alloc_mb_per_sec(150)
        .duration_secs(plan.heap_secs)
        .gate(true)
        .spawn()?;
    jvm.wait_ready(Duration::from_secs(120))?;
    let port = free_port()?;
    let mut tracer = Tracer::agent(agent, &run_args(&[jvm.pid()], port, &["--interval", "0.2"]))?;
    tracer.wait_armed(Duration::from_secs(60))?;
    let ids = pool_program_ids(tracer.pid())?;
    let addr = format!("127.0.0.1:{port}");
    let collections0 = collections(&addr)?;
    let start = run_stats(&ids)?;
    jvm.open_gate()?;
    jvm.wait_done(Duration::from_secs(plan.heap_secs + 60))?;
    // Two of the agent's intervals: its last snapshot holds every end, and
    // the statistics are read at the same moment.
    thread::sleep(Duration::from_millis(500));
    let end = run_stats(&ids)?;
    let collections = collections(&addr)? - collections0;
    tracer.stop()?;
    jvm.stop()?;

    let d = |i: usize| {
        (
            end[i].0.saturating_sub(start[i].0) as f64,
            end[i].1.saturating_sub(start[i].1) as f64,
        )
    };
    let ((begin_ns, begin_runs), (end_ns, end_runs)) = (d(0), d(1));
    if begin_runs == 0.0 || end_runs == 0.0 || collections <= 0.0 {
        bail!(
            "heap: no pool probe ran ({begin_runs} begin and {end_runs} end runs, \
             {collections} collections)"
        );
    }
    let method = format!(
        "JDK 17 G1 GcHeavy (150 MB/s, -Xmx128m -Xmn16m) for {} s traced by `agent run --pid`; \
         the kernel's BPF statistics (bpftool run_time_ns / run_cnt, kernel.bpf_stats_enabled=1, \
         which adds its own two clock reads per run) of the agent's own programs; {collections} \
         collections (pausewatch_heap_collections_total), {end_runs} end runs. BPF time only: \
         the uprobe trap of each run comes on top (see the per-event figures). The safepoint \
         per-event bench has no pool probe attached: `agent probes` lists none on usdt_loop",
        plan.heap_secs
    );
    report.push(Figure::new(
        "heap_pool_begin_ns",
        "ns/run",
        vec![begin_ns / begin_runs],
        format!("hotspot_mem_pool_gc_begin's average run time. {method}"),
    )?);
    report.push(Figure::new(
        "heap_pool_end_ns",
        "ns/run",
        vec![end_ns / end_runs],
        format!("hotspot_mem_pool_gc_end's average run time. {method}"),
    )?);
    report.push(Figure::new(
        "heap_pool_runs_per_collection",
        "runs",
        vec![end_runs / collections],
        format!("end runs per collection (one per memory pool, heap and non-heap). {method}"),
    )?);
    report.push(Figure::new(
        "heap_pool_ns_per_collection",
        "ns",
        vec![(begin_ns + end_ns) / collections],
        format!("both programs' BPF run time per collection. {method}"),
    )?);
    Ok(())
}

/// The agent's collections so far, over every memory manager.
fn collections(addr: &str) -> Result<f64> {
    Ok(metric_sum(
        &scrape(addr)?,
        "pausewatch_heap_collections_total",
        "",
    ))
}

/// `agent probes` on `usdt_loop` lists no memory-pool probe, so the
/// safepoint per-event figures run no pool program.
fn no_pool_probes_on_usdt_loop(agent: &Path, usdt_dir: &Path) -> Result<()> {
    let lp = Loop::start(usdt_dir)?;
    let out = Command::new(agent)
        .args(["probes", "--pid", &lp.pid().to_string()])
        .output()
        .context("running agent probes")?;
    drop(lp);
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !text.contains("safepoint__begin") {
        bail!(
            "agent probes on usdt_loop: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if text.contains("mem__pool") {
        bail!("usdt_loop gets memory-pool probes, so the per-event figures include them:\n{text}");
    }
    Ok(())
}

/// The ids of the agent's (begin, end) pool programs.
fn pool_program_ids(agent_pid: u32) -> Result<(u32, u32)> {
    let held = held_prog_ids(agent_pid)?;
    let maps = bpftool(&["map", "show"])?;
    let end_only: BTreeSet<u64> = maps
        .iter()
        .filter(|m| m.get("name").and_then(|n| n.as_str()) == Some(END_ONLY_MAP))
        .filter_map(|m| m.get("id").and_then(|i| i.as_u64()))
        .collect();
    let (mut begin, mut end) = (None, None);
    for p in bpftool(&["prog", "show"])? {
        let Some(id) = p.get("id").and_then(|i| i.as_u64()) else {
            continue;
        };
        if !held.contains(&id) || p.get("name").and_then(|n| n.as_str()) != Some(POOL_PROGRAM_NAME)
        {
            continue;
        }
        let uses_end_map = p
            .get("map_ids")
            .and_then(|m| m.as_array())
            .is_some_and(|m| {
                m.iter()
                    .filter_map(|v| v.as_u64())
                    .any(|m| end_only.contains(&m))
            });
        let slot = if uses_end_map { &mut end } else { &mut begin };
        if slot.replace(id as u32).is_some() {
            bail!("the agent holds two {POOL_PROGRAM_NAME} programs of one kind");
        }
    }
    match (begin, end) {
        (Some(b), Some(e)) => Ok((b, e)),
        _ => {
            bail!("the agent (pid {agent_pid}) holds no begin and end {POOL_PROGRAM_NAME} programs")
        }
    }
}

/// Program ids whose file descriptors `pid` holds.
fn held_prog_ids(pid: u32) -> Result<BTreeSet<u64>> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut ids = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let Ok(info) = std::fs::read_to_string(entry?.path()) else {
            continue;
        };
        if let Some(id) = info
            .lines()
            .find_map(|l| l.strip_prefix("prog_id:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            ids.insert(id);
        }
    }
    Ok(ids)
}

/// (run_time_ns, run_cnt) of the programs `ids` (begin, end).
fn run_stats(ids: &(u32, u32)) -> Result<[(u64, u64); 2]> {
    let mut out = [(0, 0); 2];
    for (slot, id) in [ids.0, ids.1].into_iter().enumerate() {
        let p = bpftool(&["prog", "show", "id", &id.to_string()])?;
        let p = p.first().context("bpftool prog show id: nothing")?;
        let field = |k: &str| p.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        out[slot] = (field("run_time_ns"), field("run_cnt"));
    }
    Ok(out)
}

/// `bpftool -j <args>` as a list of objects (one object is a list of one).
fn bpftool(args: &[&str]) -> Result<Vec<serde_json::Value>> {
    let out = Command::new("bpftool")
        .arg("-j")
        .args(args)
        .output()
        .with_context(|| format!("running bpftool {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "bpftool {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("bpftool's JSON")?;
    Ok(match v {
        serde_json::Value::Array(a) => a,
        one => vec![one],
    })
}
