//! Providers (`project`, `project.edit`) and a client's providers (`account.project`, with
//! `.resume` and `.suspend`).

use super::{ACCOUNT, CURRENCY, PROJECT, opt_id, set_column};
use crate::doc::Fields;
use crate::engine::Ctx;
use crate::error::{FuncError, FuncResult};
use crate::func::{Access, EditOps, FuncDecl, Param, Registry, Ty};
use crate::list::{FilterField, FilterOp, ListSpec};
use crate::params::Params;
use crate::store::params;

pub fn register(reg: &mut Registry) {
    let mut projects = ListSpec::new(
        "project p",
        "p.id",
        &[
            ("id", "p.id"),
            ("name", "p.name"),
            (
                "currency_str",
                "(SELECT iso FROM currency WHERE id = p.currency_id)",
            ),
            ("site", "p.site"),
            ("billurl", "p.billurl"),
        ],
    );
    projects.filters = vec![FilterField::new("name", "p.name", FilterOp::Like)];
    reg.add(FuncDecl::list(
        "project",
        "Providers",
        Access::ADMIN,
        projects,
    ));
    reg.add(
        FuncDecl::edit("project.edit", "Provider", Access::ADMIN, ProjectEdit)
            .object(PROJECT)
            .params(project_params()),
    );

    let mut assigned = ListSpec::new(
        "project p",
        "p.id",
        &[
            ("id", "p.id"),
            ("name", "p.name"),
            (
                "status",
                "coalesce((SELECT CASE ap.status WHEN 1 THEN 'active' ELSE 'suspended' END FROM account_project ap
                           WHERE ap.project_id = p.id AND ap.account_id = ?1), 'off')",
            ),
        ],
    );
    assigned.filters = vec![FilterField::new("name", "p.name", FilterOp::Like)];
    reg.add(
        FuncDecl::list(
            "account.project",
            "Providers that this client can be assigned to",
            Access::ADMIN,
            assigned,
        )
        .parent(ACCOUNT, true),
    );
    reg.add(
        FuncDecl::group(
            "account.project.resume",
            "Resume",
            Access::ADMIN,
            PROJECT,
            |ctx, project, p| set_assignment(ctx, client(p)?, project, 1),
        )
        .parent(ACCOUNT, true),
    );
    reg.add(
        FuncDecl::group(
            "account.project.suspend",
            "Suspend",
            Access::ADMIN,
            PROJECT,
            |ctx, project, p| set_assignment(ctx, client(p)?, project, 2),
        )
        .parent(ACCOUNT, true),
    );
}

fn client(p: &Params) -> FuncResult<i64> {
    crate::params::parse_id("plid", p.required("plid")?)
}

/// Assigns the client to the provider (1) or suspends it there (2).
fn set_assignment(ctx: &Ctx, account: i64, project: i64, status: i64) -> FuncResult<()> {
    let n = ctx
        .db
        .prepare_cached(
            "INSERT INTO account_project (account_id, project_id, status) VALUES (?1, ?2, ?3)
             ON CONFLICT (account_id, project_id) DO UPDATE SET status = excluded.status
             WHERE account_project.status <> excluded.status",
        )?
        .execute(params![account, project, status])?;
    let word = if status == 1 { "resumed" } else { "suspended" };
    if n == 0 {
        return Err(FuncError::value(
            "elid",
            project.to_string(),
            format!("The client is already {word} with this provider"),
        ));
    }
    ctx.history(
        "account",
        account,
        format!("{word} with provider {project}"),
    )
}

fn project_params() -> Vec<Param> {
    vec![
        Param::new("name", Ty::Text(255)).required(),
        Param::new("currency", Ty::Ref(CURRENCY)),
        Param::new("site", Ty::Text(1024)),
        Param::new("billurl", Ty::Text(1024)),
        Param::new("conditions_required", Ty::Flag),
        Param::new("company", Ty::Text(255)),
        Param::new("company_address", Ty::LongText(1024)),
        Param::new("company_taxid", Ty::Text(64)),
        Param::new("invoice_format", Ty::Text(64)),
    ]
}

const TEXT_COLUMNS: &[&str] = &[
    "name",
    "site",
    "billurl",
    "company",
    "company_address",
    "company_taxid",
    "invoice_format",
];

struct ProjectEdit;

impl EditOps for ProjectEdit {
    fn view(&self, ctx: &Ctx, elid: i64, _plid: Option<i64>) -> FuncResult<Fields> {
        let mut stmt = ctx.db.prepare_cached(
            "SELECT name, currency_id, site, billurl, conditions_required, company, company_address, company_taxid,
                    invoice_format
             FROM project WHERE id = ?1",
        )?;
        Ok(stmt.query_row([elid], |r| {
            let text = |i: usize| r.get::<Option<String>>(i).map(Option::unwrap_or_default);
            Ok(vec![
                ("name".into(), text(0)?),
                (
                    "currency".into(),
                    r.get::<Option<i64>>(1)?
                        .map(|c| c.to_string())
                        .unwrap_or_default(),
                ),
                ("site".into(), text(2)?),
                ("billurl".into(), text(3)?),
                (
                    "conditions_required".into(),
                    if r.get::<bool>(4)? { "on" } else { "off" }.to_string(),
                ),
                ("company".into(), text(5)?),
                ("company_address".into(), text(6)?),
                ("company_taxid".into(), text(7)?),
                ("invoice_format".into(), text(8)?),
            ])
        })?)
    }

    fn blank(&self, _ctx: &Ctx, _plid: Option<i64>) -> FuncResult<Fields> {
        Ok(project_params()
            .into_iter()
            .map(|p| {
                let default = match p.name.as_str() {
                    "invoice_format" => "{seq}",
                    "conditions_required" => "off",
                    _ => "",
                };
                (p.name.into(), default.to_string())
            })
            .collect())
    }

    fn create(&self, ctx: &Ctx, _plid: Option<i64>, p: &Params) -> FuncResult<i64> {
        let name = p.required("name")?;
        ctx.db
            .prepare_cached("INSERT INTO project (name, created) VALUES (?1, ?2)")?
            .execute(params![name, ctx.now])?;
        let id = ctx.db.last_insert_rowid()?;
        apply(ctx, id, p)?;
        ctx.history("project", id, format!("provider '{name}' created"))?;
        Ok(id)
    }

    fn change(&self, ctx: &Ctx, elid: i64, _plid: Option<i64>, p: &Params) -> FuncResult<()> {
        let changed = apply(ctx, elid, p)?;
        if !changed.is_empty() {
            ctx.history("project", elid, format!("changed: {}", changed.join(", ")))?;
        }
        Ok(())
    }
}

fn apply(ctx: &Ctx, id: i64, p: &Params) -> FuncResult<Vec<&'static str>> {
    if let Some(format) = p.get("invoice_format") {
        crate::invoice::check_format(format)?;
    }
    let mut changed = Vec::new();
    for &col in TEXT_COLUMNS {
        if let Some(v) = p.get(col)
            && set_column(ctx, "project", col, id, &v)?
        {
            changed.push(col);
        }
    }
    if let Some(currency) = opt_id(p, "currency")?
        && set_column(ctx, "project", "currency_id", id, &currency)?
    {
        changed.push("currency");
    }
    if let Some(flag) = p.flag("conditions_required")
        && set_column(ctx, "project", "conditions_required", id, &flag)?
    {
        changed.push("conditions_required");
    }
    Ok(changed)
}
