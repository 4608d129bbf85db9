//! The runtimes pausewatch traces, one folder each, behind one trait.
//!
//! Everything the agent knows about a runtime lives in its folder and is
//! reached through [`RuntimeModule`]: how to recognise it in a process and
//! which probes to attach, how its cause ids become text, which of its
//! pause kinds are stops of their own and which nest in another, what a
//! (full) collection is, its default rules, and which versions CI tests.
//! The rest of the agent holds a typed [`Runtime`] and asks its module, so
//! a new runtime is a new folder plus its lines in [`Runtime`]; the
//! compiler points at every one of them.

pub mod cpython;
pub mod go;
pub mod hotspot;
pub mod ruby;
pub mod support;
pub mod v8;

use std::fmt;

use pausewatch_common::Kind;

pub use support::Support;

use crate::discovery::{Discovered, DiscoveryError, Process};

/// A supported language runtime: the registry of [`RuntimeModule`]s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Runtime {
    /// OpenJDK HotSpot JVM.
    HotSpot,
    /// CPython, the reference Python interpreter.
    CPython,
    /// V8, the JavaScript engine of Node.js.
    V8,
    /// The Go runtime, in any Go executable.
    Go,
    /// CRuby, the reference Ruby interpreter.
    Ruby,
}

impl Runtime {
    /// Every supported runtime, in detection order: a process that embeds
    /// several (a Go program that loads libjvm) is the first one's.
    pub const ALL: [Runtime; 5] = [
        Runtime::HotSpot,
        Runtime::Go,
        Runtime::CPython,
        Runtime::V8,
        Runtime::Ruby,
    ];

    /// The runtime's module: the one place that maps a runtime to its code.
    pub fn module(self) -> &'static dyn RuntimeModule {
        match self {
            Runtime::HotSpot => &hotspot::HotSpot,
            Runtime::CPython => &cpython::CPython,
            Runtime::V8 => &v8::V8,
            Runtime::Go => &go::Go,
            Runtime::Ruby => &ruby::Ruby,
        }
    }

    /// The `runtime` label value, e.g. `hotspot`.
    pub fn label(self) -> &'static str {
        self.module().label()
    }

    /// The runtime whose label is `label`, if any.
    pub fn from_label(label: &str) -> Option<Runtime> {
        Runtime::ALL.into_iter().find(|r| r.label() == label)
    }

    /// Every runtime's label, comma-separated, for messages.
    pub fn labels() -> String {
        Runtime::ALL.map(Runtime::label).join(", ")
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Where the text of a cause id recorded by a BPF program comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CauseText {
    /// Known without reading the target.
    Known(String),
    /// A NUL-terminated string at this address in the target.
    CString(u64),
    /// Exactly `len` bytes at `addr` in the target (a Go string).
    Bytes {
        /// Address in the target.
        addr: u64,
        /// Length in bytes.
        len: usize,
    },
}

/// What the agent knows about one runtime.
///
/// Pause semantics default to "every pause kind is a stop of its own and
/// every `GcPause` a collection"; a runtime overrides what differs.
pub trait RuntimeModule: Sync {
    /// The `runtime` label value.
    fn label(&self) -> &'static str;

    /// What the user knows it as, for messages.
    fn display_name(&self) -> &'static str;

    /// Every BPF program of the embedded object this runtime may attach.
    fn programs(&self) -> &'static [&'static str];

    /// The runtime and probes of `process`, or `None` if it is not of this
    /// runtime.
    fn detect(&self, process: &Process) -> Result<Option<Discovered>, DiscoveryError>;

    /// How far `version` (as detection read it) is vouched for.
    fn support(&self, version: &str) -> Support;

    /// The warning to print when a traced version is not tested in CI, or
    /// `None` when there is nothing to say (or detection said it).
    fn untested_warning(&self, target: &Discovered) -> Option<String> {
        (self.support(&target.version) == Support::Expected).then(|| {
            format!(
                "pid {}: {} {} is not a version tested in CI; every probe the agent needs \
                 was found and checked, so it is traced (see `agent probes --pid {}`)",
                target.process.pid,
                self.label(),
                target.version,
                target.process.pid
            )
        })
    }

    /// Lines of `agent probes` beyond the common ones (a Go executable's
    /// symbols and text base).
    fn describe(&self, _target: &Discovered) -> Result<Vec<String>, DiscoveryError> {
        Ok(Vec::new())
    }

    /// Where the text of cause id `cause` of a `kind` pause comes from.
    fn cause(&self, kind: Kind, cause: u64) -> CauseText {
        let _ = kind;
        CauseText::Known(cause.to_string())
    }

    /// The exported name of a cause read from the target's memory.
    fn cause_from_target(&self, text: String) -> String {
        text
    }

    /// The pause kind that pauses of `kind` always run inside, if any: its
    /// time is already in that kind's, so it is not a stop of its own.
    fn nested_in(&self, kind: Kind) -> Option<Kind> {
        let _ = kind;
        None
    }

    /// Whether pauses of `kind` count towards the process's stall time.
    fn counts_as_stall(&self, kind: Kind) -> bool {
        kind.is_pause() && self.nested_in(kind).is_none()
    }

    /// Whether a pause series is a garbage collection.
    fn is_gc(&self, kind: Kind, cause: &str) -> bool {
        let _ = cause;
        kind == Kind::GcPause
    }

    /// Whether a collection's cause names a full (whole-heap) collection.
    fn is_full_gc(&self, cause: &str) -> bool;

    /// Whether a safepoint's cause is an operation the application asked
    /// for explicitly (HotSpot's `System.gc()`), for `explicit_gc_share`.
    fn is_explicit_gc(&self, cause: &str) -> bool {
        let _ = cause;
        false
    }

    /// The runtime's built-in rules: TOML `[[rule]]` tables in the format
    /// of `rules::file`, appended to the runtime-neutral ones.
    fn default_rules(&self) -> &'static str;
}

#[cfg(test)]
pub(crate) mod test_interpreter;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_unique_and_round_trip() {
        for r in Runtime::ALL {
            assert_eq!(Runtime::from_label(r.label()), Some(r));
        }
        let mut labels: Vec<&str> = Runtime::ALL.iter().map(|r| r.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Runtime::ALL.len());
        assert_eq!(Runtime::from_label("cobol"), None);
    }

    /// Every program a runtime asks for exists in the object the agent
    /// embeds, so a renamed BPF function fails here and not at attach.
    #[test]
    fn every_program_exists_in_the_embedded_object() {
        use object::{Object, ObjectSymbol};
        let object =
            object::File::parse(crate::bpf::EBPF_OBJECT).expect("the embedded object is ELF");
        let functions: Vec<&str> = object
            .symbols()
            .filter(|s| s.kind() == object::SymbolKind::Text)
            .filter_map(|s| s.name().ok())
            .collect();
        for r in Runtime::ALL {
            assert!(!r.module().programs().is_empty(), "{r} has no programs");
            for p in r.module().programs() {
                assert!(
                    functions.contains(p),
                    "{r} asks for BPF program {p}, which the embedded object lacks \
                     (it has {functions:?})"
                );
            }
        }
    }
}
