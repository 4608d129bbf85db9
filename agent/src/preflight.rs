//! Checks that the agent can do its job before it tries, so a missing
//! privilege is one clear sentence rather than a kernel error code.

use thiserror::Error;

/// Capability numbers (linux/capability.h).
pub const CAP_SYS_PTRACE: u32 = 19;
/// See [`CAP_SYS_PTRACE`].
pub const CAP_SYS_ADMIN: u32 = 21;
/// See [`CAP_SYS_PTRACE`].
pub const CAP_PERFMON: u32 = 38;
/// See [`CAP_SYS_PTRACE`].
pub const CAP_BPF: u32 = 39;

/// What to do about missing privileges; shared by every message about them.
/// CAP_SYS_ADMIN: measured on kernel 6.18 with `setpriv --bounding-set`,
/// CAP_BPF + CAP_PERFMON + CAP_SYS_PTRACE load the programs but
/// perf_event_open of a uprobe fails with EACCES; adding CAP_SYS_ADMIN (or
/// CAP_SYS_ADMIN + CAP_SYS_PTRACE alone) attaches.
pub const PRIVILEGES_HINT: &str = "run the agent as root (sudo), or grant it CAP_BPF, \
     CAP_PERFMON and CAP_SYS_PTRACE, plus CAP_SYS_ADMIN on kernels that allow uprobe perf \
     events only to it (6.18 does; `agent check` tells)";

/// A requirement the host or the agent's privileges do not meet.
#[derive(Debug, Error)]
pub enum PreflightError {
    /// Not enough capabilities.
    #[error(
        "pausewatch needs root to load BPF programs and attach uprobes \
         (missing {missing}): {hint}",
        hint = PRIVILEGES_HINT
    )]
    Privileges {
        /// The missing capabilities, comma-separated.
        missing: String,
    },
    /// The capability set could not be read.
    #[error("cannot read this process's capabilities from /proc/self/status: {0}")]
    Status(#[from] std::io::Error),
}

/// The effective capability bits of this process.
pub fn effective_capabilities() -> Result<u64, PreflightError> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(str::trim)
        .unwrap_or("0");
    Ok(u64::from_str_radix(hex, 16).unwrap_or(0))
}

/// Fails unless this process may load BPF, attach uprobes and read targets.
pub fn require_privileges() -> Result<(), PreflightError> {
    check_capabilities(effective_capabilities()?)
}

/// The check itself, on a given capability set (testable without root).
pub fn check_capabilities(caps: u64) -> Result<(), PreflightError> {
    let has = |c: u32| caps & (1u64 << c) != 0;
    let admin = has(CAP_SYS_ADMIN);
    let mut missing = Vec::new();
    if !admin && !has(CAP_BPF) {
        missing.push("CAP_BPF");
    }
    if !admin && !has(CAP_PERFMON) {
        missing.push("CAP_PERFMON");
    }
    if !has(CAP_SYS_PTRACE) {
        missing.push("CAP_SYS_PTRACE");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(PreflightError::Privileges {
            missing: missing.join(", "),
        })
    }
}

/// Raises the soft limit on open files to the hard one and returns the new
/// soft limit. Every uprobe is a file descriptor (8 to 10 per JVM) and every
/// traced process one more, so a node of 150 JVMs would exceed the usual
/// soft limit of 1024 while its hard limit is far higher (systemd: 524288).
/// A failure leaves the limit as it was: attaching then reports EMFILE.
pub fn raise_open_files_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return raised.rlim_cur;
        }
    }
    lim.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_passes_and_nobody_fails_with_the_list() {
        assert!(check_capabilities(u64::MAX).is_ok());
        let err = check_capabilities(0).unwrap_err().to_string();
        assert!(
            err.contains("CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE"),
            "{err}"
        );
        let bpf_only = (1 << CAP_BPF) | (1 << CAP_PERFMON) | (1 << CAP_SYS_PTRACE);
        assert!(check_capabilities(bpf_only).is_ok());
    }
}
