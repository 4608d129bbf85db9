//! The `le` boundaries every exported histogram shares, and the exact
//! cumulative counts of a fine BPF histogram at them.

use pausewatch_common::bucket_upper_bound_ns;

use crate::collect::Hist;

/// Number of exported `le` boundaries per histogram (+Inf not counted).
pub const EXPORTED_EDGE_COUNT: usize = 39;

/// The `le` boundaries exported for every histogram, in nanoseconds:
/// 2^13, 2^14, then 2^k and 1.5·2^k for k = 15..=31, then 2^32, 2^33, 2^34
/// (8.192 µs to 17.18 s).
///
/// Each one is an edge of the fine BPF layout (`pausewatch_common::hist`), so
/// a cumulative count is a plain sum of whole fine buckets and stays exact;
/// a boundary that fell inside a fine bucket would need interpolation.
/// Denser where pauses usually are (tens of µs to seconds), and few enough
/// to keep the series count per histogram reasonable.
pub const EXPORTED_EDGES_NS: [u64; EXPORTED_EDGE_COUNT] = exported_edges();

const fn exported_edges() -> [u64; EXPORTED_EDGE_COUNT] {
    let mut edges = [0u64; EXPORTED_EDGE_COUNT];
    edges[0] = 1 << 13;
    edges[1] = 1 << 14;
    let mut n = 2;
    let mut k = 15;
    while k <= 31 {
        edges[n] = 1 << k;
        edges[n + 1] = 3 << (k - 1);
        n += 2;
        k += 1;
    }
    edges[n] = 1 << 32;
    edges[n + 1] = 1 << 33;
    edges[n + 2] = 1 << 34;
    edges
}

/// Cumulative counts at each of [`EXPORTED_EDGES_NS`].
///
/// Fine bucket `i` holds values below `bucket_upper_bound_ns(i)`, so it
/// belongs to every exported boundary at or above that edge. So a boundary
/// counts the values strictly below it; Prometheus reads `le` as "at most",
/// which differs only for a pause of exactly that many nanoseconds. Counts are
/// clamped to `hist.count`: count and buckets are separate per-CPU words
/// that a reader can catch mid-update, and a bucket above `_count` would
/// make the histogram invalid, while `_count` itself stays exact.
pub fn cumulative_counts(hist: &Hist) -> [u64; EXPORTED_EDGE_COUNT] {
    let mut counts = [0u64; EXPORTED_EDGE_COUNT];
    for (i, n) in hist.buckets.iter() {
        if n == 0 {
            continue;
        }
        // The last fine bucket is unbounded: it only counts towards +Inf.
        let Some(upper) = bucket_upper_bound_ns(i) else {
            continue;
        };
        let slot = EXPORTED_EDGES_NS.partition_point(|&edge| edge < upper);
        if let Some(c) = counts.get_mut(slot) {
            *c = c.saturating_add(n);
        }
    }
    let mut running = 0u64;
    for c in &mut counts {
        running = running.saturating_add(*c);
        *c = running.min(hist.count);
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use pausewatch_common::BUCKETS;

    #[test]
    fn exported_edges_are_fine_bucket_edges() {
        assert!(EXPORTED_EDGES_NS.len() <= 40);
        let fine: Vec<u64> = (0..BUCKETS).filter_map(bucket_upper_bound_ns).collect();
        for edge in EXPORTED_EDGES_NS {
            assert!(fine.contains(&edge), "{edge} ns is not a fine bucket edge");
        }
        assert!(EXPORTED_EDGES_NS.windows(2).all(|w| w[0] < w[1]));
        assert!(EXPORTED_EDGES_NS[0] <= 10_000, "must cover 10 µs");
        assert!(EXPORTED_EDGES_NS[EXPORTED_EDGE_COUNT - 1] >= 10_000_000_000);
        assert_eq!(EXPORTED_EDGES_NS[2], 1 << 15);
        assert_eq!(EXPORTED_EDGES_NS[3], 3 << 14);
        assert_eq!(EXPORTED_EDGES_NS[EXPORTED_EDGE_COUNT - 1], 1 << 34);
    }
}
