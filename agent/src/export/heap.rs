//! The heap families, from HotSpot's memory-pool probes (see
//! [`crate::collect::heap`]). Kept apart from [`super::metrics`] so the
//! pause families there stay as they are.

use std::collections::BTreeMap;

use super::text::{Labels, MetricType, TextWriter};
use crate::collect::{Snapshot, TargetInfo, heap::HeapView};

/// Gauge: a heap pool's used bytes after its latest collection.
pub const HEAP_USED_AFTER_GC_BYTES: &str = "pausewatch_heap_used_after_gc_bytes";
/// Gauge: a heap pool's maximum size (pools with a defined maximum only).
pub const HEAP_MAX_BYTES: &str = "pausewatch_heap_max_bytes";
/// Counter: bytes allocated, as the heap's growth between collections.
pub const ALLOCATED_BYTES_TOTAL: &str = "pausewatch_allocated_bytes_total";
/// Counter: bytes the old generation grew by during young collections.
pub const PROMOTED_BYTES_TOTAL: &str = "pausewatch_promoted_bytes_total";
/// Gauge: the heap's used bytes after the latest full collection.
pub const LIVE_AFTER_FULL_GC_BYTES: &str = "pausewatch_live_after_full_gc_bytes";
/// Counter: collections per memory manager.
pub const HEAP_COLLECTIONS_TOTAL: &str = "pausewatch_heap_collections_total";
/// Counter: the heap's used bytes after each collection, summed.
pub const HEAP_AFTER_GC_SUMMED_BYTES_TOTAL: &str = "pausewatch_heap_after_gc_summed_bytes_total";

const USED_HELP: &str =
    "Used bytes of a heap pool after its latest collection (HotSpot mem__pool__gc__end).";
const MAX_HELP: &str = "Maximum bytes of a heap pool, where the collector defines one.";
const ALLOCATED_HELP: &str = "Bytes allocated, measured as the heap's growth from each collection's end to the next one's begin (generational collectors only).";
const PROMOTED_HELP: &str = "Bytes the old generation grew by during young collections (promotion, net of old regions a mixed collection freed).";
const LIVE_HELP: &str = "Heap bytes used after the latest full collection: the live set.";
const COLLECTIONS_HELP: &str = "Collections by each HotSpot memory manager.";
const SUMMED_HELP: &str = "The heap's used bytes after each collection of a memory manager, summed; divided by pausewatch_heap_collections_total, the mean heap after collection.";

/// Writes the heap families of every target that has heap pools.
pub fn write_heap(snapshot: &Snapshot, w: &mut TextWriter) {
    if snapshot.heap.is_empty() {
        return;
    }
    let mut targets: BTreeMap<u32, &TargetInfo> = BTreeMap::new();
    for t in &snapshot.targets {
        targets.entry(t.pid).or_insert(t);
    }
    let mut pids: Vec<u32> = snapshot.heap.iter().map(|p| p.pid).collect();
    pids.dedup();
    let views: Vec<(Labels, HeapView)> = pids
        .into_iter()
        .filter_map(|pid| {
            let view = HeapView::of(pid, snapshot.heap_of(pid))?;
            let (comm, runtime) = match targets.get(&pid) {
                Some(t) => (t.comm.as_str(), t.runtime.label()),
                None => ("", "unknown"),
            };
            let labels = Labels::new()
                .with("pid", &pid.to_string())
                .with("comm", comm)
                .with("runtime", runtime);
            Some((labels, view))
        })
        .collect();
    if views.is_empty() {
        return;
    }
    w.family(HEAP_USED_AFTER_GC_BYTES, USED_HELP, MetricType::Gauge);
    for (labels, v) in &views {
        for (pool, used, _) in &v.pools {
            w.sample(&labels.clone().with("pool", pool), *used as f64);
        }
    }
    w.family(HEAP_MAX_BYTES, MAX_HELP, MetricType::Gauge);
    for (labels, v) in &views {
        for (pool, _, max) in &v.pools {
            if let Some(max) = max {
                w.sample(&labels.clone().with("pool", pool), *max as f64);
            }
        }
    }
    let counter = |w: &mut TextWriter, name, help, get: fn(&HeapView) -> Option<u64>| {
        if views.iter().any(|(_, v)| get(v).is_some()) {
            w.family(name, help, MetricType::Counter);
            for (labels, v) in &views {
                if let Some(n) = get(v) {
                    w.sample(labels, n as f64);
                }
            }
        }
    };
    counter(w, ALLOCATED_BYTES_TOTAL, ALLOCATED_HELP, |v| {
        v.allocated_bytes
    });
    counter(w, PROMOTED_BYTES_TOTAL, PROMOTED_HELP, |v| v.promoted_bytes);
    if views.iter().any(|(_, v)| v.live_after_full.is_some()) {
        w.family(LIVE_AFTER_FULL_GC_BYTES, LIVE_HELP, MetricType::Gauge);
        for (labels, v) in &views {
            if let Some((live, _)) = v.live_after_full {
                w.sample(labels, live as f64);
            }
        }
    }
    w.family(
        HEAP_COLLECTIONS_TOTAL,
        COLLECTIONS_HELP,
        MetricType::Counter,
    );
    for (labels, v) in &views {
        for (manager, n, _) in &v.managers {
            w.sample(&labels.clone().with("manager", manager), *n as f64);
        }
    }
    w.family(
        HEAP_AFTER_GC_SUMMED_BYTES_TOTAL,
        SUMMED_HELP,
        MetricType::Counter,
    );
    for (labels, v) in &views {
        for (manager, _, sum) in &v.managers {
            w.sample(&labels.clone().with("manager", manager), *sum as f64);
        }
    }
}
