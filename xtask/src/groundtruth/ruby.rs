//! Ruby's own account of its collections over the measured window, as the
//! bundled workload (`workloads/ruby/gc_alloc.rb`) reads it from `GC.stat`,
//! `GC.total_time` and `GC::Profiler.raw_data` and reports it on its `done`
//! line.
//!
//! What each number covers (Ruby 3.1's `gc.c`, see `docs/design.md`):
//! a profiler record's `GC_TIME` is process CPU time from just before the
//! collection's marking (`gc__mark__begin`) to just after it
//! (`gc__mark__end`), plus every sweep step that runs after it
//! (`gc__sweep__begin/end` outside a marking): the intervals the agent
//! records. `GC.total_time` is CPU time from every `gc_enter` to `gc_exit`,
//! which also holds the incremental marking steps no probe brackets.

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// `GC.stat` counters, end of the window minus its start.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct StatWindow {
    /// Collections started (`GC.count`).
    pub count: u64,
    /// Minor (young generation) collections.
    pub minor_gc_count: u64,
    /// Major (whole heap) collections.
    pub major_gc_count: u64,
    /// `GC.stat(:time)`: milliseconds, each end truncated by Ruby.
    pub time: u64,
}

/// One `GC::Profiler` record: one collection.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Record {
    /// `GC_FLAGS[:major_by]`: why it was major (`nofree`, `oldgen`,
    /// `force`, ...), or `None` for a minor collection.
    pub major_by: Option<String>,
    /// `GC_FLAGS[:gc_by]`: what started it (`newobj`, `malloc`, `method`, ...).
    pub gc_by: Option<String>,
    /// `GC_FLAGS[:immediate_sweep]`: swept all at once inside the marking.
    pub immediate_sweep: bool,
    /// `GC_TIME` in seconds of process CPU time.
    pub gc_time_s: f64,
}

impl Record {
    /// Whether this collection was major.
    pub fn is_major(&self) -> bool {
        self.major_by.is_some()
    }
}

/// The workload's report of the window.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct GcReport {
    /// `GC.stat` over the window.
    pub stat: StatWindow,
    /// `GC.total_time` over the window, in ns.
    pub total_time_ns: u64,
    /// Every profiler record of the window, in order.
    pub records: Vec<Record>,
    /// Length of the window (monotonic clock), in ns.
    pub elapsed_ns: u64,
    /// Rounds of allocation done (the workload's unit of work).
    pub rounds: u64,
}

impl GcReport {
    /// Summed `GC_TIME` of the records, in ns.
    pub fn profiler_time_ns(&self) -> u64 {
        (self.records.iter().map(|r| r.gc_time_s).sum::<f64>() * 1e9).round() as u64
    }

    /// Major collections among the records.
    pub fn majors(&self) -> u64 {
        self.records.iter().filter(|r| r.is_major()).count() as u64
    }

    /// Minor collections among the records.
    pub fn minors(&self) -> u64 {
        self.records.len() as u64 - self.majors()
    }
}

/// Parses the JSON of the workload's `done` line and checks that its
/// sources agree with each other: one profiler record per collection
/// `GC.stat` counted, and the same minor/major split.
pub fn parse_report(json: &str) -> Result<GcReport> {
    let r: GcReport = serde_json::from_str(json)
        .with_context(|| format!("the Ruby workload's report is not what it should be: {json}"))?;
    if r.stat.count == 0 {
        bail!("the Ruby workload reports no collection at all: {json}");
    }
    if r.stat.minor_gc_count + r.stat.major_gc_count != r.stat.count {
        bail!(
            "GC.stat's minor ({}) and major ({}) collections do not add up to its count ({})",
            r.stat.minor_gc_count,
            r.stat.major_gc_count,
            r.stat.count
        );
    }
    if r.records.len() as u64 != r.stat.count || r.majors() != r.stat.major_gc_count {
        bail!(
            "GC::Profiler has {} records ({} major), GC.stat counted {} collections ({} major)",
            r.records.len(),
            r.majors(),
            r.stat.count,
            r.stat.major_gc_count
        );
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = r#"{"stat":{"count":3,"minor_gc_count":2,"major_gc_count":1,"time":5},
        "total_time_ns":5123456,
        "records":[
          {"major_by":null,"gc_by":"newobj","immediate_sweep":false,"gc_time_s":0.001},
          {"major_by":"nofree","gc_by":"newobj","immediate_sweep":false,"gc_time_s":0.0015},
          {"major_by":null,"gc_by":"newobj","immediate_sweep":false,"gc_time_s":0.00125}],
        "elapsed_ns":2000000000,"rounds":3593}"#;

    #[test]
    fn parses_the_done_line() {
        let r = parse_report(REPORT).unwrap();
        assert_eq!(r.stat.count, 3);
        assert_eq!(r.stat.time, 5);
        assert_eq!(r.total_time_ns, 5_123_456);
        assert_eq!((r.minors(), r.majors()), (2, 1));
        assert_eq!(r.profiler_time_ns(), 3_750_000);
        assert_eq!(r.records[1].major_by.as_deref(), Some("nofree"));
        assert!(!r.records[0].is_major());
    }

    #[test]
    fn rejects_reports_whose_sources_disagree() {
        assert!(parse_report("{}").is_err());
        assert!(parse_report("not json").is_err());
        let lost_record = REPORT.replace(
            r#"{"major_by":null,"gc_by":"newobj","immediate_sweep":false,"gc_time_s":0.00125}"#,
            "",
        );
        let lost_record = lost_record.replace("0.0015},\n", "0.0015}\n");
        let e = parse_report(&lost_record).unwrap_err().to_string();
        assert!(e.contains("2 records"), "{e}");
        let bad_split = REPORT.replace(r#""minor_gc_count":2"#, r#""minor_gc_count":1"#);
        let e = parse_report(&bad_split).unwrap_err().to_string();
        assert!(e.contains("do not add up"), "{e}");
        let none = r#"{"stat":{"count":0,"minor_gc_count":0,"major_gc_count":0,"time":0},
            "total_time_ns":0,"records":[],"elapsed_ns":1,"rounds":0}"#;
        let e = parse_report(none).unwrap_err().to_string();
        assert!(e.contains("no collection"), "{e}");
    }
}
