//! The typed result of a func, independent of any wire format: a list, a form, an ok (with
//! optional fields such as the new `id`), a session grant, a file (binary content such as a PDF
//! invoice), or an error.

use crate::error::FuncError;

/// A field's name: most are the static names of a declaration or a query, so a document does not
/// allocate one per field (a list page repeats every column name on every row); names made at
/// run time (scripts, plugins) are owned.
pub type Name = std::borrow::Cow<'static, str>;

/// Ordered `name = value` pairs: one list element, a form, or the extra fields of an ok.
pub type Fields = Vec<(Name, String)>;

/// Fields from owned names (a plugin's or a script's answer).
pub fn owned(pairs: Vec<(String, String)>) -> Fields {
    pairs.into_iter().map(|(k, v)| (k.into(), v)).collect()
}

/// Access levels as BILLmanager numbers them in `<auth level=..>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Public,
    User,
    Admin,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Public => "public",
            Level::User => "user",
            Level::Admin => "admin",
        }
    }

    /// The number BILLmanager reports for the level (16 client, 28 staff).
    pub fn number(self) -> u8 {
        match self {
            Level::Public => 0,
            Level::User => 16,
            Level::Admin => 28,
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "public" => Some(Level::Public),
            "user" => Some(Level::User),
            "admin" => Some(Level::Admin),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListDoc {
    pub elems: Vec<Fields>,
    /// Page number, from 1.
    pub p_num: u64,
    /// Page size (the number of elements when the list is not paged).
    pub p_cnt: u64,
    /// Elements in the whole (filtered) list.
    pub p_elems: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Doc {
    List(ListDoc),
    /// A view of an object or a blank form; `elid` is one of the fields when viewing.
    Form(Fields),
    /// Success; a create carries `id`.
    Ok(Fields),
    /// A session: `<auth id="SID" level="L">SID</auth>`.
    Auth {
        id: String,
        level: Level,
    },
    /// Binary content (a PDF, a printable page): HTTP answers it as it is, the CLI writes it to
    /// `--output`, the document formats describe it (see `wire`).
    File(FileDoc),
    Error(FuncError),
}

/// A file a func produced.
#[derive(Clone, PartialEq, Eq)]
pub struct FileDoc {
    /// The file name offered to whoever saves it (`invoice-2026-000001.pdf`).
    pub name: String,
    /// The media type (`application/pdf`, `text/html; charset=UTF-8`).
    pub mime: String,
    pub bytes: Vec<u8>,
    /// Offered as a download (`Content-Disposition: attachment`) rather than shown inline.
    pub attachment: bool,
}

impl std::fmt::Debug for FileDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileDoc")
            .field("name", &self.name)
            .field("mime", &self.mime)
            .field("size", &self.bytes.len())
            .field("attachment", &self.attachment)
            .finish()
    }
}

impl Doc {
    pub fn ok() -> Doc {
        Doc::Ok(Vec::new())
    }

    pub fn created(id: i64) -> Doc {
        Doc::Ok(vec![("id".into(), id.to_string())])
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Doc::Error(_))
    }

    /// The value of a top-level field of a form or ok document.
    pub fn field(&self, name: &str) -> Option<&str> {
        match self {
            Doc::Form(f) | Doc::Ok(f) => f.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()),
            _ => None,
        }
    }
}

impl From<FuncError> for Doc {
    fn from(e: FuncError) -> Self {
        Doc::Error(e)
    }
}
