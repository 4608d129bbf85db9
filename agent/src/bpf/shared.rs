//! One uprobe per probe point of a file, shared by every target that maps
//! the file (the follow modes): which links exist, which targets use each,
//! and which links go when a target leaves.
//!
//! The kernel unregisters uprobes one at a time (~0.1 s each here), so
//! per-process links made shutdown and churn cost time in proportion to
//! the targets; shared ones cost it in proportion to the distinct probe
//! points. The BPF side decides per pid what is recorded (`ADMITTED`,
//! `ebpf/src/admission.rs`). Generic over the link type so that the
//! bookkeeping is tested without BPF.

use std::collections::{HashMap, HashSet, hash_map::Entry};

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
    /// The BPF cookie (the argument spec's slot).
    pub cookie: u32,
}

/// Shared links and their users.
pub struct SharedLinks<L> {
    points: HashMap<PointKey, (L, HashSet<u32>)>,
    by_pid: HashMap<u32, Vec<PointKey>>,
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
                if !e.get_mut().1.insert(pid) {
                    // The same point listed twice for one process (a probe
                    // at one address under two names) is one use.
                    return Ok(false);
                }
                false
            }
            Entry::Vacant(e) => {
                e.insert((attach()?, HashSet::from([pid])));
                true
            }
        };
        self.by_pid.entry(pid).or_default().push(key);
        Ok(attached)
    }

    /// Ends every use of `pid` and returns the links nobody uses any more,
    /// for the caller to detach.
    pub fn release(&mut self, pid: u32) -> Vec<L> {
        let mut unused = Vec::new();
        for key in self.by_pid.remove(&pid).unwrap_or_default() {
            if let Entry::Occupied(mut e) = self.points.entry(key) {
                e.get_mut().1.remove(&pid);
                if e.get().1.is_empty() {
                    unused.push(e.remove().0);
                }
            }
        }
        unused
    }

    /// Takes out every link, for shutdown.
    pub fn drain(&mut self) -> Vec<L> {
        self.by_pid.clear();
        self.points.drain().map(|(_, (link, _))| link).collect()
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
            cookie: 0,
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
        // pid 10 leaves: key(2) was its alone, key(1) is still pid 11's.
        assert_eq!(links.release(10), vec![2]);
        assert_eq!(links.len(), 1);
        assert_eq!(links.release(11), vec![1]);
        assert!(links.is_empty() && links.by_pid.is_empty());
        assert!(links.release(12).is_empty());
    }

    #[test]
    fn a_failed_attach_leaves_no_user_behind() {
        let mut links: SharedLinks<u32> = SharedLinks::default();
        assert_eq!(links.use_point(10, key(1), || Err("refused")), Err("refused"));
        assert!(links.is_empty());
        assert!(links.release(10).is_empty());
        assert_eq!(links.use_point(11, key(1), || Ok::<_, ()>(7)), Ok(true));
    }

    #[test]
    fn other_files_and_cookies_are_other_points() {
        let mut links = SharedLinks::default();
        let other_file = PointKey { ino: 3, ..key(1) };
        let other_arg = PointKey { cookie: 4, ..key(1) };
        for (pid, k) in [(1, key(1)), (2, other_file), (3, other_arg)] {
            assert_eq!(links.use_point(pid, k, || Ok::<_, ()>(pid)), Ok(true));
        }
        let mut all = links.drain();
        all.sort_unstable();
        assert_eq!(all, [1, 2, 3]);
        assert!(links.is_empty());
    }
}
