//! Rules: what kind of workload each traced process is, and what to tune.
//!
//! Sits between [`collect`](crate::collect) and [`export`](crate::export)
//! on the data path: [`features`] turns a sliding window of snapshots into
//! numbers per process, [`file`](mod@file) reads the declarative rules (TOML with CEL
//! conditions; the defaults are `defaults.toml`, embedded), [`engine`]
//! evaluates them into findings with rendered advice, and [`profile`] turns
//! the findings' votes into one steady profile per process. The result, a
//! [`Verdict`] per process, is published beside the snapshot it judged, in
//! a [`Report`].

pub mod engine;
pub mod features;
pub mod file;
pub mod heap;
pub mod profile;
pub mod report;

pub use engine::{Engine, Evaluation, Finding, Outcome, Verdict, evaluate};
pub use features::{FEATURES, Features, History};
pub use file::{RuleSet, RulesError, Severity, defaults, load};
pub use report::Report;
