//! Runs the live scripts' `billing.every` jobs and the engine's periodic funcs
//! (`Engine::add_periodic`, e.g. gateway status checks) while the server runs. Each first runs
//! one period after the server starts (or after it first appears in a reloaded set), then every
//! period; one that fails is logged and tried again next period.

use crate::engine::Engine;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
                let mut next: HashMap<String, Instant> = HashMap::new();
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
                    let now = Instant::now();
                    let generation = engine.scripts().current();
                    next.retain(|name, _| {
                        name.starts_with("func ") || generation.jobs.iter().any(|j| &j.name == name)
                    });
                    let mut due = Vec::new();
                    for job in &generation.jobs {
                        let at = *next
                            .entry(job.name.clone())
                            .or_insert(now + Duration::from_secs(job.every_secs));
                        if at <= now {
                            due.push(job.name.clone());
                            next.insert(
                                job.name.clone(),
                                now + Duration::from_secs(job.every_secs),
                            );
                        }
                    }
                    for (func, every) in engine.periodic() {
                        let key = format!("func {func}");
                        let at = *next
                            .entry(key.clone())
                            .or_insert(now + Duration::from_secs(*every));
                        if at <= now {
                            next.insert(key, now + Duration::from_secs(*every));
                            if let crate::doc::Doc::Error(e) = engine.run_periodic(func) {
                                eprintln!(
                                    "{}",
                                    super::log_escaped(&format!(
                                        "billhost: periodic {func} failed: {e}"
                                    ))
                                );
                            }
                        }
                    }
                    if due.is_empty() {
                        continue;
                    }
                    for (name, outcome) in engine.run_jobs(|j| due.contains(&j.name)) {
                        if let Err(e) = outcome {
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
