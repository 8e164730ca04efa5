//! `billing.money`: an exact decimal userdata for scripts. Arithmetic and comparisons accept
//! another money value, a Lua integer or a decimal string; a Lua float is refused, so that no
//! amount ever passes through binary floating point.

use crate::money as exact;
use mlua::{FromLua, Lua, MetaMethod, UserData, UserDataMethods, Value};
use rust_decimal::Decimal;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money(pub Decimal);

/// Reads a money operand: money, integer or decimal string.
pub fn to_decimal(v: &Value) -> mlua::Result<Decimal> {
    match v {
        Value::UserData(ud) => ud
            .borrow::<Money>()
            .map(|m| m.0)
            .map_err(|_| mlua::Error::runtime("expected a money value")),
        Value::Integer(i) => Ok(Decimal::from(*i)),
        Value::String(s) => {
            let text = s.to_str()?.to_string();
            exact::parse_decimal(text.trim(), "money").map_err(|e| mlua::Error::runtime(e.msg))
        }
        Value::Number(n) => Err(mlua::Error::runtime(format!(
            "{n} is a float; money takes integers, decimal strings or money values (write billing.money(\"{n}\"))"
        ))),
        other => Err(mlua::Error::runtime(format!(
            "{} is not money",
            other.type_name()
        ))),
    }
}

impl FromLua for Money {
    fn from_lua(value: Value, _lua: &Lua) -> mlua::Result<Self> {
        to_decimal(&value).map(Money)
    }
}

fn binary(
    methods: &mut impl UserDataMethods<Money>,
    meta: MetaMethod,
    op: fn(Decimal, Decimal) -> Option<Decimal>,
    what: &'static str,
) {
    methods.add_meta_function(meta, move |_, (a, b): (Value, Value)| {
        let (a, b) = (to_decimal(&a)?, to_decimal(&b)?);
        op(a, b).map(Money).ok_or_else(|| {
            mlua::Error::runtime(format!("money {what} overflowed or divided by zero"))
        })
    });
}

impl UserData for Money {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        binary(
            methods,
            MetaMethod::Add,
            |a, b| a.checked_add(b),
            "addition",
        );
        binary(
            methods,
            MetaMethod::Sub,
            |a, b| a.checked_sub(b),
            "subtraction",
        );
        binary(
            methods,
            MetaMethod::Mul,
            |a, b| a.checked_mul(b),
            "multiplication",
        );
        binary(
            methods,
            MetaMethod::Div,
            |a, b| a.checked_div(b),
            "division",
        );
        methods.add_meta_method(MetaMethod::Unm, |_, m, ()| Ok(Money(-m.0)));
        methods.add_meta_function(MetaMethod::Eq, |_, (a, b): (Value, Value)| {
            Ok(to_decimal(&a)? == to_decimal(&b)?)
        });
        methods.add_meta_function(MetaMethod::Lt, |_, (a, b): (Value, Value)| {
            Ok(to_decimal(&a)? < to_decimal(&b)?)
        });
        methods.add_meta_function(MetaMethod::Le, |_, (a, b): (Value, Value)| {
            Ok(to_decimal(&a)? <= to_decimal(&b)?)
        });
        methods.add_meta_method(MetaMethod::ToString, |_, m, ()| Ok(m.0.to_string()));
        methods.add_meta_function(MetaMethod::Concat, |lua, (a, b): (Value, Value)| {
            let text = |v: &Value| -> mlua::Result<String> {
                match v {
                    Value::UserData(ud) => Ok(ud.borrow::<Money>()?.0.to_string()),
                    other => Ok(lua
                        .coerce_string(other.clone())?
                        .map(|s| s.to_string_lossy())
                        .unwrap_or_default()),
                }
            };
            Ok(format!("{}{}", text(&a)?, text(&b)?))
        });
        methods.add_method("round", |_, m, places: Option<u32>| {
            Ok(Money(exact::round(m.0, places.unwrap_or(2).min(28))))
        });
        methods.add_method("eq", |_, m, other: Value| Ok(m.0 == to_decimal(&other)?));
        methods.add_method("tostring", |_, m, ()| Ok(m.0.to_string()));
        methods.add_method("is_negative", |_, m, ()| {
            Ok(m.0.is_sign_negative() && !m.0.is_zero())
        });
        methods.add_method("abs", |_, m, ()| Ok(Money(m.0.abs())));
    }
}
