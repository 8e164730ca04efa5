-- Migration 7: one-time login keys (see the SQLite migration of the same number).
CREATE TABLE session_key (
    token   TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id),
    created TEXT NOT NULL,
    expires BIGINT NOT NULL
);
CREATE INDEX session_key_user ON session_key(user_id);
