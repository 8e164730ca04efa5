-- Migration 1 (end): provider 1.

INSERT INTO project (id, name, created) VALUES (1, 'Provider', strftime('%Y-%m-%d %H:%M:%S', 'now'));
