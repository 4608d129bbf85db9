//! What detection parsed out of a runtime's file, kept per file so that a
//! later process of the same file skips the parse.
//!
//! Every process of one runtime maps the same few files (`libjvm.so`, a
//! `node`, a Go executable), and what detection reads from them (USDT
//! notes, symbols, a version string, checked probe sites) depends on the
//! file alone. Only that is kept here: anything that depends on a process
//! (its load address, its memory, its view of the file system) is worked
//! out again for each process by the caller.
//!
//! A file is known by its [`FileId`], taken from the open file itself
//! (`fstat`), so a file replaced or rewritten since is a new entry. The
//! cache holds a few dozen entries and evicts the least recently used one;
//! errors are not kept (they are rare, some are transient, such as a failed
//! `mmap`, and most error types cannot be cloned).

use std::{
    any::{Any, TypeId},
    fs::Metadata,
    os::unix::fs::MetadataExt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use super::Binary;
use crate::probes::usdt::{self, UsdtError, UsdtProbe};

/// How many parse results the agent keeps: each runtime has one to three
/// per file, and a host rarely runs more than a handful of runtime builds.
pub const CAPACITY: usize = 48;

/// The cache [`parsed`] uses.
static PARSED: ParseCache = ParseCache::new(CAPACITY);

/// Which file a parse was of: the same (device, inode) with the same size
/// and modification and change times (to the nanosecond) has the same
/// contents. The change time is there because `cp -p` or `touch -r` can
/// give rewritten contents the old modification time, but not the old
/// change time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileId {
    /// The identity of the file `meta` describes.
    pub fn of(meta: &Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// What was parsed, of which file: the name tells parses of one file
/// apart (its USDT notes, its symbols), the type guards against two
/// callers that use one name for different results.
type Key = (FileId, &'static str, TypeId);

struct Entry {
    key: Key,
    value: Arc<dyn Any + Send + Sync>,
    /// The `clock` of the last lookup that returned this entry.
    used: u64,
    /// Lookups answered from this entry.
    hits: u64,
}

#[derive(Default)]
struct Inner {
    entries: Vec<Entry>,
    clock: u64,
    hits: u64,
    misses: u64,
}

/// Hit and miss counts of a cache since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that parsed (errors included).
    pub misses: u64,
    /// Entries held now.
    pub entries: usize,
}

/// A bounded, thread-safe memo of parse results per (file, what).
pub struct ParseCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

impl ParseCache {
    /// An empty cache of at most `capacity` entries.
    pub const fn new(capacity: usize) -> ParseCache {
        ParseCache {
            capacity,
            inner: Mutex::new(Inner {
                entries: Vec::new(),
                clock: 0,
                hits: 0,
                misses: 0,
            }),
        }
    }

    /// The result of `parse` for `what` of `binary`: the one kept from an
    /// earlier parse of the same file, or `parse`'s, which is kept if it
    /// is `Ok` and the file did not change while it ran.
    pub fn get_or_parse<T, E>(
        &self,
        binary: &Binary,
        what: &'static str,
        parse: impl FnOnce() -> Result<T, E>,
    ) -> Result<Arc<T>, E>
    where
        T: Any + Send + Sync,
    {
        // Without an identity there is nothing to key on: parse as before.
        let Some(id) = binary.file_id() else {
            return parse().map(Arc::new);
        };
        let key = (id, what, TypeId::of::<T>());
        if let Some(value) = self.lookup::<T>(&key) {
            #[cfg(test)]
            ON_THIS_THREAD.with(|n| n.set((n.get().0 + 1, n.get().1)));
            log::debug!("parse cache: hit, {what} of {binary}");
            return Ok(value);
        }
        log::debug!("parse cache: miss, parsing {what} of {binary}");
        // Parsed without the lock: a node's symbols take tens of
        // milliseconds, and other files' lookups need not wait for them.
        // Two threads missing at once both parse; the results are equal.
        #[cfg(test)]
        ON_THIS_THREAD.with(|n| n.set((n.get().0, n.get().1 + 1)));
        let value = Arc::new(parse()?);
        // A file written to while it was parsed may have been read half
        // old, half new: such a result is returned but not kept.
        if binary.file_id() == Some(id) {
            self.insert(key, value.clone());
        }
        Ok(value)
    }

    /// Hits, misses and entries so far.
    pub fn stats(&self) -> CacheStats {
        let inner = self.lock();
        CacheStats {
            hits: inner.hits,
            misses: inner.misses,
            entries: inner.entries.len(),
        }
    }

    /// Lookups of `what` of `binary` answered from the cache, if it holds
    /// an entry for it.
    pub fn hits_of<T: Any>(&self, binary: &Binary, what: &'static str) -> Option<u64> {
        let key = (binary.file_id()?, what, TypeId::of::<T>());
        let inner = self.lock();
        inner.entries.iter().find(|e| e.key == key).map(|e| e.hits)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The lock is held only around plain bookkeeping, which does not
        // panic; should a thread die in it anyway, the entries are whole.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lookup<T: Any + Send + Sync>(&self, key: &Key) -> Option<Arc<T>> {
        let mut inner = self.lock();
        inner.clock += 1;
        let clock = inner.clock;
        let found = inner.entries.iter_mut().find(|e| e.key == *key);
        let value = found.and_then(|e| {
            e.used = clock;
            e.hits += 1;
            // The key holds T's TypeId, so this always succeeds.
            e.value.clone().downcast::<T>().ok()
        });
        if value.is_some() {
            inner.hits += 1;
        } else {
            inner.misses += 1;
        }
        value
    }

    fn insert(&self, key: Key, value: Arc<dyn Any + Send + Sync>) {
        let mut inner = self.lock();
        inner.clock += 1;
        let used = inner.clock;
        if let Some(e) = inner.entries.iter_mut().find(|e| e.key == key) {
            e.value = value;
            e.used = used;
            return;
        }
        if inner.entries.len() >= self.capacity {
            let oldest = inner
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.used)
                .map(|(i, _)| i);
            if let Some(i) = oldest {
                inner.entries.swap_remove(i);
            }
        }
        if self.capacity > 0 {
            inner.entries.push(Entry {
                key,
                value,
                used,
                hits: 0,
            });
        }
    }
}

/// The agent's cache: [`ParseCache::get_or_parse`] on one cache for all
/// runtimes.
pub fn parsed<T, E>(
    binary: &Binary,
    what: &'static str,
    parse: impl FnOnce() -> Result<T, E>,
) -> Result<Arc<T>, E>
where
    T: Any + Send + Sync,
{
    PARSED.get_or_parse(binary, what, parse)
}

/// Hits, misses and entries of the agent's cache.
pub fn stats() -> CacheStats {
    PARSED.stats()
}

#[cfg(test)]
thread_local! {
    /// (hits, parses) of this thread's lookups in any cache, for tests
    /// that check what a detection took from the cache (per thread: other
    /// tests run in parallel on the same cache).
    static ON_THIS_THREAD: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
}

/// What [`usdt_notes`] keeps its results under.
const USDT_NOTES: &str = "USDT notes";

/// The USDT notes of `binary` ([`usdt::read_usdt_probes`]), parsed once per
/// file for every runtime that reads them.
pub fn usdt_notes(binary: &Binary) -> Result<Arc<Vec<UsdtProbe>>, UsdtError> {
    parsed(binary, USDT_NOTES, || usdt::read_usdt_probes(binary.path()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{cell::Cell, path::PathBuf, time::Duration};

    fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pausewatch-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// A "parse" that reads the file and counts its calls.
    fn read_counted(binary: &Binary, calls: &Cell<u32>) -> Result<Vec<u8>, std::io::Error> {
        calls.set(calls.get() + 1);
        std::fs::read(binary.path())
    }

    #[test]
    fn a_second_lookup_of_the_same_file_is_not_parsed_again() {
        let cache = ParseCache::new(4);
        let path = temp_file("same", b"contents");
        let calls = Cell::new(0);
        let first = Binary::open_path(&path).unwrap();
        let a = cache
            .get_or_parse(&first, "bytes", || read_counted(&first, &calls))
            .unwrap();
        // Another open of the same file, as a second process's would be.
        let second = Binary::open_path(&path).unwrap();
        assert!(!first.same_file(&second));
        let b = cache
            .get_or_parse(&second, "bytes", || read_counted(&second, &calls))
            .unwrap();
        assert_eq!(calls.get(), 1);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(*b, b"contents");
        assert_eq!(
            cache.stats(),
            CacheStats {
                hits: 1,
                misses: 1,
                entries: 1
            }
        );
        assert_eq!(cache.hits_of::<Vec<u8>>(&second, "bytes"), Some(1));
        // Another parse of the same file is kept apart.
        let len = cache
            .get_or_parse(&second, "length", || {
                calls.set(calls.get() + 1);
                Ok::<_, std::io::Error>(b.len())
            })
            .unwrap();
        assert_eq!((*len, calls.get()), (8, 2));
    }

    #[test]
    fn a_rewritten_file_is_parsed_again() {
        let cache = ParseCache::new(4);
        let path = temp_file("rewritten", b"old");
        let calls = Cell::new(0);
        let old = Binary::open_path(&path).unwrap();
        let a = cache
            .get_or_parse(&old, "bytes", || read_counted(&old, &calls))
            .unwrap();
        // Same inode, new contents of the same size: only the times differ
        // (set the modification time back to be sure it is the change
        // time that tells them apart).
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::thread::sleep(Duration::from_millis(5));
        std::fs::write(&path, b"new").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let same_size = Binary::open_path(&path).unwrap();
        let b = cache
            .get_or_parse(&same_size, "bytes", || read_counted(&same_size, &calls))
            .unwrap();
        assert_eq!(
            (a.as_slice(), b.as_slice(), calls.get()),
            (&b"old"[..], &b"new"[..], 2)
        );
        // And a longer one.
        std::fs::write(&path, b"newer").unwrap();
        let longer = Binary::open_path(&path).unwrap();
        let c = cache
            .get_or_parse(&longer, "bytes", || read_counted(&longer, &calls))
            .unwrap();
        assert_eq!((c.as_slice(), calls.get()), (&b"newer"[..], 3));
        // The old file's open descriptor now reads the new contents too:
        // it is looked up by what the file is now.
        let d = cache
            .get_or_parse(&old, "bytes", || read_counted(&old, &calls))
            .unwrap();
        assert!(Arc::ptr_eq(&c, &d), "{d:?}");
        assert_eq!(calls.get(), 3);
    }

    #[test]
    fn different_files_are_kept_apart_and_the_least_recently_used_goes() {
        let cache = ParseCache::new(2);
        let calls = Cell::new(0);
        let files: Vec<Binary> = ["one", "two", "three"]
            .iter()
            .map(|n| Binary::open_path(&temp_file(n, n.as_bytes())).unwrap())
            .collect();
        let get = |b: &Binary| {
            cache
                .get_or_parse(b, "bytes", || read_counted(b, &calls))
                .unwrap()
        };
        assert_eq!(*get(&files[0]), b"one");
        assert_eq!(*get(&files[1]), b"two");
        assert_eq!(*get(&files[0]), b"one");
        assert_eq!(calls.get(), 2);
        // A third file evicts "two", the one used least recently.
        assert_eq!(*get(&files[2]), b"three");
        assert_eq!(calls.get(), 3);
        assert_eq!(*get(&files[0]), b"one");
        assert_eq!(calls.get(), 3);
        assert_eq!(*get(&files[1]), b"two");
        assert_eq!(calls.get(), 4);
        assert_eq!(cache.stats().entries, 2);
    }

    /// Two python3.11 processes: the second one's detection parses
    /// nothing and yields the same probes, on its own open file.
    #[test]
    fn a_second_process_of_a_file_is_detected_from_the_cache() {
        let detect = || {
            let child = crate::runtimes::test_interpreter::Interpreter::start(
                "/usr/bin/python3.11",
                &["-c", "import sys; print(flush=True); sys.stdin.read()"],
            );
            let before = ON_THIS_THREAD.with(|n| n.get());
            let found = crate::discovery::detect(child.pid()).unwrap();
            let after = ON_THIS_THREAD.with(|n| n.get());
            ((found, (after.0 - before.0, after.1 - before.1)), child)
        };
        let ((first, _), first_child) = detect();
        let ((second, (hits, parses)), second_child) = detect();
        drop((first_child, second_child));
        // Go's look at the executable and CPython's notes.
        assert_eq!(
            (hits, parses),
            (2, 0),
            "(hits, parses) of the second detection"
        );
        assert_eq!(
            (first.runtime, &first.version),
            (crate::runtimes::Runtime::CPython, &"3.11".to_string())
        );
        assert_eq!(
            (second.runtime, &second.version),
            (first.runtime, &first.version)
        );
        let sites = |d: &crate::discovery::Discovered| -> Vec<crate::discovery::ProbeSite> {
            d.probes.iter().cloned().map(Into::into).collect()
        };
        assert!(!first.probes.is_empty());
        assert_eq!(sites(&first), sites(&second));
        // Each process's probes hold its own open file.
        assert!(
            second
                .probes
                .iter()
                .all(|p| !p.binary.same_file(&first.probes[0].binary)
                    && p.binary.path().starts_with("/proc/self/fd/"))
        );
        assert!(
            PARSED
                .hits_of::<Vec<UsdtProbe>>(&second.probes[0].binary, USDT_NOTES)
                .is_some_and(|n| n >= 1)
        );
    }

    #[test]
    fn errors_are_not_kept() {
        let cache = ParseCache::new(2);
        let binary = Binary::open_path(&temp_file("error", b"x")).unwrap();
        let calls = Cell::new(0);
        for _ in 0..2 {
            let r = cache.get_or_parse(&binary, "failing", || {
                calls.set(calls.get() + 1);
                Err::<u8, _>("broken")
            });
            assert_eq!(r.unwrap_err(), "broken");
        }
        assert_eq!((calls.get(), cache.stats().entries), (2, 0));
    }
}
