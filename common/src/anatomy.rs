//! The scheduler tracepoint fields the pause anatomy programs read
//! (`ebpf/src/anatomy.rs`), where they read them. The agent compares these
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

/// Every field read, for the agent's check.
pub const FIELDS: [Field; 4] = [
    SWITCH_PREV_PID,
    SWITCH_PREV_STATE,
    SWITCH_NEXT_PID,
    WAKEUP_PID,
];
