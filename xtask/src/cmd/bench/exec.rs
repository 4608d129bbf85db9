//! Exec to traced: how soon after a process starts the follow modes
//! (`agent run --comm ...`) have its probes attached. Pauses a process
//! takes before that are not seen, so this is what a short-lived job (a
//! CLI, a test run, a batch step) loses.
//!
//! One agent follows the programs' command names while the bench starts
//! each program several times, one after another; the agent's own line
//! for each process ("found in F ms, N probes attached in X ms, Y ms after
//! exec", its clock against the kernel's exec event) gives the figures:
//! exec to traced, the inspection and runtime detection alone (where the
//! parse cache shows), and the attach. The first
//! process of each runtime file is reported apart: it is the one that
//! finds the file's page cache cold for the agent's parser, and the only
//! one that pays for the parse (`discovery::cache` keeps it for the rest).

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::{
    Plan,
    procs::{Tracer, free_port},
    report::{Figure, Report},
};
use crate::util::{step, workspace_root};
use xtask::workloads::find_java;

/// The Node.js whose 127 MB `node` is the slowest file to look up.
const NODE_VERSION: &str = "24.22.3";

/// A program the follow mode picks up by its command name.
struct Program {
    /// For figure names.
    label: &'static str,
    /// What it runs.
    describe: &'static str,
    /// Its command name at exec, as `--comm` matches it.
    comm: &'static str,
}

const PROGRAMS: [Program; 3] = [
    Program {
        label: "cpython",
        describe: "/usr/bin/python3.11 sleeping 0.4 s",
        comm: "python3.11",
    },
    Program {
        label: "node24",
        describe: "Node 24's official `node` (127 MB) waiting 0.4 s",
        comm: "node",
    },
    Program {
        label: "jvm",
        describe: "JDK 17's java launching a one-file program that sleeps 0.4 s",
        comm: "java",
    },
];

/// Runs the exec-to-traced figures.
pub fn exec_to_traced(plan: &Plan, agent: &Path, report: &mut Report) -> Result<()> {
    // The quick run leaves the JVM out: its start-up alone is a second.
    let programs: Vec<&Program> = PROGRAMS
        .iter()
        .filter(|p| !(plan.exec_runs < 10 && p.label == "jvm"))
        .collect();
    step(format!(
        "exec to traced: {} runs each of {} under `agent run --comm`",
        plan.exec_runs,
        programs
            .iter()
            .map(|p| p.label)
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let commands: Vec<(&Program, Command)> = programs
        .iter()
        .map(|p| Ok((*p, command(p)?)))
        .collect::<Result<_>>()?;
    let port = free_port()?;
    // Debug logs: a process that is never traced is explained by them
    // (they go to target/bench/exec-agent.log).
    let mut args: Vec<String> = vec!["-vv".into(), "run".into()];
    for p in &programs {
        args.extend(["--comm".to_string(), p.comm.to_string()]);
    }
    args.extend(["--summary", "0", "--listen", &format!("127.0.0.1:{port}")].map(String::from));
    let mut tracer = Tracer::agent(agent, &args)?;
    tracer.wait_armed(Duration::from_secs(60))?;
    // "Armed" means every new process is seen; the agent's scan of the
    // processes already running comes just after it, and would find a
    // process started right now without its exec time ("found at start").
    thread::sleep(Duration::from_secs(1));
    let mut pids: Vec<(&Program, Vec<u32>)> = Vec::new();
    for (p, mut cmd) in commands {
        let mut started = Vec::new();
        for _ in 0..plan.exec_runs {
            let mut child = cmd
                .spawn()
                .with_context(|| format!("starting {}", p.describe))?;
            started.push(child.id());
            let deadline = Instant::now() + Duration::from_secs(60);
            while child.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    bail!("{} did not exit within 60 s", p.describe);
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        pids.push((p, started));
    }
    // The last process's line may still be on its way.
    thread::sleep(Duration::from_millis(300));
    let stderr = tracer.stderr_text();
    tracer.stop()?;
    let log = workspace_root().join("target/bench/exec-agent.log");
    std::fs::create_dir_all(workspace_root().join("target/bench"))?;
    std::fs::write(&log, &stderr).with_context(|| format!("writing {}", log.display()))?;
    for (p, started) in pids {
        let mut first = None;
        let mut later = Vec::new();
        let mut found_first = None;
        let mut found_later = Vec::new();
        let mut attach = Vec::new();
        let mut missed = 0;
        let mut scanned = 0;
        for (i, pid) in started.iter().enumerate() {
            let Some(line) = traced_line(&stderr, *pid) else {
                missed += 1;
                continue;
            };
            attach.push(line.attach_ms);
            if i == 0 {
                found_first = Some(line.found_ms);
            } else {
                found_later.push(line.found_ms);
            }
            match line.after_exec_ms {
                Some(ms) if i == 0 => first = Some(ms),
                Some(ms) => later.push(ms),
                None => scanned += 1,
            }
        }
        if scanned > 0 {
            report.note(format!(
                "exec to traced, {}: {scanned} of {} processes were found by the agent's start \
                 scan, so without their exec time (left out of exec_to_traced_{0}*)",
                p.label,
                started.len()
            ));
        }
        if missed > 0 {
            let untraced: Vec<String> = started
                .iter()
                .enumerate()
                .filter(|(_, pid)| traced_line(&stderr, **pid).is_none())
                .map(|(i, pid)| format!("#{} pid {pid}", i + 1))
                .collect();
            report.note(format!(
                "exec to traced, {}: {missed} of {} processes were not traced before they exited \
                 ({}; the agent's debug log is {})",
                p.label,
                started.len(),
                untraced.join(", "),
                log.display()
            ));
        }
        let method = format!(
            "{}, started {} times one after another under one `agent run --comm {}`; the agent's own \"ms after exec\" (its CLOCK_MONOTONIC at the end of the attach against the exec event's)",
            p.describe,
            started.len(),
            p.comm
        );
        let figures = [
            (
                format!("exec_to_traced_{}_first", p.label),
                first.into_iter().collect::<Vec<_>>(),
                "the first process of the file since the agent started",
            ),
            (
                format!("exec_to_traced_{}", p.label),
                later,
                "every later process of the same file (max, not p99: fewer than 100 runs)",
            ),
            (
                format!("found_{}_first", p.label),
                found_first.into_iter().collect::<Vec<_>>(),
                "the agent's \"found in\" for the first process: `/proc` inspection and runtime detection, parsing the runtime's file",
            ),
            (
                format!("found_{}", p.label),
                found_later,
                "the agent's \"found in\" for every later process: the parsed probes come from the parse cache (`discovery::cache`)",
            ),
            (
                format!("attach_{}", p.label),
                attach,
                "the agent's \"probes attached in\": the uprobe attaches of one process (none for a file whose probes are shared already)",
            ),
        ];
        for (name, samples, what) in figures {
            if !samples.is_empty() {
                report.push(Figure::new(
                    name,
                    "ms",
                    samples,
                    format!("{what}; {method}"),
                )?);
            }
        }
    }
    Ok(())
}

/// The command line of `p`, quiet.
fn command(p: &Program) -> Result<Command> {
    let mut cmd = match p.label {
        "cpython" => {
            let mut c = Command::new("/usr/bin/python3.11");
            c.args(["-c", "import time; time.sleep(0.4)"]);
            c
        }
        "node24" => {
            let mut c = Command::new(xtask::runtimes::node(NODE_VERSION)?);
            c.args(["-e", "setTimeout(() => {}, 400)"]);
            c
        }
        _ => {
            let mut c = Command::new(find_java(17)?);
            c.args(["-XX:+UseSerialGC", "-Xmx32m"]).arg(sleep_source()?);
            c
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Ok(cmd)
}

/// A one-file Java program (run by the launcher's source mode, no javac
/// needed) that sleeps 0.4 s.
fn sleep_source() -> Result<PathBuf> {
    let dir = workspace_root().join("target/bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = dir.join("Sleep.java");
    std::fs::write(
        &file,
        "public class Sleep { public static void main(String[] a) throws Exception { Thread.sleep(400); } }\n",
    )
    .with_context(|| format!("writing {}", file.display()))?;
    Ok(file)
}

/// The agent's times for one process, in ms.
#[derive(Debug, PartialEq)]
struct TracedLine {
    found_ms: f64,
    attach_ms: f64,
    /// `None`: "found at start", by the agent's scan of running processes.
    after_exec_ms: Option<f64>,
}

/// The agent's line for `pid`: `pausewatch: tracing pid PID (...), found in
/// F ms, N probes attached in A ms, B ms after exec` (or `, found at
/// start`).
fn traced_line(stderr: &str, pid: u32) -> Option<TracedLine> {
    let head = format!("tracing pid {pid} (");
    let line = stderr.lines().find(|l| l.contains(&head))?;
    // The number after `before` and up to the next " ms".
    let after = |before: &str| -> Option<f64> {
        let rest = &line[line.find(before)? + before.len()..];
        rest[..rest.find(" ms")?].parse().ok()
    };
    let number_before = |suffix: &str| -> Option<f64> {
        let end = line.find(suffix)?;
        let start = line[..end].rfind(' ')? + 1;
        line[start..end].parse().ok()
    };
    Some(TracedLine {
        found_ms: after("found in ")?,
        attach_ms: after("attached in ")?,
        after_exec_ms: if line.ends_with(", found at start") {
            None
        } else {
            Some(number_before(" ms after exec")?)
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_agents_line() {
        let text = "pausewatch: tracing pid 7 (x)\n\
             pausewatch: tracing pid 42 (python3.11 cpython 3.11), found in 0.44 ms, 3 probes attached in 4.5 ms, 12.0 ms after exec\n";
        assert_eq!(
            traced_line(text, 42),
            Some(TracedLine {
                found_ms: 0.44,
                attach_ms: 4.5,
                after_exec_ms: Some(12.0)
            })
        );
        let scanned = "pausewatch: tracing pid 5 (java hotspot 17.0.13), found in 1.00 ms, \
             8 probes attached in 13.0 ms, found at start\n";
        assert_eq!(
            traced_line(scanned, 5),
            Some(TracedLine {
                found_ms: 1.0,
                attach_ms: 13.0,
                after_exec_ms: None
            })
        );
        assert_eq!(traced_line(text, 7), None);
        assert_eq!(traced_line(text, 4), None);
    }
}
