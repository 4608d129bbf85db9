//! Footprint: start-to-armed time (against bpftrace and BCC's javagc on the
//! same JVM), and the agent's RSS, CPU and scrape latency while tracing
//! 1, 10, 50 and (full run) 100 JVMs; its shutdown time with per-process
//! uprobes (`--pid`) and with the follow modes' shared ones (`--comm`).

use std::{
    collections::BTreeSet,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::{
    Plan,
    procs::{Tracer, cpu_ns, follow_args, free_port, rss_mb, run_args, scrape, target_pids},
    report::{Figure, Report},
    tools::{Bcc, bpftrace_pair_program},
};
use crate::util::step;
use xtask::workloads::{JavaWorkload, RunningJava};

/// When an agent run with `--window 16` has its rule history full: two
/// windows and a step, and a little more.
const STEADY_AFTER: Duration = Duration::from_secs(36);

/// An idle-ish small JVM: 32 MB heap, C1 only, serial GC, 2 MB/s of
/// allocation, a thread dump every second.
fn small_jvm() -> Result<RunningJava> {
    let mut jvm = JavaWorkload::jdk(17)?
        .heap_mb(32)
        .young_mb(None)
        .gc_flags(["-XX:+UseSerialGC"])
        .jvm_arg("-XX:TieredStopAtLevel=1")
        .live_mb(4)
        .alloc_mb_per_sec(2)
        .stack_traces_every_ms(1000)
        .duration_secs(0)
        .spawn()?;
    jvm.wait_ready(Duration::from_secs(120))?;
    Ok(jvm)
}

/// Start-to-armed of the agent, bpftrace and (if it runs) BCC's javagc.
pub fn start_up(plan: &Plan, agent: &Path, bcc: Option<&Bcc>, report: &mut Report) -> Result<()> {
    step(format!(
        "start-up: spawn to armed, agent vs bpftrace vs BCC javagc, {} runs each, alternating",
        plan.reps
    ));
    let mut jvm = JavaWorkload::jdk(17)?
        .duration_secs(0)
        .stack_traces_every_ms(500)
        .spawn()?;
    jvm.wait_ready(Duration::from_secs(60))?;
    let libjvm = jvm.libjvm()?;
    let pid = jvm.pid();
    let mut agent_ms = Vec::new();
    let mut bpftrace_ms = Vec::new();
    let mut javagc_ms = Vec::new();
    let mut javagc_error = None;
    // Run 0 warms the page cache and is not counted.
    for i in 0..=plan.reps {
        let t = Instant::now();
        let mut a = Tracer::agent(agent, &run_args(&[pid], free_port()?, &[]))?;
        a.wait_armed(Duration::from_secs(60))?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        a.stop()?;
        if i > 0 {
            agent_ms.push(ms);
        }

        let t = Instant::now();
        let mut c = std::process::Command::new("bpftrace");
        c.args(["-p", &pid.to_string(), "-e"])
            .arg(bpftrace_pair_program(
                &libjvm,
                "hs_private:safepoint__begin",
                "hs_private:safepoint__end",
            ));
        let mut b = Tracer::spawn("bpftrace", c, "armed")?;
        b.wait_armed(Duration::from_secs(120))?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        b.end();
        if i > 0 {
            bpftrace_ms.push(ms);
        }

        if let Some(bcc) = bcc
            && javagc_error.is_none()
            && let Some(tracer) = bcc.javagc(pid)
        {
            let t = Instant::now();
            let r = tracer.and_then(|mut g| {
                g.wait_armed(Duration::from_secs(120))?;
                let ms = t.elapsed().as_secs_f64() * 1e3;
                g.end();
                Ok(ms)
            });
            match r {
                Ok(ms) if i > 0 => javagc_ms.push(ms),
                Ok(_) => {}
                Err(e) => javagc_error = Some(format!("{e:#}")),
            }
        }
    }
    jvm.kill()?;
    report.push(
        Figure::new(
            "start_to_armed_agent",
            "ms",
            agent_ms,
            "wall time from spawning `agent run --pid` on a JDK 17 GcHeavy to its 'armed' line: /proc \
             inspection, ELF note parsing, BPF load and verification of every program, 6 uprobe attaches \
             (warm page cache; the first run is not counted)",
        )?
        .target("< 300 ms", 300.0, true),
    );
    report.push(Figure::new(
        "start_to_armed_bpftrace",
        "ms",
        bpftrace_ms,
        "wall time from spawning `bpftrace -p PID` with the safepoint begin/end timing program on the \
         same JVM's libjvm.so to the 'armed' line its BEGIN probe prints (BEGIN runs after every probe \
         is attached)",
    )?);
    if !javagc_ms.is_empty() {
        report.push(Figure::new(
            "start_to_armed_bcc_javagc",
            "ms",
            javagc_ms,
            "wall time from spawning BCC's `javagc PID` to its 'Tracing garbage collections' line",
        )?);
    } else if let Some(e) = javagc_error {
        report.note(format!("BCC javagc did not start on the JVM: {e}"));
    }
    Ok(())
}

/// RSS, CPU, scrape latency and shutdown time while tracing N small JVMs,
/// for each N.
pub fn targets(plan: &Plan, agent: &Path, report: &mut Report) -> Result<()> {
    for &n in &plan.target_counts {
        step(format!(
            "footprint: agent tracing {n} small JVMs for {} s",
            plan.footprint_secs
        ));
        let mut jvms = Vec::new();
        for i in 0..n {
            jvms.push(small_jvm().with_context(|| format!("starting small JVM {}", i + 1))?);
        }
        let pids: Vec<u32> = jvms.iter().map(RunningJava::pid).collect();
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        // The rule engine keeps two windows of snapshots (plus a step), a
        // fixed number of steps a window: a 16 s window keeps as many as
        // the default 60 s one (at --interval 1, one snapshot a step), and
        // is full after STEADY_AFTER, within a full run's measurement.
        let steady = plan.footprint_secs > STEADY_AFTER.as_secs();
        let extra: &[&str] = if steady { &["--window", "16"] } else { &[] };
        let mut a = Tracer::agent(agent, &run_args(&pids, port, extra))?;
        let armed = a.wait_armed(Duration::from_secs(120))?;
        let probes: Option<u32> = armed
            .split(" with ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok());
        let pid = a.pid();
        let cpu0 = cpu_ns(pid)?;
        let t0 = Instant::now();
        let mut rss = Vec::new();
        let mut rss_steady = Vec::new();
        let mut scrape_ms = Vec::new();
        while t0.elapsed() < Duration::from_secs(plan.footprint_secs) {
            std::thread::sleep(Duration::from_secs(1));
            let mb = rss_mb(pid)?;
            rss.push(mb);
            if steady && t0.elapsed() >= STEADY_AFTER {
                rss_steady.push(mb);
            }
            let s = Instant::now();
            scrape(&addr)?;
            scrape_ms.push(s.elapsed().as_secs_f64() * 1e3);
        }
        let cpu = (cpu_ns(pid)? - cpu0) as f64 / 1e9 / t0.elapsed().as_secs_f64() * 100.0;
        // The page in each format, once the CPU window is closed (so the
        // CPU figure is that of a text-only deployment): the first protobuf
        // request makes the agent render that format from its next snapshot
        // on, and is answered in text; the one after a snapshot gets it.
        let text_kb = page_bytes(&addr, "text/plain;version=0.0.4")? as f64 / 1024.0;
        page_bytes(&addr, PROTOBUF_ACCEPT)?;
        std::thread::sleep(SNAPSHOT_WAIT);
        let proto_kb = page_bytes(&addr, PROTOBUF_ACCEPT)? as f64 / 1024.0;
        let t = Instant::now();
        a.stop()?;
        let stop_ms = t.elapsed().as_secs_f64() * 1e3;
        if stop_ms > 1000.0
            && let Some(p) = probes
        {
            report.note(format!(
                "the agent took {:.1} s from SIGINT to exit while tracing {n} JVMs ({p} uprobes, \
                 {:.0} ms per uprobe): the kernel unregisters uprobes one at a time, each waiting \
                 for a grace period under a kernel-wide mutex (closing them from many threads is \
                 no faster); `agent bench-attach`, which does nothing but attach, is as slow to exit",
                stop_ms / 1e3,
                stop_ms / f64::from(p)
            ));
        }
        let shared = stop_shared(agent, &pids)?;
        if shared.listed > n {
            report.note(format!(
                "the follow-mode agent stopped with {n} JVMs also traced {} other java processes \
                 of this host (--comm java matches them too)",
                shared.listed - n
            ));
        }
        for mut j in jvms {
            j.kill()?;
        }
        // Issue 8's targets for a few JVMs; issue 9's for a busy node.
        let (rss_target, cpu_target) = if n >= 100 {
            (("< 64 MB", 64.0), ("< 2%", 2.0))
        } else {
            (("< 30 MB", 30.0), ("< 1%", 1.0))
        };
        let what = format!(
            "{n} JDK 17 JVMs (-Xmx32m, -XX:TieredStopAtLevel=1, serial GC, 2 MB/s allocation, a thread \
             dump per second) traced by one `agent run`"
        );
        report.push(
            Figure::new(
                format!("agent_rss_{n}_targets"),
                "MB",
                rss,
                format!("VmRSS of the agent, sampled every second; {what}"),
            )?
            .target(rss_target.0, rss_target.1, true),
        );
        if !rss_steady.is_empty() {
            report.push(Figure::new(
                format!("agent_rss_steady_{n}_targets"),
                "MB",
                rss_steady,
                format!(
                    "VmRSS of the agent once the rule engine's history is full (after {} s, \
                     `--window 16`: as many snapshots as the default 60 s window keeps); {what}",
                    STEADY_AFTER.as_secs()
                ),
            )?);
        }
        report.push(
            Figure::new(
                format!("agent_cpu_{n}_targets"),
                "% of one core",
                vec![cpu],
                format!(
                    "CPU time of all agent threads (/proc/PID/task/*/schedstat) over {} s (one scrape per second included); {what}",
                    plan.footprint_secs
                ),
            )?
            .target(cpu_target.0, cpu_target.1, true),
        );
        let per_process_uprobes = probes.map_or(String::new(), |p| format!(", {p} in all"));
        report.push(Figure::new(
            format!("agent_stop_{n}_targets"),
            "ms",
            vec![stop_ms],
            format!(
                "SIGINT to exit of `agent run --pid` on each JVM, per-process uprobes (one per \
                 probe point and JVM{per_process_uprobes}): detaching every uprobe, draining; {what}"
            ),
        )?);
        let shared_uprobes = shared.uprobes.map_or(String::new(), |u| {
            format!(", {u} held before the signal per its /proc/PID/fdinfo")
        });
        let stop_shared = Figure::new(
            format!("agent_stop_{n}_targets_shared"),
            "ms",
            vec![shared.stop_ms],
            format!(
                "SIGTERM to exit of `agent run --comm java` (follow mode, started after the JVMs, \
                 which its start-up scan finds; signalled once /metrics lists all {n} in \
                 pausewatch_target_info), shared uprobes (one per probe point of each file, \
                 shared by every JVM mapping it{shared_uprobes}): detaching them, draining; \
                 the same {n} JVMs as `agent_stop_{n}_targets`"
            ),
        )?;
        // Issue 15's target for a busy node.
        report.push(if n >= 100 {
            stop_shared.target("≤ 3000 ms", 3000.0, false)
        } else {
            stop_shared
        });
        report.push(Figure::new(
            format!("metrics_page_text_{n}_targets"),
            "KB",
            vec![text_kb],
            format!(
                "size of the /metrics page in the text format (classic histograms only, 39 \
                 buckets per series), what Prometheus without native histograms scrapes; {what}"
            ),
        )?);
        report.push(Figure::new(
            format!("metrics_page_protobuf_{n}_targets"),
            "KB",
            vec![proto_kb],
            format!(
                "size of the /metrics page in the protobuf format (classic buckets plus native \
                 schema-2 buckets in each histogram), what Prometheus with \
                 --enable-feature=native-histograms scrapes; {what}"
            ),
        )?);
        let scrape = Figure::new(
            format!("scrape_latency_{n}_targets"),
            "ms",
            scrape_ms,
            format!("GET /metrics over loopback, full response read, once per second; {what}"),
        )?;
        report.push(if n >= 100 {
            scrape.target("< 50 ms", 50.0, true)
        } else {
            scrape
        });
    }
    Ok(())
}

/// The follow-mode agent's shutdown over running JVMs.
struct SharedStop {
    /// SIGTERM to exit.
    stop_ms: f64,
    /// Uprobes it held just before the signal, if /proc could tell.
    uprobes: Option<usize>,
    /// Targets its /metrics listed (more than the bench's JVMs if other
    /// java processes run on the host).
    listed: usize,
}

/// Starts `agent run --comm java` over the running JVMs `pids`, waits until
/// it reports all of them as targets, and times SIGTERM to exit. The armed
/// line cannot say how many uprobes it holds (it counts those of targets
/// given at start, none here), so the count is the uprobe links the kernel
/// lists in its /proc/PID/fdinfo.
fn stop_shared(agent: &Path, pids: &[u32]) -> Result<SharedStop> {
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let mut a = Tracer::agent(agent, &follow_args("java", port, &[]))?;
    a.wait_armed(Duration::from_secs(120))?;
    let want: BTreeSet<u32> = pids.iter().copied().collect();
    let deadline = Instant::now() + LISTED_TIMEOUT;
    let listed = loop {
        // Before the server is up a scrape fails: that is waiting too.
        let listed = scrape(&addr)
            .map(|page| target_pids(&page))
            .unwrap_or_default();
        if listed.is_superset(&want) {
            break listed;
        }
        if Instant::now() > deadline {
            let missing: Vec<u32> = want.difference(&listed).copied().collect();
            bail!(
                "the follow-mode agent (--comm java) listed {} of the {} JVMs in \
                 pausewatch_target_info within {LISTED_TIMEOUT:?}; missing pids {missing:?}:\n{}",
                want.len() - missing.len(),
                want.len(),
                a.stderr_text()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let uprobes = match uprobes_held(a.pid(), agent) {
        Ok(n) => Some(n),
        Err(e) => {
            eprintln!("    (the follow-mode agent's uprobes are not counted: {e:#})");
            None
        }
    };
    // The method text holds it too, but `--only` prints no method.
    eprintln!(
        "    follow mode: {} targets listed, {} uprobes held; SIGTERM",
        listed.len(),
        uprobes.map_or("?".to_string(), |u| u.to_string())
    );
    let t = Instant::now();
    a.stop_with(libc::SIGTERM)?;
    Ok(SharedStop {
        stop_ms: t.elapsed().as_secs_f64() * 1e3,
        uprobes,
        listed: listed.len(),
    })
}

/// Generous: the start-up scan inspects and attaches every JVM, and the
/// page shows them at the next snapshot.
const LISTED_TIMEOUT: Duration = Duration::from_secs(120);

/// Uprobes (and uretprobes) whose BPF links the process `pid` holds, from
/// the kernel's `/proc/PID/fdinfo` (`event_type: uprobe`; this bpftool's
/// `perf list` and `link show` do not describe perf links), less those on
/// `own_exe`: the agent keeps its start-up self-test probe on its own
/// binary, which `agent run --pid`'s count leaves out too.
fn uprobes_held(pid: u32, own_exe: &Path) -> Result<usize> {
    let own = std::fs::canonicalize(own_exe).unwrap_or_else(|_| own_exe.to_path_buf());
    let dir = format!("/proc/{pid}/fdinfo");
    let mut n = 0;
    for fd in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let Ok(info) = std::fs::read_to_string(fd?.path()) else {
            continue; // closed meanwhile
        };
        let field = |key: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                .map(str::trim)
        };
        if matches!(field("event_type"), Some("uprobe" | "uretprobe"))
            && field("name").is_none_or(|name| Path::new(name) != own)
        {
            n += 1;
        }
    }
    Ok(n)
}

/// Longer than the agent's default --interval (1 s) plus a render.
const SNAPSHOT_WAIT: Duration = Duration::from_millis(2500);

/// What Prometheus sends with native histograms on: the agent answers in
/// the length-delimited protobuf format.
const PROTOBUF_ACCEPT: &str = "application/vnd.google.protobuf;\
    proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,\
    text/plain;version=0.0.4;q=0.3,*/*;q=0.1";

/// The body size of one `GET /metrics` with this `Accept`.
fn page_bytes(addr: &str, accept: &str) -> Result<usize> {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: bench\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    if !raw.starts_with(b"HTTP/1.1 200") {
        anyhow::bail!("scrape of {addr} failed");
    }
    let head = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of the response head")?;
    Ok(raw.len() - head - 4)
}
