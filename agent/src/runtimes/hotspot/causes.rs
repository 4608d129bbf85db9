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

/// Whether `name` is the VM operation of an explicitly requested full
/// collection: `CollectedHeap::collect(cause)` for `System.gc()` (and
/// `jcmd GC.run`, JVMTI `ForceGarbageCollection`, RMI's distributed GC,
/// which calls `System.gc()`) runs `VM_G1CollectFull` (G1),
/// `VM_GenCollectFull` (Serial) or `VM_ParallelGCSystemGC` (Parallel)
/// (`gcVMOperations.hpp`, `g1VMOperations.hpp`, `psVMOperations.hpp`, JDK
/// 11 to 25), while a full collection the allocator needs runs inside
/// `G1CollectForAllocation`, `GenCollectForAllocation` or
/// `ParallelGCFailedAllocation`. The `gc__begin` probe only says full or
/// not, and the memory manager (`G1 Old Generation`) is the same for both
/// kinds, so the operation's name is what tells them apart.
/// `-XX:+ExplicitGCInvokesConcurrent` turns G1's into
/// `G1TryInitiateConcMark`, not a full collection, and
/// `-XX:+DisableExplicitGC` into nothing.
pub fn is_explicit_gc_operation(name: &str) -> bool {
    matches!(
        name,
        "G1CollectFull" | "GenCollectFull" | "ParallelGCSystemGC"
    )
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
