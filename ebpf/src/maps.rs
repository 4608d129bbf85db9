//! The maps shared with the agent. Names are part of the contract with
//! `agent/src/bpf`: the agent looks them up by these exact names.

use aya_ebpf::{
    macros::map,
    maps::{Array, PerCpuArray, PerCpuHashMap, RingBuf},
};
use pausewatch_common::{
    ArgSpec, HistKey, Histogram, LOST_REASONS, LostReason, MAX_ARG_SPECS, MAX_HISTOGRAMS,
    MAX_STRAGGLERS, MAX_THREADS, RINGBUF_BYTES, StragglerKey, StragglerStats, ThreadEntry,
};

/// Finished intervals, aggregated. Per-CPU so the hot path needs no atomics.
#[map]
pub static HISTOGRAMS: PerCpuHashMap<HistKey, Histogram> =
    PerCpuHashMap::with_max_entries(MAX_HISTOGRAMS, 0);

/// Safepoint stragglers, aggregated by process and thread name (see
/// `straggler.rs`). Per-CPU, like the histograms.
#[map]
pub static STRAGGLERS: PerCpuHashMap<StragglerKey, StragglerStats> =
    PerCpuHashMap::with_max_entries(MAX_STRAGGLERS, 0);

/// Per thread: its open intervals and its pause anatomy (`threads.rs`,
/// `intervals.rs`, `anatomy.rs`), at one of two places derived from its
/// `task_struct` address (the scheduler's raw tracepoints pass only task
/// pointers). An array: a lookup is inlined by the verifier and costs no
/// hashing, which a hash map's lookup did (~70 ns more per lookup here,
/// docs/design.md "Per pause"). An entry outlives the thread's intervals, so
/// a begin and its end cost one lookup each and nothing is inserted or
/// deleted; it is freed at the thread's exit (`anatomy_exit`).
#[map]
pub static THREAD_ENTRIES: Array<ThreadEntry> = Array::with_max_entries(MAX_THREADS, 0);

/// USDT argument locations, indexed by the attach point's BPF cookie.
#[map]
pub static ARG_SPECS: Array<ArgSpec> = Array::with_max_entries(MAX_ARG_SPECS, 0);

/// One event per finished pause, read by `agent run --events`.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(RINGBUF_BYTES, 0);

/// Counters of what could not be recorded, indexed by [`LostReason`].
#[map]
pub static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(LOST_REASONS, 0);

/// A zeroed histogram to insert from: a 1 KiB value does not fit on the
/// 512-byte BPF stack, but a pointer into a map value may be passed instead.
#[map]
pub static ZERO_HISTOGRAM: PerCpuArray<Histogram> = PerCpuArray::with_max_entries(1, 0);

/// Counts one lost event.
#[inline(always)]
pub fn count_lost(reason: LostReason) {
    if let Some(c) = LOST.get_ptr_mut(reason as u32) {
        // SAFETY: per-CPU slot, valid for the duration of the program.
        unsafe { *c += 1 };
    }
}

/// Reads a host-wide gate counter: slot 0 of a one-entry array that the
/// scheduler programs check before any work (open pauses, open windows).
#[inline(always)]
pub fn gate(counter: &Array<u64>) -> u64 {
    match counter.get_ptr(0) {
        // SAFETY: a live map value; a racing update is an atomic add.
        Some(c) => unsafe { core::ptr::read_volatile(c) },
        None => 0,
    }
}

/// Adds `delta` to a gate counter (see [`gate`]).
#[inline(always)]
pub fn add_to_gate(counter: &Array<u64>, delta: i64) {
    if let Some(c) = counter.get_ptr_mut(0) {
        // SAFETY: a live, 8-byte aligned map value shared by all CPUs,
        // so it is only ever changed with atomic adds (BPF_ATOMIC_ADD;
        // `AtomicU64` has no read-modify-write methods on the BPF target).
        unsafe {
            core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
                c,
                delta as u64,
            )
        };
    }
}
