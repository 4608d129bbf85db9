//! V8, the JavaScript engine of Node.js: its collections, from the heap's
//! collector functions in `node` (or a mapped `libnode.so`, as Debian
//! builds it), found by demangled name.
//!
//! V8 has no USDT probes, so the pause is bracketed by uprobes on the
//! functions that delimit what `--trace-gc` reports. In V8 11.3 (Node 20),
//! `Heap::CollectGarbage` does, on the collecting thread:
//!
//! ```text
//! GCTracer::StartObservablePause()        takes current_.start_time
//!   GarbageCollectionPrologue, StartCycle, StartAtomicPause
//!   Heap::PerformGarbageCollection(collector, reason, collector_reason)
//!   GarbageCollectionEpilogue, StopAtomicPause
//! GCTracer::StopObservablePause()         takes current_.end_time
//! GCTracer::UpdateStatistics(collector)   prints the --trace-gc line
//! ```
//!
//! and `--trace-gc`'s pause (`Scavenge ... MB, 1.14 / 0.00 ms`) is
//! `end_time - start_time`. So the interval runs from the return of
//! `StartObservablePause` to the return of `StopObservablePause` (uretprobes,
//! each a few instructions after V8's timestamp; see `ebpf/src/v8.rs` for
//! why returns rather than entries), and `PerformGarbageCollection`'s
//! first argument (after `this`) names the collector. The line itself is
//! printed after the interval, so it does not inflate it. Those functions
//! are in different translation units (gc-tracer.cc, heap.cc) or exported
//! and large, so the calls are real calls that a uprobe on the entry sees;
//! a binary where one is missing gets a clear error naming it.

mod detect;

use pausewatch_common::Kind;

use super::{
    CauseText, RuntimeModule,
    support::{self, Support, Tested},
};
use crate::discovery::{Discovered, DiscoveryError, Process};

/// The V8 module.
pub struct V8;

/// The V8 releases CI tests (by the Node release that ships them), each
/// against `--trace-gc`.
const TESTED: &[Tested] = &[
    Tested {
        series: "10.2",
        test: "e2e_v8: Node 18",
    },
    Tested {
        series: "11.3",
        test: "e2e_v8: Node 20",
    },
    Tested {
        series: "12.4",
        test: "e2e_v8: Node 22",
    },
    Tested {
        series: "13.6",
        test: "e2e_v8: Node 24",
    },
    Tested {
        series: "14.6",
        test: "e2e_v8: Node 26",
    },
];

/// Text of a collection's cause: V8's `GarbageCollector` enum plus one, as
/// recorded by `v8_collector` (0: the collector was not seen).
fn cause_name(cause: u64) -> String {
    match cause {
        1 => "scavenge".to_string(),
        2 => "mark-compact".to_string(),
        3 => "minor-mark-compact".to_string(),
        0 => "unknown".to_string(),
        n => format!("collector_{}", n - 1),
    }
}

impl RuntimeModule for V8 {
    fn label(&self) -> &'static str {
        "v8"
    }

    fn display_name(&self) -> &'static str {
        "Node.js (V8 symbols in node or libnode.so)"
    }

    fn programs(&self) -> &'static [&'static str] {
        &[
            detect::PROBES[0].1,
            detect::PROBES[1].1,
            detect::PROBES[2].1,
        ]
    }

    fn detect(&self, process: &Process) -> Result<Option<Discovered>, DiscoveryError> {
        detect::detect(process)
    }

    fn support(&self, version: &str) -> Support {
        support::from_table(TESTED, version, support::major_minor)
    }

    fn cause(&self, kind: Kind, cause: u64) -> CauseText {
        match kind {
            Kind::GcPause => CauseText::Known(cause_name(cause)),
            _ => CauseText::Known(cause.to_string()),
        }
    }

    fn is_full_gc(&self, cause: &str) -> bool {
        cause == "mark-compact"
    }

    fn default_rules(&self) -> &'static str {
        include_str!("rules.toml")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cause_names() {
        assert_eq!(cause_name(1), "scavenge");
        assert_eq!(cause_name(2), "mark-compact");
        assert_eq!(cause_name(3), "minor-mark-compact");
        assert_eq!(cause_name(0), "unknown");
        assert_eq!(cause_name(9), "collector_8");
        assert!(V8.is_full_gc("mark-compact"));
        assert_eq!(V8.support("9.4.146.26-node.26"), Support::Expected);
        assert_eq!(
            V8.support("13.6.233.17-node.63"),
            Support::Tested("e2e_v8: Node 24")
        );
    }
}
