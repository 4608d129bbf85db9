//! `cargo xtask build-ebpf` and `cargo xtask build`.
//!
//! The BPF programs need a nightly toolchain (for `-Z build-std=core` on
//! `bpfel-unknown-none`) and bpf-linker. bpf-linker must link against an LLVM
//! at least as new as rustc's; Debian has none that new, but the nightly
//! toolchain ships its own `libLLVM.so`, so we build bpf-linker against that
//! one, into `.tools/` inside the checkout. Everything is derived from the
//! installed nightly (LLVM major, library file name), so a newer nightly
//! just triggers a rebuild of the linker.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::util::{cargo, output, run, step, workspace_root};

/// bpf-linker release known to work with the aya versions pinned here.
const BPF_LINKER_VERSION: &str = "0.13.0";
/// The BPF target triple.
const BPF_TARGET: &str = "bpfel-unknown-none";

/// Path of the BPF object that the agent embeds.
pub fn ebpf_object() -> PathBuf {
    workspace_root()
        .join("target/ebpf")
        .join(BPF_TARGET)
        .join("release/pausewatch-ebpf")
}

/// Path of the release agent.
pub fn agent_binary() -> PathBuf {
    workspace_root().join("target/release/agent")
}

/// Builds the BPF object, installing the toolchain pieces it needs first.
pub fn build_ebpf() -> Result<PathBuf> {
    let linker_dir = ensure_bpf_linker()?;
    step("building the BPF programs (ebpf/, nightly, bpfel-unknown-none)");
    let root = workspace_root();
    let path = std::env::join_paths(std::iter::once(linker_dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))?;
    run(Command::new("cargo")
        .current_dir(root.join("ebpf"))
        .args([
            "+nightly",
            "build",
            "--release",
            "--target",
            BPF_TARGET,
            "-Z",
            "build-std=core",
        ])
        .arg("--target-dir")
        .arg(root.join("target/ebpf"))
        .env("PATH", path)
        // Variables set for xtask's own (stable) build must not leak into the nightly one.
        .env_remove("RUSTC")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR"))?;
    let object = ebpf_object();
    if !object.is_file() {
        bail!(
            "the BPF build succeeded but {} is missing",
            object.display()
        );
    }
    Ok(object)
}

/// Builds the BPF object and the release agent; returns the agent's path.
pub fn build_all() -> Result<PathBuf> {
    let object = build_ebpf()?;
    step("building the agent (release)");
    run(cargo()
        .args([
            "build",
            "--release",
            "--package",
            "pausewatch-agent",
            "--bin",
            "agent",
        ])
        .env("PAUSEWATCH_EBPF_OBJECT", &object))?;
    let agent = agent_binary();
    step(format!("agent ready at {}", agent.display()));
    Ok(agent)
}

/// Facts about the installed nightly toolchain that bpf-linker depends on.
struct Nightly {
    llvm_major: u32,
    /// The toolchain's `lib/libLLVM.so.*` (the real file, not a symlink).
    libllvm: PathBuf,
}

fn nightly() -> Result<Nightly> {
    let have = output(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup is needed to manage the nightly toolchain for the BPF build")?;
    if !have.lines().any(|l| l.starts_with("nightly")) {
        step("installing the nightly toolchain (for the BPF build)");
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    let components = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    if !components.lines().any(|l| l.starts_with("rust-src")) {
        step("adding rust-src to the nightly toolchain (BPF builds core from source)");
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    let version = output(Command::new("rustc").args(["+nightly", "-vV"]))?;
    let llvm = version
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .context("`rustc +nightly -vV` printed no LLVM version")?;
    let llvm_major: u32 = llvm
        .split('.')
        .next()
        .and_then(|m| m.trim().parse().ok())
        .with_context(|| format!("cannot read the LLVM major version from {llvm:?}"))?;
    let sysroot = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
    let lib = Path::new(sysroot.trim()).join("lib");
    let libllvm = fs::read_dir(&lib)
        .with_context(|| format!("cannot list {}", lib.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so."))
        })
        .with_context(|| {
            format!(
                "the nightly toolchain has no libLLVM.so.* in {}; bpf-linker cannot be built against it",
                lib.display()
            )
        })?;
    Ok(Nightly {
        llvm_major,
        libllvm,
    })
}

/// Makes sure `.tools/bpf-linker/bin/bpf-linker` exists and runs, building it
/// when missing or when the nightly's LLVM changed. Returns its directory.
fn ensure_bpf_linker() -> Result<PathBuf> {
    let tools = workspace_root().join(".tools");
    let nightly = nightly()?;
    let lib_name = nightly
        .libllvm
        .file_name()
        .context("libLLVM path has no file name")?
        .to_owned();
    let stamp_text = format!(
        "bpf-linker {BPF_LINKER_VERSION} llvm-{} {}\n",
        nightly.llvm_major,
        lib_name.to_string_lossy()
    );
    let root = tools.join("bpf-linker");
    let bin_dir = root.join("bin");
    let stamp = root.join("built-for");
    let llvm_prefix = tools.join(format!("llvm-{}", nightly.llvm_major));
    let llvm_lib = llvm_prefix.join("lib");

    // bpf-linker finds libLLVM at run time through its RUNPATH (llvm_lib), so
    // the symlinks must exist and point at the current nightly's library.
    fs::create_dir_all(&llvm_lib)?;
    for name in [std::ffi::OsStr::new("libLLVM.so"), lib_name.as_os_str()] {
        let link = llvm_lib.join(name);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&nightly.libllvm, &link).with_context(|| {
            format!(
                "cannot link {} to {}",
                link.display(),
                nightly.libllvm.display()
            )
        })?;
    }

    let linker = bin_dir.join("bpf-linker");
    let works = fs::read_to_string(&stamp).is_ok_and(|s| s == stamp_text)
        && Command::new(&linker)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if works {
        return Ok(bin_dir);
    }
    step(format!(
        "building bpf-linker {BPF_LINKER_VERSION} against the nightly toolchain's LLVM {} \
         (first run only, about a minute or two) into {}",
        nightly.llvm_major,
        root.display()
    ));
    run(cargo()
        .args(["install", "--force"])
        .arg(format!("bpf-linker@{BPF_LINKER_VERSION}"))
        .args(["--no-default-features", "--features"])
        .arg(format!("llvm-{}", nightly.llvm_major))
        .arg("--root")
        .arg(&root)
        .env("LLVM_PREFIX", &llvm_prefix)
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO_TARGET_DIR"))?;
    if !Command::new(&linker)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        bail!(
            "bpf-linker was built at {} but does not run",
            linker.display()
        );
    }
    fs::write(&stamp, stamp_text)?;
    Ok(bin_dir)
}
