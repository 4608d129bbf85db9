//! The Prometheus protobuf exposition format (`io.prometheus.client`,
//! length-delimited `MetricFamily` messages), with native histograms.
//!
//! Served instead of the text page when the scraper asks for it (see
//! [`super::server`]): that is how Prometheus started with
//! `--enable-feature=native-histograms` scrapes, and the only format in
//! which it takes native histograms. Each histogram carries both its
//! classic buckets (the same [`EXPORTED_EDGES_NS`] boundaries as the text
//! page) and its native buckets, in one `Histogram` message, as the format
//! intends.
//!
//! # Why hand-written `prost` messages
//!
//! The messages below mirror `io/prometheus/client/metrics.proto` of
//! prometheus/client_model (Apache-2.0) field for field, with its field
//! numbers; `prost`'s derive does the encoding. Generating them with
//! `prost-build` would need `protoc` at build time, which neither this
//! machine nor a plain `cargo build` has, and the `prometheus` and
//! `prometheus-client` crates do not encode native histograms. Only the
//! fields the agent writes are declared: a protobuf decoder skips nothing
//! it needs from us, and fields we never set cost nothing.
//!
//! # Native bucket layout
//!
//! See `docs/design.md`, "Native histograms". In short: the BPF histogram's
//! four sub-buckets per power of two are linear (edges at 1, 1.25, 1.5,
//! 1.75 times 2^e nanoseconds) while schema 2's are geometric (2^(k/4)
//! seconds), and a nanosecond power of two is not a power of two in
//! seconds, so no native schema has the BPF edges as boundaries. Each BPF
//! sub-bucket is exported, whole, as one schema-2 bucket ([`NATIVE_SHIFT`]):
//! counts are never split or merged, and each bucket's boundaries lie
//! 4.4% to 10.75% above the BPF bucket's true ones.

use pausewatch_common::{BUCKETS, bucket_index};
use prost::Message;

use super::buckets::{EXPORTED_EDGES_NS, cumulative_counts};
use super::text::ns_to_seconds;
use crate::collect::Hist;

/// Content type of the length-delimited protobuf exposition format, as
/// Prometheus asks for it and expects it back.
pub const PROTOBUF_CONTENT_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// Native histogram schema: 2^2 = 4 buckets per power of two, the BPF
/// histogram's resolution.
pub const NATIVE_SCHEMA: i32 = 2;

/// Fine BPF bucket `i` (1 ≤ i < BUCKETS) is exported as schema-2 bucket
/// `i - NATIVE_SHIFT`, the bucket (2^((n-1)/4), 2^(n/4)] seconds.
///
/// Why 79: BPF sub-bucket `j` of octave `e` starts at 2^e·(1 + j/4) ns,
/// i.e. at log2 = e + log2(1 + j/4) - log2(1e9) seconds, with
/// log2(1e9) = 29.897. Mapping the four sub-buckets of an octave onto four
/// consecutive schema-2 buckets, the offset that keeps every native
/// boundary closest to its BPF edge puts the native lower boundary of
/// sub-bucket (e, j) at 2^((4e + j - 119)/4) s, above the BPF edge by a
/// factor 1.1075, 1.0537, 1.0441, 1.0644 for j = 0..3 (the next best offset
/// errs by up to 12.2% below). Bucket i = 1 + 4(e - 10) + j then has native
/// index 4e + j - 118 = i - 79.
pub const NATIVE_SHIFT: i32 = 4 * pausewatch_common::hist::MIN_EXP as i32 + 39;

/// The native zero bucket's threshold, in seconds: the lower boundary of
/// the native bucket of fine bucket 1, 2^((1 - NATIVE_SHIFT - 1)/4) s
/// ≈ 1.134 µs. Fine bucket 0 (below 1024 ns, which pauses never are in
/// practice) is the zero bucket: its count is `zero_count`, so it sits
/// below every other bucket, as in the BPF histogram.
pub fn zero_threshold_seconds() -> f64 {
    2f64.powf(f64::from(-NATIVE_SHIFT) / 4.0)
}

/// `io.prometheus.client.LabelPair`.
#[derive(Clone, PartialEq, Message)]
pub struct LabelPair {
    /// Label name (field 1).
    #[prost(string, tag = "1")]
    pub name: String,
    /// Label value (field 2).
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `io.prometheus.client.Gauge`.
#[derive(Clone, PartialEq, Message)]
pub struct Gauge {
    /// Field 1.
    #[prost(double, tag = "1")]
    pub value: f64,
}

/// `io.prometheus.client.Counter`.
#[derive(Clone, PartialEq, Message)]
pub struct Counter {
    /// Field 1.
    #[prost(double, tag = "1")]
    pub value: f64,
}

/// `io.prometheus.client.Bucket`: one classic bucket.
#[derive(Clone, PartialEq, Message)]
pub struct Bucket {
    /// Observations at or below `upper_bound` (field 1).
    #[prost(uint64, tag = "1")]
    pub cumulative_count: u64,
    /// In seconds, inclusive (field 2).
    #[prost(double, tag = "2")]
    pub upper_bound: f64,
}

/// `io.prometheus.client.BucketSpan`: `length` consecutive native buckets,
/// starting `offset` buckets after the previous span (or at index
/// `offset` for the first).
#[derive(Clone, PartialEq, Message)]
pub struct BucketSpan {
    /// Field 1.
    #[prost(sint32, tag = "1")]
    pub offset: i32,
    /// Field 2.
    #[prost(uint32, tag = "2")]
    pub length: u32,
}

/// `io.prometheus.client.Histogram`, classic and native parts together.
#[derive(Clone, PartialEq, Message)]
pub struct Histogram {
    /// Field 1 (shared by both parts).
    #[prost(uint64, tag = "1")]
    pub sample_count: u64,
    /// Seconds (field 2, shared).
    #[prost(double, tag = "2")]
    pub sample_sum: f64,
    /// Classic buckets, +Inf left out (optional in the format; it is
    /// `sample_count`) (field 3).
    #[prost(message, repeated, tag = "3")]
    pub bucket: Vec<Bucket>,
    /// Native schema (field 5).
    #[prost(sint32, tag = "5")]
    pub schema: i32,
    /// Field 6.
    #[prost(double, tag = "6")]
    pub zero_threshold: f64,
    /// Field 7.
    #[prost(uint64, tag = "7")]
    pub zero_count: u64,
    /// Field 12.
    #[prost(message, repeated, tag = "12")]
    pub positive_span: Vec<BucketSpan>,
    /// Each native bucket's count minus the previous one's (field 13).
    #[prost(sint64, repeated, tag = "13")]
    pub positive_delta: Vec<i64>,
}

/// `io.prometheus.client.Metric`: one series.
#[derive(Clone, PartialEq, Message)]
pub struct Metric {
    /// Field 1.
    #[prost(message, repeated, tag = "1")]
    pub label: Vec<LabelPair>,
    /// Field 2.
    #[prost(message, optional, tag = "2")]
    pub gauge: Option<Gauge>,
    /// Field 3.
    #[prost(message, optional, tag = "3")]
    pub counter: Option<Counter>,
    /// Field 7.
    #[prost(message, optional, tag = "7")]
    pub histogram: Option<Histogram>,
}

/// `io.prometheus.client.MetricType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum ProtoType {
    /// COUNTER = 0.
    Counter = 0,
    /// GAUGE = 1.
    Gauge = 1,
    /// HISTOGRAM = 4.
    Histogram = 4,
}

/// `io.prometheus.client.MetricFamily`.
#[derive(Clone, PartialEq, Message)]
pub struct MetricFamily {
    /// Field 1.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Field 2.
    #[prost(string, tag = "2")]
    pub help: String,
    /// A [`ProtoType`] (field 3).
    #[prost(enumeration = "ProtoType", tag = "3")]
    pub r#type: i32,
    /// Field 4.
    #[prost(message, repeated, tag = "4")]
    pub metric: Vec<Metric>,
}

/// Appends `families` as the delimited format: each message preceded by
/// its length as a varint.
pub fn encode_delimited(families: &[MetricFamily], out: &mut Vec<u8>) {
    for f in families {
        let len = f.encoded_len();
        out.reserve(len + prost::length_delimiter_len(len));
        // Cannot fail: a Vec grows as needed.
        let _ = f.encode_length_delimited(out);
    }
}

/// The histogram message of `hist`: classic cumulative buckets at
/// [`EXPORTED_EDGES_NS`] (exactly the text page's) and native schema-2
/// buckets, one per non-empty fine BPF bucket.
pub fn histogram(hist: &Hist) -> Histogram {
    let bucket = EXPORTED_EDGES_NS
        .iter()
        .zip(cumulative_counts(hist))
        .map(|(&edge, cumulative_count)| Bucket {
            cumulative_count,
            upper_bound: ns_to_seconds(edge),
        })
        .collect();
    let native = native_counts(hist);
    let (positive_span, positive_delta) = spans_and_deltas(&native[1..]);
    Histogram {
        sample_count: hist.count,
        sample_sum: ns_to_seconds(hist.sum_ns),
        bucket,
        schema: NATIVE_SCHEMA,
        zero_threshold: zero_threshold_seconds(),
        zero_count: native[0],
        positive_span,
        positive_delta,
    }
}

/// The fine bucket counts, made to add up to `hist.count`.
///
/// Count and buckets are separate per-CPU words that a reader can catch
/// mid-update (see [`cumulative_counts`]). Prometheus takes
/// `sample_count` as the histogram's count, which must stay the exact one
/// that `_count` also shows, and newer versions reject a native histogram
/// whose buckets hold more observations than its count. So an excess is
/// taken off the highest buckets (as the classic buckets' clamp does), and
/// a shortfall (an observation whose bucket increment is not visible yet)
/// goes to the bucket of the exact maximum, the most recent large value.
fn native_counts(hist: &Hist) -> Vec<u64> {
    let mut counts: Vec<u64> = (0..BUCKETS).map(|i| hist.buckets.get(i)).collect();
    let total = counts.iter().fold(0u64, |a, &n| a.saturating_add(n));
    if total > hist.count {
        let mut excess = total - hist.count;
        for c in counts.iter_mut().rev() {
            let cut = excess.min(*c);
            *c -= cut;
            excess -= cut;
            if excess == 0 {
                break;
            }
        }
    } else if total < hist.count {
        let i = bucket_index(hist.max_ns).min(BUCKETS - 1);
        if let Some(c) = counts.get_mut(i) {
            *c = c.saturating_add(hist.count - total);
        }
    }
    counts
}

/// Spans and deltas of fine buckets 1.. (`fine[k]` is fine bucket k + 1,
/// native index k + 1 - NATIVE_SHIFT). Runs of up to two empty buckets
/// stay inside a span, as client_golang does: a zero delta costs one byte,
/// a new span at least four.
fn spans_and_deltas(fine: &[u64]) -> (Vec<BucketSpan>, Vec<i64>) {
    let mut spans: Vec<BucketSpan> = Vec::new();
    let mut deltas = Vec::new();
    let mut previous = 0i64;
    // Native index just past the last bucket written.
    let mut next_index: Option<i32> = None;
    for (k, &n) in fine.iter().enumerate() {
        if n == 0 {
            continue;
        }
        let index = k as i32 + 1 - NATIVE_SHIFT;
        let count = i64::try_from(n).unwrap_or(i64::MAX);
        match (next_index, spans.last_mut()) {
            (Some(next), Some(span)) if index - next <= 2 => {
                for _ in next..index {
                    deltas.push(-previous);
                    previous = 0;
                }
                span.length += (index - next) as u32 + 1;
            }
            (Some(next), _) => spans.push(BucketSpan {
                offset: index - next,
                length: 1,
            }),
            (None, _) => spans.push(BucketSpan {
                offset: index,
                length: 1,
            }),
        }
        deltas.push(count.saturating_sub(previous));
        previous = count;
        next_index = Some(index + 1);
    }
    if spans.is_empty() {
        // A no-op span marks the message as a native histogram even to
        // parsers that do not look at the zero threshold.
        spans.push(BucketSpan {
            offset: 0,
            length: 0,
        });
    }
    (spans, deltas)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pausewatch_common::bucket_upper_bound_ns;

    /// Native index → (lower, upper] in seconds.
    fn native_bounds(n: i32) -> (f64, f64) {
        let f = |i: i32| 2f64.powf(f64::from(i) / 4.0);
        (f(n - 1), f(n))
    }

    /// Expands spans and deltas back to (native index, count).
    fn expand(h: &Histogram) -> Vec<(i32, u64)> {
        let mut out = Vec::new();
        let mut index = 0;
        let mut count = 0i64;
        let mut deltas = h.positive_delta.iter();
        for (s, span) in h.positive_span.iter().enumerate() {
            index += span.offset;
            if s == 0 {
                index = span.offset;
            }
            for _ in 0..span.length {
                count += deltas.next().unwrap();
                out.push((index, count as u64));
                index += 1;
            }
        }
        assert!(deltas.next().is_none());
        out
    }

    #[test]
    fn every_fine_bucket_is_one_native_bucket_slightly_above_it() {
        // The claim of the module docs, bucket by bucket: native bounds sit
        // between 1.0 and 1.1076 times the fine bucket's bounds.
        for i in 1..BUCKETS - 1 {
            let lo = bucket_upper_bound_ns(i - 1).unwrap() as f64 / 1e9;
            let hi = bucket_upper_bound_ns(i).unwrap() as f64 / 1e9;
            let (nlo, nhi) = native_bounds(i as i32 - NATIVE_SHIFT);
            for (native, fine) in [(nlo, lo), (nhi, hi)] {
                let r = native / fine;
                assert!((1.04..1.108).contains(&r), "bucket {i}: {native} vs {fine}");
            }
        }
        // Any other shift errs more (here: one below puts bounds under).
        let (nlo, _) = native_bounds(1 - NATIVE_SHIFT - 1);
        assert!(nlo < 1024e-9);
        assert!((zero_threshold_seconds() - native_bounds(1 - NATIVE_SHIFT).0).abs() < 1e-18);
    }

    #[test]
    fn native_counts_are_the_fine_counts_and_add_up() {
        let values = [
            500,
            1_500,
            10_000,
            10_100,
            12_000,
            40_000,
            41_000,
            3_000_000,
            2_000_000_000,
        ];
        let hist = Hist::of(&values);
        let h = histogram(&hist);
        assert_eq!(h.schema, 2);
        assert_eq!(h.sample_count, 9);
        assert_eq!(h.zero_count, 1);
        let expanded = expand(&h);
        let total: u64 = expanded.iter().map(|&(_, c)| c).sum::<u64>() + h.zero_count;
        assert_eq!(total, hist.count);
        for (i, n) in hist.buckets.iter().filter(|&(i, _)| i > 0) {
            let got = expanded
                .iter()
                .find(|&&(idx, _)| idx == i as i32 - NATIVE_SHIFT)
                .map_or(0, |&(_, c)| c);
            assert_eq!(got, n, "fine bucket {i}");
        }
        // Each value lands in the native bucket of its fine bucket, whose
        // bounds are within 11% above the value's true bucket.
        for v in values.iter().filter(|&&v| v >= 1024) {
            let n = bucket_index(*v) as i32 - NATIVE_SHIFT;
            let (lo, hi) = native_bounds(n);
            let s = *v as f64 / 1e9;
            assert!(lo / s < 1.108 && s / hi < 1.0, "{v} ns in ({lo}, {hi}]");
        }
        // Classic buckets are the text page's.
        assert_eq!(h.bucket.len(), EXPORTED_EDGES_NS.len());
        assert_eq!(
            h.bucket
                .iter()
                .map(|b| b.cumulative_count)
                .collect::<Vec<_>>(),
            cumulative_counts(&hist).to_vec()
        );
        assert_eq!(h.bucket[0].upper_bound, 0.000008192);
    }

    #[test]
    fn torn_reads_keep_count_exact() {
        let mut hist = Hist::of(&[10_000, 20_000, 5_000_000]);
        hist.count = 2; // a bucket increment seen before the count's
        let h = histogram(&hist);
        assert_eq!(expand(&h).iter().map(|&(_, c)| c).sum::<u64>(), 2);
        let mut hist = Hist::of(&[10_000, 20_000]);
        hist.count = 3;
        hist.max_ns = 20_000;
        let h = histogram(&hist);
        let e = expand(&h);
        assert_eq!(e.iter().map(|&(_, c)| c).sum::<u64>(), 3);
        assert_eq!(e.last().unwrap().1, 2, "{e:?}");
    }

    #[test]
    fn empty_histogram_is_still_native_and_gaps_are_spans() {
        let h = histogram(&Hist::default());
        assert_eq!(
            h.positive_span,
            vec![BucketSpan {
                offset: 0,
                length: 0
            }]
        );
        assert!(h.zero_threshold > 0.0);
        // Two buckets far apart: two spans; close: one span with zeros.
        let h = histogram(&Hist::of(&[10_000, 10_000_000]));
        assert_eq!(h.positive_span.len(), 2);
        let h = histogram(&Hist::of(&[10_000, 14_000]));
        assert_eq!(h.positive_span.len(), 1);
        assert_eq!(h.positive_span[0].length, 3);
        assert_eq!(h.positive_delta, vec![1, -1, 1]);
    }

    /// The pages of a busy node: 100 JVMs with 7 histogram series each
    /// (safepoints and VM operations of 2 causes, time to safepoint, gc
    /// pauses), values spread over 40 µs to 0.5 s. The protobuf page holds
    /// everything the text page does plus the native buckets, and is still
    /// several times smaller (no repeated label text per bucket line).
    #[test]
    fn protobuf_page_of_a_busy_node_is_smaller_than_the_text_page() {
        use crate::collect::{Series, Snapshot, TargetInfo};
        use pausewatch_common::Kind;
        let values: Vec<u64> = (0..400u64).map(|i| 40_000 + i * i * 3_000).collect();
        let mut snapshot = Snapshot::default();
        for pid in 1000..1100 {
            snapshot.targets.push(TargetInfo::java(pid).into());
            for (kind, cause) in [
                (Kind::Safepoint, "G1CollectForAllocation"),
                (Kind::Safepoint, "ThreadDump"),
                (Kind::VmOperation, "G1CollectForAllocation"),
                (Kind::VmOperation, "ThreadDump"),
                (Kind::TimeToSafepoint, "G1CollectForAllocation"),
                (Kind::TimeToSafepoint, "ThreadDump"),
                (Kind::GcPause, "minor"),
            ] {
                snapshot.series.push(
                    Series {
                        pid,
                        kind,
                        cause: cause.into(),
                        hist: Hist::of(&values),
                    }
                    .into(),
                );
            }
        }
        let report = snapshot.into();
        // Render times too, for the design notes (printed, not asserted:
        // the machine is shared).
        let t = std::time::Instant::now();
        let _ = crate::export::render(&report);
        let text_only = t.elapsed();
        let t = std::time::Instant::now();
        let (text, proto) = crate::export::render_both(&report);
        let both = t.elapsed();
        eprintln!(
            "100 JVMs, 700 histogram series: text {} KB, protobuf (classic + native) {} KB; \
             render text {text_only:?}, both {both:?}",
            text.len() / 1024,
            proto.len() / 1024
        );
        assert!(
            proto.len() * 3 < text.len(),
            "{} vs {}",
            proto.len(),
            text.len()
        );
    }

    #[test]
    fn delimited_encoding_reads_back() {
        let fam = MetricFamily {
            name: "x".into(),
            help: "h".into(),
            r#type: ProtoType::Histogram as i32,
            metric: vec![Metric {
                label: vec![LabelPair {
                    name: "pid".into(),
                    value: "1".into(),
                }],
                histogram: Some(histogram(&Hist::of(&[10_000]))),
                ..Metric::default()
            }],
        };
        let mut out = Vec::new();
        encode_delimited(&[fam.clone(), fam.clone()], &mut out);
        let mut buf = out.as_slice();
        for _ in 0..2 {
            let got = MetricFamily::decode_length_delimited(&mut buf).unwrap();
            assert_eq!(got, fam);
        }
        assert!(buf.is_empty());
    }
}
