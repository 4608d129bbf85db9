//! `cargo xtask dist --compare`: the static (musl) agent against the glibc
//! release build, on this machine, in one run with the two builds
//! alternating so that other work on the machine hits both alike.
//!
//! Figures: `agent check` wall time (process start, BPF load and
//! verification, a uprobe attach: the whole start-up path without a target),
//! spawn-to-armed of `agent run --pid` on a JVM, the agent's user-space CPU
//! per event with `--events` (ring buffer read, cause lookup, JSON line: the
//! allocator-heavy path), and the agent's RSS tracing a JVM. The in-kernel
//! per-event cost is the same BPF object in both builds, so it is not
//! measured again here (`cargo xtask bench`).

use std::{
    fmt::Write as _,
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::bench::{
    procs::{Tracer, cpu_ns, free_port, rss_mb, run_args, scrape},
    usdt,
};
use crate::util::{ensure_debian_packages, is_root, step};
use xtask::workloads::JavaWorkload;

/// Runs of each start-up figure per build (the first of each is a warm-up).
const RUNS: usize = 7;
/// Begin/end pairs per `--events` CPU sample.
const EVENT_PAIRS: u64 = 200_000;
/// Rounds of the `--events` CPU figure per build.
const EVENT_ROUNDS: usize = 3;
/// Seconds of the RSS window.
const RSS_SECS: u64 = 5;

/// One build's samples.
#[derive(Default)]
struct Samples {
    check_ms: Vec<f64>,
    armed_ms: Vec<f64>,
    event_cpu_ns: Vec<f64>,
    event_wall_ns: Vec<f64>,
    rss_mb: Vec<f64>,
}

/// Measures `glibc` against `musl` and writes `target/dist/compare.md`.
pub fn compare(glibc: &Path, musl: &Path) -> Result<()> {
    if !is_root() {
        bail!("the comparison loads BPF programs and needs root: run it with sudo");
    }
    // usdt_loop needs a C compiler and sys/sdt.h; GcHeavy a JDK 17.
    ensure_debian_packages(&[
        "gcc",
        "libc6-dev",
        "systemtap-sdt-dev",
        "openjdk-17-jdk-headless",
    ])?;
    let builds = [("glibc", glibc), ("musl", musl)];
    let mut samples = [Samples::default(), Samples::default()];

    step(format!(
        "start-up: `agent check`, {RUNS} runs per build, alternating"
    ));
    for i in 0..RUNS {
        for (b, (_, agent)) in builds.iter().enumerate() {
            let t = Instant::now();
            let out = Command::new(agent)
                .arg("check")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
                .with_context(|| format!("running {} check", agent.display()))?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            if !out.status.success() {
                bail!(
                    "{} check failed:\n{}",
                    agent.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            if i > 0 {
                samples[b].check_ms.push(ms);
            }
        }
    }

    step("start-up and RSS: `agent run --pid` on a JDK 17 GcHeavy");
    let mut jvm = JavaWorkload::jdk(17)?
        .heap_mb(64)
        .duration_secs(0)
        .stack_traces_every_ms(200)
        .spawn()?;
    jvm.wait_ready(Duration::from_secs(120))?;
    let pid = jvm.pid();
    for i in 0..RUNS {
        for (b, (_, agent)) in builds.iter().enumerate() {
            let port = free_port()?;
            let t = Instant::now();
            let mut a = Tracer::agent(agent, &run_args(&[pid], port, &[]))?;
            a.wait_armed(Duration::from_secs(60))?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            if i == 1 {
                // One RSS window per build, sampled each second after a
                // scrape (the scrape renders and copies the page).
                for _ in 0..RSS_SECS {
                    thread::sleep(Duration::from_secs(1));
                    scrape(&format!("127.0.0.1:{port}"))?;
                    samples[b].rss_mb.push(rss_mb(a.pid())?);
                }
            }
            a.stop()?;
            if i > 0 {
                samples[b].armed_ms.push(ms);
            }
        }
    }
    jvm.kill()?;

    step(format!(
        "user-space cost per event: `agent run --events`, {EVENT_ROUNDS} rounds of {EVENT_PAIRS} pairs per build"
    ));
    let dir = usdt::build()?;
    let mut lp = usdt::Loop::start(&dir)?;
    lp.fire(EVENT_PAIRS, 0)?;
    for _ in 0..EVENT_ROUNDS {
        for (b, (_, agent)) in builds.iter().enumerate() {
            let port = free_port()?;
            let mut a = Tracer::agent(
                agent,
                &run_args(&[lp.pid()], port, &["--events", "--interval", "0.2"]),
            )?;
            a.wait_armed(Duration::from_secs(60))?;
            let cpu0 = cpu_ns(a.pid())?;
            let (wall_ns, _) = lp.fire(EVENT_PAIRS, 0)?;
            let deadline = Instant::now() + Duration::from_secs(60);
            while (a.stdout_lines() as u64) < EVENT_PAIRS && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
            let cpu = cpu_ns(a.pid())? - cpu0;
            let lines = a.stdout_lines() as u64;
            a.stop()?;
            lp.wait_unprobed(Duration::from_secs(120))?;
            if lines < EVENT_PAIRS {
                bail!("the agent printed {lines} of {EVENT_PAIRS} events");
            }
            samples[b]
                .event_cpu_ns
                .push(cpu as f64 / EVENT_PAIRS as f64);
            samples[b].event_wall_ns.push(wall_ns);
        }
    }

    let report = render(&builds.map(|(n, _)| n), &samples);
    let path = super::dist::dist_dir().join("compare.md");
    std::fs::write(&path, &report).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("{report}");
    step(format!("comparison written to {}", path.display()));
    Ok(())
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Picks one figure's samples out of a build's.
type Figure = fn(&Samples) -> &Vec<f64>;

fn render(names: &[&str; 2], s: &[Samples; 2]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| figure | {} | {} | {} / {} |\n|---|---|---|---|",
        names[0], names[1], names[1], names[0]
    );
    let rows: [(&str, &str, Figure); 5] = [
        ("`agent check` wall time", "ms", |s| &s.check_ms),
        ("spawn to armed, `agent run --pid` (JDK 17)", "ms", |s| {
            &s.armed_ms
        }),
        ("agent CPU per event with `--events`", "ns", |s| {
            &s.event_cpu_ns
        }),
        ("traced loop, wall time per begin/end pair", "ns", |s| {
            &s.event_wall_ns
        }),
        ("agent RSS tracing one JVM", "MB", |s| &s.rss_mb),
    ];
    for (what, unit, get) in rows {
        let (a, b) = (median(get(&s[0])), median(get(&s[1])));
        let _ = writeln!(
            out,
            "| {what} | {a:.1} {unit} | {b:.1} {unit} | {:.2}x |",
            b / a
        );
    }
    let _ = writeln!(
        out,
        "\nMedians; start-up over {} runs per build after a warm-up, alternating builds; \
         {EVENT_ROUNDS} rounds of {EVENT_PAIRS} pairs for the event figures; RSS sampled each \
         second for {RSS_SECS} s after a scrape.",
        RUNS - 1
    );
    out
}
