//! Lua 5.4's pattern functions (`string.find`, `match`, `gmatch`, `gsub`) in Rust, with the
//! semantics of the reference manual (§6.4.1), because the C originals backtrack without ever
//! reaching the VM hook: `("a"):rep(30000):find(".-b")` would run for seconds outside any
//! budget. Here every matching step (and every few bytes a result is built from) is charged to
//! the call's [`Budget`], so a pattern stops within a few milliseconds once the call is out of
//! instructions or time; nesting is bounded as in C (200 levels: "pattern too complex"), and a
//! string built by `gsub` may not outgrow the generation's memory limit.
//!
//! The results and errors are those of the C functions; a differential property test below
//! holds the two side by side.

use super::Budget;
use mlua::{Function, Lua, MultiValue, Table, Value};
use std::sync::{Arc, Mutex};

/// Captures one pattern may open, as in C (`LUA_MAXCAPTURES`).
const MAX_CAPTURES: usize = 32;
/// Nested matching calls one pattern may make, as in C (`MAXCCALLS`).
const MAX_DEPTH: usize = 200;
/// Matching steps counted locally before they are charged to the budget.
const CHARGE_EVERY: u32 = 1000;
/// Instructions one matching step costs: measured, a step takes about as long as four VM
/// instructions, so that a budget bounds the time of patterns as it bounds that of Lua code.
const STEP_COST: i64 = 4;
/// Bytes of a built result that cost one step.
const BYTES_PER_STEP: usize = 16;

const ESC: u8 = b'%';
const SPECIALS: &[u8] = b"^$*+?.([%-";

#[derive(Clone, Copy, PartialEq)]
enum Len {
    Open,
    Position,
    Closed(usize),
}

/// An error of the pattern functions themselves (a malformed pattern, a bad argument), which
/// the script gets as a string with its position, as from Lua's own functions.
#[derive(Debug)]
struct PatternError(String);

impl std::fmt::Display for PatternError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PatternError {}

fn fail(msg: impl Into<String>) -> mlua::Error {
    mlua::Error::external(PatternError(msg.into()))
}

struct Matcher<'a> {
    src: &'a [u8],
    pat: &'a [u8],
    depth: usize,
    level: usize,
    captures: [(usize, Len); MAX_CAPTURES],
    steps: u32,
    budget: &'a Budget,
}

/// One capture's value: text of the subject or a position (1-based).
enum Capture<'a> {
    Text(&'a [u8]),
    Position(usize),
}

impl<'a> Matcher<'a> {
    fn new(src: &'a [u8], pat: &'a [u8], budget: &'a Budget) -> Self {
        Matcher {
            src,
            pat,
            depth: MAX_DEPTH,
            level: 0,
            captures: [(0, Len::Open); MAX_CAPTURES],
            steps: 0,
            budget,
        }
    }

    fn reset(&mut self) {
        self.level = 0;
        self.depth = MAX_DEPTH;
    }

    fn tick(&mut self) -> mlua::Result<()> {
        self.steps += 1;
        if self.steps >= CHARGE_EVERY {
            self.steps = 0;
            self.budget.charge(i64::from(CHARGE_EVERY) * STEP_COST)?;
        }
        Ok(())
    }

    fn tick_bytes(&mut self, n: usize) -> mlua::Result<()> {
        let steps = n / BYTES_PER_STEP;
        if steps > 0 {
            self.budget
                .charge(i64::try_from(steps).unwrap_or(i64::MAX))?;
        }
        self.tick()
    }

    /// Where the end of `s` matches the pattern from `p`, if it does.
    fn do_match(&mut self, s: usize, p: usize) -> mlua::Result<Option<usize>> {
        if self.depth == 0 {
            return Err(fail("pattern too complex"));
        }
        self.depth -= 1;
        let result = self.match_here(s, p);
        self.depth += 1;
        result
    }

    fn match_here(&mut self, mut s: usize, mut p: usize) -> mlua::Result<Option<usize>> {
        let pat = self.pat;
        loop {
            self.tick()?;
            if p == pat.len() {
                return Ok(Some(s));
            }
            let next = pat.get(p + 1).copied();
            match pat[p] {
                b'(' if next == Some(b')') => return self.start_capture(s, p + 2, Len::Position),
                b'(' => return self.start_capture(s, p + 1, Len::Open),
                b')' => return self.end_capture(s, p + 1),
                b'$' if p + 1 == pat.len() => return Ok((s == self.src.len()).then_some(s)),
                ESC if next == Some(b'b') => match self.match_balance(s, p + 2)? {
                    Some(end) => {
                        s = end;
                        p += 4;
                    }
                    None => return Ok(None),
                },
                ESC if next == Some(b'f') => {
                    p += 2;
                    if pat.get(p) != Some(&b'[') {
                        return Err(fail("missing '[' after '%f' in pattern"));
                    }
                    let ep = self.class_end(p)?;
                    let previous = if s == 0 { 0 } else { self.src[s - 1] };
                    let current = self.src.get(s).copied().unwrap_or(0);
                    if !self.in_set(previous, p, ep - 1) && self.in_set(current, p, ep - 1) {
                        p = ep;
                    } else {
                        return Ok(None);
                    }
                }
                ESC if next.is_some_and(|c| c.is_ascii_digit()) => {
                    match self.match_backref(s, pat[p + 1])? {
                        Some(end) => {
                            s = end;
                            p += 2;
                        }
                        None => return Ok(None),
                    }
                }
                _ => {
                    let ep = self.class_end(p)?;
                    let suffix = pat.get(ep).copied();
                    if !self.single(s, p, ep) {
                        if matches!(suffix, Some(b'*' | b'?' | b'-')) {
                            p = ep + 1;
                            continue;
                        }
                        return Ok(None);
                    }
                    match suffix {
                        Some(b'?') => {
                            if let Some(end) = self.do_match(s + 1, ep + 1)? {
                                return Ok(Some(end));
                            }
                            p = ep + 1;
                        }
                        Some(b'+') => return self.max_expand(s + 1, p, ep),
                        Some(b'*') => return self.max_expand(s, p, ep),
                        Some(b'-') => return self.min_expand(s, p, ep),
                        _ => {
                            s += 1;
                            p = ep;
                        }
                    }
                }
            }
        }
    }

    /// The end of the single-character class that starts at `p`.
    fn class_end(&self, p: usize) -> mlua::Result<usize> {
        let pat = self.pat;
        let c = pat[p];
        let mut p = p + 1;
        if c == ESC {
            if p >= pat.len() {
                return Err(fail("malformed pattern (ends with '%')"));
            }
            return Ok(p + 1);
        }
        if c == b'[' {
            if pat.get(p) == Some(&b'^') {
                p += 1;
            }
            // The first character of a set is always a member, even ']'.
            loop {
                if p >= pat.len() {
                    return Err(fail("malformed pattern (missing ']')"));
                }
                let c = pat[p];
                p += 1;
                if c == ESC && p < pat.len() {
                    p += 1;
                }
                if pat.get(p) == Some(&b']') {
                    return Ok(p + 1);
                }
            }
        }
        Ok(p)
    }

    /// Whether the subject's character at `s` is in the class `pat[p..ep]`.
    fn single(&self, s: usize, p: usize, ep: usize) -> bool {
        let Some(&c) = self.src.get(s) else {
            return false;
        };
        match self.pat[p] {
            b'.' => true,
            ESC => class(c, self.pat[p + 1]),
            b'[' => self.in_set(c, p, ep - 1),
            literal => literal == c,
        }
    }

    /// Whether `c` is in the set from `[` at `p` to `]` at `end`.
    fn in_set(&self, c: u8, p: usize, end: usize) -> bool {
        let pat = self.pat;
        let mut p = p;
        let mut member = true;
        if pat[p + 1] == b'^' {
            member = false;
            p += 1;
        }
        loop {
            p += 1;
            if p >= end {
                return !member;
            }
            if pat[p] == ESC {
                p += 1;
                if class(c, pat[p]) {
                    return member;
                }
            } else if pat[p + 1] == b'-' && p + 2 < end {
                p += 2;
                if pat[p - 2] <= c && c <= pat[p] {
                    return member;
                }
            } else if pat[p] == c {
                return member;
            }
        }
    }

    fn max_expand(&mut self, s: usize, p: usize, ep: usize) -> mlua::Result<Option<usize>> {
        let mut n = 0;
        while self.single(s + n, p, ep) {
            self.tick()?;
            n += 1;
        }
        loop {
            if let Some(end) = self.do_match(s + n, ep + 1)? {
                return Ok(Some(end));
            }
            if n == 0 {
                return Ok(None);
            }
            n -= 1;
        }
    }

    fn min_expand(&mut self, mut s: usize, p: usize, ep: usize) -> mlua::Result<Option<usize>> {
        loop {
            if let Some(end) = self.do_match(s, ep + 1)? {
                return Ok(Some(end));
            }
            if !self.single(s, p, ep) {
                return Ok(None);
            }
            s += 1;
        }
    }

    fn start_capture(&mut self, s: usize, p: usize, len: Len) -> mlua::Result<Option<usize>> {
        if self.level >= MAX_CAPTURES {
            return Err(fail("too many captures"));
        }
        self.captures[self.level] = (s, len);
        self.level += 1;
        let end = self.do_match(s, p)?;
        if end.is_none() {
            self.level -= 1;
        }
        Ok(end)
    }

    fn end_capture(&mut self, s: usize, p: usize) -> mlua::Result<Option<usize>> {
        let Some(l) = (0..self.level)
            .rev()
            .find(|&l| self.captures[l].1 == Len::Open)
        else {
            return Err(fail("invalid pattern capture"));
        };
        self.captures[l].1 = Len::Closed(s - self.captures[l].0);
        let end = self.do_match(s, p)?;
        if end.is_none() {
            self.captures[l].1 = Len::Open;
        }
        Ok(end)
    }

    fn match_balance(&mut self, s: usize, p: usize) -> mlua::Result<Option<usize>> {
        if p + 1 >= self.pat.len() {
            return Err(fail("malformed pattern (missing arguments to '%b')"));
        }
        let (open, close) = (self.pat[p], self.pat[p + 1]);
        if self.src.get(s) != Some(&open) {
            return Ok(None);
        }
        let mut depth = 1;
        for i in s + 1..self.src.len() {
            self.tick()?;
            let c = self.src[i];
            if c == close {
                depth -= 1;
                if depth == 0 {
                    return Ok(Some(i + 1));
                }
            } else if c == open {
                depth += 1;
            }
        }
        Ok(None)
    }

    /// `%1`-`%9` in a pattern: the text of that (closed) capture again.
    fn match_backref(&mut self, s: usize, digit: u8) -> mlua::Result<Option<usize>> {
        let l = i32::from(digit) - i32::from(b'1');
        let closed = usize::try_from(l)
            .ok()
            .filter(|&l| l < self.level)
            .map(|l| self.captures[l])
            .filter(|(_, len)| *len != Len::Open);
        let Some((start, len)) = closed else {
            return Err(fail(format!("invalid capture index %{}", l + 1)));
        };
        // A position capture has no text: it never matches again.
        let Len::Closed(len) = len else {
            return Ok(None);
        };
        self.tick_bytes(len)?;
        let src = self.src;
        Ok((src.len() - s >= len && src[start..start + len] == src[s..s + len]).then_some(s + len))
    }

    /// Capture `i` of the match `s..e`; with no captures, capture 0 is the whole match.
    fn capture(&self, i: usize, s: usize, e: usize) -> mlua::Result<Capture<'a>> {
        if i >= self.level {
            if i != 0 {
                return Err(fail(format!("invalid capture index %{}", i + 1)));
            }
            return Ok(Capture::Text(&self.src[s..e]));
        }
        let (start, len) = self.captures[i];
        match len {
            Len::Open => Err(fail("unfinished capture")),
            Len::Position => Ok(Capture::Position(start + 1)),
            Len::Closed(len) => Ok(Capture::Text(&self.src[start..start + len])),
        }
    }

    /// The captures as Lua values; with none, the whole match `whole` if given.
    fn captures(&self, lua: &Lua, whole: Option<(usize, usize)>) -> mlua::Result<MultiValue> {
        let (s, e) = whole.unwrap_or((0, 0));
        let n = if self.level == 0 && whole.is_some() {
            1
        } else {
            self.level
        };
        (0..n)
            .map(|i| to_value(lua, self.capture(i, s, e)?))
            .collect()
    }
}

fn to_value(lua: &Lua, c: Capture) -> mlua::Result<Value> {
    Ok(match c {
        Capture::Text(t) => Value::String(lua.create_string(t)?),
        Capture::Position(p) => Value::Integer(p as i64),
    })
}

/// Whether `c` is in the class `%cl` (C locale: ASCII only).
fn class(c: u8, cl: u8) -> bool {
    let yes = match cl.to_ascii_lowercase() {
        b'a' => c.is_ascii_alphabetic(),
        b'c' => c.is_ascii_control(),
        b'd' => c.is_ascii_digit(),
        b'g' => c.is_ascii_graphic(),
        b'l' => c.is_ascii_lowercase(),
        b'p' => c.is_ascii_punctuation(),
        b's' => matches!(c, b' ' | b'\t'..=b'\r'),
        b'u' => c.is_ascii_uppercase(),
        b'w' => c.is_ascii_alphanumeric(),
        b'x' => c.is_ascii_hexdigit(),
        // Not in the manual any more, still in Lua 5.4: the NUL byte.
        b'z' => c == 0,
        _ => return cl == c,
    };
    if cl.is_ascii_uppercase() { !yes } else { yes }
}

/// A 1-based start position as Lua's string functions read it (negative counts from the end),
/// made 0-based.
fn start_at(pos: i64, len: usize) -> usize {
    let len_i = i64::try_from(len).unwrap_or(i64::MAX);
    let one_based = if pos > 0 {
        usize::try_from(pos).unwrap_or(usize::MAX)
    } else if pos == 0 || pos < -len_i {
        1
    } else {
        len - usize::try_from(-pos).unwrap_or(0) + 1
    };
    one_based - 1
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Boolean(_) => "boolean",
        Value::Integer(_) | Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Table(_) => "table",
        Value::Function(_) => "function",
        Value::Thread(_) => "thread",
        _ => "userdata",
    }
}

fn arg_string(lua: &Lua, args: &MultiValue, i: usize, func: &str) -> mlua::Result<mlua::LuaString> {
    let v = args.get(i).cloned().unwrap_or(Value::Nil);
    match v {
        Value::String(s) => Ok(s),
        Value::Integer(_) | Value::Number(_) => lua
            .coerce_string(v)?
            .ok_or_else(|| fail("number not convertible to a string")),
        other => Err(fail(format!(
            "bad argument #{} to '{func}' (string expected, got {})",
            i + 1,
            if args.len() <= i {
                "no value"
            } else {
                type_name(&other)
            }
        ))),
    }
}

fn arg_integer(
    lua: &Lua,
    args: &MultiValue,
    i: usize,
    func: &str,
    default: i64,
) -> mlua::Result<i64> {
    let v = args.get(i).cloned().unwrap_or(Value::Nil);
    match v {
        Value::Nil => Ok(default),
        Value::Integer(n) => Ok(n),
        Value::Number(_) | Value::String(_) => {
            let is_number =
                matches!(v, Value::Number(_)) || lua.coerce_number(v.clone())?.is_some();
            match lua.coerce_integer(v)? {
                Some(n) => Ok(n),
                None if is_number => Err(fail(format!(
                    "bad argument #{} to '{func}' (number has no integer representation)",
                    i + 1
                ))),
                None => Err(fail(format!(
                    "bad argument #{} to '{func}' (number expected, got string)",
                    i + 1
                ))),
            }
        }
        other => Err(fail(format!(
            "bad argument #{} to '{func}' (number expected, got {})",
            i + 1,
            type_name(&other)
        ))),
    }
}

fn truthy(v: Option<&Value>) -> bool {
    !matches!(v, None | Some(Value::Nil | Value::Boolean(false)))
}

fn nil() -> MultiValue {
    MultiValue::from_iter([Value::Nil])
}

fn find_aux(lua: &Lua, budget: &Budget, args: &MultiValue, find: bool) -> mlua::Result<MultiValue> {
    let name = if find { "find" } else { "match" };
    let subject = arg_string(lua, args, 0, name)?;
    let pattern = arg_string(lua, args, 1, name)?;
    let (src, pat) = (subject.as_bytes(), pattern.as_bytes());
    let (src, pat): (&[u8], &[u8]) = (&src, &pat);
    let init = start_at(arg_integer(lua, args, 2, name, 1)?, src.len());
    if init > src.len() {
        return Ok(nil());
    }
    if find && (truthy(args.get(3)) || !pat.iter().any(|c| SPECIALS.contains(c))) {
        let mut m = Matcher::new(src, pat, budget);
        if pat.is_empty() {
            return Ok(MultiValue::from_iter([
                Value::Integer(init as i64 + 1),
                Value::Integer(init as i64),
            ]));
        }
        let mut at = init;
        while at + pat.len() <= src.len() {
            m.tick_bytes(pat.len())?;
            if src[at..at + pat.len()] == pat[..] {
                return Ok(MultiValue::from_iter([
                    Value::Integer(at as i64 + 1),
                    Value::Integer((at + pat.len()) as i64),
                ]));
            }
            at += 1;
        }
        return Ok(nil());
    }
    let (anchor, pat) = match pat.strip_prefix(b"^") {
        Some(rest) => (true, rest),
        None => (false, pat),
    };
    let mut m = Matcher::new(src, pat, budget);
    let mut s1 = init;
    loop {
        m.reset();
        if let Some(end) = m.do_match(s1, 0)? {
            if find {
                let mut out = MultiValue::from_iter([
                    Value::Integer(s1 as i64 + 1),
                    Value::Integer(end as i64),
                ]);
                out.extend(m.captures(lua, None)?);
                return Ok(out);
            }
            return m.captures(lua, Some((s1, end)));
        }
        s1 += 1;
        if anchor || s1 > src.len() {
            return Ok(nil());
        }
    }
}

fn gmatch(lua: &Lua, budget: Arc<Budget>, args: &MultiValue) -> mlua::Result<Function> {
    let subject = arg_string(lua, args, 0, "gmatch")?;
    let pattern = arg_string(lua, args, 1, "gmatch")?;
    let len = subject.as_bytes().len();
    let mut init = start_at(arg_integer(lua, args, 2, "gmatch", 1)?, len);
    if init > len {
        init = len + 1;
    }
    // Where the next search starts, and where the last match ended.
    let state = Mutex::new((init, None::<usize>));
    answering(lua, &budget.clone(), move |lua, budget, _| {
        let (src, pat) = (subject.as_bytes(), pattern.as_bytes());
        let (src, pat): (&[u8], &[u8]) = (&src, &pat);
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        let (from, last) = *state;
        let mut m = Matcher::new(src, pat, budget);
        for s in from..=src.len() {
            m.reset();
            if let Some(end) = m.do_match(s, 0)?
                && Some(end) != last
            {
                *state = (end, Some(end));
                return m.captures(lua, Some((s, end)));
            }
        }
        *state = (src.len() + 1, last);
        Ok(nil())
    })
}

enum Replacement {
    Template(mlua::LuaString),
    Table(Table),
    Function(Function),
}

fn gsub(lua: &Lua, budget: &Budget, args: &MultiValue) -> mlua::Result<MultiValue> {
    let subject = arg_string(lua, args, 0, "gsub")?;
    let pattern = arg_string(lua, args, 1, "gsub")?;
    let repl = match args.get(2).cloned().unwrap_or(Value::Nil) {
        Value::String(s) => Replacement::Template(s),
        v @ (Value::Integer(_) | Value::Number(_)) => Replacement::Template(
            lua.coerce_string(v)?
                .ok_or_else(|| fail("number not convertible to a string"))?,
        ),
        Value::Table(t) => Replacement::Table(t),
        Value::Function(f) => Replacement::Function(f),
        other => {
            return Err(fail(format!(
                "bad argument #3 to 'gsub' (string/function/table expected, got {})",
                if args.len() <= 2 {
                    "no value"
                } else {
                    type_name(&other)
                }
            )));
        }
    };
    let (src, pat) = (subject.as_bytes(), pattern.as_bytes());
    let (src, pat): (&[u8], &[u8]) = (&src, &pat);
    let len = src.len();
    let max = arg_integer(lua, args, 3, "gsub", len as i64 + 1)?;
    let (anchor, pat) = match pat.strip_prefix(b"^") {
        Some(rest) => (true, rest),
        None => (false, pat),
    };
    let mut m = Matcher::new(src, pat, budget);
    let mut out: Vec<u8> = Vec::new();
    let (mut s, mut last, mut n, mut changed) = (0usize, None::<usize>, 0i64, false);
    while n < max {
        m.reset();
        match m.do_match(s, 0)? {
            Some(end) if Some(end) != last => {
                n += 1;
                changed |= add_value(lua, &mut m, &mut out, &repl, s, end)?;
                s = end;
                last = Some(end);
            }
            _ if s < len => {
                out.push(src[s]);
                s += 1;
            }
            _ => break,
        }
        if out.len() > budget.memory {
            return Err(mlua::Error::MemoryError("not enough memory".into()));
        }
        if anchor {
            break;
        }
    }
    let result = if changed {
        out.extend_from_slice(&src[s..]);
        lua.create_string(&out)?
    } else {
        subject.clone()
    };
    Ok(MultiValue::from_iter([
        Value::String(result),
        Value::Integer(n),
    ]))
}

/// Appends the replacement of the match `s..e`; answers whether it replaced anything (a
/// function or table answering false or nil keeps the match as it is).
fn add_value(
    lua: &Lua,
    m: &mut Matcher,
    out: &mut Vec<u8>,
    repl: &Replacement,
    s: usize,
    e: usize,
) -> mlua::Result<bool> {
    let value = match repl {
        Replacement::Template(t) => {
            let t = t.as_bytes();
            let before = out.len();
            let mut i = 0;
            while i < t.len() {
                let c = t[i];
                i += 1;
                if c != ESC {
                    out.push(c);
                    continue;
                }
                match t.get(i).copied() {
                    Some(ESC) => out.push(ESC),
                    Some(b'0') => out.extend_from_slice(&m.src[s..e]),
                    Some(d) if d.is_ascii_digit() => {
                        match m.capture(usize::from(d - b'1'), s, e)? {
                            Capture::Text(text) => out.extend_from_slice(text),
                            Capture::Position(p) => out.extend_from_slice(p.to_string().as_bytes()),
                        }
                    }
                    _ => return Err(fail("invalid use of '%' in replacement string")),
                }
                i += 1;
                if out.len() > m.budget.memory {
                    return Err(mlua::Error::MemoryError("not enough memory".into()));
                }
            }
            m.tick_bytes(out.len() - before + t.len())?;
            return Ok(true);
        }
        Replacement::Function(f) => f.call::<Value>(m.captures(lua, Some((s, e)))?)?,
        Replacement::Table(t) => t.get::<Value>(to_value(lua, m.capture(0, s, e)?)?)?,
    };
    match value {
        Value::Nil | Value::Boolean(false) => {
            out.extend_from_slice(&m.src[s..e]);
            Ok(false)
        }
        v @ (Value::String(_) | Value::Integer(_) | Value::Number(_)) => {
            let text = lua
                .coerce_string(v)?
                .ok_or_else(|| fail("invalid replacement value"))?;
            let text = text.as_bytes();
            m.tick_bytes(text.len())?;
            out.extend_from_slice(&text);
            Ok(true)
        }
        other => Err(fail(format!(
            "invalid replacement value (a {})",
            type_name(&other)
        ))),
    }
}

/// Lua around the Rust functions, so that their errors are what the C functions raise: a
/// string with the caller's position, which `pcall` hands to the script as such.
const WRAPPERS: &str = r#"
local find, match, gmatch, gsub = ...
local error = error
local function raised(ok, ...)
  if ok then return ... end
  local msg, passed = ...
  -- An error of a replacement function passes on as it was raised.
  if passed then error(msg, 0) end
  error(msg, 2)
end
local function started(ok, ...)
  if ok then return ... end
  error((...), 3)
end
return function(...) return raised(find(...)) end,
  function(...) return raised(match(...)) end,
  function(...)
    local next = started(gmatch(...))
    return function() return raised(next()) end
  end,
  function(...) return raised(gsub(...)) end
"#;

/// A Rust function answering `true, results...`, or `false, message` for an error the script
/// should get as a string. The stop of the call (budget, deadline) stays an error.
fn answering(
    lua: &Lua,
    budget: &Arc<Budget>,
    f: impl Fn(&Lua, &Budget, &MultiValue) -> mlua::Result<MultiValue> + Send + 'static,
) -> mlua::Result<Function> {
    let budget = budget.clone();
    lua.create_function(move |lua, args: MultiValue| match f(lua, &budget, &args) {
        Ok(mut values) => {
            values.push_front(Value::Boolean(true));
            Ok(values)
        }
        Err(e) if !budget.spent() => {
            let (msg, passed) = if let Some(PatternError(m)) = e.downcast_ref::<PatternError>() {
                (m.clone(), false)
            } else {
                match e {
                    mlua::Error::MemoryError(m) => (m, false),
                    // A replacement function's error loses the traceback added on the way out.
                    mlua::Error::RuntimeError(mut m) => {
                        if let Some(i) = m.find("\nstack traceback:") {
                            m.truncate(i);
                        }
                        (m, true)
                    }
                    other => return Err(other),
                }
            };
            Ok(MultiValue::from_iter([
                Value::Boolean(false),
                Value::String(lua.create_string(msg)?),
                Value::Boolean(passed),
            ]))
        }
        Err(e) => Err(e),
    })
}

/// The four functions, each charging `budget`: `(find, match, gmatch, gsub)`.
pub(super) fn functions(
    lua: &Lua,
    budget: &Arc<Budget>,
) -> mlua::Result<(Function, Function, Function, Function)> {
    let find = answering(lua, budget, |lua, b, args| find_aux(lua, b, args, true))?;
    let matcher = answering(lua, budget, |lua, b, args| find_aux(lua, b, args, false))?;
    let shared = budget.clone();
    let gmatch = answering(lua, budget, move |lua, _, args| {
        let next = gmatch(lua, shared.clone(), args)?;
        Ok(MultiValue::from_iter([Value::Function(next)]))
    })?;
    let gsub = answering(lua, budget, gsub)?;
    lua.load(WRAPPERS)
        .set_name("=billhost")
        .call((find, matcher, gmatch, gsub))
}

/// Replaces the pattern functions of the `string` table (which strings reach through their
/// metatable too) with the budgeted ones.
pub(super) fn install(lua: &Lua, string: &Table, budget: &Arc<Budget>) -> mlua::Result<()> {
    let (find, matcher, gmatch, gsub) = functions(lua, budget)?;
    string.raw_set("find", find)?;
    string.raw_set("match", matcher)?;
    string.raw_set("gmatch", gmatch)?;
    string.raw_set("gsub", gsub)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The budgeted functions against the C originals of the same Lua state: random small
    //! patterns and subjects, every result and every error compared.
    use super::*;
    use crate::script::ScriptConfig;
    use proptest::prelude::*;

    struct Pair {
        lua: Lua,
        ours: [Function; 4],
        theirs: [Function; 4],
        collect: Function,
        replacer: Function,
        table: Table,
    }

    fn pair() -> Pair {
        let lua = Lua::new();
        let budget = Arc::new(Budget::new(&ScriptConfig {
            instruction_budget: i64::MAX / 4,
            ..ScriptConfig::default()
        }));
        let string: Table = lua.globals().get("string").expect("string");
        let theirs = ["find", "match", "gmatch", "gsub"].map(|n| string.get(n).expect("fn"));
        let (f, m, g, s) = functions(&lua, &budget).expect("ours");
        let collect = lua
            .load(
                r#"return function(gmatch, s, p, init)
                  local out, n = {}, 0
                  for a, b, c in gmatch(s, p, init) do
                    n = n + 1
                    out[n] = tostring(a) .. "|" .. tostring(b) .. "|" .. tostring(c)
                    if n > 40 then break end
                  end
                  return table.concat(out, ";")
                end"#,
            )
            .eval()
            .expect("collect");
        let replacer = lua
            .load(
                r##"return function(...)
                  local a = ...
                  if a == "b" then return false end
                  if a == "c" then return 7 end
                  if a == "1" then error("boom") end
                  local t = {}
                  for i = 1, select("#", ...) do t[i] = tostring((select(i, ...))) end
                  return "<" .. table.concat(t, ",") .. ">"
                end"##,
            )
            .eval()
            .expect("replacer");
        let table: Table = lua
            .load(r#"return { a = "A", b = false, ab = 1.5, [1] = "one", c = {} }"#)
            .eval()
            .expect("table");
        Pair {
            lua,
            ours: [f, m, g, s],
            theirs,
            collect,
            replacer,
            table,
        }
    }

    /// A call's outcome as text: its values, or its error message.
    fn outcome(r: mlua::Result<MultiValue>) -> String {
        match r {
            Ok(values) => values
                .iter()
                .map(|v| match v {
                    Value::String(s) => format!("{:?}", s.as_bytes()),
                    Value::Integer(i) => format!("i{i}"),
                    Value::Number(n) => format!("n{n}"),
                    other => format!("{other:?}"),
                })
                .collect::<Vec<_>>()
                .join(" "),
            Err(e) => {
                let msg = crate::script::script_error(&e).msg;
                // Errors of the C functions called from Lua carry the caller's position.
                let msg = match msg.find(": ") {
                    Some(i) if msg[..i].contains("pattern.rs:") => msg[i + 2..].to_string(),
                    _ => msg,
                };
                format!("error: {}", msg.trim_start_matches("runtime error: "))
            }
        }
    }

    fn bytes(lua: &Lua, b: &[u8]) -> Value {
        Value::String(lua.create_string(b).expect("string"))
    }

    fn check(
        p: &Pair,
        subject: &[u8],
        pattern: &[u8],
        init: Option<i64>,
        repl: &[u8],
        max: Option<i64>,
    ) {
        let lua = &p.lua;
        let s = bytes(lua, subject);
        let pat = bytes(lua, pattern);
        let init_v = init.map_or(Value::Nil, Value::Integer);
        let max_v = max.map_or(Value::Nil, Value::Integer);
        let same = |what: &str, args: Vec<Value>, ours: &Function, theirs: &Function| {
            let mine = outcome(ours.call::<MultiValue>(MultiValue::from_iter(args.clone())));
            let real = outcome(theirs.call::<MultiValue>(MultiValue::from_iter(args)));
            assert_eq!(
                mine,
                real,
                "{what}({:?}, {:?}, init {init:?}, repl {:?}, max {max:?})",
                String::from_utf8_lossy(subject),
                String::from_utf8_lossy(pattern),
                String::from_utf8_lossy(repl),
            );
        };
        let args = vec![s.clone(), pat.clone(), init_v.clone()];
        same("find", args.clone(), &p.ours[0], &p.theirs[0]);
        same("match", args.clone(), &p.ours[1], &p.theirs[1]);
        let plain = vec![s.clone(), pat.clone(), init_v.clone(), Value::Boolean(true)];
        same("find plain", plain, &p.ours[0], &p.theirs[0]);
        let mine =
            outcome(
                p.collect
                    .call((p.ours[2].clone(), s.clone(), pat.clone(), init_v.clone())),
            );
        let real = outcome(
            p.collect
                .call((p.theirs[2].clone(), s.clone(), pat.clone(), init_v)),
        );
        assert_eq!(mine, real, "gmatch({subject:?}, {pattern:?})");
        for r in [
            bytes(lua, repl),
            Value::Function(p.replacer.clone()),
            Value::Table(p.table.clone()),
        ] {
            let args = vec![s.clone(), pat.clone(), r, max_v.clone()];
            same("gsub", args, &p.ours[3], &p.theirs[3]);
        }
    }

    const PATTERN_BYTES: &[u8] = b"abc()%.[]^$*+-?019dwsSpxfbz \0";
    const SUBJECT_BYTES: &[u8] = b"abc()[] .1 0\n\0";
    const REPL_BYTES: &[u8] = b"x%012";

    fn text(alphabet: &'static [u8], max: usize) -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop::sample::select(alphabet), 0..max)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]
        #[test]
        fn the_budgeted_pattern_functions_answer_as_the_c_ones_do(
            subject in text(SUBJECT_BYTES, 10),
            pattern in text(PATTERN_BYTES, 9),
            init in prop::option::of(-12i64..12),
            repl in text(REPL_BYTES, 5),
            max in prop::option::of(-1i64..4),
        ) {
            thread_local!(static PAIR: Pair = pair());
            PAIR.with(|p| check(p, &subject, &pattern, init, &repl, max));
        }
    }

    #[test]
    fn chosen_cases_answer_as_the_c_ones_do() {
        let p = pair();
        let cases: &[(&str, &str)] = &[
            ("hello world", "o w"),
            ("hello world", "(o)(r)"),
            ("key = value", "(%w+)%s*=%s*(%w+)"),
            ("THE (quick) fox", "%((%a+)%)"),
            ("f(a(b)c)d", "%b()"),
            ("THE (quick) fox", "%f[%a]%a+"),
            ("hello", "()ll()"),
            ("abcabc", "(abc)%1"),
            ("  trim  ", "^%s*(.-)%s*$"),
            ("x = 1, y = 2", "(%w+) = (%w+)"),
            ("[]]", "[]]"),
            ("a-b", "[a-]"),
            ("a^b", "[%^^]"),
            ("\0a\0", "%z"),
            ("\0a\0", "\0a"),
            ("abc", "%"),
            ("abc", "[a"),
            ("abc", "%b"),
            ("abc", "%f"),
            ("abc", "(()"),
            ("abc", "a)"),
            ("abc", "%1"),
            ("abc", "(a)%2"),
            ("abc", "(a%1)"),
            ("abc", "%0"),
            (
                "aaa",
                "((((((((((((((((((((((((((((((((((a))))))))))))))))))))))))))))))))",
            ),
            ("abc", "x*$"),
            ("abc", "^$"),
            ("", ""),
            ("a.b", "%."),
            ("a\x0bb", "%s"),
            ("é", "%a"),
            ("abc", "[^%a]"),
            ("a1", "[%d-z]"),
        ];
        for (s, pat) in cases {
            for init in [None, Some(2), Some(-1), Some(0), Some(10)] {
                check(&p, s.as_bytes(), pat.as_bytes(), init, b"<%0|%1>", None);
                check(&p, s.as_bytes(), pat.as_bytes(), init, b"%2%", Some(1));
                check(&p, s.as_bytes(), pat.as_bytes(), init, b"%%%x", None);
            }
        }
        // Around the nesting limit, where "pattern too complex" starts.
        for n in 190..=210 {
            let deep = "a".repeat(n);
            check(
                &p,
                deep.as_bytes(),
                "a?".repeat(n).as_bytes(),
                None,
                b"",
                None,
            );
            check(
                &p,
                deep.as_bytes(),
                "(a)".repeat(n / 7).as_bytes(),
                None,
                b"%1",
                None,
            );
        }
    }

    #[test]
    fn a_backtracking_pattern_stops_with_the_budget() {
        let lua = Lua::new();
        let budget = Arc::new(Budget::new(&ScriptConfig {
            instruction_budget: 1_000_000,
            ..ScriptConfig::default()
        }));
        let (find, ..) = functions(&lua, &budget).expect("ours");
        let subject = "a".repeat(30_000);
        let e = find
            .call::<MultiValue>((subject, ".-b"))
            .expect_err("stopped");
        assert!(e.to_string().contains("instruction budget"), "{e}");
    }
}
