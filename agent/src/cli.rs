//! Command-line interface of the `agent` binary.

use std::{net::SocketAddr, path::PathBuf};

use clap::{ArgGroup, Args, Parser, Subcommand};

/// pausewatch: how long, how often and why does the runtime stop my threads?
///
/// Times stop-the-world pauses inside running processes: HotSpot safepoints,
/// VM operations and GC pauses, Go stop-the-world phases, CPython, Node.js
/// (V8) and Ruby collections. eBPF uprobes on the runtime's own probe points:
/// no restart, no agent inside the target, no flag naming the runtime.
/// Pauses are aggregated into histograms in the kernel, each process's
/// workload is classified by rules, and everything is served to Prometheus.
///
/// Needs root (CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE and, on most kernels,
/// CAP_SYS_ADMIN for uprobes). `agent check` says what this host lacks.
#[derive(Debug, Parser)]
// The version names the git commit too (agent/build.rs), so that a report
// from a user's node says exactly which build it was.
#[command(name = "agent", version = env!("PAUSEWATCH_VERSION"), propagate_version = true)]
pub struct Cli {
    /// More log output on stderr (-v: info, -vv: debug). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Trace processes and serve their pauses as Prometheus metrics.
    ///
    /// Example: sudo agent run --pid $(pgrep -f MyService) --events
    Run(RunArgs),
    /// Show the runtime detected in a process and the probes the agent would
    /// attach, with their file offsets. Loads no BPF.
    Probes(ProbesArgs),
    /// Check, without attaching anything, whether this host can run the
    /// agent: privileges, kernel version, uprobes, BPF load (verifier, maps,
    /// ring buffer). Exits non-zero when a required check fails.
    Check,
    /// Workload rules: validate a rules file, or explain a process's profile.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// For `cargo xtask bench` only: attach an empty BPF program at every
    /// probe `run` would attach in a process (the per-event cost floor).
    #[command(hide = true)]
    BenchAttach(BenchAttachArgs),
}

/// Subcommands of `agent rules`.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Validate a rules file and print every rule in force with it (the
    /// built-in rules, extended or replaced by the file's). Without FILE,
    /// prints the built-in rules. A bad file exits non-zero with
    /// FILE:LINE:COLUMN and what is wrong.
    Check {
        /// The rules file (TOML; see the README's "Workload profiles and rules").
        file: Option<PathBuf>,
    },
    /// Attach to a process for one window (--window seconds), then print
    /// every feature of that window, each rule with the values it read and
    /// whether it held, and the profile the findings vote for. Loads BPF
    /// like `agent run`, so it needs the same privileges. A single window
    /// has no previous one, so the trend features are zero and has_prev is
    /// false.
    Explain(ExplainArgs),
}

/// Options of `agent rules explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Process to observe.
    #[arg(short, long, value_name = "PID")]
    pub pid: u32,

    /// How long to observe, in seconds: the window the features cover.
    #[arg(short, long, value_name = "SECS", default_value_t = 10.0)]
    pub window: f64,

    /// Rules file to use instead of (or on top of) the built-in rules.
    #[arg(short, long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
}

/// Options of `agent run`.
#[derive(Debug, Args)]
// At least one is required; `run` checks that itself, to say so in one line.
#[command(group(
    ArgGroup::new("targets")
        .args(["pids", "all", "comms", "exes"])
        .multiple(true)
))]
pub struct RunArgs {
    /// Process to trace; repeat to trace several. The runtime (HotSpot, Go,
    /// CPython, Node.js, Ruby) is detected from the files the process has
    /// mapped.
    #[arg(
        short,
        long = "pid",
        value_name = "PID",
        num_args = 1,
        allow_negative_numbers = true,
        value_parser = parse_pid
    )]
    pub pids: Vec<u32>,

    /// Trace every process on the host whose runtime is supported, and
    /// follow processes as they start and exit.
    #[arg(long)]
    pub all: bool,

    /// Trace (and follow) processes with this command name, the one they
    /// got at exec (e.g. java, node; a later rename such as Node 24's
    /// `MainThread` does not count); repeatable.
    #[arg(long = "comm", value_name = "NAME", num_args = 1)]
    pub comms: Vec<String>,

    /// Trace (and follow) processes whose executable matches this wildcard
    /// (`*`, `?`; without `/` the file name is matched, e.g. 'java*');
    /// repeatable.
    #[arg(long = "exe", value_name = "PATTERN", num_args = 1)]
    pub exes: Vec<String>,

    /// Never trace this pid; repeatable.
    #[arg(long = "exclude-pid", value_name = "PID", num_args = 1)]
    pub exclude_pids: Vec<u32>,

    /// Trace at most N processes at a time; processes left out are counted
    /// in pausewatch_lost_events_total{reason="target_limit"}.
    #[arg(long, value_name = "N")]
    pub max_targets: Option<usize>,

    /// Keep an exited process's series in /metrics this many seconds, so
    /// the last scrape sees its final numbers.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub forget_after: f64,

    /// Address for the Prometheus endpoint (/metrics, /healthz). Binding to
    /// a non-loopback address exposes the metrics to the network and needs
    /// --allow-remote.
    #[arg(short, long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
    pub listen: SocketAddr,

    /// Allow --listen on a non-loopback address (e.g. 0.0.0.0:9464 in a
    /// DaemonSet). The metrics name processes and their pids.
    #[arg(long)]
    pub allow_remote: bool,

    // Time options take values starting with `-` (`-1`, `-inf`) so that the
    // agent's own range check names the option, instead of clap reporting
    // an unknown flag.
    /// Stop after this many seconds (default: run until Ctrl-C or SIGTERM).
    #[arg(allow_hyphen_values = true, short, long, value_name = "SECS")]
    pub duration: Option<f64>,

    /// Also print one JSON line per pause on stdout: pid, tid, runtime,
    /// kind, cause, start_ns (CLOCK_MONOTONIC, same clock as the JVM's
    /// System.nanoTime), duration_ns and, for HotSpot safepoints and Go
    /// 1.23+ stop-the-world pauses, time_to_safepoint_ns (Go: its stopping
    /// time). For HotSpot, also one line per memory pool at the end of
    /// each collection, with kind "pool_gc": pid, runtime, manager, pool,
    /// collection (the manager's count, shared by the pools of one
    /// collection), used_before_bytes, used_after_bytes, committed_bytes,
    /// max_bytes (absent when undefined) and end_ns.
    #[arg(short, long)]
    pub events: bool,

    /// Do not split pauses into running, runnable and blocked time, and do
    /// not name safepoint stragglers. Both come from BPF programs on the
    /// scheduler's sched_switch and sched_waking tracepoints, which run on
    /// every context switch and wake-up of the host (one array lookup
    /// unless a traced pause is open; cost in the README's Performance
    /// table); this turns them off, and pausewatch_pause_thread_seconds_total
    /// and pausewatch_safepoint_straggler_seconds_total with them.
    #[arg(long)]
    pub no_anatomy: bool,

    /// Do not attach HotSpot's memory-pool probes
    /// (hotspot:mem__pool__gc__begin/end, two per pool at every
    /// collection), and so export no heap series; for measuring their cost.
    #[arg(long)]
    pub no_heap: bool,

    /// How often to read the BPF maps into a fresh snapshot for /metrics.
    #[arg(
        allow_hyphen_values = true,
        long,
        value_name = "SECS",
        default_value_t = 1.0
    )]
    pub interval: f64,

    /// Print a live summary on stderr every SECS seconds (0 turns it off):
    /// pauses per second, p50/p99/max and the top causes per target.
    #[arg(
        allow_hyphen_values = true,
        long,
        value_name = "SECS",
        default_value_t = 5.0
    )]
    pub summary: f64,

    /// At exit, and on SIGUSR1, print on stderr one bpftrace-style log2
    /// histogram per process, kind and cause (`@safepoint_ns[PID, COMM,
    /// CAUSE]`) since the agent started, in rows [2^k, 2^(k+1)) ns with
    /// counts and bars: exact sums of the BPF buckets /metrics exports.
    #[arg(long)]
    pub hist: bool,

    /// Length of the sliding window the workload rules look at (profile,
    /// findings, pausewatch_stall_ratio), in seconds; the trend features
    /// compare it with the window before.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub window: f64,

    /// Rules file: extends the built-in rules, or replaces them with
    /// `mode = "replace"` (see `agent rules check`). Re-read on SIGHUP; a
    /// bad file then keeps the previous rules and logs FILE:LINE:COLUMN.
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
}

/// Options of `agent probes`.
#[derive(Debug, Args)]
pub struct ProbesArgs {
    /// Process to inspect.
    #[arg(short, long, value_name = "PID", allow_negative_numbers = true, value_parser = parse_pid)]
    pub pid: u32,
}

/// Options of the hidden `agent bench-attach`.
#[derive(Debug, Args)]
pub struct BenchAttachArgs {
    /// Process whose probe points get the empty program.
    #[arg(short, long, value_name = "PID", required_unless_present = "sched")]
    pub pid: Option<u32>,
    /// Attach empty programs to the scheduler tracepoints of the pause
    /// anatomy (`sched_switch`, `sched_waking`) instead of, or besides,
    /// a process's probes.
    #[arg(long)]
    pub sched: bool,
}

/// A pid is a positive integer no larger than the kernel's pid_max limit
/// (2^22); 0 would mean "every process" to perf_event_open.
fn parse_pid(text: &str) -> Result<u32, String> {
    match text.trim().parse::<i64>() {
        Ok(pid) if (1..=1 << 22).contains(&pid) => Ok(pid as u32),
        Ok(pid) => Err(format!(
            "{pid} is not a process id: pids are positive integers up to 4194304"
        )),
        Err(_) => Err(format!("{text:?} is not a process id (a positive integer)")),
    }
}
