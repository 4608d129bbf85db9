//! The other tracers the bench compares with: bpftrace and BCC, and the
//! set-up BCC needs on this machine.
//!
//! BCC compiles its programs from C at start-up against the running
//! kernel's headers, found at `/lib/modules/$(uname -r)/build`. Kernels
//! without a headers package (like this 6.18 one) have none; for the
//! benchmark only, the bench installs Debian's `linux-headers-amd64` (6.1)
//! and links it there if that path does not exist yet. If BCC still cannot
//! compile, the report says so with BCC's error.

use std::{
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use super::procs::Tracer;
use crate::util::{ensure_debian_packages, step, workspace_root};

/// The bpftrace program that times a begin/end USDT pair into a histogram
/// (and prints "armed" from BEGIN, which bpftrace runs once every probe is
/// attached).
pub fn bpftrace_pair_program(lib: &Path, begin: &str, end: &str) -> String {
    let lib = lib.display();
    format!(
        "BEGIN {{ printf(\"armed\\n\"); }}\n\
         usdt:{lib}:{begin} {{ @start[tid] = nsecs; }}\n\
         usdt:{lib}:{end} /@start[tid]/ {{ @ns = hist(nsecs - @start[tid]); delete(@start[tid]); }}\n"
    )
}

/// A working BCC.
pub struct Bcc {
    script: PathBuf,
    javagc: Option<PathBuf>,
}

impl Bcc {
    /// Installs BCC and kernel headers, links the headers for the running
    /// kernel if needed, and checks that BCC compiles a program. The error
    /// carries BCC's own message.
    pub fn setup() -> Result<Bcc> {
        step("BCC: installing bpfcc-tools and kernel headers (benchmark only)");
        ensure_debian_packages(&["bpfcc-tools", "python3-bpfcc", "linux-headers-amd64"])?;
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")?
            .trim()
            .to_string();
        link_headers(&release)?;
        let out = Command::new(PYTHON)
            .args([
                "-c",
                "from bcc import BPF\nBPF(text='int f(void *ctx) { return 0; }').load_func('f', BPF.KPROBE)",
            ])
            .output()
            .context("running python3")?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = err.lines().rev().take(6).collect();
            bail!(
                "BCC cannot compile a trivial program here: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            );
        }
        let javagc = ["/usr/sbin/javagc-bpfcc", "/usr/share/bcc/tools/javagc"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists());
        Ok(Bcc {
            script: workspace_root().join("xtask/bench/bcc_pair.py"),
            javagc,
        })
    }

    /// `bcc_pair.py` timing `begin`..`end` in `pid`.
    pub fn pair_tracer(&self, pid: u32, begin: &str, end: &str) -> Result<Tracer> {
        let mut c = Command::new(PYTHON);
        c.arg(&self.script).arg(pid.to_string()).args([begin, end]);
        Tracer::spawn("BCC bcc_pair.py", c, "armed")
    }

    /// BCC's `javagc PID`, armed at its "Tracing" line, if installed.
    pub fn javagc(&self, pid: u32) -> Option<Result<Tracer>> {
        let path = self.javagc.as_ref()?;
        let mut c = Command::new(path);
        c.arg(pid.to_string());
        Some(Tracer::spawn("BCC javagc", c, "Tracing"))
    }
}

/// Debian's Python, which `python3-bpfcc` installs `bcc` for (a `python3`
/// earlier on PATH, e.g. from pyenv, would not have it).
const PYTHON: &str = "/usr/bin/python3";

/// Points `/lib/modules/<release>/{build,source}` of the running kernel
/// where the installed Debian headers package points its own
/// `/lib/modules/<its release>/{build,source}` (`build`: the arch-specific
/// `linux-headers-*-amd64`, `source`: `linux-headers-*-common`, which holds
/// `include/linux/kconfig.h`). Links this function made earlier (anything
/// pointing into `/usr/src/linux-headers-*`) are corrected; any other
/// existing file is left alone.
fn link_headers(release: &str) -> Result<()> {
    let mut packaged: Vec<PathBuf> = std::fs::read_dir("/lib/modules")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()) != Some(release)
                && p.join("build").exists()
                && p.join("source").exists()
        })
        .collect();
    packaged.sort();
    let from = packaged.pop().context(
        "linux-headers-amd64 is installed but no /lib/modules/*/build and source links exist",
    )?;
    let modules = PathBuf::from("/lib/modules").join(release);
    std::fs::create_dir_all(&modules)?;
    for link in ["build", "source"] {
        let want = std::fs::read_link(from.join(link))
            .with_context(|| format!("reading {}", from.join(link).display()))?;
        let l = modules.join(link);
        match std::fs::read_link(&l) {
            Ok(have) if have == want => continue,
            Ok(have) if have.starts_with("/usr/src") => std::fs::remove_file(&l)?,
            Ok(_) => continue,
            Err(_) if l.exists() => continue,
            Err(_) => {}
        }
        step(format!(
            "BCC: linking {} to {} (kernel {release} ships no headers)",
            l.display(),
            want.display()
        ));
        symlink(&want, &l).with_context(|| format!("linking {}", l.display()))?;
    }
    Ok(())
}
