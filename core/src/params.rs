//! Request parameters: an ordered multimap of strings as they arrive on the wire, with typed
//! accessors for handlers.

use crate::error::{FuncError, FuncResult};

/// Parameters of one func call, in arrival order. A name given twice keeps its last value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

/// Parameters that steer the protocol rather than the handler.
pub const PROTOCOL: &[&str] = &[
    "func", "out", "elid", "plid", "sok", "lang", "authinfo", "auth", "su", "filter", "p_num",
    "p_cnt", "p_sort", "p_order",
];

impl Params {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut p = Params::new();
        for (k, v) in pairs {
            p.set(k, v);
        }
        p
    }

    /// Sets `name`, replacing an earlier value.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.pairs.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.pairs.push((name, value)),
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<String> {
        let i = self.pairs.iter().position(|(k, _)| k == name)?;
        Some(self.pairs.remove(i).1)
    }

    /// The raw value, empty or not.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value when present and not empty (BILLmanager forms send empty fields).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.raw(name).filter(|v| !v.is_empty())
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn required(&self, name: &str) -> FuncResult<&str> {
        self.get(name).ok_or_else(|| FuncError::missed_param(name))
    }

    pub fn int(&self, name: &str) -> FuncResult<Option<i64>> {
        self.get(name).map(|v| parse_int(name, v)).transpose()
    }

    /// A checkbox: `on` is true, `off` false; absent is `None`.
    pub fn flag(&self, name: &str) -> Option<bool> {
        self.raw(name).map(|v| v == "on")
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The parameters meant for the handler: everything but the protocol's own.
    pub fn business(&self) -> impl Iterator<Item = (&str, &str)> {
        self.iter().filter(|(k, _)| !PROTOCOL.contains(k))
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Refuses a parameter whose name or value holds a NUL character (`%00`), whatever the
    /// func and whether it is declared or not (a session id, a filter, `su`, `lang`): no text
    /// column of either backend holds one (PostgreSQL's text cannot), so no value with one
    /// means anything, and refusing it here answers the same `value` error on both backends
    /// before the database sees it.
    pub fn refuse_nul(&self) -> FuncResult<()> {
        match self
            .pairs
            .iter()
            .find(|(k, v)| k.contains('\0') || v.contains('\0'))
        {
            Some((k, v)) => Err(nul_refused(k, v)),
            None => Ok(()),
        }
    }
}

/// The error for a parameter `name` whose value (or name) holds a NUL character.
pub fn nul_refused(name: &str, value: &str) -> FuncError {
    FuncError::value(
        name,
        truncated(value),
        "NUL characters (%00) are not allowed",
    )
}

pub fn parse_int(name: &str, v: &str) -> FuncResult<i64> {
    let digits = v.strip_prefix('-').unwrap_or(v);
    if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FuncError::value(
            name,
            v,
            format!("'{v}' is not an integer"),
        ));
    }
    v.parse()
        .map_err(|_| FuncError::value(name, v, format!("'{v}' is not an integer")))
}

/// Parses an object id: a positive integer.
pub fn parse_id(name: &str, v: &str) -> FuncResult<i64> {
    let id = parse_int(name, v.trim())?;
    if id <= 0 {
        return Err(FuncError::value(name, v, format!("'{v}' is not an id")));
    }
    Ok(id)
}

/// The most elements a group operation takes in one call: every element runs in the call's one
/// transaction, holding the single writer, so a bigger group is refused rather than stalling
/// every other write (send it in several calls).
pub const MAX_GROUP: usize = 1000;

/// Splits a group operation's `elid`: ids separated by `", "` or a bare comma, duplicates
/// dropped, order kept. An empty element (`1,,2`, `1,`) is a `value` error, and so is a list of
/// more than [`MAX_GROUP`] elements.
pub fn parse_id_list(name: &str, v: &str) -> FuncResult<Vec<i64>> {
    if v.trim().is_empty() {
        return Err(FuncError::missed_param(name));
    }
    let mut ids = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (n, part) in v.split(',').enumerate() {
        if n >= MAX_GROUP * 2 || ids.len() >= MAX_GROUP {
            return Err(FuncError::value(
                name,
                truncated(v),
                format!("At most {MAX_GROUP} elements are allowed in one call"),
            ));
        }
        let part = part.trim();
        if part.is_empty() {
            return Err(FuncError::value(
                name,
                truncated(v),
                format!("Element {} of the list is empty", n + 1),
            ));
        }
        let id = parse_id(name, part)?;
        if seen.insert(id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// A long value cut for an error document.
fn truncated(v: &str) -> String {
    match v.char_indices().nth(64) {
        Some((i, _)) => format!("{}...", &v[..i]),
        None => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_lists_accept_both_separators() {
        assert_eq!(parse_id_list("elid", "1, 2, 3"), Ok(vec![1, 2, 3]));
        assert_eq!(parse_id_list("elid", "1,2,2"), Ok(vec![1, 2]));
        assert!(parse_id_list("elid", "1, x").is_err());
        assert!(parse_id_list("elid", "0").is_err());
        assert!(parse_id_list("elid", " , ").is_err());
        for empty in ["1,,2", "1,", ",1", "1, ,2", "1, "] {
            let e = parse_id_list("elid", empty).expect_err(empty);
            assert_eq!(e.object, "elid", "{empty}");
        }
        let most: Vec<String> = (1..=MAX_GROUP).map(|i| i.to_string()).collect();
        assert_eq!(
            parse_id_list("elid", &most.join(", ")).map(|v| v.len()),
            Ok(MAX_GROUP)
        );
        let more: Vec<String> = (1..=MAX_GROUP + 1).map(|i| i.to_string()).collect();
        assert!(parse_id_list("elid", &more.join(",")).is_err());
    }

    #[test]
    fn nul_is_refused_in_any_name_or_value() {
        assert_eq!(
            Params::from_pairs([("a", "1"), ("b", "x y")]).refuse_nul(),
            Ok(())
        );
        for (k, v) in [("lang", "en\0"), ("su", "\0"), ("a\0b", "1")] {
            let e = Params::from_pairs([("func", "x"), (k, v)])
                .refuse_nul()
                .expect_err(v);
            assert_eq!((e.kind, e.object.as_str()), (crate::ErrorType::Value, k));
        }
    }

    #[test]
    fn later_values_replace_earlier() {
        let p = Params::from_pairs([("a", "1"), ("a", "2"), ("b", "")]);
        assert_eq!(p.get("a"), Some("2"));
        assert_eq!(p.get("b"), None);
        assert_eq!(p.raw("b"), Some(""));
    }
}
