//! CPython, the reference Python interpreter: its cyclic garbage
//! collections, from the interpreter (`libpython3.x.so` or a statically
//! linked `python3.x` executable) and its USDT collection probes.
//!
//! `python:gc__start(generation)` fires in `gc_collect_main` before the
//! collector does anything, `python:gc__done(collected)` when it is done:
//! together they bracket every collection, automatic or `gc.collect()`.
//! CPython guards both with semaphores (the `.probes` section), so the
//! probes only fire while a tracer holds the semaphore raised; the loader
//! lets the kernel do that (`ProbeAttach::ref_ctr_offset`).
//!
//! An interpreter built without the probes (pyenv, python.org, most
//! hand-built ones) is traced, when its symbol table still names the
//! collector's `gc_collect_main` (a static function, so only in an
//! unstripped `.symtab`), with a uprobe on that function's entry (the
//! generation is its second argument in CPython 3.8 to 3.12) and a return
//! probe on its exit, and the agent says so with a warning. The caveat:
//! if the compiler inlined or cloned `gc_collect_main` into a caller
//! (`gc_collect_main.constprop.0`, an LTO build), the collections that run
//! the copy are not seen; the ones seen are timed correctly.

mod detect;

use pausewatch_common::Kind;

use super::{
    CauseText, RuntimeModule,
    support::{self, Support, Tested},
};
use crate::discovery::{Discovered, DiscoveryError, Process};

/// The CPython module.
pub struct CPython;

/// The interpreters CI tests, each against `gc.callbacks`.
const TESTED: &[Tested] = &[
    Tested {
        series: "3.11",
        test: "e2e_cpython: CPython 3.11",
    },
    Tested {
        series: "3.13",
        test: "e2e_mounts: CPython 3.13 in a chroot and behind pivot_root",
    },
    Tested {
        series: "3.14",
        test: "e2e_mounts: CPython 3.14 in a chroot",
    },
];

impl RuntimeModule for CPython {
    fn label(&self) -> &'static str {
        "cpython"
    }

    fn display_name(&self) -> &'static str {
        "CPython (python3.x or libpython3.x.so with USDT probes)"
    }

    fn programs(&self) -> &'static [&'static str] {
        &[
            detect::PROBES[0].2,
            detect::PROBES[1].2,
            detect::FALLBACK_PROGRAMS[0],
            detect::FALLBACK_PROGRAMS[1],
        ]
    }

    fn detect(&self, process: &Process) -> Result<Option<Discovered>, DiscoveryError> {
        detect::detect(process)
    }

    fn support(&self, version: &str) -> Support {
        support::from_table(TESTED, version, support::major_minor)
    }

    /// The generation `gc__start` reported.
    fn cause(&self, kind: Kind, cause: u64) -> CauseText {
        match kind {
            Kind::GcPause => CauseText::Known(format!("gen{cause}")),
            _ => CauseText::Known(cause.to_string()),
        }
    }

    fn is_full_gc(&self, cause: &str) -> bool {
        cause == "gen2"
    }

    fn default_rules(&self) -> &'static str {
        include_str!("rules.toml")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_name_the_collections() {
        assert_eq!(
            CPython.cause(Kind::GcPause, 2),
            CauseText::Known("gen2".to_string())
        );
        assert!(CPython.is_full_gc("gen2"));
        assert!(!CPython.is_full_gc("gen0"));
        assert!(CPython.counts_as_stall(Kind::GcPause));
        assert_eq!(
            CPython.support("3.11"),
            Support::Tested("e2e_cpython: CPython 3.11")
        );
        assert_eq!(CPython.support("3.12"), Support::Expected);
    }
}
