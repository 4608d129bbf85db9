//! Command-line interface of the `agent` binary.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};

/// pausewatch: how long, how often and why does the runtime stop my threads?
///
/// Times stop-the-world pauses (HotSpot safepoints, VM operations and GC
/// pauses) inside running processes with eBPF uprobes on the runtime's own
/// probe points: no restart, no agent inside the target. Pauses are
/// aggregated into histograms in the kernel and served to Prometheus.
///
/// Needs root (or CAP_BPF, CAP_PERFMON and CAP_SYS_PTRACE).
#[derive(Debug, Parser)]
#[command(name = "agent", version, propagate_version = true)]
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
}

/// Options of `agent run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Process to trace; repeat to trace several. The runtime (HotSpot, ...)
    /// is detected from the libraries the process has mapped.
    #[arg(
        short,
        long = "pid",
        value_name = "PID",
        required = true,
        num_args = 1,
        allow_negative_numbers = true,
        value_parser = parse_pid
    )]
    pub pids: Vec<u32>,

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
    /// System.nanoTime), duration_ns and, for safepoints,
    /// time_to_safepoint_ns.
    #[arg(short, long)]
    pub events: bool,

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
}

/// Options of `agent probes`.
#[derive(Debug, Args)]
pub struct ProbesArgs {
    /// Process to inspect.
    #[arg(short, long, value_name = "PID", allow_negative_numbers = true, value_parser = parse_pid)]
    pub pid: u32,
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
