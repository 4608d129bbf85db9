//! Finds the interpreter in a process and its collection probes: USDT
//! notes, or uprobes on `gc_collect_main` where there are none.

use std::path::Path;

use crate::{
    discovery::{Binary, Discovered, DiscoveryError, ProbeAttach, Process, ProgramArg, cache},
    probes::{
        symbols,
        usdt::{self, UsdtProbe},
    },
    runtimes::Runtime,
};

/// The collector's main function, probed where there are no USDT notes.
const FALLBACK_FUNCTION: &str = "gc_collect_main";

/// The entry and return programs of the fallback.
pub(super) const FALLBACK_PROGRAMS: [&str; 2] = ["cpython_fallback_start", "cpython_fallback_done"];

/// (provider, name, BPF program, whether the program reads argument 0).
pub(super) const PROBES: [(&str, &str, &str, bool); 2] = [
    ("python", "gc__start", "cpython_gc_start", true),
    ("python", "gc__done", "cpython_gc_done", false),
];

/// Returns the CPython target in `process`, or `None` if it runs no CPython.
pub fn detect(process: &Process) -> Result<Option<Discovered>, DiscoveryError> {
    // A shared interpreter (Debian's `python3.x` links it statically, most
    // distributions' `libpython3.x.so` builds and embedders load it) wins
    // over the executable, which then is only a thin `main`.
    let (binary, named_python) = match process.find_mapped(is_libpython) {
        Some(lib) => (Binary::open_mapped(process, lib)?, true),
        // Named without the ` (deleted)` of an executable replaced on disk.
        None => match Binary::open_exe(process) {
            Ok(exe) => {
                let named = is_python_exe(exe.shown());
                (exe, named)
            }
            Err(_) if !is_python_exe(&process.exe) => return Ok(None),
            Err(e) => return Err(e),
        },
    };
    let notes = match cache::usdt_notes(&binary) {
        Ok(notes) => notes,
        // Not our business unless it claims to be Python.
        Err(_) if !named_python => return Ok(None),
        Err(e) => {
            return Err(DiscoveryError::Probes {
                path: binary.shown().to_path_buf(),
                source: Box::new(e.without_path()),
            });
        }
    };
    let has_python_notes = notes.iter().any(|n| n.provider == "python");
    if !has_python_notes && !named_python {
        return Ok(None);
    }
    let mut probes = Vec::new();
    for (provider, name, program, reads_arg) in PROBES {
        let found: Vec<&UsdtProbe> = usdt::find(&notes, provider, name).collect();
        if found.is_empty() {
            if let Some(probes) = fallback_probes(&binary) {
                log::warn!(
                    "pid {}: {} has no USDT probe {provider}:{name} (built without \
                     --with-dtrace); timing collections with uprobes on {FALLBACK_FUNCTION} \
                     instead, which misses collections in inlined copies of it",
                    process.pid,
                    binary
                );
                return Ok(Some(target(process, &binary, probes)));
            }
            return Err(DiscoveryError::MissingProbe {
                pid: process.pid,
                runtime: Runtime::CPython.label(),
                library: binary.shown().to_path_buf(),
                probe: format!("{provider}:{name}"),
                hint: "this Python was built without DTrace/SystemTap probes \
                       (./configure --with-dtrace) and its symbol table does not name \
                       gc_collect_main either; Debian's and Ubuntu's python3.x \
                       packages and Fedora's have the probes, pyenv and python.org \
                       builds usually do not",
            });
        }
        for note in found {
            probes.push(ProbeAttach::from_usdt(note, program, &binary, reads_arg)?);
        }
    }
    Ok(Some(target(process, &binary, probes)))
}

fn target(process: &Process, binary: &Binary, probes: Vec<ProbeAttach>) -> Discovered {
    Discovered {
        process: process.clone(),
        runtime: Runtime::CPython,
        version: python_version(binary.shown()).unwrap_or_else(|| "unknown".to_string()),
        probes,
    }
}

/// Entry and return uprobes on `gc_collect_main`, if the file names it.
fn fallback_probes(binary: &Binary) -> Option<Vec<ProbeAttach>> {
    let found = cache::parsed(binary, "CPython's gc_collect_main", || {
        symbols::find_functions(binary.path(), &[FALLBACK_FUNCTION])
    })
    .ok()?;
    let f = found.first()?;
    let probe = |program, what: &str| ProbeAttach {
        program,
        probe: format!("{FALLBACK_FUNCTION} ({what})"),
        binary: binary.clone(),
        file_offset: f.file_offset,
        ref_ctr_offset: None,
        arg: ProgramArg::None,
    };
    Some(vec![
        probe(FALLBACK_PROGRAMS[0], "entry"),
        probe(FALLBACK_PROGRAMS[1], "return"),
    ])
}

fn is_libpython(name: &str) -> bool {
    name.starts_with("libpython3") && name.contains(".so")
}

fn is_python_exe(exe: &Path) -> bool {
    exe.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("python"))
}

/// `3.11` from `python3.11`, `libpython3.11.so.1.0` or `libpython3.12d.so`.
fn python_version(binary: &Path) -> Option<String> {
    let name = binary.file_name()?.to_str()?;
    let rest = name
        .strip_prefix("lib")
        .unwrap_or(name)
        .strip_prefix("python")?;
    let mut parts = rest.split('.');
    let major = parts
        .next()
        .filter(|p| p.chars().all(|c| c.is_ascii_digit()))?;
    let minor: String = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (!major.is_empty() && !minor.is_empty()).then(|| format!("{major}.{minor}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_file_names() {
        let v = |s: &str| python_version(Path::new(s));
        assert_eq!(v("/usr/bin/python3.11").as_deref(), Some("3.11"));
        assert_eq!(
            v("/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0").as_deref(),
            Some("3.11")
        );
        assert_eq!(v("libpython3.12d.so").as_deref(), Some("3.12"));
        assert_eq!(v("/usr/bin/python3"), None);
        assert_eq!(v("/usr/bin/node"), None);
        assert!(is_libpython("libpython3.11.so.1.0"));
        assert!(!is_libpython("libpythonic.so"));
    }

    #[test]
    fn finds_the_probes_of_debians_python() {
        let child = crate::runtimes::test_interpreter::Interpreter::start(
            "/usr/bin/python3.11",
            &["-c", "import sys; print(flush=True); sys.stdin.read()"],
        );
        let found = detect(&Process::inspect(child.pid()).unwrap());
        drop(child);
        let t = found.unwrap().expect("python3.11 is CPython");
        assert_eq!(t.runtime, Runtime::CPython);
        assert_eq!(t.version, "3.11");
        let start: Vec<_> = t
            .probes
            .iter()
            .filter(|p| p.probe == "python:gc__start")
            .collect();
        assert!(!start.is_empty());
        // Debian's build guards the probes with semaphores.
        assert!(t.probes.iter().all(|p| p.ref_ctr_offset.is_some()));
        assert!(
            start
                .iter()
                .all(|p| matches!(p.arg, ProgramArg::Usdt(a) if a.size == 4))
        );
    }
}
