//! Subaccounts (`subaccount.edit`, `.suspend`, `.resume`, `.refund`) and expenses
//! (`subaccount.expense.edit`, `.delete`). The lists are in `ledger_lists`; the money rules in
//! `ledger`.
//!
//! Choices where the spec is silent: making a subaccount active makes the client's other
//! subaccount with the same provider inactive (one active per provider); a subaccount's provider
//! and currency are fixed once it exists; a suspended subaccount takes no new expenses (payments
//! and refunds still work); an expense's amount never changes (delete it and add another), only
//! its descriptive fields do.

use super::{ACCOUNT, CURRENCY, EXPENSE, PROJECT, SUBACCOUNT, on_off, opt_id, set_column};
use crate::doc::{Doc, Fields};
use crate::engine::Ctx;
use crate::error::{FuncError, FuncResult};
use crate::func::{Access, ActionMode, EditOps, FuncDecl, Param, Registry, Ty};
use crate::ledger;
use crate::money;
use crate::params::{Params, parse_id};
use crate::store::{OptionalExtension, params};

pub fn register(reg: &mut Registry) {
    reg.add(
        FuncDecl::edit(
            "subaccount.edit",
            "Edit the selected account",
            Access::ADMIN,
            SubaccountEdit,
        )
        .object(SUBACCOUNT)
        .parent(ACCOUNT, false)
        .params(subaccount_params()),
    );
    reg.add(FuncDecl::group(
        "subaccount.suspend",
        "Suspend",
        Access::ADMIN,
        SUBACCOUNT,
        |ctx, id, _| set_status(ctx, id, 2),
    ));
    reg.add(FuncDecl::group(
        "subaccount.resume",
        "Resume",
        Access::ADMIN,
        SUBACCOUNT,
        |ctx, id, _| set_status(ctx, id, 1),
    ));
    reg.add(
        FuncDecl::action(
            "subaccount.refund",
            "Issue a refund",
            Access::ADMIN,
            ActionMode::FormThenWrite,
            refund,
        )
        .object(SUBACCOUNT)
        .params(vec![
            Param::new("amount", Ty::Decimal),
            Param::new("description", Ty::Text(1000)),
        ]),
    );
    reg.add(
        FuncDecl::edit(
            "subaccount.expense.edit",
            "Edit the selected expense",
            Access::ADMIN,
            ExpenseEdit,
        )
        .object(EXPENSE)
        .parent(ACCOUNT, false)
        .params(expense_params()),
    );
    reg.add(FuncDecl::group(
        "subaccount.expense.delete",
        "Delete",
        Access::ADMIN,
        EXPENSE,
        |ctx, id, _| ledger::delete_expense(ctx, id),
    ));
}

fn subaccount_params() -> Vec<Param> {
    vec![
        Param::new("subaccount_project", Ty::Ref(PROJECT)).required(),
        Param::new("subaccount_currency", Ty::Ref(CURRENCY)).required(),
        Param::new("allowpostpaid", Ty::Flag),
        Param::new("creditlimit", Ty::Decimal),
        Param::new("referer", Ty::Ref(ACCOUNT)),
        Param::new("active", Ty::Flag),
        Param::new(
            "incident_limit",
            Ty::Int {
                min: 0,
                max: 1_000_000,
            },
        ),
    ]
}

fn set_status(ctx: &Ctx, id: i64, status: i64) -> FuncResult<()> {
    if !set_column(ctx, "subaccount", "status", id, &status)? {
        let word = if status == 1 { "active" } else { "suspended" };
        return Err(FuncError::value(
            "elid",
            id.to_string(),
            format!("The subaccount {id} is already {word}"),
        ));
    }
    let word = if status == 1 { "resumed" } else { "suspended" };
    ctx.history("subaccount", id, word)
}

fn refund(ctx: &Ctx, p: &Params) -> FuncResult<Doc> {
    let id = parse_id("elid", p.required("elid")?)?;
    let cur = ledger::subaccount_currency(ctx.db, id)?;
    let amount = p
        .get("amount")
        .map(|a| money::parse_minor(a, cur.scale, "amount"))
        .transpose()?;
    let refunds = ledger::refund_subaccount(ctx, id, amount, p.get("description").unwrap_or(""))?;
    let ids: Vec<String> = refunds.iter().map(i64::to_string).collect();
    Ok(Doc::Ok(vec![("refunds".into(), ids.join(", "))]))
}

/// Makes `id` the client's one active subaccount with its provider.
fn activate(ctx: &Ctx, id: i64, account: i64, project: i64) -> FuncResult<()> {
    let others: Vec<i64> = ctx
        .db
        .prepare_cached(
            "SELECT id FROM subaccount WHERE account_id = ?1 AND project_id = ?2 AND active = 1 AND id <> ?3",
        )?
        .query_map(params![account, project, id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for other in others {
        set_column(ctx, "subaccount", "active", other, &0)?;
        ctx.history(
            "subaccount",
            other,
            format!("made inactive: subaccount {id} is now active"),
        )?;
    }
    set_column(ctx, "subaccount", "active", id, &1)?;
    Ok(())
}

/// Applies the changeable fields; answers what changed.
fn apply(ctx: &Ctx, id: i64, p: &Params) -> FuncResult<Vec<&'static str>> {
    let sub = ledger::subaccount(ctx.db, id)?;
    let mut changed = Vec::new();
    if let Some(f) = p.flag("allowpostpaid")
        && set_column(ctx, "subaccount", "allowpostpaid", id, &f)?
    {
        changed.push("allowpostpaid");
    }
    if let Some(c) = p.get("creditlimit") {
        let v = money::parse_minor(c, sub.currency.scale, "creditlimit")?;
        if v < 0 {
            return Err(FuncError::value(
                "creditlimit",
                c,
                "The credit limit cannot be negative",
            ));
        }
        if set_column(ctx, "subaccount", "creditlimit", id, &v)? {
            changed.push("creditlimit");
        }
    }
    if let Some(r) = p.raw("referer") {
        let v = if r.is_empty() {
            None
        } else {
            Some(parse_id("referer", r)?)
        };
        if v == Some(sub.account) {
            return Err(FuncError::value(
                "referer",
                r,
                "A client cannot refer itself",
            ));
        }
        if set_column(ctx, "subaccount", "referer_id", id, &v)? {
            changed.push("referer");
        }
    }
    if let Some(v) = p.int("incident_limit")?
        && set_column(ctx, "subaccount", "incident_limit", id, &v)?
    {
        changed.push("incident_limit");
    }
    match p.flag("active") {
        Some(true) => {
            let was: bool = ctx
                .db
                .prepare_cached("SELECT active FROM subaccount WHERE id = ?1")?
                .query_row([id], |r| r.get(0))?;
            if !was {
                activate(ctx, id, sub.account, sub.project)?;
                changed.push("active");
            }
        }
        Some(false) if set_column(ctx, "subaccount", "active", id, &0)? => {
            changed.push("active");
        }
        _ => {}
    }
    Ok(changed)
}

struct SubaccountEdit;

impl EditOps for SubaccountEdit {
    fn view(&self, ctx: &Ctx, elid: i64, _plid: Option<i64>) -> FuncResult<Fields> {
        let sub = ledger::subaccount(ctx.db, elid)?;
        let (referer, active, incident_limit): (Option<i64>, bool, i64) = ctx
            .db
            .prepare_cached(
                "SELECT referer_id, active, incident_limit FROM subaccount WHERE id = ?1",
            )?
            .query_row([elid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        let m = |v: i64| money::format_minor(v, sub.currency.scale);
        Ok(vec![
            ("account".into(), sub.account.to_string()),
            ("subaccount_project".into(), sub.project.to_string()),
            ("subaccount_currency".into(), sub.currency.id.to_string()),
            ("balance".into(), m(sub.balance)),
            ("allowpostpaid".into(), on_off(sub.allowpostpaid)),
            ("creditlimit".into(), m(sub.creditlimit)),
            (
                "referer".into(),
                referer.map(|r| r.to_string()).unwrap_or_default(),
            ),
            ("active".into(), on_off(active)),
            ("incident_limit".into(), incident_limit.to_string()),
            (
                "status".into(),
                if sub.suspended { "suspended" } else { "active" }.into(),
            ),
        ])
    }

    fn blank(&self, ctx: &Ctx, plid: Option<i64>) -> FuncResult<Fields> {
        let (project, currency): (i64, Option<i64>) = match plid {
            Some(account) => ctx
                .db
                .prepare_cached(
                    "SELECT a.project_id, p.currency_id FROM account a JOIN project p ON p.id = a.project_id WHERE a.id = ?1",
                )?
                .query_row([account], |r| Ok((r.get(0)?, r.get(1)?)))?,
            None => (1, None),
        };
        Ok(vec![
            ("subaccount_project".into(), project.to_string()),
            (
                "subaccount_currency".into(),
                currency.map(|c| c.to_string()).unwrap_or_default(),
            ),
            ("allowpostpaid".into(), "off".into()),
            ("creditlimit".into(), "0".into()),
            ("referer".into(), String::new()),
            ("active".into(), "on".into()),
            ("incident_limit".into(), "0".into()),
        ])
    }

    fn create(&self, ctx: &Ctx, plid: Option<i64>, p: &Params) -> FuncResult<i64> {
        let account = plid.ok_or_else(|| FuncError::missed_param("plid"))?;
        let project = parse_id("subaccount_project", p.required("subaccount_project")?)?;
        let currency = parse_id("subaccount_currency", p.required("subaccount_currency")?)?;
        let exists: Option<i64> = ctx
            .db
            .prepare_cached(
                "SELECT id FROM subaccount WHERE account_id = ?1 AND project_id = ?2 AND currency_id = ?3",
            )?
            .query_row(params![account, project, currency], |r| r.get(0))
            .optional()?;
        if let Some(id) = exists {
            return Err(FuncError::exists(
                "subaccount_currency",
                currency.to_string(),
                format!("The client already has subaccount {id} with this provider and currency"),
            ));
        }
        ctx.db
            .prepare_cached(
                "INSERT INTO subaccount (account_id, project_id, currency_id, active, created) VALUES (?1, ?2, ?3, 0, ?4)",
            )?
            .execute(params![account, project, currency, ctx.now])?;
        let id = ctx.db.last_insert_rowid()?;
        if p.flag("active") != Some(false) {
            activate(ctx, id, account, project)?;
        }
        apply(ctx, id, p)?;
        let cur = ledger::currency(ctx.db, currency)?;
        ctx.history(
            "subaccount",
            id,
            format!(
                "opened for client {account} with provider {project} in {}",
                cur.iso
            ),
        )?;
        Ok(id)
    }

    fn change(&self, ctx: &Ctx, elid: i64, _plid: Option<i64>, p: &Params) -> FuncResult<()> {
        let sub = ledger::subaccount(ctx.db, elid)?;
        for (name, current) in [
            ("subaccount_project", sub.project),
            ("subaccount_currency", sub.currency.id),
        ] {
            if let Some(v) = opt_id(p, name)?
                && v != current
            {
                return Err(FuncError::value(
                    name,
                    v.to_string(),
                    "The provider and currency of a subaccount cannot change",
                ));
            }
        }
        let changed = apply(ctx, elid, p)?;
        if !changed.is_empty() {
            ctx.history(
                "subaccount",
                elid,
                format!("changed: {}", changed.join(", ")),
            )?;
        }
        Ok(())
    }
}

fn expense_params() -> Vec<Param> {
    vec![
        Param::new("subaccount", Ty::Ref(SUBACCOUNT)),
        Param::new("item", Ty::Text(255)),
        Param::new("itemtype", Ty::Text(64)),
        Param::new("operation", Ty::Text(64)),
        Param::new("amount", Ty::Decimal).required(),
        Param::new("taxrate", Ty::Decimal),
        Param::new("postpaid", Ty::Flag),
        Param::new("name", Ty::Text(255)),
        Param::new("realdate", Ty::Date),
        Param::new("cdate", Ty::Date),
    ]
}

struct ExpenseEdit;

impl EditOps for ExpenseEdit {
    fn view(&self, ctx: &Ctx, elid: i64, _plid: Option<i64>) -> FuncResult<Fields> {
        let mut stmt = ctx.db.prepare_cached(
            "SELECT subaccount_id, item, itemtype, operation, amount, taxrate, taxamount, discountamount, discount_id,
                    notpayd, postpaid, name, realdate, cdate, payment_id, deleted, account_id
             FROM expense WHERE id = ?1",
        )?;
        type Row = (
            i64,
            String,
            String,
            String,
            i64,
            String,
            i64,
            i64,
            Option<i64>,
            i64,
            bool,
            String,
            String,
            Option<String>,
        );
        let (r, payment, deleted, account): (Row, Option<i64>, bool, i64) =
            stmt.query_row([elid], |r| {
                Ok((
                    (
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                        r.get(9)?,
                        r.get(10)?,
                        r.get(11)?,
                        r.get(12)?,
                        r.get(13)?,
                    ),
                    r.get(14)?,
                    r.get(15)?,
                    r.get(16)?,
                ))
            })?;
        let cur = ledger::subaccount_currency(ctx.db, r.0)?;
        let m = |v: i64| money::format_minor(v, cur.scale);
        let opt = |v: Option<i64>| v.map(|x| x.to_string()).unwrap_or_default();
        Ok(vec![
            ("account".into(), account.to_string()),
            ("subaccount".into(), r.0.to_string()),
            ("item".into(), r.1),
            ("itemtype".into(), r.2),
            ("operation".into(), r.3),
            ("amount".into(), m(r.4)),
            ("currency".into(), cur.iso.clone()),
            ("taxrate".into(), r.5),
            ("taxamount".into(), m(r.6)),
            ("discountamount".into(), m(r.7)),
            ("discount".into(), opt(r.8)),
            ("notpayd".into(), m(r.9)),
            ("postpaid".into(), on_off(r.10)),
            ("name".into(), r.11),
            ("realdate".into(), r.12),
            ("cdate".into(), r.13.unwrap_or_default()),
            ("payment".into(), opt(payment)),
            ("deleted".into(), on_off(deleted)),
        ])
    }

    fn blank(&self, ctx: &Ctx, plid: Option<i64>) -> FuncResult<Fields> {
        let sub: Option<i64> = match plid {
            Some(account) => ctx
                .db
                .prepare_cached(
                    "SELECT s.id FROM subaccount s JOIN account a ON a.id = s.account_id
                     WHERE a.id = ?1 AND s.project_id = a.project_id AND s.active = 1",
                )?
                .query_row([account], |r| r.get(0))
                .optional()?,
            None => None,
        };
        Ok(expense_params()
            .into_iter()
            .map(|p| {
                let v = match p.name.as_str() {
                    "subaccount" => sub.map(|s| s.to_string()).unwrap_or_default(),
                    "postpaid" => "off".into(),
                    "realdate" => ctx.now.clone(),
                    _ => String::new(),
                };
                (p.name.into(), v)
            })
            .collect())
    }

    fn create(&self, ctx: &Ctx, plid: Option<i64>, p: &Params) -> FuncResult<i64> {
        let subaccount = match (opt_id(p, "subaccount")?, plid) {
            (Some(s), plid) => {
                let sub = ledger::subaccount(ctx.db, s)?;
                if let Some(account) = plid.filter(|&a| a != sub.account) {
                    return Err(FuncError::value(
                        "subaccount",
                        s.to_string(),
                        format!("The subaccount {s} is not client {account}'s"),
                    ));
                }
                s
            }
            (None, Some(account)) => ctx
                .db
                .prepare_cached(
                    "SELECT s.id FROM subaccount s JOIN account a ON a.id = s.account_id
                     WHERE a.id = ?1 AND s.project_id = a.project_id AND s.active = 1",
                )?
                .query_row([account], |r| r.get(0))
                .optional()?
                .ok_or_else(|| FuncError::missed_param("subaccount"))?,
            (None, None) => return Err(FuncError::missed_param("plid")),
        };
        let cur = ledger::subaccount_currency(ctx.db, subaccount)?;
        let price = money::parse_minor(p.required("amount")?, cur.scale, "amount")?;
        let taxrate = p
            .get("taxrate")
            .map(|t| {
                let r = money::parse_decimal(t, "taxrate")?;
                if r.is_sign_negative() || r > rust_decimal::Decimal::ONE_HUNDRED {
                    return Err(FuncError::value(
                        "taxrate",
                        t,
                        "The tax rate is a percentage from 0 to 100",
                    ));
                }
                Ok(r)
            })
            .transpose()?;
        let text = |k: &str| p.get(k).unwrap_or("").to_string();
        let name = [text("name"), text("item"), text("operation")]
            .into_iter()
            .find(|s| !s.is_empty())
            .unwrap_or_else(|| "Expense".into());
        ledger::add_expense(
            ctx,
            &ledger::NewExpense {
                subaccount,
                name,
                item: text("item"),
                itemtype: text("itemtype"),
                operation: text("operation"),
                price,
                taxrate,
                postpaid: p.flag("postpaid") == Some(true),
                realdate: p
                    .get("realdate")
                    .map_or_else(|| ctx.now.clone(), str::to_string),
                cdate: p.get("cdate").map(str::to_string),
            },
        )
    }

    fn change(&self, ctx: &Ctx, elid: i64, _plid: Option<i64>, p: &Params) -> FuncResult<()> {
        let (amount, sub, deleted): (i64, i64, bool) = ctx
            .db
            .prepare_cached("SELECT amount, subaccount_id, deleted FROM expense WHERE id = ?1")?
            .query_row([elid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        if deleted {
            return Err(FuncError::value(
                "elid",
                elid.to_string(),
                format!("The expense {elid} is deleted"),
            ));
        }
        let cur = ledger::subaccount_currency(ctx.db, sub)?;
        let fixed = [
            "subaccount",
            "amount",
            "taxrate",
            "postpaid",
            "itemtype",
            "operation",
        ];
        for k in fixed {
            let Some(v) = p.get(k) else { continue };
            let same = match k {
                "amount" => money::parse_minor(v, cur.scale, "amount")? == amount,
                "subaccount" => parse_id(k, v)? == sub,
                _ => {
                    let current: String = ctx
                        .db
                        .prepare_cached(
                            "SELECT CASE ?2 WHEN 'taxrate' THEN taxrate WHEN 'itemtype' THEN itemtype
                                    WHEN 'operation' THEN operation
                                    ELSE CASE postpaid WHEN 1 THEN 'on' ELSE 'off' END END
                             FROM expense WHERE id = ?1",
                        )?
                        .query_row(params![elid, k], |r| r.get(0))?;
                    current == v
                }
            };
            if !same {
                return Err(FuncError::value(
                    k,
                    v,
                    "The money fields of an expense cannot change; delete it and add another",
                ));
            }
        }
        let mut changed = Vec::new();
        for col in ["name", "item"] {
            if let Some(v) = p.get(col)
                && set_column(ctx, "expense", col, elid, &v)?
            {
                changed.push(col);
            }
        }
        for col in ["realdate", "cdate"] {
            if let Some(v) = p.get(col)
                && set_column(ctx, "expense", col, elid, &v)?
            {
                changed.push(col);
            }
        }
        if !changed.is_empty() {
            ctx.history("expense", elid, format!("changed: {}", changed.join(", ")))?;
        }
        Ok(())
    }
}
