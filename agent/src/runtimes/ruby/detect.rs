//! Finds `libruby` in a process and its USDT GC probes.

use pausewatch_common::{ARG_CONST, ArgSpec};

use super::layout;
use crate::{
    discovery::{Binary, Discovered, DiscoveryError, ProbeAttach, Process, ProgramArg, cache},
    probes::usdt::{self, UsdtProbe},
    runtimes::Runtime,
};

/// (provider, name, BPF program); the probes have no argument (what
/// `ruby_mark_end` may get instead is the flags' address, see `layout`).
pub(super) const PROBES: [(&str, &str, &str); 4] = [
    ("ruby", "gc__mark__begin", "ruby_mark_begin"),
    ("ruby", "gc__mark__end", "ruby_mark_end"),
    ("ruby", "gc__sweep__begin", "ruby_sweep_begin"),
    ("ruby", "gc__sweep__end", "ruby_sweep_end"),
];

/// Returns the Ruby target in `process`, or `None` if it maps no libruby.
///
/// Debian's `ruby3.1` executable is a thin `main` linked against
/// `libruby-3.1.so`, which holds the interpreter and its probes; a Ruby
/// built without `--enable-shared` has no such library and is not found.
pub fn detect(process: &Process) -> Result<Option<Discovered>, DiscoveryError> {
    let Some(lib) = process.find_mapped(is_libruby) else {
        return Ok(None);
    };
    let binary = Binary::open_mapped(process, lib)?;
    let notes = cache::usdt_notes(&binary).map_err(|e| DiscoveryError::Probes {
        path: binary.shown().to_path_buf(),
        source: Box::new(e.without_path()),
    })?;
    let version = ruby_version(binary.shown()).unwrap_or_else(|| "unknown".to_string());
    // Ruby 3.1's flags word tells minor from major (see `layout`); other
    // versions, and a 3.1 whose code is not what was read, get `mark`.
    // The layout is the file's; the address is this process's, from its
    // load address and memory, so it is worked out every time.
    let flags = if version == "3.1" || version.starts_with("3.1.") {
        match cache::parsed(&binary, "Ruby's flags layout", || {
            layout::read_layout(binary.path())
        })
        .and_then(|l| layout::flags_address(process.pid, lib.range.0, &l))
        {
            Ok(Some(addr)) => Some(addr),
            // Just after exec: libruby not relocated or the VM not set up;
            // the caller tries again.
            Ok(None) => return Ok(None),
            Err(e) => {
                log::warn!(
                    "pid {}: cannot tell minor from major collections ({e}); \
                     their markings are exported as cause=\"mark\"",
                    process.pid
                );
                None
            }
        }
    } else {
        None
    };
    let mut probes = Vec::new();
    for (provider, name, program) in PROBES {
        let found: Vec<&UsdtProbe> = usdt::find(&notes, provider, name).collect();
        if found.is_empty() {
            return Err(DiscoveryError::MissingProbe {
                pid: process.pid,
                runtime: Runtime::Ruby.label(),
                library: binary.shown().to_path_buf(),
                probe: format!("{provider}:{name}"),
                hint: "this Ruby was built without DTrace/SystemTap probes \
                       (./configure --enable-dtrace); Debian's and Ubuntu's libruby \
                       packages have them",
            });
        }
        for note in found {
            let mut probe = ProbeAttach::from_usdt(note, program, &binary, false)?;
            if let (Some(addr), "ruby_mark_end") = (flags, program) {
                // The "argument" is a constant: the address of the flags.
                probe.arg = ProgramArg::Address(ArgSpec {
                    loc: ARG_CONST,
                    val: addr as i64,
                    size: 8,
                    ..ArgSpec::default()
                });
            }
            probes.push(probe);
        }
    }
    Ok(Some(Discovered {
        process: process.clone(),
        runtime: Runtime::Ruby,
        version,
        probes,
    }))
}

/// `libruby-3.1.so.3.1.2`, `libruby.so.3.3`: the shared interpreter.
fn is_libruby(name: &str) -> bool {
    name.starts_with("libruby") && name.contains(".so")
}

/// `3.1.2` from `libruby-3.1.so.3.1.2`, `3.1` from `libruby-3.1.so.3.1`
/// or `libruby-3.1.so`: the file name is what the process maps, whatever
/// its root.
fn ruby_version(binary: &std::path::Path) -> Option<String> {
    let name = binary.file_name()?.to_str()?;
    let rest = name.strip_prefix("libruby-")?;
    let (api, tail) = rest.split_once(".so")?;
    let full = tail.strip_prefix('.').filter(|t| t.starts_with(api));
    let v = full.unwrap_or(api);
    (!v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.')).then(|| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn versions_from_file_names() {
        let v = |s: &str| ruby_version(Path::new(s));
        assert_eq!(
            v("/usr/lib/x86_64-linux-gnu/libruby-3.1.so.3.1.2").as_deref(),
            Some("3.1.2")
        );
        assert_eq!(v("libruby-3.1.so.3.1").as_deref(), Some("3.1"));
        assert_eq!(v("libruby-3.3.so").as_deref(), Some("3.3"));
        assert_eq!(v("libruby.so.3.3"), None);
        assert_eq!(v("libpython3.11.so.1.0"), None);
        assert!(is_libruby("libruby-3.1.so.3.1.2"));
        assert!(!is_libruby("librubyish.a"));
    }

    /// Debian's ruby3.1 (`cargo xtask test` installs it;
    /// `xtask/tests/e2e_ruby.rs` compares the offsets with `readelf -n`).
    #[test]
    fn finds_the_probes_of_debians_ruby() {
        let ruby = "/usr/bin/ruby3.1";
        assert!(
            Path::new(ruby).is_file(),
            "{ruby} is missing: install Debian's ruby3.1 (`cargo xtask test` installs it)"
        );
        let child = crate::runtimes::test_interpreter::Interpreter::start(
            ruby,
            &["-e", "puts; $stdout.flush; $stdin.read"],
        );
        let found = detect(&Process::inspect(child.pid()).unwrap());
        drop(child);
        let t = found.unwrap().expect("ruby3.1 maps libruby");
        assert_eq!(t.runtime, Runtime::Ruby);
        assert!(t.version.starts_with("3.1"), "{}", t.version);
        for (provider, name, program) in PROBES {
            let probe = format!("{provider}:{name}");
            assert!(
                t.probes
                    .iter()
                    .any(|p| p.probe == probe && p.program == program),
                "no {probe}"
            );
        }
        // Debian's build guards the probes with semaphores.
        assert!(t.probes.iter().all(|p| p.ref_ctr_offset.is_some()));
    }
}
