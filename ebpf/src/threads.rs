//! The per-thread table ([`THREAD_ENTRIES`]): finding, claiming and freeing
//! a thread's entry by its `task_struct` address.
//!
//! A thread lives at one of two places ([`thread_places`]), tagged with its
//! task address. A thread without an entry takes the first of its places
//! that is free, or else one whose owner has nothing open (no interval, no
//! anatomy reference): such an entry holds nothing that cannot be rebuilt
//! (a driver's accumulator only matters between a begin and its end; a GC
//! worker is recognised again at its next switch-out). Only when both
//! places hold other threads' open intervals is the new thread refused.
//! Lookups cost two inlined array accesses at most, and the table needs no
//! ageing: a thread whose exit was missed is an idle entry that the next
//! thread to need the place takes over.

use pausewatch_common::{MAX_OPEN_INTERVALS, ThreadEntry, thread_places};

use crate::maps::THREAD_ENTRIES;

/// The entry of the task at `task`, if it has one.
#[inline(always)]
pub fn lookup(task: u64) -> Option<&'static mut ThreadEntry> {
    let (a, b) = thread_places(task);
    for i in [a, b] {
        if let Some(t) = THREAD_ENTRIES.get_ptr_mut(i) {
            // SAFETY: a live array value. Only the owning thread's probes
            // write its slots; the scheduler programs write its anatomy
            // fields at its switches and wake-ups.
            let t = unsafe { &mut *t };
            if t.task == task {
                return Some(t);
            }
        }
    }
    None
}

/// A new, empty entry for the task at `task` (thread `tid` of `pid`) with
/// `role`, at the first of its places that is free or idle; `None` when
/// both hold another thread's open intervals.
#[inline(always)]
pub fn claim(task: u64, pid: u32, tid: u32, role: u32) -> Option<&'static mut ThreadEntry> {
    let (a, b) = thread_places(task);
    let mut idle = None;
    for i in [a, b] {
        let Some(t) = THREAD_ENTRIES.get_ptr_mut(i) else {
            continue;
        };
        // SAFETY: a live array value.
        let e = unsafe { &*t };
        if e.task == 0 {
            idle = Some(t);
            break;
        }
        if idle.is_none() && is_idle(e) {
            idle = Some(t);
        }
    }
    // SAFETY: a live array value.
    let t = unsafe { &mut *idle? };
    // Two threads claiming one place at the same instant on two CPUs could
    // both write it (BPF_CMPXCHG needs a newer BPF CPU level than the object
    // is built for); the later store wins, and the other thread's next
    // lookup misses, so it records nothing for that interval, no wrong value.
    t.task = task;
    t.pid = pid;
    t.tid = tid;
    t.refs = 0;
    t.role = role;
    t.epoch = 0;
    clear_slots(t);
    Some(t)
}

/// Frees `t` (its thread exited).
#[inline(always)]
pub fn free(t: &mut ThreadEntry) {
    t.task = 0;
    t.refs = 0;
    clear_slots(t);
}

/// Marks every interval slot of `t` free.
#[inline(always)]
pub fn clear_slots(t: &mut ThreadEntry) {
    for i in 0..MAX_OPEN_INTERVALS {
        t.slots[i].kind = 0;
        t.slots[i].tracked = 0;
    }
}

/// Whether `t`'s owner has nothing open: no anatomy reference, no interval.
#[inline(always)]
fn is_idle(t: &ThreadEntry) -> bool {
    if t.refs != 0 {
        return false;
    }
    for i in 0..MAX_OPEN_INTERVALS {
        if t.slots[i].kind != 0 {
            return false;
        }
    }
    true
}
