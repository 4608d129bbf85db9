//! End to end for the host-wide mode: `agent run --all` finds processes
//! without being told their pids, attaches to each soon after it starts,
//! reports its pauses while it runs, keeps its final numbers for the grace
//! period after it exits, then forgets it; and labels a process in a
//! kubepods-like cgroup, in its own pid and mount namespaces, with its
//! container and pod.
//!
//! The processes come from a table of kinds ([`KINDS`]): JVMs on JDK 17 and
//! 25, started directly, through `sh -c 'exec java ...'` and through a
//! launcher script that execs java after a delay. Other runtimes join by
//! adding a row (a launcher and a ground-truth count).
//!
//! Ground truth: each JVM logs its GCs (`-Xlog:gc`); the heavy phase, which
//! calls `System.gc()` every [`SYSTEM_GC_MS`], only starts when the test
//! opens the workload's gate, after the agent exports the process, so every
//! full collection happens under the probes and the agent's
//! `pausewatch_pause_seconds_count{kind="gc",cause="full"}` must equal the
//! log's `Pause Full` lines, exactly.
//!
//! Needs root; fails (never skips) without it, the JDKs, `unshare` or cgroup2.
//! See the numbers with `cargo test -p xtask --test e2e_host -- --nocapture`.

mod support;

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use support::{Agent, Checks, agent_binary, free_port, http_get, parse_prometheus, require_root};
use xtask::workloads::JavaWorkload;

/// The two tests share the machine's cores; one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// How often each JVM calls `System.gc()` in its heavy phase.
const SYSTEM_GC_MS: u64 = 400;
/// `--forget-after` of the agent under test.
const FORGET_AFTER_SECS: u64 = 5;
/// Processes in the churn test.
const PROCESSES: usize = 24;
/// A new process starts this often.
const START_EVERY: Duration = Duration::from_millis(2500);

/// How a kind of process is started: `program args...` runs the workload.
#[derive(Clone, Copy, Debug)]
enum Launch {
    /// `java args...`.
    Direct,
    /// `sh -c 'exec "$0" "$@"' java args...`.
    ShExec,
    /// A launcher script that sleeps, then `exec java args...`: the runtime
    /// appears well after the first exec of the pid.
    Script,
}

/// One kind of process in the churn test.
#[derive(Clone, Copy, Debug)]
struct ProcessKind {
    name: &'static str,
    jdk: u32,
    launch: Launch,
}

/// Every kind of process the churn test starts, round robin. Go, CPython and
/// Node rows go here once those runtimes are merged.
const KINDS: [ProcessKind; 4] = [
    ProcessKind {
        name: "jdk17",
        jdk: 17,
        launch: Launch::Direct,
    },
    ProcessKind {
        name: "jdk25",
        jdk: 25,
        launch: Launch::Direct,
    },
    ProcessKind {
        name: "jdk17-sh-c",
        jdk: 17,
        launch: Launch::ShExec,
    },
    ProcessKind {
        name: "jdk25-script",
        jdk: 25,
        launch: Launch::Script,
    },
];

/// A started workload process.
struct Started {
    child: Child,
    gate: PathBuf,
    log: PathBuf,
    dir: PathBuf,
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Starts a small GcHeavy JVM of `kind` for `secs` of heavy phase, gated.
/// `wrap` may put a command in front (the namespace test).
fn start(
    kind: ProcessKind,
    secs: u64,
    tag: &str,
    wrap: Option<&dyn Fn(Vec<String>) -> Command>,
) -> Started {
    let dir = std::env::temp_dir().join(format!("pausewatch-host-{}-{tag}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let log = dir.join("gc.log");
    let workload = JavaWorkload::jdk(kind.jdk)
        .unwrap_or_else(|e| panic!("JDK {}: {e:#}", kind.jdk))
        .heap_mb(32)
        .young_mb(Some(8))
        .live_mb(4)
        .alloc_mb_per_sec(20)
        .system_gc_every_ms(SYSTEM_GC_MS)
        .duration_secs(secs)
        .log_path(&log)
        .gate(true);
    let (args, gate, _stop) = workload.command_line(&dir).unwrap();
    let gate = gate.expect("the workload is gated");
    let java = workload.java().to_str().unwrap().to_string();
    let mut full = vec![java];
    full.extend(args);
    let mut cmd = match (wrap, kind.launch) {
        (Some(w), _) => w(full),
        (None, Launch::Direct) => {
            let mut c = Command::new(&full[0]);
            c.args(&full[1..]);
            c
        }
        (None, Launch::ShExec) => {
            let mut c = Command::new("sh");
            c.arg("-c").arg("exec \"$0\" \"$@\"").args(&full);
            c
        }
        (None, Launch::Script) => {
            let script = dir.join("launch.sh");
            fs::write(&script, "#!/bin/sh\nsleep 0.3\nexec \"$@\"\n").unwrap();
            Command::new("chmod")
                .arg("+x")
                .arg(&script)
                .status()
                .unwrap();
            let mut c = Command::new(&script);
            c.args(&full);
            c
        }
    };
    // stdin stays a pipe: the workload stops when it closes (test death).
    let child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {kind:?}: {e}"));
    Started {
        child,
        gate,
        log,
        dir,
    }
}

/// Full GCs in a JVM's -Xlog:gc file.
fn full_gcs_in_log(log: &Path) -> u64 {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("Pause Full"))
        .count() as u64
}

fn scrape(addr: SocketAddr) -> Vec<support::Sample> {
    parse_prometheus(&http_get(addr, "/metrics"))
}

fn has_target(samples: &[support::Sample], pid: u32) -> bool {
    let pid = pid.to_string();
    samples
        .iter()
        .any(|s| s.name == "pausewatch_target_info" && s.label("pid") == pid)
}

fn full_gcs(samples: &[support::Sample], pid: u32) -> Option<u64> {
    let pid = pid.to_string();
    samples
        .iter()
        .find(|s| {
            s.name == "pausewatch_pause_seconds_count"
                && s.label("pid") == pid
                && s.label("kind") == "gc"
                && s.label("cause") == "full"
        })
        .map(|s| s.value as u64)
}

fn any_series_of(samples: &[support::Sample], pid: u32) -> bool {
    let pid = pid.to_string();
    samples.iter().any(|s| s.label("pid") == pid)
}

/// Polls `/metrics` every 100 ms until `pred` holds or `timeout` passes.
fn poll(
    addr: SocketAddr,
    timeout: Duration,
    mut pred: impl FnMut(&[support::Sample]) -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pred(&scrape(addr)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for the workload to end its heavy phase by itself. (Not
/// `Child::wait`, which closes stdin first: the workload stops on EOF.)
fn wait_exit(child: &mut Child, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "pid {} did not exit within {secs} s",
            child.id()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// What happened to one process of the churn test.
#[derive(Debug, Default)]
struct Outcome {
    kind: &'static str,
    pid: u32,
    attached: bool,
    seen_running: bool,
    exported_full: Option<u64>,
    logged_full: u64,
    forgotten: bool,
    /// From the exec of `java` to `libjvm.so` in its maps, as seen by
    /// polling `/proc` every 2 ms (the part of the agent's "ms after exec"
    /// that is the JVM's own start-up, not the agent).
    runtime_after_exec_ms: Option<f64>,
}

/// Polls `/proc/PID` every 2 ms: when does the process run `java`, and when
/// is `libjvm.so` mapped? Returns the milliseconds between the two.
fn watch_runtime_load(pid: u32, timeout: Duration) -> Option<f64> {
    let deadline = Instant::now() + timeout;
    let mut exec_at = None;
    while Instant::now() < deadline {
        if exec_at.is_none()
            && fs::read_link(format!("/proc/{pid}/exe"))
                .is_ok_and(|e| e.file_name().is_some_and(|n| n == "java"))
        {
            exec_at = Some(Instant::now());
        }
        if let Some(at) = exec_at
            && fs::read_to_string(format!("/proc/{pid}/maps"))
                .is_ok_and(|m| m.contains("libjvm.so"))
        {
            return Some(at.elapsed().as_secs_f64() * 1e3);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

/// Drives one process through its life and records what the agent showed.
fn drive(addr: SocketAddr, kind: ProcessKind, secs: u64, tag: &str) -> Outcome {
    let mut p = start(kind, secs, tag, None);
    let pid = p.child.id();
    let mut out = Outcome {
        kind: kind.name,
        pid,
        ..Outcome::default()
    };
    out.runtime_after_exec_ms = watch_runtime_load(pid, Duration::from_secs(20));
    // Attached: exported as a target. JVM start-up under load takes a while,
    // but the agent must have it before the gate opens.
    out.attached = poll(addr, Duration::from_secs(20), |s| has_target(s, pid));
    fs::write(&p.gate, b"").unwrap();
    out.seen_running = poll(addr, Duration::from_secs(secs + 20), |s| {
        full_gcs(s, pid).is_some_and(|n| n > 0)
    }) && p.child.try_wait().unwrap().is_none();
    wait_exit(&mut p.child, secs + 30);
    out.logged_full = full_gcs_in_log(&p.log);
    // Final numbers, inside the grace period: the agent reads the maps every
    // 0.5 s, so allow a couple of reads for the last GCs to show.
    let mut last = None;
    poll(addr, Duration::from_secs(3), |s| {
        last = full_gcs(s, pid);
        last == Some(out.logged_full)
    });
    out.exported_full = last;
    out.forgotten = poll(addr, Duration::from_secs(FORGET_AFTER_SECS + 10), |s| {
        !any_series_of(s, pid)
    });
    out
}

#[test]
fn all_follows_and_forgets_churning_jvms() {
    require_root("all_follows_and_forgets_churning_jvms");
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let forget = FORGET_AFTER_SECS.to_string();
    let mut agent = Agent::start_selecting(
        &agent_binary(),
        listen,
        &[
            "--all",
            "--summary",
            "0",
            "--interval",
            "0.5",
            "--forget-after",
            &forget,
            // The rule engine keeps two windows of snapshots: a short one,
            // so that the exited targets' leave memory within the test.
            "--window",
            "5",
        ],
    );
    agent.wait_stderr("following new processes", Duration::from_secs(30));
    // Let the start-up scan finish before measuring the baseline.
    std::thread::sleep(Duration::from_secs(3));
    let rss_before = rss_kib(agent.pid());
    let started = Instant::now();

    let agent_pid = agent.pid();
    let sampling = std::sync::atomic::AtomicBool::new(true);
    let mut peak_rss = rss_before;
    let outcomes: Vec<Outcome> = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut peak = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_kib(agent_pid));
                std::thread::sleep(Duration::from_millis(250));
            }
            peak
        });
        let handles: Vec<_> = (0..PROCESSES)
            .map(|i| {
                let kind = KINDS[i % KINDS.len()];
                // 3 to 5 s of heavy phase: a mix of lifetimes.
                let secs = 3 + (i as u64 % 3);
                let delay = START_EVERY * i as u32;
                scope.spawn(move || {
                    std::thread::sleep(delay);
                    drive(listen, kind, secs, &format!("churn{i}"))
                })
            })
            .collect();
        let outcomes = handles.into_iter().map(|h| h.join().unwrap()).collect();
        sampling.store(false, std::sync::atomic::Ordering::Relaxed);
        peak_rss = peak_rss.max(sampler.join().unwrap());
        outcomes
    });
    let churn = started.elapsed();
    // Other processes of the host may come and go meanwhile; give the agent
    // its grace period, two rule windows and a memory trim (every 5 s) to
    // drop whatever was ours.
    std::thread::sleep(Duration::from_secs(FORGET_AFTER_SECS + 12));
    let rss_after = rss_kib(agent.pid());
    let stderr = agent.stderr_text();
    agent.interrupt(Duration::from_secs(10));

    let mut latencies = Vec::new();
    let mut agent_share = Vec::new();
    let mut attach_times = Vec::new();
    let mut c = Checks::new();
    println!(
        "\n=== agent run --all: {PROCESSES} processes in {:.0} s ===",
        churn.as_secs_f64()
    );
    println!(
        "{:<14} {:>7} {:>8} {:>8} {:>9} {:>7} {:>10} {:>12} {:>11}",
        "kind",
        "pid",
        "attached",
        "running",
        "exported",
        "logged",
        "forgotten",
        "attach ms",
        "libjvm ms"
    );
    for o in &outcomes {
        let line = stderr
            .lines()
            .find(|l| l.contains(&format!("tracing pid {} (", o.pid)));
        let latency = line
            .and_then(|l| l.rsplit(", ").next())
            .and_then(|t| t.strip_suffix(" ms after exec"))
            .and_then(|t| t.parse::<f64>().ok());
        if let Some(ms) = line
            .and_then(|l| l.split(" attached in ").nth(1))
            .and_then(|t| t.split(" ms").next())
            .and_then(|t| t.parse::<f64>().ok())
        {
            attach_times.push(ms);
        }
        if let Some(ms) = latency {
            latencies.push(ms);
        }
        if let (Some(total), Some(jvm)) = (latency, o.runtime_after_exec_ms) {
            agent_share.push(total - jvm);
        }
        println!(
            "{:<14} {:>7} {:>8} {:>8} {:>9} {:>7} {:>10} {:>12} {:>11}",
            o.kind,
            o.pid,
            o.attached,
            o.seen_running,
            o.exported_full.map_or("-".into(), |n| n.to_string()),
            o.logged_full,
            o.forgotten,
            latency.map_or("-".into(), |ms| format!("{ms:.1}")),
            o.runtime_after_exec_ms
                .map_or("-".into(), |ms| format!("{ms:.1}")),
        );
        c.check(o.attached, || {
            format!("{} pid {} was never exported as a target", o.kind, o.pid)
        });
        c.check(o.seen_running, || {
            format!("{} pid {}: no full GC exported while it ran", o.kind, o.pid)
        });
        c.check(o.logged_full > 0, || {
            format!(
                "{} pid {}: its log has no full GC (workload broken?)",
                o.kind, o.pid
            )
        });
        c.eq(
            &format!(
                "{} pid {} full GCs exported after exit vs its -Xlog",
                o.kind, o.pid
            ),
            o.exported_full,
            Some(o.logged_full),
        );
        c.check(o.forgotten, || {
            format!(
                "{} pid {} still exported {FORGET_AFTER_SECS} s after exit",
                o.kind, o.pid
            )
        });
        c.check(latency.is_some(), || {
            format!(
                "{} pid {}: no 'ms after exec' line on the agent's stderr",
                o.kind, o.pid
            )
        });
    }
    latencies.sort_by(f64::total_cmp);
    if let (Some(first), Some(last)) = (latencies.first(), latencies.last()) {
        println!(
            "attach after the exec of java: min {first:.1} ms, median {:.1} ms, max {last:.1} ms",
            latencies[latencies.len() / 2]
        );
    }
    agent_share.sort_by(f64::total_cmp);
    if let (Some(first), Some(last)) = (agent_share.first(), agent_share.last()) {
        println!(
            "attach after libjvm.so was mapped: min {first:.1} ms, median {:.1} ms, max {last:.1} ms",
            agent_share[agent_share.len() / 2]
        );
        // The agent's part: from the runtime's appearance to the attach.
        // (The JVM's own start-up, exec to libjvm.so, is ~30 ms idle and
        // seconds on a loaded 2-core machine; it is printed, not judged.)
        c.check(*last < 1000.0, || {
            format!("an attach took {last:.1} ms after libjvm.so was mapped")
        });
    }
    attach_times.sort_by(f64::total_cmp);
    if let (Some(first), Some(last)) = (attach_times.first(), attach_times.last()) {
        println!(
            "uprobe attach per process: min {first:.2} ms, median {:.2} ms, max {last:.2} ms",
            attach_times[attach_times.len() / 2]
        );
    }
    println!("agent RSS: {rss_before} KiB before, {peak_rss} KiB peak, {rss_after} KiB after");
    // The allocator keeps some freed pages; anything per target that is
    // never dropped would grow by ~kilobytes per process.
    c.check(rss_after <= rss_before + 4096, || {
        format!("agent RSS grew from {rss_before} KiB to {rss_after} KiB over the churn")
    });
    c.finish(&format!("host-wide churn; agent stderr:\n{stderr}"));
}

/// The unified (v2) cgroup hierarchy's mount point.
fn cgroup2_root() -> PathBuf {
    let mounts = fs::read_to_string("/proc/mounts").unwrap();
    mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .expect("a cgroup2 hierarchy is mounted (needed for the container label test)")
}

#[test]
fn labels_a_jvm_in_a_pod_cgroup_and_namespaces() {
    require_root("labels_a_jvm_in_a_pod_cgroup_and_namespaces");
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let uid = format!("5e0c3a1b-7d2f-4e6a-9b8c-{:012x}", std::process::id());
    let container = format!(
        "{:064x}",
        u128::from(std::process::id()) * 0x9e37_79b9_7f4a_7c15
    );
    let pod_slice = format!("kubepods-besteffort-pod{}.slice", uid.replace('-', "_"));
    let base = cgroup2_root().join("kubepods.slice");
    let leaf = base
        .join("kubepods-besteffort.slice")
        .join(&pod_slice)
        .join(format!("cri-containerd-{container}.scope"));
    fs::create_dir_all(&leaf).unwrap_or_else(|e| panic!("creating {}: {e}", leaf.display()));

    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut agent = Agent::start_selecting(
        &agent_binary(),
        listen,
        &["--comm", "java", "--summary", "0", "--interval", "0.5"],
    );
    agent.wait_stderr("following new processes", Duration::from_secs(30));

    // Into the cgroup, then new pid and mount namespaces; inside, a pod's
    // view: the pod name as /etc/hostname and a service account namespace.
    let procs = leaf.join("cgroup.procs");
    let wrap = move |java: Vec<String>| {
        let inner = "mount -t tmpfs tmpfs /run && \
             mkdir -p /run/secrets/kubernetes.io/serviceaccount && \
             echo shop > /run/secrets/kubernetes.io/serviceaccount/namespace && \
             echo cart-7d9f > /run/hostname && mount --bind /run/hostname /etc/hostname && \
             exec \"$0\" \"$@\"";
        let outer = format!(
            "echo $$ > '{}' && exec unshare --fork --pid --mount-proc sh -c '{inner}' \"$0\" \"$@\"",
            procs.display()
        );
        let mut c = Command::new("sh");
        c.arg("-c").arg(outer).args(java);
        c
    };
    let mut p = start(KINDS[1], 4, "pod", Some(&wrap));

    let want_info = |s: &support::Sample| {
        s.name == "pausewatch_target_info"
            && s.label("pod") == "cart-7d9f"
            && s.label("namespace") == "shop"
    };
    let mut info = None;
    poll(listen, Duration::from_secs(20), |s| {
        info = s.iter().find(|x| want_info(x)).cloned();
        info.is_some()
    });
    fs::write(&p.gate, b"").unwrap();
    let mut c = Checks::new();
    let Some(info) = info else {
        let stderr = agent.stderr_text();
        drop(p);
        let _ = remove_cgroups(&leaf, &base);
        panic!(
            "no pausewatch_target_info with pod=cart-7d9f, namespace=shop; agent stderr:\n{stderr}"
        );
    };
    let pid: u32 = info.label("pid").parse().unwrap();
    c.eq(
        "container_id",
        info.label("container_id"),
        container.as_str(),
    );
    c.eq("pod_uid", info.label("pod_uid"), uid.as_str());
    // The JVM is pid 1 of its own pid namespace: NSpid has two levels.
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let nspid = status
        .lines()
        .find(|l| l.starts_with("NSpid:"))
        .unwrap_or("")
        .to_string();
    let levels: Vec<&str> = nspid.split_whitespace().skip(1).collect();
    c.check(levels.len() == 2 && levels[1] == "1", || {
        format!("pid {pid} is not pid 1 of a new pid namespace: {nspid:?}")
    });
    c.check(
        fs::read_link(format!("/proc/{pid}/ns/mnt")).ok()
            != fs::read_link("/proc/self/ns/mnt").ok(),
        || format!("pid {pid} shares the test's mount namespace"),
    );
    // The probes go through /proc/PID/root.
    let probes = Command::new(agent_binary())
        .args(["probes", "--pid", &pid.to_string()])
        .output()
        .unwrap();
    let probes = String::from_utf8_lossy(&probes.stdout);
    c.check(probes.contains(&format!("/proc/{pid}/root/")), || {
        format!("`agent probes` does not attach through /proc/{pid}/root:\n{probes}")
    });
    // And they fire: its System.gc() calls show up.
    c.check(
        poll(listen, Duration::from_secs(20), |s| {
            full_gcs(s, pid).is_some_and(|n| n > 0)
        }),
        || format!("no full GC exported for pid {pid} in the pod"),
    );
    wait_exit(&mut p.child, 40);
    let logged = full_gcs_in_log(&p.log);
    let mut exported = None;
    poll(listen, Duration::from_secs(3), |s| {
        exported = full_gcs(s, pid);
        exported == Some(logged)
    });
    c.eq(
        "full GCs exported vs the pod JVM's -Xlog",
        exported,
        Some(logged),
    );
    println!(
        "pod JVM pid {pid} ({nspid}): labels {:?}, {logged} full GCs",
        info.labels
    );
    let stderr = agent.stderr_text();
    agent.interrupt(Duration::from_secs(10));
    drop(p);
    let cleanup = remove_cgroups(&leaf, &base);
    c.check(cleanup.is_ok(), || {
        format!("removing the test cgroups: {cleanup:?}")
    });
    c.finish(&format!("container labels; agent stderr:\n{stderr}"));
}

/// Removes the test's cgroups, leaf first (each must be empty).
fn remove_cgroups(leaf: &Path, base: &Path) -> std::io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut dir = leaf.to_path_buf();
    loop {
        // The JVM's exit takes a moment to leave the cgroup.
        while let Err(e) = fs::remove_dir(&dir) {
            if Instant::now() >= deadline {
                return Err(e);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if dir == base {
            return Ok(());
        }
        dir = dir.parent().expect("under base").to_path_buf();
    }
}
