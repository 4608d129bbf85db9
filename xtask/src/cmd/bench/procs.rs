//! Running the agent (and other tracers) under measurement: start, wait
//! until armed, scrape, sample RSS and CPU from /proc, stop.

use std::{
    collections::BTreeSet,
    fs,
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    os::unix::process::CommandExt,
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, mpsc},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// A tracer process started by the bench: stderr is scanned for the line
/// that says it is armed and then drained; stdout lines are kept (agent
/// `--events` JSON) or counted.
pub struct Tracer {
    child: Child,
    name: String,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    armed_rx: mpsc::Receiver<String>,
    stdout_thread: Option<thread::JoinHandle<()>>,
}

impl Tracer {
    /// Starts `cmd`; `armed` is the text of the stderr or stdout line that
    /// says its probes are live.
    pub fn spawn(name: &str, mut cmd: Command, armed: &'static str) -> Result<Tracer> {
        // A group of its own, so signals reach the real tracer behind a
        // wrapper script (Debian's `javagc-bpfcc` is a bash script).
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name} ({cmd:?})"))?;
        let (tx, armed_rx) = mpsc::channel();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().context("stdout")?;
        let err = child.stderr.take().context("stderr")?;
        let stdout_thread = {
            let (lines, tx) = (stdout.clone(), tx.clone());
            thread::spawn(move || collect(out, lines, tx, armed))
        };
        {
            let lines = stderr.clone();
            thread::spawn(move || collect(err, lines, tx, armed));
        }
        Ok(Tracer {
            child,
            name: name.to_string(),
            stdout,
            stderr,
            armed_rx,
            stdout_thread: Some(stdout_thread),
        })
    }

    /// Starts `agent <args>`, armed at its "armed in" line.
    pub fn agent(agent: &Path, args: &[String]) -> Result<Tracer> {
        let mut cmd = Command::new(agent);
        cmd.args(args);
        Tracer::spawn("agent", cmd, "armed in")
    }

    /// Waits for the armed line; fails with the tracer's stderr if it
    /// exits or takes longer than `timeout`.
    pub fn wait_armed(&mut self, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.armed_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => return Ok(line),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {}
            }
            if let Some(status) = self.child.try_wait()? {
                thread::sleep(Duration::from_millis(100));
                bail!(
                    "{} exited ({status}) before its probes were armed:\n{}",
                    self.name,
                    self.stderr_text()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} not armed within {timeout:?}:\n{}",
                    self.name,
                    self.stderr_text()
                );
            }
        }
    }

    /// The tracer's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it wrote on stderr so far.
    pub fn stderr_text(&self) -> String {
        lock(&self.stderr).join("\n")
    }

    /// Number of stdout lines so far.
    pub fn stdout_lines(&self) -> usize {
        lock(&self.stdout).len()
    }

    /// Ends a third-party tracer: SIGINT to its process group, then
    /// SIGTERM and SIGKILL if it lingers (BCC's ugc does not always exit on
    /// SIGINT). Its exit status is not judged: only its timing is used.
    pub fn end(mut self) {
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGKILL] {
            signal_group(self.child.id(), sig);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if self.child.try_wait().ok().flatten().is_some() {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// SIGINT, wait up to 120 s for a clean exit (detaching hundreds of
    /// uprobes on a loaded machine was measured to take over 20 s), and
    /// return its stdout lines.
    pub fn stop(self) -> Result<Vec<String>> {
        self.stop_with(libc::SIGINT)
    }

    /// [`Tracer::stop`] with `sig` (SIGINT or SIGTERM) instead of SIGINT:
    /// a service manager or Kubernetes stops the agent with SIGTERM.
    pub fn stop_with(mut self, sig: libc::c_int) -> Result<Vec<String>> {
        let sig_name = signal_name(sig);
        signal_group(self.child.id(), sig);
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(s) = self.child.try_wait()? {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("{} did not exit within 120 s of {sig_name}", self.name);
            }
            thread::sleep(Duration::from_millis(20));
        };
        if let Some(t) = self.stdout_thread.take() {
            let _ = t.join();
        }
        // bpftrace exits 0 on SIGINT; the agent on SIGINT and SIGTERM.
        if !status.success() {
            bail!(
                "{} exited with {status} after {sig_name}:\n{}",
                self.name,
                self.stderr_text()
            );
        }
        Ok(std::mem::take(&mut *lock(&self.stdout)))
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            signal_group(self.child.id(), libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

fn collect(
    from: impl Read,
    lines: Arc<Mutex<Vec<String>>>,
    armed_tx: mpsc::Sender<String>,
    armed: &str,
) {
    for line in BufReader::new(from).lines() {
        let Ok(line) = line else { break };
        if line.contains(armed) {
            let _ = armed_tx.send(line.clone());
        }
        lock(&lines).push(line);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The name of the signals the bench stops tracers with, for messages.
fn signal_name(sig: libc::c_int) -> String {
    match sig {
        libc::SIGINT => "SIGINT".to_string(),
        libc::SIGTERM => "SIGTERM".to_string(),
        libc::SIGKILL => "SIGKILL".to_string(),
        other => format!("signal {other}"),
    }
}

/// Sends `sig` to the process group led by `pid` (a tracer this bench
/// started in a group of its own).
fn signal_group(pid: u32, sig: libc::c_int) {
    // SAFETY: plain kill(2) on a group this bench created.
    unsafe {
        libc::kill(-(pid as libc::pid_t), sig);
    }
}

/// GET /metrics over loopback; returns the body.
pub fn scrape(addr: &str) -> Result<String> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
    let mut body = Vec::new();
    s.read_to_end(&mut body)?;
    if !body.starts_with(b"HTTP/1.1 200") {
        bail!("scrape of {addr} failed");
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Sum of the samples of metric `name` whose labels contain `label` (e.g.
/// `reason="ringbuf_full"`; empty: all).
pub fn metric_sum(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// VmRSS of `pid` in MB.
pub fn rss_mb(pid: u32) -> Result<f64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")?;
    Ok(kb / 1024.0)
}

/// CPU time (user + system) of the whole process `pid` in seconds, from
/// `/proc/PID/stat`: live and exited threads, and still readable while it
/// is a zombie (exited, not yet reaped), which is how the bench gets a
/// workload's total after it finished.
pub fn process_cpu_secs(pid: u32) -> Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = &stat[stat.rfind(')').context("bad stat")? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks as f64 / hz)
}

/// Whether `pid` has exited and waits to be reaped.
pub fn is_zombie(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
        .unwrap_or(false)
}

/// CPU time of every live thread of `pid` in ns, from
/// `/proc/PID/task/*/schedstat` (ns resolution, unlike the 10 ms ticks of
/// `stat`; the agent's threads live as long as it does, so none is missed).
pub fn cpu_ns(pid: u32) -> Result<u64> {
    let mut total = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("schedstat");
        let Ok(text) = fs::read_to_string(&path) else {
            continue; // the thread just exited
        };
        total += text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .with_context(|| format!("bad {}", path.display()))?;
    }
    Ok(total)
}

/// A free loopback port.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// `agent run` arguments for `pids` on `port`, plus `extra`.
pub fn run_args(pids: &[u32], port: u16, extra: &[&str]) -> Vec<String> {
    let mut a = vec!["run".to_string()];
    for p in pids {
        a.push("--pid".into());
        a.push(p.to_string());
    }
    with_common_args(a, port, extra)
}

/// `agent run` arguments in follow mode for processes named `comm` (those
/// running before the agent starts are found by its start-up scan) on
/// `port`, plus `extra`.
pub fn follow_args(comm: &str, port: u16, extra: &[&str]) -> Vec<String> {
    let a = vec!["run".to_string(), "--comm".into(), comm.to_string()];
    with_common_args(a, port, extra)
}

/// The selection `a` plus no periodic summary, the listen address and `extra`.
fn with_common_args(mut a: Vec<String>, port: u16, extra: &[&str]) -> Vec<String> {
    a.extend(["--summary", "0", "--listen"].map(String::from));
    a.push(format!("127.0.0.1:{port}"));
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// The pids a /metrics page lists in `pausewatch_target_info`: the
/// processes the agent reports as targets.
pub fn target_pids(text: &str) -> BTreeSet<u32> {
    text.lines()
        .filter_map(|l| l.strip_prefix("pausewatch_target_info{"))
        .filter_map(|labels| {
            // `pid` is the first label, but any position is accepted.
            let at = if labels.starts_with("pid=\"") {
                0
            } else {
                labels.find(",pid=\"")? + 1
            };
            let value = &labels[at + "pid=\"".len()..];
            value[..value.find('"')?].parse().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sum_matches_name_and_label() {
        let text = "# HELP pausewatch_lost_events_total x\n\
                    pausewatch_lost_events_total{reason=\"ringbuf_full\"} 7\n\
                    pausewatch_lost_events_total{reason=\"inflight_map_full\"} 2\n\
                    pausewatch_lost_events_total_other 100\n\
                    pausewatch_targets 1\n";
        assert_eq!(metric_sum(text, "pausewatch_lost_events_total", ""), 9.0);
        assert_eq!(
            metric_sum(text, "pausewatch_lost_events_total", "ringbuf_full"),
            7.0
        );
        assert_eq!(metric_sum(text, "pausewatch_targets", ""), 1.0);
        assert_eq!(metric_sum(text, "absent", ""), 0.0);
    }

    #[test]
    fn target_pids_reads_the_pid_label_of_target_info() {
        let text = "# TYPE pausewatch_target_info gauge\n\
                    pausewatch_target_info{pid=\"12\",comm=\"java\"} 1\n\
                    pausewatch_target_info{comm=\"java\",pid=\"7\",exe=\"/x\"} 1\n\
                    pausewatch_target_info_other{pid=\"99\"} 1\n\
                    pausewatch_targets{pid=\"98\"} 1\n";
        assert_eq!(target_pids(text), BTreeSet::from([7, 12]));
        assert!(target_pids("").is_empty());
    }

    #[test]
    fn follow_args_select_by_comm() {
        assert_eq!(
            follow_args("java", 9000, &[]),
            [
                "run",
                "--comm",
                "java",
                "--summary",
                "0",
                "--listen",
                "127.0.0.1:9000"
            ]
        );
    }

    #[test]
    fn run_args_lists_every_pid() {
        let a = run_args(&[1, 2], 9000, &["--events"]);
        assert_eq!(
            a,
            [
                "run",
                "--pid",
                "1",
                "--pid",
                "2",
                "--summary",
                "0",
                "--listen",
                "127.0.0.1:9000",
                "--events"
            ]
        );
    }
}
