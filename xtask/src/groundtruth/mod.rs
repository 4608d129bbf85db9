//! Parsers for the runtimes' own accounts of their pauses.

pub mod go;
pub mod hotspot;
