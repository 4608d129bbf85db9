//! Safepoint stragglers (HotSpot): the Java thread that reached each
//! safepoint last, how long after the begin it arrived, and whether it spent
//! that wait running or runnable.
//!
//! The window is the VM thread's `safepoint__begin` to its first
//! `vmops__begin` (the time to safepoint). A Java thread that has to be
//! waited for arrives by blocking on HotSpot's futex wait barrier, so its
//! arrival is a sleeping switch-out; threads that were asleep at the begin
//! were safe all along and are never waited for, however often they wake
//! and sleep inside the window. Per process and window (the rule, its
//! sources and its validation: docs/design.md, "Safepoint stragglers"):
//!
//! ```text
//! first event of a thread in the window   class
//! sched_switch, it leaves the CPU         candidate, running since the begin
//! sched_switch, it takes the CPU          candidate, runnable since the begin
//! sched_waking                            excluded (asleep at the begin)
//!
//! candidate leaves the CPU to sleep       arrival: overwrites the window's best (the last one wins)
//! candidate woken after arriving          runnable again; its next sleep moves its arrival later
//! first vmops__begin                      the best is the straggler
//! ```
//!
//! The VM thread (it sleeps and wakes in its polling loop) is excluded by
//! tid, and HotSpot's non-Java threads (GC workers, G1's concurrent
//! threads, the WatcherThread) by name ([`non_java`]): they are never in the
//! wait set but may be on a CPU at the begin.
//!
//! Per-thread state carries the window number it was first seen in, so a
//! new window needs no clearing: a stale stamp means "not seen yet".
//! Threads are keyed by `task_struct` address, as the raw tracepoints pass
//! them; `next` and the wakee come without their tgid, so a thread's
//! process (and its tid and name) is learnt from its own switch-outs (the
//! current task is `prev` there), written while any window is open.
//!
//! Cost: the `sched_switch` part runs inside `anatomy_switch`, after its
//! own gate (the VM thread is tracked for the whole safepoint, so that gate
//! is open whenever a window is), and returns after one array lookup while
//! no window is open anywhere ([`OPEN_WINDOWS`]); so does its part of
//! `anatomy_waking` ([`on_waking`]).

use aya_ebpf::{
    helpers::bpf_get_current_comm,
    macros::map,
    maps::{Array, LruHashMap},
};
use pausewatch_common::{COMM_LEN, PauseEvent, StragglerKey, StragglerStats, ThreadState};

use crate::{
    intervals::current,
    maps::{STRAGGLERS, add_to_gate, gate},
};

/// One process's safepoint window (HotSpot runs one safepoint at a time).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Window {
    /// Window number, incremented at each begin; per-thread stamps refer to it.
    seq: u64,
    /// The begin probe's time.
    t0: u64,
    /// 1 from the begin to the first VM operation (or the end).
    open: u32,
    /// The VM thread, which ran the begin probe.
    vm_tid: u32,
    /// The latest arrival so far: its thread (0: none yet) ...
    best_tid: u32,
    /// The process whose window this place holds (see [`WINDOWS`]).
    tgid: u32,
    /// ... its time ...
    best_ns: u64,
    /// ... and how the thread spent the window until then.
    best_run_ns: u64,
    best_rq_ns: u64,
    best_comm: [u8; COMM_LEN],
    /// The straggler of the last closed window, for the safepoint's event
    /// at its end (0: none).
    out_tid: u32,
    out_state: u32,
    out_late_ns: u64,
    out_comm: [u8; COMM_LEN],
}

/// A thread of a process that has had safepoints, as the window sees it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Thread {
    /// Its process.
    tgid: u32,
    /// Its thread id.
    tid: u32,
    /// [`CANDIDATE`] or [`EXCLUDED`], valid when `stamp` is the window's `seq`.
    class: u8,
    /// [`RUNNING`], [`RUNNABLE`] or [`SLEEPING`].
    mode: u8,
    _pad: [u8; 6],
    /// The window it was first seen in.
    stamp: u64,
    /// When `mode` began.
    since_ns: u64,
    /// Time running and runnable in this window, closed segments only.
    run_ns: u64,
    rq_ns: u64,
}

const CANDIDATE: u8 = 1;
const EXCLUDED: u8 = 2;
const RUNNING: u8 = 0;
const RUNNABLE: u8 = 1;
const SLEEPING: u8 = 2;

/// Windows, one per process, at the place `tgid % MAX_WINDOWS` and tagged
/// with its tgid. An array, not a hash map: a safepoint's begin and end
/// each look its window up, and an array lookup is inlined by the verifier
/// while an LRU hash lookup cost ~90 ns here (docs/design.md "Per pause").
/// A place is taken over by another process only while its window is
/// closed; a process whose place holds another's open window has no
/// straggler for that safepoint (two JVMs whose pids are 4096 apart, in a
/// safepoint at the same time). Nothing needs cleaning up when a process
/// goes: its place is just taken over.
#[map]
static WINDOWS: Array<Window> = Array::with_max_entries(MAX_WINDOWS, 0);

/// Places of [`WINDOWS`].
const MAX_WINDOWS: u32 = 4096;

/// Threads by `task_struct` address: process membership and per-window
/// state. LRU, so exited threads age out.
#[map]
static THREADS: LruHashMap<u64, Thread> = LruHashMap::with_max_entries(65536, 0);

/// Number of open windows host-wide, changed only with atomic adds: the
/// scheduler programs' gate.
#[map]
static OPEN_WINDOWS: Array<u64> = Array::with_max_entries(1, 0);

/// `safepoint__begin` on the VM thread at `now`: opens its process's window.
#[inline(always)]
pub fn open(now: u64) {
    let (tgid, tid) = current();
    let Some(w) = WINDOWS.get_ptr_mut(tgid % MAX_WINDOWS) else {
        return;
    };
    // SAFETY: a live map value; the scheduler programs of other CPUs may
    // write its `best_*` fields, but not before `open` is set below.
    let w = unsafe { &mut *w };
    if w.tgid != tgid {
        if w.open != 0 {
            // Another process's window is open at this place.
            return;
        }
        // Taken over. `seq` goes on counting, so no thread's stamp from an
        // earlier owner of the place matches this process's windows.
        w.tgid = tgid;
        w.out_tid = 0;
    }
    // A begin with the window still open (an end that was never seen)
    // reuses the open count it already holds.
    if w.open == 0 {
        add_open(1);
    }
    w.seq += 1;
    w.t0 = now;
    w.vm_tid = tid;
    w.best_tid = 0;
    w.out_tid = 0;
    w.out_late_ns = 0;
    w.open = 1;
}

/// The first `vmops__begin` of a safepoint (`tts_ns` after its begin) on the VM thread: closes the window, keeps its straggler for the
/// safepoint's event and charges `tts_ns` to it in [`STRAGGLERS`].
#[inline(always)]
pub fn close(tts_ns: u64) {
    let Some(w) = close_window() else { return };
    if w.best_tid == 0 {
        return;
    }
    let late_ns = w.best_ns.saturating_sub(w.t0);
    w.out_tid = w.best_tid;
    w.out_state = if w.best_rq_ns > w.best_run_ns {
        ThreadState::Runnable as u32
    } else {
        ThreadState::Running as u32
    };
    w.out_late_ns = late_ns;
    w.out_comm = w.best_comm;
    let key = StragglerKey {
        pid: current().0,
        comm: w.best_comm,
    };
    let s = match STRAGGLERS.get_ptr_mut(&key) {
        Some(s) => s,
        None => {
            if STRAGGLERS
                .insert(&key, &StragglerStats::default(), 0)
                .is_err()
            {
                return;
            }
            match STRAGGLERS.get_ptr_mut(&key) {
                Some(s) => s,
                None => return,
            }
        }
    };
    // SAFETY: a per-CPU value; uprobe programs do not nest on one CPU.
    let s = unsafe { &mut *s };
    s.count += 1;
    s.tts_ns += tts_ns;
    s.late_ns += late_ns;
}

/// The window of process `tgid`, if it holds its place in [`WINDOWS`].
#[inline(always)]
fn window(tgid: u32) -> Option<*mut Window> {
    let w = WINDOWS.get_ptr_mut(tgid % MAX_WINDOWS)?;
    // SAFETY: a live map value; the tag is a plain word, written only by
    // `open` of the process that takes the place.
    (unsafe { (*w).tgid } == tgid).then_some(w)
}

/// `safepoint__end` on the VM thread: a window that no VM operation closed
/// ends here, with no straggler.
#[inline(always)]
pub fn end() {
    let _ = close_window();
}

/// Closes the calling thread's process's window if it is open and the
/// calling thread is its VM thread.
#[inline(always)]
fn close_window() -> Option<&'static mut Window> {
    let (tgid, tid) = current();
    // SAFETY: a live map value (see `open`).
    let w = unsafe { &mut *window(tgid)? };
    if w.open == 0 || w.vm_tid != tid {
        return None;
    }
    w.open = 0;
    add_open(-1);
    Some(w)
}

/// `sched_process_exit` of a thread, while some pause is open: a VM thread
/// that exits inside a window (the JVM killed mid-safepoint) closes it, so
/// the gate does not stay open.
#[inline(always)]
pub fn on_exit() {
    if open_windows() == 0 {
        return;
    }
    let _ = close_window();
}

/// Copies the straggler of the calling thread's process's last window into
/// a safepoint's event.
#[inline(always)]
pub fn fill(event: &mut PauseEvent) {
    let Some(w) = window(event.pid) else {
        return;
    };
    // SAFETY: a live map value; a racing write can only be a newer window's
    // begin, which cannot come before this safepoint's end.
    let w = unsafe { &*w };
    if w.out_tid == 0 {
        return;
    }
    event.straggler_tid = w.out_tid;
    event.straggler_state = w.out_state;
    event.straggler_late_ns = w.out_late_ns;
    event.straggler_comm = w.out_comm;
}

/// The `sched_switch` part, called by `anatomy_switch` once its own gate
/// let it through: `prev` (the current task) leaves the CPU, to sleep when
/// `sleeping`, and `next` takes it, at `now`.
#[inline(always)]
pub fn on_switch(now: u64, prev: u64, sleeping: bool, next: u64) {
    if open_windows() == 0 {
        return;
    }
    let (tgid, tid) = current();
    let mut prev_window = None;
    if let Some(w) = window(tgid) {
        prev_window = Some(w);
        // SAFETY: a live map value; fields of a window are plain words, and
        // a torn `best_*` between two CPUs would take two arrivals in the
        // same instant.
        let w = unsafe { &mut *w };
        if w.open == 1
            && tid != w.vm_tid
            && let Some(t) = thread_of(prev, tid, tgid)
        {
            // SAFETY: a live map value; only this CPU switches `prev` now.
            let t = unsafe { &mut *t };
            switched_out(w, t, now, tid, sleeping);
        }
    }
    let Some(t) = THREADS.get_ptr_mut(&next) else {
        return;
    };
    // SAFETY: as above, for `next`.
    let t = unsafe { &mut *t };
    let w = match prev_window {
        Some(w) if t.tgid == tgid => w,
        _ => match window(t.tgid) {
            Some(w) => w,
            None => return,
        },
    };
    // SAFETY: a live map value.
    let w = unsafe { &mut *w };
    if w.open == 0 || t.tid == w.vm_tid {
        return;
    }
    if t.stamp != w.seq {
        // Taking a CPU with no waking seen in the window: it was runnable
        // (preempted, or woken just before) at the begin.
        enter(t, w, RUNNABLE);
    }
    if t.class == CANDIDATE {
        close_mode(t, now, RUNNING);
    }
}

/// `prev` (thread `tid`) of a window's process leaves the CPU.
#[inline(always)]
fn switched_out(w: &mut Window, t: &mut Thread, now: u64, tid: u32, sleeping: bool) {
    if t.stamp != w.seq {
        // Leaving a CPU before any other event in the window: it was
        // running at the begin.
        enter(t, w, RUNNING);
    }
    if t.class != CANDIDATE {
        return;
    }
    if !sleeping {
        close_mode(t, now, RUNNABLE);
        return;
    }
    close_mode(t, now, SLEEPING);
    // The current task is `prev`: its own name.
    let Ok(comm) = bpf_get_current_comm() else {
        return;
    };
    if non_java(&comm) {
        return;
    }
    w.best_tid = tid;
    w.best_ns = now;
    w.best_run_ns = t.run_ns;
    w.best_rq_ns = t.rq_ns;
    w.best_comm = comm;
}

/// Starts a thread's state for window `w` as a candidate in `mode` since
/// the begin.
#[inline(always)]
fn enter(t: &mut Thread, w: &Window, mode: u8) {
    t.stamp = w.seq;
    t.class = CANDIDATE;
    t.mode = mode;
    t.since_ns = w.t0;
    t.run_ns = 0;
    t.rq_ns = 0;
}

/// Adds the time since the last change to the mode it was spent in.
#[inline(always)]
fn close_mode(t: &mut Thread, now: u64, to: u8) {
    let spent = now.saturating_sub(t.since_ns);
    match t.mode {
        RUNNING => t.run_ns += spent,
        RUNNABLE => t.rq_ns += spent,
        _ => {}
    }
    t.mode = to;
    t.since_ns = now;
}

/// The state of task `task` (thread `tid` of process `tgid`), created on
/// its first switch-out (membership: the only place its tgid is known).
#[inline(always)]
fn thread_of(task: u64, tid: u32, tgid: u32) -> Option<*mut Thread> {
    if let Some(t) = THREADS.get_ptr_mut(&task) {
        // SAFETY: a live map value.
        let th = unsafe { &mut *t };
        if th.tgid != tgid || th.tid != tid {
            // A reused task_struct: a new thread, not seen in any window yet.
            th.tgid = tgid;
            th.tid = tid;
            th.stamp = 0;
        }
        return Some(t);
    }
    let fresh = Thread {
        tgid,
        tid,
        class: 0,
        mode: RUNNING,
        _pad: [0; 6],
        stamp: 0,
        since_ns: 0,
        run_ns: 0,
        rq_ns: 0,
    };
    THREADS.insert(&task, &fresh, 0).ok()?;
    THREADS.get_ptr_mut(&task)
}

/// `sched:sched_waking`: a sleeping task is being woken, synchronously in
/// `try_to_wake_up()` (so before it can run; `sched_wakeup` may come later,
/// on the wakee's CPU, which would misclassify threads woken by the
/// previous safepoint's end).
#[inline(always)]
pub fn on_waking(task: u64) {
    if open_windows() == 0 {
        return;
    }
    let Some(t) = THREADS.get_ptr_mut(&task) else {
        return;
    };
    // SAFETY: a live map value.
    let t = unsafe { &mut *t };
    let Some(w) = window(t.tgid) else {
        return;
    };
    // SAFETY: a live map value, only read here.
    let w = unsafe { &*w };
    if w.open == 0 || t.tid == w.vm_tid {
        return;
    }
    if t.stamp != w.seq {
        // Asleep at the begin: safe all along, never waited for.
        t.stamp = w.seq;
        t.class = EXCLUDED;
    } else if t.class == CANDIDATE && t.mode == SLEEPING {
        // Woken after arriving (a spurious futex wake-up, a signal): its
        // next sleep is its arrival.
        t.mode = RUNNABLE;
        t.since_ns = now();
    }
}

/// A comm that starts with one of HotSpot's non-JavaThread names: GC
/// workers, G1's concurrent, refinement and service threads, the
/// WatcherThread, and ZGC's, Shenandoah's and Parallel GC's threads.
/// `synchronize_threads` never waits for them (it iterates JavaThreads
/// only), but they may be on a CPU at the begin and sleep inside the window
/// (yielding to the suspendible thread set before the stop is requested).
/// Compiler threads are JavaThreads and are kept.
#[inline(always)]
fn non_java(comm: &[u8; COMM_LEN]) -> bool {
    // Compared as two little-endian words under a mask: a few ALU
    // instructions per prefix, no loop for the verifier.
    let lo = u64::from_le_bytes([
        comm[0], comm[1], comm[2], comm[3], comm[4], comm[5], comm[6], comm[7],
    ]);
    let hi = u64::from_le_bytes([
        comm[8], comm[9], comm[10], comm[11], comm[12], comm[13], comm[14], comm[15],
    ]);
    let mut i = 0;
    while i < NON_JAVA.len() {
        let p = &NON_JAVA[i];
        if lo & p.mask_lo == p.lo && hi & p.mask_hi == p.hi {
            return true;
        }
        i += 1;
    }
    false
}

/// A name prefix as masked words (see [`non_java`]).
struct Prefix {
    lo: u64,
    hi: u64,
    mask_lo: u64,
    mask_hi: u64,
}

const fn prefix(p: &[u8]) -> Prefix {
    let mut bytes = [0u8; COMM_LEN];
    let mut mask = [0u8; COMM_LEN];
    let mut i = 0;
    while i < p.len() && i < COMM_LEN {
        bytes[i] = p[i];
        mask[i] = 0xff;
        i += 1;
    }
    Prefix {
        lo: word(&bytes, 0),
        hi: word(&bytes, 8),
        mask_lo: word(&mask, 0),
        mask_hi: word(&mask, 8),
    }
}

/// Eight bytes of `b` from `at`, as a little-endian word.
const fn word(b: &[u8; COMM_LEN], at: usize) -> u64 {
    let mut v = 0u64;
    let mut k = 0;
    while k < 8 {
        v |= (b[at + k] as u64) << (8 * k);
        k += 1;
    }
    v
}

/// HotSpot's non-JavaThread name prefixes (see [`non_java`]); the same list
/// is in docs/design.md.
const NON_JAVA: [Prefix; 8] = [
    prefix(b"GC Thread#"),
    prefix(b"G1 "),
    prefix(b"VM Periodic"),
    prefix(b"ZWorker"),
    prefix(b"ZDriver"),
    prefix(b"ZDirector"),
    prefix(b"Shenandoah"),
    prefix(b"Parallel GC"),
];

#[inline(always)]
fn open_windows() -> u64 {
    gate(&OPEN_WINDOWS)
}

#[inline(always)]
fn add_open(delta: i64) {
    add_to_gate(&OPEN_WINDOWS, delta);
}

#[inline(always)]
fn now() -> u64 {
    // SAFETY: no preconditions.
    unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() }
}
