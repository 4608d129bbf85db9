//! bpftrace-style histograms for the terminal (`agent run --hist`): one
//! per process, kind and cause, in log2 rows with counts and bars.
//!
//! The rows are read from the fine BPF buckets (`pausewatch_common::hist`):
//! every power of two is one of their edges, so each row is a sum of whole
//! buckets and its count is exact, as in the exported histograms. Rows are
//! labelled in nanoseconds with bpftrace's K/M/G suffixes (powers of 1024),
//! so they read like `hist(nsecs - @start)`.

use std::fmt::Write as _;

use pausewatch_common::{BUCKETS, hist::MIN_EXP, hist::SUB};

use crate::collect::{Hist, Snapshot};

/// Width of the longest bar, as in bpftrace.
const BAR_WIDTH: u64 = 52;

/// Renders every series of `snapshot` with observations, grouped by
/// process, as bpftrace prints `@name[keys]: hist()` maps.
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    for target in &snapshot.targets {
        let mut series: Vec<_> = snapshot
            .series_of(target.pid)
            .iter()
            .filter(|s| s.hist.count > 0)
            .collect();
        series.sort_by(|a, b| (a.kind as u32, &a.cause).cmp(&(b.kind as u32, &b.cause)));
        for s in series {
            let _ = writeln!(
                out,
                "@{}_ns[{}, {}, {}]: count {}, sum {:.3} ms, max {:.3} ms ({} {})",
                s.kind.label(),
                target.pid,
                target.comm,
                s.cause,
                s.hist.count,
                s.hist.sum_ns as f64 / 1e6,
                s.hist.max_ns as f64 / 1e6,
                target.runtime,
                target.runtime_version,
            );
            out.push_str(&rows(&s.hist));
            out.push('\n');
        }
    }
    out
}

/// One power-of-two row: `[lo, hi)` in nanoseconds (`hi` `None` for the
/// unbounded last row) and its count.
fn log2_rows(hist: &Hist) -> Vec<(u64, Option<u64>, u64)> {
    let sub = SUB as usize;
    let mut rows = vec![(0, Some(1u64 << MIN_EXP), bucket(hist, 0))];
    // Buckets 1.. come SUB to a power of two; the last one is unbounded.
    let mut i = 1;
    let mut exp = MIN_EXP;
    while i + sub < BUCKETS {
        let n = (i..i + sub).map(|b| bucket(hist, b)).sum();
        rows.push((1 << exp, Some(1 << (exp + 1)), n));
        i += sub;
        exp += 1;
    }
    rows.push((1 << exp, None, bucket(hist, BUCKETS - 1)));
    rows
}

fn bucket(hist: &Hist, i: usize) -> u64 {
    hist.buckets.get(i)
}

/// The rows from the first to the last non-empty one, with bars.
fn rows(hist: &Hist) -> String {
    let rows = log2_rows(hist);
    let (Some(first), Some(last)) = (
        rows.iter().position(|r| r.2 > 0),
        rows.iter().rposition(|r| r.2 > 0),
    ) else {
        return String::new();
    };
    let peak = rows.iter().map(|r| r.2).max().unwrap_or(1).max(1);
    let mut out = String::new();
    for &(lo, hi, n) in &rows[first..=last] {
        let range = match hi {
            Some(hi) => format!("[{}, {})", suffixed(lo), suffixed(hi)),
            None => format!("[{}, ...)", suffixed(lo)),
        };
        let bar = "@".repeat((n * BAR_WIDTH / peak) as usize);
        let _ = writeln!(out, "{range:<20}{n:>8} |{bar:<52}|");
    }
    out
}

/// bpftrace's labels: a power of two as K, M, G, T (of 1024).
fn suffixed(v: u64) -> String {
    const UNITS: [(u32, &str); 4] = [(40, "T"), (30, "G"), (20, "M"), (10, "K")];
    for (shift, unit) in UNITS {
        if v >= 1 << shift && v.is_multiple_of(1 << shift) {
            return format!("{}{unit}", v >> shift);
        }
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::snapshot::shared;
    use crate::collect::{Series, TargetInfo};
    use pausewatch_common::{Kind, bucket_index};

    fn hist_of(values: &[u64]) -> Hist {
        let mut h = Hist::default();
        for &v in values {
            h.count += 1;
            h.sum_ns += v;
            h.max_ns = h.max_ns.max(v);
            h.buckets.add(bucket_index(v), 1);
        }
        h
    }

    #[test]
    fn rows_are_exact_powers_of_two() {
        let values = [
            500,
            1_500,
            1_700,
            3_000,
            600_000,
            600_001,
            2_000_000_000_000,
        ];
        let rows = log2_rows(&hist_of(&values));
        assert_eq!(rows.iter().map(|r| r.2).sum::<u64>(), values.len() as u64);
        for (lo, hi, n) in &rows {
            let expect = values
                .iter()
                .filter(|&&v| v >= *lo && hi.is_none_or(|hi| v < hi))
                .count() as u64;
            assert_eq!(*n, expect, "[{lo}, {hi:?})");
            if let Some(hi) = hi {
                assert!(lo.is_power_of_two() || *lo == 0);
                assert!(hi.is_power_of_two());
            }
        }
    }

    #[test]
    fn prints_like_bpftrace() {
        assert_eq!(suffixed(1024), "1K");
        assert_eq!(suffixed(512 << 10), "512K");
        assert_eq!(suffixed(1 << 20), "1M");
        assert_eq!(suffixed(3 << 30), "3G");
        assert_eq!(suffixed(1000), "1000");
        let snapshot = Snapshot {
            targets: shared(vec![TargetInfo::java(7)]),
            series: shared(vec![Series {
                pid: 7,
                kind: Kind::Safepoint,
                cause: "G1CollectForAllocation".into(),
                hist: hist_of(&[300_000, 600_000, 700_000, 800_000, 900_000]),
            }]),
            ..Default::default()
        };
        let text = render(&snapshot);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with(
                "@safepoint_ns[7, java, G1CollectForAllocation]: count 5, sum 3.300 ms, max 0.900 ms (hotspot 17)"
            ),
            "{text}"
        );
        // 300 µs in [256K, 512K); the other four in [512K, 1M).
        assert_eq!(
            lines[1],
            format!("{:<20}{:>8} |{:<52}|", "[256K, 512K)", 1, "@".repeat(13))
        );
        assert_eq!(
            lines[2],
            format!("{:<20}{:>8} |{}|", "[512K, 1M)", 4, "@".repeat(52))
        );
        assert_eq!(lines.len(), 4, "{text}");
    }
}
