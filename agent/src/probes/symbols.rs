//! Function symbols found by their demangled C++ name.
//!
//! Runtimes without USDT probes (V8 in Node.js) are probed at the entry of
//! exported C++ functions. Their mangled names change whenever a parameter
//! type does (`GCTracer::StartObservablePause()` gained a `TimeTicks`
//! parameter in later V8s), so they are matched by the demangled qualified
//! name without parameters (`v8::internal::GCTracer::StartObservablePause`).
//! Demangling all of `node`'s ~60,000 dynamic symbols would be wasteful, so
//! only names that contain the function's last identifier verbatim (Itanium
//! mangling keeps identifiers as `<len><name>`) are demangled.

use std::path::{Path, PathBuf};

use cpp_demangle::{DemangleOptions, Symbol};
use object::{Object, ObjectSymbol, SymbolKind};

use super::elf::{self, ElfError, MappedFile};

/// A function found in an ELF file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionSymbol {
    /// The qualified name it was looked up by.
    pub name: String,
    /// The mangled symbol name.
    pub mangled: String,
    /// Its virtual address in the file.
    pub address: u64,
    /// The file offset of its first instruction (where a uprobe goes).
    pub file_offset: u64,
}

/// Why symbols could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SymbolError {
    /// The file could not be opened or mapped.
    #[error("cannot open or map {}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// The file is not a supported ELF file.
    #[error("{}: {error}", path.display())]
    Elf {
        /// The file.
        path: PathBuf,
        /// The ELF error.
        error: ElfError,
    },
}

/// Finds the functions of `path` whose demangled name, without parameters,
/// is one of `qualified` (a name without `::` is a C function and matches
/// the symbol name as it is, `.symtab`'s local symbols included). Returns one entry per distinct address (aliases
/// such as C1/C2 constructors are attached once), in `qualified` order. A
/// name that is not found is simply absent from the result.
pub fn find_functions(path: &Path, qualified: &[&str]) -> Result<Vec<FunctionSymbol>, SymbolError> {
    let map = MappedFile::open(path).map_err(|error| SymbolError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let elf_err = |error| SymbolError::Elf {
        path: path.to_path_buf(),
        error,
    };
    let file = elf::parse_elf64(map.data()).map_err(elf_err)?;
    let segments = elf::load_segments(&file).map_err(elf_err)?;
    let needles: Vec<(&str, String)> = qualified
        .iter()
        .map(|q| {
            let needle = match q.rsplit_once("::") {
                Some((_, last)) => format!("{}{last}", last.len()),
                None => q.to_string(),
            };
            (*q, needle)
        })
        .collect();
    let finders: Vec<memchr::memmem::Finder> = needles
        .iter()
        .map(|(_, n)| memchr::memmem::Finder::new(n.as_bytes()))
        .collect();
    let options = DemangleOptions::new().no_params().no_return_type();
    let mut found: Vec<(usize, FunctionSymbol)> = Vec::new();
    for sym in file.dynamic_symbols().chain(file.symbols()) {
        if sym.kind() != SymbolKind::Text || sym.is_undefined() || sym.address() == 0 {
            continue;
        }
        // Most symbols match no needle: they are tested as bytes, and only
        // a candidate is checked as UTF-8 and demangled.
        let Ok(raw) = sym.name_bytes() else { continue };
        if !finders.iter().any(|f| f.find(raw).is_some()) {
            continue;
        }
        let candidates: Vec<usize> = finders
            .iter()
            .enumerate()
            .filter(|(_, f)| f.find(raw).is_some())
            .map(|(i, _)| i)
            .collect();
        let Ok(mangled) = std::str::from_utf8(raw) else {
            continue;
        };
        let demangled = demangle(mangled, &options);
        for i in candidates {
            let name = needles[i].0;
            // A plain C name (no `::`) matches the symbol name itself.
            let matches = if name.contains("::") {
                demangled.as_deref() == Some(name)
            } else {
                mangled == name
            };
            if !matches || found.iter().any(|(_, f)| f.address == sym.address()) {
                continue;
            }
            let Some(file_offset) = elf::vaddr_to_file_offset(&segments, sym.address()) else {
                continue;
            };
            found.push((
                i,
                FunctionSymbol {
                    name: name.to_string(),
                    mangled: mangled.to_string(),
                    address: sym.address(),
                    file_offset,
                },
            ));
        }
    }
    found.sort_by_key(|(i, f)| (*i, f.address));
    Ok(found.into_iter().map(|(_, f)| f).collect())
}

/// The demangled name without parameters, or `None` for a name that is not
/// Itanium-mangled C++.
pub fn demangle(mangled: &str, options: &DemangleOptions) -> Option<String> {
    let sym = Symbol::new(mangled).ok()?;
    sym.demangle_with_options(options).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demangles_without_parameters() {
        let o = DemangleOptions::new().no_params().no_return_type();
        assert_eq!(
            demangle(
                "_ZN2v88internal4Heap24PerformGarbageCollectionENS0_16GarbageCollectorENS0_23GarbageCollectionReasonEPKc",
                &o
            )
            .as_deref(),
            Some("v8::internal::Heap::PerformGarbageCollection")
        );
        assert_eq!(demangle("main", &o), None);
    }

    #[test]
    fn finds_a_c_function_by_its_plain_name() {
        let libc = std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(5).map(str::to_string))
            .find(|p| p.contains("libc.so"))
            .expect("libc is mapped");
        let found = find_functions(
            Path::new(&libc),
            &["malloc", "v8::internal::Heap::PerformGarbageCollection"],
        )
        .unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            (found[0].name.as_str(), found[0].mangled.as_str()),
            ("malloc", "malloc")
        );
        assert!(found[0].file_offset > 0);
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = find_functions(Path::new("/nonexistent/node"), &["f"]).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/node"), "{err}");
    }
}
