-- Migration 7: one-time login keys (`session.newkey`, then `func=auth&key=KEY`). A key logs its
-- user in once: `auth` deletes the row in the transaction that opens the session. `expires` is
-- unix seconds; an expired key is refused and swept when the next key is made.
CREATE TABLE session_key (
    token   TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    created TEXT NOT NULL,
    expires INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX session_key_user ON session_key(user_id);
