//! What the agent needs to know about a process, read from `/proc`.

use std::path::{Path, PathBuf};

use procfs::{
    ProcError,
    process::{MMapPath, Process as ProcfsProcess},
};

use super::DiscoveryError;

/// A process as seen from the host.
#[derive(Clone, Debug)]
pub struct Process {
    /// Process id in the agent's pid namespace.
    pub pid: u32,
    /// `/proc/PID/comm`.
    pub comm: String,
    /// The executable, as the process sees it (inside its mount namespace).
    pub exe: PathBuf,
    /// Start time in clock ticks since boot; with the pid, identifies the
    /// process across pid reuse.
    pub start_time: u64,
    /// Files mapped executable into the process, as the process sees them.
    pub mapped: Vec<PathBuf>,
}

impl Process {
    /// Reads a process's identity and executable mappings.
    pub fn inspect(pid: u32) -> Result<Process, DiscoveryError> {
        let p = ProcfsProcess::new(pid as i32).map_err(|e| proc_error(pid, "stat", e))?;
        let stat = p.stat().map_err(|e| proc_error(pid, "stat", e))?;
        let exe = p.exe().map_err(|e| proc_error(pid, "exe", e))?;
        let maps = p.maps().map_err(|e| proc_error(pid, "maps", e))?;
        let mut mapped: Vec<PathBuf> = Vec::new();
        for m in maps {
            if let MMapPath::Path(path) = m.pathname
                && m.perms.contains(procfs::process::MMPermissions::EXECUTE)
                && !mapped.contains(&path)
            {
                mapped.push(path);
            }
        }
        Ok(Process {
            pid,
            comm: stat.comm,
            exe,
            start_time: stat.starttime,
            mapped,
        })
    }

    /// The first executable mapping whose file name satisfies `pred`.
    pub fn find_mapped(&self, pred: impl Fn(&str) -> bool) -> Option<&Path> {
        self.mapped
            .iter()
            .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(&pred))
            .map(PathBuf::as_path)
    }

    /// A path inside the process's mount namespace, made reachable from the
    /// host through `/proc/PID/root` (so containers need no special case).
    pub fn host_path(&self, inside: &Path) -> PathBuf {
        let rel = inside.strip_prefix("/").unwrap_or(inside);
        PathBuf::from(format!("/proc/{}/root", self.pid)).join(rel)
    }

    /// Whether the traced program still runs: same pid and start time, and
    /// no exec since (an exec keeps both but replaces the program).
    pub fn state(&self) -> ProcessState {
        if !self.is_alive() {
            return ProcessState::Exited;
        }
        match ProcfsProcess::new(self.pid as i32).and_then(|p| p.exe()) {
            Ok(exe) if exe == self.exe => ProcessState::Running,
            Ok(exe) => ProcessState::Execed(exe),
            // Gone between the two reads.
            Err(_) => ProcessState::Exited,
        }
    }

    /// Whether this process still runs (same pid, same start time).
    pub fn is_alive(&self) -> bool {
        ProcfsProcess::new(self.pid as i32)
            .and_then(|p| p.stat())
            .is_ok_and(|s| s.starttime == self.start_time && s.state != 'Z')
    }
}

/// What became of a traced process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcessState {
    /// Still the program that was inspected.
    Running,
    /// Exited (or a zombie, or its pid now names another process).
    Exited,
    /// Replaced its program with `execve`; the new executable.
    Execed(PathBuf),
}

impl std::fmt::Display for ProcessState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProcessState::Running => f.write_str("runs"),
            ProcessState::Exited => f.write_str("exited"),
            ProcessState::Execed(exe) => write!(f, "exec'd into {}", exe.display()),
        }
    }
}

fn proc_error(pid: u32, what: &'static str, e: ProcError) -> DiscoveryError {
    match e {
        ProcError::NotFound(_) => DiscoveryError::NoSuchProcess(pid),
        ProcError::PermissionDenied(_) => DiscoveryError::PermissionDenied { pid, what },
        other => DiscoveryError::Proc {
            pid,
            message: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspects_itself() {
        let me = Process::inspect(std::process::id()).unwrap();
        assert!(!me.comm.is_empty());
        assert!(me.is_alive());
        assert_eq!(me.state(), ProcessState::Running);
        let other = Process {
            exe: PathBuf::from("/nonexistent/previous-program"),
            ..me.clone()
        };
        assert_eq!(other.state(), ProcessState::Execed(me.exe.clone()));
        assert!(!me.mapped.is_empty());
        assert!(
            me.host_path(Path::new("/etc/hostname"))
                .starts_with("/proc")
        );
    }

    #[test]
    fn missing_pid_is_a_clear_error() {
        // pid_max is at most 2^22, so this pid cannot exist.
        let err = Process::inspect(9_999_999).unwrap_err();
        assert!(
            matches!(err, DiscoveryError::NoSuchProcess(9_999_999)),
            "{err}"
        );
        assert!(err.to_string().contains("no process with pid 9999999"));
    }
}
