//! End to end on processes whose files the agent cannot find by the path
//! `/proc/PID/maps` prints (issue 19): the agent opens what is mapped,
//! through `/proc/PID/map_files/` and `/proc/PID/exe`
//! (`agent/src/discovery/binary.rs`).
//!
//! - CPython 3.13 (Debian trixie) and 3.14 (Debian sid) in a plain chroot:
//!   maps prints the chroot's directory in front of every path, so
//!   `/proc/PID/root` + that path does not exist.
//! - CPython 3.13 behind pivot_root into an overlay in a mount namespace of
//!   its own, as in a container: maps prints the paths as the process sees
//!   them, which name nothing (or something else) on the host.
//! - A JVM whose `libjvm.so` was replaced on disk after it started, as a
//!   package upgrade does: maps prints `... (deleted)`, and the path names
//!   the successor, an inode the JVM never mapped.
//!
//! Each is traced and checked against the runtime's own account: the
//! CPython ones per generation against the script's `gc.callbacks`
//! (`support::cpython`), the JVM per VM operation against `-Xlog:safepoint`
//! (`support::hotspot`). CPython 3.13 needs a newer glibc than the host's,
//! so it runs in a Debian trixie root made once by debootstrap into
//! `.cache/runtimes/` (`xtask::runtimes::debian_root`).
//!
//! They load BPF programs, so they need root and fail (never skip) without
//! it. They run one at a time (a global mutex).

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use support::hotspot::{Jvm, check_safepoints};
use support::scenario::{check_quiet, observe};
use support::{Checks, agent_probes_output, cpython, require_root};
use xtask::groundtruth::hotspot;
use xtask::scripted::{ScriptWorkload, workload_path};
use xtask::workloads::{JavaWorkload, find_java, java_home, monotonic_now_ns};

/// The BPF tests run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// The script's measured phase, in seconds: short, every generation is
/// still collected many times.
const PY_SECONDS: &str = "2";

/// The Debian root with CPython 3.13.
fn trixie_root() -> PathBuf {
    xtask::runtimes::debian_root("trixie", &["python3.13"])
        .unwrap_or_else(|e| panic!("making the Debian trixie root with python3.13: {e:#}"))
}

/// A copy of the workload script inside `root`, at the returned path as the
/// process will see it; removed when the guard drops.
struct ScriptInRoot {
    dir: PathBuf,
    inside: PathBuf,
}

impl ScriptInRoot {
    fn new(root: &Path, tag: &str) -> ScriptInRoot {
        let rel = format!("tmp/pausewatch-e2e-{tag}-{}", std::process::id());
        let dir = root.join(&rel);
        fs::create_dir_all(&dir).expect("a folder in the root");
        fs::copy(
            workload_path("python/gc_cycles.py"),
            dir.join("gc_cycles.py"),
        )
        .expect("copying gc_cycles.py into the root");
        ScriptInRoot {
            dir,
            inside: Path::new("/").join(rel).join("gc_cycles.py"),
        }
    }
}

impl Drop for ScriptInRoot {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The path maps prints for the mapping of `pid` whose file name is `name`.
fn mapped_path(pid: u32, name: &str) -> Option<String> {
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    maps.lines().find_map(|l| {
        let path = l.splitn(6, char::is_whitespace).nth(5)?.trim_start();
        let file = path.trim_end_matches(" (deleted)").rsplit('/').next()?;
        (file == name).then(|| path.to_string())
    })
}

/// Waits until the process `pid` runs `name` (its exec is done).
fn wait_mapped(pid: u32, name: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(p) = mapped_path(pid, name) {
            return p;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pid {pid} never mapped {name}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn cpython_in_a_plain_chroot() {
    cpython_chrooted("trixie", "3.13");
}

/// CPython 3.14 (generational again from 3.14.10), from Debian sid: the
/// newest CPython of the version matrix, in the same plain chroot.
#[test]
fn cpython_3_14_in_a_plain_chroot() {
    cpython_chrooted("sid", "3.14");
}

/// CPython `version` from a Debian `suite` root, run with plain `chroot`.
fn cpython_chrooted(suite: &str, version: &str) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root(&format!("CPython {version} in a plain chroot"));
    let python = format!("python{version}");
    let root = xtask::runtimes::debian_root(suite, &[&python])
        .unwrap_or_else(|e| panic!("making the Debian {suite} root with {python}: {e:#}"));
    let script = ScriptInRoot::new(&root, &format!("chroot-{version}"));
    let py = ScriptWorkload::spawn(
        Path::new("/usr/sbin/chroot"),
        &[
            root.display().to_string(),
            format!("/usr/bin/{python}"),
            script.inside.display().to_string(),
            PY_SECONDS.to_string(),
        ],
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let pid = py.pid();
    let shown = wait_mapped(pid, &python);
    // What makes this case: maps names the file as the host sees it, so
    // the process's root put in front of it names nothing.
    let want = fs::canonicalize(root.join("usr/bin").join(&python)).expect("python in the root");
    assert_eq!(
        Path::new(&shown),
        want,
        "maps of the chrooted pid {pid} does not print the host's path: the test proves nothing"
    );
    let doubled = PathBuf::from(format!("/proc/{pid}/root")).join(shown.trim_start_matches('/'));
    assert!(
        !doubled.exists(),
        "{} exists: the test proves nothing",
        doubled.display()
    );
    cpython::check_gc_generations(py, version);
}

#[test]
fn cpython_behind_pivot_root_in_its_own_mount_namespace() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root("cpython_behind_pivot_root_in_its_own_mount_namespace");
    let root = trixie_root();
    // As a container runtime does it: an overlay with the root as its
    // image layer becomes the namespace's root, and the old root is
    // detached (the root's umount needs a /proc). The script goes into
    // the upper layer, so the cached root is left as it was.
    let scratch = std::env::temp_dir().join(format!(
        "pausewatch-e2e-overlay-{}-{}",
        std::process::id(),
        monotonic_now_ns()
    ));
    for d in ["up", "work", "merged"] {
        fs::create_dir_all(scratch.join(d)).expect("overlay folders");
    }
    let script = ScriptInRoot::new(&scratch.join("up"), "pivot");
    let shell = "mount -t overlay overlay -o lowerdir=\"$0\",upperdir=\"$1/up\",workdir=\"$1/work\" \
                 \"$1/merged\" && cd \"$1/merged\" && pivot_root . mnt && cd / && \
                 mount -t proc proc /proc && umount -l /mnt && shift && \
                 exec /usr/bin/python3.13 \"$@\"";
    let py = ScriptWorkload::spawn(
        Path::new("/usr/bin/unshare"),
        &[
            "--mount".to_string(),
            "--propagation".to_string(),
            "private".to_string(),
            "/bin/sh".to_string(),
            "-c".to_string(),
            shell.to_string(),
            root.display().to_string(),
            scratch.display().to_string(),
            script.inside.display().to_string(),
            PY_SECONDS.to_string(),
        ],
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let pid = py.pid();
    let shown = wait_mapped(pid, "python3.13");
    assert_eq!(
        shown, "/usr/bin/python3.13",
        "maps of pid {pid} does not print the path as the process sees it: the test proves nothing"
    );
    assert!(
        !Path::new(&shown).exists(),
        "{shown} exists on the host too, so a path guess could still pick it: the test proves less"
    );
    assert_ne!(
        fs::read_link(format!("/proc/{pid}/ns/mnt")).ok(),
        fs::read_link("/proc/self/ns/mnt").ok(),
        "pid {pid} shares the test's mount namespace"
    );
    cpython::check_gc_generations(py, "3.13");
    drop(script);
    let _ = fs::remove_dir_all(&scratch);
}

/// The JVM's own `libjvm.so` is replaced on disk by a copy (a package
/// upgrade renames a new file over the old one), after the JVM started and
/// before the agent attaches.
#[test]
fn jvm_whose_libjvm_was_replaced_after_it_started() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root("jvm_whose_libjvm_was_replaced_after_it_started");
    let mut c = Checks::new();
    let java = find_java(17).unwrap_or_else(|e| panic!("this test needs JDK 17: {e:#}"));
    let home = java_home(&java).unwrap_or_else(|e| panic!("{e:#}"));
    // A hard-linked copy of the JDK (instant, no space), with a libjvm.so
    // of its own so that replacing it leaves the system's alone.
    let scratch = std::env::temp_dir().join(format!(
        "pausewatch-e2e-replaced-jdk-{}-{}",
        std::process::id(),
        monotonic_now_ns()
    ));
    let jdk = scratch.join("jdk");
    fs::create_dir_all(&scratch).unwrap();
    let cp = std::process::Command::new("cp")
        .arg("-al")
        .arg(&home)
        .arg(&jdk)
        .status()
        .expect("running cp");
    assert!(cp.success(), "cp -al {} {}", home.display(), jdk.display());
    let libjvm = jdk.join("lib/server/libjvm.so");
    fs::remove_file(&libjvm).unwrap();
    fs::copy(home.join("lib/server/libjvm.so"), &libjvm).unwrap();

    let log_path = scratch.join("safepoint.log");
    let mut jvm = JavaWorkload::new(jdk.join("bin/java"))
        .duration_secs(3)
        .gate(true)
        .stack_traces_every_ms(100)
        .system_gc_every_ms(1000)
        .log_path(&log_path)
        .spawn()
        .unwrap_or_else(|e| panic!("starting GcHeavy on the copied JDK: {e:#}"));
    jvm.wait_ready(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let pid = jvm.pid();

    // The upgrade: a new file renamed over the mapped one.
    let next = libjvm.with_extension("so.new");
    fs::copy(&libjvm, &next).unwrap();
    fs::rename(&next, &libjvm).unwrap();
    let shown = mapped_path(pid, "libjvm.so").unwrap_or_default();
    let real = fs::canonicalize(&libjvm).expect("the new libjvm.so");
    assert_eq!(
        shown,
        format!("{} (deleted)", real.display()),
        "maps of pid {pid} does not show the old libjvm.so as deleted: the test proves nothing"
    );

    let probes = agent_probes_output(pid);
    let probes_text = String::from_utf8_lossy(&probes.stdout).to_string();
    c.check(
        probes.status.success()
            && probes_text.contains(&format!("file: {shown} (opened through /proc/{pid}/map_files/")),
        || {
            format!(
                "agent probes --pid {pid} does not open the deleted libjvm.so through its mapping:\n\
                 {probes_text}\n{}",
                String::from_utf8_lossy(&probes.stderr)
            )
        },
    );

    let mut subject = Jvm {
        label: format!("JVM with a replaced libjvm.so, pid {pid}"),
        jvm,
        log: log_path.clone(),
        armed: "hotspot".to_string(),
        started_within: Some(Duration::from_secs(10)),
        done_within: Duration::from_secs(40),
    };
    let o = observe(&mut subject, &["--summary", "0"], Duration::from_secs(5));
    let armed = &o.armed;
    // The release file beside the path now describes the successor, so
    // the agent does not claim a version (see docs/design.md).
    c.check(armed.contains("hotspot unknown"), || {
        format!("the replaced JVM's version is not reported unknown: {armed}")
    });
    let status = o.status;
    c.check(status.is_some_and(|s| s.success()), || {
        format!("the agent did not exit 0 on SIGINT: {status:?}")
    });
    subject.jvm.stop().unwrap_or_else(|e| panic!("{e:#}"));

    let log = hotspot::read_log(&log_path).unwrap_or_else(|e| panic!("{e:#}"));
    let table = check_safepoints(&mut c, pid, &log.safepoints, &o.samples, o.window, 0.02);
    eprintln!("JVM with a replaced libjvm.so, pid {pid}:\n{table}");
    check_quiet(&mut c, &o.stderr);
    let stderr = &o.stderr;
    // The JVM has exited (`done`); its copied JDK goes unless kept for a look.
    let failed = c.failed();
    if !failed {
        let _ = fs::remove_dir_all(&scratch);
    }
    c.finish(&format!(
        "{table}\nagent probes:\n{probes_text}\nagent stderr:\n{stderr}\nkept {}",
        scratch.display()
    ));
}
