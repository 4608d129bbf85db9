//! pausewatch: times runtime stop-the-world pauses with eBPF and exports them.
//!
//! The data path, in order (rustdoc lists the modules alphabetically
//! below; this is the order data flows through them):
//!
//! | stage | module | its job |
//! |---|---|---|
//! | 1 | [`targets`] | which processes: follows execs and exits, selects by `--pid`/`--comm`/`--all` |
//! | 2 | [`discovery`] | which runtime a process runs, asking each of [`runtimes`] |
//! | 3 | [`runtimes`] | one folder per runtime: its probes, causes, pause semantics, rules |
//! | 4 | [`probes`] | where to attach: USDT notes, symbols, instruction boundaries |
//! | 5 | [`bpf`] | load the embedded programs and attach them |
//! | 6 | [`collect`] | read the BPF maps into a [`collect::Snapshot`], causes resolved |
//! | 7 | [`rules`] | judge each process's window into a [`rules::Report`] |
//! | 8 | [`export`] | the report as Prometheus text over HTTP ([`summary`] and [`hist_text`] on stderr) |
//!
//! The binary's commands sit at the edge: [`cli`] (arguments), [`run`]
//! (`agent run`, `agent probes`), [`check`] and [`preflight`] (what the
//! kernel and privileges allow), [`rules_cmd`] (`agent rules`) and
//! [`bench_attach`] (the attach benchmark's target).

pub mod bench_attach;
pub mod bpf;
pub mod check;
pub mod cli;
pub mod collect;
pub mod discovery;
pub mod export;
pub mod hist_text;
pub mod preflight;
pub mod probes;
pub mod rules;
pub mod rules_cmd;
pub mod run;
pub mod runtimes;
pub mod summary;
pub mod targets;
