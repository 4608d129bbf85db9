//! The Go binary readers against real binaries: the bundled Go workload,
//! built with every Go toolchain the tests cover (Debian's 1.19 and 1.21 to
//! 1.23, installed by `cargo xtask test`, and the official 1.24 to 1.27 from
//! the project-local cache), in each build variant: plain, stripped
//! (`-ldflags=-s -w`), stripped PIE, and, on the oldest and the newest, cgo
//! linked externally. The builds are the ones the end-to-end tests reuse
//! (`xtask::goworkload`).
//!
//! For each: the module data gives `runtime.text` as the symbol table of
//! the same layout says (`go tool nm`), every function of the pc-line table
//! is in that symbol table at the same address, `.go.buildinfo` gives the
//! toolchain's own `go version`, and the probes pass every check at the
//! file offsets of their functions.

// An integration test reports a failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use object::{Object, ObjectSection};
use pausewatch::discovery::Binary;
use pausewatch::probes::elf;
use pausewatch::runtimes::go::{
    self, buildinfo as gobuildinfo,
    module::{self as gomodule, Hints, Image},
};
use xtask::goworkload::{GO_VERSIONS, Variant, build_variant, go_tool};

/// Text symbols of `go tool nm`: name → address.
fn nm(version: &str, binary: &Path) -> BTreeMap<String, u64> {
    let out = Command::new(go_tool(version).expect("Go toolchain"))
        .args(["tool", "nm"])
        .arg(binary)
        .output()
        .expect("go tool nm");
    assert!(out.status.success(), "go tool nm {}", binary.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            // Names may contain spaces (`type..eq.struct { ... }`).
            let mut f = l.trim_start().splitn(3, ' ');
            let (addr, kind, name) = (f.next()?, f.next()?, f.next()?);
            if !matches!(kind, "T" | "t") {
                return None;
            }
            Some((name.to_string(), u64::from_str_radix(addr, 16).ok()?))
        })
        .collect()
}

fn variants(version: &str) -> Vec<Variant> {
    let mut v = vec![Variant::Plain, Variant::Stripped, Variant::Pie];
    if version == GO_VERSIONS[0] || version == GO_VERSIONS[GO_VERSIONS.len() - 1] {
        v.push(Variant::CgoExternal);
    }
    v
}

#[test]
fn module_data_pclntab_and_probes_of_every_go_build() {
    // Two toolchains at a time: a cold build of the runtime is mostly one
    // compile after another, so a second build fills the other core (the
    // builds are cached for the end-to-end tests and safe to race).
    std::thread::scope(|s| {
        for lane in 0..2 {
            s.spawn(move || {
                for version in GO_VERSIONS.iter().skip(lane).step_by(2) {
                    check_version(version);
                }
            });
        }
    });
}

/// Every variant of the workload built with Go `version`.
fn check_version(version: &str) {
    let reported = String::from_utf8(
        Command::new(go_tool(version).expect("Go toolchain"))
            .arg("version")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let reported = reported.split_whitespace().nth(2).unwrap_or("").to_string();
    for variant in variants(version) {
        let label = format!("go {version} {}", variant.label());
        let binary = build_variant(version, variant).expect("building the Go workload");
        let twin = build_variant(version, variant.with_symbols()).expect("building");
        check(
            &label,
            version,
            &reported,
            variant,
            &binary,
            &nm(version, &twin),
        );
    }
}

fn check(
    label: &str,
    version: &str,
    reported: &str,
    variant: Variant,
    binary: &Path,
    symbols: &BTreeMap<String, u64>,
) {
    assert!(
        symbols.len() > 1000,
        "{label}: only {} symbols",
        symbols.len()
    );
    let file = elf::MappedFile::open(binary).unwrap();
    let parsed = elf::parse_elf64(&file).unwrap();
    let v = gobuildinfo::version(
        parsed
            .section_by_name(".go.buildinfo")
            .and_then(|s| s.data().ok())
            .expect("no .go.buildinfo"),
    )
    .unwrap();
    assert_eq!(v, reported, "{label}: buildinfo against `go version`");
    assert_eq!(
        gobuildinfo::major_minor(&v),
        Some((1, version[2..].parse().unwrap()))
    );
    assert_eq!(
        parsed.section_by_name(".symtab").is_none(),
        variant.stripped(),
        "{label}: .symtab"
    );
    // The variant is what it claims: a PIE is ET_DYN; an external link puts
    // C code before runtime.text.
    let is_dyn = parsed.kind() == object::ObjectKind::Dynamic;
    assert_eq!(
        is_dyn,
        matches!(variant, Variant::Pie | Variant::PieSymbols),
        "{label}: ELF type"
    );
    let text_sym = symbols["runtime.text"];
    let text_section = parsed.section_by_name(".text").unwrap().address();
    if variant == Variant::CgoExternal {
        assert!(
            text_section < text_sym,
            "{label}: .text at {text_section:#x}, runtime.text {text_sym:#x}"
        );
    }

    let image = Image::from_elf(&parsed).unwrap();
    let module = gomodule::locate(&image, &Hints::from_elf(&parsed))
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    assert_eq!(module.text, text_sym, "{label}: text base");
    if variant.stripped() && version < "1.26" {
        // No symbols and no .go.module: the record was searched for.
        assert_eq!(module.found_by, gomodule::FoundBy::Search, "{label}");
    }
    let table = &module.table;
    let mut by_addr: BTreeMap<u64, Vec<&String>> = BTreeMap::new();
    for (name, addr) in symbols {
        by_addr.entry(*addr).or_default().push(name);
    }
    let mut matched = 0;
    let mut previous_end = 0;
    for f in table.funcs() {
        assert!(
            f.entry >= previous_end && f.end > f.entry,
            "{label}: {f:?} out of order"
        );
        previous_end = f.end;
        // The symbol table names assembly functions `name.abi0`, and the
        // Go 1.19 linker elides array lengths (`[5]T` → `[...]T`) in
        // .gopclntab's names of generated functions; Go 1.23's nm prints
        // the middle dot of generated names as `.`.
        let plain_dots = f.name.replace('\u{b7}', ".");
        let names = by_addr.get(&f.entry).map(Vec::as_slice).unwrap_or_default();
        assert!(
            names.iter().any(|n| {
                *n == f.name
                    || **n == plain_dots
                    || n.strip_suffix(".abi0") == Some(f.name)
                    || elide_lengths(n) == f.name
            }),
            "{label}: {} at {:#x} is not in the symbol table (there: {names:?})",
            f.name,
            f.entry
        );
        matched += 1;
    }
    assert_eq!(matched, table.len(), "{label}: unreadable pclntab entries");
    assert!(matched > 1000, "{label}: only {matched} functions");

    // The probes pass every check, at their functions' file offsets.
    let (layout, support) = go::layout(&v).expect("a known layout");
    assert_eq!(support, go::detect::Support::Tested, "{label}");
    let opened = Binary::open_path(binary).unwrap_or_else(|e| panic!("{label}: {e}"));
    let probes = go::probes(&parsed, layout, &opened).unwrap_or_else(|e| panic!("{label}: {e}"));
    let segments = elf::load_segments(&parsed).unwrap();
    let offset = |name: &str| elf::vaddr_to_file_offset(&segments, symbols[name]).unwrap();
    let stop = probes
        .iter()
        .find(|p| p.probe == "runtime.stopTheWorldWithSema")
        .unwrap_or_else(|| panic!("{label}: no stop probe"));
    assert_eq!(
        stop.file_offset,
        offset("runtime.stopTheWorldWithSema"),
        "{label}"
    );
    let end = probes
        .iter()
        .find(|p| p.program == "go_stw_end")
        .unwrap_or_else(|| panic!("{label}: no end probe"));
    let start = offset("runtime.startTheWorldWithSema");
    let next = symbols
        .values()
        .filter(|&&a| a > symbols["runtime.startTheWorldWithSema"])
        .min()
        .map(|&a| elf::vaddr_to_file_offset(&segments, a).unwrap());
    assert!(
        end.file_offset > start && next.is_none_or(|n| end.file_offset < n),
        "{label}: end probe {:#x} not inside startTheWorldWithSema at {start:#x}",
        end.file_offset
    );
    for p in &probes {
        let name = p.probe.split('+').next().unwrap();
        match p.program {
            "go_stw_end" => {}
            // From Go 1.23: the entry, or right after the 10-byte stack check.
            "go_stw_stopped" => {
                let skip = if p.probe.ends_with("+0xa (after the stack check)") {
                    10
                } else {
                    0
                };
                assert_eq!(p.file_offset, offset(name) + skip, "{label}: {}", p.probe);
            }
            _ => assert_eq!(p.file_offset, offset(name), "{label}: {}", p.probe),
        }
    }
    // The stopping probe exactly from Go 1.23.
    let stopping = probes.iter().any(|p| p.program == "go_stw_stopped");
    assert_eq!(stopping, layout.has_stopping_time(), "{label}");
}

/// `[5]T` → `[...]T`.
fn elide_lengths(name: &str) -> String {
    let mut out = String::new();
    let mut rest = name;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..=open]);
        rest = &rest[open + 1..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 && rest[digits..].starts_with(']') {
            out.push_str("...");
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
    out
}
