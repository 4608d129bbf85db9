//! Memory pools around collections: what the `hotspot:mem__pool__gc__begin`
//! and `mem__pool__gc__end` programs (`ebpf/src/heap.rs`) keep per process,
//! pool and memory manager, and how the agent hands them every argument of
//! the probe.
//!
//! HotSpot fires both probes once per memory pool (heap and non-heap) in
//! `GCMemoryManager::gc_begin` / `gc_end`, with `(manager name, len, pool
//! name, len, initial, used, committed, max)`. The names are static strings
//! of libjvm, so their addresses are stable ids, resolved to text in
//! userspace like VM operation names.

use crate::ArgSpec;

/// Most arguments a USDT probe point carries (stapsdt allows 12; HotSpot's
/// memory-pool probes have 8).
pub const MAX_USDT_ARGS: usize = 8;

/// Every argument location of one probe point, for programs that read more
/// than one (the `ARG_SETS` map, indexed by the attach cookie). Unused
/// slots are [`crate::ARG_NONE`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ArgSet {
    /// Argument `i` of the probe in slot `i`.
    pub specs: [ArgSpec; MAX_USDT_ARGS],
}

/// `mem__pool__gc__*` argument: the memory manager's name (address).
pub const POOL_ARG_MANAGER: usize = 0;
/// `mem__pool__gc__*` argument: the pool's name (address).
pub const POOL_ARG_POOL: usize = 2;
/// `mem__pool__gc__*` argument: the pool's used bytes.
pub const POOL_ARG_USED: usize = 5;
/// `mem__pool__gc__*` argument: the pool's committed bytes.
pub const POOL_ARG_COMMITTED: usize = 6;
/// `mem__pool__gc__*` argument: the pool's maximum bytes (`(size_t)-1`
/// when undefined, as for G1's eden and survivor pools).
pub const POOL_ARG_MAX: usize = 7;

/// Key of the pool statistics map: one entry per process, pool and memory
/// manager (a pool is collected by several managers: young and full).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// Process id (tgid).
    pub pid: u32,
    /// Explicit padding (always zero).
    pub _pad: u32,
    /// Address of the pool's name in the target.
    pub pool: u64,
    /// Address of the memory manager's name in the target.
    pub manager: u64,
}

/// Key of the map of each pool's used bytes after its latest collection
/// by any manager, which the next collection's "before" is compared with.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PoolLastKey {
    /// Process id (tgid).
    pub pid: u32,
    /// Explicit padding (always zero).
    pub _pad: u32,
    /// Address of the pool's name in the target.
    pub pool: u64,
}

/// What the BPF side keeps per [`PoolKey`]: the latest collection's values
/// and running sums over every collection since the agent attached. Sums
/// rather than the latest values alone, so that no collection between two
/// scrapes is lost.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Collections by this manager that ended (`gc__end` probes seen).
    pub collections: u64,
    /// Of those, the ones whose begin was seen too (the others began before
    /// the agent attached, or the manager records no usage before).
    pub paired: u64,
    /// 1 while a collection has begun and not ended.
    pub open: u64,
    /// Used bytes at the open collection's begin.
    pub open_used: u64,
    /// Used bytes before the latest paired collection.
    pub used_before: u64,
    /// Used bytes after the latest collection.
    pub used_after: u64,
    /// Committed bytes after the latest collection.
    pub committed: u64,
    /// Maximum bytes after the latest collection.
    pub max: u64,
    /// Sum of used-after over every collection.
    pub used_after_sum: u64,
    /// Sum of used-before over every paired collection.
    pub used_before_sum: u64,
    /// Sum over paired collections of the pool's growth since the previous
    /// collection of any manager (before − previous after, when positive):
    /// what the application allocated into the pool in between.
    pub grown_between: u64,
    /// Sum over paired collections of the pool's growth during the
    /// collection (after − before, when positive): for an old generation in
    /// a young collection, what was promoted into it.
    pub grown_during: u64,
    /// Sum over paired collections of what the collection freed in the pool
    /// (before − after, when positive).
    pub freed_during: u64,
    /// CLOCK_MONOTONIC nanoseconds of the latest end.
    pub last_end_ns: u64,
}

/// Capacity of the pool statistics map: ~10 pools × 2-3 managers per JVM.
pub const MAX_POOL_STATS: u32 = 8192;
/// Capacity of the `ARG_SETS` map (probe points whose programs read every
/// argument: two per libjvm build, shared by all its JVMs).
pub const MAX_ARG_SETS: u32 = 256;

/// One pool at the end of one collection, sent through the `POOL_EVENTS`
/// ring buffer when `agent run --events` is on: the per-collection account
/// that [`PoolStats`] only keeps as sums and the latest values.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolEvent {
    /// Process id (tgid).
    pub pid: u32,
    /// 1 when the collection's begin was seen, so `used_before` holds.
    pub has_before: u32,
    /// Address of the memory manager's name in the target.
    pub manager: u64,
    /// Address of the pool's name in the target.
    pub pool: u64,
    /// This manager's collections of this pool seen so far, this one
    /// included ([`PoolStats::collections`]): the pools of one collection
    /// share it, so it groups them.
    pub collection: u64,
    /// Used bytes at the begin (when `has_before` is 1).
    pub used_before: u64,
    /// Used bytes at the end.
    pub used_after: u64,
    /// Committed bytes at the end.
    pub committed: u64,
    /// Maximum bytes (`(size_t)-1` when undefined).
    pub max: u64,
    /// CLOCK_MONOTONIC nanoseconds at the end probe.
    pub end_ns: u64,
}

/// Size of the pool event ring buffer with `--events`: ~2,900 records of
/// [`PoolEvent`] (80 bytes plus the ring's 8-byte header), some 300
/// collections of a JVM with ten pools between two drains of the agent.
pub const POOL_RINGBUF_BYTES: u32 = 1 << 18;
/// Its size without `--events`, when no program writes it: one page, the
/// least a ring buffer can have.
pub const POOL_RINGBUF_IDLE_BYTES: u32 = 4096;
