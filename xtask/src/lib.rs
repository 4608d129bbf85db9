//! Library side of `cargo xtask`: what the build, demo, end-to-end tests and
//! benchmarks share.
//!
//! - [`groundtruth`]: parsers for each runtime's own pause log, the numbers
//!   the agent is checked against.
//! - [`workloads`]: the bundled programs that make pauses on purpose.
//! - [`scripted`]: the bundled Python and Node.js scripts, started and gated.
//! - [`runtimes`]: runtime builds downloaded into the project-local cache.
//! - [`util`]: process, path and package helpers.

pub mod goworkload;
pub mod groundtruth;
pub mod runtimes;
pub mod scripted;
pub mod util;
pub mod workloads;
