//! End to end for the rule engine: a labelled suite of bundled workloads,
//! each started with known settings, traced by the release agent with the
//! built-in rules and a short window, and checked for the exported
//! `pausewatch_workload_profile` and `pausewatch_finding` series.
//!
//! Each JVM case also checks `pausewatch_stall_ratio` against HotSpot's own
//! account of the same time, the `-Xlog:safepoint` Total of every safepoint
//! (see [`check_stall_ratio`] for the bracket that absorbs the window's
//! edges).
//!
//! The cases run one at a time (they share 2 cores and the profiles depend
//! on timing) and need root and JDK 17; they fail, never skip, without.
//! `cargo test -p xtask --test e2e_profiles -- --nocapture` prints each
//! case's summary with the advice.
//!
//! # Go and CPython cases
//!
//! `go_small_gogc` (`xtask/workloads/go/smallgogc`, GOGC=10) and
//! `python_cycles` (`xtask/workloads/python/cycles.py`) allocate garbage as
//! fast as they can with a collector tuned to run often, so stop-the-world
//! collections (Go's STW phases, CPython's generational collections of the
//! cycles) take a large share of wall time (the `*_go`/`*_cpython` rules): the
//! throughput profile. They have no log of their own to compare the stall
//! ratio with (the Go and CPython end-to-end tests check the durations), so
//! these cases check the profile and findings only.

mod support;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::process::{Command, Stdio};
use support::child::Process;
use support::{Agent, Checks, Sample, agent_binary, http_get, loopback, parse_prometheus};

use xtask::goworkload;
use xtask::groundtruth::hotspot;
use xtask::workloads::{JavaWorkload, find_java, monotonic_now_ns};

/// One case at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// The agent's `--window`: short, so the suite stays fast.
const WINDOW_SECS: u64 = 10;
/// How long after the heavy phase starts the profile must be there: one
/// full window, plus the built-in rules' 3 confirmations, plus slack for a
/// loaded machine.
const SETTLE_SECS: u64 = WINDOW_SECS + 4;
const DEADLINE_SECS: u64 = WINDOW_SECS + 14;

/// How a case's workload is started.
enum Launch {
    /// GcHeavy on JDK 17 with these settings.
    Jvm(fn(JavaWorkload) -> JavaWorkload),
    /// A package of `xtask/workloads/go`, built with Go 1.23, run with `env`.
    Go {
        package: &'static str,
        env: &'static [(&'static str, &'static str)],
    },
    /// A script of `xtask/workloads/python`, run by Debian's `/usr/bin/python3.11`.
    Python { script: &'static str },
}

/// One labelled workload.
struct Case {
    name: &'static str,
    runtime: &'static str,
    launch: Launch,
    /// The profile it must get.
    profile: &'static str,
    /// Rules that must hold.
    findings: &'static [&'static str],
    /// Rules that must not hold.
    absent: &'static [&'static str],
}

const CASES: &[Case] = &[
    // 64 MB heap with a 4 MB young generation, 400 MB/s from 2 threads: a
    // young collection every ~10 ms. Each costs a millisecond or two
    // whatever the machine's load (roots, thread stacks), so 15-40% of the
    // time is stopped, while the pauses stay short (p99 ~10 ms) and far
    // from the latency rule's 50 ms.
    Case {
        name: "jvm_tiny_heap_high_alloc",
        runtime: "hotspot",
        launch: Launch::Jvm(|w| {
            w.heap_mb(64)
                .young_mb(Some(4))
                .alloc_mb_per_sec(400)
                .threads(2)
                .live_mb(4)
        }),
        profile: "throughput",
        findings: &["gc_overhead", "frequent_gc"],
        absent: &["idle", "time_to_safepoint", "long_pauses"],
    },
    // SerialGC with a 1 GB young generation and a 500 MB live set: every
    // ~7 s a young collection copies the ~50 MB that survived (a sixteenth
    // of what was allocated goes into the live set) single-threaded, a
    // pause of 100-500 ms, yet only a few % of wall time. The heap is
    // touched at start (-XX:+AlwaysPreTouch) so that no collection pays for
    // first-touch page faults.
    Case {
        name: "jvm_serial_large_live_set",
        runtime: "hotspot",
        launch: Launch::Jvm(|w| {
            w.heap_mb(1536)
                .young_mb(Some(1024))
                .gc_flags(["-XX:+UseSerialGC", "-XX:+AlwaysPreTouch"])
                .alloc_mb_per_sec(120)
                .live_mb(500)
        }),
        profile: "latency",
        findings: &["long_pauses"],
        absent: &["idle", "gc_overhead", "time_to_safepoint"],
    },
    // Two threads in 5 ms counted loops without safepoint polls
    // (-XX:-UseCountedLoopSafepoints) while a thread dump asks for a
    // safepoint every 20 ms; almost no allocation, so no GC to speak of.
    Case {
        name: "jvm_long_counted_loops",
        runtime: "hotspot",
        launch: Launch::Jvm(|w| {
            w.young_mb(Some(64))
                .jvm_arg("-XX:-UseCountedLoopSafepoints")
                .alloc_mb_per_sec(5)
                .spin_threads(2)
                .spin_loop_us(5000)
                .stack_traces_every_ms(20)
        }),
        profile: "latency",
        findings: &["time_to_safepoint"],
        absent: &["idle", "gc_overhead", "long_pauses"],
    },
    // GOGC=10 over a 4 MB live set: a collection every few hundred KB.
    Case {
        name: "go_small_gogc",
        runtime: "go",
        launch: Launch::Go {
            package: "./smallgogc",
            env: &[("GOGC", "10")],
        },
        profile: "throughput",
        // Go's collector runs concurrently: its stop-the-world phases take
        // 6-10% of wall time even at GOGC=10, on the gc_overhead_go rule's
        // edge, so only the frequency is a sure finding.
        findings: &["frequent_gc_go"],
        absent: &["idle", "long_pauses"],
    },
    // Cycles only the cyclic collector frees, generation 0 threshold 200.
    Case {
        name: "python_cycles",
        runtime: "cpython",
        launch: Launch::Python {
            script: "python/cycles.py",
        },
        profile: "throughput",
        findings: &["gc_overhead_cpython"],
        absent: &["idle", "gc_overhead", "frequent_gc"],
    },
    // 1 MB/s into a 64 MB young generation: one collection a minute.
    Case {
        name: "jvm_idle",
        runtime: "hotspot",
        launch: Launch::Jvm(|w| w.young_mb(Some(64)).alloc_mb_per_sec(1)),
        profile: "idle",
        findings: &["idle"],
        absent: &[
            "gc_overhead",
            "time_to_safepoint",
            "long_pauses",
            "frequent_gc",
        ],
    },
];

#[test]
fn jvm_tiny_heap_high_alloc_is_throughput_bound() {
    run_case("jvm_tiny_heap_high_alloc");
}

#[test]
fn jvm_serial_large_live_set_has_a_latency_finding() {
    run_case("jvm_serial_large_live_set");
}

#[test]
fn jvm_long_counted_loops_have_a_time_to_safepoint_finding() {
    run_case("jvm_long_counted_loops");
}

#[test]
fn jvm_idle_is_idle() {
    run_case("jvm_idle");
}

#[test]
fn go_small_gogc_is_throughput_bound() {
    run_case("go_small_gogc");
}

#[test]
fn python_cycles_is_throughput_bound() {
    run_case("python_cycles");
}

/// `--rules` with `mode = "replace"`, re-read on SIGHUP: a bad file is
/// logged with its line and column and the previous rules stay in force; a
/// good one takes over at the next evaluation.
#[test]
fn rules_file_is_reloaded_on_sighup_and_a_bad_one_keeps_the_previous() {
    support::require_root("the rule engine end-to-end tests");
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rules = std::env::temp_dir().join(format!(
        "pausewatch-profiles-rules-{}.toml",
        std::process::id()
    ));
    let rule = |name: &str, profile: &str| {
        format!(
            "mode = \"replace\"\nconfirm = 1\n\n[[rule]]\nname = \"{name}\"\n\
             when = \"window_s > 0.0\"\nseverity = \"info\"\nprofile = \"{profile}\"\n\
             advice = \"{name} over {{window_s}} s\"\n"
        )
    };
    std::fs::write(&rules, rule("first", "latency")).unwrap();
    let java = find_java(17).expect("JDK 17 (cargo xtask test installs it)");
    let mut jvm = JavaWorkload::new(java)
        .alloc_mb_per_sec(1)
        .duration_secs(60)
        .spawn()
        .expect("starting GcHeavy");
    jvm.wait_started(Duration::from_secs(30))
        .expect("GcHeavy started");
    let listen = loopback();
    let mut agent = Agent::start(
        &agent_binary(),
        jvm.pid(),
        listen,
        &[
            "--window",
            "2",
            "--interval",
            "0.5",
            "--summary",
            "0",
            "--rules",
            rules.to_str().unwrap(),
        ],
    );
    agent.wait_stderr("armed in", Duration::from_secs(30));
    let pid = jvm.pid();
    let wait_for = |want_rule: &str, want_profile: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let samples = parse_prometheus(&http_get(listen, "/metrics"));
            let got = (findings(&samples, pid), current_profile(&samples, pid));
            if got.0 == [want_rule] && got.1.as_deref() == Some(want_profile) {
                return samples;
            }
            assert!(
                Instant::now() < deadline,
                "wanted finding {want_rule} and profile {want_profile}, got {got:?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    let samples = wait_for("first", "latency");
    let advice = select(&samples, "pausewatch_recommendation_info", pid);
    assert_eq!(advice.len(), 1);
    assert!(
        advice[0].label("advice").starts_with("first over ")
            && advice[0].label("advice").ends_with(" s"),
        "{advice:?}"
    );

    // An unknown feature on line 6, column 8: logged, previous rules kept.
    std::fs::write(
        &rules,
        rule("second", "throughput").replace("window_s > 0.0", "widow_s > 0.0"),
    )
    .unwrap();
    agent.signal(libc::SIGHUP);
    let (_, line) = agent.wait_stderr("keeping the previous rules", Duration::from_secs(10));
    assert!(
        line.contains(&format!(
            "{}:6:9: in condition of rule `second`: unknown feature `widow_s`",
            rules.display()
        )),
        "{line}"
    );
    std::thread::sleep(Duration::from_secs(1));
    wait_for("first", "latency");

    std::fs::write(&rules, rule("second", "throughput")).unwrap();
    agent.signal(libc::SIGHUP);
    agent.wait_stderr("1 rules in force", Duration::from_secs(10));
    wait_for("second", "throughput");

    let (status, _) = agent.interrupt(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    jvm.stop().expect("stopping GcHeavy");
    let _ = std::fs::remove_file(&rules);
}

/// `agent rules explain` on the throughput case: it observes one window,
/// prints the features (the pause count matches `-Xlog:safepoint` over that
/// window), every rule with the values it read, and the profile.
#[test]
fn rules_explain_shows_features_rules_and_profile() {
    support::require_root("the rule engine end-to-end tests");
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let case = CASES
        .iter()
        .find(|c| c.name == "jvm_tiny_heap_high_alloc")
        .unwrap();
    let Launch::Jvm(configure) = &case.launch else {
        panic!("the explain test runs a JVM case");
    };
    let log_path = std::env::temp_dir().join(format!(
        "pausewatch-profiles-explain-{}.log",
        std::process::id()
    ));
    let java = find_java(17).expect("JDK 17 (cargo xtask test installs it)");
    let mut jvm = configure(JavaWorkload::new(java))
        .duration_secs(60)
        .log_path(&log_path)
        .spawn()
        .expect("starting GcHeavy");
    jvm.wait_started(Duration::from_secs(30))
        .expect("GcHeavy started");
    std::thread::sleep(Duration::from_secs(1));

    let child = std::process::Command::new(agent_binary())
        .args(["rules", "explain", "--pid", &jvm.pid().to_string()])
        .args(["--window", "4"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("starting agent rules explain");
    let out = child.wait_with_output().expect("agent rules explain");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}\n{stdout}", out.status);
    println!("{stdout}");
    jvm.stop().expect("stopping GcHeavy");
    jvm.wait_done(Duration::from_secs(30))
        .expect("GcHeavy done");

    let feature = |name: &str| -> f64 {
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no feature {name} in:\n{stdout}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let mut checks = Checks::new();
    let window = feature("window_s");
    checks.check((4.0..=5.5).contains(&window), || {
        format!("window_s {window}")
    });
    // Pauses: every safepoint logged between the two map reads is in the
    // window (2% slack: safepoint__end fires just after the log line), and
    // none logged 0.3 s or more outside them.
    let window_line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("window: from "))
        .unwrap_or_else(|| panic!("no window line in:\n{stdout}"));
    let edges: Vec<u64> = window_line
        .split_whitespace()
        .filter_map(|w| w.parse::<f64>().ok())
        .map(|s| (s * 1e9) as u64)
        .collect();
    let (start_ns, end_ns) = (edges[0], edges[1]);
    let log = hotspot::read_log(&log_path).expect("reading the -Xlog file");
    let ended_in = |from: u64, to: u64| {
        log.safepoints
            .iter()
            .filter(|r| r.logged_at_ns >= from && r.logged_at_ns <= to)
            .count() as f64
    };
    let slack = 300_000_000;
    let (low, high) = (
        ended_in(start_ns, end_ns),
        ended_in(start_ns - slack, end_ns + slack),
    );
    let pauses = feature("pauses");
    checks.check(pauses >= low * 0.98 && pauses <= high * 1.02, || {
        format!("pauses {pauses} outside [{low}, {high}] from -Xlog:safepoint")
    });
    checks.check(
        stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["gc_overhead", "HOLDS"]),
        || "gc_overhead does not hold".to_string(),
    );
    checks.check(
        stdout.contains("      with stall_ratio = ") && stdout.contains("gc_share = "),
        || "no values read by the rules".to_string(),
    );
    checks.check(
        stdout.contains("warning -> throughput: throughput-bound: "),
        || "no rendered advice".to_string(),
    );
    // The profile follows from the rules that held: throughput, or mixed
    // when a loaded machine stretched the p99 pause past long_pauses' 50 ms.
    let held = |rule: &str| {
        stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == [rule, "HOLDS"])
    };
    let want = if held("long_pauses") || held("very_long_pauses") || held("time_to_safepoint") {
        "mixed"
    } else {
        "throughput"
    };
    checks.check(stdout.ends_with(&format!("\nprofile: {want}\n")), || {
        format!("profile is not {want}")
    });
    let _ = std::fs::remove_file(&log_path);
    checks.finish("rules explain");
}

#[test]
fn every_case_has_a_test() {
    let source = include_str!("e2e_profiles.rs");
    for case in CASES {
        assert!(
            source.contains(&format!("run_case(\"{}\")", case.name)),
            "case {} is not run by any test",
            case.name
        );
    }
}

fn run_case(name: &str) {
    support::require_root("the rule engine end-to-end tests");
    let case = CASES
        .iter()
        .find(|c| c.name == name)
        .expect("case is in CASES");
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let configure = match &case.launch {
        Launch::Jvm(configure) => configure,
        Launch::Go { .. } | Launch::Python { .. } => return run_native_case(case),
    };
    let log_path = std::env::temp_dir().join(format!(
        "pausewatch-profiles-{}-{}.log",
        case.name,
        std::process::id()
    ));
    let java = find_java(17).expect("JDK 17 (cargo xtask test installs it)");
    let mut jvm = configure(JavaWorkload::new(java))
        .duration_secs(DEADLINE_SECS + 10)
        .gate(true)
        .log_path(&log_path)
        .spawn()
        .expect("starting GcHeavy");
    jvm.wait_ready(Duration::from_secs(30))
        .expect("GcHeavy ready");

    let listen = loopback();
    let window = WINDOW_SECS.to_string();
    let mut agent = Agent::start(
        &agent_binary(),
        jvm.pid(),
        listen,
        &["--window", &window, "--interval", "1", "--summary", "5"],
    );
    agent.wait_stderr("armed in", Duration::from_secs(30));
    jvm.open_gate().expect("opening the gate");
    jvm.wait_started(Duration::from_secs(30))
        .expect("GcHeavy started");
    let started = Instant::now();

    // From one full window on, poll until the expected profile and every
    // expected finding are there (a loaded machine may need a few more
    // evaluations), then judge the last scrape.
    std::thread::sleep(Duration::from_secs(SETTLE_SECS));
    let (samples, scraped_ns) = loop {
        let scraped_ns = monotonic_now_ns();
        let samples = parse_prometheus(&http_get(listen, "/metrics"));
        let done = current_profile(&samples, jvm.pid()).as_deref() == Some(case.profile)
            && case
                .findings
                .iter()
                .all(|f| findings(&samples, jvm.pid()).contains(&f.to_string()));
        if done || started.elapsed() >= Duration::from_secs(DEADLINE_SECS) {
            break (samples, scraped_ns);
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    jvm.stop().expect("stopping GcHeavy");
    jvm.wait_done(Duration::from_secs(30))
        .expect("GcHeavy done");
    let (status, _) = agent.interrupt(Duration::from_secs(10));
    let stderr = agent.stderr_text();
    println!("== {} ==\n{stderr}", case.name);

    let pid = jvm.pid();
    let mut checks = Checks::new();
    checks.eq(
        "profile",
        current_profile(&samples, pid).as_deref(),
        Some(case.profile),
    );
    // Exactly one profile is 1, and the four documented ones are exported.
    let profiles = select(&samples, "pausewatch_workload_profile", pid);
    checks.eq(
        "profiles at 1",
        profiles.iter().filter(|s| s.value == 1.0).count(),
        1,
    );
    for p in ["throughput", "latency", "mixed", "idle"] {
        checks.check(profiles.iter().any(|s| s.label("profile") == p), || {
            format!("no pausewatch_workload_profile{{profile=\"{p}\"}}")
        });
    }
    for s in &profiles {
        checks.eq("runtime label", s.label("runtime"), case.runtime);
    }
    let held = findings(&samples, pid);
    for f in case.findings {
        checks.check(held.contains(&f.to_string()), || {
            format!("finding {f} missing; findings: {held:?}")
        });
        // Every finding has its advice, with the placeholders filled in.
        let advice: Vec<&Sample> = select(&samples, "pausewatch_recommendation_info", pid)
            .into_iter()
            .filter(|s| s.label("rule") == *f)
            .collect();
        checks.check(
            advice.len() == 1
                && !advice[0].label("advice").is_empty()
                && !advice[0].label("advice").contains('{'),
            || format!("advice of {f}: {advice:?}"),
        );
    }
    for f in case.absent {
        checks.check(!held.contains(&f.to_string()), || {
            format!("finding {f} must not hold; findings: {held:?}")
        });
    }
    check_stall_ratio(&mut checks, &samples, pid, &log_path, scraped_ns);
    checks.check(stderr.contains("    profile: "), || {
        "the live summary shows no profile".to_string()
    });
    checks.check(status.is_some_and(|s| s.success()), || {
        format!("agent exit status {status:?}")
    });
    let _ = std::fs::remove_file(&log_path);
    checks.finish(case.name);
}

/// A Go or CPython case: start the workload, wait for its `ready`, attach,
/// and judge the profile and findings after one window (see the module doc
/// for why there is no stall-ratio check here).
fn run_native_case(case: &Case) {
    let mut cmd = match &case.launch {
        Launch::Go { package, env } => {
            let name = package.trim_start_matches("./");
            let binary = goworkload::build_package("1.23", package, name, false)
                .expect("building the Go workload (cargo xtask test installs Go 1.23)");
            let mut cmd = Command::new(binary);
            cmd.envs(env.iter().copied());
            cmd
        }
        Launch::Python { script } => {
            let mut cmd = Command::new("/usr/bin/python3.11");
            cmd.arg(xtask::scripted::workload_path(script));
            cmd
        }
        Launch::Jvm(_) => unreachable!("JVM cases run in run_case"),
    };
    // Go's flag.Duration wants a unit; the Python script takes seconds.
    let secs = DEADLINE_SECS + 20;
    let duration = match &case.launch {
        Launch::Go { .. } => format!("{secs}s"),
        _ => secs.to_string(),
    };
    // Stopped with SIGTERM when dropped (after the agent, or on a failure).
    let mut workload = Process::spawn(
        "the workload",
        cmd.args(["--duration", &duration])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    )
    .stop_with(libc::SIGTERM);
    let pid = workload.pid();
    let first = workload.next_line(Duration::from_secs(60));
    assert_eq!(first.as_deref(), Some("ready"), "{}: first line", case.name);

    let listen = loopback();
    let window = WINDOW_SECS.to_string();
    let mut agent = Agent::start(
        &agent_binary(),
        pid,
        listen,
        &["--window", &window, "--interval", "1", "--summary", "5"],
    );
    agent.wait_stderr("armed in", Duration::from_secs(30));
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(SETTLE_SECS));
    let samples = loop {
        let samples = parse_prometheus(&http_get(listen, "/metrics"));
        let done = current_profile(&samples, pid).as_deref() == Some(case.profile)
            && case
                .findings
                .iter()
                .all(|f| findings(&samples, pid).contains(&f.to_string()));
        if done || started.elapsed() >= Duration::from_secs(DEADLINE_SECS) {
            break samples;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let (status, _) = agent.interrupt(Duration::from_secs(10));
    drop(workload);
    let stderr = agent.stderr_text();
    println!("== {} ==\n{stderr}", case.name);

    let mut checks = Checks::new();
    checks.eq(
        "profile",
        current_profile(&samples, pid).as_deref(),
        Some(case.profile),
    );
    let held = findings(&samples, pid);
    for f in case.findings {
        checks.check(held.contains(&f.to_string()), || {
            format!("finding {f} missing; findings: {held:?}")
        });
    }
    for f in case.absent {
        checks.check(!held.contains(&f.to_string()), || {
            format!("finding {f} must not hold; findings: {held:?}")
        });
    }
    for s in select(&samples, "pausewatch_workload_profile", pid) {
        checks.eq("runtime label", s.label("runtime"), case.runtime);
    }
    checks.check(
        select(&samples, "pausewatch_stall_ratio", pid)
            .first()
            .is_some_and(|s| s.value > 0.0),
        || "no positive pausewatch_stall_ratio".to_string(),
    );
    checks.check(status.is_some_and(|s| s.success()), || {
        format!("agent exit status {status:?}")
    });
    checks.finish(case.name);
}

fn select<'a>(samples: &'a [Sample], name: &str, pid: u32) -> Vec<&'a Sample> {
    let pid = pid.to_string();
    samples
        .iter()
        .filter(|s| s.name == name && s.label("pid") == pid)
        .collect()
}

fn current_profile(samples: &[Sample], pid: u32) -> Option<String> {
    select(samples, "pausewatch_workload_profile", pid)
        .into_iter()
        .find(|s| s.value == 1.0)
        .map(|s| s.label("profile").to_string())
}

fn findings(samples: &[Sample], pid: u32) -> Vec<String> {
    select(samples, "pausewatch_finding", pid)
        .into_iter()
        .filter(|s| s.value == 1.0)
        .map(|s| s.label("rule").to_string())
        .collect()
}

/// `pausewatch_stall_ratio` against the `-Xlog:safepoint` Totals.
///
/// The agent's window ends at its last snapshot before the scrape at `T`
/// (at most one `--interval`, 1 s, earlier; 1.5 s allowed) and spans
/// `WINDOW` to `WINDOW + 1` s. So every safepoint that ended within
/// `[T - WINDOW + 0.5, T - 1.5]` is in it, and none that ended before
/// `T - WINDOW - 2.5`: the ratio lies between the first sum over
/// `WINDOW + 1` s and the second over `WINDOW` s. 15% more either way
/// for the difference between the probes and the log's own clock reads
/// (the hotspot end-to-end test measures 2% on sums).
fn check_stall_ratio(
    checks: &mut Checks,
    samples: &[Sample],
    pid: u32,
    log: &std::path::Path,
    scraped_ns: u64,
) {
    let got = select(samples, "pausewatch_stall_ratio", pid);
    if !checks.eq("pausewatch_stall_ratio series", got.len(), 1) {
        return;
    }
    let got = got[0].value;
    let log = hotspot::read_log(log).expect("reading the -Xlog file");
    let s = 1_000_000_000u64;
    let w = WINDOW_SECS * s;
    let sum_ended_in = |from: u64, to: u64| -> f64 {
        log.safepoints
            .iter()
            .filter(|r| r.logged_at_ns >= from && r.logged_at_ns <= to)
            .map(|r| r.total_ns as f64)
            .sum::<f64>()
    };
    let inner = sum_ended_in(scraped_ns - w + s / 2, scraped_ns - 3 * s / 2);
    let outer = sum_ended_in(scraped_ns - w - 5 * s / 2, scraped_ns);
    let low = inner / ((w + s) as f64) * 0.85;
    let high = outer / (w as f64) * 1.15 + 1e-4;
    checks.check(got >= low && got <= high, || {
        format!(
            "pausewatch_stall_ratio {got:.4} outside [{low:.4}, {high:.4}] from -Xlog:safepoint"
        )
    });
    println!("stall ratio {got:.4}, from the log [{low:.4}, {high:.4}]");
}
