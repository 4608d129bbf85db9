//! End to end on a real JVM: the release agent traces the bundled GcHeavy
//! workload and what it exports (Prometheus histograms and the `--events`
//! stream) is compared with HotSpot's own account of the same pauses, the
//! `-Xlog:safepoint=info,gc=info` log with `timenanos` (CLOCK_MONOTONIC, the
//! clock of the BPF side).
//!
//! One test per JDK (17 and 25). They load BPF programs, so they need root
//! and fail (never skip) without it, or without the JDK or the agent binary.
//! They run one at a time (a global mutex): they share the machine's cores
//! and the timing comparisons are only meaningful without a second JVM
//! competing. See the printed table with
//! `cargo test -p xtask --test e2e_hotspot -- --nocapture`.
//!
//! # The workload
//!
//! GcHeavy with 1 allocating worker (G1 young collections every ~70 ms),
//! a fixed initiating heap occupancy of 10% so that G1 runs concurrent
//! cycles all along (Concurrent Start, Remark, Cleanup, Prepare Mixed and
//! Mixed pauses), `System.gc()` every 2.5 s (G1CollectFull), and two
//! CPU-bound spin threads running counted loops of ~0.5 ms under
//! `-XX:-UseCountedLoopSafepoints`, so C2 compiles those loops without a
//! safepoint poll and every safepoint has to wait for them: the realistic
//! 0.1-1 ms time to safepoint the agent is meant to reveal. (Without the
//! flag, loop strip mining polls every ~1000 iterations and the time to
//! safepoint is ~0.1 ms, mostly scheduling.)
//!
//! `Thread.getAllStackTraces()` (ThreadDump) runs every 5 ms, which makes
//! ~1200 safepoints per run instead of ~200. That is for the p99 check:
//! with ~200 safepoints the p99 is the 3rd-largest pause, alone in the
//! sparse tail, and the exported buckets are 1.33-1.5x apart, so
//! `histogram_quantile`'s linear interpolation alone put it up to 42% off
//! the exact value (computed from HotSpot's own log, no agent involved:
//! 10 runs, 4 beyond 20%). With ~1200, the p99 has a dozen pauses above it
//! and lands where the distribution is dense; the same offline comparison
//! stayed within 7%.
//!
//! # What must match
//!
//! Over the safepoints that began after the agent was armed and ended before
//! the scrape (see [`comparable_safepoints`] for the edge):
//! - count per VM operation (`cause` of `pausewatch_pause_seconds{kind="safepoint"}`): equal;
//! - summed duration (`_sum`) within 2% of the log's summed `Total`;
//! - summed time to safepoint within 10% of the log's Reaching (+ Cleanup on JDK 17);
//! - `histogram_quantile(0.99, sum by (le) (...))` over all safepoint series
//!   within 20% of the exact (nearest-rank) p99 of `Total`;
//! - the `--events` safepoints match the log records one to one, in order,
//!   by VM operation, each duration within [`EVENT_ABS_TOLERANCE_NS`] +
//!   [`EVENT_REL_TOLERANCE`] of its `Total`;
//! - GC pauses: every G1 stop-the-world pause fires `hotspot:gc__begin`
//!   inside its safepoint (see [`gc_class`]), so the agent's
//!   `kind="gc"` counts equal the log's pause lines, split full/minor, and
//!   per safepoint the gc events match the pause lines inside it.

mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use support::events::{Event, parse_events};
use support::hotspot::{
    EVENT_ABS_TOLERANCE_NS, EVENT_REL_TOLERANCE, Jvm, Window, comparable_safepoints,
    preempted_after_log_line,
};
use support::scenario::{Subject, observe};
use support::{
    Checks, Sample, buckets_by_le, histogram_quantile, median_max, ms, parse_prometheus, ratio,
    require_root, sum_by, sum_of,
};
use xtask::groundtruth::hotspot::{self, GcRecord, SafepointRecord, exact_quantile_ns};
use xtask::workloads::{JavaWorkload, find_java, monotonic_now_ns};

/// The BPF tests run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Length of GcHeavy's heavy phase.
const HEAVY_SECS: u64 = 7;
/// GcHeavy's timers and spin threads (see the module docs).
const STACK_TRACES_MS: u64 = 5;
const SYSTEM_GC_MS: u64 = 2500;
const SPIN_THREADS: u32 = 2;
const SPIN_LOOP_US: u64 = 500;

/// Tolerances of the comparisons (fractions of the log's value).
const SUM_TOLERANCE: f64 = 0.02;
const TTS_SUM_TOLERANCE: f64 = 0.10;
const P99_TOLERANCE: f64 = 0.20;

/// Per-event duration tolerance: |agent − Total| <=
/// [`EVENT_ABS_TOLERANCE_NS`] + [`EVENT_REL_TOLERANCE`] × Total (shared
/// with the matrix, in `support::hotspot`) for
/// at least [`EVENT_IN_TOLERANCE_MIN_FRACTION`] of the events, and
/// <= [`EVENT_GROSS_TOLERANCE_NS`] for every one.
///
/// Why not every event within ABS + REL: the agent's interval runs from the
/// `hs_private:safepoint__begin` probe, fired (via
/// `RuntimeService::record_safepoint_begin`) right after
/// `SafepointTracing::begin` takes its timestamp, to
/// `hs_private:safepoint__end`, fired by
/// `RuntimeService::record_safepoint_end`, which `SafepointTracing::end`
/// calls only *after* it has formatted and written the `-Xlog:safepoint`
/// line. So with the safepoint log on (as here), every agent duration also
/// contains the writing of that line: typically 3-40 µs, plus the
/// difference of the two uprobes' entry latencies (2-10 µs each). By then
/// the Java threads are running again, so on a 2-core machine with busy
/// spin threads the VM thread is sometimes preempted between its end
/// timestamp and the probe, adding 0.1-16 ms to one event (measured: 0-8
/// such events of ~1200 per run on an otherwise idle machine, up to 4.5%
/// of them with other BPF tests running alongside; in nearly every one the
/// excess lay after the log line's own `timenanos` stamp). The per-event check therefore bounds the typical error tightly
/// and the rare preempted one loosely. A third check tests the
/// mechanism itself: every event must end after HotSpot stamped its log
/// line (same clock on both sides, so no tolerance).
const EVENT_IN_TOLERANCE_MIN_FRACTION: f64 = 0.95;
const EVENT_GROSS_TOLERANCE_NS: u64 = 50_000_000;
/// The median |agent − Total| must stay small: the offsets above are a few
/// µs to a few tens of µs for nearly every safepoint (medians measured:
/// 25.7 µs in a CI run, 36.1 µs with two other builds running; the line
/// write and the probes' latencies grow with the machine's load).
const EVENT_MEDIAN_TOLERANCE_NS: u64 = 50_000;
/// Pairing sanity (the pairing itself is by order and operation), which
/// also checks that both sides read CLOCK_MONOTONIC: on the VM thread,
/// which runs every safepoint, the previous safepoint's log line is stamped
/// before this safepoint's begin timestamp, which comes before its begin
/// probe, which comes before this safepoint's own log line is stamped. So
/// an event's `start_ns` must lie in (previous line's `timenanos`, own
/// line's `timenanos`], exactly, with no tolerance. (`logged_at − Total`
/// is no good as a bound: the begin probe was measured up to 2.7 ms after
/// HotSpot's begin timestamp when the VM thread was preempted between the
/// two, and the line's stamp up to 3.5 ms after the end timestamp.)
fn starts_inside(e: &Event, r: &SafepointRecord, previous: Option<&SafepointRecord>) -> bool {
    previous.is_none_or(|p| e.start_ns > p.logged_at_ns) && e.start_ns <= r.logged_at_ns
}

#[test]
fn e2e_hotspot_jdk17() {
    run_e2e(17);
}

#[test]
fn e2e_hotspot_jdk25() {
    run_e2e(25);
}

fn run_e2e(major: u32) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root(&format!("e2e_hotspot_jdk{major}"));
    let java = find_java(major)
        .unwrap_or_else(|e| panic!("the JDK {major} end-to-end test needs JDK {major}: {e:#}"));
    let log_path = std::env::temp_dir().join(format!(
        "pausewatch-e2e-jdk{major}-{}-{}.log",
        std::process::id(),
        monotonic_now_ns()
    ));

    // 1. The workload, held at its gate.
    let mut jvm = JavaWorkload::new(&java)
        .duration_secs(HEAVY_SECS)
        .gate(true)
        .stack_traces_every_ms(STACK_TRACES_MS)
        .system_gc_every_ms(SYSTEM_GC_MS)
        .spin_threads(SPIN_THREADS)
        .spin_loop_us(SPIN_LOOP_US)
        .jvm_arg("-XX:-UseCountedLoopSafepoints")
        .jvm_arg("-XX:-G1UseAdaptiveIHOP")
        .jvm_arg("-XX:InitiatingHeapOccupancyPercent=10")
        .log_path(&log_path)
        .spawn()
        .unwrap_or_else(|e| panic!("starting GcHeavy on JDK {major}: {e:#}"));
    jvm.wait_ready(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let mut jvm = Jvm {
        label: format!("JDK {major}"),
        jvm,
        log: log_path.clone(),
        armed: format!("hotspot {major}."),
        started_within: Some(Duration::from_secs(10)),
        done_within: Duration::from_secs(HEAVY_SECS + 30),
    };
    let pid = jvm.pid();

    // 2.-5. The agent, the heavy phase, the scrape after two fresh
    // snapshots, SIGINT: a clean exit and flushed events.
    let o = observe(
        &mut jvm,
        &["--events", "--summary", "0"],
        Duration::from_secs(5),
    );
    eprintln!("JDK {major}: {}", o.armed);
    let stderr = &o.stderr;
    assert!(
        o.status.is_some_and(|s| s.success()),
        "the agent did not exit 0 within 5 s of SIGINT (status {:?}); stderr:\n{stderr}",
        o.status
    );
    let events = parse_events(&o.events);

    // 6. Compare.
    let log = hotspot::read_log(&log_path).unwrap_or_else(|e| panic!("{e:#}"));
    for line in stderr.lines() {
        let l = line.to_ascii_lowercase();
        assert!(
            !(l.contains("error") || l.contains("warn") || l.contains("panic")),
            "the agent complained on stderr: {line}\nfull stderr:\n{stderr}"
        );
    }
    let report = compare(major, pid, &log, &o.samples, &events, o.window);
    eprintln!("{}", report.table);
    // On failure (or with PAUSEWATCH_E2E_KEEP set) the log is kept (see
    // `Jvm`), and the events beside it for a closer look, with the window.
    let events_path = log_path.with_extension("events.jsonl");
    let keep = report.checks.failed() || std::env::var_os("PAUSEWATCH_E2E_KEEP").is_some();
    if keep {
        let w = o.window;
        let mut dump = format!(
            "{{\"agent_spawned_ns\":{},\"armed_ns\":{},\"scrape_ns\":{}}}\n",
            w.agent_spawned_ns, w.armed_ns, w.scrape_ns
        );
        for l in &o.events {
            dump.push_str(l);
            dump.push('\n');
        }
        let _ = std::fs::write(&events_path, dump);
        eprintln!("kept {} and {}", log_path.display(), events_path.display());
    }
    let context = format!(
        "{}\nHotSpot log kept at {}, agent events at {}\nagent stderr:\n{stderr}",
        report.table,
        log_path.display(),
        events_path.display()
    );
    report.checks.finish(&context);
}

struct Report {
    checks: Checks,
    table: String,
}

/// How the agent labels a G1 pause line: `Some("full")` / `Some("minor")`
/// for the pauses that fire `hotspot:gc__begin` inside their safepoint,
/// `None` for lines it cannot see as a gc pause.
///
/// From the JDK sources (17 and 25): `hotspot:gc__begin(full)` is fired by
/// `SvcGCMarker`'s constructor (`VM_GC_Operation::notify_gc_begin(reason ==
/// FULL)`). G1 creates one in every stop-the-world pause:
/// - young collections, all flavours (Normal, Concurrent Start, Prepare
///   Mixed, Mixed): `SvcGCMarker(MINOR)` in
///   `G1CollectedHeap::do_collection_pause_at_safepoint` → full = 0;
/// - full collections (`System.gc()`, or a failed evacuation):
///   `SvcGCMarker(FULL)` in `G1CollectedHeap::do_full_collection` → full = 1;
/// - Remark and Cleanup: `SvcGCMarker(CONCURRENT)` in
///   `VM_G1Concurrent::doit` (17) / `VM_G1PauseConcurrent::doit` (25),
///   which run as VM operations at a safepoint → full = 0, so the agent
///   counts them as `kind="gc", cause="minor"` pauses. The probe's only
///   argument is the `full` flag, so the agent cannot tell a Remark from a
///   young collection. (The test measured this: without counting Remark
///   and Cleanup as minor, the counts differ by exactly their number.)
///
/// Concurrent work (the marking cycle itself) fires no `gc__begin`.
fn gc_class(g: &GcRecord) -> Option<&'static str> {
    let kind = g.kind();
    if kind == "Pause Full" {
        Some("full")
    } else if kind.starts_with("Pause Young") || kind == "Pause Remark" || kind == "Pause Cleanup" {
        Some("minor")
    } else {
        None
    }
}

/// The safepoint record whose safepoint contains `g`, by index. The VM
/// thread logs a GC pause inside its safepoint and the safepoint's own line
/// after the safepoint ends, so it is the first safepoint logged after `g`.
/// (Not `approx_begin_ns() <= g.logged_at_ns`: if the VM thread is preempted
/// between the end of a short safepoint and its log call, the estimated
/// begin lands after a 30 µs Cleanup pause's line.)
fn enclosing_safepoint(records: &[SafepointRecord], g: &GcRecord) -> Option<usize> {
    let i = records.partition_point(|r| r.logged_at_ns < g.logged_at_ns);
    (i < records.len()).then_some(i)
}

#[derive(Default)]
struct OpRow {
    log_n: usize,
    agent_n: f64,
    log_sum_ns: u64,
    agent_sum_ns: f64,
    log_tts_ns: u64,
    agent_tts_ns: f64,
    log_p99_ns: u64,
    agent_p99_ns: f64,
}

/// What [`compare`]'s parts read: both sides, cut to the same interval.
struct Inputs<'a> {
    major: u32,
    pid: u32,
    log: &'a hotspot::HotspotLog,
    samples: &'a [Sample],
    events: &'a [Event],
    w: Window,
    pid_s: String,
    /// The log's safepoints the agent's numbers must equal.
    records: Vec<SafepointRecord>,
    /// Those of them taken in from while the agent attached.
    claimed: Vec<SafepointRecord>,
}

impl Inputs<'_> {
    /// `{pid="<pid>"}`.
    fn this(&self) -> [(&str, &str); 1] {
        [("pid", self.pid_s.as_str())]
    }

    /// `{pid="<pid>", kind="<kind>"}`.
    fn sel(&self, kind: &'static str) -> [(&str, &str); 2] {
        [("pid", self.pid_s.as_str()), ("kind", kind)]
    }

    /// The agent's gc pause count per cause.
    fn agent_gc(&self) -> BTreeMap<String, f64> {
        let gc = self.sel("gc");
        sum_by(self.samples, "pausewatch_pause_seconds_count", "cause", &gc)
    }
}

/// Every check of the agent's numbers against HotSpot's, one metric family
/// at a time, and the table of both.
fn compare(
    major: u32,
    pid: u32,
    log: &hotspot::HotspotLog,
    samples: &[Sample],
    events: &[Event],
    w: Window,
) -> Report {
    let pid_s = pid.to_string();
    let sp_sel = [("pid", pid_s.as_str()), ("kind", "safepoint")];
    let agent_counts = sum_by(samples, "pausewatch_pause_seconds_count", "cause", &sp_sel);
    let (records, claimed) = comparable_safepoints(&log.safepoints, &agent_counts, w);
    let x = Inputs {
        major,
        pid,
        log,
        samples,
        events,
        w,
        pid_s,
        records,
        claimed,
    };
    let mut c = scrape_checks(&x);
    let rows = op_rows(&x);
    c.merge(count_checks(&x, &rows));
    let (checks, sums) = sum_checks(&x);
    c.merge(checks);
    c.merge(max_checks(&x));
    let (checks, stream) = event_checks(&x);
    c.merge(checks);
    let (checks, gc) = gc_checks(&x, &stream);
    c.merge(checks);
    Report {
        checks: c,
        table: table(&x, &rows, &sums, &stream, &gc),
    }
}

/// Sanity of the scrape itself: one target of the right runtime and
/// version, nothing lost.
fn scrape_checks(x: &Inputs) -> Checks {
    let mut c = Checks::new();
    let (major, pid, samples) = (x.major, x.pid, x.samples);
    let this = x.this();
    let info = support::select(samples, "pausewatch_target_info", &this);
    c.check(
        info.len() == 1
            && info[0].label("runtime") == "hotspot"
            && info[0]
                .label("runtime_version")
                .starts_with(&format!("{major}")),
        || format!("pausewatch_target_info for pid {pid} on JDK {major}: {info:?}"),
    );
    let lost = sum_of(samples, "pausewatch_lost_events_total", &[]);
    c.check(lost == 0.0, || {
        format!(
            "pausewatch_lost_events_total: {:?}",
            sum_by(samples, "pausewatch_lost_events_total", "reason", &[])
        )
    });
    c
}

/// Per VM operation, both sides' count, sum, time to safepoint and p99.
fn op_rows(x: &Inputs) -> BTreeMap<String, OpRow> {
    let (samples, records) = (x.samples, &x.records);
    let this = x.this();
    let sp_sel = x.sel("safepoint");
    let agent_counts = sum_by(samples, "pausewatch_pause_seconds_count", "cause", &sp_sel);
    let agent_sums = sum_by(samples, "pausewatch_pause_seconds_sum", "cause", &sp_sel);
    let agent_tts = sum_by(
        samples,
        "pausewatch_time_to_safepoint_seconds_sum",
        "cause",
        &this,
    );
    let mut rows: BTreeMap<String, OpRow> = BTreeMap::new();
    for r in records {
        let row = rows.entry(r.op.clone()).or_default();
        row.log_n += 1;
        row.log_sum_ns += r.total_ns;
        row.log_tts_ns += r.time_to_safepoint_ns();
    }
    for (op, row) in rows.iter_mut() {
        let totals: Vec<u64> = records
            .iter()
            .filter(|r| &r.op == op)
            .map(|r| r.total_ns)
            .collect();
        row.log_p99_ns = exact_quantile_ns(&totals, 0.99);
    }
    for (op, &n) in &agent_counts {
        let row = rows.entry(op.clone()).or_default();
        row.agent_n = n;
        row.agent_sum_ns = agent_sums.get(op).copied().unwrap_or(0.0) * 1e9;
        row.agent_tts_ns = agent_tts.get(op).copied().unwrap_or(0.0) * 1e9;
        let buckets = buckets_by_le(
            samples,
            "pausewatch_pause_seconds",
            &[
                ("pid", x.pid_s.as_str()),
                ("kind", "safepoint"),
                ("cause", op.as_str()),
            ],
        );
        row.agent_p99_ns = histogram_quantile(0.99, &buckets) * 1e9;
    }
    rows
}

/// Safepoint counts: the workload did its job, each VM operation's count
/// is the log's, `unknown` only at the front edge, and the total.
fn count_checks(x: &Inputs, rows: &BTreeMap<String, OpRow>) -> Checks {
    let mut c = Checks::new();
    let w = x.w;
    // The workload must have done what it is for, or the test proves little.
    let need = [
        ("G1CollectForAllocation", 30),
        ("ThreadDump", 30),
        ("G1CollectFull", 1),
    ];
    for (op, min) in need {
        let n = rows.get(op).map_or(0, |r| r.log_n);
        c.check(n >= min, || {
            format!("the workload logged only {n} {op} safepoints in the window (want >= {min})")
        });
    }
    for (op, row) in rows {
        if op == "unknown" {
            continue;
        }
        c.eq(
            &format!("safepoint count of {op}"),
            row.agent_n,
            row.log_n as f64,
        );
    }
    // A safepoint whose VM operation began before the vmops probes were
    // attached has no cause ("unknown"); only possible at the front edge.
    let agent_unknown = rows.get("unknown").map_or(0.0, |r| r.agent_n);
    let arming_records = x
        .log
        .safepoints
        .iter()
        .filter(|r| {
            let b = r.approx_begin_ns();
            b >= w.agent_spawned_ns && b < w.armed_ns
        })
        .count();
    c.check(agent_unknown <= (arming_records.min(1) as f64), || {
        format!(
            "{agent_unknown} safepoints with cause=\"unknown\", but only {arming_records} \
                 safepoints began while the agent was attaching"
        )
    });
    let sp_sel = x.sel("safepoint");
    let agent_n = sum_of(x.samples, "pausewatch_pause_seconds_count", &sp_sel);
    c.eq(
        "safepoint count (all operations)",
        agent_n,
        x.records.len() as f64,
    );
    c
}

/// Both sides over all safepoints, for the sums' checks and the table.
struct Sums {
    log_n: usize,
    agent_n: f64,
    log_sum: u64,
    agent_sum: f64,
    log_tts: u64,
    agent_tts_sum: f64,
    log_p99: u64,
    agent_p99: f64,
}

/// Summed duration (less the preempted events' time after their log line),
/// summed time to safepoint and p99, over all safepoints.
fn sum_checks(x: &Inputs) -> (Checks, Sums) {
    let mut c = Checks::new();
    let (samples, records) = (x.samples, &x.records);
    let this = x.this();
    let sp_sel = x.sel("safepoint");
    let totals: Vec<u64> = records.iter().map(|r| r.total_ns).collect();
    let all_buckets = buckets_by_le(samples, "pausewatch_pause_seconds", &sp_sel);
    let s = Sums {
        log_n: records.len(),
        agent_n: sum_of(samples, "pausewatch_pause_seconds_count", &sp_sel),
        log_sum: records.iter().map(|r| r.total_ns).sum(),
        agent_sum: sum_of(samples, "pausewatch_pause_seconds_sum", &sp_sel) * 1e9,
        log_tts: records.iter().map(|r| r.time_to_safepoint_ns()).sum(),
        agent_tts_sum: sum_of(samples, "pausewatch_time_to_safepoint_seconds_sum", &this) * 1e9,
        log_p99: exact_quantile_ns(&totals, 0.99),
        agent_p99: histogram_quantile(0.99, &all_buckets) * 1e9,
    };
    // The few events the VM thread was preempted in after stamping its log
    // line (see EVENT_ABS_TOLERANCE_NS) are bounded one by one in
    // `event_checks`; the sum holds the rest to SUM_TOLERANCE, so one 7 ms
    // preemption on a loaded CI machine cannot decide it.
    let (preempted, preempted_ns) = preempted_after_log_line(x.events, records);
    c.within(
        &format!(
            "summed safepoint duration (ms), less {:.3} ms after the log line's stamp in {preempted} preempted events",
            preempted_ns as f64 / 1e6
        ),
        (s.agent_sum - preempted_ns as f64) / 1e6,
        s.log_sum as f64 / 1e6,
        SUM_TOLERANCE,
    );
    c.within(
        "summed time to safepoint (ms)",
        s.agent_tts_sum / 1e6,
        s.log_tts as f64 / 1e6,
        TTS_SUM_TOLERANCE,
    );
    c.within(
        "p99 safepoint duration (ms), histogram_quantile vs exact",
        s.agent_p99 / 1e6,
        s.log_p99 as f64 / 1e6,
        P99_TOLERANCE,
    );
    (c, s)
}

/// The agent's exact per-series maximum is the longest event of it.
fn max_checks(x: &Inputs) -> Checks {
    let mut c = Checks::new();
    let (sp_sel, gc_sel) = (x.sel("safepoint"), x.sel("gc"));
    for (kind, sel) in [("safepoint", &sp_sel), ("gc", &gc_sel)] {
        for s in support::select(x.samples, "pausewatch_pause_max_seconds", sel) {
            let cause = s.label("cause");
            let got = (s.value * 1e9).round() as u64;
            let want = x
                .events
                .iter()
                .filter(|e| e.kind == kind && e.cause == cause)
                .map(|e| e.duration_ns)
                .max()
                .unwrap_or(0);
            c.eq(
                &format!("pausewatch_pause_max_seconds{{kind={kind},cause={cause}}} (ns) vs longest event"),
                got,
                want,
            );
        }
    }
    c
}

/// The events stream as [`event_checks`] read it, for the gc checks and
/// the table.
struct Stream<'a> {
    /// Safepoint events by start.
    sp_events: Vec<&'a Event>,
    gc_events: Vec<&'a Event>,
    /// The safepoint events with a cause, paired with the records in order.
    matched_events: Vec<&'a Event>,
    /// Per matched pair: agent − log duration, TTS and start.
    dur_diffs: Vec<i64>,
    tts_diffs: Vec<i64>,
    start_diffs: Vec<i64>,
    out_of_tolerance: Vec<String>,
    in_tolerance: f64,
}

/// The `--events` stream: right pid, runtime and kinds, as many events as
/// the histograms count, the VM thread only, and the safepoint events one
/// to one with the log's records, in order, each duration within the
/// per-event tolerances and ending after its log line's stamp.
fn event_checks<'a>(x: &Inputs<'a>) -> (Checks, Stream<'a>) {
    let mut c = Checks::new();
    let (pid, events, log, records) = (x.pid, x.events, x.log, &x.records);
    let sp_sel = x.sel("safepoint");
    let agent_n = sum_of(x.samples, "pausewatch_pause_seconds_count", &sp_sel);
    let agent_gc = x.agent_gc();
    let sp_events: Vec<&Event> = {
        let mut v: Vec<&Event> = events.iter().filter(|e| e.kind == "safepoint").collect();
        v.sort_by_key(|e| e.start_ns);
        v
    };
    let gc_events: Vec<&Event> = events.iter().filter(|e| e.kind == "gc").collect();
    c.check(
        events
            .iter()
            .all(|e| e.pid == pid && e.runtime == "hotspot"),
        || format!("events from another pid or runtime than {pid}/hotspot"),
    );
    c.check(
        events
            .iter()
            .all(|e| e.kind == "safepoint" || e.kind == "gc"),
        || "events of an unexpected kind".to_string(),
    );
    c.eq(
        "safepoint events vs safepoint _count",
        sp_events.len() as f64,
        agent_n,
    );
    c.eq(
        "gc events vs gc _count",
        gc_events.len() as f64,
        agent_gc.values().sum::<f64>(),
    );
    let vm_tids: BTreeMap<u32, usize> = sp_events.iter().fold(BTreeMap::new(), |mut m, e| {
        *m.entry(e.tid).or_default() += 1;
        m
    });
    c.check(vm_tids.len() == 1, || {
        format!("safepoint events from several threads (tid: count) {vm_tids:?}; expected the VM thread only")
    });

    // One to one, in order.
    let matched_events: Vec<&Event> = sp_events
        .iter()
        .copied()
        .filter(|e| e.cause != "unknown")
        .collect();
    c.eq(
        "safepoint events vs log records (count)",
        matched_events.len(),
        records.len(),
    );
    let mut dur_diffs: Vec<i64> = Vec::new();
    let mut tts_diffs: Vec<i64> = Vec::new();
    let mut start_diffs: Vec<i64> = Vec::new();
    let mut mismatches = Vec::new();
    let mut out_of_tolerance = Vec::new();
    let mut gross = Vec::new();
    let mut ended_before_log_line = Vec::new();
    for (i, (e, r)) in matched_events.iter().zip(records).enumerate() {
        let start_diff = e.start_ns as i64 - r.approx_begin_ns() as i64;
        let previous = log
            .safepoints
            .iter()
            .position(|x| x == r)
            .and_then(|k| k.checked_sub(1))
            .map(|k| &log.safepoints[k]);
        if e.cause != r.op || !starts_inside(e, r, previous) {
            mismatches.push(format!(
                "#{i}: event {} starting at {} vs record {} logged at {} (previous line at {:?}; {:+} µs from logged−Total)",
                e.cause,
                e.start_ns,
                r.op,
                r.logged_at_ns,
                previous.map(|p| p.logged_at_ns),
                start_diff / 1000
            ));
            continue;
        }
        let d = e.duration_ns as i64 - r.total_ns as i64;
        dur_diffs.push(d);
        start_diffs.push(start_diff);
        if let Some(tts) = e.time_to_safepoint_ns {
            tts_diffs.push(tts as i64 - r.time_to_safepoint_ns() as i64);
        }
        let allowed = EVENT_ABS_TOLERANCE_NS as f64 + EVENT_REL_TOLERANCE * r.total_ns as f64;
        let describe = || {
            format!(
                "#{i} {}: agent {} ns, log Total {} ns ({:+} µs; agent start {:+} µs from logged−Total, \
                 agent end {:+} µs after the log line's stamp)",
                r.op,
                e.duration_ns,
                r.total_ns,
                d / 1000,
                start_diff / 1000,
                (e.end_ns() as i64 - r.logged_at_ns as i64) / 1000
            )
        };
        if d.unsigned_abs() as f64 > allowed {
            out_of_tolerance.push(describe());
        }
        if d.unsigned_abs() > EVENT_GROSS_TOLERANCE_NS {
            gross.push(describe());
        }
        if e.end_ns() < r.logged_at_ns {
            ended_before_log_line.push(describe());
        }
    }
    c.check(mismatches.is_empty(), || {
        format!(
            "{} safepoint events do not match their log record (operation or start time), first: {:?}",
            mismatches.len(),
            &mismatches[..mismatches.len().min(5)]
        )
    });
    let matched = dur_diffs.len().max(1) as f64;
    let in_tolerance = 1.0 - out_of_tolerance.len() as f64 / matched;
    c.check(in_tolerance >= EVENT_IN_TOLERANCE_MIN_FRACTION, || {
        format!(
            "only {:.1}% of safepoint event durations within {} µs + {}% of Total (want >= {}%); outside: {:?}",
            in_tolerance * 100.0,
            EVENT_ABS_TOLERANCE_NS / 1000,
            EVENT_REL_TOLERANCE * 100.0,
            EVENT_IN_TOLERANCE_MIN_FRACTION * 100.0,
            out_of_tolerance
        )
    });
    c.check(gross.is_empty(), || {
        format!(
            "{} safepoint event durations off by more than {} ms: {gross:?}",
            gross.len(),
            EVENT_GROSS_TOLERANCE_NS / 1_000_000
        )
    });
    c.check(ended_before_log_line.is_empty(), || {
        format!(
            "{} safepoint events ended before HotSpot stamped their log line (the end probe fires after it): {:?}",
            ended_before_log_line.len(),
            &ended_before_log_line[..ended_before_log_line.len().min(5)]
        )
    });
    let (dur_med, _) = median_max(&abs(&dur_diffs));
    c.check(dur_med <= EVENT_MEDIAN_TOLERANCE_NS, || {
        format!(
            "median |event duration − Total| is {dur_med} ns (allowed {EVENT_MEDIAN_TOLERANCE_NS})"
        )
    });
    let stream = Stream {
        sp_events,
        gc_events,
        matched_events,
        dur_diffs,
        tts_diffs,
        start_diffs,
        out_of_tolerance,
        in_tolerance,
    };
    (c, stream)
}

/// |v| of each.
fn abs(v: &[i64]) -> Vec<u64> {
    v.iter().map(|d| d.unsigned_abs()).collect()
}

/// The log's gc pauses in the window, per class and log kind, for the
/// table.
struct GcTally<'a> {
    /// The pause lines inside a compared safepoint, with its index.
    gc_in: Vec<(&'a GcRecord, usize)>,
    log_gc: BTreeMap<&'static str, usize>,
    log_gc_sum: BTreeMap<&'static str, u64>,
    by_kind: BTreeMap<String, usize>,
}

/// GC pauses: the agent's `kind="gc"` counts equal the log's pause lines
/// (full and minor), a `Pause Full` ran, and per safepoint the gc events
/// inside it are the pause lines inside its record.
fn gc_checks<'a>(x: &Inputs<'a>, stream: &Stream) -> (Checks, GcTally<'a>) {
    let mut c = Checks::new();
    let (log, records) = (x.log, &x.records);
    let agent_gc = x.agent_gc();
    let gc_in: Vec<(&GcRecord, usize)> = log
        .gcs
        .iter()
        .filter_map(|g| {
            let i = enclosing_safepoint(&log.safepoints, g)?;
            let r = &log.safepoints[i];
            records.contains(r).then_some((g, i))
        })
        .collect();
    let mut log_gc: BTreeMap<&str, usize> = BTreeMap::new();
    let mut log_gc_sum: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for (g, _) in &gc_in {
        *by_kind.entry(g.kind().to_string()).or_default() += 1;
        if let Some(class) = gc_class(g) {
            *log_gc.entry(class).or_default() += 1;
            *log_gc_sum.entry(class).or_default() += g.pause_ns;
        }
    }
    for class in ["full", "minor"] {
        c.eq(
            &format!("gc pause count cause={class}"),
            agent_gc.get(class).copied().unwrap_or(0.0),
            log_gc.get(class).copied().unwrap_or(0) as f64,
        );
    }
    c.check(agent_gc.keys().all(|k| k == "full" || k == "minor"), || {
        format!("gc pause causes other than full/minor: {agent_gc:?}")
    });
    c.check(by_kind.contains_key("Pause Full"), || {
        "no Pause Full in the window: System.gc() did not run?".to_string()
    });
    // Per safepoint: the gc events inside each matched safepoint event are
    // the pause lines inside its record, in order.
    let mut gc_mismatch = Vec::new();
    for (e, r) in stream.matched_events.iter().zip(records) {
        if e.cause != r.op {
            continue;
        }
        let mut got: Vec<&str> = stream
            .gc_events
            .iter()
            .filter(|g| g.tid == e.tid && g.start_ns >= e.start_ns && g.end_ns() <= e.end_ns())
            .map(|g| g.cause.as_str())
            .collect();
        got.sort_unstable();
        let idx = log.safepoints.iter().position(|x| x == r);
        let mut want: Vec<&str> = gc_in
            .iter()
            .filter(|(_, i)| Some(*i) == idx)
            .filter_map(|(g, _)| gc_class(g))
            .collect();
        want.sort_unstable();
        if got != want {
            gc_mismatch.push(format!(
                "{} at {}: agent gc events {got:?}, log pauses {want:?}",
                r.op,
                r.approx_begin_ns()
            ));
        }
    }
    c.check(gc_mismatch.is_empty(), || {
        format!(
            "{} safepoints whose gc events differ from the log's pause lines, first: {:?}",
            gc_mismatch.len(),
            &gc_mismatch[..gc_mismatch.len().min(5)]
        )
    });
    let tally = GcTally {
        gc_in,
        log_gc,
        log_gc_sum,
        by_kind,
    };
    (c, tally)
}

/// The comparison table printed with the results.
fn table(
    x: &Inputs,
    rows: &BTreeMap<String, OpRow>,
    s: &Sums,
    stream: &Stream,
    gc: &GcTally,
) -> String {
    let mut t = String::new();
    let (major, pid, w, records) = (x.major, x.pid, x.w, &x.records);
    let gc_sel = x.sel("gc");
    let agent_gc = x.agent_gc();
    let agent_gc_sum = sum_by(x.samples, "pausewatch_pause_seconds_sum", "cause", &gc_sel);
    let _ = writeln!(
        t,
        "\n=== pausewatch vs -Xlog, JDK {major}, pid {pid}: {} safepoints, {} gc pauses in the window ({:.1} s) ===",
        records.len(),
        gc.gc_in.len(),
        (w.scrape_ns - w.armed_ns) as f64 / 1e9
    );
    let _ = writeln!(
        t,
        "{:<24} {:>11} {:>21} {:>7} {:>19} {:>7} {:>17}",
        "VM operation",
        "count l/a",
        "sum ms log/agent",
        "ratio",
        "TTS ms log/agent",
        "ratio",
        "p99 ms log/agent"
    );
    let mut line =
        |name: &str, ln: usize, an: f64, ls: f64, as_: f64, lt: f64, at: f64, lp: f64, ap: f64| {
            let _ = writeln!(
                t,
                "{:<24} {:>5}/{:<5} {:>10}/{:<10} {:>7.4} {:>9}/{:<9} {:>7.4} {:>8}/{:<8}",
                name,
                ln,
                an,
                ms(ls),
                ms(as_),
                ratio(as_, ls),
                ms(lt),
                ms(at),
                ratio(at, lt),
                ms(lp),
                ms(ap),
            );
        };
    for (op, r) in rows {
        line(
            op,
            r.log_n,
            r.agent_n,
            r.log_sum_ns as f64,
            r.agent_sum_ns,
            r.log_tts_ns as f64,
            r.agent_tts_ns,
            r.log_p99_ns as f64,
            r.agent_p99_ns,
        );
    }
    line(
        "ALL",
        s.log_n,
        s.agent_n,
        s.log_sum as f64,
        s.agent_sum,
        s.log_tts as f64,
        s.agent_tts_sum,
        s.log_p99 as f64,
        s.agent_p99,
    );
    let _ = writeln!(
        t,
        "(p99: log = exact nearest rank; agent = histogram_quantile(0.99) of the exported buckets; ALL sums the buckets by le)"
    );
    if !x.claimed.is_empty() {
        let _ = writeln!(
            t,
            "in flight at attach, counted by the agent: {:?}",
            x.claimed.iter().map(|r| &r.op).collect::<Vec<_>>()
        );
    }
    let agent_unknown = rows.get("unknown").map_or(0.0, |r| r.agent_n);
    if agent_unknown > 0.0 {
        let _ = writeln!(t, "safepoints with cause=\"unknown\": {agent_unknown}");
    }
    let (dur_med, dur_max) = median_max(&abs(&stream.dur_diffs));
    let (tts_med, tts_max) = median_max(&abs(&stream.tts_diffs));
    let (start_med, start_max) = median_max(&abs(&stream.start_diffs));
    let signed_median = |v: &[i64]| {
        let mut v = v.to_vec();
        v.sort_unstable();
        v.get(v.len().saturating_sub(1) / 2).copied().unwrap_or(0)
    };
    let _ = writeln!(
        t,
        "events: {} safepoint, {} gc; |duration − Total| median {:.1} µs, max {:.1} µs (signed median {:+.1} µs); \
         |TTS − log TTS| median {:.1} µs, max {:.1} µs (signed median {:+.1} µs); |start − (logged − Total)| median {:.1} µs, max {:.1} µs",
        stream.sp_events.len(),
        stream.gc_events.len(),
        dur_med as f64 / 1e3,
        dur_max as f64 / 1e3,
        signed_median(&stream.dur_diffs) as f64 / 1e3,
        tts_med as f64 / 1e3,
        tts_max as f64 / 1e3,
        signed_median(&stream.tts_diffs) as f64 / 1e3,
        start_med as f64 / 1e3,
        start_max as f64 / 1e3,
    );
    let p95 = {
        let mut v = abs(&stream.dur_diffs);
        v.sort_unstable();
        v.get((v.len() * 95 / 100).min(v.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let _ = writeln!(
        t,
        "event durations: p95 |duration − Total| {:.1} µs; {} of {} outside {} µs + {}% ({:.1}% within)",
        p95 as f64 / 1e3,
        stream.out_of_tolerance.len(),
        stream.dur_diffs.len(),
        EVENT_ABS_TOLERANCE_NS / 1000,
        EVENT_REL_TOLERANCE * 100.0,
        stream.in_tolerance * 100.0
    );
    for o in &stream.out_of_tolerance {
        let _ = writeln!(t, "  {o}");
    }
    let tts_mean = if s.log_n > 0 {
        s.log_tts as f64 / s.log_n as f64
    } else {
        0.0
    };
    let log_tts: Vec<u64> = records.iter().map(|r| r.time_to_safepoint_ns()).collect();
    let _ = writeln!(
        t,
        "time to safepoint: log mean {:.1} µs, p50 {:.1} µs, p99 {:.1} µs",
        tts_mean / 1e3,
        exact_quantile_ns(&log_tts, 0.5) as f64 / 1e3,
        exact_quantile_ns(&log_tts, 0.99) as f64 / 1e3,
    );
    let (log_gc, log_gc_sum) = (&gc.log_gc, &gc.log_gc_sum);
    let _ = writeln!(
        t,
        "gc pauses (log kinds in the window): {:?}\n\
         gc count log/agent: full {}/{} minor {}/{}; gc sum ms log/agent: full {}/{} minor {}/{}",
        gc.by_kind,
        log_gc.get("full").copied().unwrap_or(0),
        agent_gc.get("full").copied().unwrap_or(0.0),
        log_gc.get("minor").copied().unwrap_or(0),
        agent_gc.get("minor").copied().unwrap_or(0.0),
        ms(log_gc_sum.get("full").copied().unwrap_or(0) as f64),
        ms(agent_gc_sum.get("full").copied().unwrap_or(0.0) * 1e9),
        ms(log_gc_sum.get("minor").copied().unwrap_or(0) as f64),
        ms(agent_gc_sum.get("minor").copied().unwrap_or(0.0) * 1e9),
    );
    t
}

// Unit tests of the helpers (no root needed).

#[test]
fn histogram_quantile_matches_prometheus() {
    let inf = f64::INFINITY;
    let b = [(0.1, 10.0), (0.2, 20.0), (inf, 20.0)];
    assert_eq!(histogram_quantile(0.5, &b), 0.1);
    assert!((histogram_quantile(0.75, &b) - 0.15).abs() < 1e-12);
    assert_eq!(histogram_quantile(1.0, &b), 0.2);
    assert!((histogram_quantile(0.25, &b) - 0.05).abs() < 1e-12);
    // Rank in the +Inf bucket: the highest finite bound.
    assert_eq!(histogram_quantile(0.9, &[(0.1, 10.0), (inf, 20.0)]), 0.1);
    // Unsorted input and duplicate bounds are fine.
    let b = [(inf, 20.0), (0.2, 12.0), (0.1, 5.0), (0.1, 5.0), (0.2, 8.0)];
    assert!((histogram_quantile(0.75, &b) - 0.15).abs() < 1e-12);
    // Decreasing counts are forced monotonic.
    let b = [(0.1, 10.0), (0.2, 8.0), (inf, 10.0)];
    assert!((histogram_quantile(0.5, &b) - 0.05).abs() < 1e-12);
    // NaN: no +Inf bucket, no observations, a single bucket.
    assert!(histogram_quantile(0.5, &[(0.1, 1.0)]).is_nan());
    assert!(histogram_quantile(0.5, &[(0.1, 0.0), (inf, 0.0)]).is_nan());
    assert!(histogram_quantile(0.5, &[(inf, 3.0)]).is_nan());
    assert_eq!(histogram_quantile(-1.0, &b), f64::NEG_INFINITY);
    assert_eq!(histogram_quantile(2.0, &b), inf);
    // A lowest bound <= 0 is returned as is.
    assert_eq!(
        histogram_quantile(0.1, &[(0.0, 5.0), (1.0, 10.0), (inf, 10.0)]),
        0.0
    );
}

#[test]
fn prometheus_text_parsing() {
    let text = "# HELP x y\n# TYPE x histogram\n\
        x_bucket{pid=\"1\",cause=\"a \\\"q\\\" \\\\ b\\nc\",le=\"0.5\"} 3\n\
        x_bucket{pid=\"1\",cause=\"a \\\"q\\\" \\\\ b\\nc\",le=\"+Inf\"} 4\n\
        x_bucket{pid=\"1\",cause=\"d\",le=\"0.5\"} 1\n\
        x_bucket{pid=\"1\",cause=\"d\",le=\"+Inf\"} 1\n\
        x_sum{pid=\"1\",cause=\"d\"} 0.25\n\
        plain 7 1700000000\n";
    let s = parse_prometheus(text);
    assert_eq!(s.len(), 6);
    assert_eq!(s[0].label("cause"), "a \"q\" \\ b\nc");
    assert_eq!(s[1].value, 4.0);
    assert_eq!(s[5].name, "plain");
    assert_eq!(s[5].value, 7.0);
    let b = buckets_by_le(&s, "x", &[("pid", "1")]);
    assert_eq!(b, vec![(0.5, 4.0), (f64::INFINITY, 5.0)]);
    assert_eq!(sum_of(&s, "x_sum", &[]), 0.25);
    assert_eq!(sum_by(&s, "x_bucket", "le", &[("cause", "d")]).len(), 2);
}
