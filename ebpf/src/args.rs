//! Reads a USDT argument described by an [`ArgSpec`].
//!
//! The spec's location differs per build of a runtime (`8@%r12` in one
//! libjvm, `8@%rdx` in the next), so the agent decodes the note's text once
//! and hands the BPF side a compact spec through the attach cookie. This is
//! the approach of libbpf's `usdt.bpf.h`.

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_attach_cookie, bpf_probe_read_kernel, bpf_probe_read_user},
    programs::ProbeContext,
};
use pausewatch_common::{ARG_CONST, ARG_REG, ARG_REG_DEREF, ArgSpec};

use crate::maps::ARG_SPECS;

/// The value of the probe's argument, or `None` when it cannot be read.
#[inline(always)]
pub fn read_arg(ctx: &ProbeContext) -> Option<u64> {
    // SAFETY: a uprobe context is a valid argument to the cookie helper.
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    let spec: &ArgSpec = ARG_SPECS.get(cookie as u32)?;
    read_spec(ctx, spec)
}

/// The value of the argument that `spec` locates, or `None` when it cannot
/// be read (or the spec is `ARG_NONE`).
#[inline(always)]
pub fn read_spec(ctx: &ProbeContext, spec: &ArgSpec) -> Option<u64> {
    let raw: u64 = match spec.loc {
        ARG_CONST => spec.val as u64,
        ARG_REG | ARG_REG_DEREF => {
            // The offset is only known at run time, and the verifier rejects
            // variable-offset context reads, so copy the register out.
            let reg = (ctx.regs as *const u8).wrapping_add(spec.reg_off as usize) as *const u64;
            // SAFETY: reg_off was checked against sizeof(pt_regs) by the agent.
            let value = unsafe { bpf_probe_read_kernel(reg) }.ok()?;
            if spec.loc == ARG_REG {
                value
            } else {
                let addr = value.wrapping_add(spec.val as u64) as *const u64;
                // SAFETY: a faulting user read returns an error, never crashes.
                unsafe { bpf_probe_read_user(addr) }.ok()?
            }
        }
        _ => return None,
    };
    Some(narrow(raw, spec.size, spec.signed != 0))
}

/// Truncates to the argument's width and sign- or zero-extends back to 64 bits.
#[inline(always)]
fn narrow(raw: u64, size: u8, signed: bool) -> u64 {
    let shift = 64u32.saturating_sub(u32::from(size) * 8) & 63;
    if signed {
        (((raw << shift) as i64) >> shift) as u64
    } else {
        (raw << shift) >> shift
    }
}
