//! One module per `cargo xtask` subcommand.

pub mod bench;
pub mod build;
pub mod demo;
pub mod dist;
mod dist_compare;
pub mod fuzz;
pub mod image;
pub mod test;
