//! The writer thread: the server's write requests queue here instead of each taking a blocking
//! thread that then waits its turn for the single writer connection. The thread takes every
//! call waiting (up to the engine's [`MAX_BATCH`]), runs them one after another in one transaction with a
//! savepoint each ([`Engine::call_batch`]), commits once, and only then answers each request.
//! While it commits, the next calls queue up, so under load one fsync covers a whole batch and
//! no request pays a thread handoff of its own on the way in.
//!
//! With the engine's deferred sync (`billhost serve`), the writer does not wait for a batch's
//! fsync: it hands the batch's answers to the sync thread, which syncs the WAL and only then
//! answers them, while the writer already runs the next batch ([`crate::store::walsync`]).
//!
//! A request that timed out (or whose client left) before its turn is skipped, never run
//! behind its caller's back. Stopping lets the calls already queued finish and commit.

use crate::auth::Caller;
use crate::engine::{MAX_BATCH, settle};
use crate::error::FuncError;
use crate::store::walsync::Durable;
use crate::{Doc, Engine, Params};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// A request's func waits to start: it may still be abandoned.
pub const WAITING: u8 = 0;
/// The func started: it will finish (and commit or roll back) whatever happens to the request.
pub const STARTED: u8 = 1;
/// The request gave up before the func started: it never runs.
pub const ABANDONED: u8 = 2;

/// One write request for the writer thread.
pub struct Job {
    pub caller: Caller,
    pub func: String,
    pub params: Params,
    /// [`WAITING`] until the writer takes it; the request sets [`ABANDONED`] when it gives up.
    pub state: Arc<AtomicU8>,
    pub reply: oneshot::Sender<Doc>,
}

enum Msg {
    Call(Job),
    Stop,
}

pub struct WriterThread {
    queue: mpsc::Sender<Msg>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// A committed batch's answers, sent once it is durable.
struct Settling {
    durable: Durable,
    replies: Vec<(oneshot::Sender<Doc>, Doc)>,
}

impl WriterThread {
    pub fn start(engine: Arc<Engine>) -> std::io::Result<WriterThread> {
        let (queue, calls) = mpsc::channel();
        let (settle_queue, settling) = mpsc::channel();
        let syncer = std::thread::Builder::new()
            .name("billhost-sync".into())
            .spawn(move || sync(&settling))?;
        let thread = std::thread::Builder::new()
            .name("billhost-writer".into())
            .stack_size(crate::script::THREAD_STACK)
            .spawn(move || {
                run(&engine, &calls, &settle_queue);
                // The sync thread ends once the writer's queue to it is gone, after answering
                // every batch handed to it.
                drop(settle_queue);
                let _ = syncer.join();
            })?;
        Ok(WriterThread {
            queue,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues a call. Once the writer has stopped the call is dropped unrun, and so is its
    /// `reply`: the request learns it from its receiver.
    pub fn submit(&self, job: Job) {
        let _ = self.queue.send(Msg::Call(job));
    }

    /// Lets the calls queued so far run and commit, then ends the thread and waits for it.
    /// Calls queued later are dropped unrun (their requests answer that the server stopped).
    pub fn stop(&self) {
        let _ = self.queue.send(Msg::Stop);
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// The sync thread: waits for each handed batch to be durable and answers it. Batches waiting
/// together share one fsync (the newest covers the older ones).
fn sync(settling: &mpsc::Receiver<Settling>) {
    while let Ok(first) = settling.recv() {
        let mut waiting = vec![first];
        waiting.extend(settling.try_iter());
        // The newest batch's sync covers every older one: run it first, and the older ones
        // then find themselves durable without an fsync of their own. (A failure is found and
        // answered per batch below, which tries again.)
        if let Some(newest) = waiting.last() {
            let _ = newest.durable.wait();
        }
        for s in waiting {
            answer_when_durable(s);
        }
    }
}

fn run(engine: &Engine, calls: &mpsc::Receiver<Msg>, settle_queue: &mpsc::Sender<Settling>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut stopping = false;
    while !stopping {
        match calls.recv() {
            Ok(Msg::Call(job)) => batch.push(job),
            Ok(Msg::Stop) | Err(_) => break,
        }
        while batch.len() < MAX_BATCH {
            match calls.try_recv() {
                Ok(Msg::Call(job)) => batch.push(job),
                Ok(Msg::Stop) => {
                    stopping = true;
                    break;
                }
                Err(_) => break,
            }
        }
        // Only the calls still wanted start; from here on they run to the end.
        batch.retain(|job| {
            job.state
                .compare_exchange(WAITING, STARTED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        });
        let calls: Vec<(&Caller, &str, &Params)> = batch
            .iter()
            .map(|job| (&job.caller, job.func.as_str(), &job.params))
            .collect();
        let (docs, durable) = engine.call_batch_deferred(&calls);
        drop(calls);
        let replies: Vec<(oneshot::Sender<Doc>, Doc)> =
            batch.drain(..).map(|job| job.reply).zip(docs).collect();
        match durable {
            Some(durable) => {
                if let Err(mpsc::SendError(s)) = settle_queue.send(Settling { durable, replies }) {
                    // No sync thread (it could not run): wait here.
                    answer_when_durable(s);
                }
            }
            None => {
                for (reply, doc) in replies {
                    let _ = reply.send(doc);
                }
            }
        }
    }
}

fn answer_when_durable(s: Settling) {
    let (replies, mut docs): (Vec<_>, Vec<Doc>) = s.replies.into_iter().unzip();
    settle(&mut docs, &s.durable);
    for (reply, doc) in replies.into_iter().zip(docs) {
        let _ = reply.send(doc);
    }
}

/// What a request whose call the writer never ran answers.
pub fn not_run() -> FuncError {
    FuncError::internal("The server is stopping: the func was not run")
}
