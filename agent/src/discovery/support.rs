//! How far a detected runtime version is vouched for: tested in CI against
//! that runtime's own log, or only expected to work because every probe
//! the agent needs was found and checked. (Versions the agent refuses never
//! get this far: detection fails with the reason.)
//!
//! The table is the README's support matrix; each tested entry names the
//! end-to-end test that proves it, so the two cannot drift apart silently.

use std::fmt;

use super::Runtime;

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

/// One tested line of a runtime: the version series as the agent reads it
/// (see [`series`]) and the test that covers it.
struct Tested {
    runtime: Runtime,
    series: &'static str,
    test: &'static str,
}

/// The versions CI tests, each against the runtime's own log (Go's are in
/// `go::layout`).
const TESTED: &[Tested] = &[
    Tested {
        runtime: Runtime::HotSpot,
        series: "11",
        test: "e2e_jdk_matrix: JDK 11 G1, Parallel",
    },
    Tested {
        runtime: Runtime::HotSpot,
        series: "17",
        test: "e2e_hotspot, e2e_jdk_matrix: JDK 17 Serial, Shenandoah",
    },
    Tested {
        runtime: Runtime::HotSpot,
        series: "21",
        test: "e2e_jdk_matrix: JDK 21 G1, ZGC, generational ZGC, Shenandoah",
    },
    Tested {
        runtime: Runtime::HotSpot,
        series: "25",
        test: "e2e_hotspot, e2e_jdk_matrix: JDK 25 G1, Parallel, ZGC",
    },
    Tested {
        runtime: Runtime::V8,
        series: "10.2",
        test: "e2e_v8: Node 18",
    },
    Tested {
        runtime: Runtime::V8,
        series: "11.3",
        test: "e2e_v8: Node 20",
    },
    Tested {
        runtime: Runtime::V8,
        series: "12.4",
        test: "e2e_v8: Node 22",
    },
    Tested {
        runtime: Runtime::V8,
        series: "13.6",
        test: "e2e_v8: Node 24",
    },
    Tested {
        runtime: Runtime::V8,
        series: "14.6",
        test: "e2e_v8: Node 26",
    },
    Tested {
        runtime: Runtime::CPython,
        series: "3.11",
        test: "e2e_cpython: CPython 3.11",
    },
    Tested {
        runtime: Runtime::CPython,
        series: "3.13",
        test: "e2e_mounts: CPython 3.13 in a chroot and behind pivot_root",
    },
    Tested {
        runtime: Runtime::CPython,
        series: "3.14",
        test: "e2e_mounts: CPython 3.14 in a chroot",
    },
    Tested {
        runtime: Runtime::Ruby,
        series: "3.1",
        test: "e2e_ruby: Ruby 3.1 (Debian ruby3.1)",
    },
];

/// The part of a version string the table keys on: the JDK feature release
/// (`17` of `17.0.21.1`, `8` of `1.8.0_412`), V8's major.minor (`13.6` of
/// `13.6.233.17-node.63`), CPython's and Go's major.minor.
pub fn series(runtime: Runtime, version: &str) -> String {
    let version = version.trim().trim_start_matches("go");
    let mut parts = version.split(['.', '-', '_', '+']);
    let first = parts.next().unwrap_or_default();
    match runtime {
        Runtime::HotSpot if first == "1" => parts.next().unwrap_or_default().to_string(),
        Runtime::HotSpot => first.to_string(),
        _ => match parts.next() {
            Some(minor) => format!("{first}.{minor}"),
            None => first.to_string(),
        },
    }
}

/// How far `version` of `runtime` is vouched for.
pub fn support(runtime: Runtime, version: &str) -> Support {
    if version == "unknown" {
        return Support::Unknown;
    }
    // Go's tested releases are those its detector has a tested probe
    // layout for; one list, in `go.rs`.
    if runtime == Runtime::Go {
        return match super::go::layout(version) {
            Some((_, super::go::Support::Tested)) => {
                Support::Tested("e2e_go: Go 1.19, 1.21 to 1.27")
            }
            _ => Support::Expected,
        };
    }
    let series = series(runtime, version);
    TESTED
        .iter()
        .find(|t| t.runtime == runtime && t.series == series)
        .map_or(Support::Expected, |t| Support::Tested(t.test))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_series_of_each_runtime() {
        assert_eq!(series(Runtime::HotSpot, "17.0.21.1"), "17");
        assert_eq!(series(Runtime::HotSpot, "1.8.0_412"), "8");
        assert_eq!(series(Runtime::HotSpot, "25"), "25");
        assert_eq!(series(Runtime::V8, "13.6.233.17-node.63"), "13.6");
        assert_eq!(series(Runtime::CPython, "3.11"), "3.11");
        assert_eq!(series(Runtime::Go, "go1.23.4"), "1.23");
        assert!(matches!(
            support(Runtime::Go, "go1.27.3"),
            Support::Tested(_)
        ));
        assert_eq!(support(Runtime::Go, "go1.31.0"), Support::Expected);
    }

    #[test]
    fn tested_and_expected() {
        assert!(matches!(
            support(Runtime::HotSpot, "21.0.8"),
            Support::Tested(t) if t.contains("JDK 21")
        ));
        assert_eq!(support(Runtime::HotSpot, "22.0.2"), Support::Expected);
        assert_eq!(
            support(Runtime::V8, "9.4.146.26-node.26"),
            Support::Expected
        );
        assert!(
            support(Runtime::HotSpot, "22")
                .to_string()
                .starts_with("expected")
        );
    }
}
