//! Reads the BPF maps into [`Snapshot`]s.

use std::{collections::HashMap, os::fd::AsFd, time::SystemTime};

use aya::maps::{HashMap as BpfHashMap, IterableMap, MapData, PerCpuArray, PerCpuHashMap};
use pausewatch_common::{
    HistKey, Histogram, Kind, LostReason, StragglerKey, StragglerStats,
    heap::{PoolKey, PoolLastKey, PoolStats},
};

use super::{
    CauseResolver, FileBacking, Hist, Series, Snapshot, TargetInfo,
    batch::BatchReader,
    heap::PoolSeries,
    snapshot::share_unchanged,
    stragglers::{NameSlots, StragglerSeries, sum_per_cpu},
};

/// The memory-pool maps of `ebpf/src/heap.rs`.
pub struct HeapMaps {
    /// Per process, pool and manager (`POOL_STATS`).
    pub stats: BpfHashMap<MapData, PoolKey, PoolStats>,
    /// Per process and pool, the latest used-after (`POOL_LAST`).
    pub last: BpfHashMap<MapData, PoolLastKey, u64>,
}

/// Owns the aggregation maps and decodes them.
pub struct Collector {
    histograms: PerCpuHashMap<MapData, HistKey, Histogram>,
    lost: PerCpuArray<MapData, u64>,
    stragglers: PerCpuHashMap<MapData, StragglerKey, StragglerStats>,
    straggler_names: NameSlots,
    targets: HashMap<u32, TargetInfo>,
    causes: CauseResolver,
    heap: Option<HeapMaps>,
    /// The processes not reported yet whose rows are kept (`ADMITTED`).
    admitted: Option<BpfHashMap<MapData, u32, u8>>,
    /// The maps as last read, buffers kept for the next collection.
    read: Reads,
    /// The previous collection, whose unchanged items the next one shares.
    last: Snapshot,
}

/// The buffers of the batch reads (see [`super::batch`]).
#[derive(Debug, Default)]
struct Reads {
    histograms: BatchReader<HistKey, Histogram>,
    stragglers: BatchReader<StragglerKey, StragglerStats>,
    pools: BatchReader<PoolKey, PoolStats>,
}

/// Folds every entry of the map `fd` (`per_key` values a key) into a
/// tally with `visit`, reading in batches, or with `walk`, aya's walk of
/// the map, when the kernel refuses them (the tally then starts over, so
/// no entry counts twice).
fn read_or_walk<K: aya::Pod, V: aya::Pod, S: Default, I: IntoIterator<Item = V>, W>(
    reader: &mut BatchReader<K, V>,
    fd: std::os::fd::BorrowedFd<'_>,
    per_key: usize,
    walk: impl FnOnce() -> W,
    mut visit: impl FnMut(&mut S, &K, &[V]),
) -> S
where
    W: Iterator<Item = (K, I)>,
{
    let mut tally = S::default();
    if let Err(e) = reader.for_each(fd, per_key, |k, v| visit(&mut tally, k, v)) {
        log::debug!("batch read refused ({e}); walking the map");
        tally = S::default();
        let mut values = Vec::with_capacity(per_key);
        for (key, per_cpu) in walk() {
            values.clear();
            values.extend(per_cpu.into_iter().take(per_key));
            if values.len() == per_key {
                visit(&mut tally, &key, &values);
            }
        }
    }
    tally
}

/// Folds the per-CPU hash map `map` into a tally (see [`read_or_walk`]).
fn read_per_cpu<K: aya::Pod, V: aya::Pod, S: Default>(
    map: &PerCpuHashMap<MapData, K, V>,
    reader: &mut BatchReader<K, V>,
    visit: impl FnMut(&mut S, &K, &[V]),
) -> S {
    let cpus = aya::util::nr_cpus().unwrap_or(1);
    read_or_walk(
        reader,
        map.map().fd().as_fd(),
        cpus,
        || {
            map.iter()
                .filter_map(Result::ok)
                .map(|(k, v)| (k, v.iter().copied().collect::<Vec<V>>()))
        },
        visit,
    )
}

/// Where a process stands, from the targets and the admitted map.
fn standing(
    targets: &HashMap<u32, TargetInfo>,
    admitted: Option<&BpfHashMap<MapData, u32, u8>>,
    pid: u32,
) -> Standing {
    if targets.contains_key(&pid) {
        return Standing::Target;
    }
    match admitted {
        Some(a) if a.get(&pid, 0).is_err() => Standing::Stranger,
        _ => Standing::Undecided,
    }
}

/// Where a process that has rows in the maps stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Standing {
    /// Reported: its rows are exported.
    Target,
    /// Not reported, but admitted: shared probes recorded it before the
    /// agent decided about it (or between attach and report); its rows
    /// wait, unexported, for it to be adopted.
    Undecided,
    /// Neither: a process that was rejected or exited undecided. Its rows
    /// are never exported, and are deleted.
    Stranger,
}

impl Collector {
    /// A collector over the aggregation maps of a loaded tracer.
    pub fn new(
        histograms: PerCpuHashMap<MapData, HistKey, Histogram>,
        lost: PerCpuArray<MapData, u64>,
        stragglers: PerCpuHashMap<MapData, StragglerKey, StragglerStats>,
    ) -> Collector {
        Collector {
            histograms,
            lost,
            stragglers,
            straggler_names: NameSlots::default(),
            targets: HashMap::new(),
            causes: CauseResolver::default(),
            heap: None,
            admitted: None,
            read: Reads::default(),
            last: Snapshot::default(),
        }
    }

    /// Keeps, unexported, the rows of processes in `admitted` that are
    /// not targets yet, and deletes those of other non-targets; without
    /// it, non-targets' rows are only left out.
    pub fn with_admitted(mut self, admitted: BpfHashMap<MapData, u32, u8>) -> Collector {
        self.admitted = Some(admitted);
        self
    }

    /// Whether `pid` is a reported target.
    pub fn is_target(&self, pid: u32) -> bool {
        self.targets.contains_key(&pid)
    }

    /// Also reads HotSpot's memory pools from `maps`.
    pub fn with_heap(mut self, maps: HeapMaps) -> Collector {
        self.heap = Some(maps);
        self
    }

    /// Starts reporting a target, whose names, once it is gone, are read
    /// from `backing` (the files of its runtime).
    pub fn add_target(&mut self, info: TargetInfo, backing: FileBacking) {
        self.causes.set_backing(info.pid, backing);
        self.targets.insert(info.pid, info);
    }

    /// Notes that the target `pid` exited: its memory is gone, and its pid
    /// may soon name another process, so its names come from its files.
    pub fn target_exited(&mut self, pid: u32) {
        self.causes.exited(pid);
    }

    /// Records the name `pid` calls itself now (`/proc/PID/comm`), shown
    /// beside its exec-time name when the two differ.
    pub fn set_current_comm(&mut self, pid: u32, current: &str) {
        if let Some(info) = self.targets.get_mut(&pid) {
            let shown = if current == info.comm { "" } else { current };
            if info.current_comm != shown {
                info.current_comm = shown.to_string();
            }
        }
    }

    /// Stops reporting `pid`: deletes its histograms from the BPF map (so a
    /// later process with the same pid starts from zero), its target info
    /// and its cached cause names. Returns how many series were deleted.
    pub fn forget(&mut self, pid: u32) -> usize {
        self.targets.remove(&pid);
        self.causes.forget(pid);
        // Keys are collected first: deleting while walking restarts the walk.
        let keys: Vec<HistKey> = self
            .histograms
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.pid == pid)
            .collect();
        for k in &keys {
            let _ = self.histograms.remove(k);
        }
        let stragglers: Vec<StragglerKey> = self
            .stragglers
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.pid == pid)
            .collect();
        for k in &stragglers {
            let _ = self.stragglers.remove(k);
        }
        self.straggler_names.forget(pid);
        if let Some(heap) = &mut self.heap {
            let pools: Vec<PoolKey> = heap
                .stats
                .keys()
                .filter_map(Result::ok)
                .filter(|k| k.pid == pid)
                .collect();
            for k in &pools {
                let _ = heap.stats.remove(k);
            }
            let last: Vec<PoolLastKey> = heap
                .last
                .keys()
                .filter_map(Result::ok)
                .filter(|k| k.pid == pid)
                .collect();
            for k in &last {
                let _ = heap.last.remove(k);
            }
        }
        keys.len() + stragglers.len()
    }

    /// The memory pools of every target, names resolved; pools whose names
    /// cannot be read (the process is gone) are left out until they can.
    fn collect_heap(&mut self) -> Vec<PoolSeries> {
        let Some(heap) = &self.heap else {
            return Vec::new();
        };
        let (targets, causes) = (&self.targets, &mut self.causes);
        let mut out: Vec<PoolSeries> = read_or_walk(
            &mut self.read.pools,
            heap.stats.map().fd().as_fd(),
            1,
            || {
                heap.stats
                    .iter()
                    .filter_map(Result::ok)
                    .map(|(k, v)| (k, [v]))
            },
            |out: &mut Vec<PoolSeries>, key, stats| {
                if !targets.contains_key(&key.pid) {
                    // Strangers' pools go with their histograms (`collect`).
                    return;
                }
                let (Some(manager), Some(pool)) = (
                    causes.c_string(key.pid, key.manager),
                    causes.c_string(key.pid, key.pool),
                ) else {
                    return;
                };
                out.push(PoolSeries {
                    pid: key.pid,
                    manager,
                    pool,
                    stats: stats[0],
                });
            },
        );
        out.sort_by(PoolSeries::order);
        out
    }

    /// A memory pool's or manager's name from its address in `pid`, as the
    /// heap series name it (for pool events); the address in hex while the
    /// name cannot be read (the process is gone).
    pub fn heap_name(&mut self, pid: u32, addr: u64) -> String {
        self.causes
            .c_string(pid, addr)
            .unwrap_or_else(|| format!("{addr:#x}"))
    }

    /// Resolves a cause id as the exporter would name it (for events).
    pub fn cause_name(&mut self, pid: u32, kind: Kind, cause: u64) -> String {
        let runtime = self.targets.get(&pid).map(|t| t.runtime);
        self.causes.resolve(pid, runtime, kind, cause)
    }

    /// The runtime label of a target.
    pub fn runtime_label(&self, pid: u32) -> &'static str {
        self.targets
            .get(&pid)
            .map(|t| t.runtime.label())
            .unwrap_or("unknown")
    }

    /// Reads every map once. Per-CPU values are folded; series whose causes
    /// resolve to the same text are merged.
    pub fn collect(&mut self) -> Snapshot {
        /// What the histogram map folds into.
        #[derive(Default)]
        struct Tally {
            merged: HashMap<(u32, Kind, String), Hist>,
            strangers: std::collections::BTreeSet<u32>,
        }
        let (targets, causes) = (&self.targets, &mut self.causes);
        let admitted = self.admitted.as_ref();
        let Tally { merged, strangers } = read_per_cpu(
            &self.histograms,
            &mut self.read.histograms,
            |t: &mut Tally, key, per_cpu| {
                match standing(targets, admitted, key.pid) {
                    Standing::Target => {}
                    Standing::Undecided => return,
                    Standing::Stranger => {
                        t.strangers.insert(key.pid);
                        return;
                    }
                }
                let Some(kind) = Kind::from_u32(key.kind) else {
                    return;
                };
                let runtime = targets.get(&key.pid).map(|t| t.runtime);
                let cause = causes.resolve(key.pid, runtime, kind, key.cause);
                let hist = t.merged.entry((key.pid, kind, cause)).or_default();
                for cpu in per_cpu {
                    hist.add(cpu);
                }
            },
        );
        let mut series: Vec<Series> = merged
            .into_iter()
            .map(|((pid, kind, cause), hist)| Series {
                pid,
                kind,
                cause,
                hist: hist.compact(),
            })
            .collect();
        series.sort_by(Series::order);

        let lost = LostReason::ALL
            .iter()
            .map(|r| {
                let n = self
                    .lost
                    .get(&(*r as u32), 0)
                    .map(|v| v.iter().sum())
                    .unwrap_or(0);
                (r.label(), n)
            })
            .collect();
        for pid in strangers {
            log::debug!("pid {pid}: recorded while undecided, then rejected or gone: dropped");
            self.forget(pid);
        }
        let targets = &self.targets;
        let raw: Vec<(StragglerKey, StragglerStats)> = read_per_cpu(
            &self.stragglers,
            &mut self.read.stragglers,
            |raw: &mut Vec<_>, key, per_cpu| {
                if targets.contains_key(&key.pid) {
                    raw.push((*key, sum_per_cpu(per_cpu.iter())));
                }
            },
        );
        let stragglers = self.straggler_names.fold(raw);
        let mut targets: Vec<TargetInfo> = self.targets.values().cloned().collect();
        targets.sort_by_key(|t| t.pid);
        let heap = self.collect_heap();
        let last = &self.last;
        let snapshot = Snapshot {
            taken_at: Some(SystemTime::now()),
            targets: share_unchanged(&last.targets, targets, |a, b| a.pid.cmp(&b.pid)),
            series: share_unchanged(&last.series, series, Series::order),
            lost,
            stragglers: share_unchanged(&last.stragglers, stragglers, StragglerSeries::order),
            heap: share_unchanged(&last.heap, heap, PoolSeries::order),
        };
        // A copy of pointers, not of items.
        self.last = snapshot.clone();
        snapshot
    }
}
