//! Target lifecycle for host-wide tracing (`agent run --all`, `--comm`,
//! `--exe`): which processes to trace ([`select`]), the exec/exit stream
//! that tells about new and dead ones ([`follow`]), the pid + start time
//! identity that keeps a reused pid apart from its predecessor
//! ([`identity`]), container and pod labels ([`labels`]), and the state
//! machine that ties them to the tracer and the collector ([`lifecycle`]).
//!
//! # Shared probes
//!
//! There is one BPF program per probe point, loaded once (`bpf::loader`);
//! what is per process is the attachment. Each target gets its own uprobe
//! perf events, scoped to its pid (`UProbeScope::OneProcess`). The
//! alternative, one attachment per (libjvm.so inode, offset) for all
//! processes with a pid set in a BPF map to filter on, was rejected:
//! - the kernel installs a system-wide uprobe's breakpoint in every process
//!   that maps the file, so unselected processes (`--exclude-pid`, processes
//!   outside `--comm`/`--exe`, over `--max-targets`) would still take the
//!   trap on every probe hit (2-10 µs each here) only to be filtered out in
//!   BPF; with per-process scope the kernel never installs it in them;
//! - per-process attachments come and go with the process, so nothing has
//!   to be kept consistent between a filter map and the links.
//!
//! The cost of the choice, measured on this machine (2 cores shared with
//! other builds, load average 10 to 16, kernel 6.18) by the churn test
//! (`xtask/tests/e2e_host.rs`, 24 JVMs of JDK 17 and 25, 6 and 8 uprobes
//! each, up to ~4 at a time): attaching one JVM's uprobes took 0.7 ms at
//! best, 22 ms median, 112 ms at worst (`perf_event_open` of a uprobe
//! writes the breakpoint into the target's memory under its `mmap_lock`,
//! which a starting JVM holds a lot); the agent's RSS went from 7.8 MB
//! before the churn to 9.5 MB at its peak and stayed there (allocator pages
//! kept, not per-target state: it does not grow with the number of
//! processes that came and went). The shared
//! attachment was not measured: it would have put breakpoints into the
//! other JVMs running on this shared machine, which are not ours to slow
//! down, and that cost is the very argument against it above.
//!
//! The price of per-process attachments is paid on detach: each uprobe
//! unregistration waits ~0.1 s for a grace period under a kernel-wide
//! mutex (measured with strace: closes from 32 threads completed one every
//! ~90 ms), so a JVM's 6 probes take ~0.6 s to detach, 50 JVMs ~48 s at
//! shutdown, and while the lifecycle thread detaches an exited target it
//! attaches nothing, which is the likely cause of the seconds-long attach
//! delays the churn test saw when several JVMs exited at once. Sharing
//! attachments would make that cost per distinct library instead of per
//! process; it is the next step for busy nodes.
//!
//! # Bounded memory
//!
//! The BPF maps have fixed sizes, shared by all targets (see
//! `pausewatch_common`): `INFLIGHT` holds 16384 open intervals (one per
//! thread per open kind, so thousands of threads mid-pause), `HISTOGRAMS`
//! 8192 series (pid × kind × cause: a JVM makes 10 to 30), `ARG_SPECS` 1024
//! distinct USDT argument locations (shared by every JVM of one libjvm).
//! When one is full the BPF side counts the loss in
//! `pausewatch_lost_events_total{reason}` and keeps going; an exited
//! target's rows are deleted when it is forgotten, so the space comes back.
//! In the agent, per-target state is one table entry and the collector's
//! target info and cause-name cache, all dropped when the target is
//! forgotten; `--max-targets` caps the number of traced processes (a process
//! left out counts as `reason="target_limit"`).

pub mod follow;
pub mod identity;
pub mod labels;
pub mod lifecycle;
pub mod select;

pub use labels::ContainerLabels;
pub use lifecycle::Lifecycle;
pub use select::Selection;

use thiserror::Error;

/// Why following processes failed.
#[derive(Debug, Error)]
pub enum TargetsError {
    /// tracefs is not mounted and mounting it failed.
    #[error(
        "tracefs is not mounted and mounting it failed ({0}); as root run \
         `mount -t tracefs nodev /sys/kernel/tracing` (in a container: mount the host's \
         /sys/kernel/tracing), then start the agent again"
    )]
    Tracefs(#[source] std::io::Error),
    /// Polling the process event ring buffer failed.
    #[error("cannot poll the process event ring buffer: {0}")]
    Poll(#[source] std::io::Error),
}
