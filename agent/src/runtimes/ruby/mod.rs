//! Ruby (CRuby): its garbage collector's stops, from `libruby`'s USDT
//! probes `ruby:gc__mark__begin/end` and `ruby:gc__sweep__begin/end`.
//!
//! What the intervals are (Ruby 3.1's `gc.c`, `docs/design.md` "Ruby"):
//! a collection's marking runs between the mark probes with the Global VM
//! Lock held, and the sweep steps a non-incremental marking runs inside it
//! are part of that pause, so the BPF side (`ebpf/src/ruby.rs`) does not
//! record them again; a lazy sweep step later, on allocation, is a pause
//! of its own. Both are `Kind::GcPause`, with causes `mark` and `sweep`.
//! The probes carry no argument and the minor/major decision is taken
//! inside the marking; on Ruby 3.1 the BPF side reads it from
//! `objspace->flags` at `gc__mark__end` (causes `minor`, `major`; the
//! address comes from [`layout`]), elsewhere the cause is `mark` for both.
//! An incremental major marking's later steps have no probe: only its
//! first step (the roots) is seen.

mod detect;
mod layout;

use pausewatch_common::{
    Kind, RUBY_CAUSE_MAJOR, RUBY_CAUSE_MARK, RUBY_CAUSE_MINOR, RUBY_CAUSE_SWEEP,
};

use super::{
    CauseText, RuntimeModule,
    support::{self, Support, Tested},
};
use crate::discovery::{Discovered, DiscoveryError, Process};

/// The Ruby module.
pub struct Ruby;

/// The interpreters CI tests, against `GC.stat` and `GC::Profiler`.
const TESTED: &[Tested] = &[Tested {
    series: "3.1",
    test: "e2e_ruby: Ruby 3.1 (Debian ruby3.1)",
}];

impl RuntimeModule for Ruby {
    fn label(&self) -> &'static str {
        "ruby"
    }

    fn display_name(&self) -> &'static str {
        "Ruby (libruby-3.x.so with USDT probes)"
    }

    fn programs(&self) -> &'static [&'static str] {
        &[
            detect::PROBES[0].2,
            detect::PROBES[1].2,
            detect::PROBES[2].2,
            detect::PROBES[3].2,
        ]
    }

    fn detect(&self, process: &Process) -> Result<Option<Discovered>, DiscoveryError> {
        detect::detect(process)
    }

    fn support(&self, version: &str) -> Support {
        support::from_table(TESTED, version, support::major_minor)
    }

    fn cause(&self, kind: Kind, cause: u64) -> CauseText {
        CauseText::Known(match (kind, cause) {
            (Kind::GcPause, RUBY_CAUSE_MARK) => "mark".to_string(),
            (Kind::GcPause, RUBY_CAUSE_SWEEP) => "sweep".to_string(),
            (Kind::GcPause, RUBY_CAUSE_MINOR) => "minor".to_string(),
            (Kind::GcPause, RUBY_CAUSE_MAJOR) => "major".to_string(),
            _ => cause.to_string(),
        })
    }

    /// Markings and lazy sweep steps are both collector work with the GVL
    /// held (the default: every `GcPause`), so `gc_share` holds both, and
    /// `gc_per_min` counts sweep steps too; Ruby's rules count
    /// collections as the pauses that are not `sweep`.
    fn is_gc(&self, kind: Kind, _cause: &str) -> bool {
        kind == Kind::GcPause
    }

    /// A major collection marks the whole heap (`mark`, where minor and
    /// major could not be told apart, is not counted as one).
    fn is_full_gc(&self, cause: &str) -> bool {
        cause == "major"
    }

    fn default_rules(&self) -> &'static str {
        include_str!("rules.toml")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_and_semantics() {
        assert_eq!(
            Ruby.cause(Kind::GcPause, RUBY_CAUSE_MARK),
            CauseText::Known("mark".to_string())
        );
        assert_eq!(
            Ruby.cause(Kind::GcPause, RUBY_CAUSE_SWEEP),
            CauseText::Known("sweep".to_string())
        );
        assert!(Ruby.counts_as_stall(Kind::GcPause));
        assert!(Ruby.is_gc(Kind::GcPause, "sweep"));
        assert!(!Ruby.is_full_gc("mark"));
        assert!(Ruby.is_full_gc("major"));
        assert_eq!(
            Ruby.cause(Kind::GcPause, RUBY_CAUSE_MINOR),
            CauseText::Known("minor".to_string())
        );
        assert_eq!(
            Ruby.support("3.1.2"),
            Support::Tested("e2e_ruby: Ruby 3.1 (Debian ruby3.1)")
        );
        assert_eq!(Ruby.support("3.3"), Support::Expected);
    }
}
