//! Opening and closing per-thread intervals, and recording closed ones.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
};
use pausewatch_common::{
    EVENTS_WAKEUP_BYTES, HistKey, Inflight, InflightKey, Kind, LostReason, PauseEvent,
    THREAD_STATES, bucket_index,
};

use crate::{
    anatomy,
    maps::{EVENTS, HISTOGRAMS, INFLIGHT, ZERO_HISTOGRAM, count_lost},
};

/// The per-state split of an observation that has none (kinds that are not
/// pauses, and pauses whose thread could not be tracked).
pub const NO_STATES: [u64; THREAD_STATES] = [0; THREAD_STATES];

/// An interval that has just ended.
pub struct Closed {
    /// Its in-flight value, as the begin probe and those after it left it.
    pub open: Inflight,
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

/// Key of the calling thread's open interval of `kind`.
#[inline(always)]
pub fn key(kind: Kind, nest: u64) -> InflightKey {
    let (pid, tid) = current();
    InflightKey {
        pid,
        tid,
        kind: kind as u32,
        _pad: 0,
        nest,
    }
}

/// Opens an interval of `kind` on the calling thread; a pause also starts
/// the accounting of the thread's scheduler states ([`anatomy`]).
#[inline(always)]
pub fn begin(kind: Kind, nest: u64, cause: u64) {
    let start_ns = now();
    let state_ns = if kind.is_pause() && anatomy_on() {
        anatomy::track(start_ns)
    } else {
        NO_STATES
    };
    let value = Inflight {
        start_ns,
        cause,
        tts_ns: 0,
        state_ns,
    };
    if INFLIGHT.insert(&key(kind, nest), &value, 0).is_err() {
        count_lost(LostReason::InflightFull);
    }
}

/// Closes the calling thread's interval of `kind`, if one is open, and
/// returns it with its duration and, for a pause, its per-state split. An
/// end with no begin (the agent attached in the middle of an interval) is
/// ignored.
#[inline(always)]
pub fn end(kind: Kind, nest: u64) -> Option<Closed> {
    let k = key(kind, nest);
    // SAFETY: the value is copied out before the entry is removed.
    let open = unsafe { *INFLIGHT.get(&k)? };
    let _ = INFLIGHT.remove(&k);
    let end_ns = now();
    let mut states = NO_STATES;
    if kind.is_pause() && anatomy_on() {
        // The same clock reading ends the duration and the last segment,
        // so the states sum to the duration exactly.
        if let Some(acc) = anatomy::untrack(end_ns) {
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

/// Whether the calling thread has an interval of `kind` open.
#[inline(always)]
pub fn is_open(kind: Kind, nest: u64) -> bool {
    INFLIGHT.get_ptr(&key(kind, nest)).is_some()
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

#[inline(always)]
fn now() -> u64 {
    // SAFETY: no preconditions.
    unsafe { bpf_ktime_get_ns() }
}
