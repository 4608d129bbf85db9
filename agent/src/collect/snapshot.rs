//! A consistent, decoded view of everything the BPF maps hold at one moment.
//!
//! The collector produces snapshots; the exporter, the live summary and the
//! rule engine only ever read them, so none of them touches BPF maps.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use pausewatch_common::{Kind, THREAD_STATES, bucket_upper_bound_ns};

pub use super::buckets::Buckets;

/// Everything known at one collection.
///
/// Every list is sorted by pid (series then by kind and cause, pools by
/// manager and pool, stragglers by thread), so that one process's part is
/// a slice: [`Snapshot::series_of`] and its siblings. The rule engine
/// looks up every target in several snapshots at each collection, which a
/// scan of the whole list made quadratic in the number of targets.
///
/// Items are shared: the collector hands on the previous snapshot's item
/// wherever nothing changed ([`share_unchanged`]), so the rule history's
/// snapshots of an idle process cost a pointer per series, not a copy.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// When the maps were read.
    pub taken_at: Option<SystemTime>,
    /// Processes being traced.
    pub targets: Vec<Arc<TargetInfo>>,
    /// One histogram per (pid, kind, cause), causes resolved to text.
    pub series: Vec<Arc<Series>>,
    /// Events that could not be recorded, by `reason` label.
    pub lost: Vec<(&'static str, u64)>,
    /// HotSpot safepoint stragglers, by process and thread name (see
    /// [`crate::collect::stragglers`]).
    pub stragglers: Vec<Arc<crate::collect::StragglerSeries>>,
    /// HotSpot memory pools per process and memory manager (see
    /// [`super::heap`]).
    pub heap: Vec<Arc<super::heap::PoolSeries>>,
}

impl Snapshot {
    /// This snapshot with its lists in the order the lookups rely on (the
    /// collector's order), for snapshots made some other way.
    pub fn sorted(mut self) -> Snapshot {
        self.targets.sort_by_key(|t| t.pid);
        self.series.sort_by(|a, b| Series::order(a, b));
        self.heap
            .sort_by(|a, b| super::heap::PoolSeries::order(a, b));
        self.stragglers
            .sort_by(|a, b| crate::collect::StragglerSeries::order(a, b));
        self
    }

    /// The histogram series of `pid`, by kind and cause.
    pub fn series_of(&self, pid: u32) -> &[Arc<Series>] {
        of_pid(&self.series, pid, |s| s.pid)
    }

    /// The memory pools of `pid`, by manager and pool.
    pub fn heap_of(&self, pid: u32) -> &[Arc<super::heap::PoolSeries>] {
        of_pid(&self.heap, pid, |s| s.pid)
    }

    /// The safepoint stragglers of `pid`, by thread name.
    pub fn stragglers_of(&self, pid: u32) -> &[Arc<crate::collect::StragglerSeries>] {
        of_pid(&self.stragglers, pid, |s| s.pid)
    }
}

/// `next` (sorted by `order`) as shared items, each taken from `prev`
/// (sorted the same way) where an equal item is there.
///
/// One walk over both lists: comparing is far cheaper than keeping a copy,
/// since the rule history holds ~18 snapshots and most series of most
/// processes do not change from one collection to the next.
pub fn share_unchanged<T: PartialEq>(
    prev: &[Arc<T>],
    next: Vec<T>,
    order: impl Fn(&T, &T) -> Ordering,
) -> Vec<Arc<T>> {
    let mut i = 0;
    // A list of its own, not `next.into_iter().map(..).collect()`: that
    // collects in place, and the pointers would keep the whole buffer of
    // items (twenty times their size) alive for as long as the history
    // keeps the snapshot.
    let mut shared = Vec::with_capacity(next.len());
    for item in next {
        while i < prev.len() && order(&prev[i], &item) == Ordering::Less {
            i += 1;
        }
        shared.push(match prev.get(i) {
            Some(old) if **old == item => Arc::clone(old),
            _ => Arc::new(item),
        });
    }
    shared
}

/// `items` as a snapshot's list holds them (for tests that build one).
#[cfg(test)]
pub(crate) fn shared<T>(items: Vec<T>) -> Vec<Arc<T>> {
    items.into_iter().map(Arc::new).collect()
}

/// The run of `items` (sorted by `pid_of`) that belongs to `pid`.
fn of_pid<T>(items: &[T], pid: u32, pid_of: impl Fn(&T) -> u32) -> &[T] {
    debug_assert!(
        items.is_sorted_by_key(&pid_of),
        "a snapshot's lists are sorted by pid (see Snapshot::sorted)"
    );
    let start = items.partition_point(|x| pid_of(x) < pid);
    let len = items[start..].partition_point(|x| pid_of(x) == pid);
    &items[start..start + len]
}

/// A traced process and what runs in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetInfo {
    /// Process id.
    pub pid: u32,
    /// The command name at exec (see `discovery::process`): the `comm`
    /// label, stable for the life of the program.
    pub comm: String,
    /// `/proc/PID/comm` as last seen, when the program renamed itself since
    /// its exec (Node 24's `MainThread`); empty while it equals `comm`.
    pub current_comm: String,
    /// Its runtime.
    pub runtime: crate::runtimes::Runtime,
    /// The runtime's version, e.g. `17.0.15`, or `unknown`.
    pub runtime_version: String,
    /// The process's executable.
    pub exe: String,
    /// Its container and pod, where known (`agent run --all` and friends).
    pub container: crate::targets::ContainerLabels,
}

#[cfg(test)]
impl TargetInfo {
    /// A JDK 17 `java` of pid `pid`, as the unit tests use one.
    pub fn java(pid: u32) -> TargetInfo {
        TargetInfo {
            pid,
            comm: "java".into(),
            current_comm: String::new(),
            runtime: crate::runtimes::Runtime::HotSpot,
            runtime_version: "17".into(),
            exe: "/usr/bin/java".into(),
            container: Default::default(),
        }
    }
}

/// One histogram series.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Series {
    /// Process id.
    pub pid: u32,
    /// What was measured.
    pub kind: Kind,
    /// Why, as text (a VM operation's name, `full`, `minor`, ...).
    pub cause: String,
    /// The observations.
    pub hist: Hist,
}

impl Series {
    /// The order of a snapshot's series: by pid, kind and cause.
    pub fn order(a: &Series, b: &Series) -> Ordering {
        (a.pid, a.kind, &a.cause).cmp(&(b.pid, b.kind, &b.cause))
    }
}

/// A decoded histogram: exact count, sum and max, and the fine BPF buckets
/// (see `pausewatch_common::hist`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hist {
    /// Number of observations.
    pub count: u64,
    /// Sum of observations in nanoseconds.
    pub sum_ns: u64,
    /// Largest observation in nanoseconds.
    pub max_ns: u64,
    /// Per-bucket counts. The collector's series hold only their occupied
    /// range ([`Hist::compact`]), since the rule engine's history keeps
    /// dozens of snapshots of every series.
    pub buckets: Buckets,
    /// For pauses: how the driving threads spent `sum_ns`, indexed by
    /// [`pausewatch_common::ThreadState`] (zero without the anatomy).
    pub state_ns: [u64; THREAD_STATES],
    /// HotSpot GC pauses: the GC workers' time in them, summed over the
    /// workers, by state (see `pausewatch_common::Histogram::worker_ns`).
    pub worker_ns: [u64; THREAD_STATES],
}

impl Hist {
    /// A histogram of these observations, as the BPF side would bin them
    /// (for tests of everything downstream of the collector).
    #[cfg(test)]
    pub(crate) fn of(values: &[u64]) -> Hist {
        let mut h = Hist::default();
        for &v in values {
            h.count += 1;
            h.sum_ns += v;
            h.max_ns = h.max_ns.max(v);
            h.buckets.add(pausewatch_common::bucket_index(v), 1);
        }
        h
    }

    /// Adds another histogram into this one (used to fold per-CPU values).
    pub fn merge(&mut self, other: &Hist) {
        self.count += other.count;
        self.sum_ns += other.sum_ns;
        self.max_ns = self.max_ns.max(other.max_ns);
        self.buckets.merge(&other.buckets);
        for (a, b) in self.state_ns.iter_mut().zip(&other.state_ns) {
            *a += b;
        }
        for (a, b) in self.worker_ns.iter_mut().zip(&other.worker_ns) {
            *a += b;
        }
    }

    /// Adds one CPU's value of a BPF histogram into this one, as
    /// [`Hist::merge`] would, without decoding it first.
    pub fn add(&mut self, raw: &pausewatch_common::Histogram) {
        self.count += raw.count;
        self.sum_ns += raw.sum_ns;
        self.max_ns = self.max_ns.max(raw.max_ns);
        self.buckets.add_dense(&raw.buckets);
        for (a, b) in self.state_ns.iter_mut().zip(&raw.state_ns) {
            *a += b;
        }
        for (a, b) in self.worker_ns.iter_mut().zip(&raw.worker_ns) {
            *a += b;
        }
    }

    /// This histogram with only its occupied buckets held, their memory
    /// fitted: the same histogram in a fraction of the room.
    pub fn compact(mut self) -> Hist {
        self.buckets = self.buckets.trimmed();
        self
    }

    /// The observations added since `earlier` (a previous state of the same
    /// series). Max cannot be differenced, so the later max is kept.
    pub fn since(&self, earlier: &Hist) -> Hist {
        Hist {
            count: self.count.saturating_sub(earlier.count),
            sum_ns: self.sum_ns.saturating_sub(earlier.sum_ns),
            max_ns: self.max_ns,
            buckets: self.buckets.since(&earlier.buckets),
            state_ns: std::array::from_fn(|i| self.state_ns[i].saturating_sub(earlier.state_ns[i])),
            worker_ns: std::array::from_fn(|i| {
                self.worker_ns[i].saturating_sub(earlier.worker_ns[i])
            }),
        }
    }

    /// Estimated quantile `q` (0..=1) in nanoseconds, interpolating linearly
    /// inside the bucket that holds it and never above the exact max.
    pub fn quantile_ns(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * self.count as f64).max(1.0);
        let mut seen = 0u64;
        for (i, n) in self.buckets.iter() {
            if n == 0 {
                continue;
            }
            if (seen + n) as f64 >= rank {
                let lo = if i == 0 {
                    0
                } else {
                    bucket_upper_bound_ns(i - 1).unwrap_or(0)
                };
                let hi = bucket_upper_bound_ns(i)
                    .unwrap_or(self.max_ns)
                    .min(self.max_ns);
                let hi = hi.max(lo);
                let frac = (rank - seen as f64) / n as f64;
                return Some(lo as f64 + (hi - lo) as f64 * frac);
            }
            seen += n;
        }
        Some(self.max_ns as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist_of(values: &[u64]) -> Hist {
        Hist::of(values)
    }

    #[test]
    fn a_compact_histogram_says_the_same_in_less_room() {
        let earlier = hist_of(&[2_000, 50_000]);
        let later = hist_of(&[2_000, 50_000, 3_000_000, 40_000_000]);
        let (small_earlier, small_later) = (earlier.clone().compact(), later.clone().compact());
        assert!(small_earlier.buckets.held() < small_later.buckets.held());
        assert!(small_later.buckets.held() < pausewatch_common::BUCKETS / 2);
        assert_eq!(
            small_later.buckets.last(),
            Some(pausewatch_common::bucket_index(40_000_000))
        );
        // Differences, sums and quantiles do not depend on the room.
        assert_eq!(
            small_later.since(&small_earlier).compact(),
            later.since(&earlier).compact()
        );
        assert_eq!(small_later.since(&small_earlier).count, 2);
        let mut sum = Hist::default();
        sum.merge(&small_earlier);
        sum.merge(&small_later);
        let mut full = Hist::default();
        full.merge(&earlier);
        full.merge(&later);
        assert_eq!(sum.compact(), full.compact());
        for q in [0.5, 0.9, 0.99] {
            assert_eq!(small_later.quantile_ns(q), later.quantile_ns(q));
        }
        assert_eq!(Hist::default().compact().buckets.held(), 0);
    }

    #[test]
    fn unchanged_items_are_shared_and_changed_ones_are_not() {
        let series = |pid, cause: &str, values: &[u64]| Series {
            pid,
            kind: pausewatch_common::Kind::Safepoint,
            cause: cause.into(),
            hist: hist_of(values).compact(),
        };
        let prev = shared(vec![
            series(1, "Cleanup", &[1_000]),
            series(1, "G1CollectForAllocation", &[5_000]),
            series(3, "Cleanup", &[2_000]),
        ]);
        let next = vec![
            series(1, "Cleanup", &[1_000]),
            series(1, "G1CollectForAllocation", &[5_000, 7_000]),
            series(2, "Cleanup", &[1_000]),
            series(3, "Cleanup", &[2_000]),
            series(4, "Cleanup", &[2_000]),
        ];
        let shared_next = share_unchanged(&prev, next.clone(), Series::order);
        // The same items in the same order, whatever was shared.
        let items: Vec<Series> = shared_next.iter().map(|s| (**s).clone()).collect();
        assert_eq!(items, next);
        let same: Vec<bool> = shared_next
            .iter()
            .map(|s| prev.iter().any(|p| Arc::ptr_eq(p, s)))
            .collect();
        assert_eq!(same, [true, false, false, true, false]);
        assert_eq!(
            share_unchanged(&[], next.clone(), Series::order).len(),
            next.len()
        );
        // The list holds pointers, not the room of the items it came from.
        let mut roomy = Vec::with_capacity(1000);
        roomy.extend(next.iter().cloned());
        let pointers = share_unchanged(&prev, roomy, Series::order);
        assert!(
            pointers.capacity() < 1000,
            "capacity {}",
            pointers.capacity()
        );
    }

    #[test]
    fn quantile_stays_inside_the_true_bucket() {
        let values: Vec<u64> = (1..=1000).map(|i| i * 10_000).collect();
        let h = hist_of(&values);
        let p99 = h.quantile_ns(0.99).unwrap();
        let exact = 9_900_000.0;
        assert!((p99 - exact).abs() / exact < 0.25, "p99 {p99}");
        assert_eq!(h.quantile_ns(1.0).unwrap(), 10_000_000.0);
        assert_eq!(Hist::default().quantile_ns(0.5), None);
    }

    #[test]
    fn since_subtracts_and_merge_adds() {
        let a = hist_of(&[5_000, 70_000]);
        let mut b = a.clone();
        b.merge(&hist_of(&[2_000_000]));
        let d = b.since(&a);
        assert_eq!(d.count, 1);
        assert_eq!(d.sum_ns, 2_000_000);
        assert_eq!(d.buckets.total(), 1);
    }
}
