//! ELF helpers shared by the probe parsers: map a file without copying it,
//! open it as 64-bit little-endian ELF, and turn virtual addresses into the
//! file offsets that uprobes are attached at.

use std::fmt;
use std::fs::File;
use std::io;
use std::ops::Deref;
use std::path::Path;

use memmap2::Mmap;
use object::elf::{FileHeader64, PF_X, PT_LOAD};
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use object::{Endianness, FileKind, LittleEndian};

/// A 64-bit little-endian ELF file borrowed from a byte slice.
pub type Elf64<'data> = ElfFile64<'data, LittleEndian, &'data [u8]>;

/// A file mapped read-only into memory.
///
/// Runtime binaries are tens of megabytes and the parsers touch only their
/// headers and a few sections, so mapping lets the kernel fault in just those
/// pages instead of reading (and copying) the whole file.
pub struct MappedFile {
    map: Mmap,
}

impl MappedFile {
    /// Opens and maps `path` read-only.
    pub fn open(path: &Path) -> io::Result<MappedFile> {
        let file = File::open(path)?;
        // SAFETY: the mapping is read-only, so this process never writes
        // through it. If another process truncates or rewrites the file while
        // it is mapped, reads see the change or raise SIGBUS; that is the
        // accepted cost of mapping (package managers replace the binaries of
        // live processes by rename rather than rewriting them in place).
        let map = unsafe { Mmap::map(&file)? };
        Ok(MappedFile { map })
    }

    /// The file's bytes.
    pub fn data(&self) -> &[u8] {
        &self.map
    }
}

impl Deref for MappedFile {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.map
    }
}

impl fmt::Debug for MappedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MappedFile")
            .field("len", &self.map.len())
            .finish()
    }
}

/// Why bytes could not be opened as a 64-bit little-endian ELF file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    /// The bytes do not start with an ELF header.
    #[error("not an ELF file")]
    NotElf,
    /// A valid ELF file of a kind this agent does not handle.
    #[error("unsupported ELF file: {what}")]
    Unsupported {
        /// The unsupported property, e.g. "32-bit class".
        what: String,
    },
    /// The bytes are not 8-byte aligned in memory, which the `object`
    /// crate's ELF structures require; see [`aligned`].
    #[error("ELF data is not 8-byte aligned in memory")]
    Misaligned,
    /// The headers are inconsistent or point outside the file.
    #[error("malformed ELF file: {reason}")]
    Malformed {
        /// What was wrong, as reported by the `object` crate or found here.
        reason: String,
    },
}

impl ElfError {
    fn malformed(reason: impl fmt::Display) -> ElfError {
        ElfError::Malformed {
            reason: reason.to_string(),
        }
    }
}

/// Opens `data` as a 64-bit little-endian ELF file. Other classes and byte
/// orders are rejected as [`ElfError::Unsupported`] up front so they do not
/// surface as confusing parse errors later.
pub fn parse_elf64(data: &[u8]) -> Result<Elf64<'_>, ElfError> {
    match FileKind::parse(data) {
        Ok(FileKind::Elf64) => {}
        Ok(FileKind::Elf32) => {
            return Err(ElfError::Unsupported {
                what: "32-bit class".to_owned(),
            });
        }
        Ok(_) | Err(_) => return Err(ElfError::NotElf),
    }
    if data.as_ptr().align_offset(ALIGN) != 0 {
        return Err(ElfError::Misaligned);
    }
    let header = FileHeader64::<Endianness>::parse(data).map_err(ElfError::malformed)?;
    if !header.is_little_endian() {
        return Err(ElfError::Unsupported {
            what: "big-endian byte order".to_owned(),
        });
    }
    ElfFile64::<LittleEndian>::parse(data).map_err(ElfError::malformed)
}

/// Alignment [`parse_elf64`] needs, that of the ELF structures' `u64`s.
pub const ALIGN: usize = 8;

/// Returns `data` itself when it is aligned for [`parse_elf64`], else an
/// aligned copy in `buf`. Maps and heap buffers are always aligned; this is
/// for callers holding an arbitrary sub-slice.
pub fn aligned<'a>(data: &'a [u8], buf: &'a mut Vec<u64>) -> &'a [u8] {
    if data.as_ptr().align_offset(ALIGN) == 0 {
        return data;
    }
    buf.clear();
    buf.resize(data.len().div_ceil(ALIGN), 0);
    let bytes = object::pod::bytes_of_slice_mut(buf.as_mut_slice());
    let copy = bytes.get_mut(..data.len()).unwrap_or_default();
    copy.copy_from_slice(data);
    copy
}

/// One `PT_LOAD` program header: a range of the file mapped at a virtual
/// address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadSegment {
    /// `p_vaddr`
    pub vaddr: u64,
    /// `p_offset`
    pub offset: u64,
    /// `p_filesz`: bytes backed by the file.
    pub filesz: u64,
    /// `p_memsz`: bytes in memory; the tail past `filesz` is zero-filled.
    pub memsz: u64,
    /// `p_flags` (`PF_R`, `PF_W`, `PF_X`).
    pub flags: u32,
}

impl LoadSegment {
    /// Whether the segment is mapped executable, as probe sites must be.
    pub fn is_executable(&self) -> bool {
        self.flags & PF_X != 0
    }

    /// The file offset of `addr` if it lies in this segment's file-backed
    /// bytes.
    pub fn file_offset(&self, addr: u64) -> Option<u64> {
        self.offset_of(addr, self.filesz)
    }

    fn offset_of(&self, addr: u64, len: u64) -> Option<u64> {
        let delta = addr.checked_sub(self.vaddr)?;
        (delta < len).then_some(())?;
        self.offset.checked_add(delta)
    }
}

/// The `PT_LOAD` segments of `elf`, in program-header order. A segment whose
/// file range lies outside the file is an error, so offsets computed from
/// the result always point into the file.
pub fn load_segments(elf: &Elf64<'_>) -> Result<Vec<LoadSegment>, ElfError> {
    let endian = elf.endian();
    let data = elf.data();
    let mut segments = Vec::new();
    for (index, phdr) in elf.elf_program_headers().iter().enumerate() {
        if phdr.p_type(endian) != PT_LOAD {
            continue;
        }
        if phdr.data(endian, data).is_err() {
            return Err(ElfError::malformed(format_args!(
                "program header {index} (PT_LOAD) points past the end of the file"
            )));
        }
        segments.push(LoadSegment {
            vaddr: phdr.p_vaddr(endian),
            offset: phdr.p_offset(endian),
            filesz: phdr.p_filesz(endian),
            memsz: phdr.p_memsz(endian),
            flags: phdr.p_flags(endian),
        });
    }
    Ok(segments)
}

/// The `PT_LOAD` segment whose file-backed bytes contain `addr`, if any.
pub fn segment_for_file_addr(segments: &[LoadSegment], addr: u64) -> Option<&LoadSegment> {
    segments.iter().find(|s| s.file_offset(addr).is_some())
}

/// Translates a virtual address to the file offset holding its byte, through
/// the first `PT_LOAD` segment whose file-backed part contains it
/// (`addr - p_vaddr + p_offset`). This is the offset a uprobe is attached at.
pub fn vaddr_to_file_offset(segments: &[LoadSegment], addr: u64) -> Option<u64> {
    segments.iter().find_map(|s| s.file_offset(addr))
}

/// Like [`vaddr_to_file_offset`], but accepts any address inside a segment's
/// memory image (`p_memsz`), including zero-filled `.bss`. libbpf computes
/// USDT semaphore offsets this way; whether the kernel can then find the
/// semaphore is up to the uprobe reference-counter code.
pub fn vaddr_to_mapped_offset(segments: &[LoadSegment], addr: u64) -> Option<u64> {
    segments.iter().find_map(|s| s.offset_of(addr, s.memsz))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Crafted segments, read from no file: the test owns these values.
    const TEXT: LoadSegment = LoadSegment {
        vaddr: 0x41f000,
        offset: 0x1f000,
        filesz: 0x1000,
        memsz: 0x1000,
        flags: PF_X,
    };
    const DATA: LoadSegment = LoadSegment {
        vaddr: 0x945dc8,
        offset: 0x544dc8,
        filesz: 0x100,
        memsz: 0x300,
        flags: 0,
    };

    #[test]
    fn translation() {
        let segs = [TEXT, DATA];
        assert_eq!(vaddr_to_file_offset(&segs, 0x41f000), Some(0x1f000));
        assert_eq!(vaddr_to_file_offset(&segs, 0x41ffff), Some(0x1ffff));
        assert_eq!(vaddr_to_file_offset(&segs, 0x420000), None);
        assert_eq!(vaddr_to_file_offset(&segs, 0x41efff), None);
        assert_eq!(vaddr_to_file_offset(&segs, 0x945dc8 + 0x100), None);
        assert_eq!(
            vaddr_to_mapped_offset(&segs, 0x945dc8 + 0x100),
            Some(0x544dc8 + 0x100)
        );
        assert_eq!(vaddr_to_mapped_offset(&segs, 0x945dc8 + 0x300), None);
        assert_eq!(vaddr_to_file_offset(&segs, 0), None);
        assert_eq!(vaddr_to_file_offset(&segs, u64::MAX), None);
        assert!(segment_for_file_addr(&segs, 0x41f010).is_some_and(|s| s.is_executable()));
        assert!(segment_for_file_addr(&segs, 0x945dc9).is_some_and(|s| !s.is_executable()));
    }

    #[test]
    fn translation_never_overflows() {
        let huge = LoadSegment {
            vaddr: u64::MAX - 1,
            offset: u64::MAX,
            filesz: u64::MAX,
            memsz: u64::MAX,
            flags: 0,
        };
        assert_eq!(vaddr_to_file_offset(&[huge], u64::MAX), None);
        assert_eq!(
            vaddr_to_mapped_offset(&[huge], u64::MAX - 1),
            Some(u64::MAX)
        );
    }

    #[test]
    fn rejects_non_elf64() {
        assert_eq!(parse_elf64(&[]).err(), Some(ElfError::NotElf));
        assert_eq!(parse_elf64(b"#!/bin/sh\n").err(), Some(ElfError::NotElf));
        // Backed by u64s so that the header is aligned.
        let mut words = [0u64; 9];
        let ident = object::pod::bytes_of_slice_mut(&mut words[..8]);
        ident[..4].copy_from_slice(b"\x7fELF");
        ident[4] = object::elf::ELFCLASS32;
        ident[5] = object::elf::ELFDATA2LSB;
        ident[6] = 1;
        assert!(matches!(
            parse_elf64(ident),
            Err(ElfError::Unsupported { what }) if what == "32-bit class"
        ));
        ident[4] = object::elf::ELFCLASS64;
        ident[5] = object::elf::ELFDATA2MSB;
        assert!(matches!(
            parse_elf64(ident),
            Err(ElfError::Unsupported { what }) if what == "big-endian byte order"
        ));
        // A 64-bit ident with the rest of the header cut off.
        ident[5] = object::elf::ELFDATA2LSB;
        assert!(matches!(
            parse_elf64(&ident[..20]),
            Err(ElfError::Malformed { .. })
        ));
        let header = ident.to_vec();
        let mut shifted = [0u64; 9];
        let shifted = object::pod::bytes_of_slice_mut(&mut shifted);
        shifted[1..65].copy_from_slice(&header);
        assert_eq!(
            parse_elf64(&shifted[1..65]).err(),
            Some(ElfError::Misaligned)
        );
    }

    #[test]
    fn aligned_copies_only_when_needed() {
        let words = [0x0807_0605_0403_0201u64, 0x100f_0e0d_0c0b_0a09];
        let bytes = object::pod::bytes_of_slice(&words);
        let mut buf = Vec::new();
        assert_eq!(aligned(bytes, &mut buf).as_ptr(), bytes.as_ptr());
        assert!(buf.is_empty());
        let copy = aligned(&bytes[3..14], &mut buf);
        assert_eq!(copy, &bytes[3..14]);
        assert_eq!(copy.as_ptr().align_offset(ALIGN), 0);
        assert_eq!(aligned(&bytes[1..1], &mut buf), &[] as &[u8]);
    }

    #[test]
    fn maps_a_real_file() {
        let path = "/usr/bin/python3.11";
        let map = MappedFile::open(Path::new(path)).unwrap();
        let elf = parse_elf64(map.data()).unwrap();
        let segs = load_segments(&elf).unwrap();
        // The segment count differs between builds: take it from binutils.
        let readelf = std::process::Command::new("readelf")
            .args(["-lW", path])
            .env("LC_ALL", "C")
            .output()
            .expect("running readelf (install binutils)");
        let text = String::from_utf8(readelf.stdout).unwrap();
        let loads: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|f| f.first() == Some(&"LOAD"))
            .collect();
        assert_eq!(segs.len(), loads.len(), "{text}");
        for (seg, f) in segs.iter().zip(&loads) {
            let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
            assert_eq!((seg.offset, seg.vaddr), (hex(f[1]), hex(f[2])));
            assert_eq!(seg.is_executable(), f[6..].contains(&"E"), "{f:?}");
        }
        assert!(MappedFile::open(Path::new("/nonexistent/pausewatch")).is_err());
    }
}
