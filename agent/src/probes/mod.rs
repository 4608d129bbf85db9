//! Where to attach: probe sites decoded from the target's ELF files.
//!
//! [`usdt`] reads the SystemTap SDT notes that runtimes such as HotSpot and
//! CPython compile in, [`argspec`] decodes the notes' x86-64 argument specs
//! into what the BPF programs read from `pt_regs`, and [`elf`] holds the
//! shared plumbing (mapping files, address to file-offset translation);
//! [`symbols`] finds C++ functions by demangled name (for V8).
//! [`disasm`] decodes a function's instruction boundaries and call sites,
//! so a uprobe lands only on an instruction (Go's readers of its own
//! tables are in `runtimes::go`).

pub mod argspec;
pub mod disasm;
pub mod elf;
pub mod symbols;
pub mod usdt;

pub use argspec::{ArgLocation, ArgSpecError, Register, UsdtArg, parse_arg, parse_args};
pub use elf::{ElfError, LoadSegment, MappedFile};
pub use usdt::{NoteDefect, UsdtError, UsdtProbe, parse_usdt_notes, read_usdt_probes};
