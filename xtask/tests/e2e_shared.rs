//! End to end for shared probes (issue 15): in the follow modes a file's
//! probes are attached once and shared by every process that maps it, and
//! a process is recorded from its exec, before the agent has even read the
//! exec event. So every process of a runtime file after the first is
//! counted from its first instruction, and a process that maps a probed
//! file but is not selected is never exported.
//!
//! Two agents run at once over the same workloads: `--all`, and `--comm
//! java`. After both are armed, the test runs, one after another (two at a
//! time for the JVMs), [`JVMS`] short JDK 17 JVMs, [`NODES`] Node 24 and
//! [`PYTHONS`] CPython 3.11 processes, nothing gated: each logs its pauses
//! from its first instruction, and each must be counted exactly by the
//! agent, in count per cause, except the first process of each runtime
//! file (the one whose probes are attached after its exec), whose misses
//! are printed. A [`BYSTANDER`] JVM, started through a link named so that
//! `--comm java` does not select it, maps the `libjvm.so` that the second
//! agent has probed: that agent must never export it, while the `--all`
//! agent counts it like the others.
//!
//! The `--comm java` agent reads its maps only every [`SLOW_INTERVAL`] s,
//! so most JVMs exit before it first reads their VM operations' names:
//! those must come from `libjvm.so` itself, and every cause of every
//! process is compared by name, none `unresolved_`.
//!
//! Ground truth: `-Xlog:safepoint` (one record per safepoint), Node's
//! `--trace-gc` (one line per collection), and CPython's own collection
//! counters (`gc.get_stats()`, per generation since the interpreter
//! started), read just before the script leaves with `os._exit`, which
//! skips the collection of the interpreter's shutdown.
//!
//! Needs root; fails (never skips) without it, JDK 17, Node 24 or
//! `/usr/bin/python3.11`.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{
    Agent, ScratchDir, agent_binary, http_get, loopback, parse_prometheus, require_root, sum_by,
};
use xtask::groundtruth::{hotspot, v8};
use xtask::workloads::{JavaWorkload, find_java};

/// Short JVMs after the agents are armed.
const JVMS: usize = 20;
/// Node 24 processes.
const NODES: usize = 3;
/// CPython processes.
const PYTHONS: usize = 3;
/// The command name of the JVM `--comm java` must not select.
const BYSTANDER: &str = "bystander";
/// Arguments both agents share: numbers kept well past the run, no summary.
const COMMON: [&str; 4] = ["--forget-after", "600", "--summary", "0"];
/// The `--all` agent's snapshot interval: quick.
const FAST_INTERVAL: &str = "0.5";
/// The `--comm java` agent's: longer than a JVM's life (a second and a
/// bit), so that its names are read after it exited.
const SLOW_INTERVAL: &str = "5";

/// Allocates briskly for a fraction of a second: a few scavenges and,
/// from `gc()`-free code, mark-compacts as the kept window grows.
const NODE_SCRIPT: &str = "let keep = [];\n\
    for (let i = 0; i < 2e6; i++) { keep[i % 20000] = { a: i, b: new Array(16) }; }\n";

/// Makes reference cycles, then prints the interpreter's own collection
/// counts and leaves without the shutdown's collection.
const PYTHON_SCRIPT: &str = "import gc, json, os, sys\n\
    keep = []\n\
    for i in range(300000):\n    a = []\n    a.append(a)\n    if i % 50 == 0:\n        keep.append(a)\n\
    gc.collect(1)\n\
    gc.disable()\n\
    sys.stdout.write(json.dumps([s['collections'] for s in gc.get_stats()]) + '\\n')\n\
    sys.stdout.flush()\n\
    os._exit(0)\n";

/// One process of the run and its own account, per cause.
struct Ran {
    what: String,
    pid: u32,
    runtime: &'static str,
    kind: &'static str,
    truth: BTreeMap<String, f64>,
}

#[test]
fn shared_probes_count_every_process_from_its_first_instruction() {
    require_root("e2e_shared");
    let scratch = ScratchDir::new("e2e-shared");
    let bin = agent_binary();
    let all_addr = loopback();
    let java_addr = loopback();
    let mut all_args = vec!["--all", "--interval", FAST_INTERVAL];
    all_args.extend(COMMON);
    let mut java_args = vec!["--comm", "java", "--interval", SLOW_INTERVAL];
    java_args.extend(COMMON);
    let mut all = Agent::start_selecting(&bin, all_addr, &all_args);
    let mut java_only = Agent::start_selecting(&bin, java_addr, &java_args);
    for a in [&mut all, &mut java_only] {
        a.wait_stderr("following new processes", Duration::from_secs(60));
    }

    let java = find_java(17).unwrap_or_else(|e| panic!("JDK 17: {e:#}"));
    let node = xtask::runtimes::node("24.22.3").unwrap_or_else(|e| panic!("Node 24: {e:#}"));
    let python = PathBuf::from("/usr/bin/python3.11");
    assert!(python.exists(), "/usr/bin/python3.11 is missing");

    let mut ran = Vec::new();
    // Two JVMs at a time; the bystander runs with the second pair, once
    // the `--comm java` agent has probed libjvm.so for the first.
    let bystander = scratch.path().join(BYSTANDER);
    std::os::unix::fs::symlink(&java, &bystander).expect("link to java");
    let mut started = 0;
    let mut bystander_pid = None;
    while started < JVMS {
        let mut pair = Vec::new();
        for _ in 0..2.min(JVMS - started) {
            started += 1;
            pair.push(jvm(&java, &format!("JVM {started}"), scratch.path()));
        }
        if started == 4 {
            let b = jvm(&bystander, "the bystander JVM", scratch.path());
            bystander_pid = Some(b.1.pid());
            pair.push(b);
        }
        for (what, mut running, log) in pair {
            let status = running.child().wait().expect("wait for the JVM");
            assert!(status.success(), "{what} exited with {status}");
            ran.push(Ran {
                truth: safepoints_by_cause(&log),
                pid: running.pid(),
                what,
                runtime: "hotspot",
                kind: "safepoint",
            });
        }
    }
    let script = scratch.path().join("alloc.js");
    std::fs::write(&script, NODE_SCRIPT).expect("write the Node script");
    for i in 1..=NODES {
        let (pid, out) = run(Command::new(&node).arg("--trace-gc").arg(&script));
        let trace = v8::parse_trace(out.lines());
        assert!(trace.unparsed.is_empty(), "unparsed: {:?}", trace.unparsed);
        let mut truth = BTreeMap::new();
        for gc in &trace.gcs {
            *truth.entry(gc.cause.to_string()).or_insert(0.0) += 1.0;
        }
        ran.push(Ran {
            what: format!("Node 24 process {i}"),
            pid,
            runtime: "v8",
            kind: "gc",
            truth,
        });
    }
    for i in 1..=PYTHONS {
        let (pid, out) = run(Command::new(&python).args(["-c", PYTHON_SCRIPT]));
        let counts: Vec<f64> = serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("the Python script printed {out:?}: {e}"));
        let truth = counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0.0)
            .map(|(g, n)| (format!("gen{g}"), *n))
            .collect();
        ran.push(Ran {
            what: format!("CPython 3.11 process {i}"),
            pid,
            runtime: "cpython",
            kind: "gc",
            truth,
        });
    }

    // The `--all` agent reads its maps every 0.5 s; the `--comm java`
    // agent, every 5 s, is waited for until it has read them since the
    // last JVM ended (its numbers stop changing for a reading), at most
    // two of its intervals.
    std::thread::sleep(Duration::from_secs(2));
    let all_page = parse_prometheus(&http_get(all_addr, "/metrics"));
    let jvm_pids: Vec<String> = ran
        .iter()
        .filter(|r| r.runtime == "hotspot" && Some(r.pid) != bystander_pid)
        .map(|r| r.pid.to_string())
        .collect();
    let counted = |page: &[support::Sample]| -> Vec<f64> {
        jvm_pids
            .iter()
            .map(|pid| {
                let want = [("pid", pid.as_str()), ("kind", "safepoint")];
                total(&sum_by(
                    page,
                    "pausewatch_pause_seconds_count",
                    "cause",
                    &want,
                ))
            })
            .collect()
    };
    let logged: Vec<f64> = ran
        .iter()
        .filter(|r| r.runtime == "hotspot" && Some(r.pid) != bystander_pid)
        .map(|r| total(&r.truth))
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let java_page = loop {
        let page = parse_prometheus(&http_get(java_addr, "/metrics"));
        let now = counted(&page);
        // Complete once the last JVMs show at least what they logged (the
        // first of its file may show less, forever).
        let complete = now.iter().zip(&logged).skip(1).all(|(n, l)| n >= l);
        if complete || std::time::Instant::now() > deadline {
            break page;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let mut report = String::new();
    let mut failures = Vec::new();
    let mut first_of = BTreeMap::new();
    for r in &ran {
        let first = !first_of.contains_key(r.runtime);
        first_of.insert(r.runtime, ());
        let pid = r.pid.to_string();
        let want = [("pid", pid.as_str()), ("kind", r.kind)];
        let mut pages = vec![("--all", &all_page)];
        if r.runtime == "hotspot" && Some(r.pid) != bystander_pid {
            pages.push(("--comm java", &java_page));
        }
        for (agent, page) in pages {
            let got = sum_by(page, "pausewatch_pause_seconds_count", "cause", &want);
            let (log, seen) = (total(&r.truth), total(&got));
            report.push_str(&format!(
                "{:<22} pid {:>7} {:<12} log {log:>4}, agent {seen:>4}{}\n",
                r.what,
                r.pid,
                agent,
                if first { " (first of its file)" } else { "" }
            ));
            if first {
                // Attached after its exec: what it missed is reported,
                // and nothing may be counted that did not happen.
                if seen > log {
                    failures.push(format!(
                        "{} ({agent}): {seen} counted, {log} logged",
                        r.what
                    ));
                }
                continue;
            }
            if got != r.truth {
                failures.push(format!(
                    "{} ({agent}): per cause {got:?}, its own account {:?}",
                    r.what, r.truth
                ));
            }
        }
    }
    // Every name was resolved, in memory or in the runtime's files.
    for (agent, page) in [("--all", &all_page), ("--comm java", &java_page)] {
        let unresolved: Vec<String> = page
            .iter()
            .filter(|s| s.labels.values().any(|v| v.starts_with("unresolved_")))
            .map(|s| format!("{} {:?}", s.name, s.labels))
            .collect();
        if !unresolved.is_empty() {
            failures.push(format!(
                "{agent} exports unresolved names: {}",
                unresolved.join("; ")
            ));
        }
    }
    let bystander_pid = bystander_pid.expect("the bystander ran").to_string();
    let leaked: Vec<String> = java_page
        .iter()
        .filter(|s| s.labels.get("pid") == Some(&bystander_pid))
        .map(|s| s.name.clone())
        .collect();
    eprintln!("{report}");
    assert!(
        leaked.is_empty(),
        "the --comm java agent exports the bystander JVM, which it did not select: {leaked:?}"
    );
    assert!(failures.is_empty(), "{}\n{report}", failures.join("\n"));
    for a in [&mut all, &mut java_only] {
        let (status, _) = a.interrupt(Duration::from_secs(30));
        assert!(status.is_some_and(|s| s.success()), "{}", a.stderr_text());
    }
}

/// A short JDK 17 JVM at `java` (not gated, a second of work with a
/// `System.gc()` every 200 ms) logging its safepoints into `dir`.
fn jvm(java: &Path, what: &str, dir: &Path) -> (String, xtask::workloads::RunningJava, PathBuf) {
    let log = dir.join(format!("{}.log", what.replace(' ', "-")));
    let running = JavaWorkload::new(java)
        .heap_mb(32)
        .young_mb(Some(8))
        .live_mb(4)
        .alloc_mb_per_sec(40)
        .system_gc_every_ms(200)
        .duration_secs(1)
        .log_path(&log)
        .gate(false)
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e:#}"));
    (what.to_string(), running, log)
}

/// Runs `cmd` to its end and returns its pid and stdout.
fn run(cmd: &mut Command) -> (u32, String) {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{cmd:?} exited with {}", out.status);
    (pid, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The safepoints of a `-Xlog:safepoint` log, by VM operation.
fn safepoints_by_cause(log: &Path) -> BTreeMap<String, f64> {
    let log = hotspot::read_log(log).unwrap_or_else(|e| panic!("{e:#}"));
    let mut out = BTreeMap::new();
    for r in &log.safepoints {
        *out.entry(r.op.clone()).or_insert(0.0) += 1.0;
    }
    assert!(!out.is_empty(), "a JVM logged no safepoint");
    out
}

fn total(by_cause: &BTreeMap<String, f64>) -> f64 {
    by_cause.values().sum()
}
