//! Profiles: one word per process for what kind of workload it is, decided
//! from the rules' votes and held steady by hysteresis.

use std::collections::BTreeMap;

use super::file::Severity;

/// Profiles that always exist (exported even when no rule votes for them).
/// `balanced` is what a process is when no rule votes: busy enough not to
/// be idle, without a pause problem.
pub const PROFILES: [&str; 5] = ["throughput", "latency", "mixed", "idle", "balanced"];

/// The profile when no rule votes.
pub const FALLBACK: &str = "balanced";

/// The profile the votes of one evaluation point to.
///
/// Votes are weighted by severity. Both `throughput` and `latency` voted
/// means `mixed`; otherwise the heaviest non-idle profile wins (ties by
/// name, so the result is stable); `idle` only wins when nothing else got a
/// vote, and [`FALLBACK`] when nothing did.
pub fn candidate<'a>(votes: impl IntoIterator<Item = (&'a str, Severity)>) -> String {
    let mut weights: BTreeMap<&str, u32> = BTreeMap::new();
    for (profile, severity) in votes {
        *weights.entry(profile).or_default() += severity.weight();
    }
    if weights.contains_key("throughput") && weights.contains_key("latency") {
        return "mixed".into();
    }
    let busy =
        weights
            .iter()
            .filter(|(p, _)| **p != "idle")
            .fold(None::<(&str, u32)>, |best, (p, w)| match best {
                Some((_, b)) if b >= *w => best,
                _ => Some((p, *w)),
            });
    match busy {
        Some((p, _)) => p.into(),
        None if weights.contains_key("idle") => "idle".into(),
        None => FALLBACK.into(),
    }
}

/// Hysteresis for one process: a new profile is reported only after it has
/// been the candidate `confirm` evaluations in a row, so a feature that
/// hovers on a threshold does not make the profile flap.
#[derive(Clone, Debug)]
pub struct Hysteresis {
    confirm: u32,
    current: Option<String>,
    pending: Option<(String, u32)>,
}

impl Hysteresis {
    /// A process with no profile yet.
    pub fn new(confirm: u32) -> Self {
        Hysteresis {
            confirm: confirm.max(1),
            current: None,
            pending: None,
        }
    }

    /// Changes how many wins in a row a switch needs (after a reload).
    pub fn set_confirm(&mut self, confirm: u32) {
        self.confirm = confirm.max(1);
    }

    /// Feeds one evaluation's candidate; returns the profile to report.
    /// The first candidate is taken at once: there is nothing to flap from.
    pub fn update(&mut self, candidate: &str) -> &str {
        match &self.current {
            None => {
                self.current = Some(candidate.to_string());
                self.pending = None;
            }
            Some(c) if c == candidate => self.pending = None,
            Some(_) => {
                let n = match &self.pending {
                    Some((p, n)) if p == candidate => n + 1,
                    _ => 1,
                };
                if n >= self.confirm {
                    self.current = Some(candidate.to_string());
                    self.pending = None;
                } else {
                    self.pending = Some((candidate.to_string(), n));
                }
            }
        }
        self.current.as_deref().unwrap_or(FALLBACK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Severity::{Critical, Info, Warning};

    #[test]
    fn votes_pick_a_profile() {
        assert_eq!(candidate([]), "balanced");
        assert_eq!(candidate([("idle", Info)]), "idle");
        assert_eq!(candidate([("idle", Info), ("latency", Info)]), "latency");
        assert_eq!(
            candidate([("throughput", Warning), ("latency", Info)]),
            "mixed"
        );
        assert_eq!(candidate([("batch", Info), ("custom", Critical)]), "custom");
        assert_eq!(candidate([("b", Info), ("a", Info)]), "a");
    }

    #[test]
    fn a_profile_on_a_threshold_edge_does_not_flap() {
        let mut h = Hysteresis::new(3);
        assert_eq!(h.update("throughput"), "throughput");
        // Alternating candidates never win three in a row.
        for _ in 0..10 {
            assert_eq!(h.update("mixed"), "throughput");
            assert_eq!(h.update("throughput"), "throughput");
        }
        assert_eq!(h.update("mixed"), "throughput");
        assert_eq!(h.update("mixed"), "throughput");
        assert_eq!(h.update("mixed"), "mixed");
        // A streak broken by another candidate starts over.
        assert_eq!(h.update("idle"), "mixed");
        assert_eq!(h.update("idle"), "mixed");
        assert_eq!(h.update("latency"), "mixed");
        assert_eq!(h.update("idle"), "mixed");
        h.set_confirm(1);
        assert_eq!(h.update("idle"), "idle");
    }
}
