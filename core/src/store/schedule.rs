//! Scheduled work that runs once per period across every server on one database (migration 9,
//! `scheduled_run`): a run first claims its job's period by inserting the period's row, in its
//! write transaction, and works only if the row was not there. The claim is a plain unique key,
//! the same statement on both backends: on SQLite one writer at a time takes it; on PostgreSQL
//! the writers' advisory lock serialises the claims of every server (and without the lock the
//! unique index alone would make a second insert wait for the first's transaction, then find
//! the row), so a period's claim commits once. A run that fails rolls its claim back with its
//! writes: the period stays free for a later try.

use super::{Connection, Result, params};

/// Claims kept per job, in periods: enough to see what ran lately (`scheduled_run`).
const KEEP_PERIODS: i64 = 1000;

/// The start (unix seconds) of the period of `every_secs` that `now` (unix seconds) falls in:
/// periods are aligned to the epoch, so every server counts the same ones.
pub fn period_start(now: i64, every_secs: u64) -> i64 {
    let every = every_secs.clamp(1, i64::MAX as u64) as i64;
    now - now.rem_euclid(every)
}

/// Claims the period beginning at `period_start` of `job` (`job NAME` or `func NAME`) inside
/// the open write transaction: true when this transaction holds it now (its work commits with
/// the claim), false when a run on any server already has it. Older claims of the job are
/// dropped.
pub fn claim(
    conn: &Connection,
    job: &str,
    every_secs: u64,
    period_start: i64,
    now: &str,
) -> Result<bool> {
    let every = every_secs.clamp(1, i64::MAX as u64) as i64;
    let claimed = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO scheduled_run (job, period_start, every_secs, ran_at, ran_by)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![job, period_start, every, now, server_name()])?;
    if claimed == 1 {
        let keep = every.saturating_mul(KEEP_PERIODS);
        conn.prepare_cached("DELETE FROM scheduled_run WHERE job = ?1 AND period_start < ?2")?
            .execute(params![job, period_start.saturating_sub(keep)])?;
    }
    Ok(claimed == 1)
}

/// Who runs: this machine's name and process id, as `scheduled_run.ran_by` records it.
pub fn server_name() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "localhost".into());
        format!("{host}:{}", std::process::id())
    })
}

#[cfg(test)]
mod tests {
    use super::period_start;

    #[test]
    fn periods_are_aligned_to_the_epoch() {
        assert_eq!(period_start(3599, 3600), 0);
        assert_eq!(period_start(3600, 3600), 3600);
        assert_eq!(period_start(7201, 60), 7200);
        assert_eq!(period_start(5, 1), 5);
        assert_eq!(period_start(5, 0), 5);
    }
}
