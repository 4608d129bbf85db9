//! Locates the BPF object built by `cargo xtask build-ebpf`, so that the agent
//! can embed it and ship as one self-contained binary.

use std::{env, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=PAUSEWATCH_EBPF_OBJECT");
    let object = match env::var_os("PAUSEWATCH_EBPF_OBJECT") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default())
            .join("../target/ebpf/bpfel-unknown-none/release/pausewatch-ebpf"),
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
