//! Which processes the user asked for: `--all`, `--comm`, `--exe`, `--pid`,
//! minus `--exclude-pid`.
//!
//! The modes add up (a process is wanted if any of them names it), then the
//! exclusions are taken away. Whether a wanted process is traced also needs
//! a supported runtime in it, which discovery decides, and room under
//! `--max-targets`, which the lifecycle counts.
//!
//! `--comm` compares with the name the process got at its exec (see
//! `discovery::process`), not with `/proc/PID/comm` at the moment the agent
//! looks: that one changes when a program renames itself (Node 24's
//! `MainThread`), and a selection that depended on when the agent got to a
//! process would trace it or not by chance.
//!
//! `--exe` takes a shell-style wildcard (`*`, `?`). The matcher is written
//! here rather than taken from a glob crate: paths are matched as plain
//! strings (no directory semantics, no character classes, no file system),
//! which is a dozen lines, and none of the glob crates is in the tree.

use std::path::Path;

use crate::discovery::process::kernel_comm;

/// The selection rules from the command line.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Every process with a supported runtime.
    pub all: bool,
    /// Processes whose command name at exec is one of these.
    pub comms: Vec<String>,
    /// Processes whose executable matches one of these wildcards; a pattern
    /// without `/` is matched against the file name only.
    pub exes: Vec<String>,
    /// These pids, attached at start.
    pub pids: Vec<u32>,
    /// Never these pids.
    pub exclude: Vec<u32>,
}

impl Selection {
    /// Whether new processes must be followed (any mode besides `--pid`).
    pub fn follows(&self) -> bool {
        self.all || !self.comms.is_empty() || !self.exes.is_empty()
    }

    /// Whether the process `pid`, exec'd as `comm` from `exe`, is wanted.
    pub fn wants(&self, pid: u32, comm: &str, exe: &Path) -> bool {
        if self.exclude.contains(&pid) {
            return false;
        }
        self.all
            || self.pids.contains(&pid)
            || self.comms.iter().any(|c| comm_matches(c, comm))
            || self.exes.iter().any(|p| exe_matches(p, exe))
    }
}

/// `--comm` compares with the name as the kernel stores it, cut to 15 bytes,
/// so `--comm my-long-service-name` still finds its processes.
fn comm_matches(wanted: &str, comm: &str) -> bool {
    kernel_comm(wanted) == comm
}

fn exe_matches(pattern: &str, exe: &Path) -> bool {
    let text = if pattern.contains('/') {
        exe.to_string_lossy()
    } else {
        match exe.file_name() {
            Some(n) => n.to_string_lossy(),
            None => return false,
        }
    };
    wildcard(pattern.as_bytes(), text.as_bytes())
}

/// `*` matches any run of bytes (`/` included), `?` one byte.
fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    // Greedy with one back-tracking point: linear in practice, never
    // exponential.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard(b"*", b""));
        assert!(wildcard(b"java", b"java"));
        assert!(!wildcard(b"java", b"javac"));
        assert!(wildcard(b"jav?", b"java"));
        assert!(wildcard(
            b"/usr/lib/jvm/*/bin/java",
            b"/usr/lib/jvm/java-17/bin/java"
        ));
        assert!(wildcard(b"*python3*", b"/usr/bin/python3.11"));
        assert!(!wildcard(b"*python3", b"/usr/bin/python3.11"));
        assert!(wildcard(b"a*b*c", b"axxbyyc"));
        assert!(!wildcard(b"a*b*c", b"axxbyy"));
    }

    #[test]
    fn modes_add_up_and_exclusions_win() {
        let sel = Selection {
            comms: vec!["java".into()],
            exes: vec!["node".into(), "/opt/*/python3".into()],
            pids: vec![7],
            exclude: vec![8],
            ..Selection::default()
        };
        assert!(sel.follows());
        assert!(sel.wants(1, "java", Path::new("/usr/bin/java")));
        assert!(sel.wants(2, "MainThread", Path::new("/usr/local/bin/node")));
        assert!(sel.wants(3, "x", Path::new("/opt/app/python3")));
        assert!(!sel.wants(4, "x", Path::new("/usr/bin/python3")));
        assert!(sel.wants(7, "sleep", Path::new("/bin/sleep")));
        assert!(!sel.wants(8, "java", Path::new("/usr/bin/java")));

        let all = Selection {
            all: true,
            exclude: vec![9],
            ..Selection::default()
        };
        assert!(all.wants(1, "anything", Path::new("/bin/x")));
        assert!(!all.wants(9, "java", Path::new("/usr/bin/java")));

        let pids_only = Selection {
            pids: vec![5],
            ..Selection::default()
        };
        assert!(!pids_only.follows());
        assert!(!pids_only.wants(6, "java", Path::new("/usr/bin/java")));
    }

    #[test]
    fn long_command_names_match_as_the_kernel_cuts_them() {
        assert!(comm_matches("my-long-service-name", "my-long-service"));
        assert!(!comm_matches("my-long", "my-long-service"));
    }
}
