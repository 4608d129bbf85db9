//! `cargo xtask fuzz`: runs every fuzz target of `fuzz/` for a bounded time.
//!
//! cargo-fuzz (libFuzzer, nightly, AddressSanitizer) is installed into
//! `.tools/cargo-fuzz` inside the checkout on first use, with a stamp
//! naming the version, the way bpf-linker is (see `build.rs`). The targets
//! are the files of `fuzz/src/bin/`, so adding one needs no change here.
//! Each target's corpus lives in `target/fuzz/corpus/<target>` and grows
//! from run to run; a crash leaves its input in
//! `target/fuzz/artifacts/<target>/` and fails the command, naming it.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use clap::Args;

use super::build;
use crate::util::{cargo, run, step, workspace_root};

/// cargo-fuzz release installed into `.tools/`.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Options of `cargo xtask fuzz`.
#[derive(Args)]
pub struct FuzzArgs {
    /// How long to run each target.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub seconds: u64,
    /// Only this target (a file name of fuzz/src/bin without `.rs`).
    pub target: Option<String>,
}

/// Runs `cargo xtask fuzz`.
pub fn run_fuzz(args: FuzzArgs) -> Result<()> {
    if args.seconds == 0 {
        bail!("--seconds must be at least 1");
    }
    let mut targets = targets()?;
    if let Some(only) = &args.target {
        if !targets.contains(only) {
            bail!(
                "no fuzz target {only:?}; the targets are: {}",
                targets.join(", ")
            );
        }
        targets.retain(|t| t == only);
    }
    let object = build::build_ebpf()?;
    let cargo_fuzz = ensure_cargo_fuzz()?;
    let root = workspace_root();
    let mut crashed = Vec::new();
    for target in &targets {
        let corpus = root.join("target/fuzz/corpus").join(target);
        let artifacts = root.join("target/fuzz/artifacts").join(target);
        fs::create_dir_all(&corpus)?;
        fs::create_dir_all(&artifacts)?;
        seed(target, &corpus)?;
        step(format!("fuzzing {target} for {} s", args.seconds));
        let status = Command::new(&cargo_fuzz)
            .current_dir(&root)
            .args(["fuzz", "run", "--fuzz-dir", "fuzz", "--target-dir"])
            .arg(root.join("target/fuzz/build"))
            .arg(target)
            .arg(&corpus)
            .arg("--")
            .arg(format!("-max_total_time={}", args.seconds))
            .arg("-timeout=10")
            .arg("-rss_limit_mb=2048")
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .env("RUSTUP_TOOLCHAIN", "nightly")
            .env("PAUSEWATCH_EBPF_OBJECT", &object)
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .status()
            .with_context(|| format!("starting {}", cargo_fuzz.display()))?;
        if !status.success() {
            crashed.push(format!("{target} (inputs in {})", artifacts.display()));
        }
    }
    if !crashed.is_empty() {
        bail!(
            "fuzzing found crashes in {}; reproduce with `cargo xtask fuzz <target>` and add each \
             input as a unit test of the parser",
            crashed.join(", ")
        );
    }
    step(format!(
        "fuzzed {} for {} s each",
        targets.join(", "),
        args.seconds
    ));
    Ok(())
}

/// The fuzz targets: the files of `fuzz/src/bin`, sorted.
pub fn targets() -> Result<Vec<String>> {
    let dir = workspace_root().join("fuzz/src/bin");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".rs"))
                .map(str::to_string)
        })
        .collect();
    names.sort();
    if names.is_empty() {
        bail!("no fuzz targets in {}", dir.display());
    }
    Ok(names)
}

/// Copies `fuzz/seeds/<target>/*` into an empty corpus, so the fuzzer
/// starts from valid inputs.
fn seed(target: &str, corpus: &Path) -> Result<()> {
    let seeds = workspace_root().join("fuzz/seeds").join(target);
    if !seeds.is_dir() || fs::read_dir(corpus)?.next().is_some() {
        return Ok(());
    }
    for e in fs::read_dir(&seeds)? {
        let e = e?;
        fs::copy(e.path(), corpus.join(e.file_name()))?;
    }
    Ok(())
}

/// Makes sure `.tools/cargo-fuzz/bin/cargo-fuzz` exists and runs, installing
/// it when missing or of another version. Returns its path.
fn ensure_cargo_fuzz() -> Result<PathBuf> {
    let root = workspace_root().join(".tools/cargo-fuzz");
    let bin = root.join("bin/cargo-fuzz");
    let stamp = root.join("installed");
    let stamp_text = format!("cargo-fuzz {CARGO_FUZZ_VERSION}\n");
    let works = || {
        Command::new(&bin)
            .args(["fuzz", "--version"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if fs::read_to_string(&stamp).is_ok_and(|s| s == stamp_text) && works() {
        return Ok(bin);
    }
    step(format!(
        "installing cargo-fuzz {CARGO_FUZZ_VERSION} into {} (first run only)",
        root.display()
    ));
    run(cargo()
        .args(["install", "--locked", "--force"])
        .arg(format!("cargo-fuzz@{CARGO_FUZZ_VERSION}"))
        .arg("--root")
        .arg(&root)
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO_TARGET_DIR"))?;
    if !works() {
        bail!(
            "cargo-fuzz was installed at {} but does not run",
            bin.display()
        );
    }
    fs::write(&stamp, stamp_text)?;
    Ok(bin)
}
