//! End to end on Debian's Ruby 3.1 (`/usr/bin/ruby3.1`, whose
//! `libruby-3.1.so` has the USDT probes `ruby:gc__mark__begin/end` and
//! `ruby:gc__sweep__begin/end`, guarded by semaphores). The release agent
//! traces the bundled `workloads/ruby/gc_alloc.rb`, which allocates so
//! that Ruby runs minor collections, incremental major ones of its own and
//! forced ones (`GC.start`), and reports Ruby's own account of the window.
//!
//! Order of events, so that both sides count the same collections: the
//! script collects, disables the collector and waits at its gate; the agent
//! attaches and prints its "armed" line; the test opens the gate; the
//! script enables the profiler and the collector, runs, disables the
//! collector (which finishes the last lazy sweep) and reports; the test
//! scrapes the agent, stops it, and only then lets the script exit.
//!
//! What must match (`docs/design.md`, "Ruby"):
//! - the agent's counts of `cause="minor"` and `"major"` equal `GC.stat`'s
//!   `minor_gc_count` and `major_gc_count` over the window exactly: every
//!   collection runs one marking, bracketed by one `gc__mark__begin`/`end`
//!   pair, and `objspace->flags` says which kind at `gc__mark__end`;
//! - the agent's summed time of all Ruby pauses is within 10% of the
//!   summed `GC_TIME` of the window's `GC::Profiler` records, which bracket
//!   the same intervals (in process CPU time; the agent's is wall time, so
//!   the script runs SCHED_FIFO).
//!
//! Ruby keeps no count of lazy sweep steps, so the agent's `sweep` count is
//! not compared.
//!
//! A second test compares `agent probes` with `readelf -n` of the library.
//!
//! They load BPF programs, so they need root and fail (never skip) without
//! it, without `/usr/bin/ruby3.1`, or without the agent binary. They run
//! one at a time (a global mutex).

mod support;

use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use support::{agent_probes, require_root, ruby};

/// The BPF tests run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn e2e_ruby_collections() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root("e2e_ruby");
    let rb = ruby::spawn_workload(ruby::SECONDS);
    ruby::check_collections(rb);
}

#[test]
fn e2e_ruby_probes_match_readelf() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root("e2e_ruby_probes_match_readelf");
    let mut rb = ruby::spawn_workload("0");
    rb.wait_ready(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let text = agent_probes(rb.pid());
    rb.go().unwrap_or_else(|e| panic!("{e:#}"));
    rb.wait_done(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}"));
    rb.finish(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}"));

    // The library the process maps, as `agent probes` names it.
    let library = text
        .lines()
        .find_map(|l| l.strip_prefix("file: "))
        .and_then(|l| l.split(" (opened through").next())
        .unwrap_or_else(|| panic!("agent probes names no file:\n{text}"))
        .to_string();
    assert!(text.contains("ruby 3.1"), "agent probes:\n{text}");
    let expected = readelf_probes(&library);
    let mut shown: Vec<(String, u64, u64)> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let probe = f.next()?.to_string();
            let offset = f.next()?.rsplit_once("+0x")?.1;
            let sem = l.rsplit_once("semaphore: +0x")?.1;
            Some((
                probe,
                u64::from_str_radix(offset, 16).ok()?,
                u64::from_str_radix(sem.trim(), 16).ok()?,
            ))
        })
        .filter(|(p, _, _)| p.starts_with("ruby:gc__"))
        .collect();
    shown.sort();
    assert_eq!(
        shown, expected,
        "agent probes differs from readelf -n of {library}:\n{text}"
    );
    assert_eq!(shown.len(), 4, "{text}");
}

/// `(provider:name, file offset, semaphore file offset)` of every `gc__`
/// probe of `library`, from `readelf -n` (virtual addresses) and
/// `readelf -lW` (to turn them into file offsets).
fn readelf_probes(library: &str) -> Vec<(String, u64, u64)> {
    let run = |args: &[&str]| {
        let out = Command::new("readelf")
            .args(args)
            .arg(library)
            .output()
            .expect("running readelf (binutils)");
        assert!(out.status.success(), "readelf {args:?} {library} failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let hex = |s: &str| u64::from_str_radix(s.trim().trim_start_matches("0x"), 16).unwrap();
    let loads: Vec<(u64, u64, u64)> = run(&["-lW"])
        .lines()
        .filter(|l| l.trim_start().starts_with("LOAD"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (hex(f[1]), hex(f[2]), hex(f[4]))
        })
        .collect();
    let to_offset = |vaddr: u64| {
        loads
            .iter()
            .find(|(_, v, size)| vaddr >= *v && vaddr < v + size)
            .map(|(off, v, _)| vaddr - v + off)
            .unwrap_or_else(|| panic!("{vaddr:#x} is in no LOAD segment of {library}"))
    };
    let notes = run(&["-n"]);
    let mut out = Vec::new();
    let (mut provider, mut name) = (String::new(), String::new());
    for line in notes.lines().map(str::trim) {
        if let Some(p) = line.strip_prefix("Provider: ") {
            provider = p.to_string();
        } else if let Some(n) = line.strip_prefix("Name: ") {
            name = n.to_string();
        } else if let Some(rest) = line.strip_prefix("Location: ") {
            if provider != "ruby" || !name.starts_with("gc__") {
                continue;
            }
            let fields: Vec<&str> = rest.split(", ").collect();
            let location = hex(fields[0]);
            let semaphore = fields
                .iter()
                .find_map(|f| f.strip_prefix("Semaphore: "))
                .map(hex)
                .expect("Debian's libruby guards its probes with semaphores");
            out.push((
                format!("{provider}:{name}"),
                to_offset(location),
                to_offset(semaphore),
            ));
        }
    }
    out.sort();
    out
}
