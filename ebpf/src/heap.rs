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

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_attach_cookie, bpf_ktime_get_ns},
    macros::{map, uprobe},
    maps::{Array, HashMap},
    programs::ProbeContext,
};
use pausewatch_common::{
    LostReason,
    heap::{
        ArgSet, MAX_ARG_SETS, MAX_POOL_STATS, POOL_ARG_COMMITTED, POOL_ARG_MANAGER, POOL_ARG_MAX,
        POOL_ARG_POOL, POOL_ARG_USED, PoolKey, PoolLastKey, PoolStats,
    },
};

use crate::{args::read_spec, maps::count_lost};

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
    if s.open != 0 {
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
    s.last_end_ns = unsafe { bpf_ktime_get_ns() };
    let _ = POOL_LAST.insert(&last_key, &a.used, 0);
    0
}
