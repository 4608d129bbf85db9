//! Turns the cause ids recorded in BPF into text.
//!
//! BPF stores what is cheap to get at the probe (for HotSpot, the address of
//! the VM operation's name, a static string in libjvm); userspace reads the
//! text once per (process, address) with `process_vm_readv` and caches it;
//! once the process is gone, from the file behind that address
//! ([`FileBacking`]).

use std::collections::{HashMap, HashSet};

use pausewatch_common::Kind;

use super::FileBacking;
use crate::{
    discovery::process::read_memory,
    runtimes::{CauseText, Runtime},
};

/// Longest name read from a target.
const MAX_NAME: usize = 128;

/// Cache of resolved causes.
#[derive(Default)]
pub struct CauseResolver {
    cache: HashMap<(u32, u64), String>,
    /// Per process, the files its names can be read from when its memory
    /// cannot.
    backing: HashMap<u32, FileBacking>,
    /// Processes known to have exited: their pid may name another process
    /// by now, whose memory must not be taken for theirs.
    gone: HashSet<u32>,
}

impl CauseResolver {
    /// Reads `pid`'s names from `backing` when its memory cannot be read.
    pub fn set_backing(&mut self, pid: u32, backing: FileBacking) {
        self.gone.remove(&pid);
        self.backing.insert(pid, backing);
    }

    /// Notes that `pid` exited: from now on its names come from its files.
    pub fn exited(&mut self, pid: u32) {
        self.gone.insert(pid);
    }

    /// Up to `buf.len()` bytes at `addr` as `pid` sees them: from its
    /// memory while it runs, else from the file a read-only mapping of its
    /// had there.
    fn read(&self, pid: u32, addr: u64, buf: &mut [u8]) -> Option<usize> {
        if !self.gone.contains(&pid)
            && let Some(n) = read_memory(pid, addr, buf)
        {
            return Some(n);
        }
        let n = self.backing.get(&pid)?.read(addr, buf)?;
        log::debug!("pid {pid}: {n} bytes at {addr:#x} read from its files");
        Some(n)
    }

    /// Text for `cause` recorded for a `kind` pause in `pid`, which runs `runtime`.
    pub fn resolve(
        &mut self,
        pid: u32,
        runtime: Option<Runtime>,
        kind: Kind,
        cause: u64,
    ) -> String {
        let Some(runtime) = runtime else {
            return format!("{cause:#x}");
        };
        match runtime.module().cause(kind, cause) {
            CauseText::Known(text) => text,
            CauseText::Bytes { addr, len } => self.resolve_go_string(pid, cause, addr, len),
            CauseText::CString(addr) => {
                if let Some(text) = self.cache.get(&(pid, cause)) {
                    return text.clone();
                }
                match read_c_string(|a, buf| self.read(pid, a, buf), addr) {
                    Some(text) => {
                        let text = runtime.module().cause_from_target(text);
                        self.cache.insert((pid, cause), text.clone());
                        text
                    }
                    // Not cached: the process may be gone now but a retry is cheap.
                    None => format!("unresolved_{addr:#x}"),
                }
            }
        }
    }

    /// The NUL-terminated name at `addr` in `pid` (a HotSpot memory pool's
    /// or manager's), cached like the causes; `None` while it cannot be read.
    pub fn c_string(&mut self, pid: u32, addr: u64) -> Option<String> {
        if let Some(text) = self.cache.get(&(pid, addr)) {
            return Some(text.clone());
        }
        let text = read_c_string(|a, buf| self.read(pid, a, buf), addr)?;
        self.cache.insert((pid, addr), text.clone());
        Some(text)
    }

    /// A Go string (not NUL-terminated): exactly `len` bytes at `addr`.
    fn resolve_go_string(&mut self, pid: u32, cause: u64, addr: u64, len: usize) -> String {
        if let Some(text) = self.cache.get(&(pid, cause)) {
            return text.clone();
        }
        let mut buf = vec![0u8; len.min(MAX_NAME)];
        let text = self
            .read(pid, addr, &mut buf)
            .filter(|&n| n == buf.len())
            .and_then(|_| std::str::from_utf8(&buf).ok())
            .filter(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_graphic() || c == ' '))
            .map(str::to_string);
        match text {
            Some(text) => {
                self.cache.insert((pid, cause), text.clone());
                text
            }
            None => format!("unresolved_{addr:#x}"),
        }
    }

    /// Drops cached names of a process that is gone.
    pub fn forget(&mut self, pid: u32) {
        self.cache.retain(|(p, _), _| *p != pid);
        self.backing.remove(&pid);
        self.gone.remove(&pid);
    }
}

/// Reads a NUL-terminated string with `read` (another process's memory,
/// or the file behind it).
fn read_c_string(read: impl Fn(u64, &mut [u8]) -> Option<usize>, addr: u64) -> Option<String> {
    let mut buf = [0u8; MAX_NAME];
    // Read up to the end of the page first: a read that crosses into an
    // unmapped page fails as a whole.
    let to_page_end = (4096 - (addr as usize % 4096)).min(MAX_NAME);
    let mut n = read(addr, &mut buf[..to_page_end]).or_else(|| read(addr, &mut buf[..1]))?;
    // A name that runs into the next page (G1's "G1 Old Generation" ends
    // 2 bytes past a page boundary in Debian's JDK 17 libjvm) needs the rest
    // read from there.
    if n == to_page_end && !buf[..n].contains(&0) && n < MAX_NAME {
        n += read(addr + n as u64, &mut buf[n..]).unwrap_or(0);
    }
    let bytes = &buf[..n];
    let end = bytes.iter().position(|&b| b == 0)?;
    let text = std::str::from_utf8(&bytes[..end]).ok()?;
    (!text.is_empty() && text.chars().all(|c| c.is_ascii_graphic() || c == ' '))
        .then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_string_from_a_live_process() {
        static NAME: &[u8] = b"G1CollectForAllocation\0";
        let mut r = CauseResolver::default();
        let me = std::process::id();
        let addr = NAME.as_ptr() as u64;
        assert_eq!(
            r.resolve(me, Some(Runtime::HotSpot), Kind::Safepoint, addr),
            "G1CollectForAllocation"
        );
        assert_eq!(
            r.resolve(me, Some(Runtime::HotSpot), Kind::GcPause, 1),
            "full"
        );
        assert_eq!(
            r.resolve(me, Some(Runtime::HotSpot), Kind::Safepoint, 0),
            "unknown"
        );
        assert!(
            r.resolve(me, Some(Runtime::HotSpot), Kind::Safepoint, 8)
                .starts_with("unresolved_")
        );
    }

    #[test]
    fn reads_a_name_across_a_page_boundary() {
        // Two pages; the name starts 5 bytes before the second.
        let mut pages = vec![0u8; 3 * 4096];
        let base = (pages.as_ptr() as usize).next_multiple_of(4096) - pages.as_ptr() as usize;
        let at = base + 4096 - 5;
        let name = b"G1 Old Generation\0";
        pages[at..at + name.len()].copy_from_slice(name);
        let mut r = CauseResolver::default();
        let addr = pages[at..].as_ptr() as u64;
        assert_eq!(
            r.c_string(std::process::id(), addr).as_deref(),
            Some("G1 Old Generation")
        );
    }

    #[test]
    fn reads_names_from_the_file_once_the_process_is_gone() {
        use crate::discovery::{Binary, Process};
        static POOL: &[u8] = b"G1 Old Generation\0";
        static REASON: &[u8] = b"read mem statsXYZ";
        let me = Process::inspect(std::process::id()).unwrap();
        let exe = Binary::open_exe(&me).unwrap();
        let mapping = me.mapped.iter().find(|m| m.path == me.exe).unwrap();
        let mut backing = FileBacking::default();
        backing.add(&exe, &mapping.read_only);
        let mut r = CauseResolver::default();
        // A pid no process has: only the file can answer.
        let gone = 9_999_999;
        r.set_backing(gone, backing.clone());
        assert_eq!(
            r.c_string(gone, POOL.as_ptr() as u64).as_deref(),
            Some("G1 Old Generation")
        );
        let cause = pausewatch_common::GO_CAUSE_STRING
            | (14 << pausewatch_common::GO_CAUSE_LEN_SHIFT)
            | REASON.as_ptr() as u64;
        assert_eq!(
            r.resolve(gone, Some(Runtime::Go), Kind::Stw, cause),
            "read mem stats"
        );
        // Heap memory is in no file: read while the process runs, not
        // once it exited.
        let heap = b"G1 Young Generation\0G1 Eden Space\0".to_vec();
        r.set_backing(me.pid, backing);
        assert_eq!(
            r.c_string(me.pid, heap.as_ptr() as u64).as_deref(),
            Some("G1 Young Generation")
        );
        r.exited(me.pid);
        assert_eq!(r.c_string(me.pid, heap[20..].as_ptr() as u64), None);
        assert_eq!(
            r.c_string(me.pid, POOL.as_ptr() as u64).as_deref(),
            Some("G1 Old Generation")
        );
        r.forget(me.pid);
        assert!(r.backing.is_empty() || !r.backing.contains_key(&me.pid));
        assert!(r.gone.is_empty());
    }

    #[test]
    fn resolves_go_causes() {
        static REASON: &[u8] = b"read mem statsXYZ";
        let mut r = CauseResolver::default();
        let me = std::process::id();
        let addr = REASON.as_ptr() as u64;
        let cause = pausewatch_common::GO_CAUSE_STRING
            | (14 << pausewatch_common::GO_CAUSE_LEN_SHIFT)
            | addr;
        assert_eq!(
            r.resolve(me, Some(Runtime::Go), Kind::Stw, cause),
            "read mem stats"
        );
        assert_eq!(
            r.resolve(me, Some(Runtime::Go), Kind::Stw, 2),
            "GC sweep termination"
        );
        assert_eq!(r.resolve(me, Some(Runtime::Go), Kind::Stw, 0), "unknown");
        assert_eq!(
            r.resolve(me, Some(Runtime::Go), Kind::Stw, 99),
            "stw_reason_99"
        );
    }
}
