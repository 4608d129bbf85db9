//! HotSpot, the OpenJDK JVM: safepoints, the VM operations they run, their
//! time to safepoint, and the GC pauses inside them, from the USDT probes
//! of `libjvm.so`.

mod causes;
mod detect;

pub use causes::{is_explicit_gc_operation, vm_operation_type_name};

use pausewatch_common::Kind;

use super::{
    CauseText, RuntimeModule,
    support::{self, Support, Tested},
};
use crate::discovery::{Discovered, DiscoveryError, Process};

/// The BPF programs of the memory-pool probes, which `--no-heap` leaves
/// unattached.
pub const HEAP_PROGRAMS: [&str; detect::HEAP_PROBES.len()] = {
    let mut out = [""; detect::HEAP_PROBES.len()];
    let mut i = 0;
    while i < out.len() {
        out[i] = detect::HEAP_PROBES[i].2;
        i += 1;
    }
    out
};

/// The HotSpot module.
pub struct HotSpot;

/// The JDKs CI tests, each against `-Xlog:safepoint,gc`.
const TESTED: &[Tested] = &[
    Tested {
        series: "11",
        test: "e2e_jdk_matrix: JDK 11 G1, Parallel",
    },
    Tested {
        series: "17",
        test: "e2e_hotspot, e2e_jdk_matrix: JDK 17 Serial, Shenandoah; e2e_heap: JDK 17 Serial, Parallel, G1",
    },
    Tested {
        series: "21",
        test: "e2e_jdk_matrix: JDK 21 G1, ZGC, generational ZGC, Shenandoah",
    },
    Tested {
        series: "25",
        test: "e2e_hotspot, e2e_jdk_matrix: JDK 25 G1, Parallel, ZGC; e2e_heap: JDK 25 G1",
    },
];

/// The feature release a JDK version belongs to: `17` of `17.0.21.1`,
/// `8` of `1.8.0_412`.
fn feature_release(version: &str) -> String {
    let mut parts = version.trim().split(['.', '-', '_', '+']);
    match parts.next().unwrap_or_default() {
        "1" => parts.next().unwrap_or_default().to_string(),
        first => first.to_string(),
    }
}

impl RuntimeModule for HotSpot {
    fn label(&self) -> &'static str {
        "hotspot"
    }

    fn display_name(&self) -> &'static str {
        "HotSpot JVMs (libjvm.so with USDT probes)"
    }

    fn programs(&self) -> &'static [&'static str] {
        const N: usize = detect::PROBES.len() + detect::HEAP_PROBES.len();
        const PROGRAMS: [&str; N] = {
            let mut out = [""; N];
            let mut i = 0;
            while i < detect::PROBES.len() {
                out[i] = detect::PROBES[i].2;
                i += 1;
            }
            let mut j = 0;
            while j < detect::HEAP_PROBES.len() {
                out[i + j] = detect::HEAP_PROBES[j].2;
                j += 1;
            }
            out
        };
        &PROGRAMS
    }

    fn detect(&self, process: &Process) -> Result<Option<Discovered>, DiscoveryError> {
        detect::detect(process)
    }

    fn support(&self, version: &str) -> Support {
        support::from_table(TESTED, version, feature_release)
    }

    fn cause(&self, kind: Kind, cause: u64) -> CauseText {
        match kind {
            Kind::GcPause | Kind::GcConcurrent => {
                CauseText::Known(if cause == 0 { "minor" } else { "full" }.to_string())
            }
            // A safepoint during which no VM operation began (the agent
            // attached in the middle of it).
            Kind::Safepoint | Kind::TimeToSafepoint | Kind::VmOperation if cause == 0 => {
                CauseText::Known("unknown".to_string())
            }
            Kind::Safepoint | Kind::TimeToSafepoint | Kind::VmOperation => {
                CauseText::CString(cause)
            }
            Kind::Stw => CauseText::Known(cause.to_string()),
        }
    }

    fn cause_from_target(&self, text: String) -> String {
        vm_operation_type_name(&text).to_string()
    }

    /// `gc__begin`..`gc__end` runs inside a safepoint, which already covers
    /// it (plus the time to reach it).
    fn nested_in(&self, kind: Kind) -> Option<Kind> {
        (kind == Kind::GcPause).then_some(Kind::Safepoint)
    }

    fn is_full_gc(&self, cause: &str) -> bool {
        cause == "full"
    }

    fn is_explicit_gc(&self, cause: &str) -> bool {
        causes::is_explicit_gc_operation(cause)
    }

    fn default_rules(&self) -> &'static str {
        include_str!("rules.toml")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tested_and_expected_jdks() {
        assert_eq!(feature_release("17.0.21.1"), "17");
        assert_eq!(feature_release("1.8.0_412"), "8");
        assert_eq!(feature_release("25"), "25");
        assert!(matches!(
            HotSpot.support("21.0.8"),
            Support::Tested(t) if t.contains("JDK 21")
        ));
        assert_eq!(HotSpot.support("22.0.2"), Support::Expected);
        assert_eq!(HotSpot.support("unknown"), Support::Unknown);
    }

    #[test]
    fn gc_pauses_nest_in_safepoints() {
        assert!(HotSpot.counts_as_stall(Kind::Safepoint));
        assert!(!HotSpot.counts_as_stall(Kind::GcPause));
        assert!(!HotSpot.counts_as_stall(Kind::TimeToSafepoint));
        assert!(HotSpot.is_gc(Kind::GcPause, "minor"));
        assert!(HotSpot.is_full_gc("full"));
    }
}
