//! Parser for the Go workload's `stopping` lines: the runtime's own
//! stopping-time histograms (`/sched/pauses/stopping/gc:seconds` and
//! `/sched/pauses/stopping/other:seconds`, Go 1.22+), read through
//! `runtime/metrics` when the work starts and when it is done
//! (`xtask/workloads/go/stopping.go`):
//!
//! ```text
//! stopping tag=start t0=NS t1=NS bounds=-inf,0,128,...,inf gc=192:256:1,... other=...
//! ```
//!
//! `t0`/`t1` are CLOCK_MONOTONIC ns around the read; `bounds` are the
//! runtime's bucket boundaries in ns (bucket `k` holds `bounds[k] <= v <
//! bounds[k+1]`), and each class lists its non-empty buckets as
//! `LO:HI:COUNT`. The open ends are `-inf`/`inf`, here `i64::MIN`/`i64::MAX`.
//!
//! The runtime records `finishedStopping - startedStopping` of every
//! stop-the-world in `stopTheWorldWithSema`, in the `gc` class when the
//! reason is `GC mark termination` or `GC sweep termination`
//! (`stwReason.isGC`), else in `other`.

/// One `stopping` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoppingRead {
    /// `start` or `end`.
    pub tag: String,
    /// CLOCK_MONOTONIC ns just before the read.
    pub t0: u64,
    /// CLOCK_MONOTONIC ns just after the read.
    pub t1: u64,
    /// Bucket boundaries in ns, ascending.
    pub bounds: Vec<i64>,
    /// Counts of the `gc` class, one per bucket (`bounds.len() - 1`).
    pub gc: Vec<u64>,
    /// Counts of the `other` class, one per bucket.
    pub other: Vec<u64>,
}

/// Whether a stop-the-world reason is in the runtime's `gc` class.
pub fn is_gc_reason(cause: &str) -> bool {
    cause == "GC mark termination" || cause == "GC sweep termination"
}

fn bound(text: &str) -> Option<i64> {
    match text {
        "-inf" => Some(i64::MIN),
        "inf" => Some(i64::MAX),
        _ => text.parse().ok(),
    }
}

impl StoppingRead {
    /// Parses one line, or `None` if it is not a well-formed `stopping` line
    /// (every listed bucket must be one of `bounds`' buckets).
    pub fn parse(line: &str) -> Option<StoppingRead> {
        let rest = line.strip_prefix("stopping ")?;
        let mut tag = None;
        let (mut t0, mut t1, mut bounds) = (None, None, None);
        let (mut gc, mut other) = (None, None);
        for field in rest.split_whitespace() {
            let (key, value) = field.split_once('=')?;
            match key {
                "tag" => tag = Some(value.to_string()),
                "t0" => t0 = value.parse().ok(),
                "t1" => t1 = value.parse().ok(),
                "bounds" => {
                    let b: Option<Vec<i64>> = value.split(',').map(bound).collect();
                    bounds = b;
                }
                "gc" => gc = Some(value.to_string()),
                "other" => other = Some(value.to_string()),
                _ => {}
            }
        }
        let bounds = bounds?;
        if bounds.len() < 2 || bounds.windows(2).any(|w| w[0] >= w[1]) {
            return None;
        }
        let counts = |list: &str| -> Option<Vec<u64>> {
            let mut out = vec![0; bounds.len() - 1];
            for bucket in list.split(',').filter(|b| !b.is_empty()) {
                let mut parts = bucket.split(':');
                let lo = bound(parts.next()?)?;
                let hi = bound(parts.next()?)?;
                let n: u64 = parts.next()?.parse().ok()?;
                let k = bounds.iter().position(|&b| b == lo)?;
                if bounds.get(k + 1) != Some(&hi) {
                    return None;
                }
                out[k] += n;
            }
            Some(out)
        };
        Some(StoppingRead {
            tag: tag?,
            t0: t0?,
            t1: t1?,
            gc: counts(&gc?)?,
            other: counts(&other?)?,
            bounds,
        })
    }

    /// The bucket holding `ns`.
    pub fn bucket_of(&self, ns: u64) -> Option<usize> {
        let v = i64::try_from(ns).ok()?;
        let k = self.bounds.partition_point(|&b| b <= v);
        k.checked_sub(1).filter(|&k| k + 1 < self.bounds.len())
    }

    /// The counts of the class of `cause`.
    pub fn class(&self, gc: bool) -> &[u64] {
        if gc { &self.gc } else { &self.other }
    }

    /// The stop-the-worlds recorded after `earlier` was read, per bucket of
    /// the class (`None` if the bucket layouts differ or a count went down).
    pub fn since(&self, earlier: &StoppingRead, gc: bool) -> Option<Vec<u64>> {
        if self.bounds != earlier.bounds {
            return None;
        }
        self.class(gc)
            .iter()
            .zip(earlier.class(gc))
            .map(|(now, then)| now.checked_sub(*then))
            .collect()
    }
}

/// The bucket holding the `q` quantile (nearest rank) of `counts`, or
/// `None` if they are all 0.
pub fn quantile_bucket(counts: &[u64], q: f64) -> Option<usize> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    counts.iter().position(|&n| {
        seen += n;
        seen >= rank
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: &str = "stopping tag=start t0=100 t1=200 bounds=-inf,0,128,256,320,inf \
                         gc=128:256:2 other=";
    const END: &str = "stopping tag=end t0=900 t1=950 bounds=-inf,0,128,256,320,inf \
                       gc=128:256:3,256:320:1 other=320:inf:4";

    #[test]
    fn reads_bounds_and_counts() {
        let s = StoppingRead::parse(START).unwrap();
        assert_eq!(s.tag, "start");
        assert_eq!((s.t0, s.t1), (100, 200));
        assert_eq!(s.bounds, [i64::MIN, 0, 128, 256, 320, i64::MAX]);
        assert_eq!(s.gc, [0, 0, 2, 0, 0]);
        assert_eq!(s.other, [0; 5]);
        let e = StoppingRead::parse(END).unwrap();
        assert_eq!(e.since(&s, true).unwrap(), [0, 0, 1, 1, 0]);
        assert_eq!(e.since(&s, false).unwrap(), [0, 0, 0, 0, 4]);
        // A count that went down is no difference.
        assert_eq!(s.since(&e, true), None);
    }

    #[test]
    fn buckets_are_half_open() {
        let s = StoppingRead::parse(START).unwrap();
        assert_eq!(s.bucket_of(0), Some(1));
        assert_eq!(s.bucket_of(127), Some(1));
        assert_eq!(s.bucket_of(128), Some(2));
        assert_eq!(s.bucket_of(255), Some(2));
        assert_eq!(s.bucket_of(256), Some(3));
        assert_eq!(s.bucket_of(320), Some(4));
        assert_eq!(s.bucket_of(u64::MAX), None);
    }

    #[test]
    fn malformed_lines_are_refused() {
        // A bucket that is not one of the bounds' buckets.
        let bad = START.replace("128:256:2", "128:320:2");
        assert_eq!(StoppingRead::parse(&bad), None);
        assert_eq!(StoppingRead::parse(&START.replace(" t1=200", "")), None);
        assert_eq!(StoppingRead::parse(&START.replace("0,128", "128,0")), None);
        assert_eq!(StoppingRead::parse("rounds=4"), None);
        assert!(is_gc_reason("GC sweep termination"));
        assert!(!is_gc_reason("read mem stats"));
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        assert_eq!(quantile_bucket(&[0, 2, 0, 1], 0.5), Some(1));
        assert_eq!(quantile_bucket(&[0, 2, 0, 1], 0.99), Some(3));
        assert_eq!(quantile_bucket(&[0, 2, 0, 2], 0.5), Some(1));
        assert_eq!(quantile_bucket(&[0, 0], 0.5), None);
    }
}
