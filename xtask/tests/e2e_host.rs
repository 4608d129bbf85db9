//! End to end for the host-wide mode: `agent run --all` finds processes
//! without being told their pids, attaches to each soon after it starts,
//! reports its pauses while it runs, keeps its final numbers for the grace
//! period after it exits, then forgets it; and labels a process in a
//! kubepods-like cgroup, in its own pid and mount namespaces, with its
//! container and pod.
//!
//! The churn test starts its processes from a table of kinds ([`KINDS`]),
//! round robin, one every [`START_EVERY`]: JVMs on JDK 17 and 25 (started
//! directly, through `sh -c 'exec java ...'` and through a launcher script
//! that execs java after a delay), the Go workload built with Go 1.23
//! (plain and stripped), gc_cycles.py on Debian's CPython 3.11,
//! gc_alloc.js on Node.js and gc_alloc.rb on Debian's Ruby 3.1. Each kind ([`Runtime`]) knows how it starts,
//! which exported series hold its pauses and how to read its runtime's own
//! account of them. The same checks hold for every process: exported as a
//! target before its gate opens (or, for Go, promptly after its start),
//! pauses exported while it runs, exported counts equal to the runtime's
//! own, forgotten within the grace period, attached less than 1 s after its
//! runtime appeared: at its exec for Go, CPython, Node and Ruby (whose
//! `libruby` the dynamic loader maps before `main`) (the agent's own
//! "ms after exec"); for a JVM, when `libjvm.so` was mapped, which the test
//! bounds from above by polling `/proc`, so that the agent's share it judges
//! is never over-stated by a JVM start-up stalled on the loaded machine.
//!
//! Ground truth, per runtime:
//! - JVM: the workload logs its GCs (`-Xlog:gc`); its heavy phase, which
//!   calls `System.gc()` every [`SYSTEM_GC_MS`], starts only when the test
//!   opens its gate, after the agent exports the process, so every full
//!   collection happens under the probes and
//!   `pausewatch_pause_seconds_count{kind="gc",cause="full"}` must equal the
//!   log's `Pause Full` lines, exactly.
//! - CPython and Node: the scripts' gate protocol (`xtask::scripted`). Their
//!   own account covers exactly the measured phase after the gate (CPython's
//!   `gc.callbacks` counts per generation; Node's `--trace-gc` lines per
//!   collector), so the agent's counts per cause, less what it exported
//!   before the gate (the interpreter's start-up collections, which it sees
//!   because it attaches at exec), must equal them exactly. They are read
//!   when the script says `done`: CPython's final collections at exit are
//!   real pauses the script does not count. Ruby: the script's `GC.stat`
//!   minor and major counts over the same phase, against `cause="minor"`
//!   and `"major"` (one marking per collection; Ruby counts no sweep steps,
//!   so `sweep` is not compared).
//! - Go: the workload has no gate, so the agent attaches while it runs. The
//!   runtime's `GODEBUG=gctrace=1` lines carry each cycle's start (`@`, in
//!   ms since the runtime started, which is after the exec); the agent's
//!   "tracing pid N ..., X ms after exec" line says when its probes were in.
//!   Every cycle that began at `@` ≥ X ms must be counted (none missed); a
//!   cycle that began during the attach, or up to [`GO_START_SLACK_MS`]
//!   before it (the runtime's own start after the exec), may be; and the
//!   program may exit during a cycle that then has no gctrace line. So the
//!   exported `GC sweep termination` count must lie in
//!   [sure, sure + maybe + 1].
//!
//! Needs root; fails (never skips) without it, the JDKs, Go 1.23,
//! `/usr/bin/python3.11`, `/usr/bin/node`, `/usr/bin/ruby3.1`, `unshare` or
//! cgroup2.
//! See the numbers with `cargo test -p xtask --test e2e_host -- --nocapture`.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use support::ScratchDir;
use support::child::Process;
use support::hotspot::small_gcheavy;
use support::script::{self, Interpreter};
use support::{Agent, Checks, agent_binary, http_get, loopback, parse_prometheus, require_root};
use xtask::goworkload::build_gcload;
use xtask::groundtruth::{go, ruby};
use xtask::scripted::{ScriptWorkload, workload_path};

/// The two tests share the machine's cores; one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// How often each JVM calls `System.gc()` in its heavy phase.
const SYSTEM_GC_MS: u64 = 400;
/// `--forget-after` of the agent under test.
const FORGET_AFTER_SECS: u64 = 5;
/// Processes in the churn test.
const PROCESSES: usize = 27;
/// A new process starts this often.
const START_EVERY: Duration = Duration::from_millis(2500);
/// The agent's `--interval`: how often it reads the BPF maps.
const INTERVAL_SECS: f64 = 0.5;
/// The Go toolchain of the Go kinds.
const GO_VERSION: &str = "1.23";
/// The Go runtime's clock (`@` of gctrace) starts this long after the exec
/// at most: cycles that began up to this much before the attach may have
/// been counted (see the module docs).
const GO_START_SLACK_MS: f64 = 50.0;
/// The interpreter of the CPython kind (Debian's, with USDT probes).
const PYTHON: &str = "/usr/bin/python3.11";
/// The Node.js of the Node kind.
const NODE: &str = "/usr/bin/node";
/// The interpreter of the Ruby kind (Debian's, with USDT probes).
const RUBY: &str = "/usr/bin/ruby3.1";
/// The Go runtime's cause of the stop-the-world that begins each GC cycle.
const GO_SWEEP: &str = "GC sweep termination";

/// How a JVM is started: `program args...` runs the workload.
#[derive(Clone, Copy, Debug)]
enum Launch {
    /// `java args...`.
    Direct,
    /// `sh -c 'exec "$0" "$@"' java args...`.
    ShExec,
    /// A launcher script that sleeps, then `exec java args...`: the runtime
    /// appears well after the first exec of the pid.
    Script,
}

/// A runtime of the churn test and how its workload is started.
#[derive(Clone, Copy, Debug)]
enum Runtime {
    /// A small GcHeavy JVM, gated, logging its GCs.
    Jvm { jdk: u32, launch: Launch },
    /// The Go workload (un-gated) with `GODEBUG=gctrace=1`.
    Go { stripped: bool },
    /// `workloads/python/gc_cycles.py` on [`PYTHON`], gated.
    CPython,
    /// `workloads/node/gc_alloc.js` on [`NODE`], gated.
    Node,
    /// `workloads/ruby/gc_alloc.rb` on [`RUBY`], gated.
    Ruby,
}

impl Runtime {
    /// The `runtime` label of its series.
    fn label(self) -> &'static str {
        match self {
            Runtime::Jvm { .. } => "hotspot",
            Runtime::Go { .. } => "go",
            Runtime::CPython => "cpython",
            Runtime::Node => "v8",
            Runtime::Ruby => "ruby",
        }
    }

    /// The `kind` label of the series compared with the ground truth.
    fn series_kind(self) -> &'static str {
        match self {
            Runtime::Go { .. } => "stw",
            _ => "gc",
        }
    }

    /// Whether the series of `cause` is compared with the ground truth. A
    /// JVM's young collections and a Go program's other stops are not in
    /// the runtime's account the test reads.
    fn compares(self, cause: &str) -> bool {
        match self {
            Runtime::Jvm { .. } => cause == "full",
            Runtime::Go { .. } => cause == GO_SWEEP,
            Runtime::CPython | Runtime::Node => true,
            Runtime::Ruby => cause == "minor" || cause == "major",
        }
    }

    /// Causes the workload always produces: none of them in its own
    /// account means the workload is broken.
    fn required(self) -> &'static [&'static str] {
        match self {
            Runtime::Jvm { .. } => &["full"],
            Runtime::Go { .. } => &[GO_SWEEP],
            Runtime::CPython => Interpreter::CPython.required(),
            Runtime::Node => Interpreter::Node.required(),
            Runtime::Ruby => &["minor"],
        }
    }

    /// Whether the runtime is in the executable itself, there at exec
    /// (otherwise a JVM's `libjvm.so`, mapped by the launcher later).
    fn at_exec(self) -> bool {
        !matches!(self, Runtime::Jvm { .. })
    }

    /// Starts the workload for a measured phase of `secs`.
    fn start(self, secs: u64, tag: &str) -> Running {
        match self {
            Runtime::Jvm { jdk, launch } => Running::Jvm(start_jvm(jdk, launch, secs, tag, None)),
            Runtime::Go { stripped } => Running::Go(start_go(stripped, secs, tag)),
            Runtime::CPython => {
                Running::Script(spawn_script(PYTHON, &Interpreter::CPython.args(secs)))
            }
            Runtime::Node => Running::Script(spawn_script(NODE, &Interpreter::Node.args(secs))),
            Runtime::Ruby => Running::Script(spawn_script(
                RUBY,
                &[
                    workload_path("ruby/gc_alloc.rb").display().to_string(),
                    secs.to_string(),
                ],
            )),
        }
    }
}

/// One kind of process in the churn test.
#[derive(Clone, Copy, Debug)]
struct ProcessKind {
    name: &'static str,
    runtime: Runtime,
}

/// Every kind of process the churn test starts, round robin (27 processes:
/// three of each).
const KINDS: [ProcessKind; 9] = [
    ProcessKind {
        name: "jdk17",
        runtime: Runtime::Jvm {
            jdk: 17,
            launch: Launch::Direct,
        },
    },
    ProcessKind {
        name: "go1.23",
        runtime: Runtime::Go { stripped: false },
    },
    ProcessKind {
        name: "cpython3.11",
        runtime: Runtime::CPython,
    },
    ProcessKind {
        name: "jdk25",
        runtime: Runtime::Jvm {
            jdk: 25,
            launch: Launch::Direct,
        },
    },
    ProcessKind {
        name: "node",
        runtime: Runtime::Node,
    },
    ProcessKind {
        name: "jdk17-sh-c",
        runtime: Runtime::Jvm {
            jdk: 17,
            launch: Launch::ShExec,
        },
    },
    ProcessKind {
        name: "go1.23-strip",
        runtime: Runtime::Go { stripped: true },
    },
    ProcessKind {
        name: "jdk25-script",
        runtime: Runtime::Jvm {
            jdk: 25,
            launch: Launch::Script,
        },
    },
    ProcessKind {
        name: "ruby3.1",
        runtime: Runtime::Ruby,
    },
];

/// A started JVM workload, killed when dropped, then its directory removed.
struct Started {
    process: Process,
    gate: PathBuf,
    log: PathBuf,
    _dir: ScratchDir,
}

/// A per-process scratch directory.
fn scratch_dir(tag: &str) -> ScratchDir {
    ScratchDir::new(&format!("host-{tag}"))
}

/// Starts a small GcHeavy JVM for `secs` of heavy phase, gated.
/// `wrap` may put a command in front (the namespace test).
fn start_jvm(
    jdk: u32,
    launch: Launch,
    secs: u64,
    tag: &str,
    wrap: Option<&dyn Fn(Vec<String>) -> Command>,
) -> Started {
    let dir = scratch_dir(tag);
    let log = dir.path().join("gc.log");
    let workload = small_gcheavy(jdk, secs, SYSTEM_GC_MS, &log);
    let (args, gate, _stop) = workload.command_line(dir.path()).unwrap();
    let gate = gate.expect("the workload is gated");
    let java = workload.java().to_str().unwrap().to_string();
    let mut full = vec![java];
    full.extend(args);
    let mut cmd = match (wrap, launch) {
        (Some(w), _) => w(full),
        (None, Launch::Direct) => {
            let mut c = Command::new(&full[0]);
            c.args(&full[1..]);
            c
        }
        (None, Launch::ShExec) => {
            let mut c = Command::new("sh");
            c.arg("-c").arg("exec \"$0\" \"$@\"").args(&full);
            c
        }
        (None, Launch::Script) => {
            let script = dir.path().join("launch.sh");
            fs::write(&script, "#!/bin/sh\nsleep 0.3\nexec \"$@\"\n").unwrap();
            Command::new("chmod")
                .arg("+x")
                .arg(&script)
                .status()
                .unwrap();
            let mut c = Command::new(&script);
            c.args(&full);
            c
        }
    };
    // stdin stays a pipe: the workload stops when it closes (test death).
    let process = Process::spawn(
        format!("JDK {jdk} ({launch:?})"),
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    Started {
        process,
        gate,
        log,
        _dir: dir,
    }
}

/// A started Go workload; its stderr (the gctrace lines) goes to `trace`.
/// Killed when dropped, then its directory removed.
struct GoStarted {
    process: Process,
    trace: PathBuf,
    _dir: ScratchDir,
}

/// Starts the Go workload for `secs`, with gctrace on; it runs at once.
fn start_go(stripped: bool, secs: u64, tag: &str) -> GoStarted {
    let binary = build_gcload(GO_VERSION, stripped)
        .unwrap_or_else(|e| panic!("building the Go {GO_VERSION} workload: {e:#}"));
    let dir = scratch_dir(tag);
    let trace = dir.path().join("gctrace.txt");
    let process = Process::spawn(
        binary.display().to_string(),
        Command::new(&binary)
            .args(["-duration", &format!("{secs}s")])
            .env("GODEBUG", "gctrace=1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&trace).expect("creating the gctrace file")),
    );
    GoStarted {
        process,
        trace,
        _dir: dir,
    }
}

fn spawn_script(program: &str, args: &[String]) -> ScriptWorkload {
    ScriptWorkload::spawn(Path::new(program), args)
        .unwrap_or_else(|e| panic!("{e:#} (`cargo xtask test` installs {program})"))
}

/// A running workload of any kind.
enum Running {
    Jvm(Started),
    Go(GoStarted),
    Script(ScriptWorkload),
}

impl Running {
    fn pid(&self) -> u32 {
        match self {
            Running::Jvm(p) => p.process.pid(),
            Running::Go(p) => p.process.pid(),
            Running::Script(s) => s.pid(),
        }
    }

    /// Whether the process is still there (a script waits for the test
    /// after its measured phase, so it always is until [`Self::finish`]).
    fn is_running(&mut self) -> bool {
        match self {
            Running::Jvm(p) => p.process.exited().is_none(),
            Running::Go(p) => p.process.exited().is_none(),
            Running::Script(_) => true,
        }
    }

    /// Waits until the workload sits at its gate (a script's `ready`; a
    /// JVM waits for its gate file from the start, Go has no gate).
    fn wait_gate(&mut self) {
        if let Running::Script(s) = self {
            s.wait_ready(Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("{e:#}"));
        }
    }

    /// Opens the gate: the measured phase starts.
    fn open_gate(&mut self) {
        match self {
            Running::Jvm(p) => fs::write(&p.gate, b"").unwrap(),
            Running::Go(_) => {}
            Running::Script(s) => s.go().unwrap_or_else(|e| panic!("{e:#}")),
        }
    }
}

/// Full GCs in a JVM's -Xlog:gc file.
fn full_gcs_in_log(log: &Path) -> u64 {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("Pause Full"))
        .count() as u64
}

fn scrape(addr: SocketAddr) -> Vec<support::Sample> {
    parse_prometheus(&http_get(addr, "/metrics"))
}

fn has_target(samples: &[support::Sample], pid: u32) -> bool {
    let pid = pid.to_string();
    samples
        .iter()
        .any(|s| s.name == "pausewatch_target_info" && s.label("pid") == pid)
}

fn full_gcs(samples: &[support::Sample], pid: u32) -> Option<u64> {
    let pid = pid.to_string();
    samples
        .iter()
        .find(|s| {
            s.name == "pausewatch_pause_seconds_count"
                && s.label("pid") == pid
                && s.label("kind") == "gc"
                && s.label("cause") == "full"
        })
        .map(|s| s.value as u64)
}

/// Pause counts per cause.
type Counts = BTreeMap<String, u64>;

/// The exported pause counts of `pid` that `runtime`'s ground truth is
/// compared with, per cause (only non-zero ones).
fn exported_counts(samples: &[support::Sample], pid: u32, runtime: Runtime) -> Counts {
    let pid = pid.to_string();
    let mut out = Counts::new();
    for s in samples {
        if s.name == "pausewatch_pause_seconds_count"
            && s.label("pid") == pid
            && s.label("runtime") == runtime.label()
            && s.label("kind") == runtime.series_kind()
            && runtime.compares(s.label("cause"))
            && s.value > 0.0
        {
            *out.entry(s.label("cause").to_string()).or_default() += s.value as u64;
        }
    }
    out
}

/// `now` less `before`, per cause, keeping only non-zero differences (a
/// count below its baseline shows as a huge number, never as agreement).
fn minus(now: &Counts, before: &Counts) -> Counts {
    now.iter()
        .map(|(c, &n)| {
            let b = before.get(c).copied().unwrap_or(0);
            (c.clone(), n.wrapping_sub(b))
        })
        .filter(|(_, n)| *n != 0)
        .collect()
}

fn any_series_of(samples: &[support::Sample], pid: u32) -> bool {
    let pid = pid.to_string();
    samples.iter().any(|s| s.label("pid") == pid)
}

/// Polls `/metrics` every 100 ms until `pred` holds or `timeout` passes.
fn poll(
    addr: SocketAddr,
    timeout: Duration,
    mut pred: impl FnMut(&[support::Sample]) -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pred(&scrape(addr)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for the workload to end by itself (stdin stays open: the JVM
/// workload stops on EOF).
fn wait_exit(p: &mut Process, secs: u64) {
    assert!(
        p.wait_exit(Duration::from_secs(secs)).is_some(),
        "pid {} did not exit within {secs} s",
        p.pid()
    );
}

fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// A runtime's own account of its pauses.
#[derive(Debug)]
enum Truth {
    /// Exact counts per cause over the part of its life the agent must
    /// have seen whole.
    Exact(Counts),
    /// Go: the start of each GC cycle, ms after the runtime started (`@`);
    /// judged against the attach time (see the module docs).
    GoCycles(Vec<f64>),
}

/// What happened to one process of the churn test.
#[derive(Debug)]
struct Outcome {
    kind: ProcessKind,
    pid: u32,
    attached: bool,
    seen_running: bool,
    /// Exported before the gate opened (CPython's and Node's start-up
    /// collections), subtracted from `exported`.
    before_gate: Counts,
    /// Exported once the runtime's account was complete, less `before_gate`.
    exported: Counts,
    truth: Truth,
    forgotten: bool,
    /// At most this long from the exec of `java` to `libjvm.so` in its
    /// maps, as seen by polling `/proc` every 2 ms (the part of the agent's
    /// "ms after exec" that is the JVM's own start-up, not the agent); 0
    /// for a runtime that is there at exec.
    runtime_after_exec_ms: Option<f64>,
}

/// Polls `/proc/PID` every 2 ms until `libjvm.so` is mapped; returns an
/// upper bound, in ms, of the time from the exec of `java` to then: from
/// the last moment the process was seen not yet running `java` (or
/// `spawned`, before the spawn) to the first read of its maps that shows
/// the library. A poller that the loaded machine leaves waiting only makes
/// the bound looser, so the agent's share computed from it (its "ms after
/// exec" less this) is a lower bound of the true one, never an
/// over-statement.
fn watch_runtime_load(pid: u32, spawned: Instant, timeout: Duration) -> Option<f64> {
    let deadline = Instant::now() + timeout;
    let mut not_java = spawned;
    while Instant::now() < deadline {
        let before = Instant::now();
        let is_java = fs::read_link(format!("/proc/{pid}/exe"))
            .is_ok_and(|e| e.file_name().is_some_and(|n| n == "java"));
        if !is_java {
            not_java = before;
        } else if fs::read_to_string(format!("/proc/{pid}/maps"))
            .is_ok_and(|m| m.contains("libjvm.so"))
        {
            return Some(not_java.elapsed().as_secs_f64() * 1e3);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

/// Drives one process through its life and records what the agent showed.
fn drive(addr: SocketAddr, kind: ProcessKind, secs: u64, tag: &str) -> Outcome {
    let rt = kind.runtime;
    let spawned = Instant::now();
    let mut p = rt.start(secs, tag);
    let pid = p.pid();
    let runtime_after_exec_ms = if rt.at_exec() {
        Some(0.0)
    } else {
        watch_runtime_load(pid, spawned, Duration::from_secs(20))
    };
    p.wait_gate();
    // Attached: exported as a target. JVM start-up under load takes a while,
    // but the agent must have it before the gate opens.
    let attached = poll(addr, Duration::from_secs(20), |s| has_target(s, pid));
    // What it exported so far: the workload is idle at its gate, so a map
    // read more than one interval after the attach has all of it.
    let mut before_gate = Counts::new();
    if matches!(p, Running::Script(_)) {
        std::thread::sleep(Duration::from_secs_f64(INTERVAL_SECS * 2.0));
        before_gate = exported_counts(&scrape(addr), pid, rt);
    }
    p.open_gate();
    let seen_running = poll(addr, Duration::from_secs(secs + 20), |s| {
        !minus(&exported_counts(s, pid, rt), &before_gate).is_empty()
    }) && p.is_running();
    // The runtime's own account, and the agent's numbers once the last
    // pauses of it were read from the maps (every INTERVAL_SECS).
    let settle = |want: &Counts| {
        let mut last = Counts::new();
        poll(addr, Duration::from_secs(3), |s| {
            last = minus(&exported_counts(s, pid, rt), &before_gate);
            &last == want
        });
        last
    };
    let (truth, exported) = match &mut p {
        Running::Jvm(j) => {
            wait_exit(&mut j.process, secs + 30);
            let want = Counts::from([("full".to_string(), full_gcs_in_log(&j.log))]);
            let got = settle(&want);
            (Truth::Exact(want), got)
        }
        Running::Go(g) => {
            wait_exit(&mut g.process, secs + 30);
            // The bound is only known with the agent's attach time, at the
            // end: give the agent a few map reads for the last cycles.
            std::thread::sleep(Duration::from_secs_f64(INTERVAL_SECS * 3.0));
            let got = exported_counts(&scrape(addr), pid, rt);
            let trace = fs::read_to_string(&g.trace).unwrap_or_default();
            let cycles = go::parse(&trace).iter().map(|c| c.at_s * 1e3).collect();
            (Truth::GoCycles(cycles), got)
        }
        Running::Script(s) => {
            let json = s
                .wait_done(Duration::from_secs(secs + 60))
                .unwrap_or_else(|e| panic!("{} pid {pid}: {e:#}", kind.name));
            if matches!(rt, Runtime::Ruby) {
                // GC.stat's counts over the measured phase; nothing is
                // collected after it (the script disabled the collector).
                let report = ruby::parse_report(&json)
                    .unwrap_or_else(|e| panic!("{} pid {pid}: {e:#}", kind.name));
                let want: Counts = [
                    ("minor".to_string(), report.stat.minor_gc_count),
                    ("major".to_string(), report.stat.major_gc_count),
                ]
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .collect();
                let got = settle(&want);
                s.finish(Duration::from_secs(30))
                    .unwrap_or_else(|e| panic!("{} pid {pid}: {e:#}", kind.name));
                (Truth::Exact(want), got)
            } else {
                let interpreter = match rt {
                    Runtime::CPython => Interpreter::CPython,
                    _ => Interpreter::Node,
                };
                // Settled before CPython's exit: the interpreter's collections
                // at exit are not in the script's account.
                let who = format!("{} pid {pid}", kind.name);
                let mut got = Counts::new();
                let account = interpreter.account(&json, s, &who, &mut |t| {
                    got = settle(&script::counts(t));
                });
                account.assert_parsed(&who);
                (Truth::Exact(script::counts(&account.tallies)), got)
            }
        }
    };
    let forgotten = poll(addr, Duration::from_secs(FORGET_AFTER_SECS + 10), |s| {
        !any_series_of(s, pid)
    });
    Outcome {
        kind,
        pid,
        attached,
        seen_running,
        before_gate,
        exported,
        truth,
        forgotten,
        runtime_after_exec_ms,
    }
}

/// The agent's "tracing pid N (...), K probes attached in A ms, L ms after
/// exec" line for `pid`: (A, L).
fn attach_line(stderr: &str, pid: u32) -> (Option<f64>, Option<f64>) {
    let line = stderr
        .lines()
        .find(|l| l.contains(&format!("tracing pid {pid} (")));
    let latency = line
        .and_then(|l| l.rsplit(", ").next())
        .and_then(|t| t.strip_suffix(" ms after exec"))
        .and_then(|t| t.parse::<f64>().ok());
    let attach = line
        .and_then(|l| l.split(" attached in ").nth(1))
        .and_then(|t| t.split(" ms").next())
        .and_then(|t| t.parse::<f64>().ok());
    (attach, latency)
}

fn show(counts: &Counts) -> String {
    if counts.is_empty() {
        return "-".into();
    }
    counts
        .iter()
        .map(|(c, n)| format!("{c}={n}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn all_follows_and_forgets_churning_jvms() {
    require_root("all_follows_and_forgets_churning_jvms");
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Build (or find cached) the Go workloads before any baseline.
    for stripped in [false, true] {
        build_gcload(GO_VERSION, stripped)
            .unwrap_or_else(|e| panic!("building the Go {GO_VERSION} workload: {e:#}"));
    }
    for program in [PYTHON, NODE] {
        assert!(
            Path::new(program).is_file(),
            "{program} is missing (`cargo xtask test` installs it)"
        );
    }
    let listen: SocketAddr = loopback();
    let forget = FORGET_AFTER_SECS.to_string();
    let interval = INTERVAL_SECS.to_string();
    let mut agent = Agent::start_selecting(
        &agent_binary(),
        listen,
        &[
            "--all",
            "--summary",
            "0",
            "--interval",
            &interval,
            "--forget-after",
            &forget,
            // The rule engine keeps two windows of snapshots: a short one,
            // so that the exited targets' leave memory within the test.
            "--window",
            "5",
        ],
    );
    agent.wait_stderr("following new processes", Duration::from_secs(30));
    // Let the start-up scan finish before measuring the baseline.
    std::thread::sleep(Duration::from_secs(3));
    let rss_before = rss_kib(agent.pid());
    let started = Instant::now();

    let agent_pid = agent.pid();
    let sampling = std::sync::atomic::AtomicBool::new(true);
    let mut peak_rss = rss_before;
    let results: Vec<std::thread::Result<Outcome>> = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut peak = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_kib(agent_pid));
                std::thread::sleep(Duration::from_millis(250));
            }
            peak
        });
        let handles: Vec<_> = (0..PROCESSES)
            .map(|i| {
                let kind = KINDS[i % KINDS.len()];
                // 3 to 5 s of measured phase: a mix of lifetimes.
                let secs = 3 + (i as u64 % 3);
                let delay = START_EVERY * i as u32;
                scope.spawn(move || {
                    std::thread::sleep(delay);
                    drive(listen, kind, secs, &format!("churn{i}"))
                })
            })
            .collect();
        // Every driver first (one may have panicked), then the sampler.
        let results = handles.into_iter().map(|h| h.join()).collect();
        sampling.store(false, std::sync::atomic::Ordering::Relaxed);
        peak_rss = peak_rss.max(sampler.join().unwrap());
        results
    });
    let churn = started.elapsed();
    let outcomes: Vec<Outcome> = results
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| std::panic::resume_unwind(e)))
        .collect();
    // Other processes of the host may come and go meanwhile; give the agent
    // its grace period, two rule windows and a memory trim (every 5 s) to
    // drop whatever was ours.
    std::thread::sleep(Duration::from_secs(FORGET_AFTER_SECS + 12));
    let rss_after = rss_kib(agent.pid());
    let stderr = agent.stderr_text();
    agent.interrupt(Duration::from_secs(10));

    let mut latencies = Vec::new();
    let mut agent_share = Vec::new();
    let mut attach_times = Vec::new();
    let mut c = Checks::new();
    println!(
        "\n=== agent run --all: {PROCESSES} processes in {:.0} s ===",
        churn.as_secs_f64()
    );
    println!(
        "{:<13} {:>7} {:>5} {:>5} {:<38} {:<38} {:>5} {:>8} {:>7}",
        "kind",
        "pid",
        "att",
        "run",
        "exported (less before gate)",
        "runtime's own",
        "gone",
        "exec→att",
        "exec→rt≤"
    );
    for o in &outcomes {
        let name = o.kind.name;
        let pid = o.pid;
        let (attach_ms, latency) = attach_line(&stderr, pid);
        if let Some(ms) = attach_ms {
            attach_times.push(ms);
        }
        if let Some(ms) = latency {
            latencies.push(ms);
        }
        if let (Some(total), Some(rt)) = (latency, o.runtime_after_exec_ms) {
            // The agent's part: from the runtime's appearance to the attach.
            // (The JVM's own start-up, exec to libjvm.so, is ~30 ms idle and
            // seconds on a loaded 2-core machine; it is printed, not judged.)
            let share = total - rt;
            agent_share.push(share);
            c.check(share < 1000.0, || {
                format!(
                    "{name} pid {pid}: attached {share:.1} ms after its runtime appeared \
                     ({total:.1} ms after exec, the runtime at most {rt:.1} ms after it)"
                )
            });
        }
        let own = match &o.truth {
            Truth::Exact(want) => {
                c.eq(
                    &format!("{name} pid {pid} pauses exported vs its runtime's own, per cause"),
                    &o.exported,
                    want,
                );
                show(want)
            }
            Truth::GoCycles(at_ms) => {
                let exported = o.exported.get(GO_SWEEP).copied().unwrap_or(0);
                match (latency, attach_ms) {
                    (Some(l), Some(a)) => {
                        // Surely after the attach, and possibly during it
                        // or (the runtime's start) just before.
                        let sure = at_ms.iter().filter(|&&t| t >= l).count() as u64;
                        let maybe = at_ms
                            .iter()
                            .filter(|&&t| t < l && t + 1.0 > l - a - GO_START_SLACK_MS)
                            .count() as u64;
                        c.check(exported >= sure && exported <= sure + maybe + 1, || {
                            format!(
                                "{name} pid {pid}: {exported} GC cycles exported; its gctrace \
                                     has {sure} that began after the attach ({l:.1} ms after \
                                     exec) and {maybe} near it, of {} in all",
                                at_ms.len()
                            )
                        });
                        format!("gc={}, after attach {sure} (+{maybe}?)", at_ms.len())
                    }
                    _ => format!("gc={} (no attach time)", at_ms.len()),
                }
            }
        };
        let truth_has = |cause: &str| match &o.truth {
            Truth::Exact(want) => want.get(cause).is_some_and(|&n| n > 0),
            Truth::GoCycles(at_ms) => !at_ms.is_empty(),
        };
        for cause in o.kind.runtime.required() {
            c.check(truth_has(cause), || {
                format!(
                    "{name} pid {pid}: its runtime's own account has no {cause} (workload broken?)"
                )
            });
        }
        println!(
            "{:<13} {:>7} {:>5} {:>5} {:<38} {:<38} {:>5} {:>8} {:>7}",
            name,
            pid,
            o.attached,
            o.seen_running,
            show(&o.exported),
            own,
            o.forgotten,
            latency.map_or("-".into(), |ms| format!("{ms:.1}")),
            match o.runtime_after_exec_ms {
                Some(ms) if !o.kind.runtime.at_exec() => format!("{ms:.1}"),
                Some(_) => "exec".into(),
                None => "-".into(),
            },
        );
        if !o.before_gate.is_empty() {
            println!(
                "{:<13} {:>7} before its gate: {}",
                "",
                "",
                show(&o.before_gate)
            );
        }
        c.check(o.attached, || {
            format!("{name} pid {pid} was never exported as a target")
        });
        c.check(o.seen_running, || {
            format!("{name} pid {pid}: no pause exported while it ran")
        });
        c.check(o.forgotten, || {
            format!("{name} pid {pid} still exported {FORGET_AFTER_SECS} s after exit")
        });
        c.check(latency.is_some(), || {
            format!("{name} pid {pid}: no 'ms after exec' line on the agent's stderr")
        });
    }
    latencies.sort_by(f64::total_cmp);
    if let (Some(first), Some(last)) = (latencies.first(), latencies.last()) {
        println!(
            "attach after the exec of the runtime: min {first:.1} ms, median {:.1} ms, max {last:.1} ms",
            latencies[latencies.len() / 2]
        );
    }
    agent_share.sort_by(f64::total_cmp);
    if let (Some(first), Some(last)) = (agent_share.first(), agent_share.last()) {
        println!(
            "attach after the runtime appeared (exec, or libjvm.so mapped): min {first:.1} ms, \
             median {:.1} ms, max {last:.1} ms",
            agent_share[agent_share.len() / 2]
        );
    }
    attach_times.sort_by(f64::total_cmp);
    if let (Some(first), Some(last)) = (attach_times.first(), attach_times.last()) {
        println!(
            "uprobe attach per process: min {first:.2} ms, median {:.2} ms, max {last:.2} ms",
            attach_times[attach_times.len() / 2]
        );
    }
    println!("agent RSS: {rss_before} KiB before, {peak_rss} KiB peak, {rss_after} KiB after");
    // The allocator keeps some freed pages; anything per target that is
    // never dropped would grow by ~kilobytes per process.
    c.check(rss_after <= rss_before + 4096, || {
        format!("agent RSS grew from {rss_before} KiB to {rss_after} KiB over the churn")
    });
    c.finish(&format!("host-wide churn; agent stderr:\n{stderr}"));
}

/// The unified (v2) cgroup hierarchy's mount point.
fn cgroup2_root() -> PathBuf {
    let mounts = fs::read_to_string("/proc/mounts").unwrap();
    mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .expect("a cgroup2 hierarchy is mounted (needed for the container label test)")
}

#[test]
fn labels_a_jvm_in_a_pod_cgroup_and_namespaces() {
    require_root("labels_a_jvm_in_a_pod_cgroup_and_namespaces");
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let uid = format!("5e0c3a1b-7d2f-4e6a-9b8c-{:012x}", std::process::id());
    let container = format!(
        "{:064x}",
        u128::from(std::process::id()) * 0x9e37_79b9_7f4a_7c15
    );
    let pod_slice = format!("kubepods-besteffort-pod{}.slice", uid.replace('-', "_"));
    let base = cgroup2_root().join("kubepods.slice");
    let leaf = base
        .join("kubepods-besteffort.slice")
        .join(&pod_slice)
        .join(format!("cri-containerd-{container}.scope"));
    fs::create_dir_all(&leaf).unwrap_or_else(|e| panic!("creating {}: {e}", leaf.display()));

    let listen: SocketAddr = loopback();
    let mut agent = Agent::start_selecting(
        &agent_binary(),
        listen,
        &["--comm", "java", "--summary", "0", "--interval", "0.5"],
    );
    agent.wait_stderr("following new processes", Duration::from_secs(30));

    // Into the cgroup, then new pid and mount namespaces; inside, a pod's
    // view: the pod name as /etc/hostname and a service account namespace.
    let procs = leaf.join("cgroup.procs");
    let wrap = move |java: Vec<String>| {
        let inner = "mount -t tmpfs tmpfs /run && \
             mkdir -p /run/secrets/kubernetes.io/serviceaccount && \
             echo shop > /run/secrets/kubernetes.io/serviceaccount/namespace && \
             echo cart-7d9f > /run/hostname && mount --bind /run/hostname /etc/hostname && \
             exec \"$0\" \"$@\"";
        let outer = format!(
            "echo $$ > '{}' && exec unshare --fork --pid --mount-proc sh -c '{inner}' \"$0\" \"$@\"",
            procs.display()
        );
        let mut c = Command::new("sh");
        c.arg("-c").arg(outer).args(java);
        c
    };
    let mut p = start_jvm(25, Launch::Direct, 4, "pod", Some(&wrap));

    let want_info = |s: &support::Sample| {
        s.name == "pausewatch_target_info"
            && s.label("pod") == "cart-7d9f"
            && s.label("namespace") == "shop"
    };
    let mut info = None;
    poll(listen, Duration::from_secs(20), |s| {
        info = s.iter().find(|x| want_info(x)).cloned();
        info.is_some()
    });
    fs::write(&p.gate, b"").unwrap();
    let mut c = Checks::new();
    let Some(info) = info else {
        let stderr = agent.stderr_text();
        drop(p);
        let _ = remove_cgroups(&leaf, &base);
        panic!(
            "no pausewatch_target_info with pod=cart-7d9f, namespace=shop; agent stderr:\n{stderr}"
        );
    };
    let pid: u32 = info.label("pid").parse().unwrap();
    c.eq(
        "container_id",
        info.label("container_id"),
        container.as_str(),
    );
    c.eq("pod_uid", info.label("pod_uid"), uid.as_str());
    // The JVM is pid 1 of its own pid namespace: NSpid has two levels.
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let nspid = status
        .lines()
        .find(|l| l.starts_with("NSpid:"))
        .unwrap_or("")
        .to_string();
    let levels: Vec<&str> = nspid.split_whitespace().skip(1).collect();
    c.check(levels.len() == 2 && levels[1] == "1", || {
        format!("pid {pid} is not pid 1 of a new pid namespace: {nspid:?}")
    });
    c.check(
        fs::read_link(format!("/proc/{pid}/ns/mnt")).ok()
            != fs::read_link("/proc/self/ns/mnt").ok(),
        || format!("pid {pid} shares the test's mount namespace"),
    );
    // libjvm.so is opened through the JVM's own mapping of it.
    let probes = support::agent_probes_output(pid);
    let probes = String::from_utf8_lossy(&probes.stdout);
    c.check(
        probes.contains(&format!("(opened through /proc/{pid}/map_files/")),
        || format!("`agent probes` does not open libjvm.so through its mapping:\n{probes}"),
    );
    // And they fire: its System.gc() calls show up.
    c.check(
        poll(listen, Duration::from_secs(20), |s| {
            full_gcs(s, pid).is_some_and(|n| n > 0)
        }),
        || format!("no full GC exported for pid {pid} in the pod"),
    );
    wait_exit(&mut p.process, 40);
    let logged = full_gcs_in_log(&p.log);
    let mut exported = None;
    poll(listen, Duration::from_secs(3), |s| {
        exported = full_gcs(s, pid);
        exported == Some(logged)
    });
    c.eq(
        "full GCs exported vs the pod JVM's -Xlog",
        exported,
        Some(logged),
    );
    println!(
        "pod JVM pid {pid} ({nspid}): labels {:?}, {logged} full GCs",
        info.labels
    );
    let stderr = agent.stderr_text();
    agent.interrupt(Duration::from_secs(10));
    drop(p);
    let cleanup = remove_cgroups(&leaf, &base);
    c.check(cleanup.is_ok(), || {
        format!("removing the test cgroups: {cleanup:?}")
    });
    c.finish(&format!("container labels; agent stderr:\n{stderr}"));
}

/// Removes the test's cgroups, leaf first (each must be empty).
fn remove_cgroups(leaf: &Path, base: &Path) -> std::io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut dir = leaf.to_path_buf();
    loop {
        // An ancestor shared with another run (one that was killed before
        // its own clean-up) keeps that run's folders: leave it to them.
        let has_children =
            dir != leaf && fs::read_dir(&dir)?.any(|e| e.is_ok_and(|e| e.path().is_dir()));
        if has_children {
            return Ok(());
        }
        // The JVM's exit takes a moment to leave the cgroup.
        while let Err(e) = fs::remove_dir(&dir) {
            if Instant::now() >= deadline {
                return Err(e);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if dir == base {
            return Ok(());
        }
        dir = dir.parent().expect("under base").to_path_buf();
    }
}
