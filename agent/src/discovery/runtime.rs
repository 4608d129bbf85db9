//! The runtimes pausewatch knows, and the one place that picks a process's.

use std::path::PathBuf;

use pausewatch_common::{ArgSpec, Kind};

use super::{DiscoveryError, Process, hotspot};

/// A supported language runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Runtime {
    /// OpenJDK HotSpot JVM.
    HotSpot,
}

impl Runtime {
    /// Every supported runtime, in detection order.
    pub const ALL: [Runtime; 1] = [Runtime::HotSpot];

    /// The `runtime` label value.
    pub const fn label(self) -> &'static str {
        match self {
            Runtime::HotSpot => "hotspot",
        }
    }

    /// What the user knows it as, for messages.
    pub const fn display_name(self) -> &'static str {
        match self {
            Runtime::HotSpot => "HotSpot JVMs (libjvm.so with USDT probes)",
        }
    }

    /// Text for a cause id recorded by this runtime's BPF programs, when it
    /// can be decided without reading the target's memory.
    pub fn static_cause(self, kind: Kind, cause: u64) -> Option<String> {
        match (self, kind) {
            (Runtime::HotSpot, Kind::GcPause | Kind::GcConcurrent) => {
                Some(if cause == 0 { "minor" } else { "full" }.to_string())
            }
            _ => None,
        }
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
    /// The binary, as a path reachable from the host.
    pub binary: PathBuf,
    /// File offset of the instruction to probe.
    pub file_offset: u64,
    /// The argument the program reads.
    pub arg: ProgramArg,
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
