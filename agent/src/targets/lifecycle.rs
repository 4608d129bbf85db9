//! The life of each traced process: found (exec event or start-up scan) →
//! inspected until its runtime shows (or given up) → attached → exited →
//! forgotten after the grace period.
//!
//! A runtime is often loaded after exec: the `java` launcher `dlopen`s
//! `libjvm.so` some milliseconds after it starts, and a launcher script
//! execs the JVM later still. So a new process that is wanted but shows no
//! runtime yet is inspected again on a back-off schedule ([`BACKOFF_MS`]),
//! about 10 s in all, then given up; its exit or next exec cancels or
//! restarts the schedule. The alternative, a tracepoint on `mmap`/`openat`
//! (`syscalls:sys_enter_openat` exists on this kernel), would see the library
//! load at once, but runs on every file open of every process on the node,
//! needs the file name read and matched in BPF for each runtime's library,
//! and still leaves the question of when the mapping is complete. The
//! schedule costs one read of `/proc/PID/{stat,exe,maps}` per attempt for
//! processes that are still running and not yet decided: measured at 71 µs
//! per attempt on this machine (release build, all processes of the host
//! inspected in a loop), the 25 attempts of a long-lived non-runtime process
//! cost ~1.8 ms of agent CPU spread over 10 s; a short-lived one stops
//! costing at its exit event.
//!
//! Measured by the churn test on this 2-core machine at load average 4 to
//! 16 (other builds running): `libjvm.so` is mapped 0-20 ms after the exec
//! of `java`; the agent attached 19 ms after that at best and 0.1 to 0.3 s
//! median, but in every run a few processes waited seconds (up to 9 s):
//! they were attached together, at one moment, so the one lifecycle
//! thread was blocked for that long. The suspect is a read of some other
//! process's `/proc/PID/maps`, which waits for that process's `mmap_lock`;
//! inspecting on a few worker threads, so that one stuck read delays only
//! its own process, is the next step.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
        mpsc::{Receiver, RecvTimeoutError},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::{
    bpf::Tracer,
    collect::{Collector, TargetInfo, lock, monotonic_ns},
    discovery::{self, DiscoveryError, Process, Target},
};

use super::{
    follow::ProcessChange,
    identity::{ByIdentity, ExitWatch, Identity, Seen},
    labels::{self, ContainerLabels},
    select::Selection,
};

/// Delays before each inspection of a new process, from the previous one
/// (the first is immediate): at most 100 ms apart for the first second and
/// a half, where runtimes load (a JVM maps `libjvm.so` 10 to 50 ms after
/// exec on an idle machine, up to a second on a loaded one), sparser later,
/// about 10 s in all (25 inspections).
pub const BACKOFF_MS: [u64; 25] = [
    0, 10, 20, 30, 40, 50, 50, 100, 100, 100, 100, 100, 100, 100, 100, 100, 250, 250, 250, 500,
    500, 1000, 1000, 2000, 2500,
];

/// The `reason` of `pausewatch_lost_events_total` counting processes left
/// untraced because `--max-targets` was reached.
pub const LOST_TARGET_LIMIT: &str = "target_limit";

/// What the lifecycle works on: the loaded tracer and the collector.
pub struct Ctx<'a> {
    /// Attaches and detaches uprobes.
    pub tracer: &'a mut Tracer,
    /// Reports targets and owns their histograms.
    pub collector: &'a Mutex<Collector>,
}

#[derive(Debug)]
enum State {
    /// Not decided yet: inspect at `next` (attempt number `attempt`).
    Pending { attempt: usize, next: Instant },
    /// Probes attached, by an inspection at this CLOCK_MONOTONIC time.
    Traced(u64),
    /// Exited at the instant: its series are still exported until the grace
    /// period ends.
    Exited(Instant),
}

#[derive(Debug)]
struct Entry {
    state: State,
    /// CLOCK_MONOTONIC of the exec that made it pending (0: found by scan).
    exec_ns: u64,
    /// The command name from that exec's event (`None`: found by scan or
    /// `--pid`, reconstructed from `/proc` at inspection instead).
    exec_comm: Option<String>,
    /// `/proc/PID/comm` as last reported to the collector (traced only),
    /// so that the sweep passes on a rename once.
    current_comm: String,
    /// The traced program (`/proc/PID/exe` when attached), so that the
    /// sweep notices an exec even when no exec event comes (`--pid` alone
    /// does not follow processes).
    exe: PathBuf,
    /// Set when traced: how the sweep tells that it exited.
    exit_watch: Option<ExitWatch>,
}

impl Entry {
    /// Whether the traced process `id` has exited (the sweep's question).
    fn has_exited(&self, id: Identity) -> bool {
        match &self.exit_watch {
            Some(watch) => watch.has_exited(),
            None => !id.is_alive(),
        }
    }

    /// To be inspected at `now`, after an exec at `exec_ns` (0: found by
    /// scan) that named it `exec_comm`.
    fn pending(now: Instant, exec_ns: u64, exec_comm: Option<String>) -> Entry {
        Entry {
            state: State::Pending {
                attempt: 0,
                next: now,
            },
            exec_ns,
            exec_comm,
            current_comm: String::new(),
            exe: PathBuf::new(),
            exit_watch: None,
        }
    }
}

/// Tracks every process the agent traces or is still deciding about.
pub struct Lifecycle {
    selection: Selection,
    max_targets: Option<usize>,
    forget_after: Duration,
    table: ByIdentity<Entry>,
    over_limit: Arc<AtomicU64>,
    me: u32,
}

/// How often exits are looked for in `/proc` (besides exit events) and
/// grace periods checked.
const SWEEP_EVERY: Duration = Duration::from_millis(500);

/// Longest run of back-off inspections between two looks at the event queue.
const INSPECT_SLICE: Duration = Duration::from_millis(10);

/// Longest run of event handling before inspections and the sweep get their
/// turn, so that an exec storm cannot starve them.
const EVENT_SLICE: Duration = Duration::from_millis(10);

/// Start time of a process known only from its exec event, not yet
/// inspected. (A process that really started at tick 0 is one of the boot's
/// first; it is found by the start-up scan and re-keyed harmlessly.)
const UNKNOWN_START: u64 = 0;

impl Lifecycle {
    /// A lifecycle for `selection`, keeping exited targets' series for
    /// `forget_after`.
    pub fn new(selection: Selection, max_targets: Option<usize>, forget_after: Duration) -> Self {
        Lifecycle {
            selection,
            max_targets,
            forget_after,
            table: ByIdentity::default(),
            over_limit: Arc::new(AtomicU64::new(0)),
            me: std::process::id(),
        }
    }

    /// Attaches a target found at start (`--pid`) and starts reporting it.
    pub fn adopt(
        &mut self,
        target: &Target,
        ctx: &mut Ctx<'_>,
    ) -> Result<usize, crate::bpf::BpfError> {
        let id = Identity {
            pid: target.process.pid,
            start_time: target.process.start_time,
        };
        let attached = ctx.tracer.attach(target)?;
        let info = target_info(target, labels::read(target.process.pid));
        lock(ctx.collector).add_target(info, target.runtime);
        self.table.insert(
            id,
            Entry {
                state: State::Traced(monotonic_ns()),
                exec_ns: 0,
                exec_comm: None,
                current_comm: target.process.current_comm.clone(),
                exe: target.process.exe.clone(),
                exit_watch: ExitWatch::open(id),
            },
        );
        Ok(attached.len())
    }

    /// Queues every running process for one inspection (start of `--all`,
    /// `--comm`, `--exe`): processes that were running before the agent
    /// have had their runtime loaded already, so they get no back-off.
    pub fn scan(&mut self, now: Instant) {
        if !self.selection.follows() {
            return;
        }
        let Ok(all) = procfs::process::all_processes() else {
            return;
        };
        for p in all.flatten() {
            let pid = p.pid as u32;
            let Ok(stat) = p.stat() else { continue };
            if pid == self.me || self.selection.exclude.contains(&pid) {
                continue;
            }
            let id = Identity {
                pid,
                start_time: stat.starttime,
            };
            if let Seen::New = self.table.seen(id) {
                self.table.insert(
                    id,
                    Entry {
                        state: State::Pending {
                            attempt: BACKOFF_MS.len() - 1,
                            next: now,
                        },
                        ..Entry::pending(now, 0, None)
                    },
                );
            }
        }
    }

    /// Handles one exec or exit.
    pub fn on_change(&mut self, change: ProcessChange, now: Instant, ctx: &mut Ctx<'_>) {
        log::debug!("{change:?}");
        match change {
            ProcessChange::Exec {
                pid,
                ktime_ns,
                comm,
            } => self.on_exec(pid, ktime_ns, comm, now, ctx),
            ProcessChange::Exit { pid } => self.on_exit(pid, now, ctx),
        }
    }

    fn on_exec(
        &mut self,
        pid: u32,
        ktime_ns: u64,
        comm: Option<String>,
        now: Instant,
        ctx: &mut Ctx<'_>,
    ) {
        if pid == self.me || self.selection.exclude.contains(&pid) {
            return;
        }
        let pending = Entry::pending(now, ktime_ns, comm);
        if self.table.get_mut(pid).is_none() {
            // The common case, kept free of system calls (a build execs
            // hundreds of processes a second): the start time is learnt at
            // the first inspection.
            if self.selection.follows() {
                self.table.insert(
                    Identity {
                        pid,
                        start_time: UNKNOWN_START,
                    },
                    pending,
                );
            }
            return;
        }
        let Some(id) = Identity::current(pid) else {
            return;
        };
        match self.table.seen(id) {
            Seen::Same(entry) => {
                if let State::Traced(inspected_ns) = entry.state {
                    if inspected_ns >= ktime_ns && entry.exec_comm == pending.exec_comm {
                        // Read late (a burst of events): the inspection
                        // that attached already saw this program. (With
                        // another name, it saw this program under the
                        // previous exec's name, e.g. a `#!/usr/bin/env
                        // node` script's, so it is selected and labelled
                        // again below.)
                        return;
                    }
                    // The same process runs another program now: its old
                    // probes point into an address space that is gone.
                    // (Detaching also drops its open intervals.)
                    ctx.tracer.detach(pid);
                }
                *entry = pending;
            }
            Seen::Reused => {
                // The pid's previous owner is gone: its series go now, so
                // they can never mix with the new process's.
                self.forget(pid, ctx);
                self.table.insert(id, pending);
            }
            Seen::New => {
                if !self.selection.follows() {
                    return;
                }
                self.table.insert(id, pending);
            }
        }
        // Not inspected here: the queue of events is read to its end first
        // (a burst of execs must not wait behind one slow /proc read), then
        // `run_due` inspects, youngest first.
    }

    fn on_exit(&mut self, pid: u32, now: Instant, ctx: &mut Ctx<'_>) {
        let Some((_, entry)) = self.table.get_mut(pid) else {
            return;
        };
        match entry.state {
            State::Traced(_) => self.exited(pid, now, ctx),
            State::Pending { .. } => {
                self.table.remove(pid);
            }
            State::Exited(_) => {}
        }
    }

    /// Does what is due at `now`: inspections and, with `sweep`, the
    /// liveness sweep (exits the event stream could not tell, e.g. `--pid`
    /// targets without following) and forgetting targets whose grace period
    /// is over.
    pub fn run_due(&mut self, now: Instant, sweep: bool, ctx: &mut Ctx<'_>) {
        let mut due = Vec::new();
        let mut gone = Vec::new();
        let mut execed = Vec::new();
        let mut forget = Vec::new();
        let mut renamed = Vec::new();
        for (id, e) in self.table.iter() {
            match e.state {
                State::Pending { next, attempt } if next <= now => {
                    due.push((id.pid, attempt, next))
                }
                State::Pending { .. } => {}
                State::Traced(_) if sweep && e.has_exited(id) => gone.push(id.pid),
                State::Traced(_) if sweep => {
                    if let Ok(exe) = std::fs::read_link(format!("/proc/{}/exe", id.pid))
                        && exe != e.exe
                    {
                        execed.push((id.pid, exe));
                    } else if let Some(now_comm) = read_comm(id.pid)
                        && now_comm != e.current_comm
                    {
                        renamed.push((id.pid, now_comm));
                    }
                }
                State::Traced(_) => {}
                State::Exited(at) if sweep && now.duration_since(at) >= self.forget_after => {
                    forget.push(id.pid)
                }
                State::Exited(_) => {}
            }
        }
        // The youngest processes first (their runtime is loading now), and
        // only for a slice of time, so that exec events queued meanwhile
        // are not left waiting behind a crowd of long-lived processes that
        // are still being looked at (a busy build host execs hundreds).
        due.sort_by_key(|&(_, attempt, next)| (attempt, next));
        let started = Instant::now();
        for (pid, _, _) in due {
            if started.elapsed() >= INSPECT_SLICE {
                break;
            }
            self.inspect(pid, now, ctx);
        }
        for pid in gone {
            self.exited(pid, now, ctx);
        }
        for (pid, exe) in execed {
            self.execed(pid, &exe, now, ctx);
        }
        for (pid, current) in renamed {
            lock(ctx.collector).set_current_comm(pid, &current);
            if let Some((_, e)) = self.table.get_mut(pid) {
                e.current_comm = current;
            }
        }
        for pid in forget {
            self.forget(pid, ctx);
            log::info!("pid {pid}: forgotten");
        }
    }

    /// When [`Lifecycle::run_due`] next has an inspection to do.
    pub fn next_due(&self) -> Option<Instant> {
        self.table
            .iter()
            .filter_map(|(_, e)| match e.state {
                State::Pending { next, .. } => Some(next),
                _ => None,
            })
            .min()
    }

    /// Pids with probes attached.
    pub fn traced(&self) -> Vec<u32> {
        self.table
            .iter()
            .filter(|(_, e)| matches!(e.state, State::Traced(_)))
            .map(|(id, _)| id.pid)
            .collect()
    }

    /// Processes tracked in any state (traced, pending, in grace).
    pub fn tracked(&self) -> usize {
        self.table.len()
    }

    /// Counter of processes left untraced because `--max-targets` was
    /// reached, readable from other threads.
    pub fn over_limit(&self) -> Arc<AtomicU64> {
        self.over_limit.clone()
    }

    /// Runs the lifecycle on a thread of its own until `changes` is closed,
    /// then hands the tracer back. Its own thread, because inspecting a
    /// process reads `/proc/PID/maps`, which waits for the process's
    /// `mmap_lock` and can take long while that process maps memory
    /// heavily (a linker, a starting JVM): that must delay neither the
    /// snapshots of `/metrics` nor the async runtime.
    pub fn spawn(
        mut self,
        mut tracer: Tracer,
        collector: Arc<Mutex<Collector>>,
        changes: Receiver<ProcessChange>,
    ) -> std::io::Result<JoinHandle<Tracer>> {
        std::thread::Builder::new()
            .name("lifecycle".into())
            .spawn(move || {
                let mut last_sweep = Instant::now();
                loop {
                    let now = Instant::now();
                    let sweep_at = last_sweep + SWEEP_EVERY;
                    let wake = self.next_due().map_or(sweep_at, |d| d.min(sweep_at));
                    let mut ctx = Ctx {
                        tracer: &mut tracer,
                        collector: &collector,
                    };
                    match changes.recv_timeout(wake.saturating_duration_since(now)) {
                        Ok(change) => {
                            self.on_change(change, Instant::now(), &mut ctx);
                            // New processes first: what is already queued goes
                            // before the retries, within a time slice.
                            let started = Instant::now();
                            while started.elapsed() < EVENT_SLICE
                                && let Ok(change) = changes.try_recv()
                            {
                                self.on_change(change, Instant::now(), &mut ctx);
                            }
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                    let now = Instant::now();
                    self.run_due(now, now >= sweep_at, &mut ctx);
                    if now >= sweep_at {
                        last_sweep = now;
                    }
                }
                tracer
            })
    }

    /// One inspection of a pending process: attach if its runtime is there,
    /// else schedule the next attempt or give up.
    fn inspect(&mut self, pid: u32, now: Instant, ctx: &mut Ctx<'_>) {
        let Some((id, entry)) = self.table.get_mut(pid) else {
            return;
        };
        let State::Pending { attempt, .. } = entry.state else {
            return;
        };
        let exec_ns = entry.exec_ns;
        let inspected_ns = monotonic_ns();
        let process = match Process::inspect_named(pid, entry.exec_comm.as_deref()) {
            Ok(p) if id.start_time == UNKNOWN_START => {
                // First look at a process known from its exec event.
                let known = Identity {
                    pid,
                    start_time: p.start_time,
                };
                if let Some((_, entry)) = self.table.remove(pid) {
                    self.table.insert(known, entry);
                }
                p
            }
            Ok(p) if p.start_time == id.start_time => p,
            // Gone, or replaced by a newer process whose exec event is
            // still to come.
            Ok(_) | Err(DiscoveryError::NoSuchProcess(_)) => {
                self.table.remove(pid);
                return;
            }
            Err(e) => {
                log::debug!("pid {pid}: {e}");
                self.retry_or_give_up(pid, attempt, now);
                return;
            }
        };
        if !self.selection.wants(pid, &process.comm, &process.exe) {
            // Only an exec can change the exec-time name or exe, and it
            // comes as an event.
            self.table.remove(pid);
            return;
        }
        let start_time = process.start_time;
        let target = match discovery::detect_in(process) {
            Ok(t) => t,
            Err(DiscoveryError::NoSupportedRuntime { .. }) => {
                self.retry_or_give_up(pid, attempt, now);
                return;
            }
            // Exited while its files were opened.
            Err(DiscoveryError::NoSuchProcess(_)) => {
                self.table.remove(pid);
                return;
            }
            Err(e) => {
                if exited_meanwhile(pid, start_time) {
                    log::info!("pid {pid}: exited while being inspected ({e})");
                } else {
                    eprintln!("pausewatch: not tracing pid {pid}: {e}");
                }
                self.table.remove(pid);
                return;
            }
        };
        if self
            .max_targets
            .is_some_and(|max| self.traced().len() >= max)
        {
            self.over_limit.fetch_add(1, Ordering::Relaxed);
            log::warn!("pid {pid}: not traced, --max-targets reached");
            self.table.remove(pid);
            return;
        }
        let attach_started = Instant::now();
        match ctx.tracer.attach(&target) {
            Ok(probes) => {
                let attach_ms = attach_started.elapsed().as_secs_f64() * 1e3;
                // Read once, here: the labels are a property of the process
                // for its life (its cgroup), not of an inspection.
                let info = target_info(&target, labels::read(pid));
                lock(ctx.collector).add_target(info, target.runtime);
                if let Some((id, e)) = self.table.get_mut(pid) {
                    e.state = State::Traced(inspected_ns);
                    e.exe = target.process.exe.clone();
                    e.current_comm = target.process.current_comm.clone();
                    e.exit_watch = ExitWatch::open(id);
                }
                let after = if exec_ns == 0 {
                    "found at start".to_string()
                } else {
                    format!(
                        "{:.1} ms after exec",
                        monotonic_ns().saturating_sub(exec_ns) as f64 / 1e6
                    )
                };
                eprintln!(
                    "pausewatch: tracing pid {pid} ({} {} {}), {} probes attached in \
                     {attach_ms:.1} ms, {after}",
                    target.process.comm,
                    target.runtime.label(),
                    target.version,
                    probes.len(),
                );
            }
            Err(e) if e.target_gone() || exited_meanwhile(pid, start_time) => {
                // The usual end of a short run (`node --version` before
                // the real program): nothing was missed, nothing to retry.
                log::info!("pid {pid}: exited while being attached ({e})");
                self.table.remove(pid);
            }
            Err(e) => {
                log::warn!("pid {pid}: {e}");
                self.retry_or_give_up(pid, attempt, now);
            }
        }
    }

    fn retry_or_give_up(&mut self, pid: u32, attempt: usize, now: Instant) {
        let next_attempt = attempt + 1;
        match BACKOFF_MS.get(next_attempt) {
            Some(&ms) => {
                if let Some((_, e)) = self.table.get_mut(pid) {
                    e.state = State::Pending {
                        attempt: next_attempt,
                        next: now + Duration::from_millis(ms),
                    };
                }
            }
            None => {
                self.table.remove(pid);
            }
        }
    }

    /// A traced process replaced its program: its probes point into an
    /// address space that is gone. Following processes, the new program is
    /// inspected like any exec'd one; otherwise the target is done.
    fn execed(&mut self, pid: u32, exe: &Path, now: Instant, ctx: &mut Ctx<'_>) {
        ctx.tracer.detach(pid);
        let follows = self.selection.follows();
        if let Some((_, e)) = self.table.get_mut(pid) {
            e.state = if follows {
                State::Pending {
                    attempt: 0,
                    next: now,
                }
            } else {
                State::Exited(now)
            };
        }
        eprintln!(
            "pausewatch: pid {pid} exec'd into {}; its probes are being detached, its last numbers \
             stay in /metrics for {} s{}",
            exe.display(),
            self.forget_after.as_secs_f64(),
            if follows {
                "; the new program is inspected"
            } else {
                ""
            }
        );
    }

    fn exited(&mut self, pid: u32, now: Instant, ctx: &mut Ctx<'_>) {
        // Also drops its open intervals: a thread that exited inside a pause
        // never sends the end.
        ctx.tracer.detach(pid);
        if let Some((_, e)) = self.table.get_mut(pid) {
            e.state = State::Exited(now);
        }
        eprintln!(
            "pausewatch: pid {pid} exited; its probes are being detached, its last numbers stay in \
             /metrics for {} s",
            self.forget_after.as_secs_f64()
        );
    }

    /// Drops everything about `pid` at once: probes and open intervals
    /// (one detach does both), histograms, target info.
    fn forget(&mut self, pid: u32, ctx: &mut Ctx<'_>) {
        ctx.tracer.detach(pid);
        lock(ctx.collector).forget(pid);
        self.table.remove(pid);
    }
}

/// Whether the process `pid` that started at `start_time` has exited (or
/// its pid names another process by now).
fn exited_meanwhile(pid: u32, start_time: u64) -> bool {
    !Identity { pid, start_time }.is_alive()
}

/// `/proc/PID/comm` without its newline, or `None` if the process is gone.
/// (Not `/proc/PID/stat`, which walks every thread of the process.)
fn read_comm(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(text.strip_suffix('\n').unwrap_or(&text).to_string())
}

/// What `pausewatch_target_info` says about a target in the container
/// `container` (read once per process, by the caller: see `labels::read`).
pub fn target_info(t: &Target, container: ContainerLabels) -> TargetInfo {
    TargetInfo {
        pid: t.process.pid,
        comm: t.process.comm.clone(),
        current_comm: if t.process.current_comm == t.process.comm {
            String::new()
        } else {
            t.process.current_comm.clone()
        },
        runtime: t.runtime.label(),
        runtime_version: t.version.clone(),
        exe: t.process.exe.display().to_string(),
        container,
    }
}
