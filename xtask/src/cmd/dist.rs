//! `cargo xtask dist`: the release artifact, a statically linked agent for
//! `x86_64-unknown-linux-musl` in `target/dist/`, with its sha256.
//!
//! Static so that one file runs on any x86_64 Linux (any libc, or none: the
//! `FROM scratch` image of `cargo xtask image`). The agent has no C
//! dependencies, so Rust's self-contained musl target (its own `crt*.o` and
//! `libc.a`) is all the link needs; `cc` drives the link as for the glibc
//! build, and no `musl-tools` package is needed.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use object::{Object, ObjectSection, elf, read::elf::ProgramHeader};

use super::build;
use crate::util::{cargo, output, run, step, workspace_root};

/// The target triple of the static agent.
pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";

/// Options of `cargo xtask dist`.
#[derive(clap::Args)]
pub struct DistArgs {
    /// Also build the glibc release agent and measure both on this machine
    /// (start-up, user-space cost per event, RSS; as root, about 2 minutes);
    /// writes target/dist/compare.md.
    #[arg(long)]
    pub compare: bool,
}

/// Directory of the release artifacts.
pub fn dist_dir() -> PathBuf {
    workspace_root().join("target/dist")
}

/// Runs `cargo xtask dist`.
pub fn run_dist(args: DistArgs) -> Result<()> {
    let musl = build_static()?;
    if args.compare {
        let glibc = build::build_all()?;
        super::dist_compare::compare(&glibc, &musl)?;
    }
    Ok(())
}

/// Builds the BPF object and the static agent, copies it to
/// `target/dist/agent` with `target/dist/agent.sha256`, checks that it is
/// static and runs, and returns its path.
pub fn build_static() -> Result<PathBuf> {
    let object = build::build_ebpf()?;
    ensure_rust_target(MUSL_TARGET)?;
    step(format!(
        "building the static agent (release, {MUSL_TARGET}; a few minutes the first time)"
    ));
    run(cargo()
        .args([
            "build",
            "--release",
            "--package",
            "pausewatch-agent",
            "--bin",
            "agent",
            "--target",
            MUSL_TARGET,
        ])
        .env("PAUSEWATCH_EBPF_OBJECT", &object))?;
    let built = workspace_root()
        .join("target")
        .join(MUSL_TARGET)
        .join("release/agent");
    check_static(&built)?;

    let dir = dist_dir();
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let agent = dir.join("agent");
    // Copy through a temporary name: a running agent keeps the old file.
    let tmp = dir.join(".agent.tmp");
    fs::copy(&built, &tmp)
        .with_context(|| format!("copying {} to {}", built.display(), tmp.display()))?;
    fs::rename(&tmp, &agent).with_context(|| format!("replacing {}", agent.display()))?;

    let version = output(Command::new(&agent).arg("--version"))
        .with_context(|| format!("the static agent {} does not run", agent.display()))?;
    let version = version.trim();
    if !version.contains(env!("CARGO_PKG_VERSION")) {
        bail!(
            "`{} --version` printed {version:?}, without the version {}",
            agent.display(),
            env!("CARGO_PKG_VERSION")
        );
    }
    // `sha256sum -c agent.sha256` in target/dist/ checks it (coreutils).
    let sum = output(Command::new("sha256sum").arg("agent").current_dir(&dir))
        .context("computing the sha256 of the agent (sha256sum, from coreutils)")?;
    let sum_file = dir.join("agent.sha256");
    fs::write(&sum_file, &sum).with_context(|| format!("writing {}", sum_file.display()))?;
    let size_mb = fs::metadata(&agent)?.len() as f64 / 1e6;
    step(format!(
        "{version}: static agent at {} ({size_mb:.1} MB), sha256 {} in {}",
        agent.display(),
        sum.split_whitespace().next().unwrap_or_default(),
        sum_file.display()
    ));
    Ok(agent)
}

/// Adds `target` to the toolchain cargo builds with, when it is missing
/// (rustup's own download; the toolchain is the one this checkout selects).
pub fn ensure_rust_target(target: &str) -> Result<()> {
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))
        .context("rustup is needed to add the Rust target for the static agent")?;
    if installed.lines().any(|l| l.trim() == target) {
        return Ok(());
    }
    step(format!("adding the Rust target {target} (rustup, once)"));
    run(Command::new("rustup")
        .args(["target", "add", target])
        .current_dir(workspace_root()))
}

/// Fails unless `path` is a statically linked ELF executable: no program
/// interpreter and no `DT_NEEDED` library (a static PIE keeps a dynamic
/// section for its own relocations, but needs nothing).
pub fn check_static(path: &Path) -> Result<()> {
    let data = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let file = object::read::elf::ElfFile64::<object::Endianness>::parse(&*data)
        .with_context(|| format!("{} is not a 64-bit ELF file", path.display()))?;
    let endian = file.endian();
    let interp = file
        .elf_program_headers()
        .iter()
        .any(|ph| ph.p_type(endian) == elf::PT_INTERP);
    if interp {
        bail!(
            "{} has a program interpreter: it is dynamically linked",
            path.display()
        );
    }
    if let Some(dynamic) = file.section_by_name(".dynamic") {
        let entries = dynamic.data().context("reading .dynamic")?;
        // Elf64_Dyn: d_tag, d_val, 8 bytes each, little-endian on x86_64.
        for entry in entries.chunks_exact(16) {
            let tag = i64::from_le_bytes(entry[..8].try_into()?);
            if tag == i64::from(elf::DT_NEEDED) {
                bail!(
                    "{} needs shared libraries (DT_NEEDED): it is not static",
                    path.display()
                );
            }
            if tag == i64::from(elf::DT_NULL) {
                break;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamically_linked_binary_is_refused() {
        // Any Debian system's coreutils are dynamically linked.
        let err = check_static(Path::new("/bin/ls")).unwrap_err();
        assert!(format!("{err:#}").contains("interpreter"), "{err:#}");
    }
}
