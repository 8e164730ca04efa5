-- Migration 3: the outbox. Email is never sent inside a func's transaction: a func queues a
-- message here (in its own transaction) and a deliverer sends it after the commit, claiming it
-- first so that no two deliverers send the same message. Every attempt is kept.

-- status: queued (waiting for next_attempt), sending (claimed until claimed_until), sent,
-- failed (gave up after the last attempt of the retry schedule)
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    account_id      INTEGER REFERENCES account(id),
    payment_id      INTEGER REFERENCES payment(id),
    ticket_id       INTEGER REFERENCES ticket(id),
    recipient       TEXT NOT NULL,
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    attachment_name TEXT,
    attachment_mime TEXT,
    attachment      BLOB,
    status          TEXT NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'sending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT NOT NULL DEFAULT '',
    next_attempt    TEXT NOT NULL,
    claim           TEXT,
    claimed_until   TEXT,
    created         TEXT NOT NULL,
    sent            TEXT
);
CREATE INDEX outbox_due ON outbox(status, next_attempt, id);
CREATE INDEX outbox_account ON outbox(account_id, id);

CREATE TABLE outbox_attempt (
    id        INTEGER PRIMARY KEY,
    outbox_id INTEGER NOT NULL REFERENCES outbox(id),
    attempted TEXT NOT NULL,
    outcome   TEXT NOT NULL CHECK (outcome IN ('sent', 'error')),
    error     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX outbox_attempt_outbox ON outbox_attempt(outbox_id, id);
