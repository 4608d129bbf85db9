//! `agent check`: can this host run the agent? Each requirement is checked
//! for real where that is cheap (kernel features are probed with tiny BPF
//! maps and programs, the embedded object is loaded and verified, one of its
//! uprobes is attached to the agent's own code and detached), and reported
//! as one OK/FAIL line with a fix. `agent run` runs the same checks first
//! ([`require_host`], [`require_attach`]) and stops at the first failure.

use std::{fmt, path::Path};

use aya::{
    maps::MapType,
    programs::ProgramType,
    sys::{BpfHelper, is_helper_supported, is_map_supported, is_program_supported},
};
use thiserror::Error;

use crate::{
    bpf::{Tracer, loader::LoadOptions, selftest},
    preflight::{self, CAP_SYS_ADMIN, PRIVILEGES_HINT},
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

/// A required check failed; the message is the check's own line.
#[derive(Debug, Error)]
#[error("{name} check failed: {detail} (`agent check` lists every requirement)")]
pub struct CheckFailed {
    /// Which check.
    pub name: &'static str,
    /// What was found and what to do.
    pub detail: String,
}

/// Runs every check, in the order the agent depends on them.
pub fn run_checks() -> Vec<Check> {
    let mut checks = host_checks();
    checks.extend(load_and_attach());
    checks
}

/// The checks that load nothing lasting: privileges, kernel version and
/// features (BPF syscall, uprobes, ring buffer, BPF cookie, tracepoints,
/// raw tracepoints),
/// BTF, memlock.
pub fn host_checks() -> Vec<Check> {
    vec![
        privileges(),
        kernel_version(),
        bpf_syscall(),
        btf(),
        uprobes(),
        ring_buffer(),
        bpf_cookie(),
        tracepoints(),
        raw_tracepoints(),
        memlock(),
    ]
}

/// For `agent run`: fails with the first failing host check.
pub fn require_host() -> Result<(), CheckFailed> {
    first_failure(host_checks())
}

/// For `agent run`, once the object is loaded: proves that a uprobe can be
/// attached with this process's privileges (see [`uprobe_attach`]).
pub fn require_attach(tracer: &mut Tracer) -> Result<(), CheckFailed> {
    first_failure([uprobe_attach(tracer, true)])
}

fn first_failure(checks: impl IntoIterator<Item = Check>) -> Result<(), CheckFailed> {
    match checks.into_iter().find(|c| c.status == Status::Fail) {
        Some(c) => Err(CheckFailed {
            name: c.name,
            detail: c.detail,
        }),
        None => Ok(()),
    }
}

fn privileges() -> Check {
    let caps = match preflight::effective_capabilities() {
        Ok(caps) => caps,
        Err(e) => return fail("privileges", e.to_string()),
    };
    match preflight::check_capabilities(caps) {
        Err(e) => fail("privileges", e.to_string()),
        Ok(()) if caps & (1 << CAP_SYS_ADMIN) != 0 => ok(
            "privileges",
            "CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE and CAP_SYS_ADMIN (or root)",
        ),
        Ok(()) => ok(
            "privileges",
            "CAP_BPF, CAP_PERFMON and CAP_SYS_PTRACE, without CAP_SYS_ADMIN \
             (the uprobe attach line below tells whether this kernel needs it)",
        ),
    }
}

/// The loaded object, then a real uprobe attach: `BPF load` and
/// `uprobe attach` lines.
fn load_and_attach() -> Vec<Check> {
    match Tracer::load(LoadOptions {
        events: true,
        anatomy: true,
        heap: true,
        shared: true,
    }) {
        Ok((mut tracer, _maps)) => vec![
            ok(
                "BPF load",
                "all programs and maps (per-CPU hash, array, ring buffer) load and verify",
            ),
            uprobe_attach(&mut tracer, false),
        ],
        Err(e) => vec![
            fail("BPF load", e.to_string()),
            fail(
                "uprobe attach",
                "not tried: the BPF programs did not load".to_string(),
            ),
        ],
    }
}

/// Attaches one of the agent's uprobe programs to a function of the agent's
/// own executable, scoped to the agent's pid, and detaches it. This is the
/// step that needs CAP_SYS_ADMIN on some kernels even with CAP_PERFMON.
/// With `keep`, the probe stays attached for the tracer's life (see
/// [`Tracer::attach_self_test`]).
pub fn uprobe_attach(tracer: &mut Tracer, keep: bool) -> Check {
    let (binary, offset) = match selftest::probe_point() {
        Ok(p) => p,
        Err(e) => return fail("uprobe attach", format!("cannot find a probe point: {e}")),
    };
    match tracer.attach_self_test(&binary, offset, keep) {
        Ok(()) => ok(
            "uprobe attach",
            "a uprobe with a BPF link attaches and detaches (tried on the agent itself)",
        ),
        Err(e) => fail("uprobe attach", e.to_string()),
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

/// A kernel feature probe's outcome as a line: supported, unsupported
/// (`missing` is the fix), or the probe itself failed (privileges, most
/// often).
fn feature<E: std::error::Error + 'static>(
    name: &'static str,
    probed: Result<bool, E>,
    good: &str,
    missing: &str,
) -> Check {
    match probed {
        Ok(true) => ok(name, good),
        Ok(false) => fail(name, missing.to_string()),
        Err(e) if crate::bpf::loader::is_permission_error(&e) => fail(
            name,
            format!("the kernel denied the probe ({e}): {PRIVILEGES_HINT}"),
        ),
        Err(e) => fail(name, format!("the probe failed: {e}; {missing}")),
    }
}

fn bpf_syscall() -> Check {
    feature(
        "BPF syscall",
        is_map_supported(MapType::Array),
        "bpf(2) works: a BPF map was created",
        "the kernel has no bpf(2) syscall (CONFIG_BPF_SYSCALL): use a kernel built with it",
    )
}

fn btf() -> Check {
    if Path::new("/sys/kernel/btf/vmlinux").exists() {
        ok("BTF", "kernel BTF is available (/sys/kernel/btf/vmlinux)")
    } else {
        Check {
            name: "BTF",
            status: Status::Info,
            detail: "the kernel has no BTF (CONFIG_DEBUG_INFO_BTF); pausewatch does not need \
                     it today"
                .to_string(),
        }
    }
}

fn uprobes() -> Check {
    if !Path::new("/sys/bus/event_source/devices/uprobe/type").exists() {
        return fail(
            "uprobes",
            "the kernel has no uprobe PMU (/sys/bus/event_source/devices/uprobe): use a kernel \
             built with CONFIG_UPROBE_EVENTS, and make sure /sys is mounted"
                .to_string(),
        );
    }
    feature(
        "uprobes",
        is_program_supported(ProgramType::KProbe),
        "the uprobe PMU and uprobe BPF programs are available",
        "the kernel cannot load kprobe/uprobe BPF programs (CONFIG_BPF_EVENTS)",
    )
}

fn ring_buffer() -> Check {
    feature(
        "ring buffer",
        is_map_supported(MapType::RingBuf),
        "BPF ring buffer maps are available (--events)",
        "the kernel has no BPF ring buffer (5.8+): upgrade the kernel",
    )
}

fn raw_tracepoints() -> Check {
    feature(
        "raw tracepoints",
        is_program_supported(ProgramType::RawTracePoint),
        "raw tracepoint programs load (the pause anatomy on sched_switch and sched_waking)",
        "raw tracepoint programs do not load (4.17+): upgrade the kernel, or run with --no-anatomy",
    )
}

fn bpf_cookie() -> Check {
    feature(
        "BPF cookie",
        is_helper_supported(ProgramType::KProbe, BpfHelper::BPF_FUNC_get_attach_cookie),
        "uprobe programs can read their BPF cookie (each probe's argument location)",
        "uprobe programs cannot call bpf_get_attach_cookie (5.15+): upgrade the kernel",
    )
}

/// The classic tracepoints the agent attaches (`category/name`): the
/// process exec/exit stream of the follow modes and the pause anatomy's
/// exit hook. (The anatomy's scheduler programs are raw tracepoints, which
/// need no tracefs: see [`raw_tracepoints`].)
pub fn tracepoints_used() -> Vec<String> {
    crate::bpf::loader::TRACEPOINTS
        .iter()
        .map(|name| format!("sched/{name}"))
        .collect()
}

fn tracepoints() -> Check {
    let used = tracepoints_used();
    let tracefs = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.join("events").is_dir());
    if used.is_empty() {
        let status = match tracefs {
            Some(p) => format!("tracefs at {}", p.display()),
            None => "tracefs not mounted".to_string(),
        };
        return ok(
            "tracepoints",
            &format!("none used by this build ({status})"),
        );
    }
    let Some(tracefs) = tracefs else {
        // The agent mounts tracefs itself when it may (see
        // `targets::follow::ensure_tracefs`).
        if preflight::require_privileges().is_ok() {
            return ok(
                "tracepoints",
                &format!(
                    "{}: tracefs is not mounted at \
                     /sys/kernel/tracing; the agent mounts it at start",
                    used.join(", ")
                ),
            );
        }
        return fail(
            "tracepoints",
            format!(
                "tracepoints {} need tracefs, which is not \
                 mounted and cannot be without privileges: \
                 mount -t tracefs nodev /sys/kernel/tracing",
                used.join(", ")
            ),
        );
    };
    let missing: Vec<&String> = used
        .iter()
        .filter(|t| !tracefs.join("events").join(t).join("id").exists())
        .collect();
    if !missing.is_empty() {
        return fail(
            "tracepoints",
            format!(
                "the kernel lacks tracepoints {} (under {}/events)",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                tracefs.display()
            ),
        );
    }
    feature(
        "tracepoints",
        is_program_supported(ProgramType::TracePoint),
        &format!(
            "{} available (tracefs at {})",
            used.join(", "),
            tracefs.display()
        ),
        "the kernel cannot load tracepoint BPF programs (CONFIG_BPF_EVENTS)",
    )
}

/// `(major, minor)` of the running kernel, `(0, 0)` if unreadable.
fn kernel_release() -> (String, (u32, u32)) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let release = release.trim().to_string();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (release, (major, minor))
}

/// BPF cookies on uprobes arrived in 5.15; the agent relies on them to pass
/// each probe's argument location.
fn kernel_version() -> Check {
    let (release, version) = kernel_release();
    if version >= (5, 15) {
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

/// What the agent's maps need locked on kernels that charge BPF memory to
/// RLIMIT_MEMLOCK (before 5.11); generous for the histogram maps.
const MEMLOCK_NEEDED: u64 = 64 << 20;

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
    let (_, version) = kernel_release();
    if version >= (5, 11) {
        return ok(
            "memlock",
            &format!("RLIMIT_MEMLOCK {shown}; not needed (5.11+ charges BPF memory to the cgroup)"),
        );
    }
    if r == 0 && (lim.rlim_cur == libc::RLIM_INFINITY || lim.rlim_cur >= MEMLOCK_NEEDED) {
        ok("memlock", &format!("RLIMIT_MEMLOCK {shown}"))
    } else {
        fail(
            "memlock",
            format!(
                "RLIMIT_MEMLOCK {shown} is below the {} MiB the BPF maps need on kernels before \
                 5.11: raise it (ulimit -l unlimited, or LimitMEMLOCK=infinity in the unit)",
                MEMLOCK_NEEDED >> 20
            ),
        )
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

    #[test]
    fn first_failure_carries_its_hint() {
        let err = first_failure([
            ok("kernel", "fine"),
            fail("uprobes", "install uprobes".into()),
            fail("memlock", "raise it".into()),
        ])
        .unwrap_err();
        assert_eq!(err.name, "uprobes");
        assert!(err.to_string().contains("install uprobes"), "{err}");
        assert!(first_failure([ok("kernel", "fine")]).is_ok());
    }

    #[test]
    fn a_denied_probe_gives_the_privileges_hint() {
        let denied: Result<bool, std::io::Error> =
            Err(std::io::Error::from_raw_os_error(libc::EPERM));
        let c = feature("BPF syscall", denied, "good", "missing");
        assert_eq!(c.status, Status::Fail);
        assert!(c.detail.contains("CAP_SYS_ADMIN"), "{}", c.detail);
        let c = feature::<std::io::Error>("ring buffer", Ok(false), "good", "upgrade");
        assert_eq!((c.status, c.detail.as_str()), (Status::Fail, "upgrade"));
    }
}
