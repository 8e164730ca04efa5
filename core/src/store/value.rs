//! The values that cross the store boundary: what a statement binds ([`ToValue`], [`Params`])
//! and what a row gives back ([`FromValue`]). Deliberately small: integers (ids, minor units,
//! flags, times), text and bytes. There is no float: money never is one, and a type that could
//! carry it does not exist here.

use super::{Error, ErrorKind, Result};

/// A value owned (the binds of a list query built at run time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Integer(i64),
    Text(String),
    Blob(Vec<u8>),
}

/// A value borrowed from a bind or a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueRef<'a> {
    Null,
    Integer(i64),
    Text(&'a str),
    Blob(&'a [u8]),
}

impl Value {
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Null => ValueRef::Null,
            Value::Integer(i) => ValueRef::Integer(*i),
            Value::Text(t) => ValueRef::Text(t),
            Value::Blob(b) => ValueRef::Blob(b),
        }
    }
}

impl ValueRef<'_> {
    fn kind(&self) -> &'static str {
        match self {
            ValueRef::Null => "NULL",
            ValueRef::Integer(_) => "an integer",
            ValueRef::Text(_) => "text",
            ValueRef::Blob(_) => "bytes",
        }
    }

    /// The value as wire text; `None` for NULL.
    pub fn to_text(&self) -> Option<String> {
        match self {
            ValueRef::Null => None,
            ValueRef::Integer(i) => Some(i.to_string()),
            ValueRef::Text(t) => Some((*t).to_owned()),
            ValueRef::Blob(b) => Some(String::from_utf8_lossy(b).into_owned()),
        }
    }
}

/// `v` as it may be bound: text holding a NUL character is refused ([`ErrorKind::NulText`]) on
/// both backends, since PostgreSQL's text cannot hold one and SQLite would store it.
#[inline]
pub(super) fn bindable(v: ValueRef<'_>) -> Result<ValueRef<'_>> {
    match v {
        ValueRef::Text(t) if t.as_bytes().contains(&0) => Err(Error::new(
            ErrorKind::NulText,
            "a text value holds a NUL character",
        )),
        v => Ok(v),
    }
}

/// Something a statement can bind.
pub trait ToValue {
    fn to_value(&self) -> ValueRef<'_>;
}

/// Something a column can be read as.
pub trait FromValue: Sized {
    fn from_value(v: ValueRef<'_>) -> Result<Self>;
}

fn wrong(v: ValueRef<'_>, want: &str) -> Error {
    Error::type_mismatch(format!("expected {want}, the column holds {}", v.kind()))
}

impl<T: ToValue + ?Sized> ToValue for &T {
    #[inline]
    fn to_value(&self) -> ValueRef<'_> {
        (**self).to_value()
    }
}

impl<T: ToValue> ToValue for Option<T> {
    #[inline]
    fn to_value(&self) -> ValueRef<'_> {
        match self {
            Some(v) => v.to_value(),
            None => ValueRef::Null,
        }
    }
}

impl ToValue for Value {
    #[inline]
    fn to_value(&self) -> ValueRef<'_> {
        self.as_ref()
    }
}

impl ToValue for ValueRef<'_> {
    #[inline]
    fn to_value(&self) -> ValueRef<'_> {
        *self
    }
}

impl ToValue for str {
    #[inline]
    fn to_value(&self) -> ValueRef<'_> {
        ValueRef::Text(self)
    }
}

impl ToValue for String {
    #[inline]
    fn to_value(&self) -> ValueRef<'_> {
        ValueRef::Text(self)
    }
}

impl ToValue for [u8] {
    #[inline]
    fn to_value(&self) -> ValueRef<'_> {
        ValueRef::Blob(self)
    }
}

impl ToValue for Vec<u8> {
    #[inline]
    fn to_value(&self) -> ValueRef<'_> {
        ValueRef::Blob(self)
    }
}

impl ToValue for bool {
    #[inline]
    fn to_value(&self) -> ValueRef<'_> {
        ValueRef::Integer(*self as i64)
    }
}

macro_rules! int_to_value {
    ($($t:ty)*) => {$(
        impl ToValue for $t {
            #[inline]
            fn to_value(&self) -> ValueRef<'_> {
                ValueRef::Integer(i64::from(*self))
            }
        }
        impl FromValue for $t {
            #[inline]
            fn from_value(v: ValueRef<'_>) -> Result<Self> {
                match v {
                    ValueRef::Integer(i) => <$t>::try_from(i).map_err(|_| {
                        Error::type_mismatch(format!("{i} is out of range for {}", stringify!($t)))
                    }),
                    _ => Err(wrong(v, "an integer")),
                }
            }
        }
    )*};
}

int_to_value!(i8 i16 i32 i64 u8 u16 u32);

impl FromValue for u64 {
    fn from_value(v: ValueRef<'_>) -> Result<Self> {
        match v {
            ValueRef::Integer(i) => u64::try_from(i)
                .map_err(|_| Error::type_mismatch(format!("{i} is out of range for u64"))),
            _ => Err(wrong(v, "an integer")),
        }
    }
}

impl FromValue for usize {
    fn from_value(v: ValueRef<'_>) -> Result<Self> {
        match v {
            ValueRef::Integer(i) => usize::try_from(i)
                .map_err(|_| Error::type_mismatch(format!("{i} is out of range for usize"))),
            _ => Err(wrong(v, "an integer")),
        }
    }
}

impl FromValue for bool {
    #[inline]
    fn from_value(v: ValueRef<'_>) -> Result<Self> {
        match v {
            ValueRef::Integer(i) => Ok(i != 0),
            _ => Err(wrong(v, "an integer")),
        }
    }
}

impl FromValue for String {
    #[inline]
    fn from_value(v: ValueRef<'_>) -> Result<Self> {
        match v {
            ValueRef::Text(t) => Ok(t.to_owned()),
            _ => Err(wrong(v, "text")),
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(v: ValueRef<'_>) -> Result<Self> {
        match v {
            ValueRef::Blob(b) => Ok(b.to_vec()),
            ValueRef::Text(t) => Ok(t.as_bytes().to_vec()),
            _ => Err(wrong(v, "bytes")),
        }
    }
}

impl FromValue for Value {
    fn from_value(v: ValueRef<'_>) -> Result<Self> {
        Ok(match v {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::Integer(i),
            ValueRef::Text(t) => Value::Text(t.to_owned()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        })
    }
}

impl<T: FromValue> FromValue for Option<T> {
    #[inline]
    fn from_value(v: ValueRef<'_>) -> Result<Self> {
        match v {
            ValueRef::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// The values a statement binds, in placeholder order: `[]`, an array (`[id]`, `[&a, &b]`), a
/// slice of values, or [`params!`](crate::params) for values of different types.
pub trait Params {
    /// How many values there are.
    fn count(&self) -> usize;
    fn value(&self, i: usize) -> ValueRef<'_>;
    /// Whether values past the statement's placeholders may be left unbound (a list's count
    /// query, built from the same binds as its page query, uses fewer of them).
    fn lenient(&self) -> bool {
        false
    }
}

impl Params for [&dyn ToValue; 0] {
    #[inline]
    fn count(&self) -> usize {
        0
    }
    fn value(&self, _: usize) -> ValueRef<'_> {
        ValueRef::Null
    }
}

impl Params for () {
    #[inline]
    fn count(&self) -> usize {
        0
    }
    fn value(&self, _: usize) -> ValueRef<'_> {
        ValueRef::Null
    }
}

impl Params for &[&dyn ToValue] {
    #[inline]
    fn count(&self) -> usize {
        <[_]>::len(self)
    }
    #[inline]
    fn value(&self, i: usize) -> ValueRef<'_> {
        self[i].to_value()
    }
}

macro_rules! array_params {
    ($($n:literal)*) => {$(
        impl<T: ToValue> Params for [T; $n] {
            #[inline]
            fn count(&self) -> usize {
                $n
            }
            #[inline]
            fn value(&self, i: usize) -> ValueRef<'_> {
                self[i].to_value()
            }
        }
    )*};
}

array_params!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16);

/// Binds from a run-time list of values, allowing the statement to use only the first ones.
pub struct Lenient<'a>(pub &'a [Value]);

impl Params for Lenient<'_> {
    fn count(&self) -> usize {
        self.0.len()
    }
    fn value(&self, i: usize) -> ValueRef<'_> {
        self.0[i].as_ref()
    }
    fn lenient(&self) -> bool {
        true
    }
}

/// Values of different types for one statement: `params![id, name, now]` (used as
/// `store::params!`).
#[doc(hidden)]
#[macro_export]
macro_rules! store_params {
    () => {
        &[] as &[&dyn $crate::store::ToValue]
    };
    ($($v:expr),+ $(,)?) => {
        &[$(&$v as &dyn $crate::store::ToValue),+] as &[&dyn $crate::store::ToValue]
    };
}
