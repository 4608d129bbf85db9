//! Native histograms against a real Prometheus and the JVM's own log.
//!
//! A JDK 17 GcHeavy (4 s, a thread dump every 100 ms, `System.gc()` every
//! 500 ms), the release agent tracing it, and two Debian Prometheus 2.42
//! servers scraping the agent every second on loopback: one with
//! `--enable-feature=native-histograms` (it asks for the protobuf format
//! and gets native histograms), one without (text, classic histograms).
//! Two servers because Prometheus 2.42 ingests only the native version of a
//! histogram that has both (`scrape_classic_histograms` arrived in 2.45).
//! Once the JVM has exited and both servers have scraped the final values:
//!
//! - per VM operation, `histogram_count()` and `histogram_sum()` of the
//!   native series equal the classic `_count` and `_sum` (and the agent's
//!   text page, and the count equals the `-Xlog:safepoint` lines);
//! - the native buckets, added up to each classic boundary's native image,
//!   equal the classic cumulative counts (every exported edge);
//! - `histogram_quantile(0.99, ...)` of all safepoints lands within one
//!   native bucket of the exact p99 of the log's safepoint totals.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::hotspot::{comparable_safepoints, dumping_jdk17};
use support::prometheus::{self, Prometheus};
use support::scenario::{Subject, Window};
use support::{
    Agent, Checks, ScratchDir, agent_binary, buckets_by_le, loopback, parse_prometheus,
    require_root, sum_by,
};
use xtask::groundtruth::hotspot::{exact_quantile_ns, read_log};
use xtask::workloads::monotonic_now_ns;

/// The agent's `NATIVE_SHIFT`: fine bucket i is native bucket i - 79,
/// (2^((n-1)/4), 2^(n/4)] s (agent/src/export/protobuf.rs).
const NATIVE_SHIFT: i32 = 79;

/// The BPF histogram's bucket of a value (pausewatch_common::hist: bucket
/// 0 below 2^10 ns, then 4 linear sub-buckets per power of two up to
/// 2^40 ns), which the agent exports as one native bucket each.
fn bucket_index(ns: u64) -> usize {
    if ns < 1 << 10 {
        return 0;
    }
    if ns >= 1 << 40 {
        return 121;
    }
    let exp = 63 - ns.leading_zeros();
    let sub = ((ns >> (exp - 2)) & 3) as u32;
    (1 + (exp - 10) * 4 + sub) as usize
}

/// Upper boundary of native bucket `n`, in seconds.
fn native_upper(n: i32) -> f64 {
    2f64.powf(f64::from(n) / 4.0)
}

#[test]
fn e2e_native_histograms_match_classic_and_the_log() {
    require_root("e2e_native");
    prometheus::binary();
    let dir = ScratchDir::new("native");
    let log = dir.path().join("safepoint.log");
    let mut subject = dumping_jdk17("JDK 17 native histograms", 4, &log);
    let pid = subject.pid();
    let listen = loopback();
    let mut agent = Agent::start(
        &agent_binary(),
        pid,
        listen,
        &["--interval", "0.5", "--summary", "0"],
    );
    let (armed_ns, _) = agent.wait_stderr("armed in", Duration::from_secs(30));
    let mut native_prom = Prometheus::start(
        &dir.path().join("native"),
        listen.port(),
        &["--enable-feature=native-histograms"],
    );
    let mut classic_prom = Prometheus::start(&dir.path().join("classic"), listen.port(), &[]);
    for p in [&mut native_prom, &mut classic_prom] {
        p.wait_for(
            r#"up{job="pausewatch"} == 1"#,
            Duration::from_secs(30),
            |r| !r.is_empty(),
        );
    }

    subject.run();
    // The agent's last snapshot (0.5 s), then two scrapes by each server.
    std::thread::sleep(Duration::from_secs(3));
    let scrape_ns = monotonic_now_ns();
    let samples = parse_prometheus(&support::http_get(listen, "/metrics"));

    let pid_s = pid.to_string();
    let sel = [("pid", pid_s.as_str()), ("kind", "safepoint")];
    let counts = sum_by(&samples, "pausewatch_pause_seconds_count", "cause", &sel);
    let sums = sum_by(&samples, "pausewatch_pause_seconds_sum", "cause", &sel);
    let window = Window {
        agent_spawned_ns: agent.spawned_ns,
        armed_ns,
        scrape_ns,
    };
    let parsed = read_log(&log).unwrap_or_else(|e| panic!("{e:#}"));
    let (records, _) = comparable_safepoints(&parsed.safepoints, &counts, window);
    let mut truth: BTreeMap<String, u64> = BTreeMap::new();
    for r in &records {
        *truth.entry(r.op.clone()).or_default() += 1;
    }

    let mut c = Checks::new();
    c.check(truth.len() >= 2, || {
        format!("too few VM operations: {truth:?}")
    });
    let mut table = String::from(
        "cause | log | text _count | classic _count | native count | native sum - classic sum\n",
    );
    for (cause, &n) in &truth {
        let s = format!(r#"pid="{pid}",kind="safepoint",cause="{cause}""#);
        let native = native_prom
            .query(&format!("pausewatch_pause_seconds{{{s}}}"))
            .unwrap_or_else(|e| panic!("{e}"));
        let Some(prometheus::NativeSample {
            count: ncount,
            sum: nsum,
            buckets: nbuckets,
        }) = native.first().and_then(prometheus::native)
        else {
            c.check(false, || {
                format!("{cause}: no native histogram: {native:?}")
            });
            continue;
        };
        let scalar = |p: &Prometheus, q: String| {
            p.query(&q)
                .unwrap_or_else(|e| panic!("{e}"))
                .first()
                .map(prometheus::value)
                .unwrap_or(f64::NAN)
        };
        let hcount = scalar(
            &native_prom,
            format!("histogram_count(pausewatch_pause_seconds{{{s}}})"),
        );
        let hsum = scalar(
            &native_prom,
            format!("histogram_sum(pausewatch_pause_seconds{{{s}}})"),
        );
        let ccount = scalar(
            &classic_prom,
            format!("pausewatch_pause_seconds_count{{{s}}}"),
        );
        let csum = scalar(
            &classic_prom,
            format!("pausewatch_pause_seconds_sum{{{s}}}"),
        );
        let tcount = counts.get(cause).copied().unwrap_or(f64::NAN);
        let tsum = sums.get(cause).copied().unwrap_or(f64::NAN);
        table.push_str(&format!(
            "{cause} | {n} | {tcount} | {ccount} | {hcount} | {:e}\n",
            hsum - csum
        ));
        c.eq(
            &format!("{cause}: histogram_count vs classic _count"),
            hcount,
            ccount,
        );
        c.eq(
            &format!("{cause}: histogram_sum vs classic _sum"),
            hsum,
            csum,
        );
        c.eq(&format!("{cause}: native count field"), ncount, hcount);
        c.eq(&format!("{cause}: native sum field"), nsum, hsum);
        c.eq(
            &format!("{cause}: classic _count vs the page"),
            ccount,
            tcount,
        );
        c.eq(&format!("{cause}: classic _sum vs the page"), csum, tsum);
        c.eq(
            &format!("{cause}: count vs -Xlog:safepoint"),
            hcount,
            n as f64,
        );
        let in_buckets: f64 = nbuckets.iter().map(|b| b.2).sum();
        c.eq(
            &format!("{cause}: native buckets add up"),
            in_buckets,
            hcount,
        );

        // Every classic boundary against the native buckets below its
        // native image: edge 2^e(1 + j/4) ns = fine bucket edge b is the
        // upper boundary of native bucket b - NATIVE_SHIFT.
        let mut want = sel.to_vec();
        want.push(("cause", cause.as_str()));
        for (le, cumulative) in buckets_by_le(&samples, "pausewatch_pause_seconds", &want) {
            if !le.is_finite() {
                continue;
            }
            let edge_ns = (le * 1e9).round() as u64;
            // The fine bucket that starts at the edge; its native bucket's
            // lower boundary is the edge's image.
            let image = native_upper(bucket_index(edge_ns) as i32 - NATIVE_SHIFT - 1);
            let below: f64 = nbuckets
                .iter()
                .filter(|b| b.1 <= image * (1.0 + 1e-9))
                .map(|b| b.2)
                .sum();
            c.eq(
                &format!("{cause}: native buckets up to {image:e} s vs classic le={le}"),
                below,
                cumulative,
            );
        }
    }

    // p99 of all safepoints against the log's exact p99.
    let totals: Vec<u64> = records.iter().map(|r| r.total_ns).collect();
    let exact = exact_quantile_ns(&totals, 0.99);
    let q = format!(
        r#"histogram_quantile(0.99, sum(pausewatch_pause_seconds{{pid="{pid}",kind="safepoint"}}))"#
    );
    let p99 = native_prom
        .query(&q)
        .unwrap_or_else(|e| panic!("{e}"))
        .first()
        .map(prometheus::value)
        .unwrap_or(f64::NAN);
    // Within one native bucket: the exact value's native bucket (its fine
    // bucket's image) widened by one bucket on each side.
    let n = bucket_index(exact) as i32 - NATIVE_SHIFT;
    let (lo, hi) = (native_upper(n - 2), native_upper(n + 1));
    table.push_str(&format!(
        "p99: native {:.3} ms, log {:.3} ms, allowed ({:.3}, {:.3}] ms, {} safepoints\n",
        p99 * 1e3,
        exact as f64 / 1e6,
        lo * 1e3,
        hi * 1e3,
        totals.len()
    ));
    c.check(p99 > lo && p99 <= hi, || {
        format!("native p99 {p99} s is not within one native bucket of the log's {exact} ns")
    });
    eprintln!("{table}");

    let (status, _) = agent.interrupt(Duration::from_secs(10));
    c.check(status.is_some_and(|s| s.success()), || {
        format!("the agent did not exit 0 ({status:?})")
    });
    c.finish(&format!(
        "{table}\nagent stderr:\n{}\nnative prometheus:\n{}",
        agent.stderr_text(),
        native_prom.log_tail()
    ));
}
