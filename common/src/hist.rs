//! Log-linear latency histogram, binned in BPF and decoded in userspace.
//!
//! Values are nanoseconds. Each power of two from 2^[`MIN_EXP`] to
//! 2^[`MAX_EXP`] is split into [`SUB`] equal sub-buckets, so a bucket is at
//! most 25% wide relative to its lower edge (HdrHistogram's idea with two
//! significant bits). Bucket 0 holds everything below 2^MIN_EXP ns (about
//! 1 µs) and the last bucket everything from 2^MAX_EXP ns (about 18 min).
//! The agent exports a coarser subset of these edges to Prometheus; because
//! every exported edge is an edge here, exported counts stay exact.

/// log2 of the first bucket edge (1024 ns).
pub const MIN_EXP: u32 = 10;
/// log2 of the last bucket edge (~1100 s).
pub const MAX_EXP: u32 = 40;
/// log2 of the number of sub-buckets per power of two.
pub const SUB_BITS: u32 = 2;
/// Sub-buckets per power of two.
pub const SUB: u32 = 1 << SUB_BITS;
/// Total number of buckets.
pub const BUCKETS: usize = (2 + (MAX_EXP - MIN_EXP) * SUB) as usize;

/// One latency histogram as stored in the (per-CPU) BPF map.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Histogram {
    /// Number of observations (exact).
    pub count: u64,
    /// Sum of observations in nanoseconds (exact).
    pub sum_ns: u64,
    /// Largest observation in nanoseconds.
    pub max_ns: u64,
    /// Observations per bucket, see [`bucket_index`].
    pub buckets: [u64; BUCKETS],
    /// Wall time of the driving thread over these observations, split by
    /// scheduler state and indexed by [`crate::ThreadState`] (pauses only;
    /// zero for kinds without anatomy and when the anatomy is off).
    pub state_ns: [u64; crate::THREAD_STATES],
    /// HotSpot GC pauses: the GC worker threads' time inside these pauses,
    /// summed over the workers, by [`crate::ThreadState`] (running and
    /// runnable are complete; blocked only counts sleeps between two
    /// pieces of work within a pause).
    pub worker_ns: [u64; crate::THREAD_STATES],
}

impl Histogram {
    /// An empty histogram.
    pub const ZERO: Histogram = Histogram {
        count: 0,
        sum_ns: 0,
        max_ns: 0,
        buckets: [0; BUCKETS],
        state_ns: [0; crate::THREAD_STATES],
        worker_ns: [0; crate::THREAD_STATES],
    };
}

/// Bucket that holds a value of `ns` nanoseconds.
///
/// Branch-light and loop-free so the BPF verifier accepts it cheaply.
#[inline(always)]
pub fn bucket_index(ns: u64) -> usize {
    if ns < (1u64 << MIN_EXP) {
        return 0;
    }
    if ns >= (1u64 << MAX_EXP) {
        return BUCKETS - 1;
    }
    let exp = 63 - ns.leading_zeros();
    let sub = ((ns >> (exp - SUB_BITS)) as u32) & (SUB - 1);
    (1 + (exp - MIN_EXP) * SUB + sub) as usize
}

/// Exclusive upper edge of bucket `i` in nanoseconds (`None` for the last,
/// unbounded bucket). A value `v` is in bucket `i` iff
/// `upper(i-1) <= v < upper(i)`.
pub fn bucket_upper_bound_ns(i: usize) -> Option<u64> {
    if i >= BUCKETS - 1 {
        return None;
    }
    if i == 0 {
        return Some(1u64 << MIN_EXP);
    }
    let j = (i - 1) as u32;
    let exp = MIN_EXP + j / SUB;
    let sub = u64::from(j % SUB) + 1;
    Some((1u64 << exp) + (sub << (exp - SUB_BITS)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_are_consistent_with_binning() {
        for i in 0..BUCKETS - 1 {
            let hi = bucket_upper_bound_ns(i).unwrap();
            assert_eq!(bucket_index(hi - 1), i, "just below edge of bucket {i}");
            assert_eq!(bucket_index(hi), i + 1, "at edge of bucket {i}");
        }
        assert_eq!(bucket_upper_bound_ns(BUCKETS - 1), None);
        assert_eq!(bucket_index(0), 0);
        assert_eq!(bucket_index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn relative_width_is_at_most_a_quarter() {
        for i in 1..BUCKETS - 1 {
            let lo = bucket_upper_bound_ns(i - 1).unwrap() as f64;
            let hi = bucket_upper_bound_ns(i).unwrap() as f64;
            assert!((hi - lo) / lo <= 0.25 + 1e-12, "bucket {i}: {lo}..{hi}");
        }
    }
}
