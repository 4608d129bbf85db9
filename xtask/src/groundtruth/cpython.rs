//! CPython's own account of its collections, as the bundled workload
//! (`workloads/python/gc_cycles.py`) records it with `gc.callbacks` and
//! reports it on its `done` line.

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// The workload's report: per generation (index 0, 1, 2) how many
/// collections ran and how long they took in total.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct GcReport {
    /// Collections per generation.
    pub counts: [u64; 3],
    /// Summed duration per generation, `start` to `stop` callback, in ns.
    pub durations_ns: [u64; 3],
    /// Length of the measured phase, in ns.
    pub elapsed_ns: u64,
    /// Rounds of allocation done (the workload's unit of work).
    pub rounds: u64,
    /// Rounds per second: the workload's throughput.
    pub rounds_per_second: f64,
}

impl GcReport {
    /// The `cause` label the agent gives generation `g`.
    pub fn cause(g: usize) -> String {
        format!("gen{g}")
    }
}

/// Parses the JSON of the workload's `done` line.
pub fn parse_report(json: &str) -> Result<GcReport> {
    let report: GcReport = serde_json::from_str(json).with_context(|| {
        format!("the CPython workload's report is not what it should be: {json}")
    })?;
    if report.counts.iter().sum::<u64>() == 0 {
        bail!("the CPython workload reports no collection at all: {json}");
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_done_line() {
        let r = parse_report(
            r#"{"counts": [1210, 124, 17], "durations_ns": [882007000, 626862000, 356208000],
                "elapsed_ns": 3000000000, "rounds": 2202, "rounds_per_second": 734.0}"#,
        )
        .unwrap();
        assert_eq!(r.counts, [1210, 124, 17]);
        assert_eq!(r.durations_ns[2], 356_208_000);
        assert_eq!(GcReport::cause(1), "gen1");
    }

    #[test]
    fn rejects_bad_reports() {
        assert!(parse_report("{}").is_err());
        assert!(parse_report("not json").is_err());
        let none = r#"{"counts": [0, 0, 0], "durations_ns": [0, 0, 0], "elapsed_ns": 1,
                       "rounds": 0, "rounds_per_second": 0.0}"#;
        assert!(
            parse_report(none)
                .unwrap_err()
                .to_string()
                .contains("no collection")
        );
    }
}
