//! Go: the runtime's stop-the-world phases, in any Go executable.
//!
//! A process is a Go program when its executable has a `.go.buildinfo`
//! section (also in static binaries and in containers: the file is read
//! through `/proc/PID/exe`, see [`crate::discovery::binary`]). Functions come from the
//! pc-line table, which
//! `-ldflags=-s -w` keeps, at the text base of the module data
//! ([`module`]), so stripped, PIE and externally linked
//! binaries need no special case.
//!
//! What is probed depends on the runtime version, read from the sources of
//! each release (`src/runtime/proc.go`, `mgc.go`):
//!
//! - Go 1.19: `stopTheWorldWithSema()` takes no argument;
//!   `stopTheWorld(reason string)` wraps it for every reason but the two GC
//!   phases, which `gcStart` and `gcMarkDone` stop directly. The string is
//!   read at `stopTheWorld` and handed over in its closure
//!   `stopTheWorld.func1` (the goroutine may change threads while it waits
//!   for `worldsema`); the GC phases are named by `finishsweep_m`
//!   (only called with the world stopped for sweep termination) and
//!   `gcMarkTermination` (mark termination); `readmemstats_m` names
//!   `ReadMemStats` even when its thread changed while waiting for
//!   `worldsema`.
//! - Go 1.21 to 1.27: `stopTheWorldWithSema(reason stwReason)`, a
//!   `uint8` in AL under the register ABI; the same `stwReasonStrings` table
//!   in all of them.
//! - Go 1.23 and later also pass the runtime's stopping clocks to
//!   `startTheWorldWithSema(now int64, w worldStop)` (`w.startedStopping`
//!   in RCX, `w.finishedStopping` in RDI): a probe after its stack check records the
//!   stopping time, the runtime's `/sched/pauses/stopping/*:seconds`, in the
//!   `time_to_safepoint` family. Go 1.22's `worldStop` holds only the start,
//!   and 1.21's `startTheWorldWithSema` takes no argument (docs/design.md).
//!
//! In both, the pause ends in `startTheWorldWithSema` at its call of
//! `wakep()`: the Ps run again and the runtime has taken the timestamp that
//! gctrace and `runtime/metrics` use as the end of the pause. No uretprobe:
//! the call site is found by decoding the body ([`crate::probes::disasm`]).
//!
//! Nothing is attached unless every probe address is proven: each probed
//! function decodes cleanly from its entry to its end, every direct call in
//! it lands on a function entry of the table (which a wrong text base would
//! break), and each probe sits on one of its instruction boundaries (the
//! entry, or the one `CALL runtime.wakep`). From Go 1.21 the binary's own
//! `stwReasonStrings` must also begin with [`STW_REASONS`], the names the
//! reason byte is read with. A Go release newer than the newest tested one
//! is traced, with a warning, only when all of that holds.

pub mod buildinfo;
pub mod detect;
pub mod module;
pub mod pclntab;

use pausewatch_common::{GO_CAUSE_LEN_SHIFT, GO_CAUSE_STRING, Kind};

use super::{CauseText, RuntimeModule, support::Support};
use crate::discovery::{Binary, Discovered, DiscoveryError, Process};

pub use detect::{GoBinary, GoBinaryError, Layout, STW_REASONS, describe, layout, probes};

/// The Go module.
pub struct Go;

/// Every BPF program a Go layout attaches (`detect::probes_in`).
const PROGRAMS: [&str; 6] = [
    "go_stw_begin",
    "go_stw_reason",
    "go_stw_reason_here",
    "go_stw_cause",
    "go_stw_end",
    "go_stw_stopped",
];

impl RuntimeModule for Go {
    fn label(&self) -> &'static str {
        "go"
    }

    fn display_name(&self) -> &'static str {
        "Go programs (Go 1.19, 1.21 and later)"
    }

    fn programs(&self) -> &'static [&'static str] {
        &PROGRAMS
    }

    fn detect(&self, process: &Process) -> Result<Option<Discovered>, DiscoveryError> {
        detect::detect(process)
    }

    /// Go's tested releases are those with a tested probe layout: one
    /// list, in [`layout`].
    fn support(&self, version: &str) -> Support {
        match layout(version) {
            Some((_, detect::Support::Tested)) => Support::Tested("e2e_go: Go 1.19, 1.21 to 1.27"),
            _ if version == "unknown" => Support::Unknown,
            _ => Support::Expected,
        }
    }

    /// Detection warns about a newer release itself, naming the structural
    /// checks it passed.
    fn untested_warning(&self, _target: &Discovered) -> Option<String> {
        None
    }

    fn describe(&self, target: &Discovered) -> Result<Vec<String>, DiscoveryError> {
        let exe = Binary::open_exe(&target.process)?;
        let go = describe(exe.path()).map_err(|e| DiscoveryError::Unreadable {
            what: detect::FUNCTIONS,
            path: exe.shown().to_path_buf(),
            source: Box::new(e),
        })?;
        let mut lines = vec![format!(
            "symbols: {}",
            if go.stripped {
                "stripped (no .symtab), functions from .gopclntab"
            } else {
                "not stripped (.symtab present), functions from .gopclntab"
            }
        )];
        if let Some((text, found_by)) = go.text_base {
            lines.push(format!(
                "text base: {text:#x} (runtime.text, module data from {})",
                found_by.describe()
            ));
        }
        Ok(lines)
    }

    /// A `stwReason` number (Go 1.21+), or with `GO_CAUSE_STRING` the
    /// address and length of the reason string `stopTheWorld` got (Go 1.19).
    /// A stopping time (`TimeToSafepoint`) carries its stop-the-world's
    /// cause, so both are named alike.
    fn cause(&self, kind: Kind, cause: u64) -> CauseText {
        if !matches!(kind, Kind::Stw | Kind::TimeToSafepoint) {
            return CauseText::Known(cause.to_string());
        }
        if cause & GO_CAUSE_STRING != 0 {
            let len = (cause & !GO_CAUSE_STRING) >> GO_CAUSE_LEN_SHIFT;
            return CauseText::Bytes {
                addr: cause & ((1 << GO_CAUSE_LEN_SHIFT) - 1),
                len: len as usize,
            };
        }
        CauseText::Known(
            STW_REASONS
                .get(cause as usize)
                .map_or_else(|| format!("stw_reason_{cause}"), |s| (*s).to_string()),
        )
    }

    /// Go's collections are the stop-the-world phases the runtime names
    /// `GC sweep termination` / `GC mark termination`.
    fn is_gc(&self, kind: Kind, cause: &str) -> bool {
        kind == Kind::GcPause || (kind == Kind::Stw && cause.starts_with("GC "))
    }

    /// Go's collector is not generational (every cycle marks the whole
    /// heap), so no Go pause is "full" in that sense.
    fn is_full_gc(&self, _cause: &str) -> bool {
        false
    }

    fn default_rules(&self) -> &'static str {
        include_str!("rules.toml")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tested_releases_come_from_the_layouts() {
        assert!(matches!(Go.support("go1.27.3"), Support::Tested(_)));
        assert!(matches!(Go.support("go1.19.8"), Support::Tested(_)));
        assert_eq!(Go.support("go1.31.0"), Support::Expected);
        assert_eq!(
            Go.cause(Kind::Stw, 1),
            CauseText::Known("GC mark termination".to_string())
        );
        for kind in [Kind::Stw, Kind::TimeToSafepoint] {
            assert_eq!(
                Go.cause(kind, 7),
                CauseText::Known("read mem stats".to_string())
            );
            assert_eq!(
                Go.cause(kind, 40),
                CauseText::Known("stw_reason_40".to_string())
            );
        }
        assert!(!Go.counts_as_stall(Kind::TimeToSafepoint));
        assert!(Go.is_gc(Kind::Stw, "GC sweep termination"));
        assert!(!Go.is_gc(Kind::Stw, "read mem stats"));
        assert!(!Go.is_full_gc("GC mark termination"));
    }
}
