//! End to end: the pause anatomy (running / runnable / blocked time of the
//! thread that drives each pause) under a CPU quota and without one,
//! checked against the kernel's own accounting of the same thread.
//!
//! - **Throttled JVM**: GcHeavy with Serial GC (whose collections run on the
//!   VM thread itself, so the driver does the pause's work) in a cgroup v1
//!   `cpu` group with a quota of 0.3 cores, calling `System.gc()` on a
//!   timer over a 48 MB live set: every full collection needs more CPU than
//!   a quota period grants. The exported runnable share of safepoint time
//!   is at least 30%; the `cpu_throttled` finding fires and names the
//!   limit; the three states add up to `pausewatch_pause_seconds_sum` of
//!   the kind within 1%, and to each event's duration exactly.
//! - **The kernel's word for it**: the VM thread's run delay in
//!   `/proc/PID/task/TID/schedstat` (time spent runnable, added when the
//!   thread gets a CPU back). A sampler reads it every few ms; between the
//!   first and the last sample that fall outside every pause, the agent's
//!   runnable time of the events in between agrees with the run delay's
//!   growth within 20%. That growth also holds the waits of the VM
//!   thread's wake-ups outside pauses, which the agent rightly leaves out:
//!   the workload keeps them small by allocating slowly (its threads use a
//!   fraction of the quota between collections), so the VM thread, asleep
//!   between pauses, rarely wakes into a spent quota.
//! - **Throttled G1**: the same workload on G1 with two GC workers, in a
//!   group of its own. G1's VM thread hands a pause's work to its
//!   `GC Thread#N` workers and waits, so the starvation shows in the
//!   workers (`role="workers"`): their runnable share of busy time is at
//!   least 30%, `gc_workers_throttled` fires, and their running plus
//!   runnable seconds agree within 30% with the growth of the workers'
//!   schedstat run time plus run delay from the attach to the end (the
//!   workers also run, and are woken, just outside the GC pause probes:
//!   G1 hands them work before `gc__begin`'s marker and after its end).
//! - **Throttled Go**: the bundled Go workload in the same kind of group
//!   with `GOMAXPROCS=2`: the runnable share of its stop-the-world time is
//!   at least 30% and `cpu_throttled` fires.
//! - **Unthrottled JVM**: the same JVM workload without the group: the
//!   runnable share is under 10% and neither CPU finding fires.
//!
//! The groups are made and removed by the test (v1 `cpu` controller, as on
//! this machine; the agent reads v2's `cpu.max` too, see
//! `agent/src/targets/cpu_limit.rs`).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};
use std::time::Duration;

use support::child::Process;
use support::events::parse_events;
use support::hotspot::{Jvm, ready_jvm};
use support::scenario::{Subject, observe};
use support::{Agent, Checks, Sample, http_get, parse_prometheus, require_root, select, sum_of};
use xtask::workloads::{JavaWorkload, monotonic_now_ns};

/// The quota: 3 ms of CPU per 10 ms period, 0.3 cores. A short period makes
/// throttling hit many pauses, not one in a hundred.
const QUOTA_US: u64 = 3_000;
const PERIOD_US: u64 = 10_000;

/// A cgroup v1 `cpu` group with a CFS quota, removed on drop.
struct Quota(PathBuf);

impl Quota {
    fn new(tag: &str) -> Quota {
        let dir = PathBuf::from(format!(
            "/sys/fs/cgroup/cpu/pausewatch-e2e-{tag}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        std::fs::write(dir.join("cpu.cfs_period_us"), PERIOD_US.to_string()).unwrap();
        std::fs::write(dir.join("cpu.cfs_quota_us"), QUOTA_US.to_string()).unwrap();
        Quota(dir)
    }

    /// A launcher that moves itself into the group, then execs the
    /// program (same pid, so every thread it starts is in the group).
    fn launcher(&self) -> Vec<String> {
        vec![
            "sh".into(),
            "-c".into(),
            format!(
                "echo $$ > {}/cgroup.procs && exec \"$0\" \"$@\"",
                self.0.display()
            ),
        ]
    }
}

impl Drop for Quota {
    fn drop(&mut self) {
        // A group can go once its processes have; they exit before this.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The JVM workload, in `quota` when given: `gc` (Serial GC unless told),
/// a 48 MB live set churned at 16 MB/s, and a full collection every 150 ms
/// for 8 s.
fn jvm(quota: Option<&Quota>, label: &str, log: &Path) -> Jvm {
    jvm_with(quota, label, log, &["-XX:+UseSerialGC"])
}

fn jvm_with(quota: Option<&Quota>, label: &str, log: &Path, gc: &[&str]) -> Jvm {
    let mut w = JavaWorkload::jdk(17)
        .unwrap_or_else(|e| panic!("JDK 17: {e:#}"))
        .gc_flags(gc.iter().copied())
        .heap_mb(160)
        .young_mb(Some(16))
        .live_mb(48)
        .alloc_mb_per_sec(16)
        .system_gc_every_ms(150)
        .duration_secs(8)
        .log_path(log)
        .gate(true);
    if let Some(q) = quota {
        w = w.launch_through(q.launcher());
    }
    ready_jvm(w, label, log, Duration::from_secs(120))
}

/// One reading of a thread's `schedstat`: (CLOCK_MONOTONIC ns, run ns,
/// run delay ns).
type Reading = (u64, u64, u64);

/// Reads `/proc/PID/task/TID/schedstat` every 2 ms until stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Reading>>,
}

impl Sampler {
    fn start(pid: u32, tid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let path = format!("/proc/{pid}/task/{tid}/schedstat");
        let thread = std::thread::spawn(move || {
            let mut readings = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let Ok(text) = std::fs::read_to_string(&path) else {
                    break;
                };
                let at = monotonic_now_ns();
                let mut f = text.split_whitespace().map(|w| w.parse::<u64>().unwrap());
                readings.push((at, f.next().unwrap(), f.next().unwrap()));
                std::thread::sleep(Duration::from_millis(2));
            }
            readings
        });
        Sampler { stop, thread }
    }

    fn finish(self) -> Vec<Reading> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// Sums the schedstat run time and run delay of every `GC Thread#N` of
/// `pid` every 5 ms until stopped (workers start lazily, so the set is
/// read afresh each time; a new one starts from zero).
fn start_worker_sampler(pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Reading>> {
    std::thread::spawn(move || {
        let mut readings = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                break;
            };
            let (mut run, mut delay) = (0, 0);
            for task in tasks.flatten() {
                let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
                if !comm.starts_with("GC Thread#") {
                    continue;
                }
                let text =
                    std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
                let mut f = text
                    .split_whitespace()
                    .map(|w| w.parse::<u64>().unwrap_or(0));
                run += f.next().unwrap_or(0);
                delay += f.next().unwrap_or(0);
            }
            readings.push((monotonic_now_ns(), run, delay));
            std::thread::sleep(Duration::from_millis(5));
        }
        readings
    })
}

/// The workers' figures of a throttled G1 JVM: share, finding, and the
/// comparison with their schedstat from the attach to the end.
fn check_workers(
    c: &mut Checks,
    samples: &[Sample],
    pid: u32,
    readings: &[Reading],
    armed_ns: u64,
) {
    let pid_s = pid.to_string();
    let get = |state: &str| {
        sum_of(
            samples,
            "pausewatch_pause_thread_seconds_total",
            &[
                ("pid", pid_s.as_str()),
                ("kind", "gc"),
                ("role", "workers"),
                ("state", state),
            ],
        )
    };
    let (running, runnable) = (get("running"), get("runnable"));
    let share = if running + runnable > 0.0 {
        runnable / (running + runnable)
    } else {
        0.0
    };
    let start = readings
        .iter()
        .rev()
        .find(|r| r.0 <= armed_ns)
        .or(readings.first());
    // The sums only grow while the JVM runs; as it exits, its threads
    // vanish one by one, so the end is the largest reading.
    let end = readings.iter().max_by_key(|r| r.1 + r.2);
    let (Some(a), Some(b)) = (start, end) else {
        c.check(false, || "no GC worker schedstat readings".to_string());
        return;
    };
    let kernel = (b.1 + b.2).saturating_sub(a.1 + a.2) as f64 / 1e9;
    eprintln!(
        "pid {pid} G1 workers in GC pauses: running {running:.3} s, runnable {runnable:.3} s (runnable share {:.1}%); their schedstat run time + run delay from the attach: {kernel:.3} s (run {:.3} s, delay {:.3} s)",
        share * 100.0,
        b.1.saturating_sub(a.1) as f64 / 1e9,
        b.2.saturating_sub(a.2) as f64 / 1e9,
    );
    c.check(share >= 0.30, || {
        format!(
            "throttled G1: workers' runnable share {:.1}% < 30%",
            share * 100.0
        )
    });
    c.check(finding(samples, pid, "gc_workers_throttled"), || {
        "throttled G1: no gc_workers_throttled finding".to_string()
    });
    c.within(
        "G1 workers' running + runnable against their schedstat run time + run delay",
        running + runnable,
        kernel,
        0.30,
    );
}

/// The tid of the thread of `pid` called `name`.
fn thread_named(pid: u32, name: &str) -> u32 {
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let entry = entry.unwrap();
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            return entry.file_name().to_str().unwrap().parse().unwrap();
        }
    }
    panic!("pid {pid} has no thread {name:?}");
}

/// Per state, the exported driver seconds of `kind` for `pid`.
fn states(samples: &[Sample], pid: u32, kind: &str) -> [f64; 3] {
    let pid = pid.to_string();
    ["running", "runnable", "blocked"].map(|state| {
        sum_of(
            samples,
            "pausewatch_pause_thread_seconds_total",
            &[
                ("pid", pid.as_str()),
                ("kind", kind),
                ("role", "driver"),
                ("state", state),
            ],
        )
    })
}

/// Whether `rule` holds for `pid` in the scrape.
fn finding(samples: &[Sample], pid: u32, rule: &str) -> bool {
    let pid = pid.to_string();
    !select(
        samples,
        "pausewatch_finding",
        &[("pid", pid.as_str()), ("rule", rule)],
    )
    .is_empty()
}

/// Checks the shares, the sums and the findings of one observed target.
fn check_shares(c: &mut Checks, samples: &[Sample], pid: u32, kind: &str, throttled: bool) -> f64 {
    let [running, runnable, blocked] = states(samples, pid, kind);
    let total = running + runnable + blocked;
    let pid_s = pid.to_string();
    let paused = sum_of(
        samples,
        "pausewatch_pause_seconds_sum",
        &[("pid", pid_s.as_str()), ("kind", kind)],
    );
    c.check(paused > 0.0, || format!("no {kind} pauses exported"));
    c.within(
        &format!("{kind}: running + runnable + blocked against the pause sum"),
        total,
        paused,
        0.01,
    );
    let share = if total > 0.0 { runnable / total } else { 0.0 };
    eprintln!(
        "pid {pid} {kind}: running {running:.3} s, runnable {runnable:.3} s, blocked \
         {blocked:.3} s of {paused:.3} s: runnable share {:.1}%",
        share * 100.0
    );
    if throttled {
        c.check(share >= 0.30, || {
            format!("throttled: runnable share {:.1}% < 30%", share * 100.0)
        });
        c.check(finding(samples, pid, "cpu_throttled"), || {
            "throttled: no cpu_throttled finding".to_string()
        });
    } else {
        c.check(share < 0.10, || {
            format!("unthrottled: runnable share {:.1}% >= 10%", share * 100.0)
        });
        for rule in ["cpu_throttled", "cpu_starved"] {
            c.check(!finding(samples, pid, rule), || {
                format!("unthrottled: the {rule} finding fired")
            });
        }
    }
    share
}

/// Compares the agent's runnable time of the VM thread's pauses with its
/// schedstat run delay over the same stretch (see the module doc).
fn check_schedstat(c: &mut Checks, readings: &[Reading], events: &[support::events::Event]) {
    let pauses: Vec<(u64, u64)> = events
        .iter()
        .filter(|e| e.kind == "safepoint")
        .map(|e| (e.start_ns, e.end_ns()))
        .collect();
    // A reading counts only outside every pause and after the first one
    // the agent saw, so both sides cover whole pauses.
    let Some(first) = pauses.first().map(|p| p.0) else {
        c.check(false, || "no safepoint events".to_string());
        return;
    };
    let outside = |at: u64| at > first && !pauses.iter().any(|&(s, e)| s <= at && at <= e);
    let clean: Vec<&Reading> = readings.iter().filter(|r| outside(r.0)).collect();
    let (Some(a), Some(b)) = (clean.first(), clean.last()) else {
        c.check(false, || {
            "no schedstat reading outside the pauses".to_string()
        });
        return;
    };
    let in_between = events
        .iter()
        .filter(|e| e.kind == "safepoint" && e.start_ns > a.0 && e.end_ns() < b.0);
    let (mut runnable, mut running, mut n) = (0u64, 0u64, 0usize);
    for e in in_between {
        let d = e
            .driver
            .as_ref()
            .expect("a safepoint event without driver times");
        c.eq(
            "an event's running + runnable + blocked against its duration",
            d.running_ns + d.runnable_ns + d.blocked_ns,
            e.duration_ns,
        );
        runnable += d.runnable_ns;
        running += d.running_ns;
        n += 1;
    }
    let delay = b.2 - a.2;
    let run = b.1 - a.1;
    eprintln!(
        "VM thread over {:.2} s and {n} safepoints: agent runnable {:.1} ms, schedstat run \
         delay {:.1} ms; agent running {:.1} ms, schedstat run time {:.1} ms",
        (b.0 - a.0) as f64 / 1e9,
        runnable as f64 / 1e6,
        delay as f64 / 1e6,
        running as f64 / 1e6,
        run as f64 / 1e6,
    );
    c.check(n >= 10, || {
        format!("only {n} safepoints between the readings")
    });
    c.within(
        "the VM thread's runnable seconds against its schedstat run delay",
        runnable as f64,
        delay as f64,
        0.20,
    );
}

#[test]
fn throttled_pauses_wait_for_a_cpu_and_unthrottled_ones_do_not() {
    require_root("the pause anatomy test (cgroups, BPF)");
    let dir = support::ScratchDir::new("anatomy");
    let mut c = Checks::new();

    // The throttled Go program runs beside the throttled JVM: together
    // they hold 0.6 of this machine's 2 cores.
    let go_quota = Quota::new("go");
    let go = spawn_go(&go_quota);

    // So does a throttled G1 JVM, observed on a thread of its own.
    let g1_quota = Quota::new("g1");
    let mut g1 = jvm_with(
        Some(&g1_quota),
        "JDK 17 G1, 2 workers, 0.3 cores",
        &dir.path().join("g1.log"),
        &["-XX:+UseG1GC", "-XX:ParallelGCThreads=2"],
    );
    let g1_pid = g1.pid();
    let g1_stop = Arc::new(AtomicBool::new(false));
    let g1_sampler = start_worker_sampler(g1_pid, g1_stop.clone());
    let g1_run = std::thread::spawn(move || {
        let o = observe(
            &mut g1,
            &["--summary", "0", "--window", "4"],
            Duration::from_secs(10),
        );
        (o.samples, o.window.armed_ns, g1)
    });

    let quota = Quota::new("jvm");
    let mut subject = jvm(
        Some(&quota),
        "JDK 17 Serial, 0.3 cores",
        &dir.path().join("q.log"),
    );
    let pid = subject.pid();
    let vm_thread = thread_named(pid, "VM Thread");
    let sampler = Sampler::start(pid, vm_thread);
    let o = observe(
        &mut subject,
        &["--events", "--summary", "0", "--window", "4"],
        Duration::from_secs(10),
    );
    let readings = sampler.finish();
    let events = parse_events(&o.events);
    check_shares(&mut c, &o.samples, pid, "safepoint", true);
    check_schedstat(&mut c, &readings, &events);
    let (g1_samples, g1_armed, g1) = g1_run.join().expect("the G1 observation panicked");
    g1_stop.store(true, Ordering::Relaxed);
    let g1_readings = g1_sampler.join().expect("the G1 sampler panicked");
    check_workers(&mut c, &g1_samples, g1_pid, &g1_readings, g1_armed);
    drop(g1);
    let go_samples = go.finish();
    check_shares(&mut c, &go_samples.1, go_samples.0, "stw", true);
    drop(subject);

    let mut free = jvm(
        None,
        "JDK 17 Serial, unthrottled",
        &dir.path().join("u.log"),
    );
    let pid = free.pid();
    let o = observe(
        &mut free,
        &["--summary", "0", "--window", "4"],
        Duration::from_secs(10),
    );
    check_shares(&mut c, &o.samples, pid, "safepoint", false);
    c.finish("pause anatomy");
}

/// The throttled Go workload and its agent, running.
struct GoRun {
    workload: Process,
    agent: Agent,
}

/// Starts the Go workload in `quota`, attaches an agent and releases it.
fn spawn_go(quota: &Quota) -> GoRun {
    let binary = xtask::goworkload::build_gcload("1.22", false).expect("building the Go workload");
    let launcher = quota.launcher();
    let mut cmd = Command::new(&launcher[0]);
    cmd.args(&launcher[1..])
        .arg(&binary)
        // Longer than the JVM's run beside it: it is scraped while running.
        .args([
            "-gate",
            "-duration",
            "60s",
            "-workers",
            "2",
            "-live-mb",
            "32",
        ])
        .env("GOMAXPROCS", "2")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut workload = Process::spawn("the Go workload", &mut cmd);
    workload.wait_line("ready", Duration::from_secs(30));
    let agent = Agent::armed(
        &support::agent_binary(),
        workload.pid(),
        &["--summary", "0", "--window", "4", "--interval", "0.5"],
    );
    workload.release();
    GoRun { workload, agent }
}

impl GoRun {
    /// Scrapes the agent while the workload still runs (the findings are
    /// about its last window), then stops both.
    fn finish(mut self) -> (u32, Vec<Sample>) {
        let pid = self.workload.pid();
        assert!(
            self.workload.exited().is_none(),
            "the Go workload exited early"
        );
        let samples = parse_prometheus(&http_get(self.agent.listen, "/metrics"));
        self.workload.kill();
        let _ = self.agent.interrupt(Duration::from_secs(10));
        (pid, samples)
    }
}
