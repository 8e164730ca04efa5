//! CPU clocks for the HTTP bench: the server's own CPU time is the process's minus what the
//! load generator's threads used (each adds its own thread clock when it ends), so that the
//! generator sharing the CPUs does not decide the figure.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

static GENERATOR_NS: AtomicU64 = AtomicU64::new(0);

fn clock(id: nix::libc::clockid_t) -> Duration {
    let mut t = nix::libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a timespec to fill.
    let rc = unsafe { nix::libc::clock_gettime(id, &mut t) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// The calling thread's CPU time.
pub fn thread() -> Duration {
    clock(nix::libc::CLOCK_THREAD_CPUTIME_ID)
}

/// The whole process's CPU time.
pub fn process() -> Duration {
    clock(nix::libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// Runs `f` on a load generator thread and counts its CPU time as the generator's.
pub fn as_generator<T>(f: impl FnOnce() -> T) -> T {
    let start = thread();
    let out = f();
    let used = thread().saturating_sub(start);
    GENERATOR_NS.fetch_add(used.as_nanos() as u64, Ordering::SeqCst);
    out
}

/// `f`'s result and the CPU time the rest of the process (the server) used meanwhile.
pub fn server_time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let generator = GENERATOR_NS.load(Ordering::SeqCst);
    let caller = thread();
    let process_start = process();
    let out = f();
    let process_used = process().saturating_sub(process_start);
    let generator_used = Duration::from_nanos(
        GENERATOR_NS
            .load(Ordering::SeqCst)
            .saturating_sub(generator),
    );
    let caller_used = thread().saturating_sub(caller);
    (
        out,
        process_used
            .saturating_sub(generator_used)
            .saturating_sub(caller_used),
    )
}
