//! Reads a whole BPF hash map with `BPF_MAP_LOOKUP_BATCH`.
//!
//! aya's map iterator makes two system calls per entry (the next key, then
//! its value). At 100 JVMs the collector reads some 3000 entries a
//! collection, and those 6000 calls were over a quarter of the agent's
//! CPU. A batch read copies many entries per call. aya 0.14 has no batch
//! operations, so this module makes the one call the collector needs.
//! Every kernel with BPF ring buffers (5.8, which the agent needs) has it
//! for hash and per-CPU hash maps (5.6).

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd},
};

use aya::Pod;

/// `BPF_MAP_LOOKUP_BATCH` of `enum bpf_cmd` (include/uapi/linux/bpf.h).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// Entries asked for per call at first; doubled when one hash bucket holds
/// more (the kernel copies whole buckets, and says ENOSPC before the first).
const FIRST_CHUNK: u32 = 128;

/// More entries in one bucket than this is not a hash map's load.
const MAX_CHUNK: u32 = 1 << 16;

/// The `batch` member of `union bpf_attr`, the part this command reads.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Reads hash maps a batch of entries at a time, into one batch's buffers
/// kept from read to read.
///
/// Only a batch is held, never the whole map: a per-CPU histogram is a
/// kilobyte per CPU, so a whole map of them is megabytes at scale.
#[derive(Debug)]
pub struct BatchReader<K, V> {
    keys: Vec<K>,
    values: Vec<V>,
    chunk: u32,
}

impl<K: Pod, V: Pod> Default for BatchReader<K, V> {
    fn default() -> Self {
        BatchReader {
            keys: Vec::new(),
            values: Vec::new(),
            chunk: FIRST_CHUNK,
        }
    }
}

impl<K: Pod, V: Pod> BatchReader<K, V> {
    /// Calls `visit` with every entry of the hash map `fd`, whose keys are
    /// `K` and values `per_key` times `V`, a batch at a time.
    ///
    /// Entries added or deleted during the read may or may not be seen, as
    /// with any walk of a live map; each bucket is copied whole. On an
    /// error the entries already visited stay visited: a caller that falls
    /// back to another walk starts its tally over.
    pub fn for_each(
        &mut self,
        fd: BorrowedFd<'_>,
        per_key: usize,
        mut visit: impl FnMut(&K, &[V]),
    ) -> io::Result<()> {
        // The kernel lays a per-CPU value out in 8-byte slots; these types
        // fill them exactly, so the bytes land as a `[V]`.
        if !size_of::<V>().is_multiple_of(8) || align_of::<V>() > 8 || per_key == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "batch reads need values of whole 8-byte words",
            ));
        }
        // The position token: a bucket index for hash maps (a `u32`), a key
        // for other maps; room for either.
        let token_len = size_of::<K>().max(8).div_ceil(8);
        let mut tokens = vec![0u64; 2 * token_len];
        let (mut at, mut next) = (0, token_len);
        let mut first = true;
        loop {
            let chunk = self.chunk as usize;
            self.keys.clear();
            self.values.clear();
            self.keys.reserve(chunk);
            self.values.reserve(chunk * per_key);
            let mut attr = BatchAttr {
                in_batch: if first {
                    0
                } else {
                    tokens[at..].as_ptr() as u64
                },
                out_batch: tokens[next..].as_mut_ptr() as u64,
                keys: self.keys.spare_capacity_mut().as_mut_ptr() as u64,
                values: self.values.spare_capacity_mut().as_mut_ptr() as u64,
                count: self.chunk,
                map_fd: fd.as_raw_fd() as u32,
                ..BatchAttr::default()
            };
            // SAFETY: `attr` is a valid `bpf_attr` prefix of the size passed;
            // the key and value pointers have room for `count` entries
            // (reserved above), the tokens for a key each.
            let ret = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    BPF_MAP_LOOKUP_BATCH,
                    &mut attr as *mut BatchAttr,
                    size_of::<BatchAttr>() as u32,
                )
            };
            // ENOENT: the walk is over, with this call's entries in.
            let done = match (ret < 0).then(io::Error::last_os_error) {
                None => false,
                Some(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
                Some(e) if e.raw_os_error() == Some(libc::ENOSPC) && self.chunk < MAX_CHUNK => {
                    self.chunk *= 2;
                    continue;
                }
                Some(e) => return Err(e),
            };
            let n = (attr.count as usize).min(chunk);
            // SAFETY: the kernel wrote `n` keys and `n * per_key` values
            // into the spare capacity, and any bytes are a valid `K` and
            // `V` (`Pod`).
            unsafe {
                self.keys.set_len(n);
                self.values.set_len(n * per_key);
            }
            for (key, values) in self.keys.iter().zip(self.values.chunks_exact(per_key)) {
                visit(key, values);
            }
            if done {
                return Ok(());
            }
            std::mem::swap(&mut at, &mut next);
            first = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use aya::maps::{HashMap, IterableMap, PerCpuHashMap, PerCpuValues};
    use pausewatch_common::{StragglerKey, StragglerStats};

    use super::*;

    fn cpus() -> usize {
        aya::util::nr_cpus().expect("possible CPUs")
    }

    /// Real maps need CAP_BPF, which `cargo xtask test` runs with.
    fn need_bpf<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
        r.unwrap_or_else(|e| {
            panic!("creating a BPF map (run as root, as `cargo xtask test` does): {e}")
        })
    }

    #[test]
    fn a_per_cpu_map_reads_as_aya_walks_it() {
        let n = cpus();
        let mut map: PerCpuHashMap<_, StragglerKey, StragglerStats> =
            need_bpf(PerCpuHashMap::create(4096, 0));
        // More entries than a first chunk, keys of 20 bytes (not a multiple
        // of 8), a different value on every CPU.
        for i in 0..1000u32 {
            let mut comm = [0u8; 16];
            comm[..4].copy_from_slice(&i.to_le_bytes());
            let key = StragglerKey { pid: i * 7, comm };
            let values = PerCpuValues::try_from(
                (0..n as u64)
                    .map(|cpu| StragglerStats {
                        count: u64::from(i),
                        tts_ns: cpu,
                        late_ns: u64::from(i) * 1000 + cpu,
                    })
                    .collect::<Vec<_>>(),
            )
            .expect("one value per CPU");
            map.insert(key, values, 0).expect("insert");
        }
        let mut reader = BatchReader::<StragglerKey, StragglerStats>::default();
        let read = |reader: &mut BatchReader<_, _>, map: &PerCpuHashMap<_, _, _>| {
            let mut entries = Vec::new();
            reader
                .for_each(map.map().fd().as_fd(), n, |k: &StragglerKey, v| {
                    entries.push((*k, v.to_vec()))
                })
                .expect("batch read");
            entries
        };
        let entries = read(&mut reader, &map);
        assert_eq!(entries.len(), 1000);
        let walked: std::collections::HashMap<(u32, [u8; 16]), Vec<StragglerStats>> = map
            .iter()
            .map(|e| e.expect("walk"))
            .map(|(k, v)| ((k.pid, k.comm), v.iter().copied().collect()))
            .collect();
        for (k, v) in &entries {
            assert_eq!(walked.get(&(k.pid, k.comm)), Some(v), "pid {}", k.pid);
        }
        // No entry twice: each batch is visited once.
        let distinct: std::collections::HashSet<u32> = entries.iter().map(|(k, _)| k.pid).collect();
        assert_eq!(distinct.len(), 1000);
        // A second read reuses the buffers and sees a deletion.
        map.remove(&entries[0].0).expect("remove");
        assert_eq!(read(&mut reader, &map).len(), 999);
    }

    #[test]
    fn an_empty_and_a_plain_map_read_whole() {
        let mut map: HashMap<_, u32, u64> = need_bpf(HashMap::create(64, 0));
        let mut reader = BatchReader::<u32, u64>::default();
        let mut read = |map: &HashMap<_, u32, u64>| {
            let mut got = Vec::new();
            reader
                .for_each(map.map().fd().as_fd(), 1, |k, v| got.push((*k, v[0])))
                .expect("batch read");
            got
        };
        assert!(read(&map).is_empty());
        for i in 0..50u32 {
            map.insert(i, u64::from(i) << 40, 0).expect("insert");
        }
        let mut got = read(&map);
        got.sort_unstable();
        let want: Vec<(u32, u64)> = (0..50u32).map(|i| (i, u64::from(i) << 40)).collect();
        assert_eq!(got, want);
    }
}
