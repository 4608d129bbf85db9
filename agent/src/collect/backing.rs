//! The files behind a target's read-only memory, to read its runtime's
//! names from once the process is gone.
//!
//! A cause id is often the address of a name in the runtime's read-only
//! data (see [`super::causes`]); a short process may exit before the
//! collector reads it. Its binaries stay open (the [`Binary`] of each
//! probe), and a byte at an address that a read-only mapping of such a
//! file covers is the file's byte at the mapping's offset, if the ELF file
//! also loads that byte read-only: a mapping that is read-only now may have
//! been written before (RELRO data is relocated, then made read-only), but
//! never one from a segment the ELF file loads without `PF_W`.

use object::elf::PF_W;

use crate::{
    discovery::{Binary, Discovered, Segment},
    probes::elf::{LoadSegment, MappedFile, load_segments, parse_elf64},
};

/// A range of addresses whose bytes may be read from a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Readable {
    start: u64,
    end: u64,
    /// File offset of the byte at `start`.
    offset: u64,
}

/// The readable ranges of one open file.
#[derive(Clone, Debug)]
struct BackedFile {
    binary: Binary,
    ranges: Vec<Readable>,
}

/// The open files behind a target's read-only mappings, as far as they
/// can stand in for its memory.
#[derive(Clone, Debug, Default)]
pub struct FileBacking {
    files: Vec<BackedFile>,
}

impl FileBacking {
    /// The files of `discovered`'s probes (its runtime's binaries), with
    /// the read-only mappings the process had of them when inspected.
    pub fn of(discovered: &Discovered) -> FileBacking {
        let mut backing = FileBacking::default();
        for probe in &discovered.probes {
            let binary = &probe.binary;
            if backing.files.iter().any(|f| f.binary.same_file(binary)) {
                continue;
            }
            // The mapping maps names the file by: path, and whether it is
            // marked deleted (a replaced file and its successor may both be
            // mapped under one path).
            let mut of_file = discovered
                .process
                .mapped
                .iter()
                .filter(|m| m.path == binary.shown() && m.deleted == binary.is_deleted());
            match (of_file.next(), of_file.next()) {
                (Some(mapping), None) => backing.add(binary, &mapping.read_only),
                _ => log::debug!(
                    "pid {}: {binary} is not mapped once; its names are read from memory only",
                    discovered.process.pid
                ),
            }
        }
        backing
    }

    /// Adds `binary`, mapped read-only at `mapped`, as far as its ELF
    /// program headers load those bytes read-only.
    pub fn add(&mut self, binary: &Binary, mapped: &[Segment]) {
        let loads = MappedFile::open(binary.path())
            .map_err(|e| e.to_string())
            .and_then(|file| {
                parse_elf64(&file)
                    .and_then(|elf| load_segments(&elf))
                    .map_err(|e| e.to_string())
            });
        let loads = match loads {
            Ok(loads) => loads,
            Err(e) => {
                log::debug!("{binary}: {e}; its names are read from memory only");
                return;
            }
        };
        let ranges = readable(mapped, &loads);
        if !ranges.is_empty() {
            self.files.push(BackedFile {
                binary: binary.clone(),
                ranges,
            });
        }
    }

    /// Reads up to `buf.len()` bytes at `addr` from the file behind it,
    /// stopping at the end of the readable range: the number read, or
    /// `None` if no readable range holds `addr`.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Option<usize> {
        self.files.iter().find_map(|f| {
            let (offset, len) = locate(&f.ranges, addr, buf.len())?;
            let n = f.binary.read_at(&mut buf[..len], offset).ok()?;
            (n > 0).then_some(n)
        })
    }
}

/// The address ranges of `mapped` (read-only mappings of one file) whose
/// file bytes the ELF file loads without write permission (`loads`).
fn readable(mapped: &[Segment], loads: &[LoadSegment]) -> Vec<Readable> {
    let mut out = Vec::new();
    for m in mapped {
        let Some(m_file_end) = m.offset.checked_add(m.end.saturating_sub(m.start)) else {
            continue;
        };
        for l in loads.iter().filter(|l| l.flags & PF_W == 0) {
            let Some(l_file_end) = l.offset.checked_add(l.filesz) else {
                continue;
            };
            let (lo, hi) = (m.offset.max(l.offset), m_file_end.min(l_file_end));
            if lo < hi {
                out.push(Readable {
                    start: m.start + (lo - m.offset),
                    end: m.start + (hi - m.offset),
                    offset: lo,
                });
            }
        }
    }
    out
}

/// The file offset of `addr` and how many of `len` bytes from there lie in
/// the same range.
fn locate(ranges: &[Readable], addr: u64, len: usize) -> Option<(u64, usize)> {
    let r = ranges.iter().find(|r| r.start <= addr && addr < r.end)?;
    let avail = usize::try_from(r.end - addr).unwrap_or(usize::MAX);
    Some((r.offset + (addr - r.start), len.min(avail)))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use object::{Object, ObjectSection};
    use procfs::process::MMPermissions;

    use super::*;
    use crate::discovery::Process;

    fn load(offset: u64, filesz: u64, flags: u32) -> LoadSegment {
        LoadSegment {
            vaddr: 0x40_0000 + offset,
            offset,
            filesz,
            memsz: filesz,
            flags,
        }
    }

    fn perms(s: &str) -> MMPermissions {
        let mut p = MMPermissions::empty();
        for (c, f) in s.chars().zip([
            MMPermissions::READ,
            MMPermissions::WRITE,
            MMPermissions::EXECUTE,
        ]) {
            if c != '-' {
                p |= f;
            }
        }
        p | MMPermissions::PRIVATE
    }

    #[test]
    fn addresses_map_to_file_offsets_inside_read_only_mappings_only() {
        // libjvm-like: text r-x from file offset 0x1000, rodata r-- from
        // 0x5000, data rw- from 0x8000.
        let loads = [
            load(0, 0x5000, object::elf::PF_R | object::elf::PF_X),
            load(0x5000, 0x2000, object::elf::PF_R),
            load(0x8000, 0x800, object::elf::PF_R | PF_W),
        ];
        let base = 0x7f00_0000_0000;
        let maps = [
            ((base + 0x1000, base + 0x5000), "r-x", 0x1000),
            ((base + 0x5000, base + 0x7000), "r--", 0x5000),
            ((base + 0x8000, base + 0x9000), "rw-", 0x8000),
        ];
        let segments: Vec<Segment> = maps
            .iter()
            .filter_map(|&(range, p, off)| Segment::of_map(range, perms(p), off))
            .collect();
        // The writable mapping is refused outright.
        assert_eq!(segments.len(), 2);
        assert_eq!(Segment::of_map((0, 0x1000), perms("rw-"), 0), None);
        let ranges = readable(&segments, &loads);
        // An address in rodata: a non-zero mapping offset is added.
        assert_eq!(
            locate(&ranges, base + 0x5123, 16),
            Some((0x5123, 16)),
            "{ranges:?}"
        );
        // In text, with its own offset.
        assert_eq!(locate(&ranges, base + 0x1010, 8), Some((0x1010, 8)));
        // A read is cut at the end of the range.
        assert_eq!(locate(&ranges, base + 0x6ffc, 128), Some((0x6ffc, 4)));
        // Outside every mapping, below, between and above.
        assert_eq!(locate(&ranges, base + 0xfff, 1), None);
        assert_eq!(locate(&ranges, base + 0x7000, 1), None);
        assert_eq!(locate(&ranges, base + 0x9000, 1), None);
        assert_eq!(locate(&ranges, 0, 1), None);
        assert_eq!(locate(&ranges, u64::MAX, 1), None);
        // In the writable mapping.
        assert_eq!(locate(&ranges, base + 0x8010, 1), None);
        // A mapping made read-only of a segment the file loads writable
        // (RELRO after relocation) is not read from the file either.
        let relro = Segment::of_map((base + 0x8000, base + 0x8800), perms("r--"), 0x8000);
        let relro = readable(&relro.into_iter().collect::<Vec<_>>(), &loads);
        assert!(relro.is_empty(), "{relro:?}");
        // A mapping that covers only part of a load segment, from the middle.
        let part = [Segment {
            start: base + 0x6000,
            end: base + 0x9000,
            offset: 0x6000,
        }];
        assert_eq!(
            readable(&part, &loads),
            vec![Readable {
                start: base + 0x6000,
                end: base + 0x7000,
                offset: 0x6000
            }]
        );
    }

    #[test]
    fn reads_a_string_of_a_real_file_through_a_synthetic_mapping() {
        let path = Path::new("/usr/bin/python3.11");
        let data = std::fs::read(path).unwrap();
        // Independently of the arithmetic under test: where the string
        // lies in the file, from `object`'s view of `.rodata`.
        let elf = object::File::parse(&*data).unwrap();
        let rodata = elf.section_by_name(".rodata").unwrap();
        let (section_offset, _) = rodata.file_range().unwrap();
        let bytes = rodata.data().unwrap();
        let needle = b"maximum recursion depth exceeded during compilation\0";
        let at = bytes
            .windows(needle.len())
            .position(|w| w == needle)
            .unwrap() as u64;
        let file_offset = section_offset + at;
        // The file's read-only segment that holds `.rodata`, mapped at a
        // made-up base, as ld.so would with its own offset.
        let loads = load_segments(&parse_elf64(&MappedFile::open(path).unwrap()).unwrap()).unwrap();
        let seg = loads
            .iter()
            .find(|l| l.flags & PF_W == 0 && l.file_offset(rodata.address()).is_some())
            .unwrap();
        assert_ne!(seg.offset, 0);
        let base = 0x7f12_3400_0000;
        let mapped = [Segment {
            start: base,
            end: base + seg.filesz.next_multiple_of(4096),
            offset: seg.offset,
        }];
        let mut backing = FileBacking::default();
        backing.add(&Binary::open_path(path).unwrap(), &mapped);
        let addr = base + (file_offset - seg.offset);
        let mut buf = [0u8; 64];
        let n = backing.read(addr, &mut buf).unwrap();
        assert_eq!(&buf[..needle.len()], needle, "{n} bytes");
        // Below the mapping and in the data segment: nothing.
        assert_eq!(backing.read(base - 1, &mut buf), None);
        let data_seg = loads.iter().find(|l| l.flags & PF_W != 0).unwrap();
        let mut writable = FileBacking::default();
        writable.add(
            &Binary::open_path(path).unwrap(),
            &[Segment {
                start: base,
                end: base + data_seg.filesz,
                offset: data_seg.offset,
            }],
        );
        assert_eq!(writable.read(base, &mut buf), None);
    }

    #[test]
    fn reads_own_read_only_data_from_the_executable_file() {
        static NAME: &[u8] = b"G1CollectForAllocation\0";
        let me = Process::inspect(std::process::id()).unwrap();
        let exe = Binary::open_exe(&me).unwrap();
        let mapping = me.mapped.iter().find(|m| m.path == me.exe).unwrap();
        assert!(!mapping.read_only.is_empty(), "{mapping:?}");
        let mut backing = FileBacking::default();
        backing.add(&exe, &mapping.read_only);
        let mut buf = [0u8; 23];
        assert_eq!(
            backing.read(NAME.as_ptr() as u64, &mut buf),
            Some(NAME.len())
        );
        assert_eq!(&buf[..], NAME);
        // A writable static is not read from the file.
        static mut COUNTER: [u8; 8] = [1; 8];
        let addr = std::ptr::addr_of!(COUNTER) as u64;
        assert_eq!(backing.read(addr, &mut buf), None);
    }
}
