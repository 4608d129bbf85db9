//! Following processes for host-wide tracing (`agent run --all`, `--comm`,
//! `--exe`): which processes are wanted ([`select`]), the exec/exit stream
//! that tells about new and dead ones ([`follow`]), the pid + start time
//! identity that keeps a reused pid apart from its predecessor
//! ([`identity`]), container and pod labels ([`labels`]) with the CPU limit
//! ([`cpu_limit`]), and the state
//! machine that makes wanted processes targets and lets them go
//! ([`lifecycle`]), reaching the tracer, the collector and `/proc` through
//! the traits of [`seams`].
//!
//! # Words
//!
//! - A *process* is anything that runs. A *discovered* process is one whose
//!   runtime discovery recognised (`discovery::Discovered`: the process, its
//!   runtime and the probes to attach).
//! - A *target* is a process the agent traces: probes attached, reported in
//!   `pausewatch_target_info` (`collect::TargetInfo`) and in its series.
//!   After its exit it stays one, detached, for the grace period, then it
//!   is forgotten.
//!
//! # Per-process attachment, bounded state
//!
//! The BPF programs are loaded once; each target gets its own uprobe perf
//! events, scoped to its pid, so processes that are not wanted never take a
//! probe's trap and attachments come and go with their process. What that
//! costs is detach time, which grows with the number of targets (hence the
//! background detach in `bpf::loader`). The BPF maps have fixed sizes shared
//! by all targets; an exited target's rows go when it is forgotten, and
//! `--max-targets` caps the number of targets. The measurements, and the
//! alternative of one attachment per probe point shared by all processes,
//! are in `docs/design.md` ("Target lifecycle").

pub mod cpu_limit;
pub mod follow;
pub mod identity;
pub mod labels;
pub mod lifecycle;
pub mod seams;
pub mod select;

pub use labels::ContainerLabels;
pub use lifecycle::Lifecycle;
pub use select::Selection;
