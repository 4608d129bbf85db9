//! A uprobe target inside the agent itself, so that `agent check` and the
//! start of `agent run` can prove that this kernel lets the agent attach
//! uprobes with its privileges, without touching any other process.

use std::{io, path::PathBuf};

use procfs::process::{MMapPath, Process};

/// Never called while a self-test probe is attached; it only has to exist
/// as code in the agent's own executable.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn pausewatch_uprobe_self_test_point() -> u64 {
    std::hint::black_box(0x5e1f_7e57)
}

/// The agent's executable as mapped (host path) and the file offset of
/// [`pausewatch_uprobe_self_test_point`] in it, found through
/// `/proc/self/maps` so that no symbol table is needed.
pub fn probe_point() -> io::Result<(PathBuf, u64)> {
    let addr = pausewatch_uprobe_self_test_point as *const () as u64;
    let maps = Process::myself()
        .and_then(|p| p.maps())
        .map_err(|e| io::Error::other(format!("reading /proc/self/maps: {e}")))?;
    for m in maps {
        let (start, end) = m.address;
        if (start..end).contains(&addr)
            && let MMapPath::Path(path) = m.pathname
        {
            return Ok((path, addr - start + m.offset));
        }
    }
    Err(io::Error::other(format!(
        "no file mapping in /proc/self/maps contains the agent's own code at {addr:#x}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_points_at_the_function_bytes() {
        let (path, offset) = probe_point().unwrap();
        let file = std::fs::read(&path).unwrap();
        let addr = pausewatch_uprobe_self_test_point as *const () as *const u8;
        // SAFETY: the function's code is mapped and readable; 8 bytes of a
        // function body (or the padding after it) are in the same mapping.
        let code = unsafe { std::slice::from_raw_parts(addr, 8) };
        let off = offset as usize;
        assert_eq!(&file[off..off + 8], code, "{}+{offset:#x}", path.display());
    }
}
