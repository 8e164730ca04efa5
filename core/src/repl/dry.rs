//! `:dry`: a what-if session on a private copy of the database. SQLite has one writer, so a
//! transaction held open while a person thinks would stop every other writer, the server
//! included. Instead the live database is copied (the online backup API, in one step, under a
//! read transaction only) into a temp file with its own engine; the func calls that change
//! something are recorded; `:commit` replays them in order in one write transaction on the live
//! database, and keeps nothing if any of them fails or creates a different object than it did
//! on the copy.

use crate::auth::{self, Caller};
use crate::doc::Doc;
use crate::engine::{Engine, EngineConfig};
use crate::error::FuncError;
use crate::params::Params;
use crate::store::Durability;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A func call made in dry mode that changed the copy.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Who made it: `None` for the local admin, else the login of `:as`.
    pub login: Option<String>,
    pub func: String,
    pub params: Params,
    /// The `id` the call answered on the copy (a create), checked again on replay.
    pub id: Option<String>,
}

impl Recorded {
    /// The call as it would be typed.
    pub fn line(&self) -> String {
        let mut s = self.func.clone();
        for (k, v) in self.params.iter() {
            s.push(' ');
            s.push_str(k);
            s.push('=');
            if ["passwd", "password", "confirm"].contains(&k) {
                s.push_str("***");
            } else if v.is_empty() || v.contains(char::is_whitespace) {
                s.push_str(&format!("{v:?}"));
            } else {
                s.push_str(v);
            }
        }
        if let Some(login) = &self.login {
            s.push_str(&format!("  (as {login})"));
        }
        s
    }
}

pub struct Dry {
    // Fields drop in order: the engine closes the copy before `copy` removes its files.
    engine: Engine,
    copy: CopyFiles,
    calls: Vec<Recorded>,
}

/// The copy's database files, removed when dropped.
struct CopyFiles(PathBuf);

impl Drop for CopyFiles {
    fn drop(&mut self) {
        remove_files(&self.0);
    }
}

impl Dry {
    /// Copies the live database and opens an engine on the copy, with the same scripts.
    pub fn start(live: &Engine) -> Result<Dry, String> {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("billhost-dry-{}-{n}.db", std::process::id()));
        remove_files(&path);
        let files = CopyFiles(path);
        crate::store::copy_to_file(&live.config().db_path, &files.0)
            .map_err(|e| format!("copying the database: {e}"))?;
        let config = EngineConfig {
            db_path: files.0.clone(),
            // The copy is thrown away: it need not survive a power loss.
            durability: Durability::Normal,
            scripts: live.config().scripts.clone(),
            settings: live.config().settings.clone(),
            background_checkpoints: false,
            deferred_sync: false,
        };
        let engine = Engine::open(config).map_err(|e| e.to_string())?;
        Ok(Dry {
            engine,
            copy: files,
            calls: Vec::new(),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn path(&self) -> &Path {
        &self.copy.0
    }

    pub fn calls(&self) -> &[Recorded] {
        &self.calls
    }

    pub fn record(&mut self, login: Option<&str>, func: &str, params: &Params, doc: &Doc) {
        self.calls.push(Recorded {
            login: login.map(str::to_string),
            func: func.to_string(),
            params: params.clone(),
            id: doc.field("id").map(str::to_string),
        });
    }

    /// Replays the recorded calls on `live` in one transaction. Answers how many were applied,
    /// or which call failed (and then nothing is applied).
    pub fn commit(&self, live: &Engine) -> Result<usize, String> {
        let mut failed = None;
        let outcome = live.write_batch(|batch| {
            for (i, rec) in self.calls.iter().enumerate() {
                let which = || format!("call {} of {}, {}", i + 1, self.calls.len(), rec.line());
                let caller = match &rec.login {
                    None => Ok(Caller::superuser()),
                    Some(login) => {
                        auth::switch_user(batch.conn(), &Caller::superuser(), login).map(local)
                    }
                };
                let doc = caller.and_then(|caller| batch.call(&caller, &rec.func, &rec.params));
                let doc = match doc {
                    Ok(doc) => doc,
                    Err(e) => {
                        failed = Some(format!(
                            "{}: error {}({}): {}",
                            which(),
                            e.kind.as_str(),
                            e.object,
                            e.msg
                        ));
                        return Err(e);
                    }
                };
                let id = doc.field("id");
                if id != rec.id.as_deref() {
                    let msg = format!(
                        "{}: answered id {} on the live database but {} on the copy; the live \
                         database changed since :dry",
                        which(),
                        id.unwrap_or("none"),
                        rec.id.as_deref().unwrap_or("none")
                    );
                    failed = Some(msg.clone());
                    return Err(FuncError::internal(msg));
                }
            }
            Ok(self.calls.len())
        });
        outcome.map_err(|e| failed.unwrap_or_else(|| e.to_string()))
    }
}

/// The identity `:as LOGIN` gives: that user, chosen by the local operator (not a staff
/// drill-down).
pub fn local(mut caller: Caller) -> Caller {
    caller.su_from = None;
    caller.ip = "local".into();
    caller
}

fn remove_files(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}
