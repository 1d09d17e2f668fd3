//! `.dockerignore`-style path patterns and per-component wildcards.
//!
//! Two pattern languages live here:
//!
//! * [`PatternSet`] / [`Filter`]: the `include` / `exclude` lists of
//!   `local`, `copy` and `with_directory`, with the semantics of
//!   moby/patternmatcher as fed by `.dockerignore` parsing:
//!   - each pattern is trimmed of surrounding whitespace (blank patterns are
//!     ignored), a leading `!` marks an *exception* (the rest is trimmed
//!     again), then the pattern is cleaned like Go's `filepath.Clean` and a
//!     leading `/` is dropped (a pattern that cleans to `/`, `.` or `..`
//!     matches no entry of a tree);
//!   - `*` matches any run of characters other than `/`, `?` one character
//!     other than `/`, `[...]` a character class (Go `path.Match` syntax:
//!     ranges `a-z`, negation with `[^...]` only, `\` escapes inside; `-` and
//!     `]` must be escaped, the class must be non-empty), `\c` the character
//!     `c` literally;
//!   - `**` followed by `/` (or not at the end) matches any number of whole
//!     path components, zero included (`a/**/b` matches `a/b` and `a/x/y/b`);
//!     a trailing `**` matches anything (`target/**` matches `target/x` and
//!     everything deeper, but not `target` itself);
//!   - a pattern *matches* a path when it matches the path itself or one of
//!     its parent directories (`build` matches `build/x/y.o`);
//!   - the last matching pattern decides: a path is selected when the last
//!     pattern matching it is not an exception.
//! * [`ComponentPattern`] / [`match_component`]: Go's `path.Match` on one
//!   path component, for `copy` / `rm` with `allow_wildcard`.
//!
//! Paths are relative, `/`-separated and may be non-UTF-8: every matcher has
//! a `_bytes` variant. Characters are decoded as UTF-8; an invalid byte is
//! one character that equals no pattern character (it is matched by `*`, `?`
//! and negated classes, like Go does).
//!
//! Deliberate differences from moby's regexp translation, all in corners its
//! translation mishandles: `^` outside a class is a literal character (moby
//! emits a regexp anchor that can never match), `*` and `?` inside a class
//! are literal members (moby corrupts the class), and a reversed range such
//! as `[z-a]` is rejected when the pattern is built (moby fails on first
//! use). As in moby, a character class may match `/`, and `[!a]` is the
//! class of `!` and `a` (negation is `[^a]`).

use std::borrow::Cow;

use thiserror::Error;

/// A malformed pattern: names the pattern as written and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid pattern {pattern:?}: {reason}")]
pub struct PatternError {
    pattern: String,
    reason: String,
}

impl PatternError {
    fn new(pattern: &str, reason: impl Into<String>) -> PatternError {
        PatternError {
            pattern: pattern.to_owned(),
            reason: reason.into(),
        }
    }

    /// The offending pattern, as it was given.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }
}

/// True when a path component holds an unescaped `*`, `?` or `[` (BuildKit's `containsWildcards`).
pub fn has_wildcard(component: &str) -> bool {
    let b = component.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'*' | b'?' | b'[' => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

/// Matches one name against one component pattern (Go `path.Match`); compiles the pattern on each call.
pub fn match_component(pattern: &str, name: &str) -> Result<bool, PatternError> {
    Ok(ComponentPattern::new(pattern)?.matches(name))
}

/// A compiled per-component wildcard pattern (Go `path.Match` syntax; `*` never crosses `/`).
#[derive(Debug, Clone)]
pub struct ComponentPattern {
    glob: Glob,
}

impl ComponentPattern {
    /// Compiles `pattern`; fails on an unclosed or empty class, a reversed range or a trailing `\`.
    pub fn new(pattern: &str) -> Result<ComponentPattern, PatternError> {
        let toks = parse_component(pattern).map_err(|r| PatternError::new(pattern, r))?;
        Ok(ComponentPattern {
            glob: Glob::new(toks),
        })
    }

    /// True when the whole of `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        self.glob.matches_full(name.as_bytes())
    }

    /// [`ComponentPattern::matches`] on a raw (possibly non-UTF-8) name.
    pub fn matches_bytes(&self, name: &[u8]) -> bool {
        self.glob.matches_full(name)
    }
}

/// An ordered `.dockerignore`-style pattern list (see the module docs for the syntax).
#[derive(Debug, Clone, Default)]
pub struct PatternSet {
    patterns: Vec<Pattern>,
    exceptions: bool,
}

#[derive(Debug, Clone)]
struct Pattern {
    exception: bool,
    glob: Glob,
}

impl PatternSet {
    /// Compiles the patterns in order; blank ones are ignored.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<PatternSet, PatternError> {
        let mut set = PatternSet::default();
        for raw in patterns {
            let raw = raw.as_ref();
            let mut body = raw.trim();
            if body.is_empty() {
                continue;
            }
            let exception = body.starts_with('!');
            if exception {
                body = body[1..].trim();
                if body.is_empty() {
                    return Err(PatternError::new(raw, "exception `!` without a pattern"));
                }
            }
            let cleaned = clean(body.as_bytes());
            let cleaned = match cleaned.strip_prefix(b"/") {
                Some(rest) if !rest.is_empty() => rest,
                _ => &cleaned[..],
            };
            // Cleaning only removes whole `/`-separated pieces: still UTF-8.
            let cleaned = String::from_utf8_lossy(cleaned);
            let toks = parse_dockerignore(&cleaned).map_err(|r| PatternError::new(raw, r))?;
            set.exceptions |= exception;
            set.patterns.push(Pattern {
                exception,
                glob: Glob::new(toks),
            });
        }
        Ok(set)
    }

    /// True when the set holds no pattern (blank patterns do not count).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// True when some pattern is a `!` exception.
    pub fn has_exceptions(&self) -> bool {
        self.exceptions
    }

    /// True when the set selects `rel_path`: the last pattern matching it or a parent is not an exception.
    ///
    /// `rel_path` is relative (`a/b/c.txt`); it is cleaned first (`./a`,
    /// `a//b`, a leading `/` are accepted). The root (`""`, `.`) never
    /// matches.
    pub fn matches(&self, rel_path: &str) -> bool {
        self.matches_bytes(rel_path.as_bytes())
    }

    /// [`PatternSet::matches`] on a raw (possibly non-UTF-8) path.
    pub fn matches_bytes(&self, rel_path: &[u8]) -> bool {
        match normalize(rel_path) {
            Some(p) => self.matches_clean(&p),
            None => false,
        }
    }

    /// Conservative: true when some `!` exception could match a path strictly below `dir_rel_path`.
    ///
    /// When the set matches a directory and this is false, the set matches
    /// everything below it too, so a walk may skip the directory.
    pub fn may_match_below(&self, dir_rel_path: &str) -> bool {
        self.may_match_below_bytes(dir_rel_path.as_bytes())
    }

    /// [`PatternSet::may_match_below`] on a raw (possibly non-UTF-8) path.
    pub fn may_match_below_bytes(&self, dir_rel_path: &[u8]) -> bool {
        self.below(normalize(dir_rel_path).as_deref(), true)
    }

    fn matches_clean(&self, path: &[u8]) -> bool {
        self.patterns
            .iter()
            .rev()
            .find(|p| p.glob.matches_or_parent(path))
            .is_some_and(|p| !p.exception)
    }

    /// Whether a pattern of the given polarity could match strictly below `dir` (`None` = root).
    fn below(&self, dir: Option<&[u8]>, exception: bool) -> bool {
        self.patterns
            .iter()
            .filter(|p| p.exception == exception)
            .any(|p| dir.map_or(true, |d| p.glob.may_match_below(d)))
    }
}

/// What a tree walk does with one entry, from [`Filter::decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The entry is selected; for a directory its children must still be decided one by one.
    Take,
    /// Neither the entry nor anything below it is selected.
    Skip,
    /// A directory that is not selected itself but may have selected entries below it.
    Descend,
}

/// The `include` + `exclude` filter of a `local` source, `copy` or `with_directory`.
///
/// An entry is **selected** when
/// 1. `include` is empty, or `include` matches it (itself or a parent), and
/// 2. `exclude` does not match it (itself or a parent; `!` exceptions in
///    `exclude` re-include, last match wins).
///
/// [`Filter::decide`] turns this into a walk decision:
/// * a selected entry is [`Decision::Take`]n; for a directory the walk goes on
///   into its children, each decided on its own (so `exclude: ["target/**"]`
///   takes `target` itself and skips its contents);
/// * an unselected file is [`Decision::Skip`]ped;
/// * an unselected directory is [`Decision::Descend`]ed into when something
///   below it could still be selected, i.e. when (1) holds or an `include`
///   pattern could match below it, and (2) holds or an `exclude` exception
///   could match below it; otherwise it is skipped with its subtree. A
///   descended directory is created only as the parent of a taken entry.
///
/// The root of the walk (`""` or `.`) is always taken.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    include: PatternSet,
    exclude: PatternSet,
}

impl Filter {
    /// Compiles the two pattern lists.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Filter, PatternError> {
        Ok(Filter {
            include: PatternSet::new(include)?,
            exclude: PatternSet::new(exclude)?,
        })
    }

    /// True when neither list holds a pattern: every entry is taken.
    pub fn is_trivial(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    /// Decides one entry, given its path relative to the filtered tree's root.
    pub fn decide(&self, rel_path: &str, is_dir: bool) -> Decision {
        self.decide_bytes(rel_path.as_bytes(), is_dir)
    }

    /// [`Filter::decide`] on a raw (possibly non-UTF-8) path.
    pub fn decide_bytes(&self, rel_path: &[u8], is_dir: bool) -> Decision {
        let path = match normalize(rel_path) {
            Some(p) => p,
            None => return Decision::Take,
        };
        let path = &path[..];
        let included = self.include.is_empty() || self.include.matches_clean(path);
        if !(included || is_dir && self.include.below(Some(path), false)) {
            return Decision::Skip;
        }
        let excluded = self.exclude.matches_clean(path);
        if excluded && !(is_dir && self.exclude.below(Some(path), true)) {
            return Decision::Skip;
        }
        if included && !excluded {
            Decision::Take
        } else {
            Decision::Descend
        }
    }
}

// ---------------------------------------------------------------------------
// Paths

/// Go's `path.Clean` on bytes.
fn clean(p: &[u8]) -> Vec<u8> {
    if p.is_empty() {
        return b".".to_vec();
    }
    let rooted = p[0] == b'/';
    let mut parts: Vec<&[u8]> = Vec::new();
    for comp in p.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                if parts.last().is_some_and(|l| *l != b"..") {
                    parts.pop();
                } else if !rooted {
                    parts.push(comp);
                }
            }
            _ => parts.push(comp),
        }
    }
    let mut out = Vec::with_capacity(p.len());
    if rooted {
        out.push(b'/');
    }
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(part);
    }
    if out.is_empty() {
        out.push(b'.');
    }
    out
}

/// Cleans a relative path for matching; `None` for the root.
fn normalize(p: &[u8]) -> Option<Cow<'_, [u8]>> {
    let is_clean = !p.is_empty()
        && p.split(|&b| b == b'/')
            .all(|c| !c.is_empty() && c != b"." && c != b"..");
    let p: Cow<'_, [u8]> = if is_clean {
        Cow::Borrowed(p)
    } else {
        let c = clean(p);
        let c = match c.strip_prefix(b"/") {
            Some(rest) => rest.to_vec(),
            None => c,
        };
        Cow::Owned(c)
    };
    if p.is_empty() || &p[..] == b"." {
        None
    } else {
        Some(p)
    }
}

/// Decodes one character: a scalar value, or `0x110000 + byte` for an invalid UTF-8 byte.
#[inline]
fn decode(s: &[u8]) -> (u32, usize) {
    let b = s[0];
    if b < 0x80 {
        return (u32::from(b), 1);
    }
    let window = &s[..s.len().min(4)];
    let valid = match std::str::from_utf8(window) {
        Ok(v) => v,
        // `valid_up_to` is a char boundary, so this cannot fail.
        Err(e) => std::str::from_utf8(&window[..e.valid_up_to()]).unwrap_or(""),
    };
    match valid.chars().next() {
        Some(c) => (u32::from(c), c.len_utf8()),
        None => (INVALID_BASE + u32::from(b), 1),
    }
}

const INVALID_BASE: u32 = 0x11_0000;
const SLASH: u32 = b'/' as u32;

// ---------------------------------------------------------------------------
// Pattern syntax

#[derive(Debug, Clone)]
enum Tok {
    /// One literal character.
    Char(u32),
    /// `*`: any run of non-`/` characters.
    Star,
    /// `?`: one non-`/` character.
    Quest,
    /// `[...]`: one character of (or, negated, not of) the class.
    Class(Box<Class>),
    /// `**` not at the end: empty, or anything ending in `/` (regexp `(.*/)?`).
    AnySlash,
    /// Trailing `**`: anything (regexp `.*`).
    AnyAll,
}

#[derive(Debug, Clone)]
struct Class {
    negated: bool,
    ranges: Vec<(u32, u32)>,
}

impl Class {
    fn matches(&self, c: u32) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != self.negated
    }
}

/// Parses a cleaned `.dockerignore` pattern (moby's regexp translation, see the module docs).
fn parse_dockerignore(p: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = p.chars().collect();
    let mut toks = Vec::with_capacity(chars.len());
    let mut i = 0;
    // moby turns a pattern that starts with `**` and is otherwise literal
    // into a plain suffix test: `**foo` matches `barfoo`.
    let mut leading_bare_double_star = false;
    let mut literal_rest = true;
    while i < chars.len() {
        let first = i == 0;
        let ch = chars[i];
        i += 1;
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                let slash = chars.get(i) == Some(&'/');
                if slash {
                    i += 1;
                }
                if i == chars.len() {
                    toks.push(Tok::AnyAll);
                } else {
                    toks.push(Tok::AnySlash);
                    leading_bare_double_star |= first && !slash;
                }
                if !first {
                    literal_rest = false;
                }
            }
            '*' => {
                toks.push(Tok::Star);
                literal_rest = false;
            }
            '?' => {
                toks.push(Tok::Quest);
                literal_rest = false;
            }
            '\\' => {
                let c = *chars.get(i).ok_or_else(trailing_backslash)?;
                i += 1;
                toks.push(Tok::Char(u32::from(c)));
                literal_rest = false;
            }
            '[' => {
                toks.push(Tok::Class(Box::new(parse_class(&chars, &mut i)?)));
                literal_rest = false;
            }
            ']' => {
                toks.push(Tok::Char(u32::from(']')));
                literal_rest = false;
            }
            c => toks.push(Tok::Char(u32::from(c))),
        }
    }
    if leading_bare_double_star && literal_rest {
        toks[0] = Tok::AnyAll;
    }
    Ok(toks)
}

/// Parses a Go `path.Match` pattern.
fn parse_component(p: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = p.chars().collect();
    let mut toks = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        match ch {
            '*' => toks.push(Tok::Star),
            '?' => toks.push(Tok::Quest),
            '\\' => {
                let c = *chars.get(i).ok_or_else(trailing_backslash)?;
                i += 1;
                toks.push(Tok::Char(u32::from(c)));
            }
            '[' => toks.push(Tok::Class(Box::new(parse_class(&chars, &mut i)?))),
            c => toks.push(Tok::Char(u32::from(c))),
        }
    }
    Ok(toks)
}

fn trailing_backslash() -> String {
    "trailing `\\` escapes nothing".to_owned()
}

/// Parses a class body; `*i` is just past the `[`. Go `path.Match` syntax.
fn parse_class(chars: &[char], i: &mut usize) -> Result<Class, String> {
    let negated = chars.get(*i) == Some(&'^');
    if negated {
        *i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        match chars.get(*i) {
            Some(']') if !ranges.is_empty() => {
                *i += 1;
                return Ok(Class { negated, ranges });
            }
            Some(']') => return Err("empty character class `[]`".to_owned()),
            _ => {}
        }
        let lo = class_char(chars, i)?;
        let mut hi = lo;
        if chars.get(*i) == Some(&'-') {
            *i += 1;
            hi = class_char(chars, i)?;
        }
        if lo > hi {
            let (lo, hi) = (char_of(lo), char_of(hi));
            return Err(format!("reversed range `{lo}-{hi}` in character class"));
        }
        ranges.push((lo, hi));
    }
}

/// One (possibly escaped) class member; like Go, something must follow it.
fn class_char(chars: &[char], i: &mut usize) -> Result<u32, String> {
    let unclosed = || "unclosed character class `[`".to_owned();
    let c = match chars.get(*i) {
        None => return Err(unclosed()),
        Some('-') | Some(']') => {
            return Err("`-` or `]` must be escaped with `\\` in a character class".to_owned())
        }
        Some('\\') => {
            *i += 1;
            *chars.get(*i).ok_or_else(unclosed)?
        }
        Some(&c) => c,
    };
    *i += 1;
    if *i >= chars.len() {
        return Err(unclosed());
    }
    Ok(u32::from(c))
}

fn char_of(c: u32) -> char {
    char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER)
}

// ---------------------------------------------------------------------------
// Matching: a simulation of the token automaton over the set of positions
// reached so far, linear in the path. Positions are `0..=toks.len()`
// ("before token k"); an `AnySlash` token also has an *inside* state (within
// its `.*`, waiting for a `/`). Patterns under 128 tokens run bit-parallel on
// `u128` masks with per-ASCII-character tables; longer ones on `Vec<u64>`.

#[derive(Debug, Clone)]
enum Fast {
    /// All literal: compare bytes.
    Exact(Vec<u8>),
    /// Literal then a trailing `**`: a prefix test.
    Prefix(Vec<u8>),
    /// Run the automaton.
    No,
}

#[derive(Debug, Clone)]
struct Glob {
    toks: Vec<Tok>,
    fast: Fast,
    /// The literal text every match starts with (a cheap pre-test).
    head: Vec<u8>,
    /// The bit-parallel program, for patterns under 128 tokens.
    bits: Option<Box<BitProg>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The whole input must match.
    Full,
    /// The input or one of its `/`-prefixes must match.
    OrParent,
}

/// Whether token `t` consumes `c` and advances.
fn advances(t: &Tok, c: u32) -> bool {
    match t {
        Tok::Char(x) => c == *x,
        Tok::Quest => c != SLASH,
        Tok::Class(class) => class.matches(c),
        Tok::Star | Tok::AnySlash | Tok::AnyAll => false,
    }
}

/// Whether token `t` consumes `c` and stays (the `AnySlash` inside state aside).
fn stays(t: &Tok, c: u32) -> bool {
    match t {
        Tok::Star => c != SLASH,
        Tok::AnyAll => true,
        _ => false,
    }
}

/// Literal bytes of an all-`Char` token run.
fn literal(ts: &[Tok]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for t in ts {
        match t {
            Tok::Char(c) => {
                let mut buf = [0; 4];
                out.extend_from_slice(char_of(*c).encode_utf8(&mut buf).as_bytes());
            }
            _ => return None,
        }
    }
    Some(out)
}

impl Glob {
    fn new(toks: Vec<Tok>) -> Glob {
        let fast = if let Some(lit) = literal(&toks) {
            Fast::Exact(lit)
        } else if let (Some(Tok::AnyAll), Some(lit)) =
            (toks.last(), literal(&toks[..toks.len().saturating_sub(1)]))
        {
            Fast::Prefix(lit)
        } else {
            Fast::No
        };
        let literal_len = toks
            .iter()
            .take_while(|t| matches!(t, Tok::Char(_)))
            .count();
        let head = literal(&toks[..literal_len]).unwrap_or_default();
        let bits = (toks.len() < 128).then(|| Box::new(BitProg::new(&toks)));
        Glob {
            toks,
            fast,
            head,
            bits,
        }
    }

    fn matches_full(&self, s: &[u8]) -> bool {
        match &self.fast {
            Fast::Exact(lit) => s == &lit[..],
            Fast::Prefix(lit) => s.starts_with(lit),
            Fast::No => s.starts_with(&self.head) && self.run(s, Mode::Full),
        }
    }

    fn matches_or_parent(&self, path: &[u8]) -> bool {
        match &self.fast {
            Fast::Exact(lit) => {
                path.starts_with(lit)
                    && (path.len() == lit.len() || (!lit.is_empty() && path[lit.len()] == b'/'))
            }
            Fast::Prefix(lit) => path.starts_with(lit),
            Fast::No => path.starts_with(&self.head) && self.run(path, Mode::OrParent),
        }
    }

    fn run(&self, s: &[u8], mode: Mode) -> bool {
        match &self.bits {
            Some(b) => b.run(&self.toks, s, mode),
            None => Sim::new(&self.toks).run(&self.toks, s, mode),
        }
    }

    /// Whether some path strictly below `dir` (`dir/` + a non-empty rest) could match.
    fn may_match_below(&self, dir: &[u8]) -> bool {
        match &self.bits {
            Some(b) => b.below(&self.toks, dir),
            None => Sim::new(&self.toks).below(&self.toks, dir),
        }
    }
}

/// Bit-parallel automaton: bit k of a mask is position k.
#[derive(Debug, Clone)]
struct BitProg {
    /// Per ASCII character: positions whose token consumes it and advances.
    adv: [u128; 128],
    /// Per ASCII character: positions whose token consumes it and stays.
    stay: [u128; 128],
    /// `AnySlash` positions.
    any_slash: u128,
    /// Positions with an ε-move to the next one (`*`, `**`).
    eps: u128,
    /// `Star` | `AnyAll` positions (what stays on a non-ASCII character).
    stay_wide: u128,
    /// The accepting position, `1 << toks.len()`.
    accept: u128,
}

impl BitProg {
    fn new(toks: &[Tok]) -> BitProg {
        let mut p = BitProg {
            adv: [0; 128],
            stay: [0; 128],
            any_slash: 0,
            eps: 0,
            stay_wide: 0,
            accept: 1 << toks.len(),
        };
        for (k, t) in toks.iter().enumerate() {
            let bit = 1u128 << k;
            for c in 0..128u32 {
                if advances(t, c) {
                    p.adv[c as usize] |= bit;
                }
                if stays(t, c) {
                    p.stay[c as usize] |= bit;
                }
            }
            match t {
                Tok::AnySlash => {
                    p.any_slash |= bit;
                    p.eps |= bit;
                }
                Tok::Star | Tok::AnyAll => {
                    p.eps |= bit;
                    p.stay_wide |= bit;
                }
                _ => {}
            }
        }
        p
    }

    #[inline]
    fn close(&self, mut at: u128) -> u128 {
        loop {
            let more = (at & self.eps) << 1;
            if more & !at == 0 {
                return at;
            }
            at |= more;
        }
    }

    /// One character: returns the new `(at, inside)`.
    #[inline]
    fn step(&self, toks: &[Tok], at: u128, inside: u128, c: u32) -> (u128, u128) {
        let (adv, stay) = if c < 128 {
            (self.adv[c as usize], self.stay[c as usize])
        } else {
            let mut adv = 0;
            for (k, t) in toks.iter().enumerate() {
                if (at >> k) & 1 == 1 && advances(t, c) {
                    adv |= 1 << k;
                }
            }
            (adv, self.stay_wide)
        };
        let slashy = (at | inside) & self.any_slash;
        let mut next = ((at & adv) << 1) | (at & stay);
        if c == SLASH {
            next |= slashy << 1;
        }
        (self.close(next), slashy)
    }

    fn run(&self, toks: &[Tok], s: &[u8], mode: Mode) -> bool {
        let mut at = self.close(1);
        let mut inside = 0;
        let mut i = 0;
        while i < s.len() {
            let (c, n) = decode(&s[i..]);
            if mode == Mode::OrParent && c == SLASH && i > 0 && at & self.accept != 0 {
                return true;
            }
            (at, inside) = self.step(toks, at, inside, c);
            if at | inside == 0 {
                return false;
            }
            i += n;
        }
        at & self.accept != 0
    }

    fn below(&self, toks: &[Tok], dir: &[u8]) -> bool {
        let mut at = self.close(1);
        let mut inside = 0;
        let mut i = 0;
        while i < dir.len() {
            let (c, n) = decode(&dir[i..]);
            (at, inside) = self.step(toks, at, inside, c);
            if at | inside == 0 {
                return false;
            }
            i += n;
        }
        (at, inside) = self.step(toks, at, inside, SLASH);
        // Something must follow `dir/`: the accepting position alone is not enough.
        (at & !self.accept) | inside != 0
    }
}

/// The general automaton, for patterns of any length.
struct Sim {
    at: Vec<u64>,
    inside: Vec<u64>,
    next_at: Vec<u64>,
    next_inside: Vec<u64>,
}

fn get(bits: &[u64], k: usize) -> bool {
    bits.get(k / 64).is_some_and(|w| (w >> (k % 64)) & 1 == 1)
}

fn set(bits: &mut [u64], k: usize) {
    if let Some(w) = bits.get_mut(k / 64) {
        *w |= 1 << (k % 64);
    }
}

fn any(bits: &[u64]) -> bool {
    bits.iter().any(|&w| w != 0)
}

impl Sim {
    fn new(toks: &[Tok]) -> Sim {
        let words = toks.len() / 64 + 1;
        let mut sim = Sim {
            at: vec![0; words],
            inside: vec![0; words],
            next_at: vec![0; words],
            next_inside: vec![0; words],
        };
        set(&mut sim.at, 0);
        close(toks, &mut sim.at);
        sim
    }

    fn live(&self) -> bool {
        any(&self.at) || any(&self.inside)
    }

    fn step(&mut self, toks: &[Tok], c: u32) {
        self.next_at.iter_mut().for_each(|w| *w = 0);
        self.next_inside.iter_mut().for_each(|w| *w = 0);
        for (k, t) in toks.iter().enumerate() {
            let here = get(&self.at, k);
            if here && advances(t, c) {
                set(&mut self.next_at, k + 1);
            }
            if here && stays(t, c) {
                set(&mut self.next_at, k);
            }
            if matches!(t, Tok::AnySlash) && (here || get(&self.inside, k)) {
                set(&mut self.next_inside, k);
                if c == SLASH {
                    set(&mut self.next_at, k + 1);
                }
            }
        }
        close(toks, &mut self.next_at);
        std::mem::swap(&mut self.at, &mut self.next_at);
        std::mem::swap(&mut self.inside, &mut self.next_inside);
    }

    fn run(mut self, toks: &[Tok], s: &[u8], mode: Mode) -> bool {
        let m = toks.len();
        let mut i = 0;
        while i < s.len() {
            let (c, n) = decode(&s[i..]);
            if mode == Mode::OrParent && c == SLASH && i > 0 && get(&self.at, m) {
                return true;
            }
            self.step(toks, c);
            if !self.live() {
                return false;
            }
            i += n;
        }
        get(&self.at, m)
    }

    fn below(mut self, toks: &[Tok], dir: &[u8]) -> bool {
        let mut i = 0;
        while i < dir.len() {
            let (c, n) = decode(&dir[i..]);
            self.step(toks, c);
            if !self.live() {
                return false;
            }
            i += n;
        }
        self.step(toks, SLASH);
        any(&self.inside) || (0..toks.len()).any(|k| get(&self.at, k))
    }
}

/// Follows ε-moves (a `*` or `**` may match nothing), ascending so chains close.
fn close(toks: &[Tok], at: &mut [u64]) {
    for (k, t) in toks.iter().enumerate() {
        if matches!(t, Tok::Star | Tok::AnySlash | Tok::AnyAll) && get(at, k) {
            set(at, k + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(p: &[&str]) -> PatternSet {
        PatternSet::new(p).unwrap()
    }

    fn filter(inc: &[&str], exc: &[&str]) -> Filter {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Filter::new(&v(inc), &v(exc)).unwrap()
    }

    #[track_caller]
    fn check(patterns: &[&str], yes: &[&str], no: &[&str]) {
        let s = set(patterns);
        for p in yes {
            assert!(s.matches(p), "{patterns:?} should match {p:?}");
        }
        for p in no {
            assert!(!s.matches(p), "{patterns:?} should not match {p:?}");
        }
    }

    #[test]
    fn star_is_top_level_only() {
        check(
            &["*.log"],
            &["a.log", ".log", "a.log/x"],
            &["d/a.log", "a.txt", "a.logx"],
        );
        check(
            &["**/*.log"],
            &["a.log", "d/a.log", "d/e/a.log", "d/a.log/x"],
            &["a.txt", "d/a.txt"],
        );
        check(
            &["d/*.log"],
            &["d/a.log"],
            &["a.log", "d/e/a.log", "x/d/a.log"],
        );
    }

    #[test]
    fn double_star_trailing_keeps_dir() {
        check(
            &["target/**"],
            &["target/a", "target/a/b"],
            &["target", "targetx", "x/target/a"],
        );
        check(&["**"], &["a", "a/b"], &[]);
        // literal prefix then `**` with no slash: moby's prefix test
        check(&["foo**"], &["foo", "foobar", "foo/x"], &["fo"]);
        check(&["*/**"], &["a/b", "a/b/c"], &["a"]);
    }

    #[test]
    fn double_star_middle_and_leading() {
        check(
            &["a/**/b"],
            &["a/b", "a/x/b", "a/x/y/b", "a/b/c"],
            &["b", "a", "ab", "a/xb", "x/a/b"],
        );
        check(&["**/b"], &["b", "a/b", "a/x/b", "b/c"], &["ab", "a/xb"]);
        check(&["**/b/*.c"], &["b/x.c", "a/b/x.c"], &["b/c/x.c"]);
        check(&["a**b"], &["ab", "ax/b", "a/x/b"], &["axb"]);
        // `**` then literal text: moby's suffix test matches inside a name
        check(&["**foo"], &["foo", "barfoo", "a/barfoo"], &["foox"]);
        check(&["**.log"], &["a.log", "d/e/a.log"], &["a.txt"]);
        check(&["**/**"], &["a", "a/b"], &[]);
        check(&["***"], &["a", "a/b"], &[]);
    }

    #[test]
    fn question_and_classes() {
        check(
            &["?.txt"],
            &["a.txt", "é.txt"],
            &["ab.txt", ".txt", "d/a.txt"],
        );
        check(&["a?b"], &["axb"], &["a/b", "ab"]);
        check(&["[abc].txt"], &["a.txt", "c.txt"], &["d.txt"]);
        check(&["[a-c]x"], &["ax", "bx", "cx"], &["dx", "-x"]);
        check(&["[^a-c]x"], &["dx", "-x"], &["ax", "cx"]);
        // `!` does not negate (Go syntax): class of `!` and `a`
        check(&["[!a]x"], &["!x", "ax"], &["bx"]);
        check(&["[\\]]x"], &["]x"], &["x"]);
        check(&["[\\-]x"], &["-x"], &["ax"]);
        check(&["[*]"], &["*"], &["a"]);
        check(&["[é-ê]"], &["é", "ê"], &["e"]);
        check(&["x]"], &["x]"], &["x"]);
    }

    #[test]
    fn escapes() {
        check(&["\\*.txt"], &["*.txt"], &["a.txt"]);
        check(&["a\\?"], &["a?"], &["ab"]);
        check(&["\\[a]"], &["[a]"], &["a"]);
        check(&["\\!a"], &["!a"], &["a"]);
        check(&["a\\b"], &["ab"], &["a\\b"]);
    }

    #[test]
    fn cleaning_and_leading_slash() {
        check(&["/a"], &["a", "a/b"], &["b"]);
        check(&["./a"], &["a", "a/b"], &[]);
        check(&["a/"], &["a", "a/b"], &[]);
        check(&["a//b/./c/"], &["a/b/c"], &["a/b"]);
        check(&["a/x/../b"], &["a/b"], &["a/x/b"]);
        check(&["  a  "], &["a"], &["b"]);
        check(&["*", "!  /a  "], &["b"], &["a", "a/x"]);
        // cleans to the root or above it: matches no entry
        check(&["/"], &[], &["a", "/"]);
        check(&["."], &[], &["a", "."]);
        check(&["a/.."], &[], &["a"]);
        // blank patterns are ignored
        assert!(set(&["", "  "]).is_empty());
    }

    #[test]
    fn paths_are_cleaned() {
        let s = set(&["a/b"]);
        assert!(s.matches("./a/b"));
        assert!(s.matches("/a/b"));
        assert!(s.matches("a//b/"));
        assert!(s.matches("a/./b/c"));
        assert!(!s.matches(""));
        assert!(!s.matches("."));
        assert!(!set(&["**"]).matches(""));
    }

    #[test]
    fn directory_patterns_match_descendants() {
        check(
            &["build"],
            &["build", "build/x", "build/x/y.o"],
            &["buildx", "a/build"],
        );
        check(&["a/b"], &["a/b", "a/b/c"], &["a", "a/bc", "x/a/b"]);
        check(&["*/b"], &["a/b/c"], &["a/c/b/d"]);
        check(&["a*"], &["ab/c/d"], &["b/a"]);
    }

    #[test]
    fn exceptions_last_match_wins() {
        let s = set(&["*.md", "!README.md"]);
        assert!(s.has_exceptions());
        assert!(s.matches("a.md"));
        assert!(!s.matches("README.md"));
        let s = set(&["!README.md", "*.md"]);
        assert!(s.matches("README.md"));
        let s = set(&["dir", "!dir/keep", "dir/keep/tmp"]);
        assert!(s.matches("dir"));
        assert!(s.matches("dir/other"));
        assert!(!s.matches("dir/keep"));
        assert!(!s.matches("dir/keep/x"));
        assert!(s.matches("dir/keep/tmp"));
        assert!(s.matches("dir/keep/tmp/y"));
        // an exception alone selects nothing
        assert!(!set(&["!a"]).matches("a"));
        assert!(!set(&["a"]).has_exceptions());
    }

    #[test]
    fn may_match_below() {
        let s = set(&["dir", "!dir/keep.txt"]);
        assert!(s.may_match_below("dir"));
        assert!(!s.may_match_below("dir/keep.txt"));
        assert!(!s.may_match_below("other"));
        assert!(s.may_match_below(""));
        let s = set(&["dir", "!**/keep"]);
        assert!(s.may_match_below("dir"));
        assert!(s.may_match_below("dir/a/b"));
        let s = set(&["dir", "!dir/*/keep"]);
        assert!(s.may_match_below("dir"));
        assert!(s.may_match_below("dir/x"));
        assert!(!s.may_match_below("dir/x/keep"));
        assert!(!s.may_match_below("dix"));
        assert!(!set(&["dir"]).may_match_below("dir"));
        assert!(!set(&["dir", "!dir"]).may_match_below("dir"));
        assert!(set(&["a", "!a/**"]).may_match_below("a"));
    }

    #[test]
    fn filter_trivial() {
        let f = filter(&[], &[]);
        assert!(f.is_trivial());
        assert_eq!(f.decide("a/b", false), Decision::Take);
        assert_eq!(f.decide("a", true), Decision::Take);
        assert!(!filter(&[], &["x"]).is_trivial());
        assert!(!filter(&["x"], &[]).is_trivial());
        assert!(filter(&[" "], &[""]).is_trivial());
    }

    #[test]
    fn filter_exclude() {
        let f = filter(&[], &["target/**", "*.log"]);
        assert_eq!(f.decide("target", true), Decision::Take);
        assert_eq!(f.decide("target/debug", true), Decision::Skip);
        assert_eq!(f.decide("target/x.o", false), Decision::Skip);
        assert_eq!(f.decide("a.log", false), Decision::Skip);
        assert_eq!(f.decide("src/a.log", false), Decision::Take);
        assert_eq!(f.decide("src", true), Decision::Take);
        let f = filter(&[], &["target"]);
        assert_eq!(f.decide("target", true), Decision::Skip);
        assert_eq!(f.decide("target", false), Decision::Skip);
    }

    #[test]
    fn filter_exclude_with_exceptions() {
        let f = filter(&[], &["dir", "!dir/keep.txt"]);
        assert_eq!(f.decide("dir", true), Decision::Descend);
        assert_eq!(f.decide("dir/keep.txt", false), Decision::Take);
        assert_eq!(f.decide("dir/other.txt", false), Decision::Skip);
        assert_eq!(f.decide("dir/sub", true), Decision::Skip);
        // a file named like an excluded dir is just skipped
        assert_eq!(f.decide("dir", false), Decision::Skip);
        let f = filter(&[], &["**/*.tmp", "!keep/**"]);
        assert_eq!(f.decide("keep/a.tmp", false), Decision::Take);
        assert_eq!(f.decide("x/a.tmp", false), Decision::Skip);
        // exception for a directory brings its subtree back
        let f = filter(&[], &["*", "!src"]);
        assert_eq!(f.decide("src", true), Decision::Take);
        assert_eq!(f.decide("src/a/b", false), Decision::Take);
        assert_eq!(f.decide("doc", true), Decision::Skip);
    }

    #[test]
    fn filter_include() {
        let f = filter(&["src"], &[]);
        assert_eq!(f.decide("src", true), Decision::Take);
        assert_eq!(f.decide("src/a/b.rs", false), Decision::Take);
        assert_eq!(f.decide("doc", true), Decision::Skip);
        assert_eq!(f.decide("README", false), Decision::Skip);
        let f = filter(&["a/b/*.rs"], &[]);
        assert_eq!(f.decide("a", true), Decision::Descend);
        assert_eq!(f.decide("a/b", true), Decision::Descend);
        assert_eq!(f.decide("a/c", true), Decision::Skip);
        assert_eq!(f.decide("a/b/x.rs", false), Decision::Take);
        assert_eq!(f.decide("a/b/x.rs", true), Decision::Take);
        assert_eq!(f.decide("a/b/x.rs/y", false), Decision::Take);
        assert_eq!(f.decide("a/b/x.txt", false), Decision::Skip);
        assert_eq!(f.decide("a/x.rs", false), Decision::Skip);
        let f = filter(&["**/*.rs"], &[]);
        assert_eq!(f.decide("deep", true), Decision::Descend);
        assert_eq!(f.decide("deep/er", true), Decision::Descend);
        assert_eq!(f.decide("deep/er/x.rs", false), Decision::Take);
        assert_eq!(f.decide("x.rs", false), Decision::Take);
        assert_eq!(f.decide("x.c", false), Decision::Skip);
        // include with its own exceptions
        let f = filter(&["a", "!a/b", "a/b/c"], &[]);
        assert_eq!(f.decide("a", true), Decision::Take);
        assert_eq!(f.decide("a/b", true), Decision::Descend);
        assert_eq!(f.decide("a/b/c", false), Decision::Take);
        assert_eq!(f.decide("a/b/d", false), Decision::Skip);
        assert_eq!(f.decide("a/b/d", true), Decision::Skip);
        let f = filter(&["!a"], &[]);
        assert_eq!(f.decide("a", true), Decision::Skip);
        assert_eq!(f.decide("b", false), Decision::Skip);
    }

    #[test]
    fn filter_include_and_exclude() {
        let f = filter(&["src"], &["**/*.log", "src/gen"]);
        assert_eq!(f.decide("src", true), Decision::Take);
        assert_eq!(f.decide("src/a.rs", false), Decision::Take);
        assert_eq!(f.decide("src/x/a.log", false), Decision::Skip);
        assert_eq!(f.decide("src/gen", true), Decision::Skip);
        assert_eq!(f.decide("other", true), Decision::Skip);
        let f = filter(&["src"], &["src", "!src/keep"]);
        assert_eq!(f.decide("src", true), Decision::Descend);
        assert_eq!(f.decide("src/keep", false), Decision::Take);
        assert_eq!(f.decide("src/drop", false), Decision::Skip);
        // excluded, but an include below and an exception below
        let f = filter(&["a/b/**"], &["a", "!a/b/keep"]);
        assert_eq!(f.decide("a", true), Decision::Descend);
        assert_eq!(f.decide("a/b", true), Decision::Descend);
        assert_eq!(f.decide("a/b/keep", false), Decision::Take);
        assert_eq!(f.decide("a/b/other", false), Decision::Skip);
        // include below, excluded with no exception
        let f = filter(&["a/b/**"], &["a"]);
        assert_eq!(f.decide("a", true), Decision::Skip);
        // root is always taken
        assert_eq!(f.decide("", true), Decision::Take);
        assert_eq!(f.decide(".", true), Decision::Take);
    }

    #[test]
    fn bad_patterns() {
        for p in [
            "[", "a[", "[a", "[a-", "[a-b", "[]", "[^]", "[]a]", "[-a]", "[a-]", "[z-a]", "a\\",
            "!", "  !  ", "[\\", "[a\\",
        ] {
            let e = PatternSet::new(&[p]).expect_err(p);
            assert_eq!(e.pattern(), p);
            let msg = e.to_string();
            assert!(msg.contains("invalid pattern"), "{msg}");
        }
        let e = PatternSet::new(&["ok", "[z-a]"]).unwrap_err();
        assert!(e.to_string().contains("reversed range `z-a`"), "{e}");
        assert!(PatternSet::new(&["a\\"])
            .unwrap_err()
            .to_string()
            .contains("trailing"));
        assert!(PatternSet::new(&["x["])
            .unwrap_err()
            .to_string()
            .contains("unclosed"));
        assert!(PatternSet::new(&["!"])
            .unwrap_err()
            .to_string()
            .contains("`!`"));
        // a trailing slash is cleaned away, exposing the backslash (as in moby)
        assert!(PatternSet::new(&["a\\/"]).is_err());
        assert!(Filter::new(&["[".to_string()], &[]).is_err());
        assert!(Filter::new(&[], &["!".to_string()]).is_err());
    }

    #[test]
    fn wildcard_detection() {
        assert!(has_wildcard("*.txt"));
        assert!(has_wildcard("a?"));
        assert!(has_wildcard("[ab]"));
        assert!(has_wildcard("\\**"));
        assert!(!has_wildcard("plain.txt"));
        assert!(!has_wildcard("\\*.txt"));
        assert!(!has_wildcard("a\\?\\["));
        assert!(!has_wildcard("a]"));
        assert!(!has_wildcard("a\\"));
        assert!(!has_wildcard(""));
    }

    #[test]
    fn component_matching() {
        let ok = |p: &str, n: &str| match_component(p, n).unwrap();
        assert!(ok("*.txt", "a.txt"));
        assert!(ok("*.txt", ".txt"));
        assert!(!ok("*.txt", "a.txt.bak"));
        assert!(!ok("*", "a/b"));
        assert!(ok("*", ""));
        assert!(ok("**", "abc"));
        assert!(ok("a*b*c", "aXbYc"));
        assert!(!ok("a*b*c", "aXbY"));
        assert!(ok("?", "é"));
        assert!(!ok("?", "ab"));
        assert!(!ok("?", "/"));
        assert!(ok("[a-c]?", "bz"));
        assert!(ok("[^a-c]", "z"));
        assert!(!ok("[^a-c]", "b"));
        assert!(ok("\\*", "*"));
        assert!(!ok("\\*", "a"));
        assert!(ok("", ""));
        assert!(!ok("", "a"));
        assert!(ok("file", "file"));
        assert!(ok("a]", "a]"));
        assert!(match_component("[", "a").is_err());
        assert!(match_component("a\\", "a").is_err());
        assert!(match_component("[]", "a").is_err());
        assert!(match_component("[b-a]", "a").is_err());
        // `!` is not special in components
        assert!(ok("!a", "!a"));
        let p = ComponentPattern::new("*.bin").unwrap();
        assert!(p.matches_bytes(b"\xff\xfe.bin"));
        assert!(!p.matches_bytes(b"\xff\xfe.bi"));
        assert!(ComponentPattern::new("?").unwrap().matches_bytes(b"\xff"));
        assert!(!ComponentPattern::new("??").unwrap().matches_bytes(b"\xff"));
        assert!(ComponentPattern::new("[^a]")
            .unwrap()
            .matches_bytes(b"\x80"));
        assert!(!ComponentPattern::new("[a]").unwrap().matches_bytes(b"\x80"));
    }

    #[test]
    fn non_utf8_paths() {
        let s = set(&["**/*.o", "raw"]);
        assert!(s.matches_bytes(b"d\xff/x\xfe.o"));
        assert!(s.matches_bytes(b"raw/\xff"));
        assert!(!s.matches_bytes(b"\xffraw"));
        let f = filter(&[], &["d?"]);
        assert_eq!(f.decide_bytes(b"d\xff", true), Decision::Skip);
        assert_eq!(f.decide_bytes(b"d\xff\xfe", true), Decision::Take);
        assert!(set(&["d", "!d/?"]).may_match_below_bytes(b"d"));
        assert!(!set(&["d", "!x/?"]).may_match_below_bytes(b"d\xff"));
        // a truncated multi-byte character is one invalid byte per byte
        assert!(set(&["a??"]).matches_bytes(b"a\xe2\x82"));
        assert!(set(&["a?"]).matches_bytes("a€".as_bytes()));
    }

    #[test]
    fn long_patterns_use_the_wide_state_set() {
        let lit = "a".repeat(200);
        let pat = format!("{lit}*/b");
        let s = set(&[pat.as_str()]);
        assert!(s.matches(&format!("{lit}xyz/b/c")));
        assert!(!s.matches(&format!("{lit}xyz/c")));
        let wild = "?".repeat(150);
        let s = set(&[format!("{wild}/**").as_str(), "!x"]);
        assert!(s.matches(&format!("{}/z", "q".repeat(150))));
        assert!(!s.matches(&"q".repeat(150)));
        // 127 tokens: the largest bit-parallel pattern
        let edge = format!("{}*", "?".repeat(126));
        assert!(Glob::new(parse_dockerignore(&edge).unwrap()).bits.is_some());
        let s = set(&[edge.as_str()]);
        assert!(s.matches(&"q".repeat(126)));
        assert!(s.matches(&format!("{}/x", "é".repeat(130))));
        assert!(!s.matches(&"q".repeat(125)));
        assert!(Glob::new(parse_dockerignore(&format!("?{edge}")).unwrap())
            .bits
            .is_none());
        let s = set(&["top", format!("!top/{wild}").as_str()]);
        assert!(s.may_match_below("top"));
        assert!(!s.may_match_below(&format!("top/{}", "q".repeat(150))));
    }

    // ------------------------------------------------------------------
    // Differential check of the automaton against a naive backtracker, and
    // a no-panic fuzz loop.

    fn naive(toks: &[Tok], s: &[u32]) -> bool {
        match toks.split_first() {
            None => s.is_empty(),
            Some((t, rest)) => match t {
                Tok::Char(x) => s.first() == Some(x) && naive(rest, &s[1..]),
                Tok::Quest => s.first().is_some_and(|&c| c != SLASH) && naive(rest, &s[1..]),
                Tok::Class(c) => s.first().is_some_and(|&x| c.matches(x)) && naive(rest, &s[1..]),
                Tok::Star => {
                    let run = s.iter().take_while(|&&c| c != SLASH).count();
                    (0..=run).any(|j| naive(rest, &s[j..]))
                }
                Tok::AnyAll => (0..=s.len()).any(|j| naive(rest, &s[j..])),
                Tok::AnySlash => {
                    naive(rest, s)
                        || (1..=s.len()).any(|j| s[j - 1] == SLASH && naive(rest, &s[j..]))
                }
            },
        }
    }

    fn units(s: &[u8]) -> Vec<u32> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < s.len() {
            let (c, n) = decode(&s[i..]);
            out.push(c);
            i += n;
        }
        out
    }

    fn naive_or_parent(toks: &[Tok], path: &[u8]) -> bool {
        let u = units(path);
        naive(toks, &u) || (1..u.len()).any(|i| u[i] == SLASH && naive(toks, &u[..i]))
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
            &xs[(self.next() % xs.len() as u64) as usize]
        }
        fn string(&mut self, alphabet: &[&str], max: u64) -> String {
            let n = self.next() % (max + 1);
            (0..n).map(|_| *self.pick(alphabet)).collect()
        }
    }

    #[test]
    fn automaton_agrees_with_backtracking() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let pat_alpha = [
            "a", "b", "/", "*", "**", "?", "[ab]", "[^a]", "\\*", ".", "é",
        ];
        let path_alpha = ["a", "b", "/", "*", ".", "é", "ab"];
        let mut compared = 0;
        for _ in 0..8_000 {
            let pat = rng.string(&pat_alpha, 6);
            let Ok(toks) = parse_dockerignore(&pat) else {
                continue;
            };
            let glob = Glob::new(toks.clone());
            for _ in 0..8 {
                let path = rng.string(&path_alpha, 6);
                let p = path.as_bytes();
                assert_eq!(
                    glob.matches_full(p),
                    naive(&toks, &units(p)),
                    "full {pat:?} {path:?}"
                );
                assert_eq!(
                    glob.matches_or_parent(p),
                    naive_or_parent(&toks, p),
                    "parent {pat:?} {path:?}"
                );
                assert_eq!(
                    glob.run(p, Mode::Full),
                    naive(&toks, &units(p)),
                    "nfa {pat:?} {path:?}"
                );
                let sim = |mode| Sim::new(&toks).run(&toks, p, mode);
                assert_eq!(
                    sim(Mode::Full),
                    naive(&toks, &units(p)),
                    "sim {pat:?} {path:?}"
                );
                assert_eq!(
                    sim(Mode::OrParent),
                    naive_or_parent(&toks, p),
                    "sim {pat:?} {path:?}"
                );
                assert_eq!(
                    glob.may_match_below(p),
                    Sim::new(&toks).below(&toks, p),
                    "below {pat:?} {path:?}"
                );
                // may_match_below is exact for these alphabets: check it
                // against trying extensions.
                if !p.is_empty() && !glob.may_match_below(p) {
                    for _ in 0..4 {
                        let ext = format!("{path}/{}", rng.string(&path_alpha, 4));
                        assert!(
                            !naive(&toks, &units(ext.as_bytes())) || ext.ends_with('/'),
                            "below {pat:?} {path:?} {ext:?}"
                        );
                    }
                }
                compared += 1;
            }
        }
        assert!(compared > 5_000);
    }

    #[test]
    fn fuzz_no_panic() {
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        let alpha = [
            "a",
            "/",
            "*",
            "?",
            "[",
            "]",
            "^",
            "!",
            "-",
            "\\",
            ".",
            "..",
            " ",
            "é",
            "\u{10FFFF}",
            "{",
            "$",
            "(",
        ];
        for _ in 0..8_000 {
            let pats: Vec<String> = (0..3).map(|_| rng.string(&alpha, 8)).collect();
            let path = rng.string(&alpha, 10);
            let mut raw = path.clone().into_bytes();
            if rng.next() % 3 == 0 {
                raw.push(0xff);
                raw.insert(0, 0xc3);
            }
            if let Ok(s) = PatternSet::new(&pats) {
                let _ = s.matches(&path);
                let _ = s.matches_bytes(&raw);
                let _ = s.may_match_below(&path);
                let _ = s.may_match_below_bytes(&raw);
            }
            if let Ok(f) = Filter::new(&pats[..1], &pats[1..]) {
                let _ = f.decide(&path, true);
                let _ = f.decide_bytes(&raw, false);
            }
            let _ = has_wildcard(&pats[0]);
            if let Ok(c) = ComponentPattern::new(&pats[0]) {
                let _ = c.matches(&path);
                let _ = c.matches_bytes(&raw);
            }
        }
    }
}
