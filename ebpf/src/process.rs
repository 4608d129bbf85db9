//! Process lifecycle for the host-wide mode (`agent run --all`): every exec
//! and every process exit on the node, sent to the agent through a ring
//! buffer of its own, so that the agent learns of new processes without
//! polling `/proc`, and of exits without waiting for its next tick.
//!
//! Only the pid and, for an exec, the new command name travel: the agent
//! reads everything else from `/proc` (the new program's mappings are what
//! decides whether it is a runtime, and they are not complete at exec time
//! anyway). The name is taken here because this is the one moment it is
//! surely the exec's: a program may rename itself right after (Node 24
//! names its main thread, which is the process's comm, `MainThread`). The ring buffer is separate from
//! the pause events' so that a burst of process churn never displaces pause
//! events, and vice versa.

use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_ktime_get_ns},
    macros::{map, tracepoint},
    maps::RingBuf,
    programs::TracePointContext,
};
use pausewatch_common::{
    COMM_LEN, LostReason, PROCESS_EXEC, PROCESS_EXIT, PROCESS_RINGBUF_BYTES, ProcessEvent,
};

use crate::{admission, intervals::current, maps::count_lost};

/// Exec and exit events, read by the agent's process follower.
#[map]
pub static PROCESS_EVENTS: RingBuf = RingBuf::with_byte_size(PROCESS_RINGBUF_BYTES, 0);

/// `sched:sched_process_exec`: fires in the process that has just replaced
/// its program, after the new image is set up (comm is already the new one).
#[tracepoint]
pub fn process_exec(_ctx: TracePointContext) -> u32 {
    let (pid, _) = current();
    // Cannot fail for the current task; an empty name reads as "unknown"
    // to the agent, which then falls back to /proc.
    let comm = bpf_get_current_comm().unwrap_or([0; COMM_LEN]);
    admission::on_exec(pid);
    send(PROCESS_EXEC, pid, comm);
    0
}

/// `sched:sched_process_exit`: fires once per exiting thread. Only the thread
/// group leader's exit is reported: the leader is the thread whose id is the
/// pid, and it is the one that ends the process for the agent (the
/// `group_dead` field would say "last thread" exactly, but it is recent and
/// its offset differs between kernels; tgid == tid works on all of them).
#[tracepoint]
pub fn process_exit(_ctx: TracePointContext) -> u32 {
    let (pid, tid) = current();
    if pid == tid {
        admission::on_exit(pid);
        send(PROCESS_EXIT, pid, [0; COMM_LEN]);
    }
    0
}

#[inline(always)]
fn send(what: u32, pid: u32, comm: [u8; COMM_LEN]) {
    let event = ProcessEvent {
        what,
        pid,
        // SAFETY: no preconditions.
        ktime_ns: unsafe { bpf_ktime_get_ns() },
        comm,
    };
    if PROCESS_EVENTS.output::<ProcessEvent>(&event, 0).is_err() {
        count_lost(LostReason::ProcessEventsFull);
    }
}
