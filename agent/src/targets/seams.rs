//! What the lifecycle needs from the rest of the agent and from the host,
//! one trait each: [`Attach`] (the BPF tracer), [`TargetSink`] (the collector)
//! and [`Host`] (`/proc` and the clocks).
//!
//! They are traits so that the lifecycle's state machine can be unit-tested
//! without root, BPF or real processes: its tests drive it with fakes and
//! explicit times. Each trait holds only what the lifecycle calls.

use std::{path::PathBuf, sync::Mutex, time::Instant};

use crate::{
    bpf::BpfError,
    collect::{Collector, FileBacking, TargetInfo, lock, monotonic_ns},
    discovery::{self, Discovered, DiscoveryError, Process},
};

use super::{
    identity::{ExitWatch, Identity},
    labels::{self, ContainerLabels},
};

/// Puts probes into processes and takes them out (`bpf::Tracer`).
pub trait Attach {
    /// Attaches every probe of the discovered process, scoped to its pid,
    /// and returns how many were attached; on failure none stays attached.
    fn attach(&mut self, discovered: &Discovered) -> Result<usize, BpfError>;
    /// Detaches every probe of `pid` and drops its open intervals (a no-op
    /// for a pid without probes).
    fn detach(&mut self, pid: u32);
    /// Stops recording `pid`, a process that exec'd and will not be a
    /// target, which shared probes record until they are told (a no-op
    /// for a pid never recorded).
    fn reject(&mut self, pid: u32);
}

/// Where targets are registered for collection (the collector, for
/// `/metrics`).
pub trait TargetSink {
    /// Starts reporting a target, whose names are read from `backing`
    /// once its memory is gone.
    fn add(&self, info: TargetInfo, backing: FileBacking);
    /// Notes that the target `pid` exited (its numbers stay until it is
    /// forgotten).
    fn exited(&self, pid: u32);
    /// Records the name the target `pid` calls itself now.
    fn rename(&self, pid: u32, current_comm: &str);
    /// Stops reporting `pid`: its info and its numbers go.
    fn forget(&self, pid: u32);
}

impl TargetSink for Mutex<Collector> {
    fn add(&self, info: TargetInfo, backing: FileBacking) {
        lock(self).add_target(info, backing);
    }

    fn exited(&self, pid: u32) {
        lock(self).target_exited(pid);
    }

    fn rename(&self, pid: u32, current_comm: &str) {
        lock(self).set_current_comm(pid, current_comm);
    }

    fn forget(&self, pid: u32) {
        lock(self).forget(pid);
    }
}

/// The processes of the host and its clocks, as the lifecycle reads them.
pub trait Host {
    /// Tells, without waiting, whether one process has exited.
    type ExitWatch;

    /// Every running process (the start-up scan).
    fn processes(&self) -> Vec<Identity>;
    /// The process running as `pid` now, or `None` if there is none (or it
    /// is a zombie).
    fn current(&self, pid: u32) -> Option<Identity>;
    /// Reads the process `pid`: identity, executable and mappings, named
    /// `exec_comm` when the exec event told its name.
    fn inspect(&self, pid: u32, exec_comm: Option<&str>) -> Result<Process, DiscoveryError>;
    /// Finds the runtime and its probes in an inspected process.
    fn detect(&self, process: Process) -> Result<Discovered, DiscoveryError>;
    /// Container and pod labels of `pid` (empty where unknown).
    fn labels(&self, pid: u32) -> ContainerLabels;
    /// The program `pid` runs now (`/proc/PID/exe`), `None` if it is gone.
    fn exe(&self, pid: u32) -> Option<PathBuf>;
    /// The name `pid` calls itself now (`/proc/PID/comm`), `None` if it is
    /// gone.
    fn comm(&self, pid: u32) -> Option<String>;
    /// A watch on `id`'s exit, or `None` if there can be none (it is gone,
    /// or the host cannot watch): [`Host::has_exited`] then asks `/proc`.
    fn watch_exit(&self, id: Identity) -> Option<Self::ExitWatch>;
    /// Whether `id` has exited, told by `watch` when there is one.
    fn has_exited(&self, id: Identity, watch: Option<&Self::ExitWatch>) -> bool;
    /// Now, for the lifecycle's time slices and attach timings.
    fn now(&self) -> Instant;
    /// CLOCK_MONOTONIC in nanoseconds, the clock of exec events.
    fn monotonic_ns(&self) -> u64;

    /// Whether this exact process still runs (and is no zombie).
    fn is_alive(&self, id: Identity) -> bool {
        self.current(id.pid) == Some(id)
    }
}

/// The host the agent runs on: `/proc`, pidfds, the system clocks.
#[derive(Debug, Default)]
pub struct SystemHost;

impl Host for SystemHost {
    type ExitWatch = ExitWatch;

    fn processes(&self) -> Vec<Identity> {
        let Ok(all) = procfs::process::all_processes() else {
            return Vec::new();
        };
        all.flatten()
            .filter_map(|p| {
                let stat = p.stat().ok()?;
                Some(Identity {
                    pid: p.pid as u32,
                    start_time: stat.starttime,
                })
            })
            .collect()
    }

    fn current(&self, pid: u32) -> Option<Identity> {
        Identity::current(pid)
    }

    fn inspect(&self, pid: u32, exec_comm: Option<&str>) -> Result<Process, DiscoveryError> {
        Process::inspect_named(pid, exec_comm)
    }

    fn detect(&self, process: Process) -> Result<Discovered, DiscoveryError> {
        discovery::detect_in(process)
    }

    fn labels(&self, pid: u32) -> ContainerLabels {
        labels::read(pid)
    }

    fn exe(&self, pid: u32) -> Option<PathBuf> {
        std::fs::read_link(format!("/proc/{pid}/exe")).ok()
    }

    /// Read from `/proc/PID/comm`, not `/proc/PID/stat`, which walks every
    /// thread of the process.
    fn comm(&self, pid: u32) -> Option<String> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        Some(text.strip_suffix('\n').unwrap_or(&text).to_string())
    }

    fn watch_exit(&self, id: Identity) -> Option<ExitWatch> {
        ExitWatch::open(id)
    }

    fn has_exited(&self, id: Identity, watch: Option<&ExitWatch>) -> bool {
        match watch {
            Some(watch) => watch.has_exited(),
            None => !id.is_alive(),
        }
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn monotonic_ns(&self) -> u64 {
        monotonic_ns()
    }
}
