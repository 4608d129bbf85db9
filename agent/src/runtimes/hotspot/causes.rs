//! How HotSpot's cause ids become names: a safepoint's VM operation is the
//! address of its name in libjvm, read from the target; a GC pause's is
//! `gc__begin`'s "full" flag.

/// The name HotSpot's own tools (`-Xlog:safepoint`, JFR, `jcmd`) give a VM
/// operation whose `name()`, which the `vmops__begin` probe passes, is a
/// description instead.
///
/// HotSpot logs `VM_Operation::name(type())`, the operation's type name, but
/// the probe passes the virtual `name()`; they differ only where a class
/// overrides `name()`, which Shenandoah's operations do
/// (`shenandoahVMOperations.hpp`, JDK 17 to 25). Exporting the type name
/// keeps one operation one `cause` whichever tool a user compares with.
pub fn vm_operation_type_name(name: &str) -> &str {
    match name {
        "Shenandoah Init Marking" => "ShenandoahInitMark",
        "Shenandoah Final Mark and Start Evacuation" => "ShenandoahFinalMarkStartEvac",
        "Shenandoah Init Update References" => "ShenandoahInitUpdateRefs",
        "Shenandoah Final Update References" => "ShenandoahFinalUpdateRefs",
        "Shenandoah Final Roots" => "ShenandoahFinalRoots",
        "Shenandoah Full GC" => "ShenandoahFullGC",
        "Shenandoah Degenerated GC" => "ShenandoahDegeneratedGC",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shenandoah_operations_get_their_type_names() {
        assert_eq!(
            vm_operation_type_name("Shenandoah Init Marking"),
            "ShenandoahInitMark"
        );
        assert_eq!(
            vm_operation_type_name("G1CollectForAllocation"),
            "G1CollectForAllocation"
        );
    }
}
