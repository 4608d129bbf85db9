//! pausewatch: times runtime stop-the-world pauses with eBPF and exports them.
//!
//! The data path is the module layout:
//! [`probes`] (where to attach, decoded from ELF notes and symbols) →
//! [`discovery`] (which runtime a process runs and which probes it needs) →
//! [`targets`] (which processes, followed as they start and exit) →
//! [`bpf`] (load the embedded programs and attach them) →
//! [`collect`] (read the maps into snapshots and events) →
//! [`rules`] (classify each process's workload and say what to tune) →
//! [`export`] (Prometheus text over HTTP).

pub mod bench_attach;
pub mod bpf;
pub mod check;
pub mod cli;
pub mod collect;
pub mod discovery;
pub mod export;
pub mod preflight;
pub mod probes;
pub mod rules;
pub mod rules_cmd;
pub mod run;
pub mod runtimes;
pub mod summary;
pub mod targets;
