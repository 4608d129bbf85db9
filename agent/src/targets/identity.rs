//! Which process a pid means: the pid plus the process's start time.
//!
//! Pids are reused: a JVM exits and, some time later, an unrelated process
//! gets its number. The start time (clock ticks after boot, field 22 of
//! `/proc/PID/stat`) differs between the two, so the pair names one process
//! for the life of the system. An exec keeps both (same process, new
//! program); that case is told apart by the exec event, not by identity.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use procfs::process::Process as ProcfsProcess;

/// One process for the life of the system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    /// Process id in the agent's pid namespace.
    pub pid: u32,
    /// Start time in clock ticks after boot.
    pub start_time: u64,
}

impl Identity {
    /// The process running as `pid` now, or `None` if there is none (or it
    /// is a zombie: it has exited, only its exit status is left).
    pub fn current(pid: u32) -> Option<Identity> {
        let stat = ProcfsProcess::new(pid as i32).ok()?.stat().ok()?;
        (stat.state != 'Z').then_some(Identity {
            pid,
            start_time: stat.starttime,
        })
    }

    /// Whether this exact process still runs.
    pub fn is_alive(&self) -> bool {
        Identity::current(self.pid) == Some(*self)
    }
}

/// A pidfd on one traced process: tells whether it has exited without
/// reading `/proc`.
///
/// The lifecycle asks every traced process twice a second whether it still
/// runs. Asking `/proc/PID/stat` costs the kernel a walk over every thread
/// of the process (`do_task_stat` sums their times): with 100 JVMs it was a
/// quarter of the agent's CPU. A pidfd always refers to the process it was
/// opened on, reused pid or not, and polls readable once that process has
/// exited (zombie or reaped), so the check is one `poll` with no wait.
#[derive(Debug)]
pub struct ExitWatch(OwnedFd);

impl ExitWatch {
    /// A watch on `id`, or `None` if it is gone already or the kernel has no
    /// pidfds (before 5.3; callers then fall back to [`Identity::is_alive`]).
    pub fn open(id: Identity) -> Option<ExitWatch> {
        let pid = libc::pid_t::try_from(id.pid).ok()?;
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let fd = i32::try_from(fd).ok().filter(|&fd| fd >= 0)?;
        // SAFETY: `fd` was just returned by the kernel and nothing else owns it.
        let watch = ExitWatch(unsafe { OwnedFd::from_raw_fd(fd) });
        // The pid may have been reused between `id` and the open: the
        // pidfd must name `id` itself.
        (id.is_alive() && !watch.has_exited()).then_some(watch)
    }

    /// Whether the process has exited.
    pub fn has_exited(&self) -> bool {
        let mut fds = [libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd, timeout 0 (never blocks).
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) };
        n > 0 && fds[0].revents & (libc::POLLIN | libc::POLLHUP) != 0
    }
}

/// What a table knows about a pid, compared with the process now behind it.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen<'a, T> {
    /// The pid is not in the table.
    New,
    /// The table holds this very process.
    Same(&'a mut T),
    /// The table holds an earlier process that had the same pid.
    Reused,
}

/// A table of per-process state keyed by pid, which never hands out the
/// state of a pid's previous owner for its new one.
#[derive(Debug)]
pub struct ByIdentity<T> {
    entries: HashMap<u32, (u64, T)>,
}

impl<T> Default for ByIdentity<T> {
    fn default() -> Self {
        ByIdentity {
            entries: HashMap::new(),
        }
    }
}

impl<T> ByIdentity<T> {
    /// How `id` relates to what the table holds for its pid.
    pub fn seen(&mut self, id: Identity) -> Seen<'_, T> {
        match self.entries.get_mut(&id.pid) {
            None => Seen::New,
            Some((start, value)) if *start == id.start_time => Seen::Same(value),
            Some(_) => Seen::Reused,
        }
    }

    /// Stores `value` for `id`, returning what was stored for the pid before
    /// (the same process's state, or a predecessor's).
    pub fn insert(&mut self, id: Identity, value: T) -> Option<(Identity, T)> {
        self.entries
            .insert(id.pid, (id.start_time, value))
            .map(|(start_time, v)| {
                (
                    Identity {
                        pid: id.pid,
                        start_time,
                    },
                    v,
                )
            })
    }

    /// The entry of `pid`, whoever owns it.
    pub fn get_mut(&mut self, pid: u32) -> Option<(Identity, &mut T)> {
        self.entries.get_mut(&pid).map(|(start_time, v)| {
            (
                Identity {
                    pid,
                    start_time: *start_time,
                },
                v,
            )
        })
    }

    /// Removes the entry of `pid`.
    pub fn remove(&mut self, pid: u32) -> Option<(Identity, T)> {
        self.entries
            .remove(&pid)
            .map(|(start_time, v)| (Identity { pid, start_time }, v))
    }

    /// Every entry.
    pub fn iter(&self) -> impl Iterator<Item = (Identity, &T)> {
        self.entries.iter().map(|(&pid, (start_time, v))| {
            (
                Identity {
                    pid,
                    start_time: *start_time,
                },
                v,
            )
        })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(pid: u32, start_time: u64) -> Identity {
        Identity { pid, start_time }
    }

    #[test]
    fn a_reused_pid_is_not_its_predecessor() {
        let mut t = ByIdentity::default();
        assert_eq!(t.seen(id(42, 1000)), Seen::New);
        assert!(t.insert(id(42, 1000), "jvm A").is_none());
        assert_eq!(t.seen(id(42, 1000)), Seen::Same(&mut "jvm A"));
        // Same pid, later start: another process.
        assert_eq!(t.seen(id(42, 5000)), Seen::Reused);
        // Same start time, other pid: another process too.
        assert_eq!(t.seen(id(43, 1000)), Seen::New);
        let old = t.insert(id(42, 5000), "python B");
        assert_eq!(old, Some((id(42, 1000), "jvm A")));
        assert_eq!(t.seen(id(42, 1000)), Seen::Reused);
        assert_eq!(t.seen(id(42, 5000)), Seen::Same(&mut "python B"));
        assert_eq!(t.remove(42), Some((id(42, 5000), "python B")));
        assert!(t.is_empty());
    }

    #[test]
    fn identity_of_a_live_and_a_gone_process() {
        let me = Identity::current(std::process::id()).unwrap();
        assert!(me.is_alive());
        // Same pid, another start time: not this process.
        assert!(
            !Identity {
                start_time: me.start_time + 1,
                ..me
            }
            .is_alive()
        );
        assert_eq!(Identity::current(9_999_999), None);
    }

    #[test]
    fn an_exit_watch_sees_the_exit_before_the_reap() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let id = Identity::current(child.id()).unwrap();
        let watch = ExitWatch::open(id).unwrap();
        assert!(!watch.has_exited());
        // Another start time: not this process, so no watch.
        assert!(
            ExitWatch::open(Identity {
                start_time: id.start_time + 1,
                ..id
            })
            .is_none()
        );
        child.kill().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !watch.has_exited() {
            assert!(std::time::Instant::now() < deadline, "exit not seen");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // Still a zombie, not reaped: the watch agrees with Identity.
        assert!(!id.is_alive());
        child.wait().unwrap();
        assert!(watch.has_exited());
    }

    #[test]
    fn an_exited_child_is_gone_before_it_is_reaped() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let id = Identity::current(child.id());
        // It may already be a zombie when we look: then it is gone.
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(Identity::current(child.id()).is_none(), "{id:?}");
        child.wait().unwrap();
    }
}
