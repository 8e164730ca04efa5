-- Migration 9: the runs of scheduled work (script jobs, periodic funcs), one row per job and
-- period, so that every server on one database runs each period's job once: a run inserts its
-- row (`INSERT OR IGNORE`) before it works, in the same transaction as the job's writes; a
-- server that finds the row taken leaves the period to the run that has it. A job that fails
-- rolls its row back with its writes, so the period stays free for another try.
-- job: 'job NAME' (a script's billing.every) or 'func NAME' (a periodic func);
-- period_start: unix seconds at which the period began (a multiple of every_secs).
CREATE TABLE scheduled_run (
    job          TEXT NOT NULL,
    period_start INTEGER NOT NULL CHECK (typeof(period_start) = 'integer'),
    every_secs   INTEGER NOT NULL CHECK (typeof(every_secs) = 'integer' AND every_secs > 0),
    ran_at       TEXT NOT NULL,
    ran_by       TEXT NOT NULL,
    PRIMARY KEY (job, period_start)
);
