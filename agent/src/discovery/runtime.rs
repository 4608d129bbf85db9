//! The runtimes pausewatch knows, and the one place that picks a process's.

use pausewatch_common::{ArgSpec, GO_CAUSE_LEN_SHIFT, GO_CAUSE_STRING, Kind};

use super::{Binary, DiscoveryError, Process, cpython, go, hotspot, ruby, v8};
use crate::probes::usdt::UsdtProbe;

/// A supported language runtime.
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
    /// CRuby, the reference Ruby interpreter (`libruby`).
    Ruby,
}

impl Runtime {
    /// Every supported runtime, in detection order.
    pub const ALL: [Runtime; 5] = [
        Runtime::HotSpot,
        Runtime::Go,
        Runtime::CPython,
        Runtime::V8,
        Runtime::Ruby,
    ];

    /// The `runtime` label value.
    pub const fn label(self) -> &'static str {
        match self {
            Runtime::HotSpot => "hotspot",
            Runtime::CPython => "cpython",
            Runtime::V8 => "v8",
            Runtime::Go => "go",
            Runtime::Ruby => "ruby",
        }
    }

    /// What the user knows it as, for messages.
    pub const fn display_name(self) -> &'static str {
        match self {
            Runtime::HotSpot => "HotSpot JVMs (libjvm.so with USDT probes)",
            Runtime::CPython => "CPython (python3.x or libpython3.x.so with USDT probes)",
            Runtime::V8 => "Node.js (V8 symbols in node or libnode.so)",
            Runtime::Go => "Go programs (Go 1.19, 1.21 and later)",
            Runtime::Ruby => "Ruby (libruby-3.x.so with USDT probes)",
        }
    }

    /// Text for a cause id recorded by this runtime's BPF programs, when it
    /// can be decided without reading the target's memory.
    pub fn static_cause(self, kind: Kind, cause: u64) -> Option<String> {
        match (self, kind) {
            (Runtime::HotSpot, Kind::GcPause | Kind::GcConcurrent) => {
                Some(if cause == 0 { "minor" } else { "full" }.to_string())
            }
            (Runtime::CPython, Kind::GcPause) => Some(cpython::cause_name(cause)),
            (Runtime::V8, Kind::GcPause) => Some(v8::cause_name(cause)),
            (Runtime::Ruby, Kind::GcPause) => Some(ruby::cause_name(cause)),
            (Runtime::Go, Kind::Stw) if cause & GO_CAUSE_STRING == 0 => Some(
                go::STW_REASONS
                    .get(cause as usize)
                    .map_or_else(|| format!("stw_reason_{cause}"), |s| (*s).to_string()),
            ),
            _ => None,
        }
    }

    /// The (address, length) of a Go string in the target that names a
    /// cause id of `kind`, for causes encoded with `GO_CAUSE_STRING`.
    pub fn cause_go_string(self, kind: Kind, cause: u64) -> Option<(u64, usize)> {
        if self != Runtime::Go || kind != Kind::Stw || cause & GO_CAUSE_STRING == 0 {
            return None;
        }
        let len = (cause & !GO_CAUSE_STRING) >> GO_CAUSE_LEN_SHIFT;
        Some((cause & ((1 << GO_CAUSE_LEN_SHIFT) - 1), len as usize))
    }

    /// Whether a cause id of `kind` is an address of a C string in the target.
    pub fn cause_is_string_address(self, kind: Kind) -> bool {
        matches!(
            (self, kind),
            (
                Runtime::HotSpot,
                Kind::Safepoint | Kind::TimeToSafepoint | Kind::VmOperation
            )
        )
    }
}

/// Where the argument a BPF program reads comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProgramArg {
    /// The program reads no argument.
    None,
    /// A USDT argument, decoded from the note.
    Usdt(ArgSpec),
}

/// One uprobe to attach.
#[derive(Clone, Debug)]
pub struct ProbeAttach {
    /// Name of the BPF program in the embedded object.
    pub program: &'static str,
    /// What it is, for messages: `provider:name` or a symbol.
    pub probe: String,
    /// The binary, held open; uprobes attach at [`Binary::path`].
    pub binary: Binary,
    /// File offset of the instruction to probe.
    pub file_offset: u64,
    /// File offset of the probe's USDT semaphore, which the kernel keeps
    /// raised while the probe is attached (see `bpf::refctr`); `None` when
    /// the probe has no semaphore or is not a USDT probe.
    pub ref_ctr_offset: Option<u64>,
    /// The argument the program reads.
    pub arg: ProgramArg,
}

impl ProbeAttach {
    /// The uprobe for one location of a USDT probe in `binary`, with the
    /// probe's semaphore and, when the program reads it, its first argument.
    pub fn from_usdt(
        note: &UsdtProbe,
        program: &'static str,
        binary: &Binary,
        reads_arg: bool,
    ) -> Result<ProbeAttach, DiscoveryError> {
        let arg = if reads_arg {
            let a = note.arg(0).map_err(|e| DiscoveryError::Probes {
                path: binary.shown().to_path_buf(),
                source: Box::new(e),
            })?;
            ProgramArg::Usdt(a.to_bpf())
        } else {
            ProgramArg::None
        };
        Ok(ProbeAttach {
            program,
            probe: format!("{}:{}", note.provider, note.name),
            binary: binary.clone(),
            file_offset: note.file_offset,
            ref_ctr_offset: note.semaphore_offset,
            arg,
        })
    }
}

/// A process with a recognised runtime and the probes to attach to it.
#[derive(Clone, Debug)]
pub struct Target {
    /// The process.
    pub process: Process,
    /// Its runtime.
    pub runtime: Runtime,
    /// The runtime's version, or `unknown`.
    pub version: String,
    /// Uprobes to attach.
    pub probes: Vec<ProbeAttach>,
}

/// Inspects `pid` and returns its runtime and probes.
pub fn detect(pid: u32) -> Result<Target, DiscoveryError> {
    detect_in(Process::inspect(pid)?)
}

/// Returns the runtime and probes of an inspected process.
pub fn detect_in(process: Process) -> Result<Target, DiscoveryError> {
    for runtime in Runtime::ALL {
        let found = match runtime {
            Runtime::HotSpot => hotspot::detect(&process)?,
            Runtime::CPython => cpython::detect(&process)?,
            Runtime::V8 => v8::detect(&process)?,
            Runtime::Go => go::detect(&process)?,
            Runtime::Ruby => ruby::detect(&process)?,
        };
        if let Some(target) = found {
            return Ok(target);
        }
    }
    Err(DiscoveryError::NoSupportedRuntime {
        pid: process.pid,
        comm: process.comm,
        supported: Runtime::ALL
            .iter()
            .map(|r| r.display_name())
            .collect::<Vec<_>>()
            .join(", "),
    })
}
