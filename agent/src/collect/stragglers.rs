//! Safepoint stragglers (HotSpot): the BPF side counts, per process and
//! straggler thread name, how many safepoints that thread reached last and
//! the time to safepoint charged to it (`ebpf/src/straggler.rs`). This
//! module folds those per-CPU entries into exported series.
//!
//! Thread pools name their threads with numbers (`pool-3-thread-17`,
//! `ForkJoinPool.commonPool-worker-5`), so names are normalised (every run
//! of digits becomes `#`) and each process keeps at most
//! [`MAX_STRAGGLER_NAMES`] names; later ones are counted under
//! [`OTHER_THREADS`]. The kept names are chosen once and never change for
//! the life of the process (see [`NameSlots`]): a counter that moved
//! between `thread` labels from one scrape to the next would go backwards.

use std::collections::{BTreeMap, HashMap};

use pausewatch_common::{COMM_LEN, StragglerKey, StragglerStats};

/// Names kept per process before the rest go under [`OTHER_THREADS`].
pub const MAX_STRAGGLER_NAMES: usize = 8;

/// The `thread` label of the stragglers whose names did not get a slot.
pub const OTHER_THREADS: &str = "other";

/// One process's safepoints charged to one (normalised) thread name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StragglerSeries {
    /// Process id.
    pub pid: u32,
    /// Normalised thread name, or [`OTHER_THREADS`].
    pub thread: String,
    /// Safepoints it reached last.
    pub count: u64,
    /// Their time to safepoint, summed, in nanoseconds.
    pub tts_ns: u64,
    /// Their straggler's arrival after the begin, summed, in nanoseconds.
    pub late_ns: u64,
}

impl StragglerSeries {
    /// The order of a snapshot's stragglers, which [`NameSlots::fold`]
    /// yields: by pid and thread name.
    pub fn order(a: &StragglerSeries, b: &StragglerSeries) -> std::cmp::Ordering {
        (a.pid, &a.thread).cmp(&(b.pid, &b.thread))
    }
}

/// A kernel command name (NUL-padded, not necessarily UTF-8) as text.
pub fn comm_text(comm: &[u8; COMM_LEN]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
    String::from_utf8_lossy(&comm[..end]).into_owned()
}

/// A thread name with every run of ASCII digits replaced by one `#`:
/// `pool-3-thread-17` → `pool-#-thread-#`.
pub fn normalise(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_digits = false;
    for c in name.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    if out.is_empty() {
        // A thread with no name (all NULs) is still a thread.
        out.push('?');
    }
    out
}

/// Which normalised names of each process have their own series.
///
/// At each collection, names not yet seen are admitted, biggest time to
/// safepoint first, while the process has fewer than
/// [`MAX_STRAGGLER_NAMES`]; an admitted name keeps its slot until the
/// process is forgotten. So the first names to be charged take the slots,
/// and between two collections the heaviest of the newcomers.
#[derive(Debug, Default)]
pub struct NameSlots {
    kept: HashMap<u32, Vec<String>>,
}

impl NameSlots {
    /// Folds raw BPF entries (per-CPU values already summed) into series:
    /// one per kept name and at most one [`OTHER_THREADS`] per process,
    /// sorted by pid and name.
    pub fn fold(
        &mut self,
        entries: impl IntoIterator<Item = (StragglerKey, StragglerStats)>,
    ) -> Vec<StragglerSeries> {
        let mut by_name: BTreeMap<(u32, String), StragglerStats> = BTreeMap::new();
        for (key, stats) in entries {
            let t = by_name
                .entry((key.pid, normalise(&comm_text(&key.comm))))
                .or_default();
            t.count = t.count.saturating_add(stats.count);
            t.tts_ns = t.tts_ns.saturating_add(stats.tts_ns);
            t.late_ns = t.late_ns.saturating_add(stats.late_ns);
        }
        // Admit newcomers, heaviest first (ties by name, for determinism).
        let mut newcomers: Vec<(&(u32, String), &StragglerStats)> = by_name
            .iter()
            .filter(|((pid, name), _)| !self.is_kept(*pid, name))
            .collect();
        newcomers.sort_by(|a, b| b.1.tts_ns.cmp(&a.1.tts_ns).then(a.0.cmp(b.0)));
        for ((pid, name), _) in newcomers {
            let kept = self.kept.entry(*pid).or_default();
            if kept.len() < MAX_STRAGGLER_NAMES {
                kept.push(name.clone());
            }
        }
        let mut out: BTreeMap<(u32, String), StragglerSeries> = BTreeMap::new();
        for ((pid, name), stats) in by_name {
            let thread = if self.is_kept(pid, &name) {
                name
            } else {
                OTHER_THREADS.to_string()
            };
            let s = out
                .entry((pid, thread.clone()))
                .or_insert_with(|| StragglerSeries {
                    pid,
                    thread,
                    ..Default::default()
                });
            s.count = s.count.saturating_add(stats.count);
            s.tts_ns = s.tts_ns.saturating_add(stats.tts_ns);
            s.late_ns = s.late_ns.saturating_add(stats.late_ns);
        }
        out.into_values().collect()
    }

    fn is_kept(&self, pid: u32, name: &str) -> bool {
        self.kept
            .get(&pid)
            .is_some_and(|k| k.iter().any(|n| n == name))
    }

    /// Frees a forgotten process's slots.
    pub fn forget(&mut self, pid: u32) {
        self.kept.remove(&pid);
    }
}

/// Sums one entry's per-CPU values.
pub fn sum_per_cpu<'a>(values: impl IntoIterator<Item = &'a StragglerStats>) -> StragglerStats {
    values
        .into_iter()
        .fold(StragglerStats::default(), |mut a, v| {
            a.count = a.count.saturating_add(v.count);
            a.tts_ns = a.tts_ns.saturating_add(v.tts_ns);
            a.late_ns = a.late_ns.saturating_add(v.late_ns);
            a
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(pid: u32, name: &str) -> StragglerKey {
        let mut comm = [0u8; COMM_LEN];
        for (c, b) in comm.iter_mut().zip(name.bytes().take(COMM_LEN - 1)) {
            *c = b;
        }
        StragglerKey { pid, comm }
    }

    fn stats(count: u64, tts_ns: u64) -> StragglerStats {
        StragglerStats {
            count,
            tts_ns,
            late_ns: tts_ns / 2,
        }
    }

    #[test]
    fn digit_runs_become_one_hash() {
        assert_eq!(normalise("pool-3-thread-17"), "pool-#-thread-#");
        assert_eq!(normalise("slowpoke"), "slowpoke");
        assert_eq!(normalise("C2 CompilerThre"), "C# CompilerThre");
        assert_eq!(normalise("123"), "#");
        assert_eq!(normalise(""), "?");
        assert_eq!(comm_text(&key(1, "busy-2").comm), "busy-2");
        // 15 bytes and no NUL terminator inside the buffer still decode.
        let full = StragglerKey {
            pid: 1,
            comm: *b"ABCDEFGHIJKLMNOP",
        };
        assert_eq!(comm_text(&full.comm), "ABCDEFGHIJKLMNOP");
    }

    #[test]
    fn per_cpu_values_sum() {
        let s = sum_per_cpu(&[stats(1, 10), stats(2, 20)]);
        assert_eq!((s.count, s.tts_ns, s.late_ns), (3, 30, 15));
    }

    #[test]
    fn numbered_names_merge_and_only_k_names_per_process_are_kept() {
        let mut slots = NameSlots::default();
        let mut entries = vec![
            (key(1, "busy-0"), stats(1, 100)),
            (key(1, "busy-1"), stats(2, 200)),
            (key(1, "slowpoke"), stats(5, 5_000)),
        ];
        // Ten more distinct names in pid 1, all lighter than the above.
        let names: Vec<String> = (0..10)
            .map(|i| format!("t{}x{}", char::from(b'a' + i), i))
            .collect();
        for n in &names {
            entries.push((key(1, n), stats(1, 1)));
        }
        entries.push((key(2, "worker-9"), stats(1, 7)));
        let out = slots.fold(entries.clone());
        let p1: Vec<&StragglerSeries> = out.iter().filter(|s| s.pid == 1).collect();
        // 8 kept names (busy-# counts once) and "other".
        assert_eq!(p1.len(), MAX_STRAGGLER_NAMES + 1, "{p1:?}");
        let busy = p1.iter().find(|s| s.thread == "busy-#").unwrap();
        assert_eq!((busy.count, busy.tts_ns), (3, 300));
        assert!(p1.iter().any(|s| s.thread == "slowpoke"));
        let other = p1.iter().find(|s| s.thread == OTHER_THREADS).unwrap();
        // 2 heavy names + 6 of the 10 light ones kept: 4 light ones left.
        assert_eq!((other.count, other.tts_ns), (4, 4));
        // Nothing is lost: the totals are those of the entries.
        let total: u64 = p1.iter().map(|s| s.tts_ns).sum();
        assert_eq!(total, 100 + 200 + 5_000 + 10);
        assert_eq!(
            out.iter().find(|s| s.pid == 2).map(|s| s.thread.as_str()),
            Some("worker-#")
        );
    }

    #[test]
    fn kept_names_never_change_so_counters_never_go_back() {
        let mut slots = NameSlots::default();
        let mut entries: Vec<(StragglerKey, StragglerStats)> = (0..MAX_STRAGGLER_NAMES)
            .map(|i| {
                (
                    key(1, &format!("w{}", char::from(b'a' + i as u8))),
                    stats(1, 1),
                )
            })
            .collect();
        slots.fold(entries.clone());
        // A newcomer, much heavier than every kept name, goes to "other".
        entries.push((key(1, "late"), stats(100, 1_000_000)));
        let out = slots.fold(entries.clone());
        assert!(out.iter().all(|s| s.thread != "late"));
        let other = out.iter().find(|s| s.thread == OTHER_THREADS).unwrap();
        assert_eq!(other.tts_ns, 1_000_000);
        // Once the process is forgotten, its slots are free again.
        slots.forget(1);
        let out = slots.fold(entries);
        assert!(out.iter().any(|s| s.thread == "late"));
    }
}
