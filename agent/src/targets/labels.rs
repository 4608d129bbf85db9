//! Container and pod labels of a process, for `pausewatch_target_info`.
//!
//! Sources, all local (no Kubernetes API):
//! - `container_id` and `pod_uid` come from the process's cgroup path
//!   (`/proc/PID/cgroup`), where container runtimes and the kubelet encode
//!   them: `.../docker-<id>.scope`, `/docker/<id>`, `cri-containerd-<id>.scope`,
//!   `crio-<id>.scope`, `libpod-<id>.scope`, and `kubepods...pod<uid>...`
//!   (systemd driver: `_` for `-` in the uid).
//! - `pod` and `namespace` are not in the cgroup path. For a process in a
//!   pod (a pod uid was found) they are read through `/proc/PID/root`: the
//!   kubelet bind-mounts the pod name as `/etc/hostname`, and the namespace
//!   is in the service account mount
//!   (`/var/run/secrets/kubernetes.io/serviceaccount/namespace`) when the
//!   pod has one. Either may be absent; the label is then empty.
//!
//! The cgroup path is parsed by hand: it is a `/`-separated string whose
//! naming is a convention of the runtimes, not a format any crate parses.

use std::{
    ffi::CString,
    fs::File,
    io::Read,
    os::fd::{AsRawFd, FromRawFd},
};

/// Where a process runs, as far as the host can tell. Empty strings mean
/// unknown (or not in a container / pod).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerLabels {
    /// Full container id (64 hex digits) from the cgroup path.
    pub container_id: String,
    /// Kubernetes pod uid from the cgroup path.
    pub pod_uid: String,
    /// Kubernetes namespace, from the pod's service account mount.
    pub namespace: String,
    /// Pod name, from the pod's `/etc/hostname`.
    pub pod: String,
    /// The CPU limit of its cgroup in thousandths of a core
    /// (`targets::cpu_limit`), `None` without one. Not a label: the rules
    /// read it (`cpu_limit_cores`).
    pub cpu_limit_millicores: Option<u32>,
}

const SERVICE_ACCOUNT_NAMESPACE: &str = "var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Reads the labels of `pid`; anything unreadable is left empty (a process
/// that exited meanwhile is not an error here: the lifecycle notices).
pub fn read(pid: u32) -> ContainerLabels {
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let mut labels = from_cgroup(&cgroup);
    labels.cpu_limit_millicores = super::cpu_limit::from_cgroup(
        &cgroup,
        std::path::Path::new(super::cpu_limit::CGROUP_ROOT),
        |p| std::fs::read_to_string(p).ok(),
    )
    .map(|cores| (cores * 1000.0).round() as u32);
    if !labels.pod_uid.is_empty() {
        labels.pod = read_word(pid, "etc/hostname");
        labels.namespace = read_word(pid, SERVICE_ACCOUNT_NAMESPACE);
    }
    labels
}

/// A one-word file of the process's file system, or empty.
fn read_word(pid: u32, path: &str) -> String {
    read_in_root(pid, path)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s.len() <= 253 && !s.contains(char::is_whitespace))
        .unwrap_or_default()
}

/// Reads `path` as the process would, with `/proc/PID/root` as `/`.
/// Plain `/proc/PID/root/var/run/...` is not enough: images make `/var/run`
/// an absolute symlink to `/run`, which the kernel would resolve against the
/// agent's root. `openat2(RESOLVE_IN_ROOT)` resolves it inside the process's.
fn read_in_root(pid: u32, path: &str) -> Option<String> {
    let root = File::open(format!("/proc/{pid}/root")).ok()?;
    let path = CString::new(path).ok()?;
    // SAFETY: open_how is plain integers; all-zero is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    // The last component may be a symlink too: Kubernetes' projected
    // service account files are (`namespace -> ..data/namespace`).
    how.flags = (libc::O_RDONLY | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: valid fd, NUL-terminated path and a properly sized open_how.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            path.as_ptr(),
            &how as *const libc::open_how,
            size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: openat2 returned a new fd that nothing else owns.
    let mut file = unsafe { File::from_raw_fd(fd as i32) };
    let mut text = String::new();
    // A label is a word; anything longer than a page is not one.
    file.by_ref().take(4096).read_to_string(&mut text).ok()?;
    Some(text)
}

/// Container id and pod uid from the text of `/proc/PID/cgroup`. With cgroup
/// v1 there is a line per hierarchy; the unified (`0::`) line is preferred,
/// then the first line that names a container.
pub fn from_cgroup(text: &str) -> ContainerLabels {
    let unified = text.lines().filter(|l| l.starts_with("0::"));
    let others = text.lines().filter(|l| !l.starts_with("0::"));
    let paths = unified
        .chain(others)
        .filter_map(|l| l.splitn(3, ':').nth(2));
    for path in paths {
        let labels = from_path(path);
        if !labels.container_id.is_empty() || !labels.pod_uid.is_empty() {
            return labels;
        }
    }
    ContainerLabels::default()
}

fn from_path(path: &str) -> ContainerLabels {
    let mut labels = ContainerLabels::default();
    for part in path.split('/').rev() {
        if labels.container_id.is_empty()
            && let Some(id) = container_id(part)
        {
            labels.container_id = id.to_string();
        }
        if labels.pod_uid.is_empty()
            && let Some(uid) = pod_uid(part)
        {
            labels.pod_uid = uid;
        }
    }
    labels
}

/// `docker-<id>.scope`, `cri-containerd-<id>.scope`, `crio-<id>`, `<id>`...:
/// the last `-`-separated word, without `.scope`, if it is 64 hex digits.
fn container_id(part: &str) -> Option<&str> {
    let part = part.strip_suffix(".scope").unwrap_or(part);
    let id = part.rsplit('-').next()?;
    (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

/// `pod<uid>` (cgroupfs driver) or `kubepods-<qos>-pod<uid_with_underscores>.slice`
/// (systemd driver).
fn pod_uid(part: &str) -> Option<String> {
    let part = part.strip_suffix(".slice").unwrap_or(part);
    let at = part.rfind("pod")?;
    let uid = part[at + 3..].replace('_', "-");
    is_uuid(&uid).then_some(uid)
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f3c1a0e9b7d5c2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a";
    const UID: &str = "0b6c4e2a-1f3d-4a5b-9c8d-7e6f5a4b3c2d";

    #[test]
    fn kubernetes_systemd_driver() {
        let uid = UID.replace('-', "_");
        let text = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice/cri-containerd-{ID}.scope\n"
        );
        let l = from_cgroup(&text);
        assert_eq!(l.container_id, ID);
        assert_eq!(l.pod_uid, UID);
    }

    #[test]
    fn kubernetes_cgroupfs_driver_v1() {
        let text = format!(
            "12:pids:/kubepods/besteffort/pod{UID}/{ID}\n11:memory:/kubepods/besteffort/pod{UID}/{ID}\n0::/\n"
        );
        let l = from_cgroup(&text);
        assert_eq!(l.container_id, ID);
        assert_eq!(l.pod_uid, UID);
    }

    #[test]
    fn docker_and_podman() {
        for path in [
            format!("/system.slice/docker-{ID}.scope"),
            format!("/docker/{ID}"),
            format!("/machine.slice/libpod-{ID}.scope/container"),
            format!("/kubepods.slice/crio-{ID}.scope"),
        ] {
            let l = from_cgroup(&format!("0::{path}\n"));
            assert_eq!(l.container_id, ID, "{path}");
            assert_eq!(l.pod_uid, "", "{path}");
        }
    }

    /// Whole `/proc/PID/cgroup` texts as each engine and cgroup driver
    /// leaves them, under cgroup v1 (a line per hierarchy, as on this
    /// project's CI host) and v2.
    #[test]
    fn every_engine_and_driver_under_v1_and_v2() {
        let uid = UID.replace('-', "_");
        let v1 = |path: &str| {
            format!("12:pids:{path}\n4:memory:{path}\n1:name=systemd:{path}\n0::{path}\n")
        };
        let cases = [
            // podman, cgroupfs manager (root, cgroup v1): seen by e2e_containers.
            (v1(&format!("/libpod_parent/libpod-{ID}")), ""),
            // podman, systemd manager, v2.
            (format!("0::/machine.slice/libpod-{ID}.scope\n"), ""),
            // docker, cgroupfs driver, v1; systemd driver, v2.
            (v1(&format!("/docker/{ID}")), ""),
            (format!("0::/system.slice/docker-{ID}.scope\n"), ""),
            // containerd (CRI), systemd driver, v1 with the pod slice.
            (
                v1(&format!(
                    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid}.slice/cri-containerd-{ID}.scope"
                )),
                UID,
            ),
            // CRI-O, systemd driver, v2; cgroupfs driver, v1.
            (
                format!("0::/kubepods.slice/kubepods-pod{uid}.slice/crio-{ID}.scope\n"),
                UID,
            ),
            (v1(&format!("/kubepods/burstable/pod{UID}/crio-{ID}")), UID),
        ];
        for (text, pod) in &cases {
            let l = from_cgroup(text);
            assert_eq!(l.container_id, ID, "{text}");
            assert_eq!(l.pod_uid, *pod, "{text}");
        }
        // v1 with the unified line at the root (a hybrid host): the
        // hierarchies' lines still name the container.
        let hybrid = format!("4:memory:/libpod_parent/libpod-{ID}\n0::/\n");
        assert_eq!(from_cgroup(&hybrid).container_id, ID);
    }

    #[test]
    fn host_processes_have_no_labels() {
        for text in [
            "0::/\n",
            "0::/user.slice/user-1000.slice/session-2.scope\n",
            "4:memory:/process_api/eee1d7327c3bc12897be3ec8067afc2e\n0::/\n",
            "",
            "garbage",
        ] {
            assert_eq!(from_cgroup(text), ContainerLabels::default(), "{text}");
        }
    }

    #[test]
    fn reads_files_inside_the_process_root() {
        let me = std::process::id();
        let direct = std::fs::read_to_string("/etc/os-release").unwrap();
        assert_eq!(
            read_in_root(me, "etc/os-release").as_deref(),
            Some(direct.as_str())
        );
        // Symlinks are followed inside the root: /var/run -> /run on Debian.
        if std::fs::symlink_metadata("/var/run").is_ok_and(|m| m.file_type().is_symlink()) {
            std::fs::write("/run/pausewatch-labels-test", "word\n").unwrap();
            assert_eq!(read_word(me, "var/run/pausewatch-labels-test"), "word");
            std::fs::remove_file("/run/pausewatch-labels-test").unwrap();
        }
        assert_eq!(read_in_root(me, "no/such/file"), None);
    }

    #[test]
    fn reads_a_real_process() {
        // This test process is not in a pod: no pod lookups through its root.
        let l = read(std::process::id());
        assert_eq!(l.pod, "");
        assert_eq!(l.namespace, "");
    }
}
