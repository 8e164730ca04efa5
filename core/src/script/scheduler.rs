//! Runs the live scripts' `billing.every` jobs and the engine's periodic funcs
//! (`Engine::add_periodic`, e.g. gateway status checks) while the server runs, once per period
//! across every server on the database. Periods are aligned to the epoch (a job of 3600 s is due
//! at each full hour, UTC), so that all servers count the same ones; each server tries a due
//! period once, and the run claims it in the database (`store::schedule`): the servers that come
//! later find it claimed and leave it. A job first runs at the end of the period in which it
//! appeared (the server started or a reload brought it), then every period; one that fails is
//! logged, rolled back with its claim (another server may try that period) and tried again next
//! period.

use crate::clock;
use crate::engine::Engine;
use crate::store::schedule::period_start;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often due jobs are looked for.
const TICK: Duration = Duration::from_millis(500);

/// Stops and joins the scheduler thread when dropped.
pub struct Scheduler {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Scheduler {
    pub fn spawn(engine: Arc<Engine>) -> Scheduler {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("billhost-jobs".into())
            .stack_size(super::THREAD_STACK)
            .spawn(move || {
                // The last period each job (`job NAME`, `func NAME`) was tried in here.
                let mut tried: HashMap<String, i64> = HashMap::new();
                loop {
                    {
                        let (lock, cv) = &*stop2;
                        let stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
                        let (stopped, _) = cv
                            .wait_timeout_while(stopped, TICK, |s| !*s)
                            .unwrap_or_else(|e| e.into_inner());
                        if *stopped {
                            break;
                        }
                    }
                    let now = clock::unix_now();
                    let generation = engine.scripts().current();
                    // A job that left the scripts starts over if it comes back.
                    tried.retain(|key, _| {
                        key.strip_prefix("job ")
                            .is_none_or(|name| generation.jobs.iter().any(|j| j.name == name))
                    });
                    let mut due_jobs: HashMap<String, i64> = HashMap::new();
                    for job in &generation.jobs {
                        let start = period_start(now, job.every_secs);
                        if due(&mut tried, format!("job {}", job.name), start) {
                            due_jobs.insert(job.name.clone(), start);
                        }
                    }
                    for (func, every) in engine.periodic() {
                        let start = period_start(now, *every);
                        if !due(&mut tried, format!("func {func}"), start) {
                            continue;
                        }
                        if let Some(crate::doc::Doc::Error(e)) =
                            engine.run_periodic_once(func, *every, start)
                        {
                            eprintln!(
                                "{}",
                                super::log_escaped(&format!(
                                    "billhost: periodic {func} failed: {e}"
                                ))
                            );
                        }
                    }
                    if due_jobs.is_empty() {
                        continue;
                    }
                    for (name, outcome) in engine.run_jobs_once(|j| due_jobs.get(&j.name).copied())
                    {
                        if let Some(Err(e)) = outcome {
                            // A job's error carries the script's own words.
                            eprintln!(
                                "{}",
                                super::log_escaped(&format!("billhost: job {name} failed: {e}"))
                            );
                        }
                    }
                }
            })
            .ok();
        Scheduler { stop, thread }
    }
}

/// Whether a job last tried here in the period `tried` holds for `key` is due in the period
/// beginning at `start` (and records that it is tried now): when that period began after the
/// one last tried. A job seen for the first time waits for the next period.
fn due(tried: &mut HashMap<String, i64>, key: String, start: i64) -> bool {
    match tried.insert(key, start) {
        Some(last) if start <= last => false,
        Some(_) => true,
        None => false,
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        let (lock, cv) = &*self.stop;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
