//! One uprobe per probe point of a file, shared by every target that maps
//! the file (the follow modes): which links exist, which targets use each,
//! and which links go once they have been unused for a while.
//!
//! The kernel unregisters uprobes one at a time (~0.1 s each here), so
//! per-process links made shutdown and churn cost time in proportion to
//! the targets; shared ones cost it in proportion to the distinct probe
//! points. The BPF side decides per pid what is recorded (`ADMITTED`,
//! `ebpf/src/admission.rs`). Generic over the link type so that the
//! bookkeeping is tested without BPF.

use std::{
    collections::{HashMap, HashSet, hash_map::Entry},
    time::{Duration, Instant},
};

use pausewatch_common::{ArgSpec, heap::ArgSet};

/// How long a link stays after its last user went. Short jobs (a test
/// run's JVMs, a CLI's `node`s) come one after another: with a link still
/// there, the next one is recorded from its first instruction instead of
/// from its attach. An unused link costs nothing (no process maps its
/// file); it holds the file's inode until it goes.
pub const LINGER: Duration = Duration::from_secs(600);

/// One probe point: the file by device and inode, the program, the
/// instruction and everything else that the attachment fixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PointKey {
    /// Device of the probed file.
    pub dev: u64,
    /// Inode of the probed file.
    pub ino: u64,
    /// The BPF program.
    pub program: &'static str,
    /// File offset of the instruction.
    pub offset: u64,
    /// File offset of the USDT semaphore, if any.
    pub ref_ctr_offset: Option<u64>,
    /// Where the program's argument is (the link's cookie names its slot,
    /// which the link holds for as long as it lives).
    pub arg: PointArg,
}

/// The argument locations a probe point's program reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PointArg {
    /// None.
    None,
    /// One (`ARG_SPECS`).
    Spec(ArgSpec),
    /// Every argument (`ARG_SETS`).
    Set(ArgSet),
}

/// Shared links and their users.
pub struct SharedLinks<L> {
    points: HashMap<PointKey, Point<L>>,
    by_pid: HashMap<u32, Vec<PointKey>>,
}

/// One shared link, its users, and since when it has none.
struct Point<L> {
    link: L,
    users: HashSet<u32>,
    idle_since: Option<Instant>,
}

impl<L> Default for SharedLinks<L> {
    fn default() -> Self {
        SharedLinks {
            points: HashMap::new(),
            by_pid: HashMap::new(),
        }
    }
}

impl<L> SharedLinks<L> {
    /// Makes `pid` a user of `key`, attaching with `attach` only when no
    /// link exists for it yet. Returns whether a link was attached.
    pub fn use_point<E>(
        &mut self,
        pid: u32,
        key: PointKey,
        attach: impl FnOnce() -> Result<L, E>,
    ) -> Result<bool, E> {
        let attached = match self.points.entry(key) {
            Entry::Occupied(mut e) => {
                let point = e.get_mut();
                point.idle_since = None;
                if !point.users.insert(pid) {
                    // The same point listed twice for one process (a probe
                    // at one address under two names) is one use.
                    return Ok(false);
                }
                false
            }
            Entry::Vacant(e) => {
                e.insert(Point {
                    link: attach()?,
                    users: HashSet::from([pid]),
                    idle_since: None,
                });
                true
            }
        };
        self.by_pid.entry(pid).or_default().push(key);
        Ok(attached)
    }

    /// Ends every use of `pid` at `now`; a link left without users stays
    /// for [`LINGER`] (see [`SharedLinks::expire`]).
    pub fn release(&mut self, pid: u32, now: Instant) {
        for key in self.by_pid.remove(&pid).unwrap_or_default() {
            if let Some(point) = self.points.get_mut(&key) {
                point.users.remove(&pid);
                if point.users.is_empty() {
                    point.idle_since = Some(now);
                }
            }
        }
    }

    /// Takes out the links that have had no user for `linger` at `now`,
    /// for the caller to detach.
    pub fn expire(&mut self, now: Instant, linger: Duration) -> Vec<L> {
        let expired: Vec<PointKey> = self
            .points
            .iter()
            .filter(|(_, p)| {
                p.idle_since
                    .is_some_and(|t| now.duration_since(t) >= linger)
            })
            .map(|(k, _)| *k)
            .collect();
        expired
            .iter()
            .filter_map(|k| self.points.remove(k))
            .map(|p| p.link)
            .collect()
    }

    /// Takes out every link, for shutdown.
    pub fn drain(&mut self) -> Vec<L> {
        self.by_pid.clear();
        self.points.drain().map(|(_, p)| p.link).collect()
    }

    /// Number of links.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether there is no link.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(offset: u64) -> PointKey {
        PointKey {
            dev: 1,
            ino: 2,
            program: "p",
            offset,
            ref_ctr_offset: None,
            arg: PointArg::None,
        }
    }

    #[test]
    fn a_point_is_attached_once_and_detached_with_its_last_user() {
        let mut links = SharedLinks::default();
        let mut attaches = 0;
        let mut attach = || -> Result<u32, ()> {
            attaches += 1;
            Ok(attaches)
        };
        assert_eq!(links.use_point(10, key(1), &mut attach), Ok(true));
        assert_eq!(links.use_point(10, key(2), &mut attach), Ok(true));
        assert_eq!(links.use_point(11, key(1), &mut attach), Ok(false));
        assert_eq!(links.use_point(11, key(1), &mut attach), Ok(false));
        assert_eq!(attaches, 2);
        assert_eq!(links.len(), 2);
        let t0 = Instant::now();
        let linger = Duration::from_secs(5);
        // pid 10 leaves: key(2) was its alone, key(1) is still pid 11's.
        links.release(10, t0);
        assert!(links.expire(t0 + linger / 2, linger).is_empty(), "lingers");
        assert_eq!(links.expire(t0 + linger, linger), vec![2]);
        assert_eq!(links.len(), 1);
        links.release(11, t0 + linger);
        assert_eq!(links.expire(t0 + 2 * linger, linger), vec![1]);
        assert!(links.is_empty() && links.by_pid.is_empty());
        links.release(12, t0);
        assert!(links.expire(t0 + 3 * linger, linger).is_empty());
    }

    #[test]
    fn a_new_user_keeps_a_lingering_link() {
        let mut links = SharedLinks::default();
        let t0 = Instant::now();
        let linger = Duration::from_secs(5);
        assert_eq!(links.use_point(10, key(1), || Ok::<_, ()>(1)), Ok(true));
        links.release(10, t0);
        // The next process of the file comes before the link expired: it
        // is the link's user, nothing is attached.
        assert_eq!(links.use_point(11, key(1), || Ok::<_, ()>(2)), Ok(false));
        assert!(links.expire(t0 + 2 * linger, linger).is_empty());
        links.release(11, t0 + 2 * linger);
        assert_eq!(links.expire(t0 + 3 * linger, linger), vec![1]);
    }

    #[test]
    fn a_failed_attach_leaves_no_user_behind() {
        let mut links: SharedLinks<u32> = SharedLinks::default();
        assert_eq!(
            links.use_point(10, key(1), || Err("refused")),
            Err("refused")
        );
        assert!(links.is_empty());
        links.release(10, Instant::now());
        assert_eq!(links.use_point(11, key(1), || Ok::<_, ()>(7)), Ok(true));
    }

    #[test]
    fn other_files_and_arguments_are_other_points() {
        let mut links = SharedLinks::default();
        let other_file = PointKey { ino: 3, ..key(1) };
        let other_arg = PointKey {
            arg: PointArg::Spec(ArgSpec {
                val: 4,
                ..ArgSpec::default()
            }),
            ..key(1)
        };
        for (pid, k) in [(1, key(1)), (2, other_file), (3, other_arg)] {
            assert_eq!(links.use_point(pid, k, || Ok::<_, ()>(pid)), Ok(true));
        }
        let mut all = links.drain();
        all.sort_unstable();
        assert_eq!(all, [1, 2, 3]);
        assert!(links.is_empty());
    }
}
