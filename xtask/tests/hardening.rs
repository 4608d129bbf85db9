//! Hardening: the agent on a real host and real JVMs, under conditions a
//! production host produces sooner or later.
//!
//! - `agent check`: every line OK here; missing capabilities (dropped with
//!   `setpriv --bounding-set`) give a FAIL line with the fix, and `agent
//!   run` stops with the same hint before attaching anything.
//! - SIGTERM and SIGKILL of the agent leave none of its BPF programs, links
//!   or maps behind. The ids are read from the agent's own
//!   `/proc/PID/fdinfo` while it runs (other agents run on this machine
//!   too, and bpftool here cannot show owner pids), then looked up with
//!   `bpftool prog/link/map show` after it is gone.
//! - A target killed in the middle of a safepoint, stopped for 10 s, or
//!   exec'ing into another program: the agent says so, drops what it held
//!   for it, and keeps serving and collecting for its other target.
//! - A truncated or corrupt libjvm.so mapped by a process: one clear error
//!   line, no panic.
//! - 1,000 slow HTTP clients: the collection loop keeps its cadence and
//!   `/healthz` and `/metrics` still answer.
//! - A deterministic workload prints the same and exits the same with and
//!   without the agent (see `support::transparency`).
//!
//! They load BPF, so they need root and fail (never skip) without it. They
//! run one at a time (they share two cores with the JVMs they start).

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use support::child::Process;
use support::{
    Agent, agent_binary, http_get, loopback, parse_prometheus, require_root, sum_of, transparency,
};
use xtask::workloads::{JavaWorkload, RunningJava, find_java, libjvm_path};

static SERIAL: Mutex<()> = Mutex::new(());

/// The JDK of the CI packages (`openjdk-17-jdk-headless`).
const JDK: u32 = 17;

/// Every line `agent check` prints, in order.
const CHECK_LINES: [&str; 12] = [
    "privileges",
    "kernel",
    "BPF syscall",
    "BTF",
    "uprobes",
    "ring buffer",
    "BPF cookie",
    "tracepoints",
    "raw tracepoints",
    "memlock",
    "BPF load",
    "uprobe attach",
];

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn java() -> PathBuf {
    find_java(JDK).unwrap_or_else(|e| panic!("these tests need JDK {JDK}: {e:#}"))
}

/// A JVM that runs until stopped, with a safepoint every `stack_ms`.
fn jvm(stack_ms: u64) -> RunningJava {
    let mut j = JavaWorkload::new(java())
        .duration_secs(0)
        .alloc_mb_per_sec(20)
        .live_mb(8)
        .stack_traces_every_ms(stack_ms)
        .spawn()
        .unwrap_or_else(|e| panic!("starting a JVM: {e:#}"));
    j.wait_started(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e:#}"));
    j
}

/// Stops a JVM of [`jvm`] (or any that runs until stopped).
fn stop(mut j: RunningJava) {
    j.stop().unwrap();
    let _ = j.wait(Duration::from_secs(10));
}

/// Asserts that the agent still runs.
fn assert_running(agent: &mut Agent) {
    assert!(
        agent.wait_exit(Duration::ZERO).is_none(),
        "the agent exited"
    );
}

/// SIGINT, and asserts a clean exit within `timeout`.
fn assert_stops_cleanly(agent: &mut Agent, timeout: Duration) {
    let (status, _) = agent.interrupt(timeout);
    assert!(
        status.is_some_and(|s| s.success()),
        "{}",
        agent.stderr_text()
    );
}

/// `agent <args>` run through `setpriv --bounding-set=<caps>` (empty: as is).
fn agent_output(bounding: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = match bounding {
        Some(caps) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--bounding-set={caps}"))
                .arg("--")
                .arg(agent_binary());
            c
        }
        None => Command::new(agent_binary()),
    };
    cmd.args(args)
        .env("RUST_BACKTRACE", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running the agent ({args:?}): {e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn assert_no_panic(what: &str, stderr: &str) {
    for bad in ["panicked", "backtrace", "RUST_BACKTRACE"] {
        assert!(
            !stderr.contains(bad),
            "{what}: {bad:?} on stderr:\n{stderr}"
        );
    }
}

/// The `agent check` line named `name`.
fn check_line<'a>(stdout: &'a str, name: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| {
            l.get(5..)
                .is_some_and(|r| r.starts_with(&format!("{name} ")))
        })
        .unwrap_or_else(|| panic!("no {name:?} line in `agent check`:\n{stdout}"))
}

#[test]
fn check_reports_every_line_ok_on_this_host() {
    let _s = serial();
    require_root("check_reports_every_line_ok_on_this_host");
    let out = agent_output(None, &["check"]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "agent check failed:\n{stdout}{}",
        text(&out.stderr)
    );
    assert_eq!(stdout.lines().count(), CHECK_LINES.len(), "{stdout}");
    for (line, name) in stdout.lines().zip(CHECK_LINES) {
        assert!(
            line.starts_with(&format!("OK   {name} ")),
            "expected `OK   {name} ...`, got {line:?}\n{stdout}"
        );
    }
}

/// On this kernel (6.18) CAP_BPF + CAP_PERFMON + CAP_SYS_PTRACE load the
/// programs but perf_event_open of a uprobe needs CAP_SYS_ADMIN too; and
/// without CAP_BPF (and CAP_SYS_ADMIN, which implies it) nothing loads.
#[test]
fn missing_capabilities_are_named_with_the_fix() {
    let _s = serial();
    require_root("missing_capabilities_are_named_with_the_fix");

    // No CAP_SYS_ADMIN: everything passes up to the real uprobe attach.
    let no_admin = "-all,+bpf,+perfmon,+sys_ptrace";
    let out = agent_output(Some(no_admin), &["check"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        check_line(&stdout, "privileges").starts_with("OK"),
        "{stdout}"
    );
    assert!(
        check_line(&stdout, "BPF load").starts_with("OK"),
        "{stdout}"
    );
    let attach = check_line(&stdout, "uprobe attach");
    assert!(attach.starts_with("FAIL"), "{stdout}");
    assert!(
        attach.contains("permission denied") && attach.contains("CAP_SYS_ADMIN"),
        "{attach}"
    );
    assert!(
        text(&out.stderr).contains("uprobe attach failed"),
        "{}",
        text(&out.stderr)
    );

    // `agent run` stops with the same hint, before touching the JVM.
    let j = jvm(100);
    let pid = j.pid().to_string();
    let port = loopback().to_string();
    let args = ["run", "--pid", &pid, "--listen", &port, "--summary", "0"];
    let out = agent_output(Some(no_admin), &args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: uprobe attach check failed") && stderr.contains("CAP_SYS_ADMIN"),
        "{stderr}"
    );
    assert_no_panic("run without CAP_SYS_ADMIN", &stderr);

    // Neither CAP_BPF nor CAP_SYS_ADMIN: the privileges line names them.
    let out = agent_output(Some("-all,+perfmon,+sys_ptrace"), &["check"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let privileges = check_line(&stdout, "privileges");
    assert!(
        privileges.starts_with("FAIL") && privileges.contains("missing CAP_BPF"),
        "{privileges}"
    );
    assert!(privileges.contains("sudo"), "{privileges}");
    let out = agent_output(Some("-all,+perfmon,+sys_ptrace"), &args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: privileges check failed") && stderr.contains("missing CAP_BPF"),
        "{stderr}"
    );
    stop(j);
}

/// BPF objects a process holds, from `/proc/PID/fdinfo`.
#[derive(Debug, Default)]
struct Held {
    progs: BTreeSet<u32>,
    links: BTreeSet<u32>,
    maps: BTreeSet<u32>,
}

fn held_by(pid: u32) -> Held {
    let mut held = Held::default();
    let dir = format!("/proc/{pid}/fdinfo");
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
        let Ok(info) = std::fs::read_to_string(entry.unwrap().path()) else {
            continue;
        };
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<u32>().ok())
        };
        if let Some(id) = field("link_id:") {
            held.links.insert(id);
        } else if let Some(id) = field("prog_id:") {
            held.progs.insert(id);
        } else if let Some(id) = field("map_id:") {
            held.maps.insert(id);
        }
    }
    held
}

/// Ids of every BPF object of `kind` (`prog`, `link`, `map`) on the host.
fn bpftool_ids(kind: &str) -> BTreeSet<u32> {
    let out = Command::new("bpftool")
        .args([kind, "show", "-j"])
        .output()
        .expect("running bpftool (package bpftool)");
    assert!(
        out.status.success(),
        "bpftool {kind} show: {}",
        text(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bpftool JSON");
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| o["id"].as_u64())
                .map(|id| id as u32)
                .collect()
        })
        .unwrap_or_default()
}

/// Which of `held` still exist.
fn still_there(held: &Held) -> Vec<String> {
    let mut left = Vec::new();
    for (kind, ids) in [
        ("prog", &held.progs),
        ("link", &held.links),
        ("map", &held.maps),
    ] {
        let now = bpftool_ids(kind);
        left.extend(ids.intersection(&now).map(|id| format!("{kind} {id}")));
    }
    left
}

fn nothing_left_behind(signal: libc::c_int) {
    let mut j = jvm(20);
    let bin = agent_binary();
    let mut agent = Agent::armed(&bin, j.pid(), &["--summary", "0", "--events"]);
    std::thread::sleep(Duration::from_millis(500));
    let held = held_by(agent.pid());
    // 6 HotSpot uprobes, each on its own link; every program and map.
    assert!(held.links.len() >= 6, "links held by the agent: {held:?}");
    assert!(!held.progs.is_empty() && !held.maps.is_empty(), "{held:?}");
    assert!(
        still_there(&held).len() == held.links.len() + held.progs.len() + held.maps.len(),
        "bpftool does not list what the agent holds: {held:?}"
    );
    agent.signal(signal);
    let status = agent.wait_exit(Duration::from_secs(15));
    let status = status.unwrap_or_else(|| panic!("the agent did not exit after signal {signal}"));
    if signal == libc::SIGTERM {
        assert!(
            status.success(),
            "exit after SIGTERM: {status:?}\n{}",
            agent.stderr_text()
        );
    }
    // The kernel frees BPF objects asynchronously (RCU); give it a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut left = still_there(&held);
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        left = still_there(&held);
    }
    assert!(
        left.is_empty(),
        "left behind after signal {signal}: {left:?}"
    );
    // The JVM never noticed.
    assert!(j.child().try_wait().unwrap().is_none(), "the JVM died");
    stop(j);
}

#[test]
fn sigterm_leaves_no_program_link_or_map() {
    let _s = serial();
    require_root("sigterm_leaves_no_program_link_or_map");
    nothing_left_behind(libc::SIGTERM);
}

#[test]
fn sigkill_leaves_no_program_link_or_map() {
    let _s = serial();
    require_root("sigkill_leaves_no_program_link_or_map");
    nothing_left_behind(libc::SIGKILL);
}

/// Open-interval slots per thread entry (`MAX_OPEN_INTERVALS`).
const SLOTS: usize = 4;
/// `ThreadEntry` layout (`pausewatch_common`, checked by its unit test):
/// the owning task's address (0: a free entry) first, the pid at byte 8,
/// the slots from byte 72, 64 bytes each, with the kind first.
const PID_AT: usize = 8;
const SLOTS_AT: usize = 72;
const SLOT_BYTES: usize = 64;

/// The agent's per-thread table (`THREAD_ENTRIES`, an array): the (pid,
/// kind) of every open interval in its threads' slots.
fn inflight(agent_pid: u32) -> Vec<(u32, u32)> {
    let dir = format!("/proc/{agent_pid}/fdinfo");
    // The agent holds several arrays, in no fixed fd order: pick
    // THREAD_ENTRIES by its name.
    let map_id = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .filter(|info| {
            info.lines()
                .any(|l| l.split_whitespace().eq(["map_type:", "2"]))
        })
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("map_id:"))
                .and_then(|v| v.trim().parse::<u32>().ok())
        })
        .find(|id| {
            Command::new("bpftool")
                .args(["map", "show", "id", &id.to_string(), "-j"])
                .output()
                .ok()
                .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
                .is_some_and(|v| v["name"] == "THREAD_ENTRIES")
        })
        .expect("the agent holds the THREAD_ENTRIES map");
    let out = Command::new("bpftool")
        .args(["map", "dump", "id", &map_id.to_string(), "-j"])
        .output()
        .expect("bpftool map dump");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let byte = |k: &serde_json::Value, i: usize| -> u32 {
        k[i].as_str()
            .and_then(|s| u32::from_str_radix(s.trim_start_matches("0x"), 16).ok())
            .unwrap_or(0)
    };
    let word = |k: &serde_json::Value, at: usize| -> u32 {
        (0..4).map(|i| byte(k, at + i) << (8 * i)).sum()
    };
    v.as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| (0..8).any(|i| byte(&e["value"], i) != 0))
                .flat_map(|e| {
                    let value = &e["value"];
                    let pid = word(value, PID_AT);
                    (0..SLOTS)
                        .map(move |i| word(value, SLOTS_AT + i * SLOT_BYTES))
                        .filter(|kind| *kind != 0)
                        .map(move |kind| (pid, kind))
                        .collect::<Vec<_>>()
                })
                .collect()
        })
        .unwrap_or_default()
}

fn scrape(addr: SocketAddr) -> Vec<support::Sample> {
    parse_prometheus(&http_get(addr, "/metrics"))
}

fn pauses(samples: &[support::Sample], pid: u32) -> f64 {
    let pid = pid.to_string();
    sum_of(
        samples,
        "pausewatch_pause_seconds_count",
        &[("pid", pid.as_str())],
    )
}

/// Safepoint = 1 in `pausewatch_common::Kind`.
const SAFEPOINT: u32 = 1;

#[test]
fn target_killed_mid_safepoint() {
    let _s = serial();
    require_root("target_killed_mid_safepoint");
    // Safepoints that wait ~100 ms for a spin loop without a poll: most of
    // the time a safepoint is open.
    let mut victim = JavaWorkload::new(java())
        .duration_secs(0)
        .alloc_mb_per_sec(10)
        .live_mb(8)
        .stack_traces_every_ms(5)
        .spin_threads(1)
        .spin_loop_us(100_000)
        .jvm_arg("-XX:-UseCountedLoopSafepoints")
        .spawn()
        .unwrap();
    victim.wait_started(Duration::from_secs(60)).unwrap();
    let survivor = jvm(20);
    let bin = agent_binary();
    let survivor_pid = survivor.pid().to_string();
    let mut agent = Agent::armed(
        &bin,
        victim.pid(),
        &[
            "--pid",
            &survivor_pid,
            "--summary",
            "0",
            "--interval",
            "0.2",
        ],
    );

    // Some finished pauses first, so the victim has numbers to keep.
    let deadline = Instant::now() + Duration::from_secs(20);
    while pauses(&scrape(agent.listen), victim.pid()) < 3.0 {
        assert!(
            Instant::now() < deadline,
            "no pauses counted for the victim"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Kill the victim while the agent holds an open safepoint for it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if inflight(agent.pid()).contains(&(victim.pid(), SAFEPOINT)) {
            victim.kill().unwrap();
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never saw the victim inside a safepoint"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let (_, line) = agent.wait_stderr(
        &format!("pid {} exited", victim.pid()),
        Duration::from_secs(5),
    );
    assert!(line.contains("released"), "{line}");
    assert_running(&mut agent);
    // Its unfinished interval is gone from the kernel map.
    let left: Vec<_> = inflight(agent.pid())
        .into_iter()
        .filter(|(pid, _)| *pid == victim.pid())
        .collect();
    assert!(
        left.is_empty(),
        "open intervals of the dead pid stay: {left:?}\n{}",
        agent.stderr_text()
    );

    // Still healthy, still collecting for the survivor; the victim's
    // numbers stay.
    assert_eq!(http_get(agent.listen, "/healthz"), "ok\n");
    let before = scrape(agent.listen);
    std::thread::sleep(Duration::from_secs(2));
    let after = scrape(agent.listen);
    assert!(
        pauses(&after, survivor.pid()) > pauses(&before, survivor.pid()),
        "no new pauses for the survivor after the victim died"
    );
    assert!(
        pauses(&after, victim.pid()) > 0.0,
        "the victim's numbers vanished"
    );
    assert_stops_cleanly(&mut agent, Duration::from_secs(10));
    stop(survivor);
}

#[test]
fn target_stopped_for_ten_seconds() {
    let _s = serial();
    require_root("target_stopped_for_ten_seconds");
    let j = jvm(10);
    let bin = agent_binary();
    let mut agent = Agent::armed(&bin, j.pid(), &["--summary", "0", "--interval", "0.2"]);
    std::thread::sleep(Duration::from_secs(1));
    // SAFETY: kill(2) on our own unreaped child.
    unsafe { libc::kill(j.pid() as libc::pid_t, libc::SIGSTOP) };
    std::thread::sleep(Duration::from_millis(500));
    let stopped_at = pauses(&scrape(agent.listen), j.pid());
    assert!(stopped_at > 0.0, "no pauses before the stop");
    let mut last_ts = 0.0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(http_get(agent.listen, "/healthz"), "ok\n");
        let s = scrape(agent.listen);
        let ts = sum_of(&s, "pausewatch_snapshot_timestamp_seconds", &[]);
        assert!(
            ts > last_ts,
            "the collector stopped: snapshot at {ts} after {last_ts}"
        );
        last_ts = ts;
        assert_eq!(
            pauses(&s, j.pid()),
            stopped_at,
            "counts changed while stopped"
        );
        let pid = j.pid().to_string();
        assert_eq!(
            sum_of(&s, "pausewatch_target_info", &[("pid", pid.as_str())]),
            1.0,
            "the stopped target was dropped"
        );
    }
    assert_running(&mut agent);
    // SAFETY: as above.
    unsafe { libc::kill(j.pid() as libc::pid_t, libc::SIGCONT) };
    std::thread::sleep(Duration::from_secs(2));
    let resumed = pauses(&scrape(agent.listen), j.pid());
    assert!(resumed > stopped_at, "no pauses after SIGCONT ({resumed})");
    let lost = sum_of(&scrape(agent.listen), "pausewatch_lost_events_total", &[]);
    assert_eq!(lost, 0.0, "events lost");
    assert_stops_cleanly(&mut agent, Duration::from_secs(10));
    stop(j);
}

/// A process that maps `library` executable (as a runtime would), prints
/// `ready`, waits `hold` seconds (until its stdin closes when negative),
/// then execs `sleep 30` when `then_exec`. Killed when dropped.
fn mapper(library: &Path, load: bool, hold: f64, then_exec: bool) -> Process {
    let script = format!(
        r#"
import ctypes, mmap, os, sys, time
path = sys.argv[1]
if {load}:
    ctypes.CDLL(path)
else:
    f = open(path, "rb")
    m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ | mmap.PROT_EXEC)
print("ready", flush=True)
sys.stdin.readline() if {hold} < 0 else time.sleep({hold})
if {then_exec}:
    os.execv("/bin/sleep", ["sleep", "30"])
"#,
        load = if load { "True" } else { "False" },
        then_exec = if then_exec { "True" } else { "False" },
    );
    let mut child = Process::spawn(
        "the mapper (python3)",
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(library)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    );
    let ready = child.next_line(Duration::from_secs(60));
    assert_eq!(ready.as_deref(), Some("ready"), "the mapper's ready line");
    child
}

#[test]
fn target_execs_into_another_program() {
    let _s = serial();
    require_root("target_execs_into_another_program");
    let libjvm = libjvm_path(&java()).unwrap();
    // Loads the real libjvm (so the agent takes it for a JVM), execs 3 s
    // after the agent is armed.
    let execer = mapper(&libjvm, true, 3.0, true);
    let other = jvm(20);
    let bin = agent_binary();
    let other_pid = other.pid().to_string();
    let mut agent = Agent::armed(
        &bin,
        execer.pid(),
        &["--pid", &other_pid, "--summary", "0", "--interval", "0.2"],
    );
    let (_, line) = agent.wait_stderr(
        &format!("pid {} exec'd into", execer.pid()),
        Duration::from_secs(10),
    );
    assert!(line.contains("sleep"), "{line}");
    let before = pauses(&scrape(agent.listen), other.pid());
    std::thread::sleep(Duration::from_secs(2));
    let after = pauses(&scrape(agent.listen), other.pid());
    assert!(
        after > before,
        "no new pauses for the other JVM after the exec"
    );
    assert_eq!(http_get(agent.listen, "/healthz"), "ok\n");
    assert_stops_cleanly(&mut agent, Duration::from_secs(10));
    stop(other);
}

/// Copies of the real libjvm.so, broken in different ways, each named
/// `libjvm.so` in its own directory.
fn broken_libjvms(dir: &Path) -> Vec<(String, PathBuf)> {
    let real = std::fs::read(libjvm_path(&java()).unwrap()).expect("reading libjvm.so");
    let mut variants: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), Vec::new()),
        ("truncated to 16 bytes".into(), real[..16].to_vec()),
        ("truncated to 4 KiB".into(), real[..4096].to_vec()),
        ("truncated to half".into(), real[..real.len() / 2].to_vec()),
        (
            "truncated by one byte".into(),
            real[..real.len() - 1].to_vec(),
        ),
    ];
    let mut bad_header = real.clone();
    bad_header[16..64].fill(0xff);
    variants.push(("garbage ELF header".into(), bad_header));
    let mut bad_sections = real.clone();
    let shoff = u64::from_le_bytes(real[0x28..0x30].try_into().unwrap()) as usize;
    let end = (shoff + 4096).min(real.len());
    bad_sections[shoff..end].fill(0xa5);
    variants.push(("garbage section headers".into(), bad_sections));
    // Every stapsdt note's descriptor (addresses, provider, name, args)
    // overwritten with a byte pattern.
    let mut bad_notes = real.clone();
    let mut hits = 0;
    let mut at = 0;
    while let Some(i) = find(&bad_notes[at..], b"stapsdt\0") {
        let desc = at + i + 8;
        let end = (desc + 48).min(bad_notes.len());
        bad_notes[desc..end].fill(0xee);
        hits += 1;
        at = end;
    }
    assert!(hits > 10, "found only {hits} stapsdt notes in libjvm.so");
    variants.push(("corrupt stapsdt notes".into(), bad_notes));
    variants
        .into_iter()
        .enumerate()
        .map(|(i, (name, bytes))| {
            let sub = dir.join(i.to_string());
            std::fs::create_dir_all(&sub).unwrap();
            let path = sub.join("libjvm.so");
            std::fs::write(&path, bytes).unwrap();
            (name, path)
        })
        .collect()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn corrupt_libjvm_is_a_clear_error() {
    let _s = serial();
    require_root("corrupt_libjvm_is_a_clear_error");
    let dir = tempfile::tempdir().unwrap();
    for (name, path) in broken_libjvms(dir.path()) {
        if std::fs::metadata(&path).unwrap().len() == 0 {
            // An empty file cannot be mapped; the parser still gets it below.
            continue;
        }
        let holder = mapper(&path, false, -1.0, false);
        let pid = holder.pid().to_string();
        for args in [
            vec!["probes", "--pid", pid.as_str()],
            vec![
                "run",
                "--pid",
                pid.as_str(),
                "--summary",
                "0",
                "--duration",
                "1",
            ],
        ] {
            let out = agent_output(None, &args);
            let stderr = text(&out.stderr);
            assert_no_panic(&format!("{name}: agent {args:?}"), &stderr);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{name}: agent {args:?} should fail cleanly:\n{stderr}"
            );
            eprintln!("{name}, agent {}: {}", args[0], stderr.trim_end());
            assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
            assert!(
                stderr.starts_with("error: ")
                    && (stderr.contains("libjvm.so") || stderr.contains("hotspot")),
                "{name}: the error does not name the library: {stderr}"
            );
        }
    }
}

/// The collection loop's cadence while 1,000 clients hold connections
/// open without finishing a request.
#[test]
fn slow_http_clients_do_not_delay_collection() {
    let _s = serial();
    require_root("slow_http_clients_do_not_delay_collection");
    let j = jvm(20);
    let bin = agent_binary();
    let interval = 0.2;
    let mut agent = Agent::armed(
        &bin,
        j.pid(),
        &["--summary", "0", "--interval", &interval.to_string()],
    );
    let addr = agent.listen;
    let mut slow = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .expect("a slow client connects");
        // Half a request head, then nothing (slowloris).
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n");
        slow.push(s);
    }
    let mut worst_age = 0.0f64;
    let mut worst_response = Duration::ZERO;
    let started = Instant::now();
    let mut rounds = 0;
    while started.elapsed() < Duration::from_secs(5) {
        for s in slow.iter_mut().step_by(10) {
            let _ = s.write_all(b"X");
        }
        let t = Instant::now();
        assert_eq!(http_get(addr, "/healthz"), "ok\n");
        let samples = scrape(addr);
        worst_response = worst_response.max(t.elapsed());
        let ts = sum_of(&samples, "pausewatch_snapshot_timestamp_seconds", &[]);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        worst_age = worst_age.max(now - ts);
        rounds += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!(
        "1000 slow clients: {rounds} rounds, worst snapshot age {:.3} s (interval {interval} s), \
         worst /healthz+/metrics {:?}",
        worst_age, worst_response
    );
    assert!(
        worst_age < interval + 0.3,
        "the collection loop fell behind: snapshot {worst_age:.3} s old"
    );
    assert!(
        worst_response < Duration::from_secs(2),
        "/healthz and /metrics took {worst_response:?}"
    );
    drop(slow);
    assert_running(&mut agent);
    assert_stops_cleanly(&mut agent, Duration::from_secs(15));
    stop(j);
}

#[test]
fn hotspot_output_is_the_same_with_and_without_the_agent() {
    let _s = serial();
    require_root("hotspot_output_is_the_same_with_and_without_the_agent");
    let java = java();
    let source = support::workspace_root().join("xtask/workloads/hotspot/Transparent.java");
    let make = || {
        let mut c = Command::new(&java);
        c.args(["-Xmx128m", "-XX:+UseG1GC"])
            .arg(&source)
            .args(["30", "7"]);
        c
    };
    let (alone, traced) =
        transparency::untraced_and_traced(&make, &agent_binary(), Duration::from_secs(120));
    assert_eq!(alone.status, Some(7), "unexpected exit: {alone:?}");
    assert!(alone.stdout.contains("total "), "{alone:?}");
    assert_eq!(
        traced.outcome, alone,
        "the agent changed the workload's output or exit"
    );
    assert!(
        traced.pauses_counted >= 30.0,
        "the agent did not trace the workload (counted {} pauses):\n{}",
        traced.pauses_counted,
        traced.agent_stderr
    );
    assert!(
        traced.agent_status.is_some_and(|s| s.success()),
        "{}",
        traced.agent_stderr
    );
}
