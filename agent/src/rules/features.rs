//! Features: what the rules read about one target, computed over a sliding
//! window of the collector's snapshots.
//!
//! A window is the difference between the newest snapshot and the newest
//! one at least `window` older ([`Hist::since`]); the previous window is the
//! same difference one window further back, for the trend features.
//!
//! Stall time counts only pause kinds, and only the outermost of kinds that
//! nest (`RuntimeModule::counts_as_stall`), so no stopped nanosecond is counted twice.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::Arc,
    time::Duration,
};

use pausewatch_common::{Kind, bucket_upper_bound_ns};

use crate::{
    collect::{Hist, Snapshot, TargetInfo},
    runtimes::Runtime,
};

/// The type of a feature, as the rule language sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureType {
    /// A number (CEL `double`).
    Number,
    /// `true` or `false`.
    Bool,
    /// Text (CEL `string`).
    Text,
    /// A map from cause name to a share between 0 and 1 (CEL `map(string, double)`).
    Shares,
}

/// One feature a rule may read: its name, type and meaning.
#[derive(Clone, Copy, Debug)]
pub struct FeatureDoc {
    /// The identifier in conditions and `{placeholders}`.
    pub name: &'static str,
    /// Its type.
    pub ty: FeatureType,
    /// What it means, for `agent rules check` and the README.
    pub doc: &'static str,
}

const fn num(name: &'static str, doc: &'static str) -> FeatureDoc {
    FeatureDoc {
        name,
        ty: FeatureType::Number,
        doc,
    }
}

/// Every feature, in the order `agent rules explain` prints them.
pub const FEATURES: &[FeatureDoc] = &[
    FeatureDoc {
        name: "runtime",
        ty: FeatureType::Text,
        doc: "the runtime label, e.g. \"hotspot\"",
    },
    num(
        "window_s",
        "seconds of observation in this window (less than --window just after start)",
    ),
    num("pauses", "number of pauses in the window"),
    num("pauses_per_min", "pauses per minute"),
    num(
        "stall_ratio",
        "share of wall time the application was stopped (0..1)",
    ),
    num("p50_ms", "median pause, ms"),
    num("p95_ms", "95th percentile pause, ms"),
    num("p99_ms", "99th percentile pause, ms"),
    num(
        "max_ms",
        "longest pause in the window, ms (bucket upper edge, at most the exact maximum)",
    ),
    num(
        "tts_share",
        "share of the stopped time spent stopping the threads: HotSpot's time to safepoint \
         over its safepoint time, Go 1.23+'s stopping time over its stop-the-world time (0 \
         elsewhere)",
    ),
    num(
        "tts_p99_ms",
        "99th percentile time to safepoint (HotSpot) or stopping time (Go 1.23+), ms",
    ),
    num(
        "gc_share",
        "share of the stall time spent in GC pauses (0..1)",
    ),
    num(
        "running_share",
        "share of the stall time the pauses' driving threads were on a CPU (0..1; 0 without the anatomy)",
    ),
    num(
        "runnable_share",
        "share of the stall time the driving threads were ready but waiting for a CPU: preempted, throttled by a CPU quota, or woken and queued",
    ),
    num(
        "blocked_share",
        "share of the stall time the driving threads slept or waited (locks, I/O, other threads)",
    ),
    num(
        "workers_runnable_share",
        "HotSpot G1 and Parallel: share of the GC workers' busy time in pauses (running + runnable) spent waiting for a CPU (0 without workers)",
    ),
    num(
        "cpu_limit_cores",
        "the CPU limit of the process's cgroup (CFS quota / period, the tightest on the way up), in cores; 0 without one",
    ),
    num("gc_per_min", "stop-the-world GC pauses per minute"),
    num(
        "full_gc_per_min",
        "full (whole-heap) GC pauses per minute (HotSpot: also counted by the full memory manager, which sees the ones Parallel runs inside a scavenge)",
    ),
    FeatureDoc {
        name: "cause_share",
        ty: FeatureType::Shares,
        doc: "share of pauses per cause, by count: cause_share[\"G1CollectFull\"]",
    },
    FeatureDoc {
        name: "cause_time_share",
        ty: FeatureType::Shares,
        doc: "share of stall time per cause",
    },
    FeatureDoc {
        name: "top_cause",
        ty: FeatureType::Text,
        doc: "the cause with the most stall time (\"\" without pauses)",
    },
    num("top_cause_share", "stall time share of top_cause"),
    FeatureDoc {
        name: "has_prev",
        ty: FeatureType::Bool,
        doc: "whether a whole previous window exists for the trend features",
    },
    num("prev_stall_ratio", "stall_ratio of the previous window"),
    num(
        "prev_pauses_per_min",
        "pauses_per_min of the previous window",
    ),
    num("prev_p99_ms", "p99_ms of the previous window"),
    num(
        "stall_trend",
        "stall_ratio minus prev_stall_ratio (0 without a previous window)",
    ),
    FeatureDoc {
        name: "top_straggler",
        ty: FeatureType::Text,
        doc: "the thread name (digits as #) charged the most time to safepoint: the Java \
              thread that most often kept safepoints waiting (HotSpot; \"\" without stragglers)",
    },
    num(
        "top_straggler_share",
        "share of the window's time to safepoint charged to top_straggler (0..1)",
    ),
    // The heap features (HotSpot's memory pools; 0 elsewhere), see rules::heap.
    num(
        "alloc_mb_per_s",
        "MiB allocated per second (HotSpot: the heap's growth between collections)",
    ),
    num(
        "promotion_mb_per_s",
        "MiB per second the old generation grew by in young collections (HotSpot)",
    ),
    num(
        "promotion_share",
        "promotion_mb_per_s over alloc_mb_per_s (0..1)",
    ),
    num(
        "alloc_per_gc_mb",
        "MiB allocated between two young collections, on average",
    ),
    num(
        "live_set_mb",
        "heap used after the latest full collection, MiB (0 before the first)",
    ),
    num(
        "live_set_ratio",
        "live_set_mb over the old generation's maximum (the heap's for G1), 0..1",
    ),
    num("old_max_mb", "the old generation's maximum, MiB"),
    num(
        "suggested_heap_mb",
        "a heap that holds the live set in an old generation 3x its size (young unchanged), MiB",
    ),
    num(
        "heap_after_gc_ratio",
        "heap used after the latest collection over the heap's maximum, 0..1",
    ),
    num(
        "explicit_gc_share",
        "share of the window's full collections that the application asked for (System.gc(): \
         safepoints of G1CollectFull, GenCollectFull, ParallelGCSystemGC), 0..1",
    ),
];

/// The type of feature `name`, if there is one.
pub fn feature_type(name: &str) -> Option<FeatureType> {
    FEATURES.iter().find(|f| f.name == name).map(|f| f.ty)
}

/// A feature's value.
#[derive(Clone, Debug, PartialEq)]
pub enum FeatureValue {
    /// See [`FeatureType::Number`].
    Number(f64),
    /// See [`FeatureType::Bool`].
    Bool(bool),
    /// See [`FeatureType::Text`].
    Text(String),
    /// See [`FeatureType::Shares`].
    Shares(BTreeMap<String, f64>),
}

/// Pause statistics of one window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WindowStats {
    /// Seconds covered.
    pub window_s: f64,
    /// Pauses.
    pub pauses: u64,
    /// Pauses per minute.
    pub pauses_per_min: f64,
    /// Stopped time / wall time.
    pub stall_ratio: f64,
    /// Quantiles and max of the pauses, ms.
    pub p50_ms: f64,
    /// See `p50_ms`.
    pub p95_ms: f64,
    /// See `p50_ms`.
    pub p99_ms: f64,
    /// See `p50_ms`.
    pub max_ms: f64,
    /// Time to safepoint / safepoint time (HotSpot), stopping time /
    /// stop-the-world time (Go).
    pub tts_share: f64,
    /// p99 time to safepoint, ms.
    pub tts_p99_ms: f64,
    /// Stall time of the driving threads by scheduler state, each over
    /// the sum of the three (zero without the anatomy).
    pub running_share: f64,
    /// See `running_share`.
    pub runnable_share: f64,
    /// See `running_share`.
    pub blocked_share: f64,
    /// GC workers' runnable / (running + runnable) in pauses.
    pub workers_runnable_share: f64,
    /// GC pause time / stall time.
    pub gc_share: f64,
    /// GC pauses per minute.
    pub gc_per_min: f64,
    /// Full GC pauses per minute.
    pub full_gc_per_min: f64,
    /// Share of pauses per cause, by count.
    pub cause_share: BTreeMap<String, f64>,
    /// Share of stall time per cause.
    pub cause_time_share: BTreeMap<String, f64>,
    /// The straggler thread name charged the most time to safepoint.
    pub top_straggler: String,
    /// Its share of the time to safepoint.
    pub top_straggler_share: f64,
    /// The heap features (see [`super::heap`]).
    pub heap: super::heap::HeapWindow,
}

/// Every feature of one target at one evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct Features {
    /// The runtime.
    pub runtime: Runtime,
    /// The cgroup CPU limit in cores, 0 without one.
    pub cpu_limit_cores: f64,
    /// This window.
    pub now: WindowStats,
    /// The window before, when the history reaches that far back.
    pub prev: Option<WindowStats>,
}

impl Features {
    /// The value of feature `name` (one of [`FEATURES`]).
    pub fn get(&self, name: &str) -> Option<FeatureValue> {
        use FeatureValue::{Bool, Number, Shares, Text};
        let w = &self.now;
        let prev = |f: fn(&WindowStats) -> f64| Number(self.prev.as_ref().map_or(0.0, f));
        let top = w
            .cause_time_share
            .iter()
            // Ties go to the first name, so the result does not depend on map order.
            .fold(None::<(&String, f64)>, |best, (c, &s)| match best {
                Some((_, b)) if b >= s => best,
                _ => Some((c, s)),
            });
        Some(match name {
            "runtime" => Text(self.runtime.label().to_string()),
            "window_s" => Number(w.window_s),
            "pauses" => Number(w.pauses as f64),
            "pauses_per_min" => Number(w.pauses_per_min),
            "stall_ratio" => Number(w.stall_ratio),
            "p50_ms" => Number(w.p50_ms),
            "p95_ms" => Number(w.p95_ms),
            "p99_ms" => Number(w.p99_ms),
            "max_ms" => Number(w.max_ms),
            "tts_share" => Number(w.tts_share),
            "tts_p99_ms" => Number(w.tts_p99_ms),
            "running_share" => Number(w.running_share),
            "runnable_share" => Number(w.runnable_share),
            "blocked_share" => Number(w.blocked_share),
            "workers_runnable_share" => Number(w.workers_runnable_share),
            "cpu_limit_cores" => Number(self.cpu_limit_cores),
            "gc_share" => Number(w.gc_share),
            "gc_per_min" => Number(w.gc_per_min),
            "full_gc_per_min" => Number(w.full_gc_per_min),
            "cause_share" => Shares(w.cause_share.clone()),
            "cause_time_share" => Shares(w.cause_time_share.clone()),
            "top_cause" => Text(top.map(|t| t.0.clone()).unwrap_or_default()),
            "top_cause_share" => Number(top.map_or(0.0, |t| t.1)),
            "has_prev" => Bool(self.prev.is_some()),
            "prev_stall_ratio" => prev(|p| p.stall_ratio),
            "prev_pauses_per_min" => prev(|p| p.pauses_per_min),
            "prev_p99_ms" => prev(|p| p.p99_ms),
            "stall_trend" => Number(
                self.prev
                    .as_ref()
                    .map_or(0.0, |p| w.stall_ratio - p.stall_ratio),
            ),
            "top_straggler" => Text(w.top_straggler.clone()),
            "top_straggler_share" => Number(w.top_straggler_share),
            other => return w.heap.get(other),
        })
    }
}

/// Computes the statistics of `pid` between two snapshots `elapsed` apart
/// (`before` may lack series that appeared since: they count whole).
pub fn window_stats(
    runtime: Runtime,
    pid: u32,
    before: &Snapshot,
    now: &Snapshot,
    elapsed: Duration,
) -> WindowStats {
    let old = before.series_of(pid);
    let mut stall = Hist::default();
    // The pauses that time to safepoint is part of: HotSpot's safepoints,
    // Go's stop-the-worlds (each runtime has only one of the two).
    let mut stopped_ns = 0u64;
    let mut tts = Hist::default();
    let mut gc = Hist::default();
    let mut full_gc = 0u64;
    let mut workers = [0u64; pausewatch_common::THREAD_STATES];
    let mut causes: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for s in now.series_of(pid) {
        // Both runs are sorted by kind and cause.
        let prev = old
            .binary_search_by(|o| (o.kind, o.cause.as_str()).cmp(&(s.kind, s.cause.as_str())))
            .ok();
        let delta = match prev {
            Some(i) => s.hist.since(&old[i].hist),
            None => s.hist.clone(),
        };
        if delta.count == 0 {
            continue;
        }
        for (w, d) in workers.iter_mut().zip(&delta.worker_ns) {
            *w += d;
        }
        if runtime.module().counts_as_stall(s.kind) {
            merge_window(&mut stall, &delta);
            let c = causes.entry(s.cause.as_str()).or_default();
            c.0 += delta.count;
            c.1 += delta.sum_ns;
        }
        match s.kind {
            Kind::Safepoint | Kind::Stw => stopped_ns += delta.sum_ns,
            Kind::TimeToSafepoint => merge_window(&mut tts, &delta),
            _ => {}
        }
        if runtime.module().is_gc(s.kind, &s.cause) {
            merge_window(&mut gc, &delta);
            if runtime.module().is_full_gc(&s.cause) {
                full_gc += delta.count;
            }
        }
    }
    let secs = elapsed.as_secs_f64();
    let per_min = |n: u64| {
        if secs > 0.0 {
            n as f64 * 60.0 / secs
        } else {
            0.0
        }
    };
    let ratio = |a: u64, b: u64| {
        if b == 0 {
            0.0
        } else {
            (a as f64 / b as f64).min(1.0)
        }
    };
    let ms = |h: &Hist, q: f64| h.quantile_ns(q).unwrap_or(0.0) / 1e6;
    // The memory managers count full collections that gc__begin calls
    // minor (Parallel's after a failed scavenge): the larger count wins.
    let heap = super::heap::HeapWindow::of(runtime, pid, before, now, secs);
    let full_gc = full_gc.max(heap.full_collections);
    let [running, runnable, blocked] = stall.state_ns;
    let states = running.saturating_add(runnable).saturating_add(blocked);
    let (top_straggler, top_straggler_ns) = top_straggler(pid, before, now);
    WindowStats {
        window_s: secs,
        pauses: stall.count,
        pauses_per_min: per_min(stall.count),
        stall_ratio: if secs > 0.0 {
            (stall.sum_ns as f64 / 1e9 / secs).min(1.0)
        } else {
            0.0
        },
        p50_ms: ms(&stall, 0.5),
        p95_ms: ms(&stall, 0.95),
        p99_ms: ms(&stall, 0.99),
        max_ms: stall.max_ns as f64 / 1e6,
        tts_share: ratio(tts.sum_ns, stopped_ns),
        tts_p99_ms: ms(&tts, 0.99),
        running_share: ratio(running, states),
        runnable_share: ratio(runnable, states),
        blocked_share: ratio(blocked, states),
        workers_runnable_share: ratio(workers[1], workers[0].saturating_add(workers[1])),
        gc_share: ratio(gc.sum_ns, stall.sum_ns),
        gc_per_min: per_min(gc.count),
        full_gc_per_min: per_min(full_gc),
        cause_share: causes
            .iter()
            .map(|(c, (n, _))| (c.to_string(), ratio(*n, stall.count)))
            .collect(),
        cause_time_share: causes
            .iter()
            .map(|(c, (_, ns))| (c.to_string(), ratio(*ns, stall.sum_ns)))
            .collect(),
        top_straggler,
        top_straggler_share: ratio(top_straggler_ns, tts.sum_ns),
        heap,
    }
}

/// The straggler thread name of `pid` charged the most time to safepoint
/// between two snapshots, and that time ("" and 0 without any). Ties go
/// to the first name in order, so the answer does not depend on map order.
pub(crate) fn top_straggler(pid: u32, before: &Snapshot, now: &Snapshot) -> (String, u64) {
    // Both runs are sorted by thread name.
    let old = before.stragglers_of(pid);
    now.stragglers_of(pid)
        .iter()
        .map(|s| {
            let was = old
                .binary_search_by(|o| o.thread.as_str().cmp(&s.thread))
                .map_or(0, |i| old[i].tts_ns);
            let d = s.tts_ns.saturating_sub(was);
            (s.thread.as_str(), d)
        })
        .filter(|(_, d)| *d > 0)
        .fold(None::<(&str, u64)>, |best, (t, d)| match best {
            Some((_, b)) if b >= d => best,
            _ => Some((t, d)),
        })
        .map_or((String::new(), 0), |(t, d)| (t.to_string(), d))
}

/// Adds a window's delta into `into`, replacing the delta's max (which
/// [`Hist::since`] carries over from the whole run) by the window's own: the
/// upper edge of its highest non-empty bucket, capped by the exact max.
fn merge_window(into: &mut Hist, delta: &Hist) {
    let top = delta
        .buckets
        .last()
        .map_or(0, |i| bucket_upper_bound_ns(i).unwrap_or(u64::MAX));
    let max_ns = into.max_ns.max(delta.max_ns.min(top));
    into.merge(delta);
    into.max_ns = max_ns;
}

/// How finely [`History`] keeps snapshots: this many per window. Memory
/// is about twice this many snapshots (two windows, for the trend), each
/// ~1 MB at 100 JVMs, most of the agent's RSS there; the window's edges
/// are exact to a step (7.5 s of the default 60 s), and rates are taken
/// over the span actually covered, so a coarser step biases nothing.
pub const HISTORY_STEPS: u32 = 8;

/// The recent snapshots the windows are cut from.
#[derive(Debug)]
pub struct History {
    window: Duration,
    /// (time since an arbitrary origin, snapshot), oldest first.
    snaps: VecDeque<(Duration, Arc<Snapshot>)>,
}

impl History {
    /// An empty history for windows of `window`.
    pub fn new(window: Duration) -> Self {
        History {
            window,
            snaps: VecDeque::new(),
        }
    }

    /// The window length.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Adds the snapshot taken at `at` (monotonic, non-decreasing) and drops
    /// what no window can reach any more.
    ///
    /// Memory stays bounded whatever the `--interval`: a snapshot closer
    /// than [`HISTORY_STEPS`]th of a window to the one kept before it
    /// replaces the newest instead of adding one, so window edges are
    /// exact to that step and at most about `2 * HISTORY_STEPS` snapshots
    /// are kept.
    pub fn push(&mut self, at: Duration, snapshot: Arc<Snapshot>) {
        let step = self.window / HISTORY_STEPS;
        let n = self.snaps.len();
        if n >= 2 && at.saturating_sub(self.snaps[n - 2].0) < step {
            self.snaps[n - 1] = (at, snapshot);
        } else {
            self.snaps.push_back((at, snapshot));
        }
        // Keep one snapshot at or beyond two windows and a step back: the
        // base of the previous window, whose own base may be a step early.
        let horizon = at.saturating_sub(self.window * 2 + step);
        while self.snaps.len() > 2 && self.snaps[1].0 <= horizon {
            self.snaps.pop_front();
        }
    }

    /// The newest snapshot taken at or before `t`, else the oldest.
    fn base_for(&self, t: Duration) -> &(Duration, Arc<Snapshot>) {
        self.snaps
            .iter()
            .rev()
            .find(|(at, _)| *at <= t)
            .unwrap_or(&self.snaps[0])
    }

    /// The features of `target` over the latest window, `None` before two
    /// snapshots exist.
    pub fn features(&self, target: &TargetInfo) -> Option<Features> {
        let (now_at, now) = self.snaps.back()?;
        let (base_at, base) = self.base_for(now_at.saturating_sub(self.window));
        if base_at >= now_at {
            return None;
        }
        let stats = window_stats(target.runtime, target.pid, base, now, *now_at - *base_at);
        // The previous window must be a whole one, or the trend is noise.
        let prev = (*now_at - *base_at >= self.window)
            .then(|| self.base_for(base_at.saturating_sub(self.window)))
            .filter(|(prev_at, _)| *base_at - *prev_at >= self.window)
            .map(|(prev_at, prev)| {
                window_stats(target.runtime, target.pid, prev, base, *base_at - *prev_at)
            });
        Some(Features {
            runtime: target.runtime,
            cpu_limit_cores: target
                .container
                .cpu_limit_millicores
                .map_or(0.0, |m| f64::from(m) / 1000.0),
            now: stats,
            prev,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::collect::Series;
    use crate::collect::snapshot::shared;

    pub(crate) fn hist_of(values: &[u64]) -> Hist {
        Hist::of(values)
    }

    pub(crate) fn target() -> TargetInfo {
        TargetInfo::java(9)
    }

    fn series(kind: Kind, cause: &str, values: &[u64]) -> Series {
        Series {
            pid: 9,
            kind,
            cause: cause.into(),
            hist: hist_of(values),
        }
    }

    pub(crate) fn snap(series: Vec<Series>) -> Arc<Snapshot> {
        Arc::new(Snapshot {
            targets: shared(vec![target()]),
            series: shared(series),
            ..Default::default()
        })
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn hotspot_stall_counts_safepoints_once_and_gc_inside_them() {
        let before = snap(vec![series(Kind::Safepoint, "Cleanup", &[MS])]);
        // In 10 s: 8 GC safepoints of 50 ms (each holding a 40 ms GC pause,
        // 2 of them full, and 10 ms to reach the safepoint) and 2 ThreadDumps
        // of 5 ms, plus the 1 ms Cleanup from before the window.
        let gc_sp = [50 * MS; 8];
        let now = snap(vec![
            series(Kind::Safepoint, "Cleanup", &[MS]),
            series(Kind::Safepoint, "G1CollectForAllocation", &gc_sp),
            series(Kind::Safepoint, "ThreadDump", &[5 * MS, 5 * MS]),
            series(Kind::GcPause, "minor", &[40 * MS; 6]),
            series(Kind::GcPause, "full", &[40 * MS; 2]),
            series(
                Kind::TimeToSafepoint,
                "G1CollectForAllocation",
                &[10 * MS; 8],
            ),
        ]);
        let w = window_stats(Runtime::HotSpot, 9, &before, &now, Duration::from_secs(10));
        assert_eq!(w.pauses, 10);
        assert_eq!(w.pauses_per_min, 60.0);
        // 8*50 + 2*5 = 410 ms stopped in 10 s; the GC pauses are not added.
        assert!((w.stall_ratio - 0.041).abs() < 1e-12, "{}", w.stall_ratio);
        assert!((w.gc_share - 320.0 / 410.0).abs() < 1e-12);
        assert!((w.tts_share - 80.0 / 410.0).abs() < 1e-12);
        assert_eq!(w.gc_per_min, 48.0);
        assert_eq!(w.full_gc_per_min, 12.0);
        assert_eq!(w.cause_share["G1CollectForAllocation"], 0.8);
        assert_eq!(w.cause_share["ThreadDump"], 0.2);
        assert!(!w.cause_share.contains_key("Cleanup"));
        assert!((w.cause_time_share["ThreadDump"] - 10.0 / 410.0).abs() < 1e-12);
        // p50 and p99 in the bucket of 50 ms (41.9..50.3 ms), capped by the
        // exact max; max is exact here.
        assert!((41.9..=50.0).contains(&w.p50_ms), "{}", w.p50_ms);
        assert!((41.9..=50.0).contains(&w.p99_ms), "{}", w.p99_ms);
        assert_eq!(w.max_ms, 50.0);
        assert!((8.0..=10.0).contains(&w.tts_p99_ms), "{}", w.tts_p99_ms);
    }

    #[test]
    fn other_runtimes_count_every_pause_kind() {
        let now = snap(vec![
            series(Kind::GcPause, "minor", &[2 * MS; 3]),
            series(Kind::GcConcurrent, "minor", &[500 * MS]),
        ]);
        let w = window_stats(
            Runtime::Go,
            9,
            &Snapshot::default(),
            &now,
            Duration::from_secs(1),
        );
        assert_eq!(w.pauses, 3);
        assert!((w.stall_ratio - 0.006).abs() < 1e-12);
        assert_eq!(w.gc_share, 1.0);
        assert_eq!(w.tts_share, 0.0);
    }

    #[test]
    fn go_gc_is_its_gc_phases_and_never_full() {
        let now = snap(vec![
            series(Kind::Stw, "GC sweep termination", &[MS; 4]),
            series(Kind::Stw, "GC mark termination", &[MS; 4]),
            series(Kind::Stw, "read mem stats", &[MS; 2]),
        ]);
        let w = window_stats(
            Runtime::Go,
            9,
            &Snapshot::default(),
            &now,
            Duration::from_secs(60),
        );
        assert_eq!(w.pauses, 10);
        assert_eq!(w.gc_per_min, 8.0);
        assert!((w.gc_share - 0.8).abs() < 1e-12, "{}", w.gc_share);
        assert_eq!(w.full_gc_per_min, 0.0);
        assert_eq!(w.tts_share, 0.0);
    }

    #[test]
    fn go_stopping_time_is_its_time_to_safepoint() {
        let now = snap(vec![
            series(Kind::Stw, "GC sweep termination", &[MS; 4]),
            series(Kind::Stw, "read mem stats", &[MS; 4]),
            series(Kind::TimeToSafepoint, "GC sweep termination", &[MS / 4; 4]),
            series(Kind::TimeToSafepoint, "read mem stats", &[MS / 10; 4]),
        ]);
        let w = window_stats(
            Runtime::Go,
            9,
            &Snapshot::default(),
            &now,
            Duration::from_secs(60),
        );
        // Stopping is part of the pause, not a pause of its own.
        assert_eq!(w.pauses, 8);
        assert!((w.tts_share - 1.4 / 8.0).abs() < 1e-12, "{}", w.tts_share);
        assert!((0.2..=0.25).contains(&w.tts_p99_ms), "{}", w.tts_p99_ms);
    }

    #[test]
    fn full_collections_in_each_runtimes_words() {
        let cpython = snap(vec![
            series(Kind::GcPause, "gen0", &[MS; 9]),
            series(Kind::GcPause, "gen2", &[MS]),
        ]);
        let w = window_stats(
            Runtime::CPython,
            9,
            &Snapshot::default(),
            &cpython,
            Duration::from_secs(60),
        );
        assert_eq!(w.full_gc_per_min, 1.0);
        let v8 = snap(vec![
            series(Kind::GcPause, "scavenge", &[MS; 9]),
            series(Kind::GcPause, "mark-compact", &[MS; 3]),
        ]);
        let w = window_stats(
            Runtime::V8,
            9,
            &Snapshot::default(),
            &v8,
            Duration::from_secs(60),
        );
        assert_eq!(w.full_gc_per_min, 3.0);
        assert_eq!(w.gc_per_min, 12.0);
    }

    #[test]
    fn top_straggler_is_the_windows_own() {
        let strag = |thread: &str, tts_ns: u64| crate::collect::StragglerSeries {
            pid: 9,
            thread: thread.into(),
            count: 1,
            tts_ns,
            late_ns: 0,
        };
        let tts = |n: usize| series(Kind::TimeToSafepoint, "X", &vec![2 * MS; n]);
        // Before the window busy-# had the most; in it, slowpoke got 6 ms
        // of the 8 ms of time to safepoint.
        let mut before = (*snap(vec![tts(10)])).clone();
        before.stragglers = shared(vec![strag("busy-#", 15 * MS), strag("slowpoke", 2 * MS)]);
        let mut now = (*snap(vec![tts(14)])).clone();
        now.stragglers = shared(vec![
            strag("busy-#", 16 * MS),
            strag("slowpoke", 8 * MS),
            strag("other", 15 * MS / 10),
        ]);
        let (before, now) = (before.sorted(), now.sorted());
        let w = window_stats(Runtime::HotSpot, 9, &before, &now, Duration::from_secs(1));
        assert_eq!(w.top_straggler, "slowpoke");
        assert!(
            (w.top_straggler_share - 0.75).abs() < 1e-12,
            "{}",
            w.top_straggler_share
        );
        let quiet = window_stats(Runtime::HotSpot, 9, &now, &now, Duration::from_secs(1));
        assert_eq!(
            (quiet.top_straggler.as_str(), quiet.top_straggler_share),
            ("", 0.0)
        );
    }

    #[test]
    fn window_max_is_the_windows_own() {
        // A 900 ms pause long before the window must not be the window's max.
        let before = snap(vec![series(Kind::Safepoint, "X", &[900 * MS])]);
        let now = snap(vec![series(Kind::Safepoint, "X", &[900 * MS, MS])]);
        let w = window_stats(Runtime::HotSpot, 9, &before, &now, Duration::from_secs(1));
        assert!(w.max_ms <= 1.25 && w.max_ms >= 1.0, "{}", w.max_ms);
    }

    #[test]
    fn empty_window_is_all_zero_not_nan() {
        let w = window_stats(
            Runtime::HotSpot,
            9,
            &Snapshot::default(),
            &Snapshot::default(),
            Duration::ZERO,
        );
        assert_eq!(w, WindowStats::default());
    }

    #[test]
    fn history_cuts_this_and_the_previous_window() {
        let mut h = History::new(Duration::from_secs(10));
        let t = target();
        assert!(h.features(&t).is_none());
        // One 10 ms pause per second for 20 s, then 30 ms per second.
        let mut values = Vec::new();
        for s in 0..=30u64 {
            if s > 0 {
                values.push(if s <= 20 { 10 * MS } else { 30 * MS });
            }
            h.push(
                Duration::from_secs(s),
                snap(vec![series(Kind::Safepoint, "X", &values)]),
            );
            if s == 5 {
                let f = h.features(&t).unwrap();
                assert_eq!(f.now.window_s, 5.0);
                assert!(f.prev.is_none());
                assert_eq!(f.get("has_prev"), Some(FeatureValue::Bool(false)));
            }
        }
        let f = h.features(&t).unwrap();
        assert_eq!(f.now.window_s, 10.0);
        assert_eq!(f.now.pauses, 10);
        assert!((f.now.stall_ratio - 0.03).abs() < 1e-12);
        let prev = f.prev.as_ref().unwrap();
        assert_eq!(prev.pauses, 10);
        assert!((prev.stall_ratio - 0.01).abs() < 1e-12);
        match f.get("stall_trend") {
            Some(FeatureValue::Number(v)) => assert!((v - 0.02).abs() < 1e-12),
            other => panic!("{other:?}"),
        }
        // Old snapshots are dropped: two windows and a step of 1 s
        // snapshots are kept, and one more at the horizon.
        assert!(h.snaps.len() <= 23, "{}", h.snaps.len());
    }

    #[test]
    fn history_stays_bounded_at_short_intervals() {
        let mut h = History::new(Duration::from_secs(10));
        let mut values = Vec::new();
        for ms in (0..=30_000u64).step_by(10) {
            if ms % 1000 == 0 && ms > 0 {
                values.push(MS);
            }
            h.push(
                Duration::from_millis(ms),
                snap(vec![series(Kind::Safepoint, "X", &values)]),
            );
        }
        assert!(
            h.snaps.len() <= 2 * HISTORY_STEPS as usize + 10,
            "{}",
            h.snaps.len()
        );
        let f = h.features(&target()).unwrap();
        // The newest snapshot is always the window's end; its start is at
        // most one step (a HISTORY_STEPS-th of the window) early.
        let step = 10.0 / f64::from(HISTORY_STEPS);
        assert!(
            (10.0..=10.0 + step + 0.01).contains(&f.now.window_s),
            "{}",
            f.now.window_s
        );
        // One pause per whole second, the one at the start edge included.
        assert!((10..=11).contains(&f.now.pauses), "{}", f.now.pauses);
        assert!(f.prev.is_some());
    }

    #[test]
    fn every_documented_feature_has_a_value_of_its_type() {
        let f = Features {
            runtime: Runtime::HotSpot,
            cpu_limit_cores: 0.0,
            now: WindowStats::default(),
            prev: None,
        };
        for doc in FEATURES {
            let v = f.get(doc.name).unwrap_or_else(|| panic!("{}", doc.name));
            let ty = match v {
                FeatureValue::Number(_) => FeatureType::Number,
                FeatureValue::Bool(_) => FeatureType::Bool,
                FeatureValue::Text(_) => FeatureType::Text,
                FeatureValue::Shares(_) => FeatureType::Shares,
            };
            assert_eq!(ty, doc.ty, "{}", doc.name);
        }
        assert!(f.get("nope").is_none());
    }
}
