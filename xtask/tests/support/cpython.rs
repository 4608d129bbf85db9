//! The CPython collection comparison shared by the end-to-end tests of
//! every interpreter and every way of running one (directly, in a chroot,
//! behind pivot_root): the agent traces `workloads/python/gc_cycles.py`
//! and its per-generation counts and summed durations are checked against
//! the script's own `gc.callbacks` account (see `e2e_cpython.rs` for the
//! order of events and the tolerances).

use std::collections::BTreeMap;
use std::time::Duration;

use xtask::groundtruth::cpython::{GcReport, parse_report};
use xtask::scripted::ScriptWorkload;

use super::agent_probes;
use super::scenario::{Subject, SumTolerance, Tally, Window, attach_and_compare, run_gated_script};

/// Length of the script's measured phase, its first argument.
pub const SECONDS: &str = "4";
/// Tolerance of the summed durations, per generation and of all.
const TOLERANCE: SumTolerance = SumTolerance {
    relative: 0.10,
    per_pause_ns: 0.0,
    per_cause: true,
};

/// Traces `py`, a `gc_cycles.py` that printed nothing yet, and checks
/// every generation's count (exact) and summed duration (within 10%)
/// against the script's report ([`super::scenario`]); `version` (`3.11`)
/// is what `agent probes` and the agent's "tracing" line must name. Panics
/// with a table on any mismatch.
pub fn check_gc_generations(mut py: ScriptWorkload, version: &str) {
    py.wait_ready(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let pid = py.pid();
    // `agent probes` names the runtime, its support and both probes.
    let probes_text = agent_probes(pid);
    assert!(
        probes_text.contains(&format!("cpython {version}"))
            && probes_text.contains("support: tested in CI")
            && probes_text.contains("python:gc__start")
            && probes_text.contains("python:gc__done"),
        "agent probes --pid {pid} did not show CPython, its support and its probes:\n{probes_text}"
    );
    let mut python = Python {
        version: version.to_string(),
        script: py,
        report: None,
    };
    let mut outcome = attach_and_compare(&mut python, TOLERANCE);
    if let Some(report) = &python.report {
        outcome.table.push_str(&format!(
            "workload: {} rounds in {:.2} s ({:.0} rounds/s)\n",
            report.rounds,
            report.elapsed_ns as f64 / 1e9,
            report.rounds_per_second
        ));
        for g in 0..3 {
            let cause = GcReport::cause(g);
            outcome.checks.check(report.counts[g] > 0, || {
                format!("the script ran no {cause} collection; the workload is broken")
            });
        }
    }
    outcome.finish();
}

/// CPython running `gc_cycles.py`, held at its gate.
struct Python {
    version: String,
    script: ScriptWorkload,
    report: Option<GcReport>,
}

impl Subject for Python {
    fn describe(&self) -> String {
        format!("CPython {}", self.version)
    }

    fn pid(&self) -> u32 {
        self.script.pid()
    }

    fn runtime(&self) -> &'static str {
        "cpython"
    }

    fn kind(&self) -> &'static str {
        "gc"
    }

    fn run(&mut self) {
        let json = run_gated_script(&mut self.script);
        self.report = Some(parse_report(&json).unwrap_or_else(|e| panic!("{e:#}")));
    }

    /// The script counts from its gate to its report, which is the window.
    /// It exits (0, its output unchanged) once the agent was scraped.
    fn truth(&mut self, _: &Window, _: &BTreeMap<String, f64>) -> BTreeMap<String, Tally> {
        self.script
            .finish(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e:#}"));
        let report = self.report.as_ref().expect("run() reads the report");
        (0..3)
            .map(|g| {
                let tally = Tally {
                    count: report.counts[g] as f64,
                    sum_ns: report.durations_ns[g] as f64,
                };
                (GcReport::cause(g), tally)
            })
            .collect()
    }
}
