//! Collection: BPF maps in, decoded [`Snapshot`]s and pause events out.

pub mod causes;
pub mod collector;
pub mod events;
pub mod snapshot;

pub use causes::CauseResolver;
pub use collector::Collector;
pub use snapshot::{Hist, Series, Snapshot, TargetInfo};
