//! Payment methods (`paymethod`, `paymethod.edit`) and currencies (`currency.edit`; the
//! `currency` list is in `directory`): what an operator sets up before taking payments.
//!
//! A method has a provider, a currency, a module (`manual` until gateway plugins come), optional
//! minimum and maximum amounts and a commission (`commission` percent plus `commission_fixed`,
//! both in the method's currency). A currency's minor units are fixed once any subaccount,
//! method or payment uses it (every stored amount depends on them).

use super::{CURRENCY, PAYMETHOD, PROJECT, on_off, set_column};
use crate::doc::Fields;
use crate::engine::Ctx;
use crate::error::{FuncError, FuncResult};
use crate::func::{Access, EditOps, FuncDecl, Param, Registry, Ty};
use crate::ledger;
use crate::list::{FilterField, FilterOp, ListSpec};
use crate::money;
use crate::params::{Params, parse_id};
use crate::store::{OptionalExtension, params};
use rust_decimal::Decimal;

pub fn register(reg: &mut Registry) {
    // What `payment.add` offers: the active methods, a client only those of its provider (or of
    // none), with nothing of their settings. The owner condition is `expr = ?2` (the client's
    // id is the first value `list::run` binds after the parent's `?1`).
    let mut offered = ListSpec::new(
        "paymethod m",
        "m.id",
        &[
            ("id", "m.id"),
            ("name", "m.name"),
            (
                "currency",
                "(SELECT iso FROM currency WHERE id = m.currency_id)",
            ),
            (
                "minamount",
                "money(m.minamount, (SELECT minor_units FROM currency WHERE id = m.currency_id))",
            ),
            (
                "maxamount",
                "money(m.maxamount, (SELECT minor_units FROM currency WHERE id = m.currency_id))",
            ),
        ],
    );
    offered.base_where = Some("m.active = 1");
    offered.owner = Some(
        "(SELECT a.id FROM account a WHERE a.id = ?2
          AND (m.project_id IS NULL OR m.project_id = a.project_id))",
    );
    reg.add(
        FuncDecl::list(
            "payment.add.methods",
            "Payment methods offered",
            Access::ADMIN_USER,
            offered,
        )
        .panel(crate::func::PanelHints {
            no_menu: true,
            ..Default::default()
        }),
    );

    let mut methods = ListSpec::new(
        "paymethod m",
        "m.id",
        &[
            ("id", "m.id"),
            ("name", "m.name"),
            (
                "project",
                "(SELECT name FROM project WHERE id = m.project_id)",
            ),
            (
                "currency",
                "(SELECT iso FROM currency WHERE id = m.currency_id)",
            ),
            ("module", "m.module"),
            (
                "minamount",
                "money(m.minamount, (SELECT minor_units FROM currency WHERE id = m.currency_id))",
            ),
            (
                "maxamount",
                "money(m.maxamount, (SELECT minor_units FROM currency WHERE id = m.currency_id))",
            ),
            ("commission", "m.commission_percent"),
            (
                "commission_fixed",
                "money(m.commission_fixed, (SELECT minor_units FROM currency WHERE id = m.currency_id))",
            ),
            ("active", "CASE m.active WHEN 1 THEN 'on' ELSE 'off' END"),
        ],
    );
    methods.filters = vec![
        FilterField::new("name", "m.name", FilterOp::Like),
        FilterField::new("project", "m.project_id", FilterOp::EqInt),
        FilterField::new("currency", "m.currency_id", FilterOp::EqInt),
        FilterField::new("active", "m.active", FilterOp::EqInt),
    ];
    reg.add(FuncDecl::list(
        "paymethod",
        "Payment methods",
        Access::ADMIN,
        methods,
    ));
    reg.add(
        FuncDecl::edit(
            "paymethod.edit",
            "Payment method",
            Access::ADMIN,
            PaymethodEdit,
        )
        .object(PAYMETHOD)
        .params(paymethod_params()),
    );
    reg.add(
        FuncDecl::edit("currency.edit", "Currency", Access::ADMIN, CurrencyEdit)
            .object(CURRENCY)
            .params(vec![
                Param::new("iso", Ty::Text(3)).required(),
                Param::new("name", Ty::Text(255)).required(),
                Param::new("minor_units", Ty::Int { min: 0, max: 6 }).required(),
                Param::new("symbol", Ty::Text(8)),
                Param::new("active", Ty::Flag),
                Param::new("code", Ty::Int { min: 1, max: 999 }),
            ]),
    );
}

fn paymethod_params() -> Vec<Param> {
    vec![
        Param::new("name", Ty::Text(255)).required(),
        Param::new("currency", Ty::Ref(CURRENCY)).required(),
        Param::new("project", Ty::Ref(PROJECT)),
        Param::new("module", Ty::Choice(&["manual"])),
        Param::new("minamount", Ty::Decimal),
        Param::new("maxamount", Ty::Decimal),
        Param::new("commission", Ty::Decimal),
        Param::new("commission_fixed", Ty::Decimal),
        Param::new("active", Ty::Flag),
    ]
}

struct PaymethodEdit;

/// An optional non-negative amount in minor units; empty clears it.
fn limit(p: &Params, name: &str, scale: u32) -> FuncResult<Option<Option<i64>>> {
    let Some(v) = p.raw(name) else {
        return Ok(None);
    };
    if v.is_empty() {
        return Ok(Some(None));
    }
    let m = money::parse_minor(v, scale, name)?;
    if m < 0 {
        return Err(FuncError::value(name, v, "The amount cannot be negative"));
    }
    Ok(Some(Some(m)))
}

fn apply_paymethod(ctx: &Ctx, id: i64, p: &Params) -> FuncResult<Vec<&'static str>> {
    let mut changed = Vec::new();
    let used: i64 = ctx
        .db
        .prepare_cached("SELECT count(*) FROM payment WHERE paymethod_id = ?1")?
        .query_row([id], |r| r.get(0))?;
    for (name, col) in [("currency", "currency_id"), ("project", "project_id")] {
        if let Some(v) = p.get(name) {
            let v = parse_id(name, v)?;
            let current: i64 = ctx
                .db
                .prepare_cached(&format!("SELECT {col} FROM paymethod WHERE id = ?1"))?
                .query_row([id], |r| r.get(0))?;
            if current != v && used > 0 {
                return Err(FuncError::value(
                    name,
                    v.to_string(),
                    "The method has payments; its provider and currency cannot change",
                ));
            }
            if set_column(ctx, "paymethod", col, id, &v)? {
                changed.push(name);
            }
        }
    }
    let pm = ledger::paymethod(ctx.db, id)?;
    let scale = pm.currency.scale;
    for col in ["name", "module"] {
        if let Some(v) = p.get(col)
            && set_column(ctx, "paymethod", col, id, &v)?
        {
            changed.push(col);
        }
    }
    for col in ["minamount", "maxamount"] {
        if let Some(v) = limit(p, col, scale)?
            && set_column(ctx, "paymethod", col, id, &v)?
        {
            changed.push(col);
        }
    }
    if let Some(v) = p.get("commission") {
        let pct = money::parse_decimal(v, "commission")?;
        if pct.is_sign_negative() || pct > Decimal::ONE_HUNDRED {
            return Err(FuncError::value(
                "commission",
                v,
                "The commission is a percentage from 0 to 100",
            ));
        }
        if set_column(
            ctx,
            "paymethod",
            "commission_percent",
            id,
            &pct.normalize().to_string(),
        )? {
            changed.push("commission");
        }
    }
    if let Some(Some(v)) = limit(p, "commission_fixed", scale)?
        && set_column(ctx, "paymethod", "commission_fixed", id, &v)?
    {
        changed.push("commission_fixed");
    }
    if let Some(f) = p.flag("active")
        && set_column(ctx, "paymethod", "active", id, &f)?
    {
        changed.push("active");
    }
    let (min, max): (Option<i64>, Option<i64>) = ctx
        .db
        .prepare_cached("SELECT minamount, maxamount FROM paymethod WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    if let (Some(a), Some(b)) = (min, max)
        && a > b
    {
        return Err(FuncError::value(
            "maxamount",
            money::format_minor(b, scale),
            "The maximum is below the minimum",
        ));
    }
    Ok(changed)
}

impl EditOps for PaymethodEdit {
    fn view(&self, ctx: &Ctx, elid: i64, _plid: Option<i64>) -> FuncResult<Fields> {
        let pm = ledger::paymethod(ctx.db, elid)?;
        let (name, module): (String, String) = ctx
            .db
            .prepare_cached("SELECT name, module FROM paymethod WHERE id = ?1")?
            .query_row([elid], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let m = |v: Option<i64>| {
            v.map(|x| money::format_minor(x, pm.currency.scale))
                .unwrap_or_default()
        };
        Ok(vec![
            ("name".into(), name),
            ("currency".into(), pm.currency.id.to_string()),
            ("project".into(), pm.project.to_string()),
            ("module".into(), module),
            ("minamount".into(), m(pm.minamount)),
            ("maxamount".into(), m(pm.maxamount)),
            (
                "commission".into(),
                pm.commission_percent.normalize().to_string(),
            ),
            ("commission_fixed".into(), m(Some(pm.commission_fixed))),
            ("active".into(), on_off(pm.active)),
        ])
    }

    fn blank(&self, _ctx: &Ctx, _plid: Option<i64>) -> FuncResult<Fields> {
        Ok(paymethod_params()
            .into_iter()
            .map(|p| {
                let v = match p.name.as_str() {
                    "project" => "1",
                    "module" => "manual",
                    "commission" | "commission_fixed" => "0",
                    "active" => "on",
                    _ => "",
                };
                (p.name.into(), v.to_string())
            })
            .collect())
    }

    fn create(&self, ctx: &Ctx, _plid: Option<i64>, p: &Params) -> FuncResult<i64> {
        let name = p.required("name")?;
        let currency = parse_id("currency", p.required("currency")?)?;
        let project = match p.get("project") {
            Some(v) => parse_id("project", v)?,
            None => 1,
        };
        ctx.db
            .prepare_cached(
                "INSERT INTO paymethod (name, project_id, currency_id, created) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![name, project, currency, ctx.now])?;
        let id = ctx.db.last_insert_rowid()?;
        apply_paymethod(ctx, id, p)?;
        ctx.history(
            "paymethod",
            id,
            format!("payment method '{name}' created for provider {project}"),
        )?;
        Ok(id)
    }

    fn change(&self, ctx: &Ctx, elid: i64, _plid: Option<i64>, p: &Params) -> FuncResult<()> {
        let changed = apply_paymethod(ctx, elid, p)?;
        if !changed.is_empty() {
            ctx.history(
                "paymethod",
                elid,
                format!("changed: {}", changed.join(", ")),
            )?;
        }
        Ok(())
    }
}

struct CurrencyEdit;

fn iso_code(v: &str) -> FuncResult<String> {
    if v.len() != 3 || !v.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(FuncError::value(
            "iso",
            v,
            "An ISO 4217 code is three letters",
        ));
    }
    Ok(v.to_ascii_uppercase())
}

fn ensure_iso_free(ctx: &Ctx, iso: &str, except: i64) -> FuncResult<()> {
    let taken: Option<i64> = ctx
        .db
        .prepare_cached("SELECT id FROM currency WHERE iso = ?1 AND id <> ?2")?
        .query_row(params![iso, except], |r| r.get(0))
        .optional()?;
    match taken {
        Some(id) => Err(FuncError::exists(
            "iso",
            iso,
            format!("Currency {id} already has the code {iso}"),
        )),
        None => Ok(()),
    }
}

fn currency_in_use(ctx: &Ctx, id: i64) -> FuncResult<bool> {
    Ok(ctx
        .db
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM subaccount WHERE currency_id = ?1)
                 OR EXISTS (SELECT 1 FROM paymethod WHERE currency_id = ?1)
                 OR EXISTS (SELECT 1 FROM payment WHERE currency_id = ?1)",
        )?
        .query_row([id], |r| r.get(0))?)
}

impl EditOps for CurrencyEdit {
    fn view(&self, ctx: &Ctx, elid: i64, _plid: Option<i64>) -> FuncResult<Fields> {
        Ok(ctx
            .db
            .prepare_cached(
                "SELECT iso, name, minor_units, symbol, active FROM currency WHERE id = ?1",
            )?
            .query_row([elid], |r| {
                Ok(vec![
                    ("iso".into(), r.get::<String>(0)?),
                    ("name".into(), r.get::<String>(1)?),
                    ("minor_units".into(), r.get::<i64>(2)?.to_string()),
                    ("symbol".into(), r.get::<String>(3)?),
                    ("active".into(), on_off(r.get(4)?)),
                    ("code".into(), elid.to_string()),
                ])
            })?)
    }

    fn blank(&self, _ctx: &Ctx, _plid: Option<i64>) -> FuncResult<Fields> {
        Ok(vec![
            ("iso".into(), String::new()),
            ("name".into(), String::new()),
            ("minor_units".into(), "2".into()),
            ("symbol".into(), String::new()),
            ("active".into(), "on".into()),
            ("code".into(), String::new()),
        ])
    }

    fn create(&self, ctx: &Ctx, _plid: Option<i64>, p: &Params) -> FuncResult<i64> {
        let iso = iso_code(p.required("iso")?)?;
        ensure_iso_free(ctx, &iso, 0)?;
        let code = p.int("code")?;
        if let Some(c) = code {
            let taken: bool = ctx
                .db
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM currency WHERE id = ?1)")?
                .query_row([c], |r| r.get(0))?;
            if taken {
                return Err(FuncError::exists(
                    "code",
                    c.to_string(),
                    format!("A currency with the code {c} exists"),
                ));
            }
        }
        let minor: i64 = p.int("minor_units")?.unwrap_or(2);
        // Without a code the database picks the id (leaving the column out: PostgreSQL does
        // not take an explicit NULL as "pick one").
        let sql = if code.is_some() {
            "INSERT INTO currency (id, iso, name, minor_units, symbol, active) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             RETURNING id"
        } else {
            "INSERT INTO currency (iso, name, minor_units, symbol, active) VALUES (?2, ?3, ?4, ?5, ?6)
             RETURNING id"
        };
        let id: i64 = ctx.db.prepare_cached(sql)?.query_row(
            params![
                code,
                iso,
                p.required("name")?,
                minor,
                p.get("symbol").unwrap_or(""),
                p.flag("active").unwrap_or(true)
            ],
            |r| r.get(0),
        )?;
        ctx.history("currency", id, format!("currency {iso} created"))?;
        Ok(id)
    }

    fn change(&self, ctx: &Ctx, elid: i64, _plid: Option<i64>, p: &Params) -> FuncResult<()> {
        let mut changed = Vec::new();
        if let Some(v) = p.get("iso") {
            let iso = iso_code(v)?;
            ensure_iso_free(ctx, &iso, elid)?;
            if set_column(ctx, "currency", "iso", elid, &iso)? {
                changed.push("iso");
            }
        }
        if let Some(code) = p.int("code")?
            && code != elid
        {
            return Err(FuncError::value(
                "code",
                code.to_string(),
                "The numeric code of a currency cannot change",
            ));
        }
        if let Some(m) = p.int("minor_units")? {
            let current: i64 = ctx
                .db
                .prepare_cached("SELECT minor_units FROM currency WHERE id = ?1")?
                .query_row([elid], |r| r.get(0))?;
            if m != current {
                if currency_in_use(ctx, elid)? {
                    return Err(FuncError::value(
                        "minor_units",
                        m.to_string(),
                        "The currency has amounts stored; its minor units cannot change",
                    ));
                }
                set_column(ctx, "currency", "minor_units", elid, &m)?;
                changed.push("minor_units");
            }
        }
        for col in ["name", "symbol"] {
            if let Some(v) = p.raw(col)
                && (col == "symbol" || !v.is_empty())
                && set_column(ctx, "currency", col, elid, &v)?
            {
                changed.push(col);
            }
        }
        if let Some(f) = p.flag("active")
            && set_column(ctx, "currency", "active", elid, &f)?
        {
            changed.push("active");
        }
        if !changed.is_empty() {
            ctx.history("currency", elid, format!("changed: {}", changed.join(", ")))?;
        }
        Ok(())
    }
}
