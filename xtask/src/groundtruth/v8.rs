//! Parser for Node.js/V8's `--trace-gc` output, one line per collection:
//!
//! ```text
//! [5025:0x34d77c00]      107 ms: Scavenge 52.1 (69.2) -> 40.9 (69.0) MB, 1.14 / 0.00 ms  (average mu = 1.000, current mu = 1.000) allocation failure;
//! [5025:0x34d77c00]      239 ms: Mark-Compact (reduce) 47.7 (69.2) -> 13.6 (48.2) MB, 14.08 / 0.00 ms  (+ 2.1 ms in 12 steps since start of marking, biggest step 0.3 ms, walltime since start of marking 30 ms) (average mu = 1.000, current mu = 1.000) testing; GC in old space requested
//! [3131:0x2a1c000]      75 ms: Scavenge 4.1 (5.5) -> 3.6 (6.5) MB, pooled: 0 MB, 0.80 / 0.00 ms  (average mu = 1.000, current mu = 1.000) allocation failure;
//! ```
//!
//! (The last is Node 22 and newer: the pooled pages come before the pause;
//! Node 26 writes `pooled: 0.0 MB`.) The line is
//! `[pid:isolate] <ms since isolate start> ms: <collector>
//! [(reduce)] <heap before> (<committed>) -> <after> (<committed>) MB,
//! [pooled: <n> MB, ]<pause ms> / <external callbacks ms> ms ...`. The pause is what the
//! agent measures (V8's observable pause, `GCTracer::StartObservablePause`
//! to `StopObservablePause`); the incremental marking steps in parentheses
//! ran before it, interleaved with JavaScript, and are not part of it.
//! Hand-written because it is one fixed `printf` format; no crate parses it.

use anyhow::{Context, Result, bail};

/// One collection from the trace.
#[derive(Clone, Debug, PartialEq)]
pub struct GcLine {
    /// The collector as the trace names it (`Scavenge`, `Mark-Compact`,
    /// `Minor Mark-Compact`), without a `(reduce)` suffix.
    pub collector: String,
    /// The agent's `cause` label for it.
    pub cause: &'static str,
    /// Milliseconds since the isolate started, when the line was printed.
    pub at_ms: u64,
    /// The pause, in milliseconds.
    pub pause_ms: f64,
}

/// The trace's collections, and the lines of it that are not collections
/// (anything V8 or the script printed besides).
#[derive(Clone, Debug, Default)]
pub struct Trace {
    /// Collection lines, in order.
    pub gcs: Vec<GcLine>,
    /// Lines that look like trace lines (`[pid:0x...]`) but did not parse.
    pub unparsed: Vec<String>,
}

/// The agent's `cause` label for a collector name of the trace.
pub fn cause_of(collector: &str) -> Option<&'static str> {
    match collector {
        "Scavenge" => Some("scavenge"),
        // Node 18's V8 writes `Mark-sweep`; Node 26's writes `Incremental
        // Mark-Compact` when the cycle's marking ran incrementally.
        "Mark-Compact" | "Mark-sweep" | "Incremental Mark-Compact" => Some("mark-compact"),
        "Minor Mark-Compact" | "Minor Mark-Sweep" => Some("minor-mark-compact"),
        _ => None,
    }
}

/// Parses a whole trace (stdout of `node --trace-gc`).
pub fn parse_trace<'a>(lines: impl IntoIterator<Item = &'a str>) -> Trace {
    let mut trace = Trace::default();
    for line in lines {
        if !line.trim_start().starts_with('[') {
            continue;
        }
        match parse_line(line) {
            Ok(gc) => trace.gcs.push(gc),
            Err(_) => trace.unparsed.push(line.to_string()),
        }
    }
    trace
}

/// Parses one `--trace-gc` line.
pub fn parse_line(line: &str) -> Result<GcLine> {
    let rest = line
        .trim_start()
        .strip_prefix('[')
        .and_then(|r| r.split_once(']'))
        .map(|(_, r)| r)
        .context("no [pid:isolate] prefix")?;
    let (at, rest) = rest
        .split_once(" ms: ")
        .context("no `<n> ms:` time stamp")?;
    let at_ms: u64 = at.trim().parse().context("bad time stamp")?;
    // The collector's name runs up to the first number (the heap size).
    let words: Vec<&str> = rest.split_whitespace().collect();
    let first_number = words
        .iter()
        .position(|w| w.parse::<f64>().is_ok())
        .context("no heap size after the collector's name")?;
    // Qualifiers in parentheses are not part of the name: `(reduce)`, and
    // Node 26's `(during sweeping)`.
    let mut in_parens = false;
    let mut name = Vec::new();
    for w in &words[..first_number] {
        if !in_parens && !w.starts_with('(') {
            name.push(*w);
        } else {
            in_parens = !w.ends_with(')');
        }
    }
    let collector = name.join(" ");
    let Some(cause) = cause_of(&collector) else {
        bail!("unknown collector {collector:?}");
    };
    let (_, mut after) = rest.split_once("MB, ").context("no `MB, <pause>`")?;
    // Node 22 and newer add the pooled pages first: `MB, pooled: 0 MB, 0.80 / ...`.
    if let Some(pooled) = after.strip_prefix("pooled: ") {
        (_, after) = pooled
            .split_once("MB, ")
            .context("no `MB, <pause>` after `pooled:`")?;
    }
    let pause = after
        .split_whitespace()
        .next()
        .context("no pause after `MB,`")?;
    let pause_ms: f64 = pause.parse().context("bad pause")?;
    if !pause_ms.is_finite() || pause_ms < 0.0 {
        bail!("bad pause {pause_ms}");
    }
    Ok(GcLine {
        collector,
        cause,
        at_ms,
        pause_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_scavenge() {
        let g = parse_line("[5025:0x34d77c00]      107 ms: Scavenge 52.1 (69.2) -> 40.9 (69.0) MB, 1.14 / 0.00 ms  (average mu = 1.000, current mu = 1.000) allocation failure; ").unwrap();
        assert_eq!(g.collector, "Scavenge");
        assert_eq!(g.cause, "scavenge");
        assert_eq!(g.at_ms, 107);
        assert_eq!(g.pause_ms, 1.14);
    }

    #[test]
    fn parses_mark_compact_with_steps_and_reduce() {
        let g = parse_line("[77:0x5a1b2c0]     2239 ms: Mark-Compact (reduce) 47.7 (69.2) -> 13.6 (48.2) MB, 14.08 / 0.00 ms  (+ 2.1 ms in 12 steps since start of marking, biggest step 0.3 ms, walltime since start of marking 30 ms) (average mu = 0.981, current mu = 0.950) finalize incremental marking via task; GC in old space requested").unwrap();
        assert_eq!(g.collector, "Mark-Compact");
        assert_eq!(g.cause, "mark-compact");
        assert_eq!(g.pause_ms, 14.08);
        let m = parse_line(
            "[1:0x1]  5 ms: Minor Mark-Compact 4.0 (5.0) -> 3.0 (5.0) MB, 0.50 / 0.00 ms  (average mu = 1.000, current mu = 1.000) allocation failure;",
        )
        .unwrap();
        assert_eq!(m.cause, "minor-mark-compact");
    }

    #[test]
    fn parses_the_formats_of_newer_and_older_nodes() {
        let g = parse_line("[3131:0x2a1c000]      75 ms: Scavenge 4.1 (5.5) -> 3.6 (6.5) MB, pooled: 0 MB, 0.80 / 0.00 ms  (average mu = 1.000, current mu = 1.000) allocation failure;").unwrap();
        assert_eq!((g.cause, g.pause_ms), ("scavenge", 0.80));
        let g = parse_line("[9:0x1]   812 ms: Incremental Mark-Compact 60.2 (80.1) -> 12.0 (40.3) MB, pooled: 0.0 MB, 9.45 / 0.00 ms  (+ 3.0 ms in 20 steps since start of marking, biggest step 0.4 ms, walltime since start of marking 41 ms) (average mu = 0.9, current mu = 0.8) finalize incremental marking via task; GC in old space requested").unwrap();
        assert_eq!(g.collector, "Incremental Mark-Compact");
        assert_eq!((g.cause, g.pause_ms), ("mark-compact", 9.45));
        let g = parse_line("[7:0x2]   301 ms: Mark-sweep 30.1 (50.0) -> 10.2 (30.0) MB, 5.25 / 0.00 ms  (average mu = 0.99, current mu = 0.97) testing; GC in old space requested").unwrap();
        assert_eq!((g.cause, g.pause_ms), ("mark-compact", 5.25));
        assert!(parse_line("[1:0x1] 5 ms: Scavenge 1 (1) -> 1 (1) MB, pooled: 0 MB").is_err());
        let g = parse_line("[23150:0x3cc9f000]     2487 ms: Scavenge (during sweeping) 103.8 (137.4) -> 70.9 (135.1) MB, pooled: 8.5 MB, 84.82 / 0.00 ms (average mu = 0.789, current mu = 0.758) allocation failure; ").unwrap();
        assert_eq!(g.collector, "Scavenge");
        assert_eq!((g.cause, g.pause_ms), ("scavenge", 84.82));
    }

    #[test]
    fn keeps_other_lines_apart() {
        let t = parse_trace([
            "hello from the script",
            "[1:0x1]  5 ms: Scavenge 4.0 (5.0) -> 3.0 (5.0) MB, 0.50 / 0.00 ms  (average mu = 1.000, current mu = 1.000) allocation failure;",
            "[1:0x1]  6 ms: Teleport 4.0 (5.0) -> 3.0 (5.0) MB, 0.50 / 0.00 ms",
            "[1:0x1] Memory allocator,       used:   4096 KB, available: 1000 KB",
        ]);
        assert_eq!(t.gcs.len(), 1);
        assert_eq!(t.unparsed.len(), 2);
    }

    #[test]
    fn rejects_malformed_lines() {
        assert!(parse_line("[1:0x1] 5 ms: Scavenge").is_err());
        assert!(parse_line("[1:0x1] x ms: Scavenge 1 (1) -> 1 (1) MB, 1 / 0 ms").is_err());
        assert!(parse_line("[1:0x1] 5 ms: Scavenge 1 (1) -> 1 (1) MB, -1 / 0 ms").is_err());
        assert!(parse_line("no prefix 5 ms: Scavenge 1 (1) -> 1 (1) MB, 1 / 0 ms").is_err());
    }
}
