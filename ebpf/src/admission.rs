//! Which processes are recorded when probes are shared (the follow modes,
//! `agent run --all`, `--comm`, `--exe`).
//!
//! There a uprobe is attached once per (file, offset) for every process that
//! maps the file, so its programs also run in processes the agent does not
//! trace. A process is recorded while it is in [`ADMITTED`]: from its exec
//! (pending, [`ADMIT_PENDING`]) until the agent rejects it, and as a target
//! ([`ADMIT_TARGET`]) once the agent adopts it. So a process whose runtime
//! file is already probed is counted from its first pause, before the agent
//! has even read its exec event, and one that is not wanted costs a trap
//! and one lookup per pause. With per-process probes (`--pid`) every hit is
//! a target's and the check is skipped ([`SHARED`] is 0).

use aya_ebpf::{macros::map, maps::HashMap};
use pausewatch_common::{ADMIT_PENDING, LostReason, MAX_ADMITTED};

use crate::maps::count_lost;

/// Processes whose pauses shared probes record, by tgid: pending (exec'd,
/// not decided yet) or targets. Written here at exec and exit, and by the
/// agent when it adopts or rejects a process.
#[map]
pub static ADMITTED: HashMap<u32, u8> = HashMap::with_max_entries(MAX_ADMITTED, 0);

/// Set to 1 by the agent (before load) when probes are shared between
/// processes; read-only after load.
#[unsafe(no_mangle)]
static SHARED: u8 = 0;

/// Whether probes of process `tgid` may record: always with per-process
/// probes, else only while it is admitted.
#[inline(always)]
pub fn admitted(tgid: u32) -> bool {
    // SAFETY: a plain read of a global the loader may have rewritten.
    if unsafe { core::ptr::read_volatile(&SHARED) } == 0 {
        return true;
    }
    // SAFETY: the value is only tested for presence.
    unsafe { ADMITTED.get(&tgid) }.is_some()
}

/// A process replaced its program: it is pending until the agent decides
/// about the new one (a target that exec'd is a target no longer).
#[inline(always)]
pub fn on_exec(tgid: u32) {
    if ADMITTED.insert(&tgid, &ADMIT_PENDING, 0).is_err() {
        count_lost(LostReason::AdmissionFull);
    }
}

/// A process exited: a later process with its pid starts unadmitted.
#[inline(always)]
pub fn on_exit(tgid: u32) {
    let _ = ADMITTED.remove(&tgid);
}
