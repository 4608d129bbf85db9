//! `cargo xtask bench`: measures the agent on this machine and writes a
//! Markdown report and a JSON file with every figure (min, median, max over
//! repetitions). Numbers are reported, never asserted: CI runs `--quick` as
//! a smoke test only.

use std::{
    fs,
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;

use super::build;
use crate::util::{is_root, step, workspace_root};
use xtask::workloads::JavaWorkload;

/// Options of `cargo xtask bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Fewer repetitions and shorter runs (under 5 minutes; used by CI).
    #[arg(long)]
    pub quick: bool,
}

/// One measured figure.
#[derive(Serialize)]
struct Figure {
    name: &'static str,
    unit: &'static str,
    min: f64,
    median: f64,
    max: f64,
    samples: usize,
    method: &'static str,
    target: Option<&'static str>,
}

impl Figure {
    fn new(
        name: &'static str,
        unit: &'static str,
        mut values: Vec<f64>,
        method: &'static str,
        target: Option<&'static str>,
    ) -> Result<Figure> {
        if values.is_empty() {
            bail!("no samples for {name}");
        }
        values.sort_by(|a, b| a.total_cmp(b));
        Ok(Figure {
            name,
            unit,
            min: values[0],
            median: values[values.len() / 2],
            max: values[values.len() - 1],
            samples: values.len(),
            method,
            target,
        })
    }
}

/// Runs the benchmarks.
pub fn run(args: BenchArgs) -> Result<()> {
    if !is_root() {
        bail!("the benchmarks load BPF programs and need root: run `sudo -E cargo xtask bench`");
    }
    let agent = build::build_all()?;
    let (reps, seconds) = if args.quick { (3, 10) } else { (10, 30) };
    let mut figures = Vec::new();

    step(format!(
        "start-up: agent start to probes armed, {reps} runs (warm page cache)"
    ));
    let mut java = JavaWorkload::jdk(17)?.duration_secs(0).spawn()?;
    java.wait_ready(Duration::from_secs(30))?;
    let mut armed = Vec::new();
    for i in 0..=reps {
        let started = Instant::now();
        let mut child = spawn_agent(&agent, java.pid(), 9470, None)?;
        wait_armed(&mut child)?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        stop(child)?;
        // The first run warms the page cache and is not counted.
        if i > 0 {
            armed.push(ms);
        }
    }
    figures.push(Figure::new(
        "start_to_armed",
        "ms",
        armed,
        "wall time from spawning `agent run --pid` to its 'armed' line on stderr: /proc \
         inspection, ELF note parsing, BPF load and verification, uprobe attach",
        Some("< 300 ms"),
    )?);
    java.kill()?;

    step(format!(
        "footprint: agent RSS and CPU while tracing the demo workload for {seconds} s"
    ));
    let mut java = JavaWorkload::jdk(17)?
        .duration_secs(0)
        .stack_traces_every_ms(500)
        .spawn()?;
    java.wait_ready(Duration::from_secs(30))?;
    let child = spawn_agent(&agent, java.pid(), 9471, None)?;
    let mut child = child;
    wait_armed(&mut child)?;
    let pid = child.id();
    let cpu0 = cpu_ticks(pid)?;
    let t0 = Instant::now();
    let mut rss = Vec::new();
    let mut scrape_ms = Vec::new();
    while t0.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(1));
        rss.push(rss_mb(pid)?);
        let s = Instant::now();
        scrape("127.0.0.1:9471")?;
        scrape_ms.push(s.elapsed().as_secs_f64() * 1e3);
    }
    let cpu = (cpu_ticks(pid)? - cpu0) as f64 / clock_ticks() / t0.elapsed().as_secs_f64() * 100.0;
    stop(child)?;
    java.kill()?;
    figures.push(Figure::new(
        "agent_rss",
        "MB",
        rss,
        "VmRSS of the agent, sampled every second while tracing the demo JVM (~17 safepoints/s)",
        Some("< 30 MB"),
    )?);
    figures.push(Figure::new(
        "agent_cpu",
        "% of one core",
        vec![cpu],
        "utime+stime of the agent over the window (one scrape per second included)",
        Some("< 1%"),
    )?);
    figures.push(Figure::new(
        "scrape_latency",
        "ms",
        scrape_ms,
        "GET /metrics over loopback, full response read",
        None,
    )?);

    write_report(&figures, args.quick)
}

fn spawn_agent(agent: &Path, pid: u32, port: u16, extra: Option<&[&str]>) -> Result<Child> {
    let mut cmd = Command::new(agent);
    cmd.args([
        "run",
        "--pid",
        &pid.to_string(),
        "--summary",
        "0",
        "--listen",
    ])
    .arg(format!("127.0.0.1:{port}"))
    .args(extra.unwrap_or_default())
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    cmd.spawn().context("cannot start the agent")
}

fn wait_armed(child: &mut Child) -> Result<()> {
    let stderr = child.stderr.take().context("agent stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        let line = line?;
        if line.contains("armed in") {
            // Keep draining stderr in the background so the agent never blocks on it.
            std::thread::spawn(move || for _ in lines {});
            return Ok(());
        }
        if line.starts_with("error") {
            bail!("agent failed: {line}");
        }
    }
    bail!("the agent exited before arming its probes")
}

fn stop(mut child: Child) -> Result<()> {
    // SAFETY: plain kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("agent exited with {status}");
    }
    Ok(())
}

fn scrape(addr: &str) -> Result<()> {
    let mut s = TcpStream::connect(addr)?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
    let mut body = Vec::new();
    s.read_to_end(&mut body)?;
    if !body.starts_with(b"HTTP/1.1 200") {
        bail!("scrape failed");
    }
    Ok(())
}

fn rss_mb(pid: u32) -> Result<f64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")?;
    Ok(kb / 1024.0)
}

fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = &stat[stat.rfind(')').context("bad stat")? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

fn write_report(figures: &[Figure], quick: bool) -> Result<()> {
    let dir = workspace_root().join("target/bench");
    fs::create_dir_all(&dir)?;
    let json = serde_json::to_string_pretty(&serde_json::json!({
        "quick": quick,
        "kernel": fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "figures": figures,
    }))?;
    fs::write(dir.join("report.json"), json)?;
    let mut md = String::from(
        "# pausewatch benchmark report\n\n| figure | min | median | max | unit | target | samples |\n|---|---|---|---|---|---|---|\n",
    );
    for f in figures {
        md.push_str(&format!(
            "| {} | {:.2} | {:.2} | {:.2} | {} | {} | {} |\n",
            f.name,
            f.min,
            f.median,
            f.max,
            f.unit,
            f.target.unwrap_or("-"),
            f.samples
        ));
    }
    md.push_str("\n## Methods\n\n");
    for f in figures {
        md.push_str(&format!("- **{}**: {}\n", f.name, f.method));
    }
    fs::write(dir.join("report.md"), &md)?;
    println!("{md}");
    step(format!(
        "report written to {}",
        dir.join("report.md").display()
    ));
    Ok(())
}
