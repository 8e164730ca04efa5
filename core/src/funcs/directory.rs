//! Reference directories every form needs: countries and currencies, and the other names
//! integrations use for them. Our ids are ISO numeric codes (643 is Russia and the rouble); a
//! country or currency parameter also takes the ISO alpha code (`RU`, `RUB`, any case) and
//! another directory's id listed in `directory_alias` (BILLmanager's `country=182`,
//! `currency=126`). A number that is an id of ours is always ours; an alias that is an id of
//! ours is refused when it is added, so no number is read two ways (docs/directories.md).

use super::{COUNTRY, CURRENCY};
use crate::doc::Fields;
use crate::engine::Ctx;
use crate::error::{FuncError, FuncResult};
use crate::func::{Access, EditOps, FuncDecl, ObjectType, Param, Registry, Ty};
use crate::list::{FilterField, FilterOp, ListSpec};
use crate::params::Params;
use crate::store::{Connection, OptionalExtension, params};

pub const DIRECTORY_ALIAS: ObjectType = ObjectType {
    name: "directory.alias",
    table: "directory_alias",
    owner: None,
};

pub fn register(reg: &mut Registry) {
    let mut countries = ListSpec::new(
        "country c",
        "c.id",
        &[("id", "c.id"), ("iso2", "c.iso2"), ("name", "c.name")],
    );
    countries.filters = vec![
        FilterField::new("name", "c.name", FilterOp::Like),
        FilterField::new("iso2", "c.iso2", FilterOp::EqText),
    ];
    reg.add(FuncDecl::list(
        "country",
        "Countries",
        Access::PUBLIC,
        countries,
    ));

    let mut currencies = ListSpec::new(
        "currency c",
        "c.id",
        &[
            ("id", "c.id"),
            ("iso", "c.iso"),
            ("name", "c.name"),
            ("minor_units", "c.minor_units"),
            ("symbol", "c.symbol"),
            ("active", "CASE c.active WHEN 1 THEN 'on' ELSE 'off' END"),
        ],
    );
    currencies.filters = vec![
        FilterField::new("iso", "c.iso", FilterOp::EqText),
        FilterField::new("active", "c.active", FilterOp::EqInt),
    ];
    reg.add(FuncDecl::list(
        "currency",
        "Currencies",
        Access::ADMIN_USER,
        currencies,
    ));

    let mut aliases = ListSpec::new(
        "directory_alias d",
        "d.id",
        &[
            ("id", "d.id"),
            ("kind", "d.kind"),
            ("alias", "d.alias"),
            ("target", "d.target_id"),
            ("source", "d.source"),
        ],
    );
    aliases.filters = vec![FilterField::new("kind", "d.kind", FilterOp::EqText)];
    reg.add(FuncDecl::list(
        "directory.alias",
        "Other directories' ids of countries and currencies",
        Access::ADMIN,
        aliases,
    ));
    reg.add(
        FuncDecl::edit(
            "directory.alias.edit",
            "Directory id",
            Access::ADMIN,
            AliasEdit,
        )
        .object(DIRECTORY_ALIAS)
        .params(vec![
            Param::new("kind", Ty::Choice(&["country", "currency"])).required(),
            Param::new(
                "alias",
                Ty::Int {
                    min: 1,
                    max: 999_999_999,
                },
            )
            .required(),
            Param::new("target", Ty::Text(16)).required(),
            Param::new("source", Ty::Text(255)),
        ]),
    );
    reg.add(FuncDecl::group(
        "directory.alias.delete",
        "Delete",
        Access::ADMIN,
        DIRECTORY_ALIAS,
        |ctx, id, _| {
            ctx.db
                .prepare_cached("DELETE FROM directory_alias WHERE id = ?1")?
                .execute([id])?;
            ctx.history("directory.alias", id, "deleted")
        },
    ));
}

/// The directory a reference to `object` names, if it is a country or a currency.
fn kind_of(object: ObjectType) -> Option<&'static str> {
    if object == COUNTRY {
        Some("country")
    } else if object == CURRENCY {
        Some("currency")
    } else {
        None
    }
}

fn id_exists(conn: &Connection, kind: &str, id: i64) -> FuncResult<bool> {
    let sql = if kind == "country" {
        "SELECT EXISTS (SELECT 1 FROM country WHERE id = ?1)"
    } else {
        "SELECT EXISTS (SELECT 1 FROM currency WHERE id = ?1)"
    };
    Ok(conn.prepare_cached(sql)?.query_row([id], |r| r.get(0))?)
}

/// Our id of a country or currency given as our id, an ISO alpha code or an alias. `None`:
/// a number that is neither ours nor an alias (the parameter check answers that it is missing).
fn resolve_one(conn: &Connection, kind: &str, name: &str, value: &str) -> FuncResult<Option<i64>> {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_alphabetic()) {
        let (sql, len, what) = if kind == "country" {
            (
                "SELECT id FROM country WHERE iso2 = ?1",
                2,
                "an ISO 3166 alpha-2 country code",
            )
        } else {
            (
                "SELECT id FROM currency WHERE iso = ?1",
                3,
                "an ISO 4217 currency code",
            )
        };
        let found: Option<i64> = if value.len() == len {
            conn.prepare_cached(sql)?
                .query_row([value.to_ascii_uppercase()], |r| r.get(0))
                .optional()?
        } else {
            None
        };
        return found.map(Some).ok_or_else(|| {
            FuncError::value(
                name,
                value,
                format!("'{value}' is not {what} billhost knows"),
            )
        });
    }
    let Ok(id) = value.parse::<i64>() else {
        return Ok(None);
    };
    if id_exists(conn, kind, id)? {
        return Ok(Some(id));
    }
    Ok(conn
        .prepare_cached("SELECT target_id FROM directory_alias WHERE kind = ?1 AND alias = ?2")?
        .query_row(params![kind, id.to_string()], |r| r.get(0))
        .optional()?)
}

/// The parameters with every country and currency reference the func declares given as our
/// id; `None` when nothing needed rewriting.
pub fn resolve(conn: &Connection, decl: &FuncDecl, params: &Params) -> FuncResult<Option<Params>> {
    let mut out: Option<Params> = None;
    for p in &decl.params {
        let Ty::Ref(object) = p.ty else { continue };
        let Some(kind) = kind_of(object) else {
            continue;
        };
        let Some(value) = params.raw(&p.name).filter(|v| !v.is_empty()) else {
            continue;
        };
        if let Some(id) = resolve_one(conn, kind, &p.name, value)?
            && id.to_string() != value
        {
            out.get_or_insert_with(|| params.clone())
                .set(p.name.clone(), id.to_string());
        }
    }
    Ok(out)
}

/// A list filter's value for a country or currency column (`country`, `currency`,
/// `currency_base`, `currency_relate`) as our id, read like a parameter; other filters' values
/// as given.
pub fn resolve_filter(conn: &Connection, name: &str, value: &str) -> FuncResult<String> {
    let kind = match name {
        "country" => "country",
        "currency" | "currency_base" | "currency_relate" => "currency",
        _ => return Ok(value.to_string()),
    };
    Ok(resolve_one(conn, kind, name, value)?
        .map(|id| id.to_string())
        .unwrap_or_else(|| value.to_string()))
}

struct AliasEdit;

impl EditOps for AliasEdit {
    fn view(&self, ctx: &Ctx, elid: i64, _plid: Option<i64>) -> FuncResult<Fields> {
        super::row_fields(
            ctx,
            "SELECT kind, alias, target_id, source FROM directory_alias WHERE id = ?1",
            elid,
            &["kind", "alias", "target", "source"],
        )
    }

    fn blank(&self, _ctx: &Ctx, _plid: Option<i64>) -> FuncResult<Fields> {
        Ok(["kind", "alias", "target", "source"]
            .into_iter()
            .map(|k| (k.into(), String::new()))
            .collect())
    }

    fn create(&self, ctx: &Ctx, _plid: Option<i64>, p: &Params) -> FuncResult<i64> {
        let kind = p.required("kind")?;
        let alias = p.required("alias")?;
        let alias_id = crate::params::parse_id("alias", alias)?;
        if id_exists(ctx.db, kind, alias_id)? {
            return Err(FuncError::value(
                "alias",
                alias,
                format!(
                    "{alias} is the ISO numeric code of a {kind} of ours: it cannot name another"
                ),
            ));
        }
        let target_text = p.required("target")?;
        let target = match resolve_one(ctx.db, kind, "target", target_text)? {
            Some(id) if id_exists(ctx.db, kind, id)? => id,
            _ => {
                return Err(FuncError::value(
                    "target",
                    target_text,
                    format!("'{target_text}' is not a {kind} of ours"),
                ));
            }
        };
        let taken: Option<i64> = ctx
            .db
            .prepare_cached("SELECT id FROM directory_alias WHERE kind = ?1 AND alias = ?2")?
            .query_row(params![kind, alias_id.to_string()], |r| r.get(0))
            .optional()?;
        if let Some(id) = taken {
            return Err(FuncError::exists(
                "alias",
                alias,
                format!("The {kind} alias {alias} exists already ({id})"),
            ));
        }
        ctx.db
            .prepare_cached(
                "INSERT INTO directory_alias (kind, alias, target_id, source) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                kind,
                alias_id.to_string(),
                target,
                p.get("source").unwrap_or("")
            ])?;
        let id = ctx.db.last_insert_rowid()?;
        ctx.history(
            "directory.alias",
            id,
            format!("{kind} {alias_id} names {target}"),
        )?;
        Ok(id)
    }

    fn change(&self, _ctx: &Ctx, elid: i64, _plid: Option<i64>, _p: &Params) -> FuncResult<()> {
        Err(FuncError::value(
            "elid",
            elid.to_string(),
            "A directory alias is not changed: delete it and add the new one",
        ))
    }
}
