//! The screens, each derived from a func's declaration and the documents its calls answer:
//! lists (columns, paging, sorting, filters, selected-row funcs, sub-lists), forms (widgets from
//! the parameter types, errors at their fields), actions, files, the dashboards.

use super::{Req, Who, chart, enter_client_view, html, redirect};
use crate::doc::{Doc, Fields, ListDoc};
use crate::error::FuncError;
use crate::func::{ActionMode, FuncDecl, Handler, Param, Ty};
use crate::params::Params;
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::{AutoEscape, Environment};

/// A template context: `name` or `name => value` pairs, each value anything `Serialize`.
macro_rules! context {
    ($($k:ident $(=> $v:expr)?),* $(,)?) => {{
        let mut m = BTreeMap::<&'static str, minijinja::Value>::new();
        $( m.insert(stringify!($k), minijinja::Value::from(minijinja::value::Serde(context!(@v $k $(, $v)?)))); )*
        minijinja::Value::from(minijinja::value::Serde(m))
    }};
    (@v $k:ident) => { $k };
    (@v $k:ident, $v:expr) => { $v };
}
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

/// Rows on a list page unless the request says otherwise.
const PAGE_SIZE: u64 = 20;
/// The most choices a reference's select offers (beyond that it is a number field).
const MAX_CHOICES: u64 = 500;

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        for (name, src) in [
            ("layout.html", include_str!("templates/layout.html")),
            ("login.html", include_str!("templates/login.html")),
            ("list.html", include_str!("templates/list.html")),
            ("form.html", include_str!("templates/form.html")),
            ("message.html", include_str!("templates/message.html")),
            ("confirm.html", include_str!("templates/confirm.html")),
            ("doc.html", include_str!("templates/doc.html")),
            ("staff.html", include_str!("templates/staff.html")),
            ("client.html", include_str!("templates/client.html")),
            ("gateway.html", include_str!("templates/gateway.html")),
        ] {
            if let Err(e) = env.add_template(name, src) {
                eprintln!("billhost serve: panel template {name}: {e}");
            }
        }
        env
    })
}

fn page(name: &str, ctx: minijinja::Value) -> Response {
    page_status(StatusCode::OK, name, ctx)
}

fn page_status(status: StatusCode, name: &str, ctx: minijinja::Value) -> Response {
    match env().get_template(name).and_then(|t| t.render(ctx)) {
        Ok(body) => html(status, body),
        Err(e) => {
            eprintln!("billhost serve: panel template {name}: {e:#}");
            html(
                StatusCode::INTERNAL_SERVER_ERROR,
                "<!doctype html><title>Error</title><p>The page could not be rendered.</p>".into(),
            )
        }
    }
}

#[derive(Serialize)]
struct Link {
    href: String,
    title: String,
    active: bool,
}

#[derive(Serialize)]
struct Area {
    name: String,
    items: Vec<Link>,
}

/// What every page's frame shows: the caller and the menu.
#[derive(Serialize)]
struct Frame {
    who: Option<Who>,
    menu: Vec<Area>,
    title: String,
}

fn level(who: &Who) -> crate::doc::Level {
    if who.staff {
        crate::doc::Level::Admin
    } else {
        crate::doc::Level::User
    }
}

/// Whether a func is a screen of its own in the menu: a list that needs no parent, or a
/// read-only action (a script's report) that needs nothing.
fn in_menu(decl: &FuncDecl) -> bool {
    if decl.panel.no_menu || decl.parent_required || decl.name == "whoami" {
        return false;
    }
    match &decl.handler {
        Handler::List(_) => true,
        Handler::Action(_) => {
            decl.action_mode == ActionMode::Read
                && decl.object.is_none()
                && !decl.params.iter().any(|p| p.required)
        }
        _ => false,
    }
}

fn area_of(decl: &FuncDecl) -> String {
    let area = decl
        .panel
        .area
        .unwrap_or_else(|| decl.name.split('.').next().unwrap_or(&decl.name));
    let mut c = area.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn frame(req: &Req, who: &Who, title: &str, current: &str) -> Frame {
    let lvl = level(who);
    let mut areas: BTreeMap<String, Vec<Link>> = BTreeMap::new();
    for decl in req.app.engine().funcs() {
        if decl.access.allows(lvl) && in_menu(&decl) {
            areas.entry(area_of(&decl)).or_default().push(Link {
                href: format!("/f/{}", decl.name),
                title: decl.title.clone(),
                active: decl.name == current,
            });
        }
    }
    Frame {
        who: Some(who.clone()),
        menu: areas
            .into_iter()
            .map(|(name, items)| Area { name, items })
            .collect(),
        title: title.to_string(),
    }
}

pub(crate) fn error_page(who: Option<&Who>, status: StatusCode, msg: &str) -> Response {
    let frame = Frame {
        who: who.cloned(),
        menu: Vec::new(),
        title: "Error".into(),
    };
    page_status(
        status,
        "message.html",
        context! { frame, error => msg, back => "/" },
    )
}

fn error_in_frame(req: &Req, who: &Who, status: StatusCode, msg: &str, back: &str) -> Response {
    let frame = frame(req, who, "Error", "");
    page_status(
        status,
        "message.html",
        context! { frame, error => msg, back },
    )
}

pub(crate) fn login_page(status: StatusCode, username: &str, error: Option<&str>) -> Response {
    let frame = Frame {
        who: None,
        menu: Vec::new(),
        title: "Log in".into(),
    };
    page_status(status, "login.html", context! { frame, username, error })
}

/// The declaration of `func` when the caller may call it; the refusal page otherwise. A
/// client's session never reaches a staff screen, whatever the URL or form says (and the
/// dispatcher refuses the call as well).
pub(crate) fn allowed(req: &Req, who: &Who, func: &str) -> Result<Arc<FuncDecl>, Box<Response>> {
    match req.decl(func) {
        Some(decl) if decl.access.allows(level(who)) => Ok(decl),
        Some(_) => Err(Box::new(error_in_frame(
            req,
            who,
            StatusCode::FORBIDDEN,
            "This screen is not available to you",
            "/",
        ))),
        None => Err(Box::new(error_in_frame(
            req,
            who,
            StatusCode::NOT_FOUND,
            &format!("There is no func '{func}'"),
            "/",
        ))),
    }
}

/// The name of a field in words: `create_date` is "Create date".
fn label_of(name: &str) -> String {
    let words = name.trim_end_matches("_iso").replace(['_', '.'], " ");
    let mut c = words.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// A column's heading: the declaration's label, or its name in words.
fn column_label(decl: &FuncDecl, name: &str) -> String {
    decl.panel
        .labels
        .iter()
        .find(|(c, _)| *c == name)
        .map(|(_, l)| l.to_string())
        .unwrap_or_else(|| label_of(name))
}

/// A cell as shown: the declaration's word for a code, or the value itself.
fn cell(decl: &FuncDecl, row: &Fields, name: &str) -> String {
    let value = field(row, name).unwrap_or("");
    decl.panel
        .values
        .iter()
        .find(|(c, _)| *c == name)
        .and_then(|(_, words)| words.iter().find(|(code, _)| *code == value))
        .map(|(_, w)| w.to_string())
        .unwrap_or_else(|| value.to_string())
}

fn param_label(p: &Param) -> String {
    p.label.clone().unwrap_or_else(|| label_of(&p.name))
}

fn field<'a>(fields: &'a Fields, name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn row_id(row: &Fields) -> Option<&str> {
    field(row, "id").or_else(|| field(row, "elid"))
}

/// Percent-encodes a query value.
fn enc(v: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(v.len() * 3 / 2);
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => {
                out.push('%');
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 15)] as char);
            }
        }
    }
    out
}

fn query(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn url(func: &str, pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        format!("/f/{func}")
    } else {
        format!("/f/{func}?{}", query(pairs))
    }
}

/// A `back` address from a form, when it is a path of this panel (never another site).
fn safe_back(back: Option<&str>) -> Option<String> {
    let b = back?;
    (b.starts_with('/') && !b.starts_with("//") && !b.contains('\\') && !b.contains(['\r', '\n']))
        .then(|| b.to_string())
}

/// Shows a func's screen for a GET.
pub(crate) async fn show(req: &Req, who: &Who, decl: &FuncDecl) -> Response {
    match &decl.handler {
        Handler::List(_) => list_screen(req, Some(who), decl).await,
        Handler::Edit(_) => {
            let mut params = Params::new();
            for key in ["elid", "plid"] {
                if let Some(v) = req.get(key).filter(|v| !v.is_empty()) {
                    params.set(key, v);
                }
            }
            let doc = req.call(&decl.name, params).await;
            match doc {
                Doc::Form(fields) => {
                    form_screen(req, who, decl, &fields, None, req.get("saved").is_some()).await
                }
                Doc::Error(e) => error_in_frame(req, who, StatusCode::OK, &e.msg, "/"),
                other => doc_screen(req, who, decl, other).await,
            }
        }
        Handler::Action(_) => match decl.action_mode {
            ActionMode::Read => {
                let doc = req.call(&decl.name, passthrough(req)).await;
                doc_screen(req, who, decl, doc).await
            }
            ActionMode::FormThenWrite => {
                let doc = req.call(&decl.name, passthrough(req)).await;
                match doc {
                    Doc::Form(fields) => form_screen(req, who, decl, &fields, None, false).await,
                    Doc::Error(e) => error_in_frame(req, who, StatusCode::OK, &e.msg, "/"),
                    other => doc_screen(req, who, decl, other).await,
                }
            }
            _ => form_screen(req, who, decl, &Vec::new(), None, false).await,
        },
        Handler::Group(_) => {
            let selected: Vec<String> = req
                .get("elid")
                .map(|e| {
                    e.split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            confirm_screen(req, who, decl, &selected)
        }
        Handler::Filter { list } => redirect(&format!("/f/{list}"), &[]),
    }
}

/// The request's own parameters, without the panel's.
fn passthrough(req: &Req) -> Params {
    let mut p = Params::new();
    for (k, v) in &req.pairs {
        if !matches!(
            k.as_str(),
            "csrf" | "sel" | "back" | "confirmed" | "saved" | "done" | "sok" | "func" | "auth"
        ) && !k.starts_with("authinfo")
        {
            p.set(k.clone(), v.clone());
        }
    }
    p
}

#[derive(Serialize)]
struct Column {
    name: String,
    label: String,
    sort_href: String,
    sorted: &'static str,
}

#[derive(Serialize)]
struct Row {
    id: String,
    href: Option<String>,
    cells: Vec<String>,
}

#[derive(Serialize)]
struct Button {
    func: String,
    title: String,
    confirm: bool,
}

#[derive(Serialize)]
struct FilterInput {
    name: String,
    label: String,
    value: String,
    kind: &'static str,
}

#[derive(Serialize)]
struct PageLink {
    href: String,
    label: String,
    current: bool,
}

/// The columns a list shows, in order (the declaration's hints first).
fn shown_columns(decl: &FuncDecl, doc: &ListDoc) -> Vec<String> {
    let mut all: Vec<String> = decl.columns().iter().map(|c| c.to_string()).collect();
    if all.is_empty() {
        // A script's list declares no columns: those of its rows, in the first row's order.
        for row in &doc.elems {
            for (k, _) in row {
                if !all.iter().any(|c| c == k) {
                    all.push(k.to_string());
                }
            }
        }
    }
    let hints = &decl.panel;
    let mut cols: Vec<String> = hints
        .columns_first
        .iter()
        .filter(|c| all.iter().any(|a| a == *c))
        .map(|c| c.to_string())
        .collect();
    for c in all {
        if !cols.contains(&c) && !hints.hidden.contains(&c.as_str()) && c != "elid" {
            cols.push(c);
        }
    }
    cols
}

/// The funcs offered on a list's selected rows: its `<list>.<name>` groups and actions on the
/// rows' object, and those its declaration names.
fn row_funcs(req: &Req, who: &Who, decl: &FuncDecl) -> Vec<Button> {
    let lvl = level(who);
    let object = row_object(req, decl);
    let mut out = Vec::new();
    let prefix = format!("{}.", decl.name);
    let mut names: Vec<String> = decl.panel.row_funcs.iter().map(|s| s.to_string()).collect();
    for d in req.app.engine().funcs() {
        let own = d.name.starts_with(&prefix) && !d.name[prefix.len()..].contains('.');
        let fits = match &d.handler {
            Handler::Group(_) => true,
            Handler::Action(_) => d.object.is_some() && d.object == object,
            _ => false,
        };
        if own && fits && !names.contains(&d.name) {
            names.push(d.name.clone());
        }
    }
    for name in names {
        if let Some(d) = req.decl(&name)
            && d.access.allows(lvl)
        {
            out.push(Button {
                confirm: needs_confirm(&d),
                func: d.name.clone(),
                title: d.title.clone(),
            });
        }
    }
    out
}

fn needs_confirm(d: &FuncDecl) -> bool {
    d.panel
        .confirm
        .unwrap_or_else(|| d.name.ends_with(".delete"))
}

/// The func a list's row opens.
fn row_func(req: &Req, who: &Who, decl: &FuncDecl) -> Option<Arc<FuncDecl>> {
    let name = decl
        .panel
        .row_func
        .map(str::to_string)
        .unwrap_or_else(|| format!("{}.edit", decl.name));
    req.decl(&name).filter(|d| d.access.allows(level(who)))
}

/// What a list's rows are: the object of the func a row opens, or of its groups.
fn row_object(req: &Req, decl: &FuncDecl) -> Option<crate::func::ObjectType> {
    let name = decl
        .panel
        .row_func
        .map(str::to_string)
        .unwrap_or_else(|| format!("{}.edit", decl.name));
    req.decl(&name).and_then(|d| match d.handler {
        Handler::List(_) => d.parent,
        _ => d.object,
    })
}

/// On a list under a parent object (`plid`): the forms and actions on that object, as links
/// (a ticket's messages offer `ticket.reply`).
fn parent_actions(req: &Req, who: &Who, decl: &FuncDecl, plid: &str, here: &str) -> Vec<SubLink> {
    let Some(parent) = decl.parent else {
        return Vec::new();
    };
    let lvl = level(who);
    req.app
        .engine()
        .funcs()
        .into_iter()
        .filter(|d| {
            d.object == Some(parent)
                && d.access.allows(lvl)
                && matches!(d.handler, Handler::Action(_) | Handler::Edit(_))
                && !(matches!(d.handler, Handler::Action(_))
                    && matches!(d.action_mode, ActionMode::Write))
        })
        .map(|d| SubLink {
            href: url(
                &d.name,
                &[
                    ("elid".into(), plid.to_string()),
                    ("back".into(), here.to_string()),
                ],
            ),
            title: d.title.clone(),
        })
        .collect()
}

/// A list page for a GET: the list, its stored filter and (when `who` is not known yet)
/// `whoami` are called together, as none depends on the others (the dispatcher decides what the
/// caller may see; the page is refused afterwards if the caller may not call the list).
pub(crate) async fn list_page(req: &Req, who: Option<&Who>, decl: &FuncDecl) -> Response {
    list_screen(req, who, decl).await
}

async fn list_screen(req: &Req, who: Option<&Who>, decl: &FuncDecl) -> Response {
    let Handler::List(spec) = &decl.handler else {
        return redirect("/", &[]);
    };
    // The request's list parameters, kept in every link of the page.
    let mut keep: Vec<(String, String)> = Vec::new();
    let plid = req
        .get("plid")
        .filter(|v| !v.is_empty())
        .map(str::to_string);
    if let Some(p) = &plid {
        keep.push(("plid".into(), p.clone()));
    }
    let inline_filter = req.get("filter") == Some("on");
    if inline_filter {
        keep.push(("filter".into(), "on".into()));
        for f in &spec.filters {
            if let Some(v) = req.get(f.name).filter(|v| !v.is_empty()) {
                keep.push((f.name.to_string(), v.to_string()));
            }
        }
    }
    let p_cnt = req
        .get("p_cnt")
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|n| (1..=1000).contains(n))
        .unwrap_or(PAGE_SIZE);
    let p_num = req
        .get("p_num")
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(1);
    let sort = req
        .get("p_sort")
        .filter(|s| decl.columns().contains(s))
        .map(str::to_string);
    let desc = req.get("p_order") == Some("desc");

    let mut params = Params::from_pairs(keep.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    params.set("p_num", p_num.to_string());
    params.set("p_cnt", p_cnt.to_string());
    if let Some(s) = &sort {
        params.set("p_sort", s.clone());
        params.set("p_order", if desc { "desc" } else { "asc" });
    }
    // The filter form: the request's values, or the stored filter.
    let filter_func = req
        .app
        .engine()
        .funcs()
        .into_iter()
        .find(|d| matches!(&d.handler, Handler::Filter { list } if *list == decl.name));
    let stored_call = async {
        match (&filter_func, inline_filter) {
            (Some(f), false) => match req.call(&f.name, Params::new()).await {
                Doc::Form(fields) => fields,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    };
    let who_call = async {
        match who {
            Some(w) => Some(w.clone()),
            None => req.who().await,
        }
    };
    let (who, doc, stored) = tokio::join!(who_call, req.call(&decl.name, params), stored_call);
    let Some(who) = who else {
        return redirect("/login", &[]);
    };
    let who = &who;
    if !decl.access.allows(level(who)) {
        return match allowed(req, who, &decl.name) {
            Err(refused) => *refused,
            Ok(_) => redirect("/", &[]),
        };
    }
    let filter_func = filter_func.filter(|f| f.access.allows(level(who)));
    let list = match doc {
        Doc::List(list) => list,
        Doc::Error(e) => return error_in_frame(req, who, StatusCode::OK, &e.msg, "/"),
        other => return doc_screen(req, who, decl, other).await,
    };
    let filters: Vec<FilterInput> = spec
        .filters
        .iter()
        .map(|f| {
            let value = if inline_filter {
                req.get(f.name).unwrap_or("").to_string()
            } else {
                field(&stored, f.name).unwrap_or("").to_string()
            };
            let kind = match f.op {
                crate::list::FilterOp::From | crate::list::FilterOp::To => "date",
                _ => "text",
            };
            FilterInput {
                name: f.name.to_string(),
                label: label_of(f.name),
                value,
                kind,
            }
        })
        .collect();
    let filter_active = filters.iter().any(|f| !f.value.is_empty());

    let cols = shown_columns(decl, &list);
    let mut base = keep.clone();
    if p_cnt != PAGE_SIZE {
        base.push(("p_cnt".into(), p_cnt.to_string()));
    }
    let columns: Vec<Column> = cols
        .iter()
        .map(|c| {
            let this = sort.as_deref() == Some(c.as_str());
            let order = if this && !desc { "desc" } else { "asc" };
            let mut q = base.clone();
            q.push(("p_sort".into(), c.clone()));
            q.push(("p_order".into(), order.into()));
            Column {
                name: c.clone(),
                label: column_label(decl, c),
                sort_href: url(&decl.name, &q),
                sorted: match (this, desc) {
                    (true, false) => "asc",
                    (true, true) => "desc",
                    _ => "",
                },
            }
        })
        .collect();
    let mut here_q = base.clone();
    if let Some(s) = &sort {
        here_q.push(("p_sort".into(), s.clone()));
        here_q.push(("p_order".into(), if desc { "desc" } else { "asc" }.into()));
    }
    let mut page_q = here_q.clone();
    page_q.push(("p_num".into(), p_num.to_string()));
    let here = url(&decl.name, &page_q);

    let opens = row_func(req, who, decl);
    // A row opens its form, or the list under it (a ticket's messages): the links differ only
    // in the id, so what follows it is encoded once.
    let row_link = opens.as_ref().map(|d| {
        let key = if matches!(d.handler, Handler::List(_)) {
            "plid"
        } else {
            "elid"
        };
        let mut rest = Vec::new();
        if let (Some(p), true, "elid") = (&plid, d.parent.is_some(), key) {
            rest.push(("plid".to_string(), p.clone()));
        }
        rest.push(("back".into(), here.clone()));
        (
            format!("/f/{}?{key}=", d.name),
            format!("&{}", query(&rest)),
        )
    });
    let rows: Vec<Row> = list
        .elems
        .iter()
        .map(|row| {
            let id = row_id(row).unwrap_or("").to_string();
            let href = row_link
                .as_ref()
                .filter(|_| !id.is_empty())
                .map(|(head, tail)| format!("{head}{}{tail}", enc(&id)));
            Row {
                cells: cols.iter().map(|c| cell(decl, row, c)).collect(),
                id,
                href,
            }
        })
        .collect();

    let pages = list.p_elems.div_ceil(list.p_cnt.max(1)).max(1);
    let page_links: Vec<PageLink> = (1..=pages)
        .filter(|n| *n == 1 || *n == pages || n.abs_diff(p_num) <= 3)
        .map(|n| {
            let mut q = here_q.clone();
            q.push(("p_num".into(), n.to_string()));
            PageLink {
                href: url(&decl.name, &q),
                label: n.to_string(),
                current: n == p_num,
            }
        })
        .collect();
    let new_href = opens
        .as_ref()
        .filter(|d| matches!(d.handler, Handler::Edit(_)))
        .map(|d| {
            let mut q = Vec::new();
            if let (Some(p), true) = (&plid, d.parent.is_some()) {
                q.push(("plid".to_string(), p.clone()));
            }
            q.push(("back".into(), here.clone()));
            url(&d.name, &q)
        });
    let mut clear_q: Vec<(String, String)> = plid
        .iter()
        .map(|p| ("plid".to_string(), p.clone()))
        .collect();
    clear_q.push(("filter".into(), "on".into()));
    let done = req
        .get("done")
        .and_then(|d| req.decl(d))
        .map(|d| format!("Done: {}", d.title));
    let parent = match (&plid, decl.parent) {
        (Some(p), Some(t)) => Some(format!("{} {p}", label_of(t.name))),
        _ => None,
    };
    let parent_links = plid
        .as_deref()
        .map(|p| parent_actions(req, who, decl, p, &here))
        .unwrap_or_default();
    let groups = row_funcs(req, who, decl);
    let body = rows_html(&rows, !groups.is_empty(), columns.len());
    let frame = frame(req, who, &decl.title, &decl.name);
    let ctx = context! {
            parent_links,
            frame,
            func => &decl.name,
            columns,
            groups,
            filters,
            filter_active,
            store_filter => filter_func.map(|f| f.name.clone()),
            clear_href => url(&decl.name, &clear_q),
            pages => page_links,
            total => list.p_elems,
            here,
            plid,
            parent,
            new_href,
            notice => done,
    };
    // The table's rows are the bulk of the page: written here (escaped by `escape`), not by
    // the template engine, so that a page of 100 rows costs little more than its XML.
    let rows = minijinja::Value::from(BTreeMap::from([(
        "rows_html",
        minijinja::Value::from_safe_string(body),
    )]));
    page("list.html", minijinja::value::merge_maps([ctx, rows]))
}

/// Escapes text for HTML content and attribute values.
fn escape(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
}

/// A list's `<tbody>` rows: a checkbox each when funcs act on selected rows, the first cell
/// linking to what the row opens.
fn rows_html(rows: &[Row], selectable: bool, columns: usize) -> String {
    let mut out = String::with_capacity(rows.len() * 256);
    for r in rows {
        out.push_str("<tr data-id=\"");
        escape(&mut out, &r.id);
        out.push_str("\">");
        if selectable {
            out.push_str("<td class=\"sel\"><input type=\"checkbox\" name=\"sel\" value=\"");
            escape(&mut out, &r.id);
            out.push_str("\" aria-label=\"Select\"></td>");
        }
        for (i, cell) in r.cells.iter().enumerate() {
            out.push_str("<td>");
            match (&r.href, i) {
                (Some(href), 0) => {
                    out.push_str("<a href=\"");
                    escape(&mut out, href);
                    out.push_str("\">");
                    escape(&mut out, cell);
                    out.push_str("</a>");
                }
                _ => escape(&mut out, cell),
            }
            out.push_str("</td>");
        }
        out.push_str("</tr>\n");
    }
    if rows.is_empty() {
        out.push_str(&format!(
            "<tr><td colspan=\"{}\" class=\"empty\">Nothing here</td></tr>",
            columns + 1
        ));
    }
    out
}

#[derive(Serialize, Default)]
struct Widget {
    name: String,
    label: String,
    kind: &'static str,
    value: String,
    options: Vec<(String, String)>,
    checked: bool,
    required: bool,
    maxlength: Option<usize>,
    suffix: Option<String>,
    error: Option<String>,
}

/// The choices of a reference: the rows of its source list, called as the caller.
async fn choices(req: &Req, who: &Who, p: &Param) -> Option<Vec<(String, String)>> {
    let Ty::Ref(object) = &p.ty else {
        return None;
    };
    let (list, column) = p.source.unwrap_or((object.name, "name"));
    let decl = req.decl(list)?;
    if !decl.access.allows(level(who)) || !matches!(decl.handler, Handler::List(_)) {
        return None;
    }
    let doc = req
        .call_pairs(list, &[("p_num", "1"), ("p_cnt", &MAX_CHOICES.to_string())])
        .await;
    let Doc::List(rows) = doc else {
        return None;
    };
    if rows.p_elems > MAX_CHOICES {
        return None;
    }
    Some(
        rows.elems
            .iter()
            .filter_map(|r| {
                let id = row_id(r)?.to_string();
                let name = field(r, column).unwrap_or("");
                let mut label = if name.is_empty() {
                    id.clone()
                } else {
                    name.to_string()
                };
                // A payment method's currency, so that an amount reads with it.
                if let Some(cur) =
                    field(r, "currency").filter(|c| !c.is_empty() && list != "currency")
                {
                    label = format!("{label} ({cur})");
                }
                Some((id, label))
            })
            .collect(),
    )
}

/// The parameters a caller sees on a form: a client never sees the staff-only ones.
fn visible_params<'a>(who: &Who, decl: &'a FuncDecl) -> impl Iterator<Item = &'a Param> {
    let staff = who.staff;
    decl.params.iter().filter(move |p| staff || !p.admin_only)
}

async fn widgets(
    req: &Req,
    who: &Who,
    decl: &FuncDecl,
    values: &(dyn Fn(&str) -> Option<String> + Sync),
    error: Option<&FuncError>,
) -> Vec<Widget> {
    let mut out = Vec::new();
    for p in visible_params(who, decl) {
        let value = values(&p.name).unwrap_or_default();
        let mut w = Widget {
            name: p.name.clone(),
            label: param_label(p),
            required: p.required,
            error: error.filter(|e| e.object == p.name).map(|e| e.msg.clone()),
            ..Widget::default()
        };
        match &p.ty {
            Ty::Text(n) => {
                w.kind = "text";
                w.maxlength = Some(*n);
            }
            // A text field, not `type=email`: the server's check and message are the ones shown.
            Ty::Email => w.kind = "email",
            Ty::LongText(n) => {
                w.kind = "textarea";
                w.maxlength = Some(*n);
            }
            Ty::Password(_) => w.kind = "password",
            Ty::Int { .. } => w.kind = "number",
            Ty::Flag => {
                w.kind = "checkbox";
                w.checked = value == "on";
            }
            Ty::Decimal => {
                w.kind = "money";
                w.suffix = values(&format!("{}_currency", p.name))
                    .or_else(|| values("currency_iso"))
                    .filter(|c| !c.is_empty());
            }
            Ty::Date => w.kind = "date",
            Ty::Choice(options) => {
                w.kind = "select";
                if !p.required {
                    w.options.push((String::new(), String::new()));
                }
                w.options
                    .extend(options.iter().map(|o| (o.to_string(), o.to_string())));
            }
            Ty::Ref(_) => match choices(req, who, p).await {
                Some(options) => {
                    w.kind = "select";
                    if !p.required || value.is_empty() {
                        w.options.push((String::new(), String::new()));
                    }
                    w.options.extend(options);
                }
                None => w.kind = "number",
            },
        }
        if w.kind != "password" {
            w.value = value;
        }
        out.push(w);
    }
    out
}

#[derive(Serialize)]
struct SubLink {
    href: String,
    title: String,
}

/// The lists under an object: those whose parent is its type (`plid`), and those with a filter
/// field named after it.
fn sub_lists(
    req: &Req,
    who: &Who,
    decl: &FuncDecl,
    elid: &str,
    plid: Option<&str>,
) -> Vec<SubLink> {
    let Some(object) = decl.object else {
        return Vec::new();
    };
    let lvl = level(who);
    let mut out = Vec::new();
    for d in req.app.engine().funcs() {
        let Handler::List(spec) = &d.handler else {
            continue;
        };
        if !d.access.allows(lvl) || d.name == decl.name {
            continue;
        }
        if d.parent.map(|p| p.name) == Some(object.name) {
            out.push(SubLink {
                href: url(&d.name, &[("plid".into(), elid.to_string())]),
                title: d.title.clone(),
            });
        } else if spec.filter_field(object.name).is_some()
            && d.parent.is_some()
            && d.parent == decl.parent
            && let Some(parent) = plid
        {
            out.push(SubLink {
                href: url(
                    &d.name,
                    &[
                        ("plid".into(), parent.to_string()),
                        ("filter".into(), "on".into()),
                        (object.name.to_string(), elid.to_string()),
                    ],
                ),
                title: d.title.clone(),
            });
        }
    }
    out
}

/// Funcs on one object shown as buttons on its form: actions and groups on the same object
/// type (`account.su`, `payment.setpaid`, `payment.print.pdf`).
fn object_funcs(req: &Req, who: &Who, decl: &FuncDecl) -> Vec<Button> {
    let Some(object) = decl.object else {
        return Vec::new();
    };
    let lvl = level(who);
    req.app
        .engine()
        .funcs()
        .into_iter()
        .filter(|d| {
            d.name != decl.name
                && d.object == Some(object)
                && d.access.allows(lvl)
                && matches!(d.handler, Handler::Group(_) | Handler::Action(_))
        })
        .map(|d| Button {
            confirm: needs_confirm(&d),
            func: d.name.clone(),
            title: d.title.clone(),
        })
        .collect()
}

async fn form_screen(
    req: &Req,
    who: &Who,
    decl: &FuncDecl,
    fields: &Fields,
    error: Option<FuncError>,
    saved: bool,
) -> Response {
    let elid = req
        .get("elid")
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .or_else(|| field(fields, "elid").map(str::to_string));
    let plid = req
        .get("plid")
        .filter(|v| !v.is_empty())
        .map(str::to_string);
    let submitted = error.is_some();
    let values = |name: &str| -> Option<String> {
        if submitted {
            req.get(name).map(str::to_string)
        } else {
            field(fields, name).map(str::to_string)
        }
    };
    let inputs = widgets(req, who, decl, &values, error.as_ref()).await;
    let params: Vec<&str> = decl.params.iter().map(|p| p.name.as_str()).collect();
    let info: Vec<(String, String)> = fields
        .iter()
        .filter(|(k, v)| {
            !params.contains(&k.as_ref())
                && !v.is_empty()
                && k != "elid"
                && !k.ends_with("_currency")
        })
        .map(|(k, v)| (label_of(k), v.clone()))
        .collect();
    let general = error
        .as_ref()
        .filter(|e| !inputs.iter().any(|w| w.name == e.object))
        .map(|e| e.msg.clone());
    let (subs, actions) = match &elid {
        Some(id) => (
            sub_lists(req, who, decl, id, plid.as_deref()),
            object_funcs(req, who, decl),
        ),
        None => (Vec::new(), Vec::new()),
    };
    let back = safe_back(req.get("back"));
    let mut here_q = Vec::new();
    if let Some(e) = &elid {
        here_q.push(("elid".to_string(), e.clone()));
    }
    if let Some(p) = &plid {
        here_q.push(("plid".to_string(), p.clone()));
    }
    let title = match (&elid, &decl.object) {
        (Some(id), Some(o)) => format!("{} — {} {id}", decl.title, label_of(o.name)),
        _ => decl.title.clone(),
    };
    let frame = frame(req, who, &title, &decl.name);
    page(
        "form.html",
        context! {
            frame,
            func => &decl.name,
            inputs,
            info,
            elid,
            plid,
            back,
            here => url(&decl.name, &here_q),
            general,
            saved,
            subs,
            actions,
            submit => if matches!(decl.handler, Handler::Edit(_)) { "Save" } else { "Run" },
        },
    )
}

fn confirm_screen(req: &Req, who: &Who, decl: &FuncDecl, selected: &[String]) -> Response {
    let frame = frame(req, who, &decl.title, &decl.name);
    page(
        "confirm.html",
        context! {
            frame,
            func => &decl.name,
            title => &decl.title,
            selected,
            plid => req.get("plid"),
            back => safe_back(req.get("back")).unwrap_or_else(|| "/".into()),
        },
    )
}

/// Any other document: a list a script answered, a form of results, a file, an ok.
async fn doc_screen(req: &Req, who: &Who, decl: &FuncDecl, doc: Doc) -> Response {
    match doc {
        Doc::File(file) => super::secure_file(crate::server::file_response(&file)),
        Doc::List(list) => {
            let cols = shown_columns(decl, &list);
            let rows: Vec<Vec<String>> = list
                .elems
                .iter()
                .map(|r| {
                    cols.iter()
                        .map(|c| field(r, c).unwrap_or("").to_string())
                        .collect()
                })
                .collect();
            let labels: Vec<String> = cols.iter().map(|c| column_label(decl, c)).collect();
            let frame = frame(req, who, &decl.title, &decl.name);
            page(
                "doc.html",
                context! { frame, labels, rows, total => list.p_elems },
            )
        }
        Doc::Form(fields) | Doc::Ok(fields) => {
            let pairs: Vec<(String, String)> = fields
                .iter()
                .map(|(k, v)| (label_of(k), v.clone()))
                .collect();
            let frame = frame(req, who, &decl.title, &decl.name);
            page(
                "doc.html",
                context! { frame, pairs, back => safe_back(req.get("back")) },
            )
        }
        Doc::Auth { id, .. } => enter_client_view(req, &id),
        Doc::Error(e) => error_in_frame(req, who, StatusCode::OK, &e.msg, "/"),
    }
}

/// The declared parameters of a submitted form, as the func takes them: an unchecked box is
/// `off`, an empty password or an empty non-text field is left out (no change).
fn form_params(req: &Req, who: &Who, decl: &FuncDecl) -> Params {
    let mut params = Params::new();
    for p in visible_params(who, decl) {
        let value = req.get(&p.name);
        match (&p.ty, value) {
            (Ty::Flag, v) => params.set(
                p.name.clone(),
                if v.is_some_and(|v| v == "on") {
                    "on"
                } else {
                    "off"
                },
            ),
            (Ty::Text(_) | Ty::LongText(_) | Ty::Email, Some(v)) => params.set(p.name.clone(), v),
            (_, Some(v)) if !v.is_empty() => params.set(p.name.clone(), v),
            _ => {}
        }
    }
    for key in ["elid", "plid"] {
        if let Some(v) = req.get(key).filter(|v| !v.is_empty()) {
            params.set(key, v);
        }
    }
    params
}

/// The selected rows of a list (`sel` checkboxes) or the object of a form (`elid`).
fn selection(req: &Req) -> String {
    let sel = req.all("sel");
    if sel.is_empty() {
        req.get("elid").unwrap_or("").to_string()
    } else {
        sel.join(", ")
    }
}

/// Runs a func from a POST.
pub(crate) async fn submit(req: &Req, who: &Who, decl: &FuncDecl) -> Response {
    let back = safe_back(req.get("back"));
    match &decl.handler {
        Handler::Edit(_) => {
            let mut params = form_params(req, who, decl);
            params.set("sok", "ok");
            match req.call(&decl.name, params).await {
                Doc::Ok(fields) => {
                    if let Some(back) = back {
                        let sep = if back.contains('?') { '&' } else { '?' };
                        return redirect(&format!("{back}{sep}done={}", enc(&decl.name)), &[]);
                    }
                    let id = field(&fields, "id")
                        .map(str::to_string)
                        .or_else(|| req.get("elid").map(str::to_string))
                        .unwrap_or_default();
                    let mut q = vec![("elid".to_string(), id), ("saved".into(), "1".into())];
                    if let Some(p) = req.get("plid").filter(|v| !v.is_empty()) {
                        q.push(("plid".into(), p.to_string()));
                    }
                    redirect(&url(&decl.name, &q), &[])
                }
                Doc::Error(e) => form_screen(req, who, decl, &Vec::new(), Some(e), false).await,
                other => doc_screen(req, who, decl, other).await,
            }
        }
        Handler::Group(_) => {
            let selected = selection(req);
            if selected.is_empty() {
                return error_in_frame(
                    req,
                    who,
                    StatusCode::OK,
                    "Select at least one row first",
                    back.as_deref().unwrap_or("/"),
                );
            }
            if needs_confirm(decl) && req.get("confirmed") != Some("yes") {
                let ids: Vec<String> = selected.split(", ").map(str::to_string).collect();
                return confirm_screen(req, who, decl, &ids);
            }
            let mut params = passthrough(req);
            params.set("elid", selected);
            params.set("sok", "ok");
            match req.call(&decl.name, params).await {
                Doc::Error(e) => error_in_frame(
                    req,
                    who,
                    StatusCode::OK,
                    &format!("{}: nothing was changed. {}", decl.title, e.msg),
                    back.as_deref().unwrap_or("/"),
                ),
                _ => {
                    let to = back.unwrap_or_else(|| "/".into());
                    let sep = if to.contains('?') { '&' } else { '?' };
                    redirect(&format!("{to}{sep}done={}", enc(&decl.name)), &[])
                }
            }
        }
        Handler::Action(_) => {
            let mut params = form_params(req, who, decl);
            let selected = selection(req);
            if !selected.is_empty() {
                params.set("elid", selected);
            }
            params.set("sok", "ok");
            let doc = req.call(&decl.name, params).await;
            match doc {
                Doc::Ok(fields) => {
                    if let Some(to) = field(&fields, "redirect_url") {
                        return redirect(to, &[]);
                    }
                    if let Some(action) = field(&fields, "form_action") {
                        let inputs: Vec<(String, String)> = fields
                            .iter()
                            .filter_map(|(k, v)| {
                                k.strip_prefix("form_")
                                    .filter(|k| *k != "action")
                                    .map(|k| (k.to_string(), v.clone()))
                            })
                            .collect();
                        let frame = frame(req, who, "Continue to the payment", "");
                        return page(
                            "gateway.html",
                            context! { frame, action, inputs,
                            instructions => field(&fields, "instructions") },
                        );
                    }
                    match back {
                        Some(to) => {
                            let sep = if to.contains('?') { '&' } else { '?' };
                            redirect(&format!("{to}{sep}done={}", enc(&decl.name)), &[])
                        }
                        None => doc_screen(req, who, decl, Doc::Ok(fields)).await,
                    }
                }
                Doc::Error(e) if !decl.params.is_empty() => {
                    form_screen(req, who, decl, &Vec::new(), Some(e), false).await
                }
                other => doc_screen(req, who, decl, other).await,
            }
        }
        Handler::Filter { list } => {
            let mut params = Params::new();
            let target = req.decl(list);
            if req.get("clear").is_none()
                && let Some(Handler::List(spec)) = target.as_deref().map(|d| &d.handler)
            {
                for f in &spec.filters {
                    if let Some(v) = req.get(f.name).filter(|v| !v.is_empty()) {
                        params.set(f.name, v);
                    }
                }
            }
            params.set("sok", "ok");
            let mut q = Vec::new();
            if let Some(p) = req.get("plid").filter(|v| !v.is_empty()) {
                q.push(("plid".to_string(), p.to_string()));
            }
            match req.call(&decl.name, params).await {
                Doc::Error(e) => error_in_frame(req, who, StatusCode::OK, &e.msg, &url(list, &q)),
                _ => redirect(&url(list, &q), &[]),
            }
        }
        // The filter form's "Apply": the list with the filter in its address (a GET, so that
        // the page can be reloaded and linked to).
        Handler::List(spec) => {
            let mut q = Vec::new();
            if let Some(p) = req.get("plid").filter(|v| !v.is_empty()) {
                q.push(("plid".to_string(), p.to_string()));
            }
            q.push(("filter".into(), "on".into()));
            for f in &spec.filters {
                if let Some(v) = req.get(f.name).filter(|v| !v.is_empty()) {
                    q.push((f.name.to_string(), v.to_string()));
                }
            }
            redirect(&url(&decl.name, &q), &[])
        }
    }
}

#[derive(Serialize)]
struct Cells {
    cells: Vec<String>,
    href: Option<String>,
}

/// Rows of `list` (answered by `func`) in the columns `cols`, with the declaration's words for
/// codes.
fn table(
    req: &Req,
    func: &str,
    list: &ListDoc,
    cols: &[&str],
    href: impl Fn(&Fields) -> Option<String>,
) -> Vec<Cells> {
    let decl = req.decl(func);
    list.elems
        .iter()
        .map(|r| Cells {
            cells: cols
                .iter()
                .map(|c| match &decl {
                    Some(d) => cell(d, r, c),
                    None => field(r, c).unwrap_or("").to_string(),
                })
                .collect(),
            href: href(r),
        })
        .collect()
}

fn labels(req: &Req, func: &str, cols: &[&str]) -> Vec<String> {
    let decl = req.decl(func);
    cols.iter()
        .map(|c| match &decl {
            Some(d) => column_label(d, c),
            None => label_of(c),
        })
        .collect()
}

fn total(doc: &Doc) -> Option<u64> {
    match doc {
        Doc::List(l) => Some(l.p_elems),
        _ => None,
    }
}

fn as_list(doc: Doc) -> ListDoc {
    match doc {
        Doc::List(l) => l,
        _ => ListDoc::default(),
    }
}

/// The staff console's first page: counts, the latest payments, revenue per month and currency.
pub(crate) async fn staff_dashboard(req: &Req, who: &Who) -> Response {
    let one = [("p_num", "1"), ("p_cnt", "1")];
    let clients = total(&req.call_pairs("account", &one).await);
    let tickets = total(&req.call_pairs("ticket", &one).await);
    let latest = req
        .call_pairs("account.payment", &[("p_num", "1"), ("p_cnt", "8")])
        .await;
    let payments = total(&latest);
    let latest = as_list(latest);
    let since = crate::clock::now()
        .get(..4)
        .and_then(|y| y.parse::<i32>().ok())
        .map(|y| format!("{}-01-01", y - 1))
        .unwrap_or_default();
    let paid = as_list(
        req.call_pairs(
            "account.payment",
            &[
                ("filter", "on"),
                ("pay_date_from", &since),
                ("p_num", "1"),
                ("p_cnt", "10000"),
            ],
        )
        .await,
    );
    let mut revenue: BTreeMap<(String, String), Decimal> = BTreeMap::new();
    for row in &paid.elems {
        let credited = matches!(field(row, "status"), Some("4" | "5" | "6"));
        let (Some(date), Some(amount)) =
            (field(row, "pay_date"), field(row, "subaccountamount_iso"))
        else {
            continue;
        };
        let Some((value, currency)) = amount.split_once(' ') else {
            continue;
        };
        if let (true, Some(month), Ok(v)) = (credited, date.get(..7), value.parse::<Decimal>()) {
            *revenue
                .entry((currency.to_string(), month.to_string()))
                .or_default() += v;
        }
    }
    let svg = chart::revenue(&revenue);
    let cols = [
        "id",
        "create_date",
        "account_name",
        "paymethod_name",
        "subaccountamount_iso",
        "status",
    ];
    let rows = table(req, "account.payment", &latest, &cols, |r| {
        row_id(r).map(|id| url("payment.edit", &[("elid".into(), id.to_string())]))
    });
    let labels = labels(req, "account.payment", &cols);
    let frame = frame(req, who, "Dashboard", "");
    page(
        "staff.html",
        context! { frame, clients, tickets, payments, rows, labels, svg },
    )
}

/// The client area's first page: balances, the latest payments and expenses, the shortcuts.
pub(crate) async fn client_dashboard(req: &Req, who: &Who) -> Response {
    let subaccounts = as_list(req.call_pairs("subaccount", &[("p_cnt", "50")]).await);
    let payments = as_list(
        req.call_pairs("account.payment", &[("p_num", "1"), ("p_cnt", "5")])
            .await,
    );
    let expenses = as_list(
        req.call_pairs("subaccount.expense", &[("p_num", "1"), ("p_cnt", "5")])
            .await,
    );
    let balances = table(
        req,
        "subaccount",
        &subaccounts,
        &["project", "currency", "balance", "status"],
        |_| None,
    );
    let pay_cols = ["number", "create_date", "subaccountamount_iso", "status"];
    let pay_rows = table(req, "account.payment", &payments, &pay_cols, |r| {
        row_id(r).map(|id| url("payment.print", &[("elid".into(), id.to_string())]))
    });
    let pdf_links: Vec<Option<String>> = payments
        .elems
        .iter()
        .map(|r| row_id(r).map(|id| url("payment.print.pdf", &[("elid".into(), id.to_string())])))
        .collect();
    let exp_cols = ["locale_name", "realdate", "amount"];
    let exp_rows = table(req, "subaccount.expense", &expenses, &exp_cols, |_| None);
    let contact = who
        .account
        .map(|a| url("account.edit", &[("elid".into(), a.to_string())]));
    let frame = frame(req, who, "My account", "");
    page(
        "client.html",
        context! {
            frame,
            balances,
            pay_rows,
            pdf_links,
            pay_labels => labels(req, "account.payment", &pay_cols),
            exp_rows,
            exp_labels => labels(req, "subaccount.expense", &exp_cols),
            contact,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_escaped() {
        let rows = vec![Row {
            id: "1\"><x".into(),
            href: Some("/f/a?elid=1&back=%2F".into()),
            cells: vec!["<script>alert(1)</script>".into(), "O'Hara & Co".into()],
        }];
        let html = rows_html(&rows, true, 2);
        assert!(
            !html.contains("<script>") && !html.contains("\"><x"),
            "{html}"
        );
        assert!(html.contains("&lt;script&gt;") && html.contains("O&#x27;Hara &amp; Co"));
        assert!(html.contains("href=\"/f/a?elid=1&amp;back=%2F\""));
    }
}
