//! `agent run --hist` against a JVM and its own `-Xlog:safepoint`: the
//! bpftrace-style histograms printed at exit hold, per VM operation, as
//! many safepoints as HotSpot logged, each row as many as the exported
//! Prometheus buckets between the same two powers of two, and rows that add
//! up to the block's count.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::hotspot::dumping_jdk17;
use support::scenario::{Subject, observe};
use support::{Checks, buckets_by_le, require_root, sum_by};
use xtask::workloads::monotonic_now_ns;

/// One printed histogram: its header's keys and count, and its rows.
#[derive(Debug)]
struct Block {
    kind: String,
    pid: u32,
    cause: String,
    count: u64,
    /// ([lo, hi) in ns, hi `None` for the open last row, count).
    rows: Vec<(u64, Option<u64>, u64)>,
}

/// `512K` → 524288: bpftrace's suffixes are powers of 1024.
fn unsuffixed(text: &str) -> u64 {
    let (digits, shift) = match text.chars().last() {
        Some('K') => (&text[..text.len() - 1], 10),
        Some('M') => (&text[..text.len() - 1], 20),
        Some('G') => (&text[..text.len() - 1], 30),
        Some('T') => (&text[..text.len() - 1], 40),
        _ => (text, 0),
    };
    digits
        .parse::<u64>()
        .unwrap_or_else(|_| panic!("row edge {text:?}"))
        << shift
}

/// Reads every `@KIND_ns[PID, COMM, CAUSE]: count N, ...` block of `text`.
fn parse_blocks(text: &str) -> Vec<Block> {
    let mut blocks: Vec<Block> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix('@') {
            let (name, rest) = rest.split_once('[').expect("@name[");
            let (keys, rest) = rest.split_once("]: count ").expect("]: count");
            let mut keys = keys.splitn(3, ", ");
            let pid = keys.next().and_then(|k| k.parse().ok()).expect("pid key");
            let _comm = keys.next().expect("comm key");
            let cause = keys.next().expect("cause key").to_string();
            let count = rest
                .split(',')
                .next()
                .and_then(|n| n.trim().parse().ok())
                .expect("count");
            blocks.push(Block {
                kind: name.trim_end_matches("_ns").to_string(),
                pid,
                cause,
                count,
                rows: Vec::new(),
            });
        } else if let Some(rest) = line.strip_prefix('[') {
            let block = blocks.last_mut().expect("a row after a header");
            let (range, rest) = rest.split_once(')').expect("[lo, hi)");
            let (lo, hi) = range.split_once(", ").expect("lo, hi");
            let n = rest
                .split('|')
                .next()
                .and_then(|n| n.trim().parse().ok())
                .expect("row count");
            let hi = (hi != "...").then(|| unsuffixed(hi));
            block.rows.push((unsuffixed(lo), hi, n));
        }
    }
    blocks
}

#[test]
fn hist_blocks_match_the_log_and_the_exported_buckets() {
    require_root("agent run --hist");
    let log = std::env::temp_dir().join(format!(
        "pausewatch-hist-{}-{}.log",
        std::process::id(),
        monotonic_now_ns()
    ));
    let mut subject = dumping_jdk17("JDK 17 --hist", 2, &log);
    let pid = subject.pid();
    let o = observe(
        &mut subject,
        &["--hist", "--summary", "0"],
        Duration::from_secs(10),
    );
    let pid_s = pid.to_string();
    let sel = [("pid", pid_s.as_str()), ("kind", "safepoint")];
    let counts = sum_by(&o.samples, "pausewatch_pause_seconds_count", "cause", &sel);
    let truth = subject.truth(&o.window, &counts);

    let blocks = parse_blocks(&o.stderr);
    let mut c = Checks::new();
    c.check(o.status.is_some_and(|s| s.success()), || {
        format!("the agent did not exit 0 ({:?})", o.status)
    });
    let printed: BTreeMap<&str, &Block> = blocks
        .iter()
        .filter(|b| b.pid == pid && b.kind == "safepoint")
        .map(|b| (b.cause.as_str(), b))
        .collect();
    let mut compared_rows = 0;
    c.check(truth.len() >= 2, || {
        format!("too few VM operations logged: {truth:?}")
    });
    for (cause, t) in &truth {
        let Some(b) = printed.get(cause.as_str()) else {
            c.check(false, || format!("no histogram printed for {cause}"));
            continue;
        };
        c.eq(
            &format!("--hist count of {cause} vs -Xlog"),
            b.count as f64,
            t.count,
        );
        c.eq(
            &format!("--hist rows of {cause} add up to its count"),
            b.rows.iter().map(|r| r.2).sum::<u64>() as f64,
            b.count as f64,
        );
        // Each row against the exported cumulative buckets at its edges,
        // where both are exported boundaries.
        let mut want = sel.to_vec();
        want.push(("cause", cause.as_str()));
        let buckets = buckets_by_le(&o.samples, "pausewatch_pause_seconds", &want);
        let at = |ns: u64| {
            buckets
                .iter()
                .find(|(le, _)| (le * 1e9).round() as u64 == ns)
                .map(|(_, n)| *n)
        };
        for &(lo, hi, n) in &b.rows {
            if let (Some(below), Some(Some(upto))) = (at(lo), hi.map(at)) {
                compared_rows += 1;
                c.eq(
                    &format!("--hist row [{lo}, {hi:?}) ns of {cause} vs exported buckets"),
                    n as f64,
                    upto - below,
                );
            }
        }
    }
    c.check(compared_rows > 0, || {
        "no row lay between two exported bucket edges".to_string()
    });
    c.check(printed.len() == truth.len(), || {
        format!(
            "printed histograms for {:?}, the log has {:?}",
            printed.keys().collect::<Vec<_>>(),
            truth.keys().collect::<Vec<_>>()
        )
    });
    c.finish(&o.stderr);
}

#[test]
fn unsuffixed_reads_bpftrace_edges() {
    assert_eq!(unsuffixed("512K"), 512 << 10);
    assert_eq!(unsuffixed("1M"), 1 << 20);
    assert_eq!(unsuffixed("0"), 0);
    let blocks = parse_blocks(
        "@gc_ns[7, java, minor]: count 3, sum 1.0 ms, max 0.5 ms (hotspot 17)\n\
         [256K, 512K)              1 |@@@@                |\n\
         [512K, 1M)                2 |@@@@@@@@            |\n",
    );
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].count, 3);
    assert_eq!(
        blocks[0].rows,
        [
            (256 << 10, Some(512 << 10), 1),
            (512 << 10, Some(1 << 20), 2)
        ]
    );
}
