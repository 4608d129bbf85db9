//! The Ruby collection comparison: the agent traces
//! `workloads/ruby/gc_alloc.rb` on Debian's `ruby3.1` and its counts and
//! summed pause time are checked against Ruby's own account of the window
//! (`GC.stat`, `GC::Profiler`; see `e2e_ruby.rs` for the order of events and
//! what each side covers).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use xtask::groundtruth::ruby::{GcReport, parse_report};
use xtask::scripted::{ScriptWorkload, workload_path};

use super::scenario::{Subject, SumTolerance, Tally, Window, attach_and_compare, run_gated_script};
use super::sum_of;

/// Debian's interpreter (package ruby3.1).
pub const RUBY: &str = "/usr/bin/ruby3.1";
/// Length of the script's measured phase, its first argument.
pub const SECONDS: &str = "3";
/// The agent's cause of a minor collection's marking.
pub const MINOR: &str = "minor";
/// The agent's cause of a major collection's marking.
pub const MAJOR: &str = "major";
/// The agent's cause of a lazy sweep step.
pub const SWEEP: &str = "sweep";
/// Summed time of all pauses within 10% of the profiler's. Per cause there
/// is nothing to hold it to: a profiler record's time is its marking plus
/// its later sweep steps, which the agent has under two causes.
const TOLERANCE: SumTolerance = SumTolerance {
    relative: 0.10,
    per_pause_ns: 0.0,
    per_cause: false,
};

/// Starts the workload (not yet at its gate), SCHED_FIFO (`chrt -f 1`,
/// which execs Ruby: same pid). Ruby's `GC_TIME` is process CPU time and the
/// agent's is wall time; with other load on the 2 cores, every preemption
/// inside a collection lands in the agent's sum only (measured: agent /
/// profiler 1.48 at load average 7 without FIFO, `docs/design.md`).
pub fn spawn_workload(seconds: &str) -> ScriptWorkload {
    assert!(
        Path::new(RUBY).is_file(),
        "{RUBY} is missing: install Debian's ruby3.1 (`cargo xtask test` installs it)"
    );
    let script = workload_path("ruby/gc_alloc.rb");
    ScriptWorkload::spawn(
        Path::new("/usr/bin/chrt"),
        &[
            "-f".to_string(),
            "1".to_string(),
            RUBY.to_string(),
            script.display().to_string(),
            seconds.to_string(),
        ],
    )
    .unwrap_or_else(|e| panic!("{e:#}"))
}

/// Traces `rb`, a `gc_alloc.rb` that printed nothing yet, and checks the
/// number of minor and of major markings (exact: one per collection of
/// each kind `GC.stat` counted) and
/// the summed time of markings and lazy sweep steps (within 10% of the
/// profiler's `GC_TIME`). Panics with a table on any mismatch; returns the
/// report for the caller's own checks.
pub fn check_collections(mut rb: ScriptWorkload) -> GcReport {
    rb.wait_ready(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let mut ruby = Ruby {
        script: rb,
        report: None,
    };
    let mut outcome = attach_and_compare(&mut ruby, TOLERANCE);
    let report = ruby.report.clone().expect("run() reads the report");
    let agent_sum = 1e9
        * sum_of(
            &outcome.samples,
            "pausewatch_pause_seconds_sum",
            &[("runtime", "ruby")],
        );
    outcome.table.push_str(
        "(the log's `minor`/`major` time is GC::Profiler's GC_TIME: each collection's \
         marking and the sweep steps after it, so compare the `all` row)\n",
    );
    outcome.table.push_str(&format!(
        "workload: {} rounds in {:.2} s; GC.stat: {} collections ({} minor, {} major), \
         time {} ms; GC.total_time {:.3} ms (enter to exit, with incremental marking); \
         agent / GC.total_time {:.4}\n",
        report.rounds,
        report.elapsed_ns as f64 / 1e9,
        report.stat.count,
        report.stat.minor_gc_count,
        report.stat.major_gc_count,
        report.stat.time,
        report.total_time_ns as f64 / 1e6,
        agent_sum / report.total_time_ns as f64,
    ));
    // Lazy sweep steps outside the markings: a collection started by
    // allocation sweeps lazily (measured ~15-18 steps per collection), so a
    // window of hundreds of them without one means the sweep probes broke.
    let sweeps = sum_of(
        &outcome.samples,
        "pausewatch_pause_seconds_count",
        &[("runtime", "ruby"), ("cause", SWEEP)],
    );
    outcome
        .checks
        .check(sweeps >= report.stat.count as f64, || {
            format!(
                "the agent saw {sweeps} lazy sweep steps for {} collections; \
             Ruby sweeps lazily, so expected at least one per collection",
                report.stat.count
            )
        });
    outcome.checks.check(
        report.stat.minor_gc_count > 0 && report.stat.major_gc_count > 0,
        || "the script ran no minor or no major collection; the workload is broken".to_string(),
    );
    outcome.finish();
    report
}

/// Ruby running `gc_alloc.rb`, held at its gate.
struct Ruby {
    script: ScriptWorkload,
    report: Option<GcReport>,
}

impl Subject for Ruby {
    fn describe(&self) -> String {
        "Ruby 3.1 (Debian ruby3.1)".to_string()
    }

    fn pid(&self) -> u32 {
        self.script.pid()
    }

    fn runtime(&self) -> &'static str {
        "ruby"
    }

    fn kind(&self) -> &'static str {
        "gc"
    }

    fn uncounted_causes(&self) -> &'static [&'static str] {
        &[SWEEP]
    }

    fn run(&mut self) {
        let json = run_gated_script(&mut self.script);
        self.report = Some(parse_report(&json).unwrap_or_else(|e| panic!("{e:#}")));
    }

    /// The script's window runs from its gate to its report (collections
    /// disabled on both sides of it). It exits (0, its output unchanged)
    /// once the agent was scraped.
    fn truth(&mut self, _: &Window, _: &BTreeMap<String, f64>) -> BTreeMap<String, Tally> {
        self.script
            .finish(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e:#}"));
        let report = self.report.as_ref().expect("run() reads the report");
        // Each record's GC_TIME under its collection's kind; the sums are
        // only compared in total (a record's time holds its later sweeps).
        let tally = |major: bool, count: u64| Tally {
            count: count as f64,
            sum_ns: report
                .records
                .iter()
                .filter(|r| r.is_major() == major)
                .map(|r| r.gc_time_s * 1e9)
                .sum(),
        };
        BTreeMap::from([
            (MINOR.to_string(), tally(false, report.stat.minor_gc_count)),
            (MAJOR.to_string(), tally(true, report.stat.major_gc_count)),
        ])
    }
}
