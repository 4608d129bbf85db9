//! The text base of a Go executable, from its module data.
//!
//! A function's address is `runtime.text` plus its pc-line table entry
//! offset. `runtime.text` is the `text` field of the binary's one
//! `runtime.moduledata` record (`runtime.firstmoduledata`), the record the
//! runtime itself uses to map PCs to functions. Neither the `.text`
//! section's start (cgo binaries linked externally put C code first) nor the
//! pc-line header's `textStart` (always 0 from Go 1.26) can stand in for it.
//!
//! The record is found without symbols: the `.go.module` section (Go 1.26
//! and later), else the `runtime.firstmoduledata` symbol, else a search of
//! the writable segments for the one word that points to a pc-line table
//! header and whose neighbours describe that table. Whichever way, it is
//! accepted only when its fields agree with the table they point to, so a
//! changed layout is refused instead of guessed at.
//!
//! Fields read (unchanged from Go 1.18 to 1.27; 8-byte words):
//!
//! ```text
//! 0 pcHeader  8 funcnametab (ptr, len, cap)  128 ftab (ptr, len, cap)
//! 160 minpc  168 maxpc  176 text  184 etext
//! ```
//!
//! Pointers are read through the file's `R_X86_64_RELATIVE` relocations
//! when there are any: a linker may leave the bytes of a PIE's pointers 0
//! and put the value only in the relocation's addend.

use std::collections::HashMap;

use object::elf::{PF_W, R_X86_64_RELATIVE, SHF_ALLOC, SHT_RELA};
use object::read::elf::SectionHeader;
use object::{Object, ObjectSection, ObjectSymbol};

use super::pclntab::{MAGIC_118, MAGIC_120, Pclntab};
use crate::probes::elf::{self, Elf64, ElfError, LoadSegment};

/// Offsets of the `moduledata` fields read here.
const MD_FUNCNAMETAB: u64 = 8;
const MD_FTAB: u64 = 128;
const MD_FTAB_LEN: u64 = 136;
const MD_MINPC: u64 = 160;
const MD_MAXPC: u64 = 168;
const MD_TEXT: u64 = 176;
const MD_ETEXT: u64 = 184;
/// Offset of `textStart` in the pc-line header.
const HEADER_TEXT_START: u64 = 24;

/// The loaded bytes of an executable, addressed by link-time virtual address.
#[derive(Debug)]
pub struct Image<'a> {
    segments: Vec<(LoadSegment, &'a [u8])>,
    relative: HashMap<u64, u64>,
}

impl<'a> Image<'a> {
    /// An image of `segments` (each with its file-backed bytes) and the
    /// `R_X86_64_RELATIVE` relocations, address → addend.
    pub fn new(segments: Vec<(LoadSegment, &'a [u8])>, relative: HashMap<u64, u64>) -> Image<'a> {
        Image { segments, relative }
    }

    /// The `PT_LOAD` segments and allocated `RELA` relocations of `file`.
    pub fn from_elf(file: &Elf64<'a>) -> Result<Image<'a>, ElfError> {
        let data = file.data();
        let mut segments = Vec::new();
        for s in elf::load_segments(file)? {
            // load_segments checked that the file range lies in the file.
            let start = usize::try_from(s.offset).unwrap_or(usize::MAX);
            let len = usize::try_from(s.filesz).unwrap_or(usize::MAX);
            let bytes = start
                .checked_add(len)
                .and_then(|end| data.get(start..end))
                .unwrap_or_default();
            segments.push((s, bytes));
        }
        let endian = file.endian();
        let mut relative = HashMap::new();
        for section in file.sections() {
            let header = section.elf_section_header();
            if header.sh_type(endian) != SHT_RELA
                || header.sh_flags(endian) & u64::from(SHF_ALLOC) == 0
            {
                continue;
            }
            let Ok(bytes) = section.data() else { continue };
            for rela in bytes.chunks_exact(24) {
                let word =
                    |i: usize| u64::from_le_bytes(rela[i..i + 8].try_into().unwrap_or([0; 8]));
                if word(8) & 0xffff_ffff == u64::from(R_X86_64_RELATIVE) {
                    relative.insert(word(0), word(16));
                }
            }
        }
        Ok(Image { segments, relative })
    }

    /// The segment whose file-backed bytes hold `addr`.
    pub fn segment(&self, addr: u64) -> Option<&LoadSegment> {
        self.segments
            .iter()
            .map(|(s, _)| s)
            .find(|s| s.file_offset(addr).is_some())
    }

    /// `len` bytes at `addr`, if one segment's file-backed bytes hold them all.
    pub fn bytes(&self, addr: u64, len: u64) -> Option<&'a [u8]> {
        let tail = self.tail(addr)?;
        tail.get(..usize::try_from(len).ok()?)
    }

    /// The bytes from `addr` to the end of its segment's file-backed part.
    pub fn tail(&self, addr: u64) -> Option<&'a [u8]> {
        self.segments.iter().find_map(|(s, bytes)| {
            let delta = addr.checked_sub(s.vaddr)?;
            (delta < s.filesz).then_some(())?;
            bytes.get(usize::try_from(delta).ok()?..)
        })
    }

    /// The pointer-sized word at `addr`, as the loader leaves it (before the
    /// load bias of a PIE): the relocation's addend if one applies there.
    pub fn word(&self, addr: u64) -> Option<u64> {
        if let Some(&addend) = self.relative.get(&addr) {
            return Some(addend);
        }
        Some(u64::from_le_bytes(self.bytes(addr, 8)?.try_into().ok()?))
    }
}

/// Address of an array of Go strings (pointer, length) in the writable
/// segments whose first elements are `strings`, in order: how a table such
/// as `runtime.stwReasonStrings` is recognised without symbols.
pub fn find_string_table(image: &Image<'_>, strings: &[&str]) -> Option<u64> {
    let first = strings.first()?;
    let string_at = |addr: u64| {
        let ptr = image.word(addr)?;
        let len = image.word(addr.checked_add(8)?)?;
        image.bytes(ptr, len)
    };
    for (segment, bytes) in &image.segments {
        if segment.flags & PF_W == 0 {
            continue;
        }
        for (i, pair) in bytes.chunks_exact(16).enumerate() {
            // A crafted header may put a segment at the top of the space.
            let Some(addr) = segment.vaddr.checked_add(16 * i as u64) else {
                break;
            };
            // Cheap filter on the raw length word before any pointer read.
            if u64::from_le_bytes(pair[8..16].try_into().unwrap_or_default()) != first.len() as u64
            {
                continue;
            }
            let matches = strings.iter().enumerate().all(|(k, want)| {
                addr.checked_add(16 * k as u64)
                    .and_then(string_at)
                    .is_some_and(|got| got == want.as_bytes())
            });
            if matches {
                return Some(addr);
            }
        }
    }
    None
}

/// What the ELF headers say about where the module data and the pc-line
/// table are; each is checked against the record found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hints {
    /// Address of the `.go.module` section (Go 1.26 and later).
    pub module_section: Option<u64>,
    /// Address of `.gopclntab` (or `.data.rel.ro.gopclntab` in a PIE).
    pub pclntab_section: Option<u64>,
    /// `runtime.firstmoduledata` in `.symtab`.
    pub moduledata_symbol: Option<u64>,
    /// `runtime.text` in `.symtab`.
    pub text_symbol: Option<u64>,
}

impl Hints {
    /// The sections and symbols of `file` that locate the module data.
    pub fn from_elf(file: &Elf64<'_>) -> Hints {
        let section = |name: &str| file.section_by_name(name).map(|s| s.address());
        let mut hints = Hints {
            module_section: section(".go.module"),
            pclntab_section: section(".gopclntab").or_else(|| section(".data.rel.ro.gopclntab")),
            ..Hints::default()
        };
        for sym in file.symbols() {
            match sym.name() {
                Ok("runtime.firstmoduledata") => hints.moduledata_symbol = Some(sym.address()),
                Ok("runtime.text") => hints.text_symbol = Some(sym.address()),
                _ => {}
            }
        }
        hints
    }
}

/// How the module data was found, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FoundBy {
    /// The `.go.module` section.
    ModuleSection,
    /// The `runtime.firstmoduledata` symbol.
    Symbol,
    /// A search of the writable segments.
    Search,
}

impl FoundBy {
    /// Human-readable name.
    pub fn describe(self) -> &'static str {
        match self {
            FoundBy::ModuleSection => "the .go.module section",
            FoundBy::Symbol => "the runtime.firstmoduledata symbol",
            FoundBy::Search => "a search of the writable segments",
        }
    }
}

/// Why the text base could not be established.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ModuleError {
    /// A record named by a section or symbol fails a check.
    #[error("the Go module data at {addr:#x} (from {}) is not usable: {reason}", found_by.describe())]
    Invalid {
        /// Its address.
        addr: u64,
        /// Where it was named.
        found_by: FoundBy,
        /// The failed check.
        reason: String,
    },
    /// No record in the writable segments passes the checks.
    #[error(
        "found no Go module data (runtime.firstmoduledata) that matches a pc-line table: \
         the binary is not a Go 1.18+ amd64 executable, or its layout is one this agent \
         does not know"
    )]
    NotFound,
    /// More than one record passes (a binary with several Go modules).
    #[error("found {} candidate Go module data records (at {}); cannot tell which is the executable's", .0.len(), hex_list(.0))]
    Ambiguous(Vec<u64>),
}

fn hex_list(addrs: &[u64]) -> String {
    addrs
        .iter()
        .map(|a| format!("{a:#x}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A verified module: the pc-line table with its functions at their real
/// addresses.
#[derive(Debug)]
pub struct GoModule<'a> {
    /// The function table, counted from `text`.
    pub table: Pclntab<'a>,
    /// Address of the module data record.
    pub moduledata: u64,
    /// Address of the pc-line table header.
    pub pclntab: u64,
    /// `runtime.text`: the base of every function address.
    pub text: u64,
    /// First function entry (`minpc`).
    pub minpc: u64,
    /// End of the last function (`maxpc`).
    pub maxpc: u64,
    /// How the record was found.
    pub found_by: FoundBy,
}

/// Finds and checks the module data of the executable in `image`.
pub fn locate<'a>(image: &Image<'a>, hints: &Hints) -> Result<GoModule<'a>, ModuleError> {
    let named = hints
        .module_section
        .map(|a| (a, FoundBy::ModuleSection))
        .or_else(|| hints.moduledata_symbol.map(|a| (a, FoundBy::Symbol)));
    if let Some((addr, found_by)) = named {
        let module =
            check(image, hints, addr, found_by).map_err(|reason| ModuleError::Invalid {
                addr,
                found_by,
                reason,
            })?;
        if let Some(sym) = hints.moduledata_symbol.filter(|&s| s != addr) {
            return Err(ModuleError::Invalid {
                addr,
                found_by,
                reason: format!("runtime.firstmoduledata is at {sym:#x}"),
            });
        }
        return Ok(module);
    }
    let mut found = Vec::new();
    for (segment, bytes) in &image.segments {
        if segment.flags & PF_W == 0 {
            continue;
        }
        for (i, _) in bytes.chunks_exact(8).enumerate() {
            let Some(addr) = segment.vaddr.checked_add(8 * i as u64) else {
                break;
            };
            let Some(target) = image.word(addr) else {
                continue;
            };
            if !looks_like_header(image, target) {
                continue;
            }
            if let Ok(m) = check(image, hints, addr, FoundBy::Search) {
                found.push(m);
            }
        }
    }
    match found.len() {
        0 => Err(ModuleError::NotFound),
        1 => Ok(found.remove(0)),
        _ => Err(ModuleError::Ambiguous(
            found.iter().map(|m| m.moduledata).collect(),
        )),
    }
}

/// A cheap first filter for the search: a pc-line magic and 8-byte pointers.
fn looks_like_header(image: &Image<'_>, addr: u64) -> bool {
    image.bytes(addr, 8).is_some_and(|h| {
        let magic = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        (magic == MAGIC_118 || magic == MAGIC_120) && h[7] == 8
    })
}

/// The module whose record is at `md`, or the check it fails.
fn check<'a>(
    image: &Image<'a>,
    hints: &Hints,
    md: u64,
    found_by: FoundBy,
) -> Result<GoModule<'a>, String> {
    let field = |off: u64| {
        md.checked_add(off)
            .and_then(|a| image.word(a))
            .ok_or_else(|| format!("the record at {md:#x} is cut off by the end of its segment"))
    };
    let pclntab = field(0)?;
    let bytes = image
        .tail(pclntab)
        .ok_or_else(|| format!("its pcHeader pointer {pclntab:#x} lies outside the file"))?;
    let table = Pclntab::parse(bytes)
        .map_err(|e| format!("its pc-line table at {pclntab:#x} is unreadable: {e}"))?;
    if let Some(s) = hints.pclntab_section.filter(|&s| s != pclntab) {
        return Err(format!(
            "it points to a pc-line table at {pclntab:#x}, but the pc-line table section is at {s:#x}"
        ));
    }
    let expect = |what: &str, got: u64, want: Option<u64>| match want {
        Some(w) if w == got => Ok(()),
        _ => Err(format!(
            "its {what} ({got:#x}) does not match the pc-line header (expected {})",
            want.map_or_else(|| "an address".to_string(), |w| format!("{w:#x}"))
        )),
    };
    expect(
        "funcnametab",
        field(MD_FUNCNAMETAB)?,
        pclntab.checked_add(table.funcname_offset()),
    )?;
    expect(
        "ftab",
        field(MD_FTAB)?,
        pclntab.checked_add(table.functab_offset()),
    )?;
    expect(
        "ftab length",
        field(MD_FTAB_LEN)?,
        u64::try_from(table.len())
            .ok()
            .and_then(|n| n.checked_add(1)),
    )?;
    let (minpc, maxpc) = (field(MD_MINPC)?, field(MD_MAXPC)?);
    let (text, etext) = (field(MD_TEXT)?, field(MD_ETEXT)?);
    let first = table.entry_offset(0).map(u64::from);
    let last = table.entry_offset(table.len()).map(u64::from);
    expect("minpc", minpc, first.and_then(|o| text.checked_add(o)))?;
    expect("maxpc", maxpc, last.and_then(|o| text.checked_add(o)))?;
    if !(minpc < maxpc && maxpc <= etext) {
        return Err(format!(
            "its text range {minpc:#x}..{maxpc:#x} is empty or past etext {etext:#x}"
        ));
    }
    // Up to Go 1.25 the header repeats the base; from 1.26 it holds 0.
    let header_text = pclntab
        .checked_add(HEADER_TEXT_START)
        .and_then(|a| image.word(a))
        .unwrap_or(0);
    if header_text != 0 && header_text != text {
        return Err(format!(
            "its text {text:#x} differs from the pc-line header's textStart {header_text:#x}"
        ));
    }
    if let Some(sym) = hints.text_symbol.filter(|&s| s != text) {
        return Err(format!(
            "its text {text:#x} differs from the runtime.text symbol {sym:#x}"
        ));
    }
    let executable = image
        .segment(minpc)
        .is_some_and(|s| s.is_executable() && s.file_offset(maxpc - 1).is_some());
    if !executable {
        return Err(format!(
            "its text range {minpc:#x}..{maxpc:#x} is not inside one executable segment"
        ));
    }
    Ok(GoModule {
        table: table.with_text_base(text),
        moduledata: md,
        pclntab,
        text,
        minpc,
        maxpc,
        found_by,
    })
}

/// A crafted Go executable image for unit tests: functions with real code,
/// a pc-line table and a module data record, laid out as a given linker
/// would.
#[cfg(test)]
pub(crate) mod fixture {
    use super::*;

    /// One instruction group of a crafted function.
    #[derive(Clone, Copy, Debug)]
    pub(crate) enum Op {
        /// `CALL rel32` to the entry of the named function (plus an offset).
        Call(&'static str, u64),
        /// Literal bytes.
        Raw(&'static [u8]),
    }

    /// How the crafted binary was linked.
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct Link {
        /// Go 1.26+: `textStart` 0, module data in `.go.module`.
        pub go126: bool,
        /// Externally linked: 0x100 bytes of C code before `runtime.text`.
        pub external: bool,
        /// A PIE whose pointers are only in RELATIVE relocations (bytes 0).
        pub relocations_only: bool,
        /// Whether `.symtab` names `runtime.text`/`runtime.firstmoduledata`.
        pub symbols: bool,
        /// A table of Go strings to lay out in the data segment.
        pub strings: Option<&'static [&'static str]>,
    }

    pub(crate) const TEXT_SEGMENT: u64 = 0x40_1000;
    pub(crate) const TEXT_FILE_OFFSET: u64 = 0x1000;
    const RODATA: u64 = 0x50_0000;
    const DATA: u64 = 0x58_0000;
    /// Where the module data record lies in the data segment.
    pub(crate) const MODULEDATA: u64 = DATA + 0x40;

    /// The crafted binary's bytes and what its headers would say.
    pub(crate) struct Crafted {
        pub text: Vec<u8>,
        pub rodata: Vec<u8>,
        pub data: Vec<u8>,
        pub relative: HashMap<u64, u64>,
        pub hints: Hints,
        /// Entry address of each function.
        pub entries: Vec<(&'static str, u64)>,
        /// `runtime.text`.
        pub text_base: u64,
    }

    impl Crafted {
        pub(crate) fn image(&self) -> Image<'_> {
            let seg = |vaddr, offset, bytes: &Vec<u8>, flags| LoadSegment {
                vaddr,
                offset,
                filesz: bytes.len() as u64,
                memsz: bytes.len() as u64,
                flags,
            };
            Image::new(
                vec![
                    (
                        seg(
                            TEXT_SEGMENT,
                            TEXT_FILE_OFFSET,
                            &self.text,
                            object::elf::PF_X,
                        ),
                        &self.text,
                    ),
                    (seg(RODATA, 0x10_0000, &self.rodata, 4), &self.rodata),
                    (seg(DATA, 0x18_0000, &self.data, PF_W), &self.data),
                ],
                self.relative.clone(),
            )
        }

        pub(crate) fn entry(&self, name: &str) -> u64 {
            self.entries.iter().find(|(n, _)| *n == name).unwrap().1
        }
    }

    fn op_len(op: &Op) -> usize {
        match op {
            Op::Call(..) => 5,
            Op::Raw(b) => b.len(),
        }
    }

    /// Lays out `funcs` (32-byte aligned, int3 padding, as the Go linker
    /// does) and builds the tables for `link`.
    pub(crate) fn build(funcs: &[(&'static str, Vec<Op>)], link: Link) -> Crafted {
        let pre = if link.external { 0x100 } else { 0 };
        let text_base = TEXT_SEGMENT + pre;
        let mut entries = Vec::new();
        let mut at = 0u64;
        for (name, ops) in funcs {
            entries.push((*name, text_base + at));
            let len: usize = ops.iter().map(op_len).sum();
            at += (len as u64).div_ceil(32) * 32;
        }
        let text_len = at;
        // The C code of an external link: a run of nops and a ret.
        let mut text = vec![0x90u8; pre as usize];
        if pre > 0 {
            text[pre as usize - 1] = 0xc3;
        }
        for ((_, ops), (_, entry)) in funcs.iter().zip(&entries) {
            let mut ip = *entry;
            for op in ops {
                match op {
                    Op::Raw(b) => text.extend_from_slice(b),
                    Op::Call(callee, plus) => {
                        let target = entries.iter().find(|(n, _)| n == callee).unwrap().1 + plus;
                        let rel = (target as i64 - (ip as i64 + 5)) as i32;
                        text.push(0xe8);
                        text.extend_from_slice(&rel.to_le_bytes());
                    }
                }
                ip += op_len(op) as u64;
            }
            let end = (text.len() as u64 - pre).div_ceil(32) * 32 + pre;
            text.resize(end as usize, 0xcc);
        }
        assert_eq!(text.len() as u64, pre + text_len);

        // The pc-line table at RODATA.
        let nfunc = funcs.len() as u64;
        let mut names = Vec::new();
        let mut name_offs = Vec::new();
        for (name, _) in funcs {
            name_offs.push(names.len() as i32);
            names.extend_from_slice(name.as_bytes());
            names.push(0);
        }
        let funcnames = 72u64;
        let functab = (funcnames + names.len() as u64).div_ceil(8) * 8;
        let records = functab + 8 * (nfunc + 1);
        let header_text = if link.go126 { 0 } else { text_base };
        let mut rodata = Vec::new();
        rodata.extend_from_slice(&MAGIC_120.to_le_bytes());
        rodata.extend_from_slice(&[0, 0, 1, 8]);
        for w in [nfunc, 0, header_text, funcnames, 0, 0, 0, functab] {
            rodata.extend_from_slice(&w.to_le_bytes());
        }
        rodata.extend_from_slice(&names);
        rodata.resize(functab as usize, 0);
        for (i, (_, entry)) in entries.iter().enumerate() {
            rodata.extend_from_slice(&((entry - text_base) as u32).to_le_bytes());
            rodata.extend_from_slice(&((records - functab + 8 * i as u64) as u32).to_le_bytes());
        }
        rodata.extend_from_slice(&(text_len as u32).to_le_bytes());
        rodata.extend_from_slice(&0u32.to_le_bytes());
        for ((_, entry), name_off) in entries.iter().zip(&name_offs) {
            rodata.extend_from_slice(&((entry - text_base) as u32).to_le_bytes());
            rodata.extend_from_slice(&name_off.to_le_bytes());
        }

        // The data segment: a decoy pointer to the table (as other
        // runtime variables hold), then the module data record.
        let mut data = vec![0u8; 0x40 + 0xc0];
        data[8..16].copy_from_slice(&RODATA.to_le_bytes());
        let mut relative = HashMap::new();
        let mut put = |data: &mut Vec<u8>, off: u64, value: u64, pointer: bool| {
            let at = (MODULEDATA - DATA + off) as usize;
            if pointer && link.relocations_only {
                relative.insert(MODULEDATA + off, value);
            } else {
                data[at..at + 8].copy_from_slice(&value.to_le_bytes());
            }
        };
        put(&mut data, 0, RODATA, true);
        put(&mut data, MD_FUNCNAMETAB, RODATA + funcnames, true);
        put(&mut data, MD_FUNCNAMETAB + 8, names.len() as u64, false);
        put(&mut data, MD_FTAB, RODATA + functab, true);
        put(&mut data, MD_FTAB_LEN, nfunc + 1, false);
        put(&mut data, MD_FTAB_LEN + 8, nfunc + 1, false);
        put(&mut data, MD_MINPC, text_base, true);
        put(&mut data, MD_MAXPC, text_base + text_len, true);
        put(&mut data, MD_TEXT, text_base, true);
        put(&mut data, MD_ETEXT, text_base + text_len, true);
        // A string table like runtime.stwReasonStrings, after the record.
        if let Some(strings) = link.strings {
            let table = data.len() as u64;
            data.resize(data.len() + 16 * strings.len(), 0);
            for (k, text) in strings.iter().enumerate() {
                let at = RODATA + rodata.len() as u64;
                rodata.extend_from_slice(text.as_bytes());
                let slot = (table + 16 * k as u64) as usize;
                if link.relocations_only {
                    relative.insert(DATA + slot as u64, at);
                } else {
                    data[slot..slot + 8].copy_from_slice(&at.to_le_bytes());
                }
                data[slot + 8..slot + 16].copy_from_slice(&(text.len() as u64).to_le_bytes());
            }
        }
        let hints = Hints {
            module_section: link.go126.then_some(MODULEDATA),
            pclntab_section: Some(RODATA),
            moduledata_symbol: link.symbols.then_some(MODULEDATA),
            text_symbol: link.symbols.then_some(text_base),
        };
        Crafted {
            text,
            rodata,
            data,
            relative,
            hints,
            entries,
            text_base,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::{self, Link, Op};
    use super::*;

    fn funcs() -> Vec<(&'static str, Vec<Op>)> {
        vec![
            (
                "runtime.a",
                vec![
                    Op::Raw(&[0x55]),
                    Op::Call("runtime.b", 0),
                    Op::Raw(&[0x5d, 0xc3]),
                ],
            ),
            ("runtime.b", vec![Op::Raw(&[0x31, 0xc0, 0xc3])]),
        ]
    }

    const LINKS: [Link; 4] = [
        Link {
            go126: false,
            external: false,
            relocations_only: false,
            symbols: true,
            strings: None,
        },
        Link {
            go126: true,
            external: false,
            relocations_only: false,
            symbols: false,
            strings: None,
        },
        Link {
            go126: false,
            external: true,
            relocations_only: false,
            symbols: false,
            strings: None,
        },
        Link {
            go126: true,
            external: true,
            relocations_only: true,
            symbols: false,
            strings: None,
        },
    ];

    #[test]
    fn finds_the_text_base_of_every_layout() {
        for link in LINKS {
            let c = fixture::build(&funcs(), link);
            let m = locate(&c.image(), &c.hints).unwrap_or_else(|e| panic!("{link:?}: {e}"));
            assert_eq!(m.text, c.text_base, "{link:?}");
            assert_eq!(m.moduledata, fixture::MODULEDATA);
            let want = if link.go126 {
                FoundBy::ModuleSection
            } else if link.symbols {
                FoundBy::Symbol
            } else {
                FoundBy::Search
            };
            assert_eq!(m.found_by, want, "{link:?}");
            let b = m.table.find("runtime.b").unwrap();
            assert_eq!(b.entry, c.entry("runtime.b"), "{link:?}");
            assert_eq!(b.entry, c.text_base + 32);
        }
    }

    #[test]
    fn go126_module_data_is_read_though_the_header_says_0() {
        let c = fixture::build(&funcs(), LINKS[1]);
        let m = locate(&c.image(), &c.hints).unwrap();
        assert_eq!(m.table.header_text_start(), 0);
        assert_eq!(
            m.table.find("runtime.a").unwrap().entry,
            fixture::TEXT_SEGMENT
        );
        // Without the .go.module section, the search finds the same record.
        let hints = Hints {
            module_section: None,
            ..c.hints
        };
        assert_eq!(
            locate(&c.image(), &hints).unwrap().found_by,
            FoundBy::Search
        );
    }

    #[test]
    fn inconsistent_records_are_refused() {
        // A header textStart that disagrees with the module's text.
        let mut c = fixture::build(&funcs(), LINKS[0]);
        c.rodata[24] ^= 0x10;
        let err = locate(&c.image(), &c.hints).unwrap_err();
        assert!(
            matches!(&err, ModuleError::Invalid { found_by: FoundBy::Symbol, reason, .. }
                if reason.contains("textStart")),
            "{err}"
        );
        // An ftab length off by one: named record invalid, search finds none.
        for link in [LINKS[1], LINKS[2]] {
            let mut c = fixture::build(&funcs(), link);
            let at = (fixture::MODULEDATA - 0x58_0000 + MD_FTAB_LEN) as usize;
            c.data[at] += 1;
            let err = locate(&c.image(), &c.hints).unwrap_err();
            let text = err.to_string();
            if link.go126 {
                assert!(text.contains("ftab length"), "{text}");
                assert!(text.contains(".go.module"), "{text}");
            } else {
                assert_eq!(err, ModuleError::NotFound);
            }
        }
        // A corrupt pc-line magic.
        let mut c = fixture::build(&funcs(), LINKS[1]);
        c.rodata[0] = 0xfb;
        let text = locate(&c.image(), &c.hints).unwrap_err().to_string();
        assert!(text.contains("unsupported .gopclntab magic"), "{text}");
        // runtime.text disagreeing with the record.
        let mut c = fixture::build(&funcs(), LINKS[0]);
        c.hints.text_symbol = Some(c.text_base - 0x100);
        let text = locate(&c.image(), &c.hints).unwrap_err().to_string();
        assert!(text.contains("runtime.text symbol"), "{text}");
    }

    #[test]
    fn string_tables_are_found_by_content() {
        const NAMES: &[&str] = &["unknown", "GC mark termination", "GC sweep termination"];
        for relocations_only in [false, true] {
            let link = Link {
                relocations_only,
                strings: Some(NAMES),
                ..LINKS[1]
            };
            let c = fixture::build(&funcs(), link);
            let at = find_string_table(&c.image(), NAMES).expect("the table");
            assert_eq!(at, 0x58_0000 + 0x40 + 0xc0);
            assert_eq!(find_string_table(&c.image(), &NAMES[..2]), Some(at));
            assert_eq!(
                find_string_table(&c.image(), &["unknown", "GC sweep termination"]),
                None
            );
        }
    }

    #[test]
    fn relocated_pointers_are_read_from_their_addends() {
        let c = fixture::build(&funcs(), LINKS[3]);
        let image = c.image();
        assert_eq!(image.word(fixture::MODULEDATA), Some(0x50_0000));
        let raw = &c.data[0x40..0x48];
        assert_eq!(raw, &[0; 8]);
    }
}
