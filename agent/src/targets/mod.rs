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
//! # Shared attachment, bounded state
//!
//! The BPF programs are loaded once. Following processes, each probe point
//! of a runtime file is attached once for every process that maps it
//! (`bpf::shared`); the BPF side records a process from its exec until it
//! is given up (`ebpf/src/admission.rs`), so a process of an already
//! probed file is counted from its first pause, and [`lifecycle`] tells
//! the tracer which processes it adopts and which it rejects. With
//! `--pid` each target has uprobes of its own. The BPF maps have fixed
//! sizes shared by all targets; an exited target's rows go when it is
//! forgotten, and `--max-targets` caps the number of targets. The
//! measurements and the choice are in `docs/design.md` ("Target
//! lifecycle").

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
