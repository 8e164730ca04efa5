//! Durability by syncing the WAL file ourselves, so that the fsync of one group-commit batch
//! runs while the writer already executes the next one.
//!
//! With `synchronous=FULL` SQLite fsyncs the WAL inside `COMMIT`, on the writer's thread: the
//! writer does nothing else meanwhile, and under load a batch's execution and its fsync add
//! up. In `serve` the writer connection instead commits with `synchronous=NORMAL` (the frames
//! are written to the WAL, not synced) and the server's sync thread fsyncs the WAL file before
//! it answers the batch's requests. An answered write is therefore exactly as durable as with
//! `FULL`: its frames, and every earlier one, were on disk before its answer left. (SQLite, at
//! `NORMAL`, syncs the WAL before each checkpoint and the database after it, so a checkpoint
//! never makes the database run ahead of a synced WAL.) What changes: a commit is visible to
//! readers a moment before it is durable, so a read may show a write that a power loss then
//! takes back; never one that was answered.
//!
//! On PostgreSQL the same split: the writer's session commits with `synchronous_commit=off`
//! (the commit record is in the WAL, not yet flushed, and the writers' advisory lock is free
//! at once for the next batch), and the sync thread makes a durable sync point on a
//! connection of its own: one statement that writes a row and commits with
//! `synchronous_commit=on`, which flushes the WAL up to its commit record, so every batch
//! committed before it (and waits for a synchronous standby as far, where there is one). A
//! sync connection that fails (the server dropped it: a failover may have lost what it had
//! not flushed) fails every batch whose commit began before, even if a later sync point on a
//! new connection succeeds: each batch carries the sync connection's generation from before
//! its `COMMIT`, and only a sync point of that generation answers it. The connection is
//! opened again for the batches committed after.
//!
//! A sync point flushes the WAL of the server it runs on, so it answers only the batches
//! committed on that same server process: each batch carries the writer session's server
//! ([`crate::store::pg::PgConn::server`], when its postmaster started), and a sync connection
//! on another one is made again, once; if it still lands elsewhere the batch is not answered
//! as durable. Without this, a writer left on an old primary that still takes writes (a
//! split brain the failover tool has not fenced yet, a backend that outlived its postmaster)
//! would have its commits, made with `synchronous_commit=off`, vouched for by a sync point on
//! the new primary.

use super::Durability;
use super::pg::PgConn;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The WAL file of one database (or a PostgreSQL connection for sync points) and how far it
/// is known to be on disk.
pub struct WalSync {
    path: PathBuf,
    /// The PostgreSQL database, when this syncs one.
    url: Option<String>,
    /// The newest batch whose `COMMIT` returned (its frames are written, maybe not synced).
    committed: AtomicU64,
    /// PostgreSQL: bumped whenever the sync connection fails.
    generation: AtomicU64,
    state: Mutex<State>,
}

struct State {
    file: Option<File>,
    pg: Option<PgConn>,
    synced_through: u64,
    /// The server the sync that reached `synced_through` ran on (PostgreSQL).
    synced_on: Option<i64>,
}

/// What makes the WAL durable up to here on PostgreSQL: a transaction that writes (a commit
/// that wrote no WAL before its commit record is flushed lazily, and never waits for a
/// synchronous standby), here a new version of the schema row, the same value.
const SYNC_POINT: &str = "UPDATE billhost_schema SET version = version WHERE id = 1";

/// A committed batch whose durability is still to be waited for.
pub struct Durable {
    sync: Arc<WalSync>,
    batch: u64,
    generation: u64,
    server: Option<i64>,
}

impl Durable {
    /// Blocks until the batch (and every one before it) is on disk.
    pub fn wait(&self) -> io::Result<()> {
        self.sync
            .sync_through(self.batch, self.generation, self.server)
    }

    pub fn batch(&self) -> u64 {
        self.batch
    }
}

impl WalSync {
    /// For the database at `db` (its WAL is `db-wal`).
    pub fn new(db: &Path) -> Arc<WalSync> {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        Arc::new(WalSync {
            path: PathBuf::from(wal),
            url: None,
            committed: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            state: Mutex::new(State {
                file: None,
                pg: None,
                synced_through: 0,
                synced_on: None,
            }),
        })
    }

    /// For the PostgreSQL database at `url`, with a sync connection of its own.
    pub fn postgres(url: &str) -> super::Result<Arc<WalSync>> {
        let conn = PgConn::connect(url, Durability::Full)?;
        Ok(Arc::new(WalSync {
            path: PathBuf::new(),
            url: Some(url.to_string()),
            committed: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            state: Mutex::new(State {
                file: None,
                pg: Some(conn),
                synced_through: 0,
                synced_on: None,
            }),
        }))
    }

    /// Records that `batch` committed (on SQLite); answers what to wait for before answering
    /// it.
    pub fn committed(self: &Arc<Self>, batch: u64) -> Durable {
        self.committed_in(batch, self.generation(), None)
    }

    /// The sync connection's generation, read before a `COMMIT` for [`WalSync::committed_in`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Records that `batch` committed, its `COMMIT` begun in sync `generation`, on the
    /// PostgreSQL `server` the writer's session is on ([`crate::store::Connection::server`]).
    pub fn committed_in(
        self: &Arc<Self>,
        batch: u64,
        generation: u64,
        server: Option<i64>,
    ) -> Durable {
        self.committed.fetch_max(batch, Ordering::SeqCst);
        Durable {
            sync: self.clone(),
            batch,
            generation,
            server,
        }
    }

    /// Syncs the WAL unless a sync that started after `batch` committed already ended. One
    /// fsync covers every batch committed before it starts, so waiters coalesce.
    fn sync_through(&self, batch: u64, generation: u64, server: Option<i64>) -> io::Result<()> {
        let lost = || io::Error::other("the sync connection to PostgreSQL failed");
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if generation != self.generation() {
            // Committed before a sync point failed: it may not be on the server that now
            // answers (a failover), so it is never answered as durable.
            return Err(lost());
        }
        if state.synced_through >= batch && state.synced_on == server {
            return Ok(());
        }
        let target = self.committed.load(Ordering::SeqCst).max(batch);
        if let Some(url) = &self.url {
            if state.pg.as_ref().is_some_and(PgConn::is_closed) {
                state.pg = None;
                self.generation.fetch_add(1, Ordering::SeqCst);
                return Err(lost());
            }
            let connect = || {
                PgConn::connect(url, Durability::Full).map_err(|e| io::Error::other(e.to_string()))
            };
            if state.pg.is_none() {
                // Failed before this batch's commit began: a new connection serves it.
                state.pg = Some(connect()?);
            }
            if server.is_some() && state.pg.as_ref().map(PgConn::server) != server {
                // The writer's session is on another server: the sync connection follows it
                // if the URL now leads there, else the batch is not known to be durable.
                state.pg = Some(connect()?);
                if state.pg.as_ref().map(PgConn::server) != server {
                    return Err(io::Error::other(
                        "the batch was committed on another server than the one that now takes \
                         writes at this URL",
                    ));
                }
            }
            let synced = match &state.pg {
                Some(conn) => conn.batch(SYNC_POINT).is_ok(),
                None => false,
            };
            if !synced {
                state.pg = None;
                self.generation.fetch_add(1, Ordering::SeqCst);
                return Err(lost());
            }
            state.synced_through = target;
            state.synced_on = server;
            return Ok(());
        }
        match self.open(&mut state) {
            Ok(file) => file.sync_data()?,
            // No WAL: SQLite removed it after checkpointing (and syncing) all of it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => state.file = None,
            Err(e) => return Err(e),
        }
        state.synced_through = target;
        Ok(())
    }

    /// The WAL file, opened again if SQLite replaced it since (a WAL is removed when the last
    /// connection closes and made anew by the next writer).
    fn open<'s>(&self, state: &'s mut State) -> io::Result<&'s File> {
        let current = match &state.file {
            Some(file) => same_file(file, &self.path)?,
            None => false,
        };
        if !current {
            state.file = Some(File::open(&self.path)?);
        }
        state
            .file
            .as_ref()
            .ok_or_else(|| io::Error::other("the WAL file is not open"))
    }
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let open = file.metadata()?;
    Ok(match std::fs::metadata(path) {
        Ok(now) => now.ino() == open.ino() && now.dev() == open.dev(),
        Err(_) => false,
    })
}

#[cfg(not(unix))]
fn same_file(_file: &File, _path: &Path) -> io::Result<bool> {
    Ok(false)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::store::{self, Durability};

    #[test]
    fn syncs_the_live_wal_even_after_sqlite_made_a_new_one() {
        let dir = std::env::temp_dir().join(format!("billhost-walsync-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("w.db");
        let sync = WalSync::new(&db);
        let write = |conn: &rusqlite::Connection, n: i64| {
            conn.execute("INSERT INTO probe (n) VALUES (?1)", rusqlite::params![n])
                .unwrap();
        };
        let conn = store::sqlite::connect_raw(&db, Durability::Normal).unwrap();
        conn.execute_batch("CREATE TABLE probe (n INTEGER)")
            .unwrap();
        write(&conn, 1);
        sync.committed(1).wait().unwrap();
        // The last connection closing checkpoints and removes the WAL; a new one is made.
        drop(conn);
        assert!(!dir.join("w.db-wal").exists());
        // With no WAL there is nothing unsynced: the wait succeeds.
        sync.committed(2).wait().unwrap();
        let conn = store::sqlite::connect_raw(&db, Durability::Normal).unwrap();
        write(&conn, 2);
        sync.committed(3).wait().unwrap();
        {
            use std::os::unix::fs::MetadataExt;
            let state = sync.state.lock().unwrap();
            let open = state
                .file
                .as_ref()
                .expect("the new WAL is open")
                .metadata()
                .unwrap();
            let now = std::fs::metadata(dir.join("w.db-wal")).unwrap();
            assert_eq!(open.ino(), now.ino());
            assert_eq!(state.synced_through, 3);
        }
        // A batch an earlier sync covered needs none of its own.
        sync.committed(2).wait().unwrap();
        drop(conn);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
