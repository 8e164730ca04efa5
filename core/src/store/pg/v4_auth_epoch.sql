-- Migration 4: the auth epoch (see the SQLite migration of the same number): one counter that
-- every change able to alter who a login and password are bumps in the same transaction, by
-- trigger, whichever server or connection makes it.
CREATE TABLE auth_epoch (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    n  BIGINT NOT NULL
);
INSERT INTO auth_epoch (id, n) VALUES (1, 0);

CREATE FUNCTION billhost_bump_auth_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE auth_epoch SET n = n + 1 WHERE id = 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER users_auth_epoch_update
AFTER UPDATE OF login, password_hash, level, account_id, enabled ON users
FOR EACH ROW EXECUTE FUNCTION billhost_bump_auth_epoch();

CREATE TRIGGER users_auth_epoch_delete AFTER DELETE ON users
FOR EACH ROW EXECUTE FUNCTION billhost_bump_auth_epoch();

CREATE TRIGGER account_auth_epoch_status
AFTER UPDATE OF status ON account
FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
EXECUTE FUNCTION billhost_bump_auth_epoch();

CREATE TRIGGER account_auth_epoch_delete AFTER DELETE ON account
FOR EACH ROW EXECUTE FUNCTION billhost_bump_auth_epoch();
