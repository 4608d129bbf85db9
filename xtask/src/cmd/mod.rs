//! One module per `cargo xtask` subcommand.

pub mod build;
pub mod demo;
pub mod test;
