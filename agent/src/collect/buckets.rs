//! A histogram's fine bucket counts, held from its first non-empty bucket to
//! its last.
//!
//! The BPF layout has [`BUCKETS`] buckets reaching 1100 s, and a series'
//! observations sit in a few neighbouring ones (a safepoint's tens of µs,
//! a GC pause's milliseconds). The rule engine's history keeps many
//! snapshots of every series that changes, so only the occupied range is
//! stored.

use pausewatch_common::BUCKETS;

/// Bucket counts by fine bucket index (`pausewatch_common::hist`); a
/// bucket outside the held range counts zero. Additions saturate.
///
/// Equality is by counts, whatever range each side holds.
#[derive(Clone, Debug, Default)]
pub struct Buckets {
    /// Index of the first held bucket.
    first: usize,
    /// Counts from `first` on.
    counts: Vec<u64>,
}

impl Buckets {
    /// The count of bucket `i`.
    pub fn get(&self, i: usize) -> u64 {
        i.checked_sub(self.first)
            .and_then(|j| self.counts.get(j))
            .copied()
            .unwrap_or(0)
    }

    /// `(index, count)` of every held bucket, in index order (empty buckets
    /// between occupied ones included).
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (usize, u64)> + '_ {
        (self.first..self.first + self.counts.len()).zip(self.counts.iter().copied())
    }

    /// The index of the highest non-empty bucket.
    pub fn last(&self) -> Option<usize> {
        self.counts
            .iter()
            .rposition(|&n| n > 0)
            .map(|j| self.first + j)
    }

    /// The counts of all buckets, added up.
    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, &n| a.saturating_add(n))
    }

    /// How many buckets are held (occupied or between occupied ones).
    pub fn held(&self) -> usize {
        self.counts.len()
    }

    /// Adds `n` to bucket `i` (past the last bucket: to the last).
    pub fn add(&mut self, i: usize, n: u64) {
        if n == 0 {
            return;
        }
        let i = i.min(BUCKETS - 1);
        self.cover(i, i);
        let c = &mut self.counts[i - self.first];
        *c = c.saturating_add(n);
    }

    /// Adds `dense`, counts indexed from bucket 0 (a BPF histogram's).
    pub fn add_dense(&mut self, dense: &[u64]) {
        let dense = &dense[..dense.len().min(BUCKETS)];
        let Some(lo) = dense.iter().position(|&n| n > 0) else {
            return;
        };
        let hi = dense.iter().rposition(|&n| n > 0).unwrap_or(lo);
        self.add_run(lo, &dense[lo..=hi]);
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Buckets) {
        let (lo, counts) = other.occupied();
        self.add_run(lo, counts);
    }

    /// Adds `counts` to the buckets from `lo` on.
    fn add_run(&mut self, lo: usize, counts: &[u64]) {
        if counts.is_empty() {
            return;
        }
        self.cover(lo, lo + counts.len() - 1);
        let at = lo - self.first;
        for (a, &b) in self.counts[at..].iter_mut().zip(counts) {
            *a = a.saturating_add(b);
        }
    }

    /// The counts added since `earlier` (a previous state of the same
    /// series), never below zero.
    pub fn since(&self, earlier: &Buckets) -> Buckets {
        Buckets {
            first: self.first,
            counts: self
                .iter()
                .map(|(i, n)| n.saturating_sub(earlier.get(i)))
                .collect(),
        }
        .trimmed()
    }

    /// The same counts with no empty bucket at either end, and the memory
    /// fitted to them.
    pub fn trimmed(self) -> Buckets {
        let (first, counts) = self.occupied();
        if counts.len() == self.counts.len() && self.counts.capacity() == counts.len() {
            return self;
        }
        Buckets {
            first,
            counts: counts.to_vec(),
        }
    }

    /// The first occupied bucket's index and the counts from it to the last
    /// occupied one (empty when no bucket is).
    fn occupied(&self) -> (usize, &[u64]) {
        let Some(lo) = self.counts.iter().position(|&n| n > 0) else {
            return (0, &[]);
        };
        let hi = self.counts.iter().rposition(|&n| n > 0).unwrap_or(lo);
        (self.first + lo, &self.counts[lo..=hi])
    }

    /// Widens the held range to include buckets `lo..=hi`.
    fn cover(&mut self, lo: usize, hi: usize) {
        if self.counts.is_empty() {
            self.first = lo;
            self.counts.resize(hi - lo + 1, 0);
            return;
        }
        if lo < self.first {
            let grow = self.first - lo;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.first = lo;
        }
        let end = self.first + self.counts.len();
        if hi >= end {
            self.counts.resize(hi + 1 - self.first, 0);
        }
    }
}

impl PartialEq for Buckets {
    fn eq(&self, other: &Buckets) -> bool {
        self.occupied() == other.occupied()
    }
}

impl Eq for Buckets {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dense reference counts of `b`.
    fn dense(b: &Buckets) -> Vec<u64> {
        (0..BUCKETS).map(|i| b.get(i)).collect()
    }

    #[test]
    fn adds_merges_and_differences_as_dense_counts_would() {
        let mut a = Buckets::default();
        let mut want = vec![0u64; BUCKETS];
        for (i, n) in [(40, 3), (38, 1), (45, 2), (40, 1), (200, 1)] {
            a.add(i, n);
            want[i.min(BUCKETS - 1)] += n;
        }
        assert_eq!(dense(&a), want);
        assert_eq!(a.total(), 8);
        assert_eq!(a.last(), Some(BUCKETS - 1));

        let mut raw = vec![0u64; BUCKETS];
        raw[10] = 5;
        raw[39] = 2;
        let mut b = Buckets::default();
        b.add_dense(&raw);
        b.add_dense(&raw);
        assert_eq!(b.held(), 30);
        a.merge(&b);
        for (w, r) in want.iter_mut().zip(&raw) {
            *w += 2 * r;
        }
        assert_eq!(dense(&a), want);

        let d = a.since(&b);
        for (w, r) in want.iter_mut().zip(&raw) {
            *w -= 2 * r;
        }
        assert_eq!(dense(&d), want);
        assert_eq!(
            d.iter().next(),
            Some((38, 1)),
            "trimmed to the occupied range"
        );
        // Never below zero.
        assert_eq!(b.since(&a).total(), 0);
    }

    #[test]
    fn equal_counts_are_equal_whatever_range_is_held() {
        let mut wide = Buckets::default();
        wide.add(10, 1);
        wide.add(50, 1);
        let mut narrow = Buckets::default();
        narrow.add(50, 1);
        assert_ne!(wide, narrow);
        let mut cleared = wide.since(&{
            let mut b = Buckets::default();
            b.add(10, 1);
            b
        });
        assert_eq!(cleared, narrow);
        cleared.add(20, 0);
        assert_eq!(cleared, narrow);
        let trimmed = narrow.clone().trimmed();
        assert_eq!((trimmed.held(), trimmed.iter().next()), (1, Some((50, 1))));
        assert_eq!(Buckets::default(), Buckets::default().trimmed());
        assert_eq!(Buckets::default().last(), None);
    }
}
