//! One handle for every child process the tests start themselves (the
//! agent, Go programs, helper scripts, Prometheus): whatever of its stdio
//! the caller piped is read by threads, so the child never blocks on a
//! full pipe; stdout arrives as lines, stderr is kept as text and as lines
//! stamped with the CLOCK_MONOTONIC time they were read at. Waiting never
//! closes stdin (some workloads stop when it closes), and a handle that is
//! dropped stops its process, so a failing test leaves nothing running.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use xtask::workloads::monotonic_now_ns;

/// How long a process stopped with a signal other than SIGKILL has to exit
/// when its handle is dropped, before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A running child process; see the module docs.
pub struct Process {
    what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<Receiver<String>>,
    stdout_seen: Vec<String>,
    stderr: Option<Receiver<(u64, String)>>,
    stderr_seen: Vec<(u64, String)>,
    stderr_text: Arc<Mutex<String>>,
    stderr_reader: Option<JoinHandle<()>>,
    exit: Option<ExitStatus>,
    stop_signal: libc::c_int,
}

impl Process {
    /// Starts `cmd` with the stdio the caller set on it; panics naming
    /// `what` and `cmd` if it cannot. `what` names the process in every
    /// later message ("the agent", "the Go workload").
    pub fn spawn(what: impl Into<String>, cmd: &mut Command) -> Process {
        let what = what.into();
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what} ({cmd:?}): {e}"));
        Process::adopt(what, child)
    }

    /// Takes over `child`, started by the caller, as [`Process::spawn`]
    /// would have.
    pub fn adopt(what: impl Into<String>, mut child: Child) -> Process {
        let what = what.into();
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().map(|out| {
            let (tx, rx) = channel();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
            rx
        });
        let stderr_text = Arc::new(Mutex::new(String::new()));
        let (stderr, stderr_reader) = match child.stderr.take() {
            Some(err) => {
                let (tx, rx) = channel();
                let sink = Arc::clone(&stderr_text);
                let reader = std::thread::spawn(move || {
                    for line in BufReader::new(err).lines().map_while(Result::ok) {
                        let now = monotonic_now_ns();
                        {
                            let mut t = sink.lock().unwrap_or_else(|e| e.into_inner());
                            t.push_str(&line);
                            t.push('\n');
                        }
                        let _ = tx.send((now, line));
                    }
                });
                (Some(rx), Some(reader))
            }
            None => (None, None),
        };
        Process {
            what,
            child,
            stdin,
            stdout,
            stdout_seen: Vec::new(),
            stderr,
            stderr_seen: Vec::new(),
            stderr_text,
            stderr_reader,
            exit: None,
            stop_signal: libc::SIGKILL,
        }
    }

    /// Dropping the handle sends `signal` instead of SIGKILL, and kills
    /// only if the process is still there [`STOP_GRACE`] later.
    pub fn stop_with(mut self, signal: libc::c_int) -> Process {
        self.stop_signal = signal;
        self
    }

    /// What it was called at the start.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it wrote to a piped stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr_text
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Everything it wrote to a piped stderr, once the pipe closed (after
    /// the exit, unless a child of its own holds it).
    pub fn stderr_to_end(&mut self) -> String {
        if let Some(r) = self.stderr_reader.take() {
            let _ = r.join();
        }
        self.stderr_text()
    }

    /// The next line of a piped stdout, or `None` if none came within
    /// `timeout` or stdout closed.
    pub fn next_line(&mut self, timeout: Duration) -> Option<String> {
        let line = self.stdout.as_ref()?.recv_timeout(timeout).ok()?;
        self.stdout_seen.push(line.clone());
        Some(line)
    }

    /// Waits for a stdout line starting with `prefix`; panics with the
    /// output so far if none comes, `timeout` after each line at most.
    pub fn wait_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let rx = self.stdout.as_ref().expect("stdout is piped");
        loop {
            match rx.recv_timeout(timeout) {
                Ok(line) => {
                    self.stdout_seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "{} printed no {prefix:?} line ({e}); output so far: {:?}",
                    self.what, self.stdout_seen
                ),
            }
        }
    }

    /// Every stdout line it printed: those read so far and the rest, up
    /// to the first 2 s without a line (or the pipe's end).
    pub fn stdout_lines(&mut self) -> Vec<String> {
        if let Some(rx) = &self.stdout {
            while let Ok(line) = rx.recv_timeout(Duration::from_secs(2)) {
                self.stdout_seen.push(line);
            }
        }
        std::mem::take(&mut self.stdout_seen)
    }

    /// Waits for a stderr line containing `needle`; returns it with the
    /// CLOCK_MONOTONIC time it was read at. Panics (with the stderr so
    /// far) if the process exits first or `timeout` passes.
    pub fn wait_stderr(&mut self, needle: &str, timeout: Duration) -> (u64, String) {
        if let Some(hit) = self.stderr_seen.iter().find(|(_, l)| l.contains(needle)) {
            return hit.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let rx = self.stderr.as_ref().expect("stderr is piped");
            match rx.recv_timeout(left) {
                Ok((t, line)) => {
                    self.stderr_seen.push((t, line.clone()));
                    if line.contains(needle) {
                        return (t, line);
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{} did not print {needle:?} on stderr within {timeout:?}; stderr so far:\n{}",
                    self.what,
                    self.stderr_text()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.wait_exit(Duration::from_secs(5));
                    panic!(
                        "{} exited ({status:?}) before printing {needle:?}; stderr:\n{}",
                        self.what,
                        self.stderr_text()
                    )
                }
            }
        }
    }

    /// Writes the gate line `go` to a piped stdin and closes it.
    pub fn release(&mut self) {
        let mut stdin = self.stdin.take().expect("stdin is piped and still open");
        stdin.write_all(b"go\n").expect("releasing the workload");
    }

    /// Its exit status if it has exited, without waiting.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none()
            && let Ok(Some(s)) = self.child.try_wait()
        {
            self.exit = Some(s);
        }
        self.exit
    }

    /// Waits up to `timeout` for it to exit on its own (stdin stays open).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.exited() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits up to `timeout` for the exit (killing it and panicking after
    /// that); returns the status and every stdout line.
    pub fn finish(&mut self, timeout: Duration) -> (ExitStatus, Vec<String>) {
        let Some(status) = self.wait_exit(timeout) else {
            self.kill();
            panic!("{} did not exit within {timeout:?}", self.what);
        };
        (status, self.stdout_lines())
    }

    /// Sends `signal` (e.g. `libc::SIGINT`), unless it was reaped already.
    pub fn signal(&self, signal: libc::c_int) {
        if self.exit.is_none() {
            // SAFETY: kill(2) on our own child's pid; it is not reaped yet
            // (exit is None), so the pid cannot have been reused.
            unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        }
    }

    /// SIGKILL, and reaps it.
    pub fn kill(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        if self.stop_signal != libc::SIGKILL {
            self.signal(self.stop_signal);
            if self.wait_exit(STOP_GRACE).is_some() {
                return;
            }
            eprintln!(
                "{} did not stop within {STOP_GRACE:?}: killing it",
                self.what
            );
        }
        self.kill();
    }
}
