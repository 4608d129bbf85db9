//! `agent run` and `agent probes`: wires discovery, BPF, collection and
//! export together and owns the process's lifetime (signals, duration).

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use aya::maps::{MapData, RingBuf};
use pausewatch_common::{Kind, PauseEvent};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
    sync::watch,
};

use crate::{
    bpf::{Tracer, loader::LoadOptions},
    cli::{ProbesArgs, RunArgs},
    collect::{Collector, Snapshot, TargetInfo, events::EventLine},
    discovery::{self, ProgramArg, Target},
    export, summary,
};

/// Runs `agent run` to completion.
pub fn run(args: RunArgs) -> Result<()> {
    validate_seconds("--interval", args.interval, MIN_INTERVAL_SECS)?;
    validate_seconds("--summary", args.summary, 0.0)?;
    if let Some(d) = args.duration {
        validate_seconds("--duration", d, f64::MIN_POSITIVE)?;
    }
    validate_listen(&args)?;
    crate::check::require_host()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_async(args))
}

/// A non-loopback address exposes the metrics to the network: only on request.
fn validate_listen(args: &RunArgs) -> Result<()> {
    if !args.listen.ip().is_loopback() && !args.allow_remote {
        bail!(
            "--listen {} is not a loopback address: the metrics (process names, pids) would be \
             served to the network; add --allow-remote if that is intended, or listen on \
             127.0.0.1",
            args.listen
        );
    }
    Ok(())
}

/// The shortest `--interval`: each tick reads every BPF map.
const MIN_INTERVAL_SECS: f64 = 0.001;
/// The longest any time option may be (~31 years; Durations and timers stay
/// far from overflow).
const MAX_SECONDS: f64 = 1e9;

/// A time option must be a number of seconds in `[min, MAX_SECONDS]`; for
/// `--summary`, `min` is 0 (which turns it off).
fn validate_seconds(flag: &str, v: f64, min: f64) -> Result<()> {
    let what = if min == 0.0 {
        "a number of seconds (0 turns it off)"
    } else {
        "a positive number of seconds"
    };
    if !v.is_finite() || v < 0.0 || (min > 0.0 && v == 0.0) {
        bail!("{flag} takes {what}, not {v}");
    }
    if v > MAX_SECONDS {
        bail!("{flag} {v:e} is too large: at most {MAX_SECONDS:e} seconds");
    }
    if v < min && v != 0.0 {
        bail!("{flag} {v:e} is too small: at least {min} seconds");
    }
    Ok(())
}

async fn run_async(args: RunArgs) -> Result<()> {
    let started = Instant::now();
    // Registered before anything else so that a SIGINT or SIGTERM arriving
    // right after the "armed" line still means a clean shutdown.
    let mut sigint =
        signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    let mut sigterm =
        signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;

    let mut targets = Vec::new();
    let mut failures = Vec::new();
    for &pid in &args.pids {
        match discovery::detect(pid) {
            Ok(t) => targets.push(t),
            Err(e) => failures.push(e),
        }
    }
    if targets.is_empty() {
        let mut failures = failures.into_iter();
        let first = failures.next().context("no --pid given")?;
        for other in failures {
            eprintln!("error: {other}");
        }
        return Err(first.into());
    }
    for f in &failures {
        eprintln!("warning: {f}; tracing the other targets");
    }

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (is another agent running there? choose another with --listen)", args.listen))?;
    if !args.listen.ip().is_loopback() {
        log::warn!(
            "serving metrics on non-loopback address {} (--allow-remote): anyone who can reach \
             it sees the traced processes' names and pids",
            args.listen
        );
    }

    let (mut tracer, maps) = Tracer::load(LoadOptions {
        events: args.events,
    })?;
    crate::check::require_attach(&mut tracer)?;
    let mut collector = Collector::new(maps.histograms, maps.lost);
    for target in &targets {
        let attached = tracer.attach(target)?;
        log::info!(
            "pid {}: attached {} uprobes",
            target.process.pid,
            attached.len()
        );
        collector.add_target(target_info(target), target.runtime);
    }
    let armed = started.elapsed();
    eprintln!(
        "pausewatch: tracing {} with {} probes, armed in {:.0} ms; metrics at http://{}/metrics",
        targets
            .iter()
            .map(|t| format!(
                "pid {} ({} {} {})",
                t.process.pid,
                t.process.comm,
                t.runtime.label(),
                t.version
            ))
            .collect::<Vec<_>>()
            .join(", "),
        tracer.attached_count(),
        armed.as_secs_f64() * 1e3,
        args.listen,
    );

    let collector = Arc::new(Mutex::new(collector));
    let first = Arc::new(lock(&collector).collect());
    let (snap_tx, snap_rx) = watch::channel(first.clone());
    let (stop_tx, stop_rx) = watch::channel(false);

    let server = {
        let mut stop = stop_rx.clone();
        tokio::spawn(export::serve(listener, snap_rx.clone(), async move {
            let _ = stop.wait_for(|s| *s).await;
        }))
    };
    let events = args
        .events
        .then(|| tokio::spawn(read_events(maps.events, collector.clone(), stop_rx.clone())));

    let interval = Duration::from_secs_f64(args.interval);
    let summary_every = (args.summary > 0.0).then(|| Duration::from_secs_f64(args.summary));
    let deadline = args
        .duration
        .map(|d| tokio::time::Instant::now() + Duration::from_secs_f64(d));
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_summary = (Instant::now(), first.clone());
    let mut alive: Vec<(u32, discovery::Process)> = targets
        .iter()
        .map(|t| (t.process.pid, t.process.clone()))
        .collect();

    loop {
        let until_deadline = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tick.tick() => {}
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = until_deadline => break,
        }
        let snapshot = Arc::new(lock(&collector).collect());
        let _ = snap_tx.send(snapshot.clone());
        alive.retain(|(pid, p)| match p.state() {
            discovery::process::ProcessState::Running => true,
            gone => {
                tracer.detach(*pid);
                eprintln!(
                    "pausewatch: pid {pid} {gone}; its probes are detached, its last numbers \
                     stay in /metrics"
                );
                false
            }
        });
        if let Some(every) = summary_every
            && last_summary.0.elapsed() >= every
        {
            eprint!(
                "{}",
                summary::render(&last_summary.1, &snapshot, last_summary.0.elapsed())
            );
            last_summary = (Instant::now(), snapshot);
        }
    }

    // Shutdown: detach first so no new pause starts, then publish the final
    // state and drain the events that are already in the ring buffer.
    for t in &targets {
        tracer.detach(t.process.pid);
    }
    let last = Arc::new(lock(&collector).collect());
    let _ = snap_tx.send(last.clone());
    let _ = stop_tx.send(true);
    if let Some(events) = events {
        events.await.context("the event reader failed")??;
    }
    server.await.context("the HTTP server failed")??;
    if summary_every.is_some() {
        eprint!(
            "pausewatch: stopped after {:.1} s. Whole run:\n{}",
            started.elapsed().as_secs_f64(),
            summary::render(&Snapshot::default(), &last, started.elapsed())
        );
    }
    Ok(())
}

/// Copies pause events from the ring buffer to stdout as JSON lines until
/// `stop` turns true, then drains what is left.
async fn read_events(
    ring: RingBuf<MapData>,
    collector: Arc<Mutex<Collector>>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    // SAFETY: the RingBuf owns its map fd and keeps it open, unchanged, for
    // as long as the AsyncFd owns the RingBuf.
    let mut fd = unsafe { AsyncFd::register(ring) }
        .map_err(|e| anyhow::anyhow!("cannot poll the event ring buffer: {e}"))?;
    let mut out = std::io::BufWriter::new(std::io::stdout());
    loop {
        let stopping = tokio::select! {
            guard = fd.readable_mut() => {
                let mut guard = guard.context("polling the event ring buffer")?;
                drain(guard.get_inner_mut(), &collector, &mut out)?;
                guard.clear_ready();
                false
            }
            _ = stop.wait_for(|s| *s) => true,
        };
        if stopping {
            drain(fd.get_mut(), &collector, &mut out)?;
            return Ok(());
        }
    }
}

fn drain(
    ring: &mut RingBuf<MapData>,
    collector: &Mutex<Collector>,
    out: &mut impl Write,
) -> Result<()> {
    while let Some(item) = ring.next() {
        if item.len() < size_of::<PauseEvent>() {
            continue;
        }
        // SAFETY: the BPF side writes exactly one PauseEvent per record; the
        // length was checked, and read_unaligned copes with any alignment.
        let e: PauseEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
        let Some(kind) = Kind::from_u32(e.kind) else {
            continue;
        };
        let (cause, runtime) = {
            let mut c = lock(collector);
            (c.cause_name(e.pid, kind, e.cause), c.runtime_label(e.pid))
        };
        let line = EventLine {
            pid: e.pid,
            tid: e.tid,
            runtime,
            kind: kind.label(),
            cause: &cause,
            start_ns: e.start_ns,
            duration_ns: e.duration_ns,
            time_to_safepoint_ns: (kind == Kind::Safepoint && e.cause != 0).then_some(e.tts_ns),
        };
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

fn lock(c: &Mutex<Collector>) -> std::sync::MutexGuard<'_, Collector> {
    // A panic while holding the lock leaves the maps untouched, so the data
    // is still good; keep going rather than poison the whole agent.
    c.lock().unwrap_or_else(|p| p.into_inner())
}

fn target_info(t: &Target) -> TargetInfo {
    TargetInfo {
        pid: t.process.pid,
        comm: t.process.comm.clone(),
        runtime: t.runtime.label(),
        runtime_version: t.version.clone(),
        exe: t.process.exe.display().to_string(),
    }
}

/// Runs `agent probes`: prints what would be attached.
pub fn probes(args: ProbesArgs) -> Result<()> {
    let target = discovery::detect(args.pid)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "pid {} ({}): {} {}",
        target.process.pid,
        target.process.comm,
        target.runtime.label(),
        target.version
    )?;
    writeln!(out, "exe: {}", target.process.exe.display())?;
    for p in &target.probes {
        let arg = match &p.arg {
            ProgramArg::None => String::new(),
            ProgramArg::Usdt(spec) => format!(
                " arg0: {} bytes{} at pt_regs+{}",
                spec.size,
                if spec.signed != 0 { " signed" } else { "" },
                spec.reg_off
            ),
        };
        writeln!(
            out,
            "  {:<28} {}+{:#x} -> {}{}",
            p.probe,
            p.binary.display(),
            p.file_offset,
            p.program,
            arg
        )?;
    }
    Ok(())
}
