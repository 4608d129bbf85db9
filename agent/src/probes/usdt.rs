//! Parser for SystemTap SDT ("USDT") probe notes.
//!
//! A binary built with `<sys/sdt.h>` probes records each probe site as an
//! ELF note (owner `stapsdt`, type 3) in the non-allocated `.note.stapsdt`
//! section. The note's descriptor is three little-endian `u64`s (probe pc,
//! the link-time address of `.stapsdt.base`, the semaphore address or 0)
//! followed by three NUL-terminated strings: provider, name and argument
//! specs. One provider/name pair may have several notes when the compiler
//! inlined or duplicated the probe site; every location must be attached.

use std::io;
use std::path::{Path, PathBuf};

use object::elf::{EM_X86_64, ET_DYN, ET_EXEC};
use object::read::elf::{FileHeader, SectionHeader};

use super::argspec::{ArgSpecError, UsdtArg, parse_args};
use super::elf::{self, ElfError, LoadSegment, MappedFile};

/// Section holding the SDT notes.
pub const NOTE_SECTION: &str = ".note.stapsdt";
/// Section whose link-time address the notes record, used to detect that
/// prelink moved the file after the notes were written.
pub const BASE_SECTION: &str = ".stapsdt.base";
/// Owner name of SDT notes.
pub const NOTE_OWNER: &[u8] = b"stapsdt";
/// Note type of SDT notes (version 3 of the format, 8-byte addresses).
pub const NT_STAPSDT: u32 = 3;

/// Size of the pc/base/semaphore block at the start of a note descriptor.
const ADDRESS_BLOCK: usize = 24;

/// One probe site found in an ELF file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsdtProbe {
    /// Provider, e.g. `hotspot`.
    pub provider: String,
    /// Probe name, e.g. `gc__begin`.
    pub name: String,
    /// Probe address as recorded in the note, already adjusted for prelink
    /// via `.stapsdt.base`.
    pub address: u64,
    /// File offset to attach a uprobe at (the address translated through the
    /// `PT_LOAD` segment containing it).
    pub file_offset: u64,
    /// Semaphore address, adjusted like `address`; 0 if the probe has none.
    pub semaphore: u64,
    /// File offset of the semaphore (the uprobe reference counter), if any.
    pub semaphore_offset: Option<u64>,
    /// Decoded arguments; empty when `args_error` is set.
    pub args: Vec<UsdtArg>,
    /// The argument string as in the note, e.g. `8@%r12 8@%rdx -4@%eax`.
    pub raw_args: String,
    /// Why `raw_args` could not be decoded. A probe whose arguments use an
    /// unsupported form is kept rather than failing the whole file, because
    /// most callers attach a handful of probes and never read the others'
    /// arguments (libbpf likewise decodes arguments only when attaching).
    pub args_error: Option<ArgSpecError>,
}

impl UsdtProbe {
    /// The argument at `index` (0-based), or why it cannot be read. Callers
    /// that need an argument should go through this rather than `args`, so
    /// an undecodable argument list is reported instead of looking empty.
    pub fn arg(&self, index: usize) -> Result<&UsdtArg, UsdtError> {
        if let Some(error) = &self.args_error {
            return Err(UsdtError::Args {
                provider: self.provider.clone(),
                name: self.name.clone(),
                error: error.clone(),
            });
        }
        self.args.get(index).ok_or_else(|| UsdtError::NoSuchArg {
            provider: self.provider.clone(),
            name: self.name.clone(),
            index,
            count: self.args.len(),
        })
    }
}

/// What is wrong with one SDT note.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoteDefect {
    /// The note's header, name or descriptor runs past the end of the section.
    #[error("it runs past the end of the section")]
    Truncated,
    /// The descriptor cannot hold the three addresses.
    #[error("its descriptor is {len} bytes, shorter than the 24-byte address block")]
    DescTooShort {
        /// Descriptor size in bytes.
        len: usize,
    },
    /// The descriptor ends before one of the three strings' NUL.
    #[error("its descriptor has no NUL-terminated {which} string")]
    MissingString {
        /// `provider`, `name` or `arguments`.
        which: &'static str,
    },
    /// A string is not UTF-8.
    #[error("its {which} string is not valid UTF-8")]
    NotUtf8 {
        /// `provider`, `name` or `arguments`.
        which: &'static str,
    },
    /// The provider or name is empty.
    #[error("its {which} string is empty")]
    EmptyString {
        /// `provider` or `name`.
        which: &'static str,
    },
    /// No `PT_LOAD` segment maps the probe address from the file.
    #[error("its probe address {address:#x} is not in the file-backed part of any PT_LOAD segment")]
    AddressNotMapped {
        /// The (prelink-adjusted) probe address.
        address: u64,
    },
    /// The probe address is in a segment that is not executable, so a uprobe
    /// there would never fire; usually a sign of a bad prelink adjustment.
    #[error("its probe address {address:#x} is in a non-executable PT_LOAD segment")]
    AddressNotExecutable {
        /// The (prelink-adjusted) probe address.
        address: u64,
    },
    /// No `PT_LOAD` segment contains the semaphore address.
    #[error("its semaphore address {address:#x} is not inside any PT_LOAD segment")]
    SemaphoreNotMapped {
        /// The (prelink-adjusted) semaphore address.
        address: u64,
    },
}

/// Why USDT probes could not be read.
///
/// Each message is self-contained (it includes the underlying cause), so
/// printing the error alone is enough; the variants do not chain through
/// `std::error::Error::source`.
#[derive(Debug, thiserror::Error)]
pub enum UsdtError {
    /// The file is not a supported ELF file, or its headers are broken.
    #[error(transparent)]
    Elf(#[from] ElfError),
    /// The `.note.stapsdt` section itself cannot be read.
    #[error("cannot read section .note.stapsdt: {reason}")]
    Section {
        /// What was wrong with the section.
        reason: String,
    },
    /// One note is malformed; `index` counts notes in `.note.stapsdt` from 0.
    #[error("SDT note #{index} in .note.stapsdt is invalid: {defect}")]
    Note {
        /// 0-based position of the note in the section.
        index: usize,
        /// What is wrong with it.
        defect: NoteDefect,
    },
    /// The file could not be opened or mapped.
    #[error("cannot open or map {}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        error: io::Error,
    },
    /// Parsing a file failed; wraps the error with the file's path.
    #[error("{}: {error}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The parse error.
        error: Box<UsdtError>,
    },
    /// A probe's argument list could not be decoded.
    #[error("probe {provider}:{name} has an undecodable argument list: {error}")]
    Args {
        /// Probe provider.
        provider: String,
        /// Probe name.
        name: String,
        /// The decoding error.
        error: ArgSpecError,
    },
    /// A probe has fewer arguments than the caller expected.
    #[error("probe {provider}:{name} has {count} arguments, so it has no argument #{index}")]
    NoSuchArg {
        /// Probe provider.
        provider: String,
        /// Probe name.
        name: String,
        /// Requested 0-based argument index.
        index: usize,
        /// Number of arguments the probe has.
        count: usize,
    },
}

impl UsdtError {
    /// The error without its file name, for callers that name the file
    /// themselves (so the path is not printed twice).
    pub fn without_path(self) -> UsdtError {
        match self {
            UsdtError::File { error, .. } => *error,
            other => other,
        }
    }
}

/// Reads every SDT probe in an x86-64 ELF executable or shared object, in
/// note order. A file without `.note.stapsdt` has no probes. Structural
/// damage (a truncated note, an address outside the loaded segments) fails
/// the whole file; an undecodable argument list does not (see
/// [`UsdtProbe::args_error`]).
pub fn parse_usdt_notes(data: &[u8]) -> Result<Vec<UsdtProbe>, UsdtError> {
    let mut buf = Vec::new();
    let data = elf::aligned(data, &mut buf);
    let elf = elf::parse_elf64(data)?;
    let endian = elf.endian();
    let header = elf.elf_header();

    // Argument specs name x86-64 registers, and the BPF side reads x86-64
    // `pt_regs`, so probes of other architectures would be read wrongly.
    let machine = header.e_machine(endian);
    if machine != EM_X86_64 {
        return Err(ElfError::Unsupported {
            what: format!("machine {machine} instead of x86-64"),
        }
        .into());
    }
    // Relocatable objects carry section-relative, unrelocated addresses.
    let e_type = header.e_type(endian);
    if e_type != ET_EXEC && e_type != ET_DYN {
        return Err(ElfError::Unsupported {
            what: format!("type {e_type} (neither an executable nor a shared object)"),
        }
        .into());
    }

    let sections = elf.elf_section_table();
    let base_section_addr = sections
        .section_by_name(endian, BASE_SECTION.as_bytes())
        .map(|(_, section)| section.sh_addr(endian));
    let segments = elf::load_segments(&elf)?;

    let mut probes = Vec::new();
    let mut index = 0;
    for section in sections.iter() {
        if sections.section_name(endian, section) != Ok(NOTE_SECTION.as_bytes()) {
            continue;
        }
        // Note headers are read as aligned u32s; `object` would report a
        // misaligned section as a too-short note.
        if section.sh_offset(endian) % 4 != 0 {
            return Err(UsdtError::Section {
                reason: "it does not start at a 4-byte aligned file offset".to_owned(),
            });
        }
        let mut notes = section
            .notes(endian, data)
            .map_err(|e| UsdtError::Section {
                reason: e.to_string(),
            })?
            .ok_or_else(|| UsdtError::Section {
                reason: "it is not of type SHT_NOTE".to_owned(),
            })?;
        loop {
            let note = match notes.next() {
                Ok(Some(note)) => note,
                Ok(None) => break,
                Err(_) => {
                    return Err(UsdtError::Note {
                        index,
                        defect: NoteDefect::Truncated,
                    });
                }
            };
            if note.name() == NOTE_OWNER && note.n_type(endian) == NT_STAPSDT {
                let probe = parse_note(note.desc(), base_section_addr, &segments)
                    .map_err(|defect| UsdtError::Note { index, defect })?;
                probes.push(probe);
            }
            index += 1;
        }
    }
    Ok(probes)
}

/// Maps the file at `path` and reads its SDT probes with
/// [`parse_usdt_notes`]. Errors name the file.
pub fn read_usdt_probes(path: &Path) -> Result<Vec<UsdtProbe>, UsdtError> {
    let map = MappedFile::open(path).map_err(|error| UsdtError::Io {
        path: path.to_owned(),
        error,
    })?;
    parse_usdt_notes(&map).map_err(|error| UsdtError::File {
        path: path.to_owned(),
        error: Box::new(error),
    })
}

/// Every location of the probe `provider:name`; more than one when the
/// compiler duplicated the probe site.
pub fn find<'a>(
    probes: &'a [UsdtProbe],
    provider: &str,
    name: &str,
) -> impl Iterator<Item = &'a UsdtProbe> {
    probes
        .iter()
        .filter(move |p| p.provider == provider && p.name == name)
}

fn parse_note(
    desc: &[u8],
    base_section_addr: Option<u64>,
    segments: &[LoadSegment],
) -> Result<UsdtProbe, NoteDefect> {
    let too_short = NoteDefect::DescTooShort { len: desc.len() };
    let (words, strings) = desc
        .split_first_chunk::<ADDRESS_BLOCK>()
        .ok_or(too_short.clone())?;
    let ([pc, note_base, note_semaphore], []) = words.as_chunks::<8>() else {
        return Err(too_short);
    };
    let pc = u64::from_le_bytes(*pc);
    let note_base = u64::from_le_bytes(*note_base);
    let note_semaphore = u64::from_le_bytes(*note_semaphore);

    let mut rest = strings;
    let provider = take_string(&mut rest, "provider")?;
    let name = take_string(&mut rest, "name")?;
    let raw_args = take_string(&mut rest, "arguments")?;
    // Bytes after the third NUL are tolerated: the format defines none, and
    // neither readelf nor libbpf rejects them.
    if provider.is_empty() {
        return Err(NoteDefect::EmptyString { which: "provider" });
    }
    if name.is_empty() {
        return Err(NoteDefect::EmptyString { which: "name" });
    }

    // Prelink relocates a library without rewriting its notes, but it does
    // move `.stapsdt.base`; the distance moved applies to every address.
    // Wrapping arithmetic, because a crafted base may be anything.
    let adjust = |addr: u64| match base_section_addr {
        Some(section) => addr.wrapping_add(section.wrapping_sub(note_base)),
        None => addr,
    };

    let address = adjust(pc);
    let segment = elf::segment_for_file_addr(segments, address)
        .ok_or(NoteDefect::AddressNotMapped { address })?;
    if !segment.is_executable() {
        return Err(NoteDefect::AddressNotExecutable { address });
    }
    let file_offset = segment
        .file_offset(address)
        .ok_or(NoteDefect::AddressNotMapped { address })?;

    let (semaphore, semaphore_offset) = if note_semaphore == 0 {
        (0, None)
    } else {
        let semaphore = adjust(note_semaphore);
        let offset = elf::vaddr_to_mapped_offset(segments, semaphore)
            .ok_or(NoteDefect::SemaphoreNotMapped { address: semaphore })?;
        (semaphore, Some(offset))
    };

    let (args, args_error) = match parse_args(raw_args) {
        Ok(args) => (args, None),
        Err(error) => (Vec::new(), Some(error)),
    };

    Ok(UsdtProbe {
        provider: provider.to_owned(),
        name: name.to_owned(),
        address,
        file_offset,
        semaphore,
        semaphore_offset,
        args,
        raw_args: raw_args.to_owned(),
        args_error,
    })
}

/// Takes one NUL-terminated string off the front of `rest`.
fn take_string<'a>(rest: &mut &'a [u8], which: &'static str) -> Result<&'a str, NoteDefect> {
    let bytes: &'a [u8] = rest;
    let nul = bytes
        .iter()
        .position(|&b| b == 0)
        .ok_or(NoteDefect::MissingString { which })?;
    let (text, tail) = bytes.split_at(nul);
    *rest = tail.get(1..).unwrap_or_default();
    std::str::from_utf8(text).map_err(|_| NoteDefect::NotUtf8 { which })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::argspec::{ArgLocation, Register};
    use object::LittleEndian as LE;
    use object::elf::{
        ELFCLASS64, ELFDATA2LSB, ELFMAG, ELFOSABI_NONE, EM_AARCH64, ET_REL, EV_CURRENT,
        FileHeader64, Ident, PF_R, PF_W, PF_X, PT_LOAD, ProgramHeader64, SHF_ALLOC, SHF_EXECINSTR,
        SHF_WRITE, SHT_NOTE, SHT_PROGBITS, SHT_STRTAB, SectionHeader64,
    };
    use object::pod::bytes_of;
    use object::{U16, U32, U64};

    // Layout of the crafted file: one R+X segment mapping file [0, 0x130)
    // at 0x400000 (.text at 0x400100, .stapsdt.base at 0x400120), and one
    // R+W segment mapping file [0x200, 0x210) at 0x600200 with zero-filled
    // memory up to 0x600300 (.probes holds the semaphores).
    const TEXT_ADDR: u64 = 0x400100;
    const BASE_ADDR: u64 = 0x400120;
    const SEMA_ADDR: u64 = 0x600200;
    const NOTES_OFFSET: usize = 0x300;

    struct Fixture {
        notes: Vec<u8>,
        note_align: u64,
        note_type: u32,
        with_base: bool,
        machine: u16,
        e_type: u16,
    }

    impl Default for Fixture {
        fn default() -> Self {
            Fixture {
                notes: Vec::new(),
                note_align: 4,
                note_type: SHT_NOTE,
                with_base: true,
                machine: EM_X86_64,
                e_type: ET_DYN,
            }
        }
    }

    fn u16le(v: u16) -> U16<LE> {
        U16::new(LE, v)
    }
    fn u32le(v: u32) -> U32<LE> {
        U32::new(LE, v)
    }
    fn u64le(v: u64) -> U64<LE> {
        U64::new(LE, v)
    }

    fn pad_to(buf: &mut Vec<u8>, len: usize) {
        assert!(buf.len() <= len);
        buf.resize(len, 0);
    }

    fn phdr(flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64) -> ProgramHeader64<LE> {
        ProgramHeader64 {
            p_type: u32le(PT_LOAD),
            p_flags: u32le(flags),
            p_offset: u64le(offset),
            p_vaddr: u64le(vaddr),
            p_paddr: u64le(vaddr),
            p_filesz: u64le(filesz),
            p_memsz: u64le(memsz),
            p_align: u64le(0x1000),
        }
    }

    fn shdr(
        name: u32,
        sh_type: u32,
        flags: u64,
        addr: u64,
        offset: u64,
        size: u64,
        align: u64,
    ) -> SectionHeader64<LE> {
        SectionHeader64 {
            sh_name: u32le(name),
            sh_type: u32le(sh_type),
            sh_flags: u64le(flags),
            sh_addr: u64le(addr),
            sh_offset: u64le(offset),
            sh_size: u64le(size),
            sh_link: u32le(0),
            sh_info: u32le(0),
            sh_addralign: u64le(align),
            sh_entsize: u64le(0),
        }
    }

    impl Fixture {
        fn with_notes(notes: Vec<u8>) -> Fixture {
            Fixture {
                notes,
                ..Fixture::default()
            }
        }

        fn build(&self) -> Vec<u8> {
            let base_name = if self.with_base {
                BASE_SECTION
            } else {
                ".rodata"
            };
            let names = [".text", base_name, ".probes", NOTE_SECTION, ".shstrtab"];
            let mut shstrtab = vec![0u8];
            let mut name_offsets = Vec::new();
            for name in names {
                name_offsets.push(shstrtab.len() as u32);
                shstrtab.extend_from_slice(name.as_bytes());
                shstrtab.push(0);
            }
            let shstrtab_offset = NOTES_OFFSET + self.notes.len();
            let shoff = (shstrtab_offset + shstrtab.len()).next_multiple_of(8);

            let header = FileHeader64::<LE> {
                e_ident: Ident {
                    magic: ELFMAG,
                    class: ELFCLASS64,
                    data: ELFDATA2LSB,
                    version: EV_CURRENT,
                    os_abi: ELFOSABI_NONE,
                    abi_version: 0,
                    padding: [0; 7],
                },
                e_type: u16le(self.e_type),
                e_machine: u16le(self.machine),
                e_version: u32le(EV_CURRENT.into()),
                e_entry: u64le(TEXT_ADDR),
                e_phoff: u64le(64),
                e_shoff: u64le(shoff as u64),
                e_flags: u32le(0),
                e_ehsize: u16le(64),
                e_phentsize: u16le(56),
                e_phnum: u16le(2),
                e_shentsize: u16le(64),
                e_shnum: u16le(6),
                e_shstrndx: u16le(5),
            };
            let mut out = Vec::new();
            out.extend_from_slice(bytes_of(&header));
            out.extend_from_slice(bytes_of(&phdr(PF_R | PF_X, 0, 0x400000, 0x130, 0x130)));
            out.extend_from_slice(bytes_of(&phdr(PF_R | PF_W, 0x200, SEMA_ADDR, 0x10, 0x100)));
            pad_to(&mut out, 0x100);
            out.extend_from_slice(&[0x90; 0x20]); // .text: nops
            out.push(0); // .stapsdt.base
            pad_to(&mut out, 0x200);
            out.extend_from_slice(&[0; 0x10]); // .probes
            pad_to(&mut out, NOTES_OFFSET);
            out.extend_from_slice(&self.notes);
            out.extend_from_slice(&shstrtab);
            pad_to(&mut out, shoff);
            let sections = [
                shdr(0, 0, 0, 0, 0, 0, 0),
                shdr(
                    name_offsets[0],
                    SHT_PROGBITS,
                    (SHF_ALLOC | SHF_EXECINSTR).into(),
                    TEXT_ADDR,
                    0x100,
                    0x20,
                    16,
                ),
                shdr(
                    name_offsets[1],
                    SHT_PROGBITS,
                    SHF_ALLOC.into(),
                    BASE_ADDR,
                    0x120,
                    1,
                    1,
                ),
                shdr(
                    name_offsets[2],
                    SHT_PROGBITS,
                    (SHF_ALLOC | SHF_WRITE).into(),
                    SEMA_ADDR,
                    0x200,
                    0x10,
                    2,
                ),
                shdr(
                    name_offsets[3],
                    self.note_type,
                    0,
                    0,
                    NOTES_OFFSET as u64,
                    self.notes.len() as u64,
                    self.note_align,
                ),
                shdr(
                    name_offsets[4],
                    SHT_STRTAB,
                    0,
                    0,
                    shstrtab_offset as u64,
                    shstrtab.len() as u64,
                    1,
                ),
            ];
            for section in &sections {
                out.extend_from_slice(bytes_of(section));
            }
            out
        }
    }

    /// An ELF note with 4-byte alignment.
    fn note(owner: &[u8], n_type: u32, desc: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(owner.len() as u32 + 1).to_le_bytes());
        out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        out.extend_from_slice(&n_type.to_le_bytes());
        out.extend_from_slice(owner);
        out.push(0);
        out.resize(out.len().next_multiple_of(4), 0);
        out.extend_from_slice(desc);
        out.resize(out.len().next_multiple_of(4), 0);
        out
    }

    fn sdt_desc(pc: u64, base: u64, sema: u64, strings: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for word in [pc, base, sema] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        for s in strings {
            out.extend_from_slice(s);
            out.push(0);
        }
        out
    }

    /// A well-formed SDT note recorded against the unmoved `.stapsdt.base`.
    fn sdt_note(pc: u64, sema: u64, provider: &str, name: &str, args: &str) -> Vec<u8> {
        let desc = sdt_desc(
            pc,
            BASE_ADDR,
            sema,
            &[provider.as_bytes(), name.as_bytes(), args.as_bytes()],
        );
        note(NOTE_OWNER, NT_STAPSDT, &desc)
    }

    fn note_error(notes: Vec<u8>) -> (usize, NoteDefect) {
        match parse_usdt_notes(&Fixture::with_notes(notes).build()) {
            Err(UsdtError::Note { index, defect }) => (index, defect),
            other => panic!("expected a note error, got {other:?}"),
        }
    }

    /// Every truncation of a valid file, and every single-byte corruption
    /// of its headers and notes, is an error or a parse, never a panic; a
    /// truncated file never yields the full probe list.
    #[test]
    fn truncated_or_corrupt_files_never_panic() {
        let seed = include_bytes!("../../../fuzz/seeds/usdt_notes/two_probes.elf");
        let full = parse_usdt_notes(seed.as_slice()).unwrap().len();
        for len in 0..seed.len() {
            if let Ok(p) = parse_usdt_notes(&seed[..len]) {
                assert!(p.len() < full, "{len} bytes parsed as the whole file");
            }
        }
        for at in 0..seed.len() {
            for byte in [0x00, 0x7f, 0xff] {
                let mut bad = seed.to_vec();
                bad[at] = byte;
                let _ = parse_usdt_notes(&bad);
            }
        }
    }

    /// The fuzzer's seed (`fuzz/seeds/usdt_notes`, made with [`Fixture`])
    /// must stay a valid file, or fuzzing starts from nothing.
    #[test]
    fn fuzz_seed_parses() {
        let seed = include_bytes!("../../../fuzz/seeds/usdt_notes/two_probes.elf");
        let probes = parse_usdt_notes(seed.as_slice()).unwrap();
        let names: Vec<&str> = probes.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["vmops__begin", "safepoint__begin"]);
        assert_eq!(probes[0].args.len(), 3);
    }

    #[test]
    fn crafted_single_note() {
        let elf = Fixture::with_notes(sdt_note(
            0x400104,
            0,
            "hotspot",
            "vmops__begin",
            "8@%r12 8@%rdx -4@%eax",
        ))
        .build();
        let probes = parse_usdt_notes(&elf).unwrap();
        assert_eq!(probes.len(), 1);
        let p = &probes[0];
        assert_eq!(
            (p.provider.as_str(), p.name.as_str()),
            ("hotspot", "vmops__begin")
        );
        assert_eq!(p.address, 0x400104);
        assert_eq!(p.file_offset, 0x104);
        assert_eq!((p.semaphore, p.semaphore_offset), (0, None));
        assert_eq!(p.raw_args, "8@%r12 8@%rdx -4@%eax");
        assert_eq!(p.args_error, None);
        assert_eq!(p.args.len(), 3);
        assert_eq!(p.args[0].location, ArgLocation::Reg(Register::R12));
        assert_eq!(p.arg(2).unwrap().location, ArgLocation::Reg(Register::Rax));
        assert!(p.arg(2).unwrap().signed);
        assert!(matches!(
            p.arg(3),
            Err(UsdtError::NoSuchArg {
                index: 3,
                count: 3,
                ..
            })
        ));
    }

    #[test]
    fn crafted_semaphores() {
        let mut notes = sdt_note(
            0x400100,
            SEMA_ADDR + 2,
            "python",
            "gc__start",
            "-4@112(%rsp)",
        );
        // In the zero-filled tail of the data segment, as libbpf allows.
        notes.extend(sdt_note(
            0x400108,
            SEMA_ADDR + 0x80,
            "python",
            "gc__done",
            "",
        ));
        let probes = parse_usdt_notes(&Fixture::with_notes(notes).build()).unwrap();
        assert_eq!(probes[0].semaphore, SEMA_ADDR + 2);
        assert_eq!(probes[0].semaphore_offset, Some(0x202));
        assert_eq!(
            probes[0].args[0].location,
            ArgLocation::Deref {
                base: Register::Rsp,
                disp: 112
            }
        );
        assert_eq!(probes[1].semaphore_offset, Some(0x280));
        assert!(probes[1].args.is_empty());
        assert_eq!(probes[1].args_error, None);
    }

    #[test]
    fn prelink_adjustment_uses_stapsdt_base() {
        // Notes written when .stapsdt.base was at BASE_ADDR - 0x1000; the
        // file has since moved up by 0x1000.
        let desc = sdt_desc(
            0x400104 - 0x1000,
            BASE_ADDR - 0x1000,
            SEMA_ADDR + 4 - 0x1000,
            &[b"p", b"n", b""],
        );
        let elf = Fixture::with_notes(note(NOTE_OWNER, NT_STAPSDT, &desc)).build();
        let p = &parse_usdt_notes(&elf).unwrap()[0];
        assert_eq!(p.address, 0x400104);
        assert_eq!(p.file_offset, 0x104);
        assert_eq!(p.semaphore, SEMA_ADDR + 4);
        assert_eq!(p.semaphore_offset, Some(0x204));

        // A file moved down works too (the delta wraps).
        let desc = sdt_desc(0x400104 + 0x5000, BASE_ADDR + 0x5000, 0, &[b"p", b"n", b""]);
        let elf = Fixture::with_notes(note(NOTE_OWNER, NT_STAPSDT, &desc)).build();
        let p = &parse_usdt_notes(&elf).unwrap()[0];
        assert_eq!(
            (p.address, p.file_offset, p.semaphore),
            (0x400104, 0x104, 0)
        );
    }

    #[test]
    fn no_adjustment_without_stapsdt_base() {
        let desc = sdt_desc(0x400104, 0xdead_0000, 0, &[b"p", b"n", b""]);
        let elf = Fixture {
            with_base: false,
            ..Fixture::with_notes(note(NOTE_OWNER, NT_STAPSDT, &desc))
        }
        .build();
        let p = &parse_usdt_notes(&elf).unwrap()[0];
        assert_eq!((p.address, p.file_offset), (0x400104, 0x104));
    }

    #[test]
    fn other_notes_are_skipped_but_counted() {
        let mut notes = note(b"GNU", NT_STAPSDT, &[0; 24]);
        notes.extend(note(NOTE_OWNER, 2, &[1, 2, 3]));
        notes.extend(sdt_note(0x400100, 0, "a", "b", "1@%dil"));
        let probes = parse_usdt_notes(&Fixture::with_notes(notes.clone()).build()).unwrap();
        assert_eq!(probes.len(), 1);
        assert_eq!(probes[0].args[0].location, ArgLocation::Reg(Register::Rdi));
        notes.extend(note(NOTE_OWNER, NT_STAPSDT, &[0; 8]));
        assert_eq!(note_error(notes), (3, NoteDefect::DescTooShort { len: 8 }));
    }

    #[test]
    fn find_returns_every_location() {
        let mut notes = sdt_note(0x400100, 0, "hotspot", "gc__begin", "1@%dil");
        notes.extend(sdt_note(0x400104, 0, "hotspot", "gc__end", ""));
        notes.extend(sdt_note(0x400108, 0, "hotspot", "gc__begin", "1@$1"));
        let probes = parse_usdt_notes(&Fixture::with_notes(notes).build()).unwrap();
        let begins: Vec<u64> = find(&probes, "hotspot", "gc__begin")
            .map(|p| p.file_offset)
            .collect();
        assert_eq!(begins, [0x100, 0x108]);
        assert_eq!(find(&probes, "hotspot", "nope").count(), 0);
        assert_eq!(find(&probes, "gc__begin", "hotspot").count(), 0);
    }

    #[test]
    fn no_notes_section_means_no_probes() {
        let elf = Fixture::default().build();
        assert_eq!(parse_usdt_notes(&elf).unwrap(), []);
    }

    #[test]
    fn desc_too_short() {
        for len in [0, 1, 8, 23] {
            let notes = note(NOTE_OWNER, NT_STAPSDT, &vec![0; len]);
            assert_eq!(note_error(notes), (0, NoteDefect::DescTooShort { len }));
        }
    }

    #[test]
    fn missing_nul_terminators() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "provider"),
            (b"prov", "provider"),
            (b"prov\0", "name"),
            (b"prov\0name", "name"),
            (b"prov\0name\0", "arguments"),
            (b"prov\0name\08@%rax", "arguments"),
        ];
        for &(strings, which) in cases {
            let mut desc = sdt_desc(0x400100, BASE_ADDR, 0, &[]);
            desc.extend_from_slice(strings);
            let notes = note(NOTE_OWNER, NT_STAPSDT, &desc);
            assert_eq!(
                note_error(notes),
                (0, NoteDefect::MissingString { which }),
                "{strings:?}"
            );
        }
    }

    #[test]
    fn bad_strings() {
        let desc = sdt_desc(0x400100, BASE_ADDR, 0, &[b"pr\xffov", b"n", b""]);
        assert_eq!(
            note_error(note(NOTE_OWNER, NT_STAPSDT, &desc)),
            (0, NoteDefect::NotUtf8 { which: "provider" })
        );
        let desc = sdt_desc(0x400100, BASE_ADDR, 0, &[b"p", b"n", b"8@%r\xc3"]);
        assert_eq!(
            note_error(note(NOTE_OWNER, NT_STAPSDT, &desc)),
            (0, NoteDefect::NotUtf8 { which: "arguments" })
        );
        let desc = sdt_desc(0x400100, BASE_ADDR, 0, &[b"", b"n", b""]);
        assert_eq!(
            note_error(note(NOTE_OWNER, NT_STAPSDT, &desc)),
            (0, NoteDefect::EmptyString { which: "provider" })
        );
        let desc = sdt_desc(0x400100, BASE_ADDR, 0, &[b"p", b"", b""]);
        assert_eq!(
            note_error(note(NOTE_OWNER, NT_STAPSDT, &desc)),
            (0, NoteDefect::EmptyString { which: "name" })
        );
        // Bytes after the third string are tolerated.
        let mut desc = sdt_desc(0x400100, BASE_ADDR, 0, &[b"p", b"n", b""]);
        desc.extend_from_slice(b"junk");
        let elf = Fixture::with_notes(note(NOTE_OWNER, NT_STAPSDT, &desc)).build();
        assert_eq!(parse_usdt_notes(&elf).unwrap().len(), 1);
    }

    #[test]
    fn truncated_notes() {
        let good = sdt_note(0x400100, 0, "a", "b", "");
        let second = sdt_note(0x400104, 0, "a", "c", "8@%rax");
        // The section ends inside the second note's descriptor, its name,
        // and its header.
        for cut in [4, second.len() - 12, second.len() - 20, second.len() - 26] {
            let mut notes = good.clone();
            notes.extend_from_slice(&second[..second.len() - cut]);
            assert_eq!(note_error(notes), (1, NoteDefect::Truncated), "cut {cut}");
        }
        // A note header whose descsz claims more than the section holds.
        let mut notes = good.clone();
        let mut big = sdt_note(0x400104, 0, "a", "c", "");
        big[4..8].copy_from_slice(&0x1000u32.to_le_bytes());
        notes.extend(big);
        assert_eq!(note_error(notes), (1, NoteDefect::Truncated));
        // Huge namesz and descsz must not overflow.
        let mut notes = good;
        notes.extend_from_slice(&u32::MAX.to_le_bytes());
        notes.extend_from_slice(&u32::MAX.to_le_bytes());
        notes.extend_from_slice(&NT_STAPSDT.to_le_bytes());
        assert_eq!(note_error(notes), (1, NoteDefect::Truncated));
    }

    #[test]
    fn final_note_without_padding_is_accepted() {
        let mut notes = sdt_note(0x400100, 0, "ab", "c", "");
        // provider "ab\0" + name "c\0" + args "\0" = 6 bytes, so 2 bytes pad.
        notes.truncate(notes.len() - 2);
        let elf = Fixture::with_notes(notes).build();
        assert_eq!(parse_usdt_notes(&elf).unwrap().len(), 1);
    }

    #[test]
    fn addresses_outside_segments() {
        let notes = sdt_note(0x500000, 0, "a", "b", "");
        assert_eq!(
            note_error(notes),
            (0, NoteDefect::AddressNotMapped { address: 0x500000 })
        );
        let notes = sdt_note(SEMA_ADDR, 0, "a", "b", "");
        assert_eq!(
            note_error(notes),
            (0, NoteDefect::AddressNotExecutable { address: SEMA_ADDR })
        );
        // In the data segment's memory image but not backed by the file.
        let notes = sdt_note(SEMA_ADDR + 0x20, 0, "a", "b", "");
        assert_eq!(
            note_error(notes),
            (
                0,
                NoteDefect::AddressNotMapped {
                    address: SEMA_ADDR + 0x20
                }
            )
        );
        let notes = sdt_note(0x400100, SEMA_ADDR + 0x100, "a", "b", "");
        assert_eq!(
            note_error(notes),
            (
                0,
                NoteDefect::SemaphoreNotMapped {
                    address: SEMA_ADDR + 0x100
                }
            )
        );
    }

    #[test]
    fn undecodable_args_keep_the_probe() {
        let mut notes = sdt_note(0x400100, 0, "p", "weird", "8@%rax 8@counter(%rip)");
        notes.extend(sdt_note(0x400104, 0, "p", "fine", "8@%xmm0"));
        let probes = parse_usdt_notes(&Fixture::with_notes(notes).build()).unwrap();
        assert_eq!(probes.len(), 2);
        assert!(probes[0].args.is_empty());
        assert!(matches!(
            probes[0].args_error,
            Some(ArgSpecError::Unsupported { ref spec, .. }) if spec == "8@counter(%rip)"
        ));
        let err = probes[1].arg(0).unwrap_err();
        assert!(matches!(err, UsdtError::Args { .. }));
        assert_eq!(
            err.to_string(),
            "probe p:fine has an undecodable argument list: \
             USDT argument spec `8@%xmm0` names unknown x86-64 register `%xmm0`"
        );
    }

    #[test]
    fn unsupported_files() {
        let aarch64 = Fixture {
            machine: EM_AARCH64,
            ..Fixture::default()
        };
        assert!(matches!(
            parse_usdt_notes(&aarch64.build()),
            Err(UsdtError::Elf(ElfError::Unsupported { .. }))
        ));
        let object_file = Fixture {
            e_type: ET_REL,
            ..Fixture::default()
        };
        assert!(matches!(
            parse_usdt_notes(&object_file.build()),
            Err(UsdtError::Elf(ElfError::Unsupported { .. }))
        ));
        let exec = Fixture {
            e_type: ET_EXEC,
            ..Fixture::with_notes(sdt_note(0x400100, 0, "a", "b", ""))
        };
        assert_eq!(parse_usdt_notes(&exec.build()).unwrap().len(), 1);

        let mut elf32 = Fixture::default().build();
        elf32[4] = object::elf::ELFCLASS32;
        assert!(matches!(
            parse_usdt_notes(&elf32),
            Err(UsdtError::Elf(ElfError::Unsupported { .. }))
        ));
        let mut big_endian = Fixture::default().build();
        big_endian[5] = object::elf::ELFDATA2MSB;
        assert!(matches!(
            parse_usdt_notes(&big_endian),
            Err(UsdtError::Elf(ElfError::Unsupported { .. }))
        ));
        assert!(matches!(
            parse_usdt_notes(b"not an elf file at all"),
            Err(UsdtError::Elf(ElfError::NotElf))
        ));
        assert!(matches!(
            parse_usdt_notes(&[]),
            Err(UsdtError::Elf(ElfError::NotElf))
        ));
    }

    #[test]
    fn bad_notes_section() {
        let not_a_note = Fixture {
            note_type: SHT_PROGBITS,
            ..Fixture::with_notes(sdt_note(0x400100, 0, "a", "b", ""))
        };
        assert!(matches!(
            parse_usdt_notes(&not_a_note.build()),
            Err(UsdtError::Section { .. })
        ));
        let bad_align = Fixture {
            note_align: 16,
            ..Fixture::with_notes(sdt_note(0x400100, 0, "a", "b", ""))
        };
        assert!(matches!(
            parse_usdt_notes(&bad_align.build()),
            Err(UsdtError::Section { .. })
        ));
    }

    #[test]
    fn misaligned_input_is_copied() {
        let elf = Fixture::with_notes(sdt_note(0x400100, 0, "a", "b", "8@%rax")).build();
        let mut shifted = vec![0u8; elf.len() + 1];
        let start = if shifted.as_ptr().align_offset(8) == 0 {
            1
        } else {
            0
        };
        shifted[start..start + elf.len()].copy_from_slice(&elf);
        let slice = &shifted[start..start + elf.len()];
        assert_ne!(slice.as_ptr().align_offset(8), 0);
        assert_eq!(
            parse_usdt_notes(slice).unwrap(),
            parse_usdt_notes(&elf).unwrap()
        );
    }

    #[test]
    fn misaligned_notes_section() {
        let mut elf = Fixture::with_notes(sdt_note(0x400100, 0, "a", "b", "")).build();
        let shoff = u64::from_le_bytes(elf[40..48].try_into().unwrap()) as usize;
        let sh_offset_at = shoff + 4 * 64 + 24;
        elf[sh_offset_at..sh_offset_at + 8]
            .copy_from_slice(&(NOTES_OFFSET as u64 + 2).to_le_bytes());
        assert!(matches!(
            parse_usdt_notes(&elf),
            Err(UsdtError::Section { .. })
        ));
    }

    #[test]
    fn segment_past_end_of_file() {
        let mut elf = Fixture::default().build();
        // Grow the second PT_LOAD's p_filesz beyond the file.
        let filesz_at = 64 + 56 + 32;
        elf[filesz_at..filesz_at + 8].copy_from_slice(&0x10_0000u64.to_le_bytes());
        assert!(matches!(
            parse_usdt_notes(&elf),
            Err(UsdtError::Elf(ElfError::Malformed { .. }))
        ));
    }

    /// Every prefix of a valid file, and every single-byte corruption of
    /// it, parses to `Ok` or `Err` without panicking.
    #[test]
    fn never_panics_on_damaged_input() {
        let mut notes = sdt_note(
            0x400100,
            SEMA_ADDR,
            "hotspot",
            "vmops__begin",
            "8@%r12 -4@%eax",
        );
        notes.extend(sdt_note(
            0x400104,
            0,
            "hotspot",
            "gc__begin",
            "1@%dil 4@$5 8@-8(%rbp)",
        ));
        let elf = Fixture::with_notes(notes).build();
        assert_eq!(parse_usdt_notes(&elf).unwrap().len(), 2);
        for len in 0..elf.len() {
            let _ = parse_usdt_notes(&elf[..len]);
        }
        let mut damaged = elf.clone();
        for i in 0..elf.len() {
            for value in [0x00, 0x01, 0x7f, 0x80, 0xff, elf[i] ^ 0x20] {
                damaged[i] = value;
                let _ = parse_usdt_notes(&damaged);
            }
            damaged[i] = elf[i];
        }
    }

    #[test]
    fn error_messages_are_single_sentences() {
        let (index, defect) = note_error(note(NOTE_OWNER, NT_STAPSDT, &[0; 4]));
        let err = UsdtError::Note { index, defect };
        assert_eq!(
            err.to_string(),
            "SDT note #0 in .note.stapsdt is invalid: \
             its descriptor is 4 bytes, shorter than the 24-byte address block"
        );
    }

    #[test]
    fn read_errors_name_the_file() {
        let missing = Path::new("/nonexistent/pausewatch/libjvm.so");
        let err = read_usdt_probes(missing).unwrap_err();
        assert!(matches!(err, UsdtError::Io { .. }));
        assert!(
            err.to_string()
                .contains("/nonexistent/pausewatch/libjvm.so"),
            "{err}"
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("garbage.so");
        std::fs::write(&path, b"\x7fELF garbage").unwrap();
        let err = read_usdt_probes(&path).unwrap_err();
        assert!(matches!(err, UsdtError::File { .. }));
        assert!(
            err.to_string().starts_with(&path.display().to_string()),
            "{err}"
        );

        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        assert!(matches!(
            read_usdt_probes(&empty),
            Err(UsdtError::File { .. })
        ));

        let good = dir.path().join("good.so");
        let elf = Fixture::with_notes(sdt_note(0x400100, 0, "a", "b", "")).build();
        std::fs::write(&good, elf).unwrap();
        assert_eq!(read_usdt_probes(&good).unwrap().len(), 1);
    }

    // ---- Real binaries installed on this machine and in CI ----

    const JDK17: &str = "/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so";
    const JDK25: &str = "/usr/lib/jvm/temurin-25-jdk-amd64/lib/server/libjvm.so";
    const PYTHON: &str = "/usr/bin/python3.11";

    fn read(path: &str) -> Vec<UsdtProbe> {
        read_usdt_probes(Path::new(path)).unwrap_or_else(|e| panic!("{e}"))
    }

    fn only<'a>(probes: &'a [UsdtProbe], provider: &str, name: &str) -> &'a UsdtProbe {
        let found: Vec<_> = find(probes, provider, name).collect();
        assert_eq!(found.len(), 1, "{provider}:{name}");
        found[0]
    }

    /// The probes pausewatch attaches in a HotSpot `libjvm.so`, checked for
    /// what every JDK build keeps: the probe exists, takes the arguments the
    /// HotSpot sources give it (`hotspot.d`, `hs_private.d`), needs no
    /// semaphore, and sits in an executable segment as `readelf` reads it.
    /// Addresses, registers and site counts change with every build, so they
    /// are compared with `readelf` in [`real_files_match_readelf`], never
    /// written down here.
    fn check_hotspot(path: &str) {
        let probes = read(path);
        let loads = readelf_loads(&readelf(&["-lW"], path));
        // None of HotSpot's probes has a semaphore (machine facts, JDK 11-25).
        assert!(probes.iter().all(|p| p.semaphore == 0), "{path}");
        for (provider, name, argc, unique) in [
            ("hs_private", "safepoint__begin", 0, true),
            ("hs_private", "safepoint__end", 0, true),
            ("hotspot", "vmops__begin", 3, false),
            ("hotspot", "vmops__end", 3, false),
            ("hotspot", "gc__begin", 1, false),
            ("hotspot", "gc__end", 0, false),
            ("hotspot", "mem__pool__gc__begin", 8, false),
            ("hotspot", "mem__pool__gc__end", 8, false),
        ] {
            let sites: Vec<_> = find(&probes, provider, name).collect();
            assert!(!sites.is_empty(), "{path} lacks {provider}:{name}");
            if unique {
                assert_eq!(sites.len(), 1, "{path} {provider}:{name}");
            }
            for p in sites {
                assert!(p.args_error.is_none(), "{path} {p:?}");
                assert_eq!(p.args.len(), argc, "{path} {provider}:{name} {p:?}");
                assert_in_executable_segment(&loads, p, path);
            }
        }
        // gc__begin's one argument is the `full` bool: one byte, or a
        // constant where the compiler folded it.
        for p in find(&probes, "hotspot", "gc__begin") {
            assert_eq!(p.args[0].size, 1, "{path} {p:?}");
        }
        // vmops' second argument is the length of the name: a 64-bit value.
        for p in find(&probes, "hotspot", "vmops__begin") {
            assert_eq!(p.args[1].size, 8, "{path} {p:?}");
        }
    }

    /// `readelf -lW` says the probe's address lies in a segment with the X flag.
    fn assert_in_executable_segment(loads: &[ReadelfLoad], p: &UsdtProbe, path: &str) {
        let seg = loads
            .iter()
            .find(|l| p.address >= l.vaddr && p.address - l.vaddr < l.filesz)
            .unwrap_or_else(|| panic!("{path}: {p:?} lies in no LOAD segment"));
        assert!(seg.flags.contains('E'), "{path}: {p:?} is in {seg:?}");
    }

    #[test]
    fn jdk17_libjvm() {
        check_hotspot(JDK17);
    }

    #[test]
    fn jdk25_libjvm() {
        check_hotspot(JDK25);
    }

    /// CPython's probes (`Include/pydtrace.d`), checked for what every 3.11
    /// build keeps: the GC probes pausewatch attaches, their argument widths
    /// (`int generation`, `Py_ssize_t collected`), and a semaphore on every
    /// probe, in a writable segment.
    #[test]
    fn python311() {
        let probes = read(PYTHON);
        let loads = readelf_loads(&readelf(&["-lW"], PYTHON));
        assert!(probes.iter().all(|p| p.provider == "python"));
        let names: std::collections::BTreeSet<_> = probes.iter().map(|p| p.name.as_str()).collect();
        for name in [
            "gc__start",
            "gc__done",
            "function__entry",
            "function__return",
            "line",
            "audit",
            "import__find__load__start",
            "import__find__load__done",
        ] {
            assert!(
                names.contains(name),
                "{PYTHON} lacks python:{name}: {names:?}"
            );
        }
        for p in &probes {
            assert_in_executable_segment(&loads, p, PYTHON);
            // Unlike libjvm, CPython guards every probe with a semaphore.
            assert_ne!(p.semaphore, 0, "{p:?}");
            let seg = loads
                .iter()
                .find(|l| p.semaphore >= l.vaddr && p.semaphore - l.vaddr < l.memsz)
                .unwrap_or_else(|| panic!("{p:?}: semaphore in no LOAD segment"));
            assert!(seg.flags.contains('W'), "{p:?} semaphore in {seg:?}");
        }
        let p = only(&probes, "python", "gc__start");
        assert_eq!(
            (p.args.len(), p.args[0].size, p.args[0].signed),
            (1, 4, true)
        );
        let p = only(&probes, "python", "gc__done");
        assert_eq!(
            (p.args.len(), p.args[0].size, p.args[0].signed),
            (1, 8, true)
        );
    }

    /// One SDT note as `readelf -n` prints it.
    #[derive(Debug, PartialEq)]
    struct ReadelfNote {
        provider: String,
        name: String,
        location: u64,
        base: u64,
        semaphore: u64,
        args: String,
    }

    /// `readelf` (binutils, which `cargo xtask test` installs) on a file.
    fn readelf(args: &[&str], path: &str) -> String {
        let out = std::process::Command::new("readelf")
            .args(args)
            .arg(path)
            .env("LC_ALL", "C")
            .output()
            .unwrap_or_else(|e| panic!("running readelf (install binutils): {e}"));
        assert!(out.status.success(), "readelf {args:?} {path} failed");
        String::from_utf8(out.stdout).unwrap()
    }

    fn hex(text: &str) -> u64 {
        let text = text.trim().trim_end_matches(',');
        u64::from_str_radix(text.trim_start_matches("0x"), 16).unwrap()
    }

    fn readelf_notes(text: &str) -> Vec<ReadelfNote> {
        let mut notes = Vec::new();
        let mut lines = text.lines().map(str::trim);
        while let Some(line) = lines.next() {
            let Some(provider) = line.strip_prefix("Provider: ") else {
                continue;
            };
            let name = lines.next().unwrap().strip_prefix("Name: ").unwrap();
            // "Location: 0x..., Base: 0x..., Semaphore: 0x..."
            let fields: Vec<_> = lines.next().unwrap().split_whitespace().collect();
            assert_eq!(
                (fields[0], fields[2], fields[4]),
                ("Location:", "Base:", "Semaphore:")
            );
            let args = lines.next().unwrap().strip_prefix("Arguments:").unwrap();
            notes.push(ReadelfNote {
                provider: provider.to_owned(),
                name: name.to_owned(),
                location: hex(fields[1]),
                base: hex(fields[3]),
                semaphore: hex(fields[5]),
                args: args.trim().to_owned(),
            });
        }
        notes
    }

    /// One LOAD line of `readelf -lW`.
    #[derive(Debug)]
    struct ReadelfLoad {
        offset: u64,
        vaddr: u64,
        filesz: u64,
        memsz: u64,
        /// `R`, `W` and `E` as readelf prints them.
        flags: String,
    }

    fn readelf_loads(text: &str) -> Vec<ReadelfLoad> {
        text.lines()
            .filter_map(|line| {
                let f: Vec<_> = line.split_whitespace().collect();
                (f.first() == Some(&"LOAD")).then(|| ReadelfLoad {
                    offset: hex(f[1]),
                    vaddr: hex(f[2]),
                    filesz: hex(f[4]),
                    memsz: hex(f[5]),
                    // Flags sit between MemSiz and Align; "R E" is two words.
                    flags: f[6..f.len() - 1].concat(),
                })
            })
            .collect()
    }

    fn readelf_section_addr(text: &str, section: &str) -> Option<u64> {
        text.lines().find_map(|line| {
            let f: Vec<_> = line.split_whitespace().collect();
            let at = f.iter().position(|w| *w == section)?;
            Some(hex(f[at + 2]))
        })
    }

    /// Cross-checks every probe against binutils: same notes in the same
    /// order, and file offsets equal to what the `readelf -lW` segment table
    /// implies.
    #[test]
    fn real_files_match_readelf() {
        for path in [JDK17, JDK25, PYTHON] {
            let expected = readelf_notes(&readelf(&["-n"], path));
            let loads = readelf_loads(&readelf(&["-lW"], path));
            let base_section = readelf_section_addr(&readelf(&["-SW"], path), BASE_SECTION);
            let probes = read(path);
            assert_eq!(probes.len(), expected.len(), "{path}");
            assert!(!probes.is_empty());
            for (p, e) in probes.iter().zip(&expected) {
                let adjust = |v: u64| match base_section {
                    Some(b) => v.wrapping_add(b.wrapping_sub(e.base)),
                    None => v,
                };
                let semaphore = if e.semaphore == 0 {
                    0
                } else {
                    adjust(e.semaphore)
                };
                assert_eq!(
                    (p.provider.as_str(), p.name.as_str(), p.raw_args.as_str()),
                    (e.provider.as_str(), e.name.as_str(), e.args.as_str()),
                );
                assert_eq!((p.address, p.semaphore), (adjust(e.location), semaphore));
                assert_eq!(p.args.len(), e.args.split_whitespace().count());

                let text = loads
                    .iter()
                    .find(|l| p.address >= l.vaddr && p.address - l.vaddr < l.filesz)
                    .unwrap();
                assert_eq!(
                    p.file_offset,
                    p.address - text.vaddr + text.offset,
                    "{path} {e:?}"
                );
                if semaphore != 0 {
                    let data = loads
                        .iter()
                        .find(|l| semaphore >= l.vaddr && semaphore - l.vaddr < l.memsz)
                        .unwrap();
                    assert_eq!(
                        p.semaphore_offset,
                        Some(semaphore - data.vaddr + data.offset)
                    );
                } else {
                    assert_eq!(p.semaphore_offset, None);
                }
            }
        }
    }
}
