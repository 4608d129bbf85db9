//! Parser for the x86-64 argument specs that SystemTap SDT notes carry.
//!
//! Each argument is written by the compiler as `[-]SIZE@OPERAND`, where the
//! operand is an AT&T assembler operand: `%reg`, `DISP(%reg)` or `$CONST`.
//! The forms here are the ones libbpf's USDT support understands; anything
//! else (indexed addressing, `symbol(%rip)`, high-byte registers) is rejected
//! with an error rather than read wrongly.

use std::fmt;

use pausewatch_common::{ARG_CONST, ARG_REG, ARG_REG_DEREF, ArgSpec};

/// An x86-64 general-purpose register (or `rip`), named by its full 64-bit
/// name. Sub-register names in specs (`eax`, `r12d`, `dil`, ...) map to the
/// register that contains them, because the BPF side reads the whole slot
/// from `pt_regs` and truncates to the argument's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Register {
    /// `rax`
    Rax,
    /// `rbx`
    Rbx,
    /// `rcx`
    Rcx,
    /// `rdx`
    Rdx,
    /// `rsi`
    Rsi,
    /// `rdi`
    Rdi,
    /// `rbp`
    Rbp,
    /// `rsp`
    Rsp,
    /// `r8`
    R8,
    /// `r9`
    R9,
    /// `r10`
    R10,
    /// `r11`
    R11,
    /// `r12`
    R12,
    /// `r13`
    R13,
    /// `r14`
    R14,
    /// `r15`
    R15,
    /// `rip`
    Rip,
}

impl Register {
    /// Every register, in a fixed order.
    pub const ALL: [Register; 17] = [
        Register::Rax,
        Register::Rbx,
        Register::Rcx,
        Register::Rdx,
        Register::Rsi,
        Register::Rdi,
        Register::Rbp,
        Register::Rsp,
        Register::R8,
        Register::R9,
        Register::R10,
        Register::R11,
        Register::R12,
        Register::R13,
        Register::R14,
        Register::R15,
        Register::Rip,
    ];

    /// Byte offset of this register's slot in the x86-64 `struct pt_regs`,
    /// which is what a uprobe program receives as its context.
    pub fn pt_regs_offset(self) -> u32 {
        // Slot order of `struct pt_regs` (arch/x86/include/asm/ptrace.h):
        // r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi
        // orig_rax rip cs eflags rsp ss, 8 bytes each.
        let slot = match self {
            Register::R15 => 0,
            Register::R14 => 1,
            Register::R13 => 2,
            Register::R12 => 3,
            Register::Rbp => 4,
            Register::Rbx => 5,
            Register::R11 => 6,
            Register::R10 => 7,
            Register::R9 => 8,
            Register::R8 => 9,
            Register::Rax => 10,
            Register::Rcx => 11,
            Register::Rdx => 12,
            Register::Rsi => 13,
            Register::Rdi => 14,
            Register::Rip => 16,
            Register::Rsp => 19,
        };
        slot * 8
    }

    /// The full 64-bit name, without the `%`.
    pub fn name(self) -> &'static str {
        match self {
            Register::Rax => "rax",
            Register::Rbx => "rbx",
            Register::Rcx => "rcx",
            Register::Rdx => "rdx",
            Register::Rsi => "rsi",
            Register::Rdi => "rdi",
            Register::Rbp => "rbp",
            Register::Rsp => "rsp",
            Register::R8 => "r8",
            Register::R9 => "r9",
            Register::R10 => "r10",
            Register::R11 => "r11",
            Register::R12 => "r12",
            Register::R13 => "r13",
            Register::R14 => "r14",
            Register::R15 => "r15",
            Register::Rip => "rip",
        }
    }

    /// Maps an assembler register name (without `%`) to the 64-bit register
    /// holding it. The high-byte registers (`ah`, `bh`, `ch`, `dh`) are not
    /// accepted: they are bits 8..16, and reading the containing register
    /// truncated to one byte would yield the low byte instead.
    pub fn from_name(name: &str) -> Option<Register> {
        let reg = match name {
            "rax" | "eax" | "ax" | "al" => Register::Rax,
            "rbx" | "ebx" | "bx" | "bl" => Register::Rbx,
            "rcx" | "ecx" | "cx" | "cl" => Register::Rcx,
            "rdx" | "edx" | "dx" | "dl" => Register::Rdx,
            "rsi" | "esi" | "si" | "sil" => Register::Rsi,
            "rdi" | "edi" | "di" | "dil" => Register::Rdi,
            "rbp" | "ebp" | "bp" | "bpl" => Register::Rbp,
            "rsp" | "esp" | "sp" | "spl" => Register::Rsp,
            "rip" => Register::Rip,
            _ => {
                // r8..r15 with an optional d/w/b width suffix.
                let digits = name.strip_prefix('r')?;
                let digits = digits.strip_suffix(['d', 'w', 'b']).unwrap_or(digits);
                match digits {
                    "8" => Register::R8,
                    "9" => Register::R9,
                    "10" => Register::R10,
                    "11" => Register::R11,
                    "12" => Register::R12,
                    "13" => Register::R13,
                    "14" => Register::R14,
                    "15" => Register::R15,
                    _ => return None,
                }
            }
        };
        Some(reg)
    }
}

impl fmt::Display for Register {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.name())
    }
}

/// Where a USDT argument's value is found when the probe fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArgLocation {
    /// An immediate (`$5`): the compiler knew the value.
    Const(i64),
    /// The value of a register (`%r12`, `%eax`).
    Reg(Register),
    /// Memory at a register plus displacement (`-8(%rbp)`), read from the
    /// target's address space.
    Deref {
        /// Register holding the base address.
        base: Register,
        /// Signed byte displacement added to the base.
        disp: i64,
    },
}

/// One decoded USDT argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UsdtArg {
    /// Width in bytes: 1, 2, 4 or 8.
    pub size: u8,
    /// Whether the value is signed (the spec's size was negative) and so
    /// must be sign-extended rather than zero-extended.
    pub signed: bool,
    /// Where the value lives.
    pub location: ArgLocation,
}

impl UsdtArg {
    /// Encodes the argument for the `ARG_SPECS` map read by the BPF programs.
    pub fn to_bpf(&self) -> ArgSpec {
        let (loc, reg_off, val) = match self.location {
            ArgLocation::Const(v) => (ARG_CONST, 0, v),
            ArgLocation::Reg(r) => (ARG_REG, r.pt_regs_offset(), 0),
            ArgLocation::Deref { base, disp } => (ARG_REG_DEREF, base.pt_regs_offset(), disp),
        };
        ArgSpec {
            loc,
            reg_off,
            val,
            size: self.size,
            signed: u8::from(self.signed),
            _pad: [0; 6],
        }
    }
}

impl fmt::Display for UsdtArg {
    /// Writes the argument back in spec form, with full register names.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.signed { "-" } else { "" };
        write!(f, "{sign}{}@", self.size)?;
        match self.location {
            ArgLocation::Const(v) => write!(f, "${v}"),
            ArgLocation::Reg(r) => write!(f, "{r}"),
            ArgLocation::Deref { base, disp } => write!(f, "{disp}({base})"),
        }
    }
}

/// Why an argument spec could not be decoded. Every variant names the spec.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArgSpecError {
    /// The spec was empty (only whitespace).
    #[error("USDT argument spec is empty")]
    Empty,
    /// The size before `@` is not one of ±1, ±2, ±4, ±8.
    #[error(
        "USDT argument spec `{spec}` has size `{size}`, but only 1, 2, 4 or 8 (negative for signed) is supported"
    )]
    BadSize {
        /// The whole spec.
        spec: String,
        /// The text before `@`.
        size: String,
    },
    /// The register name is not an x86-64 general-purpose register.
    #[error("USDT argument spec `{spec}` names unknown x86-64 register `%{register}`")]
    UnknownRegister {
        /// The whole spec.
        spec: String,
        /// The register name, without `%`.
        register: String,
    },
    /// The operand is valid assembler, but not a form the BPF side can read.
    #[error("USDT argument spec `{spec}` uses {what}, which is not supported")]
    Unsupported {
        /// The whole spec.
        spec: String,
        /// The unsupported feature.
        what: &'static str,
    },
    /// The spec does not follow `[-]SIZE@OPERAND` with a recognised operand.
    #[error("USDT argument spec `{spec}` is malformed: {reason}")]
    Malformed {
        /// The whole spec.
        spec: String,
        /// What was wrong with it.
        reason: &'static str,
    },
}

/// Decodes one argument spec such as `8@%r12`, `-4@%eax`, `8@-8(%rbp)` or
/// `4@$5`. A spec without `SIZE@` is taken as 8 bytes unsigned, as libbpf
/// does.
pub fn parse_arg(spec: &str) -> Result<UsdtArg, ArgSpecError> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err(ArgSpecError::Empty);
    }
    let malformed = |reason| ArgSpecError::Malformed {
        spec: spec.to_owned(),
        reason,
    };

    let (size, signed, operand) = match spec.split_once('@') {
        Some((size_text, operand)) => {
            let (signed, size) = parse_size(size_text).ok_or_else(|| ArgSpecError::BadSize {
                spec: spec.to_owned(),
                size: size_text.to_owned(),
            })?;
            (size, signed, operand)
        }
        None => (8, false, spec),
    };

    let location = if let Some(value) = operand.strip_prefix('$') {
        let v = parse_int(value).ok_or_else(|| malformed("the constant is not an integer"))?;
        ArgLocation::Const(v)
    } else if let Some(name) = operand.strip_prefix('%') {
        ArgLocation::Reg(parse_register(spec, name)?)
    } else if let Some((disp_text, rest)) = operand.split_once('(') {
        let inner = rest
            .strip_suffix(')')
            .ok_or_else(|| malformed("the memory operand has no closing `)`"))?;
        if inner.contains(',') {
            return Err(ArgSpecError::Unsupported {
                spec: spec.to_owned(),
                what: "indexed addressing",
            });
        }
        let name = inner
            .strip_prefix('%')
            .ok_or_else(|| malformed("the memory operand's base is not a `%` register"))?;
        let base = parse_register(spec, name)?;
        let disp = if disp_text.is_empty() {
            0
        } else if let Some(d) = parse_int(disp_text) {
            d
        } else if base == Register::Rip {
            return Err(ArgSpecError::Unsupported {
                spec: spec.to_owned(),
                what: "a symbolic `%rip`-relative address",
            });
        } else {
            return Err(malformed("the displacement is not an integer"));
        };
        ArgLocation::Deref { base, disp }
    } else {
        return Err(malformed(
            "the operand is not `%reg`, `DISP(%reg)` or `$CONST`",
        ));
    };

    Ok(UsdtArg {
        size,
        signed,
        location,
    })
}

/// Decodes a whitespace-separated list of argument specs, as stored in an
/// SDT note. An empty (or all-whitespace) list is a probe without arguments.
pub fn parse_args(specs: &str) -> Result<Vec<UsdtArg>, ArgSpecError> {
    specs.split_ascii_whitespace().map(parse_arg).collect()
}

/// Parses `[-]N` for N in 1, 2, 4, 8 into (signed, size).
fn parse_size(text: &str) -> Option<(bool, u8)> {
    let (signed, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let size = match digits {
        "1" => 1,
        "2" => 2,
        "4" => 4,
        "8" => 8,
        _ => return None,
    };
    Some((signed, size))
}

fn parse_register(spec: &str, name: &str) -> Result<Register, ArgSpecError> {
    Register::from_name(name).ok_or_else(|| {
        if matches!(name, "ah" | "bh" | "ch" | "dh") {
            ArgSpecError::Unsupported {
                spec: spec.to_owned(),
                what: "a high-byte register",
            }
        } else {
            ArgSpecError::UnknownRegister {
                spec: spec.to_owned(),
                register: name.to_owned(),
            }
        }
    })
}

/// Parses a signed decimal or `0x` hexadecimal integer. Values up to
/// `u64::MAX` are accepted and wrap into `i64`, because compilers print
/// unsigned 64-bit immediates that way and the BPF side reinterprets the
/// bits at the argument's size anyway.
fn parse_int(text: &str) -> Option<i64> {
    let (negative, magnitude) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let value = match magnitude
        .strip_prefix("0x")
        .or_else(|| magnitude.strip_prefix("0X"))
    {
        // The digit checks keep `from_str_radix` from accepting a sign.
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u64::from_str_radix(hex, 16).ok()?
        }
        Some(_) => return None,
        None if !magnitude.is_empty() && magnitude.bytes().all(|b| b.is_ascii_digit()) => {
            magnitude.parse::<u64>().ok()?
        }
        None => return None,
    };
    if negative {
        // Down to i64::MIN; anything further cannot be represented.
        let limit = i64::MIN.unsigned_abs();
        (value <= limit).then(|| 0i64.wrapping_sub_unsigned(value))
    } else {
        Some(value as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arg(size: u8, signed: bool, location: ArgLocation) -> UsdtArg {
        UsdtArg {
            size,
            signed,
            location,
        }
    }

    #[test]
    fn registers_and_sizes() {
        assert_eq!(
            parse_arg("8@%r12"),
            Ok(arg(8, false, ArgLocation::Reg(Register::R12)))
        );
        assert_eq!(
            parse_arg("-4@%eax"),
            Ok(arg(4, true, ArgLocation::Reg(Register::Rax)))
        );
        assert_eq!(
            parse_arg("1@%dil"),
            Ok(arg(1, false, ArgLocation::Reg(Register::Rdi)))
        );
        assert_eq!(
            parse_arg("-2@%r9w"),
            Ok(arg(2, true, ArgLocation::Reg(Register::R9)))
        );
        assert_eq!(
            parse_arg("-8@%r12"),
            Ok(arg(8, true, ArgLocation::Reg(Register::R12)))
        );
    }

    #[test]
    fn sub_register_names_map_to_full_register() {
        let cases: &[(&str, Register)] = &[
            ("rax", Register::Rax),
            ("eax", Register::Rax),
            ("ax", Register::Rax),
            ("al", Register::Rax),
            ("ebx", Register::Rbx),
            ("bl", Register::Rbx),
            ("cx", Register::Rcx),
            ("cl", Register::Rcx),
            ("dl", Register::Rdx),
            ("sil", Register::Rsi),
            ("esi", Register::Rsi),
            ("dil", Register::Rdi),
            ("di", Register::Rdi),
            ("bpl", Register::Rbp),
            ("ebp", Register::Rbp),
            ("spl", Register::Rsp),
            ("esp", Register::Rsp),
            ("r8", Register::R8),
            ("r8d", Register::R8),
            ("r9b", Register::R9),
            ("r10w", Register::R10),
            ("r11d", Register::R11),
            ("r12d", Register::R12),
            ("r12w", Register::R12),
            ("r12b", Register::R12),
            ("r13", Register::R13),
            ("r14d", Register::R14),
            ("r15b", Register::R15),
            ("rip", Register::Rip),
        ];
        for &(name, reg) in cases {
            assert_eq!(Register::from_name(name), Some(reg), "{name}");
        }
        for reg in Register::ALL {
            assert_eq!(Register::from_name(reg.name()), Some(reg));
        }
    }

    #[test]
    fn memory_operands() {
        assert_eq!(
            parse_arg("8@-8(%rbp)"),
            Ok(arg(
                8,
                false,
                ArgLocation::Deref {
                    base: Register::Rbp,
                    disp: -8
                }
            ))
        );
        assert_eq!(
            parse_arg("-4@112(%rsp)"),
            Ok(arg(
                4,
                true,
                ArgLocation::Deref {
                    base: Register::Rsp,
                    disp: 112
                }
            ))
        );
        assert_eq!(
            parse_arg("1@(%r14d)"),
            Ok(arg(
                1,
                false,
                ArgLocation::Deref {
                    base: Register::R14,
                    disp: 0
                }
            ))
        );
        assert_eq!(
            parse_arg("8@0x10(%rdi)"),
            Ok(arg(
                8,
                false,
                ArgLocation::Deref {
                    base: Register::Rdi,
                    disp: 16
                }
            ))
        );
        assert_eq!(
            parse_arg("8@24(%rip)"),
            Ok(arg(
                8,
                false,
                ArgLocation::Deref {
                    base: Register::Rip,
                    disp: 24
                }
            ))
        );
    }

    #[test]
    fn constants() {
        assert_eq!(parse_arg("4@$5"), Ok(arg(4, false, ArgLocation::Const(5))));
        assert_eq!(
            parse_arg("-4@$-1"),
            Ok(arg(4, true, ArgLocation::Const(-1)))
        );
        assert_eq!(parse_arg("1@$0"), Ok(arg(1, false, ArgLocation::Const(0))));
        assert_eq!(
            parse_arg("8@$0xff"),
            Ok(arg(8, false, ArgLocation::Const(255)))
        );
        assert_eq!(
            parse_arg("8@$18446744073709551615"),
            Ok(arg(8, false, ArgLocation::Const(-1)))
        );
        assert_eq!(
            parse_arg("-8@$-9223372036854775808"),
            Ok(arg(8, true, ArgLocation::Const(i64::MIN)))
        );
    }

    #[test]
    fn missing_size_means_eight_unsigned() {
        assert_eq!(
            parse_arg("%rdi"),
            Ok(arg(8, false, ArgLocation::Reg(Register::Rdi)))
        );
        assert_eq!(
            parse_arg("-16(%rbp)"),
            Ok(arg(
                8,
                false,
                ArgLocation::Deref {
                    base: Register::Rbp,
                    disp: -16
                }
            ))
        );
        assert_eq!(parse_arg("$7"), Ok(arg(8, false, ArgLocation::Const(7))));
    }

    #[test]
    fn list() {
        assert_eq!(parse_args(""), Ok(vec![]));
        assert_eq!(parse_args("  \t "), Ok(vec![]));
        let args = parse_args("8@%r12 8@%rdx -4@%eax").unwrap();
        assert_eq!(
            args,
            vec![
                arg(8, false, ArgLocation::Reg(Register::R12)),
                arg(8, false, ArgLocation::Reg(Register::Rdx)),
                arg(4, true, ArgLocation::Reg(Register::Rax)),
            ]
        );
        assert!(matches!(
            parse_args("8@%r12 8@%xyz"),
            Err(ArgSpecError::UnknownRegister { spec, .. }) if spec == "8@%xyz"
        ));
    }

    #[test]
    fn bad_sizes() {
        for spec in [
            "3@%rax", "16@%rax", "0@%rax", "-3@%rax", "@%rax", "+8@%rax", "--8@%rax", "x@%rax",
            "08@%rax", " 8 @%rax",
        ] {
            match parse_arg(spec) {
                Err(ArgSpecError::BadSize { spec: s, .. }) => assert_eq!(s, spec.trim()),
                other => panic!("{spec:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_registers() {
        for (spec, name) in [
            ("8@%xmm0", "xmm0"),
            ("8@%r16", "r16"),
            ("8@%r7", "r7"),
            ("8@%RAX", "RAX"),
            ("8@%", ""),
            ("8@%r12q", "r12q"),
            ("8@%r", "r"),
            ("8@-8(%foo)", "foo"),
            ("4@%eip", "eip"),
        ] {
            match parse_arg(spec) {
                Err(ArgSpecError::UnknownRegister { spec: s, register }) => {
                    assert_eq!((s.as_str(), register.as_str()), (spec, name))
                }
                other => panic!("{spec:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn unsupported_forms() {
        for spec in [
            "8@(%rax,%rdx,8)",
            "8@8(%rax,%rdx)",
            "-4@counter(%rip)",
            "1@%ah",
            "1@%dh",
        ] {
            assert!(
                matches!(parse_arg(spec), Err(ArgSpecError::Unsupported { .. })),
                "{spec}"
            );
        }
    }

    #[test]
    fn garbage_is_an_error() {
        for spec in [
            "8@",
            "8@rax",
            "8@$",
            "8@$abc",
            "8@$--1",
            "8@$-+1",
            "8@$0x+1",
            "8@$0x",
            "8@$99999999999999999999",
            "-8@$-9223372036854775809",
            "8@-8(%rbp",
            "8@-8(rbp)",
            "8@x(%rbp)",
            "8@--8(%rbp)",
            "8@-8(%rbp)x",
            "8@@%rax",
            "\u{00e9}@%rax",
            "8@%r\u{00e9}",
            "8@$\u{00e9}",
            "8@\u{00e9}(%rax)",
        ] {
            let err = parse_arg(spec).expect_err(spec);
            assert_ne!(err, ArgSpecError::Empty, "{spec}");
            let msg = err.to_string();
            assert!(msg.contains(spec), "{msg}");
        }
        assert_eq!(parse_arg(""), Err(ArgSpecError::Empty));
        assert_eq!(parse_arg("   "), Err(ArgSpecError::Empty));
    }

    #[test]
    fn pt_regs_offsets() {
        let expected: &[(Register, u32)] = &[
            (Register::R15, 0),
            (Register::R14, 8),
            (Register::R13, 16),
            (Register::R12, 24),
            (Register::Rbp, 32),
            (Register::Rbx, 40),
            (Register::R11, 48),
            (Register::R10, 56),
            (Register::R9, 64),
            (Register::R8, 72),
            (Register::Rax, 80),
            (Register::Rcx, 88),
            (Register::Rdx, 96),
            (Register::Rsi, 104),
            (Register::Rdi, 112),
            (Register::Rip, 128),
            (Register::Rsp, 152),
        ];
        assert_eq!(expected.len(), Register::ALL.len());
        for &(reg, off) in expected {
            assert_eq!(reg.pt_regs_offset(), off, "{reg}");
        }
    }

    #[test]
    fn to_bpf_encoding() {
        let spec = parse_arg("-4@%eax").unwrap().to_bpf();
        assert_eq!(
            spec,
            ArgSpec {
                loc: ARG_REG,
                reg_off: 80,
                val: 0,
                size: 4,
                signed: 1,
                _pad: [0; 6]
            }
        );
        let spec = parse_arg("8@-8(%rbp)").unwrap().to_bpf();
        assert_eq!(
            spec,
            ArgSpec {
                loc: ARG_REG_DEREF,
                reg_off: 32,
                val: -8,
                size: 8,
                signed: 0,
                _pad: [0; 6]
            }
        );
        let spec = parse_arg("-4@$-1").unwrap().to_bpf();
        assert_eq!(
            spec,
            ArgSpec {
                loc: ARG_CONST,
                reg_off: 0,
                val: -1,
                size: 4,
                signed: 1,
                _pad: [0; 6]
            }
        );
    }

    #[test]
    fn display_round_trips() {
        for spec in [
            "8@%r12",
            "-4@%rax",
            "1@$1",
            "-4@$-1",
            "8@-80(%rbx)",
            "-4@112(%rsp)",
        ] {
            let parsed = parse_arg(spec).unwrap();
            assert_eq!(parsed.to_string(), spec);
            assert_eq!(parse_arg(&parsed.to_string()), Ok(parsed));
        }
    }
}
