//! The bundled script workloads as the end-to-end tests use them, one
//! scenario for every interpreter: CPython running
//! `workloads/python/gc_cycles.py`, whose own account is its `gc.callbacks`
//! report on the `done` line, and Node.js running
//! `workloads/node/gc_alloc.js`, whose own account is V8's `--trace-gc`
//! lines on stdout (see `e2e_cpython.rs` and `e2e_v8.rs` for the order of
//! events and the tolerances). [`check_collections`] traces one with the
//! agent and compares; [`Interpreter::account`] reads the account for tests
//! that run their own agents.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use xtask::groundtruth::cpython::{GcReport, parse_report};
use xtask::groundtruth::v8::{Trace, parse_trace};
use xtask::scripted::{ScriptWorkload, workload_path};

use super::events::parse_events;
use super::scenario::{Subject, SumTolerance, Tally, Window, attach_and_compare, run_gated_script};
use super::{Checks, Sample, agent_probes, median_max, ms};

/// Tolerance of the summed durations, per cause and of all.
const TOLERANCE: SumTolerance = SumTolerance {
    relative: 0.10,
    per_pause_ns: 0.0,
    per_cause: true,
};

/// An interpreter and its bundled workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interpreter {
    /// CPython with `gc_cycles.py`.
    CPython,
    /// Node.js with `gc_alloc.js`.
    Node,
}

/// Per cause, the script's own count and summed duration.
pub type Tallies = BTreeMap<String, Tally>;

/// A script's account of its measured phase.
pub struct Account {
    /// Per cause.
    pub tallies: Tallies,
    /// Node's trace (with the lines that did not parse).
    pub trace: Option<Trace>,
}

impl Account {
    /// Panics (naming `who`) if some of Node's trace lines did not parse.
    pub fn assert_parsed(&self, who: &str) {
        if let Some(trace) = &self.trace {
            assert!(
                trace.unparsed.is_empty(),
                "{who}: trace lines that did not parse: {:?}",
                trace.unparsed
            );
        }
    }
}

/// The causes of `tallies` with at least one pause, and their counts.
pub fn counts(tallies: &Tallies) -> BTreeMap<String, u64> {
    tallies
        .iter()
        .filter(|(_, t)| t.count > 0.0)
        .map(|(c, t)| (c.clone(), t.count as u64))
        .collect()
}

/// The throughput both scripts report on their `done` line.
#[derive(Debug, Deserialize)]
struct Rounds {
    elapsed_ns: u64,
    rounds: u64,
    rounds_per_second: f64,
}

impl Interpreter {
    /// The `runtime` label of its series.
    pub fn runtime(self) -> &'static str {
        match self {
            Interpreter::CPython => "cpython",
            Interpreter::Node => "v8",
        }
    }

    /// The interpreter's arguments that run its workload for a measured
    /// phase of `secs` (after the interpreter's path).
    pub fn args(self, secs: impl ToString) -> Vec<String> {
        let secs = secs.to_string();
        match self {
            Interpreter::CPython => vec![
                workload_path("python/gc_cycles.py").display().to_string(),
                secs,
            ],
            Interpreter::Node => vec![
                "--expose-gc".to_string(),
                "--no-memory-reducer".to_string(),
                workload_path("node/gc_alloc.js").display().to_string(),
                secs,
            ],
        }
    }

    /// Causes the workload always produces: missing from its own account,
    /// the workload is broken.
    pub fn required(self) -> &'static [&'static str] {
        match self {
            Interpreter::CPython => &["gen0", "gen1", "gen2"],
            Interpreter::Node => &["scavenge", "mark-compact"],
        }
    }

    /// What `agent probes` must show for it besides `support: tested in CI`.
    fn probes_shown(self, version: &str) -> Vec<String> {
        match self {
            Interpreter::CPython => vec![
                format!("cpython {version}"),
                "python:gc__start".to_string(),
                "python:gc__done".to_string(),
            ],
            Interpreter::Node => vec![
                ": v8 ".to_string(),
                "v8::internal::GCTracer::StartObservablePause".to_string(),
                "v8::internal::Heap::PerformGarbageCollection".to_string(),
                "v8::internal::GCTracer::StopObservablePause".to_string(),
            ],
        }
    }

    /// The account of the measured phase of `script`, which printed `done
    /// <json>`; `script` has exited (0) when it returns. `settle` is called
    /// when the tracer's numbers must be read: once the account is
    /// complete, and before anything it leaves out can happen (CPython's
    /// collections at exit; Node prints its trace at exit, so for Node that
    /// is after it). `who` names the script in messages.
    pub fn account(
        self,
        json: &str,
        script: &mut ScriptWorkload,
        who: &str,
        settle: &mut dyn FnMut(&Tallies),
    ) -> Account {
        let finish = |script: &mut ScriptWorkload| {
            script
                .finish(Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("{who}: {e:#}"))
        };
        match self {
            Interpreter::CPython => {
                let report = parse_report(json).unwrap_or_else(|e| panic!("{who}: {e:#}"));
                let tallies = (0..3)
                    .map(|g| {
                        let tally = Tally {
                            count: report.counts[g] as f64,
                            sum_ns: report.durations_ns[g] as f64,
                        };
                        (GcReport::cause(g), tally)
                    })
                    .collect();
                settle(&tallies);
                finish(script);
                Account {
                    tallies,
                    trace: None,
                }
            }
            Interpreter::Node => {
                let stdout = finish(script);
                let trace = parse_trace(stdout.iter().map(String::as_str));
                let mut tallies = Tallies::new();
                for g in &trace.gcs {
                    let t = tallies.entry(g.cause.to_string()).or_default();
                    t.count += 1.0;
                    t.sum_ns += g.pause_ms * 1e6;
                }
                settle(&tallies);
                Account {
                    tallies,
                    trace: Some(trace),
                }
            }
        }
    }
}

/// Traces `script`, `interpreter`'s workload that printed nothing yet, and
/// checks every cause's count (exact) and summed duration (within 10%)
/// against the script's own account ([`super::scenario`]); `version` is
/// what names the interpreter in messages and, for CPython, what `agent
/// probes` must name. With `--events`, Node's events must also match its
/// trace lines one to one, by collector. Panics with a table on any
/// mismatch.
pub fn check_collections(interpreter: Interpreter, script: ScriptWorkload, version: &str) {
    check_collections_with(interpreter, script, version, |_| {}, |_, _| {});
}

/// [`check_collections`], with `ready` called on the script once it is
/// ready (before anything reads its pid) and `extra` given the checks and
/// the final scrape, for a caller's own checks of its labels.
pub fn check_collections_with(
    interpreter: Interpreter,
    mut script: ScriptWorkload,
    version: &str,
    ready: impl FnOnce(&mut ScriptWorkload),
    extra: impl FnOnce(&mut Checks, &[Sample]),
) {
    script
        .wait_ready(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}"));
    ready(&mut script);
    let pid = script.pid();
    // `agent probes` names the runtime, its support and its probes.
    let probes_text = agent_probes(pid);
    let shown = interpreter.probes_shown(version);
    assert!(
        probes_text.contains("support: tested in CI")
            && shown.iter().all(|s| probes_text.contains(s.as_str())),
        "agent probes --pid {pid} did not show {}, its support and its probes:\n{probes_text}",
        match interpreter {
            Interpreter::CPython => "CPython",
            Interpreter::Node => "V8",
        }
    );
    let mut subject = Script {
        interpreter,
        version: version.to_string(),
        script,
        json: None,
        account: None,
    };
    let mut outcome = attach_and_compare(&mut subject, TOLERANCE);
    extra(&mut outcome.checks, &outcome.samples);
    let checks = &mut outcome.checks;
    if let Some(r) = subject
        .json
        .as_deref()
        .map(|j| serde_json::from_str::<Rounds>(j).expect("run() read the report"))
    {
        outcome.table.push_str(&format!(
            "workload: {} rounds in {:.2} s ({:.0} rounds/s)\n",
            r.rounds,
            r.elapsed_ns as f64 / 1e9,
            r.rounds_per_second
        ));
    }
    let account = subject.account.as_ref().expect("truth() reads the account");
    if let Some(trace) = &account.trace {
        checks.check(trace.unparsed.is_empty(), || {
            format!("trace lines that did not parse: {:?}", trace.unparsed)
        });
    }
    for &cause in interpreter.required() {
        let ran = account.tallies.get(cause).is_some_and(|t| t.count > 0.0);
        checks.check(ran, || match interpreter {
            Interpreter::CPython => {
                format!("the script ran no {cause} collection; the workload is broken")
            }
            Interpreter::Node => format!("the trace has no {cause}; the workload is broken"),
        });
    }

    // Node: per collection, in order, same collector, and how far apart.
    // (V8's end probe fires after V8's own timestamp, so the agent brackets
    // the same interval: each is printed for a look, only the sums are
    // held to the tolerance.)
    if let Some(trace) = &account.trace {
        let events = parse_events(&outcome.events);
        checks.eq("--events lines", events.len(), trace.gcs.len());
        let mut diffs = Vec::new();
        for (i, (e, g)) in events.iter().zip(&trace.gcs).enumerate() {
            checks.check(
                e.runtime == "v8" && e.kind == "gc" && e.cause == g.cause,
                || format!("event #{i} is {e:?}, the trace line says {}", g.collector),
            );
            diffs.push(e.duration_ns.abs_diff((g.pause_ms * 1e6) as u64));
        }
        let (median, max) = median_max(&diffs);
        outcome.table.push_str(&format!(
            "per collection |agent - trace|: median {} ms, max {} ms\n",
            ms(median as f64),
            ms(max as f64)
        ));
    }
    outcome.finish();
}

/// A script workload held at its gate, as a [`Subject`].
struct Script {
    interpreter: Interpreter,
    version: String,
    script: ScriptWorkload,
    /// Its `done` report.
    json: Option<String>,
    account: Option<Account>,
}

impl Subject for Script {
    fn describe(&self) -> String {
        match self.interpreter {
            Interpreter::CPython => format!("CPython {}", self.version),
            Interpreter::Node => format!("Node.js {}", self.version),
        }
    }

    fn pid(&self) -> u32 {
        self.script.pid()
    }

    fn runtime(&self) -> &'static str {
        self.interpreter.runtime()
    }

    fn kind(&self) -> &'static str {
        "gc"
    }

    fn run(&mut self) {
        let json = run_gated_script(&mut self.script);
        let _: Rounds =
            serde_json::from_str(&json).unwrap_or_else(|e| panic!("bad report {json:?}: {e}"));
        self.json = Some(json);
    }

    /// The script counts from its gate to its report (CPython), or
    /// switches V8's trace on after the gate and off before `done`
    /// (Node), so the whole account is the window. It exits (0, its
    /// output unchanged) once the agent was scraped.
    fn truth(&mut self, _: &Window, _: &BTreeMap<String, f64>) -> BTreeMap<String, Tally> {
        let json = self.json.clone().expect("run() reads the report");
        let who = self.describe();
        let account = self
            .interpreter
            .account(&json, &mut self.script, &who, &mut |_| {});
        let tallies = account.tallies.clone();
        self.account = Some(account);
        tallies
    }
}
