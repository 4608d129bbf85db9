//! What the agent publishes each interval: the collector's snapshot, shared
//! as it is, with the rule engine's verdicts on it beside it.

use std::sync::Arc;

use super::Verdict;
use crate::collect::Snapshot;

/// One published interval, read by the exporter and the live summary.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The collector's snapshot (the rule engine's history holds it too).
    pub snapshot: Arc<Snapshot>,
    /// The rule engine's verdict per process.
    pub verdicts: Vec<Verdict>,
}

impl From<Snapshot> for Report {
    /// A snapshot no rule has judged (yet).
    fn from(snapshot: Snapshot) -> Report {
        Report {
            snapshot: Arc::new(snapshot),
            verdicts: Vec::new(),
        }
    }
}
