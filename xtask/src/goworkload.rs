//! Building the Go workload, `workloads/go/main.go` (see its comment for
//! flags and output), with each Debian Go toolchain.
//!
//! The toolchains are Debian's packages (`golang-1.19-go` behind
//! `golang-go`, and `golang-1.2x-go` from bookworm-backports, installed by
//! `cargo xtask test`), each under `/usr/lib/go-<version>/`. A build uses
//! only the standard library, with its own GOCACHE and GOPATH under
//! `$TMPDIR/pausewatch-gcload/`, `GOPROXY=off` and `GOTOOLCHAIN=local` (no
//! network, no toolchain download). The binary lands in
//! `$TMPDIR/pausewatch-gcload/<go version>-<fnv64 of the source>[-stripped]/gcload`;
//! a later call with the same source and toolchain reuses it. Concurrent
//! builds are safe: each builds into its own directory and renames it into
//! place.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::workloads::fnv1a64;

/// The Go versions the end-to-end tests cover, as Debian names them.
pub const GO_VERSIONS: [&str; 4] = ["1.19", "1.21", "1.22", "1.23"];

/// The workload's source directory.
pub fn gcload_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/go")
}

/// The `go` command of Debian's Go `version` (`1.21`).
pub fn go_tool(version: &str) -> Result<PathBuf> {
    let go = PathBuf::from(format!("/usr/lib/go-{version}/bin/go"));
    if !go.is_file() {
        bail!(
            "no Go {version} toolchain at {}: `cargo xtask test` installs golang-{version}-go \
             (Go 1.19 through golang-go; newer ones from bookworm-backports)",
            go.display()
        );
    }
    Ok(go)
}

/// Builds the workload with Go `version`, stripped (`-ldflags=-s -w`) or
/// not, and returns the binary.
pub fn build_gcload(version: &str, stripped: bool) -> Result<PathBuf> {
    build_package(version, ".", "gcload", stripped)
}

/// Builds the package `package` (`.` or `./smallgogc`, relative to
/// `workloads/go`, the module root) with Go `version` into a binary called
/// `name`, cached by the package's sources as described above.
pub fn build_package(version: &str, package: &str, name: &str, stripped: bool) -> Result<PathBuf> {
    let go = go_tool(version)?;
    let src = gcload_dir();
    let pkg_dir = src.join(package);
    let mut source = std::fs::read(pkg_dir.join("main.go"))
        .with_context(|| format!("reading {}", pkg_dir.join("main.go").display()))?;
    source.extend_from_slice(&std::fs::read(src.join("go.mod")).context("reading go.mod")?);
    let base = std::env::temp_dir().join("pausewatch-gcload");
    let dir_name = format!(
        "{version}-{name}-{:016x}{}",
        fnv1a64(&source),
        if stripped { "-stripped" } else { "" }
    );
    let dir = base.join(&dir_name);
    let binary = dir.join(name);
    if binary.is_file() {
        return Ok(binary);
    }
    let tmp = base.join(format!(".tmp-{dir_name}-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut cmd = Command::new(&go);
    cmd.current_dir(&src)
        .args(["build", "-trimpath", "-o"])
        .arg(tmp.join(name));
    if stripped {
        cmd.arg("-ldflags=-s -w");
    }
    cmd.arg(package)
        .env("GOCACHE", base.join(format!("gocache-{version}")))
        .env("GOPATH", base.join("gopath"))
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "")
        .env("CGO_ENABLED", "0");
    let out = cmd
        .output()
        .with_context(|| format!("running {}", go.display()))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        bail!(
            "{} build failed ({}):\n{}",
            go.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if std::fs::rename(&tmp, &dir).is_err() {
        // Another build won the race; its binary is identical.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    if !binary.is_file() {
        bail!("{} built no binary at {}", go.display(), binary.display());
    }
    Ok(binary)
}
