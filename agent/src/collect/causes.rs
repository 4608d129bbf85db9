//! Turns the cause ids recorded in BPF into text.
//!
//! BPF stores what is cheap to get at the probe (for HotSpot, the address of
//! the VM operation's name, a static string in libjvm); userspace reads the
//! text once per (process, address) with `process_vm_readv` and caches it.

use std::collections::HashMap;

use pausewatch_common::Kind;

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
}

impl CauseResolver {
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
                match read_c_string(pid, addr) {
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
        let text = read_c_string(pid, addr)?;
        self.cache.insert((pid, addr), text.clone());
        Some(text)
    }

    /// A Go string (not NUL-terminated): exactly `len` bytes at `addr`.
    fn resolve_go_string(&mut self, pid: u32, cause: u64, addr: u64, len: usize) -> String {
        if let Some(text) = self.cache.get(&(pid, cause)) {
            return text.clone();
        }
        let mut buf = vec![0u8; len.min(MAX_NAME)];
        let text = read_memory(pid, addr, &mut buf)
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
    }
}

/// Reads a NUL-terminated string from another process's memory.
fn read_c_string(pid: u32, addr: u64) -> Option<String> {
    let mut buf = [0u8; MAX_NAME];
    // Read up to the end of the page first: a read that crosses into an
    // unmapped page fails as a whole.
    let to_page_end = (4096 - (addr as usize % 4096)).min(MAX_NAME);
    let mut n = read_memory(pid, addr, &mut buf[..to_page_end])
        .or_else(|| read_memory(pid, addr, &mut buf[..1]))?;
    // A name that runs into the next page (G1's "G1 Old Generation" ends
    // 2 bytes past a page boundary in Debian's JDK 17 libjvm) needs the rest
    // read from there.
    if n == to_page_end && !buf[..n].contains(&0) && n < MAX_NAME {
        n += read_memory(pid, addr + n as u64, &mut buf[n..]).unwrap_or(0);
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
