//! Crossing between Lua values and the engine's types: parameters, requests, documents.
//! Values cross as strings (money as its exact decimal text); a Lua float never becomes a
//! parameter or a field.

use super::money::Money;
use crate::doc::{Doc, Fields, ListDoc};
use crate::params::Params;
use mlua::{Lua, Table, Value};

/// A Lua value as wire text.
pub fn value_text(key: &str, v: &Value) -> mlua::Result<Option<String>> {
    Ok(match v {
        Value::Nil => None,
        Value::String(s) => Some(s.to_str()?.to_string()),
        Value::Integer(i) => Some(i.to_string()),
        Value::Boolean(b) => Some(if *b { "on" } else { "off" }.to_string()),
        Value::UserData(ud) => match ud.borrow::<Money>() {
            Ok(m) => Some(m.0.to_string()),
            Err(_) => {
                return Err(mlua::Error::runtime(format!(
                    "'{key}': a userdata cannot be a value"
                )));
            }
        },
        Value::Number(n) => {
            return Err(mlua::Error::runtime(format!(
                "'{key}' = {n} is a float; pass a string, an integer or billing.money"
            )));
        }
        other => {
            return Err(mlua::Error::runtime(format!(
                "'{key}': a {} cannot be a value",
                other.type_name()
            )));
        }
    })
}

/// The string-keyed entries of a table, sorted by key (Lua tables have no order).
fn sorted_fields(t: &Table) -> mlua::Result<Fields> {
    let mut fields = Fields::new();
    for pair in t.pairs::<Value, Value>() {
        let (k, v) = pair?;
        let Value::String(k) = k else { continue };
        let key = k.to_str()?.to_string();
        if let Some(text) = value_text(&key, &v)? {
            fields.push((key.into(), text));
        }
    }
    sort_fields(&mut fields);
    Ok(fields)
}

/// Key order, `id` first.
fn sort_fields(fields: &mut Fields) {
    fields.sort_by(|a, b| (a.0 != "id", &a.0).cmp(&(b.0 != "id", &b.0)));
}

pub fn table_to_params(t: Option<Table>) -> mlua::Result<Params> {
    let Some(t) = t else { return Ok(Params::new()) };
    Ok(Params::from_pairs(sorted_fields(&t)?))
}

/// One table built in one pass (`create_table_from` holds the state once for every entry).
fn fields_table(lua: &Lua, fields: &Fields) -> mlua::Result<Table> {
    lua.create_table_from(fields.iter().map(|(k, v)| (k.as_ref(), v.as_str())))
}

/// A document as a Lua table: a list is `{ elem = {...}, p_elems = N, ... }`, a form its fields,
/// an ok `{ ok = true, ... }`, a session `{ auth = SID, level = L }`, a file
/// `{ name = .., mime = .., size = N }` (its bytes stay out of Lua).
pub fn doc_to_lua(lua: &Lua, doc: &Doc) -> mlua::Result<Table> {
    match doc {
        Doc::List(list) => {
            let t = lua.create_table()?;
            let elems = lua.create_table_with_capacity(list.elems.len(), 0)?;
            for (i, e) in list.elems.iter().enumerate() {
                elems.raw_set(i + 1, fields_table(lua, e)?)?;
            }
            t.raw_set("elem", elems)?;
            t.raw_set("p_num", list.p_num)?;
            t.raw_set("p_cnt", list.p_cnt)?;
            t.raw_set("p_elems", list.p_elems)?;
            Ok(t)
        }
        Doc::Form(f) => fields_table(lua, f),
        Doc::Ok(f) => {
            let t = fields_table(lua, f)?;
            t.raw_set("ok", true)?;
            Ok(t)
        }
        Doc::Auth { id, level } => {
            let t = lua.create_table()?;
            t.raw_set("auth", id.as_str())?;
            t.raw_set("level", level.as_str())?;
            Ok(t)
        }
        Doc::File(file) => {
            let t = lua.create_table()?;
            t.raw_set("name", file.name.as_str())?;
            t.raw_set("mime", file.mime.as_str())?;
            t.raw_set("size", file.bytes.len())?;
            Ok(t)
        }
        Doc::Error(e) => Err(mlua::Error::external(e.clone())),
    }
}

/// Each key and value of `changes`, a `{key, value, ...}` sequence, with the value as wire text
/// (a `nil` value is passed over).
fn each_change(changes: &Table, mut f: impl FnMut(&str, String)) -> mlua::Result<()> {
    for i in (1..changes.raw_len()).step_by(2) {
        let key: mlua::LuaString = changes.raw_get(i)?;
        let value: Value = changes.raw_get(i + 1)?;
        let key = key.to_str()?;
        if let Some(text) = value_text(&key, &value)? {
            f(&key, text);
        }
    }
    Ok(())
}

/// Applies what `before` hooks did to `req.params`: `set`, the `{key, value, ...}` sequence of
/// the keys they gave a new value (in place; new keys at the end), and `gone`, the keys they
/// removed.
pub fn edit_params(params: &mut Params, set: &Table, gone: &Table) -> mlua::Result<()> {
    each_change(set, |key, text| params.set(key, text))?;
    for key in gone.sequence_values::<mlua::LuaString>() {
        params.remove(&key?.to_str()?);
    }
    Ok(())
}

/// Keeps what `after` hooks added to or changed in a form or ok result, from `changes`, the
/// `{key, value, ...}` sequence of the keys whose values differ from the document's: changed
/// fields take their new value in place, new fields follow in key order (`id` first).
pub fn merge_changes(doc: Doc, changes: &Table) -> mlua::Result<Doc> {
    let merge = |mut fields: Fields| -> mlua::Result<Fields> {
        let mut added = Fields::new();
        each_change(changes, |key, text| {
            match fields.iter().position(|(fk, _)| *fk == *key) {
                Some(i) => fields[i].1 = text,
                None => added.push((key.to_string().into(), text)),
            }
        })?;
        sort_fields(&mut added);
        fields.extend(added);
        Ok(fields)
    };
    Ok(match doc {
        Doc::Form(f) => Doc::Form(merge(f)?),
        Doc::Ok(f) => Doc::Ok(merge(f)?),
        other => other,
    })
}

/// What a script func returned: `nil` is ok; a table with `elem` a list; with `ok = true` an
/// ok with the other fields; any other table a form.
pub fn lua_to_doc(_lua: &Lua, ret: Value) -> mlua::Result<Doc> {
    let t = match ret {
        Value::Nil => return Ok(Doc::ok()),
        Value::Table(t) => t,
        other => {
            return Err(mlua::Error::runtime(format!(
                "a script func returns nil or a table, not a {}",
                other.type_name()
            )));
        }
    };
    if let Value::Table(elems) = t.raw_get::<Value>("elem")? {
        let mut list = Vec::new();
        for e in elems.sequence_values::<Table>() {
            list.push(sorted_fields(&e?)?);
        }
        let n = list.len() as u64;
        return Ok(Doc::List(ListDoc {
            elems: list,
            p_num: 1,
            p_cnt: n,
            p_elems: n,
        }));
    }
    let ok = matches!(t.raw_get::<Value>("ok")?, Value::Boolean(true));
    let fields: Fields = sorted_fields(&t)?
        .into_iter()
        .filter(|(k, _)| k != "ok")
        .collect();
    Ok(if ok {
        Doc::Ok(fields)
    } else {
        Doc::Form(fields)
    })
}
