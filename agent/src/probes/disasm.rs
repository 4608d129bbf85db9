//! Call sites inside an x86-64 function, found by decoding its body.
//!
//! A uretprobe rewrites the return address on the stack; Go copies and
//! moves goroutine stacks, so a uretprobe on Go code corrupts them. To time
//! up to a point late in a function, the agent instead puts a plain uprobe on
//! an instruction inside the body, found here. Go code has no data in its
//! text, so a linear sweep from the entry to the next function decodes every
//! instruction.

use iced_x86::{Decoder, DecoderOptions, FlowControl};

/// Why a function body cannot be swept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DisasmError {
    /// An undecodable byte sequence inside the body.
    #[error("undecodable instruction at {0:#x}")]
    Invalid(u64),
}

/// Virtual addresses of every direct `CALL` to `target` in `code`, which
/// starts at `ip`.
pub fn call_sites(code: &[u8], ip: u64, target: u64) -> Result<Vec<u64>, DisasmError> {
    let mut decoder = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    let mut calls = Vec::new();
    while decoder.can_decode() {
        let insn = decoder.decode();
        if insn.is_invalid() {
            return Err(DisasmError::Invalid(insn.ip()));
        }
        if insn.flow_control() == FlowControl::Call && insn.near_branch_target() == target {
            calls.push(insn.ip());
        }
    }
    Ok(calls)
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
    fn reports_undecodable_bytes() {
        // 0x06 (push es) is invalid in 64-bit mode.
        assert_eq!(
            call_sites(&[0x90, 0x06], 0x10, 0),
            Err(DisasmError::Invalid(0x11))
        );
    }
}
