//! Collection: BPF maps in, decoded [`Snapshot`]s and pause events out.

pub mod snapshot;

pub use snapshot::{Hist, Series, Snapshot, TargetInfo};
