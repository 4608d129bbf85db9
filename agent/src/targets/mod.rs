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
//! alternative is one attachment per (libjvm.so inode, offset) for all
//! processes, with a pid set in a BPF map to filter on. They differ in:
//! - who takes the trap: the kernel installs a system-wide uprobe's
//!   breakpoint in every process that maps the file, so unselected
//!   processes (`--exclude-pid`, processes outside `--comm`/`--exe`, over
//!   `--max-targets`) would take it on every probe hit only to be filtered
//!   out in BPF; with per-process scope the kernel never installs it there;
//! - bookkeeping: per-process attachments come and go with the process, so
//!   nothing has to be kept consistent between a filter map and the links;
//! - detach time, measured below.
//!
//! Both measured on this machine (2 cores, kernel 6.18), with N idle JDK 17
//! JVMs and the 6 HotSpot probes: per-process is `agent run --pid` on all N
//! (6N uprobes); shared is `bpftrace` with the same 6 USDT probes and no
//! `-p` (6 uprobes, the kernel putting each breakpoint into every JVM):
//!
//! | N | attach, per-process | attach, shared | detach, per-process | detach, shared |
//! |---|---|---|---|---|
//! | 10 | 65 ms (60 uprobes) | 0.27 s from spawn | 6.8 s | 0.76 s |
//! | 50 | 94 ms (300 uprobes) | 0.16 s from spawn | 32.8 s | 0.76 s |
//!
//! Attaching costs about the same either way (the kernel writes the same
//! breakpoints into the same processes); detaching is where they differ:
//! each uprobe unregistration waits ~0.1 s for a grace period under a
//! kernel-wide mutex (strace: closes from 32 threads completed one every
//! ~90 ms), so per-process detach grows with N and shared does not. The
//! churn test (`xtask/tests/e2e_host.rs`, 24 JVMs of JDK 17 and 25 at up to
//! ~4 at a time, on a loaded machine) saw one JVM's uprobes attach in 0.7 ms
//! at best, 22 ms median, 112 ms at worst (`perf_event_open` of a uprobe
//! writes the breakpoint under the target's `mmap_lock`, which a starting
//! JVM holds a lot), and RSS go from 7.8 MB to 9.5 MB at its peak and stay
//! there (allocator pages, not per-target state).
//!
//! Chosen: per-process, for now. What it costs is shutdown time (59 s with
//! 100 JVMs, which the bundled systemd unit and DaemonSet allow for) and
//! the lifecycle's background detach of exited targets (the `Reaper` in
//! `bpf::loader`, so that new processes never wait behind it). What shared
//! attachment would cost: a trap in every unselected process that maps the
//! library (the empty-program floor, ~0.8 µs per begin/end pair here, on
//! every safepoint of every other JVM), a pid filter map that must stay
//! consistent with the target table, and reference counts per (inode,
//! offset) so that the last target's exit detaches. For `--all` on a busy
//! node it is the better trade, and the next step.
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
pub mod seams;
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
