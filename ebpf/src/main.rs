//! BPF programs of pausewatch.
//!
//! Data path: a runtime's probes (uprobes on USDT notes or functions) call the
//! helpers in [`intervals`] to open and close per-thread intervals; a closed
//! interval becomes one observation in a per-CPU histogram keyed by process,
//! kind and cause ([`maps::HISTOGRAMS`]) and, when the agent asks for it, one
//! event in the ring buffer. Userspace reads and decodes the maps; nothing
//! here resolves names or formats text.
#![no_std]
#![no_main]
// Atomic adds on a map value (`anatomy`): `AtomicU64` lacks them on bpfel.
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod admission;
mod anatomy;
mod args;
mod bench;
mod cpython;
mod go;
mod heap;
mod hotspot;
mod intervals;
mod maps;
mod process;
mod ruby;
mod straggler;
mod threads;
mod v8;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // BPF programs cannot unwind or abort; the verifier proves no panic path
    // is reachable, so this loop is never taken.
    loop {}
}
