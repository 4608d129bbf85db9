//! Export: [`Report`]s (snapshots and their verdicts) as Prometheus metrics
//! over HTTP.
//!
//! [`metrics`] turns one snapshot into the text exposition format, written
//! by [`text`] with the histogram boundaries of [`buckets`], and in the same
//! pass into the protobuf format with native histograms ([`protobuf`]);
//! [`Pager::publish`] does so once per snapshot, and [`server`] serves the
//! latest page on `GET /metrics`, in the format the scraper's `Accept` asks
//! for. A scrape only takes a reference to that page (after waiting for it,
//! if it comes while the page renders): it never renders and never touches
//! a BPF map, however often it comes.
//!
//! Exported families (names and label keys are a contract that dashboards
//! and alert rules depend on):
//!
//! | family | type | labels |
//! | --- | --- | --- |
//! | `pausewatch_pause_seconds` | histogram | `pid`, `comm`, `runtime`, `kind`, `cause` |
//! | `pausewatch_pause_max_seconds` | gauge | as above |
//! | `pausewatch_pause_thread_seconds_total` | counter | `pid`, `comm`, `runtime`, `kind`, `role`, `state` |
//! | `pausewatch_time_to_safepoint_seconds` | histogram | `pid`, `comm`, `runtime`, `cause` (HotSpot's time to safepoint; Go 1.23+'s stopping time) |
//! | `pausewatch_vm_operation_seconds` | histogram | `pid`, `comm`, `runtime`, `cause` |
//! | `pausewatch_gc_concurrent_cycle_seconds` | histogram | `pid`, `comm`, `runtime`, `cause` |
//! | `pausewatch_target_info` | gauge (1) | `pid`, `comm`, `runtime`, `runtime_version`, `exe`, `current_comm`, `container_id`, `pod_uid`, `namespace`, `pod` |
//! | `pausewatch_targets` | gauge | |
//! | `pausewatch_heap_used_after_gc_bytes`, `pausewatch_heap_max_bytes` | gauge | `pid`, `comm`, `runtime`, `pool` |
//! | `pausewatch_allocated_bytes_total`, `pausewatch_promoted_bytes_total` | counter | `pid`, `comm`, `runtime` |
//! | `pausewatch_live_after_full_gc_bytes` | gauge | `pid`, `comm`, `runtime` |
//! | `pausewatch_heap_collections_total`, `pausewatch_heap_after_gc_summed_bytes_total` | counter | `pid`, `comm`, `runtime`, `manager` |
//! | `pausewatch_lost_events_total` | counter | `reason` |
//! | `pausewatch_snapshot_timestamp_seconds` | gauge | |
//! | `pausewatch_render_duration_seconds` | gauge | |
//!
//! `comm` is the command name the process got at exec, which a program's
//! later renaming does not change (so series keep their labels and a
//! dashboard grouped by `comm` keeps Node 24 services apart, rather than
//! all under `MainThread`); `current_comm` on the info series carries the
//! renamed one where it differs.
//!
//! Histogram buckets are the [`EXPORTED_EDGES_NS`] subset of the fine BPF
//! bucket edges, so every exported cumulative count is exact.

pub mod buckets;
pub mod heap;
pub mod metrics;
pub mod protobuf;
pub mod recycle;
pub mod server;
pub mod text;

pub use buckets::EXPORTED_EDGES_NS;
pub use metrics::{pause_kind_label, render, render_both, render_into};
pub use server::{ServerConfig, ServerLimits, serve, serve_with_limits};

use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Bytes;
use tokio::sync::watch;

use crate::rules::Report;

/// The `/metrics` pages of one snapshot, shared by every scrape until the
/// next snapshot. Cloning copies references, not the pages.
#[derive(Clone, Debug, Default)]
pub struct Pages {
    /// The text format 0.0.4 (the default; classic histograms).
    pub text: Bytes,
    /// The length-delimited protobuf format: the same series, histograms
    /// with their classic buckets and native schema-2 buckets. `None` until
    /// a scraper has asked for it (see [`page`]).
    pub protobuf: Option<Bytes>,
    /// Set while the next pages are rendered in place of these, which are
    /// empty meanwhile: a scrape waits for the new ones (see
    /// [`Pager::publish`]).
    pub rendering: bool,
}

/// Set once a scrape has asked for the protobuf format; from then on every
/// snapshot is rendered in both formats.
static PROTOBUF_SCRAPED: AtomicBool = AtomicBool::new(false);

/// Records that a scraper asked for the protobuf format (the server calls
/// this), so that the next pages carry it.
pub fn note_protobuf_scrape() {
    PROTOBUF_SCRAPED.store(true, Ordering::Relaxed);
}

/// The `/metrics` pages of `report`, ready to be shared by every scrape
/// until the next one, so that a scrape never renders.
///
/// The protobuf page is rendered only once some scraper has asked for it:
/// it doubles the render time (at 100 JVMs, about 6 to 13 ms of text
/// render plus as much again), which deployments that scrape text only
/// should not pay. The scrape that first asks gets the text page (a valid
/// answer: Prometheus goes by the Content-Type), the ones after it the
/// protobuf page.
pub fn page(report: &Report) -> Pages {
    page_with(report, PROTOBUF_SCRAPED.load(Ordering::Relaxed))
}

/// Makes the pages of successive snapshots like [`page`], each written
/// into the buffers of earlier pages that no scrape holds any more
/// ([`recycle`]).
#[derive(Default)]
pub struct Pager {
    text: recycle::Pool,
    protobuf: recycle::Pool,
}

impl Pager {
    /// Renders the pages of `report` (see [`page`]) and makes them the ones
    /// that `pages` serves.
    ///
    /// The pages served until now are withdrawn first, so that the new ones
    /// are rendered into their buffers unless a scrape still holds them: a
    /// page is megabytes at scale, and a second set of buffers to render
    /// into while the first is served would double that. A scrape that
    /// comes during the render (milliseconds, once a collection) waits for
    /// the new pages.
    pub fn publish(&mut self, pages: &watch::Sender<Pages>, report: &Report) {
        drop(pages.send_replace(Pages {
            rendering: true,
            ..Pages::default()
        }));
        let next = self.page(report);
        pages.send_replace(next);
    }

    /// The pages of `report` (see [`page`]).
    pub fn page(&mut self, report: &Report) -> Pages {
        let protobuf = PROTOBUF_SCRAPED.load(Ordering::Relaxed);
        let text = String::from_utf8(self.text.buffer()).unwrap_or_default();
        let proto = if protobuf {
            self.protobuf.buffer()
        } else {
            Vec::new()
        };
        let (text, proto) = render_into(report, protobuf, text, proto);
        Pages {
            text: self.text.share(text.into_bytes()),
            protobuf: protobuf.then(|| self.protobuf.share(proto)),
            rendering: false,
        }
    }
}

/// [`page`], with the protobuf page or without it.
pub fn page_with(report: &Report, protobuf: bool) -> Pages {
    if protobuf {
        let (text, protobuf) = render_both(report);
        Pages {
            text: Bytes::from(text),
            protobuf: Some(Bytes::from(protobuf)),
            rendering: false,
        }
    } else {
        Pages {
            text: Bytes::from(render(report)),
            protobuf: None,
            rendering: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::collect::{Snapshot, TargetInfo};

    fn report(targets: u32) -> Report {
        Report::from(Snapshot {
            targets: (1..=targets)
                .map(|pid| Arc::new(TargetInfo::java(pid)))
                .collect(),
            ..Snapshot::default()
        })
    }

    #[test]
    fn a_page_is_rendered_into_the_one_it_replaces_unless_a_scrape_holds_that() {
        let mut pager = Pager::default();
        let (tx, rx) = watch::channel(pager.page(&report(3)));
        let first = rx.borrow().text.as_ptr();
        pager.publish(&tx, &report(3));
        let second = rx.borrow().clone();
        assert!(!second.rendering);
        assert!(String::from_utf8_lossy(&second.text).contains("\npausewatch_targets 3\n"));
        assert_eq!(second.text.as_ptr(), first, "one buffer, rendered in place");
        // A scrape still sending the page keeps it: the next one gets another
        // buffer, and the held page is unchanged.
        let held = second;
        pager.publish(&tx, &report(4));
        assert_ne!(rx.borrow().text.as_ptr(), held.text.as_ptr());
        assert!(String::from_utf8_lossy(&held.text).contains("\npausewatch_targets 3\n"));
        assert!(String::from_utf8_lossy(&rx.borrow().text).contains("\npausewatch_targets 4\n"));
    }
}
