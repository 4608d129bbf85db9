//! End to end on Debian's CPython 3.11 (`/usr/bin/python3.11`, always that
//! absolute path: it has the USDT probes, guarded by semaphores; a pyenv or
//! python.org build earlier on PATH usually has none). The release agent
//! traces the bundled `workloads/python/gc_cycles.py`, which makes
//! reference cycles so that all three generations are collected many
//! times, and records each collection itself with `gc.callbacks`.
//!
//! Order of events, so that both sides count the same collections: the
//! script starts with its collector disabled and waits at its gate; the
//! agent attaches and prints its "armed" line; the test opens the gate; the
//! script registers its callback, enables the collector, runs, disables
//! the collector, removes the callback and reports; the test scrapes the
//! agent, stops it, and only then lets the script exit (its final
//! collection at exit is after the agent detached).
//!
//! What must match: per generation, the agent's count
//! (`pausewatch_pause_seconds_count{runtime="cpython",kind="gc",cause="genN"}`)
//! equals the script's exactly, and the summed duration (`_sum`) is within
//! 10% of the script's summed callback-to-callback time. The script's
//! interval contains the agent's (the callbacks run around
//! `gc_collect_main`, the probes inside it), so the agent's sum is slightly
//! lower: by the callbacks' and the uprobes' overhead, a few microseconds
//! per collection.
//!
//! The agent runs without `--events` here, on purpose. With it, the BPF
//! side wakes the agent's event reader through the ring buffer at every
//! `gc__done`, and on a busy machine the woken agent often preempts the
//! Python thread right there, on its way back from the uprobe trap: after
//! the agent's interval ended but before the script's "stop" callback
//! reads the clock. That made the script's gen0 sum up to 35% larger than
//! the agent's on a loaded 2-core machine (0.4-0.7% without `--events`).
//! The V8 test does use `--events`: there the end probe fires after V8's
//! own timestamp, so the same preemption falls outside both intervals.
//!
//! A second test checks the semaphores themselves: CPython's probes fire
//! only while their semaphore is non-zero, and the agent lets the kernel
//! keep it raised (`agent/src/bpf/refctr.rs`). The kernel counts the probe
//! once per process however many tracers use it, so, read from the
//! target's memory, each semaphore must read 0 before any agent, 1 with
//! one agent, still 1 with a second, still 1 when the first is SIGKILLed
//! (the second still needs it), 0 when the second stops; and 1 with a
//! third agent, 0 again after that one is SIGKILLed: the kernel, not the
//! agent, lowers it, so a crashed agent leaves no probe cost behind.
//!
//! They load BPF programs, so they need root and fail (never skip) without
//! it, without `/usr/bin/python3.11`, or without the agent binary. They
//! run one at a time (a global mutex), so the timing comparison has the
//! machine to itself.

mod support;

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use support::script::Interpreter;
use support::{Agent, Checks, agent_binary, agent_probes_output, cpython, require_root};
use xtask::scripted::ScriptWorkload;

/// The interpreter under test (Debian's package python3.11-minimal).
const PYTHON: &str = "/usr/bin/python3.11";

/// The BPF tests run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn e2e_cpython_gc_generations() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root("e2e_cpython");
    assert!(
        Path::new(PYTHON).is_file(),
        "{PYTHON} is missing: install Debian's python3.11-minimal \
         (`cargo xtask test` installs it)"
    );
    let py = ScriptWorkload::spawn(
        Path::new(PYTHON),
        &Interpreter::CPython.args(cpython::SECONDS),
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    cpython::check_gc_generations(py, "3.11");
}

#[test]
fn e2e_cpython_semaphores_follow_the_agent() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root("e2e_cpython_semaphores_follow_the_agent");
    let agent_bin = agent_binary();
    // A measured phase of no time: the script only has to sit at its gate.
    let mut py = ScriptWorkload::spawn(Path::new(PYTHON), &Interpreter::CPython.args(0))
        .unwrap_or_else(|e| panic!("{e:#}"));
    py.wait_ready(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let pid = py.pid();

    let probes_text = String::from_utf8_lossy(&agent_probes_output(pid).stdout).to_string();
    let offsets: Vec<u64> = probes_text
        .lines()
        .filter_map(|l| l.split("semaphore: +0x").nth(1))
        .map(|hex| u64::from_str_radix(hex.trim(), 16).expect("hex semaphore offset"))
        .collect();
    assert!(
        !offsets.is_empty(),
        "agent probes shows no semaphore for Debian's python3.11:\n{probes_text}"
    );
    let addresses: Vec<u64> = offsets
        .iter()
        .map(|&off| {
            address_of_file_offset(pid, PYTHON, off).unwrap_or_else(|| {
                panic!("no mapping of {PYTHON} in pid {pid} holds file offset {off:#x}")
            })
        })
        .collect();
    let read = || -> Vec<u16> {
        let mem = std::fs::File::open(format!("/proc/{pid}/mem")).expect("opening /proc/PID/mem");
        addresses
            .iter()
            .map(|&a| {
                let mut b = [0u8; 2];
                mem.read_exact_at(&mut b, a)
                    .unwrap_or_else(|e| panic!("reading the semaphore at {a:#x}: {e}"));
                u16::from_le_bytes(b)
            })
            .collect()
    };
    let all = |v: u16| vec![v; addresses.len()];

    let mut checks = Checks::new();
    checks.eq("semaphores before any agent", read(), all(0));
    let mut first = Agent::armed(&agent_bin, pid, &["--summary", "0"]);
    checks.eq("semaphores with one agent", read(), all(1));
    let mut second = Agent::armed(&agent_bin, pid, &["--summary", "0"]);
    checks.eq("semaphores with two agents", read(), all(1));
    kill_and_wait(&mut first, &mut checks, "the first agent");
    checks.eq(
        "semaphores after SIGKILL of the first agent",
        read(),
        all(1),
    );
    let (status, _) = second.interrupt(Duration::from_secs(5));
    checks.check(status.is_some_and(|s| s.success()), || {
        format!("the second agent did not exit 0 on SIGINT: {status:?}")
    });
    checks.eq("semaphores after the second agent stopped", read(), all(0));
    let mut third = Agent::armed(&agent_bin, pid, &["--summary", "0"]);
    checks.eq("semaphores with a third agent", read(), all(1));
    kill_and_wait(&mut third, &mut checks, "the third agent");
    // The kernel releases the killed agent's perf events as its files close.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while read() != all(0) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    checks.eq("semaphores after SIGKILL of the last agent", read(), all(0));
    py.go().unwrap_or_else(|e| panic!("{e:#}"));
    py.wait_done(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}"));
    py.finish(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}"));
    checks.finish(&format!(
        "semaphores at {addresses:#x?} (file offsets {offsets:#x?})\nagent probes:\n{probes_text}"
    ));
}

/// SIGKILL, then waits for the exit.
fn kill_and_wait(agent: &mut Agent, checks: &mut Checks, who: &str) {
    agent.signal(libc::SIGKILL);
    checks.check(agent.wait_exit(Duration::from_secs(5)).is_some(), || {
        format!("{who} did not die of SIGKILL within 5 s")
    });
}

/// The address at which `pid` maps byte `offset` of the file `path`, from
/// `/proc/PID/maps`.
fn address_of_file_offset(pid: u32, path: &str, offset: u64) -> Option<u64> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    maps.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 6 || fields[5] != path {
            return None;
        }
        let (start, end) = fields[0].split_once('-')?;
        let start = u64::from_str_radix(start, 16).ok()?;
        let end = u64::from_str_radix(end, 16).ok()?;
        let file_off = u64::from_str_radix(fields[2], 16).ok()?;
        (offset >= file_off && offset - file_off < end - start).then(|| start + offset - file_off)
    })
}
