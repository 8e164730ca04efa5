//! The `billhost` command: `init`, `call` (like BILLmanager's mgrctl), `funcs`, `check`,
//! `scripts`, `run-jobs`, `serve` and `repl`.

use billhost::auth::{self, AdminSetup, Caller};
use billhost::server::throttle::ThrottleConfig;
use billhost::server::{self, ServerConfig};
use billhost::wire::{self, Format, Meta};
use billhost::{Doc, Engine, EngineConfig, Params};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
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
    /// The SQLite database (created on first use).
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
    },
    /// List every func with its access level and kind.
    Funcs,
    /// Verify the ledger's invariants over the whole database; prints each violation and
    /// exits 1 when there is any.
    Check,
    /// Show the live scripts generation, its files, funcs and jobs, and the last reload error.
    Scripts,
    /// Run every scheduled script job once (for cron), each in its own transaction.
    RunJobs,
    /// Serve the BILLmanager-compatible HTTP API at /billmgr until SIGTERM or SIGINT.
    Serve(ServeArgs),
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut config = EngineConfig::new(&cli.db).with_scripts(&cli.scripts);
    config.scripts.memory_limit = cli.script_memory_mb.saturating_mul(1 << 20);
    config.scripts.instruction_budget = cli.script_instructions;
    let engine = match Engine::open(config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("billhost: {}: {e}", cli.db.display());
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Init { admin_password } => init(&engine, &cli.db, admin_password.as_deref()),
        Command::Call {
            func,
            params,
            out,
            as_login,
        } => call(&engine, &func, &params, out, as_login.as_deref()),
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
        Command::RunJobs => {
            let mut failed = false;
            for (name, outcome) in engine.run_jobs(|_| true) {
                match outcome {
                    Ok(()) => println!("{name}: ok"),
                    Err(e) => {
                        failed = true;
                        println!("{name}: {e}");
                    }
                }
            }
            if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Command::Serve(args) => serve(engine, &cli.db, args),
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

fn serve(engine: Engine, db: &std::path::Path, args: ServeArgs) -> ExitCode {
    // A fresh machine gets a working server from one command: the staff user is made here.
    match engine.write(|c| auth::ensure_staff(c, "admin", None)) {
        Ok(AdminSetup::Created { password, .. }) => {
            println!("database {}: staff user 'admin' created", db.display());
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
    let result = server::run(engine.clone(), config, &args.listen);
    drop(watcher);
    // `run` returns once every request and func has finished: this is the last reference, and
    // dropping it closes the database.
    match Arc::try_unwrap(engine) {
        Ok(engine) => drop(engine),
        Err(_) => eprintln!("billhost serve: the engine is still shared at exit"),
    }
    match result {
        Ok(()) => {
            eprintln!("billhost serve: stopped; database {} closed", db.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("billhost serve: {}: {e}", args.listen);
            ExitCode::from(2)
        }
    }
}

fn init(engine: &Engine, db: &std::path::Path, password: Option<&str>) -> ExitCode {
    match engine.write(|c| auth::ensure_staff(c, "admin", password)) {
        Ok(AdminSetup::Created {
            password,
            generated,
        }) => {
            println!(
                "database {} ready; staff user 'admin' created",
                db.display()
            );
            if generated {
                println!("admin password (shown once): {password}");
            }
            ExitCode::SUCCESS
        }
        Ok(AdminSetup::PasswordReset) => {
            println!("database {} ready; password of 'admin' reset", db.display());
            ExitCode::SUCCESS
        }
        Ok(AdminSetup::Kept) => {
            println!(
                "database {} ready; staff user 'admin' already exists",
                db.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("billhost init: {e}");
            ExitCode::from(2)
        }
    }
}

fn call(
    engine: &Engine,
    func: &str,
    args: &[String],
    out: Option<String>,
    as_login: Option<&str>,
) -> ExitCode {
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
    print!("{}", wire::render(&doc, format, Meta { func, lang: "en" }));
    if doc.is_error() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
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
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}
