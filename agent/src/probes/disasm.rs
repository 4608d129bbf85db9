//! Instruction boundaries and call sites inside an x86-64 function, found by
//! decoding its body.
//!
//! Every Go probe is checked against such a sweep before it is attached: a
//! uprobe's int3 must replace the first byte of an instruction, or the
//! target crashes. A uretprobe rewrites the return address on the stack; Go copies and
//! moves goroutine stacks, so a uretprobe on Go code corrupts them. To time
//! up to a point late in a function, the agent instead puts a plain uprobe on
//! an instruction inside the body, found here. Go code has no data in its
//! text, so a linear sweep from the entry to the next function decodes every
//! instruction.

use iced_x86::{Decoder, DecoderOptions, FlowControl, OpKind};

/// Why a function body cannot be swept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DisasmError {
    /// An undecodable byte sequence inside the body.
    #[error("undecodable instruction at {0:#x}")]
    Invalid(u64),
}

/// One direct `CALL rel32` of a body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    /// Address of the call instruction.
    pub site: u64,
    /// Address it calls.
    pub target: u64,
}

/// A function body decoded from its entry to its end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Body {
    /// Address of every instruction, ascending.
    pub starts: Vec<u64>,
    /// Every direct call, in address order.
    pub calls: Vec<Call>,
}

impl Body {
    /// Whether an instruction starts exactly at `addr`.
    pub fn is_boundary(&self, addr: u64) -> bool {
        self.starts.binary_search(&addr).is_ok()
    }

    /// Sites of the direct calls to `target`.
    pub fn call_sites(&self, target: u64) -> Vec<u64> {
        self.calls
            .iter()
            .filter(|c| c.target == target)
            .map(|c| c.site)
            .collect()
    }
}

/// Decodes all of `code`, which starts at `ip`; an instruction cut off by
/// the end of `code` is an error like an undecodable one.
pub fn sweep(code: &[u8], ip: u64) -> Result<Body, DisasmError> {
    let mut decoder = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    let mut body = Body::default();
    while decoder.can_decode() {
        let insn = decoder.decode();
        if insn.is_invalid() {
            return Err(DisasmError::Invalid(insn.ip()));
        }
        body.starts.push(insn.ip());
        if insn.flow_control() == FlowControl::Call && insn.op0_kind() == OpKind::NearBranch64 {
            body.calls.push(Call {
                site: insn.ip(),
                target: insn.near_branch_target(),
            });
        }
    }
    Ok(body)
}

/// Virtual addresses of every direct `CALL` to `target` in `code`, which
/// starts at `ip`.
pub fn call_sites(code: &[u8], ip: u64, target: u64) -> Result<Vec<u64>, DisasmError> {
    Ok(sweep(code, ip)?.call_sites(target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_direct_calls_to_one_target() {
        // 0x1000: call 0x2000; 0x1005: call 0x3000; 0x100a: call rax;
        // 0x100c: call 0x2000; 0x1011: ret
        let code = [
            0xe8, 0xfb, 0x0f, 0x00, 0x00, // call rel32 → 0x2000
            0xe8, 0xf6, 0x1f, 0x00, 0x00, // call rel32 → 0x3000
            0xff, 0xd0, // call rax
            0xe8, 0xef, 0x0f, 0x00, 0x00, // call rel32 → 0x2000
            0xc3,
        ];
        assert_eq!(
            call_sites(&code, 0x1000, 0x2000).unwrap(),
            vec![0x1000, 0x100c]
        );
        assert!(call_sites(&code, 0x1000, 0x4000).unwrap().is_empty());
    }

    #[test]
    fn records_boundaries_and_direct_calls_only() {
        // 0x1000: call 0x2000; 0x1005: call rax; 0x1007: nop; 0x1008: ret
        let code = [0xe8, 0xfb, 0x0f, 0x00, 0x00, 0xff, 0xd0, 0x90, 0xc3];
        let body = sweep(&code, 0x1000).unwrap();
        assert_eq!(body.starts, vec![0x1000, 0x1005, 0x1007, 0x1008]);
        assert_eq!(
            body.calls,
            vec![Call {
                site: 0x1000,
                target: 0x2000
            }]
        );
        assert!(body.is_boundary(0x1005));
        assert!(!body.is_boundary(0x1001));
        // A call cut off by the end of the body.
        assert_eq!(sweep(&code[..3], 0x1000), Err(DisasmError::Invalid(0x1000)));
    }

    #[test]
    fn reports_undecodable_bytes() {
        // 0x06 (push es) is invalid in 64-bit mode.
        assert_eq!(
            call_sites(&[0x90, 0x06], 0x10, 0),
            Err(DisasmError::Invalid(0x11))
        );
    }
}
