//! Export: [`Report`]s (snapshots and their verdicts) as Prometheus metrics
//! over HTTP.
//!
//! [`metrics`] turns one snapshot into the text exposition format, written
//! by [`text`] with the histogram boundaries of [`buckets`]; [`page`] does so once per snapshot, and [`server`] serves the
//! latest page on `GET /metrics`. A scrape only takes a reference to that
//! page: it never renders and never touches a BPF map, however often it
//! comes.
//!
//! Exported families (names and label keys are a contract that dashboards
//! and alert rules depend on):
//!
//! | family | type | labels |
//! | --- | --- | --- |
//! | `pausewatch_pause_seconds` | histogram | `pid`, `comm`, `runtime`, `kind`, `cause` |
//! | `pausewatch_pause_max_seconds` | gauge | as above |
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
pub mod server;
pub mod text;

pub use buckets::EXPORTED_EDGES_NS;
pub use metrics::{pause_kind_label, render};
pub use server::{ServerConfig, ServerLimits, serve, serve_with_limits};

use axum::body::Bytes;

use crate::rules::Report;

/// The `/metrics` page of `report`, ready to be shared by every scrape
/// until the next one.
pub fn page(report: &Report) -> Bytes {
    Bytes::from(render(report))
}
