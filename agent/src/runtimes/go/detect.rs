//! Finds a Go executable's stop-the-world functions and proves every
//! probe address (see the module docs of [`super`]).

use std::path::Path;

use object::{Object, ObjectSection};
use pausewatch_common::{ARG_CONST, ARG_REG, ArgSpec};

use super::{
    buildinfo,
    module::{self as gomodule, GoModule, Hints, Image},
    pclntab::GoFunc,
};
use crate::{
    discovery::{
        Binary, Discovered, DiscoveryError, ProbeAttach, ProbeSite, Process, ProgramArg, cache,
    },
    probes::{
        Register,
        disasm::{self, Body},
        elf::{self, MappedFile},
    },
    runtimes::Runtime,
};

/// `stwReasonStrings` of Go 1.21 to 1.27, indexed by `stwReason`.
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

/// The newest Go release (major, minor) tested end to end.
pub const NEWEST_TESTED: (u32, u32) = (1, 27);

/// Go versions with a known probe layout, for messages.
pub const SUPPORTED: &str = "Go 1.19 and 1.21 to 1.27 (tested), and newer Go 1 releases \
                             (untested: traced with a warning when every structural check passes)";

const STOP: &str = "runtime.stopTheWorldWithSema";
const START: &str = "runtime.startTheWorldWithSema";
const WAKEP: &str = "runtime.wakep";

/// How a runtime version passes the stop-the-world reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Go 1.19: a string argument of `stopTheWorld`, GC phases by marker functions.
    ReasonString,
    /// Go 1.21 and 1.22: a `stwReason` byte argument of `stopTheWorldWithSema`.
    ReasonByte,
    /// Go 1.23 and later: the reason byte as in [`Layout::ReasonByte`], and
    /// `startTheWorldWithSema(now int64, w worldStop)` receives the
    /// runtime's own stopping clocks (`w.startedStopping`,
    /// `w.finishedStopping`), read at its entry as the stopping time.
    WorldStop,
}

impl Layout {
    /// Whether `startTheWorldWithSema` receives the stopping clocks, so the
    /// stopping time (the `time_to_safepoint` family) is recorded.
    pub fn has_stopping_time(self) -> bool {
        self == Layout::WorldStop
    }
}

/// Whether a version was tested end to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    /// Tested in CI against the runtime's own log.
    Tested,
    /// Newer than [`NEWEST_TESTED`]: traced only when every structural
    /// check passes, with a warning.
    Untested,
}

/// The probe layout of a Go version and whether it was tested, or `None`
/// for a version the agent refuses (before 1.19, 1.20, pre-releases of
/// unknown lineage).
pub fn layout(version: &str) -> Option<(Layout, Support)> {
    match buildinfo::major_minor(version)? {
        (1, 19) => Some((Layout::ReasonString, Support::Tested)),
        (1, 21..=22) => Some((Layout::ReasonByte, Support::Tested)),
        (1, 23..=27) => Some((Layout::WorldStop, Support::Tested)),
        (1, minor) if minor > NEWEST_TESTED.1 => Some((Layout::WorldStop, Support::Untested)),
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
    BuildInfo(#[from] buildinfo::BuildInfoError),
    /// The module data or its pc-line table is missing, corrupt or
    /// inconsistent.
    #[error("{0}; nothing is attached")]
    Module(#[from] gomodule::ModuleError),
    /// A runtime function is absent.
    #[error("function {0} not found in the pc-line table; nothing is attached")]
    MissingFunction(&'static str),
    /// A function's code lies outside the file's loaded segments.
    #[error("function {0} lies outside the executable's loaded segments; nothing is attached")]
    NotMapped(&'static str),
    /// `startTheWorldWithSema` does not call `wakep` exactly once.
    #[error(
        "runtime.startTheWorldWithSema calls runtime.wakep {found} times, expected once: \
         this runtime build differs from the Go sources the probes were written for; \
         nothing is attached"
    )]
    EndSite {
        /// Number of call sites found.
        found: usize,
    },
    /// A function's body could not be decoded.
    #[error("cannot decode {name}: {source}; nothing is attached")]
    Disasm {
        /// The function.
        name: &'static str,
        /// The decoder's complaint.
        source: disasm::DisasmError,
    },
    /// A call in a probed function lands where no function starts: the
    /// text base is wrong for this binary.
    #[error(
        "the text base {text:#x} does not fit this binary's code: the call at {site:#x} in \
         {name} goes to {target:#x}, {reason}; no probe address can be trusted, so nothing \
         is attached"
    )]
    BaseUnverified {
        /// The function decoded.
        name: &'static str,
        /// The text base in use.
        text: u64,
        /// The call instruction.
        site: u64,
        /// Its target.
        target: u64,
        /// Where the target is instead.
        reason: &'static str,
    },
    /// A probed function makes no direct call to check the base against.
    #[error(
        "{0} makes no direct call, so its address cannot be checked against the code; \
         nothing is attached"
    )]
    NoCallToCheck(&'static str),
    /// A probe address is not where an instruction of its function starts.
    #[error("{addr:#x} is not an instruction boundary of {name}; nothing is attached")]
    NotABoundary {
        /// The function.
        name: &'static str,
        /// The rejected address.
        addr: u64,
    },
    /// The binary's `stwReasonStrings` is not the table the cause names
    /// come from.
    #[error(
        "found no stop-the-world reason table (runtime.stwReasonStrings) beginning with the \
         Go 1.21-1.27 names, so pause reasons would be misnamed; nothing is attached"
    )]
    ReasonTable,
    /// A version newer than the newest tested failed a structural check.
    #[error(
        "{version} is newer than the newest Go this agent was tested with (Go {}.{}) and \
         fails a structural check, so it is refused: {source}",
        NEWEST_TESTED.0,
        NEWEST_TESTED.1
    )]
    Untested {
        /// The version found.
        version: String,
        /// The failed check.
        source: Box<GoBinaryError>,
    },
}

/// What the agent learned from a Go executable.
#[derive(Debug)]
pub struct GoBinary {
    /// `go1.21.9`.
    pub version: String,
    /// Whether `.symtab` is gone (`-ldflags=-s`): functions came from the pc-line table only.
    pub stripped: bool,
    /// `runtime.text` and how its module data was found, when it could be.
    pub text_base: Option<(u64, gomodule::FoundBy)>,
}

/// What [`DiscoveryError::Unreadable`] says the agent was reading.
pub(super) const FUNCTIONS: &str = "the Go runtime's functions";

/// The warning printed when an untested newer version is traced.
pub fn untested_warning(pid: u32, version: &str) -> String {
    format!(
        "pid {pid}: {version} is newer than the newest Go this agent was tested with \
         (Go {}.{}); tracing it because every structural check passed (text base, \
         instruction boundaries, one call of runtime.wakep, a stop-the-world reason table \
         beginning with the Go 1.21-1.27 names)",
        NEWEST_TESTED.0, NEWEST_TESTED.1
    )
}

/// What detection reads from a Go executable: the file's alone, so it is
/// kept per file ([`cache`]) and every later process of the same
/// executable skips the pc-line table and the instruction sweeps.
enum GoFile {
    /// Not an ELF file, or one without `.go.buildinfo`.
    NotGo,
    /// A Go version without a known probe layout.
    Unsupported(String),
    /// A Go executable and its checked probe sites.
    Go {
        version: String,
        support: Support,
        sites: Vec<ProbeSite>,
    },
}

/// Why [`read_go_file`] has no [`GoFile`]; neither is kept in the cache.
enum GoFileError {
    /// The file cannot be mapped (a special file, or a passing failure):
    /// not recognised here, as before the cache.
    Unmapped,
    /// A Go executable whose probes cannot be found.
    Binary(GoBinaryError),
}

/// Returns the Go target in `process`, or `None` if its executable is not Go.
pub fn detect(process: &Process) -> Result<Option<Discovered>, DiscoveryError> {
    // An executable that cannot be opened or mapped (special files) is
    // simply not recognised here; other detectors may still claim the process.
    let Ok(binary) = Binary::open_exe(process) else {
        return Ok(None);
    };
    let parsed = match cache::parsed(&binary, "Go probe sites", || read_go_file(&binary)) {
        Ok(parsed) => parsed,
        Err(GoFileError::Unmapped) => return Ok(None),
        Err(GoFileError::Binary(e)) => {
            return Err(DiscoveryError::Unreadable {
                what: FUNCTIONS,
                path: binary.shown().to_path_buf(),
                source: Box::new(e),
            });
        }
    };
    let (version, support, sites) = match &*parsed {
        GoFile::NotGo => return Ok(None),
        GoFile::Unsupported(version) => {
            return Err(DiscoveryError::UnsupportedVersion {
                pid: process.pid,
                runtime: Runtime::Go.label(),
                version: version.clone(),
                binary: process.exe.clone(),
                supported: SUPPORTED,
            });
        }
        GoFile::Go {
            version,
            support,
            sites,
        } => (version, *support, sites),
    };
    if support == Support::Untested {
        log::warn!("{}", untested_warning(process.pid, version));
    }
    Ok(Some(Discovered {
        process: process.clone(),
        runtime: Runtime::Go,
        version: version.clone(),
        probes: sites.iter().map(|s| s.attach(&binary)).collect(),
    }))
}

/// Reads the executable opened as `binary`: its Go version and, for a
/// version with a known layout, its checked probe sites.
fn read_go_file(binary: &Binary) -> Result<GoFile, GoFileError> {
    let file = MappedFile::open(binary.path()).map_err(|_| GoFileError::Unmapped)?;
    let Ok(elf_file) = elf::parse_elf64(&file) else {
        return Ok(GoFile::NotGo);
    };
    let Some(buildinfo) = elf_file.section_by_name(".go.buildinfo") else {
        return Ok(GoFile::NotGo);
    };
    let version = buildinfo::version(buildinfo.data().unwrap_or_default())
        .map_err(|e| GoFileError::Binary(e.into()))?;
    let Some((layout, support)) = layout(&version) else {
        return Ok(GoFile::Unsupported(version));
    };
    let probes = probes(&elf_file, layout, binary).map_err(|e| {
        GoFileError::Binary(match support {
            Support::Tested => e,
            Support::Untested => GoBinaryError::Untested {
                version: version.clone(),
                source: Box::new(e),
            },
        })
    })?;
    Ok(GoFile::Go {
        version,
        support,
        sites: probes.into_iter().map(ProbeSite::from).collect(),
    })
}

/// Version, symbol status and text base of the Go executable at
/// `path` (for `agent probes`).
pub fn describe(path: &Path) -> Result<GoBinary, GoBinaryError> {
    let file = MappedFile::open(path)?;
    let elf_file = elf::parse_elf64(&file)?;
    let data = elf_file
        .section_by_name(".go.buildinfo")
        .and_then(|s| s.data().ok())
        .unwrap_or_default();
    let version = buildinfo::version(data)?;
    let image = Image::from_elf(&elf_file)?;
    let text_base = gomodule::locate(&image, &Hints::from_elf(&elf_file))
        .ok()
        .map(|m| (m.text, m.found_by));
    Ok(GoBinary {
        version,
        stripped: elf_file.section_by_name(".symtab").is_none(),
        text_base,
    })
}

/// The uprobes for `layout` in the Go executable `elf_file`, opened as `binary`.
pub fn probes(
    elf_file: &elf::Elf64<'_>,
    layout: Layout,
    binary: &Binary,
) -> Result<Vec<ProbeAttach>, GoBinaryError> {
    let image = Image::from_elf(elf_file)?;
    probes_in(&image, &Hints::from_elf(elf_file), layout, binary)
}

/// The checked functions of one module.
struct Code<'i, 'a> {
    image: &'i Image<'a>,
    /// The executable, held open.
    binary: Binary,
    module: GoModule<'a>,
    /// Every function, in address order.
    funcs: Vec<GoFunc<'a>>,
}

impl<'a> Code<'_, 'a> {
    fn func(&self, name: &'static str) -> Result<GoFunc<'a>, GoBinaryError> {
        self.funcs
            .iter()
            .find(|f| f.name == name)
            .copied()
            .ok_or(GoBinaryError::MissingFunction(name))
    }

    /// File offset of `addr` in `name`, which must be in an executable segment.
    fn offset(&self, name: &'static str, addr: u64) -> Result<u64, GoBinaryError> {
        self.image
            .segment(addr)
            .filter(|s| s.is_executable())
            .and_then(|s| s.file_offset(addr))
            .ok_or(GoBinaryError::NotMapped(name))
    }

    /// Decodes `name` from its entry to its end and checks every direct call
    /// in it against the function table.
    fn body(&self, name: &'static str) -> Result<(GoFunc<'a>, Body), GoBinaryError> {
        let f = self.func(name)?;
        let executable = self
            .image
            .segment(f.entry)
            .is_some_and(|s| s.is_executable());
        let code = self
            .image
            .bytes(f.entry, f.end.saturating_sub(f.entry))
            .filter(|_| executable)
            .ok_or(GoBinaryError::NotMapped(name))?;
        let body = disasm::sweep(code, f.entry)
            .map_err(|source| GoBinaryError::Disasm { name, source })?;
        let mut checked = 0;
        for call in &body.calls {
            let unverified = |reason| GoBinaryError::BaseUnverified {
                name,
                text: self.module.text,
                site: call.site,
                target: call.target,
                reason,
            };
            if call.target < self.module.minpc || call.target >= self.module.maxpc {
                return Err(unverified("outside the Go text"));
            }
            let i = self.funcs.partition_point(|g| g.entry <= call.target);
            let callee = i.checked_sub(1).and_then(|i| self.funcs.get(i));
            match callee {
                Some(g) if g.entry == call.target => checked += 1,
                // The compiler calls into the middle of Duff's devices
                // (`CALL runtime.duffzero+N`): inside, but no entry.
                Some(g) if g.name.starts_with("runtime.duff") && call.target < g.end => {}
                _ => return Err(unverified("which is no function entry")),
            }
        }
        if checked == 0 {
            return Err(GoBinaryError::NoCallToCheck(name));
        }
        Ok((f, body))
    }

    /// A uprobe at `addr`, after checking it starts an instruction of `name`.
    fn probe(
        &self,
        name: &'static str,
        body: &Body,
        addr: u64,
        probe: String,
        program: &'static str,
        arg: ProgramArg,
    ) -> Result<ProbeAttach, GoBinaryError> {
        if !body.is_boundary(addr) {
            return Err(GoBinaryError::NotABoundary { name, addr });
        }
        Ok(ProbeAttach {
            program,
            probe,
            binary: self.binary.clone(),
            file_offset: self.offset(name, addr)?,
            arg,
            // Go has no USDT semaphores.
            ref_ctr_offset: None,
        })
    }

    /// The instruction after `f`'s small-frame stack check (`CMPQ SP,
    /// 16(R14)` then `JBE` to the morestack call), or `f`'s entry if it does
    /// not begin so. Neither instruction writes a register, so the
    /// arguments are still in theirs; a uprobe on the next one (`PUSHQ BP`)
    /// is emulated by the kernel, while one on the CMP with its memory
    /// operand is single-stepped out of line, a second trap, all inside the
    /// stopped world. After morestack the function restarts at its entry,
    /// so the instruction still runs once per call.
    fn after_stack_check(&self, f: &GoFunc<'_>) -> u64 {
        const CMP_SP_STACKGUARD: [u8; 4] = [0x49, 0x3b, 0x66, 0x10];
        let Some(code) = self.image.bytes(f.entry, 10) else {
            return f.entry;
        };
        if code[..4] != CMP_SP_STACKGUARD {
            return f.entry;
        }
        match code[4..6] {
            [0x76, _] => f.entry + 6,
            [0x0f, 0x86] => f.entry + 10,
            _ => f.entry,
        }
    }

    fn at_entry(
        &self,
        name: &'static str,
        program: &'static str,
        arg: ProgramArg,
    ) -> Result<ProbeAttach, GoBinaryError> {
        let (f, body) = self.body(name)?;
        self.probe(name, &body, f.entry, name.to_string(), program, arg)
    }
}

/// The uprobes for `layout` in the executable loaded as `image`, opened as
/// `binary`; every address is checked as described in the module docs.
pub fn probes_in(
    image: &Image<'_>,
    hints: &Hints,
    layout: Layout,
    binary: &Binary,
) -> Result<Vec<ProbeAttach>, GoBinaryError> {
    let module = gomodule::locate(image, hints)?;
    let funcs: Vec<GoFunc<'_>> = module.table.funcs().collect();
    let code = Code {
        image,
        binary: binary.clone(),
        module,
        funcs,
    };

    let mut out = Vec::new();
    match layout {
        Layout::ReasonByte | Layout::WorldStop => {
            // The reason byte is named with STW_REASONS: the binary's own
            // table must begin with it (later releases may append).
            if gomodule::find_string_table(image, &STW_REASONS).is_none() {
                return Err(GoBinaryError::ReasonTable);
            }
            let reason = ArgSpec {
                loc: ARG_REG,
                reg_off: Register::Rax.pt_regs_offset(),
                val: 0,
                size: 1,
                signed: 0,
                _pad: [0; 6],
            };
            out.push(code.at_entry(STOP, "go_stw_begin", ProgramArg::Usdt(reason))?);
        }
        Layout::ReasonString => {
            out.push(code.at_entry("runtime.stopTheWorld", "go_stw_reason", ProgramArg::None)?);
            out.push(code.at_entry(
                "runtime.stopTheWorld.func1",
                "go_stw_reason_here",
                ProgramArg::None,
            )?);
            out.push(code.at_entry(STOP, "go_stw_begin", ProgramArg::None)?);
            for (name, cause) in [
                ("runtime.finishsweep_m", STW_GC_SWEEP_TERM),
                ("runtime.gcMarkTermination", STW_GC_MARK_TERM),
                ("runtime.readmemstats_m", STW_READ_MEM_STATS),
            ] {
                out.push(code.at_entry(name, "go_stw_cause", ProgramArg::Usdt(constant(cause)))?);
            }
        }
    }

    // The end: the call of wakep() in startTheWorldWithSema. By then every
    // P has been handed back and the runtime has read its own end-of-pause
    // clock (gctrace, /sched/pauses); wakep() only starts one more spinning
    // M, which can take tens of microseconds and is not part of the pause.
    let (start, body) = code.body(START)?;
    let wakep = code.func(WAKEP)?;
    let calls = body.call_sites(wakep.entry);
    let [site] = calls.as_slice() else {
        return Err(GoBinaryError::EndSite { found: calls.len() });
    };
    out.push(code.probe(
        START,
        &body,
        *site,
        format!("{START}+{:#x} (call {WAKEP})", site - start.entry),
        "go_stw_end",
        ProgramArg::None,
    )?);
    // The stopping clocks, where the registers still hold the arguments:
    // right after the stack check, else at the entry (docs/design.md,
    // "Stopping time"). Either is an instruction boundary of the body
    // decoded and checked above (`probe` checks again).
    if layout.has_stopping_time() {
        let at = code.after_stack_check(&start);
        let name = if at == start.entry {
            START.to_string()
        } else {
            format!("{START}+{:#x} (after the stack check)", at - start.entry)
        };
        out.push(code.probe(START, &body, at, name, "go_stw_stopped", ProgramArg::None)?);
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
    use crate::runtimes::go::module::fixture::{self, Link, Op};

    const PUSH: Op = Op::Raw(&[0x55]);
    const POP_RET: Op = Op::Raw(&[0x5d, 0xc3]);
    const MOV_EAX_1: Op = Op::Raw(&[0xb8, 0x01, 0x00, 0x00, 0x00]);

    /// The functions the 1.21+ layout probes, with calls as in the runtime.
    fn runtime(start_body: Vec<Op>) -> Vec<(&'static str, Vec<Op>)> {
        vec![
            ("runtime.lock", vec![Op::Raw(&[0xc3])]),
            (STOP, vec![PUSH, Op::Call("runtime.lock", 0), POP_RET]),
            (
                "runtime.other",
                vec![PUSH, Op::Call("runtime.lock", 0), POP_RET],
            ),
            (START, start_body),
            (WAKEP, vec![PUSH, Op::Call("runtime.lock", 0), POP_RET]),
        ]
    }

    fn start_body() -> Vec<Op> {
        vec![
            PUSH,
            Op::Call("runtime.lock", 0),
            MOV_EAX_1,
            Op::Call(WAKEP, 0),
            POP_RET,
        ]
    }

    const GO126: Link = Link {
        go126: true,
        external: false,
        relocations_only: false,
        symbols: false,
        strings: Some(&STW_REASONS),
    };
    const EXTERNAL: Link = Link {
        go126: false,
        external: true,
        relocations_only: false,
        symbols: false,
        strings: Some(&STW_REASONS),
    };

    fn file_offset(addr: u64) -> u64 {
        addr - fixture::TEXT_SEGMENT + fixture::TEXT_FILE_OFFSET
    }

    fn probe_list(c: &fixture::Crafted) -> Result<Vec<ProbeAttach>, GoBinaryError> {
        // Any open file stands for the executable the offsets are in.
        let me = crate::discovery::Process::inspect(std::process::id()).unwrap();
        let binary = Binary::open_exe(&me).unwrap();
        probes_in(&c.image(), &c.hints, Layout::ReasonByte, &binary)
    }

    #[test]
    fn the_stopping_probe_sits_at_the_entry_of_start_the_world_from_go_1_23() {
        let c = fixture::build(&runtime(start_body()), GO126);
        let me = crate::discovery::Process::inspect(std::process::id()).unwrap();
        let binary = Binary::open_exe(&me).unwrap();
        let probes = probes_in(&c.image(), &c.hints, Layout::WorldStop, &binary).unwrap();
        let programs: Vec<_> = probes.iter().map(|p| p.program).collect();
        assert_eq!(programs, ["go_stw_begin", "go_stw_end", "go_stw_stopped"]);
        assert_eq!(probes[2].file_offset, file_offset(c.entry(START)));
        assert_eq!(probes[2].probe, START);
        assert!(matches!(probes[2].arg, ProgramArg::None));
        // With the compiler's stack check first, right after it.
        let mut body = start_body();
        body.insert(
            0,
            Op::Raw(&[0x49, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0, 0, 0, 0]),
        );
        let c2 = fixture::build(&runtime(body), GO126);
        let probes = probes_in(&c2.image(), &c2.hints, Layout::WorldStop, &binary).unwrap();
        assert_eq!(probes[2].file_offset, file_offset(c2.entry(START) + 10));
        assert_eq!(
            probes[2].probe,
            format!("{START}+0xa (after the stack check)")
        );
        // Not on 1.21 and 1.22, whose startTheWorldWithSema gets no clocks.
        let probes = probe_list(&c).unwrap();
        assert!(probes.iter().all(|p| p.program != "go_stw_stopped"));
        assert!(Layout::WorldStop.has_stopping_time());
        assert!(!Layout::ReasonByte.has_stopping_time());
        assert!(!Layout::ReasonString.has_stopping_time());
    }

    #[test]
    fn crafted_go126_and_external_layouts_decode_to_the_right_offsets() {
        for link in [GO126, EXTERNAL] {
            let c = fixture::build(&runtime(start_body()), link);
            let probes = probe_list(&c).unwrap_or_else(|e| panic!("{link:?}: {e}"));
            assert_eq!(probes.len(), 2);
            assert_eq!(probes[0].program, "go_stw_begin");
            assert_eq!(
                probes[0].file_offset,
                file_offset(c.entry(STOP)),
                "{link:?}"
            );
            assert_eq!(probes[1].program, "go_stw_end");
            // push (1) + call lock (5) + mov (5): the call of wakep.
            assert_eq!(
                probes[1].file_offset,
                file_offset(c.entry(START) + 11),
                "{link:?}"
            );
            assert_eq!(probes[1].probe, format!("{START}+0xb (call {WAKEP})"));
        }
        // The external layout's functions start 0x100 into the segment.
        let c = fixture::build(&runtime(start_body()), EXTERNAL);
        assert_eq!(c.text_base, fixture::TEXT_SEGMENT + 0x100);
        assert_eq!(c.entry("runtime.lock"), c.text_base);
    }

    /// Moves every text pointer of the module data, and the table's text
    /// start, 0x100 down: `.text`'s start taken for `runtime.text`.
    fn take_section_start_as_base(c: &mut fixture::Crafted) {
        for off in [160u64, 168, 176, 184] {
            let at = (fixture::MODULEDATA - 0x58_0000 + off) as usize;
            let v = u64::from_le_bytes(c.data[at..at + 8].try_into().unwrap()) - 0x100;
            c.data[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
        c.rodata[24..32].copy_from_slice(&(c.text_base - 0x100).to_le_bytes());
    }

    #[test]
    fn a_text_base_at_the_section_start_is_caught_by_the_calls() {
        // The mistake of taking .text's start as the base of an external
        // link: every field of the record moved 0x100 down consistently.
        let mut c = fixture::build(&runtime(start_body()), EXTERNAL);
        take_section_start_as_base(&mut c);
        // stopTheWorldWithSema's entry then falls in the C code, which makes
        // no Go call; with the calls in, they land where no function starts.
        let err = probe_list(&c).unwrap_err();
        assert!(matches!(err, GoBinaryError::NoCallToCheck(STOP)), "{err}");
        let mut funcs = runtime(start_body());
        funcs.insert(
            1,
            (
                "runtime.big",
                vec![
                    PUSH,
                    Op::Call("runtime.lock", 0),
                    Op::Raw(&[0x90; 0xf0]),
                    POP_RET,
                ],
            ),
        );
        let mut c = fixture::build(&funcs, EXTERNAL);
        take_section_start_as_base(&mut c);
        let err = probe_list(&c).unwrap_err();
        assert!(matches!(err, GoBinaryError::BaseUnverified { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("does not fit this binary's code"), "{text}");
        assert!(text.contains("nothing is attached"), "{text}");
    }

    #[test]
    fn unverifiable_probe_addresses_are_refused() {
        // A call into the middle of a function.
        let mut body = start_body();
        body.insert(1, Op::Call("runtime.other", 1));
        let c = fixture::build(&runtime(body), GO126);
        let err = probe_list(&c).unwrap_err();
        assert!(
            matches!(err, GoBinaryError::BaseUnverified { name: START, .. }),
            "{err}"
        );
        // Two calls of wakep: no single end site.
        let mut body = start_body();
        body.insert(1, Op::Call(WAKEP, 0));
        let c = fixture::build(&runtime(body), GO126);
        assert!(matches!(
            probe_list(&c).unwrap_err(),
            GoBinaryError::EndSite { found: 2 }
        ));
        // Bytes that do not decode (0x06 is invalid in 64-bit mode).
        let mut funcs = runtime(start_body());
        funcs[1].1.insert(1, Op::Raw(&[0x06]));
        let c = fixture::build(&funcs, GO126);
        assert!(matches!(
            probe_list(&c).unwrap_err(),
            GoBinaryError::Disasm { name: STOP, .. }
        ));
        // An instruction cut off by the next function's entry.
        let mut funcs = runtime(start_body());
        funcs[1].1 = vec![Op::Raw(&[0x90; 31]), Op::Raw(&[0xb8])];
        let c = fixture::build(&funcs, GO126);
        assert!(matches!(
            probe_list(&c).unwrap_err(),
            GoBinaryError::Disasm { name: STOP, .. }
        ));
        // A probed function with no call to check the base with.
        let mut funcs = runtime(start_body());
        funcs[1].1 = vec![Op::Raw(&[0x31, 0xc0, 0xc3])];
        let c = fixture::build(&funcs, GO126);
        assert!(matches!(
            probe_list(&c).unwrap_err(),
            GoBinaryError::NoCallToCheck(STOP)
        ));
        // A missing function.
        let mut funcs = runtime(start_body());
        funcs.retain(|(n, _)| *n != STOP);
        let c = fixture::build(&funcs, GO126);
        assert!(matches!(
            probe_list(&c).unwrap_err(),
            GoBinaryError::MissingFunction(STOP)
        ));
    }

    #[test]
    fn a_renumbered_reason_table_is_refused() {
        const SWAPPED: [&str; 3] = ["unknown", "GC sweep termination", "GC mark termination"];
        for strings in [None, Some(&SWAPPED[..])] {
            let link = Link { strings, ..GO126 };
            let c = fixture::build(&runtime(start_body()), link);
            let err = probe_list(&c).unwrap_err();
            assert!(matches!(err, GoBinaryError::ReasonTable), "{err}");
            assert!(err.to_string().contains("nothing is attached"));
        }
    }

    #[test]
    fn a_corrupt_pclntab_is_a_clear_error() {
        let mut c = fixture::build(&runtime(start_body()), GO126);
        // A function-table row pointing past the table.
        let functab = u64::from_le_bytes(c.rodata[64..72].try_into().unwrap()) as usize;
        c.rodata[functab + 8 + 4..functab + 8 + 8].copy_from_slice(&0xffff_0000u32.to_le_bytes());
        let err = probe_list(&c).unwrap_err();
        assert!(matches!(err, GoBinaryError::MissingFunction(STOP)), "{err}");
        // The function count claiming more rows than the table holds.
        let mut c = fixture::build(&runtime(start_body()), GO126);
        c.rodata[8..16].copy_from_slice(&0x10_0000u64.to_le_bytes());
        let text = probe_list(&c).unwrap_err().to_string();
        assert!(
            text.contains("malformed .gopclntab") && text.contains("nothing is attached"),
            "{text}"
        );
    }

    #[test]
    fn versions_map_to_layouts() {
        use Support::*;
        assert_eq!(layout("go1.19.8"), Some((Layout::ReasonString, Tested)));
        assert_eq!(layout("go1.21.13"), Some((Layout::ReasonByte, Tested)));
        assert_eq!(layout("go1.22.12"), Some((Layout::ReasonByte, Tested)));
        assert_eq!(layout("go1.23.4"), Some((Layout::WorldStop, Tested)));
        assert_eq!(layout("go1.24.11"), Some((Layout::WorldStop, Tested)));
        assert_eq!(layout("go1.27.3"), Some((Layout::WorldStop, Tested)));
        assert_eq!(layout("go1.28rc1"), Some((Layout::WorldStop, Untested)));
        assert_eq!(layout("go1.31.0"), Some((Layout::WorldStop, Untested)));
        assert_eq!(layout("go1.20.1"), None);
        assert_eq!(layout("go1.18"), None);
        assert_eq!(layout("go2.0.0"), None);
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
