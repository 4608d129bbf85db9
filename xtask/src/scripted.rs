//! Starting the bundled script workloads (`workloads/python/gc_cycles.py`,
//! `workloads/node/gc_alloc.js`) and talking to them.
//!
//! Every script speaks the same protocol, on stderr (stdout is left to the
//! runtime's own trace, e.g. Node's `--trace-gc`), one line each:
//! - `pausewatch-workload: ready` once set up; it then waits for a line
//!   on stdin (the gate), so a tracer can be attached first;
//! - `pausewatch-workload: done <json>` after the measured phase, with the
//!   script's own account of it (its collections, its run time); it then
//!   waits for stdin to close, so nothing runs while the tracer detaches;
//! - then it exits 0.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Prefix of the protocol lines.
pub const PREFIX: &str = "pausewatch-workload: ";

/// `xtask/workloads/<rel>` in this source tree.
pub fn workload_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("workloads")
        .join(rel)
}

/// A running script workload.
pub struct ScriptWorkload {
    child: Child,
    stdin: Option<ChildStdin>,
    control: Receiver<String>,
    stderr_text: Arc<Mutex<String>>,
    stdout: Option<JoinHandle<Vec<String>>>,
    /// The interpreter's pid when it is not the child (see
    /// [`ScriptWorkload::trace_pid`]).
    traced: Option<u32>,
}

impl ScriptWorkload {
    /// Starts `program args...` with piped stdio.
    pub fn spawn(program: &Path, args: &[String]) -> Result<ScriptWorkload> {
        if !program.is_file() {
            bail!("{} does not exist", program.display());
        }
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("piped stdout")?;
        let stderr = child.stderr.take().context("piped stderr")?;
        let stdout = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(std::result::Result::ok)
                .collect()
        });
        let (tx, control) = channel();
        let stderr_text = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr_text);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr)
                .lines()
                .map_while(std::result::Result::ok)
            {
                if let Some(rest) = line.strip_prefix(PREFIX) {
                    let _ = tx.send(rest.to_string());
                }
                let mut t = sink.lock().unwrap_or_else(|e| e.into_inner());
                t.push_str(&line);
                t.push('\n');
            }
        });
        Ok(ScriptWorkload {
            child,
            stdin,
            control,
            stderr_text,
            stdout: Some(stdout),
            traced: None,
        })
    }

    /// The interpreter's process id: the child's, unless [`trace_pid`]
    /// named another.
    ///
    /// [`trace_pid`]: ScriptWorkload::trace_pid
    pub fn pid(&self) -> u32 {
        self.traced.unwrap_or_else(|| self.child.id())
    }

    /// Names the process that runs the script when the child only starts
    /// it elsewhere (`podman run -i`: the child is the engine's client,
    /// which relays stdio, and the interpreter is the container's process).
    pub fn trace_pid(&mut self, pid: u32) {
        self.traced = Some(pid);
    }

    /// Everything the script wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr_text
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits for `ready`.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        self.wait_for("ready", timeout).map(|_| ())
    }

    /// Opens the gate: the measured phase starts.
    pub fn go(&mut self) -> Result<()> {
        let stdin = self.stdin.as_mut().context("the gate was closed already")?;
        stdin
            .write_all(b"go\n")
            .and_then(|()| stdin.flush())
            .context("writing the gate line to the workload")
    }

    /// Waits for `done <json>`; returns the JSON text.
    pub fn wait_done(&mut self, timeout: Duration) -> Result<String> {
        let line = self.wait_for("done", timeout)?;
        Ok(line.strip_prefix("done").unwrap_or("").trim().to_string())
    }

    /// Closes stdin, waits for the exit (0 expected) and returns stdout.
    pub fn finish(&mut self, timeout: Duration) -> Result<Vec<String>> {
        drop(self.stdin.take());
        let status = self.wait(timeout)?;
        let stdout = self
            .stdout
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        if !status.success() {
            bail!(
                "workload {} exited {status}; stderr:\n{}",
                self.child.id(),
                self.stderr_text()
            );
        }
        Ok(stdout)
    }

    fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                bail!(
                    "workload {} did not exit within {timeout:?}",
                    self.child.id()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn wait_for(&mut self, word: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.control.recv_timeout(left) {
                Ok(line) if line.split_whitespace().next() == Some(word) => return Ok(line),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => bail!(
                    "workload {} did not say {word:?} within {timeout:?}; stderr:\n{}",
                    self.child.id(),
                    self.stderr_text()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    // Give the reader thread a moment to copy the last lines.
                    std::thread::sleep(Duration::from_millis(50));
                    bail!(
                        "workload {} ended before saying {word:?}; stderr:\n{}",
                        self.child.id(),
                        self.stderr_text()
                    )
                }
            }
        }
    }
}

impl Drop for ScriptWorkload {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
