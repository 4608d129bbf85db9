//! Types shared by the BPF programs (`ebpf/`) and the agent (`agent/`).
//!
//! Every type here crosses the kernel boundary through a BPF map or the ring
//! buffer, so each is `#[repr(C)]`, has explicit padding, and keeps the same
//! layout on both sides. The histogram bucketing lives here too: the BPF side
//! bins with [`bucket_index`], the agent turns bins back into boundaries with
//! [`bucket_upper_bound_ns`], and both must agree to the bit.
#![no_std]

pub mod heap;
pub mod hist;

pub use hist::{BUCKETS, Histogram, bucket_index, bucket_upper_bound_ns};

/// What a histogram measures. Stored as `u32` in map keys.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// HotSpot safepoint, from `safepoint__begin` to `safepoint__end` (a pause).
    Safepoint = 1,
    /// HotSpot time to safepoint: safepoint begin to the VM operation's start.
    TimeToSafepoint = 2,
    /// HotSpot VM operation, `vmops__begin` to `vmops__end` (at a safepoint or not).
    VmOperation = 3,
    /// A stop-the-world garbage collection (a pause).
    GcPause = 4,
    /// A garbage collection cycle that ran concurrently with the application
    /// (not a pause; kept apart so it is never mistaken for one).
    GcConcurrent = 5,
    /// Go stop-the-world, from `stopTheWorldWithSema` to the point in
    /// `startTheWorldWithSema` where the world runs again (a pause).
    Stw = 6,
}

impl Kind {
    /// Every kind, in a fixed order.
    pub const ALL: [Kind; 6] = [
        Kind::Safepoint,
        Kind::TimeToSafepoint,
        Kind::VmOperation,
        Kind::GcPause,
        Kind::GcConcurrent,
        Kind::Stw,
    ];

    /// Name of the kind in events and messages. For pauses it is also the
    /// `kind` label of `pausewatch_pause_seconds`.
    pub const fn label(self) -> &'static str {
        match self {
            Kind::Safepoint => "safepoint",
            Kind::TimeToSafepoint => "time_to_safepoint",
            Kind::VmOperation => "vm_operation",
            Kind::GcPause => "gc",
            Kind::GcConcurrent => "gc_concurrent",
            Kind::Stw => "stw",
        }
    }

    /// Whether this kind stops the application's threads (and so belongs in
    /// `pausewatch_pause_seconds`).
    pub const fn is_pause(self) -> bool {
        matches!(self, Kind::Safepoint | Kind::GcPause | Kind::Stw)
    }

    /// Decodes a kind read from a map key.
    pub fn from_u32(v: u32) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| *k as u32 == v)
    }
}

/// Key of the histogram map: one histogram per process, kind and cause.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HistKey {
    /// Process id (tgid) as seen from the root pid namespace.
    pub pid: u32,
    /// A [`Kind`] as `u32`.
    pub kind: u32,
    /// Runtime-specific cause id, resolved to text in userspace (for HotSpot
    /// safepoints: the address of the VM operation's name in the target).
    pub cause: u64,
}

/// One open interval of a thread: a slot of [`ThreadEntry::slots`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Interval {
    /// A [`Kind`] as `u32`; 0 marks a free slot (no kind is 0).
    pub kind: u32,
    /// 1 when the begin counted this interval in [`ThreadEntry::refs`]
    /// (a pause, with the anatomy on), so its end must uncount it.
    pub tracked: u32,
    /// Distinguishes nested intervals of one kind (VM operations nest, by
    /// the address of their name); zero otherwise.
    pub nest: u64,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) at the begin probe.
    pub start_ns: u64,
    /// Cause id; for safepoints, set by the first VM operation that runs inside.
    pub cause: u64,
    /// For safepoints: nanoseconds from begin to the first VM operation, or 0.
    pub tts_ns: u64,
    /// For pauses: the thread's accumulated per-state time at the begin
    /// probe (see `ebpf/src/anatomy.rs`), subtracted at the end.
    pub state_ns: [u64; THREAD_STATES],
}

/// Open intervals one thread can hold at once. The deepest nesting seen is
/// HotSpot's VM thread: a safepoint, its VM operation, a VM operation run
/// inside that one, and the GC pause inside; a fifth is counted as
/// [`LostReason::InflightFull`].
pub const MAX_OPEN_INTERVALS: usize = 4;

/// A thread's entry in the per-thread table (`THREAD_ENTRIES`, an array
/// indexed by a hash of the thread's `task_struct` address, which
/// [`ThreadEntry::task`] tags): its open intervals and its pause-anatomy
/// accounting. It outlives the thread's pauses (one array lookup per probe,
/// no insert or delete) and is freed at the thread's exit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadEntry {
    /// The owning thread's `task_struct` address; 0 marks a free entry.
    pub task: u64,
    /// Process id (tgid) of the thread: a task address reused by another
    /// thread (an exit whose hook did not run) is told apart by it and `tid`.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Open pauses whose anatomy is being accounted; the thread counts in
    /// the scheduler programs' gate while this is above zero.
    pub refs: u32,
    /// The [`ThreadState`] since `since_ns`.
    pub state: u32,
    /// When the current state began.
    pub since_ns: u64,
    /// Time spent in each state while tracked, closed segments only
    /// (drivers; a worker's time goes to its process's GC window).
    pub acc_ns: [u64; THREAD_STATES],
    /// The thread's role in the anatomy (`ebpf/src/anatomy.rs`): 0 for a
    /// thread that runs begin probes, 1 for a HotSpot GC worker.
    pub role: u32,
    /// Explicit padding (always zero).
    pub _pad: u32,
    /// A worker's: the GC window epoch its state belongs to.
    pub epoch: u64,
    /// Open intervals, free where `kind` is 0.
    pub slots: [Interval; MAX_OPEN_INTERVALS],
}

/// Scheduler state of a thread that drives a pause, as the `sched_switch`
/// and `sched_wakeup` tracepoints reveal it. Index into
/// [`Histogram::state_ns`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ThreadState {
    /// On a CPU.
    Running = 0,
    /// Ready to run but not running: preempted, throttled by a CPU quota,
    /// or woken and waiting for a CPU.
    Runnable = 1,
    /// Sleeping or waiting (for a lock, a futex, I/O, a timer).
    Blocked = 2,
}

/// Number of [`ThreadState`]s.
pub const THREAD_STATES: usize = 3;

impl ThreadState {
    /// Every state, in index order.
    pub const ALL: [ThreadState; THREAD_STATES] = [
        ThreadState::Running,
        ThreadState::Runnable,
        ThreadState::Blocked,
    ];

    /// The `state` label value exported for this state.
    pub const fn label(self) -> &'static str {
        match self {
            ThreadState::Running => "running",
            ThreadState::Runnable => "runnable",
            ThreadState::Blocked => "blocked",
        }
    }
}

/// log2 of [`MAX_THREADS`].
pub const THREAD_INDEX_BITS: u32 = 13;
/// Capacity of the per-thread table (`THREAD_ENTRIES`): threads that have
/// run a begin probe (each keeps its entry until it exits, or until another
/// thread needs the place while it has nothing open) plus HotSpot GC
/// workers. A thread may live at one of two places, both derived from its
/// task address; when both are busy with other threads' open intervals,
/// its begin is counted as [`LostReason::TrackedFull`].
pub const MAX_THREADS: u32 = 1 << THREAD_INDEX_BITS;

/// The two places of the thread whose `task_struct` is at `task` in the
/// per-thread table: two fields of one multiplicative (Fibonacci) hash, so
/// task addresses, which are slab slots a fixed stride apart, spread.
pub const fn thread_places(task: u64) -> (u32, u32) {
    let h = task.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mask = MAX_THREADS as u64 - 1;
    (
        (h >> (64 - THREAD_INDEX_BITS)) as u32,
        ((h >> (64 - 2 * THREAD_INDEX_BITS)) & mask) as u32,
    )
}

/// One finished pause, sent through the ring buffer when `--events` is on.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PauseEvent {
    /// Process id (tgid).
    pub pid: u32,
    /// Thread that ran the begin and end probes.
    pub tid: u32,
    /// A [`Kind`] as `u32`.
    pub kind: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// Cause id, as in [`HistKey::cause`].
    pub cause: u64,
    /// CLOCK_MONOTONIC nanoseconds at the begin probe.
    pub start_ns: u64,
    /// Duration in nanoseconds.
    pub duration_ns: u64,
    /// Time to safepoint in nanoseconds (safepoints only, else 0).
    pub tts_ns: u64,
    /// How the thread spent `duration_ns`, indexed by [`ThreadState`]
    /// (all zero when it could not be tracked).
    pub state_ns: [u64; THREAD_STATES],
    /// Safepoints: the thread that reached the safepoint last (see
    /// `ebpf/src/straggler.rs`), or 0 when none was seen.
    pub straggler_tid: u32,
    /// The straggler's [`ThreadState`] for most of its wait: running or
    /// runnable.
    pub straggler_state: u32,
    /// Nanoseconds from the safepoint's begin to the straggler's arrival.
    pub straggler_late_ns: u64,
    /// The straggler's command name (HotSpot names a Java thread's native
    /// thread after it: the first 15 bytes of the Java name), NUL-padded.
    pub straggler_comm: [u8; COMM_LEN],
}

/// Key of the safepoint straggler map: one entry per process and
/// straggler thread name.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StragglerKey {
    /// Process id (tgid).
    pub pid: u32,
    /// The straggler's command name, as in [`PauseEvent::straggler_comm`].
    pub comm: [u8; COMM_LEN],
}

/// Value of the safepoint straggler map (per CPU, summed by the agent).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StragglerStats {
    /// Safepoints this thread name reached last.
    pub count: u64,
    /// Sum of those safepoints' time to safepoint (begin to the first VM
    /// operation), in nanoseconds: the time charged to the straggler.
    pub tts_ns: u64,
    /// Sum of their straggler's arrival after the begin, in nanoseconds.
    pub late_ns: u64,
}

/// Capacity of the straggler map (process and thread name pairs).
pub const MAX_STRAGGLERS: u32 = 8192;

/// Where a USDT argument lives, as decoded from a stapsdt argument spec such
/// as `8@%r12` or `-4@-20(%rbp)`. The agent writes one of these per attach
/// point into the `ARG_SPECS` map, indexed by the uprobe's BPF cookie.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ArgSpec {
    /// One of the `ARG_*` constants.
    pub loc: u32,
    /// Byte offset of the register inside `struct pt_regs`.
    pub reg_off: u32,
    /// Constant value (`ARG_CONST`) or displacement (`ARG_REG_DEREF`).
    pub val: i64,
    /// Width in bytes: 1, 2, 4 or 8.
    pub size: u8,
    /// 1 when the spec's size was negative (sign-extend).
    pub signed: u8,
    /// Explicit padding.
    pub _pad: [u8; 6],
}

/// The probe has no argument that the BPF program reads.
pub const ARG_NONE: u32 = 0;
/// The argument is a constant (`4@$5`).
pub const ARG_CONST: u32 = 1;
/// The argument is a register's value (`8@%rdi`).
pub const ARG_REG: u32 = 2;
/// The argument is in memory at a register plus displacement (`8@-8(%rbp)`).
pub const ARG_REG_DEREF: u32 = 3;

/// Go stop-the-world cause ids: set when the id is a Go string in the target
/// (Go 1.19 passes the reason as a string), encoded as
/// `GO_CAUSE_STRING | len << GO_CAUSE_LEN_SHIFT | address`; clear when it is
/// the runtime's `stwReason` number (Go 1.21+).
pub const GO_CAUSE_STRING: u64 = 1 << 63;
/// Bit position of a Go string cause's length.
pub const GO_CAUSE_LEN_SHIFT: u32 = 48;
/// Longest Go string cause that fits the encoding (15 bits of length).
pub const GO_CAUSE_MAX_LEN: u64 = (1 << 15) - 1;

/// Capacity of the `ADMITTED` map: processes that exec'd and are not
/// decided yet, plus targets, in the follow modes.
pub const MAX_ADMITTED: u32 = 32768;
/// `ADMITTED` value of a process that exec'd and that the agent has not
/// decided about yet: shared probes record it, for the agent to adopt.
pub const ADMIT_PENDING: u8 = 1;
/// `ADMITTED` value of a target.
pub const ADMIT_TARGET: u8 = 2;

/// Capacity of the `ARG_SPECS` array map (attach points with an argument).
pub const MAX_ARG_SPECS: u32 = 1024;

/// Why an event could not be recorded; index into the `LOST` counters.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LostReason {
    /// The ring buffer was full when a pause event was emitted.
    RingbufFull = 0,
    /// An interval began on a thread whose open-interval slots
    /// ([`MAX_OPEN_INTERVALS`]) were all taken.
    InflightFull = 1,
    /// The histogram map was full when a new series appeared.
    HistogramFull = 2,
    /// An argument could not be read from the target.
    ArgRead = 3,
    /// The process event ring buffer (exec/exit, host-wide mode) was full.
    ProcessEventsFull = 4,
    /// An interval began on a thread that has no per-thread entry and whose
    /// two places in `THREAD_ENTRIES` were both held by other threads with
    /// open intervals, so that interval is not recorded.
    TrackedFull = 5,
    /// The memory-pool statistics map was full when a new (process, pool,
    /// manager) appeared, so that pool's collections are not counted.
    PoolStatsFull = 6,
    /// The memory-pool event ring buffer (`--events`) was full when a
    /// pool's collection ended, so that line is missing.
    PoolEventsFull = 7,
    /// A process exec'd while the admission map (`ADMITTED`, follow modes)
    /// was full, so what shared probes see of it before the agent adopts it
    /// is not recorded.
    AdmissionFull = 8,
}

impl LostReason {
    /// Every reason, in index order.
    pub const ALL: [LostReason; 9] = [
        LostReason::RingbufFull,
        LostReason::InflightFull,
        LostReason::HistogramFull,
        LostReason::ArgRead,
        LostReason::ProcessEventsFull,
        LostReason::TrackedFull,
        LostReason::PoolStatsFull,
        LostReason::PoolEventsFull,
        LostReason::AdmissionFull,
    ];

    /// The `reason` label value exported for this counter.
    pub const fn label(self) -> &'static str {
        match self {
            LostReason::RingbufFull => "ringbuf_full",
            LostReason::InflightFull => "inflight_map_full",
            LostReason::HistogramFull => "histogram_map_full",
            LostReason::ArgRead => "arg_read_failed",
            LostReason::ProcessEventsFull => "process_events_full",
            LostReason::TrackedFull => "tracked_threads_full",
            LostReason::PoolStatsFull => "pool_stats_full",
            LostReason::PoolEventsFull => "pool_events_full",
            LostReason::AdmissionFull => "admission_map_full",
        }
    }
}

/// Number of [`LostReason`] counters.
pub const LOST_REASONS: u32 = LostReason::ALL.len() as u32;

/// Capacity of the histogram map (series across all targets).
pub const MAX_HISTOGRAMS: u32 = 8192;
/// Size of the pause event ring buffer in bytes (a power of two, page aligned).
pub const RINGBUF_BYTES: u32 = 1 << 20;
/// Fill level of the event ring buffer at which the BPF side wakes the
/// agent's reader; below it the agent drains the ring on its own timer
/// (`EVENTS_DRAIN_MS`), so quiet periods cost the target no wake-ups.
pub const EVENTS_WAKEUP_BYTES: u32 = RINGBUF_BYTES / 4;
/// How often the agent drains the event ring buffer without a wake-up, in ms.
/// 1 MiB / 4 holds ~6,500 events, so this keeps up with 65,000 pauses/s.
pub const EVENTS_DRAIN_MS: u64 = 100;
/// Size of the process event ring buffer in bytes: ~13,000 records of
/// [`ProcessEvent`] (32 bytes plus the ring's 8-byte header), far more execs
/// and exits than a busy node makes between two reads by the agent.
pub const PROCESS_RINGBUF_BYTES: u32 = 1 << 19;

/// Length of a command name as the kernel stores it (`TASK_COMM_LEN`: 15
/// bytes and a NUL).
pub const COMM_LEN: usize = 16;

/// A process began running a new program (`sched_process_exec`).
pub const PROCESS_EXEC: u32 = 1;
/// A process exited (`sched_process_exit` of its thread group leader).
pub const PROCESS_EXIT: u32 = 2;

/// One process lifecycle event, for `agent run --all` and friends.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessEvent {
    /// [`PROCESS_EXEC`] or [`PROCESS_EXIT`].
    pub what: u32,
    /// Process id (tgid) in the root pid namespace.
    pub pid: u32,
    /// CLOCK_MONOTONIC nanoseconds when the tracepoint fired.
    pub ktime_ns: u64,
    /// For [`PROCESS_EXEC`]: the command name the kernel gave the new
    /// program (the file name it was exec'd by, cut to 15 bytes,
    /// NUL-padded), before the program can rename itself; zero for exits.
    pub comm: [u8; COMM_LEN],
}

/// Ruby cause id of a pause from `ruby:gc__mark__begin` to `gc__mark__end`:
/// one collection's marking, with the sweep steps it runs inside (see
/// `ebpf/src/ruby.rs`).
pub const RUBY_CAUSE_MARK: u64 = 1;
/// Ruby cause id of a sweep step (`gc__sweep__begin` to `gc__sweep__end`)
/// that runs outside a marking: a lazy sweep step.
pub const RUBY_CAUSE_SWEEP: u64 = 2;

/// Ruby cause id of a minor collection's marking: `RUBY_CAUSE_MARK`, told
/// apart by `objspace->flags` (see `agent/src/runtimes/ruby/layout.rs`).
pub const RUBY_CAUSE_MINOR: u64 = 3;
/// Ruby cause id of a major collection's marking.
pub const RUBY_CAUSE_MAJOR: u64 = 4;
/// Ruby 3.1's `objspace->flags.during_gc` bit, set from `gc_enter` to
/// `gc_exit`: a flags word read in a marking without it is not the flags.
pub const RUBY31_FLAG_DURING_GC: u32 = 1 << 5;
/// Ruby 3.1's `objspace->flags.during_minor_gc` bit, four fields after
/// `during_gc` in its bitfield; `gc_marks_start` sets it before the roots.
pub const RUBY31_FLAG_MINOR: u32 = 1 << 9;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are `#[repr(C)]`, `Copy`, made only of integers,
    // with explicit padding fields, so every bit pattern is valid.
    unsafe impl aya::Pod for super::HistKey {}
    unsafe impl aya::Pod for super::Interval {}
    unsafe impl aya::Pod for super::ThreadEntry {}
    unsafe impl aya::Pod for super::PauseEvent {}
    unsafe impl aya::Pod for super::ArgSpec {}
    unsafe impl aya::Pod for super::Histogram {}
    unsafe impl aya::Pod for super::ProcessEvent {}
    unsafe impl aya::Pod for super::StragglerKey {}
    unsafe impl aya::Pod for super::StragglerStats {}
    unsafe impl aya::Pod for super::heap::ArgSet {}
    unsafe impl aya::Pod for super::heap::PoolKey {}
    unsafe impl aya::Pod for super::heap::PoolLastKey {}
    unsafe impl aya::Pod for super::heap::PoolStats {}
    unsafe impl aya::Pod for super::heap::PoolEvent {}
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;

    /// `xtask/tests/hardening.rs` reads `THREAD_ENTRIES` values from
    /// `bpftool map dump` at these offsets.
    #[test]
    fn thread_entry_layout_is_the_one_the_tests_read() {
        assert_eq!(core::mem::offset_of!(ThreadEntry, task), 0);
        assert_eq!(core::mem::offset_of!(ThreadEntry, pid), 8);
        assert_eq!(core::mem::offset_of!(ThreadEntry, slots), 72);
        assert_eq!(core::mem::size_of::<Interval>(), 64);
        assert_eq!(core::mem::offset_of!(Interval, kind), 0);
        assert_eq!(
            core::mem::size_of::<ThreadEntry>(),
            72 + 64 * MAX_OPEN_INTERVALS
        );
        assert!(
            Kind::ALL.iter().all(|k| *k as u32 != 0),
            "0 marks a free slot"
        );
    }

    /// Both places are in the table, and task addresses a slab stride apart
    /// (the kernel's `task_struct` cache) rarely share a first place.
    #[test]
    fn thread_places_spread_slab_neighbours() {
        let base = 0xffff_8880_0400_0000_u64;
        let mut seen = std::collections::HashSet::new();
        let mut clashes = 0;
        for i in 0..512u64 {
            let (a, b) = thread_places(base + i * 0x2a40);
            assert!(a < MAX_THREADS && b < MAX_THREADS);
            if !seen.insert(a) {
                clashes += 1;
            }
        }
        // 512 keys in 8192 places: ~16 clashes expected at random.
        assert!(clashes < 40, "{clashes} first-place clashes");
    }
}
