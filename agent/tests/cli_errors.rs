//! The `agent` binary on bad input: every mistake ends with a non-zero exit
//! and one readable `error: ...` line, never a panic or a backtrace.
//!
//! Uses the debug binary cargo builds for this test. The tests that get
//! past the privilege check (an unknown pid, a process that is not a JVM)
//! and the one that drops privileges need root; they fail, not skip,
//! without it. The `--help` and argument-parsing ones run as anyone.

// An integration test reports a failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

const AGENT: &str = env!("CARGO_BIN_EXE_agent");

/// Every flag of `agent run`.
const RUN_FLAGS: [&str; 15] = [
    "--pid",
    "--all",
    "--comm",
    "--exe",
    "--exclude-pid",
    "--max-targets",
    "--forget-after",
    "--listen",
    "--allow-remote",
    "--duration",
    "--events",
    "--interval",
    "--summary",
    "--window",
    "--rules",
];

/// Why most of these tests need root: the agent checks its privileges
/// before anything else.
const PAST_PREFLIGHT: &str = "the agent checks its privileges before anything else, so \
     without root this test cannot reach the error it is about";

fn require_root(test: &str, why: &str) {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "{test} must run as root (euid is {euid}): {why}; \
         run `sudo -E cargo test -p pausewatch-agent --test cli_errors`"
    );
}

/// Runs the agent with `args` (backtraces requested, so that one would show
/// if anything panicked or printed an error's debug form).
fn agent(args: &[&str]) -> Output {
    agent_command(Path::new(AGENT), args)
        .output()
        .unwrap_or_else(|e| panic!("running {AGENT}: {e}"))
}

fn agent_command(bin: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LIB_BACKTRACE", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

fn describe(args: &[&str], out: &Output) -> String {
    format!(
        "agent {}: {}\n--- stdout:\n{}--- stderr:\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// No panic message, backtrace or debug-formatted error in `text`.
fn assert_no_panic_text(text: &str, ctx: &str) {
    for bad in [
        "panicked",
        "backtrace",
        "RUST_BACKTRACE",
        "Stack backtrace",
        "Caused by:",
        "thread 'main'",
    ] {
        assert!(!text.contains(bad), "{bad:?} in the output of {ctx}");
    }
}

/// The agent's own errors (exit 1): exactly one line on stderr, starting
/// with `error: ` and containing `needle`; nothing on stdout.
fn assert_one_line_error(args: &[&str], out: &Output, needle: &str) {
    let ctx = describe(args, out);
    assert!(!out.status.success(), "expected a failure: {ctx}");
    assert!(
        out.status.code().is_some(),
        "killed by a signal, not an error exit: {ctx}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected exactly one line on stderr: {ctx}");
    assert!(
        lines[0].starts_with("error: "),
        "the line does not start with \"error: \": {ctx}"
    );
    assert!(lines[0].contains(needle), "no {needle:?} in: {ctx}");
    assert!(out.stdout.is_empty(), "unexpected stdout: {ctx}");
    assert_no_panic_text(&stderr, &ctx);
}

/// A command-line parsing error (clap, exit 2, or the agent's own value
/// check, exit 1): the first line is the one `error: ` line, naming
/// `needle`; what follows may only be clap's usage hint.
fn assert_usage_error(args: &[&str], out: &Output, needle: &str) {
    let ctx = describe(args, out);
    assert!(!out.status.success(), "expected a failure: {ctx}");
    assert!(
        matches!(out.status.code(), Some(1 | 2)),
        "expected exit 1 or 2: {ctx}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().next().unwrap_or("");
    assert!(
        first.starts_with("error: "),
        "the first line does not start with \"error: \": {ctx}"
    );
    assert!(
        first.contains(needle),
        "no {needle:?} in the first line: {ctx}"
    );
    let error_lines = stderr.lines().filter(|l| l.starts_with("error")).count();
    assert_eq!(error_lines, 1, "more than one error line: {ctx}");
    for l in stderr.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        assert!(
            l.starts_with("Usage:") || l.starts_with("For more information") || l.starts_with("  "),
            "unexpected line {l:?} after the error: {ctx}"
        );
    }
    assert!(out.stdout.is_empty(), "unexpected stdout: {ctx}");
    assert_no_panic_text(&stderr, &ctx);
}

/// A pid that names no process: pids are below pid_max, which is at most
/// 2^22, so this one can never exist (and is the largest `--pid` accepts).
const NO_SUCH_PID: &str = "4194304";

#[test]
fn nonexistent_pid() {
    require_root("nonexistent_pid", PAST_PREFLIGHT);
    let args = ["run", "--pid", NO_SUCH_PID, "--summary", "0"];
    let out = agent(&args);
    assert_one_line_error(&args, &out, &format!("no process with pid {NO_SUCH_PID}"));
}

/// Kills and reaps the child when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn process_without_a_supported_runtime() {
    require_root("process_without_a_supported_runtime", PAST_PREFLIGHT);
    let sleep = Reaped(
        Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .expect("starting `sleep 30`"),
    );
    let pid = sleep.0.id().to_string();
    let args = ["run", "--pid", pid.as_str(), "--summary", "0"];
    let out = agent(&args);
    assert_one_line_error(&args, &out, "runs no supported runtime");
    assert_one_line_error(&args, &out, &format!("pid {pid} (sleep)"));
    // The one sentence names every supported runtime.
    for runtime in ["HotSpot", "CPython", "Node.js"] {
        assert_one_line_error(&args, &out, runtime);
    }
}

/// Whether user `nobody` can execute `path`: every directory above it and
/// the file itself are world-executable.
fn world_executable(path: &Path) -> bool {
    let mode = |p: &Path| std::fs::metadata(p).map(|m| m.permissions().mode());
    if !mode(path).is_ok_and(|m| m & 0o001 != 0) {
        return false;
    }
    path.ancestors()
        .skip(1)
        .all(|dir| mode(dir).is_ok_and(|m| m & 0o001 != 0))
}

/// The agent binary at a path `nobody` can execute: itself if possible,
/// else a copy in a world-readable temporary directory.
fn agent_for_nobody(tmp: &Path) -> PathBuf {
    let own = PathBuf::from(AGENT);
    if world_executable(&own) {
        return own;
    }
    std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = tmp.join("agent");
    std::fs::copy(&own, &copy).expect("copying the agent binary");
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(
        world_executable(&copy),
        "{} is not reachable by nobody (a parent directory of the temporary directory is \
         not world-executable)",
        copy.display()
    );
    copy
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

/// `'text'` for /bin/sh.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[test]
fn refuses_to_run_without_root() {
    require_root(
        "refuses_to_run_without_root",
        "only root can switch to user nobody to run the agent unprivileged",
    );
    let tmp = tempfile::tempdir().expect("creating a temporary directory");
    let bin = agent_for_nobody(tmp.path());
    // Any pid will do: the privilege check comes before anything else.
    let pid = std::process::id().to_string();
    let args = ["run", "--pid", pid.as_str(), "--summary", "0"];
    let (how, out) = if let Some(setpriv) = which("setpriv") {
        // setpriv execs the agent with the uid/gid switched, which clears
        // the effective and permitted capabilities.
        let out = Command::new(setpriv)
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&bin)
            .args(args)
            .env("RUST_BACKTRACE", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .expect("running setpriv");
        ("setpriv", out)
    } else {
        let line = std::iter::once(bin.to_str().expect("UTF-8 path").to_string())
            .chain(args.iter().map(|a| a.to_string()))
            .map(|a| shell_quote(&a))
            .collect::<Vec<_>>()
            .join(" ");
        let out = Command::new("su")
            .args(["nobody", "-s", "/bin/sh", "-c"])
            .arg(format!("RUST_BACKTRACE=1 {line}"))
            .stdin(Stdio::null())
            .output()
            .expect("running su (neither setpriv nor su works?)");
        ("su nobody", out)
    };
    let ctx_args: Vec<&str> = std::iter::once(how).chain(args).collect();
    assert_one_line_error(&ctx_args, &out, "needs root");
}

#[test]
fn help_mentions_every_run_flag() {
    let out = agent(&["--help"]);
    let ctx = describe(&["--help"], &out);
    assert!(out.status.success(), "{ctx}");
    let top = String::from_utf8_lossy(&out.stdout);
    // The top-level help lists the subcommands; `run`'s flags are in its own.
    assert!(
        top.lines().any(|l| l.trim_start().starts_with("run ")),
        "`agent --help` does not list the run subcommand: {ctx}"
    );
    assert!(
        top.contains("root"),
        "`agent --help` does not say it needs root: {ctx}"
    );

    for args in [&["run", "--help"][..], &["run", "-h"], &["help", "run"]] {
        let out = agent(args);
        let ctx = describe(args, &out);
        assert!(out.status.success(), "{ctx}");
        let text = String::from_utf8_lossy(&out.stdout);
        for flag in RUN_FLAGS {
            assert!(text.contains(flag), "{flag} missing from the help: {ctx}");
        }
        assert_no_panic_text(&text, &ctx);
    }
}

#[test]
fn invalid_duration() {
    // Negative numbers are values, not flags: the agent's own check names
    // the option, with or without `=`.
    let args = ["run", "--pid", "1", "--duration", "-1"];
    assert_usage_error(&args, &agent(&args), "--duration takes a positive number");
    let args = ["run", "--pid", "1", "--duration=-1"];
    assert_usage_error(&args, &agent(&args), "--duration");
    let args = ["run", "--pid", "1", "--duration", "soon"];
    assert_usage_error(&args, &agent(&args), "--duration");
    let args = ["run", "--pid", "1", "--interval", "0"];
    assert_usage_error(&args, &agent(&args), "--interval");
}

#[test]
fn invalid_listen_address() {
    let args = ["run", "--pid", "1", "--listen", "garbage"];
    let out = agent(&args);
    assert_usage_error(&args, &out, "--listen");
    assert_usage_error(&args, &out, "garbage");
    let args = ["run", "--pid", "1", "--listen", "127.0.0.1:99999"];
    assert_usage_error(&args, &agent(&args), "--listen");
}

#[test]
fn invalid_pid() {
    let args = ["run", "--pid", "abc"];
    assert_usage_error(&args, &agent(&args), "--pid");
}

#[test]
fn no_target_selection() {
    // Without --pid, --all, --comm or --exe there is nothing to trace.
    let args = ["run", "--summary", "0"];
    let out = agent(&args);
    assert_usage_error(&args, &out, "--all");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--pid"), "{}", describe(&args, &out));
    // Exclusions and limits alone select nothing either.
    let args = ["run", "--exclude-pid", "1"];
    assert_usage_error(&args, &agent(&args), "--all");
}

#[test]
fn invalid_host_wide_options() {
    let args = ["run", "--all", "--max-targets", "0"];
    assert_usage_error(&args, &agent(&args), "--max-targets");
    let args = ["run", "--all", "--max-targets", "-3"];
    assert_usage_error(&args, &agent(&args), "-3");
    let args = ["run", "--all", "--forget-after=-1"];
    assert_usage_error(&args, &agent(&args), "--forget-after");
    let args = ["run", "--all", "--exclude-pid", "x"];
    assert_usage_error(&args, &agent(&args), "--exclude-pid");
}

/// NaN, infinities, negative, zero, tiny and huge values of every time
/// option: one clear line naming the option, never a panic.
#[test]
fn time_options_out_of_range() {
    for flag in ["--interval", "--duration", "--summary"] {
        for value in ["NaN", "inf", "-inf", "-1", "-0.5", "1e300", "1e10"] {
            let args = ["run", "--pid", "1", flag, value];
            let out = agent(&args);
            assert_usage_error(&args, &out, flag);
            assert_eq!(out.status.code(), Some(1), "{}", describe(&args, &out));
        }
    }
    let args = ["run", "--pid", "1", "--interval", "1e-300"];
    assert_usage_error(&args, &agent(&args), "--interval 1e-300 is too small");
    let args = ["run", "--pid", "1", "--summary", "1e10"];
    assert_usage_error(&args, &agent(&args), "at most 1e9 seconds");
}

#[test]
fn pid_out_of_range() {
    for pid in ["-1", "0", "4194305", "99999999999", "1.5", ""] {
        let args = ["run", "--pid", pid];
        let out = agent(&args);
        assert_usage_error(&args, &out, "is not a process id");
    }
    let args = ["probes", "--pid", "-7"];
    assert_usage_error(&args, &agent(&args), "-7 is not a process id");
}

/// A non-loopback --listen needs --allow-remote, and the error says so
/// (checked before privileges, so this runs as anyone).
#[test]
fn remote_listen_needs_the_flag() {
    for listen in ["0.0.0.0:9464", "[::]:9464", "192.0.2.1:9464"] {
        let args = ["run", "--pid", "1", "--listen", listen];
        let out = agent(&args);
        assert_one_line_error(&args, &out, "add --allow-remote");
    }
}
