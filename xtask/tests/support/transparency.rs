//! "The agent changes nothing in its targets": runs a deterministic workload
//! twice, once alone and once traced by the agent, and returns both
//! outcomes for the caller to compare. Any runtime can use it; the workload
//! only has to follow a small protocol:
//!
//! 1. print a line equal to `ready` on stdout once the runtime is loaded;
//! 2. wait for one line on stdin (the agent is attached in between);
//! 3. do its deterministic work, print results, exit with a status of its
//!    choice. Output and status must depend on nothing but the arguments.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::child::Process;
use super::{Agent, http_get, loopback, parse_prometheus, sum_of};

/// What one run of the workload produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Every line it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
    /// Its exit code (`None`: killed by a signal).
    pub status: Option<i32>,
}

/// The traced run's extras: how many pauses the agent counted for the
/// workload (proof that it really traced it) and its stderr.
pub struct Traced {
    /// What the traced run produced.
    pub outcome: Outcome,
    /// The pauses the agent counted for it.
    pub pauses_counted: f64,
    /// Everything the agent printed on stderr.
    pub agent_stderr: String,
    /// The agent's exit status after SIGINT.
    pub agent_status: Option<ExitStatus>,
}

/// Runs `make()` to completion; with `agent` set, attaches it (`agent run
/// --pid <workload>`) after `ready` and before releasing the workload, and
/// scrapes it once the workload has exited.
fn run_once(make: &dyn Fn() -> Command, agent: Option<&Path>, timeout: Duration) -> Traced {
    let started = Instant::now();
    let mut cmd = make();
    let what = format!("the workload {cmd:?}");
    let mut child = Process::spawn(
        what.as_str(),
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let pid = child.pid();
    let first = child.next_line(timeout).unwrap_or_default();
    assert_eq!(
        first.trim_end(),
        "ready",
        "{what} did not start with \"ready\""
    );

    let mut tracer = agent.map(|bin| {
        let listen: SocketAddr = loopback();
        let mut a = Agent::start(bin, pid, listen, &["--summary", "0", "--interval", "0.2"]);
        a.wait_stderr("armed in", Duration::from_secs(30));
        a
    });
    child.release();
    let status = child
        .wait_exit(timeout.saturating_sub(started.elapsed()))
        .unwrap_or_else(|| panic!("{what} did not finish within {timeout:?}"));
    // Every line, `ready` included, as it printed them.
    let out: String = child
        .stdout_lines()
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    let err = child.stderr_to_end();
    let outcome = Outcome {
        stdout: out,
        stderr: err,
        status: status.code(),
    };
    match tracer.as_mut() {
        None => Traced {
            outcome,
            pauses_counted: 0.0,
            agent_stderr: String::new(),
            agent_status: None,
        },
        Some(a) => {
            // Two collection intervals, so the last pauses are in.
            std::thread::sleep(Duration::from_millis(600));
            let samples = parse_prometheus(&http_get(a.listen, "/metrics"));
            let pid_text = pid.to_string();
            let pauses = sum_of(
                &samples,
                "pausewatch_pause_seconds_count",
                &[("pid", pid_text.as_str())],
            );
            let (agent_status, _) = a.interrupt(Duration::from_secs(10));
            Traced {
                outcome,
                pauses_counted: pauses,
                agent_stderr: a.stderr_text(),
                agent_status,
            }
        }
    }
}

/// Runs the workload alone, then traced; returns (untraced, traced).
pub fn untraced_and_traced(
    make: &dyn Fn() -> Command,
    agent: &Path,
    timeout: Duration,
) -> (Outcome, Traced) {
    let alone = run_once(make, None, timeout).outcome;
    let traced = run_once(make, Some(agent), timeout);
    (alone, traced)
}
