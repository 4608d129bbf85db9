//! A process's binaries, opened by what the process has mapped rather than
//! by a path guessed from `/proc/PID/maps`.
//!
//! Maps prints a path relative to the *reader's* root whenever the file is
//! reachable from there (so a process in a plain chroot shows the chroot's
//! directory in front), relative to the process's own root only when the
//! file lies outside the reader's (a pivot_root'ed container), and with
//! ` (deleted)` once the file was removed or replaced. No rule of prefixing
//! `/proc/PID/root` or not gets all of these right, and a replaced file's
//! path names the successor, not the code the process runs. So a mapped
//! library is opened through `/proc/PID/map_files/START-END` and the
//! executable through `/proc/PID/exe`: links the kernel resolves to the
//! mapped file itself. Where `map_files` cannot be opened (it needs
//! CAP_SYS_ADMIN), the path is tried as the agent and as the process see
//! it, and accepted only if its device and inode are the ones maps shows.
//!
//! Everything after that, parsing and attaching, goes through
//! `/proc/self/fd/N` of the one open file ([`Binary::path`]): the kernel's
//! `kern_path` follows that link too, so the uprobe lands on the inode that
//! was parsed, which is the inode the process had mapped.

use std::{
    fmt,
    fs::File,
    io,
    os::{
        fd::AsRawFd,
        unix::fs::{FileExt, MetadataExt},
    },
    path::{Path, PathBuf},
    sync::Arc,
};

use super::cache::FileId;
use super::process::{Mapping, strip_deleted};
use super::{DiscoveryError, Process};

/// One of a process's binaries, held open. Cloning shares the open file.
#[derive(Clone)]
pub struct Binary {
    /// The path maps or `/proc/PID/exe` names, for messages and names.
    shown: PathBuf,
    /// Whether that name is marked ` (deleted)`.
    deleted: bool,
    /// What was opened: the `map_files` or `exe` link, or a verified path.
    via: PathBuf,
    file: Arc<File>,
    /// `/proc/self/fd/N` of `file`.
    fd_path: PathBuf,
    /// A path at which the agent reaches this same inode, if any.
    reachable: Option<PathBuf>,
}

impl Binary {
    /// Opens the file of `mapping` in `process`.
    pub fn open_mapped(process: &Process, mapping: &Mapping) -> Result<Binary, DiscoveryError> {
        let link = process.map_files_path(mapping);
        let (file, via) = match File::open(&link) {
            Ok(file) => (file, link),
            // Without CAP_SYS_ADMIN: a path whose device and inode are the
            // mapping's is the mapped file too.
            Err(e) if is_denied(&e) => {
                let found = candidates(process, &mapping.path).find_map(|path| {
                    let file = File::open(&path).ok()?;
                    let meta = file.metadata().ok()?;
                    let dev = (libc::major(meta.dev()), libc::minor(meta.dev()));
                    (dev == mapping.dev && meta.ino() == mapping.inode).then_some((file, path))
                });
                found.ok_or_else(|| open_error(process, &mapping.path, &link, e))?
            }
            Err(e) => return Err(open_error(process, &mapping.path, &link, e)),
        };
        Binary::new(process, mapping.path.clone(), mapping.deleted, via, file)
    }

    /// Opens the executable of `process` through `/proc/PID/exe`.
    pub fn open_exe(process: &Process) -> Result<Binary, DiscoveryError> {
        let link = PathBuf::from(format!("/proc/{}/exe", process.pid));
        let (shown, deleted) = strip_deleted(&process.exe);
        let file = File::open(&link).map_err(|e| open_error(process, &shown, &link, e))?;
        Binary::new(process, shown, deleted, link, file)
    }

    /// Opens a file by the agent's own path: for binaries that no process
    /// runs yet (tests and tools reading a build).
    pub fn open_path(path: &Path) -> io::Result<Binary> {
        let file = File::open(path)?;
        Ok(Binary {
            fd_path: PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd())),
            file: Arc::new(file),
            shown: path.to_path_buf(),
            deleted: false,
            via: path.to_path_buf(),
            reachable: Some(path.to_path_buf()),
        })
    }

    fn new(
        process: &Process,
        shown: PathBuf,
        deleted: bool,
        via: PathBuf,
        file: File,
    ) -> Result<Binary, DiscoveryError> {
        let meta = file
            .metadata()
            .map_err(|e| open_error(process, &shown, &via, e))?;
        let same = |path: &PathBuf| {
            std::fs::metadata(path).is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino())
        };
        let reachable = if deleted {
            None
        } else {
            candidates(process, &shown).find(same)
        };
        Ok(Binary {
            fd_path: PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd())),
            file: Arc::new(file),
            shown,
            deleted,
            via,
            reachable,
        })
    }

    /// The path to read the file at and to attach uprobes to, valid while
    /// this value (or a clone) lives.
    pub fn path(&self) -> &Path {
        &self.fd_path
    }

    /// The path the process's maps or `/proc/PID/exe` names, without
    /// ` (deleted)`: for messages and for telling runtimes apart by name.
    pub fn shown(&self) -> &Path {
        &self.shown
    }

    /// What the agent opened: the `map_files` or `exe` link, or the
    /// verified path it fell back to.
    pub fn via(&self) -> &Path {
        &self.via
    }

    /// A path at which the agent reaches this very file (same device and
    /// inode), for files beside it such as the JDK's `release`; `None`
    /// when the file was deleted or replaced, or lies where the agent
    /// cannot see it.
    pub fn reachable(&self) -> Option<&Path> {
        self.reachable.as_deref()
    }

    /// Whether the file was deleted or replaced since it was mapped.
    pub fn is_deleted(&self) -> bool {
        self.deleted
    }

    /// What the open file is now (device, inode, size and times, from
    /// `fstat`), the key of what was parsed from it
    /// ([`super::cache`]); `None` if `fstat` fails.
    pub fn file_id(&self) -> Option<FileId> {
        self.file.metadata().ok().map(|m| FileId::of(&m))
    }

    /// Reads bytes of the file from `offset` (`pread`). Through the open
    /// file, so they are the bytes of the inode the process mapped, even
    /// after the process exited or the file was replaced on disk.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }

    /// Whether two values hold the same open file.
    pub fn same_file(&self, other: &Binary) -> bool {
        Arc::ptr_eq(&self.file, &other.file)
    }
}

impl fmt::Display for Binary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.shown.display())?;
        if self.deleted {
            f.write_str(" (deleted)")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Binary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Binary")
            .field("shown", &self.shown)
            .field("deleted", &self.deleted)
            .field("via", &self.via)
            .field("fd_path", &self.fd_path)
            .field("reachable", &self.reachable)
            .finish()
    }
}

/// Where a path from maps may be reached: as the agent sees it (the
/// process shares the agent's root, or sits in a chroot below it), then as
/// the process sees it (its root is a mount of its own).
fn candidates(process: &Process, shown: &Path) -> impl Iterator<Item = PathBuf> {
    let inside = process
        .root()
        .join(shown.strip_prefix("/").unwrap_or(shown));
    [shown.to_path_buf(), inside].into_iter()
}

fn is_denied(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES))
}

fn open_error(process: &Process, shown: &Path, via: &Path, source: io::Error) -> DiscoveryError {
    // The mapping (or the process) went away between reading maps and
    // opening it: the process exited, which callers expect and handle.
    if matches!(
        source.raw_os_error(),
        Some(libc::ENOENT) | Some(libc::ESRCH)
    ) && !process.is_alive()
    {
        return DiscoveryError::NoSuchProcess(process.pid);
    }
    let hint = if is_denied(&source) {
        "; run the agent as root (opening /proc/PID/map_files needs CAP_SYS_ADMIN, \
         /proc/PID/exe of another user's process CAP_SYS_PTRACE)"
    } else {
        ""
    };
    DiscoveryError::Open {
        pid: process.pid,
        path: shown.to_path_buf(),
        via: via.to_path_buf(),
        source,
        hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn opens_the_mapped_file_itself() {
        let me = Process::inspect(std::process::id()).unwrap();
        let exe = Binary::open_exe(&me).unwrap();
        assert_eq!(exe.shown(), me.exe.as_path());
        assert!(exe.path().starts_with("/proc/self/fd/"));
        // The test binary is reachable at its own path.
        assert_eq!(exe.reachable(), Some(me.exe.as_path()));
        let mapping = me
            .mapped
            .iter()
            .find(|m| m.path == me.exe)
            .expect("the test binary is mapped");
        let mapped = Binary::open_mapped(&me, mapping).unwrap();
        assert!(
            mapped
                .via()
                .starts_with(format!("/proc/{}/map_files/", me.pid))
        );
        let (a, b) = (
            std::fs::metadata(exe.path()).unwrap(),
            std::fs::metadata(mapped.path()).unwrap(),
        );
        assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()));
        let mut head = [0u8; 4];
        File::open(mapped.path())
            .unwrap()
            .read_exact(&mut head)
            .unwrap();
        assert_eq!(&head, b"\x7fELF");
    }

    /// Drops CAP_SYS_ADMIN and CAP_CHECKPOINT_RESTORE from the calling
    /// thread's effective set (capabilities are per thread).
    fn drop_map_files_capabilities() {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy, Default)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let mut header = Header {
            version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
            pid: 0,
        };
        let mut data = [Data::default(); 2];
        // SAFETY: header and two data words, as version 3 requires.
        let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
        assert_eq!(rc, 0, "capget: {}", io::Error::last_os_error());
        data[0].effective &= !(1 << 21); // CAP_SYS_ADMIN
        data[1].effective &= !(1 << (40 - 32)); // CAP_CHECKPOINT_RESTORE
        // SAFETY: as above.
        let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
        assert_eq!(rc, 0, "capset: {}", io::Error::last_os_error());
    }

    #[test]
    fn without_map_files_only_a_path_with_the_mapped_inode_is_opened() {
        std::thread::spawn(|| {
            drop_map_files_capabilities();
            let me = Process::inspect(std::process::id()).unwrap();
            let mapping = me
                .mapped
                .iter()
                .find(|m| m.path == me.exe)
                .expect("the test binary is mapped")
                .clone();
            let denied = File::open(me.map_files_path(&mapping)).unwrap_err();
            assert!(is_denied(&denied), "map_files still opens: {denied}");
            let b = Binary::open_mapped(&me, &mapping).unwrap();
            assert_eq!(b.via(), mapping.path.as_path());
            assert_eq!(std::fs::metadata(b.path()).unwrap().ino(), mapping.inode);
            // Another file at no path the process has: refused, not guessed.
            let other = Mapping {
                inode: mapping.inode + 1,
                ..mapping
            };
            let err = Binary::open_mapped(&me, &other).unwrap_err();
            assert!(
                matches!(err, DiscoveryError::Open { .. })
                    && err.to_string().contains("CAP_SYS_ADMIN"),
                "{err}"
            );
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_process_gone_before_its_files_are_opened_is_no_such_process() {
        let mut child = std::process::Command::new("/usr/bin/sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let p = loop {
            let p = Process::inspect(child.id()).unwrap();
            if p.find_mapped(|n| n == "sleep").is_some() {
                break p;
            }
            assert!(std::time::Instant::now() < deadline, "{p:?}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        child.kill().unwrap();
        child.wait().unwrap();
        let mapping = p.find_mapped(|n| n == "sleep").unwrap();
        let err = Binary::open_mapped(&p, mapping).unwrap_err();
        assert!(matches!(err, DiscoveryError::NoSuchProcess(_)), "{err}");
        let err = Binary::open_exe(&p).unwrap_err();
        assert!(matches!(err, DiscoveryError::NoSuchProcess(_)), "{err}");
    }

    #[test]
    fn a_deleted_file_is_still_opened_and_not_reachable() {
        // A copy of python3.11 that is started, then deleted.
        let dir = std::env::temp_dir().join(format!("pausewatch-binary-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let copy = dir.join("python3.11");
        std::fs::copy("/usr/bin/python3.11", &copy).unwrap();
        // Another test thread forking meanwhile may hold the copy's write
        // descriptor for a moment (ETXTBSY).
        let mut tries = 0;
        let mut child = loop {
            match std::process::Command::new(&copy)
                .args(["-c", "import sys; sys.stdin.read()"])
                .stdin(std::process::Stdio::piped())
                .spawn()
            {
                Ok(c) => break c,
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 50 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("starting {}: {e}", copy.display()),
            }
        };
        // Wait until the interpreter's own image is mapped (exec done).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let p = loop {
            let p = Process::inspect(child.id()).unwrap();
            if p.exe == copy && p.mapped.iter().any(|m| m.path == copy) {
                break p;
            }
            assert!(std::time::Instant::now() < deadline, "{p:?}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        std::fs::remove_file(&copy).unwrap();
        // A successor under the same name must not be taken for it.
        std::fs::write(&copy, b"not the mapped file").unwrap();
        let p = Process::inspect(p.pid).unwrap();
        let exe = Binary::open_exe(&p).unwrap();
        let mapping = p.find_mapped(|n| n == "python3.11").unwrap().clone();
        assert!(exe.is_deleted() && mapping.deleted, "{exe:?} {mapping:?}");
        assert_eq!(exe.shown(), copy.as_path());
        assert_eq!(exe.reachable(), None);
        assert_eq!(exe.to_string(), format!("{} (deleted)", copy.display()));
        let mapped = Binary::open_mapped(&p, &mapping).unwrap();
        assert_eq!(mapped.reachable(), None);
        let meta = std::fs::metadata(mapped.path()).unwrap();
        assert_eq!(meta.ino(), mapping.inode);
        assert_eq!(meta.nlink(), 0);
        // And the interpreter is still recognised, with its probes in the
        // deleted file.
        let t = crate::runtimes::Runtime::CPython
            .module()
            .detect(&p)
            .unwrap()
            .expect("a deleted python3.11 is still CPython");
        assert_eq!(t.version, "3.11");
        assert!(
            t.probes.iter().any(|x| x.probe == "python:gc__start"),
            "{:?}",
            t.probes
        );
        drop(child.stdin.take());
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
