-- Migration 4: the auth epoch. One counter that every change able to alter who a login and
-- password are (the user's login, password hash, level, client, enabled flag; the client's
-- status; a deletion) bumps in the same transaction, by trigger, whichever process or
-- connection makes it. A credential verified while the counter read N is still good, without
-- reading the user row again, while it still reads N (see `auth::cache`).
CREATE TABLE auth_epoch (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n  INTEGER NOT NULL
);
INSERT INTO auth_epoch (id, n) VALUES (1, 0);

CREATE TRIGGER users_auth_epoch_update
AFTER UPDATE OF login, password_hash, level, account_id, enabled ON users
BEGIN
    UPDATE auth_epoch SET n = n + 1 WHERE id = 1;
END;

CREATE TRIGGER users_auth_epoch_delete AFTER DELETE ON users
BEGIN
    UPDATE auth_epoch SET n = n + 1 WHERE id = 1;
END;

CREATE TRIGGER account_auth_epoch_status
AFTER UPDATE OF status ON account WHEN OLD.status IS NOT NEW.status
BEGIN
    UPDATE auth_epoch SET n = n + 1 WHERE id = 1;
END;

CREATE TRIGGER account_auth_epoch_delete AFTER DELETE ON account
BEGIN
    UPDATE auth_epoch SET n = n + 1 WHERE id = 1;
END;
