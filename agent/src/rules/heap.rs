//! The heap features (HotSpot's memory pools, see [`crate::collect::heap`])
//! over a rule window: allocation and promotion rates, the live set after
//! the latest full collection against the old generation's maximum, and
//! the share of full collections the application asked for.

use pausewatch_common::Kind;

use super::features::FeatureValue;
use crate::{
    collect::{Snapshot, heap::HeapView},
    runtimes::Runtime,
};

const MIB: f64 = 1024.0 * 1024.0;

/// The heap part of a window's statistics (all zero for a process without
/// heap pools: every runtime but HotSpot, or a JVM without the probes).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeapWindow {
    /// MiB allocated per second.
    pub alloc_mb_per_s: f64,
    /// MiB promoted to the old generation per second.
    pub promotion_mb_per_s: f64,
    /// Promoted over allocated bytes (0..1).
    pub promotion_share: f64,
    /// MiB allocated between two young collections, on average.
    pub alloc_per_gc_mb: f64,
    /// Heap used after the latest full collection, MiB.
    pub live_set_mb: f64,
    /// `live_set_mb` over the old generation's maximum (the heap's for G1).
    pub live_set_ratio: f64,
    /// The old generation's maximum, MiB.
    pub old_max_mb: f64,
    /// A heap size that holds the live set in an old generation three times
    /// its size, young generation unchanged, rounded up to 64 MiB.
    pub suggested_heap_mb: f64,
    /// Heap used after the latest collection over the heap's maximum.
    pub heap_after_gc_ratio: f64,
    /// Share of the window's full collections whose safepoint was an
    /// explicitly requested one (`System.gc()`).
    pub explicit_gc_share: f64,
    /// Full collections in the window by the memory managers' count (not a
    /// feature: it corrects `full_gc_per_min`, see [`HeapWindow::of`]).
    pub full_collections: u64,
}

/// The heap features' names, documented in [`super::FEATURES`] (a test
/// keeps the two in step).
pub const NAMES: [&str; 10] = [
    "alloc_mb_per_s",
    "promotion_mb_per_s",
    "promotion_share",
    "alloc_per_gc_mb",
    "live_set_mb",
    "live_set_ratio",
    "old_max_mb",
    "suggested_heap_mb",
    "heap_after_gc_ratio",
    "explicit_gc_share",
];

impl HeapWindow {
    /// The heap statistics of `pid` between `before` and `now`, `secs` apart.
    pub fn of(runtime: Runtime, pid: u32, before: &Snapshot, now: &Snapshot, secs: f64) -> Self {
        let Some(v) = HeapView::of(pid, now.heap_of(pid)) else {
            return HeapWindow::default();
        };
        let old = HeapView::of(pid, before.heap_of(pid)).unwrap_or_default();
        let delta = |f: fn(&HeapView) -> Option<u64>| {
            f(&v).unwrap_or(0).saturating_sub(f(&old).unwrap_or(0)) as f64
        };
        let allocated = delta(|v| v.allocated_bytes);
        let promoted = delta(|v| v.promoted_bytes);
        let young = v.young_collections.saturating_sub(old.young_collections);
        let per_s = |bytes: f64| if secs > 0.0 { bytes / MIB / secs } else { 0.0 };
        let ratio = |a: f64, b: f64| if b > 0.0 { (a / b).min(1.0) } else { 0.0 };
        let live = v.live_after_full.map_or(0, |(l, _)| l) as f64;
        let old_max = v.old_max_bytes.unwrap_or(0) as f64;
        let heap_max = v.max_bytes.unwrap_or(0) as f64;
        let suggested = if live > 0.0 && heap_max > 0.0 {
            let mb = (heap_max - old_max + 3.0 * live) / MIB;
            (mb / 64.0).ceil() * 64.0
        } else {
            0.0
        };
        // Parallel runs the full collection that a failed scavenge needs
        // inside the scavenge's `SvcGCMarker(MINOR)` (PSScavenge::invoke
        // calls PSParallelCompact::invoke_no_policy), so `gc__begin` calls
        // it minor; its memory manager, `PS MarkSweep`, counts it.
        let manager_full = v.full_collections.saturating_sub(old.full_collections);
        let (probe_full, explicit) = explicit_and_full(runtime, pid, before, now);
        let full = probe_full.max(manager_full);
        HeapWindow {
            alloc_mb_per_s: per_s(allocated),
            promotion_mb_per_s: per_s(promoted),
            promotion_share: ratio(promoted, allocated),
            alloc_per_gc_mb: if young > 0 {
                allocated / MIB / young as f64
            } else {
                0.0
            },
            live_set_mb: live / MIB,
            live_set_ratio: ratio(live, old_max),
            old_max_mb: old_max / MIB,
            suggested_heap_mb: suggested,
            heap_after_gc_ratio: ratio(v.used_after_last as f64, heap_max),
            explicit_gc_share: ratio(explicit.min(full) as f64, full as f64),
            full_collections: manager_full,
        }
    }

    /// The value of heap feature `name`, `None` for other names.
    pub fn get(&self, name: &str) -> Option<FeatureValue> {
        let n = match name {
            "alloc_mb_per_s" => self.alloc_mb_per_s,
            "promotion_mb_per_s" => self.promotion_mb_per_s,
            "promotion_share" => self.promotion_share,
            "alloc_per_gc_mb" => self.alloc_per_gc_mb,
            "live_set_mb" => self.live_set_mb,
            "live_set_ratio" => self.live_set_ratio,
            "old_max_mb" => self.old_max_mb,
            "suggested_heap_mb" => self.suggested_heap_mb,
            "heap_after_gc_ratio" => self.heap_after_gc_ratio,
            "explicit_gc_share" => self.explicit_gc_share,
            _ => return None,
        };
        Some(FeatureValue::Number(n))
    }
}

/// Full collections in the window, and safepoints whose operation was an
/// explicit request for one. The two are separate series (the `gc` pause
/// knows full or not, its safepoint the operation), so a full collection
/// is counted explicit up to the number of such safepoints.
fn explicit_and_full(runtime: Runtime, pid: u32, before: &Snapshot, now: &Snapshot) -> (u64, u64) {
    let m = runtime.module();
    let count = |s: &Snapshot, f: &dyn Fn(Kind, &str) -> bool| -> u64 {
        s.series_of(pid)
            .iter()
            .filter(|x| f(x.kind, &x.cause))
            .map(|x| x.hist.count)
            .sum()
    };
    let full = |k: Kind, c: &str| m.is_gc(k, c) && m.is_full_gc(c);
    let explicit = |k: Kind, c: &str| k == Kind::Safepoint && m.is_explicit_gc(c);
    (
        count(now, &full).saturating_sub(count(before, &full)),
        count(now, &explicit).saturating_sub(count(before, &explicit)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::snapshot::shared;
    use crate::collect::{Hist, Series, TargetInfo, heap::PoolSeries};
    use pausewatch_common::heap::PoolStats;

    const M: u64 = 1 << 20;

    fn snapshot(alloc: u64, promoted: u64, young: u64, full: u64, live: u64) -> Snapshot {
        let pool = |manager: &str, pool: &str, s: PoolStats| PoolSeries {
            pid: 9,
            manager: manager.into(),
            pool: pool.into(),
            stats: s,
        };
        let mut heap = vec![
            pool(
                "Copy",
                "Eden Space",
                PoolStats {
                    collections: young,
                    grown_between: alloc,
                    max: 16 * M,
                    last_end_ns: 2,
                    ..Default::default()
                },
            ),
            pool(
                "Copy",
                "Tenured Gen",
                PoolStats {
                    collections: young,
                    grown_during: promoted,
                    used_after: live + M,
                    max: 112 * M,
                    last_end_ns: 2,
                    ..Default::default()
                },
            ),
        ];
        if full > 0 {
            heap.push(pool(
                "MarkSweepCompact",
                "Tenured Gen",
                PoolStats {
                    collections: full,
                    used_after: live,
                    max: 112 * M,
                    last_end_ns: 1,
                    ..Default::default()
                },
            ));
        }
        let series = |kind: Kind, cause: &str, n: u64| Series {
            pid: 9,
            kind,
            cause: cause.into(),
            hist: Hist::of(&vec![1_000_000; n as usize]),
        };
        Snapshot {
            targets: shared(vec![TargetInfo::java(9)]),
            series: shared(vec![
                series(Kind::GcPause, "full", full),
                series(Kind::Safepoint, "GenCollectFull", full),
            ]),
            heap: shared(heap),
            ..Default::default()
        }
    }

    #[test]
    fn every_heap_feature_is_documented_and_readable() {
        for n in NAMES {
            assert!(super::super::features::feature_type(n).is_some(), "{n}");
            assert!(HeapWindow::default().get(n).is_some(), "{n}");
        }
    }

    #[test]
    fn rates_ratios_and_explicit_share() {
        let before = snapshot(100 * M, 10 * M, 10, 1, 20 * M);
        let now = snapshot(300 * M, 50 * M, 30, 3, 28 * M);
        let h = HeapWindow::of(Runtime::HotSpot, 9, &before, &now, 10.0);
        assert_eq!(h.alloc_mb_per_s, 20.0);
        assert_eq!(h.promotion_mb_per_s, 4.0);
        assert_eq!(h.promotion_share, 0.2);
        assert_eq!(h.alloc_per_gc_mb, 10.0);
        assert_eq!(h.live_set_mb, 28.0);
        assert_eq!(h.live_set_ratio, 0.25);
        assert_eq!(h.old_max_mb, 112.0);
        // 16 MiB young + 3 × 28 MiB old = 100 MiB, rounded up to 128.
        assert_eq!(h.suggested_heap_mb, 128.0);
        assert_eq!(h.explicit_gc_share, 1.0);
        assert_eq!(h.get("live_set_ratio"), Some(FeatureValue::Number(0.25)));
        assert_eq!(h.get("p99_ms"), None);
        let empty = Snapshot::default();
        assert_eq!(
            HeapWindow::of(Runtime::HotSpot, 9, &empty, &empty, 1.0),
            HeapWindow::default()
        );
    }
}
