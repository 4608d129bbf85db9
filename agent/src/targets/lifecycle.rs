//! The life of each traced process: found (exec event or start-up scan) →
//! inspected until its runtime shows (or given up) → attached → exited →
//! forgotten after the grace period.
//!
//! A runtime is often loaded after exec (the `java` launcher `dlopen`s
//! `libjvm.so` some milliseconds after it starts; a launcher script execs
//! the JVM later still), so a wanted process that shows no runtime yet is
//! inspected again on a back-off schedule ([`BACKOFF_MS`]), then given up;
//! its exit or next exec cancels or restarts the schedule. Polling `/proc`
//! rather than watching library loads, which would run on every file open of
//! every process on the node; the costs and the latencies measured are in
//! `docs/design.md` ("Target lifecycle").
//!
//! The state machine reaches the tracer, the collector and `/proc` only
//! through the traits of [`super::seams`], and takes the time as an
//! argument, so that its tests drive it with fakes, deterministically.

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
    bpf::{BpfError, Tracer},
    collect::{Collector, FileBacking, TargetInfo},
    discovery::{Discovered, DiscoveryError},
};

use super::{
    follow::ProcessChange,
    identity::{ByIdentity, Identity, Seen},
    labels::ContainerLabels,
    seams::{Attach, Host, SystemHost, TargetSink},
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
    /// Attaches and detaches uprobes (`bpf::Tracer`).
    pub tracer: &'a mut dyn Attach,
    /// Reports targets and owns their histograms (the collector).
    pub collector: &'a dyn TargetSink,
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
struct Entry<W> {
    state: State,
    /// CLOCK_MONOTONIC of the exec that made it pending (0: found by scan).
    exec_ns: u64,
    /// The command name from that exec's event (`None`: found by scan or
    /// `--pid`, reconstructed from `/proc` at inspection instead). Once
    /// traced, the name it was selected and labelled by, whichever way it
    /// was learnt: what a late exec event's name is compared with.
    exec_comm: Option<String>,
    /// `/proc/PID/comm` as last reported to the collector (traced only),
    /// so that the sweep passes on a rename once.
    current_comm: String,
    /// The traced program (`/proc/PID/exe` when attached), so that the
    /// sweep notices an exec even when no exec event comes (`--pid` alone
    /// does not follow processes).
    exe: PathBuf,
    /// Set when traced: how the sweep tells that it exited.
    exit_watch: Option<W>,
    /// Whether the collector reports numbers of this process (attached
    /// once, not forgotten yet). Kept across an exec, so that when the new
    /// program is given up, the old program's numbers are still forgotten
    /// after the grace period.
    reported: bool,
}

impl<W> Entry<W> {
    /// To be inspected at `now`, after an exec at `exec_ns` (0: found by
    /// scan) that named it `exec_comm`.
    fn pending(now: Instant, exec_ns: u64, exec_comm: Option<String>) -> Entry<W> {
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
            reported: false,
        }
    }
}

/// Tracks every process the agent traces or is still deciding about, as
/// the host `H` shows them (`/proc` outside tests).
pub struct Lifecycle<H: Host = SystemHost> {
    selection: Selection,
    max_targets: Option<usize>,
    forget_after: Duration,
    table: ByIdentity<Entry<H::ExitWatch>>,
    over_limit: Arc<AtomicU64>,
    me: u32,
    host: H,
}

/// How often exits are looked for in `/proc` (besides exit events) and
/// grace periods checked.
const SWEEP_EVERY: Duration = Duration::from_millis(500);

/// How often the sweep also reads each traced process's `/proc/PID/exe`
/// and `/proc/PID/comm`, to notice an exec that sent no event (`--pid`) and
/// a rename. Reading both at every sweep was a tenth of the agent's CPU at
/// 100 targets; a rename or such an exec shows up this much later instead.
const IDENTITY_EVERY: Duration = Duration::from_secs(2);

/// What [`Lifecycle::run_due`] looks at besides the inspections due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sweep {
    /// Nothing else.
    No,
    /// Exits the event stream could not tell (e.g. `--pid` targets without
    /// following), and grace periods that are over.
    Exits,
    /// Those, and whether a traced process has exec'd or renamed itself.
    Full,
}

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
    /// A lifecycle for `selection` on this host, keeping exited targets'
    /// series for `forget_after`.
    pub fn new(selection: Selection, max_targets: Option<usize>, forget_after: Duration) -> Self {
        Lifecycle::with_host(selection, max_targets, forget_after, SystemHost)
    }
}

impl<H: Host> Lifecycle<H> {
    /// A lifecycle for `selection` on `host`, keeping exited targets'
    /// series for `forget_after`.
    pub fn with_host(
        selection: Selection,
        max_targets: Option<usize>,
        forget_after: Duration,
        host: H,
    ) -> Self {
        Lifecycle {
            selection,
            max_targets,
            forget_after,
            table: ByIdentity::default(),
            over_limit: Arc::new(AtomicU64::new(0)),
            me: std::process::id(),
            host,
        }
    }

    /// Attaches a process discovered at start (`--pid`) and starts
    /// reporting it as a target; returns the number of probes attached.
    pub fn adopt(&mut self, discovered: &Discovered, ctx: &mut Ctx<'_>) -> Result<usize, BpfError> {
        let process = &discovered.process;
        let id = Identity {
            pid: process.pid,
            start_time: process.start_time,
        };
        let attached = ctx.tracer.attach(discovered)?;
        let info = target_info(discovered, self.host.labels(process.pid));
        ctx.collector.add(info, FileBacking::of(discovered));
        self.table.insert(
            id,
            Entry {
                state: State::Traced(self.host.monotonic_ns()),
                exec_ns: 0,
                exec_comm: None,
                current_comm: process.current_comm.clone(),
                exe: process.exe.clone(),
                exit_watch: self.host.watch_exit(id),
                reported: true,
            },
        );
        Ok(attached)
    }

    /// Queues every running process for one inspection (start of `--all`,
    /// `--comm`, `--exe`): processes that were running before the agent
    /// have had their runtime loaded already, so they get no back-off.
    pub fn scan(&mut self, now: Instant) {
        if !self.selection.follows() {
            return;
        }
        for id in self.host.processes() {
            if id.pid == self.me || self.selection.exclude.contains(&id.pid) {
                continue;
            }
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
            // Its exec admitted it on the BPF side (`bpf::shared`).
            ctx.tracer.reject(pid);
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
        let Some(id) = self.host.current(pid) else {
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
                *entry = Entry {
                    reported: entry.reported,
                    ..pending
                };
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
            State::Pending { .. } => self.drop_undecided(pid, now),
            State::Exited(_) => {}
        }
    }

    /// Does what is due at `now`: inspections, and what `sweep` asks for.
    pub fn run_due(&mut self, now: Instant, sweep: Sweep, ctx: &mut Ctx<'_>) {
        let identities = sweep == Sweep::Full;
        let sweep = sweep != Sweep::No;
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
                State::Traced(_) if sweep && self.host.has_exited(id, e.exit_watch.as_ref()) => {
                    gone.push(id.pid)
                }
                State::Traced(_) if identities => {
                    if let Some(exe) = self.host.exe(id.pid)
                        && exe != e.exe
                    {
                        execed.push((id.pid, exe));
                    } else if let Some(now_comm) = self.host.comm(id.pid)
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
        let started = self.host.now();
        for (pid, _, _) in due {
            if self.host.now().saturating_duration_since(started) >= INSPECT_SLICE {
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
            ctx.collector.rename(pid, &current);
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
}

impl Lifecycle {
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
                let mut last_identities = last_sweep;
                loop {
                    let now = Instant::now();
                    let sweep_at = last_sweep + SWEEP_EVERY;
                    let wake = self.next_due().map_or(sweep_at, |d| d.min(sweep_at));
                    let mut ctx = Ctx {
                        tracer: &mut tracer,
                        collector: collector.as_ref(),
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
                    let sweep = if now < sweep_at {
                        Sweep::No
                    } else if now.duration_since(last_identities) >= IDENTITY_EVERY {
                        last_identities = now;
                        Sweep::Full
                    } else {
                        Sweep::Exits
                    };
                    self.run_due(now, sweep, &mut ctx);
                    if sweep != Sweep::No {
                        last_sweep = now;
                    }
                }
                tracer
            })
    }
}

impl<H: Host> Lifecycle<H> {
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
        let inspected_ns = self.host.monotonic_ns();
        let process = match self.host.inspect(pid, entry.exec_comm.as_deref()) {
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
                self.give_up(pid, now, ctx);
                return;
            }
            Err(e) => {
                log::debug!("pid {pid}: {e}");
                self.retry_or_give_up(pid, attempt, now, ctx);
                return;
            }
        };
        if !self.selection.wants(pid, &process.comm, &process.exe) {
            // Only an exec can change the exec-time name or exe, and it
            // comes as an event.
            self.give_up(pid, now, ctx);
            return;
        }
        let start_time = process.start_time;
        let discovered = match self.host.detect(process) {
            Ok(t) => t,
            Err(DiscoveryError::NoSupportedRuntime { .. }) => {
                self.retry_or_give_up(pid, attempt, now, ctx);
                return;
            }
            // Exited while its files were opened.
            Err(DiscoveryError::NoSuchProcess(_)) => {
                self.give_up(pid, now, ctx);
                return;
            }
            Err(e) => {
                if self.exited_meanwhile(pid, start_time) {
                    log::info!("pid {pid}: exited while being inspected ({e})");
                } else {
                    eprintln!("pausewatch: not tracing pid {pid}: {e}");
                }
                self.give_up(pid, now, ctx);
                return;
            }
        };
        if self
            .max_targets
            .is_some_and(|max| self.traced().len() >= max)
        {
            self.over_limit.fetch_add(1, Ordering::Relaxed);
            log::warn!("pid {pid}: not traced, --max-targets reached");
            self.give_up(pid, now, ctx);
            return;
        }
        // Inspection and runtime detection (the parse cache's share).
        let found_ms = self.host.monotonic_ns().saturating_sub(inspected_ns) as f64 / 1e6;
        let attach_started = self.host.now();
        match ctx.tracer.attach(&discovered) {
            Ok(probes) => {
                let attach_ms = self
                    .host
                    .now()
                    .saturating_duration_since(attach_started)
                    .as_secs_f64()
                    * 1e3;
                // Read once, here: the labels are a property of the process
                // for its life (its cgroup), not of an inspection.
                let info = target_info(&discovered, self.host.labels(pid));
                ctx.collector.add(info, FileBacking::of(&discovered));
                let exit_watch = self.host.watch_exit(Identity { pid, start_time });
                if let Some((_, e)) = self.table.get_mut(pid) {
                    e.state = State::Traced(inspected_ns);
                    e.exe = discovered.process.exe.clone();
                    e.current_comm = discovered.process.current_comm.clone();
                    // A process found by the start scan just after its exec
                    // has that exec's event still queued: it must compare
                    // equal to what this inspection saw, or the process
                    // would be detached and attached again for nothing.
                    e.exec_comm = Some(discovered.process.comm.clone());
                    e.exit_watch = exit_watch;
                    e.reported = true;
                }
                let after = if exec_ns == 0 {
                    "found at start".to_string()
                } else {
                    format!(
                        "{:.1} ms after exec",
                        self.host.monotonic_ns().saturating_sub(exec_ns) as f64 / 1e6
                    )
                };
                eprintln!(
                    "pausewatch: tracing pid {pid} ({} {} {}), found in {found_ms:.2} ms, \
                     {} probes attached in {attach_ms:.1} ms, {after}",
                    discovered.process.comm,
                    discovered.runtime.label(),
                    discovered.version,
                    probes,
                );
            }
            Err(e) if e.process_gone() || self.exited_meanwhile(pid, start_time) => {
                // The usual end of a short run (`node --version` before
                // the real program): nothing was missed, nothing to retry.
                log::info!("pid {pid}: exited while being attached ({e})");
                self.give_up(pid, now, ctx);
            }
            Err(e) => {
                log::warn!("pid {pid}: {e}");
                self.retry_or_give_up(pid, attempt, now, ctx);
            }
        }
    }

    fn retry_or_give_up(&mut self, pid: u32, attempt: usize, now: Instant, ctx: &mut Ctx<'_>) {
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
            None => self.give_up(pid, now, ctx),
        }
    }

    /// Stops deciding about `pid`. A process whose earlier program was a
    /// target (it exec'd away since) leaves like an exited target: that
    /// program's numbers stay for the grace period, then are forgotten, so
    /// that they never outlive it nor mix with a later owner of the pid.
    /// Any other process is just dropped.
    ///
    /// Either way the process is no longer recorded: shared probes record
    /// a process from its exec until it is decided (`bpf::shared`).
    fn give_up(&mut self, pid: u32, now: Instant, ctx: &mut Ctx<'_>) {
        ctx.tracer.reject(pid);
        self.drop_undecided(pid, now);
    }

    /// [`Lifecycle::give_up`] for a process that exited: the BPF side
    /// stopped recording it at its exit already, and rejecting it here
    /// could hit a new process that reuses its pid.
    fn drop_undecided(&mut self, pid: u32, now: Instant) {
        match self.table.get_mut(pid) {
            Some((_, e)) if e.reported => e.state = State::Exited(now),
            Some(_) => {
                self.table.remove(pid);
            }
            None => {}
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
            "pausewatch: pid {pid} exec'd into {}; its probes are released, its last numbers \
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
        ctx.collector.exited(pid);
        if let Some((_, e)) = self.table.get_mut(pid) {
            e.state = State::Exited(now);
        }
        eprintln!(
            "pausewatch: pid {pid} exited; its probes are released, its last numbers stay in \
             /metrics for {} s",
            self.forget_after.as_secs_f64()
        );
    }

    /// Drops everything about `pid` at once: probes and open intervals
    /// (one detach does both), histograms, target info.
    fn forget(&mut self, pid: u32, ctx: &mut Ctx<'_>) {
        ctx.tracer.detach(pid);
        ctx.collector.forget(pid);
        self.table.remove(pid);
    }

    /// Whether the process `pid` that started at `start_time` has exited (or
    /// its pid names another process by now).
    fn exited_meanwhile(&self, pid: u32, start_time: u64) -> bool {
        !self.host.is_alive(Identity { pid, start_time })
    }
}

/// What `pausewatch_target_info` says about a discovered process once it is
/// a target, in the container `container` (read once per process, by the
/// caller: see `labels::read`).
pub fn target_info(discovered: &Discovered, container: ContainerLabels) -> TargetInfo {
    let p = &discovered.process;
    TargetInfo {
        pid: p.pid,
        comm: p.comm.clone(),
        current_comm: if p.current_comm == p.comm {
            String::new()
        } else {
            p.current_comm.clone()
        },
        runtime: discovered.runtime,
        runtime_version: discovered.version.clone(),
        exe: p.exe.display().to_string(),
        container,
    }
}

#[cfg(test)]
mod tests {
    //! The state machine driven by fakes: a scripted host (processes that
    //! exec, load a runtime, exit, hand their pid on), a tracer that records
    //! what is attached, and a collector that holds what is reported. Time
    //! only moves when a test says so.

    use std::{cell::RefCell, collections::HashMap};

    use super::*;
    use crate::{discovery::Process, runtimes::Runtime};

    /// Above the kernel's largest pid (`PID_MAX_LIMIT`, 2^22): never the pid
    /// of the test process, which the lifecycle leaves out.
    const PID: u32 = 5_000_001;

    /// One process of the fake host.
    #[derive(Clone, Debug)]
    struct Proc {
        start_time: u64,
        comm: String,
        exe: PathBuf,
        current_comm: String,
        /// What detection finds in it now.
        runtime: Option<Runtime>,
    }

    fn proc(start_time: u64, exe: &str, runtime: Option<Runtime>) -> Proc {
        let comm = Path::new(exe)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Proc {
            start_time,
            current_comm: comm.clone(),
            comm,
            exe: PathBuf::from(exe),
            runtime,
        }
    }

    /// The running processes, the clocks, and counts of what was read.
    struct FakeHost {
        procs: HashMap<u32, Proc>,
        now: Instant,
        monotonic_ns: u64,
        inspections: RefCell<usize>,
        label_reads: RefCell<Vec<u32>>,
    }

    impl FakeHost {
        fn new(now: Instant) -> FakeHost {
            FakeHost {
                procs: HashMap::new(),
                now,
                monotonic_ns: 1_000,
                inspections: RefCell::new(0),
                label_reads: RefCell::new(Vec::new()),
            }
        }
    }

    impl Host for FakeHost {
        /// The process watched: it has exited when it is no longer the one
        /// running as its pid.
        type ExitWatch = Identity;

        fn processes(&self) -> Vec<Identity> {
            self.procs
                .iter()
                .map(|(&pid, p)| Identity {
                    pid,
                    start_time: p.start_time,
                })
                .collect()
        }

        fn current(&self, pid: u32) -> Option<Identity> {
            self.procs.get(&pid).map(|p| Identity {
                pid,
                start_time: p.start_time,
            })
        }

        fn inspect(&self, pid: u32, exec_comm: Option<&str>) -> Result<Process, DiscoveryError> {
            *self.inspections.borrow_mut() += 1;
            let p = self
                .procs
                .get(&pid)
                .ok_or(DiscoveryError::NoSuchProcess(pid))?;
            Ok(Process {
                pid,
                comm: exec_comm.map_or_else(|| p.comm.clone(), str::to_string),
                current_comm: p.current_comm.clone(),
                exe: p.exe.clone(),
                start_time: p.start_time,
                mapped: Vec::new(),
            })
        }

        fn detect(&self, process: Process) -> Result<Discovered, DiscoveryError> {
            match self.procs.get(&process.pid).and_then(|p| p.runtime) {
                Some(runtime) => Ok(Discovered {
                    version: format!("{} 1.0", runtime.label()),
                    process,
                    runtime,
                    probes: Vec::new(),
                }),
                None => Err(DiscoveryError::NoSupportedRuntime {
                    pid: process.pid,
                    comm: process.comm,
                    supported: String::new(),
                }),
            }
        }

        fn labels(&self, pid: u32) -> ContainerLabels {
            self.label_reads.borrow_mut().push(pid);
            ContainerLabels {
                container_id: format!("container-of-{pid}"),
                ..ContainerLabels::default()
            }
        }

        fn exe(&self, pid: u32) -> Option<PathBuf> {
            self.procs.get(&pid).map(|p| p.exe.clone())
        }

        fn comm(&self, pid: u32) -> Option<String> {
            self.procs.get(&pid).map(|p| p.current_comm.clone())
        }

        fn watch_exit(&self, id: Identity) -> Option<Identity> {
            self.is_alive(id).then_some(id)
        }

        fn has_exited(&self, id: Identity, watch: Option<&Identity>) -> bool {
            !self.is_alive(*watch.unwrap_or(&id))
        }

        fn now(&self) -> Instant {
            self.now
        }

        fn monotonic_ns(&self) -> u64 {
            self.monotonic_ns
        }
    }

    /// Records attaches and detaches; fails the attaches it is told to.
    #[derive(Default)]
    struct FakeTracer {
        attached: Vec<u32>,
        detached: Vec<u32>,
        rejected: Vec<u32>,
        fail: HashMap<u32, fn() -> BpfError>,
    }

    impl Attach for FakeTracer {
        fn attach(&mut self, discovered: &Discovered) -> Result<usize, BpfError> {
            let pid = discovered.process.pid;
            if let Some(error) = self.fail.get(&pid) {
                return Err(error());
            }
            self.attached.push(pid);
            Ok(6)
        }

        fn detach(&mut self, pid: u32) {
            self.detached.push(pid);
        }

        fn reject(&mut self, pid: u32) {
            self.rejected.push(pid);
        }
    }

    /// What `/metrics` would show: the targets reported, and who was
    /// forgotten.
    #[derive(Default)]
    struct FakeReport {
        targets: RefCell<HashMap<u32, TargetInfo>>,
        forgotten: RefCell<Vec<u32>>,
    }

    impl TargetSink for FakeReport {
        fn add(&self, info: TargetInfo, _: FileBacking) {
            self.targets.borrow_mut().insert(info.pid, info);
        }

        fn exited(&self, _: u32) {}

        fn rename(&self, pid: u32, current_comm: &str) {
            if let Some(info) = self.targets.borrow_mut().get_mut(&pid) {
                info.current_comm = current_comm.to_string();
            }
        }

        fn forget(&self, pid: u32) {
            self.targets.borrow_mut().remove(&pid);
            self.forgotten.borrow_mut().push(pid);
        }
    }

    impl FakeReport {
        fn exe_of(&self, pid: u32) -> Option<String> {
            self.targets.borrow().get(&pid).map(|i| i.exe.clone())
        }
    }

    const GRACE: Duration = Duration::from_secs(30);

    /// A lifecycle under `--all` on a fake host, with its tracer and
    /// collector, and the time of the test.
    struct World {
        lifecycle: Lifecycle<FakeHost>,
        tracer: FakeTracer,
        report: FakeReport,
        now: Instant,
    }

    impl World {
        fn new(selection: Selection) -> World {
            let now = Instant::now();
            World {
                lifecycle: Lifecycle::with_host(selection, None, GRACE, FakeHost::new(now)),
                tracer: FakeTracer::default(),
                report: FakeReport::default(),
                now,
            }
        }

        fn all() -> World {
            World::new(Selection {
                all: true,
                ..Selection::default()
            })
        }

        /// `--pid PID` of a JVM, adopted at start as `agent run` does.
        fn adopted_java() -> World {
            let mut w = World::new(Selection {
                pids: vec![PID],
                ..Selection::default()
            });
            w.host()
                .procs
                .insert(PID, proc(100, "/usr/bin/java", Some(Runtime::HotSpot)));
            let process = w.lifecycle.host.inspect(PID, None).unwrap();
            let discovered = w.lifecycle.host.detect(process).unwrap();
            let mut ctx = Ctx {
                tracer: &mut w.tracer,
                collector: &w.report,
            };
            assert_eq!(w.lifecycle.adopt(&discovered, &mut ctx).unwrap(), 6);
            w
        }

        fn host(&mut self) -> &mut FakeHost {
            &mut self.lifecycle.host
        }

        /// Moves both clocks on by `by`.
        fn advance(&mut self, by: Duration) {
            self.now += by;
            let now = self.now;
            let host = self.host();
            host.now = now;
            host.monotonic_ns += by.as_nanos() as u64;
        }

        /// The kernel's exec event for `pid`, stamped now, naming it after
        /// the program it runs.
        fn exec(&mut self, pid: u32) {
            let comm = self.lifecycle.host.procs.get(&pid).map(|p| p.comm.clone());
            let change = ProcessChange::Exec {
                pid,
                ktime_ns: self.lifecycle.host.monotonic_ns,
                comm,
            };
            self.change(change);
        }

        /// `pid` starts running `p` (a new process or an exec), and its
        /// exec event comes.
        fn exec_as(&mut self, pid: u32, p: Proc) {
            self.host().procs.insert(pid, p);
            self.exec(pid);
        }

        /// `pid` exits, and its exit event comes.
        fn exit(&mut self, pid: u32) {
            self.host().procs.remove(&pid);
            self.change(ProcessChange::Exit { pid });
        }

        fn change(&mut self, change: ProcessChange) {
            let mut ctx = Ctx {
                tracer: &mut self.tracer,
                collector: &self.report,
            };
            self.lifecycle.on_change(change, self.now, &mut ctx);
        }

        /// What is due now, with the sweep.
        fn run(&mut self) {
            self.run_due(true);
        }

        fn run_due(&mut self, sweep: bool) {
            let mut ctx = Ctx {
                tracer: &mut self.tracer,
                collector: &self.report,
            };
            let sweep = if sweep { Sweep::Full } else { Sweep::No };
            self.lifecycle.run_due(self.now, sweep, &mut ctx);
        }

        /// Runs whatever is due until nothing is pending, moving the clock
        /// to each next inspection; returns how long that took.
        fn run_until_decided(&mut self) -> Duration {
            let started = self.now;
            self.run_due(false);
            while let Some(next) = self.lifecycle.next_due() {
                self.advance(next.saturating_duration_since(self.now));
                self.run_due(false);
            }
            self.now - started
        }
    }

    #[test]
    fn an_exec_into_a_runtime_is_attached_and_reported_once_labelled() {
        let mut w = World::all();
        w.exec_as(PID, proc(100, "/usr/bin/java", Some(Runtime::HotSpot)));
        // Nothing is read from /proc while events are handled.
        assert_eq!(*w.lifecycle.host.inspections.borrow(), 0);
        assert!(w.tracer.attached.is_empty());

        w.run();
        assert_eq!(w.tracer.attached, [PID]);
        assert_eq!(w.lifecycle.traced(), [PID]);
        let info = w.report.targets.borrow()[&PID].clone();
        assert_eq!(info.comm, "java");
        assert_eq!(info.runtime, Runtime::HotSpot);
        assert_eq!(info.exe, "/usr/bin/java");
        assert_eq!(info.container.container_id, format!("container-of-{PID}"));
        // The container labels were read once for the new target.
        assert_eq!(*w.lifecycle.host.label_reads.borrow(), [PID]);
        assert_eq!(w.lifecycle.next_due(), None);
    }

    #[test]
    fn an_exit_detaches_at_once_and_keeps_the_numbers_for_the_grace_period() {
        let mut w = World::all();
        w.exec_as(
            PID,
            proc(100, "/usr/bin/python3.11", Some(Runtime::CPython)),
        );
        w.run();
        assert_eq!(w.lifecycle.traced(), [PID]);

        w.advance(Duration::from_secs(5));
        w.exit(PID);
        assert_eq!(w.tracer.detached, [PID]);
        assert!(w.lifecycle.traced().is_empty());
        // Still exported, still tracked.
        assert!(w.report.exe_of(PID).is_some());
        assert!(w.report.forgotten.borrow().is_empty());
        assert_eq!(w.lifecycle.tracked(), 1);

        w.advance(GRACE);
        w.run();
        assert_eq!(*w.report.forgotten.borrow(), [PID]);
        assert_eq!(w.report.exe_of(PID), None);
        assert_eq!(w.lifecycle.tracked(), 0);
    }

    #[test]
    fn exited_targets_are_forgotten_at_the_first_sweep_after_the_grace_period() {
        let mut w = World::all();
        w.exec_as(PID, proc(100, "/usr/bin/java", Some(Runtime::HotSpot)));
        w.run();
        w.exit(PID);

        w.advance(GRACE - Duration::from_millis(1));
        w.run();
        assert!(w.report.forgotten.borrow().is_empty(), "forgotten early");
        w.advance(Duration::from_millis(1));
        // Grace periods are only checked by the sweep.
        w.run_due(false);
        assert!(
            w.report.forgotten.borrow().is_empty(),
            "forgotten without sweep"
        );
        w.run_due(true);
        assert_eq!(*w.report.forgotten.borrow(), [PID]);
        assert_eq!(w.lifecycle.tracked(), 0);
    }

    #[test]
    fn an_exit_without_an_event_is_found_by_the_sweep() {
        // `--pid` alone does not follow processes: no exit event comes.
        let mut w = World::adopted_java();
        assert_eq!(w.lifecycle.traced(), [PID]);
        assert_eq!(*w.lifecycle.host.label_reads.borrow(), [PID]);

        w.host().procs.remove(&PID);
        w.run_due(false);
        assert!(
            w.tracer.detached.is_empty(),
            "exits are the sweep's to find"
        );
        w.run();
        assert_eq!(w.tracer.detached, [PID]);
        assert!(w.report.exe_of(PID).is_some());
        w.advance(GRACE);
        w.run();
        assert_eq!(*w.report.forgotten.borrow(), [PID]);
    }

    #[test]
    fn a_reused_pid_is_a_new_target_and_the_old_numbers_go_first() {
        let mut w = World::all();
        w.exec_as(PID, proc(100, "/usr/bin/java", Some(Runtime::HotSpot)));
        w.run();
        w.advance(Duration::from_secs(1));
        w.exit(PID);
        assert_eq!(w.report.exe_of(PID).as_deref(), Some("/usr/bin/java"));

        // Within the grace period, another process gets the pid.
        w.advance(Duration::from_secs(1));
        w.exec_as(PID, proc(200, "/usr/local/bin/node", Some(Runtime::V8)));
        // The predecessor's series are gone before anything of the new
        // process is reported.
        assert_eq!(*w.report.forgotten.borrow(), [PID]);
        assert_eq!(w.report.exe_of(PID), None);

        w.run();
        assert_eq!(w.tracer.attached, [PID, PID]);
        assert_eq!(w.lifecycle.traced(), [PID]);
        let info = w.report.targets.borrow()[&PID].clone();
        assert_eq!(
            (info.exe.as_str(), info.runtime),
            ("/usr/local/bin/node", Runtime::V8)
        );
        // The old process's grace period does not forget the new one.
        w.advance(GRACE);
        w.run();
        assert_eq!(*w.report.forgotten.borrow(), [PID]);
        assert_eq!(w.lifecycle.traced(), [PID]);
    }

    #[test]
    fn a_reused_pid_whose_exit_was_missed_is_detached_and_forgotten() {
        let mut w = World::all();
        w.exec_as(PID, proc(100, "/usr/bin/java", Some(Runtime::HotSpot)));
        w.run();
        // The exit event was dropped (a full queue): only the exec of the
        // pid's next owner comes.
        w.exec_as(
            PID,
            proc(200, "/usr/bin/python3.11", Some(Runtime::CPython)),
        );
        assert_eq!(w.tracer.detached, [PID]);
        assert_eq!(*w.report.forgotten.borrow(), [PID]);
        w.run();
        assert_eq!(w.report.exe_of(PID).as_deref(), Some("/usr/bin/python3.11"));
    }

    #[test]
    fn a_target_that_execs_a_program_without_a_runtime_is_detached() {
        let mut w = World::all();
        w.exec_as(PID, proc(100, "/usr/bin/java", Some(Runtime::HotSpot)));
        w.run();
        assert_eq!(w.lifecycle.traced(), [PID]);

        // Same process (same start time), another program.
        w.advance(Duration::from_secs(1));
        w.exec_as(PID, proc(100, "/usr/bin/sleep", None));
        assert_eq!(w.tracer.detached, [PID]);
        assert!(w.lifecycle.traced().is_empty());
        // The new program is inspected through the whole back-off, then
        // given up, and never attached.
        w.run_until_decided();
        assert_eq!(w.tracer.attached, [PID]);
        assert_eq!(w.lifecycle.next_due(), None);
        assert!(w.lifecycle.traced().is_empty());
    }

    #[test]
    fn the_numbers_of_a_target_that_execd_away_go_after_the_grace_period() {
        let mut w = World::all();
        w.exec_as(PID, proc(100, "/usr/bin/java", Some(Runtime::HotSpot)));
        w.run();
        w.exec_as(PID, proc(100, "/usr/bin/sleep", None));
        let took = w.run_until_decided();
        assert!(took < GRACE);
        // The JVM's numbers are still exported...
        assert_eq!(w.report.exe_of(PID).as_deref(), Some("/usr/bin/java"));
        // ...until the grace period, counted from the give-up, is over.
        w.advance(GRACE);
        w.run();
        assert_eq!(*w.report.forgotten.borrow(), [PID]);
        assert_eq!(w.lifecycle.tracked(), 0);

        // So a later owner of the pid starts from zero.
        w.exit(PID);
        w.exec_as(
            PID,
            proc(300, "/usr/bin/python3.11", Some(Runtime::CPython)),
        );
        w.run();
        assert_eq!(*w.report.forgotten.borrow(), [PID]);
        assert_eq!(w.report.exe_of(PID).as_deref(), Some("/usr/bin/python3.11"));
    }

    #[test]
    fn a_target_that_execd_away_and_exits_while_pending_keeps_its_numbers_for_the_grace_period() {
        let mut w = World::all();
        w.exec_as(PID, proc(100, "/usr/bin/java", Some(Runtime::HotSpot)));
        w.run();
        w.exec_as(PID, proc(100, "/bin/sh", None));
        w.run();
        w.exit(PID);
        assert_eq!(w.report.exe_of(PID).as_deref(), Some("/usr/bin/java"));
        w.advance(GRACE);
        w.run();
        assert_eq!(*w.report.forgotten.borrow(), [PID]);
        assert_eq!(w.lifecycle.tracked(), 0);
    }

    #[test]
    fn an_exec_seen_by_the_sweep_only_detaches_too() {
        // `--pid` alone: no exec event, the sweep sees another exe.
        let mut w = World::adopted_java();

        w.host()
            .procs
            .insert(PID, proc(100, "/usr/bin/sleep", None));
        w.run();
        assert_eq!(w.tracer.detached, [PID]);
        assert!(w.lifecycle.traced().is_empty());
        // Not followed: done, its numbers kept for the grace period.
        assert_eq!(w.lifecycle.next_due(), None);
        w.advance(GRACE);
        w.run();
        assert_eq!(*w.report.forgotten.borrow(), [PID]);
    }

    #[test]
    fn a_late_exec_event_of_the_attached_program_changes_nothing() {
        let mut w = World::all();
        w.host()
            .procs
            .insert(PID, proc(100, "/usr/bin/java", Some(Runtime::HotSpot)));
        let stamped = w.lifecycle.host.monotonic_ns;
        w.exec(PID);
        w.advance(Duration::from_millis(5));
        w.run();
        // The same exec's event read again after the inspection that
        // attached (a burst of events): older than the inspection.
        w.change(ProcessChange::Exec {
            pid: PID,
            ktime_ns: stamped,
            comm: Some("java".into()),
        });
        assert!(w.tracer.detached.is_empty());
        assert_eq!(w.lifecycle.traced(), [PID]);
    }

    /// The start scan meets a process whose exec event is still queued
    /// (exec'd after the probes were armed, before the scan read `/proc`).
    #[test]
    fn a_process_found_by_the_scan_ignores_its_own_queued_exec_event() {
        let mut w = World::all();
        w.host()
            .procs
            .insert(PID, proc(100, "/usr/bin/java", Some(Runtime::HotSpot)));
        let execed = w.lifecycle.host.monotonic_ns;
        w.advance(Duration::from_millis(1));
        let now = w.now;
        w.lifecycle.scan(now);
        w.run();
        assert_eq!(w.tracer.attached, [PID]);
        w.change(ProcessChange::Exec {
            pid: PID,
            ktime_ns: execed,
            comm: Some("java".into()),
        });
        w.run();
        assert!(w.tracer.detached.is_empty());
        assert_eq!(w.tracer.attached, [PID]);
        assert_eq!(w.lifecycle.traced(), [PID]);
    }

    #[test]
    fn a_runtime_that_loads_after_exec_is_found_by_the_back_off() {
        let mut w = World::all();
        // `java` execs; libjvm.so is not mapped yet.
        w.exec_as(PID, proc(100, "/usr/bin/java", None));
        let mut schedule = Vec::new();
        w.run();
        for _ in 0..4 {
            let next = w.lifecycle.next_due().unwrap();
            schedule.push(next - w.now);
            w.advance(next - w.now);
            w.run();
        }
        let ms: Vec<u64> = schedule.iter().map(|d| d.as_millis() as u64).collect();
        assert_eq!(ms, BACKOFF_MS[1..5]);
        assert!(w.tracer.attached.is_empty());
        // Not due yet: nothing is inspected.
        let inspections = *w.lifecycle.host.inspections.borrow();
        w.advance(Duration::from_millis(BACKOFF_MS[5] - 1));
        w.run();
        assert_eq!(*w.lifecycle.host.inspections.borrow(), inspections);

        // The library is mapped now; the next attempt attaches.
        w.host().procs.get_mut(&PID).unwrap().runtime = Some(Runtime::HotSpot);
        w.advance(Duration::from_millis(1));
        w.run();
        assert_eq!(w.tracer.attached, [PID]);
        assert_eq!(*w.lifecycle.host.inspections.borrow(), inspections + 1);
        assert_eq!(w.lifecycle.next_due(), None);
    }

    #[test]
    fn a_process_without_a_runtime_is_given_up_after_the_back_off() {
        let mut w = World::all();
        w.exec_as(PID, proc(100, "/usr/bin/make", None));
        let took = w.run_until_decided();
        assert_eq!(
            took,
            Duration::from_millis(BACKOFF_MS.iter().sum()),
            "about 10 s in all"
        );
        assert_eq!(*w.lifecycle.host.inspections.borrow(), BACKOFF_MS.len());
        assert_eq!(w.lifecycle.tracked(), 0);
        assert!(w.tracer.attached.is_empty());
        assert_eq!(w.tracer.rejected, [PID], "recorded until it was given up");
    }

    #[test]
    fn an_exit_or_an_exec_cancels_or_restarts_the_back_off() {
        let mut w = World::all();
        w.exec_as(PID, proc(100, "/bin/sh", None));
        for _ in 0..10 {
            w.run();
            let next = w.lifecycle.next_due().unwrap();
            w.advance(next - w.now);
        }
        // The shell execs the JVM: inspected at once, from the start of the
        // schedule.
        w.exec_as(PID, proc(100, "/usr/bin/java", None));
        assert_eq!(w.lifecycle.next_due(), Some(w.now));
        w.run();
        assert_eq!(
            w.lifecycle.next_due(),
            Some(w.now + Duration::from_millis(BACKOFF_MS[1]))
        );
        w.exit(PID);
        assert_eq!(w.lifecycle.next_due(), None);
        assert_eq!(w.lifecycle.tracked(), 0);
    }

    #[test]
    fn processes_found_at_start_get_one_inspection() {
        let mut w = World::all();
        w.host()
            .procs
            .insert(PID, proc(100, "/usr/bin/java", Some(Runtime::HotSpot)));
        w.host().procs.insert(PID + 1, proc(100, "/bin/bash", None));
        let now = w.now;
        w.lifecycle.scan(now);
        w.run();
        assert_eq!(w.tracer.attached, [PID]);
        // No back-off for a process that was running already.
        assert_eq!(w.lifecycle.next_due(), None);
        assert_eq!(w.lifecycle.tracked(), 1);
    }

    #[test]
    fn a_process_that_exits_while_being_attached_is_dropped_without_retry() {
        let mut w = World::all();
        w.host()
            .procs
            .insert(PID, proc(100, "/usr/bin/node", Some(Runtime::V8)));
        w.tracer.fail.insert(PID, || BpfError::Attach {
            probe: "v8:gc".into(),
            binary: PathBuf::from("/usr/bin/node"),
            offset: 0x1000,
            pid: PID,
            source: Box::new(aya::programs::ProgramError::SyscallError(
                aya::sys::SyscallError {
                    call: "perf_event_open",
                    io_error: std::io::Error::from_raw_os_error(libc::ESRCH),
                },
            )),
        });
        w.exec(PID);
        w.run();
        assert_eq!(w.lifecycle.tracked(), 0);
        assert_eq!(w.lifecycle.next_due(), None);
        assert!(w.report.targets.borrow().is_empty());
    }

    #[test]
    fn an_attach_failure_of_a_live_process_is_retried() {
        let mut w = World::all();
        w.host()
            .procs
            .insert(PID, proc(100, "/usr/bin/node", Some(Runtime::V8)));
        w.tracer.fail.insert(PID, || BpfError::TooManyArgs);
        w.exec(PID);
        w.run();
        assert_eq!(
            w.lifecycle.next_due(),
            Some(w.now + Duration::from_millis(BACKOFF_MS[1]))
        );
        w.tracer.fail.clear();
        w.advance(Duration::from_millis(BACKOFF_MS[1]));
        w.run();
        assert_eq!(w.lifecycle.traced(), [PID]);
    }

    #[test]
    fn max_targets_leaves_the_rest_out_and_counts_them() {
        let mut w = World::all();
        w.lifecycle.max_targets = Some(1);
        for (i, pid) in [PID, PID + 1].into_iter().enumerate() {
            w.exec_as(
                pid,
                proc(100 + i as u64, "/usr/bin/java", Some(Runtime::HotSpot)),
            );
            w.run();
        }
        assert_eq!(w.lifecycle.traced(), [PID]);
        assert_eq!(w.lifecycle.over_limit().load(Ordering::Relaxed), 1);
        assert_eq!(w.lifecycle.tracked(), 1);
    }

    #[test]
    fn a_rename_is_reported_by_the_sweep() {
        let mut w = World::all();
        w.exec_as(PID, proc(100, "/usr/local/bin/node", Some(Runtime::V8)));
        w.run();
        w.host().procs.get_mut(&PID).unwrap().current_comm = "MainThread".into();
        w.run_due(false);
        assert_eq!(w.report.targets.borrow()[&PID].current_comm, "");
        w.run();
        assert_eq!(w.report.targets.borrow()[&PID].current_comm, "MainThread");
    }

    #[test]
    fn unselected_and_excluded_processes_are_not_traced() {
        let mut w = World::new(Selection {
            comms: vec!["java".into()],
            exclude: vec![PID + 1],
            ..Selection::default()
        });
        w.host()
            .procs
            .insert(PID, proc(100, "/usr/local/bin/node", Some(Runtime::V8)));
        w.host()
            .procs
            .insert(PID + 1, proc(100, "/usr/bin/java", Some(Runtime::HotSpot)));
        w.exec(PID);
        w.exec(PID + 1);
        w.run();
        assert!(w.tracer.attached.is_empty());
        // Both stop being recorded by shared probes: the excluded one at
        // its exec, the unselected one at its inspection.
        assert_eq!(w.tracer.rejected, [PID + 1, PID]);
        assert_eq!(w.lifecycle.tracked(), 0);
        // Never attached, so never labelled.
        assert!(w.lifecycle.host.label_reads.borrow().is_empty());
    }
}
