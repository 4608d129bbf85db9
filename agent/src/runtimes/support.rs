//! How far a detected runtime version is vouched for: tested in CI against
//! that runtime's own log, or only expected to work because every probe
//! the agent needs was found and checked. (Versions the agent refuses never
//! get this far: detection fails with the reason.)
//!
//! Each runtime's table (in its module) is its part of the README's support
//! matrix; each tested entry names the end-to-end test that proves it.

use std::fmt;

/// The support level of one runtime version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    /// An end-to-end test in CI traces this version and checks the agent's
    /// numbers against the runtime's own log.
    Tested(&'static str),
    /// Not tested in CI, but every probe was found and passed its checks.
    Expected,
    /// The version could not be read (a JDK whose `release` file is not
    /// the running `libjvm.so`'s); every probe was found and checked.
    Unknown,
}

impl fmt::Display for Support {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Support::Tested(test) => write!(f, "tested in CI ({test})"),
            Support::Expected => f.write_str(
                "expected to work: this version is not tested in CI, \
                 but every probe the agent needs was found and checked",
            ),
            Support::Unknown => f.write_str(
                "version unknown, so not known to be tested; \
                 every probe the agent needs was found and checked",
            ),
        }
    }
}

/// One tested line of a runtime: the version series as its module reads
/// it (see [`major_minor`]) and the test that covers it.
pub struct Tested {
    /// The series, e.g. `17` for a JDK, `3.11` for CPython.
    pub series: &'static str,
    /// The end-to-end test that covers it, for `agent probes`.
    pub test: &'static str,
}

/// `major.minor` of a version string (`13.6` of `13.6.233.17-node.63`,
/// `1.23` of `go1.23.4`, `3.11` of `3.11`).
pub fn major_minor(version: &str) -> String {
    let version = version.trim().trim_start_matches("go");
    let mut parts = version.split(['.', '-', '_', '+']);
    let first = parts.next().unwrap_or_default();
    match parts.next() {
        Some(minor) => format!("{first}.{minor}"),
        None => first.to_string(),
    }
}

/// How far a version of series `series` is vouched for by `table`
/// (`unknown` versions are [`Support::Unknown`]).
pub fn from_table(table: &[Tested], version: &str, series: impl FnOnce(&str) -> String) -> Support {
    if version == "unknown" {
        return Support::Unknown;
    }
    let series = series(version);
    table
        .iter()
        .find(|t| t.series == series)
        .map_or(Support::Expected, |t| Support::Tested(t.test))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_major_minor() {
        assert_eq!(major_minor("13.6.233.17-node.63"), "13.6");
        assert_eq!(major_minor("3.11"), "3.11");
        assert_eq!(major_minor("go1.23.4"), "1.23");
        assert_eq!(major_minor("25"), "25");
    }

    #[test]
    fn tested_expected_and_unknown() {
        const T: &[Tested] = &[Tested {
            series: "3.11",
            test: "e2e_cpython",
        }];
        assert_eq!(
            from_table(T, "3.11", major_minor),
            Support::Tested("e2e_cpython")
        );
        assert_eq!(from_table(T, "3.12", major_minor), Support::Expected);
        assert_eq!(from_table(T, "unknown", major_minor), Support::Unknown);
        assert!(Support::Expected.to_string().starts_with("expected"));
    }
}
