//! HotSpot memory pools around collections: `hotspot:mem__pool__gc__begin`
//! and `mem__pool__gc__end(manager, len, pool, len, initial, used,
//! committed, max)`, fired once per memory pool by
//! `GCMemoryManager::gc_begin` / `gc_end` (`memoryManager.cpp`).
//!
//! Each end folds the collection into [`POOL_STATS`] (latest values and
//! running sums per process, pool and manager), so a scrape reads one map
//! entry per pool instead of an event per collection. The programs read
//! every argument: their cookie indexes [`ARG_SETS`], one argument spec per
//! slot, where the other HotSpot programs' cookies index one spec.
//!
//! With `agent run --events` each end also sends a [`PoolEvent`] through
//! its own ring, [`POOL_EVENTS`], so that every collection can be checked
//! on its own. A ring of its own rather than a tagged record in `EVENTS`:
//! a pause record has no tag to tell it from another record, so a tag
//! would change its layout and its reader, and a bursty heap (ten pools per
//! collection) cannot crowd pause events out of their ring.

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{bpf_get_attach_cookie, bpf_ktime_get_ns},
    macros::{map, uprobe},
    maps::{Array, HashMap, RingBuf},
    programs::ProbeContext,
};
use pausewatch_common::{
    LostReason,
    heap::{
        ArgSet, MAX_ARG_SETS, MAX_POOL_STATS, POOL_ARG_COMMITTED, POOL_ARG_MANAGER, POOL_ARG_MAX,
        POOL_ARG_POOL, POOL_ARG_USED, POOL_RINGBUF_BYTES, PoolEvent, PoolKey, PoolLastKey,
        PoolStats,
    },
};

use crate::{admission, args::read_spec, maps::count_lost};

/// Every argument location of a probe point, indexed by the attach cookie.
#[map]
pub static ARG_SETS: Array<ArgSet> = Array::with_max_entries(MAX_ARG_SETS, 0);

/// Per process, pool and memory manager: the latest collection and sums.
#[map]
pub static POOL_STATS: HashMap<PoolKey, PoolStats> = HashMap::with_max_entries(MAX_POOL_STATS, 0);

/// Per process and pool: used bytes after its latest collection by any
/// manager (the start of the next "between collections" interval).
#[map]
pub static POOL_LAST: HashMap<PoolLastKey, u64> = HashMap::with_max_entries(MAX_POOL_STATS, 0);

/// One event per pool and collection end, read by `agent run --events`.
/// The agent shrinks it to one page when `--events` is off.
#[map]
pub static POOL_EVENTS: RingBuf = RingBuf::with_byte_size(POOL_RINGBUF_BYTES, 0);

/// Set to 1 by the agent (before load) with `--events`; read-only after
/// load, so the check costs nothing when it is off. Its own global rather
/// than `intervals.rs`'s `EMIT_EVENTS`, which is private to that module.
#[unsafe(no_mangle)]
static EMIT_POOL_EVENTS: u8 = 0;

/// The probe's manager, pool and used bytes, plus committed and max.
struct PoolArgs {
    key: PoolKey,
    used: u64,
    committed: u64,
    max: u64,
}

#[inline(always)]
fn read_pool_args(ctx: &ProbeContext, sizes: bool) -> Option<PoolArgs> {
    // SAFETY: a uprobe context is a valid argument to the cookie helper.
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    let set = ARG_SETS.get(cookie as u32)?;
    let manager = read_spec(ctx, &set.specs[POOL_ARG_MANAGER])?;
    let pool = read_spec(ctx, &set.specs[POOL_ARG_POOL])?;
    let used = read_spec(ctx, &set.specs[POOL_ARG_USED])?;
    let (committed, max) = if sizes {
        (
            read_spec(ctx, &set.specs[POOL_ARG_COMMITTED])?,
            read_spec(ctx, &set.specs[POOL_ARG_MAX])?,
        )
    } else {
        (0, 0)
    };
    Some(PoolArgs {
        key: PoolKey {
            pid: ctx.tgid(),
            _pad: 0,
            pool,
            manager,
        },
        used,
        committed,
        max,
    })
}

/// The entry of `key`, inserted zeroed when new.
#[inline(always)]
fn stats(key: &PoolKey) -> Option<*mut PoolStats> {
    if let Some(s) = POOL_STATS.get_ptr_mut(key) {
        return Some(s);
    }
    if POOL_STATS.insert(key, &PoolStats::default(), 0).is_err() {
        count_lost(LostReason::PoolStatsFull);
        return None;
    }
    POOL_STATS.get_ptr_mut(key)
}

#[uprobe]
pub fn hotspot_mem_pool_gc_begin(ctx: ProbeContext) -> u32 {
    if !admission::admitted(ctx.tgid()) {
        return 0;
    }
    let Some(a) = read_pool_args(&ctx, false) else {
        count_lost(LostReason::ArgRead);
        return 0;
    };
    let Some(s) = stats(&a.key) else { return 0 };
    // SAFETY: a map value; one manager collects on one thread at a time, so
    // no other program writes this entry meanwhile.
    let s = unsafe { &mut *s };
    s.open = 1;
    s.open_used = a.used;
    0
}

#[uprobe]
pub fn hotspot_mem_pool_gc_end(ctx: ProbeContext) -> u32 {
    if !admission::admitted(ctx.tgid()) {
        return 0;
    }
    let Some(a) = read_pool_args(&ctx, true) else {
        count_lost(LostReason::ArgRead);
        return 0;
    };
    let Some(s) = stats(&a.key) else { return 0 };
    // SAFETY: as in the begin program.
    let s = unsafe { &mut *s };
    let last_key = PoolLastKey {
        pid: a.key.pid,
        _pad: 0,
        pool: a.key.pool,
    };
    let paired = s.open != 0;
    if paired {
        let before = s.open_used;
        s.paired += 1;
        s.used_before = before;
        s.used_before_sum += before;
        // SAFETY: a plain u64 map value, read once.
        if let Some(prev) = unsafe { POOL_LAST.get(&last_key) }
            && before > *prev
        {
            s.grown_between += before - *prev;
        }
        if a.used > before {
            s.grown_during += a.used - before;
        } else {
            s.freed_during += before - a.used;
        }
        s.open = 0;
    }
    s.collections += 1;
    s.used_after = a.used;
    s.used_after_sum += a.used;
    s.committed = a.committed;
    s.max = a.max;
    // SAFETY: no preconditions.
    let end_ns = unsafe { bpf_ktime_get_ns() };
    s.last_end_ns = end_ns;
    let _ = POOL_LAST.insert(&last_key, &a.used, 0);
    // SAFETY: a plain read of a global the loader may have rewritten.
    if unsafe { core::ptr::read_volatile(&EMIT_POOL_EVENTS) } != 0 {
        let event = PoolEvent {
            pid: a.key.pid,
            has_before: paired.into(),
            manager: a.key.manager,
            pool: a.key.pool,
            collection: s.collections,
            used_before: if paired { s.used_before } else { 0 },
            used_after: a.used,
            committed: a.committed,
            max: a.max,
            end_ns,
        };
        emit(&event);
    }
    0
}

/// Sends one pool event, waking the agent only once the ring is a quarter
/// full: as for pause events (`intervals::emit`), a wake-up per event would
/// schedule the agent inside the collection, on the VM thread's CPU, and
/// the agent drains the ring on its own timer anyway.
#[inline(always)]
fn emit(event: &PoolEvent) {
    let flags =
        if POOL_EVENTS.query(u64::from(BPF_RB_AVAIL_DATA)) >= u64::from(POOL_RINGBUF_BYTES / 4) {
            u64::from(BPF_RB_FORCE_WAKEUP)
        } else {
            u64::from(BPF_RB_NO_WAKEUP)
        };
    if POOL_EVENTS.output::<PoolEvent>(event, flags).is_err() {
        count_lost(LostReason::PoolEventsFull);
    }
}
