//! The error document every failing func answers with: a BILLmanager error type, the object
//! it concerns, the offending value and a human message. Nothing here knows a wire format.

use std::fmt;

/// BILLmanager's error types, plus `internal` for failures that are not the caller's fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// A required parameter, or the object it names, is absent.
    Missed,
    /// A parameter has a bad value, or the operation is not allowed in the object's state.
    Value,
    /// The object would duplicate an existing one.
    Exists,
    /// The caller may not call this func or touch this object.
    Access,
    /// The credentials are missing, wrong or expired.
    Auth,
    /// The func does not exist.
    Unknown,
    /// The engine failed (database I/O, a broken invariant); the func changed nothing.
    Internal,
    /// A script failed (an error, the memory limit, the instruction budget); the message names
    /// the file and line; the func changed nothing.
    Script,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Missed => "missed",
            ErrorType::Value => "value",
            ErrorType::Exists => "exists",
            ErrorType::Access => "access",
            ErrorType::Auth => "auth",
            ErrorType::Unknown => "unknown",
            ErrorType::Internal => "internal",
            ErrorType::Script => "script",
        }
    }

    pub fn parse(s: &str) -> Option<ErrorType> {
        Some(match s {
            "missed" => ErrorType::Missed,
            "value" => ErrorType::Value,
            "exists" => ErrorType::Exists,
            "access" => ErrorType::Access,
            "auth" => ErrorType::Auth,
            "unknown" => ErrorType::Unknown,
            "internal" => ErrorType::Internal,
            "script" => ErrorType::Script,
            _ => return None,
        })
    }
}

/// A func's failure, rendered as `<doc><error type=.. object=..>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FuncError {
    pub kind: ErrorType,
    pub object: String,
    pub value: String,
    pub msg: String,
}

pub type FuncResult<T> = Result<T, FuncError>;

impl FuncError {
    pub fn new(
        kind: ErrorType,
        object: impl Into<String>,
        value: impl Into<String>,
        msg: impl Into<String>,
    ) -> Self {
        FuncError {
            kind,
            object: object.into(),
            value: value.into(),
            msg: msg.into(),
        }
    }

    /// A required parameter is absent or empty.
    pub fn missed_param(name: &str) -> Self {
        Self::new(
            ErrorType::Missed,
            name,
            "",
            format!("The '{name}' field is required"),
        )
    }

    /// The object `object` with id `id` does not exist.
    pub fn missed_object(object: &str, id: impl fmt::Display) -> Self {
        let id = id.to_string();
        let msg = format!("The {object} with id '{id}' was not found");
        Self::new(ErrorType::Missed, object, id, msg)
    }

    pub fn value(object: &str, value: impl Into<String>, msg: impl Into<String>) -> Self {
        Self::new(ErrorType::Value, object, value, msg)
    }

    pub fn exists(object: &str, value: impl Into<String>, msg: impl Into<String>) -> Self {
        Self::new(ErrorType::Exists, object, value, msg)
    }

    pub fn access(object: &str, msg: impl Into<String>) -> Self {
        Self::new(ErrorType::Access, object, "", msg)
    }

    pub fn auth(msg: impl Into<String>) -> Self {
        Self::new(ErrorType::Auth, "auth", "", msg)
    }

    pub fn internal(msg: impl Into<String>) -> Self {
        Self::new(ErrorType::Internal, "engine", "", msg)
    }

    /// Prefixes the message with the element of a group operation that failed.
    pub fn in_element(mut self, elid: &str) -> Self {
        self.msg = format!("element {elid}: {}", self.msg);
        self
    }
}

impl fmt::Display for FuncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({}): {}", self.kind.as_str(), self.object, self.msg)
    }
}

impl std::error::Error for FuncError {}

impl From<crate::store::Error> for FuncError {
    fn from(e: crate::store::Error) -> Self {
        match e.kind() {
            // Input no backend stores (the parameters are checked before; this covers what a
            // hook or a plugin hands on).
            crate::store::ErrorKind::NulText => {
                FuncError::value("text", "", "NUL characters (%00) are not allowed in text")
            }
            _ => FuncError::internal(e.to_string()),
        }
    }
}
