//! Helpers shared by the end-to-end tests: running the agent binary,
//! scraping and parsing its Prometheus text, `histogram_quantile` computed
//! the way Prometheus computes it, and comparisons that collect readable
//! failures instead of stopping at the first one.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use xtask::workloads::monotonic_now_ns;

pub mod child;
pub mod cpython;
pub mod events;
pub mod hotspot;
pub mod prometheus;
pub mod ruby;
pub mod scenario;
pub mod script;
pub mod transparency;

use child::Process;

/// Fails the test unless it runs as root: the end-to-end tests load BPF
/// programs and must never be skipped silently.
pub fn require_root(what: &str) {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "{what} loads BPF programs into the kernel and must run as root (euid is {euid}): \
         run `sudo -E cargo xtask test`, or `sudo -E cargo test -p xtask --test e2e_hotspot`"
    );
}

/// The workspace root (the parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ has a parent")
        .to_path_buf()
}

/// The release agent: `$PAUSEWATCH_AGENT` (set by `cargo xtask test`), else
/// `<workspace>/target/release/agent`. Panics with a hint if it is missing.
pub fn agent_binary() -> PathBuf {
    let (path, from) = match std::env::var_os("PAUSEWATCH_AGENT") {
        Some(p) => (PathBuf::from(p), "$PAUSEWATCH_AGENT"),
        None => (
            workspace_root().join("target/release/agent"),
            "the default location",
        ),
    };
    assert!(
        path.is_file(),
        "no agent binary at {} ({from}): run `cargo xtask build` first",
        path.display()
    );
    path
}

/// `agent probes --pid PID`, run to its end.
pub fn agent_probes_output(pid: u32) -> Output {
    Command::new(agent_binary())
        .args(["probes", "--pid", &pid.to_string()])
        .output()
        .expect("running agent probes")
}

/// What `agent probes --pid PID` prints; panics with its stderr if it fails.
pub fn agent_probes(pid: u32) -> String {
    let out = agent_probes_output(pid);
    assert!(
        out.status.success(),
        "agent probes --pid {pid} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh directory under the system's temporary directory, removed with
/// everything in it when dropped (a struct that also holds a process
/// declares it after the process, so the process is gone first).
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// `pausewatch-<tag>-<test pid>-<now>` in the temporary directory.
    pub fn new(tag: &str) -> ScratchDir {
        let dir = std::env::temp_dir().join(format!(
            "pausewatch-{tag}-{}-{}",
            std::process::id(),
            monotonic_now_ns()
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        ScratchDir(dir)
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// A loopback address to `--listen` on, free a moment ago.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// A running `agent run`. Its stdout (the `--events` JSON lines) and its
/// stderr lines (with the CLOCK_MONOTONIC time each was read at) are
/// collected by [`Process`]. Dropping it kills the agent if it still runs.
pub struct Agent {
    process: Process,
    /// Where it serves `/metrics`.
    pub listen: SocketAddr,
    /// CLOCK_MONOTONIC just before it was started.
    pub spawned_ns: u64,
}

impl Agent {
    /// Starts `<bin> run --pid <pid> --listen <listen> <extra...>`.
    pub fn start(bin: &Path, pid: u32, listen: SocketAddr, extra: &[&str]) -> Agent {
        let pid = pid.to_string();
        let mut args = vec!["--pid", pid.as_str()];
        args.extend_from_slice(extra);
        Agent::start_selecting(bin, listen, &args)
    }

    /// Starts `<bin> run --pid <pid> <extra...>` on a [`loopback`] address
    /// and waits (30 s at most) until it prints that it is armed.
    pub fn armed(bin: &Path, pid: u32, extra: &[&str]) -> Agent {
        let mut a = Agent::start(bin, pid, loopback(), extra);
        a.wait_stderr("armed in", Duration::from_secs(30));
        a
    }

    /// Starts `<bin> run --listen <listen> <args...>`, where `args` select
    /// the targets (`--all`, `--comm`, ...).
    pub fn start_selecting(bin: &Path, listen: SocketAddr, args: &[&str]) -> Agent {
        Agent::start_command(Command::new(bin), listen, args)
    }

    /// Starts `<command> run --listen <listen> <args...>`, where `command`
    /// is the agent binary or what runs it (`podman run ... IMAGE`, whose
    /// client relays the agent's stdio and forwards signals to it).
    pub fn start_command(mut command: Command, listen: SocketAddr, args: &[&str]) -> Agent {
        let spawned_ns = monotonic_now_ns();
        let process = Process::spawn(
            "the agent",
            command
                .arg("run")
                .arg("--listen")
                .arg(listen.to_string())
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        Agent {
            process,
            listen,
            spawned_ns,
        }
    }

    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Everything the agent wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        self.process.stderr_text()
    }

    /// Waits for a stderr line containing `needle`; returns it with the
    /// CLOCK_MONOTONIC time it was read at. Panics (with the agent's stderr)
    /// if the agent exits first or `timeout` passes.
    pub fn wait_stderr(&mut self, needle: &str, timeout: Duration) -> (u64, String) {
        self.process.wait_stderr(needle, timeout)
    }

    /// Waits up to `timeout` for the agent to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.process.wait_exit(timeout)
    }

    /// Sends `signal` (e.g. `libc::SIGINT`) to the agent.
    pub fn signal(&self, signal: libc::c_int) {
        self.process.signal(signal);
    }

    /// SIGINT, then waits up to `timeout` for the exit; returns the exit
    /// status (`None` if it did not exit in time, in which case it is
    /// killed) and the complete stdout, one entry per line.
    pub fn interrupt(&mut self, timeout: Duration) -> (Option<ExitStatus>, Vec<String>) {
        self.process.signal(libc::SIGINT);
        let status = self.process.wait_exit(timeout);
        if status.is_none() {
            self.process.kill();
        }
        (status, self.process.stdout_lines())
    }
}

/// `GET <path>` over plain HTTP/1.1; returns the body of a 200 response.
/// Panics with the status line otherwise.
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("reading the response from http://{addr}{path}: {e}"));
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in the response from http://{addr}{path}"));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let body = &raw[split + 4..];
    let status = head.lines().next().unwrap_or("");
    assert!(
        status.starts_with("HTTP/1.1 200") || status.starts_with("HTTP/1.0 200"),
        "GET http://{addr}{path}: {status}"
    );
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_vec()
    };
    String::from_utf8(body).expect("metrics are UTF-8")
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&b[..eol]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).expect("chunk size");
        b = &b[eol + 2..];
        if size == 0 || b.len() < size {
            break;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[(size + 2).min(b.len())..];
    }
    out
}

/// One sample line of the text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name (`pausewatch_pause_seconds_count`).
    pub name: String,
    /// Its labels, unescaped.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

impl Sample {
    /// The value of label `key`, "" if it has none.
    pub fn label(&self, key: &str) -> &str {
        self.labels.get(key).map_or("", String::as_str)
    }

    /// Whether every `(key, value)` of `want` is one of its labels.
    pub fn matches(&self, want: &[(&str, &str)]) -> bool {
        want.iter()
            .all(|(k, v)| self.labels.get(*k).map(String::as_str) == Some(*v))
    }
}

/// Parses Prometheus text exposition format 0.0.4 (comments skipped, label
/// values unescaped, optional timestamps ignored). Panics on a malformed
/// line, naming it.
pub fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fail = |why: &str| -> ! { panic!("metrics line {}: {why}: {line}", i + 1) };
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| fail("no value"));
        let name = &line[..name_end];
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices().peekable();
            let consumed;
            loop {
                // Skip separators.
                while let Some(&(_, c)) = chars.peek() {
                    if c == ',' || c == ' ' {
                        chars.next();
                    } else {
                        break;
                    }
                }
                match chars.peek() {
                    Some(&(j, '}')) => {
                        consumed = j + 1;
                        break;
                    }
                    None => fail("unterminated label set"),
                    _ => {}
                }
                let mut key = String::new();
                for (_, c) in chars.by_ref() {
                    if c == '=' {
                        break;
                    }
                    key.push(c);
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    fail("label value is not quoted");
                }
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, c)) => value.push(c),
                            None => fail("dangling escape"),
                        },
                        Some((_, '"')) => break,
                        Some((_, c)) => value.push(c),
                        None => fail("unterminated label value"),
                    }
                }
                labels.insert(key.trim().to_string(), value);
            }
            rest = &r[consumed..];
        }
        let value_text = rest
            .split_whitespace()
            .next()
            .unwrap_or_else(|| fail("no value"));
        let value = match value_text {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().unwrap_or_else(|_| fail("value is not a number")),
        };
        out.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    out
}

/// The samples named `name` whose labels include all of `want`.
pub fn select<'a>(samples: &'a [Sample], name: &str, want: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| s.name == name && s.matches(want))
        .collect()
}

/// `sum(name{want...})`: 0 when nothing matches.
pub fn sum_of(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    select(samples, name, want).iter().map(|s| s.value).sum()
}

/// `sum by (<key>) (name{want...})`.
pub fn sum_by(
    samples: &[Sample],
    name: &str,
    key: &str,
    want: &[(&str, &str)],
) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for s in select(samples, name, want) {
        *out.entry(s.label(key).to_string()).or_insert(0.0) += s.value;
    }
    out
}

/// `sum by (le) (<histogram>_bucket{want...})` as (upper bound, cumulative
/// count) pairs, sorted by bound; `+Inf` included.
pub fn buckets_by_le(
    samples: &[Sample],
    histogram: &str,
    want: &[(&str, &str)],
) -> Vec<(f64, f64)> {
    let name = format!("{histogram}_bucket");
    let mut by_le: Vec<(f64, f64)> = Vec::new();
    for s in select(samples, &name, want) {
        let le = match s.label("le") {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad le {v:?} in {name}")),
        };
        match by_le.iter_mut().find(|(b, _)| *b == le) {
            Some((_, c)) => *c += s.value,
            None => by_le.push((le, s.value)),
        }
    }
    by_le.sort_by(|a, b| a.0.total_cmp(&b.0));
    by_le
}

/// `histogram_quantile(q, <buckets>)` exactly as Prometheus computes it for
/// classic histograms (`promql/quantile.go`, `bucketQuantile`): buckets
/// sorted by bound and merged when equal, counts forced monotonic, NaN
/// without a `+Inf` bucket, fewer than two buckets or no observations; the
/// rank `q * total` is found by the first bucket whose cumulative count
/// reaches it; inside that bucket the result is interpolated linearly, the
/// lowest bucket starting at 0 (unless its bound is <= 0, then the bound is
/// returned); a rank in the `+Inf` bucket returns the highest finite bound.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    let mut b: Vec<(f64, f64)> = buckets.to_vec();
    b.sort_by(|x, y| x.0.total_cmp(&y.0));
    if b.last().is_none_or(|l| l.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // coalesceBuckets: merge equal bounds.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(b.len());
    for (le, c) in b {
        match merged.last_mut() {
            Some(last) if last.0 == le => last.1 += c,
            _ => merged.push((le, c)),
        }
    }
    let mut b = merged;
    // ensureMonotonicAndIgnoreSmallDeltas(buckets, 1e-12).
    let mut prev = b[0].1;
    for item in b.iter_mut().skip(1) {
        let curr = item.1;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, 1e-12) || curr < prev {
            item.1 = prev;
            continue;
        }
        prev = curr;
    }
    if b.len() < 2 {
        return f64::NAN;
    }
    let observations = b[b.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    // sort.Search over all but the +Inf bucket.
    let n = b.len() - 1;
    let i = (0..n).find(|&i| b[i].1 >= rank).unwrap_or(n);
    if i == n {
        return b[n - 1].0;
    }
    if i == 0 && b[0].0 <= 0.0 {
        return b[0].0;
    }
    let mut start = 0.0;
    let end = b[i].0;
    let mut count = b[i].1;
    if i > 0 {
        start = b[i - 1].0;
        count -= b[i - 1].1;
        rank -= b[i - 1].1;
    }
    start + (end - start) * (rank / count)
}

/// Prometheus' `almost.Equal`: equal, or relatively within `epsilon`.
fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    const MIN_NORMAL: f64 = f64::MIN_POSITIVE;
    if a == b {
        return true;
    }
    let diff = (a - b).abs();
    let sum = a.abs() + b.abs();
    if a == 0.0 || b == 0.0 || sum < MIN_NORMAL {
        return diff < epsilon * MIN_NORMAL;
    }
    diff / sum.min(f64::MAX) < epsilon
}

/// Accumulates check results so that one run reports every problem at once.
#[derive(Default)]
pub struct Checks {
    failures: Vec<String>,
    passed: usize,
}

impl Checks {
    /// No checks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `ok`; on failure keeps `what` for the final report.
    pub fn check(&mut self, ok: bool, what: impl FnOnce() -> String) -> bool {
        if ok {
            self.passed += 1;
        } else {
            self.failures.push(what());
        }
        ok
    }

    /// `got == want`.
    pub fn eq<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, got: T, want: T) -> bool {
        let ok = got == want;
        self.check(ok, || format!("{what}: agent {got:?}, expected {want:?}"))
    }

    /// `|got - want| <= tolerance * |want|`.
    pub fn within(&mut self, what: &str, got: f64, want: f64, tolerance: f64) -> bool {
        let ok = (got - want).abs() <= tolerance * want.abs();
        self.check(ok, || {
            format!(
                "{what}: agent {got:.6}, expected {want:.6} ± {:.0}% (ratio {:.4}, off by {:+.2}%)",
                tolerance * 100.0,
                ratio(got, want),
                (ratio(got, want) - 1.0) * 100.0
            )
        })
    }

    /// Takes in `other`'s results, after its own.
    pub fn merge(&mut self, other: Checks) {
        self.failures.extend(other.failures);
        self.passed += other.passed;
    }

    /// Whether any check failed so far.
    pub fn failed(&self) -> bool {
        !self.failures.is_empty()
    }

    /// Panics with every failure (and `context`, e.g. the comparison
    /// table) if any check failed.
    pub fn finish(self, context: &str) {
        if self.failures.is_empty() {
            eprintln!("all {} checks passed", self.passed);
            return;
        }
        let mut msg = format!(
            "{} of {} checks failed:\n",
            self.failures.len(),
            self.failures.len() + self.passed
        );
        for f in &self.failures {
            let _ = writeln!(msg, "  - {f}");
        }
        let _ = write!(msg, "\n{context}");
        panic!("{msg}");
    }
}

/// `got / want`, with 0/0 = 1.
pub fn ratio(got: f64, want: f64) -> f64 {
    if want == 0.0 {
        if got == 0.0 { 1.0 } else { f64::INFINITY }
    } else {
        got / want
    }
}

/// Median and maximum of `values` (0 for none).
pub fn median_max(values: &[u64]) -> (u64, u64) {
    if values.is_empty() {
        return (0, 0);
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    (v[(v.len() - 1) / 2], v[v.len() - 1])
}

/// Nanoseconds as milliseconds with 3 decimals, for tables.
pub fn ms(ns: f64) -> String {
    format!("{:.3}", ns / 1e6)
}
