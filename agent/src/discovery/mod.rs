//! Discovery: which runtime a process runs, and which probes it needs.
//!
//! One place decides ([`detect`]), asking each runtime's module
//! ([`crate::runtimes`]) in turn; this module holds what they share: the
//! inspected process ([`Process`]), its binaries opened through `/proc`
//! ([`Binary`]), the probe list they return ([`Discovered`]) and what was
//! parsed from a runtime's files, kept for the next process of the same
//! file ([`cache`]).

pub mod binary;
pub mod cache;
pub mod process;
pub mod runtime;

pub use binary::Binary;
pub use process::{Mapping, Process, Segment};
pub use runtime::{Discovered, ProbeAttach, ProbeSite, ProgramArg, detect, detect_in};

use std::path::PathBuf;

use thiserror::Error;

/// Why a process cannot be traced.
#[derive(Debug, Error)]
pub enum DiscoveryError {
    /// The pid names no running process.
    #[error("no process with pid {0} exists: check the pid (for example with `ps -p {0}`)")]
    NoSuchProcess(u32),
    /// /proc denied access (not root, or a hardened /proc).
    #[error("cannot read /proc/{pid}/{what}: permission denied; run the agent as root (sudo)")]
    PermissionDenied {
        /// Process id.
        pid: u32,
        /// The /proc entry that could not be read.
        what: &'static str,
    },
    /// None of the supported runtimes was found in the process.
    #[error(
        "pid {pid} ({comm}) runs no supported runtime: pausewatch traces {supported}; \
         none of their libraries is mapped in that process"
    )]
    NoSupportedRuntime {
        /// Process id.
        pid: u32,
        /// Its command name.
        comm: String,
        /// The supported runtimes, as a readable list.
        supported: String,
    },
    /// The runtime was found but lacks a probe the agent needs.
    #[error("{runtime} in pid {pid} ({library}) lacks the probe {probe}: {hint}")]
    MissingProbe {
        /// Process id.
        pid: u32,
        /// Runtime label.
        runtime: &'static str,
        /// The library or binary searched.
        library: PathBuf,
        /// The missing probe, `provider:name` or a symbol.
        probe: String,
        /// What the user can do about it.
        hint: &'static str,
    },
    /// Reading the runtime's binary failed.
    #[error("cannot read probes from {path}: {source}")]
    Probes {
        /// The binary.
        path: PathBuf,
        /// The parse error (boxed: it is large and rare).
        #[source]
        source: Box<crate::probes::usdt::UsdtError>,
    },
    /// A runtime's binary could not be read as its module needs (a Go
    /// executable's function table).
    #[error("cannot read {what} from {path}: {source}")]
    Unreadable {
        /// What was being read, e.g. "the Go runtime's functions".
        what: &'static str,
        /// The binary.
        path: PathBuf,
        /// The runtime module's typed error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The runtime's version has no known probe layout.
    #[error(
        "pid {pid} runs {runtime} version {version} ({binary}), which has no known probe \
         layout: pausewatch supports {supported}; rebuild the program with one of those \
         toolchains or use a pausewatch release that knows this version"
    )]
    UnsupportedVersion {
        /// Process id.
        pid: u32,
        /// Runtime label.
        runtime: &'static str,
        /// The version found.
        version: String,
        /// The executable.
        binary: PathBuf,
        /// The supported versions, as a readable list.
        supported: &'static str,
    },
    /// A binary the process runs could not be opened through its mapping.
    #[error("cannot open {path}, mapped by pid {pid}, through {via}: {source}{hint}")]
    Open {
        /// Process id.
        pid: u32,
        /// The file as the process's maps names it.
        path: PathBuf,
        /// The link or path that was opened.
        via: PathBuf,
        /// Why opening failed.
        #[source]
        source: std::io::Error,
        /// What the user can do about it, if anything (starts with `; `).
        hint: &'static str,
    },
    /// Any other /proc error.
    #[error("cannot inspect pid {pid}: {message}")]
    Proc {
        /// Process id.
        pid: u32,
        /// What went wrong.
        message: String,
    },
}
