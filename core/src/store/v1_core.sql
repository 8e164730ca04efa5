-- Migration 1: directories, providers, clients, users, sessions, groups, filters, history.
-- Money never lives in this file's tables.

CREATE TABLE currency (
    id          INTEGER PRIMARY KEY,           -- ISO 4217 numeric code
    iso         TEXT NOT NULL UNIQUE COLLATE NOCASE,
    name        TEXT NOT NULL,
    minor_units INTEGER NOT NULL CHECK (minor_units BETWEEN 0 AND 6),
    symbol      TEXT NOT NULL DEFAULT '',
    active      INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1))
);

CREATE TABLE country (
    id   INTEGER PRIMARY KEY,                  -- ISO 3166-1 numeric code
    iso2 TEXT NOT NULL UNIQUE COLLATE NOCASE,
    name TEXT NOT NULL
);

CREATE TABLE project (
    id                  INTEGER PRIMARY KEY,
    name                TEXT NOT NULL,
    currency_id         INTEGER REFERENCES currency(id),
    site                TEXT NOT NULL DEFAULT '',
    billurl             TEXT NOT NULL DEFAULT '',
    conditions_required INTEGER NOT NULL DEFAULT 0 CHECK (conditions_required IN (0, 1)),
    company             TEXT NOT NULL DEFAULT '',
    company_address     TEXT NOT NULL DEFAULT '',
    company_taxid       TEXT NOT NULL DEFAULT '',
    invoice_format      TEXT NOT NULL DEFAULT '{seq}',
    invoice_seq         INTEGER NOT NULL DEFAULT 0,
    status              INTEGER NOT NULL DEFAULT 1 CHECK (status IN (1, 2)),
    created             TEXT NOT NULL
);

CREATE TABLE account (
    id                INTEGER PRIMARY KEY,
    project_id        INTEGER NOT NULL REFERENCES project(id),
    name              TEXT NOT NULL,
    realname          TEXT NOT NULL DEFAULT '',
    email             TEXT NOT NULL DEFAULT '',
    country_id        INTEGER REFERENCES country(id),
    state             TEXT NOT NULL DEFAULT '',
    valid_phone       TEXT NOT NULL DEFAULT '',
    try_phone         TEXT NOT NULL DEFAULT '',
    label             TEXT NOT NULL DEFAULT '',
    note              TEXT NOT NULL DEFAULT '',
    attitude          INTEGER NOT NULL DEFAULT 0,
    employee_id       INTEGER,
    settingurl        TEXT NOT NULL DEFAULT '',
    selfview          TEXT NOT NULL DEFAULT '',
    products_page     TEXT NOT NULL DEFAULT '',
    nocalcstat        INTEGER NOT NULL DEFAULT 0 CHECK (nocalcstat IN (0, 1)),
    verify_email      INTEGER NOT NULL DEFAULT 0 CHECK (verify_email IN (0, 1)),
    registration_date TEXT NOT NULL,
    registration_ip   TEXT NOT NULL DEFAULT '',
    partner_id        INTEGER REFERENCES account(id),
    sesid             TEXT NOT NULL DEFAULT '',
    ga                TEXT NOT NULL DEFAULT '',
    tzoffset          INTEGER,
    -- 1 active, 2 suspended, 3 deleted (a deleted client keeps every record)
    status            INTEGER NOT NULL DEFAULT 1 CHECK (status IN (1, 2, 3))
);
CREATE INDEX account_status ON account(status, id);
CREATE INDEX account_by_project ON account(project_id, id);
CREATE INDEX account_email ON account(email COLLATE NOCASE);
CREATE INDEX account_name ON account(name);

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    login         TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT NOT NULL,
    level         TEXT NOT NULL CHECK (level IN ('admin', 'user')),
    account_id    INTEGER REFERENCES account(id),
    realname      TEXT NOT NULL DEFAULT '',
    email         TEXT NOT NULL DEFAULT '',
    enabled       INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created       TEXT NOT NULL,
    CHECK ((level = 'user') = (account_id IS NOT NULL))
);
CREATE INDEX users_account ON users(account_id);

CREATE TABLE session (
    id         TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id),
    -- account.su: the staff user who obtained this session acting as user_id
    su_from    INTEGER REFERENCES users(id),
    created    TEXT NOT NULL,
    last_seen  INTEGER NOT NULL,               -- unix seconds
    ip         TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;
CREATE INDEX session_user ON session(user_id);

-- Providers a client is assigned to (account.project): 1 active, 2 suspended.
CREATE TABLE account_project (
    account_id INTEGER NOT NULL REFERENCES account(id),
    project_id INTEGER NOT NULL REFERENCES project(id),
    status     INTEGER NOT NULL DEFAULT 1 CHECK (status IN (1, 2)),
    PRIMARY KEY (account_id, project_id)
) WITHOUT ROWID;

CREATE TABLE accountgroup (
    id      INTEGER PRIMARY KEY,
    name    TEXT NOT NULL UNIQUE COLLATE NOCASE,
    note    TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL
);

CREATE TABLE accountgroup_member (
    accountgroup_id INTEGER NOT NULL REFERENCES accountgroup(id),
    account_id      INTEGER NOT NULL REFERENCES account(id),
    PRIMARY KEY (accountgroup_id, account_id)
) WITHOUT ROWID;
CREATE INDEX accountgroup_member_account ON accountgroup_member(account_id);

-- Per-user stored filters of list funcs (*.filter, account.setfilter): JSON object of values.
CREATE TABLE stored_filter (
    user_login TEXT NOT NULL,
    list       TEXT NOT NULL,
    params     TEXT NOT NULL,
    PRIMARY KEY (user_login, list)
) WITHOUT ROWID;

CREATE TABLE history (
    id          INTEGER PRIMARY KEY,
    changedate  TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id   INTEGER NOT NULL,
    description TEXT NOT NULL,
    user_login  TEXT NOT NULL,
    ip          TEXT NOT NULL,
    action      TEXT NOT NULL
);
CREATE INDEX history_object ON history(object_type, object_id, id);
