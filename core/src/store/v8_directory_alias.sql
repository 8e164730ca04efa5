-- Migration 8: other directories' ids for our countries and currencies. Integrations send
-- BILLmanager's own directory ids (`country=182`, `currency=126`); our ids are ISO numeric codes.
-- A number that is an id of ours is read as ours; one that is not is looked up here
-- (docs/directories.md). `directory.alias.edit` refuses an alias that is an id of ours, so that
-- no number means two things.
CREATE TABLE directory_alias (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    kind      TEXT NOT NULL CHECK (kind IN ('country', 'currency')),
    alias     TEXT NOT NULL,
    target_id INTEGER NOT NULL,
    source    TEXT NOT NULL DEFAULT '',
    UNIQUE (kind, alias)
);

-- BILLmanager's ids, from public sources (docs/directories.md).
INSERT INTO directory_alias (kind, alias, target_id, source) VALUES
    ('country', '182', 643, 'BILLmanager (Russia)'),
    ('currency', '126', 643, 'BILLmanager (Russian rouble)');
