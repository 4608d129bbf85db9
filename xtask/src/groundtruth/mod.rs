//! Parsers for the runtimes' own accounts of their pauses.

pub mod cpython;
pub mod hotspot;
pub mod v8;
