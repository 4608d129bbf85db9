//! Finds `libjvm.so` in a process and the USDT probes to attach.

use std::path::Path;

use crate::{
    discovery::{Binary, Discovered, DiscoveryError, ProbeAttach, Process, cache},
    probes::usdt::{self, UsdtProbe},
    runtimes::Runtime,
};

/// (provider, name, BPF program, whether the program reads argument 0).
pub(super) const PROBES: [(&str, &str, &str, bool); 6] = [
    (
        "hs_private",
        "safepoint__begin",
        "hotspot_safepoint_begin",
        false,
    ),
    (
        "hs_private",
        "safepoint__end",
        "hotspot_safepoint_end",
        false,
    ),
    ("hotspot", "vmops__begin", "hotspot_vmop_begin", true),
    ("hotspot", "vmops__end", "hotspot_vmop_end", true),
    ("hotspot", "gc__begin", "hotspot_gc_begin", true),
    ("hotspot", "gc__end", "hotspot_gc_end", false),
];

/// (provider, name, BPF program) of the memory-pool probes, whose programs
/// read every argument (`ebpf/src/heap.rs`). Optional: a JVM without them
/// is still traced, only without heap series.
pub(super) const HEAP_PROBES: [(&str, &str, &str); 2] = [
    (
        "hotspot",
        "mem__pool__gc__begin",
        "hotspot_mem_pool_gc_begin",
    ),
    ("hotspot", "mem__pool__gc__end", "hotspot_mem_pool_gc_end"),
];

/// Returns the HotSpot target in `process`, or `None` if no `libjvm.so` is mapped.
pub fn detect(process: &Process) -> Result<Option<Discovered>, DiscoveryError> {
    let Some(mapping) = process.find_mapped(|n| n == "libjvm.so") else {
        return Ok(None);
    };
    let libjvm = Binary::open_mapped(process, mapping)?;
    let notes = cache::usdt_notes(&libjvm).map_err(|e| DiscoveryError::Probes {
        path: libjvm.shown().to_path_buf(),
        source: Box::new(e.without_path()),
    })?;
    let mut probes = Vec::new();
    for (provider, name, program, reads_arg) in PROBES {
        let found: Vec<&UsdtProbe> = usdt::find(&notes, provider, name).collect();
        if found.is_empty() {
            return Err(DiscoveryError::MissingProbe {
                pid: process.pid,
                runtime: Runtime::HotSpot.label(),
                library: libjvm.shown().to_path_buf(),
                probe: format!("{provider}:{name}"),
                hint: "this JVM was built without DTrace/SystemTap probes \
                       (--enable-dtrace); OpenJDK packages of Debian, Ubuntu, Fedora \
                       and Temurin have them",
            });
        }
        for note in found {
            probes.push(ProbeAttach::from_usdt(note, program, &libjvm, reads_arg)?);
        }
    }
    for (provider, name, program) in HEAP_PROBES {
        let found: Vec<&UsdtProbe> = usdt::find(&notes, provider, name).collect();
        if found.is_empty() {
            log::debug!(
                "pid {}: no {provider}:{name} in {}: no heap series",
                process.pid,
                libjvm.shown().display()
            );
        }
        for note in found {
            // Optional like the probes themselves: an argument this agent
            // cannot decode costs the heap series, not the target.
            match ProbeAttach::from_usdt_all(note, program, &libjvm) {
                Ok(p) => probes.push(p),
                Err(e) => log::debug!("pid {}: {provider}:{name} skipped: {e}", process.pid),
            }
        }
    }
    Ok(Some(Discovered {
        process: process.clone(),
        runtime: Runtime::HotSpot,
        version: jdk_version(process.pid, &libjvm),
        probes,
    }))
}

/// The JDK's version, from the `release` file beside the very `libjvm.so`
/// the process runs; `unknown` when that file is no longer where the JVM
/// found it (deleted or replaced, as by a package upgrade: the `release`
/// now there may describe the successor) or lies where the agent cannot
/// see it. Read for each process, not cached with the notes: the path is
/// the process's view of the file system, and it is one small file.
fn jdk_version(pid: u32, libjvm: &Binary) -> String {
    let found = libjvm.reachable().and_then(java_version);
    if found.is_none() {
        log::debug!("pid {pid}: JDK version unknown: no release file beside {libjvm}");
    }
    found.unwrap_or_else(|| "unknown".to_string())
}

/// The `JAVA_VERSION` of the JDK that `libjvm` belongs to, from its `release`
/// file (`<home>/lib/server/libjvm.so` → `<home>/release`; JDK 8 keeps it
/// one level further up, under `jre/`).
fn java_version(libjvm: &Path) -> Option<String> {
    libjvm.ancestors().skip(1).take(5).find_map(|dir| {
        let text = std::fs::read_to_string(dir.join("release")).ok()?;
        text.lines().find_map(|l| {
            l.strip_prefix("JAVA_VERSION=")
                .map(|v| v.trim().trim_matches('"').to_string())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_jdk_release_file() {
        let v = java_version(Path::new(
            "/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so",
        ));
        assert!(v.as_deref().is_some_and(|v| v.starts_with("17")), "{v:?}");
        let v = java_version(Path::new(
            "/usr/lib/jvm/temurin-25-jdk-amd64/lib/server/libjvm.so",
        ));
        assert!(v.as_deref().is_some_and(|v| v.starts_with("25")), "{v:?}");
    }
}
