//! Loading the embedded BPF programs and attaching them to targets.
//!
//! The object is built by `cargo xtask build-ebpf` and embedded at compile
//! time, so the released agent is one self-contained binary.

pub mod anatomy;
pub mod loader;
pub mod refctr;
pub mod selftest;
pub mod shared;

pub use loader::{AttachedProbe, BpfError, Tracer, TracerMaps};

/// The BPF object, embedded at build time (see `agent/build.rs`).
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(env!("PAUSEWATCH_EBPF_OBJECT"));

/// A ring buffer record as the `#[repr(C)]` event the BPF side wrote, or
/// `None` for a record too short to be one.
pub fn ring_record<T: aya::Pod>(item: &[u8]) -> Option<T> {
    if item.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: `T` is plain data (every bit pattern is valid), the length was
    // checked, and read_unaligned copes with any alignment.
    Some(unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) })
}
