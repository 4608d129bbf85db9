//! Locates the BPF object built by `cargo xtask build-ebpf`, so that the agent
//! can embed it and ship as one self-contained binary, and stamps the git
//! commit into `agent --version`.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    embed_ebpf_object(&manifest);
    stamp_version(&manifest);
}

fn embed_ebpf_object(manifest: &Path) {
    println!("cargo:rerun-if-env-changed=PAUSEWATCH_EBPF_OBJECT");
    let object = match env::var_os("PAUSEWATCH_EBPF_OBJECT") {
        Some(p) => PathBuf::from(p),
        None => manifest.join("../target/ebpf/bpfel-unknown-none/release/pausewatch-ebpf"),
    };
    if !object.is_file() {
        println!(
            "cargo::error=the BPF object {} does not exist yet: run `cargo xtask build-ebpf` \
             (or `cargo xtask build`) first; it installs what the BPF build needs and builds it",
            object.display()
        );
        std::process::exit(1);
    }
    println!("cargo:rerun-if-changed={}", object.display());
    println!(
        "cargo:rustc-env=PAUSEWATCH_EBPF_OBJECT={}",
        object.display()
    );
}

/// Sets `PAUSEWATCH_VERSION` to e.g. `0.1.0 (git 0dba70c-dirty)`: the crate
/// version and the commit it was built from, with `-dirty` when tracked
/// files differ from that commit. A build from a source tarball has no git
/// repository: `PAUSEWATCH_GIT_COMMIT` then names the commit, else it says
/// `unknown commit`, so a version string is always there.
fn stamp_version(manifest: &Path) {
    println!("cargo:rerun-if-env-changed=PAUSEWATCH_GIT_COMMIT");
    let version = env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let commit = env::var("PAUSEWATCH_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .map(|c| format!("git {}", c.trim()))
        .or_else(|| git_commit(manifest))
        .unwrap_or_else(|| "unknown commit".to_string());
    println!("cargo:rustc-env=PAUSEWATCH_VERSION={version} ({commit})");
}

/// `git <commit>[-dirty]` of the checkout holding `manifest`, or `None` when
/// git or the repository is missing.
fn git_commit(manifest: &Path) -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .current_dir(manifest)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    // Re-run when HEAD moves (checkout, commit: HEAD or the branch's ref
    // file or packed-refs change) or the index does (add, commit, reset).
    // An edit of a tracked file outside the crates below is not seen until
    // the next of those, which only makes `-dirty` late, never wrong about
    // the commit. `--git-path` resolves worktrees (`.git` is a file there).
    let mut watched = vec![
        "HEAD".to_string(),
        "index".to_string(),
        "packed-refs".to_string(),
    ];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        // A path that does not exist would make cargo re-run every build.
        if let Some(path) = git(&["rev-parse", "--git-path", &name])
            .map(|p| manifest.join(p))
            .filter(|p| p.exists())
        {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    for dir in ["src", "../common/src", "../ebpf/src"] {
        println!("cargo:rerun-if-changed={}", manifest.join(dir).display());
    }
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(format!("git {commit}{}", if dirty { "-dirty" } else { "" }))
}
