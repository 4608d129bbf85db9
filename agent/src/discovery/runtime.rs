//! What detection yields (a [`Discovered`]: a process, its runtime, the probes
//! to attach) and the one place that picks a process's runtime.

use pausewatch_common::{
    ArgSpec,
    heap::{ArgSet, MAX_USDT_ARGS},
};

use super::{Binary, DiscoveryError, Process};
use crate::{probes::usdt::UsdtProbe, runtimes::Runtime};

/// Where the argument a BPF program reads comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProgramArg {
    /// The program reads no argument.
    None,
    /// A USDT argument, decoded from the note.
    Usdt(ArgSpec),
    /// Every argument of a USDT probe point, for programs that read
    /// several (the `ARG_SETS` map).
    UsdtAll(ArgSet),
    /// An address in this one process's memory, passed as a constant
    /// (Ruby's GC flags): the probe cannot be shared with other processes
    /// that map the same file, whose address differs.
    Address(ArgSpec),
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

    /// The uprobe for one location of a USDT probe whose program reads
    /// every argument (up to [`MAX_USDT_ARGS`]).
    pub fn from_usdt_all(
        note: &UsdtProbe,
        program: &'static str,
        binary: &Binary,
    ) -> Result<ProbeAttach, DiscoveryError> {
        let mut set = ArgSet::default();
        for (i, slot) in set.specs.iter_mut().enumerate().take(MAX_USDT_ARGS) {
            if i >= note.args.len() && note.args_error.is_none() {
                break;
            }
            let a = note.arg(i).map_err(|e| DiscoveryError::Probes {
                path: binary.shown().to_path_buf(),
                source: Box::new(e),
            })?;
            *slot = a.to_bpf();
        }
        Ok(ProbeAttach {
            program,
            probe: format!("{}:{}", note.provider, note.name),
            binary: binary.clone(),
            file_offset: note.file_offset,
            ref_ctr_offset: note.semaphore_offset,
            arg: ProgramArg::UsdtAll(set),
        })
    }
}

/// A [`ProbeAttach`] without its binary: what the parse of a file yields,
/// the same for every process of that file, so it can be kept in
/// [`super::cache`] and given each process's own [`Binary`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSite {
    /// As [`ProbeAttach::program`].
    pub program: &'static str,
    /// As [`ProbeAttach::probe`].
    pub probe: String,
    /// As [`ProbeAttach::file_offset`].
    pub file_offset: u64,
    /// As [`ProbeAttach::ref_ctr_offset`].
    pub ref_ctr_offset: Option<u64>,
    /// As [`ProbeAttach::arg`].
    pub arg: ProgramArg,
}

impl ProbeSite {
    /// The uprobe at this site of `binary`, which must be the file the
    /// site was read from.
    pub fn attach(&self, binary: &Binary) -> ProbeAttach {
        ProbeAttach {
            program: self.program,
            probe: self.probe.clone(),
            binary: binary.clone(),
            file_offset: self.file_offset,
            ref_ctr_offset: self.ref_ctr_offset,
            arg: self.arg.clone(),
        }
    }
}

impl From<ProbeAttach> for ProbeSite {
    fn from(p: ProbeAttach) -> ProbeSite {
        ProbeSite {
            program: p.program,
            probe: p.probe,
            file_offset: p.file_offset,
            ref_ctr_offset: p.ref_ctr_offset,
            arg: p.arg,
        }
    }
}

/// A process with a recognised runtime and the probes to attach to it.
#[derive(Clone, Debug)]
pub struct Discovered {
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
pub fn detect(pid: u32) -> Result<Discovered, DiscoveryError> {
    detect_in(Process::inspect(pid)?)
}

/// Returns the runtime and probes of an inspected process.
pub fn detect_in(process: Process) -> Result<Discovered, DiscoveryError> {
    for runtime in Runtime::ALL {
        if let Some(target) = runtime.module().detect(&process)? {
            return Ok(target);
        }
    }
    Err(DiscoveryError::NoSupportedRuntime {
        pid: process.pid,
        comm: process.comm,
        supported: Runtime::ALL
            .iter()
            .map(|r| r.module().display_name())
            .collect::<Vec<_>>()
            .join(", "),
    })
}
