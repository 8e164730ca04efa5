//! The web panel at `/`: a staff console and a client area, server-rendered HTML generated from
//! the func declarations ([`crate::func::FuncDecl`], with their [`crate::func::PanelHints`]).
//!
//! An adapter beside `server/`, like `/billmgr`: every screen is one or more func calls through
//! [`crate::server::dispatch`] (the same lanes, login throttle and session as the API) with the
//! session's caller, rendered from the typed [`Doc`]s. No screen reads the database itself, so
//! the access rules are the dispatcher's, written once. See `docs/panel.md`.
//!
//! Safe by default: every state change is a POST carrying a CSRF token tied to the session;
//! the session cookie is `HttpOnly` and `SameSite=Lax`; every answer carries a
//! Content-Security-Policy without inline scripts, `frame-ancestors 'none'` and `nosniff`;
//! minijinja escapes every value.

mod chart;
mod screens;

use crate::doc::Doc;
use crate::error::FuncError;
use crate::func::FuncDecl;
use crate::params::Params;
use crate::server::{self, App, SESSION_COOKIE};
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use blake2::Blake2bMac;
use blake2::digest::consts::U32;
use blake2::digest::{KeyInit, Mac};
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use crate::server::idle::Peer;

/// The staff session kept aside while staff look at a client's panel (`account.su`).
pub const STAFF_COOKIE: &str = "billhost_staff";

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
                   form-action *; frame-ancestors 'none'; base-uri 'none'";

pub(crate) fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_form).post(login))
        .route("/logout", axum::routing::post(logout))
        .route("/back", axum::routing::post(back_to_staff))
        .route("/panel.css", get(stylesheet))
        .route("/f/{func}", get(screen_get).post(screen_post))
}

/// One panel request: who sent it, the session, and its decoded parameters.
pub(crate) struct Req {
    pub app: Arc<App>,
    pub ip: IpAddr,
    pub session: Option<String>,
    pub staff_session: Option<String>,
    /// Query pairs (GET) or query and body pairs (POST), in order.
    pub pairs: Vec<(String, String)>,
}

/// The logged-in caller, as `whoami` answers it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Who {
    pub login: String,
    pub staff: bool,
    pub account: Option<i64>,
    pub su_from: Option<String>,
    pub csrf: String,
}

impl Req {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated field (the checkboxes of selected rows).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// One func call as the session's caller.
    pub async fn call(&self, func: &str, params: Params) -> Doc {
        server::dispatch(&self.app, func, params, self.session.clone(), self.ip)
            .await
            .0
    }

    pub async fn call_pairs(&self, func: &str, pairs: &[(&str, &str)]) -> Doc {
        self.call(func, Params::from_pairs(pairs.iter().copied()))
            .await
    }

    /// The caller, or `None` when the request has no live session.
    pub async fn who(&self) -> Option<Who> {
        let sid = self.session.as_deref()?;
        let doc = self.call("whoami", Params::new()).await;
        let Doc::Form(_) = &doc else {
            return None;
        };
        Some(Who {
            login: doc.field("login").unwrap_or("").to_string(),
            staff: doc.field("level") == Some("admin"),
            account: doc.field("account").and_then(|a| a.parse().ok()),
            su_from: doc.field("su_from").map(str::to_string),
            csrf: csrf_token(sid),
        })
    }

    /// The declaration of a func callable now (built in, plugin or the live scripts').
    pub fn decl(&self, name: &str) -> Option<Arc<FuncDecl>> {
        let engine = self.app.engine();
        engine
            .registry()
            .get(name)
            .cloned()
            .or_else(|| engine.scripts().current().func(name).cloned())
    }
}

/// The CSRF token of a session: a keyed BLAKE2b MAC of the session id under a key made when
/// the process starts (so a token dies with its session, and with a restart).
pub(crate) fn csrf_token(sid: &str) -> String {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    let key = KEY.get_or_init(|| {
        let mut k = [0u8; 32];
        // Without randomness the key is still unknown outside the process for the session ids
        // it protects; but getrandom does not fail on the systems we run on.
        let _ = getrandom::fill(&mut k);
        k
    });
    let Ok(mut mac) = <Blake2bMac<U32> as KeyInit>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(b"billhost panel csrf\0");
    mac.update(sid.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
}

/// Reads a panel request: the query, and for POST the form body.
async fn read(app: Arc<App>, ip: IpAddr, request: Request) -> Result<Req, FuncError> {
    let (parts, body) = request.into_parts();
    let limit = app.config().max_params;
    let mut pairs =
        server::form::decode(parts.uri.query().unwrap_or("").as_bytes(), "query", limit)?;
    if parts.method == axum::http::Method::POST {
        server::check_content_type(&parts.headers)?;
        let bytes = server::read_body(&parts.headers, body, app.config().body_limit).await?;
        let left = limit.saturating_sub(pairs.len());
        pairs.extend(server::form::decode(&bytes, "body", left)?);
    }
    Ok(Req {
        session: server::session_cookie(&parts.headers),
        staff_session: cookie(&parts.headers, STAFF_COOKIE),
        app,
        ip: ip.to_canonical(),
        pairs,
    })
}

/// Adds the headers every panel answer carries.
fn secure(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A file a func produced (the printable invoice may carry its own inline styles, never
/// scripts).
pub(crate) fn secure_file(response: Response) -> Response {
    let mut r = secure(response);
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'",
        ),
    );
    r
}

pub(crate) fn html(status: StatusCode, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=UTF-8"),
    );
    secure(r)
}

/// A `303 See Other` to a path of this panel (or, for a gateway, the URL it gave).
pub(crate) fn redirect(to: &str, cookies: &[String]) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    secure(r)
}

fn session_cookie_value(name: &str, sid: &str) -> String {
    format!("{name}={sid}; Path=/; HttpOnly; SameSite=Lax")
}

fn cleared(name: &str) -> String {
    format!("{name}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0")
}

async fn stylesheet() -> Response {
    let mut r = Response::new(Body::from(include_str!("panel.css")));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=UTF-8"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    secure(r)
}

macro_rules! read_or_fail {
    ($app:expr, $peer:expr, $request:expr) => {
        match read($app, $peer.ip(), $request).await {
            Ok(req) => req,
            Err(e) => return screens::error_page(None, StatusCode::BAD_REQUEST, &e.msg),
        }
    };
}

async fn home(
    State(app): State<Arc<App>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    request: Request,
) -> Response {
    let req = read_or_fail!(app, peer, request);
    let Some(who) = req.who().await else {
        return redirect("/login", &[]);
    };
    if who.staff {
        screens::staff_dashboard(&req, &who).await
    } else {
        screens::client_dashboard(&req, &who).await
    }
}

async fn login_form(
    State(app): State<Arc<App>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    request: Request,
) -> Response {
    let req = read_or_fail!(app, peer, request);
    if req.who().await.is_some() {
        return redirect("/", &[]);
    }
    screens::login_page(StatusCode::OK, "", None)
}

async fn login(
    State(app): State<Arc<App>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    request: Request,
) -> Response {
    let req = read_or_fail!(app, peer, request);
    let username = req.get("username").unwrap_or("").to_string();
    let params = Params::from_pairs([
        ("username", username.as_str()),
        ("password", req.get("password").unwrap_or("")),
    ]);
    // `auth` through the same lane as the API: the failed-login throttle counts it.
    let (doc, set) = server::dispatch(&req.app, "auth", params, None, req.ip).await;
    match (doc, set) {
        (Doc::Auth { .. }, Some(set)) => redirect("/", &[set, cleared(STAFF_COOKIE)]),
        (Doc::Error(e), _) => screens::login_page(StatusCode::OK, &username, Some(&e.msg)),
        _ => screens::login_page(StatusCode::OK, &username, Some("The login failed")),
    }
}

/// Checks the CSRF token of a state-changing request; the refusal page otherwise.
fn check_csrf(req: &Req) -> Result<(), Box<Response>> {
    let given = req.get("csrf").unwrap_or("");
    match req.session.as_deref() {
        Some(sid) if !given.is_empty() && given == csrf_token(sid) => Ok(()),
        _ => Err(Box::new(screens::error_page(
            None,
            StatusCode::FORBIDDEN,
            "The form has expired or did not come from this panel (missing or wrong CSRF \
             token); nothing was changed. Reload the page and try again.",
        ))),
    }
}

async fn logout(
    State(app): State<Arc<App>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    request: Request,
) -> Response {
    let req = read_or_fail!(app, peer, request);
    if let Err(refused) = check_csrf(&req) {
        return *refused;
    }
    let _ = req.call("logout", Params::new()).await;
    let mut cookies = vec![cleared(SESSION_COOKIE), cleared(STAFF_COOKIE)];
    // Leaving a client's view ends the staff session kept aside as well.
    if let Some(staff) = req.staff_session.clone() {
        let _ = server::dispatch(&req.app, "logout", Params::new(), Some(staff), req.ip).await;
        cookies.truncate(2);
    }
    redirect("/login", &cookies)
}

/// Staff leave a client's view (`account.su`): the client session ends and the staff session
/// kept aside comes back.
async fn back_to_staff(
    State(app): State<Arc<App>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    request: Request,
) -> Response {
    let req = read_or_fail!(app, peer, request);
    if let Err(refused) = check_csrf(&req) {
        return *refused;
    }
    let Some(staff) = req.staff_session.clone() else {
        return redirect("/", &[]);
    };
    let _ = req.call("logout", Params::new()).await;
    redirect(
        "/f/account",
        &[
            session_cookie_value(SESSION_COOKIE, &staff),
            cleared(STAFF_COOKIE),
        ],
    )
}

async fn screen_get(
    State(app): State<Arc<App>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    Path(func): Path<String>,
    request: Request,
) -> Response {
    let req = read_or_fail!(app, peer, request);
    if let Some(decl) = req.decl(&func)
        && matches!(decl.handler, crate::func::Handler::List(_))
    {
        return screens::list_page(&req, None, &decl).await;
    }
    let Some(who) = req.who().await else {
        return redirect("/login", &[]);
    };
    let decl = match screens::allowed(&req, &who, &func) {
        Ok(decl) => decl,
        Err(refused) => return *refused,
    };
    screens::show(&req, &who, &decl).await
}

async fn screen_post(
    State(app): State<Arc<App>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    Path(func): Path<String>,
    request: Request,
) -> Response {
    let req = read_or_fail!(app, peer, request);
    if let Err(refused) = check_csrf(&req) {
        return *refused;
    }
    let Some(who) = req.who().await else {
        return redirect("/login", &[]);
    };
    let decl = match screens::allowed(&req, &who, &func) {
        Ok(decl) => decl,
        Err(refused) => return *refused,
    };
    screens::submit(&req, &who, &decl).await
}

/// After `account.su`: the client's session becomes the panel's, the staff session is kept
/// aside to come back to.
pub(crate) fn enter_client_view(req: &Req, client_sid: &str) -> Response {
    let mut cookies = vec![session_cookie_value(SESSION_COOKIE, client_sid)];
    if let Some(staff) = &req.session {
        cookies.push(session_cookie_value(STAFF_COOKIE, staff));
    }
    redirect("/", &cookies)
}
