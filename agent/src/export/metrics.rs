//! [`Report`] (a snapshot and its verdicts) → Prometheus text exposition
//! format (version 0.0.4).
//!
//! Every value is written as a const metric (as Cloudflare's ebpf_exporter
//! does) straight from the snapshot: nothing is registered, so the output is
//! exactly what the BPF maps held when the snapshot was taken, and a process
//! that went away simply stops appearing.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::{Instant, UNIX_EPOCH};

use pausewatch_common::{Kind, THREAD_STATES, ThreadState};

use super::text::{Labels, MetricType, TextWriter, ns_to_seconds};
use crate::{
    collect::{Hist, Snapshot, TargetInfo},
    rules::{Report, Verdict},
};

/// Histogram of stop-the-world pauses, labelled by `kind` (see [`pause_kind_label`]).
pub const PAUSE_SECONDS: &str = "pausewatch_pause_seconds";
/// Gauge: the largest pause of each pause series since the agent started.
pub const PAUSE_MAX_SECONDS: &str = "pausewatch_pause_max_seconds";
/// Histogram of the time from the request to stop until every thread
/// stopped: HotSpot's time to safepoint, Go's stopping time.
pub const TIME_TO_SAFEPOINT_SECONDS: &str = "pausewatch_time_to_safepoint_seconds";
/// Histogram of HotSpot VM operations.
pub const VM_OPERATION_SECONDS: &str = "pausewatch_vm_operation_seconds";
/// Histogram of concurrent (non-pausing) GC cycles.
pub const GC_CONCURRENT_CYCLE_SECONDS: &str = "pausewatch_gc_concurrent_cycle_seconds";
/// Counter: the driving thread's time in pauses, by scheduler `state`.
pub const PAUSE_THREAD_SECONDS_TOTAL: &str = "pausewatch_pause_thread_seconds_total";
/// Counter: HotSpot time to safepoint charged to the thread that reached
/// each safepoint last, by normalised `thread` name.
pub const SAFEPOINT_STRAGGLER_SECONDS_TOTAL: &str = "pausewatch_safepoint_straggler_seconds_total";
/// Counter: HotSpot safepoints that each `thread` reached last.
pub const SAFEPOINT_STRAGGLERS_TOTAL: &str = "pausewatch_safepoint_stragglers_total";
/// Info gauge (always 1) describing one traced process.
pub const TARGET_INFO: &str = "pausewatch_target_info";
/// Gauge: number of traced processes.
pub const TARGETS: &str = "pausewatch_targets";
/// Counter of events the BPF side could not record, by `reason`.
pub const LOST_EVENTS_TOTAL: &str = "pausewatch_lost_events_total";
/// Gauge: Unix time at which the rendered snapshot was read from the maps.
pub const SNAPSHOT_TIMESTAMP_SECONDS: &str = "pausewatch_snapshot_timestamp_seconds";
/// Gauge: how long rendering the page took.
pub const RENDER_DURATION_SECONDS: &str = "pausewatch_render_duration_seconds";

/// Gauge: 1 for each process's current workload profile, 0 for the others.
pub const WORKLOAD_PROFILE: &str = "pausewatch_workload_profile";
/// Gauge: 1 while a rule holds for a process.
pub const FINDING: &str = "pausewatch_finding";
/// Info gauge (always 1): the rendered advice of each rule that holds.
pub const RECOMMENDATION_INFO: &str = "pausewatch_recommendation_info";
/// Gauge: share of wall time a process was stopped over the rule window.
pub const STALL_RATIO: &str = "pausewatch_stall_ratio";

/// The `kind` label of `pausewatch_pause_seconds` for a kind that is a
/// stop-the-world pause, or `None` for kinds exported in other families.
///
/// The one place the exporter decides what is a pause. It defers to
/// [`Kind::is_pause`] and [`Kind::label`] so that events, the live summary
/// and the metrics agree on names; a new runtime's pause kind is added there.
pub fn pause_kind_label(kind: Kind) -> Option<&'static str> {
    kind.is_pause().then(|| kind.label())
}

/// The histogram family of a kind that is not a pause.
fn other_family(kind: Kind) -> Option<HistFamily> {
    match kind {
        Kind::TimeToSafepoint => Some(HistFamily::TimeToSafepoint),
        Kind::VmOperation => Some(HistFamily::VmOperation),
        Kind::GcConcurrent => Some(HistFamily::GcConcurrent),
        _ => None,
    }
}

/// Which histogram family a series lands in; the order here is the order of
/// the families in the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum HistFamily {
    Pause,
    TimeToSafepoint,
    VmOperation,
    GcConcurrent,
}

impl HistFamily {
    fn name_and_help(self) -> (&'static str, &'static str) {
        match self {
            HistFamily::Pause => (PAUSE_SECONDS, PAUSE_HELP),
            HistFamily::TimeToSafepoint => (TIME_TO_SAFEPOINT_SECONDS, TTS_HELP),
            HistFamily::VmOperation => (VM_OPERATION_SECONDS, VM_OP_HELP),
            HistFamily::GcConcurrent => (GC_CONCURRENT_CYCLE_SECONDS, GC_CONCURRENT_HELP),
        }
    }
}

const PAUSE_HELP: &str = "Stop-the-world pauses of the traced runtime, in seconds. \
kind=\"safepoint\": a HotSpot safepoint from the hs_private:safepoint__begin to the \
safepoint__end USDT probe (SafepointTracing::begin/end, HotSpot's -Xlog:safepoint Total, \
time to safepoint included), cause = the first VM operation run in it. \
kind=\"gc\": a stop-the-world collection, hotspot:gc__begin to gc__end fired inside a \
safepoint, cause = full or minor. \
kind=\"stw\": a Go stop-the-world, from the uprobe on runtime.stopTheWorldWithSema to \
the point in runtime.startTheWorldWithSema where all Ps run again (GODEBUG=gctrace=1 \
sweep and mark termination clocks), cause = the runtime's stop-the-world reason (GC sweep termination, GC mark \
termination, read mem stats, ...). Kinds can overlap (a HotSpot GC pause runs inside a \
safepoint), so do not add them up.";

const STRAGGLER_SECONDS_HELP: &str = "HotSpot time to safepoint (safepoint begin to its first \
VM operation, as in pausewatch_time_to_safepoint_seconds) charged to the Java thread that reached \
the safepoint last, by thread name (the thread's comm, its Java name's first 15 bytes, with every \
run of digits written #; at most 8 names per process, the rest under thread=\"other\"). \
Safepoints with no straggler seen are not charged.";
const STRAGGLERS_HELP: &str = "HotSpot safepoints whose last-arriving Java thread had this name \
(labels as in pausewatch_safepoint_straggler_seconds_total).";

const PAUSE_THREAD_HELP: &str = "Where the pauses' time went, in seconds: the wall time of \
the thread that drives each pause (role=\"driver\": HotSpot's VM thread, the Go thread that \
stopped the world, the thread collecting in CPython, Ruby or V8), split by scheduler state \
from the sched_switch and sched_waking tracepoints. state=\"running\": on a CPU; \
\"runnable\": ready but waiting for a CPU (preempted, throttled by a CPU quota, or woken and \
queued); \"blocked\": sleeping or waiting (locks, futexes, I/O, waiting for other threads). \
For each kind the driver's three states sum to pausewatch_pause_seconds_sum of that kind. \
role=\"workers\" (HotSpot kind=\"gc\", G1 and Parallel): the GC Thread#N workers the VM \
thread woke for the pause, summed over the workers, running and runnable only.";

const PAUSE_MAX_HELP: &str = "Largest single pause of each pausewatch_pause_seconds series \
since the agent started tracing the process, in seconds (exact, not bucketed).";

const TTS_HELP: &str = "Time from the request to stop the world until every thread \
stopped, in seconds; part of the pause. runtime=\"hotspot\": time to safepoint, from the \
safepoint__begin USDT probe to the first VM operation's vmops__begin (-Xlog:safepoint \
\"Reaching safepoint\"), cause = that operation. runtime=\"go\" (Go 1.23+): what Go calls \
the stopping time, worldStop.finishedStopping - startedStopping as the runtime passes them to \
startTheWorldWithSema (runtime/metrics /sched/pauses/stopping/gc and /other), cause = the \
stop-the-world reason.";

const VM_OP_HELP: &str = "HotSpot VM operations, in seconds, from the hotspot:vmops__begin \
to the vmops__end USDT probe on the VM thread, whether run at a safepoint or not; \
cause = the operation's name.";

const GC_CONCURRENT_HELP: &str = "Concurrent garbage collection cycles, in seconds, from \
hotspot:gc__begin to gc__end outside any safepoint (ZGC, Shenandoah, G1 concurrent work). \
These run alongside the application and are NOT pauses.";

const TARGET_INFO_HELP: &str = "Always 1: one series per traced process, naming its \
command, runtime, runtime version and executable, and its container_id, pod_uid, \
namespace and pod where the host can tell (empty otherwise). Join on pid. comm, here and \
on every other series, is the command name the process got at exec (the executable's or \
script's file name, 15 bytes at most), which stays put when a program renames itself; \
current_comm is the name it gives itself now (/proc/PID/comm, e.g. MainThread for Node 24), \
set only when that differs.";

const TARGETS_HELP: &str = "Number of processes being traced.";

const LOST_HELP: &str = "Events the BPF programs could not record, by reason (ring buffer \
full, a thread's open-interval slots or the per-thread or histogram map full, argument read \
failed, process event ring buffer full, a process left untraced because --max-targets was \
reached). Non-zero means some pauses are missing from the histograms.";

const SNAPSHOT_TIMESTAMP_HELP: &str = "Unix time, in seconds, at which the agent last read \
the BPF maps; a value that stops advancing means collection is stuck.";

const RENDER_DURATION_HELP: &str = "Wall time the agent took to render this page from \
its snapshot, in seconds. The page is rendered once per snapshot (--interval) and every \
scrape until the next one is served the same bytes.";

const WORKLOAD_PROFILE_HELP: &str = "The rule engine's workload profile of each process: 1 \
for the current one (throughput, latency, mixed, idle, balanced or a profile named in the \
rules), 0 for the others. Held by hysteresis (see `agent rules check`).";

const FINDING_HELP: &str = "1 while a rule of the rule engine holds for a process, over \
the --window; the series disappears when it stops holding.";

const RECOMMENDATION_HELP: &str = "Always 1: the advice of each rule that holds, with the \
feature values filled in when the rule began to hold or at the last --window boundary (held for \
a window so that the label does not change at every scrape).";

const STALL_RATIO_HELP: &str = "Share of wall time (0..1) the process was stopped over the \
rule engine's --window, counting nested pause kinds once (HotSpot: safepoints).";

/// Renders a snapshot as Prometheus text exposition format 0.0.4.
///
/// Series that share labels (e.g. two cause ids that resolved to the same
/// text) are merged, since duplicate label sets make a scrape invalid.
/// Families with no series are left out.
pub fn render(report: &Report) -> String {
    render_with(report, false).0
}

/// [`render`], plus the same page in the protobuf exposition format with
/// native histograms (see [`super::protobuf`]), built in the same pass.
pub fn render_both(report: &Report) -> (String, Vec<u8>) {
    render_with(report, true)
}

fn render_with(report: &Report, protobuf: bool) -> (String, Vec<u8>) {
    render_into(report, protobuf, String::new(), Vec::new())
}

/// [`render`] (and with `protobuf`, [`render_both`]), written into the
/// buffers `text` and `proto` (emptied first; their memory is reused).
pub fn render_into(
    report: &Report,
    protobuf: bool,
    text: String,
    proto: Vec<u8>,
) -> (String, Vec<u8>) {
    let snapshot = &*report.snapshot;
    let started = Instant::now();
    // A histogram series is 43 lines, about 5.5 KB (3.8 MB for 700 series
    // of 100 JVMs): reserve once instead of doubling.
    let mut w = TextWriter::with_buffer(text, 4096 + snapshot.series.len() * 6 * 1024);
    if protobuf {
        w = w.with_protobuf();
    }
    write_families(snapshot, &report.verdicts, &mut w);
    // Written last so that the time covers everything before it.
    w.family(
        RENDER_DURATION_SECONDS,
        RENDER_DURATION_HELP,
        MetricType::Gauge,
    );
    w.sample(&Labels::new(), started.elapsed().as_secs_f64());
    w.finish_both_into(proto)
}

/// Every metric family except the render duration, empty ones left out.
fn write_families(snapshot: &Snapshot, verdicts: &[Verdict], w: &mut TextWriter) {
    // First entry per pid wins; a duplicate would only repeat a label set.
    let mut targets: BTreeMap<u32, &TargetInfo> = BTreeMap::new();
    for t in &snapshot.targets {
        targets.entry(t.pid).or_insert(t);
    }

    // Group by output labels, merging duplicates; BTreeMap keeps the output
    // order stable from scrape to scrape, and the family first in the key
    // keeps each family's series together.
    // Borrowed unless a duplicate has to be merged in: at 100 JVMs a copy
    // of every series per render was 700 allocations.
    let mut grouped: BTreeMap<(HistFamily, u32, Option<&'static str>, &str), Cow<'_, Hist>> =
        BTreeMap::new();
    for s in &snapshot.series {
        let key = match pause_kind_label(s.kind) {
            Some(label) => (HistFamily::Pause, s.pid, Some(label), s.cause.as_str()),
            // Kinds with no family are skipped rather than guessed at.
            None => match other_family(s.kind) {
                Some(family) => (family, s.pid, None, s.cause.as_str()),
                None => continue,
            },
        };
        grouped
            .entry(key)
            .and_modify(|h| merge_saturating(h.to_mut(), &s.hist))
            .or_insert(Cow::Borrowed(&s.hist));
    }
    let labels_of = |pid: u32, kind: Option<&str>, cause: &str| {
        let (comm, runtime) = match targets.get(&pid) {
            Some(t) => (t.comm.as_str(), t.runtime.label()),
            None => ("", "unknown"),
        };
        let mut labels = Labels::new()
            .with("pid", &pid.to_string())
            .with("comm", comm)
            .with("runtime", runtime);
        if let Some(kind) = kind {
            labels.push("kind", kind);
        }
        labels.push("cause", cause);
        labels
    };

    // Pause histograms sort first; their maxima follow them as a gauge
    // family, then come the other histogram families.
    let (pauses, others): (Vec<_>, Vec<_>) = grouped
        .iter()
        .partition(|((family, ..), _)| *family == HistFamily::Pause);
    let mut pause_max = Vec::with_capacity(pauses.len());
    let mut current = None;
    for (&(family, pid, kind, cause), hist) in pauses.into_iter().chain(others) {
        if current != Some(family) {
            if current == Some(HistFamily::Pause) {
                write_pause_max(w, &pause_max);
            }
            current = Some(family);
            let (name, help) = family.name_and_help();
            w.family(name, help, MetricType::Histogram);
        }
        let labels = labels_of(pid, kind, cause);
        w.histogram(&labels, hist);
        if family == HistFamily::Pause {
            pause_max.push((labels, hist.max_ns));
        }
    }
    if current == Some(HistFamily::Pause) {
        write_pause_max(w, &pause_max);
    }
    write_pause_threads(&grouped, &targets, w);
    write_stragglers(snapshot, &targets, w);

    if !targets.is_empty() {
        w.family(TARGET_INFO, TARGET_INFO_HELP, MetricType::Gauge);
        for t in targets.values() {
            let labels = Labels::new()
                .with("pid", &t.pid.to_string())
                .with("comm", &t.comm)
                .with("runtime", t.runtime.label())
                .with("runtime_version", &t.runtime_version)
                .with("exe", &t.exe)
                .with("current_comm", &t.current_comm)
                // Empty when unknown, which Prometheus treats as absent.
                .with("container_id", &t.container.container_id)
                .with("pod_uid", &t.container.pod_uid)
                .with("namespace", &t.container.namespace)
                .with("pod", &t.container.pod);
            w.sample(&labels, 1.0);
        }
    }
    w.family(TARGETS, TARGETS_HELP, MetricType::Gauge);
    w.sample(&Labels::new(), targets.len() as f64);

    write_verdicts(verdicts, w);
    super::heap::write_heap(snapshot, w);

    // Every reason in the snapshot, zeros included, so that rate() has a
    // series to work on before the first loss; repeated reasons are summed.
    let mut lost: Vec<(&str, u64)> = Vec::new();
    for &(reason, n) in &snapshot.lost {
        match lost.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, total)) => *total = total.saturating_add(n),
            None => lost.push((reason, n)),
        }
    }
    if !lost.is_empty() {
        w.family(LOST_EVENTS_TOTAL, LOST_HELP, MetricType::Counter);
        for (reason, n) in lost {
            w.sample(&Labels::new().with("reason", reason), n as f64);
        }
    }

    if let Some(ts) = snapshot
        .taken_at
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
    {
        w.family(
            SNAPSHOT_TIMESTAMP_SECONDS,
            SNAPSHOT_TIMESTAMP_HELP,
            MetricType::Gauge,
        );
        w.sample(&Labels::new(), ts.as_secs_f64());
    }
}

/// The driving threads' per-state time in each process's pauses of each
/// kind, summed over causes. Left out when no pause has any (the anatomy
/// is off, or no pause has ended yet).
fn write_pause_threads(
    grouped: &BTreeMap<(HistFamily, u32, Option<&'static str>, &str), Cow<'_, Hist>>,
    targets: &BTreeMap<u32, &TargetInfo>,
    w: &mut TextWriter,
) {
    // (driver, workers) per (pid, kind).
    type States = [u64; THREAD_STATES];
    let mut by_kind: BTreeMap<(u32, &'static str), (States, States)> = BTreeMap::new();
    for (&(family, pid, kind, _), hist) in grouped {
        let (HistFamily::Pause, Some(kind)) = (family, kind) else {
            continue;
        };
        let (driver, workers) = by_kind.entry((pid, kind)).or_default();
        for (t, v) in driver.iter_mut().zip(&hist.state_ns) {
            *t = t.saturating_add(*v);
        }
        for (t, v) in workers.iter_mut().zip(&hist.worker_ns) {
            *t = t.saturating_add(*v);
        }
    }
    by_kind.retain(|_, (d, wk)| d.iter().chain(wk.iter()).any(|&v| v > 0));
    if by_kind.is_empty() {
        return;
    }
    w.family(
        PAUSE_THREAD_SECONDS_TOTAL,
        PAUSE_THREAD_HELP,
        MetricType::Counter,
    );
    for ((pid, kind), (driver, workers)) in by_kind {
        let (comm, runtime) = match targets.get(&pid) {
            Some(t) => (t.comm.as_str(), t.runtime.label()),
            None => ("", "unknown"),
        };
        let labels = |role: &str, state: ThreadState| {
            Labels::new()
                .with("pid", &pid.to_string())
                .with("comm", comm)
                .with("runtime", runtime)
                .with("kind", kind)
                .with("role", role)
                .with("state", state.label())
        };
        for state in ThreadState::ALL {
            w.sample(
                &labels("driver", state),
                ns_to_seconds(driver[state as usize]),
            );
        }
        // A worker's blocked time is mostly idling between pieces of
        // work, and only the sleeps inside a pause are seen: left out.
        if workers.iter().any(|&v| v > 0) {
            for state in [ThreadState::Running, ThreadState::Runnable] {
                w.sample(
                    &labels("workers", state),
                    ns_to_seconds(workers[state as usize]),
                );
            }
        }
    }
}

/// The safepoint stragglers: time charged, then safepoints, per process
/// and thread name. Left out when there are none.
fn write_stragglers(snapshot: &Snapshot, targets: &BTreeMap<u32, &TargetInfo>, w: &mut TextWriter) {
    if snapshot.stragglers.is_empty() {
        return;
    }
    let labels_of = |pid: u32, thread: &str| {
        let (comm, runtime) = match targets.get(&pid) {
            Some(t) => (t.comm.as_str(), t.runtime.label()),
            None => ("", "unknown"),
        };
        Labels::new()
            .with("pid", &pid.to_string())
            .with("comm", comm)
            .with("runtime", runtime)
            .with("thread", thread)
    };
    // The collector emits one series per (pid, thread), sorted.
    w.family(
        SAFEPOINT_STRAGGLER_SECONDS_TOTAL,
        STRAGGLER_SECONDS_HELP,
        MetricType::Counter,
    );
    for s in &snapshot.stragglers {
        w.sample(&labels_of(s.pid, &s.thread), ns_to_seconds(s.tts_ns));
    }
    w.family(
        SAFEPOINT_STRAGGLERS_TOTAL,
        STRAGGLERS_HELP,
        MetricType::Counter,
    );
    for s in &snapshot.stragglers {
        w.sample(&labels_of(s.pid, &s.thread), s.count as f64);
    }
}

/// The largest pause of each pause series, labelled like the series.
fn write_pause_max(w: &mut TextWriter, maxima: &[(Labels, u64)]) {
    w.family(PAUSE_MAX_SECONDS, PAUSE_MAX_HELP, MetricType::Gauge);
    for (labels, max_ns) in maxima {
        w.sample(labels, ns_to_seconds(*max_ns));
    }
}

/// The rule engine's output: profiles, findings, advice and stall ratio.
fn write_verdicts(verdicts: &[Verdict], w: &mut TextWriter) {
    let (mut profiles, mut findings, mut advice, mut stall) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut seen = std::collections::BTreeSet::new();
    for v in verdicts {
        if !seen.insert(v.pid) {
            continue;
        }
        let base = Labels::new()
            .with("pid", &v.pid.to_string())
            .with("comm", &v.comm)
            .with("runtime", v.runtime.label());
        for p in v.profiles.iter() {
            profiles.push((
                base.clone().with("profile", p),
                f64::from(u8::from(*p == v.profile)),
            ));
        }
        let mut rules = std::collections::BTreeSet::new();
        for f in &v.findings {
            if !rules.insert(f.rule.as_str()) {
                continue;
            }
            let labels = base.clone().with("rule", &f.rule);
            findings.push((labels.clone().with("severity", f.severity.label()), 1.0));
            advice.push((labels.with("advice", &f.advice_label), 1.0));
        }
        stall.push((base, v.features.now.stall_ratio));
    }
    for (name, help, samples) in [
        (WORKLOAD_PROFILE, WORKLOAD_PROFILE_HELP, profiles),
        (FINDING, FINDING_HELP, findings),
        (RECOMMENDATION_INFO, RECOMMENDATION_HELP, advice),
        (STALL_RATIO, STALL_RATIO_HELP, stall),
    ] {
        if samples.is_empty() {
            continue;
        }
        w.family(name, help, MetricType::Gauge);
        for (labels, value) in &samples {
            w.sample(labels, *value);
        }
    }
}

/// Adds `other` into `into` without overflowing (the snapshot's own
/// `Hist::merge` uses plain addition, which panics in debug builds).
fn merge_saturating(into: &mut Hist, other: &Hist) {
    into.count = into.count.saturating_add(other.count);
    into.sum_ns = into.sum_ns.saturating_add(other.sum_ns);
    into.max_ns = into.max_ns.max(other.max_ns);
    into.buckets.merge(&other.buckets);
    for (a, b) in into.state_ns.iter_mut().zip(&other.state_ns) {
        *a = a.saturating_add(*b);
    }
    for (a, b) in into.worker_ns.iter_mut().zip(&other.worker_ns) {
        *a = a.saturating_add(*b);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::collect::Series;
    use crate::collect::snapshot::shared;
    use crate::export::buckets::{EXPORTED_EDGE_COUNT, EXPORTED_EDGES_NS, cumulative_counts};
    use pausewatch_common::BUCKETS;

    /// One parsed sample line: name, labels, value.
    type Sample = (String, BTreeMap<String, String>, f64);

    /// A small parser for the sample lines of the text format, undoing the
    /// label value escapes, so tests check values rather than spelling.
    fn parse(text: &str) -> Vec<Sample> {
        let mut out = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (name, rest) = match line.find('{') {
                Some(i) => (&line[..i], &line[i + 1..]),
                None => {
                    let (n, v) = line.split_once(' ').expect("sample has a value");
                    out.push((n.to_owned(), BTreeMap::new(), v.parse().expect("number")));
                    continue;
                }
            };
            let mut labels = BTreeMap::new();
            let mut chars = rest.chars();
            loop {
                let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
                assert_eq!(chars.next(), Some('"'), "in {line}");
                let mut value = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some('n') => value.push('\n'),
                            Some(c @ ('\\' | '"')) => value.push(c),
                            other => panic!("bad escape {other:?} in {line}"),
                        },
                        c => value.push(c),
                    }
                }
                labels.insert(key, value);
                match chars.next() {
                    Some(',') => continue,
                    Some('}') => break,
                    other => panic!("unexpected {other:?} in {line}"),
                }
            }
            let value = chars.as_str().trim().parse().expect("number");
            out.push((name.to_owned(), labels, value));
        }
        out
    }

    fn find<'a>(samples: &'a [Sample], name: &str, want: &[(&str, &str)]) -> Vec<&'a Sample> {
        samples
            .iter()
            .filter(|(n, labels, _)| {
                n == name
                    && want
                        .iter()
                        .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    fn one(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
        let found = find(samples, name, want);
        assert_eq!(found.len(), 1, "{name} {want:?}: {found:?}");
        found[0].2
    }

    fn hist_of(values: &[u64]) -> Hist {
        Hist::of(values)
    }

    fn series(pid: u32, kind: Kind, cause: &str, values: &[u64]) -> Series {
        Series {
            pid,
            kind,
            cause: cause.to_owned(),
            hist: hist_of(values),
        }
    }

    /// Pause values spread over the whole range, including edges exactly,
    /// values below 1 µs and above the last exported edge.
    const PAUSES: [u64; 12] = [
        500,
        8_191,
        8_192,
        9_000,
        50_000,
        1_000_000,
        3 << 20,
        12_345_678,
        1_000_000_000,
        5_000_000_000,
        (1 << 34) + 1,
        2_000_000_000_000,
    ];

    const ODD_CAUSE: &str = "a \"quoted\" \\ cause\nline2";

    fn synthetic() -> Snapshot {
        Snapshot {
            taken_at: Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_250)),
            targets: shared(vec![TargetInfo {
                pid: 42,
                comm: "java".to_owned(),
                current_comm: String::new(),
                runtime: crate::runtimes::Runtime::HotSpot,
                runtime_version: "17.0.15".to_owned(),
                exe: "/usr/lib/jvm/java-17/bin/java".to_owned(),
                container: crate::targets::ContainerLabels {
                    container_id: "c0ffee".to_owned(),
                    pod_uid: "0b6c4e2a-1f3d-4a5b-9c8d-7e6f5a4b3c2d".to_owned(),
                    namespace: "shop".to_owned(),
                    pod: "cart-7d9f".to_owned(),
                    cpu_limit_millicores: Some(500),
                },
            }]),
            series: shared(vec![
                series(42, Kind::Safepoint, "G1CollectForAllocation", &PAUSES),
                series(42, Kind::GcPause, "minor", &[2_000_000, 4_000_000]),
                series(
                    42,
                    Kind::TimeToSafepoint,
                    "G1CollectForAllocation",
                    &[20_000],
                ),
                series(42, Kind::VmOperation, ODD_CAUSE, &[70_000, 80_000]),
                series(42, Kind::GcConcurrent, "minor", &[300_000_000]),
                series(7, Kind::Safepoint, "Cleanup", &[15_000]),
            ]),
            lost: vec![("ringbuf_full", 3), ("inflight_map_full", 0)],
            stragglers: Vec::new(),
            heap: Vec::new(),
        }
        .sorted()
    }

    #[test]
    fn thread_states_sum_over_causes_per_kind() {
        let mut snap = synthetic();
        for s in &mut snap.series {
            let s = std::sync::Arc::make_mut(s);
            s.hist.state_ns = match (s.pid, s.kind) {
                (42, Kind::Safepoint) => [1_000_000, 250_000, 0],
                (42, Kind::GcPause) => [500_000, 0, 125_000],
                _ => [0; pausewatch_common::THREAD_STATES],
            };
        }
        // A second safepoint cause of the same process adds to its kind.
        let mut other = series(42, Kind::Safepoint, "Cleanup", &[1_000]);
        other.hist.state_ns = [0, 750_000, 1_000];
        snap.series.push(other.into());
        let samples = parse(&render(&snap.into()));
        let value = |kind: &str, state: &str| {
            one(
                &samples,
                "pausewatch_pause_thread_seconds_total",
                &[
                    ("pid", "42"),
                    ("kind", kind),
                    ("role", "driver"),
                    ("state", state),
                ],
            )
        };
        assert_eq!(value("safepoint", "running"), 0.001);
        assert_eq!(value("safepoint", "runnable"), 0.001);
        assert_eq!(value("safepoint", "blocked"), 0.000001);
        assert_eq!(value("gc", "blocked"), 0.000125);
        // Processes and kinds without any anatomy get no series.
        assert!(
            find(
                &samples,
                "pausewatch_pause_thread_seconds_total",
                &[("pid", "7")]
            )
            .is_empty()
        );
        assert_eq!(
            find(&samples, "pausewatch_pause_thread_seconds_total", &[]).len(),
            6
        );
    }

    #[test]
    fn le_values_print_exactly() {
        for edge in EXPORTED_EDGES_NS {
            let exact = format!("{}.{:09}", edge / 1_000_000_000, edge % 1_000_000_000);
            let exact = exact.trim_end_matches('0').trim_end_matches('.');
            assert_eq!(ns_to_seconds(edge).to_string(), exact);
        }
        let text = render(&synthetic().into());
        assert!(text.contains("le=\"0.000008192\""), "{text}");
        assert!(text.contains("le=\"0.000049152\""), "{text}");
        assert!(text.contains("le=\"17.179869184\""), "{text}");
    }

    #[test]
    fn histogram_counts_sums_and_buckets_are_exact() {
        let text = render(&synthetic().into());
        let samples = parse(&text);
        let sel = [
            ("pid", "42"),
            ("comm", "java"),
            ("runtime", "hotspot"),
            ("kind", "safepoint"),
            ("cause", "G1CollectForAllocation"),
        ];
        let count = one(&samples, "pausewatch_pause_seconds_count", &sel);
        assert_eq!(count, PAUSES.len() as f64);
        let sum = one(&samples, "pausewatch_pause_seconds_sum", &sel);
        assert_eq!(sum, PAUSES.iter().sum::<u64>() as f64 / 1e9);

        let buckets = find(&samples, "pausewatch_pause_seconds_bucket", &sel);
        assert_eq!(buckets.len(), EXPORTED_EDGE_COUNT + 1);
        let mut previous = 0.0;
        for (i, (_, labels, value)) in buckets.iter().enumerate() {
            assert!(*value >= previous, "not monotonic at {labels:?}");
            previous = *value;
            match EXPORTED_EDGES_NS.get(i) {
                Some(&edge) => {
                    assert_eq!(labels["le"].parse::<f64>().unwrap(), edge as f64 / 1e9);
                    // Fine buckets hold v < edge, so that is what is counted.
                    let expect = PAUSES.iter().filter(|&&v| v < edge).count();
                    assert_eq!(*value, expect as f64, "le={}", labels["le"]);
                }
                None => assert_eq!(labels["le"], "+Inf"),
            }
        }
        assert_eq!(previous, count, "+Inf bucket must equal _count");
    }

    #[test]
    fn every_family_has_its_labels() {
        let text = render(&synthetic().into());
        let samples = parse(&text);
        let gc = [("pid", "42"), ("kind", "gc"), ("cause", "minor")];
        assert_eq!(one(&samples, "pausewatch_pause_seconds_count", &gc), 2.0);
        assert_eq!(one(&samples, "pausewatch_pause_max_seconds", &gc), 0.004);
        let sp = [("pid", "42"), ("kind", "safepoint")];
        assert_eq!(one(&samples, "pausewatch_pause_max_seconds", &sp), 2000.0);

        let tts = [("pid", "42"), ("runtime", "hotspot")];
        assert_eq!(
            one(&samples, "pausewatch_time_to_safepoint_seconds_sum", &tts),
            0.00002
        );
        let vmop = [("cause", ODD_CAUSE), ("comm", "java")];
        assert_eq!(
            one(&samples, "pausewatch_vm_operation_seconds_count", &vmop),
            2.0
        );
        let conc = [("pid", "42"), ("cause", "minor")];
        assert_eq!(
            one(
                &samples,
                "pausewatch_gc_concurrent_cycle_seconds_sum",
                &conc
            ),
            0.3
        );
        for (name, labels, _) in &samples {
            if !name.starts_with("pausewatch_pause_seconds") && name.ends_with("_count") {
                assert!(!labels.contains_key("kind"), "{name} has a kind label");
            }
        }

        // A series whose process has no TargetInfo.
        let orphan = [("pid", "7"), ("comm", ""), ("runtime", "unknown")];
        assert_eq!(
            one(&samples, "pausewatch_pause_seconds_count", &orphan),
            1.0
        );

        let info = [
            ("pid", "42"),
            ("comm", "java"),
            ("runtime", "hotspot"),
            ("runtime_version", "17.0.15"),
            ("exe", "/usr/lib/jvm/java-17/bin/java"),
            ("container_id", "c0ffee"),
            ("pod_uid", "0b6c4e2a-1f3d-4a5b-9c8d-7e6f5a4b3c2d"),
            ("namespace", "shop"),
            ("pod", "cart-7d9f"),
        ];
        assert_eq!(one(&samples, "pausewatch_target_info", &info), 1.0);
        assert_eq!(one(&samples, "pausewatch_targets", &[]), 1.0);
        let lost = "pausewatch_lost_events_total";
        assert_eq!(one(&samples, lost, &[("reason", "ringbuf_full")]), 3.0);
        assert_eq!(one(&samples, lost, &[("reason", "inflight_map_full")]), 0.0);
        assert_eq!(
            one(&samples, "pausewatch_snapshot_timestamp_seconds", &[]),
            1_700_000_000.25
        );
        assert!(one(&samples, "pausewatch_render_duration_seconds", &[]) >= 0.0);

        assert!(text.contains("# TYPE pausewatch_pause_seconds histogram\n"));
        assert!(text.contains("# TYPE pausewatch_lost_events_total counter\n"));
        assert!(text.contains("# HELP pausewatch_pause_seconds Stop-the-world"));
        assert!(text.contains("-Xlog:safepoint Total"));
    }

    #[test]
    fn stragglers_are_counters_by_thread() {
        let mut snap = synthetic();
        snap.stragglers = shared(vec![
            crate::collect::StragglerSeries {
                pid: 42,
                thread: "other".into(),
                count: 1,
                tts_ns: 250_000,
                late_ns: 1,
            },
            crate::collect::StragglerSeries {
                pid: 42,
                thread: "slowpoke".into(),
                count: 7,
                tts_ns: 21_000_000,
                late_ns: 1,
            },
        ]);
        let text = render(&snap.into());
        let samples = parse(&text);
        let slow = [
            ("pid", "42"),
            ("comm", "java"),
            ("runtime", "hotspot"),
            ("thread", "slowpoke"),
        ];
        assert_eq!(
            one(
                &samples,
                "pausewatch_safepoint_straggler_seconds_total",
                &slow
            ),
            0.021
        );
        assert_eq!(
            one(&samples, "pausewatch_safepoint_stragglers_total", &slow),
            7.0
        );
        assert_eq!(
            one(
                &samples,
                "pausewatch_safepoint_stragglers_total",
                &[("thread", "other")]
            ),
            1.0
        );
        assert!(text.contains("# TYPE pausewatch_safepoint_straggler_seconds_total counter\n"));
        // No stragglers, no families.
        let text = render(&synthetic().into());
        assert!(!text.contains("straggler"));
    }

    #[test]
    fn a_renamed_process_keeps_its_exec_time_comm() {
        let mut snap = synthetic();
        let target = std::sync::Arc::make_mut(&mut snap.targets[0]);
        target.comm = "node".to_owned();
        target.current_comm = "MainThread".to_owned();
        target.runtime = crate::runtimes::Runtime::V8;
        let samples = parse(&render(&snap.clone().into()));
        let who = [("pid", "42"), ("comm", "node"), ("kind", "safepoint")];
        assert_eq!(
            one(&samples, "pausewatch_pause_seconds_count", &who),
            PAUSES.len() as f64
        );
        let info = [("comm", "node"), ("current_comm", "MainThread")];
        assert_eq!(one(&samples, "pausewatch_target_info", &info), 1.0);
        for (_, labels, _) in &samples {
            assert_ne!(labels.get("comm").map(String::as_str), Some("MainThread"));
        }
        // Not renamed: the label is empty, which Prometheus reads as absent.
        let text = render(&synthetic().into());
        assert!(text.contains(r#"current_comm="""#), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        let text = render(&synthetic().into());
        assert!(
            text.contains(r#"cause="a \"quoted\" \\ cause\nline2""#),
            "{text}"
        );
        // No raw newline may leak into a sample line.
        for line in text.lines() {
            assert!(line.starts_with("pausewatch_") || line.starts_with("# "));
        }
    }

    #[test]
    fn duplicate_label_sets_are_merged() {
        let mut snap = synthetic();
        snap.series = shared(vec![
            series(42, Kind::Safepoint, "Cleanup", &[10_000]),
            series(42, Kind::Safepoint, "Cleanup", &[20_000, 30_000]),
        ]);
        snap.targets.push(snap.targets[0].clone());
        snap.lost = vec![("ringbuf_full", 1), ("ringbuf_full", 2)];
        let samples = parse(&render(&snap.clone().into()));
        let sel = [("cause", "Cleanup")];
        assert_eq!(one(&samples, "pausewatch_pause_seconds_count", &sel), 3.0);
        assert_eq!(one(&samples, "pausewatch_pause_seconds_sum", &sel), 0.00006);
        assert_eq!(one(&samples, "pausewatch_pause_max_seconds", &sel), 0.00003);
        assert_eq!(one(&samples, "pausewatch_target_info", &[]), 1.0);
        assert_eq!(one(&samples, "pausewatch_targets", &[]), 1.0);
        let lost = [("reason", "ringbuf_full")];
        assert_eq!(one(&samples, "pausewatch_lost_events_total", &lost), 3.0);
    }

    #[test]
    fn torn_or_malformed_histograms_stay_valid() {
        // Buckets ahead of count (a read caught between two per-CPU updates).
        let mut torn = hist_of(&[10_000, 20_000, 30_000]);
        torn.count = 2;
        let counts = cumulative_counts(&torn);
        assert!(counts.iter().all(|&c| c <= 2));
        assert!(counts.windows(2).all(|w| w[0] <= w[1]));

        // Wrong bucket vector lengths and extreme values must not panic.
        let mut snap = Snapshot::default();
        for buckets in [Vec::new(), vec![u64::MAX; 3 * BUCKETS]] {
            snap.series.push(
                Series {
                    pid: 1,
                    kind: Kind::GcPause,
                    cause: String::new(),
                    hist: Hist {
                        count: u64::MAX,
                        sum_ns: u64::MAX,
                        max_ns: u64::MAX,
                        buckets: {
                            let mut b = crate::collect::Buckets::default();
                            b.add_dense(&buckets);
                            b
                        },
                        state_ns: [u64::MAX; pausewatch_common::THREAD_STATES],
                        worker_ns: [u64::MAX; pausewatch_common::THREAD_STATES],
                    },
                }
                .into(),
            );
        }
        let samples = parse(&render(&snap.clone().into()));
        let buckets = find(&samples, "pausewatch_pause_seconds_bucket", &[]);
        assert_eq!(buckets.len(), EXPORTED_EDGE_COUNT + 1);
    }

    #[test]
    fn empty_snapshot_renders() {
        let text = render(&Report::default());
        let samples = parse(&text);
        assert_eq!(one(&samples, "pausewatch_targets", &[]), 0.0);
        assert!(find(&samples, "pausewatch_pause_seconds_count", &[]).is_empty());
        assert!(text.contains("pausewatch_render_duration_seconds "));
    }

    #[test]
    fn verdicts_become_profile_finding_advice_and_stall_ratio() {
        let snap = synthetic();
        let engine_rules = crate::rules::file::parse(
            "t",
            "[[rule]]\nname = \"stopped\"\nwhen = \"stall_ratio > 0.1\"\nseverity = \"warning\"\nprofile = \"throughput\"\nadvice = \"stopped \\\"{stall_ratio:%}\\\"\"\n",
        )
        .unwrap();
        let rules = crate::rules::RuleSet {
            rules: engine_rules.rules,
            confirm: 1,
        };
        let mut engine = crate::rules::Engine::new(rules, Duration::from_secs(10));
        let base = Snapshot {
            series: Vec::new(),
            ..snap.clone()
        };
        assert!(engine.observe(Duration::ZERO, base.into()).is_empty());
        let with = engine.judge(Duration::from_secs(10), snap.into());
        let samples = parse(&render(&with));
        let who = [("pid", "42"), ("comm", "java"), ("runtime", "hotspot")];
        let profile = |p: &str| {
            let mut sel = who.to_vec();
            sel.push(("profile", p));
            one(&samples, WORKLOAD_PROFILE, &sel)
        };
        assert_eq!(profile("throughput"), 1.0);
        for p in ["latency", "mixed", "idle", "balanced"] {
            assert_eq!(profile(p), 0.0, "{p}");
        }
        let mut sel = who.to_vec();
        sel.extend([("rule", "stopped"), ("severity", "warning")]);
        assert_eq!(one(&samples, FINDING, &sel), 1.0);
        // The PAUSES safepoints (~2026 s in all) over a 10 s window: capped at 1.
        assert_eq!(one(&samples, STALL_RATIO, &who), 1.0);
        let mut sel = who.to_vec();
        sel.extend([("rule", "stopped"), ("advice", "stopped \"100%\"")]);
        assert_eq!(one(&samples, RECOMMENDATION_INFO, &sel), 1.0);
        // No verdicts, no families.
        let text = render(&synthetic().into());
        assert!(!text.contains(WORKLOAD_PROFILE), "{text}");
    }

    #[test]
    fn pause_kinds() {
        assert_eq!(pause_kind_label(Kind::Safepoint), Some("safepoint"));
        assert_eq!(pause_kind_label(Kind::GcPause), Some("gc"));
        for kind in Kind::ALL {
            // Every kind is exported exactly once: as a pause or elsewhere.
            assert_ne!(
                pause_kind_label(kind).is_some(),
                other_family(kind).is_some()
            );
        }
    }
}
