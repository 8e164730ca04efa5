-- Migration 1 (end): provider 1, and the identities continued after the ids the seed gave.

INSERT INTO project (id, name, created) VALUES (1, 'Provider', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'));

-- The provider was inserted with its id: the identity continues after it.
SELECT setval(pg_get_serial_sequence('project', 'id'), (SELECT max(id) FROM project));
-- Currencies have their ISO numbers; one created without a code gets the next free number,
-- as on SQLite.
SELECT setval(pg_get_serial_sequence('currency', 'id'), (SELECT max(id) FROM currency));
