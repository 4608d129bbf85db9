//! `agent run` and `agent probes`: wires discovery, BPF, collection and
//! export together and owns the process's lifetime (signals, duration).

use std::{
    io::Write,
    sync::{Arc, Mutex, atomic::Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use aya::maps::{MapData, RingBuf};
use pausewatch_common::{Kind, LostReason, PauseEvent, heap::PoolEvent};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
    sync::watch,
};

use crate::{
    bpf::{Tracer, loader::LoadOptions},
    cli::{ProbesArgs, RunArgs},
    collect::{
        Collector, Snapshot,
        events::{EventLine, PoolLine, Straggler, ThreadTimes},
        lock,
    },
    discovery::{self, ProgramArg},
    export, hist_text,
    rules::{self, Engine, Report},
    summary,
    targets::{self, Lifecycle, lifecycle},
};

/// Runs `agent run` to completion.
pub fn run(args: RunArgs) -> Result<()> {
    validate_seconds("--interval", args.interval, MIN_INTERVAL_SECS)?;
    validate_seconds("--summary", args.summary, 0.0)?;
    if let Some(d) = args.duration {
        validate_seconds("--duration", d, f64::MIN_POSITIVE)?;
    }
    validate_seconds("--window", args.window, MIN_INTERVAL_SECS)?;
    validate_seconds("--forget-after", args.forget_after, 0.0)?;
    if args.pids.is_empty() && !args.all && args.comms.is_empty() && args.exes.is_empty() {
        bail!(
            "nothing to trace: choose targets with --all, --comm NAME, --exe PATTERN \
             or --pid PID (they combine; see `agent run --help`)"
        );
    }
    if args.max_targets == Some(0) {
        bail!("--max-targets takes a positive number of processes, not 0");
    }
    validate_listen(&args)?;
    // A bad rules file is an error before anything is attached.
    let rules = rules::load(args.rules.as_deref())?;
    crate::check::require_host()?;
    let open_files = crate::preflight::raise_open_files_limit();
    log::debug!("open files limit: {open_files}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_async(args, rules))
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
pub(crate) const MIN_INTERVAL_SECS: f64 = 0.001;
/// The longest any time option may be (~31 years; Durations and timers stay
/// far from overflow).
const MAX_SECONDS: f64 = 1e9;

/// A time option must be a number of seconds in `[min, MAX_SECONDS]`; for
/// `--summary`, `min` is 0 (which turns it off).
pub(crate) fn validate_seconds(flag: &str, v: f64, min: f64) -> Result<()> {
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

async fn run_async(args: RunArgs, rules: rules::RuleSet) -> Result<()> {
    let started = Instant::now();
    // Registered before anything else so that a SIGINT or SIGTERM arriving
    // right after the "armed" line still means a clean shutdown.
    let mut sigint =
        signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    let mut sigterm =
        signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?;
    let mut sigusr1 =
        signal(SignalKind::user_defined1()).context("cannot install the SIGUSR1 handler")?;
    let mut engine = Engine::new(rules, Duration::from_secs_f64(args.window));

    let selection = targets::Selection {
        all: args.all,
        comms: args.comms.clone(),
        exes: args.exes.clone(),
        pids: args.pids.clone(),
        exclude: args.exclude_pids.clone(),
    };
    let follow = selection.follows();
    if follow || !args.no_anatomy {
        // Before anything attaches: aya looks tracefs up once.
        targets::follow::ensure_tracefs()?;
    }
    let mut targets = Vec::new();
    let mut failures = Vec::new();
    for &pid in &args.pids {
        if args.exclude_pids.contains(&pid) {
            continue;
        }
        match discovery::detect(pid) {
            Ok(t) => targets.push(t),
            Err(e) => failures.push(e),
        }
    }
    if targets.is_empty() && !follow {
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
        anatomy: !args.no_anatomy,
        heap: !args.no_heap,
        shared: follow,
    })?;
    crate::check::require_attach(&mut tracer)?;
    if !args.no_anatomy {
        tracer
            .attach_anatomy()
            .context("cannot split pauses into running, runnable and blocked time")?;
    } else if let Err(e) = targets::follow::ensure_tracefs()
        .map_err(anyhow::Error::from)
        .and_then(|()| tracer.attach_thread_exit().map_err(anyhow::Error::from))
    {
        // Only housekeeping: exited threads' entries then age out of the
        // LRU map instead of going at their exit.
        log::warn!("exited threads' entries will age out instead of going at exit: {e:#}");
    }
    let collector = Arc::new(Mutex::new(
        Collector::new(maps.histograms, maps.lost, maps.stragglers)
            .with_heap(maps.heap)
            .with_admitted(maps.admitted),
    ));
    let mut lifecycle = Lifecycle::new(
        selection,
        args.max_targets,
        Duration::from_secs_f64(args.forget_after),
    );
    for target in &targets {
        if let Some(warning) = target.runtime.module().untested_warning(target) {
            log::warn!("{warning}");
        }
        let mut ctx = lifecycle::Ctx {
            tracer: &mut tracer,
            collector: collector.as_ref(),
        };
        let attached = lifecycle.adopt(target, &mut ctx)?;
        log::info!("pid {}: attached {attached} uprobes", target.process.pid);
    }
    let (change_tx, changes) = std::sync::mpsc::sync_channel(targets::follow::QUEUE);
    let changes_dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let process_ring = if follow {
        Some(tracer.follow_processes()?)
    } else {
        None
    };
    let armed = started.elapsed();
    eprintln!(
        "pausewatch: tracing {}{} with {} probes, armed in {:.0} ms; metrics at http://{}/metrics",
        if targets.is_empty() {
            "no process yet".to_string()
        } else {
            targets
                .iter()
                .map(|t| {
                    format!(
                        "pid {} ({} {} {})",
                        t.process.pid,
                        t.process.comm,
                        t.runtime.label(),
                        t.version
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        },
        if follow {
            " and following new processes"
        } else {
            ""
        },
        tracer.attached_count(),
        armed.as_secs_f64() * 1e3,
        args.listen,
    );

    let first = analyze(&mut engine, started, lock(&collector).collect());
    // Rendered once per snapshot, here, so a scrape only copies a reference:
    // on a busy node a render competes for CPU with the targets, and a scrape
    // that rendered would take as long as the run queue makes it. One that
    // comes during a render waits for that one (see `Pager::publish`).
    let mut pager = export::Pager::default();
    let (page_tx, page_rx) = watch::channel(pager.page(&first));
    let (stop_tx, stop_rx) = watch::channel(false);

    let server = {
        let mut stop = stop_rx.clone();
        tokio::spawn(export::serve(listener, page_rx, async move {
            let _ = stop.wait_for(|s| *s).await;
        }))
    };
    // Processes that were running before the follower started.
    lifecycle.scan(Instant::now());
    let over_limit = lifecycle.over_limit();
    let lifecycle = lifecycle
        .spawn(tracer, collector.clone(), changes)
        .context("cannot start the lifecycle thread")?;
    // The lifecycle thread ends when every sender is gone: the follower's
    // at its stop, or this one at shutdown when nothing is followed.
    let mut keep_open = None;
    let (follow_stop, follow_stop_rx) = watch::channel(false);
    let follower = match process_ring {
        Some(ring) => Some(tokio::spawn(targets::follow::forward(
            ring,
            change_tx,
            changes_dropped.clone(),
            follow_stop_rx,
        ))),
        None => {
            keep_open = Some(change_tx);
            None
        }
    };
    let events = args.events.then(|| {
        tokio::spawn(read_events(
            maps.events,
            maps.pool_events,
            collector.clone(),
            stop_rx.clone(),
        ))
    });

    let interval = Duration::from_secs_f64(args.interval);
    let summary_every = (args.summary > 0.0).then(|| Duration::from_secs_f64(args.summary));
    let deadline = args
        .duration
        .map(|d| tokio::time::Instant::now() + Duration::from_secs_f64(d));
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_trim = Instant::now();
    let mut last_summary = (Instant::now(), first.clone());

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
            _ = sighup.recv() => {
                reload_rules(&mut engine, args.rules.as_deref());
                continue;
            }
            _ = sigusr1.recv() => {
                if args.hist {
                    eprint!("{}", hist_text::render(&lock(&collector).collect()));
                } else {
                    log::info!("SIGUSR1: histograms are printed with --hist only");
                }
                continue;
            }
        }
        let mut snapshot = lock(&collector).collect();
        if follow || args.max_targets.is_some() {
            snapshot.lost.push((
                lifecycle::LOST_TARGET_LIMIT,
                over_limit.load(Ordering::Relaxed),
            ));
            // Same reason as the BPF side's: the exporter adds them up.
            snapshot.lost.push((
                LostReason::ProcessEventsFull.label(),
                changes_dropped.load(Ordering::Relaxed),
            ));
        }
        let snapshot = analyze(&mut engine, started, snapshot);
        if last_trim.elapsed() >= TRIM_EVERY {
            return_free_memory();
            last_trim = Instant::now();
        }
        pager.publish(&page_tx, &snapshot);
        if let Some(every) = summary_every
            && last_summary.0.elapsed() >= every
        {
            eprint!(
                "{}",
                summary::render(
                    &last_summary.1.snapshot,
                    &snapshot,
                    last_summary.0.elapsed()
                )
            );
            last_summary = (Instant::now(), snapshot);
        }
    }

    // Shutdown: detach first so no new pause starts, then publish the final
    // state and drain the events that are already in the ring buffer.
    let _ = follow_stop.send(true);
    drop(keep_open);
    if let Some(follower) = follower {
        follower.await.context("the process follower failed")??;
    }
    let mut tracer = tokio::task::spawn_blocking(move || lifecycle.join())
        .await
        .context("waiting for the lifecycle thread")?
        .map_err(|_| anyhow::anyhow!("the lifecycle thread panicked"))?;
    tracer.detach_all();
    let last = analyze(&mut engine, started, lock(&collector).collect());
    pager.publish(&page_tx, &last);
    let _ = stop_tx.send(true);
    if let Some(events) = events {
        events.await.context("the event reader failed")??;
    }
    server.await.context("the HTTP server failed")??;
    if args.hist {
        eprint!("{}", hist_text::render(&last.snapshot));
    }
    if summary_every.is_some() {
        eprint!(
            "pausewatch: stopped after {:.1} s. Whole run:\n{}",
            started.elapsed().as_secs_f64(),
            summary::render(&Snapshot::default(), &last, started.elapsed())
        );
    }
    Ok(())
}

/// How often freed memory is handed back to the kernel (see [`return_free_memory`]).
const TRIM_EVERY: Duration = Duration::from_secs(5);

/// Hands pages freed by glibc's allocator back to the kernel. Snapshots of
/// targets that came and went (the rule engine keeps two windows of them)
/// are freed in small pieces that glibc keeps in its arenas, so without
/// this the agent's RSS would stay at its busiest level after a churn of
/// processes instead of following the number of live targets.
fn return_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim has no preconditions; it only releases free pages.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Runs the rule engine on a fresh snapshot and returns it with the
/// verdicts, ready to publish: collector → rules → exporter.
fn analyze(engine: &mut Engine, started: Instant, snapshot: Snapshot) -> Report {
    engine.judge(started.elapsed(), Arc::new(snapshot))
}

/// Re-reads the rules file on SIGHUP; a bad file keeps the rules in force.
fn reload_rules(engine: &mut Engine, path: Option<&std::path::Path>) {
    let Some(path) = path else {
        log::warn!("SIGHUP: no --rules file to re-read; keeping the built-in rules");
        return;
    };
    match rules::load(Some(path)) {
        Ok(set) => {
            eprintln!(
                "pausewatch: reloaded rules from {}: {} rules in force",
                path.display(),
                set.rules.len()
            );
            engine.set_rules(set);
        }
        Err(e) => log::error!("{e}; keeping the previous rules"),
    }
}

/// Copies pause events and memory-pool events from their ring buffers to
/// stdout as JSON lines until `stop` turns true, then drains what is left.
/// One task reads both, so that lines never interleave.
async fn read_events(
    ring: RingBuf<MapData>,
    pool_ring: RingBuf<MapData>,
    collector: Arc<Mutex<Collector>>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    // SAFETY: the RingBuf owns its map fd and keeps it open, unchanged, for
    // as long as the AsyncFd owns the RingBuf.
    let mut fd = unsafe { AsyncFd::register(ring) }
        .map_err(|e| anyhow::anyhow!("cannot poll the event ring buffer: {e}"))?;
    // SAFETY: as above.
    let mut pool_fd = unsafe { AsyncFd::register(pool_ring) }
        .map_err(|e| anyhow::anyhow!("cannot poll the pool event ring buffer: {e}"))?;
    let mut out = std::io::BufWriter::new(std::io::stdout());
    // The BPF side only wakes us when a ring fills up (see `emit` in
    // ebpf/src/intervals.rs and ebpf/src/heap.rs); this tick picks up
    // everything else.
    let mut tick = tokio::time::interval(Duration::from_millis(pausewatch_common::EVENTS_DRAIN_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            guard = fd.readable_mut() => {
                let mut guard = guard.context("polling the event ring buffer")?;
                drain(guard.get_inner_mut(), &collector, &mut out)?;
                guard.clear_ready();
                false
            }
            guard = pool_fd.readable_mut() => {
                let mut guard = guard.context("polling the pool event ring buffer")?;
                drain_pools(guard.get_inner_mut(), &collector, &mut out)?;
                guard.clear_ready();
                false
            }
            _ = tick.tick() => {
                drain(fd.get_mut(), &collector, &mut out)?;
                drain_pools(pool_fd.get_mut(), &collector, &mut out)?;
                false
            }
            _ = stop.wait_for(|s| *s) => true,
        };
        if stopping {
            drain(fd.get_mut(), &collector, &mut out)?;
            drain_pools(pool_fd.get_mut(), &collector, &mut out)?;
            return Ok(());
        }
    }
}

/// Prints one [`PoolLine`] per record of the pool event ring.
fn drain_pools(
    ring: &mut RingBuf<MapData>,
    collector: &Mutex<Collector>,
    out: &mut impl Write,
) -> Result<()> {
    while let Some(item) = ring.next() {
        let Some(e) = crate::bpf::ring_record::<PoolEvent>(&item) else {
            continue;
        };
        let (runtime, manager, pool) = {
            let mut c = lock(collector);
            if !c.is_target(e.pid) {
                // Shared probes record undecided processes too; only
                // targets' lines are printed (see `drain`).
                continue;
            }
            (
                c.runtime_label(e.pid),
                c.heap_name(e.pid, e.manager),
                c.heap_name(e.pid, e.pool),
            )
        };
        serde_json::to_writer(&mut *out, &PoolLine::of(&e, runtime, &manager, &pool))?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

fn drain(
    ring: &mut RingBuf<MapData>,
    collector: &Mutex<Collector>,
    out: &mut impl Write,
) -> Result<()> {
    while let Some(item) = ring.next() {
        let Some(e) = crate::bpf::ring_record::<PauseEvent>(&item) else {
            continue;
        };
        let Some(kind) = Kind::from_u32(e.kind) else {
            continue;
        };
        let (cause, runtime) = {
            let mut c = lock(collector);
            if !c.is_target(e.pid) {
                // A process that shared probes recorded before the agent
                // decided about it: its pauses count in its histograms once
                // it is adopted, but its lines are not printed, since it
                // may never be a target.
                continue;
            }
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
            time_to_safepoint_ns: time_to_safepoint(kind, &e),
            driver: ThreadTimes::of(&e.state_ns),
            straggler: Straggler::of(&e),
        };
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// The time to safepoint an event carries: a HotSpot safepoint's once its
/// first VM operation named it, a Go stop-the-world's stopping time when the
/// runtime passed its clocks (Go 1.23+; 0 otherwise, as nothing can be 0 ns).
fn time_to_safepoint(kind: Kind, e: &PauseEvent) -> Option<u64> {
    match kind {
        Kind::Safepoint => (e.cause != 0).then_some(e.tts_ns),
        Kind::Stw => (e.tts_ns != 0).then_some(e.tts_ns),
        _ => None,
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
    writeln!(
        out,
        "support: {}",
        target.runtime.module().support(&target.version)
    )?;
    for line in target.runtime.module().describe(&target)? {
        writeln!(out, "{line}")?;
    }
    // Each file once: what the process names it and how the agent opened it.
    let mut files: Vec<&discovery::Binary> = Vec::new();
    for p in &target.probes {
        if !files.iter().any(|f| f.same_file(&p.binary)) {
            files.push(&p.binary);
        }
    }
    for f in files {
        writeln!(out, "file: {f} (opened through {})", f.via().display())?;
    }
    for p in &target.probes {
        let arg = match &p.arg {
            ProgramArg::None => String::new(),
            ProgramArg::Usdt(spec) if spec.loc == pausewatch_common::ARG_CONST => {
                format!(" arg0: constant {}", spec.val)
            }
            ProgramArg::Address(spec) => format!(" arg0: this process's address {:#x}", spec.val),
            ProgramArg::Usdt(spec) => format!(
                " arg0: {} bytes{} at pt_regs+{}",
                spec.size,
                if spec.signed != 0 { " signed" } else { "" },
                spec.reg_off
            ),
            ProgramArg::UsdtAll(set) => format!(
                " args: {}",
                set.specs
                    .iter()
                    .filter(|s| s.loc != pausewatch_common::ARG_NONE)
                    .count()
            ),
        };
        let semaphore = p
            .ref_ctr_offset
            .map(|o| format!(" semaphore: +{o:#x}"))
            .unwrap_or_default();
        writeln!(
            out,
            "  {:<28} {}+{:#x} -> {}{}{}",
            p.probe, p.binary, p.file_offset, p.program, arg, semaphore
        )?;
    }
    Ok(())
}
