//! The gateway flow, owned by the host: the payment and refund state machines and their
//! idempotency live here and in `ledger`; a gateway plugin only starts payments, reads the
//! callbacks it signed, answers status checks and refunds.
//!
//! Every func here that calls a plugin runs as `ActionMode::CallOut`: it records the intent in
//! one transaction, commits, calls the plugin outside any transaction, then records the outcome
//! in a new transaction, where the state transition is checked again (so a replayed or
//! concurrent duplicate finds the work done and changes nothing).

use super::{CallError, Plugin, PluginHost};
use crate::clock;
use crate::doc::{Doc, Fields};
use crate::engine::Ctx;
use crate::error::{ErrorType, FuncError, FuncResult};
use crate::func::{Access, ActionMode, EditOps, FuncDecl, Handler, Param, Ty};
use crate::funcs::{ACCOUNT, PAYMENT};
use crate::ledger::{self, status};
use crate::money;
use crate::params::{Params, parse_id};
use crate::store::{Connection, OptionalExtension, params};
use billhost_plugin_sdk as sdk;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The payment method's module and settings.
fn method_module(conn: &Connection, paymethod: i64) -> FuncResult<(String, Value)> {
    let (module, settings): (String, String) = conn
        .prepare_cached("SELECT module, settings FROM paymethod WHERE id = ?1")?
        .query_row([paymethod], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .ok_or_else(|| FuncError::missed_object("paymethod", paymethod))?;
    let settings = serde_json::from_str(&settings).unwrap_or(Value::Null);
    Ok((module, settings))
}

/// What the gateway needs to know of a payment.
struct GatewayPayment {
    id: i64,
    paymethod: i64,
    number: String,
    status: i64,
    account: i64,
    /// Minor units of the method's currency.
    amount: i64,
    currency: ledger::Currency,
    external_id: Option<String>,
    description: String,
}

impl GatewayPayment {
    fn amount_text(&self) -> String {
        money::format_minor(self.amount, self.currency.scale)
    }
}

fn gateway_payment(conn: &Connection, id: i64) -> FuncResult<GatewayPayment> {
    type Row = (
        Option<i64>,
        String,
        i64,
        i64,
        i64,
        i64,
        Option<String>,
        String,
    );
    let row: Option<Row> = conn
        .prepare_cached(
            "SELECT paymethod_id, number, status, account_id, paymethodamount, currency_id, external_id, description
             FROM payment WHERE id = ?1",
        )?
        .query_row([id], |r| r.try_into())
        .optional()?;
    let (paymethod, number, status, account, amount, currency, external_id, description) =
        row.ok_or_else(|| FuncError::missed_object("payment", id))?;
    Ok(GatewayPayment {
        id,
        paymethod: paymethod.ok_or_else(|| {
            FuncError::value("elid", id.to_string(), "The payment has no payment method")
        })?,
        number,
        status,
        account,
        amount,
        currency: ledger::currency(conn, currency)?,
        external_id,
        description,
    })
}

/// The gateway plugin of a payment method, if its module is a loaded gateway.
fn gateway_of(
    host: &PluginHost,
    conn: &Connection,
    paymethod: i64,
) -> FuncResult<Option<(Arc<Plugin>, Value)>> {
    let (module, settings) = method_module(conn, paymethod)?;
    Ok(host.gateway(&module).map(|p| (p.clone(), settings)))
}

fn sok(p: &Params) -> bool {
    p.has("sok")
}

fn original(engine: &crate::Engine, name: &str) -> Arc<FuncDecl> {
    engine
        .registry()
        .get(name)
        .cloned()
        .unwrap_or_else(|| panic!("the built-in func {name} is registered before plugins"))
}

pub fn install(engine: &mut crate::Engine, host: &Arc<PluginHost>) {
    install_paymethod_edit(engine, host);
    // Without a gateway the built-in payment.add and payment.refund stay as they are (one write
    // transaction each, script hooks included).
    if host
        .plugins()
        .iter()
        .any(|p| p.manifest.kind == sdk::Kind::Gateway)
    {
        install_payment_add(engine, host);
        install_payment_refund(engine, host);
    }

    let h = host.clone();
    engine.add_func(
        FuncDecl::action(
            "payment.callback",
            "A payment gateway's notification",
            Access::PUBLIC,
            ActionMode::CallOut,
            move |ctx, p| callback(ctx, &h, p),
        )
        .params(vec![
            Param::new("module", Ty::Text(64)).required(),
            Param::new(
                "paymethod",
                Ty::Int {
                    min: 1,
                    max: i64::MAX,
                },
            ),
            Param::new("body", Ty::LongText(1 << 20)),
            Param::new("signature", Ty::Text(1024)),
            Param::new("headers", Ty::LongText(1 << 16)),
        ]),
    );
    let h = host.clone();
    engine.add_func(
        FuncDecl::action(
            "payment.checkpay",
            "Ask the gateways about payments in progress",
            Access::ADMIN,
            ActionMode::CallOut,
            move |ctx, p| checkpay(ctx, &h, p),
        )
        .params(vec![Param::new("elid", Ty::Ref(PAYMENT))]),
    );
    let h = host.clone();
    engine.add_func(FuncDecl::action(
        "payment.refund.retry",
        "Ask the gateways again about pending refunds",
        Access::ADMIN,
        ActionMode::CallOut,
        move |ctx, p| retry_refunds(ctx, &h, p),
    ));
}

// ---------------------------------------------------------------------------------------------
// Payment methods: the module is a loaded gateway (or `manual`), its settings are the plugin's.

/// What a payment method's view shows in place of a secret setting; sent back, it keeps the
/// stored value.
pub const SECRET_MASK: &str = "********";

/// A settings key named like a secret: it contains `secret`, `password`, `passwd`, `token` or
/// `private`, or is `key` or ends in `key` (`api_key`, `apikey`, `signing_key`), in any case.
/// Masking a key that is not a secret costs little: the mask sent back keeps its value.
pub fn secret_like(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["secret", "password", "passwd", "token", "private"]
        .iter()
        .any(|word| key.contains(word))
        || key.ends_with("key")
}

struct PaymethodEdit {
    inner: Arc<FuncDecl>,
    host: Arc<PluginHost>,
}

impl PaymethodEdit {
    fn ops(&self) -> &dyn EditOps {
        match &self.inner.handler {
            Handler::Edit(ops) => ops.as_ref(),
            _ => unreachable!("paymethod.edit is an edit func"),
        }
    }

    /// Checks the module and settings the method will have; answers the settings to store when
    /// they were given.
    fn check(&self, ctx: &Ctx, current: Option<i64>, p: &Params) -> FuncResult<Option<String>> {
        let (cur_module, cur_settings) = match current {
            Some(id) => method_module(ctx.db, id)?,
            None => ("manual".into(), Value::Object(Default::default())),
        };
        let module = p.get("module").unwrap_or(&cur_module).to_string();
        let given = match p.raw("settings") {
            Some(text) => {
                let text = if text.trim().is_empty() { "{}" } else { text };
                // The errors never echo the text: it may hold a secret.
                let mut v: Value = serde_json::from_str(text).map_err(|e| {
                    FuncError::value("settings", "", format!("The settings are not JSON: {e}"))
                })?;
                let Some(given) = v.as_object_mut() else {
                    return Err(FuncError::value(
                        "settings",
                        "",
                        "The settings are a JSON object",
                    ));
                };
                // The mask a view shows for a secret, sent back with the rest of the settings,
                // keeps the stored secret (or nothing, when none is stored).
                let masked: Vec<String> = given
                    .iter()
                    .filter(|(_, value)| value.as_str() == Some(SECRET_MASK))
                    .map(|(key, _)| key.clone())
                    .collect();
                for key in masked {
                    match cur_settings.get(&key) {
                        Some(stored) => given.insert(key, stored.clone()),
                        None => given.remove(&key),
                    };
                }
                Some(v)
            }
            None => None,
        };
        let plugin = self.host.gateway(&module);
        if plugin.is_none() && module != "manual" {
            let loaded: Vec<&str> = self
                .host
                .plugins()
                .iter()
                .filter(|p| p.manifest.kind == sdk::Kind::Gateway)
                .map(|p| p.name())
                .collect();
            return Err(FuncError::value(
                "module",
                &module,
                format!(
                    "No gateway plugin '{module}' is loaded (loaded: {})",
                    if loaded.is_empty() {
                        "none".to_string()
                    } else {
                        loaded.join(", ")
                    }
                ),
            ));
        }
        if let Some(plugin) = plugin
            && (given.is_some() || p.get("module").is_some() || p.get("currency").is_some())
        {
            let settings = given.clone().unwrap_or(cur_settings);
            // The gateway also says whether it takes the method's currency (an unknown currency
            // is left to paymethod.edit's own checks).
            let currency_id = match (p.get("currency"), current) {
                (Some(v), _) => v.parse::<i64>().ok(),
                (None, Some(id)) => ctx
                    .db
                    .prepare_cached("SELECT currency_id FROM paymethod WHERE id = ?1")?
                    .query_row([id], |r| r.get(0))
                    .optional()?,
                (None, None) => None,
            };
            let iso = currency_id
                .and_then(|id| ledger::currency(ctx.db, id).ok())
                .map(|c| c.iso);
            plugin
                .validate_method(&settings, iso.as_deref())
                .map_err(|e| match e {
                    CallError::Plugin(e) => FuncError::value(
                        "settings",
                        "",
                        format!(
                            "The {module} gateway refuses the settings{}: {}",
                            if e.object.is_empty() {
                                String::new()
                            } else {
                                format!(" ({})", e.object)
                            },
                            e.message
                        ),
                    ),
                    broken => broken.into_func_error(&module),
                })?;
        }
        Ok(given.map(|v| v.to_string()))
    }

    /// Whether `key` of a `module` method's settings is a secret: what its gateway declares,
    /// and any key named like a secret ([`secret_like`]: a gateway built before
    /// `secret_settings` existed declares none); every key while no gateway of that name is
    /// loaded (nothing tells which are not); none for `manual`.
    fn secret(&self, module: &str, key: &str) -> bool {
        if module == "manual" {
            return false;
        }
        match self.host.gateway(module) {
            Some(plugin) => {
                secret_like(key) || plugin.manifest.secret_settings.iter().any(|s| s == key)
            }
            None => true,
        }
    }

    fn store(&self, ctx: &Ctx, id: i64, settings: Option<String>) -> FuncResult<()> {
        if let Some(s) = settings
            && crate::funcs::set_column(ctx, "paymethod", "settings", id, &s)?
        {
            // The settings may hold secrets: the history says that they changed, not what.
            ctx.history("paymethod", id, "settings changed")?;
        }
        Ok(())
    }
}

impl EditOps for PaymethodEdit {
    fn view(&self, ctx: &Ctx, elid: i64, plid: Option<i64>) -> FuncResult<Fields> {
        let mut fields = self.ops().view(ctx, elid, plid)?;
        let (module, mut settings) = method_module(ctx.db, elid)?;
        if let Some(settings) = settings.as_object_mut() {
            for (key, value) in settings.iter_mut() {
                if !value.is_null() && self.secret(&module, key) {
                    *value = Value::String(SECRET_MASK.into());
                }
            }
        }
        fields.push(("settings".into(), settings.to_string()));
        Ok(fields)
    }

    fn blank(&self, ctx: &Ctx, plid: Option<i64>) -> FuncResult<Fields> {
        let mut fields = self.ops().blank(ctx, plid)?;
        fields.push(("settings".into(), "{}".into()));
        Ok(fields)
    }

    fn create(&self, ctx: &Ctx, plid: Option<i64>, p: &Params) -> FuncResult<i64> {
        let settings = self.check(ctx, None, p)?;
        let id = self.ops().create(ctx, plid, p)?;
        self.store(ctx, id, settings)?;
        Ok(id)
    }

    fn change(&self, ctx: &Ctx, elid: i64, plid: Option<i64>, p: &Params) -> FuncResult<()> {
        let settings = self.check(ctx, Some(elid), p)?;
        self.ops().change(ctx, elid, plid, p)?;
        self.store(ctx, elid, settings)
    }
}

fn install_paymethod_edit(engine: &mut crate::Engine, host: &Arc<PluginHost>) {
    let inner = original(engine, "paymethod.edit");
    let mut params: Vec<Param> = inner
        .params
        .iter()
        .map(|p| {
            if p.name == "module" {
                Param::new("module", Ty::Text(64))
            } else {
                p.clone()
            }
        })
        .collect();
    params.push(Param::new("settings", Ty::LongText(16_000)));
    let mut decl = FuncDecl::edit(
        &inner.name,
        &inner.title,
        inner.access,
        PaymethodEdit {
            inner: inner.clone(),
            host: host.clone(),
        },
    )
    .params(params);
    decl.object = inner.object;
    decl.parent = inner.parent;
    decl.parent_required = inner.parent_required;
    engine.add_func(decl);
}

// ---------------------------------------------------------------------------------------------
// payment.add: the payment is created (status 1) and committed, then the gateway starts it.

fn install_payment_add(engine: &mut crate::Engine, host: &Arc<PluginHost>) {
    let inner = original(engine, "payment.add");
    let h = host.clone();
    let wrapped = inner.clone();
    let mut decl = FuncDecl::action(
        &inner.name,
        &inner.title,
        inner.access,
        ActionMode::CallOut,
        move |ctx, p| {
            let Handler::Action(create) = &wrapped.handler else {
                unreachable!("payment.add is an action");
            };
            if !sok(p) {
                return Ok(Doc::Form(
                    wrapped
                        .params
                        .iter()
                        .map(|p| (p.name.clone().into(), String::new()))
                        .collect(),
                ));
            }
            let created = ctx.write(|w| create(w, p))?;
            let Some(id) = created.field("id").and_then(|v| v.parse::<i64>().ok()) else {
                return Ok(created);
            };
            start_payment(ctx, &h, id)
        },
    )
    .params(inner.params.clone());
    decl.parent = inner.parent;
    decl.parent_required = inner.parent_required;
    engine.add_func(decl);
}

/// Asks the payment's gateway to start it and records what it said. A method whose module is
/// no loaded gateway answers the created payment as it is.
fn start_payment(ctx: &Ctx, host: &PluginHost, id: i64) -> FuncResult<Doc> {
    let prepared = ctx.write(|w| {
        let gp = gateway_payment(w.db, id)?;
        let Some((plugin, settings)) = gateway_of(host, w.db, gp.paymethod)? else {
            return Ok(None);
        };
        let req = sdk::StartRequest {
            settings,
            payment_id: gp.id,
            paymethod_id: gp.paymethod,
            number: gp.number.clone(),
            amount: gp.amount_text(),
            currency: gp.currency.iso.clone(),
            account_id: gp.account,
            description: gp.description.clone(),
        };
        Ok(Some((plugin, req)))
    })?;
    let Some((plugin, req)) = prepared else {
        return Ok(Doc::created(id));
    };
    let answer: Result<sdk::StartResponse, CallError> = plugin.call("gateway.start", &req);
    let name = plugin.name().to_string();
    match answer {
        Err(e) => {
            let text = e.message();
            ctx.write(|w| {
                w.history(
                    "payment",
                    id,
                    format!("the {name} gateway could not start the payment: {text}"),
                )
            })?;
            let mut err = e.into_func_error(&name);
            err.msg = format!(
                "The payment {id} was created but the gateway could not start it: {}",
                err.msg
            );
            Err(err)
        }
        Ok(resp) => {
            let goes_on = resp.redirect_url.is_some() || resp.form_action.is_some();
            let status = ctx.write(|w| {
                if let Some(ext) = &resp.external_id {
                    w.db.prepare_cached(
                        "UPDATE payment SET external_id = ?2 WHERE id = ?1 AND external_id IS NULL",
                    )?
                    .execute(params![id, ext])?;
                }
                if goes_on {
                    w.db.prepare_cached(
                        "UPDATE payment SET status = 2 WHERE id = ?1 AND status = 1",
                    )?
                    .execute([id])?;
                }
                let mut text = format!("started at the {name} gateway");
                if let Some(ext) = &resp.external_id {
                    text.push_str(&format!(" as {ext}"));
                }
                if let Some(url) = &resp.redirect_url {
                    text.push_str(&format!("; payer sent to {url}"));
                }
                w.history("payment", id, text)?;
                Ok(ledger::payment(w.db, id)?.status)
            })?;
            let mut fields: Fields = vec![
                ("id".into(), id.to_string()),
                ("status".into(), status.to_string()),
            ];
            if let Some(ext) = resp.external_id {
                fields.push(("external_id".into(), ext));
            }
            if let Some(url) = resp.redirect_url {
                fields.push(("redirect_url".into(), url));
            }
            if let Some(action) = resp.form_action {
                fields.push(("form_action".into(), action));
                for (k, v) in resp.form {
                    fields.push((format!("form_{k}").into(), v));
                }
            }
            if let Some(text) = resp.instructions {
                fields.push(("instructions".into(), text));
            }
            Ok(Doc::Ok(fields))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// payment.callback

/// `Name: value` lines.
fn parse_headers(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

/// The payment method a callback is for: the one given, which must use the module, or the only
/// active method that does.
fn callback_method(conn: &Connection, module: &str, given: Option<i64>) -> FuncResult<i64> {
    if let Some(id) = given {
        let (m, _) = method_module(conn, id)?;
        if m != module {
            return Err(FuncError::value(
                "paymethod",
                id.to_string(),
                format!("The payment method {id} does not use the module '{module}'"),
            ));
        }
        return Ok(id);
    }
    let ids: Vec<i64> = conn
        .prepare_cached("SELECT id FROM paymethod WHERE module = ?1 AND active = 1 ORDER BY id")?
        .query_map([module], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    match ids.as_slice() {
        [id] => Ok(*id),
        [] => Err(FuncError::new(
            ErrorType::Missed,
            "paymethod",
            module,
            format!("No active payment method uses the module '{module}'"),
        )),
        _ => Err(FuncError::value(
            "paymethod",
            "",
            format!("Several payment methods use the module '{module}': pass paymethod=ID"),
        )),
    }
}

fn callback(ctx: &Ctx, host: &PluginHost, p: &Params) -> FuncResult<Doc> {
    let module = p.required("module")?;
    let plugin = host.gateway(module).cloned().ok_or_else(|| {
        FuncError::value(
            "module",
            module,
            format!("No gateway plugin '{module}' is loaded"),
        )
    })?;
    let given = p
        .get("paymethod")
        .map(|v| parse_id("paymethod", v))
        .transpose()?;
    let paymethod = callback_method(ctx.db, module, given)?;
    let (_, settings) = method_module(ctx.db, paymethod)?;
    let mut headers = parse_headers(p.raw("headers").unwrap_or(""));
    if let Some(sig) = p.get("signature") {
        headers.insert("signature".into(), sig.to_string());
    }
    let req = sdk::CallbackRequest {
        settings,
        paymethod_id: paymethod,
        body: p.raw("body").unwrap_or("").to_string(),
        headers,
        remote_addr: ctx.caller.ip.clone(),
    };
    let report: sdk::CallbackReport = plugin
        .call("gateway.callback", &req)
        .map_err(|e| e.into_func_error(module))?;
    // Nothing of ours (another integration's payment on the same account): acknowledged so
    // that the provider stops sending it; nothing changes and there is no payment to note it on.
    if let Some(why) = &report.ignored {
        let mut fields = vec![("ignored".into(), why.clone())];
        if let Some(reply) = &report.reply {
            fields.push(("reply".into(), reply.clone()));
        }
        return Ok(Doc::Ok(fields));
    }
    // A rejected callback is recorded in history and committed, then answered as an error; a
    // failure of the database rolls everything back.
    ctx.write(|w| apply_callback(w, module, paymethod, &report))?
}

/// Applies a callback inside one write transaction. The outer error rolls back; the inner one
/// is a rejection whose history rows are committed.
fn apply_callback(
    ctx: &Ctx,
    module: &str,
    paymethod: i64,
    report: &sdk::CallbackReport,
) -> FuncResult<FuncResult<Doc>> {
    let by_external: Option<i64> = ctx
        .db
        .prepare_cached("SELECT id FROM payment WHERE paymethod_id = ?1 AND external_id = ?2")?
        .query_row(params![paymethod, report.external_id], |r| r.get(0))
        .optional()?;
    let Some(id) = report.payment_id.or(by_external) else {
        return Ok(Err(FuncError::new(
            ErrorType::Missed,
            "payment",
            &report.external_id,
            format!(
                "No payment of method {paymethod} has the external id '{}'",
                report.external_id
            ),
        )));
    };
    let gp = match gateway_payment(ctx.db, id) {
        Ok(gp) if gp.paymethod == paymethod => gp,
        _ => {
            return Ok(Err(FuncError::new(
                ErrorType::Missed,
                "payment",
                id.to_string(),
                format!("The payment {id} is not a payment of method {paymethod}"),
            )));
        }
    };
    let claim = format!(
        "{} {} {:?}, external id {}",
        report.amount, gp.currency.iso, report.outcome, report.external_id
    );
    let reject = |msg: String, object: &str, value: &str| -> FuncResult<FuncResult<Doc>> {
        ctx.history("payment", id, format!("{module} callback rejected: {msg}"))?;
        Ok(Err(FuncError::value(object, value, msg)))
    };
    if !report.verified {
        return match &report.reason {
            Some(reason) => reject(
                format!("{reason} (it claimed {claim}); nothing changed"),
                "body",
                "",
            ),
            None => reject(
                format!("the signature does not verify (it claimed {claim}); nothing changed"),
                "signature",
                "",
            ),
        };
    }
    if let Some(ext) = &gp.external_id
        && *ext != report.external_id
    {
        return reject(
            format!(
                "the payment's external id is {ext}, the callback says {claim}; nothing changed"
            ),
            "external_id",
            &report.external_id,
        );
    }
    if by_external.is_some_and(|other| other != id) {
        return reject(
            format!("the external id belongs to another payment ({claim}); nothing changed"),
            "external_id",
            &report.external_id,
        );
    }
    if !report.refunds.is_empty() {
        return apply_refund_notices(ctx, module, &gp, report);
    }
    let amount = money::parse_minor(&report.amount, gp.currency.scale, "amount").ok();
    if amount != Some(gp.amount) {
        return reject(
            format!(
                "the amount {} {iso} differs from the payment's {} {iso} ({claim}); nothing changed",
                report.amount,
                gp.amount_text(),
                iso = gp.currency.iso
            ),
            "amount",
            &report.amount,
        );
    }
    let now = match (report.outcome, gp.status) {
        (sdk::Outcome::Paid, status::NEW | status::IN_PROGRESS) => {
            ledger::set_paid(ctx, id)?;
            ctx.history("payment", id, format!("{module} callback: paid ({claim})"))?;
            status::PAID
        }
        (sdk::Outcome::Paid, status::PAID | status::REFUND_PENDING | status::REFUNDED) => {
            ctx.history(
                "payment",
                id,
                format!("{module} callback repeated ({claim}): already paid, nothing changed"),
            )?;
            gp.status
        }
        (sdk::Outcome::Pending, status::NEW) => {
            ctx.db
                .prepare_cached("UPDATE payment SET status = 2 WHERE id = ?1 AND status = 1")?
                .execute([id])?;
            ctx.history("payment", id, format!("{module} callback: in progress"))?;
            status::IN_PROGRESS
        }
        (sdk::Outcome::Pending, s) => s,
        (sdk::Outcome::Failed, status::NEW | status::IN_PROGRESS) => {
            ctx.db
                .prepare_cached("UPDATE payment SET status = 9 WHERE id = ?1")?
                .execute([id])?;
            ctx.history(
                "payment",
                id,
                format!("{module} callback: the payment failed ({claim}); canceled"),
            )?;
            status::CANCELED
        }
        (_, s) => {
            return reject(
                format!(
                    "the payment is {} and the callback says {claim}; nothing changed, check it by hand",
                    status::name(s)
                ),
                "status",
                &s.to_string(),
            );
        }
    };
    // Recorded only for a callback that was applied: a rejected one leaves the payment as it was.
    if gp.external_id.is_none() {
        ctx.db
            .prepare_cached("UPDATE payment SET external_id = ?2 WHERE id = ?1")?
            .execute(params![id, report.external_id])?;
    }
    let mut fields = vec![
        ("payment".into(), id.to_string()),
        ("status".into(), now.to_string()),
    ];
    if let Some(reply) = &report.reply {
        fields.push(("reply".into(), reply.clone()));
    }
    Ok(Ok(Doc::Ok(fields)))
}

/// A verified callback about refunds of the payment: each pending refund it confirms (found by
/// the host's refund id the gateway echoes, else by the gateway's refund id, and for the same
/// amount) is completed; anything else (a refund made at the gateway and unknown here, one
/// already complete, one not confirmed yet) changes nothing but a history line. Answers ok so
/// that the gateway stops sending it.
fn apply_refund_notices(
    ctx: &Ctx,
    module: &str,
    gp: &GatewayPayment,
    report: &sdk::CallbackReport,
) -> FuncResult<FuncResult<Doc>> {
    let id = gp.id;
    let iso = &gp.currency.iso;
    for notice in &report.refunds {
        let by_id: Option<(i64, i64, i64, Option<String>)> = match notice.refund_id {
            Some(refund) => ctx
                .db
                .prepare_cached(
                    "SELECT id, status, paymethodamount, external_id FROM refund WHERE id = ?1 AND payment_id = ?2",
                )?
                .query_row(params![refund, id], |r| r.try_into())
                .optional()?,
            None => None,
        };
        let row = match by_id {
            Some(row) => Some(row),
            None => ctx
                .db
                .prepare_cached(
                    "SELECT id, status, paymethodamount, external_id FROM refund WHERE payment_id = ?1 AND external_id = ?2",
                )?
                .query_row(params![id, notice.external_id], |r| r.try_into())
                .optional()?,
        };
        let what = format!(
            "refund {} of {} {iso} ({:?})",
            notice.external_id, notice.amount, notice.outcome
        );
        let Some((refund, st, amount, external)) = row else {
            ctx.history(
                "payment",
                id,
                format!(
                    "{module} callback: {what} is not a refund recorded here (made at the gateway?); nothing changed, record it by hand"
                ),
            )?;
            continue;
        };
        let same_amount =
            money::parse_minor(&notice.amount, gp.currency.scale, "amount").ok() == Some(amount);
        let other_external = external.as_deref().is_some_and(|e| e != notice.external_id);
        if !same_amount || other_external {
            ctx.history(
                "payment",
                id,
                format!(
                    "{module} callback: {what} does not match refund {refund} ({} {iso}, external id {}); nothing changed",
                    money::format_minor(amount, gp.currency.scale),
                    external.as_deref().unwrap_or("none")
                ),
            )?;
            continue;
        }
        match (notice.outcome, st) {
            (sdk::RefundOutcome::Done, status::REFUND_PENDING) => {
                ledger::complete_refund(ctx, refund, Some(&notice.external_id))?;
                ctx.history(
                    "payment",
                    id,
                    format!("{module} callback: refund {refund} confirmed ({what})"),
                )?;
            }
            (sdk::RefundOutcome::Pending, status::REFUND_PENDING) => {
                ctx.db
                    .prepare_cached(
                        "UPDATE refund SET external_id = coalesce(external_id, ?2) WHERE id = ?1",
                    )?
                    .execute(params![refund, notice.external_id])?;
                ctx.history(
                    "payment",
                    id,
                    format!("{module} callback: refund {refund} not confirmed yet ({what})"),
                )?;
            }
            _ => {
                ctx.history(
                    "payment",
                    id,
                    format!(
                        "{module} callback repeated: refund {refund} is already {} ({what}); nothing changed",
                        status::name(st)
                    ),
                )?;
            }
        }
    }
    let now = ledger::payment(ctx.db, id)?.status;
    let mut fields = vec![
        ("payment".into(), id.to_string()),
        ("status".into(), now.to_string()),
    ];
    if let Some(reply) = &report.reply {
        fields.push(("reply".into(), reply.clone()));
    }
    Ok(Ok(Doc::Ok(fields)))
}

// ---------------------------------------------------------------------------------------------
// payment.checkpay

fn checkpay(ctx: &Ctx, host: &PluginHost, p: &Params) -> FuncResult<Doc> {
    let ids: Vec<i64> = match p.get("elid") {
        Some(v) => vec![parse_id("elid", v)?],
        None => ctx.engine().read(|c| {
            Ok(
                c.prepare_cached("SELECT id FROM payment WHERE status = 2 ORDER BY id")?
                    .query_map([], |r| r.get(0))?
                    .collect::<Result<_, _>>()?,
            )
        })?,
    };
    let (mut checked, mut paid, mut failed, mut pending, mut errors) = (0, 0, 0, 0, 0);
    for id in ids {
        let prepared = ctx.engine().read(|c| {
            let gp = gateway_payment(c, id)?;
            let gateway = gateway_of(host, c, gp.paymethod)?;
            Ok((gp, gateway))
        })?;
        let (gp, Some((plugin, settings))) = prepared else {
            continue;
        };
        if !plugin.has_feature("checkpay")
            || !matches!(gp.status, status::NEW | status::IN_PROGRESS)
        {
            continue;
        }
        checked += 1;
        let req = sdk::CheckRequest {
            settings,
            payment_id: id,
            external_id: gp.external_id.clone(),
            amount: gp.amount_text(),
            currency: gp.currency.iso.clone(),
        };
        let name = plugin.name().to_string();
        let report: sdk::CheckReport = match plugin.call("gateway.check", &req) {
            Ok(r) => r,
            Err(e) => {
                errors += 1;
                let text = e.message();
                ctx.write(|w| {
                    w.history("payment", id, format!("{name} status check failed: {text}"))
                })?;
                continue;
            }
        };
        let result = ctx.write(|w| {
            let gp = gateway_payment(w.db, id)?;
            if !matches!(gp.status, status::NEW | status::IN_PROGRESS) {
                return Ok(gp.status);
            }
            if let Some(a) = &report.amount
                && money::parse_minor(a, gp.currency.scale, "amount").ok() != Some(gp.amount)
            {
                w.history(
                    "payment",
                    id,
                    format!(
                        "{name} status check: the amount {a} differs from the payment's {}; nothing changed",
                        gp.amount_text()
                    ),
                )?;
                return Ok(-1);
            }
            match report.outcome {
                sdk::Outcome::Paid => {
                    if gp.external_id.is_none()
                        && let Some(ext) = &report.external_id
                    {
                        w.db.prepare_cached("UPDATE payment SET external_id = ?2 WHERE id = ?1")?
                            .execute(params![id, ext])?;
                    }
                    ledger::set_paid(w, id)?;
                    w.history("payment", id, format!("{name} status check: paid"))?;
                    Ok(status::PAID)
                }
                sdk::Outcome::Failed => {
                    w.db.prepare_cached("UPDATE payment SET status = 9 WHERE id = ?1")?
                        .execute([id])?;
                    w.history(
                        "payment",
                        id,
                        format!("{name} status check: the payment failed; canceled"),
                    )?;
                    Ok(status::CANCELED)
                }
                sdk::Outcome::Pending => Ok(gp.status),
            }
        })?;
        match (result, report.outcome) {
            (-1, _) => errors += 1,
            (status::PAID, sdk::Outcome::Paid) => paid += 1,
            (status::CANCELED, sdk::Outcome::Failed) => failed += 1,
            _ => pending += 1,
        }
    }
    Ok(Doc::Ok(vec![
        ("checked".into(), checked.to_string()),
        ("paid".into(), paid.to_string()),
        ("failed".into(), failed.to_string()),
        ("pending".into(), pending.to_string()),
        ("errors".into(), errors.to_string()),
    ]))
}

// ---------------------------------------------------------------------------------------------
// Refunds

fn install_payment_refund(engine: &mut crate::Engine, host: &Arc<PluginHost>) {
    let inner = original(engine, "payment.refund");
    let h = host.clone();
    let wrapped = inner.clone();
    let mut decl = FuncDecl::action(
        &inner.name,
        &inner.title,
        inner.access,
        ActionMode::CallOut,
        move |ctx, p| {
            let Handler::Edit(ops) = &wrapped.handler else {
                unreachable!("payment.refund is an edit func");
            };
            let id = parse_id("elid", p.required("elid")?)?;
            let plid = p.get("plid").map(|v| parse_id("plid", v)).transpose()?;
            if !sok(p) {
                let mut form = vec![("elid".into(), id.to_string())];
                form.extend(ops.view(ctx, id, plid)?);
                return Ok(Doc::Form(form));
            }
            let gp = gateway_payment(ctx.db, id)?;
            match gateway_of(&h, ctx.db, gp.paymethod)? {
                Some((plugin, _)) if plugin.has_feature("refund") => gateway_refund(ctx, &h, id, p),
                _ => ctx
                    .write(|w| ops.change(w, id, plid, p))
                    .map(|()| Doc::ok()),
            }
        },
    )
    .object(PAYMENT)
    .params(inner.params.clone());
    decl.parent = inner.parent.or(Some(ACCOUNT));
    engine.add_func(decl);
}

/// Records the refund pending, asks the gateway, records its answer.
fn gateway_refund(ctx: &Ctx, host: &PluginHost, id: i64, p: &Params) -> FuncResult<Doc> {
    let refund = ctx.write(|w| {
        let gp = gateway_payment(w.db, id)?;
        let text = p.required("amount")?;
        let amount = money::parse_minor(text, gp.currency.scale, "amount")?;
        let Some((plugin, _)) = gateway_of(host, w.db, gp.paymethod)? else {
            return Err(FuncError::internal("the gateway went away"));
        };
        if gp.external_id.is_none() {
            return Err(FuncError::value(
                "elid",
                id.to_string(),
                format!(
                    "The payment {id} is not known to the {} gateway (no external id)",
                    plugin.name()
                ),
            ));
        }
        let payment = ledger::payment(w.db, id)?;
        let (_, left) = ledger::refundable(w.db, &payment)?;
        if amount < left && amount > 0 && !plugin.has_feature("partial_refund") {
            return Err(FuncError::value(
                "amount",
                text,
                format!(
                    "The {} gateway refunds only in full: {} {}",
                    plugin.name(),
                    money::format_minor(left, gp.currency.scale),
                    gp.currency.iso
                ),
            ));
        }
        ledger::start_gateway_refund(w, id, amount, p.get("description").unwrap_or(""))
    })?;
    let (outcome, error) = ask_refund(ctx, host, refund)?;
    let mut fields = vec![
        ("refund".into(), refund.to_string()),
        ("status".into(), outcome.to_string()),
    ];
    if let Some(e) = error {
        fields.push(("refund_error".into(), e));
    }
    Ok(Doc::Ok(fields))
}

/// Asks the gateway for a pending refund (again) and records the answer: confirmed (6), still
/// pending (5), or failed (stays 5 with the error and one more attempt). Answers the refund's
/// status and the error.
fn ask_refund(ctx: &Ctx, host: &PluginHost, refund: i64) -> FuncResult<(i64, Option<String>)> {
    let prepared =
        ctx.engine().read(|c| {
            let (payment, amount, st, description): (i64, i64, i64, String) = c
            .prepare_cached(
                "SELECT payment_id, paymethodamount, status, description FROM refund WHERE id = ?1",
            )?
            .query_row([refund], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .optional()?
            .ok_or_else(|| FuncError::missed_object("refund", refund))?;
            let gp = gateway_payment(c, payment)?;
            let gateway = gateway_of(host, c, gp.paymethod)?;
            Ok((payment, amount, st, description, gp, gateway))
        })?;
    let (payment, amount, st, description, gp, gateway) = prepared;
    if st != status::REFUND_PENDING {
        return Ok((st, None));
    }
    let Some((plugin, settings)) = gateway else {
        return Ok((st, Some("the payment's gateway is not loaded".into())));
    };
    let req = sdk::RefundRequest {
        settings,
        refund_id: refund,
        payment_id: payment,
        external_id: gp.external_id.clone(),
        amount: money::format_minor(amount, gp.currency.scale),
        currency: gp.currency.iso.clone(),
        payment_amount: gp.amount_text(),
        description,
    };
    let name = plugin.name().to_string();
    let answer: Result<sdk::RefundReport, CallError> = plugin.call("gateway.refund", &req);
    ctx.write(|w| {
        let attempts: i64 = w
            .db
            .prepare_cached(
                "UPDATE refund SET attempts = attempts + 1, next_attempt = NULL WHERE id = ?1 \
                 RETURNING attempts",
            )?
            .query_row([refund], |r| r.get(0))?;
        match &answer {
            Ok(r) if r.outcome == sdk::RefundOutcome::Done => {
                ledger::complete_refund(w, refund, r.external_id.as_deref())?;
                Ok((status::REFUNDED, None))
            }
            Ok(r) => {
                w.db.prepare_cached(
                    "UPDATE refund SET external_id = coalesce(?2, external_id), error = '' WHERE id = ?1",
                )?
                .execute(params![refund, r.external_id])?;
                w.history(
                    "payment",
                    payment,
                    format!("refund {refund} accepted by {name}, awaiting confirmation"),
                )?;
                Ok((status::REFUND_PENDING, None))
            }
            Err(e) => {
                let text = e.message();
                let next = clock::format_unix(clock::unix_now() + refund_retry_delay(attempts));
                w.db.prepare_cached(
                    "UPDATE refund SET error = ?2, next_attempt = ?3 WHERE id = ?1 AND status = 5",
                )?
                .execute(params![refund, text, next])?;
                w.history(
                    "payment",
                    payment,
                    format!("refund {refund} failed at {name}: {text}; it stays pending and is retried"),
                )?;
                Ok((status::REFUND_PENDING, Some(text)))
            }
        }
    })
}

/// How long after its `attempts`-th ask a refund the gateway failed waits before the retry job
/// asks again: 5 minutes (the job's period), then longer, then once a day for as long as it
/// stays pending. Staff can ask at any time (`payment.refund.retry elid=N`).
pub const REFUND_RETRY_SCHEDULE: &[i64] = &[300, 900, 3600, 4 * 3600, 12 * 3600, 24 * 3600];

fn refund_retry_delay(attempts: i64) -> i64 {
    let i = (attempts.max(1) - 1) as usize;
    REFUND_RETRY_SCHEDULE[i.min(REFUND_RETRY_SCHEDULE.len() - 1)]
}

fn retry_refunds(ctx: &Ctx, host: &PluginHost, p: &Params) -> FuncResult<Doc> {
    // Without `elid`: every pending refund that is due (a failed one waits out its delay).
    let (ids, later): (Vec<i64>, i64) = match p.get("elid") {
        Some(v) => (vec![parse_id("elid", v)?], 0),
        None => ctx.engine().read(|c| {
            let now = clock::now();
            let due = c
                .prepare_cached(
                    "SELECT id FROM refund WHERE status = 5 \
                     AND (next_attempt IS NULL OR next_attempt <= ?1) ORDER BY id",
                )?
                .query_map([&now], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let later = c
                .prepare_cached(
                    "SELECT count(*) FROM refund WHERE status = 5 AND next_attempt > ?1",
                )?
                .query_row([&now], |r| r.get(0))?;
            Ok((due, later))
        })?,
    };
    let (mut done, mut pending, mut failed) = (0, 0, 0);
    for id in ids {
        match ask_refund(ctx, host, id)? {
            (status::REFUNDED, _) => done += 1,
            (_, Some(_)) => failed += 1,
            _ => pending += 1,
        }
    }
    Ok(Doc::Ok(vec![
        ("done".into(), done.to_string()),
        ("pending".into(), pending.to_string()),
        ("failed".into(), failed.to_string()),
        ("later".into(), later.to_string()),
    ]))
}
