//! `agent rules check`, and `--rules`/`--window` of `agent run`, on good and
//! bad input: a bad rules file ends with a non-zero exit and one
//! `error: FILE:LINE:COLUMN: ...` line. None of these load BPF: the rules
//! are checked before the privilege check, so they run as anyone.

// An integration test reports a failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

const AGENT: &str = env!("CARGO_BIN_EXE_agent");

fn agent(args: &[&str]) -> Output {
    Command::new(AGENT)
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {AGENT}: {e}"))
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Exit 1 with exactly `want` as the one stderr line, nothing on stdout.
fn assert_error(args: &[&str], want: &str) {
    let out = agent(args);
    let (stdout, stderr) = text(&out);
    let ctx = format!("agent {args:?}: {}\n{stdout}\n{stderr}", out.status);
    assert_eq!(out.status.code(), Some(1), "{ctx}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines, [want], "{ctx}");
    assert!(stdout.is_empty(), "{ctx}");
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn check_prints_the_built_in_rules() {
    let out = agent(&["rules", "check"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    for rule in [
        "gc_overhead",
        "long_pauses",
        "time_to_safepoint",
        "full_gc",
        "idle",
    ] {
        assert!(
            stdout.contains(&format!("\nrule {rule} (")),
            "{rule}: {stdout}"
        );
    }
    assert!(stdout.contains("<built-in rules>: OK, "), "{stdout}");
}

#[test]
fn check_extends_and_replaces() {
    let dir = tempfile::tempdir().unwrap();
    let rule = "[[rule]]\nname = \"mine\"\nwhen = \"p99_ms > 10.0\"\nseverity = \"info\"\nadvice = \"p99 {p99_ms} ms\"\n";
    let extend = write(dir.path(), "extend.toml", rule);
    let out = agent(&["rules", "check", &extend]);
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    assert!(stdout.contains("\nrule mine ("), "{stdout}");
    assert!(stdout.contains("\nrule gc_overhead ("), "{stdout}");

    let replace = write(
        dir.path(),
        "replace.toml",
        &format!("mode = \"replace\"\nconfirm = 5\n{rule}"),
    );
    let out = agent(&["rules", "check", &replace]);
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    assert!(stdout.contains("\nrule mine ("), "{stdout}");
    assert!(!stdout.contains("gc_overhead"), "{stdout}");
    assert!(stdout.contains("need 5 evaluations"), "{stdout}");
    assert!(
        stdout.ends_with(&format!("{replace}: OK, 1 rules\n")),
        "{stdout}"
    );
}

#[test]
fn bad_files_name_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let head = "# my rules\n[[rule]]\nname = \"x\"\n";
    let tail = "severity = \"info\"\nadvice = \"a\"\n";
    let unknown = write(
        dir.path(),
        "unknown.toml",
        &format!("{head}when = \"p99_ms > 1.0 || stal_ratio > 0.1\"\n{tail}"),
    );
    assert_error(
        &["rules", "check", &unknown],
        &format!(
            "error: {unknown}:4:25: in condition of rule `x`: unknown feature `stal_ratio`; \
             features are: {}",
            FEATURE_LIST
        ),
    );
    let syntax = write(
        dir.path(),
        "syntax.toml",
        &format!("{head}when = \"p99_ms > (1.0\"\n{tail}"),
    );
    let out = agent(&["rules", "check", &syntax]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.starts_with(&format!(
            "error: {syntax}:4:22: in condition of rule `x`: syntax error: missing ')' at '<EOF>'"
        )),
        "{stderr}"
    );
    let types = write(
        dir.path(),
        "types.toml",
        &format!("{head}when = \"top_cause > 3.0\"\n{tail}"),
    );
    assert_error(
        &["rules", "check", &types],
        &format!(
            "error: {types}:4:19: in condition of rule `x`: cannot compare a string with a \
             number (double) using `>`"
        ),
    );
    let dup = write(
        dir.path(),
        "dup.toml",
        &format!("{head}when = \"true\"\n{tail}\n[[rule]]\nname = \"x\"\nwhen = \"true\"\n{tail}"),
    );
    assert_error(
        &["rules", "check", &dup],
        &format!("error: {dup}:9:8: duplicate rule name `x`: each rule needs its own name"),
    );
    // `agent run` rejects the same file before it needs root or a process.
    assert_error(
        &["run", "--pid", "1", "--rules", &dup, "--summary", "0"],
        &format!("error: {dup}:9:8: duplicate rule name `x`: each rule needs its own name"),
    );
    let missing = dir.path().join("missing.toml");
    let missing = missing.to_str().unwrap();
    assert_error(
        &["rules", "check", missing],
        &format!("error: cannot read rules file {missing}: No such file or directory (os error 2)"),
    );
}

/// Every feature, in the order `agent/src/rules/features.rs` documents them.
const FEATURE_LIST: &str = "runtime, window_s, pauses, pauses_per_min, stall_ratio, p50_ms, \
p95_ms, p99_ms, max_ms, tts_share, tts_p99_ms, gc_share, running_share, runnable_share, \
blocked_share, workers_runnable_share, cpu_limit_cores, gc_per_min, full_gc_per_min, \
cause_share, cause_time_share, top_cause, top_cause_share, has_prev, prev_stall_ratio, \
prev_pauses_per_min, prev_p99_ms, stall_trend, top_straggler, top_straggler_share, \
alloc_mb_per_s, promotion_mb_per_s, promotion_share, alloc_per_gc_mb, live_set_mb, \
live_set_ratio, old_max_mb, suggested_heap_mb, heap_after_gc_ratio, explicit_gc_share";

#[test]
fn window_must_be_positive() {
    for w in ["0", "-3", "nan"] {
        let arg = format!("--window={w}");
        let out = agent(&["run", "--pid", "1", &arg]);
        let (_, stderr) = text(&out);
        assert!(matches!(out.status.code(), Some(1 | 2)), "{stderr}");
        assert!(
            stderr.lines().next().unwrap_or("").starts_with("error: ")
                && stderr.contains("--window"),
            "{stderr}"
        );
    }
}

#[test]
fn help_documents_the_rule_flags() {
    let out = agent(&["run", "--help"]);
    let (stdout, _) = text(&out);
    assert!(stdout.contains("--window <SECS>") && stdout.contains("--rules <FILE>"));
    assert!(stdout.contains("SIGHUP"), "{stdout}");
    let out = agent(&["rules", "explain", "--help"]);
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    for needle in [
        "--pid <PID>",
        "--window <SECS>",
        "--rules <FILE>",
        "has_prev",
    ] {
        assert!(stdout.contains(needle), "{needle}: {stdout}");
    }
}
