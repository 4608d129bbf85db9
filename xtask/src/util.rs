//! Small process and path helpers shared by the xtask commands.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    sync::OnceLock,
    time::Instant,
};

use anyhow::{Context, Result, bail};

/// The workspace root (parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// When this xtask run began, for the elapsed time every step shows.
static STARTED: OnceLock<Instant> = OnceLock::new();

/// Prints a progress step in a form that stands out from cargo's output,
/// with the minutes and seconds since the run began: a long run (a fresh
/// machine's `cargo xtask test`) then says where its time went.
pub fn step(msg: impl AsRef<str>) {
    let secs = STARTED.get_or_init(Instant::now).elapsed().as_secs();
    eprintln!(
        "\x1b[1;34m==>\x1b[0m [{:02}:{:02}] {}",
        secs / 60,
        secs % 60,
        msg.as_ref()
    );
}

/// Runs a command with inherited stdio; fails with its command line on a non-zero exit.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

/// Runs a command and returns its stdout as text (stderr inherited).
pub fn output(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("could not start {shown}"))?;
    if !out.status.success() {
        bail!("{shown} failed with {}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A `cargo` command for the stable (host) toolchain, cleared of the
/// variables that `cargo run` sets for xtask itself.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

/// Whether we run as root (needed for apt and for loading BPF).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Installs Debian packages that are missing, as root; a clear error otherwise.
pub fn ensure_debian_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !debian_package_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing system packages: {0}. Run this command as root so it can install them, \
             or install them yourself: sudo apt-get install -y {0}",
            missing.join(" ")
        );
    }
    static UPDATED: OnceLock<()> = OnceLock::new();
    if UPDATED.get().is_none() {
        step("apt-get update");
        run(Command::new("apt-get").args(["update", "-q"]))?;
        let _ = UPDATED.set(());
    }
    step(format!("installing {}", missing.join(" ")));
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn debian_package_installed(name: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", name])
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("ok installed"))
        .unwrap_or(false)
}

/// Name of the apt source file that [`ensure_bookworm_backports`] writes.
const BACKPORTS_FILE: &str = "/etc/apt/sources.list.d/pausewatch-bookworm-backports.sources";

/// On Debian 12 (bookworm), makes sure apt knows the bookworm-backports
/// suite (where the newer Go toolchains are), on the same mirror as the
/// machine's existing bookworm source, and refreshes the package lists if
/// it had to add it. Elsewhere it does nothing: the packages then come from
/// the distribution itself, or their installation fails with apt's message.
pub fn ensure_bookworm_backports() -> Result<()> {
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    if !os.lines().any(|l| l == "VERSION_CODENAME=bookworm") {
        return Ok(());
    }
    let sources = apt_sources_text();
    if sources.contains("bookworm-backports") {
        return Ok(());
    }
    let Some((uri, signed_by)) = suite_uri(&sources, "bookworm") else {
        bail!(
            "found no apt source for bookworm to add bookworm-backports next to; \
             add the suite yourself (see https://backports.debian.org/Instructions/)"
        );
    };
    if !is_root() {
        bail!("adding the bookworm-backports apt source needs root: run this command with sudo");
    }
    let mut text =
        format!("Types: deb\nURIs: {uri}\nSuites: bookworm-backports\nComponents: main\n");
    if let Some(key) = signed_by {
        text.push_str(&format!("Signed-By: {key}\n"));
    }
    step(format!(
        "adding bookworm-backports ({uri}) in {BACKPORTS_FILE}"
    ));
    std::fs::write(BACKPORTS_FILE, text).with_context(|| format!("writing {BACKPORTS_FILE}"))?;
    run(Command::new("apt-get").args(["update", "-q"]))
}

/// The text of every apt source file (one-line and deb822 formats).
fn apt_sources_text() -> String {
    let mut text = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = dir.filter_map(|e| Some(e.ok()?.path())).collect();
        paths.sort();
        for p in paths {
            let ext = p.extension().and_then(|e| e.to_str());
            if matches!(ext, Some("list" | "sources")) {
                text.push('\n');
                text.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
            }
        }
    }
    text
}

/// The URI of the Debian archive this machine's apt already uses (the one
/// serving its own release, from `/etc/os-release`), for tools such as
/// `debootstrap` that need a mirror: read at run time, so no mirror's name
/// is ever written down here.
pub fn debian_archive_uri() -> Result<String> {
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let Some(codename) = os
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|c| c.trim_matches('"').to_string())
    else {
        bail!("/etc/os-release names no VERSION_CODENAME: this is not a Debian system");
    };
    match suite_uri(&apt_sources_text(), &codename) {
        Some((uri, _)) => Ok(uri),
        None => bail!(
            "found no apt source for {codename} in /etc/apt/sources.list or \
             /etc/apt/sources.list.d/ to take the Debian archive's address from"
        ),
    }
}

/// The mirror URI (and keyring, if named) of `suite`, from deb822 stanzas
/// or one-line `deb URI SUITE ...` entries.
fn suite_uri(sources: &str, suite: &str) -> Option<(String, Option<String>)> {
    for stanza in sources.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
        };
        let suites = field("Suites:").unwrap_or_default();
        let types = field("Types:").unwrap_or_default();
        if types.split_whitespace().any(|t| t == "deb")
            && suites.split_whitespace().any(|s| s == suite)
            && let Some(uris) = field("URIs:")
            && let Some(uri) = uris.split_whitespace().next()
        {
            return Some((uri.to_string(), field("Signed-By:")));
        }
    }
    sources.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        (f.next()? == "deb").then_some(())?;
        let mut uri = f.next()?;
        if uri.starts_with('[') {
            // Options such as [signed-by=...]: skip to the URI.
            uri = f.find(|w| !w.ends_with(']') && w.contains("://"))?;
        }
        (f.next()? == suite).then(|| (uri.to_string(), None))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_bookworm_mirror_in_both_formats() {
        let deb822 = "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n\
                      Components: main\nSigned-By: /usr/share/keyrings/k.gpg\n\n\
                      Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n";
        assert_eq!(
            suite_uri(deb822, "bookworm"),
            Some((
                "http://mirror.example/debian".to_string(),
                Some("/usr/share/keyrings/k.gpg".to_string())
            ))
        );
        let one_line = "deb http://m.example/debian bookworm-security main\n\
                        deb http://m.example/debian bookworm main contrib\n";
        assert_eq!(
            suite_uri(one_line, "bookworm"),
            Some(("http://m.example/debian".to_string(), None))
        );
        assert_eq!(
            suite_uri("deb http://m.example/debian bullseye main", "bookworm"),
            None
        );
        assert_eq!(
            suite_uri(deb822, "bookworm-security").map(|(u, _)| u),
            Some("http://mirror.example/debian-security".to_string())
        );
    }
}
