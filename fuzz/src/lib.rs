//! Fuzz target bodies, one function per target; each `src/bin/<name>.rs` is
//! the one line that hands libFuzzer's input to its function. `cargo xtask
//! fuzz` runs every file in `src/bin`, so a new target is a function here
//! and a one-line file there. Every function only checks that the parser
//! returns (an error is fine); a panic, hang or sanitizer report is a bug.
//! A crash found becomes a unit test next to the parser, with its input.

use pausewatch::probes::{elf, parse_args, parse_usdt_notes};
use pausewatch::runtimes::go::{buildinfo as gobuildinfo, pclntab::Pclntab};

/// The stapsdt note parser on a whole ELF file, and the argument decoder on
/// every probe it finds.
pub fn usdt_notes(data: &[u8]) {
    if let Ok(probes) = parse_usdt_notes(data) {
        for p in &probes {
            for i in 0..4 {
                if let Ok(arg) = p.arg(i) {
                    let _ = arg.to_bpf();
                }
            }
        }
    }
}

/// The USDT argument-spec decoder (`-4@%edi 8@-8(%rbp) ...`).
pub fn argspec(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(args) = parse_args(text)
    {
        for a in &args {
            let _ = a.to_bpf();
        }
    }
}

/// ELF header and program-header parsing, and address to file-offset
/// translation for addresses taken from the input itself.
pub fn elf_lookup(data: &[u8]) {
    let mut buf = Vec::new();
    let aligned = elf::aligned(data, &mut buf);
    let Ok(file) = elf::parse_elf64(aligned) else {
        return;
    };
    let Ok(segments) = elf::load_segments(&file) else {
        return;
    };
    let probes = data
        .chunks_exact(8)
        .take(64)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])));
    for addr in probes.chain(segments.iter().map(|s| s.vaddr)) {
        let _ = elf::vaddr_to_file_offset(&segments, addr);
        let _ = elf::vaddr_to_mapped_offset(&segments, addr);
        let _ = elf::segment_for_file_addr(&segments, addr);
        if let Some(s) = elf::segment_for_file_addr(&segments, addr) {
            let _ = s.file_offset(addr);
            let _ = s.is_executable();
        }
    }
}

/// The Go `.gopclntab` decoder (stripped Go binaries are read with it) and
/// the `.go.buildinfo` version reader, on the same bytes.
pub fn go_pclntab(data: &[u8]) {
    let _ = gobuildinfo::version(data);
    if let Ok(table) = Pclntab::parse(data) {
        for f in table.funcs().take(4096) {
            std::hint::black_box((f.name.len(), f.entry, f.end));
        }
        let _ = table.find("runtime.stopTheWorldWithSema");
    }
}

/// The rules file reader: TOML, the CEL conditions and their type check,
/// and the advice templates.
pub fn rules_file(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = pausewatch::rules::file::parse("fuzz.toml", text);
    }
}
