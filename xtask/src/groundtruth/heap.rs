//! HotSpot's own account of the heap around each collection: the
//! `-Xlog:gc+heap=debug` blocks `Heap before GC invocations=N (full F):`
//! and `Heap after GC invocations=N (full F):` that
//! `CollectedHeap::print_heap_before_gc` / `print_heap_after_gc` write,
//! (`Heap Before GC`, `Heap After GC` from JDK 25 on), one line per
//! generation (or one for G1's whole heap) with `used NK`:
//!
//! ```text
//! GC(30) Heap after GC invocations=31 (full 0):
//! GC(30)  def new generation   total 14784K, used 1599K [0x..., 0x..., 0x...)
//! GC(30)   eden space 13184K,   0% used [...)
//! GC(30)  tenured generation   total 245760K, used 101832K [...)
//! GC(30)  Metaspace       used 10349K, committed 10560K, reserved 1114112K
//! ```
//!
//! A heap line is indented by one space after `GC(n)` and has `total`;
//! the spaces inside a generation are indented further, and the Metaspace
//! line has no `total`, so neither is counted. G1 writes one line,
//! `garbage-first heap   total 262144K, used 5120K` (JDK 17) or `total
//! reserved 262144K, committed 262144K, used 5120K` (JDK 21+); Parallel
//! writes `PSYoungGen` and `ParOldGen`. The values are whole KiB.

use std::path::Path;

use anyhow::{Context, Result};

/// The `-Xlog` argument that writes these blocks to `path` (with the
/// decorators of [`super::hotspot::XLOG_DECORATORS`], `timenanos` first).
pub fn xlog_arg(path: &Path) -> Result<String> {
    let p = path
        .to_str()
        .with_context(|| format!("log path {} is not UTF-8", path.display()))?;
    Ok(format!(
        "-Xlog:gc+heap=debug:file=\"{p}\":{}:filecount=0",
        super::hotspot::XLOG_DECORATORS
    ))
}

/// One collection as the heap log tells it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeapGc {
    /// HotSpot's GC id.
    pub id: u64,
    /// Whether it was a full collection (the `full` count went up since
    /// the previous collection's after block).
    pub full: bool,
    /// Heap used before, bytes.
    pub before_bytes: u64,
    /// Heap used after, bytes.
    pub after_bytes: u64,
    /// `timenanos` of the `Heap before GC` line (CLOCK_MONOTONIC).
    pub before_at_ns: u64,
    /// `timenanos` of the `Heap after GC` line.
    pub after_at_ns: u64,
}

/// Reads a heap log (see [`parse`]).
pub fn read(path: &Path) -> Result<Vec<HeapGc>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text)
}

/// Every collection with both a before and an after block, in order.
pub fn parse(text: &str) -> Result<Vec<HeapGc>> {
    let mut out: Vec<HeapGc> = Vec::new();
    // (id, is_after, full count) of the block being read.
    let mut block: Option<(u64, bool, u64)> = None;
    let mut open: Option<(HeapGc, u64)> = None;
    // The full count after the previous collection.
    let mut full_so_far = 0;
    for (n, line) in text.lines().enumerate() {
        let Some((at, msg)) = split(line) else {
            continue;
        };
        let Some((id, body)) = gc_id(msg) else {
            continue;
        };
        // JDK 25 capitalises them: `Heap Before GC`, `Heap After GC`.
        for (header, is_after) in [
            ("Heap before GC invocations=", false),
            ("Heap Before GC invocations=", false),
            ("Heap after GC invocations=", true),
            ("Heap After GC invocations=", true),
        ] {
            if let Some(rest) = body.strip_prefix(header) {
                let full = rest
                    .split_once("(full ")
                    .and_then(|(_, f)| f.split(')').next())
                    .and_then(|f| f.parse::<u64>().ok())
                    .with_context(|| format!("line {}: no full count in {body:?}", n + 1))?;
                block = Some((id, is_after, full));
                if is_after {
                    if let Some((mut gc, _)) = open.take()
                        && gc.id == id
                    {
                        // Serial and G1 count the collection between the
                        // two blocks, Parallel before the first: against
                        // the previous collection's after-count, both work
                        // (the log starts with the JVM, at 0).
                        gc.full = full > full_so_far;
                        full_so_far = full;
                        gc.after_at_ns = at;
                        out.push(gc);
                    }
                } else {
                    open = Some((
                        HeapGc {
                            id,
                            before_at_ns: at,
                            ..HeapGc::default()
                        },
                        full,
                    ));
                }
            }
        }
        let Some((bid, is_after, _)) = block else {
            continue;
        };
        if bid != id {
            continue;
        }
        // A generation or whole-heap line: one space of indent, "total".
        let Some(gen_line) = body.strip_prefix(' ') else {
            continue;
        };
        if gen_line.starts_with(' ') || !gen_line.contains(" total ") {
            continue;
        }
        let Some(used) = gen_line
            .split_once(" used ")
            .and_then(|(_, u)| u.split('K').next())
            .and_then(|u| u.trim().parse::<u64>().ok())
        else {
            continue;
        };
        let bytes = used * 1024;
        if is_after {
            if let Some(last) = out.last_mut()
                && last.id == id
            {
                last.after_bytes += bytes;
            }
        } else if let Some((gc, _)) = open.as_mut() {
            gc.before_bytes += bytes;
        }
    }
    Ok(out)
}

/// `[<timenanos>ns][...] message` -> (timenanos, message).
fn split(line: &str) -> Option<(u64, &str)> {
    let mut rest = line;
    let mut at = None;
    while let Some(r) = rest.strip_prefix('[') {
        let close = r.find(']')?;
        let d = &r[..close];
        if at.is_none()
            && let Some(n) = d.strip_suffix("ns")
            && !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
        {
            at = n.parse().ok();
        }
        rest = &r[close + 1..];
    }
    Some((at?, rest.strip_prefix(' ').unwrap_or(rest)))
}

/// `GC(12) rest` -> (12, "rest"), keeping the rest's own indent.
fn gc_id(msg: &str) -> Option<(u64, &str)> {
    let rest = msg.strip_prefix("GC(")?;
    let close = rest.find(')')?;
    let id = rest[..close].parse().ok()?;
    let body = rest[close + 1..].strip_prefix(' ')?;
    Some((id, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_serial_g1_and_full_blocks() {
        let text = "\
[5ns][1ns][7] GC(3) Heap before GC invocations=3 (full 0):
[5ns][1ns][7] GC(3)  def new generation   total 14784K, used 14783K [0x0, 0x1, 0x1)
[5ns][1ns][7] GC(3)   eden space 13184K, 100% used [0x0, 0x1, 0x1)
[5ns][1ns][7] GC(3)  tenured generation   total 245760K, used 98524K [0x1, 0x2, 0x2)
[5ns][1ns][7] GC(3)  Metaspace       used 10349K, committed 10560K, reserved 1114112K
[6ns][1ns][7] GC(3) DefNew: 14783K(14784K)->1599K(14784K)
[9ns][1ns][7] GC(3) Heap after GC invocations=4 (full 0):
[9ns][1ns][7] GC(3)  def new generation   total 14784K, used 1599K [0x0, 0x1, 0x1)
[9ns][1ns][7] GC(3)  tenured generation   total 245760K, used 101832K [0x1, 0x2, 0x2)
[20ns][1ns][7] GC(4) Heap Before GC invocations=4 (full 0):
[20ns][1ns][7] GC(4)  garbage-first heap   total reserved 262144K, committed 262144K, used 16384K [0x0, 0x1)
[20ns][1ns][7] GC(4)   region size 1024K, 5 young (5120K), 1 survivors (1024K)
[30ns][1ns][7] GC(4) Heap After GC invocations=5 (full 1):
[30ns][1ns][7] GC(4)  garbage-first heap   total 262144K, used 4096K [0x0, 0x1)
[40ns][1ns][7] GC(5) Heap before GC invocations=6 (full 2):
[40ns][1ns][7] GC(5)  PSYoungGen      total 14336K, used 12288K [0x0, 0x1, 0x1)
[40ns][1ns][7] GC(5)  ParOldGen       total 245760K, used 1000K [0x1, 0x2, 0x2)
[50ns][1ns][7] GC(5) Heap after GC invocations=6 (full 2):
[50ns][1ns][7] GC(5)  PSYoungGen      total 14336K, used 0K [0x0, 0x1, 0x1)
[50ns][1ns][7] GC(5)  ParOldGen       total 245760K, used 900K [0x1, 0x2, 0x2)
";
        let gcs = parse(text).unwrap();
        assert_eq!(gcs.len(), 3);
        // Parallel counts a full collection before its before block.
        assert!(gcs[2].full);
        assert_eq!(gcs[2].after_bytes, 900 * 1024);
        assert_eq!(gcs[0].before_bytes, (14783 + 98524) * 1024);
        assert_eq!(gcs[0].after_bytes, (1599 + 101832) * 1024);
        assert!(!gcs[0].full);
        assert_eq!((gcs[0].before_at_ns, gcs[0].after_at_ns), (5, 9));
        assert_eq!(gcs[1].before_bytes, 16384 * 1024);
        assert_eq!(gcs[1].after_bytes, 4096 * 1024);
        assert!(gcs[1].full);
    }
}
