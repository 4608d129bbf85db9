//! One scenario for every runtime of the version matrix: start the runtime
//! with its own pause log, attach the agent, let the workload run, scrape,
//! and compare the agent's per-cause counts and sums with the log.
//!
//! A runtime takes part by implementing [`Subject`]: how to let its
//! workload run, and how to read its own log into per-cause [`Tally`]s over
//! the [`Window`] the agent was armed for. [`attach_and_compare`] does the
//! rest the same way for all of them; [`observe`] is its first half
//! (attach, run, scrape, stop), for tests that compare in their own way.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitStatus;
use std::time::Duration;

use xtask::scripted::ScriptWorkload;
use xtask::workloads::monotonic_now_ns;

use super::{
    Checks, Sample, agent_binary,
    events::{Event, parse_events},
    http_get, loopback, ms, parse_prometheus, ratio, sum_by, sum_of,
};

/// The agent's `--interval` in scenarios.
const INTERVAL_SECS: f64 = 0.5;

/// CLOCK_MONOTONIC instants that delimit a comparison.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// The agent process was started (probes get attached after this).
    pub agent_spawned_ns: u64,
    /// The test read the agent's "armed" line: every probe is attached.
    pub armed_ns: u64,
    /// Just before the scrape.
    pub scrape_ns: u64,
}

/// How many pauses of one cause, and their summed duration.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    /// How many pauses.
    pub count: f64,
    /// Their summed duration, in ns.
    pub sum_ns: f64,
}

/// A runtime under test, started with its own log and held at its gate.
pub trait Subject {
    /// For tables and messages, e.g. `JDK 11.0.13 -XX:+UseSerialGC`.
    fn describe(&self) -> String;
    /// The traced process.
    fn pid(&self) -> u32;
    /// The `runtime` label the agent must give it.
    fn runtime(&self) -> &'static str;
    /// What the agent's "armed" line must name besides the pid: the
    /// runtime, or more (`hotspot 17.`).
    fn armed_names(&self) -> String {
        self.runtime().to_string()
    }
    /// The `kind` label of the pauses compared.
    fn kind(&self) -> &'static str;
    /// The fewest pauses the log must hold for the run to prove anything.
    fn min_pauses(&self) -> f64 {
        10.0
    }
    /// Causes the runtime keeps no count of (Ruby counts collections, not
    /// its lazy sweep steps): the agent's count of these is not compared,
    /// and their time goes into the total only, against the log's causes
    /// whose time includes it.
    fn uncounted_causes(&self) -> &'static [&'static str] {
        &[]
    }
    /// Opens the gate and returns once the workload has finished and the
    /// process exited the way it would have untraced. Panics otherwise.
    fn run(&mut self);
    /// What the runtime's own log says, per cause, over `window`. The
    /// agent's counts are given so that a pause at the very front edge
    /// (begun while the probes were being attached) is taken in only if the
    /// agent saw it.
    fn truth(
        &mut self,
        window: &Window,
        agent_counts: &BTreeMap<String, f64>,
    ) -> BTreeMap<String, Tally>;
    /// Pauses the agent timed well past the log's bound because the
    /// pausing thread was preempted after the runtime had stamped its log
    /// line, and the agent's time after that stamp in them: the summed-time
    /// check leaves that time out, the events having been bounded one by
    /// one. Only a runtime whose log stamps the end of each pause can tell.
    fn preempted_after_log(
        &mut self,
        window: &Window,
        agent_counts: &BTreeMap<String, f64>,
        events: &[Event],
    ) -> (usize, f64) {
        let _ = (window, agent_counts, events);
        (0, 0.0)
    }
}

/// How far the agent's summed pause time may be from the log's.
#[derive(Debug, Clone, Copy)]
pub struct SumTolerance {
    /// A fraction of the log's sum.
    pub relative: f64,
    /// Plus this much per pause, where the agent's window is known to
    /// include a fixed cost the log's excludes (HotSpot's `safepoint__end`
    /// fires after its `-Xlog` line is written).
    pub per_pause_ns: f64,
    /// Hold each cause's sum to the tolerance too, not only the total.
    pub per_cause: bool,
}

impl SumTolerance {
    /// Whether `agent` is close enough to `log` over `pauses` pauses.
    fn holds(&self, agent: f64, log: f64, pauses: f64) -> bool {
        (agent - log).abs() <= self.relative * log + self.per_pause_ns * pauses
    }
}

/// What a scenario saw, for checks of the caller's own before
/// [`Outcome::finish`].
pub struct Outcome {
    /// The scenario's checks so far.
    pub checks: Checks,
    /// The per-cause comparison, for the failure message and the log.
    pub table: String,
    /// The agent's `--events` lines.
    pub events: Vec<String>,
    /// The final scrape.
    pub samples: Vec<Sample>,
    /// Everything the agent wrote to stderr.
    pub stderr: String,
}

impl Outcome {
    /// Prints the table and fails the test if any check failed.
    pub fn finish(self) {
        eprintln!("{}", self.table);
        self.checks
            .finish(&format!("{}\nagent stderr:\n{}", self.table, self.stderr));
    }
}

/// What one attach → run → scrape → stop of a [`Subject`] produced.
pub struct Observation {
    /// The instants that delimit the comparison.
    pub window: Window,
    /// The agent's "armed" line.
    pub armed: String,
    /// The scrape taken after the workload finished.
    pub samples: Vec<Sample>,
    /// The agent's stdout lines (`--events`, when asked for).
    pub events: Vec<String>,
    /// The agent's exit status after SIGINT (`None`: not within the
    /// timeout, and killed).
    pub status: Option<ExitStatus>,
    /// Everything the agent wrote to stderr.
    pub stderr: String,
}

/// Attaches `agent run --pid <subject> --interval 0.5 <args...>` to
/// `subject`, asserts that its "armed" line names the pid and
/// [`Subject::armed_names`], runs the subject, lets the agent take two fresh
/// snapshots, scrapes it and stops it with SIGINT, waiting up to
/// `stop_within`.
pub fn observe(subject: &mut dyn Subject, args: &[&str], stop_within: Duration) -> Observation {
    let name = subject.describe();
    let pid = subject.pid();
    let listen = loopback();
    let interval = INTERVAL_SECS.to_string();
    let mut agent_args = vec!["--interval", interval.as_str()];
    agent_args.extend_from_slice(args);
    let mut agent = super::Agent::start(&agent_binary(), pid, listen, &agent_args);
    let (armed_ns, armed) = agent.wait_stderr("armed in", Duration::from_secs(30));
    assert!(
        armed.contains(&format!("tracing pid {pid} (")) && armed.contains(&subject.armed_names()),
        "{name}: unexpected armed line: {armed}"
    );

    subject.run();
    // Two fresh snapshots of the collector, then the scrape.
    std::thread::sleep(Duration::from_secs_f64(INTERVAL_SECS * 2.5));
    let scrape_ns = monotonic_now_ns();
    let samples = parse_prometheus(&http_get(listen, "/metrics"));
    let (status, events) = agent.interrupt(stop_within);
    Observation {
        window: Window {
            agent_spawned_ns: agent.spawned_ns,
            armed_ns,
            scrape_ns,
        },
        armed,
        samples,
        events,
        status,
        stderr: agent.stderr_text(),
    }
}

/// Attaches the release agent (with `--events`) to `subject`, runs it, and
/// checks that per cause the counts are equal and the sums within
/// `tolerance`, that nothing was lost, and that the agent exited cleanly
/// without complaint.
pub fn attach_and_compare(subject: &mut dyn Subject, tolerance: SumTolerance) -> Outcome {
    let name = subject.describe();
    let pid = subject.pid();
    let Observation {
        window,
        armed,
        samples,
        events,
        status,
        stderr,
    } = observe(
        subject,
        &["--events", "--summary", "0"],
        Duration::from_secs(10),
    );

    let pid_s = pid.to_string();
    let want = [
        ("pid", pid_s.as_str()),
        ("runtime", subject.runtime()),
        ("kind", subject.kind()),
    ];
    let counts = sum_by(&samples, "pausewatch_pause_seconds_count", "cause", &want);
    let sums = sum_by(&samples, "pausewatch_pause_seconds_sum", "cause", &want);
    let truth = subject.truth(&window, &counts);

    let mut c = Checks::new();
    c.check(status.is_some_and(|s| s.success()), || {
        format!("the agent did not exit 0 within 10 s of SIGINT ({status:?})")
    });
    check_quiet(&mut c, &stderr);
    let logged: f64 = truth.values().map(|t| t.count).sum();
    c.check(logged >= subject.min_pauses(), || {
        format!(
            "the log holds only {logged} pauses (want >= {}): the workload is broken",
            subject.min_pauses()
        )
    });
    c.eq(
        "lost events",
        sum_of(&samples, "pausewatch_lost_events_total", &[]),
        0.0,
    );
    let mut table = format!(
        "{name}: {armed}\n{:<44} {:>6} {:>6} {:>11} {:>11} {:>7}\n",
        "cause", "log", "agent", "log ms", "agent ms", "ratio"
    );
    let mut causes: Vec<&String> = truth.keys().chain(counts.keys()).collect();
    causes.sort();
    causes.dedup();
    let (mut log_sum, mut agent_sum) = (0.0, 0.0);
    for cause in causes {
        let t = truth.get(cause).copied().unwrap_or_default();
        let n = counts.get(cause).copied().unwrap_or(0.0);
        let s = sums.get(cause).copied().unwrap_or(0.0) * 1e9;
        log_sum += t.sum_ns;
        agent_sum += s;
        let _ = writeln!(
            table,
            "{cause:<44} {:>6} {n:>6} {:>11} {:>11} {:>7.4}",
            t.count,
            ms(t.sum_ns),
            ms(s),
            ratio(s, t.sum_ns)
        );
        if subject.uncounted_causes().contains(&cause.as_str()) {
            continue;
        }
        c.eq(&format!("{name}: count of {cause}"), n, t.count);
        if tolerance.per_cause {
            c.check(tolerance.holds(s, t.sum_ns, t.count), || {
                format!(
                    "{name}: summed {cause} time: agent {} ms, log {} ms (ratio {:.4})",
                    ms(s),
                    ms(t.sum_ns),
                    ratio(s, t.sum_ns)
                )
            });
        }
    }
    let _ = writeln!(
        table,
        "{:<44} {logged:>6} {:>6} {:>11} {:>11} {:>7.4}",
        "all",
        counts.values().sum::<f64>(),
        ms(log_sum),
        ms(agent_sum),
        ratio(agent_sum, log_sum)
    );
    let (preempted, preempted_ns) =
        subject.preempted_after_log(&window, &counts, &parse_events(&events));
    if preempted > 0 {
        let _ = writeln!(
            table,
            "left out of the sum: {} ms after the log line's stamp in {preempted} preempted pauses",
            ms(preempted_ns)
        );
    }
    let agent_sum = agent_sum - preempted_ns;
    c.check(tolerance.holds(agent_sum, log_sum, logged), || {
        format!(
            "{name}: summed pause time: agent {} ms, log {} ms, off by {:+.1} µs per pause; \
             allowed {:.1}% + {:.1} µs per pause",
            ms(agent_sum),
            ms(log_sum),
            (agent_sum - log_sum) / logged.max(1.0) / 1e3,
            tolerance.relative * 100.0,
            tolerance.per_pause_ns / 1e3
        )
    });
    let _ = writeln!(
        table,
        "agent - log per pause: {:+.1} µs",
        (agent_sum - log_sum) / logged.max(1.0) / 1e3
    );
    Outcome {
        checks: c,
        table,
        events,
        samples,
        stderr,
    }
}

/// Checks that the agent's `stderr` has no line with an error, a warning or
/// a panic in it.
pub fn check_quiet(c: &mut Checks, stderr: &str) {
    for line in stderr.lines() {
        let l = line.to_ascii_lowercase();
        c.check(
            !(l.contains("error") || l.contains("warn") || l.contains("panic")),
            || format!("the agent complained on stderr: {line}"),
        );
    }
}

/// Opens the gate of a bundled script (`xtask::scripted`) and returns its
/// `done` report once its measured phase ended.
pub fn run_gated_script(script: &mut ScriptWorkload) -> String {
    script.go().unwrap_or_else(|e| panic!("{e:#}"));
    script
        .wait_done(Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e:#}"))
}
