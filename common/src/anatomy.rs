//! The scheduler tracepoint fields the pause anatomy and safepoint
//! straggler programs read (`ebpf/src/anatomy.rs`, `ebpf/src/straggler.rs`),
//! where they read them. The agent compares these
//! with the running kernel's `events/sched/*/format` before it attaches the
//! programs, so a kernel with another layout gets no anatomy rather than
//! wrong numbers.

/// One field of a tracepoint record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// The tracepoint, as `category/name`.
    pub event: &'static str,
    /// The field's name in the format file.
    pub name: &'static str,
    /// Byte offset in the record.
    pub offset: usize,
    /// Size in bytes.
    pub size: usize,
}

/// `sched_switch`'s `prev_pid`: the thread leaving the CPU.
pub const SWITCH_PREV_PID: Field = Field {
    event: "sched/sched_switch",
    name: "prev_pid",
    offset: 24,
    size: 4,
};
/// `sched_switch`'s `prev_comm`: the leaving thread's name, which names a
/// safepoint's straggler (the current task's comm is the same thread's,
/// but the record's copy is what the kernel reported for this switch).
pub const SWITCH_PREV_COMM: Field = Field {
    event: "sched/sched_switch",
    name: "prev_comm",
    offset: 8,
    size: 16,
};
/// `sched_switch`'s `prev_state`: why it left (a sleeping state, or none
/// when it was preempted).
pub const SWITCH_PREV_STATE: Field = Field {
    event: "sched/sched_switch",
    name: "prev_state",
    offset: 32,
    size: 8,
};
/// `sched_switch`'s `next_pid`: the thread taking the CPU.
pub const SWITCH_NEXT_PID: Field = Field {
    event: "sched/sched_switch",
    name: "next_pid",
    offset: 56,
    size: 4,
};
/// `sched_wakeup`'s `pid`: the thread put on a run queue.
pub const WAKEUP_PID: Field = Field {
    event: "sched/sched_wakeup",
    name: "pid",
    offset: 24,
    size: 4,
};

/// `sched_waking`'s `pid`: the thread being woken. Unlike `sched_wakeup`
/// it fires synchronously in `try_to_wake_up()`, before the wakee can run,
/// which the straggler rule needs to tell "asleep at the safepoint's
/// begin" from "woken just before it" (docs/design.md, "Safepoint
/// stragglers").
pub const WAKING_PID: Field = Field {
    event: "sched/sched_waking",
    name: "pid",
    offset: 24,
    size: 4,
};

/// `sched_waking`'s `comm`: the name of the thread being woken, which
/// tells HotSpot's GC workers (`GC Thread#N`) apart when the VM thread
/// wakes them for a pause.
pub const WAKING_COMM: Field = Field {
    event: "sched/sched_waking",
    name: "comm",
    offset: 8,
    size: 16,
};

/// Every field read, for the agent's check.
pub const FIELDS: [Field; 7] = [
    SWITCH_PREV_PID,
    SWITCH_PREV_COMM,
    SWITCH_PREV_STATE,
    SWITCH_NEXT_PID,
    WAKEUP_PID,
    WAKING_PID,
    WAKING_COMM,
];
