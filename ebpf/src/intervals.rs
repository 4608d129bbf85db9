//! Opening and closing per-thread intervals, and recording closed ones.
//!
//! A thread's open intervals live in a few fixed slots of its per-thread
//! entry (`maps::THREAD_ENTRIES`, found by `task_struct` address, shared
//! with the pause anatomy; see `threads.rs`). The entry stays between
//! intervals, so a begin and its end each cost one array lookup: no insert
//! and no delete per interval, and the anatomy's state is in the same
//! value. A slot is found by (kind, nest) in a short unrolled scan.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
};
use pausewatch_common::{
    EVENTS_WAKEUP_BYTES, HistKey, Interval, Kind, LostReason, MAX_OPEN_INTERVALS, PauseEvent,
    THREAD_STATES, ThreadEntry, bucket_index,
};

use crate::{
    admission, anatomy,
    maps::{EVENTS, HISTOGRAMS, ZERO_HISTOGRAM, count_lost},
    threads,
};

/// The per-state split of an observation that has none (kinds that are not
/// pauses, and pauses whose thread could not be tracked).
pub const NO_STATES: [u64; THREAD_STATES] = [0; THREAD_STATES];

/// An interval that has just ended.
pub struct Closed {
    /// Its slot, as the begin probe and those after it left it.
    pub open: Interval,
    /// Its duration in nanoseconds.
    pub ns: u64,
    /// For pauses: how the thread spent `ns`, by [`pausewatch_common::ThreadState`].
    pub states: [u64; THREAD_STATES],
}

/// Set to 1 by the agent (before load) when `--events` asks for a ring buffer
/// event per pause; read-only after load, so the check costs nothing.
#[unsafe(no_mangle)]
static EMIT_EVENTS: u8 = 0;

/// Set to 1 by the agent (before load) unless `--no-anatomy`: pauses then
/// track their thread for the scheduler tracepoints ([`anatomy`]).
#[unsafe(no_mangle)]
static ANATOMY: u8 = 0;

/// Whether pauses track their thread's scheduler states (and HotSpot's
/// safepoints their stragglers).
#[inline(always)]
pub fn anatomy_on() -> bool {
    // SAFETY: a plain read of a global the loader may have rewritten.
    unsafe { core::ptr::read_volatile(&ANATOMY) != 0 }
}

/// The calling thread, as (tgid, tid).
#[inline(always)]
pub fn current() -> (u32, u32) {
    let id = bpf_get_current_pid_tgid();
    ((id >> 32) as u32, id as u32)
}

/// The calling thread's entry, if it has one. An entry whose (pid, tid)
/// is not the caller's belonged to an earlier task at the same address
/// (its exit was not seen) or to this task before it exec'd as another
/// thread id: it is reset, its open intervals dropped.
#[inline(always)]
pub fn thread() -> Option<&'static mut ThreadEntry> {
    let t = threads::lookup(anatomy::current_task())?;
    let (pid, tid) = current();
    if t.pid != pid || t.tid != tid {
        anatomy::drop_driver(t);
        t.pid = pid;
        t.tid = tid;
        t.role = anatomy::DRIVER;
        t.epoch = 0;
        threads::clear_slots(t);
    }
    Some(t)
}

/// The calling thread's entry, created (empty) if it has none; `None`
/// (counted as [`LostReason::TrackedFull`]) when there is no room for it.
#[inline(always)]
pub fn thread_or_new() -> Option<&'static mut ThreadEntry> {
    let (pid, tid) = current();
    // Every interval begins here: a process that shared probes must not
    // record never opens one, so nothing of it reaches the maps.
    if !admission::admitted(pid) {
        return None;
    }
    if let Some(t) = thread() {
        return Some(t);
    }
    let t = threads::claim(anatomy::current_task(), pid, tid, anatomy::DRIVER);
    if t.is_none() {
        count_lost(LostReason::TrackedFull);
    }
    t
}

/// The slot of the open interval (`kind`, `nest`) of `t`.
#[inline(always)]
fn find(t: &ThreadEntry, kind: Kind, nest: u64) -> Option<usize> {
    let k = kind as u32;
    for i in 0..MAX_OPEN_INTERVALS {
        if t.slots[i].kind == k && t.slots[i].nest == nest {
            return Some(i);
        }
    }
    None
}

/// The open interval (`kind`, `nest`) of thread `t`, for probes between a
/// begin and its end that fill in its cause or time to safepoint.
#[inline(always)]
pub fn open_mut(t: &mut ThreadEntry, kind: Kind, nest: u64) -> Option<&mut Interval> {
    let i = find(t, kind, nest)?;
    t.slots.get_mut(i)
}

/// Whether thread `t` has the interval (`kind`, `nest`) open.
#[inline(always)]
pub fn is_open_in(t: &ThreadEntry, kind: Kind, nest: u64) -> bool {
    find(t, kind, nest).is_some()
}

/// Whether the calling thread has the interval (`kind`, `nest`) open.
#[inline(always)]
pub fn is_open(kind: Kind, nest: u64) -> bool {
    thread().is_some_and(|t| is_open_in(t, kind, nest))
}

/// Opens an interval of `kind` on the calling thread now; a pause also
/// starts the accounting of the thread's scheduler states ([`anatomy`]).
#[inline(always)]
pub fn begin(kind: Kind, nest: u64, cause: u64) {
    if let Some(t) = thread_or_new() {
        begin_in(t, kind, nest, cause, now());
    }
}

/// Opens an interval of `kind` on thread `t` (the calling thread's entry)
/// at `start_ns`. A begin whose interval is still open (its end was never
/// seen) starts it again in the same slot. Counts
/// [`LostReason::InflightFull`] when every slot is taken.
#[inline(always)]
pub fn begin_in(t: &mut ThreadEntry, kind: Kind, nest: u64, cause: u64, start_ns: u64) {
    let k = kind as u32;
    let mut at = MAX_OPEN_INTERVALS;
    for i in (0..MAX_OPEN_INTERVALS).rev() {
        let s = &t.slots[i];
        if s.kind == k && s.nest == nest {
            at = i;
            break;
        }
        if s.kind == 0 {
            at = i;
        }
    }
    let Some(slot) = t.slots.get(at) else {
        count_lost(LostReason::InflightFull);
        return;
    };
    let restarted = slot.tracked != 0;
    let mut tracked = 0;
    let mut state_ns = NO_STATES;
    if kind.is_pause() && anatomy_on() {
        if restarted {
            // Its earlier begin's reference stays, for this begin.
            tracked = 1;
            state_ns = anatomy::snapshot(t, start_ns);
        } else if let Some(acc) = anatomy::track(t, start_ns) {
            tracked = 1;
            state_ns = acc;
        }
    } else if restarted {
        anatomy::untrack(t, start_ns);
    }
    if let Some(s) = t.slots.get_mut(at) {
        s.kind = k;
        s.tracked = tracked;
        s.nest = nest;
        s.start_ns = start_ns;
        s.cause = cause;
        s.tts_ns = 0;
        s.state_ns = state_ns;
    }
}

/// Closes the calling thread's interval of `kind`, if one is open, and
/// returns it with its duration and, for a pause, its per-state split. An
/// end with no begin (the agent attached in the middle of an interval) is
/// ignored.
#[inline(always)]
pub fn end(kind: Kind, nest: u64) -> Option<Closed> {
    end_in(thread()?, kind, nest)
}

/// [`end`] on thread `t` (the calling thread's entry).
#[inline(always)]
pub fn end_in(t: &mut ThreadEntry, kind: Kind, nest: u64) -> Option<Closed> {
    let i = find(t, kind, nest)?;
    let s = t.slots.get_mut(i)?;
    let open = *s;
    s.kind = 0;
    s.tracked = 0;
    let end_ns = now();
    let mut states = NO_STATES;
    if open.tracked != 0 {
        // The same clock reading ends the duration and the last segment,
        // so the states sum to the duration exactly.
        if let Some(acc) = anatomy::untrack(t, end_ns) {
            for i in 0..THREAD_STATES {
                states[i] = acc[i].saturating_sub(open.state_ns[i]);
            }
        }
    }
    Some(Closed {
        ns: end_ns.saturating_sub(open.start_ns),
        open,
        states,
    })
}

/// Adds one observation of `ns`, spent by its thread as `states`, to the
/// histogram of (calling process, kind, cause).
#[inline(always)]
pub fn record(kind: Kind, cause: u64, ns: u64, states: &[u64; THREAD_STATES]) {
    let (pid, _) = current();
    let k = HistKey {
        pid,
        kind: kind as u32,
        cause,
    };
    let h = match HISTOGRAMS.get_ptr_mut(&k) {
        Some(h) => h,
        None => {
            let Some(zero) = ZERO_HISTOGRAM.get_ptr(0) else {
                return;
            };
            // SAFETY: `zero` points at a live map value of the right type.
            if HISTOGRAMS.insert(&k, unsafe { &*zero }, 0).is_err() {
                count_lost(LostReason::HistogramFull);
                return;
            }
            match HISTOGRAMS.get_ptr_mut(&k) {
                Some(h) => h,
                None => return,
            }
        }
    };
    // SAFETY: per-CPU value, so no other CPU writes it concurrently; BPF
    // programs do not nest on one CPU for uprobes.
    let h = unsafe { &mut *h };
    h.count += 1;
    h.sum_ns += ns;
    if ns > h.max_ns {
        h.max_ns = ns;
    }
    if let Some(b) = h.buckets.get_mut(bucket_index(ns)) {
        *b += 1;
    }
    for i in 0..THREAD_STATES {
        h.state_ns[i] += states[i];
    }
}

/// Adds a HotSpot GC pause's workers' time to the histogram of (calling
/// process, kind, cause), which [`record`] has just created if needed.
#[inline(always)]
pub fn record_workers(kind: Kind, cause: u64, workers: &[u64; THREAD_STATES]) {
    let (pid, _) = current();
    let k = HistKey {
        pid,
        kind: kind as u32,
        cause,
    };
    if let Some(h) = HISTOGRAMS.get_ptr_mut(&k) {
        // SAFETY: per-CPU value, as in `record`.
        let h = unsafe { &mut *h };
        for i in 0..THREAD_STATES {
            h.worker_ns[i] += workers[i];
        }
    }
}

/// Sends one pause event to userspace, if the agent asked for events.
#[inline(always)]
pub fn emit(kind: Kind, cause: u64, closed: &Closed) {
    // SAFETY: a plain read of a global the loader may have rewritten.
    if unsafe { core::ptr::read_volatile(&EMIT_EVENTS) } == 0 {
        return;
    }
    let (pid, tid) = current();
    let mut event = PauseEvent {
        pid,
        tid,
        kind: kind as u32,
        _pad: 0,
        cause,
        start_ns: closed.open.start_ns,
        duration_ns: closed.ns,
        tts_ns: closed.open.tts_ns,
        state_ns: closed.states,
        straggler_tid: 0,
        straggler_state: 0,
        straggler_late_ns: 0,
        straggler_comm: [0; pausewatch_common::COMM_LEN],
    };
    if kind == Kind::Safepoint {
        crate::straggler::fill(&mut event);
    }
    // Waking the reader on every pause would schedule the agent right as
    // the target resumes, and on a busy host that preemption lands inside
    // the target's next stretch of work. The agent drains the ring on a
    // short timer instead; a wake-up is forced only once the ring is a
    // quarter full, so a burst still cannot overflow it unnoticed.
    let flags = if EVENTS.query(u64::from(BPF_RB_AVAIL_DATA)) >= u64::from(EVENTS_WAKEUP_BYTES) {
        u64::from(BPF_RB_FORCE_WAKEUP)
    } else {
        u64::from(BPF_RB_NO_WAKEUP)
    };
    if EVENTS.output::<PauseEvent>(&event, flags).is_err() {
        count_lost(LostReason::RingbufFull);
    }
}

/// CLOCK_MONOTONIC now, in nanoseconds.
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: no preconditions.
    unsafe { bpf_ktime_get_ns() }
}
