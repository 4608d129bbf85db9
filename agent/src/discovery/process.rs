//! What the agent needs to know about a process, read from `/proc`.

use std::os::unix::ffi::OsStrExt;
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
    /// The executable as `/proc/PID/exe` names it: relative to the agent's
    /// root when the file is reachable from there, to the process's own
    /// root otherwise, with ` (deleted)` once it is gone. For names and
    /// messages; the file itself is opened through the link (see
    /// [`super::binary`]).
    pub exe: PathBuf,
    /// Start time in clock ticks since boot; with the pid, identifies the
    /// process across pid reuse.
    pub start_time: u64,
    /// Files mapped executable into the process, one entry per file.
    pub mapped: Vec<Mapping>,
}

/// One file mapped executable into a process, as `/proc/PID/maps` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// The path maps prints, without the ` (deleted)` suffix: relative to
    /// the agent's root when the file is reachable from there (a plain
    /// chroot shows its directory in front), to the process's root when
    /// not (a pivot_root'ed container). Never opened as such.
    pub path: PathBuf,
    /// Whether maps marks the file deleted (removed or replaced on disk
    /// since it was mapped).
    pub deleted: bool,
    /// Start and end address of the file's first executable mapping, which
    /// name its `/proc/PID/map_files/` entry.
    pub range: (u64, u64),
    /// Device (major, minor) and inode of the mapped file, as maps shows them.
    pub dev: (u32, u32),
    /// Inode number of the mapped file.
    pub inode: u64,
}

/// What maps and `/proc/PID/exe` append to the path of a file that is gone.
const DELETED: &str = " (deleted)";

/// Splits the ` (deleted)` suffix off a path from maps or `/proc/PID/exe`.
pub fn strip_deleted(path: &Path) -> (PathBuf, bool) {
    let bytes = path.as_os_str().as_bytes();
    match bytes.strip_suffix(DELETED.as_bytes()) {
        Some(rest) => (PathBuf::from(std::ffi::OsStr::from_bytes(rest)), true),
        None => (path.to_path_buf(), false),
    }
}

impl Process {
    /// Reads a process's identity and executable mappings.
    pub fn inspect(pid: u32) -> Result<Process, DiscoveryError> {
        let p = ProcfsProcess::new(pid as i32).map_err(|e| proc_error(pid, "stat", e))?;
        let stat = p.stat().map_err(|e| proc_error(pid, "stat", e))?;
        let exe = p.exe().map_err(|e| proc_error(pid, "exe", e))?;
        let maps = p.maps().map_err(|e| proc_error(pid, "maps", e))?;
        let mut mapped: Vec<Mapping> = Vec::new();
        for m in maps {
            if let MMapPath::Path(path) = m.pathname
                && m.perms.contains(procfs::process::MMPermissions::EXECUTE)
            {
                let (path, deleted) = strip_deleted(&path);
                let dev = (m.dev.0 as u32, m.dev.1 as u32);
                // A file mapped twice is one entry, but a replaced file and
                // its successor, mapped under one path, are two.
                if !mapped
                    .iter()
                    .any(|x| x.dev == dev && x.inode == m.inode && x.path == path)
                {
                    mapped.push(Mapping {
                        path,
                        deleted,
                        range: m.address,
                        dev,
                        inode: m.inode,
                    });
                }
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
    pub fn find_mapped(&self, pred: impl Fn(&str) -> bool) -> Option<&Mapping> {
        self.mapped.iter().find(|m| {
            m.path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(&pred)
        })
    }

    /// `/proc/PID/map_files/START-END` of `mapping`: a link the kernel
    /// resolves to the mapped file itself, wherever it lives and whether or
    /// not it still has a name (opening it needs CAP_SYS_ADMIN).
    pub fn map_files_path(&self, mapping: &Mapping) -> PathBuf {
        let (start, end) = mapping.range;
        PathBuf::from(format!("/proc/{}/map_files/{start:x}-{end:x}", self.pid))
    }

    /// `/proc/PID/root`, the process's root directory as the agent reaches it.
    pub fn root(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.pid))
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
        let exe = me
            .find_mapped(|n| me.exe.ends_with(n))
            .expect("own exe mapped");
        assert!(!exe.deleted && exe.inode != 0, "{exe:?}");
        assert!(
            me.map_files_path(exe)
                .starts_with(format!("/proc/{}/map_files/", me.pid))
        );
        assert_eq!(
            strip_deleted(Path::new("/opt/jdk/lib/server/libjvm.so (deleted)")),
            (PathBuf::from("/opt/jdk/lib/server/libjvm.so"), true)
        );
        assert_eq!(
            strip_deleted(Path::new("/usr/bin/python3")),
            (PathBuf::from("/usr/bin/python3"), false)
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
