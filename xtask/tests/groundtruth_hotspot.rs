//! Runs the bundled GcHeavy workload on the installed JDKs with the pause log
//! on, parses the log and checks it against what the workload and HotSpot's
//! own arithmetic promise. Prints a per-operation summary (see it with
//! `cargo test -p xtask --test groundtruth_hotspot -- --nocapture`).
//!
//! A JDK that is not installed is skipped with a message, unless
//! `PAUSEWATCH_REQUIRE_JVM=1`, which makes it a failure.

use std::path::PathBuf;
use std::time::Duration;

use xtask::groundtruth::hotspot::{self, GcRecord, SafepointRecord};
use xtask::workloads::{JavaWorkload, LaunchMode, find_java, monotonic_now_ns};

const SECS: u64 = 5;

fn java_or_skip(major: u32) -> Option<PathBuf> {
    match find_java(major) {
        Ok(j) => Some(j),
        Err(e) if std::env::var_os("PAUSEWATCH_REQUIRE_JVM").is_none() => {
            eprintln!("skipping: {e:#}");
            None
        }
        Err(e) => panic!("{e:#}"),
    }
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "pausewatch-gt-{}-{}-{name}",
        std::process::id(),
        monotonic_now_ns()
    ))
}

fn run_and_check(major: u32) {
    let Some(java) = java_or_skip(major) else {
        return;
    };
    let log = temp_path(&format!("jdk{major}.log"));
    let spawned_ns = monotonic_now_ns();
    let mut jvm = JavaWorkload::new(&java)
        .duration_secs(SECS)
        .gate(true)
        .stack_traces_every_ms(100)
        .system_gc_every_ms(4000)
        .log_path(&log)
        .spawn()
        .unwrap();
    let ready_ns = jvm.wait_ready(Duration::from_secs(60)).unwrap();
    // The gate holds the heavy phase.
    assert!(
        jvm.wait_for_line("started", Duration::from_millis(300))
            .is_err()
    );
    jvm.open_gate().unwrap();
    let started_ns = jvm.wait_started(Duration::from_secs(10)).unwrap();
    let ops = jvm.wait_done(Duration::from_secs(SECS + 30)).unwrap();
    let done_ns = jvm.lines_seen().last().unwrap().0;
    let exited_ns = monotonic_now_ns();
    assert!(ops > 0);

    let parsed = hotspot::read_log(&log).unwrap();
    std::fs::remove_file(&log).unwrap();
    let sps = &parsed.safepoints;
    let gcs = &parsed.gcs;

    // timenanos is CLOCK_MONOTONIC: every line falls inside the run as our
    // clock saw it.
    for r in sps {
        assert!(
            r.logged_at_ns > spawned_ns && r.logged_at_ns < exited_ns,
            "{r:?}"
        );
    }
    for g in gcs {
        assert!(
            g.logged_at_ns > spawned_ns && g.logged_at_ns < exited_ns,
            "{g:?}"
        );
    }

    // HotSpot's arithmetic, and the JDK's field set.
    for r in sps {
        assert!(r.phases_sum_to_total(), "{r:?}");
        assert!(!r.op.is_empty());
        if major >= 21 {
            assert!(r.cleanup_ns.is_none() && r.leaving_ns.is_some(), "{r:?}");
        } else {
            assert!(r.cleanup_ns.is_some() && r.leaving_ns.is_none(), "{r:?}");
        }
    }

    // Every GC pause happened inside a G1 safepoint and is shorter than it.
    // The VM thread logs the pause inside the safepoint and the safepoint
    // line after it ends, so the pause's safepoint is the first one logged
    // after it. (Matching on `approx_begin_ns` instead fails when the VM
    // thread is preempted between the end of a short safepoint and its log
    // call: the gap can exceed the whole 30 µs of a G1 Cleanup pause.)
    for g in gcs {
        let inside = sps.iter().find(|s| g.logged_at_ns <= s.logged_at_ns);
        let s = inside.unwrap_or_else(|| panic!("no safepoint logged after {g:?}"));
        assert!(s.op.starts_with("G1"), "{g:?} inside {s:?}");
        assert!(g.pause_ns <= s.at_safepoint_ns, "{g:?} longer than {s:?}");
    }

    // The heavy phase's rate: ~14 young GCs/s + 10 thread dumps/s.
    let heavy: Vec<SafepointRecord> = sps
        .iter()
        .filter(|r| r.approx_begin_ns() >= started_ns && r.logged_at_ns <= done_ns)
        .cloned()
        .collect();
    let heavy_secs = (done_ns - started_ns) as f64 / 1e9;
    let rate = heavy.len() as f64 / heavy_secs;
    let count = |op: &str| heavy.iter().filter(|r| r.op == op).count();
    let before_gate = sps.iter().filter(|r| r.logged_at_ns < started_ns).count();

    println!(
        "\n== JDK {major} ({}) ops={ops} spawn->ready {:.0} ms, heavy phase {heavy_secs:.2} s, \
         {} safepoints ({rate:.1}/s), {before_gate} before the gate, {} GC pauses",
        java.display(),
        (ready_ns - spawned_ns) as f64 / 1e6,
        heavy.len(),
        gcs.len()
    );
    print_summary(&heavy, heavy_secs);
    print_gc_summary(gcs);

    assert!((10.0..=60.0).contains(&rate), "{rate} safepoints/s");
    assert!(
        count("G1CollectForAllocation") as f64 >= 8.0 * heavy_secs,
        "few young GCs"
    );
    assert!(
        count("ThreadDump") as f64 >= 7.0 * heavy_secs,
        "few thread dumps"
    );
    assert!(count("G1CollectFull") >= 1, "no System.gc()");
}

fn print_summary(records: &[SafepointRecord], secs: f64) {
    println!(
        "{:<26} {:>6} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "op", "count", "per s", "sum ms", "p50 µs", "p99 µs", "max µs", "ttsp50µs", "ttsp99µs"
    );
    for row in hotspot::summarize_by_op(records) {
        println!(
            "{:<26} {:>6} {:>7.1} {:>10.3} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            row.op,
            row.count,
            row.count as f64 / secs,
            row.total_sum_ns as f64 / 1e6,
            row.total_p50_ns as f64 / 1e3,
            row.total_p99_ns as f64 / 1e3,
            row.total_max_ns as f64 / 1e3,
            row.ttsp_p50_ns as f64 / 1e3,
            row.ttsp_p99_ns as f64 / 1e3,
        );
    }
}

fn print_gc_summary(gcs: &[GcRecord]) {
    let mut kinds: Vec<&str> = gcs.iter().map(GcRecord::kind).collect();
    kinds.sort();
    kinds.dedup();
    for kind in kinds {
        let pauses: Vec<u64> = gcs
            .iter()
            .filter(|g| g.kind() == kind)
            .map(|g| g.pause_ns)
            .collect();
        println!(
            "  GC {kind:<34} {:>5} pauses, p50 {:>7.3} ms, p99 {:>7.3} ms",
            pauses.len(),
            hotspot::exact_quantile_ns(&pauses, 0.5) as f64 / 1e6,
            hotspot::exact_quantile_ns(&pauses, 0.99) as f64 / 1e6,
        );
    }
}

#[test]
fn jdk17_gcheavy_log() {
    run_and_check(17);
}

#[test]
fn jdk25_gcheavy_log() {
    run_and_check(25);
}

#[test]
fn stop_and_drop() {
    let Some(java) = java_or_skip(17) else {
        return;
    };
    // Runs until told to stop.
    let mut jvm = JavaWorkload::new(&java).duration_secs(0).spawn().unwrap();
    jvm.wait_started(Duration::from_secs(60)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    jvm.stop().unwrap();
    assert!(jvm.wait_done(Duration::from_secs(10)).unwrap() > 0);

    // Dropping the handle kills a JVM that would otherwise run forever.
    let mut jvm = JavaWorkload::new(&java)
        .duration_secs(0)
        .gate(true)
        .spawn()
        .unwrap();
    jvm.wait_ready(Duration::from_secs(60)).unwrap();
    let pid = jvm.pid() as libc::pid_t;
    drop(jvm);
    // SAFETY: signal 0 only checks for existence; the pid was reaped by drop.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    assert!(!alive, "JVM {pid} survived the drop");
}

#[test]
fn source_launch_works() {
    let Some(java) = java_or_skip(17) else {
        return;
    };
    let mut jvm = JavaWorkload::new(&java)
        .launch_mode(LaunchMode::Source)
        .duration_secs(1)
        .alloc_mb_per_sec(50)
        .spawn()
        .unwrap();
    jvm.wait_started(Duration::from_secs(60)).unwrap();
    assert!(jvm.wait_done(Duration::from_secs(30)).unwrap() > 0);
}
