//! What the pause anatomy programs (`ebpf/src/anatomy.rs`) need to know
//! about the running kernel before they load.
//!
//! They are raw tracepoints on `sched_switch` and
//! `sched_waking`, which receive the kernel's own arguments. Those have
//! been `(preempt, prev, next)` and `(p)` since Linux 4.x; Linux 5.18 added
//! `prev_state` as `sched_switch`'s fourth. The kernel refuses to attach a
//! program that reads an argument the tracepoint does not pass, so the
//! program reads it only when the loader says the kernel has it.

/// Whether a kernel of this release (`uname -r`, e.g. `6.18.3-cloud`)
/// passes `prev_state` to `sched_switch`'s raw tracepoint (5.18 and later).
/// An unparsable release answers no: the programs then tell preempted from
/// voluntary switches only, which costs precision, never an attach.
pub fn switch_passes_prev_state(release: &str) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= (5, 18),
        _ => false,
    }
}

/// The running kernel's release, as `uname -r` prints it.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prev_state_from_5_18() {
        assert!(switch_passes_prev_state("6.18.0"));
        assert!(switch_passes_prev_state("5.18.0-1-amd64"));
        assert!(switch_passes_prev_state("10.0"));
        assert!(!switch_passes_prev_state("5.17.15"));
        assert!(!switch_passes_prev_state("5.15.0-91-generic"));
        assert!(!switch_passes_prev_state("4.19.0"));
        assert!(!switch_passes_prev_state(""));
        assert!(!switch_passes_prev_state("garbage"));
    }

    /// The running kernel's release, read independently (`uname(2)`),
    /// agrees with the file the agent reads.
    #[test]
    fn the_release_is_the_kernels() {
        // SAFETY: a zeroed utsname is valid for uname to fill.
        let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
        // SAFETY: a valid pointer to a utsname.
        assert_eq!(unsafe { libc::uname(&mut uts) }, 0);
        // SAFETY: uname NUL-terminates the field.
        let release = unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) };
        assert_eq!(kernel_release(), release.to_str().unwrap());
    }
}
