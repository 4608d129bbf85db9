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
        let modules = PathBuf::from("/lib/modules").join(&release);
        if !modules.join("build").exists() {
            let headers = newest_headers()?;
            step(format!(
                "BCC: linking {} as {}/build and /source (kernel {release} ships no headers)",
                headers.display(),
                modules.display()
            ));
            std::fs::create_dir_all(&modules)?;
            for link in ["build", "source"] {
                let l = modules.join(link);
                if std::fs::symlink_metadata(&l).is_err() {
                    symlink(&headers, &l).with_context(|| format!("linking {}", l.display()))?;
                }
            }
        }
        let out = Command::new("python3")
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
        let mut c = Command::new("python3");
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

fn newest_headers() -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/src")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("linux-headers-") && n.ends_with("-amd64"))
        })
        .collect();
    found.sort();
    found
        .pop()
        .context("linux-headers-amd64 is installed but /usr/src has no linux-headers-*-amd64")
}
