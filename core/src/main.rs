//! The `billhost` command: `init`, `call` (like BILLmanager's mgrctl), `funcs`, `check`,
//! `scripts`, `plugins`, `run-jobs`, `deliver`, `serve` and `repl`.

use billhost::auth::{self, AdminSetup, Caller};
use billhost::config::Config;
use billhost::plugin::{self, PluginConfig, PluginHost};
use billhost::server::throttle::ThrottleConfig;
use billhost::server::{self, ServerConfig};
use billhost::wire::{self, Format, Meta};
use billhost::{Doc, Engine, EngineConfig, Params, clock, mail};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "billhost",
    version,
    about = "An open, scriptable billing host speaking BILLmanager's func API"
)]
struct Cli {
    /// The database: a SQLite file (created on first use) or a PostgreSQL URL
    /// (`postgres://user@host1,host2/db?target_session_attrs=read-write`).
    #[arg(
        long,
        global = true,
        env = "BILLHOST_DB",
        default_value = "billhost.db"
    )]
    db: PathBuf,
    /// The business-rule scripts folder.
    #[arg(
        long,
        global = true,
        env = "BILLHOST_SCRIPTS",
        default_value = "scripts"
    )]
    scripts: PathBuf,
    /// Memory one generation of scripts may use, in MiB.
    #[arg(
        long,
        global = true,
        env = "BILLHOST_SCRIPT_MEMORY_MB",
        default_value_t = 64
    )]
    script_memory_mb: usize,
    /// VM instructions one func call's scripts may run.
    #[arg(
        long,
        global = true,
        env = "BILLHOST_SCRIPT_INSTRUCTIONS",
        default_value_t = 50_000_000
    )]
    script_instructions: i64,
    /// Wall-clock seconds one func call's scripts may take (hooks and nested calls together)
    /// before the call is abandoned: rolled back and answered with a `script` error.
    #[arg(
        long,
        global = true,
        env = "BILLHOST_SCRIPT_TIMEOUT",
        default_value_t = 5
    )]
    script_timeout_secs: u64,
    /// The configuration file (SMTP, templates); default: billhost.toml beside the database,
    /// when it exists.
    #[arg(long, global = true, env = "BILLHOST_CONFIG")]
    config: Option<PathBuf>,
    /// The operator's templates folder (`invoice.html`, `invoice-font.ttf`); overrides the
    /// configuration file's `templates`.
    #[arg(long, global = true)]
    templates: Option<PathBuf>,
    /// A plugin folder (repeatable); default: BILLHOST_PLUGINS (a path list), else
    /// target/release and target/debug under the working directory.
    #[arg(long = "plugins", global = true, value_name = "DIR")]
    plugins: Vec<PathBuf>,
    /// A JSON file of settings by plugin name (notifiers, func handlers); default
    /// plugins.json in the working directory when it exists.
    #[arg(long, global = true, env = "BILLHOST_PLUGIN_CONFIG")]
    plugin_config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the database, provider 1 and the staff user `admin`.
    Init {
        /// The admin's password; one is generated and printed once when omitted.
        #[arg(long)]
        admin_password: Option<String>,
    },
    /// Run one func and print its document; exits 1 when the document is an error.
    Call {
        /// The func, e.g. `account.edit`.
        func: String,
        /// Parameters as name=value.
        params: Vec<String>,
        /// Output format: xml, json, sjson or text.
        #[arg(long)]
        out: Option<String>,
        /// Run as this user instead of the local superuser.
        #[arg(long = "as", value_name = "LOGIN")]
        as_login: Option<String>,
        /// Write a file document (e.g. `payment.print.pdf`) to this file instead of printing it.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// BILLmanager's `mgrctl` syntax: `billhost mgrctl -m billmgr FUNC [name=value ...] [-o
    /// xml|json|text]` (also when the binary is run through a link named `mgrctl`); prints the
    /// document (text by default, as mgrctl does) and exits 0, or 1 for an error document.
    Mgrctl(MgrctlArgs),
    /// List every func with its access level and kind.
    Funcs,
    /// Verify the ledger's invariants over the whole database; prints each violation and
    /// exits 1 when there is any.
    Check,
    /// Show the live scripts generation, its files, funcs and jobs, and the last reload error.
    Scripts,
    /// List the loaded plugins (name, version, kind, ABI version, features) and the libraries
    /// that could not be loaded; exits 1 when there is any load error.
    Plugins,
    /// Run every scheduled script job once (for cron), each in its own transaction, then the
    /// plugin jobs: `payment.checkpay` and `payment.refund.retry`.
    RunJobs {
        /// Claim each job's current period as the servers' schedulers do, and skip a job whose
        /// period has already run on any server or machine on the database: for cron on
        /// several machines, so that each period runs once across them.
        #[arg(long)]
        once: bool,
    },
    /// Send the outbox's due email through the configured SMTP server (for cron); exits 1 when
    /// a message could not be sent.
    Deliver,
    /// Serve the BILLmanager-compatible HTTP API at /billmgr until SIGTERM or SIGINT.
    Serve(ServeArgs),
    /// Copy a SQLite installation into a new, empty PostgreSQL database (every table, ids
    /// kept), in one transaction, verified by row counts and the ledger check before it is
    /// committed; prints what was copied.
    Migrate {
        /// The SQLite file to copy (left as it is).
        #[arg(long, value_name = "FILE.db")]
        from: PathBuf,
        /// The PostgreSQL database to fill: `postgres://user@host/db`; it must hold no table.
        #[arg(long, value_name = "URL")]
        to: String,
    },
    /// An interactive session: func calls, Lua with the billing API, and :dry what-ifs.
    Repl {
        /// The history file [default: ~/.billhost_history, or DB.history without a home].
        #[arg(long, env = "BILLHOST_HISTORY")]
        history: Option<PathBuf>,
        /// Keep no history file.
        #[arg(long)]
        no_history: bool,
    },
}

#[derive(clap::Args)]
struct MgrctlArgs {
    /// The panel module: `billmgr` (the only one billhost is).
    #[arg(short = 'm', value_name = "MODULE")]
    module: String,
    /// Output format: text (default), xml or json.
    #[arg(short = 'o', value_name = "FORMAT")]
    out: Option<String>,
    /// The func, e.g. `payment.info`.
    func: Option<String>,
    /// Parameters as name=value.
    params: Vec<String>,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, env = "BILLHOST_LISTEN", default_value = server::DEFAULT_LISTEN)]
    listen: String,
    /// Seconds from a request's arrival to its answer.
    #[arg(long, default_value_t = 30)]
    request_timeout: u64,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    body_limit: usize,
    /// Most parameters in one request.
    #[arg(long, default_value_t = 1000)]
    max_params: usize,
    /// Failed logins for one login or one address after which its logins are refused (0: never).
    #[arg(long, default_value_t = 10)]
    login_failures: usize,
    /// The window, in seconds, in which those failures are counted.
    #[arg(long, default_value_t = 600)]
    login_window: u64,
    /// Async worker threads (default: one per CPU but one, which the writer thread gets).
    #[arg(long)]
    workers: Option<usize>,
}

/// The command line, read as `billhost mgrctl ...` when the binary runs through a link named
/// `mgrctl` (as payment modules and cron scripts call it).
fn args() -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let invoked = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .map(|n| n.trim_end_matches(".exe"));
    if invoked == Some("mgrctl") {
        args.insert(1, "mgrctl".into());
    }
    args
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(args());
    // A command whose output is piped into `head` ends quietly when the reader goes, as other
    // command-line tools do, instead of failing to print (Rust ignores SIGPIPE by default).
    // The server and the REPL keep ignoring it: a client that leaves is not a reason to stop.
    #[cfg(unix)]
    if !matches!(cli.command, Command::Serve(_) | Command::Repl { .. }) {
        use nix::sys::signal::{SigHandler, Signal, signal};
        // SAFETY: restoring the default disposition before any other thread exists.
        let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    }
    if let Command::Migrate { from, to } = &cli.command {
        return migrate(from, to);
    }
    let mut config = EngineConfig::new(&cli.db).with_scripts(&cli.scripts);
    config.settings = match Config::load(cli.config.as_deref(), &cli.db) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("billhost: configuration: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(dir) = &cli.templates {
        config.settings.templates = Some(dir.clone());
    }
    config.scripts.memory_limit = cli.script_memory_mb.saturating_mul(1 << 20);
    config.scripts.instruction_budget = cli.script_instructions;
    config.scripts.timeout = std::time::Duration::from_secs(cli.script_timeout_secs.max(1));
    // The server's writes come from many clients at once: checkpoints go to a thread of their
    // own so that no write waits for one.
    config.background_checkpoints = matches!(cli.command, Command::Serve(_));
    config.deferred_sync = config.background_checkpoints;
    let mut engine = match Engine::open(config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("billhost: {}: {e}", billhost::store::redacted(&cli.db));
            return ExitCode::from(2);
        }
    };
    let plugins = load_plugins(&cli);
    let listing = matches!(cli.command, Command::Plugins);
    if !listing {
        for e in plugins.errors() {
            eprintln!("billhost: plugin {e}");
        }
    }
    let plugins = plugin::install(&mut engine, plugins);
    match cli.command {
        Command::Init { admin_password } => init(&engine, &cli.db, admin_password.as_deref()),
        Command::Call {
            func,
            params,
            out,
            as_login,
            output,
        } => call(
            &engine,
            &func,
            &params,
            out,
            as_login.as_deref(),
            output.as_deref(),
        ),
        Command::Mgrctl(args) => mgrctl(&engine, args),
        Command::Deliver => deliver(&engine),
        Command::Check => check(&engine),
        Command::Funcs => {
            let rows: Vec<[String; 4]> = engine
                .funcs()
                .iter()
                .map(|d| {
                    [
                        d.name.clone(),
                        d.access.to_string(),
                        d.handler.kind().to_string(),
                        d.title.clone(),
                    ]
                })
                .collect();
            print_table(&["func", "access", "kind", "title"], &rows);
            ExitCode::SUCCESS
        }
        Command::Scripts => {
            let status = engine.scripts().status();
            println!("generation: {}", status.generation);
            println!("folder: {}", cli.scripts.display());
            println!("files: {}", status.files.join(", "));
            println!("funcs: {}", status.funcs.join(", "));
            println!("jobs: {}", status.jobs.join(", "));
            match &status.last_error {
                Some(e) => {
                    println!("last reload error: {e}");
                    ExitCode::from(1)
                }
                None => {
                    println!("last reload error: none");
                    ExitCode::SUCCESS
                }
            }
        }
        Command::Plugins => list_plugins(&plugins),
        Command::RunJobs { once } => run_jobs(&engine, once),
        Command::Serve(args) => serve(engine, &cli.db, args),
        Command::Migrate { .. } => ExitCode::from(2),
        Command::Repl {
            history,
            no_history,
        } => {
            let history = match (no_history, history) {
                (true, _) => None,
                (false, Some(h)) => Some(h),
                (false, None) => Some(billhost::repl::default_history(&cli.db)),
            };
            match billhost::repl::run(engine, history) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("billhost repl: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn load_plugins(cli: &Cli) -> PluginHost {
    let mut config =
        PluginConfig::resolve(cli.plugins.clone(), std::env::var_os("BILLHOST_PLUGINS"));
    let settings = cli
        .plugin_config
        .clone()
        .or_else(|| Some(PathBuf::from("plugins.json")).filter(|p| p.is_file()));
    if let Some(path) = settings
        && let Err(e) = config.read_settings(&path)
    {
        eprintln!("billhost: plugin settings: {e}");
    }
    PluginHost::load(&config)
}

fn list_plugins(host: &PluginHost) -> ExitCode {
    let dirs: Vec<String> = host
        .dirs()
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    println!(
        "plugin folders: {}",
        if dirs.is_empty() {
            "none".to_string()
        } else {
            dirs.join(", ")
        }
    );
    let rows: Vec<[String; 6]> = host
        .plugins()
        .iter()
        .map(|p| {
            [
                p.manifest.name.clone(),
                p.manifest.version.clone(),
                p.manifest.kind.as_str().to_string(),
                p.manifest.abi_version.to_string(),
                if p.manifest.kind == plugin::Kind::Funcs {
                    // A plugin may declare thousands: the table names a few, `funcs` lists all.
                    const SHOWN: usize = 8;
                    let funcs = &p.manifest.funcs;
                    let mut names: Vec<&str> =
                        funcs.iter().take(SHOWN).map(|f| f.name.as_str()).collect();
                    let more = format!("... ({} funcs; `billhost funcs` lists them)", funcs.len());
                    if funcs.len() > SHOWN {
                        names.push(&more);
                    }
                    names.join(",")
                } else {
                    p.manifest.features.join(",")
                },
                p.path.display().to_string(),
            ]
        })
        .collect();
    print_table(
        &["name", "version", "kind", "abi", "features", "file"],
        &rows,
    );
    for s in host.skipped() {
        println!("skipped {s}");
    }
    for e in host.errors() {
        println!("error {e}");
    }
    if host.errors().is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn serve(engine: Engine, db: &std::path::Path, args: ServeArgs) -> ExitCode {
    // A fresh machine gets a working server from one command: the staff user is made here.
    match engine.ensure_staff("admin", None) {
        Ok(AdminSetup::Created { password, .. }) => {
            println!(
                "database {}: staff user 'admin' created",
                billhost::store::redacted(db)
            );
            println!("admin password (shown once): {password}");
        }
        Ok(_) => {}
        Err(e) => {
            eprintln!("billhost serve: {e}");
            return ExitCode::from(2);
        }
    }
    let config = ServerConfig {
        body_limit: args.body_limit,
        max_params: args.max_params,
        request_timeout: Duration::from_secs(args.request_timeout.max(1)),
        idle_timeout: Duration::from_secs(args.request_timeout.max(1) + 30),
        shutdown_grace: Duration::from_secs(args.request_timeout.max(1) + 10),
        throttle: ThrottleConfig {
            max_failures: args.login_failures,
            window: Duration::from_secs(args.login_window),
        },
        workers: args.workers.unwrap_or_else(server::default_workers).max(1),
    };
    // Scripts reload while the server runs; without a folder to watch it serves the live set.
    let watcher = match engine.scripts().watch() {
        Ok(w) => Some(w),
        Err(e) => {
            eprintln!("billhost serve: scripts are not reloaded while serving: {e}");
            None
        }
    };
    let engine = Arc::new(engine);
    // Scripts' scheduled jobs run while the server does.
    let scheduler = billhost::script::Scheduler::spawn(engine.clone());
    // The outbox is delivered while the server runs: at once when a func queues mail, and
    // every minute for retries.
    let deliverer = match engine.config().settings.smtp() {
        Ok(smtp) => Some(mail::Deliverer::spawn(
            engine.clone(),
            smtp,
            Duration::from_secs(60),
        )),
        Err(e) => {
            eprintln!("billhost serve: email stays in the outbox: {e}");
            None
        }
    };
    let result = server::run(engine.clone(), config, &args.listen);
    drop(deliverer);
    drop(scheduler);
    drop(watcher);
    // `run` returns once every request and func has finished: this is the last reference, and
    // dropping it closes the database.
    match Arc::try_unwrap(engine) {
        Ok(engine) => drop(engine),
        Err(_) => eprintln!("billhost serve: the engine is still shared at exit"),
    }
    match result {
        Ok(()) => {
            eprintln!(
                "billhost serve: stopped; database {} closed",
                billhost::store::redacted(db)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("billhost serve: {}: {e}", args.listen);
            ExitCode::from(2)
        }
    }
}

fn init(engine: &Engine, db: &std::path::Path, password: Option<&str>) -> ExitCode {
    match engine.ensure_staff("admin", password) {
        Ok(AdminSetup::Created {
            password,
            generated,
        }) => {
            println!(
                "database {} ready; staff user 'admin' created",
                billhost::store::redacted(db)
            );
            if generated {
                println!("admin password (shown once): {password}");
            }
            ExitCode::SUCCESS
        }
        Ok(AdminSetup::PasswordReset) => {
            println!(
                "database {} ready; password of 'admin' reset",
                billhost::store::redacted(db)
            );
            ExitCode::SUCCESS
        }
        Ok(AdminSetup::Kept) => {
            println!(
                "database {} ready; staff user 'admin' already exists",
                billhost::store::redacted(db)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("billhost init: {e}");
            ExitCode::from(2)
        }
    }
}

/// `mgrctl -m billmgr FUNC k=v -o FMT`: a `call` as the local superuser, text by default.
fn mgrctl(engine: &Engine, args: MgrctlArgs) -> ExitCode {
    if args.module != "billmgr" {
        eprintln!(
            "mgrctl: unknown module '{}': billhost is BILLmanager's billing module, `-m billmgr`",
            args.module
        );
        return ExitCode::from(2);
    }
    let out = match args.out.as_deref().unwrap_or("text") {
        f @ ("text" | "xml" | "json") => f.to_string(),
        other => {
            eprintln!("mgrctl: unknown output format '{other}': text, xml or json");
            return ExitCode::from(2);
        }
    };
    let Some(func) = args.func else {
        eprintln!(
            "mgrctl: name a func: mgrctl -m billmgr FUNC [name=value ...] [-o text|xml|json]"
        );
        return ExitCode::from(2);
    };
    call(engine, &func, &args.params, Some(out), None, None)
}

fn call(
    engine: &Engine,
    func: &str,
    args: &[String],
    out: Option<String>,
    as_login: Option<&str>,
    output: Option<&Path>,
) -> ExitCode {
    let queued_before = engine.mail_signal().count();
    let mut params = Params::new();
    for arg in args {
        match arg.split_once('=') {
            Some((k, v)) if !k.is_empty() => params.set(k, v),
            _ => {
                eprintln!("billhost call: parameters are name=value, got '{arg}'");
                return ExitCode::from(2);
            }
        }
    }
    let out = out
        .or_else(|| params.get("out").map(str::to_string))
        .unwrap_or_default();
    let (doc, format) = match Format::parse(&out) {
        Err(e) => (Doc::Error(e), Format::Xml),
        Ok(format) => {
            let caller = match as_login {
                None => Ok(Caller::superuser()),
                Some(login) => engine
                    .read(|c| auth::switch_user(c, &Caller::superuser(), login))
                    .map(|mut c| {
                        // `--as` is the local operator's choice, not a staff drill-down.
                        c.su_from = None;
                        c.ip = "local".into();
                        c
                    }),
            };
            let doc = match caller {
                Ok(caller) => engine.call(&caller, func, params),
                Err(e) => Doc::Error(e),
            };
            (doc, format)
        }
    };
    match (&doc, output) {
        (Doc::File(file), Some(path)) => {
            if let Err(e) = std::fs::write(path, &file.bytes) {
                eprintln!("billhost call: {}: {e}", path.display());
                return ExitCode::from(2);
            }
            eprintln!(
                "billhost call: {} ({}, {} bytes) written to {}",
                file.name,
                file.mime,
                file.bytes.len(),
                path.display()
            );
        }
        (_, Some(_)) if !doc.is_error() => {
            eprintln!("billhost call: {func} answered a document, not a file; --output is unused");
            print!("{}", wire::render(&doc, format, Meta { func, lang: "en" }));
        }
        _ => print!("{}", wire::render(&doc, format, Meta { func, lang: "en" })),
    }
    if doc.is_error() {
        return ExitCode::from(1);
    }
    // Mail the func queued goes out now that it is committed (best effort: what cannot be sent
    // stays queued for `billhost deliver` or the server).
    let queued = engine.mail_signal().count().saturating_sub(queued_before);
    if queued > 0
        && let Ok(smtp) = engine.config().settings.smtp()
    {
        let report = mail::deliver_some(engine, &smtp, clock::unix_now(), queued as usize);
        mail::log(&report);
    }
    ExitCode::SUCCESS
}

fn deliver(engine: &Engine) -> ExitCode {
    let smtp = match engine.config().settings.smtp() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("billhost deliver: {e}");
            return ExitCode::from(2);
        }
    };
    let report = mail::deliver_due(engine, &smtp, clock::unix_now());
    for id in &report.sent {
        println!("outbox {id}: sent");
    }
    for (id, e) in &report.deferred {
        println!("outbox {id}: not sent, will retry: {e}");
    }
    for (id, e) in &report.failed {
        println!("outbox {id}: given up: {e}");
    }
    for e in &report.errors {
        eprintln!("billhost deliver: {e}");
    }
    if report.deferred.is_empty() && report.failed.is_empty() && report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn migrate(from: &Path, to: &str) -> ExitCode {
    use billhost::store;
    if !store::pg::is_url(to) {
        eprintln!("billhost migrate: --to takes a postgres:// URL");
        return ExitCode::from(2);
    }
    let copied = store::migrate::sqlite_to_postgres(from, to, |conn| {
        billhost::ledger::check(conn)
            .map(|violations| violations.iter().map(ToString::to_string).collect())
            .map_err(|e| e.to_string())
    });
    match copied {
        Ok(tables) => {
            let rows: Vec<[String; 3]> = tables
                .iter()
                .map(|t| {
                    [
                        t.table.clone(),
                        t.rows.to_string(),
                        t.next_id.map(|n| n.to_string()).unwrap_or_default(),
                    ]
                })
                .collect();
            print_table(&["table", "rows", "next id"], &rows);
            let total: i64 = tables.iter().map(|t| t.rows).sum();
            println!(
                "copied {total} rows of {} tables from {} to {}; row counts equal, ledger consistent",
                tables.len(),
                from.display(),
                store::pg::redacted(to)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("billhost migrate: {e}");
            ExitCode::from(1)
        }
    }
}

fn check(engine: &Engine) -> ExitCode {
    match engine.read(billhost::ledger::check) {
        Ok(violations) if violations.is_empty() => {
            println!("ledger consistent");
            ExitCode::SUCCESS
        }
        Ok(violations) => {
            for v in &violations {
                println!("{v}");
            }
            eprintln!("billhost check: {} violation(s)", violations.len());
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("billhost check: {e}");
            ExitCode::from(2)
        }
    }
}

fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    print!("{}", billhost::wire::table(header, rows));
}

/// `billhost run-jobs [--once]`: every job, then every periodic func; one line each. With
/// `once`, each claims the period it falls in now ([`billhost::store::schedule`]) and one whose
/// period has run anywhere says so and is skipped.
fn run_jobs(engine: &Engine, once: bool) -> ExitCode {
    let now = clock::unix_now();
    let period = |every: u64| billhost::store::schedule::period_start(now, every);
    let mut failed = false;
    let mut report = |name: &str, outcome: Option<Result<String, String>>| match outcome {
        None => println!("{name}: skipped: this period has already run"),
        Some(Ok(text)) => println!("{name}: {text}"),
        Some(Err(e)) => {
            failed = true;
            // One line a job: a script's error cannot add lines of its own.
            println!("{}", billhost::script::log_escaped(&format!("{name}: {e}")));
        }
    };
    let jobs = if once {
        engine.run_jobs_once(|j| Some(period(j.every_secs)))
    } else {
        engine
            .run_jobs(|_| true)
            .into_iter()
            .map(|(name, outcome)| (name, Some(outcome)))
            .collect()
    };
    for (name, outcome) in jobs {
        report(
            &name,
            outcome.map(|o| o.map(|()| "ok".to_string()).map_err(|e| e.to_string())),
        );
    }
    for (func, every) in engine.periodic() {
        let doc = if once {
            engine.run_periodic_once(func, *every, period(*every))
        } else {
            Some(engine.run_periodic(func))
        };
        report(
            func,
            doc.map(|doc| match doc {
                Doc::Error(e) => Err(e.to_string()),
                doc => Ok(plugin::outcome_text(&Ok(doc))),
            }),
        );
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
