//! What the agent needs to know about a process, read from `/proc`.
//!
//! A process is named by its command name at exec ([`Process::comm`]), not
//! by whatever `/proc/PID/comm` says when the agent looks: programs rename
//! themselves (Node 24 calls its main thread, which is the process's comm,
//! `MainThread`; Node 26 `node-MainThread`; Python's `setproctitle` and
//! Node's `process.title` set any text). Where the exec was seen, the
//! tracepoint's name is used (`targets::follow`); for a process that ran
//! before the agent, [`exec_name`] reconstructs it from `/proc`.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use procfs::{
    ProcError,
    process::{MMPermissions, MMapPath, Process as ProcfsProcess},
};

use super::DiscoveryError;

/// A process as seen from the host.
#[derive(Clone, Debug)]
pub struct Process {
    /// Process id in the agent's pid namespace.
    pub pid: u32,
    /// The command name the kernel gave the process at its last exec: from
    /// the exec event when the agent saw it, else reconstructed by
    /// [`exec_name`]. Stable for the life of the program, whatever it calls
    /// itself later.
    pub comm: String,
    /// `/proc/PID/comm` when inspected: the name the program may have given
    /// itself since (`MainThread` for Node 24).
    pub current_comm: String,
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
    /// Every mapping of the file that the process cannot write, in address
    /// order: where names the runtime keeps in its read-only data can be
    /// read from the file once the process is gone
    /// (`collect::backing`).
    pub read_only: Vec<Segment>,
}

/// A range of a process's address space that maps a file's bytes from
/// `offset` and is not writable, so it holds what the file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// First address.
    pub start: u64,
    /// Address past the end.
    pub end: u64,
    /// File offset of the byte at `start`.
    pub offset: u64,
}

impl Segment {
    /// The segment of one maps line, or `None` when the process may write
    /// through it: a writable private mapping's pages (relocated data, a
    /// patched instruction) differ from the file's.
    pub fn of_map(address: (u64, u64), perms: MMPermissions, offset: u64) -> Option<Segment> {
        let (start, end) = address;
        (perms.contains(MMPermissions::READ)
            && !perms.contains(MMPermissions::WRITE)
            && start < end)
            .then_some(Segment { start, end, offset })
    }
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
    /// Reads a process's identity and executable mappings; its exec-time
    /// name is reconstructed from `/proc` (see [`exec_name`]).
    pub fn inspect(pid: u32) -> Result<Process, DiscoveryError> {
        Process::inspect_named(pid, None)
    }

    /// Like [`Process::inspect`], with the exec-time name `exec_comm` when
    /// the caller knows it (from the exec event), which then wins.
    pub fn inspect_named(pid: u32, exec_comm: Option<&str>) -> Result<Process, DiscoveryError> {
        let p = ProcfsProcess::new(pid as i32).map_err(|e| proc_error(pid, "stat", e))?;
        let stat = p.stat().map_err(|e| proc_error(pid, "stat", e))?;
        let exe = p.exe().map_err(|e| proc_error(pid, "exe", e))?;
        let comm = match exec_comm {
            Some(name) => name.to_string(),
            None => exec_name(&stat.comm, &exe, || {
                // Unreadable (the process is exiting): the executable's
                // name is the fallback, as for a rewritten argv.
                p.cmdline().unwrap_or_default()
            }),
        };
        let maps = p.maps().map_err(|e| proc_error(pid, "maps", e))?;
        let mut mapped: Vec<Mapping> = Vec::new();
        // Which file each non-writable mapping is of, matched once every
        // file mapped executable is known (its data comes before and after).
        let mut read_only = Vec::new();
        for m in maps {
            let MMapPath::Path(path) = m.pathname else {
                continue;
            };
            let (path, deleted) = strip_deleted(&path);
            let dev = (m.dev.0 as u32, m.dev.1 as u32);
            if let Some(segment) = Segment::of_map(m.address, m.perms, m.offset) {
                read_only.push((path.clone(), dev, m.inode, segment));
            }
            // A file mapped twice is one entry, but a replaced file and
            // its successor, mapped under one path, are two.
            if m.perms.contains(MMPermissions::EXECUTE)
                && !mapped
                    .iter()
                    .any(|x| x.dev == dev && x.inode == m.inode && x.path == path)
            {
                mapped.push(Mapping {
                    path,
                    deleted,
                    range: m.address,
                    dev,
                    inode: m.inode,
                    read_only: Vec::new(),
                });
            }
        }
        for (path, dev, inode, segment) in read_only {
            if let Some(file) = mapped
                .iter_mut()
                .find(|x| x.dev == dev && x.inode == inode && x.path == path)
            {
                file.read_only.push(segment);
            }
        }
        for file in &mut mapped {
            file.read_only.sort_by_key(|s| s.start);
        }
        Ok(Process {
            pid,
            comm,
            current_comm: stat.comm,
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

/// Longest command name the kernel keeps (`TASK_COMM_LEN` - 1).
pub const COMM_MAX: usize = pausewatch_common::COMM_LEN - 1;

/// `name` as the kernel would store it as a command name: cut to
/// [`COMM_MAX`] bytes (at a character boundary, so the result stays text).
pub fn kernel_comm(name: &str) -> &str {
    let mut end = name.len().min(COMM_MAX);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// The best reconstruction of the command name a process got at its exec,
/// for a process whose exec the agent did not see (it ran before the agent
/// started, or `--pid`), from its current name `current`, its executable
/// `exe` and, only when `current` is not simply the executable's name, its
/// argument vector `argv` (`/proc/PID/cmdline`).
///
/// The kernel names a process after the file name it was exec'd by (for a
/// script, the script's). `current` is that name unless the program renamed
/// itself, so it is kept when it still reads as one of the candidates: the
/// executable's file name, `argv[0]`'s (a symlink such as `python3` →
/// `python3.11` is exec'd by its own name, which the shell passes as
/// `argv[0]`), or, after an interpreter, `argv[1]` or `argv[2]`'s (a
/// `#!/usr/bin/python3` script runs as `[interpreter, (its argument),
/// script, ...]` named after the script). Otherwise the program renamed
/// itself, and `argv[0]` is taken if it still names the executable (its
/// file name is a prefix of the executable's: `node` for `node`, `python3`
/// for `python3.11`), for it is what the exec was called with; a program
/// that rewrote its argv too (`setproctitle`, Node's `process.title`) gets
/// the executable's file name, which no program can change.
pub fn exec_name(current: &str, exe: &Path, argv: impl FnOnce() -> Vec<String>) -> String {
    let exe_base = exe
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A replaced executable reads `/usr/bin/x (deleted)`.
    let exe_base = exe_base.strip_suffix(" (deleted)").unwrap_or(&exe_base);
    let exe_name = kernel_comm(exe_base);
    if current == exe_name {
        return current.to_string();
    }
    let argv = argv();
    let base =
        |arg: &str| -> String { kernel_comm(arg.rsplit('/').next().unwrap_or(arg)).to_string() };
    let argv0 = argv
        .first()
        .map(|a| base(a))
        .filter(|a| !a.is_empty() && exe_base.starts_with(a.as_str()));
    match argv0 {
        Some(argv0) => {
            if current == argv0 || argv.iter().skip(1).take(2).any(|a| base(a) == current) {
                current.to_string()
            } else {
                argv0
            }
        }
        None => exe_name.to_string(),
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

/// Reads up to `buf.len()` bytes at `addr` of process `pid`'s memory
/// (`process_vm_readv`): the number read, or `None` if nothing could be.
/// Reading never changes or stops the target.
pub fn read_memory(pid: u32, addr: u64, buf: &mut [u8]) -> Option<usize> {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: `local` describes `buf`, which outlives the call; the kernel
    // validates the remote range and fails instead of faulting.
    let n = unsafe { libc::process_vm_readv(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    (n > 0).then_some(n as usize)
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
        assert_eq!(
            me.comm, me.current_comm,
            "the test binary does not rename itself"
        );
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

    fn args(list: &[&str]) -> impl FnOnce() -> Vec<String> {
        let v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        move || v
    }

    #[test]
    fn exec_names_of_processes_that_renamed_themselves() {
        let never = || -> Vec<String> { panic!("argv is not needed when comm is the exe's name") };
        // Not renamed: kept, and argv not read.
        assert_eq!(
            exec_name("java", Path::new("/usr/lib/jvm/x/bin/java"), never),
            "java"
        );
        // Node 24's and 26's main thread names.
        let node = Path::new("/opt/node-v24/bin/node");
        assert_eq!(
            exec_name("MainThread", node, args(&["node", "app.js"])),
            "node"
        );
        assert_eq!(
            exec_name(
                "node-MainThread",
                node,
                args(&["/opt/node-v24/bin/node", "x.js"])
            ),
            "node"
        );
        // Exec'd through a symlink: the symlink's name, from argv[0].
        let py = Path::new("/usr/bin/python3.11");
        assert_eq!(
            exec_name("python3", py, args(&["python3", "-m", "x"])),
            "python3"
        );
        // A script run by its interpreter is named after the script.
        assert_eq!(
            exec_name(
                "manage.py",
                py,
                args(&["/usr/bin/python3", "./manage.py", "run"])
            ),
            "manage.py"
        );
        assert_eq!(
            exec_name(
                "tsc",
                node,
                args(&["/usr/bin/node", "--max-old-space-size=99", "bin/tsc"])
            ),
            "tsc"
        );
        // setproctitle / process.title rewrite argv as well: the exe's name.
        assert_eq!(
            exec_name("celery: worker", py, args(&["celery: worker"])),
            "python3.11"
        );
        assert_eq!(exec_name("my-api", node, args(&["my-api"])), "node");
        // Renamed by prctl alone, argv intact.
        assert_eq!(
            exec_name("worker-3", py, args(&["python3", "w.py"])),
            "python3"
        );
        // argv unreadable (exiting) and a replaced executable.
        assert_eq!(
            exec_name(
                "MainThread",
                Path::new("/usr/bin/node (deleted)"),
                args(&[])
            ),
            "node"
        );
        // Names are cut as the kernel cuts them.
        let long = Path::new("/srv/my-long-service-name");
        assert_eq!(
            exec_name("my-long-service", long, args(&[])),
            "my-long-service"
        );
        assert_eq!(exec_name("MainThread", long, args(&[])), "my-long-service");
        assert_eq!(kernel_comm("ééééééééé"), "ééééééé");
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
