//! Loading the embedded BPF programs and attaching them to targets.
//!
//! The object is built by `cargo xtask build-ebpf` and embedded at compile
//! time, so the released agent is one self-contained binary.

pub mod anatomy;
pub mod loader;
pub mod refctr;
pub mod selftest;

pub use loader::{AttachedProbe, BpfError, Tracer, TracerMaps};

/// The BPF object, embedded at build time (see `agent/build.rs`).
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(env!("PAUSEWATCH_EBPF_OBJECT"));
