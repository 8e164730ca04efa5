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
//! While that fsync runs, the next batch stays open and takes every call that arrives (up to
//! the batch size): none of them could be answered before the fsync ends anyway, and a bigger
//! batch writes fewer WAL frames per call (the pages its calls share are written once). It
//! commits as soon as the sync thread is free, or when it is full.
//!
//! A request that timed out (or whose client left) before its turn is skipped, never run
//! behind its caller's back. Stopping lets the calls already queued finish and commit.

use crate::auth::Caller;
use crate::engine::settle;
use crate::error::FuncError;
use crate::store::walsync::Durable;
use crate::{Doc, Engine, Params};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
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
    /// The auth epoch `caller` is known at, from the credential cache: the call runs only if
    /// the batch's transaction reads that epoch, and is answered `None` (not run) otherwise.
    pub known_at: Option<i64>,
    pub func: String,
    pub params: Params,
    /// [`WAITING`] until the writer takes it; the request sets [`ABANDONED`] when it gives up.
    pub state: Arc<AtomicU8>,
    pub reply: oneshot::Sender<Option<Doc>>,
}

enum Msg {
    Call(Box<Job>),
    /// The sync thread answered what it had: a batch kept open for it may commit.
    Synced,
    Stop,
}

pub struct WriterThread {
    queue: mpsc::Sender<Msg>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// A committed batch's answers, sent once it is durable.
struct Settling {
    durable: Durable,
    replies: Vec<(oneshot::Sender<Option<Doc>>, Doc)>,
}

impl WriterThread {
    pub fn start(engine: Arc<Engine>) -> std::io::Result<WriterThread> {
        let (queue, calls) = mpsc::channel();
        let (settle_queue, settling) = mpsc::channel();
        let in_sync = Arc::new(AtomicUsize::new(0));
        let syncer = {
            let (in_sync, wake) = (in_sync.clone(), queue.clone());
            std::thread::Builder::new()
                .name("billhost-sync".into())
                .spawn(move || sync(&settling, &in_sync, &wake))?
        };
        let thread = std::thread::Builder::new()
            .name("billhost-writer".into())
            .stack_size(crate::script::THREAD_STACK)
            .spawn(move || {
                run(&engine, &calls, &settle_queue, &in_sync);
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
        let _ = self.queue.send(Msg::Call(Box::new(job)));
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

impl Drop for WriterThread {
    /// As [`WriterThread::stop`]: the queue alone would not end the thread, since the sync
    /// thread holds a sender to wake it.
    fn drop(&mut self) {
        self.stop();
    }
}

/// The sync thread: waits for each handed batch to be durable and answers it. Batches waiting
/// together share one fsync (the newest covers the older ones). `in_sync` counts the batches
/// handed and not yet answered; when it falls to zero the writer is told (`wake`), in case it
/// keeps a batch open until then.
fn sync(settling: &mpsc::Receiver<Settling>, in_sync: &AtomicUsize, wake: &mpsc::Sender<Msg>) {
    while let Ok(first) = settling.recv() {
        let mut waiting = vec![first];
        waiting.extend(settling.try_iter());
        // The newest batch's sync covers every older one: run it first, and the older ones
        // then find themselves durable without an fsync of their own. (A failure is found and
        // answered per batch below, which tries again.)
        if let Some(newest) = waiting.last() {
            let _ = newest.durable.wait();
        }
        let answered = waiting.len();
        for s in waiting {
            answer_when_durable(s);
        }
        if in_sync.fetch_sub(answered, Ordering::AcqRel) == answered {
            let _ = wake.send(Msg::Synced);
        }
    }
}

fn run(
    engine: &Engine,
    calls: &mpsc::Receiver<Msg>,
    settle_queue: &mpsc::Sender<Settling>,
    in_sync: &AtomicUsize,
) {
    let mut stopping = false;
    while !stopping {
        let first = match calls.recv() {
            Ok(Msg::Call(job)) => job,
            Ok(Msg::Synced) => continue,
            Ok(Msg::Stop) | Err(_) => break,
        };
        let mut first = Some(first);
        // The calls of the batch, pulled as it runs: those already queued, then, while the
        // previous batch's fsync is still running, those that arrive before it ends.
        let next = |_: usize| -> Option<Job> {
            loop {
                let job = match first.take() {
                    Some(job) => job,
                    None if stopping => return None,
                    None => match calls.try_recv() {
                        Ok(Msg::Call(job)) => job,
                        Ok(Msg::Synced) => continue,
                        Ok(Msg::Stop) => {
                            stopping = true;
                            return None;
                        }
                        Err(mpsc::TryRecvError::Disconnected) => return None,
                        Err(mpsc::TryRecvError::Empty) => {
                            if in_sync.load(Ordering::Acquire) == 0 {
                                return None;
                            }
                            match calls.recv() {
                                Ok(Msg::Call(job)) => job,
                                // Maybe free now: looked at again above.
                                Ok(Msg::Synced) => continue,
                                Ok(Msg::Stop) => {
                                    stopping = true;
                                    return None;
                                }
                                Err(_) => return None,
                            }
                        }
                    },
                };
                // Only the calls still wanted start; from here on they run to the end.
                if job
                    .state
                    .compare_exchange(WAITING, STARTED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return Some(*job);
                }
            }
        };
        let (done, durable) = engine.call_batch_pulled(next, |job: &Job| {
            (&job.caller, job.func.as_str(), &job.params, job.known_at)
        });
        let mut replies = Vec::with_capacity(done.len());
        for (job, doc) in done {
            match doc {
                Some(doc) => replies.push((job.reply, doc)),
                // Not run (its caller must be authenticated again): nothing to wait for.
                None => {
                    let _ = job.reply.send(None);
                }
            }
        }
        match durable {
            Some(durable) => {
                in_sync.fetch_add(1, Ordering::AcqRel);
                if let Err(mpsc::SendError(s)) = settle_queue.send(Settling { durable, replies }) {
                    // No sync thread (it could not run): wait here.
                    in_sync.fetch_sub(1, Ordering::AcqRel);
                    answer_when_durable(s);
                }
            }
            None => {
                for (reply, doc) in replies {
                    let _ = reply.send(Some(doc));
                }
            }
        }
    }
}

fn answer_when_durable(s: Settling) {
    let (replies, mut docs): (Vec<_>, Vec<Doc>) = s.replies.into_iter().unzip();
    settle(&mut docs, &s.durable);
    for (reply, doc) in replies.into_iter().zip(docs) {
        let _ = reply.send(Some(doc));
    }
}

/// What a request whose call the writer never ran answers.
pub fn not_run() -> FuncError {
    FuncError::internal("The server is stopping: the func was not run")
}
