//! The HTTP front end: BILLmanager's `/billmgr` endpoint on axum and tokio, an adapter around
//! the one dispatcher ([`Engine`]). It turns a request into a func name, [`Params`], the
//! `billmgrses5` cookie and the peer address; runs the call in one of three lanes ([`Lane`]: a
//! short view inline, a write on the [`writer`] thread's next batch, the rest on tokio's
//! blocking pool, as SQLite calls block); and renders the [`Doc`] with [`wire`]. Every answer
//! to `/billmgr` is a document with HTTP 200, errors included, as BILLmanager clients expect.
//! A file document (a PDF invoice, a printable page) is answered as its bytes with its media
//! type and a `Content-Disposition` naming the file, whatever `out` says.
//!
//! What keeps it up: a body size limit, a parameter count limit, a deadline per request, strict
//! decoding ([`form`]), closing quiet connections ([`idle`]), the failed-login [`throttle`],
//! and a graceful stop on SIGTERM/SIGINT that finishes the requests in flight before the
//! database is closed.

pub mod form;
pub mod idle;
pub mod throttle;
pub mod writer;

/// Writes one line to the server log. Text from outside (logins, func names, module names,
/// error messages that may carry a script's words) has its control characters escaped, so
/// that no request or script writes a line of its own.
macro_rules! log {
    ($($arg:tt)*) => {
        eprintln!("{}", $crate::script::log_escaped(&format!($($arg)*)))
    };
}

use crate::auth::Caller;
use crate::doc::{FileDoc, Level};
use crate::engine::Lane;
use crate::error::{ErrorType, FuncError};
use crate::wire::{self, Format, Meta};
use crate::{Doc, Engine, Params};
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use axum::routing::any;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use idle::{IdleListener, Peer};
use std::future::Future;
use std::io::{self, Write};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use throttle::{Throttle, ThrottleConfig};
use tokio::net::TcpListener;
use writer::{ABANDONED, Job, STARTED, WAITING, WriterThread};

/// The session cookie BILLmanager's panel uses.
pub const SESSION_COOKIE: &str = "billmgrses5";
/// Where `billhost serve` listens unless told otherwise (BILLmanager's own port).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:1500";

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest request body read, in bytes.
    pub body_limit: usize,
    /// Most parameters (query and body together) in one request.
    pub max_params: usize,
    /// From the request's arrival to its answer.
    pub request_timeout: Duration,
    /// A connection on which nothing has moved for this long is closed (a client that sends
    /// nothing, idle keep-alive). Keep it longer than `request_timeout`.
    pub idle_timeout: Duration,
    /// After a stop signal, how long requests still open may take before the server exits
    /// anyway (a client that never finishes sending must not hold the stop forever).
    pub shutdown_grace: Duration,
    pub throttle: ThrottleConfig,
    /// Async worker threads (see [`default_workers`]).
    pub workers: usize,
}

/// The async workers `serve` runs by default: one per CPU but one (at least one). The CPU left
/// over is the writer thread's, which runs every write and is the write throughput's bound;
/// the checkpoint thread and the blocking pool share it. On this project's 2-CPU bench machine
/// one worker instead of two gave durable `payment.setpaid` from 64 clients +15 % and the view
/// bench more, as the two workers' inline reads contend on SQLite's process-wide WAL lock.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            body_limit: 1024 * 1024,
            max_params: 1000,
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(40),
            throttle: ThrottleConfig::default(),
            workers: default_workers(),
        }
    }
}

pub(crate) struct App {
    engine: Arc<Engine>,
    config: ServerConfig,
    throttle: Mutex<Throttle>,
    /// No failed login is on record: requests skip the throttle's lock.
    throttle_clear: AtomicBool,
    writer: WriterThread,
}

/// One request, read and decoded.
struct Call {
    func: String,
    params: Params,
    format: Format,
    lang: String,
    session: Option<String>,
    /// No func, only a session: the request tests it, and answers its session document.
    session_probe: Option<String>,
}

/// What the engine answered, and what to do with the session cookie.
struct Answer {
    doc: Doc,
    cookie: Option<String>,
}

/// Runs the server until SIGTERM or SIGINT: binds `listen`, prints the bound address on stdout,
/// serves, and returns once the requests in flight are answered and every func that started
/// has finished; the caller then drops the engine, which closes the database.
pub fn run(engine: Arc<Engine>, config: ServerConfig, listen: &str) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.workers.max(1))
        .enable_all()
        .thread_name("billhost-http")
        .thread_stack_size(crate::script::THREAD_STACK)
        .build()?;
    let result = runtime.block_on(async {
        // Handlers go in before the address is announced, so that a signal sent as soon as the
        // server is known to be up stops it gracefully instead of killing it.
        let signals = stop_signal()?;
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        println!("billhost serve: listening on http://{addr}/billmgr");
        io::stdout().flush()?;
        serve(listener, engine, config, signals).await
    });
    // Dropping the runtime waits for blocking tasks, so no func is cut off halfway.
    drop(runtime);
    result
}

/// Serves `/billmgr` on `listener` until `shutdown` completes, then stops accepting and waits
/// (at most `shutdown_grace`) for the requests in flight.
pub async fn serve(
    listener: TcpListener,
    engine: Arc<Engine>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let grace = config.shutdown_grace;
    let listener = IdleListener::new(listener, config.idle_timeout);
    let app = Arc::new(App {
        writer: WriterThread::start(engine.clone())?,
        engine,
        throttle: Mutex::new(Throttle::new(config.throttle)),
        throttle_clear: AtomicBool::new(true),
        config,
    });
    let writes = app.clone();
    let stopping = Arc::new(tokio::sync::Notify::new());
    let notify = stopping.clone();
    let server = axum::serve(
        listener,
        router(app).into_make_service_with_connect_info::<Peer>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        notify.notify_one();
    });
    let served = tokio::select! {
        result = server => result,
        () = async {
            stopping.notified().await;
            tokio::time::sleep(grace).await;
        } => {
            log!(
                "billhost serve: requests still open {} s after the stop signal; closing them",
                grace.as_secs()
            );
            Ok(())
        }
    };
    // The writes already queued run and commit before the database can be closed.
    let _ = tokio::task::spawn_blocking(move || writes.writer.stop()).await;
    served
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/billmgr", any(billmgr))
        .route(
            "/billmgr/callback/{module}",
            axum::routing::post(gateway_callback),
        )
        .merge(crate::panel::router())
        .fallback(not_found)
        .with_state(app)
}

/// Completes on the first SIGTERM or SIGINT, and says so on stderr.
fn stop_signal() -> io::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            log!("billhost serve: {name}: no new connections; finishing requests in flight");
            stop_scripts_soon();
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            log!("billhost serve: interrupted: finishing requests in flight");
            stop_scripts_soon();
        })
    }
}

/// A second after the stop signal, every script still running (a runaway one, say) is
/// stopped at its next budget check, so that its call rolls back and the writer can stop: the
/// calls in flight get that second to finish as usual.
fn stop_scripts_soon() {
    let _ = std::thread::Builder::new()
        .name("billhost-stop-scripts".into())
        .spawn(|| {
            std::thread::sleep(std::time::Duration::from_secs(1));
            crate::script::stop_all();
        });
}

async fn not_found() -> Response {
    let doc = Doc::Error(FuncError::new(
        ErrorType::Missed,
        "path",
        "",
        "The API is at /billmgr",
    ));
    let mut response = render(&doc, Format::Xml, "", "en", None);
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

/// `/billmgr`: GET and POST alike. Whatever happens, the answer is a document.
async fn billmgr(
    State(app): State<Arc<App>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    request: Request,
) -> Response {
    let deadline = tokio::time::Instant::now() + app.config.request_timeout;
    let timeout_secs = app.config.request_timeout.as_secs_f64();

    // Until the parameters are read, errors answer in the format the query asked for, if any.
    let mut format = Format::Xml;
    let read = tokio::time::timeout_at(deadline, read_call(&app, request, &mut format)).await;
    let call = match read {
        Ok(Ok(call)) => call,
        Ok(Err(e)) => return render(&Doc::Error(e), format, "", "en", None),
        Err(_) => {
            let e = FuncError::value(
                "request",
                "",
                format!("The request was not received within {timeout_secs} s"),
            );
            return render(&Doc::Error(e), format, "", "en", None);
        }
    };

    let ip = peer.ip().to_canonical();
    let answer = in_lane(&app, &call, ip, deadline).await;
    let answer = match (&call.session_probe, answer.doc) {
        (Some(sid), Doc::Form(fields)) => {
            let form = Doc::Form(fields);
            match form.field("level").and_then(Level::parse) {
                Some(level) => Answer {
                    doc: Doc::Auth {
                        id: sid.clone(),
                        level,
                    },
                    cookie: answer.cookie,
                },
                None => Answer {
                    doc: form,
                    cookie: answer.cookie,
                },
            }
        }
        (_, doc) => Answer {
            doc,
            cookie: answer.cookie,
        },
    };
    render(
        &answer.doc,
        call.format,
        &call.func,
        &call.lang,
        answer.cookie,
    )
}

/// Runs a call in its lane (see [`Lane`]).
async fn in_lane(
    app: &Arc<App>,
    call: &Call,
    ip: IpAddr,
    deadline: tokio::time::Instant,
) -> Answer {
    match app.engine.lane(&call.func, &call.params) {
        Lane::Inline => match app.inline(call, ip) {
            Some(answer) => answer,
            None => blocking(app, call, ip, deadline).await,
        },
        Lane::Writer => match admit(app, call, ip, deadline).await {
            Ok(Some(admitted)) => queued(app, call, admitted, ip, deadline).await,
            Ok(None) => blocking(app, call, ip, deadline).await,
            Err(refused) => refused,
        },
        Lane::Blocking => blocking(app, call, ip, deadline).await,
    }
}

/// A write request's caller, as its admission found it.
struct Admitted {
    caller: Caller,
    /// The auth epoch the caller is known at, for the writer to check in the write's own
    /// transaction; `None` when the admission read the database (or there are no credentials).
    known_at: Option<i64>,
    logins: Logins,
}

/// The caller of a write request when quick to tell: from the credential cache alone, where
/// the request arrived (the writer checks the auth epoch); otherwise ([`App::admit_quick`]: a
/// session) where the request arrived, or, when the database may not be called on an async
/// worker (PostgreSQL), on the blocking pool, so that the write still goes to the writer
/// thread's batches.
async fn admit(
    app: &Arc<App>,
    call: &Call,
    ip: IpAddr,
    deadline: tokio::time::Instant,
) -> Result<Option<Admitted>, Answer> {
    let logins = Logins::of(&call.func, &call.params);
    if let Some(refused) = app.refused(&logins, ip) {
        return Err(refused);
    }
    let known = app
        .engine
        .caller_known_at(&call.params, call.session.as_deref(), &ip.to_string());
    if let Some((caller, known_at)) = known {
        return Ok(Some(Admitted {
            caller,
            known_at,
            logins,
        }));
    }
    if app.engine.callable_on_async_worker() {
        return Ok(app.admit_quick(&call.params, call.session.as_deref(), ip, logins));
    }
    let task = {
        let app = app.clone();
        let (params, session) = (call.params.clone(), call.session.clone());
        tokio::task::spawn_blocking(move || {
            app.admit_quick(&params, session.as_deref(), ip, logins)
        })
    };
    match tokio::time::timeout_at(deadline, task).await {
        Ok(Ok(admitted)) => Ok(admitted),
        // The slow way decides (and answers in time or says why not).
        Ok(Err(_)) => Ok(None),
        Err(_) => Err(timed_out(app, call, ip, false)),
    }
}

/// One func call for the web panel ([`crate::panel`]): the same lanes, login throttle,
/// deadline and session cookie as `/billmgr`. Answers the document and the `Set-Cookie` value
/// (after `auth` and `logout`).
pub(crate) async fn dispatch(
    app: &Arc<App>,
    func: &str,
    params: Params,
    session: Option<String>,
    ip: IpAddr,
) -> (Doc, Option<String>) {
    let deadline = tokio::time::Instant::now() + app.config.request_timeout;
    let call = Call {
        func: func.to_string(),
        params,
        format: Format::Xml,
        lang: "en".into(),
        session,
        session_probe: None,
    };
    let answer = in_lane(app, &call, ip.to_canonical(), deadline).await;
    (answer.doc, answer.cookie)
}

impl App {
    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }
    pub(crate) fn config(&self) -> &ServerConfig {
        &self.config
    }
}

/// What a request whose func did not finish (or start) within the deadline answers.
fn timed_out(app: &App, call: &Call, ip: IpAddr, ran: bool) -> Answer {
    let timeout_secs = app.config.request_timeout.as_secs_f64();
    let msg = if ran {
        format!(
            "The func did not finish within {timeout_secs} s; it is still running and \
             may complete: check its effect before repeating it"
        )
    } else {
        format!(
            "The server is busy: the func did not start within {timeout_secs} s and was not run"
        )
    };
    log!("billhost serve: {} from {ip}: {msg}", call.func);
    Answer {
        doc: Doc::Error(FuncError::new(ErrorType::Internal, "request", "", msg)),
        cookie: None,
    }
}

/// The whole call (throttle, authentication, the func) on tokio's blocking pool: for what may
/// block for long (argon2, lists, call-outs, hooks, files).
async fn blocking(
    app: &Arc<App>,
    call: &Call,
    ip: IpAddr,
    deadline: tokio::time::Instant,
) -> Answer {
    // The func starts only if its request is still wanted: a request that timed out (or whose
    // client left) before its turn on the blocking pool is never run behind its back.
    let state = Arc::new(AtomicU8::new(WAITING));
    let abandon = Abandon(state.clone());
    let task = {
        let app = app.clone();
        let (func, params, session) =
            (call.func.clone(), call.params.clone(), call.session.clone());
        tokio::task::spawn_blocking(move || {
            if state
                .compare_exchange(WAITING, STARTED, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                return None;
            }
            Some(app.call(&func, params, session.as_deref(), ip))
        })
    };
    match tokio::time::timeout_at(deadline, task).await {
        Ok(Ok(Some(answer))) => answer,
        Ok(Ok(None)) | Ok(Err(_)) => Answer {
            doc: Doc::Error(FuncError::internal(
                "The func failed unexpectedly; it may not have run",
            )),
            cookie: None,
        },
        Err(_) => timed_out(app, call, ip, !abandon.abandon()),
    }
}

/// A write func of an authenticated caller, queued for the writer thread.
async fn queued(
    app: &Arc<App>,
    call: &Call,
    admitted: Admitted,
    ip: IpAddr,
    deadline: tokio::time::Instant,
) -> Answer {
    let state = Arc::new(AtomicU8::new(WAITING));
    let abandon = Abandon(state.clone());
    let (reply, answer) = tokio::sync::oneshot::channel();
    app.writer.submit(Job {
        caller: admitted.caller,
        known_at: admitted.known_at,
        func: call.func.clone(),
        params: call.params.clone(),
        state,
        reply,
    });
    let doc = match tokio::time::timeout_at(deadline, answer).await {
        Ok(Ok(Some(doc))) => doc,
        // Not run: the auth epoch moved since the credentials were cached.
        Ok(Ok(None)) => return blocking(app, call, ip, deadline).await,
        Ok(Err(_)) => Doc::Error(writer::not_run()),
        Err(_) => return timed_out(app, call, ip, !abandon.abandon()),
    };
    app.authenticated(&admitted.logins);
    app.conclude(&call.func, doc, &admitted.logins, ip)
}

/// `POST /billmgr/callback/{module}[?paymethod=N]`: a payment gateway's notification as the
/// gateway sends it (any content type). The raw body and the headers become `payment.callback`'s
/// `body` and `headers`, run as an anonymous caller. The answer is the plugin's `reply` as plain
/// text with 200; a rejected callback is its error document with 400, a failure of ours with 500
/// (so that the gateway retries).
async fn gateway_callback(
    State(app): State<Arc<App>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    axum::extract::Path(module): axum::extract::Path<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let read = async {
        let query = form::decode(
            parts.uri.query().unwrap_or("").as_bytes(),
            "query",
            app.config.max_params,
        )?;
        let bytes = read_body(&parts.headers, body, app.config.body_limit).await?;
        let body = String::from_utf8(bytes)
            .map_err(|_| FuncError::value("body", "", "The callback body is not UTF-8"))?;
        let headers: String = parts
            .headers
            .iter()
            .filter(|(name, _)| *name != header::COOKIE && *name != header::AUTHORIZATION)
            .filter_map(|(name, value)| Some(format!("{}: {}\n", name, value.to_str().ok()?)))
            .collect();
        let mut params = Params::from_pairs(
            query
                .iter()
                .filter(|(k, _)| k == "paymethod")
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        params.set("module", module.clone());
        params.set("body", body);
        params.set("headers", headers);
        Ok::<Params, FuncError>(params)
    };
    let deadline = tokio::time::Instant::now() + app.config.request_timeout;
    let doc = match tokio::time::timeout_at(deadline, read).await {
        Ok(Ok(params)) => {
            let engine = app.engine.clone();
            let ip = peer.ip().to_canonical().to_string();
            let task = tokio::task::spawn_blocking(move || {
                engine.call(
                    &crate::auth::Caller::anonymous(&ip),
                    "payment.callback",
                    params,
                )
            });
            match tokio::time::timeout_at(deadline, task).await {
                Ok(Ok(doc)) => doc,
                _ => Doc::Error(FuncError::internal(
                    "The callback did not finish in time; it may still complete",
                )),
            }
        }
        Ok(Err(e)) => Doc::Error(e),
        Err(_) => Doc::Error(FuncError::value(
            "request",
            "",
            "The callback was not received in time",
        )),
    };
    match &doc {
        Doc::Error(e) => {
            let status = if e.kind == ErrorType::Internal {
                log!("billhost serve: callback of {module} from {peer}: {e}");
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::BAD_REQUEST
            };
            let mut response = render(&doc, Format::Xml, "payment.callback", "en", None);
            *response.status_mut() = status;
            response
        }
        _ => {
            let reply = doc.field("reply").unwrap_or("OK").to_string();
            let mut response = Response::new(Body::from(reply));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=UTF-8"),
            );
            response
        }
    }
}

/// Marks a request's func as unwanted if it has not started, when the request times out or
/// its handler is dropped (the client went away).
struct Abandon(Arc<AtomicU8>);

impl Abandon {
    /// Whether the func was stopped from starting.
    fn abandon(&self) -> bool {
        self.0
            .compare_exchange(WAITING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

impl Drop for Abandon {
    fn drop(&mut self) {
        self.abandon();
    }
}

/// Reads the query string and, for POST, the form body (body wins), and picks out the func, the
/// format and the session cookie. `format` is updated as soon as `out` is known.
async fn read_call(app: &App, request: Request, format: &mut Format) -> Result<Call, FuncError> {
    let (parts, body) = request.into_parts();
    let limit = app.config.max_params;
    let query = form::decode(parts.uri.query().unwrap_or("").as_bytes(), "query", limit)?;
    if let Some((_, out)) = query.iter().rev().find(|(k, _)| k == "out") {
        *format = Format::parse(out)?;
    }
    let in_query = query.len();
    let mut params = Params::from_pairs(query);
    let body_pairs = match parts.method {
        Method::GET | Method::HEAD => Vec::new(),
        Method::POST => {
            let kind = body_kind(&parts.headers)?;
            let bytes = read_body(&parts.headers, body, app.config.body_limit).await?;
            // The limit counts the query's pairs and the body's together.
            let room = limit - in_query;
            let pairs = match kind {
                BodyKind::Form => form::decode(&bytes, "body", room),
                BodyKind::Json => form::decode_json(&bytes, room),
            };
            pairs.map_err(|e| {
                if e.object == "params" {
                    form::too_many(limit)
                } else {
                    e
                }
            })?
        }
        other => {
            return Err(FuncError::value(
                "method",
                other.as_str(),
                "Call /billmgr with GET or POST",
            ));
        }
    };
    for (k, v) in body_pairs {
        params.set(k, v);
    }
    *format = Format::parse(params.get("out").unwrap_or(""))?;
    let lang = params
        .get("lang")
        .filter(|l| {
            l.len() <= 16
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .unwrap_or("en")
        .to_string();
    let session = session_cookie(&parts.headers);
    let mut session_probe = None;
    let func = match params.get("func").filter(|f| !f.is_empty()) {
        Some(func) => func.to_string(),
        // Credentials and no func: clients test a login this way. `authinfo` logs in (a
        // session document, as `auth` answers); a session answers its own document.
        None => match params.get("authinfo").map(|a| a.split_once(':')) {
            Some(Some((user, pass))) => {
                let (user, pass) = (user.to_string(), pass.to_string());
                params.remove("authinfo");
                params.set("username", user);
                params.set("password", pass);
                "auth".to_string()
            }
            _ => match params
                .get("auth")
                .map(str::to_string)
                .or_else(|| session.clone())
            {
                Some(sid) if !params.has("authinfo") => {
                    session_probe = Some(sid);
                    "whoami".to_string()
                }
                _ => params.required("func")?.to_string(),
            },
        },
    };
    Ok(Call {
        func,
        params,
        format: *format,
        lang,
        session,
        session_probe,
    })
}

/// How a POST body carries its parameters.
enum BodyKind {
    Form,
    /// A JSON object of parameters, as some API wrappers send them.
    Json,
}

/// A form body (or none): what the panel's POSTs must be.
pub(crate) fn check_content_type(headers: &HeaderMap) -> Result<(), FuncError> {
    match body_kind(headers)? {
        BodyKind::Form => Ok(()),
        BodyKind::Json => Err(FuncError::value(
            "content-type",
            "application/json",
            "Send the form as application/x-www-form-urlencoded",
        )),
    }
}

fn body_kind(headers: &HeaderMap) -> Result<BodyKind, FuncError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(BodyKind::Form);
    };
    let mime = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim();
    if mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Ok(BodyKind::Form)
    } else if mime.eq_ignore_ascii_case("application/json") {
        Ok(BodyKind::Json)
    } else {
        Err(FuncError::value(
            "content-type",
            mime,
            "Send parameters in the query string, as application/x-www-form-urlencoded or as \
             an application/json object",
        ))
    }
}

pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Vec<u8>, FuncError> {
    let too_large = || {
        FuncError::value(
            "body",
            "",
            format!("The request body is larger than {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(e) if e.is::<LengthLimitError>() => Err(too_large()),
        Err(_) => Err(FuncError::value(
            "body",
            "",
            "The request body could not be read",
        )),
    }
}

/// The `billmgrses5` cookie, if the request carries one.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
}

fn render(doc: &Doc, format: Format, func: &str, lang: &str, cookie: Option<String>) -> Response {
    if let Doc::File(file) = doc {
        return file_response(file);
    }
    let body = wire::render(doc, format, Meta { func, lang });
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DOC_CSP),
    );
    if let Some(value) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(header::SET_COOKIE, value);
    }
    response
}

/// A file as itself: its media type, and a disposition with the file name (ASCII fallback and
/// the UTF-8 name of RFC 6266).
pub(crate) fn file_response(file: &FileDoc) -> Response {
    let mut response = Response::new(Body::from(file.bytes.clone()));
    let headers = response.headers_mut();
    let mime = HeaderValue::from_str(&file.mime)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, mime);
    let ascii: String = file
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = file
        .name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let kind = if file.attachment {
        "attachment"
    } else {
        "inline"
    };
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    )) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // An invoice is shown as itself, never sniffed into something else, never framed, and
    // runs nothing: its template may style itself inline, and that is all.
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(FILE_CSP),
    );
    response
}

/// The policy of file answers (the HTML and PDF invoices): no script, no fetch, no frame, no
/// form; inline styles and embedded (data:) images and fonts only.
pub const FILE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
    font-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; sandbox";

/// The policy of documents: nothing of theirs is ever run or framed.
const DOC_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// The logins a request tries: `authinfo`'s user, and `auth`'s username.
struct Logins {
    authinfo: bool,
    authinfo_login: Option<String>,
    username: Option<String>,
}

impl Logins {
    fn of(func: &str, params: &Params) -> Logins {
        Logins {
            authinfo: params.has("authinfo"),
            authinfo_login: params
                .get("authinfo")
                .and_then(|a| a.split_once(':'))
                .map(|(u, _)| u.to_string()),
            username: params
                .get("username")
                .filter(|_| func == "auth")
                .map(str::to_string),
        }
    }
}

impl App {
    fn throttle(&self) -> MutexGuard<'_, Throttle> {
        self.throttle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The login throttle's refusal, when a login this request tries is locked out.
    fn refused(&self, logins: &Logins, ip: IpAddr) -> Option<Answer> {
        if !logins.authinfo && logins.username.is_none()
            || self.throttle_clear.load(Ordering::Acquire)
        {
            return None;
        }
        let now = Instant::now();
        let throttle = self.throttle();
        for login in [logins.authinfo_login.as_deref(), logins.username.as_deref()] {
            if let Err(refusal) = throttle.check(login, ip, now) {
                let secs = refusal.retry_after.as_secs().max(1);
                log!(
                    "billhost serve: login refused for {} from {ip}: throttled for {secs} s more",
                    refusal.key
                );
                let msg = format!(
                    "Too many failed logins for this login or address; try again in {secs} s"
                );
                return Some(Answer {
                    doc: Doc::Error(FuncError::auth(msg)),
                    cookie: None,
                });
            }
        }
        None
    }

    /// `authinfo` passed: its login's failure count starts again.
    fn authenticated(&self, logins: &Logins) {
        if let Some(login) = &logins.authinfo_login {
            self.login_succeeded(login);
        }
    }

    /// A login succeeded: its failure count starts again (nothing to do while none is on
    /// record).
    fn login_succeeded(&self, login: &str) {
        if self.throttle_clear.load(Ordering::Acquire) {
            return;
        }
        let mut throttle = self.throttle();
        throttle.succeed(login);
        self.throttle_clear
            .store(throttle.is_clear(), Ordering::Release);
    }

    /// One call, on the blocking pool: the login throttle, authentication, the func, and what
    /// the outcome means for the throttle and the session cookie.
    fn call(&self, func: &str, params: Params, session: Option<&str>, ip: IpAddr) -> Answer {
        let ip_text = ip.to_string();
        let logins = Logins::of(func, &params);
        if let Some(refused) = self.refused(&logins, ip) {
            return refused;
        }
        let caller = match self.engine.authenticate(&params, session, &ip_text) {
            Ok(caller) => {
                self.authenticated(&logins);
                caller
            }
            Err(e) => {
                if logins.authinfo && e.kind == ErrorType::Auth {
                    self.failed_login(logins.authinfo_login.as_deref(), ip, "authinfo");
                }
                // A public func with stale or wrong credentials runs anonymously.
                match self.engine.caller_for(func, Err(e), &ip_text) {
                    Ok(caller) => caller,
                    Err(e) => {
                        return Answer {
                            doc: Doc::Error(e),
                            cookie: None,
                        };
                    }
                }
            }
        };
        let doc = self.engine.call(&caller, func, params);
        self.conclude(func, doc, &logins, ip)
    }

    /// A view or blank form answered where the request arrived, authentication and func in one
    /// read transaction; `None` when it must take the blocking pool after all (see
    /// [`Engine::handle_inline`]).
    fn inline(&self, call: &Call, ip: IpAddr) -> Option<Answer> {
        let logins = Logins::of(&call.func, &call.params);
        if let Some(refused) = self.refused(&logins, ip) {
            return Some(refused);
        }
        let doc = self.engine.handle_inline(
            &call.func,
            &call.params,
            call.session.as_deref(),
            &ip.to_string(),
        )?;
        self.authenticated(&logins);
        Some(self.conclude(&call.func, doc, &logins, ip))
    }

    /// The caller of a write request when quick to tell on a read transaction (see
    /// [`Engine::authenticate_quick`]), with the logins it tried; `None` when the blocking
    /// pool must decide.
    fn admit_quick(
        &self,
        params: &Params,
        session: Option<&str>,
        ip: IpAddr,
        logins: Logins,
    ) -> Option<Admitted> {
        let caller = self
            .engine
            .authenticate_quick(params, session, &ip.to_string())?;
        Some(Admitted {
            caller,
            known_at: None,
            logins,
        })
    }

    /// What the func's outcome means for the throttle and the session cookie.
    fn conclude(&self, func: &str, doc: Doc, logins: &Logins, ip: IpAddr) -> Answer {
        let mut cookie = None;
        match (func, &doc) {
            ("auth", Doc::Auth { id, .. }) => {
                if let Some(login) = &logins.username {
                    self.login_succeeded(login);
                }
                cookie = Some(format!(
                    "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax"
                ));
            }
            ("auth", Doc::Error(e)) if e.kind == ErrorType::Auth => {
                self.failed_login(logins.username.as_deref(), ip, "auth");
            }
            ("logout", Doc::Ok(_)) => {
                cookie = Some(format!(
                    "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"
                ));
            }
            (_, Doc::Error(e)) if e.kind == ErrorType::Internal => {
                // Not the caller's fault: the operator needs to see it.
                log!("billhost serve: {func} from {ip}: {e}");
            }
            _ => {}
        }
        Answer { doc, cookie }
    }

    fn failed_login(&self, login: Option<&str>, ip: IpAddr, how: &str) {
        let mut throttle = self.throttle();
        let config = throttle.config();
        let locked = throttle.fail(login, ip, Instant::now());
        self.throttle_clear.store(false, Ordering::Release);
        drop(throttle);
        let who = login.map_or_else(|| "(no login)".to_string(), |l| format!("'{l}'"));
        log!("billhost serve: failed login ({how}) for {who} from {ip}");
        if let Some(refusal) = locked {
            log!(
                "billhost serve: {} reached {} failed logins within {} s; refusing its logins for {} s",
                refusal.key,
                config.max_failures,
                config.window.as_secs(),
                refusal.retry_after.as_secs()
            );
        }
    }
}
