//! HotSpot comparisons shared by the end-to-end tests: a GcHeavy JVM with
//! its `-Xlog:safepoint` log as a [`Subject`], which of the log's records
//! the agent's numbers must equal, and the per-VM-operation check of counts
//! and summed durations.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use xtask::groundtruth::hotspot::{self, SafepointRecord};
use xtask::workloads::{JavaWorkload, RunningJava};

use super::events::Event;
use super::scenario::{Subject, Tally};
use super::{Checks, Sample, ms, ratio, sum_by, sum_of};

pub use super::scenario::Window;

/// A small gated GcHeavy on JDK `jdk` for a heavy phase of `secs`: a 32 MB
/// heap with an 8 MB young generation and 4 MB live, 20 MB/s, and
/// `System.gc()` every `system_gc_ms`, logging to `log`: full collections
/// only after the gate, young ones all along.
pub fn small_gcheavy(jdk: u32, secs: u64, system_gc_ms: u64, log: &Path) -> JavaWorkload {
    JavaWorkload::jdk(jdk)
        .unwrap_or_else(|e| panic!("JDK {jdk}: {e:#}"))
        .heap_mb(32)
        .young_mb(Some(8))
        .live_mb(4)
        .alloc_mb_per_sec(20)
        .system_gc_every_ms(system_gc_ms)
        .duration_secs(secs)
        .log_path(log)
        .gate(true)
}

/// [`small_gcheavy`] on JDK 17 with a thread dump every 100 ms (a second
/// safepoint cause), started and ready at its gate, as a [`Jvm`] called
/// `label` whose measured phase must end within a minute.
pub fn dumping_jdk17(label: &str, secs: u64, log: &Path) -> Jvm {
    let workload = small_gcheavy(17, secs, 500, log).stack_traces_every_ms(100);
    ready_jvm(workload, label, log, Duration::from_secs(60))
}

/// Starts `workload` (gated, logging to `log`) and waits until it is ready
/// at its gate, both within `within`: the [`Jvm`] called `label`.
pub fn ready_jvm(workload: JavaWorkload, label: &str, log: &Path, within: Duration) -> Jvm {
    let mut jvm = workload
        .spawn()
        .unwrap_or_else(|e| panic!("{label}: starting GcHeavy: {e:#}"));
    jvm.wait_ready(within)
        .unwrap_or_else(|e| panic!("{label}: {e:#}"));
    Jvm {
        label: label.to_string(),
        jvm,
        log: log.to_path_buf(),
        armed: "hotspot".to_string(),
        started_within: None,
        done_within: within,
    }
}

/// A gated GcHeavy JVM writing `-Xlog:safepoint` to `log`. Its log is
/// removed when it drops, unless the test is failing or
/// `PAUSEWATCH_E2E_KEEP` is set.
pub struct Jvm {
    /// For tables and messages: `JDK 17.0.13 -XX:+UseSerialGC`.
    pub label: String,
    /// The JVM, waiting at its gate.
    pub jvm: RunningJava,
    /// Its `-Xlog` file.
    pub log: PathBuf,
    /// What the agent's "armed" line must name (`hotspot`, `hotspot 17.`).
    pub armed: String,
    /// How long it may take to say `started` once the gate is open, when
    /// that is waited for separately.
    pub started_within: Option<Duration>,
    /// How long its measured phase may take, to `done` and the exit.
    pub done_within: Duration,
}

impl Subject for Jvm {
    fn describe(&self) -> String {
        self.label.clone()
    }

    fn pid(&self) -> u32 {
        self.jvm.pid()
    }

    fn runtime(&self) -> &'static str {
        "hotspot"
    }

    fn armed_names(&self) -> String {
        self.armed.clone()
    }

    fn kind(&self) -> &'static str {
        "safepoint"
    }

    fn run(&mut self) {
        let label = &self.label;
        self.jvm
            .open_gate()
            .unwrap_or_else(|e| panic!("{label}: {e:#}"));
        if let Some(timeout) = self.started_within {
            self.jvm
                .wait_started(timeout)
                .unwrap_or_else(|e| panic!("{label}: {e:#}"));
        }
        self.jvm
            .wait_done(self.done_within)
            .unwrap_or_else(|e| panic!("{label}: {e:#}"));
    }

    /// Per VM operation, the [`comparable_safepoints`] of the log.
    fn truth(&mut self, w: &Window, counts: &BTreeMap<String, f64>) -> BTreeMap<String, Tally> {
        let log = hotspot::read_log(&self.log).unwrap_or_else(|e| panic!("{e:#}"));
        let (records, _) = comparable_safepoints(&log.safepoints, counts, *w);
        let mut truth: BTreeMap<String, Tally> = BTreeMap::new();
        for r in &records {
            let t = truth.entry(r.op.clone()).or_default();
            t.count += 1.0;
            t.sum_ns += r.total_ns as f64;
        }
        truth
    }

    fn preempted_after_log(
        &mut self,
        w: &Window,
        counts: &BTreeMap<String, f64>,
        events: &[Event],
    ) -> (usize, f64) {
        let log = hotspot::read_log(&self.log).unwrap_or_else(|e| panic!("{e:#}"));
        let (records, _) = comparable_safepoints(&log.safepoints, counts, *w);
        let (n, ns) = preempted_after_log_line(events, &records);
        (n, ns as f64)
    }
}

/// Per-event bound of a safepoint's duration against its log line's
/// `Total`: ABS + REL × Total. The agent's interval ends at
/// `safepoint__end`, which HotSpot fires after writing the line, so a
/// few tens of µs over are normal; far beyond is a preemption.
pub const EVENT_ABS_TOLERANCE_NS: u64 = 100_000;
/// See [`EVENT_ABS_TOLERANCE_NS`].
pub const EVENT_REL_TOLERANCE: f64 = 0.02;

/// Safepoint events outside the per-event bound whose excess lies after
/// HotSpot stamped their log line, and the sum of (agent end − stamp) over
/// them: time the VM thread spent, preempted, between the end of the pause
/// and the `safepoint__end` probe. Events pair with `records` in start
/// order (the count checks prove the pairing).
pub fn preempted_after_log_line(events: &[Event], records: &[SafepointRecord]) -> (usize, u64) {
    let mut matched: Vec<&Event> = events
        .iter()
        .filter(|e| e.kind == "safepoint" && e.cause != "unknown")
        .collect();
    matched.sort_by_key(|e| e.start_ns);
    let mut n = 0;
    let mut excess = 0;
    for (e, r) in matched.into_iter().zip(records) {
        let d = e.duration_ns.abs_diff(r.total_ns);
        let allowed = EVENT_ABS_TOLERANCE_NS as f64 + EVENT_REL_TOLERANCE * r.total_ns as f64;
        if e.cause == r.op && d as f64 > allowed && e.end_ns() >= r.logged_at_ns {
            n += 1;
            excess += e.end_ns() - r.logged_at_ns;
        }
    }
    (n, excess)
}

impl Drop for Jvm {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("PAUSEWATCH_E2E_KEEP").is_some() {
            eprintln!("{}: HotSpot log kept at {}", self.label, self.log.display());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// The safepoint records the agent's numbers must equal, given the agent's
/// per-operation counts.
///
/// All records that began after the test saw the "armed" line and were
/// logged before the scrape. At the front edge, the JVM is parked at its
/// gate while the agent attaches, so normally nothing is in flight; but the
/// JVM may run a safepoint of its own there (JDK 17 runs a periodic
/// "Cleanup" safepoint when it has inline-cache or other cleanup work, and
/// some startup activity can still trigger one). A safepoint that began
/// while the probes were being attached, or between the agent printing
/// "armed" and the test reading it, may or may not have been seen by the
/// agent. So for each operation, up to ONE record from
/// [agent started, armed line read) is taken in, and only if the agent's
/// count for that operation asks for it; anything beyond that fails the
/// count check. Such a record is listed in the table.
pub fn comparable_safepoints(
    records: &[SafepointRecord],
    agent_counts: &BTreeMap<String, f64>,
    w: Window,
) -> (Vec<SafepointRecord>, Vec<SafepointRecord>) {
    let ended_in_time = |r: &SafepointRecord| r.logged_at_ns <= w.scrape_ns;
    let mut inside: Vec<SafepointRecord> = records
        .iter()
        .filter(|r| r.approx_begin_ns() >= w.armed_ns && ended_in_time(r))
        .cloned()
        .collect();
    let arming: Vec<&SafepointRecord> = records
        .iter()
        .filter(|r| {
            let b = r.approx_begin_ns();
            b >= w.agent_spawned_ns && b < w.armed_ns && ended_in_time(r)
        })
        .collect();
    let mut claimed = Vec::new();
    for (op, &count) in agent_counts {
        let logged = inside.iter().filter(|r| &r.op == op).count() as f64;
        if count == logged + 1.0
            && let Some(r) = arming.iter().rev().find(|r| &r.op == op)
        {
            claimed.push((*r).clone());
        }
    }
    inside.extend(claimed.iter().cloned());
    inside.sort_by_key(SafepointRecord::approx_begin_ns);
    (inside, claimed)
}

/// Checks the agent's safepoints of `pid` against HotSpot's log records
/// in window `w`: per VM operation the count is equal, and the summed
/// duration of all of them is within `sum_tolerance` of the log's summed
/// `Total`. Returns the table it printed its numbers in.
pub fn check_safepoints(
    c: &mut Checks,
    pid: u32,
    records: &[SafepointRecord],
    samples: &[Sample],
    w: Window,
    sum_tolerance: f64,
) -> String {
    let pid_s = pid.to_string();
    let sel = [("pid", pid_s.as_str()), ("kind", "safepoint")];
    let counts = sum_by(samples, "pausewatch_pause_seconds_count", "cause", &sel);
    let sums = sum_by(samples, "pausewatch_pause_seconds_sum", "cause", &sel);
    let (records, claimed) = comparable_safepoints(records, &counts, w);
    let mut rows: BTreeMap<&str, (usize, u64, f64, f64)> = BTreeMap::new();
    for r in &records {
        let row = rows.entry(r.op.as_str()).or_default();
        row.0 += 1;
        row.1 += r.total_ns;
    }
    for (op, &n) in &counts {
        let row = rows.entry(op.as_str()).or_default();
        row.2 = n;
        row.3 = sums.get(op).copied().unwrap_or(0.0) * 1e9;
    }
    let mut t = format!(
        "{:<28} {:>6} {:>6} {:>10} {:>10} {:>7}\n",
        "VM operation", "log", "agent", "log ms", "agent ms", "ratio"
    );
    for (op, (log_n, log_sum, agent_n, agent_sum)) in &rows {
        let _ = writeln!(
            t,
            "{op:<28} {log_n:>6} {agent_n:>6} {:>10} {:>10} {:>7.4}",
            ms(*log_sum as f64),
            ms(*agent_sum),
            ratio(*agent_sum, *log_sum as f64)
        );
        c.eq(&format!("safepoint count of {op}"), *agent_n, *log_n as f64);
    }
    for r in &claimed {
        let _ = writeln!(t, "(taken in from while the agent attached: {})", r.op);
    }
    c.check(!records.is_empty(), || {
        "HotSpot logged no safepoint in the window: the workload is broken".to_string()
    });
    let log_sum: u64 = records.iter().map(|r| r.total_ns).sum();
    let agent_sum = sum_of(samples, "pausewatch_pause_seconds_sum", &sel) * 1e9;
    c.within(
        "summed safepoint duration (ms)",
        agent_sum / 1e6,
        log_sum as f64 / 1e6,
        sum_tolerance,
    );
    let _ = writeln!(
        t,
        "{:<28} {:>6} {:>6} {:>10} {:>10} {:>7.4}",
        "all",
        records.len(),
        sum_of(samples, "pausewatch_pause_seconds_count", &sel),
        ms(log_sum as f64),
        ms(agent_sum),
        ratio(agent_sum, log_sum as f64)
    );
    t
}
