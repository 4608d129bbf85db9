//! A real Prometheus server (Debian's `prometheus`) scraping the agent, on
//! loopback, with its TSDB in a scratch directory, and its HTTP query API.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::child::Process;
use super::free_port;

/// How to get Prometheus and promtool.
pub const INSTALL_HINT: &str = "install the Debian package prometheus (cargo xtask test does this)";

/// The `prometheus` binary, or a panic saying how to get it.
pub fn binary() -> PathBuf {
    tool("prometheus")
}

/// A tool of the `prometheus` package (`prometheus`, `promtool`), or a
/// panic saying how to get it.
pub fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("{name} not found in /usr/bin or /usr/local/bin: {INSTALL_HINT}");
}

/// A running Prometheus. Stopped with SIGTERM when dropped.
pub struct Prometheus {
    /// The server process.
    pub process: Process,
    /// Its API port on 127.0.0.1.
    pub port: u16,
    /// Its log file.
    pub log: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus in `dir` (config, TSDB and log there), scraping
    /// `127.0.0.1:agent_port` every second as job `pausewatch`, with the
    /// extra command-line `flags` (e.g. `--enable-feature=native-histograms`).
    pub fn start(dir: &Path, agent_port: u16, flags: &[&str]) -> Prometheus {
        Prometheus::start_with_rules(dir, agent_port, None, flags)
    }

    /// As [`Prometheus::start`], also evaluating the rule file `rules`
    /// every second.
    pub fn start_with_rules(
        dir: &Path,
        agent_port: u16,
        rules: Option<&Path>,
        flags: &[&str],
    ) -> Prometheus {
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, self::config(agent_port, rules)).unwrap();
        let log = dir.join("prometheus.log");
        let out = std::fs::File::create(&log).unwrap();
        let bin = binary();
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(flags)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}; {INSTALL_HINT}", bin.display()));
        Prometheus {
            process: Process::adopt("prometheus", child).stop_with(libc::SIGTERM),
            port,
            log,
        }
    }

    /// The last lines of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// An instant query; `data.result` (a vector's samples, or `[]`).
    pub fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let (status, body) = http_get(
            self.port,
            &format!("/api/v1/query?query={}", percent_encode(expr)),
        )
        .map_err(|e| format!("query {expr:?}: {e}"))?;
        let v: Value = serde_json::from_str(&body)
            .map_err(|e| format!("query {expr:?}: HTTP {status}: {e}: {body}"))?;
        if v["status"] != "success" {
            return Err(format!("query {expr:?}: HTTP {status}: {body}"));
        }
        match &v["data"]["result"] {
            Value::Array(a) => Ok(a.clone()),
            other => Ok(vec![other.clone()]),
        }
    }

    /// A GET of its HTTP API at `path`: status and body.
    pub fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        http_get(self.port, path)
    }

    /// Polls `expr` until its result satisfies `ok`, or panics after
    /// `timeout` with the last result and the log.
    pub fn wait_for(&mut self, expr: &str, timeout: Duration, ok: impl Fn(&[Value]) -> bool) {
        if let Err(e) = self.poll(expr, timeout, &mut [], ok) {
            panic!("{e}\n{}", self.log_tail());
        }
    }

    /// Polls `expr` until its result satisfies `ok`; an error after
    /// `timeout` with the last result, or as soon as Prometheus or one of
    /// `others` (the processes it depends on) exits.
    pub fn poll(
        &mut self,
        expr: &str,
        timeout: Duration,
        others: &mut [&mut Process],
        ok: impl Fn(&[Value]) -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            for p in std::iter::once(&mut self.process).chain(others.iter_mut().map(|p| &mut **p)) {
                if let Some(s) = p.exited() {
                    return Err(format!("{} exited early: {s}", p.what()));
                }
            }
            match self.query(expr) {
                Ok(r) if ok(&r) => return Ok(()),
                Ok(r) => last = format!("{r:?}"),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        Err(format!(
            "{expr:?} not satisfied within {timeout:?}; last: {last}"
        ))
    }
}

/// A configuration that scrapes `127.0.0.1:agent_port` every second as job
/// `pausewatch` and evaluates `rules`, if given, every second.
pub fn config(agent_port: u16, rules: Option<&Path>) -> String {
    let rule_files = rules
        .map(|r| format!("rule_files:\n  - {:?}\n", r.display().to_string()))
        .unwrap_or_default();
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         {rule_files}\
         scrape_configs:\n  - job_name: pausewatch\n    static_configs:\n      \
         - targets: ['127.0.0.1:{agent_port}']\n"
    )
}

/// A float sample's value (`value: [t, "v"]`).
pub fn value(s: &Value) -> f64 {
    s["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// A native histogram sample as the query API returns it.
pub struct NativeSample {
    /// Its count of observations.
    pub count: f64,
    /// Its sum of observations.
    pub sum: f64,
    /// Each bucket as (lower, upper, count); the zero bucket included.
    pub buckets: Vec<(f64, f64, f64)>,
}

/// A native histogram sample (`histogram: [t, {count, sum, buckets}]`).
pub fn native(s: &Value) -> Option<NativeSample> {
    let h = &s["histogram"][1];
    let num = |v: &Value| v.as_str().and_then(|t| t.parse::<f64>().ok());
    let count = num(&h["count"])?;
    let sum = num(&h["sum"])?;
    let buckets = h["buckets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| Some((num(&b[1])?, num(&b[2])?, num(&b[3])?)))
        .collect();
    Some(NativeSample {
        count,
        sum,
        buckets,
    })
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// GET `path` from 127.0.0.1:`port` over HTTP/1.0 (no chunking, no
/// keep-alive): status and body.
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}
