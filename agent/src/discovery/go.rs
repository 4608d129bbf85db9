//! Go: recognises a Go executable and finds its stop-the-world functions.
//!
//! A process is a Go program when its executable has a `.go.buildinfo`
//! section (also in static binaries and in containers: the file is read
//! through `/proc/PID/exe`, see [`super::binary`]). Functions are looked up in `.gopclntab`, which
//! `-ldflags=-s -w` keeps, so stripped binaries need no special case.
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
//! - Go 1.21, 1.22, 1.23: `stopTheWorldWithSema(reason stwReason)`, a
//!   `uint8` in AL under the register ABI; the same `stwReasonStrings` table
//!   in all three.
//!
//! In both, the pause ends in `startTheWorldWithSema` at its call of
//! `wakep()`: the Ps run again and the runtime has taken the timestamp that
//! gctrace and `runtime/metrics` use as the end of the pause. No uretprobe:
//! the call site is found by decoding the body ([`crate::probes::disasm`]).

use std::path::Path;

use object::{Object, ObjectSection};
use pausewatch_common::{ARG_CONST, ARG_REG, ArgSpec};

use super::{Binary, DiscoveryError, ProbeAttach, Process, ProgramArg, Runtime, Target};
use crate::probes::{
    Register, disasm,
    elf::{self, MappedFile},
    gobuildinfo, gopclntab,
};

/// `stwReasonStrings` of Go 1.21 to 1.23, indexed by `stwReason`.
pub const STW_REASONS: [&str; 17] = [
    "unknown",
    "GC mark termination",
    "GC sweep termination",
    "write heap dump",
    "goroutine profile",
    "goroutine profile cleanup",
    "all goroutines stack trace",
    "read mem stats",
    "AllThreadsSyscall",
    "GOMAXPROCS",
    "start trace",
    "stop trace",
    "CountPagesInUse (test)",
    "ReadMetricsSlow (test)",
    "ReadMemStatsSlow (test)",
    "PageCachePagesLeaked (test)",
    "ResetDebugLog (test)",
];
const STW_GC_MARK_TERM: i64 = 1;
const STW_GC_SWEEP_TERM: i64 = 2;
const STW_READ_MEM_STATS: i64 = 7;

/// Go versions with a known probe layout, for messages.
pub const SUPPORTED: &str = "Go 1.19, 1.21, 1.22 and 1.23";

const STOP: &str = "runtime.stopTheWorldWithSema";
const START: &str = "runtime.startTheWorldWithSema";
const WAKEP: &str = "runtime.wakep";

/// How a runtime version passes the stop-the-world reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Go 1.19: a string argument of `stopTheWorld`, GC phases by marker functions.
    ReasonString,
    /// Go 1.21 to 1.23: a `stwReason` byte argument of `stopTheWorldWithSema`.
    ReasonByte,
}

/// The probe layout of a Go version, if it is one this agent was written for.
pub fn layout(version: &str) -> Option<Layout> {
    match gobuildinfo::major_minor(version)? {
        (1, 19) => Some(Layout::ReasonString),
        (1, 21..=23) => Some(Layout::ReasonByte),
        _ => None,
    }
}

/// Why a Go binary's probes could not be found.
#[derive(Debug, thiserror::Error)]
pub enum GoBinaryError {
    /// Mapping or parsing the ELF file failed.
    #[error(transparent)]
    Elf(#[from] elf::ElfError),
    /// The file could not be opened.
    #[error("cannot open: {0}")]
    Io(#[from] std::io::Error),
    /// `.go.buildinfo` is unreadable.
    #[error(transparent)]
    BuildInfo(#[from] gobuildinfo::BuildInfoError),
    /// `.gopclntab` is missing or unreadable.
    #[error("no .gopclntab section (the binary was stripped of section headers or packed)")]
    NoPclntab,
    /// `.gopclntab` is malformed.
    #[error(transparent)]
    Pclntab(#[from] gopclntab::PclntabError),
    /// A runtime function is absent.
    #[error("function {0} not found in .gopclntab")]
    MissingFunction(&'static str),
    /// A function's code lies outside the file's loaded segments.
    #[error("function {0} lies outside the executable's loaded segments")]
    NotMapped(&'static str),
    /// `startTheWorldWithSema` does not call `wakep` exactly once.
    #[error(
        "runtime.startTheWorldWithSema calls runtime.wakep {found} times, expected once: \
         this runtime build differs from the Go sources the probes were written for"
    )]
    EndSite {
        /// Number of call sites found.
        found: usize,
    },
    /// A function's body could not be decoded.
    #[error("cannot decode {name}: {source}")]
    Disasm {
        /// The function.
        name: &'static str,
        /// The decoder's complaint.
        source: disasm::DisasmError,
    },
}

/// What the agent learned from a Go executable.
#[derive(Debug)]
pub struct GoBinary {
    /// `go1.21.9`.
    pub version: String,
    /// Whether `.symtab` is gone (`-ldflags=-s`): functions came from `.gopclntab` only.
    pub stripped: bool,
}

/// Returns the Go target in `process`, or `None` if its executable is not Go.
pub fn detect(process: &Process) -> Result<Option<Target>, DiscoveryError> {
    // An executable that cannot be opened or mapped (special files) is
    // simply not recognised here; other detectors may still claim the process.
    let Ok(binary) = Binary::open_exe(process) else {
        return Ok(None);
    };
    let Ok(file) = MappedFile::open(binary.path()) else {
        return Ok(None);
    };
    let Ok(elf_file) = elf::parse_elf64(&file) else {
        return Ok(None);
    };
    let Some(buildinfo) = elf_file.section_by_name(".go.buildinfo") else {
        return Ok(None);
    };
    let wrap = |e: GoBinaryError| DiscoveryError::GoBinary {
        path: binary.shown().to_path_buf(),
        source: Box::new(e),
    };
    let info = inspect(&elf_file, buildinfo.data().unwrap_or_default()).map_err(wrap)?;
    let Some(layout) = layout(&info.version) else {
        return Err(DiscoveryError::UnsupportedVersion {
            pid: process.pid,
            runtime: Runtime::Go.label(),
            version: info.version,
            binary: process.exe.clone(),
            supported: SUPPORTED,
        });
    };
    let probes = probes(&elf_file, layout, &binary).map_err(wrap)?;
    Ok(Some(Target {
        process: process.clone(),
        runtime: Runtime::Go,
        version: info.version,
        probes,
    }))
}

/// Version and symbol status of the Go executable at `path` (for `agent probes`).
pub fn describe(path: &Path) -> Result<GoBinary, GoBinaryError> {
    let file = MappedFile::open(path)?;
    let elf_file = elf::parse_elf64(&file)?;
    let data = elf_file
        .section_by_name(".go.buildinfo")
        .and_then(|s| s.data().ok())
        .unwrap_or_default();
    inspect(&elf_file, data)
}

fn inspect(elf_file: &elf::Elf64<'_>, buildinfo: &[u8]) -> Result<GoBinary, GoBinaryError> {
    Ok(GoBinary {
        version: gobuildinfo::version(buildinfo)?,
        stripped: elf_file.section_by_name(".symtab").is_none(),
    })
}

/// The uprobes for `layout` in the Go executable `elf_file`, opened as `binary`.
pub fn probes(
    elf_file: &elf::Elf64<'_>,
    layout: Layout,
    binary: &Binary,
) -> Result<Vec<ProbeAttach>, GoBinaryError> {
    let pclntab = elf_file
        .section_by_name(".gopclntab")
        .and_then(|s| s.data().ok())
        .ok_or(GoBinaryError::NoPclntab)?;
    let table = gopclntab::Pclntab::parse(pclntab)?;
    let segments = elf::load_segments(elf_file)?;
    let data = elf_file.data();
    let binary = binary.clone();

    let func = |name: &'static str| table.find(name).ok_or(GoBinaryError::MissingFunction(name));
    let offset = |name: &'static str, addr: u64| {
        elf::segment_for_file_addr(&segments, addr)
            .filter(|s| s.is_executable())
            .and_then(|s| s.file_offset(addr))
            .ok_or(GoBinaryError::NotMapped(name))
    };
    let at_entry = |name: &'static str, program: &'static str, arg: ProgramArg| {
        let f = func(name)?;
        Ok::<_, GoBinaryError>(ProbeAttach {
            program,
            probe: name.to_string(),
            binary: binary.clone(),
            file_offset: offset(name, f.entry)?,
            arg,
            // Go has no USDT semaphores.
            ref_ctr_offset: None,
        })
    };

    let mut out = Vec::new();
    match layout {
        Layout::ReasonByte => {
            let reason = ArgSpec {
                loc: ARG_REG,
                reg_off: Register::Rax.pt_regs_offset(),
                val: 0,
                size: 1,
                signed: 0,
                _pad: [0; 6],
            };
            out.push(at_entry(STOP, "go_stw_begin", ProgramArg::Usdt(reason))?);
        }
        Layout::ReasonString => {
            out.push(at_entry(
                "runtime.stopTheWorld",
                "go_stw_reason",
                ProgramArg::None,
            )?);
            out.push(at_entry(
                "runtime.stopTheWorld.func1",
                "go_stw_reason_here",
                ProgramArg::None,
            )?);
            out.push(at_entry(STOP, "go_stw_begin", ProgramArg::None)?);
            for (name, cause) in [
                ("runtime.finishsweep_m", STW_GC_SWEEP_TERM),
                ("runtime.gcMarkTermination", STW_GC_MARK_TERM),
                ("runtime.readmemstats_m", STW_READ_MEM_STATS),
            ] {
                out.push(at_entry(
                    name,
                    "go_stw_cause",
                    ProgramArg::Usdt(constant(cause)),
                )?);
            }
        }
    }

    // The end: the call of wakep() in startTheWorldWithSema. By then every
    // P has been handed back and the runtime has read its own end-of-pause
    // clock (gctrace, /sched/pauses); wakep() only starts one more spinning
    // M, which can take tens of microseconds and is not part of the pause.
    let start = func(START)?;
    let wakep = func(WAKEP)?;
    let body_off = offset(START, start.entry)?;
    let len = start.end.saturating_sub(start.entry);
    let code = usize::try_from(body_off)
        .ok()
        .and_then(|o| data.get(o..o.checked_add(usize::try_from(len).ok()?)?))
        .ok_or(GoBinaryError::NotMapped(START))?;
    let calls = disasm::call_sites(code, start.entry, wakep.entry).map_err(|source| {
        GoBinaryError::Disasm {
            name: START,
            source,
        }
    })?;
    if calls.len() != 1 {
        return Err(GoBinaryError::EndSite { found: calls.len() });
    }
    for site in calls {
        out.push(ProbeAttach {
            program: "go_stw_end",
            probe: format!("{START}+{:#x} (call {WAKEP})", site - start.entry),
            binary: binary.clone(),
            file_offset: offset(START, site)?,
            arg: ProgramArg::None,
            ref_ctr_offset: None,
        });
    }
    Ok(out)
}

/// An argument spec that always yields `value`.
fn constant(value: i64) -> ArgSpec {
    ArgSpec {
        loc: ARG_CONST,
        reg_off: 0,
        val: value,
        size: 8,
        signed: 0,
        _pad: [0; 6],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_map_to_layouts() {
        assert_eq!(layout("go1.19.8"), Some(Layout::ReasonString));
        assert_eq!(layout("go1.21.13"), Some(Layout::ReasonByte));
        assert_eq!(layout("go1.23.4"), Some(Layout::ReasonByte));
        assert_eq!(layout("go1.20.1"), None);
        assert_eq!(layout("go1.24.0"), None);
        assert_eq!(layout("go1.18"), None);
    }

    #[test]
    fn reason_table_matches_the_constants() {
        assert_eq!(
            STW_REASONS[STW_GC_MARK_TERM as usize],
            "GC mark termination"
        );
        assert_eq!(
            STW_REASONS[STW_GC_SWEEP_TERM as usize],
            "GC sweep termination"
        );
        assert_eq!(STW_REASONS[STW_READ_MEM_STATS as usize], "read mem stats");
    }
}
