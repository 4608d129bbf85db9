//! Rules files: TOML in, checked [`RuleSet`] out, or an error that names
//! the file, line and column.
//!
//! Parsing is `serde` + `toml` (with spans); conditions are CEL, parsed by
//! the `cel` crate. CEL is dynamically typed, so a condition such as
//! `stall_ratio > "high"` would only fail while the agent runs; `check`
//! walks the parsed expression once at load time instead, with the feature
//! types of [`FEATURES`], and reports unknown features, type mismatches and
//! unsupported constructs where they are written. The advice templates'
//! `{feature}` / `{feature:%}` / `{{` syntax is too small to justify a
//! template crate: [`Advice::parse`] handles it by hand.

use std::{
    collections::HashSet,
    fmt,
    ops::Range,
    path::{Path, PathBuf},
    sync::Arc,
};

use cel::common::ast::{Expr, IdedExpr, LiteralValue};
use serde::Deserialize;
use toml::Spanned;

use super::features::{FEATURES, FeatureType, feature_type};
use crate::runtimes::Runtime;

/// The rules built into the agent (documented in the README).
pub const DEFAULT_RULES: &str = include_str!("defaults.toml");

/// Where the built-in rules say they come from in messages.
pub const DEFAULT_ORIGIN: &str = "<built-in rules>";

/// Default number of evaluations in a row a new profile must win.
pub const DEFAULT_CONFIRM: u32 = 3;

/// Why a rules file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The file could not be read.
    #[error("cannot read rules file {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error (in the message, so not also a `source`).
        error: std::io::Error,
    },
    /// The file is not a valid rules file.
    #[error("{origin}:{line}:{column}: {message}")]
    Invalid {
        /// The file (or [`DEFAULT_ORIGIN`]).
        origin: String,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// What is wrong, and what would be right.
        message: String,
    },
}

/// How much a finding matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Worth tuning.
    Warning,
    /// Hurting now.
    Critical,
}

impl Severity {
    /// The `severity` label value.
    pub const fn label(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    /// The weight of the rule's profile vote.
    pub const fn weight(self) -> u32 {
        match self {
            Severity::Info => 1,
            Severity::Warning => 2,
            Severity::Critical => 4,
        }
    }

    fn parse(s: &str) -> Option<Severity> {
        [Severity::Info, Severity::Warning, Severity::Critical]
            .into_iter()
            .find(|v| v.label() == s)
    }
}

/// One piece of an advice template.
#[derive(Clone, Debug, PartialEq)]
pub enum Piece {
    /// Text as written (`{{` and `}}` already unescaped).
    Text(String),
    /// `{feature}`, or `{feature:%}` for a share printed as a percentage.
    Feature {
        /// The feature.
        name: String,
        /// Multiply by 100 and add `%`.
        percent: bool,
    },
}

/// An advice text with `{feature}` placeholders.
#[derive(Clone, Debug, PartialEq)]
pub struct Advice {
    /// The template as written.
    pub template: String,
    /// Parsed.
    pub pieces: Vec<Piece>,
}

impl Advice {
    /// Parses a template; an error carries the byte offset it is about.
    pub fn parse(template: &str) -> Result<Advice, (usize, String)> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = template.char_indices().peekable();
        while let Some((i, c)) = rest.next() {
            match c {
                '{' if rest.peek().map(|p| p.1) == Some('{') => {
                    rest.next();
                    text.push('{');
                }
                '}' if rest.peek().map(|p| p.1) == Some('}') => {
                    rest.next();
                    text.push('}');
                }
                '}' => return Err((i, "lone `}` in advice (write `}}` for a brace)".into())),
                '{' => {
                    let end = template[i..].find('}').map(|e| i + e).ok_or((
                        i,
                        "unclosed `{` in advice (write `{{` for a brace)".to_string(),
                    ))?;
                    let inner = &template[i + 1..end];
                    let (name, percent) = match inner.split_once(':') {
                        None => (inner, false),
                        Some((n, "%")) => (n, true),
                        Some((_, f)) => {
                            return Err((i, format!("unknown format `:{f}` (only `:%` exists)")));
                        }
                    };
                    match feature_type(name) {
                        None => return Err((i + 1, unknown_feature(name))),
                        Some(FeatureType::Shares) => {
                            return Err((
                                i + 1,
                                format!("`{name}` is a map and cannot be printed; use top_cause"),
                            ));
                        }
                        Some(ty) if percent && ty != FeatureType::Number => {
                            return Err((i + 1, format!("`:%` needs a number, `{name}` is not")));
                        }
                        Some(_) => {}
                    }
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(Piece::Feature {
                        name: name.to_string(),
                        percent,
                    });
                    while rest.peek().is_some_and(|p| p.0 <= end) {
                        rest.next();
                    }
                }
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Advice {
            template: template.to_string(),
            pieces,
        })
    }
}

/// One checked rule.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Unique name; the `rule` label.
    pub name: String,
    /// The runtimes it applies to; empty means every runtime.
    pub runtimes: Vec<Runtime>,
    /// The condition as written.
    pub when: String,
    /// The compiled condition.
    pub program: Arc<cel::Program>,
    /// Features the condition reads, for `agent rules explain`.
    pub reads: Vec<String>,
    /// Severity.
    pub severity: Severity,
    /// The profile it votes for while it holds, if any.
    pub profile: Option<String>,
    /// The advice.
    pub advice: Advice,
    /// `file:line` where it was defined.
    pub origin: String,
}

impl Rule {
    /// Whether the rule applies to processes of `runtime`.
    pub fn applies_to(&self, runtime: Runtime) -> bool {
        self.runtimes.is_empty() || self.runtimes.contains(&runtime)
    }
}

/// The rules in force.
#[derive(Clone, Debug)]
pub struct RuleSet {
    /// In evaluation (and output) order.
    pub rules: Vec<Rule>,
    /// Evaluations in a row a new profile must win before it is reported.
    pub confirm: u32,
}

/// How a file combines with the built-in rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Built-in rules plus the file's; a file rule with a built-in rule's
    /// name replaces it, and `disable` drops built-in rules.
    Extend,
    /// The file's rules only.
    Replace,
}

/// A parsed rules file before it is merged.
#[derive(Debug)]
pub struct RulesFile {
    /// How it combines with the defaults.
    pub mode: Mode,
    /// `confirm`, if set.
    pub confirm: Option<u32>,
    /// Built-in rule names to drop (extend mode).
    pub disable: Vec<String>,
    /// Its rules.
    pub rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    mode: Option<Spanned<String>>,
    confirm: Option<Spanned<i64>>,
    #[serde(default)]
    disable: Vec<Spanned<String>>,
    #[serde(default)]
    rule: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Spanned<String>,
    #[serde(default)]
    runtimes: Vec<Spanned<String>>,
    when: Spanned<String>,
    severity: Spanned<String>,
    profile: Option<Spanned<String>>,
    advice: Spanned<String>,
}

/// Source text and name, for turning offsets into line:column.
struct Source<'a> {
    origin: &'a str,
    text: &'a str,
}

impl Source<'_> {
    fn error(&self, byte: usize, message: impl Into<String>) -> RulesError {
        let byte = byte.min(self.text.len());
        let before = &self.text[..byte];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        RulesError::Invalid {
            origin: self.origin.to_string(),
            line: before.matches('\n').count() + 1,
            column: self.text[line_start..byte].chars().count() + 1,
            message: message.into(),
        }
    }

    /// Byte offset in the file of byte `offset` inside the string value at
    /// `span`. Exact when the string is written without escapes; otherwise
    /// the start of the string (escapes shift every offset after them).
    fn inside_string(&self, span: &Range<usize>, value: &str, offset: usize) -> usize {
        let raw = &self.text[span.clone()];
        let delim = if raw.starts_with("\"\"\"") || raw.starts_with("'''") {
            3
        } else {
            1
        };
        if raw.len() < 2 * delim {
            return span.start;
        }
        let mut start = delim;
        let mut body = &raw[delim..raw.len() - delim];
        // TOML trims a newline right after the opening delimiter.
        if delim == 3 {
            for nl in ["\r\n", "\n"] {
                if let Some(b) = body.strip_prefix(nl) {
                    body = b;
                    start += nl.len();
                    break;
                }
            }
        }
        if body == value {
            span.start + start + offset.min(body.len())
        } else {
            span.start
        }
    }
}

fn unknown_feature(name: &str) -> String {
    let names: Vec<&str> = FEATURES.iter().map(|f| f.name).collect();
    format!(
        "unknown feature `{name}`; features are: {}",
        names.join(", ")
    )
}

/// Parses and checks a rules file (without merging it).
pub fn parse(origin: &str, text: &str) -> Result<RulesFile, RulesError> {
    let src = Source { origin, text };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let at = e.span().map_or(0, |s| s.start);
        src.error(at, e.message().trim_end().to_string())
    })?;
    let mode = match &raw.mode {
        None => Mode::Extend,
        Some(m) => match m.get_ref().as_str() {
            "extend" => Mode::Extend,
            "replace" => Mode::Replace,
            other => {
                return Err(src.error(
                    m.span().start,
                    format!("mode must be \"extend\" or \"replace\", not {other:?}"),
                ));
            }
        },
    };
    let confirm = match &raw.confirm {
        None => None,
        Some(c) => Some(
            u32::try_from(*c.get_ref())
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| {
                    src.error(
                        c.span().start,
                        "confirm must be a whole number of evaluations from 1 to 1000",
                    )
                })?,
        ),
    };
    let mut seen = HashSet::new();
    let mut rules = Vec::new();
    for r in &raw.rule {
        let name = r.name.get_ref();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(src.error(
                r.name.span().start,
                format!("rule name {name:?} must be letters, digits, `_` or `-`"),
            ));
        }
        if !seen.insert(name.clone()) {
            return Err(src.error(
                r.name.span().start,
                format!("duplicate rule name `{name}`: each rule needs its own name"),
            ));
        }
        let severity = Severity::parse(r.severity.get_ref()).ok_or_else(|| {
            src.error(
                r.severity.span().start,
                format!(
                    "severity must be \"info\", \"warning\" or \"critical\", not {:?}",
                    r.severity.get_ref()
                ),
            )
        })?;
        let profile = match &r.profile {
            Some(p)
                if !p
                    .get_ref()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_')
                    || p.get_ref().is_empty() =>
            {
                return Err(src.error(
                    p.span().start,
                    "profile must be a lowercase word such as \"throughput\"",
                ));
            }
            p => p.as_ref().map(|p| p.get_ref().clone()),
        };
        let mut runtimes = Vec::new();
        for label in &r.runtimes {
            let runtime = Runtime::from_label(label.get_ref()).ok_or_else(|| {
                src.error(
                    label.span().start,
                    format!(
                        "unknown runtime {:?} in rule `{name}`: pausewatch traces {}",
                        label.get_ref(),
                        Runtime::labels()
                    ),
                )
            })?;
            runtimes.push(runtime);
        }
        let when = r.when.get_ref();
        let (program, reads) = compile(when).map_err(|(char_off, msg)| {
            let byte = when
                .char_indices()
                .nth(char_off)
                .map_or(when.len(), |(b, _)| b);
            let at = src.inside_string(&r.when.span(), when, byte);
            src.error(at, format!("in condition of rule `{name}`: {msg}"))
        })?;
        let advice = Advice::parse(r.advice.get_ref()).map_err(|(byte, msg)| {
            let at = src.inside_string(&r.advice.span(), r.advice.get_ref(), byte);
            src.error(at, format!("in advice of rule `{name}`: {msg}"))
        })?;
        let line = src.error(r.name.span().start, "");
        let origin = match line {
            RulesError::Invalid { line, .. } => format!("{origin}:{line}"),
            RulesError::Read { .. } => origin.to_string(),
        };
        rules.push(Rule {
            name: name.clone(),
            runtimes,
            when: when.clone(),
            program: Arc::new(program),
            reads,
            severity,
            profile,
            advice,
            origin,
        });
    }
    Ok(RulesFile {
        mode,
        confirm,
        disable: raw.disable.iter().map(|d| d.get_ref().clone()).collect(),
        rules,
    })
}

/// The built-in rules: the runtime-neutral ones, then each runtime's own
/// (`RuntimeModule::default_rules`).
#[allow(
    clippy::expect_used,
    reason = "the embedded rules are constants, checked by the_built_in_rules_are_valid"
)]
pub fn defaults() -> RuleSet {
    // The embedded files are checked by a unit test; failing here is a build bug.
    let file = parse(DEFAULT_ORIGIN, DEFAULT_RULES).expect("the built-in rules are valid");
    let mut rules = file.rules;
    for runtime in Runtime::ALL {
        let origin = format!("<built-in rules of {runtime}>");
        let own = parse(&origin, runtime.module().default_rules())
            .expect("every runtime's built-in rules are valid");
        rules.extend(own.rules);
    }
    RuleSet {
        rules,
        confirm: file.confirm.unwrap_or(DEFAULT_CONFIRM),
    }
}

/// The rules in force for `path`: the built-in rules, extended or replaced
/// by the file's (see [`Mode`]); just the built-in ones without a file.
pub fn load(path: Option<&Path>) -> Result<RuleSet, RulesError> {
    let Some(path) = path else {
        return Ok(defaults());
    };
    let text = std::fs::read_to_string(path).map_err(|error| RulesError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    let origin = path.display().to_string();
    let file = parse(&origin, &text)?;
    merge(defaults(), file, &origin, &text)
}

fn merge(base: RuleSet, file: RulesFile, origin: &str, text: &str) -> Result<RuleSet, RulesError> {
    let confirm = file.confirm.unwrap_or(base.confirm);
    let rules = match file.mode {
        Mode::Replace => file.rules,
        Mode::Extend => {
            for name in &file.disable {
                if !base.rules.iter().any(|r| &r.name == name) {
                    let at = text.find(&format!("\"{name}\"")).unwrap_or(0);
                    return Err(Source { origin, text }
                        .error(at, format!("disable: there is no built-in rule `{name}`")));
                }
            }
            let mut rules: Vec<Rule> = base
                .rules
                .into_iter()
                .filter(|r| !file.disable.contains(&r.name))
                .filter(|r| !file.rules.iter().any(|f| f.name == r.name))
                .collect();
            rules.extend(file.rules);
            rules
        }
    };
    Ok(RuleSet { rules, confirm })
}

/// The type of a (sub)expression of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ty {
    Double,
    Int,
    UInt,
    Bool,
    Str,
    Shares,
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ty::Double => "a number (double)",
            Ty::Int => "an int",
            Ty::UInt => "a uint",
            Ty::Bool => "a bool",
            Ty::Str => "a string",
            Ty::Shares => "a map of shares",
        })
    }
}

impl Ty {
    fn is_number(self) -> bool {
        matches!(self, Ty::Double | Ty::Int | Ty::UInt)
    }
}

/// Compiles a condition and checks it is a bool over known features.
/// Errors carry the character offset inside the condition.
fn compile(when: &str) -> Result<(cel::Program, Vec<String>), (usize, String)> {
    // The CEL parser is a generated ANTLR parser from another crate: a
    // panic on some odd input must not take the agent down (a bad rules
    // file keeps the previous rules), so it becomes a syntax error.
    let compiled = std::panic::catch_unwind(|| cel::Program::compile(when)).map_err(|_| {
        (
            0,
            "syntax error: the CEL parser could not read this condition".to_string(),
        )
    })?;
    let program = compiled.map_err(|errors| {
        let first = errors.errors.first();
        let offset = first.map_or(0, |e| {
            let (line, col) = (e.pos.0.max(1) as usize, e.pos.1.max(1) as usize);
            let before: usize = when
                .split_inclusive('\n')
                .take(line - 1)
                .map(|l| l.chars().count())
                .sum();
            before + col - 1
        });
        let msg = first.map_or_else(
            || errors.to_string(),
            |e| e.msg.trim_start_matches("Syntax error: ").to_string(),
        );
        (offset, format!("syntax error: {msg}"))
    })?;
    let at = |id: u64| {
        program
            .source_info()
            .offset_for(id)
            .map_or(0, |(start, _)| start as usize)
    };
    let root = program.expression();
    match check(root) {
        Ok(Ty::Bool) => {}
        Ok(ty) => {
            return Err((
                at(root.id),
                format!("a condition must be true or false, but this is {ty}"),
            ));
        }
        Err((id, msg)) => return Err((at(id), msg)),
    }
    let reads: Vec<String> = FEATURES
        .iter()
        .map(|f| f.name)
        .filter(|n| program.references().has_variable(n))
        .map(str::to_string)
        .collect();
    Ok((program, reads))
}

/// The type of `e`, or the id of the node that is wrong and why.
fn check(e: &IdedExpr) -> Result<Ty, (u64, String)> {
    let err = |msg: String| Err((e.id, msg));
    match &e.expr {
        Expr::Literal(l) => match l {
            LiteralValue::Boolean(_) => Ok(Ty::Bool),
            LiteralValue::Double(_) => Ok(Ty::Double),
            LiteralValue::Int(_) => Ok(Ty::Int),
            LiteralValue::UInt(_) => Ok(Ty::UInt),
            LiteralValue::String(_) => Ok(Ty::Str),
            LiteralValue::Null | LiteralValue::Bytes(_) => {
                err("null and bytes have no use in a condition".into())
            }
        },
        Expr::Ident(name) => match feature_type(name) {
            Some(FeatureType::Number) => Ok(Ty::Double),
            Some(FeatureType::Bool) => Ok(Ty::Bool),
            Some(FeatureType::Text) => Ok(Ty::Str),
            Some(FeatureType::Shares) => Ok(Ty::Shares),
            None => err(unknown_feature(name)),
        },
        Expr::Select(s) => {
            let operand = check(&s.operand)?;
            if operand != Ty::Shares {
                return err(format!(
                    "`.{}` needs a map feature such as cause_share, not {operand}",
                    s.field
                ));
            }
            Ok(if s.test { Ty::Bool } else { Ty::Double })
        }
        Expr::Call(c) => {
            if c.target.is_some() {
                return err(format!(
                    "method calls (`.{}()`) are not supported in conditions",
                    c.func_name
                ));
            }
            let args = c.args.iter().map(check).collect::<Result<Vec<_>, _>>()?;
            let op = c.func_name.as_str();
            let symbol = op.trim_matches('_');
            match (op, args.as_slice()) {
                ("_&&_" | "_||_", [a, b]) => {
                    if *a != Ty::Bool || *b != Ty::Bool {
                        return err(format!("`{symbol}` joins two bools, not {a} and {b}"));
                    }
                    Ok(Ty::Bool)
                }
                ("!_", [a]) if *a == Ty::Bool => Ok(Ty::Bool),
                ("-_", [a]) if a.is_number() && *a != Ty::UInt => Ok(*a),
                ("_<_" | "_<=_" | "_>_" | "_>=_", [a, b]) => {
                    if (a.is_number() && b.is_number()) || (*a == Ty::Str && *b == Ty::Str) {
                        Ok(Ty::Bool)
                    } else {
                        err(format!("cannot compare {a} with {b} using `{symbol}`"))
                    }
                }
                ("_==_" | "_!=_", [a, b]) => {
                    if (a.is_number() && b.is_number()) || a == b {
                        Ok(Ty::Bool)
                    } else {
                        err(format!("cannot compare {a} with {b} using `{symbol}`"))
                    }
                }
                ("_+_" | "_-_" | "_*_" | "_/_", [a, b]) => {
                    if op == "_+_" && *a == Ty::Str && *b == Ty::Str {
                        Ok(Ty::Str)
                    } else if a.is_number() && a == b {
                        Ok(*a)
                    } else if a.is_number() && b.is_number() {
                        err(format!(
                            "`{symbol}` mixes {a} and {b}; write whole numbers as doubles (2.0, not 2)"
                        ))
                    } else {
                        err(format!("`{symbol}` needs two numbers, not {a} and {b}"))
                    }
                }
                ("_?_:_", [c, a, b]) => {
                    if *c != Ty::Bool {
                        err(format!("the condition of `? :` must be a bool, not {c}"))
                    } else if a != b {
                        err(format!("both branches of `? :` need one type, not {a} and {b}"))
                    } else {
                        Ok(*a)
                    }
                }
                ("_[_]", [Ty::Shares, Ty::Str]) => Ok(Ty::Double),
                ("@in", [Ty::Str, Ty::Shares]) => Ok(Ty::Bool),
                ("double", [a]) if a.is_number() => Ok(Ty::Double),
                ("int", [a]) if a.is_number() => Ok(Ty::Int),
                ("size", [Ty::Shares | Ty::Str]) => Ok(Ty::Int),
                _ => {
                    let types: Vec<String> = args.iter().map(Ty::to_string).collect();
                    err(format!(
                        "`{}` does not apply to {}; conditions use features, numbers, \
                         comparisons, && || !, + - * /, ? :, m[\"key\"], \"key\" in m, \
                         size(), double(), int()",
                        symbol.trim_matches('@'),
                        if types.is_empty() {
                            "no arguments".to_string()
                        } else {
                            types.join(" and ")
                        }
                    ))
                }
            }
        }
        Expr::Comprehension(_) | Expr::List(_) | Expr::Map(_) | Expr::Struct(_) => {
            err("lists, maps, messages and macros (all, exists, map, filter) are not supported in conditions".into())
        }
        Expr::Unspecified => err("empty expression".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_of(text: &str) -> (usize, usize, String) {
        match parse("r.toml", text) {
            Err(RulesError::Invalid {
                line,
                column,
                message,
                origin,
            }) => {
                assert_eq!(origin, "r.toml");
                (line, column, message)
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("accepted:\n{text}"),
        }
    }

    const GOOD: &str = r#"
mode = "extend"
confirm = 2

[[rule]]
name = "busy"
runtimes = ["hotspot"]
when = "stall_ratio > 0.1 && cause_share['G1CollectFull'] >= 0.5"
severity = "warning"
profile = "throughput"
advice = "stopped {stall_ratio:%} of the time, top cause {top_cause}, {{literal}}"
"#;

    #[test]
    fn the_built_in_rules_are_valid() {
        let d = defaults();
        assert!(d.rules.len() >= 6);
        assert_eq!(d.confirm, DEFAULT_CONFIRM);
        let names: HashSet<&str> = d.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names.len(), d.rules.len());
    }

    /// A runtime's folder holds its rules only, and the shared file none.
    #[test]
    fn each_runtimes_rules_are_its_own() {
        let neutral = parse(DEFAULT_ORIGIN, DEFAULT_RULES).unwrap();
        assert!(neutral.rules.iter().all(|r| r.runtimes.is_empty()));
        for runtime in Runtime::ALL {
            let own = parse("r", runtime.module().default_rules()).unwrap();
            assert!(!own.rules.is_empty(), "{runtime} has no rules");
            for r in &own.rules {
                assert_eq!(r.runtimes, [runtime], "rule {} of {runtime}", r.name);
            }
        }
    }

    #[test]
    fn an_unknown_runtime_is_an_error() {
        let text = GOOD.replace(r#"runtimes = ["hotspot"]"#, r#"runtimes = ["jvm"]"#);
        let e = parse("r.toml", &text).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "r.toml:7:13: unknown runtime \"jvm\" in rule `busy`: pausewatch traces hotspot"
            ),
            "{e}"
        );
    }

    #[test]
    fn a_good_file_parses_fully() {
        let f = parse("r.toml", GOOD).unwrap();
        assert_eq!(f.mode, Mode::Extend);
        assert_eq!(f.confirm, Some(2));
        let r = &f.rules[0];
        assert_eq!(r.name, "busy");
        assert_eq!(r.runtimes, [Runtime::HotSpot]);
        assert_eq!(r.severity, Severity::Warning);
        assert_eq!(r.profile.as_deref(), Some("throughput"));
        assert_eq!(r.reads, ["stall_ratio", "cause_share"]);
        assert_eq!(r.origin, "r.toml:6");
        assert_eq!(
            r.advice.pieces,
            [
                Piece::Text("stopped ".into()),
                Piece::Feature {
                    name: "stall_ratio".into(),
                    percent: true
                },
                Piece::Text(" of the time, top cause ".into()),
                Piece::Feature {
                    name: "top_cause".into(),
                    percent: false
                },
                Piece::Text(", {literal}".into()),
            ]
        );
    }

    #[test]
    fn syntax_error_points_into_the_condition() {
        let text = "[[rule]]\nname = \"x\"\nwhen = \"stall_ratio > \"\nseverity = \"info\"\nadvice = \"a\"\n";
        let (line, col, msg) = err_of(text);
        // `when = "stall_ratio > "`: the expression ends before column 23.
        assert_eq!((line, col), (3, 23), "{msg}");
        assert!(msg.contains("syntax error"), "{msg}");
        assert!(msg.contains("rule `x`"), "{msg}");
    }

    #[test]
    fn syntax_error_in_a_multi_line_condition() {
        let text = "[[rule]]\nname = \"x\"\nwhen = '''\nstall_ratio > 0.1 &&\n  p99_ms >> 3\n'''\nseverity = \"info\"\nadvice = \"a\"\n";
        let (line, col, msg) = err_of(text);
        assert_eq!(line, 5, "{msg}");
        assert!((10..=11).contains(&col), "{col} {msg}");
    }

    #[test]
    fn toml_syntax_error_has_its_position() {
        let (line, col, msg) = err_of("[[rule]]\nname = \"x\nwhen = 1\n");
        assert_eq!(line, 2, "{msg}");
        assert!(col >= 8, "{col} {msg}");
    }

    #[test]
    fn unknown_feature_is_named_where_it_is_used() {
        let text = "[[rule]]\nname = \"x\"\nwhen = \"p99_ms > 1.0 || stal_ratio > 0.1\"\nseverity = \"info\"\nadvice = \"a\"\n";
        let (line, col, msg) = err_of(text);
        assert_eq!((line, col), (3, 25), "{msg}");
        assert!(msg.contains("unknown feature `stal_ratio`"), "{msg}");
        assert!(msg.contains("stall_ratio"), "lists the features: {msg}");
    }

    #[test]
    fn wrong_types_are_caught_at_load() {
        let rule = |when: &str| {
            format!(
                "[[rule]]\nname = \"x\"\nwhen = \"{when}\"\nseverity = \"info\"\nadvice = \"a\"\n"
            )
        };
        let (line, col, msg) = err_of(&rule("stall_ratio > 'high'"));
        assert_eq!((line, col), (3, 21), "{msg}");
        assert!(
            msg.contains("cannot compare a number (double) with a string"),
            "{msg}"
        );
        let (_, _, msg) = err_of(&rule("p99_ms"));
        assert!(msg.contains("must be true or false"), "{msg}");
        let (_, _, msg) = err_of(&rule("p99_ms * 2 > 100.0"));
        assert!(msg.contains("write whole numbers as doubles"), "{msg}");
        let (_, _, msg) = err_of(&rule("stall_ratio && has_prev"));
        assert!(msg.contains("joins two bools"), "{msg}");
        let (_, _, msg) = err_of(&rule("p99_ms.foo > 1.0"));
        assert!(msg.contains("needs a map feature"), "{msg}");
        // Int literals compare with double features (CEL allows it).
        assert!(parse("r", &rule("pauses_per_min > 100")).is_ok());
    }

    #[test]
    fn duplicate_names_and_bad_fields_are_rejected() {
        let two = "[[rule]]\nname = \"a\"\nwhen = \"true\"\nseverity = \"info\"\nadvice = \"x\"\n\
                   [[rule]]\nname = \"a\"\nwhen = \"true\"\nseverity = \"info\"\nadvice = \"y\"\n";
        let (line, col, msg) = err_of(two);
        assert_eq!((line, col), (7, 8), "{msg}");
        assert!(msg.contains("duplicate rule name `a`"), "{msg}");

        let (line, _, msg) = err_of(
            "[[rule]]\nname = \"a\"\nwhen = \"true\"\nseverity = \"loud\"\nadvice = \"x\"\n",
        );
        assert_eq!(line, 4);
        assert!(msg.contains("severity must be"), "{msg}");
        let (_, _, msg) = err_of(
            "[[rule]]\nname = \"a\"\nwhen = \"true\"\nseverity = \"info\"\nadvise = \"x\"\n",
        );
        assert!(msg.contains("advise"), "{msg}");
        let (_, _, msg) = err_of("mode = \"merge\"\n");
        assert!(msg.contains("extend"), "{msg}");
        let (line, col, msg) = err_of(
            "[[rule]]\nname = \"a\"\nwhen = \"true\"\nseverity = \"info\"\nadvice = \"p99 {p99}\"\n",
        );
        assert_eq!((line, col), (5, 16), "{msg}");
        assert!(msg.contains("unknown feature `p99`"), "{msg}");
    }

    #[test]
    fn extend_replaces_same_names_and_disables_replace_drops_defaults() {
        let base = defaults();
        let first = base.rules[0].name.clone();
        let text = format!(
            "disable = [\"{}\"]\n[[rule]]\nname = \"{first}\"\nwhen = \"true\"\nseverity = \"info\"\nadvice = \"mine\"\n",
            base.rules[1].name
        );
        let merged = merge(defaults(), parse("f", &text).unwrap(), "f", &text).unwrap();
        assert_eq!(merged.rules.len(), base.rules.len() - 1);
        let mine = merged.rules.iter().find(|r| r.name == first).unwrap();
        assert_eq!(mine.advice.template, "mine");
        assert!(!merged.rules.iter().any(|r| r.name == base.rules[1].name));

        let text = "mode = \"replace\"\n[[rule]]\nname = \"only\"\nwhen = \"true\"\nseverity = \"info\"\nadvice = \"x\"\n";
        let merged = merge(defaults(), parse("f", text).unwrap(), "f", text).unwrap();
        assert_eq!(merged.rules.len(), 1);

        let text = "disable = [\"no_such_rule\"]\n";
        let e = merge(defaults(), parse("f", text).unwrap(), "f", text).unwrap_err();
        assert_eq!(
            e.to_string(),
            "f:1:12: disable: there is no built-in rule `no_such_rule`"
        );
    }
}
