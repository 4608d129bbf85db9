//! The live summary that `agent run` prints on stderr: per target, pauses
//! per second, p50/p99/max and the top causes over the last interval.

use std::{collections::HashMap, fmt::Write, time::Duration};

use pausewatch_common::Kind;

use crate::{
    collect::{Hist, Snapshot},
    rules::{Report, Verdict},
};

/// Renders the pauses between two snapshots (`before` may be empty).
pub fn render(before: &Snapshot, report: &Report, elapsed: Duration) -> String {
    let now = &*report.snapshot;
    let secs = elapsed.as_secs_f64().max(1e-3);
    let mut out = String::new();
    let old: HashMap<(u32, Kind, &str), &Hist> = before
        .series
        .iter()
        .map(|s| ((s.pid, s.kind, s.cause.as_str()), &s.hist))
        .collect();
    for target in &now.targets {
        let mut total = Hist::default();
        let mut causes: Vec<(&str, Hist)> = Vec::new();
        let mut tts = Hist::default();
        let module = target.runtime.module();
        for s in now.series_of(target.pid) {
            let delta = match old.get(&(s.pid, s.kind, s.cause.as_str())) {
                Some(prev) => s.hist.since(prev),
                None => s.hist.clone(),
            };
            if delta.count == 0 {
                continue;
            }
            // The total is the pauses that are stops of their own (for
            // HotSpot the safepoints, which hold its GC pauses).
            if module.counts_as_stall(s.kind) {
                total.merge(&delta);
                causes.push((s.cause.as_str(), delta));
            } else if s.kind == Kind::TimeToSafepoint {
                tts.merge(&delta);
            }
        }
        let _ = write!(
            out,
            "pid {} {} ({} {}): ",
            target.pid, target.comm, target.runtime, target.runtime_version
        );
        if total.count == 0 {
            out.push_str("no pauses\n");
            write_verdict(&mut out, &report.verdicts, target.pid);
            continue;
        }
        let ms = |ns: f64| ns / 1e6;
        let _ = write!(
            out,
            "{:.1} pauses/s, stalled {:.2}% | p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            total.count as f64 / secs,
            total.sum_ns as f64 / 1e9 / secs * 100.0,
            ms(total.quantile_ns(0.5).unwrap_or(0.0)),
            ms(total.quantile_ns(0.99).unwrap_or(0.0)),
            ms(total.max_ns as f64),
        );
        if tts.count > 0 {
            // One family, each runtime's own word for it.
            let what = if target.runtime == crate::runtimes::Runtime::Go {
                "stopping"
            } else {
                "time to safepoint"
            };
            let _ = write!(
                out,
                " | {what} p99 {:.3} ms",
                ms(tts.quantile_ns(0.99).unwrap_or(0.0))
            );
            // The thread that kept this interval's safepoints waiting most.
            let (thread, ns) = crate::rules::features::top_straggler(target.pid, before, now);
            if ns > 0 {
                let _ = write!(
                    out,
                    ", last to arrive: {thread} ({:.0}% of it)",
                    ns as f64 / tts.sum_ns.max(1) as f64 * 100.0
                );
            }
        }
        out.push('\n');
        let [running, runnable, blocked] = total.state_ns;
        let states = (running + runnable + blocked) as f64;
        if states > 0.0 {
            let pct = |ns: u64| ns as f64 / states * 100.0;
            let _ = writeln!(
                out,
                "    pause threads: running {:.0}%  runnable {:.0}%  blocked {:.0}%",
                pct(running),
                pct(runnable),
                pct(blocked)
            );
        }
        causes.sort_by_key(|c| std::cmp::Reverse(c.1.sum_ns));
        out.push_str("    top causes:");
        for (cause, h) in causes.iter().take(4) {
            let _ = write!(
                out,
                "  {cause} {}x {:.2} ms",
                h.count,
                h.sum_ns as f64 / 1e6
            );
        }
        out.push('\n');
        write_heap(&mut out, before, now, target.pid, secs);
        write_verdict(&mut out, &report.verdicts, target.pid);
    }
    out
}

/// The heap line of a HotSpot target with memory-pool data: allocation and
/// promotion over the interval, the heap after the latest collection
/// against its maximum, the live set after the latest full collection.
fn write_heap(out: &mut String, before: &Snapshot, now: &Snapshot, pid: u32, secs: f64) {
    use crate::collect::heap::HeapView;
    let Some(v) = HeapView::of(pid, now.heap_of(pid)) else {
        return;
    };
    let old = HeapView::of(pid, before.heap_of(pid)).unwrap_or_default();
    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
    out.push_str("    heap:");
    if let (Some(a), Some(p)) = (v.allocated_bytes, v.promoted_bytes) {
        let rate = |now: u64, then: Option<u64>| mb(now.saturating_sub(then.unwrap_or(0))) / secs;
        let _ = write!(
            out,
            " {:.1} MB/s allocated, {:.1} MB/s promoted |",
            rate(a, old.allocated_bytes),
            rate(p, old.promoted_bytes)
        );
    }
    let _ = write!(out, " after GC {:.1} MB", mb(v.used_after_last));
    if let Some(max) = v.max_bytes.filter(|&m| m > 0) {
        let _ = write!(
            out,
            " of {:.0} MB ({:.0}%)",
            mb(max),
            v.used_after_last as f64 / max as f64 * 100.0
        );
    }
    if let Some((live, _)) = v.live_after_full {
        let _ = write!(out, " | live after full GC {:.1} MB", mb(live));
    }
    out.push('\n');
}

/// The rule engine's profile and findings (with advice) for `pid`, if any.
fn write_verdict(out: &mut String, verdicts: &[Verdict], pid: u32) {
    let Some(v) = verdicts.iter().find(|v| v.pid == pid) else {
        return;
    };
    let _ = writeln!(
        out,
        "    profile: {} (stalled {:.2}% over the last {:.0} s)",
        v.profile,
        v.features.now.stall_ratio * 100.0,
        v.features.now.window_s
    );
    for f in &v.findings {
        let _ = writeln!(out, "    {} {}: {}", f.severity.label(), f.rule, f.advice);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::snapshot::shared;
    use crate::collect::{Series, TargetInfo};
    use crate::runtimes::Runtime;
    use pausewatch_common::bucket_index;
    use std::sync::Arc;

    #[test]
    fn shows_the_heap_line_of_a_jvm_with_pool_data() {
        use crate::collect::heap::PoolSeries;
        use pausewatch_common::heap::PoolStats;
        const M: u64 = 1 << 20;
        let pools = |alloc: u64, promoted: u64| {
            let pool = |manager: &str, pool: &str, stats: PoolStats| PoolSeries {
                pid: 7,
                manager: manager.into(),
                pool: pool.into(),
                stats,
            };
            vec![
                pool(
                    "G1 Young Generation",
                    "G1 Eden Space",
                    PoolStats {
                        collections: 3,
                        grown_between: alloc,
                        max: u64::MAX,
                        last_end_ns: 5,
                        ..Default::default()
                    },
                ),
                pool(
                    "G1 Young Generation",
                    "G1 Old Gen",
                    PoolStats {
                        collections: 3,
                        grown_during: promoted,
                        used_after: 32 * M,
                        max: 128 * M,
                        last_end_ns: 5,
                        ..Default::default()
                    },
                ),
                pool(
                    "G1 Old Generation",
                    "G1 Old Gen",
                    PoolStats {
                        collections: 1,
                        used_after: 20 * M,
                        max: 128 * M,
                        last_end_ns: 4,
                        ..Default::default()
                    },
                ),
            ]
        };
        let pause = Series {
            pid: 7,
            kind: Kind::Safepoint,
            cause: "G1CollectForAllocation".into(),
            hist: Hist::of(&[1_000_000]),
        };
        let before = Snapshot {
            targets: shared(vec![TargetInfo::java(7)]),
            heap: shared(pools(100 * M, 10 * M)),
            ..Default::default()
        };
        let now = Snapshot {
            targets: shared(vec![TargetInfo::java(7)]),
            series: shared(vec![pause]),
            heap: shared(pools(300 * M, 14 * M)),
            ..Default::default()
        };
        let text = render(&before, &now.into(), Duration::from_secs(2));
        assert!(
            text.contains(
                "heap: 100.0 MB/s allocated, 2.0 MB/s promoted | after GC 32.0 MB of 128 MB (25%) | live after full GC 20.0 MB"
            ),
            "{text}"
        );
    }

    #[test]
    fn shows_rate_quantiles_and_causes_of_the_interval_only() {
        let target = TargetInfo::java(7);
        let series = |n: u64| {
            let mut h = Hist::default();
            for _ in 0..n {
                h.count += 1;
                h.sum_ns += 2_000_000;
                h.max_ns = 2_000_000;
                h.buckets.add(bucket_index(2_000_000), 1);
            }
            Series {
                pid: 7,
                kind: Kind::Safepoint,
                cause: "G1CollectForAllocation".into(),
                hist: h,
            }
        };
        let before = Snapshot {
            targets: shared(vec![target.clone()]),
            series: shared(vec![series(10)]),
            ..Default::default()
        };
        let now = Snapshot {
            targets: shared(vec![target]),
            series: shared(vec![series(30)]),
            ..Default::default()
        };
        let text = render(&before, &now.clone().into(), Duration::from_secs(2));
        assert!(text.contains("10.0 pauses/s"), "{text}");
        assert!(
            text.contains("G1CollectForAllocation 20x 40.00 ms"),
            "{text}"
        );
        assert!(text.contains("stalled 2.00%"), "{text}");
        assert!(!text.contains("profile:"), "{text}");

        let mut engine =
            crate::rules::Engine::new(crate::rules::defaults(), Duration::from_secs(2));
        let before = Arc::new(before);
        engine.observe(Duration::ZERO, before.clone());
        let now = engine.judge(Duration::from_secs(2), Arc::new(now));
        let text = render(&before, &now, Duration::from_secs(2));
        // 20 pauses of 2 ms in 2 s: 600/min, 2% stalled, none of it GC.
        assert!(
            text.contains("    profile: balanced (stalled 2.00% over the last 2 s)\n"),
            "{text}"
        );
        assert!(
            text.contains("    info frequent_safepoints: 600 safepoints per minute"),
            "{text}"
        );
    }

    #[test]
    fn pause_thread_states_are_shares_of_the_interval() {
        let mut before = Snapshot::default();
        before.targets.push(TargetInfo::java(5).into());
        let mut now = before.clone();
        let mut old = Hist::of(&[1_000_000]);
        old.state_ns = [1_000_000, 0, 0];
        before.series.push(
            Series {
                pid: 5,
                kind: Kind::Safepoint,
                cause: "G1CollectForAllocation".into(),
                hist: old,
            }
            .into(),
        );
        let mut new = Hist::of(&[1_000_000, 3_000_000, 1_000_000]);
        new.state_ns = [2_000_000, 3_000_000, 0];
        now.series.push(
            Series {
                pid: 5,
                kind: Kind::Safepoint,
                cause: "G1CollectForAllocation".into(),
                hist: new,
            }
            .into(),
        );
        let text = render(&before, &now.into(), Duration::from_secs(1));
        // Of the interval's 4 ms: 1 ms running, 3 ms runnable.
        assert!(
            text.contains("    pause threads: running 25%  runnable 75%  blocked 0%\n"),
            "{text}"
        );
    }

    #[test]
    fn names_the_intervals_top_straggler() {
        let target = TargetInfo::java(7);
        let series = |kind: Kind, n: u64| Series {
            pid: 7,
            kind,
            cause: "ThreadDump".into(),
            hist: Hist::of(&vec![4_000_000; n as usize]),
        };
        let strag = |thread: &str, tts_ns: u64| crate::collect::StragglerSeries {
            pid: 7,
            thread: thread.into(),
            count: 1,
            tts_ns,
            late_ns: 0,
        };
        let before = Snapshot {
            targets: shared(vec![target.clone()]),
            series: shared(vec![
                series(Kind::Safepoint, 1),
                series(Kind::TimeToSafepoint, 1),
            ]),
            stragglers: shared(vec![strag("busy-#", 4_000_000)]),
            ..Default::default()
        };
        // In the interval: 3 more safepoints, 12 ms of time to safepoint,
        // 9 ms of it charged to slowpoke.
        let now = Snapshot {
            targets: shared(vec![target]),
            series: shared(vec![
                series(Kind::Safepoint, 4),
                series(Kind::TimeToSafepoint, 4),
            ]),
            stragglers: shared(vec![
                strag("busy-#", 7_000_000),
                strag("slowpoke", 9_000_000),
            ]),
            ..Default::default()
        };
        let text = render(&before, &now.into(), Duration::from_secs(1));
        assert!(
            text.contains(", last to arrive: slowpoke (75% of it)\n"),
            "{text}"
        );
    }

    #[test]
    fn collections_are_the_pauses_outside_hotspot() {
        let target = TargetInfo {
            pid: 9,
            comm: "python3.11".into(),
            current_comm: String::new(),
            runtime: Runtime::CPython,
            runtime_version: "3.11".into(),
            exe: "/usr/bin/python3.11".into(),
            container: Default::default(),
        };
        let mut h = Hist {
            count: 4,
            sum_ns: 4_000_000,
            max_ns: 1_000_000,
            ..Default::default()
        };
        h.buckets.add(bucket_index(1_000_000), 4);
        let now = Snapshot {
            targets: shared(vec![target]),
            series: shared(vec![Series {
                pid: 9,
                kind: Kind::GcPause,
                cause: "gen0".into(),
                hist: h,
            }]),
            ..Default::default()
        };
        let text = render(&Snapshot::default(), &now.into(), Duration::from_secs(1));
        assert!(text.contains("4.0 pauses/s"), "{text}");
        assert!(text.contains("gen0 4x 4.00 ms"), "{text}");
        assert!(!text.contains("time to safepoint"), "{text}");
    }

    #[test]
    fn go_stopping_time_is_shown_in_go_words() {
        let target = TargetInfo {
            pid: 5,
            comm: "gcload".into(),
            current_comm: String::new(),
            runtime: Runtime::Go,
            runtime_version: "go1.24.11".into(),
            exe: "/bin/gcload".into(),
            container: Default::default(),
        };
        let hist = |ns: u64| {
            let mut h = Hist {
                count: 2,
                sum_ns: 2 * ns,
                max_ns: ns,
                ..Default::default()
            };
            h.buckets.add(bucket_index(ns), 2);
            h
        };
        let series = |kind, ns| Series {
            pid: 5,
            kind,
            cause: "GC sweep termination".into(),
            hist: hist(ns),
        };
        let now = Snapshot {
            targets: shared(vec![target]),
            series: shared(vec![
                series(Kind::Stw, 80_000),
                series(Kind::TimeToSafepoint, 10_000),
            ]),
            ..Default::default()
        };
        let text = render(&Snapshot::default(), &now.into(), Duration::from_secs(1));
        // Two pauses; the stopping time is part of them, not more pauses.
        assert!(text.contains("2.0 pauses/s"), "{text}");
        assert!(text.contains("| stopping p99 0.010 ms"), "{text}");
        assert!(!text.contains("time to safepoint"), "{text}");
    }
}
