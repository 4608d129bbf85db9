//! A writer for the Prometheus text exposition format, version 0.0.4.
//!
//! Why not the `prometheus` crate's `TextEncoder`: it takes protobuf-shaped
//! `MetricFamily` values, so every bucket line costs a `Bucket` struct, an
//! escaped copy of every label value and a formatted `le` string. For a busy
//! node (100 JVMs, a 3.8 MB page) that was 16 ms of CPU per render, which the
//! agent pays once per snapshot. The format is four line shapes (`# HELP`,
//! `# TYPE`, a sample, a histogram's bucket/sum/count lines), so this writer
//! escapes each series' labels once, precomputes the `le` values once, and
//! appends to one `String`. Its output is what the crate printed (same
//! escapes, `le` values and number spelling); the tests of
//! [`super::metrics`] parse it back, and the dashboards test has a real
//! Prometheus scrape it.

use std::fmt::Write as _;
use std::sync::LazyLock;

use super::buckets::{EXPORTED_EDGES_NS, cumulative_counts};
use super::protobuf::{self, MetricFamily, ProtoType};
use crate::collect::Hist;

/// A metric family's type, as written on its `# TYPE` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    /// A value that only goes up.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Cumulative buckets plus `_sum` and `_count`.
    Histogram,
}

impl MetricType {
    fn name(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// The label set of one series, escaped once and written as is on each of
/// its lines: `pid="42",comm="java"`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Labels(String);

impl Labels {
    /// No labels.
    pub fn new() -> Labels {
        Labels(String::new())
    }

    /// Adds `name="value"`. `name` must be a valid label name (they are all
    /// constants here); `value` may be anything and is escaped.
    pub fn with(mut self, name: &str, value: &str) -> Labels {
        self.push(name, value);
        self
    }

    /// Adds `name="value"` in place (see [`Labels::with`]).
    pub fn push(&mut self, name: &str, value: &str) {
        if !self.0.is_empty() {
            self.0.push(',');
        }
        self.0.push_str(name);
        self.0.push_str("=\"");
        escape_into(&mut self.0, value, true);
        self.0.push('"');
    }

    /// The label pairs, unescaped again, for the protobuf page. Decoding
    /// the escaped text costs the protobuf render a little, rather than
    /// every text render a second copy of each label.
    pub fn pairs(&self) -> Vec<protobuf::LabelPair> {
        let mut out = Vec::new();
        let mut rest = self.0.as_str();
        while let Some((name, after)) = rest.split_once("=\"") {
            let mut value = String::new();
            let mut chars = after.char_indices();
            let mut end = after.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c)) => value.push(c),
                        None => {}
                    },
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            out.push(protobuf::LabelPair {
                name: name.to_owned(),
                value,
            });
            rest = after[end..].strip_prefix(',').unwrap_or("");
        }
        out
    }
}

/// A page being written. Families must be written whole, one after another:
/// [`TextWriter::family`], then that family's series.
#[derive(Debug, Default)]
pub struct TextWriter {
    out: String,
    family: &'static str,
    /// The same families as protobuf messages, when asked for with
    /// [`TextWriter::with_protobuf`].
    proto: Option<Vec<MetricFamily>>,
}

impl TextWriter {
    /// An empty page written into `buffer` (emptied; its memory is
    /// reused), with room for `capacity` bytes.
    pub fn with_buffer(mut buffer: String, capacity: usize) -> TextWriter {
        buffer.clear();
        buffer.reserve(capacity);
        TextWriter {
            out: buffer,
            family: "",
            proto: None,
        }
    }

    /// Also builds the page in the protobuf format (with native
    /// histograms), returned by [`TextWriter::finish_both`]. Built in the
    /// same pass so that both pages say exactly the same thing.
    pub fn with_protobuf(mut self) -> TextWriter {
        self.proto = Some(Vec::new());
        self
    }

    /// Starts a family: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &'static str, help: &str, kind: MetricType) {
        self.family = name;
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        escape_into(&mut self.out, help, false);
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(kind.name());
        self.out.push('\n');
        if let Some(proto) = &mut self.proto {
            proto.push(MetricFamily {
                name: name.to_owned(),
                help: help.to_owned(),
                r#type: match kind {
                    MetricType::Counter => ProtoType::Counter,
                    MetricType::Gauge => ProtoType::Gauge,
                    MetricType::Histogram => ProtoType::Histogram,
                } as i32,
                metric: Vec::new(),
            });
        }
    }

    /// One sample of the current (gauge or counter) family.
    pub fn sample(&mut self, labels: &Labels, value: f64) {
        self.line(self.family, "", labels, None, |out| push_f64(out, value));
        if let Some(family) = self.proto.as_mut().and_then(|p| p.last_mut()) {
            let mut metric = protobuf::Metric {
                label: labels.pairs(),
                ..protobuf::Metric::default()
            };
            if family.r#type == ProtoType::Counter as i32 {
                metric.counter = Some(protobuf::Counter { value });
            } else {
                metric.gauge = Some(protobuf::Gauge { value });
            }
            family.metric.push(metric);
        }
    }

    /// One histogram series of the current family: a bucket line per
    /// [`EXPORTED_EDGES_NS`] edge, `+Inf`, `_sum` (seconds) and `_count`.
    pub fn histogram(&mut self, labels: &Labels, hist: &Hist) {
        let name = self.family;
        for (le, count) in LE_VALUES.iter().zip(cumulative_counts(hist)) {
            self.line(name, "_bucket", labels, Some(le), |out| {
                push_u64(out, count)
            });
        }
        self.line(name, "_bucket", labels, Some("+Inf"), |out| {
            push_u64(out, hist.count)
        });
        self.line(name, "_sum", labels, None, |out| {
            push_f64(out, ns_to_seconds(hist.sum_ns))
        });
        self.line(name, "_count", labels, None, |out| {
            push_u64(out, hist.count)
        });
        if let Some(family) = self.proto.as_mut().and_then(|p| p.last_mut()) {
            family.metric.push(protobuf::Metric {
                label: labels.pairs(),
                histogram: Some(protobuf::histogram(hist)),
                ..protobuf::Metric::default()
            });
        }
    }

    /// The page.
    pub fn finish(self) -> String {
        self.out
    }

    /// The text page and the protobuf page (length-delimited
    /// `MetricFamily` messages; empty unless [`TextWriter::with_protobuf`]).
    pub fn finish_both(self) -> (String, Vec<u8>) {
        self.finish_both_into(Vec::new())
    }

    /// [`TextWriter::finish_both`], the protobuf page written into `bytes`
    /// (emptied first; its memory is reused).
    pub fn finish_both_into(self, mut bytes: Vec<u8>) -> (String, Vec<u8>) {
        bytes.clear();
        if let Some(families) = &self.proto {
            protobuf::encode_delimited(families, &mut bytes);
        }
        (self.out, bytes)
    }

    fn line(
        &mut self,
        name: &str,
        suffix: &str,
        labels: &Labels,
        le: Option<&str>,
        value: impl FnOnce(&mut String),
    ) {
        let out = &mut self.out;
        out.push_str(name);
        out.push_str(suffix);
        if !labels.0.is_empty() || le.is_some() {
            out.push('{');
            out.push_str(&labels.0);
            if let Some(le) = le {
                if !labels.0.is_empty() {
                    out.push(',');
                }
                out.push_str("le=\"");
                out.push_str(le);
                out.push('"');
            }
            out.push('}');
        }
        out.push(' ');
        value(out);
        out.push('\n');
    }
}

/// The `le` label value of each exported edge, formatted once.
static LE_VALUES: LazyLock<Vec<String>> = LazyLock::new(|| {
    EXPORTED_EDGES_NS
        .iter()
        .map(|&edge| ns_to_seconds(edge).to_string())
        .collect()
});

/// Nanoseconds to seconds. One correctly rounded division, so an edge such
/// as 8192 ns prints as exactly `0.000008192` (Rust prints the shortest
/// decimal that reads back as the same f64).
pub fn ns_to_seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// A count. Printed as an integer, which is what the crate's `f64` printing
/// gave for every count below 2^53, and exact above it.
fn push_u64(out: &mut String, n: u64) {
    let _ = write!(out, "{n}");
}

/// A float the way Prometheus reads them: Rust's shortest round-trip decimal
/// for finite values, `+Inf`/`-Inf`/`NaN` otherwise (Rust would print `inf`).
fn push_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

/// Appends `v` with the format's escapes: `\\` and newline always, `"` in
/// label values only (HELP text keeps its quotes).
fn escape_into(out: &mut String, v: &str, quotes: bool) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quotes => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_family_of_each_shape_reads_exactly() {
        let mut w = TextWriter::default();
        w.family("g", "a \"help\" with \\ and\nnewline", MetricType::Gauge);
        w.sample(&Labels::new(), 1.5);
        w.sample(
            &Labels::new().with("a", "x\"y\\z\nw").with("b", ""),
            f64::INFINITY,
        );
        w.family("c", "counts", MetricType::Counter);
        w.sample(&Labels::new().with("reason", "r"), 3.0);
        let page = w.finish();
        assert_eq!(
            page,
            "# HELP g a \"help\" with \\\\ and\\nnewline\n# TYPE g gauge\ng 1.5\n\
             g{a=\"x\\\"y\\\\z\\nw\",b=\"\"} +Inf\n\
             # HELP c counts\n# TYPE c counter\nc{reason=\"r\"} 3\n"
        );
    }

    #[test]
    fn label_pairs_unescape_what_push_escaped() {
        let labels = Labels::new()
            .with("a", "x\"y\\z\nw,b=\"")
            .with("b", "")
            .with("c", "ünï");
        let pairs: Vec<(String, String)> = labels
            .pairs()
            .into_iter()
            .map(|p| (p.name, p.value))
            .collect();
        let want = [("a", "x\"y\\z\nw,b=\""), ("b", ""), ("c", "ünï")];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        assert_eq!(pairs, want);
        assert!(Labels::new().pairs().is_empty());
    }

    #[test]
    fn protobuf_page_has_the_same_families_and_series() {
        use prost::Message;
        let mut w = TextWriter::default().with_protobuf();
        w.family("g", "gauges", MetricType::Gauge);
        w.sample(&Labels::new().with("a", "1"), 2.5);
        w.family("c", "counts", MetricType::Counter);
        w.sample(&Labels::new(), 3.0);
        w.family("h", "hist", MetricType::Histogram);
        w.histogram(&Labels::new().with("pid", "7"), &Hist::of(&[10_000]));
        let (text, bytes) = w.finish_both();
        assert!(text.contains("h_count{pid=\"7\"} 1\n"));
        let mut buf = bytes.as_slice();
        let mut families = Vec::new();
        while !buf.is_empty() {
            families.push(MetricFamily::decode_length_delimited(&mut buf).unwrap());
        }
        assert_eq!(families.len(), 3);
        assert_eq!(families[0].name, "g");
        assert_eq!(families[0].r#type, ProtoType::Gauge as i32);
        assert_eq!(
            families[0].metric[0].gauge,
            Some(protobuf::Gauge { value: 2.5 })
        );
        assert_eq!(families[0].metric[0].label[0].value, "1");
        assert_eq!(
            families[1].metric[0].counter,
            Some(protobuf::Counter { value: 3.0 })
        );
        let h = families[2].metric[0].histogram.as_ref().unwrap();
        assert_eq!((h.sample_count, h.schema), (1, 2));
        assert_eq!(h.sample_sum, 0.00001);
        // A writer not asked for protobuf builds none.
        let mut w = TextWriter::default();
        w.family("g", "gauges", MetricType::Gauge);
        assert!(w.finish_both().1.is_empty());
    }

    #[test]
    fn histogram_lines_are_cumulative_with_inf_sum_and_count() {
        let mut w = TextWriter::default();
        w.family("h", "x", MetricType::Histogram);
        w.histogram(
            &Labels::new().with("pid", "1"),
            &Hist::of(&[10_000, 20_000]),
        );
        let page = w.finish();
        let lines: Vec<&str> = page.lines().collect();
        assert_eq!(lines.len(), 2 + EXPORTED_EDGES_NS.len() + 3);
        assert_eq!(lines[2], "h_bucket{pid=\"1\",le=\"0.000008192\"} 0");
        assert_eq!(lines[3], "h_bucket{pid=\"1\",le=\"0.000016384\"} 1");
        assert_eq!(lines[lines.len() - 3], "h_bucket{pid=\"1\",le=\"+Inf\"} 2");
        assert_eq!(lines[lines.len() - 2], "h_sum{pid=\"1\"} 0.00003");
        assert_eq!(lines[lines.len() - 1], "h_count{pid=\"1\"} 2");
        // A histogram without labels still labels its buckets.
        let mut w = TextWriter::default();
        w.family("h", "x", MetricType::Histogram);
        w.histogram(&Labels::new(), &Hist::of(&[]));
        assert!(
            w.finish()
                .contains("\nh_bucket{le=\"+Inf\"} 0\nh_sum 0\nh_count 0\n")
        );
    }
}
