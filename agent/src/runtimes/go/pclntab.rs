//! Function addresses from a Go binary's `.gopclntab`, for Go 1.18 and later.
//!
//! `-ldflags=-s -w` strips `.symtab` and DWARF, but the runtime needs its
//! pc-line table for stack traces, so `.gopclntab` stays, and it names every
//! function with its entry address. No maintained crate reads it for us
//! (the crates on crates.io are reverse-engineering suites built on
//! `goblin`, with a large surface for a 60-line table walk), so this module
//! reads the small part the agent needs: the header, the function table and
//! the function-name table.
//!
//! Layout (Go 1.18 magic `0xfffffff0`, Go 1.20+ `0xfffffff1`; identical for
//! what is read here; little-endian, 8-byte pointers):
//!
//! ```text
//! 0  magic u32, pad u16, minLC u8, ptrSize u8
//! 8  nfunc, nfiles, textStart, funcnameOffset, cuOffset, filetabOffset,
//!    pctabOffset, pclnOffset                 (one pointer-sized word each)
//! functab at pclnOffset: nfunc+1 × (entryOff u32, funcOff u32)
//! _func at pclnOffset+funcOff: entryOff u32, nameOff i32, ...
//! name: NUL-terminated at funcnameOffset+nameOff
//! ```
//!
//! A function's address is the text base plus `entryOff`; it ends where the
//! next table entry begins (the last entry is the end of the text). The
//! header's `textStart` is that base only up to Go 1.25 (from Go 1.26 it is
//! always 0): the base callers should use is the module data's `text`
//! ([`super::module`]), set with [`Pclntab::with_text_base`].

/// Go 1.18 and 1.19 header magic.
pub const MAGIC_118: u32 = 0xffff_fff0;
/// Go 1.20 and later header magic.
pub const MAGIC_120: u32 = 0xffff_fff1;

/// Why a `.gopclntab` cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PclntabError {
    /// A magic of another Go version.
    #[error("unsupported .gopclntab magic {0:#x} (Go 1.18 or later is needed)")]
    Magic(u32),
    /// Not 8-byte pointers or not x86 (minLC 1).
    #[error("unsupported .gopclntab for pointer size {ptr_size}, instruction size {min_lc}")]
    Architecture {
        /// Pointer size byte of the header.
        ptr_size: u8,
        /// Minimum instruction length byte of the header.
        min_lc: u8,
    },
    /// An offset points outside the section.
    #[error("malformed .gopclntab: {0}")]
    Malformed(&'static str),
}

/// One function of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoFunc<'a> {
    /// Symbol name, e.g. `runtime.stopTheWorldWithSema`.
    pub name: &'a str,
    /// Virtual address of its first instruction.
    pub entry: u64,
    /// Virtual address just past its last byte.
    pub end: u64,
}

/// A parsed `.gopclntab` borrowed from the section's bytes.
#[derive(Debug)]
pub struct Pclntab<'a> {
    data: &'a [u8],
    nfunc: usize,
    text_start: u64,
    header_text_start: u64,
    funcnames: usize,
    functab: usize,
}

impl<'a> Pclntab<'a> {
    /// Reads the header and checks that the tables lie inside `data`.
    pub fn parse(data: &'a [u8]) -> Result<Pclntab<'a>, PclntabError> {
        let magic = u32_at(data, 0).ok_or(PclntabError::Malformed("short header"))?;
        if magic != MAGIC_118 && magic != MAGIC_120 {
            return Err(PclntabError::Magic(magic));
        }
        let (Some(&min_lc), Some(&ptr_size)) = (data.get(6), data.get(7)) else {
            return Err(PclntabError::Malformed("short header"));
        };
        if ptr_size != 8 || min_lc != 1 {
            return Err(PclntabError::Architecture { ptr_size, min_lc });
        }
        let word =
            |i: usize| u64_at(data, 8 + 8 * i).ok_or(PclntabError::Malformed("short header"));
        let nfunc = usize::try_from(word(0)?).map_err(|_| PclntabError::Malformed("nfunc"))?;
        let text_start = word(2)?;
        let funcnames = usize::try_from(word(3)?).map_err(|_| PclntabError::Malformed("names"))?;
        let functab = usize::try_from(word(7)?).map_err(|_| PclntabError::Malformed("functab"))?;
        let table_end = nfunc
            .checked_add(1)
            .and_then(|n| n.checked_mul(8))
            .and_then(|n| n.checked_add(functab));
        if table_end.is_none_or(|end| end > data.len()) || funcnames > data.len() {
            return Err(PclntabError::Malformed(
                "function table outside the section",
            ));
        }
        Ok(Pclntab {
            data,
            nfunc,
            text_start,
            header_text_start: text_start,
            funcnames,
            functab,
        })
    }

    /// The same table with function addresses counted from `text`
    /// (`runtime.text`) instead of the header's `textStart`.
    pub fn with_text_base(self, text: u64) -> Pclntab<'a> {
        Pclntab {
            text_start: text,
            ..self
        }
    }

    /// The header's `textStart` word as stored (0 from Go 1.26 on).
    pub fn header_text_start(&self) -> u64 {
        self.header_text_start
    }

    /// The text base function addresses are counted from.
    pub fn text_base(&self) -> u64 {
        self.text_start
    }

    /// Offset of the function-name table from the header (`funcnameOffset`).
    pub fn funcname_offset(&self) -> u64 {
        self.funcnames as u64
    }

    /// Offset of the function table from the header (`pclnOffset`).
    pub fn functab_offset(&self) -> u64 {
        self.functab as u64
    }

    /// `entryOff` of function-table row `i`; row `len()` is the end of the
    /// text.
    pub fn entry_offset(&self, i: usize) -> Option<u32> {
        if i > self.nfunc {
            return None;
        }
        u32_at(self.data, self.functab.checked_add(i.checked_mul(8)?)?)
    }

    /// Number of functions.
    pub fn len(&self) -> usize {
        self.nfunc
    }

    /// Whether the table lists no function.
    pub fn is_empty(&self) -> bool {
        self.nfunc == 0
    }

    /// The `i`-th function (address order), or `None` if its entry is malformed.
    pub fn func(&self, i: usize) -> Option<GoFunc<'a>> {
        if i >= self.nfunc {
            return None;
        }
        let row = self.functab + 8 * i;
        let entry_off = u32_at(self.data, row)?;
        let func_off = u32_at(self.data, row + 4)? as usize;
        let next_off = u32_at(self.data, row + 8)?;
        let func = self.functab.checked_add(func_off)?;
        // The _func record repeats its entry offset: a table whose rows and
        // records disagree is corrupt, and its addresses are not trusted.
        if u32_at(self.data, func)? != entry_off {
            return None;
        }
        let name_off = usize::try_from(i32::from_le_bytes(
            self.data.get(func + 4..func + 8)?.try_into().ok()?,
        ))
        .ok()?;
        let name_start = self.funcnames.checked_add(name_off)?;
        let tail = self.data.get(name_start..)?;
        let name = std::str::from_utf8(&tail[..tail.iter().position(|&b| b == 0)?]).ok()?;
        Some(GoFunc {
            name,
            entry: self.text_start.checked_add(u64::from(entry_off))?,
            end: self.text_start.checked_add(u64::from(next_off))?,
        })
    }

    /// Every readable function, in address order.
    pub fn funcs(&self) -> impl Iterator<Item = GoFunc<'a>> + '_ {
        (0..self.nfunc).filter_map(|i| self.func(i))
    }

    /// The function named exactly `name`.
    pub fn find(&self, name: &str) -> Option<GoFunc<'a>> {
        self.funcs().find(|f| f.name == name)
    }
}

fn u32_at(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        d.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(d: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        d.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    /// Found by `cargo xtask fuzz go_pclntab`: a text start near 2^64
    /// made an entry address overflow.
    #[test]
    fn an_entry_past_the_address_space_is_skipped() {
        let mut d = vec![0u8; 0x80];
        d[..4].copy_from_slice(&MAGIC_120.to_le_bytes());
        d[6] = 1; // min_lc
        d[7] = 8; // ptr_size
        d[8..16].copy_from_slice(&1u64.to_le_bytes()); // nfunc
        d[24..32].copy_from_slice(&u64::MAX.to_le_bytes()); // text start
        d[32..40].copy_from_slice(&0x70u64.to_le_bytes()); // funcnames
        d[64..72].copy_from_slice(&0x50u64.to_le_bytes()); // functab
        d[0x50..0x54].copy_from_slice(&1u32.to_le_bytes()); // entry offset
        d[0x54..0x58].copy_from_slice(&0x18u32.to_le_bytes()); // func offset
        d[0x58..0x5c].copy_from_slice(&2u32.to_le_bytes()); // next entry
        d[0x68..0x6c].copy_from_slice(&1u32.to_le_bytes()); // the record's entry offset
        d[0x6c..0x70].copy_from_slice(&0i32.to_le_bytes()); // name offset
        d[0x70] = b'f';
        let t = Pclntab::parse(&d).expect("header is well formed");
        assert_eq!(t.len(), 1);
        assert!(t.func(0).is_none());
        assert_eq!(t.funcs().count(), 0);
    }

    /// Found by `cargo xtask fuzz go_pclntab`: a bare magic number.
    #[test]
    fn a_magic_number_alone_is_an_error() {
        for magic in [MAGIC_118, MAGIC_120] {
            let data = magic.to_le_bytes();
            assert!(matches!(
                Pclntab::parse(&data),
                Err(PclntabError::Malformed(_))
            ));
        }
    }

    use super::*;

    /// A table with two functions, `a.f` at 0x1000 and `a.g` at 0x1040,
    /// text ending at 0x1100, laid out as the Go 1.20 linker does.
    fn synthetic() -> Vec<u8> {
        let mut d = Vec::new();
        d.extend_from_slice(&MAGIC_120.to_le_bytes());
        d.extend_from_slice(&[0, 0, 1, 8]);
        let names = 72u64;
        let functab = 80u64;
        for w in [2u64, 0, 0x1000, names, 0, 0, 0, functab] {
            d.extend_from_slice(&w.to_le_bytes());
        }
        d.extend_from_slice(b"a.f\0a.g\0");
        // functab: (entryOff, funcOff) × 3
        for (e, f) in [(0u32, 24u32), (0x40, 32), (0x100, 0)] {
            d.extend_from_slice(&e.to_le_bytes());
            d.extend_from_slice(&f.to_le_bytes());
        }
        // two _func records: entryOff, nameOff
        for (e, n) in [(0u32, 0i32), (0x40, 4)] {
            d.extend_from_slice(&e.to_le_bytes());
            d.extend_from_slice(&n.to_le_bytes());
        }
        d
    }

    #[test]
    fn reads_functions_and_their_extent() {
        let d = synthetic();
        let t = Pclntab::parse(&d).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.find("a.g"),
            Some(GoFunc {
                name: "a.g",
                entry: 0x1040,
                end: 0x1100
            })
        );
        assert_eq!(t.find("a.f").unwrap().end, 0x1040);
        assert_eq!(t.find("a.h"), None);
    }

    #[test]
    fn a_record_disagreeing_with_its_row_is_not_read() {
        let mut d = synthetic();
        // The second _func record (at functab + 32) claims entry 0x44.
        d[80 + 32] = 0x44;
        let t = Pclntab::parse(&d).unwrap();
        assert_eq!(t.find("a.g"), None);
        assert_eq!(t.funcs().count(), 1);
    }

    #[test]
    fn a_text_base_replaces_the_header_start() {
        let d = synthetic();
        let t = Pclntab::parse(&d).unwrap().with_text_base(0x40_1000);
        assert_eq!(t.header_text_start(), 0x1000);
        assert_eq!(t.text_base(), 0x40_1000);
        assert_eq!(t.find("a.g").unwrap().entry, 0x40_1040);
        assert_eq!(t.entry_offset(2), Some(0x100));
        assert_eq!(t.entry_offset(3), None);
    }

    #[test]
    fn rejects_foreign_and_broken_tables() {
        let mut d = synthetic();
        d[0] = 0xfb;
        assert_eq!(
            Pclntab::parse(&d).unwrap_err(),
            PclntabError::Magic(0xffff_fffb)
        );
        let d = synthetic();
        assert!(matches!(
            Pclntab::parse(&d[..90]),
            Err(PclntabError::Malformed(_))
        ));
        assert!(matches!(
            Pclntab::parse(&d[..20]),
            Err(PclntabError::Malformed(_))
        ));
    }
}
