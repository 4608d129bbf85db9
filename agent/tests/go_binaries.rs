//! The Go binary readers against real binaries: the bundled Go workload,
//! built here with every supported Debian Go toolchain (installed by
//! `cargo xtask test`), once normal and once stripped (`-ldflags=-s -w`).
//!
//! `.gopclntab` of the stripped build must list every function of the
//! unstripped build's symbol table (`go tool nm`) at the same address, and
//! `.go.buildinfo` must give the toolchain's own `go version`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use object::{Object, ObjectSection};
use pausewatch::probes::{elf, gobuildinfo, gopclntab::Pclntab};

const VERSIONS: [&str; 4] = ["1.19", "1.21", "1.22", "1.23"];

fn go(version: &str) -> PathBuf {
    let go = PathBuf::from(format!("/usr/lib/go-{version}/bin/go"));
    assert!(
        go.is_file(),
        "no Go {version} at {}: `cargo xtask test` installs it (golang-{version}-go)",
        go.display()
    );
    go
}

fn build(version: &str, stripped: bool, out: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../xtask/workloads/go");
    // The workload's build cache (see xtask/src/goworkload.rs), warm after
    // the first build.
    let cache = std::env::temp_dir().join("pausewatch-gcload");
    let mut cmd = Command::new(go(version));
    cmd.current_dir(&src)
        .args(["build", "-trimpath", "-o"])
        .arg(out);
    if stripped {
        cmd.arg("-ldflags=-s -w");
    }
    let status = cmd
        .arg(".")
        .env("GOCACHE", cache.join(format!("gocache-{version}")))
        .env("GOPATH", cache.join("gopath"))
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "")
        .env("CGO_ENABLED", "0")
        .status()
        .expect("running go build");
    assert!(status.success(), "go {version} build failed");
}

/// Text symbols of `go tool nm`: name → address.
fn nm(version: &str, binary: &Path) -> BTreeMap<String, u64> {
    let out = Command::new(go(version))
        .args(["tool", "nm"])
        .arg(binary)
        .output()
        .expect("go tool nm");
    assert!(out.status.success());
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

fn section<'a>(file: &'a elf::Elf64<'a>, name: &str) -> &'a [u8] {
    file.section_by_name(name)
        .and_then(|s| s.data().ok())
        .unwrap_or_else(|| panic!("no {name}"))
}

#[test]
fn pclntab_and_buildinfo_of_every_supported_go() {
    let dir = std::env::temp_dir().join(format!("pausewatch-go-binaries-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for version in VERSIONS {
        let plain = dir.join(format!("gcload-{version}"));
        let stripped = dir.join(format!("gcload-{version}-stripped"));
        build(version, false, &plain);
        build(version, true, &stripped);
        let symbols = nm(version, &plain);
        assert!(
            symbols.len() > 1000,
            "go {version}: only {} symbols",
            symbols.len()
        );

        let reported = String::from_utf8(
            Command::new(go(version))
                .arg("version")
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        for binary in [&plain, &stripped] {
            let file = elf::MappedFile::open(binary).unwrap();
            let parsed = elf::parse_elf64(&file).unwrap();
            let v = gobuildinfo::version(section(&parsed, ".go.buildinfo")).unwrap();
            assert!(
                reported.split_whitespace().nth(2) == Some(v.as_str()),
                "go {version}: buildinfo says {v}, `go version` says {reported}"
            );
            assert_eq!(
                gobuildinfo::major_minor(&v),
                Some((1, version[2..].parse().unwrap()))
            );
        }

        let file = elf::MappedFile::open(&stripped).unwrap();
        let parsed = elf::parse_elf64(&file).unwrap();
        assert!(
            parsed.section_by_name(".symtab").is_none(),
            "go {version}: -s left .symtab"
        );
        let table = Pclntab::parse(section(&parsed, ".gopclntab")).unwrap();
        let mut by_addr: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for (name, addr) in &symbols {
            by_addr.entry(*addr).or_default().push(name.clone());
        }
        let mut matched = 0;
        let mut previous_end = 0;
        for f in table.funcs() {
            assert!(
                f.entry >= previous_end && f.end > f.entry,
                "go {version}: {f:?} out of order"
            );
            previous_end = f.end;
            // The symbol table names assembly functions `name.abi0`, and the
            // Go 1.19 linker elides array lengths (`[5]T` → `[...]T`) in
            // .gopclntab's names of generated functions; Go 1.23's nm
            // prints the middle dot of generated names as `.`.
            let plain_dots = f.name.replace('\u{b7}', ".");
            let names = by_addr.get(&f.entry).map(Vec::as_slice).unwrap_or_default();
            assert!(
                names.iter().any(|n| {
                    n == f.name
                        || *n == plain_dots
                        || n.strip_suffix(".abi0") == Some(f.name)
                        || elide_lengths(n) == f.name
                }),
                "go {version}: {} at {:#x} is not in the symbol table (there: {names:?})",
                f.name,
                f.entry
            );
            matched += 1;
        }
        assert_eq!(
            matched,
            table.len(),
            "go {version}: unreadable pclntab entries"
        );
        assert!(matched > 1000, "go {version}: only {matched} functions");
        for name in [
            "runtime.stopTheWorldWithSema",
            "runtime.startTheWorldWithSema",
            "runtime.wakep",
        ] {
            assert!(table.find(name).is_some(), "go {version}: no {name}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
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
