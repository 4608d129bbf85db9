//! Collection: BPF maps in, decoded [`Snapshot`]s and pause events out.

pub mod backing;
pub mod batch;
pub mod buckets;
pub mod causes;
pub mod collector;
pub mod events;
pub mod heap;
pub mod snapshot;
pub mod stragglers;

pub use backing::FileBacking;
pub use buckets::Buckets;
pub use causes::CauseResolver;
pub use collector::Collector;
pub use snapshot::{Hist, Series, Snapshot, TargetInfo};
pub use stragglers::StragglerSeries;

/// Locks a collector shared between the main loop, the lifecycle thread and
/// the event reader. A panic while holding the lock leaves the maps
/// untouched (they live in the kernel), so a poisoned lock is still usable.
pub fn lock(c: &std::sync::Mutex<Collector>) -> std::sync::MutexGuard<'_, Collector> {
    c.lock().unwrap_or_else(|p| p.into_inner())
}

/// CLOCK_MONOTONIC now, in nanoseconds: the clock of every timestamp the
/// BPF programs take (`bpf_ktime_get_ns`) and of the events.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
