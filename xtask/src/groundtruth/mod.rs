//! Parsers for the runtimes' own accounts of their pauses.

pub mod cpython;
pub mod go;
pub mod gostopping;
pub mod heap;
pub mod hotspot;
pub mod ruby;
pub mod v8;
