//! Uprobes with a kernel-managed USDT semaphore ("reference counter").
//!
//! Some runtimes guard their USDT probes with a semaphore: a 16-bit counter
//! in the binary's data (CPython keeps them in `.probes`) that the code
//! tests before it fires the probe, so an untraced process pays only a
//! load and a branch. The probe fires only while the counter is non-zero.
//!
//! Why this module exists: aya 0.14's `UProbe::attach` has no way to pass a
//! reference-counter offset. The kernel has one (since 4.20): a uprobe
//! perf event opened through the `uprobe` PMU carries `ref_ctr_offset` in
//! its `config` bits, and the kernel then increments the semaphore in every
//! process the probe is installed in, and decrements it when the probe goes
//! away. That is the only approach that stays correct when the agent dies
//! abruptly: on SIGKILL the kernel closes our descriptors and undoes the
//! increment, whereas poking the counter through `/proc/PID/mem` would
//! leave it raised for good (the target would keep paying for probes no
//! one listens to), and would race with a second tracer doing the same.
//! (The kernel raises it once per process while any tracer's event holds
//! the probe, and lowers it when the last one goes; `e2e_cpython` checks
//! this on a live interpreter, SIGKILL included.)
//!
//! So this module opens that perf event itself (`perf_event_open(2)` with
//! the PMU type from `/sys/bus/event_source/devices/uprobe/type` and the
//! `ref_ctr_offset` bit range from its `format/` directory), scoped to one
//! pid, and attaches the already-loaded (verified) aya program to it with
//! `BPF_LINK_CREATE` (attach type `BPF_PERF_EVENT`, with the BPF cookie
//! that carries the argument spec), exactly what aya does for its own
//! perf-event links. Detaching is closing the returned descriptors.

use std::{
    ffi::CString,
    io,
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
    os::unix::ffi::OsStrExt,
    path::Path,
};

use thiserror::Error;

/// Where the kernel describes the uprobe PMU.
const UPROBE_PMU: &str = "/sys/bus/event_source/devices/uprobe";
/// `BPF_LINK_CREATE` command of `bpf(2)`.
const BPF_LINK_CREATE: libc::c_long = 28;
/// `BPF_PERF_EVENT` attach type.
const BPF_PERF_EVENT: u32 = 41;
/// `PERF_FLAG_FD_CLOEXEC`.
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;

/// Why a reference-counted uprobe could not be attached.
#[derive(Debug, Error)]
pub enum RefCtrError {
    /// The kernel does not describe the uprobe PMU the way this module needs.
    #[error(
        "this kernel's uprobe PMU ({UPROBE_PMU}) has no usable {what}; USDT probes with a \
         semaphore need Linux 4.20 or later"
    )]
    Pmu {
        /// What is missing or unreadable.
        what: String,
    },
    /// `perf_event_open` refused the uprobe.
    #[error("perf_event_open(uprobe) failed: {0}")]
    PerfEventOpen(#[source] io::Error),
    /// `BPF_LINK_CREATE` refused to attach the program.
    #[error("BPF_LINK_CREATE on the uprobe perf event failed: {0}")]
    LinkCreate(#[source] io::Error),
    /// The path contains a NUL byte.
    #[error("the binary's path contains a NUL byte")]
    Path,
}

/// An attached reference-counted uprobe. Dropping it detaches the program
/// and lets the kernel decrement the semaphore.
#[derive(Debug)]
pub struct RefCtrLink {
    // Field order is drop order: the link first, then the event.
    _link: OwnedFd,
    _event: OwnedFd,
}

/// `struct perf_event_attr` up to `config2` (`PERF_ATTR_SIZE_VER1`); the
/// kernel treats the fields after it as zero.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
    config2: u64,
}

/// The `link_create` member of `union bpf_attr` for perf-event links,
/// padded with zeroes (the kernel requires unused bytes to be zero).
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    bpf_cookie: u64,
    _zero: [u64; 5],
}

/// Attaches `program` as a uprobe at `offset` of `binary`, in process
/// `pid` only (every process for 0), with the semaphore at file offset `ref_ctr_offset` kept
/// raised by the kernel for as long as the returned link lives.
pub fn attach(
    program: impl AsFd,
    binary: &Path,
    offset: u64,
    ref_ctr_offset: u64,
    pid: u32,
    cookie: u64,
) -> Result<RefCtrLink, RefCtrError> {
    let pmu_type = read_pmu_type()?;
    let ref_ctr_shift = read_format_shift("ref_ctr_offset")?;
    let path = CString::new(binary.as_os_str().as_bytes()).map_err(|_| RefCtrError::Path)?;
    let attr = PerfEventAttr {
        type_: pmu_type,
        size: size_of::<PerfEventAttr>() as u32,
        config: ref_ctr_offset << ref_ctr_shift,
        config1: path.as_ptr() as u64,
        config2: offset,
        ..PerfEventAttr::default()
    };
    // SAFETY: `attr` is a valid perf_event_attr prefix whose `size` says how
    // much of it there is; `path` outlives the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttr,
            // A uprobe for every process is opened on one CPU (any works:
            // the BPF program runs wherever the probe is hit).
            if pid == 0 { -1 } else { pid as libc::pid_t },
            if pid == 0 { 0 } else { -1 as libc::c_int },
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(RefCtrError::PerfEventOpen(io::Error::last_os_error()));
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    let event = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let link_attr = LinkCreateAttr {
        prog_fd: program.as_fd().as_raw_fd() as u32,
        target_fd: event.as_raw_fd() as u32,
        attach_type: BPF_PERF_EVENT,
        bpf_cookie: cookie,
        ..LinkCreateAttr::default()
    };
    // SAFETY: `link_attr` is a zero-padded bpf_attr prefix of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_CREATE,
            &link_attr as *const LinkCreateAttr,
            size_of::<LinkCreateAttr>() as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(RefCtrError::LinkCreate(io::Error::last_os_error()));
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    let link = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    Ok(RefCtrLink {
        _link: link,
        _event: event,
    })
}

fn read_pmu_type() -> Result<u32, RefCtrError> {
    let text = std::fs::read_to_string(format!("{UPROBE_PMU}/type")).map_err(|e| pmu("type", e))?;
    text.trim().parse().map_err(|_| RefCtrError::Pmu {
        what: format!("type (it reads {:?})", text.trim()),
    })
}

/// The first bit of a `config` field named in the PMU's `format/` directory
/// (`config:32-63` for `ref_ctr_offset`).
fn read_format_shift(field: &str) -> Result<u32, RefCtrError> {
    let text = std::fs::read_to_string(format!("{UPROBE_PMU}/format/{field}"))
        .map_err(|e| pmu(&format!("format/{field}"), e))?;
    parse_format_shift(&text).ok_or_else(|| RefCtrError::Pmu {
        what: format!("format/{field} (it reads {:?})", text.trim()),
    })
}

fn parse_format_shift(text: &str) -> Option<u32> {
    let bits = text.trim().strip_prefix("config:")?;
    let first = bits.split('-').next()?;
    first.parse().ok().filter(|&b: &u32| b < 64)
}

fn pmu(what: &str, e: io::Error) -> RefCtrError {
    RefCtrError::Pmu {
        what: format!("{what} ({e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_format_bits() {
        assert_eq!(parse_format_shift("config:32-63\n"), Some(32));
        assert_eq!(parse_format_shift("config:0"), Some(0));
        assert_eq!(parse_format_shift("config1:0-63"), None);
        assert_eq!(parse_format_shift("config:64"), None);
        assert_eq!(parse_format_shift(""), None);
    }

    #[test]
    fn attr_layouts_match_the_kernel() {
        // PERF_ATTR_SIZE_VER1 and the link_create member padded to 64 bytes.
        assert_eq!(size_of::<PerfEventAttr>(), 72);
        assert_eq!(size_of::<LinkCreateAttr>(), 64);
    }
}
