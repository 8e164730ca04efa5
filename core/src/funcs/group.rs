//! Client groups: the groups themselves (`accountgroup`, `.edit`, `.delete`) and a client's
//! membership (`account.group`: resume adds the client to a group, suspend takes it out).

use super::{ACCOUNT, ACCOUNTGROUP};
use crate::doc::Fields;
use crate::engine::Ctx;
use crate::error::{FuncError, FuncResult};
use crate::func::{Access, EditOps, FuncDecl, Param, Registry, Ty};
use crate::list::{FilterField, FilterOp, ListSpec};
use crate::params::Params;
use crate::store::{OptionalExtension, params};

pub fn register(reg: &mut Registry) {
    let mut groups = ListSpec::new(
        "accountgroup g",
        "g.id",
        &[
            ("id", "g.id"),
            ("name", "g.name"),
            (
                "members",
                "(SELECT count(*) FROM accountgroup_member m WHERE m.accountgroup_id = g.id)",
            ),
            ("note", "g.note"),
        ],
    );
    groups.filters = vec![FilterField::new("name", "g.name", FilterOp::Like)];
    reg.add(FuncDecl::list(
        "accountgroup",
        "Client groups",
        Access::ADMIN,
        groups,
    ));
    reg.add(
        FuncDecl::edit(
            "accountgroup.edit",
            "Client group",
            Access::ADMIN,
            GroupEdit,
        )
        .object(ACCOUNTGROUP)
        .params(vec![
            Param::new("name", Ty::Text(255)).required(),
            Param::new("note", Ty::LongText(4000)),
        ]),
    );
    reg.add(FuncDecl::group(
        "accountgroup.delete",
        "Delete",
        Access::ADMIN,
        ACCOUNTGROUP,
        |ctx, id, _| {
            let members: i64 = ctx
                .db
                .prepare_cached(
                    "SELECT count(*) FROM accountgroup_member WHERE accountgroup_id = ?1",
                )?
                .query_row([id], |r| r.get(0))?;
            if members > 0 {
                return Err(FuncError::value(
                    "elid",
                    id.to_string(),
                    format!("The group still has {members} clients"),
                ));
            }
            ctx.db
                .prepare_cached("DELETE FROM accountgroup WHERE id = ?1")?
                .execute([id])?;
            ctx.history("accountgroup", id, "group deleted")
        },
    ));

    let mut membership = ListSpec::new(
        "accountgroup g",
        "g.id",
        &[
            ("id", "g.id"),
            ("name", "g.name"),
            (
                "status",
                "CASE WHEN EXISTS (SELECT 1 FROM accountgroup_member m WHERE m.accountgroup_id = g.id AND m.account_id = ?1)
                      THEN 'on' ELSE 'off' END",
            ),
        ],
    );
    membership.filters = vec![FilterField::new("name", "g.name", FilterOp::Like)];
    reg.add(
        FuncDecl::list("account.group", "Client groups", Access::ADMIN, membership)
            .parent(ACCOUNT, true),
    );
    reg.add(
        FuncDecl::group("account.group.resume", "Resume", Access::ADMIN, ACCOUNTGROUP, |ctx, group, p| {
            let account = plid(p)?;
            let n = ctx
                .db
                .prepare_cached("INSERT OR IGNORE INTO accountgroup_member (accountgroup_id, account_id) VALUES (?1, ?2)")?
                .execute(params![group, account])?;
            if n == 0 {
                return Err(FuncError::value("elid", group.to_string(), "The client is already in this group"));
            }
            ctx.history("account", account, format!("added to group {group}"))
        })
        .parent(ACCOUNT, true),
    );
    reg.add(
        FuncDecl::group("account.group.suspend", "Suspend", Access::ADMIN, ACCOUNTGROUP, |ctx, group, p| {
            let account = plid(p)?;
            let n = ctx
                .db
                .prepare_cached("DELETE FROM accountgroup_member WHERE accountgroup_id = ?1 AND account_id = ?2")?
                .execute(params![group, account])?;
            if n == 0 {
                return Err(FuncError::value("elid", group.to_string(), "The client is not in this group"));
            }
            ctx.history("account", account, format!("removed from group {group}"))
        })
        .parent(ACCOUNT, true),
    );
}

fn plid(p: &Params) -> FuncResult<i64> {
    crate::params::parse_id("plid", p.required("plid")?)
}

fn name_free(ctx: &Ctx, name: &str, except: Option<i64>) -> FuncResult<()> {
    let found: Option<i64> = ctx
        .db
        .prepare_cached("SELECT id FROM accountgroup WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?;
    match found {
        Some(id) if Some(id) != except => Err(FuncError::exists(
            "name",
            name,
            format!("A group named '{name}' exists"),
        )),
        _ => Ok(()),
    }
}

struct GroupEdit;

impl EditOps for GroupEdit {
    fn view(&self, ctx: &Ctx, elid: i64, _plid: Option<i64>) -> FuncResult<Fields> {
        Ok(ctx
            .db
            .prepare_cached("SELECT name, note FROM accountgroup WHERE id = ?1")?
            .query_row([elid], |r| {
                Ok(vec![("name".into(), r.get(0)?), ("note".into(), r.get(1)?)])
            })?)
    }

    fn blank(&self, _ctx: &Ctx, _plid: Option<i64>) -> FuncResult<Fields> {
        Ok(vec![
            ("name".into(), String::new()),
            ("note".into(), String::new()),
        ])
    }

    fn create(&self, ctx: &Ctx, _plid: Option<i64>, p: &Params) -> FuncResult<i64> {
        let name = p.required("name")?;
        name_free(ctx, name, None)?;
        ctx.db
            .prepare_cached("INSERT INTO accountgroup (name, note, created) VALUES (?1, ?2, ?3)")?
            .execute(params![name, p.get("note").unwrap_or(""), ctx.now])?;
        let id = ctx.db.last_insert_rowid()?;
        ctx.history("accountgroup", id, format!("group '{name}' created"))?;
        Ok(id)
    }

    fn change(&self, ctx: &Ctx, elid: i64, _plid: Option<i64>, p: &Params) -> FuncResult<()> {
        if let Some(name) = p.get("name") {
            name_free(ctx, name, Some(elid))?;
            ctx.db
                .prepare_cached("UPDATE accountgroup SET name = ?2 WHERE id = ?1")?
                .execute(params![elid, name])?;
        }
        if let Some(note) = p.raw("note") {
            ctx.db
                .prepare_cached("UPDATE accountgroup SET note = ?2 WHERE id = ?1")?
                .execute(params![elid, note])?;
        }
        ctx.history("accountgroup", elid, "group changed")
    }
}
