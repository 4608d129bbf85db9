//! Ruby (CRuby): finds `libruby-3.x.so` in a process and its USDT GC probes.
//!
//! `ruby:gc__mark__begin/end` bracket one collection's marking (with the
//! sweep steps it runs inside), `ruby:gc__sweep__begin/end` each sweep step;
//! Ruby guards them with semaphores, which the loader lets the kernel
//! raise (`ProbeAttach::ref_ctr_offset`). What the intervals mean, and why
//! the BPF side drops sweep steps nested in a marking, is in
//! `ebpf/src/ruby.rs` and `docs/design.md` ("Ruby").

use pausewatch_common::{RUBY_CAUSE_MARK, RUBY_CAUSE_SWEEP};

use super::{Binary, DiscoveryError, ProbeAttach, Process, Runtime, Target};
use crate::probes::usdt::{self, UsdtProbe};

/// (provider, name, BPF program); no program reads an argument (the
/// probes have none).
const PROBES: [(&str, &str, &str); 4] = [
    ("ruby", "gc__mark__begin", "ruby_mark_begin"),
    ("ruby", "gc__mark__end", "ruby_mark_end"),
    ("ruby", "gc__sweep__begin", "ruby_sweep_begin"),
    ("ruby", "gc__sweep__end", "ruby_sweep_end"),
];

/// Text of a Ruby pause's cause id.
pub fn cause_name(cause: u64) -> String {
    match cause {
        RUBY_CAUSE_MARK => "mark".to_string(),
        RUBY_CAUSE_SWEEP => "sweep".to_string(),
        other => format!("cause_{other}"),
    }
}

/// Returns the Ruby target in `process`, or `None` if it maps no libruby.
pub fn detect(process: &Process) -> Result<Option<Target>, DiscoveryError> {
    let Some(lib) = process.find_mapped(is_libruby) else {
        return Ok(None);
    };
    let binary = Binary::open_mapped(process, lib)?;
    let notes = usdt::read_usdt_probes(binary.path()).map_err(|e| DiscoveryError::Probes {
        path: binary.shown().to_path_buf(),
        source: Box::new(e.without_path()),
    })?;
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
            probes.push(ProbeAttach::from_usdt(note, program, &binary, false)?);
        }
    }
    Ok(Some(Target {
        process: process.clone(),
        runtime: Runtime::Ruby,
        version: ruby_version(binary.shown()).unwrap_or_else(|| "unknown".to_string()),
        probes,
    }))
}

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
    fn versions_and_names() {
        let v = |s: &str| ruby_version(Path::new(s));
        assert_eq!(
            v("/usr/lib/x86_64-linux-gnu/libruby-3.1.so.3.1.2").as_deref(),
            Some("3.1.2")
        );
        assert_eq!(v("libruby-3.1.so.3.1").as_deref(), Some("3.1"));
        assert_eq!(v("libruby-3.3.so").as_deref(), Some("3.3"));
        assert_eq!(v("libpython3.11.so.1.0"), None);
        assert!(is_libruby("libruby-3.1.so.3.1.2"));
        assert!(!is_libruby("librubyish.a"));
        assert_eq!(cause_name(RUBY_CAUSE_MARK), "mark");
        assert_eq!(cause_name(RUBY_CAUSE_SWEEP), "sweep");
    }
}
