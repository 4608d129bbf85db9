//! The Go toolchain version recorded in a Go binary's `.go.buildinfo`.
//!
//! The linker writes a 32-byte header (`\xff Go buildinf:`, pointer size,
//! flags) and, since Go 1.18 (flag bit 1), the version and module info as
//! varint-length-prefixed strings right after it. That format survives
//! `-ldflags=-s -w` and needs no symbols. Older pointer-based layouts are
//! reported as such: no Go version this agent supports uses them.

/// Magic at the start of `.go.buildinfo`.
pub const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
/// Size of the fixed header.
const HEADER: usize = 32;
/// Flag: the version string follows the header inline (Go 1.18+).
const FLAG_INLINE: u8 = 0x2;

/// Why a build info blob has no readable version.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildInfoError {
    /// The section does not start with the magic.
    #[error("no Go build info magic at the start of .go.buildinfo")]
    NoMagic,
    /// The pre-1.18 layout, which stores pointers instead of strings.
    #[error(
        "pre-Go 1.18 build info layout (version stored by pointer); Go 1.19 or later is needed"
    )]
    PointerLayout,
    /// The version string is cut off or not text.
    #[error("truncated or malformed version string in .go.buildinfo")]
    Malformed,
}

/// The Go version (`go1.21.9`) from the bytes of `.go.buildinfo`.
pub fn version(section: &[u8]) -> Result<String, BuildInfoError> {
    if !section.starts_with(MAGIC) {
        return Err(BuildInfoError::NoMagic);
    }
    let flags = *section.get(15).ok_or(BuildInfoError::Malformed)?;
    if flags & FLAG_INLINE == 0 {
        return Err(BuildInfoError::PointerLayout);
    }
    let rest = section.get(HEADER..).ok_or(BuildInfoError::Malformed)?;
    let (len, used) = uvarint(rest).ok_or(BuildInfoError::Malformed)?;
    let text = usize::try_from(len)
        .ok()
        .and_then(|len| rest.get(used..used.checked_add(len)?))
        .ok_or(BuildInfoError::Malformed)?;
    let text = std::str::from_utf8(text).map_err(|_| BuildInfoError::Malformed)?;
    if !text.starts_with("go") && !text.starts_with("devel") {
        return Err(BuildInfoError::Malformed);
    }
    Ok(text.to_string())
}

/// Decodes an unsigned LEB128 varint; returns (value, bytes used).
fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// (major, minor) of a version such as `go1.21.9` or `go1.22rc1`.
pub fn major_minor(version: &str) -> Option<(u32, u32)> {
    let rest = version.strip_prefix("go")?;
    let mut parts = rest.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor: String = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((major, minor.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(flags: u8, version: &str) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.push(8);
        b.push(flags);
        b.resize(HEADER, 0);
        b.push(version.len() as u8);
        b.extend_from_slice(version.as_bytes());
        b.push(0);
        b
    }

    #[test]
    fn reads_the_inline_version() {
        assert_eq!(version(&blob(2, "go1.21.9")).unwrap(), "go1.21.9");
    }

    #[test]
    fn rejects_other_layouts_and_garbage() {
        assert_eq!(
            version(&blob(0, "go1.17")),
            Err(BuildInfoError::PointerLayout)
        );
        assert_eq!(version(b"hello"), Err(BuildInfoError::NoMagic));
        let mut cut = blob(2, "go1.21.9");
        cut.truncate(HEADER + 3);
        assert_eq!(version(&cut), Err(BuildInfoError::Malformed));
    }

    #[test]
    fn splits_versions() {
        assert_eq!(major_minor("go1.21.9"), Some((1, 21)));
        assert_eq!(major_minor("go1.22rc1"), Some((1, 22)));
        assert_eq!(major_minor("go1.19"), Some((1, 19)));
        assert_eq!(major_minor("devel go1.23"), None);
    }
}
