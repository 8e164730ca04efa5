//! The `billhost` command: `init`, `call` (like BILLmanager's mgrctl), `funcs` and `check`.

use billhost::auth::{self, AdminSetup, Caller};
use billhost::wire::{self, Format, Meta};
use billhost::{Doc, Engine, EngineConfig, Params};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let engine = match Engine::open(EngineConfig::new(&cli.db)) {
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
                .registry()
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
