//! Finds the V8 heap's collector functions in `node` (or a mapped
//! `libnode.so`, as Debian builds it) by demangled name.

use std::path::Path;

use object::{Object, ObjectSection};

use crate::discovery::{
    Binary, Discovered, DiscoveryError, ProbeAttach, Process, ProgramArg, cache,
};
use crate::probes::{
    elf::{self, MappedFile},
    symbols,
};
use crate::runtimes::Runtime;

/// (demangled qualified name, BPF program).
pub(super) const PROBES: [(&str, &str); 3] = [
    (
        "v8::internal::GCTracer::StartObservablePause",
        "v8_pause_begin",
    ),
    (
        "v8::internal::Heap::PerformGarbageCollection",
        "v8_collector",
    ),
    (
        "v8::internal::GCTracer::StopObservablePause",
        "v8_pause_end",
    ),
];

/// Returns the V8 target in `process`, or `None` if it runs no V8.
pub fn detect(process: &Process) -> Result<Option<Discovered>, DiscoveryError> {
    let (binary, named_node) = match process.find_mapped(|n| n.starts_with("libnode.so")) {
        Some(lib) => (Binary::open_mapped(process, lib)?, true),
        // Named without the ` (deleted)` of an executable replaced on disk.
        None => match Binary::open_exe(process) {
            Ok(exe) => {
                let named = is_node_exe(exe.shown());
                (exe, named)
            }
            Err(_) if !is_node_exe(&process.exe) => return Ok(None),
            Err(e) => return Err(e),
        },
    };
    let wanted: Vec<&str> = PROBES.iter().map(|(name, _)| *name).collect();
    let found = match cache::parsed(&binary, "V8's collector functions", || {
        symbols::find_functions(binary.path(), &wanted)
    }) {
        Ok(found) => found,
        Err(_) if !named_node => return Ok(None),
        Err(e) => {
            return Err(DiscoveryError::Proc {
                pid: process.pid,
                message: e.to_string(),
            });
        }
    };
    if found.is_empty() && !named_node {
        return Ok(None);
    }
    let mut probes = Vec::new();
    for (name, program) in PROBES {
        let sites: Vec<_> = found.iter().filter(|f| f.name == name).collect();
        if sites.is_empty() {
            return Err(DiscoveryError::MissingProbe {
                pid: process.pid,
                runtime: Runtime::V8.label(),
                library: binary.shown().to_path_buf(),
                probe: name.to_string(),
                hint: "this Node.js does not export the V8 heap function the agent \
                       probes (stripped of its dynamic symbols, or a V8 version whose \
                       collector entry points differ); Node.js 18 to 20 builds of \
                       nodejs.org, NodeSource and Debian export them",
            });
        }
        for f in sites {
            probes.push(ProbeAttach {
                program,
                probe: name.to_string(),
                binary: binary.clone(),
                file_offset: f.file_offset,
                ref_ctr_offset: None,
                arg: ProgramArg::None,
            });
        }
    }
    Ok(Some(Discovered {
        process: process.clone(),
        runtime: Runtime::V8,
        version: cache::parsed(&binary, "V8's version", || v8_version(binary.path()))
            .ok()
            .and_then(|v| (*v).clone())
            .unwrap_or_else(|| "unknown".to_string()),
        probes,
    }))
}

fn is_node_exe(exe: &Path) -> bool {
    exe.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n == "node" || n == "nodejs")
}

/// V8's version string as Node.js embeds it (`11.3.244.8-node.38`, the
/// `process.versions.v8` of that binary), found in its `.rodata` (a tenth
/// of the binary, so the scan stays well under the attach time). A file
/// that cannot be mapped is an error (perhaps a passing one, so not kept
/// in the cache); one without the string is `None`.
fn v8_version(binary: &Path) -> std::io::Result<Option<String>> {
    let map = MappedFile::open(binary)?;
    let Ok(elf) = elf::parse_elf64(map.data()) else {
        return Ok(None);
    };
    let rodata = elf.section_by_name(".rodata").and_then(|s| s.data().ok());
    Ok(rodata.and_then(find_v8_version))
}

fn find_v8_version(data: &[u8]) -> Option<String> {
    const MARK: &[u8] = b"-node.";
    for pos in memchr::memmem::find_iter(data, MARK) {
        let start = data[..pos]
            .iter()
            .rposition(|b| !(b.is_ascii_digit() || *b == b'.'))
            .map_or(0, |p| p + 1);
        let end = pos
            + MARK.len()
            + data[pos + MARK.len()..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
        let version = std::str::from_utf8(&data[start..end]).ok()?;
        let dots = data[start..pos].iter().filter(|b| **b == b'.').count();
        if dots == 3 && data.get(start).is_some_and(u8::is_ascii_digit) && end > pos + MARK.len() {
            return Some(version.to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_string() {
        assert_eq!(
            find_v8_version(b"xx\x00v8/11.3.244.8-node.38\x00").as_deref(),
            Some("11.3.244.8-node.38")
        );
        assert_eq!(find_v8_version(b"a-node.js 1.2-node.3 "), None);
        assert_eq!(find_v8_version(b""), None);
    }
}
