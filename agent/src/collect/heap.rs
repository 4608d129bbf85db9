//! Heap signals from HotSpot's memory-pool probes: per pool and memory
//! manager, what the BPF side folded into `POOL_STATS` (see
//! `pausewatch_common::heap`), and what follows from it per process: the
//! allocated and promoted bytes, the live set after a full collection, the
//! heap after the latest collection against its maximum.
//!
//! How each number is derived, and what each collector reports in its
//! pools, is in `docs/design.md` ("Heap signals").

use pausewatch_common::heap::PoolStats;

/// One pool as collected by one memory manager, names resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSeries {
    /// Process id.
    pub pid: u32,
    /// The memory manager, e.g. `G1 Young Generation`, `PS MarkSweep`.
    pub manager: String,
    /// The pool, e.g. `G1 Eden Space`, `Tenured Gen`, `Metaspace`.
    pub pool: String,
    /// What the BPF side kept.
    pub stats: PoolStats,
}

impl PoolSeries {
    /// The order of a snapshot's pools: by pid, manager and pool.
    pub fn order(a: &PoolSeries, b: &PoolSeries) -> std::cmp::Ordering {
        (a.pid, &a.manager, &a.pool).cmp(&(b.pid, &b.manager, &b.pool))
    }
}

/// What a pool holds, from its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolRole {
    /// Where new objects are allocated (eden).
    Young,
    /// Survivor spaces.
    Survivor,
    /// The old (tenured) generation.
    Old,
    /// A heap that is not split into generations HotSpot reports apart
    /// (ZGC's `ZHeap`, generational ZGC's two pools, Shenandoah, Epsilon).
    Whole,
    /// Not the Java heap (Metaspace, the code cache).
    NonHeap,
}

/// What a memory manager's collections are, from its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManagerRole {
    /// Young collections (G1's also do mixed ones).
    Young,
    /// Full, stop-the-world collections of the whole heap.
    Full,
    /// Anything else: G1's Remark and Cleanup pauses (JDK 21+), the
    /// cycles and pauses of ZGC and Shenandoah.
    Other,
}

/// The role of a HotSpot memory pool by its name (`memoryPool.cpp`,
/// `g1MemoryPool.cpp`, `psMemoryPool.cpp`, `zMemoryManager`, ...).
pub fn pool_role(pool: &str) -> PoolRole {
    match pool {
        "Eden Space" | "PS Eden Space" | "G1 Eden Space" | "Par Eden Space" => PoolRole::Young,
        "Survivor Space" | "PS Survivor Space" | "G1 Survivor Space" | "Par Survivor Space" => {
            PoolRole::Survivor
        }
        "Tenured Gen" | "PS Old Gen" | "G1 Old Gen" | "CMS Old Gen" => PoolRole::Old,
        "ZHeap" | "ZGC Young Generation" | "ZGC Old Generation" | "Shenandoah" | "Epsilon Heap" => {
            PoolRole::Whole
        }
        _ => PoolRole::NonHeap,
    }
}

/// The role of a HotSpot memory manager by its name.
pub fn manager_role(manager: &str) -> ManagerRole {
    match manager {
        "Copy" | "PS Scavenge" | "G1 Young Generation" | "ParNew" => ManagerRole::Young,
        "MarkSweepCompact" | "PS MarkSweep" | "G1 Old Generation" | "ConcurrentMarkSweep" => {
            ManagerRole::Full
        }
        _ => ManagerRole::Other,
    }
}

/// HotSpot reports an undefined maximum as `(size_t)-1`.
const UNDEFINED: u64 = u64::MAX;

/// The heap of one process, derived from its pools.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeapView {
    /// Per heap pool: used bytes after its latest collection, and its
    /// maximum when defined.
    pub pools: Vec<(String, u64, Option<u64>)>,
    /// Per memory manager that collected the heap: its collections and the
    /// sum of the heap's used bytes after each of them.
    pub managers: Vec<(String, u64, u64)>,
    /// Bytes allocated between collections: the heap pools' growth from
    /// one collection's end to the next one's begin, summed. `None` for
    /// heaps without generations (ZGC, Shenandoah).
    pub allocated_bytes: Option<u64>,
    /// Bytes the old generation grew by during young collections.
    pub promoted_bytes: Option<u64>,
    /// Heap used after the latest full collection, and that collection's
    /// end (CLOCK_MONOTONIC ns); `None` before the first one.
    pub live_after_full: Option<(u64, u64)>,
    /// Full collections seen.
    pub full_collections: u64,
    /// Young collections seen.
    pub young_collections: u64,
    /// Heap used after the latest collection of any manager.
    pub used_after_last: u64,
    /// The heap's maximum: the sum of its pools' defined maxima.
    pub max_bytes: Option<u64>,
    /// The old generation's maximum (the heap's, for G1 and for heaps
    /// without generations).
    pub old_max_bytes: Option<u64>,
}

impl HeapView {
    /// The view of `pid` from the pool series of a snapshot, or `None`
    /// when the process has no heap pools (yet).
    pub fn of(pid: u32, series: &[impl std::borrow::Borrow<PoolSeries>]) -> Option<HeapView> {
        let heap: Vec<&PoolSeries> = series
            .iter()
            .map(std::borrow::Borrow::borrow)
            .filter(|s| s.pid == pid && pool_role(&s.pool) != PoolRole::NonHeap)
            .collect();
        if heap.is_empty() {
            return None;
        }
        let mut view = HeapView::default();
        let generational = heap.iter().all(|s| pool_role(&s.pool) != PoolRole::Whole);
        let mut pools: Vec<&str> = heap.iter().map(|s| s.pool.as_str()).collect();
        pools.sort_unstable();
        pools.dedup();
        let mut old_max = None;
        let mut whole_max = None;
        for pool in &pools {
            // The latest collection of this pool, by any manager.
            let Some(latest) = heap
                .iter()
                .filter(|s| s.pool == *pool)
                .max_by_key(|s| s.stats.last_end_ns)
            else {
                continue;
            };
            let max = (latest.stats.max != UNDEFINED && latest.stats.max != 0)
                .then_some(latest.stats.max);
            match pool_role(pool) {
                PoolRole::Old => old_max = max,
                PoolRole::Whole => whole_max = Some(whole_max.unwrap_or(0) + max.unwrap_or(0)),
                _ => {}
            }
            view.used_after_last += latest.stats.used_after;
            view.pools
                .push((pool.to_string(), latest.stats.used_after, max));
        }
        let maxima: Vec<u64> = view.pools.iter().filter_map(|p| p.2).collect();
        view.max_bytes = (!maxima.is_empty()).then(|| maxima.iter().sum());
        view.old_max_bytes = old_max.or(whole_max.filter(|&m| m > 0));

        let mut managers: Vec<&str> = heap.iter().map(|s| s.manager.as_str()).collect();
        managers.sort_unstable();
        managers.dedup();
        for manager in managers {
            let of: Vec<&&PoolSeries> = heap.iter().filter(|s| s.manager == manager).collect();
            // Every pool is reported at every collection: any pool's count
            // is the manager's.
            let collections = of.iter().map(|s| s.stats.collections).max().unwrap_or(0);
            let sum = of.iter().map(|s| s.stats.used_after_sum).sum();
            view.managers.push((manager.to_string(), collections, sum));
            match manager_role(manager) {
                ManagerRole::Full => {
                    view.full_collections += collections;
                    let at = of.iter().map(|s| s.stats.last_end_ns).max().unwrap_or(0);
                    if collections > 0 {
                        let live = of.iter().map(|s| s.stats.used_after).sum();
                        if view.live_after_full.is_none_or(|(_, t)| at > t) {
                            view.live_after_full = Some((live, at));
                        }
                    }
                }
                ManagerRole::Young => view.young_collections += collections,
                ManagerRole::Other => {}
            }
        }
        if generational {
            view.allocated_bytes = Some(heap.iter().map(|s| s.stats.grown_between).sum());
            view.promoted_bytes = Some(
                heap.iter()
                    .filter(|s| {
                        pool_role(&s.pool) == PoolRole::Old
                            && manager_role(&s.manager) == ManagerRole::Young
                    })
                    .map(|s| s.stats.grown_during)
                    .sum(),
            );
        }
        Some(view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(manager: &str, pool: &str, f: impl FnOnce(&mut PoolStats)) -> PoolSeries {
        let mut stats = PoolStats::default();
        f(&mut stats);
        PoolSeries {
            pid: 7,
            manager: manager.into(),
            pool: pool.into(),
            stats,
        }
    }

    #[test]
    fn derives_allocation_promotion_and_live_set() {
        const M: u64 = 1 << 20;
        let series = vec![
            pool("G1 Young Generation", "G1 Eden Space", |s| {
                s.collections = 10;
                s.grown_between = 100 * M;
                s.used_after = 0;
                s.max = u64::MAX;
                s.last_end_ns = 50;
            }),
            pool("G1 Young Generation", "G1 Old Gen", |s| {
                s.collections = 10;
                s.grown_between = 4 * M; // humongous objects
                s.grown_during = 6 * M;
                s.used_after = 30 * M;
                s.used_after_sum = 200 * M;
                s.max = 256 * M;
                s.last_end_ns = 50;
            }),
            pool("G1 Old Generation", "G1 Old Gen", |s| {
                s.collections = 1;
                s.grown_during = 9 * M; // not promotion: a full collection
                s.used_after = 20 * M;
                s.used_after_sum = 20 * M;
                s.max = 256 * M;
                s.last_end_ns = 40;
            }),
            pool("G1 Old Generation", "G1 Eden Space", |s| {
                s.collections = 1;
                s.max = u64::MAX;
                s.last_end_ns = 40;
            }),
            pool("G1 Young Generation", "Metaspace", |s| {
                s.collections = 10;
                s.grown_between = 3 * M;
                s.used_after = 9 * M;
            }),
        ];
        let v = HeapView::of(7, &series).unwrap();
        assert_eq!(v.allocated_bytes, Some(104 * M));
        assert_eq!(v.promoted_bytes, Some(6 * M));
        assert_eq!(v.live_after_full, Some((20 * M, 40)));
        assert_eq!(v.used_after_last, 30 * M);
        assert_eq!(v.max_bytes, Some(256 * M));
        assert_eq!(v.old_max_bytes, Some(256 * M));
        assert_eq!((v.young_collections, v.full_collections), (10, 1));
        assert!(
            v.managers
                .contains(&("G1 Young Generation".into(), 10, 200 * M))
        );
        assert!(HeapView::of(8, &series).is_none());
    }

    #[test]
    fn heaps_without_generations_have_no_allocation_figure() {
        let series = vec![pool("ZGC Cycles", "ZHeap", |s| {
            s.collections = 3;
            s.used_after = 5;
            s.max = 100;
        })];
        let v = HeapView::of(7, &series).unwrap();
        assert_eq!(v.allocated_bytes, None);
        assert_eq!(v.old_max_bytes, Some(100));
        assert_eq!(manager_role("ZGC Pauses"), ManagerRole::Other);
    }
}
