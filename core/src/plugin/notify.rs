//! `account.sms`: sends a text message to a client through the first loaded notifier plugin
//! serving `sms`, and records each message in the `sms` table with its delivery status
//! (`queued` while the notifier is asked, then `sent` or `failed` with the error).

use super::PluginHost;
use crate::doc::Doc;
use crate::engine::Ctx;
use crate::error::{ErrorType, FuncError, FuncResult};
use crate::func::{Access, ActionMode, FuncDecl, Param, Ty};
use crate::funcs::ACCOUNT;
use crate::params::{Params, parse_id};
use crate::store::params;
use billhost_plugin_sdk as sdk;
use std::sync::Arc;

pub fn install(engine: &mut crate::Engine, host: &Arc<PluginHost>) {
    let h = host.clone();
    engine.add_func(
        FuncDecl::action(
            "account.sms",
            "Send SMS",
            Access::ADMIN,
            ActionMode::CallOut,
            move |ctx, p| sms(ctx, &h, p),
        )
        .object(ACCOUNT)
        .params(vec![
            Param::new("type", Ty::Choice(&["valid_phone", "try_phone", "other"])),
            Param::new("phone", Ty::Text(32)),
            Param::new("message", Ty::LongText(1000)).required(),
        ]),
    );
}

/// A phone number as people write it: digits with `+`, spaces, dashes, dots and parentheses,
/// 5 to 20 digits.
fn valid_phone(s: &str) -> bool {
    let digits = s.chars().filter(char::is_ascii_digit).count();
    (5..=20).contains(&digits)
        && s.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '.' | '(' | ')'))
}

fn sms(ctx: &Ctx, host: &PluginHost, p: &Params) -> FuncResult<Doc> {
    let account = parse_id("elid", p.required("elid")?)?;
    let (valid, tried): (String, String) = ctx
        .db
        .prepare_cached("SELECT valid_phone, try_phone FROM account WHERE id = ?1")?
        .query_row([account], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let kind = p.get("type").unwrap_or(if valid.is_empty() {
        "try_phone"
    } else {
        "valid_phone"
    });
    let of_type = match kind {
        "valid_phone" => valid.clone(),
        "try_phone" => tried.clone(),
        _ => String::new(),
    };
    if !p.has("sok") {
        return Ok(Doc::Form(vec![
            ("elid".into(), account.to_string()),
            ("type".into(), kind.to_string()),
            ("phone".into(), of_type),
            ("message".into(), String::new()),
        ]));
    }
    let phone = p.get("phone").map(str::to_string).unwrap_or(of_type);
    if phone.is_empty() {
        return Err(FuncError::missed_param("phone"));
    }
    if !valid_phone(&phone) {
        return Err(FuncError::value(
            "phone",
            &phone,
            format!("'{phone}' is not a phone number"),
        ));
    }
    let message = p.required("message")?.to_string();
    let notifier = host.notifier("sms").cloned().ok_or_else(|| {
        FuncError::new(
            ErrorType::Missed,
            "notifier",
            "sms",
            "No notifier plugin for SMS is loaded",
        )
    })?;
    let name = notifier.name().to_string();
    let id = ctx.write(|w| {
        w.db.prepare_cached(
            "INSERT INTO sms (account_id, phone, message, notifier, status, created)
             VALUES (?1, ?2, ?3, ?4, 'queued', ?5)",
        )?
        .execute(params![account, phone, message, name, w.now])?;
        let id = w.db.last_insert_rowid()?;
        w.history(
            "account",
            account,
            format!("SMS {id} to {phone} queued ({name})"),
        )?;
        Ok(id)
    })?;
    let msg = sdk::Message {
        settings: notifier.settings.clone(),
        channel: "sms".into(),
        to: phone.clone(),
        text: message,
        id,
    };
    let outcome: Result<sdk::Delivery, super::CallError> = notifier.call("notify.send", &msg);
    let (status, error) = match &outcome {
        Ok(_) => ("sent", String::new()),
        Err(e) => ("failed", e.message()),
    };
    ctx.write(|w| {
        w.db.prepare_cached("UPDATE sms SET status = ?2, error = ?3 WHERE id = ?1")?
            .execute(params![id, status, error])?;
        let text = if error.is_empty() {
            format!("SMS {id} to {phone} sent")
        } else {
            format!("SMS {id} to {phone} failed: {error}")
        };
        w.history("account", account, text)
    })?;
    let mut fields = vec![
        ("id".into(), id.to_string()),
        ("status".into(), status.to_string()),
    ];
    if !error.is_empty() {
        fields.push(("delivery_error".into(), error));
    }
    Ok(Doc::Ok(fields))
}
