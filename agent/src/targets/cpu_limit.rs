//! The CPU limit a process runs under: the CFS bandwidth quota of its cgroup
//! or of any cgroup above it, in cores, for the rules that tell a CPU limit
//! from a busy host when pauses wait for a CPU.
//!
//! cgroup v2 says it in `cpu.max` (`<quota> <period>` or `max <period>`);
//! cgroup v1's `cpu` controller in `cpu.cfs_quota_us` (`-1` for none) and
//! `cpu.cfs_period_us`. Kubernetes puts a pod's limit on the pod's cgroup
//! and each container's on the container's, so the effective limit is the
//! smallest on the way up to the root.

use std::path::{Path, PathBuf};

/// Where the cgroup file systems of the host are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The limit for a process whose `/proc/PID/cgroup` says `cgroup`, reading
/// the controller files under `root` with `read`.
pub fn from_cgroup(
    cgroup: &str,
    root: &Path,
    read: impl Fn(&Path) -> Option<String>,
) -> Option<f64> {
    let mut limit: Option<f64> = None;
    let mut tighten = |cores: Option<f64>| {
        if let Some(c) = cores {
            limit = Some(limit.map_or(c, |l| l.min(c)));
        }
    };
    for line in cgroup.lines() {
        // `hierarchy-id:controllers:path`; the path may itself hold colons.
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let relative = path.trim_start_matches('/');
        if controllers.is_empty() {
            // cgroup v2: mounted at the root, or at `unified` beside v1.
            for base in [root.to_path_buf(), root.join("unified")] {
                for dir in ancestors(&base, relative) {
                    tighten(read(&dir.join("cpu.max")).and_then(|t| parse_cpu_max(&t)));
                }
            }
        } else if controllers.split(',').any(|c| c == "cpu") {
            let base = root.join(controllers);
            let base = if read(&base.join("cpu.cfs_period_us")).is_some() {
                base
            } else {
                // Often mounted as `cpu,cpuacct` with a `cpu` symlink.
                root.join("cpu")
            };
            for dir in ancestors(&base, relative) {
                let quota = read(&dir.join("cpu.cfs_quota_us"));
                let period = read(&dir.join("cpu.cfs_period_us"));
                if let (Some(q), Some(p)) = (quota, period) {
                    tighten(cores(q.trim(), p.trim()));
                }
            }
        }
    }
    limit
}

/// `base/relative` and each of its parents up to `base`.
fn ancestors(base: &Path, relative: &str) -> Vec<PathBuf> {
    let mut dirs = vec![base.to_path_buf()];
    let mut dir = base.to_path_buf();
    for part in relative.split('/').filter(|p| !p.is_empty()) {
        dir.push(part);
        dirs.push(dir.clone());
    }
    dirs
}

/// Cores of a v2 `cpu.max` (`max 100000` is none).
fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut words = text.split_whitespace();
    cores(words.next()?, words.next()?)
}

/// Cores of a quota and a period in µs; a negative or `max` quota is none.
fn cores(quota: &str, period: &str) -> Option<f64> {
    let quota: i64 = quota.parse().ok()?;
    let period: i64 = period.parse().ok()?;
    (quota > 0 && period > 0).then(|| quota as f64 / period as f64)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn files(entries: &[(&str, &str)]) -> impl Fn(&Path) -> Option<String> {
        let map: HashMap<PathBuf, String> = entries
            .iter()
            .map(|(p, t)| (PathBuf::from(p), t.to_string()))
            .collect();
        move |p| map.get(p).cloned()
    }

    #[test]
    fn v2_takes_the_tightest_limit_on_the_way_up() {
        let cgroup = "0::/kubepods.slice/pod1.slice/cri-containerd-ab.scope\n";
        let read = files(&[
            ("/cg/cpu.max", "max 100000\n"),
            ("/cg/kubepods.slice/pod1.slice/cpu.max", "150000 100000\n"),
            (
                "/cg/kubepods.slice/pod1.slice/cri-containerd-ab.scope/cpu.max",
                "50000 100000\n",
            ),
        ]);
        assert_eq!(from_cgroup(cgroup, Path::new("/cg"), read), Some(0.5));
    }

    #[test]
    fn v2_max_is_no_limit() {
        let read = files(&[("/cg/a/cpu.max", "max 100000")]);
        assert_eq!(from_cgroup("0::/a", Path::new("/cg"), read), None);
    }

    #[test]
    fn v1_reads_the_cpu_controller_and_ignores_the_others() {
        // This host's layout: v1 controllers beside a v2 `unified` tree.
        let cgroup = "12:memory:/job\n4:cpu,cpuacct:/job\n0::/job\n";
        let read = files(&[
            ("/cg/cpu,cpuacct/job/cpu.cfs_quota_us", "20000\n"),
            ("/cg/cpu,cpuacct/job/cpu.cfs_period_us", "100000\n"),
            ("/cg/cpu,cpuacct/cpu.cfs_quota_us", "-1\n"),
            ("/cg/cpu,cpuacct/cpu.cfs_period_us", "100000\n"),
            ("/cg/memory/job/cpu.cfs_quota_us", "1000\n"),
        ]);
        assert_eq!(from_cgroup(cgroup, Path::new("/cg"), read), Some(0.2));
    }

    #[test]
    fn v1_through_the_cpu_symlink() {
        let read = files(&[
            ("/cg/cpu/job/cpu.cfs_quota_us", "5000"),
            ("/cg/cpu/job/cpu.cfs_period_us", "10000"),
        ]);
        assert_eq!(
            from_cgroup("4:cpuacct,cpu:/job", Path::new("/cg"), read),
            Some(0.5)
        );
    }

    #[test]
    fn unlimited_and_unreadable_are_none() {
        let read = files(&[
            ("/cg/cpu,cpuacct/cpu.cfs_quota_us", "-1"),
            ("/cg/cpu,cpuacct/cpu.cfs_period_us", "100000"),
        ]);
        assert_eq!(from_cgroup("4:cpu,cpuacct:/", Path::new("/cg"), read), None);
        assert_eq!(from_cgroup("garbage", Path::new("/cg"), files(&[])), None);
    }
}
