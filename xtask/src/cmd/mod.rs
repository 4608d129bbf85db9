//! One module per `cargo xtask` subcommand.

pub mod bench;
pub mod build;
pub mod demo;
pub mod fuzz;
pub mod test;
