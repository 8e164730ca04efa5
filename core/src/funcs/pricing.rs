//! What prices and converts amounts: discounts (`account.discount` with `.add`, `.edit`,
//! `.delete`), currency rates (`account.currencyrate` with `.edit`, `.delete`) and tax rules
//! (`account.taxrule` with `.edit`, `.delete`). With `plid` (a client) discounts and rates are
//! that client's own; without, they are provider-wide (promotions, provider rates). Tax rules are
//! always provider-wide. The rules that use them are in `ledger`.

use super::{
    ACCOUNT, COUNTRY, CURRENCY, CURRENCYRATE, DISCOUNT, PROJECT, TAXRULE, row_fields, set_column,
};
use crate::doc::{Doc, Fields};
use crate::engine::Ctx;
use crate::error::{FuncError, FuncResult};
use crate::func::{Access, ActionMode, EditOps, FuncDecl, Param, Registry, Ty};
use crate::list::{FilterField, FilterOp, ListSpec};
use crate::money;
use crate::params::{Params, parse_id};
use crate::store::params;
use rust_decimal::Decimal;

const ACTIONTYPES: &[&str] = &["any", "open", "prolong", "commission"];

pub fn register(reg: &mut Registry) {
    let mut discounts = ListSpec::new(
        "discount d",
        "d.id",
        &[
            ("id", "d.id"),
            ("name", "d.name"),
            ("actiontype", "d.actiontype"),
            (
                "project",
                "(SELECT name FROM project WHERE id = d.project_id)",
            ),
            ("discount_type", "d.type"),
            ("period", "d.period"),
            ("percentage", "d.percentage"),
            ("priority", "d.priority"),
            ("account", "d.account_id"),
            ("fromdate", "d.fromdate"),
            ("todate", "d.todate"),
        ],
    );
    discounts.base_where =
        Some("d.deleted = 0 AND (?1 IS NULL OR d.account_id IS NULL OR d.account_id = ?1)");
    discounts.filters = vec![
        FilterField::new("name", "d.name", FilterOp::Like),
        FilterField::new("project", "d.project_id", FilterOp::EqInt),
    ];
    reg.add(
        FuncDecl::list("account.discount", "Discounts", Access::ADMIN, discounts)
            .parent(ACCOUNT, false),
    );
    reg.add(
        FuncDecl::action(
            "account.discount.add",
            "Add",
            Access::ADMIN,
            ActionMode::FormThenWrite,
            |ctx, p| {
                let plid = p.get("plid").map(|v| parse_id("plid", v)).transpose()?;
                DiscountEdit.create(ctx, plid, p).map(Doc::created)
            },
        )
        .parent(ACCOUNT, false)
        .params(discount_params()),
    );
    reg.add(
        FuncDecl::edit(
            "account.discount.edit",
            "Edit the selected discount",
            Access::ADMIN,
            DiscountEdit,
        )
        .object(DISCOUNT)
        .parent(ACCOUNT, false)
        .params(discount_params()),
    );
    reg.add(FuncDecl::group(
        "account.discount.delete",
        "Delete",
        Access::ADMIN,
        DISCOUNT,
        |ctx, id, _| {
            // Expenses keep naming the discount they got: a used one is marked deleted.
            let used: i64 = ctx
                .db
                .prepare_cached("SELECT count(*) FROM expense WHERE discount_id = ?1")?
                .query_row([id], |r| r.get(0))?;
            if used > 0 {
                if !set_column(ctx, "discount", "deleted", id, &1)? {
                    return Err(FuncError::value(
                        "elid",
                        id.to_string(),
                        format!("The discount {id} is already deleted"),
                    ));
                }
                return ctx.history(
                    "discount",
                    id,
                    "deleted (kept for the expenses it applied to)",
                );
            }
            ctx.db
                .prepare_cached("DELETE FROM discount WHERE id = ?1")?
                .execute([id])?;
            ctx.history("discount", id, "deleted")
        },
    ));

    let mut rates = ListSpec::new(
        "currencyrate r",
        "r.id",
        &[
            ("id", "r.id"),
            (
                "currency_base",
                "(SELECT iso FROM currency WHERE id = r.currency_base)",
            ),
            (
                "currency_relate",
                "(SELECT iso FROM currency WHERE id = r.currency_relate)",
            ),
            ("rate", "r.rate"),
            ("amount", "r.amount"),
            ("ratedate", "substr(r.ratedate, 1, 10)"),
            ("account", "r.account_id"),
        ],
    );
    rates.base_where = Some("((?1 IS NULL AND r.account_id IS NULL) OR r.account_id = ?1)");
    rates.descending = true;
    rates.filters = vec![
        FilterField::new("currency_base", "r.currency_base", FilterOp::EqInt),
        FilterField::new("currency_relate", "r.currency_relate", FilterOp::EqInt),
        FilterField::new("ratedate_from", "r.ratedate", FilterOp::From),
        FilterField::new("ratedate_to", "r.ratedate", FilterOp::To),
    ];
    reg.add(
        FuncDecl::list(
            "account.currencyrate",
            "Currency rate",
            Access::ADMIN,
            rates,
        )
        .parent(ACCOUNT, false),
    );
    reg.add(
        FuncDecl::edit(
            "account.currencyrate.edit",
            "Currency rate",
            Access::ADMIN,
            RateEdit,
        )
        .object(CURRENCYRATE)
        .parent(ACCOUNT, false)
        .params(vec![
            Param::new("currency_base", Ty::Ref(CURRENCY)).required(),
            Param::new("currency_relate", Ty::Ref(CURRENCY)).required(),
            Param::new("rate", Ty::Decimal).required(),
            Param::new("amount", Ty::Decimal),
            Param::new("ratedate", Ty::Date),
        ]),
    );
    reg.add(FuncDecl::group(
        "account.currencyrate.delete",
        "Delete",
        Access::ADMIN,
        CURRENCYRATE,
        |ctx, id, _| {
            // Payments store the rate they were converted with; deleting a rate changes none.
            ctx.db
                .prepare_cached("DELETE FROM currencyrate WHERE id = ?1")?
                .execute([id])?;
            ctx.history("currencyrate", id, "deleted")
        },
    ));

    let mut taxrules = ListSpec::new(
        "taxrule t",
        "t.id",
        &[
            ("id", "t.id"),
            ("type", "t.type"),
            (
                "project",
                "(SELECT name FROM project WHERE id = t.project_id)",
            ),
            ("company", "t.company"),
            (
                "country",
                "coalesce((SELECT name FROM country WHERE id = t.country_id), '')",
            ),
            ("taxrate", "t.taxrate"),
            (
                "itemtype",
                "CASE t.specialitemtype WHEN 1 THEN t.itemtype ELSE '' END",
            ),
        ],
    );
    taxrules.filters = vec![
        FilterField::new("project", "t.project_id", FilterOp::EqInt),
        FilterField::new("country", "t.country_id", FilterOp::EqInt),
    ];
    reg.add(
        FuncDecl::list("account.taxrule", "Tax rates", Access::ADMIN, taxrules)
            .parent(ACCOUNT, false),
    );
    reg.add(
        FuncDecl::edit(
            "account.taxrule.edit",
            "Special rule",
            Access::ADMIN,
            TaxruleEdit,
        )
        .object(TAXRULE)
        .parent(ACCOUNT, false)
        .params(vec![
            Param::new("project", Ty::Ref(PROJECT)),
            Param::new("taxrate", Ty::Decimal).required(),
            Param::new("country", Ty::Ref(COUNTRY)),
            Param::new("company", Ty::Text(255)),
            Param::new("type", Ty::Choice(&["included"])),
            Param::new("specialitemtype", Ty::Flag),
            Param::new("itemtype", Ty::Text(255)),
        ]),
    );
    reg.add(FuncDecl::group(
        "account.taxrule.delete",
        "Delete the selected rule",
        Access::ADMIN,
        TAXRULE,
        |ctx, id, _| {
            // Expenses store their tax rate and amount; deleting a rule changes none.
            ctx.db
                .prepare_cached("DELETE FROM taxrule WHERE id = ?1")?
                .execute([id])?;
            ctx.history("taxrule", id, "deleted")
        },
    ));
}

/// A percentage from 0 to 100, canonical.
fn percentage(name: &str, text: &str) -> FuncResult<String> {
    let v = money::parse_decimal(text, name)?;
    if v.is_sign_negative() || v > Decimal::ONE_HUNDRED {
        return Err(FuncError::value(
            name,
            text,
            "The value is a percentage from 0 to 100",
        ));
    }
    Ok(v.normalize().to_string())
}

/// A positive decimal, canonical.
fn positive(name: &str, text: &str) -> FuncResult<String> {
    let v = money::parse_decimal(text, name)?;
    if v <= Decimal::ZERO {
        return Err(FuncError::value(name, text, "The value must be positive"));
    }
    Ok(v.normalize().to_string())
}

fn discount_params() -> Vec<Param> {
    vec![
        Param::new("name", Ty::Text(255)).required(),
        Param::new("project", Ty::Ref(PROJECT)),
        Param::new("fromdate", Ty::Date),
        Param::new("todate", Ty::Date),
        Param::new("type", Ty::Choice(&["percent"])),
        Param::new("percentage", Ty::Decimal).required(),
        Param::new(
            "priority",
            Ty::Int {
                min: -1_000_000,
                max: 1_000_000,
            },
        ),
        Param::new("actiontype", Ty::Choice(ACTIONTYPES)),
        Param::new("period", Ty::Text(255)),
        Param::new("itemtype", Ty::Text(64)),
        Param::new("note", Ty::LongText(4000)),
    ]
}

struct DiscountEdit;

fn apply_discount(ctx: &Ctx, id: i64, p: &Params) -> FuncResult<Vec<&'static str>> {
    let mut changed = Vec::new();
    for col in [
        "name",
        "type",
        "actiontype",
        "period",
        "itemtype",
        "note",
        "fromdate",
        "todate",
    ] {
        if let Some(v) = p.raw(col) {
            let value: Option<&str> = match (col, v.is_empty()) {
                ("fromdate" | "todate", true) => None,
                _ => Some(v),
            };
            if value.is_none() && !matches!(col, "fromdate" | "todate") {
                continue;
            }
            if set_column(ctx, "discount", col, id, &value)? {
                changed.push(col);
            }
        }
    }
    if let Some(v) = p.get("percentage")
        && set_column(
            ctx,
            "discount",
            "percentage",
            id,
            &percentage("percentage", v)?,
        )?
    {
        changed.push("percentage");
    }
    if let Some(v) = p.int("priority")?
        && set_column(ctx, "discount", "priority", id, &v)?
    {
        changed.push("priority");
    }
    if let Some(v) = p.get("project")
        && set_column(ctx, "discount", "project_id", id, &parse_id("project", v)?)?
    {
        changed.push("project");
    }
    let (from, to): (Option<String>, Option<String>) = ctx
        .db
        .prepare_cached("SELECT fromdate, todate FROM discount WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    if let (Some(f), Some(t)) = (&from, &to)
        && f.get(..10) > t.get(..10)
    {
        return Err(FuncError::value(
            "todate",
            t.as_str(),
            "The discount ends before it starts",
        ));
    }
    Ok(changed)
}

impl EditOps for DiscountEdit {
    fn view(&self, ctx: &Ctx, elid: i64, _plid: Option<i64>) -> FuncResult<Fields> {
        let names = [
            "name",
            "project",
            "account",
            "fromdate",
            "todate",
            "type",
            "percentage",
            "priority",
            "actiontype",
            "period",
            "itemtype",
            "note",
        ];
        row_fields(ctx, "SELECT name, project_id, account_id, fromdate, todate, type, percentage, priority, actiontype, period,
                    itemtype, note
             FROM discount WHERE id = ?1", elid, &names)
    }

    fn blank(&self, _ctx: &Ctx, plid: Option<i64>) -> FuncResult<Fields> {
        let mut f: Fields = vec![(
            "account".into(),
            plid.map(|v| v.to_string()).unwrap_or_default(),
        )];
        f.extend(discount_params().into_iter().map(|p| {
            let v = match p.name.as_str() {
                "project" => "1",
                "type" => "percent",
                "actiontype" => "any",
                "priority" => "0",
                _ => "",
            };
            (p.name.into(), v.to_string())
        }));
        Ok(f)
    }

    fn create(&self, ctx: &Ctx, plid: Option<i64>, p: &Params) -> FuncResult<i64> {
        let name = p.required("name")?;
        let pct = percentage("percentage", p.required("percentage")?)?;
        let project = match p.get("project") {
            Some(v) => parse_id("project", v)?,
            None => match plid {
                Some(a) => ctx
                    .db
                    .prepare_cached("SELECT project_id FROM account WHERE id = ?1")?
                    .query_row([a], |r| r.get(0))?,
                None => 1,
            },
        };
        ctx.db
            .prepare_cached(
                "INSERT INTO discount (name, project_id, account_id, percentage, created) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![name, project, plid, pct, ctx.now])?;
        let id = ctx.db.last_insert_rowid()?;
        apply_discount(ctx, id, p)?;
        let whose = match plid {
            Some(a) => format!("client {a}"),
            None => "every client (promotion)".into(),
        };
        ctx.history(
            "discount",
            id,
            format!("discount '{name}' of {pct}% created for {whose}"),
        )?;
        Ok(id)
    }

    fn change(&self, ctx: &Ctx, elid: i64, _plid: Option<i64>, p: &Params) -> FuncResult<()> {
        let deleted: bool = ctx
            .db
            .prepare_cached("SELECT deleted FROM discount WHERE id = ?1")?
            .query_row([elid], |r| r.get(0))?;
        if deleted {
            return Err(FuncError::value(
                "elid",
                elid.to_string(),
                format!("The discount {elid} is deleted"),
            ));
        }
        let changed = apply_discount(ctx, elid, p)?;
        if !changed.is_empty() {
            ctx.history("discount", elid, format!("changed: {}", changed.join(", ")))?;
        }
        Ok(())
    }
}

struct RateEdit;

impl EditOps for RateEdit {
    fn view(&self, ctx: &Ctx, elid: i64, _plid: Option<i64>) -> FuncResult<Fields> {
        let names = [
            "currency_base",
            "currency_relate",
            "rate",
            "amount",
            "ratedate",
            "account",
        ];
        row_fields(
            ctx,
            "SELECT currency_base, currency_relate, rate, amount, ratedate, account_id FROM currencyrate WHERE id = ?1",
            elid,
            &names,
        )
    }

    fn blank(&self, ctx: &Ctx, plid: Option<i64>) -> FuncResult<Fields> {
        Ok(vec![
            ("currency_base".into(), String::new()),
            ("currency_relate".into(), String::new()),
            ("rate".into(), String::new()),
            ("amount".into(), "1".into()),
            ("ratedate".into(), ctx.now.chars().take(10).collect()),
            (
                "account".into(),
                plid.map(|v| v.to_string()).unwrap_or_default(),
            ),
        ])
    }

    fn create(&self, ctx: &Ctx, plid: Option<i64>, p: &Params) -> FuncResult<i64> {
        let base = parse_id("currency_base", p.required("currency_base")?)?;
        let relate = parse_id("currency_relate", p.required("currency_relate")?)?;
        if base == relate {
            return Err(FuncError::value(
                "currency_relate",
                relate.to_string(),
                "A rate converts between two different currencies",
            ));
        }
        let rate = positive("rate", p.required("rate")?)?;
        let amount = positive("amount", p.get("amount").unwrap_or("1"))?;
        let ratedate = p
            .get("ratedate")
            .map_or_else(|| ctx.now.chars().take(10).collect(), str::to_string);
        ctx.db
            .prepare_cached(
                "INSERT INTO currencyrate (currency_base, currency_relate, rate, amount, ratedate, account_id, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![base, relate, rate, amount, ratedate, plid, ctx.now])?;
        let id = ctx.db.last_insert_rowid()?;
        let whose = match plid {
            Some(a) => format!("client {a}"),
            None => "the provider".into(),
        };
        ctx.history(
            "currencyrate",
            id,
            format!("{amount} of {relate} = {rate} of {base} from {ratedate} for {whose}"),
        )?;
        Ok(id)
    }

    fn change(&self, ctx: &Ctx, elid: i64, _plid: Option<i64>, p: &Params) -> FuncResult<()> {
        let mut changed = Vec::new();
        for (name, col) in [
            ("currency_base", "currency_base"),
            ("currency_relate", "currency_relate"),
        ] {
            if let Some(v) = p.get(name)
                && set_column(ctx, "currencyrate", col, elid, &parse_id(name, v)?)?
            {
                changed.push(name);
            }
        }
        for name in ["rate", "amount"] {
            if let Some(v) = p.get(name)
                && set_column(ctx, "currencyrate", name, elid, &positive(name, v)?)?
            {
                changed.push(name);
            }
        }
        if let Some(v) = p.get("ratedate")
            && set_column(ctx, "currencyrate", "ratedate", elid, &v)?
        {
            changed.push("ratedate");
        }
        let same: bool = ctx
            .db
            .prepare_cached(
                "SELECT currency_base = currency_relate FROM currencyrate WHERE id = ?1",
            )?
            .query_row([elid], |r| r.get(0))?;
        if same {
            return Err(FuncError::value(
                "currency_relate",
                p.get("currency_relate").unwrap_or_default(),
                "A rate converts between two different currencies",
            ));
        }
        if !changed.is_empty() {
            ctx.history(
                "currencyrate",
                elid,
                format!("changed: {}", changed.join(", ")),
            )?;
        }
        Ok(())
    }
}

struct TaxruleEdit;

fn apply_taxrule(ctx: &Ctx, id: i64, p: &Params) -> FuncResult<Vec<&'static str>> {
    let mut changed = Vec::new();
    if let Some(v) = p.get("project")
        && set_column(ctx, "taxrule", "project_id", id, &parse_id("project", v)?)?
    {
        changed.push("project");
    }
    if let Some(v) = p.get("taxrate")
        && set_column(ctx, "taxrule", "taxrate", id, &percentage("taxrate", v)?)?
    {
        changed.push("taxrate");
    }
    if let Some(v) = p.raw("country") {
        let c = if v.is_empty() {
            None
        } else {
            Some(parse_id("country", v)?)
        };
        if set_column(ctx, "taxrule", "country_id", id, &c)? {
            changed.push("country");
        }
    }
    for col in ["company", "type", "itemtype"] {
        if let Some(v) = p.raw(col)
            && (col != "type" || !v.is_empty())
            && set_column(ctx, "taxrule", col, id, &v)?
        {
            changed.push(col);
        }
    }
    if let Some(f) = p.flag("specialitemtype")
        && set_column(ctx, "taxrule", "specialitemtype", id, &f)?
    {
        changed.push("specialitemtype");
    }
    Ok(changed)
}

impl EditOps for TaxruleEdit {
    fn view(&self, ctx: &Ctx, elid: i64, _plid: Option<i64>) -> FuncResult<Fields> {
        let names = [
            "project",
            "taxrate",
            "country",
            "company",
            "type",
            "specialitemtype",
            "itemtype",
        ];
        row_fields(
            ctx,
            "SELECT project_id, taxrate, country_id, company, type,
                    CASE specialitemtype WHEN 1 THEN 'on' ELSE 'off' END, itemtype
             FROM taxrule WHERE id = ?1",
            elid,
            &names,
        )
    }

    fn blank(&self, _ctx: &Ctx, _plid: Option<i64>) -> FuncResult<Fields> {
        Ok(vec![
            ("project".into(), "1".into()),
            ("taxrate".into(), String::new()),
            ("country".into(), String::new()),
            ("company".into(), String::new()),
            ("type".into(), "included".into()),
            ("specialitemtype".into(), "off".into()),
            ("itemtype".into(), String::new()),
        ])
    }

    fn create(&self, ctx: &Ctx, _plid: Option<i64>, p: &Params) -> FuncResult<i64> {
        let rate = percentage("taxrate", p.required("taxrate")?)?;
        let project = match p.get("project") {
            Some(v) => parse_id("project", v)?,
            None => 1,
        };
        ctx.db
            .prepare_cached(
                "INSERT INTO taxrule (project_id, taxrate, created) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![project, rate, ctx.now])?;
        let id = ctx.db.last_insert_rowid()?;
        apply_taxrule(ctx, id, p)?;
        ctx.history(
            "taxrule",
            id,
            format!("tax rule of {rate}% created for provider {project}"),
        )?;
        Ok(id)
    }

    fn change(&self, ctx: &Ctx, elid: i64, _plid: Option<i64>, p: &Params) -> FuncResult<()> {
        let changed = apply_taxrule(ctx, elid, p)?;
        if !changed.is_empty() {
            ctx.history("taxrule", elid, format!("changed: {}", changed.join(", ")))?;
        }
        Ok(())
    }
}
