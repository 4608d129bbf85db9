//! `agent check`: can this host run the agent? Each requirement is checked
//! for real where that is cheap (the embedded BPF object is loaded and
//! verified, then unloaded), and reported as one OK/FAIL line with a fix.

use std::{fmt, path::Path};

use crate::{
    bpf::{Tracer, loader::LoadOptions},
    preflight,
};

/// Outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// The requirement holds.
    Ok,
    /// The requirement fails; the agent cannot run.
    Fail,
    /// Not needed by what the agent does today, reported for information.
    Info,
}

/// One line of `agent check`.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// Result.
    pub status: Status,
    /// What was found, and for a failure what to do.
    pub detail: String,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.status {
            Status::Ok => "OK  ",
            Status::Fail => "FAIL",
            Status::Info => "INFO",
        };
        write!(f, "{tag} {:<22} {}", self.name, self.detail)
    }
}

/// Runs every check, in the order the agent depends on them.
pub fn run_checks() -> Vec<Check> {
    let mut checks = Vec::new();
    let privileged = match preflight::require_privileges() {
        Ok(()) => {
            checks.push(ok(
                "privileges",
                "CAP_BPF, CAP_PERFMON and CAP_SYS_PTRACE (or root)",
            ));
            true
        }
        Err(e) => {
            checks.push(fail("privileges", e.to_string()));
            false
        }
    };
    checks.push(kernel_version());
    checks.push(path_check(
        "BTF",
        "/sys/kernel/btf/vmlinux",
        "kernel BTF is available",
        "the kernel has no BTF (CONFIG_DEBUG_INFO_BTF); pausewatch does not need it today",
        Status::Info,
    ));
    checks.push(path_check(
        "uprobes",
        "/sys/bus/event_source/devices/uprobe/type",
        "the uprobe PMU is available",
        "the kernel lacks uprobes (CONFIG_UPROBE_EVENTS): the agent cannot trace runtimes",
        Status::Fail,
    ));
    checks.push(tracefs(privileged));
    checks.push(memlock());
    if privileged {
        // Loading the real object exercises the BPF syscall, the verifier,
        // per-CPU hash maps and the ring buffer map in one go.
        checks.push(match Tracer::load(LoadOptions { events: true }) {
            Ok(_) => ok(
                "BPF load",
                "all programs and maps (per-CPU hash, ring buffer) load and verify",
            ),
            Err(e) => fail("BPF load", e.to_string()),
        });
    } else {
        checks.push(fail("BPF load", "not tried without privileges".to_string()));
    }
    checks
}

/// `run --all/--comm/--exe` attach tracepoints, which need tracefs; the
/// agent mounts it when it can, so an unmounted tracefs only fails without
/// privileges.
fn tracefs(privileged: bool) -> Check {
    if crate::targets::follow::tracefs_mounted() {
        ok(
            "tracefs",
            "mounted: sched_process_exec/exit tracepoints for --all are available",
        )
    } else if privileged {
        Check {
            name: "tracefs",
            status: Status::Info,
            detail: "not mounted at /sys/kernel/tracing; `run --all/--comm/--exe` will mount it"
                .to_string(),
        }
    } else {
        fail(
            "tracefs",
            "not mounted at /sys/kernel/tracing and no privileges to mount it: \
             `run --all/--comm/--exe` need it (as root: mount -t tracefs nodev /sys/kernel/tracing)"
                .to_string(),
        )
    }
}

fn ok(name: &'static str, detail: &str) -> Check {
    Check {
        name,
        status: Status::Ok,
        detail: detail.to_string(),
    }
}

fn fail(name: &'static str, detail: String) -> Check {
    Check {
        name,
        status: Status::Fail,
        detail,
    }
}

fn path_check(name: &'static str, path: &str, good: &str, bad: &str, missing: Status) -> Check {
    if Path::new(path).exists() {
        ok(name, good)
    } else {
        Check {
            name,
            status: missing,
            detail: bad.to_string(),
        }
    }
}

/// BPF cookies on uprobes arrived in 5.15; the agent relies on them to pass
/// each probe's argument location.
fn kernel_version() -> Check {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let release = release.trim();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    if (major, minor) >= (5, 15) {
        ok(
            "kernel",
            &format!("{release} (BPF cookies and ring buffers need 5.15+)"),
        )
    } else {
        fail(
            "kernel",
            format!(
                "{release} is older than 5.15, which BPF cookies on uprobes need: upgrade the kernel"
            ),
        )
    }
}

/// Since 5.11 BPF memory is charged to the memory cgroup, so RLIMIT_MEMLOCK
/// no longer limits it; before that it must be large enough.
fn memlock() -> Check {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    let r = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    let shown = if r != 0 {
        "unknown".to_string()
    } else if lim.rlim_cur == libc::RLIM_INFINITY {
        "unlimited".to_string()
    } else {
        format!("{} KiB", lim.rlim_cur / 1024)
    };
    Check {
        name: "memlock",
        status: Status::Info,
        detail: format!(
            "RLIMIT_MEMLOCK {shown} (kernels 5.11+ charge BPF memory to the cgroup instead)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_tagged_and_aligned() {
        let line = fail("uprobes", "missing".into()).to_string();
        assert!(line.starts_with("FAIL uprobes "), "{line}");
        assert!(ok("kernel", "6.18").to_string().starts_with("OK   kernel"));
    }
}
