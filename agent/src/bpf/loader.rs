//! Loads the BPF object once and attaches each target's probes to it.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::{
        Program, ProgramError, RawTracePoint, TracePoint,
        uprobe::{
            UProbe, UProbeAttachLocation, UProbeAttachPoint, UProbeLink, UProbeLinkId, UProbeScope,
        },
    },
};
use pausewatch_common::{
    ADMIT_TARGET, ArgSpec, HistKey, Histogram, MAX_ARG_SPECS, StragglerKey, StragglerStats,
    heap::{ArgSet, MAX_ARG_SETS, POOL_RINGBUF_IDLE_BYTES},
};
use thiserror::Error;

use super::{
    EBPF_OBJECT,
    refctr::{self, RefCtrError, RefCtrLink},
    shared::{LINGER, PointArg, PointKey, SharedLinks},
};
use crate::discovery::{Discovered, ProbeAttach, ProgramArg};

/// Why loading or attaching failed.
#[derive(Debug, Error)]
pub enum BpfError {
    /// The kernel refused to load the object or a program.
    #[error("the kernel refused to load the BPF programs: {0}")]
    Load(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Loading needs privileges the agent lacks.
    #[error(
        "the kernel refused to load BPF programs: permission denied; {hint}",
        hint = crate::preflight::PRIVILEGES_HINT
    )]
    Permission,
    /// The embedded object lacks something the agent expects (a build mismatch).
    #[error("the embedded BPF object has no {0}; rebuild with `cargo xtask build`")]
    Missing(String),
    /// The kernel refused a uprobe for lack of privileges.
    #[error(
        "cannot attach {probe} at {binary}+{offset:#x} in pid {pid}: permission denied \
         ({source}); {hint}",
        hint = crate::preflight::PRIVILEGES_HINT
    )]
    AttachDenied {
        /// The probe, `provider:name`.
        probe: String,
        /// Host path of the binary.
        binary: PathBuf,
        /// File offset.
        offset: u64,
        /// Target pid.
        pid: u32,
        /// The kernel's answer (boxed: it is large and rare).
        #[source]
        source: Box<ProgramError>,
    },
    /// Attaching one uprobe failed.
    #[error("cannot attach {probe} at {binary}+{offset:#x} in pid {pid}: {source}")]
    Attach {
        /// The probe, `provider:name`.
        probe: String,
        /// Host path of the binary.
        binary: PathBuf,
        /// File offset.
        offset: u64,
        /// Target pid.
        pid: u32,
        /// The kernel's answer (boxed: it is large and rare).
        #[source]
        source: Box<ProgramError>,
    },
    /// Attaching a uprobe whose USDT note has a semaphore failed.
    #[error(
        "cannot attach {probe} at {binary}+{offset:#x} (semaphore at {ref_ctr_offset:#x}) \
         in pid {pid}: {source}"
    )]
    AttachRefCtr {
        /// The probe, `provider:name`.
        probe: String,
        /// Host path of the binary.
        binary: PathBuf,
        /// File offset.
        offset: u64,
        /// File offset of the semaphore.
        ref_ctr_offset: u64,
        /// Target pid.
        pid: u32,
        /// What the kernel answered.
        #[source]
        source: RefCtrError,
    },
    /// More attach points with arguments than the spec map holds.
    #[error("too many probe arguments to track (limit {MAX_ARG_SPECS})")]
    TooManyArgs,
    /// Attaching a tracepoint failed.
    #[error(
        "cannot attach the tracepoint {name}: {source}; is tracefs mounted at \
         /sys/kernel/tracing? (`agent check` tells)"
    )]
    TracePoint {
        /// `category:name`.
        name: &'static str,
        /// The kernel's answer (boxed: it is large and rare).
        #[source]
        source: Box<ProgramError>,
    },
    /// Attaching a raw tracepoint failed.
    #[error(
        "cannot attach the raw tracepoint {name}: {source}; the kernel needs \
         BPF_PROG_TYPE_RAW_TRACEPOINT (4.17+), or run with --no-anatomy"
    )]
    RawTracePoint {
        /// The tracepoint.
        name: &'static str,
        /// The kernel's answer (boxed: it is large and rare).
        #[source]
        source: Box<ProgramError>,
    },
    /// The probed file of a target could not be identified (stat failed).
    #[error("cannot stat {binary}, mapped by pid {pid}: {source}")]
    Stat {
        /// Host path of the binary.
        binary: PathBuf,
        /// Target pid.
        pid: u32,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A second descriptor of a map could not be made (out of file
    /// descriptors).
    #[error("cannot duplicate the descriptor of BPF map {map}: {source}")]
    Duplicate {
        /// Map name.
        map: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A map operation failed.
    #[error("BPF map {map}: {source}")]
    Map {
        /// Map name.
        map: &'static str,
        /// Underlying error.
        #[source]
        source: aya::maps::MapError,
    },
}

impl BpfError {
    /// Whether the kernel refused a uprobe because its process is gone
    /// (`ESRCH`: it exited during the attach). Such a process is an
    /// expected race, `node --version` under `--comm node` being typical,
    /// not a fault of the agent or the host.
    pub fn process_gone(&self) -> bool {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<std::io::Error>()
                && io.raw_os_error() == Some(libc::ESRCH)
            {
                return true;
            }
            source = s.source();
        }
        false
    }
}

/// The classic `sched` tracepoints any program of the object attaches to,
/// for `agent check`.
pub const TRACEPOINTS: [&str; 2] = ["sched_process_exec", "sched_process_exit"];

/// Options fixed at load time.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadOptions {
    /// Emit one ring buffer event per pause (`--events`).
    pub events: bool,
    /// Track each pause's thread for the pause anatomy (unless
    /// `--no-anatomy`); [`Tracer::attach_anatomy`] then attaches the
    /// scheduler tracepoints that do the accounting.
    pub anatomy: bool,
    /// Attach HotSpot's memory-pool probes (unless `--no-heap`; off in
    /// `LoadOptions::default()`, which the attach benchmark uses).
    pub heap: bool,
    /// Share each probe point's uprobe between the targets that map its
    /// file (the follow modes; see `bpf::shared`): the BPF side then records
    /// only admitted processes (`ebpf/src/admission.rs`).
    pub shared: bool,
}

/// One attached uprobe, for reporting.
#[derive(Clone, Debug)]
pub struct AttachedProbe {
    /// `provider:name` or symbol.
    pub probe: String,
    /// File offset.
    pub offset: u64,
}

/// The loaded programs and the targets they are attached to.
pub struct Tracer {
    ebpf: Ebpf,
    arg_specs: Array<MapData, ArgSpec>,
    /// The `ARG_SPECS` slot (cookie) of each argument spec in use.
    cookies: ArgSlots,
    arg_sets: Array<MapData, ArgSet>,
    /// The `ARG_SETS` slot (cookie) of each argument set in use.
    set_cookies: ArgSlots<ArgSet>,
    /// Whether the memory-pool probes are attached ([`LoadOptions::heap`]).
    heap: bool,
    /// Which links belong to which pid, to detach a target on its own.
    links: HashMap<u32, Vec<Link>>,
    /// Links shared by the targets that map one file ([`LoadOptions::shared`]).
    shared: Option<SharedLinks<SharedLink>>,
    /// The argument-slot owner id of the next shared link.
    next_owner: u32,
    /// The processes shared probes record (`ADMITTED`); targets are
    /// admitted in every mode, so that the collector keeps what they
    /// recorded before they were reported.
    admitted: BpfHashMap<MapData, u32, u8>,
    /// The start-up self-test probe, kept (see [`Tracer::attach_self_test`]).
    self_test: Option<(String, UProbeLinkId)>,
    /// Detaches links of targets that went away, off the caller's thread
    /// (see [`Reaper`]); started at the first such detach.
    reaper: Option<Reaper>,
}

/// A shared link, and the owner id under which it holds its argument's
/// slot: the slot must outlive every target that used the link, and stay
/// as long as the link lingers, so it is the link's, not a pid's.
struct SharedLink {
    link: Link,
    owner: u32,
}

/// Owner ids of shared links' argument slots start above every pid (the
/// kernel's `pid_max` is at most 2^22).
const FIRST_LINK_OWNER: u32 = 1 << 31;

/// One attached uprobe, owned by the tracer.
enum Link {
    /// Attached by aya (no semaphore).
    Aya(&'static str, UProbeLinkId),
    /// Attached with a kernel-managed semaphore; dropping it detaches.
    RefCtr(RefCtrLink),
}

/// The maps the collector and event reader own once loading is done.
pub struct TracerMaps {
    /// Aggregated histograms.
    pub histograms: PerCpuHashMap<MapData, HistKey, Histogram>,
    /// Lost-event counters by reason.
    pub lost: PerCpuArray<MapData, u64>,
    /// Pause events (only filled with `--events`).
    pub events: RingBuf<MapData>,
    /// Memory-pool collection ends (only filled with `--events`).
    pub pool_events: RingBuf<MapData>,
    /// HotSpot safepoint stragglers by process and thread name.
    pub stragglers: PerCpuHashMap<MapData, StragglerKey, StragglerStats>,
    /// HotSpot memory pools around collections.
    pub heap: crate::collect::collector::HeapMaps,
    /// The processes that may have recorded numbers without being targets
    /// yet (`ADMITTED`, read-only here), whose rows the collector keeps.
    pub admitted: BpfHashMap<MapData, u32, u8>,
}

impl Tracer {
    /// Loads (verifies) every program; attaches nothing yet.
    pub fn load(options: LoadOptions) -> Result<(Tracer, TracerMaps), BpfError> {
        let emit: u8 = options.events.into();
        let anatomy: u8 = options.anatomy.into();
        let shared: u8 = options.shared.into();
        let has_state: u8 =
            super::anatomy::switch_passes_prev_state(&super::anatomy::kernel_release()).into();
        let mut loader = EbpfLoader::new();
        if !options.events {
            // Nothing writes the pool event ring without `--events`: it
            // need not hold its 256 KiB of locked memory.
            loader.map_max_entries("POOL_EVENTS", POOL_RINGBUF_IDLE_BYTES);
        }
        let mut ebpf = loader
            .override_global("EMIT_EVENTS", &emit, true)
            .override_global("EMIT_POOL_EVENTS", &emit, true)
            .override_global("ANATOMY", &anatomy, true)
            .override_global("SHARED", &shared, true)
            .override_global("SWITCH_HAS_STATE", &has_state, true)
            .load(EBPF_OBJECT)
            .map_err(|e| load_error(Box::new(e)))?;
        // Every program of the object is verified up front, whatever runtime
        // it serves: a verifier rejection shows at start, not at the first
        // process of that runtime. Each runtime module of `ebpf/` only adds
        // programs; nothing here lists them.
        for (name, program) in ebpf.programs_mut() {
            let loaded = match program {
                Program::UProbe(p) => p.load(),
                Program::TracePoint(p) => p.load(),
                Program::RawTracePoint(p) => p.load(),
                other => {
                    return Err(BpfError::Missing(format!(
                        "support for program {name} of type {:?}",
                        other.prog_type()
                    )));
                }
            };
            loaded.map_err(|e| load_error(Box::new(e)))?;
        }
        let arg_specs =
            Array::try_from(take(&mut ebpf, "ARG_SPECS")?).map_err(map_err("ARG_SPECS"))?;
        let arg_sets =
            Array::try_from(take(&mut ebpf, "ARG_SETS")?).map_err(map_err("ARG_SETS"))?;
        let (admitted, admitted_view) = admitted_maps(take(&mut ebpf, "ADMITTED")?)?;
        let maps = TracerMaps {
            histograms: PerCpuHashMap::try_from(take(&mut ebpf, "HISTOGRAMS")?)
                .map_err(map_err("HISTOGRAMS"))?,
            lost: PerCpuArray::try_from(take(&mut ebpf, "LOST")?).map_err(map_err("LOST"))?,
            events: RingBuf::try_from(take(&mut ebpf, "EVENTS")?).map_err(map_err("EVENTS"))?,
            pool_events: RingBuf::try_from(take(&mut ebpf, "POOL_EVENTS")?)
                .map_err(map_err("POOL_EVENTS"))?,
            stragglers: PerCpuHashMap::try_from(take(&mut ebpf, "STRAGGLERS")?)
                .map_err(map_err("STRAGGLERS"))?,
            heap: crate::collect::collector::HeapMaps {
                stats: BpfHashMap::try_from(take(&mut ebpf, "POOL_STATS")?)
                    .map_err(map_err("POOL_STATS"))?,
                last: BpfHashMap::try_from(take(&mut ebpf, "POOL_LAST")?)
                    .map_err(map_err("POOL_LAST"))?,
            },
            admitted: admitted_view,
        };
        Ok((
            Tracer {
                ebpf,
                arg_specs,
                cookies: ArgSlots::default(),
                arg_sets,
                set_cookies: ArgSlots::new(MAX_ARG_SETS),
                heap: options.heap,
                links: HashMap::new(),
                shared: options.shared.then(SharedLinks::default),
                next_owner: FIRST_LINK_OWNER,
                admitted,
                self_test: None,
                reaper: None,
            },
            maps,
        ))
    }

    /// Attaches every probe of `target`: scoped to its pid, or, with
    /// [`LoadOptions::shared`], as a user of the file's shared links (made
    /// by the first target that maps it), and admits it (`ADMITTED`) so
    /// its probes record. On failure none of its probes stays attached.
    ///
    /// A target with a probe whose argument is an address of its own
    /// ([`ProgramArg::Address`]) gets links of its own in every mode: a
    /// shared link would hand that address to every process.
    pub fn attach(&mut self, target: &Discovered) -> Result<Vec<AttachedProbe>, BpfError> {
        let pid = target.process.pid;
        let share = self.shared.is_some()
            && !target
                .probes
                .iter()
                .any(|p| matches!(p.arg, ProgramArg::Address(_)));
        let mut attached = Vec::with_capacity(target.probes.len());
        for probe in &target.probes {
            if !self.heap && crate::runtimes::hotspot::HEAP_PROGRAMS.contains(&probe.program) {
                continue;
            }
            let result = if share {
                self.use_shared(probe, pid)
            } else {
                self.cookie(pid, probe).and_then(|cookie| {
                    let link = self.attach_link(probe, cookie, pid, pid)?;
                    self.links.entry(pid).or_default().push(link);
                    Ok(())
                })
            };
            if let Err(e) = result {
                self.detach(pid);
                return Err(e);
            }
            attached.push(AttachedProbe {
                probe: probe.probe.clone(),
                offset: probe.file_offset,
            });
        }
        if let Err(e) = self.admitted.insert(pid, ADMIT_TARGET, 0) {
            self.detach(pid);
            return Err(map_err("ADMITTED")(e));
        }
        Ok(attached)
    }

    /// The `ARG_SPECS` or `ARG_SETS` slot of `probe`'s argument, held for
    /// `pid` until its detach (0: no argument).
    fn cookie(&mut self, pid: u32, probe: &ProbeAttach) -> Result<u32, BpfError> {
        match &probe.arg {
            ProgramArg::None => Ok(0),
            ProgramArg::Usdt(spec) | ProgramArg::Address(spec) => self.store_arg_spec(pid, spec),
            ProgramArg::UsdtAll(set) => self.store_arg_set(pid, set),
        }
    }

    /// Makes `pid` a user of `probe`'s shared link, attaching it for every
    /// process if there is none (no target of this file in the last
    /// [`LINGER`]).
    fn use_shared(&mut self, probe: &ProbeAttach, pid: u32) -> Result<(), BpfError> {
        let meta = std::fs::metadata(probe.binary.path()).map_err(|source| BpfError::Stat {
            binary: PathBuf::from(probe.binary.to_string()),
            pid,
            source,
        })?;
        let key = PointKey {
            dev: std::os::unix::fs::MetadataExt::dev(&meta),
            ino: std::os::unix::fs::MetadataExt::ino(&meta),
            program: probe.program,
            offset: probe.file_offset,
            ref_ctr_offset: probe.ref_ctr_offset,
            arg: match probe.arg {
                ProgramArg::None => PointArg::None,
                ProgramArg::Usdt(spec) | ProgramArg::Address(spec) => PointArg::Spec(spec),
                ProgramArg::UsdtAll(set) => PointArg::Set(set),
            },
        };
        // Out of `self` while the closure attaches through `self`.
        let mut shared = self.shared.take().unwrap_or_default();
        let result = shared.use_point(pid, key, || {
            let owner = self.next_owner;
            self.next_owner = self.next_owner.wrapping_add(1).max(FIRST_LINK_OWNER);
            let attached = self
                .cookie(owner, probe)
                .and_then(|cookie| self.attach_link(probe, cookie, 0, pid));
            match attached {
                Ok(link) => Ok(SharedLink { link, owner }),
                Err(e) => {
                    self.release_slots(owner);
                    Err(e)
                }
            }
        });
        self.shared = Some(shared);
        if let Ok(true) = result {
            log::debug!(
                "pid {pid}: {} at {}+{:#x} attached for every process that maps the file",
                probe.probe,
                probe.binary,
                probe.file_offset
            );
        }
        result.map(drop)
    }

    /// Attaches one uprobe of `probe` in process `scope` (0: every
    /// process); `pid` is the target it is for, for messages.
    fn attach_link(
        &mut self,
        probe: &ProbeAttach,
        cookie: u32,
        scope: u32,
        pid: u32,
    ) -> Result<Link, BpfError> {
        match probe.ref_ctr_offset {
            None => self
                .attach_one(
                    probe.program,
                    probe.file_offset,
                    cookie,
                    probe.binary.path(),
                    scope,
                )
                .map(|link| Link::Aya(probe.program, link))
                .map_err(|source| {
                    attach_error(
                        probe.probe.clone(),
                        PathBuf::from(probe.binary.to_string()),
                        probe.file_offset,
                        pid,
                        source,
                    )
                }),
            Some(ref_ctr_offset) => self
                .attach_ref_ctr(probe, ref_ctr_offset, cookie, scope, pid)
                .map(Link::RefCtr),
        }
    }

    /// Stops recording `pid`, a process that exec'd and is not to be
    /// traced (`ADMITTED` loses it; what it recorded meanwhile is dropped
    /// by the collector). A no-op for a process that was never admitted.
    pub fn reject(&mut self, pid: u32) {
        let _ = self.admitted.remove(&pid);
    }

    /// Detaches every probe of `pid` (a no-op for unknown pids): its own
    /// links now; it stops using its shared links, and those that have had
    /// no user for `shared::LINGER` go. It is no longer admitted. Its open intervals need no cleanup here: they are
    /// slots of its threads' entries, which go at each thread's exit
    /// (`anatomy_exit`), so a target killed in the middle of a pause leaves
    /// nothing behind.
    ///
    /// The probes are detached on a background thread: the kernel takes
    /// ~0.1 s per uprobe (see `Reaper`), and the caller, the thread that
    /// attaches new processes, must not wait for that. The target's
    /// process is gone or runs another program, so its old probes can no
    /// longer fire meanwhile.
    pub fn detach(&mut self, pid: u32) {
        let _ = self.admitted.remove(&pid);
        let mut links = self.links.remove(&pid).unwrap_or_default();
        if let Some(shared) = &mut self.shared {
            let now = std::time::Instant::now();
            shared.release(pid, now);
            let expired = shared.expire(now, LINGER);
            links.extend(self.unshare(expired));
        }
        let links = self.own(links);
        if !links.is_empty() {
            match &self.reaper {
                Some(r) => r.release(links),
                None => {
                    let r = Reaper::start();
                    r.release(links);
                    self.reaper = Some(r);
                }
            }
        }
        // Open intervals live in their threads' entries (`THREAD_ENTRIES`,
        // by task address): a thread that exited freed its entry
        // (`anatomy_exit`), and a live process keeps its threads' entries
        // until they exit or a newcomer takes an idle one's place, which
        // costs lookups, never numbers (a later begin restarts a stale slot).
        self.release_slots(pid);
    }

    /// Frees the argument slots `owner` (a pid or a shared link) holds.
    fn release_slots(&mut self, owner: u32) {
        self.cookies.release(owner);
        self.set_cookies.release(owner);
    }

    /// The links of shared links that go, their slots freed. Until the
    /// detach thread gets to them, a process that maps their file (and had
    /// none of its kind traced for `LINGER`) may still hit them and read a
    /// slot reused meanwhile: one argument of one pause, never a count.
    fn unshare(&mut self, gone: Vec<SharedLink>) -> Vec<Link> {
        gone.into_iter()
            .map(|s| {
                self.release_slots(s.owner);
                s.link
            })
            .collect()
    }

    /// Detaches every probe of every target and the self-test probe, for
    /// shutdown (see `release` for what that costs).
    pub fn detach_all(&mut self) {
        let mut links: Vec<Link> = self.links.drain().flat_map(|(_, l)| l).collect();
        if let Some(shared) = &mut self.shared {
            let all = shared.drain();
            links.extend(self.unshare(all));
        }
        let mut links = self.own(links);
        if let Some((name, id)) = self.self_test.take()
            && let Some(p) = self.ebpf.program_mut(&name)
            && let Ok(p) = <&mut UProbe>::try_from(p)
            && let Ok(link) = p.take_link(id)
        {
            links.push(OwnedLink::Aya { _link: link });
        }
        release(links);
        // Whatever targets that went away left to the reaper is detached
        // before the agent reports that it has stopped.
        if let Some(r) = self.reaper.take() {
            r.finish();
        }
    }

    /// Takes `links` out of their programs, still attached, so that they
    /// can be dropped (detached) elsewhere.
    fn own(&mut self, links: Vec<Link>) -> Vec<OwnedLink> {
        let mut owned = Vec::with_capacity(links.len());
        for link in links {
            match link {
                Link::Aya(program, id) => {
                    if let Some(p) = self.ebpf.program_mut(program)
                        && let Ok(p) = <&mut UProbe>::try_from(p)
                        && let Ok(link) = p.take_link(id)
                    {
                        owned.push(OwnedLink::Aya { _link: link });
                    }
                }
                Link::RefCtr(link) => owned.push(OwnedLink::RefCtr { _link: link }),
            }
        }
        owned
    }

    /// Attaches one uprobe program to `binary`+`offset` in this process and
    /// detaches it again (see `keep`): proves that this kernel lets the agent attach
    /// uprobes (perf_event_open of the uprobe PMU plus the BPF link) with
    /// its privileges. The probed instruction must not run meanwhile; the
    /// program is never triggered.
    /// With `keep`, the probe stays attached (never hit) as long as the
    /// tracer lives.
    pub fn attach_self_test(
        &mut self,
        binary: &Path,
        offset: u64,
        keep: bool,
    ) -> Result<(), BpfError> {
        let mut names: Vec<&str> = self
            .ebpf
            .programs()
            .filter(|(_, p)| matches!(p, Program::UProbe(_)))
            .map(|(n, _)| n)
            .collect();
        names.sort_unstable();
        let name = names
            .first()
            .map(|n| n.to_string())
            .ok_or_else(|| BpfError::Missing("uprobe program".to_string()))?;
        let pid = std::process::id();
        let p: &mut UProbe = self
            .ebpf
            .program_mut(&name)
            .ok_or_else(|| BpfError::Missing(format!("program {name}")))?
            .try_into()
            .map_err(|e| BpfError::Load(Box::new(e)))?;
        let point = UProbeAttachPoint {
            location: UProbeAttachLocation::AbsoluteOffset(offset),
            cookie: Some(0),
        };
        let scope = match NonZeroU32::new(pid) {
            Some(pid) => UProbeScope::OneProcess(pid),
            None => UProbeScope::AllProcesses,
        };
        match p.attach(point, binary, scope) {
            Ok(link) => {
                // Unregistering a uprobe waits for an RCU grace period
                // (~0.1 s here), so `agent run` keeps this one, unused,
                // until it exits rather than add that to its start-up.
                if keep {
                    self.self_test = Some((name, link));
                } else {
                    let _ = p.detach(link);
                }
                Ok(())
            }
            Err(source) => Err(attach_error(
                format!("self-test uprobe ({name})"),
                binary.to_path_buf(),
                offset,
                pid,
                source,
            )),
        }
    }

    /// Attaches the pause anatomy programs (`ebpf/src/anatomy.rs`) to the
    /// scheduler's raw tracepoints, and the exit hook
    /// ([`Tracer::attach_thread_exit`]). Must come before
    /// the first uprobe, so that no pause begins unaccounted. The safepoint
    /// straggler rule (`ebpf/src/straggler.rs`) runs inside `anatomy_switch`
    /// and `anatomy_waking`, so it comes with them. Needs tracefs mounted
    /// for the exit hook (see `targets::follow::ensure_tracefs`).
    pub fn attach_anatomy(&mut self) -> Result<(), BpfError> {
        self.attach_raw_tracepoints(&[
            ("anatomy_switch", "sched_switch"),
            ("anatomy_waking", "sched_waking"),
        ])?;
        self.attach_thread_exit()
    }

    /// Attaches the empty programs of `ebpf/src/bench.rs` to the raw
    /// tracepoints the anatomy uses (`agent bench-attach --sched`): the
    /// floor the context-switch benchmark compares the anatomy with.
    pub fn attach_sched_floor(&mut self) -> Result<(), BpfError> {
        self.attach_raw_tracepoints(&[
            ("bench_switch", "sched_switch"),
            ("bench_waking", "sched_waking"),
        ])
    }

    fn attach_raw_tracepoints(
        &mut self,
        programs: &[(&'static str, &'static str)],
    ) -> Result<(), BpfError> {
        for &(program, name) in programs {
            let raw_error = |e: ProgramError| BpfError::RawTracePoint {
                name,
                source: Box::new(e),
            };
            let p: &mut RawTracePoint = self
                .ebpf
                .program_mut(program)
                .ok_or_else(|| BpfError::Missing(format!("program {program}")))?
                .try_into()
                .map_err(raw_error)?;
            p.attach(name).map_err(raw_error)?;
        }
        Ok(())
    }

    /// Attaches `anatomy_exit` to `sched_process_exit`: an exiting thread's
    /// per-thread entry (its open intervals and anatomy state) goes with
    /// it. [`Tracer::attach_anatomy`] includes it; with `--no-anatomy` it
    /// is attached alone. Without it, an exited thread's entry stays until
    /// a newcomer hashed to the same place takes it. Needs tracefs mounted.
    pub fn attach_thread_exit(&mut self) -> Result<(), BpfError> {
        self.attach_tracepoints(&[("anatomy_exit", "sched_process_exit")])
    }

    /// Attaches the process exec/exit tracepoints (`ebpf/src/process.rs`)
    /// and hands over their ring buffer. Needs tracefs mounted (see
    /// `targets::follow::ensure_tracefs`).
    pub fn follow_processes(&mut self) -> Result<RingBuf<MapData>, BpfError> {
        self.attach_tracepoints(&[
            ("process_exec", "sched_process_exec"),
            ("process_exit", "sched_process_exit"),
        ])?;
        RingBuf::try_from(take(&mut self.ebpf, "PROCESS_EVENTS")?)
            .map_err(map_err("PROCESS_EVENTS"))
    }

    /// Attaches each (program, `sched` tracepoint) pair.
    fn attach_tracepoints(&mut self, pairs: &[(&str, &'static str)]) -> Result<(), BpfError> {
        for &(program, name) in pairs {
            let p: &mut TracePoint = self
                .ebpf
                .program_mut(program)
                .ok_or_else(|| BpfError::Missing(format!("program {program}")))?
                .try_into()
                .map_err(|e| BpfError::TracePoint {
                    name,
                    source: Box::new(e),
                })?;
            p.attach("sched", name).map_err(|e| BpfError::TracePoint {
                name,
                source: Box::new(e),
            })?;
        }
        Ok(())
    }

    /// Number of attached uprobes across all targets.
    pub fn attached_count(&self) -> usize {
        self.links.values().map(Vec::len).sum::<usize>()
            + self.shared.as_ref().map_or(0, SharedLinks::len)
    }

    fn attach_one(
        &mut self,
        program: &'static str,
        offset: u64,
        cookie: u32,
        binary: &Path,
        pid: u32,
    ) -> Result<UProbeLinkId, ProgramError> {
        let p: &mut UProbe = self
            .ebpf
            .program_mut(program)
            .ok_or(ProgramError::NotLoaded)?
            .try_into()?;
        let point = UProbeAttachPoint {
            location: UProbeAttachLocation::AbsoluteOffset(offset),
            cookie: Some(u64::from(cookie)),
        };
        let scope = match NonZeroU32::new(pid) {
            Some(pid) => UProbeScope::OneProcess(pid),
            None => UProbeScope::AllProcesses,
        };
        p.attach(point, binary, scope)
    }

    /// Attaches a probe guarded by a USDT semaphore (see [`refctr`]) in
    /// process `scope` (0: every process), for target `pid`.
    fn attach_ref_ctr(
        &mut self,
        probe: &ProbeAttach,
        ref_ctr_offset: u64,
        cookie: u32,
        scope: u32,
        pid: u32,
    ) -> Result<RefCtrLink, BpfError> {
        let program = probe.program;
        let p: &mut UProbe = self
            .ebpf
            .program_mut(program)
            .ok_or_else(|| BpfError::Missing(format!("program {program}")))?
            .try_into()
            .map_err(|_| BpfError::Missing(format!("uprobe program {program}")))?;
        let fd = p
            .fd()
            .map_err(|_| BpfError::Missing(format!("loaded program {program}")))?;
        refctr::attach(
            fd,
            probe.binary.path(),
            probe.file_offset,
            ref_ctr_offset,
            scope,
            u64::from(cookie),
        )
        .map_err(|source| BpfError::AttachRefCtr {
            probe: probe.probe.clone(),
            binary: PathBuf::from(probe.binary.to_string()),
            offset: probe.file_offset,
            ref_ctr_offset,
            pid,
            source,
        })
    }

    fn store_arg_spec(&mut self, pid: u32, spec: &ArgSpec) -> Result<u32, BpfError> {
        let (cookie, new) = self.cookies.take(pid, spec)?;
        if new && let Err(e) = self.arg_specs.set(cookie, spec, 0) {
            self.cookies.release(pid);
            return Err(map_err("ARG_SPECS")(e));
        }
        Ok(cookie)
    }

    fn store_arg_set(&mut self, pid: u32, set: &ArgSet) -> Result<u32, BpfError> {
        let (cookie, new) = self.set_cookies.take(pid, set)?;
        if new && let Err(e) = self.arg_sets.set(cookie, set, 0) {
            self.set_cookies.release(pid);
            return Err(map_err("ARG_SETS")(e));
        }
        Ok(cookie)
    }
}

/// Which `ARG_SPECS` slot holds which argument spec, shared by the probes
/// that read the same one and freed with the last of them. Cookie 0 means
/// "no argument". Every JVM built from one libjvm shares its specs; a Ruby
/// process's carry its own addresses, so without freeing, a node would run
/// out of slots after [`MAX_ARG_SPECS`] Ruby processes. A slot is freed at
/// detach, when the process is gone or runs another program, so no probe
/// of it reads the slot after it is reused.
/// The same bookkeeping serves the `ARG_SETS` map (`S = ArgSet`), whose
/// slots hold every argument of a probe point.
struct ArgSlots<S = ArgSpec> {
    /// Cookie and number of users of each spec in use.
    by_spec: HashMap<S, (u32, usize)>,
    /// The specs each pid uses, one entry per use.
    by_pid: HashMap<u32, Vec<S>>,
    /// Freed cookies, reused before new ones.
    free: Vec<u32>,
    /// The next never-used cookie.
    next: u32,
    /// Number of slots of the map.
    capacity: u32,
}

impl Default for ArgSlots<ArgSpec> {
    fn default() -> Self {
        ArgSlots::new(MAX_ARG_SPECS)
    }
}

impl<S: Copy + Eq + std::hash::Hash> ArgSlots<S> {
    /// Slots for a map of `capacity` entries (slot 0 is never handed out).
    fn new(capacity: u32) -> Self {
        ArgSlots {
            by_spec: HashMap::new(),
            by_pid: HashMap::new(),
            free: Vec::new(),
            next: 0,
            capacity,
        }
    }

    /// The cookie of `spec` for a probe of `pid`, and whether the slot is
    /// new (its map entry must be written).
    fn take(&mut self, pid: u32, spec: &S) -> Result<(u32, bool), BpfError> {
        let (cookie, new) = match self.by_spec.get_mut(spec) {
            Some((cookie, users)) => {
                *users += 1;
                (*cookie, false)
            }
            None => {
                let cookie = match self.free.pop() {
                    Some(c) => c,
                    None if self.next + 1 < self.capacity => {
                        self.next += 1;
                        self.next
                    }
                    None => return Err(BpfError::TooManyArgs),
                };
                self.by_spec.insert(*spec, (cookie, 1));
                (cookie, true)
            }
        };
        self.by_pid.entry(pid).or_default().push(*spec);
        Ok((cookie, new))
    }

    /// Drops every use of `pid`, freeing the slots nobody uses any more.
    fn release(&mut self, pid: u32) {
        for spec in self.by_pid.remove(&pid).unwrap_or_default() {
            if let Some((cookie, users)) = self.by_spec.get_mut(&spec) {
                *users -= 1;
                if *users == 0 {
                    self.free.push(*cookie);
                    self.by_spec.remove(&spec);
                }
            }
        }
    }
}

/// What the target lifecycle needs of the tracer.
impl crate::targets::seams::Attach for Tracer {
    fn attach(&mut self, discovered: &Discovered) -> Result<usize, BpfError> {
        Tracer::attach(self, discovered).map(|probes| probes.len())
    }

    fn detach(&mut self, pid: u32) {
        Tracer::detach(self, pid);
    }

    fn reject(&mut self, pid: u32) {
        Tracer::reject(self, pid);
    }
}

/// An attached uprobe taken out of the tracer; dropping it detaches it.
/// (The fields are only held for their `Drop`.)
enum OwnedLink {
    /// Attached by aya.
    Aya { _link: UProbeLink },
    /// Attached with a kernel-managed semaphore.
    RefCtr { _link: RefCtrLink },
}

/// Detaches `links`.
///
/// Measured on this 6.18 kernel: each uprobe unregistration waits for a
/// grace period of about 0.1 s under a kernel-wide mutex, so detaching is
/// serial whatever the agent does (closing from 32 threads at once took as
/// long as one by one): 6 probes per JVM cost ~0.6 s per target at
/// shutdown. Fewer attachments (one per probe point shared by every target
/// that maps the same file, filtered by pid in BPF) is the way to make it
/// cheaper; see `docs/design.md` ("Target lifecycle").
fn release(links: Vec<OwnedLink>) {
    drop(links);
}

/// A thread that detaches links handed to it, one batch after another.
///
/// Uprobe unregistration is serial in the kernel (a grace period of ~0.1 s
/// each under a kernel-wide mutex): when the lifecycle thread detached an
/// exited JVM's 6 probes itself, new processes waited behind it, seconds
/// when several targets exited together. An attach still waits for the
/// unregistration in progress (the same mutex), but not for the queue.
struct Reaper {
    queue: std::sync::mpsc::Sender<Vec<OwnedLink>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Reaper {
    fn start() -> Reaper {
        let (queue, batches) = std::sync::mpsc::channel::<Vec<OwnedLink>>();
        let thread = std::thread::Builder::new()
            .name("pausewatch-detach".into())
            .spawn(move || {
                for links in batches {
                    release(links);
                }
            })
            .inspect_err(|e| {
                // The receiver is gone with the closure, so every send
                // fails and the caller detaches inline: slower, correct.
                log::warn!("cannot start the detach thread ({e}); detaching inline");
            })
            .ok();
        Reaper { queue, thread }
    }

    fn release(&self, links: Vec<OwnedLink>) {
        if let Err(std::sync::mpsc::SendError(links)) = self.queue.send(links) {
            release(links);
        }
    }

    /// Waits until every link handed over so far is detached.
    fn finish(self) {
        drop(self.queue);
        if let Some(t) = self.thread {
            let _ = t.join();
        }
    }
}

/// Two handles on the `ADMITTED` map: the tracer's, which writes it, and
/// the collector's, which reads it on another thread (a duplicate of the
/// same descriptor: opening the map by id would need CAP_SYS_ADMIN, which
/// the agent does not require).
type Admitted = BpfHashMap<MapData, u32, u8>;
fn admitted_maps(map: aya::maps::Map) -> Result<(Admitted, Admitted), BpfError> {
    use std::os::fd::AsFd;
    let aya::maps::Map::HashMap(data) = map else {
        return Err(BpfError::Missing("hash map ADMITTED".into()));
    };
    let fd = data
        .fd()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|source| BpfError::Duplicate {
            map: "ADMITTED",
            source,
        })?;
    let view = MapData::from_fd(fd).map_err(map_err("ADMITTED"))?;
    let tracer =
        BpfHashMap::try_from(aya::maps::Map::HashMap(data)).map_err(map_err("ADMITTED"))?;
    let view = BpfHashMap::try_from(aya::maps::Map::HashMap(view)).map_err(map_err("ADMITTED"))?;
    Ok((tracer, view))
}

fn take(ebpf: &mut Ebpf, name: &str) -> Result<aya::maps::Map, BpfError> {
    ebpf.take_map(name)
        .ok_or_else(|| BpfError::Missing(format!("map {name}")))
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> BpfError {
    move |source| BpfError::Map { map, source }
}

/// Classifies a load failure: EPERM/EACCES becomes the privileges hint.
fn load_error(e: Box<dyn std::error::Error + Send + Sync>) -> BpfError {
    if is_permission_error(e.as_ref()) {
        return BpfError::Permission;
    }
    BpfError::Load(e)
}

/// Classifies an attach failure: EPERM/EACCES becomes the privileges hint.
fn attach_error(
    probe: String,
    binary: PathBuf,
    offset: u64,
    pid: u32,
    source: ProgramError,
) -> BpfError {
    let source = Box::new(source);
    if is_permission_error(source.as_ref()) {
        BpfError::AttachDenied {
            probe,
            binary,
            offset,
            pid,
            source,
        }
    } else {
        BpfError::Attach {
            probe,
            binary,
            offset,
            pid,
            source,
        }
    }
}

/// Whether EPERM or EACCES is somewhere in the error chain. aya wraps the
/// kernel's errno in several layers, and some of them only keep its text.
pub(crate) fn is_permission_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && matches!(io.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES))
        {
            return true;
        }
        let text = s.to_string();
        if text.contains("Operation not permitted") || text.contains("Permission denied") {
            return true;
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(val: i64) -> ArgSpec {
        ArgSpec {
            loc: pausewatch_common::ARG_CONST,
            reg_off: 0,
            val,
            size: 8,
            signed: 0,
            _pad: [0; 6],
        }
    }

    #[test]
    fn shared_specs_share_a_slot_until_the_last_user_goes() {
        let mut slots = ArgSlots::default();
        assert_eq!(slots.take(1, &spec(7)).unwrap(), (1, true));
        assert_eq!(slots.take(2, &spec(7)).unwrap(), (1, false));
        assert_eq!(slots.take(2, &spec(8)).unwrap(), (2, true));
        slots.release(1);
        // Still used by pid 2: not freed, not rewritten.
        assert_eq!(slots.take(3, &spec(7)).unwrap(), (1, false));
        slots.release(2);
        slots.release(3);
        assert!(slots.by_spec.is_empty() && slots.by_pid.is_empty());
        // Freed slots come back before new ones.
        let (cookie, new) = slots.take(4, &spec(9)).unwrap();
        assert!(new && cookie <= 2, "{cookie}");
    }

    #[test]
    fn processes_with_their_own_specs_never_run_out_once_they_go() {
        let mut slots = ArgSlots::default();
        for pid in 0..10 * MAX_ARG_SPECS {
            let (cookie, _) = slots.take(pid, &spec(i64::from(pid))).unwrap();
            assert!((1..MAX_ARG_SPECS).contains(&cookie));
            slots.release(pid);
        }
        // Without releases the map's size is the limit.
        let mut slots = ArgSlots::default();
        let taken = (0..MAX_ARG_SPECS)
            .take_while(|&pid| slots.take(pid, &spec(i64::from(pid))).is_ok())
            .count();
        assert_eq!(taken as u32, MAX_ARG_SPECS - 1);
    }
}
