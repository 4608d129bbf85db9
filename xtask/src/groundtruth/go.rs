//! Parser for the Go runtime's `GODEBUG=gctrace=1` lines, and the pairing of
//! the agent's stop-the-world events with them.
//!
//! One line per GC cycle, printed on stderr at the end of mark termination:
//!
//! ```text
//! gc 12 @3.456s 2%: 0.020+1.5+0.031 ms clock, 0.040+0.5/1.2/0+0.062 ms cpu, 4->4->1 MB, ...
//! ```
//!
//! `@` is the cycle's start (the sweep termination's stop-the-world) in
//! seconds since the runtime started, printed to the millisecond; the first
//! and third `ms clock` terms are the wall-clock of the sweep termination
//! and mark termination stop-the-world phases. The runtime formats them with
//! `fmtNSAsMS`: two significant digits, at most three decimals, whole
//! milliseconds from 10 ms up, all *truncated*, never rounded. So a printed
//! `0.031` means a value in [0.031, 0.032) ms: [`Phase::ulp_ms`] is the width
//! of that interval, and a sum of printed values under-states the true sum
//! by up to the sum of those widths.

/// One stop-the-world phase as gctrace prints it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Phase {
    /// The printed value, in ms (a lower bound of the true value).
    pub ms: f64,
    /// Width of the truncation interval: the true value is below `ms + ulp_ms`.
    pub ulp_ms: f64,
}

/// One `gc N @...` line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GcCycle {
    /// The cycle number.
    pub number: u64,
    /// Start of the cycle, seconds since the runtime started (ms precision).
    pub at_s: f64,
    /// Sweep termination stop-the-world.
    pub sweep_term: Phase,
    /// Mark termination stop-the-world.
    pub mark_term: Phase,
}

/// Parses one gctrace line; `None` for any other line (the program's own
/// stderr, `scvg` lines, forced-GC markers).
pub fn parse_line(line: &str) -> Option<GcCycle> {
    let rest = line.strip_prefix("gc ")?;
    let (number, rest) = rest.split_once(' ')?;
    let rest = rest.strip_prefix('@')?;
    let (at, rest) = rest.split_once("s ")?;
    let (_, rest) = rest.split_once(": ")?;
    let (clock, _) = rest.split_once(" ms clock")?;
    let terms: Vec<&str> = clock.split('+').collect();
    let [sweep, _concurrent, mark] = terms.as_slice() else {
        return None;
    };
    Some(GcCycle {
        number: number.parse().ok()?,
        at_s: at.parse().ok()?,
        sweep_term: phase(sweep)?,
        mark_term: phase(mark)?,
    })
}

/// Every gctrace line of a stderr text, in order.
pub fn parse(text: &str) -> Vec<GcCycle> {
    text.lines().filter_map(parse_line).collect()
}

fn phase(text: &str) -> Option<Phase> {
    let ms: f64 = text.parse().ok()?;
    let decimals = text.split_once('.').map_or(0, |(_, d)| d.len());
    // fmtNSAsMS prints "0" for anything below 1 µs: then the interval is
    // [0, 0.001) ms, like a value printed with three decimals.
    let decimals = if text == "0" { 3 } else { decimals };
    Some(Phase {
        ms,
        ulp_ms: 10f64.powi(-(decimals as i32)),
    })
}

/// Which gctrace cycle the first of the agent's sweep terminations belongs
/// to, found from timing alone, and how well the rest then line up.
#[derive(Clone, Debug, PartialEq)]
pub struct Alignment {
    /// Index into the cycles of the one paired with the first sweep start.
    pub first: usize,
    /// Median over k of (`sweep_starts[k]` − `cycles[first + k].at_s`), in
    /// seconds: the runtime's start on CLOCK_MONOTONIC, plus the probe's
    /// latency.
    pub offset_s: f64,
    /// Indices k of the pairs whose offset is more than `slack_s` from the
    /// median. For a correct pairing these are only the cycles whose begin
    /// probe ran late (the thread was preempted between the runtime's
    /// timestamp and the call); a cycle missing or extra on either side
    /// shifts every later pair by a whole GC interval instead.
    pub off: Vec<usize>,
}

/// Pairs `sweep_starts_ns` (CLOCK_MONOTONIC ns of the agent's sweep
/// termination events, in order) with consecutive `cycles`, choosing the
/// first cycle that leaves the fewest pairs more than `slack_s` from the
/// median offset; the last start may be left without a cycle. `None` if
/// there are more starts than cycles + 1, or no start.
pub fn align(sweep_starts_ns: &[u64], cycles: &[GcCycle], slack_s: f64) -> Option<Alignment> {
    // The last start may have no line: the program exited while its cycle
    // ran (gctrace prints at the end of a cycle).
    if sweep_starts_ns.is_empty() || sweep_starts_ns.len() > cycles.len() + 1 {
        return None;
    }
    let mut best: Option<(Alignment, f64)> = None;
    for first in 0..=(cycles.len() + 1 - sweep_starts_ns.len()) {
        let offsets: Vec<f64> = sweep_starts_ns
            .iter()
            .zip(&cycles[first..])
            .map(|(&s, c)| s as f64 / 1e9 - c.at_s)
            .collect();
        let mut sorted = offsets.clone();
        sorted.sort_by(f64::total_cmp);
        let offset_s = sorted[sorted.len() / 2];
        let off: Vec<usize> = offsets
            .iter()
            .enumerate()
            .filter(|(_, d)| (*d - offset_s).abs() > slack_s)
            .map(|(k, _)| k)
            .collect();
        let spread: f64 = offsets.iter().map(|d| (d - offset_s).abs()).sum();
        if best
            .as_ref()
            .is_none_or(|(b, b_spread)| (off.len(), spread) < (b.off.len(), *b_spread))
        {
            best = Some((
                Alignment {
                    first,
                    offset_s,
                    off,
                },
                spread,
            ));
        }
    }
    best.map(|(a, _)| a)
}

/// A sum of printed phase values and the bound of its truncation error.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PhaseSum {
    /// Sum of the printed values, ms (lower bound of the true sum).
    pub printed_ms: f64,
    /// Sum of the truncation widths, ms: the true sum is below `printed_ms + ulp_ms`.
    pub ulp_ms: f64,
}

impl PhaseSum {
    /// Adds one phase.
    pub fn add(&mut self, p: Phase) {
        self.printed_ms += p.ms;
        self.ulp_ms += p.ulp_ms;
    }

    /// Whether `measured_ms` lies within `tolerance` (a fraction) of some
    /// value the true sum can have: in
    /// [(1 − tol) · printed, (1 + tol) · (printed + ulp)].
    pub fn agrees(&self, measured_ms: f64, tolerance: f64) -> bool {
        measured_ms >= (1.0 - tolerance) * self.printed_ms
            && measured_ms <= (1.0 + tolerance) * (self.printed_ms + self.ulp_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_of_each_version() {
        // Go 1.19 and 1.23 lines, as printed by the workload.
        let c = parse_line(
            "gc 121 @1.992s 0%: 0.037+0.56+0.078 ms clock, 0.074+0/0.30/0.089+0.15 ms cpu, \
             33->33->16 MB, 34 MB goal, 0 MB stacks, 0 MB globals, 2 P",
        )
        .unwrap();
        assert_eq!(c.number, 121);
        assert_eq!(c.at_s, 1.992);
        assert_eq!(c.sweep_term.ms, 0.037);
        assert!((c.sweep_term.ulp_ms - 0.001).abs() < 1e-12);
        assert_eq!(c.mark_term.ms, 0.078);
        let c = parse_line("gc 3 @0.050s 4%: 12+1.5+0.15 ms clock, 24+0.1/1/0+0.3 ms cpu, 4->4->0 MB, 4 MB goal, 2 P").unwrap();
        assert_eq!(
            c.sweep_term,
            Phase {
                ms: 12.0,
                ulp_ms: 1.0
            }
        );
        assert!((c.mark_term.ulp_ms - 0.01).abs() < 1e-12);
        let c = parse_line(
            "gc 4 @0.1s 1%: 0+1+0 ms clock, 0+0/0/0+0 ms cpu, 4->4->0 MB, 4 MB goal, 2 P",
        )
        .unwrap();
        assert_eq!(
            c.sweep_term,
            Phase {
                ms: 0.0,
                ulp_ms: 0.001
            }
        );
    }

    #[test]
    fn ignores_other_lines() {
        assert_eq!(parse_line("ready pid=12"), None);
        assert_eq!(parse_line("gc 1 @0.1s 1%: 0.1+0.2 ms clock"), None);
        assert_eq!(parse_line("scvg: 0 MB released"), None);
        let text = "ready pid=1\ngc 1 @0.010s 1%: 0.010+0.2+0.020 ms clock, x\nrounds=3\n";
        assert_eq!(parse(text).len(), 1);
    }

    fn cycle(number: u64, at_s: f64) -> GcCycle {
        let p = Phase {
            ms: 0.05,
            ulp_ms: 0.001,
        };
        GcCycle {
            number,
            at_s,
            sweep_term: p,
            mark_term: p,
        }
    }

    #[test]
    fn aligns_by_timing_and_exposes_a_missing_cycle() {
        // The runtime started at monotonic 100 s; cycles 17-29 ms apart.
        let cycles: Vec<GcCycle> = (0..20)
            .map(|i| {
                cycle(
                    i + 1,
                    0.010 + 0.017 * i as f64 + 0.003 * ((i * i) % 5) as f64,
                )
            })
            .collect();
        let starts: Vec<u64> = (5..15)
            .map(|i| ((100.0 + cycles[i].at_s) * 1e9) as u64 + 400_000)
            .collect();
        let a = align(&starts, &cycles, 0.002).unwrap();
        assert_eq!(a.first, 5);
        assert!(a.off.is_empty(), "{a:?}");
        // One begin probe 5 ms late: still the same pairing, one pair off.
        let mut late = starts.clone();
        late[3] += 5_000_000;
        let a = align(&late, &cycles, 0.002).unwrap();
        assert_eq!((a.first, a.off.clone()), (5, vec![3]));
        // Drop one event in the middle: every later pair is off.
        let mut gap = starts.clone();
        gap.remove(4);
        let a = align(&gap, &cycles, 0.002).unwrap();
        assert!(a.off.len() >= 4, "{a:?}");
        assert_eq!(align(&[], &cycles, 0.002), None);
        // The program exited during the last cycle: its start has no line.
        let mut cut = starts.clone();
        cut.push(((100.0 + 0.5) * 1e9) as u64);
        let short = &cycles[..15];
        let a = align(&cut, short, 0.002).unwrap();
        assert_eq!(a.first, 5);
    }

    #[test]
    fn sums_carry_their_truncation_bound() {
        let mut s = PhaseSum::default();
        s.add(Phase {
            ms: 0.031,
            ulp_ms: 0.001,
        });
        s.add(Phase {
            ms: 0.15,
            ulp_ms: 0.01,
        });
        assert!((s.printed_ms - 0.181).abs() < 1e-12);
        assert!((s.ulp_ms - 0.011).abs() < 1e-12);
        // Within 10% of [0.181, 0.192]:
        assert!(s.agrees(0.1629 + 1e-6, 0.10));
        assert!(s.agrees(0.2112 - 1e-6, 0.10));
        assert!(!s.agrees(0.16, 0.10));
        assert!(!s.agrees(0.22, 0.10));
    }
}
