//! The CPython collection comparison shared by the end-to-end tests of
//! every interpreter and every way of running one (directly, in a chroot,
//! behind pivot_root): the agent traces `workloads/python/gc_cycles.py`
//! and its per-generation counts and summed durations are checked against
//! the script's own `gc.callbacks` account (see `e2e_cpython.rs` for the
//! order of events and the tolerances).

use std::process::Command;
use std::time::Duration;

use xtask::groundtruth::cpython::{GcReport, parse_report};
use xtask::scripted::ScriptWorkload;

use super::{
    Agent, Checks, agent_binary, free_port, http_get, ms, parse_prometheus, ratio, sum_by, sum_of,
};

/// Length of the script's measured phase, its first argument.
pub const SECONDS: &str = "4";
/// The agent's `--interval`.
const INTERVAL_SECS: f64 = 0.5;
/// Tolerance of the summed durations (fraction of the script's).
const SUM_TOLERANCE: f64 = 0.10;

/// Traces `py`, a `gc_cycles.py` that printed nothing yet, and checks
/// every generation's count (exact) and summed duration (within 10%)
/// against the script's report; `version` (`3.11`) is what `agent probes`
/// and the agent's "tracing" line must name. Panics with a table on any
/// mismatch.
pub fn check_gc_generations(mut py: ScriptWorkload, version: &str) {
    let agent_bin = agent_binary();
    py.wait_ready(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let pid = py.pid();

    // `agent probes` names the runtime and both probes.
    let probes = Command::new(&agent_bin)
        .args(["probes", "--pid", &pid.to_string()])
        .output()
        .expect("running agent probes");
    let probes_text = String::from_utf8_lossy(&probes.stdout).to_string();
    assert!(
        probes.status.success()
            && probes_text.contains(&format!("cpython {version}"))
            && probes_text.contains("python:gc__start")
            && probes_text.contains("python:gc__done"),
        "agent probes --pid {pid} did not show CPython and its probes:\n{probes_text}\n{}",
        String::from_utf8_lossy(&probes.stderr)
    );

    let listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let interval = INTERVAL_SECS.to_string();
    let mut agent = Agent::start(
        &agent_bin,
        pid,
        listen,
        &["--summary", "0", "--interval", &interval],
    );
    let (_, armed) = agent.wait_stderr("armed in", Duration::from_secs(30));
    eprintln!("{armed}");
    assert!(
        armed.contains(&format!("tracing pid {pid} ("))
            && armed.contains(&format!("cpython {version}")),
        "unexpected armed line: {armed}"
    );

    py.go().unwrap_or_else(|e| panic!("{e:#}"));
    let json = py
        .wait_done(Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let report = parse_report(&json).unwrap_or_else(|e| panic!("{e:#}"));

    std::thread::sleep(Duration::from_secs_f64(INTERVAL_SECS * 2.5));
    let samples = parse_prometheus(&http_get(listen, "/metrics"));
    let (status, _) = agent.interrupt(Duration::from_secs(5));
    let stderr = agent.stderr_text();
    assert!(
        status.is_some_and(|s| s.success()),
        "the agent did not exit 0 within 5 s of SIGINT ({status:?}); stderr:\n{stderr}"
    );
    py.finish(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}"));

    let pid_text = pid.to_string();
    let want = [
        ("pid", pid_text.as_str()),
        ("runtime", "cpython"),
        ("kind", "gc"),
    ];
    let counts = sum_by(&samples, "pausewatch_pause_seconds_count", "cause", &want);
    let sums = sum_by(&samples, "pausewatch_pause_seconds_sum", "cause", &want);
    let mut checks = Checks::new();
    let mut table = format!(
        "CPython {version} workload: {} rounds in {:.2} s ({:.0} rounds/s)\n\
         {:<6} {:>8} {:>8} {:>12} {:>12} {:>7}\n",
        report.rounds,
        report.elapsed_ns as f64 / 1e9,
        report.rounds_per_second,
        "cause",
        "script",
        "agent",
        "script ms",
        "agent ms",
        "ratio"
    );
    for g in 0..3 {
        let cause = GcReport::cause(g);
        let n = counts.get(&cause).copied().unwrap_or(0.0);
        let s = sums.get(&cause).copied().unwrap_or(0.0) * 1e9;
        let want_n = report.counts[g];
        let want_s = report.durations_ns[g] as f64;
        table.push_str(&format!(
            "{cause:<6} {want_n:>8} {n:>8} {:>12} {:>12} {:>7.4}\n",
            ms(want_s),
            ms(s),
            ratio(s, want_s)
        ));
        checks.check(want_n > 0, || {
            format!("the script ran no {cause} collection; the workload is broken")
        });
        checks.eq(&format!("{cause} collections"), n, want_n as f64);
        checks.within(
            &format!("{cause} summed duration (s)"),
            s / 1e9,
            want_s / 1e9,
            SUM_TOLERANCE,
        );
    }
    let unexpected: Vec<&String> = counts
        .keys()
        .filter(|c| !["gen0", "gen1", "gen2"].contains(&c.as_str()))
        .collect();
    checks.check(unexpected.is_empty(), || {
        format!("causes other than gen0..gen2: {unexpected:?}")
    });
    checks.eq(
        "lost events",
        sum_of(&samples, "pausewatch_lost_events_total", &[]),
        0.0,
    );
    for line in stderr.lines() {
        let l = line.to_ascii_lowercase();
        checks.check(
            !(l.contains("error") || l.contains("warn") || l.contains("panic")),
            || format!("the agent complained on stderr: {line}"),
        );
    }
    eprintln!("{table}");
    checks.finish(&format!(
        "{table}\nagent stderr:\n{stderr}\n{}",
        probes_text
    ));
}
