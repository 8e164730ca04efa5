//! The wire formats: the only module that knows XML, BILLmanager-style JSON, `sjson` and the
//! mgrctl-like text format. Everything else works on [`Doc`].
//!
//! A file document ([`Doc::File`]) is binary: HTTP serves its bytes as they are and the CLI
//! writes them to `--output`. When a file is asked for as a document anyway, XML and JSON carry
//! it as `<file name=".." mime=".." size="N">BASE64</file>` (JSON: `"file": {"$name", "$mime",
//! "$size", "$": BASE64}`), and `text` describes it in one line without the content.

use crate::doc::{Doc, Fields, FileDoc, ListDoc};
use crate::error::FuncError;
use base64::Engine as _;
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Xml,
    Json,
    Sjson,
    Text,
}

impl Format {
    /// Parses the `out` parameter; an empty value means the default, XML.
    pub fn parse(s: &str) -> Result<Format, FuncError> {
        match s {
            "" | "xml" => Ok(Format::Xml),
            "json" => Ok(Format::Json),
            "sjson" => Ok(Format::Sjson),
            "text" => Ok(Format::Text),
            other => Err(FuncError::value(
                "out",
                other,
                format!("Unknown output format '{other}'"),
            )),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Xml => "text/xml; charset=UTF-8",
            Format::Json | Format::Sjson => "application/json; charset=UTF-8",
            Format::Text => "text/plain; charset=UTF-8",
        }
    }
}

/// What the document says about the call that produced it (UI metadata, left out of `sjson`
/// and `text`).
#[derive(Debug, Clone, Copy)]
pub struct Meta<'a> {
    pub func: &'a str,
    pub lang: &'a str,
}

pub fn render(doc: &Doc, format: Format, meta: Meta<'_>) -> String {
    match format {
        Format::Xml => render_xml(doc, meta),
        Format::Json => render_json(doc, Some(meta)),
        Format::Sjson => render_json(doc, None),
        Format::Text => render_text(doc),
    }
}

// ---------------------------------------------------------------- XML

fn render_xml(doc: &Doc, meta: Meta<'_>) -> String {
    let mut out = String::with_capacity(xml_size_hint(doc, meta));
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<doc");
    attr(&mut out, "func", meta.func);
    attr(&mut out, "lang", meta.lang);
    out.push('>');
    match doc {
        Doc::List(list) => {
            for elem in &list.elems {
                out.push_str("<elem>");
                xml_fields(&mut out, elem);
                out.push_str("</elem>");
            }
            xml_fields(&mut out, &paging(list));
        }
        Doc::Form(fields) => xml_fields(&mut out, fields),
        Doc::Ok(fields) => {
            out.push_str("<ok/>");
            xml_fields(&mut out, fields);
        }
        Doc::Auth { id, level } => {
            out.push_str("<auth");
            attr(&mut out, "id", id);
            attr(&mut out, "level", &level.number().to_string());
            out.push('>');
            escape_into(&mut out, id);
            out.push_str("</auth>");
        }
        Doc::File(file) => {
            out.push_str("<file");
            attr(&mut out, "name", &file.name);
            attr(&mut out, "mime", &file.mime);
            attr(&mut out, "size", &file.bytes.len().to_string());
            out.push('>');
            out.push_str(&base64_of(file));
            out.push_str("</file>");
        }
        Doc::Error(e) => {
            out.push_str("<error");
            attr(&mut out, "type", e.kind.as_str());
            attr(&mut out, "object", &e.object);
            out.push_str("><param name=\"object\">");
            escape_into(&mut out, &e.object);
            out.push_str("</param><param name=\"value\">");
            escape_into(&mut out, &e.value);
            out.push_str("</param><msg>");
            escape_into(&mut out, &e.msg);
            out.push_str("</msg></error>");
        }
    }
    out.push_str("</doc>\n");
    out
}

/// About the length of the XML of `doc` (exact when nothing needs escaping), so that the
/// output is allocated once.
fn xml_size_hint(doc: &Doc, meta: Meta<'_>) -> usize {
    let fields = |f: &Fields| -> usize { f.iter().map(|(k, v)| 2 * k.len() + v.len() + 6).sum() };
    let body = match doc {
        Doc::List(list) => list.elems.iter().map(|e| fields(e) + 13).sum::<usize>() + 96,
        Doc::Form(f) | Doc::Ok(f) => fields(f) + 8,
        Doc::File(file) => file.bytes.len() / 3 * 4 + file.name.len() + file.mime.len() + 64,
        Doc::Auth { .. } | Doc::Error(_) => 192,
    };
    64 + meta.func.len() + meta.lang.len() + body
}

fn xml_fields(out: &mut String, fields: &Fields) {
    for (name, value) in fields {
        let name = xml_name(name);
        out.push('<');
        out.push_str(&name);
        out.push('>');
        escape_into(out, value);
        out.push_str("</");
        out.push_str(&name);
        out.push('>');
    }
}

fn attr(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    escape_into(out, value);
    out.push('"');
}

/// Escapes markup (quotes too, so that the text is safe in attributes) and drops the characters
/// XML 1.0 cannot carry at all (C0 controls but tab, newline and carriage return; U+FFFE and
/// U+FFFF). Runs of text that need nothing are copied whole.
fn escape_into(out: &mut String, text: &str) {
    let bytes = text.as_bytes();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        let (replacement, len) = match bytes[i] {
            b'&' => ("&amp;", 1),
            b'<' => ("&lt;", 1),
            b'>' => ("&gt;", 1),
            b'"' => ("&quot;", 1),
            b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            0..=0x1f => ("", 1),
            // U+FFFE and U+FFFF are EF BF BE and EF BF BF in UTF-8 (0xEF only ever leads).
            0xef if matches!(bytes.get(i + 1..i + 3), Some([0xbf, 0xbe | 0xbf])) => ("", 3),
            _ => {
                i += 1;
                continue;
            }
        };
        // `start` and `i` are at character boundaries: after a whole character, and at an
        // ASCII byte or a lead byte.
        out.push_str(text.get(start..i).unwrap_or_default());
        out.push_str(replacement);
        i += len;
        start = i;
    }
    out.push_str(text.get(start..).unwrap_or_default());
}

/// Field names come from handlers and scripts; anything that is not a safe XML name is mapped
/// to `_` so that the document stays well formed.
fn xml_name(name: &str) -> std::borrow::Cow<'_, str> {
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    let starts_well = |s: &str| s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
    if starts_well(name) && name.chars().all(safe) {
        return std::borrow::Cow::Borrowed(name);
    }
    let mut s: String = name
        .chars()
        .map(|c| if safe(c) { c } else { '_' })
        .collect();
    if !starts_well(&s) {
        s.insert(0, '_');
    }
    std::borrow::Cow::Owned(s)
}

fn base64_of(file: &FileDoc) -> String {
    base64::engine::general_purpose::STANDARD.encode(&file.bytes)
}

fn paging(list: &ListDoc) -> Fields {
    vec![
        ("p_num".into(), list.p_num.to_string()),
        ("p_cnt".into(), list.p_cnt.to_string()),
        ("p_elems".into(), list.p_elems.to_string()),
    ]
}

// ---------------------------------------------------------------- JSON

fn text_node(v: &str) -> Value {
    json!({ "$": v })
}

fn json_fields(map: &mut Map<String, Value>, fields: &Fields) {
    for (name, value) in fields {
        map.insert(name.to_string(), text_node(value));
    }
}

/// BILLmanager's JSON: `{"doc": {...}}`, text under `"$"`, attributes under `"$name"`.
/// `elem` is always an array, even with one element. `meta` is `None` for `sjson`.
fn render_json(doc: &Doc, meta: Option<Meta<'_>>) -> String {
    let mut body = Map::new();
    if let Some(meta) = meta {
        body.insert("$func".into(), Value::String(meta.func.into()));
        body.insert("$lang".into(), Value::String(meta.lang.into()));
    }
    match doc {
        Doc::List(list) => {
            let elems = list
                .elems
                .iter()
                .map(|elem| {
                    let mut m = Map::new();
                    json_fields(&mut m, elem);
                    Value::Object(m)
                })
                .collect();
            body.insert("elem".into(), Value::Array(elems));
            json_fields(&mut body, &paging(list));
        }
        Doc::Form(fields) => json_fields(&mut body, fields),
        Doc::Ok(fields) => {
            body.insert("ok".into(), json!({}));
            json_fields(&mut body, fields);
        }
        Doc::Auth { id, level } => {
            body.insert(
                "auth".into(),
                json!({ "$id": id, "$level": level.number().to_string(), "$": id }),
            );
        }
        Doc::File(file) => {
            body.insert(
                "file".into(),
                json!({
                    "$name": file.name,
                    "$mime": file.mime,
                    "$size": file.bytes.len().to_string(),
                    "$": base64_of(file),
                }),
            );
        }
        Doc::Error(e) => {
            body.insert(
                "error".into(),
                json!({
                    "$type": e.kind.as_str(),
                    "$object": e.object,
                    "param": [
                        { "$name": "object", "$": e.object },
                        { "$name": "value", "$": e.value },
                    ],
                    "msg": { "$": e.msg },
                }),
            );
        }
    }
    let mut s = json!({ "doc": Value::Object(body) }).to_string();
    s.push('\n');
    s
}

// ---------------------------------------------------------------- text

/// mgrctl's format: one `key=value ...` line per list element, one `key=value` line per form
/// field, `OK` (followed by the ok's fields) or `ERROR type(object): message`.
fn render_text(doc: &Doc) -> String {
    let mut out = String::new();
    match doc {
        Doc::List(list) => {
            for elem in &list.elems {
                text_line(&mut out, elem);
            }
        }
        Doc::Form(fields) => {
            for field in fields {
                text_line(&mut out, std::slice::from_ref(field));
            }
        }
        Doc::Ok(fields) => {
            out.push_str("OK");
            for (k, v) in fields {
                out.push(' ');
                text_pair(&mut out, k, v);
            }
            out.push('\n');
        }
        Doc::Auth { id, level } => {
            out.push_str(&format!(
                "auth={} level={}\n",
                text_value(id),
                level.number()
            ));
        }
        Doc::File(file) => {
            out.push_str("file=");
            out.push_str(&text_value(&file.name));
            out.push_str(" mime=");
            out.push_str(&text_value(&file.mime));
            out.push_str(&format!(" size={}\n", file.bytes.len()));
        }
        Doc::Error(e) => {
            out.push_str(&format!(
                "ERROR {}({}): {}\n",
                e.kind.as_str(),
                e.object,
                text_value(&e.msg)
            ));
        }
    }
    out
}

fn text_line(out: &mut String, fields: &[(crate::doc::Name, String)]) {
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        text_pair(out, k, v);
    }
    out.push('\n');
}

fn text_pair(out: &mut String, k: &str, v: &str) {
    out.push_str(k);
    out.push('=');
    out.push_str(&text_value(v));
}

/// Keeps one element on one line, and control characters (an error echoing a parameter) out
/// of a terminal: `\\`, `\n`, `\r` and `\u{1b}` for the other control characters but tab.
fn text_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() && c != '\t' => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------- console

/// A document for a person at a terminal (the REPL): a list as an aligned table and a count, a
/// form as `name: value` lines, an ok as `ok` and its fields, an error as its type, object and
/// message. Not a wire format: no request can ask for it.
pub fn render_console(doc: &Doc) -> String {
    let pairs = |fields: &Fields| -> String {
        fields
            .iter()
            .map(|(k, v)| format!("{k}: {}\n", text_value(v)))
            .collect()
    };
    match doc {
        Doc::List(list) => {
            let mut header: Vec<&str> = Vec::new();
            for elem in &list.elems {
                for (k, _) in elem {
                    if !header.contains(&k.as_ref()) {
                        header.push(k);
                    }
                }
            }
            let rows: Vec<Vec<String>> = list
                .elems
                .iter()
                .map(|elem| {
                    header
                        .iter()
                        .map(|h| {
                            elem.iter()
                                .find(|(k, _)| k == h)
                                .map(|(_, v)| text_value(v))
                                .unwrap_or_default()
                        })
                        .collect()
                })
                .collect();
            let shown = list.elems.len() as u64;
            let count = if shown == list.p_elems {
                format!("({shown} element{})\n", if shown == 1 { "" } else { "s" })
            } else {
                format!("({shown} of {}, page {})\n", list.p_elems, list.p_num)
            };
            if shown == 0 {
                return count;
            }
            table(&header, &rows) + &count
        }
        Doc::Form(fields) if fields.is_empty() => "(empty form)\n".into(),
        Doc::Form(fields) => pairs(fields),
        Doc::Ok(fields) => format!("ok\n{}", pairs(fields)),
        Doc::Auth { id, level } => format!("auth: {id}\nlevel: {}\n", level.as_str()),
        Doc::File(file) => format!(
            "file: {}\nmime: {}\nsize: {} bytes (use billhost call ... --output FILE to save it)\n",
            file.name,
            file.mime,
            file.bytes.len()
        ),
        Doc::Error(e) => format!(
            "error {}({}): {}\n",
            e.kind.as_str(),
            e.object,
            text_value(&e.msg)
        ),
    }
}

/// Rows under a header, each column as wide as its widest cell.
pub fn table<S: AsRef<str>, R: AsRef<[S]>>(header: &[&str], rows: &[R]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row.as_ref()) {
            *w = (*w).max(cell.as_ref().chars().count());
        }
    }
    let mut out = String::new();
    // Padded by hand: `format!`'s width is limited to u16, and a cell may be longer.
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let start = out.len();
        for (i, (c, w)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            out.push_str(c);
            out.extend(std::iter::repeat_n(
                ' ',
                w.saturating_sub(c.chars().count()),
            ));
        }
        let end = out[start..].trim_end().len() + start;
        out.truncate(end);
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.as_ref().iter().map(AsRef::as_ref));
    }
    out
}

#[cfg(test)]
mod console_tests {
    use super::*;
    use crate::error::FuncError;

    #[test]
    fn lists_align_and_count() {
        let doc = Doc::List(ListDoc {
            elems: vec![
                vec![("id".into(), "1".into()), ("name".into(), "Ann".into())],
                vec![
                    ("id".into(), "10".into()),
                    ("name".into(), "Bob Stone".into()),
                ],
            ],
            p_num: 1,
            p_cnt: 2,
            p_elems: 5,
        });
        assert_eq!(
            render_console(&doc),
            "id  name\n1   Ann\n10  Bob Stone\n(2 of 5, page 1)\n"
        );
    }

    #[test]
    fn forms_oks_and_errors() {
        let form = Doc::Form(vec![
            ("name".into(), "Ann".into()),
            ("elid".into(), "1".into()),
        ]);
        assert_eq!(render_console(&form), "name: Ann\nelid: 1\n");
        assert_eq!(render_console(&Doc::created(4)), "ok\nid: 4\n");
        let e = Doc::Error(FuncError::value("email", "x", "'x' is not valid"));
        assert_eq!(render_console(&e), "error value(email): 'x' is not valid\n");
    }
}

#[cfg(test)]
mod xml_tests {
    use super::*;

    /// The character-by-character definitions the fast paths must agree with.
    fn escape_reference(text: &str) -> String {
        let mut out = String::new();
        for c in text.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                '\t' | '\n' | '\r' => out.push(c),
                c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
                c => out.push(c),
            }
        }
        out
    }

    fn name_reference(name: &str) -> String {
        let mut s: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if s.is_empty() || !s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            s.insert(0, '_');
        }
        s
    }

    #[test]
    fn escaping_matches_the_definition() {
        for text in [
            "",
            "plain",
            "a&b<c>d\"e'f",
            "tab\tnl\nr\r",
            "\u{0}\u{1}x\u{1f}\u{7f}",
            "кириллица & 漢字 \u{FFFE}\u{FFFF}\u{FFFD}\u{FEFF}",
            "\u{EFFF}\u{F000}\u{10FFFF}\u{FFFF}",
            "&",
            "\u{FFFF}",
            "x\u{FFFE}",
        ] {
            let mut out = String::new();
            escape_into(&mut out, text);
            assert_eq!(out, escape_reference(text), "{text:?}");
        }
    }

    #[test]
    fn names_match_the_definition() {
        for name in [
            "email", "_x", "a.b-c_1", "", "1a", "-a", "a b", "é", "ok/", "p_num",
        ] {
            assert_eq!(xml_name(name), name_reference(name), "{name:?}");
        }
    }
}
