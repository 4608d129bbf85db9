//! Parsers for the runtimes' own accounts of their pauses.

pub mod hotspot;
