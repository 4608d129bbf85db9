//! Where Ruby 3.1 keeps `objspace->flags` in a process, so that the BPF
//! side can tell a minor marking from a major one at `gc__mark__end`.
//!
//! The probes carry no argument. `gc_marks_start()` sets
//! `flags.during_minor_gc` inside the marking, so at `gc__mark__end` the
//! flags word says which it was. Its address is read, not guessed:
//! - `rb_during_gc()` (exported) is, in the machine code, exactly
//!   `mov GOT(%rip),%rax; mov (%rax),%rax; mov OBJSPACE(%rax),%rax;
//!   movzbl FLAGS(%rax),%eax; shr $BIT,%al; and $1,%eax; ret`: the GOT slot
//!   of `ruby_current_vm_ptr`, the offsets of `vm->objspace` and of the
//!   flags, and the `during_gc` bit;
//! - the GOT slot, read from the process, must hold the address of the
//!   exported `ruby_current_vm_ptr` (so the decoded load is that variable);
//! - the bit must be Ruby 3.1's 5, so that `during_minor_gc` is bit 9 (four
//!   fields later in 3.1's bitfield, `RUBY31_FLAG_MINOR`);
//! - `vm` and `vm->objspace` are read from the process once; both are set
//!   once at start-up and never move.
//!
//! At every `gc__mark__end` the BPF side reads the word and also requires
//! `during_gc`, which is set throughout a collection.

use std::path::{Path, PathBuf};

use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};
use object::{Object, ObjectSymbol};
use pausewatch_common::RUBY31_FLAG_DURING_GC;
use thiserror::Error;

use crate::{
    discovery::process::read_memory,
    probes::elf::{self, MappedFile},
};

/// Why the flags' address could not be found.
#[derive(Debug, Error)]
pub enum LayoutError {
    /// The library could not be read.
    #[error("cannot read {path}: {message}")]
    Read {
        /// The library.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A symbol the layout is read from is missing.
    #[error("{path} exports no {symbol}")]
    NoSymbol {
        /// The library.
        path: PathBuf,
        /// The symbol.
        symbol: &'static str,
    },
    /// `rb_during_gc` is not the code the layout is read from.
    #[error("rb_during_gc in {path} is not the expected code: {what}")]
    Code {
        /// The library.
        path: PathBuf,
        /// The instruction that differed.
        what: String,
    },
    /// The process's memory disagrees with the file.
    #[error("pid {pid}: {what}")]
    Memory {
        /// Process id.
        pid: u32,
        /// What was read and why it is wrong.
        what: String,
    },
}

/// What `rb_during_gc` says about the layout, as file addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlagsLayout {
    /// Address of the GOT slot `rb_during_gc` loads.
    pub got_slot: u64,
    /// Address of `ruby_current_vm_ptr`.
    pub vm_ptr: u64,
    /// Offset of `objspace` in `rb_vm_t`.
    pub objspace_off: u32,
    /// Offset of the flags in `rb_objspace_t`.
    pub flags_off: u32,
    /// Start of the first executable segment (page-aligned), which the
    /// process's first executable mapping of the library begins with.
    pub exec_base: u64,
}

/// Reads the layout from the library at `path`.
pub fn read_layout(path: &Path) -> Result<FlagsLayout, LayoutError> {
    let read = |message: String| LayoutError::Read {
        path: path.to_path_buf(),
        message,
    };
    let map = MappedFile::open(path).map_err(|e| read(e.to_string()))?;
    let file = elf::parse_elf64(map.data()).map_err(|e| read(e.to_string()))?;
    let segments = elf::load_segments(&file).map_err(|e| read(e.to_string()))?;
    let symbol = |name: &'static str| {
        file.dynamic_symbols()
            .find(|s| s.name() == Ok(name) && !s.is_undefined() && s.address() != 0)
            .map(|s| (s.address(), s.size()))
            .ok_or(LayoutError::NoSymbol {
                path: path.to_path_buf(),
                symbol: name,
            })
    };
    let (func, size) = symbol("rb_during_gc")?;
    let (vm_ptr, _) = symbol("ruby_current_vm_ptr")?;
    let offset = elf::vaddr_to_file_offset(&segments, func)
        .ok_or_else(|| read(format!("rb_during_gc at {func:#x} is in no segment")))?;
    let code = map
        .data()
        .get(offset as usize..(offset + size) as usize)
        .ok_or_else(|| read("rb_during_gc runs past the file".to_string()))?;
    let exec_base = segments
        .iter()
        .find(|s| s.is_executable())
        .map(|s| s.vaddr & !0xfff)
        .ok_or_else(|| read("no executable segment".to_string()))?;
    let mut layout = decode_during_gc(code, func).map_err(|what| LayoutError::Code {
        path: path.to_path_buf(),
        what,
    })?;
    layout.vm_ptr = vm_ptr;
    layout.exec_base = exec_base;
    Ok(layout)
}

/// Decodes `rb_during_gc` (at `ip`); `vm_ptr` and `exec_base` are left 0.
fn decode_during_gc(code: &[u8], ip: u64) -> Result<FlagsLayout, String> {
    let mut decoder = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    let mut next = |what: &str| -> Result<Instruction, String> {
        if !decoder.can_decode() {
            return Err(format!("ends before {what}"));
        }
        Ok(decoder.decode())
    };
    let mem_load = |i: &Instruction, m: Mnemonic, base: Register| {
        i.mnemonic() == m
            && i.op_count() == 2
            && i.op0_kind() == OpKind::Register
            && i.op1_kind() == OpKind::Memory
            && i.memory_base() == base
            && i.memory_index() == Register::None
    };
    let got = next("the GOT load")?;
    if !mem_load(&got, Mnemonic::Mov, Register::RIP) || got.op0_register() != Register::RAX {
        return Err(format!(
            "{:?} at {:#x} is not mov rax,[rip+GOT]",
            got.mnemonic(),
            got.ip()
        ));
    }
    let vm = next("the vm load")?;
    if !mem_load(&vm, Mnemonic::Mov, Register::RAX)
        || vm.op0_register() != Register::RAX
        || vm.memory_displacement64() != 0
    {
        return Err(format!(
            "{:?} at {:#x} is not mov rax,[rax]",
            vm.mnemonic(),
            vm.ip()
        ));
    }
    let objspace = next("the objspace load")?;
    if !mem_load(&objspace, Mnemonic::Mov, Register::RAX)
        || objspace.op0_register() != Register::RAX
    {
        return Err(format!(
            "{:?} at {:#x} is not mov rax,[rax+OBJSPACE]",
            objspace.mnemonic(),
            objspace.ip()
        ));
    }
    let flags = next("the flags load")?;
    if !mem_load(&flags, Mnemonic::Movzx, Register::RAX) || flags.memory_size().size() != 1 {
        return Err(format!(
            "{:?} at {:#x} is not movzx eax,byte [rax+FLAGS]",
            flags.mnemonic(),
            flags.ip()
        ));
    }
    let shr = next("the shift")?;
    if shr.mnemonic() != Mnemonic::Shr || shr.op1_kind() != OpKind::Immediate8 {
        return Err(format!(
            "{:?} at {:#x} is not shr al,BIT",
            shr.mnemonic(),
            shr.ip()
        ));
    }
    let and = next("the mask")?;
    if and.mnemonic() != Mnemonic::And || and.immediate(1) != 1 {
        return Err(format!(
            "{:?} at {:#x} is not and eax,1",
            and.mnemonic(),
            and.ip()
        ));
    }
    let ret = next("the return")?;
    if ret.mnemonic() != Mnemonic::Ret {
        return Err(format!(
            "{:?} at {:#x} is not ret",
            ret.mnemonic(),
            ret.ip()
        ));
    }
    // The flags byte's bit, as a bit of the 32-bit flags word.
    let byte = flags.memory_displacement64();
    let bit = u32::from(shr.immediate8());
    if 1u32 << bit != RUBY31_FLAG_DURING_GC {
        return Err(format!(
            "during_gc is bit {bit}, not Ruby 3.1's {}",
            RUBY31_FLAG_DURING_GC.trailing_zeros()
        ));
    }
    Ok(FlagsLayout {
        got_slot: got.memory_displacement64(),
        vm_ptr: 0,
        objspace_off: u32::try_from(objspace.memory_displacement64())
            .map_err(|_| format!("{:#x}: offset out of range", objspace.ip()))?,
        flags_off: u32::try_from(byte)
            .map_err(|_| format!("{:#x}: offset out of range", flags.ip()))?,
        exec_base: 0,
    })
}

/// The address of `objspace->flags` in `pid`, whose first executable
/// mapping of the library starts at `exec_start`; `None` while the library
/// is not relocated or the VM not set up yet (just after exec).
pub fn flags_address(
    pid: u32,
    exec_start: u64,
    layout: &FlagsLayout,
) -> Result<Option<u64>, LayoutError> {
    let bias = exec_start.wrapping_sub(layout.exec_base);
    let mem = |what: String| LayoutError::Memory { pid, what };
    let read = |addr: u64, what: &str| {
        read_u64(pid, addr).ok_or_else(|| mem(format!("cannot read {what} at {addr:#x}")))
    };
    let slot = read(bias.wrapping_add(layout.got_slot), "the GOT slot")?;
    // Just after exec the dynamic loader has mapped libruby but not yet
    // relocated it (measured: the slot still 0 at 17 ms after exec in the
    // churn test); like an unset VM, the caller tries again later.
    if slot == 0 {
        return Ok(None);
    }
    let vm_ptr = bias.wrapping_add(layout.vm_ptr);
    if slot != vm_ptr {
        return Err(mem(format!(
            "rb_during_gc's GOT slot holds {slot:#x}, not ruby_current_vm_ptr's {vm_ptr:#x}"
        )));
    }
    let vm = read(vm_ptr, "ruby_current_vm_ptr")?;
    if vm == 0 {
        return Ok(None);
    }
    let objspace = read(
        vm.wrapping_add(u64::from(layout.objspace_off)),
        "vm->objspace",
    )?;
    if objspace == 0 {
        return Ok(None);
    }
    Ok(Some(objspace.wrapping_add(u64::from(layout.flags_off))))
}

fn read_u64(pid: u32, addr: u64) -> Option<u64> {
    let mut buf = [0u8; 8];
    (read_memory(pid, addr, &mut buf) == Some(8)).then(|| u64::from_le_bytes(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of `rb_during_gc` in the shape Debian's 3.1.2 build has
    /// (assembled here from the instructions, not copied from that build).
    fn during_gc(bit: u8) -> Vec<u8> {
        let mut code = vec![0x48, 0x8b, 0x05, 0x00, 0x01, 0x00, 0x00]; // mov rax,[rip+0x100]
        code.extend([0x48, 0x8b, 0x00]); // mov rax,[rax]
        code.extend([0x48, 0x8b, 0x80, 0x50, 0x04, 0x00, 0x00]); // mov rax,[rax+0x450]
        code.extend([0x0f, 0xb6, 0x40, 0x10]); // movzx eax,byte [rax+0x10]
        code.extend([0xc0, 0xe8, bit]); // shr al,bit
        code.extend([0x83, 0xe0, 0x01]); // and eax,1
        code.push(0xc3); // ret
        code
    }

    #[test]
    fn decodes_the_layout() {
        let l = decode_during_gc(&during_gc(5), 0x1000).unwrap();
        assert_eq!(l.got_slot, 0x1000 + 7 + 0x100);
        assert_eq!((l.objspace_off, l.flags_off), (0x450, 0x10));
    }

    #[test]
    fn refuses_other_code() {
        let e = decode_during_gc(&during_gc(6), 0x1000).unwrap_err();
        assert!(e.contains("bit 6"), "{e}");
        let mut code = during_gc(5);
        code[7..10].copy_from_slice(&[0x90, 0x90, 0x90]);
        assert!(decode_during_gc(&code, 0x1000).is_err());
        assert!(decode_during_gc(&during_gc(5)[..10], 0x1000).is_err());
    }

    /// Debian's libruby, against a live ruby3.1: the address found holds a
    /// flags word with `during_gc` clear (no collection runs while the
    /// script sleeps) and `GC.stat` agrees that it is an objspace.
    #[test]
    fn finds_the_flags_of_a_live_ruby() {
        let lib = Path::new("/usr/lib/x86_64-linux-gnu/libruby-3.1.so.3.1");
        assert!(lib.is_file(), "install Debian's ruby3.1");
        let layout = read_layout(lib).unwrap();
        let child = crate::runtimes::test_interpreter::Interpreter::start(
            "/usr/bin/ruby3.1",
            &["-e", "puts; $stdout.flush; $stdin.read"],
        );
        let process = crate::discovery::Process::inspect(child.pid()).unwrap();
        let mapping = process
            .find_mapped(|n| n.starts_with("libruby-3.1"))
            .expect("libruby mapped");
        let found = flags_address(child.pid(), mapping.range.0, &layout);
        let word = found
            .as_ref()
            .ok()
            .and_then(|a| a.map(|a| read_u64(child.pid(), a)));
        drop(child);
        let addr = found.unwrap().expect("the VM is up once the script runs");
        let word = word.flatten().expect("readable") as u32;
        assert_ne!(addr, 0);
        assert_eq!(word & RUBY31_FLAG_DURING_GC, 0, "flags {word:#x}");
    }
}
