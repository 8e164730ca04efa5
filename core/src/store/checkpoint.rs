//! WAL checkpoints off the writer's path. SQLite's automatic checkpoint runs inside the commit
//! that crosses the threshold, on the writer connection: it copies the WAL's pages into the
//! database file and, with `synchronous=FULL`, waits for two fsyncs, while every write queued
//! behind it waits too. Here a thread of its own, on a connection of its own, runs a `PASSIVE`
//! checkpoint (it never blocks the writer or the readers) shortly after commits happen, so the
//! writer only appends to the WAL. The writer keeps a far higher automatic threshold
//! ([`BACKSTOP_PAGES`]) in case this thread cannot keep up (a reader holding an old snapshot).
//!
//! Opt-in (`EngineConfig::background_checkpoints`, on for `billhost serve`): with many writers
//! at once it lifts durable throughput by about a fifth; a lone writer committing one
//! transaction at a time is 10–15 % slower with it, because the checkpoint's fsyncs of the
//! database file then run beside the commits' fsyncs of the WAL and lengthen them.

use super::Durability;
use super::sqlite::connect_raw as connect;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The writer's own automatic checkpoint threshold while a [`Checkpointer`] runs (pages of
/// the WAL; SQLite's default is 1 000).
pub const BACKSTOP_PAGES: u32 = 10_000;
/// How often the thread looks for new commits.
const PERIOD: Duration = Duration::from_millis(50);

#[derive(Default)]
struct Shared {
    /// Commits so far, counted by the writer.
    commits: AtomicU64,
    stop: Mutex<bool>,
    wake: Condvar,
}

/// The checkpoint thread of one database; stopped (and waited for) when dropped.
pub struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// The thread, on a connection of its own; `None` when either cannot be had (the writer
    /// then keeps SQLite's automatic checkpoints).
    pub fn start(path: &Path, durability: Durability) -> Option<Checkpointer> {
        let conn = connect(path, durability).ok()?;
        let shared = Arc::new(Shared::default());
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("billhost-checkpoint".into())
                .spawn(move || run(&conn, &shared))
                .ok()?
        };
        Some(Checkpointer {
            shared,
            thread: Some(thread),
        })
    }

    /// Called by the writer after each commit: cheap, no lock.
    pub fn committed(&self) {
        self.shared.commits.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        *self.shared.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(conn: &rusqlite::Connection, shared: &Shared) {
    let mut seen = 0;
    let mut stop = shared.stop.lock().unwrap_or_else(|e| e.into_inner());
    while !*stop {
        stop = shared
            .wake
            .wait_timeout(stop, PERIOD)
            .unwrap_or_else(|e| e.into_inner())
            .0;
        let commits = shared.commits.load(Ordering::Relaxed);
        if commits == seen || *stop {
            continue;
        }
        seen = commits;
        drop(stop);
        // A failure (the database busy, a disk error) is left to the next round and, at worst,
        // to the writer's own backstop threshold.
        let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        stop = shared.stop.lock().unwrap_or_else(|e| e.into_inner());
    }
}
